/*
 * avro.c - Avro schemas, binary datum -> JSON text, and the object
 * container file framing (avro.h says why our own).
 *
 * A schema is a graph of nodes owned by the struct avro_schema (named
 * types may be referenced again, recursively: nodes live in one list and
 * are freed from it). Decoding walks the node graph and the body together;
 * every read checks the bytes left, every recursion the depth, every
 * output the cap: a hostile body ends in -EBADMSG or -EMSGSIZE, never a
 * crash or an unbounded allocation. Pure: any thread.
 */
#include "gateway/avro.h"
#include "base/base64.h"
#include "base/err.h"
#include "base/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum avro_type {
    AT_NULL,
    AT_BOOLEAN,
    AT_INT,
    AT_LONG,
    AT_FLOAT,
    AT_DOUBLE,
    AT_BYTES,
    AT_STRING,
    AT_RECORD,
    AT_ENUM,
    AT_ARRAY,
    AT_MAP,
    AT_UNION,
    AT_FIXED,
};

struct avro_node {
    enum avro_type type;
    char *name;              /* full name of a named type, else NULL */
    size_t n;                /* fields, symbols or branches */
    char **names;            /* field names / enum symbols (n) */
    struct avro_node **kids; /* field types / branches (n); items/values [0] */
    size_t size;             /* fixed */
};

struct avro_schema {
    struct avro_node *root;
    struct avro_node **all; /* every node, owned */
    size_t nall, capall;
};

/* ------------------------------------------------------------- buffers */

void avro_put_long(struct sbuf *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    unsigned char tmp[10];
    size_t n = 0;

    do {
        unsigned char c = z & 0x7f;

        z >>= 7;
        tmp[n++] = c | (z ? 0x80 : 0);
    } while (z);
    sbuf_add(b, tmp, n);
}

void avro_put_string(struct sbuf *b, const void *s, size_t n)
{
    avro_put_long(b, (int64_t)n);
    sbuf_add(b, s, n);
}

/* -------------------------------------------------------------- schema */

struct sparse {
    struct avro_schema *s;
    char *err;
    size_t errlen;
};

static struct avro_node *node_new(struct sparse *p, enum avro_type t)
{
    struct avro_schema *s = p->s;
    struct avro_node *n;

    if (s->nall == s->capall) {
        size_t nc = s->capall ? s->capall * 2 : 16;
        struct avro_node **a = realloc(s->all, nc * sizeof(*a));

        if (a == NULL) {
            return NULL;
        }
        s->all = a;
        s->capall = nc;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return NULL;
    }
    n->type = t;
    s->all[s->nall++] = n;
    return n;
}

static int prim_type(const char *name, enum avro_type *t)
{
    static const struct {
        const char *name;
        enum avro_type t;
    } prims[] = {
        {"null", AT_NULL},   {"boolean", AT_BOOLEAN}, {"int", AT_INT},
        {"long", AT_LONG},   {"float", AT_FLOAT},     {"double", AT_DOUBLE},
        {"bytes", AT_BYTES}, {"string", AT_STRING},
    };

    for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++) {
        if (strcmp(name, prims[i].name) == 0) {
            *t = prims[i].t;
            return 0;
        }
    }
    return -1;
}

static struct avro_node *find_named(struct sparse *p, const char *name,
                                    const char *ns)
{
    char full[512];

    for (size_t i = 0; i < p->s->nall; i++) {
        const struct avro_node *n = p->s->all[i];

        if (n->name != NULL && strcmp(n->name, name) == 0) {
            return p->s->all[i];
        }
    }
    if (ns != NULL && ns[0] != '\0' && strchr(name, '.') == NULL) {
        snprintf(full, sizeof(full), "%s.%s", ns, name);
        for (size_t i = 0; i < p->s->nall; i++) {
            const struct avro_node *n = p->s->all[i];

            if (n->name != NULL && strcmp(n->name, full) == 0) {
                return p->s->all[i];
            }
        }
    }
    return NULL;
}

