/*
 * journal.h - the durable journal: kadx's SQLite write-ahead store between
 * Kafka and ADX (DESIGN.md "Journal", invariants 1-8; schema and reasoning
 * in storage/journal.c and storage/README.md).
 *
 * Threads. A `struct journal` is opened and closed on one thread (the libuv
 * loop thread in the gateway; main() in tools and tests). Inside it, ONE
 * dedicated writer thread runs every write transaction (append, batch cut,
 * batch marks, split, drop, retention, requeue, replay) with group commit:
 * requests queued while a transaction runs share the next transaction and
 * its one fsync. Nothing that fsyncs ever runs on the loop thread.
 *
 * Two flavours of every write call:
 *  - `journal_X_async(..., cb, arg)` (needs options.loop): queues the
 *    request and returns. Callback contract (STYLE 9/10): if it returns < 0
 *    the callback never runs; if it returns 0 the callback runs exactly
 *    once, later, on the loop thread (delivered through a uv_async_t), never
 *    inside journal_X_async itself. Everything the request borrows is copied
 *    before journal_X_async returns.
 *  - `journal_X(...)` (sync): queues the same request on the writer thread
 *    and blocks until its transaction is durable. Usable from any thread
 *    except inside a journal callback; mixing with async calls is fine (they
 *    share group commits). Do not call sync writes from the loop thread of
 *    a latency-sensitive daemon (they wait for an fsync).
 * Reads (journal_high_offset, journal_stats, journal_batch_load,
 * journal_batches_unfinished, journal_dead_list, journal_iterate) run on
 * the calling thread on a separate read connection (WAL: readers never wait
 * for the writer); they are serialised by a mutex, so any thread may call
 * them, but they see only committed data.
 *
 * Errors: every int-returning call returns 0 or a negative errno, and fills
 * err (errlen bytes, always NUL-terminated; err may be NULL) with a message
 * for the caller to log. Notable codes:
 *   -ENOSPC  byte cap (options.max_bytes) reached or disk full
 *            (SQLITE_FULL); the whole request was rolled back (INV-7)
 *   -EBUSY   the journal file is locked by another process (message names
 *            the PID)
 *   -ENOENT  unknown batch id / dead-letter id / missing file (read-only)
 *   -EROFS   write call on a read-only journal
 *   -EINVAL  bad arguments; -ENOMEM; -EIO any other SQLite failure
 *   -ECANCELED the journal was closed before the request ran
 *
 * Offsets are Kafka offsets (>= 0). "No offset" is -1.
 */
#ifndef KADX_JOURNAL_H
#define KADX_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct journal;

/* ------------------------------------------------------------------ open */

struct journal_options {
    const char *path;    /* database file; "<path>.lock" is the lock file */
    int64_t max_bytes;   /* byte cap for appends (page count based); 0 =
                            none. Appends that would cross it get -ENOSPC;
                            batch/mark/retention writes may use a small
                            reserve above it, so the forwarder can always
                            drain a full journal (INV-7). */
    int sync_full;       /* 1 = synchronous=FULL (default, INV-1);
                            0 = NORMAL (see storage/README.md: the last
                            transactions may be lost on power failure,
                            never on a process crash) */
    int busy_timeout_ms; /* SQLite busy timeout; 0 = 5000 */
    int read_only;       /* 1 = no writer thread, read calls only; takes a
                            shared lock (refused while a writer runs) */
    uv_loop_t *loop;     /* loop for async completions; NULL = sync only */
    int64_t disk_limit_bytes; /* tests/ops: simulate a disk this small
                                 (PRAGMA max_page_count: SQLITE_FULL);
                                 0 = none */
    int64_t reserve_bytes;    /* space awareness (see "disk space" below):
                                 bytes of the journal's filesystem appends
                                 never take, kept for the WAL, checkpoints,
                                 cutting, marking and retiring batches and
                                 the settled file; 0 = off (appends only
                                 stop at max_bytes or SQLITE_FULL) */
    int64_t fs_size_bytes;    /* tests: measure as if the journal's files
                                 were alone on a filesystem this big (free
                                 = size - file - wal) instead of statvfs;
                                 0 = the real filesystem */
};

/*
 * Opens (creating if needed, unless read_only) the journal: takes the lock
 * file (a second opener gets -EBUSY "journal 'P' is in use by process N"),
 * sets WAL and synchronous, runs the numbered migrations (PRAGMA
 * user_version), starts the writer thread. *out is owned by the caller
 * (journal_close). opts is borrowed during the call only.
 */
