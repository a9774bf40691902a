/*
 * The emulator's data-management side (queued ingestion) over Azure Storage
 * as Azurite serves it. See dm.h and EMULATOR.md, "Queued ingestion".
 *
 * Why a thread in the emulator and not a component beside it: `kadx
 * adx-emulator` and `kadx demo` stay one binary, the worker applies blobs
 * through the same engine and ingest code as streaming ingest, and it is
 * libcurl against the storage REST API with a SAS, which the binary links
 * already. Azurite itself is a separate (npm) process the caller starts.
 *
 * Threads: the worker does the storage I/O (blocking libcurl); everything
 * that touches the engine runs on the loop thread, handed over one job at a
 * time with uv_async_send and a condition variable. The storage REST calls,
 * the SAS and the resources created at start are dm_storage.c.
 */
#include "emulators/dm_internal.h"

#include "emulators/ingest.h"
#include "gateway/log.h"
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- the loop thread: applying a blob ---- */

static void job_fail(struct job *j, int permanent, const char *code,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void job_fail(struct job *j, int permanent, const char *code,
                     const char *fmt, ...)
{
    va_list ap;

    j->outcome = JOB_FAILED;
    j->permanent = permanent;
    snprintf(j->code, sizeof(j->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(j->details, sizeof(j->details), fmt, ap);
    va_end(ap);
}

static void job_kerr(struct job *j, const struct kusto_error *err)
{
    job_fail(j, err->permanent || err->status < 500,
             err->code[0] ? err->code : "General_BadRequest", "%s",
             err->message);
}

static int tag_find(struct dm *d, const char *key)
{
    for (size_t i = 0; i < d->ntags; i++) {
        if (strcmp(d->tags[i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

static void tag_key(const struct job *j, const char *tag, char *out, size_t len)
{
    snprintf(out, len, "%s\x1f%s\x1f%s", j->db, j->table, tag);
}

/* Any of ingestIfNotExists's values already tagged ingest-by on the table? */
static int already_ingested(struct dm *d, const struct job *j)
{
    cJSON *a;
    const cJSON *it;
    int hit = 0;

    if (j->if_not_exists == NULL ||
        (a = cJSON_Parse(j->if_not_exists)) == NULL) {
        return 0;
    }
    cJSON_ArrayForEach(it, a)
    {
        char key[3 * DM_NAME_MAX + 512];
        if (cJSON_IsString(it)) {
            tag_key(j, it->valuestring, key, sizeof(key));
            if (tag_find(d, key)) {
                hit = 1;
                break;
            }
        }
    }
    cJSON_Delete(a);
    return hit;
}

static void remember_tags(struct dm *d, const struct job *j)
{
    cJSON *a;
    const cJSON *it;

    if (j->tags == NULL || (a = cJSON_Parse(j->tags)) == NULL) {
        return;
    }
    cJSON_ArrayForEach(it, a)
    {
        char key[3 * DM_NAME_MAX + 512];
        if (!cJSON_IsString(it) ||
            strncmp(it->valuestring, "ingest-by:", 10) != 0) {
            continue;
        }
        tag_key(j, it->valuestring + 10, key, sizeof(key));
        if (tag_find(d, key)) {
            continue;
        }
        if (d->ntags == d->captags) {
            size_t nc = d->captags ? d->captags * 2 : 64;
            char **nt = realloc(d->tags, nc * sizeof(*nt));
            if (nt == NULL) {
                break;
            }
            d->tags = nt;
            d->captags = nc;
        }
        d->tags[d->ntags] = strdup(key);
        if (d->tags[d->ntags] != NULL) {
            d->ntags++;
        }
    }
    cJSON_Delete(a);
}

static void apply_job(struct dm *d, struct job *j)
{
    struct kusto *k = d->k;
    struct kusto_error err;
    enum ingest_format fmt;
    const struct kusto_column *cols;
    size_t ncols;
    struct ingest_mapping *m = NULL;
    struct ingest_rows rows = {0};
    char *plain = NULL;
    size_t plen = 0;
    const char *body = j->body;
    size_t blen = j->blen;
    int rc;

    memset(&err, 0, sizeof(err));
    j->outcome = JOB_OK;
    if (!kusto_database_exists(k, j->db)) {
        job_fail(j, 1, "BadRequest_EntityNotFound",
                 "database '%s' does not exist", j->db);
        return;
    }
    if (kusto_table_schema(k, j->db, j->table, &cols, &ncols, &err) < 0) {
        job_kerr(j, &err);
        return;
    }
    if (already_ingested(d, j)) {
        j->outcome = JOB_SKIPPED;
        j->permanent = 1;
        snprintf(j->code, sizeof(j->code), "Skipped_IngestByTagAlreadyExists");
        snprintf(j->details, sizeof(j->details),
                 "an ingest-by tag of ingestIfNotExists %s is already on "
                 "table '%s'",
                 j->if_not_exists, j->table);
        return;
    }
    if (ingest_format_parse(j->format, &fmt) < 0) {
        job_fail(j, 1, "BadRequest_FormatNotSupported",
                 "format '%s' is not supported by the emulator (json, "
                 "multijson, csv)",
                 j->format);
        return;
    }
    if (blen >= 2 && (unsigned char)body[0] == 0x1f &&
        (unsigned char)body[1] == 0x8b) {
        if (ingest_gunzip(body, blen, DM_MAX_UNZIPPED, &plain, &plen, &err) <
            0) {
            job_kerr(j, &err);
            return;
        }
        body = plain;
        blen = plen;
    }
    if (j->ignore_first && fmt == INGEST_CSV) {
        const char *nl = memchr(body, '\n', blen);
        size_t skip = nl != NULL ? (size_t)(nl - body) + 1 : blen;
        body += skip;
        blen -= skip;
    }
    if (j->mapping_ref != NULL || j->mapping_inline != NULL) {
        const char *mj = j->mapping_inline;
        if (mj == NULL && kusto_mapping_get(k, j->db, j->table, j->mapping_ref,
                                            &mj, &err) < 0) {
            job_kerr(j, &err);
            goto out;
        }
        if (ingest_mapping_parse(mj, &m, &err) < 0) {
            job_kerr(j, &err);
            goto out;
        }
        rc = kusto_table_schema(k, j->db, j->table, &cols, &ncols, &err);
        if (rc == 0) {
            rc = ingest_mapping_bind(m, cols, ncols, &err);
        }
        if (rc == -ENOENT) {
            rc = ingest_mapping_add_columns(k, j->db, j->table, m, &err);
            if (rc == 0) {
                rc =
                    kusto_table_schema(k, j->db, j->table, &cols, &ncols, &err);
            }
            if (rc == 0) {
                rc = ingest_mapping_bind(m, cols, ncols, &err);
            }
        }
        if (rc < 0) {
            job_kerr(j, &err);
            goto out;
        }
    }
    /* the schema pointer lives until the next engine call: fetch it last */
    if (kusto_table_schema(k, j->db, j->table, &cols, &ncols, &err) < 0 ||
        ingest_parse(body, blen, fmt, cols, ncols, m, 0, &rows, &err) < 0) {
        job_kerr(j, &err);
        goto out;
    }
    if (rows.nrows > 0 &&
        kusto_insert_rows(k, j->db, j->table, rows.values, rows.nrows,
                          emu_now_ticks(), &err) < 0) {
        job_kerr(j, &err);
        goto out;
    }
    j->rows = rows.nrows;
    remember_tags(d, j);
out:
    ingest_rows_release(&rows);
    ingest_mapping_free(m);
    free(plain);
}

static void on_async(uv_async_t *a)
{
    struct dm *d = a->data;
    struct job *j;

    pthread_mutex_lock(&d->mu);
    j = d->pending;
    d->pending = NULL;
    pthread_mutex_unlock(&d->mu);
    if (j == NULL) {
        return;
    }
    apply_job(d, j);
    pthread_mutex_lock(&d->mu);
    j->done = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* ---- the worker ---- */

/* Waits ms or until stop; returns 1 when stopping. */
static int wait_or_stop(struct dm *d, uint64_t ms)
{
    struct timespec ts;
    int stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        if (pthread_cond_timedwait(&d->cv, &d->mu, &ts) != 0) {
            break;
        }
    }
    stop = d->stop;
    pthread_mutex_unlock(&d->mu);
    return stop;
}

static void count(struct dm *d, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&d->mu);
    *field += n;
    pthread_mutex_unlock(&d->mu);
}

/* The text between <tag> and </tag> from p (bounded by end): malloc'd with
 * XML entities decoded, or NULL. */
static char *xml_text(const char *p, const char *end, const char *tag)
{
    char open[64];
    char close[64];
    const char *a;
    const char *b;
    char *out;
    size_t o = 0;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    a = memmem(p, (size_t)(end - p), open, strlen(open));
    if (a == NULL) {
        return NULL;
    }
    a += strlen(open);
    b = memmem(a, (size_t)(end - a), close, strlen(close));
    if (b == NULL || (out = malloc((size_t)(b - a) + 1)) == NULL) {
        return NULL;
    }
    while (a < b) {
        static const struct {
            const char *ent;
            char c;
        } ents[] = {{"&amp;", '&'},
                    {"&lt;", '<'},
                    {"&gt;", '>'},
                    {"&quot;", '"'},
                    {"&apos;", '\''}};
        int matched = 0;
        if (*a == '&') {
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t l = strlen(ents[i].ent);
                if ((size_t)(b - a) >= l && memcmp(a, ents[i].ent, l) == 0) {
                    out[o++] = ents[i].c;
                    a += l;
                    matched = 1;
                    break;
                }
            }
        }
        if (!matched) {
            out[o++] = *a++;
        }
    }
    out[o] = '\0';
    return out;
}

static char *json_str_dup(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
        return strdup(v->valuestring);
    }
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        return cJSON_PrintUnformatted(v);
    }
    return NULL;
}

/* ReportLevel 0 FailuresOnly, 1 None, 2 FailuresAndSuccesses; ReportMethod
 * 0 Queue, 1 Table, 2 QueueAndTable (numbers, or the names as the Java SDK
 * sends them). */
static int enum_member(const cJSON *o, const char *name,
                       const char *const *names, int n, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (cJSON_IsNumber(v)) {
        return (int)v->valuedouble;
    }
    if (cJSON_IsString(v)) {
        for (int i = 0; i < n; i++) {
            if (strcasecmp(v->valuestring, names[i]) == 0) {
                return i;
            }
        }
    }
    return dflt;
}

struct report {
    char id[128];
    char operation[37];
    char activity[37];
    const char *blob_path; /* without its SAS */
    int level;
    int method;
    char *status_table; /* TableConnectionString, or NULL */
    char *pk;
    char *rk;
};

/* Posts a base64 JSON message to a queue. 0 or -EIO. */
static int post_queue(struct dm *d, CURL *h, const char *queue,
                      const char *json)
{
    struct sbuf body = {0};
    struct sbuf out = {0};
    char *b64 = dm_b64_encode(json, strlen(json));
    char *url = dm_resource_url(d, d->queue_url, "");
    char *full = NULL;
    long status = 0;
    int rc = -EIO;

    if (b64 == NULL || url == NULL) {
        goto out;
    }
    /* dm_resource_url gave BASE/?SAS: make it BASE/QUEUE/messages?SAS */
    {
        char *q = strchr(url, '?');
        *q = '\0';
        if (asprintf(&full, "%s%s/messages?%s", url, queue, q + 1) < 0) {
            full = NULL;
            goto out;
        }
    }
    sbuf_printf(&body,
                "<QueueMessage><MessageText>%s</MessageText>"
                "</QueueMessage>",
                b64);
    if (!body.err &&
        dm_storage_call(d, h, "POST", full, "application/xml", body.p, body.len,
                        &out, &status) == 0 &&
        status == 201) {
        rc = 0;
    }
out:
    free(b64);
    free(url);
    free(full);
    sbuf_release(&body);
    sbuf_release(&out);
    return rc;
}

/* Writes the status table row (insert or replace). 0 or -EIO. */
static int put_status_row(struct dm *d, CURL *h, const struct report *r,
                          const struct job *j, const char *db,
                          const char *table, const char *status_name,
                          const char *when)
{
    cJSON *o = cJSON_CreateObject();
    char *json = NULL;
    char *url = NULL;
    const char *q = strchr(r->status_table, '?');
    char pk[512];
    char rk[512];
    struct sbuf out = {0};
    long status = 0;
    int rc = -EIO;

    dm_url_encode(r->pk, pk, sizeof(pk));
    dm_url_encode(r->rk, rk, sizeof(rk));
    if (o == NULL || q == NULL) {
        goto out;
    }
    cJSON_AddStringToObject(o, "Status", status_name);
    cJSON_AddStringToObject(o, "IngestionSourceId", r->id);
    cJSON_AddStringToObject(o, "IngestionSourcePath", r->blob_path);
    cJSON_AddStringToObject(o, "Database", db);
    cJSON_AddStringToObject(o, "Table", table);
    cJSON_AddStringToObject(o, "UpdatedOn", when);
    cJSON_AddStringToObject(o, "OperationId", r->operation);
    cJSON_AddStringToObject(o, "ActivityId", r->activity);
    cJSON_AddStringToObject(o, "ErrorCode",
                            j->outcome == JOB_OK ? "None" : j->code);
    cJSON_AddStringToObject(o, "FailureStatus",
                            j->outcome == JOB_OK ? "NotSpecified"
                            : j->permanent       ? "Permanent"
                                                 : "Transient");
    cJSON_AddStringToObject(o, "Details",
                            j->outcome == JOB_OK ? "" : j->details);
    cJSON_AddBoolToObject(o, "OriginatesFromUpdatePolicy", 0);
    json = cJSON_PrintUnformatted(o);
    if (json == NULL ||
        asprintf(&url, "%.*s(PartitionKey='%s',RowKey='%s')%s",
                 (int)(q - r->status_table), r->status_table, pk, rk, q) < 0) {
        url = NULL;
        goto out;
    }
    if (dm_storage_call(d, h, "PUT", url, "application/json", json,
                        strlen(json), &out, &status) == 0 &&
        status >= 200 && status < 300) {
        rc = 0;
    }
out:
    cJSON_Delete(o);
    free(json);
    free(url);
    sbuf_release(&out);
    return rc;
}

/* The reports for an applied (or failed) blob. 0, or -EIO when a report
 * could not be written (the message stays in the queue, to be taken again:
 * tags make a resend a no-op). */
static int write_reports(struct dm *d, CURL *h, const struct report *r,
                         const struct job *j)
{
    char when[40];
    int ok = j->outcome == JOB_OK;
    int rc = 0;

    dm_now_iso(when, sizeof(when));
    if (r->method != 1 && ((ok && r->level == 2) || (!ok && r->level != 1))) {
        cJSON *o = cJSON_CreateObject();
        char *json;
        cJSON_AddStringToObject(o, "OperationId", r->operation);
        cJSON_AddStringToObject(o, "Database", j->db);
        cJSON_AddStringToObject(o, "Table", j->table);
        cJSON_AddStringToObject(o, "IngestionSourceId", r->id);
        cJSON_AddStringToObject(o, "IngestionSourcePath", r->blob_path);
        cJSON_AddStringToObject(o, "RootActivityId", r->activity);
        if (ok) {
            cJSON_AddStringToObject(o, "SucceededOn", when);
        } else {
            cJSON_AddStringToObject(o, "FailedOn", when);
            cJSON_AddStringToObject(o, "Details", j->details);
            cJSON_AddStringToObject(o, "ErrorCode", j->code);
            cJSON_AddStringToObject(o, "FailureStatus",
                                    j->permanent ? "Permanent" : "Transient");
            cJSON_AddBoolToObject(o, "OriginatesFromUpdatePolicy", 0);
            cJSON_AddBoolToObject(o, "ShouldRetry", !j->permanent);
        }
        json = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (json == NULL ||
            post_queue(d, h, ok ? DM_Q_SUCCESS : DM_Q_FAILED, json) < 0) {
            rc = -EIO;
        } else {
            count(d, &d->st.reports, 1);
        }
        free(json);
    }
    if (rc == 0 && r->method != 0 && r->status_table != NULL && r->pk != NULL &&
        r->rk != NULL) {
        const char *sn = j->outcome == JOB_OK        ? "Succeeded"
                         : j->outcome == JOB_SKIPPED ? "Skipped"
                                                     : "Failed";
        if (put_status_row(d, h, r, j, j->db, j->table, sn, when) < 0) {
            rc = -EIO;
        } else {
            count(d, &d->st.reports, 1);
        }
    }
    return rc;
}

/* Hands the job to the loop thread and waits. 0, or -ECANCELED when the
 * emulator stops first. */
static int run_on_loop(struct dm *d, struct job *j)
{
    int rc;

    pthread_mutex_lock(&d->mu);
    if (d->stop) {
        pthread_mutex_unlock(&d->mu);
        return -ECANCELED;
    }
    d->pending = j;
    uv_async_send(&d->async);
    while (!j->done && !j->cancelled) {
        pthread_cond_wait(&d->cv, &d->mu);
    }
    rc = j->cancelled ? -ECANCELED : 0;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* One queue message: 1 to delete it, 0 to leave it (to come back after
 * its visibility timeout), -ECANCELED when stopping. */
/* The report options of an ingestion message: level, method, status
 * table (its strings malloc'd into r). */
static void read_report_options(const struct dm *d, const cJSON *msg,
                                struct report *r)
{
    static const char *const levels[] = {"FailuresOnly", "None",
                                         "FailuresAndSuccesses"};
    static const char *const methods[] = {"Queue", "Table", "QueueAndTable"};
    const cJSON *st =
        cJSON_GetObjectItemCaseSensitive(msg, "IngestionStatusInTable");

    r->level = enum_member(msg, "ReportLevel", levels, 3, 0);
    r->method = enum_member(msg, "ReportMethod", methods, 3, 0);
    if (cJSON_IsObject(st)) {
        char *t = json_str_dup(st, "TableConnectionString");

        r->status_table = dm_internal_url(d, t);
        free(t);
        r->pk = json_str_dup(st, "PartitionKey");
        r->rk = json_str_dup(st, "RowKey");
    }
}

/* The job's AdditionalProperties: format (default csv), mapping, tags,
 * ingestIfNotExists, ignoreFirstRecord (its strings malloc'd into j). */
static void read_job_properties(const cJSON *msg, struct job *j)
{
    const cJSON *ap =
        cJSON_GetObjectItemCaseSensitive(msg, "AdditionalProperties");

    snprintf(j->format, sizeof(j->format), "csv");
    if (cJSON_IsObject(ap)) {
        char *fmt = json_str_dup(ap, "format");
        const cJSON *ifr =
            cJSON_GetObjectItemCaseSensitive(ap, "ignoreFirstRecord");
        if (fmt != NULL) {
            snprintf(j->format, sizeof(j->format), "%s", fmt);
            free(fmt);
        }
        j->mapping_ref = json_str_dup(ap, "ingestionMappingReference");
        if (j->mapping_ref == NULL) {
            j->mapping_ref = json_str_dup(ap, "jsonMappingReference");
        }
        if (j->mapping_ref == NULL) {
            j->mapping_ref = json_str_dup(ap, "csvMappingReference");
        }
        j->mapping_inline = json_str_dup(ap, "ingestionMapping");
        j->tags = json_str_dup(ap, "tags");
        j->if_not_exists = json_str_dup(ap, "ingestIfNotExists");
        j->ignore_first =
            cJSON_IsTrue(ifr) ||
            (cJSON_IsString(ifr) && strcasecmp(ifr->valuestring, "true") == 0);
    }
}

/*
 * Downloads the blob into *blob and has the loop thread apply it (or fails
 * the job for a blob that is missing, forbidden or too big). 1 when the job
 * has its outcome, 0 when storage did not answer (the message stays for
 * later), < 0 when the apply was cancelled (stopping).
 */
static int fetch_and_apply(struct dm *d, CURL *h, const char *blob_url,
                           const char *blob_path, struct job *j,
                           struct sbuf *blob)
{
    long status = 0;
    int got =
        dm_storage_call(d, h, "GET", blob_url, NULL, NULL, 0, blob, &status);
    int rc;

    if (got < 0 && blob->err == -EMSGSIZE) {
        /* code chosen here: a blob the emulator will not hold */
        job_fail(j, 1, "BadRequest_BlobTooLarge",
                 "blob %s is over the emulator's %u MiB", blob_path,
                 DM_MAX_BLOB >> 20);
        return 1;
    }
    if (got < 0 || (status != 200 && status != 404 && status != 403)) {
        /* storage not answering: leave the message for later */
        count(d, &d->st.storage_errors, 1);
        return 0;
    }
    if (status == 404 || status == 403) {
        job_fail(j, 1,
                 status == 404 ? "Download_SourceNotFound"
                               : "Download_AccessConditionNotSatisfied",
                 "cannot download blob %s: HTTP %ld", blob_path, status);
        return 1;
    }
    j->body = blob->p != NULL ? blob->p : "";
    j->blen = blob->len;
    rc = run_on_loop(d, j);
    return rc < 0 ? rc : 1;
}

/* The message's blob (its internal URL, past a public base), database,
 * table and id (a new one when it has none). */
static char *read_target(struct dm *d, const cJSON *msg, struct job *j,
                         struct report *r)
{
    char *bp = json_str_dup(msg, "BlobPath");
    char *db = json_str_dup(msg, "DatabaseName");
    char *table = json_str_dup(msg, "TableName");
    char *id = json_str_dup(msg, "Id");
    char *blob_url = dm_internal_url(d, bp);

    snprintf(j->db, sizeof(j->db), "%s", db != NULL ? db : "");
    snprintf(j->table, sizeof(j->table), "%s", table != NULL ? table : "");
    if (id != NULL) {
        snprintf(r->id, sizeof(r->id), "%s", id);
    } else {
        emu_new_uuid(r->id);
    }
    free(bp);
    free(db);
    free(table);
    free(id);
    return blob_url;
}

static int process_message(struct dm *d, CURL *h, const char *text)
{
    unsigned char *raw;
    size_t rawlen = 0;
    cJSON *msg = NULL;
    struct job j;
    struct report r;
    struct sbuf blob = {0};
    char *blob_url = NULL;
    char *path_nosas = NULL;
    int result = 1;

    memset(&j, 0, sizeof(j));
    memset(&r, 0, sizeof(r));
    raw = dm_b64_decode(text, strlen(text), &rawlen);
    msg = cJSON_Parse(raw != NULL ? (const char *)raw : text);
    free(raw);
    if (msg == NULL || !cJSON_IsObject(msg)) {
        log_warn(DM_MOD, "queued ingestion: a queue message that is not an "
                         "ingestion message (dropped)");
        count(d, &d->st.bad_messages, 1);
        cJSON_Delete(msg);
        return 1;
    }
    blob_url = read_target(d, msg, &j, &r);
    if (blob_url == NULL || j.db[0] == '\0' || j.table[0] == '\0') {
        log_warn(DM_MOD,
                 "queued ingestion: message %s lacks BlobPath, "
                 "DatabaseName or TableName (dropped)",
                 r.id);
        count(d, &d->st.bad_messages, 1);
        goto out;
    }
    path_nosas = strdup(blob_url);
    if (path_nosas != NULL && strchr(path_nosas, '?') != NULL) {
        *strchr(path_nosas, '?') = '\0';
    }
    r.blob_path = path_nosas != NULL ? path_nosas : "";
    emu_new_uuid(r.operation);
    emu_new_uuid(r.activity);
    read_report_options(d, msg, &r);
    read_job_properties(msg, &j);
    /* fault: a failed blob */
    pthread_mutex_lock(&d->mu);
    if (d->f.fail_count > 0) {
        d->f.fail_count--;
        d->st.fired_fail++;
        job_fail(&j, d->f.fail_permanent, d->f.fail_code,
                 "injected failure (POST /_emulator/dm/faults)");
    }
    pthread_mutex_unlock(&d->mu);
    if (j.outcome != JOB_FAILED) {
        int rc = fetch_and_apply(d, h, blob_url, r.blob_path, &j, &blob);

        if (rc <= 0) {
            result = rc;
            goto out;
        }
    }
    count(d,
          j.outcome == JOB_OK        ? &d->st.applied
          : j.outcome == JOB_SKIPPED ? &d->st.skipped
                                     : &d->st.failed,
          1);
    if (j.outcome == JOB_OK) {
        count(d, &d->st.rows, j.rows);
    }
    log_debug(DM_MOD, "queued ingestion: %s.%s blob %s: %s (%zu rows)", j.db,
              j.table, r.id,
              j.outcome == JOB_OK        ? "applied"
              : j.outcome == JOB_SKIPPED ? "skipped (ingest-by tag)"
                                         : j.code,
              j.rows);
    {
        uint64_t delay;
        pthread_mutex_lock(&d->mu);
        delay = d->f.status_delay_ms;
        pthread_mutex_unlock(&d->mu);
        if (delay > 0 && wait_or_stop(d, delay)) {
            result = -ECANCELED;
            goto out;
        }
    }
    if (write_reports(d, h, &r, &j) < 0) {
        count(d, &d->st.storage_errors, 1);
        result = 0;
    }
out:
    cJSON_Delete(msg);
    free(blob_url);
    free(path_nosas);
    free(r.status_table);
    free(r.pk);
    free(r.rk);
    free(j.mapping_ref);
    free(j.mapping_inline);
    free(j.tags);
    free(j.if_not_exists);
    sbuf_release(&blob);
    return result;
}

/* Takes up to 32 messages; processes and deletes them. Returns how many it
 * took, or -EIO. */
static int drain_once(struct dm *d, CURL *h)
{
    struct sbuf out = {0};
    char *base = dm_resource_url(d, d->queue_url, DM_Q_READY);
    char *url = NULL;
    char *q;
    long status = 0;
    int taken = 0;
    const char *p;
    const char *end;

    if (base == NULL) {
        return -EIO;
    }
    q = strchr(base, '?');
    *q = '\0';
    if (asprintf(&url, "%s/messages?numofmessages=32&visibilitytimeout=%d&%s",
                 base, DM_VISIBILITY_S, q + 1) < 0) {
        free(base);
        return -EIO;
    }
    if (dm_storage_call(d, h, "GET", url, NULL, NULL, 0, &out, &status) < 0 ||
        status != 200) {
        free(base);
        free(url);
        sbuf_release(&out);
        count(d, &d->st.storage_errors, 1);
        return -EIO;
    }
    p = out.p != NULL ? out.p : "";
    end = p + out.len;
    while ((p = memmem(p, (size_t)(end - p), "<QueueMessage>", 14)) != NULL) {
        const char *mend = memmem(p, (size_t)(end - p), "</QueueMessage>", 15);
        char *id;
        char *pop;
        char *text;
        int rc;
        if (mend == NULL) {
            break;
        }
        id = xml_text(p, mend, "MessageId");
        pop = xml_text(p, mend, "PopReceipt");
        text = xml_text(p, mend, "MessageText");
        p = mend + 15;
        taken++;
        count(d, &d->st.messages, 1);
        rc = id != NULL && pop != NULL && text != NULL
                 ? process_message(d, h, text)
                 : 0;
        if (rc == 1) {
            char pe[512];
            char *del = NULL;
            struct sbuf dout = {0};
            long ds = 0;
            dm_url_encode(pop, pe, sizeof(pe));
            if (asprintf(&del, "%s/messages/%s?popreceipt=%s&%s", base, id, pe,
                         q + 1) >= 0) {
                if (dm_storage_call(d, h, "DELETE", del, NULL, NULL, 0, &dout,
                                    &ds) < 0 ||
                    ds != 204) {
                    count(d, &d->st.storage_errors, 1);
                }
                free(del);
            }
            sbuf_release(&dout);
        }
        free(id);
        free(pop);
        free(text);
        if (rc == -ECANCELED) {
            break;
        }
    }
    free(base);
    free(url);
    sbuf_release(&out);
    return taken;
}

static void *worker(void *arg)
{
    struct dm *d = arg;
    CURL *h = curl_easy_init();

    if (h == NULL) {
        log_error(DM_MOD, "queued ingestion: curl_easy_init failed");
        return NULL;
    }
    int failing = 0; /* log a storage outage once, and its end */

    for (;;) {
        int n;
        pthread_mutex_lock(&d->mu);
        if (d->stop) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        pthread_mutex_unlock(&d->mu);
        n = drain_once(d, h);
        if (n < 0 && !failing) {
            log_warn(DM_MOD,
                     "queued ingestion: the queue at %s does not "
                     "answer; retrying every %d ms",
                     d->queue_url, DM_ERROR_WAIT_MS);
        } else if (n >= 0 && failing) {
            log_info(DM_MOD, "queued ingestion: the queue answers again");
        }
        failing = n < 0;
        if (n < 0) {
            if (wait_or_stop(d, DM_ERROR_WAIT_MS)) {
                break;
            }
        } else if (n == 0 && wait_or_stop(d, DM_POLL_MS)) {
            break;
        }
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* ---- lifecycle ---- */

static void trim_slash(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/') {
        s[--n] = '\0';
    }
}

struct dm *dm_start(uv_loop_t *loop, struct kusto *k,
                    const struct dm_config *cfg, char *err, size_t errlen)
{
    struct dm *d;

    if (cfg->blob_url == NULL || cfg->queue_url == NULL ||
        cfg->table_url == NULL) {
        snprintf(err, errlen,
                 "--storage-blob, --storage-queue and --storage-table go "
                 "together (one is missing)");
        return NULL;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->k = k;
    snprintf(d->blob_url, sizeof(d->blob_url), "%s", cfg->blob_url);
    snprintf(d->queue_url, sizeof(d->queue_url), "%s", cfg->queue_url);
    snprintf(d->table_url, sizeof(d->table_url), "%s", cfg->table_url);
    trim_slash(d->blob_url);
    trim_slash(d->queue_url);
    trim_slash(d->table_url);
    snprintf(d->pub_blob_url, sizeof(d->pub_blob_url), "%s",
             cfg->public_blob_url != NULL ? cfg->public_blob_url : "");
    snprintf(d->pub_queue_url, sizeof(d->pub_queue_url), "%s",
             cfg->public_queue_url != NULL ? cfg->public_queue_url : "");
    snprintf(d->pub_table_url, sizeof(d->pub_table_url), "%s",
             cfg->public_table_url != NULL ? cfg->public_table_url : "");
    trim_slash(d->pub_blob_url);
    trim_slash(d->pub_queue_url);
    trim_slash(d->pub_table_url);
    snprintf(d->account, sizeof(d->account), "%s",
             cfg->account != NULL ? cfg->account : AZURITE_ACCOUNT);
    snprintf(d->key_b64, sizeof(d->key_b64), "%s",
             cfg->key_b64 != NULL ? cfg->key_b64 : AZURITE_KEY);
    d->sas_lifetime_s = cfg->sas_lifetime_s > 0 ? cfg->sas_lifetime_s : 7200;
    d->f.fail_permanent = 1;
    snprintf(d->f.fail_code, sizeof(d->f.fail_code), "BadRequest_InvalidBlob");
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        goto fail;
    }
    if (dm_create_resources(d, err, errlen) < 0) {
        goto fail;
    }
    if (uv_async_init(loop, &d->async, on_async) != 0) {
        snprintf(err, errlen, "uv_async_init failed");
        goto fail;
    }
    d->async.data = d;
    if (pthread_create(&d->thread, NULL, worker, d) != 0) {
        snprintf(err, errlen, "cannot start the queued-ingestion worker");
        uv_close((uv_handle_t *)&d->async, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        goto fail;
    }
    d->thread_started = 1;
    kusto_set_resources_fn(k, dm_resources_cb, d);
    return d;
fail:
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
    return NULL;
}

void dm_stop(struct dm *d)
{
    if (d == NULL || !d->thread_started) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    __atomic_store_n(&d->stop, 1, __ATOMIC_RELAXED);
    if (d->pending != NULL) {
        d->pending->cancelled = 1;
        d->pending = NULL;
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->thread_started = 0;
    kusto_set_resources_fn(d->k, NULL, NULL);
    uv_close((uv_handle_t *)&d->async, NULL);
}

void dm_free(struct dm *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->ntags; i++) {
        free(d->tags[i]);
    }
    free(d->tags);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}

/* ---- control endpoint ---- */

static void render_state(struct dm *d, struct sbuf *b)
{
    pthread_mutex_lock(&d->mu);
    sbuf_printf(b,
                "{\"faults\":{\"fail_count\":%d,\"fail_code\":\"%s\","
                "\"fail_permanent\":%s,\"status_delay_ms\":%" PRIu64 "},"
                "\"stats\":{\"messages\":%" PRIu64 ",\"bad_messages\":%" PRIu64
                ",\"applied\":%" PRIu64 ",\"rows\":%" PRIu64
                ",\"failed\":%" PRIu64 ",\"skipped\":%" PRIu64
                ",\"fired_fail\":%" PRIu64 ",\"reports\":%" PRIu64
                ",\"storage_errors\":%" PRIu64 ",\"ingest_by_tags\":%zu}}",
                d->f.fail_count, d->f.fail_code,
                d->f.fail_permanent ? "true" : "false", d->f.status_delay_ms,
                d->st.messages, d->st.bad_messages, d->st.applied, d->st.rows,
                d->st.failed, d->st.skipped, d->st.fired_fail, d->st.reports,
                d->st.storage_errors, d->ntags);
    pthread_mutex_unlock(&d->mu);
}

static int faults_post(struct dm *d, const char *body, size_t len, char *err,
                       size_t errlen)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    const cJSON *it;
    struct dm_faults nf;
    int rc = 0;

    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(err, errlen, "the body must be a JSON object");
        return -EINVAL;
    }
    pthread_mutex_lock(&d->mu);
    nf = d->f;
    pthread_mutex_unlock(&d->mu);
    cJSON_ArrayForEach(it, o)
    {
        if (strcmp(it->string, "fail_count") == 0 && cJSON_IsNumber(it) &&
            it->valuedouble >= 0 && it->valuedouble <= 1e6) {
            nf.fail_count = (int)it->valuedouble;
        } else if (strcmp(it->string, "fail_code") == 0 && cJSON_IsString(it) &&
                   strlen(it->valuestring) < sizeof(nf.fail_code) &&
                   strchr(it->valuestring, '"') == NULL &&
                   strchr(it->valuestring, '\\') == NULL) {
            snprintf(nf.fail_code, sizeof(nf.fail_code), "%s", it->valuestring);
        } else if (strcmp(it->string, "fail_permanent") == 0 &&
                   cJSON_IsBool(it)) {
            nf.fail_permanent = cJSON_IsTrue(it);
        } else if (strcmp(it->string, "status_delay_ms") == 0 &&
                   cJSON_IsNumber(it) && it->valuedouble >= 0 &&
                   it->valuedouble <= 600000) {
            nf.status_delay_ms = (uint64_t)it->valuedouble;
        } else {
            snprintf(err, errlen,
                     "bad key or value '%s' (fail_count 0..1000000, fail_code "
                     "string, fail_permanent bool, status_delay_ms "
                     "0..600000)",
                     it->string);
            rc = -EINVAL;
            break;
        }
    }
    cJSON_Delete(o);
    if (rc == 0) {
        pthread_mutex_lock(&d->mu);
        d->f = nf;
        pthread_mutex_unlock(&d->mu);
    }
    return rc;
}

int dm_handle_control(struct dm *d, struct http_request *req,
                      const struct http_header *hdrs, size_t nhdrs)
{
    const char *path = http_req_path(req);
    const char *m = http_req_method(req);
    struct sbuf b = {0};

    if (strcmp(path, "/_emulator/dm") != 0 &&
        strcmp(path, "/_emulator/dm/faults") != 0) {
        return 0;
    }
    if (d == NULL) {
        http_respond_json(req, 404, hdrs, nhdrs,
                          "{\"error\":{\"code\":\"General_NotFound\","
                          "\"message\":\"queued ingestion is off (start with "
                          "--storage-blob, --storage-queue, "
                          "--storage-table)\"}}");
        return 1;
    }
    if (strcmp(path, "/_emulator/dm/faults") == 0 && strcmp(m, "POST") == 0) {
        size_t len;
        const char *body = http_req_body(req, &len);
        char err[256];
        if (faults_post(d, body != NULL ? body : "", len, err, sizeof(err)) <
            0) {
            struct sbuf e = {0};
            sbuf_printf(&e, "{\"error\":{\"code\":\"General_BadRequest\","
                            "\"message\":");
            {
                cJSON *s = cJSON_CreateString(err);
                char *t = cJSON_PrintUnformatted(s);
                sbuf_printf(&e, "%s}}", t != NULL ? t : "\"\"");
                free(t);
                cJSON_Delete(s);
            }
            http_respond_json(req, 400, hdrs, nhdrs, e.err ? "{}" : e.p);
            sbuf_release(&e);
            return 1;
        }
    } else if (strcmp(m, "GET") != 0) {
        http_respond_json(req, 405, hdrs, nhdrs,
                          "{\"error\":{\"code\":\"General_BadRequest\","
                          "\"message\":\"GET /_emulator/dm or POST "
                          "/_emulator/dm/faults\"}}");
        return 1;
    }
    render_state(d, &b);
    http_respond_json(req, 200, hdrs, nhdrs, b.err ? "{}" : b.p);
    sbuf_release(&b);
    return 1;
}
