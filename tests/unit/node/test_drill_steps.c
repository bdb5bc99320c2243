/* Tests of the BCP step tables: every allowed and every refused move of the drill and of member
 * rejoin, the sequences they take, and that a refused move aborts the process. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/bcp/drill.h"
#include "node/bcp/rejoin.h"

#define D(step) TANDEM_DRILL_##step
#define J(step) TANDEM_REJOIN_##step

/* Every move the drill may make, written out independently of drill.c's table. */
static const int drill_moves[][2] = {
    {D(PREFLIGHT), D(WARMUP)},
    {D(WARMUP), D(INVOKE)},
    {D(INVOKE), D(TAKEOVER)},
    {D(INVOKE), D(REVOKE)}, /* the invoke could not be sent: revoke anyway */
    {D(INVOKE), D(DRAIN)},  /* refused: nothing to revoke */
    {D(TAKEOVER), D(DIGEST_AFTER_INVOKE)},
    {D(TAKEOVER), D(REVOKE)}, /* takeover late */
    {D(DIGEST_AFTER_INVOKE), D(HOLD)},
    {D(HOLD), D(REVOKE)},
    {D(REVOKE), D(FAILBACK)},
    {D(REVOKE), D(DRAIN)},
    {D(FAILBACK), D(COOLDOWN)},
    {D(FAILBACK), D(DRAIN)}, /* failback late */
    {D(COOLDOWN), D(DRAIN)},
    {D(DRAIN), D(DIGEST_AFTER_REVOKE)},
    {D(DRAIN), D(VERIFY)}, /* aborted: no digest check */
    {D(DIGEST_AFTER_REVOKE), D(VERIFY)},
    {D(VERIFY), D(STORE)},
    {D(STORE), D(DONE)},
};

static const int rejoin_moves[][2] = {
    {J(REMOVE), J(RESEED)}, {J(RESEED), J(BACK)},   {J(BACK), J(ADD)},      {J(ADD), J(ASSIGN)},
    {J(ASSIGN), J(DONE)},   {J(REMOVE), J(FAILED)}, {J(RESEED), J(FAILED)}, {J(BACK), J(FAILED)},
    {J(ADD), J(FAILED)},    {J(ASSIGN), J(FAILED)},
};

static bool listed(const int (*moves)[2], size_t n, int from, int to)
{
    for (size_t i = 0; i < n; i++) {
        if (moves[i][0] == from && moves[i][1] == to) {
            return true;
        }
    }
    return false;
}

static void check_table(const struct tandem_bcp_steps *m, const int (*moves)[2], size_t n,
                        unsigned count)
{
    assert_int_equal(m->count, count);
    for (int from = -1; from <= (int)count; from++) {
        for (int to = -1; to <= (int)count; to++) {
            bool want = listed(moves, n, from, to);
            if (tandem_bcp_step_allowed(m, from, to) != want) {
                fail_msg("%s: %s -> %s should be %s", m->machine, tandem_bcp_step_name(m, from),
                         tandem_bcp_step_name(m, to), want ? "allowed" : "refused");
            }
        }
    }
    for (unsigned step = 0; step < count; step++) {
        assert_non_null(m->names[step]);
        assert_string_not_equal(tandem_bcp_step_name(m, (int)step), "invalid");
    }
    assert_string_equal(tandem_bcp_step_name(m, (int)count), "invalid");
}

static void test_drill_table(void **state)
{
    (void)state;
    check_table(&tandem_drill_steps, drill_moves, sizeof drill_moves / sizeof drill_moves[0],
                TANDEM_DRILL_STEPS);
}

static void test_rejoin_table(void **state)
{
    (void)state;
    check_table(&tandem_rejoin_steps, rejoin_moves, sizeof rejoin_moves / sizeof rejoin_moves[0],
                TANDEM_REJOIN_STEPS);
}

static void walk(const struct tandem_bcp_steps *m, const int *steps, size_t n)
{
    int step = steps[0];
    for (size_t i = 1; i < n; i++) {
        tandem_bcp_step_move(m, &step, steps[i]);
        assert_int_equal(step, steps[i]);
    }
}

/* A drill that goes well visits every step once, in declaration order. */
static void test_drill_sequences(void **state)
{
    (void)state;
    int good[TANDEM_DRILL_STEPS];
    for (int i = 0; i < TANDEM_DRILL_STEPS; i++) {
        good[i] = i;
    }
    walk(&tandem_drill_steps, good, TANDEM_DRILL_STEPS);
    /* the takeover never completes: revoke, drain, verify and store without digest checks */
    const int late[] = {D(PREFLIGHT), D(WARMUP), D(INVOKE), D(TAKEOVER), D(REVOKE),
                        D(FAILBACK),  D(DRAIN),  D(VERIFY), D(STORE),    D(DONE)};
    walk(&tandem_drill_steps, late, sizeof late / sizeof late[0]);
    /* the invoke is refused: nothing to revoke */
    const int refused[] = {D(PREFLIGHT), D(WARMUP), D(INVOKE), D(DRAIN),
                           D(VERIFY),    D(STORE),  D(DONE)};
    walk(&tandem_drill_steps, refused, sizeof refused / sizeof refused[0]);
}

static void test_rejoin_sequences(void **state)
{
    (void)state;
    const int member[] = {J(REMOVE), J(RESEED), J(BACK), J(ADD), J(ASSIGN), J(DONE)};
    walk(&tandem_rejoin_steps, member, sizeof member / sizeof member[0]);
    const int gone_member[] = {J(REMOVE), J(RESEED), J(FAILED)};
    walk(&tandem_rejoin_steps, gone_member, sizeof gone_member / sizeof gone_member[0]);
}

/* Runs a refused move in a child: it must die of SIGABRT (tandem_assert). */
static void expect_abort(const struct tandem_bcp_steps *m, int from, int to)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int step = from;
        tandem_bcp_step_move(m, &step, to);
        _exit(0); /* reached only if the move was wrongly allowed */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_refused_move_aborts(void **state)
{
    (void)state;
    expect_abort(&tandem_drill_steps, D(PREFLIGHT), D(INVOKE)); /* skipping the warm-up */
    expect_abort(&tandem_drill_steps, D(DONE), D(PREFLIGHT));   /* no move out of done */
    expect_abort(&tandem_drill_steps, D(HOLD), D(HOLD));        /* no move to itself */
    expect_abort(&tandem_rejoin_steps, J(REMOVE), J(ADD));      /* re-adding before the wipe */
    expect_abort(&tandem_rejoin_steps, J(FAILED), J(DONE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drill_table),         cmocka_unit_test(test_rejoin_table),
        cmocka_unit_test(test_drill_sequences),     cmocka_unit_test(test_rejoin_sequences),
        cmocka_unit_test(test_refused_move_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
