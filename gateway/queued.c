/*
 * queued.c - ADX queued ingestion over Azure Storage's REST API (see
 * queued.h for the flow and the contract; QUEUED.md for the why).
 *
 * Each attempt is a struct queued_op with one state:
 *
 *   RES_WAIT ──(resources fresh)──▶ PUT_BLOB ──201──▶ PUT_ROW ──2xx──▶
 *   POST_MSG ──201──▶ AWAIT ⇄ POLLING ──final status──▶ callback
 *
 * A body over block_max (QUEUED_BLOCK_BYTES) takes PUT_BLOCK (201, once a
 * slice) then PUT_BLOCKLIST (201) in place of PUT_BLOB.
 *
 * A 403 from storage (an expired or revoked SAS) sends the attempt back to
 * RES_WAIT once with the resources dropped (fetched again); a second 403 is
 * a config error. 5xx and transport errors end the attempt as transient
 * (the forwarder backs off and posts again: the same ingest-by tag, so ADX
 * applies the batch once). While a report is awaited, poll failures are
 * only retried: the message is in the queue and ADX will report.
 *
 * One timer drives everything: it starts waiting attempts and polls the
 * status rows that are due. The resources and the identity token are
 * fetched by one request chain at a time; the attempts waiting for them
 * are started (or failed) when it ends. They are fetched again after an
 * hour, at half the SAS's remaining life (its `se`), or after a 403.
 *
 * Owns: the ops, the cached resources and identity token, one timer.
 * Borrows the forwarder's struct adx. Loop thread only.
 */
#include "gateway/queued.h"
#include "base/base64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define Q_REASON_MAX  400
#define Q_AUTHCTX_MAX (64 * 1024)
#define Q_STORAGE_VER "x-ms-version: 2019-12-12"
#define Q_HDR_MAX     8

enum qop_state {
    QOP_RES_WAIT = 0,
    QOP_PUT_BLOB,
    QOP_PUT_ROW,
    QOP_POST_MSG,
    QOP_AWAIT,
    QOP_POLLING,
    QOP_PUT_BLOCK,
    QOP_PUT_BLOCKLIST,
};

struct queued_op {
    struct queued *q;
    enum qop_state state;
    queued_cb cb;
    void *arg;
    struct queued_ingest in; /* strings below are owned copies */
    char id[40];             /* message id: the status row's keys */
    char *blob_url;          /* with SAS */
    char *row_url;           /* the status row, with SAS */
    char *table_url;         /* the status table, with SAS (message) */
    char *req_body;          /* body of the request in flight (owned) */
    int in_request;
    int refreshed; /* a 403 already fetched the resources again */
    size_t block;  /* body over the block size: the next block's index */
    size_t nblocks;
    int64_t posted_wall;
    int64_t posted_mono;
    int64_t next_poll_mono;
    int64_t poll_step;
    struct queued_op *prev, *next;
};

enum q_fetch { Q_IDLE = 0, Q_FETCH_RES, Q_FETCH_IDENT };

struct queued {
    uv_loop_t *loop;
    struct adx *http;
    uv_timer_t timer;
    struct queued_resources res;
    int have_res;
    int64_t res_until_mono; /* fetch again after this */
    char *res_dm_url;       /* the endpoint they came from */
    char *auth_context;
    enum q_fetch fetching;
    char *token;  /* the last caller's bearer token (secret) */
    char *dm_url; /* the last caller's DM endpoint */
    long timeout_ms;
    size_t next_temp, next_queue;
    size_t block_max; /* bodies over this go as blocks of this size */
    struct queued_op *ops;
    size_t nops;
    int stopping;
    int closing; /* queued_free ran: requests in flight end silently */
    int nreq;    /* HTTP requests in flight (fetches and ops) */
    int timer_open;
};

static void q_arm(struct queued *q, int64_t delay_ms);

static void iso_ms(char *out, size_t cap, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    int n;

    gmtime_r(&s, &tm);
    n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0'; /* a year past 9999: no time rather than a cut one */
    }
}

static void new_uuid(char out[40])
{
    unsigned char r[16];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        uint64_t x = uv_hrtime() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof(r); i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            r[i] = (unsigned char)(x >> 56);
        }
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 40,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x"
             "%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
             r[11], r[12], r[13], r[14], r[15]);
}

/* ------------------------------------------------------------ parsing */

void queued_resources_release(struct queued_resources *r)
{
    for (size_t i = 0; i < r->ntemp; i++) {
        free(r->temp[i]);
    }
    for (size_t i = 0; i < r->nqueues; i++) {
        free(r->queues[i]);
    }
    free(r->temp);
    free(r->queues);
    free(r->status_table);
    memset(r, 0, sizeof(*r));
}

