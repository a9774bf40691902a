/*
 * fuzz_token.c - libFuzzer target: the token endpoint's reply
 * (auth_parse_token_reply, gateway/auth.c), what AAD, IMDS or a hostile
 * stand-in sends back for a bearer token. The first 8 bytes are "now" in
 * Unix seconds (so expires_on meets every clock), the rest the body. A
 * token that is accepted must be non-empty, without space, CR or LF, at
 * most 32 KiB, with a lifetime of 2 s..1 day.
 */
#include "gateway/auth.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t now = 0;
    int64_t life = -1;
    char *token = NULL;
    int rc;

    if (size < sizeof(now) || size > 256 * 1024) {
        return 0;
    }
    memcpy(&now, data, sizeof(now));
    rc = auth_parse_token_reply((const char *)data + sizeof(now),
                                size - sizeof(now), now, &token, &life);
    if (rc == 0) {
        size_t n = strlen(token);

        assert(n > 0 && n <= 32 * 1024);
        assert(strpbrk(token, " \r\n") == NULL);
        assert(life >= 2 && life <= 24 * 3600);
        free(token);
    } else {
        assert(token == NULL);
    }
    return 0;
}
