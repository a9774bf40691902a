/*
 * adx_emulator.c - `kadx adx-emulator`: a local Azure Data Explorer that
 * speaks the REST protocol of docs/adx-protocol.md on loopback.
 *
 * This file is the HTTP surface: routing, auth (bearer tokens issued by an
 * AAD-shaped token endpoint, an IMDS-shaped endpoint, or one static token),
 * gzip, streaming ingest (body -> rows through ingest.c, rows -> engine),
 * query and management (answered in render.c's v1/v2 shapes and OneApi
 * errors), and where the faults apply. The control endpoint /_emulator/
 * that sets the faults and reads the statistics is adx_control.c; the
 * catalog, the KQL and the rows live in the engine behind kusto.h.
 *
 * One libuv loop thread runs everything: the HTTP server (admin/http.c),
 * the engine (SQLite, synchronous), the latency timers and the signal
 * handlers. `struct emu` is owned by that thread; there are no globals.
 *
 * Faults, in the order an ingest request meets them: throttle (429 with
 * Retry-After, not applied), fail-next-N (status S, not applied), latency
 * (the request waits, then goes on), late apply (a share of requests is
 * applied only after a random delay, whether or not the client is still
 * there, as ADX keeps working after a client hung up; cut off, not
 * applied, at the request's `servertimeout`), reset-next-N (the rows are
 * stored, then the connection is reset without an answer: the ambiguous
 * case).
 */
#include "cmd/cli.h"
#include "emulators/emulators.h"
#include "gateway/log.h"
#include "kadx_version.h"

#include "admin/http.h"
#include "emulators/adx_emulator_internal.h"
#include "emulators/dm.h"
#include "emulators/ingest.h"
#include "emulators/kusto.h"
#include "emulators/render.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- the emulator ---- */

/* ---- per-request context: ids echoed in headers ---- */

static void ctx_init(struct ctx *c, const struct http_request *req)
{
    const char *crid = http_req_header(req, "x-ms-client-request-id");

    if (crid != NULL && crid[0] != '\0') {
        snprintf(c->crid, sizeof(c->crid), "%s", crid);
    } else {
        char u[37];
        emu_new_uuid(u);
        snprintf(c->crid, sizeof(c->crid), "KADXEMU;%s", u);
    }
    emu_new_uuid(c->aid);
    c->hdrs[0] = (struct http_header){"x-ms-client-request-id", c->crid};
    c->hdrs[1] = (struct http_header){"x-ms-activity-id", c->aid};
    c->nhdrs = 2;
}

void emu_respond(struct http_request *req, struct ctx *c, int status,
                 struct sbuf *b)
{
    if (b->err) {
        static const char oom[] = "{\"error\":{\"code\":\"Internal\","
                                  "\"message\":\"out of memory\"}}";
        http_respond_json(req, 500, c->hdrs, c->nhdrs, oom);
    } else {
        http_respond_json(req, status, c->hdrs, c->nhdrs,
                          b->p != NULL ? b->p : "{}");
    }
    free(b->p);
    b->p = NULL;
}

void emu_respond_error(struct http_request *req, struct ctx *c, int status,
                       const char *code, int permanent, const char *fmt, ...)
{
    char detail[768];
    struct sbuf b = {0};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    render_error(&b, status, code, detail, permanent, c->crid, c->aid);
    emu_respond(req, c, status, &b);
}

static void respond_kerr(struct http_request *req, struct ctx *c,
                         const struct kusto_error *err)
{
    int status = err->status >= 400 && err->status <= 599 ? err->status : 500;

    emu_respond_error(req, c, status,
                      err->code[0] ? err->code : "General_Error",
                      err->permanent, "%s", err->message);
}

/* ---- auth ---- */

static void tokens_prune(struct emu *e)
{
    uint64_t now = emu_now_ms();
    size_t o = 0;

    for (size_t i = 0; i < e->ntokens; i++) {
        if ((uint64_t)e->tokens[i].expires_ms > now) {
            e->tokens[o++] = e->tokens[i];
        }
    }
    e->ntokens = o;
}

/* Issues a token valid for the configured lifetime; NULL when full. */
static const struct issued_token *token_issue(struct emu *e)
{
    unsigned char b[24];
    struct issued_token *t;
    size_t pos;

    tokens_prune(e);
    if (e->ntokens >= EMU_MAX_TOKENS) {
        /* drop the oldest */
        memmove(e->tokens, e->tokens + 1,
                (e->ntokens - 1) * sizeof(e->tokens[0]));
        e->ntokens--;
    }
    t = &e->tokens[e->ntokens++];
    emu_random_bytes(b, sizeof(b));
    pos = (size_t)snprintf(t->value, sizeof(t->value), "kadxemu.");
    for (size_t i = 0; i < sizeof(b); i++) {
        pos += (size_t)snprintf(t->value + pos, sizeof(t->value) - pos, "%02x",
                                b[i]);
    }
    t->expires_ms =
        (int64_t)(emu_now_ms() + (uint64_t)e->token_lifetime_s * 1000);
    return t;
}

/* 1 when the request carries an acceptable bearer token. */
static int authorized(struct emu *e, const struct http_request *req)
{
    const char *h;
    uint64_t now;

    if (!e->auth_token) {
        return 1;
    }
    h = http_req_bearer(req);
    if (h == NULL) {
        return 0;
    }
    if (e->static_token != NULL && strcmp(h, e->static_token) == 0) {
        return 1;
    }
    now = emu_now_ms();
    for (size_t i = 0; i < e->ntokens; i++) {
        if (strcmp(e->tokens[i].value, h) == 0) {
            return (uint64_t)e->tokens[i].expires_ms > now;
        }
    }
    return 0;
}

