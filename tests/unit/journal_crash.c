/*
 * journal_crash.c - the journal's SIGKILL crash test (issue 3).
 *
 * The driver (main) forks a child that opens the journal with a libuv loop
 * and keeps four async appends in flight (group commit), each request one
 * transaction over NPARTS partitions, while it also cuts batches, marks
 * them delivered and retires chunks. After every append callback the child
 * writes "<partition> <high offset>\n" lines to a pipe: those offsets were
 * reported durable (INV-1). The driver SIGKILLs the child at a random
 * moment (every third run within its first 12 ms: during open, migration
 * or the first transactions), then checks the file:
 *  - PRAGMA integrity_check is "ok";
 *  - every offset the child reported durable is present (high offset and
 *    the events themselves: each partition holds exactly 0..high, minus
 *    what retention deleted, never with a gap);
 *  - no partial transaction shows: every request wrote K events to each
 *    of the NPARTS partitions, tagged with its request id; each request id
 *    is found either NPARTS*K times or not at all;
 *  - the per-partition stats add up (pending + in flight + delivered =
 *    events stored).
 * Kills: KADX_FULL=1 (meson -Dfull_tests=true) runs 60, else 5; argv[1]
 * overrides. Runs in a few seconds in the default mode.
 */
#include "storage/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define NPARTS   3
#define INFLIGHT 4
#define TOPIC    "crash"

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- child */

struct child {
    struct journal *j;
    int out;              /* report pipe */
    int64_t next[NPARTS]; /* next offset per partition */
    int64_t run;
    int64_t seq;
    unsigned seed;
    int cutting;
};

static void child_submit(struct child *c);

static void on_delivered(void *arg, int status, const char *err)
{
    struct child *c = arg;

    if (status != 0) {
        fprintf(stderr, "child: deliver: %s\n", err);
        _exit(3);
    }
    c->cutting = 0;
}

static void on_cut(void *arg, int status, struct journal_batch *b,
                   const char *err)
{
    struct child *c = arg;

    if (status != 0) {
        fprintf(stderr, "child: cut: %s\n", err);
        _exit(3);
    }
    if (b == NULL) {
        c->cutting = 0;
        return;
    }
    if (journal_batch_mark_delivered_async(c->j, b->id, 1, on_delivered, c) <
        0) {
        _exit(3);
    }
    journal_batch_free(b);
}

static void on_retired(void *arg, int status, int64_t n, const char *err)
{
    (void)arg;
    (void)n;
    if (status != 0) {
        fprintf(stderr, "child: retire: %s\n", err);
        _exit(3);
    }
}

static void on_append(void *arg, int status,
                      const struct journal_append_result *res, const char *err)
{
    struct child *c = arg;
    char line[64];

    if (status != 0) {
        fprintf(stderr, "child: append: %s\n", err);
        _exit(3);
    }
    for (size_t i = 0; i < res->nparts; i++) {
        int len = snprintf(line, sizeof(line), "%d %" PRId64 "\n",
                           res->parts[i].partition, res->parts[i].high_offset);
        if (write(c->out, line, (size_t)len) != len) {
            _exit(4);
        }
    }
    if (!c->cutting && rand_r(&c->seed) % 4 == 0) {
        struct journal_cut_req q;

        memset(&q, 0, sizeof(q));
        q.route = 0;
        q.max_rows = 1 + rand_r(&c->seed) % 500;
        q.max_bytes = 1 << 20;
        q.settled_all = 1;
        c->cutting = 1;
        if (journal_batch_cut_async(c->j, &q, on_cut, c) < 0) {
            _exit(3);
        }
    }
    if (rand_r(&c->seed) % 16 == 0 &&
        journal_retire_async(c->j, INT64_MAX, 4, on_retired, c) < 0) {
        _exit(3);
    }
    child_submit(c);
}

