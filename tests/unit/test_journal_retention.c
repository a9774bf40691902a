/*
 * test_journal_retention.c - unit tests for storage/journal.c, its second
 * program (test_journal.c has the rest): settling and dropping, retention,
 * replay and iteration, ENOSPC (the cap and a full disk) and the disk space
 * cap with its reserve and early retirement, on a temporary journal file
 * (journal_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "storage/journal.h"
#include "tests/unit/journal_fixture.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_settled_and_drop(void **state)
{
    struct fx *f = *state;
    struct journal_cut_req q;
    struct journal_batch *b;
    struct journal_drop_result dr;
    int64_t high;

    jopen(f, 0, 0);
    assert_int_equal(append_range(f, 0, "t", 0, 0, 9, NULL), 0);
    assert_int_equal(append_range(f, 0, "t", 1, 0, 9, NULL), 0);
    assert_int_equal(append_range(f, 0, "t", 0, 10, 19, NULL), 0);

    /* INV-3: only settled events; partition 1 not listed */
    struct journal_offset settled[1] = {{"t", 0, 4}};
    memset(&q, 0, sizeof(q));
    q.route = 0;
    q.max_rows = 100;
    q.max_bytes = 1 << 20;
    q.settled = settled;
    q.nsettled = 1;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_non_null(b);
    assert_int_equal(b->nevents, 5);
    assert_int_equal(b->events[4].offset, 4);
    for (size_t i = 0; i < b->nevents; i++) {
        assert_int_equal(b->events[i].partition, 0);
    }
    journal_batch_free(b);
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_null(b);

    /* max_bytes: each value is 2-3 bytes; a huge first event goes alone */
    settled[0].offset = 19;
    q.max_bytes = 5;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(b->nevents, 2); /* v5 + v6 = 4 bytes, +v7 > 5 */
    journal_batch_free(b);

    /* lost partition 0, group committed up to 12: 13..19 dropped, 7..12
     * are pending but <= 12 stay, batched 5,6 are not beyond 12 */
    assert_int_equal(
        journal_drop_partition(f->j, "t", 0, 12, &dr, f->err, sizeof(f->err)),
        0);
    assert_int_equal(dr.dropped, 7);
    assert_int_equal(dr.kept_batched, 0);
    assert_int_equal(dr.high_offset, 12);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 12);
    /* drop below the batched cursor (6): batched 3..6 are kept, reported */
    assert_int_equal(
        journal_drop_partition(f->j, "t", 0, 2, &dr, f->err, sizeof(f->err)),
        0);
    assert_int_equal(dr.kept_batched, 4);
    assert_int_equal(dr.dropped, 6); /* 7..12 */
    assert_int_equal(dr.high_offset, 6);
    /* the new owner's events come back later: re-appended from 7 */
    struct journal_append_result res;
    assert_int_equal(append_range(f, 0, "t", 0, 5, 8, &res), 0);
    assert_int_equal(res.appended, 2);
    journal_append_result_release(&res);
    settled[0].offset = 100;
    q.max_bytes = 1 << 20;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(b->nevents, 2);
    assert_int_equal(b->events[0].offset, 7);
    journal_batch_free(b);
    /* unknown partition: nothing */
    assert_int_equal(
        journal_drop_partition(f->j, "zz", 3, 0, &dr, f->err, sizeof(f->err)),
        0);
    assert_int_equal(dr.dropped, 0);

    struct journal_stats st;
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.nparts, 2);
    assert_int_equal(st.parts[0].partition, 0);
    assert_int_equal(st.parts[0].pending_count, 0);
    assert_int_equal(st.parts[0].inflight_count, 9); /* 0..8 */
    assert_int_equal(st.parts[1].pending_count, 10);
    assert_true(st.parts[1].oldest_pending_ms > 0);
    assert_int_equal(st.batches_unfinished, 3);
    assert_true(st.file_bytes > 0);
    journal_stats_release(&st);
}

static int count_cb(void *arg, const struct journal_event *ev,
                    enum journal_event_state s, const char *reason)
{
    int *counts = arg;
    (void)ev;
    if (s == JOURNAL_EV_DEAD) {
        assert_non_null(reason);
    }
    counts[s]++;
    return 0;
}

/* test_retention_replay_iterate's journal: 5 chunks of 10 events in the
 * states below; the in-flight batch's id into inflight
 * (JOURNAL_BATCH_ID_MAX bytes). */
