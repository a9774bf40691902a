/*
 * api.c - the admin HTTP API (api.h): the request router, the bearer-token
 * check, and one handler per endpoint, on top of admin/http.c.
 *
 * What it owns: the http_server, a copy of the token, and the requests that
 * wait for a journal write (requeue, replay). Reads (status, metrics, dead
 * letters) are answered at once from the sources: the intake's and the
 * forwarder's counters live on this same loop thread, and the journal's
 * reads run on its separate read connection (WAL: they never wait for the
 * writer's fsync). Writes go through the journal's async API, so the loop
 * never waits for an fsync; the handler answers from the journal's
 * callback. admin_stop() may run while such a write is queued: the struct
 * stays alive (a count of pending operations) until the last callback ran.
 *
 * Replay "missing" (a reconcile): for the delivered batches of the route
 * that overlap the requested range, ADX is asked how many rows carry each
 * batch id in the route's dedupe column; only the events no present batch
 * covers are replayed (see reconcile_* below).
 *
 * Everything runs on the loop thread.
 */
#include "admin/api.h"
#include "admin/connect.h"
#include "admin/page.h"
#include "admin/procstat.h"

#include "admin/http.h"
#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/intake.h"
#include "gateway/log.h"
#include "kadx_version.h"
#include "storage/journal.h"
#include "storage/recover.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_READ_TIMEOUT_MS 5000
#define DEFAULT_MAX_HEADER      (16 * 1024)
#define DEFAULT_MAX_BODY        (64 * 1024)
#define DEAD_PAGE_DEFAULT       100
#define DEAD_PAGE_MAX           1000
#define TOKEN_MAX               4096

#define container_of(ptr, type, member)                                        \
    ((type *)((char *)(ptr)-offsetof(type, member)))

struct admin {
    uv_loop_t *loop;
    struct http_server *srv;
    struct admin_sources src;
    char *token;      /* NULL = POSTs are open */
    int token_on_get; /* GETs need the token too (not /healthz, /readyz) */
    char *tls_cert;   /* NULL = plain HTTP */
    char *tls_key;
    int64_t started_ms;
    int paused_all;       /* POST /pause without a route */
    int stopped;          /* admin_stop ran */
    int pending;          /* journal/ADX operations not called back yet */
    struct reconcile *rc; /* the one reconcile running, or NULL */
    struct adx *adx;      /* reconcile's ADX client, created on first use */
    struct auth *auth;
    /* journal reads on the thread pool (see rjob_*) */
    pthread_mutex_t jmu;
    pthread_cond_t jcv;
    int closing;      /* under jmu: no new read may start */
    int jobs_in_work; /* under jmu: reads running now */
    /* loop thread: one journal read queued on the thread pool at a time;
     * the others wait here in order, so an admin flood cannot take the
     * pool's threads (the intake's settled-file writes use them) or more
     * than one core of scans */
    int rjob_running;
    struct rjob *rq_head, *rq_tail;
};

/* ------------------------------------------------------------ helpers */

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void admin_free(struct admin *a)
{
    auth_close(a->auth);
    adx_close(a->adx);
    pthread_mutex_destroy(&a->jmu);
    pthread_cond_destroy(&a->jcv);
    free(a->token);
    free(a->tls_cert);
    free(a->tls_key);
    free(a);
}

/* An operation finished: drop the count; the last one after admin_stop
 * frees the admin. */
static void op_done(struct admin *a)
{
    a->pending--;
    if (a->stopped && a->pending == 0) {
        admin_free(a);
    }
}

static void respond_error(struct http_request *req, int status, const char *fmt,
                          ...) __attribute__((format(printf, 3, 4)));

static void respond_error(struct http_request *req, int status, const char *fmt,
                          ...)
{
    char msg[512];
    char body[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_error_body_default(status, msg, body, sizeof(body), NULL);
    if (status == 401) {
        struct http_header h = {"WWW-Authenticate", "Bearer realm=\"kadx\""};

        http_respond_json(req, status, &h, 1, body);
        return;
    }
    http_respond_json(req, status, NULL, 0, body);
}

/* Sends obj (consumed) as the JSON body. */
static void respond_obj(struct http_request *req, int status, cJSON *obj)
{
    char *text = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;

    cJSON_Delete(obj);
    if (text == NULL) {
        respond_error(req, 500, "out of memory");
        return;
    }
    http_respond_json(req, status, NULL, 0, text);
    cJSON_free(text);
}

/* cJSON holds numbers as doubles: exact up to 2^53, plenty for counters. */
static void add_num(cJSON *o, const char *name, double v)
{
    cJSON_AddNumberToObject(o, name, v);
}

/* Offsets: -1 ("none") becomes null. */
static void add_off(cJSON *o, const char *name, int64_t v)
{
    if (v < 0) {
        cJSON_AddNullToObject(o, name);
    } else {
        cJSON_AddNumberToObject(o, name, (double)v);
    }
}

/* Constant-time comparison of the Authorization header with the token. */
static int token_ok(const struct admin *a, struct http_request *req)
{
    const char *h;
    size_t tl, hl;
    unsigned diff = 0;

    if (a->token == NULL) {
        return 1;
    }
    h = http_req_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return 0;
    }
    h += 7;
    while (*h == ' ') {
        h++;
    }
    tl = strlen(a->token);
    hl = strnlen(h, TOKEN_MAX + 1);
    diff = (unsigned)(tl != hl);
    for (size_t i = 0; i < tl; i++) {
        diff |= (unsigned char)a->token[i] ^ (unsigned char)(i < hl ? h[i] : 0);
    }
    return diff == 0;
}

/*
 * Parses the request body as a JSON object ("" = {}). Returns the object
 * (caller deletes) or NULL after answering 400.
 */
static cJSON *body_object(struct http_request *req)
{
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    cJSON *o;

    while (len > 0 &&
           (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')) {
        body++;
        len--;
    }
    if (len == 0) {
        return cJSON_CreateObject();
    }
    o = cJSON_ParseWithLength(body, len);
    if (o == NULL || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        respond_error(req, 400, "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Rejects members other than the allowed ones: a typo must not widen a
 * replay or a requeue. Returns 0, or -1 after answering 400. */
static int check_members(struct http_request *req, const cJSON *o,
                         const char *const *allowed)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, o)
    {
        int ok = 0;

        for (size_t i = 0; allowed[i] != NULL; i++) {
            if (strcmp(m->string, allowed[i]) == 0) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            respond_error(req, 400, "unknown field '%.64s'", m->string);
            return -1;
        }
    }
    return 0;
}

/*
 * Resolves a "route" member (name or index). Returns the index, -1 when
 * absent, or -2 after answering 400.
 */
static int route_arg(const struct admin *a, struct http_request *req,
                     const cJSON *v)
{
    const struct config *cfg = a->src.cfg;

    if (v == NULL || cJSON_IsNull(v)) {
        return -1;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;

        if (d >= 0 && d < (double)cfg->nroutes && d == floor(d)) {
            return (int)d;
        }
        respond_error(req, 400, "no route %g (%zu routes)", d, cfg->nroutes);
        return -2;
    }
    if (cJSON_IsString(v)) {
        for (size_t i = 0; i < cfg->nroutes; i++) {
            if (strcmp(cfg->routes[i].name, v->valuestring) == 0) {
                return (int)i;
            }
        }
        respond_error(req, 400, "no route named '%.128s'", v->valuestring);
        return -2;
    }
    respond_error(req, 400, "'route' must be a name or an index");
    return -2;
}

/* Reads an optional integer member >= min. 0 (absent: *out untouched), or
 * -1 after answering 400. */
static int int_arg(struct http_request *req, const cJSON *o, const char *name,
                   int64_t min, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)min || v->valuedouble > 9.0e15) {
        respond_error(req, 400, "'%s' must be an integer >= %" PRId64, name,
                      min);
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* Parses "2026-01-31T12:00:00[.mmm]Z" into ms; -EINVAL otherwise. */
static int parse_iso_ms(const char *s, int64_t *out)
{
    struct tm tm;
    const char *rest;
    int64_t ms = 0;

    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL) {
        return -EINVAL;
    }
    if (*rest == '.') {
        int digits = 0;

        rest++;
        while (*rest >= '0' && *rest <= '9') {
            if (digits < 3) {
                ms = ms * 10 + (*rest - '0');
            }
            digits++;
            rest++;
        }
        if (digits == 0) {
            return -EINVAL;
        }
        for (; digits < 3; digits++) {
            ms *= 10;
        }
    }
    if (strcmp(rest, "Z") != 0) {
        return -EINVAL;
    }
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return 0;
}

/* A time member: ms since the epoch (number) or an ISO-8601 UTC string. */
static int time_arg(struct http_request *req, const cJSON *o, const char *name,
                    int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (cJSON_IsString(v) && parse_iso_ms(v->valuestring, out) == 0) {
        return 0;
    }
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 &&
        v->valuedouble == floor(v->valuedouble) && v->valuedouble < 9.0e15) {
        *out = (int64_t)v->valuedouble;
        return 0;
    }
    respond_error(req, 400,
                  "'%s' must be ms since the epoch or "
                  "\"2026-01-31T12:00:00Z\"",
                  name);
    return -1;
}

/* ------------------------------------------------ journal reads, off-loop */

/*
 * Reading the journal's statistics scans every chunk row (100+ ms for a few
 * hundred thousand small chunks), so /status, /metrics, /readyz and
 * /dead-letters read it on libuv's thread pool (journal reads are safe from
 * any thread) and build their answer back on the loop, where the intake's
 * and the forwarder's state may be read. admin_stop() waits for reads that
 * already started (they take milliseconds), so the journal can be closed
 * right after it.
 */
enum { RJ_STATS = 1, RJ_DELIVERED = 2, RJ_DEAD = 4 };

struct rjob;
typedef void (*rjob_answer_fn)(struct admin *a, struct http_request *req,
                               struct rjob *j);

struct rjob {
    uv_work_t w;
    struct rjob *next; /* waiting for the running read (rjob_start) */
    struct admin *a;
    struct http_request *req;
    rjob_answer_fn answer;
    int what;    /* RJ_* */
    int skipped; /* the admin was stopping: nothing read */
    int st_rc;   /* RJ_STATS */
    char st_err[256];
    struct journal_stats st;
    int dl_rc; /* RJ_DELIVERED */
    struct recover_delivered *dl;
    size_t ndl;
    int dead_rc; /* RJ_DEAD: in route, after, limit; out list, n, total */
    char dead_err[256];
    int route;
    int64_t after;
    size_t limit;
    struct journal_dead *list;
    size_t n;
    int64_t total;
};

static void rjob_work(uv_work_t *w)
{
    struct rjob *j = container_of(w, struct rjob, w);
    struct admin *a = j->a;

    pthread_mutex_lock(&a->jmu);
    if (a->closing) {
        j->skipped = 1;
        pthread_mutex_unlock(&a->jmu);
        return;
    }
    a->jobs_in_work++;
    pthread_mutex_unlock(&a->jmu);
    if (j->what & RJ_STATS) {
        j->st_rc =
            journal_stats(a->src.journal, &j->st, j->st_err, sizeof(j->st_err));
    }
    if (j->what & RJ_DELIVERED) {
        j->dl_rc =
            recover_delivered_offsets(a->src.journal, &j->dl, &j->ndl, NULL, 0);
    }
    if (j->what & RJ_DEAD) {
        j->dead_rc = journal_dead_list(a->src.journal, j->route, j->after,
                                       j->limit, &j->list, &j->n, &j->total,
                                       j->dead_err, sizeof(j->dead_err));
    }
    pthread_mutex_lock(&a->jmu);
    a->jobs_in_work--;
    pthread_cond_broadcast(&a->jcv);
    pthread_mutex_unlock(&a->jmu);
}

static int rjob_queue(struct admin *a, struct rjob *j);

static void rjob_after(uv_work_t *w, int status)
{
    struct rjob *j = container_of(w, struct rjob, w);
    struct admin *a = j->a;
    struct rjob *next;

    if (status < 0 || j->skipped || a->stopped) {
        respond_error(j->req, 503, "the admin server is stopping");
    } else {
        j->answer(a, j->req, j);
    }
    if ((j->what & RJ_STATS) && j->st_rc == 0) {
        journal_stats_release(&j->st);
    }
    recover_delivered_free(j->dl, j->ndl);
    journal_dead_list_free(j->list, j->n);
    free(j);
    a->rjob_running = 0;
    while ((next = a->rq_head) != NULL) {
        a->rq_head = next->next;
        if (a->rq_head == NULL) {
            a->rq_tail = NULL;
        }
        if (!a->stopped) {
            if (rjob_queue(a, next) == 0) {
                break;
            }
            continue; /* answered 500: try the next one */
        }
        respond_error(next->req, 503, "the admin server is stopping");
        free(next);
        op_done(a); /* a outlives this: j's own op_done is still owed */
    }
    op_done(a);
}

