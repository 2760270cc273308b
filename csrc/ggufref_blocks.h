// ggufref_blocks.h — one struct per GGUF block format, byte for byte as it sits in the file.
//
// Legend: a weight row of `cols` elements is cols / QK (or cols / QK_K) blocks laid end to end.
// Each preamble gives: elements per block, the decode formula, bits per weight (bpw).
// Field names follow ggml (d, dmin, m, scales, qs, qh, ql) so readers can cross-reference.
// The Python twin of this table is pysrc/ggufref/formats.py; tests check both against gguf.quants.
#ifndef GGUFREF_BLOCKS_H
#define GGUFREF_BLOCKS_H

#include <stdint.h>

#define QK 32    // elements per block of the legacy formats (Q4_0 ... Q8_0)
#define QK_K 256 // elements per super-block of the K-quants

typedef uint16_t ggml_half; // IEEE binary16, stored as raw bits
typedef uint16_t ggml_bf16; // bfloat16: the top 16 bits of an IEEE binary32

// tag::blocks_legacy[]
// F32 / F16 / BF16: one element per "block"; x = value. 32 / 16 / 16 bpw.

// tag::block_q4_0[]
// Q4_0: 32 elements, x = d * (q - 8), q in [0, 15]. 4.5 bpw.
// qs byte j holds element j in its low nibble and element j + 16 in its high nibble.
typedef struct {
    ggml_half d;        // scale
    uint8_t qs[QK / 2]; // 4-bit quants, two per byte
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 2 + QK / 2, "block_q4_0 size");
// end::block_q4_0[]

// Q4_1: 32 elements, x = d * q + m, q in [0, 15]. 5 bpw.
typedef struct {
    ggml_half d;        // scale
    ggml_half m;        // offset (the block minimum)
    uint8_t qs[QK / 2]; // 4-bit quants, nibbles as in Q4_0
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 2 + 2 + QK / 2, "block_q4_1 size");

// Q5_0: 32 elements, x = d * (q - 16), q in [0, 31]. 5.5 bpw.
// q = nibble (as in Q4_0) | (bit j of qh) << 4, where element j's fifth bit is bit j of qh.
typedef struct {
    ggml_half d;        // scale
    uint8_t qh[4];      // fifth bits, one per element (little-endian uint32)
    uint8_t qs[QK / 2]; // low 4 bits, two per byte
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 2 + 4 + QK / 2, "block_q5_0 size");

// Q5_1: 32 elements, x = d * q + m, q in [0, 31]. 6 bpw.
typedef struct {
    ggml_half d;        // scale
    ggml_half m;        // offset
    uint8_t qh[4];      // fifth bits
    uint8_t qs[QK / 2]; // low 4 bits
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 2 + 2 + 4 + QK / 2, "block_q5_1 size");

// tag::block_q8_0[]
// Q8_0: 32 elements, x = d * q, q in [-127, 127]. 8.5 bpw.
// (Also ggml's activation format for Q4_0, Q5_0, Q8_0 weights.)
typedef struct {
    ggml_half d;   // scale
    int8_t qs[QK]; // quants
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 2 + QK, "block_q8_0 size");
// end::block_q8_0[]
// end::blocks_legacy[]

// tag::blocks_k[]
// Q2_K: 256 elements in 16 sub-blocks of 16, x = d * sc * q - dmin * mn, q in [0, 3]. 2.625 bpw.
// Element 128*n + 32*j + l (n < 2, j < 4, l < 32) is bits 2j..2j+1 of qs[32*n + l];
// its sub-block is 8*n + 2*j + l/16.
typedef struct {
    uint8_t scales[QK_K / 16]; // per sub-block: scale sc in the low nibble, min mn in the high
    uint8_t qs[QK_K / 4];      // 2-bit quants, four per byte
    ggml_half d;               // super-block scale of the scales
    ggml_half dmin;            // super-block scale of the mins
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == QK_K / 16 + QK_K / 4 + 2 + 2, "block_q2_K size");

// Q3_K: 256 elements in 16 sub-blocks of 16, x = d * (sc - 32) * q, q in [-4, 3]. 3.4375 bpw.
// q = (2 bits as in Q2_K) - 4 * !(hmask[l] bit (4*n + j)); sc is 6 bits packed in scales[12]:
// low nibble of scales[s] (s < 8) or high nibble of scales[s - 8] (s >= 8),
// top two bits = bits 2*(s/4)..+1 of scales[8 + s%4].
typedef struct {
    uint8_t hmask[QK_K / 8]; // third bit of every quant (set = no -4 offset)
    uint8_t qs[QK_K / 4];    // low 2 bits, four per byte
    uint8_t scales[12];      // 16 six-bit scales
    ggml_half d;             // super-block scale
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == QK_K / 8 + QK_K / 4 + 12 + 2, "block_q3_K size");

