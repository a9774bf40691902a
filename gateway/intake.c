/*
 * intake.c - Kafka -> journal, on the libuv loop (DESIGN.md INV-1, 2, 3, 7).
 *
 * Wiring. The consumer's queue (the main queue, logs and rebalances are
 * forwarded into it: rd_kafka_poll_set_consumer, log.queue=true) signals a
 * pipe through rd_kafka_queue_io_event_enable(); a uv_poll_t watches the
 * pipe. librdkafka writes one byte when the queue goes from "served" to
 * non-empty, so every wake-up drains the queue with non-blocking
 * rd_kafka_consume_batch_queue(timeout 0) calls until a call returns less
 * than a full batch; after INTAKE_WAKE_BUDGET full batches it yields to the
 * loop and continues from a uv_idle_t. Rebalance, commit, error and log
 * callbacks run inside those calls, on the loop thread.
 *
 * The pipeline, per message:
 *   consumed -> acc (accumulating, up to INTAKE_ACC_MAX_*) -> fly (the ONE
 *   journal append in flight) -> durable (append callback) -> commit sent ->
 *   commit acknowledged ("acked") -> saved in "<journal>.settled" (fsync'd)
 *   -> settled (exposed to the forwarder).
 * One append in flight keeps the journal free of gaps: if an append fails
 * (-ENOSPC: byte cap or disk full) nothing after it has been journaled, so
 * the same messages (kept, not re-fetched) are appended again later and no
 * offset is skipped. While one append runs, the next one accumulates, so
 * each transaction carries everything consumed during the previous fsync
 * (group commit on our side too).
 *
 * INV-1: the commit for a partition is durable+1 where durable is the
 * highest offset the journal reported durable (skipped tombstones count as
 * durable once everything before them is).
 *
 * INV-2: on assignment the consumer starts at max(group committed, journal
 * high + 1); the committed offsets are read with rd_kafka_committed(), the
 * one blocking call on assignment (see "Blocking calls" below). Messages
 * below that start are skipped here and the journal ignores any
 * redelivery anyway.
 *
 * INV-3 and the settled watermark. An event in our journal may be sent only
 * if it is settled: this instance's commit covering it was acknowledged.
 * The acknowledged watermark is saved to "<journal>.settled" (write, fsync,
 * rename) before it is exposed, so that after a crash we know which of our
 * journaled events were ours to deliver: events above it were never
 * committed by us, and if the group's committed offset has moved past them
 * meanwhile, another member journaled and settled them, so ours are dropped
 * (journal_drop_partition) before consuming resumes. Every commit carries
 * metadata "kadx1 <our journal uuid> [<earlier committer>@<offset> ...]"
 * (each earlier committer once, with the offset it had committed when it
 * handed over; newest first, at most INTAKE_CHAIN_MAX), which
 * closes the crash window between a commit's acknowledgement and the save:
 * if the last committer of a partition is us, the committed offset is
 * ours; if an earlier one in the chain is us, the offset we handed over at
 * is. On a revoke, what is durable is committed
 * synchronously and whatever is still in flight is dropped after the
 * append (the journal runs requests in order); on a lost partition nothing
 * can be committed, so everything unsettled is dropped.
 *
 * Blocking calls on the loop thread (all rare, all bounded):
 *  - rd_kafka_committed() on assignment: consuming cannot start before the
 *    committed offsets are known (INV-2), librdkafka's own fetch start waits
 *    for the same OffsetFetch, and the whole group is stopped in the
 *    rebalance anyway; timeout INTAKE_COMMITTED_TIMEOUT_MS.
 *  - rd_kafka_commit() (sync) on revoke: the partitions must not be handed
 *    to the next owner before the durable offsets are committed, else it
 *    would consume them again and both instances would hold them; the
 *    rebalance waits for this member anyway. librdkafka bounds it by the
 *    request timeout.
 *  - journal_high_offset() on assignment (a read on the WAL read
 *    connection, no fsync).
 *
 * Offset resets (gateway/INTAKE.md "Offsets that go backwards"). librdkafka
 * runs with auto.offset.reset=error, so it never moves a partition's fetch
 * position on its own: a position the broker refuses (out of range) comes
 * back as an __AUTO_OFFSET_RESET error message, and on every one (the first
 * fetch after each assignment included) kadx reads the broker's log start
 * and end (rd_kafka_query_watermark_offsets, blocking, rare) and decides:
 *  - position below the log start: a retention GAP; the skipped range is
 *    counted, logged and shown; consuming goes on from the log start
 *    (earliest) or end (latest), as the user's auto.offset.reset says;
 *  - position above the log end: the partition went BACKWARDS (recreated,
 *    rebuilt, truncated); every new event would be at or below the
 *    journal's mark and dropped as a duplicate (INV-2), so the partition is
 *    paused and reported until the operator (or intake.on_rewind) starts a
 *    new journal epoch (journal_new_epoch): its own duplicate filter, its
 *    own settled watermark (the settled file carries the epoch), the old
 *    epoch's settled events still delivered, its unsettled ones dropped as
 *    on a revoke (INV-3).
 *
 * Backpressure (INV-7): when an append gets -ENOSPC, or the journal's
 * pending bytes reach intake.high_water_bytes, every assigned partition is
 * paused (rd_kafka_pause_partitions: the consumer keeps polling, so the
 * member stays in the group) and resumed only when the pending bytes fall
 * to intake.low_water_bytes: each resume costs the mock cluster ~1 s, so
 * never pause and resume per batch.
 */
#include "gateway/intake.h"
#include "base/clock.h"
#include "base/container_of.h"

#include "gateway/config.h"
#include "gateway/log.h"
#include "gateway/phases.h"
#include "gateway/prefetch.h"
#include "storage/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INTAKE_BATCH                1000 /* messages per consume call */
#define INTAKE_WAKE_BUDGET          64   /* full batches before yielding */
#define INTAKE_ACC_MAX_MSGS         100000
#define INTAKE_ACC_MAX_BYTES        (16 * 1024 * 1024)
#define INTAKE_COMMITTED_TIMEOUT_MS 10000
#define INTAKE_TICK_MS              100
#define INTAKE_RETRY_MS             500
#define INTAKE_STOP_DEADLINE_MS     15000
#define INTAKE_SETTLED_MAX          (16 * 1024 * 1024)
#define INTAKE_CHAIN_MAX            16 /* earlier committers remembered */
#define INTAKE_META_MAX             (INTAKE_CHAIN_MAX * 96 + 128)
#define INTAKE_UUID_MAX             64
#define INTAKE_WATERMARK_TIMEOUT_MS 5000
#define INTAKE_RESET_RETRY_MS       5000

