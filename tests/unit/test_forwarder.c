/*
 * test_forwarder.c - gateway/forwarder*.c: the local record check and the
 * body builder (INV-6: a record that is not valid JSON is rejected with a
 * reason before sending; metadata fields injected into each record), and
 * the batch state machine end to end against a scripted ADX on loopback
 * (mini_http.h) with an in-memory journal that implements the part of
 * storage/journal.h the forwarder uses (forwarder_fixture.h, linked
 * instead of storage/, so the outcomes can be checked event by event): delivery
 * (INV-5), bisection of a permanent failure down to the bad record (INV-6),
 * dedupe queries after an ambiguous send or a restart (INV-5), the 401 token
 * refresh, the pause on a config error and the self-resume, and SIGTERM's
 * bounded wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/log.h"
#include "storage/journal.h"
#include "tests/unit/forwarder_fixture.h"
#include "tests/unit/mini_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

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
        "{\"caf\xc3\xa9\":\"\xe2\x82\xac \xf0\x9f\x8e\xb2\"}",
        "\"del \x7f, tilde ~, space, quote \\\" and backslash \\\\\"",
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
        "{\"a\":\"latin-1 \xe9\"}",
        "{\"a\":\"cut \xe2\x82\"}",
        "\"overlong \xc0\xaf\"",
        "\"surrogate \xed\xa0\x80\"",
        "{\"\xff\":1}",
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
        /* the reason and the byte named, pinned */
        static const struct {
            const char *doc, *why;
        } exact[] = {
            {"{\"a\":[1,2}", "expected ',' or ']' at byte 9"},
            {"[{]", "expected a member name at byte 2"},
            {"{\"a\" 1}", "expected ':' at byte 5"},
            {"[1 2]", "expected ',' or ']' at byte 3"},
            {"{\"a\":1 \"b\"}", "expected ',' or '}' at byte 7"},
            {" 1 2", "trailing data at byte 3"},
            {"[-]", "bad number at byte 2"},
            {"1.e5", "bad number at byte 2"},
            {"[tru]", "unexpected character at byte 1"},
            {"", "unexpected end at byte 0"},
            {"[", "unexpected end at byte 1"},
            {"{\"a\":1,", "expected a member name at byte 7"},
            {"[1,{\"a\":[]},\"x\",", "unexpected end at byte 16"},
        };

        for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
            why[0] = '\0';
            assert_int_equal(forwarder_json_check(exact[i].doc,
                                                  strlen(exact[i].doc), why,
                                                  sizeof(why)),
                             -EINVAL);
            assert_string_equal(why, exact[i].why);
        }
        assert_int_equal(forwarder_json_check("[1,{\"a\":[]},[[]],{}]", 20, why,
                                              sizeof(why)),
                         0);
    }
    {
        char deep[600];

        memset(deep, '[', 300);
        memset(deep + 300, ']', 300);
        assert_int_equal(forwarder_json_check(deep, 600, why, sizeof(why)),
                         -EINVAL);
        assert_string_equal(why, "nested too deep at byte 256");
        /* 256 levels are allowed */
        assert_int_equal(forwarder_json_check(deep + 44, 512, why, sizeof(why)),
                         0);
    }
}

/*
 * One byte that stops the string scan (or does not), at every position of a
 * 40-byte string, so that it falls at every place of the scan's 16-byte
 * blocks and in the bytes after the last whole block. The reason and the
 * byte named in the error must not depend on the place.
 */
