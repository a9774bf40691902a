/*
 * reconcile.c - replay "missing" (reconcile.h): which delivered batches of
 * a route ADX really holds, and a replay of the offsets no present batch
 * covers.
 *
 * It runs in three phases on the loop:
 *  1. TOKEN: wait (at most RECONCILE_TOKEN_MS, looking every
 *     RECONCILE_TOKEN_POLL_MS) for the forwarder's token provider to hold
 *     a token;
 *  2. QUERY: for the delivered batches overlapping the range, ask ADX with
 *     the forwarder's client, in groups of RECONCILE_IDS_PER_QUERY, how
 *     many rows carry each batch id in the route's dedupe column;
 *  3. REPLAY: the offsets that no fully present batch covers are replayed
 *     with journal_replay_async, one gap after the other.
 * A batch counts as present when ADX has at least as many rows with its id
 * as it had members; partial and absent batches cover nothing, so their
 * events are replayed unless another present batch (e.g. an earlier
 * replay) holds them.
 *
 * Owns: the batch list read from the journal, the per-batch row counts,
 * the gaps and one timer; it frees itself after calling back. Loop thread
 * only.
 */
#include "gateway/reconcile.h"
#include "base/clock.h"
#include "base/sbuf.h"

#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "storage/journal.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECONCILE_TOKEN_MS      30000
#define RECONCILE_TOKEN_POLL_MS 100
#define RECONCILE_IDS_PER_QUERY 100

enum rc_phase { RC_START, RC_TOKEN, RC_QUERY, RC_REPLAY, RC_DONE };

struct gap {
    char *topic;
    int32_t partition;
    int64_t from, to;
};

struct reconcile {
    struct journal *journal;          /* borrowed */
    const struct config_route *route; /* borrowed */
    const char *query_url;            /* borrowed (the config) */
    struct forwarder *fw;             /* borrowed: its ADX client and token */
    reconcile_done_cb cb;
    void *cb_arg;
    struct journal_replay_req jr;
    char topic[256];
    enum rc_phase phase;
    int cancelled;
    int64_t token_deadline; /* mono_ms() */
    uv_timer_t timer;
    struct journal_dbatch *b;
    size_t nb;
    int64_t *rows; /* per batch: rows found in ADX */
    size_t next;   /* next batch to ask about */
    struct gap *gaps;
    size_t ngaps, igap;
    struct reconcile_counts c;
};

static void rc_free(uv_handle_t *h)
{
    struct reconcile *rc = h->data;

    for (size_t i = 0; i < rc->ngaps; i++) {
        free(rc->gaps[i].topic);
    }
    free(rc->gaps);
    free(rc->rows);
    journal_dbatches_free(rc->b, rc->nb);
    free(rc);
}

/* Calls back (once) and frees the reconcile once its timer is closed.
 * status: 0 or a negative errno with msg saying why. */
static void rc_finish(struct reconcile *rc, int status, const char *msg)
{
    if (rc->phase == RC_DONE) {
        return;
    }
    rc->phase = RC_DONE;
    rc->c.checked_batches = (int64_t)rc->nb;
    rc->c.gaps = (int64_t)rc->ngaps;
    rc->cb(rc->cb_arg, status, status < 0 ? msg : "", &rc->c);
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
        rc_finish(rc, -EIO, msg);
        return;
    }
    rc->c.events += nevents;
    rc->c.batches += nbatches;
    rc->igap++;
    if (rc->cancelled) {
        rc_finish(rc, -ECANCELED, "the admin server is stopping");
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
        rc_finish(rc, 0, NULL);
        return;
    }
    q = rc->jr;
    q.topic = rc->gaps[rc->igap].topic;
    q.partition = rc->gaps[rc->igap].partition;
    q.from_offset = rc->gaps[rc->igap].from;
    q.to_offset = rc->gaps[rc->igap].to;
    r = journal_replay_async(rc->journal, &q, rc_replay_done, rc);
    if (r < 0) {
        snprintf(msg, sizeof(msg), "journal: %s", strerror(-r));
        rc_finish(rc, -EIO, msg);
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
            const struct journal_piece *p = &rc->b[i].pieces[k];

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
            rc->c.present++;
        } else if (rc->rows[i] > 0) {
            rc->c.partial++;
        } else {
            rc->c.missing++;
        }
        /* every (topic, partition) the batches touch, with its extent */
        for (size_t k = 0; k < rc->b[i].npieces; k++) {
            const struct journal_piece *p = &rc->b[i].pieces[k];
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
                        rc_finish(rc, -ENOMEM, "out of memory");
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
            rc_finish(rc, -ENOMEM, "out of memory");
            return;
        }
    }
    free(tps);
    rc->phase = RC_REPLAY;
    rc_replay_next(rc);
}

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

/* KQL names are written ['name']: refuse quotes and backslashes. */
static int kql_name_ok(const char *s)
{
    return s != NULL && s[0] != '\0' && strpbrk(s, "'\\\n\r") == NULL;
}

static void rc_query_next(struct reconcile *rc);

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
        rc_finish(rc, -ECANCELED, "the admin server is stopping");
        return;
    }
    if (res->status != 200) {
        snprintf(msg, sizeof(msg), "ADX query failed: %s%ld %.200s",
                 res->status ? "HTTP " : "", res->status,
                 res->status ? "" : res->errmsg);
        rc_finish(rc, -EPROTO, msg);
        return;
    }
    if (rc_read_counts(rc, res->body, res->body_len, first, end) < 0) {
        rc_finish(rc, -EPROTO,
                  "ADX answered the count query with an unexpected "
                  "body");
        return;
    }
    rc->next = end;
    rc_query_next(rc);
}

