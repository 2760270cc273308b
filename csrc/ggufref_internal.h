// ggufref_internal.h — what the kernel files share: half/bfloat conversions, the dot-product
// signature, the per-format dispatch table, activation quantizers and the thread pool.
//
// Legend: n = elements in one row (a multiple of the format's block size),
//         w = one weight row (n / block_elems blocks), x = one activation row in the format's
//         activation type (float, block_q8_0x or block_q8_K).
#ifndef GGUFREF_INTERNAL_H
#define GGUFREF_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ggufref_blocks.h"

// ggml's type ids (gguf.GGMLQuantizationType); they are stored in GGUF files.
enum ggr_type {
    GGR_F32 = 0,
    GGR_F16 = 1,
    GGR_Q4_0 = 2,
    GGR_Q4_1 = 3,
    GGR_Q5_0 = 6,
    GGR_Q5_1 = 7,
    GGR_Q8_0 = 8,
    GGR_Q2_K = 10,
    GGR_Q3_K = 11,
    GGR_Q4_K = 12,
    GGR_Q5_K = 13,
    GGR_Q6_K = 14,
    GGR_BF16 = 30,
};

// Instruction-set levels, lowest first. Every level falls back to the one below for formats
// that have no kernel of their own at that level.
enum ggr_isa { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_COUNT = 3 };

// What the activations of a format are converted to before the dot products (ggml's
// vec_dot_type): F16 / BF16 weights meet activations rounded to half / bfloat16 (kept as float,
// so the products are exact and the kernels stay float x half).
enum ggr_act {
    ACT_F32 = 0,
    ACT_Q8_0X = 1,
    ACT_Q8_K = 2,
    ACT_Q8_1X = 3,
    ACT_F16R = 4,
    ACT_BF16R = 5
};

