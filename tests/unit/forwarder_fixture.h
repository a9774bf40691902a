/*
 * forwarder_fixture.h - the in-memory journal test_forwarder.c links
 * instead of storage/: it implements the part of storage/journal.h the
 * forwarder uses (forwarder_fixture.c), on a uv timer so its callbacks come
 * later like the real one's, and lets the test read and steer its events
 * and batches.
 */
#ifndef KADX_TESTS_UNIT_FORWARDER_FIXTURE_H
#define KADX_TESTS_UNIT_FORWARDER_FIXTURE_H

#include "storage/journal.h"

#include <stdint.h>
#include <uv.h>

#define FJ_MAX_EVENTS  4096
#define FJ_MAX_BATCHES 1024

enum fj_ev_state { FJ_PENDING = 0, FJ_INFLIGHT, FJ_DELIVERED, FJ_DEAD };

struct fj_event {
    int32_t partition;
    int64_t offset;
    char value[256];
    enum fj_ev_state state;
    int batch; /* index of the batch holding it, -1 */
    char reason[256];
};

struct fj_batch {
    char id[JOURNAL_BATCH_ID_MAX];
    enum journal_batch_state state;
    int claimed;
    int attempts;
    int64_t first_sent_ms;
    int64_t last_sent_ms;
    int64_t next_try_ms;
    int members[FJ_MAX_EVENTS / 4];
    int nmembers;
};

struct fj_call;

struct journal {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct fj_event ev[FJ_MAX_EVENTS];
    int nev;
    struct fj_batch b[FJ_MAX_BATCHES];
    int nb;
    int seq;
    struct fj_call *queue, *tail;
    int fail_mark_sent; /* make the next N mark_sent calls fail */
    int fail_mark_delivered;
    int retire_calls;
    int cut_delay_ms; /* a slow cut: its queue runs that much later */
    int cuts, cut_runs;
};

/* nev events, partition i % 2, offset i / 2; event bad_at's record fails
 * the check (-1: none). */
struct journal *fj_new(uv_loop_t *loop, int nev, int bad_at);
void fj_close(struct journal *j);
/* How many events are in state st. */
int fj_count(struct journal *j, enum fj_ev_state st);

#endif
