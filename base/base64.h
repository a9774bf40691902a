/*
 * base64.h - standard base64 (RFC 4648 section 4: "+/" alphabet, '='
 * padding, no line breaks), the one encoder for the HTTP Basic header,
 * Kafka bytes in JSON and queue-message bodies.
 */
#ifndef KADX_BASE_BASE64_H
#define KADX_BASE_BASE64_H

#include <stddef.h>

/* Characters base64 of n bytes takes, without the NUL. */
static inline size_t base64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/*
 * Writes base64 of the n bytes at in to out: base64_len(n) characters and
 * a NUL (out holds base64_len(n) + 1). Returns the characters written.
 */
size_t base64_encode(char *out, const void *in, size_t n);

/* Owned NUL-terminated base64 of the n bytes at in (free()); NULL on
 * ENOMEM. */
char *base64_dup(const void *in, size_t n);

#endif
