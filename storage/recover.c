/*
 * recover.c - the storage half of `kadx recover`: status, check, export,
 * requeue, purge and salvage of a journal the gateway is not running on.
 *
 * What it owns: nothing long-lived. Every function is synchronous, runs on
 * the calling thread and either borrows an open journal (status, export,
 * requeue, purge: all through journal.h) or opens the file itself with
 * plain read-only SQLite (check and salvage, which must cope with a file
 * too damaged for journal_open). The schema those two read is the one
 * storage/README.md documents; they only read it, never write it: every
 * write goes through journal.h, so the journal's invariants stay the
 * journal's business.
 *
 * Why row by row: a corrupt page makes SQLite fail the statement that
 * touches it (SQLITE_CORRUPT) and stop. Salvage therefore first collects
 * the chunk rowids it can see, then reads each chunk with its own
 * statement, so one damaged page loses only the rows stored on it. When
 * even the rowid scan breaks, it probes rowids one by one up to the
 * largest it saw.
 */
#include "storage/recover.h"
#include "base/array.h"
#include "base/clock.h"
#include "base/err.h"
#include "storage/chunk.h"
#include "storage/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

/* Rate-limits progress reports to one every 500 ms. */
struct ticker {
    const struct recover_progress *pg;
    const char *phase;
    int64_t total;
    int64_t last_ms;
};

static void ticker_init(struct ticker *t, const struct recover_progress *pg,
                        const char *phase, int64_t total)
{
    t->pg = pg;
    t->phase = phase;
    t->total = total;
    t->last_ms = mono_ms();
}

static void ticker_tick(struct ticker *t, int64_t done)
{
    int64_t now;

    if (t->pg == NULL || t->pg->fn == NULL) {
        return;
    }
    now = mono_ms();
    if (now - t->last_ms < 500) {
        return;
    }
    t->last_ms = now;
    t->pg->fn(t->pg->arg, t->phase, done, t->total);
}

static void ticker_end(struct ticker *t, int64_t done)
{
    if (t->pg != NULL && t->pg->fn != NULL) {
        t->pg->fn(t->pg->arg, t->phase, done, t->total);
    }
}

int recover_utf8_valid(const void *s, size_t len)
{
    const unsigned char *p = s;
    size_t i = 0;

    while (i < len) {
        unsigned c = p[i];
        size_t n;
        uint32_t cp;

        if (c == 0) {
            return 0;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len) {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

void recover_json_string(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];

        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc((int)c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c == '\r') {
            fputs("\\r", out);
        } else if (c == '\t') {
            fputs("\\t", out);
        } else if (c < 0x20) {
            fprintf(out, "\\u%04x", c);
        } else if (c < 0x80) {
            fputc((int)c, out);
        } else {
            /* copy a valid multi-byte sequence, else U+FFFD */
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

            if (n > 1 && i + n <= len && recover_utf8_valid(p + i, n)) {
                fwrite(p + i, 1, n, out);
                i += n - 1;
            } else {
                fputs("\\ufffd", out);
            }
        }
    }
    fputc('"', out);
}

static void json_b64(FILE *out, const void *data, size_t len)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    size_t i = 0;

    fputc('"', out);
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        fputc(tab[v >> 18], out);
        fputc(tab[(v >> 12) & 63], out);
        fputc(tab[(v >> 6) & 63], out);
        fputc(tab[v & 63], out);
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16;

        if (i + 1 < len) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        fputc(tab[v >> 18], out);
        fputc(tab[(v >> 12) & 63], out);
        fputc(i + 1 < len ? tab[(v >> 6) & 63] : '=', out);
        fputc('=', out);
    }
    fputc('"', out);
}

/* ,"name":"text" or ,"name_b64":"..." */
static void json_bytes_field(FILE *out, const char *name, const void *data,
                             size_t len)
{
    if (recover_utf8_valid(data, len)) {
        fprintf(out, ",\"%s\":", name);
        recover_json_string(out, data, len);
    } else {
        fprintf(out, ",\"%s_b64\":", name);
        json_b64(out, data, len);
    }
}

/* ---------------------------------------------------------------- status */

