// ggufref_api.h — the functions Python calls (through cffi). Everything else is internal.
//
// Shapes follow numpy order: a weight is (rows, cols) = (out_features, in_features), stored as
// rows * row_bytes bytes of GGUF blocks; activations x are float32 (n_tokens, cols); outputs y are
// float32 (n_tokens, rows). Python validates shapes, dtypes and byte sizes before every call;
// C re-checks what it cheaply can and returns a status, never aborts.
//
// The lines between the cffi markers are fed to cffi's cdef, so they stay plain declarations.
#ifndef GGUFREF_API_H
#define GGUFREF_API_H
#include <stdint.h>

// cffi-begin
#define GGR_OK 0
#define GGR_ERR_TYPE 1  // unsupported block format
#define GGR_ERR_SHAPE 2 // a size is zero, negative or not a multiple of the block size
#define GGR_ERR_NOMEM 3 // scratch allocation failed
#define GGR_ERR_ISA 4   // the requested instruction set is not available here

int ggr_linear(int qtype, const uint8_t *w, int64_t rows, int64_t cols, const float *x,
               int64_t n_tokens, float *y, int isa);
#define GGR_MANY_MAX 8 // most weights one ggr_linear_many call takes
int ggr_linear_many(int n, const int *qtypes, const uint8_t *const *ws, const int64_t *rows,
                    int64_t cols, const float *x, int64_t n_tokens, float *const *ys, int isa);
int ggr_set_threads(int n);
int ggr_get_threads(void);
int ggr_cpu_features(void);
int ggr_best_isa(void);
int ggr_force_isa(int isa);
int ggr_current_isa(void);
double ggr_stream_read(const uint8_t *buf, int64_t n_bytes);
// A GGUF string array at buf[pos]: each string's start and length; -1 when all count fit,
// else the index of the first that does not (*end is then where it starts).
int64_t ggr_string_table(const uint8_t *buf, uint64_t size, uint64_t pos, uint64_t count,
                         int64_t *starts, int64_t *lengths, uint64_t *end);

int ggr_rms_norm(const float *x, const float *w, int64_t n, int64_t d, float eps, float *y);
int ggr_rope(float *x, const int32_t *pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
             int64_t n_rot, float theta_base, int neox, float freq_scale);
int ggr_gelu_tanh_mul(const float *gate, const float *up, int64_t n, int exact, float *out);
int ggr_silu_mul(const float *gate, const float *up, int64_t n, int64_t row, float *out);
int ggr_attention(const float *q, const float *k_cache, const float *v_cache, int64_t n_tokens,
                  int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t n_ctx, int64_t pos0,
                  float scale, int64_t window, float softcap, int mode, float *out);

// One decode step (one token at position pos) through every layer of a llama-family model
// (llama, qwen2, qwen3): x (n_embd,) is the residual stream, updated in place; each layer's K
// and V are written to its cache at pos. Same kernels, same order as model/llama.py's forward.
typedef struct {
    int64_t n_embd, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    float rms_eps, rope_base, rope_freq_scale, attn_scale;
    int rope_neox;
} ggr_llama_dims;
typedef struct {
    int q_type, k_type, v_type, o_type, gate_type, up_type, down_type;
    const uint8_t *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
    const float *attn_norm, *ffn_norm;
    const float *bq, *bk, *bv;    // NULL when the model has none (all three or none are used)
    const float *q_norm, *k_norm; // NULL when the model has none (qwen3 has both)
    float *k_cache, *v_cache;     // this layer's (n_head_kv, n_ctx, head_dim)
} ggr_llama_layer;
int ggr_llama_decode(const ggr_llama_dims *d, const ggr_llama_layer *layers, int64_t n_layer,
                     float *x, int32_t pos);
// cffi-end
#endif
