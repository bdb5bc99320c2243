/* Background priority for pool work (storage/background.h): a thread lowers itself by the
 * configured increment for one piece of work, clamped to the lowest priority, and takes its
 * priority back at the end when it may (CAP_SYS_NICE or RLIMIT_NICE); without that it stays low
 * and is counted; the thread that configured it (the loop's) keeps its own; 0 turns it off. */
#include <linux/capability.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/background.h"

static int own_nice(void)
{
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

struct probe {
    int start;     /* nice to take before entering (-1: as inherited) */
    bool drop;     /* give up CAP_SYS_NICE (this thread only) and any RLIMIT_NICE first */
    int before;    /* nice when entering */
    bool first;    /* the first enter's answer */
    int during;    /* nice inside the first piece of work */
    int after;     /* nice after its leave */
    bool second;   /* a second piece's enter */
    int after_two; /* nice after the second leave */
};

/* Without CAP_SYS_NICE in this thread's effective set (capabilities are per thread) and with
 * RLIMIT_NICE at 0, a thread may lower its priority but never raise it. */
static void drop_nice_privilege(void)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    assert_int_equal(syscall(SYS_capget, &header, data), 0);
    data[CAP_TO_INDEX(CAP_SYS_NICE)].effective &= ~CAP_TO_MASK(CAP_SYS_NICE);
    assert_int_equal(syscall(SYS_capset, &header, data), 0);
    struct rlimit limit;
    assert_int_equal(getrlimit(RLIMIT_NICE, &limit), 0);
    limit.rlim_cur = 0;
    assert_int_equal(setrlimit(RLIMIT_NICE, &limit), 0);
}

static void *probe_thread(void *arg)
{
    struct probe *p = arg;
    if (p->start >= 0) {
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), p->start);
    }
    if (p->drop) {
        drop_nice_privilege();
    }
    p->before = own_nice();
    p->first = tandem_background_enter();
    p->during = own_nice();
    tandem_background_leave();
    p->after = own_nice();
    p->second = tandem_background_enter();
    tandem_background_leave();
    p->after_two = own_nice();
    return NULL;
}

static struct probe probe_run(int start, bool drop)
{
    struct probe p = {.start = start, .drop = drop};
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NICE, &saved), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, probe_thread, &p), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(setrlimit(RLIMIT_NICE, &saved), 0); /* the soft limit back under the hard */
    return p;
}

/* Whether this process may take a lowered thread back to nice: as root (CAP_SYS_NICE), or with
 * an RLIMIT_NICE that allows it. */
static bool may_raise_to(int nice)
{
    struct rlimit limit;
    assert_int_equal(getrlimit(RLIMIT_NICE, &limit), 0);
    return geteuid() == 0 || limit.rlim_cur == RLIM_INFINITY || 20 - (int)limit.rlim_cur <= nice;
}

static void test_low_for_the_work_then_back(void **state)
{
    (void)state;
    int loop_nice = own_nice();
    tandem_background_set_nice(5);
    assert_int_equal(tandem_background_nice(), 5);
    uint64_t lowered = tandem_background_works_lowered();
    uint64_t stuck = tandem_background_threads_stuck();
    /* From nice 10 (or the runner's, when lower already), so that there is room to go down. */
    int start = loop_nice > 10 ? loop_nice : 10;
    struct probe p = probe_run(start, false);
    int want = p.before + 5 > 19 ? 19 : p.before + 5;
    assert_true(p.first == (want != p.before));
    assert_int_equal(p.during, want);
    if (want == p.before) {
        assert_int_equal(p.after_two, want); /* the runner's own is the lowest: nothing to do */
    } else if (may_raise_to(p.before)) {
        assert_int_equal(p.after, p.before); /* back between pieces of work */
        assert_true(p.second);               /* and low again for the next */
        assert_int_equal(p.after_two, p.before);
        assert_int_equal(tandem_background_works_lowered(), lowered + 2);
        assert_int_equal(tandem_background_threads_stuck(), stuck);
    } else {
        assert_int_equal(p.after, want); /* stays low, counted once */
        assert_false(p.second);
        assert_int_equal(tandem_background_threads_stuck(), stuck + 1);
    }
    assert_int_equal(own_nice(), loop_nice); /* the configuring thread is not touched */
    assert_int_equal(tandem_background_failures(), 0);
}

/* Without the privilege to take it back, a thread stays low after its first piece of work (as
 * every pool thread did before), and later pieces leave it there. */
static void test_without_privilege_a_thread_stays_low(void **state)
{
    (void)state;
    tandem_background_set_nice(5);
    uint64_t stuck = tandem_background_threads_stuck();
    int start = own_nice() > 10 ? own_nice() : 10;
    struct probe p = probe_run(start, true);
    int want = p.before + 5 > 19 ? 19 : p.before + 5;
    assert_int_equal(p.during, want);
    assert_int_equal(p.after, want);
    assert_int_equal(p.after_two, want);
    if (want != p.before) {
        assert_true(p.first);
        assert_false(p.second);
        assert_int_equal(tandem_background_threads_stuck(), stuck + 1);
    }
}

/* Already at the bottom: clamped to 19, never past it, and nothing to take back. */
static void test_clamped_at_the_lowest(void **state)
{
    (void)state;
    tandem_background_set_nice(5);
    int start = own_nice() > 17 ? own_nice() : 17;
    struct probe p = probe_run(start, false);
    assert_int_equal(p.before, start);
    assert_int_equal(p.during, 19);
    assert_int_equal(tandem_background_failures(), 0);
    p = probe_run(19, false);
    assert_false(p.first);
    assert_int_equal(p.during, 19);
}

static void test_zero_leaves_the_thread_alone(void **state)
{
    (void)state;
    tandem_background_set_nice(0);
    uint64_t lowered = tandem_background_works_lowered();
    struct probe p = probe_run(-1, false);
    assert_false(p.first);
    assert_int_equal(p.during, p.before);
    assert_int_equal(p.after, p.before);
    assert_int_equal(tandem_background_works_lowered(), lowered);
}

static void test_the_increment_is_clamped(void **state)
{
    (void)state;
    tandem_background_set_nice(40);
    assert_int_equal(tandem_background_nice(), TANDEM_BACKGROUND_NICE_MAX);
    tandem_background_set_nice(-3);
    assert_int_equal(tandem_background_nice(), 0);
    tandem_background_set_nice(TANDEM_BACKGROUND_NICE_DEFAULT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_low_for_the_work_then_back),
        cmocka_unit_test(test_without_privilege_a_thread_stays_low),
        cmocka_unit_test(test_clamped_at_the_lowest),
        cmocka_unit_test(test_zero_leaves_the_thread_alone),
        cmocka_unit_test(test_the_increment_is_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
