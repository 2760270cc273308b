// prefill_avx512.c — the Q5_0 prefill kernel: a tile of weight rows times 8 tokens at a time.
//
// Why a second Q5_0 kernel: in prefill every weight block meets many tokens, and the
// one-row kernel (dot_avx512.c) spends most of its time on per-(row, token) chores: the sign
// trick (|q| and sign(x, q)), a scalar dw * dx and its broadcast. Here
//   - the activations of 8 tokens are first repacked into a panel (ggr_panel8): per block the 8
//     scales side by side, the 8 tokens' quants, and per 4 quants -16 * their sum;
//   - a weight block is decoded once, as unsigned u = q + 16 (0..31), for all 8 tokens;
//   - vpdpbusd(-16 * sum4(x), u, x) gives, lane by lane, exactly sum4(q * x): the same int32
//     lanes as the one-row kernel, so the same floats;
//   - dw * dx is one vector multiply for 8 tokens (the same float products).
// The float operations per token are the one-row kernel's, in the same order (acc = fma(dw dx,
// lanes, acc) block after block, then hsum256): results are identical bit for bit.
//
// Legend: nb = blocks per row, R = weight rows per call (4, then 2, 1 for the rest),
//         8 = tokens per panel.
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

// tag::panel8[]
// Activations of up to 8 tokens (missing tokens are zeros) for nb blocks: x[t] is token t's row
// of block_q8_0x (NULL: absent), offset is what the weight quants are shifted by (Q5_0: 16).
void ggr_pack_panel8(int nb, const block_q8_0x *const x[8], int offset, ggr_panel8 *p) {
    for (int b = 0; b < nb; b++) {
        for (int t = 0; t < 8; t++) {
            if (!x[t]) {
                p[b].d[t] = 0.0f;
                memset(p[b].qs[t], 0, QK);
                memset(p[b].corr[t], 0, sizeof p[b].corr[t]);
                continue;
            }
            const block_q8_0x *xb = x[t] + b;
            p[b].d[t] = xb->d;
            memcpy(p[b].qs[t], xb->qs, QK);
            for (int l = 0; l < 8; l++) {
                const int8_t *q = xb->qs + 4 * l;
                p[b].corr[t][l] = -offset * (q[0] + q[1] + q[2] + q[3]);
            }
        }
    }
}
// end::panel8[]

// Q5_0 quants as unsigned 0..31 (the nibble plus 16 where qh has the bit).
static inline __m256i q5_0_unsigned(const block_q5_0 *wb) {
    uint32_t qh;
    memcpy(&qh, wb->qh, 4);
    __m128i t = _mm_loadu_si128((const __m128i *)wb->qs);
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
    return _mm256_mask_add_epi8(q, (__mmask32)qh, q, _mm256_set1_epi8(16));
}

