/* Unit tests of the site controller's planner: the order of its steps, the roles it wants for
 * invoked, recovering and active sites, leadership placement, automatic invoke and its guards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <raft.h>

#include "consensus/site_controller.h"

enum { EAST1, EAST2, WEST1, WEST2, WITNESS1, MEMBERS };

static const char *const names[MEMBERS] = {"east-1", "east-2", "west-1", "west-2", "witness-1"};
static const char *const sites[MEMBERS] = {"east", "east", "west", "west", "witness"};

/* A settled 2+2+1 cluster led by `leader`: sites registered and active, homes voters. */
static void settled(struct tandem_site_plan_input *in, int leader)
{
    memset(in, 0, sizeof *in);
    const char *site_names[] = {"east", "west", "witness"};
    for (unsigned i = 0; i < 3; i++) {
        snprintf(in->sites[i].name, sizeof in->sites[i].name, "%s", site_names[i]);
        in->sites[i].witness = i == 2;
    }
    in->n_sites = 3;
    for (unsigned i = 0; i < MEMBERS; i++) {
        struct tandem_site_plan_member *m = &in->members[i];
        snprintf(m->name, sizeof m->name, "%s", names[i]);
        snprintf(m->site, sizeof m->site, "%s", sites[i]);
        m->id = i + 1;
        m->role = m->home_role = TANDEM_ROLE_VOTER;
        m->reachable = m->caught_up = true;
        m->self = (int)i == leader;
    }
    in->n_members = MEMBERS;
    in->auto_bcp = true;
    in->preferred_set = true;
}

static void set_state(struct tandem_site_plan_input *in, const char *site, int state)
{
    for (unsigned i = 0; i < in->n_sites; i++) {
        if (strcmp(in->sites[i].name, site) == 0) {
            in->sites[i].state = state;
        }
    }
}

static void expect(const struct tandem_site_plan_input *in, int kind, const char *site,
                   const char *member)
{
    struct tandem_site_action a;
    tandem_site_plan(in, &a);
    assert_int_equal(a.kind, kind);
    if (site != NULL) {
        assert_string_equal(a.site, site);
    }
    if (member != NULL) {
        assert_string_equal(a.member, member);
    }
}

static void test_settled_cluster_needs_nothing(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
}

static void test_registers_sites_then_records_homes(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    in.n_sites = 0;
    expect(&in, TANDEM_SITE_ACTION_REGISTER, "east", NULL);
    settled(&in, WEST1);
    in.n_sites = 2; /* witness not yet registered */
    struct tandem_site_action a;
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_REGISTER);
    assert_string_equal(a.site, "witness");
    assert_true(a.witness);
    settled(&in, WEST1);
    in.members[EAST2].home_role = -1;
    set_state(&in, "east", TANDEM_PLAN_SITE_INVOKED); /* recorded even while a site is away */
    expect(&in, TANDEM_SITE_ACTION_RECORD_HOMES, NULL, NULL);
}

static void test_invoke_moves_leadership_first_then_demotes(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, EAST1);
    set_state(&in, "east", TANDEM_PLAN_SITE_INVOKED);
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, "west", "west-1");
    in.members[WEST1].caught_up = false; /* a lagging target is skipped */
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, "west", "west-2");
    settled(&in, WEST2);
    set_state(&in, "east", TANDEM_PLAN_SITE_INVOKED);
    expect(&in, TANDEM_SITE_ACTION_ASSIGN, "east", "east-1");
    in.members[EAST1].role = TANDEM_ROLE_STANDBY;
    struct tandem_site_action a;
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_ASSIGN);
    assert_string_equal(a.member, "east-2");
    assert_int_equal(a.from_role, TANDEM_ROLE_VOTER);
    assert_int_equal(a.to_role, TANDEM_ROLE_STANDBY);
    assert_string_equal(a.action_name, "demote");
    in.members[EAST2].role = TANDEM_ROLE_STANDBY;
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
}

static void test_standbys_elsewhere_stand_in(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    in.members[WEST2].role = in.members[WEST2].home_role = TANDEM_ROLE_STANDBY;
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
    set_state(&in, "east", TANDEM_PLAN_SITE_INVOKED);
    in.members[EAST1].role = in.members[EAST2].role = TANDEM_ROLE_STANDBY;
    expect(&in, TANDEM_SITE_ACTION_ASSIGN, "west", "west-2");
    in.members[WEST2].caught_up = false; /* promoted only once caught up */
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
    in.members[WEST2].caught_up = true;
    in.members[WEST2].role = TANDEM_ROLE_VOTER;
    set_state(&in, "east", TANDEM_PLAN_SITE_ACTIVE); /* recovered: the stand-in steps back */
    in.members[EAST1].role = in.members[EAST2].role = TANDEM_ROLE_VOTER;
    expect(&in, TANDEM_SITE_ACTION_ASSIGN, "west", "west-2");
}