/* Hands j to the thread pool. 0, or -1 after answering 500 itself (j is
 * freed, its operation done). */
static int rjob_queue(struct admin *a, struct rjob *j)
{
    int rc = uv_queue_work(a->loop, &j->w, rjob_work, rjob_after);

    if (rc < 0) {
        respond_error(j->req, 500, "cannot queue the journal read: %s",
                      uv_strerror(rc));
        free(j);
        op_done(a);
        return -1;
    }
    a->rjob_running = 1;
    return 0;
}

/* Starts a read job; on failure answers 500 itself. j is taken. */
static void rjob_start(struct admin *a, struct http_request *req,
                       struct rjob *j, int what, rjob_answer_fn answer)
{
    j->a = a;
    j->req = req;
    j->what = what;
    j->answer = answer;
    a->pending++;
    if (a->rjob_running) {
        if (a->rq_tail != NULL) {
            a->rq_tail->next = j;
        } else {
            a->rq_head = j;
        }
        a->rq_tail = j;
        return;
    }
    rjob_queue(a, j);
}

static struct rjob *rjob_new(struct http_request *req)
{
    struct rjob *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        respond_error(req, 500, "out of memory");
    }
    return j;
}

/* ---------------------------------------------------------- /healthz */

static void h_healthz(struct admin *a, struct http_request *req)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", KADX_VERSION);
    add_num(o, "uptime_s", (double)(wall_ms() - a->started_ms) / 1000.0);
    respond_obj(req, 200, o);
}

/* ----------------------------------------------------------- /readyz */

static void add_check(cJSON *arr, const char *name, int ok, const char *detail,
                      int *all_ok)
{
    cJSON *c = cJSON_CreateObject();

    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddBoolToObject(c, "ok", ok);
    cJSON_AddStringToObject(c, "detail", detail);
    cJSON_AddItemToArray(arr, c);
    if (!ok) {
        *all_ok = 0;
    }
}

/* Offset continuity: red while a partition waits for the operator's
 * epoch (it went backwards; gateway/INTAKE.md). */
static void readyz_offsets(struct admin *a, cJSON *checks, int *all_ok)
{
    const struct intake_partition *ip;
    char detail[512] = "";
    size_t n = 0;
    size_t len = 0;
    int bad = 0;

    ip = intake_partitions(a->src.intake, &n);
    for (size_t i = 0; ip != NULL && i < n; i++) {
        if (!ip[i].assigned || !ip[i].rewound) {
            continue;
        }
        bad++;
        if (len < sizeof(detail) - 1) {
            int w =
                snprintf(detail + len, sizeof(detail) - len,
                         "%s'%s'[%d] went backwards (needs %lld, broker "
                         "log %lld..%lld)",
                         bad > 1 ? "; " : "", ip[i].topic, (int)ip[i].partition,
                         (long long)ip[i].rewind_offset,
                         (long long)ip[i].log_start, (long long)ip[i].log_end);
            len = w > 0 ? len + (size_t)w : len;
            len = len < sizeof(detail) ? len : sizeof(detail) - 1;
        }
    }
    if (bad == 0) {
        add_check(checks, "kafka_offsets", 1, "continuous", all_ok);
        return;
    }
    if (len < sizeof(detail) - 1) {
        snprintf(detail + len, sizeof(detail) - len,
                 ": paused until POST /partitions/epoch");
    }
    add_check(checks, "kafka_offsets", 0, detail, all_ok);
}

static void readyz_answer(struct admin *a, struct http_request *req,
                          struct rjob *job)
{
    const struct config *cfg = a->src.cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON *checks = cJSON_AddArrayToObject(o, "checks");
    const struct journal_stats *stp = &job->st;
    char detail[512];
    int all_ok = 1;

    /* Kafka: the member got an assignment (possibly empty) from the group */
    if (a->src.intake == NULL) {
        add_check(checks, "kafka_group", 0, "intake not running", &all_ok);
    } else {
        struct intake_counters ic;

        intake_get_counters(a->src.intake, &ic);
        if (ic.rebalances > 0) {
            snprintf(detail, sizeof(detail), "joined (%" PRIu64 " rebalances)",
                     ic.rebalances);
            add_check(checks, "kafka_group", 1, detail, &all_ok);
        } else {
            snprintf(detail, sizeof(detail), "not joined yet%s%s",
                     ic.last_error[0] ? ": " : "", ic.last_error);
            add_check(checks, "kafka_group", 0, detail, &all_ok);
        }
        readyz_offsets(a, checks, &all_ok);
    }

    /* journal: readable, room for appends (not at its cap, disk not
     * full), intake not held back by backpressure (INV-7) */
    if (job->st_rc < 0) {
        snprintf(detail, sizeof(detail), "stats failed: %s", job->st_err);
        add_check(checks, "journal", 0, detail, &all_ok);
    } else {
        struct journal_space sp;
        struct intake_counters ic;
        int ok = 1;

        memset(&ic, 0, sizeof(ic));
        if (a->src.intake != NULL) {
            intake_get_counters(a->src.intake, &ic);
        }
        journal_space(a->src.journal, &sp);
        if (sp.full == JOURNAL_FULL_DISK) {
            snprintf(detail, sizeof(detail),
                     "disk full: %" PRId64 " bytes used of an effective cap "
                     "of %" PRId64 " (%" PRId64 " bytes free on the "
                     "filesystem, %" PRId64 " kept in reserve); intake %s",
                     sp.used_bytes, sp.effective_cap, sp.fs_free_bytes,
                     sp.reserve_bytes, ic.bp_paused ? "paused" : "retrying");
            ok = 0;
        } else if (sp.full == JOURNAL_FULL_CAP) {
            snprintf(detail, sizeof(detail),
                     "journal at its cap: %" PRId64 " bytes used of %" PRId64
                     "; intake %s",
                     sp.used_bytes, stp->max_bytes,
                     ic.bp_paused ? "paused" : "retrying");
            ok = 0;
        } else if (ic.bp_paused) {
            snprintf(detail, sizeof(detail),
                     "intake paused: %" PRId64 " journal bytes pending "
                     "(high water %" PRId64 ")",
                     ic.pending_bytes, cfg->intake.high_water_bytes);
            ok = 0;
        } else {
            snprintf(detail, sizeof(detail),
                     "%" PRId64 " bytes used of %" PRId64 "%s", sp.used_bytes,
                     sp.effective_cap,
                     sp.disk_limited ? " (effective cap set by the disk)" : "");
        }
        add_check(checks, "journal", ok, detail, &all_ok);
    }

    /* ADX: a token, and no route paused by a configuration error */
    if (a->src.forwarder == NULL) {
        add_check(checks, "adx", 0, "forwarder not running", &all_ok);
    } else {
        char why[256] = "";
        int ok = forwarder_ready(a->src.forwarder, why, sizeof(why));
        const char *terr = forwarder_token_error(a->src.forwarder);
        int op_paused = 0;

        if (terr != NULL && terr[0] != '\0') {
            snprintf(detail, sizeof(detail), "token: %s", terr);
            add_check(checks, "adx_auth", 0, detail, &all_ok);
        } else {
            add_check(checks, "adx_auth", 1, "ok", &all_ok);
        }
        for (size_t i = 0; i < cfg->nroutes; i++) {
            struct forwarder_route_stats rs;
            char name[160];

            snprintf(name, sizeof(name), "route %s", cfg->routes[i].name);
            if (forwarder_route_stats(a->src.forwarder, (int)i, &rs) < 0) {
                add_check(checks, name, 0, "unknown route", &all_ok);
                continue;
            }
            if (forwarder_route_exactly_once_error(a->src.forwarder, (int)i) !=
                NULL) {
                /* issue 18: a dedupe query that cannot see its batches */
                snprintf(detail, sizeof(detail), "not exactly once: %s",
                         forwarder_route_exactly_once_error(a->src.forwarder,
                                                            (int)i));
                add_check(checks, name, 0, detail, &all_ok);
            } else if (rs.state == FORWARDER_RUNNING) {
                add_check(checks, name, 1, "running", &all_ok);
            } else if (rs.state == FORWARDER_PAUSED_OPERATOR) {
                /* an operator's pause is not a fault */
                add_check(checks, name, 1, "paused by the operator", &all_ok);
                op_paused = 1;
            } else {
                snprintf(detail, sizeof(detail), "%s: %s",
                         forwarder_route_state_name(rs.state), rs.reason);
                add_check(checks, name, 0, detail, &all_ok);
            }
        }
        /* what else forwarder_ready refuses (no token yet), unless it is
         * only an operator's pause */
        if (!ok && all_ok && !op_paused) {
            add_check(checks, "adx", 0, why, &all_ok);
        }
    }
    cJSON_AddBoolToObject(o, "ready", all_ok);
    respond_obj(req, all_ok ? 200 : 503, o);
}

static void h_readyz(struct admin *a, struct http_request *req)
{
    struct rjob *j = rjob_new(req);

    if (j != NULL) {
        rjob_start(a, req, j, RJ_STATS, readyz_answer);
    }
}

/* ----------------------------------------------------------- /status */

/* The intake's view of (topic, partition), or NULL. */
static const struct intake_partition *find_ip(const struct intake_partition *ip,
                                              size_t n, const char *topic,
                                              int32_t partition)
{
    for (size_t i = 0; i < n; i++) {
        if (ip[i].partition == partition && strcmp(ip[i].topic, topic) == 0) {
            return &ip[i];
        }
    }
    return NULL;
}

static const struct journal_partition_stats *
find_jp(const struct journal_stats *st, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < st->nparts; i++) {
        if (st->parts[i].partition == partition &&
            strcmp(st->parts[i].topic, topic) == 0) {
            return &st->parts[i];
        }
    }
    return NULL;
}

/* One partition object from the intake's and the journal's views (either
 * may be NULL). */
static cJSON *partition_json(const char *topic, int32_t partition,
                             const struct intake_partition *ip,
                             const struct journal_partition_stats *jp,
                             const int64_t *delivered_off)
{
    cJSON *p = cJSON_CreateObject();

    cJSON_AddStringToObject(p, "topic", topic);
    add_num(p, "partition", partition);
    cJSON_AddBoolToObject(p, "assigned", ip != NULL && ip->assigned);
    add_off(p, "consumed_offset", ip ? ip->consumed : -1);
    add_off(p, "journaled_offset",
            jp ? jp->high_offset : (ip ? ip->journaled : -1));
    add_off(p, "committed_offset", ip ? ip->committed : -1);
    add_off(p, "settled_offset", ip ? ip->settled : -1);
    add_off(p, "batched_offset", jp ? jp->batched_offset : -1);
    add_off(p, "delivered_offset", delivered_off ? *delivered_off : -1);
    add_off(p, "end_offset", ip ? ip->end_offset : -1);
    add_off(p, "lag", ip ? ip->lag : -1);
    add_num(p, "consumed", ip ? (double)ip->n_consumed : 0);
    add_num(p, "journal_pending", jp ? (double)jp->pending_count : 0);
    add_num(p, "journal_pending_bytes", jp ? (double)jp->pending_bytes : 0);
    add_num(p, "journal_inflight", jp ? (double)jp->inflight_count : 0);
    add_num(p, "journal_inflight_bytes", jp ? (double)jp->inflight_bytes : 0);
    add_num(p, "journal_delivered", jp ? (double)jp->delivered_count : 0);
    add_num(p, "journal_delivered_bytes", jp ? (double)jp->delivered_bytes : 0);
    add_num(p, "dead_letters", jp ? (double)jp->dead_count : 0);
    add_num(p, "oldest_pending_ms", jp ? (double)jp->oldest_pending_ms : 0);
    /* offset continuity (gateway/INTAKE.md) */
    add_num(p, "epoch", jp ? (double)jp->epoch : (ip ? (double)ip->epoch : 0));
    cJSON_AddBoolToObject(p, "sealed", jp != NULL && jp->sealed);
    add_off(p, "epoch_start", jp ? jp->epoch_start : -1);
    cJSON_AddBoolToObject(p, "rewound", ip != NULL && ip->rewound);
    add_off(p, "rewind_offset", ip ? ip->rewind_offset : -1);
    add_off(p, "log_start_offset", ip ? ip->log_start : -1);
    add_off(p, "log_end_offset", ip ? ip->log_end : -1);
    add_num(p, "gaps", ip ? (double)ip->gaps : 0);
    add_num(p, "gap_events", ip ? (double)ip->gap_events : 0);
    add_off(p, "gap_first_offset", ip ? ip->gap_first : -1);
    add_off(p, "gap_last_offset", ip ? ip->gap_last : -1);
    return p;
}

