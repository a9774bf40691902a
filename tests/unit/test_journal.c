/*
 * test_journal.c - unit tests for storage/journal.c (and storage/chunk.c):
 * every call of journal.h, sync and async, on a temporary journal file
 * (journal_fixture.h); settling, retention, replay, ENOSPC and the disk
 * space cap are in test_journal_retention.c.
 * Runs on the test's main thread (plus the journal's writer thread).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "storage/chunk.h"
#include "storage/journal.h"
#include "tests/unit/journal_fixture.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    assert_int_equal(chunk_writer_add(&w, 13, 3, NULL, 0, NULL, 5, NULL, 0),
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

/* A negative first offset (a damaged chunk row) is corrupt, whatever the
 * delta: no signed overflow (tests/fuzz/corpus/chunk/negative-first-offset,
 * found by fuzz_chunk: UBSan "signed integer overflow" in the reader). */
static void test_chunk_negative_first_offset(void **state)
{
    static const uint8_t fuzz[] = {
        0xdf, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9,
        0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0xa9, 0x17, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0xa0, 0xa9, 0xa9, 0xa9};
    struct chunk_buf buf = {0};
    struct chunk_writer w;
    struct chunk_reader r;
    struct chunk_event ev;
    int64_t first;
    (void)state;

    memcpy(&first, fuzz, 8);
    assert_true(first < 0);
    chunk_reader_init(&r, fuzz + 8, sizeof(fuzz) - 8, first);
    assert_int_equal(chunk_reader_next(&r, &ev), -EIO);
    /* a well-formed chunk read with a negative first offset */
    chunk_writer_init(&w, &buf, 0);
    assert_int_equal(chunk_writer_add(&w, 0, 5, NULL, 0, "a", 1, NULL, 0), 0);
    chunk_reader_init(&r, buf.data, buf.len, -1);
    assert_int_equal(chunk_reader_next(&r, &ev), -EIO);
    chunk_reader_init(&r, buf.data, buf.len, INT64_MIN);
    assert_int_equal(chunk_reader_next(&r, &ev), -EIO);
    chunk_reader_init(&r, buf.data, buf.len, 0);
    assert_int_equal(chunk_reader_next(&r, &ev), 1);
    assert_int_equal(ev.offset, 0);
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
    /* a negative offset is refused, the whole request with it */
    ev[1].offset = -3;
    assert_int_equal(journal_append(f->j, ev, 6, NULL, f->err, sizeof(f->err)),
                     -EINVAL);
    ev[1].offset = 100;
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

/* test_mark_failed_dead_split, its dead letters: offsets 3 and 4 of batch
 * id die, listed and paged. */
static void dead_and_list(struct fx *f, const char *id)
{
    struct journal_batch *l;
    struct journal_dead *dl;
    size_t n;
    int64_t total;

    /* INV-6: dead-letter offsets 3 and 4 with a reason */
    struct journal_offset refs[2] = {{"t", 0, 3}, {"t", 0, 4}};
    assert_int_equal(journal_batch_mark_dead(f->j, id, refs, 2, "bad json", 777,
                                             f->err, sizeof(f->err)),
                     0);
    /* not a live member any more */
    assert_int_equal(journal_batch_mark_dead(f->j, id, refs, 1, "again", 778,
                                             f->err, sizeof(f->err)),
                     -EINVAL);
    assert_int_equal(journal_batch_load(f->j, id, &l, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(l->nevents, 8);
    assert_int_equal(l->count, 8);
    for (size_t i = 0; i < l->nevents; i++) {
        assert_true(l->events[i].offset != 3 && l->events[i].offset != 4);
    }
    journal_batch_free(l);
    assert_int_equal(journal_dead_list(f->j, -1, 0, 10, &dl, &n, &total, f->err,
                                       sizeof(f->err)),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(total, 2);
    assert_int_equal(dl[0].offset, 3);
    assert_string_equal(dl[0].reason, "bad json");
    assert_string_equal(dl[0].batch_id, id);
    assert_string_equal(dl[0].topic, "t");
    assert_int_equal(dl[0].dead_ms, 777);
    assert_int_equal(dl[0].timestamp_ms, 1003);
    assert_int_equal(dl[1].offset, 4);
    /* paging */
    int64_t first_id = dl[0].id;
    journal_dead_list_free(dl, n);
    assert_int_equal(journal_dead_list(f->j, 0, first_id, 10, &dl, &n, NULL,
                                       f->err, sizeof(f->err)),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(dl[0].offset, 4);
    journal_dead_list_free(dl, n);
}

/* test_mark_failed_dead_split, its end: the dead are requeued (then
 * delivered) and a timestamp range replayed. */
static void requeue_and_replay(struct fx *f)
{
    struct journal_batch *b;
    struct journal_dead *dl;
    size_t n;
    struct journal_stats st;

    /* requeue one, then the rest: new unclaimed REQUEUE batches */
    assert_int_equal(journal_dead_list(f->j, -1, 0, 10, &dl, &n, NULL, f->err,
                                       sizeof(f->err)),
                     0);
    int64_t one = dl[0].id;
    journal_dead_list_free(dl, n);
    int64_t rq;
    assert_int_equal(journal_dead_requeue(f->j, -1, 999999, 100, &rq, f->err,
                                          sizeof(f->err)),
                     -ENOENT);
    assert_int_equal(
        journal_dead_requeue(f->j, -1, one, 100, &rq, f->err, sizeof(f->err)),
        0);
    assert_int_equal(rq, 1);
    assert_int_equal(
        journal_dead_requeue(f->j, 0, 0, 2, &rq, f->err, sizeof(f->err)), 0);
    assert_int_equal(rq, 4);
    assert_int_equal(
        journal_dead_requeue(f->j, 0, 0, 2, &rq, f->err, sizeof(f->err)), 0);
    assert_int_equal(rq, 0); /* safe to run twice */
    int64_t got = 0;
    int nb = 0;
    while ((b = cut(f, 0, 100, 1 << 20)) != NULL) {
        assert_true(b->flags & JOURNAL_BATCH_REQUEUE);
        got += (int64_t)b->nevents;
        nb++;
        assert_int_equal(journal_batch_mark_delivered(f->j, b->id, 1, f->err,
                                                      sizeof(f->err)),
                         0);
        journal_batch_free(b);
    }
    assert_int_equal(got, 5);
    assert_int_equal(nb, 3); /* 1 + 2 + 2 */
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.parts[0].dead_count, 0);
    assert_int_equal(st.parts[0].delivered_count, 10);
    journal_stats_release(&st);

    /* replay by Kafka timestamp (1000 + offset): 1002..1004 */
    struct journal_replay_req rr = {0,    NULL, -1,  -1,     -1,
                                    1002, 1004, 100, 1 << 20};
    int64_t ne, nbat;
    assert_int_equal(
        journal_replay(f->j, &rr, &ne, &nbat, f->err, sizeof(f->err)), 0);
    assert_int_equal(ne, 3);
    assert_int_equal(nbat, 1);
    b = cut(f, 0, 100, 1 << 20);
    assert_non_null(b);
    assert_true(b->flags & JOURNAL_BATCH_REPLAY);
    assert_int_equal(b->nevents, 3);
    assert_int_equal(b->events[0].timestamp_ms, 1002);
    assert_int_equal(b->events[2].timestamp_ms, 1004);
    journal_batch_free(b);
    /* another route has nothing to replay */
    rr.route = 5;
    assert_int_equal(
        journal_replay(f->j, &rr, &ne, &nbat, f->err, sizeof(f->err)), 0);
    assert_int_equal(ne, 0);
    assert_int_equal(nbat, 0);
}

/* The expected fields of event i of test_cut_matches_load. */
static void cml_event(int i, struct journal_event *e, char *val, size_t vcap,
                      char *hdr, size_t hcap)
{
    static const char *const topics[2] = {"b", "a"};
    int round = i / 30, k = i % 30, tp = k / 15, part = (k / 5) % 3;

    memset(e, 0, sizeof(*e));
    e->topic = topics[tp];
    e->partition = part;
    e->offset = round * 5 + k % 5;
    /* timestamps that go back as well as forward (zigzag deltas) */
    e->timestamp_ms = 1000000 + (int64_t)((i * 7919) % 1000) - 500;
    e->value_len = (size_t)snprintf(val, vcap, "%s/%d@%" PRId64 " %.*s",
                                    e->topic, part, e->offset, i % 40,
                                    "........................................");
    e->value = val;
    if (i % 3 == 0) {
        e->key = "k";
        e->key_len = 1;
    } else if (i % 3 == 1) {
        e->key = "";
        e->key_len = 0;
    }
    if (i % 4 == 0) {
        e->headers_len = (size_t)snprintf(hdr, hcap, "h%d", i);
        e->headers = hdr;
    }
}

/*
 * A cut decodes its batch's events from copies of the pieces it took (not
 * from the database): its events must equal, field by field, those of the
 * same batch loaded back, and the ones appended. Cuts of 7 events end and
 * start inside chunks, of two topics and three partitions each, appended
 * in six rounds.
 */
static void test_cut_matches_load(void **state)
{
    enum { ROUNDS = 6, PER = 30, N = ROUNDS * PER };
    struct fx *f = *state;
    static char val[N][64], hdr[N][16];
    struct journal_event ev[N];
    struct journal_batch *b;
    int seen = 0;

    jopen(f, 0, 0);
    for (int i = 0; i < N; i++) {
        cml_event(i, &ev[i], val[i], sizeof(val[i]), hdr[i], sizeof(hdr[i]));
        ev[i].route = 0;
    }
    for (int r = 0; r < ROUNDS; r++) {
        assert_int_equal(journal_append(f->j, ev + r * PER, PER, NULL, f->err,
                                        sizeof(f->err)),
                         0);
    }
    while ((b = cut(f, 0, seen % 2 ? 7 : 1000, seen % 2 ? 1 << 20 : 300)) !=
           NULL) {
        struct journal_batch *l;

        assert_int_equal(
            journal_batch_load(f->j, b->id, &l, f->err, sizeof(f->err)), 0);
        assert_int_equal(b->nevents, l->nevents);
        assert_int_equal(b->nevents, (size_t)b->count);
        assert_int_equal(b->nranges, l->nranges);
        for (size_t i = 0; i < b->nranges; i++) {
            assert_string_equal(b->ranges[i].topic, l->ranges[i].topic);
            assert_int_equal(b->ranges[i].partition, l->ranges[i].partition);
            assert_int_equal(b->ranges[i].first_offset,
                             l->ranges[i].first_offset);
            assert_int_equal(b->ranges[i].last_offset,
                             l->ranges[i].last_offset);
        }
        for (size_t i = 0; i < b->nevents; i++) {
            const struct journal_event *x = &b->events[i], *y = &l->events[i];
            const struct journal_event *want = NULL;

            for (int k = 0; k < N; k++) {
                if (strcmp(ev[k].topic, x->topic) == 0 &&
                    ev[k].partition == x->partition &&
                    ev[k].offset == x->offset) {
                    want = &ev[k];
                }
            }
            assert_non_null(want);
            assert_string_equal(x->topic, y->topic);
            assert_int_equal(x->partition, y->partition);
            assert_int_equal(x->offset, y->offset);
            assert_int_equal(x->route, y->route);
            assert_int_equal(x->timestamp_ms, want->timestamp_ms);
            assert_int_equal(y->timestamp_ms, want->timestamp_ms);
            assert_int_equal(x->key == NULL, want->key == NULL);
            assert_int_equal(x->key_len, want->key_len);
            assert_memory_equal(x->key ? x->key : "",
                                want->key ? want->key : "", want->key_len);
            assert_int_equal(x->value_len, want->value_len);
            assert_memory_equal(x->value, want->value, want->value_len);
            assert_int_equal(x->headers_len, want->headers_len);
            assert_memory_equal(x->headers ? x->headers : "",
                                want->headers ? want->headers : "",
                                want->headers_len);
            if (i > 0) {
                const struct journal_event *p = &b->events[i - 1];
                int c = strcmp(p->topic, x->topic);

                assert_true(c < 0 ||
                            (c == 0 && (p->partition < x->partition ||
                                        (p->partition == x->partition &&
                                         p->offset < x->offset))));
            }
            seen++;
        }
        journal_batch_free(l);
        journal_batch_free(b);
    }
    assert_int_equal(seen, N);
}

static void test_mark_failed_dead_split(void **state)
{
    struct fx *f = *state;
    struct journal_batch *b, *l, *c1, *c2;
    char id[JOURNAL_BATCH_ID_MAX];

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, NULL), 0);
    b = cut(f, 0, 100, 1 << 20);
    snprintf(id, sizeof(id), "%s", b->id);
    journal_batch_free(b);

    assert_int_equal(journal_batch_mark_failed(f->j, id, 99999, "http 503",
                                               f->err, sizeof(f->err)),
                     0);
    assert_int_equal(journal_batch_load(f->j, id, &l, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(l->state, JOURNAL_BATCH_FAILED);
    assert_int_equal(l->next_try_ms, 99999);
    assert_string_equal(l->last_error, "http 503");
    journal_batch_free(l);

    dead_and_list(f, id);

    /* bisection: 8 live members -> 3 + 5 */
    assert_int_equal(
        journal_batch_split(f->j, id, 0, &c1, &c2, f->err, sizeof(f->err)),
        -EINVAL);
    assert_int_equal(
        journal_batch_split(f->j, id, 8, &c1, &c2, f->err, sizeof(f->err)),
        -EINVAL);
    assert_int_equal(
        journal_batch_split(f->j, id, 3, &c1, &c2, f->err, sizeof(f->err)), 0);
    assert_int_equal(c1->nevents, 3);
    assert_int_equal(c2->nevents, 5);
    assert_int_equal(c1->events[2].offset, 2);
    assert_int_equal(c2->events[0].offset, 5); /* dead 3,4 not included */
    assert_string_equal(c1->parent_id, id);
    assert_true(c1->flags & JOURNAL_BATCH_CHILD);
    assert_int_equal(journal_batch_load(f->j, id, &l, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(l->state, JOURNAL_BATCH_SPLIT);
    journal_batch_free(l);
    /* children are claimed by the caller: cut gives nothing */
    assert_null(cut(f, 0, 100, 1 << 20));

    /* every member of c1 dies: c1 becomes DEAD */
    assert_int_equal(journal_batch_mark_dead(f->j, c1->id, NULL, 0, "too big",
                                             779, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(
        journal_batch_load(f->j, c1->id, &l, f->err, sizeof(f->err)), 0);
    assert_int_equal(l->state, JOURNAL_BATCH_DEAD);
    assert_int_equal(l->nevents, 0);
    journal_batch_free(l);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, c2->id, 1, f->err, sizeof(f->err)),
        0);

    struct journal_stats st;
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.nparts, 1);
    assert_int_equal(st.parts[0].dead_count, 5);
    assert_int_equal(st.parts[0].delivered_count, 5);
    assert_int_equal(st.parts[0].pending_count, 0);
    assert_int_equal(st.parts[0].inflight_count, 0);
    assert_int_equal(st.parts[0].oldest_pending_ms, 0);
    assert_int_equal(st.batches_unfinished, 0);
    assert_int_equal(st.pending_bytes, 0);
    journal_stats_release(&st);
    journal_batch_free(c1);
    journal_batch_free(c2);

    requeue_and_replay(f);
}

/*
 * Offset epochs (a partition that went backwards: topic recreated). The
 * old epoch's settled events are still cut and delivered (sealed: no
 * settled limit), the new epoch has its own duplicate filter (INV-2 within
 * an epoch) and its own cut cursor, and both survive a reopen.
 */
static void test_epoch(void **state)
{
    struct fx *f = *state;
    struct journal_append_result res;
    struct journal_cut_req q;
    struct journal_batch *b;
    struct journal_stats st;
    int64_t high, epoch = -1;

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 99, NULL), 0);
    /* the old life: 0..49 settled and batched, 50..99 settled, pending */
    struct journal_offset settled[1] = {{"t", 0, 49}};
    memset(&q, 0, sizeof(q));
    q.route = 0;
    q.max_rows = 1000;
    q.max_bytes = 1 << 20;
    q.settled = settled;
    q.nsettled = 1;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(b->nevents, 50);
    journal_batch_free(b);

    /* without an epoch, a recreated topic's 0..29 are "duplicates" */
    assert_int_equal(append_range(f, 0, "t", 0, 0, 29, &res), 0);
    assert_int_equal(res.appended, 0);
    assert_int_equal(res.duplicates, 30);
    journal_append_result_release(&res);

    assert_int_equal(
        journal_new_epoch(f->j, "t", 0, 0, 0, &epoch, f->err, sizeof(f->err)),
        0);
    assert_int_equal(epoch, 1);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, -1);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 29, &res), 0);
    assert_int_equal(res.appended, 30);
    assert_int_equal(res.parts[0].high_offset, 29);
    journal_append_result_release(&res);
    /* INV-2 within the epoch */
    assert_int_equal(append_range(f, 0, "t", 0, 20, 34, &res), 0);
    assert_int_equal(res.appended, 5);
    assert_int_equal(res.duplicates, 10);
    journal_append_result_release(&res);

    /* the new epoch is settled up to 9 only: the cut takes the sealed
     * epoch's 50..99 (no settled limit) and the new epoch's 0..9 */
    settled[0].offset = 9;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_non_null(b);
    assert_int_equal(b->nevents, 60);
    {
        int old = 0, neu = 0;

        for (size_t i = 0; i < b->nevents; i++) {
            if (b->events[i].offset >= 50) {
                old++;
            } else {
                assert_true(b->events[i].offset <= 9);
                neu++;
            }
        }
        assert_int_equal(old, 50);
        assert_int_equal(neu, 10);
    }
    journal_batch_free(b);
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_null(b);

    /* drops touch the current epoch only */
    struct journal_drop_result dr;
    assert_int_equal(
        journal_drop_partition(f->j, "t", 0, 19, &dr, f->err, sizeof(f->err)),
        0);
    assert_int_equal(dr.dropped, 15); /* 20..34 of epoch 1 */
    assert_int_equal(dr.high_offset, 19);

    jreopen(f);
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.nparts, 2);
    assert_int_equal(st.parts[0].epoch, 0);
    assert_int_equal(st.parts[0].sealed, 1);
    assert_int_equal(st.parts[0].high_offset, 99);
    assert_int_equal(st.parts[0].pending_count, 0);
    assert_int_equal(st.parts[0].inflight_count, 100);
    assert_int_equal(st.parts[1].epoch, 1);
    assert_int_equal(st.parts[1].sealed, 0);
    assert_int_equal(st.parts[1].epoch_start, 0);
    assert_int_equal(st.parts[1].high_offset, 19);
    assert_int_equal(st.parts[1].pending_count, 10); /* 10..19 */
    journal_stats_release(&st);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 19);

    /* an epoch from a given offset; a partition never journaled */
    assert_int_equal(
        journal_new_epoch(f->j, "t", 0, 0, 500, &epoch, f->err, sizeof(f->err)),
        0);
    assert_int_equal(epoch, 2);
    assert_int_equal(append_range(f, 0, "t", 0, 498, 501, &res), 0);
    assert_int_equal(res.appended, 2); /* 500, 501 */
    journal_append_result_release(&res);
    assert_int_equal(
        journal_new_epoch(f->j, "u", 3, 0, 7, &epoch, f->err, sizeof(f->err)),
        0);
    assert_int_equal(epoch, 0);
    assert_int_equal(
        journal_high_offset(f->j, "u", 3, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 6);
    assert_int_equal(
        journal_new_epoch(f->j, "t", 0, 0, -1, &epoch, f->err, sizeof(f->err)),
        -EINVAL);
}