static void respond_unauthorized(struct emu *e, struct http_request *req,
                                 struct ctx *c)
{
    e->st.auth_failures++;
    c->hdrs[c->nhdrs++] = (struct http_header){"WWW-Authenticate", "Bearer"};
    emu_respond_error(req, c, 401, "Unauthorized", 1,
                      "missing, unknown or expired bearer token");
}

/* Form field of an x-www-form-urlencoded body into out; 0 or -errno. */
static int form_field(const char *body, const char *name, char *out,
                      size_t outlen)
{
    return http_query_param(body, name, out, outlen);
}

static void handle_token_v2(struct emu *e, struct http_request *req,
                            struct ctx *c, int v1)
{
    size_t blen;
    const char *body = http_req_body(req, &blen);
    char grant[64];
    char cid[256];
    char secret[512];
    char assertion[8];
    char resource[256];
    const struct issued_token *t;
    struct sbuf b = {0};
    int has_secret;
    int has_assertion;

    if (form_field(body, "grant_type", grant, sizeof(grant)) < 0 ||
        strcmp(grant, "client_credentials") != 0) {
        http_respond_json(req, 400, c->hdrs, c->nhdrs,
                          "{\"error\":\"unsupported_grant_type\","
                          "\"error_description\":\"AADSTS70003: only "
                          "client_credentials is supported by the "
                          "emulator\"}");
        return;
    }
    if (form_field(body, "client_id", cid, sizeof(cid)) < 0) {
        cid[0] = '\0';
    }
    has_secret = form_field(body, "client_secret", secret, sizeof(secret)) >= 0;
    /* workload identity: any non-empty assertion from the right client */
    has_assertion = form_field(body, "client_assertion", assertion,
                               sizeof(assertion)) != -ENOENT;
    if (cid[0] == '\0' || (!has_secret && !has_assertion) ||
        (e->client_id != NULL && strcmp(cid, e->client_id) != 0) ||
        (has_secret && e->client_secret != NULL &&
         strcmp(secret, e->client_secret) != 0)) {
        http_respond_json(req, 401, c->hdrs, c->nhdrs,
                          "{\"error\":\"invalid_client\","
                          "\"error_description\":\"AADSTS7000215: Invalid "
                          "client secret or client id provided.\"}");
        return;
    }
    t = token_issue(e);
    if (v1) {
        uint64_t now_s = emu_now_ms() / 1000;
        if (form_field(body, "resource", resource, sizeof(resource)) < 0) {
            snprintf(resource, sizeof(resource), "%s",
                     "https://kusto.kusto.windows.net");
        }
        sbuf_printf(&b,
                    "{\"token_type\":\"Bearer\",\"expires_in\":\"%ld\","
                    "\"ext_expires_in\":\"%ld\",\"expires_on\":\"%" PRIu64
                    "\",\"not_before\":\"%" PRIu64 "\",\"resource\":",
                    e->token_lifetime_s, e->token_lifetime_s,
                    now_s + (uint64_t)e->token_lifetime_s, now_s);
        rb_json(&b, resource);
        sbuf_adds(&b, ",\"access_token\":");
    } else {
        sbuf_printf(&b,
                    "{\"token_type\":\"Bearer\",\"expires_in\":%ld,"
                    "\"ext_expires_in\":%ld,\"access_token\":",
                    e->token_lifetime_s, e->token_lifetime_s);
    }
    rb_json(&b, t->value);
    sbuf_adds(&b, "}");
    emu_respond(req, c, 200, &b);
}

static void handle_imds(struct emu *e, struct http_request *req, struct ctx *c)
{
    const char *md = http_req_header(req, "Metadata");
    char resource[256];
    const struct issued_token *t;
    struct sbuf b = {0};
    uint64_t now_s = emu_now_ms() / 1000;

    if (md == NULL || strcasecmp(md, "true") != 0) {
        http_respond_json(req, 400, c->hdrs, c->nhdrs,
                          "{\"error\":\"invalid_request\","
                          "\"error_description\":\"Required metadata "
                          "header not specified\"}");
        return;
    }
    if (http_query_param(http_req_query(req), "resource", resource,
                         sizeof(resource)) < 0) {
        http_respond_json(req, 400, c->hdrs, c->nhdrs,
                          "{\"error\":\"invalid_request\","
                          "\"error_description\":\"Required query variable "
                          "'resource' is missing\"}");
        return;
    }
    t = token_issue(e);
    sbuf_adds(&b, "{\"access_token\":");
    rb_json(&b, t->value);
    sbuf_printf(&b,
                ",\"expires_in\":\"%ld\",\"expires_on\":\"%" PRIu64
                "\",\"not_before\":\"%" PRIu64 "\",\"resource\":",
                e->token_lifetime_s, now_s + (uint64_t)e->token_lifetime_s,
                now_s);
    rb_json(&b, resource);
    sbuf_adds(&b, ",\"token_type\":\"Bearer\"}");
    emu_respond(req, c, 200, &b);
}

static void handle_metadata(struct emu *e, struct http_request *req,
                            struct ctx *c)
{
    const char *host = http_req_header(req, "Host");
    char url[300];
    struct sbuf b = {0};

    if (host != NULL && host[0] != '\0' && strlen(host) < 256 &&
        strpbrk(host, "\"\\/ ") == NULL) {
        snprintf(url, sizeof(url), "http://%s", host);
    } else {
        snprintf(url, sizeof(url), "http://%s", e->listen);
    }
    sbuf_adds(&b, "{\"AzureAD\":{\"LoginEndpoint\":");
    rb_json(&b, url);
    sbuf_adds(&b,
              ",\"LoginMfaRequired\":false,\"KustoClientAppId\":"
              "\"db662dc1-0cfe-4e1c-a843-19a68e65be58\","
              "\"KustoClientRedirectUri\":\"https://microsoft/kustoclient\","
              "\"KustoServiceResourceId\":\"https://kusto.kusto.windows.net\","
              "\"FirstPartyAuthorityUrl\":");
    rb_json(&b, url);
    sbuf_adds(&b, "},\"dSTS\":{\"CloudEndpointSuffix\":\"windows.net\","
                  "\"DstsRealm\":\"realm://dsts.core.windows.net\","
                  "\"DstsInstance\":\"prod-dsts.dsts.core.windows.net\","
                  "\"KustoDnsHostName\":\"kusto.windows.net\","
                  "\"ServiceName\":\"kusto\"}}");
    emu_respond(req, c, 200, &b);
}

