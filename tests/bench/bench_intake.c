/*
 * bench_intake.c - Kafka intake throughput, in one run on one topic:
 *   (a) librdkafka alone: a high-level consumer draining the topic with
 *       rd_kafka_consume_batch_queue() (nothing else done per message);
 *   (b) kadx's intake: the same topic through gateway/intake.c into a real
 *       journal (SQLite WAL, synchronous=FULL: durable before commit),
 *       timed until every message is journaled and until every offset
 *       commit is acknowledged.
 * The topic lives in an in-process librdkafka mock cluster, or with
 * --bootstrap in a real cluster where the topic 'bench' exists with
 * P partitions and is empty; it is filled before either run by a producer
 * (150-byte JSON values by default). Each run uses its own consumer group;
 * times start at the first consumed message, so the group join is left
 * out.
 *
 * usage: bench_intake [--messages N] [--partitions P] [--size BYTES]
 *                     [--dir DIR] [--bootstrap HOST:PORT]
 * Build without sanitizers for numbers that mean something:
 *   meson setup build-rel -Dbuildtype=release && ninja -C build-rel
 *   tests/bench/bench_intake
 * Single-threaded driver; the intake runs on this thread's libuv loop.
 */
#include "base/memtune.h"
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define TOPIC "bench"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_intake: %s: %s\n", what, why);
    exit(1);
}

/* Fills the topic: n messages round-robin over the partitions. */
static void produce(const char *bootstrap, long n, int parts, int size)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *p;
    char *buf = malloc((size_t)size + 64);

    if (buf == NULL) {
        die("produce", "out of memory");
    }
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "linger.ms", "20", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "batch.num.messages", "10000", errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", errstr,
                      sizeof(errstr));
    p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (p == NULL) {
        die("producer", errstr);
    }
    for (long i = 0; i < n; i++) {
        int len = snprintf(buf, (size_t)size + 64,
                           "{\"PlayerId\":%ld,\"GameId\":\"g-%ld\",\"Score\":"
                           "%ld,\"pad\":\"",
                           i, i % 977, (i * 7919) % 100000);
        rd_kafka_resp_err_t e;

        while (len < size - 2) {
            buf[len++] = 'x';
        }
        buf[len++] = '"';
        buf[len++] = '}';
        do {
            e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC),
                                  RD_KAFKA_V_PARTITION((int32_t)(i % parts)),
                                  RD_KAFKA_V_VALUE(buf, (size_t)len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 10);
            }
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            die("produce", rd_kafka_err2str(e));
        }
    }
    if (rd_kafka_flush(p, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        die("produce", "flush timed out");
    }
    rd_kafka_destroy(p);
    free(buf);
}

/* (a) librdkafka alone. Returns messages per second. */
static double raw_consume(const char *bootstrap, long n, double *secs)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *t;
    rd_kafka_queue_t *q;
    rd_kafka_message_t *msgs[1000];
    rd_kafka_t *c;
    long got = 0;
    double t0 = 0;
    double deadline = now_s() + 120;

    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "bench-raw", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "queued.min.messages", "1000000", errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", errstr, sizeof(errstr));
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (c == NULL) {
        die("consumer", errstr);
    }
    rd_kafka_poll_set_consumer(c);
    t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, TOPIC, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, t);
    rd_kafka_topic_partition_list_destroy(t);
    q = rd_kafka_queue_get_consumer(c);
    while (got < n && now_s() < deadline) {
        ssize_t r = rd_kafka_consume_batch_queue(q, 100, msgs, 1000);

        for (ssize_t i = 0; i < r; i++) {
            if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (got == 0) {
                    t0 = now_s();
                }
                got++;
            }
            rd_kafka_message_destroy(msgs[i]);
        }
    }
    *secs = now_s() - t0;
    if (got < n) {
        die("raw consume", "timed out");
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return (double)n / *secs;
}

struct kbench {
    uv_loop_t loop;
    uv_timer_t t;
    struct intake *in;
    long n;
    double t0;
    double t_journaled;
    double t_committed;
    double deadline;
    int stopped;
    int timed_out;
};

static void on_stopped(void *arg)
{
    struct kbench *b = arg;

    b->stopped = 1;
}

static void on_check(uv_timer_t *t)
{
    struct kbench *b = t->data;
    struct intake_counters c;
    const struct intake_partition *p;
    size_t np;
    int64_t committed = 0;

    intake_get_counters(b->in, &c);
    if (c.consumed > 0 && b->t0 == 0) {
        b->t0 = now_s();
    }
    if ((long)c.journaled >= b->n && b->t_journaled == 0) {
        b->t_journaled = now_s();
    }
    p = intake_partitions(b->in, &np);
    for (size_t i = 0; i < np; i++) {
        committed += p[i].committed + 1;
    }
    if (committed >= b->n && b->t_committed == 0) {
        b->t_committed = now_s();
    }
    if (b->t_committed != 0 || now_s() > b->deadline) {
        b->timed_out = b->t_committed == 0;
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        intake_stop(b->in, on_stopped, b);
    }
}