static inline float hsum256(__m256 v) { // the one-row kernel's order
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// tag::q5_0_panel[]
// R weight rows (w, w + row_bytes, ...) times one panel of 8 tokens: out[r * 8 + t].
// A 512-bit register holds two tokens' 8 lanes (tokens 2k and 2k + 1 of the panel): lane by
// lane the same operations as 256-bit registers, in half the instructions.
static inline __attribute__((always_inline)) void
q5_0_panel_rows(int nb, const uint8_t *w, int64_t row_bytes, const ggr_panel8 *p, int R,
                float *out) {
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 4; k++) acc[r][k] = _mm512_setzero_ps();
    __m512i sel[4]; // lanes 0-7: token 2k's scale, lanes 8-15: token 2k + 1's
    for (int k = 0; k < 4; k++)
        sel[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * k)),
                                    _mm256_set1_epi32(2 * k + 1), 1);
    for (int b = 0; b < nb; b++) {
        __m512i u[4];
        __m512 d[4];
        const __m512 dx = _mm512_castps256_ps512(_mm256_loadu_ps(p[b].d));
        for (int r = 0; r < R; r++) {
            const block_q5_0 *wb = (const block_q5_0 *)(w + r * row_bytes) + b;
            u[r] = _mm512_broadcast_i64x4(q5_0_unsigned(wb));
            d[r] = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(wb->d)), dx);
        }
        for (int k = 0; k < 4; k++) {
            const __m512i xv = _mm512_loadu_si512(p[b].qs[2 * k]);
            const __m512i c = _mm512_loadu_si512(p[b].corr[2 * k]);
            for (int r = 0; r < R; r++) {
                const __m512i lanes = _mm512_dpbusd_epi32(c, u[r], xv);
                acc[r][k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(sel[k], d[r]),
                                            _mm512_cvtepi32_ps(lanes), acc[r][k]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 4; k++) {
            const __m512d both = _mm512_castps_pd(acc[r][k]);
            out[r * 8 + 2 * k] = hsum256(_mm512_castps512_ps256(acc[r][k]));
            out[r * 8 + 2 * k + 1] = hsum256(_mm256_castpd_ps(_mm512_extractf64x4_pd(both, 1)));
        }
}

void ggr_panel_q5_0_avx512(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                           const ggr_panel8 *p, float *out) {
    int r = 0;
    for (; r + 4 <= n_rows; r += 4)
        q5_0_panel_rows(nb, w + r * row_bytes, row_bytes, p, 4, out + r * 8);
    for (; r + 2 <= n_rows; r += 2)
        q5_0_panel_rows(nb, w + r * row_bytes, row_bytes, p, 2, out + r * 8);
    for (; r < n_rows; r++) q5_0_panel_rows(nb, w + r * row_bytes, row_bytes, p, 1, out + r * 8);
}
// end::q5_0_panel[]

// ---------------------------------------------------------------- Q4_K prefill (FORMATS.gemm)
// tag::q4_K_gemm[]
// Q4_K prefill, as llama.cpp computes it. llama.cpp repacks Q4_K rows eight at a time at load
// and multiplies 4 tokens at a time (ggml_gemm_q4_K_8x8_q8_K); per 64 elements (sub-blocks 2p
// and 2p + 1) it adds the exact integers isum = sc_2p (q . x)_2p + sc_2p+1 (q . x)_2p+1 and
// imin = mn_2p bsum_2p + mn_2p+1 bsum_2p+1 into two float chains per (row, token):
//   acc = fma(float(isum), d_w * d_x, acc),  accm = fma(float(imin), dmin_w * d_x, accm)
// and returns acc - accm. The weights stay in the file: a tile of up to 16 rows is rearranged
// into a scratch buffer (q4k_tile_block, ~5 KB per block) by the task that multiplies it, and
// every 4-token group of the call then meets it. In the tile, a 512-bit register holds 4
// consecutive quants of 16 rows, so vpdpbusd against one token's 4 activations (broadcast)
// gives 16 rows' partial dot products at once, and no horizontal sums are needed.
typedef struct {
    uint8_t q[8][8][64]; // [sub-block][group of 4 quants][row * 4 + k]: unsigned 0..15
    int32_t sc[8][16];   // sub-block scales, per row
    int32_t mn[4][16];   // mins of sub-blocks 2p (low 16 bits) and 2p + 1 (high 16 bits), per row
    float d[16], dmin[16];
} q4k_tile_block;

// 8 registers of two 8 x 8 dword matrices (rows i and i + 8 of a tile in the two 256-bit
// halves) -> transposed: register g holds dword g of rows 0..15.
static inline void transpose8x8x2(__m512i a[8]) {
    __m512i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(a[i], a[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(a[i], a[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // u[j] (rows 0-3) and u[j + 4] (rows 4-7): 128-bit lanes (col j, col j + 4) per half
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int j = 0; j < 4; j++) {
        a[j] = _mm512_permutex2var_epi64(u[j], lo, u[j + 4]);
        a[j + 4] = _mm512_permutex2var_epi64(u[j], hi, u[j + 4]);
    }
}

size_t ggr_gemm_scratch_q4_K(int nb) { return (size_t)nb * sizeof(q4k_tile_block); }

static void q4k_pack_tile(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                          q4k_tile_block *tile) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int b = 0; b < nb; b++) {
        q4k_tile_block *tb = tile + b;
        for (int r = 0; r < 16; r++) {
            uint8_t sc[8] = {0}, mn[8] = {0};
            float d = 0.0f, dmin = 0.0f;
            if (r < n_rows) {
                const block_q4_K *wb = (const block_q4_K *)(w + r * row_bytes) + b;
                unpack_k4(wb->scales, sc, mn);
                d = _cvtsh_ss(wb->d);
                dmin = _cvtsh_ss(wb->dmin);
            }
            tb->d[r] = d;
            tb->dmin[r] = dmin;
            for (int s = 0; s < 8; s++) tb->sc[s][r] = sc[s];
            for (int p = 0; p < 4; p++) tb->mn[p][r] = mn[2 * p] | (int32_t)mn[2 * p + 1] << 16;
        }
        for (int c = 0; c < 4; c++) { // 32 bytes of each row = sub-blocks 2c (low nibbles), 2c + 1
            __m512i lo[8], hi[8];
            for (int i = 0; i < 8; i++) {
                __m256i r0 = _mm256_setzero_si256(), r1 = _mm256_setzero_si256();
                const block_q4_K *b0 = (const block_q4_K *)(w + i * row_bytes) + b;
                const block_q4_K *b1 = (const block_q4_K *)(w + (i + 8) * row_bytes) + b;
                if (i < n_rows) r0 = _mm256_loadu_si256((const __m256i *)(b0->qs + 32 * c));
                if (i + 8 < n_rows) r1 = _mm256_loadu_si256((const __m256i *)(b1->qs + 32 * c));
                const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
                lo[i] = _mm512_and_si512(z, m4);
                hi[i] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
            }
            transpose8x8x2(lo);
            transpose8x8x2(hi);
            for (int g = 0; g < 8; g++) {
                _mm512_storeu_si512(tb->q[2 * c][g], lo[g]);
                _mm512_storeu_si512(tb->q[2 * c + 1][g], hi[g]);
            }
        }
    }
}

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// 16 rows of a packed tile times 4 tokens (x[k]: token k's Q8_K row): out[k][r].
static void q4k_gemm4(int nb, const q4k_tile_block *tile, const block_q8_K *const x[4],
                      float out[4][16]) {
    __m512 acc[4], accm[4];
    for (int k = 0; k < 4; k++) acc[k] = accm[k] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const q4k_tile_block *tb = tile + b;
        const __m512 dw = _mm512_loadu_ps(tb->d), dm = _mm512_loadu_ps(tb->dmin);
        __m512 dwdx[4], dmdx[4];
        for (int k = 0; k < 4; k++) {
            const __m512 dx = _mm512_set1_ps(x[k][b].d);
            dwdx[k] = _mm512_mul_ps(dw, dx);
            dmdx[k] = _mm512_mul_ps(dm, dx);
        }
        for (int p = 0; p < 4; p++) { // sub-blocks 2p and 2p + 1: elements 64p .. 64p + 63
            __m512i ia[4], ib[4];
            for (int k = 0; k < 4; k++) ia[k] = ib[k] = _mm512_setzero_si512();
            for (int g = 0; g < 8; g++) {
                const __m512i wa = _mm512_loadu_si512(tb->q[2 * p][g]);
                const __m512i wbq = _mm512_loadu_si512(tb->q[2 * p + 1][g]);
                for (int k = 0; k < 4; k++) {
                    const int8_t *xq = x[k][b].qs + 64 * p + 4 * g;
                    ia[k] = _mm512_dpbusd_epi32(ia[k], wa, _mm512_set1_epi32(load_i32(xq)));
                    ib[k] = _mm512_dpbusd_epi32(ib[k], wbq, _mm512_set1_epi32(load_i32(xq + 32)));
                }
            }
            const __m512i sca = _mm512_loadu_si512(tb->sc[2 * p]);
            const __m512i scb = _mm512_loadu_si512(tb->sc[2 * p + 1]);
            const __m512i mnv = _mm512_loadu_si512(tb->mn[p]);
            for (int k = 0; k < 4; k++) {
                const int16_t *bs = x[k][b].bsums + 4 * p;
                const uint32_t lo = (uint16_t)(bs[0] + bs[1]), hi = (uint16_t)(bs[2] + bs[3]);
                const uint32_t pair = lo | hi << 16;
                const __m512i isum = _mm512_add_epi32(_mm512_mullo_epi32(ia[k], sca),
                                                      _mm512_mullo_epi32(ib[k], scb));
                const __m512i imin = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mnv,
                                                         _mm512_set1_epi32((int32_t)pair));
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dwdx[k], acc[k]);
                accm[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), dmdx[k], accm[k]);
            }
        }
    }
    for (int k = 0; k < 4; k++) _mm512_storeu_ps(out[k], _mm512_sub_ps(acc[k], accm[k]));
}