static cJSON *route_stats_json(const struct forwarder_route_stats *rs)
{
    cJSON *f = cJSON_CreateObject();

    cJSON_AddStringToObject(f, "state", forwarder_route_state_name(rs->state));
    cJSON_AddStringToObject(f, "last_error", rs->reason);
    add_num(f, "batches_in_flight", rs->inflight);
    add_num(f, "batches_cut", (double)rs->batches_cut);
    add_num(f, "batches_delivered", (double)rs->batches_delivered);
    add_num(f, "events_delivered", (double)rs->events_delivered);
    add_num(f, "bytes_delivered", (double)rs->bytes_delivered);
    add_num(f, "bytes_sent", (double)rs->bytes_sent);
    add_num(f, "requests", (double)rs->requests);
    add_num(f, "transient_errors", (double)rs->transient);
    add_num(f, "throttled", (double)rs->throttled);
    add_num(f, "ambiguous", (double)rs->ambiguous);
    add_num(f, "dedupe_queries", (double)rs->dedupe_queries);
    add_num(f, "dedupe_found", (double)rs->dedupe_found);
    add_num(f, "dedupe_absent_early", (double)rs->dedupe_absent_early);
    add_num(f, "possible_duplicates", (double)rs->possible_duplicates);
    add_num(f, "permanent_errors", (double)rs->permanent);
    add_num(f, "splits", (double)rs->splits);
    add_num(f, "dead_events", (double)rs->dead_events);
    add_num(f, "config_errors", (double)rs->config_errors);
    add_num(f, "auth_errors", (double)rs->auth_errors);
    add_num(f, "last_delivered_ms", (double)rs->last_delivered_ms);
    add_num(f, "last_latency_ms", rs->last_latency_ms);
    return f;
}

static cJSON *intake_json(struct intake *in)
{
    struct intake_counters c;
    cJSON *o = cJSON_CreateObject();

    intake_get_counters(in, &c);
    add_num(o, "consumed", (double)c.consumed);
    add_num(o, "journaled", (double)c.journaled);
    add_num(o, "duplicates", (double)c.duplicates);
    add_num(o, "tombstones", (double)c.tombstones);
    add_num(o, "commits", (double)c.commits);
    add_num(o, "commit_errors", (double)c.commit_errors);
    add_num(o, "append_errors", (double)c.append_errors);
    add_num(o, "kafka_errors", (double)c.kafka_errors);
    add_num(o, "rebalances", (double)c.rebalances);
    add_num(o, "lost_partitions", (double)c.lost);
    add_num(o, "dropped", (double)c.dropped);
    add_num(o, "backpressure_pauses", (double)c.pauses);
    add_num(o, "offset_rewinds", (double)c.rewinds);
    add_num(o, "partitions_rewound", (double)c.rewound);
    add_num(o, "epochs_started", (double)c.epochs);
    add_num(o, "offset_gaps", (double)c.gaps);
    add_num(o, "offset_gap_events", (double)c.gap_events);
    cJSON_AddBoolToObject(o, "paused", c.paused);
    cJSON_AddStringToObject(o, "last_error", c.last_error);
    add_num(o, "last_error_ms", (double)c.last_error_ms);
    return o;
}

/* /status journal: the disk (journal_space) and the replay window kept
 * (retention yields to space pressure). */
static void status_space(struct admin *a, cJSON *j,
                         const struct journal_stats *st, int64_t now)
{
    struct journal_space sp;
    cJSON *d, *r;

    journal_space(a->src.journal, &sp);
    add_num(j, "used_bytes", (double)sp.used_bytes);
    add_num(j, "effective_max_bytes", (double)sp.effective_cap);
    d = cJSON_AddObjectToObject(j, "disk");
    add_num(d, "fs_bytes", (double)sp.fs_bytes);
    add_num(d, "free_bytes", (double)sp.fs_free_bytes);
    add_num(d, "reserve_bytes", (double)sp.reserve_bytes);
    cJSON_AddBoolToObject(d, "limits_cap", sp.disk_limited);
    cJSON_AddStringToObject(d, "full",
                            sp.full == JOURNAL_FULL_DISK  ? "disk"
                            : sp.full == JOURNAL_FULL_CAP ? "cap"
                                                          : "no");
    r = cJSON_AddObjectToObject(j, "retention");
    if (a->src.forwarder != NULL) {
        struct forwarder_retention fr;

        forwarder_retention(a->src.forwarder, &fr);
        add_num(r, "retention_ms", (double)fr.retention_ms);
        add_num(r, "min_retention_ms", (double)fr.min_retention_ms);
        cJSON_AddBoolToObject(r, "space_pressure", fr.pressure);
        add_num(r, "early_retired_events", (double)fr.early_events);
        add_num(r, "last_early_retire_ms", (double)fr.last_early_ms);
        /* shortened: the last early retirement is younger than the
         * normal retention would have allowed */
        cJSON_AddBoolToObject(r, "shortened",
                              fr.last_early_ms > 0 &&
                                  now - fr.last_early_ms < fr.retention_ms);
    }
    if (st->oldest_delivered_ms > 0) {
        add_num(r, "replay_window_ms", (double)(now - st->oldest_delivered_ms));
    } else {
        cJSON_AddNullToObject(r, "replay_window_ms");
    }
}

static void status_answer(struct admin *a, struct http_request *req,
                          struct rjob *job)
{
    const struct config *cfg = a->src.cfg;
    const struct intake_partition *ip = NULL;
    const struct journal_stats st = job->st;
    /* delivered offsets: a failure leaves them null rather than failing
     * the status */
    const struct recover_delivered *dl = job->dl_rc == 0 ? job->dl : NULL;
    size_t nip = 0, ndl = job->dl_rc == 0 ? job->ndl : 0;
    cJSON *o, *j, *routes, *tok;
    int64_t now = wall_ms();

    if (job->st_rc < 0) {
        respond_error(req, 500, "journal stats: %s", job->st_err);
        return;
    }
    if (a->src.intake != NULL) {
        ip = intake_partitions(a->src.intake, &nip);
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", KADX_VERSION);
    add_num(o, "uptime_s", (double)(now - a->started_ms) / 1000.0);
    add_num(o, "now_ms", (double)now);
    cJSON_AddBoolToObject(o, "paused", a->paused_all);

    j = cJSON_AddObjectToObject(o, "journal");
    cJSON_AddStringToObject(j, "path", journal_path(a->src.journal));
    add_num(j, "file_bytes", (double)st.file_bytes);
    add_num(j, "wal_bytes", (double)st.wal_bytes);
    add_num(j, "max_bytes", (double)st.max_bytes);
    add_num(j, "pending_bytes", (double)st.pending_bytes);
    add_num(j, "batches_unfinished", (double)st.batches_unfinished);
    add_num(j, "chunks", (double)st.chunks);
    status_space(a, j, &st, now);

    if (a->src.intake != NULL) {
        cJSON_AddItemToObject(o, "intake", intake_json(a->src.intake));
    } else {
        cJSON_AddNullToObject(o, "intake");
    }
    tok = cJSON_AddObjectToObject(o, "token");
    if (a->src.forwarder != NULL) {
        int64_t exp = forwarder_token_expires_ms(a->src.forwarder);
        const char *terr = forwarder_token_error(a->src.forwarder);

        add_num(tok, "expires_ms", (double)exp);
        if (exp > 0) {
            add_num(tok, "expires_in_s", (double)(exp - now) / 1000.0);
        } else {
            cJSON_AddNullToObject(tok, "expires_in_s");
        }
        cJSON_AddStringToObject(tok, "error", terr ? terr : "");
        add_num(o, "batches_in_flight",
                (double)forwarder_inflight(a->src.forwarder));
    }

    routes = cJSON_AddArrayToObject(o, "routes");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct config_route *cr = &cfg->routes[r];
        cJSON *ro = cJSON_CreateObject();
        cJSON *parts;
        int64_t dead = 0, depth = 0, bytes = 0;

        cJSON_AddStringToObject(ro, "name", cr->name);
        add_num(ro, "index", (double)r);
        cJSON_AddStringToObject(ro, "topic",
                                cr->topic ? cr->topic : cr->topic_regex);
        cJSON_AddStringToObject(ro, "database", cr->database);
        cJSON_AddStringToObject(ro, "table", cr->table);
        if (a->src.forwarder != NULL) {
            struct forwarder_route_stats rs;

            if (forwarder_route_stats(a->src.forwarder, (int)r, &rs) == 0) {
                cJSON_AddItemToObject(ro, "forwarder", route_stats_json(&rs));
            }
        }
        parts = cJSON_AddArrayToObject(ro, "partitions");
        /* journal partitions of this route, then partitions the intake
         * knows for it that the journal has not seen yet */
        for (size_t i = 0; i < st.nparts; i++) {
            const struct journal_partition_stats *jp = &st.parts[i];
            const int64_t *doff = NULL;

            if (jp->route != (int)r) {
                continue;
            }
            for (size_t k = 0; k < ndl; k++) {
                if (dl[k].partition == jp->partition &&
                    strcmp(dl[k].topic, jp->topic) == 0) {
                    doff = &dl[k].delivered_offset;
                }
            }
            /* an older (sealed) epoch: the journal's view only */
            cJSON_AddItemToArray(
                parts, partition_json(jp->topic, jp->partition,
                                      jp->sealed ? NULL
                                                 : find_ip(ip, nip, jp->topic,
                                                           jp->partition),
                                      jp, jp->sealed ? NULL : doff));
            dead += jp->dead_count;
            depth += jp->pending_count + jp->inflight_count;
            bytes += jp->pending_bytes + jp->inflight_bytes;
        }
        for (size_t i = 0; i < nip; i++) {
            if (ip[i].route != (int)r ||
                find_jp(&st, ip[i].topic, ip[i].partition) != NULL) {
                continue;
            }
            cJSON_AddItemToArray(parts,
                                 partition_json(ip[i].topic, ip[i].partition,
                                                &ip[i], NULL, NULL));
        }
        add_num(ro, "journal_depth", (double)depth);
        add_num(ro, "journal_depth_bytes", (double)bytes);
        add_num(ro, "dead_letters", (double)dead);
        cJSON_AddItemToArray(routes, ro);
    }
    respond_obj(req, 200, o);
}

static void h_status(struct admin *a, struct http_request *req)
{
    struct rjob *j = rjob_new(req);

    if (j != NULL) {
        rjob_start(a, req, j, RJ_STATS | RJ_DELIVERED, status_answer);
    }
}

/* ---------------------------------------------------------- /metrics */

/* A growable text buffer; on allocation failure it stops growing and
 * remembers it. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom) {
        return;
    }
    for (;;) {
        size_t room = b->cap - b->len;

        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t ncap = b->cap ? b->cap * 2 : 8192;
            char *np;

            while (ncap - b->len <= (size_t)n) {
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
    }
}

/* A label value, escaped per the exposition format (\\, \", \n). */
static void sb_label(struct sbuf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\') {
            sb_printf(b, "\\\\");
        } else if (*s == '"') {
            sb_printf(b, "\\\"");
        } else if (*s == '\n') {
            sb_printf(b, "\\n");
        } else {
            sb_printf(b, "%c", *s);
        }
    }
}