int journal_open(const struct journal_options *opts, struct journal **out,
                 char *err, size_t errlen);

/*
 * Waits for queued writes to finish, stops the writer, closes the database
 * and releases the lock. Async callbacks still owed run inside
 * journal_close (on the loop thread, with the status of their request).
 * With a loop, the memory is freed in the uv_async_t close callback: run
 * the loop (e.g. uv_run(loop, UV_RUN_DEFAULT)) afterwards. Accepts NULL.
 * Must not be called from a journal callback.
 */
void journal_close(struct journal *j);

/* The journal's UUID (36 chars), created with the file. Valid until close. */
const char *journal_uuid(const struct journal *j);

/* The database path given at open. Valid until close. */
const char *journal_path(const struct journal *j);

/*
 * NULL, or one line naming the journal's files (database, -wal, -shm,
 * .lock, .settled) that existed at open with group or other permission bits,
 * with their modes: the caller logs it as a warning. Files the journal creates
 * are 0600 whatever the umask. Valid until close.
 */
const char *journal_permission_warning(const struct journal *j);

/* ---------------------------------------------------------------- events */

/*
 * One Kafka event. When passed IN (append), every pointer is borrowed for
 * the duration of the call only. When returned (batches, iterate), the
 * pointers belong to the returned object (valid until it is freed or the
 * callback returns). topic is NUL-terminated; key/value/headers are opaque
 * bytes (headers serialised by the caller); key == NULL with key_len 0
 * means no key (a Kafka null key).
 */
struct journal_event {
    int route; /* index of the route (config order) the event belongs to */
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* Kafka message timestamp */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const void *headers;
    size_t headers_len;
};

/* (topic, partition, offset): names one event or one partition cursor. */
struct journal_offset {
    const char *topic; /* borrowed (in) / owned by the containing object */
    int32_t partition;
    int64_t offset;
};

/* --------------------------------------------------------------- append */

struct journal_append_part {
    char *topic; /* owned by the result */
    int32_t partition;
    int64_t high_offset; /* highest durable offset now journaled (INV-1:
                            the consumer may commit high_offset + 1) */
    int64_t appended;    /* events of this request stored */
    int64_t duplicates;  /* events at or below the previous high offset:
                            ignored (INV-2) */
};

struct journal_append_result {
    size_t nparts; /* one per (topic, partition) present in the request */
    struct journal_append_part *parts;
    int64_t appended; /* totals over parts */
    int64_t duplicates;
    int64_t bytes; /* packed bytes stored */
};

/* Frees what a result owns (not the struct itself). Accepts NULL. */
void journal_append_result_release(struct journal_append_result *r);

/*
 * Appends n events (any mix of partitions and routes; within a partition
 * in increasing offset order as Kafka delivers them) in ONE transaction,
 * durable (fsync'd as options.sync_full says) when this returns 0. An event
 * whose offset is at or below its partition's highest journaled offset is a
 * duplicate: not stored, counted (INV-2). Events are borrowed for the call.
 * At the byte cap or on a full disk: -ENOSPC and nothing of the request is
 * stored. On success *res (may be NULL) is filled; release it with
 * journal_append_result_release. n == 0 is allowed (result empty).
 */
int journal_append(struct journal *j, const struct journal_event *ev, size_t n,
                   struct journal_append_result *res, char *err, size_t errlen);

/*
 * Callback of journal_append_async. status is 0 or -errno (-ENOSPC etc.);
 * res is valid only during the callback (NULL when status < 0); err is the
 * error text ("" on success), valid during the callback.
 */
typedef void (*journal_append_cb)(void *arg, int status,
                                  const struct journal_append_result *res,
                                  const char *err);

/*
 * Async append: the events are copied before it returns; requests queued
 * together share one transaction and one fsync (group commit), but each
 * request succeeds or fails on its own (a request over the cap does not
 * fail its neighbours). Returns 0 (cb runs later on the loop) or < 0.
 */
int journal_append_async(struct journal *j, const struct journal_event *ev,
                         size_t n, journal_append_cb cb, void *arg);

/*
 * The same without the copy: ev[0..n) and every byte they point to must
 * stay valid and unchanged until cb has run (intake keeps its in-flight
 * buffer for exactly that long). Saves a copy of each append's events.
 */
int journal_append_async_borrowed(struct journal *j,
                                  const struct journal_event *ev, size_t n,
                                  journal_append_cb cb, void *arg);

/*
 * Highest journaled offset of (topic, partition), -1 when none: resume
 * after max(committed, high + 1) (INV-2). Read connection.
 */