/* A partition's offset continuity (see "Offset resets" above). */
enum rewind_state {
    REWIND_NONE = 0, /* consuming normally */
    REWIND_PAUSED,   /* went backwards: paused until the operator chooses */
    REWIND_EPOCH,    /* a new epoch is being written to the journal */
};

/* One (topic, partition) this process has seen. Loop thread. */
struct ipart {
    char *topic;
    int32_t partition;
    int route;
    int assigned;
    int in_fly;          /* has messages in the append in flight */
    int fly_stale;       /* revoked while in flight: its result is void */
    int drops_pending;   /* journal drops queued, not answered yet */
    int drop_deferred;   /* revoked/lost with our commit in flight: drop
                            what is unsettled once its result is known */
    int64_t drop_after;  /* lowest `after` of the pending drops */
    int64_t skip_below;  /* INV-2: messages below this are not taken */
    int64_t consumed;    /* highest offset consumed, -1 */
    int64_t durable;     /* highest offset durable in the journal, -1 */
    int64_t group;       /* group committed offset at assignment, -1 */
    int64_t acked;       /* highest offset our commit covers (acked), -1 */
    int64_t commit_sent; /* highest offset in a commit sent, -1 */
    int64_t settled;     /* saved to the settled file: exposed, -1 */
    int64_t end_offset;
    int64_t epoch;      /* the journal's offset epoch of this partition */
    int64_t file_epoch; /* epoch of its settled file line, -1 = none */
    enum rewind_state rewind;
    int epoch_commit;  /* commit the new epoch's start even if nothing is
                          journaled in it yet (overwrites a stale offset) */
    int epoch_guard;   /* a late ack of an old epoch's commit is ignored */
    int64_t rewind_at; /* the offset the broker refused (backwards), -1 */
    int64_t log_start; /* broker watermarks at the last check, -1 */
    int64_t log_end;
    int reset_pending; /* a refused offset to check again (broker down) */
    int64_t reset_off;
    uint64_t reset_at; /* uv_now of that check */
    uint64_t n_gaps;   /* retention gaps (offsets deleted unread) */
    uint64_t n_gap_events;
    int64_t gap_first; /* the last gap's range, -1 */
    int64_t gap_last;
    /* the earlier committers, newest first: "<uuid>@<offset> ..." (the
     * offset each had committed when the next one took over), "" */
    char prev[INTAKE_META_MAX];
    uint64_t n_consumed;
    uint64_t n_tombstones;
};

/* A consumed message, copied out of librdkafka (so that its fetch buffer
 * is released at once): offsets into the owning msgbuf's data. */
struct imsg {
    struct ipart *p;
    int64_t offset;
    int64_t timestamp_ms;
    size_t key_off;
    size_t key_len; /* SIZE_MAX = null key */
    size_t val_off;
    size_t val_len;
    size_t hdr_off;
    size_t hdr_len;
    int tombstone; /* null value */
};

/* Messages and their bytes; loop thread. */
struct msgbuf {
    struct imsg *m;
    size_t n;
    size_t cap;
    unsigned char *data;
    size_t used; /* bytes of data in use */
    size_t dcap;
    int64_t ph_us; /* phases.h: first held (acc), handed over (fly) */
};

enum stop_phase {
    STOP_NONE = 0,
    STOP_FLUSH,   /* journal what was consumed */
    STOP_COMMIT,  /* commit what is durable */
    STOP_CLOSE,   /* consumer close (leave the group) */
    STOP_PERSIST, /* save the settled watermarks */
    STOP_HANDLES, /* close the uv handles */
    STOP_DONE,
};

static const char *const stop_phase_names[] = {
    "running", "flush", "commit", "close", "persist", "handles", "done",
};

struct intake {
    uv_loop_t *loop;
    const struct config *cfg;
    struct prefetch_plan prefetch; /* intake.prefetch_bytes (prefetch.h) */
    int prefetch_full; /* drained nothing for a while: prefetch_kick */
    uint64_t prefetch_kicks;
    struct journal *j;
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkqu;
    int pipefd[2];
    uv_poll_t poll;
    uv_idle_t idle;
    uv_timer_t tick;
    /* Kafka error codes lately logged, to log a failure that repeats on
     * every reconnect (a wrong password) once, not every backoff. */
    struct kerr_seen {
        int err;
        uint64_t logged_ms;
        uint64_t repeats;
    } kerr[8];
    uint64_t fix_me_ms; /* wall ms of the last error a user must fix */
    int handles;        /* uv handles initialised and not yet closed */

    struct ipart **parts;
    size_t nparts;
    size_t capparts;
    struct ipart *last; /* lookup cache */
    char uuid[INTAKE_UUID_MAX];

    struct msgbuf acc;
    struct msgbuf fly;
    struct journal_event *ev;
    size_t evcap;
    int appending;         /* fly is with the journal */
    int append_failed;     /* fly came back with an error: retry it */
    int64_t acc_max_msgs;  /* INTAKE_ACC_MAX_MSGS, or less (prefetch) */
    int64_t acc_max_bytes; /* INTAKE_ACC_MAX_BYTES, or less on a small
                              disk (intake_acc_limit) */
    int append_retries;    /* failed attempts of the current fly */
    uint64_t retry_at;     /* uv_now of the next append retry */
    int drain_blocked;     /* acc full: drain again after the append */
    int first_assigned;    /* the first assignment of this process is done */

    int bp_paused; /* backpressure (journal full or over high water) */
    int op_paused; /* operator */
    int kpaused;   /* assigned partitions are paused in librdkafka */

    int commit_inflight;
    int64_t commit_ph_us; /* phases.h */
    int commit_wanted;
    uint64_t commit_retry_at;

    char *settled_path;
    int persist_inflight;
    int64_t persist_ph_us; /* phases.h */
    int persist_wanted;
    int persist_force; /* save even if no watermark rose (new epoch) */
    uint64_t persist_retry_at;
    uv_work_t persist_work;
    char *persist_buf;
    size_t persist_len;
    struct ipart **persist_p;
    int64_t *persist_v;
    size_t persist_n;
    int persist_rc;
    char persist_err[256];