static void sb_family(struct sbuf *b, const char *name, const char *type,
                      const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{route="R"} v */
static void sb_route_sample(struct sbuf *b, const char *name, const char *route,
                            const char *extra, double v)
{
    sb_printf(b, "%s{route=\"", name);
    sb_label(b, route);
    sb_printf(b, "\"%s} %.17g\n", extra ? extra : "", v);
}

static void sb_part_sample(struct sbuf *b, const char *name, const char *topic,
                           int32_t partition, double v)
{
    sb_printf(b, "%s{topic=\"", name);
    sb_label(b, topic);
    sb_printf(b, "\",partition=\"%" PRId32 "\"} %.17g\n", partition, v);
}

/* Per-route forwarder counters: one family, one sample per route. */
typedef double (*rs_get_fn)(const struct forwarder_route_stats *rs);

#define RS_GETTER(field)                                                       \
    static double rs_##field(const struct forwarder_route_stats *rs)           \
    {                                                                          \
        return (double)rs->field;                                              \
    }
RS_GETTER(events_delivered)
RS_GETTER(batches_delivered)
RS_GETTER(bytes_delivered)
RS_GETTER(bytes_sent)
RS_GETTER(requests)
RS_GETTER(dead_events)
RS_GETTER(possible_duplicates)
RS_GETTER(dedupe_queries)
RS_GETTER(splits)
RS_GETTER(permanent)
RS_GETTER(config_errors)
RS_GETTER(inflight)

static double rs_paused(const struct forwarder_route_stats *rs)
{
    return rs->state != FORWARDER_RUNNING;
}

static const struct {
    const char *name;
    const char *type;
    const char *help;
    rs_get_fn get;
} route_metrics[] = {
    {"kadx_delivered_events_total", "counter",
     "Events delivered to ADX (HTTP 200), replays included.",
     rs_events_delivered},
    {"kadx_delivered_batches_total", "counter",
     "Batches delivered to ADX (HTTP 200).", rs_batches_delivered},
    {"kadx_delivered_bytes_total", "counter",
     "Record bytes delivered (uncompressed request bodies).",
     rs_bytes_delivered},
    {"kadx_sent_bytes_total", "counter",
     "Compressed request bytes sent to ADX, all attempts.", rs_bytes_sent},
    {"kadx_ingest_requests_total", "counter", "Streaming ingest requests made.",
     rs_requests},
    {"kadx_dead_events_total", "counter",
     "Events moved to the dead-letter set (INV-6).", rs_dead_events},
    {"kadx_possible_duplicates_total", "counter",
     "Batches resent after an ambiguous outcome without a dedupe column.",
     rs_possible_duplicates},
    {"kadx_dedupe_queries_total", "counter",
     "Queries asking ADX whether an ambiguous batch arrived.",
     rs_dedupe_queries},
    {"kadx_batch_splits_total", "counter",
     "Bisections of batches ADX refused permanently.", rs_splits},
    {"kadx_permanent_errors_total", "counter",
     "Permanent (non-retryable) answers from ADX.", rs_permanent},
    {"kadx_config_errors_total", "counter",
     "Configuration errors from ADX (table, mapping, permission).",
     rs_config_errors},
    {"kadx_inflight_batches", "gauge", "Batches this process holds in flight.",
     rs_inflight},
    {"kadx_route_paused", "gauge",
     "1 while the route is paused (operator, configuration error, retries).",
     rs_paused},
};

/* The batch latency histogram: cumulative buckets per route. */
static void metrics_latency(struct sbuf *b, const struct config *cfg,
                            const struct forwarder_route_stats *rs)
{
    static const char name[] = "kadx_batch_latency_seconds";

    sb_family(b, name, "histogram",
              "Seconds from a batch's cut to ADX's acknowledgement, retries "
              "included.");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        uint64_t cum = 0;

        for (size_t i = 0; i <= FORWARDER_LATENCY_BUCKETS; i++) {
            cum += rs[r].latency_hist[i];
            sb_printf(b, "%s_bucket{route=\"", name);
            sb_label(b, cfg->routes[r].name);
            if (i < FORWARDER_LATENCY_BUCKETS) {
                sb_printf(b, "\",le=\"%g\"} %" PRIu64 "\n",
                          forwarder_latency_bounds[i], cum);
            } else {
                sb_printf(b, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
            }
        }
        sb_route_sample(b, "kadx_batch_latency_seconds_sum",
                        cfg->routes[r].name, NULL, rs[r].latency_sum_s);
        sb_route_sample(b, "kadx_batch_latency_seconds_count",
                        cfg->routes[r].name, NULL, (double)rs[r].latency_count);
    }
}

static void metrics_forwarder(struct admin *a, struct sbuf *b)
{
    const struct config *cfg = a->src.cfg;
    struct forwarder_route_stats *rs;
    size_t n = cfg->nroutes;
    int64_t exp;

    rs = calloc(n ? n : 1, sizeof(*rs));
    if (rs == NULL) {
        b->oom = 1;
        return;
    }
    for (size_t r = 0; r < n; r++) {
        forwarder_route_stats(a->src.forwarder, (int)r, &rs[r]);
    }
    for (size_t m = 0; m < sizeof(route_metrics) / sizeof(route_metrics[0]);
         m++) {
        sb_family(b, route_metrics[m].name, route_metrics[m].type,
                  route_metrics[m].help);
        for (size_t r = 0; r < n; r++) {
            sb_route_sample(b, route_metrics[m].name, cfg->routes[r].name, NULL,
                            route_metrics[m].get(&rs[r]));
        }
    }
    sb_family(b, "kadx_retries_total", "counter",
              "Ingest attempts that will be retried, by reason.");
    for (size_t r = 0; r < n; r++) {
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"transient\"", (double)rs[r].transient);
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"throttled\"", (double)rs[r].throttled);
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"ambiguous\"", (double)rs[r].ambiguous);
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"auth\"", (double)rs[r].auth_errors);
    }
    metrics_latency(b, cfg, rs);
    free(rs);
    exp = forwarder_token_expires_ms(a->src.forwarder);
    if (exp > 0) {
        sb_family(b, "kadx_token_expiry_seconds", "gauge",
                  "Seconds until the ADX access token expires.");
        sb_printf(b, "kadx_token_expiry_seconds %.3f\n",
                  (double)(exp - wall_ms()) / 1000.0);
    }
}

static void metrics_intake(struct admin *a, struct sbuf *b)
{
    struct intake_counters c;
    const struct intake_partition *ip;
    size_t n = 0;

    intake_get_counters(a->src.intake, &c);
    sb_family(b, "kadx_journaled_events_total", "counter",
              "Events newly stored in the journal by this process.");
    sb_printf(b, "kadx_journaled_events_total %" PRIu64 "\n", c.journaled);
    sb_family(b, "kadx_duplicate_events_total", "counter",
              "Kafka redeliveries the journal ignored (INV-2).");
    sb_printf(b, "kadx_duplicate_events_total %" PRIu64 "\n", c.duplicates);
    sb_family(b, "kadx_tombstones_total", "counter",
              "Null-value messages skipped.");
    sb_printf(b, "kadx_tombstones_total %" PRIu64 "\n", c.tombstones);
    sb_family(b, "kadx_commits_total", "counter",
              "Offset commits Kafka acknowledged.");
    sb_printf(b, "kadx_commits_total %" PRIu64 "\n", c.commits);
    sb_family(b, "kadx_commit_errors_total", "counter",
              "Partition offset commits that failed.");
    sb_printf(b, "kadx_commit_errors_total %" PRIu64 "\n", c.commit_errors);
    sb_family(b, "kadx_rebalances_total", "counter",
              "Consumer group assign, revoke and lost callbacks.");
    sb_printf(b, "kadx_rebalances_total %" PRIu64 "\n", c.rebalances);
    sb_family(b, "kadx_intake_paused", "gauge",
              "1 while intake is paused (backpressure or operator).");
    sb_printf(b, "kadx_intake_paused %d\n", c.paused ? 1 : 0);
    sb_family(b, "kadx_offset_rewinds_total", "counter",
              "Partitions found gone backwards (recreated, rebuilt).");
    sb_printf(b, "kadx_offset_rewinds_total %" PRIu64 "\n", c.rewinds);
    sb_family(b, "kadx_partitions_rewound", "gauge",
              "Partitions paused until an operator starts a new epoch.");
    sb_printf(b, "kadx_partitions_rewound %d\n", c.rewound);
    sb_family(b, "kadx_offset_epochs_total", "counter",
              "New offset epochs started.");
    sb_printf(b, "kadx_offset_epochs_total %" PRIu64 "\n", c.epochs);
    sb_family(b, "kadx_offset_gaps_total", "counter",
              "Retention gaps: offsets deleted before kadx read them.");
    sb_printf(b, "kadx_offset_gaps_total %" PRIu64 "\n", c.gaps);

    ip = intake_partitions(a->src.intake, &n);
    sb_family(b, "kadx_consumed_events_total", "counter",
              "Messages consumed from Kafka by this process.");
    for (size_t i = 0; i < n; i++) {
        sb_part_sample(b, "kadx_consumed_events_total", ip[i].topic,
                       ip[i].partition, (double)ip[i].n_consumed);
    }
    sb_family(b, "kadx_committed_offset", "gauge",
              "Highest offset whose commit Kafka acknowledged.");
    for (size_t i = 0; i < n; i++) {
        if (ip[i].committed >= 0) {
            sb_part_sample(b, "kadx_committed_offset", ip[i].topic,
                           ip[i].partition, (double)ip[i].committed);
        }
    }
    sb_family(b, "kadx_offset_gap_events_total", "counter",
              "Events skipped by retention gaps, per partition.");
    for (size_t i = 0; i < n; i++) {
        sb_part_sample(b, "kadx_offset_gap_events_total", ip[i].topic,
                       ip[i].partition, (double)ip[i].gap_events);
    }
    sb_family(b, "kadx_partition_rewound", "gauge",
              "1 while the partition is paused: it went backwards.");
    for (size_t i = 0; i < n; i++) {
        if (ip[i].assigned) {
            sb_part_sample(b, "kadx_partition_rewound", ip[i].topic,
                           ip[i].partition, ip[i].rewound ? 1 : 0);
        }
    }
    sb_family(b, "kadx_consumer_lag", "gauge",
              "Messages in Kafka not yet consumed, per partition.");
    for (size_t i = 0; i < n; i++) {
        if (ip[i].lag >= 0) {
            sb_part_sample(b, "kadx_consumer_lag", ip[i].topic, ip[i].partition,
                           (double)ip[i].lag);
        }
    }
}

/* One family per route/topic/partition and state: event counts, or their
 * bytes. */
static void metrics_by_state(struct sbuf *b, const struct config *cfg,
                             const struct journal_stats *st, const char *name,
                             const char *help, int bytes)
{
    static const char *const state_names[] = {"pending", "inflight",
                                              "delivered", "dead"};

    sb_family(b, name, "gauge", help);
    for (size_t i = 0; i < st->nparts; i++) {
        const struct journal_partition_stats *p = &st->parts[i];
        int64_t counts[4] = {p->pending_count, p->inflight_count,
                             p->delivered_count, p->dead_count};
        int64_t sizes[4] = {p->pending_bytes, p->inflight_bytes,
                            p->delivered_bytes, p->dead_bytes};
        const int64_t *v = bytes ? sizes : counts;

        /* the epochs of one partition (sorted together): one series */
        while (i + 1 < st->nparts && st->parts[i + 1].route == p->route &&
               st->parts[i + 1].partition == p->partition &&
               strcmp(st->parts[i + 1].topic, p->topic) == 0) {
            const struct journal_partition_stats *q = &st->parts[++i];

            counts[0] += q->pending_count;
            counts[1] += q->inflight_count;
            counts[2] += q->delivered_count;
            counts[3] += q->dead_count;
            sizes[0] += q->pending_bytes;
            sizes[1] += q->inflight_bytes;
            sizes[2] += q->delivered_bytes;
            sizes[3] += q->dead_bytes;
        }
        const char *route = p->route >= 0 && (size_t)p->route < cfg->nroutes
                                ? cfg->routes[p->route].name
                                : "";

        for (int s = 0; s < 4; s++) {
            sb_printf(b, "%s{route=\"", name);
            sb_label(b, route);
            sb_printf(b, "\",topic=\"");
            sb_label(b, p->topic);
            sb_printf(
                b, "\",partition=\"%" PRId32 "\",state=\"%s\"} %" PRId64 "\n",
                p->partition, state_names[s], v[s]);
        }
    }
}

