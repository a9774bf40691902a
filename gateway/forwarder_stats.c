/*
 * forwarder_stats.c - what the forwarder tells /status, /metrics and
 * /readyz: the route states' names, the delivery latency histogram, the
 * per-route counters (forwarder_route_stats), readiness (forwarder_ready),
 * and the accessors (the ADX client, the token provider, batches in
 * flight). Loop thread only.
 */
#include "base/clock.h"
#include "base/err.h"
#include "base/utf8.h"
#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/forwarder_internal.h"
#include "gateway/queued.h"

#include <errno.h>

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
    out->waiting = 0;
    out->ingestion = config_ingestion_name(rt->cfg->ingestion);
    {
        int64_t now = wall_ms();

        for (const struct fbatch *b = rt->batches; b != NULL; b = b->next) {
            int64_t at = queued_op_posted_ms(b->qop);

            if (b->state == FB_WAITING) {
                out->waiting++;
            }
            if (at > 0) {
                out->awaiting_report++;
                if (now - at > out->oldest_report_wait_ms) {
                    out->oldest_report_wait_ms = now - at;
                }
            }
        }
    }
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

struct adx *forwarder_adx(const struct forwarder *fw)
{
    return fw->stopping ? NULL : fw->adx;
}

struct auth *forwarder_auth(const struct forwarder *fw)
{
    return fw->stopping ? NULL : fw->auth;
}

int64_t forwarder_token_expires_ms(const struct forwarder *fw)
{
    return fw->auth != NULL ? auth_expires_ms(fw->auth) : 0;
}

const char *forwarder_token_error(const struct forwarder *fw)
{
    return fw->auth != NULL ? auth_last_error(fw->auth) : "";
}

size_t forwarder_inflight(const struct forwarder *fw)
{
    size_t n = 0;

    for (size_t i = 0; i < fw->nroutes; i++) {
        n += (size_t)fw->routes[i].nbatches;
    }
    return n;
}