/* A journal of schema 1 (before epochs) is migrated at the first
 * read-write open and keeps its partitions as epoch 0; a read-only open
 * of an unmigrated file is refused with the reason. */
/* SQL that turns a journal back into schema 3's layout: the events in
 * chunks.data, no chunk_data table (migration 4 undone) */
#define UNDO_SCHEMA_4                                                          \
    "ALTER TABLE chunks ADD COLUMN data BLOB NOT NULL DEFAULT x'';"            \
    "UPDATE chunks SET data = (SELECT d.data FROM chunk_data d"                \
    " WHERE d.id = chunks.id);"                                                \
    "DROP TABLE chunk_data;"

/* Closes the fixture's journal and runs sql on its file (a test's way to
 * make an older schema or a damaged file). */
static void rewrite_file(struct fx *f, const char *sql)
{
    sqlite3 *db;

    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int64_t count_sql(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

static int count_event(void *arg, const struct journal_event *ev,
                       enum journal_event_state s, const char *reason)
{
    int64_t *n = arg;

    (void)s;
    (void)reason;
    assert_true(ev->value_len > 0);
    (*n)++;
    return 0;
}

/* Migration 4 moves every chunk's events into chunk_data: a schema 3 file
 * with a batch in flight and pending events opens, the batch loads with
 * the same events, the rest cuts, and retirement deletes both rows */
static void test_chunk_data_migration(void **state)
{
    struct fx *f = *state;
    struct journal_batch *b, *again;
    struct journal_iter_req ir = {JOURNAL_SEL_ALL, -1, NULL, -1, -1, -1};
    int64_t n = 0, deleted = 0;
    char first_id[JOURNAL_BATCH_ID_MAX];
    sqlite3 *db;

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, NULL), 0);
    assert_int_equal(append_range(f, 0, "t", 1, 0, 4, NULL), 0);
    b = cut(f, 0, 7, 1 << 20);
    assert_int_equal(b->count, 7);
    snprintf(first_id, sizeof(first_id), "%s", b->id);
    journal_batch_free(b);
    rewrite_file(f, "BEGIN;" UNDO_SCHEMA_4 "PRAGMA user_version=3; COMMIT;");

    jopen(f, 0, 0);
    assert_int_equal(
        journal_iterate(f->j, &ir, count_event, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, 15);
    again = cut(f, 0, 100, 1 << 20);
    assert_string_equal(again->id, first_id); /* the unfinished one first */
    assert_int_equal(again->nevents, 7);
    assert_int_equal(again->events[0].offset, 0);
    assert_int_equal(journal_batch_mark_delivered(f->j, again->id, 1, f->err,
                                                  sizeof(f->err)),
                     0);
    journal_batch_free(again);
    b = cut(f, 0, 100, 1 << 20);
    assert_int_equal(b->count, 8);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    assert_int_equal(
        journal_retire(f->j, INT64_MAX, 100, &deleted, f->err, sizeof(f->err)),
        0);
    assert_int_equal(deleted, 15); /* events */
    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(count_sql(db, "PRAGMA user_version"), 4);
    assert_int_equal(count_sql(db, "SELECT COUNT(*) FROM chunks"), 0);
    assert_int_equal(count_sql(db, "SELECT COUNT(*) FROM chunk_data"), 0);
    assert_int_equal(count_sql(db, "SELECT COUNT(*) FROM pragma_table_info("
                                   "'chunks') WHERE name = 'data'"),
                     0);
    sqlite3_close(db);
}

static void test_epoch_migration(void **state)
{
    struct fx *f = *state;
    struct journal_options o;
    struct journal_stats st;
    struct journal_append_result res;
    int64_t high;

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, NULL), 0);
    /* rewrite the file as schema 1 had it */
    rewrite_file(
        f, "BEGIN;"
           "CREATE TABLE p1(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
           " partition INTEGER NOT NULL, route INTEGER NOT NULL,"
           " high_offset INTEGER NOT NULL, batched_offset INTEGER NOT NULL,"
           " pending_count INTEGER NOT NULL, pending_bytes INTEGER NOT NULL,"
           " UNIQUE(topic, partition));"
           "INSERT INTO p1 SELECT id, topic, partition, route, high_offset,"
           " batched_offset, pending_count, pending_bytes FROM partitions;"
           "DROP TABLE partitions; ALTER TABLE p1 RENAME TO partitions;"
           "DROP TABLE schemas;" UNDO_SCHEMA_4 "PRAGMA user_version=1;"
           " COMMIT;");

    memset(&o, 0, sizeof(o));
    o.path = f->path;
    o.read_only = 1;
    assert_int_equal(journal_open(&o, &f->j, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "schema version 1"));
    f->j = NULL;

    jopen(f, 0, 0);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 9);
    assert_int_equal(append_range(f, 0, "t", 0, 5, 12, &res), 0);
    assert_int_equal(res.appended, 3);
    journal_append_result_release(&res);
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.nparts, 1);
    assert_int_equal(st.parts[0].epoch, 0);
    assert_int_equal(st.parts[0].sealed, 0);
    assert_int_equal(st.parts[0].pending_count, 13);
    journal_stats_release(&st);
}

