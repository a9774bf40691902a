/*
 * Unit tests of the emulator's data-management side (emulators/dm.c):
 * the account SAS it signs (checked against an independent HMAC-SHA256
 * computed with Python's hmac for the same string to sign), and the
 * engine's `.get ingestion resources` rows from the resources callback,
 * and the public storage bases (--storage-public-*) handed out there and
 * mapped back for the worker.
 * The queue worker itself is checked end to end against Azurite by the
 * conformance-python-queued and conformance-node-queued tests.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emulators/dm.h"
#include "emulators/dm_internal.h"
#include "emulators/kusto.h"

#define AZURITE_KEY                                                            \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"          \
    "K1SZFPTOtr/KBHBeksoGMGw=="

/* 2026-01-01T00:00:00Z */
#define EXPIRY 1767225600LL

static void test_account_sas(void **state)
{
    char sas[512];

    (void)state;
    assert_int_equal(dm_account_sas("devstoreaccount1", AZURITE_KEY, EXPIRY,
                                    sas, sizeof(sas)),
                     0);
    /* python3: hmac.new(key, "devstoreaccount1\nrwdlacup\nbqt\nsco\n\n"
     * "2026-01-01T00:00:00Z\n\nhttps,http\n2019-12-12\n", sha256) */
    assert_string_equal(sas,
                        "sv=2019-12-12&ss=bqt&srt=sco&sp=rwdlacup&se=2026-01-"
                        "01T00%3A00%3A00Z&spr=https,http&sig=Gu3BYlQnh%"
                        "2F8TqdkrH1rHiwU4iH8ou0BJUt9X9bafGuU%3D");
}

static void test_account_sas_errors(void **state)
{
    char sas[512];
    char small[40];

    (void)state;
    /* not base64 */
    assert_int_equal(
        dm_account_sas("a", "not base64!", EXPIRY, sas, sizeof(sas)), -EINVAL);
    /* too small an output */
    assert_int_equal(dm_account_sas("devstoreaccount1", AZURITE_KEY, EXPIRY,
                                    small, sizeof(small)),
                     -EINVAL);
    /* another account signs differently */
    {
        char other[512];
        assert_int_equal(dm_account_sas("devstoreaccount1", AZURITE_KEY, EXPIRY,
                                        sas, sizeof(sas)),
                         0);
        assert_int_equal(
            dm_account_sas("other", AZURITE_KEY, EXPIRY, other, sizeof(other)),
            0);
        assert_string_not_equal(strstr(sas, "sig="), strstr(other, "sig="));
    }
}

static size_t two_resources(void *data, const char **types, char **roots,
                            size_t max)
{
    int *calls = data;

    (*calls)++;
    assert_true(max >= 2);
    types[0] = "TempStorage";
    roots[0] = strdup("http://127.0.0.1:1/acct/c?sig=x");
    types[1] = "SecuredReadyForAggregationQueue";
    roots[1] = strdup("http://127.0.0.1:2/acct/q?sig=y");
    return 2;
}

