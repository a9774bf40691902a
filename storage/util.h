/*
 * util.h - two small helpers shared by storage and gateway.
 *
 * The error-buffer convention: functions that can fail take `char *err,
 * size_t errlen` and, on failure, write one line there (never a secret)
 * and return a negative errno.
 */
#ifndef KADX_UTIL_H
#define KADX_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static inline void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats into err (errlen bytes, truncated); a NULL err is ignored. */
static inline void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * Grows *arr (elements of sz bytes, capacity *cap) to hold at least need
 * elements, doubling from 16. Returns 0, or -ENOMEM with *arr untouched.
 */
static inline int grow_array(void **arr, size_t *cap, size_t need, size_t sz)
{
    size_t ncap;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    p = realloc(*arr, ncap * sz);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

#endif
