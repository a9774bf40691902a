/*
 * The emulator's data-management side: queued ingestion through Azure
 * Storage (Azurite). See EMULATOR.md, "Queued ingestion".
 *
 * At start it creates, in the storage account, a temp blob container, the
 * ready-for-aggregation queue, the success and failure queues and the
 * status table, and answers `.get ingestion resources` with their URLs and
 * a fresh account SAS. A worker thread drains the queue, downloads each
 * blob, hands it to the loop thread that applies it to the engine (format,
 * mapping, ingest-by tags, ingestIfNotExists), and writes the reports
 * (success/failure queue messages, status table rows).
 */
#ifndef KADX_EMULATOR_DM_H
#define KADX_EMULATOR_DM_H

#include "admin/http.h"
#include "emulators/kusto.h"
#include <stddef.h>
#include <uv.h>

struct dm_config {
    const char *blob_url;  /* account base, e.g. http://127.0.0.1:P/acct */
    const char *queue_url; /* likewise */
    const char *table_url; /* likewise */
    const char *account;   /* signs the SAS; default devstoreaccount1 */
    const char *key_b64;   /* account key; default Azurite's well-known */
    long sas_lifetime_s;   /* SAS validity (default 7200) */
    /* optional: the bases handed out in `.get ingestion resources` (e.g. a
     * test's fault proxy in front of Azurite); the worker maps them back to
     * the three above for its own calls. NULL = the same as above. */
    const char *public_blob_url;
    const char *public_queue_url;
    const char *public_table_url;
};

struct dm;

/* Creates the storage resources (blocking), registers the resources
 * callback with the engine and starts the worker. NULL with err filled. */
struct dm *dm_start(uv_loop_t *loop, struct kusto *k,
                    const struct dm_config *cfg, char *err, size_t errlen);

/* On the loop thread: stops the worker (a blob being applied is left in the
 * queue for its next run), joins it and closes the loop handle. */
void dm_stop(struct dm *d);

/* After the loop has run its close callbacks. NULL is fine. */
void dm_free(struct dm *d);

/* /_emulator/dm (GET: stats and faults) and /_emulator/dm/faults (POST).
 * Returns 1 when it answered the request, 0 when the path is not its. */
int dm_handle_control(struct dm *d, struct http_request *req,
                      const struct http_header *hdrs, size_t nhdrs);

/* Exposed for the unit test: the account SAS query string for the key
 * (base64) and expiry (seconds since the epoch). 0 or -EINVAL. */
int dm_account_sas(const char *account, const char *key_b64, long long expiry,
                   char *out, size_t outlen);

#endif
