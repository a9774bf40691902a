/*
 * online_check.c - `kadx run --check --online` (issue 17): before the first
 * event moves, checks what the config points at.
 *
 * Kafka (librdkafka, synchronous, one consumer handle that never
 * subscribes): the brokers answer a metadata request, every exact topic of
 * the routes exists with partitions, and the consumer group's coordinator
 * answers an offsets fetch (OffsetFetch for the first topic's partition 0,
 * or ListGroups when no route names a topic).
 *
 * ADX (gateway/adx.c and gateway/auth.c on a private libuv loop, each
 * request run to its end before the next): a token is obtained with the
 * configured auth, then per route, with management commands:
 *   .show table T cslschema                       the table exists; the
 *                                                 dedupe column is a string
 *   .show table T policy ingestiontime            on (dedupe query)
 *   .show table T policy streamingingestion       on for the table, or
 *   .show database D policy streamingingestion    for its database
 *   .show table T ingestion K mapping 'M'         exists; it maps the
 *                                                 dedupe column
 * ADX is checked first, then Kafka (librdkafka's threads are gone before
 * the loop runs). Each check prints one line ("ok   ..." or "FAIL ...:
 * reason") to out;
 * the result is 0 when every check passed, 1 otherwise. Secrets never
 * appear (tokens are not printed). Main thread only.
 */
#include "cmd/online_check.h"

#include "base/clock.h"

#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define ONLINE_TIMEOUT_MS 15000

struct oc {
    const struct config *cfg;
    FILE *out;
    int failed;
    uv_loop_t loop;
    uv_timer_t timer;
    int timed_out;
    struct adx *adx;       /* the token provider's client */
    struct adx_options ao; /* for one client per command */
    struct auth *auth;
    /* the answer of the request run last */
    int done;
    long status;
    char *body;
    size_t body_len;
    char errmsg[256];
};

static void report(struct oc *o, int ok, const char *fmt, ...)
{
    va_list ap;

    fprintf(o->out, "%s ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vfprintf(o->out, fmt, ap);
    va_end(ap);
    fputc('\n', o->out);
    fflush(o->out);
    if (!ok) {
        o->failed = 1;
    }
}

static void silent_log(const rd_kafka_t *rk, int level, const char *fac,
                       const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static void check_kafka(struct oc *o)
{
    const struct config *cfg = o->cfg;
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    const char *group = NULL;
    const char *first_topic = NULL;

    for (size_t i = 0; i < cfg->kafka.n; i++) {
        if (strcmp(cfg->kafka.keys[i], "group.id") == 0) {
            group = cfg->kafka.values[i];
        }
        if (rd_kafka_conf_set(conf, cfg->kafka.keys[i], cfg->kafka.values[i], e,
                              sizeof(e)) != RD_KAFKA_CONF_OK) {
            report(o, 0, "kafka: '%s': %s", cfg->kafka.keys[i], e);
            rd_kafka_conf_destroy(conf);
            return;
        }
    }
    rd_kafka_conf_set_log_cb(conf, silent_log);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        report(o, 0, "kafka: cannot create a client: %s", e);
        return;
    }
    err = rd_kafka_metadata(rk, 1, NULL, &md, ONLINE_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        report(o, 0, "kafka: no metadata from the brokers within %d s: %s",
               ONLINE_TIMEOUT_MS / 1000, rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return;
    }
    report(o, 1, "kafka: metadata from %d broker(s), %d topic(s)",
           md->broker_cnt, md->topic_cnt);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const char *t = cfg->routes[r].topic;
        int found = 0;

        if (t == NULL || strcmp(t, "*") == 0) {
            continue; /* pattern routes: what matches may come later */
        }
        for (int i = 0; i < md->topic_cnt; i++) {
            const struct rd_kafka_metadata_topic *mt = &md->topics[i];

            if (strcmp(mt->topic, t) != 0) {
                continue;
            }
            found = 1;
            if (mt->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
                mt->partition_cnt <= 0) {
                report(o, 0, "kafka: topic '%s' (route '%s'): %s", t,
                       cfg->routes[r].name,
                       mt->err ? rd_kafka_err2str(mt->err) : "no partitions");
            } else {
                report(o, 1, "kafka: topic '%s' (route '%s'): %d partitions", t,
                       cfg->routes[r].name, mt->partition_cnt);
                if (first_topic == NULL) {
                    first_topic = t;
                }
            }
        }
        if (!found) {
            report(o, 0, "kafka: topic '%s' (route '%s') does not exist", t,
                   cfg->routes[r].name);
        }
    }
    if (first_topic != NULL) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);

        rd_kafka_topic_partition_list_add(l, first_topic, 0);
        err = rd_kafka_committed(rk, l, ONLINE_TIMEOUT_MS);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[0].err != 0) {
            err = l->elems[0].err;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            report(o, 0,
                   "kafka: group '%s': its coordinator did not answer "
                   "an offsets fetch: %s",
                   group ? group : "?", rd_kafka_err2str(err));
        } else if (l->elems[0].offset >= 0) {
            report(o, 1,
                   "kafka: group '%s': coordinator answers (committed "
                   "offset of %s/0: %lld)",
                   group ? group : "?", first_topic,
                   (long long)l->elems[0].offset);
        } else {
            report(o, 1,
                   "kafka: group '%s': coordinator answers (no committed "
                   "offset for %s/0 yet)",
                   group ? group : "?", first_topic);
        }
        rd_kafka_topic_partition_list_destroy(l);
    } else {
        const struct rd_kafka_group_list *gl = NULL;

        err = rd_kafka_list_groups(rk, group, &gl, ONLINE_TIMEOUT_MS);
        report(o, err == RD_KAFKA_RESP_ERR_NO_ERROR, "kafka: group '%s': %s",
               group ? group : "?",
               err == RD_KAFKA_RESP_ERR_NO_ERROR ? "the brokers list groups"
                                                 : rd_kafka_err2str(err));
        if (gl != NULL) {
            rd_kafka_group_list_destroy(gl);
        }
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
}

