/*
 * srbody.c - bodies for Schema Registry routes (srbody.h). Worker thread
 * (any thread): reads only the batch, the route config and immutable
 * registry entries.
 */
#include "gateway/srbody.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/avro.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/registry.h"
#include "storage/journal.h"

/* one decoded record, JSON text, at most this much (a Kafka message is
 * at most a few MiB; its JSON may be larger, but not unboundedly) */
#define SRBODY_MAX_JSON (16u << 20)

int srbody_route_uses_registry(const struct config_route *r)
{
    return r->value_converter != NULL ||
           (r->key_converter != NULL && r->meta.key != NULL);
}

static int keys_decoded(const struct config_route *r)
{
    return r->key_converter != NULL && r->meta.key != NULL;
}

static int add_id(int32_t **ids, size_t *n, size_t *cap, int32_t id)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*ids)[i] == id) {
            return 0;
        }
    }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        int32_t *p = realloc(*ids, nc * sizeof(*p));

        if (p == NULL) {
            return -ENOMEM;
        }
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

int srbody_ids(const struct config_route *r, const struct journal_event *ev,
               size_t n, int32_t **ids, size_t *nids)
{
    size_t cap = 0;
    int32_t id;

    *ids = NULL;
    *nids = 0;
    for (size_t i = 0; i < n; i++) {
        if (r->value_converter != NULL &&
            registry_frame(ev[i].value, ev[i].value_len, &id) == 0 &&
            add_id(ids, nids, &cap, id) < 0) {
            goto oom;
        }
        if (keys_decoded(r) &&
            registry_frame(ev[i].key, ev[i].key_len, &id) == 0 &&
            add_id(ids, nids, &cap, id) < 0) {
            goto oom;
        }
    }
    return 0;
oom:
    free(*ids);
    *ids = NULL;
    *nids = 0;
    return -ENOMEM;
}

static const struct registry_entry *lookup(const struct srbody_schema *s,
                                           size_t n, int32_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].id == id) {
            return s[i].e;
        }
    }
    return NULL;
}

static int bad_add(struct forwarder_bad **bl, size_t *nb, size_t *cap,
                   size_t index, const char *what, const char *why)
{
    if (*nb == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        struct forwarder_bad *p = realloc(*bl, nc * sizeof(*p));

        if (p == NULL) {
            return -ENOMEM;
        }
        *bl = p;
        *cap = nc;
    }
    (*bl)[*nb].index = index;
    /* a long reason is cut (the result is checked so gcc -O2 accepts it) */
    if (snprintf((*bl)[*nb].reason, sizeof((*bl)[*nb].reason), "%s%s%s", what,
                 why[0] ? ": " : "", why) < 0) {
        (*bl)[*nb].reason[0] = '\0';
    }
    (*nb)++;
    return 0;
}

/*
 * Resolves one framed datum: the entry (OK) or a reason. For Avro with
 * out != NULL, the decoded JSON is appended to out.
 */
static int resolve(const struct config_route *r, const void *data, size_t len,
                   const char *conv, const struct srbody_schema *schemas,
                   size_t nschemas, const struct registry_entry **ent,
                   struct sbuf *out, char *why, size_t whylen)
{
    const struct registry_entry *e;
    int32_t id;
    int rc;