/* ---- query and management ---- */

static const char *default_db(struct emu *e)
{
    return e->ndatabases > 0 ? e->databases[0] : "leaderboard";
}

enum api { API_MGMT, API_QUERY_V1, API_QUERY_V2 };

static void handle_query(struct emu *e, struct http_request *req, struct ctx *c,
                         enum api api)
{
    size_t blen;
    const char *body = http_req_body(req, &blen);
    cJSON *root = NULL;
    char dbbuf[EMU_NAME_MAX];
    char *cslbuf = NULL;
    const char *db = NULL;
    const char *csl = NULL;
    struct kusto_result *res = NULL;
    struct kusto_error err;
    struct sbuf b = {0};

    if (strcmp(http_req_method(req), "GET") == 0 && api != API_MGMT) {
        size_t qlen = strlen(http_req_query(req)) + 1;
        cslbuf = malloc(qlen);
        if (cslbuf == NULL ||
            http_query_param(http_req_query(req), "csl", cslbuf, qlen) < 0) {
            free(cslbuf);
            emu_respond_error(req, c, 400, "General_BadRequest", 1,
                              "the query string has no 'csl'");
            return;
        }
        csl = cslbuf;
        if (http_query_param(http_req_query(req), "db", dbbuf, sizeof(dbbuf)) >
            0) {
            db = dbbuf;
        }
    } else {
        const cJSON *jdb;
        const cJSON *jcsl;
        const cJSON *props;
        root = cJSON_ParseWithLength(body, blen);
        if (!cJSON_IsObject(root)) {
            emu_respond_error(req, c, 400, "General_BadRequest", 1,
                              "the request body is not a JSON object with "
                              "'csl' and 'db'");
            goto out;
        }
        jdb = cJSON_GetObjectItem(root, "db");
        jcsl = cJSON_GetObjectItem(root, "csl");
        props = cJSON_GetObjectItem(root, "properties");
        if (!cJSON_IsString(jcsl)) {
            emu_respond_error(req, c, 400, "General_BadRequest", 1,
                              "the request body has no 'csl' string");
            goto out;
        }
        csl = jcsl->valuestring;
        if (cJSON_IsString(jdb) && jdb->valuestring[0] != '\0') {
            db = jdb->valuestring;
        }
        if (props != NULL && !cJSON_IsNull(props) && !cJSON_IsObject(props)) {
            cJSON *inner = NULL;
            if (cJSON_IsString(props)) {
                inner = cJSON_Parse(props->valuestring);
            }
            if (!cJSON_IsObject(inner)) {
                cJSON_Delete(inner);
                emu_respond_error(req, c, 400, "General_BadRequest", 1,
                                  "'properties' must be an object or a JSON "
                                  "string holding one");
                goto out;
            }
            cJSON_Delete(inner);
        }
    }
    if (db == NULL || strcmp(db, "NetDefaultDB") == 0) {
        db = default_db(e);
    }
    {
        const char *p = csl;
        while (isspace((unsigned char)*p)) {
            p++;
        }
        if (*p == '.' && api == API_QUERY_V2) {
            emu_respond_error(
                req, c, 400, "General_BadRequest", 1,
                "Control commands (starting with a dot '.') do not "
                "support api_version=v2");
            goto out;
        }
        if (*p == '.') {
            e->st.mgmt++;
        } else {
            e->st.queries++;
        }
    }
    if (kusto_execute(e->k, db, csl, &res, &err) < 0) {
        respond_kerr(req, c, &err);
        goto out;
    }
    if (api == API_QUERY_V2) {
        render_v2(&b, res, c->crid, c->aid);
    } else {
        render_v1(&b, res);
    }
    emu_respond(req, c, 200, &b);
out:
    kusto_result_free(res);
    cJSON_Delete(root);
    free(cslbuf);
}

/* ---- ingest ---- */

static struct table_count *table_counter(struct emu *e, const char *db,
                                         const char *table)
{
    char name[sizeof(e->tables[0].name)];

    snprintf(name, sizeof(name), "%s.%s", db, table);
    for (size_t i = 0; i < e->ntables; i++) {
        if (strcmp(e->tables[i].name, name) == 0) {
            return &e->tables[i];
        }
    }
    if (e->ntables >= EMU_MAX_TABLES) {
        return NULL;
    }
    snprintf(e->tables[e->ntables].name, sizeof(e->tables[0].name), "%s", name);
    e->tables[e->ntables].rows = 0;
    return &e->tables[e->ntables++];
}

/* Splits /v1/rest/ingest/{db}/{table} (percent-decoded). 0 or -EINVAL. */
static int ingest_target(const char *path, char *db, char *table)
{
    static const char prefix[] = "/v1/rest/ingest/";
    const char *p = path + sizeof(prefix) - 1;
    const char *slash = strchr(p, '/');
    int n;

    if (slash == NULL || strchr(slash + 1, '/') != NULL) {
        return -EINVAL;
    }
    n = http_url_decode(p, (size_t)(slash - p), db, EMU_NAME_MAX, 0);
    if (n <= 0) {
        return -EINVAL;
    }
    n = http_url_decode(slash + 1, strlen(slash + 1), table, EMU_NAME_MAX, 0);
    return n <= 0 ? -EINVAL : 0;
}

