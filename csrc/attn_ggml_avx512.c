// attn_ggml_avx512.c — attn_ggml.inc compiled for AVX-512 + FMA: the 16-lane loops become
// single vector instructions and fmaf a vfmadd. Called only when cpu.c reports AVX-512.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))), \
                             apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
#endif
#include <stdlib.h>

#include <immintrin.h>

#include "ggufref_internal.h"

#define ATTN_AVX512 1 // attn_ggml.inc: use intrinsics for the 16-lane sums

#define ATTN_FN(name) name##_avx512
#include "attn_ggml.inc"

// tag::silu_ggml[]
// ggml's SwiGLU on AVX-512 (ggml_vec_swiglu_f32, one call per row of `row` values): 16 at a
// time out = x / (1 + v_expf(0 - x)) * up, with expf_ggml_v's polynomial for e^x; the last
// row % 16 values of each row with libm's expf, x / (1 + expf(-x)) * up. Same operations, so
// the same bits as llama.cpp's feed-forward gate.
void ggr_silu_mul_ggml_avx512(int64_t n, int64_t row, const float *gate, const float *up,
                              float *out) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t r0 = 0; r0 < n; r0 += row) {
        int64_t i = r0;
        for (; i + 16 <= r0 + row; i += 16) {
            const __m512 x = _mm512_loadu_ps(gate + i);
            const __m512 e = expf_ggml_v_avx512(_mm512_sub_ps(_mm512_setzero_ps(), x));
            const __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, e));
            _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
        }
        for (; i < r0 + row; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    }
}
// end::silu_ggml[]

#if defined(__clang__)
#pragma clang attribute pop
#endif
