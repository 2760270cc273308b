// dot_avx512.c — AVX-512 (F, BW, VL) + VNNI twins for the default model's hot path:
// Q5_0 (q, k, gate, up), Q8_0 (v, the tied 262144-row output), Q4_K (attn_output),
// Q6_K (ffn_down), plus Q4_0 and Q5_K. Other formats fall back to dot_avx2.c.
//
// What VNNI buys: vpdpbusd multiplies 8-bit unsigned x 8-bit signed and adds groups of four
// into 32-bit lanes in one instruction (AVX2 needs maddubs + madd), and vpdpwssd multiplies
// 16-bit pairs and accumulates, which applies the K-quant sub-block scales for free.
// The K-quant kernels work on 512-bit registers: 64 quants = 2 sub-blocks of Q4_K or 4 of Q6_K.
// Integer sums are exact and equal to the scalar reference's; only the float order differs.
// Q4_0, Q5_0, Q8_0 and Q6_K add their float terms in ggml's order (llama.cpp's bits).
#if defined(__clang__)
#pragma clang attribute push(                                                                      \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))),                 \
    apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif

#include <immintrin.h>

#include "ggufref_internal.h"
#include "kquant_simd.h"

// Decode reads each row top to bottom, one stream per thread, and fetches ahead of the block it
// is reading. Measured on an AMD EPYC (weights from DRAM, 2 threads, plain streaming reads at
// ~50 GB/s): Q4_K without prefetch ~15 GB/s, 4 KB ahead into L1 ~24, 8 KB ahead into L2 ~34;
// Q6_K ~34 either way; Q5_0 and Q8_0 fell back with the L2 hint, so they keep 4 KB into L1.
// Rows of 12288 (an 8B model's ffn_down) did better 16 KB ahead (Q4_K ~27 -> ~31 GB/s).
#define DECODE_PREFETCH 16384       // K-quants: bytes ahead, into L2 (_MM_HINT_T1)
#define DECODE_PREFETCH_LEGACY 4096 // Q5_0, Q8_0: bytes ahead, into L1 (_MM_HINT_T0)

// F16C converts a half in one instruction (the scalar ggr_fp16_to_fp32 needs a dozen).
static inline float h2f(ggml_half h) { return _cvtsh_ss(h); }

static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i nibbles_32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

// ---------------------------------------------------------------- legacy formats
// Signed q times signed x in groups of 4 -> 8 x int32 (|q| unsigned, q's sign moved onto x).
static inline __m256i dot_i8_i8(__m256i q, const int8_t *x) {
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(q, q),
                               _mm256_sign_epi8(xv, q));
}

// The legacy formats add their float terms exactly as ggml's x86 kernels do (so the results are
// llama.cpp's bit for bit): per block 8 int32 lanes of 4 products of (q - offset) and qx, then
// acc = fma(d_w d_x, lanes, acc) in one chain, block after block, and the 8 lanes summed last.
float ggr_dot_q4_0_avx512(int n, const void *w, const void *x) {
    const block_q4_0 *wb = w;
    const block_q8_0x *xb = x;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK; b++) {
        const __m256i q = _mm256_sub_epi8(nibbles_32(wb[b].qs), _mm256_set1_epi8(8));
        const float d = h2f(wb[b].d) * xb[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(dot_i8_i8(q, xb[b].qs)), acc);
    }
    return hsum256_ps(acc);
}

// tag::dot_q5_0_avx512[]
// Q5_0: q = nibble + 16 where the fifth bit is set (qh is itself the byte mask), minus 16.
static inline __m256i q5_0_quants(const block_q5_0 *wb) {
    uint32_t qh;
    memcpy(&qh, wb->qh, 4);
    __m256i q = nibbles_32(wb->qs);
    q = _mm256_mask_add_epi8(q, (__mmask32)qh, q, _mm256_set1_epi8(16)); // 0..31
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));                     // -16..15
}

