// A Q4_0 block built by hand and decoded through the C struct of csrc/ggufref_blocks.h.
// The docs page "Legacy 32-element formats" includes this file; the doc tests compile it with
// -Wall -Wextra -Werror and run it, so the struct sizes and the nibble order below are checked.
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "ggufref_blocks.h"

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0: 2 + 16 bytes for 32 weights");
_Static_assert(sizeof(block_q4_K) == 144, "Q4_K: 2 + 2 + 12 + 128 bytes for 256 weights");

int main(void) {
    block_q4_0 b;
    b.d = 0x3800;                     // 0.5 as IEEE binary16 (sign 0, exponent 14, mantissa 0)
    const float d = 0.5f;
    memset(b.qs, 0xFF, sizeof b.qs);  // every q = 15
    b.qs[0] = 0x3A;                   // low nibble: q[0] = 10; high nibble: q[16] = 3

    float x[QK];                      // x[i] = d * (q[i] - 8)
    for (int j = 0; j < QK / 2; j++) {
        x[j] = d * (float)((b.qs[j] & 0x0F) - 8);
        x[j + QK / 2] = d * (float)((b.qs[j] >> 4) - 8);
    }
    assert(x[0] == 1.0f && x[16] == -2.5f && x[1] == 3.5f && x[31] == 3.5f);
    printf("x[0] = %.1f  x[16] = %.1f  x[1] = %.1f\n", x[0], x[16], x[1]);
    return 0;
}