static void five_chunks(struct fx *f, char *inflight)
{
    struct journal_batch *b;

    jopen(f, 0, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(append_range(f, 0, "t", 0, i * 10, i * 10 + 9, NULL),
                         0);
    }
    /* chunk 0 delivered; chunk 1 delivered but one dead; chunk 2 in
     * flight; chunks 3, 4 pending */
    b = cut(f, 0, 10, 1 << 20);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    b = cut(f, 0, 10, 1 << 20);
    struct journal_offset r1 = {"t", 0, 15};
    assert_int_equal(journal_batch_mark_dead(f->j, b->id, &r1, 1, "x", 1,
                                             f->err, sizeof(f->err)),
                     0);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    b = cut(f, 0, 10, 1 << 20);
    snprintf(inflight, JOURNAL_BATCH_ID_MAX, "%s", b->id);
    journal_batch_free(b);
}

static void test_retention_replay_iterate(void **state)
{
    struct fx *f = *state;
    struct journal_batch *b;
    int64_t deleted;
    int counts[4] = {0};
    char inflight[JOURNAL_BATCH_ID_MAX];

    five_chunks(f, inflight);

    struct journal_iter_req ir = {JOURNAL_SEL_ALL, -1, NULL, -1, -1, -1};
    assert_int_equal(
        journal_iterate(f->j, &ir, count_cb, counts, f->err, sizeof(f->err)),
        0);
    assert_int_equal(counts[JOURNAL_EV_DELIVERED], 19);
    assert_int_equal(counts[JOURNAL_EV_DEAD], 1);
    assert_int_equal(counts[JOURNAL_EV_INFLIGHT], 10);
    assert_int_equal(counts[JOURNAL_EV_PENDING], 20);
    memset(counts, 0, sizeof(counts));
    struct journal_iter_req ir2 = {JOURNAL_SEL_UNDELIVERED, 0, "t", 0, 12, 33};
    assert_int_equal(
        journal_iterate(f->j, &ir2, count_cb, counts, f->err, sizeof(f->err)),
        0);
    assert_int_equal(counts[JOURNAL_EV_DELIVERED], 0);
    assert_int_equal(counts[JOURNAL_EV_DEAD], 1);
    assert_int_equal(counts[JOURNAL_EV_INFLIGHT], 10);
    assert_int_equal(counts[JOURNAL_EV_PENDING], 4);

    /* replay delivered 5..14 (15 is dead, not delivered) */
    struct journal_replay_req rr = {0, "t", 0, 5, 16, -1, -1, 4, 1 << 20};
    int64_t ne, nb;
    assert_int_equal(
        journal_replay(f->j, &rr, &ne, &nb, f->err, sizeof(f->err)), 0);
    assert_int_equal(ne, 11); /* 5..14, 16 */
    assert_int_equal(nb, 3);

    /* INV-8: retention (cutoff in the future) never deletes undelivered,
     * dead, or replay-referenced chunks */
    int64_t future = 4102444800000LL;
    assert_int_equal(
        journal_retire(f->j, future, 64, &deleted, f->err, sizeof(f->err)), 0);
    assert_int_equal(deleted, 0); /* chunk 0 is in an unfinished replay */
    int64_t seen = 0;
    for (int k = 0; k < 3; k++) { /* the 3 unclaimed replay batches */
        b = cut(f, 0, 100, 1 << 20);
        assert_non_null(b);
        assert_true(b->flags & JOURNAL_BATCH_REPLAY);
        seen += (int64_t)b->nevents;
        assert_int_equal(journal_batch_mark_delivered(f->j, b->id, 1, f->err,
                                                      sizeof(f->err)),
                         0);
        journal_batch_free(b);
    }
    assert_int_equal(seen, 11);
    /* replay batches change no event's state */
    memset(counts, 0, sizeof(counts));
    assert_int_equal(
        journal_iterate(f->j, &ir, count_cb, counts, f->err, sizeof(f->err)),
        0);
    assert_int_equal(counts[JOURNAL_EV_DELIVERED], 19);
    /* cutoff in the past: nothing */
    assert_int_equal(
        journal_retire(f->j, 1, 64, &deleted, f->err, sizeof(f->err)), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(
        journal_retire(f->j, future, 64, &deleted, f->err, sizeof(f->err)), 0);
    assert_int_equal(deleted, 10); /* only chunk 0 */
    assert_int_equal(
        journal_purge_delivered(f->j, future, &deleted, f->err, sizeof(f->err)),
        0);
    assert_int_equal(deleted, 0);
    memset(counts, 0, sizeof(counts));
    assert_int_equal(
        journal_iterate(f->j, &ir, count_cb, counts, f->err, sizeof(f->err)),
        0);
    assert_int_equal(counts[JOURNAL_EV_DELIVERED], 9);
    assert_int_equal(counts[JOURNAL_EV_DEAD], 1);
    assert_int_equal(counts[JOURNAL_EV_INFLIGHT], 10);
    assert_int_equal(counts[JOURNAL_EV_PENDING], 20);
    /* the dead letter requeued and delivered: chunk 1 retires too */
    assert_int_equal(
        journal_dead_requeue(f->j, -1, 0, 100, NULL, f->err, sizeof(f->err)),
        0);
    b = cut(f, 0, 100, 1 << 20);
    assert_int_equal(b->nevents, 1);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    assert_int_equal(
        journal_purge_delivered(f->j, future, &deleted, f->err, sizeof(f->err)),
        0);
    assert_int_equal(deleted, 10);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, inflight, 1, f->err, sizeof(f->err)),
        0);
    assert_int_equal(
        journal_purge_delivered(f->j, future, &deleted, f->err, sizeof(f->err)),
        0);
    assert_int_equal(deleted, 10);
    struct journal_stats st;
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.chunks, 2);
    assert_int_equal(st.parts[0].pending_count, 20);
    assert_int_equal(st.parts[0].delivered_count, 0);
    journal_stats_release(&st);
}