// One weight row against nt activation rows (x + t * xs bytes): each block is decoded once for
// all nt tokens. Every token sees the same float operations in the same order whatever nt is,
// so a token's result does not depend on how many tokens share the call.
static inline __attribute__((always_inline)) void
q5_0_rows(int n, const block_q5_0 *wb, const uint8_t *x, int64_t xs, int nt, float *out) {
    __m256 acc[GGR_NT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < n / QK; b++) {
        if (nt == 1 && b % 2 == 0) // decode: one stream per thread (DECODE_PREFETCH_LEGACY)
            _mm_prefetch((const char *)(wb + b) + DECODE_PREFETCH_LEGACY, _MM_HINT_T0);
        const __m256i q = q5_0_quants(wb + b);
        const float dw = h2f(wb[b].d);
        for (int t = 0; t < nt; t++) {
            const block_q8_0x *xb = (const block_q8_0x *)(x + t * xs) + b;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d),
                                     _mm256_cvtepi32_ps(dot_i8_i8(q, xb->qs)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum256_ps(acc[t]);
}

float ggr_dot_q5_0_avx512(int n, const void *w, const void *x) {
    float out;
    q5_0_rows(n, w, x, 0, 1, &out);
    return out;
}

void ggr_dotn_q5_0_avx512(int n, const void *w, const void *x, int64_t xs, float *out) {
    q5_0_rows(n, w, x, xs, GGR_NT, out);
}

void ggr_dotr_q5_0_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out) { // rows top to bottom, one stream (as Q6_K)
    for (int r = 0; r < n_rows; r++)
        q5_0_rows(n, (const block_q5_0 *)(w + r * stride), x, 0, 1, out + r);
}
// end::dot_q5_0_avx512[]

// Q8_0: the same chain as Q5_0.
static inline __attribute__((always_inline)) void
q8_0_rows(int n, const block_q8_0 *wb, const uint8_t *x, int64_t xs, int nt, float *out) {
    __m256 acc[GGR_NT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < n / QK; b++) {
        if (nt == 1 && b % 2 == 0) // decode: one stream per thread (DECODE_PREFETCH_LEGACY)
            _mm_prefetch((const char *)(wb + b) + DECODE_PREFETCH_LEGACY, _MM_HINT_T0);
        const __m256i q = _mm256_loadu_si256((const __m256i *)wb[b].qs);
        const float dw = h2f(wb[b].d);
        for (int t = 0; t < nt; t++) {
            const block_q8_0x *xb = (const block_q8_0x *)(x + t * xs) + b;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d),
                                     _mm256_cvtepi32_ps(dot_i8_i8(q, xb->qs)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum256_ps(acc[t]);
}

float ggr_dot_q8_0_avx512(int n, const void *w, const void *x) {
    float out;
    q8_0_rows(n, w, x, 0, 1, &out);
    return out;
}

void ggr_dotn_q8_0_avx512(int n, const void *w, const void *x, int64_t xs, float *out) {
    q8_0_rows(n, w, x, xs, GGR_NT, out);
}

void ggr_dotr_q8_0_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out) { // rows top to bottom, one stream (as Q6_K)
    for (int r = 0; r < n_rows; r++)
        q8_0_rows(n, (const block_q8_0 *)(w + r * stride), x, 0, 1, out + r);
}

// ---------------------------------------------------------------- K-quants
// unpack_k4 and mins_dot_bsums: kquant_simd.h

// 16-bit lane index vector: lanes 0..15 pick a, lanes 16..31 pick b.
static inline __m512i pick2(int a, int b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)a)),
                              _mm256_set1_epi16((short)b), 1);
}

