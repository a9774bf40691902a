/*
 * test_recover.c - unit tests for storage/recover.c: status, export,
 * requeue, purge, check and salvage on real journals built with the
 * journal's own sync API in a temporary directory. Each command is also
 * run twice, since every recover command must be safe to repeat.
 * Single-threaded (the journal's writer thread aside).
 */
#include "base/clock.h"
#include "base/utf8.h"
#include "storage/journal.h"
#include "storage/recover.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define NPART    2
#define PER_PART 500
#define TOPIC    "gameplay"

struct fixture {
    char dir[64];
    char path[128];
    char path2[128];
    struct journal *j;
};

static struct journal *open_j(const char *path)
{
    struct journal_options o;
    struct journal *j = NULL;
    char err[256] = "";

    memset(&o, 0, sizeof(o));
    o.path = path;
    o.sync_full = 0;
    if (journal_open(&o, &j, err, sizeof(err)) != 0) {
        fail_msg("journal_open %s: %s", path, err);
    }
    return j;
}

/* Appends PER_PART events to each of NPART partitions, in chunks of 50. */
static void fill(struct journal *j)
{
    char values[50][64];
    struct journal_event ev[50];
    char err[256] = "";

    for (int p = 0; p < NPART; p++) {
        for (int base = 0; base < PER_PART; base += 50) {
            for (int i = 0; i < 50; i++) {
                int off = base + i;

                snprintf(values[i], sizeof(values[i]),
                         "{\"playerId\":%d,\"p\":%d,\"o\":%d}", off % 7, p,
                         off);
                memset(&ev[i], 0, sizeof(ev[i]));
                ev[i].route = 0;
                ev[i].topic = TOPIC;
                ev[i].partition = p;
                ev[i].offset = off;
                ev[i].timestamp_ms = 1700000000000LL + off;
                ev[i].key = "k";
                ev[i].key_len = 1;
                ev[i].value = values[i];
                ev[i].value_len = strlen(values[i]);
            }
            assert_int_equal(journal_append(j, ev, 50, NULL, err, sizeof(err)),
                             0);
        }
    }
}

/* Cuts one batch of up to rows events (everything settled). */
static struct journal_batch *cut(struct journal *j, int64_t rows)
{
    struct journal_cut_req req;
    struct journal_batch *b = NULL;
    char err[256] = "";

    memset(&req, 0, sizeof(req));
    req.route = 0;
    req.max_rows = rows;
    req.max_bytes = 1 << 20;
    req.settled_all = 1;
    assert_int_equal(journal_batch_cut(j, &req, &b, err, sizeof(err)), 0);
    assert_non_null(b);
    return b;
}

/*
 * The standard journal: 1000 events; 300 delivered (one batch of 300),
 * one batch of 100 sent (in flight) with 2 of them dead, 600 pending.
 */
static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct journal_batch *b;
    struct journal_offset dead[2];
    char err[256] = "";

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/kadx-test-recover-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/j.db", f->dir);
    snprintf(f->path2, sizeof(f->path2), "%s/salvaged.db", f->dir);
    f->j = open_j(f->path);
    fill(f->j);

    b = cut(f->j, 300);
    assert_int_equal(
        journal_batch_mark_sent(f->j, b->id, wall_ms(), err, sizeof(err)), 0);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, wall_ms(), err, sizeof(err)),
        0);
    journal_batch_free(b);

    b = cut(f->j, 100);
    assert_int_equal(b->nevents, 100);
    assert_int_equal(
        journal_batch_mark_sent(f->j, b->id, wall_ms(), err, sizeof(err)), 0);
    dead[0].topic = b->events[3].topic;
    dead[0].partition = b->events[3].partition;
    dead[0].offset = b->events[3].offset;
    dead[1].topic = b->events[7].topic;
    dead[1].partition = b->events[7].partition;
    dead[1].offset = b->events[7].offset;
    assert_int_equal(journal_batch_mark_dead(f->j, b->id, dead, 2,
                                             "bad record: test", wall_ms(), err,
                                             sizeof(err)),
                     0);
    journal_batch_free(b);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[256];

    journal_close(f->j);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Runs fn into a memory buffer; returns it (free()). */
static char *capture_export(struct journal *j,
                            const struct recover_export_req *req, int64_t *n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char err[256] = "";

    assert_non_null(m);
    assert_int_equal(recover_export(j, req, m, NULL, n, err, sizeof(err)), 0);
    fclose(m);
    return buf;
}

