/* Unit tests of the start-up quarantine policy: the forced-failover split brain waits, whole and
 * single restarts are released, the own-site and witness rules, nothing-to-protect, operator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/bcp/quarantine.h"

/* Adds a member: "name" at "site" with role; reached and leading as given. */
static struct tandem_quarantine_member *add(struct tandem_quarantine_input *in, const char *name,
                                            const char *site, int role, bool reached)
{
    assert_true(in->n_members < TANDEM_QUARANTINE_MEMBERS_MAX);
    struct tandem_quarantine_member *m = &in->members[in->n_members++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->site, sizeof m->site, "%s", site);
    m->role = role;
    m->reached = reached;
    m->witness = strcmp(site, "witness") == 0;
    return m;
}

/* 2+2+1 seen from west-1: reached says which of east-1, east-2, west-2, witness-1 answered. */
static void two_two_one(struct tandem_quarantine_input *in, bool east1, bool east2, bool west2,
                        bool witness)
{
    memset(in, 0, sizeof *in);
    add(in, "east-1", "east", TANDEM_ROLE_VOTER, east1);
    add(in, "east-2", "east", TANDEM_ROLE_VOTER, east2);
    add(in, "west-1", "west", TANDEM_ROLE_VOTER, false)->self = true;
    add(in, "west-2", "west", TANDEM_ROLE_VOTER, west2);
    add(in, "witness-1", "witness", TANDEM_ROLE_VOTER, witness);
}

/* The reproduction: the old majority (west and the witness) returns without east. */
static void test_old_majority_without_other_site_waits(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    two_two_one(&in, false, false, true, true);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_WAIT);
    assert_non_null(strstr(why, "waiting for a node of site east: east-1, east-2 unreachable"));
    assert_null(strstr(why, "site west"));
    assert_null(strstr(why, "witness"));
}

static void test_whole_cluster_restart_released(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    two_two_one(&in, true, true, true, true);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_SITES_REACHED);
    two_two_one(&in, false, true, true, false); /* one node per site is enough */
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_SITES_REACHED);
    assert_non_null(strstr(why, "every non-witness site"));
}

/* A restart into a healthy cluster: the leader's connection or our probe says it leads. */
static void test_leader_of_epoch_releases(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    two_two_one(&in, true, false, false, false);
    in.members[0].leading = true;
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_LEADER);
    assert_string_equal(why, "reached east-1, leader of this epoch");
    /* leadership heard without a handshake at our epoch counts for nothing */
    two_two_one(&in, false, false, false, false);
    in.members[0].leading = true;
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_WAIT);
}

/* Our own site counts through ourselves only when we are alone there. */
static void test_own_site_needs_another_node(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    two_two_one(&in, true, true, false, true);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_WAIT);
    assert_non_null(strstr(why, "site west: west-2 unreachable"));
    assert_null(strstr(why, "site east"));

    memset(&in, 0, sizeof in); /* 1+1+1: alone at west */
    add(&in, "east-1", "east", TANDEM_ROLE_VOTER, true);
    add(&in, "west-1", "west", TANDEM_ROLE_VOTER, false)->self = true;
    add(&in, "witness-1", "witness", TANDEM_ROLE_VOTER, false);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_SITES_REACHED);
}

/* A site the table flags as witness needs no contact whatever its name; standbys count as
 * nodes of their site. */
static void test_witness_flag_and_standbys(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    memset(&in, 0, sizeof in);
    add(&in, "east-1", "east", TANDEM_ROLE_VOTER, false)->self = true;
    add(&in, "east-2", "east", TANDEM_ROLE_VOTER, true);
    add(&in, "west-1", "west", TANDEM_ROLE_STANDBY, false);
    add(&in, "dc3-1", "dc3", TANDEM_ROLE_VOTER, false)->witness = true;
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_WAIT);
    assert_non_null(strstr(why, "site west: west-1 unreachable"));
    assert_null(strstr(why, "dc3"));
    in.members[2].reached = true;
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_SITES_REACHED);
}

static void test_nothing_to_protect(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    two_two_one(&in, false, false, false, false);
    in.members[2].role = TANDEM_ROLE_STANDBY;
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_NOT_VOTER);
    memset(&in, 0, sizeof in); /* not in the configuration at all: a joining node */
    add(&in, "east-1", "east", TANDEM_ROLE_VOTER, false);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_NOT_VOTER);
    memset(&in, 0, sizeof in); /* a forced failover's seed: sole voter, survivors standby */
    add(&in, "east-1", "east", TANDEM_ROLE_VOTER, false)->self = true;
    add(&in, "east-2", "east", TANDEM_ROLE_STANDBY, false);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_ONLY_VOTER);
}

static void test_operator_release(void **state)
{
    (void)state;
    struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    two_two_one(&in, false, false, false, false);
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_WAIT);
    in.operator_release = true;
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_OPERATOR);
}

/* Every site unreachable and every name long: the text is cut, never overrun. */
static void test_why_bounded(void **state)
{
    (void)state;
    static struct tandem_quarantine_input in;
    char why[TANDEM_QUARANTINE_WHY_MAX];
    memset(&in, 0, sizeof in);
    add(&in, "self", "home", TANDEM_ROLE_VOTER, false)->self = true;
    for (unsigned i = 1; i < TANDEM_QUARANTINE_MEMBERS_MAX; i++) {
        char name[TANDEM_NAME_LEN_MAX + 1], site[TANDEM_SITE_LEN_MAX + 1];
        memset(name, 'n', TANDEM_NAME_LEN_MAX);
        snprintf(name + TANDEM_NAME_LEN_MAX - 3, 4, "%03u", i);
        snprintf(site, sizeof site, "site-%02u", i % 20);
        add(&in, name, site, TANDEM_ROLE_VOTER, false);
    }
    assert_int_equal(tandem_quarantine_decide(&in, why), TANDEM_QUARANTINE_WAIT);
    assert_true(strlen(why) < TANDEM_QUARANTINE_WHY_MAX);
    assert_non_null(strstr(why, "waiting for a node of site site-01"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_majority_without_other_site_waits),
        cmocka_unit_test(test_whole_cluster_restart_released),
        cmocka_unit_test(test_leader_of_epoch_releases),
        cmocka_unit_test(test_own_site_needs_another_node),
        cmocka_unit_test(test_witness_flag_and_standbys),
        cmocka_unit_test(test_nothing_to_protect),
        cmocka_unit_test(test_operator_release),
        cmocka_unit_test(test_why_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