static void test_json_check_every_position(void **state)
{
    static const struct {
        const char *put;  /* replaces the plain bytes at k */
        const char *what; /* NULL: still valid */
        int at;           /* the error's byte, from k */
    } cases[] = {
        {"\x7f", NULL, 0},
        {"\\n", NULL, 0},
        {"\\u00e9", NULL, 0},
        {"\xc3\xa9", NULL, 0},
        {"\xf0\x9f\x8e\xb2", NULL, 0},
        {"\x01", "control character in string", 0},
        {"\x1f", "control character in string", 0},
        {"\xff", "invalid UTF-8 in string", 0},
        {"\xc3(", "invalid UTF-8 in string", 0},
        {"\\q", "bad escape", 1},
        {"\\u00g0", "bad \\u escape", 1},
        {"\"", "expected ',' or '}'", 1},
    };
    char why[128];

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t plen = strlen(cases[c].put);

        for (size_t k = 0; k + plen <= 40; k++) {
            char doc[64], want[96];
            size_t base = strlen("{\"k\":\""), n;
            int rc;

            memcpy(doc, "{\"k\":\"", base);
            memset(doc + base, 'a', 40);
            memcpy(doc + base + k, cases[c].put, plen);
            memcpy(doc + base + 40, "\"}", 2);
            n = base + 42;
            why[0] = '\0';
            rc = forwarder_json_check(doc, n, why, sizeof(why));
            if (cases[c].what == NULL) {
                if (rc != 0) {
                    fail_msg("case %zu at %zu rejected: %s", c, k, why);
                }
                continue;
            }
            snprintf(want, sizeof(want), "%s at byte %zu", cases[c].what,
                     base + k + (size_t)cases[c].at);
            if (rc != -EINVAL || strcmp(why, want) != 0) {
                fail_msg("case %zu at %zu: got %d '%s', want '%s'", c, k, rc,
                         why, want);
            }
        }
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
    struct journal_event evs[5];
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
    evs[4] = ev("{\"b\":\"x\\ny\",\r\"c\":5}", 14); /* only a CR is raw */
    assert_int_equal(
        forwarder_build_body(&r, "b1", evs, 5, &body, &len, &bad, &nbad), 0);
    assert_string_equal(body, "{\"a\":1}\n{\"a\":  2}\n{\"a\":4} \n"
                              "{\"b\":\"x\\ny\", \"c\":5}\n");
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
        0, 2, 'h', '1', 0,    0,    0,    1,    'v', /* h1: "v" */
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
    assert_int_equal(
        forwarder_build_body(&r, "jid-9", evs, 4, &body, &len, &bad, &nbad), 0);
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
    assert_int_equal(
        forwarder_build_body(&r, "b", evs, 2, &body, &len, &bad, &nbad), 0);
    assert_string_equal(body, "1,2,3\n4,5,6\n");
    assert_int_equal(nbad, 0);
    assert_null(bad);
    free(body);
}

/* ------------------------------------------------ the state machine */

/* the ambiguous window of the fixture: request 2000 + server 1000 ms */
#define FX_WINDOW_MS 3000

struct fx {
    uv_loop_t loop;
    struct mini_http mh;
    struct journal *j;
    struct config *cfg;
    struct forwarder *fw;
    int stopped;
    int64_t query_count; /* what the scripted dedupe query answers */
    /* decide_ambiguous: reset this many ingests after reading them; the
     * dedupe query answers 0 until its found_at-th call (1-based; 0 =
     * never), then the batch's 5 rows */
    int resets;
    int found_at;
    int nqueries;
    int64_t found_ms; /* mono ms of the first "found" answer */
    char url[128];
};

static int fx_linger_ms = 10;

static int fx_setup(struct fx *f, int nev, int bad_at, const char *auth,
                    const char *fwd)
{
    char json[2048];
    char err[512];
    struct forwarder_options fo;

    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    mh_start(&f->mh, &f->loop);
    mh_url(&f->mh, "", f->url, sizeof(f->url));
    f->j = fj_new(&f->loop, nev, bad_at);
    snprintf(json, sizeof(json),
             "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:1\","
             "\"group.id\":\"g\"},"
             "\"adx\":{\"ingest_url\":\"%s\",\"request_timeout_ms\":2000,"
             "\"server_timeout_ms\":1000,\"auth\":%s},"
             "\"routes\":[{\"topic\":\"gameplay\",\"database\":\"db\","
             "\"table\":\"T\",\"format\":\"json\",\"meta\":{\"batch_id\":"
             "\"kadx_batch\"},\"dedupe_column\":\"BatchId\"}],"
             "\"forwarder\":{\"linger_ms\":%d,"
             "\"retry_initial_ms\":20,\"retry_max_ms\":1000,"
             "\"ambiguous_delay_ms\":20,\"ambiguous_window_ms\":%d,"
             "\"max_inflight\":2%s%s},"
             "\"admin\":{\"listen\":null}}",
             f->url, auth ? auth : "{\"method\":\"none\"}", fx_linger_ms,
             FX_WINDOW_MS, ",", fwd ? fwd : "\"batch_max_rows\":10");
    if (config_load_string(json, NULL, &f->cfg, err, sizeof(err)) != 0) {
        fail_msg("config: %s", err);
    }
    memset(&fo, 0, sizeof(fo));
    fo.cfg = f->cfg;
    fo.journal = f->j;
    fo.settled.everything = 1;
    fo.no_eo_check = 1; /* the scripted ADX answers ingest and query only */
    assert_int_equal(forwarder_new(&f->loop, &fo, &f->fw, err, sizeof(err)), 0);
    return 0;
}

