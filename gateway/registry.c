/*
 * registry.c - Schema Registry client and schema cache (registry.h).
 *
 * One HTTP client (struct adx) per registry configuration (URL + CA +
 * timeout), made on first use; one cache entry per (url, id), never
 * evicted (a topic's schemas are few; entries are small). A waiter is a
 * registry_fetch() call waiting for its ids: each completed GET looks at
 * every waiter and calls back the ones it settles. Loop thread only.
 */
#include "gateway/registry.h"
#include "base/base64.h"
#include "base/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/adx.h"
#include "gateway/avro.h"
#include "gateway/config.h"
#include "gateway/log.h"
#include "storage/journal.h"

#define REGISTRY_MAX_RESPONSE (1024 * 1024) /* a schema's JSON, capped */

struct rclient {
    const struct config_registry *g; /* borrowed (the config outlives us) */
    struct adx *adx;
    char *auth_header; /* "Authorization: Basic ..."; secret; NULL = none */
};

struct rentry {
    char *url;
    struct registry_entry e;
};

struct waiter {
    const struct config_registry *g;
    int32_t *ids;
    size_t n;
    registry_cb cb;
    void *arg;
    struct waiter *next;
};

struct rget {
    struct registry *r;
    struct rentry *ent;
};

struct registry {
    uv_loop_t *loop;
    struct journal *journal; /* borrowed; NULL = memory only */
    struct rclient *clients;
    size_t nclients;
    struct rentry **entries;
    size_t nentries, capentries;
    struct waiter *waiters;
    int closing;
    char last_error[200];
};

int registry_frame(const void *data, size_t len, int32_t *id)
{
    const unsigned char *p = data;

    if (data == NULL || len < 5 || p[0] != 0) {
        return -EBADMSG;
    }
    *id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 8 | (uint32_t)p[4]);
    return 0;
}

int registry_new(uv_loop_t *loop, struct journal *journal,
                 struct registry **out, char *err, size_t errlen)
{
    struct registry *r = calloc(1, sizeof(*r));

