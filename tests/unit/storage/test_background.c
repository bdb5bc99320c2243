/* Background priority for pool threads (storage/background.h): a thread lowers itself once, by
 * the configured increment, clamped to the lowest priority; the thread that configured it (the
 * loop's) keeps its own; 0 turns it off. */
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
    int start;   /* nice to take before entering (-1: as inherited) */
    int before;  /* nice when entering */
    bool first;  /* the first enter's answer */
    bool second; /* the second enter's answer */
    int after;   /* nice after both */
};

static void *probe_thread(void *arg)
{
    struct probe *p = arg;
    if (p->start >= 0) {
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), p->start);
    }
    p->before = own_nice();
    p->first = tandem_background_enter();
    p->second = tandem_background_enter();
    p->after = own_nice();
    return NULL;
}

static struct probe probe_run(int start)
{
    struct probe p = {.start = start};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, probe_thread, &p), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    return p;
}

static void test_a_pool_thread_lowers_itself_once(void **state)
{
    (void)state;
    int loop_nice = own_nice();
    tandem_background_set_nice(5);
    assert_int_equal(tandem_background_nice(), 5);
    uint64_t lowered = tandem_background_threads_lowered();
    struct probe p = probe_run(-1);
    assert_true(p.first);
    assert_false(p.second); /* once per thread */
    int want = p.before + 5 > 19 ? 19 : p.before + 5;
    assert_int_equal(p.after, want);
    assert_int_equal(tandem_background_threads_lowered(), lowered + 1);
    assert_int_equal(own_nice(), loop_nice); /* the configuring thread is not touched */

    /* Already low: clamped to 19, never past it (17, or lower when the test itself runs lower:
     * without privilege a thread cannot raise its priority back). */
    int start = loop_nice > 17 ? loop_nice : 17;
    p = probe_run(start);
    assert_int_equal(p.before, start);
    assert_true(p.first);
    assert_int_equal(p.after, 19);
    assert_int_equal(tandem_background_failures(), 0);
}

static void test_zero_leaves_the_thread_alone(void **state)
{
    (void)state;
    tandem_background_set_nice(0);
    uint64_t lowered = tandem_background_threads_lowered();
    struct probe p = probe_run(-1);
    assert_false(p.first);
    assert_int_equal(p.after, p.before);
    assert_int_equal(tandem_background_threads_lowered(), lowered);
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
        cmocka_unit_test(test_a_pool_thread_lowers_itself_once),
        cmocka_unit_test(test_zero_leaves_the_thread_alone),
        cmocka_unit_test(test_the_increment_is_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
