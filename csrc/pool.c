// pool.c — a persistent pthread pool: created once, resized by ggr_set_threads(n).
//
// ggr_pool_run hands out task indices from an atomic counter; the calling thread works too,
// so n threads means n - 1 workers. The caller waits only for tasks that were claimed, never
// for a worker that has not woken up yet (on a busy machine that can take a whole time slice):
// a late worker checks in (refs) and finds the job either still open (seq) or gone.
// Between jobs a worker spins for a short while (a decode step calls linear() ~100 times with
// a little Python in between, and a futex wake-up costs tens of microseconds), then sleeps on a
// condition variable.
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "ggufref_internal.h"

#define GGR_MAX_THREADS 64
#define GGR_SPIN_NS 2000000 // 2 ms of spinning before a worker goes to sleep

static struct {
    pthread_mutex_t lock; // guards sleeping and waking
    pthread_cond_t wake;
    pthread_mutex_t job_lock; // one job at a time (cffi releases the GIL during calls)
    pthread_t threads[GGR_MAX_THREADS];
    int n_threads;         // including the caller; 0 = not started yet
    atomic_int generation; // bumped once per job
    atomic_int quit;
    atomic_int seq;  // generation of the job whose fields are valid; -1 while writing
    atomic_int refs; // workers that may be reading the job fields
    atomic_llong next_task;
    atomic_llong done_tasks;
    ggr_task_fn fn;
    void *ctx;
    int64_t n_tasks;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER,
       .job_lock = PTHREAD_MUTEX_INITIALIZER};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_tasks(void) {
    int64_t t;
    while ((t = atomic_fetch_add(&P.next_task, 1)) < P.n_tasks) {
        P.fn(P.ctx, t);
        atomic_fetch_add_explicit(&P.done_tasks, 1, memory_order_release);
    }
}

static void *worker(void *arg) {
    // the generation at creation (not at start-up: a job may be published before we run)
    int seen = (int)(intptr_t)arg;
    for (;;) {
        const int64_t start = now_ns();
        int spins = 0;
        while (atomic_load_explicit(&P.generation, memory_order_acquire) == seen &&
               !atomic_load(&P.quit)) {
            cpu_relax();
            if (++spins % 256 == 0 && now_ns() - start > GGR_SPIN_NS) {
                pthread_mutex_lock(&P.lock);
                while (atomic_load(&P.generation) == seen && !atomic_load(&P.quit))
                    pthread_cond_wait(&P.wake, &P.lock);
                pthread_mutex_unlock(&P.lock);
            }
        }
        if (atomic_load(&P.quit)) return NULL;
        seen = atomic_load(&P.generation);
        atomic_fetch_add(&P.refs, 1); // check in, then make sure the job is still the one we saw
        if (atomic_load(&P.seq) == seen) run_tasks();
        atomic_fetch_sub(&P.refs, 1);
    }
}

static void stop_workers(void) {
    pthread_mutex_lock(&P.lock);
    atomic_store(&P.quit, 1);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    for (int i = 1; i < P.n_threads; i++) pthread_join(P.threads[i], NULL);
    atomic_store(&P.quit, 0);
    P.n_threads = 0;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > GGR_MAX_THREADS ? GGR_MAX_THREADS : (int)n);
}

// Start n - 1 workers (caller holds job_lock). Returns the number of threads actually running.
static int start_workers(int n) {
    P.n_threads = 1;
    for (int i = 1; i < n; i++) {
        void *gen = (void *)(intptr_t)atomic_load(&P.generation);
        if (pthread_create(&P.threads[i], NULL, worker, gen) != 0) break;
        P.n_threads = i + 1;
    }
    return P.n_threads;
}

int ggr_set_threads(int n) {
    if (n < 1) n = default_threads();
    if (n > GGR_MAX_THREADS) n = GGR_MAX_THREADS;
    pthread_mutex_lock(&P.job_lock);
    if (P.n_threads) stop_workers();
    const int got = start_workers(n);
    pthread_mutex_unlock(&P.job_lock);
    return got;
}

int ggr_get_threads(void) {
    pthread_mutex_lock(&P.job_lock);
    if (!P.n_threads) start_workers(default_threads());
    const int n = P.n_threads;
    pthread_mutex_unlock(&P.job_lock);
    return n;
}

int ggr_pool_threads(void) { return ggr_get_threads(); }

// tag::pool_run[]
void ggr_pool_run(ggr_task_fn fn, void *ctx, int64_t n_tasks) {
    pthread_mutex_lock(&P.job_lock);
    if (!P.n_threads) start_workers(default_threads());
    if (P.n_threads == 1 || n_tasks <= 1) { // nothing to share
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t);
        pthread_mutex_unlock(&P.job_lock);
        return;
    }
    const int g = atomic_load(&P.generation);
    atomic_store(&P.seq, -1);                 // close the previous job to late workers ...
    while (atomic_load(&P.refs)) cpu_relax(); // ... and let those inside it leave
    P.fn = fn;
    P.ctx = ctx;
    P.n_tasks = n_tasks;
    atomic_store(&P.next_task, 0);
    atomic_store(&P.done_tasks, 0);
    atomic_store(&P.seq, g + 1);
    pthread_mutex_lock(&P.lock);
    atomic_store(&P.generation, g + 1); // publish the job
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    run_tasks();
    int64_t spins = 0; // wait for the claimed tasks; yield if a worker lost its core
    while (atomic_load_explicit(&P.done_tasks, memory_order_acquire) < n_tasks)
        if (++spins % 4096 == 0)
            sched_yield();
        else
            cpu_relax();
    pthread_mutex_unlock(&P.job_lock);
}
// end::pool_run[]
