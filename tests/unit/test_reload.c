/*
 * test_reload.c - unit tests for gateway/reload.c: which keys a SIGHUP
 * reload applies, which keep their running values (needs a restart), and
 * which changes are refused (routes' names and topics).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/reload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BASE(kafka_extra, journal, route_extra, fw)                            \
    "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\",\"group.id\":"       \
    "\"g\"" kafka_extra                                                        \
    "},\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\"},"                    \
    "\"routes\":[{\"topic\":\"t\",\"database\":\"db\",\"table\":"              \
    "\"T\"" route_extra "}],\"journal\":{\"path\":\"" journal                  \
    "\"},\"forwarder\":{\"linger_ms\":" fw "}}"

static struct config *load(const char *json)
{
    struct config *cfg = NULL;
    char err[512] = "";

    if (config_load_string(json, NULL, &cfg, err, sizeof(err)) != 0) {
        fail_msg("load failed: %s\n%s", err, json);
    }
    return cfg;
}

static void test_restart_keys_kept(void **state)
{
    struct config *run = load(BASE("", "a.db", "", "100"));
    struct config *next;
    char restart[256];
    char changed[512];
    char err[256] = "";

    (void)state;
    next = load(BASE(",\"fetch.max.bytes\":\"1000000\"", "b.db",
                     ",\"mapping\":\"m2\"", "300"));
    assert_int_equal(reload_keep_restart_keys(
                         next, run, restart, sizeof(restart), err, sizeof(err)),
                     0);
    assert_string_equal(restart, "kafka, journal.path");
    assert_string_equal(next->journal.path, "a.db");
    assert_null(config_kafka_get(next, "fetch.max.bytes"));
    assert_int_equal(next->forwarder.linger_ms, 300);
    assert_int_equal(reload_changed_keys(run, next, changed, sizeof(changed)),
                     0);
    assert_string_equal(changed, "routes[0].mapping, forwarder.linger_ms");
    config_free(next);
    config_free(run);
}

static void test_route_topic_change_refused(void **state)
{
    struct config *run = load(BASE("", "a.db", "", "100"));
    struct config *next = load(
        "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\",\"group.id\":"
        "\"g\"},\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\"},"
        "\"routes\":[{\"topic\":\"u\",\"database\":\"db\",\"table\":\"T\"}]}");
    char restart[256];
    char err[256] = "";

    (void)state;
    assert_int_equal(reload_keep_restart_keys(
                         next, run, restart, sizeof(restart), err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "routes[0] ('t') changed its name or topic"));
    config_free(next);
    config_free(run);
}

static void test_no_change(void **state)
{
    struct config *run = load(BASE("", "a.db", "", "100"));
    struct config *next = load(BASE("", "a.db", "", "100"));
    char restart[256];
    char changed[512];
    char err[256] = "";

    (void)state;
    assert_int_equal(reload_keep_restart_keys(
                         next, run, restart, sizeof(restart), err, sizeof(err)),
                     0);
    assert_string_equal(restart, "");
    assert_int_equal(reload_changed_keys(run, next, changed, sizeof(changed)),
                     0);
    assert_string_equal(changed, "");
    config_free(next);
    config_free(run);
}

#define ADMIN(admin, journal_extra)                                            \
    "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\",\"group.id\":"       \
    "\"g\"},\"adx\":{\"ingest_url\":\"http://127.0.0.1:8080\"},"               \
    "\"routes\":[{\"topic\":\"t\",\"database\":\"db\",\"table\":\"T\"}],"      \
    "\"journal\":{\"path\":\"a.db\"" journal_extra "},\"admin\":{" admin "}}"

/* admin TLS on/off, the connection limits and journal.reserve_bytes need a
 * restart; the TLS files' names, the token and token_on_get apply */
static void test_admin_keys(void **state)
{
    struct config *run =
        load(ADMIN("\"listen\":\"127.0.0.1:0\",\"tls_cert\":\"a.crt\","
                   "\"tls_key\":\"a.key\",\"max_connections\":64",
                   ",\"reserve_bytes\":\"8MiB\""));
    struct config *next =
        load(ADMIN("\"listen\":\"127.0.0.1:0\",\"token\":\"t0ken-1234\","
                   "\"token_on_get\":true,\"max_connections\":8",
                   ",\"reserve_bytes\":\"16MiB\""));
    struct config *renamed =
        load(ADMIN("\"listen\":\"127.0.0.1:0\",\"tls_cert\":\"b.crt\","
                   "\"tls_key\":\"b.key\",\"max_connections\":64",
                   ",\"reserve_bytes\":\"8MiB\""));
    char restart[256];
    char err[256] = "";

    (void)state;
    assert_int_equal(reload_keep_restart_keys(
                         next, run, restart, sizeof(restart), err, sizeof(err)),
                     0);
    assert_string_equal(restart, "journal.reserve_bytes, admin.max_connections"
                                 "/requests_per_s, admin.tls_cert (https "
                                 "on/off)");
    assert_string_equal(next->admin.tls_cert, "a.crt"); /* running kept */
    assert_string_equal(next->admin.tls_key, "a.key");
    assert_int_equal(next->admin.max_connections, 64);
    assert_int_equal(next->journal.reserve_bytes, 8 << 20);
    assert_int_equal(next->admin.token_on_get, 1); /* applied */
    assert_int_equal(reload_keep_restart_keys(renamed, run, restart,
                                              sizeof(restart), err,
                                              sizeof(err)),
                     0);
    assert_string_equal(restart, "");
    assert_string_equal(renamed->admin.tls_cert, "b.crt"); /* re-read */
    config_free(renamed);
    config_free(next);
    config_free(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_keys_kept),
        cmocka_unit_test(test_route_topic_change_refused),
        cmocka_unit_test(test_no_change),
        cmocka_unit_test(test_admin_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
