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

/* Decides in and checks the verdict, and that the text says want_text (NULL: any); returns
 * the text for further checks (valid until the next call). */
static const char *expect(const struct tandem_quarantine_input *in,
                          enum tandem_quarantine_verdict want, const char *want_text)
{
    static char why[TANDEM_QUARANTINE_WHY_MAX];
    assert_int_equal(tandem_quarantine_decide(in, why), want);
    if (want_text != NULL && strstr(why, want_text) == NULL) {
        fail_msg("'%s' does not say '%s'", why, want_text);
    }
    return why;
}

/* 2+2+1 seen from west-1: which of east-1, east-2, west-2, witness-1 answered, who of them
 * leads, west-1's role, and what the policy must say. */
struct two_two_one_case {
    const char *what;
    bool east1, east2, west2, witness;
    int leading; /* index of the member that said it leads, -1: none */
    int self_role;
    enum tandem_quarantine_verdict want;
    const char *want_text; /* NULL: any */
    const char *not_text;  /* what it must not say; NULL: nothing */
};

static const struct two_two_one_case cases[] = {
    {"the issue's old majority returning without east", false, false, true, true, -1,
     TANDEM_ROLE_VOTER, TANDEM_QUARANTINE_WAIT,
     "waiting for a node of site east: east-1, east-2 unreachable, or a leader", "site west"},
    {"a whole-cluster restart", true, true, true, true, -1, TANDEM_ROLE_VOTER,
     TANDEM_QUARANTINE_SITES_REACHED, "every non-witness site", NULL},
    {"one node per site is enough", false, true, true, false, -1, TANDEM_ROLE_VOTER,
     TANDEM_QUARANTINE_SITES_REACHED, NULL, NULL},
    {"a restart into a healthy cluster", true, false, false, false, 0, TANDEM_ROLE_VOTER,
     TANDEM_QUARANTINE_LEADER, "reached east-1, leader of this epoch", NULL},
    {"a leader's first handshake is enough, without a run of answers", false, false, false, false,
     0, TANDEM_ROLE_VOTER, TANDEM_QUARANTINE_LEADER, "reached east-1", NULL},
    {"our own site counts through us only when we are alone there", true, true, false, true, -1,
     TANDEM_ROLE_VOTER, TANDEM_QUARANTINE_WAIT, "waiting for a node of site west: west-2",
     "site east"},
    {"a standby has nothing to protect", false, false, false, false, -1, TANDEM_ROLE_STANDBY,
     TANDEM_QUARANTINE_NOT_VOTER, "not a voter", NULL},
};

static void test_two_two_one_cases(void **state)
{
    (void)state;
    static struct tandem_quarantine_input in;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct two_two_one_case *k = &cases[i];
        two_two_one(&in, k->east1, k->east2, k->west2, k->witness);
        in.members[2].role = k->self_role;
        if (k->leading >= 0) {
            in.members[k->leading].leading = true;
        }
        const char *why = expect(&in, k->want, k->want_text);
        if (k->not_text != NULL && strstr(why, k->not_text) != NULL) {
            fail_msg("%s: '%s' says '%s'", k->what, why, k->not_text);
        }
    }
}

/* 1+1+1 alone at west; a site flagged witness whatever its name; standbys count for their site;
 * a node outside the configuration; a forced failover's seed; an operator. */
static void test_site_rules_and_release(void **state)
{
    (void)state;
    static struct tandem_quarantine_input in;
    memset(&in, 0, sizeof in);
    add(&in, "east-1", "east", TANDEM_ROLE_VOTER, true);
    add(&in, "west-1", "west", TANDEM_ROLE_VOTER, false)->self = true;
    add(&in, "dc3-1", "dc3", TANDEM_ROLE_VOTER, false)->witness = true;
    add(&in, "east-2", "east", TANDEM_ROLE_STANDBY, false);
    expect(&in, TANDEM_QUARANTINE_SITES_REACHED, NULL);
    in.members[0].reached = false;
    assert_null(strstr(expect(&in, TANDEM_QUARANTINE_WAIT, "east-1, east-2 unreachable"), "dc3"));
    in.members[3].reached = true; /* a standby of east answers */
    expect(&in, TANDEM_QUARANTINE_SITES_REACHED, NULL);
    in.members[3].reached = false;
    in.operator_release = true;
    expect(&in, TANDEM_QUARANTINE_OPERATOR, "released by an operator");
    in.operator_release = false;
    in.members[1].self = false; /* not in the configuration at all: a joining node */
    expect(&in, TANDEM_QUARANTINE_NOT_VOTER, NULL);
    in.members[1].self = true;
    in.members[0].role = in.members[2].role = TANDEM_ROLE_STANDBY; /* a forced failover's seed */
    expect(&in, TANDEM_QUARANTINE_ONLY_VOTER, "the only voter");
}

/* Three sites: each one still waited for is named, once, with its unreachable nodes. */
static void test_every_site_waited_for_is_named(void **state)
{
    (void)state;
    static struct tandem_quarantine_input in;
    memset(&in, 0, sizeof in);
    add(&in, "north-1", "north", TANDEM_ROLE_VOTER, false)->self = true;
    add(&in, "north-2", "north", TANDEM_ROLE_VOTER, true);
    add(&in, "east-1", "east", TANDEM_ROLE_VOTER, false);
    add(&in, "west-1", "west", TANDEM_ROLE_VOTER, false);
    add(&in, "west-2", "west", TANDEM_ROLE_STANDBY, false);
    const char *why = expect(&in, TANDEM_QUARANTINE_WAIT,
                             "waiting for a node of site east: east-1 unreachable; and for a node "
                             "of site west: west-1, west-2 unreachable, or a leader of this epoch");
    assert_null(strstr(why, "north"));
    in.members[3].reached = true;
    why = expect(&in, TANDEM_QUARANTINE_WAIT, "site east: east-1 unreachable, or a leader");
    assert_null(strstr(why, "west"));
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
        cmocka_unit_test(test_two_two_one_cases),
        cmocka_unit_test(test_site_rules_and_release),
        cmocka_unit_test(test_every_site_waited_for_is_named),
        cmocka_unit_test(test_why_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