/* The disk under the journal and retention under space pressure. */
static void metrics_space(struct admin *a, struct sbuf *b,
                          const struct journal_stats *st)
{
    struct journal_space sp;
    int64_t now = wall_ms();

    journal_space(a->src.journal, &sp);
    sb_family(b, "kadx_journal_disk_free_bytes", "gauge",
              "bytes the journal's filesystem still grants");
    sb_printf(b, "kadx_journal_disk_free_bytes %" PRId64 "\n",
              sp.fs_free_bytes);
    sb_family(b, "kadx_journal_reserve_bytes", "gauge",
              "disk bytes appends never take (journal.reserve_bytes)");
    sb_printf(b, "kadx_journal_reserve_bytes %" PRId64 "\n", sp.reserve_bytes);
    sb_family(b, "kadx_journal_effective_max_bytes", "gauge",
              "the cap appends obey: journal.max_bytes or what the disk "
              "holds minus the reserve, the smaller");
    sb_printf(b, "kadx_journal_effective_max_bytes %" PRId64 "\n",
              sp.effective_cap == INT64_MAX ? (int64_t)0 : sp.effective_cap);
    sb_family(b, "kadx_journal_used_bytes", "gauge",
              "journal pages in use (the cap's measure)");
    sb_printf(b, "kadx_journal_used_bytes %" PRId64 "\n", sp.used_bytes);
    sb_family(b, "kadx_journal_disk_full", "gauge",
              "1 while appends are refused because the disk is full");
    sb_printf(b, "kadx_journal_disk_full %d\n",
              sp.full == JOURNAL_FULL_DISK ? 1 : 0);
    sb_family(b, "kadx_journal_replay_window_seconds", "gauge",
              "age of the oldest delivered event still kept for replay");
    sb_printf(b, "kadx_journal_replay_window_seconds %.3f\n",
              st->oldest_delivered_ms > 0
                  ? (double)(now - st->oldest_delivered_ms) / 1000.0
                  : 0.0);
    if (a->src.forwarder != NULL) {
        struct forwarder_retention fr;

        forwarder_retention(a->src.forwarder, &fr);
        sb_family(b, "kadx_early_retired_events_total", "counter",
                  "delivered events retired before journal.retention_ms "
                  "under disk space pressure");
        sb_printf(b, "kadx_early_retired_events_total %" PRId64 "\n",
                  fr.early_events);
    }
}

/* Per route: age of its oldest undelivered (pending or in-flight) event,
 * from its journal append time; 0 when nothing waits. */
static void metrics_oldest(struct sbuf *b, const struct config *cfg,
                           const struct journal_stats *st)
{
    int64_t now = wall_ms();

    sb_family(b, "kadx_oldest_undelivered_age_seconds", "gauge",
              "Age of the route's oldest event not yet delivered (journal "
              "append time), 0 when none.");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        int64_t oldest = 0;

        for (size_t i = 0; i < st->nparts; i++) {
            const struct journal_partition_stats *p = &st->parts[i];

            if (p->route == (int)r && p->oldest_pending_ms > 0 &&
                (oldest == 0 || p->oldest_pending_ms < oldest)) {
                oldest = p->oldest_pending_ms;
            }
        }
        sb_route_sample(
            b, "kadx_oldest_undelivered_age_seconds", cfg->routes[r].name, NULL,
            oldest > 0 && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0);
    }
}

/* kadx_build_info and the standard process_* metrics. */
static void metrics_process(struct sbuf *b)
{
    struct procstat ps;

    sb_family(b, "kadx_build_info", "gauge",
              "Always 1; the labels say which kadx this is.");
    sb_printf(b,
              "kadx_build_info{version=\"%s\",sqlite=\"%s\","
              "librdkafka=\"%s\",libuv=\"%s\"} 1\n",
              KADX_VERSION, sqlite3_libversion(), rd_kafka_version_str(),
              uv_version_string());
    if (procstat_read(&ps) < 0) {
        return;
    }
    sb_family(b, "process_cpu_seconds_total", "counter",
              "Total user and system CPU time spent in seconds.");
    sb_printf(b, "process_cpu_seconds_total %.2f\n", ps.cpu_seconds);
    sb_family(b, "process_resident_memory_bytes", "gauge",
              "Resident memory size in bytes.");
    sb_printf(b, "process_resident_memory_bytes %" PRId64 "\n", ps.rss_bytes);
    sb_family(b, "process_virtual_memory_bytes", "gauge",
              "Virtual memory size in bytes.");
    sb_printf(b, "process_virtual_memory_bytes %" PRId64 "\n", ps.vsize_bytes);
    sb_family(b, "process_open_fds", "gauge",
              "Number of open file descriptors.");
    sb_printf(b, "process_open_fds %" PRId64 "\n", ps.open_fds);
    if (ps.max_fds >= 0) {
        sb_family(b, "process_max_fds", "gauge",
                  "Maximum number of open file descriptors.");
        sb_printf(b, "process_max_fds %" PRId64 "\n", ps.max_fds);
    }
    sb_family(b, "process_start_time_seconds", "gauge",
              "Start time of the process since unix epoch in seconds.");
    sb_printf(b, "process_start_time_seconds %.2f\n", ps.start_time_seconds);
}

static void metrics_journal(struct admin *a, struct sbuf *b,
                            const struct journal_stats *st)
{
    const struct config *cfg = a->src.cfg;

    sb_family(b, "kadx_journal_file_bytes", "gauge",
              "Size of the journal database file.");
    sb_printf(b, "kadx_journal_file_bytes %" PRId64 "\n", st->file_bytes);
    sb_family(b, "kadx_journal_wal_bytes", "gauge",
              "Size of the journal's write-ahead log.");
    sb_printf(b, "kadx_journal_wal_bytes %" PRId64 "\n", st->wal_bytes);
    sb_family(b, "kadx_journal_max_bytes", "gauge",
              "The journal's byte cap (0 = none).");
    sb_printf(b, "kadx_journal_max_bytes %" PRId64 "\n", st->max_bytes);
    metrics_space(a, b, st);
    sb_family(b, "kadx_journal_pending_bytes", "gauge",
              "Bytes of events not yet delivered nor dead.");
    sb_printf(b, "kadx_journal_pending_bytes %" PRId64 "\n", st->pending_bytes);
    sb_family(b, "kadx_journal_unfinished_batches", "gauge",
              "Batches pending, sent or failed in the journal.");
    sb_printf(b, "kadx_journal_unfinished_batches %" PRId64 "\n",
              st->batches_unfinished);
    metrics_by_state(b, cfg, st, "kadx_journal_events",
                     "Events in the journal by state.", 0);
    metrics_by_state(b, cfg, st, "kadx_journal_bytes",
                     "Event bytes in the journal by state.", 1);
    metrics_oldest(b, cfg, st);
}

static void metrics_answer(struct admin *a, struct http_request *req,
                           struct rjob *job)
{
    static const struct http_header ct = {
        "Content-Type", "text/plain; version=0.0.4; charset=utf-8"};
    struct sbuf b;

    memset(&b, 0, sizeof(b));
    if (job->st_rc < 0) {
        respond_error(req, 500, "journal stats: %s", job->st_err);
        return;
    }
    sb_family(&b, "kadx_uptime_seconds", "gauge",
              "Seconds since the admin server started.");
    sb_printf(&b, "kadx_uptime_seconds %.3f\n",
              (double)(wall_ms() - a->started_ms) / 1000.0);
    sb_family(&b, "kadx_paused", "gauge",
              "1 while the operator paused the whole gateway.");
    sb_printf(&b, "kadx_paused %d\n", a->paused_all);
    metrics_process(&b);
    metrics_journal(a, &b, &job->st);
    if (a->src.intake != NULL) {
        metrics_intake(a, &b);
    }
    if (a->src.forwarder != NULL) {
        metrics_forwarder(a, &b);
    }
    if (b.oom) {
        free(b.p);
        respond_error(req, 500, "out of memory");
        return;
    }
    http_respond(req, 200, &ct, 1, b.p, b.len);
    free(b.p);
}

static void h_metrics(struct admin *a, struct http_request *req)
{
    struct rjob *j = rjob_new(req);

    if (j != NULL) {
        rjob_start(a, req, j, RJ_STATS, metrics_answer);
    }
}

/* ------------------------------------------------------ /dead-letters */

