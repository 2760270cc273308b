// linear.c — y = x W^T for a quantized W: dispatch by format and instruction set, quantize the
// activations once, then share the dot products out over the thread pool.
//
// Legend: rows = out_features, cols = in_features, T = n_tokens.
//   w (rows, row_bytes)  x (T, cols) float32  ->  y (T, rows) float32
#include <stdlib.h>

#include "ggufref_api.h"
#include "ggufref_internal.h"

// tag::format_table[]
// A row: type, name, block size and bytes, activation type, then per instruction-set level
// (scalar, AVX2, AVX-512) the one-row dot kernel, the 8-token kernel, the 8-token prefill panel,
// the prefill tile kernel, the several-rows decode kernel (see ggufref_internal.h for each).
#define DOT2(f) {ggr_dot_##f##_scalar, ggr_dot_##f##_avx2, NULL}
#define DOT3(f) {ggr_dot_##f##_scalar, ggr_dot_##f##_avx2, ggr_dot_##f##_avx512}
#define NO_N {NULL, NULL, NULL}
#define N512(f) {NULL, NULL, ggr_dotn_##f##_avx512}
#define NO_PANEL {NULL, NULL, NULL}, 0
#define PANEL512(f, offset) {NULL, NULL, ggr_panel_##f##_avx512}, offset
#define NO_GEMM {NULL, NULL, NULL}, NULL, 0, 0
#define GEMM512(f, min, group) {NULL, NULL, ggr_gemm_##f##_avx512}, ggr_gemm_scratch_##f, min, group
#define NO_R {NULL, NULL, NULL}
#define R512(f) {NULL, NULL, ggr_dotr_##f##_avx512}
static const ggr_format FORMATS[] = {
    {GGR_F32, "F32", 1, 4, ACT_F32, DOT2(f32), NO_N, NO_PANEL, NO_GEMM, NO_R},
    {GGR_F16, "F16", 1, 2, ACT_F16R, DOT2(f16), NO_N, NO_PANEL, NO_GEMM, NO_R},
    {GGR_BF16, "BF16", 1, 2, ACT_BF16R, DOT2(bf16), NO_N, NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q4_0, "Q4_0", QK, sizeof(block_q4_0), ACT_Q8_0X, DOT3(q4_0), NO_N,
     NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q4_1, "Q4_1", QK, sizeof(block_q4_1), ACT_Q8_1X, DOT2(q4_1), NO_N,
     NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q5_0, "Q5_0", QK, sizeof(block_q5_0), ACT_Q8_0X, DOT3(q5_0), N512(q5_0),
     PANEL512(q5_0, 16), NO_GEMM, R512(q5_0)},
    {GGR_Q5_1, "Q5_1", QK, sizeof(block_q5_1), ACT_Q8_1X, DOT2(q5_1), NO_N,
     NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q8_0, "Q8_0", QK, sizeof(block_q8_0), ACT_Q8_0X, DOT3(q8_0), N512(q8_0), NO_PANEL,
     NO_GEMM, R512(q8_0)},
    {GGR_Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), ACT_Q8_K, DOT2(q2_K), NO_N,
     NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), ACT_Q8_K, DOT2(q3_K), NO_N,
     NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), ACT_Q8_K, DOT3(q4_K), NO_N, NO_PANEL,
     GEMM512(q4_K, 4, 4), R512(q4_K)}, // llama.cpp repacks Q4_K: 4-token groups from 4 tokens
    {GGR_Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), ACT_Q8_K, DOT3(q5_K), NO_N,
     NO_PANEL, NO_GEMM, NO_R},
    {GGR_Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), ACT_Q8_K, DOT3(q6_K), NO_N, NO_PANEL,
     GEMM512(q6_K, 8, 1), R512(q6_K)}, // llama.cpp's tiled K-quant kernel from 8 tokens on
};
// end::format_table[]

const ggr_format *ggr_format_of(int qtype) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (FORMATS[i].qtype == qtype) return &FORMATS[i];
    return NULL;
}

// ---------------------------------------------------------------- instruction set choice
static int g_forced_isa = -1; // -1: the best the CPU runs

int ggr_force_isa(int isa) {
    if (isa < -1 || isa >= ISA_COUNT || isa > ggr_best_isa()) return GGR_ERR_ISA;
    g_forced_isa = isa;
    return GGR_OK;
}