static void fx_start(struct fx *f)
{
    char err[256];

    assert_int_equal(forwarder_start(f->fw, err, sizeof(err)), 0);
}

static void on_stopped(void *arg)
{
    struct fx *f = arg;

    f->stopped = 1;
}

/* Runs the loop until cond(f) holds or timeout_ms passes. */
static int fx_run(struct fx *f, int (*cond)(struct fx *), int timeout_ms)
{
    uint64_t deadline;

    uv_update_time(&f->loop);
    deadline = uv_now(&f->loop) + (uint64_t)timeout_ms;
    while (!cond(f) && uv_now(&f->loop) < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
        uv_update_time(&f->loop);
    }
    return cond(f);
}

static int is_stopped(struct fx *f)
{
    return f->stopped;
}

static void fx_teardown(struct fx *f)
{
    if (!f->stopped) {
        forwarder_stop(f->fw, 500, on_stopped, f);
        assert_true(fx_run(f, is_stopped, 5000));
    }
    forwarder_free(f->fw);
    mh_stop(&f->mh);
    fj_close(f->j);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    mh_release(&f->mh);
    config_free(f->cfg);
    free(f->j);
    log_release();
}

static int all_done(struct fx *f)
{
    return fj_count(f->j, FJ_DELIVERED) + fj_count(f->j, FJ_DEAD) == f->j->nev;
}

static int is_ingest(const struct mh_request *r)
{
    return strncmp(r->target, "/v1/rest/ingest/", 16) == 0;
}

static int n_ingests(struct fx *f)
{
    int n = 0;

    for (int i = 0; i < f->mh.nreqs; i++) {
        n += is_ingest(&f->mh.reqs[i]);
    }
    return n;
}

/* gunzips a recorded request body into a new string (free()) */
static char *gunzip_body(const struct mh_request *r)
{
    size_t cap = 1 << 20;
    char *out = malloc(cap);
    z_stream z;

    assert_non_null(out);
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)r->body;
    z.avail_in = (uInt)r->body_len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap - 1;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    out[cap - 1 - z.avail_out] = '\0';
    inflateEnd(&z);
    return out;
}

/* ADX that rejects (400, permanent) any body holding a "bad" record, and
 * answers dedupe queries with f->query_count. */
static int decide_adx(void *arg, const struct mh_request *r,
                      struct mh_step *out)
{
    struct fx *f = arg;
    static char qbody[256];

    if (strcmp(r->target, "/v1/rest/query") == 0) {
        snprintf(qbody, sizeof(qbody),
                 "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":[],"
                 "\"Rows\":[[%lld]]}]}",
                 (long long)f->query_count);
        out->status = 200;
        out->body = qbody;
        return 1;
    }
    if (is_ingest(r)) {
        char *body = gunzip_body(r);
        int bad = strstr(body, "\"bad\":true") != NULL;

        free(body);
        out->status = bad ? 400 : 200;
        out->body = bad ? "{\"error\":{\"code\":\"Stream_InvalidRecord\","
                          "\"@message\":\"record has a bad field\","
                          "\"@permanent\":true}}"
                        : "{}";
        return 1;
    }
    return 0;
}

static int first_cut_ran(struct fx *f)
{
    return f->j->cut_runs >= 1;
}

/* The linger counts from the first settled kick, not from the end of the
 * cut that was running when it came: a kick older than linger_ms by the
 * time that cut returns is cut at once, without a timer. */