static struct avro_node *parse_node(struct sparse *p, const cJSON *j,
                                    const char *ns, int depth);

static int named_full(struct sparse *p, const cJSON *j, const char *ns,
                      char **full, const char **newns)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *jns = cJSON_GetObjectItemCaseSensitive(j, "namespace");
    const char *use_ns = ns;
    size_t len;

    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        set_err(p->err, p->errlen, "a named type without a 'name'");
        return -EINVAL;
    }
    if (cJSON_IsString(jns)) {
        use_ns = jns->valuestring;
    }
    if (strchr(name->valuestring, '.') != NULL || use_ns == NULL ||
        use_ns[0] == '\0') {
        *full = strdup(name->valuestring);
    } else {
        len = strlen(use_ns) + strlen(name->valuestring) + 2;
        *full = malloc(len);
        if (*full != NULL) {
            snprintf(*full, len, "%s.%s", use_ns, name->valuestring);
        }
    }
    if (*full == NULL) {
        return -ENOMEM;
    }
    if (find_named(p, *full, NULL) != NULL) {
        set_err(p->err, p->errlen, "type '%.100s' defined twice", *full);
        free(*full);
        *full = NULL;
        return -EINVAL;
    }
    /* the namespace of the children: that of the full name */
    *newns = use_ns;
    if (strchr(name->valuestring, '.') != NULL) {
        *newns = NULL; /* set by the caller from the full name */
    }
    return 0;
}

static int grow_kids(struct avro_node *n, size_t count)
{
    n->kids = calloc(count ? count : 1, sizeof(*n->kids));
    n->names = calloc(count ? count : 1, sizeof(*n->names));
    if (n->kids == NULL || n->names == NULL) {
        return -ENOMEM;
    }
    return 0;
}

/* The symbols of enum n (named full): n, or NULL with the error set. */
static struct avro_node *parse_enum(struct sparse *p, const cJSON *j,
                                    struct avro_node *n, const char *full)
{
    const cJSON *syms = cJSON_GetObjectItemCaseSensitive(j, "symbols");
    const cJSON *it;
    size_t i = 0;

    if (!cJSON_IsArray(syms)) {
        set_err(p->err, p->errlen, "enum '%.100s' without symbols", full);
        return NULL;
    }
    if (grow_kids(n, (size_t)cJSON_GetArraySize(syms)) < 0) {
        return NULL;
    }
    cJSON_ArrayForEach(it, syms)
    {
        if (!cJSON_IsString(it)) {
            set_err(p->err, p->errlen,
                    "enum '%.100s': a symbol is not a string", full);
            return NULL;
        }
        n->names[i] = strdup(it->valuestring);
        if (n->names[i] == NULL) {
            return NULL;
        }
        n->n = ++i;
    }
    return n;
}

/* The fields of record n (named full; cns: the namespace of their types):
 * n, or NULL with the error set. */
static struct avro_node *parse_fields(struct sparse *p, const cJSON *j,
                                      struct avro_node *n, const char *full,
                                      const char *cns, int depth)
{
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
    const cJSON *f;
    size_t i = 0;

    if (!cJSON_IsArray(fields)) {
        set_err(p->err, p->errlen, "record '%.100s' without fields", full);
        return NULL;
    }
    if (grow_kids(n, (size_t)cJSON_GetArraySize(fields)) < 0) {
        return NULL;
    }
    cJSON_ArrayForEach(f, fields)
    {
        const cJSON *fname = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *ftype = cJSON_GetObjectItemCaseSensitive(f, "type");

        if (!cJSON_IsString(fname) || ftype == NULL) {
            set_err(p->err, p->errlen,
                    "record '%.100s': a field without name or type", full);
            return NULL;
        }
        n->names[i] = strdup(fname->valuestring);
        if (n->names[i] == NULL) {
            return NULL;
        }
        n->n = i + 1; /* the name is freed with the node */
        n->kids[i] = parse_node(p, ftype, cns, depth + 1);
        if (n->kids[i] == NULL) {
            return NULL;
        }
        i++;
    }
    return n;
}

