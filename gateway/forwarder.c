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
 */
#include "gateway/forwarder.h"
#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/log.h"
#include "gateway/registry.h"
#include "gateway/srbody.h"
#include "storage/journal.h"
#include "storage/util.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define FW_IDLE_POLL_MS       1000
#define FW_JSON_MAX_DEPTH     256
#define FW_ERR_MAX            512
#define FW_SLOW_MIN_MS        1000
#define FW_RETIRE_IDLE_MS     5000 /* retention check when nothing was due */
#define FW_RETIRE_BUSY_MS     10   /* ... while a backlog is being deleted */
#define FW_RETIRE_PRESSURE_MS 250  /* ... while the disk is short of space */
#define FW_RETIRE_CHUNKS      64   /* chunks per retention transaction */

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

static const char *const fb_state_names[] = {
    "building",       "killing", "marking-sent", "sending",   "marking-done",
    "marking-failed", "waiting", "querying",     "splitting", "token",
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
    enum forwarder_route_state state;
    char reason[256];
    struct forwarder_route_stats st;
    struct eo_check eo;      /* the dedupe query's assumptions (eo_*) */
    char registry_down[200]; /* "" = the schema registry answers */
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

static void route_maybe_cut(struct route *rt);
static void fb_send(struct fbatch *b);
static void fb_mark_sent(struct fbatch *b);
static void fb_query(struct fbatch *b);
static void eo_check(struct route *rt);
static void fb_finish(struct fbatch *b);
static void fb_build(struct fbatch *b);
static void fb_reload(struct fbatch *b);
static void fb_mark_done(struct fbatch *b);
static void fw_check_stopped(struct forwarder *fw);
static void on_stop_done(uv_timer_t *t);

/* ------------------------------------------------------------- helpers */

static int64_t wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Monotonic ms for the ambiguous window: read fresh (not the loop's cached
 * time), so a send is never dated earlier, nor a query later, than it was. */
static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

static uint64_t fw_rand(struct forwarder *fw)
{
    fw->rng ^= fw->rng >> 12;
    fw->rng ^= fw->rng << 25;
    fw->rng ^= fw->rng >> 27;
    return fw->rng * 2685821657736338717ULL;
}

const char *forwarder_route_state_name(enum forwarder_route_state s)
{
    static const char *const names[] = {"running", "paused-config",
                                        "paused-retries", "paused-operator",
                                        "paused-error"};

    if ((unsigned)s < sizeof(names) / sizeof(names[0])) {
        return names[s];
    }
    return "?";
}

static void fb_set_state(struct fbatch *b, enum fb_state s)
{
    if (b->state != s) {
        log_debug("forwarder", "%s: %s -> %s", b->jb->id,
                  fb_state_names[b->state], fb_state_names[s]);
    }
    b->state = s;
}

/* Copies src into dst[cap], cut if needed, always NUL-terminated. */
static void route_set_state(struct route *rt, enum forwarder_route_state s,
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

/* ------------------------------------------------------ JSON checking */

struct jscan {
    const unsigned char *s;
    size_t n;
    size_t i;
    int depth;
    const char *what;
};

static void js_ws(struct jscan *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' ||
                           j->s[j->i] == '\n' || j->s[j->i] == '\r')) {
        j->i++;
    }
}

static int js_value(struct jscan *j);

static int js_string(struct jscan *j)
{
    j->i++; /* opening quote */
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];

        if (c == '"') {
            j->i++;
            return 0;
        }
        if (c < 0x20) {
            j->what = "control character in string";
            return -1;
        }
        if (c >= 0x80) {
            /* RFC 8259: UTF-8. ADX ignores malformed json records without
             * an error, so one must be dead-lettered here, not sent */
            size_t n = utf8_len_n(j->s + j->i, j->n - j->i);

            if (n == 0) {
                j->what = "invalid UTF-8 in string";
                return -1;
            }
            j->i += n;
            continue;
        }
        if (c == '\\') {
            j->i++;
            if (j->i >= j->n) {
                break;
            }
            c = j->s[j->i];
            if (c == 'u') {
                for (int k = 1; k <= 4; k++) {
                    unsigned char h =
                        j->i + (size_t)k < j->n ? j->s[j->i + (size_t)k] : 0;

                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F'))) {
                        j->what = "bad \\u escape";
                        return -1;
                    }
                }
                j->i += 5;
                continue;
            }
            if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
                j->what = "bad escape";
                return -1;
            }
        }
        j->i++;
    }
    j->what = "unterminated string";
    return -1;
}

static int js_digits(struct jscan *j)
{
    size_t start = j->i;

    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') {
        j->i++;
    }
    return j->i > start ? 0 : -1;
}

static int js_number(struct jscan *j)
{
    if (j->s[j->i] == '-') {
        j->i++;
    }
    if (j->i < j->n && j->s[j->i] == '0') {
        j->i++;
    } else if (js_digits(j) < 0) {
        j->what = "bad number";
        return -1;
    }
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (js_digits(j) < 0) {
            j->what = "bad number";
            return -1;
        }
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) {
            j->i++;
        }
        if (js_digits(j) < 0) {
            j->what = "bad number";
            return -1;
        }
    }
    return 0;
}

static int js_literal(struct jscan *j, const char *lit)
{
    size_t n = strlen(lit);

    if (j->n - j->i < n || memcmp(j->s + j->i, lit, n) != 0) {
        j->what = "unexpected character";
        return -1;
    }
    j->i += n;
    return 0;
}

static int js_container(struct jscan *j, int object)
{
    unsigned char close = object ? '}' : ']';

    if (++j->depth > FW_JSON_MAX_DEPTH) {
        j->what = "nested too deep";
        return -1;
    }
    j->i++;
    js_ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        j->depth--;
        return 0;
    }
    for (;;) {
        if (object) {
            js_ws(j);
            if (j->i >= j->n || j->s[j->i] != '"') {
                j->what = "expected a member name";
                return -1;
            }
            if (js_string(j) < 0) {
                return -1;
            }
            js_ws(j);
            if (j->i >= j->n || j->s[j->i] != ':') {
                j->what = "expected ':'";
                return -1;
            }
            j->i++;
        }
        if (js_value(j) < 0) {
            return -1;
        }
        js_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return 0;
        }
        j->what = object ? "expected ',' or '}'" : "expected ',' or ']'";
        return -1;
    }
}

static int js_value(struct jscan *j)
{
    js_ws(j);
    if (j->i >= j->n) {
        j->what = "unexpected end";
        return -1;
    }
    switch (j->s[j->i]) {
    case '{':
        return js_container(j, 1);
    case '[':
        return js_container(j, 0);
    case '"':
        return js_string(j);
    case 't':
        return js_literal(j, "true");
    case 'f':
        return js_literal(j, "false");
    case 'n':
        return js_literal(j, "null");
    default:
        if (j->s[j->i] == '-' || (j->s[j->i] >= '0' && j->s[j->i] <= '9')) {
            return js_number(j);
        }
        j->what = "unexpected character";
        return -1;
    }
}

