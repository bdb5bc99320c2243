/* Unit tests for the error table and the translators of LMDB, libuv, errno and OpenSSL codes:
 * every code named and described, representative foreign codes mapped, no errmsg overflow. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <uv.h>

#include "storage/error.h"

#define CANARY      0x5a
#define CANARY_SIZE 32
#define LONG_TEXT   1000 /* far past TANDEM_ERRMSG_SIZE */

/* An errmsg buffer followed by bytes that must survive every write into it. */
struct guarded_errmsg {
    char errmsg[TANDEM_ERRMSG_SIZE];
    unsigned char canary[CANARY_SIZE];
};

static void guarded_init(struct guarded_errmsg *g)
{
    memset(g->errmsg, 'x', sizeof g->errmsg);
    memset(g->canary, CANARY, sizeof g->canary);
}

static void assert_guarded(const struct guarded_errmsg *g)
{
    for (size_t i = 0; i < CANARY_SIZE; i++) {
        assert_int_equal(g->canary[i], CANARY);
    }
    assert_true(memchr(g->errmsg, '\0', sizeof g->errmsg) != NULL);
}

static void long_text(char *out, size_t len, char fill)
{
    memset(out, fill, len);
    out[len] = '\0';
}

static void test_every_code_has_message_and_name(void **state)
{
    (void)state;
    for (int code = 0; code < TANDEM_ERROR_COUNT; code++) {
        const char *message = tandem_strerror(code);
        const char *name = tandem_error_name(code);
        assert_non_null(message);
        assert_true(message[0] != '\0');
        assert_string_not_equal(message, "unknown error");
        assert_true(strncmp(name, "TANDEM_", 7) == 0 && name[7] != '\0');
        for (int other = 0; other < code; other++) {
            assert_string_not_equal(name, tandem_error_name(other));
        }
    }
    assert_int_equal(TANDEM_OK, 0);
    assert_string_equal(tandem_error_name(TANDEM_OK), "TANDEM_OK");
    assert_string_equal(tandem_error_name(TANDEM_STORE_FULL), "TANDEM_STORE_FULL");
    assert_string_equal(tandem_strerror(-1), "unknown error");
    assert_string_equal(tandem_strerror(TANDEM_ERROR_COUNT), "unknown error");
    assert_string_equal(tandem_error_name(TANDEM_ERROR_COUNT), "TANDEM_UNKNOWN");
}

static void test_from_mdb(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "untouched";
    assert_int_equal(tandem_error_from_mdb(MDB_SUCCESS, errmsg, "get"), TANDEM_OK);
    assert_string_equal(errmsg, "untouched");
    assert_int_equal(tandem_error_from_mdb(MDB_NOTFOUND, errmsg, "get"), TANDEM_NOTFOUND);
    assert_true(strncmp(errmsg, "get: ", 5) == 0);
    assert_string_equal(errmsg + 5, mdb_strerror(MDB_NOTFOUND));
    assert_int_equal(tandem_error_from_mdb(MDB_KEYEXIST, errmsg, "put"), TANDEM_EXISTS);
    assert_int_equal(tandem_error_from_mdb(MDB_MAP_FULL, errmsg, "put"), TANDEM_STORE_FULL);
    assert_int_equal(tandem_error_from_mdb(MDB_READERS_FULL, errmsg, "begin"), TANDEM_STORE_FULL);
    assert_int_equal(tandem_error_from_mdb(MDB_CORRUPTED, errmsg, "get"), TANDEM_CORRUPT);
    assert_int_equal(tandem_error_from_mdb(MDB_VERSION_MISMATCH, errmsg, "open"), TANDEM_CORRUPT);
    assert_int_equal(tandem_error_from_mdb(ENOMEM, errmsg, "open"), TANDEM_NOMEM);
    assert_int_equal(tandem_error_from_mdb(MDB_BAD_TXN, errmsg, "commit"), TANDEM_STORE);
    assert_int_equal(tandem_error_from_mdb(EACCES, errmsg, "open"), TANDEM_STORE);
}

static void test_from_uv(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "untouched";
    assert_int_equal(tandem_error_from_uv(0, errmsg, "listen"), TANDEM_OK);
    assert_int_equal(tandem_error_from_uv(5, errmsg, "write"), TANDEM_OK); /* a byte count */
    assert_string_equal(errmsg, "untouched");
    assert_int_equal(tandem_error_from_uv(UV_ENOMEM, errmsg, "read"), TANDEM_NOMEM);
    assert_int_equal(tandem_error_from_uv(UV_EINVAL, errmsg, "bind"), TANDEM_INVALID);
    assert_int_equal(tandem_error_from_uv(UV_ETIMEDOUT, errmsg, "connect"), TANDEM_TIMEOUT);
    assert_int_equal(tandem_error_from_uv(UV_EMFILE, errmsg, "accept"), TANDEM_LIMIT);
    assert_int_equal(tandem_error_from_uv(UV_EIO, errmsg, "fs"), TANDEM_IO);
    assert_int_equal(tandem_error_from_uv(UV_ECONNREFUSED, errmsg, "connect"), TANDEM_NET);
    assert_true(strncmp(errmsg, "connect: ", 9) == 0);
    assert_string_equal(errmsg + 9, uv_strerror(UV_ECONNREFUSED));
}

