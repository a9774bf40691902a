/*
 * forwarder_fixture.c - the in-memory journal of test_forwarder.c
 * (forwarder_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/forwarder_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ an in-memory journal */

struct fj_call {
    void (*run)(struct journal *j, struct fj_call *c);
    union {
        journal_batch_cb batch;
        journal_done_cb done;
        journal_split_cb split;
        journal_count_cb count;
    } cb;
    void *arg;
    char id[JOURNAL_BATCH_ID_MAX];
    int64_t n;
    struct journal_offset ref;
    int nref;
    int snap; /* cut: the events there were when it was asked for */
    char reason[256];
    struct fj_call *next;
};

static struct fj_batch *fj_find(struct journal *j, const char *id)
{
    for (int i = 0; i < j->nb; i++) {
        if (strcmp(j->b[i].id, id) == 0) {
            return &j->b[i];
        }
    }
    return NULL;
}

static int fj_live(struct journal *j, struct fj_batch *b)
{
    int n = 0;

    for (int i = 0; i < b->nmembers; i++) {
        n += j->ev[b->members[i]].state != FJ_DEAD;
    }
    return n;
}

/* A batch object as the journal hands it out: live members only. */
static struct journal_batch *fj_export(struct journal *j, struct fj_batch *fb)
{
    struct journal_batch *b = calloc(1, sizeof(*b));
    int k = 0;

    assert_non_null(b);
    snprintf(b->id, sizeof(b->id), "%s", fb->id);
    b->state = fb->state;
    b->attempts = fb->attempts;
    b->first_sent_ms = fb->first_sent_ms;
    b->last_sent_ms = fb->last_sent_ms;
    b->next_try_ms = fb->next_try_ms;
    b->created_ms = 1;
    b->events = calloc((size_t)fb->nmembers + 1, sizeof(*b->events));
    assert_non_null(b->events);
    for (int i = 0; i < fb->nmembers; i++) {
        struct fj_event *e = &j->ev[fb->members[i]];

        if (e->state == FJ_DEAD) {
            continue;
        }
        b->events[k].topic = "gameplay";
        b->events[k].partition = e->partition;
        b->events[k].offset = e->offset;
        b->events[k].timestamp_ms = 1764000000000LL;
        b->events[k].value = e->value;
        b->events[k].value_len = strlen(e->value);
        b->bytes += (int64_t)strlen(e->value);
        k++;
    }
    b->nevents = (size_t)k;
    b->count = k;
    return b;
}

void journal_batch_free(struct journal_batch *b)
{
    if (b != NULL) {
        free(b->events);
        free(b);
    }
}

int journal_batch_load(struct journal *j, const char *id,
                       struct journal_batch **out, char *err, size_t errlen)
{
    struct fj_batch *fb = fj_find(j, id);

    (void)err;
    (void)errlen;
    if (fb == NULL) {
        return -ENOENT;
    }
    *out = fj_export(j, fb);
    return 0;
}

static void fj_run_queue(uv_timer_t *t)
{
    struct journal *j = t->data;

    while (j->queue != NULL) {
        struct fj_call *c = j->queue;

        j->queue = c->next;
        if (j->queue == NULL) {
            j->tail = NULL;
        }
        c->run(j, c);
        free(c);
    }
}

static struct fj_call *fj_queue(struct journal *j,
                                void (*run)(struct journal *, struct fj_call *),
                                void *arg, const char *id)
{
    struct fj_call *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->run = run;
    c->arg = arg;
    if (id != NULL) {
        snprintf(c->id, sizeof(c->id), "%s", id);
    }
    if (j->tail != NULL) {
        j->tail->next = c;
    } else {
        j->queue = c;
    }
    j->tail = c;
    uv_timer_start(&j->timer, fj_run_queue, 0, 0);
    return c;
}

static void fj_cut_run(struct journal *j, struct fj_call *c)
{
    journal_batch_cb cb = c->cb.batch;
    struct fj_batch *fb;

    j->cut_runs++;
    for (int i = 0; i < j->nb; i++) {
        fb = &j->b[i];
        if (!fb->claimed && (fb->state == JOURNAL_BATCH_PENDING ||
                             fb->state == JOURNAL_BATCH_SENT ||
                             fb->state == JOURNAL_BATCH_FAILED)) {
            fb->claimed = 1;
            cb(c->arg, 0, fj_export(j, fb), "");
            return;
        }
    }
    fb = &j->b[j->nb];
    memset(fb, 0, sizeof(*fb));
    for (int i = 0; i < c->snap && fb->nmembers < c->n; i++) {
        if (j->ev[i].state == FJ_PENDING && j->ev[i].batch < 0) {
            j->ev[i].batch = j->nb;
            j->ev[i].state = FJ_INFLIGHT;
            fb->members[fb->nmembers++] = i;
        }
    }
    if (fb->nmembers == 0) {
        cb(c->arg, 0, NULL, "");
        return;
    }
    snprintf(fb->id, sizeof(fb->id), "fj-%d", ++j->seq);
    fb->claimed = 1;
    j->nb++;
    cb(c->arg, 0, fj_export(j, fb), "");
}