// ---------------------------------------------------------------- half and bfloat16
static inline float ggr_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t ggr_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// binary16 -> binary32 is exact: widen the exponent, shift the mantissa.
static inline float ggr_fp16_to_fp32(ggml_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return ggr_bits_to_f32(sign | 0x7f800000 | (man << 13)); // inf, nan
    if (exp == 0) { // zero or subnormal: man * 2^-24
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return ggr_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// binary32 -> binary16, round to nearest even (what F16C's vcvtps2ph does by default).
static inline ggml_half ggr_fp32_to_fp16(float f) {
    uint32_t x = ggr_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return (ggml_half)(sign | 0x7e00);      // nan
    if (ax >= 0x477ff000) return (ggml_half)(sign | 0x7c00);     // >= 65520 rounds to inf
    if (ax < 0x38800000) {                                       // below 2^-14: subnormal half
        float q = nearbyintf(ggr_bits_to_f32(ax) * 16777216.0f); // units of 2^-24
        return (ggml_half)(sign | (uint32_t)q);
    }
    uint32_t h = ax - 0x38000000; // rebias the exponent 127 -> 15 (still 13 extra bits)
    h = (h + 0xfff + ((h >> 13) & 1)) >> 13;
    return (ggml_half)(sign | h);
}

static inline float ggr_bf16_to_fp32(ggml_bf16 b) { return ggr_bits_to_f32((uint32_t)b << 16); }

// binary32 -> bfloat16, round to nearest even on the top 16 bits; a NaN stays a (quiet) NaN.
static inline ggml_bf16 ggr_fp32_to_bf16(float f) {
    uint32_t u = ggr_f32_to_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (ggml_bf16)((u >> 16) | 0x40);
    return (ggml_bf16)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static inline float ggr_round_f16(float x) { return ggr_fp16_to_fp32(ggr_fp32_to_fp16(x)); }
static inline float ggr_round_bf16(float x) { return ggr_bf16_to_fp32(ggr_fp32_to_bf16(x)); }

// ---------------------------------------------------------------- dot products
// tag::dispatch[]
// One weight row dotted with one activation row: sum_i w[i] * x[i] (x already converted).
typedef float (*ggr_dot_fn)(int n, const void *w, const void *x);

// One weight row dotted with GGR_NT activation rows at x, x + xs, x + 2 xs, ... bytes
// (prefill: each weight block is decoded once for GGR_NT tokens). out[t] equals what the
// single-row kernel of the same level returns for row t, bit for bit.
#define GGR_NT 8
typedef void (*ggr_dotn_fn)(int n, const void *w, const void *x, int64_t xs, float *out);

// Prefill panels (prefill_avx512.c): n_rows weight rows (row_bytes apart, nb blocks each) times
// one panel of 8 tokens' activations (ggr_panel8, below) -> out (n_rows, 8). Only for formats
// whose activations are block_q8_0x; results equal the level's one-row kernel's, bit for bit.
struct ggr_panel8;
typedef void (*ggr_panel_fn)(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                             const struct ggr_panel8 *p, float *out);

// Prefill by tiles (prefill_avx512.c), for the formats where llama.cpp's own prefill kernel rounds
// differently from its one-token kernel: n_rows (<= GGR_GEMM_ROWS) weight rows times n_tokens
// activation rows xs bytes apart -> y[t * y_stride + r]. The rows are first rearranged into
// scratch (gemm_scratch(nb) bytes, 64-byte aligned). The format table says from how many tokens
// llama.cpp switches to that kernel (gemm_min) and in what groups it takes the tokens
// (gemm_group: the last n_tokens % gemm_group take the one-row kernel, as llama.cpp's do).
#define GGR_GEMM_ROWS 16
typedef void (*ggr_gemm_fn)(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                            const uint8_t *x, int64_t xs, int64_t n_tokens, float *y,
                            int64_t y_stride, void *scratch);
typedef size_t (*ggr_gemm_scratch_fn)(int nb);

// Decode over several rows (one token): n_rows (<= GGR_DOTR_ROWS) rows stride bytes apart ->
// out[r], each bit for bit what the level's one-row kernel returns; the kernel prepares the
// activations once for all of them. Rows of more than GGR_DOTR_MAX_BLOCKS blocks take the
// one-row kernel (the prepared activations live on the stack).
#define GGR_DOTR_ROWS 8
#define GGR_DOTR_MAX_BLOCKS 64
typedef void (*ggr_dotr_fn)(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                            float *out);

typedef struct {
    int qtype;                     // enum ggr_type
    const char *name;              // "Q4_K"
    int block_elems;               // elements per block
    int block_bytes;               // bytes per block
    int act;                       // enum ggr_act
    ggr_dot_fn dot[ISA_COUNT];     // per level; NULL = use the level below
    ggr_dotn_fn dotn[ISA_COUNT];   // per level; NULL = none (the row kernel is called per token)
    ggr_panel_fn panel[ISA_COUNT]; // per level; NULL = none (prefill goes through dotn / dot)
    int panel_offset;              // panel: weight quants + offset are unsigned (Q5_0: 16)
    ggr_gemm_fn gemm[ISA_COUNT];   // per level; NULL = none
    ggr_gemm_scratch_fn gemm_scratch;
    int gemm_min, gemm_group;      // gemm from this many tokens on, in groups of this many
    ggr_dotr_fn dotr[ISA_COUNT];   // per level; NULL = none (decode calls dot row by row)
} ggr_format;

const ggr_format *ggr_format_of(int qtype); // NULL if unsupported
// end::dispatch[]

// Scalar references (dot_scalar.c): they read as the formula.
float ggr_dot_f32_scalar(int n, const void *w, const void *x);
float ggr_dot_f16_scalar(int n, const void *w, const void *x);
float ggr_dot_bf16_scalar(int n, const void *w, const void *x);
float ggr_dot_q4_0_scalar(int n, const void *w, const void *x);
float ggr_dot_q4_1_scalar(int n, const void *w, const void *x);
float ggr_dot_q5_0_scalar(int n, const void *w, const void *x);
float ggr_dot_q5_1_scalar(int n, const void *w, const void *x);
float ggr_dot_q8_0_scalar(int n, const void *w, const void *x);
float ggr_dot_q2_K_scalar(int n, const void *w, const void *x);
float ggr_dot_q3_K_scalar(int n, const void *w, const void *x);
float ggr_dot_q4_K_scalar(int n, const void *w, const void *x);
float ggr_dot_q5_K_scalar(int n, const void *w, const void *x);
float ggr_dot_q6_K_scalar(int n, const void *w, const void *x);

// AVX2 + FMA + F16C (dot_avx2.c).
float ggr_dot_f32_avx2(int n, const void *w, const void *x);
float ggr_dot_f16_avx2(int n, const void *w, const void *x);
float ggr_dot_bf16_avx2(int n, const void *w, const void *x);
float ggr_dot_q4_0_avx2(int n, const void *w, const void *x);
float ggr_dot_q4_1_avx2(int n, const void *w, const void *x);
float ggr_dot_q5_0_avx2(int n, const void *w, const void *x);
float ggr_dot_q5_1_avx2(int n, const void *w, const void *x);
float ggr_dot_q8_0_avx2(int n, const void *w, const void *x);
float ggr_dot_q2_K_avx2(int n, const void *w, const void *x);
float ggr_dot_q3_K_avx2(int n, const void *w, const void *x);
float ggr_dot_q4_K_avx2(int n, const void *w, const void *x);
float ggr_dot_q5_K_avx2(int n, const void *w, const void *x);
float ggr_dot_q6_K_avx2(int n, const void *w, const void *x);

// AVX-512 F/BW/VL + VNNI (dot_avx512.c): the formats of the default model's hot path.
float ggr_dot_q4_0_avx512(int n, const void *w, const void *x);
float ggr_dot_q5_0_avx512(int n, const void *w, const void *x);
float ggr_dot_q8_0_avx512(int n, const void *w, const void *x);
float ggr_dot_q4_K_avx512(int n, const void *w, const void *x);
float ggr_dot_q5_K_avx512(int n, const void *w, const void *x);
float ggr_dot_q6_K_avx512(int n, const void *w, const void *x);
void ggr_dotn_q5_0_avx512(int n, const void *w, const void *x, int64_t xs, float *out);
void ggr_dotn_q8_0_avx512(int n, const void *w, const void *x, int64_t xs, float *out);

// Prefill panels (prefill_avx512.c): 8 tokens' Q8_0 activations per block, side by side.
typedef struct ggr_panel8 {
    float d[8];          // the 8 tokens' scales
    int8_t qs[8][QK];    // their quants
    int32_t corr[8][8];  // -offset * (sum of each 4 quants): vpdpbusd's start for unsigned weights
} ggr_panel8;
void ggr_pack_panel8(int nb, const block_q8_0x *const x[8], int offset, ggr_panel8 *p);
// n_rows Q5_0 rows (row_bytes apart) times one panel (nb blocks): out (n_rows, 8).
// Q4_K prefill in llama.cpp's repacked order (see ggr_gemm_fn).
void ggr_gemm_q4_K_avx512(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                          const uint8_t *x, int64_t xs, int64_t n_tokens, float *y,
                          int64_t y_stride, void *scratch);
size_t ggr_gemm_scratch_q4_K(int nb);
void ggr_dotr_q4_K_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out);
void ggr_dotr_q5_0_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out);
void ggr_dotr_q8_0_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out);
void ggr_dotr_q6_K_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out);
// Q6_K prefill in the order of llama.cpp's tiled K-quant kernel (ggml-cpu/tiled, 8+ tokens).
void ggr_gemm_q6_K_avx512(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                          const uint8_t *x, int64_t xs, int64_t n_tokens, float *y,
                          int64_t y_stride, void *scratch);