// n_rows (<= 16) Q4_K rows times n_tokens (a multiple of 4) tokens' Q8_K rows (xs bytes apart):
// y[t * y_stride + r]. scratch: ggr_gemm_scratch_q4_K(nb) bytes, 64-byte aligned.
void ggr_gemm_q4_K_avx512(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                          const uint8_t *x, int64_t xs, int64_t n_tokens, float *y,
                          int64_t y_stride, void *scratch) {
    q4k_tile_block *tile = scratch;
    q4k_pack_tile(nb, w, row_bytes, n_rows, tile);
    float out[4][16];
    for (int64_t t = 0; t + 4 <= n_tokens; t += 4) {
        const block_q8_K *xt[4];
        for (int k = 0; k < 4; k++) xt[k] = (const block_q8_K *)(x + (t + k) * xs);
        q4k_gemm4(nb, tile, xt, out);
        for (int k = 0; k < 4; k++)
            for (int r = 0; r < n_rows; r++) y[(t + k) * y_stride + r] = out[k][r];
    }
}
// end::q4_K_gemm[]

// ---------------------------------------------------------------- Q6_K prefill (FORMATS.gemm)
// tag::q6_K_gemm[]
// Q6_K prefill, as llama.cpp computes it from 8 tokens on: its tiled K-quant kernel
// (ggml-cpu/tiled) adds, per super-block, the exact integer isum = sum_s sc_s (q . x)_s
// (q = u - 32, u the stored 6-bit value) into one float per (row, token):
//   acc = fma(float(isum) * d_w, d_x, acc)
// (its one-token kernel, dot_avx512.c, adds in another order). The source writes the last step
// as add(acc, mul(.., d_x)); the compiler of llama.cpp's build fuses it (checked against
// llama-cpp-python 0.3.36's outputs: the fused form matches bit for bit, the unfused does not).
// The tile holds the 16 rows' unsigned quants u, 4 consecutive of each row per 32-bit lane as
// for Q4_K; the -32 is applied per sub-block with the activations' bsums:
// sum (u - 32) x = sum u x - 32 bsum.
typedef struct {
    uint8_t q[16][4][64]; // [sub-block of 16][group of 4 quants][row * 4 + k]: unsigned 0..63
    int32_t sc[16][16];   // sub-block scales (signed), per row
    float d[16];
} q6k_tile_block;

