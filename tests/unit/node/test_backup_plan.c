/* Unit tests of node/bcp/backup_plan.c: who takes a site's backup (caught up, reachable, a
 * follower first), who keeps it (the other sites, never a witness), when a site is due, the
 * retry backoff and retention by count and age. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/bcp/backup_plan.h"

#define DAY_MS 86400000LL

static void member(struct tandem_backup_plan_input *in, const char *name, const char *site,
                   uint64_t match, bool leader)
{
    struct tandem_backup_member *m = &in->members[in->n_members++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->site, sizeof m->site, "%s", site);
    snprintf(m->api, sizeof m->api, "https://127.0.0.1:%u", 8100 + in->n_members);
    m->witness = strcmp(site, "witness") == 0;
    m->reachable = true;
    m->voter = true;
    m->leader = leader;
    m->match = match;
}

/* 2 + 2 + 1 with the leader at east-1, everyone caught up. */
static void topology(struct tandem_backup_plan_input *in)
{
    memset(in, 0, sizeof *in);
    in->last_index = 5000;
    member(in, "east-1", "east", 5000, true);
    member(in, "east-2", "east", 4990, false);
    member(in, "west-1", "west", 5000, false);
    member(in, "west-2", "west", 4999, false);
    member(in, "witness-1", "witness", 5000, false);
}

static void test_taker(void **state)
{
    struct tandem_backup_plan_input in;
    (void)state;
    topology(&in);
    /* A follower before the leader, even one a little behind. */
    assert_string_equal(in.members[tandem_backup_plan_taker(&in, "east")].name, "east-2");
    /* Among followers, the one furthest along. */
    assert_string_equal(in.members[tandem_backup_plan_taker(&in, "west")].name, "west-1");
    /* Too far behind is not caught up: the leader takes it. */
    in.members[1].match = in.last_index - TANDEM_BACKUP_CATCHUP_ENTRIES - 1;
    assert_string_equal(in.members[tandem_backup_plan_taker(&in, "east")].name, "east-1");
    /* Unknown progress (0) and unreachable nodes never take one. */
    in.members[2].reachable = false;
    in.members[3].match = 0;
    assert_int_equal(tandem_backup_plan_taker(&in, "west"), -1);
    /* A witness takes none. */
    assert_int_equal(tandem_backup_plan_taker(&in, "witness"), -1);
    /* A spare is not caught up by design. */
    topology(&in);
    in.members[1].voter = false;
    assert_string_equal(in.members[tandem_backup_plan_taker(&in, "east")].name, "east-1");
}

static void test_holders_and_witnesses(void **state)
{
    struct tandem_backup_plan_input in;
    unsigned idx[8];
    (void)state;
    topology(&in);
    assert_int_equal(tandem_backup_plan_holders(&in, "east", idx, 8), 2);
    assert_string_equal(in.members[idx[0]].name, "west-1");
    assert_string_equal(in.members[idx[1]].name, "west-2");
    assert_int_equal(tandem_backup_plan_holders(&in, "west", idx, 8), 2);
    assert_string_equal(in.members[idx[0]].name, "east-1");
    in.members[3].reachable = false;
    assert_int_equal(tandem_backup_plan_holders(&in, "east", idx, 8), 1);
    assert_int_equal(tandem_backup_plan_holders(&in, "east", idx, 0), 0); /* bounded */
    assert_int_equal(tandem_backup_plan_witnesses(&in, idx, 8), 1);
    assert_string_equal(in.members[idx[0]].name, "witness-1");
}

static void test_due_and_backoff(void **state)
{
    (void)state;
    assert_false(tandem_backup_plan_due(0, 1000, 0));    /* off */
    assert_true(tandem_backup_plan_due(0, 1000, 60000)); /* never taken */
    assert_false(tandem_backup_plan_due(1000, 60999, 60000));
    assert_true(tandem_backup_plan_due(1000, 61000, 60000));
    assert_false(tandem_backup_plan_due(90000, 1000, 60000)); /* a clock behind waits */
    assert_int_equal(tandem_backup_plan_backoff(1000, 1, 60000), 1000);
    assert_int_equal(tandem_backup_plan_backoff(1000, 2, 60000), 2000);
    assert_int_equal(tandem_backup_plan_backoff(1000, 4, 60000), 8000);
    assert_int_equal(tandem_backup_plan_backoff(1000, 40, 60000), 60000); /* capped */
}

static void test_retire(void **state)
{
    struct tandem_backup_kept kept[5] = {{"e5", 5 * DAY_MS},
                                         {"e4", 4 * DAY_MS},
                                         {"e3", 3 * DAY_MS},
                                         {"e2", 2 * DAY_MS},
                                         {"e1", 1 * DAY_MS}};
    bool retire[5];
    (void)state;
    /* By count: the newest 3 stay. */
    assert_int_equal(tandem_backup_plan_retire(kept, 5, 3, 365, 6 * DAY_MS, retire), 2);
    assert_false(retire[0] || retire[1] || retire[2]);
    assert_true(retire[3] && retire[4]);
    /* By age: older than 2 days at day 6 (e1..e3), whatever the count allows. */
    assert_int_equal(tandem_backup_plan_retire(kept, 5, 10, 2, 6 * DAY_MS, retire), 3);
    assert_false(retire[0] || retire[1]);
    /* The newest always stays, however old. */
    assert_int_equal(tandem_backup_plan_retire(kept, 5, 10, 1, 60 * DAY_MS, retire), 4);
    assert_false(retire[0]);
    assert_int_equal(tandem_backup_plan_retire(kept, 0, 1, 1, 0, retire), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taker),
        cmocka_unit_test(test_holders_and_witnesses),
        cmocka_unit_test(test_due_and_backoff),
        cmocka_unit_test(test_retire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