int journal_high_offset(struct journal *j, const char *topic, int32_t partition,
                        int64_t *off, char *err, size_t errlen);

/*
 * Packed bytes of events not yet delivered nor dead (pending + in-flight),
 * over all routes: intake's high/low water marks. Cheap (an atomic read of
 * a counter the writer keeps up to date after each commit); any thread.
 */
int64_t journal_pending_bytes(const struct journal *j);

/* ---------------------------------------------------------------- batches */

enum journal_batch_state {
    JOURNAL_BATCH_PENDING = 0, /* persisted, not sent yet (INV-4) */
    JOURNAL_BATCH_SENT,        /* a request went out; after a restart this
                                  is ambiguous (INV-5) */
    JOURNAL_BATCH_FAILED,      /* transient failure, retry at next_try_ms */
    JOURNAL_BATCH_DELIVERED,   /* HTTP 200 (finished) */
    JOURNAL_BATCH_DEAD,        /* every member dead-lettered (finished) */
    JOURNAL_BATCH_SPLIT,       /* replaced by two children (finished) */
};

/*
 * The states as SQL literals, for the statements of the journal and of
 * recover (test_journal checks them against the enum).
 * "Open" = not finished: pending, sent or failed.
 */
#define JOURNAL_SQL_PENDING   "0"
#define JOURNAL_SQL_SENT      "1"
#define JOURNAL_SQL_FAILED    "2"
#define JOURNAL_SQL_DELIVERED "3"
#define JOURNAL_SQL_DEAD      "4"
#define JOURNAL_SQL_SPLIT     "5"
#define JOURNAL_SQL_OPEN      "state <= " JOURNAL_SQL_FAILED

/* "pending", "sent", ... (static strings). */
const char *journal_batch_state_name(enum journal_batch_state s);

#define JOURNAL_BATCH_REPLAY  0x1 /* events already delivered once */
#define JOURNAL_BATCH_REQUEUE 0x2 /* dead letters put back */
#define JOURNAL_BATCH_CHILD   0x4 /* made by journal_batch_split */

/* One member range: the journaled events of (topic, partition) with
 * first <= offset <= last (offsets may have gaps). */
struct journal_range {
    char *topic; /* owned by the batch */
    int32_t partition;
    int64_t first_offset;
    int64_t last_offset;
};

#define JOURNAL_BATCH_ID_MAX 64

struct journal_batch {
    char id[JOURNAL_BATCH_ID_MAX];        /* "<journal uuid>-<seq>", unique */
    char parent_id[JOURNAL_BATCH_ID_MAX]; /* split children: the parent */
    int route;
    int flags; /* JOURNAL_BATCH_* */
    enum journal_batch_state state;
    int attempts;          /* times marked sent */
    int64_t created_ms;    /* wall clock, ms since the epoch */
    int64_t first_sent_ms; /* 0 = never */
    int64_t last_sent_ms;
    int64_t next_try_ms; /* FAILED: earliest retry */
    char *last_error;    /* owned, may be NULL */
    int64_t count;       /* live members (dead ones excluded) */
    int64_t bytes;       /* sum of their value_len */
    size_t nranges;
    struct journal_range *ranges;
    /* Member events in (topic, partition, offset) order, without the
     * dead-lettered ones. Pointers are owned by the batch. nevents == 0 and
     * events == NULL in listings (journal_batches_unfinished). */
    size_t nevents;
    struct journal_event *events;
    void *priv_; /* journal-internal storage */
};

/* Frees a batch and everything it owns. Accepts NULL. */
void journal_batch_free(struct journal_batch *b);

struct journal_cut_req {
    int route;
    int64_t max_rows;  /* > 0 */
    int64_t max_bytes; /* > 0; sum of value_len; a single event larger than
                          this is batched alone */
    /* INV-3: per (topic, partition) the highest settled (commit
     * acknowledged) offset; only events <= it are batched. Partitions not
     * listed are not batched at all. settled_all = 1 ignores the list and
     * treats everything as settled (recovery tool: no Kafka). */
    const struct journal_offset *settled;
    size_t nsettled;
    int settled_all;
};

/*
 * Gives the forwarder its next batch for req->route, in this order:
 *  1. an UNCLAIMED existing batch of the route: batches left unfinished by
 *     a previous process (every unfinished batch is unclaimed after open),
 *     or made by journal_dead_requeue / journal_replay. Its state says what
 *     happened before (SENT = ambiguous, INV-5; FAILED: next_try_ms); it is
 *     returned as it is, and is claimed (not returned again by this
 *     process).
 *  2. else a NEW batch of pending (never batched) settled events of the
 *     route, oldest first, up to max_rows/max_bytes, PERSISTED (id, member
 *     ranges, state pending, claimed) in the same transaction before this
 *     returns (INV-4).
 * *out is the batch with its member events (owned by the caller:
 * journal_batch_free), or NULL when there is nothing to do (status 0).
 */
