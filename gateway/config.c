/*
 * config.c - the configuration model: loads kadx.json or a Kusto sink
 * connector config into a struct config (config.h), applies the defaults,
 * and ends both formats in the same checks.
 *
 * Loading runs on the main thread before anything starts; the result is
 * read-only afterwards. The text is parsed with cJSON, then one of two
 * readers fills the struct: the native reader (config_native.c) or the
 * connector reader (config_connector.c). Both end in the same checks
 * (finish()): cross-field limits, route uniqueness, the Kafka subscription,
 * and every kafka property passed through rd_kafka_conf_set() so that a
 * misspelt librdkafka property is caught here and not at start-up. Every
 * error is one line in the caller's buffer; values of secret keys never
 * appear in it. config_print.c prints the result; config_value.c holds the
 * helpers all of them share (config_internal.h).
 */
#include "gateway/config.h"
#include "base/utf8.h"
#include "gateway/config_internal.h"
#include "gateway/log.h"

#include <assert.h>
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

#define DEFAULT_AUTHORITY  "https://login.microsoftonline.com"
#define DEFAULT_IMDS       "http://169.254.169.254/metadata/identity/oauth2/token"
#define DEFAULT_TOKEN_FILE "/var/run/secrets/azure/tokens/azure-identity-token"

/* ---- defaults --------------------------------------------------------- */

/*
 * journal.path's default: under systemd's StateDirectory= when the service
 * manager gives one ($STATE_DIRECTORY, a ':'-separated list: the first
 * entry; the packaged unit sets StateDirectory=kadx, i.e. /var/lib/kadx),
 * else ./kadx-journal.db in the working directory (CONFIG.md, "journal").
 */
static int default_journal_path(char **out)
{
    const char *sd = getenv("STATE_DIRECTORY");
    size_t n;
    char *p;

    if (sd == NULL || sd[0] == '\0' || sd[0] != '/') {
        return cfg_replace(out, "./kadx-journal.db");
    }
    n = strcspn(sd, ":");
    while (n > 1 && sd[n - 1] == '/') {
        n--;
    }
    p = malloc(n + sizeof("/kadx-journal.db"));
    if (p == NULL) {
        return -ENOMEM;
    }
    memcpy(p, sd, n);
    memcpy(p + n, "/kadx-journal.db", sizeof("/kadx-journal.db"));
    free(*out);
    *out = p;
    return 0;
}

static int set_defaults(struct config *c)
{
    const char *authority = getenv("AZURE_AUTHORITY_HOST");

    c->log_level = -1;
    c->adx.request_timeout_ms = 30000;
    c->adx.server_timeout_ms = CONFIG_SERVER_TIMEOUT_DEFAULT_MS;
    c->adx.keepalive_idle_ms = 50000;
    c->journal.max_bytes = (int64_t)1024 * MIB;
    c->journal.retention_ms = (int64_t)24 * 3600 * 1000;
    c->journal.reserve_bytes = 8 * MIB;
    c->journal.min_retention_ms = 0;
    c->journal.sync_full = 1;
    c->forwarder.batch_max_bytes = MIB;
    c->forwarder.batch_max_rows = 10000;
    c->forwarder.linger_ms = 200;
    c->forwarder.max_inflight = 4;
    c->forwarder.retry_initial_ms = 500;
    c->forwarder.retry_max_ms = 30000;
    c->forwarder.retry_max_time_ms = 0;
    c->forwarder.ambiguous_delay_ms = 2000;
    c->forwarder.ambiguous_window_ms = -1; /* computed in finish() */
    c->forwarder.on_error = CONFIG_ON_ERROR_DEADLETTER;
    c->intake.skip_tombstones = 1;
    c->admin.max_connections = 64;
    c->admin.max_requests_per_s = 20;
    c->intake.high_water_bytes = -1; /* computed in finish() */
    c->intake.low_water_bytes = -1;
    c->intake.prefetch_bytes = CONFIG_DEFAULT_PREFETCH_BYTES;
    if (default_journal_path(&c->journal.path) < 0 ||
        cfg_replace(&c->admin.listen, "127.0.0.1:8081") < 0 ||
        cfg_replace(&c->adx.auth.authority_host,
                    authority != NULL && authority[0] != '\0'
                        ? authority
                        : DEFAULT_AUTHORITY) < 0) {
        return -ENOMEM;
    }
    return 0;
}

static const char *const auth_names[] = {"none", "static_token",
                                         "client_secret", "managed_identity",
                                         "workload_identity"};

const char *config_auth_method_name(enum config_auth_method m)
{
    if ((size_t)m < sizeof(auth_names) / sizeof(auth_names[0])) {
        return auth_names[m];
    }
    return "?";
}

