/*
 * config_native.c - the native kadx.json reader: walks the sections (kafka,
 * adx, schema_registry, routes, journal, forwarder, intake, admin, log),
 * rejects any key it does not know, naming its path, and stores every value
 * in the struct config being loaded. Numbers take units ("64MiB", "30s").
 * The common checks (config.c) run afterwards. Main thread, during
 * config_load_*(); gateway/CONFIG.md documents every key.
 */
#include "gateway/config.h"
#include "gateway/config_internal.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A "123" followed by an optional unit from units[] (multipliers). */
struct unit {
    const char *name;
    int64_t mul;
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KB", 1000},
    {"MB", 1000 * 1000},
    {"GB", 1000 * 1000 * 1000},
    {"KiB", 1024},
    {"MiB", MIB},
    {"GiB", (int64_t)1024 * MIB},
    {"TiB", (int64_t)1024 * 1024 * MIB},
    {NULL, 0},
};

static const struct unit time_units[] = {
    {"", 1},          {"ms", 1},          {"s", 1000},
    {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000},
    {NULL, 0},
};

static int parse_with_unit(const char *s, const struct unit *units,
                           int64_t *out)
{
    char *end;
    long long v;

    if (!isdigit((unsigned char)*s)) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0) {
        return -EINVAL;
    }
    if (*end == ' ') {
        end++;
    }
    for (size_t i = 0; units[i].name != NULL; i++) {
        if (strcmp(end, units[i].name) == 0) {
            if (v > INT64_MAX / units[i].mul) {
                return -EINVAL;
            }
            *out = (int64_t)v * units[i].mul;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- typed getters for the native format -------------------------------
 * Each returns 1 when the key was present and stored, 0 when absent (or
 * null, which means "unset"), or a negative errno with the message set. */

static int opt_string(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, char **dst)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];
    char *v = NULL;
    int rc;

    cfg_join(path, sizeof(path), parent, key);
    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (!cJSON_IsString(it)) {
        return cfg_fail(l, "'%s' must be a string", path);
    }
    rc = cfg_subst_env(l, path, it->valuestring, &v);
    if (rc < 0) {
        return rc;
    }
    free(*dst);
    *dst = v;
    return 1;
}

/* A present string must not be empty. */
static int opt_nonempty(struct loader *l, const cJSON *obj, const char *parent,
                        const char *key, char **dst)
{
    char path[PATHLEN];
    int rc = opt_string(l, obj, parent, key, dst);

    if (rc == 1 && (*dst)[0] == '\0') {
        cfg_join(path, sizeof(path), parent, key);
        return cfg_fail(l, "'%s' must not be empty", path);
    }
    return rc;
}

static int req_string(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, char **dst)
{
    char path[PATHLEN];
    int rc = opt_nonempty(l, obj, parent, key, dst);

    if (rc == 0) {
        cfg_join(path, sizeof(path), parent, key);
        return cfg_fail(l, "missing required key '%s'", path);
    }
    return rc;
}

enum numkind { NUM_INT, NUM_SIZE, NUM_MS };

static int opt_num(struct loader *l, const cJSON *obj, const char *parent,
                   const char *key, enum numkind kind, int64_t min, int64_t max,
                   int64_t *dst)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];
    int64_t v;
    int rc;

    cfg_join(path, sizeof(path), parent, key);
    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        if (cfg_json_int(it, &v) < 0) {
            return cfg_fail(l, "'%s' must be an integer", path);
        }
    } else if (cJSON_IsString(it) && kind != NUM_INT) {
        char *s = NULL;

        rc = cfg_subst_env(l, path, it->valuestring, &s);
        if (rc < 0) {
            return rc;
        }
        rc = parse_with_unit(s, kind == NUM_SIZE ? size_units : time_units, &v);
        free(s);
        if (rc < 0) {
            return cfg_fail(
                l,
                kind == NUM_SIZE
                    ? "'%s' must be a byte count (an integer, or a "
                      "string such as \"64MiB\")"
                    : "'%s' must be a duration in ms (an integer, or "
                      "a string such as \"30s\")",
                path);
        }
    } else {
        return cfg_fail(l, "'%s' must be an integer", path);
    }
    rc = cfg_range(l, path, v, min, max);
    if (rc < 0) {
        return rc;
    }
    *dst = v;
    return 1;
}