/* Schema Registry schemas kept by (registry, id): written once, read back
 * after a reopen, and the table made by migration 3 on a version 2 file */
static void test_schema_cache(void **state)
{
    struct fx *f = *state;
    char *type = NULL, *text = NULL;

    jopen(f, 0, 0);
    assert_int_equal(journal_schema_get(f->j, "http://r", 7, &type, &text,
                                        f->err, sizeof(f->err)),
                     -ENOENT);
    assert_int_equal(journal_schema_put(f->j, "http://r", 7, "AVRO",
                                        "{\"type\":\"string\"}", 1000, f->err,
                                        sizeof(f->err)),
                     0);
    /* a second put of the same key changes nothing */
    assert_int_equal(journal_schema_put(f->j, "http://r", 7, "JSON", "{}", 2000,
                                        f->err, sizeof(f->err)),
                     0);
    assert_int_equal(journal_schema_put(f->j, "http://other", 7, "JSON", "{}",
                                        2000, f->err, sizeof(f->err)),
                     0);
    jreopen(f);
    assert_int_equal(journal_schema_get(f->j, "http://r", 7, &type, &text,
                                        f->err, sizeof(f->err)),
                     0);
    assert_string_equal(type, "AVRO");
    assert_string_equal(text, "{\"type\":\"string\"}");
    free(type);
    free(text);
    assert_int_equal(journal_schema_get(f->j, "http://other", 7, &type, &text,
                                        f->err, sizeof(f->err)),
                     0);
    assert_string_equal(type, "JSON");
    free(type);
    free(text);
    /* a file of schema version 2 gets the table */
    rewrite_file(f,
                 "DROP TABLE schemas;" UNDO_SCHEMA_4 "PRAGMA user_version=2;");
    jopen(f, 0, 0);
    assert_int_equal(journal_schema_get(f->j, "http://r", 7, &type, &text,
                                        f->err, sizeof(f->err)),
                     -ENOENT);
    assert_int_equal(journal_schema_put(f->j, "http://r", 8, "AVRO", "\"int\"",
                                        1, f->err, sizeof(f->err)),
                     0);
}