// 32 bytes of nibbles -> 64 bytes: low nibbles first, then high nibbles (a Q4_K / Q5_K chunk
// of 64 elements, which is also the order of the 64 activations it meets).
static inline __m512i nibbles_64(const uint8_t *qs) {
    __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

// tag::dot_q4_K_avx512[]
// Q4_K, one token, rounded where llama.cpp rounds: llama.cpp repacks Q4_K rows eight at a time
// and its one-token kernel (ggml_gemv_q4_K_8x8_q8_K) adds, per super-block, the exact integer
// sums isum = sum_s sc_s (q . x)_s and imin = sum_s mn_s bsum_s into two float chains:
//   acc = fma(float(isum), d_w * d_x, acc),  accm = fma(float(imin), dmin_w * d_x, accm)
// and returns acc - accm. Same integers here, in 512-bit registers; same float operations:
//  - one 512-bit load of qs holds two chunks; its low nibbles are elements 0-31 and 64-95 of
//    the 128, its high nibbles 32-63 and 96-127. The activations are rearranged into that
//    order (q4k_xp), once per call of ggr_dotr_q4_K_avx512 for all its rows;
//  - the 8 scales and 8 mins are unpacked in a register (no trip through memory);
//  - the two float chains (scales, mins) run in lanes 0 and 1 of one register: the same
//    operations per lane as two scalar chains, so the same bits.
typedef struct {
    int8_t q[QK_K];   // activations in the nibble order above
    __m128i pairs;    // bsums[2s] + bsums[2s + 1], s = 0..7 (int16)
    float d;
} q4k_xp;

static inline __m128i unpack_k4_v(const block_q4_K *wb) {
    // words w0, w1, w2 of the 12 bytes; result bytes: sc[0..7], mn[0..7] (as unpack_k4).
    // One 16-byte load from the scales: the 4 bytes past them are the block's first quants,
    // in lane 3, which nothing below reads.
    const __m128i v = _mm_loadu_si128((const __m128i *)wb->scales);
    const __m128i low6 = _mm_and_si128(v, _mm_set1_epi32(0x3f3f3f3f)); // sc0-3, mn0-3
    const __m128i w2 = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    const __m128i nib = _mm_and_si128(_mm_srlv_epi32(w2, _mm_setr_epi32(0, 4, 0, 4)),
                                      _mm_set1_epi32(0x0f0f0f0f));
    const __m128i top = _mm_slli_epi32(
        _mm_and_si128(_mm_srli_epi32(v, 6), _mm_set1_epi32(0x03030303)), 4);
    const __m128i high = _mm_or_si128(nib, top); // lane 0: sc4-7, lane 1: mn4-7
    return _mm_unpacklo_epi32(low6, high);        // sc0-3, sc4-7, mn0-3, mn4-7
}

static void q4k_prepare_x(int nb, const block_q8_K *xb, q4k_xp *xp) {
    for (int b = 0; b < nb; b++) {
        for (int h = 0; h < 2; h++) { // elements 128h .. 128h + 127
            const int8_t *x = xb[b].qs + 128 * h;
            memcpy(xp[b].q + 128 * h, x, 32);
            memcpy(xp[b].q + 128 * h + 32, x + 64, 32);
            memcpy(xp[b].q + 128 * h + 64, x + 32, 32);
            memcpy(xp[b].q + 128 * h + 96, x + 96, 32);
        }
        xp[b].pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb[b].bsums),
                                     _mm_loadu_si128((const __m128i *)(xb[b].bsums + 8)));
        xp[b].d = xb[b].d;
    }
}

// One block of one row: isum over the 16 lanes' partial sums (scales applied), the mins'
// four partial products; the exact integers are summed by the caller.
static inline __attribute__((always_inline)) __m512i
q4k_block(const block_q4_K *wb, const int8_t *x, __m128i *mins_x_pairs, __m128i pairs) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    // 16-bit lane pickers: register k of a block holds sub-blocks (0,2), (1,3), (4,6), (5,7)
    const __m512i p02 = pick2(0, 2), p13 = pick2(1, 3), p46 = pick2(4, 6), p57 = pick2(5, 7);
    // see DECODE_PREFETCH
    for (int l = 0; l < 3; l++)
        _mm_prefetch((const char *)wb + DECODE_PREFETCH + 64 * l, _MM_HINT_T1);
    const __m128i scmn = unpack_k4_v(wb);
    const __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(scmn));
    *mins_x_pairs = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(scmn, 8)), pairs);
    const __m512i v0 = _mm512_loadu_si512(wb->qs), v1 = _mm512_loadu_si512(wb->qs + 64);
    const __m512i q0 = _mm512_and_si512(v0, m4);
    const __m512i q1 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
    const __m512i q2 = _mm512_and_si512(v1, m4);
    const __m512i q3 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
    __m512i isum = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                       _mm512_maddubs_epi16(q0, _mm512_loadu_si512(x)),
                                       _mm512_permutexvar_epi16(p02, sc));
    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q1, _mm512_loadu_si512(x + 64)),
                               _mm512_permutexvar_epi16(p13, sc));
    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q2, _mm512_loadu_si512(x + 128)),
                               _mm512_permutexvar_epi16(p46, sc));
    return _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q3, _mm512_loadu_si512(x + 192)),
                               _mm512_permutexvar_epi16(p57, sc));
}

