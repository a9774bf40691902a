/*
 * config_print.c - the effective config as native kadx.json
 * (config_to_json(): `kadx run --check` prints it, the reload diff compares
 * two of them): every value after defaults, secrets shown as "***". Any
 * thread; it only reads the struct.
 */
#include "gateway/config.h"
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

/* ---- effective config as JSON ----------------------------------------- */

static int add_str(cJSON *o, const char *k, const char *v)
{
    cJSON *it = v != NULL ? cJSON_CreateString(v) : cJSON_CreateNull();

    return it != NULL && cJSON_AddItemToObject(o, k, it) ? 0 : -ENOMEM;
}

static int add_secret(cJSON *o, const char *k, const char *v)
{
    return add_str(o, k, v != NULL ? "***" : NULL);
}

static int add_num(cJSON *o, const char *k, int64_t v)
{
    return cJSON_AddNumberToObject(o, k, (double)v) != NULL ? 0 : -ENOMEM;
}

static cJSON *add_obj(cJSON *parent, const char *k)
{
    return cJSON_AddObjectToObject(parent, k);
}

/* "kafka" (secret properties masked) and "adx" with its "auth" */
static int print_kafka_adx(cJSON *root, const struct config *cfg)
{
    const struct config_auth *a = &cfg->adx.auth;
    cJSON *o;
    int rc = 0;

    o = add_obj(root, "kafka");
    if (o == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->kafka.n && rc == 0; i++) {
        const char *k = cfg->kafka.keys[i];

        rc = cfg_kafka_key_is_secret(k) ? add_secret(o, k, cfg->kafka.values[i])
                                        : add_str(o, k, cfg->kafka.values[i]);
    }
    o = add_obj(root, "adx");
    if (rc < 0 || o == NULL) {
        return -ENOMEM;
    }
    rc |= add_str(o, "ingest_url", cfg->adx.ingest_url);
    rc |= add_str(o, "query_url", cfg->adx.query_url);
    rc |= add_str(o, "dm_url", cfg->adx.dm_url);
    rc |= add_num(o, "request_timeout_ms", cfg->adx.request_timeout_ms);
    rc |= add_num(o, "server_timeout_ms", cfg->adx.server_timeout_ms);
    rc |= add_num(o, "keepalive_idle_ms", cfg->adx.keepalive_idle_ms);
    if (cfg->adx.proxy != NULL) {
        rc |= strchr(cfg->adx.proxy, '@') != NULL
                  ? add_secret(o, "proxy", cfg->adx.proxy)
                  : add_str(o, "proxy", cfg->adx.proxy);
    }
    if (cfg->adx.no_proxy != NULL) {
        rc |= add_str(o, "no_proxy", cfg->adx.no_proxy);
    }
    o = add_obj(o, "auth");
    if (rc < 0 || o == NULL) {
        return -ENOMEM;
    }
    rc |= add_str(o, "method", config_auth_method_name(a->method));
    rc |= add_str(o, "tenant_id", a->tenant_id);
    rc |= add_str(o, "client_id", a->client_id);
    rc |= add_secret(o, "client_secret", a->client_secret);
    rc |= add_secret(o, "token", a->token);
    rc |= add_str(o, "token_file", a->token_file);
    rc |= add_str(o, "authority_host", a->authority_host);
    rc |= add_str(o, "scope", a->scope);
    rc |= add_str(o, "imds_url", a->imds_url);
    return rc;
}

/* One route of "routes" (the registry's basic_auth masked). */
static int print_route(cJSON *arr, const struct config_route *r)
{
    int rc = 0;
    cJSON *ro = cJSON_CreateObject();
    cJSON *m;

    if (ro == NULL || !cJSON_AddItemToArray(arr, ro)) {
        cJSON_Delete(ro);
        return -ENOMEM;
    }
    rc |= add_str(ro, "name", r->name);
    if (r->topic != NULL) {
        rc |= add_str(ro, "topic", r->topic);
    } else {
        rc |= add_str(ro, "topic_regex", r->topic_regex);
    }
    rc |= add_str(ro, "database", r->database);
    rc |= add_str(ro, "table", r->table);
    rc |= add_str(ro, "format", r->format);
    rc |= add_str(ro, "mapping", r->mapping);
    m = add_obj(ro, "meta");
    if (rc < 0 || m == NULL) {
        return -ENOMEM;
    }
    rc |= add_str(m, "topic", r->meta.topic);
    rc |= add_str(m, "partition", r->meta.partition);
    rc |= add_str(m, "offset", r->meta.offset);
    rc |= add_str(m, "timestamp", r->meta.timestamp);
    rc |= add_str(m, "key", r->meta.key);
    rc |= add_str(m, "headers", r->meta.headers);
    rc |= add_str(m, "batch_id", r->meta.batch_id);
    rc |= add_str(ro, "dedupe_column", r->dedupe_column);
    rc |= add_str(ro, "ingestion", config_ingestion_name(r->ingestion));
    rc |= add_str(ro, "value_converter", r->value_converter);
    rc |= add_str(ro, "key_converter", r->key_converter);
    if (r->registry.url != NULL) {
        cJSON *g = add_obj(ro, "schema_registry");

        if (g == NULL) {
            return -ENOMEM;
        }
        rc |= add_str(g, "url", r->registry.url);
        rc |= add_str(g, "basic_auth", r->registry.basic_auth ? "***" : NULL);
        rc |= add_str(g, "ca_file", r->registry.ca_file);
        rc |= cJSON_AddNumberToObject(g, "timeout_ms",
                                      (double)r->registry.timeout_ms)
                  ? 0
                  : -1;
    }
    return rc;
}

