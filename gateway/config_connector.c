/*
 * config_connector.c - the Kusto sink connector reader: maps the
 * connector's flat keys (Kafka Connect JSON, bare or {"name":..,"config":
 * {..}}) onto the struct config the native reader fills, and sorts the keys
 * it does not use into "meaningless for kadx" (one info line) and "cannot be
 * honoured" (one warning line). The common checks (config.c) run
 * afterwards. Main thread, during config_load_*(); gateway/CONFIG.md,
 * "Kafka Connect connector configs", documents the mapping.
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

/* ---- connector reader ------------------------------------------------- */

struct conn {
    char *name;
    char *cls;
    char *topics;
    char *topics_regex;
    char *ingest_url;
    char *query_url;
    char *strategy;
    char *appid;
    char *appkey;
    char *authority;
    char *accesstoken;
    char *mapping;
    char *flush_size;
    char *flush_interval;
    char *retry_max_time;
    char *retry_backoff;
    char *on_error;
    char *proxy_host;
    char *proxy_port;
    /* converters: [0] value, [1] key */
    char *conv[2];
    char *conv_url[2];
    char *conv_source[2];
    char *conv_user[2];
};

static const struct {
    const char *key;
    size_t off;
} conn_keys[] = {
    {"name", offsetof(struct conn, name)},
    {"connector.class", offsetof(struct conn, cls)},
    {"topics", offsetof(struct conn, topics)},
    {"topics.regex", offsetof(struct conn, topics_regex)},
    {"kusto.ingestion.url", offsetof(struct conn, ingest_url)},
    {"kusto.url", offsetof(struct conn, ingest_url)},
    {"kusto.query.url", offsetof(struct conn, query_url)},
    {"aad.auth.strategy", offsetof(struct conn, strategy)},
    {"aad.auth.appid", offsetof(struct conn, appid)},
    {"aad.auth.appkey", offsetof(struct conn, appkey)},
    {"aad.auth.authority", offsetof(struct conn, authority)},
    {"aad.auth.accesstoken", offsetof(struct conn, accesstoken)},
    {"kusto.tables.topics.mapping", offsetof(struct conn, mapping)},
    {"flush.size.bytes", offsetof(struct conn, flush_size)},
    {"proxy.host", offsetof(struct conn, proxy_host)},
    {"proxy.port", offsetof(struct conn, proxy_port)},
    {"flush.interval.ms", offsetof(struct conn, flush_interval)},
    {"errors.retry.max.time.ms", offsetof(struct conn, retry_max_time)},
    {"errors.retry.backoff.time.ms", offsetof(struct conn, retry_backoff)},
    {"behavior.on.error", offsetof(struct conn, on_error)},
    {"value.converter", offsetof(struct conn, conv[0])},
    {"key.converter", offsetof(struct conn, conv[1])},
    {"value.converter.schema.registry.url", offsetof(struct conn, conv_url[0])},
    {"key.converter.schema.registry.url", offsetof(struct conn, conv_url[1])},
    {"value.converter.basic.auth.credentials.source",
     offsetof(struct conn, conv_source[0])},
    {"key.converter.basic.auth.credentials.source",
     offsetof(struct conn, conv_source[1])},
    {"value.converter.basic.auth.user.info",
     offsetof(struct conn, conv_user[0])},
    {"key.converter.basic.auth.user.info", offsetof(struct conn, conv_user[1])},
};

/* Kafka Connect framework keys that configure Connect itself. */
static const char *const conn_info_exact[] = {"tasks.max",
                                              "key.converter",
                                              "value.converter",
                                              "header.converter",
                                              "config.action.reload",
                                              "errors.log.enable",
                                              "errors.log.include.messages",
                                              NULL};
static const char *const conn_info_prefix[] = {
    "key.converter.", "value.converter.", "header.converter.", NULL};
/* Keys whose behaviour kadx does not reproduce. */
static const char *const conn_warn_exact[] = {
    "tempdir.path",     "kusto.validation.table.enable",
    "errors.tolerance", "transforms",
    "predicates",       NULL};
static const char *const conn_warn_prefix[] = {
    "misc.deadletterqueue.", "errors.deadletterqueue.", "transforms.",
    "predicates.", NULL};

