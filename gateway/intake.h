/*
 * intake.h - the consuming half of `kadx run`: librdkafka's high-level
 * consumer driven by the libuv loop; every message appended to the journal;
 * offsets committed only after the journal reports them durable (INV-1);
 * commit acknowledgements form the per-partition "settled" watermark the
 * forwarder may send up to (INV-3). gateway/INTAKE.md explains rebalances,
 * backpressure and the mock cluster.
 *
 * Threads: a struct intake belongs to the loop thread that started it.
 * Every function here must be called on that thread, and every callback
 * (librdkafka's rebalance, commit, error and log callbacks included) runs
 * on it.
 */
#ifndef KADX_INTAKE_H
#define KADX_INTAKE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;
struct journal;
struct journal_offset;
struct intake;

/*
 * Starts the consumer: builds the librdkafka configuration (kadx's defaults,
 * then cfg->kafka verbatim; enable.auto.commit=true is refused, INV-1),
 * wires the consumer queue into loop through a pipe and a uv_poll_t, loads
 * the settled watermarks saved beside the journal ("<journal>.settled") and
 * subscribes to cfg->intake.topics. cfg and j are borrowed and must outlive
 * the intake. Returns 0 and *out (free with intake_free after the stop
 * callback ran), or a negative errno with err filled (nothing started).
 */
int intake_start(uv_loop_t *loop, const struct config *cfg, struct journal *j,
                 struct intake **out, char *err, size_t errlen);

typedef void (*intake_stopped_cb)(void *arg);

/*
 * Graceful stop (SIGTERM): stops fetching, waits for the journal appends in
 * flight (and journals what was already consumed), commits what is durable,
 * saves the settled watermarks, closes the consumer (leaving the group) and
 * closes its handles. cb runs once, later, on the loop thread (also when
 * some step failed: the failure is logged). Calling it twice is a no-op.
 */
void intake_stop(struct intake *in, intake_stopped_cb cb, void *arg);

/*
 * Frees a stopped intake (or one whose start failed halfway). NULL ok.
 * The journal borrows the events of intake's append in flight: when the
 * stop gave up waiting for it (its deadline), close the journal first
 * (journal_close drains its queue); the daemon always does.
 */
void intake_free(struct intake *in);

/*
 * INV-3: the highest settled offset of (topic, partition): every event of
 * this partition at or below it that is in this instance's journal was
 * committed by this instance and may be delivered. Returns 0 and *offset,
 * or -ENOENT when nothing of the partition is settled here.
 */
int intake_settled(const struct intake *in, const char *topic,
                   int32_t partition, int64_t *offset);

/*
 * Every settled watermark known to this instance, for a journal_cut_req.
 * The array and its topic strings are borrowed: valid until the loop runs
 * an intake callback again (i.e. use it at once). *n may be 0.
 */
const struct journal_offset *intake_settled_all(const struct intake *in,
                                                size_t *n);

/*
 * Asks to be told when a settled watermark moved (so the forwarder can cut
 * a batch at once instead of polling). One listener; cb NULL removes it.
 * cb runs on the loop thread, never inside an intake_* call.
 */
typedef void (*intake_settled_cb)(void *arg);
void intake_on_settled(struct intake *in, intake_settled_cb cb, void *arg);

/* Operator pause (admin POST /pause): 1 pauses every assigned partition
 * (the member stays in the group), 0 lifts it (backpressure may still hold
 * the partitions paused). */
void intake_set_paused(struct intake *in, int paused);

/*
 * The operator's answer to a partition that went backwards (admin POST
 * /partitions/epoch): the journal starts a new offset epoch of it at
 * *from (-1 = the broker's log start, set to it; else within the broker's
 * log), the
 * old epoch's settled events stay and are delivered, and consuming resumes
 * there. Returns 0 (the epoch is written asynchronously; /status shows it)
 * or -ENOENT (not assigned here), -EINVAL (it did not go backwards),
 * -EBUSY (already starting), -ERANGE (from outside the log), -EAGAIN (the
 * broker's log range is unknown) with err filled.
 */