size_t ggr_gemm_scratch_q6_K(int nb) { return (size_t)nb * sizeof(q6k_tile_block); }

// One Q6_K block's 256 unsigned quants, in element order (see block_q6_K).
static inline void q6k_unsigned(const block_q6_K *wb, uint8_t out[256]) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
    for (int half = 0; half < 2; half++) {
        const __m512i ql = _mm512_loadu_si512(wb->ql + 64 * half);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb->qh + 32 * half));
        const __m512i qhz =
            _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        _mm512_storeu_si512(out + 128 * half,
                            _mm512_or_si512(_mm512_and_si512(ql, m4),
                                            _mm512_and_si512(_mm512_slli_epi16(qhz, 4), m2)));
        _mm512_storeu_si512(out + 128 * half + 64,
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                            _mm512_and_si512(qhz, m2)));
    }
}

static void q6k_pack_tile(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                          q6k_tile_block *tile) {
    uint8_t u[16][256];
    for (int b = 0; b < nb; b++) {
        q6k_tile_block *tb = tile + b;
        for (int r = 0; r < 16; r++) {
            if (r < n_rows) {
                const block_q6_K *wb = (const block_q6_K *)(w + r * row_bytes) + b;
                q6k_unsigned(wb, u[r]);
                tb->d[r] = _cvtsh_ss(wb->d);
                for (int s = 0; s < 16; s++) tb->sc[s][r] = wb->scales[s];
            } else {
                memset(u[r], 0, 256);
                tb->d[r] = 0.0f;
                for (int s = 0; s < 16; s++) tb->sc[s][r] = 0;
            }
        }
        for (int p = 0; p < 8; p++) { // 32 elements = sub-blocks 2p and 2p + 1
            __m512i z[8];
            for (int i = 0; i < 8; i++)
                z[i] = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(u[i] + 32 * p))),
                    _mm256_loadu_si256((const __m256i *)(u[i + 8] + 32 * p)), 1);
            transpose8x8x2(z);
            for (int g = 0; g < 4; g++) {
                _mm512_storeu_si512(tb->q[2 * p][g], z[g]);
                _mm512_storeu_si512(tb->q[2 * p + 1][g], z[g + 4]);
            }
        }
    }
}

