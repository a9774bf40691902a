/* gateway/phases.c: per-batch phase histograms and their /metrics text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/phases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_buckets(void **state)
{
    struct phase_snapshot s;

    (void)state;
    phases_reset();
    phase_observe_us(PHASE_COMMIT, 50);       /* <= 0.0001 s */
    phase_observe_us(PHASE_COMMIT, 100);      /* a bound counts in its bucket */
    phase_observe_us(PHASE_COMMIT, 6000);     /* <= 0.0075 */
    phase_observe_us(PHASE_COMMIT, 60000000); /* > 10 s: +Inf */
    phase_observe_us(PHASE_COMMIT, -5);       /* ignored */
    phase_observe_us(PHASE_COUNT, 5);         /* ignored */
    phase_snapshot(PHASE_COMMIT, &s);
    assert_int_equal(s.count, 4);
    assert_int_equal(s.sum_us, 50 + 100 + 6000 + 60000000);
    assert_int_equal(s.bucket[0], 2);
    assert_int_equal(s.bucket[7], 1);
    assert_true(phase_bounds_s[7] == 0.0075);
    assert_int_equal(s.bucket[PHASE_BUCKETS], 1);
    phase_snapshot(PHASE_APPEND, &s);
    assert_int_equal(s.count, 0);
}

static void test_end(void **state)
{
    struct phase_snapshot s;
    int64_t start = 0;

    (void)state;
    phases_reset();
    phase_end(PHASE_LINGER, &start); /* never started: nothing counted */
    phase_snapshot(PHASE_LINGER, &s);
    assert_int_equal(s.count, 0);
    start = phase_now_us();
    assert_true(start > 0);
    phase_end(PHASE_LINGER, &start);
    assert_int_equal(start, 0); /* cleared: a second end counts nothing */
    phase_end(PHASE_LINGER, &start);
    phase_snapshot(PHASE_LINGER, &s);
    assert_int_equal(s.count, 1);
    assert_true(s.sum_us < 10000000);
}

static void test_metrics_text(void **state)
{
    char *t;

    (void)state;
    phases_reset();
    phase_observe_us(PHASE_INGEST, 2500);
    phase_observe_us(PHASE_INGEST, 2500);
    t = phases_metrics_text();
    assert_non_null(t);
    assert_non_null(strstr(t, "# TYPE kadx_phase_seconds histogram\n"));
    assert_non_null(strstr(
        t, "kadx_phase_seconds_bucket{phase=\"ingest\",le=\"0.002\"} 0\n"));
    assert_non_null(strstr(
        t, "kadx_phase_seconds_bucket{phase=\"ingest\",le=\"0.003\"} 2\n"));
    assert_non_null(strstr(
        t, "kadx_phase_seconds_bucket{phase=\"ingest\",le=\"+Inf\"} 2\n"));
    assert_non_null(
        strstr(t, "kadx_phase_seconds_sum{phase=\"ingest\"} 0.005000\n"));
    assert_non_null(strstr(t, "kadx_phase_seconds_count{phase=\"fetch\"} 0\n"));
    for (int p = 0; p < PHASE_COUNT; p++) {
        char want[96];

        snprintf(want, sizeof(want), "kadx_phase_seconds_count{phase=\"%s\"}",
                 phase_name((enum phase)p));
        assert_non_null(strstr(t, want));
    }
    assert_string_equal(phase_name(PHASE_COUNT), "?");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_end),
        cmocka_unit_test(test_metrics_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
