/* Unit tests for the helpers tandemctl's commands share: byte encodings, query strings, --limit,
 * item paths, one-line errors and the JSON-or-table answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "capture.h"
#include "node/ctl/encode.h"
#include "node/ctl/listing.h"
#include "node/ctl/output.h"

/* Adds --name (value: NULL for a switch) to c's arguments. */
static void flag_add(struct capture *c, const char *name, const char *value)
{
    struct tandem_ctl_flag *f = &c->args.flags[c->args.flag_count++];
    f->name = name;
    f->name_len = strlen(name);
    f->value = value != NULL ? value : "";
}

static void test_base64_vectors(void **state)
{
    /* RFC 4648, section 10. */
    static const char *const vectors[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const char *plain = vectors[i][0];
        char *encoded = tandem_ctl_base64_encode((const unsigned char *)plain, strlen(plain));
        unsigned char *decoded = NULL;
        size_t len = 0;
        assert_string_equal(encoded, vectors[i][1]);
        assert_int_equal(tandem_ctl_base64_decode(encoded, &decoded, &len), 0);
        assert_int_equal(len, strlen(plain));
        assert_memory_equal(decoded, plain, len);
        free(encoded);
        free(decoded);
    }
}

static void test_base64_round_trips_every_byte(void **state)
{
    unsigned char bytes[256];
    (void)state;
    for (size_t i = 0; i < sizeof bytes; i++) {
        bytes[i] = (unsigned char)(255 - i);
    }
    for (size_t len = 0; len <= sizeof bytes; len += 37) {
        char *encoded = tandem_ctl_base64_encode(bytes, len);
        unsigned char *decoded = NULL;
        size_t out_len = 0;
        assert_int_equal(strlen(encoded), (len + 2) / 3 * 4);
        assert_int_equal(tandem_ctl_base64_decode(encoded, &decoded, &out_len), 0);
        assert_int_equal(out_len, len);
        assert_memory_equal(decoded, bytes, len);
        free(encoded);
        free(decoded);
    }
}

static void test_base64_refuses_malformed_text(void **state)
{
    static const char *const bad[] = {"Zg=", "Z===", "Zg=a", "Zm9v!A==", "=Zm9"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *decoded = NULL;
        size_t len = 0;
        assert_int_equal(tandem_ctl_base64_decode(bad[i], &decoded, &len), -1);
    }
}

static void test_percent_encode_and_escape(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(tandem_ctl_percent_encode("a b/\xc3\xa9~", 7, out, sizeof out), 0);
    assert_string_equal(out, "a%20b%2F%C3%A9~");
    assert_int_equal(tandem_ctl_percent_encode("a b", 3, out, 5), -1);
    tandem_ctl_escape((const unsigned char *)"ab\x01\\cdef", 8, 7, out, sizeof out);
    assert_string_equal(out, "ab\\x01...");
    assert_true(tandem_ctl_utf8_valid((const unsigned char *)"\xc3\xa9", 2));
    assert_false(tandem_ctl_utf8_valid((const unsigned char *)"\xc0\xaf", 2));
    assert_false(tandem_ctl_utf8_valid((const unsigned char *)"\xed\xa0\x80", 3));
}

static void test_query_append(void **state)
{
    struct capture c;
    char path[64] = "/v1/jobs";
    char value[200];
    (void)state;
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_query_append(&c.ctx, path, sizeof path, "site", "a b"), 0);
    assert_int_equal(tandem_ctl_query_append(&c.ctx, path, sizeof path, "job", NULL), 0);
    assert_int_equal(tandem_ctl_query_append(&c.ctx, path, sizeof path, "status", "x&y"), 0);
    assert_string_equal(path, "/v1/jobs?site=a%20b&status=x%26y");
    memset(value, ' ', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    assert_int_equal(tandem_ctl_query_append(&c.ctx, path, sizeof path, "site", value),
                     TANDEM_CTL_EUSAGE);
    assert_string_equal(c.ctx.errmsg, "test: --site: value too long");
    assert_int_equal(tandem_ctl_query_append(&c.ctx, path, sizeof path, "client",
                                             "0123456789abcdefghijklmnopqrstuvwxyz"),
                     TANDEM_CTL_EUSAGE);
    assert_string_equal(c.ctx.errmsg, "test: request path too long");
    capture_close(&c);
}