static struct avro_node *parse_complex(struct sparse *p, const cJSON *j,
                                       const char *ns, int depth)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    struct avro_node *n = NULL;
    enum avro_type t;
    const char *tn;

    if (cJSON_IsArray(type) || cJSON_IsObject(type)) {
        /* {"type": {...}} or {"type": [...]}: the inner schema */
        return parse_node(p, type, ns, depth + 1);
    }
    if (!cJSON_IsString(type)) {
        set_err(p->err, p->errlen, "a schema object without a 'type'");
        return NULL;
    }
    tn = type->valuestring;
    if (prim_type(tn, &t) == 0) {
        return node_new(p, t); /* logical types: their underlying type */
    }
    if (strcmp(tn, "record") == 0 || strcmp(tn, "error") == 0 ||
        strcmp(tn, "enum") == 0 || strcmp(tn, "fixed") == 0) {
        char *full = NULL;
        const char *cns = NULL;
        char nsbuf[512];

        if (named_full(p, j, ns, &full, &cns) < 0) {
            return NULL;
        }
        if (cns == NULL) {
            const char *dot = strrchr(full, '.');

            snprintf(nsbuf, sizeof(nsbuf), "%.*s", dot ? (int)(dot - full) : 0,
                     full);
            cns = nsbuf;
        }
        n = node_new(p, tn[0] == 'e' && tn[1] == 'n' ? AT_ENUM
                        : tn[0] == 'f'               ? AT_FIXED
                                                     : AT_RECORD);
        if (n == NULL) {
            free(full);
            return NULL;
        }
        n->name = full;
        if (n->type == AT_FIXED) {
            const cJSON *size = cJSON_GetObjectItemCaseSensitive(j, "size");

            if (!cJSON_IsNumber(size) || size->valuedouble < 0 ||
                size->valuedouble > 1e9) {
                set_err(p->err, p->errlen, "fixed '%.100s' without a size",
                        full);
                return NULL;
            }
            n->size = (size_t)size->valuedouble;
            return n;
        }
        if (n->type == AT_ENUM) {
            return parse_enum(p, j, n, full);
        }
        return parse_fields(p, j, n, full, cns, depth);
    }
    if (strcmp(tn, "array") == 0 || strcmp(tn, "map") == 0) {
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(
            j, tn[0] == 'a' ? "items" : "values");

        if (sub == NULL) {
            set_err(p->err, p->errlen, "%s without %s", tn,
                    tn[0] == 'a' ? "items" : "values");
            return NULL;
        }
        n = node_new(p, tn[0] == 'a' ? AT_ARRAY : AT_MAP);
        if (n == NULL || grow_kids(n, 1) < 0) {
            return NULL;
        }
        n->kids[0] = parse_node(p, sub, ns, depth + 1);
        return n->kids[0] ? n : NULL;
    }
    /* {"type": "some.Name"}: a reference */
    return parse_node(p, type, ns, depth + 1);
}

static struct avro_node *parse_node(struct sparse *p, const cJSON *j,
                                    const char *ns, int depth)
{
    struct avro_node *n;
    enum avro_type t;

    if (depth > AVRO_MAX_DEPTH) {
        set_err(p->err, p->errlen, "schema nested deeper than %d",
                AVRO_MAX_DEPTH);
        return NULL;
    }
    if (cJSON_IsString(j)) {
        if (prim_type(j->valuestring, &t) == 0) {
            return node_new(p, t);
        }
        n = find_named(p, j->valuestring, ns);
        if (n == NULL) {
            set_err(p->err, p->errlen, "unknown type '%.100s'", j->valuestring);
        }
        return n;
    }
    if (cJSON_IsArray(j)) {
        const cJSON *it;
        size_t i = 0;

        n = node_new(p, AT_UNION);
        if (n == NULL || grow_kids(n, (size_t)cJSON_GetArraySize(j)) < 0) {
            return NULL;
        }
        cJSON_ArrayForEach(it, j)
        {
            n->kids[i] = parse_node(p, it, ns, depth + 1);
            if (n->kids[i] == NULL) {
                return NULL;
            }
            n->n = ++i;
        }
        if (n->n == 0) {
            set_err(p->err, p->errlen, "an empty union");
            return NULL;
        }
        return n;
    }
    if (cJSON_IsObject(j)) {
        return parse_complex(p, j, ns, depth);
    }
    set_err(p->err, p->errlen, "a schema must be a string, object or array");
    return NULL;
}