static int opt_bool(struct loader *l, const cJSON *obj, const char *parent,
                    const char *key, int *dst)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];

    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (!cJSON_IsBool(it)) {
        cfg_join(path, sizeof(path), parent, key);
        return cfg_fail(l, "'%s' must be true or false", path);
    }
    *dst = cJSON_IsTrue(it) ? 1 : 0;
    return 1;
}

/* obj's key must be absent/null or an object; *out = it or NULL. */
static int opt_object(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, const cJSON **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];

    *out = NULL;
    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (!cJSON_IsObject(it)) {
        cfg_join(path, sizeof(path), parent, key);
        return cfg_fail(l, "'%s' must be an object", path);
    }
    *out = it;
    return 1;
}

/* Every key of obj is in allowed (NULL-terminated) and appears once. */

/* ---- native reader ---------------------------------------------------- */

static const char *const top_keys[] = {
    "kafka",     "adx",   "routes", "journal",         "intake",
    "forwarder", "admin", "log",    "schema_registry", NULL};
static const char *const adx_keys[] = {
    "ingest_url", "query_url",          "dm_url",
    "auth",       "request_timeout_ms", "server_timeout_ms",
    "proxy",      "no_proxy",           "keepalive_idle_ms",
    NULL};
static const char *const auth_keys[] = {
    "method",     "tenant_id",      "client_id", "client_secret", "token",
    "token_file", "authority_host", "scope",     "imds_url",      NULL};
static const char *const route_keys[] = {"name",
                                         "topic",
                                         "topic_regex",
                                         "database",
                                         "table",
                                         "format",
                                         "mapping",
                                         "meta",
                                         "dedupe_column",
                                         "value_converter",
                                         "key_converter",
                                         "schema_registry",
                                         "ingestion", /* issue 15 */
                                         NULL};
static const char *const meta_keys[] = {"topic",     "partition", "offset",
                                        "timestamp", "key",       "headers",
                                        "batch_id",  NULL};
static const char *const journal_keys[] = {
    "path", "max_bytes",     "retention_ms",
    "sync", "reserve_bytes", "min_retention_ms",
    NULL};
static const char *const forwarder_keys[] = {"batch_max_bytes",
                                             "batch_max_rows",
                                             "linger_ms",
                                             "max_inflight",
                                             "retry_initial_ms",
                                             "retry_max_ms",
                                             "retry_max_time_ms",
                                             "ambiguous_delay_ms",
                                             "ambiguous_window_ms",
                                             "on_error",
                                             NULL};
static const char *const intake_keys[] = {"skip_tombstones",
                                          "high_water_bytes",
                                          "low_water_bytes",
                                          "topics",
                                          "on_rewind",
                                          "prefetch_bytes",
                                          NULL};
static const char *const admin_keys[] = {
    "listen",  "token",           "token_on_get",       "tls_cert",
    "tls_key", "max_connections", "max_requests_per_s", NULL};
static const char *const log_keys[] = {"level", NULL};

static int load_kafka_native(struct loader *l, const cJSON *o)
{
    char path[PATHLEN];
    char num[64];
    int rc;

    rc = cfg_check_keys(l, o, "kafka", NULL);
    if (rc < 0) {
        return rc;
    }
    for (const cJSON *c = o->child; c != NULL; c = c->next) {
        char *v = NULL;

        cfg_join(path, sizeof(path), "kafka", c->string);
        if (cJSON_IsString(c)) {
            rc = cfg_subst_env(l, path, c->valuestring, &v);
            if (rc < 0) {
                return rc;
            }
        } else if (cJSON_IsNumber(c)) {
            int64_t i;

            if (cfg_json_int(c, &i) == 0) {
                snprintf(num, sizeof(num), "%lld", (long long)i);
            } else {
                snprintf(num, sizeof(num), "%.17g", c->valuedouble);
            }
            v = strdup(num);
        } else if (cJSON_IsBool(c)) {
            v = strdup(cJSON_IsTrue(c) ? "true" : "false");
        } else {
            return cfg_fail(l, "'%s' must be a string, number or boolean",
                            path);
        }
        if (v == NULL) {
            return cfg_oom(l);
        }
        rc = cfg_kafka_set(&l->cfg->kafka, c->string, v);
        free(v);
        if (rc < 0) {
            return cfg_oom(l);
        }
    }
    return 0;
}