size_t ggr_gemm_scratch_q6_K(int nb);
void ggr_panel_q5_0_avx512(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                           const ggr_panel8 *p, float *out);

// ---------------------------------------------------------------- activation quantizers
// x (n,) float -> n / 32 block_q8_0x or block_q8_1x, or n / 256 block_q8_K.
void ggr_quantize_q8_0x_scalar(int n, const float *x, block_q8_0x *y);
void ggr_quantize_q8_1x_scalar(int n, const float *x, block_q8_1x *y);
void ggr_quantize_q8_1x_avx2(int n, const float *x, block_q8_1x *y);
void ggr_quantize_q8_K_scalar(int n, const float *x, block_q8_K *y);
void ggr_quantize_q8_0x_avx2(int n, const float *x, block_q8_0x *y);
void ggr_quantize_q8_K_avx2(int n, const float *x, block_q8_K *y);

// ---------------------------------------------------------------- float vector helpers (ops.c)
void ggr_axpy_avx2(int n, float a, const float *x, float *y); // y += a * x
void ggr_gelu_table_mul_avx2(int64_t n, const float *gate, const float *up, float *out,
                             const ggml_half *table);
void ggr_silu_mul_avx2(int64_t n, const float *gate, const float *up, float *out);
// n values in rows of `row` (attn_ggml_avx512.c): llama.cpp's AVX-512 SwiGLU, bit for bit.
void ggr_silu_mul_ggml_avx512(int64_t n, int64_t row, const float *gate, const float *up,
                              float *out);