int avro_schema_parse(const char *json, struct avro_schema **out, char *err,
                      size_t errlen)
{
    struct sparse p;
    cJSON *j;

    *out = NULL;
    set_err(err, errlen, "out of memory");
    p.s = calloc(1, sizeof(*p.s));
    if (p.s == NULL) {
        return -ENOMEM;
    }
    p.err = err;
    p.errlen = errlen;
    j = cJSON_Parse(json);
    if (j == NULL) {
        set_err(err, errlen, "the schema is not valid JSON");
        avro_schema_free(p.s);
        return -EINVAL;
    }
    set_err(err, errlen, "out of memory");
    p.s->root = parse_node(&p, j, NULL, 0);
    cJSON_Delete(j);
    if (p.s->root == NULL) {
        avro_schema_free(p.s);
        return strcmp(err ? err : "", "out of memory") == 0 ? -ENOMEM : -EINVAL;
    }
    *out = p.s;
    return 0;
}

void avro_schema_free(struct avro_schema *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nall; i++) {
        struct avro_node *n = s->all[i];

        if (n->names != NULL) {
            for (size_t k = 0; k < n->n; k++) {
                free(n->names[k]);
            }
        }
        free(n->names);
        free(n->kids);
        free(n->name);
        free(n);
    }
    free(s->all);
    free(s);
}

int avro_schema_is_record(const struct avro_schema *s)
{
    return s->root->type == AT_RECORD;
}

/* ------------------------------------------------------------ decoding */

struct dec {
    const unsigned char *p, *end;
    struct sbuf *out; /* NULL: validate only */
    char *err;
    size_t errlen;
};

#define OUT(d, s, n)                                                           \
    do {                                                                       \
        if ((d)->out != NULL) {                                                \
            sbuf_add((d)->out, (s), (n));                                      \
        }                                                                      \
    } while (0)

static int read_long(struct dec *d, int64_t *v)
{
    uint64_t z = 0;
    int shift = 0;

    for (;;) {
        unsigned char c;

        if (d->p >= d->end) {
            set_err(d->err, d->errlen,
                    "truncated (a number runs past the end)");
            return -EBADMSG;
        }
        c = *d->p++;
        if (shift == 63 && (c & 0x7e) != 0) {
            set_err(d->err, d->errlen, "a varint longer than 64 bits");
            return -EBADMSG;
        }
        z |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            break;
        }
        shift += 7;
        if (shift > 63) {
            set_err(d->err, d->errlen, "a varint longer than 64 bits");
            return -EBADMSG;
        }
    }
    *v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

static int need(struct dec *d, int64_t n, const char *what)
{
    if (n < 0 || n > d->end - d->p) {
        set_err(d->err, d->errlen, "truncated (%s of %lld bytes, %lld left)",
                what, (long long)n, (long long)(d->end - d->p));
        return -EBADMSG;
    }
    return 0;
}