    *out = NULL;
    if (r == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->loop = loop;
    r->journal = journal;
    *out = r;
    return 0;
}

static void waiter_free(struct waiter *w)
{
    free(w->ids);
    free(w);
}

void registry_free(struct registry *r)
{
    if (r == NULL) {
        return;
    }
    r->closing = 1;
    /* adx_free runs every in-flight callback with -ECANCELED first */
    for (size_t i = 0; i < r->nclients; i++) {
        adx_free(r->clients[i].adx);
        free(r->clients[i].auth_header);
    }
    free(r->clients);
    while (r->waiters != NULL) {
        struct waiter *w = r->waiters;

        r->waiters = w->next;
        w->cb(w->arg, -ECANCELED, "the registry client is closing");
        waiter_free(w);
    }
    for (size_t i = 0; i < r->nentries; i++) {
        free(r->entries[i]->url);
        free(r->entries[i]->e.text);
        avro_schema_free(r->entries[i]->e.avro);
        free(r->entries[i]);
    }
    free(r->entries);
    free(r);
}

static struct rentry *find(struct registry *r, const char *url, int32_t id)
{
    for (size_t i = 0; i < r->nentries; i++) {
        struct rentry *e = r->entries[i];

        if (e->e.id == id && strcmp(e->url, url) == 0) {
            return e;
        }
    }
    return NULL;
}

const struct registry_entry *
registry_get(struct registry *r, const struct config_registry *g, int32_t id)
{
    struct rentry *e = find(r, g->url, id);

    return e != NULL ? &e->e : NULL;
}

const char *registry_last_error(const struct registry *r)
{
    return r->last_error;
}

static char *basic_header(const char *userinfo)
{
    const char *pre = "Authorization: Basic ";
    size_t n = strlen(userinfo), k = strlen(pre);
    char *h = malloc(k + base64_len(n) + 1);

    if (h == NULL) {
        return NULL;
    }
    memcpy(h, pre, k);
    base64_encode(h + k, userinfo, n);
    /* the encoded credential is as secret as the clear one */
    log_add_secret(h + k);
    return h;
}

static struct rclient *client_for(struct registry *r,
                                  const struct config_registry *g, char *err,
                                  size_t errlen)
{
    struct adx_options ao;
    struct rclient *c;

    for (size_t i = 0; i < r->nclients; i++) {
        if (r->clients[i].g == g) {
            return &r->clients[i];
        }
    }
    c = realloc(r->clients, (r->nclients + 1) * sizeof(*c));
    if (c == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    r->clients = c;
    c = &r->clients[r->nclients];
    memset(c, 0, sizeof(*c));
    memset(&ao, 0, sizeof(ao));
    ao.app = "kadx";
    ao.timeout_ms = (long)g->timeout_ms;
    ao.connect_timeout_ms = (long)g->timeout_ms;
    ao.max_response = REGISTRY_MAX_RESPONSE;
    ao.ca_file = g->ca_file;
    if (g->basic_auth != NULL) {
        c->auth_header = basic_header(g->basic_auth);
        if (c->auth_header == NULL) {
            set_err(err, errlen, "out of memory");
            return NULL;
        }
    }
    if (adx_new(r->loop, &ao, &c->adx, err, errlen) < 0) {
        free(c->auth_header);
        return NULL;
    }
    c->g = g;
    r->nclients++;
    return c;
}

/* 1 = every id of w settled, -1 = one failed, 0 = still waiting */
static int waiter_state(struct registry *r, const struct waiter *w)
{
    int waiting = 0;

    for (size_t i = 0; i < w->n; i++) {
        struct rentry *e = find(r, w->g->url, w->ids[i]);

        if (e == NULL || e->e.state == REGISTRY_FAILED) {
            return -1;
        }
        if (e->e.state == REGISTRY_FETCHING) {
            waiting = 1;
        }
    }
    return waiting ? 0 : 1;
}

static void wake_waiters(struct registry *r)
{
    struct waiter **pp = &r->waiters;

    while (*pp != NULL) {
        struct waiter *w = *pp;
        int st = waiter_state(r, w);

        if (st == 0) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->cb(w->arg, st > 0 ? 0 : -EAGAIN, r->last_error);
        waiter_free(w);
        if (r->closing) {
            return;
        }
        pp = &r->waiters; /* the callback may have added waiters */
    }
}

/* Sets ent from a schema text and its type ("AVRO" when NULL) */
static void take_text(struct rentry *ent, const char *text, const char *type)
{
    char why[128];

    ent->e.text = strdup(text);
    if (ent->e.text == NULL) {
        ent->e.state = REGISTRY_FAILED;
        snprintf(ent->e.reason, sizeof(ent->e.reason), "out of memory");
        return;
    }
    if (type != NULL && strcmp(type, "JSON") == 0) {
        ent->e.json_schema = 1;
        ent->e.state = REGISTRY_OK;
    } else if (type != NULL && strcmp(type, "AVRO") != 0) {
        ent->e.state = REGISTRY_UNKNOWN;
        snprintf(ent->e.reason, sizeof(ent->e.reason),
                 "schema id %d is of type %.20s (kadx reads AVRO and JSON)",
                 (int)ent->e.id, type);
    } else if (avro_schema_parse(ent->e.text, &ent->e.avro, why, sizeof(why)) <
               0) {
        ent->e.state = REGISTRY_UNKNOWN;
        snprintf(ent->e.reason, sizeof(ent->e.reason),
                 "schema id %d does not parse: %.100s", (int)ent->e.id, why);
    } else {
        ent->e.state = REGISTRY_OK;
    }
}

static void on_persisted(void *arg, int status, int64_t count, const char *err)
{
    (void)arg;
    (void)count;
    if (status < 0 && status != -ECANCELED) {
        log_warn("registry", "cannot keep a schema in the journal: %s", err);
    }
}

/* Takes the body of a 200 answer: {"schema": "...", "schemaType": ...} */
static void take_schema(struct registry *r, struct rentry *ent,
                        const struct adx_response *res)
{
    cJSON *j = cJSON_ParseWithLength(res->body, res->body_len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "schema");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "schemaType");
    const char *type = cJSON_IsString(t) ? t->valuestring : "AVRO";

    if (res->truncated || !cJSON_IsString(s)) {
        ent->e.state = REGISTRY_UNKNOWN;
        snprintf(ent->e.reason, sizeof(ent->e.reason),
                 "schema id %d: the registry's answer has no 'schema'",
                 (int)ent->e.id);
        cJSON_Delete(j);
        return;
    }
    take_text(ent, s->valuestring, type);
    if (ent->e.state == REGISTRY_OK && r->journal != NULL &&
        journal_schema_put_async(r->journal, ent->url, ent->e.id, type,
                                 ent->e.text, (int64_t)time(NULL) * 1000,
                                 on_persisted, NULL) < 0) {
        log_warn("registry", "cannot keep schema id %d in the journal",
                 (int)ent->e.id);
    }
    cJSON_Delete(j);
}

static void on_get(void *arg, const struct adx_response *res)
{
    struct rget *g = arg;
    struct registry *r = g->r;
    struct rentry *ent = g->ent;

    free(g);
    if (res->status == 200) {
        take_schema(r, ent, res);
        r->last_error[0] = '\0';
        if (ent->e.state == REGISTRY_OK) {
            log_info("registry", "schema id %d fetched (%s, %zu bytes)",
                     (int)ent->e.id, ent->e.json_schema ? "JSON" : "AVRO",
                     strlen(ent->e.text));
        }
    } else if (res->status == 404) {
        ent->e.state = REGISTRY_UNKNOWN;
        snprintf(ent->e.reason, sizeof(ent->e.reason),
                 "unknown schema id %d (the registry answered 404)",
                 (int)ent->e.id);
        r->last_error[0] = '\0';
    } else {
        ent->e.state = REGISTRY_FAILED;
        if (res->status != 0) {
            snprintf(r->last_error, sizeof(r->last_error),
                     "schema registry answered HTTP %ld for schema id %d",
                     res->status, (int)ent->e.id);
        } else {
            snprintf(r->last_error, sizeof(r->last_error),
                     "schema registry unreachable (schema id %d): %.120s",
                     (int)ent->e.id, res->errmsg ? res->errmsg : "");
        }
        snprintf(ent->e.reason, sizeof(ent->e.reason), "%.150s", r->last_error);
        if (!r->closing) {
            log_warn("registry", "%s", r->last_error);
        }
    }
    if (!r->closing) {
        wake_waiters(r);
    }
}

static int start_get(struct registry *r, const struct config_registry *g,
                     struct rentry *ent, char *err, size_t errlen)
{
    struct rclient *c = client_for(r, g, err, errlen);
    struct adx_request_spec spec;
    const char *headers[3];
    char url[2048];
    struct rget *get;
    size_t ul = strlen(g->url);
    int rc;

