/*
 * base64.c - see base64.h.
 */
#include "base/base64.h"

#include <stdint.h>
#include <stdlib.h>

size_t base64_encode(char *out, const void *in, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = in;
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;

        if (i + 1 < n) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= s[i + 2];
        }
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

char *base64_dup(const void *in, size_t n)
{
    char *out = malloc(base64_len(n) + 1);

    if (out != NULL) {
        base64_encode(out, in, n);
    }
    return out;
}
