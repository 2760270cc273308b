// ops.c — the per-token float ops of a transformer block, fused and threaded.
//
// Legend: T = n_tokens, d = model width, H = query heads, Hkv = key/value heads,
//         hd = head_dim, C = n_ctx (cache length), f = feed-forward width.
// All arrays are float32, C-contiguous; Python has checked every shape before the call.
// Where llama.cpp (ggml's CPU backend) computes something in a particular way that changes the
// low bits, the comment says so and the code follows it.
#include <pthread.h>
#include <stdlib.h>

#include "ggufref_api.h"
#include "ggufref_internal.h"

static float dot_f32(int n, const float *a, const float *b) {
    return ggr_current_isa() >= ISA_AVX2 ? ggr_dot_f32_avx2(n, a, b) : ggr_dot_f32_scalar(n, a, b);
}

static void axpy(int n, float a, const float *x, float *y) {
    if (ggr_current_isa() >= ISA_AVX2) {
        ggr_axpy_avx2(n, a, x, y);
        return;
    }
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

// ---------------------------------------------------------------- RMS norm
typedef struct {
    const float *x, *w;
    int64_t n, d;
    float eps;
    float *y;
} norm_job;

// tag::rms_norm[]
// y = x / sqrt(mean(x^2) + eps) * w (Gemma's "1 + w" is already applied in GGUF files). As in
// ggml: squares in float, their sum in double, the mean and the scale in float, then
// y = (x * scale) * w.
static void rms_norm_row(const norm_job *j, int64_t r, double s0, double s1) {
    const float *x = j->x + r * j->d;
    float *y = j->y + r * j->d;
    const float mean = (float)((s0 + s1) / (double)j->d);
    const float scale = 1.0f / sqrtf(mean + j->eps);
    for (int64_t i = 0; i < j->d; i++)
        y[i] = (x[i] * scale) * j->w[i];
}

// Rows 4 task .. 4 task + 3. Each row's sum is a chain of double additions (two: even and odd
// elements, ggml's order); the four rows' chains run side by side, which hides their latency.
static void rms_norm_rows(void *ctx, int64_t task) {
    const norm_job *j = ctx;
    const int64_t r0 = task * 4, nr = j->n - r0 < 4 ? j->n - r0 : 4;
    double s[4][2] = {{0.0}};
    int64_t i = 0;
    if (nr == 4) {
        const float *x0 = j->x + r0 * j->d, *x1 = x0 + j->d, *x2 = x1 + j->d, *x3 = x2 + j->d;
        for (; i + 2 <= j->d; i += 2) {
            s[0][0] += (double)(x0[i] * x0[i]);
            s[0][1] += (double)(x0[i + 1] * x0[i + 1]);
            s[1][0] += (double)(x1[i] * x1[i]);
            s[1][1] += (double)(x1[i + 1] * x1[i + 1]);
            s[2][0] += (double)(x2[i] * x2[i]);
            s[2][1] += (double)(x2[i + 1] * x2[i + 1]);
            s[3][0] += (double)(x3[i] * x3[i]);
            s[3][1] += (double)(x3[i + 1] * x3[i + 1]);
        }
    }
    for (int64_t k = 0; k < nr; k++) {
        const float *x = j->x + (r0 + k) * j->d;
        int64_t e = i;
        for (; e + 2 <= j->d; e += 2) {
            s[k][0] += (double)(x[e] * x[e]);
            s[k][1] += (double)(x[e + 1] * x[e + 1]);
        }
        for (; e < j->d; e++) s[k][0] += (double)(x[e] * x[e]);
        rms_norm_row(j, r0 + k, s[k][0], s[k][1]);
    }
}
// end::rms_norm[]

int ggr_rms_norm(const float *x, const float *w, int64_t n, int64_t d, float eps, float *y) {
    if (n < 0 || d <= 0) return GGR_ERR_SHAPE;
    norm_job j = {x, w, n, d, eps, y};
    const int64_t tasks = (n + 3) / 4;
    if (n * d >= 65536)
        ggr_pool_run(rms_norm_rows, &j, tasks);
    else
        for (int64_t t = 0; t < tasks; t++) rms_norm_rows(&j, t);
    return GGR_OK;
}

// ---------------------------------------------------------------- RoPE
typedef struct {
    float *x;
    const int32_t *pos;
    int64_t n_heads, head_dim, n_rot;
    float theta_base, freq_scale;
    int neox;
} rope_job;

// The rotation of one pair, as ggml's compiled code rounds it: GCC fuses x0 c - x1 s into
// fma(x0, c, -(x1 s)) (and x0 s + x1 c into fma(x0, s, x1 c)); unfused, a fifth of the outputs
// differ from llama.cpp's in the last bit. The FMA build turns fmaf into one instruction.
__attribute__((target("fma"))) static void rotate_fma(float *a, float *b, float c, float s) {
    const float x0 = *a, x1 = *b;
    *a = fmaf(x0, c, -(x1 * s));
    *b = fmaf(x0, s, x1 * c);
}

static void rotate_ref(float *a, float *b, float c, float s) { // fmaf from libm: same bits
    const float x0 = *a, x1 = *b;
    *a = fmaf(x0, c, -(x1 * s));
    *b = fmaf(x0, s, x1 * c);
}

// tag::rope[]
// Rotate pairs of each head by angle_i = pos * freq_scale * theta_base^(-2i / n_rot).
// Normal pairing rotates (x[2i], x[2i+1]); NeoX pairing rotates (x[i], x[i + n_rot/2]).
// Like ggml, the angles come from a running product theta *= theta_base^(-2 / n_rot) in float.
static void rope_token(void *ctx, int64_t t) {
    const rope_job *j = ctx;
    const int64_t half = j->n_rot / 2;
    float cs[512], sn[512]; // n_rot <= 1024, checked by ggr_rope
    const float theta_scale = powf(j->theta_base, -2.0f / (float)j->n_rot);
    float theta = (float)j->pos[t];
    for (int64_t i = 0; i < half; i++) {
        cs[i] = cosf(j->freq_scale * theta);
        sn[i] = sinf(j->freq_scale * theta);
        theta *= theta_scale;
    }
    void (*rotate)(float *, float *, float, float) =
        ggr_current_isa() >= ISA_AVX2 ? rotate_fma : rotate_ref;
    for (int64_t h = 0; h < j->n_heads; h++) {
        float *v = j->x + (t * j->n_heads + h) * j->head_dim;
        for (int64_t i = 0; i < half; i++) {
            const int64_t a = j->neox ? i : 2 * i, b = j->neox ? i + half : 2 * i + 1;
            rotate(v + a, v + b, cs[i], sn[i]);
        }
    }
}
// end::rope[]

int ggr_rope(float *x, const int32_t *pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
             int64_t n_rot, float theta_base, int neox, float freq_scale) {
    if (n_tokens < 0 || n_heads <= 0 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim || n_rot > 1024)
        return GGR_ERR_SHAPE;
    rope_job j = {x, pos, n_heads, head_dim, n_rot, theta_base, freq_scale, neox};
    if (n_tokens >= 8)
        ggr_pool_run(rope_token, &j, n_tokens);
    else
        for (int64_t t = 0; t < n_tokens; t++) rope_token(&j, t);
    return GGR_OK;
}

// ---------------------------------------------------------------- gated activations
#define GELU_COEF_A 0.044715f
#define SQRT_2_OVER_PI 0.79788456080286535587989211986876f

static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * (1.0f + GELU_COEF_A * x * x)));
}