    struct journal_offset *settled_arr;
    size_t settled_n;
    intake_settled_cb settled_cb;
    void *settled_arg;

    enum stop_phase stop;
    uint64_t stop_deadline;
    int closing_consumer;
    intake_stopped_cb stop_cb;
    void *stop_arg;

    struct intake_counters c;
    struct intake_partition *pout;
    size_t poutcap;
    int free_on_close; /* start failed: free when the handles are closed */
};

static void intake_drain(struct intake *in);
static void intake_submit(struct intake *in);
static void intake_commit(struct intake *in);
static void intake_persist(struct intake *in);
static void intake_stop_advance(struct intake *in);
static void intake_offset_reset(struct intake *in, struct ipart *p,
                                int64_t off);

/* ------------------------------------------------------------ helpers */

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Records a problem for /status (the caller logs it). */
static void intake_set_error(struct intake *in, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void intake_set_error(struct intake *in, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(in->c.last_error, sizeof(in->c.last_error), fmt, ap);
    va_end(ap);
    in->c.last_error_ms = wall_ms();
}

/* Finds (topic, partition); creates it when create is set. NULL on ENOMEM
 * or when absent. */
static struct ipart *part_get(struct intake *in, const char *topic,
                              int32_t partition, int create)
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

static void msgbuf_clear(struct msgbuf *b)
{
    b->n = 0;
    b->used = 0;
    b->ph_us = 0;
}

static void msgbuf_release(struct msgbuf *b)
{
    free(b->m);
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Forgets the messages of p in b, keeping the order of the others (their
 * bytes stay where they are until the buffer is cleared). */
static void msgbuf_remove_part(struct msgbuf *b, const struct ipart *p)
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
static int msgbuf_push(struct msgbuf *b, struct ipart *p, rd_kafka_message_t *m)
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
static void intake_apply_pause(struct intake *in)
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
static void intake_acc_limit(struct intake *in)
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
static void intake_check_pressure(struct intake *in)
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

/* ------------------------------------------------------------ settled */

/* Rebuilds settled_arr from the table. */
static void settled_rebuild(struct intake *in)
{
    size_t n = 0;
    struct journal_offset *arr;

    arr =
        realloc(in->settled_arr, (in->nparts ? in->nparts : 1) * sizeof(*arr));
    if (arr == NULL) {
        return; /* keep the old (smaller but valid) array */
    }
    in->settled_arr = arr;
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->settled >= 0) {
            arr[n].topic = p->topic;
            arr[n].partition = p->partition;
            arr[n].offset = p->settled;
            n++;
        }
    }
    in->settled_n = n;
}

int intake_settled(const struct intake *in, const char *topic,
                   int32_t partition, int64_t *offset)
{
    for (size_t i = 0; i < in->nparts; i++) {
        const struct ipart *p = in->parts[i];

        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            if (p->settled < 0) {
                return -ENOENT;
            }
            *offset = p->settled;
            return 0;
        }
    }
    return -ENOENT;
}

const struct journal_offset *intake_settled_all(const struct intake *in,
                                                size_t *n)
{
    *n = in->settled_n;
    return in->settled_arr;
}

void intake_on_settled(struct intake *in, intake_settled_cb cb, void *arg)
{
    in->settled_cb = cb;
    in->settled_arg = arg;
}

/* Worker thread: writes the snapshot to PATH.tmp, fsyncs, renames over
 * PATH and fsyncs the directory. Touches only persist_* fields. */