int cfg_parse_auth_method(const char *s, enum config_auth_method *m)
{
    for (size_t i = 0; i < sizeof(auth_names) / sizeof(auth_names[0]); i++) {
        if (strcasecmp(s, auth_names[i]) == 0) {
            *m = (enum config_auth_method)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- common checks ---------------------------------------------------- */

static int check_auth(struct loader *l)
{
    struct config_auth *a = &l->cfg->adx.auth;
    const char *m = config_auth_method_name(a->method);
    int conn = l->cfg->from_connector;
    int rc;

    /* fields that the method does not use are an error, not silently
     * ignored: a client_secret next to managed_identity is a mistake */
    struct {
        const char *key;
        char *val;
        unsigned used_by; /* bit per method */
    } f[] = {
        {"tenant_id", a->tenant_id,
         1u << CONFIG_AUTH_CLIENT_SECRET | 1u << CONFIG_AUTH_WORKLOAD_IDENTITY},
        {"client_id", a->client_id,
         1u << CONFIG_AUTH_CLIENT_SECRET | 1u << CONFIG_AUTH_WORKLOAD_IDENTITY |
             1u << CONFIG_AUTH_MANAGED_IDENTITY},
        {"client_secret", a->client_secret, 1u << CONFIG_AUTH_CLIENT_SECRET},
        {"token", a->token, 1u << CONFIG_AUTH_STATIC_TOKEN},
        {"token_file", a->token_file, 1u << CONFIG_AUTH_WORKLOAD_IDENTITY},
        {"imds_url", a->imds_url, 1u << CONFIG_AUTH_MANAGED_IDENTITY},
    };

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].val != NULL && !(f[i].used_by & (1u << a->method))) {
            return cfg_fail(l, "'adx.auth.%s' is not used by auth method '%s'",
                            f[i].key, m);
        }
    }
    if (a->client_secret != NULL) {
        log_add_secret(a->client_secret);
    }
    if (a->token != NULL) {
        log_add_secret(a->token);
    }
    switch (a->method) {
    case CONFIG_AUTH_NONE:
        break;
    case CONFIG_AUTH_STATIC_TOKEN:
        if (a->token == NULL) {
            return cfg_fail(l, "missing required key '%s' (%s)",
                            conn ? "aad.auth.accesstoken" : "adx.auth.token",
                            conn ? "aad.auth.strategy az_dev_token"
                                 : "auth method static_token");
        }
        break;
    case CONFIG_AUTH_CLIENT_SECRET:
    case CONFIG_AUTH_WORKLOAD_IDENTITY:
        if (a->tenant_id == NULL) {
            return cfg_fail(l, "missing required key '%s' (auth method %s)",
                            conn ? "aad.auth.authority" : "adx.auth.tenant_id",
                            m);
        }
        if (a->client_id == NULL) {
            return cfg_fail(l, "missing required key '%s' (auth method %s)",
                            conn ? "aad.auth.appid" : "adx.auth.client_id", m);
        }
        if (a->method == CONFIG_AUTH_CLIENT_SECRET &&
            a->client_secret == NULL) {
            return cfg_fail(l, "missing required key '%s' (auth method %s)",
                            conn ? "aad.auth.appkey" : "adx.auth.client_secret",
                            m);
        }
        if (a->method == CONFIG_AUTH_WORKLOAD_IDENTITY &&
            a->token_file == NULL) {
            const char *env = getenv("AZURE_FEDERATED_TOKEN_FILE");

            if (cfg_replace(&a->token_file, env != NULL && env[0] != '\0'
                                                ? env
                                                : DEFAULT_TOKEN_FILE) < 0) {
                return cfg_oom(l);
            }
        }
        break;
    case CONFIG_AUTH_MANAGED_IDENTITY:
        if (a->imds_url == NULL &&
            cfg_replace(&a->imds_url, DEFAULT_IMDS) < 0) {
            return cfg_oom(l);
        }
        rc = cfg_check_url(l, "adx.auth.imds_url", a->imds_url,
                           "169.254.169.254");
        if (rc < 0) {
            return rc;
        }
        break;
    }
    if (a->tenant_id != NULL) {
        rc = cfg_check_id(l, conn ? "aad.auth.authority" : "adx.auth.tenant_id",
                          a->tenant_id);
        if (rc < 0) {
            return rc;
        }
    }
    if (a->client_id != NULL) {
        rc = cfg_check_id(l, conn ? "aad.auth.appid" : "adx.auth.client_id",
                          a->client_id);
        if (rc < 0) {
            return rc;
        }
    }
    return cfg_check_url(l, "adx.auth.authority_host", a->authority_host, NULL);
}