static void test_fw_linger_counts_from_the_kick(void **state)
{
    struct fx f;

    (void)state;
    fx_linger_ms = 200;
    fx_setup(&f, 0, -1, NULL, NULL);
    fx_linger_ms = 10;
    f.j->cut_delay_ms = 300; /* the start's cut: longer than the linger */
    fx_start(&f);
    assert_int_equal(f.j->cuts, 1);
    /* an event settles while that cut runs (it sees none of it) */
    f.j->ev[0].batch = -1;
    snprintf(f.j->ev[0].value, sizeof(f.j->ev[0].value),
             "{\"playerId\":0,\"stake\":1}");
    f.j->nev = 1;
    forwarder_kick(f.fw);
    assert_int_equal(f.j->cuts, 1); /* still cutting: no second request */
    assert_true(fx_run(&f, first_cut_ran, 5000));
    /* the kick waited 300 ms > linger: the next cut was asked for by the
     * first one's callback, not by a linger timer started then */
    assert_int_equal(f.j->cuts, 2);
    f.j->cut_delay_ms = 0;
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 1);
    fx_teardown(&f);
}

/* INV-5: every event delivered once, in batches of max_rows, with the
 * SDK-style request id and the batch id in each record. */
static void test_fw_delivers(void **state)
{
    struct fx f;
    char v[256];
    int lines = 0;

    (void)state;
    fx_setup(&f, 25, -1, NULL, NULL);
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 25);
    assert_int_equal(n_ingests(&f), 3);
    for (int i = 0; i < f.mh.nreqs; i++) {
        const struct mh_request *r = &f.mh.reqs[i];
        char *body;
        char want[64];

        if (!is_ingest(r)) {
            continue;
        }
        mh_header(r, "x-ms-client-request-id", v, sizeof(v));
        assert_int_equal(strncmp(v, "KADX.ingest;fj-", 15), 0);
        assert_string_equal(v + strlen(v) - 2, ";1");
        body = gunzip_body(r);
        /* every record names the batch that carried it */
        snprintf(want, sizeof(want), "{\"kadx_batch\":\"%.*s\",",
                 (int)(strrchr(v, ';') - strchr(v, ';') - 1),
                 strchr(v, ';') + 1);
        for (char *l = body; *l; l = strchr(l, '\n') + 1) {
            assert_int_equal(strncmp(l, want, strlen(want)), 0);
            lines++;
        }
        free(body);
    }
    assert_int_equal(lines, 25);
    {
        struct forwarder_route_stats st;

        assert_int_equal(forwarder_route_stats(f.fw, 0, &st), 0);
        assert_int_equal(st.events_delivered, 25);
        assert_int_equal(st.batches_delivered, 3);
        assert_int_equal(st.dead_events, 0);
    }
    fx_teardown(&f);
}

/* INV-6: a permanent failure is bisected until only the bad record is
 * left; it alone is dead-lettered, with ADX's error. */
static void test_fw_bisects_permanent(void **state)
{
    struct fx f;
    struct forwarder_route_stats st;

    (void)state;
    fx_setup(&f, 40, 13, NULL, "\"batch_max_rows\":40");
    f.mh.decide = decide_adx;
    f.mh.decide_arg = &f;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 15000));
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 39);
    assert_int_equal(fj_count(f.j, FJ_DEAD), 1);
    assert_int_equal(f.j->ev[13].state, FJ_DEAD);
    assert_non_null(strstr(f.j->ev[13].reason, "http 400"));
    assert_non_null(strstr(f.j->ev[13].reason, "record has a bad field"));
    assert_int_equal(forwarder_route_stats(f.fw, 0, &st), 0);
    assert_true(st.splits >= 5); /* 40 -> 20 -> 10 -> 5 -> 2/3 -> 1 */
    assert_int_equal(st.dead_events, 1);
    assert_int_equal(st.permanent, st.splits + 1);
    fx_teardown(&f);
}

/* INV-6: a record that is not JSON never leaves: dead-lettered with the
 * reason before the request, the rest delivered. */
static void test_fw_local_invalid_record(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 8, -1, NULL, NULL);
    snprintf(f.j->ev[5].value, sizeof(f.j->ev[5].value), "{oops");
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 7);
    assert_int_equal(f.j->ev[5].state, FJ_DEAD);
    assert_non_null(strstr(f.j->ev[5].reason, "not valid JSON"));
    assert_int_equal(n_ingests(&f), 1);
    {
        char *body = gunzip_body(&f.mh.reqs[0]);

        assert_null(strstr(body, "oops"));
        free(body);
    }
    fx_teardown(&f);
}

