/*
 * test_intake.c - gateway/intake.c against an in-process librdkafka mock
 * cluster and a real journal in a temporary directory: messages (keys,
 * headers, tombstones) journaled, commits acknowledged, settled watermarks
 * exposed and saved, status tables; plus the header format walker. The
 * end-to-end behaviour (SIGKILL, rebalances, broker outages) is in
 * tests/e2e/test_intake.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_headers_next(void **state)
{
    /* "a" = "xy", "bb" = null */
    static const unsigned char buf[] = {0,   1,    'a',  0,    0,   0,
                                        2,   'x',  'y',  0,    2,   'b',
                                        'b', 0xff, 0xff, 0xff, 0xff};
    const char *name;
    const void *val;
    size_t nl;
    size_t vl;
    size_t pos = 0;

    assert_int_equal(
        intake_headers_next(buf, sizeof(buf), &pos, &name, &nl, &val, &vl), 1);
    assert_int_equal(nl, 1);
    assert_memory_equal(name, "a", 1);
    assert_int_equal(vl, 2);
    assert_memory_equal(val, "xy", 2);
    assert_int_equal(
        intake_headers_next(buf, sizeof(buf), &pos, &name, &nl, &val, &vl), 1);
    assert_int_equal(nl, 2);
    assert_null(val);
    assert_int_equal(
        intake_headers_next(buf, sizeof(buf), &pos, &name, &nl, &val, &vl), 0);
    /* every truncation of the buffer is refused, never read past */
    for (size_t cut = 1; cut < 7; cut++) {
        pos = 0;
        assert_int_equal(
            intake_headers_next(buf, cut, &pos, &name, &nl, &val, &vl),
            -EINVAL);
    }
    pos = 0;
    assert_int_equal(intake_headers_next(buf, 0, &pos, &name, &nl, &val, &vl),
                     0);
}

struct run {
    uv_loop_t loop;
    uv_timer_t timer;
    struct intake *in;
    int settled_calls;
    int done;
    int stopped;
    int ticks;
};

static void on_settled(void *arg)
{
    struct run *r = arg;

    r->settled_calls++;
}

static void on_stopped(void *arg)
{
    struct run *r = arg;

    r->stopped = 1;
}

/* Waits (on the loop) until both partitions are settled to offset 100. */
static void on_tick(uv_timer_t *t)
{
    struct run *r = t->data;
    int64_t s0 = -1;
    int64_t s1 = -1;

    intake_settled(r->in, "u", 0, &s0);
    intake_settled(r->in, "u", 1, &s1);
    if ((s0 == 100 && s1 == 99) || ++r->ticks > 3000) {
        r->done = 1;
        uv_timer_stop(t);
    }
}

struct found {
    int n;
    int with_headers;
    int null_key;
};

static int on_event(void *arg, const struct journal_event *ev,
                    enum journal_event_state st, const char *reason)
{
    struct found *f = arg;

    f->n++;
    if (ev->key == NULL) {
        f->null_key++;
    }
    if (ev->headers_len > 0) {
        size_t pos = 0;
        const char *name;
        const void *val;
        size_t nl;
        size_t vl;

        assert_int_equal(intake_headers_next(ev->headers, ev->headers_len, &pos,
                                             &name, &nl, &val, &vl),
                         1);
        assert_int_equal(nl, 5);
        assert_memory_equal(name, "trace", 5);
        assert_int_equal(vl, 3);
        assert_memory_equal(val, "abc", 3);
        f->with_headers++;
    }
    return 0;
}