int journal_batch_cut_async(struct journal *j,
                            const struct journal_cut_req *req,
                            journal_batch_cb cb, void *arg)
{
    struct fj_call *c = fj_queue(j, fj_cut_run, arg, NULL);

    c->n = req->max_rows;
    c->snap = j->nev;
    c->cb.batch = cb;
    j->cuts++;
    if (j->cut_delay_ms > 0) {
        uv_timer_start(&j->timer, fj_run_queue, (uint64_t)j->cut_delay_ms, 0);
    }
    return 0;
}

static void fj_sent_run(struct journal *j, struct fj_call *c)
{
    struct fj_batch *fb = fj_find(j, c->id);

    if (j->fail_mark_sent > 0) {
        j->fail_mark_sent--;
        c->cb.done(c->arg, -EIO, "disk trouble");
        return;
    }
    fb->state = JOURNAL_BATCH_SENT;
    fb->attempts++;
    fb->last_sent_ms = c->n;
    c->cb.done(c->arg, 0, "");
}

int journal_batch_mark_sent_async(struct journal *j, const char *id,
                                  int64_t now_ms, journal_done_cb cb, void *arg)
{
    struct fj_call *c = fj_queue(j, fj_sent_run, arg, id);

    c->cb.done = cb;
    c->n = now_ms;
    return 0;
}

static void fj_delivered_run(struct journal *j, struct fj_call *c)
{
    struct fj_batch *fb = fj_find(j, c->id);

    assert_non_null(fb);
    if (j->fail_mark_delivered > 0) {
        j->fail_mark_delivered--;
        c->cb.done(c->arg, -EIO, "disk trouble");
        return;
    }
    /* INV-5: only a sent batch can be delivered */
    assert_int_equal(fb->state, JOURNAL_BATCH_SENT);
    fb->state = JOURNAL_BATCH_DELIVERED;
    for (int i = 0; i < fb->nmembers; i++) {
        struct fj_event *e = &j->ev[fb->members[i]];

        if (e->state != FJ_DEAD) {
            assert_int_equal(e->state, FJ_INFLIGHT); /* never twice */
            e->state = FJ_DELIVERED;
        }
    }
    c->cb.done(c->arg, 0, "");
}

int journal_batch_mark_delivered_async(struct journal *j, const char *id,
                                       int64_t now_ms, journal_done_cb cb,
                                       void *arg)
{
    (void)now_ms;
    fj_queue(j, fj_delivered_run, arg, id)->cb.done = cb;
    return 0;
}

static void fj_failed_run(struct journal *j, struct fj_call *c)
{
    struct fj_batch *fb = fj_find(j, c->id);

    fb->state = JOURNAL_BATCH_FAILED;
    fb->next_try_ms = c->n;
    c->cb.done(c->arg, 0, "");
}

int journal_batch_mark_failed_async(struct journal *j, const char *id,
                                    int64_t next_try_ms, const char *error,
                                    journal_done_cb cb, void *arg)
{
    (void)error;
    struct fj_call *c = fj_queue(j, fj_failed_run, arg, id);

    c->n = next_try_ms;
    c->cb.done = cb;
    return 0;
}

static void fj_dead_run(struct journal *j, struct fj_call *c)
{
    struct fj_batch *fb = fj_find(j, c->id);
    int found = 0;

    for (int i = 0; i < fb->nmembers; i++) {
        struct fj_event *e = &j->ev[fb->members[i]];

        if (e->state != FJ_DEAD && e->partition == c->ref.partition &&
            e->offset == c->ref.offset) {
            e->state = FJ_DEAD;
            snprintf(e->reason, sizeof(e->reason), "%s", c->reason);
            found = 1;
        }
    }
    if (!found) {
        c->cb.done(c->arg, -EINVAL, "not a live member");
        return;
    }
    if (fj_live(j, fb) == 0) {
        fb->state = JOURNAL_BATCH_DEAD;
    }
    c->cb.done(c->arg, 0, "");
}

int journal_batch_mark_dead_async(struct journal *j, const char *id,
                                  const struct journal_offset *refs, size_t n,
                                  const char *reason, int64_t now_ms,
                                  journal_done_cb cb, void *arg)
{
    struct fj_call *c;

    (void)now_ms;
    assert_int_equal(n, 1);
    c = fj_queue(j, fj_dead_run, arg, id);
    c->cb.done = cb;
    c->ref = refs[0];
    c->ref.topic = NULL;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    return 0;
}