static int load_auth_native(struct loader *l, const cJSON *o)
{
    struct config_auth *a = &l->cfg->adx.auth;
    const char *p = "adx.auth";
    char *method = NULL;
    char shown[64];
    int rc;

    rc = cfg_check_keys(l, o, p, auth_keys);
    if (rc >= 0) {
        rc = req_string(l, o, p, "method", &method);
    }
    if (rc >= 0 && cfg_parse_auth_method(method, &a->method) < 0) {
        rc = cfg_fail(l,
                      "'adx.auth.method' must be none, static_token, "
                      "client_secret, managed_identity or workload_identity, "
                      "not '%s'",
                      cfg_clean(method, shown, sizeof(shown)));
    }
    free(method);
    if (rc < 0) {
        return rc;
    }
    rc = opt_nonempty(l, o, p, "tenant_id", &a->tenant_id);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "client_id", &a->client_id);
    rc =
        rc < 0 ? rc : opt_nonempty(l, o, p, "client_secret", &a->client_secret);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "token", &a->token);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "token_file", &a->token_file);
    rc = rc < 0 ? rc
                : opt_nonempty(l, o, p, "authority_host", &a->authority_host);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "scope", &a->scope);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "imds_url", &a->imds_url);
    if (rc < 0) {
        return rc;
    }
    return 0;
}

static int load_adx_native(struct loader *l, const cJSON *o)
{
    struct config_adx *x = &l->cfg->adx;
    const cJSON *auth;
    int rc;

    rc = cfg_check_keys(l, o, "adx", adx_keys);
    rc = rc < 0 ? rc : req_string(l, o, "adx", "ingest_url", &x->ingest_url);
    rc = rc < 0 ? rc : opt_nonempty(l, o, "adx", "query_url", &x->query_url);
    rc = rc < 0 ? rc : opt_nonempty(l, o, "adx", "dm_url", &x->dm_url);
    rc = rc < 0 ? rc
                : opt_num(l, o, "adx", "request_timeout_ms", NUM_MS, 100,
                          3600 * 1000, &x->request_timeout_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, "adx", "server_timeout_ms", NUM_MS, 1000,
                          3600 * 1000, &x->server_timeout_ms);
    rc = rc < 0 ? rc : opt_nonempty(l, o, "adx", "proxy", &x->proxy);
    rc = rc < 0 ? rc : opt_string(l, o, "adx", "no_proxy", &x->no_proxy);
    rc = rc < 0 ? rc
                : opt_num(l, o, "adx", "keepalive_idle_ms", NUM_MS, 1000,
                          3600 * 1000, &x->keepalive_idle_ms);
    rc = rc < 0 ? rc : opt_object(l, o, "adx", "auth", &auth);
    if (rc < 0) {
        return rc;
    }
    if (auth != NULL) {
        return load_auth_native(l, auth);
    }
    return 0;
}

static const char *const registry_keys[] = {"url", "basic_auth", "ca_file",
                                            "timeout_ms", NULL};