/* value_converter / key_converter and the registry they need */
static int check_route_registry(struct loader *l, struct config_route *r,
                                const char *p)
{
    struct config_registry *g = &r->registry, *top = &l->cfg->registry;
    char *conv[2] = {r->value_converter, r->key_converter};
    const char *names[2] = {"value_converter", "key_converter"};
    char fp[PATHLEN], shown[64];
    int rc;

    for (int i = 0; i < 2; i++) {
        if (conv[i] != NULL && strcmp(conv[i], "avro") != 0 &&
            strcmp(conv[i], "json_schema") != 0) {
            cfg_join(fp, sizeof(fp), p, names[i]);
            return cfg_fail(l, "'%s' must be avro or json_schema, not '%s'", fp,
                            cfg_clean(conv[i], shown, sizeof(shown)));
        }
    }
    if (strcmp(r->format, "avro") == 0 &&
        (r->value_converter == NULL ||
         strcmp(r->value_converter, "avro") != 0)) {
        cfg_join(fp, sizeof(fp), p, "format");
        return cfg_fail(
            l,
            "'%s' avro needs '%s.value_converter' avro (the records' "
            "writer schemas come from the registry)",
            fp, p);
    }
    if (strcmp(r->format, "avro") == 0 && r->meta.headers != NULL) {
        return cfg_fail(
            l,
            "'%s.meta.headers' is not available with format avro "
            "(topic, partition, offset, timestamp, key and batch_id "
            "are)",
            p);
    }
    if (r->value_converter != NULL && strcmp(r->format, "csv") == 0) {
        cfg_join(fp, sizeof(fp), p, "value_converter");
        return cfg_fail(l, "'%s' needs format json, multijson or avro", fp);
    }
    if (r->value_converter == NULL && r->key_converter == NULL) {
        return 0;
    }
    if (g->url == NULL && top->url != NULL) {
        if (cfg_replace(&g->url, top->url) < 0 ||
            cfg_replace(&g->basic_auth, top->basic_auth) < 0 ||
            cfg_replace(&g->ca_file, top->ca_file) < 0) {
            return cfg_oom(l);
        }
        g->timeout_ms = top->timeout_ms;
    }
    if (g->url == NULL) {
        return cfg_fail(l,
                        "'%s' uses a schema registry converter but no "
                        "'schema_registry.url' is set",
                        p);
    }
    if (g->timeout_ms == 0) {
        g->timeout_ms = 10000;
    }
    cfg_join(fp, sizeof(fp), p, "schema_registry.url");
    rc = cfg_check_url(l, fp, g->url, NULL);
    if (rc < 0) {
        return rc;
    }
    if (g->basic_auth != NULL) {
        if (strchr(g->basic_auth, ':') == NULL) {
            cfg_join(fp, sizeof(fp), p, "schema_registry.basic_auth");
            return cfg_fail(l, "'%s' must be 'user:secret'", fp);
        }
        log_add_secret(g->basic_auth);
        log_add_secret(strchr(g->basic_auth, ':') + 1);
    }
    return 0;
}

/* A route's name (defaulted to its topic) and its uniqueness against the
 * earlier routes; p is the route's path in messages. */
static int check_route_name(struct loader *l, size_t i, const char *p)
{
    struct config_route *r = &l->cfg->routes[i];
    const char *base =
        l->cfg->from_connector ? "kusto.tables.topics.mapping" : "routes";
    char shown[64];

    if (r->name == NULL) {
        const char *n = r->topic != NULL ? r->topic : r->topic_regex;

        if (cfg_replace(&r->name, n) < 0) {
            return cfg_oom(l);
        }
    }
    if (strlen(r->name) > 256) {
        return cfg_fail(l, "'%s.name' is longer than 256 characters", p);
    }
    for (const char *s = r->name; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' ||
            (unsigned char)*s == 0x7f) {
            return cfg_fail(l,
                            "'%s.name' must not contain quotes, backslashes or "
                            "control characters",
                            p);
        }
    }
    /* uniqueness against earlier routes */
    for (size_t j = 0; j < i; j++) {
        struct config_route *o = &l->cfg->routes[j];
        char q[PATHLEN];

        cfg_join_index(q, sizeof(q), base, j);
        if (r->topic != NULL && o->topic != NULL &&
            strcmp(r->topic, o->topic) == 0) {
            return cfg_fail(l, "%s: topic '%s' is already routed by %s", p,
                            r->topic, q);
        }
        if (r->topic_regex != NULL && o->topic_regex != NULL &&
            strcmp(r->topic_regex, o->topic_regex) == 0) {
            return cfg_fail(l, "%s: topic_regex '%s' is already routed by %s",
                            p, cfg_clean(r->topic_regex, shown, sizeof(shown)),
                            q);
        }
        if (strcmp(r->name, o->name) == 0) {
            return cfg_fail(l, "%s: route name '%s' is already used by %s", p,
                            cfg_clean(r->name, shown, sizeof(shown)), q);
        }
    }
    return 0;
}

/* The route's meta columns: valid, distinct, and not on csv. */
static int check_route_meta(struct loader *l, struct config_route *r,
                            const char *p)
{
    struct {
        const char *name;
        const char *val;
    } meta[] = {
        {"topic", r->meta.topic},       {"partition", r->meta.partition},
        {"offset", r->meta.offset},     {"timestamp", r->meta.timestamp},
        {"key", r->meta.key},           {"headers", r->meta.headers},
        {"batch_id", r->meta.batch_id},
    };
    char fp[PATHLEN];
    char mp[PATHLEN];
    int has_meta = 0;
    int rc;

    for (size_t m = 0; m < sizeof(meta) / sizeof(meta[0]); m++) {
        if (meta[m].val == NULL) {
            continue;
        }
        has_meta = 1;
        cfg_join(mp, sizeof(mp), p, "meta");
        cfg_join(fp, sizeof(fp), mp, meta[m].name);
        rc = cfg_check_column(l, fp, meta[m].val);
        if (rc < 0) {
            return rc;
        }
        for (size_t k = 0; k < m; k++) {
            if (meta[k].val != NULL && strcmp(meta[k].val, meta[m].val) == 0) {
                return cfg_fail(l,
                                "'%s.meta': '%s' and '%s' use the same field "
                                "name '%s'",
                                p, meta[k].name, meta[m].name, meta[m].val);
            }
        }
    }
    if (has_meta && strcmp(r->format, "csv") == 0) {
        return cfg_fail(
            l,
            "'%s.meta' needs format json, multijson or avro (fields "
            "cannot be added to csv records)",
            p);
    }
    return 0;
}