static void test_revoke_promotes_when_caught_up_then_recovers(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    set_state(&in, "east", TANDEM_PLAN_SITE_RECOVERING);
    in.members[EAST1].role = in.members[EAST2].role = TANDEM_ROLE_STANDBY;
    in.members[EAST1].caught_up = in.members[EAST2].caught_up = false;
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
    in.members[EAST2].caught_up = true;
    expect(&in, TANDEM_SITE_ACTION_ASSIGN, "east", "east-2");
    in.members[EAST1].caught_up = true;
    in.members[EAST1].role = in.members[EAST2].role = TANDEM_ROLE_VOTER;
    expect(&in, TANDEM_SITE_ACTION_RECOVERED, "east", NULL);
    set_state(&in, "east", TANDEM_PLAN_SITE_ACTIVE);
    snprintf(in.preferred_site, sizeof in.preferred_site, "east"); /* --failback */
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, "east", "east-1");
}

static void test_witness_never_keeps_leadership(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WITNESS1);
    in.sites[2].witness = true;
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, NULL, "east-1");
    snprintf(in.preferred_site, sizeof in.preferred_site, "west");
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, "west", "west-1");
    for (unsigned i = 0; i < WITNESS1; i++) {
        in.members[i].reachable = false; /* nobody to hand over to, nothing else to do */
    }
    in.auto_bcp = false;
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
}

/* A member that lost acknowledged entries (consensus/raft_shield.h, 8) gets a new leader: of the
 * leader's own site first, never the member itself, a witness only when nobody else qualifies. */
static void test_a_lost_log_moves_leadership(void **state)
{
    struct tandem_site_plan_input in;
    struct tandem_site_action a;
    (void)state;
    settled(&in, EAST1);
    snprintf(in.preferred_site, sizeof in.preferred_site, "east");
    in.members[WEST1].lost_log = true;
    in.members[WEST1].caught_up = false;
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_TRANSFER);
    assert_string_equal(a.member, "east-2");
    assert_true(a.warn);
    assert_non_null(strstr(a.reason, "west-1 lost entries it had acknowledged"));
    assert_int_equal(tandem_site_action_log_level(&a), TANDEM_SITE_LOG_WARN);

    in.members[EAST2].reachable = false; /* then the other site */
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, "west", "west-2");
    in.members[WEST2].caught_up = false; /* then the witness, never west-1 */
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, "witness", "witness-1");
    in.members[WITNESS1].caught_up = false; /* nobody: nothing to do */
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);

    /* The lost member is never a target, whatever its stale progress says. */
    settled(&in, WITNESS1);
    in.members[EAST1].lost_log = true;
    expect(&in, TANDEM_SITE_ACTION_TRANSFER, NULL, "east-2");
    /* Without a lost log a settled cluster needs nothing. */
    settled(&in, EAST1);
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_NONE);
    assert_false(a.warn);
}

static void test_automatic_invoke_and_its_guards(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    in.members[EAST1].reachable = in.members[EAST2].reachable = false;
    struct tandem_site_action a;
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_INVOKE);
    assert_string_equal(a.site, "east");
    assert_string_equal(a.reason, "site unreachable");
    assert_false(a.force);
    in.auto_bcp = false;
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
    in.auto_bcp = true;
    in.members[EAST1].reachable = true; /* one node of the site answers */
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
    settled(&in, WEST1);
    in.members[EAST1].reachable = in.members[EAST2].reachable = false;
    in.members[WITNESS1].reachable = false; /* 2 of 5 voters: no quorum, no invoke */
    tandem_site_plan(&in, &a);
    assert_int_not_equal(a.kind, TANDEM_SITE_ACTION_INVOKE);
}

static void test_witness_loss_is_reported_once_not_invoked(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    in.members[WITNESS1].reachable = false;
    expect(&in, TANDEM_SITE_ACTION_REPORT, "witness", NULL);
    in.sites[2].down_reported = true;
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
}

static void test_demotion_never_loses_the_quorum(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    set_state(&in, "east", TANDEM_PLAN_SITE_INVOKED);
    in.members[WEST2].reachable = in.members[WITNESS1].reachable = false;
    in.sites[2].down_reported = true;
    /* Demoting a reachable east voter would leave west-1 alone among three voters. */
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
}

static void test_forced_note_and_config_preference(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1);
    snprintf(in.forced_site, sizeof in.forced_site, "east");
    struct tandem_site_action a;
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_INVOKE);
    assert_true(a.force);
    settled(&in, WEST1);
    in.preferred_set = false;
    snprintf(in.config_preferred_site, sizeof in.config_preferred_site, "east");
    expect(&in, TANDEM_SITE_ACTION_PREFER, "east", NULL);
    in.preferred_set = true; /* seeded once: a cleared preference stays cleared */
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL);
}

