// dot_avx2.c — AVX2 + FMA + F16C twins of dot_scalar.c (same signatures, same integer sums).
//
// The whole file is compiled for AVX2 (the pragma below) while the rest of the extension is
// plain x86-64, so one build runs anywhere: linear.c calls these only when CPUID and XGETBV
// say the CPU and the OS support AVX2 (see cpu.c).
//
// Where the time goes: the integer products. _mm256_maddubs_epi16 multiplies unsigned 8-bit
// weights by signed 8-bit activations and adds neighbours into 16 bits; _mm256_madd_epi16 then
// widens to 32 bits (times a per-sub-block scale for the K-quants). The legacy formats follow
// ggml's arithmetic exactly (signed q - offset, one float chain), so their results are
// llama.cpp's bit for bit; Q6_K multiplies the unsigned q and subtracts 32 * sum(sc bsum)
// within the integer lanes, which is also what ggml's AVX2 kernel does.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>

#include "ggufref_internal.h"
#include "kquant_simd.h"

// F16C converts a half in one instruction (the scalar ggr_fp16_to_fp32 needs a dozen).
static inline float h2f(ggml_half h) { return _cvtsh_ss(h); }

// ---------------------------------------------------------------- helpers
static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles in bytes 0..15, high nibbles in 16..31
// (the element order of Q4_0 / Q4_1 / Q5_0 / Q5_1 blocks).
static inline __m256i nibbles_32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

// 32 bits -> 32 bytes: byte j = 0x10 if bit j is set, else 0 (the fifth bit of a Q5 quant).
static inline __m256i fifth_bits_32(const uint8_t qh[4]) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    __m256i v = _mm256_set1_epi32((int)bits);
    const __m256i spread =
        _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    v = _mm256_shuffle_epi8(v, spread);                               // byte j = byte j/8 of bits
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL)); // all bits but j%8
    v = _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

// tag::dot_u8_i8[]
// Unsigned 8-bit q times signed 8-bit x, summed in groups of 4 -> 8 x int32.
static inline __m256i dot_u8_i8(__m256i q, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
}
// end::dot_u8_i8[]

// ---------------------------------------------------------------- float weights
float ggr_dot_f32_avx2(int n, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

float ggr_dot_f16_avx2(int n, const void *w, const void *x) {
    const ggml_half *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += h2f(a[i]) * b[i];
    return s;
}

float ggr_dot_bf16_avx2(int n, const void *w, const void *x) {
    const ggml_bf16 *a = w;
    const float *b = x;
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 wv = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)); // bf16 = top half of f32
        acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(b + i), acc);
    }
    float s = hsum_ps(acc);
    for (; i < n; i++) s += ggr_bf16_to_fp32(a[i]) * b[i];
    return s;
}