static int query_int(struct http_request *req, const char *name, int64_t min,
                     int64_t max, int64_t *out)
{
    char buf[32];
    int64_t v;
    char *end;
    int n = http_query_param(http_req_query(req), name, buf, sizeof(buf));

    if (n == -ENOENT) {
        return 0;
    }
    errno = 0;
    v = n > 0 ? strtoll(buf, &end, 10) : 0;
    if (n <= 0 || errno != 0 || *end != '\0' || v < min || v > max) {
        respond_error(req, 400,
                      "'%s' must be an integer in [%" PRId64 ", %" PRId64 "]",
                      name, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static void dead_answer(struct admin *a, struct http_request *req,
                        struct rjob *job)
{
    const struct config *cfg = a->src.cfg;
    const struct journal_dead *list = job->list;
    size_t n = job->n;
    cJSON *o, *arr;

    if (job->dead_rc < 0) {
        respond_error(req, 500, "journal: %s", job->dead_err);
        return;
    }
    o = cJSON_CreateObject();
    add_num(o, "total", (double)job->total);
    add_num(o, "count", (double)n);
    arr = cJSON_AddArrayToObject(o, "dead_letters");
    for (size_t i = 0; i < n; i++) {
        const struct journal_dead *d = &list[i];
        cJSON *e = cJSON_CreateObject();

        add_num(e, "id", (double)d->id);
        add_num(e, "route", d->route);
        cJSON_AddStringToObject(e, "route_name",
                                d->route >= 0 && (size_t)d->route < cfg->nroutes
                                    ? cfg->routes[d->route].name
                                    : "");
        cJSON_AddStringToObject(e, "topic", d->topic);
        add_num(e, "partition", d->partition);
        add_num(e, "offset", (double)d->offset);
        add_num(e, "timestamp_ms", (double)d->timestamp_ms);
        add_num(e, "dead_ms", (double)d->dead_ms);
        cJSON_AddStringToObject(e, "batch_id", d->batch_id);
        cJSON_AddStringToObject(e, "reason", d->reason ? d->reason : "");
        add_num(e, "value_bytes", (double)d->value_len);
        cJSON_AddItemToArray(arr, e);
    }
    /* a full page may have a next one: say where it starts */
    if (n == job->limit && n > 0) {
        add_num(o, "next_after", (double)list[n - 1].id);
    } else {
        cJSON_AddNullToObject(o, "next_after");
    }
    respond_obj(req, 200, o);
}

static void h_dead_letters(struct admin *a, struct http_request *req)
{
    struct rjob *j;
    int64_t after = 0, limit = DEAD_PAGE_DEFAULT;
    int route = -1;
    char rbuf[256];
    int rn;

    if (query_int(req, "after", 0, INT64_MAX / 2, &after) < 0 ||
        query_int(req, "limit", 1, DEAD_PAGE_MAX, &limit) < 0) {
        return;
    }
    rn = http_query_param(http_req_query(req), "route", rbuf, sizeof(rbuf));
    if (rn >= 0) {
        cJSON *v = cJSON_CreateString(rbuf);

        route = route_arg(a, req, v);
        cJSON_Delete(v);
        if (route == -2) {
            return;
        }
    } else if (rn != -ENOENT) {
        respond_error(req, 400, "bad 'route'");
        return;
    }
    j = rjob_new(req);
    if (j == NULL) {
        return;
    }
    j->route = route;
    j->after = after;
    j->limit = (size_t)limit;
    rjob_start(a, req, j, RJ_DEAD, dead_answer);
}

/* --------------------------------------------- POST /dead-letters/requeue */

struct op {
    struct admin *a;
    struct http_request *req;
};

static void requeue_done(void *arg, int status, int64_t count, const char *err)
{
    struct op *op = arg;
    struct admin *a = op->a;

    if (status == -ENOENT) {
        respond_error(op->req, 404, "no such dead letter");
    } else if (status < 0) {
        respond_error(op->req, 500, "journal: %s", err);
    } else {
        cJSON *o = cJSON_CreateObject();

        add_num(o, "requeued", (double)count);
        respond_obj(op->req, 200, o);
        if (count > 0 && !a->stopped && a->src.forwarder != NULL) {
            forwarder_kick(a->src.forwarder);
        }
        if (count > 0) {
            log_info("admin", "requeued %" PRId64 " dead letters", count);
        }
    }
    free(op);
    op_done(a);
}

static void h_requeue(struct admin *a, struct http_request *req)
{
    static const char *const allowed[] = {"route", "id", NULL};
    cJSON *o = body_object(req);
    int64_t id = 0;
    int route;
    struct op *op;
    int rc;

    if (o == NULL) {
        return;
    }
    if (check_members(req, o, allowed) < 0 ||
        int_arg(req, o, "id", 1, &id) < 0) {
        cJSON_Delete(o);
        return;
    }
    route = route_arg(a, req, cJSON_GetObjectItemCaseSensitive(o, "route"));
    cJSON_Delete(o);
    if (route == -2) {
        return;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        respond_error(req, 500, "out of memory");
        return;
    }
    op->a = a;
    op->req = req;
    rc = journal_dead_requeue_async(a->src.journal, route, id,
                                    a->src.cfg->forwarder.batch_max_rows,
                                    requeue_done, op);
    if (rc < 0) {
        free(op);
        respond_error(req, 500, "journal: %s", strerror(-rc));
        return;
    }
    a->pending++;
}

/* ------------------------------------------------- POST /pause, /resume */

static void h_pause_resume(struct admin *a, struct http_request *req, int pause)
{
    static const char *const allowed[] = {"route", NULL};
    cJSON *o = body_object(req);
    cJSON *res;
    int route;

    if (o == NULL) {
        return;
    }
    if (check_members(req, o, allowed) < 0) {
        cJSON_Delete(o);
        return;
    }
    route = route_arg(a, req, cJSON_GetObjectItemCaseSensitive(o, "route"));
    cJSON_Delete(o);
    if (route == -2) {
        return;
    }
    if (a->src.forwarder == NULL && route >= 0) {
        respond_error(req, 503, "the forwarder is not running");
        return;
    }
    res = cJSON_CreateObject();
    if (route < 0) {
        /* the whole gateway: stop consuming and sending */
        a->paused_all = pause;
        if (a->src.intake != NULL) {
            intake_set_paused(a->src.intake, pause);
        }
        if (a->src.forwarder != NULL) {
            if (pause) {
                forwarder_pause(a->src.forwarder, -1);
            } else {
                forwarder_resume(a->src.forwarder, -1);
            }
        }
        cJSON_AddStringToObject(res, "scope", "gateway");
    } else {
        if (pause) {
            forwarder_pause(a->src.forwarder, route);
        } else {
            forwarder_resume(a->src.forwarder, route);
        }
        cJSON_AddStringToObject(res, "scope", "route");
        cJSON_AddStringToObject(res, "route", a->src.cfg->routes[route].name);
    }
    cJSON_AddBoolToObject(res, "paused", pause);
    log_info("admin", "%s %s%s", pause ? "paused" : "resumed",
             route < 0 ? "the gateway" : "route ",
             route < 0 ? "" : a->src.cfg->routes[route].name);
    respond_obj(req, 200, res);
}

/* ----------------------------------------------- POST /partitions/epoch */

/*
 * {"topic": T, "partition": N, "from": OFFSET (optional: the broker's log
 * start)}: the operator's answer to a partition that went backwards
 * (intake_new_epoch).
 */
static void h_epoch(struct admin *a, struct http_request *req)
{
    static const char *const allowed[] = {"topic", "partition", "from", NULL};
    cJSON *o = body_object(req);
    const cJSON *t;
    const cJSON *pn;
    const cJSON *from;
    cJSON *res;
    char err[512];
    int64_t off = -1;
    int rc;

    if (o == NULL) {
        return;
    }
    if (check_members(req, o, allowed) < 0) {
        cJSON_Delete(o);
        return;
    }
    t = cJSON_GetObjectItemCaseSensitive(o, "topic");
    pn = cJSON_GetObjectItemCaseSensitive(o, "partition");
    from = cJSON_GetObjectItemCaseSensitive(o, "from");
    if (!cJSON_IsString(t) || t->valuestring[0] == '\0') {
        respond_error(req, 400, "'topic' must be a topic name");
        goto out;
    }
    if (!cJSON_IsNumber(pn) || pn->valuedouble < 0 ||
        pn->valuedouble > INT32_MAX ||
        pn->valuedouble != floor(pn->valuedouble)) {
        respond_error(req, 400, "'partition' must be a partition number");
        goto out;
    }
    if (from != NULL && !cJSON_IsNull(from)) {
        if (!cJSON_IsNumber(from) || from->valuedouble < 0 ||
            from->valuedouble > 9007199254740992.0 ||
            from->valuedouble != floor(from->valuedouble)) {
            respond_error(req, 400, "'from' must be an offset (>= 0)");
            goto out;
        }
        off = (int64_t)from->valuedouble;
    }
    if (a->src.intake == NULL) {
        respond_error(req, 503, "the intake is not running");
        goto out;
    }
    rc = intake_new_epoch(a->src.intake, t->valuestring,
                          (int32_t)pn->valuedouble, &off, err, sizeof(err));
    if (rc < 0) {
        respond_error(req,
                      rc == -ENOENT                   ? 404
                      : rc == -EINVAL || rc == -EBUSY ? 409
                      : rc == -ERANGE                 ? 400
                      : rc == -EAGAIN                 ? 503
                                                      : 500,
                      "%s", err);
        goto out;
    }
    log_info("admin", "new epoch of '%s'[%d] requested from offset %lld",
             t->valuestring, (int)pn->valuedouble, (long long)off);
    res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "topic", t->valuestring);
    add_num(res, "partition", pn->valuedouble);
    add_off(res, "from", off);
    cJSON_AddBoolToObject(res, "accepted", 1);
    respond_obj(req, 202, res);
out:
    cJSON_Delete(o);
}

/* -------------------------------------------------------- POST /replay */

struct replay_args;
static void reconcile_start(struct admin *a, struct http_request *req,
                            const struct replay_args *ra);
static void reconcile_cancel(struct admin *a);

struct replay_op {
    struct admin *a;
    struct http_request *req;
    int missing;  /* the reconcile's final step */
    cJSON *extra; /* reconcile counts to add to the answer, or NULL */
};

static void replay_done(void *arg, int status, int64_t nevents,
                        int64_t nbatches, const char *err)
{
    struct replay_op *op = arg;
    struct admin *a = op->a;

    if (status < 0) {
        respond_error(op->req, 500, "journal: %s", err);
        cJSON_Delete(op->extra);
    } else {
        cJSON *o = op->extra != NULL ? op->extra : cJSON_CreateObject();

        cJSON_AddStringToObject(o, "mode", op->missing ? "missing" : "all");
        add_num(o, "events", (double)nevents);
        add_num(o, "batches", (double)nbatches);
        respond_obj(op->req, 200, o);
        if (nevents > 0 && !a->stopped && a->src.forwarder != NULL) {
            forwarder_kick(a->src.forwarder);
        }
        log_info("admin",
                 "replay (%s): %" PRId64 " events in %" PRId64 " batches",
                 op->missing ? "missing" : "all", nevents, nbatches);
    }
    free(op);
    op_done(a);
}

/* Parsed POST /replay. */
struct replay_args {
    struct journal_replay_req jr;
    char topic[256];
    int missing;
};

static int replay_parse(struct admin *a, struct http_request *req,
                        struct replay_args *ra)
{
    static const char *const allowed[] = {
        "route",     "topic",   "partition", "from_offset", "to_offset",
        "from_time", "to_time", "mode",      NULL};
    const struct config *cfg = a->src.cfg;
    cJSON *o = body_object(req);
    const cJSON *v;
    int64_t part = -1;
    int route;

    if (o == NULL) {
        return -1;
    }
    memset(ra, 0, sizeof(*ra));
    ra->jr.partition = -1;
    ra->jr.from_offset = ra->jr.to_offset = -1;
    ra->jr.from_ts_ms = ra->jr.to_ts_ms = -1;
    ra->jr.max_rows = cfg->forwarder.batch_max_rows;
    ra->jr.max_bytes = cfg->forwarder.batch_max_bytes;
    if (check_members(req, o, allowed) < 0) {
        goto bad;
    }
    route = route_arg(a, req, cJSON_GetObjectItemCaseSensitive(o, "route"));
    if (route == -2) {
        goto bad;
    }
    if (route == -1) {
        if (cfg->nroutes != 1) {
            respond_error(req, 400, "'route' is required (%zu routes)",
                          cfg->nroutes);
            goto bad;
        }
        route = 0;
    }
    ra->jr.route = route;
    v = cJSON_GetObjectItemCaseSensitive(o, "topic");
    if (v != NULL && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || strlen(v->valuestring) == 0 ||
            strlen(v->valuestring) >= sizeof(ra->topic)) {
            respond_error(req, 400, "'topic' must be a topic name");
            goto bad;
        }
        memcpy(ra->topic, v->valuestring, strlen(v->valuestring) + 1);
        ra->jr.topic = ra->topic;
    }
    if (int_arg(req, o, "partition", 0, &part) < 0 ||
        int_arg(req, o, "from_offset", 0, &ra->jr.from_offset) < 0 ||
        int_arg(req, o, "to_offset", 0, &ra->jr.to_offset) < 0 ||
        time_arg(req, o, "from_time", &ra->jr.from_ts_ms) < 0 ||
        time_arg(req, o, "to_time", &ra->jr.to_ts_ms) < 0) {
        goto bad;
    }
    if (part > INT32_MAX) {
        respond_error(req, 400, "'partition' is too large");
        goto bad;
    }
    ra->jr.partition = (int32_t)part;
    if ((ra->jr.from_offset >= 0 || ra->jr.to_offset >= 0) && part < 0) {
        respond_error(req, 400, "an offset range needs a 'partition'");
        goto bad;
    }
    if (ra->jr.from_offset >= 0 && ra->jr.to_offset >= 0 &&
        ra->jr.from_offset > ra->jr.to_offset) {
        respond_error(req, 400, "'from_offset' is after 'to_offset'");
        goto bad;
    }
    if (ra->jr.from_ts_ms >= 0 && ra->jr.to_ts_ms >= 0 &&
        ra->jr.from_ts_ms > ra->jr.to_ts_ms) {
        respond_error(req, 400, "'from_time' is after 'to_time'");
        goto bad;
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "mode");
    if (v != NULL && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, "missing") == 0) {
            ra->missing = 1;
        } else if (!cJSON_IsString(v) || strcmp(v->valuestring, "all") != 0) {
            respond_error(req, 400, "'mode' must be \"all\" or \"missing\"");
            goto bad;
        }
    }
    if (ra->missing && cfg->routes[route].dedupe_column == NULL) {
        respond_error(req, 400,
                      "mode \"missing\" needs a dedupe column on route '%s'",
                      cfg->routes[route].name);
        goto bad;
    }
    cJSON_Delete(o);
    return 0;
bad:
    cJSON_Delete(o);
    return -1;
}

static void h_replay(struct admin *a, struct http_request *req)
{
    struct replay_args ra;
    struct replay_op *op;
    int rc;

    if (replay_parse(a, req, &ra) < 0) {
        return;
    }
    if (ra.missing) {
        reconcile_start(a, req, &ra);
        return;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        respond_error(req, 500, "out of memory");
        return;
    }
    op->a = a;
    op->req = req;
    rc = journal_replay_async(a->src.journal, &ra.jr, replay_done, op);
    if (rc < 0) {
        free(op);
        respond_error(req, 500, "journal: %s", strerror(-rc));
        return;
    }
    a->pending++;
}

/* ------------------------------------------- replay "missing": reconcile */

/*
 * A reconcile runs in three phases on the loop:
 *  1. TOKEN: wait (at most RECONCILE_TOKEN_MS) for an ADX token from the
 *     admin's own auth provider (created on first use);
 *  2. QUERY: for the delivered batches overlapping the range, ask ADX in
 *     groups of RECONCILE_IDS_PER_QUERY how many rows carry each batch id in
 *     the dedupe column;
 *  3. REPLAY: the offsets that no fully present batch covers are replayed
 *     with journal_replay_async, one gap after the other.
 * A batch counts as present when ADX has at least as many rows with its id
 * as it had members; partial and absent batches cover nothing, so their
 * events are replayed unless another present batch (e.g. an earlier
 * replay) holds them. One reconcile at a time (409 otherwise).
 */
#define RECONCILE_TOKEN_MS      30000
#define RECONCILE_IDS_PER_QUERY 100

enum rc_phase { RC_TOKEN, RC_QUERY, RC_REPLAY, RC_DONE };

struct gap {
    char *topic;
    int32_t partition;
    int64_t from, to;
};

struct reconcile {
    struct admin *a;
    struct http_request *req;
    struct journal_replay_req jr;
    char topic[256];
    enum rc_phase phase;
    int cancelled;
    uv_timer_t timer;
    struct recover_dbatch *b;
    size_t nb;
    int64_t *rows; /* per batch: rows found in ADX */
    size_t next;   /* next batch to ask about */
    struct gap *gaps;
    size_t ngaps, igap;
    int64_t present, partial, missing;
    int64_t events, batches;
};

static void rc_free(uv_handle_t *h)
{
    struct reconcile *rc = h->data;
    struct admin *a = rc->a;

    for (size_t i = 0; i < rc->ngaps; i++) {
        free(rc->gaps[i].topic);
    }
    free(rc->gaps);
    free(rc->rows);
    recover_dbatches_free(rc->b, rc->nb);
    free(rc);
    op_done(a);
}

