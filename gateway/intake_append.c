/*
 * intake_append.c - the intake's append path: consumed messages copied into
 * the message buffers (acc accumulates, fly is the ONE journal append in
 * flight; Kafka headers packed as intake.h describes), the append and its
 * result, and backpressure (INV-7: the pause on -ENOSPC or high water, the
 * resume at low water, the size of one append). Loop thread.
 */
#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/intake_internal.h"
#include "gateway/log.h"
#include "gateway/phases.h"
#include "storage/journal.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Room for `more` bytes at data + used. 0 or -ENOMEM. */
static int msgbuf_reserve(struct msgbuf *b, size_t more)
{
    size_t cap = b->dcap ? b->dcap : 64 * 1024;
    unsigned char *nd;

    if (b->dcap - b->used >= more) {
        return 0;
    }
    while (cap - b->used < more) {
        /* by a quarter past 1 MiB: a doubled buffer is up to half unused,
         * and intake.prefetch_bytes counts the bytes, not the slack */
        cap += cap < 1024 * 1024 ? cap : cap / 4;
    }
    nd = realloc(b->data, cap);
    if (nd == NULL) {
        return -ENOMEM;
    }
    b->data = nd;
    b->dcap = cap;
    return 0;
}

/* Appends bytes; *off receives where they went. 0 or -ENOMEM. */
static int msgbuf_put(struct msgbuf *b, const void *src, size_t len,
                      size_t *off)
{
    if (msgbuf_reserve(b, len) < 0) {
        return -ENOMEM;
    }
    *off = b->used;
    if (len > 0) {
        memcpy(b->data + b->used, src, len);
    }
    b->used += len;
    return 0;
}

void msgbuf_clear(struct msgbuf *b)
{
    b->n = 0;
    b->used = 0;
    b->ph_us = 0;
}

void msgbuf_release(struct msgbuf *b)
{
    free(b->m);
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Forgets the messages of p in b, keeping the order of the others (their
 * bytes stay where they are until the buffer is cleared). */
void msgbuf_remove_part(struct msgbuf *b, const struct ipart *p)
{
    size_t out = 0;

    for (size_t i = 0; i < b->n; i++) {
        if (b->m[i].p != p) {
            b->m[out++] = b->m[i];
        }
    }
    b->n = out;
    if (out == 0) {
        b->used = 0;
    }
}

/* ------------------------------------------------------------ headers */

int intake_headers_next(const void *buf, size_t len, size_t *pos,
                        const char **name, size_t *name_len, const void **value,
                        size_t *value_len)
{
    const unsigned char *b = buf;
    size_t p = *pos;
    size_t nl;
    uint32_t vl;

    if (p >= len) {
        return 0;
    }
    if (len - p < 2) {
        return -EINVAL;
    }
    nl = (size_t)b[p] << 8 | b[p + 1];
    p += 2;
    if (len - p < nl + 4) {
        return -EINVAL;
    }
    *name = (const char *)(b + p);
    *name_len = nl;
    p += nl;
    vl = (uint32_t)b[p] << 24 | (uint32_t)b[p + 1] << 16 |
         (uint32_t)b[p + 2] << 8 | b[p + 3];
    p += 4;
    if (vl == UINT32_MAX) {
        *value = NULL;
        *value_len = 0;
    } else {
        if (len - p < vl) {
            return -EINVAL;
        }
        *value = b + p;
        *value_len = vl;
        p += vl;
    }
    *pos = p;
    return 1;
}

/* Appends m's headers to b's data (format: intake.h); *off and *len say
 * where. Headers whose name does not fit 16 bits are left out (Kafka allows
 * only 16-bit names on the wire anyway). 0 or -ENOMEM. */
static int headers_pack(struct msgbuf *b, rd_kafka_message_t *m, size_t *off,
                        size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const char *name;
    const void *val;
    size_t vlen;

    *off = b->used;
    *len = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return 0;
    }
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        size_t nl = strlen(name);
        size_t need;
        unsigned char *w;
        uint32_t vl = val ? (uint32_t)vlen : UINT32_MAX;

        if (nl > 0xffff || (val != NULL && vlen >= UINT32_MAX)) {
            continue;
        }
        need = 2 + nl + 4 + (val ? vlen : 0);
        if (msgbuf_reserve(b, need) < 0) {
            return -ENOMEM;
        }
        w = b->data + b->used;
        w[0] = (unsigned char)(nl >> 8);
        w[1] = (unsigned char)nl;
        memcpy(w + 2, name, nl);
        w += 2 + nl;
        w[0] = (unsigned char)(vl >> 24);
        w[1] = (unsigned char)(vl >> 16);
        w[2] = (unsigned char)(vl >> 8);
        w[3] = (unsigned char)vl;
        if (val != NULL && vlen > 0) {
            memcpy(w + 4, val, vlen);
        }
        b->used += need;
        *len += need;
    }
    return 0;
}