static void fmt_age(char *buf, size_t len, int64_t since_ms, int64_t now_ms)
{
    int64_t s;

    if (since_ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    s = (now_ms - since_ms) / 1000;
    if (s < 0) {
        s = 0;
    }
    if (s < 120) {
        snprintf(buf, len, "%" PRId64 "s", s);
    } else if (s < 7200) {
        snprintf(buf, len, "%" PRId64 "m", s / 60);
    } else {
        snprintf(buf, len, "%" PRId64 "h", s / 3600);
    }
}

static void status_text(FILE *out, const struct journal_stats *st,
                        struct journal *j, const char *path)
{
    int64_t now = wall_ms();
    int64_t tot[8] = {0};

    fprintf(out, "journal %s (uuid %s)\n", path, journal_uuid(j));
    fprintf(out,
            "file %" PRId64 " bytes, wal %" PRId64 " bytes, cap %" PRId64
            ", %" PRId64 " chunks, %" PRId64 " unfinished batches\n\n",
            st->file_bytes, st->wal_bytes, st->max_bytes, st->chunks,
            st->batches_unfinished);
    fprintf(out, "%-5s %-24s %5s %12s %12s %10s %10s %12s %8s %7s\n", "route",
            "topic", "part", "high", "batched", "pending", "inflight",
            "delivered", "dead", "oldest");
    for (size_t i = 0; i < st->nparts; i++) {
        const struct journal_partition_stats *p = &st->parts[i];
        char age[32];

        fmt_age(age, sizeof(age), p->oldest_pending_ms, now);
        fprintf(out,
                "%-5d %-24s %5" PRId32 " %12" PRId64 " %12" PRId64 " %10" PRId64
                " %10" PRId64 " %12" PRId64 " %8" PRId64 " %7s\n",
                p->route, p->topic, p->partition, p->high_offset,
                p->batched_offset, p->pending_count, p->inflight_count,
                p->delivered_count, p->dead_count, age);
        tot[0] += p->pending_count;
        tot[1] += p->pending_bytes;
        tot[2] += p->inflight_count;
        tot[3] += p->inflight_bytes;
        tot[4] += p->delivered_count;
        tot[5] += p->delivered_bytes;
        tot[6] += p->dead_count;
        tot[7] += p->dead_bytes;
    }
    fprintf(out,
            "\ntotal: pending %" PRId64 " (%" PRId64 " B), in flight %" PRId64
            " (%" PRId64 " B), delivered %" PRId64 " (%" PRId64
            " B), dead %" PRId64 " (%" PRId64 " B)\n",
            tot[0], tot[1], tot[2], tot[3], tot[4], tot[5], tot[6], tot[7]);
}

static void status_json(FILE *out, const struct journal_stats *st,
                        struct journal *j, const char *path)
{
    fputs("{\"path\":", out);
    recover_json_string(out, path, strlen(path));
    fprintf(out,
            ",\"uuid\":\"%s\",\"file_bytes\":%" PRId64 ",\"wal_bytes\":%" PRId64
            ",\"max_bytes\":%" PRId64 ",\"pending_bytes\":%" PRId64
            ",\"batches_unfinished\":%" PRId64 ",\"chunks\":%" PRId64
            ",\"partitions\":[",
            journal_uuid(j), st->file_bytes, st->wal_bytes, st->max_bytes,
            st->pending_bytes, st->batches_unfinished, st->chunks);
    for (size_t i = 0; i < st->nparts; i++) {
        const struct journal_partition_stats *p = &st->parts[i];

        fprintf(out, "%s{\"route\":%d,\"topic\":", i ? "," : "", p->route);
        recover_json_string(out, p->topic, strlen(p->topic));
        fprintf(out,
                ",\"partition\":%" PRId32 ",\"high_offset\":%" PRId64
                ",\"batched_offset\":%" PRId64 ",\"pending_count\":%" PRId64
                ",\"pending_bytes\":%" PRId64 ",\"inflight_count\":%" PRId64
                ",\"inflight_bytes\":%" PRId64 ",\"delivered_count\":%" PRId64
                ",\"delivered_bytes\":%" PRId64 ",\"dead_count\":%" PRId64
                ",\"dead_bytes\":%" PRId64 ",\"oldest_pending_ms\":%" PRId64
                "}",
                p->partition, p->high_offset, p->batched_offset,
                p->pending_count, p->pending_bytes, p->inflight_count,
                p->inflight_bytes, p->delivered_count, p->delivered_bytes,
                p->dead_count, p->dead_bytes, p->oldest_pending_ms);
    }
    fputs("]}\n", out);
}

int recover_status(struct journal *j, const char *display_path, FILE *out,
                   int json, char *err, size_t errlen)
{
    const char *path = display_path ? display_path : journal_path(j);
    struct journal_stats st;
    int rc;

    memset(&st, 0, sizeof(st));
    rc = journal_stats(j, &st, err, errlen);
    if (rc < 0) {
        return rc;
    }
    if (json) {
        status_json(out, &st, j, path);
    } else {
        status_text(out, &st, j, path);
    }
    journal_stats_release(&st);
    if (fflush(out) != 0 || ferror(out)) {
        set_err(err, errlen, "cannot write the status: %s", strerror(errno));
        return -EIO;
    }
    return 0;
}

/* ---------------------------------------------------------------- export */

void recover_export_req_init(struct recover_export_req *req)
{
    memset(req, 0, sizeof(*req));
    req->states = JOURNAL_SEL_ALL;
    req->route = -1;
    req->partition = -1;
    req->from_offset = -1;
    req->to_offset = -1;
    req->from_ts_ms = -1;
    req->to_ts_ms = -1;
}

struct export_ctx {
    const struct recover_export_req *req;
    FILE *out;
    struct ticker tick;
    int64_t seen;
    int64_t written;
};

static int export_one(void *arg, const struct journal_event *ev,
                      enum journal_event_state state, const char *dead_reason)
{
    struct export_ctx *x = arg;
    FILE *out = x->out;

    x->seen++;
    ticker_tick(&x->tick, x->seen);
    if (x->req->from_ts_ms >= 0 && ev->timestamp_ms < x->req->from_ts_ms) {
        return 0;
    }
    if (x->req->to_ts_ms >= 0 && ev->timestamp_ms > x->req->to_ts_ms) {
        return 0;
    }
    fprintf(out, "{\"route\":%d,\"topic\":", ev->route);
    recover_json_string(out, ev->topic, strlen(ev->topic));
    fprintf(out,
            ",\"partition\":%" PRId32 ",\"offset\":%" PRId64
            ",\"timestamp_ms\":%" PRId64 ",\"state\":\"%s\"",
            ev->partition, ev->offset, ev->timestamp_ms,
            journal_event_state_name(state));
    if (ev->key == NULL) {
        fputs(",\"key\":null", out);
    } else {
        json_bytes_field(out, "key", ev->key, ev->key_len);
    }
    json_bytes_field(out, "value", ev->value, ev->value_len);
    if (ev->headers_len > 0) {
        fputs(",\"headers_b64\":", out);
        json_b64(out, ev->headers, ev->headers_len);
    }
    if (dead_reason != NULL) {
        fputs(",\"dead_reason\":", out);
        recover_json_string(out, dead_reason, strlen(dead_reason));
    }
    fputs("}\n", out);
    x->written++;
    if (ferror(out)) {
        return -EIO;
    }
    return 0;
}

/* Expected number of events the export looks at (for progress), or -1. */
static int64_t export_total(struct journal *j,
                            const struct recover_export_req *req)
{
    struct journal_stats st;
    int64_t total = 0;

    memset(&st, 0, sizeof(st));
    if (journal_stats(j, &st, NULL, 0) < 0) {
        return -1;
    }
    for (size_t i = 0; i < st.nparts; i++) {
        const struct journal_partition_stats *p = &st.parts[i];

        if (req->topic != NULL && strcmp(req->topic, p->topic) != 0) {
            continue;
        }
        if (req->partition >= 0 && req->partition != p->partition) {
            continue;
        }
        if (req->states & JOURNAL_SEL_PENDING) {
            total += p->pending_count;
        }
        if (req->states & JOURNAL_SEL_INFLIGHT) {
            total += p->inflight_count;
        }
        if (req->states & JOURNAL_SEL_DELIVERED) {
            total += p->delivered_count;
        }
        if (req->states & JOURNAL_SEL_DEAD) {
            total += p->dead_count;
        }
    }
    journal_stats_release(&st);
    /* ranges narrow the set further: then the total is only an upper bound,
     * so report it as unknown */
    if (req->from_offset >= 0 || req->to_offset >= 0 || req->route >= 0 ||
        req->from_ts_ms >= 0 || req->to_ts_ms >= 0) {
        return -1;
    }
    return total;
}

int recover_export(struct journal *j, const struct recover_export_req *req,
                   FILE *out, const struct recover_progress *pg,
                   int64_t *nexported, char *err, size_t errlen)
{
    struct journal_iter_req ir;
    struct export_ctx x;
    int rc;

    memset(&x, 0, sizeof(x));
    x.req = req;
    x.out = out;
    ticker_init(&x.tick, pg, "export", pg ? export_total(j, req) : -1);
    memset(&ir, 0, sizeof(ir));
    ir.states = req->states;
    ir.route = req->route;
    ir.topic = req->topic;
    ir.partition = req->partition;
    ir.from_offset = req->from_offset;
    ir.to_offset = req->to_offset;
    rc = journal_iterate(j, &ir, export_one, &x, err, errlen);
    if (rc == -EIO && ferror(out)) {
        set_err(err, errlen, "cannot write the export: %s", strerror(errno));
    }
    if (rc == 0 && (fflush(out) != 0 || ferror(out))) {
        set_err(err, errlen, "cannot write the export: %s", strerror(errno));
        rc = -EIO;
    }
    if (rc == 0) {
        ticker_end(&x.tick, x.seen);
    }
    if (nexported != NULL) {
        *nexported = x.written;
    }
    return rc;
}

/* --------------------------------------------------------- requeue/purge */

#define REQUEUE_BATCH_ROWS 10000

int recover_requeue(struct journal *j, int route, int64_t id, int64_t *n,
                    char *err, size_t errlen)
{
    return journal_dead_requeue(j, route, id, REQUEUE_BATCH_ROWS, n, err,
                                errlen);
}

#define PURGE_CHUNKS_PER_TXN 256

int recover_purge(struct journal *j, int64_t before_ms,
                  const struct recover_progress *pg, int64_t *deleted,
                  char *err, size_t errlen)
{
    struct journal_stats st;
    struct ticker tick;
    int64_t total = 0;
    int64_t done = 0;
    int rc = 0;

    memset(&st, 0, sizeof(st));
    if (journal_stats(j, &st, NULL, 0) == 0) {
        for (size_t i = 0; i < st.nparts; i++) {
            total += st.parts[i].delivered_count;
        }
        journal_stats_release(&st);
    } else {
        total = -1;
    }
    /* the total is the delivered count: an upper bound of what goes */
    ticker_init(&tick, pg, "purge", total);
    for (;;) {
        int64_t d = 0;

        rc =
            journal_retire(j, before_ms, PURGE_CHUNKS_PER_TXN, &d, err, errlen);
        if (rc < 0 || d <= 0) {
            break;
        }
        done += d;
        ticker_tick(&tick, done);
    }
    if (rc == 0) {
        tick.total = done;
        ticker_end(&tick, done);
    }
    if (deleted != NULL) {
        *deleted = done;
    }
    return rc;
}

/* ------------------------------------------------------ raw file access */

/*
 * The journal's lock protocol (storage/journal.c, lock_take): an open file
 * description lock on "<path>.lock", F_WRLCK for the gateway, F_RDLCK for
 * read-only opens. check and salvage read the file with plain SQLite, so
 * they take the F_RDLCK themselves: refused while a gateway runs, and no
 * gateway can start on the file while they read it.
 */
static int lock_read(const char *path, int *fd_out, char *err, size_t errlen)
{
    char lpath[4096];
    struct flock fl;
    int fd;

    *fd_out = -1;
    if ((size_t)snprintf(lpath, sizeof(lpath), "%s.lock", path) >=
        sizeof(lpath)) {
        set_err(err, errlen, "journal path too long");
        return -ENAMETOOLONG;
    }
    fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fd = open(lpath, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        int e = errno;

        set_err(err, errlen, "cannot open lock file '%s': %s", lpath,
                strerror(e));
        return -e;
    }
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        char buf[32];
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
            set_err(err, errlen, "journal '%s' is in use by another process",
                    path);
        }
        close(fd);
        return -EBUSY;
    }
    *fd_out = fd;
    return 0;
}

