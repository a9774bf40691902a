/*
 * intake_table.c - the intake's partition table (one struct ipart per
 * (topic, partition) this process has seen, found or added by ipart_get),
 * the last error, and what /status reads: intake_partitions() and
 * intake_get_counters(). Loop thread.
 */
#include "base/clock.h"

#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/intake_internal.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

/* Records a problem for /status (the caller logs it). */
void intake_set_error(struct intake *in, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(in->c.last_error, sizeof(in->c.last_error), fmt, ap);
    va_end(ap);
    in->c.last_error_ms = wall_ms();
}

/* Finds (topic, partition); creates it when create is set. NULL on ENOMEM
 * or when absent. */
struct ipart *ipart_get(struct intake *in, const char *topic, int32_t partition,
                        int create)
{
    struct ipart *p;

    if (in->last != NULL && in->last->partition == partition &&
        strcmp(in->last->topic, topic) == 0) {
        return in->last;
    }
    for (size_t i = 0; i < in->nparts; i++) {
        p = in->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            in->last = p;
            return p;
        }
    }
    if (!create) {
        return NULL;
    }
    if (in->nparts == in->capparts) {
        size_t cap = in->capparts ? in->capparts * 2 : 16;
        struct ipart **np = realloc(in->parts, cap * sizeof(*np));

        if (np == NULL) {
            return NULL;
        }
        in->parts = np;
        in->capparts = cap;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->topic = strdup(topic);
    if (p->topic == NULL) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    {
        const struct config_route *r = config_route_for_topic(in->cfg, topic);

        p->route = r ? (int)(r - in->cfg->routes) : -1;
        if (r == NULL) {
            log_warn("intake", "topic '%s' matches no route", topic);
        }
    }
    p->skip_below = -1;
    p->consumed = -1;
    p->durable = -1;
    p->group = -1;
    p->acked = -1;
    p->commit_sent = -1;
    p->settled = -1;
    p->end_offset = -1;
    p->file_epoch = -1;
    p->rewind_at = -1;
    p->log_start = -1;
    p->log_end = -1;
    p->gap_first = -1;
    p->gap_last = -1;
    in->parts[in->nparts++] = p;
    in->last = p;
    return p;
}

/* ------------------------------------------------------------ status */

const struct intake_partition *intake_partitions(struct intake *in, size_t *n)
{
    *n = 0;
    if (in->poutcap < in->nparts) {
        struct intake_partition *np =
            realloc(in->pout, in->nparts * sizeof(*np));

        if (np == NULL) {
            return NULL;
        }
        in->pout = np;
        in->poutcap = in->nparts;
    }
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];
        struct intake_partition *o = &in->pout[i];
        int64_t lo = -1;
        int64_t hi = -1;
        int64_t pos;

        if (p->assigned && in->rk != NULL &&
            rd_kafka_get_watermark_offsets(in->rk, p->topic, p->partition, &lo,
                                           &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            p->end_offset = hi;
        }
        memset(o, 0, sizeof(*o));
        o->topic = p->topic;
        o->partition = p->partition;
        o->route = p->route;
        o->assigned = p->assigned;
        o->consumed = p->consumed;
        o->journaled = p->durable;
        o->committed = p->acked;
        o->settled = p->settled;
        o->end_offset = p->end_offset;
        pos = max64(p->consumed, p->acked);
        o->lag = p->end_offset >= 0 ? max64(p->end_offset - pos - 1, 0) : -1;
        o->n_consumed = p->n_consumed;
        o->n_tombstones = p->n_tombstones;
        o->epoch = p->epoch;
        o->rewound = p->rewind != REWIND_NONE;
        o->rewind_offset = p->rewind_at;
        o->log_start = p->log_start;
        o->log_end = p->log_end;
        o->gaps = p->n_gaps;
        o->gap_events = p->n_gap_events;
        o->gap_first = p->gap_first;
        o->gap_last = p->gap_last;
    }
    *n = in->nparts;
    return in->pout;
}

void intake_get_counters(const struct intake *in, struct intake_counters *out)
{
    *out = in->c;
    out->pending_bytes = journal_pending_bytes(in->j);
    out->rewound = 0;
    for (size_t i = 0; i < in->nparts; i++) {
        if (in->parts[i]->assigned && in->parts[i]->rewind != REWIND_NONE) {
            out->rewound++;
        }
    }
}