/* Copies message m into b. 0 or -ENOMEM (b unchanged). */
int msgbuf_push(struct msgbuf *b, struct ipart *p, rd_kafka_message_t *m)
{
    size_t used0 = b->used;
    struct imsg *im;

    if (b->n == b->cap) {
        size_t cap = b->cap == 0      ? 1024
                     : b->cap < 16384 ? b->cap * 2
                                      : b->cap + b->cap / 4;
        struct imsg *nm = realloc(b->m, cap * sizeof(*nm));

        if (nm == NULL) {
            return -ENOMEM;
        }
        b->m = nm;
        b->cap = cap;
    }
    im = &b->m[b->n];
    memset(im, 0, sizeof(*im));
    im->p = p;
    im->offset = m->offset;
    im->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    im->tombstone = m->payload == NULL;
    im->key_len = m->key ? m->key_len : SIZE_MAX;
    if ((m->key != NULL &&
         msgbuf_put(b, m->key, m->key_len, &im->key_off) < 0) ||
        msgbuf_put(b, m->payload, m->payload ? m->len : 0, &im->val_off) < 0 ||
        headers_pack(b, m, &im->hdr_off, &im->hdr_len) < 0) {
        b->used = used0;
        return -ENOMEM;
    }
    im->val_len = m->payload ? m->len : 0;
    b->n++;
    return 0;
}

/* ------------------------------------------------------------ pausing */

/* Makes librdkafka's pause state of the assignment match what we want. */
void intake_apply_pause(struct intake *in)
{
    int want = in->bp_paused || in->op_paused || in->stop != STOP_NONE;
    rd_kafka_topic_partition_list_t *a = NULL;
    rd_kafka_resp_err_t e;

    if (want == in->kpaused || in->closing_consumer) {
        return;
    }
    e = rd_kafka_assignment(in->rk, &a);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("intake", "cannot read the assignment: %s",
                 rd_kafka_err2str(e));
        return;
    }
    if (a->cnt > 0) {
        e = want ? rd_kafka_pause_partitions(in->rk, a)
                 : rd_kafka_resume_partitions(in->rk, a);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_warn("intake", "%s partitions: %s",
                     want ? "pausing" : "resuming", rd_kafka_err2str(e));
        }
    }
    rd_kafka_topic_partition_list_destroy(a);
    in->kpaused = want;
}

/*
 * INV-7 on a small disk: one append must fit in the journal's effective
 * cap with room to spare, twice over (the journal counts an append's bytes
 * once in its pages and once in the WAL), or a paused intake could hold a
 * request that never fits. So an append carries at most 1/8 of the
 * effective cap (journal.h "disk space"), between 256 KiB and
 * INTAKE_ACC_MAX_BYTES.
 */
void intake_acc_limit(struct intake *in)
{
    struct journal_space sp;
    int64_t lim = INTAKE_ACC_MAX_BYTES;

    journal_space(in->j, &sp);
    if (sp.effective_cap / 8 < lim) {
        lim = sp.effective_cap / 8;
    }
    /* intake.prefetch_bytes bounds the appends too: a quarter of it for
     * what accumulates, as much for the append in flight (INTAKE.md
     * "Memory"), and a message count to match (~200 bytes of bookkeeping
     * per message besides its bytes). */
    if (in->cfg->intake.prefetch_bytes > 0 &&
        in->cfg->intake.prefetch_bytes / 4 < lim) {
        lim = in->cfg->intake.prefetch_bytes / 4;
    }
    if (lim < 256 * 1024) {
        lim = 256 * 1024;
    }
    in->acc_max_bytes = lim;
    in->acc_max_msgs = INTAKE_ACC_MAX_MSGS;
    if (in->cfg->intake.prefetch_bytes > 0 && lim / 128 < in->acc_max_msgs) {
        in->acc_max_msgs = lim / 128;
    }
}

/* INV-7: pause at high water or -ENOSPC, resume at low water only. */
void intake_check_pressure(struct intake *in)
{
    int64_t pending = journal_pending_bytes(in->j);
    int64_t hw = in->cfg->intake.high_water_bytes;
    int64_t lw = in->cfg->intake.low_water_bytes;
    int full = in->append_failed;

    in->c.pending_bytes = pending;
    intake_acc_limit(in);
    if (!in->bp_paused && (full || (hw > 0 && pending >= hw))) {
        in->bp_paused = 1;
        in->c.pauses++;
        log_info("intake",
                 "pausing consumption: %s (journal pending %lld bytes, "
                 "high water %lld)",
                 full ? "journal append failed" : "journal over high water",
                 (long long)pending, (long long)hw);
    } else if (in->bp_paused && !full && pending <= lw) {
        in->bp_paused = 0;
        log_info("intake",
                 "resuming consumption (journal pending %lld bytes, low "
                 "water %lld)",
                 (long long)pending, (long long)lw);
    }
    in->c.paused = in->bp_paused || in->op_paused;
    in->c.bp_paused = in->bp_paused;
    intake_apply_pause(in);
}

void intake_set_paused(struct intake *in, int paused)
{
    in->op_paused = paused ? 1 : 0;
    log_info("intake", "operator %s", paused ? "pause" : "resume");
    intake_check_pressure(in);
}