/* JSON string of UTF-8 text (validated: -EBADMSG otherwise) */
static int out_utf8(struct dec *d, const unsigned char *s, size_t n)
{
    size_t i = 0;

    OUT(d, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        size_t k, run = i;

        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' &&
               s[run] != '\\') {
            run++;
        }
        if (run > i) {
            OUT(d, s + i, run - i);
            i = run;
            continue;
        }
        if (c < 0x20 || c == '"' || c == '\\') {
            char esc[8];

            if (c == '"' || c == '\\') {
                esc[0] = '\\';
                esc[1] = (char)c;
                OUT(d, esc, 2);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                OUT(d, esc, 6);
            }
            i++;
            continue;
        }
        /* a multi-byte sequence (base/utf8.h: no overlong forms, no
         * surrogates, nothing above U+10FFFF) */
        k = utf8_len_n(s + i, n - i);
        if (k == 0) {
            set_err(d->err, d->errlen, "a string is not valid UTF-8");
            return -EBADMSG;
        }
        OUT(d, s + i, k);
        i += k;
    }
    OUT(d, "\"", 1);
    return 0;
}

static void out_base64(struct dec *d, const unsigned char *s, size_t n)
{
    char q[5];

    if (d->out == NULL) {
        return;
    }
    OUT(d, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        OUT(d, q, base64_encode(q, s + i, n - i < 3 ? n - i : 3));
    }
    OUT(d, "\"", 1);
}

static void out_double(struct dec *d, double v)
{
    char num[40];
    int k;

    if (!isfinite(v)) {
        OUT(d, "null", 4); /* JSON has no NaN nor infinity */
        return;
    }
    k = snprintf(num, sizeof(num), "%.17g", v);
    OUT(d, num, (size_t)k);
}

static int dec_value(struct dec *d, const struct avro_node *n, int depth);

/* blocks of an array or map: count (negative: then a byte size), items */
static int dec_blocks(struct dec *d, const struct avro_node *n, int depth)
{
    int map = n->type == AT_MAP;
    int first = 1;
    int rc;

    OUT(d, map ? "{" : "[", 1);
    for (;;) {
        int64_t count;

        if ((rc = read_long(d, &count)) < 0) {
            return rc;
        }
        if (count == 0) {
            break;
        }
        if (count < 0) {
            int64_t size;

            if (count == INT64_MIN) {
                set_err(d->err, d->errlen, "a bad block count");
                return -EBADMSG;
            }
            count = -count;
            if ((rc = read_long(d, &size)) < 0) {
                return rc;
            }
            if ((rc = need(d, size, "a block")) < 0) {
                return rc;
            }
        }
        for (int64_t i = 0; i < count; i++) {
            if (d->out != NULL && (d->out->err != 0)) {
                return d->out->err;
            }
            if (d->out == NULL &&
                i > (int64_t)(d->end - d->p) * 8 + 1024 * 1024) {
                /* validating zero-byte items: no output bounds them */
                set_err(d->err, d->errlen, "a block count beyond the body");
                return -EBADMSG;
            }
            if (!first) {
                OUT(d, ",", 1);
            }
            first = 0;
            if (map) {
                int64_t kl;

                if ((rc = read_long(d, &kl)) < 0 ||
                    (rc = need(d, kl, "a map key")) < 0 ||
                    (rc = out_utf8(d, d->p, (size_t)kl)) < 0) {
                    return rc;
                }
                d->p += kl;
                OUT(d, ":", 1);
            }
            if ((rc = dec_value(d, n->kids[0], depth + 1)) < 0) {
                return rc;
            }
        }
    }
    OUT(d, map ? "}" : "]", 1);
    return 0;
}

/* A float (4 bytes, little endian) as a JSON number. */
static int dec_float(struct dec *d)
{
    int rc;
    float f;

    if ((rc = need(d, 4, "a float")) < 0) {
        return rc;
    }
    {
        uint32_t u = (uint32_t)d->p[0] | (uint32_t)d->p[1] << 8 |
                     (uint32_t)d->p[2] << 16 | (uint32_t)d->p[3] << 24;

        memcpy(&f, &u, 4);
    }
    d->p += 4;
    out_double(d, (double)f);
    return 0;
}

/* A double (8 bytes, little endian) as a JSON number. */
static int dec_double(struct dec *d)
{
    int rc;
    double x;
    uint64_t u = 0;

    if ((rc = need(d, 8, "a double")) < 0) {
        return rc;
    }
    for (int i = 7; i >= 0; i--) {
        u = u << 8 | d->p[i];
    }
    memcpy(&x, &u, 8);
    d->p += 8;
    out_double(d, x);
    return 0;
}

