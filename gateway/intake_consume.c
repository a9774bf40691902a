/*
 * intake_consume.c - the consuming side of the intake: the consumer queue
 * drained on the loop (each message taken into the accumulating buffer),
 * the rebalance callback (assign: where each partition starts, INV-2, and
 * which journaled events are no longer ours, INV-3; revoke and lost: commit
 * what is durable, drop what is not settled) and librdkafka's error and log
 * callbacks. Loop thread; the design is in intake.c's file comment.
 */
#include "base/clock.h"
#include "base/container_of.h"

#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/intake_internal.h"
#include "gateway/log.h"
#include "gateway/phases.h"
#include "gateway/prefetch.h"
#include "storage/journal.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ consuming */

/* Takes one message from librdkafka (ownership included). */
static void intake_take(struct intake *in, rd_kafka_message_t *m)
{
    struct ipart *p;

    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && m->rkt != NULL) {
        p = ipart_get(in, rd_kafka_topic_name(m->rkt), m->partition, 0);
        if (p != NULL) {
            int64_t off = m->offset;

            log_debug("intake", "%s[%d]: %s", p->topic, (int)p->partition,
                      rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            intake_offset_reset(in, p, off);
            return;
        }
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            in->c.kafka_errors++;
            intake_set_error(in, "consume: %s%s%s", rd_kafka_message_errstr(m),
                             m->rkt ? " on " : "",
                             m->rkt ? rd_kafka_topic_name(m->rkt) : "");
            log_warn("intake", "%s", in->c.last_error);
        }
        rd_kafka_message_destroy(m);
        return;
    }
    p = ipart_get(in, rd_kafka_topic_name(m->rkt), m->partition, 1);
    if (p == NULL || !p->assigned || p->rewind != REWIND_NONE ||
        m->offset < p->skip_below || m->offset <= p->consumed) {
        /* Not ours any more, or already journaled (INV-2). */
        rd_kafka_message_destroy(m);
        return;
    }
    if (msgbuf_push(&in->acc, p, m) < 0) {
        /* Cannot hold it: rewind the partition so that it comes again. */
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_error_t *e;

        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset =
            m->offset;
        rd_kafka_message_destroy(m);
        e = rd_kafka_seek_partitions(in->rk, l, 0);
        if (e != NULL) {
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
        log_error("intake", "out of memory holding a message: seeking back");
        return;
    }
    if (in->acc.ph_us == 0) {
        in->acc.ph_us = phase_now_us();
    }
    p->consumed = m->offset;
    p->n_consumed++;
    in->c.consumed++;
    if (m->payload == NULL && in->cfg->intake.skip_tombstones) {
        p->n_tombstones++;
        in->c.tombstones++;
    }
    rd_kafka_message_destroy(m); /* copied: its fetch buffer can go now */
}

static int acc_full(const struct intake *in)
{
    return in->acc.n >= (size_t)in->acc_max_msgs ||
           in->acc.used >= (size_t)in->acc_max_bytes;
}

void intake_on_idle(uv_idle_t *h)
{
    struct intake *in = container_of(h, struct intake, idle);

    uv_idle_stop(h);
    intake_drain(in);
}

/* phases.h: produce -> here, of the oldest message of one read. */
static void phase_fetch(rd_kafka_message_t **msgs, ssize_t n)
{
    int64_t oldest = INT64_MAX;

    for (ssize_t i = 0; i < n; i++) {
        int64_t ts =
            msgs[i]->err ? -1 : rd_kafka_message_timestamp(msgs[i], NULL);

        if (ts > 0 && ts < oldest) {
            oldest = ts;
        }
    }
    if (oldest != INT64_MAX) {
        phase_observe_us(PHASE_FETCH, (wall_ms() - oldest) * 1000);
    }
}

