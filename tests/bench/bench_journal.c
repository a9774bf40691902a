/*
 * bench_journal.c - throughput of storage/journal.c (issue 3, DESIGN.md
 * "Performance"). Prints a table: appends/s and MB/s for 150-byte events
 *  - sync journal_append at group sizes 1, 100, 1000, 10000 (one request =
 *    one transaction = one fsync), synchronous FULL and NORMAL;
 *  - journal_append_async with 1, 8 and 64 concurrent appenders (each
 *    keeps one request in flight; the writer's group commit merges them),
 *    at request sizes 1, 100 and 1000, FULL;
 *  - the whole cycle the gateway needs (append 1000-event fetches, cut
 *    10000-event batches, mark delivered, retire), FULL: the journal's
 *    share of the end-to-end target (>= 400k events/s).
 *  - "wal": the WAL bytes each step of draining writes (storage/README.md
 *    "What draining needs").
 * Usage: bench_journal [dir] [seconds per row] [cycle|wal]
 *   (dir default ".", 1.5 s; "cycle" runs only the cycle, "wal" only the
 *   WAL table)
 * Build without sanitizers: meson setup build-rel -Dbuildtype=release.
 */
#include "base/memtune.h"
#include "storage/journal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define EVENT_BYTES 150
#define NPARTS      4

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct bench {
    char path[512];
    double secs;
    char value[EVENT_BYTES];
    struct journal_event *ev;
    int64_t next[NPARTS];
};

static void remove_journal(const char *path)
{
    char p[600];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s.lock", path);
    unlink(p);
}

/* Opens the bench's journal as it is on disk (exits on failure). */
static struct journal *open_journal(struct bench *b, int sync_full,
                                    uv_loop_t *loop)
{
    struct journal_options o;
    struct journal *j = NULL;
    char err[256];

    memset(&o, 0, sizeof(o));
    o.path = b->path;
    o.sync_full = sync_full;
    o.loop = loop;
    if (journal_open(&o, &j, err, sizeof(err)) != 0) {
        fprintf(stderr, "open: %s\n", err);
        exit(1);
    }
    return j;
}

static struct journal *open_fresh(struct bench *b, int sync_full,
                                  uv_loop_t *loop)
{
    remove_journal(b->path);
    memset(b->next, 0, sizeof(b->next));
    return open_journal(b, sync_full, loop);
}

/* n events of one partition (a Kafka fetch), offsets continuing. */
static void fill(struct bench *b, struct journal_event *ev, size_t n, int p)
{
    for (size_t i = 0; i < n; i++) {
        memset(&ev[i], 0, sizeof(ev[i]));
        ev[i].topic = "bench";
        ev[i].partition = p;
        ev[i].offset = b->next[p]++;
        ev[i].timestamp_ms = 1700000000000LL + ev[i].offset;
        ev[i].value = b->value;
        ev[i].value_len = EVENT_BYTES;
    }
}

static void row(const char *api, const char *sync, int group, int appenders,
                int64_t events, double secs, int64_t txns)
{
    char tx[32] = "-";

    if (txns > 0) {
        snprintf(tx, sizeof(tx), "%.0f", (double)txns / secs);
    }
    printf("| %-5s | %-6s | %6d | %9d | %10.0f | %7.1f | %8s |\n", api, sync,
           group, appenders, (double)events / secs,
           (double)events * EVENT_BYTES / secs / 1e6, tx);
    fflush(stdout);
}

static void bench_sync(struct bench *b, int sync_full, int group)
{
    struct journal *j = open_fresh(b, sync_full, NULL);
    char err[256];
    int64_t events = 0, txns = 0;
    double t0 = now_s(), t;
    int p = 0;

    do {
        fill(b, b->ev, (size_t)group, p);
        p = (p + 1) % NPARTS;
        if (journal_append(j, b->ev, (size_t)group, NULL, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "append: %s\n", err);
            exit(1);
        }
        events += group;
        txns++;
        t = now_s() - t0;
    } while (t < b->secs);
    row("sync", sync_full ? "FULL" : "NORMAL", group, 1, events, t, txns);
    journal_close(j);
}

