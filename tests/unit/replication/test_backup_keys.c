/* Unit tests for backup_key_file loading (replication/identity/backup_keys.h): key_file's format
 * and permission checks, keys sorted by id with the sealing (highest) one last, none for "". */
#include <fcntl.h>
#include <limits.h>
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

#include "replication/identity/backup_keys.h"

#define KEY_A "1111111111111111111111111111111111111111111111111111111111111111"
#define KEY_B "2222222222222222222222222222222222222222222222222222222222222222"

static void key_file_write(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_keys_sorted_sealing_last(void **state)
{
    char path[] = "/tmp/tandem-backup-keys-XXXXXX";
    struct tandem_backup_key keys[TANDEM_BACKUP_KEYS_MAX];
    unsigned n = 99;
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    key_file_write(path, "# backup keys\n7 " KEY_B "\n3 " KEY_A "\n", 0600);
    assert_int_equal(tandem_backup_keys_load(path, keys, &n, errmsg), TANDEM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(keys[0].id, 3);
    assert_int_equal(keys[1].id, 7); /* the one that seals */
    assert_int_equal(keys[1].key[0], 0x22);
    assert_int_equal(keys[0].key[31], 0x11);
    /* Readable by others: refused, as key_file is, and nothing loaded. */
    key_file_write(path, "1 " KEY_A "\n", 0644);
    assert_int_equal(tandem_backup_keys_load(path, keys, &n, errmsg), TANDEM_CONFIG);
    assert_int_equal(n, 0);
    assert_non_null(strstr(errmsg, "backup_key_file"));
    /* A malformed line. */
    key_file_write(path, "1 not-hex\n", 0600);
    assert_int_not_equal(tandem_backup_keys_load(path, keys, &n, errmsg), TANDEM_OK);
    unlink(path);
}

static void test_no_file_no_keys(void **state)
{
    struct tandem_backup_key keys[TANDEM_BACKUP_KEYS_MAX];
    unsigned n = 5;
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(tandem_backup_keys_load("", keys, &n, errmsg), TANDEM_OK);
    assert_int_equal(n, 0);
    assert_int_not_equal(tandem_backup_keys_load("/nonexistent/keys", keys, &n, errmsg), TANDEM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_sorted_sealing_last),
        cmocka_unit_test(test_no_file_no_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