static void lock_release(int fd)
{
    if (fd >= 0) {
        close(fd); /* releases the OFD lock */
    }
}

static int raw_open(const char *path, sqlite3 **db, char *err, size_t errlen)
{
    struct stat sb;
    int rc;

    *db = NULL;
    if (stat(path, &sb) < 0) {
        int e = errno;

        set_err(err, errlen, "no journal at '%s': %s", path, strerror(e));
        return -e;
    }
    rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "cannot open '%s': %s", path,
                *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        sqlite3_close(*db);
        *db = NULL;
        return -EIO;
    }
    sqlite3_busy_timeout(*db, 5000);
    return 0;
}

/* Partition rows, by id. */
struct rpart {
    int64_t id;
    char *topic;
    int32_t partition;
    int route;
    int64_t high, batched, pending_count, pending_bytes;
    int64_t epoch, epoch_start; /* offset epoch (journal.h); 0, -1 */
    int epoch_begun;            /* salvage: the epoch exists in dst */
    /* check: sums over the chunks */
    int64_t sum_pending, sum_pending_bytes, max_last, prev_last;
};

struct rparts {
    struct rpart *v;
    size_t n, cap;
};

static void rparts_release(struct rparts *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].topic);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static struct rpart *rparts_find(struct rparts *p, int64_t id)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].id == id) {
            return &p->v[i];
        }
    }
    return NULL;
}

/* Adds one partition row from st (columns id, topic, partition, route,
 * high, batched, pending_count, pending_bytes) unless its id is known. */
static int rparts_add(struct rparts *p, sqlite3_stmt *st)
{
    const char *topic = (const char *)sqlite3_column_text(st, 1);
    struct rpart *r;

    if (rparts_find(p, sqlite3_column_int64(st, 0)) != NULL) {
        return 0;
    }
    if (grow_array((void **)&p->v, &p->cap, p->n + 1, sizeof(*p->v)) < 0) {
        return -ENOMEM;
    }
    r = &p->v[p->n];
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    r->topic = strdup(topic ? topic : "");
    if (r->topic == NULL) {
        return -ENOMEM;
    }
    r->partition = (int32_t)sqlite3_column_int64(st, 2);
    r->route = (int)sqlite3_column_int64(st, 3);
    r->high = sqlite3_column_int64(st, 4);
    r->batched = sqlite3_column_int64(st, 5);
    r->pending_count = sqlite3_column_int64(st, 6);
    r->pending_bytes = sqlite3_column_int64(st, 7);
    r->max_last = -1;
    r->prev_last = -1;
    p->n++;
    return 0;
}

#define PART_COLS                                                              \
    "id, topic, partition, route, high_offset, batched_offset,"                \
    " pending_count, pending_bytes"

/*
 * Reads the partitions table: a scan, and when the scan breaks, a probe of
 * each id up to the largest seen + 1000. Returns 0 when everything was
 * read, 1 when some rows may be missing (*why filled), or -ENOMEM.
 */
static int read_parts(sqlite3 *db, struct rparts *p, char *why, size_t whylen)
{
    sqlite3_stmt *st = NULL;
    int64_t maxid = 0;
    int rc;
    int broken = 0;

    rc = sqlite3_prepare_v2(db, "SELECT " PART_COLS " FROM partitions", -1, &st,
                            NULL);
    if (rc != SQLITE_OK) {
        set_err(why, whylen, "cannot read partitions: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return 1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (rparts_add(p, st) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        if (sqlite3_column_int64(st, 0) > maxid) {
            maxid = sqlite3_column_int64(st, 0);
        }
    }
    if (rc != SQLITE_DONE) {
        set_err(why, whylen, "cannot read partitions: %s", sqlite3_errmsg(db));
        broken = 1;
    }
    sqlite3_finalize(st);
    if (!broken) {
        return 0;
    }
    rc = sqlite3_prepare_v2(
        db, "SELECT " PART_COLS " FROM partitions WHERE id = ?", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return 1;
    }
    for (int64_t id = 1; id <= maxid + 1000; id++) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW && rparts_add(p, st) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return 1;
}

/* Salvage: each row's offset epoch (schema 2; a schema 1 file, or a
 * damaged table, leaves every row at epoch 0). */
