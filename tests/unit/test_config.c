/*
 * test_config.c - unit tests for gateway/config.c: the native kadx.json, the
 * Kusto sink connector config (the seed's fixture must give the same route
 * and auth as the equivalent native file), ${ENV} substitution, defaults,
 * overrides, masking in config_to_json, and one malformed config per
 * validation rule, each with its own error text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERRLEN 512

/*
 * The fixtures live in tests/fixtures/ of the source tree. __FILE__ is
 * relative to the build root (meson) or absolute; the test runs in
 * <build>/tests/unit.
 */
static void fixture(const char *name, char *buf, size_t n)
{
    const char *prefixes[] = {"", "../../", "../", NULL};
    char dir[1024];
    char *slash;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s", __FILE__);
    slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    for (size_t i = 0; prefixes[i] != NULL; i++) {
        if (dir[0] == '/' && i > 0) {
            break;
        }
        snprintf(buf, n, "%s%s/../fixtures/%s", prefixes[i], dir, name);
        if (stat(buf, &st) == 0) {
            return;
        }
    }
    fail_msg("fixture %s not found from %s", name, __FILE__);
}

static struct config *load_ok(const char *json)
{
    struct config *cfg = NULL;
    char err[ERRLEN] = "";
    int rc = config_load_string(json, NULL, &cfg, err, sizeof(err));

    if (rc != 0) {
        fail_msg("load failed (%d): %s\n%s", rc, err, json);
    }
    assert_non_null(cfg);
    return cfg;
}

static struct config *load_file_ok(const char *name,
                                   const struct config_overrides *ov)
{
    struct config *cfg = NULL;
    char path[1200];
    char err[ERRLEN] = "";
    int rc;

    fixture(name, path, sizeof(path));
    rc = config_load_file(path, ov, &cfg, err, sizeof(err));
    if (rc != 0) {
        fail_msg("load of %s failed (%d): %s", path, rc, err);
    }
    return cfg;
}

/* Loads json expecting failure; err must contain want. */
static void load_bad(const char *json, const char *want)
{
    struct config *cfg = NULL;
    char err[ERRLEN] = "";
    int rc = config_load_string(json, NULL, &cfg, err, sizeof(err));

    if (rc >= 0) {
        config_free(cfg);
        fail_msg("config loaded but should fail with \"%s\":\n%s", want, json);
    }
    assert_null(cfg);
    if (strstr(err, want) == NULL) {
        fail_msg("error \"%s\" does not contain \"%s\"\nconfig: %s", err, want,
                 json);
    }
}

static void assert_str_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        assert_ptr_equal(a, b);
    } else {
        assert_string_equal(a, b);
    }
}

/* A minimal valid native config with room for one extra section. */
#define KAFKA                                                                  \
    "\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\","                     \
    "\"group.id\":\"g\"}"
#define ADX "\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\"}"
#define ROUTE                                                                  \
    "\"routes\":[{\"topic\":\"t\",\"database\":\"db\",\"table\":\"T\"}]"
#define NATIVE(extra) "{" KAFKA "," ADX "," ROUTE extra "}"

/* ---- happy paths ------------------------------------------------------ */

/* INV-5: the ambiguous window is derived from both timeouts unless given,
 * and a given one may be anything at or above their sum */
static void test_ambiguous_window(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(
        "{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\","
        "\"request_timeout_ms\":2000,\"server_timeout_ms\":\"5s\"}," ROUTE "}");
    assert_int_equal(cfg->adx.server_timeout_ms, 5000);
    assert_int_equal(cfg->forwarder.ambiguous_window_ms, 2000 + 5000 + 30000);
    config_free(cfg);
    cfg = load_ok(
        "{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\","
        "\"request_timeout_ms\":2000,\"server_timeout_ms\":\"5s\"}," ROUTE
        ",\"forwarder\":{\"ambiguous_window_ms\":7000}}");
    assert_int_equal(cfg->forwarder.ambiguous_window_ms, 7000);
    config_free(cfg);
}

static void test_native_minimal_defaults(void **state)
{
    struct config *cfg = load_ok(NATIVE(""));

    (void)state;
    assert_int_equal(cfg->from_connector, 0);
    assert_string_equal(config_kafka_get(cfg, "group.id"), "g");
    assert_string_equal(cfg->adx.ingest_url, "http://127.0.0.1:8080");
    assert_string_equal(cfg->adx.query_url, "http://127.0.0.1:8080");
    assert_int_equal(cfg->adx.auth.method, CONFIG_AUTH_NONE);
    assert_int_equal(cfg->adx.request_timeout_ms, 30000);
    assert_int_equal(cfg->adx.keepalive_idle_ms, 50000);
    assert_int_equal(cfg->nroutes, 1);
    /* issue 15: native routes stream; a loopback DM URL is the engine's */
    assert_int_equal(cfg->routes[0].ingestion, CONFIG_INGEST_STREAMING);
    assert_string_equal(cfg->adx.dm_url, "http://127.0.0.1:8080");
    assert_string_equal(cfg->routes[0].name, "t");
    assert_string_equal(cfg->routes[0].format, "json");
    assert_null(cfg->routes[0].mapping);
    assert_null(cfg->routes[0].dedupe_column);
    assert_string_equal(cfg->journal.path, "./kadx-journal.db");
    assert_int_equal(cfg->journal.max_bytes, 1024LL * 1024 * 1024);
    assert_int_equal(cfg->journal.retention_ms, 24LL * 3600 * 1000);
    assert_int_equal(cfg->journal.sync_full, 1);
    assert_int_equal(cfg->forwarder.batch_max_bytes, 1024 * 1024);
    assert_int_equal(cfg->forwarder.batch_max_rows, 10000);
    assert_int_equal(cfg->forwarder.linger_ms, 200);
    assert_int_equal(cfg->forwarder.max_inflight, 4);
    assert_int_equal(cfg->forwarder.retry_initial_ms, 500);
    assert_int_equal(cfg->forwarder.retry_max_ms, 30000);
    assert_int_equal(cfg->forwarder.retry_max_time_ms, 0);
    assert_int_equal(cfg->forwarder.ambiguous_delay_ms, 2000);
    /* INV-5: the SDKs' 10 minutes on the server; the window is request +
     * server timeout + 30 s of slack */
    assert_int_equal(cfg->adx.server_timeout_ms, 600000);
    assert_int_equal(cfg->forwarder.ambiguous_window_ms,
                     30000 + 600000 + 30000);
    assert_int_equal(cfg->forwarder.on_error, CONFIG_ON_ERROR_DEADLETTER);
    assert_int_equal(cfg->intake.skip_tombstones, 1);
    assert_int_equal(cfg->intake.on_rewind, CONFIG_ON_REWIND_PAUSE);
    assert_int_equal(cfg->intake.reset_latest, 0);
    assert_true(cfg->intake.low_water_bytes < cfg->intake.high_water_bytes);
    assert_int_equal(cfg->intake.prefetch_bytes, 4LL * 1024 * 1024);
    assert_true(cfg->intake.high_water_bytes <= cfg->journal.max_bytes);
    assert_int_equal(cfg->intake.ntopics, 1);
    assert_string_equal(cfg->intake.topics[0], "t");
    assert_string_equal(cfg->admin.listen, "127.0.0.1:8081");
    assert_null(cfg->admin.token);
    config_free(cfg);
}

/* intake.on_rewind, and kafka.auto.offset.reset that kadx applies itself
 * (gateway/INTAKE.md "Offsets that go backwards") */