static int in_list(const char *k, const char *const *exact,
                   const char *const *prefix)
{
    for (size_t i = 0; exact != NULL && exact[i] != NULL; i++) {
        if (strcmp(k, exact[i]) == 0) {
            return 1;
        }
    }
    for (size_t i = 0; prefix != NULL && prefix[i] != NULL; i++) {
        if (strncmp(k, prefix[i], strlen(prefix[i])) == 0) {
            return 1;
        }
    }
    return 0;
}

static void conn_free(struct conn *cn)
{
    for (size_t i = 0; i < sizeof(conn_keys) / sizeof(conn_keys[0]); i++) {
        char **f = (char **)((char *)cn + conn_keys[i].off);

        free(*f);
        *f = NULL;
    }
}

/* A connector value as a string (Connect configs are string maps, but
 * numbers and booleans are common in hand-written files). 0 = null. */
static int conn_string(struct loader *l, const cJSON *c, const char *path,
                       char **out)
{
    char num[64];

    if (cJSON_IsNull(c)) {
        return 0;
    }
    if (cJSON_IsString(c)) {
        int rc = cfg_subst_env(l, path, c->valuestring, out);

        return rc < 0 ? rc : 1;
    }
    if (cJSON_IsNumber(c)) {
        int64_t i;

        if (cfg_json_int(c, &i) == 0) {
            snprintf(num, sizeof(num), "%lld", (long long)i);
        } else {
            snprintf(num, sizeof(num), "%.17g", c->valuedouble);
        }
        *out = strdup(num);
    } else if (cJSON_IsBool(c)) {
        *out = strdup(cJSON_IsTrue(c) ? "true" : "false");
    } else {
        return cfg_fail(l, "'%s' must be a string", path);
    }
    return *out == NULL ? cfg_oom(l) : 1;
}

/*
 * Turns the connector's single-quoted JSON into JSON: 'x' becomes "x"
 * (with " inside escaped, \' unescaped); double-quoted strings are kept.
 */
static int unsinglequote(const char *in, char **out)
{
    struct sbuf b = {0};
    int rc = cfg_sbuf_add(&b, "", 0);
    char q = 0;

    for (const char *p = in; *p != '\0' && rc == 0; p++) {
        if (q == 0) {
            if (*p == '\'' || *p == '"') {
                q = *p;
                rc = cfg_sbuf_add(&b, "\"", 1);
            } else {
                rc = cfg_sbuf_add(&b, p, 1);
            }
        } else if (*p == '\\' && p[1] != '\0') {
            if (q == '\'' && p[1] == '\'') {
                rc = cfg_sbuf_add(&b, "'", 1);
            } else {
                rc = cfg_sbuf_add(&b, p, 2);
            }
            p++;
        } else if (*p == q) {
            q = 0;
            rc = cfg_sbuf_add(&b, "\"", 1);
        } else if (*p == '"') {
            rc = cfg_sbuf_add(&b, "\\\"", 2);
        } else {
            rc = cfg_sbuf_add(&b, p, 1);
        }
    }
    if (rc < 0) {
        free(b.s);
        return rc;
    }
    *out = b.s;
    return 0;
}

static int conn_bool(const char *s, int *v)
{
    if (strcasecmp(s, "true") == 0) {
        *v = 1;
    } else if (strcasecmp(s, "false") == 0) {
        *v = 0;
    } else {
        return -EINVAL;
    }
    return 0;
}

static const char *const mapping_keys[] = {"topic",
                                           "db",
                                           "table",
                                           "format",
                                           "mapping",
                                           "streaming",
                                           "eventDataCompression",
                                           NULL};

