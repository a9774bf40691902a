/*
 * bench_kusto.c - the ADX emulator's engine (emulators/kusto.c and
 * kql.c) over a million rows: inserts 1M GamePlay rows in 10k-row calls,
 * then times count, a summarize with top, percentiles and a bin. Prints
 * the times; exits 1 if any call fails or the count is not 1M. Moved out
 * of the unit suite (test_kusto.c), where it cost seconds under ASan and
 * asserted nothing about time.
 * Usage: bench_kusto [rows] (default 1000000)
 * Build without sanitizers: meson setup build-rel -Dbuildtype=release.
 */
#include "base/clock.h"
#include "emulators/kql.h"
#include "emulators/kusto.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB    "leaderboard"
#define CHUNK 10000

static const char *const seed[] = {
    ".create table GamePlay (PlayerID: int, GameID: int, Win: long, "
    "Stake: int, EventTime: datetime)",
    ".alter database leaderboard policy streamingingestion enable",
};

static const char *const queries[] = {
    "GamePlay | count",
    "GamePlay | summarize TotalWin=sum(Win), Spins=count() by PlayerID "
    "| top 10 by TotalWin",
    "GamePlay | extend Latency = ingestion_time() - EventTime | "
    "summarize percentiles(Latency, 50, 90, 99)",
    "GamePlay | summarize count() by bin(EventTime, 1m)",
};

/* Runs csl; returns the result (owned) or NULL after printing why. */
static struct kusto_result *run(struct kusto *k, const char *csl)
{
    struct kusto_result *r = NULL;
    struct kusto_error err;

    memset(&err, 0, sizeof(err));
    if (kusto_execute(k, DB, csl, &r, &err) != 0) {
        fprintf(stderr, "bench_kusto: '%s' failed: %d %s %s\n", csl, err.status,
                err.code, err.message);
        return NULL;
    }
    return r;
}

static int insert_rows(struct kusto *k, size_t rows, int64_t base)
{
    struct kusto_value *v = calloc((size_t)CHUNK * 5, sizeof(*v));
    struct kusto_error err;
    int64_t t0 = mono_ms();

    if (v == NULL) {
        return -1;
    }
    for (size_t i = 0; i < rows; i += CHUNK) {
        size_t n = rows - i < CHUNK ? rows - i : CHUNK;

        for (size_t c = 0; c < n; c++) {
            struct kusto_value *row = &v[c * 5];
            size_t x = i + c;

            row[0].type = KT_INT;
            row[0].i = (int64_t)(x % 1000);
            row[1].type = KT_INT;
            row[1].i = (int64_t)(x % 7);
            row[2].type = KT_LONG;
            row[2].i = (int64_t)(x % 101);
            row[3].type = KT_INT;
            row[3].i = 5;
            row[4].type = KT_DATETIME;
            row[4].i = base + (int64_t)x * 10000;
        }
        if (kusto_insert_rows(k, DB, "GamePlay", v, n,
                              base + (int64_t)i * 10000 + KQL_TICKS_PER_SEC,
                              &err) != 0) {
            fprintf(stderr, "bench_kusto: insert: %s\n", err.message);
            free(v);
            return -1;
        }
    }
    printf("insert %zu rows: %" PRId64 " ms\n", rows, mono_ms() - t0);
    free(v);
    return 0;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    const char *b = "2026-11-24T10:00:00Z";
    struct kusto *k;
    char errbuf[256];
    int64_t base = 0;
    int rc = 1;

    k = kusto_open(NULL, errbuf, sizeof(errbuf));
    if (k == NULL || kusto_create_database(k, DB) != 0 ||
        kql_parse_datetime(b, strlen(b), &base) != 0) {
        fprintf(stderr, "bench_kusto: cannot open the engine: %s\n", errbuf);
        goto close_k;
    }
    for (size_t i = 0; i < sizeof(seed) / sizeof(seed[0]); i++) {
        struct kusto_result *r = run(k, seed[i]);

        if (r == NULL) {
            goto close_k;
        }
        kusto_result_free(r);
    }
    if (insert_rows(k, rows, base) < 0) {
        goto close_k;
    }
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        int64_t t0 = mono_ms();
        struct kusto_result *r = run(k, queries[i]);

        if (r == NULL) {
            goto close_k;
        }
        printf("%7" PRId64 " ms  %zu rows  %s\n", mono_ms() - t0,
               r->tables[0].nrows, queries[i]);
        if (i == 0 && r->tables[0].cells[0].i != (int64_t)rows) {
            fprintf(stderr, "bench_kusto: count %" PRId64 ", expected %zu\n",
                    r->tables[0].cells[0].i, rows);
            kusto_result_free(r);
            goto close_k;
        }
        kusto_result_free(r);
    }
    rc = 0;
close_k:
    kusto_close(k);
    return rc;
}