/* ------------------------------------------------------------ appends */

static void on_appended(void *arg, int status,
                        const struct journal_append_result *res,
                        const char *err)
{
    struct intake *in = arg;

    in->appending = 0;
    if (status < 0) {
        in->c.append_errors++;
        in->append_failed = 1;
        in->retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        intake_set_error(in, "journal append of %zu messages: %s", in->fly.n,
                         err);
        /* Retried every INTAKE_RETRY_MS: log the first failure only. */
        if (in->append_retries++ > 0) {
            log_debug("intake", "%s (attempt %d)", in->c.last_error,
                      in->append_retries);
        } else if (status == -ENOSPC) {
            log_warn("intake", "%s: retrying until there is room",
                     in->c.last_error);
        } else {
            log_error("intake", "%s: retrying", in->c.last_error);
        }
        if (status == -ECANCELED) {
            /* the journal is closed: nothing will be durable any more */
            msgbuf_clear(&in->fly);
            in->append_failed = 0;
        }
        intake_check_pressure(in);
        intake_stop_advance(in);
        return;
    }
    in->append_failed = 0;
    phase_end(PHASE_APPEND, &in->fly.ph_us);
    if (in->append_retries > 0) {
        log_info("intake",
                 "journal append went through after %d failed "
                 "attempts",
                 in->append_retries);
        in->append_retries = 0;
    }
    for (size_t i = 0; i < in->fly.n; i++) {
        struct ipart *p = in->fly.m[i].p;

        if (!p->fly_stale) {
            p->durable = max64(p->durable, in->fly.m[i].offset);
        }
    }
    for (size_t i = 0; res != NULL && i < res->nparts; i++) {
        struct ipart *p =
            ipart_get(in, res->parts[i].topic, res->parts[i].partition, 0);

        if (p != NULL && !p->fly_stale) {
            p->durable = max64(p->durable, res->parts[i].high_offset);
        }
    }
    for (size_t i = 0; i < in->nparts; i++) {
        in->parts[i]->in_fly = 0;
        in->parts[i]->fly_stale = 0;
    }
    if (res != NULL) {
        in->c.journaled += (uint64_t)res->appended;
        in->c.duplicates += (uint64_t)res->duplicates;
    }
    msgbuf_clear(&in->fly);
    intake_commit(in);
    intake_check_pressure(in);
    if (in->stop != STOP_NONE) {
        intake_stop_advance(in);
        return;
    }
    intake_submit(in);
    if (in->drain_blocked) {
        in->drain_blocked = 0;
        intake_drain(in);
    }
}

/* Hands fly (or, when fly is empty, acc) to the journal. */
void intake_submit(struct intake *in)
{
    size_t nev = 0;
    int rc;

    if (in->appending) {
        return;
    }
    if (in->fly.n == 0) {
        struct msgbuf t;

        if (in->acc.n == 0) {
            return;
        }
        t = in->fly;
        in->fly = in->acc;
        in->acc = t;
        phase_end(PHASE_QUEUE, &in->fly.ph_us);
    } else if (in->append_failed && in->retry_at > uv_now(in->loop)) {
        return; /* the tick retries it */
    }
    if (in->evcap < in->fly.n) {
        struct journal_event *ne = realloc(in->ev, in->fly.n * sizeof(*in->ev));

        if (ne == NULL) {
            goto fail_nomem;
        }
        in->ev = ne;
        in->evcap = in->fly.n;
    }
    for (size_t i = 0; i < in->fly.n; i++) {
        const struct imsg *m = &in->fly.m[i];
        const unsigned char *d = in->fly.data;
        struct journal_event *e;

        m->p->in_fly = 1;
        if (m->tombstone && in->cfg->intake.skip_tombstones) {
            continue;
        }
        e = &in->ev[nev++];
        e->route = m->p->route;
        e->topic = m->p->topic;
        e->partition = m->p->partition;
        e->offset = m->offset;
        e->timestamp_ms = m->timestamp_ms;
        e->key = m->key_len == SIZE_MAX ? NULL : d + m->key_off;
        e->key_len = m->key_len == SIZE_MAX ? 0 : m->key_len;
        e->value = d + m->val_off;
        e->value_len = m->val_len;
        e->headers = m->hdr_len ? d + m->hdr_off : NULL;
        e->headers_len = m->hdr_len;
    }
    /* fly and in->ev stay untouched until on_appended */
    rc = journal_append_async_borrowed(in->j, in->ev, nev, on_appended, in);
    if (rc < 0) {
        in->c.append_errors++;
        in->append_failed = 1;
        in->retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        intake_set_error(in, "journal append: %s", strerror(-rc));
        log_error("intake", "%s", in->c.last_error);
        intake_check_pressure(in);
        return;
    }
    in->appending = 1;
    in->fly.ph_us = phase_now_us();
    return;

fail_nomem:
    in->append_failed = 1;
    in->retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
    intake_set_error(in, "journal append: out of memory");
    log_error("intake", "%s", in->c.last_error);
}