// ggml's CPU backend does not evaluate GELU on float32 inputs: it rounds x to half precision
// and reads a 65536-entry table of half-precision results (exact for |x| >= 10: 0 or x).
// We build the same table once, so gate activations match llama.cpp's bit for bit. ggml's
// table entries come from the formula as GCC compiles it there (contracting 1 + a x x into one
// fused multiply-add), and a few entries sit so close to a half-precision midpoint that the
// fusing decides them (x = -1.999 is one): so the table uses fmaf at that spot too.
static float gelu_tanh_ggml(float x) {
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * fmaf(GELU_COEF_A * x, x, 1.0f)));
}

static ggml_half gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void) {
    for (uint32_t h = 0; h < (1u << 16); h++)
        gelu_table[h] = ggr_fp32_to_fp16(gelu_tanh_ggml(ggr_fp16_to_fp32((ggml_half)h)));
}

typedef struct {
    const float *gate, *up;
    float *out;
    int64_t n, chunk;
    int exact;
    int64_t row; // silu: values per row (chunks hold whole rows)
} glu_job;

// tag::gelu_tanh_mul[]
static void gelu_mul_chunk(void *ctx, int64_t c) {
    const glu_job *j = ctx;
    const int64_t end = (c + 1) * j->chunk < j->n ? (c + 1) * j->chunk : j->n;
    if (!j->exact && ggr_current_isa() >= ISA_AVX2) {
        ggr_gelu_table_mul_avx2(end - c * j->chunk, j->gate + c * j->chunk, j->up + c * j->chunk,
                                j->out + c * j->chunk, gelu_table);
        return;
    }
    for (int64_t i = c * j->chunk; i < end; i++) {
        const float x = j->gate[i];
        float g;
        if (j->exact)
            g = gelu_tanh(x);
        else if (x <= -10.0f)
            g = 0.0f;
        else if (x >= 10.0f)
            g = x;
        else
            g = ggr_fp16_to_fp32(gelu_table[ggr_fp32_to_fp16(x)]);
        j->out[i] = g * j->up[i];
    }
}
// end::gelu_tanh_mul[]

