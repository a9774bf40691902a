/*
 * recover_internal.h - what the files of `kadx recover`'s storage half
 * share (private to storage/): the progress ticker, and the raw file
 * access check and salvage use to read a journal too damaged for
 * journal_open (recover_raw.c). Synchronous, calling thread only.
 */
#ifndef KADX_STORAGE_RECOVER_INTERNAL_H
#define KADX_STORAGE_RECOVER_INTERNAL_H

#include "base/clock.h"
#include "storage/recover.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Rate-limits progress reports to one every 500 ms. */
struct ticker {
    const struct recover_progress *pg;
    const char *phase;
    int64_t total;
    int64_t last_ms;
};

static inline void ticker_init(struct ticker *t,
                               const struct recover_progress *pg,
                               const char *phase, int64_t total)
{
    t->pg = pg;
    t->phase = phase;
    t->total = total;
    t->last_ms = mono_ms();
}

static inline void ticker_tick(struct ticker *t, int64_t done)
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

static inline void ticker_end(struct ticker *t, int64_t done)
{
    if (t->pg != NULL && t->pg->fn != NULL) {
        t->pg->fn(t->pg->arg, t->phase, done, t->total);
    }
}

/* ------------------------------------------------------ raw file access */

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

/* A chunk's identity, for ordering reads. */
struct rchunk {
    int64_t id, part_id, first;
};

/* One chunk row read whole. */
struct rrow {
    int64_t part_id, route, first, last, count, bytes, undone, undone_bytes,
        dead, dead_bytes, cut, ts_min, ts_max;
    void *data;
    size_t len;
};

/* The table and column that hold a chunk's events in db: chunk_data.data
 * from schema 4 on, chunks.data before (a file recover reads may be of
 * either). */
const char *raw_data_table(sqlite3 *db);

/* Prepares the statement that reads one chunk row whole (bind its id),
 * for db's schema; raw_read_chunk steps it. 0 or -EIO. */
int raw_prepare_chunk_row(sqlite3 *db, sqlite3_stmt **st);

/*
 * The journal's lock protocol (storage/journal.c, lock_take): an open file
 * description lock on "<path>.lock", F_WRLCK for the gateway, F_RDLCK for
 * read-only opens. check and salvage read the file with plain SQLite, so
 * they take the F_RDLCK themselves: refused while a gateway runs, and no
 * gateway can start on the file while they read it.
 */
int raw_lock_read(const char *path, int *fd_out, char *err, size_t errlen);

void raw_lock_release(int fd);

int raw_open(const char *path, sqlite3 **db, char *err, size_t errlen);

/* Reads chunk `id`. 0, -ENOENT (gone), -EIO (unreadable: why filled). */
int raw_read_chunk(sqlite3_stmt *st, int64_t id, struct rrow *r, char *why,
                   size_t whylen);

/*
 * Collects the chunk ids: from the chunks_part index (its own pages: it
 * still lists the rows of a damaged table page) and from the table itself;
 * when both scans break, probes ids up to the largest seen + 10000.
 * Sorted by (part_id, first_offset, id), duplicates removed. Returns 0, 1
 * when a scan broke (*why filled), or -ENOMEM.
 */
int raw_read_chunk_ids(sqlite3 *db, struct rchunk **out, size_t *n, char *why,
                       size_t whylen);

/*
 * Reads the partitions table: a scan, and when the scan breaks, a probe of
 * each id up to the largest seen + 1000. Returns 0 when everything was
 * read, 1 when some rows may be missing (*why filled), or -ENOMEM.
 */
int raw_read_parts(sqlite3 *db, struct rparts *p, char *why, size_t whylen);

struct rpart *raw_rparts_find(struct rparts *p, int64_t id);

void raw_rparts_release(struct rparts *p);

/* Salvage: each row's offset epoch (schema 2; a schema 1 file, or a
 * damaged table, leaves every row at epoch 0). */
void raw_read_epochs(struct rparts *p, sqlite3 *db);

/* Reads a chunk row's part_id, route, first_offset, last_offset and count
 * from columns 0-4 of st (CHUNK_ROW_SQL and salvage's prefix read). */
void raw_row_head(sqlite3_stmt *st, struct rrow *r);

#endif