int forwarder_json_check(const char *s, size_t len, char *why, size_t whylen)
{
    struct jscan j = {(const unsigned char *)s, len, 0, 0, NULL};

    if (js_value(&j) == 0) {
        js_ws(&j);
        if (j.i == j.n) {
            return 0;
        }
        j.what = "trailing data";
    }
    set_err(why, whylen, "%s at byte %zu", j.what ? j.what : "invalid", j.i);
    return -EINVAL;
}

/* ------------------------------------------------------- body building */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
    char *np;
    size_t ncap;

    if (b->oom || b->len + more + 1 <= b->cap) {
        return;
    }
    ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + more + 1) {
        ncap *= 2;
    }
    np = realloc(b->p, ncap);
    if (np == NULL) {
        b->oom = 1;
        return;
    }
    b->p = np;
    b->cap = ncap;
}

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
    sb_reserve(b, n);
    if (b->oom) {
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    sb_reserve(b, (size_t)n);
    if (b->oom) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends bytes as a JSON string: escapes quotes, backslashes and control
 * characters; bytes that are not valid UTF-8 become \u00XX (Latin-1). */
static void sb_json_str(struct sbuf *b, const void *data, size_t n)
{
    const unsigned char *s = data;
    size_t i = 0;

    sb_add(b, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        size_t seq = 0;

        if (c < 0x80) {
            if (c == '"' || c == '\\') {
                char esc[2] = {'\\', (char)c};

                sb_add(b, esc, 2);
            } else if (c < 0x20 || c == 0x7f) {
                sb_printf(b, "\\u%04x", c);
            } else {
                sb_add(b, &s[i], 1);
            }
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            seq = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            seq = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            seq = 4;
        }
        if (seq > 0 && i + seq <= n) {
            size_t k;

            for (k = 1; k < seq; k++) {
                if ((s[i + k] & 0xc0) != 0x80) {
                    break;
                }
            }
            if (k == seq) {
                sb_add(b, &s[i], seq);
                i += seq;
                continue;
            }
        }
        sb_printf(b, "\\u%04x", c);
        i++;
    }
    sb_add(b, "\"", 1);
}

static void sb_field(struct sbuf *b, int *first, const char *name)
{
    if (!*first) {
        sb_add(b, ",", 1);
    }
    *first = 0;
    sb_json_str(b, name, strlen(name));
    sb_add(b, ":", 1);
}

static void sb_iso_ms(struct sbuf *b, int64_t ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    char buf[40];

    gmtime_r(&secs, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    sb_printf(b, "\"%s.%03dZ\"", buf, frac);
}

/* Kafka headers as intake stores them (intake.h: u16 BE name length, name,
 * u32 BE value length or 0xffffffff for null, value) as a JSON object. */
static void sb_headers(struct sbuf *b, const unsigned char *h, size_t len)
{
    size_t pos = 0;
    int first = 1;

    sb_add(b, "{", 1);
    while (pos + 2 <= len) {
        size_t nl = (size_t)h[pos] << 8 | h[pos + 1];
        uint32_t vl;

        pos += 2;
        if (pos + nl + 4 > len) {
            break;
        }
        if (!first) {
            sb_add(b, ",", 1);
        }
        first = 0;
        sb_json_str(b, h + pos, nl);
        sb_add(b, ":", 1);
        pos += nl;
        vl = (uint32_t)h[pos] << 24 | (uint32_t)h[pos + 1] << 16 |
             (uint32_t)h[pos + 2] << 8 | h[pos + 3];
        pos += 4;
        if (vl == 0xffffffffu) {
            sb_add(b, "null", 4);
            continue;
        }
        if (pos + vl > len) {
            sb_add(b, "null", 4);
            break;
        }
        sb_json_str(b, h + pos, vl);
        pos += vl;
    }
    sb_add(b, "}", 1);
}

static int route_is_json(const struct config_route *r)
{
    return strcmp(r->format, "json") == 0 ||
           strcmp(r->format, "multijson") == 0;
}

static int route_has_meta(const struct config_route *r)
{
    const struct config_meta *m = &r->meta;

    return m->topic || m->partition || m->offset || m->timestamp || m->key ||
           m->headers || m->batch_id;
}

/* The metadata members for one event, without braces. */
static void sb_meta(struct sbuf *b, const struct config_route *r,
                    const char *batch_id, const struct journal_event *ev)
{
    const struct config_meta *m = &r->meta;
    int first = 1;

    if (m->topic) {
        sb_field(b, &first, m->topic);
        sb_json_str(b, ev->topic, strlen(ev->topic));
    }
    if (m->partition) {
        sb_field(b, &first, m->partition);
        sb_printf(b, "%d", (int)ev->partition);
    }
    if (m->offset) {
        sb_field(b, &first, m->offset);
        sb_printf(b, "%lld", (long long)ev->offset);
    }
    if (m->timestamp) {
        sb_field(b, &first, m->timestamp);
        sb_iso_ms(b, ev->timestamp_ms);
    }
    if (m->key) {
        sb_field(b, &first, m->key);
        if (ev->key == NULL) {
            sb_add(b, "null", 4);
        } else {
            sb_json_str(b, ev->key, ev->key_len);
        }
    }
    if (m->headers) {
        sb_field(b, &first, m->headers);
        sb_headers(b, ev->headers, ev->headers_len);
    }
    if (m->batch_id) {
        sb_field(b, &first, m->batch_id);
        sb_json_str(b, batch_id, strlen(batch_id));
    }
}

/* Copies a valid JSON text turning CR/LF (whitespace, since raw newlines
 * are invalid inside strings) into spaces: one record stays one line. */
static void sb_json_oneline(struct sbuf *b, const char *s, size_t n)
{
    size_t start = b->len;

    sb_add(b, s, n);
    if (b->oom) {
        return;
    }
    for (size_t i = start; i < b->len; i++) {
        if (b->p[i] == '\n' || b->p[i] == '\r') {
            b->p[i] = ' ';
        }
    }
}

int forwarder_build_body(const struct config_route *r, const char *batch_id,
                         const struct journal_event *events, size_t n,
                         char **body, size_t *len, struct forwarder_bad **bad,
                         size_t *nbad)
{
    struct sbuf b = {NULL, 0, 0, 0};
    struct forwarder_bad *bl = NULL;
    size_t nb = 0, capb = 0;
    int json = route_is_json(r);
    int meta = json && route_has_meta(r);
    size_t total = 0;

    *body = NULL;
    *len = 0;
    *bad = NULL;
    *nbad = 0;
    for (size_t i = 0; i < n; i++) {
        total += events[i].value_len + 1;
    }
    sb_reserve(&b, total + (meta ? n * 160 : 0));
    for (size_t i = 0; i < n && !b.oom; i++) {
        const struct journal_event *ev = &events[i];
        const char *v = ev->value ? ev->value : "";
        size_t vl = ev->value_len;
        char why[128];

        if (json) {
            const char *reject = NULL;

            if (forwarder_json_check(v, vl, why, sizeof(why)) < 0) {
                reject = "record is not valid JSON";
            } else if (meta) {
                size_t k = 0;

                while (k < vl && (v[k] == ' ' || v[k] == '\t' || v[k] == '\n' ||
                                  v[k] == '\r')) {
                    k++;
                }
                if (k >= vl || v[k] != '{') {
                    reject = "record is not a JSON object (needed for the "
                             "route's metadata fields)";
                    why[0] = '\0';
                } else {
                    size_t rest = k + 1;

                    while (rest < vl && (v[rest] == ' ' || v[rest] == '\t' ||
                                         v[rest] == '\n' || v[rest] == '\r')) {
                        rest++;
                    }
                    sb_add(&b, "{", 1);
                    sb_meta(&b, r, batch_id, ev);
                    if (rest < vl && v[rest] != '}') {
                        sb_add(&b, ",", 1);
                    }
                    sb_json_oneline(&b, v + rest, vl - rest);
                    sb_add(&b, "\n", 1);
                    continue;
                }
            }
            if (reject != NULL) {
                if (nb == capb) {
                    size_t nc = capb ? capb * 2 : 4;
                    struct forwarder_bad *p = realloc(bl, nc * sizeof(*bl));

                    if (p == NULL) {
                        b.oom = 1;
                        break;
                    }
                    bl = p;
                    capb = nc;
                }
                bl[nb].index = i;
                snprintf(bl[nb].reason, sizeof(bl[nb].reason), "%s%s%s", reject,
                         why[0] ? ": " : "", why);
                nb++;
                continue;
            }
            sb_json_oneline(&b, v, vl);
            sb_add(&b, "\n", 1);
        } else {
            sb_add(&b, v, vl);
            if (vl == 0 || v[vl - 1] != '\n') {
                sb_add(&b, "\n", 1);
            }
        }
    }
    if (b.oom) {
        free(b.p);
        free(bl);
        return -ENOMEM;
    }
    if (b.p == NULL) {
        b.p = calloc(1, 1);
        if (b.p == NULL) {
            free(bl);
            return -ENOMEM;
        }
    }
    *body = b.p;
    *len = b.len;
    *bad = bl;
    *nbad = nb;
    return 0;
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
static void fb_drop(struct fbatch *b)
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
static void fb_finish(struct fbatch *b)
{
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;

    fb_drop(b);
    if (fw->stopping) {
        fw_check_stopped(fw);
        return;
    }
    route_maybe_cut(rt);
}

static int64_t backoff_next(struct fbatch *b, int64_t retry_after_ms)
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

static void on_fb_timer(uv_timer_t *t)
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

static void fb_wait(struct fbatch *b, int64_t delay_ms, enum fb_next then)
{
    fb_set_state(b, FB_WAITING);
    b->then = then;
    uv_timer_start(&b->timer, on_fb_timer,
                   (uint64_t)(delay_ms > 0 ? delay_ms : 0), 0);
}

/* ---- journal completions */

static void on_marked_done(void *arg, int status, const char *err)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;

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
        fb_wait(b, backoff_next(b, -1), FB_NEXT_DONE);
        return;
    }
    fb_finish(b);
}

const double forwarder_latency_bounds[FORWARDER_LATENCY_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

/* Counts one delivered batch into the latency histogram. */
void forwarder_latency_observe(struct forwarder_route_stats *st, double s)
{
    size_t i = 0;

    if (!(s >= 0)) {
        s = 0; /* a wall clock stepped back: the fastest bucket */
    }
    while (i < FORWARDER_LATENCY_BUCKETS && s > forwarder_latency_bounds[i]) {
        i++;
    }
    st->latency_hist[i]++;
    st->latency_count++;
    st->latency_sum_s += s;
}

static void fb_delivered(struct fbatch *b, double latency_ms)
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
        route_set_state(rt, FORWARDER_RUNNING, NULL);
        /* the others waiting on the slow probe may go now */
        for (struct fbatch *o = rt->batches; o != NULL; o = o->next) {
            if (o != b && o->state == FB_WAITING) {
                uv_timer_start(&o->timer, on_fb_timer, 0, 0);
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

static void fb_retry_transient(struct fbatch *b, int64_t retry_after_ms)
{
    struct route *rt = b->rt;
    const struct config_forwarder *fc = &rt->fw->cfg->forwarder;
    int64_t now = wall_ms();
    int64_t delay;

    if (b->first_fail_ms == 0) {
        b->first_fail_ms = now;
    }
    delay = backoff_next(b, retry_after_ms);
    if (fc->retry_max_time_ms > 0 &&
        now - b->first_fail_ms > fc->retry_max_time_ms &&
        rt->state == FORWARDER_RUNNING) {
        char why[300];

        snprintf(why, sizeof(why), "retries for %llds without success: %.200s",
                 (long long)((now - b->first_fail_ms) / 1000), b->last_error);
        route_set_state(rt, FORWARDER_PAUSED_RETRIES, why);
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
        route_set_state(rt, FORWARDER_PAUSED_ERROR, why);
        /* kept as it is until an operator resumes the route */
        fb_failed(b, slow_retry_ms(rt->fw));
        return;
    }
    if (b->jb->count <= 1) {
        /* INV-6: the bad record alone is dead-lettered, with ADX's error */
        free(b->bad);
        b->bad = calloc(1, sizeof(*b->bad));
        if (b->bad == NULL) {
            fb_failed(b, backoff_next(b, -1));
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
        fb_wait(b, backoff_next(b, -1), FB_NEXT_SEND);
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
        fb_wait(b, backoff_next(b, -1), FB_NEXT_RELOAD);
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
        fb_wait(b, backoff_next(b, -1), FB_NEXT_RELOAD);
        return;
    }
    journal_batch_free(b->jb);
    b->jb = nb;
    fb_build(b);
}

static void on_query(void *arg, const struct adx_response *res)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;
    int64_t count = -1;

    if (rt->fw->stopping && rt->fw->stop_cancelled) {
        fb_finish(b);
        return;
    }
    if (res->status == 200 &&
        adx_parse_count(res->body, res->body_len, &count) == 0) {
        if (count > 0) {
            rt->st.dedupe_found++;
            if (count != b->jb->count) {
                log_warn("forwarder",
                         "%s: dedupe query found %lld rows, the "
                         "batch has %lld",
                         b->jb->id, (long long)count, (long long)b->jb->count);
            }
            log_info("forwarder", "%s: ambiguous send resolved: delivered",
                     b->jb->id);
            b->ambiguous = 0;
            fb_delivered(b, -1);
            return;
        }
        if (b->query_mono < b->amb_deadline) {
            /* INV-5: the original request may still be running in ADX and
             * commit after this answer: ask again, resend only once a
             * query issued after the window says absent */
            int64_t left = b->amb_deadline - mono_ms();
            int64_t delay = backoff_next(b, -1);

            rt->st.dedupe_absent_early++;
            if (!b->amb_told) {
                b->amb_told = 1;
                log_info("forwarder",
                         "%s: not in ADX yet; the request may still commit "
                         "for %llds: asking again until then",
                         b->jb->id, (long long)((left + 999) / 1000));
            }
            if (rt->fw->stopping) {
                fb_finish(b); /* stays SENT: resolved at the next start */
                return;
            }
            if (delay > left) {
                delay = left > 1 ? left : 1;
            }
            fb_wait(b, delay, FB_NEXT_QUERY);
            return;
        }
        log_info("forwarder", "%s: ambiguous send resolved: absent, resending",
                 b->jb->id);
        b->ambiguous = 0;
        b->amb_told = 0;
        b->backoff_ms = rt->fw->cfg->forwarder.retry_initial_ms;
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_mark_sent(b);
        return;
    }
    {
        char why[300];

        adx_classify(res, why, sizeof(why));
        snprintf(b->last_error, sizeof(b->last_error), "dedupe query: %s", why);
        log_warn("forwarder", "%s: %s", b->jb->id, b->last_error);
    }
    if (rt->fw->stopping) {
        fb_finish(b);
        return;
    }
    if (res->status == 401) {
        auth_invalidate(rt->fw->auth, NULL);
    }
    fb_wait(b, backoff_next(b, res->retry_after_ms), FB_NEXT_QUERY);
}

/* KQL identifier: bare when simple, else ['...']. */
static void kql_ident(char *out, size_t cap, const char *name)
{
    int simple = (name[0] == '_' || (name[0] >= 'A' && name[0] <= 'Z') ||
                  (name[0] >= 'a' && name[0] <= 'z'));

    for (const char *p = name; *p && simple; p++) {
        simple = *p == '_' || (*p >= '0' && *p <= '9') ||
                 (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z');
    }
    if (simple) {
        snprintf(out, cap, "%s", name);
    } else {
        snprintf(out, cap, "['%s']", name);
    }
}

/* ------------------------------------------ exactly-once assumptions */

/* Both answers are in: decides the route's eo state and logs a change. */
static void eo_decide(struct route *rt)
{
    struct eo_check *e = &rt->eo;
    enum eo_state was = e->state;

    if (e->policy < 0 || e->column < 0) {
        return; /* a check failed: keep what was known */
    }
    if (e->policy == 0) {
        snprintf(e->reason, sizeof(e->reason),
                 "table '%s': the IngestionTime policy is off, so "
                 "ingestion_time() is null and the dedupe query cannot find "
                 "a batch; run '.alter table %s policy ingestiontime true'",
                 rt->cfg->table, rt->cfg->table);
    } else if (e->column == 0 && e->coltype[0] == '\0') {
        snprintf(e->reason, sizeof(e->reason),
                 "table '%s' has no dedupe column '%s'", rt->cfg->table,
                 rt->cfg->dedupe_column);
    } else if (e->column == 0) {
        snprintf(e->reason, sizeof(e->reason),
                 "dedupe column '%s' of table '%s' is %s, not string",
                 rt->cfg->dedupe_column, rt->cfg->table, e->coltype);
    }
    e->state = e->policy == 1 && e->column == 1 ? EO_OK : EO_BROKEN;
    if (e->state == EO_BROKEN && was != EO_BROKEN) {
        log_error("forwarder",
                  "route '%s' is not exactly once: %s (ambiguous sends are "
                  "resent and counted as possible duplicates)",
                  rt->cfg->name, e->reason);
    } else if (e->state == EO_OK && was != EO_OK) {
        e->reason[0] = '\0';
        log_info("forwarder",
                 "route '%s': exactly once verified (IngestionTime policy "
                 "on, dedupe column '%s' is a string)",
                 rt->cfg->name, rt->cfg->dedupe_column);
    }
}

/* The answer's error, for the log: status and ADX's reason. */
static void eo_failed(struct route *rt, const char *what,
                      const struct adx_response *res)
{
    char why[256] = "";

    adx_classify(res, why, sizeof(why));
    log_warn("forwarder",
             "route '%s': cannot check the exactly-once assumptions (%s): "
             "HTTP %ld %s",
             rt->cfg->name, what, res->status, why);
}

static void on_eo_policy(void *arg, const struct adx_response *res)
{
    struct route *rt = arg;
    char policy[512];
    cJSON *p, *en;

    rt->eo.inflight--;
    if (rt->fw->freed || rt->fw->stop_cancelled) {
        return;
    }
    if (res->status != 200 || adx_parse_cell(res->body, res->body_len, "Policy",
                                             policy, sizeof(policy)) < 0) {
        eo_failed(rt, "ingestiontime policy", res);
        return;
    }
    /* {"IsEnabled": true}; null = no policy: not known to be on */
    p = cJSON_Parse(policy);
    en = cJSON_IsObject(p) ? cJSON_GetObjectItemCaseSensitive(p, "IsEnabled")
                           : NULL;
    rt->eo.policy = cJSON_IsTrue(en) ? 1 : 0;
    cJSON_Delete(p);
    if (rt->eo.inflight == 0) {
        eo_decide(rt);
    }
}

static void on_eo_schema(void *arg, const struct adx_response *res)
{
    struct route *rt = arg;
    struct eo_check *e = &rt->eo;
    char schema[8192];
    const char *col = rt->cfg->dedupe_column;
    size_t cl = strlen(col);

    e->inflight--;
    if (rt->fw->freed || rt->fw->stop_cancelled) {
        return;
    }
    if (res->status != 200 || adx_parse_cell(res->body, res->body_len, "Schema",
                                             schema, sizeof(schema)) < 0) {
        eo_failed(rt, "cslschema", res);
        return;
    }
    /* "A:int,B:string,['c d']:string" */
    e->column = 0;
    e->coltype[0] = '\0';
    for (const char *p = schema; *p != '\0';) {
        const char *end = strchr(p, ',');
        const char *colon;
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *name = p;
        size_t nl;

        colon = memrchr(p, ':', n);
        if (colon != NULL) {
            nl = (size_t)(colon - p);
            if (nl > 4 && name[0] == '[' && name[1] == '\'' &&
                name[nl - 1] == ']' && name[nl - 2] == '\'') {
                name += 2;
                nl -= 4;
            }
            if (nl == cl && memcmp(name, col, cl) == 0) {
                size_t tl = n - (size_t)(colon + 1 - p);

                snprintf(e->coltype, sizeof(e->coltype), "%.*s", (int)tl,
                         colon + 1);
                e->column = strcmp(e->coltype, "string") == 0;
                break;
            }
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    if (e->inflight == 0) {
        eo_decide(rt);
    }
}

/* Asks ADX for the route's IngestionTime policy and schema (see eo_check
 * above struct route). No-op without a dedupe column or while asking. */
static void eo_check(struct route *rt)
{
    struct forwarder *fw = rt->fw;
    const struct config_route *rc = rt->cfg;
    char table[300], csl[400], err[256];

    if (rc->dedupe_column == NULL || rt->eo.inflight > 0 || fw->stopping ||
        fw->no_eo_check) {
        return;
    }
    if (!auth_ready(fw->auth)) {
        rt->eo.wanted = 1; /* on_token runs it */
        return;
    }
    rt->eo.wanted = 0;
    rt->eo.policy = -1;
    rt->eo.column = -1;
    kql_ident(table, sizeof(table), rc->table);
    snprintf(csl, sizeof(csl), ".show table %s policy ingestiontime", table);
    if (adx_mgmt(fw->adx, fw->cfg->adx.query_url, rc->database, csl,
                 auth_token(fw->auth), "eo-policy", on_eo_policy, rt, err,
                 sizeof(err)) == 0) {
        rt->eo.inflight++;
    } else {
        log_warn("forwarder", "route '%s': cannot check policy: %s", rc->name,
                 err);
    }
    snprintf(csl, sizeof(csl), ".show table %s cslschema", table);
    if (adx_mgmt(fw->adx, fw->cfg->adx.query_url, rc->database, csl,
                 auth_token(fw->auth), "eo-schema", on_eo_schema, rt, err,
                 sizeof(err)) == 0) {
        rt->eo.inflight++;
    } else {
        log_warn("forwarder", "route '%s': cannot check schema: %s", rc->name,
                 err);
    }
}

const char *forwarder_route_exactly_once_error(const struct forwarder *fw,
                                               int route)
{
    if (route < 0 || (size_t)route >= fw->nroutes ||
        fw->routes[route].eo.state != EO_BROKEN) {
        return NULL;
    }
    return fw->routes[route].eo.reason;
}

/* INV-5: is batch b already in ADX? */
static void fb_query(struct fbatch *b)
{
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;
    const struct config_route *rc = rt->cfg;
    char csl[1024];
    char table[300], col[300];
    char err[256];
    int64_t since =
        b->jb->first_sent_ms > 0 ? b->jb->first_sent_ms : b->jb->created_ms;
    int64_t minutes = (wall_ms() - since) / 60000 + 60;

    if (rc->dedupe_column == NULL) {
        b->ambiguous = 0; /* nothing to ask: resend (counted by caller) */
        fb_mark_sent(b);
        return;
    }
    if (rt->eo.state == EO_BROKEN) {
        /* the query cannot see the batch: do not pretend (issue 18) */
        rt->st.possible_duplicates++;
        log_warn("forwarder",
                 "%s: ambiguous send and the dedupe query cannot be trusted "
                 "(%s): resending, possible duplicate",
                 b->jb->id, rt->eo.reason);
        b->ambiguous = 0;
        fb_mark_sent(b);
        return;
    }
    if (!auth_ready(fw->auth) || rt->eo.inflight > 0) {
        fb_wait(b, 500, FB_NEXT_QUERY); /* a token; the check's answer */
        return;
    }
    /* batch ids are "<uuid>-<seq>": no quotes to escape */
    if (strpbrk(b->jb->id, "'\\\"") != NULL) {
        snprintf(b->last_error, sizeof(b->last_error),
                 "batch id cannot be queried");
        fb_mark_sent(b);
        return;
    }
    kql_ident(table, sizeof(table), rc->table);
    kql_ident(col, sizeof(col), rc->dedupe_column);
    snprintf(csl, sizeof(csl),
             "%s | where ingestion_time() > ago(%lldm) | where %s == '%s' "
             "| count",
             table, (long long)minutes, col, b->jb->id);
    fb_set_state(b, FB_QUERYING);
    rt->st.dedupe_queries++;
    b->query_mono = mono_ms();
    if (adx_query(fw->adx, fw->cfg->adx.query_url, rc->database, csl,
                  auth_token(fw->auth), b->jb->id, on_query, b, err,
                  sizeof(err)) < 0) {
        snprintf(b->last_error, sizeof(b->last_error), "dedupe query: %s", err);
        fb_wait(b, backoff_next(b, -1), FB_NEXT_QUERY);
    }
}

static void fb_ambiguous(struct fbatch *b)
{
    struct route *rt = b->rt;
    const struct config_forwarder *fc = &rt->fw->cfg->forwarder;

    rt->st.ambiguous++;
    if (rt->cfg->dedupe_column != NULL && !rt->eo.rechecked) {
        rt->eo.rechecked = 1; /* the first ambiguous failure: ask again */
        eo_check(rt);
    }
    if (rt->cfg->dedupe_column != NULL) {
        b->ambiguous = 1;
        b->amb_deadline = b->sent_mono + fc->ambiguous_window_ms;
        fb_wait(b, fc->ambiguous_delay_ms, FB_NEXT_QUERY);
        return;
    }
    /* no dedupe column: resend and count a possible duplicate (INV-5) */
    rt->st.possible_duplicates++;
    log_warn("forwarder",
             "%s: ambiguous send (%s) and no dedupe column: "
             "resending, possible duplicate",
             b->jb->id, b->last_error);
    fb_wait(b, backoff_next(b, -1), FB_NEXT_SEND);
}

static void on_ingest(void *arg, const struct adx_response *res)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;
    char reason[400];
    enum adx_outcome o = adx_classify(res, reason, sizeof(reason));

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
        fb_retry_transient(b, res->retry_after_ms);
        return;
    case ADX_TRANSIENT:
        rt->st.transient++;
        fb_retry_transient(b, res->retry_after_ms);
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
            route_set_state(rt, FORWARDER_PAUSED_CONFIG, why);
        }
        fb_failed(b, slow_retry_ms(fw));
        return;
    }
}

/* The token provider has a new token: send what waited for it. */
static void on_token(void *arg)
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
        fb_set_state(b, FB_TOKEN); /* on_token sends it */
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

    if (status < 0) {
        snprintf(b->last_error, sizeof(b->last_error), "journal: %s", err);
        log_error("forwarder", "%s: cannot mark sent: %s", b->jb->id, err);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_wait(b, backoff_next(b, -1), FB_NEXT_SEND);
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
static void fb_mark_sent(struct fbatch *b)
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
        fb_set_state(b, FB_TOKEN); /* on_token marks and sends it */
        return;
    }
    fb_set_state(b, FB_MARKING_SENT);
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

    if (status < 0 || b->build_rc < 0) {
        log_error("forwarder", "%s: cannot build the body: %s", b->jb->id,
                  strerror(-(status < 0 ? status : b->build_rc)));
        fb_release_body(b);
        if (rt->fw->stopping) {
            fb_finish(b);
            return;
        }
        fb_wait(b, backoff_next(b, -1), FB_NEXT_BUILD);
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
        fb_wait(b, backoff_next(b, -1), FB_NEXT_BUILD);
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
            fb_wait(b, backoff_next(b, -1), FB_NEXT_BUILD);
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
        route_maybe_cut(rt);
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
        if (rt->cfg->dedupe_column != NULL) {
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
    route_maybe_cut(rt);
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
    rt->cutting = 1;
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
    route_maybe_cut(rt);
}

static void route_maybe_cut(struct route *rt)
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
        rt->linger_armed = 1;
        uv_timer_start(&rt->linger, on_linger,
                       (uint64_t)fw->cfg->forwarder.linger_ms, 0);
    }
}

static void on_idle(uv_timer_t *t)
{
    struct forwarder *fw = t->data;

    for (size_t i = 0; i < fw->nroutes; i++) {
        struct route *rt = &fw->routes[i];

        /* nothing in flight: look for requeued / replayed batches and
         * settled events a missed kick left behind */
        if (rt->nbatches == 0 && !rt->cutting && !rt->linger_armed) {
            rt->backlog = 1;
            route_maybe_cut(rt);
        }
    }
}

void forwarder_kick(struct forwarder *fw)
{
    if (fw == NULL || fw->stopping) {
        return;
    }
    for (size_t i = 0; i < fw->nroutes; i++) {
        fw->routes[i].kicked = 1;
        route_maybe_cut(&fw->routes[i]);
    }
}

/* ----------------------------------------------------------- retention */

static void on_retire_timer(uv_timer_t *t);

static void on_retired(void *arg, int status, int64_t count, const char *err)
{
    struct forwarder *fw = arg;

    fw->retiring = 0;
    if (status < 0) {
        if (!fw->retire_failed) {
            log_warn("forwarder", "retention: %s", err);
        }
        fw->retire_failed = 1;
        count = 0;
    } else {
        fw->retire_failed = 0;
        if (count > 0 && fw->retire_early) {
            fw->early_events += count;
            fw->last_early_ms = wall_ms();
            log_debug("forwarder",
                      "retention: %lld delivered events deleted early "
                      "(disk space pressure)",
                      (long long)count);
        } else if (count > 0) {
            log_debug("forwarder", "retention: %lld delivered events deleted",
                      (long long)count);
        }
    }
    if (fw->stopping) {
        fw_check_stopped(fw);
        return;
    }
    /* more to retire: go on soon, in small transactions; else idle (but
     * look again soon while the disk sets the cap: deliveries free chunks
     * and appends fill them, faster than FW_RETIRE_IDLE_MS) */
    uv_timer_start(&fw->retire_timer, on_retire_timer,
                   count > 0 ? FW_RETIRE_BUSY_MS
                   : fw->space_pressure || fw->space_limited
                       ? FW_RETIRE_PRESSURE_MS
                       : FW_RETIRE_IDLE_MS,
                   0);
}

/* Logs the changes of the journal's space state (each once). */
static void fw_space_log(struct forwarder *fw, const struct journal_space *sp,
                         int pressure)
{
    if (sp->disk_limited != fw->space_limited) {
        fw->space_limited = sp->disk_limited;
        if (sp->disk_limited) {
            log_warn("forwarder",
                     "journal: the disk sets the effective cap: %lld bytes "
                     "(journal.max_bytes %lld; %lld bytes free on the "
                     "filesystem, %lld held by the journal's file, %lld kept "
                     "in reserve)",
                     (long long)sp->effective_cap, (long long)sp->max_bytes,
                     (long long)sp->fs_free_bytes, (long long)sp->file_bytes,
                     (long long)sp->reserve_bytes);
        } else {
            log_info("forwarder",
                     "journal: journal.max_bytes %lld fits on the disk again",
                     (long long)sp->max_bytes);
        }
    }
    if ((int)sp->full != fw->space_full) {
        fw->space_full = (int)sp->full;
        if (sp->full == JOURNAL_FULL_DISK) {
            log_warn("forwarder",
                     "journal: disk full: %lld bytes used of an effective cap "
                     "of %lld, %lld bytes free on the filesystem; intake "
                     "paused until delivered events make room",
                     (long long)sp->used_bytes, (long long)sp->effective_cap,
                     (long long)sp->fs_free_bytes);
        } else if (sp->full == JOURNAL_FULL_CAP) {
            log_warn("forwarder",
                     "journal: at its cap (%lld bytes); intake paused until "
                     "delivered events make room",
                     (long long)sp->max_bytes);
        } else {
            log_info("forwarder", "journal: appends go through again");
        }
    }
    if (pressure != fw->space_pressure) {
        fw->space_pressure = pressure;
        /* a small disk goes in and out of pressure all day: warn once,
         * then say it at debug level */
        if (pressure && !fw->pressure_seen) {
            fw->pressure_seen = 1;
            log_warn("forwarder",
                     "journal: space pressure (%lld bytes used of an "
                     "effective cap of %lld): delivered events older than "
                     "journal.min_retention_ms (%lld ms) are retired early, "
                     "oldest first",
                     (long long)sp->used_bytes, (long long)sp->effective_cap,
                     (long long)fw->cfg->journal.min_retention_ms);
        } else if (pressure) {
            log_debug("forwarder",
                      "journal: space pressure again (%lld bytes used of an "
                      "effective cap of %lld)",
                      (long long)sp->used_bytes, (long long)sp->effective_cap);
        } else {
            log_debug("forwarder",
                      "journal: space pressure over (%lld bytes "
                      "used of an effective cap of %lld)",
                      (long long)sp->used_bytes, (long long)sp->effective_cap);
        }
    }
}

/* INV-8: delivered events are kept for journal.retention_ms, then deleted
 * in chunks of FW_RETIRE_CHUNKS per transaction; never undelivered or dead
 * ones (journal_retire's contract). */
static void on_retire_timer(uv_timer_t *t)
{
    struct forwarder *fw = t->data;
    int64_t now = wall_ms();
    int64_t cutoff = now - fw->cfg->journal.retention_ms;
    int64_t min_ms = fw->cfg->journal.min_retention_ms;
    struct journal_space sp;
    int64_t target = 0;
    int pressure;
    int rc;

    if (fw->stopping || fw->retiring) {
        return;
    }
    /* the periodic look at the disk (journal_space: statvfs) */
    journal_space(fw->journal, &sp);
    pressure = journal_space_pressure(&sp, &target);
    fw_space_log(fw, &sp, pressure);
    fw->retiring = 1;
    fw->retire_early = pressure && now - min_ms > cutoff;
    if (fw->retire_early) {
        /* retention yields to pressure: delivered events older than the
         * replay window journal.min_retention_ms keeps, oldest first,
         * until half the effective cap is free */
        rc = journal_retire_to_async(fw->journal, now - min_ms, target,
                                     FW_RETIRE_CHUNKS, on_retired, fw);
    } else {
        rc = journal_retire_async(fw->journal, cutoff, FW_RETIRE_CHUNKS,
                                  on_retired, fw);
    }
    if (rc < 0) {
        fw->retiring = 0;
        uv_timer_start(&fw->retire_timer, on_retire_timer, FW_RETIRE_IDLE_MS,
                       0);
    }
}

/* -------------------------------------------------------- life cycle */

static void on_fw_handle_closed(uv_handle_t *h)
{
    struct forwarder *fw = h->data;

    fw->open_handles--;
    if (fw->freed && fw->open_handles == 0) {
        free(fw->routes);
        free(fw);
    }
}

static void on_route_handle_closed(uv_handle_t *h)
{
    struct route *rt = h->data;
    struct forwarder *fw = rt->fw;

    fw->open_handles--;
    if (fw->freed && fw->open_handles == 0) {
        free(fw->routes);
        free(fw);
    }
}

int forwarder_new(uv_loop_t *loop, const struct forwarder_options *o,
                  struct forwarder **out, char *err, size_t errlen)
{
    const struct config *cfg = o->cfg;
    struct forwarder *fw;
    struct adx_options ao;
    struct auth_options au;
    int rc;

    *out = NULL;
    fw = calloc(1, sizeof(*fw));
    if (fw == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    fw->loop = loop;
    fw->cfg = cfg;
    fw->journal = o->journal;
    fw->settled = o->settled;
    fw->gzip_level = o->gzip_level > 0 ? o->gzip_level : 1;
    fw->no_eo_check = o->no_eo_check;
    fw->rng = (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 20) ^
              (uint64_t)(uintptr_t)fw;
    if (fw->rng == 0) {
        fw->rng = 1;
    }
    fw->nroutes = cfg->nroutes;
    fw->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*fw->routes));
    if (fw->routes == NULL) {
        free(fw);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memset(&ao, 0, sizeof(ao));
    ao.timeout_ms = (long)cfg->adx.request_timeout_ms;
    ao.ca_file = o->ca_file;
    ao.proxy = cfg->adx.proxy;
    ao.no_proxy = cfg->adx.no_proxy;
    ao.keepalive_idle_ms = (long)cfg->adx.keepalive_idle_ms;
    rc = adx_new(loop, &ao, &fw->adx, err, errlen);
    if (rc < 0) {
        free(fw->routes);
        free(fw);
        return rc;
    }
    memset(&au, 0, sizeof(au));
    au.cfg = &cfg->adx.auth;
    au.cluster = cfg->adx.ingest_url;
    au.retry_initial_ms = cfg->forwarder.retry_initial_ms;
    au.retry_max_ms = cfg->forwarder.retry_max_ms;
    rc = auth_new(loop, fw->adx, &au, &fw->auth, err, errlen);
    if (rc < 0) {
        adx_close(fw->adx);
        free(fw->routes);
        free(fw);
        return rc;
    }
    rc = registry_new(loop, o->journal, &fw->registry, err, errlen);
    if (rc < 0) {
        auth_close(fw->auth);
        adx_close(fw->adx);
        free(fw->routes);
        free(fw);
        return rc;
    }
    auth_set_listener(fw->auth, on_token, fw);
    uv_timer_init(loop, &fw->idle);
    fw->idle.data = fw;
    uv_timer_init(loop, &fw->stop_timer);
    uv_timer_init(loop, &fw->retire_timer);
    fw->retire_timer.data = fw;
    fw->stop_timer.data = fw;
    fw->open_handles = 3;
    for (size_t i = 0; i < fw->nroutes; i++) {
        struct route *rt = &fw->routes[i];

        rt->fw = fw;
        rt->idx = (int)i;
        rt->cfg = &cfg->routes[i];
        rt->st.name = rt->cfg->name;
        uv_timer_init(loop, &rt->linger);
        rt->linger.data = rt;
        fw->open_handles++;
    }
    *out = fw;
    return 0;
}

int forwarder_start(struct forwarder *fw, char *err, size_t errlen)
{
    int rc = auth_start(fw->auth);

    if (rc < 0) {
        set_err(err, errlen, "auth: %s", strerror(-rc));
        return rc;
    }
    fw->started = 1;
    uv_timer_start(&fw->idle, on_idle, FW_IDLE_POLL_MS, FW_IDLE_POLL_MS);
    uv_timer_start(&fw->retire_timer, on_retire_timer, FW_RETIRE_IDLE_MS, 0);
    for (size_t i = 0; i < fw->nroutes; i++) {
        eo_check(&fw->routes[i]); /* issue 18: before the first ambiguity */
        route_maybe_cut(&fw->routes[i]);
    }
    log_info("forwarder", "started: %zu route(s) to %s", fw->nroutes,
             fw->cfg->adx.ingest_url);
    return 0;
}

/* Batches doing something that must finish (HTTP, journal, worker). */
static int fw_busy(const struct forwarder *fw)
{
    if (fw->retiring) {
        return 1;
    }
    for (size_t i = 0; i < fw->nroutes; i++) {
        const struct route *rt = &fw->routes[i];

        if (rt->cutting) {
            return 1;
        }
        for (const struct fbatch *b = rt->batches; b != NULL; b = b->next) {
            if (b->state != FB_WAITING && b->state != FB_TOKEN) {
                return 1;
            }
        }
    }
    return 0;
}

static void fw_check_stopped(struct forwarder *fw)
{
    if (!fw->stopping || fw->stop_cb == NULL) {
        return;
    }
    /* batches only waiting (backoff, token) are dropped: the journal has
     * their state and the next start picks them up */
    for (size_t i = 0; i < fw->nroutes; i++) {
        struct fbatch *b = fw->routes[i].batches;

        while (b != NULL) {
            struct fbatch *nx = b->next;

            if (b->state == FB_WAITING || b->state == FB_TOKEN) {
                fb_drop(b);
            }
            b = nx;
        }
    }
    if (fw_busy(fw)) {
        return;
    }
    uv_timer_stop(&fw->stop_timer);
    /* never from inside an adx or journal callback: from the loop */
    uv_timer_stop(&fw->idle);
    uv_timer_start(&fw->idle, on_stop_done, 0, 0);
}

static void on_stop_done(uv_timer_t *t)
{
    struct forwarder *fw = t->data;
    forwarder_stopped_cb cb = fw->stop_cb;

    if (cb == NULL || fw_busy(fw)) {
        return;
    }
    fw->stop_cb = NULL;
    log_info("forwarder", "stopped");
    cb(fw->stop_arg);
}

static void on_stop_timeout(uv_timer_t *t)
{
    struct forwarder *fw = t->data;

    if (fw->stop_cb == NULL) {
        return;
    }
    log_warn("forwarder",
             "stop: %zu request(s) still in flight after the "
             "timeout: cancelled (resolved at the next start)",
             adx_inflight(fw->adx));
    fw->stop_cancelled = 1;
    /* the token provider first (its request is cancelled too), then every
     * request: their callbacks finish the batches */
    auth_close(fw->auth);
    fw->auth = NULL;
    {
        struct adx *a = fw->adx;

        fw->adx = NULL;
        adx_close(a);
    }
    fw_check_stopped(fw);
}

static void on_stop_check(uv_timer_t *t)
{
    fw_check_stopped(t->data);
}

void forwarder_stop(struct forwarder *fw, int64_t timeout_ms,
                    forwarder_stopped_cb cb, void *arg)
{
    if (fw->stopping) {
        return;
    }
    fw->stopping = 1;
    fw->stop_cb = cb;
    fw->stop_arg = arg;
    for (size_t i = 0; i < fw->nroutes; i++) {
        uv_timer_stop(&fw->routes[i].linger);
    }
    uv_timer_stop(&fw->retire_timer);
    uv_timer_start(&fw->stop_timer, on_stop_timeout,
                   (uint64_t)(timeout_ms > 0 ? timeout_ms : 0), 0);
    /* the callback must not run inside this call: check from the loop */
    uv_timer_stop(&fw->idle);
    uv_timer_start(&fw->idle, on_stop_check, 0, 0);
}

void forwarder_free(struct forwarder *fw)
{
    if (fw == NULL) {
        return;
    }
    assert(!fw_busy(fw) || fw->stop_cancelled || !fw->started);
    fw->freed = 1;
    registry_free(fw->registry); /* its waiters see -ECANCELED first */
    fw->registry = NULL;
    for (size_t i = 0; i < fw->nroutes; i++) {
        while (fw->routes[i].batches != NULL) {
            fb_drop(fw->routes[i].batches);
        }
    }
    auth_close(fw->auth);
    fw->auth = NULL;
    if (fw->adx != NULL) {
        adx_close(fw->adx);
        fw->adx = NULL;
    }
    uv_close((uv_handle_t *)&fw->idle, on_fw_handle_closed);
    uv_close((uv_handle_t *)&fw->stop_timer, on_fw_handle_closed);
    uv_close((uv_handle_t *)&fw->retire_timer, on_fw_handle_closed);
    for (size_t i = 0; i < fw->nroutes; i++) {
        uv_close((uv_handle_t *)&fw->routes[i].linger, on_route_handle_closed);
    }
}

static int auth_cfg_same(const struct config *a, const struct config *b)
{
    const struct config_auth *x = &a->adx.auth;
    const struct config_auth *y = &b->adx.auth;
    const char *const xs[] = {x->tenant_id, x->client_id,  x->client_secret,
                              x->token,     x->token_file, x->authority_host,
                              x->scope,     x->imds_url,   a->adx.ingest_url};
    const char *const ys[] = {y->tenant_id, y->client_id,  y->client_secret,
                              y->token,     y->token_file, y->authority_host,
                              y->scope,     y->imds_url,   b->adx.ingest_url};

    if (x->method != y->method) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
        if ((xs[i] == NULL) != (ys[i] == NULL) ||
            (xs[i] != NULL && strcmp(xs[i], ys[i]) != 0)) {
            return 0;
        }
    }
    return 1;
}

int forwarder_reconfigure(struct forwarder *fw, const struct config *cfg,
                          char *err, size_t errlen)
{
    struct auth *fresh = NULL;
    int rc;

    assert(cfg->nroutes == fw->nroutes);
    if (fw->stopping) {
        set_err(err, errlen, "the forwarder is stopping");
        return -ECANCELED;
    }
    /* everything that can fail first, so that a failure changes nothing */
    if (!auth_cfg_same(fw->cfg, cfg)) {
        struct auth_options au;

        memset(&au, 0, sizeof(au));
        au.cfg = &cfg->adx.auth;
        au.cluster = cfg->adx.ingest_url;
        au.retry_initial_ms = cfg->forwarder.retry_initial_ms;
        au.retry_max_ms = cfg->forwarder.retry_max_ms;
        rc = auth_new(fw->loop, fw->adx, &au, &fresh, err, errlen);
        if (rc < 0) {
            return rc;
        }
    }
    rc = adx_set_proxy(fw->adx, cfg->adx.proxy, cfg->adx.no_proxy);
    if (rc < 0) {
        auth_close(fresh);
        set_err(err, errlen, "out of memory");
        return rc;
    }
    fw->cfg = cfg;
    for (size_t i = 0; i < fw->nroutes; i++) {
        fw->routes[i].cfg = &cfg->routes[i];
        fw->routes[i].st.name = cfg->routes[i].name;
    }
    if (fresh != NULL) {
        /* batches waiting for a token wait for the new provider's first
         * one; a request in flight keeps the token it was sent with */
        auth_close(fw->auth);
        fw->auth = fresh;
        auth_set_listener(fw->auth, on_token, fw);
        if (fw->started) {
            rc = auth_start(fw->auth);
            if (rc < 0) {
                log_warn("forwarder", "token provider: %s", strerror(-rc));
            }
        }
        if (auth_ready(fw->auth)) {
            on_token(fw);
        }
    }
    /* a new limit or linger applies at the next cut; a route paused by a
     * configuration error at ADX probes again now (the fix may be here;
     * its first delivery resumes it) */
    for (size_t i = 0; i < fw->nroutes && fw->started; i++) {
        struct route *rt = &fw->routes[i];

        if (rt->state == FORWARDER_PAUSED_CONFIG) {
            for (struct fbatch *o = rt->batches; o != NULL; o = o->next) {
                if (o->state == FB_WAITING) {
                    uv_timer_start(&o->timer, on_fb_timer, 0, 0);
                }
            }
        }
        route_maybe_cut(rt);
    }
    return 0;
}

int forwarder_pause(struct forwarder *fw, int route)
{
    if (route < -1 || (route >= 0 && (size_t)route >= fw->nroutes)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < fw->nroutes; i++) {
        if (route == -1 || (size_t)route == i) {
            route_set_state(&fw->routes[i], FORWARDER_PAUSED_OPERATOR,
                            "paused by the operator");
        }
    }
    return 0;
}

int forwarder_resume(struct forwarder *fw, int route)
{
    if (route < -1 || (route >= 0 && (size_t)route >= fw->nroutes)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < fw->nroutes; i++) {
        struct route *rt = &fw->routes[i];

        if (route != -1 && (size_t)route != i) {
            continue;
        }
        if (rt->state == FORWARDER_RUNNING) {
            continue;
        }
        route_set_state(rt, FORWARDER_RUNNING, NULL);
        for (struct fbatch *b = rt->batches; b != NULL; b = b->next) {
            if (b->state == FB_WAITING) {
                uv_timer_start(&b->timer, on_fb_timer, 0, 0);
            }
        }
        rt->backlog = 1;
        route_maybe_cut(rt);
    }
    return 0;
}

size_t forwarder_nroutes(const struct forwarder *fw)
{
    return fw->nroutes;
}

int forwarder_route_stats(const struct forwarder *fw, int route,
                          struct forwarder_route_stats *out)
{
    const struct route *rt;

    if (route < 0 || (size_t)route >= fw->nroutes) {
        return -EINVAL;
    }
    rt = &fw->routes[route];
    *out = rt->st;
    out->state = rt->state;
    out->inflight = rt->nbatches;
    if (rt->state != FORWARDER_RUNNING) {
        utf8_copy(out->reason, sizeof(out->reason), rt->reason);
    } else {
        out->reason[0] = '\0';
        for (const struct fbatch *b = rt->batches; b != NULL; b = b->next) {
            if (b->last_error[0] != '\0') {
                utf8_copy(out->reason, sizeof(out->reason), b->last_error);
                break;
            }
        }
    }
    return 0;
}

int forwarder_ready(const struct forwarder *fw, char *why, size_t whylen)
{
    for (size_t i = 0; i < fw->nroutes; i++) {
        const struct route *rt = &fw->routes[i];

        if (rt->state != FORWARDER_RUNNING) {
            set_err(why, whylen, "route '%s' %s: %s", rt->cfg->name,
                    forwarder_route_state_name(rt->state), rt->reason);
            return 0;
        }
        if (rt->registry_down[0] != '\0') {
            set_err(why, whylen, "route '%s' waits for the schema registry: %s",
                    rt->cfg->name, rt->registry_down);
            return 0;
        }
    }
    if (fw->auth != NULL && !auth_ready(fw->auth)) {
        const char *e = auth_last_error(fw->auth);

        set_err(why, whylen, "no ADX token yet%s%s", e[0] ? ": " : "", e);
        return 0;
    }
    set_err(why, whylen, "ok");
    return 1;
}

int64_t forwarder_token_expires_ms(const struct forwarder *fw)
{
    return fw->auth != NULL ? auth_expires_ms(fw->auth) : 0;
}

const char *forwarder_token_error(const struct forwarder *fw)
{
    return fw->auth != NULL ? auth_last_error(fw->auth) : "";
}

void forwarder_retention(const struct forwarder *fw,
                         struct forwarder_retention *out)
{
    memset(out, 0, sizeof(*out));
    out->retention_ms = fw->cfg->journal.retention_ms;
    out->min_retention_ms = fw->cfg->journal.min_retention_ms;
    out->pressure = fw->space_pressure;
    out->early_events = fw->early_events;
    out->last_early_ms = fw->last_early_ms;
}

size_t forwarder_inflight(const struct forwarder *fw)
{
    size_t n = 0;

    for (size_t i = 0; i < fw->nroutes; i++) {
        n += (size_t)fw->routes[i].nbatches;
    }
    return n;
}