/*
 * Whether librdkafka's consumer queue is at its limits now (as many
 * messages as queued.min.messages, or as many bytes as
 * queued.max.messages.kbytes at the mean size of the messages taken so
 * far): librdkafka 2.0.2 then stops fetching every partition and looks
 * again only when a broker thread wakes (up to 1 s), so the queue will
 * need a kick once drained. With intake draining faster than the journal
 * fills (nothing blocked), that idle wait, not the budget, set the
 * catch-up rate (BENCHMARKS.md "Backlog catch-up").
 */
static int prefetch_at_limit(struct intake *in)
{
    const struct prefetch_plan *pl = &in->prefetch;
    int64_t len;

    if (pl->budget <= 0) {
        return 0;
    }
    len = (int64_t)rd_kafka_queue_length(in->rkqu);
    /* 7/8: a response more brings it over */
    if (len * 8 >= (int64_t)pl->queued_msgs * 7) {
        return 1;
    }
    return in->taken_msgs > 0 && len * (in->taken_bytes / in->taken_msgs) * 8 >=
                                     (int64_t)pl->queued_kbytes * 1024 * 7;
}

/*
 * Wakes librdkafka's fetchers once the queue ran dry after reaching its
 * limits: seeks every partition consuming normally to the offset after the
 * last one taken (where it goes on anyway: the queue is empty, and what a
 * fetch in flight brings is dropped as outdated and fetched again). A seek
 * makes the partition's fetch state active again, and librdkafka 2.0.2
 * then wakes its broker thread ("fetch start"); pausing and resuming the
 * assignment (prefetch_kick, what this did before) is served by the main
 * thread, and the broker threads went on sleeping until their 1 s timeout:
 * with debug=fetch, partitions became fetchable 0.8-1 s after each kick.
 */
