// GGUF string arrays (a vocabulary, its merges): where each string starts and how long it is.
//
// A GGUF string is a little-endian u64 byte count followed by that many bytes, and an array of
// them is stored back to back, so finding string i means walking strings 0..i-1: a loop of a
// few instructions per string, which in Python costs an interpreter round per string (a
// 151,936-token vocabulary and its merges are 303,323 strings). It only reads inside
// buf[0, size) and stops at the first string that does not fit; gguf_file.py then reports that
// string in its own words.

#include "ggufref_api.h"

// tag::string_table[]
int64_t ggr_string_table(const uint8_t *buf, uint64_t size, uint64_t pos, uint64_t count,
                         int64_t *starts, int64_t *lengths, uint64_t *end) {
    for (uint64_t i = 0; i < count; i++) {
        uint64_t n = 0;
        if (pos > size || size - pos < 8) {
            *end = pos;
            return (int64_t)i; // the length does not fit
        }
        for (int b = 7; b >= 0; b--) n = (n << 8) | buf[pos + b]; // little-endian u64
        if (n > size - pos - 8) {
            *end = pos;
            return (int64_t)i; // the bytes do not fit
        }
        starts[i] = (int64_t)(pos + 8);
        lengths[i] = (int64_t)n;
        pos += 8 + n;
    }
    *end = pos;
    return -1;
}
// end::string_table[]