/* The v1 success body of a streaming ingest (adx-protocol.md section 1). */
static void render_ingest_ok(struct sbuf *b, size_t rows)
{
    sbuf_printf(
        b,
        "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":["
        "{\"ColumnName\":\"ConsumedRecordsCount\",\"DataType\":"
        "\"Int64\"},{\"ColumnName\":\"UpdatePolicyStatus\","
        "\"DataType\":\"String\"},{\"ColumnName\":"
        "\"UpdatePolicyFailureCode\",\"DataType\":\"String\"},"
        "{\"ColumnName\":\"UpdatePolicyFailureReason\",\"DataType\":"
        "\"String\"}],\"Rows\":[[%zu,\"Inactive\",\"Unknown\",null]]}]}",
        rows);
}

/* Does the ingest work and answers (or resets, under the reset fault). */
/* What a streaming ingest request names: target, format, mapping. */
struct ingest_req {
    char db[EMU_NAME_MAX];
    char table[EMU_NAME_MAX];
    char fmtname[32];
    char mapname[EMU_NAME_MAX];
    enum ingest_format fmt;
    int have_map;
};

/* Reads the path and query parameters of an ingest request into r; on a
 * bad one answers the 400 itself and returns -EINVAL. */
static int ingest_req_parse(struct http_request *req, struct ctx *c,
                            struct ingest_req *r)
{
    const char *q = http_req_query(req);
    int rc;

    if (ingest_target(http_req_path(req), r->db, r->table) < 0) {
        emu_respond_error(req, c, 400, "General_BadRequest", 1,
                          "the ingest path must be /v1/rest/ingest/{database}/"
                          "{table}");
        return -EINVAL;
    }
    if (http_query_param(q, "sourceKind", r->fmtname, sizeof(r->fmtname)) >=
            0 &&
        strcasecmp(r->fmtname, "uri") == 0) {
        emu_respond_error(
            req, c, 400, "General_BadRequest", 1,
            "sourceKind=uri (ingest from a blob) is not supported "
            "by the emulator");
        return -EINVAL;
    }
    if (http_query_param(q, "streamFormat", r->fmtname, sizeof(r->fmtname)) <
        0) {
        emu_respond_error(req, c, 400, "General_BadRequest", 1,
                          "the query parameter 'streamFormat' is required");
        return -EINVAL;
    }
    if (ingest_format_parse(r->fmtname, &r->fmt) < 0) {
        emu_respond_error(req, c, 400, "BadRequest_UnsupportedFormat", 1,
                          "streamFormat '%s' is not supported by the emulator "
                          "(json, multijson, csv, avro)",
                          r->fmtname);
        return -EINVAL;
    }
    rc = http_query_param(q, "mappingName", r->mapname, sizeof(r->mapname));
    r->have_map = rc > 0;
    if (rc == -EINVAL || rc == -EMSGSIZE) {
        emu_respond_error(req, c, 400, "General_BadRequest", 1,
                          "bad 'mappingName' parameter");
        return -EINVAL;
    }
    return 0;
}

/*
 * The parsed mapping r names, bound to the table's columns (the columns it
 * declares with a datatype are added on first ingest). Parsed mappings are
 * cached by their text in e: most requests reuse the last one. *out is
 * borrowed from e (valid until the next call). 0 or < 0 with err filled.
 */
static int ingest_req_mapping(struct emu *e, const struct ingest_req *r,
                              struct ingest_mapping **out,
                              struct kusto_error *err)
{
    const struct kusto_column *cols;
    size_t ncols;
    const char *j;
    int rc;

    if (kusto_mapping_get_kind(e->k, r->db, r->table,
                               r->fmt == INGEST_AVRO ? "avro" : "json",
                               r->mapname, &j, err) < 0) {
        return -EINVAL;
    }
    if (e->map_json == NULL || strcmp(e->map_json, j) != 0) {
        struct ingest_mapping *nm = NULL;
        char *nj = strdup(j);
        if (nj == NULL) {
            *err = (struct kusto_error){.status = 500, .code = "Internal"};
            snprintf(err->message, sizeof(err->message), "out of memory");
            return -ENOMEM;
        }
        if (ingest_mapping_parse(nj, &nm, err) < 0) {
            free(nj);
            return -EINVAL;
        }
        ingest_mapping_free(e->map);
        free(e->map_json);
        e->map = nm;
        e->map_json = nj;
    }
    rc = kusto_table_schema(e->k, r->db, r->table, &cols, &ncols, err);
    if (rc == 0) {
        rc = ingest_mapping_bind(e->map, cols, ncols, err);
    }
    if (rc == -ENOENT) {
        /* a mapped column with a datatype is added on first ingest */
        rc = ingest_mapping_add_columns(e->k, r->db, r->table, e->map, err);
        if (rc == 0) {
            rc = kusto_table_schema(e->k, r->db, r->table, &cols, &ncols, err);
        }
        if (rc == 0) {
            rc = ingest_mapping_bind(e->map, cols, ncols, err);
        }
    }
    if (rc == 0) {
        *out = e->map;
    }
    return rc;
}

static void ingest_process(struct emu *e, struct http_request *req)
{
    struct ctx c;
    struct ingest_req r = {0};
    const char *db = r.db;
    const char *table = r.table;
    size_t blen;
    const char *body = http_req_body(req, &blen);
    const char *enc = http_req_header(req, "Content-Encoding");
    char *plain = NULL;
    size_t plen = 0;
    struct ingest_mapping *m = NULL; /* borrowed from e->map */
    struct ingest_rows rows = {0};
    const struct kusto_column *cols;
    size_t ncols;
    struct kusto_error err;
    struct sbuf b = {0};

    memset(&err, 0, sizeof(err));
    ctx_init(&c, req);
    if (ingest_req_parse(req, &c, &r) < 0) {
        goto fail;
    }
    if (!kusto_database_exists(e->k, db)) {
        emu_respond_error(req, &c, 404, "BadRequest_EntityNotFound", 1,
                          "database '%s' does not exist", db);
        goto fail;
    }
    if (kusto_table_schema(e->k, db, table, &cols, &ncols, &err) < 0) {
        respond_kerr(req, &c, &err);
        goto fail;
    }
    if (!kusto_streaming_enabled(e->k, db, table)) {
        emu_respond_error(req, &c, 400,
                          "BadRequest_StreamingIngestionPolicyNotEnabled", 1,
                          "Streaming ingestion policy is not enabled for table "
                          "'%s' in database '%s' (.alter database %s policy "
                          "streamingingestion enable)",
                          table, db, db);
        goto fail;
    }
    if (enc != NULL && enc[0] != '\0' && strcasecmp(enc, "identity") != 0) {
        if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "deflate") != 0) {
            emu_respond_error(req, &c, 400, "General_BadRequest", 1,
                              "Content-Encoding '%s' is not supported (gzip or "
                              "identity)",
                              enc);
            goto fail;
        }
        if (ingest_gunzip(body, blen, EMU_MAX_UNZIPPED, &plain, &plen, &err) <
            0) {
            respond_kerr(req, &c, &err);
            goto fail;
        }
        body = plain;
        blen = plen;
    }
    if (r.have_map && ingest_req_mapping(e, &r, &m, &err) < 0) {
        respond_kerr(req, &c, &err);
        goto fail;
    }
    /* the schema pointer lives until the next engine call: fetch it last */
    if (kusto_table_schema(e->k, db, table, &cols, &ncols, &err) < 0) {
        respond_kerr(req, &c, &err);
        goto fail;
    }
    if (ingest_parse(body, blen, r.fmt, cols, ncols, m, 0, &rows, &err) < 0) {
        respond_kerr(req, &c, &err);
        goto fail;
    }
    if (rows.nrows > 0 &&
        kusto_insert_rows(e->k, db, table, rows.values, rows.nrows,
                          emu_now_ticks(), &err) < 0) {
        respond_kerr(req, &c, &err);
        goto fail;
    }
    e->st.ingest_ok++;
    {
        struct table_count *tc = table_counter(e, db, table);
        if (tc != NULL) {
            tc->rows += rows.nrows;
        }
    }
    log_debug("adx-emulator", "ingest %s.%s: %zu rows (%s)", db, table,
              rows.nrows, r.fmtname);
    if (e->f.reset_count > 0) {
        /* the ambiguous case: applied, but the client never hears */
        e->f.reset_count--;
        e->st.fired_reset++;
        http_reset(req);
    } else {
        render_ingest_ok(&b, rows.nrows);
        emu_respond(req, &c, 200, &b);
    }
    goto out;