static void sv_read_epochs(struct rparts *p, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;

    for (size_t i = 0; i < p->n; i++) {
        p->v[i].epoch = 0;
        p->v[i].epoch_start = -1;
    }
    if (sqlite3_prepare_v2(db, "SELECT id, epoch, epoch_start FROM partitions",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct rpart *r = rparts_find(p, sqlite3_column_int64(st, 0));

        if (r != NULL) {
            r->epoch = sqlite3_column_int64(st, 1);
            r->epoch_start = sqlite3_column_int64(st, 2);
        }
    }
    sqlite3_finalize(st);
}

/* A chunk's identity, for ordering reads. */
struct rchunk {
    int64_t id, part_id, first;
};

static int rchunk_cmp(const void *a, const void *b)
{
    const struct rchunk *x = a, *y = b;

    if (x->part_id != y->part_id) {
        return x->part_id < y->part_id ? -1 : 1;
    }
    if (x->first != y->first) {
        return x->first < y->first ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Collects the chunk ids: from the chunks_part index (its own pages: it
 * still lists the rows of a damaged table page) and from the table itself;
 * when both scans break, probes ids up to the largest seen + 10000.
 * Sorted by (part_id, first_offset, id), duplicates removed. Returns 0, 1
 * when a scan broke (*why filled), or -ENOMEM.
 */
static int read_chunk_ids(sqlite3 *db, struct rchunk **out, size_t *n,
                          char *why, size_t whylen)
{
    static const char *const scans[] = {
        "SELECT id, part_id, first_offset FROM chunks INDEXED BY chunks_part",
        "SELECT id, part_id, first_offset FROM chunks",
    };
    struct rchunk *v = NULL;
    size_t nv = 0, cap = 0, w;
    int64_t maxid = 0;
    int ok_scans = 0;
    int broken = 0;

    for (size_t s = 0; s < 2; s++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, scans[s], -1, &st, NULL);

        if (rc != SQLITE_OK) {
            set_err(why, whylen, "cannot scan chunks: %s", sqlite3_errmsg(db));
            broken = 1;
            sqlite3_finalize(st);
            continue;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (grow_array((void **)&v, &cap, nv + 1, sizeof(*v)) < 0) {
                sqlite3_finalize(st);
                free(v);
                return -ENOMEM;
            }
            v[nv].id = sqlite3_column_int64(st, 0);
            v[nv].part_id = sqlite3_column_int64(st, 1);
            v[nv].first = sqlite3_column_int64(st, 2);
            if (v[nv].id > maxid) {
                maxid = v[nv].id;
            }
            nv++;
        }
        if (rc == SQLITE_DONE) {
            ok_scans++;
        } else {
            set_err(why, whylen, "cannot scan chunks: %s", sqlite3_errmsg(db));
            broken = 1;
        }
        sqlite3_finalize(st);
    }
    if (ok_scans == 0) {
        sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(db,
                               "SELECT id, part_id, first_offset FROM chunks"
                               " WHERE id = ?",
                               -1, &st, NULL) == SQLITE_OK) {
            for (int64_t id = 1; id <= maxid + 10000; id++) {
                sqlite3_bind_int64(st, 1, id);
                if (sqlite3_step(st) == SQLITE_ROW) {
                    if (grow_array((void **)&v, &cap, nv + 1, sizeof(*v)) < 0) {
                        sqlite3_finalize(st);
                        free(v);
                        return -ENOMEM;
                    }
                    v[nv].id = id;
                    v[nv].part_id = sqlite3_column_int64(st, 1);
                    v[nv].first = sqlite3_column_int64(st, 2);
                    nv++;
                }
                sqlite3_reset(st);
            }
        }
        sqlite3_finalize(st);
    }
    if (nv > 0) {
        qsort(v, nv, sizeof(*v), rchunk_cmp);
    }
    w = 0;
    for (size_t i = 0; i < nv; i++) {
        if (w > 0 && v[w - 1].id == v[i].id) {
            continue;
        }
        v[w++] = v[i];
    }
    *out = v;
    *n = w;
    return broken;
}

/* One chunk row read whole. */
struct rrow {
    int64_t part_id, route, first, last, count, bytes, undone, undone_bytes,
        dead, dead_bytes, cut, ts_min, ts_max;
    void *data;
    size_t len;
};

/* Reads chunk `id`. 0, -ENOENT (gone), -EIO (unreadable: why filled). */
static int read_chunk(sqlite3_stmt *st, int64_t id, struct rrow *r, char *why,
                      size_t whylen)
{
    const void *blob;
    int rc;

    memset(r, 0, sizeof(*r));
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return -ENOENT;
    }
    if (rc != SQLITE_ROW) {
        set_err(why, whylen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
        sqlite3_reset(st);
        return -EIO;
    }
    r->part_id = sqlite3_column_int64(st, 0);
    r->route = sqlite3_column_int64(st, 1);
    r->first = sqlite3_column_int64(st, 2);
    r->last = sqlite3_column_int64(st, 3);
    r->count = sqlite3_column_int64(st, 4);
    r->bytes = sqlite3_column_int64(st, 5);
    r->undone = sqlite3_column_int64(st, 6);
    r->undone_bytes = sqlite3_column_int64(st, 7);
    r->dead = sqlite3_column_int64(st, 8);
    r->dead_bytes = sqlite3_column_int64(st, 9);
    r->cut = sqlite3_column_int64(st, 10);
    r->ts_min = sqlite3_column_int64(st, 11);
    r->ts_max = sqlite3_column_int64(st, 12);
    blob = sqlite3_column_blob(st, 13);
    r->len = (size_t)sqlite3_column_bytes(st, 13);
    if (sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_CORRUPT ||
        (blob == NULL && r->len > 0)) {
        set_err(why, whylen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
        sqlite3_reset(st);
        return -EIO;
    }
    r->data = malloc(r->len ? r->len : 1);
    if (r->data == NULL) {
        sqlite3_reset(st);
        return -ENOMEM;
    }
    if (r->len > 0) {
        memcpy(r->data, blob, r->len);
    }
    sqlite3_reset(st);
    return 0;
}

#define CHUNK_ROW_SQL                                                          \
    "SELECT part_id, route, first_offset, last_offset, count, bytes, undone,"  \
    " undone_bytes, dead, dead_bytes, cut, ts_min, ts_max, data FROM chunks"   \
    " WHERE id = ?"

/* ----------------------------------------------------------------- check */

struct ck {
    sqlite3 *db;
    struct recover_report *rep;
    size_t linecap;
};

static void problem(struct ck *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct ck *c, const char *fmt, ...)
{
    struct recover_report *rep = c->rep;
    char line[512];
    char *copy;
    va_list ap;

    rep->problems++;
    if (rep->nlines >= RECOVER_REPORT_MAX) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* one problem, one line (integrity_check's text has newlines) */
    for (char *q = line; *q != '\0'; q++) {
        if (*q == '\n' || *q == '\r') {
            *q = ' ';
        }
    }
    if (grow_array((void **)&rep->lines, &c->linecap, rep->nlines + 1,
                   sizeof(*rep->lines)) < 0) {
        return;
    }
    copy = strdup(line);
    if (copy != NULL) {
        rep->lines[rep->nlines++] = copy;
    }
}

void recover_report_release(struct recover_report *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nlines; i++) {
        free(r->lines[i]);
    }
    free(r->lines);
    memset(r, 0, sizeof(*r));
}

static void ck_integrity(struct ck *c)
{
    sqlite3_stmt *st = NULL;
    int rc;
    int rows = 0;

    rc =
        sqlite3_prepare_v2(c->db, "PRAGMA integrity_check(100)", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        problem(c, "integrity_check cannot run: %s", sqlite3_errmsg(c->db));
        sqlite3_finalize(st);
        return;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *msg = (const char *)sqlite3_column_text(st, 0);

        rows++;
        if (rows == 1 && msg != NULL && strcmp(msg, "ok") == 0) {
            c->rep->integrity_ok = 1;
            continue;
        }
        problem(c, "integrity_check: %s", msg ? msg : "(null)");
    }
    if (rc != SQLITE_DONE) {
        problem(c, "integrity_check failed: %s", sqlite3_errmsg(c->db));
        c->rep->integrity_ok = 0;
    }
    sqlite3_finalize(st);
}

/* Returns 1 when the schema is one this code knows (worth checking). */
static int ck_schema(struct ck *c)
{
    sqlite3_stmt *st = NULL;
    int version = -1;
    int ok = 0;

    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        version = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    /* 3 = 2 plus the schemas table (Schema Registry cache) */
    if (version != 2 && version != 3) {
        problem(c, "schema version %d is not one this kadx knows (2, 3)",
                version);
        return 0;
    }
    st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT length(value) FROM meta WHERE key = 'uuid'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 36) {
        ok = 1;
    }
    sqlite3_finalize(st);
    if (!ok) {
        problem(c, "meta: the journal uuid is missing or malformed");
    }
    return 1;
}

/* Index of offset off in the sorted array v[0..n), or -1. */
static ssize_t off_find(const int64_t *v, size_t n, int64_t off)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v[mid] < off) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && v[lo] == off ? (ssize_t)lo : -1;
}

/* Number of offsets of v[0..n) within [first, last]; their lens' sum. */
static int64_t off_span(const int64_t *v, const int64_t *lens, size_t n,
                        int64_t first, int64_t last, int64_t *bytes)
{
    size_t lo = 0, hi = n;
    int64_t cnt = 0;

    *bytes = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v[mid] < first) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < n && v[i] <= last; i++) {
        cnt++;
        *bytes += lens[i];
    }
    return cnt;
}

/* A piece's interval with the batch it belongs to. */
struct ival {
    int64_t first, last;
    int64_t seq;
    char id[JOURNAL_BATCH_ID_MAX];
};

static int ival_cmp(const void *a, const void *b)
{
    const struct ival *x = a, *y = b;

    return x->first < y->first ? -1 : x->first > y->first;
}

/* Per-chunk scratch space, reused. */
struct ckbuf {
    int64_t *offs, *lens;
    size_t cap;
    struct ival *unf, *del;
    size_t nunf, ndel, unfcap, delcap;
};

static void ckbuf_release(struct ckbuf *b)
{
    free(b->offs);
    free(b->lens);
    free(b->unf);
    free(b->del);
}

static int ckbuf_reserve(struct ckbuf *b, size_t need)
{
    size_t ncap;
    int64_t *o, *l;

    if (need <= b->cap) {
        return 0;
    }
    ncap = b->cap ? b->cap * 2 : 256;
    while (ncap < need) {
        ncap *= 2;
    }
    o = realloc(b->offs, ncap * sizeof(*o));
    if (o == NULL) {
        return -ENOMEM;
    }
    b->offs = o;
    l = realloc(b->lens, ncap * sizeof(*l));
    if (l == NULL) {
        return -ENOMEM;
    }
    b->lens = l;
    b->cap = ncap;
    return 0;
}

/* Decodes chunk r (id) into b->offs/lens; reports what does not match its
 * row. Returns the number of events decoded. */
static size_t ck_decode(struct ck *c, int64_t id, const struct rrow *r,
                        struct ckbuf *b, int *bad)
{
    struct chunk_reader rd;
    struct chunk_event ev;
    int64_t bytes = 0, tsmin = INT64_MAX, tsmax = INT64_MIN;
    size_t n = 0;
    int k;