// y += a * x (the attention's weighted sum of values)
void ggr_axpy_avx2(int n, float a, const float *x, float *y) {
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

// ---------------------------------------------------------------- legacy formats
// tag::q4_0_avx2[]
// Signed 8-bit q times signed 8-bit x, in groups of 4 -> 8 x int32: move q's sign onto x so
// that maddubs sees |q| (unsigned) and sign(q) x, the usual trick.
static inline __m256i dot_i8_i8(__m256i q, __m256i x) {
    return dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
}

// Shared shape of the 32-element kernels, which is ggml's (so the float sums round as
// llama.cpp's do): per block, 8 int32 lanes of 4 products each, acc += (d_w d_x) * lanes in one
// chain, block after block; the 8 lanes are added at the end. Offset formats (Q4_0: q - 8,
// Q5_0: q - 16) subtract the offset from each quant first, as ggml does, so the lanes hold the
// same integers as llama.cpp's.
float ggr_dot_q4_0_avx2(int n, const void *w, const void *x) {
    const block_q4_0 *wb = w;
    const block_q8_0x *xb = x;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK; b++) {
        const float d = h2f(wb[b].d) * xb[b].d;
        const __m256i q = _mm256_sub_epi8(nibbles_32(wb[b].qs), _mm256_set1_epi8(8));
        __m256i s = dot_i8_i8(q, _mm256_loadu_si256((const __m256i *)xb[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum_ps(acc);
}
// end::q4_0_avx2[]

float ggr_dot_q4_1_avx2(int n, const void *w, const void *x) {
    const block_q4_1 *wb = w;
    const block_q8_1x *xb = x;
    __m256 acc = _mm256_setzero_ps();
    float extra = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        const float d = h2f(wb[b].d) * xb[b].d;
        __m256i s = dot_u8_i8(nibbles_32(wb[b].qs), _mm256_loadu_si256((const __m256i *)xb[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
        extra += h2f(wb[b].m) * xb[b].s;
    }
    return hsum_ps(acc) + extra;
}

float ggr_dot_q5_0_avx2(int n, const void *w, const void *x) {
    const block_q5_0 *wb = w;
    const block_q8_0x *xb = x;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK; b++) {
        const float d = h2f(wb[b].d) * xb[b].d;
        __m256i q = _mm256_or_si256(nibbles_32(wb[b].qs), fifth_bits_32(wb[b].qh));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        __m256i s = dot_i8_i8(q, _mm256_loadu_si256((const __m256i *)xb[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum_ps(acc);
}

float ggr_dot_q5_1_avx2(int n, const void *w, const void *x) {
    const block_q5_1 *wb = w;
    const block_q8_1x *xb = x;
    __m256 acc = _mm256_setzero_ps();
    float extra = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        const float d = h2f(wb[b].d) * xb[b].d;
        __m256i q = _mm256_or_si256(nibbles_32(wb[b].qs), fifth_bits_32(wb[b].qh));
        __m256i s = dot_u8_i8(q, _mm256_loadu_si256((const __m256i *)xb[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
        extra += h2f(wb[b].m) * xb[b].s;
    }
    return hsum_ps(acc) + extra;
}

// Q8_0: both sides signed.
float ggr_dot_q8_0_avx2(int n, const void *w, const void *x) {
    const block_q8_0 *wb = w;
    const block_q8_0x *xb = x;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK; b++) {
        const float d = h2f(wb[b].d) * xb[b].d;
        __m256i q = _mm256_loadu_si256((const __m256i *)wb[b].qs);
        __m256i s = dot_i8_i8(q, _mm256_loadu_si256((const __m256i *)xb[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum_ps(acc);
}

// ---------------------------------------------------------------- K-quants
// Scale vector for one 32-element group that spans two 16-element sub-blocks:
// 16-bit lanes 0..7 (elements 0..15) get sc_a, lanes 8..15 get sc_b.
static inline __m256i scale_pair(int sc_a, int sc_b) {
    return _mm256_set_m128i(_mm_set1_epi16((short)sc_b), _mm_set1_epi16((short)sc_a));
}

float ggr_dot_q2_K_avx2(int n, const void *w, const void *x) {
    const block_q2_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        const uint8_t *sc = wb[b].scales;
        __m128i sv = _mm_loadu_si128((const __m128i *)sc);
        __m256i mins =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sv, 4), _mm_set1_epi8(15)));
        __m256i bs = _mm256_loadu_si256((const __m256i *)xb[b].bsums);
        int imin = hsum_epi32(_mm256_madd_epi16(mins, bs));
        __m256i isum = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(wb[b].qs + 32 * half));
            for (int j = 0; j < 4; j++) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * j), _mm256_set1_epi8(3));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 128 * half + 32 * j));
                int s = 8 * half + 2 * j;
                __m256i p = _mm256_maddubs_epi16(q, xv);
                isum = _mm256_add_epi32(
                    isum, _mm256_madd_epi16(p, scale_pair(sc[s] & 15, sc[s + 1] & 15)));
            }
        }
        sum += xb[b].d * (h2f(wb[b].d) * (float)hsum_epi32(isum) - h2f(wb[b].dmin) * (float)imin);
    }
    return sum;
}

// Q3_K: q = low2 + 4 * hbit - 4; multiply the unsigned low2 + 4 * hbit and subtract
// 4 * sum_s sc_s bsum_s.
float ggr_dot_q3_K_avx2(int n, const void *w, const void *x) {
    const block_q3_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int8_t sc[16];
        const uint8_t *p = wb[b].scales;
        for (int s = 0; s < 16; s++) {
            int low4 = s < 8 ? (p[s] & 0x0f) : (p[s - 8] >> 4);
            sc[s] = (int8_t)((low4 | (((p[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32);
        }
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i bs = _mm256_loadu_si256((const __m256i *)xb[b].bsums);
        int ioff = 4 * hsum_epi32(_mm256_madd_epi16(sc16, bs));
        __m256i hm = _mm256_loadu_si256((const __m256i *)wb[b].hmask);
        __m256i isum = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(wb[b].qs + 32 * half));
            for (int j = 0; j < 4; j++) {
                __m256i bit = _mm256_set1_epi8((char)(1 << (4 * half + j)));
                __m256i hb = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * j), _mm256_set1_epi8(3));
                q = _mm256_or_si256(q, _mm256_and_si256(hb, _mm256_set1_epi8(4)));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 128 * half + 32 * j));
                int s = 8 * half + 2 * j;
                __m256i pr = _mm256_maddubs_epi16(q, xv);
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pr, scale_pair(sc[s], sc[s + 1])));
            }
        }
        sum += xb[b].d * h2f(wb[b].d) * (float)(hsum_epi32(isum) - ioff);
    }
    return sum;
}