/* Fills until -ENOSPC; checks nothing of the failed request is visible. */
static void fill_until_full(struct fx *f, int drain)
{
    int64_t off = 0, high_before = -1, high;
    int rc = 0;
    struct evs e;

    for (int i = 0; i < 100000 && rc == 0; i++) {
        mkevs(&e, 0, "t", 0, off, off + 99, 100);
        rc = journal_append(f->j, e.ev, e.n, NULL, f->err, sizeof(f->err));
        freeevs(&e);
        if (rc == 0) {
            high_before = off + 99;
            off += 100;
        }
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(high_before > 0);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, high_before); /* the failed append left nothing */
    if (!drain) {
        return;
    }
    /* the forwarder can still drain: cut + deliver + retire work */
    struct journal_batch *b = cut(f, 0, 1000000, 1 << 30);
    assert_non_null(b);
    assert_int_equal(b->events[b->nevents - 1].offset, high_before);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    int64_t deleted;
    assert_int_equal(journal_purge_delivered(f->j, 4102444800000LL, &deleted,
                                             f->err, sizeof(f->err)),
                     0);
    assert_int_equal(deleted, high_before + 1);
    /* freed pages are reused: appends work again */
    mkevs(&e, 0, "t", 0, off, off + 9, 100);
    assert_int_equal(
        journal_append(f->j, e.ev, e.n, NULL, f->err, sizeof(f->err)), 0);
    freeevs(&e);
}

static void test_enospc_cap(void **state)
{
    struct fx *f = *state;

    jopen(f, 512 * 1024, 0);
    fill_until_full(f, 1);
}

static void test_enospc_disk_full(void **state)
{
    struct fx *f = *state;

    /* PRAGMA max_page_count: SQLITE_FULL, a simulated full disk */
    jopen(f, 0, 512 * 1024);
    fill_until_full(f, 0);
    int64_t high, high2;
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    /* a rolled-back SQLITE_FULL leaves a sound file and no partial batch */
    journal_close(f->j);
    f->j = NULL;
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT COUNT(*) FROM batches UNION ALL"
                                        " SELECT COALESCE(MAX(last_offset), -1)"
                                        " FROM chunks",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), high);
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* more room (the disk was cleaned up): appends resume */
    jopen(f, 0, 4 * 1024 * 1024);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high2, f->err, sizeof(f->err)), 0);
    assert_int_equal(high2, high);
    assert_int_equal(append_range(f, 0, "t", 0, high + 1, high + 10, NULL), 0);
}

/* journal_iterate callback: records the first offset, then stops (1). */
static int first_offset_cb(void *arg, const struct journal_event *ev,
                           enum journal_event_state state,
                           const char *dead_reason)
{
    (void)state;
    (void)dead_reason;
    *(int64_t *)arg = ev->offset;
    return 1;
}

/* --------------------------------------------------------- disk space */

/* The cap arithmetic (journal.h, "disk space"): the smaller of max_bytes
 * and what the disk grants plus the journal's own file, minus the
 * reserve; never below 0; reserve 0 = the disk is not considered. */
