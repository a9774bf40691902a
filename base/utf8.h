/*
 * utf8.h - checking and copying UTF-8 text that reaches JSON answers and
 * logs (bytes that are not UTF-8 must not end up there raw).
 */
#ifndef KADX_BASE_UTF8_H
#define KADX_BASE_UTF8_H

#include <stddef.h>
#include <string.h>

/*
 * Length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes there
 * are not one (stray continuation, overlong, surrogate, > U+10FFFF, cut).
 * Reads at most up to the first NUL.
 */
static inline size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
            (c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)) {
            return 0;
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
            (s[3] & 0xc0) != 0x80 || (c == 0xf0 && s[1] < 0x90) ||
            (c == 0xf4 && s[1] > 0x8f)) {
            return 0;
        }
        return 4;
    }
    return 0;
}

/* utf8_len for a buffer that is not NUL-terminated: avail bytes at s. */
static inline size_t utf8_len_n(const unsigned char *s, size_t avail)
{
    unsigned char b[5] = {0};
    size_t n;

    memcpy(b, s, avail < 4 ? avail : 4);
    n = utf8_len(b);
    return n <= avail ? n : 0;
}

/*
 * Copies src into dst (cap bytes, NUL-terminated), cut only between
 * characters; bytes that are not UTF-8 become '?'. For text that reaches
 * JSON answers and logs. Returns dst.
 */
static inline char *utf8_copy(char *dst, size_t cap, const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0;

    if (cap == 0) {
        return dst;
    }
    while (*p != '\0') {
        size_t n = utf8_len(p);

        if (o + (n ? n : 1) >= cap) {
            break;
        }
        if (n == 0) {
            dst[o++] = '?';
            p++;
        } else {
            memcpy(dst + o, p, n);
            o += n;
            p += n;
        }
    }
    dst[o] = '\0';
    return dst;
}

/* 1 when the len bytes at s are valid UTF-8 without NUL bytes, else 0. */
static inline int utf8_valid(const void *s, size_t len)
{
    const unsigned char *p = s;
    size_t i = 0;

    while (i < len) {
        size_t n;

        if (p[i] == 0) {
            return 0;
        }
        n = utf8_len_n(p + i, len - i);
        if (n == 0) {
            return 0;
        }
        i += n;
    }
    return 1;
}

#endif