char *config_to_json(const struct config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *o;
    cJSON *arr;
    char *text = NULL;
    int rc = 0;

    assert(cfg != NULL);

    if (root == NULL) {
        return NULL;
    }
    rc = print_kafka_adx(root, cfg);
    arr = cJSON_AddArrayToObject(root, "routes");
    if (rc < 0 || arr == NULL) {
        goto out;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        rc |= print_route(arr, &cfg->routes[i]);
        if (rc < 0) {
            goto out;
        }
    }
    o = add_obj(root, "journal");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    rc |= add_str(o, "path", cfg->journal.path);
    rc |= add_num(o, "max_bytes", cfg->journal.max_bytes);
    rc |= add_num(o, "retention_ms", cfg->journal.retention_ms);
    rc |= add_num(o, "reserve_bytes", cfg->journal.reserve_bytes);
    rc |= add_num(o, "min_retention_ms", cfg->journal.min_retention_ms);
    rc |= add_str(o, "sync", cfg->journal.sync_full ? "full" : "normal");
    o = add_obj(root, "forwarder");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    rc |= add_num(o, "batch_max_bytes", cfg->forwarder.batch_max_bytes);
    rc |= add_num(o, "batch_max_rows", cfg->forwarder.batch_max_rows);
    rc |= add_num(o, "linger_ms", cfg->forwarder.linger_ms);
    rc |= add_num(o, "max_inflight", cfg->forwarder.max_inflight);
    rc |= add_num(o, "retry_initial_ms", cfg->forwarder.retry_initial_ms);
    rc |= add_num(o, "retry_max_ms", cfg->forwarder.retry_max_ms);
    rc |= add_num(o, "retry_max_time_ms", cfg->forwarder.retry_max_time_ms);
    rc |= add_num(o, "ambiguous_delay_ms", cfg->forwarder.ambiguous_delay_ms);
    rc |= add_num(o, "ambiguous_window_ms", cfg->forwarder.ambiguous_window_ms);
    rc |= add_str(o, "on_error",
                  cfg->forwarder.on_error == CONFIG_ON_ERROR_PAUSE
                      ? "pause"
                      : "deadletter");
    o = add_obj(root, "intake");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    if (cJSON_AddBoolToObject(o, "skip_tombstones",
                              cfg->intake.skip_tombstones) == NULL) {
        goto out;
    }
    rc |= add_num(o, "high_water_bytes", cfg->intake.high_water_bytes);
    rc |= add_num(o, "low_water_bytes", cfg->intake.low_water_bytes);
    rc |= add_num(o, "prefetch_bytes", cfg->intake.prefetch_bytes);
    rc |= add_str(o, "on_rewind",
                  cfg->intake.on_rewind == CONFIG_ON_REWIND_EPOCH ? "new_epoch"
                                                                  : "pause");
    arr = cJSON_AddArrayToObject(o, "topics");
    if (rc < 0 || arr == NULL) {
        goto out;
    }
    for (size_t i = 0; i < cfg->intake.ntopics; i++) {
        cJSON *s = cJSON_CreateString(cfg->intake.topics[i]);

        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            goto out;
        }
    }
    o = add_obj(root, "admin");
    if (o == NULL) {
        goto out;
    }
    rc |= add_str(o, "listen",
                  cfg->admin.listen != NULL ? cfg->admin.listen : "off");
    rc |= add_secret(o, "token", cfg->admin.token);
    rc |= cJSON_AddBoolToObject(o, "token_on_get", cfg->admin.token_on_get) ==
          NULL;
    if (cfg->admin.tls_cert != NULL) {
        rc |= add_str(o, "tls_cert", cfg->admin.tls_cert);
        rc |= add_str(o, "tls_key", cfg->admin.tls_key);
    }
    rc |= add_num(o, "max_connections", cfg->admin.max_connections);
    rc |= add_num(o, "max_requests_per_s", cfg->admin.max_requests_per_s);
    if (cfg->log_level >= 0) {
        static const char *const names[] = {"error", "warn", "info", "debug"};

        o = add_obj(root, "log");
        if (o == NULL) {
            goto out;
        }
        rc |= add_str(o, "level", names[cfg->log_level & 3]);
    }
    if (rc == 0) {
        text = cJSON_Print(root);
    }
out:
    cJSON_Delete(root);
    return text;
}
