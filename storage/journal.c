/*
 * journal.c - the durable journal: one SQLite database in WAL mode between
 * Kafka and ADX. It owns the database file, its lock file, two SQLite
 * connections (the writer's and a read connection) and one writer thread.
 * journal_open/journal_close run on the owner's thread (the libuv loop in
 * the gateway); every write transaction runs on the writer thread; reads
 * run on the calling thread under a mutex; async completions run on the
 * loop through a uv_async_t.
 *
 * Why chunks. DESIGN.md asks for >= 400k events/s durable on two cores,
 * appended, read, marked and retired. One row per event tops out near 300k
 * inserts/s before any reading, marking or deleting, so the unit of storage
 * is the CHUNK: the events of one (topic, partition) appended by one request
 * (typically one Kafka fetch), packed in one BLOB (storage/chunk.h) with the
 * chunk's first/last offset, count and value bytes beside it. An append of
 * a fetch of 10k events is one INSERT; delivery, dead letters and retention
 * are tracked by offset ranges and per-chunk counters, never per event
 * rows. The ceiling moves from SQLite's row rate to the disk's MB/s.
 *
 * Schema (user_version 4; numbered migrations in `migrations[]`):
 *
 *   meta(key TEXT PRIMARY KEY, value)
 *       'uuid'    the journal's UUID (batch ids are "<uuid>-<seq>")
 *       'session' incremented at every read-write open: batch claims
 *   partitions(id INTEGER PRIMARY KEY, topic, partition, route,
 *              high_offset, batched_offset, pending_count, pending_bytes,
 *              epoch, sealed, epoch_start, UNIQUE(topic, partition, epoch))
 *       One row per offset EPOCH of (topic, partition): when a partition
 *       starts again below its high_offset (topic recreated, cluster
 *       rebuilt), journal_new_epoch seals the row (its events are still
 *       batched and delivered, all of them settled) and inserts epoch + 1
 *       with its own high_offset and cursor, from epoch_start - 1. Only the
 *       unsealed row (one per partition) takes appends, drops and the
 *       INV-2 filter.
 *       high_offset: highest offset ever journaled (duplicate filter, INV-2;
 *       lowered only by journal_drop_partition). batched_offset: the batch
 *       cursor: every journaled event <= it is (or was) in a batch, every
 *       event above it is PENDING. pending_*: events above the cursor.
 *   chunks(id INTEGER PRIMARY KEY, part_id, route, first_offset,
 *          last_offset, count, bytes, undone, undone_bytes, dead,
 *          dead_bytes, cut, appended_ms, ts_min, ts_max)
 *       id order is append order. bytes = sum of value lengths. undone =
 *       events neither delivered nor dead (pending + in flight); dead =
 *       events in the dead-letter set; delivered = count - undone - dead.
 *       cut = 1 once last_offset <= the partition's batched_offset.
 *   chunk_data(id INTEGER PRIMARY KEY, data BLOB)
 *       the chunk's events (storage/chunk.c), under the chunk's id: apart,
 *       so that the counters' UPDATEs never read or rewrite them.
 *   batches(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, route, flags, state,
 *           parent_id, attempts, created_ms, first_sent_ms, last_sent_ms,
 *           next_try_ms, last_error, count, bytes, claim)
 *   pieces(batch_seq, chunk_id, part_id, first_offset, last_offset, count,
 *          bytes)
 *       A batch's members are pieces: a run of consecutive events of ONE
 *       chunk (first..last inclusive, no member of the chunk skipped inside
 *       the run). Pieces always describe exactly the live members, so a
 *       dead-lettered member is cut out of its piece when it dies.
 *   dead(id INTEGER PRIMARY KEY, part_id, chunk_id, offset, route,
 *        batch_id, reason, dead_ms, timestamp_ms, value_len)
 *       the dead-letter set, one row per dead event (they are rare).
 *
 * Event states follow from this without per-event rows: PENDING = offset
 * above the partition's batched_offset; DEAD = a dead row; IN FLIGHT = in a
 * piece of an unfinished (pending/sent/failed), non-replay batch;
 * DELIVERED = everything else still stored.
 *
 * The invariants this file keeps:
 *  INV-1 durable before commit: journal_append returns (or its callback
 *    runs) only after COMMIT returned with synchronous=FULL (WAL fsync'd);
 *    the result's high_offset is what the consumer may commit.
 *  INV-2 idempotent intake: an event at or below its partition's
 *    high_offset is a duplicate: not stored, counted.
 *  INV-3 settled before sent: a batch takes only events at or below the
 *    settled offset the caller gives; journal_drop_partition removes the
 *    never-batched events of a lost partition (batched ones are reported).
 *  INV-4 batches are durable before the first send: journal_batch_cut
 *    commits the batch row and its pieces before returning it; a load
 *    returns the same pieces, so a resend has the same id and rows.
 *  INV-5 delivered only on a definite yes: only mark_delivered moves
 *    events to delivered; after a restart every unfinished batch is
 *    unclaimed and handed out again with its state (SENT = ambiguous).
 *  INV-6 nothing dropped silently: split replaces a batch by two children
 *    atomically; dead-lettered events keep a reason and stay until
 *    requeued or purged.
 *  INV-7 bounded, not lossy: an append whose transaction would make the
 *    used pages ((page_count - freelist_count) * page_size) exceed
 *    max_bytes, or that hits SQLITE_FULL, is rolled back whole: -ENOSPC.
 *  INV-8 retention deletes only chunks whose events are all delivered
 *    (undone = 0, dead = 0) and that no unfinished batch references, in
 *    short transactions of a few chunks.
 *
 * Group commit. Requests queue on the writer; the writer takes everything
 * queued, runs it in ONE transaction, each request inside its own
 * SAVEPOINT (a failing request rolls back alone), and COMMITs once: one
 * fsync for the group. Requests run in queue order (FIFO), which intake
 * relies on.
 */
#include "storage/journal.h"
#include "base/array.h"
#include "base/clock.h"
#include "base/err.h"
#include "storage/chunk.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define ERR_MAX        256
#define LAST_ERROR_MAX 1024
#define REASON_MAX     1024
#define GROUP_MAX_REQS 4096

/* ---------------------------------------------------------------- utils */

static void clear_err(char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
}

static int sql_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    default:
        return -EIO;
    }
}

/* Turns the last SQLite failure on db into -errno + message. */
static int sql_fail(sqlite3 *db, int rc, const char *what, char *err,
                    size_t errlen)
{
    int e = sql_errno(rc);

    if (e == -ENOSPC) {
        set_err(err, errlen, "journal full (disk): %s: %s", what,
                sqlite3_errmsg(db));
    } else {
        set_err(err, errlen, "journal %s: %s", what, sqlite3_errmsg(db));
    }
    return e;
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err,
                size_t errlen)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);

    if (rc != SQLITE_OK) {
        *st = NULL;
        return sql_fail(db, rc, "prepare", err, errlen);
    }
    return 0;
}

/* Runs one statement without results. */
static int exec1(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "exec", err, errlen);
    }
    return 0;
}

/* Steps a statement expected to finish (no row); resets it. */
static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, char *err,
                     size_t errlen)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(db, rc, what, err, errlen);
    }
    return 0;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void *xmemdup(const void *s, size_t n)
{
    void *p = malloc(n > 0 ? n : 1);

    if (p != NULL && n > 0) {
        memcpy(p, s, n);
    }
    return p;
}

/* ------------------------------------------------------------- requests */

enum op {
    OP_APPEND,
    OP_CUT,
    OP_SENT,
    OP_DELIVERED,
    OP_FAILED,
    OP_DEAD,
    OP_SPLIT,
    OP_DROP,
    OP_RETIRE,
    OP_REQUEUE,
    OP_REPLAY,
    OP_EPOCH,
    OP_SCHEMA,
};

/*
 * One write request. Made by the submitting thread, run by the writer,
 * completed on the loop (async) or in the waiting thread (sync). Inputs are
 * owned copies for async requests (`arena`), borrowed for sync ones.
 */
struct req {
    struct req *next;
    enum op op;
    int sync;
    int done; /* sync: set under j->mu when finished */
    int status;
    char err[ERR_MAX];
    void (*cb)(void);
    void *arg;

    /* inputs */
    const struct journal_event *ev;
    size_t nev;
    char id[JOURNAL_BATCH_ID_MAX];
    int64_t now_ms;
    int64_t i1; /* next_try_ms / at / after_offset / cutoff / id */
    int64_t i2; /* max_chunks / max_rows */
    int64_t i3; /* retire: target used bytes (0 = none) */
    int route;
    const char *text; /* error text / reason / topic */
    int32_t partition;
    const struct journal_offset *refs;
    size_t nrefs;
    struct journal_cut_req cut;
    struct journal_replay_req replay;
    void *arena; /* owned copies of async inputs */

    /* outputs */
    struct journal_append_result ares;
    struct journal_batch *b1, *b2;
    struct journal_drop_result dres;
    int64_t n1, n2;
    int64_t pending_delta; /* change of j->pending_bytes once committed */
};

/* Cached statements of the writer's hot path (append). */
struct wstmts {
    sqlite3_stmt *sel_part, *ins_part, *upd_part, *ins_chunk, *ins_data,
        *page_count, *freelist;
};

struct journal {
    char *path;
    char *lock_path;
    char uuid[40];
    char perm_warning[512]; /* "" or files found with group/other bits */
    int read_only;
    int sync_full;
    int64_t max_bytes;
    int64_t session;
    int lock_fd;

    sqlite3 *wdb; /* writer thread only (after open) */
    struct wstmts ws;
    struct chunk_buf wbuf; /* writer thread: packing buffer */
    int64_t next_seq;      /* writer thread: next batch seq */

    sqlite3 *rdb; /* read connection, under rmu */
    pthread_mutex_t rmu;

    pthread_t writer;
    int writer_started;
    pthread_mutex_t mu;     /* queue, done list, flags */
    pthread_cond_t cv;      /* writer wake-up */
    pthread_cond_t done_cv; /* sync completions */
    struct req *qhead, *qtail;
    int stopping;
    struct req *dhead, *dtail; /* async completions for the loop */

    uv_loop_t *loop;
    uv_async_t async;
    int async_init;

    int64_t pending_bytes; /* atomic (__atomic builtins) */

    /* space awareness (journal_space): reserve_bytes is fixed at open;
     * space_cap and group_bytes belong to the writer thread; used_last and
     * full are written by the writer and read anywhere (atomics) */
    int64_t reserve_bytes;
    int busy_ms;           /* the connections' busy timeout */
    int64_t wal_truncates; /* space_wal_truncate() that went through */
    int64_t space_cap;     /* effective cap measured at the group's start */
    int64_t group_bytes;   /* bytes appended by the running group so far */
    int64_t used_last;     /* pages in use after the last commit */
    int full;              /* enum journal_full of the last append */
    int64_t fs_size_fake;  /* options.fs_size_bytes (tests) */
};

static void req_free(struct req *r);

/* --------------------------------------------------------- permissions */

/*
 * The journal holds every event's payload: its files are the owner's only.
 * Each file kadx creates is opened with mode 0600 (the lock file here, the
 * database pre-created by create_private before SQLite opens it). SQLite
 * gives its -wal and -shm files the mode of the database file (unix VFS,
 * findCreateFileMode and unixOpenSharedMemory), so they are 0600 too,
 * whatever the umask; kadx's main() also sets umask 077.
 *
 * Files that already exist are left as they are (an operator may have
 * widened them on purpose) but named in perm_warning, which the caller logs.
 */
static void perm_check(struct journal *j, const char *suffix)
{
    char p[4096];
    struct stat sb;
    size_t used = strlen(j->perm_warning);

    if ((size_t)snprintf(p, sizeof(p), "%s%s", j->path, suffix) >= sizeof(p) ||
        stat(p, &sb) < 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 077) == 0) {
        return;
    }
    snprintf(j->perm_warning + used, sizeof(j->perm_warning) - used,
             "%s'%s' has mode %04o", used > 0 ? ", " : "", p,
             (unsigned)(sb.st_mode & 07777));
}

static int create_private(struct journal *j, char *err, size_t errlen)
{
    int fd = open(j->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "cannot open journal '%s': %s", j->path,
                strerror(e));
        return -e;
    }
    close(fd);
    return 0;
}

const char *journal_permission_warning(const struct journal *j)
{
    return j->perm_warning[0] != '\0' ? j->perm_warning : NULL;
}

/* ----------------------------------------------------------- lock file */

/*
 * Open file description locks (F_OFD_SETLK): per open, so a second open in
 * the same process conflicts too, and released by the kernel when the
 * process dies (a SIGKILLed gateway leaves no stale lock). The writer
 * stores its PID in the file so the refusal can name it.
 */
int journal_lock_file(const char *path, const char *lock_path, int read_only,
                      int *fd_out, char *err, size_t errlen)
{
    struct flock fl;
    char buf[32];
    int fd;

    *fd_out = -1;
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 && read_only) {
        fd = open(lock_path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "cannot open lock file '%s': %s", lock_path,
                strerror(e));
        return -e;
    }
    memset(&fl, 0, sizeof(fl));
    fl.l_type = read_only ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        long pid = 0;

        if (n > 0) {
            buf[n] = '\0';
            pid = strtol(buf, NULL, 10);
        }
        if (pid > 0) {
            set_err(err, errlen, "journal '%s' is in use by process %ld", path,
                    pid);
        } else {
            set_err(err, errlen,
                    "journal '%s' is in use by another process (read-only)",
                    path);
        }
        close(fd);
        return -EBUSY;
    }
    if (!read_only) {
        int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) < 0) {
            int e = errno;
            set_err(err, errlen, "cannot write lock file '%s': %s", lock_path,
                    strerror(e));
            close(fd);
            return -e;
        }
    }
    *fd_out = fd;
    return 0;
}

static int lock_take(struct journal *j, char *err, size_t errlen)
{
    return journal_lock_file(j->path, j->lock_path, j->read_only, &j->lock_fd,
                             err, errlen);
}

/* -------------------------------------------------------------- schema */