static void persist_work_cb(uv_work_t *w)
{
    struct intake *in = container_of(w, struct intake, persist_work);
    size_t plen = strlen(in->settled_path);
    char *tmp = malloc(plen + 5);
    char *dir = NULL;
    size_t off = 0;
    int fd = -1;
    int rc = 0;

    if (tmp == NULL) {
        in->persist_rc = -ENOMEM;
        return;
    }
    memcpy(tmp, in->settled_path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    /* 0600 whatever the umask; a leftover .tmp of another mode is reset */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0) {
        rc = -errno;
        snprintf(in->persist_err, sizeof(in->persist_err), "open '%s': %s", tmp,
                 strerror(errno));
        goto out;
    }
    while (off < in->persist_len) {
        ssize_t wr = write(fd, in->persist_buf + off, in->persist_len - off);

        if (wr < 0 && errno == EINTR) {
            continue;
        }
        if (wr < 0) {
            rc = -errno;
            snprintf(in->persist_err, sizeof(in->persist_err), "write '%s': %s",
                     tmp, strerror(errno));
            goto out;
        }
        off += (size_t)wr;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        snprintf(in->persist_err, sizeof(in->persist_err), "fsync '%s': %s",
                 tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, in->settled_path) < 0) {
        rc = -errno;
        snprintf(in->persist_err, sizeof(in->persist_err), "rename to '%s': %s",
                 in->settled_path, strerror(errno));
        goto out;
    }
    dir = strdup(in->settled_path);
    if (dir != NULL) {
        char *slash = strrchr(dir, '/');
        int dfd;

        if (slash == NULL) {
            dir[0] = '.';
            dir[1] = '\0';
        } else if (slash == dir) {
            slash[1] = '\0';
        } else {
            *slash = '\0';
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    free(dir);
    free(tmp);
    in->persist_rc = rc;
}

static void persist_after_cb(uv_work_t *w, int status)
{
    struct intake *in = container_of(w, struct intake, persist_work);
    int moved = 0;

    in->persist_inflight = 0;
    phase_end(PHASE_SETTLE, &in->persist_ph_us);
    if (status == 0 && in->persist_rc == 0) {
        for (size_t i = 0; i < in->persist_n; i++) {
            struct ipart *p = in->persist_p[i];

            if (in->persist_v[i] > p->settled) {
                p->settled = in->persist_v[i];
                moved = 1;
            }
        }
    } else {
        in->persist_force = 1;
        log_error("intake", "saving settled offsets: %s",
                  status ? uv_strerror(status) : in->persist_err);
        intake_set_error(in, "saving settled offsets: %s",
                         status ? uv_strerror(status) : in->persist_err);
        in->persist_wanted = 1;
        in->persist_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
    }
    free(in->persist_buf);
    in->persist_buf = NULL;
    if (moved) {
        settled_rebuild(in);
        if (in->settled_cb != NULL) {
            in->settled_cb(in->settled_arg);
        }
    }
    if (in->persist_wanted && in->persist_retry_at <= uv_now(in->loop)) {
        intake_persist(in);
    }
    intake_stop_advance(in);
}

/* Saves every acked watermark (async); coalesces while one save runs. */
static void intake_persist(struct intake *in)
{
    size_t cap = 0;
    size_t n = 0;
    size_t len = 0;
    int changed = 0;

    if (in->persist_inflight) {
        in->persist_wanted = 1;
        return;
    }
    in->persist_wanted = 0;
    changed = in->persist_force;
    in->persist_force = 0;
    for (size_t i = 0; i < in->nparts; i++) {
        if (in->parts[i]->acked > in->parts[i]->settled) {
            changed = 1;
        }
        cap += strlen(in->parts[i]->topic) + 72;
    }
    if (!changed) {
        return;
    }
    free(in->persist_p);
    free(in->persist_v);
    in->persist_p = malloc(in->nparts * sizeof(*in->persist_p));
    in->persist_v = malloc(in->nparts * sizeof(*in->persist_v));
    in->persist_buf = malloc(cap + 1);
    if (in->persist_p == NULL || in->persist_v == NULL ||
        in->persist_buf == NULL) {
        free(in->persist_buf);
        in->persist_buf = NULL;
        in->persist_force = changed;
        in->persist_wanted = 1;
        in->persist_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        return;
    }
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];
        int64_t v = max64(p->acked, p->settled);

        if (v < 0) {
            continue;
        }
        /* the epoch column only when there is one: an older kadx reads
         * a journal without epochs */
        if (p->epoch > 0) {
            len += (size_t)snprintf(
                in->persist_buf + len, cap + 1 - len, "%s\t%d\t%lld\t%lld\n",
                p->topic, (int)p->partition, (long long)v, (long long)p->epoch);
        } else {
            len += (size_t)snprintf(in->persist_buf + len, cap + 1 - len,
                                    "%s\t%d\t%lld\n", p->topic,
                                    (int)p->partition, (long long)v);
        }
        in->persist_p[n] = p;
        in->persist_v[n] = v;
        n++;
    }
    in->persist_len = len;
    in->persist_n = n;
    in->persist_rc = 0;
    if (uv_queue_work(in->loop, &in->persist_work, persist_work_cb,
                      persist_after_cb) < 0) {
        free(in->persist_buf);
        in->persist_buf = NULL;
        in->persist_force = 1;
        in->persist_wanted = 1;
        in->persist_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        return;
    }
    in->persist_inflight = 1;
    in->persist_ph_us = phase_now_us();
}

