/*
 * sbuf.c - the growable byte buffer (see sbuf.h for the contract).
 * Capacity doubles from 256 bytes; no thread of its own.
 */
#include "base/sbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sbuf_reserve(struct sbuf *b, size_t more)
{
    size_t need, ncap;
    char *np;

    if (b->err != 0) {
        return b->err;
    }
    if (more > SIZE_MAX / 2 - b->len ||
        (b->max > 0 && b->len + more > b->max)) {
        b->err = -EMSGSIZE;
        return b->err;
    }
    need = b->len + more + 1;
    if (need <= b->cap) {
        return 0;
    }
    ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        ncap *= 2;
    }
    np = realloc(b->p, ncap);
    if (np == NULL) {
        b->err = -ENOMEM;
        return b->err;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

int sbuf_add(struct sbuf *b, const void *s, size_t n)
{
    if (sbuf_reserve(b, n) < 0) {
        return b->err;
    }
    if (n > 0) {
        memcpy(b->p + b->len, s, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int sbuf_adds(struct sbuf *b, const char *s)
{
    return sbuf_add(b, s, strlen(s));
}

int sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->err != 0) {
        return b->err;
    }
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = -EINVAL;
        return b->err;
    }
    if (sbuf_reserve(b, (size_t)n) < 0) {
        return b->err;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *sbuf_detach(struct sbuf *b)
{
    char *p = b->p;

    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = 0;
    return p;
}

void sbuf_release(struct sbuf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = 0;
}