static void on_timer(uv_timer_t *t)
{
    struct oc *o = t->data;

    o->timed_out = 1;
}

/* Runs the loop until o->done (or pred) or the deadline. */
static int run_until(struct oc *o, int (*pred)(struct oc *))
{
    o->timed_out = 0;
    uv_update_time(&o->loop); /* the loop may have waited in librdkafka */
    uv_timer_start(&o->timer, on_timer, ONLINE_TIMEOUT_MS, 0);
    while (!o->timed_out && !(pred != NULL ? pred(o) : o->done)) {
        uv_run(&o->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&o->timer);
    /* let the handles the answer closed (curl's socket polls) finish
     * closing: a new socket may reuse the fd, and a poll still closing on
     * it would drop the new one's events */
    uv_run(&o->loop, UV_RUN_NOWAIT);
    return o->timed_out ? -ETIMEDOUT : 0;
}

static void on_answer(void *arg, const struct adx_response *res)
{
    struct oc *o = arg;

    o->done = 1;
    o->status = res->status;
    free(o->body);
    o->body = NULL;
    o->body_len = 0;
    if (res->body != NULL) {
        o->body = malloc(res->body_len + 1);
        if (o->body != NULL) {
            memcpy(o->body, res->body, res->body_len);
            o->body[res->body_len] = '\0';
            o->body_len = res->body_len;
        }
    }
    o->errmsg[0] = '\0';
    if (res->status != 200) {
        (void)adx_classify(res, o->errmsg, sizeof(o->errmsg));
    }
}

/* One management command; 0 with o->status/body, or < 0 (o->errmsg).
 * Each runs on a client (and connection) of its own: with the loop idle
 * between commands, a second command on a kept-alive connection was seen
 * to get no answer (the emulator, 3 runs out of 4). */
static int mgmt(struct oc *o, const char *db, const char *csl)
{
    const char *url = o->cfg->adx.query_url != NULL ? o->cfg->adx.query_url
                                                    : o->cfg->adx.ingest_url;
    struct adx *req = NULL;
    int rc;

    if (o->adx == NULL) { /* closed after an earlier timeout */
        snprintf(o->errmsg, sizeof(o->errmsg), "not asked (ADX timed out)");
        return -ETIMEDOUT;
    }
    /* a client of its own per command (a fresh connection): requests run
     * one after the other on a loop that only runs while one is out */
    rc = adx_new(&o->loop, &o->ao, &req, o->errmsg, sizeof(o->errmsg));
    if (rc < 0) {
        return rc;
    }
    o->done = 0;
    uv_update_time(&o->loop);
    rc = adx_mgmt(req, url, db, csl, auth_token(o->auth), NULL, on_answer, o,
                  o->errmsg, sizeof(o->errmsg));
    if (rc == 0 && run_until(o, NULL) < 0) {
        rc = -ETIMEDOUT;
    }
    adx_free(req); /* cancels what is left: its callback runs now */
    uv_run(&o->loop, UV_RUN_NOWAIT);
    if (rc < 0) {
        if (rc == -ETIMEDOUT) {
            snprintf(o->errmsg, sizeof(o->errmsg), "no answer within %d s",
                     ONLINE_TIMEOUT_MS / 1000);
            auth_free(o->auth); /* ADX does not answer: stop asking */
            o->auth = NULL;
            adx_free(o->adx);
            o->adx = NULL;
        }
        return rc;
    }
    if (o->status != 200) {
        size_t n = strlen(o->errmsg);

        snprintf(o->errmsg + n, sizeof(o->errmsg) - n, "%sHTTP %ld",
                 n ? " " : "", o->status);
        return -EIO;
    }
    return 0;
}

/* The policy cell's IsEnabled: 1, 0 (off or no policy), < 0 no answer. */
static int policy_enabled(struct oc *o)
{
    char policy[1024];
    cJSON *p, *en;
    int on;

    if (adx_parse_cell(o->body, o->body_len, "Policy", policy, sizeof(policy)) <
        0) {
        return -EBADMSG;
    }
    p = cJSON_Parse(policy);
    en = cJSON_IsObject(p) ? cJSON_GetObjectItemCaseSensitive(p, "IsEnabled")
                           : NULL;
    on = cJSON_IsTrue(en);
    cJSON_Delete(p);
    return on;
}

/* The type of column col in a cslschema ("A:int,B:string"), "" = none. */
static void schema_type(const char *schema, const char *col, char *type,
                        size_t typelen)
{
    size_t cl = strlen(col);

    type[0] = '\0';
    for (const char *p = schema; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *colon = memrchr(p, ':', n);
        const char *name = p;

        if (colon != NULL) {
            size_t nl = (size_t)(colon - p);

            if (nl > 4 && name[0] == '[' && name[1] == '\'') {
                name += 2;
                nl -= 4;
            }
            if (nl == cl && memcmp(name, col, cl) == 0) {
                snprintf(type, typelen, "%.*s",
                         (int)(n - (size_t)(colon + 1 - p)), colon + 1);
                return;
            }
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
}

static void check_route(struct oc *o, const struct config_route *r)
{
    char csl[512], schema[16384], type[64];
    int db_on = -1, t_on = -1, rc;

    snprintf(csl, sizeof(csl), ".show table ['%s'] cslschema", r->table);
    if (mgmt(o, r->database, csl) < 0 ||
        adx_parse_cell(o->body, o->body_len, "Schema", schema, sizeof(schema)) <
            0) {
        report(o, 0, "adx: route '%s': table %s.%s: %s", r->name, r->database,
               r->table, o->errmsg[0] ? o->errmsg : "no schema in the answer");
        return; /* the rest needs the table */
    }
    report(o, 1, "adx: route '%s': table %s.%s exists", r->name, r->database,
           r->table);
    if (r->dedupe_column != NULL) {
        schema_type(schema, r->dedupe_column, type, sizeof(type));
        report(o, strcmp(type, "string") == 0,
               "adx: route '%s': dedupe column '%s' %s%s", r->name,
               r->dedupe_column, type[0] ? "is " : "is missing",
               type[0] ? type : "");
    }
    snprintf(csl, sizeof(csl), ".show table ['%s'] policy ingestiontime",
             r->table);
    rc = mgmt(o, r->database, csl) < 0 ? -1 : policy_enabled(o);
    if (r->dedupe_column != NULL || rc < 0) {
        report(o, rc == 1, "adx: route '%s': IngestionTime policy %s%s%s",
               r->name,
               rc == 1   ? "on"
               : rc == 0 ? "off (the dedupe query cannot find a batch; run "
                           "'.alter table "
                         : "unknown: ",
               rc == 0  ? r->table
               : rc < 0 ? o->errmsg
                        : "",
               rc == 0 ? " policy ingestiontime true')" : "");
    }
    snprintf(csl, sizeof(csl), ".show table ['%s'] policy streamingingestion",
             r->table);
    if (mgmt(o, r->database, csl) == 0) {
        t_on = policy_enabled(o);
    }
    snprintf(csl, sizeof(csl),
             ".show database ['%s'] policy streamingingestion", r->database);
    if (t_on != 1 && mgmt(o, r->database, csl) == 0) {
        db_on = policy_enabled(o);
    }
    /* queued routes need no streaming policy; managed ones fall back to
     * queued without it (gateway/QUEUED.md) */
    report(o,
           t_on == 1 || db_on == 1 || r->ingestion != CONFIG_INGEST_STREAMING,
           "adx: route '%s': streaming ingestion %s%s", r->name,
           t_on == 1    ? "enabled on the table"
           : db_on == 1 ? "enabled on the database"
           : r->ingestion != CONFIG_INGEST_STREAMING
               ? "not enabled on the table or its database: "
               : "is not enabled on the table or its database "
                 "('.alter database ... policy streamingingestion "
                 "enable')",
           t_on == 1 || db_on == 1 ? ""
           : r->ingestion == CONFIG_INGEST_QUEUED
               ? "not needed, the route is queued"
           : r->ingestion == CONFIG_INGEST_MANAGED
               ? "the managed route sends queued"
               : "");
    if (r->mapping != NULL) {
        const char *kind = strcmp(r->format, "csv") == 0 ? "csv" : "json";
        char *mapping = malloc(65536);
        int has_dedupe = 0;

        snprintf(csl, sizeof(csl),
                 ".show table ['%s'] ingestion %s mapping '%s'", r->table, kind,
                 r->mapping);
        if (mapping == NULL || mgmt(o, r->database, csl) < 0 ||
            adx_parse_cell(o->body, o->body_len, "Mapping", mapping, 65536) <
                0) {
            report(o, 0, "adx: route '%s': %s mapping '%s': %s", r->name, kind,
                   r->mapping, o->errmsg[0] ? o->errmsg : "not in the answer");
            free(mapping);
            return;
        }
        if (r->dedupe_column != NULL) {
            cJSON *arr = cJSON_Parse(mapping);
            const cJSON *e;

            cJSON_ArrayForEach(e, arr)
            {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "column");

                has_dedupe |= cJSON_IsString(c) &&
                              strcmp(c->valuestring, r->dedupe_column) == 0;
            }
            cJSON_Delete(arr);
        }
        report(o, r->dedupe_column == NULL || has_dedupe,
               "adx: route '%s': %s mapping '%s' exists%s%s%s", r->name, kind,
               r->mapping, r->dedupe_column == NULL ? "" : " and ",
               r->dedupe_column == NULL ? ""
               : has_dedupe             ? "maps the dedupe column "
                                        : "has no entry for the dedupe column ",
               r->dedupe_column == NULL ? "" : r->dedupe_column);
        free(mapping);
    }
}

static int auth_settled(struct oc *o)
{
    return auth_ready(o->auth) || auth_failures(o->auth) > 0;
}

static void check_adx(struct oc *o)
{
    const struct config *cfg = o->cfg;
    struct adx_options ao;
    struct auth_options au;
    char err[512];

    memset(&ao, 0, sizeof(ao));
    ao.app = "kadx-check";
    ao.timeout_ms = (long)cfg->adx.request_timeout_ms;
    ao.proxy = cfg->adx.proxy;
    ao.no_proxy = cfg->adx.no_proxy;
    o->ao = ao;
    if (adx_new(&o->loop, &ao, &o->adx, err, sizeof(err)) < 0) {
        report(o, 0, "adx: %s", err);
        return;
    }
    memset(&au, 0, sizeof(au));
    au.cfg = &cfg->adx.auth;
    au.cluster = cfg->adx.ingest_url;
    if (auth_new(&o->loop, o->adx, &au, &o->auth, err, sizeof(err)) < 0 ||
        auth_start(o->auth) < 0) {
        report(o, 0, "adx: auth: %s", err);
        return;
    }
    if (cfg->adx.auth.method == CONFIG_AUTH_NONE) {
        report(o, 1,
               "adx: no authentication configured (adx.auth.method "
               "none)");
    } else if (run_until(o, auth_settled) < 0 || !auth_ready(o->auth)) {
        report(o, 0, "adx: no token: %s",
               auth_last_error(o->auth)[0] ? auth_last_error(o->auth)
                                           : "timed out");
        return;
    } else if (auth_expires_ms(o->auth) > 0) {
        report(o, 1, "adx: token obtained (expires in %lld s)",
               (long long)((auth_expires_ms(o->auth) - wall_ms()) / 1000));
    } else {
        report(o, 1, "adx: token in place (static)");
    }
    for (size_t i = 0; i < cfg->nroutes && o->adx != NULL; i++) {
        check_route(o, &cfg->routes[i]);
    }
}

int online_check(const struct config *cfg, FILE *out)
{
    struct oc o;

    assert(cfg != NULL);
    assert(out != NULL);

    memset(&o, 0, sizeof(o));
    o.cfg = cfg;
    o.out = out;
    if (uv_loop_init(&o.loop) < 0) {
        report(&o, 0, "cannot create an event loop");
        return 1;
    }
    uv_timer_init(&o.loop, &o.timer);
    o.timer.data = &o;
    check_adx(&o);
    auth_free(o.auth);
    adx_free(o.adx);
    uv_close((uv_handle_t *)&o.timer, NULL);
    uv_run(&o.loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&o.loop);
    check_kafka(&o);
    free(o.body);
    fprintf(out, "%s\n",
            o.failed ? "online check: FAILED" : "online check: all ok");
    return o.failed ? 1 : 0;
}
