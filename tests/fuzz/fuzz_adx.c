/*
 * fuzz_adx.c - libFuzzer target: what kadx makes of an ADX answer.
 * The first byte picks the HTTP status (from a table of the ones ADX
 * sends, and 0 = no answer), the second the transport flags; the rest is
 * the body, classified as an ingest result (adx_classify: outcome and the
 * one-line reason that reaches logs, /status and dead letters) and parsed
 * as a query result (adx_parse_count, the dedupe check's count).
 */
#include "gateway/adx.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const long statuses[] = {0,   200, 204, 400, 401, 403, 404, 408,
                                409, 413, 429, 500, 502, 503, 504, 520};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct adx_response res;
    char reason[256];
    enum adx_outcome o;
    int64_t n;
    char *body;

    if (size < 2 || size > (1 << 20)) {
        return 0;
    }
    memset(&res, 0, sizeof(res));
    res.status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
    res.err = res.status == 0 && (data[1] & 1) ? -ECONNRESET : 0;
    res.body_sent = (data[1] >> 1) & 1;
    res.truncated = (data[1] >> 2) & 1;
    res.retry_after_ms = (data[1] >> 3) & 1 ? 1000 : -1;
    res.errmsg = res.err ? "Connection reset by peer" : "";
    body = malloc(size - 2 + 1);
    if (body == NULL) {
        return 0;
    }
    memcpy(body, data + 2, size - 2);
    body[size - 2] = '\0';
    res.body = body;
    res.body_len = size - 2;
    o = adx_classify(&res, reason, sizeof(reason));
    assert(adx_outcome_name(o) != NULL);
    assert(strlen(reason) < sizeof(reason));
    assert(strchr(reason, '\n') == NULL);
    (void)adx_parse_count(body, size - 2, &n);
    free(body);
    return 0;
}