/* INV-5: after a reset once the body was sent, ADX is asked before any
 * resend; found -> delivered without a second request. */
static void test_fw_ambiguous_found(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    mh_push(&f.mh, MH_RESET, 0, NULL, NULL);
    mh_push(&f.mh, MH_RESPOND, 200, NULL,
            "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":[],"
            "\"Rows\":[[5]]}]}");
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 5);
    assert_int_equal(f.mh.nreqs, 2);
    assert_int_equal(n_ingests(&f), 1);
    assert_string_equal(f.mh.reqs[1].target, "/v1/rest/query");
    assert_non_null(
        strstr(f.mh.reqs[1].body, "T | where ingestion_time() > ago("));
    assert_non_null(
        strstr(f.mh.reqs[1].body, "| where BatchId == 'fj-1' | count"));
    fx_teardown(&f);
}

static int64_t now_mono(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

static int64_t now_wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ADX for the ambiguous cases: resets the first f->resets ingests after
 * reading them (maybe applied), answers the others 200, and answers the
 * dedupe query "absent" until its f->found_at-th call. */
static int decide_ambiguous(void *arg, const struct mh_request *r,
                            struct mh_step *out)
{
    struct fx *f = arg;

    if (strcmp(r->target, "/v1/rest/query") == 0) {
        int found = f->found_at > 0 && ++f->nqueries >= f->found_at;

        if (f->found_at <= 0) {
            f->nqueries++;
        }
        if (found && f->found_ms == 0) {
            f->found_ms = now_mono();
        }
        out->status = 200;
        out->body = found ? "{\"Tables\":[{\"TableName\":\"Table_0\","
                            "\"Columns\":[],\"Rows\":[[5]]}]}"
                          : "{\"Tables\":[{\"TableName\":\"Table_0\","
                            "\"Columns\":[],\"Rows\":[[0]]}]}";
        return 1;
    }
    if (is_ingest(r)) {
        if (f->resets > 0) {
            f->resets--;
            out->action = MH_RESET;
            return 1;
        }
        out->status = 200;
        out->body = "{}";
        return 1;
    }
    return 0;
}

static const struct mh_request *nth_ingest(struct fx *f, int n)
{
    for (int i = 0; i < f->mh.nreqs; i++) {
        if (is_ingest(&f->mh.reqs[i]) && n-- == 0) {
            return &f->mh.reqs[i];
        }
    }
    return NULL;
}

/* INV-5: "absent" while the original request may still commit proves
 * nothing: ADX is asked again (with backoff) until the window (request +
 * server timeout) has passed since the send, and only then is the batch
 * sent again, same batch id, attempt 2. */
static void test_fw_ambiguous_absent_before_window_asks_again(void **state)
{
    struct fx f;
    struct forwarder_route_stats st;
    const struct mh_request *first, *second;
    int64_t last_query = 0;
    char v[128];

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    f.mh.decide = decide_ambiguous;
    f.mh.decide_arg = &f;
    f.resets = 1;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 2);
    first = nth_ingest(&f, 0);
    second = nth_ingest(&f, 1);
    assert_string_equal(
        mh_header(second, "x-ms-client-request-id", v, sizeof(v)),
        "KADX.ingest;fj-1;2");
    /* the life the request is given on the server, sent with it */
    assert_string_equal(mh_header(first, "servertimeout", v, sizeof(v)),
                        "00:00:01");
    /* asked more than once, and the resend only after the window */
    assert_true(f.nqueries >= 2);
    for (int i = 0; i < f.mh.nreqs; i++) {
        if (strcmp(f.mh.reqs[i].target, "/v1/rest/query") == 0) {
            assert_true(f.mh.reqs[i].at_ms <= second->at_ms);
            last_query = f.mh.reqs[i].at_ms;
        }
    }
    assert_true(last_query - first->at_ms >= FX_WINDOW_MS - 50);
    assert_true(second->at_ms - first->at_ms >= FX_WINDOW_MS - 50);
    assert_int_equal(forwarder_route_stats(f.fw, 0, &st), 0);
    assert_true(st.dedupe_absent_early >= 1);
    assert_int_equal(st.dedupe_found, 0);
    fx_teardown(&f);
}

