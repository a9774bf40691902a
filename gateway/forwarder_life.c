/*
 * forwarder_life.c - the forwarder's life cycle: forwarder_new (the ADX
 * client, the token provider, the schema registry's client, queued
 * ingestion, the timers), forwarder_start, the stop (requests in flight
 * get their time, then are cancelled: their batches stay SENT), free,
 * reconfigure on a reload, and the operator's pause and resume of routes.
 * Loop thread only.
 */
#include "base/clock.h"
#include "base/err.h"
#include "gateway/adx.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/forwarder_internal.h"
#include "gateway/log.h"
#include "gateway/queued.h"
#include "gateway/registry.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FW_IDLE_POLL_MS 1000

static void on_stop_done(uv_timer_t *t);

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
        adx_free(fw->adx);
        free(fw->routes);
        free(fw);
        return rc;
    }
    rc = registry_new(loop, o->journal, &fw->registry, err, errlen);
    if (rc == 0 && queued_new(loop, fw->adx, &fw->queued) < 0) {
        registry_free(fw->registry);
        set_err(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    if (rc < 0) {
        auth_free(fw->auth);
        adx_free(fw->adx);
        free(fw->routes);
        free(fw);
        return rc;
    }
    auth_set_listener(fw->auth, fw_on_token, fw);
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
    uv_timer_start(&fw->idle, fw_on_idle, FW_IDLE_POLL_MS, FW_IDLE_POLL_MS);
    uv_timer_start(&fw->retire_timer, fw_on_retire_timer, FW_RETIRE_IDLE_MS, 0);
    for (size_t i = 0; i < fw->nroutes; i++) {
        eo_check(&fw->routes[i]); /* issue 18: before the first ambiguity */
        fw_route_maybe_cut(&fw->routes[i]);
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

void fw_check_stopped(struct forwarder *fw)
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
    auth_free(fw->auth);
    fw->auth = NULL;
    {
        struct adx *a = fw->adx;

        fw->adx = NULL;
        adx_free(a);
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
    /* reports are not waited for: those batches stay SENT and are posted
     * again, with their ingest-by tag, at the next start */
    queued_stop(fw->queued);
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
    queued_free(fw->queued); /* before adx_free: no callback after it */
    fw->queued = NULL;
    auth_free(fw->auth);
    fw->auth = NULL;
    if (fw->adx != NULL) {
        adx_free(fw->adx);
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
        auth_free(fresh);
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
        auth_free(fw->auth);
        fw->auth = fresh;
        auth_set_listener(fw->auth, fw_on_token, fw);
        if (fw->started) {
            rc = auth_start(fw->auth);
            if (rc < 0) {
                log_warn("forwarder", "token provider: %s", strerror(-rc));
            }
        }
        if (auth_ready(fw->auth)) {
            fw_on_token(fw);
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
                    uv_timer_start(&o->timer, fw_on_fb_timer, 0, 0);
                }
            }
        }
        fw_route_maybe_cut(rt);
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
            fw_route_set_state(&fw->routes[i], FORWARDER_PAUSED_OPERATOR,
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
        fw_route_set_state(rt, FORWARDER_RUNNING, NULL);
        for (struct fbatch *b = rt->batches; b != NULL; b = b->next) {
            if (b->state == FB_WAITING) {
                uv_timer_start(&b->timer, fw_on_fb_timer, 0, 0);
            }
        }
        rt->backlog = 1;
        fw_route_maybe_cut(rt);
    }
    return 0;
}