static void prefetch_wake(struct intake *in)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)in->nparts);
    rd_kafka_error_t *e;

    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->assigned && p->rewind == REWIND_NONE && !p->reset_pending &&
            p->consumed >= 0 && p->consumed + 1 >= p->skip_below) {
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition)
                ->offset = p->consumed + 1;
        }
    }
    if (l->cnt == 0) {
        prefetch_kick(in->rk);
    } else {
        e = rd_kafka_seek_partitions(in->rk, l, 0); /* 0: asynchronous */
        if (e != NULL) {
            rd_kafka_error_destroy(e);
            prefetch_kick(in->rk);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Drains the consumer queue (messages and callbacks). */
void intake_drain(struct intake *in)
{
    rd_kafka_message_t *msgs[INTAKE_BATCH];

    if (in->rkqu == NULL) {
        return;
    }
    for (int b = 0; b < INTAKE_WAKE_BUDGET; b++) {
        ssize_t n;

        if (acc_full(in) && in->appending) {
            in->drain_blocked = 1; /* on_appended drains again */
            in->prefetch_full = 1; /* librdkafka's queues may fill */
            return;
        }
        if (!in->prefetch_full && prefetch_at_limit(in)) {
            in->prefetch_full = 1;
        }
        n = rd_kafka_consume_batch_queue(in->rkqu, 0, msgs, INTAKE_BATCH);
        if (n < 0) {
            log_error("intake", "consume: %s",
                      rd_kafka_err2str(rd_kafka_last_error()));
            break;
        }
        if (n > 0) {
            phase_fetch(msgs, n);
        }
        in->taken_msgs += n;
        for (ssize_t i = 0; i < n; i++) {
            in->taken_bytes += (int64_t)msgs[i]->len;
            intake_take(in, msgs[i]);
        }
        intake_submit(in);
        if (in->closing_consumer && rd_kafka_consumer_closed(in->rk)) {
            intake_stop_advance(in);
            return;
        }
        if (n < INTAKE_BATCH) {
            if (in->prefetch_full && in->prefetch.budget > 0 && !in->kpaused &&
                in->stop == STOP_NONE && !in->closing_consumer) {
                in->prefetch_full = 0;
                in->prefetch_kicks++;
                log_debug("intake",
                          "prefetch: the queue ran dry after a blocked "
                          "drain or a full queue: waking librdkafka's fetchers "
                          "(%llu)",
                          (unsigned long long)in->prefetch_kicks);
                prefetch_wake(in);
            }
            intake_stop_advance(in);
            return;
        }
    }
    /* More may be queued: continue after the loop's other work. */
    uv_idle_start(&in->idle, intake_on_idle);
}

void intake_on_poll(uv_poll_t *h, int status, int events)
{
    struct intake *in = container_of(h, struct intake, poll);
    char buf[256];

    while (read(in->pipefd[0], buf, sizeof(buf)) > 0) {
    }
    intake_drain(in);
}

/* ------------------------------------------------------------ rebalance */

/* Callback of the drops issued on revoke/lost/assign. */
struct drop_ctx {
    struct intake *in;
    struct ipart *p;
    int64_t after;
};

static void on_dropped(void *arg, int status,
                       const struct journal_drop_result *res, const char *err)
{
    struct drop_ctx *d = arg;
    struct intake *in = d->in;

    d->p->drops_pending--;
    if (d->p->drops_pending == 0) {
        d->p->drop_after = -1;
    }
    if (status < 0) {
        intake_set_error(in, "dropping unsettled events of %s[%d]: %s",
                         d->p->topic, (int)d->p->partition, err);
        log_error("intake", "%s", in->c.last_error);
    } else {
        in->c.dropped += (uint64_t)res->dropped;
        d->p->durable = res->high_offset;
        if (res->dropped > 0 || res->kept_batched > 0) {
            log_info("intake",
                     "%s[%d]: dropped %lld unsettled events after offset "
                     "%lld (INV-3), %lld kept in batches",
                     d->p->topic, (int)d->p->partition, (long long)res->dropped,
                     (long long)d->after, (long long)res->kept_batched);
        }
    }
    free(d);
    intake_stop_advance(in);
}

/* INV-3: drops p's journaled events after `after` (queued after any append
 * in flight: the journal runs requests in order). */
void intake_drop(struct intake *in, struct ipart *p, int64_t after)
{
    struct drop_ctx *d = malloc(sizeof(*d));
    int rc;

    if (d == NULL) {
        log_error("intake", "out of memory dropping %s[%d]", p->topic,
                  (int)p->partition);
        return;
    }
    d->in = in;
    d->p = p;
    d->after = after;
    rc = journal_drop_partition_async(in->j, p->topic, p->partition, after,
                                      on_dropped, d);
    if (rc < 0) {
        free(d);
        intake_set_error(in, "dropping unsettled events of %s[%d]: %s",
                         p->topic, (int)p->partition, strerror(-rc));
        log_error("intake", "%s", in->c.last_error);
        return;
    }
    p->durable = after < p->durable ? after : p->durable;
    if (p->drops_pending == 0 || after < p->drop_after) {
        p->drop_after = after;
    }
    p->drops_pending++;
}

/* Journal high offset of p, or -1 (logged) on a read error. */
static int64_t part_high(struct intake *in, struct ipart *p)
{
    char err[256];
    int64_t high = -1;

    if (journal_high_offset(in->j, p->topic, p->partition, &high, err,
                            sizeof(err)) < 0) {
        log_warn("intake", "journal high offset of %s[%d]: %s", p->topic,
                 (int)p->partition, err);
        return p->durable;
    }
    return high;
}

/*
 * Learns from a committed offset and its metadata (assign time): when the
 * last committer, or one of the INTAKE_CHAIN_MAX before it, was us, the
 * offsets we had committed were settled by us even if the settled file
 * missed it (crash window). Fills owner and chain for chain_extend().
 */
static void learn_committed(struct intake *in, struct ipart *p,
                            const rd_kafka_topic_partition_t *tp, char *owner,
                            char *chain)
{
    char idbuf[INTAKE_UUID_MAX];
    const char *id = part_ident(in, p, idbuf);
    int64_t ours;

    meta_parse(tp->metadata, tp->metadata_size, owner, chain);
    if (tp->offset < 0) {
        return;
    }
    p->group = max64(p->group, tp->offset);
    /* ours only if made in this epoch (part_ident) */
    if (strcmp(owner, id) == 0) {
        p->acked = max64(p->acked, tp->offset - 1);
    } else if ((ours = chain_find(chain, id)) > 0) {
        p->acked = max64(p->acked, ours - 1);
    }
    p->commit_sent = max64(p->commit_sent, p->acked);
}

static void on_assign(struct intake *in, rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_copy(l);
    rd_kafka_resp_err_t e;
    int known = 1;

    /* First assignment of this process: also look at journaled partitions
     * that were not given to us: their unsettled events go (INV-3). */
    if (!in->first_assigned) {
        for (size_t i = 0; i < in->nparts; i++) {
            struct ipart *p = in->parts[i];

            if (!rd_kafka_topic_partition_list_find(q, p->topic,
                                                    p->partition)) {
                rd_kafka_topic_partition_list_add(q, p->topic, p->partition);
            }
        }
    }
    e = rd_kafka_committed(in->rk, q, INTAKE_COMMITTED_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        known = 0;
        intake_set_error(in, "reading committed offsets: %s",
                         rd_kafka_err2str(e));
        log_warn("intake",
                 "%s: starting from the group's committed offsets "
                 "without touching older journaled events",
                 in->c.last_error);
    }
    for (int i = 0; i < q->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &q->elems[i];
        rd_kafka_topic_partition_t *at =
            rd_kafka_topic_partition_list_find(l, tp->topic, tp->partition);
        struct ipart *p = ipart_get(in, tp->topic, tp->partition, 1);
        char owner[INTAKE_UUID_MAX] = "";
        char idbuf[INTAKE_UUID_MAX];
        char chain[INTAKE_META_MAX] = "";
        int64_t high;
        int64_t start;
        int pknown;

        if (p == NULL) {
            log_error("intake", "out of memory on assignment");
            continue;
        }
        high = part_high(in, p);
        if (p->drops_pending > 0 && p->drop_after < high) {
            high = p->drop_after; /* what the queued drop will leave */
        }
        p->durable = high;
        pknown = known && tp->err == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (pknown) {
            learn_committed(in, p, tp, owner, chain);
        }
        if (at == NULL) {
            /* Journaled here before, owned by another member now. */
            if (pknown && high > p->acked) {
                intake_drop(in, p, p->acked);
            }
            continue;
        }
        p->assigned = 1;
        p->consumed = -1;
        p->in_fly = 0;
        p->rewind = REWIND_NONE; /* the broker tells again (reset events) */
        p->rewind_at = -1;
        p->reset_pending = 0;
        if (!pknown) {
            /* librdkafka fetches the committed offset itself; whatever
             * we already hold is skipped (INV-2) and never committed
             * below the group's offset. */
            at->offset = RD_KAFKA_OFFSET_INVALID;
            p->skip_below = high + 1;
            p->group = max64(p->group, high + 1);
            continue;
        }
        if (tp->offset >= 0 && strcmp(owner, part_ident(in, p, idbuf)) != 0) {
            chain_extend(p, owner, chain, tp->offset);
        } else if (tp->offset >= 0) {
            /* ours: keep the chain our earlier commits carried */
            snprintf(p->prev, sizeof(p->prev), "%s", chain);
        }
        if (tp->offset >= 0 && tp->offset - 1 > p->acked && high > p->acked) {
            /* Someone else settled past our settled point: our events
             * after it are theirs now (INV-3). Drop, then start at the
             * group's offset. */
            intake_drop(in, p, p->acked);
            start = tp->offset;
        } else {
            start = max64(tp->offset, high + 1);
        }
        /* Nothing known: the user's auto.offset.reset, applied by kadx
         * (librdkafka's is "error": a refused position comes back as an
         * event, see intake_offset_reset). */
        at->offset = start >= 0                     ? start
                     : in->cfg->intake.reset_latest ? RD_KAFKA_OFFSET_END
                                                    : RD_KAFKA_OFFSET_BEGINNING;
        p->skip_below = start;
        log_info("intake",
                 "assigned %s[%d]: committed %lld, journal high %lld, "
                 "settled %lld, start %lld",
                 p->topic, (int)p->partition, (long long)tp->offset,
                 (long long)high, (long long)p->acked, (long long)start);
    }
    in->first_assigned = 1;
    rd_kafka_topic_partition_list_destroy(q);
    intake_persist(in);
}

static void on_revoke(struct intake *in, rd_kafka_topic_partition_list_t *l,
                      int lost)
{
    rd_kafka_topic_partition_list_t *c = NULL;

    for (int i = 0; i < l->cnt; i++) {
        struct ipart *p =
            ipart_get(in, l->elems[i].topic, l->elems[i].partition, 0);

        if (p == NULL) {
            continue;
        }
        /* Consumed but not handed to the journal: forget them; the next
         * owner consumes them from the committed offset. */
        msgbuf_remove_part(&in->acc, p);
        if (!in->appending) {
            msgbuf_remove_part(&in->fly, p);
            p->in_fly = 0;
        }
        if (!lost) {
            int64_t off = commit_target(p);

            if (off >= 0) {
                rd_kafka_topic_partition_t *tp;

                if (c == NULL) {
                    c = rd_kafka_topic_partition_list_new(l->cnt);
                }
                tp = rd_kafka_topic_partition_list_add(c, p->topic,
                                                       p->partition);
                tp->offset = off;
                tp->metadata = commit_meta(in, p);
                tp->metadata_size = tp->metadata ? strlen(tp->metadata) : 0;
            }
        }
    }
    if (c != NULL) {
        /* Blocking on purpose (see intake.c's file comment). */
        rd_kafka_resp_err_t e = rd_kafka_commit(in->rk, c, 0);

        commit_apply(in, e, c);
        rd_kafka_topic_partition_list_destroy(c);
    }
    for (int i = 0; i < l->cnt; i++) {
        struct ipart *p =
            ipart_get(in, l->elems[i].topic, l->elems[i].partition, 0);

        if (p == NULL) {
            continue;
        }
        if (lost) {
            in->c.lost++;
        }
        if ((in->appending && p->in_fly) || p->durable > p->acked) {
            if (in->appending && p->in_fly) {
                p->fly_stale = 1; /* its append result is void */
            }
            if (in->commit_inflight && p->commit_sent > p->acked) {
                /* An async commit of ours may still land (a lost partition
                 * can be committed until the group moves on): dropping
                 * now would lose what it settles. on_committed drops. */
                p->drop_deferred = 1;
            } else {
                intake_drop(in, p, p->acked);
            }
        }
        p->assigned = 0;
        p->in_fly = 0;
        if (p->rewind == REWIND_PAUSED) {
            p->rewind = REWIND_NONE; /* its next owner checks again */
        }
        log_info("intake", "%s %s[%d]: settled %lld", lost ? "lost" : "revoked",
                 p->topic, (int)p->partition, (long long)p->acked);
    }
    in->last = NULL;
}

void intake_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    struct intake *in = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    in->c.rebalances++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(in, l);
        if (coop) {
            error = rd_kafka_incremental_assign(rk, l);
        } else {
            e = rd_kafka_assign(rk, l);
        }
        if (in->kpaused && l->cnt > 0) {
            rd_kafka_pause_partitions(rk, l);
        }
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(in, l, rd_kafka_assignment_lost(rk));
        if (coop) {
            error = rd_kafka_incremental_unassign(rk, l);
        } else {
            e = rd_kafka_assign(rk, NULL);
        }
    } else {
        log_error("intake", "rebalance error: %s", rd_kafka_err2str(err));
        on_revoke(in, l, 1);
        e = rd_kafka_assign(rk, NULL);
    }
    if (error != NULL) {
        log_error("intake", "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error("intake", "rebalance: %s", rd_kafka_err2str(e));
    }
    intake_persist(in);
}

/* ------------------------------------------------------------ callbacks */

/* How often a Kafka error that keeps repeating is logged again. */
#define KAFKA_ERR_RELOG_MS (5 * 60 * 1000)

/* A hint for errors a user fixes in the config: which keys to look at. */
static const char *kafka_error_hint(int err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        if (strstr(reason, "SCRAM") != NULL &&
            rd_kafka_version() < 0x020601ff) {
            return " (check kafka sasl.username and sasl.password; "
                   "librdkafka before 2.6.1 cannot log in with SCRAM to "
                   "Kafka 4.x, see gateway/INTAKE.md)";
        }
        return " (check kafka sasl.mechanisms, sasl.username and "
               "sasl.password)";
    }
    if (err == RD_KAFKA_RESP_ERR__SSL) {
        return " (check kafka ssl.ca.location and the broker's certificate)";
    }
    return "";
}