/* parent.schema_registry {url, basic_auth, ca_file, timeout_ms}, if set */
static int load_registry_native(struct loader *l, const cJSON *parent,
                                const char *p, struct config_registry *g)
{
    const cJSON *o;
    char rp[PATHLEN];
    int rc;

    rc = opt_object(l, parent, p, "schema_registry", &o);
    if (rc < 0 || o == NULL) {
        return rc;
    }
    cfg_join(rp, sizeof(rp), p, "schema_registry");
    rc = cfg_check_keys(l, o, rp, registry_keys);
    rc = rc < 0 ? rc : opt_nonempty(l, o, rp, "url", &g->url);
    rc = rc < 0 ? rc : opt_nonempty(l, o, rp, "basic_auth", &g->basic_auth);
    rc = rc < 0 ? rc : opt_nonempty(l, o, rp, "ca_file", &g->ca_file);
    rc = rc < 0 ? rc
                : opt_num(l, o, rp, "timeout_ms", NUM_MS, 100, 600 * 1000,
                          &g->timeout_ms);
    if (rc < 0) {
        return rc;
    }
    if (g->url == NULL) {
        return cfg_fail(l, "missing required key '%s.url'", rp);
    }
    return 0;
}

static int load_route_native(struct loader *l, const cJSON *o, const char *p,
                             struct config_route *r)
{
    const cJSON *meta;
    char mp[PATHLEN];
    char *ing = NULL;
    int rc;

    rc = cfg_check_keys(l, o, p, route_keys);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "name", &r->name);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "topic", &r->topic);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "topic_regex", &r->topic_regex);
    rc = rc < 0 ? rc : req_string(l, o, p, "database", &r->database);
    rc = rc < 0 ? rc : req_string(l, o, p, "table", &r->table);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "format", &r->format);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "mapping", &r->mapping);
    rc =
        rc < 0 ? rc : opt_nonempty(l, o, p, "dedupe_column", &r->dedupe_column);
    rc = rc < 0 ? rc
                : opt_nonempty(l, o, p, "value_converter", &r->value_converter);
    rc =
        rc < 0 ? rc : opt_nonempty(l, o, p, "key_converter", &r->key_converter);
    rc = rc < 0 ? rc : load_registry_native(l, o, p, &r->registry);
    rc = rc < 0 ? rc : opt_nonempty(l, o, p, "ingestion", &ing);
    rc = rc < 0 ? rc : opt_object(l, o, p, "meta", &meta);
    if (rc >= 0 && ing != NULL &&
        config_ingestion_parse(ing, &r->ingestion) < 0) {
        rc = cfg_fail(l, "'%s.ingestion' must be streaming, queued or managed",
                      p);
    }
    free(ing);
    if (rc < 0) {
        return rc;
    }
    if (r->topic == NULL && r->topic_regex == NULL) {
        return cfg_fail(l, "%s: set one of 'topic' and 'topic_regex'", p);
    }
    if (r->topic != NULL && r->topic_regex != NULL) {
        return cfg_fail(l, "%s: set only one of 'topic' and 'topic_regex'", p);
    }
    if (r->format == NULL && cfg_replace(&r->format, "json") < 0) {
        return cfg_oom(l);
    }
    if (meta == NULL) {
        return 0;
    }
    cfg_join(mp, sizeof(mp), p, "meta");
    rc = cfg_check_keys(l, meta, mp, meta_keys);
    rc = rc < 0 ? rc : opt_nonempty(l, meta, mp, "topic", &r->meta.topic);
    rc = rc < 0 ? rc
                : opt_nonempty(l, meta, mp, "partition", &r->meta.partition);
    rc = rc < 0 ? rc : opt_nonempty(l, meta, mp, "offset", &r->meta.offset);
    rc = rc < 0 ? rc
                : opt_nonempty(l, meta, mp, "timestamp", &r->meta.timestamp);
    rc = rc < 0 ? rc : opt_nonempty(l, meta, mp, "key", &r->meta.key);
    rc = rc < 0 ? rc : opt_nonempty(l, meta, mp, "headers", &r->meta.headers);
    rc = rc < 0 ? rc : opt_nonempty(l, meta, mp, "batch_id", &r->meta.batch_id);
    if (rc < 0) {
        return rc;
    }
    return 0;
}