static int load_conn_mapping(struct loader *l, const char *text)
{
    const char *mk = "kusto.tables.topics.mapping";
    struct config *c = l->cfg;
    char *json = NULL;
    cJSON *arr = NULL;
    char p[PATHLEN];
    char fp[PATHLEN];
    int n;
    int rc = 0;

    if (unsinglequote(text, &json) < 0) {
        return cfg_oom(l);
    }
    arr = cJSON_Parse(json);
    free(json);
    if (arr == NULL) {
        return cfg_fail(l, "'%s' is not valid JSON", mk);
    }
    n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (n == 0) {
        rc = cfg_fail(l, "'%s' must be a non-empty JSON array", mk);
        goto out_arr;
    }
    if (n > MAX_KEYS) {
        rc = cfg_fail(l, "'%s' has more than %d entries", mk, MAX_KEYS);
        goto out_arr;
    }
    c->routes = calloc((size_t)n, sizeof(*c->routes));
    if (c->routes == NULL) {
        rc = cfg_oom(l);
        goto out_arr;
    }
    for (const cJSON *e = arr->child; e != NULL; e = e->next) {
        struct config_route *r = &c->routes[c->nroutes];
        char *streaming = NULL;
        const cJSON *it;
        int on;

        cfg_join_index(p, sizeof(p), mk, c->nroutes);
        c->nroutes++;
        r->ingestion = CONFIG_INGEST_QUEUED; /* "streaming" absent or false */
        if (!cJSON_IsObject(e)) {
            rc = cfg_fail(l, "'%s' must be an object", p);
            goto out_arr;
        }
        rc = cfg_check_keys(l, e, p, mapping_keys);
        if (rc < 0) {
            goto out_arr;
        }
        for (it = e->child; it != NULL; it = it->next) {
            char **dst = NULL;
            char *v = NULL;

            cfg_join(fp, sizeof(fp), p, it->string);
            if (strcmp(it->string, "topic") == 0) {
                dst = &r->topic;
            } else if (strcmp(it->string, "db") == 0) {
                dst = &r->database;
            } else if (strcmp(it->string, "table") == 0) {
                dst = &r->table;
            } else if (strcmp(it->string, "format") == 0) {
                dst = &r->format;
            } else if (strcmp(it->string, "mapping") == 0) {
                dst = &r->mapping;
            } else if (strcmp(it->string, "streaming") == 0) {
                dst = &streaming;
            } else {
                cfg_note(l, &l->warn, fp);
                continue;
            }
            rc = conn_string(l, it, fp, &v);
            if (rc < 0) {
                free(streaming);
                goto out_arr;
            }
            free(*dst);
            *dst = v;
        }
        rc = 0;
        if (streaming != NULL) {
            if (conn_bool(streaming, &on) < 0) {
                rc = cfg_fail(l, "'%s.streaming' must be true or false", p);
            } else if (on) {
                r->ingestion = CONFIG_INGEST_MANAGED; /* as the connector */
            }
            free(streaming);
            if (rc < 0) {
                goto out_arr;
            }
        }
        if (r->topic == NULL || r->topic[0] == '\0') {
            rc = cfg_fail(l, "missing required key '%s.topic'", p);
            goto out_arr;
        }
        if (r->database == NULL || r->database[0] == '\0') {
            rc = cfg_fail(l, "missing required key '%s.db'", p);
            goto out_arr;
        }
        if (r->table == NULL || r->table[0] == '\0') {
            rc = cfg_fail(l, "missing required key '%s.table'", p);
            goto out_arr;
        }
        /* blank format: the Java SDK's default, csv */
        if ((r->format == NULL || r->format[0] == '\0') &&
            cfg_replace(&r->format, "csv") < 0) {
            rc = cfg_oom(l);
            goto out_arr;
        }
        if (r->mapping != NULL && r->mapping[0] == '\0') {
            free(r->mapping);
            r->mapping = NULL;
        }
    }
out_arr:
    cJSON_Delete(arr);
    return rc;
}

/* https://ingest-x.region.kusto.windows.net -> https://x.region... */
static int engine_from_dm(const char *dm, char **out)
{
    const char *host = strstr(dm, "://");
    size_t pre;

    host = host != NULL ? host + 3 : dm;
    pre = (size_t)(host - dm);
    if (strncasecmp(host, "ingest-", 7) != 0) {
        *out = strdup(dm);
    } else {
        *out = malloc(strlen(dm) - 7 + 1);
        if (*out != NULL) {
            memcpy(*out, dm, pre);
            memcpy(*out + pre, host + 7, strlen(host + 7) + 1);
        }
    }
    return *out == NULL ? -ENOMEM : 0;
}

static int conn_int(struct loader *l, const char *key, const char *s,
                    int64_t min, int64_t max, int64_t *v)
{
    if (cfg_parse_i64(s, v) < 0) {
        return cfg_fail(l, "'%s' must be an integer", key);
    }
    return cfg_range(l, key, *v, min, max);
}