/* Reads "<journal>.settled" (a missing file is an empty table). */
static int settled_load(struct intake *in, char *err, size_t errlen)
{
    FILE *f = fopen(in->settled_path, "re");
    char line[512];
    long lineno = 0;
    int rc = 0;

    if (f == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(err, errlen, "open '%s': %s", in->settled_path,
                 strerror(errno));
        return -errno;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *tab1 = strchr(line, '\t');
        char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        char *end = NULL;
        long part;
        long long off;
        long long epoch;
        struct ipart *p;

        lineno++;
        if (tab1 == NULL || tab2 == NULL || lineno > 1000000) {
            snprintf(err, errlen, "'%s' line %ld: malformed", in->settled_path,
                     lineno);
            rc = -EINVAL;
            break;
        }
        *tab1 = '\0';
        errno = 0;
        part = strtol(tab1 + 1, &end, 10);
        if (errno != 0 || end != tab2 || part < 0 || part > INT32_MAX) {
            snprintf(err, errlen, "'%s' line %ld: bad partition",
                     in->settled_path, lineno);
            rc = -EINVAL;
            break;
        }
        off = strtoll(tab2 + 1, &end, 10);
        epoch = 0;
        if (errno == 0 && *end == '\t') {
            epoch = strtoll(end + 1, &end, 10);
            if (epoch < 0) {
                errno = EINVAL;
            }
        }
        if (errno != 0 || (*end != '\n' && *end != '\0') || off < -1) {
            snprintf(err, errlen, "'%s' line %ld: bad offset", in->settled_path,
                     lineno);
            rc = -EINVAL;
            break;
        }
        p = part_get(in, line, (int32_t)part, 1);
        if (p == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            break;
        }
        p->acked = p->settled = p->commit_sent = off;
        p->file_epoch = epoch;
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------ commits */

/* This journal as a committer of p: its uuid, with "/<epoch>" after the
 * first epoch, so that a commit of an older life of the partition is never
 * taken as ours (its offsets mean other events). buf: INTAKE_UUID_MAX. */
static const char *part_ident(const struct intake *in, const struct ipart *p,
                              char *buf)
{
    if (p->epoch == 0) {
        return in->uuid;
    }
    /* a uuid is 36 characters */
    snprintf(buf, INTAKE_UUID_MAX, "%.40s/%lld", in->uuid, (long long)p->epoch);
    return buf;
}

/* Commit metadata: "kadx1 <ident>[ <ident>@<offset>]..." (the chain of
 * earlier committers, newest first, at most INTAKE_CHAIN_MAX). */
static char *commit_meta(struct intake *in, const struct ipart *p)
{
    char buf[INTAKE_META_MAX + INTAKE_UUID_MAX + 8];
    char id[INTAKE_UUID_MAX];

    if (p->prev[0] != '\0') {
        snprintf(buf, sizeof(buf), "kadx1 %s %s", part_ident(in, p, id),
                 p->prev);
    } else {
        snprintf(buf, sizeof(buf), "kadx1 %s", part_ident(in, p, id));
    }
    return strdup(buf);
}

/* Copies at most cap-1 bytes of src into dst, NUL-terminated. */
static void copy_capped(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/*
 * Parses commit metadata: owner gets the committer's uuid, chain (cap
 * INTAKE_META_MAX) the earlier committers; both "" when absent or foreign.
 */
static void meta_parse(const void *meta, size_t len, char *owner, char *chain)
{
    char buf[INTAKE_META_MAX + INTAKE_UUID_MAX + 8];
    char *sp;

    owner[0] = '\0';
    chain[0] = '\0';
    if (meta == NULL || len < 7 || len >= sizeof(buf)) {
        return;
    }
    memcpy(buf, meta, len);
    buf[len] = '\0';
    if (strncmp(buf, "kadx1 ", 6) != 0) {
        return;
    }
    sp = strchr(buf + 6, ' ');
    if (sp != NULL) {
        *sp = '\0';
    }
    copy_capped(owner, INTAKE_UUID_MAX, buf + 6);
    if (sp != NULL) {
        copy_capped(chain, INTAKE_META_MAX, sp + 1);
    }
}

/* The highest offset uuid had committed according to chain, or -1. */
static int64_t chain_find(const char *chain, const char *uuid)
{
    size_t ulen = strlen(uuid);
    int64_t best = -1;
    const char *t = chain;

    while (*t != '\0') {
        size_t tlen = strcspn(t, " ");

        if (tlen > ulen && strncmp(t, uuid, ulen) == 0 && t[ulen] == '@') {
            char *end;
            long long off = strtoll(t + ulen + 1, &end, 10);

            if (end == t + tlen && off > best) {
                best = off;
            }
        }
        t += tlen;
        t += strspn(t, " ");
    }
    return best;
}

/* 1 if the chain token t (tlen bytes, "<uuid>@<offset>") names a
 * committer already in the chain p->prev, or none ("-"). */
static int chain_has(const char *chain, const char *t, size_t tlen)
{
    size_t ulen = strcspn(t, "@");

    if (ulen >= tlen || (ulen == 1 && t[0] == '-')) {
        return 1;
    }
    for (const char *c = chain; *c != '\0';) {
        size_t clen = strcspn(c, " ");

        if (clen > ulen && c[ulen] == '@' && memcmp(c, t, ulen) == 0) {
            return 1;
        }
        c += clen;
        c += strspn(c, " ");
    }
    return 0;
}

/*
 * Sets p->prev for our commits after taking p over at committed offset
 * `offset` from `owner` ("" = unknown): that hand-over first, then the
 * owner's own chain, newest first, one entry per committer (its latest
 * hand-over; a stable group's chain stays as short as the group) and at
 * most INTAKE_CHAIN_MAX entries, so the metadata of every commit stays
 * well under Kafka's offset.metadata.max.bytes (4096).
 */
static void chain_extend(struct ipart *p, const char *owner, const char *chain,
                         int64_t offset)
{
    size_t len = 0;
    int n = 0;
    const char *t = chain;

    p->prev[0] = '\0';
    if (owner[0] != '\0') {
        len = (size_t)snprintf(p->prev, sizeof(p->prev), "%s@%lld", owner,
                               (long long)offset);
        n = 1;
    }
    while (n < INTAKE_CHAIN_MAX && *t != '\0') {
        size_t tlen = strcspn(t, " ");

        if (len + 1 + tlen >= sizeof(p->prev)) {
            break;
        }
        if (!chain_has(p->prev, t, tlen)) {
            if (len > 0) {
                p->prev[len++] = ' ';
            }
            memcpy(p->prev + len, t, tlen);
            len += tlen;
            p->prev[len] = '\0';
            n++;
        }
        t += tlen;
        t += strspn(t, " ");
    }
}

/* The offset we may commit for p now (INV-1), or -1. Never at or below
 * what is already committed for the group. */
static int64_t commit_target(const struct ipart *p)
{
    int64_t floor = max64(p->acked, p->group - 1);

    if (!p->assigned || p->drops_pending > 0 || p->rewind != REWIND_NONE) {
        return -1;
    }
    if (p->epoch_commit) {
        return p->durable + 1; /* a new epoch's start, maybe 0 */
    }
    if (p->durable <= floor) {
        return -1;
    }
    return p->durable + 1;
}

/* Builds the commit list of assigned partitions with something new to
 * commit; NULL when there is nothing. */
static rd_kafka_topic_partition_list_t *commit_list(struct intake *in,
                                                    int only_unsent)
{
    rd_kafka_topic_partition_list_t *l = NULL;

    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];
        int64_t off = commit_target(p);
        rd_kafka_topic_partition_t *tp;

        if (off < 0 || (only_unsent && off - 1 <= p->commit_sent)) {
            continue;
        }
        if (l == NULL) {
            l = rd_kafka_topic_partition_list_new(8);
        }
        tp = rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        tp->offset = off;
        tp->metadata = commit_meta(in, p);
        tp->metadata_size = tp->metadata ? strlen(tp->metadata) : 0;
    }
    return l;
}

/* Applies a commit result list (async callback or sync commit). */
static void commit_apply(struct intake *in, rd_kafka_resp_err_t err,
                         const rd_kafka_topic_partition_list_t *l)
{
    int ok = 0;

    for (int i = 0; l != NULL && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        rd_kafka_resp_err_t e = tp->err ? tp->err : err;
        struct ipart *p = part_get(in, tp->topic, tp->partition, 0);

        if (p == NULL || tp->offset < 0) {
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (p->epoch_guard && tp->offset - 1 > p->durable) {
                continue; /* an older epoch's commit, acknowledged late */
            }
            p->epoch_guard = 0;
            p->epoch_commit = 0;
            p->acked = max64(p->acked, tp->offset - 1);
            p->group = max64(p->group, tp->offset);
            ok = 1;
        } else {
            in->c.commit_errors++;
            p->commit_sent = p->acked;
            intake_set_error(in, "commit %s[%d]@%lld: %s", tp->topic,
                             (int)tp->partition, (long long)tp->offset,
                             rd_kafka_err2str(e));
            log_warn("intake", "%s", in->c.last_error);
            in->commit_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        }
    }
    if (ok) {
        in->c.commits++;
        intake_persist(in);
    }
}

static void intake_drop(struct intake *in, struct ipart *p, int64_t after);

static void on_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    struct intake *in = opaque;

    in->commit_inflight = 0;
    phase_end(PHASE_COMMIT, &in->commit_ph_us);
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
        err = RD_KAFKA_RESP_ERR_NO_ERROR; /* nothing to commit */
    }
    commit_apply(in, err, offsets);
    /* The drops on_revoke deferred (INV-3): now that the commit that was
     * in flight is answered, what it settled stays ours to deliver (the
     * group's committed offset is past it: nobody else will consume it)
     * and only what is above it is dropped. */
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->drop_deferred) {
            p->drop_deferred = 0;
            if (!p->assigned) { /* also what the void append wrote */
                intake_drop(in, p, p->acked);
            }
        }
    }
    if (in->commit_wanted && in->commit_retry_at <= uv_now(in->loop)) {
        intake_commit(in);
    }
    intake_stop_advance(in);
}

