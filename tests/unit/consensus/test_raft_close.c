/* Tests of tandem_raft_close's wait for a snapshot in flight: libraft 0.22.1 closed while it
 * installs (or holds an install behind a snapshot being taken) leaks the snapshot, which
 * LeakSanitizer reported at SIGTERM. raft_close is replaced at link time (-Wl,--wrap, see
 * CMakeLists.txt) to record when it is called. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/raft_node.h"

#define RUN_TIMEOUT_MS 5000
#define SHORT_WAIT_MS  50

void __wrap_raft_close(struct raft *r, void (*cb)(struct raft *r));

static unsigned raft_close_calls;

void __wrap_raft_close(struct raft *r, void (*cb)(struct raft *r))
{
    (void)r;
    (void)cb; /* raft_uv and the transport were never started: nothing to close after */
    raft_close_calls++;
}

static struct tandem_raft node; /* never started */
static uv_loop_t loop;

static void closed_cb(struct tandem_raft *n)
{
    (void)n;
}

static int setup(void **state)
{
    (void)state;
    memset(&node, 0, sizeof node);
    raft_close_calls = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    node.loop = &loop;
    node.close_wait_ms = TANDEM_RAFT_CLOSE_WAIT_MS;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    assert_int_equal(uv_loop_close(&loop), 0); /* the wait's timer is closed and freed */
    return 0;
}

/* Runs the loop for ms, or until raft_close was called when until_closed. */
static void run_for(unsigned ms, bool until_closed)
{
    uv_update_time(&loop);
    uint64_t deadline = uv_now(&loop) + ms;
    while (uv_now(&loop) < deadline && !(until_closed && raft_close_calls > 0)) {
        uv_run(&loop, UV_RUN_ONCE);
    }
}

static void test_nothing_in_flight_closes_at_once(void **state)
{
    (void)state;
    tandem_raft_close(&node, closed_cb);
    assert_int_equal(raft_close_calls, 1);
}

static void test_install_in_flight_is_waited_for(void **state)
{
    (void)state;
    node.raft.legacy.snapshot_install = true;
    tandem_raft_close(&node, closed_cb);
    assert_int_equal(raft_close_calls, 0);
    run_for(30, false);
    assert_int_equal(raft_close_calls, 0); /* still installing: not closed under it */
    node.raft.legacy.snapshot_install = false;
    run_for(RUN_TIMEOUT_MS, true);
    assert_int_equal(raft_close_calls, 1);
}

static void test_snapshot_taken_is_waited_for(void **state)
{
    (void)state;
    node.raft.legacy.snapshot_taking = true;
    tandem_raft_close(&node, closed_cb);
    run_for(30, false);
    assert_int_equal(raft_close_calls, 0);
    node.raft.legacy.snapshot_taking = false;
    run_for(RUN_TIMEOUT_MS, true);
    assert_int_equal(raft_close_calls, 1);
}

static void test_wait_is_bounded(void **state)
{
    (void)state;
    node.close_wait_ms = SHORT_WAIT_MS;
    node.raft.legacy.snapshot_install = true; /* never finishes */
    tandem_raft_close(&node, closed_cb);
    run_for(RUN_TIMEOUT_MS, true);
    assert_int_equal(raft_close_calls, 1);
    run_for(30, false);
    assert_int_equal(raft_close_calls, 1); /* once */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_in_flight_closes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_in_flight_is_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_taken_is_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_is_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