static int load_routes_native(struct loader *l, const cJSON *arr)
{
    struct config *c = l->cfg;
    char p[PATHLEN];
    int n;
    int rc;

    if (!cJSON_IsArray(arr)) {
        return cfg_fail(l, "'routes' must be an array");
    }
    n = cJSON_GetArraySize(arr);
    if (n == 0) {
        return cfg_fail(l, "'routes' must not be empty");
    }
    if (n > MAX_KEYS) {
        return cfg_fail(l, "'routes' has more than %d entries", MAX_KEYS);
    }
    c->routes = calloc((size_t)n, sizeof(*c->routes));
    if (c->routes == NULL) {
        return cfg_oom(l);
    }
    for (const cJSON *e = arr->child; e != NULL; e = e->next) {
        cfg_join_index(p, sizeof(p), "routes", c->nroutes);
        if (!cJSON_IsObject(e)) {
            return cfg_fail(l, "'%s' must be an object", p);
        }
        rc = load_route_native(l, e, p, &c->routes[c->nroutes++]);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static const char *const sync_names[] = {"full", "normal", NULL};
static const char *const on_error_names[] = {"deadletter", "pause", NULL};
static const char *const on_rewind_names[] = {"pause", "new_epoch", NULL};

/*
 * obj's key, when present, is one of names (NULL-terminated, any case):
 * *idx = its index and returns 1; 0 when absent; else a negative errno with
 * "'path' must be EXPECT, not 'value'".
 */
static int opt_choice(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, const char *const *names,
                      const char *expect, size_t *idx)
{
    char path[PATHLEN];
    char shown[64];
    char *s = NULL;
    int rc = opt_nonempty(l, obj, parent, key, &s);

    if (rc <= 0) {
        free(s);
        return rc;
    }
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *idx = i;
            free(s);
            return 1;
        }
    }
    cfg_join(path, sizeof(path), parent, key);
    rc = cfg_fail(l, "'%s' must be %s, not '%s'", path, expect,
                  cfg_clean(s, shown, sizeof(shown)));
    free(s);
    return rc;
}

static int load_journal_native(struct loader *l, const cJSON *o)
{
    struct config *c = l->cfg;
    size_t k = 0;
    int rc;

    rc = cfg_check_keys(l, o, "journal", journal_keys);
    rc = rc < 0 ? rc : opt_nonempty(l, o, "journal", "path", &c->journal.path);
    rc = rc < 0 ? rc
                : opt_num(l, o, "journal", "max_bytes", NUM_SIZE, 16 * MIB,
                          INT64_MAX, &c->journal.max_bytes);
    rc = rc < 0 ? rc
                : opt_num(l, o, "journal", "retention_ms", NUM_MS, 0,
                          (int64_t)365 * 24 * 3600 * 1000,
                          &c->journal.retention_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, "journal", "reserve_bytes", NUM_SIZE, 0,
                          (int64_t)1 << 40, &c->journal.reserve_bytes);
    rc = rc < 0 ? rc
                : opt_num(l, o, "journal", "min_retention_ms", NUM_MS, 0,
                          (int64_t)365 * 24 * 3600 * 1000,
                          &c->journal.min_retention_ms);
    rc = rc < 0 ? rc
                : opt_choice(l, o, "journal", "sync", sync_names,
                             "full or normal", &k);
    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        c->journal.sync_full = k == 0;
    }
    return 0;
}