    if (c == NULL) {
        return -ENOMEM;
    }
    while (ul > 0 && g->url[ul - 1] == '/') {
        ul--;
    }
    snprintf(url, sizeof(url), "%.*s/schemas/ids/%d", (int)ul, g->url,
             (int)ent->e.id);
    headers[0] = "Accept: application/vnd.schemaregistry.v1+json, "
                 "application/json";
    headers[1] = c->auth_header;
    headers[2] = NULL;
    memset(&spec, 0, sizeof(spec));
    spec.method = "GET";
    spec.url = url;
    spec.headers = headers;
    spec.timeout_ms = (long)g->timeout_ms;
    get = malloc(sizeof(*get));
    if (get == NULL) {
        return -ENOMEM;
    }
    get->r = r;
    get->ent = ent;
    ent->e.state = REGISTRY_FETCHING;
    rc = adx_request(c->adx, &spec, on_get, get, err, errlen);
    if (rc < 0) {
        free(get);
        ent->e.state = REGISTRY_FAILED;
    }
    return rc;
}

/* A new FAILED entry for (g->url, id), or NULL on ENOMEM */
static struct rentry *entry_add(struct registry *r,
                                const struct config_registry *g, int32_t id)
{
    struct rentry *e;

    if (r->nentries == r->capentries) {
        size_t nc = r->capentries ? r->capentries * 2 : 16;
        struct rentry **a = realloc(r->entries, nc * sizeof(*a));

        if (a == NULL) {
            return NULL;
        }
        r->entries = a;
        r->capentries = nc;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->url = strdup(g->url)) == NULL) {
        free(e);
        return NULL;
    }
    e->e.id = id;
    e->e.state = REGISTRY_FAILED;
    r->entries[r->nentries++] = e;
    return e;
}