int ggr_current_isa(void) { return g_forced_isa >= 0 ? g_forced_isa : ggr_best_isa(); }

// The level whose kernels run: the highest up to `isa` that has a one-row kernel for the
// format (every format has a scalar one). That level's other kernels (dotn, dotr, panel, gemm)
// go with it, or none of that kind.
static int pick_level(const ggr_format *f, int isa) {
    int level = isa;
    while (level > 0 && !f->dot[level]) level--;
    return level;
}

// ---------------------------------------------------------------- activations
static int64_t act_row_bytes(const ggr_format *f, int64_t cols) {
    switch (f->act) {
    case ACT_Q8_0X:
        return cols / QK * (int64_t)sizeof(block_q8_0x);
    case ACT_Q8_1X:
        return cols / QK * (int64_t)sizeof(block_q8_1x);
    case ACT_Q8_K:
        return cols / QK_K * (int64_t)sizeof(block_q8_K);
    default:
        return cols * 4;
    }
}

typedef struct {
    const ggr_format *f;
    const float *x;
    int64_t cols;
    uint8_t *xq;
    int64_t xq_row_bytes;
    int isa;
} quant_job;

// 1 if every value is finite. An 8-bit quantizer would turn a NaN or inf into ordinary numbers
// (amax comparisons skip NaN), hiding it from the engine's non-finite-logits check; a row that
// holds one gets NaN scales instead, so the NaN reaches the output. Integer test: vectorisable.
static int row_is_finite(const float *x, int n) {
    const uint32_t *bits = (const uint32_t *)x;
    uint32_t bad = 0;
    for (int i = 0; i < n; i++) bad |= (bits[i] & 0x7f800000u) == 0x7f800000u;
    return !bad;
}

static void poison_row(void *out, int n, int act) {
    if (act == ACT_Q8_K) {
        block_q8_K *y = out;
        for (int b = 0; b < n / QK_K; b++) y[b].d = NAN;
    } else if (act == ACT_Q8_1X) {
        block_q8_1x *y = out;
        for (int b = 0; b < n / QK; b++) y[b].d = y[b].s = NAN;
    } else if (act == ACT_Q8_0X) {
        block_q8_0x *y = out;
        for (int b = 0; b < n / QK; b++) y[b].d = NAN;
    }
}

static void quantize_row(void *ctx, int64_t t) {
    const quant_job *j = ctx;
    const float *x = j->x + t * j->cols;
    void *out = j->xq + t * j->xq_row_bytes;
    const int n = (int)j->cols, simd = j->isa >= ISA_AVX2;
    float *f = out;
    switch (j->f->act) {
    case ACT_Q8_K:
        simd ? ggr_quantize_q8_K_avx2(n, x, out) : ggr_quantize_q8_K_scalar(n, x, out);
        break;
    case ACT_Q8_1X:
        simd ? ggr_quantize_q8_1x_avx2(n, x, out) : ggr_quantize_q8_1x_scalar(n, x, out);
        break;
    case ACT_Q8_0X:
        simd ? ggr_quantize_q8_0x_avx2(n, x, out) : ggr_quantize_q8_0x_scalar(n, x, out);
        break;
    case ACT_F16R: // ggml converts the activations to F16 (vec_dot_type of F16 weights)
        for (int i = 0; i < n; i++) f[i] = ggr_round_f16(x[i]);
        break;
    case ACT_BF16R: // ... and to BF16 for BF16 weights
        for (int i = 0; i < n; i++) f[i] = ggr_round_bf16(x[i]);
        break;
    }
    if (!row_is_finite(x, n)) poison_row(out, n, j->f->act);
}

// ---------------------------------------------------------------- the dot-product tiles
typedef struct {
    ggr_dot_fn dot;
    ggr_dotn_fn dotn; // NULL: call dot once per token
    ggr_dotr_fn dotr; // NULL: decode calls dot row by row
    const uint8_t *w;
    int64_t rows, cols, row_bytes;
    const uint8_t *xq;
    int64_t xq_row_bytes, n_tokens;
    float *y;
    int64_t tile_rows, n_row_tiles; // rows per task, tasks per token block
    int64_t tile_tokens;            // tokens per task
} dot_job;