/* One request: K events on every partition, values tagged with the id. */
static void child_submit(struct child *c)
{
    struct journal_event ev[NPARTS * 64];
    char val[NPARTS * 64][64];
    int k = 1 + rand_r(&c->seed) % 64;
    size_t n = 0;

    c->seq++;
    for (int p = 0; p < NPARTS; p++) {
        for (int i = 0; i < k; i++) {
            int len = snprintf(val[n], sizeof(val[n]),
                               "r%" PRId64 "-%" PRId64 "-%d-o%" PRId64, c->run,
                               c->seq, k, c->next[p]);
            memset(&ev[n], 0, sizeof(ev[n]));
            ev[n].topic = TOPIC;
            ev[n].partition = p;
            ev[n].offset = c->next[p]++;
            ev[n].timestamp_ms = ev[n].offset;
            ev[n].value = val[n];
            ev[n].value_len = (size_t)len;
            n++;
        }
    }
    if (journal_append_async(c->j, ev, n, on_append, c) < 0) {
        _exit(3);
    }
}

static int child_main(const char *path, int out, int64_t run)
{
    struct journal_options o;
    struct child c;
    uv_loop_t loop;
    char err[256];

    memset(&c, 0, sizeof(c));
    c.out = out;
    c.run = run;
    c.seed = (unsigned)(getpid() ^ run);
    uv_loop_init(&loop);
    memset(&o, 0, sizeof(o));
    o.path = path;
    o.sync_full = 1;
    o.loop = &loop;
    if (journal_open(&o, &c.j, err, sizeof(err)) != 0) {
        fprintf(stderr, "child: open: %s\n", err);
        return 2;
    }
    for (int p = 0; p < NPARTS; p++) {
        int64_t high;
        if (journal_high_offset(c.j, TOPIC, p, &high, err, sizeof(err)) != 0) {
            fprintf(stderr, "child: high: %s\n", err);
            return 2;
        }
        c.next[p] = high + 1; /* INV-2: resume after the journal */
    }
    for (int i = 0; i < INFLIGHT; i++) {
        child_submit(&c);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* until killed */
    return 0;
}

/* --------------------------------------------------------------- driver */

struct check {
    int64_t expect[NPARTS]; /* next offset expected per partition */
    int64_t first[NPARTS];  /* first offset seen (retention deletes) */
    int gap;
    /* request tag -> count, a small open-addressing table */
    char (*tags)[32];
    int64_t *tagn;
    int64_t *tagk;
    size_t cap;
};

static void tag_add(struct check *ck, const char *tag, int64_t k)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = tag; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    for (size_t i = h % ck->cap;; i = (i + 1) % ck->cap) {
        if (ck->tags[i][0] == '\0') {
            snprintf(ck->tags[i], sizeof(ck->tags[i]), "%s", tag);
            ck->tagk[i] = k;
        }
        if (strcmp(ck->tags[i], tag) == 0) {
            ck->tagn[i]++;
            return;
        }
    }
}

static int check_event(void *arg, const struct journal_event *ev,
                       enum journal_event_state s, const char *reason)
{
    struct check *ck = arg;
    char buf[64], tag[32];
    int64_t run, seq, off;
    int k;

    (void)s;
    (void)reason;
    if (ev->value_len >= sizeof(buf) || ev->partition < 0 ||
        ev->partition >= NPARTS) {
        return -EBADMSG;
    }
    memcpy(buf, ev->value, ev->value_len);
    buf[ev->value_len] = '\0';
    if (sscanf(buf, "r%" SCNd64 "-%" SCNd64 "-%d-o%" SCNd64, &run, &seq, &k,
               &off) != 4 ||
        off != ev->offset) {
        fprintf(stderr, "bad event value '%s' at %d@%" PRId64 "\n", buf,
                ev->partition, ev->offset);
        return -EBADMSG;
    }
    if (ck->first[ev->partition] < 0) {
        ck->first[ev->partition] = ev->offset;
    } else if (ev->offset != ck->expect[ev->partition]) {
        fprintf(stderr,
                "gap: partition %d expected %" PRId64 " got %" PRId64 "\n",
                ev->partition, ck->expect[ev->partition], ev->offset);
        ck->gap = 1;
    }
    ck->expect[ev->partition] = ev->offset + 1;
    snprintf(tag, sizeof(tag), "%" PRId64 "-%" PRId64, run, seq);
    tag_add(ck, tag, k);
    return 0;
}