fail:
    e->st.ingest_failed++;
out:
    ingest_rows_release(&rows);
    free(plain);
}

static void delayed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void delayed_unlink(struct delayed *d)
{
    struct emu *e = d->e;

    if (d->prev != NULL) {
        d->prev->next = d->next;
    } else {
        e->delayed = d->next;
    }
    if (d->next != NULL) {
        d->next->prev = d->prev;
    }
}

static void ingest_maybe_late(struct emu *e, struct http_request *req);

static void on_delay_done(uv_timer_t *t)
{
    struct delayed *d = t->data;
    struct emu *e = d->e;
    struct http_request *req = d->req;
    enum delay_kind kind = d->kind;

    delayed_unlink(d);
    uv_close((uv_handle_t *)&d->timer, delayed_closed);
    if (kind == DELAY_LATE) {
        /* ADX does not stop because the client hung up: applied anyway */
        e->st.late_applied++;
        if (http_req_aborted(req)) {
            e->st.late_client_gone++;
        }
        ingest_process(e, req);
        return;
    }
    if (kind == DELAY_EXPIRE) {
        /* the request's servertimeout passed first: never applied */
        struct ctx c;

        e->st.late_expired++;
        e->st.ingest_failed++;
        ctx_init(&c, req);
        emu_respond_error(req, &c, 504, "General_Timeout", 0,
                          "the request ran past its servertimeout and was "
                          "cancelled (nothing applied)");
        return;
    }
    if (http_req_aborted(req)) {
        /* the client gave up while waiting: nothing was applied */
        http_respond(req, 499, NULL, 0, "", 0);
        e->st.ingest_failed++;
        return;
    }
    ingest_maybe_late(e, req);
}

/* Parks req on a timer; 0, or -ENOMEM (then the caller goes on). */
static int delay_start(struct emu *e, struct http_request *req,
                       enum delay_kind kind, uint64_t ms)
{
    struct delayed *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        return -ENOMEM;
    }
    d->e = e;
    d->req = req;
    d->kind = kind;
    d->timer.data = d;
    uv_timer_init(e->loop, &d->timer);
    uv_timer_start(&d->timer, on_delay_done, ms, 0);
    d->next = e->delayed;
    if (e->delayed != NULL) {
        e->delayed->prev = d;
    }
    e->delayed = d;
    return 0;
}