static void test_space_cap_arithmetic(void **state)
{
    const int64_t mib = 1 << 20;
    int lim = -1;

    (void)state;
    /* no reserve: the configured cap, or none */
    assert_int_equal(journal_effective_cap(1024 * mib, 10 * mib, 0, 0, &lim),
                     1024 * mib);
    assert_int_equal(lim, 0);
    assert_true(journal_effective_cap(0, 10 * mib, 0, 0, NULL) == INT64_MAX);
    /* the case: 1 GiB cap on a 24 MiB disk, reserve 8 MiB; the
     * journal's file (4 MiB) counts as room it already holds */
    assert_int_equal(
        journal_effective_cap(1024 * mib, 20 * mib, 4 * mib, 8 * mib, &lim),
        16 * mib);
    assert_int_equal(lim, 1);
    /* plenty of disk: max_bytes rules */
    assert_int_equal(
        journal_effective_cap(64 * mib, 900 * mib, 4 * mib, 8 * mib, &lim),
        64 * mib);
    assert_int_equal(lim, 0);
    /* no configured cap: the disk's */
    assert_int_equal(journal_effective_cap(0, 900 * mib, 0, 8 * mib, &lim),
                     892 * mib);
    assert_int_equal(lim, 1);
    /* less free than the reserve: 0, never negative */
    assert_int_equal(journal_effective_cap(1024 * mib, mib, 0, 8 * mib, &lim),
                     0);
    assert_int_equal(lim, 1);

    /* pressure at 3/4 of the effective cap, or after a refused append */
    struct journal_space sp;
    int64_t target = 0;

    memset(&sp, 0, sizeof(sp));
    sp.effective_cap = 16 * mib;
    sp.used_bytes = 12 * mib - 1;
    assert_int_equal(journal_space_pressure(&sp, &target), 0);
    assert_int_equal(target, 8 * mib);
    sp.used_bytes = 12 * mib;
    assert_int_equal(journal_space_pressure(&sp, NULL), 1);
    sp.used_bytes = mib;
    sp.full = JOURNAL_FULL_DISK;
    assert_int_equal(journal_space_pressure(&sp, NULL), 1);
    sp.full = JOURNAL_FULL_NO;
    sp.effective_cap = INT64_MAX; /* no cap at all: never */
    sp.used_bytes = 1000 * mib;
    assert_int_equal(journal_space_pressure(&sp, NULL), 0);
}

/*
 * A 24 MiB filesystem (options.fs_size_bytes: the journal's files alone on
 * it) with the 8 MiB default reserve and no max_bytes: appends stop with
 * "journal full (disk)" while the reserve is still free, journal_space
 * says why, and the forwarder's writes (cut, deliver, retire) still go
 * through on the full journal (INV-7); after retirement appends go on.
 */