/* connector.class, kusto.ingestion.url / kusto.query.url, proxy.* */
static int conn_urls(struct loader *l, struct conn *cn)
{
    struct config *c = l->cfg;
    char shown[64];
    int rc;

    if (cn->cls != NULL) {
        size_t n = strlen(cn->cls);
        const char *want = "KustoSinkConnector";

        if (n < strlen(want) || strcmp(cn->cls + n - strlen(want), want)) {
            return cfg_fail(
                l,
                "'connector.class' is '%s': kadx reads the Kusto sink "
                "connector's config only",
                cfg_clean(cn->cls, shown, sizeof(shown)));
        }
    }
    if (cn->ingest_url == NULL || cn->ingest_url[0] == '\0') {
        return cfg_fail(l, "missing required key 'kusto.ingestion.url'");
    }
    rc = cfg_check_url(l, "kusto.ingestion.url", cn->ingest_url, NULL);
    if (rc < 0) {
        return rc;
    }
    if (cn->query_url != NULL && cn->query_url[0] != '\0') {
        if (cfg_replace(&c->adx.ingest_url, cn->query_url) < 0) {
            return cfg_oom(l);
        }
    } else if (engine_from_dm(cn->ingest_url, &c->adx.ingest_url) < 0) {
        return cfg_oom(l);
    }
    if (cfg_replace(&c->adx.dm_url, cn->ingest_url) < 0) {
        return cfg_oom(l);
    }

    /* proxy.host and proxy.port: the connector's HTTP proxy */
    if (cn->proxy_host != NULL && cn->proxy_host[0] != '\0') {
        char url[512];
        char *end = NULL;
        long port = 0;

        if (cn->proxy_port != NULL) {
            errno = 0;
            port = strtol(cn->proxy_port, &end, 10);
        }
        if (cn->proxy_port == NULL || end == cn->proxy_port || *end != '\0' ||
            errno != 0 || port < 1 || port > 65535) {
            return cfg_fail(l, "'proxy.port' must be a port number (1-65535) "
                               "when 'proxy.host' is set");
        }
        snprintf(url, sizeof(url), "%s%s:%ld",
                 strstr(cn->proxy_host, "://") != NULL ? "" : "http://",
                 cn->proxy_host, port);
        if (cfg_replace(&c->adx.proxy, url) < 0) {
            return cfg_oom(l);
        }
    }
    return 0;
}

/* aad.auth.* */
static int conn_auth(struct loader *l, struct conn *cn)
{
    struct config_auth *a = &l->cfg->adx.auth;
    char shown[64];

    if (cn->strategy == NULL || strcasecmp(cn->strategy, "application") == 0) {
        a->method = CONFIG_AUTH_CLIENT_SECRET;
    } else if (strcasecmp(cn->strategy, "managed_identity") == 0) {
        a->method = CONFIG_AUTH_MANAGED_IDENTITY;
    } else if (strcasecmp(cn->strategy, "workload_identity") == 0) {
        a->method = CONFIG_AUTH_WORKLOAD_IDENTITY;
    } else if (strcasecmp(cn->strategy, "az_dev_token") == 0) {
        a->method = CONFIG_AUTH_STATIC_TOKEN;
    } else {
        return cfg_fail(l,
                        "'aad.auth.strategy' must be application, "
                        "managed_identity, workload_identity or az_dev_token, "
                        "not '%s'",
                        cfg_clean(cn->strategy, shown, sizeof(shown)));
    }
    if (cfg_replace(&a->client_id, cn->appid) < 0 ||
        cfg_replace(&a->tenant_id, cn->authority) < 0 ||
        cfg_replace(&a->client_secret, cn->appkey) < 0 ||
        cfg_replace(&a->token, cn->accesstoken) < 0) {
        return cfg_oom(l);
    }
    /* the keys of other strategies are ignored by the connector too */
    if (a->method != CONFIG_AUTH_CLIENT_SECRET) {
        if (cn->appkey != NULL) {
            cfg_note(l, &l->info, "aad.auth.appkey");
        }
        free(a->client_secret);
        a->client_secret = NULL;
    }
    if (a->method != CONFIG_AUTH_STATIC_TOKEN) {
        if (cn->accesstoken != NULL) {
            cfg_note(l, &l->info, "aad.auth.accesstoken");
        }
        free(a->token);
        a->token = NULL;
    }
    if (a->method == CONFIG_AUTH_STATIC_TOKEN ||
        a->method == CONFIG_AUTH_MANAGED_IDENTITY) {
        if (a->method == CONFIG_AUTH_STATIC_TOKEN && a->client_id != NULL) {
            free(a->client_id);
            a->client_id = NULL;
        }
        free(a->tenant_id);
        a->tenant_id = NULL;
    }
    return 0;
}

