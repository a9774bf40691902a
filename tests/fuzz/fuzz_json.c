/*
 * fuzz_json.c - libFuzzer target: the forwarder's JSON check
 * (forwarder_json_check, gateway/forwarder_body.c), which decides whether a
 * Kafka payload goes to ADX or to the dead letters (INV-6), and the body
 * built from it (forwarder_build_body) for a route without and with
 * metadata fields. Properties: the byte an error names lies in the input;
 * a record is in the body exactly when it passed the check; the body is one
 * line per record and each line passes the check again.
 */
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char config_json[] =
    "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:1\",\"group.id\":\"g\"},"
    "\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\","
    "\"auth\":{\"method\":\"none\"}},"
    "\"routes\":[{\"name\":\"plain\",\"topic\":\"plain\","
    "\"database\":\"db\",\"table\":\"T\",\"format\":\"json\"},"
    "{\"name\":\"meta\",\"topic\":\"meta\",\"database\":\"db\","
    "\"table\":\"T\",\"format\":\"json\","
    "\"meta\":{\"batch_id\":\"BatchId\",\"offset\":\"Off\"}}]}";

static struct config *cfg;

static void check_body(const struct config_route *r, const uint8_t *data,
                       size_t size, int valid)
{
    struct journal_event ev;
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0, len = 0;
    char *body = NULL;
    char why[160];

    memset(&ev, 0, sizeof(ev));
    ev.topic = r->topic;
    ev.offset = 7;
    ev.timestamp_ms = 1764000000123LL;
    ev.value = data;
    ev.value_len = size;
    if (forwarder_build_body(r, "b-1", &ev, 1, &body, &len, &bad, &nbad) != 0) {
        return; /* -ENOMEM */
    }
    if (!valid) {
        assert(nbad == 1 && len == 0);
    } else if (nbad == 0) {
        /* one line (the newline ends it), valid again */
        assert(len > 0 && body[len - 1] == '\n');
        assert(memchr(body, '\n', len - 1) == NULL);
        assert(memchr(body, '\r', len) == NULL);
        assert(forwarder_json_check(body, len - 1, why, sizeof(why)) == 0);
    } else {
        /* only a route with metadata refuses valid JSON: not an object */
        assert(r->meta.batch_id != NULL && nbad == 1 && len == 0);
    }
    free(body);
    free(bad);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[160];
    int rc;

    if (cfg == NULL) {
        char err[256] = "";

        log_setup(LOG_ERROR, LOG_TEXT);
        if (config_load_string(config_json, NULL, &cfg, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "fuzz_json: config: %s\n", err);
            abort();
        }
    }
    why[0] = '\0';
    rc = forwarder_json_check((const char *)data, size, why, sizeof(why));
    assert(rc == 0 || rc == -EINVAL);
    if (rc < 0) {
        const char *at = strstr(why, " at byte ");

        assert(at != NULL);
        assert(strtoull(at + 9, NULL, 10) <= size);
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        check_body(&cfg->routes[i], data, size, rc == 0);
    }
    return 0;
}