/* The slot of err in in->kerr: its own, or the one logged longest ago. */
static struct kerr_seen *kerr_slot(struct intake *in, int err)
{
    struct kerr_seen *old = &in->kerr[0];

    for (size_t i = 0; i < sizeof(in->kerr) / sizeof(in->kerr[0]); i++) {
        if (in->kerr[i].err == err && in->kerr[i].logged_ms != 0) {
            return &in->kerr[i];
        }
        if (in->kerr[i].logged_ms < old->logged_ms) {
            old = &in->kerr[i];
        }
    }
    old->err = err;
    old->logged_ms = 0;
    old->repeats = 0;
    return old;
}

void intake_on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque)
{
    struct intake *in = opaque;
    uint64_t now = wall_ms();
    int fix_me = err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
                 err == RD_KAFKA_RESP_ERR__SSL;
    struct kerr_seen *seen;

    in->c.kafka_errors++;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];

        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        intake_set_error(in, "kafka fatal error: %s", buf);
        log_error("intake", "%s", in->c.last_error);
        return;
    }
    /* "all brokers down" follows a refused login: keep the cause as the
     * last error (/readyz shows it) while it is recent */
    if (!fix_me && in->fix_me_ms != 0 && now - in->fix_me_ms < 60000) {
        log_debug("intake", "kafka: %s: %s",
                  rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        return;
    }
    /* the hint first: last_error is cut at its size */
    intake_set_error(in, "kafka: %s%s: %s",
                     rd_kafka_err2name((rd_kafka_resp_err_t)err),
                     kafka_error_hint(err, reason), reason);
    if (fix_me) {
        in->fix_me_ms = now;
    }
    /* librdkafka reports a refused login or handshake again on every
     * reconnect: log each error code once, then once per
     * KAFKA_ERR_RELOG_MS with the count of those not logged. */
    seen = kerr_slot(in, err);
    if (seen->logged_ms != 0 && now - seen->logged_ms < KAFKA_ERR_RELOG_MS) {
        seen->repeats++;
        log_debug("intake", "%s", in->c.last_error);
        return;
    }
    if (seen->repeats > 0) {
        log_msg(fix_me ? LOG_ERROR : LOG_WARN, "intake",
                "%s (and %" PRIu64 " times since it was last logged)",
                in->c.last_error, seen->repeats);
    } else {
        log_msg(fix_me ? LOG_ERROR : LOG_WARN, "intake", "%s",
                in->c.last_error);
    }
    seen->logged_ms = now;
    seen->repeats = 0;
}

void intake_on_kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    enum log_level l = level <= 3   ? LOG_ERROR
                       : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO
                                    : LOG_DEBUG;

    /* Connection failures also come as error events (intake_on_kafka_error):
     * log them once. */
    if (l < LOG_DEBUG && strcmp(fac, "FAIL") == 0) {
        l = LOG_DEBUG;
    }
    if (l <= log_get_level()) {
        log_msg(l, "kafka", "%s: %s", fac, buf);
    }
}