static const char *const migrations[] = {
    /* 1: the chunked layout (see the essay above) */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE partitions("
    " id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,"
    " route INTEGER NOT NULL, high_offset INTEGER NOT NULL,"
    " batched_offset INTEGER NOT NULL, pending_count INTEGER NOT NULL,"
    " pending_bytes INTEGER NOT NULL, UNIQUE(topic, partition));"
    "CREATE TABLE chunks("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, part_id INTEGER NOT NULL,"
    " route INTEGER NOT NULL, first_offset INTEGER NOT NULL,"
    " last_offset INTEGER NOT NULL, count INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL, undone INTEGER NOT NULL,"
    " undone_bytes INTEGER NOT NULL, dead INTEGER NOT NULL,"
    " dead_bytes INTEGER NOT NULL, cut INTEGER NOT NULL,"
    " appended_ms INTEGER NOT NULL, ts_min INTEGER NOT NULL,"
    " ts_max INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE INDEX chunks_part ON chunks(part_id, first_offset);"
    "CREATE INDEX chunks_uncut ON chunks(route, id) WHERE cut = 0;"
    "CREATE INDEX chunks_done ON chunks(appended_ms)"
    " WHERE undone = 0 AND dead = 0;"
    "CREATE TABLE batches("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " route INTEGER NOT NULL, flags INTEGER NOT NULL,"
    " state INTEGER NOT NULL, parent_id TEXT NOT NULL DEFAULT '',"
    " attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
    " first_sent_ms INTEGER NOT NULL DEFAULT 0,"
    " last_sent_ms INTEGER NOT NULL DEFAULT 0,"
    " next_try_ms INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
    " count INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " claim INTEGER NOT NULL);"
    "CREATE INDEX batches_open ON batches(route, seq) WHERE " JOURNAL_SQL_OPEN
    ";"
    "CREATE TABLE pieces("
    " batch_seq INTEGER NOT NULL, chunk_id INTEGER NOT NULL,"
    " part_id INTEGER NOT NULL, first_offset INTEGER NOT NULL,"
    " last_offset INTEGER NOT NULL, count INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL);"
    "CREATE INDEX pieces_batch ON pieces(batch_seq);"
    "CREATE INDEX pieces_chunk ON pieces(chunk_id);"
    "CREATE TABLE dead("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, part_id INTEGER NOT NULL,"
    " chunk_id INTEGER NOT NULL, offset INTEGER NOT NULL,"
    " route INTEGER NOT NULL, batch_id TEXT NOT NULL, reason TEXT NOT NULL,"
    " dead_ms INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,"
    " value_len INTEGER NOT NULL);"
    "CREATE INDEX dead_chunk ON dead(chunk_id, offset);"
    "CREATE INDEX dead_route ON dead(route, id);",
    /* 2: offset epochs. A partition that starts again below its high
     * offset (topic recreated, cluster rebuilt) gets a new row (epoch + 1)
     * and the old one is sealed: its events are still delivered, the new
     * row has its own duplicate filter and batch cursor. The table is
     * rebuilt because UNIQUE(topic, partition) becomes (.., epoch). */
    "CREATE TABLE partitions_v2("
    " id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,"
    " route INTEGER NOT NULL, high_offset INTEGER NOT NULL,"
    " batched_offset INTEGER NOT NULL, pending_count INTEGER NOT NULL,"
    " pending_bytes INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0,"
    " sealed INTEGER NOT NULL DEFAULT 0, epoch_start INTEGER NOT NULL"
    " DEFAULT -1, UNIQUE(topic, partition, epoch));"
    "INSERT INTO partitions_v2(id, topic, partition, route, high_offset,"
    " batched_offset, pending_count, pending_bytes)"
    " SELECT id, topic, partition, route, high_offset, batched_offset,"
    " pending_count, pending_bytes FROM partitions;"
    "DROP TABLE partitions;"
    "ALTER TABLE partitions_v2 RENAME TO partitions;"
    "CREATE UNIQUE INDEX partitions_current ON partitions(topic, partition)"
    " WHERE sealed = 0;",
    /* 3: Schema Registry schemas by (registry URL, id), so that journaled
     * Avro / JSON Schema records still decode after a restart with the
     * registry down (gateway/REGISTRY.md). A registry never changes the
     * schema of an id: rows are written once, never updated. */
    "CREATE TABLE schemas(registry TEXT NOT NULL, id INTEGER NOT NULL,"
    " type TEXT NOT NULL, schema TEXT NOT NULL, fetched_ms INTEGER NOT NULL,"
    " PRIMARY KEY(registry, id)) WITHOUT ROWID;",
    /* 4: a chunk's events in a table of their own. Marking a chunk cut or
     * delivered changed only its counters, but SQLite rewrites a whole
     * row on UPDATE: every mark read the blob back and, when a counter's
     * size changed, wrote all of it to the WAL again (and the checkpoint
     * once more): 37% of the writer thread's CPU in a bulk run. */
    "CREATE TABLE chunk_data(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "INSERT INTO chunk_data(id, data) SELECT id, data FROM chunks;"
    "ALTER TABLE chunks DROP COLUMN data;",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static void make_uuid(char out[40])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = 0;

    if (f != NULL) {
        got = fread(b, 1, sizeof(b), f);
        fclose(f);
    }
    if (got != sizeof(b)) {
        uint64_t x = (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(b); i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            b[i] = (unsigned char)(x >> 56);
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 40,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

static int query_i64(sqlite3 *db, const char *sql, int64_t *out, char *err,
                     size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(db, sql, &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = 0;
    } else {
        rc = sql_fail(db, rc, "query", err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs the migrations from the file's user_version up, creates meta rows
 * and bumps the session. Writer connection, at open. */
static int migrate(struct journal *j, char *err, size_t errlen)
{
    sqlite3 *db = j->wdb;
    sqlite3_stmt *st = NULL;
    int64_t ver = 0;
    int rc;

    rc = exec1(db, "BEGIN IMMEDIATE", err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = query_i64(db, "PRAGMA user_version", &ver, err, errlen);
    if (rc < 0) {
        goto rollback;
    }
    if (ver > NMIGRATIONS) {
        set_err(err, errlen,
                "journal '%s' has schema version %" PRId64
                ", newer than this kadx (%d)",
                j->path, ver, NMIGRATIONS);
        rc = -EINVAL;
        goto rollback;
    }
    for (int v = (int)ver; v < NMIGRATIONS; v++) {
        char sql[64];

        rc = exec1(db, migrations[v], err, errlen);
        if (rc < 0) {
            goto rollback;
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", v + 1);
        rc = exec1(db, sql, err, errlen);
        if (rc < 0) {
            goto rollback;
        }
    }
    if (ver == 0) {
        make_uuid(j->uuid);
        rc = prep(db, "INSERT INTO meta VALUES('uuid', ?), ('session', 0)", &st,
                  err, errlen);
        if (rc < 0) {
            goto rollback;
        }
        sqlite3_bind_text(st, 1, j->uuid, -1, SQLITE_STATIC);
        rc = step_done(db, st, "meta", err, errlen);
        sqlite3_finalize(st);
        if (rc < 0) {
            goto rollback;
        }
    }
    rc = exec1(db, "UPDATE meta SET value = value + 1 WHERE key = 'session'",
               err, errlen);
    if (rc < 0) {
        goto rollback;
    }
    rc = exec1(db, "COMMIT", err, errlen);
    if (rc < 0) {
        goto rollback;
    }
    return 0;

rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Reads uuid and session (any connection). */
static int load_meta(struct journal *j, sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT key, value FROM meta", &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);

        if (k != NULL && strcmp(k, "uuid") == 0) {
            const char *v = (const char *)sqlite3_column_text(st, 1);
            snprintf(j->uuid, sizeof(j->uuid), "%s", v ? v : "");
        } else if (k != NULL && strcmp(k, "session") == 0) {
            j->session = sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(db, rc, "meta", err, errlen);
    }
    if (j->uuid[0] == '\0') {
        set_err(err, errlen, "journal '%s' has no uuid (not a kadx journal?)",
                j->path);
        return -EINVAL;
    }
    return 0;
}

static int open_db(struct journal *j, const struct journal_options *o,
                   int flags, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(j->path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK) {
        int e = sql_errno(rc);
        set_err(err, errlen, "cannot open journal '%s': %s", j->path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return e;
    }
    j->busy_ms = o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 5000;
    sqlite3_busy_timeout(db, j->busy_ms);
    *out = db;
    return 0;
}

/* ------------------------------------------------------------- batches */

static const char *const batch_state_names[] = {
    "pending", "sent", "failed", "delivered", "dead", "split",
};

const char *journal_batch_state_name(enum journal_batch_state s)
{
    if ((int)s < 0 ||
        (size_t)s >= sizeof(batch_state_names) / sizeof(batch_state_names[0])) {
        return "unknown";
    }
    return batch_state_names[s];
}

static const char *const event_state_names[] = {
    "pending",
    "inflight",
    "delivered",
    "dead",
};

const char *journal_event_state_name(enum journal_event_state s)
{
    if ((int)s < 0 ||
        (size_t)s >= sizeof(event_state_names) / sizeof(event_state_names[0])) {
        return "unknown";
    }
    return event_state_names[s];
}

/* One member event, as the writer's batch operations see it. idx is the
 * event's position in its chunk (pieces are runs of consecutive idx). */
struct item {
    int64_t chunk_id;
    int64_t part_id;
    int64_t idx;
    int64_t offset;
    int64_t bytes;
    int64_t ts;
    int route;
};

struct items {
    struct item *v;
    size_t n, cap;
};

static int items_push(struct items *is, const struct item *it)
{
    if (grow_array((void **)&is->v, &is->cap, is->n + 1, sizeof(*it)) < 0) {
        return -ENOMEM;
    }
    is->v[is->n++] = *it;
    return 0;
}

/* What a batch owns besides its arrays: copies of chunk blobs. */
struct bpriv {
    void **keep;
    size_t n, cap;
    size_t evcap, rcap;
};

static int bpriv_keep(struct journal_batch *b, void *p)
{
    struct bpriv *bp = b->priv_;

    if (p == NULL) {
        return -ENOMEM;
    }
    if (grow_array((void **)&bp->keep, &bp->cap, bp->n + 1, sizeof(void *)) <
        0) {
        free(p);
        return -ENOMEM;
    }
    bp->keep[bp->n++] = p;
    return 0;
}

static void batch_release_fields(struct journal_batch *b)
{
    struct bpriv *bp = b->priv_;

    for (size_t i = 0; i < b->nranges; i++) {
        free(b->ranges[i].topic);
    }
    free(b->ranges);
    free(b->events);
    free(b->last_error);
    if (bp != NULL) {
        for (size_t i = 0; i < bp->n; i++) {
            free(bp->keep[i]);
        }
        free(bp->keep);
        free(bp);
    }
    memset(b, 0, sizeof(*b));
}

void journal_batch_free(struct journal_batch *b)
{
    if (b == NULL) {
        return;
    }
    batch_release_fields(b);
    free(b);
}

void journal_batch_list_free(struct journal_batch *list, size_t n)
{
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        batch_release_fields(&list[i]);
    }
    free(list);
}

#define BATCH_COLS                                                             \
    "seq, id, route, flags, state, parent_id, attempts, created_ms,"           \
    " first_sent_ms, last_sent_ms, next_try_ms, last_error, count, bytes"

static int batch_fill_row(sqlite3_stmt *st, struct journal_batch *b,
                          int64_t *seq)
{
    const char *s;

    memset(b, 0, sizeof(*b));
    b->priv_ = calloc(1, sizeof(struct bpriv));
    if (b->priv_ == NULL) {
        return -ENOMEM;
    }
    *seq = sqlite3_column_int64(st, 0);
    s = (const char *)sqlite3_column_text(st, 1);
    snprintf(b->id, sizeof(b->id), "%s", s ? s : "");
    b->route = sqlite3_column_int(st, 2);
    b->flags = sqlite3_column_int(st, 3);
    b->state = (enum journal_batch_state)sqlite3_column_int(st, 4);
    s = (const char *)sqlite3_column_text(st, 5);
    snprintf(b->parent_id, sizeof(b->parent_id), "%s", s ? s : "");
    b->attempts = sqlite3_column_int(st, 6);
    b->created_ms = sqlite3_column_int64(st, 7);
    b->first_sent_ms = sqlite3_column_int64(st, 8);
    b->last_sent_ms = sqlite3_column_int64(st, 9);
    b->next_try_ms = sqlite3_column_int64(st, 10);
    s = (const char *)sqlite3_column_text(st, 11);
    if (s != NULL) {
        b->last_error = xstrdup(s);
        if (b->last_error == NULL) {
            return -ENOMEM;
        }
    }
    b->count = sqlite3_column_int64(st, 12);
    b->bytes = sqlite3_column_int64(st, 13);
    return 0;
}

/* One row of batch_read_members: the events first..last of a chunk. */
struct piece {
    int64_t chunk_id, part_id, cfirst, first, last;
    int route;
};

/* A chunk's blob read whole (one at a time): grown, reused, then freed. */
struct blobbuf {
    uint8_t *p;
    size_t cap;
};

/* Reads chunk `id`'s blob into bb; *len = its size. */
static int chunk_blob_read(sqlite3 *db, int64_t id, struct blobbuf *bb,
                           size_t *len, char *err, size_t errlen)
{
    sqlite3_blob *bl;
    int rc = sqlite3_blob_open(db, "main", "chunk_data", "data", id, 0, &bl);
    int n;

    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "open chunk blob", err, errlen);
    }
    n = sqlite3_blob_bytes(bl);
    if ((size_t)n > bb->cap) {
        uint8_t *np = realloc(bb->p, (size_t)n);

        if (np == NULL) {
            sqlite3_blob_close(bl);
            return -ENOMEM;
        }
        bb->p = np;
        bb->cap = (size_t)n;
    }
    rc = n > 0 ? sqlite3_blob_read(bl, bb->p, n, 0) : SQLITE_OK;
    sqlite3_blob_close(bl);
    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "read chunk blob", err, errlen);
    }
    *len = (size_t)n;
    return 0;
}

/* Reads bytes [from, from + len) of chunk `id`'s blob into dst. */
static int chunk_blob_range(sqlite3 *db, int64_t id, size_t from, size_t len,
                            uint8_t *dst, char *err, size_t errlen)
{
    sqlite3_blob *bl;
    int rc = sqlite3_blob_open(db, "main", "chunk_data", "data", id, 0, &bl);

    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "open chunk blob", err, errlen);
    }
    rc = len > 0 ? sqlite3_blob_read(bl, dst, (int)len, (int)from) : SQLITE_OK;
    sqlite3_blob_close(bl);
    if (rc != SQLITE_OK) {
        return sql_fail(db, rc, "read chunk blob", err, errlen);
    }
    return 0;
}

/*
 * Adds the events pc->first..pc->last of one chunk to b (and to items).
 * The batch keeps a copy of only the bytes of those events, not of the
 * whole chunk: the reader's state before the first one (offsets and
 * timestamps are deltas) goes on over the copy.
 */
static int piece_events(sqlite3 *db, const struct piece *pc,
                        struct journal_batch *b, const char *topic,
                        int32_t part, struct items *items, struct blobbuf *bb,
                        char *err, size_t errlen)
{
    struct bpriv *bp = b->priv_;
    struct chunk_reader r, at;
    struct chunk_event ce;
    const uint8_t *lo = NULL, *hi = NULL, *pos;
    int64_t idx = 0, idx0 = 0;
    size_t blen = 0;
    uint8_t *copy;
    int n, rc = chunk_blob_read(db, pc->chunk_id, bb, &blen, err, errlen);

    if (rc < 0) {
        return rc;
    }
    chunk_reader_init(&r, bb->p, blen, pc->cfirst);
    for (;;) {
        struct chunk_reader before = r;

        pos = r.p;
        if ((n = chunk_reader_next(&r, &ce)) != 1 || ce.offset > pc->last) {
            break;
        }
        if (ce.offset >= pc->first) {
            if (lo == NULL) {
                lo = pos;
                at = before;
                idx0 = idx;
            }
            hi = r.p;
        }
        idx++;
    }
    if (n < 0) {
        set_err(err, errlen, "journal chunk %" PRId64 " is corrupt",
                pc->chunk_id);
        return -EIO;
    }
    if (lo == NULL) {
        return 0;
    }
    copy = xmemdup(lo, (size_t)(hi - lo));
    rc = bpriv_keep(b, copy);
    if (rc < 0) {
        return rc;
    }
    at.p = copy;
    at.end = copy + (hi - lo);
    for (idx = idx0; (n = chunk_reader_next(&at, &ce)) == 1; idx++) {
        struct journal_event *e;

        if (grow_array((void **)&b->events, &bp->evcap, b->nevents + 1,
                       sizeof(*b->events)) < 0) {
            return -ENOMEM;
        }
        e = &b->events[b->nevents++];
        e->route = pc->route;
        e->topic = topic;
        e->partition = part;
        chunk_event_to_journal(&ce, e);
        if (items != NULL) {
            struct item it = {
                pc->chunk_id,          pc->part_id,     idx,      ce.offset,
                (int64_t)ce.value_len, ce.timestamp_ms, pc->route};

            if (items_push(items, &it) < 0) {
                return -ENOMEM;
            }
        }
    }
    if (n < 0) {
        set_err(err, errlen, "journal chunk %" PRId64 " is corrupt",
                pc->chunk_id);
        return -EIO;
    }
    return 0;
}

/*
 * Reads the pieces of batch `seq` into b: ranges always; with_events also
 * the member events (the bytes of those events copied into b) and, when
 * items is not NULL, the writer's view of each member. The chunk blobs are
 * read after the sort (chunk_blob_read), not selected with the pieces:
 * SQLite's sorter held a copy of every blob of the batch, and the batch a
 * second one of each whole chunk.
 */
static int batch_read_members(sqlite3 *db, int64_t seq, struct journal_batch *b,
                              int with_events, struct items *items, char *err,
                              size_t errlen)
{
    static const char sql[] =
        "SELECT bp.chunk_id, bp.part_id, bp.first_offset, bp.last_offset,"
        " p.topic, p.partition, c.first_offset, c.route"
        " FROM pieces bp JOIN partitions p ON p.id = bp.part_id"
        " JOIN chunks c ON c.id = bp.chunk_id WHERE bp.batch_seq = ?"
        " ORDER BY p.topic, p.partition, bp.first_offset";
    struct bpriv *bp = b->priv_;
    struct blobbuf bb = {NULL, 0};
    sqlite3_stmt *st;
    int rc = prep(db, sql, &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct journal_range *rg;
        const char *topic = (const char *)sqlite3_column_text(st, 4);
        struct piece pc = {
            sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
            sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 2),
            sqlite3_column_int64(st, 3), sqlite3_column_int(st, 7)};

        if (grow_array((void **)&b->ranges, &bp->rcap, b->nranges + 1,
                       sizeof(*b->ranges)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        rg = &b->ranges[b->nranges];
        rg->topic = xstrdup(topic ? topic : "");
        if (rg->topic == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        rg->partition = sqlite3_column_int(st, 5);
        rg->first_offset = pc.first;
        rg->last_offset = pc.last;
        b->nranges++;
        if (with_events) {
            rc = piece_events(db, &pc, b, rg->topic, rg->partition, items, &bb,
                              err, errlen);
            if (rc < 0) {
                goto out;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(db, rc, "read batch", err, errlen);
        goto out;
    }
    rc = 0;
out:
    free(bb.p);
    sqlite3_finalize(st);
    return rc;
}

/* Loads the row of batch `id` (no ranges, no events) into a new *out;
 * *seq its seq. -ENOENT when unknown. */
static int batch_read_row(sqlite3 *db, const char *id,
                          struct journal_batch **out, int64_t *seq, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st;
    struct journal_batch *b;
    int rc;

    *out = NULL;
    rc = prep(db, "SELECT " BATCH_COLS " FROM batches WHERE id = ?", &st, err,
              errlen);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        set_err(err, errlen, "unknown batch '%s'", id);
        return -ENOENT;
    }
    if (rc != SQLITE_ROW) {
        rc = sql_fail(db, rc, "read batch", err, errlen);
        sqlite3_finalize(st);
        return rc;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        sqlite3_finalize(st);
        return -ENOMEM;
    }
    rc = batch_fill_row(st, b, seq);
    sqlite3_finalize(st);
    if (rc < 0) {
        journal_batch_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* Loads batch `id` (with events). -ENOENT when unknown. */
static int batch_read(sqlite3 *db, const char *id, int with_events,
                      struct journal_batch **out, int64_t *seq_out,
                      struct items *items, char *err, size_t errlen)
{
    struct journal_batch *b;
    int64_t seq = 0;
    int rc = batch_read_row(db, id, &b, &seq, err, errlen);

    *out = NULL;
    if (rc == 0) {
        rc = batch_read_members(db, seq, b, with_events, items, err, errlen);
    }
    if (rc < 0) {
        journal_batch_free(b);
        return rc;
    }
    if (seq_out != NULL) {
        *seq_out = seq;
    }
    *out = b;
    return 0;
}

/* ------------------------------------------------------- writer: helpers */

/* One row of `pieces`, with PIECE_INSERT prepared as st (insert_pieces,
 * insert_cut_pieces): v = batch_seq, chunk_id, part_id, first_offset,
 * last_offset, count, bytes. */
#define PIECE_INSERT                                                           \
    "INSERT INTO pieces(batch_seq, chunk_id, part_id, first_offset,"           \
    " last_offset, count, bytes) VALUES(?, ?, ?, ?, ?, ?, ?)"

static int piece_row(sqlite3 *db, sqlite3_stmt *st, const int64_t v[7],
                     char *err, size_t errlen)
{
    for (int i = 0; i < 7; i++) {
        sqlite3_bind_int64(st, i + 1, v[i]);
    }
    return step_done(db, st, "insert piece", err, errlen);
}

/* Inserts the pieces of batch seq: runs of consecutive idx in one chunk. */
static int insert_pieces(struct journal *j, int64_t seq, const struct item *it,
                         size_t n, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(j->wdb, PIECE_INSERT, &st, err, errlen);
    size_t i = 0;

    if (rc < 0) {
        return rc;
    }
    while (i < n && rc == 0) {
        size_t k = i + 1;
        int64_t bytes = it[i].bytes;

        while (k < n && it[k].chunk_id == it[i].chunk_id &&
               it[k].idx == it[k - 1].idx + 1) {
            bytes += it[k].bytes;
            k++;
        }
        int64_t v[7] = {seq,          it[i].chunk_id,   it[i].part_id,
                        it[i].offset, it[k - 1].offset, (int64_t)(k - i),
                        bytes};

        rc = piece_row(j->wdb, st, v, err, errlen);
        i = k;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Inserts the row of a new batch (count members, bytes of values); *seq_out
 * and id_out receive its seq and id. claim = the session that owns it (0 =
 * unclaimed). */
static int insert_batch_row(struct journal *j, int route, int flags,
                            const char *parent, int64_t claim, int64_t count,
                            int64_t bytes, int64_t *seq_out,
                            char id_out[JOURNAL_BATCH_ID_MAX], char *err,
                            size_t errlen)
{
    sqlite3_stmt *st;
    int64_t seq = j->next_seq++;
    int rc;

    *seq_out = seq;
    snprintf(id_out, JOURNAL_BATCH_ID_MAX, "%s-%" PRId64, j->uuid, seq);
    rc = prep(j->wdb,
              "INSERT INTO batches(seq, id, route, flags, state, parent_id,"
              " created_ms, count, bytes, claim)"
              " VALUES(?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
              &st, err, errlen);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, id_out, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, route);
    sqlite3_bind_int(st, 4, flags);
    sqlite3_bind_text(st, 5, parent ? parent : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, wall_ms());
    sqlite3_bind_int64(st, 7, count);
    sqlite3_bind_int64(st, 8, bytes);
    sqlite3_bind_int64(st, 9, claim);
    rc = step_done(j->wdb, st, "insert batch", err, errlen);
    sqlite3_finalize(st);
    return rc;
}

/* Persists a new batch over items (in event order). id_out receives its
 * id. claim = the session that owns it (0 = unclaimed). */
static int insert_batch(struct journal *j, int route, int flags,
                        const char *parent, int64_t claim,
                        const struct item *it, size_t n,
                        char id_out[JOURNAL_BATCH_ID_MAX], char *err,
                        size_t errlen)
{
    int64_t seq, bytes = 0;
    int rc;

    for (size_t i = 0; i < n; i++) {
        bytes += it[i].bytes;
    }
    rc = insert_batch_row(j, route, flags, parent, claim, (int64_t)n, bytes,
                          &seq, id_out, err, errlen);
    if (rc < 0) {
        return rc;
    }
    return insert_pieces(j, seq, it, n, err, errlen);
}

/* Runs `sql` with int64 binds (count given) to completion. */
static int exec_i64(sqlite3 *db, const char *sql, int n, const int64_t *v,
                    char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(db, sql, &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(st, i + 1, v[i]);
    }
    rc = step_done(db, st, "update", err, errlen);
    sqlite3_finalize(st);
    return rc;
}

/* A chunk's row and its events. */
static int delete_chunk(struct journal *j, int64_t id, char *err, size_t errlen)
{
    int64_t v[1] = {id};
    int rc =
        exec_i64(j->wdb, "DELETE FROM chunks WHERE id = ?", 1, v, err, errlen);

    if (rc == 0) {
        rc = exec_i64(j->wdb, "DELETE FROM chunk_data WHERE id = ?", 1, v, err,
                      errlen);
    }
    return rc;
}

/* Copies chunk `id`'s blob: *data owned by the caller (free). */
static int chunk_fetch(sqlite3 *db, int64_t id, void **data, size_t *len,
                       int64_t *first, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(db,
                  "SELECT d.data, c.first_offset FROM chunks c"
                  " JOIN chunk_data d ON d.id = c.id WHERE c.id = ?",
                  &st, err, errlen);

    *data = NULL;
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *data = xmemdup(sqlite3_column_blob(st, 0), *len);
        *first = sqlite3_column_int64(st, 1);
        rc = *data ? 0 : -ENOMEM;
    } else if (rc == SQLITE_DONE) {
        set_err(err, errlen, "journal chunk %" PRId64 " is missing", id);
        rc = -EIO;
    } else {
        rc = sql_fail(db, rc, "read chunk", err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Batch row basics: seq, state, flags. -ENOENT when unknown. */
static int batch_head(struct journal *j, const char *id, int64_t *seq,
                      int *state, int *flags, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(j->wdb, "SELECT seq, state, flags FROM batches WHERE id = ?",
                  &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        *state = sqlite3_column_int(st, 1);
        *flags = sqlite3_column_int(st, 2);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        set_err(err, errlen, "unknown batch '%s'", id);
        rc = -ENOENT;
    } else {
        rc = sql_fail(j->wdb, rc, "read batch", err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

static int batch_finished_err(const char *id, int state, char *err,
                              size_t errlen)
{
    set_err(err, errlen, "batch '%s' is finished (%s)", id,
            journal_batch_state_name((enum journal_batch_state)state));
    return -EINVAL;
}

/* ------------------------------------------------------ writer: append */

static int wstmts_prepare(struct journal *j, char *err, size_t errlen)
{
    struct wstmts *w = &j->ws;
    int rc;

    rc = prep(j->wdb,
              "SELECT id, high_offset FROM partitions"
              " WHERE topic = ? AND partition = ? AND sealed = 0",
              &w->sel_part, err, errlen);
    if (rc == 0) {
        rc = prep(j->wdb,
                  "INSERT INTO partitions(topic, partition, route,"
                  " high_offset, batched_offset, pending_count,"
                  " pending_bytes) VALUES(?, ?, ?, -1, -1, 0, 0)",
                  &w->ins_part, err, errlen);
    }
    if (rc == 0) {
        rc = prep(j->wdb,
                  "UPDATE partitions SET high_offset = ?, route = ?,"
                  " pending_count = pending_count + ?,"
                  " pending_bytes = pending_bytes + ? WHERE id = ?",
                  &w->upd_part, err, errlen);
    }
    if (rc == 0) {
        rc = prep(j->wdb,
                  "INSERT INTO chunks(part_id, route, first_offset,"
                  " last_offset, count, bytes, undone, undone_bytes, dead,"
                  " dead_bytes, cut, appended_ms, ts_min, ts_max)"
                  " VALUES(?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?, ?, ?)",
                  &w->ins_chunk, err, errlen);
    }
    if (rc == 0) {
        rc = prep(j->wdb,
                  "INSERT INTO chunk_data(id, data) VALUES(last_insert_rowid(),"
                  " ?)",
                  &w->ins_data, err, errlen);
    }
    if (rc == 0) {
        rc = prep(j->wdb, "PRAGMA page_count", &w->page_count, err, errlen);
    }
    if (rc == 0) {
        rc = prep(j->wdb, "PRAGMA freelist_count", &w->freelist, err, errlen);
    }
    return rc;
}

static void wstmts_finalize(struct wstmts *w)
{
    sqlite3_finalize(w->sel_part);
    sqlite3_finalize(w->ins_part);
    sqlite3_finalize(w->upd_part);
    sqlite3_finalize(w->ins_chunk);
    sqlite3_finalize(w->ins_data);
    sqlite3_finalize(w->page_count);
    sqlite3_finalize(w->freelist);
    memset(w, 0, sizeof(*w));
}

static int64_t pragma_val(sqlite3_stmt *st)
{
    int64_t v = -1;

    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    return v;
}

/* Bytes of pages in use (the cap's measure, INV-7). */
static int64_t used_bytes(struct journal *j)
{
    int64_t pages = pragma_val(j->ws.page_count);
    int64_t freel = pragma_val(j->ws.freelist);

    return (pages - (freel > 0 ? freel : 0)) * 4096;
}

/*
 * INV-7: refuses an append (-ENOSPC, the caller rolls its savepoint back)
 * that would cross max_bytes, or the effective cap the disk sets: its new
 * pages are counted once in the pages in use and once more, with the rest
 * of its group, for the WAL that holds them until a checkpoint (see
 * journal.h, "disk space"). Writer thread.
 */
static int append_space_check(struct journal *j, int64_t bytes, char *err,
                              size_t errlen)
{
    int64_t used = used_bytes(j);

    if (j->max_bytes > 0 && used > j->max_bytes) {
        set_err(err, errlen, "journal full: byte cap %" PRId64 " reached",
                j->max_bytes);
        __atomic_store_n(&j->full, JOURNAL_FULL_CAP, __ATOMIC_RELAXED);
        return -ENOSPC;
    }
    if (j->reserve_bytes > 0 && used + j->group_bytes + bytes > j->space_cap) {
        set_err(err, errlen,
                "journal full (disk): effective cap %" PRId64
                " bytes reached (%" PRId64 " bytes of pages in use, %" PRId64
                " bytes kept free on the disk for draining)",
                j->space_cap, used, j->reserve_bytes);
        __atomic_store_n(&j->full, JOURNAL_FULL_DISK, __ATOMIC_RELAXED);
        return -ENOSPC;
    }
    return 0;
}

/* Finds or creates the partition row: *id, *high. */
static int part_get(struct journal *j, const char *topic, int32_t partition,
                    int route, int64_t *id, int64_t *high, char *err,
                    size_t errlen)
{
    struct wstmts *w = &j->ws;
    int rc;

    sqlite3_bind_text(w->sel_part, 1, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(w->sel_part, 2, partition);
    rc = sqlite3_step(w->sel_part);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(w->sel_part, 0);
        *high = sqlite3_column_int64(w->sel_part, 1);
        sqlite3_reset(w->sel_part);
        return 0;
    }
    sqlite3_reset(w->sel_part);
    if (rc != SQLITE_DONE) {
        return sql_fail(j->wdb, rc, "read partition", err, errlen);
    }
    sqlite3_bind_text(w->ins_part, 1, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(w->ins_part, 2, partition);
    sqlite3_bind_int(w->ins_part, 3, route);
    rc = step_done(j->wdb, w->ins_part, "insert partition", err, errlen);
    if (rc < 0) {
        return rc;
    }
    *id = sqlite3_last_insert_rowid(j->wdb);
    *high = -1;
    return 0;
}

/*
 * Appends the events ev[order[from..to)] of one (topic, partition) as one
 * chunk (INV-2: offsets at or below the partition's high mark are counted
 * as duplicates and skipped), and updates the partition row. Fills p and
 * r's byte counters. 0 or a negative errno with r->err filled.
 */
static int append_group(struct journal *j, struct req *r,
                        const struct journal_event *ev, const size_t *order,
                        size_t from, size_t to, struct journal_append_part *p)
{
    struct journal_append_result *res = &r->ares;
    struct chunk_writer w;
    int64_t part_id = 0, high = 0;
    int started = 0;
    const struct journal_event *e0 = &ev[order[from]];
    int rc;

    rc = part_get(j, p->topic, p->partition, e0->route, &part_id, &high, r->err,
                  sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    for (size_t k = from; k < to; k++) {
        const struct journal_event *e = &ev[order[k]];

        if (e->offset <= high) {
            p->duplicates++; /* INV-2 */
            continue;
        }
        if (!started) {
            chunk_writer_init(&w, &j->wbuf, e->offset);
            started = 1;
        }
        rc = chunk_writer_add(&w, e->offset, e->timestamp_ms, e->key,
                              e->key_len, e->value, e->value_len, e->headers,
                              e->headers_len);
        if (rc < 0) {
            set_err(r->err, sizeof(r->err),
                    "cannot pack event '%s'/%d@%" PRId64 ": %s", e->topic,
                    e->partition, e->offset, strerror(-rc));
            return rc;
        }
        high = e->offset;
        p->appended++;
    }
    p->high_offset = high;
    if (started) {
        struct wstmts *s = &j->ws;
        int64_t now = wall_ms();

        sqlite3_bind_int64(s->ins_chunk, 1, part_id);
        sqlite3_bind_int(s->ins_chunk, 2, e0->route);
        sqlite3_bind_int64(s->ins_chunk, 3, w.first_off);
        sqlite3_bind_int64(s->ins_chunk, 4, w.prev_off);
        sqlite3_bind_int64(s->ins_chunk, 5, w.count);
        sqlite3_bind_int64(s->ins_chunk, 6, w.value_bytes);
        sqlite3_bind_int64(s->ins_chunk, 7, w.count);
        sqlite3_bind_int64(s->ins_chunk, 8, w.value_bytes);
        sqlite3_bind_int64(s->ins_chunk, 9, now);
        sqlite3_bind_int64(s->ins_chunk, 10, w.ts_min);
        sqlite3_bind_int64(s->ins_chunk, 11, w.ts_max);
        rc = step_done(j->wdb, s->ins_chunk, "insert chunk", r->err,
                       sizeof(r->err));
        sqlite3_clear_bindings(s->ins_chunk);
        if (rc < 0) {
            return rc;
        }
        sqlite3_bind_blob(s->ins_data, 1, j->wbuf.data, (int)j->wbuf.len,
                          SQLITE_STATIC);
        rc = step_done(j->wdb, s->ins_data, "insert chunk data", r->err,
                       sizeof(r->err));
        sqlite3_clear_bindings(s->ins_data);
        if (rc < 0) {
            return rc;
        }
        sqlite3_bind_int64(s->upd_part, 1, high);
        sqlite3_bind_int(s->upd_part, 2, e0->route);
        sqlite3_bind_int64(s->upd_part, 3, w.count);
        sqlite3_bind_int64(s->upd_part, 4, w.value_bytes);
        sqlite3_bind_int64(s->upd_part, 5, part_id);
        rc = step_done(j->wdb, s->upd_part, "update partition", r->err,
                       sizeof(r->err));
        if (rc < 0) {
            return rc;
        }
        res->bytes += (int64_t)j->wbuf.len;
        r->pending_delta += w.value_bytes;
    }
    return 0;
}

static int op_append(struct journal *j, struct req *r)
{
    struct journal_append_result *res = &r->ares;
    const struct journal_event *ev = r->ev;
    size_t n = r->nev;
    size_t *gid = NULL, *order = NULL, *start = NULL;
    size_t ng = 0, last = 0, pcap = 0;
    int rc = 0;

    if (n == 0) {
        return 0;
    }
    gid = malloc(n * sizeof(*gid));
    order = malloc(n * sizeof(*order));
    if (gid == NULL || order == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* group by (topic, partition), first appearance order */
    for (size_t i = 0; i < n; i++) {
        size_t g;

        if (ev[i].topic == NULL || ev[i].offset < 0 ||
            (ev[i].value == NULL && ev[i].value_len > 0) ||
            (ev[i].key == NULL && ev[i].key_len > 0) ||
            (ev[i].headers == NULL && ev[i].headers_len > 0)) {
            set_err(r->err, sizeof(r->err), "bad event %zu in append", i);
            rc = -EINVAL;
            goto out;
        }
        if (ng > 0 && res->parts[last].partition == ev[i].partition &&
            strcmp(res->parts[last].topic, ev[i].topic) == 0) {
            g = last;
        } else {
            for (g = 0; g < ng; g++) {
                if (res->parts[g].partition == ev[i].partition &&
                    strcmp(res->parts[g].topic, ev[i].topic) == 0) {
                    break;
                }
            }
            if (g == ng) {
                if (grow_array((void **)&res->parts, &pcap, ng + 1,
                               sizeof(*res->parts)) < 0) {
                    rc = -ENOMEM;
                    goto out;
                }
                memset(&res->parts[g], 0, sizeof(res->parts[g]));
                /* borrowed until the end of this function, then copied */
                res->parts[g].topic = (char *)ev[i].topic;
                res->parts[g].partition = ev[i].partition;
                ng++;
            }
        }
        gid[i] = last = g;
        res->parts[g].appended++; /* temporarily: the group's size */
    }
    start = calloc(ng + 1, sizeof(*start));
    if (start == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t g = 0; g < ng; g++) {
        start[g + 1] = start[g] + (size_t)res->parts[g].appended;
        res->parts[g].appended = 0;
    }
    {
        size_t *fill = calloc(ng, sizeof(*fill));
        if (fill == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            order[start[gid[i]] + fill[gid[i]]++] = i;
        }
        free(fill);
    }
    res->nparts = ng;
    for (size_t g = 0; g < ng; g++) {
        struct journal_append_part *p = &res->parts[g];

        rc = append_group(j, r, ev, order, start[g], start[g + 1], p);
        if (rc < 0) {
            goto out;
        }
        res->appended += p->appended;
        res->duplicates += p->duplicates;
    }
    if (res->appended > 0 && (j->max_bytes > 0 || j->reserve_bytes > 0)) {
        rc = append_space_check(j, res->bytes, r->err, sizeof(r->err));
        if (rc < 0) {
            goto out; /* INV-7: the savepoint is rolled back */
        }
    }
out:
    /* the topics were borrowed from the events: copy them now */
    res->nparts = ng;
    for (size_t g = 0; g < ng; g++) {
        res->parts[g].topic = xstrdup(res->parts[g].topic);
        if (res->parts[g].topic == NULL && rc == 0) {
            rc = -ENOMEM;
        }
    }
    if (j->wbuf.cap > ((size_t)4 << 20)) {
        chunk_buf_release(&j->wbuf); /* do not keep a huge buffer */
    }
    free(gid);
    free(order);
    free(start);
    return rc;
}

void journal_append_result_release(struct journal_append_result *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nparts; i++) {
        free(r->parts[i].topic);
    }
    free(r->parts);
    memset(r, 0, sizeof(*r));
}

/* --------------------------------------------------------- writer: cut */

/* The cut's view of one partition while it scans. */
struct cutpart {
    int64_t part_id;
    char *topic; /* owned */
    int32_t partition;
    int64_t batched; /* cursor, advanced as events are taken */
    int64_t settled; /* -1: nothing may be batched */
    int blocked;
    int64_t taken, taken_bytes;
};

/*
 * What the cut took from one chunk: its events first..last, where their
 * bytes are in the chunk's blob and the reader's state before the first
 * (offsets and timestamps are deltas). The batch's events are decoded
 * from those bytes alone (cut_batch), not from the whole chunk.
 */
struct cutpiece {
    const char *topic; /* the cutpart's */
    int32_t partition;
    int64_t part_id, chunk_id;
    int64_t first, last, count;
    int64_t vbytes; /* sum of value_len */
    int64_t prev_off, prev_ts;
    size_t from, len; /* bytes [from, from + len) of the blob */
};

struct cutpieces {
    struct cutpiece *v;
    size_t n, cap;
    int64_t count, vbytes; /* sums of the pieces' */
    size_t blob_bytes;     /* sum of len */
};

static int64_t settled_of(const struct journal_cut_req *q, const char *topic,
                          int32_t partition)
{
    if (q->settled_all) {
        return INT64_MAX;
    }
    for (size_t i = 0; i < q->nsettled; i++) {
        if (q->settled[i].partition == partition &&
            strcmp(q->settled[i].topic, topic) == 0) {
            return q->settled[i].offset;
        }
    }
    return -1;
}

/* Takes the next unclaimed unfinished batch of the route, if any. */
static int cut_unclaimed(struct journal *j, struct req *r)
{
    sqlite3_stmt *st;
    char id[JOURNAL_BATCH_ID_MAX] = "";
    int64_t seq = 0;
    int rc =
        prep(j->wdb,
             "SELECT seq, id FROM batches WHERE route = ? AND " JOURNAL_SQL_OPEN
             " AND claim != ? ORDER BY seq LIMIT 1",
             &st, r->err, sizeof(r->err));

    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int(st, 1, r->cut.route);
    sqlite3_bind_int64(st, 2, j->session);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        seq = sqlite3_column_int64(st, 0);
        snprintf(id, sizeof(id), "%s",
                 (const char *)sqlite3_column_text(st, 1));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sql_fail(j->wdb, rc, "read batches", r->err, sizeof(r->err));
    }
    sqlite3_finalize(st);
    if (rc < 0 || id[0] == '\0') {
        return rc;
    }
    int64_t v[2] = {j->session, seq};
    rc = exec_i64(j->wdb, "UPDATE batches SET claim = ? WHERE seq = ?", 2, v,
                  r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    return batch_read(j->wdb, id, 1, &r->b1, NULL, NULL, r->err,
                      sizeof(r->err));
}

/* The cut's state of the partition of the chunk row st (columns of
 * op_cut's scan), added on first sight; NULL when out of memory. */
static struct cutpart *cut_part_of(const struct journal_cut_req *q,
                                   sqlite3_stmt *st, int64_t part_id,
                                   struct cutpart **cp, size_t *ncp,
                                   size_t *cpcap)
{
    const char *topic = (const char *)sqlite3_column_text(st, 4);
    struct cutpart *p;

    for (size_t i = 0; i < *ncp; i++) {
        if ((*cp)[i].part_id == part_id) {
            return &(*cp)[i];
        }
    }
    if (grow_array((void **)cp, cpcap, *ncp + 1, sizeof(**cp)) < 0) {
        return NULL;
    }
    p = &(*cp)[*ncp];
    memset(p, 0, sizeof(*p));
    p->topic = xstrdup(topic ? topic : "");
    if (p->topic == NULL) {
        return NULL;
    }
    (*ncp)++;
    p->part_id = part_id;
    p->partition = sqlite3_column_int(st, 5);
    p->batched = sqlite3_column_int64(st, 6);
    /* INV-3; a sealed epoch was settled before it was sealed (the caller
     * dropped what was not) */
    p->settled =
        sqlite3_column_int(st, 8)
            ? INT64_MAX
            : settled_of(q, topic ? topic : "", sqlite3_column_int(st, 5));
    return p;
}

/* A cut took events: each partition's batch cursor and pending counters
 * move past them, and its chunks wholly below the cursor are marked cut. */
static int cut_advance(struct journal *j, struct req *r, int64_t route,
                       const struct cutpart *cp, size_t ncp)
{
    int rc = 0;

    for (size_t i = 0; i < ncp && rc == 0; i++) {
        if (cp[i].taken == 0) {
            continue;
        }
        int64_t v[4] = {cp[i].batched, cp[i].taken, cp[i].taken_bytes,
                        cp[i].part_id};
        rc = exec_i64(j->wdb,
                      "UPDATE partitions SET batched_offset = ?,"
                      " pending_count = pending_count - ?,"
                      " pending_bytes = pending_bytes - ? WHERE id = ?",
                      4, v, r->err, sizeof(r->err));
        if (rc == 0) {
            /* through the partial index of the uncut chunks: by part_id
             * SQLite walked every chunk the partition ever had (6 ms of
             * the cut's 8 at 10k events/s, growing with the journal) */
            int64_t w[3] = {route, cp[i].part_id, cp[i].batched};
            rc = exec_i64(j->wdb,
                          "UPDATE chunks INDEXED BY chunks_uncut SET cut = 1"
                          " WHERE route = ? AND cut = 0 AND part_id = ?"
                          " AND last_offset <= ?",
                          3, w, r->err, sizeof(r->err));
        }
    }
    return rc;
}

/* Orders the pieces as batch_read_members orders the batch's ranges:
 * topic, partition, first offset. */
static int cutpiece_cmp(const void *a, const void *b)
{
    const struct cutpiece *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);

    if (c != 0) {
        return c;
    }
    if (x->partition != y->partition) {
        return x->partition < y->partition ? -1 : 1;
    }
    return x->first < y->first ? -1 : x->first > y->first;
}

static void cutpieces_release(struct cutpieces *ps)
{
    free(ps->v);
    memset(ps, 0, sizeof(*ps));
}

/*
 * Loads the batch `id` just inserted by a cut into *out: its row from the
 * database; its ranges and events from the cut's own pieces (sorted as
 * batch_read_members sorts them: topic, partition, first offset), the
 * events decoded once from just the bytes taken (one blob read of those
 * bytes per piece). Reading the batch back (batch_read) read every whole
 * chunk blob and decoded it twice.
 */
static int cut_batch(struct journal *j, const char *id, int route,
                     struct cutpieces *ps, struct journal_batch **out,
                     char *err, size_t errlen)
{
    struct journal_batch *b;
    struct bpriv *bp;
    uint8_t *base;
    size_t at = 0;
    int64_t seq;
    int rc = batch_read_row(j->wdb, id, &b, &seq, err, errlen);

    if (rc < 0) {
        return rc;
    }
    bp = b->priv_;
    qsort(ps->v, ps->n, sizeof(*ps->v), cutpiece_cmp);
    if (grow_array((void **)&b->ranges, &bp->rcap, ps->n, sizeof(*b->ranges)) <
        0) {
        journal_batch_free(b);
        return -ENOMEM;
    }
    for (size_t i = 0; i < ps->n; i++) {
        struct journal_range *rg = &b->ranges[i];

        rg->topic = xstrdup(ps->v[i].topic);
        if (rg->topic == NULL) {
            journal_batch_free(b);
            return -ENOMEM;
        }
        rg->partition = ps->v[i].partition;
        rg->first_offset = ps->v[i].first;
        rg->last_offset = ps->v[i].last;
        b->nranges++;
    }
    rc = bpriv_keep(b, malloc(ps->blob_bytes > 0 ? ps->blob_bytes : 1));
    if (rc == 0 && grow_array((void **)&b->events, &bp->evcap,
                              (size_t)ps->count, sizeof(*b->events)) < 0) {
        rc = -ENOMEM;
    }
    if (rc < 0) {
        journal_batch_free(b);
        return rc;
    }
    base = bp->keep[bp->n - 1];
    for (size_t i = 0; i < ps->n; i++) {
        const struct cutpiece *pc = &ps->v[i];
        struct chunk_reader rd;
        struct chunk_event ce;
        int64_t k = 0;
        int n;

        rc = chunk_blob_range(j->wdb, pc->chunk_id, pc->from, pc->len,
                              base + at, err, errlen);
        if (rc < 0) {
            journal_batch_free(b);
            return rc;
        }
        chunk_reader_init(&rd, base + at, pc->len, pc->prev_off);
        at += pc->len;
        rd.prev_ts = pc->prev_ts;
        while (k < pc->count && (n = chunk_reader_next(&rd, &ce)) == 1) {
            struct journal_event *e = &b->events[b->nevents++];

            e->route = route;
            e->topic = b->ranges[i].topic;
            e->partition = b->ranges[i].partition;
            chunk_event_to_journal(&ce, e);
            k++;
        }
        /* exactly count events, the last one `last`, no byte left */
        if (k != pc->count || rd.p != rd.end ||
            (k > 0 && b->events[b->nevents - 1].offset != pc->last)) {
            set_err(err, errlen, "journal chunk %" PRId64 " is corrupt",
                    pc->chunk_id);
            journal_batch_free(b);
            return -EIO;
        }
    }
    *out = b;
    return 0;
}

/* The cut took the events first..last (count, vbytes of values) of chunk
 * chunk_id of p: bytes [from, from + len) of its blob, the reader's state
 * before the first being prev_off, prev_ts. */
static int cut_keep_piece(struct cutpieces *ps, const struct cutpart *p,
                          int64_t chunk_id, int64_t prev_off, int64_t prev_ts,
                          size_t from, size_t len, int64_t first, int64_t last,
                          int64_t count, int64_t vbytes)
{
    struct cutpiece *pc;

    if (grow_array((void **)&ps->v, &ps->cap, ps->n + 1, sizeof(*ps->v)) < 0) {
        return -ENOMEM;
    }
    pc = &ps->v[ps->n++];
    pc->topic = p->topic;
    pc->partition = p->partition;
    pc->part_id = p->part_id;
    pc->chunk_id = chunk_id;
    pc->first = first;
    pc->last = last;
    pc->count = count;
    pc->vbytes = vbytes;
    pc->prev_off = prev_off;
    pc->prev_ts = prev_ts;
    pc->from = from;
    pc->len = len;
    ps->count += count;
    ps->vbytes += vbytes;
    ps->blob_bytes += len;
    return 0;
}

/*
 * The cut's walk through one chunk of p that it may take only part of
 * (the partition's cursor or settled offset is inside it, or the limits
 * are reached in it): its blob read, its events decoded one by one.
 */
static int cut_scan_chunk(struct journal *j, const struct journal_cut_req *q,
                          struct cutpart *p, int64_t chunk_id, int64_t first,
                          struct cutpieces *ps, struct blobbuf *bb, int *full,
                          char *err, size_t errlen)
{
    struct chunk_reader rd, before, at0;
    struct chunk_event ce;
    const uint8_t *lo = NULL, *hi = NULL, *pos;
    int64_t pfirst = 0, plast = 0, pcount = 0, pbytes = 0;
    size_t blen = 0;
    int k, rc = chunk_blob_read(j->wdb, chunk_id, bb, &blen, err, errlen);

    if (rc < 0) {
        return rc;
    }
    chunk_reader_init(&rd, bb->p, blen, first);
    for (;;) {
        before = rd;
        pos = rd.p;
        if ((k = chunk_reader_next(&rd, &ce)) != 1) {
            break;
        }
        if (ce.offset <= p->batched) {
            continue;
        }
        if (ce.offset > p->settled) {
            p->blocked = 1;
            break;
        }
        if (ps->count + pcount >= q->max_rows ||
            (ps->count + pcount > 0 &&
             ps->vbytes + pbytes + (int64_t)ce.value_len > q->max_bytes)) {
            *full = 1;
            break;
        }
        if (lo == NULL) {
            lo = pos;
            at0 = before;
            pfirst = ce.offset;
        }
        hi = rd.p;
        plast = ce.offset;
        pcount++;
        pbytes += (int64_t)ce.value_len;
        p->batched = ce.offset;
    }
    if (k < 0) {
        set_err(err, errlen, "journal chunk %" PRId64 " is corrupt", chunk_id);
        return -EIO;
    }
    if (lo == NULL) {
        return 0;
    }
    p->taken += pcount;
    p->taken_bytes += pbytes;
    return cut_keep_piece(ps, p, chunk_id, at0.prev_off, at0.prev_ts,
                          (size_t)(lo - bb->p), (size_t)(hi - lo), pfirst,
                          plast, pcount, pbytes);
}

/* Inserts the pieces of the cut's batch seq. */
static int insert_cut_pieces(struct journal *j, int64_t seq,
                             const struct cutpieces *ps, char *err,
                             size_t errlen)
{
    sqlite3_stmt *st;
    int rc = prep(j->wdb, PIECE_INSERT, &st, err, errlen);

    for (size_t i = 0; i < ps->n && rc == 0; i++) {
        const struct cutpiece *pc = &ps->v[i];
        int64_t v[7] = {seq,      pc->chunk_id, pc->part_id, pc->first,
                        pc->last, pc->count,    pc->vbytes};

        rc = piece_row(j->wdb, st, v, err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

/*
 * Cuts the next batch of the route: the uncut chunks in append order, each
 * partition's events past its batch cursor up to its settled offset, until
 * max_rows or max_bytes. A chunk taken whole is known from its row alone;
 * only one taken in part is read and decoded here. The batch's events are
 * then decoded once, from the bytes taken (cut_batch).
 */
static int op_cut(struct journal *j, struct req *r)
{
    const struct journal_cut_req *q = &r->cut;
    struct cutpart *cp = NULL;
    size_t ncp = 0, cpcap = 0;
    struct cutpieces ps = {0};
    struct blobbuf bb = {NULL, 0};
    sqlite3_stmt *st = NULL;
    int full = 0;
    int rc;

    if (q->max_rows <= 0 || q->max_bytes <= 0) {
        set_err(r->err, sizeof(r->err),
                "batch cut: max_rows and max_bytes "
                "must be > 0");
        return -EINVAL;
    }
    rc = cut_unclaimed(j, r);
    if (rc < 0 || r->b1 != NULL) {
        return rc;
    }
    /* length() of a blob does not read it */
    rc = prep(j->wdb,
              "SELECT c.id, c.part_id, c.first_offset, c.last_offset,"
              " p.topic, p.partition, p.batched_offset, c.count, p.sealed,"
              " c.bytes, length(d.data)"
              " FROM chunks c JOIN partitions p ON p.id = c.part_id"
              " JOIN chunk_data d ON d.id = c.id"
              " WHERE c.route = ? AND c.cut = 0 ORDER BY c.id",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int(st, 1, q->route);
    while (!full && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t chunk_id = sqlite3_column_int64(st, 0);
        int64_t first = sqlite3_column_int64(st, 2);
        int64_t last = sqlite3_column_int64(st, 3);
        int64_t count = sqlite3_column_int64(st, 7);
        int64_t vbytes = sqlite3_column_int64(st, 9);
        struct cutpart *p =
            cut_part_of(q, st, sqlite3_column_int64(st, 1), &cp, &ncp, &cpcap);

        if (p == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        if (p->blocked || first > p->settled) {
            p->blocked = 1;
            continue;
        }
        if (ps.count >= q->max_rows) {
            break; /* nothing more can be taken */
        }
        if (first > p->batched && last <= p->settled &&
            ps.count + count <= q->max_rows &&
            ps.vbytes + vbytes <= q->max_bytes) {
            /* the whole chunk */
            rc = cut_keep_piece(&ps, p, chunk_id, first, 0, 0,
                                (size_t)sqlite3_column_int64(st, 10), first,
                                last, count, vbytes);
            p->batched = last;
            p->taken += count;
            p->taken_bytes += vbytes;
        } else {
            rc = cut_scan_chunk(j, q, p, chunk_id, first, &ps, &bb, &full,
                                r->err, sizeof(r->err));
        }
        if (rc < 0) {
            goto out;
        }
        rc = SQLITE_ROW;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = sql_fail(j->wdb, rc, "scan chunks", r->err, sizeof(r->err));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = 0;
    if (ps.count == 0) {
        goto out;
    }
    rc = cut_advance(j, r, q->route, cp, ncp);
    if (rc == 0) {
        char id[JOURNAL_BATCH_ID_MAX];
        int64_t seq;

        /* INV-4 */
        rc = insert_batch_row(j, q->route, 0, NULL, j->session, ps.count,
                              ps.vbytes, &seq, id, r->err, sizeof(r->err));
        if (rc == 0) {
            rc = insert_cut_pieces(j, seq, &ps, r->err, sizeof(r->err));
        }
        if (rc == 0) {
            rc =
                cut_batch(j, id, q->route, &ps, &r->b1, r->err, sizeof(r->err));
        }
    }
out:
    sqlite3_finalize(st);
    for (size_t i = 0; i < ncp; i++) {
        free(cp[i].topic);
    }
    free(cp);
    free(bb.p);
    cutpieces_release(&ps);
    return rc;
}

/* ------------------------------------------------------- writer: marks */

static int op_mark(struct journal *j, struct req *r)
{
    int64_t seq = 0;
    int state = 0, flags = 0;
    int rc = batch_head(j, r->id, &seq, &state, &flags, r->err, sizeof(r->err));

    if (rc < 0) {
        return rc;
    }
    if (r->op == OP_DELIVERED && state == JOURNAL_BATCH_DELIVERED) {
        return 0; /* already: safe to repeat */
    }
    if (state >= JOURNAL_BATCH_DELIVERED) {
        return batch_finished_err(r->id, state, r->err, sizeof(r->err));
    }
    if (r->op == OP_SENT) {
        int64_t v[3] = {r->now_ms, r->now_ms, seq};
        return exec_i64(j->wdb,
                        "UPDATE batches SET state = " JOURNAL_SQL_SENT ","
                        " attempts = attempts + 1, first_sent_ms = CASE"
                        " WHEN first_sent_ms = 0 THEN ? ELSE first_sent_ms"
                        " END, last_sent_ms = ? WHERE seq = ?",
                        3, v, r->err, sizeof(r->err));
    }
    if (r->op == OP_FAILED) {
        sqlite3_stmt *st;
        size_t len = r->text ? strnlen(r->text, LAST_ERROR_MAX) : 0;

        rc = prep(j->wdb,
                  "UPDATE batches SET state = " JOURNAL_SQL_FAILED
                  ", next_try_ms = ?,"
                  " last_error = ? WHERE seq = ?",
                  &st, r->err, sizeof(r->err));
        if (rc < 0) {
            return rc;
        }
        sqlite3_bind_int64(st, 1, r->i1);
        if (r->text != NULL) {
            sqlite3_bind_text(st, 2, r->text, (int)len, SQLITE_STATIC);
        }
        sqlite3_bind_int64(st, 3, seq);
        rc = step_done(j->wdb, st, "mark failed", r->err, sizeof(r->err));
        sqlite3_finalize(st);
        return rc;
    }
    /* OP_DELIVERED (INV-5): live members become delivered; replay
     * batches change no event's state */
    if ((flags & JOURNAL_BATCH_REPLAY) == 0) {
        int64_t bytes = 0;
        int64_t v[3] = {seq, seq, seq};

        {
            sqlite3_stmt *st;
            rc = prep(j->wdb,
                      "SELECT COALESCE(SUM(bytes), 0) FROM pieces"
                      " WHERE batch_seq = ?",
                      &st, r->err, sizeof(r->err));
            if (rc < 0) {
                return rc;
            }
            sqlite3_bind_int64(st, 1, seq);
            if (sqlite3_step(st) == SQLITE_ROW) {
                bytes = sqlite3_column_int64(st, 0);
            }
            sqlite3_finalize(st);
        }
        rc = exec_i64(j->wdb,
                      "UPDATE chunks SET"
                      " undone = undone - (SELECT SUM(count) FROM pieces"
                      "  WHERE batch_seq = ?1 AND chunk_id = chunks.id),"
                      " undone_bytes = undone_bytes - (SELECT SUM(bytes)"
                      "  FROM pieces WHERE batch_seq = ?2"
                      "  AND chunk_id = chunks.id)"
                      " WHERE id IN (SELECT chunk_id FROM pieces"
                      "  WHERE batch_seq = ?3)",
                      3, v, r->err, sizeof(r->err));
        if (rc < 0) {
            return rc;
        }
        r->pending_delta -= bytes;
    }
    int64_t v[2] = {r->now_ms, seq};
    return exec_i64(j->wdb,
                    "UPDATE batches SET state = " JOURNAL_SQL_DELIVERED
                    ", last_sent_ms = CASE WHEN"
                    " last_sent_ms = 0 THEN ? ELSE last_sent_ms END"
                    " WHERE seq = ?",
                    2, v, r->err, sizeof(r->err));
}

/* Adds delta (count, bytes) to a chunk's dead and -delta to undone (when
 * undone_too). */
static int chunk_dead_adjust(struct journal *j, int64_t chunk_id, int64_t dn,
                             int64_t db, int undone_too, char *err,
                             size_t errlen)
{
    int64_t u = undone_too ? 1 : 0;
    int64_t v[5] = {dn, db, u * dn, u * db, chunk_id};

    return exec_i64(j->wdb,
                    "UPDATE chunks SET dead = dead + ?,"
                    " dead_bytes = dead_bytes + ?, undone = undone - ?,"
                    " undone_bytes = undone_bytes - ? WHERE id = ?",
                    5, v, err, errlen);
}

static int op_dead(struct journal *j, struct req *r)
{
    struct journal_batch *b = NULL;
    struct items items = {0};
    struct items keep = {0};
    sqlite3_stmt *ins = NULL;
    char *kill = NULL;
    int64_t seq = 0;
    int64_t live_bytes = 0;
    int replay;
    int rc;

    rc = batch_read(j->wdb, r->id, 1, &b, &seq, &items, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    if (b->state >= JOURNAL_BATCH_DELIVERED) {
        rc = batch_finished_err(r->id, (int)b->state, r->err, sizeof(r->err));
        goto out;
    }
    replay = (b->flags & JOURNAL_BATCH_REPLAY) != 0;
    kill = calloc(items.n + 1, 1);
    if (kill == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r->nrefs; i++) {
        const struct journal_offset *o = &r->refs[i];
        size_t k;

        for (k = 0; k < items.n; k++) {
            if (b->events[k].offset == o->offset &&
                b->events[k].partition == o->partition &&
                strcmp(b->events[k].topic, o->topic) == 0) {
                break;
            }
        }
        if (k == items.n) {
            set_err(r->err, sizeof(r->err),
                    "event '%s'/%d@%" PRId64 " is not a live member of batch "
                    "'%s'",
                    o->topic, o->partition, o->offset, r->id);
            rc = -EINVAL;
            goto out;
        }
        kill[k] = 1;
    }
    if (r->nrefs == 0) {
        memset(kill, 1, items.n);
    }
    rc = prep(j->wdb,
              "INSERT INTO dead(part_id, chunk_id, offset, route, batch_id,"
              " reason, dead_ms, timestamp_ms, value_len)"
              " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
              &ins, r->err, sizeof(r->err));
    if (rc < 0) {
        goto out;
    }
    for (size_t i = 0; i < items.n && rc == 0; i++) {
        const struct item *it = &items.v[i];

        if (!kill[i]) {
            rc = items_push(&keep, it);
            live_bytes += it->bytes;
            continue;
        }
        sqlite3_bind_int64(ins, 1, it->part_id);
        sqlite3_bind_int64(ins, 2, it->chunk_id);
        sqlite3_bind_int64(ins, 3, it->offset);
        sqlite3_bind_int(ins, 4, b->route);
        sqlite3_bind_text(ins, 5, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 6, r->text ? r->text : "",
                          (int)strnlen(r->text ? r->text : "", REASON_MAX),
                          SQLITE_STATIC);
        sqlite3_bind_int64(ins, 7, r->now_ms);
        sqlite3_bind_int64(ins, 8, it->ts);
        sqlite3_bind_int64(ins, 9, it->bytes);
        rc = step_done(j->wdb, ins, "insert dead letter", r->err,
                       sizeof(r->err)); /* INV-6 */
        if (rc == 0) {
            rc = chunk_dead_adjust(j, it->chunk_id, 1, it->bytes, !replay,
                                   r->err, sizeof(r->err));
        }
        if (rc == 0 && !replay) {
            r->pending_delta -= it->bytes;
        }
    }
    if (rc < 0) {
        goto out;
    }
    {
        int64_t v[1] = {seq};
        rc = exec_i64(j->wdb, "DELETE FROM pieces WHERE batch_seq = ?", 1, v,
                      r->err, sizeof(r->err));
    }
    if (rc == 0) {
        rc = insert_pieces(j, seq, keep.v, keep.n, r->err, sizeof(r->err));
    }
    if (rc == 0) {
        int64_t v[4] = {(int64_t)keep.n, live_bytes, (int64_t)keep.n, seq};
        rc = exec_i64(j->wdb,
                      "UPDATE batches SET count = ?, bytes = ?,"
                      " state = CASE WHEN ? = 0 THEN " JOURNAL_SQL_DEAD
                      " ELSE state END"
                      " WHERE seq = ?",
                      4, v, r->err, sizeof(r->err));
    }
out:
    sqlite3_finalize(ins);
    free(kill);
    free(keep.v);
    free(items.v);
    journal_batch_free(b);
    return rc;
}

static int op_split(struct journal *j, struct req *r)
{
    struct journal_batch *b = NULL;
    struct items items = {0};
    char id1[JOURNAL_BATCH_ID_MAX], id2[JOURNAL_BATCH_ID_MAX];
    int64_t seq = 0;
    int flags = 0;
    int rc;

    rc = batch_read(j->wdb, r->id, 1, &b, &seq, &items, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    if (b->state >= JOURNAL_BATCH_DELIVERED) {
        rc = batch_finished_err(r->id, (int)b->state, r->err, sizeof(r->err));
        goto out;
    }
    if (r->i1 <= 0 || r->i1 >= (int64_t)items.n) {
        set_err(r->err, sizeof(r->err),
                "cannot split batch '%s' of %zu events at %" PRId64, r->id,
                items.n, r->i1);
        rc = -EINVAL;
        goto out;
    }
    flags = b->flags | JOURNAL_BATCH_CHILD;
    rc = insert_batch(j, b->route, flags, r->id, j->session, items.v,
                      (size_t)r->i1, id1, r->err, sizeof(r->err));
    if (rc == 0) {
        rc =
            insert_batch(j, b->route, flags, r->id, j->session, items.v + r->i1,
                         items.n - (size_t)r->i1, id2, r->err, sizeof(r->err));
    }
    if (rc == 0) {
        int64_t v[1] = {seq};
        rc = exec_i64(j->wdb, "DELETE FROM pieces WHERE batch_seq = ?", 1, v,
                      r->err, sizeof(r->err));
    }
    if (rc == 0) {
        int64_t v[1] = {seq};
        rc = exec_i64(j->wdb,
                      "UPDATE batches SET state = " JOURNAL_SQL_SPLIT
                      " WHERE seq = ?",
                      1, v, r->err, sizeof(r->err));
    }
    if (rc == 0) {
        rc = batch_read(j->wdb, id1, 1, &r->b1, NULL, NULL, r->err,
                        sizeof(r->err));
    }
    if (rc == 0) {
        rc = batch_read(j->wdb, id2, 1, &r->b2, NULL, NULL, r->err,
                        sizeof(r->err));
    }
out:
    free(items.v);
    journal_batch_free(b);
    return rc;
}

/* ------------------------------------------------- writer: lost partition */

struct chunkrow {
    int64_t id, first, last, count, bytes;
};

/* schemas: text = "registry\0type\0schema", i1 = id; n1 = rows added */
static int op_schema(struct journal *j, struct req *r)
{
    const char *reg = r->text;
    const char *type = reg + strlen(reg) + 1;
    const char *schema = type + strlen(type) + 1;
    sqlite3_stmt *st = NULL;
    int rc;

    rc = prep(j->wdb,
              "INSERT OR IGNORE INTO schemas(registry, id, type, schema,"
              " fetched_ms) VALUES(?, ?, ?, ?, ?)",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(st, 1, reg, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->i1);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, schema, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, r->now_ms);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->wdb, rc, "schema", r->err, sizeof(r->err));
    } else {
        r->n1 = sqlite3_changes(j->wdb);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Rewrites chunk c without its events above cut (INV-3: batched ones are
 * kept, counted in res->kept_batched), subtracting what went from the
 * chunk's counters; buf is the scratch buffer for the new BLOB. */
static int drop_repack(struct journal *j, struct req *r,
                       const struct chunkrow *c, int64_t after, int64_t cut,
                       int64_t batched, struct chunk_buf *buf,
                       struct journal_drop_result *res)
{
    void *data = NULL;
    size_t len = 0;
    int64_t first;
    struct chunk_reader rd;
    struct chunk_writer w;
    struct chunk_event ce;
    int64_t dn = 0, dbytes = 0;
    int k;
    int rc;

    rc =
        chunk_fetch(j->wdb, c->id, &data, &len, &first, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    chunk_reader_init(&rd, data, len, first);
    chunk_writer_init(&w, buf, first);
    while ((k = chunk_reader_next(&rd, &ce)) == 1) {
        if (ce.offset > after && ce.offset <= batched) {
            res->kept_batched++;
        }
        if (ce.offset > cut) {
            dn++;
            dbytes += (int64_t)ce.value_len;
            continue;
        }
        k = chunk_writer_add(&w, ce.offset, ce.timestamp_ms, ce.key, ce.key_len,
                             ce.value, ce.value_len, ce.headers,
                             ce.headers_len);
        if (k < 0) {
            break;
        }
    }
    free(data);
    if (k < 0) {
        set_err(r->err, sizeof(r->err), "journal chunk %" PRId64 " is corrupt",
                c->id);
        return -EIO;
    }
    if (dn > 0) {
        sqlite3_stmt *up;
        rc = prep(j->wdb,
                  "UPDATE chunks SET last_offset = ?, count = ?,"
                  " bytes = ?, undone = undone - ?,"
                  " undone_bytes = undone_bytes - ?,"
                  " cut = (? <= ?), ts_min = ?, ts_max = ?"
                  " WHERE id = ?",
                  &up, r->err, sizeof(r->err));
        if (rc < 0) {
            return rc;
        }
        sqlite3_bind_int64(up, 1, w.prev_off);
        sqlite3_bind_int64(up, 2, w.count);
        sqlite3_bind_int64(up, 3, w.value_bytes);
        sqlite3_bind_int64(up, 4, dn);
        sqlite3_bind_int64(up, 5, dbytes);
        sqlite3_bind_int64(up, 6, w.prev_off);
        sqlite3_bind_int64(up, 7, batched);
        sqlite3_bind_int64(up, 8, w.ts_min);
        sqlite3_bind_int64(up, 9, w.ts_max);
        sqlite3_bind_int64(up, 10, c->id);
        rc = step_done(j->wdb, up, "repack chunk", r->err, sizeof(r->err));
        sqlite3_finalize(up);
        if (rc == 0) {
            rc = prep(j->wdb, "UPDATE chunk_data SET data = ? WHERE id = ?",
                      &up, r->err, sizeof(r->err));
        }
        if (rc == 0) {
            sqlite3_bind_blob(up, 1, buf->data, (int)buf->len, SQLITE_STATIC);
            sqlite3_bind_int64(up, 2, c->id);
            rc = step_done(j->wdb, up, "repack chunk data", r->err,
                           sizeof(r->err));
            sqlite3_finalize(up);
        }
        res->dropped += dn;
        res->dropped_bytes += dbytes;
    }
    return rc;
}

static int op_drop(struct journal *j, struct req *r)
{
    struct journal_drop_result *res = &r->dres;
    struct chunkrow *rows = NULL;
    size_t nrows = 0, cap = 0;
    struct chunk_buf buf = {0};
    sqlite3_stmt *st = NULL;
    int64_t part_id = 0, high = 0, batched = 0, cut = 0, after = r->i1;
    int rc;

    memset(res, 0, sizeof(*res));
    res->high_offset = -1;
    rc = prep(j->wdb,
              "SELECT id, high_offset, batched_offset FROM partitions"
              " WHERE topic = ? AND partition = ? AND sealed = 0",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(st, 1, r->text, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, r->partition);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return 0; /* never journaled: nothing to drop */
    }
    if (rc != SQLITE_ROW) {
        rc = sql_fail(j->wdb, rc, "read partition", r->err, sizeof(r->err));
        sqlite3_finalize(st);
        return rc;
    }
    part_id = sqlite3_column_int64(st, 0);
    high = sqlite3_column_int64(st, 1);
    batched = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    st = NULL;
    cut = after > batched ? after : batched; /* INV-3: keep batched ones */

    rc = prep(j->wdb,
              "SELECT id, first_offset, last_offset, count, bytes FROM chunks"
              " WHERE part_id = ? AND last_offset > ? ORDER BY first_offset",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, part_id);
    sqlite3_bind_int64(st, 2, after < batched ? after : batched);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow_array((void **)&rows, &cap, nrows + 1, sizeof(*rows)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        rows[nrows].id = sqlite3_column_int64(st, 0);
        rows[nrows].first = sqlite3_column_int64(st, 1);
        rows[nrows].last = sqlite3_column_int64(st, 2);
        rows[nrows].count = sqlite3_column_int64(st, 3);
        rows[nrows].bytes = sqlite3_column_int64(st, 4);
        nrows++;
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->wdb, rc, "scan chunks", r->err, sizeof(r->err));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = 0;
    for (size_t i = 0; i < nrows && rc == 0; i++) {
        struct chunkrow *c = &rows[i];

        if (c->first > cut) {
            rc = delete_chunk(j, c->id, r->err, sizeof(r->err));
            res->dropped += c->count;
            res->dropped_bytes += c->bytes;
            continue;
        }
        rc = drop_repack(j, r, c, after, cut, batched, &buf, res);
    }
    if (rc < 0) {
        goto out;
    }
    {
        int64_t nh = high < after ? high : after;
        if (nh < batched) {
            nh = batched;
        }
        int64_t v[4] = {nh, res->dropped, res->dropped_bytes, part_id};
        rc = exec_i64(j->wdb,
                      "UPDATE partitions SET high_offset = ?,"
                      " pending_count = pending_count - ?,"
                      " pending_bytes = pending_bytes - ? WHERE id = ?",
                      4, v, r->err, sizeof(r->err));
        res->high_offset = nh;
        r->pending_delta -= res->dropped_bytes;
    }
out:
    sqlite3_finalize(st);
    chunk_buf_release(&buf);
    free(rows);
    return rc;
}

/* --------------------------------------------------------- writer: epoch */

/*
 * Seals (topic, partition)'s current row and inserts the next epoch, whose
 * duplicate filter and batch cursor start at start_offset - 1 (INV-2 holds
 * within each epoch). r->n1 = the new epoch. A partition never journaled
 * gets its first row (epoch 0) starting there.
 */
static int op_epoch(struct journal *j, struct req *r)
{
    sqlite3_stmt *st = NULL;
    int64_t id = -1, epoch = -1, route = r->route;
    int rc = prep(j->wdb,
                  "SELECT id, epoch, route FROM partitions"
                  " WHERE topic = ? AND partition = ? AND sealed = 0",
                  &st, r->err, sizeof(r->err));

    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(st, 1, r->text, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, r->partition);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        epoch = sqlite3_column_int64(st, 1);
        route = sqlite3_column_int64(st, 2);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sql_fail(j->wdb, rc, "read partition", r->err, sizeof(r->err));
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc < 0) {
        return rc;
    }
    if (id >= 0) {
        rc = exec_i64(j->wdb, "UPDATE partitions SET sealed = 1 WHERE id = ?",
                      1, &id, r->err, sizeof(r->err));
        if (rc < 0) {
            return rc;
        }
    }
    rc = prep(j->wdb,
              "INSERT INTO partitions(topic, partition, route, high_offset,"
              " batched_offset, pending_count, pending_bytes, epoch, sealed,"
              " epoch_start) VALUES(?, ?, ?, ?, ?, 0, 0, ?, 0, ?)",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(st, 1, r->text, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, r->partition);
    sqlite3_bind_int64(st, 3, route);
    sqlite3_bind_int64(st, 4, r->i1 - 1);
    sqlite3_bind_int64(st, 5, r->i1 - 1);
    sqlite3_bind_int64(st, 6, epoch + 1);
    sqlite3_bind_int64(st, 7, r->i1);
    rc =
        step_done(j->wdb, st, "insert partition epoch", r->err, sizeof(r->err));
    sqlite3_finalize(st);
    r->n1 = epoch + 1;
    return rc;
}

/* ----------------------------------------------------- writer: retention */

static int op_retire(struct journal *j, struct req *r)
{
    sqlite3_stmt *st = NULL;
    struct chunkrow *rows = NULL;
    int64_t *seqs = NULL;
    size_t nrows = 0, cap = 0, nseq = 0, seqcap = 0;
    int rc;

    r->n1 = 0;
    /* INV-8: only chunks whose events are all delivered, none dead, and
     * that no unfinished batch (e.g. a replay) still references */
    rc = prep(j->wdb,
              "SELECT id, count FROM chunks c WHERE undone = 0 AND dead = 0"
              " AND appended_ms < ? AND NOT EXISTS (SELECT 1 FROM pieces bp"
              " JOIN batches b ON b.seq = bp.batch_seq"
              " WHERE bp.chunk_id = c.id AND b." JOURNAL_SQL_OPEN ")"
              " ORDER BY appended_ms, id LIMIT ?",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, r->i1);
    sqlite3_bind_int64(st, 2, r->i2 > 0 ? r->i2 : 64);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow_array((void **)&rows, &cap, nrows + 1, sizeof(*rows)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        rows[nrows].id = sqlite3_column_int64(st, 0);
        rows[nrows].count = sqlite3_column_int64(st, 1);
        nrows++;
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->wdb, rc, "scan chunks", r->err, sizeof(r->err));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc =
        prep(j->wdb, "SELECT DISTINCT batch_seq FROM pieces WHERE chunk_id = ?",
             &st, r->err, sizeof(r->err));
    for (size_t i = 0; i < nrows && rc == 0; i++) {
        int64_t v[1] = {rows[i].id};

        sqlite3_bind_int64(st, 1, rows[i].id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (grow_array((void **)&seqs, &seqcap, nseq + 1, sizeof(*seqs)) <
                0) {
                rc = -ENOMEM;
                break;
            }
            seqs[nseq++] = sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
        if (rc == -ENOMEM) {
            goto out;
        }
        if (rc != SQLITE_DONE) {
            rc = sql_fail(j->wdb, rc, "scan pieces", r->err, sizeof(r->err));
            goto out;
        }
        rc = exec_i64(j->wdb, "DELETE FROM pieces WHERE chunk_id = ?", 1, v,
                      r->err, sizeof(r->err));
        if (rc == 0) {
            rc = delete_chunk(j, v[0], r->err, sizeof(r->err));
        }
        r->n1 += rows[i].count;
        if (rc == 0 && r->i3 > 0 && used_bytes(j) <= r->i3) {
            break; /* journal_retire_to: enough room again */
        }
    }
    /* finished batches left without pieces go too */
    for (size_t i = 0; i < nseq && rc == 0; i++) {
        int64_t v[2] = {seqs[i], seqs[i]};
        rc = exec_i64(j->wdb,
                      "DELETE FROM batches WHERE seq = ? AND state "
                      ">= " JOURNAL_SQL_DELIVERED " AND"
                      " NOT EXISTS (SELECT 1 FROM pieces WHERE batch_seq = ?)",
                      2, v, r->err, sizeof(r->err));
    }
    if (rc == 0) {
        int64_t v[2] = {r->i1, r->i2 > 0 ? r->i2 : 64};
        rc = exec_i64(j->wdb,
                      "DELETE FROM batches WHERE seq IN (SELECT seq FROM"
                      " batches b WHERE state >= " JOURNAL_SQL_DEAD
                      " AND created_ms < ? AND NOT"
                      " EXISTS (SELECT 1 FROM pieces WHERE batch_seq = b.seq)"
                      " LIMIT ?)",
                      2, v, r->err, sizeof(r->err));
    }
out:
    sqlite3_finalize(st);
    free(rows);
    free(seqs);
    return rc;
}

/* ------------------------------------------------ event classification */

/* What a reader needs to tell one chunk's events apart (see the essay). */
struct cls {
    int64_t batched;
    int64_t *dead_off;
    char **dead_reason;
    size_t ndead, deadcap, rcap;
    int64_t (*fl)[2]; /* in-flight ranges */
    size_t nfl, flcap;
};

static void cls_release(struct cls *c)
{
    for (size_t i = 0; i < c->ndead; i++) {
        free(c->dead_reason[i]);
    }
    free(c->dead_off);
    free(c->dead_reason);
    free(c->fl);
    memset(c, 0, sizeof(*c));
}

static int cls_load(sqlite3 *db, int64_t chunk_id, int64_t batched,
                    struct cls *c, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc;

    cls_release(c);
    c->batched = batched;
    rc = prep(db, "SELECT offset, reason FROM dead WHERE chunk_id = ?", &st,
              err, errlen);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, chunk_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *reason = (const char *)sqlite3_column_text(st, 1);

        if (grow_array((void **)&c->dead_off, &c->deadcap, c->ndead + 1,
                       sizeof(int64_t)) < 0 ||
            grow_array((void **)&c->dead_reason, &c->rcap, c->ndead + 1,
                       sizeof(char *)) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        c->dead_off[c->ndead] = sqlite3_column_int64(st, 0);
        c->dead_reason[c->ndead] = xstrdup(reason ? reason : "");
        c->ndead++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(db, rc, "read dead letters", err, errlen);
    }
    rc = prep(db,
              "SELECT bp.first_offset, bp.last_offset FROM pieces bp"
              " JOIN batches b ON b.seq = bp.batch_seq"
              " WHERE bp.chunk_id = ? AND b." JOURNAL_SQL_OPEN
              " AND (b.flags & 1) = 0",
              &st, err, errlen);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, chunk_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow_array((void **)&c->fl, &c->flcap, c->nfl + 1, sizeof(*c->fl)) <
            0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        c->fl[c->nfl][0] = sqlite3_column_int64(st, 0);
        c->fl[c->nfl][1] = sqlite3_column_int64(st, 1);
        c->nfl++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sql_fail(db, rc, "read pieces", err, errlen);
    }
    return 0;
}

static enum journal_event_state cls_state(const struct cls *c, int64_t off,
                                          const char **reason)
{
    *reason = NULL;
    for (size_t i = 0; i < c->ndead; i++) {
        if (c->dead_off[i] == off) {
            *reason = c->dead_reason[i];
            return JOURNAL_EV_DEAD;
        }
    }
    if (off > c->batched) {
        return JOURNAL_EV_PENDING;
    }
    for (size_t i = 0; i < c->nfl; i++) {
        if (off >= c->fl[i][0] && off <= c->fl[i][1]) {
            return JOURNAL_EV_INFLIGHT;
        }
    }
    return JOURNAL_EV_DELIVERED;
}

/* ------------------------------------------------- writer: requeue/replay */

static int op_requeue(struct journal *j, struct req *r)
{
    sqlite3_stmt *st = NULL;
    struct items items = {0};
    int64_t *ids = NULL;
    size_t nids = 0, idcap = 0;
    int64_t max_rows = r->i2 > 0 ? r->i2 : 10000;
    int rc;

    r->n1 = 0;
    rc = prep(j->wdb,
              "SELECT id, part_id, chunk_id, offset, route, value_len,"
              " timestamp_ms FROM dead WHERE (?1 > 0 AND id = ?1) OR"
              " (?1 <= 0 AND (?2 < 0 OR route = ?2))"
              " ORDER BY route, chunk_id, offset",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, r->i1);
    sqlite3_bind_int(st, 2, r->route);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct item it;

        it.chunk_id = sqlite3_column_int64(st, 2);
        it.part_id = sqlite3_column_int64(st, 1);
        it.idx = -1;
        it.offset = sqlite3_column_int64(st, 3);
        it.route = sqlite3_column_int(st, 4);
        it.bytes = sqlite3_column_int64(st, 5);
        it.ts = sqlite3_column_int64(st, 6);
        if (items_push(&items, &it) < 0 ||
            grow_array((void **)&ids, &idcap, nids + 1, sizeof(*ids)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        ids[nids++] = sqlite3_column_int64(st, 0);
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->wdb, rc, "read dead letters", r->err, sizeof(r->err));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = 0;
    if (items.n == 0) {
        if (r->i1 > 0) {
            set_err(r->err, sizeof(r->err), "unknown dead letter %" PRId64,
                    r->i1);
            rc = -ENOENT;
        }
        goto out;
    }
    /* positions in the chunk, so pieces can span consecutive members */
    for (size_t i = 0; i < items.n && rc == 0;) {
        size_t k = i;
        void *data = NULL;
        size_t len = 0;
        int64_t first, idx = 0;
        struct chunk_reader rd;
        struct chunk_event ce;

        rc = chunk_fetch(j->wdb, items.v[i].chunk_id, &data, &len, &first,
                         r->err, sizeof(r->err));
        if (rc < 0) {
            break;
        }
        chunk_reader_init(&rd, data, len, first);
        while (k < items.n && items.v[k].chunk_id == items.v[i].chunk_id &&
               chunk_reader_next(&rd, &ce) == 1) {
            if (ce.offset == items.v[k].offset) {
                items.v[k++].idx = idx;
            }
            idx++;
        }
        while (k < items.n && items.v[k].chunk_id == items.v[i].chunk_id) {
            k++; /* not found (cannot happen): its own piece */
        }
        free(data);
        i = k;
    }
    /* new unclaimed REQUEUE batches, per route, max_rows each */
    for (size_t i = 0; i < items.n && rc == 0;) {
        size_t k = i;
        char id[JOURNAL_BATCH_ID_MAX];

        while (k < items.n && items.v[k].route == items.v[i].route &&
               (int64_t)(k - i) < max_rows) {
            k++;
        }
        rc = insert_batch(j, items.v[i].route, JOURNAL_BATCH_REQUEUE, NULL, 0,
                          items.v + i, k - i, id, r->err, sizeof(r->err));
        i = k;
    }
    for (size_t i = 0; i < nids && rc == 0; i++) {
        int64_t v[1] = {ids[i]};

        rc = exec_i64(j->wdb, "DELETE FROM dead WHERE id = ?", 1, v, r->err,
                      sizeof(r->err));
        if (rc == 0) {
            rc =
                chunk_dead_adjust(j, items.v[i].chunk_id, -1, -items.v[i].bytes,
                                  1, r->err, sizeof(r->err));
        }
        r->pending_delta += items.v[i].bytes;
        r->n1++;
    }
out:
    sqlite3_finalize(st);
    free(ids);
    free(items.v);
    return rc;
}

/* The chunks of the route that hold delivered events in q's range:
 * *rows (id, and part_id in .first) and each partition's batch cursor in
 * *batched, both owned by the caller (free) even on failure. */
static int replay_scan(struct journal *j, struct req *r, struct chunkrow **rows,
                       int64_t **batched, size_t *nrows)
{
    const struct journal_replay_req *q = &r->replay;
    sqlite3_stmt *st = NULL;
    size_t n = 0, cap = 0, bcap = 0;
    int rc;

    rc = prep(j->wdb,
              "SELECT c.id, c.part_id, p.batched_offset FROM chunks c"
              " JOIN partitions p ON p.id = c.part_id WHERE c.route = ?1"
              " AND (?2 IS NULL OR p.topic = ?2) AND (?3 < 0 OR"
              " p.partition = ?3) AND (?4 < 0 OR c.last_offset >= ?4)"
              " AND (?5 < 0 OR c.first_offset <= ?5) AND (?6 < 0 OR"
              " c.ts_max >= ?6) AND (?7 < 0 OR c.ts_min <= ?7)"
              " AND c.count > c.undone + c.dead"
              " ORDER BY p.topic, p.partition, c.first_offset",
              &st, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int(st, 1, q->route);
    if (q->topic != NULL) {
        sqlite3_bind_text(st, 2, q->topic, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(st, 3, q->partition);
    sqlite3_bind_int64(st, 4, q->from_offset);
    sqlite3_bind_int64(st, 5, q->to_offset);
    sqlite3_bind_int64(st, 6, q->from_ts_ms);
    sqlite3_bind_int64(st, 7, q->to_ts_ms);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow_array((void **)rows, &cap, n + 1, sizeof(**rows)) < 0 ||
            grow_array((void **)batched, &bcap, n + 1, sizeof(**batched)) < 0) {
            rc = -ENOMEM;
            goto fail;
        }
        (*rows)[n].id = sqlite3_column_int64(st, 0);
        (*rows)[n].first = sqlite3_column_int64(st, 1); /* part_id */
        (*batched)[n] = sqlite3_column_int64(st, 2);
        n++;
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->wdb, rc, "scan chunks", r->err, sizeof(r->err));
        goto fail;
    }
    sqlite3_finalize(st);
    *nrows = n;
    return 0;
fail:
    sqlite3_finalize(st);
    *nrows = n;
    return rc;
}

static int op_replay(struct journal *j, struct req *r)
{
    const struct journal_replay_req *q = &r->replay;
    struct chunkrow *rows = NULL;
    int64_t *batched = NULL;
    size_t nrows = 0;
    struct items items = {0};
    struct cls c;
    int64_t bytes = 0;
    int rc;

    memset(&c, 0, sizeof(c));
    r->n1 = r->n2 = 0;
    if (q->max_rows <= 0 || q->max_bytes <= 0) {
        set_err(r->err, sizeof(r->err),
                "replay: max_rows and max_bytes must be > 0");
        return -EINVAL;
    }
    rc = replay_scan(j, r, &rows, &batched, &nrows);
    if (rc < 0) {
        goto out;
    }
    for (size_t i = 0; i <= nrows && rc == 0; i++) {
        void *data = NULL;
        size_t len = 0;
        int64_t first, idx = 0;
        struct chunk_reader rd;
        struct chunk_event ce;
        int k;

        if (i < nrows) {
            rc = cls_load(j->wdb, rows[i].id, batched[i], &c, r->err,
                          sizeof(r->err));
            if (rc == 0) {
                rc = chunk_fetch(j->wdb, rows[i].id, &data, &len, &first,
                                 r->err, sizeof(r->err));
            }
            if (rc < 0) {
                break;
            }
            chunk_reader_init(&rd, data, len, first);
        }
        while (i < nrows && (k = chunk_reader_next(&rd, &ce)) == 1) {
            const char *reason;
            struct item it;

            idx++;
            if ((q->from_offset >= 0 && ce.offset < q->from_offset) ||
                (q->to_offset >= 0 && ce.offset > q->to_offset) ||
                (q->from_ts_ms >= 0 && ce.timestamp_ms < q->from_ts_ms) ||
                (q->to_ts_ms >= 0 && ce.timestamp_ms > q->to_ts_ms) ||
                cls_state(&c, ce.offset, &reason) != JOURNAL_EV_DELIVERED) {
                continue;
            }
            if ((int64_t)items.n >= q->max_rows ||
                (items.n > 0 && bytes + (int64_t)ce.value_len > q->max_bytes)) {
                char id[JOURNAL_BATCH_ID_MAX];
                rc = insert_batch(j, q->route, JOURNAL_BATCH_REPLAY, NULL, 0,
                                  items.v, items.n, id, r->err, sizeof(r->err));
                if (rc < 0) {
                    break;
                }
                r->n1 += (int64_t)items.n;
                r->n2++;
                items.n = 0;
                bytes = 0;
            }
            it.chunk_id = rows[i].id;
            it.part_id = rows[i].first;
            it.idx = idx - 1;
            it.offset = ce.offset;
            it.bytes = (int64_t)ce.value_len;
            it.ts = ce.timestamp_ms;
            it.route = q->route;
            if (items_push(&items, &it) < 0) {
                rc = -ENOMEM;
                break;
            }
            bytes += it.bytes;
        }
        free(data);
        if (i == nrows && rc == 0 && items.n > 0) {
            char id[JOURNAL_BATCH_ID_MAX];
            rc = insert_batch(j, q->route, JOURNAL_BATCH_REPLAY, NULL, 0,
                              items.v, items.n, id, r->err, sizeof(r->err));
            r->n1 += (int64_t)items.n;
            r->n2++;
        }
    }
out:
    cls_release(&c);
    free(rows);
    free(batched);
    free(items.v);
    return rc;
}

/* ---------------------------------------------------------- disk space */

int64_t journal_effective_cap(int64_t max_bytes, int64_t fs_free_bytes,
                              int64_t file_bytes, int64_t reserve_bytes,
                              int *disk_limited)
{
    int64_t cap = max_bytes > 0 ? max_bytes : INT64_MAX;
    int64_t disk;

    if (disk_limited != NULL) {
        *disk_limited = 0;
    }
    if (reserve_bytes <= 0) {
        return cap;
    }
    disk = fs_free_bytes + file_bytes - reserve_bytes;
    if (disk < 0) {
        disk = 0;
    }
    if (disk < cap) {
        cap = disk;
        if (disk_limited != NULL) {
            *disk_limited = 1;
        }
    }
    return cap;
}

int journal_space_pressure(const struct journal_space *s, int64_t *target)
{
    int64_t cap = s->effective_cap;

    if (target != NULL) {
        *target = cap == INT64_MAX ? INT64_MAX : cap / 2;
    }
    if (s->full != JOURNAL_FULL_NO) {
        return 1;
    }
    if (cap == INT64_MAX) {
        return 0;
    }
    return s->used_bytes >= cap - cap / 4;
}

/* The directory that holds `path` (owned: free), for statvfs. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d;

    if (slash == NULL) {
        return xstrdup(".");
    }
    if (slash == path) {
        return xstrdup("/");
    }
    d = malloc((size_t)(slash - path) + 1);
    if (d != NULL) {
        memcpy(d, path, (size_t)(slash - path));
        d[slash - path] = '\0';
    }
    return d;
}

static int64_t file_size(const char *path, const char *suffix);

/* Measures the filesystem and the journal's files into *out (fs_*, file,
 * wal, effective cap); used_bytes is left to the caller. */
static int space_fill(const char *path, int64_t max_bytes, int64_t reserve,
                      int64_t fake_size, struct journal_space *out, char *err,
                      size_t errlen)
{
    char *dir = dir_of(path);
    struct statvfs sv;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    out->checked_ms = wall_ms();
    out->max_bytes = max_bytes;
    out->reserve_bytes = reserve;
    out->file_bytes = file_size(path, "");
    out->wal_bytes = file_size(path, "-wal");
    if (dir == NULL) {
        rc = -ENOMEM;
    } else if (fake_size > 0) {
        out->fs_bytes = fake_size;
        out->fs_free_bytes = fake_size - out->file_bytes - out->wal_bytes;
        if (out->fs_free_bytes < 0) {
            out->fs_free_bytes = 0;
        }
    } else if (statvfs(dir, &sv) < 0) {
        rc = -errno;
        set_err(err, errlen, "cannot measure the filesystem of '%s': %s", dir,
                strerror(errno));
    } else {
        out->fs_bytes = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize;
        out->fs_free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    }
    free(dir);
    out->effective_cap =
        journal_effective_cap(max_bytes, out->fs_free_bytes, out->file_bytes,
                              rc == 0 ? reserve : 0, &out->disk_limited);
    return rc;
}

/* Writer thread, before each group: the effective cap its appends obey. A
 * filesystem that cannot be measured leaves the previous value. */
static void space_measure_group(struct journal *j)
{
    struct journal_space sp;

    if (j->reserve_bytes <= 0) {
        return;
    }
    if (space_fill(j->path, j->max_bytes, j->reserve_bytes, j->fs_size_fake,
                   &sp, NULL, 0) == 0) {
        j->space_cap = sp.effective_cap;
    }
}

void journal_space(struct journal *j, struct journal_space *out)
{
    (void)space_fill(j->path, j->max_bytes, j->reserve_bytes, j->fs_size_fake,
                     out, NULL, 0);
    out->used_bytes = __atomic_load_n(&j->used_last, __ATOMIC_RELAXED);
    out->full = (enum journal_full)__atomic_load_n(&j->full, __ATOMIC_RELAXED);
}

int journal_space_probe(const char *path, int64_t max_bytes,
                        int64_t reserve_bytes, struct journal_space *out,
                        char *err, size_t errlen)
{
    int rc;

    clear_err(err, errlen);
    rc = space_fill(path, max_bytes, reserve_bytes, 0, out, err, errlen);
    out->used_bytes = out->file_bytes;
    return rc;
}

/* -------------------------------------------------------- writer thread */

static void req_reset_outputs(struct req *r)
{
    journal_append_result_release(&r->ares);
    journal_batch_free(r->b1);
    journal_batch_free(r->b2);
    r->b1 = r->b2 = NULL;
    memset(&r->dres, 0, sizeof(r->dres));
    r->n1 = r->n2 = 0;
    r->pending_delta = 0;
}

static int run_op(struct journal *j, struct req *r)
{
    switch (r->op) {
    case OP_APPEND:
        return op_append(j, r);
    case OP_CUT:
        return op_cut(j, r);
    case OP_SENT:
    case OP_DELIVERED:
    case OP_FAILED:
        return op_mark(j, r);
    case OP_DEAD:
        return op_dead(j, r);
    case OP_SPLIT:
        return op_split(j, r);
    case OP_DROP:
        return op_drop(j, r);
    case OP_RETIRE:
        return op_retire(j, r);
    case OP_REQUEUE:
        return op_requeue(j, r);
    case OP_REPLAY:
        return op_replay(j, r);
    case OP_EPOCH:
        return op_epoch(j, r);
    case OP_SCHEMA:
        return op_schema(j, r);
    }
    return -EINVAL;
}

static void req_fail(struct req *r, int status, const char *msg)
{
    req_reset_outputs(r);
    r->status = status;
    if (msg != NULL && r->err[0] == '\0') {
        snprintf(r->err, sizeof(r->err), "%s", msg);
    }
}

/*
 * Runs a group of requests (a NULL-terminated list through next, up to
 * `end`) in one transaction, each in its own savepoint, and commits once
 * (group commit: one fsync for all). Sets every request's status.
 */
/*
 * After each commit: the "full" state (journal_space) ends once the pages
 * in use are at or below 3/4 of the cap that refused (the pressure mark),
 * not when one append squeezes into a few freed pages of an otherwise full
 * journal (/readyz would flap), and also without an append (retirement
 * made room but intake has nothing left to write).
 */
static void space_full_clear(struct journal *j, int64_t used)
{
    int f = __atomic_load_n(&j->full, __ATOMIC_RELAXED);
    int64_t cap = f == JOURNAL_FULL_DISK  ? j->space_cap
                  : f == JOURNAL_FULL_CAP ? j->max_bytes
                                          : 0;

    if (cap <= 0 || cap == INT64_MAX || used <= cap - cap / 4) {
        __atomic_store_n(&j->full, JOURNAL_FULL_NO, __ATOMIC_RELAXED);
    }
}

/*
 * Writer thread, before a group, outside any transaction: when the disk
 * has less free space than the reserve and the -wal file is past its
 * journal_size_limit, checkpoint and truncate the WAL. A WAL that grew
 * while readers held snapshots keeps its size until a checkpoint resets
 * it, and with no commit coming (intake paused on the full disk, nothing
 * left to deliver) none would: a full disk that nothing can empty, since
 * even the retirement's deletes need WAL room. The busy wait is short:
 * readers that are still busy leave it to the next group.
 */
static void space_wal_truncate(struct journal *j)
{
    struct journal_space sp;
    int nlog = 0, nckpt = 0;
    int rc;

    if (j->reserve_bytes <= 0 ||
        space_fill(j->path, j->max_bytes, j->reserve_bytes, j->fs_size_fake,
                   &sp, NULL, 0) != 0 ||
        sp.fs_free_bytes >= j->reserve_bytes ||
        sp.wal_bytes <= j->reserve_bytes / 4) {
        return;
    }
    sqlite3_busy_timeout(j->wdb, 50);
    rc = sqlite3_wal_checkpoint_v2(j->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                   &nlog, &nckpt);
    sqlite3_busy_timeout(j->wdb, j->busy_ms);
    if (rc == SQLITE_OK) {
        __atomic_add_fetch(&j->wal_truncates, 1, __ATOMIC_RELAXED);
    }
}

static void run_group(struct journal *j, struct req *head, struct req *end)
{
    char err[ERR_MAX];
    struct req *r;
    int64_t used;
    int rc;

    for (r = head; r != end; r = r->next) {
        r->status = 1; /* 1 = not run yet / not final */
    }
    space_wal_truncate(j);
    space_measure_group(j);
retry:
    j->group_bytes = 0;
    rc = exec1(j->wdb, "BEGIN IMMEDIATE", err, sizeof(err));
    if (rc < 0) {
        for (r = head; r != end; r = r->next) {
            if (r->status == 1) {
                req_fail(r, rc, err);
            }
        }
        return;
    }
    for (r = head; r != end; r = r->next) {
        if (r->status != 1) {
            continue;
        }
        r->err[0] = '\0';
        rc = exec1(j->wdb, "SAVEPOINT r", r->err, sizeof(r->err));
        if (rc == 0) {
            rc = run_op(j, r);
        }
        if (rc == 0) {
            rc = exec1(j->wdb, "RELEASE r", r->err, sizeof(r->err));
            if (rc == 0) {
                if (r->op == OP_APPEND) {
                    j->group_bytes += r->ares.bytes;
                }
                continue;
            }
        }
        if (r->op == OP_APPEND && rc == -ENOSPC) {
            /* SQLITE_FULL: the disk itself (the cap checks set it too) */
            int none = JOURNAL_FULL_NO;
            __atomic_compare_exchange_n(&j->full, &none, JOURNAL_FULL_DISK, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED);
        }
        if (rc == -EIO && r->err[0] == '\0') {
            snprintf(r->err, sizeof(r->err), "journal: %s",
                     sqlite3_errmsg(j->wdb));
        }
        if (sqlite3_get_autocommit(j->wdb)) {
            /* SQLite rolled the whole transaction back (e.g. SQLITE_FULL
             * mid-statement): this request fails, the others run again */
            req_fail(r, rc, NULL);
            for (struct req *o = head; o != end; o = o->next) {
                if (o->status == 1) {
                    req_reset_outputs(o);
                }
            }
            goto retry;
        }
        sqlite3_exec(j->wdb, "ROLLBACK TO r", NULL, NULL, NULL);
        sqlite3_exec(j->wdb, "RELEASE r", NULL, NULL, NULL);
        req_fail(r, rc, NULL);
    }
    rc = exec1(j->wdb, "COMMIT", err, sizeof(err)); /* INV-1: the fsync */
    if (rc < 0) {
        sqlite3_exec(j->wdb, "ROLLBACK", NULL, NULL, NULL);
        for (r = head; r != end; r = r->next) {
            if (r->status == 1) {
                if (r->op == OP_APPEND && rc == -ENOSPC) {
                    __atomic_store_n(&j->full, JOURNAL_FULL_DISK,
                                     __ATOMIC_RELAXED);
                }
                req_fail(r, rc, err);
            }
        }
        return;
    }
    for (r = head; r != end; r = r->next) {
        if (r->status == 1) {
            r->status = 0;
            __atomic_add_fetch(&j->pending_bytes, r->pending_delta,
                               __ATOMIC_RELAXED);
        }
    }
    used = used_bytes(j);
    __atomic_store_n(&j->used_last, used, __ATOMIC_RELAXED);
    space_full_clear(j, used);
}

static void *writer_main(void *arg)
{
    struct journal *j = arg;

    /* top -H and /proc/PID/task/TID/comm tell it from the loop thread */
    pthread_setname_np(pthread_self(), "kadx-journal");
    pthread_mutex_lock(&j->mu);
    for (;;) {
        struct req *head, *end, *r, *next;
        int nasync = 0, n = 0;

        while (j->qhead == NULL && !j->stopping) {
            pthread_cond_wait(&j->cv, &j->mu);
        }
        if (j->qhead == NULL) {
            break;
        }
        head = j->qhead;
        for (end = head; end != NULL && n < GROUP_MAX_REQS; end = end->next) {
            n++;
        }
        j->qhead = end;
        if (end == NULL) {
            j->qtail = NULL;
        }
        pthread_mutex_unlock(&j->mu);

        run_group(j, head, end);

        pthread_mutex_lock(&j->mu);
        for (r = head; r != end; r = next) {
            next = r->next;
            r->next = NULL;
            if (r->sync) {
                r->done = 1;
                continue;
            }
            if (j->dtail != NULL) {
                j->dtail->next = r;
            } else {
                j->dhead = r;
            }
            j->dtail = r;
            nasync++;
        }
        pthread_cond_broadcast(&j->done_cv);
        if (nasync > 0 && j->async_init) {
            uv_async_send(&j->async);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Runs owed async callbacks (loop thread). */
static void call_cb(struct req *r)
{
    const char *e = r->status == 0 ? "" : r->err;

    switch (r->op) {
    case OP_APPEND:
        ((journal_append_cb)r->cb)(r->arg, r->status,
                                   r->status == 0 ? &r->ares : NULL, e);
        break;
    case OP_CUT: {
        struct journal_batch *b = r->b1;
        r->b1 = NULL;
        ((journal_batch_cb)r->cb)(r->arg, r->status, b, e);
        break;
    }
    case OP_SENT:
    case OP_DELIVERED:
    case OP_FAILED:
    case OP_DEAD:
        ((journal_done_cb)r->cb)(r->arg, r->status, e);
        break;
    case OP_SPLIT: {
        struct journal_batch *a = r->b1, *b = r->b2;
        r->b1 = r->b2 = NULL;
        ((journal_split_cb)r->cb)(r->arg, r->status, a, b, e);
        break;
    }
    case OP_DROP:
        ((journal_drop_cb)r->cb)(r->arg, r->status,
                                 r->status == 0 ? &r->dres : NULL, e);
        break;
    case OP_RETIRE:
    case OP_REQUEUE:
        ((journal_count_cb)r->cb)(r->arg, r->status, r->n1, e);
        break;
    case OP_REPLAY:
        ((journal_replay_cb)r->cb)(r->arg, r->status, r->n1, r->n2, e);
        break;
    case OP_EPOCH:
    case OP_SCHEMA:
        ((journal_count_cb)r->cb)(r->arg, r->status, r->n1, e);
        break;
    }
}

static void drain_done(struct journal *j)
{
    struct req *r, *next;

    pthread_mutex_lock(&j->mu);
    r = j->dhead;
    j->dhead = j->dtail = NULL;
    pthread_mutex_unlock(&j->mu);
    for (; r != NULL; r = next) {
        next = r->next;
        call_cb(r);
        req_free(r);
    }
}

static void on_async(uv_async_t *h)
{
    struct journal *j =
        (struct journal *)((char *)h - offsetof(struct journal, async));
    drain_done(j);
}

static void req_free(struct req *r)
{
    if (r == NULL) {
        return;
    }
    req_reset_outputs(r);
    free(r->arena);
    free(r);
}

static int submit(struct journal *j, struct req *r)
{
    pthread_mutex_lock(&j->mu);
    if (j->stopping || !j->writer_started) {
        pthread_mutex_unlock(&j->mu);
        return -ECANCELED;
    }
    r->next = NULL;
    if (j->qtail != NULL) {
        j->qtail->next = r;
    } else {
        j->qhead = r;
    }
    j->qtail = r;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

/* Runs r on the writer and waits for its commit. r lives on the caller's
 * stack; its outputs are left in r for the caller. */
static int run_sync(struct journal *j, struct req *r, char *err, size_t errlen)
{
    int rc;

    clear_err(err, errlen);
    if (j->read_only) {
        set_err(err, errlen, "journal '%s' is open read-only", j->path);
        return -EROFS;
    }
    r->sync = 1;
    rc = submit(j, r);
    if (rc < 0) {
        set_err(err, errlen, "journal is closing");
        return rc;
    }
    pthread_mutex_lock(&j->mu);
    while (!r->done) {
        pthread_cond_wait(&j->done_cv, &j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    if (r->status < 0) {
        set_err(err, errlen, "%s", r->err);
    }
    return r->status;
}

/* Queues an async request (owned; freed here on failure). */
static int run_async(struct journal *j, struct req *r)
{
    int rc;

    if (j->read_only || j->loop == NULL) {
        req_free(r);
        return j->read_only ? -EROFS : -EINVAL;
    }
    rc = submit(j, r);
    if (rc < 0) {
        req_free(r);
    }
    return rc;
}

static struct req *req_new(enum op op, void (*cb)(void), void *arg,
                           size_t arena)
{
    struct req *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->op = op;
    r->cb = cb;
    r->arg = arg;
    if (arena > 0) {
        r->arena = malloc(arena);
        if (r->arena == NULL) {
            free(r);
            return NULL;
        }
    }
    return r;
}

static int id_ok(const char *id)
{
    return id != NULL && id[0] != '\0' && strlen(id) < JOURNAL_BATCH_ID_MAX;
}

/* ------------------------------------------------------------ open/close */

static void journal_free_mem(struct journal *j)
{
    free(j->path);
    free(j->lock_path);
    free(j);
}

static void on_async_closed(uv_handle_t *h)
{
    struct journal *j =
        (struct journal *)((char *)h - offsetof(struct journal, async));
    journal_free_mem(j);
}

/* The writer's connection: created private, WAL, the sync mode and size
 * limits, migrated, with its statements prepared (journal_open). */
static int open_writer(struct journal *j, const struct journal_options *opts,
                       char *err, size_t errlen)
{
    char sql[96];
    int64_t v;
    int rc;

    rc = create_private(j, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = open_db(j, opts, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &j->wdb,
                 err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = exec1(j->wdb, "PRAGMA page_size=4096", err, errlen);
    if (rc == 0) {
        rc = exec1(j->wdb, "PRAGMA journal_mode=WAL", err, errlen);
    }
    if (rc == 0) {
        rc = exec1(j->wdb,
                   opts->sync_full ? "PRAGMA synchronous=FULL"
                                   : "PRAGMA synchronous=NORMAL",
                   err, errlen);
    }
    if (rc == 0) {
        /* Debian's SQLite is built with SQLITE_SECURE_DELETE: every page a
         * retirement frees would be zeroed, i.e. written again into the
         * WAL, so retiring N MiB of chunks wrote N MiB of WAL on the disk
         * it was meant to free (on a small disk: 0 bytes free and a WAL
         * that could no longer be checkpointed). FAST zeroes deleted
         * content only where that costs no extra I/O; freed pages keep
         * old event bytes inside the 0600 journal file, as its live pages
         * hold the pending ones (admin/SECURITY.md). */
        rc = exec1(j->wdb, "PRAGMA secure_delete=FAST", err, errlen);
    }
    if (rc == 0) {
        /* after a checkpoint the -wal file is cut back to 64 MiB
         * instead of keeping its largest size; with space awareness
         * to a quarter of the reserve, if smaller (a WAL that keeps
         * its peak size holds disk space the journal's pages and the
         * reserve need) */
        int64_t lim = (int64_t)64 << 20;

        if (j->reserve_bytes > 0 && j->reserve_bytes / 4 < lim) {
            lim = j->reserve_bytes / 4;
        }
        snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%" PRId64, lim);
        rc = exec1(j->wdb, sql, err, errlen);
    }
    if (rc == 0 && opts->disk_limit_bytes > 0) {
        snprintf(sql, sizeof(sql), "PRAGMA max_page_count=%" PRId64,
                 opts->disk_limit_bytes / 4096 > 0
                     ? opts->disk_limit_bytes / 4096
                     : 1);
        rc = exec1(j->wdb, sql, err, errlen);
    }
    if (rc == 0) {
        rc = migrate(j, err, errlen);
    }
    if (rc == 0) {
        rc = load_meta(j, j->wdb, err, errlen);
    }
    if (rc == 0) {
        rc = query_i64(j->wdb, "SELECT COALESCE(MAX(seq), 0) FROM batches", &v,
                       err, errlen);
        j->next_seq = v + 1;
    }
    if (rc == 0) {
        rc = query_i64(j->wdb,
                       "SELECT COALESCE(SUM(undone_bytes), 0) FROM chunks",
                       &j->pending_bytes, err, errlen);
    }
    if (rc == 0) {
        rc = wstmts_prepare(j, err, errlen);
    }
    if (rc == 0) {
        j->used_last = used_bytes(j);
    }
    if (rc < 0) {
        return rc;
    }
    return rc;
}

/* A read-only open: the schema must be the current one (the read
 * queries know no other); loads the metadata (journal_open). */
static int open_read_only(struct journal *j, char *err, size_t errlen)
{
    int64_t ver = 0;
    int rc;

    rc = query_i64(j->rdb, "PRAGMA user_version", &ver, err, errlen);
    if (rc == 0 && ver != NMIGRATIONS) {
        /* the read queries know only the current schema */
        set_err(err, errlen,
                "journal '%s' has schema version %" PRId64
                ", this kadx reads %d: open it read-write once "
                "(kadx run) to migrate it",
                j->path, ver, NMIGRATIONS);
        rc = -EINVAL;
    }
    if (rc == 0) {
        rc = load_meta(j, j->rdb, err, errlen);
    }
    if (rc == 0) {
        rc = query_i64(j->rdb,
                       "SELECT COALESCE(SUM(undone_bytes), 0) FROM chunks",
                       &j->pending_bytes, err, errlen);
    }
    return rc;
}

int journal_open(const struct journal_options *opts, struct journal **out,
                 char *err, size_t errlen)
{
    struct journal *j;
    size_t plen;
    int rc;

    clear_err(err, errlen);
    *out = NULL;
    if (opts == NULL || opts->path == NULL || opts->path[0] == '\0') {
        set_err(err, errlen, "journal path is empty");
        return -EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return -ENOMEM;
    }
    j->lock_fd = -1;
    plen = strlen(opts->path);
    j->path = xstrdup(opts->path);
    j->lock_path = malloc(plen + 6);
    if (j->path == NULL || j->lock_path == NULL) {
        journal_free_mem(j);
        return -ENOMEM;
    }
    snprintf(j->lock_path, plen + 6, "%s.lock", opts->path);
    j->read_only = opts->read_only != 0;
    j->sync_full = opts->sync_full;
    j->max_bytes = opts->max_bytes;
    j->reserve_bytes = opts->reserve_bytes > 0 ? opts->reserve_bytes : 0;
    j->space_cap = INT64_MAX;
    j->fs_size_fake = opts->fs_size_bytes > 0 ? opts->fs_size_bytes : 0;
    j->loop = opts->loop;
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->rmu, NULL);
    pthread_cond_init(&j->cv, NULL);
    pthread_cond_init(&j->done_cv, NULL);

    if (j->read_only) {
        struct stat sb;
        if (stat(j->path, &sb) < 0) {
            set_err(err, errlen, "journal '%s' does not exist", j->path);
            rc = -ENOENT;
            goto fail;
        }
    }
    perm_check(j, "");
    perm_check(j, "-wal");
    perm_check(j, "-shm");
    perm_check(j, ".lock");
    perm_check(j, ".settled"); /* gateway/intake.c's settled offsets */
    rc = lock_take(j, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    if (!j->read_only) {
        rc = open_writer(j, opts, err, errlen);
        if (rc < 0) {
            goto fail;
        }
    }
    rc = open_db(j, opts, SQLITE_OPEN_READONLY, &j->rdb, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    if (j->read_only) {
        rc = open_read_only(j, err, errlen);
        if (rc < 0) {
            goto fail;
        }
    }
    if (j->loop != NULL && !j->read_only) {
        rc = uv_async_init(j->loop, &j->async, on_async);
        if (rc < 0) {
            set_err(err, errlen, "uv_async_init: %s", uv_strerror(rc));
            goto fail;
        }
        j->async_init = 1;
    }
    if (!j->read_only) {
        rc = -pthread_create(&j->writer, NULL, writer_main, j);
        if (rc < 0) {
            set_err(err, errlen, "cannot start the journal writer: %s",
                    strerror(-rc));
            goto fail;
        }
        j->writer_started = 1;
    }
    *out = j;
    return 0;

fail:
    journal_close(j);
    return rc;
}

void journal_close(struct journal *j)
{
    if (j == NULL) {
        return;
    }
    pthread_mutex_lock(&j->mu);
    j->stopping = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->writer_started) {
        pthread_join(j->writer, NULL); /* drains the queue first */
        j->writer_started = 0;
    }
    drain_done(j);
    wstmts_finalize(&j->ws);
    /* The read connection first: the last connection to close checkpoints
     * the WAL into the database file and removes it. */
    sqlite3_close(j->rdb);
    sqlite3_close(j->wdb);
    j->wdb = j->rdb = NULL;
    chunk_buf_release(&j->wbuf);
    if (j->lock_fd >= 0) {
        close(j->lock_fd); /* releases the OFD lock */
        j->lock_fd = -1;
    }
    pthread_mutex_destroy(&j->mu);
    pthread_mutex_destroy(&j->rmu);
    pthread_cond_destroy(&j->cv);
    pthread_cond_destroy(&j->done_cv);
    if (j->async_init) {
        uv_close((uv_handle_t *)&j->async, on_async_closed);
        return;
    }
    journal_free_mem(j);
}

const char *journal_uuid(const struct journal *j)
{
    return j->uuid;
}

const char *journal_path(const struct journal *j)
{
    return j->path;
}

int64_t journal_pending_bytes(const struct journal *j)
{
    return __atomic_load_n(&j->pending_bytes, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------ write wrappers */

int journal_append(struct journal *j, const struct journal_event *ev, size_t n,
                   struct journal_append_result *res, char *err, size_t errlen)
{
    struct req r;
    int rc;

    memset(&r, 0, sizeof(r));
    if (res != NULL) {
        memset(res, 0, sizeof(*res));
    }
    if (n > 0 && ev == NULL) {
        set_err(err, errlen, "append: no events");
        return -EINVAL;
    }
    r.op = OP_APPEND;
    r.ev = ev;
    r.nev = n;
    rc = run_sync(j, &r, err, errlen);
    if (rc == 0 && res != NULL) {
        *res = r.ares; /* ownership moves to the caller */
        memset(&r.ares, 0, sizeof(r.ares));
    }
    req_reset_outputs(&r);
    return rc;
}

/* Copies n events and their bytes into one block owned by r. */
static int copy_events(struct req *r, const struct journal_event *ev, size_t n)
{
    size_t total = n * sizeof(*ev);
    struct journal_event *out;
    char *p;

    for (size_t i = 0; i < n; i++) {
        if (ev[i].topic == NULL) {
            return -EINVAL;
        }
        total += strlen(ev[i].topic) + 1 + ev[i].key_len + ev[i].value_len +
                 ev[i].headers_len;
    }
    r->arena = malloc(total > 0 ? total : 1);
    if (r->arena == NULL) {
        return -ENOMEM;
    }
    out = r->arena;
    p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        size_t tl = strlen(ev[i].topic) + 1;

        out[i] = ev[i];
        memcpy(p, ev[i].topic, tl);
        out[i].topic = p;
        p += tl;
        if (ev[i].key != NULL) {
            if (ev[i].key_len > 0) {
                memcpy(p, ev[i].key, ev[i].key_len);
            }
            out[i].key = p;
            p += ev[i].key_len;
        }
        if (ev[i].value != NULL) {
            if (ev[i].value_len > 0) {
                memcpy(p, ev[i].value, ev[i].value_len);
            }
            out[i].value = p;
            p += ev[i].value_len;
        }
        if (ev[i].headers != NULL) {
            if (ev[i].headers_len > 0) {
                memcpy(p, ev[i].headers, ev[i].headers_len);
            }
            out[i].headers = p;
            p += ev[i].headers_len;
        }
    }
    r->ev = out;
    r->nev = n;
    return 0;
}

int journal_append_async(struct journal *j, const struct journal_event *ev,
                         size_t n, journal_append_cb cb, void *arg)
{
    struct req *r;
    int rc;

    if (cb == NULL || (n > 0 && ev == NULL)) {
        return -EINVAL;
    }
    r = req_new(OP_APPEND, (void (*)(void))cb, arg, 0);
    if (r == NULL) {
        return -ENOMEM;
    }
    rc = copy_events(r, ev, n);
    if (rc < 0) {
        req_free(r);
        return rc;
    }
    return run_async(j, r);
}

int journal_append_async_borrowed(struct journal *j,
                                  const struct journal_event *ev, size_t n,
                                  journal_append_cb cb, void *arg)
{
    struct req *r;

    if (cb == NULL || (n > 0 && ev == NULL)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (ev[i].topic == NULL) {
            return -EINVAL;
        }
    }
    r = req_new(OP_APPEND, (void (*)(void))cb, arg, 0);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->ev = ev; /* the caller keeps them until cb */
    r->nev = n;
    return run_async(j, r);
}

/* Copies a cut request (and its settled topics) into r's arena. */
static int copy_cut(struct req *r, const struct journal_cut_req *q)
{
    size_t total = q->nsettled * sizeof(struct journal_offset);
    struct journal_offset *s;
    char *p;

    for (size_t i = 0; i < q->nsettled; i++) {
        if (q->settled[i].topic == NULL) {
            return -EINVAL;
        }
        total += strlen(q->settled[i].topic) + 1;
    }
    r->arena = malloc(total > 0 ? total : 1);
    if (r->arena == NULL) {
        return -ENOMEM;
    }
    s = r->arena;
    p = (char *)(s + q->nsettled);
    for (size_t i = 0; i < q->nsettled; i++) {
        size_t tl = strlen(q->settled[i].topic) + 1;
        s[i] = q->settled[i];
        memcpy(p, q->settled[i].topic, tl);
        s[i].topic = p;
        p += tl;
    }
    r->cut = *q;
    r->cut.settled = s;
    return 0;
}

static int cut_check(const struct journal_cut_req *q)
{
    if (q == NULL || (q->nsettled > 0 && q->settled == NULL)) {
        return -EINVAL;
    }
    return 0;
}

int journal_batch_cut(struct journal *j, const struct journal_cut_req *req,
                      struct journal_batch **out, char *err, size_t errlen)
{
    struct req r;
    int rc;

    *out = NULL;
    if (cut_check(req) < 0) {
        set_err(err, errlen, "batch cut: bad request");
        return -EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.op = OP_CUT;
    r.cut = *req;
    rc = run_sync(j, &r, err, errlen);
    if (rc == 0) {
        *out = r.b1;
        r.b1 = NULL;
    }
    req_reset_outputs(&r);
    return rc;
}

int journal_batch_cut_async(struct journal *j,
                            const struct journal_cut_req *req,
                            journal_batch_cb cb, void *arg)
{
    struct req *r;
    int rc;

    if (cb == NULL || cut_check(req) < 0) {
        return -EINVAL;
    }
    r = req_new(OP_CUT, (void (*)(void))cb, arg, 0);
    if (r == NULL) {
        return -ENOMEM;
    }
    rc = copy_cut(r, req);
    if (rc < 0) {
        req_free(r);
        return rc;
    }
    return run_async(j, r);
}

/*
 * The scalar arguments most requests carry, set the same way by a call's
 * sync and async forms (req_sync, req_async). id: a batch id or NULL;
 * text: borrowed by a sync request, copied into the arena by an async one
 * (cut to text_max - 1 bytes when text_max > 0).
 */
struct req_args {
    const char *id;
    const char *text;
    size_t text_max;
    int32_t partition;
    int route;
    int64_t now_ms, i1, i2, i3;
};

static void req_set(struct req *r, const struct req_args *a)
{
    if (a->id != NULL) {
        snprintf(r->id, sizeof(r->id), "%s", a->id);
    }
    r->partition = a->partition;
    r->route = a->route;
    r->now_ms = a->now_ms;
    r->i1 = a->i1;
    r->i2 = a->i2;
    r->i3 = a->i3;
}

/* Runs op on the stack request r (its outputs are read by the caller). */
static int req_sync(struct journal *j, enum op op, const struct req_args *a,
                    struct req *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    req_set(r, a);
    r->text = a->text;
    return run_sync(j, r, err, errlen);
}

/* Queues op with a copy of a's text; cb runs on the loop (run_async). */
static int req_async(struct journal *j, enum op op, const struct req_args *a,
                     void (*cb)(void), void *arg)
{
    size_t tl = 0;
    struct req *r;

    if (cb == NULL) {
        return -EINVAL;
    }
    if (a->text != NULL) {
        tl = (a->text_max > 0 ? strnlen(a->text, a->text_max - 1)
                              : strlen(a->text)) +
             1;
    }
    r = req_new(op, cb, arg, tl);
    if (r == NULL) {
        return -ENOMEM;
    }
    req_set(r, a);
    if (a->text != NULL) {
        memcpy(r->arena, a->text, tl - 1);
        ((char *)r->arena)[tl - 1] = '\0';
        r->text = r->arena;
    }
    return run_async(j, r);
}

/* Common shape of the marks: id, now, an optional text. */
static int mark_sync(struct journal *j, enum op op, const char *id,
                     int64_t now_ms, int64_t i1, const char *text, char *err,
                     size_t errlen)
{
    struct req_args a = {.id = id, .text = text, .now_ms = now_ms, .i1 = i1};
    struct req r;

    if (!id_ok(id)) {
        set_err(err, errlen, "bad batch id");
        return -EINVAL;
    }
    return req_sync(j, op, &a, &r, err, errlen);
}

static int mark_async(struct journal *j, enum op op, const char *id,
                      int64_t now_ms, int64_t i1, const char *text,
                      journal_done_cb cb, void *arg)
{
    struct req_args a = {.id = id,
                         .text = text,
                         .text_max = LAST_ERROR_MAX + 1,
                         .now_ms = now_ms,
                         .i1 = i1};

    if (!id_ok(id)) {
        return -EINVAL;
    }
    return req_async(j, op, &a, (void (*)(void))cb, arg);
}

int journal_batch_mark_sent(struct journal *j, const char *id, int64_t now_ms,
                            char *err, size_t errlen)
{
    return mark_sync(j, OP_SENT, id, now_ms, 0, NULL, err, errlen);
}

int journal_batch_mark_sent_async(struct journal *j, const char *id,
                                  int64_t now_ms, journal_done_cb cb, void *arg)
{
    return mark_async(j, OP_SENT, id, now_ms, 0, NULL, cb, arg);
}

int journal_batch_mark_delivered(struct journal *j, const char *id,
                                 int64_t now_ms, char *err, size_t errlen)
{
    return mark_sync(j, OP_DELIVERED, id, now_ms, 0, NULL, err, errlen);
}

int journal_batch_mark_delivered_async(struct journal *j, const char *id,
                                       int64_t now_ms, journal_done_cb cb,
                                       void *arg)
{
    return mark_async(j, OP_DELIVERED, id, now_ms, 0, NULL, cb, arg);
}

int journal_batch_mark_failed(struct journal *j, const char *id,
                              int64_t next_try_ms, const char *error, char *err,
                              size_t errlen)
{
    return mark_sync(j, OP_FAILED, id, 0, next_try_ms, error, err, errlen);
}

int journal_batch_mark_failed_async(struct journal *j, const char *id,
                                    int64_t next_try_ms, const char *error,
                                    journal_done_cb cb, void *arg)
{
    return mark_async(j, OP_FAILED, id, 0, next_try_ms, error, cb, arg);
}

int journal_batch_mark_dead(struct journal *j, const char *id,
                            const struct journal_offset *refs, size_t n,
                            const char *reason, int64_t now_ms, char *err,
                            size_t errlen)
{
    struct req r;

    if (!id_ok(id) || (n > 0 && refs == NULL)) {
        set_err(err, errlen, "mark dead: bad arguments");
        return -EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.op = OP_DEAD;
    snprintf(r.id, sizeof(r.id), "%s", id);
    r.refs = refs;
    r.nrefs = n;
    r.text = reason;
    r.now_ms = now_ms;
    return run_sync(j, &r, err, errlen);
}

int journal_batch_mark_dead_async(struct journal *j, const char *id,
                                  const struct journal_offset *refs, size_t n,
                                  const char *reason, int64_t now_ms,
                                  journal_done_cb cb, void *arg)
{
    size_t rl = reason ? strnlen(reason, REASON_MAX) + 1 : 1;
    size_t total = n * sizeof(*refs) + rl;
    struct journal_offset *o;
    struct req *r;
    char *p;

    if (cb == NULL || !id_ok(id) || (n > 0 && refs == NULL)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (refs[i].topic == NULL) {
            return -EINVAL;
        }
        total += strlen(refs[i].topic) + 1;
    }
    r = req_new(OP_DEAD, (void (*)(void))cb, arg, total);
    if (r == NULL) {
        return -ENOMEM;
    }
    o = r->arena;
    p = (char *)(o + n);
    for (size_t i = 0; i < n; i++) {
        size_t tl = strlen(refs[i].topic) + 1;
        o[i] = refs[i];
        memcpy(p, refs[i].topic, tl);
        o[i].topic = p;
        p += tl;
    }
    if (reason != NULL) {
        memcpy(p, reason, rl - 1);
    }
    p[rl - 1] = '\0';
    r->text = p;
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->refs = o;
    r->nrefs = n;
    r->now_ms = now_ms;
    return run_async(j, r);
}

int journal_batch_split(struct journal *j, const char *id, int64_t at,
                        struct journal_batch **first,
                        struct journal_batch **second, char *err, size_t errlen)
{
    struct req_args a = {.id = id, .i1 = at};
    struct req r;
    int rc;

    *first = *second = NULL;
    if (!id_ok(id)) {
        set_err(err, errlen, "bad batch id");
        return -EINVAL;
    }
    rc = req_sync(j, OP_SPLIT, &a, &r, err, errlen);
    if (rc == 0) {
        *first = r.b1;
        *second = r.b2;
        r.b1 = r.b2 = NULL;
    }
    req_reset_outputs(&r);
    return rc;
}

int journal_batch_split_async(struct journal *j, const char *id, int64_t at,
                              journal_split_cb cb, void *arg)
{
    struct req_args a = {.id = id, .i1 = at};

    if (!id_ok(id)) {
        return -EINVAL;
    }
    return req_async(j, OP_SPLIT, &a, (void (*)(void))cb, arg);
}

int journal_drop_partition(struct journal *j, const char *topic,
                           int32_t partition, int64_t after_offset,
                           struct journal_drop_result *res, char *err,
                           size_t errlen)
{
    struct req_args a = {
        .text = topic, .partition = partition, .i1 = after_offset};
    struct req r;
    int rc;

    if (topic == NULL) {
        set_err(err, errlen, "drop: no topic");
        return -EINVAL;
    }
    rc = req_sync(j, OP_DROP, &a, &r, err, errlen);
    if (rc == 0 && res != NULL) {
        *res = r.dres;
    }
    return rc;
}

int journal_drop_partition_async(struct journal *j, const char *topic,
                                 int32_t partition, int64_t after_offset,
                                 journal_drop_cb cb, void *arg)
{
    struct req_args a = {
        .text = topic, .partition = partition, .i1 = after_offset};

    if (topic == NULL) {
        return -EINVAL;
    }
    return req_async(j, OP_DROP, &a, (void (*)(void))cb, arg);
}

int journal_new_epoch(struct journal *j, const char *topic, int32_t partition,
                      int route, int64_t start_offset, int64_t *epoch,
                      char *err, size_t errlen)
{
    struct req_args a = {.text = topic,
                         .partition = partition,
                         .route = route,
                         .i1 = start_offset};
    struct req r;
    int rc;

    if (topic == NULL || start_offset < 0) {
        set_err(err, errlen, "new epoch: no topic or a negative offset");
        return -EINVAL;
    }
    rc = req_sync(j, OP_EPOCH, &a, &r, err, errlen);
    if (rc == 0 && epoch != NULL) {
        *epoch = r.n1;
    }
    return rc;
}

int journal_new_epoch_async(struct journal *j, const char *topic,
                            int32_t partition, int route, int64_t start_offset,
                            journal_count_cb cb, void *arg)
{
    struct req_args a = {.text = topic,
                         .partition = partition,
                         .route = route,
                         .i1 = start_offset};

    if (topic == NULL || start_offset < 0) {
        return -EINVAL;
    }
    return req_async(j, OP_EPOCH, &a, (void (*)(void))cb, arg);
}

/* journal_retire and journal_retire_to: target 0 = no target. */
static int retire_sync(struct journal *j, int64_t cutoff_ms, int64_t target,
                       int max_chunks, int64_t *deleted, char *err,
                       size_t errlen)
{
    struct req_args a = {.i1 = cutoff_ms, .i2 = max_chunks, .i3 = target};
    struct req r;
    int rc;

    rc = req_sync(j, OP_RETIRE, &a, &r, err, errlen);
    if (deleted != NULL) {
        *deleted = rc == 0 ? r.n1 : 0;
    }
    return rc;
}

static int retire_async(struct journal *j, int64_t cutoff_ms, int64_t target,
                        int max_chunks, journal_count_cb cb, void *arg)
{
    struct req_args a = {.i1 = cutoff_ms, .i2 = max_chunks, .i3 = target};

    return req_async(j, OP_RETIRE, &a, (void (*)(void))cb, arg);
}

int journal_retire(struct journal *j, int64_t cutoff_ms, int max_chunks,
                   int64_t *deleted, char *err, size_t errlen)
{
    return retire_sync(j, cutoff_ms, 0, max_chunks, deleted, err, errlen);
}

int journal_retire_async(struct journal *j, int64_t cutoff_ms, int max_chunks,
                         journal_count_cb cb, void *arg)
{
    return retire_async(j, cutoff_ms, 0, max_chunks, cb, arg);
}

int journal_retire_to(struct journal *j, int64_t cutoff_ms,
                      int64_t target_used_bytes, int max_chunks,
                      int64_t *deleted, char *err, size_t errlen)
{
    return retire_sync(j, cutoff_ms,
                       target_used_bytes > 0 ? target_used_bytes : 1,
                       max_chunks, deleted, err, errlen);
}

int journal_retire_to_async(struct journal *j, int64_t cutoff_ms,
                            int64_t target_used_bytes, int max_chunks,
                            journal_count_cb cb, void *arg)
{
    return retire_async(j, cutoff_ms,
                        target_used_bytes > 0 ? target_used_bytes : 1,
                        max_chunks, cb, arg);
}

int journal_purge_delivered(struct journal *j, int64_t cutoff_ms,
                            int64_t *deleted, char *err, size_t errlen)
{
    int64_t total = 0, d;
    int rc;

    do {
        rc = journal_retire(j, cutoff_ms, 256, &d, err, errlen);
        total += rc == 0 ? d : 0;
    } while (rc == 0 && d > 0);
    if (deleted != NULL) {
        *deleted = total;
    }
    return rc;
}

int journal_dead_requeue(struct journal *j, int route, int64_t id,
                         int64_t max_rows, int64_t *requeued, char *err,
                         size_t errlen)
{
    struct req_args a = {.route = route, .i1 = id, .i2 = max_rows};
    struct req r;
    int rc;

    rc = req_sync(j, OP_REQUEUE, &a, &r, err, errlen);
    if (requeued != NULL) {
        *requeued = rc == 0 ? r.n1 : 0;
    }
    return rc;
}

int journal_dead_requeue_async(struct journal *j, int route, int64_t id,
                               int64_t max_rows, journal_count_cb cb, void *arg)
{
    struct req_args a = {.route = route, .i1 = id, .i2 = max_rows};

    return req_async(j, OP_REQUEUE, &a, (void (*)(void))cb, arg);
}

int journal_replay(struct journal *j, const struct journal_replay_req *req,
                   int64_t *nevents, int64_t *nbatches, char *err,
                   size_t errlen)
{
    struct req r;
    int rc;

    if (req == NULL) {
        set_err(err, errlen, "replay: no request");
        return -EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.op = OP_REPLAY;
    r.replay = *req;
    rc = run_sync(j, &r, err, errlen);
    if (nevents != NULL) {
        *nevents = rc == 0 ? r.n1 : 0;
    }
    if (nbatches != NULL) {
        *nbatches = rc == 0 ? r.n2 : 0;
    }
    return rc;
}

int journal_replay_async(struct journal *j,
                         const struct journal_replay_req *req,
                         journal_replay_cb cb, void *arg)
{
    size_t tl = req && req->topic ? strlen(req->topic) + 1 : 0;
    struct req *r;

    if (cb == NULL || req == NULL) {
        return -EINVAL;
    }
    r = req_new(OP_REPLAY, (void (*)(void))cb, arg, tl);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->replay = *req;
    if (tl > 0) {
        memcpy(r->arena, req->topic, tl);
        r->replay.topic = r->arena;
    }
    return run_async(j, r);
}

/* ---------------------------------------------------------------- reads */

/*
 * The read connection (rdb) is shared by the loop and the thread pool:
 * reads take rmu and run in one read transaction, so a multi-statement
 * read sees one snapshot of the WAL.
 */
static void read_begin(struct journal *j)
{
    pthread_mutex_lock(&j->rmu);
    sqlite3_exec(j->rdb, "BEGIN", NULL, NULL, NULL);
}

/* Ends read_begin(): finalizes st (NULL ok), commits, unlocks. */
static void read_end(struct journal *j, sqlite3_stmt *st)
{
    sqlite3_finalize(st);
    sqlite3_exec(j->rdb, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&j->rmu);
}

int journal_high_offset(struct journal *j, const char *topic, int32_t partition,
                        int64_t *off, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc;

    clear_err(err, errlen);
    *off = -1;
    if (topic == NULL) {
        set_err(err, errlen, "high offset: no topic");
        return -EINVAL;
    }
    pthread_mutex_lock(&j->rmu);
    rc = prep(j->rdb,
              "SELECT high_offset FROM partitions WHERE topic = ?"
              " AND partition = ? AND sealed = 0",
              &st, err, errlen);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, partition);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *off = sqlite3_column_int64(st, 0);
            rc = 0;
        } else if (rc == SQLITE_DONE) {
            rc = 0;
        } else {
            rc = sql_fail(j->rdb, rc, "read partition", err, errlen);
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&j->rmu);
    return rc;
}

int journal_batch_load(struct journal *j, const char *id,
                       struct journal_batch **out, char *err, size_t errlen)
{
    int rc;

    clear_err(err, errlen);
    *out = NULL;
    if (!id_ok(id)) {
        set_err(err, errlen, "bad batch id");
        return -EINVAL;
    }
    pthread_mutex_lock(&j->rmu);
    rc =
        sqlite3_exec(j->rdb, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
    if (rc == 0) {
        rc = batch_read(j->rdb, id, 1, out, NULL, NULL, err, errlen);
        sqlite3_exec(j->rdb, "COMMIT", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&j->rmu);
    return rc;
}

int journal_batches_unfinished(struct journal *j, int route,
                               struct journal_batch **list, size_t *n,
                               char *err, size_t errlen)
{
    struct journal_batch *v = NULL;
    size_t nv = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    int rc;

    clear_err(err, errlen);
    *list = NULL;
    *n = 0;
    read_begin(j);
    rc = prep(j->rdb,
              "SELECT " BATCH_COLS " FROM batches WHERE " JOURNAL_SQL_OPEN
              " AND (?1 < 0 OR route = ?1) ORDER BY seq",
              &st, err, errlen);
    if (rc < 0) {
        goto out;
    }
    sqlite3_bind_int(st, 1, route);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = 0;

        if (grow_array((void **)&v, &cap, nv + 1, sizeof(*v)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        rc = batch_fill_row(st, &v[nv], &seq);
        nv++;
        if (rc == 0) {
            rc = batch_read_members(j->rdb, seq, &v[nv - 1], 0, NULL, err,
                                    errlen);
        }
        if (rc < 0) {
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->rdb, rc, "read batches", err, errlen);
        goto out;
    }
    rc = 0;
out:
    read_end(j, st);
    if (rc < 0) {
        journal_batch_list_free(v, nv);
        return rc;
    }
    *list = v;
    *n = nv;
    return 0;
}

static int64_t file_size(const char *path, const char *suffix)
{
    char buf[4096];
    struct stat sb;

    snprintf(buf, sizeof(buf), "%s%s", path, suffix);
    return stat(buf, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

int journal_stats(struct journal *j, struct journal_stats *out, char *err,
                  size_t errlen)
{
    static const char sql[] =
        "SELECT p.route, p.topic, p.partition, p.high_offset,"
        " p.batched_offset, p.pending_count, p.pending_bytes,"
        " COALESCE(SUM(c.count), 0), COALESCE(SUM(c.bytes), 0),"
        " COALESCE(SUM(c.undone), 0), COALESCE(SUM(c.undone_bytes), 0),"
        " COALESCE(SUM(c.dead), 0), COALESCE(SUM(c.dead_bytes), 0),"
        " MIN(CASE WHEN c.undone > 0 THEN c.appended_ms END),"
        " p.epoch, p.sealed, p.epoch_start"
        " FROM partitions p LEFT JOIN chunks c ON c.part_id = p.id"
        " GROUP BY p.id ORDER BY p.route, p.topic, p.partition, p.epoch";
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    clear_err(err, errlen);
    memset(out, 0, sizeof(*out));
    read_begin(j);
    rc = prep(j->rdb, sql, &st, err, errlen);
    if (rc < 0) {
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct journal_partition_stats *p;
        const char *topic = (const char *)sqlite3_column_text(st, 1);
        int64_t count, bytes, undone, undone_b, dead, dead_b;

        if (grow_array((void **)&out->parts, &cap, out->nparts + 1,
                       sizeof(*out->parts)) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        p = &out->parts[out->nparts];
        memset(p, 0, sizeof(*p));
        p->topic = xstrdup(topic ? topic : "");
        if (p->topic == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        out->nparts++;
        p->route = sqlite3_column_int(st, 0);
        p->partition = sqlite3_column_int(st, 2);
        p->high_offset = sqlite3_column_int64(st, 3);
        p->batched_offset = sqlite3_column_int64(st, 4);
        p->pending_count = sqlite3_column_int64(st, 5);
        p->pending_bytes = sqlite3_column_int64(st, 6);
        p->epoch = sqlite3_column_int64(st, 14);
        p->sealed = sqlite3_column_int(st, 15);
        p->epoch_start = sqlite3_column_int64(st, 16);
        count = sqlite3_column_int64(st, 7);
        bytes = sqlite3_column_int64(st, 8);
        undone = sqlite3_column_int64(st, 9);
        undone_b = sqlite3_column_int64(st, 10);
        dead = sqlite3_column_int64(st, 11);
        dead_b = sqlite3_column_int64(st, 12);
        p->inflight_count = undone - p->pending_count;
        p->inflight_bytes = undone_b - p->pending_bytes;
        p->delivered_count = count - undone - dead;
        p->delivered_bytes = bytes - undone_b - dead_b;
        p->dead_count = dead;
        p->dead_bytes = dead_b;
        p->oldest_pending_ms = sqlite3_column_type(st, 13) == SQLITE_NULL
                                   ? 0
                                   : sqlite3_column_int64(st, 13);
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->rdb, rc, "stats", err, errlen);
        goto out;
    }
    rc = query_i64(j->rdb,
                   "SELECT COUNT(*) FROM batches WHERE " JOURNAL_SQL_OPEN,
                   &out->batches_unfinished, err, errlen);
    if (rc == 0) {
        rc = query_i64(j->rdb, "SELECT COUNT(*) FROM chunks", &out->chunks, err,
                       errlen);
    }
    if (rc == 0) {
        /* the replay window kept (partial index chunks_done) */
        rc = query_i64(j->rdb,
                       "SELECT COALESCE(MIN(appended_ms), 0) FROM chunks"
                       " WHERE undone = 0 AND dead = 0",
                       &out->oldest_delivered_ms, err, errlen);
    }
    out->file_bytes = file_size(j->path, "");
    out->wal_bytes = file_size(j->path, "-wal");
    out->wal_truncates = __atomic_load_n(&j->wal_truncates, __ATOMIC_RELAXED);
    out->max_bytes = j->max_bytes;
    out->pending_bytes = journal_pending_bytes(j);
out:
    read_end(j, st);
    if (rc < 0) {
        journal_stats_release(out);
    }
    return rc;
}

void journal_stats_release(struct journal_stats *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nparts; i++) {
        free(s->parts[i].topic);
    }
    free(s->parts);
    memset(s, 0, sizeof(*s));
}

int journal_dead_list(struct journal *j, int route, int64_t after_id,
                      size_t limit, struct journal_dead **list, size_t *n,
                      int64_t *total, char *err, size_t errlen)
{
    struct journal_dead *v = NULL;
    size_t nv = 0;
    sqlite3_stmt *st = NULL;
    int rc;

    clear_err(err, errlen);
    *list = NULL;
    *n = 0;
    if (limit > 10000) {
        limit = 10000;
    }
    read_begin(j);
    if (total != NULL) {
        rc = prep(j->rdb,
                  "SELECT COUNT(*) FROM dead WHERE (?1 < 0 OR route = ?1)", &st,
                  err, errlen);
        if (rc < 0) {
            goto out;
        }
        sqlite3_bind_int(st, 1, route);
        *total =
            sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
        st = NULL;
    }
    v = calloc(limit > 0 ? limit : 1, sizeof(*v));
    if (v == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = prep(j->rdb,
              "SELECT d.id, d.route, p.topic, p.partition, d.offset,"
              " d.timestamp_ms, d.dead_ms, d.batch_id, d.reason, d.value_len"
              " FROM dead d JOIN partitions p ON p.id = d.part_id"
              " WHERE d.id > ?1 AND (?2 < 0 OR d.route = ?2)"
              " ORDER BY d.id LIMIT ?3",
              &st, err, errlen);
    if (rc < 0) {
        goto out;
    }
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int(st, 2, route);
    sqlite3_bind_int64(st, 3, (int64_t)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct journal_dead *d = &v[nv];
        const char *t = (const char *)sqlite3_column_text(st, 2);
        const char *b = (const char *)sqlite3_column_text(st, 7);
        const char *why = (const char *)sqlite3_column_text(st, 8);

        d->id = sqlite3_column_int64(st, 0);
        d->route = sqlite3_column_int(st, 1);
        d->topic = xstrdup(t ? t : "");
        d->partition = sqlite3_column_int(st, 3);
        d->offset = sqlite3_column_int64(st, 4);
        d->timestamp_ms = sqlite3_column_int64(st, 5);
        d->dead_ms = sqlite3_column_int64(st, 6);
        snprintf(d->batch_id, sizeof(d->batch_id), "%s", b ? b : "");
        d->reason = xstrdup(why ? why : "");
        d->value_len = (size_t)sqlite3_column_int64(st, 9);
        nv++;
        if (d->topic == NULL || d->reason == NULL) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->rdb, rc, "read dead letters", err, errlen);
        goto out;
    }
    rc = 0;
out:
    read_end(j, st);
    if (rc < 0) {
        journal_dead_list_free(v, nv);
        return rc;
    }
    *list = v;
    *n = nv;
    return 0;
}

void journal_dead_list_free(struct journal_dead *list, size_t n)
{
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(list[i].topic);
        free(list[i].reason);
    }
    free(list);
}

int journal_iterate(struct journal *j, const struct journal_iter_req *req,
                    journal_iter_cb cb, void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    struct cls c;
    int rc;

    clear_err(err, errlen);
    if (req == NULL || cb == NULL) {
        set_err(err, errlen, "iterate: bad arguments");
        return -EINVAL;
    }
    memset(&c, 0, sizeof(c));
    read_begin(j);
    rc = prep(j->rdb,
              "SELECT c.id, c.route, c.first_offset, p.topic, p.partition,"
              " p.batched_offset, d.data, c.dead"
              " FROM chunks c JOIN partitions p ON p.id = c.part_id"
              " JOIN chunk_data d ON d.id = c.id"
              " WHERE (?1 < 0 OR c.route = ?1) AND (?2 IS NULL OR"
              " p.topic = ?2) AND (?3 < 0 OR p.partition = ?3) AND"
              " (?4 < 0 OR c.last_offset >= ?4) AND"
              " (?5 < 0 OR c.first_offset <= ?5)"
              " ORDER BY p.topic, p.partition, c.first_offset",
              &st, err, errlen);
    if (rc < 0) {
        goto out;
    }
    sqlite3_bind_int(st, 1, req->route);
    if (req->topic != NULL) {
        sqlite3_bind_text(st, 2, req->topic, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(st, 3, req->partition);
    sqlite3_bind_int64(st, 4, req->from_offset);
    sqlite3_bind_int64(st, 5, req->to_offset);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct journal_event ev;
        struct chunk_reader rd;
        struct chunk_event ce;
        int k;

        rc = cls_load(j->rdb, sqlite3_column_int64(st, 0),
                      sqlite3_column_int64(st, 5), &c, err, errlen);
        if (rc < 0) {
            goto out;
        }
        memset(&ev, 0, sizeof(ev));
        ev.route = sqlite3_column_int(st, 1);
        ev.topic = (const char *)sqlite3_column_text(st, 3);
        ev.partition = sqlite3_column_int(st, 4);
        chunk_reader_init(&rd, sqlite3_column_blob(st, 6),
                          (size_t)sqlite3_column_bytes(st, 6),
                          sqlite3_column_int64(st, 2));
        while ((k = chunk_reader_next(&rd, &ce)) == 1) {
            const char *reason;
            enum journal_event_state s = cls_state(&c, ce.offset, &reason);

            if ((req->from_offset >= 0 && ce.offset < req->from_offset) ||
                (req->to_offset >= 0 && ce.offset > req->to_offset) ||
                (req->states & (1 << s)) == 0) {
                continue;
            }
            chunk_event_to_journal(&ce, &ev);
            rc = cb(arg, &ev, s, reason);
            if (rc != 0) {
                goto out;
            }
        }
        if (k < 0) {
            set_err(err, errlen, "journal chunk %" PRId64 " is corrupt",
                    (int64_t)sqlite3_column_int64(st, 0));
            rc = -EIO;
            goto out;
        }
        rc = SQLITE_ROW;
    }
    if (rc != SQLITE_DONE) {
        rc = sql_fail(j->rdb, rc, "iterate", err, errlen);
        goto out;
    }
    rc = 0;
out:
    read_end(j, st);
    cls_release(&c);
    return rc;
}

/* "registry\0type\0schema\0" in one allocation; NULL on ENOMEM */
static char *schema_pack(const char *registry, const char *type,
                         const char *schema, size_t *len)
{
    size_t a = strlen(registry) + 1, b = strlen(type) + 1,
           c = strlen(schema) + 1;
    char *p = malloc(a + b + c);

    if (p != NULL) {
        memcpy(p, registry, a);
        memcpy(p + a, type, b);
        memcpy(p + a + b, schema, c);
    }
    *len = a + b + c;
    return p;
}

int journal_schema_put(struct journal *j, const char *registry, int64_t id,
                       const char *type, const char *schema, int64_t now_ms,
                       char *err, size_t errlen)
{
    struct req r;
    size_t len;
    char *packed;
    int rc;

    if (registry == NULL || type == NULL || schema == NULL) {
        set_err(err, errlen, "schema: missing registry, type or text");
        return -EINVAL;
    }
    packed = schema_pack(registry, type, schema, &len);
    if (packed == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memset(&r, 0, sizeof(r));
    r.op = OP_SCHEMA;
    r.text = packed;
    r.i1 = id;
    r.now_ms = now_ms;
    rc = run_sync(j, &r, err, errlen);
    free(packed);
    return rc;
}

int journal_schema_put_async(struct journal *j, const char *registry,
                             int64_t id, const char *type, const char *schema,
                             int64_t now_ms, journal_count_cb cb, void *arg)
{
    struct req *r;
    size_t len;
    char *packed;

    if (cb == NULL || registry == NULL || type == NULL || schema == NULL) {
        return -EINVAL;
    }
    packed = schema_pack(registry, type, schema, &len);
    if (packed == NULL) {
        return -ENOMEM;
    }
    r = req_new(OP_SCHEMA, (void (*)(void))cb, arg, len);
    if (r == NULL) {
        free(packed);
        return -ENOMEM;
    }
    memcpy(r->arena, packed, len);
    free(packed);
    r->text = r->arena;
    r->i1 = id;
    r->now_ms = now_ms;
    return run_async(j, r);
}

int journal_schema_get(struct journal *j, const char *registry, int64_t id,
                       char **type, char **schema, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc;

    clear_err(err, errlen);
    *type = NULL;
    *schema = NULL;
    pthread_mutex_lock(&j->rmu);
    rc = prep(j->rdb,
              "SELECT type, schema FROM schemas WHERE registry = ? AND id = ?",
              &st, err, errlen);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, registry, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *type = strdup((const char *)sqlite3_column_text(st, 0));
            *schema = strdup((const char *)sqlite3_column_text(st, 1));
            rc = 0;
            if (*type == NULL || *schema == NULL) {
                free(*type);
                free(*schema);
                *type = *schema = NULL;
                set_err(err, errlen, "out of memory");
                rc = -ENOMEM;
            }
        } else if (rc == SQLITE_DONE) {
            rc = -ENOENT;
        } else {
            rc = sql_fail(j->rdb, rc, "read schema", err, errlen);
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&j->rmu);
    return rc;
}

int journal_with_read_db(struct journal *j,
                         int (*fn)(void *arg, struct sqlite3 *db), void *arg)
{
    int rc;

    pthread_mutex_lock(&j->rmu);
    rc = fn(arg, j->rdb);
    pthread_mutex_unlock(&j->rmu);
    return rc;
}
