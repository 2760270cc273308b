// attn_ggml_ref.c — attn_ggml.inc for any x86-64 CPU (fmaf from libm: exact, slower).
#include <stdlib.h>

#include "ggufref_internal.h"

#define ATTN_FN(name) name##_ref
#include "attn_ggml.inc"