/* INV-5: the original request commits late (ADX applied it after the
 * client gave up): found by a later query, delivered at once, never sent
 * twice. */
static void test_fw_ambiguous_found_late_is_delivered_at_once(void **state)
{
    struct fx f;
    struct forwarder_route_stats st;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    f.mh.decide = decide_ambiguous;
    f.mh.decide_arg = &f;
    f.resets = 1;
    f.found_at = 3;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 1);
    assert_int_equal(f.nqueries, 3);
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 5);
    /* delivered on the answer, not at the end of the window */
    assert_true(f.found_ms - nth_ingest(&f, 0)->at_ms < FX_WINDOW_MS);
    assert_int_equal(forwarder_route_stats(f.fw, 0, &st), 0);
    assert_int_equal(st.dedupe_found, 1);
    assert_int_equal(st.dedupe_absent_early, 2);
    fx_teardown(&f);
}

/* A batch the journal holds as SENT (left by a previous process). */
static void fx_old_sent_batch(struct fx *f, int64_t last_sent_ms)
{
    struct fj_batch *fb = &f->j->b[f->j->nb++];

    snprintf(fb->id, sizeof(fb->id), "old-7");
    fb->state = JOURNAL_BATCH_SENT;
    fb->attempts = 1;
    fb->first_sent_ms = last_sent_ms;
    fb->last_sent_ms = last_sent_ms;
    for (int i = 0; i < 5; i++) {
        fb->members[fb->nmembers++] = i;
        f->j->ev[i].state = FJ_INFLIGHT;
        f->j->ev[i].batch = 0;
    }
}

/* INV-5: a batch left SENT long ago (past the window) is asked about
 * once; absent -> resent. */
static void test_fw_sent_at_start_is_queried(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    fx_old_sent_batch(&f, now_wall() - 60000);
    f.mh.decide = decide_ambiguous;
    f.mh.decide_arg = &f;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_string_equal(f.mh.reqs[0].target, "/v1/rest/query");
    assert_non_null(strstr(f.mh.reqs[0].body, "BatchId == 'old-7'"));
    assert_int_equal(f.nqueries, 1);
    assert_int_equal(n_ingests(&f), 1);
    fx_teardown(&f);
}

/* INV-5, kill -9 in the middle of the wait: the journal's last_sent_ms is
 * 1 s old, so the window has 2 s left after the restart: asked until then,
 * resent only after it. */
static void test_fw_restart_mid_window_waits_the_rest(void **state)
{
    struct fx f;
    int64_t start, resend;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    fx_old_sent_batch(&f, now_wall() - 1000);
    f.mh.decide = decide_ambiguous;
    f.mh.decide_arg = &f;
    start = now_mono();
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 1);
    assert_true(f.nqueries >= 2);
    resend = nth_ingest(&f, 0)->at_ms;
    assert_true(resend - start >= FX_WINDOW_MS - 1000 - 50);
    assert_true(resend - start < FX_WINDOW_MS + 1000);
    fx_teardown(&f);
}

/* ... and found after the restart: delivered at once, nothing sent. */
static void test_fw_restart_mid_window_found(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    fx_old_sent_batch(&f, now_wall() - 1000);
    f.mh.decide = decide_ambiguous;
    f.mh.decide_arg = &f;
    f.found_at = 2;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 0);
    assert_int_equal(f.nqueries, 2);
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 5);
    fx_teardown(&f);
}

/* 500 then 429 (Retry-After) then 200: retried, delivered once. */
static void test_fw_transient_and_throttled(void **state)
{
    struct fx f;
    char v[128];

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    mh_push(&f.mh, MH_RESPOND, 500, NULL, "{}");
    mh_push(&f.mh, MH_RESPOND, 429, "Retry-After: 0\r\n",
            "{\"error\":{\"code\":\"Throttling\",\"@permanent\":false}}");
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 3);
    assert_string_equal(
        mh_header(&f.mh.reqs[2], "x-ms-client-request-id", v, sizeof(v)),
        "KADX.ingest;fj-1;3");
    {
        struct forwarder_route_stats st;

        forwarder_route_stats(f.fw, 0, &st);
        assert_int_equal(st.transient, 1);
        assert_int_equal(st.throttled, 1);
        assert_int_equal(st.ambiguous, 0);
    }
    fx_teardown(&f);
}

