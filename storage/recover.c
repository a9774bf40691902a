/*
 * recover.c - the storage half of `kadx recover`: status, export, requeue
 * and purge of a journal the gateway is not running on, and the JSON
 * writers they share. Check is recover_check.c, salvage and snapshot
 * recover_salvage.c, their raw file access recover_raw.c.
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
#include "base/base64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/utf8.h"
#include "storage/chunk.h"
#include "storage/journal.h"
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

/* ------------------------------------------------------------- helpers */

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

            if (n > 1 && i + n <= len && utf8_valid(p + i, n)) {
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
    const unsigned char *p = data;
    char q[5];

    fputc('"', out);
    for (size_t i = 0; i < len; i += 3) {
        fwrite(q, 1, base64_encode(q, p + i, len - i < 3 ? len - i : 3), out);
    }
    fputc('"', out);
}

/* ,"name":"text" or ,"name_b64":"..." */
static void json_bytes_field(FILE *out, const char *name, const void *data,
                             size_t len)
{
    if (utf8_valid(data, len)) {
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
