/*
 * test_journal.c - unit tests for storage/journal.c (and storage/chunk.c):
 * every call of journal.h, sync and async, on a temporary journal file.
 * Runs on the test's main thread (plus the journal's writer thread).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "storage/chunk.h"
#include "storage/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct fx {
    char dir[64];
    char path[128];
    struct journal *j;
    char err[256];
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_journal.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/j.db", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];

    journal_close(f->j);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        return -1;
    }
    free(f);
    return 0;
}

static void jopen(struct fx *f, int64_t max_bytes, int64_t disk_limit)
{
    struct journal_options o;

    memset(&o, 0, sizeof(o));
    o.path = f->path;
    o.max_bytes = max_bytes;
    o.sync_full = 1;
    o.disk_limit_bytes = disk_limit;
    int rc = journal_open(&o, &f->j, f->err, sizeof(f->err));
    if (rc != 0) {
        fail_msg("open: %d %s", rc, f->err);
    }
}

static void jreopen(struct fx *f)
{
    journal_close(f->j);
    f->j = NULL;
    jopen(f, 0, 0);
}

/* Events topic/partition offsets [from, to], value "v<offset>" (+pad). */
struct evs {
    struct journal_event *ev;
    char (*val)[256];
    size_t n;
};

static void mkevs(struct evs *e, int route, const char *topic, int32_t part,
                  int64_t from, int64_t to, size_t pad)
{
    e->n = (size_t)(to - from + 1);
    e->ev = calloc(e->n, sizeof(*e->ev));
    e->val = calloc(e->n, sizeof(*e->val));
    for (size_t i = 0; i < e->n; i++) {
        int64_t off = from + (int64_t)i;
        int len = snprintf(e->val[i], sizeof(e->val[i]), "v%" PRId64, off);
        memset(e->val[i] + len, 'x', pad);
        e->ev[i].route = route;
        e->ev[i].topic = topic;
        e->ev[i].partition = part;
        e->ev[i].offset = off;
        e->ev[i].timestamp_ms = 1000 + off;
        e->ev[i].value = e->val[i];
        e->ev[i].value_len = (size_t)len + pad;
        if (off % 2 == 0) {
            e->ev[i].key = "k";
            e->ev[i].key_len = 1;
        }
        e->ev[i].headers = off % 3 == 0 ? "h" : NULL;
        e->ev[i].headers_len = off % 3 == 0 ? 1 : 0;
    }
}

static void freeevs(struct evs *e)
{
    free(e->ev);
    free(e->val);
}

static int append_range(struct fx *f, int route, const char *topic,
                        int32_t part, int64_t from, int64_t to,
                        struct journal_append_result *res)
{
    struct evs e;
    mkevs(&e, route, topic, part, from, to, 0);
    int rc = journal_append(f->j, e.ev, e.n, res, f->err, sizeof(f->err));
    freeevs(&e);
    return rc;
}

static struct journal_batch *cut(struct fx *f, int route, int64_t rows,
                                 int64_t bytes)
{
    struct journal_cut_req q;
    struct journal_batch *b = NULL;

    memset(&q, 0, sizeof(q));
    q.route = route;
    q.max_rows = rows;
    q.max_bytes = bytes;
    q.settled_all = 1;
    int rc = journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err));
    if (rc != 0) {
        fail_msg("cut: %d %s", rc, f->err);
    }
    return b;
}

/* ------------------------------------------------------------- chunks */

static void test_chunk_roundtrip(void **state)
{
    struct chunk_buf buf = {0};
    struct chunk_writer w;
    struct chunk_reader r;
    struct chunk_event ev;
    (void)state;

    chunk_writer_init(&w, &buf, 10);
    assert_int_equal(chunk_writer_add(&w, 10, 5, NULL, 0, "a", 1, NULL, 0), 0);
    assert_int_equal(chunk_writer_add(&w, 12, 3, "kk", 2, "", 0, "h", 1), 0);
    assert_int_equal(chunk_writer_add(&w, 12, 3, NULL, 0, "", 0, NULL, 0),
                     -EINVAL);
    chunk_reader_init(&r, buf.data, buf.len, 10);
    assert_int_equal(chunk_reader_next(&r, &ev), 1);
    assert_int_equal(ev.offset, 10);
    assert_int_equal(ev.timestamp_ms, 5);
    assert_null(ev.key);
    assert_int_equal(ev.value_len, 1);
    assert_int_equal(chunk_reader_next(&r, &ev), 1);
    assert_int_equal(ev.offset, 12);
    assert_int_equal(ev.timestamp_ms, 3);
    assert_int_equal(ev.key_len, 2);
    assert_memory_equal(ev.key, "kk", 2);
    assert_int_equal(ev.headers_len, 1);
    assert_int_equal(chunk_reader_next(&r, &ev), 0);
    /* truncated bytes are reported corrupt, never read past the end */
    chunk_reader_init(&r, buf.data, buf.len - 1, 10);
    assert_int_equal(chunk_reader_next(&r, &ev), 1);
    assert_int_equal(chunk_reader_next(&r, &ev), -EIO);
    chunk_buf_release(&buf);
}