static int push_url(char ***arr, size_t *n, const char *s)
{
    char **na = realloc(*arr, (*n + 1) * sizeof(**arr));

    if (na == NULL) {
        return -ENOMEM;
    }
    *arr = na;
    na[*n] = strdup(s);
    if (na[*n] == NULL) {
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

int queued_parse_resources(const char *body, size_t len,
                           struct queued_resources *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *t0, *cols, *rows, *c, *row;
    int ti = -1, ri = -1, i = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    t0 =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "Tables"), 0);
    cols = cJSON_GetObjectItemCaseSensitive(t0, "Columns");
    rows = cJSON_GetObjectItemCaseSensitive(t0, "Rows");
    if (!cJSON_IsArray(cols) || !cJSON_IsArray(rows)) {
        cJSON_Delete(root);
        return -EBADMSG;
    }
    cJSON_ArrayForEach(c, cols)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "ColumnName");

        if (cJSON_IsString(n) &&
            strcmp(n->valuestring, "ResourceTypeName") == 0) {
            ti = i;
        } else if (cJSON_IsString(n) &&
                   strcmp(n->valuestring, "StorageRoot") == 0) {
            ri = i;
        }
        i++;
    }
    if (ti < 0 || ri < 0) {
        cJSON_Delete(root);
        return -EBADMSG;
    }
    cJSON_ArrayForEach(row, rows)
    {
        const cJSON *t = cJSON_GetArrayItem(row, ti);
        const cJSON *u = cJSON_GetArrayItem(row, ri);

        if (!cJSON_IsString(t) || !cJSON_IsString(u)) {
            continue;
        }
        if (strcmp(t->valuestring, "TempStorage") == 0) {
            rc = push_url(&out->temp, &out->ntemp, u->valuestring);
        } else if (strcmp(t->valuestring, "SecuredReadyForAggregationQueue") ==
                   0) {
            rc = push_url(&out->queues, &out->nqueues, u->valuestring);
        } else if (strcmp(t->valuestring, "IngestionsStatusTable") == 0 &&
                   out->status_table == NULL) {
            out->status_table = strdup(u->valuestring);
            rc = out->status_table == NULL ? -ENOMEM : 0;
        }
        if (rc < 0) {
            break;
        }
    }
    cJSON_Delete(root);
    if (rc == 0 &&
        (out->ntemp == 0 || out->nqueues == 0 || out->status_table == NULL)) {
        rc = -ENOENT;
    }
    if (rc < 0) {
        queued_resources_release(out);
    }
    return rc;
}

/* The SAS's expiry (`se=`, ISO 8601 UTC) as wall ms, or 0. */
static int64_t sas_expiry_ms(const char *url)
{
    const char *q = strchr(url, '?');
    const char *p;
    struct tm tm;
    char v[64];
    size_t n = 0;

    if (q == NULL) {
        return 0;
    }
    for (p = q; (p = strstr(p, "se=")) != NULL; p += 3) {
        if (p[-1] == '?' || p[-1] == '&') {
            break;
        }
    }
    if (p == NULL) {
        return 0;
    }
    p += 3;
    while (p[n] != '\0' && p[n] != '&' && n < sizeof(v) - 1) {
        v[n] = p[n];
        n++;
    }
    v[n] = '\0';
    /* URL-escaped colons: 2026-01-01T00%3A00%3A00Z */
    for (char *c; (c = strcasestr(v, "%3a")) != NULL;) {
        c[0] = ':';
        memmove(c + 1, c + 3, strlen(c + 3) + 1);
    }
    memset(&tm, 0, sizeof(tm));
    if (sscanf(v, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
        return 0;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

static const char *mapping_kind(const char *format)
{
    if (strcmp(format, "csv") == 0) {
        return "Csv";
    }
    if (strcmp(format, "avro") == 0) {
        return "Avro";
    }
    return "Json";
}

char *queued_message_json(const struct queued_ingest *in, const char *id,
                          const char *blob_url, const char *table_url,
                          const char *auth_context, int64_t now_ms)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *ap, *st, *arr;
    char when[40];
    char tag[300];
    char *tags = NULL, *ine = NULL, *out = NULL;

    if (o == NULL) {
        return NULL;
    }
    iso_ms(when, sizeof(when), now_ms);
    cJSON_AddStringToObject(o, "Id", id);
    cJSON_AddStringToObject(o, "BlobPath", blob_url);
    cJSON_AddNumberToObject(o, "RawDataSize", (double)in->raw_size);
    cJSON_AddStringToObject(o, "DatabaseName", in->database);
    cJSON_AddStringToObject(o, "TableName", in->table);
    cJSON_AddBoolToObject(o, "RetainBlobOnSuccess", 1);
    cJSON_AddBoolToObject(o, "FlushImmediately", 0);
    cJSON_AddBoolToObject(o, "IgnoreSizeLimit", 0);
    cJSON_AddNumberToObject(o, "ReportLevel", 2);  /* FailuresAndSuccesses */
    cJSON_AddNumberToObject(o, "ReportMethod", 1); /* Table */
    cJSON_AddStringToObject(o, "SourceMessageCreationTime", when);
    cJSON_AddStringToObject(o, "ApplicationForTracing", "kadx");
    cJSON_AddStringToObject(o, "ClientVersionForTracing", "Kusto.kadx");
    st = cJSON_AddObjectToObject(o, "IngestionStatusInTable");
    if (st != NULL) {
        cJSON_AddStringToObject(st, "TableConnectionString", table_url);
        cJSON_AddStringToObject(st, "PartitionKey", id);
        cJSON_AddStringToObject(st, "RowKey", id);
    }
    ap = cJSON_AddObjectToObject(o, "AdditionalProperties");
    if (ap == NULL) {
        goto out;
    }
    if (auth_context != NULL) {
        cJSON_AddStringToObject(ap, "authorizationContext", auth_context);
    }
    cJSON_AddStringToObject(ap, "format", in->format);
    if (in->mapping != NULL) {
        cJSON_AddStringToObject(ap, "ingestionMappingReference", in->mapping);
        cJSON_AddStringToObject(ap, "ingestionMappingType",
                                mapping_kind(in->format));
    }
    /* both are JSON-array strings (adx-protocol.md section 4) */
    arr = cJSON_CreateArray();
    snprintf(tag, sizeof(tag), "ingest-by:%s", in->batch_id);
    if (arr != NULL) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(tag));
        tags = cJSON_PrintUnformatted(arr);
        cJSON_Delete(arr);
    }
    arr = cJSON_CreateArray();
    if (arr != NULL) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(in->batch_id));
        ine = cJSON_PrintUnformatted(arr);
        cJSON_Delete(arr);
    }
    if (tags == NULL || ine == NULL) {
        goto out;
    }
    cJSON_AddStringToObject(ap, "tags", tags);
    cJSON_AddStringToObject(ap, "ingestIfNotExists", ine);
    out = cJSON_PrintUnformatted(o);