static int load_forwarder_native(struct loader *l, const cJSON *o)
{
    struct config *c = l->cfg;
    struct config_forwarder *f = &c->forwarder;
    const char *p = "forwarder";
    int64_t inflight = f->max_inflight;
    size_t k = 0;
    int rc;

    rc = cfg_check_keys(l, o, p, forwarder_keys);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "batch_max_bytes", NUM_SIZE, 1024, INT64_MAX,
                          &f->batch_max_bytes);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "batch_max_rows", NUM_INT, 1, 1000000,
                          &f->batch_max_rows);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "linger_ms", NUM_MS, 0, 3600 * 1000,
                          &f->linger_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "max_inflight", NUM_INT, 1, 64, &inflight);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "retry_initial_ms", NUM_MS, 1, 3600 * 1000,
                          &f->retry_initial_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "retry_max_ms", NUM_MS, 1, 24 * 3600 * 1000,
                          &f->retry_max_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "retry_max_time_ms", NUM_MS, 0, INT64_MAX,
                          &f->retry_max_time_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "ambiguous_delay_ms", NUM_MS, 0, 3600 * 1000,
                          &f->ambiguous_delay_ms);
    rc = rc < 0 ? rc
                : opt_num(l, o, p, "ambiguous_window_ms", NUM_MS, 1,
                          INT64_MAX / 4, &f->ambiguous_window_ms);
    rc = rc < 0 ? rc
                : opt_choice(l, o, p, "on_error", on_error_names,
                             "deadletter or pause", &k);
    if (rc < 0) {
        return rc;
    }
    f->max_inflight = (int)inflight;
    if (rc == 1) {
        f->on_error =
            k == 0 ? CONFIG_ON_ERROR_DEADLETTER : CONFIG_ON_ERROR_PAUSE;
    }
    return 0;
}

static int load_intake_native(struct loader *l, const cJSON *o)
{
    struct config *c = l->cfg;
    struct config_intake *in = &c->intake;
    const cJSON *arr;
    char *s = NULL;
    size_t k = 0;
    int rc;

    rc = cfg_check_keys(l, o, "intake", intake_keys);
    rc = rc < 0 ? rc
                : opt_bool(l, o, "intake", "skip_tombstones",
                           &in->skip_tombstones);
    rc = rc < 0 ? rc
                : opt_num(l, o, "intake", "high_water_bytes", NUM_SIZE, 1,
                          INT64_MAX, &in->high_water_bytes);
    rc = rc < 0 ? rc
                : opt_num(l, o, "intake", "low_water_bytes", NUM_SIZE, 0,
                          INT64_MAX, &in->low_water_bytes);
    rc = rc < 0 ? rc
                : opt_num(l, o, "intake", "prefetch_bytes", NUM_SIZE, 0,
                          INT64_C(1) << 40, &in->prefetch_bytes);
    if (rc < 0) {
        return rc;
    }
    if (in->prefetch_bytes > 0 && in->prefetch_bytes < (4 << 20)) {
        return cfg_fail(l,
                        "'intake.prefetch_bytes' must be 0 (unbounded) or at "
                        "least 4MiB");
    }
    rc = opt_choice(l, o, "intake", "on_rewind", on_rewind_names,
                    "pause or new_epoch", &k);
    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        in->on_rewind =
            k == 0 ? CONFIG_ON_REWIND_PAUSE : CONFIG_ON_REWIND_EPOCH;
    }
    arr = cJSON_GetObjectItemCaseSensitive(o, "topics");
    if (arr != NULL && !cJSON_IsNull(arr)) {
        char p[PATHLEN];
        size_t i = 0;

        if (!cJSON_IsArray(arr)) {
            return cfg_fail(l, "'intake.topics' must be an array of strings");
        }
        for (const cJSON *e = arr->child; e != NULL; e = e->next, i++) {
            cfg_join_index(p, sizeof(p), "intake.topics", i);
            if (!cJSON_IsString(e)) {
                return cfg_fail(l, "'%s' must be a string", p);
            }
            if (i >= MAX_KEYS) {
                return cfg_fail(l, "'intake.topics' has more than %d entries",
                                MAX_KEYS);
            }
            rc = cfg_subst_env(l, p, e->valuestring, &s);
            if (rc < 0) {
                return rc;
            }
            if (s[0] == '^') {
                regex_t re;

                rc = regcomp(&re, s, REG_EXTENDED | REG_NOSUB);
                if (rc != 0) {
                    free(s);
                    return cfg_fail(l, "'%s' is not a valid regular expression",
                                    p);
                }
                regfree(&re);
            } else {
                rc = cfg_check_topic(l, p, s);
                if (rc < 0) {
                    free(s);
                    return rc;
                }
            }
            rc = 0;
            if (!cfg_strv_has(in->topics, in->ntopics, s)) {
                rc = cfg_strv_push(&in->topics, &in->ntopics, s);
            }
            free(s);
            s = NULL;
            if (rc < 0) {
                return cfg_oom(l);
            }
        }
    }
    return 0;
}