static void produce(const char *bootstrap)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *p;

    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                      sizeof(errstr));
    p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(p);
    for (int i = 0; i < 100; i++) {
        char v[32];
        int len = snprintf(v, sizeof(v), "{\"i\":%d}", i);

        for (int32_t part = 0; part < 2; part++) {
            rd_kafka_headers_t *h = rd_kafka_headers_new(1);

            rd_kafka_header_add(h, "trace", -1, "abc", 3);
            assert_int_equal(
                rd_kafka_producev(
                    p, RD_KAFKA_V_TOPIC("u"), RD_KAFKA_V_PARTITION(part),
                    RD_KAFKA_V_VALUE(v, (size_t)len),
                    RD_KAFKA_V_KEY((i % 2 ? "k" : NULL), (i % 2 ? 1 : 0)),
                    RD_KAFKA_V_HEADERS((i == 7 ? h : NULL)),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
            if (i != 7) {
                rd_kafka_headers_destroy(h);
            }
        }
    }
    /* a tombstone on partition 0: offset 100 */
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("u"),
                                       RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_KEY("k", 1), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* After the mock cluster's run: the counters, the partitions and what the
 * journal holds. */
static void check_mock_run(const struct run *r, struct journal *j)
{
    char err[512];
    struct intake_counters c;
    const struct intake_partition *ip;
    const struct journal_offset *so;
    struct journal_iter_req it;
    struct found f = {0};
    size_t n;

    /* INV-1/INV-3: settled = committed - 1 = what was journaled; the
     * tombstone (offset 100) is skipped but its offset committed */
    intake_get_counters(r->in, &c);
    assert_int_equal(c.consumed, 201);
    assert_int_equal(c.tombstones, 1);
    assert_int_equal(c.journaled, 200);
    assert_int_equal(c.duplicates, 0);
    assert_true(c.commits > 0);
    assert_true(r->settled_calls > 0);
    ip = intake_partitions(r->in, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ip[i].topic, "u");
        assert_true(ip[i].assigned);
        assert_int_equal(ip[i].route, 0);
        /* skipped tombstones count as journaled once what precedes them
         * is (their offset must be committed too) */
        assert_int_equal(ip[i].journaled, ip[i].partition == 0 ? 100 : 99);
        assert_int_equal(ip[i].committed, ip[i].journaled);
        assert_int_equal(ip[i].settled, ip[i].committed);
        assert_int_equal(ip[i].n_tombstones, ip[i].partition == 0 ? 1 : 0);
    }
    so = intake_settled_all(r->in, &n);
    assert_int_equal(n, 2);
    assert_string_equal(so[0].topic, "u");

    /* what the journal holds: 200 events, keys and headers kept */
    memset(&it, 0, sizeof(it));
    it.states = JOURNAL_SEL_ALL;
    it.route = -1;
    it.partition = -1;
    it.from_offset = -1;
    it.to_offset = -1;
    assert_int_equal(journal_iterate(j, &it, on_event, &f, err, sizeof(err)),
                     0);
    assert_int_equal(f.n, 200);
    assert_int_equal(f.with_headers, 2);
    assert_int_equal(f.null_key, 100);
}

static void test_intake_mock_cluster(void **state)
{
    char dir[] = "/tmp/kadx-test-intake-XXXXXX";
    char path[256];
    char json[2048];
    char err[512];
    char errstr[256];
    struct run r;
    struct config *cfg = NULL;
    struct journal *j = NULL;
    struct journal_options jo;
    rd_kafka_t *mrk;
    rd_kafka_mock_cluster_t *mc;
    FILE *sf;
    char line[256];
    int lines = 0;

    assert_non_null(mkdtemp(dir));
    mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr,
                       sizeof(errstr));
    assert_non_null(mrk);
    mc = rd_kafka_mock_cluster_new(mrk, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "u", 2, 1), 0);
    produce(rd_kafka_mock_cluster_bootstraps(mc));

    snprintf(path, sizeof(path), "%s/j.db", dir);
    snprintf(json, sizeof(json),
             "{\"kafka\":{\"bootstrap.servers\":\"%s\",\"group.id\":\"gu\"},"
             "\"adx\":{\"ingest_url\":\"http://127.0.0.1:9\",\"auth\":{"
             "\"method\":\"none\"}},\"routes\":[{\"topic\":\"u\","
             "\"database\":\"db\",\"table\":\"T\",\"format\":\"json\"}],"
             "\"journal\":{\"path\":\"%s\"},\"admin\":{\"listen\":\"off\"}}",
             rd_kafka_mock_cluster_bootstraps(mc), path);
    assert_int_equal(config_load_string(json, NULL, &cfg, err, sizeof(err)), 0);

    memset(&r, 0, sizeof(r));
    assert_int_equal(uv_loop_init(&r.loop), 0);
    memset(&jo, 0, sizeof(jo));
    jo.path = path;
    jo.sync_full = 1;
    jo.loop = &r.loop;
    assert_int_equal(journal_open(&jo, &j, err, sizeof(err)), 0);
    assert_int_equal(intake_start(&r.loop, cfg, j, &r.in, err, sizeof(err)), 0);
    intake_on_settled(r.in, on_settled, &r);
    uv_timer_init(&r.loop, &r.timer);
    r.timer.data = &r;
    uv_timer_start(&r.timer, on_tick, 10, 10);
    while (!r.done) {
        uv_run(&r.loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&r.timer, NULL);

    check_mock_run(&r, j);

    intake_stop(r.in, on_stopped, &r);
    intake_stop(r.in, on_stopped, &r); /* twice: a no-op */
    while (!r.stopped) {
        uv_run(&r.loop, UV_RUN_ONCE);
    }
    intake_free(r.in);
    journal_close(j);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&r.loop), 0);

    /* the settled watermarks were saved beside the journal */
    snprintf(path, sizeof(path), "%s/j.db.settled", dir);
    sf = fopen(path, "r");
    assert_non_null(sf);
    while (fgets(line, sizeof(line), sf) != NULL) {
        assert_true(strcmp(line, "u\t0\t100\n") == 0 ||
                    strcmp(line, "u\t1\t99\n") == 0);
        lines++;
    }
    fclose(sf);
    assert_int_equal(lines, 2);

    config_free(cfg);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mrk);
    snprintf(json, sizeof(json), "rm -rf '%s'", dir);
    assert_int_equal(system(json), 0);
}