static void test_offset_reset_keys(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("{\"kafka\":{\"bootstrap.servers\":\"b:1\","
                  "\"group.id\":\"g\",\"auto.offset.reset\":\"largest\"}," ADX
                  "," ROUTE ",\"intake\":{\"on_rewind\":\"new_epoch\"}}");
    assert_int_equal(cfg->intake.on_rewind, CONFIG_ON_REWIND_EPOCH);
    assert_int_equal(cfg->intake.reset_latest, 1);
    config_free(cfg);
    cfg = load_ok("{\"kafka\":{\"bootstrap.servers\":\"b:1\","
                  "\"group.id\":\"g\",\"auto.offset.reset\":\"earliest\"}," ADX
                  "," ROUTE ",\"intake\":{\"on_rewind\":\"pause\"}}");
    assert_int_equal(cfg->intake.on_rewind, CONFIG_ON_REWIND_PAUSE);
    assert_int_equal(cfg->intake.reset_latest, 0);
    config_free(cfg);
}

static void test_native_full_fixture(void **state)
{
    struct config *cfg = load_file_ok("kadx-full.json", NULL);
    const struct config_route *r;

    (void)state;
    assert_string_equal(config_kafka_get(cfg, "session.timeout.ms"), "6000");
    assert_string_equal(cfg->adx.ingest_url, "http://127.0.0.1:8080");
    assert_string_equal(cfg->adx.query_url, "http://localhost:8080");
    assert_int_equal(cfg->adx.request_timeout_ms, 10000);
    /* derived from the fixture's request timeout */
    assert_int_equal(cfg->forwarder.ambiguous_window_ms,
                     10000 + 600000 + 30000);
    assert_int_equal(cfg->adx.auth.method, CONFIG_AUTH_STATIC_TOKEN);
    assert_string_equal(cfg->adx.auth.token, "static-fixture-token-abcdef");
    assert_int_equal(cfg->nroutes, 3);
    r = &cfg->routes[0];
    assert_string_equal(r->meta.batch_id, "kadx_batch");
    assert_string_equal(r->meta.headers, "kafka_headers");
    assert_string_equal(r->dedupe_column, "KadxBatch");
    assert_string_equal(cfg->routes[1].topic_regex, "^orders-[a-z]+$");
    assert_null(cfg->routes[1].topic);
    assert_string_equal(cfg->routes[1].format, "multijson");
    assert_int_equal(cfg->journal.max_bytes, 2LL * 1024 * 1024 * 1024);
    assert_int_equal(cfg->journal.retention_ms, 48LL * 3600 * 1000);
    assert_int_equal(cfg->journal.sync_full, 0);
    assert_int_equal(cfg->forwarder.batch_max_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg->forwarder.retry_max_ms, 60000);
    assert_int_equal(cfg->forwarder.max_inflight, 8);
    assert_int_equal(cfg->forwarder.on_error, CONFIG_ON_ERROR_PAUSE);
    assert_int_equal(cfg->intake.skip_tombstones, 0);
    assert_int_equal(cfg->intake.high_water_bytes, 1024LL * 1024 * 1024);
    assert_int_equal(cfg->intake.low_water_bytes, 512LL * 1024 * 1024);
    /* subscription: intake.topics first, then route topics and patterns */
    assert_int_equal(cfg->intake.ntopics, 4);
    assert_string_equal(cfg->intake.topics[0], "audit");
    assert_string_equal(cfg->intake.topics[1], "^logs-.*");
    assert_string_equal(cfg->intake.topics[2], "gameplay");
    assert_string_equal(cfg->intake.topics[3], "^orders-[a-z]+$");
    assert_string_equal(cfg->admin.listen, "127.0.0.1:9091");
    config_free(cfg);
}

/* issue 15: the data-management URL's default and the mode names */
static void test_dm_url_default(void **state)
{
    static const char *const cases[][2] = {
        {"https://c1.westeurope.kusto.windows.net",
         "https://ingest-c1.westeurope.kusto.windows.net"},
        {"https://ingest-c1.kusto.windows.net",
         "https://ingest-c1.kusto.windows.net"},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
        {"http://localhost:8080/", "http://localhost:8080/"},
        {"http://[::1]:80", "http://[::1]:80"},
    };
    enum config_ingestion m;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;

        assert_int_equal(config_dm_url_default(cases[i][0], &out), 0);
        assert_string_equal(out, cases[i][1]);
        free(out);
    }
    assert_int_equal(config_ingestion_parse("Managed", &m), 0);
    assert_int_equal(m, CONFIG_INGEST_MANAGED);
    assert_string_equal(config_ingestion_name(CONFIG_INGEST_QUEUED), "queued");
    assert_int_equal(config_ingestion_parse("stream", &m), -EINVAL);
}

static void test_route_for_topic(void **state)
{
    struct config *cfg = load_file_ok("kadx-full.json", NULL);

    (void)state;
    assert_string_equal(config_route_for_topic(cfg, "gameplay")->name,
                        "gameplay");
    assert_string_equal(config_route_for_topic(cfg, "orders-eu")->table,
                        "Orders");
    /* the regex is anchored by the user: not a match, falls to '*' */
    assert_string_equal(config_route_for_topic(cfg, "orders-EU")->name,
                        "fallback");
    assert_string_equal(config_route_for_topic(cfg, "audit")->name, "fallback");
    config_free(cfg);

    cfg = load_ok(NATIVE(""));
    assert_null(config_route_for_topic(cfg, "other"));
    assert_non_null(config_route_for_topic(cfg, "t"));
    config_free(cfg);
}

/* The acceptance test of issue 2: the seed's connector config and the
 * equivalent kadx.json give the same route and auth. */
static void test_connector_equals_native(void **state)
{
    struct config_overrides ov = {.bootstrap_servers = "127.0.0.1:9092"};
    struct config *conn = load_file_ok("connector-gameplay.json", &ov);
    struct config *nat = load_file_ok("kadx-gameplay.json", NULL);
    const struct config_route *a = &conn->routes[0];
    const struct config_route *b = &nat->routes[0];
    const struct config_auth *x = &conn->adx.auth;
    const struct config_auth *y = &nat->adx.auth;

    (void)state;
    assert_int_equal(conn->from_connector, 1);
    assert_int_equal(nat->from_connector, 0);
    assert_int_equal(conn->nroutes, 1);
    assert_int_equal(nat->nroutes, 1);
    assert_string_equal(a->topic, "gameplay");
    assert_string_equal(a->database, "leaderboard");
    assert_string_equal(a->table, "GamePlay");
    assert_string_equal(a->format, "json");
    assert_string_equal(a->mapping, "gameplay_json_mapping");
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->topic, b->topic);
    assert_string_equal(a->database, b->database);
    assert_string_equal(a->table, b->table);
    assert_string_equal(a->format, b->format);
    assert_string_equal(a->mapping, b->mapping);
    assert_null(a->topic_regex);
    assert_null(a->dedupe_column);

    assert_int_equal(x->method, CONFIG_AUTH_CLIENT_SECRET);
    assert_int_equal(x->method, y->method);
    assert_string_equal(x->tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_string_equal(x->tenant_id, y->tenant_id);
    assert_string_equal(x->client_id, y->client_id);
    assert_string_equal(x->client_secret, y->client_secret);
    assert_str_or_null(x->token, y->token);
    assert_str_or_null(x->scope, y->scope);
    assert_string_equal(x->authority_host, y->authority_host);
    assert_string_equal(conn->adx.ingest_url, nat->adx.ingest_url);
    assert_string_equal(conn->adx.query_url, nat->adx.query_url);

    /* flush.* and the group id Kafka Connect used for the connector */
    assert_int_equal(conn->forwarder.batch_max_bytes,
                     nat->forwarder.batch_max_bytes);
    assert_int_equal(conn->forwarder.linger_ms, nat->forwarder.linger_ms);
    assert_string_equal(config_kafka_get(conn, "group.id"),
                        config_kafka_get(nat, "group.id"));
    assert_string_equal(config_kafka_get(conn, "bootstrap.servers"),
                        "127.0.0.1:9092");
    assert_int_equal(conn->intake.ntopics, 1);
    assert_string_equal(conn->intake.topics[0], "gameplay");
    /* behavior.on.error defaults to FAIL in the connector: pause */
    assert_int_equal(conn->forwarder.on_error, CONFIG_ON_ERROR_PAUSE);
    config_free(conn);
    config_free(nat);
}

