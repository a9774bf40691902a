/*
 * test_base_clock.c - base/clock.{c,h}: wall_ms is the Unix epoch in ms
 * (agrees with time()), mono_ms never goes back.
 */
#include "base/clock.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

static void test_wall_is_epoch_ms(void **state)
{
    time_t before = time(NULL);
    int64_t w = wall_ms();
    time_t after = time(NULL);

    (void)state;
    assert_true(w / 1000 >= (int64_t)before);
    assert_true(w / 1000 <= (int64_t)after);
}

static void test_mono_never_goes_back(void **state)
{
    int64_t prev = mono_ms();

    (void)state;
    for (int i = 0; i < 100000; i++) {
        int64_t now = mono_ms();

        assert_true(now >= prev);
        prev = now;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wall_is_epoch_ms),
        cmocka_unit_test(test_mono_never_goes_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
