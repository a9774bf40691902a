/*
 * forwarder.c - journal -> ADX streaming ingest, exactly once (see
 * forwarder.h for the contract; DESIGN.md invariants 3-6).
 *
 * Each batch this process holds is a struct fbatch with one state (set only
 * through fb_set_state, which logs transitions at debug level):
 *
 *   cut ──▶ BUILDING (worker thread: body, local check, gzip)
 *             │ bad records? ──▶ KILLING (mark dead, one record at a time)
 *             ▼
 *           MARKING_SENT (durable before the request: a crash from here on
 *             │            leaves the batch SENT = ambiguous, INV-4/INV-5)
 *             ▼
 *           SENDING ──200──▶ MARKING_DONE (delivered) ──▶ freed
 *             │ 429/5xx/net ──▶ MARKING_FAILED ──▶ WAITING ──▶ MARKING_SENT
 *             │ ambiguous ──▶ WAITING (safety delay) ──▶ QUERYING
 *             │     count > 0: MARKING_DONE (at once)
 *             │     0, asked before the window passed: WAITING ──▶ QUERYING
 *             │     0, asked after it: MARKING_SENT (resend)
 *             │ permanent ──▶ SPLITTING (two children) or KILLING (1 record)
 *             │ 401 ──▶ TOKEN (wait for a new token) ──▶ MARKING_SENT
 *             └ config ──▶ MARKING_FAILED ──▶ WAITING (route paused)
 *
 * The window (forwarder.ambiguous_window_ms, at least request timeout +
 * server timeout) is how long after a send ADX may still commit that
 * request: ADX does not stop because the client hung up, and kadx bounds
 * the request's life on the server with the `servertimeout` property. An
 * answer "absent" proves the batch will never arrive only for a query
 * issued after the window; before it, kadx asks again (INV-5).
 *
 * A batch handed back by the journal in state SENT (left by a previous
 * process) starts as ambiguous, its window counted from the journal's
 * last_sent_ms; FAILED waits for its next_try_ms. The body
 * is built again from the journal's members for each batch object and kept
 * (compressed) across retries, so a resend carries the same id and rows.
 *
 * Routes: a batch is cut when the settled watermark moved and linger_ms
 * passed, at once when the previous cut was full (a backlog), and by an
 * idle poll once a second (picks up requeued / replayed batches). A route
 * paused by a config error keeps its batches and retries them at
 * retry_max_ms; the first 200 resumes it.
 *
 * Owns: the struct adx (HTTP), the struct auth (tokens), the per-route and
 * per-batch timers, the batches in flight. Loop thread only; the body
 * builder runs on libuv's thread pool and touches only its own batch.
 *
 * This file holds the batch state machine above: a batch's life, the
 * journal's completions, the outcomes, sending, building and cutting. The
 * rest, by concern (forwarder_internal.h holds what they share):
 * forwarder_query.c resolves ambiguous sends (the dedupe query and the
 * check of its assumptions), forwarder_queued.c dispatches to queued
 * ingestion, forwarder_body.c checks records and builds request bodies,
 * forwarder_retire.c retires delivered events (INV-8), forwarder_stats.c
 * answers for /status, /metrics and /readyz, and forwarder_life.c creates,
 * starts, stops, frees and reconfigures the forwarder and pauses and
 * resumes routes.
 */
#include "gateway/forwarder.h"
#include "base/clock.h"
#include "base/utf8.h"
#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/forwarder_internal.h"
#include "gateway/log.h"
#include "gateway/phases.h"
#include "gateway/registry.h"
#include "gateway/srbody.h"
#include "storage/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FW_SLOW_MIN_MS 1000
/* managed: how long a route stays queued after ADX said streaming is off */
#define FW_STREAMING_OFF_MS (5 * 60 * 1000)

static const char *const fb_state_names[] = {
    "building",       "killing", "marking-sent", "sending",   "marking-done",
    "marking-failed", "waiting", "querying",     "splitting", "token",
};

static void fb_send(struct fbatch *b);
static void fb_build(struct fbatch *b);
static void fb_reload(struct fbatch *b);
static void fb_mark_done(struct fbatch *b);

/* ------------------------------------------------------------- helpers */

static uint64_t fw_rand(struct forwarder *fw)
{
    fw->rng ^= fw->rng >> 12;
    fw->rng ^= fw->rng << 25;
    fw->rng ^= fw->rng >> 27;
    return fw->rng * 2685821657736338717ULL;
}

void fb_set_state(struct fbatch *b, enum fb_state s)
{
    if (b->state != s) {
        log_debug("forwarder", "%s: %s -> %s", b->jb->id,
                  fb_state_names[b->state], fb_state_names[s]);
    }
    b->state = s;
}

/* Copies src into dst[cap], cut if needed, always NUL-terminated. */
void fw_route_set_state(struct route *rt, enum forwarder_route_state s,
                        const char *reason)
{
    if (rt->state == s) {
        if (reason != NULL) {
            utf8_copy(rt->reason, sizeof(rt->reason), reason);
        }
        return;
    }
    if (s == FORWARDER_RUNNING) {
        log_info("forwarder", "route '%s' resumed (was %s)", rt->cfg->name,
                 forwarder_route_state_name(rt->state));
        rt->reason[0] = '\0';
    } else {
        utf8_copy(rt->reason, sizeof(rt->reason), reason ? reason : "");
        log_warn("forwarder", "route '%s' %s: %s", rt->cfg->name,
                 forwarder_route_state_name(s), rt->reason);
    }
    rt->state = s;
}