static int dec_value(struct dec *d, const struct avro_node *n, int depth)
{
    int64_t v;
    int rc;

    if (depth > AVRO_MAX_DEPTH) {
        set_err(d->err, d->errlen, "data nested deeper than %d",
                AVRO_MAX_DEPTH);
        return -EBADMSG;
    }
    switch (n->type) {
    case AT_NULL:
        OUT(d, "null", 4);
        return 0;
    case AT_BOOLEAN:
        if ((rc = need(d, 1, "a boolean")) < 0) {
            return rc;
        }
        if (*d->p > 1) {
            set_err(d->err, d->errlen, "a boolean byte is %u", *d->p);
            return -EBADMSG;
        }
        if (*d->p) {
            OUT(d, "true", 4);
        } else {
            OUT(d, "false", 5);
        }
        d->p++;
        return 0;
    case AT_INT:
    case AT_LONG: {
        char num[24];
        int k;

        if ((rc = read_long(d, &v)) < 0) {
            return rc;
        }
        if (n->type == AT_INT && (v < INT32_MIN || v > INT32_MAX)) {
            set_err(d->err, d->errlen, "an int out of range");
            return -EBADMSG;
        }
        k = snprintf(num, sizeof(num), "%lld", (long long)v);
        OUT(d, num, (size_t)k);
        return 0;
    }
    case AT_FLOAT:
        return dec_float(d);
    case AT_DOUBLE:
        return dec_double(d);
    case AT_BYTES:
    case AT_STRING:
        if ((rc = read_long(d, &v)) < 0 ||
            (rc = need(d, v, n->type == AT_STRING ? "a string" : "bytes")) <
                0) {
            return rc;
        }
        if (n->type == AT_STRING) {
            rc = out_utf8(d, d->p, (size_t)v);
        } else {
            out_base64(d, d->p, (size_t)v);
        }
        d->p += v;
        return rc;
    case AT_FIXED:
        if ((rc = need(d, (int64_t)n->size, "a fixed")) < 0) {
            return rc;
        }
        out_base64(d, d->p, n->size);
        d->p += n->size;
        return 0;
    case AT_ENUM:
        if ((rc = read_long(d, &v)) < 0) {
            return rc;
        }
        if (v < 0 || (uint64_t)v >= n->n) {
            set_err(d->err, d->errlen, "enum index %lld out of range (%zu)",
                    (long long)v, n->n);
            return -EBADMSG;
        }
        return out_utf8(d, (const unsigned char *)n->names[v],
                        strlen(n->names[v]));
    case AT_UNION:
        if ((rc = read_long(d, &v)) < 0) {
            return rc;
        }
        if (v < 0 || (uint64_t)v >= n->n) {
            set_err(d->err, d->errlen, "union index %lld out of range (%zu)",
                    (long long)v, n->n);
            return -EBADMSG;
        }
        return dec_value(d, n->kids[v], depth + 1);
    case AT_ARRAY:
    case AT_MAP:
        return dec_blocks(d, n, depth);
    case AT_RECORD:
        OUT(d, "{", 1);
        for (size_t i = 0; i < n->n; i++) {
            if (i > 0) {
                OUT(d, ",", 1);
            }
            if ((rc = out_utf8(d, (const unsigned char *)n->names[i],
                               strlen(n->names[i]))) < 0) {
                return rc;
            }
            OUT(d, ":", 1);
            if ((rc = dec_value(d, n->kids[i], depth + 1)) < 0) {
                return rc;
            }
        }
        OUT(d, "}", 1);
        return 0;
    }
    set_err(d->err, d->errlen, "unknown type");
    return -EBADMSG;
}

int avro_to_json(const struct avro_schema *s, const void *data, size_t len,
                 struct sbuf *out, char *err, size_t errlen)
{
    struct dec d = {data, (const unsigned char *)data + len, out, err, errlen};
    size_t start = out ? out->len : 0;
    int rc;