static int check_route(struct loader *l, size_t i)
{
    struct config_route *r = &l->cfg->routes[i];
    const char *base =
        l->cfg->from_connector ? "kusto.tables.topics.mapping" : "routes";
    const char *dbkey = l->cfg->from_connector ? "db" : "database";
    char p[PATHLEN];
    char fp[PATHLEN];
    char shown[64];
    int rc;

    cfg_join_index(p, sizeof(p), base, i);
    if (r->topic != NULL && strcmp(r->topic, "*") != 0) {
        cfg_join(fp, sizeof(fp), p, "topic");
        rc = cfg_check_topic(l, fp, r->topic);
        if (rc < 0) {
            return rc;
        }
    }
    if (r->topic_regex != NULL) {
        regex_t *re;
        char msg[128];

        cfg_join(fp, sizeof(fp), p, "topic_regex");
        if (r->topic_regex[0] != '^') {
            return cfg_fail(l,
                            "'%s' must start with '^' (librdkafka's mark of a "
                            "pattern subscription)",
                            fp);
        }
        re = calloc(1, sizeof(*re));
        if (re == NULL) {
            return cfg_oom(l);
        }
        rc = regcomp(re, r->topic_regex, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            regerror(rc, re, msg, sizeof(msg));
            free(re);
            return cfg_fail(l, "'%s' is not a valid regular expression: %s", fp,
                            msg);
        }
        r->topic_re = re;
    }
    cfg_join(fp, sizeof(fp), p, dbkey);
    rc = cfg_check_ident(l, fp, r->database);
    if (rc < 0) {
        return rc;
    }
    cfg_join(fp, sizeof(fp), p, "table");
    rc = cfg_check_ident(l, fp, r->table);
    if (rc < 0) {
        return rc;
    }
    if (r->mapping != NULL) {
        cfg_join(fp, sizeof(fp), p, "mapping");
        rc = cfg_check_ident(l, fp, r->mapping);
        if (rc < 0) {
            return rc;
        }
    }
    for (char *s = r->format; *s != '\0'; s++) {
        *s = (char)tolower((unsigned char)*s);
    }
    if (strcmp(r->format, "json") != 0 && strcmp(r->format, "multijson") != 0 &&
        strcmp(r->format, "csv") != 0 && strcmp(r->format, "avro") != 0) {
        cfg_join(fp, sizeof(fp), p, "format");
        return cfg_fail(l,
                        "'%s' must be json, multijson, csv or avro, not '%s'",
                        fp, cfg_clean(r->format, shown, sizeof(shown)));
    }
    rc = check_route_registry(l, r, p);
    if (rc < 0) {
        return rc;
    }
    rc = check_route_meta(l, r, p);
    if (rc < 0) {
        return rc;
    }
    if (r->dedupe_column != NULL) {
        cfg_join(fp, sizeof(fp), p, "dedupe_column");
        rc = cfg_check_column(l, fp, r->dedupe_column);
        if (rc < 0) {
            return rc;
        }
        if (r->meta.batch_id == NULL) {
            return cfg_fail(l,
                            "'%s' needs '%s.meta.batch_id' (the batch id is "
                            "what is deduplicated)",
                            fp, p);
        }
    }
    return check_route_name(l, i, p);
}

/* Runs every kafka property through librdkafka's own parser. */
static int check_kafka(struct loader *l)
{
    struct config_kafka *k = &l->cfg->kafka;
    rd_kafka_conf_t *conf;
    char errstr[256];
    char path[PATHLEN];
    int rc = 0;

    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        return cfg_oom(l);
    }
    for (size_t i = 0; i < k->n && rc == 0; i++) {
        rd_kafka_conf_res_t res;

        cfg_join(path, sizeof(path), "kafka", k->keys[i]);
        if (cfg_kafka_key_is_secret(k->keys[i])) {
            log_add_secret(k->values[i]);
        }
        if ((strcmp(k->keys[i], "enable.auto.commit") == 0 ||
             strcmp(k->keys[i], "enable.auto.offset.store") == 0) &&
            strcmp(k->values[i], "false") != 0) {
            rc = cfg_fail(
                l,
                "'%s' must be false: kadx commits offsets itself, once "
                "the journal is durable",
                path);
            break;
        }
        if (strcmp(k->keys[i], "auto.offset.reset") == 0) {
            /* kadx runs librdkafka with "error" and applies the choice
             * itself, counting what a reset skips (INTAKE.md) */
            const char *v = k->values[i];

            if (strcmp(v, "earliest") == 0 || strcmp(v, "smallest") == 0 ||
                strcmp(v, "beginning") == 0) {
                l->cfg->intake.reset_latest = 0;
            } else if (strcmp(v, "latest") == 0 || strcmp(v, "largest") == 0 ||
                       strcmp(v, "end") == 0) {
                l->cfg->intake.reset_latest = 1;
            } else {
                rc = cfg_fail(l,
                              "'%s' must be earliest or latest (kadx resets "
                              "offsets itself and reports what a reset skips)",
                              path);
                break;
            }
        }
        /* setting it loads shared objects: not a side effect for --check */
        if (strcmp(k->keys[i], "plugin.library.paths") == 0) {
            continue;
        }
        res = rd_kafka_conf_set(conf, k->keys[i], k->values[i], errstr,
                                sizeof(errstr));
        if (res == RD_KAFKA_CONF_UNKNOWN) {
            rc = cfg_fail(l, "unknown key '%s' (not a librdkafka property)",
                          path);
        } else if (res != RD_KAFKA_CONF_OK) {
            if (cfg_kafka_key_is_secret(k->keys[i])) {
                rc = cfg_fail(l, "'%s' is invalid", path);
            } else {
                rc = cfg_fail(l, "'%s': %s", path, errstr);
            }
        }
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}

