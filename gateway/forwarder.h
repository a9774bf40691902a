/*
 * forwarder.h - the sending half of `kadx run`: per route, cut batches from
 * settled journal events, persist them, send them to ADX streaming ingest
 * and record the outcome, exactly once (DESIGN.md invariants 3 to 6).
 *
 * Per route: batches are cut when enough settled events wait (max rows /
 * bytes) or after linger_ms; up to max_inflight batches are in flight; each
 * batch is persisted (journal_batch_cut, INV-4), its body built on a worker
 * thread (records checked: a record that is not valid JSON for a json
 * format is dead-lettered with the reason before sending; optional Kafka
 * metadata fields injected), marked sent (durable) and POSTed gzip'd. The
 * outcome decides: 200 -> delivered; 429/5xx/network -> backoff with
 * jitter (Retry-After honoured); 401 -> token refreshed once; permanent ->
 * the batch is bisected until only the bad records remain, which are
 * dead-lettered (INV-6); config error -> the route pauses, retries slowly
 * and resumes by itself; ambiguous (or a batch found SENT after a restart)
 * -> with a dedupe column, ADX is asked whether the batch id is there before
 * any resend (INV-5), without one it is resent and counted as a possible
 * duplicate.
 *
 * Threading: loop thread only, except forwarder_build_body() (any thread).
 */
#ifndef KADX_FORWARDER_H
#define KADX_FORWARDER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;
struct config_route;
struct journal;
struct journal_event;
struct journal_offset;
struct adx;
struct auth;
struct forwarder;

/*
 * Where the settled watermarks come from (INV-3). all() returns per
 * (topic, partition) the highest settled offset, borrowed until the loop
 * runs again (intake_settled_all fits). everything = 1 treats every
 * journaled event as settled (recovery tool, tests without Kafka).
 */
struct forwarder_settled_source {
    const struct journal_offset *(*all)(void *arg, size_t *n);
    void *arg;
    int everything;
};

struct forwarder_options {
    const struct config *cfg; /* borrowed; must outlive the forwarder */
    struct journal *journal;  /* borrowed; must outlive the forwarder */
    struct forwarder_settled_source settled;
    const char *ca_file; /* extra CA bundle for https (tests); NULL */
    int gzip_level;      /* 1..9; 0 = 1 */
    int no_eo_check;     /* 1: skip the exactly-once assumptions check
                            (unit tests whose scripted ADX answers only
                            ingest and query; see forwarder_query.c, eo_check) */
};

/*
 * Creates the forwarder (HTTP client, token provider, one state per
 * route); nothing is sent before forwarder_start. Returns 0 and *out, or
 * -errno with err filled.
 */
int forwarder_new(uv_loop_t *loop, const struct forwarder_options *o,
                  struct forwarder **out, char *err, size_t errlen);

/* Starts fetching tokens and cutting batches (unfinished batches of a
 * previous run first). Returns 0 or -errno. */
int forwarder_start(struct forwarder *fw, char *err, size_t errlen);

/*
 * Something to send may exist: a settled watermark moved (wire it to
 * intake_on_settled), or batches were requeued / replayed (admin). Cheap;
 * batches are cut on the forwarder's own schedule (linger).
 */
void forwarder_kick(struct forwarder *fw);

typedef void (*forwarder_stopped_cb)(void *arg);

/*
 * Graceful stop (SIGTERM): no new batch is cut or sent; requests in flight
 * get up to timeout_ms to answer and have their outcome recorded; then the
 * rest is cancelled (those batches stay SENT in the journal: ambiguous at
 * the next start, INV-5). cb runs once, later, on the loop thread.
 */
void forwarder_stop(struct forwarder *fw, int64_t timeout_ms,
                    forwarder_stopped_cb cb, void *arg);

/* Frees a stopped forwarder (or one never started); run the loop after to
 * let handles close. NULL-safe. */
void forwarder_free(struct forwarder *fw);

/* Operator pause/resume of a route (admin POST /pause, /resume); route -1 =
 * all. 0 or -EINVAL. */
int forwarder_pause(struct forwarder *fw, int route);

/*
 * SIGHUP reload (gateway/reload.c): from now on the forwarder reads cfg
 * (borrowed; it must outlive the forwarder), which has the same routes, in
 * the same order, as the config it runs with. ADX URLs, auth, proxy,
 * forwarder.*, journal.retention_ms and the routes' ADX settings (database,
 * table, format, mapping, meta, dedupe_column) apply to what is sent next;
 * a batch in flight finishes with what it was sent with. A changed auth (or
 * ingest URL) gets a new token provider. Returns 0, or -errno with err set
 * and nothing changed. Loop thread.
 */
int forwarder_reconfigure(struct forwarder *fw, const struct config *cfg,
                          char *err, size_t errlen);
int forwarder_resume(struct forwarder *fw, int route);

/*
 * Batch latency histogram: from the cut (this process got the batch from
 * the journal) to ADX's definite yes, retries and backoff included.
 * Upper bounds in seconds; a last, implied +Inf bucket catches the rest.
 */
#define FORWARDER_LATENCY_BUCKETS 14
extern const double forwarder_latency_bounds[FORWARDER_LATENCY_BUCKETS];

enum forwarder_route_state {
    FORWARDER_RUNNING = 0,
    FORWARDER_PAUSED_CONFIG,   /* config error at ADX: retrying slowly */
    FORWARDER_PAUSED_RETRIES,  /* retry_max_time_ms exceeded: slowly too */
    FORWARDER_PAUSED_OPERATOR, /* forwarder_pause */
    FORWARDER_PAUSED_ERROR,    /* on_error = pause and a permanent error */
};

const char *forwarder_route_state_name(enum forwarder_route_state s);

