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
    static const int codes[] = {
#define TEST_ERROR_CODE(name, message) TANDEM_##name,
        TANDEM_ERRORS(TEST_ERROR_CODE)
#undef TEST_ERROR_CODE
    };
    assert_int_equal(sizeof codes / sizeof codes[0], TANDEM_ERROR_COUNT);
    for (size_t i = 0; i < TANDEM_ERROR_COUNT; i++) {
        int code = codes[i];
        /* Clear of errno values, libraft's codes and the negative LMDB and libuv codes. */
        assert_true(code > TANDEM_ERROR_BASE && TANDEM_ERROR_KNOWN(code));
        assert_false(TANDEM_ERROR_KNOWN(ENOMEM) || TANDEM_ERROR_KNOWN(-code));
        const char *message = tandem_strerror(code);
        const char *name = tandem_error_name(code);
        assert_non_null(message);
        assert_true(message[0] != '\0');
        assert_string_not_equal(message, "unknown error");
        assert_true(strncmp(name, "TANDEM_", 7) == 0 && name[7] != '\0');
        for (size_t other = 0; other < i; other++) {
            assert_string_not_equal(name, tandem_error_name(codes[other]));
        }
    }
    assert_int_equal(TANDEM_OK, 0);
    assert_string_equal(tandem_error_name(TANDEM_OK), "TANDEM_OK");
    assert_string_equal(tandem_error_name(TANDEM_STORE_FULL), "TANDEM_STORE_FULL");
    assert_string_equal(tandem_strerror(-1), "unknown error");
    assert_string_equal(tandem_strerror(TANDEM_OK), "ok");
    assert_string_equal(tandem_strerror(TANDEM_ERROR_END), "unknown error");
    assert_string_equal(tandem_error_name(TANDEM_ERROR_BASE), "TANDEM_UNKNOWN");
    assert_string_equal(tandem_strerror(E2BIG), "unknown error");
}

typedef int (*translate_fn)(int foreign, char *errmsg, const char *what);

/* One foreign code, the tandem code it must become, and the foreign library's text for it. */
struct translation {
    int foreign, tandem;
};

/* Checks every case of a translator: the code, and errmsg reading "what: <foreign text>". */
static void assert_translations(translate_fn translate, const char *(*foreign_text)(int),
                                const struct translation *cases, size_t n)
{
    char errmsg[TANDEM_ERRMSG_SIZE] = "untouched";
    assert_int_equal(translate(0, errmsg, "op"), TANDEM_OK);
    assert_string_equal(errmsg, "untouched"); /* success writes nothing */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(translate(cases[i].foreign, errmsg, "op"), cases[i].tandem);
        assert_true(strncmp(errmsg, "op: ", 4) == 0);
        assert_string_equal(errmsg + 4, foreign_text(cases[i].foreign));
    }
}

static const char *errno_text(int errno_value)
{
    return strerror(errno_value);
}

static const char *mdb_text(int mdb_rc)
{
    return mdb_strerror(mdb_rc);
}

static void test_from_mdb(void **state)
{
    (void)state;
    static const struct translation cases[] = {
        {MDB_NOTFOUND, TANDEM_NOTFOUND},
        {MDB_KEYEXIST, TANDEM_EXISTS},
        {MDB_MAP_FULL, TANDEM_STORE_FULL},
        {MDB_READERS_FULL, TANDEM_STORE_FULL},
        {MDB_CORRUPTED, TANDEM_CORRUPT},
        {MDB_VERSION_MISMATCH, TANDEM_CORRUPT},
        {ENOMEM, TANDEM_NOMEM},
        {MDB_BAD_TXN, TANDEM_STORE},
        {EACCES, TANDEM_STORE},
    };
    assert_translations(tandem_error_from_mdb, mdb_text, cases, sizeof cases / sizeof cases[0]);
}

static void test_from_uv(void **state)
{
    (void)state;
    static const struct translation cases[] = {
        {UV_ENOMEM, TANDEM_NOMEM}, {UV_EINVAL, TANDEM_INVALID}, {UV_ETIMEDOUT, TANDEM_TIMEOUT},
        {UV_EMFILE, TANDEM_LIMIT}, {UV_EIO, TANDEM_IO},         {UV_ECONNREFUSED, TANDEM_NET},
    };
    char errmsg[TANDEM_ERRMSG_SIZE] = "untouched";
    assert_int_equal(tandem_error_from_uv(5, errmsg, "write"), TANDEM_OK); /* a byte count */
    assert_string_equal(errmsg, "untouched");
    assert_translations(tandem_error_from_uv, uv_strerror, cases, sizeof cases / sizeof cases[0]);
}

static void test_from_errno(void **state)
{
    (void)state;
    static const struct translation cases[] = {
        {ENOMEM, TANDEM_NOMEM},  {EINVAL, TANDEM_INVALID}, {ENOENT, TANDEM_NOTFOUND},
        {EEXIST, TANDEM_EXISTS}, {ENOSPC, TANDEM_LIMIT},   {EACCES, TANDEM_IO},
    };
    assert_translations(tandem_error_from_errno, errno_text, cases, sizeof cases / sizeof cases[0]);
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