int journal_batch_cut(struct journal *j, const struct journal_cut_req *req,
                      struct journal_batch **out, char *err, size_t errlen);

/* b owned by the callee (journal_batch_free), NULL if nothing to batch. */
typedef void (*journal_batch_cb)(void *arg, int status, struct journal_batch *b,
                                 const char *err);
/* req and its settled array are copied before it returns. */
int journal_batch_cut_async(struct journal *j,
                            const struct journal_cut_req *req,
                            journal_batch_cb cb, void *arg);

/*
 * Loads batch `id` again with the same members (a resend uses the same id
 * and rows, INV-4), minus members dead-lettered since. Read connection.
 * -ENOENT when unknown (or retired). *out owned by the caller.
 */
int journal_batch_load(struct journal *j, const char *id,
                       struct journal_batch **out, char *err, size_t errlen);

/*
 * Unfinished batches (PENDING, SENT, FAILED) of `route` (-1 = all routes),
 * oldest first, without member events (nevents = 0; ranges filled). For
 * status, metrics and the recovery tool; the forwarder receives them
 * through journal_batch_cut. *list is an array of *n batch structs owned
 * by the caller: free with journal_batch_list_free(*list, *n).
 */
int journal_batches_unfinished(struct journal *j, int route,
                               struct journal_batch **list, size_t *n,
                               char *err, size_t errlen);
void journal_batch_list_free(struct journal_batch *list, size_t n);

/* Generic completion for async writes that return nothing but a status. */
typedef void (*journal_done_cb)(void *arg, int status, const char *err);

/* A request for batch `id` went out: attempts++, first/last send time =
 * now_ms, state SENT. */
int journal_batch_mark_sent(struct journal *j, const char *id, int64_t now_ms,
                            char *err, size_t errlen);
int journal_batch_mark_sent_async(struct journal *j, const char *id,
                                  int64_t now_ms, journal_done_cb cb,
                                  void *arg);

/* HTTP 200 (INV-5 only on a definite yes): state DELIVERED; its live
 * members become delivered (kept for replay until retention, INV-8). A
 * replay batch changes no event's state. */
int journal_batch_mark_delivered(struct journal *j, const char *id,
                                 int64_t now_ms, char *err, size_t errlen);
int journal_batch_mark_delivered_async(struct journal *j, const char *id,
                                       int64_t now_ms, journal_done_cb cb,
                                       void *arg);

/* Transient failure: state FAILED, next_try_ms and the error text (copied;
 * capped at 1 KiB; never put a secret or a payload in it). */
int journal_batch_mark_failed(struct journal *j, const char *id,
                              int64_t next_try_ms, const char *error, char *err,
                              size_t errlen);
int journal_batch_mark_failed_async(struct journal *j, const char *id,
                                    int64_t next_try_ms, const char *error,
                                    journal_done_cb cb, void *arg);

/*
 * Dead-letters members of batch `id` with `reason` (INV-6): the events in
 * refs (n > 0; each must be a live member, else -EINVAL), or every live
 * member when n == 0. Dead events leave the batch (loads skip them) and
 * are kept until requeued or purged by an operator. When no live member
 * remains the batch becomes DEAD. refs and reason are copied.
 */
int journal_batch_mark_dead(struct journal *j, const char *id,
                            const struct journal_offset *refs, size_t n,
                            const char *reason, int64_t now_ms, char *err,
                            size_t errlen);
int journal_batch_mark_dead_async(struct journal *j, const char *id,
                                  const struct journal_offset *refs, size_t n,
                                  const char *reason, int64_t now_ms,
                                  journal_done_cb cb, void *arg);

/*
 * Bisection (INV-6): atomically replaces batch `id` (state -> SPLIT) by two
 * new PENDING child batches (flag CHILD, parent_id = id, claimed by the
 * caller): the first `at` live members (in the batch's event order) and the
 * rest (0 < at < count, else -EINVAL). Returns both with their events;
 * owned by the caller.
 */
int journal_batch_split(struct journal *j, const char *id, int64_t at,
                        struct journal_batch **first,
                        struct journal_batch **second, char *err,
                        size_t errlen);
