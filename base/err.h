/*
 * err.h - the error-buffer convention: functions that can fail take
 * `char *err, size_t errlen` and, on failure, write one line there (never
 * a secret, never a payload) and return a negative errno. The caller logs
 * it once.
 */
#ifndef KADX_BASE_ERR_H
#define KADX_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

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

#endif