/* --------------------------------------------------------- batch life */

static struct fbatch *fb_new(struct route *rt, struct journal_batch *jb)
{
    struct fbatch *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    b->rt = rt;
    b->jb = jb;
    b->state = FB_BUILDING;
    b->backoff_ms = rt->fw->cfg->forwarder.retry_initial_ms;
    if (uv_timer_init(rt->fw->loop, &b->timer) < 0) {
        free(b);
        return NULL;
    }
    b->timer.data = b;
    b->timer_open = 1;
    rt->fw->open_handles++;
    b->next = rt->batches;
    if (rt->batches != NULL) {
        rt->batches->prev = b;
    }
    rt->batches = b;
    rt->nbatches++;
    return b;
}

static void fb_release_body(struct fbatch *b)
{
    free(b->raw);
    b->raw = NULL;
    free(b->gz);
    b->gz = NULL;
    free(b->bad);
    b->bad = NULL;
    b->nbad = 0;
    free(b->sr);
    b->sr = NULL;
    b->nsr = 0;
}

static void fb_mem_free(struct fbatch *b)
{
    fb_release_body(b);
    if (b->token_used != NULL) {
        explicit_bzero(b->token_used, strlen(b->token_used));
        free(b->token_used);
    }
    journal_batch_free(b->jb);
    free(b);
}

static void on_fb_timer_closed(uv_handle_t *h)
{
    struct fbatch *b = h->data;
    struct forwarder *fw = b->rt->fw;

    fw->open_handles--;
    fb_mem_free(b);
    if (fw->freed && fw->open_handles == 0) {
        free(fw->routes);
        free(fw);
    }
}

/* Unlinks b from its route and frees it (timer closed first). */
void fb_drop(struct fbatch *b)
{
    struct route *rt = b->rt;

    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        rt->batches = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
    rt->nbatches--;
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, on_fb_timer_closed);
}

/* Done with b for good (delivered, dead, split, or dropped at stop). */
void fb_finish(struct fbatch *b)
{
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;

    fb_drop(b);
    if (fw->stopping) {
        fw_check_stopped(fw);
        return;
    }
    fw_route_maybe_cut(rt);
}

int64_t fw_backoff_next(struct fbatch *b, int64_t retry_after_ms)
{
    struct forwarder *fw = b->rt->fw;
    const struct config_forwarder *fc = &fw->cfg->forwarder;
    int64_t step = b->backoff_ms > 0 ? b->backoff_ms : 1;
    int64_t delay;

    /* "equal jitter": between half and all of the step */
    delay = step / 2 + (int64_t)(fw_rand(fw) % (uint64_t)(step / 2 + 1));
    b->backoff_ms = step * 2 > fc->retry_max_ms ? fc->retry_max_ms : step * 2;
    if (retry_after_ms >= 0) {
        /* honour Retry-After, capped like the backoff */
        delay = retry_after_ms > fc->retry_max_ms ? fc->retry_max_ms
                                                  : retry_after_ms;
        if (delay < step / 2) {
            delay = step / 2;
        }
    }
    return delay;
}

static int64_t slow_retry_ms(struct forwarder *fw)
{
    int64_t ms = fw->cfg->forwarder.retry_max_ms;

    return ms < FW_SLOW_MIN_MS ? FW_SLOW_MIN_MS : ms;
}

void fw_on_fb_timer(uv_timer_t *t)
{
    struct fbatch *b = t->data;
    struct route *rt = b->rt;

    if (b->state != FB_WAITING || rt->fw->stopping) {
        return;
    }
    if (rt->state == FORWARDER_PAUSED_OPERATOR) {
        return; /* forwarder_resume restarts it */
    }
    switch (b->then) {
    case FB_NEXT_QUERY:
        fb_query(b);
        break;
    case FB_NEXT_BUILD:
        fb_build(b);
        break;
    case FB_NEXT_RELOAD:
        fb_reload(b);
        break;
    case FB_NEXT_DONE:
        fb_mark_done(b);
        break;
    default:
        fb_mark_sent(b);
        break;
    }
}

void fb_wait(struct fbatch *b, int64_t delay_ms, enum fb_next then)
{
    fb_set_state(b, FB_WAITING);
    b->then = then;
    uv_timer_start(&b->timer, fw_on_fb_timer,
                   (uint64_t)(delay_ms > 0 ? delay_ms : 0), 0);
}

/* ---- journal completions */

static void on_marked_done(void *arg, int status, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;

    phase_end(PHASE_MARK_DONE, &b->ph_us);
    if (status < 0) {
        /* delivered at ADX (a 200) but not recorded: never send it again
         * from this process, only retry the mark; if the process dies
         * first, the batch is SENT in the journal: ambiguous at the next
         * start, resolved by the dedupe query (INV-5) */
        log_error("forwarder", "%s: cannot record delivery: %s", b->jb->id,
                  err);
        snprintf(b->last_error, sizeof(b->last_error), "journal: %s", err);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_DONE);
        return;
    }
    fb_finish(b);
}