// Decode: a tile's rows are walked as DECODE_STREAMS interleaved runs (row r, r + part,
// r + 2 part, ...), not top to bottom. Each run is a separate sequential stream through memory,
// so the hardware prefetchers fetch DECODE_STREAMS places at once: one stream at a time left
// the core waiting on DRAM (first measured on an Intel Xeon, one thread, weights from DRAM, GB/s
// of CPU time: Q4_K 5.6 -> 9.6, Q5_0 4.4 -> 8.3, Q6_K 9.3 -> 11.1 with 8 streams; on an AMD EPYC
// 8 streams on each of 2 threads fell behind 3 or 4, whole-model decode of the default model and
// the 0.5B 0.86x and 0.73x of 4 streams, so 4 it is). The dot products and their results are
// unchanged; only the order rows are visited in is. A format with a several-rows kernel (dotr)
// walks its rows top to bottom instead, GGR_DOTR_ROWS per call: one stream per thread kept the
// EPYC's memory busier for Q4_K than interleaved ones (bench: see ggr_dotr_fn).
#define DECODE_STREAMS 4
// tag::linear_tile[]
// One task = tile_rows weight rows times tile_tokens tokens. The weight tile (~32 KB) stays in
// L1/L2 while its tokens pass over it, GGR_NT at a time, so a weight byte comes from memory
// once per token block, not once per token; the token block's activations (<= 256 KB) stay in
// L2 while the threads walk the row tiles (tasks run token-block by token-block).
static void dot_tile(void *ctx, int64_t task) {
    const dot_job *j = ctx;
    const int64_t r0 = (task % j->n_row_tiles) * j->tile_rows;
    const int64_t r1 = r0 + j->tile_rows < j->rows ? r0 + j->tile_rows : j->rows;
    const int64_t t0 = (task / j->n_row_tiles) * j->tile_tokens;
    const int64_t t1 = t0 + j->tile_tokens < j->n_tokens ? t0 + j->tile_tokens : j->n_tokens;
    int64_t t = t0;
    for (; j->dotn && t + GGR_NT <= t1; t += GGR_NT) {
        const uint8_t *xt = j->xq + t * j->xq_row_bytes;
        for (int64_t r = r0; r < r1; r++) {
            float out[GGR_NT];
            j->dotn((int)j->cols, j->w + r * j->row_bytes, xt, j->xq_row_bytes, out);
            for (int k = 0; k < GGR_NT; k++) j->y[(t + k) * j->rows + r] = out[k];
        }
    }
    for (; t < t1; t++) {
        const uint8_t *xt = j->xq + t * j->xq_row_bytes;
        float *yt = j->y + t * j->rows;
        if (j->dotr) { // GGR_DOTR_ROWS consecutive rows per call: one stream, top to bottom
            for (int64_t r = r0; r < r1; r += GGR_DOTR_ROWS) {
                const int k = (int)(r1 - r < GGR_DOTR_ROWS ? r1 - r : GGR_DOTR_ROWS);
                j->dotr((int)j->cols, j->w + r * j->row_bytes, j->row_bytes, k, xt, yt + r);
            }
            continue;
        }
        const int64_t part = (r1 - r0) / DECODE_STREAMS; // rows per stream
        for (int64_t r = r0; r < r0 + part; r++)
            for (int s = 0; s < DECODE_STREAMS; s++)
                yt[r + s * part] = j->dot((int)j->cols, j->w + (r + s * part) * j->row_bytes, xt);
        for (int64_t r = r0 + DECODE_STREAMS * part; r < r1; r++) // the remainder, in order
            yt[r] = j->dot((int)j->cols, j->w + r * j->row_bytes, xt);
    }
}
// end::linear_tile[]

// ---------------------------------------------------------------- prefill panels (FORMATS.panel)
// Tokens go 8 at a time through the format's panel kernel (Q5_0 at AVX-512: see
// prefill_avx512.c for why it is faster and why its results are the one-row kernel's bit for
// bit). One task = tile_rows rows
// times every panel; inside, PANEL_ROWS rows (a few KB of weights, kept in L1) meet each panel.
#define PANEL_ROWS 16
typedef struct {
    ggr_panel_fn panel;
    int offset;
    const uint8_t *w;
    int64_t rows, row_bytes, nb, n_tokens, n_groups, tile_rows;
    const block_q8_0x *xq; // (T, nb)
    ggr_panel8 *panels;    // (n_groups, nb)
    float *y;
} panel_job;

