/* Paced writeback (storage/writeback.h): whole steps are handed to the disk as they fill, the
 * bytes stay what was written, and a descriptor that refuses sync_file_range only loses the
 * pacing. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/writeback.h"

static void test_steps_are_started_as_they_fill(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char dir_path[512];
    snprintf(dir_path, sizeof dir_path, "%s/tandem-writeback-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    int fd = mkstemp(dir_path);
    assert_true(fd >= 0);
    struct tandem_writeback w;
    tandem_writeback_init(&w, fd);
    const size_t chunk = 3u << 20;
    char *buf = malloc(chunk);
    assert_non_null(buf);
    uint64_t written = 0;
    for (unsigned i = 0; i < 7; i++) { /* 21 MiB: two whole steps, 5 MiB left */
        memset(buf, 'a' + (int)i, chunk);
        assert_int_equal(write(fd, buf, chunk), (ssize_t)chunk);
        written += chunk;
        tandem_writeback_note(&w, written);
        assert_true(w.started <= written && written - w.started < TANDEM_WRITEBACK_STEP);
    }
    assert_int_equal(w.started, 2 * TANDEM_WRITEBACK_STEP);
    assert_int_equal(pread(fd, buf, 1, (off_t)(20u << 20)), 1);
    assert_int_equal(buf[0], 'g');
    free(buf);
    assert_int_equal(close(fd), 0);
    assert_int_equal(unlink(dir_path), 0);

    /* A descriptor the kernel refuses (a pipe, or none): still no more than a step behind. */
    tandem_writeback_init(&w, -1);
    tandem_writeback_note(&w, 5 * TANDEM_WRITEBACK_STEP + 1);
    assert_int_equal(w.started, 5 * TANDEM_WRITEBACK_STEP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_are_started_as_they_fill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