/* kusto.tables.topics.mapping, flush.*, errors.retry.*, behavior.on.error */
static int conn_flush(struct loader *l, struct conn *cn)
{
    struct config *c = l->cfg;
    char shown[64];
    int64_t v;
    int rc;

    if (cn->mapping == NULL || cn->mapping[0] == '\0') {
        return cfg_fail(l,
                        "missing required key 'kusto.tables.topics.mapping'");
    }
    rc = load_conn_mapping(l, cn->mapping);
    if (rc < 0) {
        return rc;
    }

    if (cn->flush_size != NULL) {
        rc =
            conn_int(l, "flush.size.bytes", cn->flush_size, 100, INT64_MAX, &v);
        if (rc < 0) {
            return rc;
        }
        if (v > CONFIG_ADX_MAX_BATCH_BYTES) {
            return cfg_fail(
                l,
                "'flush.size.bytes' (%lld) must be at most %d: ADX "
                "streaming ingestion takes at most 4 MiB per request",
                (long long)v, CONFIG_ADX_MAX_BATCH_BYTES);
        }
        c->forwarder.batch_max_bytes = v;
    }
    if (cn->flush_interval != NULL) {
        rc = conn_int(l, "flush.interval.ms", cn->flush_interval, 100,
                      3600 * 1000, &v);
        if (rc < 0) {
            return rc;
        }
        c->forwarder.linger_ms = v;
    }
    if (cn->retry_backoff != NULL) {
        rc = conn_int(l, "errors.retry.backoff.time.ms", cn->retry_backoff, 1,
                      3600 * 1000, &v);
        if (rc < 0) {
            return rc;
        }
        c->forwarder.retry_initial_ms = v;
        if (c->forwarder.retry_max_ms < v) {
            c->forwarder.retry_max_ms = v;
        }
    }
    if (cn->retry_max_time != NULL) {
        rc = conn_int(l, "errors.retry.max.time.ms", cn->retry_max_time, 0,
                      INT64_MAX, &v);
        if (rc < 0) {
            return rc;
        }
        c->forwarder.retry_max_time_ms = v;
    }
    if (cn->on_error != NULL) {
        if (strcasecmp(cn->on_error, "fail") == 0) {
            c->forwarder.on_error = CONFIG_ON_ERROR_PAUSE;
        } else if (strcasecmp(cn->on_error, "log") == 0 ||
                   strcasecmp(cn->on_error, "ignore") == 0) {
            c->forwarder.on_error = CONFIG_ON_ERROR_DEADLETTER;
        } else {
            return cfg_fail(
                l,
                "'behavior.on.error' must be fail, log or ignore, not "
                "'%s'",
                cfg_clean(cn->on_error, shown, sizeof(shown)));
        }
    } else {
        c->forwarder.on_error = CONFIG_ON_ERROR_PAUSE; /* connector: FAIL */
    }
    return 0;
}

/* the subscription: `topics` (comma list) and `topics.regex` */
static int conn_topics(struct loader *l, struct conn *cn)
{
    struct config *c = l->cfg;
    int rc;

    if ((cn->topics == NULL || cn->topics[0] == '\0') &&
        (cn->topics_regex == NULL || cn->topics_regex[0] == '\0')) {
        return cfg_fail(l, "missing required key 'topics'");
    }
    if (cn->topics != NULL) {
        char *t = cn->topics;

        while (t != NULL) {
            char *comma = strchr(t, ',');
            char *end;

            if (comma != NULL) {
                *comma = '\0';
            }
            end = t + strlen(t);
            while (isspace((unsigned char)*t)) {
                t++;
            }
            while (end > t && isspace((unsigned char)end[-1])) {
                *--end = '\0';
            }
            if (*t != '\0') {
                rc = cfg_check_topic(l, "topics", t);
                if (rc < 0) {
                    return rc;
                }
                if (!cfg_strv_has(c->intake.topics, c->intake.ntopics, t) &&
                    cfg_strv_push(&c->intake.topics, &c->intake.ntopics, t) <
                        0) {
                    return cfg_oom(l);
                }
            }
            t = comma != NULL ? comma + 1 : NULL;
        }
    }
    if (cn->topics_regex != NULL && cn->topics_regex[0] != '\0') {
        struct sbuf b = {0};
        regex_t re;

        /* Connect matches the whole name; librdkafka wants a leading ^ */
        if ((cn->topics_regex[0] != '^' && cfg_sbuf_adds(&b, "^") < 0) ||
            cfg_sbuf_adds(&b, cn->topics_regex) < 0) {
            free(b.s);
            return cfg_oom(l);
        }
        if (regcomp(&re, b.s, REG_EXTENDED | REG_NOSUB) != 0) {
            free(b.s);
            return cfg_fail(l,
                            "'topics.regex' is not a valid regular expression");
        }
        regfree(&re);
        rc = cfg_strv_push(&c->intake.topics, &c->intake.ntopics, b.s);
        free(b.s);
        if (rc < 0) {
            return cfg_oom(l);
        }
    }
    return 0;
}