/* Async commit of what is durable; one commit in flight at a time. */
static void intake_commit(struct intake *in)
{
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;

    if (in->commit_inflight) {
        in->commit_wanted = 1;
        return;
    }
    in->commit_wanted = 0;
    l = commit_list(in, 0);
    if (l == NULL) {
        return;
    }
    e = rd_kafka_commit_queue(in->rk, l, in->rkqu, on_committed, in);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        in->c.commit_errors++;
        intake_set_error(in, "commit: %s", rd_kafka_err2str(e));
        log_warn("intake", "%s", in->c.last_error);
        in->commit_wanted = 1;
        in->commit_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
    } else {
        in->commit_inflight = 1;
        in->commit_ph_us = phase_now_us();
        for (int i = 0; i < l->cnt; i++) {
            struct ipart *p =
                part_get(in, l->elems[i].topic, l->elems[i].partition, 0);

            if (p != NULL) {
                p->commit_sent = l->elems[i].offset - 1;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
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
            part_get(in, res->parts[i].topic, res->parts[i].partition, 0);

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
static void intake_submit(struct intake *in)
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

/* ------------------------------------------------------------ consuming */

/* Takes one message from librdkafka (ownership included). */
static void intake_take(struct intake *in, rd_kafka_message_t *m)
{
    struct ipart *p;

    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && m->rkt != NULL) {
        p = part_get(in, rd_kafka_topic_name(m->rkt), m->partition, 0);
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
    p = part_get(in, rd_kafka_topic_name(m->rkt), m->partition, 1);
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

static void on_idle(uv_idle_t *h)
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

/* Drains the consumer queue (messages and callbacks). */
static void intake_drain(struct intake *in)
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
        n = rd_kafka_consume_batch_queue(in->rkqu, 0, msgs, INTAKE_BATCH);
        if (n < 0) {
            log_error("intake", "consume: %s",
                      rd_kafka_err2str(rd_kafka_last_error()));
            break;
        }
        if (n > 0) {
            phase_fetch(msgs, n);
        }
        for (ssize_t i = 0; i < n; i++) {
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
                          "drain: waking librdkafka's fetchers (%llu)",
                          (unsigned long long)in->prefetch_kicks);
                prefetch_kick(in->rk);
            }
            intake_stop_advance(in);
            return;
        }
    }
    /* More may be queued: continue after the loop's other work. */
    uv_idle_start(&in->idle, on_idle);
}

static void on_poll(uv_poll_t *h, int status, int events)
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
static void intake_drop(struct intake *in, struct ipart *p, int64_t after)
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
        struct ipart *p = part_get(in, tp->topic, tp->partition, 1);
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
            part_get(in, l->elems[i].topic, l->elems[i].partition, 0);

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
        /* Blocking on purpose (see the file comment). */
        rd_kafka_resp_err_t e = rd_kafka_commit(in->rk, c, 0);

        commit_apply(in, e, c);
        rd_kafka_topic_partition_list_destroy(c);
    }
    for (int i = 0; i < l->cnt; i++) {
        struct ipart *p =
            part_get(in, l->elems[i].topic, l->elems[i].partition, 0);

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

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
            struct ipart *q = part_get(in, tp->topic, tp->partition, 0);

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
static void intake_offset_reset(struct intake *in, struct ipart *p, int64_t off)
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
static void intake_reset_retry(struct intake *in)
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
    struct ipart *p = part_get(in, topic, partition, 0);
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

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
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

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    enum log_level l = level <= 3   ? LOG_ERROR
                       : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO
                                    : LOG_DEBUG;

    /* Connection failures also come as error events (on_kafka_error):
     * log them once. */
    if (l < LOG_DEBUG && strcmp(fac, "FAIL") == 0) {
        l = LOG_DEBUG;
    }
    if (l <= log_get_level()) {
        log_msg(l, "kafka", "%s: %s", fac, buf);
    }
}

/* ------------------------------------------------------------ ticking */

static void on_tick(uv_timer_t *t)
{
    struct intake *in = container_of(t, struct intake, tick);
    uint64_t now = uv_now(in->loop);

    if (in->stop == STOP_NONE) {
        intake_reset_retry(in);
    }
    if (in->stop == STOP_NONE || in->stop == STOP_FLUSH) {
        intake_check_pressure(in);
        if (in->append_failed && !in->appending && in->retry_at <= now) {
            intake_submit(in);
        }
    }
    if (in->commit_wanted && !in->commit_inflight &&
        in->commit_retry_at <= now) {
        intake_commit(in);
    } else if (!in->commit_inflight && in->commit_retry_at != 0 &&
               in->commit_retry_at <= now) {
        in->commit_retry_at = 0;
        intake_commit(in);
    }
    if (in->persist_wanted && !in->persist_inflight &&
        in->persist_retry_at <= now) {
        intake_persist(in);
    }
    intake_stop_advance(in);
}

/* ------------------------------------------------------------ stop */

static void on_handle_closed(uv_handle_t *h)
{
    struct intake *in = h->data;

    if (--in->handles == 0) {
        in->stop = STOP_DONE;
        if (in->free_on_close) {
            intake_free(in);
        } else if (in->stop_cb != NULL) {
            in->stop_cb(in->stop_arg);
        }
    }
}

static void set_stop(struct intake *in, enum stop_phase s)
{
    log_info("intake", "stop: %s -> %s", stop_phase_names[in->stop],
             stop_phase_names[s]);
    in->stop = s;
}

