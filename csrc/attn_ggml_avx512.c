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

#if defined(__clang__)
#pragma clang attribute pop
#endif
