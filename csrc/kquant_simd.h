// kquant_simd.h — helpers the AVX2 and AVX-512 K-quant kernels share (one copy, two targets).
//
// Include it after <immintrin.h> and after the file's `#pragma GCC target(...)` (or clang's
// attribute push): the inline functions then compile for that file's instruction set. They use
// SSE4.1 / SSSE3 only, which both targets include.
#ifndef GGUFREF_KQUANT_SIMD_H
#define GGUFREF_KQUANT_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

// tag::unpack_k4[]
// Unpack the 8 (scale, min) pairs of a Q4_K / Q5_K block (6 bits each, in 12 bytes).
static inline void unpack_k4(const uint8_t q[12], uint8_t sc[8], uint8_t mn[8]) {
    // Four bytes at a time: the 6-bit fields of sub-blocks 0..3 are whole bytes (low 6 bits);
    // those of 4..7 join a nibble of q[8..11] with the top 2 bits of q[0..3] (sc) or q[4..7] (mn).
    uint32_t w[3];
    memcpy(w, q, 12);
    const uint32_t low6 = 0x3f3f3f3f, nib = 0x0f0f0f0f, top2 = 0x03030303;
    const uint32_t out[4] = {
        w[0] & low6,                                       // sc[0..3]
        (w[2] & nib) | (((w[0] >> 6) & top2) << 4),        // sc[4..7]
        w[1] & low6,                                       // mn[0..3]
        ((w[2] >> 4) & nib) | (((w[1] >> 6) & top2) << 4), // mn[4..7]
    };
    memcpy(sc, out, 8);
    memcpy(mn, out + 2, 8);
}
// end::unpack_k4[]

// Sum over the 8 sub-blocks of mn_s * (bsum_{2s} + bsum_{2s+1}): the Q4_K / Q5_K mins term
// (in integers, so exact in any order).
static inline int mins_dot_bsums(const uint8_t mn[8], const int16_t bsums[16]) {
    __m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
    __m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    __m128i pairs = _mm_hadd_epi16(b0, b1); // 8 sums of 32 quants (fit in 16 bits: |.| <= 4064)
    __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)mn));
    __m128i p = _mm_madd_epi16(m, pairs);
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
    return _mm_cvtsi128_si32(p);
}

#endif