static void test_space_reserve_stops_appends(void **state)
{
    struct fx *f = *state;
    struct journal_options o;
    struct journal_space sp;
    const int64_t fs = 24 << 20, reserve = 8 << 20;
    int64_t off = 0, deleted = 0;
    int rc = 0;

    memset(&o, 0, sizeof(o));
    o.path = f->path;
    o.sync_full = 0;
    o.reserve_bytes = reserve;
    o.fs_size_bytes = fs;
    assert_int_equal(journal_open(&o, &f->j, f->err, sizeof(f->err)), 0);
    journal_space(f->j, &sp);
    assert_int_equal(sp.disk_limited, 1);
    assert_int_equal(sp.fs_bytes, fs);
    assert_true(sp.effective_cap <= fs - reserve);
    assert_int_equal(sp.full, JOURNAL_FULL_NO);
    while (rc == 0) {
        struct evs e;

        mkevs(&e, 0, "t", 0, off, off + 999, 100);
        rc = journal_append(f->j, e.ev, e.n, NULL, f->err, sizeof(f->err));
        freeevs(&e);
        if (rc == 0) {
            off += 1000;
        }
        assert_true(off < 1000000); /* 24 MiB hold far fewer */
    }
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(f->err, "journal full (disk)"));
    assert_true(off >= 50000); /* ~5 MB of events at least went in */
    journal_space(f->j, &sp);
    assert_int_equal(sp.full, JOURNAL_FULL_DISK);
    assert_true(journal_space_pressure(&sp, NULL));
    /* the reserve is (nearly) intact: the journal's files take at most
     * the filesystem minus the reserve, plus one append's WAL */
    assert_true(sp.file_bytes + sp.wal_bytes <= fs - reserve + (1 << 20));
    /* draining works on the full journal */
    struct journal_batch *b = cut(f, 0, 1000000, 1 << 30);
    assert_non_null(b);
    assert_int_equal(b->nevents, off);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    assert_int_equal(journal_retire_to(f->j, 4102444800000LL, 1, 100000,
                                       &deleted, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(deleted, off);
    /* room again: the freed pages take new appends */
    assert_int_equal(append_range(f, 0, "t", 0, off, off + 999, NULL), 0);
    journal_space(f->j, &sp);
    assert_int_equal(sp.full, JOURNAL_FULL_NO);
}

/*
 * Early retirement (journal_retire_to): delivered chunks go oldest first,
 * only until the pages in use reach the target; pending chunks and
 * chunks younger than the cutoff stay (INV-8).
 */
static void test_space_early_retirement(void **state)
{
    struct fx *f = *state;
    struct journal_space sp;
    struct journal_stats st;
    int64_t deleted = -1, used0, chunk, high;

    jopen(f, 0, 0);
    for (int64_t c = 0; c < 10; c++) {
        struct evs e;

        mkevs(&e, 0, "t", 0, c * 100, c * 100 + 99, 200);
        assert_int_equal(
            journal_append(f->j, e.ev, e.n, NULL, f->err, sizeof(f->err)), 0);
        freeevs(&e);
    }
    /* the first 9 chunks delivered, the 10th still pending */
    struct journal_cut_req q;
    struct journal_batch *b = NULL;
    struct journal_offset settled = {"t", 0, 899};

    memset(&q, 0, sizeof(q));
    q.route = 0;
    q.max_rows = 100000;
    q.max_bytes = 1 << 30;
    q.settled = &settled;
    q.nsettled = 1;
    assert_int_equal(journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err)),
                     0);
    assert_non_null(b);
    assert_int_equal(b->nevents, 900);
    assert_int_equal(
        journal_batch_mark_delivered(f->j, b->id, 1, f->err, sizeof(f->err)),
        0);
    journal_batch_free(b);
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_true(st.oldest_delivered_ms > 0);
    journal_stats_release(&st);
    journal_space(f->j, &sp);
    used0 = sp.used_bytes;
    /* a cutoff older than every chunk (min_retention covers them all):
     * nothing goes */
    assert_int_equal(
        journal_retire_to(f->j, 1, 1, 64, &deleted, f->err, sizeof(f->err)), 0);
    assert_int_equal(deleted, 0);
    /* one chunk is ~20 KiB of pages: aim 2.5 chunks lower */
    chunk = 100 * 205;
    assert_int_equal(journal_retire_to(f->j, 4102444800000LL,
                                       used0 - chunk * 5 / 2, 64, &deleted,
                                       f->err, sizeof(f->err)),
                     0);
    journal_space(f->j, &sp);
    assert_true(sp.used_bytes <= used0 - chunk * 5 / 2);
    assert_true(deleted >= 300 && deleted < 900); /* stopped early */
    assert_int_equal(deleted % 100, 0);           /* whole chunks */
    /* oldest first: offsets below `deleted` are gone, the rest is there */
    struct journal_iter_req ir;
    int64_t first = -1;

    memset(&ir, 0, sizeof(ir));
    ir.states = JOURNAL_SEL_ALL;
    ir.route = -1;
    ir.partition = -1;
    ir.from_offset = -1;
    ir.to_offset = -1;
    assert_int_equal(journal_iterate(f->j, &ir, first_offset_cb, &first, f->err,
                                     sizeof(f->err)),
                     1);
    assert_int_equal(first, deleted);
    /* everything else delivered goes; the pending chunk stays */
    assert_int_equal(journal_retire_to(f->j, 4102444800000LL, 1, 64, &deleted,
                                       f->err, sizeof(f->err)),
                     0);
    assert_int_equal(journal_stats(f->j, &st, f->err, sizeof(f->err)), 0);
    assert_int_equal(st.chunks, 1);
    assert_int_equal(st.parts[0].pending_count, 100);
    assert_int_equal(st.oldest_delivered_ms, 0);
    journal_stats_release(&st);
    assert_int_equal(
        journal_high_offset(f->j, "t", 0, &high, f->err, sizeof(f->err)), 0);
    assert_int_equal(high, 999);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_settled_and_drop, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_replay_iterate, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_enospc_cap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_enospc_disk_full, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_space_cap_arithmetic),
        cmocka_unit_test_setup_teardown(test_space_reserve_stops_appends,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_space_early_retirement, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