int intake_new_epoch(struct intake *in, const char *topic, int32_t partition,
                     int64_t *from, char *err, size_t errlen);

/* Per partition: assigned now, or known from the journal / settled file. */
struct intake_partition {
    const char *topic; /* borrowed, valid until intake_free */
    int32_t partition;
    int route;           /* config route index, -1 = not known yet */
    int assigned;        /* 1 while this member owns the partition */
    int64_t consumed;    /* highest offset consumed by this process, -1 */
    int64_t journaled;   /* highest offset durable in the journal (a skipped
                            tombstone counts once all before it is), -1 */
    int64_t committed;   /* highest offset whose commit Kafka acknowledged
                            (committed offset - 1), -1 */
    int64_t settled;     /* highest settled offset (see intake_settled), -1 */
    int64_t end_offset;  /* Kafka's high watermark as last fetched, -1 */
    int64_t lag;         /* end_offset - (consumed or committed) - 1, -1 */
    uint64_t n_consumed; /* messages consumed by this process */
    uint64_t n_tombstones;
    int64_t epoch;         /* the journal's offset epoch (0 = first) */
    int rewound;           /* 1: went backwards, paused for the operator */
    int64_t rewind_offset; /* the offset the broker refused, -1 */
    int64_t log_start;     /* broker log start/end at the last check, -1 */
    int64_t log_end;
    uint64_t gaps;       /* retention gaps: offsets deleted unread */
    uint64_t gap_events; /* events skipped by them */
    int64_t gap_first;   /* the last gap's skipped range, -1 */
    int64_t gap_last;
};

struct intake_counters {
    uint64_t consumed;      /* messages handed to kadx by librdkafka */
    uint64_t journaled;     /* events newly stored in the journal */
    uint64_t duplicates;    /* redeliveries the journal ignored (INV-2) */
    uint64_t tombstones;    /* null-value messages skipped */
    uint64_t commits;       /* offset commits acknowledged */
    uint64_t commit_errors; /* partitions whose commit failed */
    uint64_t append_errors; /* journal appends that failed */
    uint64_t kafka_errors;  /* error events from librdkafka */
    uint64_t rebalances;    /* assign + revoke + lost callbacks */
    uint64_t lost;          /* partitions lost without a revoke */
    uint64_t dropped;       /* unsettled events dropped (INV-3) */
    uint64_t pauses;        /* backpressure pauses */
    int paused;             /* 1 while backpressure/operator pause holds */
    uint64_t rewinds;       /* partitions found gone backwards (INTAKE.md) */
    uint64_t epochs;        /* new offset epochs started */
    uint64_t gaps;          /* retention gaps found */
    uint64_t gap_events;    /* events those gaps skipped */
    int rewound;            /* assigned partitions paused on a rewind now */
    int bp_paused;          /* 1 while the backpressure pause holds (INV-7:
                               journal full, disk full or over high water) */
    int64_t pending_bytes;  /* journal_pending_bytes() at the last check */
    int64_t last_error_ms;  /* wall clock ms of last_error, 0 = none */
    char last_error[256];   /* last Kafka/journal problem, "" = none */
};

/* Partition table: borrowed, valid until the loop runs an intake callback
 * again. Refreshes end_offset/lag from librdkafka's cached watermarks. */
const struct intake_partition *intake_partitions(struct intake *in, size_t *n);
void intake_get_counters(const struct intake *in, struct intake_counters *out);

/*
 * Kafka headers as stored in journal_event.headers: a sequence of
 *   u16 name length (big endian), name bytes,
 *   u32 value length (big endian; 0xffffffff = null value), value bytes.
 * No headers = headers_len 0. intake_headers_next() walks it: start with
 * *pos = 0; returns 1 and the next header (pointers into buf; value NULL
 * and *value_len 0 for a null value), 0 at the end, -EINVAL when truncated.
 */
int intake_headers_next(const void *buf, size_t len, size_t *pos,
                        const char **name, size_t *name_len, const void **value,
                        size_t *value_len);

#endif