// 16 lanes -> 4 (exact integer sums)
static inline __m128i fold16(__m512i v) {
    const __m256i s8 =
        _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
}

float ggr_dot_q4_K_avx512(int n, const void *w, const void *x) {
    const block_q4_K *wb = w;
    const block_q8_K *xb = x;
    __m128 acc = _mm_setzero_ps(); // lane 0: the scales' chain, lane 1: the mins' chain
    for (int b = 0; b < n / QK_K; b++) {
        q4k_xp xp;
        q4k_prepare_x(1, xb + b, &xp);
        __m128i m;
        const __m512i isum = q4k_block(wb + b, xp.q, &m, xp.pairs);
        const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(fold16(isum), m), _mm_setzero_si128());
        uint32_t dd; // d and dmin: the block's first 4 bytes
        memcpy(&dd, &wb[b].d, 4);
        const __m128 dwm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(h), _mm_mul_ps(dwm, _mm_set1_ps(xp.d)), acc);
    }
    return _mm_cvtss_f32(acc) - _mm_cvtss_f32(_mm_movehdup_ps(acc));
}
// end::dot_q4_K_avx512[]

// ---------------------------------------------------------------- Q4_K decode, several rows
// tag::dotr_q4_K_avx512[]
// Decode: the activations are rearranged once for all the call's rows; rows go eight at a time
// (q4k_rows8 below), and the last n_rows % 8 two at a time, sharing each block loop: the float
// chains of row 0 in lanes 0 (scales) and 1 (mins), of row 1 in lanes 2 and 3; each lane sees
// the same operations as the one-row kernel's chains.
static void q4k_rows2(int nb, const block_q4_K *w0, const block_q4_K *w1, const q4k_xp *xp,
                      float out[2]) {
    __m128 acc = _mm_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m128i m0, m1;
        const __m512i i0 = q4k_block(w0 + b, xp[b].q, &m0, xp[b].pairs);
        const __m512i i1 = q4k_block(w1 + b, xp[b].q, &m1, xp[b].pairs);
        const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(fold16(i0), m0),
                                         _mm_hadd_epi32(fold16(i1), m1)); // i0 m0 i1 m1
        uint32_t d0, d1; // d and dmin: each block's first 4 bytes
        memcpy(&d0, &w0[b].d, 4);
        memcpy(&d1, &w1[b].d, 4);
        const __m128 dd = _mm_cvtph_ps(
            _mm_unpacklo_epi32(_mm_cvtsi32_si128((int)d0), _mm_cvtsi32_si128((int)d1)));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(h), _mm_mul_ps(dd, _mm_set1_ps(xp[b].d)), acc);
    }
    float a[4];
    _mm_storeu_ps(a, acc);
    out[0] = a[0] - a[1];
    out[1] = a[2] - a[3];
}

// Eight rows at a time. Memory is read row after row, whole rows, one sequential stream (a
// first version walked the eight rows side by side, block by block: eight short streams that
// the hardware prefetchers did not follow; 2 threads, weights from DRAM, the 1.5B's Q4_K
// gate/up ~24 -> ~28 GB/s; its 8960-wide ffn_down rows, 16 blocks at a time ~20 -> whole rows
// ~26). Each row-block's integers (q4k_block) wait in a buffer on the stack (up to 42 KB);
// then, block by block, the bookkeeping of the eight rows is done together, one row per lane:
// 16 lanes -> one exact sum, and the float step. Lane r of acc and accm sees exactly the
// one-row kernel's operations for row r, in the same block order.
static inline __m512i sum_pairs(__m512i a, __m512i b) { // per 128 bits: a0+a2 b0+b2 a1+a3 b1+b3
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}

