/*
 * ingest.c - ingest bodies to rows for the ADX emulator (see ingest.h).
 *
 * JSON records are parsed with cJSON one at a time (a JSON-lines line, or
 * one value of a multijson stream; a top-level array in multijson is a list
 * of records), then each mapping entry walks its path from the record,
 * applies its transform and converts the value to the column's type. CSV is
 * RFC 4180 (quotes, doubled quotes, CRLF or LF) with fields by position.
 *
 * Conversions follow ADX's rule for ingestion: a value that cannot be
 * converted to the column's type is stored as null, it does not fail the
 * request. A record that is not valid for its format (bad JSON, a CSV
 * record with the wrong number of fields) fails the whole request with a
 * permanent 400, so a sender can find the bad record (DESIGN.md INV-6).
 *
 * Known limit: cJSON keeps numbers as doubles, so integers beyond +-2^53
 * lose precision on the JSON path (CSV is exact).
 */
#include "emulators/ingest.h"
#include "emulators/ingest_value.h"

#include <cjson/cJSON.h>

#include "gateway/avro.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

static void set_err(struct kusto_error *err, int status, int permanent,
                    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_err(struct kusto_error *err, int status, int permanent,
                    const char *code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return;
    }
    err->status = status;
    err->permanent = permanent;
    snprintf(err->code, sizeof(err->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

int ingest_format_parse(const char *s, enum ingest_format *out)
{
    if (strcasecmp(s, "json") == 0 || strcasecmp(s, "singlejson") == 0) {
        *out = INGEST_JSON;
        return 0;
    }
    if (strcasecmp(s, "multijson") == 0) {
        *out = INGEST_MULTIJSON;
        return 0;
    }
    if (strcasecmp(s, "csv") == 0) {
        *out = INGEST_CSV;
        return 0;
    }
    if (strcasecmp(s, "avro") == 0 || strcasecmp(s, "apacheavro") == 0) {
        *out = INGEST_AVRO;
        return 0;
    }
    return -ENOTSUP;
}

/* ---- mappings ---- */

static void entry_release(struct ingest_mapping_entry *e)
{
    free(e->column);
    free(e->const_value);
    for (size_t i = 0; i < e->nsteps; i++) {
        free(e->steps[i].key);
    }
    free(e->steps);
}

void ingest_mapping_free(struct ingest_mapping *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->n; i++) {
        entry_release(&m->e[i]);
    }
    free(m->e);
    free(m);
}

static int add_step(struct ingest_mapping_entry *e, const char *key,
                    size_t klen, long index)
{
    struct ingest_step *ns = realloc(e->steps, (e->nsteps + 1) * sizeof(*ns));

    if (ns == NULL) {
        return -ENOMEM;
    }
    e->steps = ns;
    ns[e->nsteps].index = index;
    ns[e->nsteps].key = NULL;
    if (key != NULL) {
        ns[e->nsteps].key = strndup(key, klen);
        if (ns[e->nsteps].key == NULL) {
            return -ENOMEM;
        }
    }
    e->nsteps++;
    return 0;
}

/* Parses a JSONPath ("$", "$.a.b", "$['x y']", "$.a[0]") into steps. */
static int parse_path(struct ingest_mapping_entry *e, const char *p)
{
    size_t i = 1;
    size_t len = strlen(p);

    if (len == 0 || p[0] != '$') {
        return -EINVAL;
    }
    while (i < len) {
        if (p[i] == '.') {
            size_t start = ++i;
            while (i < len && p[i] != '.' && p[i] != '[') {
                i++;
            }
            if (i == start) {
                return -EINVAL;
            }
            if (add_step(e, p + start, i - start, 0) < 0) {
                return -ENOMEM;
            }
        } else if (p[i] == '[') {
            i++;
            if (i < len && (p[i] == '\'' || p[i] == '"')) {
                char q = p[i++];
                char buf[512];
                size_t bl = 0;
                while (i < len && p[i] != q) {
                    if (p[i] == '\\' && i + 1 < len) {
                        i++;
                    }
                    if (bl + 1 >= sizeof(buf)) {
                        return -EINVAL;
                    }
                    buf[bl++] = p[i++];
                }
                if (i + 1 >= len || p[i] != q || p[i + 1] != ']') {
                    return -EINVAL;
                }
                i += 2;
                if (add_step(e, buf, bl, 0) < 0) {
                    return -ENOMEM;
                }
            } else {
                long idx = 0;
                size_t start = i;
                while (i < len && isdigit((unsigned char)p[i])) {
                    if (idx > 100000000) {
                        return -EINVAL;
                    }
                    idx = idx * 10 + (p[i] - '0');
                    i++;
                }
                if (i == start || i >= len || p[i] != ']') {
                    return -EINVAL;
                }
                i++;
                if (add_step(e, NULL, 0, idx) < 0) {
                    return -ENOMEM;
                }
            }
        } else {
            return -EINVAL;
        }
    }
    return 0;
}

static const struct {
    const char *name;
    enum ingest_transform tr;
} transforms[] = {
    {"DateTimeFromUnixSeconds", INGEST_TR_UNIX_SECONDS},
    {"DateTimeFromUnixMilliseconds", INGEST_TR_UNIX_MILLISECONDS},
    {"DateTimeFromUnixMicroseconds", INGEST_TR_UNIX_MICROSECONDS},
    {"DateTimeFromUnixNanoseconds", INGEST_TR_UNIX_NANOSECONDS},
    {"PropertyBagArrayToDictionary", INGEST_TR_PROPERTY_BAG_ARRAY_TO_DICT},
    {"SourceLocation", INGEST_TR_SOURCE_LOCATION},
    {"SourceLineNumber", INGEST_TR_SOURCE_LINE_NUMBER},
    {"DropMappedFields", INGEST_TR_DROP_MAPPED_FIELDS},
};

/* A string member looked up case-insensitively, or NULL. */
static const char *get_str(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItem(o, name);

    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int parse_entry(const cJSON *el, size_t idx,
                       struct ingest_mapping_entry *e, struct kusto_error *err)
{
    const cJSON *props;
    const char *col;
    const char *dt;
    const char *path = NULL;
    const char *tr = NULL;
    const char *cv = NULL;
    const char *field = NULL;
    int rc;

    e->col_index = -1;
    if (!cJSON_IsObject(el)) {
        set_err(err, 400, 1, "BadRequest_InvalidMapping",
                "mapping element %zu is not an object", idx);
        return -EINVAL;
    }
    col = get_str(el, "column");
    if (col == NULL || col[0] == '\0') {
        set_err(err, 400, 1, "BadRequest_InvalidMapping",
                "mapping element %zu has no 'column'", idx);
        return -EINVAL;
    }
    e->column = strdup(col);
    if (e->column == NULL) {
        return -ENOMEM;
    }
    dt = get_str(el, "datatype");
    if (dt != NULL && dt[0] != '\0') {
        if (kusto_type_parse(dt, &e->type) < 0) {
            set_err(err, 400, 1, "BadRequest_InvalidMapping",
                    "mapping column '%s' has unknown datatype '%s'", col, dt);
            return -EINVAL;
        }
        e->has_type = 1;
    }
    props = cJSON_GetObjectItem(el, "Properties");
    if (cJSON_IsObject(props)) {
        path = get_str(props, "Path");
        tr = get_str(props, "Transform");
        cv = get_str(props, "ConstValue");
        field = get_str(props, "Field");
    }
    if (path == NULL) {
        path = get_str(el, "path");
    }
    if ((path == NULL || path[0] == '\0') && field != NULL &&
        field[0] != '\0') {
        /* Avro mappings: a top-level field by name */
        e->steps = calloc(1, sizeof(*e->steps));
        if (e->steps == NULL || (e->steps[0].key = strdup(field)) == NULL) {
            return -ENOMEM;
        }
        e->nsteps = 1;
        return 0;
    }
    if (tr == NULL) {
        tr = get_str(el, "transform");
    }
    if (cv == NULL) {
        cv = get_str(el, "ConstValue");
    }
    if (tr != NULL && tr[0] != '\0' && strcasecmp(tr, "None") != 0) {
        size_t k;
        for (k = 0; k < sizeof(transforms) / sizeof(transforms[0]); k++) {
            if (strcasecmp(tr, transforms[k].name) == 0) {
                e->transform = transforms[k].tr;
                break;
            }
        }
        if (k == sizeof(transforms) / sizeof(transforms[0])) {
            set_err(err, 400, 1, "BadRequest_InvalidMapping",
                    "mapping column '%s' has unsupported transform '%s'", col,
                    tr);
            return -EINVAL;
        }
    }
    if (cv != NULL && (path == NULL || path[0] == '\0')) {
        e->is_const = 1;
        e->const_value = strdup(cv);
        return e->const_value == NULL ? -ENOMEM : 0;
    }
    if (path == NULL || path[0] == '\0') {
        if (e->transform == INGEST_TR_SOURCE_LOCATION ||
            e->transform == INGEST_TR_SOURCE_LINE_NUMBER) {
            return 0;
        }
        set_err(err, 400, 1, "BadRequest_InvalidMapping",
                "mapping column '%s' has neither Path nor ConstValue", col);
        return -EINVAL;
    }
    if (path[0] != '$') {
        e->is_const = 1;
        e->const_value = strdup(path);
        return e->const_value == NULL ? -ENOMEM : 0;
    }
    rc = parse_path(e, path);
    if (rc == -EINVAL) {
        set_err(err, 400, 1, "BadRequest_InvalidMapping",
                "mapping column '%s' has invalid path '%s'", col, path);
    }
    return rc;
}

int ingest_mapping_parse(const char *json, struct ingest_mapping **out,
                         struct kusto_error *err)
{
    cJSON *root = cJSON_Parse(json);
    struct ingest_mapping *m = NULL;
    size_t n;
    int rc = 0;

    if (!cJSON_IsArray(root)) {
        set_err(err, 400, 1, "BadRequest_InvalidMapping",
                "the ingestion mapping is not a JSON array");
        rc = -EINVAL;
        goto out_root;
    }
    n = (size_t)cJSON_GetArraySize(root);
    m = calloc(1, sizeof(*m));
    if (m == NULL || (n > 0 && (m->e = calloc(n, sizeof(*m->e))) == NULL)) {
        rc = -ENOMEM;
        goto out_map;
    }
    for (size_t i = 0; i < n; i++) {
        rc = parse_entry(cJSON_GetArrayItem(root, (int)i), i, &m->e[i], err);
        m->n = i + 1;
        if (rc < 0) {
            goto out_map;
        }
    }
    *out = m;
    cJSON_Delete(root);
    return 0;
out_map:
    if (rc == -ENOMEM) {
        set_err(err, 500, 0, "Internal", "out of memory");
    }
    ingest_mapping_free(m);
out_root:
    cJSON_Delete(root);
    return rc;
}

int ingest_mapping_bind(struct ingest_mapping *m,
                        const struct kusto_column *cols, size_t ncols,
                        struct kusto_error *err)
{
    for (size_t i = 0; i < m->n; i++) {
        struct ingest_mapping_entry *e = &m->e[i];
        e->col_index = -1;
        for (size_t c = 0; c < ncols; c++) {
            if (strcmp(cols[c].name, e->column) == 0) {
                e->col_index = (long)c;
                break;
            }
        }
        if (e->col_index < 0) {
            set_err(err, 400, 1, "BadRequest_InvalidMapping",
                    "mapping column '%s' is not in the table", e->column);
            return -ENOENT;
        }
    }
    return 0;
}

int ingest_mapping_add_columns(struct kusto *k, const char *db,
                               const char *table,
                               const struct ingest_mapping *m,
                               struct kusto_error *err)
{
    for (size_t i = 0; i < m->n; i++) {
        const struct kusto_column *cols;
        size_t ncols;
        int found = 0;
        int rc = kusto_table_schema(k, db, table, &cols, &ncols, err);
        if (rc < 0) {
            return rc;
        }
        for (size_t c = 0; c < ncols; c++) {
            if (strcmp(cols[c].name, m->e[i].column) == 0) {
                found = 1;
                break;
            }
        }
        if (!found && m->e[i].has_type) {
            rc = kusto_add_column(k, db, table, m->e[i].column, m->e[i].type,
                                  err);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* ---- rows ---- */

void ingest_rows_release(struct ingest_rows *r)
{
    if (r == NULL || r->values == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nrows * r->ncols; i++) {
        free(r->values[i].s);
    }
    free(r->values);
    memset(r, 0, sizeof(*r));
}

/* Appends a null row; returns it or NULL on OOM. */
static struct kusto_value *new_row(struct ingest_rows *r,
                                   const struct kusto_column *cols)
{
    struct kusto_value *row;

    if (r->nrows == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 64;
        struct kusto_value *nv =
            realloc(r->values, ncap * r->ncols * sizeof(*nv));
        if (nv == NULL) {
            return NULL;
        }
        r->values = nv;
        r->cap = ncap;
    }
    row = &r->values[r->nrows * r->ncols];
    for (size_t c = 0; c < r->ncols; c++) {
        ingest_value_null(&row[c], cols[c].type);
    }
    r->nrows++;
    return row;
}

static const cJSON *walk(const cJSON *rec, const struct ingest_step *steps,
                         size_t n)
{
    const cJSON *cur = rec;

    for (size_t i = 0; i < n && cur != NULL; i++) {
        if (steps[i].key != NULL) {
            cur = cJSON_IsObject(cur)
                      ? cJSON_GetObjectItemCaseSensitive(cur, steps[i].key)
                      : NULL;
        } else {
            cur = cJSON_IsArray(cur)
                      ? cJSON_GetArrayItem(cur, (int)steps[i].index)
                      : NULL;
        }
    }
    return cur;
}

/* Number, or numeric string, as a double. */
static int json_number(const cJSON *it, double *out)
{
    if (cJSON_IsNumber(it)) {
        *out = it->valuedouble;
        return 0;
    }
    if (cJSON_IsString(it)) {
        char *end;
        double d = strtod(it->valuestring, &end);
        if (end != it->valuestring && *end == '\0') {
            *out = d;
            return 0;
        }
    }
    return -EINVAL;
}

/* Applies entry e of mapping m to record rec into slot v (type t). */
static int apply_entry(const struct ingest_mapping *m,
                       const struct ingest_mapping_entry *e, const cJSON *rec,
                       size_t lineno, enum kusto_type t, struct kusto_value *v)
{
    const cJSON *item;
    double d;
    double per_tick;

    free(v->s);
    ingest_value_null(v, t);
    if (e->is_const) {
        return ingest_convert_text(e->const_value, strlen(e->const_value), t,
                                   v);
    }
    if (e->transform == INGEST_TR_SOURCE_LINE_NUMBER) {
        char num[32];
        int n = snprintf(num, sizeof(num), "%zu", lineno);
        return ingest_convert_text(num, (size_t)n, t, v);
    }
    if (e->transform == INGEST_TR_SOURCE_LOCATION) {
        return ingest_convert_text("Stream", 6, t, v);
    }
    item = walk(rec, e->steps, e->nsteps);
    switch (e->transform) {
    case INGEST_TR_UNIX_SECONDS:
        per_tick = 1e7;
        goto unix_time;
    case INGEST_TR_UNIX_MILLISECONDS:
        per_tick = 1e4;
        goto unix_time;
    case INGEST_TR_UNIX_MICROSECONDS:
        per_tick = 10.0;
        goto unix_time;
    case INGEST_TR_UNIX_NANOSECONDS:
        per_tick = 0.01;
    unix_time:
        if (item != NULL && json_number(item, &d) == 0 && t == KT_DATETIME &&
            fabs(d * per_tick) < 9.2e18) {
            v->i = (int64_t)llround(d * per_tick);
            v->is_null = 0;
        }
        return 0;
    case INGEST_TR_PROPERTY_BAG_ARRAY_TO_DICT: {
        cJSON *obj;
        const cJSON *el;
        int rc;
        if (!cJSON_IsArray(item)) {
            return ingest_convert_json(item, t, v);
        }
        obj = cJSON_CreateObject();
        if (obj == NULL) {
            return -ENOMEM;
        }
        cJSON_ArrayForEach(el, item)
        {
            const cJSON *k = cJSON_GetObjectItem(el, "Key");
            const cJSON *val = cJSON_GetObjectItem(el, "Value");
            if (cJSON_IsString(k) && val != NULL) {
                cJSON_AddItemToObject(obj, k->valuestring,
                                      cJSON_Duplicate(val, 1));
            }
        }
        rc = ingest_convert_json(obj, t, v);
        cJSON_Delete(obj);
        return rc;
    }
    case INGEST_TR_DROP_MAPPED_FIELDS: {
        cJSON *copy;
        int rc;
        if (!cJSON_IsObject(item)) {
            return ingest_convert_json(item, t, v);
        }
        copy = cJSON_Duplicate(item, 1);
        if (copy == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < m->n; i++) {
            const struct ingest_mapping_entry *o = &m->e[i];
            if (o != e && !o->is_const && o->nsteps > 0 &&
                o->steps[0].key != NULL) {
                cJSON_DeleteItemFromObjectCaseSensitive(copy, o->steps[0].key);
            }
        }
        rc = ingest_convert_json(copy, t, v);
        cJSON_Delete(copy);
        return rc;
    }
    default:
        return ingest_convert_json(item, t, v);
    }
}

static int record_to_row(const cJSON *rec, size_t lineno,
                         const struct kusto_column *cols,
                         const struct ingest_mapping *m,
                         struct ingest_rows *out)
{
    struct kusto_value *row = new_row(out, cols);

    if (row == NULL) {
        return -ENOMEM;
    }
    if (m != NULL) {
        for (size_t i = 0; i < m->n; i++) {
            long c = m->e[i].col_index;
            if (c < 0 || (size_t)c >= out->ncols) {
                continue;
            }
            if (apply_entry(m, &m->e[i], rec, lineno, cols[c].type, &row[c]) <
                0) {
                return -ENOMEM;
            }
        }
        return 0;
    }
    for (size_t c = 0; c < out->ncols; c++) {
        const cJSON *it =
            cJSON_IsObject(rec)
                ? cJSON_GetObjectItemCaseSensitive(rec, cols[c].name)
                : NULL;
        if (ingest_convert_json(it, cols[c].type, &row[c]) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

static int parse_json_lines(const char *body, size_t len,
                            const struct kusto_column *cols,
                            const struct ingest_mapping *m, size_t max_rows,
                            struct ingest_rows *out, struct kusto_error *err)
{
    size_t pos = 0;
    size_t lineno = 0;

    while (pos < len) {
        const char *line = body + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - line) : len - pos;
        const char *t = line;
        size_t tl = ll;
        cJSON *rec;
        int rc;

        pos += ll + (nl != NULL ? 1 : 0);
        lineno++;
        ingest_trim(&t, &tl);
        if (tl == 0) {
            continue;
        }
        if (max_rows > 0 && out->nrows >= max_rows) {
            set_err(err, 400, 1, "Stream_InputStreamTooLarge",
                    "more than %zu records in one request", max_rows);
            return -E2BIG;
        }
        rec = cJSON_ParseWithLength(t, tl);
        if (rec == NULL) {
            set_err(err, 400, 1, "Stream_InvalidJsonRecord",
                    "record %zu (line %zu) is not valid JSON", lineno, lineno);
            return -EBADMSG;
        }
        rc = record_to_row(rec, lineno, cols, m, out);
        cJSON_Delete(rec);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int parse_multijson(const char *body, size_t len,
                           const struct kusto_column *cols,
                           const struct ingest_mapping *m, size_t max_rows,
                           struct ingest_rows *out, struct kusto_error *err)
{
    size_t pos = 0;
    size_t recno = 0;

    for (;;) {
        const char *end = NULL;
        cJSON *v;
        int rc = 0;

        while (pos < len && isspace((unsigned char)body[pos])) {
            pos++;
        }
        if (pos >= len) {
            return 0;
        }
        v = cJSON_ParseWithLengthOpts(body + pos, len - pos, &end, 0);
        if (v == NULL) {
            set_err(err, 400, 1, "Stream_InvalidJsonRecord",
                    "invalid JSON after record %zu (byte %zu)", recno, pos);
            return -EBADMSG;
        }
        pos = (size_t)(end - body);
        if (cJSON_IsArray(v)) {
            const cJSON *el;
            cJSON_ArrayForEach(el, v)
            {
                recno++;
                if (max_rows > 0 && out->nrows >= max_rows) {
                    rc = -E2BIG;
                    break;
                }
                rc = record_to_row(el, recno, cols, m, out);
                if (rc < 0) {
                    break;
                }
            }
        } else {
            recno++;
            if (max_rows > 0 && out->nrows >= max_rows) {
                rc = -E2BIG;
            } else {
                rc = record_to_row(v, recno, cols, m, out);
            }
        }
        cJSON_Delete(v);
        if (rc == -E2BIG) {
            set_err(err, 400, 1, "Stream_InputStreamTooLarge",
                    "more than %zu records in one request", max_rows);
        }
        if (rc < 0) {
            return rc;
        }
    }
}

/* One CSV record from body[*pos]: field offsets into a scratch buffer. */
struct csv_scratch {
    char *buf; /* unquoted field bytes, each NUL-terminated */
    size_t cap;
    size_t *offs; /* start of each field in buf */
    size_t *lens;
    size_t fcap;
};

static int csv_push_char(struct csv_scratch *s, size_t *bl, char ch)
{
    if (*bl + 1 >= s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        char *nb = realloc(s->buf, ncap);
        if (nb == NULL) {
            return -ENOMEM;
        }
        s->buf = nb;
        s->cap = ncap;
    }
    s->buf[(*bl)++] = ch;
    return 0;
}

static int csv_end_field(struct csv_scratch *s, size_t *nf, size_t *bl,
                         size_t start)
{
    if (*nf == s->fcap) {
        size_t ncap = s->fcap ? s->fcap * 2 : 32;
        size_t *no = realloc(s->offs, ncap * sizeof(*no));
        size_t *nl;
        if (no == NULL) {
            return -ENOMEM;
        }
        s->offs = no;
        nl = realloc(s->lens, ncap * sizeof(*nl));
        if (nl == NULL) {
            return -ENOMEM;
        }
        s->lens = nl;
        s->fcap = ncap;
    }
    s->offs[*nf] = start;
    s->lens[*nf] = *bl - start;
    (*nf)++;
    return csv_push_char(s, bl, '\0');
}

static int parse_csv(const char *body, size_t len,
                     const struct kusto_column *cols, size_t max_rows,
                     struct ingest_rows *out, struct kusto_error *err)
{
    struct csv_scratch s = {0};
    size_t pos = 0;
    size_t recno = 0;
    int rc = 0;

    while (pos < len) {
        size_t nf = 0;
        size_t bl = 0;
        size_t start = 0;
        int quoted = 0;
        int was_quoted = 0;
        struct kusto_value *row;

        recno++;
        for (;;) {
            char ch;
            if (pos >= len) {
                if (quoted) {
                    set_err(err, 400, 1, "Stream_ClosingQuoteMissing",
                            "csv record %zu: closing quote missing", recno);
                    rc = -EBADMSG;
                    goto done;
                }
                rc = csv_end_field(&s, &nf, &bl, start);
                break;
            }
            ch = body[pos++];
            if (quoted) {
                if (ch == '"') {
                    if (pos < len && body[pos] == '"') {
                        pos++;
                        rc = csv_push_char(&s, &bl, '"');
                    } else {
                        quoted = 0;
                    }
                } else {
                    rc = csv_push_char(&s, &bl, ch);
                }
            } else if (ch == '"' && bl == start && !was_quoted) {
                quoted = 1;
                was_quoted = 1;
            } else if (ch == ',') {
                rc = csv_end_field(&s, &nf, &bl, start);
                start = bl;
                was_quoted = 0;
            } else if (ch == '\n' || ch == '\r') {
                if (ch == '\r' && pos < len && body[pos] == '\n') {
                    pos++;
                }
                rc = csv_end_field(&s, &nf, &bl, start);
                break;
            } else {
                rc = csv_push_char(&s, &bl, ch);
            }
            if (rc < 0) {
                goto done;
            }
        }
        if (rc < 0) {
            goto done;
        }
        if (nf == 1 && s.lens[0] == 0 && !was_quoted) {
            continue; /* an empty line */
        }
        if (nf != out->ncols) {
            set_err(err, 400, 1, "Stream_WrongNumberOfFields",
                    "csv record %zu has %zu fields, the table has %zu "
                    "columns",
                    recno, nf, out->ncols);
            rc = -EBADMSG;
            goto done;
        }
        if (max_rows > 0 && out->nrows >= max_rows) {
            set_err(err, 400, 1, "Stream_InputStreamTooLarge",
                    "more than %zu records in one request", max_rows);
            rc = -E2BIG;
            goto done;
        }
        row = new_row(out, cols);
        if (row == NULL) {
            rc = -ENOMEM;
            goto done;
        }
        for (size_t c = 0; c < nf; c++) {
            rc = ingest_convert_text(s.buf + s.offs[c], s.lens[c], cols[c].type,
                                     &row[c]);
            if (rc < 0) {
                goto done;
            }
        }
    }
done:
    free(s.buf);
    free(s.offs);
    free(s.lens);
    return rc;
}

/* ---- avro: each record decoded to JSON, then the JSON row path ---- */

struct avro_rows {
    const struct kusto_column *cols;
    const struct ingest_mapping *m;
    size_t max_rows;
    size_t recno;
    struct ingest_rows *out;
    struct kusto_error *err;
};

static int avro_row(void *arg, const char *json, size_t len)
{
    struct avro_rows *a = arg;
    cJSON *rec;
    int rc;

    a->recno++;
    if (a->max_rows > 0 && a->out->nrows >= a->max_rows) {
        set_err(a->err, 400, 1, "Stream_InputStreamTooLarge",
                "more than %zu records in one request", a->max_rows);
        return -E2BIG;
    }
    rec = cJSON_ParseWithLength(json, len);
    if (rec == NULL) {
        return -ENOMEM; /* the decoder writes valid JSON */
    }
    rc = record_to_row(rec, a->recno, a->cols, a->m, a->out);
    cJSON_Delete(rec);
    return rc;
}

static int parse_avro(const char *body, size_t len,
                      const struct kusto_column *cols,
                      const struct ingest_mapping *m, size_t max_rows,
                      struct ingest_rows *out, struct kusto_error *err)
{
    struct avro_rows a = {cols, m, max_rows, 0, out, err};
    char why[160] = "";
    int rc;

    rc = avro_ocf_read(body, len, 64u << 20, avro_row, &a, why, sizeof(why));
    if (rc == -EBADMSG || rc == -EMSGSIZE) {
        set_err(err, 400, 1, "Stream_InvalidAvroFile",
                "the body is not a valid Avro file (record %zu): %s",
                a.recno + 1, why);
        return -EBADMSG;
    }
    return rc;
}

int ingest_parse(const char *body, size_t len, enum ingest_format fmt,
                 const struct kusto_column *cols, size_t ncols,
                 const struct ingest_mapping *m, size_t max_rows,
                 struct ingest_rows *out, struct kusto_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->ncols = ncols;
    if (ncols == 0) {
        set_err(err, 400, 1, "BadRequest_InvalidTable",
                "the table has no columns");
        return -EINVAL;
    }
    switch (fmt) {
    case INGEST_JSON:
        rc = parse_json_lines(body, len, cols, m, max_rows, out, err);
        break;
    case INGEST_MULTIJSON:
        rc = parse_multijson(body, len, cols, m, max_rows, out, err);
        break;
    case INGEST_CSV:
        rc = parse_csv(body, len, cols, max_rows, out, err);
        break;
    case INGEST_AVRO:
        rc = parse_avro(body, len, cols, m, max_rows, out, err);
        break;
    default:
        rc = -ENOTSUP;
        set_err(err, 400, 1, "BadRequest_UnsupportedFormat",
                "unsupported stream format");
        break;
    }
    if (rc == -ENOMEM) {
        set_err(err, 500, 0, "Internal", "out of memory");
    }
    if (rc < 0) {
        ingest_rows_release(out);
        out->ncols = ncols;
    }
    return rc;
}

int ingest_gunzip(const void *in, size_t inlen, size_t max_out, char **out,
                  size_t *outlen, struct kusto_error *err)
{
    z_stream zs;
    char *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    int zrc;
    int rc = 0;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        set_err(err, 500, 0, "Internal", "zlib init failed");
        return -ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)inlen;
    for (;;) {
        if (cap - len < 16384) {
            size_t ncap = cap ? cap * 2 : (inlen * 4 + 16384);
            char *nb;
            if (ncap > max_out + 16384 + 1) {
                ncap = max_out + 16384 + 1;
            }
            if (ncap <= cap) {
                set_err(err, 413, 1, "Stream_InputStreamTooLarge",
                        "uncompressed body exceeds %zu bytes", max_out);
                rc = -EMSGSIZE;
                goto done;
            }
            nb = realloc(buf, ncap);
            if (nb == NULL) {
                set_err(err, 500, 0, "Internal", "out of memory");
                rc = -ENOMEM;
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        zs.next_out = (Bytef *)(buf + len);
        zs.avail_out = (uInt)(cap - len - 1);
        zrc = inflate(&zs, Z_NO_FLUSH);
        len = cap - 1 - zs.avail_out;
        if (len > max_out) {
            set_err(err, 413, 1, "Stream_InputStreamTooLarge",
                    "uncompressed body exceeds %zu bytes", max_out);
            rc = -EMSGSIZE;
            goto done;
        }
        if (zrc == Z_STREAM_END) {
            /* concatenated gzip members are one stream */
            if (zs.avail_in > 0) {
                inflateReset(&zs);
                continue;
            }
            break;
        }
        if (zrc == Z_OK) {
            continue;
        }
        if (zrc == Z_BUF_ERROR && zs.avail_out > 0) {
            set_err(err, 400, 1, "BadRequest_InvalidCompressedStream",
                    "the gzip body is truncated");
            rc = -EBADMSG;
            goto done;
        }
        if (zrc == Z_BUF_ERROR) {
            continue;
        }
        set_err(err, 400, 1, "BadRequest_InvalidCompressedStream",
                "the body is not valid gzip: %s",
                zs.msg != NULL ? zs.msg : "corrupt data");
        rc = -EBADMSG;
        goto done;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
done:
    inflateEnd(&zs);
    free(buf);
    return rc;
}