static void test_connector_bare_map(void **state)
{
    struct config *cfg = load_ok(
        "{\"name\":\"sink1\",\"topics\":\"a, b ,c\","
        "\"connector.class\":\"com.microsoft.azure.kusto.kafka.connect.sink."
        "KustoSinkConnector\","
        "\"kusto.ingestion.url\":\"https://ingest-c1.westeurope.kusto."
        "windows.net/\","
        "\"aad.auth.strategy\":\"MANAGED_IDENTITY\","
        "\"aad.auth.appid\":\"mi-client-1\","
        "\"kusto.tables.topics.mapping\":\"[{'topic':'a','db':'d','table':"
        "'A','format':'multijson','streaming':true},{'topic':'*','db':'d',"
        "'table':'Rest','format':'json','mapping':'m','streaming':'false'},"
        "{'topic':'c','db':'d','table':'C'}]\","
        "\"consumer.override.session.timeout.ms\":7000,"
        "\"consumer.override.bootstrap.servers\":\"k1:9092\","
        "\"errors.retry.backoff.time.ms\":\"40000\","
        "\"errors.retry.max.time.ms\":\"600000\","
        "\"behavior.on.error\":\"LOG\",\"tempdir.path\":\"/tmp\","
        "\"misc.deadletterqueue.topic.name\":\"dlq\",\"tasks.max\":3}");

    (void)state;
    assert_int_equal(cfg->from_connector, 1);
    /* no query url: the engine URL is the DM URL without "ingest-" */
    assert_string_equal(cfg->adx.ingest_url,
                        "https://c1.westeurope.kusto.windows.net");
    assert_string_equal(cfg->adx.query_url, cfg->adx.ingest_url);
    assert_int_equal(cfg->adx.auth.method, CONFIG_AUTH_MANAGED_IDENTITY);
    assert_string_equal(cfg->adx.auth.client_id, "mi-client-1");
    assert_null(cfg->adx.auth.tenant_id);
    assert_non_null(cfg->adx.auth.imds_url);
    assert_string_equal(config_kafka_get(cfg, "session.timeout.ms"), "7000");
    assert_string_equal(config_kafka_get(cfg, "bootstrap.servers"), "k1:9092");
    assert_string_equal(config_kafka_get(cfg, "group.id"), "connect-sink1");
    assert_int_equal(cfg->nroutes, 3);
    assert_string_equal(cfg->routes[0].format, "multijson");
    assert_null(cfg->routes[0].mapping);
    assert_string_equal(cfg->routes[1].topic, "*");
    assert_string_equal(cfg->routes[1].mapping, "m");
    assert_string_equal(cfg->routes[2].format, "csv"); /* Java SDK default */
    /* issue 15: "streaming" true = managed, false or absent = queued */
    assert_int_equal(cfg->routes[0].ingestion, CONFIG_INGEST_MANAGED);
    assert_int_equal(cfg->routes[1].ingestion, CONFIG_INGEST_QUEUED);
    assert_int_equal(cfg->routes[2].ingestion, CONFIG_INGEST_QUEUED);
    assert_string_equal(cfg->adx.dm_url,
                        "https://ingest-c1.westeurope.kusto.windows.net");
    assert_int_equal(cfg->intake.ntopics, 3);
    assert_string_equal(cfg->intake.topics[1], "b");
    assert_string_equal(config_route_for_topic(cfg, "b")->table, "Rest");
    assert_int_equal(cfg->forwarder.retry_initial_ms, 40000);
    assert_int_equal(cfg->forwarder.retry_max_ms, 40000);
    assert_int_equal(cfg->forwarder.retry_max_time_ms, 600000);
    assert_int_equal(cfg->forwarder.on_error, CONFIG_ON_ERROR_DEADLETTER);
    config_free(cfg);
}

/* Avro / JSON Schema converters become route settings (issue 16) */
static void test_connector_registry(void **state)
{
    struct config *cfg = load_ok(
        "{\"topics\":\"t,u\",\"kusto.ingestion.url\":\"https://ingest-x.kusto."
        "windows.net\",\"aad.auth.appid\":\"a\",\"aad.auth.authority\":\"t\","
        "\"aad.auth.appkey\":\"k\",\"consumer.override.bootstrap.servers\":\"b:"
        "1\","
        "\"name\":\"avro-sink\",\"kusto.tables.topics.mapping\":\"[{'topic':"
        "'t','db':'d','table':'T','format':'avro','mapping':'am'},{'topic':'u',"
        "'db':'d','table':'U','format':'json'}]\","
        "\"value.converter\":\"io.confluent.connect.avro.AvroConverter\","
        "\"value.converter.schema.registry.url\":\"http://127.0.0.1:8085/\","
        "\"value.converter.basic.auth.credentials.source\":\"USER_INFO\","
        "\"value.converter.basic.auth.user.info\":\"sr-user:sr-secret\","
        "\"key.converter\":\"org.apache.kafka.connect.storage."
        "StringConverter\"}");
    char *js;

    (void)state;
    assert_int_equal(cfg->nroutes, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(cfg->routes[i].value_converter, "avro");
        assert_null(cfg->routes[i].key_converter);
        assert_non_null(cfg->routes[i].registry.url);
        assert_string_equal(cfg->routes[i].registry.basic_auth,
                            "sr-user:sr-secret");
        assert_int_equal(cfg->routes[i].registry.timeout_ms, 10000);
    }
    assert_string_equal(cfg->routes[0].format, "avro");
    js = config_to_json(cfg);
    assert_non_null(js);
    assert_null(strstr(js, "sr-secret"));
    assert_non_null(strstr(js, "\"value_converter\":"));
    assert_non_null(strstr(js, "\"url\":"));
    free(js);
    config_free(cfg);
}

static void test_connector_other_strategies(void **state)
{
#define BASE(x)                                                                \
    "{\"topics\":\"t\",\"kusto.ingestion.url\":\"http://127.0.0.1:9\","        \
    "\"kusto.tables.topics.mapping\":\"[{'topic':'t','db':'d','table':"        \
    "'T','format':'json'}]\",\"consumer.override.bootstrap.servers\":"         \
    "\"b:1\",\"consumer.override.group.id\":\"g\"," x "}"
    char json[1024];
    struct config *cfg;

    (void)state;
    snprintf(json, sizeof(json), "%s",
             BASE("\"aad.auth.strategy\":\"az_dev_token\","
                  "\"aad.auth.accesstoken\":\"dev-token-123456\""));
    cfg = load_ok(json);
    assert_int_equal(cfg->adx.auth.method, CONFIG_AUTH_STATIC_TOKEN);
    assert_string_equal(cfg->adx.auth.token, "dev-token-123456");
    /* http:// stays allowed for loopback, no "ingest-" prefix to strip */
    assert_string_equal(cfg->adx.ingest_url, "http://127.0.0.1:9");
    config_free(cfg);

    snprintf(json, sizeof(json), "%s",
             BASE("\"aad.auth.strategy\":\"workload_identity\","
                  "\"aad.auth.appid\":\"app\",\"aad.auth.authority\":"
                  "\"tenant\""));
    cfg = load_ok(json);
    assert_int_equal(cfg->adx.auth.method, CONFIG_AUTH_WORKLOAD_IDENTITY);
    assert_string_equal(cfg->adx.auth.tenant_id, "tenant");
    assert_non_null(cfg->adx.auth.token_file);
    config_free(cfg);
}

