/*
 * recover.h - the offline recovery tool's storage half (`kadx recover`):
 * report, check, export, requeue, purge and salvage a journal while the
 * gateway is stopped (DESIGN.md "Offline recovery tool"; notes in
 * storage/RECOVER.md).
 *
 * Everything here goes through journal.h where the journal offers a call;
 * what it does not offer (the integrity and invariant checks, reading a
 * corrupt file, reading a journal a running gateway holds) is done with
 * read-only SQL on the schema documented in storage/README.md. Writes
 * (requeue, purge, salvage's target) always go through journal.h.
 *
 * Threads: every call is synchronous and runs on the calling thread; the
 * journal passed in must have been opened by that thread without a loop
 * (options.loop = NULL). Every command is safe to run twice: a second run
 * finds nothing left to do (requeue, purge) or adds nothing new (salvage:
 * the target journal ignores events it already holds, INV-2).
 */
#ifndef KADX_RECOVER_H
#define KADX_RECOVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct journal;

/*
 * Progress of a long command: phase is a short constant word ("export",
 * "check", "salvage", ...); done counts units (events or chunks) so far;
 * total is the expected number, or -1 when unknown. Called at most about
 * every 0.5 s, plus once at the end (done == total when known).
 */
typedef void (*recover_progress_fn)(void *arg, const char *phase, int64_t done,
                                    int64_t total);

struct recover_progress {
    recover_progress_fn fn; /* NULL = no progress reports */
    void *arg;
};

/* ---------------------------------------------------------------- status */

/*
 * Writes the journal's state: per route and partition the high and batched
 * offsets, counts and bytes of pending, in-flight, delivered and dead
 * events, the age of the oldest pending event, unfinished batches, file
 * size. json = 0: an aligned text table; 1: one JSON object. display_path
 * names the journal in the output (NULL = journal_path(j); a snapshot
 * shows its original's name). Returns 0 or -errno (err filled).
 */
int recover_status(struct journal *j, const char *display_path, FILE *out,
                   int json, char *err, size_t errlen);

/* ----------------------------------------------------------------- check */

#define RECOVER_REPORT_MAX 200 /* problems kept in detail; more are counted */

struct recover_report {
    int64_t problems;   /* problems found (0 = healthy) */
    size_t nlines;      /* min(problems, RECOVER_REPORT_MAX) */
    char **lines;       /* owned; one problem per line, no newline */
    int integrity_ok;   /* PRAGMA integrity_check said "ok" */
    int64_t chunks;     /* chunk rows examined */
    int64_t events;     /* events decoded from them */
    int64_t batches;    /* batch rows examined */
    int64_t unreadable; /* chunk rows that could not be read at all */
};

void recover_report_release(struct recover_report *r);

/*
 * Checks the journal file at path: opens it read-only (refusing, -EBUSY,
 * one a running gateway holds), runs PRAGMA integrity_check, then kadx's
 * own invariants: every chunk decodes and its count, offsets and bytes
 * match its row; no (topic, partition, offset) is stored twice (INV-2);
 * batch membership is consistent (every member range of an unfinished or
 * delivered batch lies within journaled events; no event belongs to two
 * unfinished batches; a delivered batch has no undelivered members); dead
 * letters name stored events; cursors are sane (batched <= high offset,
 * high offset = highest stored offset). A file too damaged to open as a
 * journal is still examined with plain SQLite. Returns 0 when the check
 * ran (rep->problems says whether the journal is healthy), or -errno when
 * it could not run at all. rep is filled in both cases; release it.
 */
int recover_check(const char *path, const struct recover_progress *pg,
                  struct recover_report *rep, char *err, size_t errlen);

/* ---------------------------------------------------------------- export */

struct recover_export_req {
    int states;                     /* JOURNAL_SEL_* mask */
    int route;                      /* -1 = all */
    const char *topic;              /* NULL = all */
    int32_t partition;              /* -1 = all */
    int64_t from_offset, to_offset; /* inclusive, -1 = unbounded */
    int64_t from_ts_ms, to_ts_ms;   /* Kafka timestamps, inclusive, -1 =
                                       unbounded */
};

