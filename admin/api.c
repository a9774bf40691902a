/*
 * api.c - the admin HTTP API (api.h): the request router, the bearer-token
 * check, and one handler per endpoint, on top of admin/http.c.
 *
 * What it owns: the http_server, a copy of the token, the queue of journal
 * reads, and the requests that wait for a journal write (requeue, replay)
 * or a reconcile. Reads (/readyz, /status, /metrics, /dead-letters) are not
 * answered at once: the journal's statistics scan every chunk row, so they
 * run on libuv's thread pool, one at a time (see rjob_* below), on the
 * journal's separate read connection (WAL: they never wait for the
 * writer's fsync); the answer is built back on the loop, where the
 * intake's and the forwarder's counters live. Writes go through the
 * journal's async API, so the loop never waits for an fsync; the handler
 * answers from the journal's callback. admin_stop() may run while a read,
 * a write or a reconcile is under way: the struct stays alive (a count of
 * pending operations) until the last callback ran.
 *
 * The Prometheus page is rendered by admin/metrics.c; replay "missing" (a
 * reconcile against ADX with the forwarder's client) is
 * gateway/reconcile.c.
 *
 * Everything except the journal reads runs on the loop thread.
 */
#include "admin/api.h"
#include "admin/api_internal.h"
#include "admin/connect.h"
#include "admin/metrics.h"
#include "admin/page.h"
#include "admin/procstat.h"
#include "base/clock.h"
#include "base/container_of.h"
#include "base/iso8601.h"
#include "base/sbuf.h"

#include "admin/http.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/intake.h"
#include "gateway/log.h"
#include "gateway/reconcile.h"
#include "kadx_version.h"
#include "storage/journal.h"
#include "storage/recover.h"

#include <assert.h>
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

/* ------------------------------------------------------------ helpers */

static void admin_free(struct admin *a)
{
    pthread_mutex_destroy(&a->jmu);
    pthread_cond_destroy(&a->jcv);
    free(a->token);
    free(a->tls_cert);
    free(a->tls_key);
    free(a);
}

/* An operation finished: drop the count; the last one after admin_stop
 * frees the admin. */
void op_done(struct admin *a)
{
    a->pending--;
    if (a->stopped && a->pending == 0) {
        admin_free(a);
    }
}

void respond_error(struct http_request *req, int status, const char *fmt, ...)
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
void respond_obj(struct http_request *req, int status, cJSON *obj)
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
void add_num(cJSON *o, const char *name, double v)
{
    cJSON_AddNumberToObject(o, name, v);
}

/* Offsets: -1 ("none") becomes null. */
void add_off(cJSON *o, const char *name, int64_t v)
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
    h = http_req_bearer(req);
    if (h == NULL) {
        return 0;
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

/* A time member: ms since the epoch (number) or an ISO-8601 UTC string
 * (base/iso8601.h, the grammar `kadx recover --since` takes too). */
static int time_arg(struct http_request *req, const cJSON *o, const char *name,
                    int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (cJSON_IsString(v) && iso8601_parse_ms(v->valuestring, out) == 0) {
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

/* ---------------------------------------------------------- /healthz */

static void h_healthz(struct admin *a, struct http_request *req)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", KADX_VERSION);
    add_num(o, "uptime_s", (double)(wall_ms() - a->started_ms) / 1000.0);
    respond_obj(req, 200, o);
}

/* ---------------------------------------------------------- /metrics */

static void metrics_answer(struct admin *a, struct http_request *req,
                           struct rjob *job)
{
    static const struct http_header ct = {
        "Content-Type", "text/plain; version=0.0.4; charset=utf-8"};
    struct metrics_sources ms = {&a->src, &job->st, a->started_ms,
                                 a->paused_all};
    struct sbuf b = {0};

    if (job->st_rc < 0) {
        respond_error(req, 500, "journal stats: %s", job->st_err);
        return;
    }
    metrics_render(&b, &ms);
    if (b.err) {
        sbuf_release(&b);
        respond_error(req, 500, "out of memory");
        return;
    }
    http_respond(req, 200, &ct, 1, b.p, b.len);
    sbuf_release(&b);
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
static void replay_missing(struct admin *a, struct http_request *req,
                           const struct replay_args *ra);

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
        replay_missing(a, req, &ra);
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

/* The reconcile (gateway/reconcile.c) ended: its answer. */
static void reconcile_done(void *arg, int status, const char *msg,
                           const struct reconcile_counts *c)
{
    struct admin *a = arg;
    struct http_request *req = a->rc_req;

    a->rc = NULL;
    a->rc_req = NULL;
    if (status < 0) {
        int http = status == -ECANCELED || status == -ETIMEDOUT ? 503
                   : status == -EPROTO                          ? 502
                                                                : 500;

        respond_error(req, http, "%s", msg);
    } else {
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "mode", "missing");
        add_num(o, "checked_batches", (double)c->checked_batches);
        add_num(o, "present_batches", (double)c->present);
        add_num(o, "partial_batches", (double)c->partial);
        add_num(o, "missing_batches", (double)c->missing);
        add_num(o, "gaps", (double)c->gaps);
        add_num(o, "events", (double)c->events);
        add_num(o, "batches", (double)c->batches);
        respond_obj(req, 200, o);
        log_info("admin",
                 "replay (missing): %" PRId64 " batches checked, %" PRId64
                 " present, %" PRId64 " partial, %" PRId64 " missing; %" PRId64
                 " events replayed in %" PRId64 " batches",
                 c->checked_batches, c->present, c->partial, c->missing,
                 c->events, c->batches);
        if (c->events > 0 && !a->stopped && a->src.forwarder != NULL) {
            forwarder_kick(a->src.forwarder);
        }
    }
    op_done(a);
}

static void replay_missing(struct admin *a, struct http_request *req,
                           const struct replay_args *ra)
{
    struct reconcile_options o = {a->src.cfg, a->src.journal, a->src.forwarder,
                                  &ra->jr};
    char err[320] = "";
    int r;

    if (a->rc != NULL) {
        respond_error(req, 409, "a replay reconcile is already running");
        return;
    }
    r = reconcile_start(a->loop, &o, reconcile_done, a, &a->rc, err,
                        sizeof(err));
    if (r < 0) {
        respond_error(req,
                      r == -EINVAL     ? 400
                      : r == -ENOTCONN ? 503
                                       : 500,
                      "%s", err);
        return;
    }
    a->rc_req = req;
    a->pending++;
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
    return 0;
}

void admin_stop(struct admin *a)
{
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
    /* a reconcile waiting for a token ends now; one waiting for ADX or the
     * journal ends when that calls back (the forwarder's stop cancels its
     * ADX requests) */
    reconcile_cancel(a->rc);
    op_done(a);
}
