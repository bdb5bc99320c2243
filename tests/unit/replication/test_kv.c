/* Unit tests of the key-value domain's base64 (RFC 4648 vectors, round trips) and of the job
 * stage name rule, both rewritten over library calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replication/domain/domain.h"
#include "replication/domain/kv.h"

static void expect_base64(const char *in, const char *out)
{
    json_t *text = tandem_base64_json(in, strlen(in));
    assert_true(json_is_string(text));
    assert_string_equal(json_string_value(text), out);
    json_decref(text);
}

static void test_base64_vectors(void **state)
{
    (void)state;
    expect_base64("", "");
    expect_base64("f", "Zg==");
    expect_base64("fo", "Zm8=");
    expect_base64("foo", "Zm9v");
    expect_base64("foob", "Zm9vYg==");
    expect_base64("fooba", "Zm9vYmE=");
    expect_base64("foobar", "Zm9vYmFy");
}

/* Strict decoding: a value has exactly one accepted encoding (issue 12: "a===" was stored as
 * empty and "bmV" as "ne"). */
static void test_base64_refuses_lenient_forms(void **state)
{
    static const char *const bad[] = {"a===", "bmV",  "Zg=",      "Zg",   "Zh==",  "Zm9=",
                                      "Zm8",  "====", "Zg==Zg==", "Z===", "Zm9v=", "Zm 9v"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *out = NULL;
        size_t len = 0;
        assert_int_equal(tandem_base64_decode(bad[i], strlen(bad[i]), &out, &len), TANDEM_INVALID);
        assert_null(out);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(tandem_base64_decode("bmU=", 4, &out, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "ne", 2);
    free(out);
    assert_int_equal(tandem_base64_decode("", 0, &out, &len), 0);
    assert_int_equal(len, 0);
    free(out);
}

static void test_base64_round_trip(void **state)
{
    (void)state;
    uint8_t data[256];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(255 - i);
    }
    for (size_t len = 0; len <= sizeof data; len += 7) {
        json_t *text = tandem_base64_json(data, len);
        uint8_t *back = NULL;
        size_t back_len = 0;
        assert_int_equal(tandem_base64_decode(json_string_value(text), json_string_length(text),
                                              &back, &back_len),
                         0);
        assert_int_equal(back_len, len);
        assert_memory_equal(back, data, len);
        free(back);
        json_decref(text);
    }
    uint8_t *bad = NULL;
    size_t bad_len = 0;
    assert_int_equal(tandem_base64_decode("Zm9v!", 5, &bad, &bad_len), TANDEM_INVALID);
    assert_null(bad);
}

static void test_stage_names(void **state)
{
    (void)state;
    assert_true(tandem_job_stage_name_ok("scan"));
    assert_true(tandem_job_stage_name_ok("re-scan_2"));
    assert_false(tandem_job_stage_name_ok(""));
    assert_false(tandem_job_stage_name_ok(NULL));
    assert_false(tandem_job_stage_name_ok("Scan"));
    assert_false(tandem_job_stage_name_ok("a b"));
    assert_false(tandem_job_stage_name_ok("0123456789012345678901234567890123"));
    assert_true(tandem_job_stage_name_ok("0123456789012345678901234567890"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_base64_refuses_lenient_forms),
        cmocka_unit_test(test_stage_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