/* An id not in memory: the journal's copy, if it has one */
static int from_journal(struct registry *r, const struct config_registry *g,
                        int32_t id)
{
    char *type = NULL, *text = NULL;
    char err[200];
    struct rentry *e;
    int rc;

    if (r->journal == NULL) {
        return 0;
    }
    rc = journal_schema_get(r->journal, g->url, id, &type, &text, err,
                            sizeof(err));
    if (rc == -ENOENT) {
        return 0;
    }
    if (rc < 0) {
        log_warn("registry", "schema id %d: journal read failed: %s", (int)id,
                 err);
        return 0;
    }
    e = entry_add(r, g, id);
    if (e == NULL) {
        free(type);
        free(text);
        return -ENOMEM;
    }
    take_text(e, text, type);
    if (e->e.state == REGISTRY_OK) {
        log_info("registry", "schema id %d read from the journal", (int)id);
    }
    free(type);
    free(text);
    return 0;
}

int registry_fetch(struct registry *r, const struct config_registry *g,
                   const int32_t *ids, size_t n, registry_cb cb, void *arg)
{
    struct waiter *w;
    char err[200];
    int missing = 0;

    for (size_t i = 0; i < n; i++) {
        if (find(r, g->url, ids[i]) == NULL && from_journal(r, g, ids[i]) < 0) {
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct rentry *e = find(r, g->url, ids[i]);

        if (e == NULL || e->e.state == REGISTRY_FAILED ||
            e->e.state == REGISTRY_FETCHING) {
            missing = 1;
        }
    }
    if (!missing) {
        return 1;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->ids = malloc((n ? n : 1) * sizeof(*ids))) == NULL) {
        free(w);
        return -ENOMEM;
    }
    memcpy(w->ids, ids, n * sizeof(*ids));
    w->n = n;
    w->g = g;
    w->cb = cb;
    w->arg = arg;
    for (size_t i = 0; i < n; i++) {
        struct rentry *e = find(r, g->url, ids[i]);

        if (e != NULL && e->e.state != REGISTRY_FAILED) {
            continue;
        }
        if (e == NULL && (e = entry_add(r, g, ids[i])) == NULL) {
            waiter_free(w);
            return -ENOMEM;
        }
        if (start_get(r, g, e, err, sizeof(err)) < 0) {
            /* the waiter is told through the loop below: mark and go on */
            snprintf(r->last_error, sizeof(r->last_error), "%.190s", err);
        }
    }
    w->next = r->waiters;
    r->waiters = w;
    if (waiter_state(r, w) != 0) {
        /* every start failed at once: settle later, never inside this call */
        for (size_t i = 0; i < n; i++) {
            struct rentry *e = find(r, g->url, ids[i]);

            if (e != NULL && e->e.state == REGISTRY_FAILED) {
                r->waiters = w->next;
                waiter_free(w);
                return -EIO;
            }
        }
    }
    return 0;
}