// ---------------------------------------------------------------- attention (ops.c, attn_ggml*.c)
// Values of ggr_attention's mode argument.
#define GGR_ATTN_F32 0         // float32 scores and weighted sum (our order)
#define GGR_ATTN_GGML_DECODE 1 // llama.cpp's f16 path, its decode summation order for every token
#define GGR_ATTN_GGML 2        // llama.cpp's f16 path, its prefill order when n_tokens >= 2

typedef struct {
    const float *q, *k, *v; // (T, H, hd), (Hkv, C, hd), (Hkv, C, hd)
    int64_t n_head, n_kv_head, hd, n_ctx, pos0, window;
    float scale, softcap;
    int mode;   // GGR_ATTN_*
    int64_t heads_per_task; // f16 modes: 1, or 4 heads of one KV head (4 | n_head / n_kv_head)
    float *out; // (T, H, hd)
    int failed; // set (to 1, by any thread) if a long context's score buffer cannot be allocated
} ggr_attn_job;

// One task of the GGR_ATTN_GGML* modes (a token and heads_per_task heads); sgemm: use
// llamafile's summation order.
void ggr_attend_ggml_ref(const ggr_attn_job *j, int64_t task, int sgemm);
void ggr_attend_ggml_avx2(const ggr_attn_job *j, int64_t task, int sgemm);
void ggr_attend_ggml_avx512(const ggr_attn_job *j, int64_t task, int sgemm);

// ---------------------------------------------------------------- cpu features, threads
#define GGR_CPU_AVX2 1     // AVX2 + FMA + F16C, with the OS saving ymm state
#define GGR_CPU_AVX512 2   // AVX-512 F + BW + VL, with the OS saving zmm and mask state
#define GGR_CPU_VNNI 4     // AVX-512 VNNI
#define GGR_CPU_AVX_VNNI 8 // VEX-encoded VNNI
#define GGR_CPU_BF16 16    // AVX-512 BF16
int ggr_cpu_features(void);
int ggr_best_isa(void); // highest enum ggr_isa the CPU runs

// Run fn(ctx, task) for task in [0, n_tasks) on the pool; returns when all are done.
typedef void (*ggr_task_fn)(void *ctx, int64_t task);
void ggr_pool_run(ggr_task_fn fn, void *ctx, int64_t n_tasks);
int ggr_pool_threads(void);

#endif
