/*
 * test_prefetch.c - intake.prefetch_bytes turned into librdkafka's limits
 * (gateway/prefetch.c): the plan's arithmetic, and that the properties
 * land in a librdkafka configuration unless the user set them.
 */
#include "gateway/prefetch.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_unbounded_sets_nothing(void **state)
{
    struct prefetch_plan pl;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char v[64], err[256];
    size_t vlen = sizeof(v);
    char *const keys[] = {NULL};

    (void)state;
    prefetch_plan_compute(0, &pl);
    assert_int_equal(pl.budget, 0);
    assert_int_equal(prefetch_apply(conf, &pl, keys, 0, err, sizeof(err)), 0);
    assert_int_equal(
        rd_kafka_conf_get(conf, "queued.max.messages.kbytes", v, &vlen),
        RD_KAFKA_CONF_OK);
    assert_string_equal(v, "65536"); /* librdkafka's default */
    rd_kafka_conf_destroy(conf);
}

static void test_plan_of_16mib(void **state)
{
    struct prefetch_plan pl;

    (void)state;
    prefetch_plan_compute(16 << 20, &pl);
    assert_int_equal(pl.budget, 16 << 20);
    assert_int_equal(pl.queued_kbytes, 8192);      /* half, in KiB */
    assert_int_equal(pl.queued_msgs, 32768);       /* 8 MiB / 256 */
    assert_int_equal(pl.fetch_max_bytes, 2 << 20); /* an eighth */
    assert_int_equal(pl.part_fetch_bytes, 1 << 20);
}

static void test_small_budget_keeps_librdkafka_floors(void **state)
{
    struct prefetch_plan pl;

    (void)state;
    prefetch_plan_compute(4 << 20, &pl);
    /* fetch.max.bytes may not be below message.max.bytes (1000000) */
    assert_int_equal(pl.fetch_max_bytes, PREFETCH_MIN_FETCH_BYTES);
    assert_true(pl.part_fetch_bytes <= pl.fetch_max_bytes);
    assert_int_equal(pl.queued_kbytes, 2048);
}

static void test_apply_respects_user_keys(void **state)
{
    struct prefetch_plan pl;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char v[64], err[256];
    size_t vlen;
    char *const keys[] = {"fetch.max.bytes"};

    (void)state;
    assert_int_equal(
        rd_kafka_conf_set(conf, "fetch.max.bytes", "3000000", err, sizeof(err)),
        RD_KAFKA_CONF_OK);
    prefetch_plan_compute(32 << 20, &pl);
    assert_int_equal(prefetch_apply(conf, &pl, keys, 1, err, sizeof(err)), 0);
    vlen = sizeof(v);
    rd_kafka_conf_get(conf, "fetch.max.bytes", v, &vlen);
    assert_string_equal(v, "3000000"); /* the user's */
    vlen = sizeof(v);
    rd_kafka_conf_get(conf, "queued.max.messages.kbytes", v, &vlen);
    assert_string_equal(v, "16384");
    vlen = sizeof(v);
    rd_kafka_conf_get(conf, "queued.min.messages", v, &vlen);
    assert_string_equal(v, "65536");
    rd_kafka_conf_destroy(conf);
}

/* The plan must be one librdkafka accepts: a consumer starts with it. */
static void test_consumer_accepts_the_plan(void **state)
{
    static const int64_t budgets[] = {4 << 20, 16 << 20, 64 << 20,
                                      INT64_C(1) << 32};
    char *const keys[] = {NULL};

    (void)state;
    for (size_t i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
        struct prefetch_plan pl;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];
        rd_kafka_t *rk;

        prefetch_plan_compute(budgets[i], &pl);
        assert_int_equal(prefetch_apply(conf, &pl, keys, 0, err, sizeof(err)),
                         0);
        rd_kafka_conf_set(conf, "group.id", "t", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (rk == NULL) {
            rd_kafka_conf_destroy(conf);
            fail_msg("budget %lld: %s", (long long)budgets[i], err);
        }
        rd_kafka_destroy(rk);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unbounded_sets_nothing),
        cmocka_unit_test(test_plan_of_16mib),
        cmocka_unit_test(test_small_budget_keeps_librdkafka_floors),
        cmocka_unit_test(test_apply_respects_user_keys),
        cmocka_unit_test(test_consumer_accepts_the_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