static void rc_query_next(struct reconcile *rc)
{
    const struct config_route *r = rc->route;
    struct adx *adx = forwarder_adx(rc->fw);
    struct auth *auth = forwarder_auth(rc->fw);
    struct sbuf q = {0};
    size_t end;
    char err[256] = "";
    char msg[320];
    char reqid[96];
    int ret;

    if (rc->next >= rc->nb) {
        rc_plan(rc);
        return;
    }
    if (adx == NULL || auth == NULL) {
        rc_finish(rc, -ECANCELED, "the forwarder is stopping");
        return;
    }
    end = rc->next + RECONCILE_IDS_PER_QUERY;
    if (end > rc->nb) {
        end = rc->nb;
    }
    sbuf_printf(&q, "['%s'] | where ['%s'] in (", r->table, r->dedupe_column);
    for (size_t i = rc->next; i < end; i++) {
        /* batch ids are "<uuid>-<seq>": no quotes to escape */
        sbuf_printf(&q, "%s'%s'", i > rc->next ? "," : "", rc->b[i].id);
    }
    sbuf_printf(&q, ") | summarize n = count() by ['%s']", r->dedupe_column);
    if (q.err) {
        sbuf_release(&q);
        rc_finish(rc, -ENOMEM, "out of memory");
        return;
    }
    snprintf(reqid, sizeof(reqid), "KADX.reconcile;%s;%zu",
             journal_uuid(rc->journal), rc->next);
    ret = adx_query(adx, rc->query_url, r->database, q.p, auth_token(auth),
                    reqid, rc_query_done, rc, err, sizeof(err));
    sbuf_release(&q);
    if (ret < 0) {
        snprintf(msg, sizeof(msg), "ADX query: %s", err);
        rc_finish(rc, -EPROTO, msg);
    }
}

/*
 * The first step, on the timer (so the callback never runs inside
 * reconcile_start), then every RECONCILE_TOKEN_POLL_MS while no token is
 * in place: the token provider belongs to the forwarder, whose listener
 * slot is its own.
 */
static void rc_step(uv_timer_t *t)
{
    struct reconcile *rc = t->data;
    struct auth *auth = forwarder_auth(rc->fw);
    char msg[512];

    if (rc->cancelled) {
        rc_finish(rc, -ECANCELED, "the admin server is stopping");
        return;
    }
    if (rc->nb == 0) {
        rc_finish(rc, 0, NULL);
        return;
    }
    if (auth == NULL) {
        rc_finish(rc, -ECANCELED, "the forwarder is stopping");
        return;
    }
    if (auth_ready(auth)) {
        rc->phase = RC_QUERY;
        rc_query_next(rc);
        return;
    }
    if (rc->phase == RC_START) {
        rc->phase = RC_TOKEN;
        rc->token_deadline = mono_ms() + RECONCILE_TOKEN_MS;
    } else if (mono_ms() >= rc->token_deadline) {
        snprintf(msg, sizeof(msg), "no ADX token after %d s: %s",
                 RECONCILE_TOKEN_MS / 1000, auth_last_error(auth));
        rc_finish(rc, -ETIMEDOUT, msg);
        return;
    }
    uv_timer_start(&rc->timer, rc_step, RECONCILE_TOKEN_POLL_MS, 0);
}

int reconcile_start(uv_loop_t *loop, const struct reconcile_options *o,
                    reconcile_done_cb cb, void *arg, struct reconcile **out,
                    char *err, size_t errlen)
{
    const struct config_route *r = &o->cfg->routes[o->jr->route];
    struct reconcile *rc;
    char jerr[256] = "";
    int ret;

    assert(loop != NULL && o != NULL && o->journal != NULL && cb != NULL);
    *out = NULL;
    if (!kql_name_ok(r->table) || !kql_name_ok(r->dedupe_column)) {
        snprintf(err, errlen,
                 "the table or dedupe column name of route "
                 "'%s' cannot be quoted in KQL",
                 r->name);
        return -EINVAL;
    }
    if (o->forwarder == NULL) {
        snprintf(err, errlen, "the forwarder is not running");
        return -ENOTCONN;
    }
    rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc->journal = o->journal;
    rc->route = r;
    rc->query_url = o->cfg->adx.query_url;
    rc->fw = o->forwarder;
    rc->cb = cb;
    rc->cb_arg = arg;
    rc->jr = *o->jr;
    if (o->jr->topic != NULL) {
        snprintf(rc->topic, sizeof(rc->topic), "%s", o->jr->topic);
        rc->jr.topic = rc->topic;
    }
    ret = journal_delivered_batches(rc->journal, rc->jr.route, rc->jr.topic,
                                    rc->jr.partition, rc->jr.from_offset,
                                    rc->jr.to_offset, &rc->b, &rc->nb, jerr,
                                    sizeof(jerr));
    if (ret < 0) {
        free(rc);
        snprintf(err, errlen, "journal: %s", jerr);
        return ret;
    }
    rc->rows = calloc(rc->nb ? rc->nb : 1, sizeof(*rc->rows));
    if (rc->rows == NULL) {
        journal_dbatches_free(rc->b, rc->nb);
        free(rc);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uv_timer_init(loop, &rc->timer);
    rc->timer.data = rc;
    uv_timer_start(&rc->timer, rc_step, 0, 0);
    *out = rc;
    return 0;
}

void reconcile_cancel(struct reconcile *rc)
{
    if (rc == NULL) {
        return;
    }
    rc->cancelled = 1;
    if (rc->phase == RC_START || rc->phase == RC_TOKEN) {
        rc_finish(rc, -ECANCELED, "the admin server is stopping");
    }
    /* RC_QUERY: the query calls back when ADX answers or the forwarder
     * stops (its client cancels every request); RC_REPLAY: the journal
     * calls back when the replay is done */
}