/* Moves the stop sequence on as far as it can go now. */
static void intake_stop_advance(struct intake *in)
{
    int late = in->stop != STOP_NONE && uv_now(in->loop) >= in->stop_deadline;

    switch (in->stop) {
    case STOP_NONE:
    case STOP_DONE:
    case STOP_HANDLES:
        return;
    case STOP_FLUSH:
        if (in->append_failed && !in->appending) {
            /* Cannot be journaled now: leave them to the next run. */
            log_warn("intake", "stop: %zu messages not journaled (%s)",
                     in->fly.n + in->acc.n, in->c.last_error);
            msgbuf_clear(&in->fly);
            msgbuf_clear(&in->acc);
            in->append_failed = 0;
        }
        if (!in->appending) {
            intake_submit(in);
        }
        if ((in->appending || in->acc.n > 0) && !late) {
            return;
        }
        set_stop(in, STOP_COMMIT);
        intake_commit(in);
        /* fall through */
    case STOP_COMMIT:
        if ((in->commit_inflight || in->commit_wanted) && !late) {
            if (!in->commit_inflight) {
                intake_commit(in);
            }
            return;
        }
        set_stop(in, STOP_CLOSE);
        {
            rd_kafka_error_t *e =
                rd_kafka_consumer_close_queue(in->rk, in->rkqu);

            if (e != NULL) {
                log_warn("intake", "consumer close: %s",
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            } else {
                in->closing_consumer = 1;
            }
        }
        /* fall through */
    case STOP_CLOSE:
        if (in->closing_consumer && !rd_kafka_consumer_closed(in->rk) &&
            !late) {
            return;
        }
        if (in->closing_consumer && !rd_kafka_consumer_closed(in->rk)) {
            log_warn("intake", "stop: the consumer did not close in time");
        }
        set_stop(in, STOP_PERSIST);
        intake_persist(in);
        /* fall through */
    case STOP_PERSIST:
        if ((in->persist_inflight || in->persist_wanted) && !late) {
            if (!in->persist_inflight) {
                intake_persist(in);
            }
            return;
        }
        if (in->persist_inflight) {
            return; /* its after-callback must run before we free */
        }
        set_stop(in, STOP_HANDLES);
        uv_idle_stop(&in->idle);
        uv_timer_stop(&in->tick);
        uv_poll_stop(&in->poll);
        rd_kafka_queue_io_event_enable(in->rkqu, -1, NULL, 0);
        uv_close((uv_handle_t *)&in->poll, on_handle_closed);
        uv_close((uv_handle_t *)&in->idle, on_handle_closed);
        uv_close((uv_handle_t *)&in->tick, on_handle_closed);
        return;
    }
}

void intake_stop(struct intake *in, intake_stopped_cb cb, void *arg)
{
    if (in->stop != STOP_NONE) {
        return;
    }
    in->stop_cb = cb;
    in->stop_arg = arg;
    in->stop_deadline = uv_now(in->loop) + INTAKE_STOP_DEADLINE_MS;
    set_stop(in, STOP_FLUSH);
    intake_apply_pause(in); /* stop fetching */
    /* Continue from the loop, never inside this call (STYLE 9). */
    uv_idle_start(&in->idle, on_idle);
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

/* ------------------------------------------------------------ start */

/* Sets one property; on failure fills err. */
static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v,
                    char *err, size_t errlen)
{
    char e[512];

    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka '%s': %s", k, e);
        return -EINVAL;
    }
    return 0;
}

/* intake.prefetch_bytes: librdkafka's queue and fetch limits (prefetch.c);
 * the user's kafka map wins. */
static int intake_prefetch(struct intake *in, rd_kafka_conf_t *conf, char *err,
                           size_t errlen)
{
    const struct prefetch_plan *pl = &in->prefetch;
    const struct config_kafka *k = &in->cfg->kafka;

    prefetch_plan_compute(in->cfg->intake.prefetch_bytes, &in->prefetch);
    if (pl->budget > 0) {
        log_info("intake",
                 "prefetch budget %lld bytes: queued.max.messages.kbytes %d, "
                 "queued.min.messages %d, fetch.max.bytes %d, "
                 "max.partition.fetch.bytes %d (unless set in 'kafka')",
                 (long long)pl->budget, pl->queued_kbytes, pl->queued_msgs,
                 pl->fetch_max_bytes, pl->part_fetch_bytes);
    }
    return prefetch_apply(conf, pl, k->keys, k->n, err, errlen);
}

static int build_conf(struct intake *in, rd_kafka_conf_t **out, char *err,
                      size_t errlen)
{
    static const char *const defaults[][2] = {
        {"client.id", "kadx"},
        {"group.id", "kadx"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        /* Records of aborted transactions never reach the journal (and
         * so ADX); librdkafka's default too, but kadx's own contract:
         * tests/e2e/test_real_kafka.py checks it against a real broker. */
        {"isolation.level", "read_committed"},
        {"enable.partition.eof", "false"},
        {"queued.min.messages", "1000000"},
        {"fetch.wait.max.ms", "100"},
        {"log.connection.close", "false"},
    };
    const struct config_kafka *k = &in->cfg->kafka;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc;

    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        rc = conf_set(conf, defaults[i][0], defaults[i][1], err, errlen);
        if (rc < 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->keys[i], "enable.auto.commit") == 0 &&
            strcmp(k->values[i], "false") != 0) {
            snprintf(err, errlen,
                     "kafka 'enable.auto.commit' must be false: kadx "
                     "commits offsets only after they are durable");
            rc = -EINVAL;
            goto fail;
        }
        rc = conf_set(conf, k->keys[i], k->values[i], err, errlen);
        if (rc < 0) {
            goto fail;
        }
        if ((strcmp(k->keys[i], "sasl.mechanisms") == 0 ||
             strcmp(k->keys[i], "sasl.mechanism") == 0) &&
            strncmp(k->values[i], "SCRAM", 5) == 0 &&
            rd_kafka_version() < 0x020601ff) {
            /* librdkafka#4895: the client-final-message repeats the client
             * nonce; Kafka 4.x checks it strictly (RFC 5802) and refuses. */
            log_warn("intake",
                     "kafka sasl.mechanisms %s with librdkafka %s: versions "
                     "before 2.6.1 cannot authenticate with SCRAM to Kafka "
                     "4.x brokers (they can to 3.x); see gateway/INTAKE.md",
                     k->values[i], rd_kafka_version_str());
        }
    }
    rc = intake_prefetch(in, conf, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    /* Not overridable: kadx's own wiring. The user's auto.offset.reset
     * (earliest or latest, config.c) is applied by intake itself. */
    rc = conf_set(conf, "log.queue", "true", err, errlen);
    if (rc == 0) {
        rc = conf_set(conf, "auto.offset.reset", "error", err, errlen);
    }
    if (rc < 0) {
        goto fail;
    }
    rd_kafka_conf_set_opaque(conf, in);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    *out = conf;
    return 0;
fail:
    rd_kafka_conf_destroy(conf);
    return rc;
}