struct appender {
    struct bench *b;
    struct journal *j;
    int part;
    int group;
    int64_t *events;
    double deadline;
    int *running;
    struct journal_event *ev;
};

static void submit(struct appender *a);

static void on_append(void *arg, int status,
                      const struct journal_append_result *res, const char *err)
{
    struct appender *a = arg;

    if (status != 0) {
        fprintf(stderr, "append: %s\n", err);
        exit(1);
    }
    *a->events += res->appended;
    if (now_s() < a->deadline) {
        submit(a);
    } else {
        (*a->running)--;
    }
}

static void submit(struct appender *a)
{
    fill(a->b, a->ev, (size_t)a->group, a->part);
    if (journal_append_async(a->j, a->ev, (size_t)a->group, on_append, a) !=
        0) {
        fprintf(stderr, "append_async failed\n");
        exit(1);
    }
}

static void bench_async(struct bench *b, int appenders, int group)
{
    uv_loop_t loop;
    struct journal *j;
    struct appender *a = calloc((size_t)appenders, sizeof(*a));
    int64_t events = 0;
    int running = appenders;
    double t0;

    uv_loop_init(&loop);
    j = open_fresh(b, 1, &loop);
    t0 = now_s();
    for (int i = 0; i < appenders; i++) {
        a[i].b = b;
        a[i].j = j;
        a[i].part = i % NPARTS;
        a[i].group = group;
        a[i].events = &events;
        a[i].deadline = t0 + b->secs;
        a[i].running = &running;
        a[i].ev = calloc((size_t)group, sizeof(*a[i].ev));
        submit(&a[i]);
    }
    while (running > 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    /* appenders of one partition share its offsets: all were accepted in
     * order because requests run FIFO */
    row("async", "FULL", group, appenders, events, now_s() - t0, 0);
    journal_close(j);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (int i = 0; i < appenders; i++) {
        free(a[i].ev);
    }
    free(a);
}

/* Append, cut, deliver, retire: the journal's whole job per event. */
static void bench_cycle(struct bench *b)
{
    struct journal *j = open_fresh(b, 1, NULL);
    struct journal_cut_req q;
    char err[256];
    int64_t events = 0, delivered = 0, retired = 0, d;
    double t0 = now_s(), t;
    int p = 0;

    memset(&q, 0, sizeof(q));
    q.route = 0;
    q.max_rows = 10000;
    q.max_bytes = 16 << 20;
    q.settled_all = 1;
    do {
        struct journal_batch *bt = NULL;

        for (int k = 0; k < 10; k++) {
            fill(b, b->ev, 1000, p);
            p = (p + 1) % NPARTS;
            if (journal_append(j, b->ev, 1000, NULL, err, sizeof(err)) != 0) {
                fprintf(stderr, "append: %s\n", err);
                exit(1);
            }
            events += 1000;
        }
        if (journal_batch_cut(j, &q, &bt, err, sizeof(err)) != 0 ||
            bt == NULL) {
            fprintf(stderr, "cut: %s\n", err);
            exit(1);
        }
        if (journal_batch_mark_sent(j, bt->id, 1, err, sizeof(err)) != 0 ||
            journal_batch_mark_delivered(j, bt->id, 2, err, sizeof(err)) != 0 ||
            journal_retire(j, INT64_MAX, 64, &d, err, sizeof(err)) != 0) {
            fprintf(stderr, "mark/retire: %s\n", err);
            exit(1);
        }
        delivered += bt->count;
        retired += d;
        journal_batch_free(bt);
        t = now_s() - t0;
    } while (t < b->secs * 2);
    printf("\ncycle (FULL; append 1000-event fetches, cut 10000-event "
           "batches, mark sent + delivered, retire):\n"
           "  %.0f events/s appended, %.0f/s delivered, %.0f/s retired "
           "(%.1f MB/s)\n",
           (double)events / t, (double)delivered / t, (double)retired / t,
           (double)events * EVENT_BYTES / t / 1e6);
    journal_close(j);
}

static int64_t wal_size(const struct bench *b)
{
    char p[600];
    struct stat st;

    snprintf(p, sizeof(p), "%s-wal", b->path);
    return stat(p, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* WAL bytes of each draining step: 40 appends of 1000 events, then one
 * 1 MiB batch cut, marked sent, delivered and retired, each step alone in
 * a journal opened for it (closing checkpoints and removes the WAL). */
static void bench_wal(struct bench *b)
{
    struct journal *j = open_fresh(b, 1, NULL);
    struct journal_cut_req q;
    struct journal_batch *bt = NULL;
    char err[256], id[JOURNAL_BATCH_ID_MAX];
    int64_t w0, n = 0, retired = 0;
    int rc = 0;

    for (int k = 0; k < 40; k++) {
        fill(b, b->ev, 1000, k % NPARTS);
        if (journal_append(j, b->ev, 1000, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "append: %s\n", err);
            exit(1);
        }
    }
    journal_close(j);
    memset(&q, 0, sizeof(q));
    q.max_rows = 1000000;
    q.max_bytes = 1 << 20;
    q.settled_all = 1;
    printf("| step (%d-byte events, FULL) | WAL written |\n|---|---|\n",
           EVENT_BYTES);
    for (int step = 0; step < 4; step++) {
        j = open_journal(b, 1, NULL);
        w0 = wal_size(b);
        switch (step) {
        case 0:
            rc = journal_batch_cut(j, &q, &bt, err, sizeof(err));
            if (rc == 0 && bt != NULL) {
                n = bt->count;
                snprintf(id, sizeof(id), "%s", bt->id);
                journal_batch_free(bt);
            } else {
                rc = -1;
            }
            break;
        case 1:
            rc = journal_batch_mark_sent(j, id, 1, err, sizeof(err));
            break;
        case 2:
            rc = journal_batch_mark_delivered(j, id, 2, err, sizeof(err));
            break;
        default:
            rc = journal_retire(j, INT64_MAX, 64, &retired, err, sizeof(err));
            break;
        }
        if (rc != 0) {
            fprintf(stderr, "step %d: %s\n", step, err);
            exit(1);
        }
        printf("| %s | %.0f KiB |\n",
               step == 0   ? "cut the batch"
               : step == 1 ? "mark sent"
               : step == 2 ? "mark delivered"
                           : "retire its chunks",
               (double)(wal_size(b) - w0) / 1024.0);
        journal_close(j);
    }
    printf("(batch of %" PRId64 " events; %" PRId64 " events retired)\n", n,
           retired);
}

int main(int argc, char **argv)
{
    struct bench b;
    const char *dir = argc > 1 ? argv[1] : ".";
    static const int groups[] = {1, 100, 1000, 10000};
    static const int appenders[] = {1, 8, 64};
    static const int agroups[] = {1, 100, 1000};

    memtune_apply(); /* as kadx does */
    memset(&b, 0, sizeof(b));
    snprintf(b.path, sizeof(b.path), "%s/bench_journal.db", dir);
    b.secs = argc > 2 ? strtod(argv[2], NULL) : 1.5;
    for (int i = 0; i < EVENT_BYTES; i++) {
        b.value[i] = (char)('a' + i % 26);
    }
    b.ev = calloc(10000, sizeof(*b.ev));
    printf("journal bench: %d-byte events, %s, %.1f s per row\n\n", EVENT_BYTES,
           b.path, b.secs);
    if (argc > 3 && strcmp(argv[3], "cycle") == 0) {
        bench_cycle(&b); /* only the cycle */
        remove_journal(b.path);
        free(b.ev);
        return 0;
    }
    if (argc > 3 && strcmp(argv[3], "wal") == 0) {
        bench_wal(&b);
        remove_journal(b.path);
        free(b.ev);
        return 0;
    }
    printf("| api   | sync   | group  | appenders |   events/s |    MB/s "
           "|  txns/s  |\n");
    printf("|-------|--------|--------|-----------|------------|---------"
           "|----------|\n");
    for (int s = 1; s >= 0; s--) {
        for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
            bench_sync(&b, s, groups[g]);
        }
    }
    for (size_t g = 0; g < sizeof(agroups) / sizeof(agroups[0]); g++) {
        for (size_t a = 0; a < sizeof(appenders) / sizeof(appenders[0]); a++) {
            bench_async(&b, appenders[a], agroups[g]);
        }
    }
    bench_cycle(&b);
    remove_journal(b.path);
    free(b.ev);
    return 0;
}