/* (b) kadx's intake into a real journal in dir. */
static void kadx_consume(const char *bootstrap, long n, const char *dir,
                         double *journaled_s, double *committed_s, long *rss_kb)
{
    struct kbench b;
    struct journal_options jo;
    struct journal *j = NULL;
    struct config *cfg = NULL;
    char path[4096];
    char json[8192];
    char err[512];
    struct rusage ru;

    memset(&b, 0, sizeof(b));
    b.n = n;
    snprintf(path, sizeof(path), "%s/bench-journal.db", dir);
    snprintf(json, sizeof(json),
             "{\"kafka\":{\"bootstrap.servers\":\"%s\",\"group.id\":"
             "\"bench-kadx\"},\"adx\":{\"ingest_url\":\"http://127.0.0.1:9\","
             "\"auth\":{\"method\":\"none\"}},\"routes\":[{\"topic\":\"%s\","
             "\"database\":\"db\",\"table\":\"T\",\"format\":\"json\"}],"
             "\"journal\":{\"path\":\"%s\",\"max_bytes\":%lld}}",
             bootstrap, TOPIC, path, 8LL * 1024 * 1024 * 1024);
    if (config_load_string(json, NULL, &cfg, err, sizeof(err)) < 0) {
        die("config", err);
    }
    uv_loop_init(&b.loop);
    memset(&jo, 0, sizeof(jo));
    jo.path = path;
    jo.max_bytes = cfg->journal.max_bytes;
    jo.sync_full = 1;
    jo.loop = &b.loop;
    if (journal_open(&jo, &j, err, sizeof(err)) < 0) {
        die("journal", err);
    }
    if (intake_start(&b.loop, cfg, j, &b.in, err, sizeof(err)) < 0) {
        die("intake", err);
    }
    uv_timer_init(&b.loop, &b.t);
    b.t.data = &b;
    b.deadline = now_s() + 180;
    uv_timer_start(&b.t, on_check, 2, 2);
    while (!b.stopped) {
        uv_run(&b.loop, UV_RUN_ONCE);
    }
    getrusage(RUSAGE_SELF, &ru);
    *rss_kb = ru.ru_maxrss;
    intake_free(b.in);
    journal_close(j);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    config_free(cfg);
    if (b.timed_out) {
        die("kadx intake", "timed out");
    }
    *journaled_s = b.t_journaled - b.t0;
    *committed_s = b.t_committed - b.t0;
    unlink(path);
    snprintf(path, sizeof(path), "%s/bench-journal.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/bench-journal.db-shm", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/bench-journal.db.lock", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/bench-journal.db.settled", dir);
    unlink(path);
}

int main(int argc, char **argv)
{
    long n = 500000;
    int parts = 32;
    int size = 150;
    const char *dir = NULL;
    char tmpl[] = "/tmp/kadx-bench-XXXXXX";
    char errstr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *mrk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *bs = NULL;
    double raw_s;
    double raw_rate;
    double j_s;
    double c_s;
    long rss;

    memtune_apply(); /* as kadx does */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--messages") == 0) {
            n = strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--partitions") == 0) {
            parts = (int)strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--size") == 0) {
            size = (int)strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--dir") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--bootstrap") == 0) {
            bs = argv[i + 1];
        } else {
            fprintf(stderr, "bench_intake: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (n <= 0 || parts <= 0 || size < 40 || size > 1000000) {
        fprintf(stderr, "bench_intake: bad arguments\n");
        return 2;
    }
    if (bs == NULL && (double)n * size / parts > 4.5 * 1024 * 1024) {
        fprintf(stderr,
                "bench_intake: warning: %.1f MiB per partition; the mock "
                "cluster keeps only ~5 MiB (use more --partitions)\n",
                (double)n * size / parts / 1048576.0);
    }
    if (dir == NULL) {
        dir = mkdtemp(tmpl);
        if (dir == NULL) {
            die("mkdtemp", strerror(errno));
        }
    }
    log_setup(LOG_WARN, LOG_TEXT);

    if (bs == NULL) {
        conf = rd_kafka_conf_new();
        mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (mrk == NULL) {
            die("mock", errstr);
        }
        mc = rd_kafka_mock_cluster_new(mrk, 3);
        if (mc == NULL) {
            die("mock", "cannot create the cluster");
        }
        rd_kafka_mock_topic_create(mc, TOPIC, parts, 1);
        bs = rd_kafka_mock_cluster_bootstraps(mc);
    }

    produce(bs, n, parts, size);
    raw_rate = raw_consume(bs, n, &raw_s);
    kadx_consume(bs, n, dir, &j_s, &c_s, &rss);

    printf("bench_intake: %ld messages of %d bytes, topic '%s' with %d "
           "partitions (%s), journal in %s, synchronous=FULL\n\n",
           n, size, TOPIC, parts,
           mc != NULL ? "librdkafka mock cluster, 3 brokers" : bs, dir);
    printf("%-44s %10s %14s\n", "measure", "seconds", "messages/s");
    printf("%-44s %10.2f %14.0f\n", "(a) librdkafka consume (raw)", raw_s,
           raw_rate);
    printf("%-44s %10.2f %14.0f\n", "(b) kadx intake: consumed -> journaled",
           j_s, (double)n / j_s);
    printf("%-44s %10.2f %14.0f\n", "(b) kadx intake: consumed -> commit acked",
           c_s, (double)n / c_s);
    printf("\nkadx / raw: %.0f%%   peak RSS of this process: %ld MiB\n",
           100.0 * ((double)n / c_s) / raw_rate, rss / 1024);

    if (mc != NULL) {
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mrk);
    }
    if (strcmp(dir, tmpl) == 0) {
        rmdir(dir);
    }
    log_release();
    return 0;
}