void fb_delivered(struct fbatch *b, double latency_ms)
{
    struct route *rt = b->rt;

    forwarder_latency_observe(&rt->st,
                              (double)(wall_ms() - b->cut_ms) / 1000.0);

    rt->st.batches_delivered++;
    rt->st.events_delivered += (uint64_t)b->jb->count;
    rt->st.bytes_delivered += b->raw_len;
    rt->st.last_delivered_ms = wall_ms();
    if (latency_ms >= 0) {
        rt->st.last_latency_ms = latency_ms;
    }
    if (rt->state == FORWARDER_PAUSED_CONFIG ||
        rt->state == FORWARDER_PAUSED_RETRIES) {
        fw_route_set_state(rt, FORWARDER_RUNNING, NULL);
        /* the others waiting on the slow probe may go now */
        for (struct fbatch *o = rt->batches; o != NULL; o = o->next) {
            if (o != b && o->state == FB_WAITING) {
                uv_timer_start(&o->timer, fw_on_fb_timer, 0, 0);
            }
        }
    }
    fb_mark_done(b);
}

/* INV-5: marked delivered only after the definite yes */
static void fb_mark_done(struct fbatch *b)
{
    int rc;

    fb_set_state(b, FB_MARKING_DONE);
    b->ph_us = phase_now_us();
    rc = journal_batch_mark_delivered_async(b->rt->fw->journal, b->jb->id,
                                            wall_ms(), on_marked_done, b);
    if (rc < 0) {
        on_marked_done(b, rc, "journal refused the request");
    }
}

static void on_marked_failed(void *arg, int status, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;
    int64_t delay = b->delay_ms;

    if (status < 0) {
        log_warn("forwarder", "%s: cannot record the failure: %s", b->jb->id,
                 err);
    }
    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    fb_wait(b, delay, b->ambiguous ? FB_NEXT_QUERY : FB_NEXT_SEND);
}

/* Records a definite non-delivery (not applied) and schedules a retry. */
static void fb_failed(struct fbatch *b, int64_t delay_ms)
{
    struct route *rt = b->rt;
    int rc;

    fb_set_state(b, FB_MARKING_FAILED);
    b->delay_ms = delay_ms;
    rc = journal_batch_mark_failed_async(rt->fw->journal, b->jb->id,
                                         wall_ms() + delay_ms, b->last_error,
                                         on_marked_failed, b);
    if (rc < 0) {
        on_marked_failed(b, rc, "journal refused the request");
    }
}

/* ---- outcomes */

void fb_retry_transient(struct fbatch *b, int64_t retry_after_ms)
{
    struct route *rt = b->rt;
    const struct config_forwarder *fc = &rt->fw->cfg->forwarder;
    int64_t now = wall_ms();
    int64_t delay;

    if (b->first_fail_ms == 0) {
        b->first_fail_ms = now;
    }
    delay = fw_backoff_next(b, retry_after_ms);
    if (fc->retry_max_time_ms > 0 &&
        now - b->first_fail_ms > fc->retry_max_time_ms &&
        rt->state == FORWARDER_RUNNING) {
        char why[300];

        snprintf(why, sizeof(why), "retries for %llds without success: %.200s",
                 (long long)((now - b->first_fail_ms) / 1000), b->last_error);
        fw_route_set_state(rt, FORWARDER_PAUSED_RETRIES, why);
    }
    if (rt->state != FORWARDER_RUNNING && delay < slow_retry_ms(rt->fw)) {
        delay = slow_retry_ms(rt->fw);
    }
    fb_failed(b, delay);
}

static void on_split(void *arg, int status, struct journal_batch *first,
                     struct journal_batch *second, const char *err);
static void fb_kill_next(struct fbatch *b);

static void fb_permanent(struct fbatch *b, const char *reason)
{
    struct route *rt = b->rt;
    int rc;

    rt->st.permanent++;
    if (rt->fw->cfg->forwarder.on_error == CONFIG_ON_ERROR_PAUSE) {
        char why[300];

        snprintf(why, sizeof(why), "permanent error on batch %s: %.200s",
                 b->jb->id, reason);
        fw_route_set_state(rt, FORWARDER_PAUSED_ERROR, why);
        /* kept as it is until an operator resumes the route */
        fb_failed(b, slow_retry_ms(rt->fw));
        return;
    }
    if (b->jb->count <= 1) {
        /* INV-6: the bad record alone is dead-lettered, with ADX's error */
        free(b->bad);
        b->bad = calloc(1, sizeof(*b->bad));
        if (b->bad == NULL) {
            fb_failed(b, fw_backoff_next(b, -1));
            return;
        }
        b->nbad = 1;
        b->bad[0].index = 0;
        utf8_copy(b->bad[0].reason, sizeof(b->bad[0].reason), reason);
        b->kill_next = 0;
        fb_set_state(b, FB_KILLING);
        fb_kill_next(b);
        return;
    }
    /* INV-6: bisect so the good records still go through */
    fb_set_state(b, FB_SPLITTING);
    rt->st.splits++;
    rc = journal_batch_split_async(rt->fw->journal, b->jb->id, b->jb->count / 2,
                                   on_split, b);
    if (rc < 0) {
        on_split(b, rc, NULL, NULL, "journal refused the split");
    }
}