static void test_lock_and_read_only(void **state)
{
    struct fx *f = *state;
    struct journal_options o;
    struct journal *j2 = NULL;
    char err[256];
    char want[64];

    memset(&o, 0, sizeof(o));
    o.path = f->path;
    o.read_only = 1;
    assert_int_equal(journal_open(&o, &j2, err, sizeof(err)), -ENOENT);
    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 4, NULL), 0);
    /* a second opener (read-write or read-only) is refused, naming us */
    o.read_only = 0;
    assert_int_equal(journal_open(&o, &j2, err, sizeof(err)), -EBUSY);
    snprintf(want, sizeof(want), "process %ld", (long)getpid());
    assert_non_null(strstr(err, want));
    o.read_only = 1;
    assert_int_equal(journal_open(&o, &j2, err, sizeof(err)), -EBUSY);
    /* and from another process */
    pid_t pid = fork();
    if (pid == 0) {
        struct journal *j3 = NULL;
        o.read_only = 0;
        _exit(journal_open(&o, &j3, err, sizeof(err)) == -EBUSY ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    char uuid[40];
    snprintf(uuid, sizeof(uuid), "%s", journal_uuid(f->j));
    assert_int_equal(strlen(uuid), 36);
    assert_string_equal(journal_path(f->j), f->path);
    journal_close(f->j);
    f->j = NULL;

    /* read-only: reads work, writes are refused; two readers are fine */
    struct journal *r1 = NULL, *r2 = NULL;
    int64_t high;
    assert_int_equal(journal_open(&o, &r1, err, sizeof(err)), 0);
    assert_int_equal(journal_open(&o, &r2, err, sizeof(err)), 0);
    assert_string_equal(journal_uuid(r1), uuid);
    assert_int_equal(journal_high_offset(r1, "t", 0, &high, err, sizeof(err)),
                     0);
    assert_int_equal(high, 4);
    assert_int_equal(journal_pending_bytes(r1), 10);
    struct journal_event ev = {0, "t", 0, 5, 0, NULL, 0, "x", 1, NULL, 0};
    assert_int_equal(journal_append(r1, &ev, 1, NULL, err, sizeof(err)),
                     -EROFS);
    /* a writer is refused while a reader holds it */
    o.read_only = 0;
    assert_int_equal(journal_open(&o, &j2, err, sizeof(err)), -EBUSY);
    journal_close(r1);
    journal_close(r2);
    assert_int_equal(journal_open(&o, &j2, err, sizeof(err)), 0);
    assert_string_equal(journal_uuid(j2), uuid);
    journal_close(j2);
}

/* --------------------------------------------------------------- async */

struct actx {
    int appended_cbs;
    int64_t appended;
    int done_cbs;
    int last_status;
    struct journal_batch *b;
    struct journal_batch *s1, *s2;
    int64_t count;
    int order[64];
    int norder;
};

static void on_append(void *arg, int status,
                      const struct journal_append_result *res, const char *err)
{
    struct actx *a = arg;
    assert_int_equal(status, 0);
    assert_string_equal(err, "");
    a->order[a->norder++] = (int)res->parts[0].high_offset;
    a->appended_cbs++;
    a->appended += res->appended;
}

static void on_batch(void *arg, int status, struct journal_batch *b,
                     const char *err)
{
    struct actx *a = arg;
    (void)err;
    a->last_status = status;
    a->b = b;
    a->done_cbs++;
}

static void on_done(void *arg, int status, const char *err)
{
    struct actx *a = arg;
    (void)err;
    a->last_status = status;
    a->done_cbs++;
}

static void on_split(void *arg, int status, struct journal_batch *x,
                     struct journal_batch *y, const char *err)
{
    struct actx *a = arg;
    (void)err;
    a->last_status = status;
    a->s1 = x;
    a->s2 = y;
    a->done_cbs++;
}

static void on_drop(void *arg, int status,
                    const struct journal_drop_result *res, const char *err)
{
    struct actx *a = arg;
    (void)err;
    a->last_status = status;
    a->count = res ? res->dropped : -1;
    a->done_cbs++;
}

static void on_count(void *arg, int status, int64_t count, const char *err)
{
    struct actx *a = arg;
    (void)err;
    a->last_status = status;
    a->count = count;
    a->done_cbs++;
}

static void on_replay(void *arg, int status, int64_t ne, int64_t nb,
                      const char *err)
{
    struct actx *a = arg;
    (void)err;
    (void)nb;
    a->last_status = status;
    a->count = ne;
    a->done_cbs++;
}

/* Runs the loop until *counter reaches want (deadline 10 s). */
static void run_until(uv_loop_t *loop, int *counter, int want)
{
    for (int i = 0; i < 10000 && *counter < want; i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    assert_int_equal(*counter, want);
}

/* Opens f's journal (sync FULL) with its callbacks on loop. */
static void open_on_loop(struct fx *f, uv_loop_t *loop)
{
    struct journal_options o;

    assert_int_equal(uv_loop_init(loop), 0);
    memset(&o, 0, sizeof(o));
    o.path = f->path;
    o.sync_full = 1;
    o.loop = loop;
    assert_int_equal(journal_open(&o, &f->j, f->err, sizeof(f->err)), 0);
}

/* Borrowed async append: the events stay with the caller until the
 * callback; the stored bytes are the caller's; bad input is refused. */
static void test_async_borrowed(void **state)
{
    struct fx *f = *state;
    struct actx a;
    uv_loop_t loop;
    struct evs e;
    int64_t high = -1;
    struct journal_event bad = {0};

    memset(&a, 0, sizeof(a));
    open_on_loop(f, &loop);
    assert_int_equal(
        journal_append_async_borrowed(f->j, &bad, 1, on_append, &a), -EINVAL);
    assert_int_equal(
        journal_append_async_borrowed(f->j, NULL, 1, on_append, &a), -EINVAL);
    mkevs(&e, 0, "t", 0, 0, 99, 0);
    assert_int_equal(
        journal_append_async_borrowed(f->j, e.ev, e.n, on_append, &a), 0);
    run_until(&loop, &a.appended_cbs, 1);
    assert_int_equal(a.appended, 100);
    freeevs(&e); /* only now */
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 99);
    journal_close(f->j);
    f->j = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_async(void **state)
{
    struct fx *f = *state;
    struct actx a;
    uv_loop_t loop;
    struct evs e[20];

    memset(&a, 0, sizeof(a));
    open_on_loop(f, &loop);

    /* 20 requests queued at once: group commit, FIFO completion; the
     * events are copied, so they are freed before the callbacks run */
    for (int i = 0; i < 20; i++) {
        mkevs(&e[i], 0, "t", 0, i * 10, i * 10 + 9, 0);
        assert_int_equal(
            journal_append_async(f->j, e[i].ev, e[i].n, on_append, &a), 0);
        freeevs(&e[i]);
    }
    assert_int_equal(a.appended_cbs, 0); /* never inside the call */
    run_until(&loop, &a.appended_cbs, 20);
    assert_int_equal(a.appended, 200);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(a.order[i], i * 10 + 9);
    }

    struct journal_offset settled = {"t", 0, 1000};
    struct journal_cut_req q = {0, 50, 1 << 20, &settled, 1, 0};
    assert_int_equal(journal_batch_cut_async(f->j, &q, on_batch, &a), 0);
    run_until(&loop, &a.done_cbs, 1);
    assert_int_equal(a.last_status, 0);
    assert_non_null(a.b);
    assert_int_equal(a.b->nevents, 50);
    char id[JOURNAL_BATCH_ID_MAX];
    snprintf(id, sizeof(id), "%s", a.b->id);
    journal_batch_free(a.b);

    assert_int_equal(journal_batch_mark_sent_async(f->j, id, 1, on_done, &a),
                     0);
    assert_int_equal(
        journal_batch_mark_failed_async(f->j, id, 2, "timeout", on_done, &a),
        0);
    struct journal_offset ref = {"t", 0, 0};
    assert_int_equal(
        journal_batch_mark_dead_async(f->j, id, &ref, 1, "bad", 3, on_done, &a),
        0);
    assert_int_equal(journal_batch_split_async(f->j, id, 10, on_split, &a), 0);
    run_until(&loop, &a.done_cbs, 5);
    assert_int_equal(a.last_status, 0);
    assert_int_equal(a.s1->nevents, 10);
    assert_int_equal(a.s2->nevents, 39);
    assert_int_equal(
        journal_batch_mark_delivered_async(f->j, a.s1->id, 4, on_done, &a), 0);
    /* a failing request does not fail its neighbours */
    assert_int_equal(
        journal_batch_mark_delivered_async(f->j, "missing", 4, on_done, &a), 0);
    run_until(&loop, &a.done_cbs, 7);
    assert_int_equal(a.last_status, -ENOENT);
    journal_batch_free(a.s1);
    journal_batch_free(a.s2);

    assert_int_equal(
        journal_drop_partition_async(f->j, "t", 0, 150, on_drop, &a), 0);
    run_until(&loop, &a.done_cbs, 8);
    assert_int_equal(a.count, 49); /* 151..199 */
    assert_int_equal(
        journal_retire_async(f->j, 4102444800000LL, 64, on_count, &a), 0);
    run_until(&loop, &a.done_cbs, 9);
    assert_int_equal(a.last_status, 0);
    assert_int_equal(journal_dead_requeue_async(f->j, -1, 0, 100, on_count, &a),
                     0);
    run_until(&loop, &a.done_cbs, 10);
    assert_int_equal(a.count, 1);
    struct journal_replay_req rr = {0, NULL, -1, -1, -1, -1, -1, 100, 1 << 20};
    assert_int_equal(journal_replay_async(f->j, &rr, on_replay, &a), 0);
    run_until(&loop, &a.done_cbs, 11);
    assert_int_equal(a.last_status, 0);
    assert_int_equal(a.count, 10); /* s1's members */

    /* callbacks owed at close run inside journal_close */
    assert_int_equal(journal_batch_mark_sent_async(f->j, id, 5, on_done, &a),
                     0);
    journal_close(f->j);
    f->j = NULL;
    assert_int_equal(a.done_cbs, 12);
    /* the SPLIT parent (no members left) went with the retire above */
    assert_int_equal(a.last_status, -ENOENT);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int count_chunks(void *arg, struct sqlite3 *db)
{
    sqlite3_stmt *st;
    int64_t *n = arg;

    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM chunks", -1, &st, NULL) !=
        SQLITE_OK) {
        return -EIO;
    }
    *n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return 7;
}

static void test_names_and_read_db(void **state)
{
    struct fx *f = *state;
    int64_t n = -1;

    assert_string_equal(journal_batch_state_name(JOURNAL_BATCH_PENDING),
                        "pending");
    assert_string_equal(journal_batch_state_name(JOURNAL_BATCH_SENT), "sent");
    assert_string_equal(journal_batch_state_name(JOURNAL_BATCH_SPLIT), "split");
    assert_string_equal(journal_batch_state_name((enum journal_batch_state)99),
                        "unknown");
    assert_string_equal(journal_event_state_name(JOURNAL_EV_INFLIGHT),
                        "inflight");
    assert_string_equal(journal_event_state_name(JOURNAL_EV_DEAD), "dead");
    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 4, NULL), 0);
    assert_int_equal(append_range(f, 0, "t", 1, 0, 4, NULL), 0);
    /* the read connection sees committed data; fn's result is returned */
    assert_int_equal(journal_with_read_db(f->j, count_chunks, &n), 7);
    assert_int_equal(n, 2);
}

