// dot_scalar.c — scalar reference kernels: one weight row dotted with one activation row.
//
// Each function decodes a block into small integers exactly as the block's formula says,
// sums integer products, and applies the float scales once per block (or sub-block).
// The SIMD versions (dot_avx2.c, dot_avx512.c) have the same signature and the same integer
// sums; they differ only in the order the float terms are added.
#include "ggufref_internal.h"

// ---------------------------------------------------------------- float weights
float ggr_dot_f32_scalar(int n, const void *w, const void *x) {
    const float *a = w, *b = x;
    double s = 0.0; // the reference accumulates in double
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}

float ggr_dot_f16_scalar(int n, const void *w, const void *x) {
    const ggml_half *a = w;
    const float *b = x;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)ggr_fp16_to_fp32(a[i]) * b[i];
    return (float)s;
}

float ggr_dot_bf16_scalar(int n, const void *w, const void *x) {
    const ggml_bf16 *a = w;
    const float *b = x;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)ggr_bf16_to_fp32(a[i]) * b[i];
    return (float)s;
}

// ---------------------------------------------------------------- legacy formats
// tag::dot_q4_0_scalar[]
// Q4_0 . Q8_0: sum_b d_w * d_x * sum_j (q_j - 8) * qx_j
float ggr_dot_q4_0_scalar(int n, const void *w, const void *x) {
    const block_q4_0 *wb = w;
    const block_q8_0x *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int isum = 0;
        for (int j = 0; j < QK / 2; j++) {
            int q_lo = (wb[b].qs[j] & 0x0f) - 8; // element j
            int q_hi = (wb[b].qs[j] >> 4) - 8;   // element j + 16
            isum += q_lo * xb[b].qs[j] + q_hi * xb[b].qs[j + QK / 2];
        }
        sum += ggr_fp16_to_fp32(wb[b].d) * xb[b].d * (float)isum;
    }
    return sum;
}
// end::dot_q4_0_scalar[]

// Q4_1 . Q8_1: sum_b d_w d_x sum_j q_j qx_j + m_w s_x   (s_x = half(d_x sum_j qx_j))
float ggr_dot_q4_1_scalar(int n, const void *w, const void *x) {
    const block_q4_1 *wb = w;
    const block_q8_1x *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int isum = 0;
        for (int j = 0; j < QK / 2; j++) {
            isum += (wb[b].qs[j] & 0x0f) * xb[b].qs[j] + (wb[b].qs[j] >> 4) * xb[b].qs[j + QK / 2];
        }
        sum += ggr_fp16_to_fp32(wb[b].d) * xb[b].d * (float)isum +
               ggr_fp16_to_fp32(wb[b].m) * xb[b].s;
    }
    return sum;
}

// The 5-bit quant of element j of a Q5 block: low nibble from qs, fifth bit from qh.
static inline int q5_of(const uint8_t qs[QK / 2], uint32_t qh, int j) {
    int nib = j < QK / 2 ? (qs[j] & 0x0f) : (qs[j - QK / 2] >> 4);
    return nib | (int)(((qh >> j) & 1) << 4);
}

// Q5_0 . Q8_0: sum_b d_w d_x sum_j (q_j - 16) qx_j
float ggr_dot_q5_0_scalar(int n, const void *w, const void *x) {
    const block_q5_0 *wb = w;
    const block_q8_0x *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        uint32_t qh;
        memcpy(&qh, wb[b].qh, 4);
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += (q5_of(wb[b].qs, qh, j) - 16) * xb[b].qs[j];
        sum += ggr_fp16_to_fp32(wb[b].d) * xb[b].d * (float)isum;
    }
    return sum;
}

// Q5_1 . Q8_1: sum_b d_w d_x sum_j q_j qx_j + m_w s_x
float ggr_dot_q5_1_scalar(int n, const void *w, const void *x) {
    const block_q5_1 *wb = w;
    const block_q8_1x *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        uint32_t qh;
        memcpy(&qh, wb[b].qh, 4);
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += q5_of(wb[b].qs, qh, j) * xb[b].qs[j];
        sum += ggr_fp16_to_fp32(wb[b].d) * xb[b].d * (float)isum +
               ggr_fp16_to_fp32(wb[b].m) * xb[b].s;
    }
    return sum;
}

