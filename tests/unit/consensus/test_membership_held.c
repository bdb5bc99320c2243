/* Tests of consensus/membership.c's ownership of what it hands libraft when a change fails:
 * libraft 0.22.1's raft_assign makes the request its pending change before the submission that
 * can fail, and keeps it after the failure; raft_add leaks its encoded configuration when the
 * node may not change it (src/legacy.c). raft_add and raft_assign are replaced at link time
 * (-Wl,--wrap, see CMakeLists.txt) to play libraft's part. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/membership.h"

#define LOOP_TURNS_MAX 100 /* turns of the loop for the assignment's 0 ms timer */

int __wrap_raft_add(struct raft *r, struct raft_change *req, raft_id id, const char *address,
                    raft_change_cb cb);
int __wrap_raft_assign(struct raft *r, struct raft_change *req, raft_id id, int role,
                       raft_change_cb cb);

static struct {
    int assign_rc;
    bool assign_holds; /* as libraft when the submission fails after r->legacy.change = req */
    struct raft_change *added, *assigned;
    unsigned assigns;
} fake;

int __wrap_raft_add(struct raft *r, struct raft_change *req, raft_id id, const char *address,
                    raft_change_cb cb)
{
    (void)r;
    (void)id;
    (void)address;
    req->cb = cb;
    fake.added = req;
    return 0;
}

int __wrap_raft_assign(struct raft *r, struct raft_change *req, raft_id id, int role,
                       raft_change_cb cb)
{
    (void)id;
    (void)role;
    fake.assigns++;
    fake.assigned = req;
    req->cb = cb;
    if (fake.assign_holds) {
        r->legacy.change = req;
    }
    return fake.assign_rc;
}

struct result {
    int calls, status;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

static void result_cb(void *data, int status, const char *errmsg, const struct tandem_member *m)
{
    struct result *res = data;
    (void)m;
    res->calls++;
    res->status = status;
    snprintf(res->errmsg, sizeof res->errmsg, "%s", errmsg);
}

static struct tandem_raft node; /* never started */
static uv_loop_t loop;

static int setup(void **state)
{
    (void)state;
    memset(&node, 0, sizeof node);
    memset(&fake, 0, sizeof fake);
    assert_int_equal(uv_loop_init(&loop), 0);
    node.loop = &loop;
    node.raft.state = RAFT_LEADER; /* leader_state zeroed: no transfer, no promotion */
    raft_configuration_init(&node.raft.configuration);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    raft_configuration_close(&node.raft.configuration);
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    assert_int_equal(uv_loop_close(&loop), 0); /* nothing left on the loop */
    return 0;
}

/* east-2 of site east at raft 127.0.0.1:9100, API http://127.0.0.1:9101, as role. */
static void east2(struct tandem_member *m, int role)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "east-2");
    snprintf(m->site, sizeof m->site, "east");
    snprintf(m->raft, sizeof m->raft, "127.0.0.1:9100");
    snprintf(m->api, sizeof m->api, "http://127.0.0.1:9101");
    m->role = role;
}

/* Adds voter east-2: raft_add succeeds and its callback runs, then the assignment is tried. */
static void add_voter(struct result *res)
{
    struct tandem_member m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    east2(&m, TANDEM_ROLE_VOTER);
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, res), TANDEM_OK);
    assert_non_null(fake.added);
    fake.added->cb(fake.added, 0); /* the spare is in: assign from the loop (a 0 ms timer) */
    for (int i = 0; i < LOOP_TURNS_MAX && res->calls == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(fake.assigns, 1);
}

static void test_failed_assign_held_by_raft_is_freed_when_raft_lets_go(void **state)
{
    (void)state;
    struct result res = {0};
    fake.assign_rc = RAFT_IOERR;
    fake.assign_holds = true;
    add_voter(&res);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, TANDEM_RAFT);
    /* raft lets go later (leadership lost, a change applied, raft_close): the request must
     * still be alive then (a use after free under ASan otherwise), and is not reported twice. */
    for (int i = 0; i < 10; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    struct raft_change *held = node.raft.legacy.change;
    assert_non_null(held);
    node.raft.legacy.change = NULL;
    held->cb(held, RAFT_LEADERSHIPLOST);
    assert_int_equal(res.calls, 1);
    assert_non_null(strstr(res.errmsg, "raft still holds the change"));
}

static void test_failed_assign_not_held_finishes_at_once(void **state)
{
    (void)state;
    struct result res = {0};
    fake.assign_rc = RAFT_NOTLEADER;
    add_voter(&res);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, TANDEM_NOTLEADER);
    assert_null(node.raft.legacy.change);
}

/* raft_add on a node that may not change the configuration: libraft 0.22.1 would encode the
 * configuration and leak it; tandem refuses before calling raft (the wrapped raft_add is never
 * reached) and says why. */
static void test_add_refused_before_raft_when_not_allowed(void **state)
{
    (void)state;
    struct tandem_member m;
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "east-3");
    snprintf(m.raft, sizeof m.raft, "127.0.0.1:9200");
    node.raft.state = RAFT_FOLLOWER;
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res),
                     TANDEM_NOTLEADER);
    node.raft.state = RAFT_LEADER;
    node.raft.configuration_uncommitted_index = 7; /* a change not yet committed */
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res), TANDEM_RAFT);
    assert_non_null(strstr(errmsg, raft_strerror(RAFT_CANTCHANGE)));
    assert_null(fake.added);
    assert_int_equal(res.calls, 0);
}

/* An add that stopped after raft_add (east-2 a spare, leadership lost before the assign): the
 * same add again assigns the role asked for, without adding anything; a spare under other
 * addresses is still refused. */
static void test_add_again_finishes_a_half_done_add(void **state)
{
    (void)state;
    struct tandem_member m;
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE], address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    east2(&m, TANDEM_ROLE_SPARE);
    assert_int_equal(tandem_member_address_format(&m, address, sizeof address), 0);
    assert_int_equal(raft_configuration_add(&node.raft.configuration, tandem_member_id("east-2"),
                                            address, RAFT_SPARE),
                     0);
    /* Asked as a spare again: it is one already. */
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res),
                     TANDEM_EXISTS);
    /* Another raft address under the same name: not the same node. */
    m.role = TANDEM_ROLE_VOTER;
    snprintf(m.raft, sizeof m.raft, "127.0.0.1:9300");
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res),
                     TANDEM_EXISTS);
    assert_int_equal(fake.assigns, 0);
    /* The same node: assigned, never added. */
    snprintf(m.raft, sizeof m.raft, "127.0.0.1:9100");
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res), TANDEM_OK);
    for (int i = 0; i < LOOP_TURNS_MAX && fake.assigns == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert_null(fake.added);
    assert_int_equal(fake.assigns, 1);
    assert_int_equal(res.calls, 0);
    /* raft applies the assignment: the add reports success, for the member asked for. */
    fake.assigned->cb(fake.assigned, 0);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, TANDEM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failed_assign_held_by_raft_is_freed_when_raft_lets_go,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_assign_not_held_finishes_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_add_refused_before_raft_when_not_allowed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_add_again_finishes_a_half_done_add, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