static int load_conn_values(struct loader *l, struct conn *cn)
{
    int rc;

    rc = conn_urls(l, cn);
    rc = rc < 0 ? rc : conn_auth(l, cn);
    rc = rc < 0 ? rc : conn_flush(l, cn);
    rc = rc < 0 ? rc : conn_topics(l, cn);
    return rc;
}

/* The registry kind of a Connect converter class: "avro", "json_schema",
 * "" for one kadx cannot honour, NULL for a pass-through one (the bytes as
 * they are: String, ByteArray, Json without schemas). */
static const char *conn_converter_kind(const char *cls)
{
    static const struct {
        const char *cls;
        const char *kind;
    } known[] = {
        {"io.confluent.connect.avro.AvroConverter", "avro"},
        {"io.confluent.connect.json.JsonSchemaConverter", "json_schema"},
        {"org.apache.kafka.connect.storage.StringConverter", NULL},
        {"org.apache.kafka.connect.converters.ByteArrayConverter", NULL},
        {"org.apache.kafka.connect.json.JsonConverter", NULL},
    };

    if (cls == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(cls, known[i].cls) == 0) {
            return known[i].kind;
        }
    }
    return "";
}

/* value.converter / key.converter with their registry settings, applied to
 * every route (a connector has one converter for all its topics) */
static int load_conn_converters(struct loader *l, struct conn *cn)
{
    static const char *const side[2] = {"value", "key"};
    char shown[96];

    for (int i = 0; i < 2; i++) {
        const char *kind = conn_converter_kind(cn->conv[i]);
        struct config_registry *g = &l->cfg->registry;

        if (kind != NULL && kind[0] == '\0') {
            return cfg_fail(
                l,
                "'%s.converter' is '%s': kadx reads Avro "
                "(io.confluent.connect.avro.AvroConverter), JSON "
                "Schema (io.confluent.connect.json.JsonSchemaConverter) "
                "or plain (String, ByteArray, Json) values only",
                side[i], cfg_clean(cn->conv[i], shown, sizeof(shown)));
        }
        if (kind == NULL) {
            continue;
        }
        if (cn->conv_url[i] == NULL) {
            return cfg_fail(
                l, "'%s.converter' needs '%s.converter.schema.registry.url'",
                side[i], side[i]);
        }
        if (strchr(cn->conv_url[i], ',') != NULL) {
            return cfg_fail(
                l,
                "'%s.converter.schema.registry.url': kadx takes one "
                "registry URL",
                side[i]);
        }
        if (cn->conv_source[i] != NULL &&
            strcmp(cn->conv_source[i], "USER_INFO") != 0) {
            return cfg_fail(
                l,
                "'%s.converter.basic.auth.credentials.source' is '%s': "
                "kadx takes USER_INFO only",
                side[i], cfg_clean(cn->conv_source[i], shown, sizeof(shown)));
        }
        if (g->url != NULL && strcmp(g->url, cn->conv_url[i]) != 0) {
            return cfg_fail(
                l, "'key.converter.schema.registry.url' and "
                   "'value.converter.schema.registry.url' differ: kadx "
                   "takes one registry");
        }
        if (cfg_replace(&g->url, cn->conv_url[i]) < 0 ||
            (cn->conv_user[i] != NULL &&
             cfg_replace(&g->basic_auth, cn->conv_user[i]) < 0)) {
            return cfg_oom(l);
        }
        for (size_t r = 0; r < l->cfg->nroutes; r++) {
            char **dst = i == 0 ? &l->cfg->routes[r].value_converter
                                : &l->cfg->routes[r].key_converter;

            if (cfg_replace(dst, kind) < 0) {
                return cfg_oom(l);
            }
        }
    }
    return 0;
}

