/*
 * render.c - the ADX emulator's response rendering (render.h): the
 * response buffer, values in the v1 (one table per result) and v2 (frames)
 * shapes, and the OneApi error body with its exception type and message
 * per status. No state; called from the emulator's loop thread.
 */
#include "emulators/render.h"

#include "emulators/emu.h"

#include "admin/http.h"

#include <cjson/cJSON.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICKS_PER_SEC 10000000LL
#define TICKS_PER_DAY (86400LL * TICKS_PER_SEC)

/* ---- a growing output buffer ---- */

void rb_put(struct rbuf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        char *np;
        while (ncap < b->len + n + 1) {
            ncap *= 2;
        }
        np = realloc(b->p, ncap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void rb_str(struct rbuf *b, const char *s)
{
    rb_put(b, s, strlen(s));
}

void rb_printf(struct rbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof(tmp)) {
        rb_put(b, tmp, (size_t)n);
        return;
    }
    {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            b->oom = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        rb_put(b, big, (size_t)n);
        free(big);
    }
}

/* A JSON string literal, quotes included. */
void rb_json(struct rbuf *b, const char *s)
{
    const char *run = s;

    rb_put(b, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\' || ch < 0x20) {
            char esc[8];
            rb_put(b, run, (size_t)(s - run));
            if (ch == '"' || ch == '\\') {
                esc[0] = '\\';
                esc[1] = (char)ch;
                rb_put(b, esc, 2);
            } else if (ch == '\n') {
                rb_put(b, "\\n", 2);
            } else if (ch == '\r') {
                rb_put(b, "\\r", 2);
            } else if (ch == '\t') {
                rb_put(b, "\\t", 2);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", ch);
                rb_put(b, esc, 6);
            }
            run = s + 1;
        }
    }
    rb_put(b, run, (size_t)(s - run));
    rb_put(b, "\"", 1);
}

/* ---- value rendering ---- */

/* 7 fractional digits with the trailing zeros cut, or nothing. */
static void frac_str(int64_t frac, char out[10])
{
    int n = 7;

    if (frac == 0) {
        out[0] = '\0';
        return;
    }
    snprintf(out, 10, ".%07" PRId64, frac);
    while (n > 0 && out[n] == '0') {
        out[n--] = '\0';
    }
}