out:
    free(tags);
    free(ine);
    cJSON_Delete(o);
    return out;
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Failed-report codes that name a configuration problem (the route
 * pauses, INV-6) rather than bad data. */
static int code_is_config(const char *code)
{
    static const char *const marks[] = {
        "MappingReferenceWasNotFound",
        "EntityNotFound",
        "TableNotFound",
        "DatabaseNotFound",
        "Unauthorized",
        "Forbidden",
        "Download_AccessCondition",
        "Download_SourceNotFound",
    };

    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (strstr(code, marks[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

int queued_parse_status(const char *body, size_t len, struct queued_result *r,
                        char *reason, size_t reasonlen)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    const char *status;
    const char *code;
    int final = 1;

    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return -EBADMSG;
    }
    memset(r, 0, sizeof(*r));
    r->retry_after_ms = -1;
    reason[0] = '\0';
    status = jstr(o, "Status");
    code = jstr(o, "ErrorCode");
    if (strcasecmp(status, "Succeeded") == 0) {
        r->outcome = ADX_OK;
    } else if (strcasecmp(status, "Skipped") == 0) {
        /* ingestIfNotExists: the batch id's tag is on the table already,
         * an earlier attempt of this batch landed */
        r->outcome = ADX_OK;
        r->skipped = 1;
        snprintf(reason, reasonlen, "skipped: %s", code);
    } else if (strcasecmp(status, "PartiallySucceeded") == 0) {
        /* applied (its tag is on the table): a resend would be skipped */
        r->outcome = ADX_OK;
        snprintf(reason, reasonlen, "partially succeeded: %s", code);
    } else if (strcasecmp(status, "Failed") == 0) {
        const char *fs = jstr(o, "FailureStatus");
        char details[200];

        if (code_is_config(code)) {
            r->outcome = ADX_CONFIG;
        } else if (strcasecmp(fs, "Permanent") == 0) {
            r->outcome = ADX_PERMANENT;
        } else {
            r->outcome = ADX_TRANSIENT;
        }
        utf8_copy(details, sizeof(details), jstr(o, "Details"));
        snprintf(reason, reasonlen,
                 "queued ingestion failed (%.60s, %.20s): %s",
                 code[0] ? code : "no code", fs[0] ? fs : "?", details);
    } else {
        final = 0; /* Pending, Queued, or not written yet */
    }
    cJSON_Delete(o);
    return final;
}

/* ---------------------------------------------------------- the client */

int queued_new(uv_loop_t *loop, struct adx *http, struct queued **out)
{
    struct queued *q = calloc(1, sizeof(*q));

    *out = NULL;
    if (q == NULL) {
        return -ENOMEM;
    }
    q->loop = loop;
    q->http = http;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    q->timer_open = 1;
    q->block_max = QUEUED_BLOCK_BYTES;
    {
        /* test knob: smaller blocks (tests/e2e/test_queued.py) */
        const char *b = getenv("KADX_QUEUED_BLOCK_BYTES");
        char *end = NULL;
        long long v = b != NULL ? strtoll(b, &end, 10) : 0;

        if (b != NULL && end != b && *end == '\0' && v >= 1024 &&
            v <= QUEUED_BLOCK_BYTES) {
            q->block_max = (size_t)v;
        }
    }
    *out = q;
    return 0;
}

void queued_set_block_bytes(struct queued *q, size_t n)
{
    q->block_max = n > 0 && n <= QUEUED_BLOCK_BYTES ? n : QUEUED_BLOCK_BYTES;
}

void queued_block_id(size_t i, char out[QUEUED_BLOCK_ID_MAX])
{
    char raw[16];
    char *b;

    /* 12 bytes: 16 base64 characters, no padding, the same for all */
    snprintf(raw, sizeof(raw), "kadx%08zu", i % 100000000u);
    b = base64_dup(raw, 12);
    snprintf(out, QUEUED_BLOCK_ID_MAX, "%s", b != NULL ? b : "");
    free(b);
}

char *queued_block_list_xml(size_t nblocks)
{
    size_t cap = 96 + nblocks * (QUEUED_BLOCK_ID_MAX + 20);
    char *out = malloc(cap);
    size_t o;

    if (out == NULL) {
        return NULL;
    }
    o = (size_t)snprintf(out, cap,
                         "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
                         "<BlockList>");
    for (size_t i = 0; i < nblocks; i++) {
        char id[QUEUED_BLOCK_ID_MAX];

        queued_block_id(i, id);
        o += (size_t)snprintf(out + o, cap - o, "<Latest>%s</Latest>", id);
    }
    snprintf(out + o, cap - o, "</BlockList>");
    return out;
}

static void op_free(struct queued_op *op)
{
    free(op->blob_url);
    free(op->row_url);
    free(op->table_url);
    free(op->req_body);
    free((char *)op->in.dm_url);
    free((char *)op->in.database);
    free((char *)op->in.table);
    free((char *)op->in.format);
    free((char *)op->in.mapping);
    free((char *)op->in.batch_id);
    free(op);
}

static void op_unlink(struct queued_op *op)
{
    struct queued *q = op->q;

    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else {
        q->ops = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    }
    q->nops--;
}

/* Ends an attempt: unlinks it, runs its callback, frees it. */
static void op_finish(struct queued_op *op, int cancelled, enum adx_outcome o,
                      int skipped, const char *reason)
{
    struct queued_result r;

    op_unlink(op);
    memset(&r, 0, sizeof(r));
    r.cancelled = cancelled;
    r.outcome = o;
    r.skipped = skipped;
    r.reason = reason != NULL ? reason : "";
    r.retry_after_ms = -1;
    op->cb(op->arg, &r);
    op_free(op);
}

/* Splits "BASE?SAS" and builds BASE + mid + "?" + SAS. Owned or NULL. */
static char *url_with(const char *sas_url, const char *mid)
{
    const char *qm = strchr(sas_url, '?');
    size_t bl = qm != NULL ? (size_t)(qm - sas_url) : strlen(sas_url);
    char *out = NULL;

    if (asprintf(&out, "%.*s%s%s", (int)bl, sas_url, mid,
                 qm != NULL ? qm : "") < 0) {
        return NULL;
    }
    return out;
}

static void on_storage(void *arg, const struct adx_response *res);
static void q_maybe_free(struct queued *q);
static void op_put_row(struct queued_op *op);

/* url + "?" or "&" + query. Owned or NULL. */
static char *url_query(const char *url, const char *query)
{
    char *out = NULL;

    if (asprintf(&out, "%s%c%s", url, strchr(url, '?') != NULL ? '&' : '?',
                 query) < 0) {
        return NULL;
    }
    return out;
}

/* One storage request for op; the body (owned) is kept until the answer. */
static int op_request(struct queued_op *op, const char *method, const char *url,
                      const char *const *hdrs, char *body, size_t body_len,
                      const void *borrowed, char *err, size_t errlen)
{
    struct adx_request_spec spec;
    int rc;

    memset(&spec, 0, sizeof(spec));
    spec.method = method;
    spec.url = url;
    spec.headers = hdrs;
    spec.body = borrowed != NULL ? borrowed : body;
    spec.body_len = body_len;
    spec.timeout_ms = op->in.timeout_ms;
    free(op->req_body);
    op->req_body = body;
    rc = adx_request(op->q->http, &spec, on_storage, op, err, errlen);
    if (rc == 0) {
        op->in_request = 1;
        op->q->nreq++;
    }
    return rc;
}

/* The next block of a body over block_max (Put Block), or, after the last
 * one, the block list that commits them (Put Block List). */
static void op_put_block(struct queued_op *op)
{
    struct queued *q = op->q;
    const char *hdrs[Q_HDR_MAX] = {
        Q_STORAGE_VER, "Content-Type: application/octet-stream", NULL};
    const char *lhdrs[Q_HDR_MAX] = {Q_STORAGE_VER,
                                    "Content-Type: application/xml",
                                    "x-ms-blob-content-type: "
                                    "application/octet-stream",
                                    NULL};
    char query[96];
    char err[256];
    char *url;
    int rc;

    if (op->block < op->nblocks) {
        char id[QUEUED_BLOCK_ID_MAX];
        char enc[3 * QUEUED_BLOCK_ID_MAX];
        size_t off = op->block * q->block_max;
        size_t len = op->in.body_len - off < q->block_max
                         ? op->in.body_len - off
                         : q->block_max;
        size_t e = 0;

        queued_block_id(op->block, id);
        for (const char *c = id; *c != '\0'; c++) { /* + / = escaped */
            if (*c == '+' || *c == '/' || *c == '=') {
                e += (size_t)snprintf(enc + e, sizeof(enc) - e, "%%%02X",
                                      (unsigned char)*c);
            } else {
                enc[e++] = *c;
            }
        }
        enc[e] = '\0';
        snprintf(query, sizeof(query), "comp=block&blockid=%s", enc);
        url = url_query(op->blob_url, query);
        if (url == NULL) {
            op_finish(op, 0, ADX_TRANSIENT, 0, "out of memory");
            return;
        }
        op->state = QOP_PUT_BLOCK;
        rc = op_request(op, "PUT", url, hdrs, NULL, len,
                        (const char *)op->in.body + off, err, sizeof(err));
    } else {
        char *body = queued_block_list_xml(op->nblocks);

        url = url_query(op->blob_url, "comp=blocklist");
        if (url == NULL || body == NULL) {
            free(url);
            free(body);
            op_finish(op, 0, ADX_TRANSIENT, 0, "out of memory");
            return;
        }
        op->state = QOP_PUT_BLOCKLIST;
        rc = op_request(op, "PUT", url, lhdrs, body, strlen(body), NULL, err,
                        sizeof(err));
    }
    free(url);
    if (rc < 0) {
        char why[300];

        snprintf(why, sizeof(why), "put block: %s", err);
        op_finish(op, 0, ADX_CONFIG, 0, why);
    }
}

static void op_put_blob(struct queued_op *op)
{
    struct queued *q = op->q;
    const char *container = q->res.temp[q->next_temp++ % q->res.ntemp];
    const char *hdrs[Q_HDR_MAX] = {"x-ms-blob-type: BlockBlob", Q_STORAGE_VER,
                                   "Content-Type: application/octet-stream",
                                   NULL};
    char name[700];
    char err[256];

    /* the SDKs' {db}__{table}__{id}__{file} naming */
    snprintf(name, sizeof(name), "/kadx__%s__%s__%s__%d.%s.gz", op->in.database,
             op->in.table, op->in.batch_id, op->in.attempt, op->in.format);
    free(op->blob_url);
    free(op->table_url);
    op->blob_url = url_with(container, name);
    op->table_url = strdup(q->res.status_table);
    if (op->blob_url == NULL || op->table_url == NULL) {
        op_finish(op, 0, ADX_TRANSIENT, 0, "out of memory");
        return;
    }
    if (op->in.body_len > q->block_max) {
        /* Put Block + Put Block List: no request carries more than
         * block_max bytes */
        op->nblocks = (op->in.body_len + q->block_max - 1) / q->block_max;
        op->block = 0;
        op_put_block(op);
        return;
    }
    op->state = QOP_PUT_BLOB;
    if (op_request(op, "PUT", op->blob_url, hdrs, NULL, op->in.body_len,
                   op->in.body, err, sizeof(err)) < 0) {
        char why[300];

        snprintf(why, sizeof(why), "put blob: %s", err);
        op_finish(op, 0, ADX_CONFIG, 0, why);
    }
}

static int op_set_row_url(struct queued_op *op)
{
    char mid[200];

    snprintf(mid, sizeof(mid), "(PartitionKey='%s',RowKey='%s')", op->id,
             op->id);
    free(op->row_url);
    op->row_url = url_with(op->q->res.status_table, mid);
    return op->row_url == NULL ? -ENOMEM : 0;
}

static void op_put_row(struct queued_op *op)
{
    const char *hdrs[Q_HDR_MAX] = {Q_STORAGE_VER,
                                   "Content-Type: application/json",
                                   "Accept: application/json;odata=nometadata",
                                   "DataServiceVersion: 3.0;NetFx", NULL};
    cJSON *o = cJSON_CreateObject();
    char when[40];
    char err[256];
    char *body;

    iso_ms(when, sizeof(when), wall_ms());
    if (o != NULL) {
        cJSON_AddStringToObject(o, "Status", "Pending");
        cJSON_AddStringToObject(o, "IngestionSourceId", op->id);
        cJSON_AddStringToObject(o, "Database", op->in.database);
        cJSON_AddStringToObject(o, "Table", op->in.table);
        cJSON_AddStringToObject(o, "UpdatedOn", when);
    }
    body = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (body == NULL || op_set_row_url(op) < 0) {
        free(body);
        op_finish(op, 0, ADX_TRANSIENT, 0, "out of memory");
        return;
    }
    op->state = QOP_PUT_ROW;
    if (op_request(op, "PUT", op->row_url, hdrs, body, strlen(body), NULL, err,
                   sizeof(err)) < 0) {
        char why[300];

        snprintf(why, sizeof(why), "status row: %s", err);
        op_finish(op, 0, ADX_CONFIG, 0, why);
    }
}

static void op_post_msg(struct queued_op *op)
{
    struct queued *q = op->q;
    const char *queue = q->res.queues[q->next_queue++ % q->res.nqueues];
    const char *hdrs[Q_HDR_MAX] = {Q_STORAGE_VER,
                                   "Content-Type: application/xml", NULL};
    char *json = queued_message_json(&op->in, op->id, op->blob_url,
                                     op->table_url, q->auth_context, wall_ms());
    char *b64 = json != NULL ? base64_dup(json, strlen(json)) : NULL;
    char *body = NULL;
    char *url = url_with(queue, "/messages");
    char err[256];

    if (json != NULL) {
        explicit_bzero(json, strlen(json)); /* the authorization context */
    }
    free(json);
    if (b64 == NULL || url == NULL ||
        asprintf(&body,
                 "<QueueMessage><MessageText>%s</MessageText></QueueMessage>",
                 b64) < 0) {
        body = NULL;
        free(b64);
        free(url);
        op_finish(op, 0, ADX_TRANSIENT, 0, "out of memory");
        return;
    }
    free(b64);
    op->state = QOP_POST_MSG;
    if (op_request(op, "POST", url, hdrs, body, strlen(body), NULL, err,
                   sizeof(err)) < 0) {
        char why[300];

        snprintf(why, sizeof(why), "post message: %s", err);
        op_finish(op, 0, ADX_CONFIG, 0, why);
    }
    free(url);
}

static void op_poll(struct queued_op *op)
{
    const char *hdrs[Q_HDR_MAX] = {Q_STORAGE_VER,
                                   "Accept: application/json;odata=nometadata",
                                   "DataServiceVersion: 3.0;NetFx", NULL};
    char err[256];

    op->state = QOP_POLLING;
    if (op_request(op, "GET", op->row_url, hdrs, NULL, 0, NULL, err,
                   sizeof(err)) < 0) {
        op->state = QOP_AWAIT; /* try again at the next step */
    }
}

static void op_next_poll(struct queued_op *op)
{
    int64_t now = mono_ms();

    op->state = QOP_AWAIT;
    op->next_poll_mono = now + op->poll_step;
    op->poll_step = op->poll_step * 3 / 2;
    if (op->poll_step > QUEUED_POLL_MAX_MS) {
        op->poll_step = QUEUED_POLL_MAX_MS;
    }
    q_arm(op->q, op->next_poll_mono - now);
}

/* A 403 from storage: the SAS is stale. Fetch the resources again once. */
static void op_forbidden(struct queued_op *op, const char *what)
{
    struct queued *q = op->q;
    char why[300];

    if (!op->refreshed) {
        op->refreshed = 1;
        q->have_res = 0;
        op->state = QOP_RES_WAIT;
        q_arm(q, 0);
        return;
    }
    snprintf(why, sizeof(why),
             "azure storage refused %s (403) with fresh resources", what);
    if (op->posted_wall > 0) {
        op_next_poll(op); /* the report will come: keep asking */
        return;
    }
    op_finish(op, 0, ADX_CONFIG, 0, why);
}

static void on_storage(void *arg, const struct adx_response *res)
{
    struct queued_op *op = arg;
    struct queued *q = op->q;
    static const char *const what[] = {
        "", "put blob",    "status row", "post message",
        "", "status poll", "put block",  "put block list"};
    char why[Q_REASON_MAX];
    long st = res->status;

    op->in_request = 0;
    q->nreq--;
    free(op->req_body);
    op->req_body = NULL;
    if (q->closing) {
        op_unlink(op);
        op_free(op);
        q_maybe_free(q);
        return;
    }
    if (q->stopping || res->err == -ECANCELED) {
        op_finish(op, 1, ADX_TRANSIENT, 0, "cancelled");
        return;
    }
    if (op->state == QOP_POLLING) {
        struct queued_result r;
        int fin;

        if (st == 200 &&
            (fin = queued_parse_status(res->body, res->body_len, &r, why,
                                       sizeof(why))) > 0) {
            op_finish(op, 0, r.outcome, r.skipped, why);
            return;
        }
        if (st == 403) {
            op_forbidden(op, "the status row");
            return;
        }
        if (mono_ms() - op->posted_mono > QUEUED_REPORT_TIMEOUT_MS) {
            snprintf(why, sizeof(why), "no status report from ADX in %d s",
                     QUEUED_REPORT_TIMEOUT_MS / 1000);
            op_finish(op, 0, ADX_TRANSIENT, 0, why);
            return;
        }
        op_next_poll(op); /* pending, 404, 5xx, network: ask again */
        return;
    }
    if (st == 403) {
        op_forbidden(op, what[op->state]);
        return;
    }
    if (res->err < 0 || st == 0 || st >= 500 || st == 408 || st == 429) {
        snprintf(why, sizeof(why), "azure storage: %s: %s", what[op->state],
                 res->err < 0 ? res->errmsg : "");
        if (st > 0) {
            snprintf(why, sizeof(why), "azure storage: %s: HTTP %ld",
                     what[op->state], st);
        }
        op_finish(op, 0, st == 429 ? ADX_THROTTLED : ADX_TRANSIENT, 0, why);
        return;
    }
    if (st < 200 || st >= 300) {
        snprintf(why, sizeof(why), "azure storage refused %s: HTTP %ld",
                 what[op->state], st);
        op_finish(op, 0, ADX_CONFIG, 0, why);
        return;
    }
    switch (op->state) {
    case QOP_PUT_BLOB:
    case QOP_PUT_BLOCKLIST:
        op_put_row(op);
        return;
    case QOP_PUT_BLOCK:
        op->block++;
        op_put_block(op);
        return;
    case QOP_PUT_ROW:
        op_post_msg(op);
        return;
    case QOP_POST_MSG:
        op->posted_wall = wall_ms();
        op->posted_mono = mono_ms();
        op->poll_step = QUEUED_POLL_FIRST_MS;
        op_next_poll(op);
        return;
    default:
        return;
    }
}

/* ---- resources */

static void fail_waiting(struct queued *q, enum adx_outcome o, const char *why)
{
    struct queued_op *op = q->ops;

    while (op != NULL) {
        struct queued_op *nx = op->next;

        if (op->state == QOP_RES_WAIT && !op->in_request) {
            if (op->posted_wall > 0) {
                op_next_poll(op); /* awaiting a report: keep the old row */
            } else {
                op_finish(op, 0, o, 0, why);
            }
        }
        op = nx;
    }
}

static void on_ident(void *arg, const struct adx_response *res);

/* The bookkeeping of an answered resource fetch (.get ingestion resources,
 * .get kusto identity token); 1 when q is closing or stopping and the
 * answer is not to be looked at (q may be freed). */
static int fetch_answered(struct queued *q)
{
    q->fetching = Q_IDLE;
    q->nreq--;
    if (q->closing) {
        q_maybe_free(q);
        return 1;
    }
    return q->stopping != 0;
}

static void on_res(void *arg, const struct adx_response *res)
{
    struct queued *q = arg;
    struct queued_resources r;
    char why[Q_REASON_MAX];
    char err[256];
    int rc;

    if (fetch_answered(q)) {
        return;
    }
    if (res->status != 200) {
        char reason[300];
        enum adx_outcome o = adx_classify(res, reason, sizeof(reason));

        snprintf(why, sizeof(why),
                 "`.get ingestion resources` at %.80s: %.280s", q->dm_url,
                 reason);
        fail_waiting(q, o == ADX_AMBIGUOUS ? ADX_TRANSIENT : o, why);
        return;
    }
    rc = queued_parse_resources(res->body, res->body_len, &r);
    if (rc < 0) {
        snprintf(why, sizeof(why),
                 "`.get ingestion resources` at %.80s: %.280s", q->dm_url,
                 rc == -ENOENT ? "no temp storage, queue or status table "
                                 "(queued ingestion is not available there)"
                               : "not a v1 table");
        fail_waiting(q, ADX_CONFIG, why);
        return;
    }
    queued_resources_release(&q->res);
    q->res = r;
    q->fetching = Q_FETCH_IDENT;
    q->nreq++;
    if (adx_mgmt(q->http, q->dm_url, "NetDefaultDB",
                 ".get kusto identity token", q->token, "kadx-identity",
                 on_ident, q, err, sizeof(err)) < 0) {
        q->nreq--;
        q->fetching = Q_IDLE;
        snprintf(why, sizeof(why), "`.get kusto identity token`: %s", err);
        fail_waiting(q, ADX_CONFIG, why);
    }
}

static void on_ident(void *arg, const struct adx_response *res)
{
    struct queued *q = arg;
    char why[Q_REASON_MAX];
    char *ctx;
    int64_t now = mono_ms();
    int64_t ttl = QUEUED_RESOURCES_TTL_MS;
    int64_t wall = wall_ms();
    int rc;

    if (fetch_answered(q)) {
        return;
    }
    if (res->status != 200) {
        char reason[300];
        enum adx_outcome o = adx_classify(res, reason, sizeof(reason));

        snprintf(why, sizeof(why), "`.get kusto identity token`: %s", reason);
        fail_waiting(q, o == ADX_AMBIGUOUS ? ADX_TRANSIENT : o, why);
        return;
    }
    ctx = malloc(Q_AUTHCTX_MAX);
    if (ctx == NULL) {
        fail_waiting(q, ADX_TRANSIENT, "out of memory");
        return;
    }
    rc = adx_parse_cell(res->body, res->body_len, "AuthorizationContext", ctx,
                        Q_AUTHCTX_MAX);
    if (rc < 0) {
        free(ctx);
        fail_waiting(q, ADX_CONFIG,
                     "`.get kusto identity token`: no AuthorizationContext");
        return;
    }
    if (q->auth_context != NULL) {
        explicit_bzero(q->auth_context, strlen(q->auth_context));
        free(q->auth_context);
    }
    q->auth_context = ctx;
    /* fetched again after an hour, or at half the SAS's remaining life */
    {
        const char *urls[3] = {q->res.temp[0], q->res.queues[0],
                               q->res.status_table};

        for (int i = 0; i < 3; i++) {
            int64_t se = sas_expiry_ms(urls[i]);

            if (se > 0 && (se - wall) / 2 < ttl) {
                ttl = se > wall ? (se - wall) / 2 : 0;
            }
        }
    }
    q->res_until_mono = now + ttl;
    free(q->res_dm_url);
    q->res_dm_url = strdup(q->dm_url);
    q->have_res = q->res_dm_url != NULL;
    q_arm(q, 0);
}

static void q_fetch(struct queued *q)
{
    char err[256];
    char why[300];

    if (q->fetching != Q_IDLE || q->stopping) {
        return;
    }
    q->have_res = 0;
    q->fetching = Q_FETCH_RES;
    q->nreq++;
    if (adx_mgmt(q->http, q->dm_url, "NetDefaultDB", ".get ingestion resources",
                 q->token, "kadx-resources", on_res, q, err, sizeof(err)) < 0) {
        q->nreq--;
        q->fetching = Q_IDLE;
        snprintf(why, sizeof(why), "`.get ingestion resources`: %s", err);
        fail_waiting(q, ADX_CONFIG, why);
    }
}

/* ---- the timer */

static void on_tick(uv_timer_t *t)
{
    struct queued *q = t->data;
    int64_t now = mono_ms();
    int64_t next = -1;
    int need = 0;
    struct queued_op *op;

    if (q->stopping) {
        /* everything not in a request ends now */
        op = q->ops;
        while (op != NULL) {
            struct queued_op *nx = op->next;

            if (!op->in_request) {
                op_finish(op, 1, ADX_TRANSIENT, 0, "cancelled");
            }
            op = nx;
        }
        return;
    }
    if (q->have_res && (now >= q->res_until_mono || q->res_dm_url == NULL ||
                        strcmp(q->res_dm_url, q->dm_url) != 0)) {
        q->have_res = 0;
    }
    op = q->ops;
    while (op != NULL) {
        struct queued_op *nx = op->next;

        if (op->in_request) {
            op = nx;
            continue;
        }
        if (op->state == QOP_RES_WAIT) {
            if (!q->have_res) {
                need = 1;
            } else if (op->posted_wall > 0) {
                /* a 403 while polling: the same row, a fresh SAS */
                if (op_set_row_url(op) < 0) {
                    op_finish(op, 0, ADX_TRANSIENT, 0, "out of memory");
                } else {
                    op->poll_step = QUEUED_POLL_FIRST_MS;
                    op_next_poll(op);
                }
            } else {
                op_put_blob(op);
            }
        } else if (op->state == QOP_AWAIT) {
            if (op->next_poll_mono <= now) {
                op_poll(op);
            } else if (next < 0 || op->next_poll_mono - now < next) {
                next = op->next_poll_mono - now;
            }
        }
        op = nx;
    }
    if (need) {
        q_fetch(q);
    }
    if (next >= 0) {
        q_arm(q, next);
    }
}

/* Runs the tick within delay_ms (sooner if it is armed sooner). */
static void q_arm(struct queued *q, int64_t delay_ms)
{
    uint64_t due = uv_timer_get_due_in(&q->timer);

    if (delay_ms < 0) {
        delay_ms = 0;
    }
    if (uv_is_active((uv_handle_t *)&q->timer) && due <= (uint64_t)delay_ms) {
        return;
    }
    uv_timer_start(&q->timer, on_tick, (uint64_t)delay_ms, 0);
}

static int dup_str(const char **dst, const char *src)
{
    if (src == NULL) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(src);
    return *dst == NULL ? -ENOMEM : 0;
}

int queued_ingest(struct queued *q, const struct queued_ingest *in,
                  queued_cb cb, void *arg, struct queued_op **opp, char *err,
                  size_t errlen)
{
    struct queued_op *op;

    if (opp != NULL) {
        *opp = NULL;
    }
    if (q->stopping) {
        set_err(err, errlen, "queued ingestion is stopping");
        return -ECANCELED;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    op->q = q;
    op->cb = cb;
    op->arg = arg;
    op->in = *in;
    if (dup_str(&op->in.dm_url, in->dm_url) < 0 ||
        dup_str(&op->in.database, in->database) < 0 ||
        dup_str(&op->in.table, in->table) < 0 ||
        dup_str(&op->in.format, in->format) < 0 ||
        dup_str(&op->in.mapping, in->mapping) < 0 ||
        dup_str(&op->in.batch_id, in->batch_id) < 0) {
        op_free(op);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    op->in.token = NULL;
    new_uuid(op->id);
    /* the DM endpoint and token of the latest attempt serve the fetches */
    if (q->dm_url == NULL || strcmp(q->dm_url, in->dm_url) != 0) {
        char *d = strdup(in->dm_url);

        if (d == NULL) {
            op_free(op);
            set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
        free(q->dm_url);
        q->dm_url = d;
    }
    if (q->token != NULL) {
        explicit_bzero(q->token, strlen(q->token));
        free(q->token);
        q->token = NULL;
    }
    if (in->token != NULL) {
        q->token = strdup(in->token);
    }
    q->timeout_ms = in->timeout_ms;
    op->next = q->ops;
    if (q->ops != NULL) {
        q->ops->prev = op;
    }
    q->ops = op;
    q->nops++;
    if (opp != NULL) {
        *opp = op;
    }
    q_arm(q, 0);
    return 0;
}

int64_t queued_op_posted_ms(const struct queued_op *op)
{
    return op != NULL ? op->posted_wall : 0;
}

size_t queued_pending(const struct queued *q)
{
    return q != NULL ? q->nops : 0;
}

void queued_stop(struct queued *q)
{
    if (q == NULL || q->stopping) {
        return;
    }
    q->stopping = 1;
    uv_timer_start(&q->timer, on_tick, 0, 0);
}

static void q_maybe_free(struct queued *q)
{
    if (!q->closing || q->nreq > 0 || q->timer_open) {
        return;
    }
    queued_resources_release(&q->res);
    free(q->res_dm_url);
    free(q->dm_url);
    if (q->token != NULL) {
        explicit_bzero(q->token, strlen(q->token));
        free(q->token);
    }
    if (q->auth_context != NULL) {
        explicit_bzero(q->auth_context, strlen(q->auth_context));
        free(q->auth_context);
    }
    free(q);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct queued *q = h->data;

    q->timer_open = 0;
    q_maybe_free(q);
}

void queued_free(struct queued *q)
{
    struct queued_op *op;

    if (q == NULL) {
        return;
    }
    /* the owner is going away: no callback runs any more; attempts with a
     * request in flight are freed when it ends (adx_free cancels it) */
    q->closing = 1;
    q->stopping = 1;
    op = q->ops;
    while (op != NULL) {
        struct queued_op *nx = op->next;

        if (!op->in_request) {
            op_unlink(op);
            op_free(op);
        }
        op = nx;
    }
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_timer_closed);
}
