/*
 * fuzz_kql.c - libFuzzer target: the ADX emulator's KQL front end
 * (kql_translate: lexer, parser and translation to SQLite) on arbitrary
 * text, over one table with a column of each common type. Errors must come
 * back as a status and a message, never a crash.
 */
#include "emulators/kql.h"
#include "emulators/kusto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct kusto_column cols[] = {
    {"PlayerID", KT_INT},
    {"GameID", KT_INT},
    {"Win", KT_LONG},
    {"Stake", KT_INT},
    {"EventTime", KT_DATETIME},
    {"Name", KT_STRING},
    {"Ratio", KT_REAL},
    {"Ok", KT_BOOL},
    {"Span", KT_TIMESPAN},
    {"Bag", KT_DYNAMIC},
    {"Id", KT_GUID},
};

static int schema(void *ctx, const char *name, const struct kusto_column **out,
                  size_t *n)
{
    (void)ctx;
    if (strcmp(name, "GamePlay") != 0 && strcmp(name, "T") != 0) {
        return -ENOENT;
    }
    *out = cols;
    *n = sizeof(cols) / sizeof(cols[0]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kql_plan plan;
    struct kusto_error err;
    char *csl;

    if (size > 65536) {
        return 0;
    }
    csl = malloc(size + 1);
    if (csl == NULL) {
        return 0;
    }
    memcpy(csl, data, size);
    csl[size] = '\0';
    memset(&plan, 0, sizeof(plan));
    memset(&err, 0, sizeof(err));
    (void)kql_translate(csl, "leaderboard", schema, NULL, 638000000000000000LL,
                        &plan, &err);
    kql_plan_release(&plan);
    free(csl);
    return 0;
}