/* ---- overrides and environment --------------------------------------- */

static void test_overrides_and_env(void **state)
{
    struct config_overrides ov = {.bootstrap_servers = "flag:1",
                                  .group_id = "flaggroup"};
    const char *nokafka = "{" ADX "," ROUTE "}";
    struct config *cfg = NULL;
    char err[ERRLEN];

    (void)state;
    cfg = NULL;
    assert_int_equal(
        config_load_string(NATIVE(""), &ov, &cfg, err, sizeof(err)), 0);
    assert_string_equal(config_kafka_get(cfg, "bootstrap.servers"), "flag:1");
    assert_string_equal(config_kafka_get(cfg, "group.id"), "flaggroup");
    config_free(cfg);

    unsetenv("KADX_BOOTSTRAP_SERVERS");
    unsetenv("KADX_GROUP_ID");
    load_bad(nokafka, "missing required key 'kafka.bootstrap.servers'");
    setenv("KADX_BOOTSTRAP_SERVERS", "env:2", 1);
    load_bad(nokafka, "missing required key 'kafka.group.id'");
    setenv("KADX_GROUP_ID", "envgroup", 1);
    cfg = load_ok(nokafka);
    assert_string_equal(config_kafka_get(cfg, "bootstrap.servers"), "env:2");
    assert_string_equal(config_kafka_get(cfg, "group.id"), "envgroup");
    config_free(cfg);
    /* the file wins over the environment */
    cfg = load_ok(NATIVE(""));
    assert_string_equal(config_kafka_get(cfg, "group.id"), "g");
    config_free(cfg);
    unsetenv("KADX_BOOTSTRAP_SERVERS");
    unsetenv("KADX_GROUP_ID");
}

static void test_env_substitution(void **state)
{
    struct config *cfg;

    (void)state;
    setenv("KADX_T_HOST", "127.0.0.1", 1);
    setenv("KADX_T_TOKEN", "env-token-value-xyz", 1);
    cfg = load_ok("{" KAFKA ",\"adx\":{\"ingest_url\":\"http://${KADX_T_HOST}"
                  ":8080\",\"auth\":{\"method\":\"static_token\",\"token\":"
                  "\"${KADX_T_TOKEN}\"}},\"routes\":[{\"topic\":\"t\","
                  "\"database\":\"db\",\"table\":\"T\",\"name\":"
                  "\"a$${literal}b\"}]}");
    assert_string_equal(cfg->adx.ingest_url, "http://127.0.0.1:8080");
    assert_string_equal(cfg->adx.auth.token, "env-token-value-xyz");
    assert_string_equal(cfg->routes[0].name, "a${literal}b");
    config_free(cfg);

    unsetenv("KADX_T_MISSING");
    load_bad("{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\","
             "\"auth\":{\"method\":\"static_token\",\"token\":"
             "\"${KADX_T_MISSING}\"}}," ROUTE "}",
             "environment variable 'KADX_T_MISSING' is not set (used in "
             "'adx.auth.token')");
    load_bad("{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"${KADX_T_HOST\","
             "\"database\":\"d\",\"table\":\"T\"}]}",
             "unterminated '${' in 'routes[0].topic'");
    load_bad("{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"${1X}\","
             "\"database\":\"d\",\"table\":\"T\"}]}",
             "bad environment variable name in 'routes[0].topic'");
    /* in connector values too, including the mapping string */
    setenv("KADX_T_DB", "envdb", 1);
    cfg = load_ok("{\"topics\":\"t\",\"kusto.ingestion.url\":"
                  "\"https://ingest-x.kusto.windows.net\",\"aad.auth.appid\":"
                  "\"a\",\"aad.auth.authority\":\"t\",\"aad.auth.appkey\":"
                  "\"${KADX_T_TOKEN}\",\"kusto.tables.topics.mapping\":"
                  "\"[{'topic':'t','db':'${KADX_T_DB}','table':'T'}]\","
                  "\"consumer.override.bootstrap.servers\":\"b:1\","
                  "\"consumer.override.group.id\":\"g\"}");
    assert_string_equal(cfg->routes[0].database, "envdb");
    assert_string_equal(cfg->adx.auth.client_secret, "env-token-value-xyz");
    config_free(cfg);
}

/* ---- masking ------------------------------------------------------------ */

static void test_to_json_masks_secrets(void **state)
{
    struct config_overrides ov = {.bootstrap_servers = "127.0.0.1:9092"};
    struct config *cfg = load_file_ok("kadx-full.json", NULL);
    char *json = config_to_json(cfg);
    char masked[256];

    (void)state;
    assert_non_null(json);
    assert_null(strstr(json, "static-fixture-token-abcdef"));
    assert_null(strstr(json, "kafka-fixture-password-42"));
    assert_null(strstr(json, "admin-fixture-token-0123456789"));
    assert_non_null(strstr(json, "\"sasl.password\":\t\"***\""));
    assert_non_null(strstr(json, "\"token\":\t\"***\""));
    assert_non_null(strstr(json, "\"KadxBatch\""));
    free(json);
    /* loading registered the secrets with the logger */
    log_mask("x static-fixture-token-abcdef y", masked, sizeof(masked));
    assert_string_equal(masked, "x *** y");
    log_mask("kafka-fixture-password-42", masked, sizeof(masked));
    assert_string_equal(masked, "***");
    config_free(cfg);

    cfg = load_file_ok("connector-gameplay.json", &ov);
    json = config_to_json(cfg);
    assert_non_null(json);
    assert_null(strstr(json, "Xk8Q~fixture.appkey.NotARealSecret-123"));
    assert_non_null(strstr(json, "\"client_secret\":\t\"***\""));
    free(json);
    config_free(cfg);
}

/* The effective config is itself a valid kadx.json that loads back to the
 * same effective config (secrets aside: they print as "***"). */
static void test_to_json_round_trip(void **state)
{
    struct config_overrides ov = {.bootstrap_servers = "127.0.0.1:9092"};
    const char *files[] = {"kadx-full.json", "connector-gameplay.json",
                           "kadx-gameplay.json"};

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        struct config *a = load_file_ok(files[i], &ov);
        char *ja = config_to_json(a);
        char *admin_tok = strstr(ja, "\"admin\":");
        struct config *b;
        char *jb;

        /* a masked admin token is too short to load: give it 8 stars */
        admin_tok = admin_tok != NULL ? strstr(admin_tok, "\"***\"") : NULL;
        if (admin_tok != NULL) {
            size_t n = strlen(ja);
            char *longer = malloc(n + 6);

            assert_non_null(longer);
            memcpy(longer, ja, (size_t)(admin_tok - ja));
            memcpy(longer + (admin_tok - ja), "\"********\"", 10);
            memcpy(longer + (admin_tok - ja) + 10, admin_tok + 5,
                   n - (size_t)(admin_tok - ja) - 5 + 1);
            b = load_ok(longer);
            free(longer);
        } else {
            b = load_ok(ja);
        }
        jb = config_to_json(b);

        assert_string_equal(ja, jb);
        free(ja);
        free(jb);
        config_free(a);
        config_free(b);
    }
}

/* ---- malformed configs ------------------------------------------------ */

struct bad {
    const char *json;
    const char *err;
};

#define R(x)                                                                   \
    "\"routes\":[{\"topic\":\"t\",\"database\":\"db\",\"table\":\"T\"" x "}]"
#define CONN(x)                                                                \
    "{\"topics\":\"t\",\"kusto.ingestion.url\":\"https://ingest-x.kusto."      \
    "windows.net\",\"aad.auth.appid\":\"a\",\"aad.auth.authority\":\"t\","     \
    "\"aad.auth.appkey\":\"k\",\"consumer.override.bootstrap.servers\":"       \
    "\"b:1\",\"consumer.override.group.id\":\"g\"," x "}"