int cfg_load_connector(struct loader *l, const cJSON *map, const char *name)
{
    struct conn cn = {0};
    char path[PATHLEN];
    int n = 0;
    int rc = 0;

    for (const cJSON *c = map->child; c != NULL; c = c->next) {
        const char *k = c->string;
        char *v = NULL;
        size_t i;

        cfg_join(path, sizeof(path), "", k);
        if (++n > MAX_KEYS) {
            rc = cfg_fail(l, "the connector config has more than %d keys",
                          MAX_KEYS);
            goto out;
        }
        for (const cJSON *d = map->child; d != c; d = d->next) {
            if (strcmp(d->string, k) == 0) {
                rc = cfg_fail(l, "duplicate key '%s'", path);
                goto out;
            }
        }
        for (i = 0; i < sizeof(conn_keys) / sizeof(conn_keys[0]); i++) {
            if (strcmp(k, conn_keys[i].key) == 0) {
                break;
            }
        }
        if (i < sizeof(conn_keys) / sizeof(conn_keys[0])) {
            char **f = (char **)((char *)&cn + conn_keys[i].off);

            rc = conn_string(l, c, path, &v);
            if (rc < 0) {
                goto out;
            }
            if (rc == 1) {
                free(*f);
                *f = v;
            }
            if (strcmp(k, "aad.auth.appkey") == 0 ||
                strcmp(k, "aad.auth.accesstoken") == 0 ||
                strstr(k, ".basic.auth.user.info") != NULL) {
                if (v != NULL) {
                    log_add_secret(v);
                }
            }
            if (strcmp(k, "name") == 0 || strcmp(k, "connector.class") == 0 ||
                ((strcmp(k, "value.converter") == 0 ||
                  strcmp(k, "key.converter") == 0) &&
                 conn_converter_kind(v) == NULL)) {
                cfg_note(l, &l->info, k);
            }
        } else if (strncmp(k, "consumer.override.", 18) == 0) {
            rc = conn_string(l, c, path, &v);
            if (rc < 0) {
                goto out;
            }
            if (rc == 1) {
                rc = cfg_kafka_set(&l->cfg->kafka, k + 18, v);
                free(v);
                if (rc < 0) {
                    rc = cfg_oom(l);
                    goto out;
                }
            }
        } else if (in_list(k, conn_info_exact, conn_info_prefix)) {
            cfg_note(l, &l->info, path);
        } else if (in_list(k, conn_warn_exact, conn_warn_prefix)) {
            cfg_note(l, &l->warn, path);
        } else {
            rc = cfg_fail(l, "unknown key '%s'", path);
            goto out;
        }
    }
    rc = 0;
    if (name != NULL && cn.name == NULL) {
        cn.name = strdup(name);
        if (cn.name == NULL) {
            rc = cfg_oom(l);
            goto out;
        }
    }
    if (cn.name != NULL && cn.name[0] != '\0' &&
        cfg_replace(&l->cfg->connector_name, cn.name) < 0) {
        rc = cfg_oom(l);
        goto out;
    }
    /* Connect's own group for a sink connector, the last fallback */
    if (cn.name != NULL && config_kafka_get(l->cfg, "group.id") == NULL &&
        (l->ov == NULL || l->ov->group_id == NULL) &&
        (getenv("KADX_GROUP_ID") == NULL ||
         getenv("KADX_GROUP_ID")[0] == '\0')) {
        struct sbuf b = {0};

        if (cfg_sbuf_adds(&b, "connect-") < 0 ||
            cfg_sbuf_adds(&b, cn.name) < 0 ||
            cfg_kafka_set(&l->cfg->kafka, "group.id", b.s) < 0) {
            free(b.s);
            rc = cfg_oom(l);
            goto out;
        }
        free(b.s);
    }
    rc = load_conn_values(l, &cn);
    if (rc == 0) {
        rc = load_conn_converters(l, &cn);
    }
out:
    conn_free(&cn);
    return rc;
}
