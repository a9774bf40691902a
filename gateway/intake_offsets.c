/*
 * intake_offsets.c - offsets that go backwards (intake.c "Offset resets",
 * gateway/INTAKE.md): a position the broker refused checked against its log
 * range (a retention gap, or a partition gone backwards and paused), a
 * partition restarted at a chosen offset, and the operator's new journal
 * epoch (intake_new_epoch). Loop thread.
 */
#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/intake_internal.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ offsets */

/*
 * Restarts p's fetching at off. After a refused position (reset "error")
 * librdkafka has stopped fetching the partition and a seek is refused
 * (__STATE), so the partition is assigned again: cooperative, alone
 * (incremental unassign + assign); eager, the whole assignment with every
 * other partition at its next offset (what it already consumed is skipped
 * by intake_take and the journal, INV-2). Pauses are applied again.
 */
static void part_restart(struct intake *in, struct ipart *p, int64_t off)
{
    int coop = strcmp(rd_kafka_rebalance_protocol(in->rk), "COOPERATIVE") == 0;
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (coop) {
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        error = rd_kafka_incremental_unassign(in->rk, l);
        if (error == NULL) {
            l->elems[0].offset = off;
            error = rd_kafka_incremental_assign(in->rk, l);
        }
    } else {
        e = rd_kafka_assignment(in->rk, &l);
        for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &l->elems[i];
            struct ipart *q = ipart_get(in, tp->topic, tp->partition, 0);

            if (q == p) {
                tp->offset = off;
            } else if (q != NULL && q->consumed >= 0) {
                tp->offset = q->consumed + 1;
            } else if (q != NULL && q->skip_below >= 0) {
                tp->offset = q->skip_below;
            } else {
                tp->offset = in->cfg->intake.reset_latest
                                 ? RD_KAFKA_OFFSET_END
                                 : RD_KAFKA_OFFSET_BEGINNING;
            }
        }
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            e = rd_kafka_assign(in->rk, l);
        }
    }
    if (error != NULL || e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        intake_set_error(in, "restarting %s[%d] at %lld: %s", p->topic,
                         (int)p->partition, (long long)off,
                         error ? rd_kafka_error_string(error)
                               : rd_kafka_err2str(e));
        log_error("intake", "%s", in->c.last_error);
        if (error != NULL) {
            rd_kafka_error_destroy(error);
        }
    } else if (l != NULL && l->cnt > 0) {
        /* a pause outlives an assign in librdkafka: set it either way */
        if (in->kpaused) {
            rd_kafka_pause_partitions(in->rk, l);
        } else {
            rd_kafka_resume_partitions(in->rk, l);
        }
    }
    if (l != NULL) {
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* The broker's log start and end of p (blocking, bounded). 0 or -EAGAIN
 * with err filled. */
static int part_watermarks(struct intake *in, struct ipart *p, int64_t *lo,
                           int64_t *hi, char *err, size_t errlen)
{
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
        in->rk, p->topic, p->partition, lo, hi, INTAKE_WATERMARK_TIMEOUT_MS);

    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "reading the log range of %s[%d]: %s", p->topic,
                 (int)p->partition, rd_kafka_err2str(e));
        return -EAGAIN;
    }
    p->log_start = *lo;
    p->log_end = *hi;
    return 0;
}

/* The partition went backwards: pause it and say so (or start a new
 * epoch at once when intake.on_rewind says so). */
static void part_rewound(struct intake *in, struct ipart *p, int64_t off)
{
    char err[256];
    int64_t from = -1;

    p->rewind = REWIND_PAUSED;
    p->rewind_at = off;
    in->c.rewinds++;
    /* not paused in librdkafka: after the refused position it fetches
     * nothing of p until part_restart, and intake_take drops anything of
     * a rewound partition (a pause/resume pair raced with the restart) */
    intake_set_error(
        in,
        "%s[%d] went backwards: kadx needs offset %lld (journal mark %lld, "
        "epoch %lld; group committed %lld) but the broker's log starts at "
        "%lld and ends at %lld; its new events would be dropped as "
        "duplicates: partition paused until a new epoch is started (POST "
        "/partitions/epoch)",
        p->topic, (int)p->partition, (long long)off, (long long)p->durable,
        (long long)p->epoch, (long long)p->group, (long long)p->log_start,
        (long long)p->log_end);
    log_error("intake", "%s", in->c.last_error);
    if (in->cfg->intake.on_rewind == CONFIG_ON_REWIND_EPOCH) {
        if (intake_new_epoch(in, p->topic, p->partition, &from, err,
                             sizeof(err)) < 0) {
            log_error("intake", "intake.on_rewind new_epoch: %s", err);
        }
    }
}

/*
 * The broker refused p's fetch position off (librdkafka's
 * __AUTO_OFFSET_RESET with auto.offset.reset=error; off < 0 when
 * librdkafka had no position of its own). Decides with the broker's log
 * range: gap, backwards, or the user's start for a partition with no
 * history.
 */
