/*
 * test_base_iso8601.c - base/iso8601.{c,h}: the one grammar admin's
 * POST /replay and `kadx recover --since/--until` accept (both forms each
 * used to accept alone), range checks, and what it refuses.
 */
#include "base/iso8601.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* 2026-01-31T00:00:00Z */
#define JAN31 INT64_C(1769817600000)

static int64_t parse(const char *s)
{
    int64_t v = -1;

    assert_int_equal(iso8601_parse_ms(s, &v), 0);
    return v;
}

static void test_forms(void **state)
{
    (void)state;
    assert_int_equal(parse("1970-01-01"), 0);
    assert_int_equal(parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse("2026-01-31"), JAN31);
    /* admin's old form: T and Z */
    assert_int_equal(parse("2026-01-31T12:00:00Z"), JAN31 + 43200000);
    /* recover's old forms: a space, no Z, fractions */
    assert_int_equal(parse("2026-01-31 12:00:00"), JAN31 + 43200000);
    assert_int_equal(parse("2026-01-31T12:00:00.5Z"), JAN31 + 43200500);
    assert_int_equal(parse("2026-01-31T12:00:00.25"), JAN31 + 43200250);
    assert_int_equal(parse("2026-01-31T12:00:00.123Z"), JAN31 + 43200123);
    /* more than three fraction digits: truncated */
    assert_int_equal(parse("2026-01-31T12:00:00.123999Z"), JAN31 + 43200123);
    /* leap second: the next second */
    assert_int_equal(parse("2016-12-31T23:59:60Z"), INT64_C(1483228800000));
}

static void test_calendar(void **state)
{
    (void)state;
    assert_int_equal(parse("2024-02-29"), INT64_C(1709164800000));
    assert_int_equal(parse("2000-02-29"), INT64_C(951782400000));
    assert_int_equal(parse("2026-12-31T23:59:59.999Z"), INT64_C(1798761599999));
    assert_int_equal(parse("9999-12-31"), INT64_C(253402214400000));
}

static void test_refused(void **state)
{
    static const char *bad[] = {
        "",
        "2026",
        "2026-1-31",
        " 2026-01-31",
        "2026-01-31 ",
        "2026-01-31T",
        "2026-01-31T12:00",
        "2026-01-31T12:00:00.",
        "2026-01-31T12:00:00ZZ",
        "2026-01-31T12:00:00+01:00",
        "2026-01-31t12:00:00z",
        "2026-13-01",
        "2026-00-01",
        "2026-01-00",
        "2026-02-29",
        "1900-02-29",
        "2026-04-31",
        "2026-01-31T24:00:00Z",
        "2026-01-31T12:60:00Z",
        "2026-01-31T12:00:61Z",
        "1969-12-31",
        "1769817600000",
        "24h",
        "2026-01-31Z",
    };
    int64_t v = 7;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (iso8601_parse_ms(bad[i], &v) != -EINVAL) {
            fail_msg("accepted '%s'", bad[i]);
        }
    }
    assert_int_equal(v, 7); /* untouched */
    assert_int_equal(iso8601_parse_ms(NULL, &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