    rc = dec_value(&d, s->root, 0);
    if (rc == 0 && out != NULL && (out->err != 0)) {
        rc = out->err;
    }
    if (rc == 0 && d.p != d.end) {
        set_err(err, errlen, "%lld bytes left after the record",
                (long long)(d.end - d.p));
        rc = -EBADMSG;
    }
    if (rc == -EMSGSIZE) {
        set_err(err, errlen, "the record decodes to more than %zu bytes",
                out->max);
    }
    if (rc < 0 && out != NULL && out->err != -ENOMEM) {
        out->err = 0;
        out->len = start; /* the caller's buffer as it was */
        if (out->p != NULL) {
            out->p[start] = '\0';
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- OCF */

static void put_meta(struct sbuf *b, const char *k, const char *v)
{
    avro_put_string(b, k, strlen(k));
    avro_put_string(b, v, strlen(v));
}

void avro_ocf_header(struct sbuf *b, const char *schema_json,
                     const unsigned char sync[16])
{
    sbuf_add(b, "Obj\x01", 4);
    avro_put_long(b, 2);
    put_meta(b, "avro.schema", schema_json);
    put_meta(b, "avro.codec", "null");
    avro_put_long(b, 0);
    sbuf_add(b, sync, 16);
}

void avro_ocf_block(struct sbuf *b, int64_t count, const void *data, size_t len,
                    const unsigned char sync[16])
{
    avro_put_long(b, count);
    avro_put_long(b, (int64_t)len);
    sbuf_add(b, data, len);
    sbuf_add(b, sync, 16);
}

static int inflate_raw(const unsigned char *in, size_t n, unsigned char **out,
                       size_t *outlen, size_t cap)
{
    z_stream z;
    size_t size = n * 4 + 1024;
    unsigned char *buf = NULL;
    int rc;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -15) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    for (;;) {
        unsigned char *p;

        if (size > cap) {
            size = cap;
        }
        p = realloc(buf, size);
        if (p == NULL) {
            rc = -ENOMEM;
            break;
        }
        buf = p;
        z.next_out = buf + z.total_out;
        z.avail_out = (uInt)(size - z.total_out);
        rc = inflate(&z, Z_FINISH);
        if (rc == Z_STREAM_END) {
            *out = buf;
            *outlen = z.total_out;
            inflateEnd(&z);
            return 0;
        }
        if ((rc != Z_BUF_ERROR && rc != Z_OK) || z.avail_out != 0) {
            rc = -EBADMSG;
            break;
        }
        if (size >= cap) {
            rc = -EMSGSIZE;
            break;
        }
        size *= 2;
    }
    free(buf);
    inflateEnd(&z);
    return rc;
}

/* Reads the metadata map of an object container file's header: the
 * schema (*schema_text, owned: the caller frees it, also after an error)
 * and the codec (*deflate). 0 or a negative errno with err filled. */
static int ocf_meta(struct dec *d, char **schema_text, int *deflate, char *err,
                    size_t errlen)
{
    int rc;

    for (;;) {
        int64_t count;

        if ((rc = read_long(d, &count)) < 0) {
            return rc;
        }
        if (count == 0) {
            break;
        }
        if (count < 0) {
            int64_t size;

            count = count == INT64_MIN ? 0 : -count;
            if ((rc = read_long(d, &size)) < 0) {
                return rc;
            }
        }
        for (int64_t i = 0; i < count; i++) {
            int64_t kl, vl;
            const unsigned char *k, *v;

            if ((rc = read_long(d, &kl)) < 0 ||
                (rc = need(d, kl, "a metadata key")) < 0) {
                return rc;
            }
            k = d->p;
            d->p += kl;
            if ((rc = read_long(d, &vl)) < 0 ||
                (rc = need(d, vl, "a metadata value")) < 0) {
                return rc;
            }
            v = d->p;
            d->p += vl;
            if (kl == 11 && memcmp(k, "avro.schema", 11) == 0) {
                free(*schema_text);
                *schema_text = strndup((const char *)v, (size_t)vl);
                if (*schema_text == NULL) {
                    return -ENOMEM;
                }
            } else if (kl == 10 && memcmp(k, "avro.codec", 10) == 0) {
                if (vl == 7 && memcmp(v, "deflate", 7) == 0) {
                    *deflate = 1;
                } else if (!(vl == 4 && memcmp(v, "null", 4) == 0)) {
                    set_err(err, errlen, "unsupported avro.codec '%.*s'",
                            (int)(vl > 32 ? 32 : vl), (const char *)v);
                    return -EBADMSG;
                }
            }
        }
    }
    return 0;
}

int avro_ocf_read(const void *data, size_t len, size_t max_json,
                  int (*row)(void *arg, const char *json, size_t len),
                  void *arg, char *err, size_t errlen)
{
    struct dec d = {data, (const unsigned char *)data + len, NULL, err, errlen};
    struct avro_schema *schema = NULL;
    struct sbuf js = {.max = max_json};
    char *schema_text = NULL;
    int deflate = 0;
    const unsigned char *sync;
    int rc;

    if (len < 4 || memcmp(data, "Obj\x01", 4) != 0) {
        set_err(err, errlen, "not an Avro object container file (no 'Obj' 1)");
        return -EBADMSG;
    }
    d.p += 4;
    if ((rc = ocf_meta(&d, &schema_text, &deflate, err, errlen)) < 0) {
        goto done;
    }
    if (schema_text == NULL) {
        set_err(err, errlen, "no avro.schema in the file header");
        rc = -EBADMSG;
        goto done;
    }
    if ((rc = avro_schema_parse(schema_text, &schema, err, errlen)) < 0) {
        rc = rc == -ENOMEM ? rc : -EBADMSG;
        goto done;
    }
    if ((rc = need(&d, 16, "the sync marker")) < 0) {
        goto done;
    }
    sync = d.p;
    d.p += 16;
    while (d.p < d.end) {
        int64_t count, size;
        const unsigned char *blk;
        unsigned char *inflated = NULL;
        size_t blen;
        struct dec bd;

        if ((rc = read_long(&d, &count)) < 0 ||
            (rc = read_long(&d, &size)) < 0 ||
            (rc = need(&d, size, "a block")) < 0) {
            goto done;
        }
        if (count < 0) {
            set_err(err, errlen, "a negative block count");
            rc = -EBADMSG;
            goto done;
        }
        blk = d.p;
        blen = (size_t)size;
        d.p += size;
        if ((rc = need(&d, 16, "a block's sync marker")) < 0) {
            goto done;
        }
        if (memcmp(d.p, sync, 16) != 0) {
            set_err(err, errlen, "a block's sync marker does not match");
            rc = -EBADMSG;
            goto done;
        }
        d.p += 16;
        if (deflate) {
            rc = inflate_raw(blk, blen, &inflated, &blen, 256u << 20);
            if (rc < 0) {
                set_err(err, errlen, "a deflate block does not inflate");
                goto done;
            }
            blk = inflated;
        }
        bd = (struct dec){blk, blk + blen, &js, err, errlen};
        for (int64_t i = 0; i < count; i++) {
            js.len = 0;
            rc = dec_value(&bd, schema->root, 0);
            if (rc == 0 && (js.err != 0)) {
                rc = js.err;
                set_err(err, errlen, "a record over %zu bytes of JSON",
                        max_json);
            }
            if (rc == 0) {
                rc = row(arg, js.p, js.len);
            }
            if (rc < 0) {
                free(inflated);
                goto done;
            }
        }
        if (bd.p != bd.end) {
            set_err(err, errlen, "a block holds more bytes than its records");
            rc = -EBADMSG;
            free(inflated);
            goto done;
        }
        free(inflated);
    }
    rc = 0;
done:
    sbuf_release(&js);
    avro_schema_free(schema);
    free(schema_text);
    return rc;
}