static void fb_start_built(struct fbatch *b);

static void on_split(void *arg, int status, struct journal_batch *first,
                     struct journal_batch *second, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;
    struct journal_batch *kids[2] = {first, second};

    if (status < 0) {
        log_error("forwarder", "%s: split failed: %s", b->jb->id, err);
        snprintf(b->last_error, sizeof(b->last_error), "split: %s", err);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_SEND);
        return;
    }
    log_info("forwarder", "%s: %s into %s (%lld) and %s (%lld)", b->jb->id,
             b->schema_split ? "two writer schemas, split"
                             : "permanent error, bisected",
             first->id, (long long)first->count, second->id,
             (long long)second->count);
    for (int i = 0; i < 2; i++) {
        struct fbatch *kid;

        if (rt->fw->stopping) {
            journal_batch_free(kids[i]); /* PENDING children: next start */
            continue;
        }
        kid = fb_new(rt, kids[i]);
        if (kid == NULL) {
            journal_batch_free(kids[i]);
            continue;
        }
        kid->cut_ms = b->cut_ms; /* latency counts from the parent's cut */
        rt->st.batches_cut++;
        fb_build(kid);
    }
    fb_finish(b);
}

static void on_killed(void *arg, int status, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;

    if (status < 0) {
        log_error("forwarder", "%s: dead-lettering failed: %s", b->jb->id, err);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        /* start over from the journal's view of the members: those
         * already dead are left out, the rest is checked again */
        fb_release_body(b);
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_RELOAD);
        return;
    }
    rt->st.dead_events++;
    b->kill_next++;
    fb_kill_next(b);
}

/* Dead-letters b->bad[kill_next..] one by one, then goes on. */
static void fb_kill_next(struct fbatch *b)
{
    struct route *rt = b->rt;
    int rc;

    if (b->kill_next < b->nbad) {
        const struct forwarder_bad *bad = &b->bad[b->kill_next];
        const struct journal_event *ev = &b->jb->events[bad->index];
        struct journal_offset ref = {ev->topic, ev->partition, ev->offset};

        log_warn("forwarder", "route '%s': dead-lettering %s[%d]@%lld: %s",
                 rt->cfg->name, ev->topic, (int)ev->partition,
                 (long long)ev->offset, bad->reason);
        rc =
            journal_batch_mark_dead_async(rt->fw->journal, b->jb->id, &ref, 1,
                                          bad->reason, wall_ms(), on_killed, b);
        if (rc < 0) {
            on_killed(b, rc, "journal refused the request");
        }
        return;
    }
    /* every bad record is dead now; what is left goes out */
    if ((size_t)b->jb->count <= b->nbad || b->raw_len == 0) {
        fb_finish(b); /* nothing left: the journal made the batch DEAD */
        return;
    }
    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    /* the members in memory must be the live ones (bisection picks by
     * index): load them again and rebuild; rare, so the cost is fine */
    fb_release_body(b);
    fb_reload(b);
}

/* Replaces b->jb by the journal's current view of the batch (live members
 * only) and builds the body again. */
static void fb_reload(struct fbatch *b)
{
    struct route *rt = b->rt;
    struct journal_batch *nb = NULL;
    char err[256];
    int rc;

    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    rc = journal_batch_load(rt->fw->journal, b->jb->id, &nb, err, sizeof(err));
    if (rc == -ENOENT || (rc == 0 && nb->count == 0) ||
        (rc == 0 && (nb->state == JOURNAL_BATCH_DEAD ||
                     nb->state == JOURNAL_BATCH_DELIVERED ||
                     nb->state == JOURNAL_BATCH_SPLIT))) {
        journal_batch_free(nb);
        fb_finish(b); /* nothing live is left in it */
        return;
    }
    if (rc < 0) {
        log_error("forwarder", "%s: cannot load: %s", b->jb->id, err);
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_RELOAD);
        return;
    }
    journal_batch_free(b->jb);
    b->jb = nb;
    fb_build(b);
}

/* Managed routes: does this streaming answer send the batch to queued
 * ingestion (as Microsoft's managed streaming clients do)? 1 = too large,
 * 2 = streaming is off for the table or the cluster, 0 = no. */
static int managed_fallback(const struct adx_response *res, const char *why)
{
    if (res->status == 413 || strstr(why, "InputStreamTooLarge") != NULL ||
        strstr(why, "PayloadTooLarge") != NULL) {
        return 1;
    }
    if (strstr(why, "StreamingIngestionPolicyNotEnabled") != NULL ||
        strstr(why, "StreamingIngestionDisabled") != NULL ||
        (res->status == 404 && strstr(why, "EntityNotFound") == NULL)) {
        return 2;
    }
    return 0;
}

static void on_ingest(void *arg, const struct adx_response *res)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;
    char reason[400];
    enum adx_outcome o = adx_classify(res, reason, sizeof(reason));
    int fall;

    phase_end(PHASE_INGEST, &b->ph_us);
    if (rt->cfg->ingestion == CONFIG_INGEST_MANAGED && o != ADX_OK &&
        !rt->fw->stopping && (fall = managed_fallback(res, reason)) > 0) {
        /* a definite no: nothing was applied, queued takes the batch */
        b->use_queued = 1;
        rt->st.managed_fallbacks++;
        if (fall == 2) {
            rt->streaming_off_mono = mono_ms() + FW_STREAMING_OFF_MS;
        }
        log_info("forwarder", "%s: %s: queued ingestion instead", b->jb->id,
                 reason);
        fb_mark_sent(b);
        return;
    }
    fb_outcome(b, o, reason, res->retry_after_ms);
}