// Q8_0 . Q8_0: sum_b d_w d_x sum_j q_j qx_j
float ggr_dot_q8_0_scalar(int n, const void *w, const void *x) {
    const block_q8_0 *wb = w;
    const block_q8_0x *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += wb[b].qs[j] * xb[b].qs[j];
        sum += ggr_fp16_to_fp32(wb[b].d) * xb[b].d * (float)isum;
    }
    return sum;
}

// ---------------------------------------------------------------- K-quants
// Q2_K . Q8_K: d_x * (d * sum_s sc_s sum_{j in s} q_j qx_j - dmin * sum_s mn_s bsum_s)
float ggr_dot_q2_K_scalar(int n, const void *w, const void *x) {
    const block_q2_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int isum = 0, imin = 0;
        for (int e = 0; e < QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            int q = (wb[b].qs[32 * half + l] >> (2 * j)) & 3;
            int s = 8 * half + 2 * j + l / 16;
            isum += (wb[b].scales[s] & 0x0f) * q * xb[b].qs[e];
        }
        for (int s = 0; s < QK_K / 16; s++) imin += (wb[b].scales[s] >> 4) * xb[b].bsums[s];
        sum += xb[b].d * (ggr_fp16_to_fp32(wb[b].d) * (float)isum -
                          ggr_fp16_to_fp32(wb[b].dmin) * (float)imin);
    }
    return sum;
}

// The 16 signed scales of a Q3_K block (6 bits each, stored with an offset of 32).
static void q3_K_scales(const uint8_t packed[12], int sc[16]) {
    for (int s = 0; s < 16; s++) {
        int low4 = s < 8 ? (packed[s] & 0x0f) : (packed[s - 8] >> 4);
        int high2 = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
        sc[s] = (low4 | (high2 << 4)) - 32;
    }
}

// Q3_K . Q8_K: d_x * d * sum_s sc_s sum_{j in s} q_j qx_j
float ggr_dot_q3_K_scalar(int n, const void *w, const void *x) {
    const block_q3_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int sc[16], isum = 0;
        q3_K_scales(wb[b].scales, sc);
        for (int e = 0; e < QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            int q = (wb[b].qs[32 * half + l] >> (2 * j)) & 3;
            int high = (wb[b].hmask[l] >> (4 * half + j)) & 1;
            q -= high ? 0 : 4;
            isum += sc[8 * half + 2 * j + l / 16] * q * xb[b].qs[e];
        }
        sum += xb[b].d * ggr_fp16_to_fp32(wb[b].d) * (float)isum;
    }
    return sum;
}

// tag::scale_min_k4[]
// Scale and min of sub-block s (0..7) of a Q4_K / Q5_K block: 6 bits each, packed in 12 bytes.
static inline void scale_min_k4(const uint8_t q[12], int s, int *sc, int *mn) {
    if (s < 4) {
        *sc = q[s] & 63;
        *mn = q[s + 4] & 63;
    } else {
        *sc = (q[s + 4] & 0x0f) | ((q[s - 4] >> 6) << 4);
        *mn = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
    }
}
// end::scale_min_k4[]

// tag::dot_q4_K_scalar[]
// Q4_K . Q8_K: d_x * (d * sum_s sc_s sum_{j in s} q_j qx_j - dmin * sum_s mn_s sum_{j in s} qx_j)
float ggr_dot_q4_K_scalar(int n, const void *w, const void *x) {
    const block_q4_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int isum = 0, imin = 0;
        for (int s = 0; s < 8; s++) { // sub-blocks of 32
            int sc, mn, sub = 0;
            scale_min_k4(wb[b].scales, s, &sc, &mn);
            const uint8_t *qs = wb[b].qs + 32 * (s / 2);
            for (int l = 0; l < 32; l++) {
                int q = s % 2 ? qs[l] >> 4 : qs[l] & 0x0f;
                sub += q * xb[b].qs[32 * s + l];
            }
            isum += sc * sub;
            imin += mn * (xb[b].bsums[2 * s] + xb[b].bsums[2 * s + 1]);
        }
        sum += xb[b].d * (ggr_fp16_to_fp32(wb[b].d) * (float)isum -
                          ggr_fp16_to_fp32(wb[b].dmin) * (float)imin);
    }
    return sum;
}
// end::dot_q4_K_scalar[]