static inline __m256i sum16_x8(const __m512i v[8]) { // lane r: the sum of v[r]'s 16 lanes
    const __m512i p01 = sum_pairs(v[0], v[1]), p23 = sum_pairs(v[2], v[3]);
    const __m512i p45 = sum_pairs(v[4], v[5]), p67 = sum_pairs(v[6], v[7]);
    // per 128 bits: the partial sums of rows 0-3 (a) and 4-7 (b)
    const __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi64(p01, p23),
                                       _mm512_unpackhi_epi64(p01, p23));
    const __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi64(p45, p67),
                                       _mm512_unpackhi_epi64(p45, p67));
    // 128-bit lanes a0 a1 a2 a3, b0 b1 b2 b3 -> (a0+a2, a1+a3, b0+b2, b1+b3)
    const __m512i z = _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                       _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512i t = _mm512_shuffle_i32x4(z, z, _MM_SHUFFLE(3, 1, 2, 0)); // a02 b02 a13 b13
    return _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
}

static void q4k_rows8(int nb, const uint8_t *w, int64_t stride, const q4k_xp *xp,
                      float out[8]) {
    __m512i isum[GGR_DOTR_MAX_BLOCKS][8];
    __m128i mins[GGR_DOTR_MAX_BLOCKS][8];
    uint32_t dd[GGR_DOTR_MAX_BLOCKS][8]; // d and dmin: each block's first 4 bytes
    for (int r = 0; r < 8; r++) {
        const block_q4_K *wr = (const block_q4_K *)(w + r * stride);
        for (int b = 0; b < nb; b++) {
            isum[b][r] = q4k_block(wr + b, xp[b].q, &mins[b][r], xp[b].pairs);
            memcpy(&dd[b][r], &wr[b].d, 4);
        }
    }
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps(); // lane r: row r's chains
    for (int b = 0; b < nb; b++) {
        const __m128i *m = mins[b];
        const __m128i m03 = _mm_hadd_epi32(_mm_hadd_epi32(m[0], m[1]), _mm_hadd_epi32(m[2], m[3]));
        const __m128i m47 = _mm_hadd_epi32(_mm_hadd_epi32(m[4], m[5]), _mm_hadd_epi32(m[6], m[7]));
        const __m256i m8 = _mm256_inserti128_si256(_mm256_castsi128_si256(m03), m47, 1);
        const __m256i d32 = _mm256_loadu_si256((const __m256i *)dd[b]);
        const __m256 dx = _mm256_set1_ps(xp[b].d);
        const __m256 dw = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(d32));
        const __m256 dm = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(d32, 16)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum16_x8(isum[b])), _mm256_mul_ps(dw, dx), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m8), _mm256_mul_ps(dm, dx), accm);
    }
    _mm256_storeu_ps(out, _mm256_sub_ps(acc, accm));
}

void ggr_dotr_q4_K_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out) {
    const int nb = n / QK_K;
    if (nb > GGR_DOTR_MAX_BLOCKS) { // rows this long: the rearranged activations would not fit
        for (int r = 0; r < n_rows; r++) out[r] = ggr_dot_q4_K_avx512(n, w + r * stride, x);
        return;
    }
    q4k_xp xp[GGR_DOTR_MAX_BLOCKS];
    q4k_prepare_x(nb, x, xp);
    int r = 0;
    for (; r + 8 <= n_rows; r += 8) q4k_rows8(nb, w + r * stride, stride, xp, out + r);
    for (; r < n_rows; r += 2) { // the last n_rows % 8, two at a time; an odd last row with itself
        const int r1 = r + 1 < n_rows ? r + 1 : r;
        float two[2];
        q4k_rows2(nb, (const block_q4_K *)(w + r * stride), (const block_q4_K *)(w + r1 * stride),
                  xp, two);
        out[r] = two[0];
        if (r1 != r) out[r1] = two[1];
    }
}
// end::dotr_q4_K_avx512[]