/* The outcome of one attempt, streaming or queued. */
void fb_outcome(struct fbatch *b, enum adx_outcome o, const char *reason,
                int64_t retry_after_ms)
{
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;

    if (o == ADX_AMBIGUOUS && fb_uses_queued(b)) {
        /* a resend carries the same ingest-by tag: not ambiguous */
        o = ADX_TRANSIENT;
    }
    if (o != ADX_OK) {
        snprintf(b->last_error, sizeof(b->last_error), "%s", reason);
    }
    if (fw->stopping && fw->stop_cancelled && o != ADX_OK) {
        fb_finish(b); /* cancelled at stop: SENT stays in the journal */
        return;
    }
    if (o != ADX_AUTH) {
        b->auth_retry = 0;
    }
    switch (o) {
    case ADX_OK: {
        double lat = -1;

        if (b->jb->nevents > 0) {
            lat = (double)(wall_ms() - b->jb->events[0].timestamp_ms);
        }
        b->first_fail_ms = 0;
        if (b->jb->nevents > 0) {
            log_debug("forwarder",
                      "%s: %lld events delivered: oldest produced %lld ms "
                      "before the cut, cut -> ack %lld ms",
                      b->jb->id, (long long)b->jb->count,
                      (long long)(b->cut_ms - b->jb->events[0].timestamp_ms),
                      (long long)(wall_ms() - b->cut_ms));
        }
        fb_delivered(b, lat);
        return;
    }
    case ADX_THROTTLED:
        rt->st.throttled++;
        fb_retry_transient(b, retry_after_ms);
        return;
    case ADX_TRANSIENT:
        rt->st.transient++;
        fb_retry_transient(b, retry_after_ms);
        return;
    case ADX_AMBIGUOUS:
        if (fw->stopping) {
            fb_finish(b); /* stays SENT: resolved at the next start */
            return;
        }
        fb_ambiguous(b);
        return;
    case ADX_PERMANENT:
        log_warn("forwarder", "%s (%lld events): permanent error: %s",
                 b->jb->id, (long long)b->jb->count, reason);
        if (fw->stopping) {
            fb_failed(b, 0);
            return;
        }
        fb_permanent(b, reason);
        return;
    case ADX_AUTH:
        rt->st.auth_errors++;
        if (!b->auth_retry && auth_invalidate(fw->auth, b->token_used) == 0) {
            b->auth_retry = 1;
            fb_set_state(b, FB_TOKEN);
            if (fw->stopping) {
                fb_failed(b, 0);
            }
            return; /* the auth listener sends it again */
        }
        /* fall through: 401 after a refresh is a config error */
        /* FALLTHROUGH */
    case ADX_CONFIG:
    default:
        rt->st.config_errors++;
        if (rt->state == FORWARDER_RUNNING) {
            char why[480];

            snprintf(why, sizeof(why), "ADX refused table '%s.%s': %s",
                     rt->cfg->database, rt->cfg->table, reason);
            fw_route_set_state(rt, FORWARDER_PAUSED_CONFIG, why);
        }
        fb_failed(b, slow_retry_ms(fw));
        return;
    }
}

/* The token provider has a new token: send what waited for it. */
void fw_on_token(void *arg)
{
    struct forwarder *fw = arg;

    for (size_t i = 0; i < fw->nroutes; i++) {
        if (fw->routes[i].eo.wanted) {
            eo_check(&fw->routes[i]);
        }
        for (struct fbatch *b = fw->routes[i].batches; b != NULL; b = b->next) {
            if (b->state == FB_TOKEN) {
                /* marked again: the journal's last_sent_ms must date the
                 * request that goes out now (the ambiguous window after a
                 * restart counts from it) */
                fb_mark_sent(b);
            }
        }
    }
}

static void fb_send(struct fbatch *b)
{
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;
    const struct config_route *rc = rt->cfg;
    struct adx_ingest in;
    const char *token;
    char err[256];

    if (fw->stopping) {
        fb_finish(b);
        return;
    }
    if (!auth_ready(fw->auth)) {
        fb_set_state(b, FB_TOKEN); /* fw_on_token sends it */
        return;
    }
    token = auth_token(fw->auth);
    if (b->token_used != NULL) {
        explicit_bzero(b->token_used, strlen(b->token_used));
        free(b->token_used);
        b->token_used = NULL;
    }
    if (token != NULL) {
        b->token_used = strdup(token);
    }
    if (fb_uses_queued(b)) {
        fb_send_queued(b, token);
        return;
    }
    memset(&in, 0, sizeof(in));
    in.cluster = fw->cfg->adx.ingest_url;
    in.database = rc->database;
    in.table = rc->table;
    in.format = rc->format;
    in.mapping = rc->mapping;
    in.token = token;
    in.batch_id = b->jb->id;
    in.attempt = b->jb->attempts;
    in.body = b->gz;
    in.body_len = b->gz_len;
    in.gzipped = 1;
    in.timeout_ms = (long)fw->cfg->adx.request_timeout_ms;
    in.server_timeout_ms = fw->cfg->adx.server_timeout_ms;
    fb_set_state(b, FB_SENDING);
    b->sent_mono = mono_ms();
    b->ph_us = phase_now_us();
    rt->st.requests++;
    rt->st.bytes_sent += b->gz_len;
    if (adx_ingest(fw->adx, &in, on_ingest, b, err, sizeof(err)) < 0) {
        /* not sent at all: a definite no */
        snprintf(b->last_error, sizeof(b->last_error), "%s", err);
        rt->st.transient++;
        fb_retry_transient(b, -1);
    }
}