typedef void (*journal_split_cb)(void *arg, int status,
                                 struct journal_batch *first,
                                 struct journal_batch *second, const char *err);
int journal_batch_split_async(struct journal *j, const char *id, int64_t at,
                              journal_split_cb cb, void *arg);

/* --------------------------------------------------- lost partitions */

struct journal_drop_result {
    int64_t dropped; /* events deleted */
    int64_t dropped_bytes;
    int64_t kept_batched; /* events beyond after_offset kept because they
                             are already in a batch (reported, INV-3) */
    int64_t high_offset;  /* partition's high offset afterwards */
};

/*
 * INV-3: this instance lost (topic, partition); the group's committed
 * offset is after_offset + 1. Deletes the journaled, never-batched events
 * with offset > after_offset (the new owner delivers them) and lowers the
 * partition's high offset accordingly; events already in a batch are kept
 * and counted in kept_batched. *res may be NULL.
 */
int journal_drop_partition(struct journal *j, const char *topic,
                           int32_t partition, int64_t after_offset,
                           struct journal_drop_result *res, char *err,
                           size_t errlen);
typedef void (*journal_drop_cb)(void *arg, int status,
                                const struct journal_drop_result *res,
                                const char *err);
int journal_drop_partition_async(struct journal *j, const char *topic,
                                 int32_t partition, int64_t after_offset,
                                 journal_drop_cb cb, void *arg);

/* ---------------------------------------------------------------- epochs */

/*
 * Starts a new offset epoch of (topic, partition) (the partition went
 * backwards: topic recreated, cluster rebuilt, log truncated). The current
 * row is sealed: its remaining events are batched without a settled limit,
 * so the caller drops its unsettled ones first (journal_drop_partition,
 * queued before this: requests run in order). The new epoch's duplicate
 * filter and batch cursor start at start_offset - 1 (INV-2 holds within an
 * epoch). route is used only when the partition has no row yet. *epoch
 * (may be NULL) = the new epoch number. The async form reports it as the
 * callback's count.
 */
int journal_new_epoch(struct journal *j, const char *topic, int32_t partition,
                      int route, int64_t start_offset, int64_t *epoch,
                      char *err, size_t errlen);

/* ------------------------------------------------------------ retention */

/*
 * INV-8: deletes, in ONE short transaction, at most max_chunks stored
 * chunks (each one fetched partition batch) whose events are ALL delivered
 * and which were appended before cutoff_ms (wall clock ms). Never touches a
 * chunk holding a pending, in-flight or dead event. *deleted (may be NULL)
 * = events deleted; call again while it is > 0 to retire more (the daemon
 * calls the async form from a timer, e.g. 64 chunks per call).
 */
int journal_retire(struct journal *j, int64_t cutoff_ms, int max_chunks,
                   int64_t *deleted, char *err, size_t errlen);
typedef void (*journal_count_cb)(void *arg, int status, int64_t count,
                                 const char *err);
int journal_new_epoch_async(struct journal *j, const char *topic,
                            int32_t partition, int route, int64_t start_offset,
                            journal_count_cb cb, void *arg);
int journal_retire_async(struct journal *j, int64_t cutoff_ms, int max_chunks,
                         journal_count_cb cb, void *arg);

/*
 * Operator purge (`kadx recover purge`): journal_retire in a loop (many
 * short transactions of 256 chunks) until no retirable chunk before
 * cutoff_ms remains. Deletes delivered events only. *deleted = events
 * deleted (may be NULL).
 */
int journal_purge_delivered(struct journal *j, int64_t cutoff_ms,
                            int64_t *deleted, char *err, size_t errlen);

/* ------------------------------------------------- Schema Registry cache */

/*
 * Keeps the schema of (registry URL, id) (type "AVRO" or "JSON", the text
 * as the registry served it) so that journaled records decode after a
 * restart with the registry down. Written once: a second put of the same
 * key is ignored (n = 0 rows added). Sync and async flavours as above.
 */
int journal_schema_put(struct journal *j, const char *registry, int64_t id,
                       const char *type, const char *schema, int64_t now_ms,
                       char *err, size_t errlen);
int journal_schema_put_async(struct journal *j, const char *registry,
                             int64_t id, const char *type, const char *schema,
                             int64_t now_ms, journal_count_cb cb, void *arg);
/*
 * Reads it back: 0 with *type and *schema (owned: free()), -ENOENT when not
 * kept, or another negative errno. A read (any thread).
 */
int journal_schema_get(struct journal *j, const char *registry, int64_t id,
                       char **type, char **schema, char *err, size_t errlen);