static void test_start_refuses_auto_commit(void **state)
{
    char err[512];
    struct config *cfg = NULL;
    const char *json =
        "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:1\",\"group.id\":"
        "\"g\"},\"adx\":{\"ingest_url\":\"http://127.0.0.1:9\",\"auth\":{"
        "\"method\":\"none\"}},\"routes\":[{\"topic\":\"u\",\"database\":"
        "\"db\",\"table\":\"T\",\"format\":\"json\"}]}";

    /* config.c refuses it first; the intake refuses it again (INV-1) even
     * if a caller built the config by hand */
    assert_int_equal(config_load_string(json, NULL, &cfg, err, sizeof(err)), 0);
    {
        char **keys =
            realloc(cfg->kafka.keys, (cfg->kafka.n + 1) * sizeof(char *));
        char **vals;

        assert_non_null(keys);
        cfg->kafka.keys = keys;
        vals = realloc(cfg->kafka.values, (cfg->kafka.n + 1) * sizeof(char *));
        assert_non_null(vals);
        cfg->kafka.values = vals;
        cfg->kafka.keys[cfg->kafka.n] = strdup("enable.auto.commit");
        cfg->kafka.values[cfg->kafka.n] = strdup("true");
        cfg->kafka.n++;
    }
    {
        char dir[] = "/tmp/kadx-test-intake-XXXXXX";
        char path[256];
        struct journal_options jo;
        struct journal *j = NULL;
        struct intake *in = NULL;
        uv_loop_t loop;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/j.db", dir);
        uv_loop_init(&loop);
        memset(&jo, 0, sizeof(jo));
        jo.path = path;
        jo.loop = &loop;
        assert_int_equal(journal_open(&jo, &j, err, sizeof(err)), 0);
        assert_int_equal(intake_start(&loop, cfg, j, &in, err, sizeof(err)),
                         -EINVAL);
        assert_null(in);
        assert_non_null(strstr(err, "enable.auto.commit"));
        journal_close(j);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir);
        assert_int_equal(system(path), 0);
    }
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_next),
        cmocka_unit_test(test_intake_mock_cluster),
        cmocka_unit_test(test_start_refuses_auto_commit),
    };

    log_setup(LOG_WARN, LOG_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