#define MAP                                                                    \
    "\"kusto.tables.topics.mapping\":\"[{'topic':'t','db':'d','table':'T'}]\""

static const struct bad bad_configs[] = {
    /* syntax and shape */
    {"{\"kafka\": {", "the config is not valid JSON (line 1, column 12)"},
    {"[1,2]", "the config must be a JSON object"},
    {"{" KAFKA ",\n" ADX "," ROUTE ",\"x\xe1\xff\":1}",
     "the config is not valid UTF-8 (line 2, byte"},
    {"{\"a\":\"\xc0\xaf\"}", "the config is not valid UTF-8 (line 1, byte 7)"},
    {"{" KAFKA "," ADX "," ROUTE ",\"admin\":{},\"admin\":{}}",
     "duplicate key 'admin'"},
    /* unknown keys, named by path */
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"d\","
     "\"table\":\"T\"},{\"topic\":\"u\",\"database\":\"d\",\"tabel\":\"T\"}]}",
     "unknown key 'routes[1].tabel'"},
    {NATIVE(",\"journals\":{}"), "unknown key 'journals'"},
    {NATIVE(",\"forwarder\":{\"linger\":5}"), "unknown key 'forwarder.linger'"},
    {"{\"kafka\":{\"bootstrap.servers\":\"b:1\",\"group.id\":\"g\","
     "\"grup.id\":\"x\"}," ADX "," ROUTE "}",
     "unknown key 'kafka.grup.id' (not a librdkafka property)"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\",\"auth\":"
     "{\"method\":\"none\",\"secret\":\"x\"}}," ROUTE "}",
     "unknown key 'adx.auth.secret'"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"d\","
     "\"table\":\"T\",\"meta\":{\"partiton\":\"p\"}}]}",
     "unknown key 'routes[0].meta.partiton'"},
    /* wrong types */
    {NATIVE(",\"forwarder\":{\"linger_ms\":\"soon\"}"),
     "'forwarder.linger_ms' must be a duration in ms"},
    {NATIVE(",\"forwarder\":{\"max_inflight\":2.5}"),
     "'forwarder.max_inflight' must be an integer"},
    {NATIVE(",\"forwarder\":{\"batch_max_rows\":\"10\"}"),
     "'forwarder.batch_max_rows' must be an integer"},
    {NATIVE(",\"journal\":{\"max_bytes\":\"lots\"}"),
     "'journal.max_bytes' must be a byte count"},
    {NATIVE(",\"intake\":{\"skip_tombstones\":\"yes\"}"),
     "'intake.skip_tombstones' must be true or false"},
    {NATIVE(",\"intake\":{\"on_rewind\":\"skip\"}"),
     "'intake.on_rewind' must be pause or new_epoch, not 'skip'"},
    {"{\"kafka\":{\"bootstrap.servers\":\"b:1\",\"group.id\":\"g\","
     "\"auto.offset.reset\":\"error\"}," ADX "," ROUTE "}",
     "'kafka.auto.offset.reset' must be earliest or latest"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":42}," ROUTE "}",
     "'adx.ingest_url' must be a string"},
    {"{" KAFKA "," ADX ",\"routes\":{}}", "'routes' must be an array"},
    {"{" KAFKA ",\"adx\":[]," ROUTE "}", "'adx' must be an object"},
    {"{\"kafka\":{\"bootstrap.servers\":\"b:1\",\"group.id\":\"g\","
     "\"x\":[1]}," ADX "," ROUTE "}",
     "'kafka.x' must be a string, number or boolean"},
    /* missing and empty required values */
    {"{" KAFKA "," ROUTE "}", "missing required key 'adx'"},
    {"{" KAFKA ",\"adx\":{}," ROUTE "}",
     "missing required key 'adx.ingest_url'"},
    {"{" KAFKA "," ADX "}", "missing required key 'routes'"},
    {"{" KAFKA "," ADX ",\"routes\":[]}", "'routes' must not be empty"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"table\":\"T\"}]}",
     "missing required key 'routes[0].database'"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"\","
     "\"table\":\"T\"}]}",
     "'routes[0].database' must not be empty"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"database\":\"d\",\"table\":\"T\"}]}",
     "routes[0]: set one of 'topic' and 'topic_regex'"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"topic_regex\":\"^t\","
     "\"database\":\"d\",\"table\":\"T\"}]}",
     "routes[0]: set only one of 'topic' and 'topic_regex'"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\",\"auth\":"
     "{\"method\":\"client_secret\",\"tenant_id\":\"t\",\"client_id\":\"c\"}}"
     "," ROUTE "}",
     "missing required key 'adx.auth.client_secret' (auth method "
     "client_secret)"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\",\"auth\":"
     "{\"method\":\"static_token\"}}," ROUTE "}",
     "missing required key 'adx.auth.token' (auth method static_token)"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\",\"auth\":"
     "{\"method\":\"password\"}}," ROUTE "}",
     "'adx.auth.method' must be none, static_token, client_secret"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\",\"auth\":"
     "{\"method\":\"managed_identity\",\"client_secret\":\"s3cr3tval\"}}," ROUTE
     "}",
     "'adx.auth.client_secret' is not used by auth method 'managed_identity'"},
    /* bad URLs */
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://kusto.example.com\"}," ROUTE
     "}",
     "'adx.ingest_url' must use https:// (http:// only for 127.0.0.1, ::1 "
     "or localhost): 'http://kusto.example.com'"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"ftp://x\"}," ROUTE "}",
     "'adx.ingest_url' must be an https:// URL, not 'ftp://x'"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://\"}," ROUTE "}",
     "'adx.ingest_url' has no host"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h:99999\"}," ROUTE "}",
     "'adx.ingest_url' has a bad port"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://u:p@h\"}," ROUTE "}",
     "'adx.ingest_url' must not contain credentials"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h/x?y=1\"}," ROUTE "}",
     "'adx.ingest_url' must be a plain URL"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\",\"query_url\":"
     "\"http://q.example.com\"}," ROUTE "}",
     "'adx.query_url' must use https://"},
    /* converters kadx cannot honour (issue 16) */
    {CONN(MAP ",\"value.converter\":"
              "\"io.confluent.connect.protobuf.ProtobufConverter\""),
     "'value.converter' is 'io.confluent.connect.protobuf.ProtobufConverter': "
     "kadx reads Avro"},
    {CONN(MAP ",\"key.converter\":\"com.example.MyConverter\""),
     "'key.converter' is 'com.example.MyConverter'"},
    {CONN(MAP ",\"value.converter\":"
              "\"io.confluent.connect.avro.AvroConverter\""),
     "'value.converter' needs 'value.converter.schema.registry.url'"},
    {CONN(MAP ",\"value.converter\":"
              "\"io.confluent.connect.avro.AvroConverter\","
              "\"value.converter.schema.registry.url\":\"http://127.0.0.1:1\","
              "\"value.converter.basic.auth.credentials.source\":\"URL\""),
     "'value.converter.basic.auth.credentials.source' is 'URL'"},
    /* route values */
    {"{" KAFKA "," ADX "," R(",\"format\":\"parquet\"") "}",
     "'routes[0].format' must be json, multijson, csv or avro, not "
     "'parquet'"},
    {"{" KAFKA "," ADX "," R(",\"format\":\"avro\"") "}",
     "'routes[0].format' avro needs 'routes[0].value_converter' avro"},
    {"{" KAFKA "," ADX "," R(",\"value_converter\":\"protobuf\"") "}",
     "'routes[0].value_converter' must be avro or json_schema, not "
     "'protobuf'"},
    {"{" KAFKA "," ADX "," R(",\"value_converter\":\"avro\"") "}",
     "'routes[0]' uses a schema registry converter but no "
     "'schema_registry.url' is set"},
    {"{" KAFKA "," ADX "," R(",\"value_converter\":\"avro\","
                             "\"schema_registry\":{\"url\":\"ftp://x\"}") "}",
     "'routes[0].schema_registry.url' must be an https:// URL"},
    {"{" KAFKA "," ADX
     "," R(",\"value_converter\":\"avro\","
           "\"schema_registry\":{\"url\":"
           "\"http://127.0.0.1:1\",\"basic_auth\":\"nocolon\"}") "}",
     "'routes[0].schema_registry.basic_auth' must be 'user:secret'"},
    {"{" KAFKA "," ADX "," R(",\"format\":\"avro\",\"value_converter\":"
                             "\"avro\",\"meta\":{\"headers\":\"h\"},"
                             "\"schema_registry\":{\"url\":"
                             "\"http://127.0.0.1:1\"}") "}",
     "'routes[0].meta.headers' is not available with format avro"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"bad topic\","
     "\"database\":\"d\",\"table\":\"T\"}]}",
     "'routes[0].topic' is not a valid Kafka topic name: 'bad topic'"},
    {"{" KAFKA "," ADX "," R(",\"table\":\"T;drop\"") "}",
     "duplicate key 'routes[0].table'"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"d\","
     "\"table\":\"T x\"}]}",
     "'routes[0].table' may contain only letters, digits"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic_regex\":\"orders\","
     "\"database\":\"d\",\"table\":\"T\"}]}",
     "'routes[0].topic_regex' must start with '^'"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic_regex\":\"^(orders\","
     "\"database\":\"d\",\"table\":\"T\"}]}",
     "'routes[0].topic_regex' is not a valid regular expression"},
    {"{" KAFKA "," ADX "," R(",\"dedupe_column\":\"Batch\"") "}",
     "'routes[0].dedupe_column' needs 'routes[0].meta.batch_id'"},
    {"{" KAFKA "," ADX "," R(",\"dedupe_column\":\"x' or 1==1\","
                             "\"meta\":{\"batch_id\":\"b\"}") "}",
     "'routes[0].dedupe_column' must be a column name"},
    {"{" KAFKA "," ADX
     "," R(",\"format\":\"csv\",\"meta\":{\"offset\":\"o\"}") "}",
     "'routes[0].meta' needs format json, multijson or avro"},
    {"{" KAFKA "," ADX "," R(",\"meta\":{\"offset\":\"o\",\"key\":\"o\"}") "}",
     "'routes[0].meta': 'offset' and 'key' use the same field name 'o'"},
    {"{" KAFKA "," ADX "," R(",\"meta\":{\"offset\":\"kafka offset\"}") "}",
     "'routes[0].meta.offset' must be a column name"},
    /* duplicate routes */
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"d\","
     "\"table\":\"A\"},{\"topic\":\"t\",\"database\":\"d\",\"table\":\"B\"}]}",
     "routes[1]: topic 't' is already routed by routes[0]"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"d\","
     "\"table\":\"A\",\"name\":\"n\"},{\"topic\":\"u\",\"database\":\"d\","
     "\"table\":\"B\",\"name\":\"n\"}]}",
     "routes[1]: route name 'n' is already used by routes[0]"},
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"*\",\"database\":\"d\","
     "\"table\":\"A\"}]}",
     "a '*' route needs 'intake.topics'"},
    {NATIVE(",\"intake\":{\"topics\":[\"other\"]}"),
     "topic 'other' in 'intake.topics' has no route"},
    /* proxy */
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\",\"proxy\":"
     "\"proxy.example:3128\"}," ROUTE "}",
     "'adx.proxy' must be a URL starting with http://, https://"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\",\"proxy\":\"\"}," ROUTE
     "}",
     "'adx.proxy' must not be empty"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\",\"proxy\":"
     "\"http://p x:1\"}," ROUTE "}",
     "'adx.proxy' must not contain spaces"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\",\"no_proxy\":7}," ROUTE
     "}",
     "'adx.no_proxy' must be a string"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\",\"proxi\":"
     "\"http://p:1\"}," ROUTE "}",
     "unknown key 'adx.proxi'"},
    /* issue 15: ingestion mode */
    {"{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\",\"database\":\"d\","
     "\"table\":\"T\",\"ingestion\":\"batch\"}]}",
     "'routes[0].ingestion' must be streaming, queued or managed"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h.kusto.windows.net\","
     "\"dm_url\":\"ftp://x\"}," ROUTE "}",
     "'adx.dm_url' must be an https:// URL"},
    /* impossible limits */
    {NATIVE(",\"forwarder\":{\"batch_max_bytes\":\"5MiB\"}"),
     "'forwarder.batch_max_bytes' (5242880) must be at most 4194304: ADX "
     "streaming ingestion takes at most 4 MiB per request"},
    {NATIVE(",\"forwarder\":{\"max_inflight\":0}"),
     "'forwarder.max_inflight' must be at least 1"},
    {NATIVE(",\"forwarder\":{\"batch_max_rows\":0}"),
     "'forwarder.batch_max_rows' must be at least 1"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\","
     "\"request_timeout_ms\":5000,\"server_timeout_ms\":\"10s\"}," ROUTE
     ",\"forwarder\":{\"ambiguous_window_ms\":14000}}",
     "'forwarder.ambiguous_window_ms' (14000) must be at least "
     "'adx.request_timeout_ms' + 'adx.server_timeout_ms' (15000): a batch "
     "resent sooner can duplicate a request ADX is still running"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\","
     "\"server_timeout_ms\":\"2h\"}," ROUTE "}",
     "'adx.server_timeout_ms' must be at most 3600000"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\","
     "\"server_timeout_ms\":500}," ROUTE "}",
     "'adx.server_timeout_ms' must be at least 1000"},
    {"{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\","
     "\"keepalive_idle_ms\":\"500ms\"}," ROUTE "}",
     "'adx.keepalive_idle_ms' must be at least 1000"},
    {NATIVE(",\"forwarder\":{\"retry_initial_ms\":5000,\"retry_max_ms\":"
            "1000}"),
     "'forwarder.retry_max_ms' (1000) must not be below "
     "'forwarder.retry_initial_ms' (5000)"},
    {NATIVE(",\"intake\":{\"prefetch_bytes\":\"1MiB\"}"),
     "'intake.prefetch_bytes' must be 0 (unbounded) or at least 4MiB"},
    {NATIVE(",\"intake\":{\"prefetch_bytes\":-1}"),
     "'intake.prefetch_bytes' must be at least 0"},
    {NATIVE(",\"intake\":{\"high_water_bytes\":1000000,\"low_water_bytes\":"
            "1000000}"),
     "'intake.low_water_bytes' (1000000) must be below "
     "'intake.high_water_bytes' (1000000)"},
    {NATIVE(",\"journal\":{\"max_bytes\":\"64MiB\"},\"intake\":{"
            "\"high_water_bytes\":\"1GiB\"}"),
     "'intake.high_water_bytes' (1073741824) must not exceed "
     "'journal.max_bytes' (67108864)"},
    {NATIVE(",\"journal\":{\"max_bytes\":1000}"),
     "'journal.max_bytes' must be at least 16777216"},
    {NATIVE(",\"journal\":{\"sync\":\"sometimes\"}"),
     "'journal.sync' must be full or normal, not 'sometimes'"},
    {NATIVE(",\"forwarder\":{\"on_error\":\"drop\"}"),
     "'forwarder.on_error' must be deadletter or pause, not 'drop'"},
    {NATIVE(",\"admin\":{\"listen\":\"localhost\"}"),
     "'admin.listen' must be HOST:PORT (or \"off\"), not 'localhost'"},
    {NATIVE(",\"admin\":{\"token\":\"short\"}"),
     "'admin.token' must be at least 8 characters"},
    {"{\"kafka\":{\"bootstrap.servers\":\"b:1\",\"group.id\":\"g\","
     "\"enable.auto.commit\":true}," ADX "," ROUTE "}",
     "'kafka.enable.auto.commit' must be false"},
    {"{\"kafka\":{\"bootstrap.servers\":\"b:1\",\"group.id\":\"g\","
     "\"session.timeout.ms\":\"soon\"}," ADX "," ROUTE "}",
     "'kafka.session.timeout.ms': "},
    /* connector configs */
    {CONN(MAP ",\"kusto.ingestion.ulr\":\"x\""),
     "unknown key 'kusto.ingestion.ulr'"},
    {CONN("\"tasks.max\":1"),
     "missing required key 'kusto.tables.topics.mapping'"},
    {CONN("\"kusto.tables.topics.mapping\":\"[{'topic':'t','db':'d'}]\""),
     "missing required key 'kusto.tables.topics.mapping[0].table'"},
    {CONN("\"kusto.tables.topics.mapping\":\"[{'topic':'t',\""),
     "'kusto.tables.topics.mapping' is not valid JSON"},
    {CONN("\"kusto.tables.topics.mapping\":\"[{'topic':'t','db':'d',"
          "'table':'T','tabel':'x'}]\""),
     "unknown key 'kusto.tables.topics.mapping[0].tabel'"},
    {CONN("\"kusto.tables.topics.mapping\":\"[{'topic':'u','db':'d',"
          "'table':'T'}]\""),
     "topic 't' in 'topics' has no entry in 'kusto.tables.topics.mapping'"},
    {CONN(MAP ",\"flush.size.bytes\":\"8000000\""),
     "'flush.size.bytes' (8000000) must be at most 4194304"},
    {CONN(MAP ",\"flush.interval.ms\":\"fast\""),
     "'flush.interval.ms' must be an integer"},
    {CONN(MAP ",\"aad.auth.strategy\":\"kerberos\""),
     "'aad.auth.strategy' must be application, managed_identity, "
     "workload_identity or az_dev_token, not 'kerberos'"},
    {CONN(MAP ",\"behavior.on.error\":\"drop\""),
     "'behavior.on.error' must be fail, log or ignore, not 'drop'"},
    {CONN(MAP ",\"connector.class\":\"io.confluent.connect.s3."
              "S3SinkConnector\""),
     "'connector.class' is 'io.confluent.connect.s3.S3SinkConnector': kadx "
     "reads the Kusto sink connector's config only"},
    {"{\"topics\":\"t\",\"kusto.ingestion.url\":\"https://ingest-x.kusto."
     "windows.net\",\"aad.auth.appid\":\"a\",\"aad.auth.authority\":\"t\","
     "\"consumer.override.bootstrap.servers\":\"b:1\","
     "\"consumer.override.group.id\":\"g\"," MAP "}",
     "missing required key 'aad.auth.appkey' (auth method client_secret)"},
    {"{\"topics\":\"t\",\"aad.auth.appkey\":\"k\"," MAP "}",
     "missing required key 'kusto.ingestion.url'"},
    {"{\"name\":\"n\",\"config\":{\"topics\":\"t\"},\"status\":1}",
     "unknown key 'status'"},
};