// unpack_k4 and mins_dot_bsums: kquant_simd.h

float ggr_dot_q4_K_avx2(int n, const void *w, const void *x) {
    const block_q4_K *wb = w;
    const block_q8_K *xb = x;
    __m256 acc = _mm256_setzero_ps();
    float extra = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], mn[8];
        unpack_k4(wb[b].scales, sc, mn);
        const float dx = xb[b].d;
        extra -= dx * h2f(wb[b].dmin) * (float)mins_dot_bsums(mn, xb[b].bsums);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(wb[b].qs + 32 * c));
            __m256i lo = _mm256_and_si256(qv, _mm256_set1_epi8(0x0f));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), _mm256_set1_epi8(0x0f));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 64 * c));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 64 * c + 32));
            __m256i p0 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(sc[2 * c]));
            __m256i p1 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        const float d = dx * h2f(wb[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum_ps(acc) + extra;
}

float ggr_dot_q5_K_avx2(int n, const void *w, const void *x) {
    const block_q5_K *wb = w;
    const block_q8_K *xb = x;
    __m256 acc = _mm256_setzero_ps();
    float extra = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], mn[8];
        unpack_k4(wb[b].scales, sc, mn);
        const float dx = xb[b].d;
        extra -= dx * h2f(wb[b].dmin) * (float)mins_dot_bsums(mn, xb[b].bsums);
        __m256i qh = _mm256_loadu_si256((const __m256i *)wb[b].qh);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(wb[b].qs + 32 * c));
            __m256i m0 = _mm256_set1_epi8((char)(1 << (2 * c)));
            __m256i m1 = _mm256_set1_epi8((char)(1 << (2 * c + 1)));
            __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, m0), m0),
                                          _mm256_set1_epi8(16));
            __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, m1), m1),
                                          _mm256_set1_epi8(16));
            __m256i lo = _mm256_or_si256(_mm256_and_si256(qv, _mm256_set1_epi8(0x0f)), h0);
            __m256i hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(qv, 4), _mm256_set1_epi8(0x0f)), h1);
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 64 * c));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 64 * c + 32));
            __m256i p0 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(sc[2 * c]));
            __m256i p1 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        const float d = dx * h2f(wb[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum_ps(acc) + extra;
}

// Q6_K: multiply the unsigned 6-bit q, subtract 32 * sum_s sc_s bsum_s.
float ggr_dot_q6_K_avx2(int n, const void *w, const void *x) {
    const block_q6_K *wb = w;
    const block_q8_K *xb = x;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const int8_t *sc = wb[b].scales;
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i bs = _mm256_loadu_si256((const __m256i *)xb[b].bsums);
        __m256i isum = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5); // 32 * sc . bsums
        isum = _mm256_sub_epi32(_mm256_setzero_si256(), isum);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = wb[b].ql + 64 * half;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(wb[b].qh + 32 * half));
            const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            for (int g = 0; g < 4; g++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb[b].qs + 128 * half + 32 * g));
                int s = 8 * half + 2 * g;
                __m256i p = _mm256_maddubs_epi16(q[g], xv);
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[s], sc[s + 1])));
            }
        }
        const float d = xb[b].d * h2f(wb[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum_ps(acc);
}

// ---------------------------------------------------------------- activation quantizers
// Same values as quantize_32 in dot_scalar.c: _mm256_round_ps rounds to nearest even, like
// nearbyintf in the default rounding mode. Returns d = amax / 127 (unrounded); *sum = sum of q.
static float quantize_32_avx2(const float *x, int8_t *qs, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], mx = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i qi[4], total = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
        __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], id),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        qi[k] = _mm256_cvtps_epi32(r);
        total = _mm256_add_epi32(total, qi[k]);
    }
    // int32 -> int8 with the lane-crossing fix-up that packs need
    __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]);
    __m256i p16b = _mm256_packs_epi32(qi[2], qi[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, p8);
    *sum = hsum_epi32(total);
    return amax / 127.0f;
}

