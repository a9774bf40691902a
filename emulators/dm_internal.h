/*
 * dm_internal.h - what the parts of the emulator's data-management side
 * share: `struct dm` (which thread owns what is said per field), the job
 * handed from the worker to the loop thread, and the storage helpers of
 * dm_storage.c. Not for use outside dm*.c (the API is dm.h).
 */
#ifndef KADX_EMULATOR_DM_INTERNAL_H
#define KADX_EMULATOR_DM_INTERNAL_H

#include "base/sbuf.h"
#include "emulators/dm.h"
#include "emulators/emu.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define DM_MOD           "adx-emulator"
#define DM_CONTAINER     "kadx-ingest-temp"
#define DM_Q_READY       "readyforaggregation-secured"
#define DM_Q_SUCCESS     "successfulingestions"
#define DM_Q_FAILED      "failedingestions"
#define DM_TABLE         "ingestionsstatus"
#define DM_STORAGE_VER   "2021-12-02"
#define DM_SAS_VER       "2019-12-12"
#define DM_MAX_BLOB      (256u * 1024u * 1024u)
#define DM_MAX_UNZIPPED  (256u * 1024u * 1024u)
#define DM_POLL_MS       100
#define DM_ERROR_WAIT_MS 500
#define DM_VISIBILITY_S  60
#define DM_NAME_MAX      256
#define TICKS_PER_SEC    10000000LL
#define AZURITE_ACCOUNT  "devstoreaccount1"
#define AZURITE_KEY                                                            \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"          \
    "K1SZFPTOtr/KBHBeksoGMGw=="

enum job_outcome { JOB_OK = 0, JOB_FAILED, JOB_SKIPPED };

/* One blob to apply, from the worker to the loop thread and back. */
struct job {
    /* in */
    char db[DM_NAME_MAX];
    char table[DM_NAME_MAX];
    char format[32];
    char *mapping_ref;    /* a mapping's name, or NULL */
    char *mapping_inline; /* a mapping's JSON, or NULL */
    char *tags;           /* JSON array text, or NULL */
    char *if_not_exists;  /* JSON array text, or NULL */
    int ignore_first;
    const char *body;
    size_t blen;
    /* out */
    int done;
    int cancelled;
    enum job_outcome outcome;
    size_t rows;
    int permanent;
    char code[96];
    char details[512];
};

struct dm_faults {
    int fail_count;           /* fail the next N blobs */
    char fail_code[96];       /* their ErrorCode */
    int fail_permanent;       /* their FailureStatus */
    uint64_t status_delay_ms; /* reports written this long after applying */
};

struct dm_stats {
    uint64_t messages;       /* queue messages taken */
    uint64_t bad_messages;   /* not an ingestion message: deleted */
    uint64_t applied;        /* blobs applied */
    uint64_t rows;           /* their rows */
    uint64_t failed;         /* blobs reported failed */
    uint64_t skipped;        /* ingestIfNotExists hits */
    uint64_t fired_fail;     /* failures injected */
    uint64_t reports;        /* queue messages and table rows written */
    uint64_t storage_errors; /* storage calls that failed */
};

struct dm {
    uv_loop_t *loop;
    struct kusto *k;
    char blob_url[512];
    char queue_url[512];
    char table_url[512];
    char pub_blob_url[512]; /* handed out; "" = blob_url */
    char pub_queue_url[512];
    char pub_table_url[512];
    char account[128];
    char key_b64[256];
    long sas_lifetime_s;
    pthread_t thread;
    int thread_started;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;            /* under mu; also read unlocked by curl's progress */
    struct job *pending; /* under mu: waiting for the loop thread */
    struct dm_faults f;  /* under mu */
    struct dm_stats st;  /* under mu */
    /* loop thread only: ingest-by tags, "db\x1ftable\x1ftag" */
    char **tags;
    size_t ntags;
    size_t captags;
};

/* ---- dm_storage.c ---- */

/* Percent-encodes s into out (cut at outlen). */
void dm_url_encode(const char *s, char *out, size_t outlen);

/* Now as ISO 8601 UTC with 7 fraction digits. */
void dm_now_iso(char *out, size_t len);

/* Base64 (standard alphabet, padded) of n bytes: malloc'd or NULL. */
char *dm_b64_encode(const void *in, size_t n);

/* Decodes base64 text (whitespace ignored): malloc'd bytes, NUL-terminated,
 * length in *outlen; NULL when it is not base64. */
unsigned char *dm_b64_decode(const char *in, size_t n, size_t *outlen);

/* A resource's URL with a fresh SAS: malloc'd or NULL. */
char *dm_resource_url(struct dm *d, const char *base, const char *name);

/* A URL from a message (BlobPath, TableConnectionString) with a public
 * base (--storage-public-*) swapped for the one the worker calls: malloc'd
 * (a copy when no public base matches), NULL for NULL or out of memory. */
char *dm_internal_url(const struct dm *d, const char *url);

/* kusto_resources_fn: the rows of `.get ingestion resources`. */
size_t dm_resources_cb(void *data, const char **types, char **roots,
                       size_t max);

/* One storage call: 0 with *status (the HTTP status) and out (the body), or
 * -EIO (no answer: refused, reset, timed out, stopped). */
int dm_storage_call(struct dm *d, CURL *h, const char *method, const char *url,
                    const char *content_type, const char *body, size_t blen,
                    struct sbuf *out, long *status);

/* Creates the container, the queues and the table (existing ones are
 * fine); 0, or < 0 with err filled. Blocking. */
int dm_create_resources(struct dm *d, char *err, size_t errlen);

#endif
