/*
 * forwarder_internal.h - what the forwarder's files share, private to
 * gateway/forwarder*.c (nothing else includes it): the batch (struct
 * fbatch) and its states, the route, the forwarder itself, and the steps
 * one file hands a batch or a route to in another.
 *
 * The forwarder is split by concern: forwarder.c holds the batch state
 * machine (its diagram is there), sending, building and cutting;
 * forwarder_query.c resolves ambiguous sends (the dedupe query and the
 * check of its assumptions); forwarder_queued.c dispatches to queued
 * ingestion; forwarder_body.c checks records and builds request bodies
 * (it needs only forwarder.h); forwarder_retire.c retires delivered
 * events; forwarder_stats.c answers for /status, /metrics and /readyz;
 * forwarder_life.c creates, starts, stops, frees and reconfigures the
 * forwarder and pauses and resumes routes. Loop thread only, except the
 * body builder (libuv's thread pool, its own batch only).
 */
#ifndef KADX_FORWARDER_INTERNAL_H
#define KADX_FORWARDER_INTERNAL_H

#include "gateway/adx.h"
#include "gateway/forwarder.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct journal_batch;
struct queued;
struct queued_op;
struct registry;
struct srbody_schema;

#define FW_ERR_MAX        512
#define FW_RETIRE_IDLE_MS 5000 /* retention check when nothing was due */

enum fb_state {
    FB_BUILDING = 0,
    FB_KILLING,
    FB_MARKING_SENT,
    FB_SENDING,
    FB_MARKING_DONE,
    FB_MARKING_FAILED,
    FB_WAITING,
    FB_QUERYING,
    FB_SPLITTING,
    FB_TOKEN,
};

/* What a WAITING batch does when its timer fires. */
enum fb_next {
    FB_NEXT_SEND = 0,
    FB_NEXT_QUERY,
    FB_NEXT_BUILD,
    FB_NEXT_RELOAD,
    FB_NEXT_DONE, /* record a delivery whose first mark failed */
};

struct route;

struct fbatch {
    struct route *rt;
    struct journal_batch *jb; /* owned */
    enum fb_state state;
    enum fb_next then;
    int64_t ph_us; /* phases.h: start of the step in progress */
    uv_work_t work;
    uv_timer_t timer;
    int timer_open;
    int detached; /* dropped by stop: free when the handle closes */
    /* body (built on the worker) */
    char *raw;
    size_t raw_len;
    void *gz;
    size_t gz_len;
    struct forwarder_bad *bad;
    size_t nbad;
    size_t kill_next;
    int build_rc;
    /* retry state */
    int ambiguous;        /* must be resolved before any resend (INV-5) */
    int amb_told;         /* "still running?" logged for this ambiguity */
    int64_t sent_mono;    /* mono_ms() when the last request went out */
    int64_t amb_deadline; /* mono_ms() after which it cannot commit */
    int64_t query_mono;   /* mono_ms() when the dedupe query went out */
    int restarted;        /* the journal's earlier state was looked at */
    int auth_retry;       /* a 401 already led to a token refresh */
    int64_t backoff_ms;   /* next backoff step */
    int64_t first_fail_ms;
    int64_t cut_ms;   /* wall clock when this process got the batch */
    int64_t delay_ms; /* MARKING_FAILED: the wait that follows */
    char *token_used; /* the token sent with the request in flight */
    char last_error[FW_ERR_MAX];
    /* Schema Registry routes (srbody.h): ids resolved for the build */
    struct srbody_schema *sr;
    size_t nsr;
    size_t split_at;  /* format avro: records of two schemas, split here */
    int schema_split; /* the running split is split_at's, not a bisection */
    /* queued ingestion (queued.h, QUEUED.md): the attempt in flight; a
     * managed route's batch that fell back to queued */
    struct queued_op *qop;
    int use_queued;
    struct fbatch *prev, *next;
};

/*
 * Exactly once rests on the dedupe query `T | where ingestion_time() >
 * ago(..) | where Col == 'id' | count` (INV-5). It finds nothing, and the
 * batch is sent again, when the table's IngestionTime policy is off
 * (ingestion_time() is null) or the column is missing or not a string. So
 * for a route with a dedupe column kadx asks ADX (two management commands,
 * `.show table T policy ingestiontime` and `.show table T cslschema`) at
 * start and again on the route's first ambiguous failure. A definite "no"
 * makes the route say so (/readyz red, an error in the log) and resolve
 * ambiguous sends as a route without a dedupe column does: resend and
 * count a possible duplicate. A check that cannot run (network, 5xx,
 * permissions) changes nothing and is logged.
 */
enum eo_state { EO_UNKNOWN = 0, EO_OK, EO_BROKEN };