/* --------------------------------------------------------- dead letters */

struct journal_dead {
    int64_t id; /* dead-letter id (> 0), stable */
    int route;
    char *topic; /* owned by the list */
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    int64_t dead_ms;
    char batch_id[JOURNAL_BATCH_ID_MAX]; /* the batch it died in */
    char *reason;                        /* owned by the list */
    size_t value_len;
};

/*
 * One page of dead letters with id > after_id, ascending, at most limit
 * (<= 10000), route -1 = all. *list owned by the caller
 * (journal_dead_list_free(*list, *n)). *total (may be NULL) = all dead
 * letters matching route.
 */
int journal_dead_list(struct journal *j, int route, int64_t after_id,
                      size_t limit, struct journal_dead **list, size_t *n,
                      int64_t *total, char *err, size_t errlen);
void journal_dead_list_free(struct journal_dead *list, size_t n);

/*
 * Requeues dead letters: id > 0 = that one; else all of `route` (-1 = all
 * routes). They leave the dead set and go into new unclaimed PENDING
 * batches (flag REQUEUE, at most max_rows events each) that
 * journal_batch_cut hands out. *requeued (may be NULL) = events requeued.
 * -ENOENT when id > 0 is unknown. Safe to run twice.
 */
int journal_dead_requeue(struct journal *j, int route, int64_t id,
                         int64_t max_rows, int64_t *requeued, char *err,
                         size_t errlen);
int journal_dead_requeue_async(struct journal *j, int route, int64_t id,
                               int64_t max_rows, journal_count_cb cb,
                               void *arg);

/* --------------------------------------------------------------- replay */

struct journal_replay_req {
    int route;
    const char *topic;              /* NULL = every topic of the route */
    int32_t partition;              /* -1 = every partition */
    int64_t from_offset, to_offset; /* inclusive; -1 = unbounded */
    int64_t from_ts_ms, to_ts_ms;   /* Kafka timestamps, inclusive;
                                       -1 = unbounded */
    int64_t max_rows, max_bytes;    /* per batch, > 0 */
};

/*
 * Admin replay: creates new unclaimed PENDING batches (flag REPLAY) from
 * DELIVERED, still retained events of the route matching the ranges;
 * journal_batch_cut hands them out. Events not yet delivered are not
 * included (they will be delivered anyway). *nevents / *nbatches (may be
 * NULL) say how much was queued. req copied.
 */
int journal_replay(struct journal *j, const struct journal_replay_req *req,
                   int64_t *nevents, int64_t *nbatches, char *err,
                   size_t errlen);
typedef void (*journal_replay_cb)(void *arg, int status, int64_t nevents,
                                  int64_t nbatches, const char *err);
int journal_replay_async(struct journal *j,
                         const struct journal_replay_req *req,
                         journal_replay_cb cb, void *arg);

/* ------------------------------------------------------------ disk space */

/*
 * Space awareness (INV-7 on a full disk; storage/README.md "The byte cap
 * and a full disk"). With options.reserve_bytes > 0 the writer measures the
 * filesystem (statvfs of the journal's directory, the sizes of the database
 * and its -wal) before each group transaction, and an append is refused
 * (-ENOSPC, "journal full (disk): ...") when
 *
 *     used pages after it + bytes appended by its group so far
 *         > effective cap = min(max_bytes, free + file - reserve)
 *
 * "free" is what the filesystem still grants (f_bavail), "file" the
 * database file: the journal may fill its own file's free pages and the
 * disk's free space, minus the reserve; the group's bytes are counted twice
 * because they go to the WAL before a checkpoint copies them into the file.
 * So the reserve stays free for what drains the journal: cut, mark and
 * retire transactions (which are never refused for space), checkpoints and
 * the settled-offsets file.
 */
/* Why appends are refused. Set by a refused append; cleared by the first
 * commit (of any write) after which the pages in use are at or below 3/4
 * of that cap (hysteresis: no flapping while a full journal refills freed
 * pages). */
enum journal_full {
    JOURNAL_FULL_NO = 0, /* appends go through (or none yet) */
    JOURNAL_FULL_CAP,    /* the last append hit max_bytes */
    JOURNAL_FULL_DISK,   /* the last append hit the effective cap set by
                            the disk, or SQLITE_FULL */
};