static size_t count_lines(const char *s, const char *needle)
{
    size_t n = 0;
    const char *line = s;

    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char tmp[1024];

        if (len >= sizeof(tmp)) {
            len = sizeof(tmp) - 1;
        }
        memcpy(tmp, line, len);
        tmp[len] = '\0';
        if (needle == NULL || strstr(tmp, needle) != NULL) {
            n++;
        }
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

static void test_status(void **state)
{
    struct fixture *f = *state;
    char *buf = NULL;
    size_t len = 0;
    FILE *m;
    char err[256] = "";

    m = open_memstream(&buf, &len);
    assert_int_equal(recover_status(f->j, NULL, m, 0, err, sizeof(err)), 0);
    fclose(m);
    assert_non_null(strstr(buf, "gameplay"));
    assert_non_null(strstr(buf, "total: pending 600"));
    assert_non_null(strstr(buf, "delivered 300"));
    assert_non_null(strstr(buf, "dead 2"));
    free(buf);

    m = open_memstream(&buf, &len);
    assert_int_equal(recover_status(f->j, NULL, m, 1, err, sizeof(err)), 0);
    fclose(m);
    assert_true(buf[0] == '{');
    assert_non_null(strstr(buf, "\"partitions\":[{\"route\":0"));
    assert_non_null(strstr(buf, "\"inflight_count\":"));
    free(buf);
}

static void test_export_states(void **state)
{
    struct fixture *f = *state;
    struct recover_export_req req;
    int64_t n = 0;
    char *out;

    recover_export_req_init(&req);
    out = capture_export(f->j, &req, &n);
    assert_int_equal(n, NPART * PER_PART);
    assert_int_equal(count_lines(out, NULL), NPART * PER_PART);
    assert_int_equal(count_lines(out, "\"state\":\"delivered\""), 300);
    assert_int_equal(count_lines(out, "\"state\":\"inflight\""), 98);
    assert_int_equal(count_lines(out, "\"state\":\"pending\""), 600);
    assert_int_equal(count_lines(out, "\"dead_reason\":\"bad record: test\""),
                     2);
    /* the value is a JSON string, escaped */
    assert_non_null(strstr(out, "\"value\":\"{\\\"playerId\\\":"));
    free(out);

    req.states = JOURNAL_SEL_DEAD;
    out = capture_export(f->j, &req, &n);
    assert_int_equal(n, 2);
    free(out);

    /* a range: partition 1, offsets 10..19, and a time window inside it */
    recover_export_req_init(&req);
    req.topic = TOPIC;
    req.partition = 1;
    req.from_offset = 10;
    req.to_offset = 19;
    out = capture_export(f->j, &req, &n);
    assert_int_equal(n, 10);
    assert_int_equal(count_lines(out, "\"partition\":1,\"offset\":1"), 10);
    free(out);
    req.from_ts_ms = 1700000000000LL + 12;
    req.to_ts_ms = 1700000000000LL + 13;
    out = capture_export(f->j, &req, &n);
    assert_int_equal(n, 2);
    free(out);
}

static void test_requeue_twice(void **state)
{
    struct fixture *f = *state;
    struct recover_export_req req;
    char err[256] = "";
    int64_t n = -1;
    char *out;

    assert_int_equal(recover_requeue(f->j, -1, 999999, &n, err, sizeof(err)),
                     -ENOENT);
    assert_int_equal(recover_requeue(f->j, -1, 0, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_int_equal(recover_requeue(f->j, -1, 0, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    recover_export_req_init(&req);
    req.states = JOURNAL_SEL_DEAD;
    out = capture_export(f->j, &req, &n);
    assert_int_equal(n, 0);
    free(out);
}

static void test_purge_twice(void **state)
{
    struct fixture *f = *state;
    struct recover_export_req req;
    char err[256] = "";
    int64_t n = -1;
    char *out;

    /* a cutoff in the past deletes nothing */
    assert_int_equal(recover_purge(f->j, 1000, NULL, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    /* a cutoff in the future deletes the delivered events only (INV-8):
     * retention works by chunk, and only chunks wholly delivered go */
    assert_int_equal(
        recover_purge(f->j, wall_ms() + 60000, NULL, &n, err, sizeof(err)), 0);
    assert_true(n > 0);
    assert_true(n <= 300);
    assert_int_equal(
        recover_purge(f->j, wall_ms() + 60000, NULL, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    recover_export_req_init(&req);
    req.states = JOURNAL_SEL_UNDELIVERED;
    out = capture_export(f->j, &req, &n);
    assert_int_equal(n, 700);
    free(out);
}

static void test_check_healthy(void **state)
{
    struct fixture *f = *state;
    struct recover_report rep;
    char err[256] = "";

    /* check opens the file itself: close ours first (the lock) */
    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(recover_check(f->path, NULL, &rep, err, sizeof(err)), 0);
    for (size_t i = 0; i < rep.nlines; i++) {
        print_message("unexpected problem: %s\n", rep.lines[i]);
    }
    assert_int_equal(rep.problems, 0);
    assert_true(rep.integrity_ok);
    assert_int_equal(rep.events, NPART * PER_PART);
    assert_true(rep.batches >= 2);
    recover_report_release(&rep);
    f->j = open_j(f->path);
}

static void test_check_refuses_held(void **state)
{
    struct fixture *f = *state;
    struct recover_report rep;
    char err[256] = "";

    assert_int_equal(recover_check(f->path, NULL, &rep, err, sizeof(err)),
                     -EBUSY);
    assert_non_null(strstr(err, "in use"));
    recover_report_release(&rep);
}

/* Overwrites len bytes at off with a pattern. */
static void scribble(const char *path, off_t off, size_t len)
{
    int fd = open(path, O_WRONLY);
    char *junk = malloc(len);

    assert_true(fd >= 0);
    assert_non_null(junk);
    for (size_t i = 0; i < len; i++) {
        junk[i] = (char)(0xa5 ^ (i * 31));
    }
    assert_int_equal(pwrite(fd, junk, len, off), (ssize_t)len);
    close(fd);
    free(junk);
}

/* The offset of the 4 KiB page of path that contains needle. */
static off_t find_page(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    size_t len, nlen = strlen(needle);
    struct stat st;
    off_t at = -1;

    assert_non_null(fp);
    assert_int_equal(fstat(fileno(fp), &st), 0);
    len = (size_t)st.st_size;
    buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, len, fp), len);
    fclose(fp);
    for (size_t i = 0; i + nlen <= len; i++) {
        if (memcmp(buf + i, needle, nlen) == 0) {
            at = (off_t)(i / 4096 * 4096);
            break;
        }
    }
    free(buf);
    assert_true(at > 0);
    return at;
}

static void test_corrupt_check_and_salvage(void **state)
{
    struct fixture *f = *state;
    struct recover_report rep;
    struct recover_salvage_result res;
    struct recover_export_req req;
    struct journal *j2;
    struct stat st;
    char err[256] = "";
    int64_t n = 0;
    char *out;

    /* close: the WAL is checkpointed into the main file */
    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(st.st_size > 16 * 4096);
    /* overwrite the page that holds the events of partition 1 around
     * offset 250 (a leaf of the chunks table) */
    scribble(f->path, find_page(f->path, "\"p\":1,\"o\":250}"), 4096);

    assert_int_equal(recover_check(f->path, NULL, &rep, err, sizeof(err)), 0);
    assert_true(rep.problems > 0);
    assert_true(rep.nlines > 0);
    print_message("check found %" PRId64 " problems, first: %s\n", rep.problems,
                  rep.lines[0]);
    recover_report_release(&rep);

    /* salvage, twice: the second run adds nothing */
    assert_int_equal(recover_salvage(f->path, f->path2,
                                     RECOVER_SALVAGE_DELIVERED, NULL, &res, err,
                                     sizeof(err)),
                     0);
    print_message("salvage: %" PRId64 " chunks read, %" PRId64 " lost, %" PRId64
                  " events read\n",
                  res.chunks_read, res.chunks_lost, res.events_read);
    assert_true(res.events_read > 0);
    /* the damaged page held the chunk of 250: it is lost, and one page of
     * 4 KiB holds at most a few chunks of 50 events */
    assert_true(res.chunks_lost >= 1);
    assert_true(res.events_read >= NPART * PER_PART - 200);
    assert_true(res.events_read <= NPART * PER_PART - 50);
    assert_int_equal(res.events_copied, res.events_read);
    assert_int_equal(recover_salvage(f->path, f->path2,
                                     RECOVER_SALVAGE_DELIVERED, NULL, &res, err,
                                     sizeof(err)),
                     0);
    assert_int_equal(res.events_copied, 0);
    assert_int_equal(res.events_present, res.events_read);

    /* the new journal is healthy and holds exactly what was read */
    assert_int_equal(recover_check(f->path2, NULL, &rep, err, sizeof(err)), 0);
    assert_int_equal(rep.problems, 0);
    recover_report_release(&rep);
    j2 = open_j(f->path2);
    recover_export_req_init(&req);
    out = capture_export(j2, &req, &n);
    assert_int_equal(n, res.events_read);
    free(out);
    journal_close(j2);
    /* f->j stays closed: the damaged file would not open */
}

static void test_salvage_skips_delivered(void **state)
{
    struct fixture *f = *state;
    struct recover_salvage_result res;
    char err[256] = "";

    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(
        recover_salvage(f->path, f->path2, 0, NULL, &res, err, sizeof(err)), 0);
    assert_int_equal(res.chunks_lost, 0);
    assert_int_equal(res.events_read, NPART * PER_PART);
    assert_int_equal(res.events_skipped, 300);
    assert_int_equal(res.events_copied, NPART * PER_PART - 300);
    assert_int_equal(res.events_dead, 2);
    assert_int_equal(
        recover_salvage(f->path, f->path, 0, NULL, &res, err, sizeof(err)),
        -EINVAL);
    f->j = open_j(f->path);
}

/* A partition with two offset epochs (journal_new_epoch): salvage keeps
 * both lives, the later one as its own epoch in the new journal (before,
 * its offsets already copied from the first life counted as present). */
static void test_salvage_keeps_epochs(void **state)
{
    struct fixture *f = *state;
    struct recover_salvage_result res;
    struct journal_stats st;
    struct journal *j2;
    char err[256] = "";
    int64_t epoch = -1;

    assert_int_equal(
        journal_new_epoch(f->j, TOPIC, 0, 0, 0, &epoch, err, sizeof(err)), 0);
    assert_int_equal(epoch, 1);
    {
        struct journal_event ev[20];
        char values[20][32];

        for (int i = 0; i < 20; i++) {
            snprintf(values[i], sizeof(values[i]), "{\"new\":%d}", i);
            memset(&ev[i], 0, sizeof(ev[i]));
            ev[i].topic = TOPIC;
            ev[i].partition = 0;
            ev[i].offset = i;
            ev[i].value = values[i];
            ev[i].value_len = strlen(values[i]);
        }
        assert_int_equal(journal_append(f->j, ev, 20, NULL, err, sizeof(err)),
                         0);
    }
    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(recover_salvage(f->path, f->path2,
                                     RECOVER_SALVAGE_DELIVERED, NULL, &res, err,
                                     sizeof(err)),
                     0);
    assert_int_equal(res.events_read, NPART * PER_PART + 20);
    assert_int_equal(res.events_copied, NPART * PER_PART + 20);
    j2 = open_j(f->path2);
    assert_int_equal(journal_stats(j2, &st, err, sizeof(err)), 0);
    assert_int_equal(st.nparts, 3);
    for (size_t i = 0; i < st.nparts; i++) {
        if (st.parts[i].partition == 0 && st.parts[i].epoch == 1) {
            assert_int_equal(st.parts[i].sealed, 0);
            assert_int_equal(st.parts[i].high_offset, 19);
        } else if (st.parts[i].partition == 0) {
            assert_int_equal(st.parts[i].sealed, 1);
            assert_int_equal(st.parts[i].high_offset, PER_PART - 1);
        }
    }
    journal_stats_release(&st);
    journal_close(j2);
    f->j = open_j(f->path);
}

static void test_json_string(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);

    (void)state;
    recover_json_string(m, "a\"b\\c\n\x01\xc3\xa9\xff", 10);
    fclose(m);
    assert_string_equal(buf, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\ufffd\"");
    free(buf);
    assert_true(utf8_valid("\xc3\xa9", 2));
    assert_false(utf8_valid("\xc3", 1));
    assert_false(utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(utf8_valid("a\0b", 3));
}

static void assert_mode(const char *path, unsigned want)
{
    struct stat sb;

    if (stat(path, &sb) != 0) {
        fail_msg("stat %s: %s", path, strerror(errno));
    }
    if ((sb.st_mode & 07777) != want) {
        fail_msg("%s has mode %04o, want %04o", path,
                 (unsigned)(sb.st_mode & 07777), want);
    }
}

/*
 * Files the journal and recover create are 0600 even under umask 000 (the
 * library's own modes, without main()'s umask 077): database, -wal, -shm,
 * lock, and a snapshot; a journal reopened after a chmod 644 names the
 * file in journal_permission_warning.
 */
static void test_private_files_under_umask_000(void **state)
{
    struct fixture *f = *state;
    char p[256], snap[160];
    const char *w;
    mode_t old = umask(0);
    struct journal *j;

    j = open_j(f->path2);
    assert_null(journal_permission_warning(j));
    fill(j);
    assert_mode(f->path2, 0600);
    snprintf(p, sizeof(p), "%s-wal", f->path2);
    assert_mode(p, 0600);
    snprintf(p, sizeof(p), "%s-shm", f->path2);
    assert_mode(p, 0600);
    snprintf(p, sizeof(p), "%s.lock", f->path2);
    assert_mode(p, 0600);
    journal_close(j);

    snprintf(snap, sizeof(snap), "%s/snap.db", f->dir);
    {
        char err[256] = "";
        assert_int_equal(recover_snapshot(f->path2, snap, err, sizeof(err)), 0);
    }
    assert_mode(snap, 0600);

    assert_int_equal(chmod(f->path2, 0644), 0);
    j = open_j(f->path2);
    w = journal_permission_warning(j);
    assert_non_null(w);
    assert_non_null(strstr(w, f->path2));
    assert_non_null(strstr(w, "0644"));
    assert_null(strstr(w, ".lock")); /* only the widened file is named */
    journal_close(j);
    umask(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_string),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requeue_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_healthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_refuses_held, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_check_and_salvage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_salvage_keeps_epochs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_salvage_skips_delivered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_private_files_under_umask_000,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