static void on_marked_sent(void *arg, int status, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;

    phase_end(PHASE_MARK_SENT, &b->ph_us);
    if (status < 0) {
        snprintf(b->last_error, sizeof(b->last_error), "journal: %s", err);
        log_error("forwarder", "%s: cannot mark sent: %s", b->jb->id, err);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_SEND);
        return;
    }
    b->jb->attempts++;
    b->jb->last_sent_ms = wall_ms();
    if (b->jb->first_sent_ms == 0) {
        b->jb->first_sent_ms = b->jb->last_sent_ms;
    }
    fb_send(b);
}

/* INV-4/INV-5: the batch is SENT in the journal before its request. */
void fb_mark_sent(struct fbatch *b)
{
    struct route *rt = b->rt;
    int rc;

    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    if (rt->state == FORWARDER_PAUSED_OPERATOR) {
        fb_wait(b, slow_retry_ms(rt->fw), FB_NEXT_SEND);
        return;
    }
    if (b->ambiguous) {
        fb_query(b); /* never resend an ambiguous batch unresolved */
        return;
    }
    if (!auth_ready(rt->fw->auth)) {
        fb_set_state(b, FB_TOKEN); /* fw_on_token marks and sends it */
        return;
    }
    fb_set_state(b, FB_MARKING_SENT);
    b->ph_us = phase_now_us();
    rc = journal_batch_mark_sent_async(rt->fw->journal, b->jb->id, wall_ms(),
                                       on_marked_sent, b);
    if (rc < 0) {
        on_marked_sent(b, rc, "journal refused the request");
    }
}

/* The body is built and the bad records (if any) are dead: start sending
 * according to what the journal says happened before. */
static void fb_start_built(struct fbatch *b)
{
    struct journal_batch *jb = b->jb;

    if (jb->state == JOURNAL_BATCH_FAILED && jb->next_try_ms > wall_ms() &&
        !b->restarted) {
        /* a transient failure before a restart: keep its backoff */
        b->restarted = 1;
        fb_wait(b, jb->next_try_ms - wall_ms(), FB_NEXT_SEND);
        return;
    }
    b->restarted = 1;
    fb_mark_sent(b); /* asks ADX first when the batch is ambiguous */
}

/* ---- building on the thread pool */

static void build_work(uv_work_t *w)
{
    struct fbatch *b = w->data;
    struct journal_batch *jb = b->jb;
    int rc;

    if (srbody_route_uses_registry(b->rt->cfg)) {
        rc = srbody_build(b->rt->cfg, jb->id, jb->events, jb->nevents, b->sr,
                          b->nsr, &b->raw, &b->raw_len, &b->bad, &b->nbad,
                          &b->split_at);
    } else {
        rc = forwarder_build_body(b->rt->cfg, jb->id, jb->events, jb->nevents,
                                  &b->raw, &b->raw_len, &b->bad, &b->nbad);
    }
    if (rc == 0 && b->raw_len > 0) {
        rc = adx_gzip(b->raw, b->raw_len, b->rt->fw->gzip_level, &b->gz,
                      &b->gz_len);
    }
    b->build_rc = rc;
    /* the uncompressed text is not needed any more: keep only its size */
    free(b->raw);
    b->raw = NULL;
}

static void build_done(uv_work_t *w, int status)
{
    struct fbatch *b = w->data;
    struct route *rt = b->rt;
    int rc;

    phase_end(PHASE_BUILD, &b->ph_us);
    if (status < 0 || b->build_rc < 0) {
        log_error("forwarder", "%s: cannot build the body: %s", b->jb->id,
                  strerror(-(status < 0 ? status : b->build_rc)));
        fb_release_body(b);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_BUILD);
        return;
    }
    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    if (b->split_at > 0) {
        /* format avro: one writer schema per request */
        fb_release_body(b);
        fb_set_state(b, FB_SPLITTING);
        rt->st.splits++;
        b->schema_split = 1;
        rc = journal_batch_split_async(rt->fw->journal, b->jb->id,
                                       (int64_t)b->split_at, on_split, b);
        b->split_at = 0;
        if (rc < 0) {
            on_split(b, rc, NULL, NULL, "journal refused the split");
        }
        return;
    }
    if (b->nbad > 0) {
        /* INV-6: the bad records go to the dead letters, with the reason,
         * before the rest is sent */
        rt->st.invalid_records += b->nbad;
        b->kill_next = 0;
        fb_set_state(b, FB_KILLING);
        fb_kill_next(b);
        return;
    }
    if (b->raw_len == 0) {
        /* an empty batch (every member dead before): nothing to send */
        fb_finish(b);
        return;
    }
    fb_start_built(b);
}