/*
 * adx.proxy: a proxy URL libcurl understands (http://, https://, socks4://,
 * socks4a://, socks5://, socks5h://), possibly with user:password (then it
 * is a secret). adx.no_proxy: libcurl's list (comma-separated host names,
 * domains, IPs, CIDRs, or "*"). The environment's http_proxy, https_proxy,
 * all_proxy and no_proxy are ignored (adx.c): CONFIG.md, "Proxy".
 */
static int check_proxy(struct loader *l)
{
    static const char *const schemes[] = {
        "http://",   "https://",   "socks4://", "socks4a://",
        "socks5://", "socks5h://", NULL};
    const char *p = l->cfg->adx.proxy;
    const char *np = l->cfg->adx.no_proxy;
    int ok = 0;

    if (p != NULL) {
        for (size_t i = 0; schemes[i] != NULL; i++) {
            if (strncasecmp(p, schemes[i], strlen(schemes[i])) == 0 &&
                p[strlen(schemes[i])] != '\0') {
                ok = 1;
            }
        }
        if (!ok) {
            return cfg_fail(l,
                            "'adx.proxy' must be a URL starting with http://, "
                            "https://, socks4://, socks4a://, socks5:// or "
                            "socks5h://");
        }
        for (const char *s = p; *s != '\0'; s++) {
            if ((unsigned char)*s <= 0x20) {
                return cfg_fail(l, "'adx.proxy' must not contain spaces or "
                                   "control characters");
            }
        }
        if (strchr(p, '@') != NULL) {
            log_add_secret(p); /* user:password inside */
        }
    }
    for (const char *s = np; s != NULL && *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20) {
            return cfg_fail(l, "'adx.no_proxy' must not contain control "
                               "characters");
        }
    }
    return 0;
}

/* Kafka: flags override the file; the environment fills gaps */
static int finish_kafka(struct loader *l)
{
    struct config *c = l->cfg;
    const struct config_overrides *ov = l->ov;
    const char *env;
    int rc;

    if (ov != NULL && ov->bootstrap_servers != NULL &&
        cfg_kafka_set(&c->kafka, "bootstrap.servers", ov->bootstrap_servers) <
            0) {
        return cfg_oom(l);
    }
    if (ov != NULL && ov->group_id != NULL &&
        cfg_kafka_set(&c->kafka, "group.id", ov->group_id) < 0) {
        return cfg_oom(l);
    }
    if (ov != NULL && ov->admin_listen != NULL) {
        free(c->admin.listen);
        c->admin.listen = NULL;
        if (strcasecmp(ov->admin_listen, "off") != 0 &&
            cfg_replace(&c->admin.listen, ov->admin_listen) < 0) {
            return cfg_oom(l);
        }
    }
    env = getenv("KADX_BOOTSTRAP_SERVERS");
    if (config_kafka_get(c, "bootstrap.servers") == NULL && env != NULL &&
        env[0] != '\0' &&
        cfg_kafka_set(&c->kafka, "bootstrap.servers", env) < 0) {
        return cfg_oom(l);
    }
    env = getenv("KADX_GROUP_ID");
    if (config_kafka_get(c, "group.id") == NULL && env != NULL &&
        env[0] != '\0' && cfg_kafka_set(&c->kafka, "group.id", env) < 0) {
        return cfg_oom(l);
    }
    env = config_kafka_get(c, "bootstrap.servers");
    if (env == NULL || env[0] == '\0') {
        return cfg_fail(l, "missing required key 'kafka.bootstrap.servers' (or "
                           "--bootstrap-servers, or KADX_BOOTSTRAP_SERVERS)");
    }
    env = config_kafka_get(c, "group.id");
    if (env == NULL || env[0] == '\0') {
        return cfg_fail(l, "missing required key 'kafka.group.id' (or "
                           "--group-id, or KADX_GROUP_ID)");
    }
    rc = check_kafka(l);
    if (rc < 0) {
        return rc;
    }
    return 0;
}

/* the subscription: every topic routed, every route subscribed */
static int finish_subscription(struct loader *l, int wildcard)
{
    struct config *c = l->cfg;

    if (c->from_connector) {
        for (size_t i = 0; i < c->intake.ntopics; i++) {
            const char *t = c->intake.topics[i];

            if (t[0] != '^' && !wildcard &&
                config_route_for_topic(c, t) == NULL) {
                return cfg_fail(
                    l,
                    "topic '%s' in 'topics' has no entry in "
                    "'kusto.tables.topics.mapping' (and there is no "
                    "'*' entry)",
                    t);
            }
        }
    } else {
        size_t extra = c->intake.ntopics;

        for (size_t i = 0; i < extra; i++) {
            const char *t = c->intake.topics[i];

            if (t[0] != '^' && !wildcard &&
                config_route_for_topic(c, t) == NULL) {
                return cfg_fail(l, "topic '%s' in 'intake.topics' has no route",
                                t);
            }
        }
        for (size_t i = 0; i < c->nroutes; i++) {
            const struct config_route *r = &c->routes[i];
            const char *t = r->topic != NULL ? r->topic : r->topic_regex;

            if (strcmp(t, "*") != 0 &&
                !cfg_strv_has(c->intake.topics, c->intake.ntopics, t) &&
                cfg_strv_push(&c->intake.topics, &c->intake.ntopics, t) < 0) {
                return cfg_oom(l);
            }
        }
        if (wildcard && extra == 0) {
            return cfg_fail(l,
                            "a '*' route needs 'intake.topics' (the topics to "
                            "subscribe to)");
        }
    }
    return 0;
}