static int load_admin_native(struct loader *l, const cJSON *o)
{
    struct config *c = l->cfg;
    int rc;

    rc = cfg_check_keys(l, o, "admin", admin_keys);
    rc = rc < 0 ? rc : opt_string(l, o, "admin", "listen", &c->admin.listen);
    rc = rc < 0 ? rc : opt_nonempty(l, o, "admin", "token", &c->admin.token);
    rc = rc < 0
             ? rc
             : opt_bool(l, o, "admin", "token_on_get", &c->admin.token_on_get);
    rc = rc < 0 ? rc
                : opt_nonempty(l, o, "admin", "tls_cert", &c->admin.tls_cert);
    rc =
        rc < 0 ? rc : opt_nonempty(l, o, "admin", "tls_key", &c->admin.tls_key);
    rc = rc < 0 ? rc
                : opt_num(l, o, "admin", "max_connections", NUM_INT, 1, 100000,
                          &c->admin.max_connections);
    rc = rc < 0 ? rc
                : opt_num(l, o, "admin", "max_requests_per_s", NUM_INT, 1,
                          1000000, &c->admin.max_requests_per_s);
    if (rc < 0) {
        return rc;
    }
    if (c->admin.listen == NULL || c->admin.listen[0] == '\0' ||
        strcasecmp(c->admin.listen, "off") == 0) {
        free(c->admin.listen);
        c->admin.listen = NULL;
    }
    return 0;
}

static int load_log_native(struct loader *l, const cJSON *o)
{
    char *lv = NULL;
    enum log_level level;
    struct config *c = l->cfg;
    char shown[64];
    int rc;

    rc = cfg_check_keys(l, o, "log", log_keys);
    rc = rc < 0 ? rc : opt_nonempty(l, o, "log", "level", &lv);
    if (rc < 0) {
        return rc;
    }
    if (lv != NULL) {
        if (log_level_parse(lv, &level) < 0) {
            rc = cfg_fail(l,
                          "'log.level' must be error, warn, info or debug, "
                          "not '%s'",
                          cfg_clean(lv, shown, sizeof(shown)));
            free(lv);
            return rc;
        }
        c->log_level = (int)level;
        free(lv);
    }
    return 0;
}

int cfg_load_native(struct loader *l, const cJSON *root)
{
    static const struct {
        const char *key;
        int (*load)(struct loader *l, const cJSON *o);
    } sections[] = {
        {"journal", load_journal_native}, {"forwarder", load_forwarder_native},
        {"intake", load_intake_native},   {"admin", load_admin_native},
        {"log", load_log_native},
    };
    struct config *c = l->cfg;
    const cJSON *o;
    const cJSON *arr;
    int rc;

    rc = cfg_check_keys(l, root, "", top_keys);
    if (rc < 0) {
        return rc;
    }
    rc = opt_object(l, root, "", "kafka", &o);
    if (rc < 0) {
        return rc;
    }
    rc = o != NULL ? load_kafka_native(l, o) : 0;
    if (rc < 0) {
        return rc;
    }
    rc = opt_object(l, root, "", "adx", &o);
    if (rc < 0) {
        return rc;
    }
    if (o == NULL) {
        return cfg_fail(l, "missing required key 'adx'");
    }
    rc = load_adx_native(l, o);
    if (rc < 0) {
        return rc;
    }
    rc = load_registry_native(l, root, "", &c->registry);
    if (rc < 0) {
        return rc;
    }
    arr = cJSON_GetObjectItemCaseSensitive(root, "routes");
    if (arr == NULL || cJSON_IsNull(arr)) {
        return cfg_fail(l, "missing required key 'routes'");
    }
    rc = load_routes_native(l, arr);
    if (rc < 0) {
        return rc;
    }

    /* the optional sections, in this order (the first error wins) */
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        rc = opt_object(l, root, "", sections[i].key, &o);
        rc = rc == 1 ? sections[i].load(l, o) : rc;
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}