    *bad = 0;
    chunk_reader_init(&rd, r->data, r->len, r->first);
    while ((k = chunk_reader_next(&rd, &ev)) == 1) {
        if (ckbuf_reserve(b, n + 1) < 0) {
            problem(c, "out of memory decoding chunk %" PRId64, id);
            *bad = 1;
            return n;
        }
        b->offs[n] = ev.offset;
        b->lens[n] = (int64_t)ev.value_len;
        bytes += (int64_t)ev.value_len;
        if (ev.timestamp_ms < tsmin) {
            tsmin = ev.timestamp_ms;
        }
        if (ev.timestamp_ms > tsmax) {
            tsmax = ev.timestamp_ms;
        }
        n++;
    }
    if (k < 0) {
        problem(c,
                "chunk %" PRId64 ": packed events are corrupt after %zu "
                "of %" PRId64 " events",
                id, n, r->count);
        *bad = 1;
        return n;
    }
    if ((int64_t)n != r->count) {
        problem(c, "chunk %" PRId64 ": holds %zu events, its row says %" PRId64,
                id, n, r->count);
        *bad = 1;
    }
    if (n > 0 && (b->offs[0] != r->first || b->offs[n - 1] != r->last)) {
        problem(c,
                "chunk %" PRId64 ": offsets %" PRId64 "..%" PRId64
                ", its row says %" PRId64 "..%" PRId64,
                id, b->offs[0], b->offs[n - 1], r->first, r->last);
        *bad = 1;
    }
    if (bytes != r->bytes) {
        problem(c,
                "chunk %" PRId64 ": %" PRId64 " value bytes, its row says "
                "%" PRId64,
                id, bytes, r->bytes);
        *bad = 1;
    }
    if (n > 0 && (tsmin != r->ts_min || tsmax != r->ts_max)) {
        problem(c, "chunk %" PRId64 ": timestamps do not match its row", id);
        *bad = 1;
    }
    return n;
}

/* Checks the dead rows of chunk id against its events and counters. */
static void ck_dead(struct ck *c, sqlite3_stmt *st, int64_t id,
                    const struct rrow *r, struct rpart *p,
                    const struct ckbuf *b, size_t n)
{
    int64_t cnt = 0, bytes = 0;
    int rc;

    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t off = sqlite3_column_int64(st, 0);

        cnt++;
        bytes += sqlite3_column_int64(st, 1);
        if (off_find(b->offs, n, off) < 0) {
            problem(c,
                    "dead letter at offset %" PRId64 " names no event of "
                    "chunk %" PRId64,
                    off, id);
        } else if (p != NULL && off > p->batched) {
            problem(c,
                    "dead letter at offset %" PRId64 " of %s[%d] was never "
                    "batched",
                    off, p->topic, p->partition);
        }
    }
    if (rc != SQLITE_DONE) {
        problem(c, "cannot read the dead letters of chunk %" PRId64 ": %s", id,
                sqlite3_errmsg(c->db));
    } else if (cnt != r->dead || bytes != r->dead_bytes) {
        problem(c,
                "chunk %" PRId64 ": %" PRId64 " dead letters (%" PRId64
                " B), its row says %" PRId64 " (%" PRId64 " B)",
                id, cnt, bytes, r->dead, r->dead_bytes);
    }
    sqlite3_reset(st);
}

/*
 * Checks the pieces on chunk id: ranges and counts, no event in two
 * unfinished batches, no delivered batch with undelivered members, and
 * the chunk's undone counters (pending + in flight).
 */
static void ck_pieces(struct ck *c, sqlite3_stmt *st, int64_t id,
                      const struct rrow *r, struct rpart *p, struct ckbuf *b,
                      size_t n, int64_t pend, int64_t pend_bytes)
{
    int64_t infl = 0, infl_bytes = 0;
    int rc;

    b->nunf = b->ndel = 0;
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        int64_t first = sqlite3_column_int64(st, 1);
        int64_t last = sqlite3_column_int64(st, 2);
        int64_t count = sqlite3_column_int64(st, 3);
        int64_t pbytes = sqlite3_column_int64(st, 4);
        int has_batch = sqlite3_column_type(st, 5) != SQLITE_NULL;
        int state = sqlite3_column_int(st, 5);
        int flags = sqlite3_column_int(st, 6);
        const char *bid = (const char *)sqlite3_column_text(st, 7);
        int64_t span_bytes;
        int64_t span = off_span(b->offs, b->lens, n, first, last, &span_bytes);
        struct ival *iv;

        if (!has_batch) {
            problem(c,
                    "chunk %" PRId64 ": a member range belongs to no batch "
                    "(seq %" PRId64 ")",
                    id, seq);
            continue;
        }
        if (first > last || first < r->first || last > r->last) {
            problem(c,
                    "batch %s: member range %" PRId64 "..%" PRId64
                    " outside chunk %" PRId64,
                    bid, first, last, id);
            continue;
        }
        if (span != count || span_bytes != pbytes) {
            problem(c,
                    "batch %s: member range %" PRId64 "..%" PRId64
                    " says %" PRId64 " events, the chunk holds %" PRId64,
                    bid, first, last, count, span);
        }
        if (state <= JOURNAL_BATCH_FAILED && !(flags & JOURNAL_BATCH_REPLAY)) {
            infl += count;
            infl_bytes += pbytes;
            if (p != NULL && last > p->batched) {
                problem(c,
                        "batch %s holds offsets of %s[%d] above the batch "
                        "cursor %" PRId64,
                        bid, p->topic, p->partition, p->batched);
            }
            if (grow_array((void **)&b->unf, &b->unfcap, b->nunf + 1,
                           sizeof(*b->unf)) < 0) {
                continue;
            }
            iv = &b->unf[b->nunf++];
        } else if (state == JOURNAL_BATCH_DELIVERED &&
                   !(flags & JOURNAL_BATCH_REPLAY)) {
            if (p != NULL && last > p->batched) {
                problem(c,
                        "delivered batch %s has pending members (offsets "
                        "above %" PRId64 " of %s[%d])",
                        bid, p->batched, p->topic, p->partition);
            }
            if (grow_array((void **)&b->del, &b->delcap, b->ndel + 1,
                           sizeof(*b->del)) < 0) {
                continue;
            }
            iv = &b->del[b->ndel++];
        } else {
            continue;
        }
        iv->first = first;
        iv->last = last;
        iv->seq = seq;
        snprintf(iv->id, sizeof(iv->id), "%s", bid ? bid : "?");
    }
    if (rc != SQLITE_DONE) {
        problem(c, "cannot read the batch members on chunk %" PRId64 ": %s", id,
                sqlite3_errmsg(c->db));
        sqlite3_reset(st);
        return;
    }
    sqlite3_reset(st);
    if (b->nunf > 1) {
        qsort(b->unf, b->nunf, sizeof(*b->unf), ival_cmp);
        for (size_t i = 1; i < b->nunf; i++) {
            if (b->unf[i].first <= b->unf[i - 1].last) {
                problem(c,
                        "offsets %" PRId64 "..%" PRId64 " of chunk %" PRId64
                        " are in two unfinished batches (%s, %s)",
                        b->unf[i].first, b->unf[i - 1].last, id,
                        b->unf[i - 1].id, b->unf[i].id);
            }
        }
    }
    for (size_t d = 0; d < b->ndel; d++) {
        for (size_t u = 0; u < b->nunf; u++) {
            if (b->del[d].first <= b->unf[u].last &&
                b->unf[u].first <= b->del[d].last) {
                problem(c,
                        "delivered batch %s has undelivered members "
                        "(in flight again in batch %s)",
                        b->del[d].id, b->unf[u].id);
            }
        }
    }
    if (r->undone != pend + infl ||
        r->undone_bytes != pend_bytes + infl_bytes) {
        problem(c,
                "chunk %" PRId64 ": %" PRId64 " undelivered events (%" PRId64
                " pending + %" PRId64 " in flight), its row says %" PRId64,
                id, pend + infl, pend, infl, r->undone);
    }
}

