/*
 * intake_internal.h - what the intake's files share, private to
 * gateway/intake*.c (nothing else includes it): the limits, one partition's
 * state (struct ipart), the message buffers, struct intake itself, and the
 * functions one of the files calls in another.
 *
 * The intake (the design: intake.c's file comment and gateway/INTAKE.md) is
 * split by concern: intake.c holds the lifecycle (start, the tick, the stop
 * sequence, free); intake_consume.c the consumer queue's drain and
 * librdkafka's callbacks (rebalance, errors, logs); intake_offsets.c refused
 * offsets, rewinds and new epochs; intake_append.c the message buffers, the
 * journal append and backpressure; intake_commit.c the commits, their
 * metadata chain and the settled watermarks; intake_table.c the partition
 * table and the status accessors. Everything runs on the loop thread except
 * the settled file's write (persist_work_cb, on a libuv worker).
 */
#ifndef KADX_INTAKE_INTERNAL_H
#define KADX_INTAKE_INTERNAL_H

#include "gateway/intake.h"
#include "gateway/prefetch.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct journal_event;

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

/* A partition's offset continuity (intake.c "Offset resets"). */
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

struct intake {
    uv_loop_t *loop;
    const struct config *cfg;
    struct prefetch_plan prefetch; /* intake.prefetch_bytes (prefetch.h) */
    int prefetch_full; /* drained nothing for a while: prefetch_kick */
    uint64_t prefetch_kicks;
    int64_t taken_msgs, taken_bytes; /* taken in all: mean message size */
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

static inline int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/*
 * What one of the files calls in another, by the file that defines it
 * (each is described there).
 */

/* intake.c: the stop sequence */
void intake_stop_advance(struct intake *in);

/* intake_consume.c: consuming, rebalance, librdkafka's callbacks */
void intake_on_idle(uv_idle_t *h);
void intake_drain(struct intake *in);
void intake_on_poll(uv_poll_t *h, int status, int events);
void intake_drop(struct intake *in, struct ipart *p, int64_t after);
void intake_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque);
void intake_on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque);
void intake_on_kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf);

/* intake_offsets.c: refused offsets */
void intake_offset_reset(struct intake *in, struct ipart *p, int64_t off);
void intake_reset_retry(struct intake *in);

/* intake_append.c: message buffers, appends, backpressure */
void msgbuf_clear(struct msgbuf *b);
void msgbuf_release(struct msgbuf *b);
void msgbuf_remove_part(struct msgbuf *b, const struct ipart *p);
int msgbuf_push(struct msgbuf *b, struct ipart *p, rd_kafka_message_t *m);
void intake_apply_pause(struct intake *in);
void intake_acc_limit(struct intake *in);
void intake_check_pressure(struct intake *in);
void intake_submit(struct intake *in);

/* intake_commit.c: commits, metadata, settled watermarks */
void settled_rebuild(struct intake *in);
void intake_persist(struct intake *in);
int settled_load(struct intake *in, char *err, size_t errlen);
const char *part_ident(const struct intake *in, const struct ipart *p,
                       char *buf);
char *commit_meta(struct intake *in, const struct ipart *p);
void meta_parse(const void *meta, size_t len, char *owner, char *chain);
int64_t chain_find(const char *chain, const char *uuid);
void chain_extend(struct ipart *p, const char *owner, const char *chain,
                  int64_t offset);
int64_t commit_target(const struct ipart *p);
void commit_apply(struct intake *in, rd_kafka_resp_err_t err,
                  const rd_kafka_topic_partition_list_t *l);
void intake_commit(struct intake *in);

/* intake_table.c: the partition table, errors */
void intake_set_error(struct intake *in, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct ipart *ipart_get(struct intake *in, const char *topic, int32_t partition,
                        int create);

#endif