void intake_offset_reset(struct intake *in, struct ipart *p, int64_t off)
{
    const char *choice = in->cfg->intake.reset_latest ? "latest" : "earliest";
    char err[256];
    int64_t lo = -1;
    int64_t hi = -1;
    int64_t from;

    if (!p->assigned || p->rewind != REWIND_NONE || in->stop != STOP_NONE) {
        return;
    }
    if (off < 0) {
        off = p->skip_below; /* -1: no committed offset, nothing journaled */
    }
    p->reset_pending = 0;
    if (part_watermarks(in, p, &lo, &hi, err, sizeof(err)) < 0) {
        in->c.kafka_errors++;
        intake_set_error(in, "%s: checking again", err);
        log_warn("intake", "%s", in->c.last_error);
        p->reset_pending = 1;
        p->reset_off = off;
        p->reset_at = uv_now(in->loop) + INTAKE_RESET_RETRY_MS;
        return;
    }
    from = in->cfg->intake.reset_latest ? hi : lo;
    if (off < 0) {
        log_info("intake",
                 "%s[%d]: no committed offset, starting at %lld "
                 "(auto.offset.reset=%s)",
                 p->topic, (int)p->partition, (long long)from, choice);
    } else if (off > hi) {
        part_rewound(in, p, off);
        return;
    } else if (off < lo) {
        p->n_gaps++;
        p->n_gap_events += (uint64_t)(from - off);
        p->gap_first = off;
        p->gap_last = from - 1;
        in->c.gaps++;
        in->c.gap_events += (uint64_t)(from - off);
        intake_set_error(in,
                         "%s[%d]: offsets %lld..%lld were deleted by "
                         "retention before kadx read them; %lld events "
                         "skipped, consuming from %lld "
                         "(auto.offset.reset=%s)",
                         p->topic, (int)p->partition, (long long)off,
                         (long long)(lo - 1), (long long)(from - off),
                         (long long)from, choice);
        log_error("intake", "%s", in->c.last_error);
    } else {
        from = off; /* in range again (the log moved): fetch it */
    }
    p->skip_below = max64(p->skip_below, from);
    part_restart(in, p, from);
}

/* Checks refused offsets again whose log range was unknown. */
void intake_reset_retry(struct intake *in)
{
    uint64_t now = uv_now(in->loop);

    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->reset_pending && p->reset_at <= now) {
            intake_offset_reset(in, p, p->reset_off);
        }
    }
}

struct epoch_ctx {
    struct intake *in;
    struct ipart *p;
    int64_t from;
};

static void on_epoch(void *arg, int status, int64_t epoch, const char *err)
{
    struct epoch_ctx *x = arg;
    struct intake *in = x->in;
    struct ipart *p = x->p;

    if (status < 0) {
        p->rewind = REWIND_PAUSED;
        intake_set_error(in, "new epoch of %s[%d]: %s", p->topic,
                         (int)p->partition, err);
        log_error("intake", "%s", in->c.last_error);
        free(x);
        return;
    }
    /* Everything below belongs to the old epoch (sealed in the journal,
     * delivered without a settled limit). INV-2 and INV-3 start over. */
    p->epoch = epoch;
    p->file_epoch = epoch;
    p->acked = p->settled = p->commit_sent = -1;
    p->group = -1;
    p->prev[0] = '\0';
    p->durable = x->from - 1;
    p->consumed = -1;
    p->skip_below = x->from;
    p->rewind = REWIND_NONE;
    p->rewind_at = -1;
    p->epoch_commit = 1;
    p->epoch_guard = 1;
    in->c.epochs++;
    settled_rebuild(in);
    in->persist_force = 1;
    intake_persist(in);
    log_info("intake",
             "%s[%d]: epoch %lld started at offset %lld; the events of the "
             "older epochs are still delivered",
             p->topic, (int)p->partition, (long long)epoch, (long long)x->from);
    if (p->assigned && in->stop == STOP_NONE) {
        part_restart(in, p, x->from);
        intake_commit(in);
    }
    free(x);
}

int intake_new_epoch(struct intake *in, const char *topic, int32_t partition,
                     int64_t *fromp, char *err, size_t errlen)
{
    int64_t from = *fromp;
    struct ipart *p = ipart_get(in, topic, partition, 0);
    struct epoch_ctx *x;
    int64_t lo = -1;
    int64_t hi = -1;
    int rc;

    if (p == NULL || !p->assigned) {
        snprintf(err, errlen,
                 "partition '%s'[%d] is not assigned to this "
                 "instance",
                 topic, (int)partition);
        return -ENOENT;
    }
    if (p->rewind == REWIND_EPOCH) {
        snprintf(err, errlen, "a new epoch of '%s'[%d] is being started", topic,
                 (int)partition);
        return -EBUSY;
    }
    if (p->rewind != REWIND_PAUSED) {
        snprintf(err, errlen, "partition '%s'[%d] did not go backwards", topic,
                 (int)partition);
        return -EINVAL;
    }
    rc = part_watermarks(in, p, &lo, &hi, err, errlen);
    if (rc < 0) {
        return rc;
    }
    if (from < 0) {
        from = lo;
    } else if (from < lo || from > hi) {
        snprintf(err, errlen,
                 "offset %lld is outside the log of '%s'[%d] "
                 "(start %lld, end %lld)",
                 (long long)from, topic, (int)partition, (long long)lo,
                 (long long)hi);
        return -ERANGE;
    }
    *fromp = from;
    x = malloc(sizeof(*x));
    if (x == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    x->in = in;
    x->p = p;
    x->from = from;
    /* INV-3: the old epoch's events we never settled cannot be committed
     * any more (that log is gone): dropped as on a revoke, queued before
     * the epoch (the journal runs requests in order). */
    if (in->appending && p->in_fly) {
        p->fly_stale = 1;
    }
    if (p->durable > p->acked || (in->appending && p->in_fly)) {
        intake_drop(in, p, p->acked);
    }
    rc = journal_new_epoch_async(in->j, p->topic, p->partition, p->route, from,
                                 on_epoch, x);
    if (rc < 0) {
        free(x);
        snprintf(err, errlen, "journal: %s", strerror(-rc));
        return rc;
    }
    p->rewind = REWIND_EPOCH;
    log_info("intake",
             "%s[%d]: starting epoch %lld at offset %lld (log start %lld, "
             "end %lld; old journal mark %lld)",
             p->topic, (int)p->partition, (long long)(p->epoch + 1),
             (long long)from, (long long)lo, (long long)hi,
             (long long)p->durable);
    return 0;
}