static inline float round_half(float v) {
    return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT));
}

void ggr_quantize_q8_0x_avx2(int n, const float *x, block_q8_0x *y) {
    for (int b = 0; b < n / QK; b++, x += QK)
        y[b].d = round_half(quantize_32_avx2(x, y[b].qs, &y[b].sum));
}

void ggr_quantize_q8_1x_avx2(int n, const float *x, block_q8_1x *y) {
    for (int b = 0; b < n / QK; b++, x += QK) {
        int sum;
        const float d = quantize_32_avx2(x, y[b].qs, &sum);
        y[b].d = round_half(d);
        y[b].s = round_half(d * (float)sum);
    }
}

// Same values as ggr_quantize_q8_K_scalar (ggml's Q8_K): the first element of largest |x| sets
// the sign of the scale, q = min(127, round-to-even(-127 / max * x)).
void ggr_quantize_q8_K_avx2(int n, const float *x, block_q8_K *y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < n / QK_K; b++, x += QK_K) {
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8)
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0.0f) continue;
        float max = 0.0f; // the signed value of the first element with |x| == amax
        const __m256 am = _mm256_set1_ps(amax);
        for (int k = 0; k < QK_K; k += 8) {
            int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), am, _CMP_EQ_OQ));
            if (hit) {
                max = x[k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        const __m256i cap = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i qi[4];
            for (int v = 0; v < 4; v++) {
                __m256 r = _mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + k + 8 * v)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                qi[v] = _mm256_min_epi32(_mm256_cvtps_epi32(r), cap);
            }
            __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]),
                                            _mm256_packs_epi32(qi[2], qi[3]));
            p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[b].qs + k), p8);
            // two sums of 16: widen to int16 and add pairs horizontally
            __m256i w = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(p8)),
                                          _mm256_set1_epi16(1));
            __m256i w2 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(p8, 1)),
                                           _mm256_set1_epi16(1));
            y[b].bsums[k / 16] = (int16_t)hsum_epi32(w);
            y[b].bsums[k / 16 + 1] = (int16_t)hsum_epi32(w2);
        }
        y[b].d = 1.0f / iscale;
    }
}

// ggml's table GELU (see ops.c) times up: F16C rounds 8 gates to half at once.
void ggr_gelu_table_mul_avx2(int64_t n, const float *gate, const float *up, float *out,
                             const ggml_half *table) {
    int64_t i = 0;
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(gate + i);
        uint16_t h[8], r[8];
        _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        for (int k = 0; k < 8; k++) r[k] = table[h[k]];
        __m256 g = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)r));
        g = _mm256_blendv_ps(g, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
        g = _mm256_blendv_ps(g, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(g, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        const float x = gate[i];
        const float g = x <= -10.0f  ? 0.0f
                        : x >= 10.0f ? x
                                     : _cvtsh_ss(table[_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)]);
        out[i] = g * up[i];
    }
}

// tag::exp8[]
// e^x for 8 floats, within ~2 ulp (the scalar path uses libm's expf): x = n ln2 + r with
// |r| <= ln2 / 2, e^r by its Taylor series to r^7 (the next term is below 5e-9 relative), then
// times 2^n as two powers of two (so e^x underflows to denormals and zero, and overflows to
// inf, as expf does). NaN stays NaN.
static inline __m256 exp8(__m256 x) {
    // |x| <= 174: |n| <= 251, so both halves of 2^n are normal floats (biased exponent 1..253)
    // (min/max return their second operand when one is NaN: x goes second, so NaN stays NaN)
    x = _mm256_max_ps(_mm256_set1_ps(-174.0f), _mm256_min_ps(_mm256_set1_ps(174.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // ln2 split so that n * ln2_hi is exact: r = x - n ln2 keeps its low bits
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.42860682030941723e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1);
    const __m256i e1 = _mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23);
    const __m256i e2 =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e1));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e2));
}
// end::exp8[]

// silu(gate) * up = gate / (1 + e^-gate) * up, 8 at a time; the same operations and order as
// ops.c's scalar loop, with exp8 for libm's expf.
void ggr_silu_mul_avx2(int64_t n, const float *gate, const float *up, float *out) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(gate + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        const __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