// Q5_K . Q8_K: as Q4_K with q += 16 * (fifth bit)
float ggr_dot_q5_K_scalar(int n, const void *w, const void *x) {
    const block_q5_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int isum = 0, imin = 0;
        for (int s = 0; s < 8; s++) {
            int sc, mn, sub = 0;
            scale_min_k4(wb[b].scales, s, &sc, &mn);
            const uint8_t *qs = wb[b].qs + 32 * (s / 2);
            for (int l = 0; l < 32; l++) {
                int q = s % 2 ? qs[l] >> 4 : qs[l] & 0x0f;
                q |= ((wb[b].qh[l] >> s) & 1) << 4;
                sub += q * xb[b].qs[32 * s + l];
            }
            isum += sc * sub;
            imin += mn * (xb[b].bsums[2 * s] + xb[b].bsums[2 * s + 1]);
        }
        sum += xb[b].d * (ggr_fp16_to_fp32(wb[b].d) * (float)isum -
                          ggr_fp16_to_fp32(wb[b].dmin) * (float)imin);
    }
    return sum;
}

// Q6_K . Q8_K: d_x * d * sum_s sc_s sum_{j in s} (q_j - 32) qx_j
float ggr_dot_q6_K_scalar(int n, const void *w, const void *x) {
    const block_q6_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int e = 0; e < QK_K; e++) {
            int half = e / 128, g = (e % 128) / 32, l = e % 32; // g: which of the 4 groups of 32
            const uint8_t *ql = wb[b].ql + 64 * half, *qh = wb[b].qh + 32 * half;
            int low = g % 2 ? ql[l + 32] : ql[l];
            low = g < 2 ? low & 0x0f : low >> 4;
            int q = (low | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
            isum += wb[b].scales[e / 16] * q * xb[b].qs[e];
        }
        sum += xb[b].d * ggr_fp16_to_fp32(wb[b].d) * (float)isum;
    }
    return sum;
}

// ---------------------------------------------------------------- activation quantizers
// tag::quantize_q8_0x[]
// 32 values -> 32 quants: q = round-to-even(x * (127 / amax)). Returns d = amax / 127 (float,
// unrounded) and sets *sum = sum of q. The scale is 127 / amax, not 1 / d: that is what ggml's
// x86 quantizer computes, and the two differ in the last bit often enough to flip a quant.
static float quantize_32(const float *x, int8_t qs[QK], int *sum) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    *sum = 0;
    for (int j = 0; j < QK; j++) {
        qs[j] = (int8_t)nearbyintf(x[j] * id);
        *sum += qs[j];
    }
    return amax / 127.0f;
}

// x (n,) -> n/32 blocks of ggml's Q8_0 values: d kept at half precision.
void ggr_quantize_q8_0x_scalar(int n, const float *x, block_q8_0x *y) {
    for (int b = 0; b < n / QK; b++, x += QK) {
        const float d = quantize_32(x, y[b].qs, &y[b].sum);
        y[b].d = ggr_round_f16(d);
    }
}

// x (n,) -> n/32 blocks of ggml's Q8_1 values: s = half(d * sum), from the unrounded d.
void ggr_quantize_q8_1x_scalar(int n, const float *x, block_q8_1x *y) {
    for (int b = 0; b < n / QK; b++, x += QK) {
        int sum;
        const float d = quantize_32(x, y[b].qs, &sum);
        y[b].d = ggr_round_f16(d);
        y[b].s = ggr_round_f16(d * (float)sum);
    }
}
// end::quantize_q8_0x[]

// x (n,) -> n/256 blocks of ggml's Q8_K: the largest |x| maps to -127 (scale -127 / max), q
// capped at 127, d = 1 / scale, bsums = sums of 16 quants.
void ggr_quantize_q8_K_scalar(int n, const float *x, block_q8_K *y) {
    for (int b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0.0f) continue;
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = (int)nearbyintf(iscale * x[j]);
            y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
            y[b].bsums[j / 16] = (int16_t)(y[b].bsums[j / 16] + y[b].qs[j]);
        }
        y[b].d = 1.0f / iscale;
    }
}