/* "2024-05-01T10:20:30.5Z" */
static void format_datetime(int64_t ticks, char *out, size_t len)
{
    int64_t days = ticks / TICKS_PER_DAY;
    int64_t rem = ticks % TICKS_PER_DAY;
    int64_t y;
    unsigned m;
    unsigned d;
    int64_t secs;
    char frac[10];

    if (rem < 0) {
        rem += TICKS_PER_DAY;
        days--;
    }
    emu_civil_from_days(days, &y, &m, &d);
    secs = rem / TICKS_PER_SEC;
    frac_str(rem % TICKS_PER_SEC, frac);
    snprintf(out, len, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d%sZ", y, m, d,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), frac);
}

/* "[-][d.]hh:mm:ss[.fffffff]" */
static void format_timespan(int64_t ticks, char *out, size_t len)
{
    const char *sign = "";
    uint64_t t;
    uint64_t secs;
    uint64_t days;
    char frac[10];

    if (ticks < 0) {
        sign = "-";
        t = (uint64_t)(-(ticks + 1)) + 1;
    } else {
        t = (uint64_t)ticks;
    }
    secs = t / TICKS_PER_SEC;
    days = secs / 86400;
    frac_str((int64_t)(t % TICKS_PER_SEC), frac);
    if (days > 0) {
        snprintf(out, len, "%s%" PRIu64 ".%02d:%02d:%02d%s", sign, days,
                 (int)(secs / 3600 % 24), (int)(secs / 60 % 60),
                 (int)(secs % 60), frac);
    } else {
        snprintf(out, len, "%s%02d:%02d:%02d%s", sign, (int)(secs / 3600),
                 (int)(secs / 60 % 60), (int)(secs % 60), frac);
    }
}

static void render_real(struct rbuf *b, double r)
{
    if (isnan(r)) {
        rb_str(b, "\"NaN\"");
    } else if (isinf(r)) {
        rb_str(b, r > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else if (r == floor(r) && fabs(r) < 1e15) {
        rb_printf(b, "%.1f", r);
    } else {
        rb_printf(b, "%.17g", r);
    }
}

/* v2 embeds dynamic values as JSON; v1 sends them as JSON text strings. */
static void render_value(struct rbuf *b, const struct kusto_value *v, int v2)
{
    char tmp[64];

    if (v->is_null) {
        rb_str(b, "null");
        return;
    }
    switch (v->type) {
    case KT_BOOL:
        rb_str(b, v->i ? "true" : "false");
        break;
    case KT_INT:
    case KT_LONG:
        rb_printf(b, "%" PRId64, v->i);
        break;
    case KT_REAL:
        render_real(b, v->r);
        break;
    case KT_DECIMAL:
        if (v->s != NULL) {
            rb_json(b, v->s);
        } else {
            snprintf(tmp, sizeof(tmp), "%.17g", v->r);
            rb_json(b, tmp);
        }
        break;
    case KT_DATETIME:
        format_datetime(v->i, tmp, sizeof(tmp));
        rb_json(b, tmp);
        break;
    case KT_TIMESPAN:
        format_timespan(v->i, tmp, sizeof(tmp));
        rb_json(b, tmp);
        break;
    case KT_DYNAMIC:
        if (v->s == NULL) {
            rb_str(b, "null");
        } else if (v2) {
            cJSON *j = cJSON_Parse(v->s);
            if (j != NULL) {
                cJSON_Delete(j);
                rb_str(b, v->s);
            } else {
                rb_json(b, v->s);
            }
        } else {
            rb_json(b, v->s);
        }
        break;
    case KT_STRING:
    case KT_GUID:
    default:
        rb_json(b, v->s != NULL ? v->s : "");
        break;
    }
}

static void render_columns(struct rbuf *b, const struct kusto_table *t, int v2)
{
    rb_str(b, "\"Columns\":[");
    for (size_t c = 0; c < t->ncols; c++) {
        if (c > 0) {
            rb_put(b, ",", 1);
        }
        rb_str(b, "{\"ColumnName\":");
        rb_json(b, t->cols[c].name);
        if (!v2) {
            rb_str(b, ",\"DataType\":");
            rb_json(b, kusto_type_v1_name(t->cols[c].type));
        }
        rb_str(b, ",\"ColumnType\":");
        rb_json(b, kusto_type_name(t->cols[c].type));
        rb_put(b, "}", 1);
    }
    rb_put(b, "]", 1);
}

static void render_rows(struct rbuf *b, const struct kusto_table *t, int v2)
{
    rb_str(b, "\"Rows\":[");
    for (size_t r = 0; r < t->nrows; r++) {
        rb_str(b, r > 0 ? ",[" : "[");
        for (size_t c = 0; c < t->ncols; c++) {
            if (c > 0) {
                rb_put(b, ",", 1);
            }
            render_value(b, &t->cells[r * t->ncols + c], v2);
        }
        rb_put(b, "]", 1);
    }
    rb_put(b, "]", 1);
}

void render_v1(struct rbuf *b, const struct kusto_result *res)
{
    rb_str(b, "{\"Tables\":[");
    for (size_t i = 0; i < res->ntables; i++) {
        const struct kusto_table *t = &res->tables[i];
        char name[32];
        if (i > 0) {
            rb_put(b, ",", 1);
        }
        snprintf(name, sizeof(name), "Table_%zu", i);
        rb_str(b, "{\"TableName\":");
        rb_json(b, t->name != NULL ? t->name : name);
        rb_put(b, ",", 1);
        render_columns(b, t, 0);
        rb_put(b, ",", 1);
        render_rows(b, t, 0);
        rb_put(b, "}", 1);
    }
    rb_str(b, "]}");
}

void render_v2(struct rbuf *b, const struct kusto_result *res, const char *crid,
               const char *aid)
{
    char ts[64];
    size_t id = 0;

    rb_str(b, "[{\"FrameType\":\"DataSetHeader\",\"IsProgressive\":false,"
              "\"Version\":\"v2.0\",\"IsFragmented\":false,"
              "\"ErrorReportingPlacement\":\"EndOfTable\"}");
    for (size_t i = 0; i < res->ntables; i++, id++) {
        const struct kusto_table *t = &res->tables[i];
        rb_printf(b,
                  ",{\"FrameType\":\"DataTable\",\"TableId\":%zu,"
                  "\"TableKind\":\"PrimaryResult\",\"TableName\":"
                  "\"PrimaryResult\",",
                  id);
        render_columns(b, t, 1);
        rb_put(b, ",", 1);
        render_rows(b, t, 1);
        rb_put(b, "}", 1);
    }
    format_datetime(emu_now_ticks(), ts, sizeof(ts));
    rb_printf(b,
              ",{\"FrameType\":\"DataTable\",\"TableId\":%zu,\"TableKind\":"
              "\"QueryCompletionInformation\",\"TableName\":"
              "\"QueryCompletionInformation\",\"Columns\":["
              "{\"ColumnName\":\"Timestamp\",\"ColumnType\":\"datetime\"},"
              "{\"ColumnName\":\"ClientRequestId\",\"ColumnType\":\"string\"},"
              "{\"ColumnName\":\"ActivityId\",\"ColumnType\":\"guid\"},"
              "{\"ColumnName\":\"SubActivityId\",\"ColumnType\":\"guid\"},"
              "{\"ColumnName\":\"ParentActivityId\",\"ColumnType\":\"guid\"},"
              "{\"ColumnName\":\"Level\",\"ColumnType\":\"int\"},"
              "{\"ColumnName\":\"LevelName\",\"ColumnType\":\"string\"},"
              "{\"ColumnName\":\"StatusCode\",\"ColumnType\":\"int\"},"
              "{\"ColumnName\":\"StatusCodeName\",\"ColumnType\":\"string\"},"
              "{\"ColumnName\":\"EventType\",\"ColumnType\":\"int\"},"
              "{\"ColumnName\":\"EventTypeName\",\"ColumnType\":\"string\"},"
              "{\"ColumnName\":\"Payload\",\"ColumnType\":\"string\"}],"
              "\"Rows\":[[\"%s\",",
              id, ts);
    rb_json(b, crid);
    rb_printf(b,
              ",\"%s\",\"%s\",\"%s\",4,\"Info\",0,\"S_OK (0)\",4,"
              "\"QueryInfo\",\"{\\\"Count\\\":1,\\\"Text\\\":\\\"Query "
              "completed successfully\\\"}\"]]}",
              aid, aid, aid);
    rb_str(b, ",{\"FrameType\":\"DataSetCompletion\",\"HasErrors\":false,"
              "\"Cancelled\":false}]");
}

/* ---- errors ---- */

static const char *error_type_for(int status, const char *code)
{
    if (strstr(code, "StreamingIngestionPolicyNotEnabled") != NULL) {
        return "Kusto.DataNode.Exceptions."
               "StreamingIngestionPolicyNotEnabledException";
    }
    if (strcmp(code, "Throttling") == 0 || status == 429) {
        return "Kusto.DataNode.Exceptions.ThrottlingException";
    }
    switch (status) {
    case 400:
        return "Kusto.Data.Exceptions.KustoBadRequestException";
    case 401:
        return "Kusto.Common.Svc.Exceptions.UnauthorizedOperationException";
    case 403:
        return "Kusto.Common.Svc.Exceptions.ForbiddenOperationException";
    case 404:
        return "Kusto.Data.Exceptions.EntityNotFoundException";
    case 413:
        return "Kusto.Data.Exceptions.KustoRequestPayloadTooLargeException";
    default:
        return "Kusto.Data.Exceptions.KustoServiceException";
    }
}

static const char *error_message_for(int status)
{
    switch (status) {
    case 400:
        return "Request is invalid and cannot be executed.";
    case 401:
        return "Unauthorized: the request has no valid bearer token.";
    case 403:
        return "Forbidden.";
    case 404:
        return "Entity was not found.";
    case 413:
        return "Request payload is too large.";
    case 429:
        return "Request was throttled.";
    default:
        return "Service error.";
    }
}

/* The OneApi error body (adx-protocol.md section 1). */
void render_error(struct rbuf *b, int status, const char *code,
                  const char *detail, int permanent, const char *crid,
                  const char *aid)
{
    char ts[64];

    format_datetime(emu_now_ticks(), ts, sizeof(ts));
    rb_str(b, "{\"error\":{\"code\":");
    rb_json(b, code);
    rb_str(b, ",\"message\":");
    rb_json(b, error_message_for(status));
    rb_str(b, ",\"@type\":");
    rb_json(b, error_type_for(status, code));
    rb_str(b, ",\"@message\":");
    rb_json(b, detail);
    rb_printf(b,
              ",\"@failureCode\":%d,\"@context\":{\"timestamp\":\"%s\","
              "\"serviceAlias\":\"KADX-EMULATOR\",\"clientRequestId\":",
              status, ts);
    rb_json(b, crid != NULL ? crid : "");
    rb_str(b, ",\"activityId\":");
    rb_json(b, aid != NULL ? aid : "");
    rb_printf(b, "},\"@permanent\":%s}}", permanent ? "true" : "false");
}

/* For the errors the HTTP server answers by itself (400, 408, 413, 431). */
size_t render_server_error_body(int status, const char *message, char *buf,
                                size_t len, void *data)
{
    struct rbuf b = {0};
    const char *code = status == 413   ? "Stream_InputStreamTooLarge"
                       : status == 431 ? "BadRequest_HeadersTooLarge"
                       : status == 408 ? "RequestTimeout"
                       : status == 503 ? "ServiceUnavailable"
                                       : "General_BadRequest";
    size_t n;

    (void)data;
    render_error(&b, status, code, message, status != 408 && status != 503,
                 NULL, NULL);
    if (b.oom || b.p == NULL) {
        free(b.p);
        return http_error_body_default(status, message, buf, len, NULL);
    }
    n = b.len < len ? b.len : len - 1;
    memcpy(buf, b.p, n);
    buf[n] = '\0';
    free(b.p);
    return n;
}