static void pack_group(void *ctx, int64_t g) {
    const panel_job *j = ctx;
    const block_q8_0x *x[8];
    for (int t = 0; t < 8; t++)
        x[t] = g * 8 + t < j->n_tokens ? j->xq + (g * 8 + t) * j->nb : NULL;
    ggr_pack_panel8((int)j->nb, x, j->offset, j->panels + g * j->nb);
}

static void panel_tile(void *ctx, int64_t task) {
    const panel_job *j = ctx;
    const int64_t r0 = task * j->tile_rows;
    const int64_t r1 = r0 + j->tile_rows < j->rows ? r0 + j->tile_rows : j->rows;
    float out[PANEL_ROWS * 8];
    for (int64_t rc = r0; rc < r1; rc += PANEL_ROWS) {
        const int n = (int)(r1 - rc < PANEL_ROWS ? r1 - rc : PANEL_ROWS);
        for (int64_t g = 0; g < j->n_groups; g++) {
            j->panel((int)j->nb, j->w + rc * j->row_bytes, j->row_bytes, n, j->panels + g * j->nb,
                     out);
            const int nt = (int)(j->n_tokens - g * 8 < 8 ? j->n_tokens - g * 8 : 8);
            for (int t = 0; t < nt; t++) {
                float *yt = j->y + (g * 8 + t) * j->rows + rc;
                for (int r = 0; r < n; r++) yt[r] = out[r * 8 + t];
            }
        }
    }
}

// 0 if done, else GGR_ERR_NOMEM (the caller then takes the general path).
static int linear_panels(const ggr_format *f, ggr_panel_fn panel, const uint8_t *w, int64_t rows,
                         int64_t cols, const uint8_t *xq, int64_t n_tokens, float *y, int threads) {
    const int64_t nb = cols / QK, n_groups = (n_tokens + 7) / 8;
    // aligned_alloc wants a size that is a multiple of the alignment (ASan checks it)
    const size_t panel_bytes = (size_t)(n_groups * nb) * sizeof(ggr_panel8);
    ggr_panel8 *panels = aligned_alloc(64, (panel_bytes + 63) / 64 * 64);
    if (!panels) return GGR_ERR_NOMEM;
    panel_job j = {panel, f->panel_offset, w, rows, nb * (int64_t)f->block_bytes, nb, n_tokens,
                   n_groups, 0, (const block_q8_0x *)xq, panels, y};
    ggr_pool_run(pack_group, &j, n_groups);
    int64_t tile = rows / (4 * (int64_t)threads);
    tile = (tile + PANEL_ROWS - 1) / PANEL_ROWS * PANEL_ROWS;
    j.tile_rows = tile < PANEL_ROWS ? PANEL_ROWS : tile;
    ggr_pool_run(panel_tile, &j, (rows + j.tile_rows - 1) / j.tile_rows);
    free(panels);
    return GGR_OK;
}

// ---------------------------------------------------------------- prefill tiles (FORMATS.gemm)
// One task = GGR_GEMM_ROWS rows times every token: the gemm kernel rearranges the rows once
// into this thread's scratch buffer and runs the tokens that fill whole gemm_group-groups past
// them; the last n_tokens % gemm_group tokens take the one-row kernel (as llama.cpp's
// repacked Q4_K path does: gemm for the 4-token groups, gemv for the rest).
typedef struct {
    ggr_gemm_fn gemm;
    ggr_dot_fn dot;
    size_t scratch_bytes;
    const uint8_t *w;
    int nb;    // blocks per row
    int group; // tokens per gemm group
    int64_t rows, cols, row_bytes;
    const uint8_t *xq;
    int64_t xq_row_bytes, n_tokens;
    float *y;
    int failed; // set if a thread's scratch buffer cannot be allocated
} gemm_job;

static _Thread_local void *tl_scratch; // grows to the largest tile seen; kept for the thread's life
static _Thread_local size_t tl_scratch_bytes;

static void *thread_scratch(size_t bytes) {
    if (bytes > tl_scratch_bytes) {
        free(tl_scratch);
        tl_scratch = aligned_alloc(64, (bytes + 63) / 64 * 64);
        tl_scratch_bytes = tl_scratch ? bytes : 0;
    }
    return tl_scratch;
}