/* ------------------------------------------------------------- append */

static void test_append_duplicates_high_offset(void **state)
{
    struct fx *f = *state;
    struct journal_append_result res;
    int64_t high;

    jopen(f, 0, 0);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, -1);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, &res), 0);
    assert_int_equal(res.appended, 10);
    assert_int_equal(res.duplicates, 0);
    assert_int_equal(res.nparts, 1);
    assert_string_equal(res.parts[0].topic, "t");
    assert_int_equal(res.parts[0].high_offset, 9);
    journal_append_result_release(&res);

    /* INV-2: a redelivery (5..14) stores only 10..14 */
    assert_int_equal(append_range(f, 0, "t", 0, 5, 14, &res), 0);
    assert_int_equal(res.appended, 5);
    assert_int_equal(res.duplicates, 5);
    assert_int_equal(res.parts[0].high_offset, 14);
    journal_append_result_release(&res);

    /* all duplicates: nothing stored, high offset reported */
    assert_int_equal(append_range(f, 0, "t", 0, 0, 3, &res), 0);
    assert_int_equal(res.appended, 0);
    assert_int_equal(res.duplicates, 4);
    assert_int_equal(res.parts[0].high_offset, 14);
    journal_append_result_release(&res);

    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 14);
    jreopen(f);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 14);
    assert_int_equal(append_range(f, 0, "t", 0, 14, 15, &res), 0);
    assert_int_equal(res.appended, 1);
    assert_int_equal(res.duplicates, 1);
    journal_append_result_release(&res);
}

