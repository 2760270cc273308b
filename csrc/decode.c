// decode.c — one decode step of the llama family's layers (llama, qwen2, qwen3) in one call.
//
// The forward pass in pysrc/ggufref/model/llama.py is the reference and what the site shows.
// For one token it is a string of small operations between the matmuls (norms, biases, RoPE,
// the KV cache, attention, residual adds), each a Python call of a few microseconds while the
// memory bus idles: ~3 ms of a 1.5B model's ~40 ms decode step. This file runs the same
// operations, in the same order, through the same kernels (ggr_rms_norm, ggr_linear_many,
// ggr_rope, ggr_attention, ggr_silu_mul), for all layers without returning to Python, so its
// results are the Python forward's bit for bit (tests/test_decode.py checks that, step by step).
//
// Legend: e = n_embd, h = n_head, g = n_head_kv, hd = head_dim, f = n_ff.
#include <stdlib.h>

#include "ggufref_api.h"
#include "ggufref_internal.h"

#define GGR_ATTN_GGML_BATCHED 2 // kernels.attention(f16=True): llama.cpp's f16 KV cache path
#define TRY(call)                                                                                  \
    do {                                                                                           \
        const int status_ = (call);                                                                \
        if (status_ != GGR_OK) return status_;                                                     \
    } while (0)

static void add_into(float *x, const float *y, int64_t n) { // x += y (the residual, a bias)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] + y[i];
}

// The KV cache holds values rounded to half precision, as llama.cpp's f16 cache does.
static void store_f16(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ggr_fp16_to_fp32(ggr_fp32_to_fp16(src[i]));
}

// tag::decode_layer[]
static int decode_layer(const ggr_llama_dims *d, const ggr_llama_layer *L, float *x, int32_t pos,
                        float *s) {
    const int64_t e = d->n_embd, q_len = d->n_head * d->head_dim, kv_len = d->n_head_kv * d->head_dim;
    float *h = s, *q = h + e, *k = q + q_len, *v = k + kv_len, *a = v + kv_len, *o = a + q_len;
    float *gate = o + e, *up = gate + d->n_ff;
    // attention block: x += Wo . attn(rope(Wq.h), rope(Wk.h), Wv.h), h = norm(x)
    TRY(ggr_rms_norm(x, L->attn_norm, 1, e, d->rms_eps, h));
    const int qkv_types[3] = {L->q_type, L->k_type, L->v_type};
    const uint8_t *qkv_w[3] = {L->wq, L->wk, L->wv};
    const int64_t qkv_rows[3] = {q_len, kv_len, kv_len};
    float *qkv_out[3] = {q, k, v};
    TRY(ggr_linear_many(3, qkv_types, qkv_w, qkv_rows, e, h, 1, qkv_out, -1));
    if (L->bq && L->bk && L->bv) { // qwen2
        add_into(q, L->bq, q_len);
        add_into(k, L->bk, kv_len);
        add_into(v, L->bv, kv_len);
    }
    if (L->q_norm && L->k_norm) { // qwen3: per-head RMSNorm
        TRY(ggr_rms_norm(q, L->q_norm, d->n_head, d->head_dim, d->rms_eps, q));
        TRY(ggr_rms_norm(k, L->k_norm, d->n_head_kv, d->head_dim, d->rms_eps, k));
    }
    TRY(ggr_rope(q, &pos, 1, d->n_head, d->head_dim, d->head_dim, d->rope_base, d->rope_neox,
                   d->rope_freq_scale));
    TRY(ggr_rope(k, &pos, 1, d->n_head_kv, d->head_dim, d->head_dim, d->rope_base, d->rope_neox,
                   d->rope_freq_scale));
    for (int64_t g = 0; g < d->n_head_kv; g++) { // cache layout (g, n_ctx, hd)
        store_f16(L->k_cache + (g * d->n_ctx + pos) * d->head_dim, k + g * d->head_dim,
                  d->head_dim);
        store_f16(L->v_cache + (g * d->n_ctx + pos) * d->head_dim, v + g * d->head_dim,
                  d->head_dim);
    }
    TRY(ggr_attention(q, L->k_cache, L->v_cache, 1, d->n_head, d->n_head_kv, d->head_dim,
                        d->n_ctx, pos, d->attn_scale, 0, 0.0f, GGR_ATTN_GGML_BATCHED, a));
    TRY(ggr_linear(L->o_type, L->wo, e, q_len, a, 1, o, -1));
    add_into(x, o, e);
    // feed-forward block: x += W_down . (silu(W_gate.h) * W_up.h), h = norm(x)
    TRY(ggr_rms_norm(x, L->ffn_norm, 1, e, d->rms_eps, h));
    const int ffn_types[2] = {L->gate_type, L->up_type};
    const uint8_t *ffn_w[2] = {L->w_gate, L->w_up};
    const int64_t ffn_rows[2] = {d->n_ff, d->n_ff};
    float *ffn_out[2] = {gate, up};
    TRY(ggr_linear_many(2, ffn_types, ffn_w, ffn_rows, e, h, 1, ffn_out, -1));
    TRY(ggr_silu_mul(gate, up, d->n_ff, d->n_ff, gate));
    TRY(ggr_linear(L->down_type, L->w_down, e, d->n_ff, gate, 1, o, -1));
    add_into(x, o, e);
    return GGR_OK;
}
// end::decode_layer[]

int ggr_llama_decode(const ggr_llama_dims *d, const ggr_llama_layer *layers, int64_t n_layer,
                     float *x, int32_t pos) {
    if (!d || !layers || !x || n_layer <= 0 || pos < 0 || pos >= d->n_ctx || d->n_embd <= 0 ||
        d->n_head <= 0 || d->n_head_kv <= 0 || d->n_head % d->n_head_kv || d->head_dim <= 0 ||
        d->head_dim > 1024 || d->n_ff <= 0)
        return GGR_ERR_SHAPE;
    const int64_t q_len = d->n_head * d->head_dim, kv_len = d->n_head_kv * d->head_dim;
    const int64_t floats = 2 * d->n_embd + 2 * q_len + 2 * kv_len + 2 * d->n_ff;
    float *scratch = malloc((size_t)floats * sizeof(float));
    if (!scratch) return GGR_ERR_NOMEM;
    int st = GGR_OK;
    for (int64_t il = 0; il < n_layer && st == GGR_OK; il++)
        st = decode_layer(d, &layers[il], x, pos, scratch);
    free(scratch);
    return st;
}
