/*
 * queued.h - ADX queued ingestion for the forwarder (gateway/QUEUED.md,
 * docs/adx-protocol.md section 5): a batch body (gzip, already built by the
 * forwarder) goes to ADX through Azure Storage instead of the streaming
 * endpoint.
 *
 * One queued_ingest() call is one attempt of one batch:
 *   1. the ingestion resources (`.get ingestion resources`) and the
 *      identity token (`.get kusto identity token`) from the data-management
 *      endpoint, cached for an hour and fetched again when Azure Storage
 *      answers 403 (an expired SAS);
 *   2. Put Blob of the body to a temp container (round robin); a body over
 *      QUEUED_BLOCK_BYTES goes as Put Block of each slice, then Put Block
 *      List;
 *   3. a Pending row in the status table (PartitionKey = RowKey = the
 *      message id), as the SDKs write it;
 *   4. the ingestion message (base64 JSON; tags ["ingest-by:<batch id>"],
 *      ingestIfNotExists ["<batch id>"], ReportLevel FailuresAndSuccesses,
 *      ReportMethod Table) posted to a ready-for-aggregation queue;
 *   5. the status row polled (100 ms, growing to 2 s) until ADX reports:
 *      Succeeded, or Skipped (the batch id's ingest-by tag is already on the
 *      table: an earlier attempt landed) = delivered; Failed = permanent,
 *      transient or config by its FailureStatus and ErrorCode.
 * The callback gets the outcome in the forwarder's terms (enum
 * adx_outcome), so the forwarder handles a failure report as it handles a
 * streaming error (retry, bisect, dead-letter, pause).
 *
 * Why a resend is safe: every attempt of a batch carries the same ingest-by
 * tag and ingestIfNotExists, so ADX applies a batch once however many
 * messages name it (a kill -9 while a report is awaited, a lost report, a
 * timeout after the message was posted).
 *
 * Threading: loop thread only. Borrows the forwarder's struct adx.
 */
#ifndef KADX_QUEUED_H
#define KADX_QUEUED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gateway/adx.h"

struct queued;
struct queued_op;

/* Status polling: first poll after QUEUED_POLL_FIRST_MS, then x1.5 up to
 * QUEUED_POLL_MAX_MS; no report after QUEUED_REPORT_TIMEOUT_MS is a
 * transient failure (the forwarder posts again, same tag). */
#define QUEUED_POLL_FIRST_MS     100
#define QUEUED_POLL_MAX_MS       2000
#define QUEUED_REPORT_TIMEOUT_MS (30 * 60 * 1000)
/* The resources and the identity token are fetched again after this. */
#define QUEUED_RESOURCES_TTL_MS (60 * 60 * 1000)
/* A body over this goes to storage as blocks of this size (Put Block, then
 * Put Block List) rather than one Put Blob: no request carries more. */
#define QUEUED_BLOCK_BYTES  (4 * 1024 * 1024)
#define QUEUED_BLOCK_ID_MAX 24

struct queued_ingest {
    const char *dm_url; /* data-management endpoint (ingest-...) */
    const char *token;  /* bearer token for the DM endpoint; NULL = none */
    const char *database;
    const char *table;
    const char *format;   /* json, multijson, csv, avro */
    const char *mapping;  /* ingestion mapping reference; NULL = none */
    const char *batch_id; /* the tag: stable across attempts and restarts */
    int attempt;
    const void *body; /* gzip; borrowed until the callback */
    size_t body_len;
    uint64_t raw_size; /* uncompressed bytes (RawDataSize) */
    long timeout_ms;   /* per storage / DM request; 0 = the client's */
};

struct queued_result {
    int cancelled;            /* queued_stop: nothing is known */
    enum adx_outcome outcome; /* ADX_OK = success or skipped report */
    int skipped;              /* ADX_OK from a Skipped report */
    const char *reason;       /* "" when none; no secret, no payload */
    int64_t retry_after_ms;   /* -1 */
};

typedef void (*queued_cb)(void *arg, const struct queued_result *r);

/* Creates the client (no request yet). 0 or -ENOMEM. */
int queued_new(uv_loop_t *loop, struct adx *http, struct queued **out);

/*
 * Starts one attempt. If it returns < 0 (message in err), cb never runs;
 * if 0, cb runs exactly once, later, on the loop thread, and *op (may be
 * NULL) names the attempt until then.
 */
int queued_ingest(struct queued *q, const struct queued_ingest *in,
                  queued_cb cb, void *arg, struct queued_op **op, char *err,
                  size_t errlen);

/* Wall ms when op's message was posted (it awaits its report), else 0. */
int64_t queued_op_posted_ms(const struct queued_op *op);

/*
 * Stops: no request is started any more; every attempt gets its callback
 * with cancelled = 1 (those awaiting a report at once, from the loop; those
 * with a request in flight when it ends). Loop thread.
 */
void queued_stop(struct queued *q);

/* Attempts not finished yet. */
size_t queued_pending(const struct queued *q);

/* Bodies over n bytes (1..QUEUED_BLOCK_BYTES; else the default) go as
 * blocks of n (tests; the env KADX_QUEUED_BLOCK_BYTES does the same for a
 * whole process). */
void queued_set_block_bytes(struct queued *q, size_t n);

/* Frees (NULL-safe): no callback runs after this; attempts with a request
 * in flight are freed when the struct adx cancels it (adx_free), so call
 * this before adx_free, and run the loop once more (a timer closes). */
void queued_free(struct queued *q);

/* ---- pure helpers (tests) */

/* Storage resources parsed from `.get ingestion resources` (v1 table
 * ResourceTypeName, StorageRoot). URLs owned by the struct. */
struct queued_resources {
    char **temp; /* TempStorage container URLs (with SAS) */
    size_t ntemp;
    char **queues; /* SecuredReadyForAggregationQueue URLs */
    size_t nqueues;
    char *status_table; /* IngestionsStatusTable URL, or NULL */
};

/* 0, or -EBADMSG (not a v1 answer) / -ENOENT (no temp storage or no
 * queue) with *out cleared. */
int queued_parse_resources(const char *body, size_t len,
                           struct queued_resources *out);
void queued_resources_release(struct queued_resources *r);

/*
 * The ingestion message's JSON (before base64) for one attempt; owned
 * string (free()) or NULL on ENOMEM. id is the message id (the status
 * row's keys), blob_url and table_url carry their SAS, auth_context may be
 * NULL.
 */
char *queued_message_json(const struct queued_ingest *in, const char *id,
                          const char *blob_url, const char *table_url,
                          const char *auth_context, int64_t now_ms);

/*
 * Reads a status row (JSON, odata=nometadata). Returns 1 when it is final
 * (r filled: outcome, skipped; reason into reason[reasonlen]), 0 when
 * still pending, -EBADMSG when it cannot be read.
 */
int queued_parse_status(const char *body, size_t len, struct queued_result *r,
                        char *reason, size_t reasonlen);

/* Block i's id (base64 of "kadx%08zu": 16 characters for every block, as
 * Azure requires the ids of one blob to have the same length). */
void queued_block_id(size_t i, char out[QUEUED_BLOCK_ID_MAX]);

/* The Put Block List body committing blocks 0..nblocks-1 (owned, or NULL
 * on ENOMEM). */
char *queued_block_list_xml(size_t nblocks);

#endif
