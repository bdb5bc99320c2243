/* Snapshot file references, names and retention (replication/snapshot_file.h). */
#include <ftw.h>
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

#include "replication/snapshot_file.h"

static struct tandem_snapshot_ref sample(uint64_t index)
{
    struct tandem_snapshot_ref ref = {.index = index, .len = 4096};
    for (unsigned i = 0; i < TANDEM_DIGEST_LEN; i++) {
        ref.checksum[i] = (uint8_t)(0xa0 + i + index);
    }
    return ref;
}

static void test_ref_round_trip_and_refusals(void **state)
{
    (void)state;
    uint8_t bytes[TANDEM_SNAPSHOT_REF_LEN];
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_snapshot_ref ref = sample(123456789), back;
    tandem_snapshot_ref_encode(&ref, bytes);
    assert_int_equal(tandem_snapshot_ref_decode(bytes, sizeof bytes, &back, errmsg), 1);
    assert_int_equal(back.index, ref.index);
    assert_int_equal(back.len, ref.len);
    assert_memory_equal(back.checksum, ref.checksum, TANDEM_DIGEST_LEN);

    /* An inline snapshot (another magic) is not a reference. */
    assert_int_equal(tandem_snapshot_ref_decode("TANDEMSS and more", 17, &back, errmsg), 0);
    assert_int_equal(tandem_snapshot_ref_decode("TAN", 3, &back, errmsg), 0);
    /* A reference's magic on anything malformed is refused, not taken for a snapshot. */
    assert_int_equal(tandem_snapshot_ref_decode(bytes, sizeof bytes - 1, &back, errmsg),
                     TANDEM_CORRUPT);
    assert_non_null(strstr(errmsg, "63 bytes"));
    uint8_t bad[TANDEM_SNAPSHOT_REF_LEN];
    memcpy(bad, bytes, sizeof bad);
    bad[8] = 2; /* format */
    assert_int_equal(tandem_snapshot_ref_decode(bad, sizeof bad, &back, errmsg), TANDEM_CORRUPT);
    assert_non_null(strstr(errmsg, "format 2"));
    memcpy(bad, bytes, sizeof bad);
    memset(bad + 24, 0, 8); /* a file of 0 bytes */
    assert_int_equal(tandem_snapshot_ref_decode(bad, sizeof bad, &back, errmsg), TANDEM_CORRUPT);
}

static void test_file_names(void **state)
{
    (void)state;
    char name[TANDEM_SNAPSHOT_FILE_NAME_SIZE];
    struct tandem_snapshot_ref ref = sample(42);
    tandem_snapshot_file_name(&ref, name);
    assert_string_equal(name, "state-00000000000000000042-cacbcccdcecfd0d1.snap");
    assert_true(tandem_snapshot_file_name_ok(name));
    const char *bad[] = {
        "",
        "state-00000000000000000042-cacbcccdcecfd0d1.sna",
        "state-00000000000000000042-cacbcccdcecfd0d1.snap/",
        "state-0000000000000000004x-cacbcccdcecfd0d1.snap",
        "state-00000000000000000042-CACBCCCDCECFD0D1.snap",
        "state-00000000000000000042_cacbcccdcecfd0d1.snap",
        "../ate-00000000000000000042-cacbcccdcecfd0d1.snap",
        "state-00000000000000000042-cacbcccdcecfd0d1.snap.part",
        "state-0000000000000000042-cacbcccdcecfd0d1a.snap",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(tandem_snapshot_file_name_ok(bad[i]));
    }
}

static void touch(const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
}

static bool present(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The newest files by index stay (whatever order they were written in), leftovers go only when
 * asked, and files that are none of ours are never touched. */
static void test_prune_keeps_the_newest(void **state)
{
    (void)state;
    char dir[PATH_MAX], names[4][TANDEM_SNAPSHOT_FILE_NAME_SIZE];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/tandem-snapfiles-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    const uint64_t indexes[4] = {900, 12000, 8, 100000};
    for (unsigned i = 0; i < 4; i++) {
        struct tandem_snapshot_ref ref = sample(indexes[i]);
        tandem_snapshot_file_name(&ref, names[i]);
        touch(dir, names[i]);
    }
    touch(dir, "state-new.tmp");
    touch(dir, "x.snap.part");
    touch(dir, "notes.txt");
    assert_int_equal(tandem_snapshot_files_prune(dir, 2, false), 2);
    assert_false(present(dir, names[0]));
    assert_true(present(dir, names[1]));
    assert_false(present(dir, names[2]));
    assert_true(present(dir, names[3]));
    assert_true(present(dir, "state-new.tmp")); /* a write may be under way */
    assert_int_equal(tandem_snapshot_files_prune(dir, 2, true), 2);
    assert_false(present(dir, "state-new.tmp"));
    assert_false(present(dir, "x.snap.part"));
    assert_true(present(dir, "notes.txt"));
    assert_int_equal(tandem_snapshot_files_prune("/nonexistent-tandem-dir", 2, true), 0);
    assert_int_equal(nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_round_trip_and_refusals),
        cmocka_unit_test(test_file_names),
        cmocka_unit_test(test_prune_keeps_the_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