/* Fills req with "everything, unbounded". */
void recover_export_req_init(struct recover_export_req *req);

/*
 * Writes the selected events to out as JSON lines, in (topic, partition,
 * offset) order, one object per event:
 *   {"route":0,"topic":"t","partition":1,"offset":42,
 *    "timestamp_ms":1700000000000,"state":"pending",
 *    "key":"k" | "key_b64":"..." | null,
 *    "value":"..." | "value_b64":"...",
 *    "headers_b64":"..." (only when there are headers),
 *    "dead_reason":"..." (only for dead events)}
 * key and value are JSON strings when they are valid UTF-8, else base64
 * under the *_b64 name. *nexported (may be NULL) = events written.
 * Returns 0 or -errno (-EIO also when writing to out fails).
 */
int recover_export(struct journal *j, const struct recover_export_req *req,
                   FILE *out, const struct recover_progress *pg,
                   int64_t *nexported, char *err, size_t errlen);

/* --------------------------------------------------------- requeue/purge */

/*
 * Dead letters back to pending (in new requeue batches the next gateway or
 * `kadx recover replay` sends): id > 0 = that one, else all of route (-1 =
 * every route). *n (may be NULL) = events requeued; 0 on a second run.
 * -ENOENT for an unknown id.
 */
int recover_requeue(struct journal *j, int route, int64_t id, int64_t *n,
                    char *err, size_t errlen);

/*
 * Deletes delivered events appended before before_ms (wall clock ms), in
 * many short transactions, with progress; never an undelivered or dead
 * event (INV-8). *deleted (may be NULL) = events deleted.
 */
int recover_purge(struct journal *j, int64_t before_ms,
                  const struct recover_progress *pg, int64_t *deleted,
                  char *err, size_t errlen);

/* --------------------------------------------------------------- salvage */

#define RECOVER_SALVAGE_DELIVERED 0x1 /* also copy events known delivered */

struct recover_salvage_result {
    int64_t chunks_read;    /* chunk rows read whole */
    int64_t chunks_lost;    /* chunk rows unreadable or corrupt */
    int64_t chunks_partial; /* of those: a readable prefix was copied */
    int64_t events_read;    /* events decoded */
    int64_t events_copied;  /* newly stored in the target */
    int64_t events_present; /* already in the target (a second run) */
    int64_t events_skipped; /* known delivered, not copied (no flag) */
    int64_t events_unknown; /* state unreadable: copied as pending */
    int64_t events_dead;    /* were dead letters: copied as pending */
};

/*
 * Copies every readable event of the (possibly corrupt) journal file src
 * into the journal dst (created if needed; never src itself), as pending
 * events with their route, topic, partition, offset, timestamp, key, value
 * and headers. Events known delivered are skipped unless flags has
 * RECOVER_SALVAGE_DELIVERED (copying them would send them again); events
 * whose state cannot be read are copied (a possible duplicate beats a
 * loss). src is read with plain read-only SQLite, row by row, so damage
 * loses only the rows it hit. Refuses (-EBUSY) a src held by a running
 * gateway. Returns 0 or -errno; *res (may be NULL) is filled either way.
 */
int recover_salvage(const char *src, const char *dst, int flags,
                    const struct recover_progress *pg,
                    struct recover_salvage_result *res, char *err,
                    size_t errlen);

/* ------------------------------------------------------------- snapshot */

/*
 * Copies the journal file src into a new file dst as one consistent
 * snapshot (SQLite's online backup, read-only on src, no lock taken: a
 * running gateway keeps writing meanwhile). `kadx recover --read-only`
 * runs status, check and export on such a copy when a gateway holds the
 * journal. dst must not exist. Returns 0 or -errno.
 */
int recover_snapshot(const char *src, const char *dst, char *err,
                     size_t errlen);

/* ------------------------------------------------------------ utilities */

/*
 * Writes s (len bytes) as a JSON string literal (with quotes) to out,
 * escaping what JSON requires; invalid UTF-8 bytes become U+FFFD.
 */
void recover_json_string(FILE *out, const char *s, size_t len);

#endif