static int never_cb(void *arg, const struct journal_event *ev,
                    enum journal_event_state s, const char *reason)
{
    (void)arg;
    (void)ev;
    (void)s;
    (void)reason;
    return 0;
}

static void test_corrupt_chunk(void **state)
{
    struct fx *f = *state;
    struct journal_cut_req q;
    struct journal_batch *b = NULL;

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, NULL), 0);
    /* a damaged BLOB: a length that runs past the end */
    rewrite_file(f, "UPDATE chunk_data SET data = x'0000000a7f01'");
    jopen(f, 0, 0);
    memset(&q, 0, sizeof(q));
    q.max_rows = 100;
    q.max_bytes = 1 << 20;
    q.settled_all = 1;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     -EIO);
    assert_null(b);
    assert_non_null(strstr(f->err, "corrupt"));
    struct journal_iter_req ir = {JOURNAL_SEL_ALL, -1, NULL, -1, -1, -1};
    assert_int_equal(
        journal_iterate(f->j, &ir, never_cb, NULL, f->err, sizeof(f->err)),
        -EIO);
    /* the failed cut left no batch behind */
    struct journal_batch *list;
    size_t n;
    assert_int_equal(
        journal_batches_unfinished(f->j, -1, &list, &n, f->err, sizeof(f->err)),
        0);
    assert_int_equal(n, 0);
    journal_batch_list_free(list, n);
}