static void test_malformed(void **state)
{
    (void)state;
    unsetenv("KADX_BOOTSTRAP_SERVERS");
    unsetenv("KADX_GROUP_ID");
    assert_true(sizeof(bad_configs) / sizeof(bad_configs[0]) >= 15);
    for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
        load_bad(bad_configs[i].json, bad_configs[i].err);
    }
}

/* A secret must not leak through an error message either. */
/* issue 18: the admin's TLS, token-on-GET and limit keys */
static void test_admin_security_keys(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("{" KAFKA "," ADX "," ROUTE "}");
    assert_int_equal(cfg->admin.token_on_get, 0);
    assert_null(cfg->admin.tls_cert);
    assert_int_equal(cfg->admin.max_connections, 64);
    assert_int_equal(cfg->admin.max_requests_per_s, 20);
    config_free(cfg);
    cfg = load_ok("{" KAFKA "," ADX "," ROUTE ",\"admin\":{\"listen\":"
                  "\"0.0.0.0:8443\",\"token\":\"tok-12345678\","
                  "\"token_on_get\":true,\"tls_cert\":\"/c.pem\","
                  "\"tls_key\":\"/k.pem\",\"max_connections\":8,"
                  "\"max_requests_per_s\":5}}");
    assert_int_equal(cfg->admin.token_on_get, 1);
    assert_string_equal(cfg->admin.tls_cert, "/c.pem");
    assert_string_equal(cfg->admin.tls_key, "/k.pem");
    assert_int_equal(cfg->admin.max_connections, 8);
    assert_int_equal(cfg->admin.max_requests_per_s, 5);
    config_free(cfg);
    load_bad("{" KAFKA "," ADX "," ROUTE ",\"admin\":{\"token_on_get\":true}}",
             "'admin.token_on_get' needs 'admin.token'");
    load_bad("{" KAFKA "," ADX "," ROUTE
             ",\"admin\":{\"tls_cert\":\"/c.pem\"}}",
             "'admin.tls_cert' needs 'admin.tls_key'");
    load_bad("{" KAFKA "," ADX "," ROUTE ",\"admin\":{\"max_connections\":0}}",
             "'admin.max_connections' must be at least 1");
    load_bad("{" KAFKA "," ADX "," ROUTE ",\"admin\":{\"token_on_get\":1}}",
             "'admin.token_on_get' must be true or false");
}

