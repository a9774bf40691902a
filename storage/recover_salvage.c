/*
 * recover_salvage.c - `kadx recover salvage` and `snapshot` (recover.h):
 * copying every readable event of a damaged journal into a new one through
 * journal.h (so the target keeps the journal's invariants), with each
 * event's state recovered from the dead, in-flight and delivered marks that
 * survive; and a consistent copy of a journal file. Reads the source with
 * plain SQLite (recover_raw.c). Calling thread only.
 */
#include "base/array.h"
#include "base/clock.h"
#include "base/err.h"
#include "storage/chunk.h"
#include "storage/journal.h"
#include "storage/recover.h"
#include "storage/recover_internal.h"

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
    raw_row_head(st, r);
    sqlite3_finalize(st);
    if (sqlite3_blob_open(db, "main", raw_data_table(db), "data", id, 0, &bl) !=
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
    raw_rparts_release(&s->parts);
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
        chunk_event_to_journal(&ce, ev);
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

/* The source's partitions, dead and in-flight marks and chunk ids: 0, 1
 * when a table could be read only in part, or -ENOMEM. */
static int sv_read_source(struct sv *s, struct rchunk **ids, size_t *nids)
{
    char why[256] = "";
    int rc;

    rc = raw_read_parts(s->db, &s->parts, why, sizeof(why));
    raw_read_epochs(&s->parts, s->db);
    if (rc == 0) {
        rc = sv_read_dead(s);
    }
    if (rc == 0) {
        rc = sv_read_inflight(s);
    }
    if (rc == 0) {
        rc = raw_read_chunk_ids(s->db, ids, nids, why, sizeof(why));
    }
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
    rc = raw_lock_read(src, &lock_fd, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = raw_open(src, &s.db, err, errlen);
    if (rc < 0) {
        goto unlock;
    }
    rc = sv_read_source(&s, &ids, &nids);
    if (rc < 0) {
        set_err(err, errlen, "out of memory");
        goto close_src;
    }
    if (raw_prepare_chunk_row(s.db, &row) < 0) {
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
        rc = raw_read_chunk(row, ids[i].id, &r, why, sizeof(why));
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
        p = raw_rparts_find(&s.parts, r.part_id);
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
    raw_lock_release(lock_fd);
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