struct eo_check {
    enum eo_state state;
    int wanted;    /* a check waits for a token */
    int inflight;  /* management commands not answered yet */
    int rechecked; /* the first ambiguous failure re-ran it */
    int policy;    /* -1 unknown, 0 off, 1 on (this round) */
    int column;    /* -1 unknown, 0 missing/not string, 1 string */
    char coltype[64];
    char reason[256]; /* EO_BROKEN: why */
};

struct route {
    struct forwarder *fw;
    int idx;
    const struct config_route *cfg;
    struct fbatch *batches;
    int nbatches;
    int cutting;
    int backlog; /* the last cut was full, or more old batches may wait */
    int kicked;  /* the watermark moved since the last cut */
    int started; /* the first cut ran (old batches come first) */
    uv_timer_t linger;
    int linger_armed;
    int64_t kick_ph_us; /* phases.h: first kick waiting for a cut */
    uint64_t kick_at;   /* uv_now of that kick: the linger counts from it */
    int64_t cut_ph_us;  /* phases.h: cut requested */
    enum forwarder_route_state state;
    char reason[256];
    struct forwarder_route_stats st;
    struct eo_check eo;         /* the dedupe query's assumptions (eo_*) */
    int64_t streaming_off_mono; /* managed: ADX said streaming is off for
                                   the table, queued until then */
    char registry_down[200];    /* "" = the schema registry answers */
};

struct forwarder {
    uv_loop_t *loop;
    const struct config *cfg;
    struct journal *journal;
    struct forwarder_settled_source settled;
    int gzip_level;
    int no_eo_check; /* forwarder_options.no_eo_check */
    struct adx *adx;
    struct auth *auth;
    struct registry *registry; /* schema registry client (registry.h) */
    struct queued *queued;     /* queued ingestion (queued.h) */
    struct route *routes;
    size_t nroutes;
    uv_timer_t idle;
    uv_timer_t stop_timer;
    uv_timer_t retire_timer; /* INV-8: delivered events past retention */
    int retiring;            /* a journal_retire_async is running */
    int retire_failed;       /* logged once until it works again */
    int retire_early;        /* the running retire is for space pressure */
    int space_pressure;      /* journal_space_pressure at the last check */
    int space_limited;       /* the disk set the effective cap, last check */
    int space_full;          /* enum journal_full at the last check */
    int pressure_seen;       /* pressure was logged once (then: debug) */
    int64_t early_events;    /* delivered events retired early, total */
    int64_t last_early_ms;   /* wall ms of the last early retirement */
    int open_handles;
    int started;
    int stopping;
    int stop_cancelled; /* the stop timeout fired: adx closed */
    int freed;
    forwarder_stopped_cb stop_cb;
    void *stop_arg;
    uint64_t rng;
};

/* forwarder.c: the batch state machine */
void fb_set_state(struct fbatch *b, enum fb_state s);
void fw_route_set_state(struct route *rt, enum forwarder_route_state s,
                        const char *reason);
/* Unlinks b from its route and frees it (timer closed first). */
void fb_drop(struct fbatch *b);
/* Done with b for good (delivered, dead, split, or dropped at stop). */
void fb_finish(struct fbatch *b);
int64_t fw_backoff_next(struct fbatch *b, int64_t retry_after_ms);
void fw_on_fb_timer(uv_timer_t *t);
void fb_wait(struct fbatch *b, int64_t delay_ms, enum fb_next then);
void fb_delivered(struct fbatch *b, double latency_ms);
void fb_retry_transient(struct fbatch *b, int64_t retry_after_ms);
/* The outcome of one attempt, streaming or queued. */
void fb_outcome(struct fbatch *b, enum adx_outcome o, const char *reason,
                int64_t retry_after_ms);
/* The token provider has a new token: send what waited for it. */
void fw_on_token(void *arg);
/* INV-4/INV-5: the batch is SENT in the journal before its request. */
void fb_mark_sent(struct fbatch *b);
void fw_route_maybe_cut(struct route *rt);
void fw_on_idle(uv_timer_t *t);

/* forwarder_query.c: ambiguous sends (INV-5) */
/* INV-5: is batch b already in ADX? */
void fb_query(struct fbatch *b);
void fb_ambiguous(struct fbatch *b);
/* Asks ADX for the route's IngestionTime policy and schema (see struct
 * eo_check). No-op without a dedupe column or while asking. */
void eo_check(struct route *rt);

/* forwarder_queued.c: queued ingestion */
/* Does b go through queued ingestion (this attempt)? */
int fb_uses_queued(const struct fbatch *b);
void fb_send_queued(struct fbatch *b, const char *token);

/* forwarder_retire.c: retention (INV-8) */
void fw_on_retire_timer(uv_timer_t *t);

/* forwarder_life.c: the stop */
void fw_check_stopped(struct forwarder *fw);

#endif