static void silu_mul_chunk(void *ctx, int64_t c) {
    const glu_job *j = ctx;
    const int64_t end = (c + 1) * j->chunk < j->n ? (c + 1) * j->chunk : j->n;
    if (ggr_current_isa() >= ISA_AVX512) { // llama.cpp's arithmetic, row by row
        const int64_t i0 = c * j->chunk;
        ggr_silu_mul_ggml_avx512(end - i0, j->row, j->gate + i0, j->up + i0, j->out + i0);
        return;
    }
    if (ggr_current_isa() >= ISA_AVX2) { // libm's expf, one value at a time, cost 4% of prefill
        const int64_t i0 = c * j->chunk;
        ggr_silu_mul_avx2(end - i0, j->gate + i0, j->up + i0, j->out + i0);
        return;
    }
    for (int64_t i = c * j->chunk; i < end; i++) {
        const float x = j->gate[i];
        j->out[i] = x / (1.0f + expf(-x)) * j->up[i];
    }
}

static int run_glu(ggr_task_fn fn, const float *gate, const float *up, int64_t n, int exact,
                   float *out) {
    if (n < 0) return GGR_ERR_SHAPE;
    glu_job j = {gate, up, out, n, 16384, exact, n};
    ggr_pool_run(fn, &j, (n + j.chunk - 1) / j.chunk);
    return GGR_OK;
}

int ggr_gelu_tanh_mul(const float *gate, const float *up, int64_t n, int exact, float *out) {
    if (!exact) pthread_once(&gelu_once, gelu_table_init);
    return run_glu(gelu_mul_chunk, gate, up, n, exact, out);
}

int ggr_silu_mul(const float *gate, const float *up, int64_t n, int64_t row, float *out) {
    if (n < 0 || row <= 0 || n % row) return GGR_ERR_SHAPE;
    const int64_t rows = 16384 / row > 0 ? 16384 / row : 1; // whole rows per task
    glu_job j = {gate, up, out, n, rows * row, 0, row};
    ggr_pool_run(silu_mul_chunk, &j, (n + j.chunk - 1) / j.chunk);
    return GGR_OK;
}

