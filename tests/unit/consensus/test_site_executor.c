/* Unit tests of the site controller's executor on a real libuv loop: the leader-only tick, a
 * step proposed and applied, a step that could not be proposed or was not applied (back to idle
 * with a back-off), and a close that leaves the loop empty. raft is a bare struct whose state
 * the tests set: the steps used here never call into libraft. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <raft.h>
#include <uv.h>

#include "consensus/site_controller.h"

#define DRIVE_AFTER_MS (TANDEM_SITE_TICK_MS + TANDEM_SITE_TICK_MS / 2) /* after the first tick */

enum propose_mode { PROPOSE_REFUSE, PROPOSE_LATER };

struct fixture {
    uv_loop_t loop;
    struct raft raft;
    struct tandem_site_controller c;
    uv_timer_t driver; /* fires once after the first tick, then closes everything */
    int mode;          /* enum propose_mode */
    int done_status;   /* what the driver hands a pending done */
    tandem_site_done_fn pending_done;
    unsigned gathered, proposed, closed;
    char last_log[TANDEM_ERRMSG_SIZE];
    int last_level;
};

static int gather_cb(struct tandem_site_controller *c, struct tandem_site_plan_input *in)
{
    struct fixture *f = c->data;
    f->gathered++;
    memset(in, 0, sizeof *in);
    struct tandem_site_plan_member *m = &in->members[0];
    snprintf(m->name, sizeof m->name, "east-1");
    snprintf(m->site, sizeof m->site, "east"); /* not registered yet: the next step is REGISTER */
    m->id = 1;
    m->role = TANDEM_ROLE_VOTER;
    m->home_role = TANDEM_ROLE_VOTER;
    m->reachable = m->caught_up = m->self = true;
    in->n_members = 1;
    return 0;
}

static int propose_cb(struct tandem_site_controller *c, const struct tandem_site_action *a,
                      tandem_site_done_fn done)
{
    struct fixture *f = c->data;
    f->proposed++;
    assert_int_equal(a->kind, TANDEM_SITE_ACTION_REGISTER);
    assert_int_equal(c->busy, TANDEM_SITE_PROPOSING);
    if (f->mode == PROPOSE_REFUSE) {
        return -1;
    }
    f->pending_done = done;
    return 0;
}

static void log_cb(struct tandem_site_controller *c, int level, const char *msg)
{
    struct fixture *f = c->data;
    snprintf(f->last_log, sizeof f->last_log, "%s", msg);
    f->last_level = level;
}

static void controller_closed_cb(struct tandem_site_controller *c)
{
    struct fixture *f = c->data;
    f->closed++;
}

static void driver_cb(uv_timer_t *timer)
{
    struct fixture *f = timer->data;
    if (f->pending_done != NULL) {
        tandem_site_done_fn done = f->pending_done;
        f->pending_done = NULL;
        done(&f->c, f->done_status);
    }
    uv_close((uv_handle_t *)timer, NULL);
    tandem_site_controller_close(&f->c, controller_closed_cb);
}

/* Runs the controller until the driver closes it; the loop must end closed and empty. */
static void run(struct fixture *f, int raft_state, int mode, int done_status)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->raft.state = (unsigned short)raft_state;
    f->mode = mode;
    f->done_status = done_status;
    assert_int_equal(tandem_site_controller_init(&f->c, &f->loop, &f->raft, 1000, gather_cb,
                                                 propose_cb, log_cb, f),
                     0);
    assert_int_equal(f->c.busy, TANDEM_SITE_IDLE);
    assert_int_equal(uv_timer_init(&f->loop, &f->driver), 0);
    f->driver.data = f;
    assert_int_equal(uv_timer_start(&f->driver, driver_cb, DRIVE_AFTER_MS, 0), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_follower_never_plans(void **state)
{
    struct fixture f;
    (void)state;
    run(&f, RAFT_FOLLOWER, PROPOSE_LATER, 0);
    assert_int_equal(f.gathered, 0);
    assert_int_equal(f.c.executor.moves, 0);
}

static void test_step_applied_returns_to_idle(void **state)
{
    struct fixture f;
    (void)state;
    run(&f, RAFT_LEADER, PROPOSE_LATER, 0);
    assert_int_equal(f.proposed, 1);
    assert_int_equal(f.c.actions, 1);
    assert_int_equal(f.c.busy, TANDEM_SITE_IDLE);
    assert_int_equal(f.c.executor.moves, 2); /* idle -> proposing -> idle */
    assert_int_equal(f.c.backoff_until_ms, 0);
}

static void test_refused_proposal_backs_off(void **state)
{
    struct fixture f;
    (void)state;
    run(&f, RAFT_LEADER, PROPOSE_REFUSE, 0);
    assert_int_equal(f.proposed, 1); /* the back-off keeps the next tick from retrying */
    assert_int_equal(f.c.actions, 0);
    assert_int_equal(f.c.busy, TANDEM_SITE_IDLE);
    assert_int_equal(f.c.executor.moves, 2);
    assert_true(f.c.backoff_until_ms > 0);
    assert_non_null(strstr(f.last_log, "could not propose its command"));
    assert_int_equal(f.last_level, TANDEM_SITE_LOG_WARN); /* a failed step is worth a look */
}

static void test_command_not_applied_backs_off(void **state)
{
    struct fixture f;
    (void)state;
    run(&f, RAFT_LEADER, PROPOSE_LATER, RAFT_NOTLEADER);
    assert_int_equal(f.c.actions, 0);
    assert_int_equal(f.c.busy, TANDEM_SITE_IDLE);
    assert_true(f.c.backoff_until_ms > 0);
    assert_non_null(strstr(f.last_log, "its command was not applied"));
}

/* Failovers (automatic or forced invokes) and a lost site warn; routine steps inform. */
static void test_log_levels_of_actions(void **state)
{
    struct tandem_site_action a;
    (void)state;
    memset(&a, 0, sizeof a);
    a.kind = TANDEM_SITE_ACTION_INVOKE;
    assert_int_equal(tandem_site_action_log_level(&a), TANDEM_SITE_LOG_WARN);
    a.force = true;
    assert_int_equal(tandem_site_action_log_level(&a), TANDEM_SITE_LOG_WARN);
    a.kind = TANDEM_SITE_ACTION_REPORT;
    assert_int_equal(tandem_site_action_log_level(&a), TANDEM_SITE_LOG_WARN);
    static const int routine[] = {TANDEM_SITE_ACTION_REGISTER, TANDEM_SITE_ACTION_RECORD_HOMES,
                                  TANDEM_SITE_ACTION_PREFER,   TANDEM_SITE_ACTION_RECOVERED,
                                  TANDEM_SITE_ACTION_TRANSFER, TANDEM_SITE_ACTION_ASSIGN};
    for (size_t i = 0; i < sizeof routine / sizeof routine[0]; i++) {
        a.kind = routine[i];
        assert_int_equal(tandem_site_action_log_level(&a), TANDEM_SITE_LOG_INFO);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follower_never_plans),
        cmocka_unit_test(test_step_applied_returns_to_idle),
        cmocka_unit_test(test_refused_proposal_backs_off),
        cmocka_unit_test(test_command_not_applied_backs_off),
        cmocka_unit_test(test_log_levels_of_actions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