struct journal_space {
    int64_t checked_ms;    /* wall clock of the filesystem measure */
    int64_t fs_bytes;      /* filesystem size (f_blocks * f_frsize) */
    int64_t fs_free_bytes; /* what it still grants us (f_bavail) */
    int64_t file_bytes;    /* database file */
    int64_t wal_bytes;     /* -wal file */
    int64_t used_bytes;    /* pages in use (the cap's measure), last commit */
    int64_t max_bytes;     /* configured cap (0 = none) */
    int64_t reserve_bytes; /* 0 = space awareness off */
    int64_t effective_cap; /* journal_effective_cap() of the above */
    int disk_limited;      /* 1 when the disk, not max_bytes, sets the cap */
    enum journal_full full;
};

/*
 * The cap arithmetic, pure: min(max_bytes, fs_free + file - reserve),
 * never below 0. max_bytes 0 = no configured cap; reserve 0 = the disk is
 * not considered (returns max_bytes, or INT64_MAX with no cap).
 * *disk_limited (may be NULL) = 1 when the disk term is the smaller.
 */
int64_t journal_effective_cap(int64_t max_bytes, int64_t fs_free_bytes,
                              int64_t file_bytes, int64_t reserve_bytes,
                              int *disk_limited);

/*
 * Fills *out from a fresh statvfs/stat of the journal's files and the
 * writer's last measure of the pages in use. Any thread; cheap (three
 * system calls). Without space awareness fs_* are still measured, the cap
 * is max_bytes.
 */
void journal_space(struct journal *j, struct journal_space *out);

/*
 * The same for a journal that is not open (kadx run --check): measures the
 * filesystem that holds (or would hold) `path`, with used_bytes = the
 * current file size. -errno and err when the directory cannot be
 * measured.
 */
int journal_space_probe(const char *path, int64_t max_bytes,
                        int64_t reserve_bytes, struct journal_space *out,
                        char *err, size_t errlen);

/*
 * Space pressure, pure: 1 when the journal uses 3/4 of its effective cap
 * or more, or its last append was refused for space. Retention then
 * yields: delivered events are retired early (journal_retire_to).
 * *target (may be NULL) = the used bytes early retirement aims for (half
 * the effective cap).
 */
int journal_space_pressure(const struct journal_space *s, int64_t *target);

/*
 * Early retirement under space pressure (INV-8 still holds: only chunks
 * whose events are all delivered and no unfinished batch references):
 * like journal_retire, oldest first, but stops as soon as the pages in use
 * are at or below target_used_bytes. cutoff_ms is the youngest append time
 * that may go (now - journal.min_retention_ms). *deleted (may be NULL) =
 * events deleted.
 */
int journal_retire_to(struct journal *j, int64_t cutoff_ms,
                      int64_t target_used_bytes, int max_chunks,
                      int64_t *deleted, char *err, size_t errlen);
int journal_retire_to_async(struct journal *j, int64_t cutoff_ms,
                            int64_t target_used_bytes, int max_chunks,
                            journal_count_cb cb, void *arg);

/* ----------------------------------------------------------------- stats */

struct journal_partition_stats {
    int route;   /* route of its latest events */
    char *topic; /* owned by the stats */
    int32_t partition;
    int64_t high_offset;    /* highest journaled offset, -1 none */
    int64_t batched_offset; /* every event <= it is in a batch, -1 none */
    int64_t pending_count, pending_bytes;     /* not in any batch */
    int64_t inflight_count, inflight_bytes;   /* in unfinished batches */
    int64_t delivered_count, delivered_bytes; /* retained for replay */
    int64_t dead_count, dead_bytes;
    int64_t oldest_pending_ms; /* append time of the oldest pending or
                                  in-flight event, 0 when none */
    int64_t epoch;       /* offset epoch (0 = the first; journal_new_epoch) */
    int sealed;          /* 1: an older epoch (no more appends) */
    int64_t epoch_start; /* first offset of the epoch, -1 for epoch 0 */
};

struct journal_stats {
    size_t nparts;
    struct journal_partition_stats *parts; /* by route,topic,part,epoch */
    int64_t file_bytes;                    /* database file size */
    int64_t wal_bytes;                     /* -wal file size */
    int64_t wal_truncates; /* WAL cut back on a disk short of the reserve */
    int64_t max_bytes;     /* the cap, 0 = none */
    int64_t pending_bytes; /* = journal_pending_bytes() */
    int64_t batches_unfinished;
    int64_t chunks;              /* stored chunk rows */
    int64_t oldest_delivered_ms; /* append time of the oldest retained
                                    chunk whose events are all delivered
                                    (the replay window kept), 0 = none */
};

/* Read connection. Release with journal_stats_release. */
int journal_stats(struct journal *j, struct journal_stats *out, char *err,
                  size_t errlen);
