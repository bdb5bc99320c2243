/* Unit tests for tandem_token_ok: the alphabet, the punctuation set, and the length bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "storage/token.h"

static void test_alphabet_and_punctuation(void **state)
{
    (void)state;
    assert_true(tandem_token_ok("east-1", 63, "-_."));
    assert_true(tandem_token_ok("Job.42_a", 63, "-_."));
    assert_false(tandem_token_ok("job:42", 63, "-_."));
    assert_true(tandem_token_ok("job:42", 63, ":"));
    assert_false(tandem_token_ok("a b", 63, "-_."));
    assert_false(tandem_token_ok("caf\xc3\xa9", 63, "-_."));
    assert_false(tandem_token_ok("pipe|", 63, "-_."));
    assert_true(tandem_token_ok("plain", 63, ""));
}

static void test_length_bounds(void **state)
{
    (void)state;
    char text[80];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_false(tandem_token_ok("", 63, "-"));
    assert_false(tandem_token_ok(NULL, 63, "-"));
    text[63] = '\0';
    assert_true(tandem_token_ok(text, 63, "-"));
    text[63] = 'a';
    text[64] = '\0';
    assert_false(tandem_token_ok(text, 63, "-"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alphabet_and_punctuation),
        cmocka_unit_test(test_length_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