static int integrity_ok(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int ok = 0;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return 0;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) ==
        SQLITE_OK) {
        ok = sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

/* Opens the journal after a kill and checks everything. 0 = fine. */
static int verify(const char *path, const int64_t reported[NPARTS],
                  int64_t *events_out)
{
    struct journal_options o;
    struct journal *j = NULL;
    struct journal_iter_req ir = {JOURNAL_SEL_ALL, -1, NULL, -1, -1, -1};
    struct check ck;
    struct journal_stats st;
    char err[256];
    int bad = 0;

    if (access(path, F_OK) == 0 && !integrity_ok(path)) {
        fprintf(stderr, "integrity_check failed\n");
        return 1;
    }
    memset(&ck, 0, sizeof(ck));
    ck.cap = 1 << 18;
    ck.tags = calloc(ck.cap, sizeof(*ck.tags));
    ck.tagn = calloc(ck.cap, sizeof(*ck.tagn));
    ck.tagk = calloc(ck.cap, sizeof(*ck.tagk));
    for (int p = 0; p < NPARTS; p++) {
        ck.first[p] = -1;
    }
    memset(&o, 0, sizeof(o));
    o.path = path;
    o.sync_full = 1;
    if (journal_open(&o, &j, err, sizeof(err)) != 0) {
        fprintf(stderr, "reopen: %s\n", err);
        bad = 1;
        goto out;
    }
    for (int p = 0; p < NPARTS; p++) {
        int64_t high;
        if (journal_high_offset(j, TOPIC, p, &high, err, sizeof(err)) != 0 ||
            high < reported[p]) {
            fprintf(stderr,
                    "INV-1 broken: partition %d reported durable %" PRId64
                    ", journal high %" PRId64 "\n",
                    p, reported[p], high);
            bad = 1;
        }
    }
    if (journal_iterate(j, &ir, check_event, &ck, err, sizeof(err)) != 0) {
        fprintf(stderr, "iterate: %s\n", err);
        bad = 1;
    }
    bad |= ck.gap;
    *events_out = 0;
    for (int p = 0; p < NPARTS; p++) {
        if (ck.first[p] >= 0 && ck.expect[p] - 1 < reported[p]) {
            fprintf(stderr,
                    "partition %d: reported %" PRId64
                    " but events end at %" PRId64 "\n",
                    p, reported[p], ck.expect[p] - 1);
            bad = 1;
        }
    }
    /* no partial transaction: whole requests or nothing (retention may
     * delete a request's chunks separately, so only the live tail counts:
     * a request is complete if it has NPARTS*k events, or if some of its
     * partitions were retired, i.e. its count is a multiple of k) */
    for (size_t i = 0; i < ck.cap; i++) {
        if (ck.tags[i][0] == '\0') {
            continue;
        }
        *events_out += ck.tagn[i];
        if (ck.tagn[i] % ck.tagk[i] != 0 || ck.tagn[i] > NPARTS * ck.tagk[i]) {
            fprintf(stderr,
                    "partial request %s: %" PRId64 " events, k %" PRId64 "\n",
                    ck.tags[i], ck.tagn[i], ck.tagk[i]);
            bad = 1;
        }
    }
    if (journal_stats(j, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "stats: %s\n", err);
        bad = 1;
    } else {
        for (size_t i = 0; i < st.nparts; i++) {
            const struct journal_partition_stats *p = &st.parts[i];
            int64_t have =
                ck.first[p->partition] < 0
                    ? 0
                    : ck.expect[p->partition] - ck.first[p->partition];
            if (p->pending_count + p->inflight_count + p->delivered_count +
                        p->dead_count !=
                    have ||
                p->pending_count < 0 || p->inflight_count < 0) {
                fprintf(stderr, "stats of partition %d do not add up\n",
                        p->partition);
                bad = 1;
            }
        }
        journal_stats_release(&st);
    }
out:
    journal_close(j);
    free(ck.tags);
    free(ck.tagn);
    free(ck.tagk);
    return bad;
}

/*
 * Reads the child's reports from fd (each "partition offset" line raises
 * reported[partition]) and SIGKILLs it: every third run early, the others
 * some time after its first report. Returns the ms from start to the kill;
 * *lines counts the reports, read until EOF.
 */
static int64_t watch_child(int fd, pid_t pid, int run, unsigned *seed,
                           int64_t *reported, int64_t *lines)
{
    char buf[4096], line[64];
    size_t ll = 0;
    int64_t start, kill_at, killed_ms = -1;

    start = mono_ms();
    /* every third run dies early (while opening, migrating or in its
     * first transactions); the others some time after appending
     * started */
    kill_at = run % 3 == 0 ? start + rand_r(seed) % 12 : -1;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t now = mono_ms();
        int wait_ms = 1000;
        ssize_t n;

        if (kill_at >= 0 && kill_at != INT64_MAX) {
            wait_ms = kill_at > now ? (int)(kill_at - now) : 0;
        }
        if (poll(&pfd, 1, wait_ms) > 0) {
            n = read(fd, buf, sizeof(buf));
            if (n <= 0) {
                break; /* EOF: the child is gone */
            }
        } else {
            n = 0;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof(line) - 1) {
                    line[ll++] = buf[i];
                }
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            int p;
            int64_t off;
            if (sscanf(line, "%d %" SCNd64, &p, &off) == 2 && p >= 0 &&
                p < NPARTS && off > reported[p]) {
                reported[p] = off;
            }
            (*lines)++;
        }
        now = mono_ms();
        if (kill_at < 0 && *lines > 0) {
            kill_at = now + rand_r(seed) % 150;
        }
        if ((kill_at >= 0 && now >= kill_at && kill_at != INT64_MAX) ||
            (now - start > 30000 && kill_at != INT64_MAX)) {
            if (now - start > 30000) {
                fprintf(stderr, "child ran 30 s without being killed\n");
            }
            kill(pid, SIGKILL);
            killed_ms = now - start;
            kill_at = INT64_MAX; /* read what is left until EOF */
        }
    }
    return killed_ms;
}

