/*
 * test_base_sbuf.c - base/sbuf.{c,h}: appends keep the bytes NUL-terminated,
 * printf grows past the first block, the cap and overflow are sticky,
 * detach and release.
 */
#include "base/sbuf.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_add_and_printf(void **state)
{
    struct sbuf b = {0};

    (void)state;
    assert_int_equal(sbuf_adds(&b, "ab"), 0);
    assert_int_equal(sbuf_add(&b, "cdef", 2), 0);
    assert_int_equal(sbuf_printf(&b, "-%d-%s", 42, "x"), 0);
    assert_string_equal(b.p, "abcd-42-x");
    assert_int_equal(b.len, 9);
    assert_int_equal(sbuf_add(&b, "", 0), 0);
    assert_int_equal(b.len, 9);
    sbuf_release(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    sbuf_release(&b); /* twice is fine */
    sbuf_release(NULL);
}

static void test_grows_past_first_block(void **state)
{
    struct sbuf b = {0};
    char big[5000];

    (void)state;
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sbuf_printf(&b, "%d,", i), 0);
    }
    assert_int_equal(sbuf_printf(&b, "%s", big), 0);
    assert_int_equal(b.len, 290 + 4999);
    assert_true(b.cap > b.len);
    assert_int_equal(b.p[b.len], '\0');
    assert_memory_equal(b.p, "0,1,2,", 6);
    assert_int_equal(b.p[b.len - 1], 'y');
    sbuf_release(&b);
}

static void test_cap_is_sticky(void **state)
{
    struct sbuf b = {.max = 8};

    (void)state;
    assert_int_equal(sbuf_adds(&b, "12345678"), 0);
    assert_int_equal(sbuf_adds(&b, "9"), -EMSGSIZE);
    assert_int_equal(b.err, -EMSGSIZE);
    /* later appends do nothing, even ones that would fit */
    assert_int_equal(sbuf_adds(&b, ""), -EMSGSIZE);
    assert_int_equal(sbuf_printf(&b, "%s", ""), -EMSGSIZE);
    assert_string_equal(b.p, "12345678");
    sbuf_release(&b);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.max, 8);
}

static void test_overflow_is_sticky(void **state)
{
    struct sbuf b = {0};

    (void)state;
    /* a size that would overflow is refused before any allocation, it
     * sticks and nothing is lost */
    assert_int_equal(sbuf_adds(&b, "kept"), 0);
    assert_int_equal(sbuf_reserve(&b, SIZE_MAX - 2), -EMSGSIZE);
    assert_int_equal(b.err, -EMSGSIZE);
    assert_true(sbuf_adds(&b, "x") < 0);
    assert_string_equal(b.p, "kept");
    sbuf_release(&b);
}

static void test_detach(void **state)
{
    struct sbuf b = {0};
    char *s;

    (void)state;
    assert_null(sbuf_detach(&b));
    sbuf_printf(&b, "%s=%d", "k", 1);
    s = sbuf_detach(&b);
    assert_string_equal(s, "k=1");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_printf),
        cmocka_unit_test(test_grows_past_first_block),
        cmocka_unit_test(test_cap_is_sticky),
        cmocka_unit_test(test_overflow_is_sticky),
        cmocka_unit_test(test_detach),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
