/*
 * render.c - the ADX emulator's response rendering (render.h): JSON
 * string literals, values in the v1 (one table per result) and v2 (frames)
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

/* A JSON string literal, quotes included. */
void rb_json(struct sbuf *b, const char *s)
{
    const char *run = s;

    sbuf_add(b, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\' || ch < 0x20) {
            char esc[8];
            sbuf_add(b, run, (size_t)(s - run));
            if (ch == '"' || ch == '\\') {
                esc[0] = '\\';
                esc[1] = (char)ch;
                sbuf_add(b, esc, 2);
            } else if (ch == '\n') {
                sbuf_add(b, "\\n", 2);
            } else if (ch == '\r') {
                sbuf_add(b, "\\r", 2);
            } else if (ch == '\t') {
                sbuf_add(b, "\\t", 2);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", ch);
                sbuf_add(b, esc, 6);
            }
            run = s + 1;
        }
    }
    sbuf_add(b, run, (size_t)(s - run));
    sbuf_add(b, "\"", 1);
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

static void render_real(struct sbuf *b, double r)
{
    if (isnan(r)) {
        sbuf_adds(b, "\"NaN\"");
    } else if (isinf(r)) {
        sbuf_adds(b, r > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else if (r == floor(r) && fabs(r) < 1e15) {
        sbuf_printf(b, "%.1f", r);
    } else {
        sbuf_printf(b, "%.17g", r);
    }
}

/* v2 embeds dynamic values as JSON; v1 sends them as JSON text strings. */
static void render_value(struct sbuf *b, const struct kusto_value *v, int v2)
{
    char tmp[64];

    if (v->is_null) {
        sbuf_adds(b, "null");
        return;
    }
    switch (v->type) {
    case KT_BOOL:
        sbuf_adds(b, v->i ? "true" : "false");
        break;
    case KT_INT:
    case KT_LONG:
        sbuf_printf(b, "%" PRId64, v->i);
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
            sbuf_adds(b, "null");
        } else if (v2) {
            cJSON *j = cJSON_Parse(v->s);
            if (j != NULL) {
                cJSON_Delete(j);
                sbuf_adds(b, v->s);
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

static void render_columns(struct sbuf *b, const struct kusto_table *t, int v2)
{
    sbuf_adds(b, "\"Columns\":[");
    for (size_t c = 0; c < t->ncols; c++) {
        if (c > 0) {
            sbuf_add(b, ",", 1);
        }
        sbuf_adds(b, "{\"ColumnName\":");
        rb_json(b, t->cols[c].name);
        if (!v2) {
            sbuf_adds(b, ",\"DataType\":");
            rb_json(b, kusto_type_v1_name(t->cols[c].type));
        }
        sbuf_adds(b, ",\"ColumnType\":");
        rb_json(b, kusto_type_name(t->cols[c].type));
        sbuf_add(b, "}", 1);
    }
    sbuf_add(b, "]", 1);
}

static void render_rows(struct sbuf *b, const struct kusto_table *t, int v2)
{
    sbuf_adds(b, "\"Rows\":[");
    for (size_t r = 0; r < t->nrows; r++) {
        sbuf_adds(b, r > 0 ? ",[" : "[");
        for (size_t c = 0; c < t->ncols; c++) {
            if (c > 0) {
                sbuf_add(b, ",", 1);
            }
            render_value(b, &t->cells[r * t->ncols + c], v2);
        }
        sbuf_add(b, "]", 1);
    }
    sbuf_add(b, "]", 1);
}

void render_v1(struct sbuf *b, const struct kusto_result *res)
{
    sbuf_adds(b, "{\"Tables\":[");
    for (size_t i = 0; i < res->ntables; i++) {
        const struct kusto_table *t = &res->tables[i];
        char name[32];
        if (i > 0) {
            sbuf_add(b, ",", 1);
        }
        snprintf(name, sizeof(name), "Table_%zu", i);
        sbuf_adds(b, "{\"TableName\":");
        rb_json(b, t->name != NULL ? t->name : name);
        sbuf_add(b, ",", 1);
        render_columns(b, t, 0);
        sbuf_add(b, ",", 1);
        render_rows(b, t, 0);
        sbuf_add(b, "}", 1);
    }
    sbuf_adds(b, "]}");
}

void render_v2(struct sbuf *b, const struct kusto_result *res, const char *crid,
               const char *aid)
{
    char ts[64];
    size_t id = 0;

    sbuf_adds(b, "[{\"FrameType\":\"DataSetHeader\",\"IsProgressive\":false,"
                 "\"Version\":\"v2.0\",\"IsFragmented\":false,"
                 "\"ErrorReportingPlacement\":\"EndOfTable\"}");
    for (size_t i = 0; i < res->ntables; i++, id++) {
        const struct kusto_table *t = &res->tables[i];
        sbuf_printf(b,
                    ",{\"FrameType\":\"DataTable\",\"TableId\":%zu,"
                    "\"TableKind\":\"PrimaryResult\",\"TableName\":"
                    "\"PrimaryResult\",",
                    id);
        render_columns(b, t, 1);
        sbuf_add(b, ",", 1);
        render_rows(b, t, 1);
        sbuf_add(b, "}", 1);
    }
    format_datetime(emu_now_ticks(), ts, sizeof(ts));
    sbuf_printf(
        b,
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
    sbuf_printf(b,
                ",\"%s\",\"%s\",\"%s\",4,\"Info\",0,\"S_OK (0)\",4,"
                "\"QueryInfo\",\"{\\\"Count\\\":1,\\\"Text\\\":\\\"Query "
                "completed successfully\\\"}\"]]}",
                aid, aid, aid);
    sbuf_adds(b, ",{\"FrameType\":\"DataSetCompletion\",\"HasErrors\":false,"
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
void render_error(struct sbuf *b, int status, const char *code,
                  const char *detail, int permanent, const char *crid,
                  const char *aid)
{
    char ts[64];

    format_datetime(emu_now_ticks(), ts, sizeof(ts));
    sbuf_adds(b, "{\"error\":{\"code\":");
    rb_json(b, code);
    sbuf_adds(b, ",\"message\":");
    rb_json(b, error_message_for(status));
    sbuf_adds(b, ",\"@type\":");
    rb_json(b, error_type_for(status, code));
    sbuf_adds(b, ",\"@message\":");
    rb_json(b, detail);
    sbuf_printf(b,
                ",\"@failureCode\":%d,\"@context\":{\"timestamp\":\"%s\","
                "\"serviceAlias\":\"KADX-EMULATOR\",\"clientRequestId\":",
                status, ts);
    rb_json(b, crid != NULL ? crid : "");
    sbuf_adds(b, ",\"activityId\":");
    rb_json(b, aid != NULL ? aid : "");
    sbuf_printf(b, "},\"@permanent\":%s}}", permanent ? "true" : "false");
}

/* For the errors the HTTP server answers by itself (400, 408, 413, 431). */
size_t render_server_error_body(int status, const char *message, char *buf,
                                size_t len, void *data)
{
    struct sbuf b = {0};
    const char *code = status == 413   ? "Stream_InputStreamTooLarge"
                       : status == 431 ? "BadRequest_HeadersTooLarge"
                       : status == 408 ? "RequestTimeout"
                       : status == 503 ? "ServiceUnavailable"
                                       : "General_BadRequest";
    size_t n;

    (void)data;
    render_error(&b, status, code, message, status != 408 && status != 503,
                 NULL, NULL);
    if (b.err || b.p == NULL) {
        free(b.p);
        return http_error_body_default(status, message, buf, len, NULL);
    }
    n = b.len < len ? b.len : len - 1;
    memcpy(buf, b.p, n);
    buf[n] = '\0';
    free(b.p);
    return n;
}