    (void)r;
    if (registry_frame(data, len, &id) < 0) {
        snprintf(why, whylen,
                 "no schema registry framing (magic byte 0 and a 4-byte "
                 "schema id)");
        return -EBADMSG;
    }
    e = lookup(schemas, nschemas, id);
    if (e == NULL || e->state != REGISTRY_OK) {
        snprintf(why, whylen, "%s",
                 e != NULL ? e->reason : "schema id not resolved");
        return -EBADMSG;
    }
    *ent = e;
    if (strcmp(conv, "avro") == 0) {
        if (e->avro == NULL) {
            snprintf(why, whylen,
                     "schema id %d is a JSON Schema, the route expects Avro",
                     (int)id);
            return -EBADMSG;
        }
        rc = avro_to_json(e->avro, (const char *)data + 5, len - 5, out, why,
                          whylen);
        if (rc == -ENOMEM) {
            return rc;
        }
        if (rc < 0) {
            char tmp[160];

            snprintf(tmp, sizeof(tmp), "does not decode with schema id %d: %s",
                     (int)id, why);
            snprintf(why, whylen, "%s", tmp);
            return -EBADMSG;
        }
        return 0;
    }
    if (e->avro != NULL) {
        snprintf(why, whylen,
                 "schema id %d is an Avro schema, the route expects JSON "
                 "Schema",
                 (int)id);
        return -EBADMSG;
    }
    if (out != NULL) {
        sbuf_add(out, (const char *)data + 5, len - 5);
        if (out->err == -ENOMEM) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* A decoded key as meta.key text: a JSON string's content, else the JSON */
static void key_text(struct sbuf *kb, size_t start)
{
    cJSON *j;
    char *s;

    if (kb->len - start < 2 || kb->p[start] != '"') {
        return;
    }
    j = cJSON_Parse(kb->p + start);
    if (cJSON_IsString(j)) {
        s = j->valuestring;
        kb->len = start;
        sbuf_add(kb, s, strlen(s));
    }
    cJSON_Delete(j);
}

/* format json/multijson: decode, then the plain JSON builder */
static int build_json(const struct config_route *r, const char *batch_id,
                      const struct journal_event *events, size_t n,
                      const struct srbody_schema *schemas, size_t nschemas,
                      char **body, size_t *len, struct forwarder_bad **bad,
                      size_t *nbad)
{
    struct journal_event *ev = NULL;
    size_t *orig = NULL, *voff = NULL, *koff = NULL, *klen = NULL;
    struct sbuf vb = {0}, kb = {0};
    struct forwarder_bad *bl = NULL, *inner = NULL;
    size_t nb = 0, capb = 0, ninner = 0, ngood = 0;
    char why[160];
    int rc = -ENOMEM;

    ev = calloc(n ? n : 1, sizeof(*ev));
    orig = calloc(n ? n : 1, sizeof(*orig));
    voff = calloc(n ? n : 1, sizeof(*voff));
    koff = calloc(n ? n : 1, sizeof(*koff));
    klen = calloc(n ? n : 1, sizeof(*klen));
    if (ev == NULL || orig == NULL || voff == NULL || koff == NULL ||
        klen == NULL) {
        goto out;
    }
    vb.max = SRBODY_MAX_JSON;
    kb.max = SRBODY_MAX_JSON;
    for (size_t i = 0; i < n; i++) {
        const struct registry_entry *e = NULL;
        size_t vstart = vb.len, kstart = kb.len;

        if (r->value_converter != NULL) {
            rc = resolve(r, events[i].value, events[i].value_len,
                         r->value_converter, schemas, nschemas, &e, &vb, why,
                         sizeof(why));
        } else {
            sbuf_add(&vb, events[i].value, events[i].value_len);
            rc = vb.err == -ENOMEM ? -ENOMEM : 0;
        }
        if (rc == -ENOMEM) {
            goto out;
        }
        if (rc < 0) {
            if (bad_add(&bl, &nb, &capb, i, "value", why) < 0) {
                rc = -ENOMEM;
                goto out;
            }
            continue;
        }
        if (keys_decoded(r) && events[i].key != NULL) {
            rc = resolve(r, events[i].key, events[i].key_len, r->key_converter,
                         schemas, nschemas, &e, &kb, why, sizeof(why));
            if (rc == -ENOMEM) {
                goto out;
            }
            if (rc < 0) {
                vb.len = vstart;
                if (bad_add(&bl, &nb, &capb, i, "key", why) < 0) {
                    rc = -ENOMEM;
                    goto out;
                }
                continue;
            }
            key_text(&kb, kstart);
        }
        ev[ngood] = events[i];
        orig[ngood] = i;
        voff[ngood] = vstart;
        ev[ngood].value_len = vb.len - vstart;
        if (keys_decoded(r) && events[i].key != NULL) {
            koff[ngood] = kstart;
            klen[ngood] = kb.len - kstart;
        }
        ngood++;
    }
    if (vb.err == -ENOMEM || kb.err == -ENOMEM) {
        rc = -ENOMEM;
        goto out;
    }
    /* the buffers do not move any more: point the events into them */
    for (size_t g = 0; g < ngood; g++) {
        ev[g].value = vb.p != NULL ? vb.p + voff[g] : "";
        if (keys_decoded(r) && ev[g].key != NULL) {
            ev[g].key = kb.p != NULL ? kb.p + koff[g] : "";
            ev[g].key_len = klen[g];
        }
    }
    rc = forwarder_build_body(r, batch_id, ev, ngood, body, len, &inner,
                              &ninner);
    if (rc < 0) {
        goto out;
    }
    for (size_t k = 0; k < ninner; k++) {
        if (bad_add(&bl, &nb, &capb, orig[inner[k].index], "decoded record",
                    inner[k].reason) < 0) {
            free(*body);
            *body = NULL;
            rc = -ENOMEM;
            goto out;
        }
    }
    rc = 0;
out:
    free(inner);
    free(ev);
    free(orig);
    free(voff);
    free(koff);
    free(klen);
    sbuf_release(&vb);
    sbuf_release(&kb);
    if (rc < 0) {
        free(bl);
        return rc;
    }
    *bad = bl;
    *nbad = nb;
    return 0;
}

/* ---- format avro */

static int route_meta_any(const struct config_route *r)
{
    const struct config_meta *m = &r->meta;

    return m->topic || m->partition || m->offset || m->timestamp || m->key ||
           m->batch_id;
}

static int add_field(cJSON *fields, const char *name, const char *type,
                     int nullable)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *t;

    if (f == NULL || !cJSON_AddItemToArray(fields, f) ||
        cJSON_AddStringToObject(f, "name", name) == NULL) {
        return -ENOMEM;
    }
    if (nullable) {
        t = cJSON_CreateArray();
        if (t == NULL || !cJSON_AddItemToObject(f, "type", t) ||
            !cJSON_AddItemToArray(t, cJSON_CreateString("null")) ||
            !cJSON_AddItemToArray(t, cJSON_CreateString(type))) {
            return -ENOMEM;
        }
        return 0;
    }
    return cJSON_AddStringToObject(f, "type", type) ? 0 : -ENOMEM;
}

/* The writer schema with the route's metadata fields appended; owned text,
 * or NULL with a reason (not a record, a name clash) or on ENOMEM. */
static char *schema_with_meta(const struct config_route *r, const char *text,
                              char *why, size_t whylen)
{
    const struct config_meta *m = &r->meta;
    const struct {
        const char *name, *type;
        int nullable;
    } add[] = {
        {m->topic, "string", 0}, {m->partition, "int", 0},
        {m->offset, "long", 0},  {m->timestamp, "string", 0},
        {m->key, "string", 1},   {m->batch_id, "string", 0},
    };
    cJSON *j = cJSON_Parse(text);
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
    const cJSON *f;
    char *out = NULL;

    snprintf(why, whylen, "out of memory");
    if (!cJSON_IsArray(fields)) {
        snprintf(why, whylen,
                 "the writer schema is not a record (metadata fields cannot "
                 "be added)");
        goto done;
    }
    for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++) {
        if (add[i].name == NULL) {
            continue;
        }
        cJSON_ArrayForEach(f, fields)
        {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(f, "name");

            if (cJSON_IsString(fn) &&
                strcmp(fn->valuestring, add[i].name) == 0) {
                snprintf(why, whylen,
                         "the writer schema already has a field '%.60s' (a "
                         "metadata field name)",
                         add[i].name);
                goto done;
            }
        }
        if (add_field(fields, add[i].name, add[i].type, add[i].nullable) < 0) {
            goto done;
        }
    }
    out = cJSON_PrintUnformatted(j);
done:
    cJSON_Delete(j);
    return out;
}

