/*
 * test_base_util.c - base/err.h, base/array.h, base/utf8.h: set_err,
 * grow_array, utf8_len, utf8_valid, utf8_copy.
 */
#include "base/array.h"
#include "base/err.h"
#include "base/utf8.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_set_err(void **state)
{
    char err[8];

    (void)state;
    set_err(err, sizeof(err), "code %d", 12345678);
    assert_string_equal(err, "code 12"); /* truncated, terminated */
    set_err(NULL, 0, "ignored %d", 1);
}

static void test_grow_array(void **state)
{
    int *v = NULL;
    size_t cap = 0;

    (void)state;
    assert_int_equal(grow_array((void **)&v, &cap, 1, sizeof(*v)), 0);
    assert_int_equal(cap, 16);
    assert_int_equal(grow_array((void **)&v, &cap, 16, sizeof(*v)), 0);
    assert_int_equal(cap, 16);
    assert_int_equal(grow_array((void **)&v, &cap, 100, sizeof(*v)), 0);
    assert_int_equal(cap, 128);
    v[99] = 7;
    free(v);
}

static void test_utf8_len(void **state)
{
    (void)state;
    assert_int_equal(utf8_len((const unsigned char *)"a"), 1);
    assert_int_equal(utf8_len((const unsigned char *)"\xc3\xa9"), 2);
    assert_int_equal(utf8_len((const unsigned char *)"\xe2\x82\xac"), 3);
    assert_int_equal(utf8_len((const unsigned char *)"\xf0\x9f\x8e\xb2"), 4);
    /* stray continuation, overlong, surrogate, > U+10FFFF, cut short */
    assert_int_equal(utf8_len((const unsigned char *)"\x80"), 0);
    assert_int_equal(utf8_len((const unsigned char *)"\xc1\xbf"), 0);
    assert_int_equal(utf8_len((const unsigned char *)"\xe0\x9f\xbf"), 0);
    assert_int_equal(utf8_len((const unsigned char *)"\xed\xa0\x80"), 0);
    assert_int_equal(utf8_len((const unsigned char *)"\xf4\x90\x80\x80"), 0);
    assert_int_equal(utf8_len((const unsigned char *)"\xe2\x82"), 0);
    /* not NUL-terminated: only avail bytes count */
    assert_int_equal(utf8_len_n((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(utf8_len_n((const unsigned char *)"\xe2\x82\xac", 2), 0);
    assert_int_equal(utf8_len_n((const unsigned char *)"ab", 1), 1);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(utf8_valid("", 0));
    assert_true(utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
    assert_false(utf8_valid("\xc3", 1));             /* cut */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(utf8_valid("a\0b", 3));             /* NUL */
    assert_false(utf8_valid("\xe2\x82", 2));         /* cut in the middle */
}

static void test_utf8_copy(void **state)
{
    char out[6];

    (void)state;
    /* "ab" + a 3-byte char fits in 6 with the NUL; one more byte and the
     * character is left out whole */
    assert_string_equal(utf8_copy(out, sizeof(out), "ab\xe2\x82\xac"),
                        "ab\xe2\x82\xac");
    assert_string_equal(utf8_copy(out, sizeof(out), "abc\xe2\x82\xac"), "abc");
    assert_string_equal(utf8_copy(out, sizeof(out),
                                  "a\xff"
                                  "b"),
                        "a?b");
    assert_string_equal(utf8_copy(out, sizeof(out), "abcdefgh"), "abcde");
    assert_string_equal(utf8_copy(out, 1, "abc"), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_err),   cmocka_unit_test(test_grow_array),
        cmocka_unit_test(test_utf8_len),  cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_copy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