/* cross-field limits and the defaults derived from other keys */
static int finish_limits(struct loader *l)
{
    struct config *c = l->cfg;

    if (c->forwarder.batch_max_bytes > CONFIG_ADX_MAX_BATCH_BYTES) {
        return cfg_fail(
            l,
            "'forwarder.batch_max_bytes' (%lld) must be at most %d: "
            "ADX streaming ingestion takes at most 4 MiB per request",
            (long long)c->forwarder.batch_max_bytes,
            CONFIG_ADX_MAX_BATCH_BYTES);
    }
    if (c->forwarder.retry_max_ms < c->forwarder.retry_initial_ms) {
        return cfg_fail(l,
                        "'forwarder.retry_max_ms' (%lld) must not be below "
                        "'forwarder.retry_initial_ms' (%lld)",
                        (long long)c->forwarder.retry_max_ms,
                        (long long)c->forwarder.retry_initial_ms);
    }
    {
        /* INV-5: a request ADX received may commit until the client gave
         * up (request_timeout_ms after the send) plus the life the server
         * gives it (server_timeout_ms); "absent" before then proves
         * nothing (FORWARDER.md, "How long an ambiguous batch waits") */
        int64_t min = c->adx.request_timeout_ms + c->adx.server_timeout_ms;

        if (c->forwarder.ambiguous_window_ms < 0) {
            c->forwarder.ambiguous_window_ms = min + CONFIG_AMBIGUOUS_SLACK_MS;
        } else if (c->forwarder.ambiguous_window_ms < min) {
            return cfg_fail(l,
                            "'forwarder.ambiguous_window_ms' (%lld) must be at "
                            "least 'adx.request_timeout_ms' + "
                            "'adx.server_timeout_ms' (%lld): a batch resent "
                            "sooner can duplicate a request ADX is still "
                            "running",
                            (long long)c->forwarder.ambiguous_window_ms,
                            (long long)min);
        }
    }
    if (c->intake.high_water_bytes < 0) {
        c->intake.high_water_bytes = c->journal.max_bytes / 5 * 4;
    }
    if (c->intake.low_water_bytes < 0) {
        c->intake.low_water_bytes = c->journal.max_bytes / 2;
        if (c->intake.low_water_bytes >= c->intake.high_water_bytes) {
            c->intake.low_water_bytes = c->intake.high_water_bytes / 2;
        }
    }
    if (c->intake.high_water_bytes > c->journal.max_bytes) {
        return cfg_fail(l,
                        "'intake.high_water_bytes' (%lld) must not exceed "
                        "'journal.max_bytes' (%lld)",
                        (long long)c->intake.high_water_bytes,
                        (long long)c->journal.max_bytes);
    }
    if (c->intake.low_water_bytes >= c->intake.high_water_bytes) {
        return cfg_fail(l,
                        "'intake.low_water_bytes' (%lld) must be below "
                        "'intake.high_water_bytes' (%lld)",
                        (long long)c->intake.low_water_bytes,
                        (long long)c->intake.high_water_bytes);
    }
    return 0;
}

/* the admin endpoint: token, listen address, TLS */
static int finish_admin(struct loader *l)
{
    struct config *c = l->cfg;
    int rc;

    if (c->admin.token != NULL) {
        if (strlen(c->admin.token) < 8) {
            return cfg_fail(l, "'admin.token' must be at least 8 characters");
        }
        log_add_secret(c->admin.token);
    }
    if (c->admin.listen != NULL) {
        rc = cfg_check_listen(l, "admin.listen", c->admin.listen);
        if (rc < 0) {
            return rc;
        }
    }
    if (c->admin.token_on_get && c->admin.token == NULL) {
        return cfg_fail(l, "'admin.token_on_get' needs 'admin.token'");
    }
    if ((c->admin.tls_cert == NULL) != (c->admin.tls_key == NULL)) {
        return cfg_fail(l, "'admin.%s' needs 'admin.%s' (TLS takes both files)",
                        c->admin.tls_cert != NULL ? "tls_cert" : "tls_key",
                        c->admin.tls_cert != NULL ? "tls_key" : "tls_cert");
    }
    return 0;
}