static void test_errors_hide_secrets(void **state)
{
    struct config *cfg = NULL;
    char err[ERRLEN];

    (void)state;
    assert_true(config_load_string(
                    "{\"kafka\":{\"bootstrap.servers\":\"b:1\",\"group.id\":"
                    "\"g\",\"sasl.password\":[\"pw-in-array-123\"]}," ADX
                    "," ROUTE "}",
                    NULL, &cfg, err, sizeof(err)) < 0);
    assert_null(strstr(err, "pw-in-array-123"));
    assert_true(config_load_string(
                    "{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\","
                    "\"auth\":{\"method\":\"none\",\"client_secret\":"
                    "\"sec-ret-value-77\"}}," ROUTE "}",
                    NULL, &cfg, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "'adx.auth.client_secret' is not used"));
    assert_null(strstr(err, "sec-ret-value-77"));
}

static void test_file_errors(void **state)
{
    char path[] = "/tmp/kadx-test-config-XXXXXX";
    struct config *cfg = NULL;
    char err[ERRLEN];
    char *big;
    int fd;

    (void)state;
    assert_int_equal(config_load_file("/nonexistent/kadx.json", NULL, &cfg, err,
                                      sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "cannot read config file "
                                "'/nonexistent/kadx.json': No such file"));
    assert_int_equal(config_load_file("/tmp", NULL, &cfg, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "is not a regular file"));

    fd = mkstemp(path);
    assert_true(fd >= 0);
    big = malloc(CONFIG_MAX_BYTES + 10);
    assert_non_null(big);
    memset(big, ' ', CONFIG_MAX_BYTES + 10);
    assert_int_equal(write(fd, big, CONFIG_MAX_BYTES + 10),
                     CONFIG_MAX_BYTES + 10);
    close(fd);
    assert_int_equal(config_load_file(path, NULL, &cfg, err, sizeof(err)),
                     -EFBIG);
    assert_non_null(strstr(err, "is larger than 1048576 bytes"));
    big[CONFIG_MAX_BYTES + 9] = '\0';
    assert_int_equal(config_load_string(big, NULL, &cfg, err, sizeof(err)),
                     -EFBIG);
    free(big);
    unlink(path);
    assert_null(cfg);
}