static void ck_chunks(struct ck *c, struct rparts *parts,
                      const struct recover_progress *pg)
{
    sqlite3_stmt *row = NULL, *dead = NULL, *pieces = NULL;
    struct rchunk *ids = NULL;
    struct ckbuf b;
    struct ticker tick;
    char why[256] = "";
    size_t nids = 0;
    int rc;

    memset(&b, 0, sizeof(b));
    rc = read_chunk_ids(c->db, &ids, &nids, why, sizeof(why));
    if (rc < 0) {
        problem(c, "out of memory listing chunks");
        return;
    }
    if (rc > 0) {
        problem(c, "%s", why);
    }
    if (sqlite3_prepare_v2(c->db, CHUNK_ROW_SQL, -1, &row, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "SELECT offset, value_len FROM dead"
                           " WHERE chunk_id = ?",
                           -1, &dead, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "SELECT bp.batch_seq, bp.first_offset,"
                           " bp.last_offset, bp.count, bp.bytes, b.state,"
                           " b.flags, b.id FROM pieces bp LEFT JOIN batches b"
                           " ON b.seq = bp.batch_seq WHERE bp.chunk_id = ?",
                           -1, &pieces, NULL) != SQLITE_OK) {
        problem(c, "cannot read chunks: %s", sqlite3_errmsg(c->db));
        goto out;
    }
    ticker_init(&tick, pg, "check", (int64_t)nids);
    for (size_t i = 0; i < nids; i++) {
        struct rrow r;
        struct rpart *p;
        int64_t pend = 0, pend_bytes = 0;
        size_t n;
        int bad;

        ticker_tick(&tick, (int64_t)i);
        rc = read_chunk(row, ids[i].id, &r, why, sizeof(why));
        if (rc == -ENOENT) {
            continue;
        }
        if (rc < 0) {
            problem(c, "chunk %" PRId64 " is unreadable: %s", ids[i].id, why);
            c->rep->unreadable++;
            continue;
        }
        c->rep->chunks++;
        p = rparts_find(parts, r.part_id);
        if (p == NULL) {
            problem(c,
                    "chunk %" PRId64 " belongs to no known partition (%" PRId64
                    ")",
                    ids[i].id, r.part_id);
        }
        n = ck_decode(c, ids[i].id, &r, &b, &bad);
        c->rep->events += (int64_t)n;
        if (r.undone < 0 || r.dead < 0 || r.undone + r.dead > r.count) {
            problem(c,
                    "chunk %" PRId64 ": counters out of range (count %" PRId64
                    ", undone %" PRId64 ", dead %" PRId64 ")",
                    ids[i].id, r.count, r.undone, r.dead);
        }
        if (p != NULL) {
            /* INV-2: no (topic, partition, offset) stored twice */
            if (p->prev_last >= 0 && r.first <= p->prev_last) {
                problem(c,
                        "%s[%d]: offsets %" PRId64 "..%" PRId64
                        " are stored twice (chunk %" PRId64 ")",
                        p->topic, p->partition, r.first, p->prev_last,
                        ids[i].id);
            }
            if (r.last > p->prev_last) {
                p->prev_last = r.last;
            }
            if (r.last > p->max_last) {
                p->max_last = r.last;
            }
            if ((r.cut != 0) != (r.last <= p->batched)) {
                problem(c,
                        "chunk %" PRId64 ": cut flag %" PRId64 " but the "
                        "batch cursor of %s[%d] is %" PRId64,
                        ids[i].id, r.cut, p->topic, p->partition, p->batched);
            }
            for (size_t k = 0; k < n; k++) {
                if (b.offs[k] > p->batched) {
                    pend++;
                    pend_bytes += b.lens[k];
                }
            }
            p->sum_pending += pend;
            p->sum_pending_bytes += pend_bytes;
        }
        if (!bad) {
            ck_dead(c, dead, ids[i].id, &r, p, &b, n);
            ck_pieces(c, pieces, ids[i].id, &r, p, &b, n, pend, pend_bytes);
        }
        free(r.data);
    }
    ticker_end(&tick, (int64_t)nids);
    for (size_t i = 0; i < parts->n; i++) {
        struct rpart *p = &parts->v[i];

        if (p->batched > p->high) {
            problem(c,
                    "%s[%d]: batch cursor %" PRId64 " above the high "
                    "offset %" PRId64,
                    p->topic, p->partition, p->batched, p->high);
        }
        if (p->max_last > p->high) {
            problem(c,
                    "%s[%d]: offset %" PRId64 " stored above the high "
                    "offset %" PRId64,
                    p->topic, p->partition, p->max_last, p->high);
        }
        if (c->rep->unreadable == 0 &&
            (p->sum_pending != p->pending_count ||
             p->sum_pending_bytes != p->pending_bytes)) {
            problem(c,
                    "%s[%d]: %" PRId64 " pending events (%" PRId64
                    " B) stored, the cursor row says %" PRId64 " (%" PRId64
                    " B)",
                    p->topic, p->partition, p->sum_pending,
                    p->sum_pending_bytes, p->pending_count, p->pending_bytes);
        }
    }
out:
    sqlite3_finalize(row);
    sqlite3_finalize(dead);
    sqlite3_finalize(pieces);
    ckbuf_release(&b);
    free(ids);
}

static void ck_batches(struct ck *c)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(
        c->db,
        "SELECT b.id, b.state, b.count, b.bytes, b.attempts, b.first_sent_ms,"
        " (SELECT COALESCE(SUM(count), 0) FROM pieces WHERE batch_seq = b.seq),"
        " (SELECT COALESCE(SUM(bytes), 0) FROM pieces WHERE batch_seq = b.seq)"
        " FROM batches b",
        -1, &st, NULL);
    if (rc != SQLITE_OK) {
        problem(c, "cannot read batches: %s", sqlite3_errmsg(c->db));
        sqlite3_finalize(st);
        return;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        int state = sqlite3_column_int(st, 1);
        int64_t count = sqlite3_column_int64(st, 2);
        int64_t bytes = sqlite3_column_int64(st, 3);
        int64_t attempts = sqlite3_column_int64(st, 4);
        int64_t first_sent = sqlite3_column_int64(st, 5);
        int64_t pc = sqlite3_column_int64(st, 6);
        int64_t pb = sqlite3_column_int64(st, 7);

        c->rep->batches++;
        if (state < JOURNAL_BATCH_PENDING || state > JOURNAL_BATCH_SPLIT) {
            problem(c, "batch %s: unknown state %d", id, state);
            continue;
        }
        /* retention may retire part of a finished batch's members, so
         * membership must add up only for unfinished ones */
        if (state <= JOURNAL_BATCH_FAILED && (pc != count || pb != bytes)) {
            problem(c,
                    "batch %s (%s): %" PRId64 " members (%" PRId64
                    " B), its row says %" PRId64 " (%" PRId64 " B)",
                    id,
                    journal_batch_state_name((enum journal_batch_state)state),
                    pc, pb, count, bytes);
        }
        if (state == JOURNAL_BATCH_SENT && (attempts < 1 || first_sent <= 0)) {
            problem(c, "batch %s is sent but has no send recorded", id);
        }
    }
    if (rc != SQLITE_DONE) {
        problem(c, "cannot read batches: %s", sqlite3_errmsg(c->db));
    }
    sqlite3_finalize(st);
}

/* Rows that point at nothing. */
static void ck_orphans(struct ck *c)
{
    static const struct {
        const char *sql;
        const char *what;
    } q[] = {
        {"SELECT COUNT(*) FROM pieces WHERE chunk_id NOT IN"
         " (SELECT id FROM chunks)",
         "batch member ranges name a chunk that is gone"},
        {"SELECT COUNT(*) FROM pieces WHERE batch_seq NOT IN"
         " (SELECT seq FROM batches)",
         "batch member ranges belong to no batch"},
        {"SELECT COUNT(*) FROM dead WHERE chunk_id NOT IN"
         " (SELECT id FROM chunks)",
         "dead letters name a chunk that is gone"},
        {"SELECT COUNT(*) FROM chunks WHERE part_id NOT IN"
         " (SELECT id FROM partitions)",
         "chunks belong to no partition"},
    };

    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c->db, q[i].sql, -1, &st, NULL);

        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
        }
        if (rc == SQLITE_ROW) {
            int64_t n = sqlite3_column_int64(st, 0);

            if (n > 0) {
                problem(c, "%" PRId64 " %s", n, q[i].what);
            }
        } else {
            problem(c, "cannot check that %s: %s", q[i].what,
                    sqlite3_errmsg(c->db));
        }
        sqlite3_finalize(st);
    }
}

int recover_check(const char *path, const struct recover_progress *pg,
                  struct recover_report *rep, char *err, size_t errlen)
{
    struct rparts parts;
    struct ck c;
    char why[256] = "";
    int lock_fd = -1;
    int rc;

