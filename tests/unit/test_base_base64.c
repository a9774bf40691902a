/*
 * test_base_base64.c - base/base64.{c,h}: the RFC 4648 test vectors,
 * padding, bytes past 0x7f and NUL, and the length helper.
 */
#include "base/base64.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_rfc4648_vectors(void **state)
{
    static const char *const in[] = {"",     "f",     "fo",    "foo",
                                     "foob", "fooba", "foobar"};
    static const char *const want[] = {
        "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[16];

    (void)state;
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        size_t n = strlen(in[i]);

        assert_int_equal(base64_encode(out, in[i], n), strlen(want[i]));
        assert_int_equal(base64_len(n), strlen(want[i]));
        assert_string_equal(out, want[i]);
    }
}

static void test_binary_bytes(void **state)
{
    static const unsigned char in[] = {0x00, 0xff, 0xfe, 0x80, 0x00};
    char *s = base64_dup(in, sizeof(in));

    (void)state;
    assert_non_null(s);
    assert_string_equal(s, "AP/+gAA=");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_binary_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