static double random_unit(void)
{
    uint64_t r;

    emu_random_bytes((unsigned char *)&r, sizeof(r));
    return (double)(r >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* The late-apply fault: a late_share of requests is applied only after a
 * delay in [late_min_ms, late_max_ms], answered (or not: the client may be
 * gone) afterwards. A request whose `servertimeout` is shorter than its
 * delay is cut off at the servertimeout, never applied, as ADX bounds a
 * request's life on the server. */
static void ingest_maybe_late(struct emu *e, struct http_request *req)
{
    const char *st = http_req_header(req, "servertimeout");
    uint64_t limit = 0;
    uint64_t delay;

    /* a KQL timespan, or the Java SDK 7.0.x's milliseconds ("600000") */
    if (st != NULL && ingest_parse_servertimeout(st, strlen(st), &limit) < 0) {
        struct ctx c;

        e->st.ingest_failed++;
        ctx_init(&c, req);
        emu_respond_error(req, &c, 400, "General_BadRequest", 1,
                          "invalid servertimeout '%.60s' (a timespan: "
                          "hh:mm:ss or 10m, or milliseconds)",
                          st);
        return;
    }
    if (e->f.late_share <= 0 || random_unit() >= e->f.late_share) {
        ingest_process(e, req);
        return;
    }
    delay = e->f.late_min_ms;
    if (e->f.late_max_ms > e->f.late_min_ms) {
        delay += (uint64_t)(random_unit() *
                            (double)(e->f.late_max_ms - e->f.late_min_ms + 1));
    }
    e->st.fired_late++;
    if (st != NULL && limit < delay) {
        if (delay_start(e, req, DELAY_EXPIRE, limit) == 0) {
            return;
        }
    } else if (delay_start(e, req, DELAY_LATE, delay) == 0) {
        return;
    }
    ingest_process(e, req); /* out of memory: not late after all */
}

/* Takes one throttle token; 0 when the request may go on. */
static int throttled(struct emu *e)
{
    uint64_t now;
    double add;

    if (e->f.throttle_rps <= 0) {
        return 0;
    }
    now = emu_now_ms();
    add = (double)(now - e->f.bucket_at_ms) * e->f.throttle_rps / 1000.0;
    e->f.bucket_at_ms = now;
    e->f.bucket += add;
    if (e->f.bucket > e->f.throttle_rps) {
        e->f.bucket = e->f.throttle_rps; /* a burst of one second */
    }
    if (e->f.bucket >= 1.0) {
        e->f.bucket -= 1.0;
        return 0;
    }
    return 1;
}

static void handle_ingest(struct emu *e, struct http_request *req,
                          struct ctx *c)
{
    e->st.ingest_requests++;
    if (throttled(e)) {
        int ra = e->f.retry_after_s > 0 ? e->f.retry_after_s
                                        : (int)ceil(1.0 / e->f.throttle_rps);
        e->st.fired_throttle++;
        e->st.ingest_failed++;
        snprintf(c->retry_after, sizeof(c->retry_after), "%d", ra < 1 ? 1 : ra);
        c->hdrs[c->nhdrs++] =
            (struct http_header){"Retry-After", c->retry_after};
        emu_respond_error(req, c, 429, "Throttling", 0,
                          "ThrottlingException: over %.3g requests/s",
                          e->f.throttle_rps);
        return;
    }
    if (e->f.fail_count > 0) {
        e->f.fail_count--;
        e->st.fired_fail++;
        e->st.ingest_failed++;
        if (e->f.fail_status == 429 || e->f.fail_status == 503) {
            snprintf(c->retry_after, sizeof(c->retry_after), "%d",
                     e->f.retry_after_s > 0 ? e->f.retry_after_s : 1);
            c->hdrs[c->nhdrs++] =
                (struct http_header){"Retry-After", c->retry_after};
        }
        emu_respond_error(req, c, e->f.fail_status, e->f.fail_code,
                          e->f.fail_permanent, "%s", e->f.fail_message);
        return;
    }
    if (e->f.latency_ms > 0 &&
        delay_start(e, req, DELAY_LATENCY, e->f.latency_ms) == 0) {
        e->st.fired_latency++;
        return;
    }
    ingest_maybe_late(e, req);
}

/* ---- routing ---- */

static int path_is(const char *path, const char *want)
{
    return strcmp(path, want) == 0;
}

/* "/{tenant}/oauth2/v2.0/token" or "/{tenant}/oauth2/token" (v1). */
static int token_path(const char *path, int *v1)
{
    const char *p;

    if (path[0] != '/') {
        return 0;
    }
    p = strchr(path + 1, '/');
    if (p == NULL || p == path + 1) {
        return 0;
    }
    if (strcmp(p, "/oauth2/v2.0/token") == 0) {
        *v1 = 0;
        return 1;
    }
    if (strcmp(p, "/oauth2/token") == 0) {
        *v1 = 1;
        return 1;
    }
    return 0;
}

static void handle(struct http_request *req, void *data)
{
    struct emu *e = data;
    struct ctx c;
    const char *path = http_req_path(req);
    const char *m = http_req_method(req);
    int is_post = strcmp(m, "POST") == 0;
    int is_get = strcmp(m, "GET") == 0;
    int v1 = 0;

    ctx_init(&c, req);
    if (strncmp(path, "/_emulator/", 11) == 0) {
        emu_handle_control(e, req, &c);
        return;
    }
    e->st.requests++;
    if (e->stopping) {
        emu_respond_error(req, &c, 503, "ServiceUnavailable", 0,
                          "the emulator is shutting down");
        return;
    }
    if (path_is(path, "/v1/rest/auth/metadata") && is_get) {
        handle_metadata(e, req, &c);
    } else if ((token_path(path, &v1) && is_post) ||
               (path_is(path, "/metadata/identity/oauth2/token") && is_get)) {
        if (e->f.token_down_until_ms > emu_now_ms()) {
            /* AAD's shape for an outage (token_down_ms) */
            e->st.fired_token++;
            http_respond_json(req, 503, c.hdrs, c.nhdrs,
                              "{\"error\":\"temporarily_unavailable\","
                              "\"error_description\":\"injected fault\"}");
        } else if (is_post) {
            handle_token_v2(e, req, &c, v1);
        } else {
            handle_imds(e, req, &c);
        }
    } else if (path_is(path, "/v1/rest/mgmt") && is_post) {
        if (!authorized(e, req)) {
            respond_unauthorized(e, req, &c);
        } else {
            handle_query(e, req, &c, API_MGMT);
        }
    } else if ((path_is(path, "/v1/rest/query") ||
                path_is(path, "/v2/rest/query")) &&
               (is_post || is_get)) {
        if (!authorized(e, req)) {
            respond_unauthorized(e, req, &c);
        } else {
            handle_query(e, req, &c,
                         path[2] == '2' ? API_QUERY_V2 : API_QUERY_V1);
        }
    } else if (strncmp(path, "/v1/rest/ingest/", 16) == 0 && is_post) {
        if (!authorized(e, req)) {
            e->st.ingest_requests++;
            e->st.ingest_failed++;
            respond_unauthorized(e, req, &c);
        } else {
            handle_ingest(e, req, &c);
        }
    } else {
        emu_respond_error(req, &c, 404, "General_NotFound", 1,
                          "no endpoint %s %s", m, path);
    }
}

/* ---- lifecycle and the command ---- */

static void on_signal(uv_signal_t *s, int signum)
{
    struct emu *e = s->data;

    (void)signum;
    if (e->stopping) {
        return;
    }
    e->stopping = 1;
    /* answer whoever waits out a latency fault, then close everything */
    while (e->delayed != NULL) {
        struct delayed *d = e->delayed;
        struct ctx c;
        delayed_unlink(d);
        uv_timer_stop(&d->timer);
        uv_close((uv_handle_t *)&d->timer, delayed_closed);
        ctx_init(&c, d->req);
        emu_respond_error(d->req, &c, 503, "ServiceUnavailable", 0,
                          "the emulator is shutting down");
    }
    dm_stop(e->dm);
    http_server_free(e->srv);
    e->srv = NULL;
    uv_close((uv_handle_t *)&e->sigterm, NULL);
    uv_close((uv_handle_t *)&e->sigint, NULL);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kadx adx-emulator [options]\n\n"
            "run a local Azure Data Explorer (streaming ingest, query, mgmt,\n"
            "AAD-style tokens, fault injection) for development and tests.\n"
            "Prints 'adx-emulator listening on http://HOST:PORT' when "
            "ready.\n\n"
            "options:\n"
            "  --listen HOST:PORT      address (default 127.0.0.1:0, a free "
            "port)\n"
            "  --database NAME         create this database (repeatable; "
            "default\n"
            "                          leaderboard)\n"
            "  --data FILE             keep the data in this SQLite file "
            "(default:\n"
            "                          in memory)\n"
            "  --auth none|token       token: query, mgmt and ingest need a "
            "bearer\n"
            "                          token (default none)\n"
            "  --client-id ID          the client id the token endpoint "
            "accepts\n"
            "  --client-secret SECRET  the secret the token endpoint "
            "accepts\n"
            "  --static-token TOKEN    a bearer token that is always "
            "accepted\n"
            "  --token-lifetime SECS   lifetime of issued tokens (default "
            "3600)\n"
            "  --max-body BYTES        request body cap (default 4194304, "
            "ADX's\n"
            "                          streaming limit)\n"
            "  --count-only            accept and count rows, do not store "
            "them\n"
            "  --storage-blob URL      queued ingestion through Azure "
            "Storage (Azurite):\n"
            "  --storage-queue URL     the account's blob, queue and table "
            "endpoints,\n"
            "  --storage-table URL     e.g. "
            "http://127.0.0.1:10000/devstoreaccount1\n"
            "  --storage-public-blob URL, --storage-public-queue URL,\n"
            "  --storage-public-table URL\n"
            "                          the bases handed out to clients "
            "instead (e.g. a\n"
            "                          proxy in front of Azurite)\n"
            "  --storage-account NAME  (default devstoreaccount1)\n"
            "  --storage-key KEY       base64 (default Azurite's "
            "well-known key)\n"
            "  --sas-lifetime SECS     SAS validity (default 7200)\n"
            "  -h, --help              this help\n\n"
            "control (loopback only, no auth): POST /_emulator/faults, GET "
            "/_emulator/faults,\n"
            "GET /_emulator/stats, POST /_emulator/reset; see "
            "emulators/EMULATOR.md\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_args(struct emu *e, int argc, char **argv)
{
    static const char cmd[] = "adx-emulator";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;

#define NEED_VALUE()                                                           \
    do {                                                                       \
        if (v == NULL) {                                                       \
            return cli_usage_error(cmd, "option '%s' needs a value", a);       \
        }                                                                      \
        i++;                                                                   \
    } while (0)
        if (strcmp(a, "--listen") == 0) {
            NEED_VALUE();
            if (strlen(v) >= 200) {
                return cli_usage_error(cmd, "--listen address too long");
            }
            snprintf(e->listen, sizeof(e->listen), "%s", v);
        } else if (strcmp(a, "--database") == 0) {
            NEED_VALUE();
            if (e->ndatabases >= EMU_MAX_DATABASES) {
                return cli_usage_error(cmd, "at most %d --database options",
                                       EMU_MAX_DATABASES);
            }
            e->databases[e->ndatabases++] = v;
        } else if (strcmp(a, "--data") == 0) {
            NEED_VALUE();
            e->data_path = v;
        } else if (strcmp(a, "--auth") == 0) {
            NEED_VALUE();
            if (strcmp(v, "none") == 0) {
                e->auth_token = 0;
            } else if (strcmp(v, "token") == 0) {
                e->auth_token = 1;
            } else {
                return cli_usage_error(cmd, "bad --auth '%s' (none, token)", v);
            }
        } else if (strcmp(a, "--client-id") == 0) {
            NEED_VALUE();
            e->client_id = v;
        } else if (strcmp(a, "--client-secret") == 0) {
            NEED_VALUE();
            e->client_secret = v;
            log_add_secret(v);
        } else if (strcmp(a, "--static-token") == 0) {
            NEED_VALUE();
            e->static_token = v;
            log_add_secret(v);
        } else if (strcmp(a, "--token-lifetime") == 0) {
            NEED_VALUE();
            if (parse_long(v, 1, 86400 * 365, &n) < 0) {
                return cli_usage_error(cmd, "bad --token-lifetime '%s'", v);
            }
            e->token_lifetime_s = n;
        } else if (strcmp(a, "--max-body") == 0) {
            NEED_VALUE();
            if (parse_long(v, 1024, 1L << 30, &n) < 0) {
                return cli_usage_error(cmd, "bad --max-body '%s'", v);
            }
            e->max_body = (size_t)n;
        } else if (strcmp(a, "--count-only") == 0) {
            e->count_only = 1;
        } else if (strcmp(a, "--storage-blob") == 0) {
            NEED_VALUE();
            e->dmc.blob_url = v;
        } else if (strcmp(a, "--storage-queue") == 0) {
            NEED_VALUE();
            e->dmc.queue_url = v;
        } else if (strcmp(a, "--storage-table") == 0) {
            NEED_VALUE();
            e->dmc.table_url = v;
        } else if (strcmp(a, "--storage-public-blob") == 0) {
            NEED_VALUE();
            e->dmc.public_blob_url = v;
        } else if (strcmp(a, "--storage-public-queue") == 0) {
            NEED_VALUE();
            e->dmc.public_queue_url = v;
        } else if (strcmp(a, "--storage-public-table") == 0) {
            NEED_VALUE();
            e->dmc.public_table_url = v;
        } else if (strcmp(a, "--storage-account") == 0) {
            NEED_VALUE();
            e->dmc.account = v;
        } else if (strcmp(a, "--storage-key") == 0) {
            NEED_VALUE();
            e->dmc.key_b64 = v;
            log_add_secret(v);
        } else if (strcmp(a, "--sas-lifetime") == 0) {
            NEED_VALUE();
            if (parse_long(v, 1, 86400 * 365, &n) < 0) {
                return cli_usage_error(cmd, "bad --sas-lifetime '%s'", v);
            }
            e->dmc.sas_lifetime_s = n;
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
#undef NEED_VALUE
    }
    return 0;
}

int cmd_adx_emulator(int argc, char **argv)
{
    struct emu e;
    uv_loop_t loop;
    struct http_server_config cfg;
    char err[512];
    int rc;
    int exit_code = 1;

    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    memset(&e, 0, sizeof(e));
    snprintf(e.listen, sizeof(e.listen), "127.0.0.1:0");
    e.token_lifetime_s = 3600;
    e.max_body = 4u * 1024u * 1024u;
    rc = parse_args(&e, argc, argv);
    if (rc != 0) {
        return rc;
    }
    if (e.ndatabases == 0) {
        e.databases[e.ndatabases++] = "leaderboard";
    }
    emu_faults_clear(&e);
    e.tokens = calloc(EMU_MAX_TOKENS, sizeof(*e.tokens));
    e.tables = calloc(EMU_MAX_TABLES, sizeof(*e.tables));
    if (e.tokens == NULL || e.tables == NULL) {
        fprintf(stderr, "kadx adx-emulator: out of memory\n");
        goto out_mem;
    }
    e.k = kusto_open(e.data_path, err, sizeof(err));
    if (e.k == NULL) {
        log_error("adx-emulator", "cannot open the engine: %s", err);
        goto out_mem;
    }
    kusto_set_count_only(e.k, e.count_only);
    for (size_t i = 0; i < e.ndatabases; i++) {
        rc = kusto_create_database(e.k, e.databases[i]);
        if (rc < 0) {
            log_error("adx-emulator", "cannot create database '%s': %s",
                      e.databases[i], strerror(-rc));
            goto out_engine;
        }
    }
    if (uv_loop_init(&loop) != 0) {
        goto out_engine;
    }
    e.loop = &loop;
    http_server_config_default(&cfg);
    cfg.max_body_bytes = e.max_body;
    cfg.error_body = render_server_error_body;
    cfg.error_data = &e;
    e.srv = http_server_new(&loop, &cfg, handle, &e);
    if (e.srv == NULL) {
        goto out_loop;
    }
    rc = http_server_listen(e.srv, e.listen, err, sizeof(err));
    if (rc < 0) {
        log_error("adx-emulator", "%s", err);
        http_server_free(e.srv);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out_loop;
    }
    {
        /* report the bound port in the listen address we print */
        char host[200];
        const char *colon = strrchr(e.listen, ':');
        size_t hl = colon != NULL ? (size_t)(colon - e.listen) : 0;
        snprintf(host, sizeof(host), "%.*s", (int)hl, e.listen);
        snprintf(e.listen, sizeof(e.listen), "%s:%d", host,
                 http_server_port(e.srv));
    }
    if (e.dmc.blob_url != NULL || e.dmc.queue_url != NULL ||
        e.dmc.table_url != NULL) {
        e.dm = dm_start(&loop, e.k, &e.dmc, err, sizeof(err));
        if (e.dm == NULL) {
            log_error("adx-emulator", "queued ingestion: %s", err);
            http_server_free(e.srv);
            uv_run(&loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
    }
    uv_signal_init(&loop, &e.sigterm);
    uv_signal_init(&loop, &e.sigint);
    e.sigterm.data = &e;
    e.sigint.data = &e;
    uv_signal_start(&e.sigterm, on_signal, SIGTERM);
    uv_signal_start(&e.sigint, on_signal, SIGINT);
    printf("adx-emulator listening on http://%s\n", e.listen);
    fflush(stdout);
    log_info("adx-emulator", "serving database%s %s%s (auth %s%s) on http://%s",
             e.ndatabases > 1 ? "s" : "", e.databases[0],
             e.ndatabases > 1 ? " and more" : "",
             e.auth_token ? "token" : "none",
             e.count_only ? ", count-only" : "", e.listen);
    uv_run(&loop, UV_RUN_DEFAULT);
    exit_code = 0;
out_loop:
    uv_loop_close(&loop);
    dm_free(e.dm);
out_engine:
    kusto_close(e.k);
out_mem:
    ingest_mapping_free(e.map);
    free(e.map_json);
    free(e.tokens);
    free(e.tables);
    return exit_code;
}