    memset(rep, 0, sizeof(*rep));
    memset(&parts, 0, sizeof(parts));
    memset(&c, 0, sizeof(c));
    c.rep = rep;
    rc = lock_read(path, &lock_fd, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = raw_open(path, &c.db, err, errlen);
    if (rc < 0) {
        goto unlock;
    }
    ck_integrity(&c);
    if (!ck_schema(&c)) {
        goto close_db;
    }
    rc = read_parts(c.db, &parts, why, sizeof(why));
    if (rc < 0) {
        set_err(err, errlen, "out of memory");
        goto close_db;
    }
    if (rc > 0) {
        problem(&c, "%s", why);
    }
    ck_chunks(&c, &parts, pg);
    ck_batches(&c);
    ck_orphans(&c);
    rc = 0;
close_db:
    rparts_release(&parts);
    sqlite3_close(c.db);
unlock:
    lock_release(lock_fd);
    return rc;
}

/* --------------------------------------------------------------- salvage */

/*
 * A chunk whose row cannot be read whole (its BLOB's overflow chain runs
 * into a damaged page): reads the row's other columns, then the BLOB page
 * by page with incremental I/O up to the first failure. The page before
 * the failure may be the damaged one (SQLite reads page contents without
 * checking them; only the broken link to the next page fails), so the last
 * two pages' worth of what was read are dropped as well. Returns 0 with
 * r->data holding the trusted prefix (the decoder then stops at the first
 * event cut off), or -EIO when nothing of the row is readable.
 */
#define OVERFLOW_CONTENT 4092 /* bytes of BLOB per 4 KiB overflow page */

static int read_chunk_prefix(sqlite3 *db, int64_t id, struct rrow *r)
{
    sqlite3_stmt *st = NULL;
    sqlite3_blob *bl = NULL;
    size_t total, good = 0;
    uint8_t *buf;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = sqlite3_prepare_v2(db,
                            "SELECT part_id, route, first_offset,"
                            " last_offset, count FROM chunks WHERE id = ?",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return -EIO;
    }
    r->part_id = sqlite3_column_int64(st, 0);
    r->route = sqlite3_column_int64(st, 1);
    r->first = sqlite3_column_int64(st, 2);
    r->last = sqlite3_column_int64(st, 3);
    r->count = sqlite3_column_int64(st, 4);
    sqlite3_finalize(st);
    if (sqlite3_blob_open(db, "main", "chunks", "data", id, 0, &bl) !=
        SQLITE_OK) {
        sqlite3_blob_close(bl);
        return -EIO;
    }
    total = (size_t)sqlite3_blob_bytes(bl);
    buf = malloc(total ? total : 1);
    if (buf == NULL) {
        sqlite3_blob_close(bl);
        return -ENOMEM;
    }
    while (good < total) {
        size_t n = total - good < 4096 ? total - good : 4096;

        if (sqlite3_blob_read(bl, buf + good, (int)n, (int)good) != SQLITE_OK) {
            break;
        }
        good += n;
    }
    sqlite3_blob_close(bl);
    if (good < total) {
        good = good > 2 * OVERFLOW_CONTENT ? good - 2 * OVERFLOW_CONTENT : 0;
    }
    r->data = buf;
    r->len = good;
    return 0;
}

struct dkey {
    int64_t chunk, off;
};

struct pkey {
    int64_t chunk, first, last;
};

static int dkey_cmp(const void *a, const void *b)
{
    const struct dkey *x = a, *y = b;

    if (x->chunk != y->chunk) {
        return x->chunk < y->chunk ? -1 : 1;
    }
    return x->off < y->off ? -1 : x->off > y->off;
}

static int pkey_cmp(const void *a, const void *b)
{
    const struct pkey *x = a, *y = b;

    if (x->chunk != y->chunk) {
        return x->chunk < y->chunk ? -1 : 1;
    }
    return x->first < y->first ? -1 : x->first > y->first;
}

/* What salvage knows about event states in the source. */
struct sv {
    sqlite3 *db;
    struct rparts parts;
    struct dkey *dead;
    size_t ndead;
    int dead_ok;
    struct pkey *infl;
    size_t ninfl;
    int infl_ok;
};

static void sv_release(struct sv *s)
{
    rparts_release(&s->parts);
    free(s->dead);
    free(s->infl);
}

/* Reads the dead set; dead_ok = 0 when any of it is unreadable. */
static int sv_read_dead(struct sv *s)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    s->dead_ok = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT chunk_id, offset FROM dead", -1, &st,
                           NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return 0;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow_array((void **)&s->dead, &cap, s->ndead + 1,
                       sizeof(*s->dead)) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        s->dead[s->ndead].chunk = sqlite3_column_int64(st, 0);
        s->dead[s->ndead].off = sqlite3_column_int64(st, 1);
        s->ndead++;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) {
        s->dead_ok = 1;
        if (s->ndead > 1) {
            qsort(s->dead, s->ndead, sizeof(*s->dead), dkey_cmp);
        }
    }
    return 0;
}

/* Reads the member ranges of unfinished, non-replay batches (in flight). */
static int sv_read_inflight(struct sv *s)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    s->infl_ok = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT bp.chunk_id, bp.first_offset,"
                           " bp.last_offset FROM batches b JOIN pieces bp"
                           " ON bp.batch_seq = b.seq WHERE b." JOURNAL_SQL_OPEN
                           " AND (b.flags & 1) = 0",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return 0;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow_array((void **)&s->infl, &cap, s->ninfl + 1,
                       sizeof(*s->infl)) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        s->infl[s->ninfl].chunk = sqlite3_column_int64(st, 0);
        s->infl[s->ninfl].first = sqlite3_column_int64(st, 1);
        s->infl[s->ninfl].last = sqlite3_column_int64(st, 2);
        s->ninfl++;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) {
        s->infl_ok = 1;
        if (s->ninfl > 1) {
            qsort(s->infl, s->ninfl, sizeof(*s->infl), pkey_cmp);
        }
    }
    return 0;
}

static int sv_is_dead(const struct sv *s, int64_t chunk, int64_t off)
{
    struct dkey k = {chunk, off};

    return s->ndead > 0 &&
           bsearch(&k, s->dead, s->ndead, sizeof(k), dkey_cmp) != NULL;
}

static int sv_is_inflight(const struct sv *s, int64_t chunk, int64_t off)
{
    /* ranges of one chunk never overlap (check verifies it); few per chunk */
    size_t lo = 0, hi = s->ninfl;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (s->infl[mid].chunk < chunk) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < s->ninfl && s->infl[i].chunk == chunk; i++) {
        if (off >= s->infl[i].first && off <= s->infl[i].last) {
            return 1;
        }
    }
    return 0;
}

enum sv_state { SV_PENDING, SV_INFLIGHT, SV_DEAD, SV_DELIVERED, SV_UNKNOWN };

static enum sv_state sv_state(const struct sv *s, const struct rpart *p,
                              int64_t chunk, int64_t off)
{
    if (s->dead_ok && sv_is_dead(s, chunk, off)) {
        return SV_DEAD;
    }
    if (off > p->batched) {
        return SV_PENDING;
    }
    if (s->infl_ok && sv_is_inflight(s, chunk, off)) {
        return SV_INFLIGHT;
    }
    if (s->dead_ok && s->infl_ok) {
        return SV_DELIVERED;
    }
    return SV_UNKNOWN;
}

