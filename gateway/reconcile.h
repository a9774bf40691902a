/*
 * reconcile.h - replay "missing" (admin's POST /replay {"mode":"missing"}):
 * asks ADX, with the forwarder's ADX client and token provider, which
 * delivered batches of a route it really holds (by their id in the route's
 * dedupe column), then replays through the journal only the offsets that
 * no present batch covers. Details in reconcile.c and admin/ADMIN.md.
 *
 * Loop thread only. One callback contract: if reconcile_start returns < 0
 * the callback never runs; if it returns 0 it runs exactly once, later, on
 * the loop (or inside reconcile_cancel).
 */
#ifndef KADX_GATEWAY_RECONCILE_H
#define KADX_GATEWAY_RECONCILE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;
struct forwarder;
struct journal;
struct journal_replay_req;
struct reconcile;

/* What one reconcile found and did. */
struct reconcile_counts {
    int64_t checked_batches; /* delivered batches overlapping the range */
    int64_t present;         /* ADX holds all their rows */
    int64_t partial;         /* ADX holds some */
    int64_t missing;         /* ADX holds none */
    int64_t gaps;            /* offset ranges no present batch covers */
    int64_t events, batches; /* replayed */
};

/*
 * status: 0, or a negative errno with msg (one line) saying why:
 * -ECANCELED (cancelled, or the forwarder stopping), -ETIMEDOUT (no token
 * in time), -EPROTO (the ADX query failed or its answer was not
 * understood), -ENOMEM, -EIO (the journal). msg and c are valid for the
 * call only.
 */
typedef void (*reconcile_done_cb)(void *arg, int status, const char *msg,
                                  const struct reconcile_counts *c);

/* All borrowed; they must outlive the reconcile (until its callback). */
struct reconcile_options {
    const struct config *cfg;            /* the route and adx.query_url */
    struct journal *journal;             /* opened on this loop */
    struct forwarder *forwarder;         /* NULL: refused with -ENOTCONN */
    const struct journal_replay_req *jr; /* route, range; copied */
};

/*
 * Starts a reconcile of o->jr's route and range. Returns 0 and *out (valid
 * until the callback), or a negative errno with err filled: -EINVAL (the
 * route's table or dedupe column cannot be quoted in KQL), -ENOTCONN (no
 * forwarder), -ENOMEM, or the journal's error reading the batches.
 */
int reconcile_start(uv_loop_t *loop, const struct reconcile_options *o,
                    reconcile_done_cb cb, void *arg, struct reconcile **out,
                    char *err, size_t errlen);

/* Ends it as soon as what it waits for returns (at once while it waits for
 * a token); the callback then says -ECANCELED. NULL is ignored. */
void reconcile_cancel(struct reconcile *rc);

#endif