/* Answers (unless already answered) and frees the reconcile. */
static void rc_finish(struct reconcile *rc, int status, const char *msg)
{
    struct admin *a = rc->a;

    if (rc->phase == RC_DONE) {
        return;
    }
    rc->phase = RC_DONE;
    if (a->rc == rc) {
        a->rc = NULL;
    }
    if (status != 200) {
        respond_error(rc->req, status, "%s", msg);
    } else {
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "mode", "missing");
        add_num(o, "checked_batches", (double)rc->nb);
        add_num(o, "present_batches", (double)rc->present);
        add_num(o, "partial_batches", (double)rc->partial);
        add_num(o, "missing_batches", (double)rc->missing);
        add_num(o, "gaps", (double)rc->ngaps);
        add_num(o, "events", (double)rc->events);
        add_num(o, "batches", (double)rc->batches);
        respond_obj(rc->req, 200, o);
        log_info("admin",
                 "replay (missing): %zu batches checked, %" PRId64
                 " present, %" PRId64 " partial, %" PRId64 " missing; %" PRId64
                 " events replayed in %" PRId64 " batches",
                 rc->nb, rc->present, rc->partial, rc->missing, rc->events,
                 rc->batches);
        if (rc->events > 0 && !a->stopped && a->src.forwarder != NULL) {
            forwarder_kick(a->src.forwarder);
        }
    }
    uv_timer_stop(&rc->timer);
    uv_close((uv_handle_t *)&rc->timer, rc_free);
}

static void rc_replay_next(struct reconcile *rc);

static void rc_replay_done(void *arg, int status, int64_t nevents,
                           int64_t nbatches, const char *err)
{
    struct reconcile *rc = arg;
    char msg[512];

    if (status < 0) {
        snprintf(msg, sizeof(msg), "journal: %s", err);
        rc_finish(rc, 500, msg);
        return;
    }
    rc->events += nevents;
    rc->batches += nbatches;
    rc->igap++;
    if (rc->cancelled) {
        rc_finish(rc, 503, "the admin server is stopping");
        return;
    }
    rc_replay_next(rc);
}

static void rc_replay_next(struct reconcile *rc)
{
    struct journal_replay_req q;
    char msg[128];
    int r;

    if (rc->igap >= rc->ngaps) {
        rc_finish(rc, 200, NULL);
        return;
    }
    q = rc->jr;
    q.topic = rc->gaps[rc->igap].topic;
    q.partition = rc->gaps[rc->igap].partition;
    q.from_offset = rc->gaps[rc->igap].from;
    q.to_offset = rc->gaps[rc->igap].to;
    r = journal_replay_async(rc->a->src.journal, &q, rc_replay_done, rc);
    if (r < 0) {
        snprintf(msg, sizeof(msg), "journal: %s", strerror(-r));
        rc_finish(rc, 500, msg);
    }
}

static int ival64_cmp(const void *x, const void *y)
{
    const int64_t *a = x, *b = y;

    return a[0] < b[0] ? -1 : a[0] > b[0];
}

static int rc_add_gap(struct reconcile *rc, size_t *cap, const char *topic,
                      int32_t partition, int64_t from, int64_t to)
{
    struct gap *g;

    if (rc->ngaps == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct gap *ng = realloc(rc->gaps, ncap * sizeof(*ng));

        if (ng == NULL) {
            return -ENOMEM;
        }
        rc->gaps = ng;
        *cap = ncap;
    }
    g = &rc->gaps[rc->ngaps];
    g->topic = strdup(topic);
    if (g->topic == NULL) {
        return -ENOMEM;
    }
    g->partition = partition;
    g->from = from;
    g->to = to;
    rc->ngaps++;
    return 0;
}

/*
 * For one (topic, partition): the asked range minus the union of the
 * member ranges of present batches, as gaps. lo/hi bound the range.
 */
static int rc_partition_gaps(struct reconcile *rc, size_t *cap,
                             const char *topic, int32_t partition, int64_t lo,
                             int64_t hi)
{
    int64_t(*iv)[2] = NULL;
    size_t n = 0, icap = 0;
    int64_t at = lo;
    int r = 0;

    for (size_t i = 0; i < rc->nb; i++) {
        if (rc->rows[i] < rc->b[i].count || rc->b[i].count <= 0) {
            continue;
        }
        for (size_t k = 0; k < rc->b[i].npieces; k++) {
            const struct recover_piece *p = &rc->b[i].pieces[k];

            if (p->partition != partition || strcmp(p->topic, topic) != 0) {
                continue;
            }
            if (n == icap) {
                size_t ncap = icap ? icap * 2 : 16;
                int64_t(*ni)[2] = realloc(iv, ncap * sizeof(*ni));

                if (ni == NULL) {
                    free(iv);
                    return -ENOMEM;
                }
                iv = ni;
                icap = ncap;
            }
            iv[n][0] = p->first_offset;
            iv[n][1] = p->last_offset;
            n++;
        }
    }
    if (n > 1) {
        qsort(iv, n, sizeof(*iv), ival64_cmp);
    }
    for (size_t i = 0; i < n && at <= hi && r == 0; i++) {
        if (iv[i][1] < at) {
            continue;
        }
        if (iv[i][0] > at) {
            r = rc_add_gap(rc, cap, topic, partition, at,
                           iv[i][0] - 1 < hi ? iv[i][0] - 1 : hi);
        }
        at = iv[i][1] + 1;
    }
    if (r == 0 && at <= hi) {
        r = rc_add_gap(rc, cap, topic, partition, at, hi);
    }
    free(iv);
    return r;
}

/* All batches answered: counts, gaps, then the replays. */
static void rc_plan(struct reconcile *rc)
{
    struct tp {
        const char *topic; /* borrowed from the batches */
        int32_t partition;
        int64_t lo, hi;
    } *tps = NULL;
    size_t ntp = 0, tpcap = 0, cap = 0;

    for (size_t i = 0; i < rc->nb; i++) {
        if (rc->rows[i] >= rc->b[i].count && rc->b[i].count > 0) {
            rc->present++;
        } else if (rc->rows[i] > 0) {
            rc->partial++;
        } else {
            rc->missing++;
        }
        /* every (topic, partition) the batches touch, with its extent */
        for (size_t k = 0; k < rc->b[i].npieces; k++) {
            const struct recover_piece *p = &rc->b[i].pieces[k];
            size_t t = 0;

            while (t < ntp && (tps[t].partition != p->partition ||
                               strcmp(tps[t].topic, p->topic) != 0)) {
                t++;
            }
            if (t == ntp) {
                if (ntp == tpcap) {
                    size_t ncap = tpcap ? tpcap * 2 : 16;
                    struct tp *nt = realloc(tps, ncap * sizeof(*nt));

                    if (nt == NULL) {
                        free(tps);
                        rc_finish(rc, 500, "out of memory");
                        return;
                    }
                    tps = nt;
                    tpcap = ncap;
                }
                tps[t].topic = p->topic;
                tps[t].partition = p->partition;
                tps[t].lo = p->first_offset;
                tps[t].hi = p->last_offset;
                ntp++;
            }
            tps[t].lo =
                p->first_offset < tps[t].lo ? p->first_offset : tps[t].lo;
            tps[t].hi = p->last_offset > tps[t].hi ? p->last_offset : tps[t].hi;
        }
    }
    for (size_t t = 0; t < ntp; t++) {
        /* bounds: the asked range, else the batches' extent */
        int64_t lo = rc->jr.from_offset >= 0 ? rc->jr.from_offset : tps[t].lo;
        int64_t hi = rc->jr.to_offset >= 0 ? rc->jr.to_offset : tps[t].hi;

        if (rc_partition_gaps(rc, &cap, tps[t].topic, tps[t].partition, lo,
                              hi) < 0) {
            free(tps);
            rc_finish(rc, 500, "out of memory");
            return;
        }
    }
    free(tps);
    rc->phase = RC_REPLAY;
    rc_replay_next(rc);
}

static void rc_query_next(struct reconcile *rc);

/* Reads {"Tables":[{"Rows":[["id", n], ...]}]} into rc->rows. */
static int rc_read_counts(struct reconcile *rc, const char *body, size_t len,
                          size_t first, size_t end)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    const cJSON *tables, *t0, *rows, *row;

    if (o == NULL) {
        return -EBADMSG;
    }
    tables = cJSON_GetObjectItemCaseSensitive(o, "Tables");
    t0 = cJSON_IsArray(tables) ? cJSON_GetArrayItem(tables, 0) : NULL;
    rows = t0 ? cJSON_GetObjectItemCaseSensitive(t0, "Rows") : NULL;
    if (!cJSON_IsArray(rows)) {
        cJSON_Delete(o);
        return -EBADMSG;
    }
    cJSON_ArrayForEach(row, rows)
    {
        const cJSON *id = cJSON_GetArrayItem(row, 0);
        const cJSON *n = cJSON_GetArrayItem(row, 1);

        if (!cJSON_IsString(id) || !cJSON_IsNumber(n)) {
            cJSON_Delete(o);
            return -EBADMSG;
        }
        for (size_t i = first; i < end; i++) {
            if (strcmp(rc->b[i].id, id->valuestring) == 0) {
                rc->rows[i] = (int64_t)n->valuedouble;
            }
        }
    }
    cJSON_Delete(o);
    return 0;
}

static void rc_query_done(void *arg, const struct adx_response *res)
{
    struct reconcile *rc = arg;
    size_t first = rc->next;
    size_t end = first + RECONCILE_IDS_PER_QUERY;
    char msg[512];

    if (end > rc->nb) {
        end = rc->nb;
    }
    if (rc->cancelled || res->err == -ECANCELED) {
        rc_finish(rc, 503, "the admin server is stopping");
        return;
    }
    if (res->status != 200) {
        snprintf(msg, sizeof(msg), "ADX query failed: %s%ld %.200s",
                 res->status ? "HTTP " : "", res->status,
                 res->status ? "" : res->errmsg);
        rc_finish(rc, 502, msg);
        return;
    }
    if (rc_read_counts(rc, res->body, res->body_len, first, end) < 0) {
        rc_finish(rc, 502,
                  "ADX answered the count query with an unexpected "
                  "body");
        return;
    }
    rc->next = end;
    rc_query_next(rc);
}

/* KQL names are written ['name']: refuse quotes and backslashes. */
static int kql_name_ok(const char *s)
{
    return s != NULL && s[0] != '\0' && strpbrk(s, "'\\\n\r") == NULL;
}

static void rc_query_next(struct reconcile *rc)
{
    struct admin *a = rc->a;
    const struct config_route *r = &a->src.cfg->routes[rc->jr.route];
    struct sbuf q;
    size_t end;
    char err[256] = "";
    char msg[320];
    char reqid[96];
    int ret;

    if (rc->next >= rc->nb) {
        rc_plan(rc);
        return;
    }
    end = rc->next + RECONCILE_IDS_PER_QUERY;
    if (end > rc->nb) {
        end = rc->nb;
    }
    memset(&q, 0, sizeof(q));
    sb_printf(&q, "['%s'] | where ['%s'] in (", r->table, r->dedupe_column);
    for (size_t i = rc->next; i < end; i++) {
        /* batch ids are "<uuid>-<seq>": no quotes to escape */
        sb_printf(&q, "%s'%s'", i > rc->next ? "," : "", rc->b[i].id);
    }
    sb_printf(&q, ") | summarize n = count() by ['%s']", r->dedupe_column);
    if (q.oom) {
        free(q.p);
        rc_finish(rc, 500, "out of memory");
        return;
    }
    snprintf(reqid, sizeof(reqid), "KADX.reconcile;%s;%zu",
             journal_uuid(a->src.journal), rc->next);
    ret = adx_query(a->adx, a->src.cfg->adx.query_url, r->database, q.p,
                    auth_token(a->auth), reqid, rc_query_done, rc, err,
                    sizeof(err));
    free(q.p);
    if (ret < 0) {
        snprintf(msg, sizeof(msg), "ADX query: %s", err);
        rc_finish(rc, 502, msg);
    }
}

static void rc_on_token(void *arg)
{
    struct admin *a = arg;
    struct reconcile *rc = a->rc;

    if (rc != NULL && rc->phase == RC_TOKEN && auth_ready(a->auth)) {
        uv_timer_stop(&rc->timer);
        rc->phase = RC_QUERY;
        rc_query_next(rc);
    }
}

static void rc_token_timeout(uv_timer_t *t)
{
    struct reconcile *rc = t->data;
    char msg[512];

    snprintf(msg, sizeof(msg), "no ADX token after %d s: %s",
             RECONCILE_TOKEN_MS / 1000, auth_last_error(rc->a->auth));
    rc_finish(rc, 503, msg);
}

