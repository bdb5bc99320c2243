/* Unit tests for a backup download's deadlines (node/backup_stream.h): a reader that takes
 * nothing for the timeout is stalled; one that trickles is cut once the file at the slowest
 * allowed rate, after the timeout's grace, is overdue; a reader at that rate or faster is not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node/backup_stream.h"

#define TIMEOUT_MS 30000u
#define SIZE       (256u * 1024u * 1024u) /* 256 MiB: 4096 s at the slowest rate */
#define START_MS   1000u

static void test_stalled_reader(void **state)
{
    (void)state;
    assert_int_equal(
        tandem_backup_stream_due(START_MS + TIMEOUT_MS, START_MS, START_MS, SIZE, TIMEOUT_MS),
        TANDEM_BACKUP_STREAM_ON_TIME);
    assert_int_equal(
        tandem_backup_stream_due(START_MS + TIMEOUT_MS + 1, START_MS, START_MS, SIZE, TIMEOUT_MS),
        TANDEM_BACKUP_STREAM_STALLED);
}

static void test_trickling_reader(void **state)
{
    (void)state;
    uint64_t at_rate_ms = (uint64_t)SIZE * 1000u / TANDEM_BACKUP_STREAM_RATE_MIN;
    uint64_t deadline = START_MS + TIMEOUT_MS + at_rate_ms;
    /* It took a chunk a moment ago each time: never stalled, but the file is overdue. */
    assert_int_equal(tandem_backup_stream_due(deadline, START_MS, deadline - 10, SIZE, TIMEOUT_MS),
                     TANDEM_BACKUP_STREAM_ON_TIME);
    assert_int_equal(
        tandem_backup_stream_due(deadline + 1, START_MS, deadline - 10, SIZE, TIMEOUT_MS),
        TANDEM_BACKUP_STREAM_TOO_SLOW);
    /* A small file: the grace alone. */
    assert_int_equal(tandem_backup_stream_due(START_MS + TIMEOUT_MS + 1000, START_MS,
                                              START_MS + TIMEOUT_MS, 1024, TIMEOUT_MS),
                     TANDEM_BACKUP_STREAM_TOO_SLOW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stalled_reader),
        cmocka_unit_test(test_trickling_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