static int finish(struct loader *l)
{
    struct config *c = l->cfg;
    int wildcard = 0;
    int rc;

    rc = finish_kafka(l);
    if (rc < 0) {
        return rc;
    }

    /* ADX */
    rc = cfg_check_url(l,
                       c->from_connector ? "kusto.query.url" : "adx.ingest_url",
                       c->adx.ingest_url, NULL);
    if (rc < 0) {
        return rc;
    }
    if (c->adx.query_url == NULL &&
        cfg_replace(&c->adx.query_url, c->adx.ingest_url) < 0) {
        return cfg_oom(l);
    }
    if (c->adx.dm_url == NULL &&
        config_dm_url_default(c->adx.ingest_url, &c->adx.dm_url) < 0) {
        return cfg_oom(l);
    }
    rc = cfg_check_url(l, "adx.query_url", c->adx.query_url, NULL);
    rc = rc < 0 ? rc : cfg_check_url(l, "adx.dm_url", c->adx.dm_url, NULL);
    rc = rc < 0 ? rc : check_auth(l);
    if (rc < 0) {
        return rc;
    }
    rc = check_proxy(l);
    if (rc < 0) {
        return rc;
    }
    if (c->adx.auth.scope != NULL) {
        for (const char *s = c->adx.auth.scope; *s != '\0'; s++) {
            if ((unsigned char)*s <= 0x20 || *s == '&') {
                return cfg_fail(l, "'adx.auth.scope' must not contain spaces, "
                                   "'&' or control characters");
            }
        }
    }

    /* routes */
    for (size_t i = 0; i < c->nroutes; i++) {
        rc = check_route(l, i);
        if (rc < 0) {
            return rc;
        }
        if (c->routes[i].topic != NULL &&
            strcmp(c->routes[i].topic, "*") == 0) {
            wildcard = 1;
        }
    }

    rc = finish_subscription(l, wildcard);
    rc = rc < 0 ? rc : finish_limits(l);
    rc = rc < 0 ? rc : finish_admin(l);
    return rc;
}

/* ---- entry points ----------------------------------------------------- */

static int is_connector(const cJSON *root, const cJSON **map, const char **name)
{
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "name");

    *map = root;
    *name = NULL;
    if (cJSON_IsObject(cfg)) {
        *map = cfg;
        if (cJSON_IsString(nm)) {
            *name = nm->valuestring;
        }
        return 1;
    }
    for (const cJSON *c = root->child; c != NULL; c = c->next) {
        if (strchr(c->string, '.') != NULL ||
            strcmp(c->string, "topics") == 0 ||
            strcmp(c->string, "name") == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *const wrapper_keys[] = {"name", "config", "tasks", "type",
                                           NULL};

/* The notes of a successful load: connector keys ignored, an admin
 * endpoint open beyond loopback. */
static void log_load_notes(const struct loader *l)
{
    if (l->info.len > 0) {
        log_info("config",
                 "connector keys with no meaning for kadx (accepted): %s",
                 l->info.s);
    }
    if (l->warn.len > 0) {
        log_warn("config", "connector keys kadx cannot honour (ignored): %s",
                 l->warn.s);
    }
    if (l->cfg->admin.listen != NULL && l->cfg->admin.token == NULL &&
        strncmp(l->cfg->admin.listen, "127.", 4) != 0 &&
        strncmp(l->cfg->admin.listen, "localhost:", 10) != 0 &&
        strncmp(l->cfg->admin.listen, "[::1]:", 6) != 0) {
        log_warn("config",
                 "admin.listen '%s' is not a loopback address and "
                 "admin.token is not set: anyone who can reach it can "
                 "replay and pause",
                 l->cfg->admin.listen);
    } else if (l->cfg->admin.listen != NULL &&
               strncmp(l->cfg->admin.listen, "127.", 4) != 0 &&
               strncmp(l->cfg->admin.listen, "localhost:", 10) != 0 &&
               strncmp(l->cfg->admin.listen, "[::1]:", 6) != 0 &&
               (l->cfg->admin.tls_cert == NULL ||
                !l->cfg->admin.token_on_get)) {
        log_warn("config", "admin.listen '%s' is not a loopback address: %s",
                 l->cfg->admin.listen,
                 l->cfg->admin.tls_cert == NULL
                     ? "without admin.tls_cert the token and the "
                       "status travel in clear text"
                     : "without admin.token_on_get anyone who can "
                       "reach it can read /status, /metrics and "
                       "/dead-letters");
    }
}

int config_load_string(const char *json, const struct config_overrides *ov,
                       struct config **out, char *err, size_t errlen)
{
    struct loader l = {0};
    const char *end = NULL;
    const cJSON *map;
    const char *name;
    cJSON *root = NULL;
    size_t len;
    int rc;

    assert(json != NULL);
    assert(out != NULL);
    len = strlen(json);

    *out = NULL;
    l.ov = ov;
    l.err = err;
    l.errlen = errlen;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (len > CONFIG_MAX_BYTES) {
        cfg_fail(&l, "the config is larger than %d bytes", CONFIG_MAX_BYTES);
        return -EFBIG;
    }
    for (size_t i = 0, line = 1; i < len;) {
        size_t n = utf8_len((const unsigned char *)json + i);

        if (n == 0) {
            /* JSON is UTF-8 (RFC 8259); a stray byte would reach names,
             * logs and ADX as it is */
            cfg_fail(&l, "the config is not valid UTF-8 (line %zu, byte %zu)",
                     line, i + 1);
            return -EINVAL;
        }
        line += json[i] == '\n';
        i += n;
    }
    l.cfg = calloc(1, sizeof(*l.cfg));
    if (l.cfg == NULL) {
        return cfg_oom(&l);
    }
    if (set_defaults(l.cfg) < 0) {
        rc = cfg_oom(&l);
        goto out_cfg;
    }
    root = cJSON_ParseWithLengthOpts(json, len + 1, &end, 1);
    if (root == NULL) {
        int line = 1;
        int col = 1;

        for (const char *p = json; end != NULL && p < end && *p; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        rc = cfg_fail(&l, "the config is not valid JSON (line %d, column %d)",
                      line, col);
        goto out_cfg;
    }
    if (!cJSON_IsObject(root)) {
        rc = cfg_fail(&l, "the config must be a JSON object");
        goto out_root;
    }
    if (is_connector(root, &map, &name)) {
        l.cfg->from_connector = 1;
        rc = map != root ? cfg_check_keys(&l, root, "", wrapper_keys) : 0;
        if (rc < 0) {
            goto out_root;
        }
        rc = cfg_load_connector(&l, map, name);
    } else {
        rc = cfg_load_native(&l, root);
    }
    if (rc == 0) {
        rc = finish(&l);
    }
    if (rc == 0 && l.oom) {
        rc = cfg_oom(&l);
    }
    if (rc == 0) {
        log_load_notes(&l);
        *out = l.cfg;
        l.cfg = NULL;
    }
out_root:
    cJSON_Delete(root);
out_cfg:
    config_free(l.cfg);
    free(l.info.s);
    free(l.warn.s);
    return rc;
}

int config_load_file(const char *path, const struct config_overrides *ov,
                     struct config **out, char *err, size_t errlen)
{
    char shown[128];
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd;
    int rc;

    assert(path != NULL);
    assert(out != NULL);

    *out = NULL;
    cfg_clean(path, shown, sizeof(shown));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot read config file '%s': %s", shown,
                 strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot read config file '%s': %s", shown,
                 strerror(-rc));
        goto out_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(err, errlen, "config file '%s' is not a regular file", shown);
        goto out_fd;
    }
    buf = malloc(CONFIG_MAX_BYTES + 2);
    if (buf == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory while loading the config");
        goto out_fd;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, CONFIG_MAX_BYTES + 1 - len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot read config file '%s': %s", shown,
                     strerror(-rc));
            goto out_buf;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > CONFIG_MAX_BYTES) {
            rc = -EFBIG;
            snprintf(err, errlen, "config file '%s' is larger than %d bytes",
                     shown, CONFIG_MAX_BYTES);
            goto out_buf;
        }
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        rc = -EINVAL;
        snprintf(err, errlen, "config file '%s' contains a NUL byte", shown);
        goto out_buf;
    }
    rc = config_load_string(buf, ov, out, err, errlen);
