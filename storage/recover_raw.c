/*
 * recover_raw.c - reading a journal file with plain read-only SQLite, for
 * check and salvage (recover_internal.h): the read lock that keeps a
 * gateway off the file, opening it without journal_open, and reading the
 * partitions and chunks row by row, so that a damaged page costs only the
 * rows stored on it. Never writes. Calling thread only.
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

/* ------------------------------------------------------ raw file access */

/*
 * The journal's lock protocol (storage/journal.c, lock_take): an open file
 * description lock on "<path>.lock", F_WRLCK for the gateway, F_RDLCK for
 * read-only opens. check and salvage read the file with plain SQLite, so
 * they take the F_RDLCK themselves: refused while a gateway runs, and no
 * gateway can start on the file while they read it.
 */
int raw_lock_read(const char *path, int *fd_out, char *err, size_t errlen)
{
    char lpath[4096];

    *fd_out = -1;
    if ((size_t)snprintf(lpath, sizeof(lpath), "%s.lock", path) >=
        sizeof(lpath)) {
        set_err(err, errlen, "journal path too long");
        return -ENAMETOOLONG;
    }
    return journal_lock_file(path, lpath, 1, fd_out, err, errlen);
}

void raw_lock_release(int fd)
{
    if (fd >= 0) {
        close(fd); /* releases the OFD lock */
    }
}

int raw_open(const char *path, sqlite3 **db, char *err, size_t errlen)
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

void raw_rparts_release(struct rparts *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].topic);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

struct rpart *raw_rparts_find(struct rparts *p, int64_t id)
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

    if (raw_rparts_find(p, sqlite3_column_int64(st, 0)) != NULL) {
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
int raw_read_parts(sqlite3 *db, struct rparts *p, char *why, size_t whylen)
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
void raw_read_epochs(struct rparts *p, sqlite3 *db)
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
        struct rpart *r = raw_rparts_find(p, sqlite3_column_int64(st, 0));

        if (r != NULL) {
            r->epoch = sqlite3_column_int64(st, 1);
            r->epoch_start = sqlite3_column_int64(st, 2);
        }
    }
    sqlite3_finalize(st);
}

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
int raw_read_chunk_ids(sqlite3 *db, struct rchunk **out, size_t *n, char *why,
                       size_t whylen)
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

void raw_row_head(sqlite3_stmt *st, struct rrow *r)
{
    r->part_id = sqlite3_column_int64(st, 0);
    r->route = sqlite3_column_int64(st, 1);
    r->first = sqlite3_column_int64(st, 2);
    r->last = sqlite3_column_int64(st, 3);
    r->count = sqlite3_column_int64(st, 4);
}

const char *raw_data_table(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int v4 = 0;

    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                           " AND name = 'chunk_data'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        v4 = 1;
    }
    sqlite3_finalize(st);
    return v4 ? "chunk_data" : "chunks";
}

static const char *chunk_row_sql(sqlite3 *db)
{
    /* a LEFT JOIN: a chunk whose events are gone still reads, empty, and
     * its count says what was lost */
    if (strcmp(raw_data_table(db), "chunk_data") == 0) {
        return "SELECT c.part_id, c.route, c.first_offset, c.last_offset,"
               " c.count, c.bytes, c.undone, c.undone_bytes, c.dead,"
               " c.dead_bytes, c.cut, c.ts_min, c.ts_max, d.data"
               " FROM chunks c LEFT JOIN chunk_data d ON d.id = c.id"
               " WHERE c.id = ?";
    }
    return "SELECT part_id, route, first_offset, last_offset, count, bytes,"
           " undone, undone_bytes, dead, dead_bytes, cut, ts_min, ts_max,"
           " data FROM chunks WHERE id = ?";
}

int raw_prepare_chunk_row(sqlite3 *db, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, chunk_row_sql(db), -1, st, NULL) == SQLITE_OK
               ? 0
               : -EIO;
}

/* Reads chunk `id`. 0, -ENOENT (gone), -EIO (unreadable: why filled). */
int raw_read_chunk(sqlite3_stmt *st, int64_t id, struct rrow *r, char *why,
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
    raw_row_head(st, r);
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