static void test_append_many_partitions(void **state)
{
    struct fx *f = *state;
    struct journal_append_result res;
    struct journal_event ev[6];
    const char *tp[6] = {"a", "b", "a", "b", "a", "c"};
    int32_t pp[6] = {0, 0, 0, 0, 1, 0};
    int64_t oo[6] = {5, 7, 6, 7, 1, 0};

    jopen(f, 0, 0);
    memset(ev, 0, sizeof(ev));
    for (int i = 0; i < 6; i++) {
        ev[i].route = 1;
        ev[i].topic = tp[i];
        ev[i].partition = pp[i];
        ev[i].offset = oo[i];
        ev[i].value = "x";
        ev[i].value_len = 1;
    }
    assert_int_equal(journal_append(f->j, ev, 6, &res, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(res.nparts, 4);
    assert_int_equal(res.appended, 5);
    assert_int_equal(res.duplicates, 1); /* b/0@7 twice */
    assert_string_equal(res.parts[0].topic, "a");
    assert_int_equal(res.parts[0].high_offset, 6);
    assert_string_equal(res.parts[1].topic, "b");
    assert_int_equal(res.parts[1].high_offset, 7);
    assert_int_equal(res.parts[2].partition, 1);
    assert_int_equal(res.parts[2].high_offset, 1);
    assert_int_equal(res.parts[3].high_offset, 0);
    assert_int_equal(res.bytes > 0, 1);
    journal_append_result_release(&res);
    assert_int_equal(journal_pending_bytes(f->j), 5);
    /* n == 0 is allowed */
    assert_int_equal(
        journal_append(f->j, NULL, 0, &res, f->err, sizeof(f->err)), 0);
    assert_int_equal(res.nparts, 0);
    journal_append_result_release(&res);
    /* a negative offset is refused */
    ev[0].offset = -3;
    assert_int_equal(journal_append(f->j, ev, 1, NULL, f->err, sizeof(f->err)),
                     -EINVAL);
}

/* ------------------------------------------------------------- batches */

static void test_cut_load_deliver_reopen(void **state)
{
    struct fx *f = *state;
    struct journal_batch *b, *b2, *l;
    struct journal_batch *list;
    size_t n;

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, NULL), 0);
    assert_int_equal(append_range(f, 0, "t", 0, 10, 19, NULL), 0);
    assert_int_equal(append_range(f, 1, "u", 0, 0, 4, NULL), 0);

    /* max_rows 15: the first chunk and half of the second */
    b = cut(f, 0, 15, 1 << 20);
    assert_non_null(b);
    assert_int_equal(b->count, 15);
    assert_int_equal(b->nevents, 15);
    assert_int_equal(b->state, JOURNAL_BATCH_PENDING);
    assert_int_equal(b->route, 0);
    assert_int_equal(b->nranges, 2);
    assert_int_equal(b->ranges[0].first_offset, 0);
    assert_int_equal(b->ranges[1].last_offset, 14);
    for (size_t i = 0; i < b->nevents; i++) {
        char want[32];
        int len = snprintf(want, sizeof(want), "v%zu", i);
        assert_int_equal(b->events[i].offset, (int64_t)i);
        assert_int_equal(b->events[i].value_len, (size_t)len);
        assert_memory_equal(b->events[i].value, want, (size_t)len);
        assert_int_equal(b->events[i].timestamp_ms, 1000 + (int64_t)i);
        assert_string_equal(b->events[i].topic, "t");
        if (i % 2 == 0) {
            assert_int_equal(b->events[i].key_len, 1);
        } else {
            assert_null(b->events[i].key);
        }
    }
    assert_int_equal(strncmp(b->id, journal_uuid(f->j), 36), 0);

    /* the rest of the route */
    b2 = cut(f, 0, 100, 1 << 20);
    assert_non_null(b2);
    assert_int_equal(b2->count, 5);
    assert_int_equal(b2->events[0].offset, 15);
    assert_null(cut(f, 0, 100, 1 << 20));

    /* INV-4: membership survives close and reopen */
    char id[JOURNAL_BATCH_ID_MAX], id2[JOURNAL_BATCH_ID_MAX];
    snprintf(id, sizeof(id), "%s", b->id);
    snprintf(id2, sizeof(id2), "%s", b2->id);
    assert_int_equal(
        journal_batch_mark_sent(f->j, id, 5000, f->err, sizeof(f->err)), 0);
    jreopen(f);
    assert_int_equal(journal_batch_load(f->j, id, &l, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(l->nevents, 15);
    assert_int_equal(l->state, JOURNAL_BATCH_SENT);
    assert_int_equal(l->attempts, 1);
    assert_int_equal(l->first_sent_ms, 5000);
    for (size_t i = 0; i < 15; i++) {
        assert_int_equal(l->events[i].offset, b->events[i].offset);
        assert_memory_equal(l->events[i].value, b->events[i].value,
                            b->events[i].value_len);
    }
    journal_batch_free(l);

    /* unfinished after reopen: both, oldest first */
    assert_int_equal(
        journal_batches_unfinished(f->j, -1, &list, &n, f->err, sizeof(f->err)),
        0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, id);
    assert_int_equal(list[0].state, JOURNAL_BATCH_SENT);
    assert_int_equal(list[0].nevents, 0);
    assert_int_equal(list[0].nranges, 2);
    assert_string_equal(list[1].id, id2);
    journal_batch_list_free(list, n);

    /* after reopen, cut hands the unclaimed batches out again, once */
    l = cut(f, 0, 100, 1 << 20);
    assert_non_null(l);
    assert_string_equal(l->id, id);
    assert_int_equal(l->state, JOURNAL_BATCH_SENT); /* ambiguous, INV-5 */
    assert_int_equal(l->nevents, 15);
    journal_batch_free(l);
    l = cut(f, 0, 100, 1 << 20);
    assert_non_null(l);
    assert_string_equal(l->id, id2);
    journal_batch_free(l);
    assert_null(cut(f, 0, 100, 1 << 20));

    /* deliver */
    assert_int_equal(
        journal_batch_mark_delivered(f->j, id, 6000, f->err, sizeof(f->err)),
        0);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, id, 6000, f->err, sizeof(f->err)),
        0); /* repeat is fine */
    assert_int_equal(
        journal_batch_mark_sent(f->j, id, 7000, f->err, sizeof(f->err)),
        -EINVAL);
    assert_int_equal(
        journal_batch_mark_sent(f->j, "nope", 7000, f->err, sizeof(f->err)),
        -ENOENT);
    assert_int_equal(
        journal_batches_unfinished(f->j, 0, &list, &n, f->err, sizeof(f->err)),
        0);
    assert_int_equal(n, 1);
    journal_batch_list_free(list, n);
    journal_batch_free(b);
    journal_batch_free(b2);

    /* route 1 is separate */
    b = cut(f, 1, 100, 1 << 20);
    assert_non_null(b);
    assert_int_equal(b->count, 5);
    assert_string_equal(b->events[0].topic, "u");
    journal_batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_roundtrip),
        cmocka_unit_test_setup_teardown(test_append_duplicates_high_offset,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_many_partitions, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cut_load_deliver_reopen, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