static void test_ingestion_resources_rows(void **state)
{
    char err[256];
    struct kusto *k = kusto_open(NULL, err, sizeof(err));
    struct kusto_result *r = NULL;
    struct kusto_error kerr;
    int calls = 0;

    (void)state;
    assert_non_null(k);
    assert_int_equal(kusto_create_database(k, "db"), 0);
    /* without storage: the columns and no row */
    assert_int_equal(
        kusto_execute(k, "db", ".get ingestion resources", &r, &kerr), 0);
    assert_int_equal(r->tables[0].ncols, 2);
    assert_int_equal(r->tables[0].nrows, 0);
    kusto_result_free(r);
    r = NULL;
    kusto_set_resources_fn(k, two_resources, &calls);
    assert_int_equal(
        kusto_execute(k, "db", ".get ingestion resources", &r, &kerr), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(r->tables[0].nrows, 2);
    assert_string_equal(r->tables[0].cells[0].s, "TempStorage");
    assert_string_equal(r->tables[0].cells[1].s,
                        "http://127.0.0.1:1/acct/c?sig=x");
    assert_string_equal(r->tables[0].cells[2].s,
                        "SecuredReadyForAggregationQueue");
    kusto_result_free(r);
    r = NULL;
    /* .show is the same command; each call asks again (fresh SAS) */
    assert_int_equal(
        kusto_execute(k, "db", ".show ingestion resources", &r, &kerr), 0);
    assert_int_equal(calls, 2);
    assert_int_equal(r->tables[0].nrows, 2);
    kusto_result_free(r);
    kusto_close(k);
}

/* --storage-public-*: the resources name the public bases (a proxy), and
 * the worker maps a message's URLs back to the real ones */
static void test_public_storage_bases(void **state)
{
    struct dm *d = calloc(1, sizeof(*d));
    const char *types[8];
    char *roots[8];
    size_t n;
    char *u;

    (void)state;
    assert_non_null(d);
    snprintf(d->blob_url, sizeof(d->blob_url), "http://127.0.0.1:1/acct");
    snprintf(d->queue_url, sizeof(d->queue_url), "http://127.0.0.1:2/acct");
    snprintf(d->table_url, sizeof(d->table_url), "http://127.0.0.1:3/acct");
    snprintf(d->account, sizeof(d->account), "%s", AZURITE_ACCOUNT);
    snprintf(d->key_b64, sizeof(d->key_b64), "%s", AZURITE_KEY);
    d->sas_lifetime_s = 60;
    /* no public base: the real ones, and URLs unchanged */
    n = dm_resources_cb(d, types, roots, 8);
    assert_int_equal(n, 5);
    assert_string_equal(types[3], "TempStorage");
    assert_non_null(
        strstr(roots[3], "http://127.0.0.1:1/acct/" DM_CONTAINER "?"));
    for (size_t i = 0; i < n; i++) {
        free(roots[i]);
    }
    snprintf(d->pub_blob_url, sizeof(d->pub_blob_url),
             "http://127.0.0.1:11/acct");
    snprintf(d->pub_queue_url, sizeof(d->pub_queue_url),
             "http://127.0.0.1:12/acct");
    snprintf(d->pub_table_url, sizeof(d->pub_table_url),
             "http://127.0.0.1:13/acct");
    n = dm_resources_cb(d, types, roots, 8);
    assert_int_equal(n, 5);
    assert_string_equal(types[0], "SecuredReadyForAggregationQueue");
    assert_non_null(
        strstr(roots[0], "http://127.0.0.1:12/acct/" DM_Q_READY "?"));
    assert_non_null(
        strstr(roots[3], "http://127.0.0.1:11/acct/" DM_CONTAINER "?"));
    assert_string_equal(types[4], "IngestionsStatusTable");
    assert_non_null(strstr(roots[4], "http://127.0.0.1:13/acct/" DM_TABLE "?"));
    for (size_t i = 0; i < n; i++) {
        free(roots[i]);
    }
    u = dm_internal_url(d, "http://127.0.0.1:11/acct/c/b.json.gz?sig=x");
    assert_string_equal(u, "http://127.0.0.1:1/acct/c/b.json.gz?sig=x");
    free(u);
    u = dm_internal_url(d, "http://127.0.0.1:13/acct/t?sig=y");
    assert_string_equal(u, "http://127.0.0.1:3/acct/t?sig=y");
    free(u);
    /* a base that is only a prefix of a path segment is not a match */
    u = dm_internal_url(d, "http://127.0.0.1:13/acct2/t");
    assert_string_equal(u, "http://127.0.0.1:13/acct2/t");
    free(u);
    u = dm_internal_url(d, "http://elsewhere/x");
    assert_string_equal(u, "http://elsewhere/x");
    free(u);
    assert_null(dm_internal_url(d, NULL));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_sas),
        cmocka_unit_test(test_account_sas_errors),
        cmocka_unit_test(test_ingestion_resources_rows),
        cmocka_unit_test(test_public_storage_bases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