// tag::block_q4_K[]
// Q4_K: 256 elements in 8 sub-blocks of 32, x = d * sc * q - dmin * mn, q in [0, 15]. 4.5 bpw.
// Element 64*c + l (l < 32) is the low nibble of qs[32*c + l] (sub-block 2c);
// element 64*c + 32 + l is its high nibble (sub-block 2c + 1).
// scales[12] packs 8 six-bit (sc, mn) pairs: for s < 4, sc = scales[s] & 63, mn = scales[s+4] & 63;
// for s >= 4 the low 4 bits come from scales[s+4] (sc: low nibble, mn: high nibble) and the
// top 2 bits from the top 2 bits of scales[s-4] (sc) and scales[s] (mn).
typedef struct {
    ggml_half d;          // super-block scale of the scales
    ggml_half dmin;       // super-block scale of the mins
    uint8_t scales[12];   // 8 six-bit scales and 8 six-bit mins
    uint8_t qs[QK_K / 2]; // 4-bit quants
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 2 + 2 + 12 + QK_K / 2, "block_q4_K size");
// end::block_q4_K[]

// Q5_K: as Q4_K with a fifth bit, q in [0, 31]. 5.5 bpw.
// Element 64*c + l takes bit 2c of qh[l]; element 64*c + 32 + l takes bit 2c + 1.
typedef struct {
    ggml_half d;          // super-block scale of the scales
    ggml_half dmin;       // super-block scale of the mins
    uint8_t scales[12];   // 8 six-bit scales and mins, packed as in Q4_K
    uint8_t qh[QK_K / 8]; // fifth bits
    uint8_t qs[QK_K / 2]; // low 4 bits
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 2 + 2 + 12 + QK_K / 8 + QK_K / 2, "block_q5_K size");

// tag::block_q6_K[]
// Q6_K: 256 elements in 16 sub-blocks of 16, x = d * sc * (q - 32), q in [0, 63]. 6.5625 bpw.
// In each half n (128 elements; ql += 64n, qh += 32n, l < 32):
//   element l      : low nibble of ql[l]      | bits 0-1 of qh[l] << 4
//   element l + 32 : low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
//   element l + 64 : high nibble of ql[l]     | bits 4-5 of qh[l] << 4
//   element l + 96 : high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
typedef struct {
    uint8_t ql[QK_K / 2];     // low 4 bits
    uint8_t qh[QK_K / 4];     // high 2 bits
    int8_t scales[QK_K / 16]; // signed 8-bit sub-block scales
    ggml_half d;              // super-block scale
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, "block_q6_K size");
// end::block_q6_K[]
// end::blocks_k[]

// tag::blocks_act[]
// Activation formats: each row of x is quantized once per linear() call.
//
// Q8_K (ggml's, for the K-quants): 256 elements, x = d * q. 9.125 bpw.
typedef struct {
    float d;                  // scale (float, not half)
    int8_t qs[QK_K];          // quants
    int16_t bsums[QK_K / 16]; // sum of each 16 quants: lets the kernels apply mins and offsets
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 4 + QK_K + 2 * (QK_K / 16), "block_q8_K size");

// Q8_0 activations (ours, for the legacy formats): the values of ggml's Q8_0 activation block
// (d = amax / 127 rounded to half precision, q = round-to-even(x * 127 / amax)), kept with d
// already widened to float and with the sum of the quants, which turns the offsets of
// Q4_0 (q - 8), Q5_0 (q - 16) and the m of Q4_1 / Q5_1 into one multiply per block
// (ggml's Q8_1 stores s = d * sum for the same reason).
typedef struct {
    float d;       // scale, exactly representable in half precision
    int32_t sum;   // sum of qs
    int8_t qs[QK]; // quants
} block_q8_0x;
_Static_assert(sizeof(block_q8_0x) == 4 + 4 + QK, "block_q8_0x size");

// Q8_1 activations (ggml's, for Q4_1 / Q5_1): q and d as in Q8_0, plus s = d * sum(q) computed
// in float from the unrounded d = amax / 127 and then rounded to half precision, as ggml stores
// it. The m term of a Q4_1 / Q5_1 block is m * s: using d * sum instead moves results by up to
// 2^-11 relative per block, which is what parity with llama.cpp cannot afford.
typedef struct {
    float d;       // scale, exactly representable in half precision
    float s;       // half(d * sum(qs)), widened to float
    int8_t qs[QK]; // quants
} block_q8_1x;
_Static_assert(sizeof(block_q8_1x) == 4 + 4 + QK, "block_q8_1x size");
// end::blocks_act[]

#endif
