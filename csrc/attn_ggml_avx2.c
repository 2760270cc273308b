// attn_ggml_avx2.c — attn_ggml.inc compiled for AVX2 + FMA (fmaf becomes one vfmadd instead of
// a libm call: ~10x faster than attn_ggml_ref.c, same bits). Called when cpu.c reports AVX2.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
#include <stdlib.h>

#include <immintrin.h>

#include "ggufref_internal.h"

#define ATTN_AVX2 1 // attn_ggml.inc: use intrinsics for the 16-lane sums

#define ATTN_FN(name) name##_avx2
#include "attn_ggml.inc"

#if defined(__clang__)
#pragma clang attribute pop
#endif