/* A forced invoke while the other site is invoked: the survivors' site is revoked first (an
 * invoke needs a site to take over), then the lost site is invoked, then the survivors vote.
 * Before, the invoke was refused every 2 s and the survivors stayed standbys. */
static void test_forced_note_with_the_other_site_invoked(void **state)
{
    struct tandem_site_plan_input in;
    (void)state;
    settled(&in, WEST1); /* after raft_recover: east's members are gone, west-1 the only voter */
    in.members[0] = in.members[WEST1];
    in.members[1] = in.members[WEST2];
    in.members[2] = in.members[WITNESS1];
    in.n_members = 3;
    in.members[1].role = in.members[2].role = TANDEM_ROLE_STANDBY;
    set_state(&in, "west", TANDEM_PLAN_SITE_INVOKED);
    snprintf(in.forced_site, sizeof in.forced_site, "east");
    struct tandem_site_action a;
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_REVOKE);
    assert_string_equal(a.site, "west");
    assert_true(a.force);
    assert_non_null(strstr(a.reason, "forced failover of east"));
    set_state(&in, "west", TANDEM_PLAN_SITE_RECOVERING);
    tandem_site_plan(&in, &a);
    assert_int_equal(a.kind, TANDEM_SITE_ACTION_INVOKE);
    assert_string_equal(a.site, "east");
    set_state(&in, "east", TANDEM_PLAN_SITE_INVOKED);
    in.forced_site[0] = '\0';
    expect(&in, TANDEM_SITE_ACTION_ASSIGN, "west", "west-2"); /* home voter of a recovering site */
    in.members[1].role = TANDEM_ROLE_VOTER;
    expect(&in, TANDEM_SITE_ACTION_ASSIGN, "witness", "witness-1");
    in.members[2].role = TANDEM_ROLE_VOTER; /* three voters: one failure tolerated */
    expect(&in, TANDEM_SITE_ACTION_RECOVERED, "west", NULL);
    settled(&in, EAST1);
    snprintf(in.forced_site, sizeof in.forced_site, "witness");
    expect(&in, TANDEM_SITE_ACTION_NONE, NULL, NULL); /* a witness is never forced */
}

/* The workaround for libraft's stale "uncommitted configuration" marker. */
static void test_stale_configuration_marker_is_repaired(void **state)
{
    struct raft r;
    (void)state;
    memset(&r, 0, sizeof r);
    raft_configuration_init(&r.configuration);
    raft_configuration_init(&r.configuration_committed);
    assert_int_equal(raft_configuration_add(&r.configuration, 1, "a", RAFT_VOTER), 0);
    assert_int_equal(raft_configuration_add(&r.configuration, 2, "b", RAFT_STANDBY), 0);
    r.configuration_committed_index = 1;
    r.configuration_uncommitted_index = 52;
    r.last_applied = 51; /* not applied yet: a change in flight, left alone */
    assert_false(tandem_site_config_stuck(&r));
    assert_int_equal(tandem_site_config_repair(&r), 0);
    assert_int_equal(r.configuration_uncommitted_index, 52);
    r.state = RAFT_FOLLOWER;
    r.commit_index = 60;
    r.last_applied = 60; /* applied but still marked: stale */
    assert_true(tandem_site_config_stuck(&r));
    assert_int_equal(tandem_site_config_repair(&r), 0);
    assert_false(tandem_site_config_stuck(&r));
    assert_int_equal(r.configuration_uncommitted_index, 0);
    assert_int_equal(r.configuration_committed_index, 52);
    assert_int_equal(r.configuration_committed.n, 2);
    assert_int_equal(r.configuration_committed.servers[1].role, RAFT_STANDBY);
    raft_configuration_close(&r.configuration);
    raft_configuration_close(&r.configuration_committed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settled_cluster_needs_nothing),
        cmocka_unit_test(test_registers_sites_then_records_homes),
        cmocka_unit_test(test_invoke_moves_leadership_first_then_demotes),
        cmocka_unit_test(test_standbys_elsewhere_stand_in),
        cmocka_unit_test(test_revoke_promotes_when_caught_up_then_recovers),
        cmocka_unit_test(test_witness_never_keeps_leadership),
        cmocka_unit_test(test_a_lost_log_moves_leadership),
        cmocka_unit_test(test_automatic_invoke_and_its_guards),
        cmocka_unit_test(test_witness_loss_is_reported_once_not_invoked),
        cmocka_unit_test(test_demotion_never_loses_the_quorum),
        cmocka_unit_test(test_forced_note_and_config_preference),
        cmocka_unit_test(test_forced_note_with_the_other_site_invoked),
        cmocka_unit_test(test_stale_configuration_marker_is_repaired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