/* 401: the token is refreshed once and the batch sent again with it. */
static void test_fw_401_refreshes_token(void **state)
{
    struct fx f;
    char auth[512];
    char url[128];
    char v[128];

    (void)state;
    memset(&f, 0, sizeof(f));
    snprintf(auth, sizeof(auth),
             "{\"method\":\"client_secret\",\"tenant_id\":\"t\","
             "\"client_id\":\"c\",\"client_secret\":\"sec-ret-1\","
             "\"scope\":\"https://k/.default\",\"authority_host\":\"%s\"}",
             "http://127.0.0.1:1");
    fx_setup(&f, 5, -1, auth, NULL);
    /* the token endpoint is the same responder: point the authority at
     * it now that its port is known (before forwarder_start) */
    snprintf(url, sizeof(url), "%s", f.url);
    free(f.cfg->adx.auth.authority_host);
    f.cfg->adx.auth.authority_host = strdup(url);
    mh_push(&f.mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-one\"}");
    mh_push(&f.mh, MH_RESPOND, 401, NULL,
            "{\"error\":{\"code\":\"Unauthorized\",\"@permanent\":true}}");
    mh_push(&f.mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-two\"}");
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(f.mh.nreqs, 4);
    assert_string_equal(mh_header(&f.mh.reqs[1], "Authorization", v, sizeof(v)),
                        "Bearer tok-one");
    assert_string_equal(mh_header(&f.mh.reqs[3], "Authorization", v, sizeof(v)),
                        "Bearer tok-two");
    fx_teardown(&f);
}

static int is_paused(struct fx *f)
{
    char why[256];

    return !forwarder_ready(f->fw, why, sizeof(why));
}

/* Config error: the route pauses (ready = 0, reason), nothing is
 * dead-lettered, and it resumes by itself once ADX accepts. */
static void test_fw_config_error_pauses_and_resumes(void **state)
{
    struct fx f;
    char why[256];
    struct forwarder_route_stats st;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    mh_push(&f.mh, MH_RESPOND, 404, NULL,
            "{\"error\":{\"code\":\"BadRequest_EntityNotFound\",\"@message\":"
            "\"table 'T' not found\",\"@permanent\":true}}");
    fx_start(&f);
    assert_true(fx_run(&f, is_paused, 10000));
    assert_int_equal(forwarder_ready(f.fw, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "paused-config"));
    assert_non_null(strstr(why, "EntityNotFound"));
    forwarder_route_stats(f.fw, 0, &st);
    assert_int_equal(st.state, FORWARDER_PAUSED_CONFIG);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(fj_count(f.j, FJ_DEAD), 0);
    assert_int_equal(forwarder_ready(f.fw, why, sizeof(why)), 1);
    fx_teardown(&f);
}

static int one_request(struct fx *f)
{
    return f->mh.nreqs >= 1;
}

/* SIGTERM: an answer that never comes is waited for up to the timeout;
 * the batch stays SENT (ambiguous at the next start). */
static void test_fw_stop_is_bounded(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    mh_push(&f.mh, MH_SILENT, 0, NULL, NULL);
    fx_start(&f);
    assert_true(fx_run(&f, one_request, 10000));
    forwarder_stop(f.fw, 200, on_stopped, &f);
    assert_int_equal(f.stopped, 0); /* never inside forwarder_stop */
    assert_true(fx_run(&f, is_stopped, 5000));
    assert_int_equal(f.j->b[0].state, JOURNAL_BATCH_SENT);
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 0);
    fx_teardown(&f);
}

/* INV-4: a batch whose "sent" mark is not durable is not sent. */
static void test_fw_mark_sent_failure_holds_request(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    f.j->fail_mark_sent = 2;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 1);
    assert_int_equal(f.j->b[0].attempts, 1);
    fx_teardown(&f);
}

static int two_reqs_or_more(struct fx *f)
{
    return f->mh.nreqs >= 2;
}

/* Operator pause (admin POST /pause): nothing new goes out, /readyz stays
 * green (not a fault); resume sends what waited. */