/* Registers the journal's partitions (status, INV-3 checks). */
static int load_journal_parts(struct intake *in, char *err, size_t errlen)
{
    struct journal_stats st;
    int rc = journal_stats(in->j, &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    for (size_t i = 0; i < st.nparts; i++) {
        struct ipart *p =
            part_get(in, st.parts[i].topic, st.parts[i].partition, 1);

        if (p == NULL) {
            journal_stats_release(&st);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        if (st.parts[i].sealed) {
            continue; /* an older epoch: delivered without a limit */
        }
        p->epoch = st.parts[i].epoch;
        p->durable = max64(p->durable, st.parts[i].high_offset);
    }
    journal_stats_release(&st);
    /* A settled line of another epoch says nothing about this one (a crash
     * between the journal's new epoch and the file's rewrite). */
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->file_epoch >= 0 && p->file_epoch != p->epoch) {
            log_info("intake",
                     "%s[%d]: settled offset %lld is of epoch %lld, the "
                     "journal is at epoch %lld: not settled in this epoch",
                     p->topic, (int)p->partition, (long long)p->settled,
                     (long long)p->file_epoch, (long long)p->epoch);
            p->acked = p->settled = p->commit_sent = -1;
            p->file_epoch = p->epoch;
            in->persist_force = 1;
        }
    }
    return 0;
}

int intake_start(uv_loop_t *loop, const struct config *cfg, struct journal *j,
                 struct intake **out, char *err, size_t errlen)
{
    struct intake *in = calloc(1, sizeof(*in));
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_resp_err_t e;
    char kerr[512];
    const char *jp;
    int rc;

    *out = NULL;
    if (in == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    in->loop = loop;
    in->cfg = cfg;
    in->j = j;
    intake_acc_limit(in);
    in->pipefd[0] = in->pipefd[1] = -1;
    snprintf(in->uuid, sizeof(in->uuid), "%s", journal_uuid(j));
    if (cfg->intake.ntopics == 0) {
        snprintf(err, errlen, "no topic to consume");
        rc = -EINVAL;
        goto fail;
    }
    jp = journal_path(j);
    in->settled_path = malloc(strlen(jp) + sizeof(".settled"));
    if (in->settled_path == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    memcpy(in->settled_path, jp, strlen(jp));
    memcpy(in->settled_path + strlen(jp), ".settled", sizeof(".settled"));
    rc = settled_load(in, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    rc = load_journal_parts(in, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    settled_rebuild(in);

    rc = build_conf(in, &conf, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (in->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer: %s", kerr);
        rc = -EINVAL;
        goto fail;
    }
    rd_kafka_set_log_queue(in->rk, NULL);
    rd_kafka_poll_set_consumer(in->rk);
    in->rkqu = rd_kafka_queue_get_consumer(in->rk);

    if (pipe2(in->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rc = uv_poll_init(loop, &in->poll, in->pipefd[0]);
    if (rc < 0) {
        snprintf(err, errlen, "uv_poll_init: %s", uv_strerror(rc));
        goto fail;
    }
    in->poll.data = in;
    in->handles++;
    uv_idle_init(loop, &in->idle);
    in->idle.data = in;
    in->handles++;
    uv_timer_init(loop, &in->tick);
    in->tick.data = in;
    in->handles++;
    rd_kafka_queue_io_event_enable(in->rkqu, in->pipefd[1], "1", 1);
    rc = uv_poll_start(&in->poll, UV_READABLE, on_poll);
    if (rc < 0) {
        snprintf(err, errlen, "uv_poll_start: %s", uv_strerror(rc));
        goto fail;
    }
    uv_timer_start(&in->tick, on_tick, INTAKE_TICK_MS, INTAKE_TICK_MS);

    topics = rd_kafka_topic_partition_list_new((int)cfg->intake.ntopics);
    for (size_t i = 0; i < cfg->intake.ntopics; i++) {
        rd_kafka_topic_partition_list_add(topics, cfg->intake.topics[i],
                                          RD_KAFKA_PARTITION_UA);
    }
    e = rd_kafka_subscribe(in->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
        rc = -EINVAL;
        goto fail;
    }
    *out = in;
    /* Whatever is queued already: drain it from the loop. */
    uv_idle_start(&in->idle, on_idle);
    return 0;

fail:
    /* Nothing was started that owes a callback: tear down directly. */
    if (in->handles > 0) {
        in->stop = STOP_HANDLES;
        uv_poll_stop(&in->poll);
        uv_timer_stop(&in->tick);
        uv_idle_stop(&in->idle);
        if (in->rkqu != NULL) {
            rd_kafka_queue_io_event_enable(in->rkqu, -1, NULL, 0);
        }
        uv_close((uv_handle_t *)&in->poll, on_handle_closed);
        uv_close((uv_handle_t *)&in->idle, on_handle_closed);
        uv_close((uv_handle_t *)&in->tick, on_handle_closed);
        in->free_on_close = 1; /* freed once the loop has closed them */
        return rc;
    }
    intake_free(in);
    return rc;
}

void intake_free(struct intake *in)
{
    if (in == NULL) {
        return;
    }
    msgbuf_release(&in->acc);
    msgbuf_release(&in->fly);
    if (in->rkqu != NULL) {
        rd_kafka_queue_io_event_enable(in->rkqu, -1, NULL, 0);
        rd_kafka_queue_destroy(in->rkqu);
    }
    if (in->rk != NULL) {
        rd_kafka_destroy_flags(in->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    if (in->pipefd[0] >= 0) {
        close(in->pipefd[0]);
    }
    if (in->pipefd[1] >= 0) {
        close(in->pipefd[1]);
    }
    for (size_t i = 0; i < in->nparts; i++) {
        free(in->parts[i]->topic);
        free(in->parts[i]);
    }
    free(in->parts);
    free(in->ev);
    free(in->settled_path);
    free(in->persist_buf);
    free(in->persist_p);
    free(in->persist_v);
    free(in->settled_arr);
    free(in->pout);
    free(in);
}