static void gemm_tile(void *ctx, int64_t task) {
    gemm_job *j = ctx;
    const int64_t r0 = task * GGR_GEMM_ROWS;
    const int n = (int)(j->rows - r0 < GGR_GEMM_ROWS ? j->rows - r0 : GGR_GEMM_ROWS);
    const int64_t groups = j->n_tokens / j->group * j->group;
    void *scratch = thread_scratch(j->scratch_bytes);
    if (!scratch) {
        j->failed = 1;
        return;
    }
    j->gemm(j->nb, j->w + r0 * j->row_bytes, j->row_bytes, n, j->xq,
            j->xq_row_bytes, groups, j->y + r0, j->rows, scratch);
    for (int64_t t = groups; t < j->n_tokens; t++)
        for (int64_t r = r0; r < r0 + n; r++)
            j->y[t * j->rows + r] =
                j->dot((int)j->cols, j->w + r * j->row_bytes, j->xq + t * j->xq_row_bytes);
}

// Decode (1 token) wants enough row tiles to balance the threads, but each at least
// DECODE_MIN_TASK bytes (a task is a new stream through memory: the 1.5B's Q, K, V and O,
// 0.2-1.3 MB each, were ~10% faster with 256 KB tasks than with 16 tiles per matrix), whole
// GGR_DOTR_ROWS-row groups for the several-rows kernels; prefill wants a weight tile small
// enough to stay in cache while its token block passes over it.
#define DECODE_MIN_TASK (256 * 1024)
static void pick_tiles(dot_job *j, int threads) {
    int64_t tile = j->n_tokens == 1 ? j->rows / (8 * (int64_t)threads) : (32 * 1024) / j->row_bytes;
    if (j->n_tokens == 1 && tile < DECODE_MIN_TASK / j->row_bytes) tile = DECODE_MIN_TASK / j->row_bytes;
    if (j->n_tokens == 1 && j->dotr) tile = (tile + GGR_DOTR_ROWS - 1) / GGR_DOTR_ROWS * GGR_DOTR_ROWS;
    if (tile > 1024) tile = 1024;
    if (j->n_tokens > 1 && tile > j->rows / (4 * (int64_t)threads))
        tile = j->rows / (4 * (int64_t)threads);
    j->tile_rows = tile < 1 ? 1 : tile;
    j->n_row_tiles = (j->rows + j->tile_rows - 1) / j->tile_rows;
    int64_t tokens = (256 * 1024) / j->xq_row_bytes / GGR_NT * GGR_NT;
    j->tile_tokens = tokens < GGR_NT ? GGR_NT : tokens;
}

// Activations -> the format's activation type (xq), once per call. *xq is x itself for F32
// weights (nothing to convert), else a buffer the caller frees.
static int quantize_activations(const ggr_format *f, const float *x, int64_t cols,
                                int64_t n_tokens, int isa, uint8_t **xq) {
    if (f->act == ACT_F32) {
        *xq = (uint8_t *)x;
        return GGR_OK;
    }
    const int64_t xq_row_bytes = act_row_bytes(f, cols);
    *xq = aligned_alloc(64, (size_t)((n_tokens * xq_row_bytes + 63) / 64 * 64));
    if (!*xq) return GGR_ERR_NOMEM;
    quant_job qj = {f, x, cols, *xq, xq_row_bytes, isa};
    if (n_tokens >= 4)
        ggr_pool_run(quantize_row, &qj, n_tokens);
    else
        for (int64_t t = 0; t < n_tokens; t++) quantize_row(&qj, t);
    return GGR_OK;
}

// 1 if this many tokens take the format's prefill tile or panel kernel, not dot_tile.
static int takes_prefill_kernel(const ggr_format *f, int level, int64_t n_tokens) {
    return (f->gemm[level] && n_tokens >= f->gemm_min) ||
           (f->act == ACT_Q8_0X && f->panel[level] && n_tokens >= 8);
}