struct forwarder_route_stats {
    const char *name; /* borrowed from the config */
    enum forwarder_route_state state;
    char reason[256];           /* why paused / last error, "" = none */
    int inflight;               /* batches this process holds */
    int waiting;                /* of them, waiting for a timer (retry
                                   backoff, or a route paused by the
                                   operator): none on the wire */
    uint64_t batches_cut;       /* handed out by the journal */
    uint64_t batches_delivered; /* HTTP 200 recorded */
    uint64_t events_delivered;
    uint64_t bytes_delivered; /* record bytes (uncompressed body) */
    uint64_t bytes_sent;      /* compressed request bytes, all attempts */
    uint64_t requests;        /* ingest requests made */
    uint64_t transient;       /* 5xx / network / 408 */
    uint64_t throttled;       /* 429 */
    uint64_t ambiguous;       /* timeouts/resets after send + SENT at start */
    uint64_t dedupe_queries;
    uint64_t dedupe_found;        /* ambiguous batches found in ADX */
    uint64_t dedupe_absent_early; /* "absent" while the original request
                                     could still commit: asked again */
    uint64_t possible_duplicates; /* resends without a dedupe column */
    uint64_t permanent;           /* permanent answers */
    uint64_t splits;              /* bisections */
    uint64_t dead_events;         /* events dead-lettered (INV-6) */
    uint64_t invalid_records;     /* of which: failed local validation */
    uint64_t config_errors;
    uint64_t auth_errors; /* 401 */
    /* queued ingestion (QUEUED.md) */
    const char *ingestion;         /* "streaming", "queued", "managed" */
    int awaiting_report;           /* posted, no status report yet */
    int64_t oldest_report_wait_ms; /* the oldest of those, 0 = none */
    uint64_t queued_posts;         /* queued attempts started */
    uint64_t queued_skipped;       /* Skipped reports: already in ADX */
    uint64_t managed_fallbacks;    /* managed: streaming -> queued */
    int64_t last_delivered_ms;     /* wall clock, 0 = never */
    /* produce (Kafka timestamp) -> ADX acknowledgement, last delivery */
    double last_latency_ms;
    /* batch latency (see forwarder_latency_bounds): per-bucket counts,
     * not cumulative; [FORWARDER_LATENCY_BUCKETS] is the +Inf bucket */
    uint64_t latency_hist[FORWARDER_LATENCY_BUCKETS + 1];
    uint64_t latency_count;
    double latency_sum_s;
};

/* Counts one delivered batch (latency in seconds) into st's histogram. */
void forwarder_latency_observe(struct forwarder_route_stats *st, double s);

size_t forwarder_nroutes(const struct forwarder *fw);
int forwarder_route_stats(const struct forwarder *fw, int route,
                          struct forwarder_route_stats *out);

/*
 * 1 when every route is running and a token is available (for /readyz);
 * else 0 and a one-line reason in why.
 */
int forwarder_ready(const struct forwarder *fw, char *why, size_t whylen);

/*
 * NULL, or why route's exactly-once check cannot be trusted (its table's
 * IngestionTime policy is off, or the dedupe column is missing or not a
 * string: checked with management commands at start and on the route's
 * first ambiguous failure). Valid until the next loop iteration.
 */
const char *forwarder_route_exactly_once_error(const struct forwarder *fw,
                                               int route);

/* The forwarder's ADX client and token provider, lent to other ADX calls
 * on the loop (gateway/reconcile.c). Borrowed: NULL once the forwarder is
 * stopping; a reload may replace the token provider, so read them again at
 * each use rather than keeping them. */
struct adx *forwarder_adx(const struct forwarder *fw);
struct auth *forwarder_auth(const struct forwarder *fw);

/* Token expiry (wall ms, 0 = none or static) and last token error. */
int64_t forwarder_token_expires_ms(const struct forwarder *fw);
const char *forwarder_token_error(const struct forwarder *fw);

/* Retention under disk pressure (journal_space_pressure): delivered
 * events retired before journal.retention_ms to make room. */
struct forwarder_retention {
    int64_t retention_ms;     /* journal.retention_ms */
    int64_t min_retention_ms; /* journal.min_retention_ms */
    int pressure;             /* under space pressure at the last check */
    int64_t early_events;     /* delivered events retired early, total */
    int64_t last_early_ms;    /* wall ms of the last one, 0 = never */
};
void forwarder_retention(const struct forwarder *fw,
                         struct forwarder_retention *out);

/* Batches held in memory over all routes (0 when idle). */
size_t forwarder_inflight(const struct forwarder *fw);

/* ------------------------------------------------ body building (pure) */

/* A record rejected by the local check, with its reason. */
struct forwarder_bad {
    size_t index; /* into the events array */
    char reason[160];
};

/*
 * Builds the request body for events[0..n) of route r: one record per
 * line. For json/multijson every record must be valid JSON (raw newlines
 * between tokens become spaces, so one record stays one line); with
 * metadata fields configured it must be an object, and the fields are
 * inserted at its start. Rejected records are left out and listed in
 * *bad (owned: free(); *nbad entries). batch_id is used for meta.batch_id.
 * *body (owned: free()) and *len receive the text. Any thread.
 * Returns 0 or -ENOMEM.
 */
int forwarder_build_body(const struct config_route *r, const char *batch_id,
                         const struct journal_event *events, size_t n,
                         char **body, size_t *len, struct forwarder_bad **bad,
                         size_t *nbad);

/* Validates one JSON text (RFC 8259; depth capped at 256). 0 if valid,
 * else -EINVAL with a short reason ("unexpected 'x' at byte N"). */
int forwarder_json_check(const char *s, size_t len, char *why, size_t whylen);

#endif
