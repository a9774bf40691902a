/*
 * sbuf.h - a growable byte buffer for building text (JSON bodies, SQL,
 * Prometheus pages, note lists).
 *
 * The buffer keeps its bytes NUL-terminated once anything was added, so
 * `p` can be used as a C string. Failure is sticky (git's strbuf, curl's
 * dynbuf): the first allocation failure or overflow of `max` sets `err`
 * (-ENOMEM or -EMSGSIZE) and every later call does nothing, so a builder
 * can append freely and check `err` once at the end. Every append returns
 * the buffer's `err` (0 or a negative errno).
 *
 * Not thread-safe: one owner at a time. Start from `struct sbuf b = {0}`
 * (set `max` for a cap on len; 0 means no cap); release with sbuf_release.
 */
#ifndef KADX_BASE_SBUF_H
#define KADX_BASE_SBUF_H

#include <stddef.h>

struct sbuf {
    char *p;    /* owned; NULL until the first append */
    size_t len; /* bytes in p, not counting the NUL */
    size_t cap; /* bytes allocated at p */
    size_t max; /* 0, or the largest len allowed (-EMSGSIZE above it) */
    int err;    /* 0, or the first failure (-ENOMEM, -EMSGSIZE) */
};

/* Makes room for `more` bytes past len (plus the NUL). */
int sbuf_reserve(struct sbuf *b, size_t more);

/* Appends n bytes from s (borrowed). */
int sbuf_add(struct sbuf *b, const void *s, size_t n);

/* Appends the C string s (borrowed). */
int sbuf_adds(struct sbuf *b, const char *s);

/* Appends printf-formatted text. */
int sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns the bytes (owned by the caller, free with free(); NULL when
 * nothing was added) and leaves b empty. */
char *sbuf_detach(struct sbuf *b);

/* Frees the bytes and zeroes b (keeping max). Accepts a zeroed b. */
void sbuf_release(struct sbuf *b);

#endif
