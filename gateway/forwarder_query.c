/*
 * forwarder_query.c - resolving an ambiguous send (INV-5): the dedupe query
 * that asks ADX whether a batch id is there (fb_query, on_query), asked
 * again while the original request may still commit (the ambiguous window,
 * fb_ambiguous), and the check of the query's own assumptions per route:
 * the table's IngestionTime policy and the dedupe column's type (eo_*, see
 * struct eo_check in forwarder_internal.h). Loop thread only.
 */
#include "base/clock.h"
#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/forwarder_internal.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

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
            int64_t delay = fw_backoff_next(b, -1);

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
    fb_wait(b, fw_backoff_next(b, res->retry_after_ms), FB_NEXT_QUERY);
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
void eo_check(struct route *rt)
{
    struct forwarder *fw = rt->fw;
    const struct config_route *rc = rt->cfg;
    char table[300], csl[400], err[256];

    if (rc->dedupe_column == NULL || rt->eo.inflight > 0 || fw->stopping ||
        fw->no_eo_check) {
        return;
    }
    if (!auth_ready(fw->auth)) {
        rt->eo.wanted = 1; /* fw_on_token runs it */
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
void fb_query(struct fbatch *b)
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
        fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_QUERY);
    }
}

void fb_ambiguous(struct fbatch *b)
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
    fb_wait(b, fw_backoff_next(b, -1), FB_NEXT_SEND);
}