/* Decodes chunk r and appends what salvage keeps to dst. */
static int sv_copy_chunk(struct sv *s, struct journal *dst, int64_t id,
                         const struct rrow *r, const struct rpart *p, int flags,
                         struct recover_salvage_result *res,
                         struct journal_event **evs, size_t *evcap, char *err,
                         size_t errlen)
{
    struct journal_append_result ar;
    struct chunk_reader rd;
    struct chunk_event ce;
    int64_t prev = -1;
    size_t n = 0;
    int damaged = 0;
    int k;
    int rc;

    chunk_reader_init(&rd, r->data, r->len, r->first);
    while ((k = chunk_reader_next(&rd, &ce)) == 1) {
        struct journal_event *ev;
        enum sv_state state;

        /* damaged bytes may still decode: keep only plausible events */
        if (ce.offset < r->first || ce.offset > r->last || ce.offset <= prev) {
            damaged = 1;
            break;
        }
        prev = ce.offset;
        res->events_read++;
        state = sv_state(s, p, id, ce.offset);
        if (state == SV_DELIVERED && !(flags & RECOVER_SALVAGE_DELIVERED)) {
            res->events_skipped++;
            continue;
        }
        if (state == SV_UNKNOWN) {
            res->events_unknown++;
        } else if (state == SV_DEAD) {
            res->events_dead++;
        }
        if (grow_array((void **)evs, evcap, n + 1, sizeof(**evs)) < 0) {
            set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
        ev = &(*evs)[n++];
        memset(ev, 0, sizeof(*ev));
        ev->route = (int)r->route;
        ev->topic = p->topic;
        ev->partition = p->partition;
        ev->offset = ce.offset;
        ev->timestamp_ms = ce.timestamp_ms;
        ev->key = ce.key;
        ev->key_len = ce.key_len;
        ev->value = ce.value;
        ev->value_len = ce.value_len;
        ev->headers = ce.headers;
        ev->headers_len = ce.headers_len;
    }
    if (k < 0) {
        damaged = 1;
    }
    if (damaged) {
        res->chunks_lost++;
    } else {
        res->chunks_read++;
    }
    if (n == 0) {
        return 0;
    }
    memset(&ar, 0, sizeof(ar));
    rc = journal_append(dst, *evs, n, &ar, err, errlen);
    if (rc < 0) {
        return rc;
    }
    res->events_copied += ar.appended;
    res->events_present += ar.duplicates;
    journal_append_result_release(&ar);
    return 0;
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    if (stat(a, &sa) < 0 || stat(b, &sb) < 0) {
        return 0;
    }
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The Schema Registry schemas (journal schema 3), best effort: a source
 * without the table (schema 2) or with an unreadable one has nothing to
 * give; the registry serves them again. */
static int sv_copy_schemas(sqlite3 *src, struct journal *dj, char *err,
                           size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;

    if (sqlite3_prepare_v2(src,
                           "SELECT registry, id, type, schema, fetched_ms"
                           " FROM schemas",
                           -1, &st, NULL) != SQLITE_OK) {
        return 0;
    }
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        const char *reg = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 2);
        const char *text = (const char *)sqlite3_column_text(st, 3);

        if (reg == NULL || type == NULL || text == NULL) {
            continue;
        }
        rc = journal_schema_put(dj, reg, sqlite3_column_int64(st, 1), type,
                                text, sqlite3_column_int64(st, 4), err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

int recover_salvage(const char *src, const char *dst, int flags,
                    const struct recover_progress *pg,
                    struct recover_salvage_result *res, char *err,
                    size_t errlen)
{
    struct recover_salvage_result local;
    struct journal_options jo;
    struct journal *dj = NULL;
    struct journal_event *evs = NULL;
    struct rchunk *ids = NULL;
    sqlite3_stmt *row = NULL;
    struct ticker tick;
    struct sv s;
    char why[256] = "";
    size_t nids = 0, evcap = 0;
    int lock_fd = -1;
    int rc;

    if (res == NULL) {
        res = &local;
    }
    memset(res, 0, sizeof(*res));
    memset(&s, 0, sizeof(s));
    if (strcmp(src, dst) == 0 || same_file(src, dst)) {
        set_err(err, errlen, "salvage needs a new journal, not '%s' itself",
                dst);
        return -EINVAL;
    }
    rc = lock_read(src, &lock_fd, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = raw_open(src, &s.db, err, errlen);
    if (rc < 0) {
        goto unlock;
    }
    rc = read_parts(s.db, &s.parts, why, sizeof(why));
    sv_read_epochs(&s.parts, s.db);
    if (rc == 0) {
        rc = sv_read_dead(&s);
    }
    if (rc == 0) {
        rc = sv_read_inflight(&s);
    }
    if (rc == 0) {
        rc = read_chunk_ids(s.db, &ids, &nids, why, sizeof(why));
    }
    if (rc < 0) {
        set_err(err, errlen, "out of memory");
        goto close_src;
    }
    if (sqlite3_prepare_v2(s.db, CHUNK_ROW_SQL, -1, &row, NULL) != SQLITE_OK) {
        set_err(err, errlen, "cannot read chunks of '%s': %s", src,
                sqlite3_errmsg(s.db));
        rc = -EIO;
        goto close_src;
    }
    memset(&jo, 0, sizeof(jo));
    jo.path = dst;
    jo.sync_full = 1;
    rc = journal_open(&jo, &dj, err, errlen);
    if (rc < 0) {
        goto close_src;
    }
    ticker_init(&tick, pg, "salvage", (int64_t)nids);
    for (size_t i = 0; i < nids; i++) {
        struct rrow r;
        struct rpart *p;

        ticker_tick(&tick, (int64_t)i);
        rc = read_chunk(row, ids[i].id, &r, why, sizeof(why));
        if (rc == -ENOENT) {
            continue;
        }
        if (rc == -ENOMEM) {
            set_err(err, errlen, "out of memory");
            goto close_dst;
        }
        if (rc < 0) {
            rc = read_chunk_prefix(s.db, ids[i].id, &r);
            if (rc == -ENOMEM) {
                set_err(err, errlen, "out of memory");
                goto close_dst;
            }
            if (rc < 0) {
                res->chunks_lost++;
                continue;
            }
            res->chunks_partial++;
        }
        p = rparts_find(&s.parts, r.part_id);
        if (p == NULL) {
            /* without its partition row the topic is unknown */
            res->chunks_lost++;
            free(r.data);
            continue;
        }
        if (p->epoch > 0 && !p->epoch_begun) {
            /* a later epoch of the partition: its offsets start again, so
             * it gets its own epoch in dst (chunks come in epoch order) */
            rc = journal_new_epoch(dj, p->topic, p->partition, p->route,
                                   p->epoch_start > 0 ? p->epoch_start : 0,
                                   NULL, err, errlen);
            if (rc < 0) {
                free(r.data);
                goto close_dst;
            }
        }
        p->epoch_begun = 1;
        rc = sv_copy_chunk(&s, dj, ids[i].id, &r, p, flags, res, &evs, &evcap,
                           err, errlen);
        free(r.data);
        if (rc < 0) {
            goto close_dst;
        }
    }
    ticker_end(&tick, (int64_t)nids);
    rc = sv_copy_schemas(s.db, dj, err, errlen);
close_dst:
    journal_close(dj);
close_src:
    sqlite3_finalize(row);
    free(ids);
    free(evs);
    sv_release(&s);
    sqlite3_close(s.db);
unlock:
    lock_release(lock_fd);
    return rc;
}

/* -------------------------------------------------------------- snapshot */

int recover_snapshot(const char *src, const char *dst, char *err, size_t errlen)
{
    sqlite3 *sdb = NULL, *ddb = NULL;
    sqlite3_backup *bk;
    struct stat sb;
    int fd, rc;

    if (stat(dst, &sb) == 0) {
        set_err(err, errlen, "snapshot target '%s' exists", dst);
        return -EEXIST;
    }
    rc = raw_open(src, &sdb, err, errlen);
    if (rc < 0) {
        return rc;
    }
    /* the copy holds every payload: 0600 whatever the umask (SQLite would
     * create it 0644 & ~umask) */
    fd = open(dst, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, errlen, "cannot create '%s': %s", dst, strerror(errno));
        sqlite3_close(sdb);
        return -EIO;
    }
    close(fd);
    if (sqlite3_open_v2(dst, &ddb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        set_err(err, errlen, "cannot create '%s': %s", dst,
                ddb ? sqlite3_errmsg(ddb) : "out of memory");
        rc = -EIO;
        goto out;
    }
    bk = sqlite3_backup_init(ddb, "main", sdb, "main");
    if (bk == NULL) {
        set_err(err, errlen, "snapshot of '%s': %s", src, sqlite3_errmsg(ddb));
        rc = -EIO;
        goto out;
    }
    /* one step: one read transaction, so the copy is consistent */
    rc = sqlite3_backup_step(bk, -1);
    sqlite3_backup_finish(bk);
    if (rc != SQLITE_DONE) {
        set_err(err, errlen, "snapshot of '%s': %s", src, sqlite3_errstr(rc));
        rc = -EIO;
        goto out;
    }
    /* a plain rollback-journal file: opens read-only without -wal/-shm */
    if (sqlite3_exec(ddb, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) !=
        SQLITE_OK) {
        set_err(err, errlen, "snapshot '%s': %s", dst, sqlite3_errmsg(ddb));
        rc = -EIO;
        goto out;
    }
    rc = 0;
out:
    sqlite3_close(ddb);
    sqlite3_close(sdb);
    if (rc < 0) {
        unlink(dst);
    }
    return rc;
}