static dot_job make_dot_job(const ggr_format *f, int level, const uint8_t *w, int64_t rows,
                            int64_t cols, const uint8_t *xq, int64_t n_tokens, float *y,
                            int threads) {
    const int64_t row_bytes = cols / f->block_elems * f->block_bytes;
    dot_job dj = {f->dot[level],         f->dotn[level], f->dotr[level], w, rows, cols, row_bytes,
                  xq,                    act_row_bytes(f, cols),         n_tokens,
                  y,                     0,              0,              0};
    pick_tiles(&dj, threads);
    return dj;
}

static int check_args(const ggr_format *f, int64_t rows, int64_t cols, int64_t n_tokens,
                      int *isa) {
    if (!f) return GGR_ERR_TYPE;
    if (rows <= 0 || cols <= 0 || n_tokens <= 0 || cols % f->block_elems || cols > INT32_MAX)
        return GGR_ERR_SHAPE;
    if (*isa < 0) *isa = ggr_current_isa();
    if (*isa >= ISA_COUNT || *isa > ggr_best_isa()) return GGR_ERR_ISA;
    return GGR_OK;
}

// tag::linear[]
int ggr_linear(int qtype, const uint8_t *w, int64_t rows, int64_t cols, const float *x,
               int64_t n_tokens, float *y, int isa) {
    const ggr_format *f = ggr_format_of(qtype);
    const int bad = check_args(f, rows, cols, n_tokens, &isa);
    if (bad) return bad;
    const int threads = ggr_pool_threads();

    // 1. activations -> the format's activation type, once per call
    uint8_t *xq = NULL;
    if (quantize_activations(f, x, cols, n_tokens, isa, &xq)) return GGR_ERR_NOMEM;
    const int64_t xq_row_bytes = act_row_bytes(f, cols);

    // 2. dot products, tiled over rows and tokens
    const int level = pick_level(f, isa);
    const ggr_gemm_fn gemm = f->gemm[level];
    if (gemm && n_tokens >= f->gemm_min) {
        const int nb = (int)(cols / f->block_elems);
        gemm_job gj = {gemm,         f->dot[level],    f->gemm_scratch(nb),
                       w,            nb,               f->gemm_group,
                       rows,         cols,             nb * (int64_t)f->block_bytes,
                       xq,           xq_row_bytes,     n_tokens,
                       y,            0};
        ggr_pool_run(gemm_tile, &gj, (rows + GGR_GEMM_ROWS - 1) / GGR_GEMM_ROWS);
        free(xq);
        return gj.failed ? GGR_ERR_NOMEM : GGR_OK;
    }
    const ggr_panel_fn panel = f->act == ACT_Q8_0X ? f->panel[level] : NULL;
    if (panel && n_tokens >= 8 &&
        linear_panels(f, panel, w, rows, cols, xq, n_tokens, y, threads) == GGR_OK) {
        free(xq);
        return GGR_OK;
    }
    dot_job dj = make_dot_job(f, level, w, rows, cols, xq, n_tokens, y, threads);
    const int64_t n_token_blocks = (n_tokens + dj.tile_tokens - 1) / dj.tile_tokens;
    ggr_pool_run(dot_tile, &dj, n_token_blocks * dj.n_row_tiles);

    if (xq != (const uint8_t *)x) free(xq);
    return GGR_OK;
}
// end::linear[]

// ---------------------------------------------------------------- several weights, one input
// tag::linear_many[]
// y_i = x W_i^T for weights that share their input (a layer's Q, K and V; gate and up): the
// same numbers as one ggr_linear call per weight, bit for bit (every row meets the same kernel
// and the same quantized activations), but for decode the activations are quantized once per
// activation type and all the weights' row tiles go to the thread pool as one job. A decode
// step then pays the pool's start and its end (threads waiting for the last tile) once for
// Q, K and V instead of three times: K and V are small (a few hundred KB), and a small matrix
// is mostly start and end. Prefill (the tile and panel kernels) takes one call per weight.
typedef struct {
    dot_job jobs[GGR_MANY_MAX];
    int64_t first[GGR_MANY_MAX + 1]; // jobs[i] owns tasks first[i] .. first[i + 1] - 1
    int n;
} many_job;

static void many_tile(void *ctx, int64_t task) {
    const many_job *m = ctx;
    int i = 0;
    while (task >= m->first[i + 1]) i++;
    dot_tile((void *)&m->jobs[i], task - m->first[i]);
}