/* Creates the admin's ADX client and token provider on first use. */
static int rc_client(struct admin *a, char *err, size_t errlen)
{
    struct adx_options ao;
    struct auth_options au;
    int r;

    if (a->adx != NULL) {
        return 0;
    }
    memset(&ao, 0, sizeof(ao));
    ao.app = "kadx-admin";
    ao.timeout_ms = a->src.cfg->adx.request_timeout_ms;
    ao.proxy = a->src.cfg->adx.proxy;
    ao.no_proxy = a->src.cfg->adx.no_proxy;
    r = adx_new(a->loop, &ao, &a->adx, err, errlen);
    if (r < 0) {
        return r;
    }
    memset(&au, 0, sizeof(au));
    au.cfg = &a->src.cfg->adx.auth;
    au.cluster = a->src.cfg->adx.query_url;
    r = auth_new(a->loop, a->adx, &au, &a->auth, err, errlen);
    if (r == 0) {
        auth_set_listener(a->auth, rc_on_token, a);
        r = auth_start(a->auth);
        if (r < 0) {
            snprintf(err, errlen, "token provider: %s", strerror(-r));
        }
    }
    if (r < 0) {
        auth_close(a->auth);
        adx_close(a->adx);
        a->auth = NULL;
        a->adx = NULL;
    }
    return r;
}

static void reconcile_start(struct admin *a, struct http_request *req,
                            const struct replay_args *ra)
{
    const struct config_route *r = &a->src.cfg->routes[ra->jr.route];
    struct reconcile *rc;
    char err[256] = "";
    char msg[320];
    int ret;

    if (a->rc != NULL) {
        respond_error(req, 409, "a replay reconcile is already running");
        return;
    }
    if (!kql_name_ok(r->table) || !kql_name_ok(r->dedupe_column)) {
        respond_error(req, 400,
                      "the table or dedupe column name of route "
                      "'%s' cannot be quoted in KQL",
                      r->name);
        return;
    }
    rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        respond_error(req, 500, "out of memory");
        return;
    }
    rc->a = a;
    rc->req = req;
    rc->jr = ra->jr;
    if (ra->jr.topic != NULL) {
        snprintf(rc->topic, sizeof(rc->topic), "%s", ra->jr.topic);
        rc->jr.topic = rc->topic;
    }
    ret = recover_delivered_batches(a->src.journal, rc->jr.route, rc->jr.topic,
                                    rc->jr.partition, rc->jr.from_offset,
                                    rc->jr.to_offset, &rc->b, &rc->nb, err,
                                    sizeof(err));
    if (ret < 0) {
        free(rc);
        respond_error(req, 500, "journal: %s", err);
        return;
    }
    rc->rows = calloc(rc->nb ? rc->nb : 1, sizeof(*rc->rows));
    if (rc->rows == NULL) {
        recover_dbatches_free(rc->b, rc->nb);
        free(rc);
        respond_error(req, 500, "out of memory");
        return;
    }
    uv_timer_init(a->loop, &rc->timer);
    rc->timer.data = rc;
    a->rc = rc;
    a->pending++;
    if (rc->nb == 0) {
        rc_finish(rc, 200, NULL);
        return;
    }
    ret = rc_client(a, err, sizeof(err));
    if (ret < 0) {
        snprintf(msg, sizeof(msg), "ADX client: %s", err);
        rc_finish(rc, 500, msg);
        return;
    }
    if (auth_ready(a->auth)) {
        rc->phase = RC_QUERY;
        rc_query_next(rc);
        return;
    }
    rc->phase = RC_TOKEN;
    uv_timer_start(&rc->timer, rc_token_timeout, RECONCILE_TOKEN_MS, 0);
}

/* admin_stop: the reconcile ends as soon as what it waits for returns. */
static void reconcile_cancel(struct admin *a)
{
    struct reconcile *rc = a->rc;

    if (rc == NULL) {
        return;
    }
    rc->cancelled = 1;
    if (rc->phase == RC_TOKEN) {
        rc_finish(rc, 503, "the admin server is stopping");
    }
    /* RC_QUERY: closing the ADX client (admin_stop) calls back at once;
     * RC_REPLAY: the journal calls back when the replay is done */
}

/* ------------------------------------------------------------ routing */

enum { GET = 1, POST = 2 };

struct endpoint {
    const char *path;
    int methods;
    void (*get)(struct admin *a, struct http_request *req);
    void (*post)(struct admin *a, struct http_request *req);
};

static void h_pause(struct admin *a, struct http_request *req)
{
    h_pause_resume(a, req, 1);
}

static void h_resume(struct admin *a, struct http_request *req)
{
    h_pause_resume(a, req, 0);
}

static const struct endpoint endpoints[] = {
    {"/healthz", GET, h_healthz, NULL},
    {"/readyz", GET, h_readyz, NULL},
    {"/status", GET, h_status, NULL},
    {"/metrics", GET, h_metrics, NULL},
    {"/dead-letters", GET, h_dead_letters, NULL},
    {"/dead-letters/requeue", POST, NULL, h_requeue},
    {"/pause", POST, NULL, h_pause},
    {"/resume", POST, NULL, h_resume},
    {"/replay", POST, NULL, h_replay},
    {"/partitions/epoch", POST, NULL, h_epoch},
};

static void on_request(struct http_request *req, void *data)
{
    struct admin *a = data;
    const char *method = http_req_method(req);
    const char *path = http_req_path(req);
    size_t plen = strlen(path);

    if (page_owns(path)) { /* the status page (page.c): no data, no token */
        page_handle(req);
        return;
    }
    if (connect_owns(path)) { /* Kafka Connect's REST API (connect.c) */
        struct connect_ctx cx;
        char worker[300];
        const char *l = a->src.cfg->admin.listen;
        const char *colon = l != NULL ? strrchr(l, ':') : NULL;

        /* GETs too when admin.token_on_get (as for the other endpoints) */
        if ((strcmp(method, "GET") != 0 || a->token_on_get) &&
            !token_ok(a, req)) {
            respond_error(req, 401, "a valid bearer token is required");
            return;
        }
        snprintf(worker, sizeof(worker), "%.*s:%d",
                 colon != NULL ? (int)(colon - l) : 9, colon ? l : "127.0.0.1",
                 http_server_port(a->srv));
        memset(&cx, 0, sizeof(cx));
        cx.cfg = a->src.cfg;
        cx.intake = a->src.intake;
        cx.forwarder = a->src.forwarder;
        cx.paused_all = &a->paused_all;
        cx.worker_id = worker;
        connect_handle(&cx, req);
        return;
    }
    /* one trailing slash is forgiven: /status/ = /status */
    if (plen > 1 && path[plen - 1] == '/') {
        plen--;
    }
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        const struct endpoint *e = &endpoints[i];

        if (strlen(e->path) != plen || strncmp(e->path, path, plen) != 0) {
            continue;
        }
        if (strcmp(method, "GET") == 0 && (e->methods & GET)) {
            /* probes carry no token: /healthz and /readyz stay open */
            if (a->token_on_get && e->get != h_healthz && e->get != h_readyz &&
                !token_ok(a, req)) {
                respond_error(req, 401, "a valid bearer token is required");
                return;
            }
            e->get(a, req);
            return;
        }
        if (strcmp(method, "POST") == 0 && (e->methods & POST)) {
            if (!token_ok(a, req)) {
                respond_error(req, 401, "a valid bearer token is required");
                return;
            }
            e->post(a, req);
            return;
        }
        {
            char body[256];
            struct http_header h = {"Allow",
                                    (e->methods & GET) ? "GET" : "POST"};

            http_error_body_default(405, "method not allowed", body,
                                    sizeof(body), NULL);
            http_respond_json(req, 405, &h, 1, body);
        }
        return;
    }
    respond_error(req, 404, "no such endpoint");
}

/* ---------------------------------------------------------- lifecycle */

int admin_start(uv_loop_t *loop, const struct admin_sources *src,
                const struct admin_options *o, struct admin **out, char *err,
                size_t errlen)
{
    struct http_server_config hc;
    struct admin *a;
    int rc;

    *out = NULL;
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->loop = loop;
    a->src = *src;
    a->started_ms = wall_ms();
    pthread_mutex_init(&a->jmu, NULL);
    pthread_cond_init(&a->jcv, NULL);
    if (o->token != NULL && o->token[0] != '\0') {
        if (strlen(o->token) > TOKEN_MAX) {
            snprintf(err, errlen, "admin token longer than %d bytes",
                     TOKEN_MAX);
            rc = -EINVAL;
            goto free_admin;
        }
        a->token = strdup(o->token);
        if (a->token == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            goto free_admin;
        }
        log_add_secret(a->token);
    }
    http_server_config_default(&hc);
    hc.read_timeout_ms =
        o->read_timeout_ms ? o->read_timeout_ms : DEFAULT_READ_TIMEOUT_MS;
    hc.max_header_bytes =
        o->max_header_bytes ? o->max_header_bytes : DEFAULT_MAX_HEADER;
    hc.max_body_bytes =
        o->max_body_bytes ? o->max_body_bytes : DEFAULT_MAX_BODY;
    hc.max_connections = o->max_connections ? o->max_connections : 64;
    hc.defer_over_limit = 1; /* a reconnecting flood must not cost the loop */
    hc.max_requests_per_s =
        o->max_requests_per_s > 0 ? o->max_requests_per_s : 20;
    a->token_on_get = o->token_on_get && a->token != NULL;
    a->srv = http_server_new(loop, &hc, on_request, a);
    if (a->srv == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto free_admin;
    }
    if (o->tls_cert != NULL) {
        a->tls_cert = strdup(o->tls_cert);
        a->tls_key = strdup(o->tls_key != NULL ? o->tls_key : "");
        if (a->tls_cert == NULL || a->tls_key == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            goto free_server;
        }
        rc = http_server_set_tls(a->srv, a->tls_cert, a->tls_key, err, errlen);
        if (rc < 0) {
            goto free_server;
        }
    }
    rc = http_server_listen(a->srv, o->listen, err, errlen);
    if (rc < 0) {
        goto free_server;
    }
    *out = a;
    return 0;

free_server:
    http_server_free(a->srv);
free_admin:
    admin_free(a);
    return rc;
}

int admin_port(const struct admin *a)
{
    return http_server_port(a->srv);
}

int admin_reload_tls(struct admin *a, const char *cert, const char *key,
                     char *err, size_t errlen)
{
    char *c, *k;
    int rc;

    if (a->tls_cert == NULL || a->srv == NULL) {
        snprintf(err, errlen, "tls is not configured");
        return -ENOENT;
    }
    c = strdup(cert != NULL ? cert : a->tls_cert);
    k = strdup(key != NULL ? key : a->tls_key);
    if (c == NULL || k == NULL) {
        free(c);
        free(k);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = http_server_set_tls(a->srv, c, k, err, errlen);
    if (rc < 0) { /* the running pair (and its file names) stay */
        free(c);
        free(k);
        return rc;
    }
    free(a->tls_cert);
    free(a->tls_key);
    a->tls_cert = c;
    a->tls_key = k;
    return 0;
}

void admin_set_sources(struct admin *a, const struct admin_sources *src)
{
    a->src = *src;
}

int admin_reconfigure(struct admin *a, const struct config *cfg)
{
    char *token = NULL;

    if (cfg->admin.token != NULL && cfg->admin.token[0] != '\0') {
        token = strdup(cfg->admin.token);
        if (token == NULL) {
            return -ENOMEM;
        }
        log_add_secret(token);
    }
    free(a->token);
    a->token = token;
    a->token_on_get = cfg->admin.token_on_get && token != NULL;
    a->src.cfg = cfg;
    if (a->rc == NULL) {
        /* no reconcile running: its client is made again, from cfg, on
         * the next use (new URL, credentials or proxy) */
        auth_close(a->auth);
        adx_close(a->adx);
        a->auth = NULL;
        a->adx = NULL;
    }
    return 0;
}

void admin_stop(struct admin *a)
{
    struct adx *adx;
    struct auth *auth;

    if (a == NULL || a->stopped) {
        return;
    }
    a->stopped = 1;
    a->pending++; /* a stays alive until the end of this function */
    /* journal reads already running finish first (milliseconds); queued
     * ones will skip: the journal may be closed once this returns */
    pthread_mutex_lock(&a->jmu);
    a->closing = 1;
    while (a->jobs_in_work > 0) {
        pthread_cond_wait(&a->jcv, &a->jmu);
    }
    pthread_mutex_unlock(&a->jmu);
    http_server_free(a->srv);
    a->srv = NULL;
    reconcile_cancel(a);
    /* closing the client calls back a reconcile's query at once */
    adx = a->adx;
    auth = a->auth;
    a->adx = NULL;
    a->auth = NULL;
    auth_close(auth);
    adx_close(adx);
    op_done(a);
}