static void test_from_errno(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "untouched";
    assert_int_equal(tandem_error_from_errno(0, errmsg, "open"), TANDEM_OK);
    assert_string_equal(errmsg, "untouched");
    assert_int_equal(tandem_error_from_errno(ENOMEM, errmsg, "malloc"), TANDEM_NOMEM);
    assert_int_equal(tandem_error_from_errno(EINVAL, errmsg, "open"), TANDEM_INVALID);
    assert_int_equal(tandem_error_from_errno(ENOENT, errmsg, "open"), TANDEM_NOTFOUND);
    assert_int_equal(tandem_error_from_errno(EEXIST, errmsg, "mkdir"), TANDEM_EXISTS);
    assert_int_equal(tandem_error_from_errno(ENOSPC, errmsg, "write"), TANDEM_LIMIT);
    assert_int_equal(tandem_error_from_errno(EACCES, errmsg, "open"), TANDEM_IO);
    assert_true(strncmp(errmsg, "open: ", 6) == 0);
    assert_string_equal(errmsg + 6, strerror(EACCES));
}

static void test_from_ssl(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    ERR_clear_error();
    assert_int_equal(tandem_error_from_ssl(errmsg, "digest"), TANDEM_CRYPTO);
    assert_string_equal(errmsg, "digest: no detail from OpenSSL");
    /* A real failure: a digest context finished before it was initialised. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    assert_non_null(ctx);
    assert_int_not_equal(EVP_DigestFinal_ex(ctx, out, &len), 1);
    EVP_MD_CTX_free(ctx);
    assert_int_equal(tandem_error_from_ssl(errmsg, "final"), TANDEM_CRYPTO);
    assert_true(strncmp(errmsg, "final: ", 7) == 0);
    assert_int_equal(ERR_peek_error(), 0); /* the queue was read and cleared */
}

static void test_errmsg_never_overflows(void **state)
{
    (void)state;
    char what[LONG_TEXT + 1];
    struct guarded_errmsg g;
    long_text(what, LONG_TEXT, 'w');

    guarded_init(&g);
    assert_int_equal(tandem_error_from_mdb(MDB_NOTFOUND, g.errmsg, what), TANDEM_NOTFOUND);
    assert_guarded(&g);
    guarded_init(&g);
    assert_int_equal(tandem_error_from_uv(UV_EIO, g.errmsg, what), TANDEM_IO);
    assert_guarded(&g);
    guarded_init(&g);
    assert_int_equal(tandem_error_from_errno(ENOENT, g.errmsg, what), TANDEM_NOTFOUND);
    assert_guarded(&g);
    guarded_init(&g);
    assert_int_equal(tandem_error_from_ssl(g.errmsg, what), TANDEM_CRYPTO);
    assert_guarded(&g);
    guarded_init(&g);
    assert_int_equal(tandem_error_set(g.errmsg, TANDEM_INVALID, "bad %s", what), TANDEM_INVALID);
    assert_guarded(&g);
    assert_int_equal(strlen(g.errmsg), TANDEM_ERRMSG_SIZE - 1);
    /* Wrapping a full message with a long context still fits, and keeps the context first. */
    tandem_error_wrap(g.errmsg, "context %s", what);
    assert_guarded(&g);
    assert_true(strncmp(g.errmsg, "context www", 11) == 0);
}

static void test_wrap_and_set(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_error_set(errmsg, TANDEM_NOTFOUND, "key %s", "k1"), TANDEM_NOTFOUND);
    assert_string_equal(errmsg, "key k1");
    tandem_error_wrap(errmsg, "get %d", 7);
    assert_string_equal(errmsg, "get 7: key k1");
    /* An errmsg that was never terminated is cut, not read past. */
    memset(errmsg, 'y', sizeof errmsg);
    tandem_error_wrap(errmsg, "ctx");
    assert_true(strlen(errmsg) < TANDEM_ERRMSG_SIZE);
    assert_true(strncmp(errmsg, "ctx: yyy", 8) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_message_and_name),
        cmocka_unit_test(test_from_mdb),
        cmocka_unit_test(test_from_uv),
        cmocka_unit_test(test_from_errno),
        cmocka_unit_test(test_from_ssl),
        cmocka_unit_test(test_errmsg_never_overflows),
        cmocka_unit_test(test_wrap_and_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
