/* Tests of consensus/membership.c without a running cluster: the checks before a change, raft's
 * refusal on a node that does not lead, and the transfer's confirmation and timeout, on a raft
 * whose configuration and state are set by hand (raft_add and raft_remove themselves need a
 * started raft: the simulations and integration tests cover them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/membership.h"

#define RUN_TIMEOUT_MS 5000

struct result {
    int calls, status;
    char errmsg[TANDEM_ERRMSG_SIZE];
    char name[TANDEM_NAME_LEN_MAX + 1];
};

static void result_cb(void *data, int status, const char *errmsg, const struct tandem_member *m)
{
    struct result *res = data;
    res->calls++;
    res->status = status;
    snprintf(res->errmsg, sizeof res->errmsg, "%s", errmsg);
    snprintf(res->name, sizeof res->name, "%s", m->name);
}

static struct tandem_raft node; /* never started */
static uv_loop_t loop;

static void member_make(struct tandem_member *m, const char *name, const char *raft, int role)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->site, sizeof m->site, "east");
    snprintf(m->raft, sizeof m->raft, "%s", raft);
    snprintf(m->api, sizeof m->api, "http://%s", raft);
    m->role = role;
}

static void config_add(const char *name, const char *raft, int role)
{
    struct tandem_member m;
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    member_make(&m, name, raft, role);
    assert_int_equal(tandem_member_address_format(&m, address, sizeof address), 0);
    assert_int_equal(raft_configuration_add(&node.raft.configuration, tandem_member_id(name),
                                            address, tandem_raft_role_to_raft(role)),
                     0);
}

static int setup(void **state)
{
    (void)state;
    memset(&node, 0, sizeof node);
    assert_int_equal(uv_loop_init(&loop), 0);
    node.loop = &loop;
    raft_configuration_init(&node.raft.configuration);
    config_add("east-1", "127.0.0.1:9001", TANDEM_ROLE_VOTER);
    config_add("west-1", "127.0.0.1:9002", TANDEM_ROLE_VOTER);
    config_add("spare-1", "127.0.0.1:9003", TANDEM_ROLE_SPARE);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    raft_configuration_close(&node.raft.configuration);
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++) {
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

static void run_until_called(struct result *res)
{
    uv_update_time(&loop);
    uint64_t deadline = uv_now(&loop) + RUN_TIMEOUT_MS;
    while (res->calls == 0 && uv_now(&loop) < deadline) {
        uv_run(&loop, UV_RUN_ONCE);
    }
}

static void test_add_refuses_taken_name_and_address(void **state)
{
    struct tandem_member m;
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    member_make(&m, "east-1", "127.0.0.1:9100", TANDEM_ROLE_VOTER);
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res),
                     TANDEM_EXISTS);
    assert_string_equal(errmsg, "member east-1 already exists");
    member_make(&m, "east-2", "127.0.0.1:9002", TANDEM_ROLE_VOTER);
    assert_int_equal(tandem_membership_add(&node, &loop, &m, errmsg, result_cb, &res),
                     TANDEM_EXISTS);
    assert_string_equal(errmsg, "raft address 127.0.0.1:9002 is already used by west-1");
    assert_int_equal(res.calls, 0); /* a change that did not start never calls back */
}

static void test_remove_unknown(void **state)
{
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(tandem_membership_remove(&node, "nobody", errmsg, result_cb, &res),
                     TANDEM_NOTFOUND);
    assert_string_equal(errmsg, "no member named nobody");
    assert_int_equal(res.calls, 0);
}

static void test_transfer_checks_target(void **state)
{
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(
        tandem_membership_transfer(&node, &loop, "nobody", 100, errmsg, result_cb, &res),
        TANDEM_NOTFOUND);
    assert_string_equal(errmsg, "no member named nobody");
    assert_int_equal(
        tandem_membership_transfer(&node, &loop, "spare-1", 100, errmsg, result_cb, &res),
        TANDEM_STATE);
    assert_string_equal(errmsg, "spare-1 is a spare, not a voter");
    assert_int_equal(res.calls, 0);
}

/* Nobody leads and this node cannot send a transfer: the change times out after confirm_ms. */
static void test_transfer_times_out(void **state)
{
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    uint64_t start = uv_hrtime();
    assert_int_equal(
        tandem_membership_transfer(&node, &loop, "west-1", 100, errmsg, result_cb, &res), 0);
    run_until_called(&res);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, TANDEM_TIMEOUT);
    assert_string_equal(res.errmsg,
                        "leadership transfer to west-1: the new leader was not confirmed in time");
    assert_true(uv_hrtime() - start >= 100ull * 1000000ull);
}

/* The target already leads (as a follower sees it): confirmed at the first look. */
static void test_transfer_confirms_leader(void **state)
{
    struct result res = {0};
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)state;
    node.raft.state = RAFT_FOLLOWER;
    node.raft.follower_state.current_leader.id = tandem_member_id("west-1");
    assert_int_equal(
        tandem_membership_transfer(&node, &loop, "west-1", 1000, errmsg, result_cb, &res), 0);
    run_until_called(&res);
    node.raft.state = RAFT_UNAVAILABLE;
    node.raft.follower_state.current_leader.id = 0;
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, TANDEM_OK);
    assert_string_equal(res.name, "west-1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_refuses_taken_name_and_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_checks_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_confirms_leader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