/*
 * Regression: dead-letter ids were reused after a requeue (INTEGER PRIMARY
 * KEY without AUTOINCREMENT), so a stale `requeue {"id": N}` could requeue
 * a different event. Ids must only grow.
 */
static void test_dead_ids_not_reused(void **state)
{
    struct fx *f = *state;
    struct journal_batch *b;
    struct journal_dead *dl;
    size_t n;
    int64_t first, rq;
    struct journal_offset ref = {"t", 0, 1};

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 3, NULL), 0);
    b = cut(f, 0, 100, 1 << 20);
    assert_non_null(b);
    assert_int_equal(journal_batch_mark_dead(f->j, b->id, &ref, 1, "bad", 1,
                                             f->err, sizeof(f->err)),
                     0);
    journal_batch_free(b);
    assert_int_equal(journal_dead_list(f->j, -1, 0, 10, &dl, &n, NULL, f->err,
                                       sizeof(f->err)),
                     0);
    assert_int_equal(n, 1);
    first = dl[0].id;
    journal_dead_list_free(dl, n);
    assert_int_equal(
        journal_dead_requeue(f->j, -1, 0, 100, &rq, f->err, sizeof(f->err)), 0);
    assert_int_equal(rq, 1);
    b = cut(f, 0, 100, 1 << 20);
    assert_non_null(b);
    assert_int_equal(journal_batch_mark_dead(f->j, b->id, &ref, 1, "bad again",
                                             2, f->err, sizeof(f->err)),
                     0);
    journal_batch_free(b);
    assert_int_equal(journal_dead_list(f->j, -1, 0, 10, &dl, &n, NULL, f->err,
                                       sizeof(f->err)),
                     0);
    assert_int_equal(n, 1);
    assert_true(dl[0].id > first);
    assert_string_equal(dl[0].reason, "bad again");
    journal_dead_list_free(dl, n);
}

