/* Unit tests for consensus/aio_destroy.h: once the destroyer runs, io_destroy through syscall()
 * returns at once and the context is destroyed by its thread; stopped, io_destroy is made where
 * it is called; every other system call goes on to libc's unchanged. */
#include <errno.h>
#include <linux/aio_abi.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "consensus/aio_destroy.h"
#include "storage/error.h"

static aio_context_t new_context(void)
{
    aio_context_t ctx = 0;
    assert_int_equal(syscall(SYS_io_setup, 8, &ctx), 0);
    assert_true(ctx != 0);
    return ctx;
}

/* Whether ctx is still a context: io_getevents on a destroyed one fails with EINVAL. */
static bool context_alive(aio_context_t ctx)
{
    struct io_event event;
    struct timespec none = {0, 0};
    long rv = syscall(SYS_io_getevents, ctx, 0, 1, &event, &none);
    assert_true(rv == 0 || (rv == -1 && errno == EINVAL));
    return rv == 0;
}

static void wait_destroyed(uint64_t count)
{
    struct tandem_aio_destroy_stats s;
    for (int i = 0; i < 5000; i++) { /* 5 s at most */
        tandem_aio_destroy_stats_read(&s);
        if (s.destroyed >= count) {
            return;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    fail_msg("the destroyer destroyed %llu of %llu contexts", (unsigned long long)s.destroyed,
             (unsigned long long)count);
}

static void test_running_destroyer_takes_io_destroy(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_aio_destroy_stats before, after;
    tandem_aio_destroy_stats_read(&before);
    assert_int_equal(tandem_aio_destroyer_start(errmsg), 0);
    assert_int_equal(tandem_aio_destroyer_start(errmsg), 0); /* again: nothing */
    aio_context_t ctx[3];
    for (int i = 0; i < 3; i++) {
        ctx[i] = new_context();
        assert_true(context_alive(ctx[i]));
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(syscall(SYS_io_destroy, ctx[i]), 0); /* handed over */
    }
    tandem_aio_destroy_stats_read(&after);
    assert_int_equal(after.deferred, before.deferred + 3);
    assert_int_equal(after.synchronous, before.synchronous);
    wait_destroyed(before.destroyed + 3);
    for (int i = 0; i < 3; i++) {
        assert_false(context_alive(ctx[i])); /* really destroyed */
    }
    /* What is queued at the stop is destroyed before it returns. */
    aio_context_t last = new_context();
    assert_int_equal(syscall(SYS_io_destroy, last), 0);
    tandem_aio_destroyer_stop();
    assert_false(context_alive(last));
    tandem_aio_destroy_stats_read(&after);
    assert_int_equal(after.destroyed, before.destroyed + 4);
    assert_int_equal(after.failed, before.failed);
}

static void test_stopped_destroyer_leaves_io_destroy_where_it_is(void **state)
{
    (void)state;
    struct tandem_aio_destroy_stats before, after;
    tandem_aio_destroyer_stop(); /* not running: nothing */
    tandem_aio_destroy_stats_read(&before);
    aio_context_t ctx = new_context();
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
    assert_false(context_alive(ctx)); /* destroyed before the call returned */
    /* The kernel's answer comes back as it is: no such context. */
    errno = 0;
    assert_int_equal(syscall(SYS_io_destroy, ctx), -1);
    assert_int_equal(errno, EINVAL);
    tandem_aio_destroy_stats_read(&after);
    assert_int_equal(after.synchronous, before.synchronous + 2);
    assert_int_equal(after.deferred, before.deferred);
}

/* A context the kernel does not know, handed over, is counted as failed, not lost. */
static void test_a_refused_destroy_is_counted(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_aio_destroy_stats before, after;
    tandem_aio_destroy_stats_read(&before);
    assert_int_equal(tandem_aio_destroyer_start(errmsg), 0);
    aio_context_t ctx = new_context();
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0); /* twice: the second one is refused */
    tandem_aio_destroyer_stop();
    tandem_aio_destroy_stats_read(&after);
    assert_int_equal(after.destroyed, before.destroyed + 2);
    assert_int_equal(after.failed, before.failed + 1);
}

static void test_other_calls_go_on_to_libc(void **state)
{
    (void)state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_aio_destroyer_start(errmsg), 0);
    assert_int_equal(syscall(SYS_getpid), getpid());
    assert_int_equal(syscall(SYS_gettid), gettid());
    /* Six arguments, results and errno as libc gives them. */
    char buf[4] = "abc";
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(syscall(SYS_write, fds[1], buf, 3), 3);
    char got[4] = {0};
    assert_int_equal(syscall(SYS_pread64, fds[0], got, 3, 0, 0, 0), -1);
    assert_int_equal(errno, ESPIPE);
    assert_int_equal(syscall(SYS_read, fds[0], got, 3), 3);
    assert_string_equal(got, "abc");
    close(fds[0]);
    close(fds[1]);
    errno = 0;
    assert_int_equal(syscall(SYS_close, -1), -1);
    assert_int_equal(errno, EBADF);
    tandem_aio_destroyer_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_destroyer_takes_io_destroy),
        cmocka_unit_test(test_stopped_destroyer_leaves_io_destroy_where_it_is),
        cmocka_unit_test(test_a_refused_destroy_is_counted),
        cmocka_unit_test(test_other_calls_go_on_to_libc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
