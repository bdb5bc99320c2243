/* Unit tests of personal-data sealing and the key_file keyring (replication/identity/pdata.h):
 * round trip, tampering refused, key ids, rotation-ready rings, the file's permission rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "replication/identity/pdata.h"
#include "storage/error.h"

#define KEY1  "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
#define KEY2  "2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n"
#define CLEAR "123456789012"

static void ring_of(struct tandem_keyring *ring, const char *text)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_keyring_parse(ring, text, strlen(text), errmsg), TANDEM_OK);
}

static size_t seal(const struct tandem_keyring *ring, const char *id, uint8_t *out)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    size_t len = 0;
    assert_int_equal(tandem_pdata_seal(ring, id, "individual_number", (const uint8_t *)CLEAR,
                                       strlen(CLEAR), out, &len, errmsg),
                     TANDEM_OK);
    assert_int_equal(len, strlen(CLEAR) + TANDEM_PDATA_OVERHEAD);
    return len;
}

static int open_value(const struct tandem_keyring *ring, const char *id, const char *field,
                      const uint8_t *sealed, size_t len, char *clear)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    size_t clear_len = 0;
    int rv = tandem_pdata_open(ring, id, field, sealed, len, (uint8_t *)clear, &clear_len, errmsg);
    if (rv == TANDEM_OK) {
        clear[clear_len] = '\0';
    } else {
        assert_null(strstr(errmsg, CLEAR)); /* an error never holds the value */
    }
    return rv;
}

static void test_seal_round_trip_fresh_nonce_no_clear_bytes(void **state)
{
    (void)state;
    struct tandem_keyring ring;
    uint8_t a[128], b[128];
    char clear[TANDEM_PDATA_CLEAR_MAX + 1];
    uint32_t key_id = 0;
    ring_of(&ring, KEY1 KEY2);
    assert_int_equal(tandem_keyring_current(&ring), 2);
    size_t len = seal(&ring, "J-1", a);
    seal(&ring, "J-1", b);
    assert_true(tandem_pdata_is_sealed(a, len, &key_id));
    assert_int_equal(key_id, 2);
    assert_memory_not_equal(a + 5, b + 5, TANDEM_PDATA_NONCE); /* a fresh nonce per value */
    assert_null(memmem(a, len, CLEAR, strlen(CLEAR)));
    assert_int_equal(open_value(&ring, "J-1", "individual_number", a, len, clear), TANDEM_OK);
    assert_string_equal(clear, CLEAR);
    tandem_keyring_clear(&ring);
}

static void test_tampering_is_refused(void **state)
{
    (void)state;
    struct tandem_keyring ring, other;
    uint8_t sealed[128], bad[128];
    char clear[TANDEM_PDATA_CLEAR_MAX + 1];
    ring_of(&ring, KEY1 KEY2);
    size_t len = seal(&ring, "J-1", sealed);
    /* every byte: version, key id, nonce, ciphertext, tag */
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, sealed, len);
        bad[i] ^= 0x01;
        assert_int_not_equal(open_value(&ring, "J-1", "individual_number", bad, len, clear),
                             TANDEM_OK);
    }
    /* another record or field (the associated data) */
    assert_int_equal(open_value(&ring, "J-2", "individual_number", sealed, len, clear),
                     TANDEM_CRYPTO);
    assert_int_equal(open_value(&ring, "J-1", "other_field", sealed, len, clear), TANDEM_CRYPTO);
    /* a truncated value */
    assert_int_not_equal(open_value(&ring, "J-1", "individual_number", sealed, len - 1, clear),
                         TANDEM_OK);
    /* key id 2 is not in a ring holding only key 1; key 2 of another ring does not verify */
    ring_of(&other, KEY1);
    assert_int_equal(open_value(&other, "J-1", "individual_number", sealed, len, clear),
                     TANDEM_NOTFOUND);
    ring_of(&other, "2 0000000000000000000000000000000000000000000000000000000000000000\n");
    assert_int_equal(open_value(&other, "J-1", "individual_number", sealed, len, clear),
                     TANDEM_CRYPTO);
}

static void test_an_older_key_still_opens(void **state)
{
    (void)state;
    struct tandem_keyring old_ring, new_ring;
    uint8_t sealed[128];
    char clear[TANDEM_PDATA_CLEAR_MAX + 1];
    uint32_t key_id = 0;
    ring_of(&old_ring, KEY1);
    size_t len = seal(&old_ring, "J-9", sealed);
    ring_of(&new_ring, KEY2 KEY1); /* order does not matter: the highest id is current */
    assert_int_equal(tandem_keyring_current(&new_ring), 2);
    assert_true(tandem_pdata_is_sealed(sealed, len, &key_id));
    assert_int_equal(key_id, 1);
    assert_int_equal(open_value(&new_ring, "J-9", "individual_number", sealed, len, clear),
                     TANDEM_OK);
    assert_string_equal(clear, CLEAR);
}

static void test_keyring_parsing(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "# only a comment\n",
        "0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e\n",
        "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00\n",
        "1 zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "x 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        KEY1 KEY1,
        "4294967296 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    };
    struct tandem_keyring ring;
    char errmsg[TANDEM_ERRMSG_SIZE];
    ring_of(&ring, "# keys\n\n" KEY1 "\r\n");
    assert_int_equal(ring.n_keys, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ring_of(&ring, KEY2);
        assert_int_not_equal(tandem_keyring_parse(&ring, bad[i], strlen(bad[i]), errmsg),
                             TANDEM_OK);
        assert_null(strstr(errmsg, "0102030405"));          /* no key bytes in the message */
        assert_int_equal(tandem_keyring_current(&ring), 2); /* a refused file changes nothing */
    }
}

static void write_key_file(const char *path, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(KEY1, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_key_file_permissions(void **state)
{
    (void)state;
    char dir[] = "/tmp/tandem-pdata-XXXXXX", path[64];
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_keyring ring;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/data.key", dir);
    assert_int_not_equal(tandem_keyring_load(&ring, path, errmsg), TANDEM_OK); /* missing */
    write_key_file(path, 0600);
    assert_int_equal(tandem_keyring_load(&ring, path, errmsg), TANDEM_OK);
    write_key_file(path, 0400);
    assert_int_equal(tandem_keyring_load(&ring, path, errmsg), TANDEM_OK);
    static const mode_t refused[] = {0640, 0644, 0604, 0700, 0660};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        write_key_file(path, 0600);
        assert_int_equal(chmod(path, refused[i]), 0);
        assert_int_equal(tandem_keyring_load(&ring, path, errmsg), TANDEM_CONFIG);
        assert_non_null(strstr(errmsg, "0600 or 0400"));
        assert_null(strchr(errmsg, '\n'));
    }
    assert_int_equal(tandem_keyring_load(&ring, dir, errmsg), TANDEM_CONFIG); /* a directory */
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_round_trip_fresh_nonce_no_clear_bytes),
        cmocka_unit_test(test_tampering_is_refused),
        cmocka_unit_test(test_an_older_key_still_opens),
        cmocka_unit_test(test_keyring_parsing),
        cmocka_unit_test(test_key_file_permissions),
    };
    return cmocka_run_group_tests_name("personal-data sealing", tests, NULL, NULL);
}