/* The SQL literals of the batch states are the enum's values. */
static void test_sql_state_literals(void **state)
{
    (void)state;
    assert_int_equal(atoi(JOURNAL_SQL_PENDING), JOURNAL_BATCH_PENDING);
    assert_int_equal(atoi(JOURNAL_SQL_SENT), JOURNAL_BATCH_SENT);
    assert_int_equal(atoi(JOURNAL_SQL_FAILED), JOURNAL_BATCH_FAILED);
    assert_int_equal(atoi(JOURNAL_SQL_DELIVERED), JOURNAL_BATCH_DELIVERED);
    assert_int_equal(atoi(JOURNAL_SQL_DEAD), JOURNAL_BATCH_DEAD);
    assert_int_equal(atoi(JOURNAL_SQL_SPLIT), JOURNAL_BATCH_SPLIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sql_state_literals),
        cmocka_unit_test(test_chunk_roundtrip),
        cmocka_unit_test(test_chunk_negative_first_offset),
        cmocka_unit_test_setup_teardown(test_schema_cache, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_duplicates_high_offset,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_many_partitions, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cut_load_deliver_reopen, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cut_matches_load, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_mark_failed_dead_split, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_epoch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chunk_data_migration, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_epoch_migration, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_lock_and_read_only, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_async, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_async_borrowed, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_ids_not_reused, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_names_and_read_db, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_chunk, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