static void test_limit_flag(void **state)
{
    static const char *const bad[] = {"0", "-1", "x", "5x", "", "1000001"};
    struct capture c;
    size_t limit = 0;
    (void)state;
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_limit_flag(&c.ctx, &c.args, &limit), 0);
    assert_int_equal(limit, TANDEM_CTL_TABLE_ROWS_MAX);
    flag_add(&c, "limit", "25");
    assert_int_equal(tandem_ctl_limit_flag(&c.ctx, &c.args, &limit), 0);
    assert_int_equal(limit, 25);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[128];
        c.args.flags[0].value = bad[i];
        assert_int_equal(tandem_ctl_limit_flag(&c.ctx, &c.args, &limit), TANDEM_CTL_EUSAGE);
        snprintf(want, sizeof want, "test: --limit: expected 1..1000000, got '%s'", bad[i]);
        assert_string_equal(c.ctx.errmsg, want);
    }
    capture_close(&c);
}

static void test_item_path(void **state)
{
    struct capture c;
    char path[TANDEM_CTL_URL_MAX];
    char id[400];
    (void)state;
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(
        tandem_ctl_item_path(&c.ctx, "/v1/jobs", "ID", "a/b c", "/hold", path, sizeof path), 0);
    assert_string_equal(path, "/v1/jobs/a%2Fb%20c/hold");
    assert_int_equal(tandem_ctl_item_path(&c.ctx, "/v1/sites", "SITE", "", "", path, sizeof path),
                     TANDEM_CTL_EUSAGE);
    assert_string_equal(c.ctx.errmsg, "test: SITE must be 1 to 128 bytes");
    memset(id, '/', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    assert_int_equal(tandem_ctl_item_path(&c.ctx, "/v1/jobs", "ID", id, "", path, sizeof path),
                     TANDEM_CTL_EUSAGE);
    capture_close(&c);
}

static void test_fail_keeps_one_line(void **state)
{
    struct capture c;
    (void)state;
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_fail(&c.ctx, TANDEM_CTL_EREFUSED, "bad\nanswer\r%d", 7),
                     TANDEM_CTL_EREFUSED);
    assert_string_equal(c.ctx.errmsg, "test: bad answer 7");
    capture_close(&c);
}

static int answer_printed; /* times answer_print ran */

static int answer_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *answer)
{
    (void)args;
    answer_printed++;
    fprintf(ctx->out, "n=%" JSON_INTEGER_FORMAT "\n",
            json_integer_value(json_object_get(answer, "n")));
    return TANDEM_CTL_OK;
}

static void test_answer_prints_json_or_through_printer(void **state)
{
    struct capture c;
    (void)state;
    answer_printed = 0;
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(
        tandem_ctl_answer(&c.ctx, &c.args, TANDEM_CTL_OK, json_pack("{s:i}", "n", 3), answer_print),
        TANDEM_CTL_OK);
    assert_string_equal(capture_close(&c), "n=3\n");
    capture_open(&c, TANDEM_CTL_OUTPUT_JSON);
    assert_int_equal(
        tandem_ctl_answer(&c.ctx, &c.args, TANDEM_CTL_OK, json_pack("{s:i}", "n", 4), answer_print),
        TANDEM_CTL_OK);
    assert_string_equal(capture_close(&c), "{\n  \"n\": 4\n}\n");
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_answer(&c.ctx, &c.args, TANDEM_CTL_EUNREACHABLE,
                                       json_pack("{s:i}", "n", 5), answer_print),
                     TANDEM_CTL_EUNREACHABLE);
    assert_string_equal(capture_close(&c), "");
    assert_int_equal(answer_printed, 1);
}

static void test_post_answer_refuses_unpacked_body(void **state)
{
    struct capture c;
    (void)state;
    answer_printed = 0;
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    /* json_pack refuses text that is not UTF-8: the body arrives as NULL, nothing is sent. */
    json_t *body = json_pack("{s:s}", "site", "\xff");
    assert_null(body);
    assert_int_equal(
        tandem_ctl_post_answer(&c.ctx, &c.args, TANDEM_CTL_OK, "/v1/x", body, answer_print),
        TANDEM_CTL_EUSAGE);
    assert_string_equal(c.ctx.errmsg, "test: arguments must be UTF-8");
    /* A failed build is passed through and its body freed. */
    assert_int_equal(tandem_ctl_post_answer(&c.ctx, &c.args, TANDEM_CTL_EUSAGE, "/v1/x",
                                            json_object(), answer_print),
                     TANDEM_CTL_EUSAGE);
    assert_string_equal(capture_close(&c), "");
    assert_int_equal(answer_printed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_round_trips_every_byte),
        cmocka_unit_test(test_base64_refuses_malformed_text),
        cmocka_unit_test(test_percent_encode_and_escape),
        cmocka_unit_test(test_query_append),
        cmocka_unit_test(test_limit_flag),
        cmocka_unit_test(test_item_path),
        cmocka_unit_test(test_fail_keeps_one_line),
        cmocka_unit_test(test_answer_prints_json_or_through_printer),
        cmocka_unit_test(test_post_answer_refuses_unpacked_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
