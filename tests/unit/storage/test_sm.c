/* Unit tests for the generic state machine: allowed moves, refused moves, invariants and
 * finishing, the aborting cases checked in a forked child. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/sm.h"

/* A door: closed <-> open, closed -> locked -> closed; broken is final and reachable from all. */
enum door { DOOR_CLOSED, DOOR_OPEN, DOOR_LOCKED, DOOR_BROKEN, DOOR_COUNT };

static const struct tandem_sm_conf door_conf[DOOR_COUNT] = {
    [DOOR_CLOSED] = {"closed", TANDEM_SM_INITIAL | TANDEM_SM_FINAL,
                     TANDEM_SM_BIT(DOOR_OPEN) | TANDEM_SM_BIT(DOOR_LOCKED) |
                         TANDEM_SM_BIT(DOOR_BROKEN)},
    [DOOR_OPEN] = {"open", 0, TANDEM_SM_BIT(DOOR_CLOSED) | TANDEM_SM_BIT(DOOR_BROKEN)},
    [DOOR_LOCKED] = {"locked", 0, TANDEM_SM_BIT(DOOR_CLOSED) | TANDEM_SM_BIT(DOOR_BROKEN)},
    [DOOR_BROKEN] = {"broken", TANDEM_SM_FINAL, 0},
};

/* The object the machine drives: a key count that must be 0 unless locked. */
struct door_object {
    int keys_in_lock;
    int invariant_calls;
    int last_prev;
};

static bool door_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    struct door_object *d = data;
    d->invariant_calls++;
    d->last_prev = prev;
    return tandem_sm_state(sm) == DOOR_LOCKED ? d->keys_in_lock == 1 : d->keys_in_lock == 0;
}

/* Runs body in a child and asserts it died of SIGABRT (a failed tandem_assert). */
static void assert_aborts(void (*body)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child's assertion text goes to stderr and its abort would dump core: keep the
         * test log readable and the build directory clean. */
        struct rlimit no_core = {0, 0};
        (void)setrlimit(RLIMIT_CORE, &no_core);
        if (freopen("/dev/null", "w", stderr) == NULL) {
            _exit(2);
        }
        body();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_allowed_moves_and_invariant(void **state)
{
    (void)state;
    struct door_object d = {0};
    struct tandem_sm sm;
    tandem_sm_init(&sm, "door", door_conf, DOOR_COUNT, DOOR_CLOSED, door_invariant, &d);
    assert_int_equal(d.invariant_calls, 1);
    assert_int_equal(d.last_prev, -1);
    assert_true(tandem_sm_allowed(&sm, DOOR_OPEN));
    assert_false(tandem_sm_allowed(&sm, DOOR_CLOSED));
    assert_false(tandem_sm_allowed(&sm, DOOR_COUNT));
    assert_false(tandem_sm_allowed(&sm, -1));
    tandem_sm_move(&sm, DOOR_OPEN);
    tandem_sm_move(&sm, DOOR_CLOSED);
    d.keys_in_lock = 1;
    tandem_sm_move(&sm, DOOR_LOCKED);
    assert_int_equal(d.last_prev, DOOR_CLOSED);
    d.keys_in_lock = 0;
    tandem_sm_move(&sm, DOOR_CLOSED);
    assert_int_equal(sm.moves, 4);
    assert_int_equal(d.invariant_calls, 5);
    assert_string_equal(tandem_sm_state_name(&sm, tandem_sm_state(&sm)), "closed");
    assert_string_equal(tandem_sm_state_name(&sm, DOOR_COUNT), "?");
    tandem_sm_fini(&sm);
}

static void test_no_invariant_callback(void **state)
{
    (void)state;
    struct tandem_sm sm;
    tandem_sm_init(&sm, "door", door_conf, DOOR_COUNT, DOOR_CLOSED, NULL, NULL);
    tandem_sm_move(&sm, DOOR_BROKEN);
    assert_false(tandem_sm_allowed(&sm, DOOR_CLOSED));
    tandem_sm_fini(&sm);
}

static void move_not_in_table(void)
{
    struct tandem_sm sm;
    tandem_sm_init(&sm, "door", door_conf, DOOR_COUNT, DOOR_CLOSED, NULL, NULL);
    tandem_sm_move(&sm, DOOR_OPEN);
    tandem_sm_move(&sm, DOOR_LOCKED); /* open -> locked is not in the table */
}

static void move_breaking_invariant(void)
{
    struct door_object d = {0};
    struct tandem_sm sm;
    tandem_sm_init(&sm, "door", door_conf, DOOR_COUNT, DOOR_CLOSED, door_invariant, &d);
    tandem_sm_move(&sm, DOOR_LOCKED); /* locked without a key in the lock */
}

static void fini_in_non_final_state(void)
{
    struct tandem_sm sm;
    tandem_sm_init(&sm, "door", door_conf, DOOR_COUNT, DOOR_CLOSED, NULL, NULL);
    tandem_sm_move(&sm, DOOR_OPEN);
    tandem_sm_fini(&sm);
}

static void init_in_non_initial_state(void)
{
    struct tandem_sm sm;
    tandem_sm_init(&sm, "door", door_conf, DOOR_COUNT, DOOR_OPEN, NULL, NULL);
}

static void init_with_mask_outside_table(void)
{
    static const struct tandem_sm_conf bad[2] = {
        {"a", TANDEM_SM_INITIAL, TANDEM_SM_BIT(1) | TANDEM_SM_BIT(2)},
        {"b", TANDEM_SM_FINAL, 0},
    };
    struct tandem_sm sm;
    tandem_sm_init(&sm, "bad", bad, 2, 0, NULL, NULL);
}

static void init_with_unnamed_state(void)
{
    static const struct tandem_sm_conf bad[2] = {
        {"a", TANDEM_SM_INITIAL, TANDEM_SM_BIT(1)},
        {NULL, TANDEM_SM_FINAL, 0},
    };
    struct tandem_sm sm;
    tandem_sm_init(&sm, "bad", bad, 2, 0, NULL, NULL);
}

static void test_violations_abort(void **state)
{
    (void)state;
    assert_aborts(move_not_in_table);
    assert_aborts(move_breaking_invariant);
    assert_aborts(fini_in_non_final_state);
    assert_aborts(init_in_non_initial_state);
    assert_aborts(init_with_mask_outside_table);
    assert_aborts(init_with_unnamed_state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_moves_and_invariant),
        cmocka_unit_test(test_no_invariant_callback),
        cmocka_unit_test(test_violations_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