int ggr_linear_many(int n, const int *qtypes, const uint8_t *const *ws, const int64_t *rows,
                    int64_t cols, const float *x, int64_t n_tokens, float *const *ys, int isa) {
    if (n <= 0 || n > GGR_MANY_MAX) return GGR_ERR_SHAPE;
    const ggr_format *f[GGR_MANY_MAX];
    int level[GGR_MANY_MAX], prefill = 0;
    for (int i = 0; i < n; i++) {
        f[i] = ggr_format_of(qtypes[i]);
        const int bad = check_args(f[i], rows[i], cols, n_tokens, &isa);
        if (bad) return bad;
        level[i] = pick_level(f[i], isa);
        prefill |= takes_prefill_kernel(f[i], level[i], n_tokens);
    }
    if (prefill) { // each weight through ggr_linear: its own tile or panel kernel
        for (int i = 0; i < n; i++) {
            const int st = ggr_linear(qtypes[i], ws[i], rows[i], cols, x, n_tokens, ys[i], isa);
            if (st) return st;
        }
        return GGR_OK;
    }
    const int threads = ggr_pool_threads();
    uint8_t *xq[GGR_MANY_MAX] = {0}; // one buffer per activation type: weights share it
    int st = GGR_OK;
    many_job m = {.n = n};
    for (int i = 0; i < n && !st; i++) {
        for (int k = 0; k < i && !xq[i]; k++)
            if (f[k]->act == f[i]->act) xq[i] = xq[k];
        if (!xq[i]) st = quantize_activations(f[i], x, cols, n_tokens, isa, &xq[i]);
        if (st) break;
        m.jobs[i] = make_dot_job(f[i], level[i], ws[i], rows[i], cols, xq[i], n_tokens, ys[i],
                                 threads);
        const dot_job *j = &m.jobs[i];
        m.first[i + 1] =
            m.first[i] + (n_tokens + j->tile_tokens - 1) / j->tile_tokens * j->n_row_tiles;
    }
    if (!st) ggr_pool_run(many_tile, &m, m.first[n]);
    for (int i = 0; i < n; i++) { // free each buffer once (shared ones appear more than once)
        int owner = xq[i] != (const uint8_t *)x;
        for (int k = 0; k < i && owner; k++) owner = xq[k] != xq[i];
        if (owner) free(xq[i]);
    }
    return st;
}
// end::linear_many[]

// ---------------------------------------------------------------- memory bandwidth probe
// Sum a buffer as 64-bit words on every pool thread: the speed a matvec can at best reach,
// since a matvec reads each weight byte exactly once.
#define GGR_STREAM_TASKS 1024 // most chunks one probe splits the buffer into

typedef struct {
    const uint8_t *buf;
    int64_t n_bytes, chunk;
    uint64_t partial[GGR_STREAM_TASKS];
} stream_job;

static void stream_chunk(void *ctx, int64_t task) {
    stream_job *j = ctx;
    const int64_t start = task * j->chunk;
    const int64_t end = start + j->chunk < j->n_bytes ? start + j->chunk : j->n_bytes;
    const uint64_t *p = (const uint64_t *)(j->buf + start);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0, n = (end - start) / 8;
    for (; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    for (; i < n; i++) s0 += p[i];
    j->partial[task] = s0 + s1 + s2 + s3;
}

double ggr_stream_read(const uint8_t *buf, int64_t n_bytes) {
    static stream_job j; // large; the pool serializes jobs, this function is for benchmarks
    j.buf = buf;
    j.n_bytes = n_bytes;
    // chunk = ceil(n_bytes / TASKS) rounded up to a page, so tasks = ceil(n_bytes / chunk)
    // <= TASKS (rounding n_bytes / TASKS down first gave 1025 tasks for 4194487 bytes)
    const int64_t per_task = (n_bytes + GGR_STREAM_TASKS - 1) / GGR_STREAM_TASKS;
    j.chunk = (per_task + 4095) / 4096 * 4096;
    if (j.chunk < 4096) j.chunk = 4096;
    const int64_t tasks = n_bytes > 0 ? (n_bytes + j.chunk - 1) / j.chunk : 0;
    ggr_pool_run(stream_chunk, &j, tasks);
    uint64_t s = 0;
    for (int64_t t = 0; t < tasks; t++) s += j.partial[t];
    return (double)s;
}