// 16 rows of a packed tile times nt <= 4 tokens: out[k][r].
static inline __attribute__((always_inline)) void
q6k_gemm(int nb, const q6k_tile_block *tile, const block_q8_K *const x[4], int nt,
         float out[4][16]) {
    __m512 acc[4];
    for (int k = 0; k < nt; k++) acc[k] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const q6k_tile_block *tb = tile + b;
        __m512i isum[4];
        for (int k = 0; k < nt; k++) isum[k] = _mm512_setzero_si512();
        for (int s = 0; s < 16; s++) {
            __m512i ia[4];
            for (int k = 0; k < nt; k++)
                ia[k] = _mm512_set1_epi32(-32 * x[k][b].bsums[s]); // the -32 of q = u - 32
            for (int g = 0; g < 4; g++) {
                const __m512i wq = _mm512_loadu_si512(tb->q[s][g]);
                for (int k = 0; k < nt; k++)
                    ia[k] = _mm512_dpbusd_epi32(
                        ia[k], wq, _mm512_set1_epi32(load_i32(x[k][b].qs + 16 * s + 4 * g)));
            }
            const __m512i sc = _mm512_loadu_si512(tb->sc[s]);
            for (int k = 0; k < nt; k++)
                isum[k] = _mm512_add_epi32(isum[k], _mm512_mullo_epi32(ia[k], sc));
        }
        const __m512 dw = _mm512_loadu_ps(tb->d);
        for (int k = 0; k < nt; k++) {
            const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[k]), dw);
            acc[k] = _mm512_fmadd_ps(v, _mm512_set1_ps(x[k][b].d), acc[k]);
        }
    }
    for (int k = 0; k < nt; k++) _mm512_storeu_ps(out[k], acc[k]);
}

// n_rows (<= 16) Q6_K rows times n_tokens tokens' Q8_K rows (xs bytes apart): y[t * y_stride + r].
void ggr_gemm_q6_K_avx512(int nb, const uint8_t *w, int64_t row_bytes, int n_rows,
                          const uint8_t *x, int64_t xs, int64_t n_tokens, float *y,
                          int64_t y_stride, void *scratch) {
    q6k_tile_block *tile = scratch;
    q6k_pack_tile(nb, w, row_bytes, n_rows, tile);
    float out[4][16];
    for (int64_t t = 0; t < n_tokens; t += 4) {
        const int nt = (int)(n_tokens - t < 4 ? n_tokens - t : 4);
        const block_q8_K *xt[4];
        for (int k = 0; k < nt; k++) xt[k] = (const block_q8_K *)(x + (t + k) * xs);
        if (nt == 4)
            q6k_gemm(nb, tile, xt, 4, out);
        else
            q6k_gemm(nb, tile, xt, nt, out);
        for (int k = 0; k < nt; k++)
            for (int r = 0; r < n_rows; r++) y[(t + k) * y_stride + r] = out[k][r];
    }
}
// end::q6_K_gemm[]

#if defined(__clang__)
#pragma clang attribute pop
#endif