out_buf:
    free(buf);
out_fd:
    close(fd);
    return rc;
}

static void registry_release(struct config_registry *g)
{
    free(g->url);
    free(g->basic_auth);
    free(g->ca_file);
}

static void route_release(struct config_route *r)
{
    free(r->name);
    free(r->topic);
    free(r->topic_regex);
    free(r->database);
    free(r->table);
    free(r->format);
    free(r->mapping);
    free(r->meta.topic);
    free(r->meta.partition);
    free(r->meta.offset);
    free(r->meta.timestamp);
    free(r->meta.key);
    free(r->meta.headers);
    free(r->meta.batch_id);
    free(r->dedupe_column);
    free(r->value_converter);
    free(r->key_converter);
    registry_release(&r->registry);
    if (r->topic_re != NULL) {
        regfree(r->topic_re);
        free(r->topic_re);
    }
}

void config_free(struct config *cfg)
{
    struct config_auth *a;

    if (cfg == NULL) {
        return;
    }
    cfg_strv_free(cfg->kafka.keys, cfg->kafka.n);
    cfg_strv_free(cfg->kafka.values, cfg->kafka.n);
    free(cfg->adx.ingest_url);
    free(cfg->adx.query_url);
    free(cfg->adx.dm_url);
    free(cfg->adx.proxy);
    free(cfg->adx.no_proxy);
    a = &cfg->adx.auth;
    free(a->tenant_id);
    free(a->client_id);
    free(a->client_secret);
    free(a->token);
    free(a->token_file);
    free(a->authority_host);
    free(a->scope);
    free(a->imds_url);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        route_release(&cfg->routes[i]);
    }
    free(cfg->routes);
    free(cfg->journal.path);
    cfg_strv_free(cfg->intake.topics, cfg->intake.ntopics);
    free(cfg->admin.listen);
    free(cfg->admin.token);
    free(cfg->admin.tls_cert);
    free(cfg->admin.tls_key);
    free(cfg->connector_name);
    registry_release(&cfg->registry);
    free(cfg);
}

const char *config_kafka_get(const struct config *cfg, const char *key)
{
    assert(cfg != NULL);
    assert(key != NULL);

    for (size_t i = 0; i < cfg->kafka.n; i++) {
        if (strcmp(cfg->kafka.keys[i], key) == 0) {
            return cfg->kafka.values[i];
        }
    }
    return NULL;
}

const struct config_route *config_route_for_topic(const struct config *cfg,
                                                  const char *topic)
{
    const struct config_route *star = NULL;

    assert(cfg != NULL);
    assert(topic != NULL);

    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];

        if (r->topic != NULL && strcmp(r->topic, topic) == 0) {
            return r;
        }
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];

        if (r->topic_re != NULL &&
            regexec(r->topic_re, topic, 0, NULL, 0) == 0) {
            return r;
        }
        if (r->topic != NULL && strcmp(r->topic, "*") == 0 && star == NULL) {
            star = r;
        }
    }
    return star;
}