float ggr_dot_q5_K_avx512(int n, const void *w, const void *x) {
    const block_q5_K *wb = w;
    const block_q8_K *xb = x;
    const __m512i sixteen = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    float extra = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], mn[8];
        unpack_k4(wb[b].scales, sc, mn);
        const float dx = xb[b].d;
        extra -= dx * h2f(wb[b].dmin) * (float)mins_dot_bsums(mn, xb[b].bsums);
        __m512i scz =
            _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        __m256i qh = _mm256_loadu_si256((const __m256i *)wb[b].qh);
        __m512i isum = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            __mmask32 k0 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * c))));
            __mmask32 k1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * c + 1))));
            __mmask64 k = (__mmask64)k0 | ((__mmask64)k1 << 32);
            __m512i q = nibbles_64(wb[b].qs + 32 * c);
            q = _mm512_mask_add_epi8(q, k, q, sixteen);
            __m512i xv = _mm512_loadu_si512(xb[b].qs + 64 * c);
            __m512i p = _mm512_maddubs_epi16(q, xv);
            isum = _mm512_dpwssd_epi32(isum, p,
                                       _mm512_permutexvar_epi16(pick2(2 * c, 2 * c + 1), scz));
        }
        const float d = dx * h2f(wb[b].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(isum), acc);
    }
    return _mm512_reduce_add_ps(acc) + extra;
}

// 16-bit lane index vector: 8 lanes each of 4k, 4k+1, 4k+2, 4k+3 (four Q6_K sub-blocks).
static inline __m512i pick4(int k) {
    __m256i lo =
        _mm256_set_m128i(_mm_set1_epi16((short)(4 * k + 1)), _mm_set1_epi16((short)(4 * k)));
    __m256i hi =
        _mm256_set_m128i(_mm_set1_epi16((short)(4 * k + 3)), _mm_set1_epi16((short)(4 * k + 2)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// tag::dot_q6_K_avx512[]
// Q6_K, one row, one token, in the lane order of ggml's one-token kernel (llama.cpp's prefill
// from 8 tokens on takes another order: prefill_avx512.c, q6_K_gemm).
float ggr_dot_q6_K_avx512(int n, const void *w, const void *x) {
    const block_q6_K *wb = w;
    const block_q8_K *xb = x;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps(); // 8 lanes, as ggml's AVX2 kernel: the same float sums
    for (int b = 0; b < n / QK_K; b++) {
        // decode walks rows top to bottom (ggr_dotr_q6_K_avx512): fetch ahead (DECODE_PREFETCH)
        for (int l = 0; l < 4; l++)
            _mm_prefetch((const char *)(wb + b) + DECODE_PREFETCH + 64 * l, _MM_HINT_T1);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb[b].scales));
        const __m512i scz = _mm512_castsi256_si512(sc16);
        // q - 32: start from -32 * sum_s sc_s bsum_s
        const __m256i off = _mm256_slli_epi32(
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)xb[b].bsums)), 5);
        __m512i isum = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
        for (int half = 0; half < 2; half++) { // elements 128 half .. 128 half + 127
            __m512i ql = _mm512_loadu_si512(wb[b].ql + 64 * half);
            __m256i qh = _mm256_loadu_si256((const __m256i *)(wb[b].qh + 32 * half));
            __m512i qhz =
                _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            // low nibbles | qh bits (0-1, then 2-3) << 4: elements 0..63 of the half;
            // high nibbles | qh bits (4-5, then 6-7) << 4: elements 64..127
            const __m512i q[2] = {
                _mm512_or_si512(_mm512_and_si512(ql, m4),
                                _mm512_and_si512(_mm512_slli_epi16(qhz, 4), m2)),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                _mm512_and_si512(qhz, m2))};
            for (int k = 0; k < 2; k++) {
                const int c = 2 * half + k; // 64 elements = sub-blocks 4c .. 4c + 3
                __m512i p = _mm512_maddubs_epi16(q[k], _mm512_loadu_si512(xb[b].qs + 64 * c));
                isum = _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi16(pick4(c), scz));
            }
        }
        // lane m + 8 holds the next 32 elements' lane m: fold (exact, in integers)
        const __m256i lanes =
            _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(xb[b].d * h2f(wb[b].d)), _mm256_cvtepi32_ps(lanes),
                              acc);
    }
    return hsum256_ps(acc);
}

// Decode over consecutive rows: the one-row kernel per row, so that the rows are read top to
// bottom as one stream (as Q4_K's are) instead of as interleaved streams.
void ggr_dotr_q6_K_avx512(int n, const uint8_t *w, int64_t stride, int n_rows, const void *x,
                          float *out) {
    for (int r = 0; r < n_rows; r++) out[r] = ggr_dot_q6_K_avx512(n, w + r * stride, x);
}
// end::dot_q6_K_avx512[]

#if defined(__clang__)
#pragma clang attribute pop
#endif