static void test_fw_operator_pause_resume(void **state)
{
    struct fx f;
    char why[256];
    struct forwarder_route_stats st;

    (void)state;
    fx_setup(&f, 25, -1, NULL, NULL);
    assert_int_equal(forwarder_pause(f.fw, 5), -EINVAL);
    assert_int_equal(forwarder_pause(f.fw, 0), 0);
    fx_start(&f);
    /* a second passes (the idle poll) and nothing is sent */
    assert_false(fx_run(&f, two_reqs_or_more, 1200));
    assert_int_equal(f.mh.nreqs, 0);
    forwarder_route_stats(f.fw, 0, &st);
    assert_int_equal(st.state, FORWARDER_PAUSED_OPERATOR);
    assert_int_equal(forwarder_ready(f.fw, why, sizeof(why)), 0);
    assert_int_equal(forwarder_resume(f.fw, -1), 0);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(fj_count(f.j, FJ_DELIVERED), 25);
    fx_teardown(&f);
}

/* A 200 whose "delivered" mark fails is never sent again: only the mark
 * is retried. */
static void test_fw_mark_delivered_failure_no_resend(void **state)
{
    struct fx f;

    (void)state;
    fx_setup(&f, 5, -1, NULL, NULL);
    f.j->fail_mark_delivered = 2;
    fx_start(&f);
    assert_true(fx_run(&f, all_done, 10000));
    assert_int_equal(n_ingests(&f), 1);
    assert_int_equal(f.j->b[0].state, JOURNAL_BATCH_DELIVERED);
    fx_teardown(&f);
}

/* le semantics: a value equal to a bound counts in that bucket */
static void test_fw_latency_histogram(void **state)
{
    struct forwarder_route_stats st;
    const size_t last = FORWARDER_LATENCY_BUCKETS;

    (void)state;
    memset(&st, 0, sizeof(st));
    for (size_t i = 1; i < last; i++) {
        assert_true(forwarder_latency_bounds[i - 1] <
                    forwarder_latency_bounds[i]);
    }
    forwarder_latency_observe(&st, forwarder_latency_bounds[0]);
    forwarder_latency_observe(&st, 0.0051);
    forwarder_latency_observe(&st, -3); /* clock stepped back */
    forwarder_latency_observe(&st, forwarder_latency_bounds[last - 1]);
    forwarder_latency_observe(&st, 1e6);
    assert_int_equal(st.latency_hist[0], 2);
    assert_int_equal(st.latency_hist[1], 1);
    assert_int_equal(st.latency_hist[last - 1], 1);
    assert_int_equal(st.latency_hist[last], 1);
    assert_int_equal(st.latency_count, 5);
    assert_true(st.latency_sum_s > 1e6 && st.latency_sum_s < 1e6 + 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_check),
        cmocka_unit_test(test_json_check_every_position),
        cmocka_unit_test(test_body_plain_json_rejects_invalid),
        cmocka_unit_test(test_body_metadata),
        cmocka_unit_test(test_body_csv_passthrough),
        cmocka_unit_test(test_fw_delivers),
        cmocka_unit_test(test_fw_bisects_permanent),
        cmocka_unit_test(test_fw_local_invalid_record),
        cmocka_unit_test(test_fw_ambiguous_found),
        cmocka_unit_test(test_fw_ambiguous_absent_before_window_asks_again),
        cmocka_unit_test(test_fw_ambiguous_found_late_is_delivered_at_once),
        cmocka_unit_test(test_fw_sent_at_start_is_queried),
        cmocka_unit_test(test_fw_restart_mid_window_waits_the_rest),
        cmocka_unit_test(test_fw_restart_mid_window_found),
        cmocka_unit_test(test_fw_transient_and_throttled),
        cmocka_unit_test(test_fw_401_refreshes_token),
        cmocka_unit_test(test_fw_config_error_pauses_and_resumes),
        cmocka_unit_test(test_fw_stop_is_bounded),
        cmocka_unit_test(test_fw_mark_sent_failure_holds_request),
        cmocka_unit_test(test_fw_mark_delivered_failure_no_resend),
        cmocka_unit_test(test_fw_operator_pause_resume),
        cmocka_unit_test(test_fw_latency_histogram),
        cmocka_unit_test(test_fw_linger_counts_from_the_kick),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
