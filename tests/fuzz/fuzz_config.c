/*
 * fuzz_config.c - libFuzzer target: the configuration loader
 * (config_load_string) on arbitrary bytes, native kadx.json and Kusto
 * connector formats alike (the seeds hold both). A valid result is also
 * printed back (config_to_json), the path `kadx run --check` takes.
 */
#include "gateway/config.h"
#include "gateway/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    char err[512];
    char *s;

    if (size > (1 << 20)) {
        return 0;
    }
    log_setup(LOG_ERROR, LOG_TEXT);
    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    if (config_load_string(s, NULL, &cfg, err, sizeof(err)) == 0) {
        free(config_to_json(cfg));
        config_free(cfg);
    }
    free(s);
    return 0;
}