void journal_stats_release(struct journal_stats *s);

/* ------------------------------------------------------- export/iterate */

enum journal_event_state {
    JOURNAL_EV_PENDING = 0, /* journaled, in no batch */
    JOURNAL_EV_INFLIGHT,    /* in an unfinished batch */
    JOURNAL_EV_DELIVERED,
    JOURNAL_EV_DEAD,
};
const char *journal_event_state_name(enum journal_event_state s);

#define JOURNAL_SEL_PENDING   (1 << JOURNAL_EV_PENDING)
#define JOURNAL_SEL_INFLIGHT  (1 << JOURNAL_EV_INFLIGHT)
#define JOURNAL_SEL_DELIVERED (1 << JOURNAL_EV_DELIVERED)
#define JOURNAL_SEL_DEAD      (1 << JOURNAL_EV_DEAD)
#define JOURNAL_SEL_UNDELIVERED                                                \
    (JOURNAL_SEL_PENDING | JOURNAL_SEL_INFLIGHT | JOURNAL_SEL_DEAD)
#define JOURNAL_SEL_ALL 0xf

struct journal_iter_req {
    int states;                     /* JOURNAL_SEL_* mask */
    int route;                      /* -1 = all */
    const char *topic;              /* NULL = all */
    int32_t partition;              /* -1 = all */
    int64_t from_offset, to_offset; /* inclusive, -1 = unbounded */
};

/*
 * Called per event; ev and dead_reason (NULL unless dead) are valid during
 * the call only. Return 0 to go on; anything else stops the iteration and
 * becomes journal_iterate's return value.
 */
typedef int (*journal_iter_cb)(void *arg, const struct journal_event *ev,
                               enum journal_event_state state,
                               const char *dead_reason);

/* Recovery tool export: events in (topic, partition, offset) order. Read
 * connection. */
int journal_iterate(struct journal *j, const struct journal_iter_req *req,
                    journal_iter_cb cb, void *arg, char *err, size_t errlen);

/* ------------------------------------------- reads for the admin API */
/* storage/journal_read.c: read connection, any thread. */

/* Per partition: every stored event at or below delivered_offset is
 * delivered or dead (-1 = none yet). */
struct journal_delivered {
    char *topic; /* owned by the array */
    int32_t partition;
    int64_t delivered_offset;
};

/* Read connection; *out owned (journal_delivered_free). */
int journal_delivered_offsets(struct journal *j, struct journal_delivered **out,
                              size_t *n, char *err, size_t errlen);
void journal_delivered_free(struct journal_delivered *d, size_t n);

/* A member range of a delivered batch. */
struct journal_piece {
    char *topic; /* owned by the batch list */
    int32_t partition;
    int64_t first_offset, last_offset;
};

/* A delivered batch (replays included) and its member ranges that overlap
 * the asked range. */
struct journal_dbatch {
    char id[64];
    int flags;     /* JOURNAL_BATCH_* */
    int64_t count; /* live members when it was delivered */
    size_t npieces;
    struct journal_piece *pieces;
};

/*
 * The DELIVERED batches of route whose members overlap (topic, partition,
 * from_offset..to_offset) (NULL / -1 = unbounded), oldest first: the input
 * of the admin API's replay "missing" (a reconcile against ADX). Read
 * connection; *out owned (journal_dbatches_free).
 */
int journal_delivered_batches(struct journal *j, int route, const char *topic,
                              int32_t partition, int64_t from_offset,
                              int64_t to_offset, struct journal_dbatch **out,
                              size_t *n, char *err, size_t errlen);
void journal_dbatches_free(struct journal_dbatch *b, size_t n);

/*
 * The journal's lock protocol, for storage/recover_raw.c too: takes an
 * open file description lock on lock_path ("<path>.lock"), F_WRLCK (the
 * writer stores its PID there) or, read_only, F_RDLCK. Returns 0 and
 * *fd_out (close it to release), -EBUSY naming the holder's PID when
 * another process holds it, or -errno; err names path.
 */
int journal_lock_file(const char *path, const char *lock_path, int read_only,
                      int *fd_out, char *err, size_t errlen);

/* ------------------------------------------------------- direct SQL */

struct sqlite3;
/*
 * For storage/recover*.c and journal_read.c only: runs fn(arg, db) on the READ
 * connection (read-only queries; the schema is in storage/README.md) while
 * holding the read mutex, and returns what fn returns. db is valid during fn
 * only.
 */
int journal_with_read_db(struct journal *j,
                         int (*fn)(void *arg, struct sqlite3 *db), void *arg);

#endif
