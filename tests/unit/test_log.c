/*
 * test_log.c - gateway/log.c: one line of valid UTF-8 whatever the bytes
 * (log_escape), and secrets masked (log_mask).
 */
#include "gateway/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static const char *esc(const char *s, int json)
{
    static char out[256];

    log_escape(s, out, sizeof(out), json);
    return out;
}

static void test_plain_text_unchanged(void **state)
{
    (void)state;
    assert_string_equal(esc("route 'gameplay': 200 OK", 0),
                        "route 'gameplay': 200 OK");
    assert_string_equal(esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xb2", 0),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xb2");
    assert_string_equal(esc("a\tb \"q\" c\\d", 0), "a\tb \"q\" c\\d");
}

static void test_one_line(void **state)
{
    (void)state;
    /* a payload cannot forge a second log line or drive the terminal */
    assert_string_equal(esc("x\nERROR fake\r\x1b[31m\x7f", 0),
                        "x\\nERROR fake\\r\\x1b[31m\\x7f");
    assert_string_equal(esc("x\n\"y\"\\\t\x01", 1),
                        "x\\n\\\"y\\\"\\\\\\t\\u0001");
}

static void test_invalid_utf8_replaced(void **state)
{
    (void)state;
    /* stray continuation, bad lead, overlong, surrogate, > U+10FFFF, cut */
    assert_string_equal(esc("a\x80"
                            "b",
                            0),
                        "a\xef\xbf\xbd"
                        "b");
    assert_string_equal(esc("\xff\xfe", 1), "\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(esc("\xc0\xaf", 0), "\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(esc("\xe0\x80\xaf", 0),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(esc("\xed\xa0\x80", 0),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(esc("\xf4\x90\x80\x80", 0),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(esc("x\xe2\x82", 0), "x\xef\xbf\xbd\xef\xbf\xbd");
}

static void test_never_cut_inside_a_unit(void **state)
{
    char out[6];

    (void)state;
    /* "ab" + a 3-byte char: 2 + 3 = 5 bytes fit in 6 with the NUL */
    assert_int_equal(log_escape("ab\xe2\x82\xac", out, sizeof(out), 0), 5);
    /* one more byte before it: the char no longer fits, it is left out */
    assert_int_equal(log_escape("abc\xe2\x82\xac", out, sizeof(out), 0), 3);
    assert_string_equal(out, "abc");
    /* an escape is never split either */
    assert_int_equal(log_escape("abcd\n", out, sizeof(out), 0), 4);
    assert_string_equal(out, "abcd");
    assert_int_equal(log_escape("x", out, 0, 0), 0);
}

static void test_secrets_masked(void **state)
{
    char out[128];

    (void)state;
    log_add_secret("s3cret-value");
    log_mask("token=s3cret-value; again s3cret-value", out, sizeof(out));
    assert_string_equal(out, "token=***; again ***");
    log_release();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_one_line),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_never_cut_inside_a_unit),
        cmocka_unit_test(test_secrets_masked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
