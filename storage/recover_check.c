/*
 * recover_check.c - `kadx recover check` (recover_check in recover.h): the
 * integrity and invariant checks of a journal file, read with plain SQLite
 * (recover_raw.c): SQLite's own integrity check, the schema, every chunk
 * decoded against its counters, the dead and batch-member rows, the
 * partitions' sums and the batches. Fills a report; never writes.
 * Calling thread only.
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
    /* 3 = 2 plus the schemas table (Schema Registry cache); 4 = the
     * chunks' events in chunk_data */
    if (version < 2 || version > 4) {
        problem(c, "schema version %d is not one this kadx knows (2 to 4)",
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

/* Each partition row against what its chunks hold (after ck_chunks). */
static void ck_partition_sums(struct ck *c, const struct rparts *parts)
{
    for (size_t i = 0; i < parts->n; i++) {
        const struct rpart *p = &parts->v[i];

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
    rc = raw_read_chunk_ids(c->db, &ids, &nids, why, sizeof(why));
    if (rc < 0) {
        problem(c, "out of memory listing chunks");
        return;
    }
    if (rc > 0) {
        problem(c, "%s", why);
    }
    if (raw_prepare_chunk_row(c->db, &row) < 0 ||
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
        rc = raw_read_chunk(row, ids[i].id, &r, why, sizeof(why));
        if (rc == -ENOENT) {
            continue;
        }
        if (rc < 0) {
            problem(c, "chunk %" PRId64 " is unreadable: %s", ids[i].id, why);
            c->rep->unreadable++;
            continue;
        }
        c->rep->chunks++;
        p = raw_rparts_find(parts, r.part_id);
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
    ck_partition_sums(c, parts);
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
        int v4; /* chunk_data: schema 4 on */
    } q[] = {
        {"SELECT COUNT(*) FROM pieces WHERE chunk_id NOT IN"
         " (SELECT id FROM chunks)",
         "batch member ranges name a chunk that is gone", 0},
        {"SELECT COUNT(*) FROM pieces WHERE batch_seq NOT IN"
         " (SELECT seq FROM batches)",
         "batch member ranges belong to no batch", 0},
        {"SELECT COUNT(*) FROM dead WHERE chunk_id NOT IN"
         " (SELECT id FROM chunks)",
         "dead letters name a chunk that is gone", 0},
        {"SELECT COUNT(*) FROM chunks WHERE part_id NOT IN"
         " (SELECT id FROM partitions)",
         "chunks belong to no partition", 0},
        {"SELECT COUNT(*) FROM chunk_data WHERE id NOT IN"
         " (SELECT id FROM chunks)",
         "chunk event blobs belong to no chunk", 1},
        {"SELECT COUNT(*) FROM chunks WHERE id NOT IN"
         " (SELECT id FROM chunk_data)",
         "chunks have no event blob", 1},
    };
    int v4 = strcmp(raw_data_table(c->db), "chunk_data") == 0;

    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        sqlite3_stmt *st = NULL;
        int rc;

        if (q[i].v4 && !v4) {
            continue;
        }
        rc = sqlite3_prepare_v2(c->db, q[i].sql, -1, &st, NULL);

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
    rc = raw_lock_read(path, &lock_fd, err, errlen);
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
    rc = raw_read_parts(c.db, &parts, why, sizeof(why));
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
    raw_rparts_release(&parts);
    sqlite3_close(c.db);
unlock:
    raw_lock_release(lock_fd);
    return rc;
}