// ---------------------------------------------------------------- attention
// tag::attention[]
// One query token t of one head h: causal softmax attention over cache positions
// j in (p - window, p] (all j <= p without a window), p = pos0 + t. GQA: head h reads kv head
// h / (H / Hkv). Scores in float, the softmax denominator in double.
// (The f16 modes, llama.cpp's arithmetic step by step, are in attn_ggml.inc.)
static void attend(void *ctx, int64_t task) {
    const ggr_attn_job *j = ctx;
    const int64_t t = task / j->n_head, h = task % j->n_head;
    const int64_t kvh = h / (j->n_head / j->n_kv_head);
    const int64_t p = j->pos0 + t;
    const int64_t lo = j->window > 0 && p - j->window + 1 > 0 ? p - j->window + 1 : 0;
    const int64_t n_keys = p - lo + 1;
    const float *q = j->q + (t * j->n_head + h) * j->hd;   // (hd,)
    const float *K = j->k + (kvh * j->n_ctx + lo) * j->hd; // (n_keys, hd)
    const float *V = j->v + (kvh * j->n_ctx + lo) * j->hd; // (n_keys, hd)
    float *o = j->out + (t * j->n_head + h) * j->hd;       // (hd,)
    float local[1024];
    float *s = n_keys <= 1024 ? local : malloc((size_t)n_keys * sizeof(float));
    if (!s) {
        ((ggr_attn_job *)ctx)->failed = 1;
        return;
    }
    float mx = -INFINITY;
    for (int64_t i = 0; i < n_keys; i++) {
        float x = j->scale * dot_f32((int)j->hd, q, K + i * j->hd);
        if (j->softcap > 0.0f) x = j->softcap * tanhf(x / j->softcap);
        s[i] = x;
        mx = x > mx ? x : mx;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n_keys; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    const float inv = (float)(1.0 / sum);
    memset(o, 0, (size_t)j->hd * sizeof(float));
    for (int64_t i = 0; i < n_keys; i++) axpy((int)j->hd, s[i] * inv, V + i * j->hd, o);
    if (s != local) free(s);
}
// end::attention[]

// The f16 modes: llamafile's summation order only in GGR_ATTN_GGML mode with >= 2 tokens, as
// llama.cpp (llamafile_sgemm declines single-column matmuls, which then take ggml_vec_dot_f16).
typedef struct {
    ggr_attn_job job;
    int sgemm;
} ggml_attn_task;

static void attend_ggml(void *ctx, int64_t task) {
    const ggml_attn_task *a = ctx;
    const int isa = ggr_current_isa(); // three builds of attn_ggml.inc, identical results
    if (isa >= ISA_AVX512)
        ggr_attend_ggml_avx512(&a->job, task, a->sgemm);
    else if (isa >= ISA_AVX2)
        ggr_attend_ggml_avx2(&a->job, task, a->sgemm);
    else
        ggr_attend_ggml_ref(&a->job, task, a->sgemm);
}

int ggr_attention(const float *q, const float *k_cache, const float *v_cache, int64_t n_tokens,
                  int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t n_ctx, int64_t pos0,
                  float scale, int64_t window, float softcap, int mode, float *out) {
    if (n_tokens < 0 || n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head || head_dim <= 0 ||
        head_dim > 1024 || pos0 < 0 || pos0 + n_tokens > n_ctx || window < 0 ||
        mode < GGR_ATTN_F32 || mode > GGR_ATTN_GGML)
        return GGR_ERR_SHAPE;
    // Prefill: the heads of one KV head go 4 to a task (K and V read once for all of them);
    // a few tokens (decode) keep one head per task so that every thread gets work.
    const int64_t group = n_head / n_kv_head;
    const int64_t hpt = group % 4 == 0 && n_tokens >= 2 * ggr_pool_threads() ? 4 : 1;
    ggml_attn_task a = {{q, k_cache, v_cache, n_head, n_kv_head, head_dim, n_ctx, pos0, window,
                         scale, softcap, mode, hpt, out, 0},
                        mode == GGR_ATTN_GGML && n_tokens >= 2};
    if (mode == GGR_ATTN_F32)
        ggr_pool_run(attend, &a.job, n_tokens * n_head);
    else
        ggr_pool_run(attend_ggml, &a, n_tokens * n_head / hpt);
    return a.job.failed ? GGR_ERR_NOMEM : GGR_OK;
}