int main(int argc, char **argv)
{
    const char *full = getenv("KADX_FULL");
    int kills = argc > 1 ? (int)strtol(argv[1], NULL, 10)
                         : (full && full[0] == '1' ? 60 : 5);
    char dir[] = "/tmp/journal_crash.XXXXXX";
    char path[128];
    int64_t reported[NPARTS];
    unsigned seed = (unsigned)time(NULL);
    int failures = 0;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/crash.db", dir);
    for (int p = 0; p < NPARTS; p++) {
        reported[p] = -1;
    }
    printf("journal crash test: %d kills, seed %u, %s\n", kills, seed, path);
    for (int run = 1; run <= kills && failures == 0; run++) {
        int fds[2];
        pid_t pid;
        int64_t killed_ms, lines = 0, events = 0;
        int status;

        if (pipe(fds) < 0) {
            perror("pipe");
            return 1;
        }
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            _exit(child_main(path, fds[1], run));
        }
        close(fds[1]);
        killed_ms = watch_child(fds[0], pid, run, &seed, reported, &lines);
        close(fds[0]);
        if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) ||
            WTERMSIG(status) != SIGKILL) {
            fprintf(stderr,
                    "run %d: child did not die by SIGKILL (status "
                    "%d)\n",
                    run, status);
            failures++;
            break;
        }
        if (verify(path, reported, &events) != 0) {
            fprintf(stderr, "run %d: verification failed\n", run);
            failures++;
            break;
        }
        printf("run %d: killed after %" PRId64 " ms, %" PRId64
               " reports; highs %" PRId64 " %" PRId64 " %" PRId64 "; %" PRId64
               " events stored: ok\n",
               run, killed_ms, lines, reported[0], reported[1], reported[2],
               events);
    }
    if (failures == 0) {
        char cmd[96];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "cannot remove %s\n", dir);
        }
    } else {
        fprintf(stderr, "journal kept in %s\n", dir);
    }
    printf("%s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