static void put_iso(struct sbuf *b, int64_t ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    char buf[40], s[48];
    int k;

    gmtime_r(&secs, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(s, sizeof(s), "%s.%03dZ", buf, frac);
    avro_put_string(b, s, (size_t)k);
}

static void put_meta(struct sbuf *b, const struct config_route *r,
                     const char *batch_id, const struct journal_event *ev,
                     const char *key, size_t keylen)
{
    const struct config_meta *m = &r->meta;

    if (m->topic) {
        avro_put_string(b, ev->topic, strlen(ev->topic));
    }
    if (m->partition) {
        avro_put_long(b, ev->partition);
    }
    if (m->offset) {
        avro_put_long(b, ev->offset);
    }
    if (m->timestamp) {
        put_iso(b, ev->timestamp_ms);
    }
    if (m->key) {
        if (key == NULL) {
            avro_put_long(b, 0);
        } else {
            avro_put_long(b, 1);
            avro_put_string(b, key, keylen);
        }
    }
    if (m->batch_id) {
        avro_put_string(b, batch_id, strlen(batch_id));
    }
}

/* 1 when the bytes are valid UTF-8 (the key field is an Avro string) */
static int utf8_ok(const unsigned char *s, size_t n)
{
    char why[8];
    struct sbuf probe = {0};
    struct avro_schema *str = NULL;
    struct sbuf enc = {0};
    int ok;

    /* decode it as an Avro string: the decoder's UTF-8 check */
    if (avro_schema_parse("\"string\"", &str, why, sizeof(why)) < 0) {
        return 0;
    }
    avro_put_string(&enc, s, n);
    ok = enc.err != -ENOMEM &&
         avro_to_json(str, enc.p, enc.len, NULL, why, sizeof(why)) == 0;
    avro_schema_free(str);
    sbuf_release(&enc);
    sbuf_release(&probe);
    return ok;
}

/* Where the events' writer schema changes (the framing id, -1 for an
 * unframed value): the index of the first event of another schema, or 0
 * when they all share the first one's. */
static size_t schema_split(const struct journal_event *events, size_t n)
{
    int32_t id0 = -1, id;

    for (size_t i = 0; i < n; i++) {
        int32_t k =
            registry_frame(events[i].value, events[i].value_len, &id) == 0 ? id
                                                                           : -1;

        if (i == 0) {
            id0 = k;
        } else if (k != id0) {
            return i;
        }
    }
    return 0;
}

/* The OCF sync marker from the batch id: a resend is the same body. */
static void sync_marker(const char *batch_id, unsigned char sync[16])
{
    uint64_t h1 = 1469598103934665603ull, h2 = 0x9e3779b97f4a7c15ull;

    for (const char *p = batch_id; *p != '\0'; p++) {
        h1 = (h1 ^ (unsigned char)*p) * 1099511628211ull;
        h2 = (h2 ^ (unsigned char)*p) * 0xff51afd7ed558ccdull;
    }
    memcpy(sync, &h1, 8);
    memcpy(sync + 8, &h2, 8);
}

static int build_avro(const struct config_route *r, const char *batch_id,
                      const struct journal_event *events, size_t n,
                      const struct srbody_schema *schemas, size_t nschemas,
                      char **body, size_t *len, struct forwarder_bad **bad,
                      size_t *nbad, size_t *split_at)
{
    struct sbuf recs = {0};
    struct sbuf kb = {.max = SRBODY_MAX_JSON};
    struct sbuf out = {0};
    struct forwarder_bad *bl = NULL;
    size_t nb = 0, capb = 0, count = 0;
    const struct registry_entry *first = NULL;
    char *schema_text = NULL;
    unsigned char sync[16];
    char why[160];
    int rc = -ENOMEM;

    /* one writer schema per request: split where the framing id changes */
    *split_at = schema_split(events, n); /* 0 already (srbody_build) */
    if (*split_at > 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct registry_entry *e = NULL, *ke = NULL;
        const char *key = NULL;
        size_t keylen = 0;

        rc = resolve(r, events[i].value, events[i].value_len, "avro", schemas,
                     nschemas, &e, NULL, why, sizeof(why));
        if (rc == -ENOMEM) {
            goto out;
        }
        if (rc == 0 && first == NULL) {
            schema_text = route_meta_any(r)
                              ? schema_with_meta(r, e->text, why, sizeof(why))
                              : strdup(e->text);
            if (schema_text == NULL) {
                rc = -EBADMSG; /* every record of this schema: reason set */
            } else {
                first = e;
            }
        }
        if (rc == 0 && r->meta.key != NULL && events[i].key != NULL) {
            if (keys_decoded(r)) {
                kb.len = 0;
                rc = resolve(r, events[i].key, events[i].key_len,
                             r->key_converter, schemas, nschemas, &ke, &kb, why,
                             sizeof(why));
                if (rc == -ENOMEM) {
                    goto out;
                }
                if (rc == 0) {
                    key_text(&kb, 0);
                    key = kb.p;
                    keylen = kb.len;
                }
            } else if (utf8_ok(events[i].key, events[i].key_len)) {
                key = events[i].key;
                keylen = events[i].key_len;
            } else {
                snprintf(why, sizeof(why), "the key is not UTF-8 text");
                rc = -EBADMSG;
            }
            if (rc < 0) {
                if (bad_add(&bl, &nb, &capb, i, "key", why) < 0) {
                    rc = -ENOMEM;
                    goto out;
                }
                continue;
            }
        }
        if (rc < 0) {
            if (bad_add(&bl, &nb, &capb, i, "value", why) < 0) {
                rc = -ENOMEM;
                goto out;
            }
            continue;
        }
        sbuf_add(&recs, (const char *)events[i].value + 5,
                 events[i].value_len - 5);
        put_meta(&recs, r, batch_id, &events[i], key, keylen);
        count++;
    }
    if (recs.err == -ENOMEM || kb.err == -ENOMEM) {
        rc = -ENOMEM;
        goto out;
    }
    if (count > 0) {
        sync_marker(batch_id, sync);
        avro_ocf_header(&out, schema_text, sync);
        avro_ocf_block(&out, (int64_t)count, recs.p, recs.len, sync);
        if (out.err == -ENOMEM) {
            rc = -ENOMEM;
            goto out;
        }
    } else {
        out.p = calloc(1, 1);
        if (out.p == NULL) {
            rc = -ENOMEM;
            goto out;
        }
    }
    *body = out.p;
    *len = out.len;
    out.p = NULL;
    rc = 0;
out:
    free(schema_text);
    sbuf_release(&recs);
    sbuf_release(&kb);
    sbuf_release(&out);
    if (rc < 0) {
        free(bl);
        return rc;
    }
    *bad = bl;
    *nbad = nb;
    return 0;
}

static int bad_cmp(const void *a, const void *b)
{
    const struct forwarder_bad *x = a, *y = b;

    return x->index < y->index ? -1 : x->index > y->index;
}

int srbody_build(const struct config_route *r, const char *batch_id,
                 const struct journal_event *events, size_t n,
                 const struct srbody_schema *schemas, size_t nschemas,
                 char **body, size_t *len, struct forwarder_bad **bad,
                 size_t *nbad, size_t *split_at)
{
    *body = NULL;
    *len = 0;
    *bad = NULL;
    *nbad = 0;
    *split_at = 0;
    int rc;

    if (strcmp(r->format, "avro") == 0) {
        rc = build_avro(r, batch_id, events, n, schemas, nschemas, body, len,
                        bad, nbad, split_at);
    } else {
        rc = build_json(r, batch_id, events, n, schemas, nschemas, body, len,
                        bad, nbad);
    }
    if (rc == 0 && *nbad > 1) {
        qsort(*bad, *nbad, sizeof(**bad), bad_cmp);
    }
    return rc;
}
