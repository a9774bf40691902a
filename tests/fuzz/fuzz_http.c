/*
 * fuzz_http.c - libFuzzer target: the admin request path's decoders, the
 * part of the admin HTTP server that is kadx's own code (the request line
 * and headers are libhttp-parser's): percent-decoding of paths
 * (http_url_decode) and query parameters (http_query_param, with the names
 * the admin API reads). Every result must fit the output it was given.
 */
#include "admin/http.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"route", "limit",     "from",   "to",
                                    "topic", "partition", "offset", "id"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[256];
    char *s;
    int rc;

    if (size > 65536) {
        return 0;
    }
    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    for (int plus = 0; plus < 2; plus++) {
        rc = http_url_decode(s, size, out, sizeof(out), plus);
        assert(rc == -EMSGSIZE || rc == -EINVAL ||
               (rc >= 0 && (size_t)rc < sizeof(out)));
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        rc = http_query_param(s, names[i], out, sizeof(out));
        assert(rc == -ENOENT || rc == -EMSGSIZE || rc == -EINVAL ||
               (rc >= 0 && (size_t)rc < sizeof(out)));
    }
    free(s);
    return 0;
}
