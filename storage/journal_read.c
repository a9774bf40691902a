/*
 * journal_read.c - the journal's reads for the running gateway's admin API
 * (journal.h, "Reads for the admin API"): per partition the offset below
 * which everything is delivered (GET /status), and the delivered batches
 * of a route with their member ranges (POST /replay "missing"). Read-only
 * SQL on the READ connection (journal_with_read_db), safe from any thread;
 * the schema is in storage/README.md. Kept out of journal.c, which holds
 * the writer.
 */
#include "base/array.h"
#include "base/err.h"
#include "storage/journal.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct dl_ctx {
    struct journal_delivered *v;
    size_t n, cap;
    char *err;
    size_t errlen;
};

static int dl_read(void *arg, sqlite3 *db)
{
    struct dl_ctx *x = arg;
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(
        db,
        "SELECT p.topic, p.partition, p.high_offset, p.batched_offset,"
        " (SELECT MIN(bp.first_offset) FROM batches b JOIN pieces bp"
        "  ON bp.batch_seq = b.seq WHERE b." JOURNAL_SQL_OPEN
        " AND (b.flags & 1) = 0"
        "  AND bp.part_id = p.id)"
        " FROM partitions p WHERE p.sealed = 0"
        " ORDER BY p.topic, p.partition",
        -1, &st, NULL);
    if (rc != SQLITE_OK) {
        set_err(x->err, x->errlen, "delivered offsets: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -EIO;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *topic = (const char *)sqlite3_column_text(st, 0);
        int64_t high = sqlite3_column_int64(st, 2);
        int64_t d = sqlite3_column_int64(st, 3);
        struct journal_delivered *e;

        if (sqlite3_column_type(st, 4) != SQLITE_NULL &&
            sqlite3_column_int64(st, 4) - 1 < d) {
            d = sqlite3_column_int64(st, 4) - 1;
        }
        if (high < 0 || d < 0) {
            d = -1;
        }
        if (grow_array((void **)&x->v, &x->cap, x->n + 1, sizeof(*x->v)) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        e = &x->v[x->n];
        e->topic = strdup(topic ? topic : "");
        if (e->topic == NULL) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        e->partition = (int32_t)sqlite3_column_int64(st, 1);
        e->delivered_offset = d;
        x->n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        set_err(x->err, x->errlen, "delivered offsets: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

int journal_delivered_offsets(struct journal *j, struct journal_delivered **out,
                              size_t *n, char *err, size_t errlen)
{
    struct dl_ctx x;
    int rc;

    memset(&x, 0, sizeof(x));
    x.err = err;
    x.errlen = errlen;
    rc = journal_with_read_db(j, dl_read, &x);
    if (rc < 0) {
        journal_delivered_free(x.v, x.n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = x.v;
    *n = x.n;
    return 0;
}

void journal_delivered_free(struct journal_delivered *d, size_t n)
{
    for (size_t i = 0; i < n && d != NULL; i++) {
        free(d[i].topic);
    }
    free(d);
}

struct db_ctx {
    int route;
    const char *topic;
    int32_t partition;
    int64_t from, to;
    struct journal_dbatch *v;
    size_t n, cap;
    char *err;
    size_t errlen;
};

static int db_read(void *arg, sqlite3 *db)
{
    struct db_ctx *x = arg;
    sqlite3_stmt *st = NULL;
    int64_t last_seq = -1;
    size_t pcap = 0;
    int rc;

    rc = sqlite3_prepare_v2(
        db,
        "SELECT b.seq, b.id, b.flags, b.count, p.topic, p.partition,"
        " bp.first_offset, bp.last_offset FROM batches b"
        " JOIN pieces bp ON bp.batch_seq = b.seq"
        " JOIN partitions p ON p.id = bp.part_id"
        " WHERE b.route = ?1 AND b.state = " JOURNAL_SQL_DELIVERED
        " AND (?2 IS NULL OR p.topic = ?2) AND (?3 < 0 OR p.partition = ?3)"
        " AND (?4 < 0 OR bp.last_offset >= ?4)"
        " AND (?5 < 0 OR bp.first_offset <= ?5)"
        " ORDER BY b.seq, p.topic, p.partition, bp.first_offset",
        -1, &st, NULL);
    if (rc != SQLITE_OK) {
        set_err(x->err, x->errlen, "delivered batches: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -EIO;
    }
    sqlite3_bind_int(st, 1, x->route);
    if (x->topic != NULL) {
        sqlite3_bind_text(st, 2, x->topic, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(st, 3, x->partition);
    sqlite3_bind_int64(st, 4, x->from);
    sqlite3_bind_int64(st, 5, x->to);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const char *topic = (const char *)sqlite3_column_text(st, 4);
        struct journal_dbatch *b;
        struct journal_piece *pc;

        if (seq != last_seq) {
            const char *id = (const char *)sqlite3_column_text(st, 1);

            if (grow_array((void **)&x->v, &x->cap, x->n + 1, sizeof(*x->v)) <
                0) {
                rc = -ENOMEM;
                break;
            }
            b = &x->v[x->n++];
            memset(b, 0, sizeof(*b));
            snprintf(b->id, sizeof(b->id), "%s", id ? id : "");
            b->flags = sqlite3_column_int(st, 2);
            b->count = sqlite3_column_int64(st, 3);
            last_seq = seq;
            pcap = 0;
        }
        b = &x->v[x->n - 1];
        if (grow_array((void **)&b->pieces, &pcap, b->npieces + 1,
                       sizeof(*b->pieces)) < 0) {
            rc = -ENOMEM;
            break;
        }
        pc = &b->pieces[b->npieces];
        pc->topic = strdup(topic ? topic : "");
        if (pc->topic == NULL) {
            rc = -ENOMEM;
            break;
        }
        pc->partition = (int32_t)sqlite3_column_int64(st, 5);
        pc->first_offset = sqlite3_column_int64(st, 6);
        pc->last_offset = sqlite3_column_int64(st, 7);
        b->npieces++;
    }
    sqlite3_finalize(st);
    if (rc == -ENOMEM) {
        set_err(x->err, x->errlen, "out of memory");
        return rc;
    }
    if (rc != SQLITE_DONE) {
        set_err(x->err, x->errlen, "delivered batches: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

int journal_delivered_batches(struct journal *j, int route, const char *topic,
                              int32_t partition, int64_t from_offset,
                              int64_t to_offset, struct journal_dbatch **out,
                              size_t *n, char *err, size_t errlen)
{
    struct db_ctx x;
    int rc;

    memset(&x, 0, sizeof(x));
    x.route = route;
    x.topic = topic;
    x.partition = partition;
    x.from = from_offset;
    x.to = to_offset;
    x.err = err;
    x.errlen = errlen;
    rc = journal_with_read_db(j, db_read, &x);
    if (rc < 0) {
        journal_dbatches_free(x.v, x.n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = x.v;
    *n = x.n;
    return 0;
}

void journal_dbatches_free(struct journal_dbatch *b, size_t n)
{
    for (size_t i = 0; i < n && b != NULL; i++) {
        for (size_t k = 0; k < b[i].npieces; k++) {
            free(b[i].pieces[k].topic);
        }
        free(b[i].pieces);
    }
    free(b);
}