static void fj_split_run(struct journal *j, struct fj_call *c)
{
    struct fj_batch *fb = fj_find(j, c->id);
    struct fj_batch *kid[2];
    int live = 0;

    assert_non_null(fb);
    assert_true(c->n > 0 && c->n < fj_live(j, fb));
    fb->state = JOURNAL_BATCH_SPLIT;
    for (int k = 0; k < 2; k++) {
        kid[k] = &j->b[j->nb++];
        memset(kid[k], 0, sizeof(*kid[k]));
        snprintf(kid[k]->id, sizeof(kid[k]->id), "fj-%d", ++j->seq);
        kid[k]->claimed = 1;
    }
    for (int i = 0; i < fb->nmembers; i++) {
        int e = fb->members[i];

        if (j->ev[e].state == FJ_DEAD) {
            continue;
        }
        struct fj_batch *to = live++ < c->n ? kid[0] : kid[1];

        to->members[to->nmembers++] = e;
        j->ev[e].batch = (int)(to - j->b);
    }
    c->cb.split(c->arg, 0, fj_export(j, kid[0]), fj_export(j, kid[1]), "");
}

int journal_batch_split_async(struct journal *j, const char *id, int64_t at,
                              journal_split_cb cb, void *arg)
{
    struct fj_call *c = fj_queue(j, fj_split_run, arg, id);

    c->n = at;
    c->cb.split = cb;
    return 0;
}

static void fj_retire_run(struct journal *j, struct fj_call *c)
{
    j->retire_calls++;
    c->cb.count(c->arg, 0, 0, "");
}

/* INV-8 is the journal's (tested there); here: the forwarder asks. */
int journal_retire_async(struct journal *j, int64_t cutoff_ms, int max_chunks,
                         journal_count_cb cb, void *arg)
{
    (void)cutoff_ms;
    assert_true(max_chunks > 0);
    fj_queue(j, fj_retire_run, arg, NULL)->cb.count = cb;
    return 0;
}

/* Space awareness (journal.h "disk space"): the fake journal has plenty
 * of room, so retention never runs early here. */
void journal_space(struct journal *j, struct journal_space *out)
{
    (void)j;
    memset(out, 0, sizeof(*out));
    out->effective_cap = INT64_MAX;
}

int journal_space_pressure(const struct journal_space *s, int64_t *target)
{
    if (target != NULL) {
        *target = INT64_MAX;
    }
    return s->full != JOURNAL_FULL_NO;
}

int journal_retire_to_async(struct journal *j, int64_t cutoff_ms,
                            int64_t target_used_bytes, int max_chunks,
                            journal_count_cb cb, void *arg)
{
    (void)target_used_bytes;
    return journal_retire_async(j, cutoff_ms, max_chunks, cb, arg);
}

/* the registry's schema cache (no registry route in these tests) */
int journal_schema_get(struct journal *j, const char *registry, int64_t id,
                       char **type, char **schema, char *err, size_t errlen)
{
    (void)j;
    (void)registry;
    (void)id;
    (void)err;
    (void)errlen;
    *type = NULL;
    *schema = NULL;
    return -ENOENT;
}

int journal_schema_put_async(struct journal *j, const char *registry,
                             int64_t id, const char *type, const char *schema,
                             int64_t now_ms, journal_count_cb cb, void *arg)
{
    (void)j;
    (void)registry;
    (void)id;
    (void)type;
    (void)schema;
    (void)now_ms;
    (void)cb;
    (void)arg;
    return -ENOTSUP;
}

struct journal *fj_new(uv_loop_t *loop, int nev, int bad_at)
{
    struct journal *j = calloc(1, sizeof(*j));

    assert_non_null(j);
    j->loop = loop;
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    for (int i = 0; i < nev; i++) {
        struct fj_event *e = &j->ev[j->nev++];

        e->partition = i % 2;
        e->offset = i / 2;
        e->batch = -1;
        if (i == bad_at) {
            snprintf(e->value, sizeof(e->value),
                     "{\"playerId\":%d,\"bad\":true}", i);
        } else {
            snprintf(e->value, sizeof(e->value),
                     "{\"playerId\":%d,\"stake\":1}", i);
        }
    }
    return j;
}

void fj_close(struct journal *j)
{
    uv_close((uv_handle_t *)&j->timer, NULL);
}

int fj_count(struct journal *j, enum fj_ev_state st)
{
    int n = 0;

    for (int i = 0; i < j->nev; i++) {
        n += j->ev[i].state == st;
    }
    return n;
}