static void fb_build_queue(struct fbatch *b);

/* The registry answered for every id of the batch, or could not. */
static void on_schemas(void *arg, int status, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;

    if (status == -ECANCELED || rt->fw->freed) {
        return; /* forwarder_free drops the batch */
    }
    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    if (status < 0) {
        /* nothing is lost: the batch waits, the route is not ready */
        if (rt->registry_down[0] == '\0') {
            log_warn("forwarder", "route '%s': sending paused: %s",
                     rt->cfg->name, err);
        }
        snprintf(rt->registry_down, sizeof(rt->registry_down), "%s",
                 err[0] ? err : "schema registry unavailable");
        snprintf(b->last_error, sizeof(b->last_error), "%s", rt->registry_down);
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_BUILD);
        return;
    }
    fb_build_queue(b);
}

static void fb_build(struct fbatch *b)
{
    struct route *rt = b->rt;
    int32_t *ids = NULL;
    size_t nids = 0;
    int rc;

    fb_set_state(b, FB_BUILDING);
    b->ph_us = phase_now_us();
    if (!srbody_route_uses_registry(rt->cfg)) {
        fb_build_queue(b);
        return;
    }
    rc = srbody_ids(rt->cfg, b->jb->events, b->jb->nevents, &ids, &nids);
    if (rc == 0) {
        rc = registry_fetch(rt->fw->registry, &rt->cfg->registry, ids, nids,
                            on_schemas, b);
    }
    free(ids);
    if (rc == 0) {
        return; /* on_schemas goes on */
    }
    if (rc < 0) {
        on_schemas(b, -EAGAIN, registry_last_error(rt->fw->registry));
        return;
    }
    fb_build_queue(b);
}

/* Resolves the batch's schema ids (registry routes) and builds on the pool */
static void fb_build_queue(struct fbatch *b)
{
    struct route *rt = b->rt;
    int rc;

    if (srbody_route_uses_registry(rt->cfg)) {
        int32_t *ids = NULL;
        size_t nids = 0;

        if (rt->registry_down[0] != '\0') {
            log_info("forwarder",
                     "route '%s': the schema registry answers "
                     "again, sending resumed",
                     rt->cfg->name);
            rt->registry_down[0] = '\0';
        }
        free(b->sr);
        b->sr = NULL;
        b->nsr = 0;
        if (srbody_ids(rt->cfg, b->jb->events, b->jb->nevents, &ids, &nids) <
                0 ||
            (b->sr = calloc(nids ? nids : 1, sizeof(*b->sr))) == NULL) {
            free(ids);
            fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_BUILD);
            return;
        }
        for (size_t i = 0; i < nids; i++) {
            b->sr[i].id = ids[i];
            b->sr[i].e =
                registry_get(rt->fw->registry, &rt->cfg->registry, ids[i]);
        }
        b->nsr = nids;
        free(ids);
    }
    fb_set_state(b, FB_BUILDING);
    b->work.data = b;
    rc = uv_queue_work(b->rt->fw->loop, &b->work, build_work, build_done);
    if (rc < 0) {
        build_work(&b->work);
        build_done(&b->work, 0);
    }
}

/* ------------------------------------------------------------- cutting */

static int batch_is_full(const struct route *rt, const struct journal_batch *b)
{
    const struct config_forwarder *fc = &rt->fw->cfg->forwarder;

    return b->count >= fc->batch_max_rows ||
           b->bytes >= fc->batch_max_bytes - fc->batch_max_bytes / 8;
}

