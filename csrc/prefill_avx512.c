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

#if defined(__clang__)
#pragma clang attribute pop
#endif