/* journal.path defaults under systemd's StateDirectory= when given one */
static void test_journal_default_state_directory(void **state)
{
    struct config *cfg;

    (void)state;
    setenv("STATE_DIRECTORY", "/var/lib/kadx/:/var/lib/other", 1);
    cfg = load_ok(NATIVE(""));
    assert_string_equal(cfg->journal.path, "/var/lib/kadx/kadx-journal.db");
    config_free(cfg);
    /* an explicit path wins */
    cfg = load_ok(NATIVE(",\"journal\":{\"path\":\"j.db\"}"));
    assert_string_equal(cfg->journal.path, "j.db");
    config_free(cfg);
    /* not absolute: ignored */
    setenv("STATE_DIRECTORY", "relative", 1);
    cfg = load_ok(NATIVE(""));
    assert_string_equal(cfg->journal.path, "./kadx-journal.db");
    config_free(cfg);
    unsetenv("STATE_DIRECTORY");
    cfg = load_ok(NATIVE(""));
    assert_string_equal(cfg->journal.path, "./kadx-journal.db");
    config_free(cfg);
}

/* adx.proxy / adx.no_proxy, and the connector's proxy.host/proxy.port */
static void test_proxy(void **state)
{
    struct config *cfg;
    char *json;

    (void)state;
    cfg = load_ok(NATIVE(""));
    assert_null(cfg->adx.proxy);
    assert_null(cfg->adx.no_proxy);
    config_free(cfg);
    cfg = load_ok("{" KAFKA ",\"adx\":{\"ingest_url\":\"https://h\","
                  "\"proxy\":\"http://user:pw@proxy.example:3128\","
                  "\"no_proxy\":\"169.254.169.254,.internal\"}," ROUTE "}");
    assert_string_equal(cfg->adx.proxy, "http://user:pw@proxy.example:3128");
    assert_string_equal(cfg->adx.no_proxy, "169.254.169.254,.internal");
    json = config_to_json(cfg);
    assert_non_null(json);
    assert_null(strstr(json, "user:pw"));
    assert_non_null(strstr(json, "\"no_proxy\""));
    free(json);
    config_free(cfg);
    setenv("KADX_BOOTSTRAP_SERVERS", "b:1", 1);
    cfg = load_ok("{\"name\":\"c\",\"config\":{\"topics\":\"t\","
                  "\"kusto.ingestion.url\":\"https://ingest-h.k.example\","
                  "\"kusto.query.url\":\"https://h.k.example\","
                  "\"aad.auth.appid\":\"a\",\"aad.auth.appkey\":\"k\","
                  "\"aad.auth.authority\":\"t\","
                  "\"kusto.tables.topics.mapping\":\"[{'topic': 't','db': "
                  "'d', 'table': 'T','format': 'json'}]\","
                  "\"proxy.host\":\"proxy.example\",\"proxy.port\":\"8080\"}}");
    unsetenv("KADX_BOOTSTRAP_SERVERS");
    assert_string_equal(cfg->adx.proxy, "http://proxy.example:8080");
    config_free(cfg);
}

/* ${VAR:-default}, ${file:/path} and log.level */
static void test_defaults_files_log(void **state)
{
    char path[] = "/tmp/kadx-test-secret-XXXXXX";
    struct config *cfg;
    int fd;

    (void)state;
    unsetenv("KADX_T_UNSET");
    setenv("KADX_T_EMPTY", "", 1);
    setenv("KADX_T_SET", "T9", 1);
    cfg = load_ok("{" KAFKA "," ADX ",\"routes\":[{\"topic\":\"t\","
                  "\"database\":\"${KADX_T_UNSET:-d1}\",\"table\":"
                  "\"${KADX_T_SET:-x}\",\"mapping\":\"${KADX_T_EMPTY:-m}\"}],"
                  "\"log\":{\"level\":\"debug\"}}");
    assert_string_equal(cfg->routes[0].database, "d1");
    assert_string_equal(cfg->routes[0].table, "T9");
    assert_string_equal(cfg->routes[0].mapping, "m");
    assert_int_equal(cfg->log_level, 3);
    config_free(cfg);
    unsetenv("KADX_T_EMPTY");
    unsetenv("KADX_T_SET");

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "tok-from-file\r\n", 15), 15);
    close(fd);
    {
        char json[1024];

        snprintf(json, sizeof(json),
                 "{" KAFKA ",\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\","
                 "\"auth\":{\"method\":\"static_token\",\"token\":"
                 "\"${file:%s}\"}}," ROUTE "}",
                 path);
        cfg = load_ok(json);
        assert_string_equal(cfg->adx.auth.token, "tok-from-file");
        assert_int_equal(cfg->log_level, -1);
        config_free(cfg);
    }
    unlink(path);
    load_bad("{" KAFKA ",\"adx\":{\"ingest_url\":\"${file:/nonexistent/u}\"}"
             "," ROUTE "}",
             "cannot read '/nonexistent/u' (used in 'adx.ingest_url')");
    load_bad("{" KAFKA ",\"adx\":{\"ingest_url\":\"${file:rel}\"}," ROUTE "}",
             "'${file:rel}' in 'adx.ingest_url': the path must be absolute");
    load_bad(NATIVE(",\"log\":{\"level\":\"loud\"}"),
             "'log.level' must be error, warn, info or debug, not 'loud'");
    load_bad(NATIVE(",\"log\":{\"format\":\"json\"}"),
             "unknown key 'log.format'");
}

static void test_units(void **state)
{
    struct config *cfg = load_ok(NATIVE(
        ",\"journal\":{\"max_bytes\":\"100 MB\",\"retention_ms\":\"7d\"},"
        "\"forwarder\":{\"linger_ms\":\"2s\",\"batch_max_bytes\":\"512KiB\","
        "\"retry_max_time_ms\":\"5m\"},\"admin\":{\"listen\":\"off\"}"));

    (void)state;
    assert_int_equal(cfg->journal.max_bytes, 100000000);
    assert_int_equal(cfg->journal.retention_ms, 7LL * 24 * 3600 * 1000);
    assert_int_equal(cfg->forwarder.linger_ms, 2000);
    assert_int_equal(cfg->forwarder.batch_max_bytes, 512 * 1024);
    assert_int_equal(cfg->forwarder.retry_max_time_ms, 300000);
    assert_null(cfg->admin.listen);
    /* water marks default to 80% and 50% of the journal cap */
    assert_int_equal(cfg->intake.high_water_bytes, 80000000);
    assert_int_equal(cfg->intake.low_water_bytes, 50000000);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_minimal_defaults),
        cmocka_unit_test(test_offset_reset_keys),
        cmocka_unit_test(test_native_full_fixture),
        cmocka_unit_test(test_route_for_topic),
        cmocka_unit_test(test_dm_url_default),
        cmocka_unit_test(test_connector_equals_native),
        cmocka_unit_test(test_connector_bare_map),
        cmocka_unit_test(test_connector_other_strategies),
        cmocka_unit_test(test_connector_registry),
        cmocka_unit_test(test_overrides_and_env),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_to_json_masks_secrets),
        cmocka_unit_test(test_to_json_round_trip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_admin_security_keys),
        cmocka_unit_test(test_errors_hide_secrets),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_ambiguous_window),
        cmocka_unit_test(test_journal_default_state_directory),
        cmocka_unit_test(test_proxy),
        cmocka_unit_test(test_defaults_files_log),
    };

    log_setup(LOG_WARN, LOG_TEXT);
    unsetenv("KADX_BOOTSTRAP_SERVERS");
    unsetenv("KADX_GROUP_ID");
    unsetenv("AZURE_AUTHORITY_HOST");
    unsetenv("AZURE_FEDERATED_TOKEN_FILE");
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    log_release();
    return rc;
}