static void on_cut(void *arg, int status, struct journal_batch *jb,
                   const char *err)
{
    struct route *rt = arg;
    struct forwarder *fw = rt->fw;
    struct fbatch *b;

    rt->cutting = 0;
    if (jb != NULL) {
        phase_end(PHASE_CUT, &rt->cut_ph_us);
    }
    rt->cut_ph_us = 0;
    if (status < 0) {
        log_error("forwarder", "route '%s': cannot cut a batch: %s",
                  rt->cfg->name, err);
        rt->backlog = 0;
        if (fw->stopping) {
            fw_check_stopped(fw);
        }
        return; /* the idle poll tries again */
    }
    if (jb == NULL) {
        rt->backlog = 0;
        rt->started = 1;
        if (fw->stopping) {
            fw_check_stopped(fw);
            return;
        }
        /* a kick that came while cutting: wait the linger, not the idle
         * poll */
        fw_route_maybe_cut(rt);
        return;
    }
    if (fw->stopping) {
        /* claimed but not sent: PENDING (or older state) in the journal,
         * handed out again at the next start */
        journal_batch_free(jb);
        fw_check_stopped(fw);
        return;
    }
    rt->st.batches_cut++;
    /* more may wait: a full batch, or one left by an earlier run */
    rt->backlog = !rt->started || batch_is_full(rt, jb) ||
                  jb->state != JOURNAL_BATCH_PENDING || jb->attempts > 0 ||
                  (jb->flags & (JOURNAL_BATCH_REPLAY | JOURNAL_BATCH_REQUEUE |
                                JOURNAL_BATCH_CHILD));
    b = fb_new(rt, jb);
    if (b == NULL) {
        log_error("forwarder", "route '%s': out of memory", rt->cfg->name);
        journal_batch_free(jb);
        return;
    }
    b->cut_ms = wall_ms();
    if (jb->state == JOURNAL_BATCH_SENT) {
        /* INV-5: sent by a previous process, outcome unknown */
        rt->st.ambiguous++;
        snprintf(b->last_error, sizeof(b->last_error),
                 "sent before a restart, outcome unknown");
        if (rt->cfg->ingestion == CONFIG_INGEST_QUEUED) {
            /* posted again with the same ingest-by tag: ADX skips it if an
             * earlier attempt landed (no dedupe query, no duplicate) */
            log_info("forwarder",
                     "%s: found sent before a restart (attempt %d): posting "
                     "again with its ingest-by tag",
                     jb->id, jb->attempts);
        } else if (rt->cfg->dedupe_column != NULL) {
            int64_t win = fw->cfg->forwarder.ambiguous_window_ms;
            int64_t left =
                jb->last_sent_ms > 0 ? jb->last_sent_ms + win - wall_ms() : win;

            /* the window counts from the journal's send time; a wall
             * clock that stepped back cannot stretch it past a whole
             * window from now */
            if (left > win) {
                left = win;
            }
            b->ambiguous = 1; /* fb_mark_sent asks ADX first */
            b->amb_deadline = mono_ms() + (left > 0 ? left : 0);
            log_info("forwarder",
                     "%s: found sent before a restart (attempt %d, %llds "
                     "ago): asking ADX",
                     jb->id, jb->attempts,
                     (long long)((wall_ms() - jb->last_sent_ms) / 1000));
        } else {
            rt->st.possible_duplicates++;
            log_warn("forwarder",
                     "%s: found sent before a restart and the route has no "
                     "dedupe column: resending, possible duplicate",
                     jb->id);
        }
    }
    fb_build(b);
    fw_route_maybe_cut(rt);
}

static void route_cut(struct route *rt)
{
    struct forwarder *fw = rt->fw;
    const struct config_forwarder *fc = &fw->cfg->forwarder;
    struct journal_cut_req req;
    int rc;

    memset(&req, 0, sizeof(req));
    req.route = rt->idx;
    req.max_rows = fc->batch_max_rows;
    req.max_bytes = fc->batch_max_bytes;
    if (fw->settled.everything) {
        req.settled_all = 1;
    } else if (fw->settled.all != NULL) {
        req.settled = fw->settled.all(fw->settled.arg, &req.nsettled);
    }
    rt->kicked = 0;
    rt->kick_at = 0;
    rt->cutting = 1;
    phase_end(PHASE_LINGER, &rt->kick_ph_us);
    rt->cut_ph_us = phase_now_us();
    rc = journal_batch_cut_async(fw->journal, &req, on_cut, rt);
    if (rc < 0) {
        rt->cutting = 0;
        log_error("forwarder", "route '%s': cannot cut a batch: %s",
                  rt->cfg->name, strerror(-rc));
    }
}

static void on_linger(uv_timer_t *t)
{
    struct route *rt = t->data;

    rt->linger_armed = 0;
    if (rt->kicked) {
        rt->backlog = 1; /* linger passed: cut what there is */
    }
    fw_route_maybe_cut(rt);
}

void fw_route_maybe_cut(struct route *rt)
{
    struct forwarder *fw = rt->fw;

    if (!fw->started || fw->stopping || rt->cutting ||
        rt->state != FORWARDER_RUNNING ||
        rt->nbatches >= fw->cfg->forwarder.max_inflight) {
        return;
    }
    if (!rt->started || rt->backlog) {
        route_cut(rt);
        return;
    }
    if (rt->kicked && !rt->linger_armed) {
        /* the linger counts from the first settled kick since the last
         * cut, not from now: kicks that came while a cut ran or while
         * max_inflight batches were out have waited already */
        uint64_t linger = (uint64_t)fw->cfg->forwarder.linger_ms;
        uint64_t waited = rt->kick_at ? uv_now(fw->loop) - rt->kick_at : 0;

        if (waited >= linger) {
            rt->backlog = 1; /* linger passed: cut what there is */
            route_cut(rt);
            return;
        }
        rt->linger_armed = 1;
        uv_timer_start(&rt->linger, on_linger, linger - waited, 0);
    }
}

void fw_on_idle(uv_timer_t *t)
{
    struct forwarder *fw = t->data;

    for (size_t i = 0; i < fw->nroutes; i++) {
        struct route *rt = &fw->routes[i];

        /* nothing in flight: look for requeued / replayed batches and
         * settled events a missed kick left behind */
        if (rt->nbatches == 0 && !rt->cutting && !rt->linger_armed) {
            rt->backlog = 1;
            fw_route_maybe_cut(rt);
        }
    }
}

void forwarder_kick(struct forwarder *fw)
{
    if (fw == NULL || fw->stopping) {
        return;
    }
    for (size_t i = 0; i < fw->nroutes; i++) {
        if (fw->routes[i].kick_ph_us == 0) {
            fw->routes[i].kick_ph_us = phase_now_us();
        }
        if (fw->routes[i].kick_at == 0) {
            fw->routes[i].kick_at = uv_now(fw->loop);
        }
        fw->routes[i].kicked = 1;
        fw_route_maybe_cut(&fw->routes[i]);
    }
}
