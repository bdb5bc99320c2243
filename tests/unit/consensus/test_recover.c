/* Unit tests for forced recovery: the survivor choice (highest term, then longest log, then the
 * smaller name), the no-committed-loss check and its refusals, and the data-directory markers
 * the next start acts on. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "consensus/recover.h"

#define CANDIDATES_MAX 8
#define FD_MAX         16

/* ---- survivor choice ---- */

/* A candidate: name, site, role, reachable, term, last_index. */
static struct tandem_recover_candidate cand(const char *name, const char *site, int role,
                                            bool reachable, uint64_t term, uint64_t last_index)
{
    struct tandem_recover_candidate c;
    memset(&c, 0, sizeof c);
    snprintf(c.member.name, sizeof c.member.name, "%s", name);
    snprintf(c.member.site, sizeof c.member.site, "%s", site);
    c.member.role = role;
    c.reachable = reachable;
    c.term = term;
    c.last_index = last_index;
    c.commit_index = last_index;
    return c;
}

#define VOTER   TANDEM_ROLE_VOTER
#define STANDBY TANDEM_ROLE_STANDBY

static void test_highest_term_beats_longer_log(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("west-1", "west", VOTER, true, 5, 900),
        cand("west-2", "west", VOTER, true, 6, 100),
        cand("witness-1", "witness", VOTER, true, 4, 2000),
    };
    assert_int_equal(tandem_recover_choose(c, 3, "east"), 1);
}

static void test_same_term_longest_log_wins(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("west-1", "west", VOTER, true, 7, 120),
        cand("west-2", "west", VOTER, true, 7, 130),
        cand("witness-1", "witness", VOTER, true, 7, 125),
    };
    assert_int_equal(tandem_recover_choose(c, 3, "east"), 1);
}

static void test_ties_go_to_the_smaller_name_in_any_order(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("west-2", "west", VOTER, true, 7, 130),
        cand("west-1", "west", VOTER, true, 7, 130),
        cand("witness-1", "witness", VOTER, true, 7, 130),
    };
    assert_int_equal(tandem_recover_choose(c, 3, "east"), 1);
    struct tandem_recover_candidate swapped[] = {c[1], c[2], c[0]};
    assert_int_equal(tandem_recover_choose(swapped, 3, "east"), 0);
}

static void test_lost_site_and_unreachable_are_never_chosen(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("east-1", "east", VOTER, true, 9, 999),  /* best log, but in the lost site */
        cand("west-1", "west", VOTER, false, 9, 998), /* best outside it, but silent */
        cand("west-2", "west", STANDBY, true, 8, 500),
    };
    assert_int_equal(tandem_recover_choose(c, 3, "east"), 2);
}

static void test_no_survivor_refuses(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("east-1", "east", VOTER, true, 9, 999),
        cand("east-2", "east", VOTER, true, 9, 999),
        cand("west-1", "west", VOTER, false, 9, 998),
    };
    assert_int_equal(tandem_recover_choose(c, 3, "east"), -1);
    assert_int_equal(tandem_recover_choose(c, 0, "east"), -1);
}

/* ---- no committed loss ---- */

static void test_loss_check_two_sites_and_witness(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("east-1", "east", VOTER, false, 3, 10),
        cand("east-2", "east", VOTER, false, 3, 10),
        cand("west-1", "west", VOTER, true, 3, 10),
        cand("west-2", "west", VOTER, true, 3, 10),
        cand("witness-1", "witness", VOTER, true, 3, 10),
    };
    /* 2 of 5 voters lost: every majority of 3 holds a survivor. */
    assert_true(tandem_recover_no_committed_loss(c, 5, "east"));
    /* The witness silent too: 3 lost, a majority could lie entirely among them. */
    c[4].reachable = false;
    assert_false(tandem_recover_no_committed_loss(c, 5, "east"));
}

static void test_loss_check_counts_the_lost_site_even_when_reachable(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("east-1", "east", VOTER, true, 3, 10),
        cand("east-2", "east", VOTER, true, 3, 10),
        cand("west-1", "west", VOTER, true, 3, 10),
    };
    /* Giving up east gives up two of three voters, reachable or not. */
    assert_false(tandem_recover_no_committed_loss(c, 3, "east"));
    assert_true(tandem_recover_no_committed_loss(c, 3, "west"));
}

static void test_loss_check_ignores_non_voters(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("east-1", "east", VOTER, false, 3, 10),  cand("east-2", "east", VOTER, false, 3, 10),
        cand("west-1", "west", VOTER, true, 3, 10),   cand("west-2", "west", STANDBY, true, 3, 10),
        cand("west-3", "west", STANDBY, true, 3, 10),
    };
    /* Three voters, two lost: east-1 and east-2 alone were a majority; standbys do not help. */
    assert_false(tandem_recover_no_committed_loss(c, 5, "east"));
    /* With east-2 a standby, a commit needed both remaining voters, west-1 among them. */
    c[1].member.role = STANDBY;
    assert_true(tandem_recover_no_committed_loss(c, 5, "east"));
}

static void test_loss_check_without_voters_refuses(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[] = {
        cand("west-1", "west", STANDBY, true, 3, 10),
    };
    assert_false(tandem_recover_no_committed_loss(c, 1, "east"));
    assert_false(tandem_recover_no_committed_loss(c, 0, "east"));
}

static void test_survivors_without_quorum_refuse(void **state)
{
    (void)state;
    struct tandem_recover_candidate c[CANDIDATES_MAX];
    const char *sites[] = {"east", "east", "west", "west", "west", "witness", "witness"};
    for (unsigned i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%u", i);
        c[i] = cand(name, sites[i], VOTER, true, 4, 40 + i);
    }
    /* 7 voters, east (2) lost: fine while the other five answer... */
    assert_true(tandem_recover_no_committed_loss(c, 7, "east"));
    /* ...and fine with one more silent (3 lost < 4)... */
    c[2].reachable = false;
    assert_true(tandem_recover_no_committed_loss(c, 7, "east"));
    /* ...but not with two more: 4 voters could have committed without any survivor. */
    c[3].reachable = false;
    assert_false(tandem_recover_no_committed_loss(c, 7, "east"));
    /* The choice itself still has someone: the check, not the choice, refuses. */
    assert_int_equal(tandem_recover_choose(c, 7, "east"), 6);
}

/* ---- markers ---- */

struct dir_fixture {
    char dir[PATH_MAX];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int dir_setup(void **state)
{
    struct dir_fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/tandem-recover-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int dir_teardown(void **state)
{
    struct dir_fixture *f = *state;
    (void)nftw(f->dir, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void write_file(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(fputs(text, out) >= 0, 1);
    assert_int_equal(fclose(out), 0);
}

static void make_subdir(const char *dir, const char *sub)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    assert_int_equal(mkdir(path, 0700), 0);
}

static struct tandem_member member(const char *name, const char *site, int port, int role)
{
    struct tandem_member m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.site, sizeof m.site, "%s", site);
    snprintf(m.raft, sizeof m.raft, "127.0.0.1:%d", port);
    snprintf(m.api, sizeof m.api, "http://127.0.0.1:%d", port + 100);
    m.role = role;
    return m;
}

static void test_plan_round_trip_and_done(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    struct tandem_recover_plan plan, back;
    memset(&plan, 0, sizeof plan);
    plan.epoch = 3;
    snprintf(plan.site, sizeof plan.site, "east");
    snprintf(plan.reason, sizeof plan.reason, "quorum lost");
    plan.members[0] = member("west-1", "west", 9001, VOTER);
    plan.members[1] = member("west-2", "west", 9002, STANDBY);
    plan.n_members = 2;
    assert_int_equal(tandem_recover_plan_read(f->dir, &back, errmsg), 0); /* absent */
    assert_int_equal(tandem_recover_plan_write(f->dir, &plan, errmsg), 0);
    assert_int_equal(tandem_recover_plan_read(f->dir, &back, errmsg), 1);
    assert_int_equal(back.epoch, 3);
    assert_string_equal(back.site, "east");
    assert_string_equal(back.reason, "quorum lost");
    assert_int_equal(back.n_members, 2);
    assert_string_equal(back.members[1].name, "west-2");
    assert_int_equal(back.members[1].role, STANDBY);

    assert_int_equal(tandem_recover_prepare(f->dir, NULL, NULL, errmsg), 0);
    assert_int_equal(tandem_recover_file_u64(f->dir, TANDEM_EPOCH_FILE), 3);
    assert_int_equal(tandem_recover_plan_done(f->dir, errmsg), 0);
    assert_false(tandem_recover_file_exists(f->dir, TANDEM_RECOVER_FILE));
    char site[TANDEM_SITE_LEN_MAX + 1] = "";
    assert_int_equal(tandem_recover_forced_note(f->dir, site), 1);
    assert_string_equal(site, "east");
    /* Done twice: the marker is gone, so the rename refuses with a reason. */
    assert_int_not_equal(tandem_recover_plan_done(f->dir, errmsg), 0);
    assert_non_null(strstr(errmsg, TANDEM_RECOVER_FILE));
}

static void test_corrupt_plans_refuse(void **state)
{
    struct dir_fixture *f = *state;
    static const char *const bad[] = {
        "epoch x\nsite east\nmember west-1|west|127.0.0.1:1|http://h:2 voter\n",
        "epoch 2\nsite east\n",                                         /* no members */
        "site east\nmember west-1|west|127.0.0.1:1|http://h:2 voter\n", /* no epoch */
        "epoch 2\nmember west-1|west|127.0.0.1:1|http://h:2 chief\n",   /* unknown role */
        "epoch 2\nmember west-1|west|nonsense|http://h:2 voter\n",      /* bad address */
        "epoch 2\nwhat is this\n",
    };
    struct tandem_recover_plan plan;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char errmsg[TANDEM_ERRMSG_SIZE] = "";
        write_file(f->dir, TANDEM_RECOVER_FILE, bad[i]);
        assert_int_equal(tandem_recover_plan_read(f->dir, &plan, errmsg), -1);
        assert_true(errmsg[0] != '\0');
        errmsg[0] = '\0';
        assert_int_not_equal(tandem_recover_prepare(f->dir, NULL, NULL, errmsg), 0);
        assert_true(errmsg[0] != '\0');
    }
}

/* What the aside callback was told. */
struct aside_seen {
    unsigned calls;
    char dir[PATH_MAX];
    uint64_t old_epoch, new_epoch;
    bool raft_there; /* the old log was in the aside folder when the report ran */
};

static void aside_cb(void *data, const char *aside_dir, uint64_t old_epoch, uint64_t new_epoch)
{
    struct aside_seen *seen = data;
    seen->calls++;
    snprintf(seen->dir, sizeof seen->dir, "%s", aside_dir);
    seen->old_epoch = old_epoch;
    seen->new_epoch = new_epoch;
    seen->raft_there = tandem_recover_file_exists(aside_dir, "raft/0000001-0000002");
}

static void old_data(const char *dir)
{
    make_subdir(dir, "raft");
    make_subdir(dir, "raft/deeper");
    make_subdir(dir, "state");
    write_file(dir, "raft/0000001-0000002", "segment");
    write_file(dir, "raft/deeper/x", "x");
    write_file(dir, "state/data.mdb", "data");
    write_file(dir, TANDEM_EPOCH_FILE, "3\n");
    write_file(dir, TANDEM_FENCED_FILE, "4\n");
    write_file(dir, "lock", "123\n");
}

/* The old data directory's content, byte for byte, in aside/. */
static void assert_kept(const char *dir, const char *aside)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, aside);
    assert_true(tandem_recover_file_exists(path, "raft/0000001-0000002"));
    assert_true(tandem_recover_file_exists(path, "raft/deeper/x"));
    assert_true(tandem_recover_file_exists(path, "state/data.mdb"));
    assert_int_equal(tandem_recover_file_u64(path, TANDEM_EPOCH_FILE), 3);
    assert_int_equal(tandem_recover_file_u64(path, TANDEM_FENCED_FILE), 4);
    assert_false(tandem_recover_file_exists(path, "lock")); /* the held lock stays */
    assert_false(tandem_recover_file_exists(path, TANDEM_RESEED_FILE));
}

static void assert_joined_empty(const char *dir, uint64_t epoch)
{
    assert_false(tandem_recover_file_exists(dir, "raft"));
    assert_false(tandem_recover_file_exists(dir, "state"));
    assert_true(tandem_recover_file_exists(dir, "lock"));
    assert_true(tandem_recover_file_exists(dir, TANDEM_JOIN_FILE));
    assert_false(tandem_recover_file_exists(dir, TANDEM_RESEED_FILE));
    assert_false(tandem_recover_file_exists(dir, TANDEM_FENCED_FILE));
    assert_int_equal(tandem_recover_file_u64(dir, TANDEM_EPOCH_FILE), epoch);
}

static void test_reseed_moves_the_data_aside_and_joins(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "", aside[TANDEM_ASIDE_NAME_MAX + 1];
    struct aside_seen seen = {0};
    old_data(f->dir);
    write_file(f->dir, TANDEM_RESEED_FILE, "5\n"); /* as the forced path writes it: no name */
    assert_int_equal(tandem_recover_reseed_aside(f->dir, aside), 0);
    assert_int_equal(tandem_recover_prepare(f->dir, aside_cb, &seen, errmsg), 0);
    assert_int_equal(seen.calls, 1);
    assert_true(seen.raft_there);
    assert_int_equal(seen.old_epoch, 3);
    assert_int_equal(seen.new_epoch, 5);
    const char *name = strrchr(seen.dir, '/') + 1;
    assert_int_equal(strncmp(name, "fenced-3-", 9), 0);
    assert_int_equal(strlen(name), strlen("fenced-3-20261205T061500Z"));
    assert_kept(f->dir, name);
    assert_joined_empty(f->dir, 5);
    /* A later start leaves the kept folder alone. */
    seen.calls = 0;
    assert_int_equal(tandem_recover_prepare(f->dir, aside_cb, &seen, errmsg), 0);
    assert_int_equal(seen.calls, 0);
    assert_kept(f->dir, name);
}

static void test_aside_names_sort_by_time_and_never_collide(void **state)
{
    struct dir_fixture *f = *state;
    char a[TANDEM_ASIDE_NAME_MAX + 1], b[TANDEM_ASIDE_NAME_MAX + 1];
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    tandem_recover_aside_name(f->dir, 1, 1796452500123, a); /* 2026-12-05T06:35:00.123Z */
    assert_string_equal(a, "fenced-1-20261205T063500Z");
    make_subdir(f->dir, a);
    tandem_recover_aside_name(f->dir, 1, 1796452500999, b);
    assert_string_equal(b, "fenced-1-20261205T063500Z-2");
    /* Named by the route that accepted the re-seed: the marker carries it. */
    assert_int_equal(tandem_recover_reseed_write(f->dir, 2, b, errmsg), 0);
    assert_int_equal(tandem_recover_reseed_aside(f->dir, a), 1);
    assert_string_equal(a, b);
    assert_int_equal(tandem_recover_reseed_write(f->dir, 2, "../etc", errmsg), TANDEM_INVALID);
}

/* A crash half-way: some items moved, the marker still names the folder and is not "moved". */
static void test_reseed_after_a_crash_half_way_finishes_the_move(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "", path[PATH_MAX], from[PATH_MAX];
    struct aside_seen seen = {0};
    old_data(f->dir);
    write_file(f->dir, TANDEM_RESEED_FILE, "5\naside fenced-3-20261205T061500Z\n");
    snprintf(path, sizeof path, "%s/fenced-3-20261205T061500Z", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(from, sizeof from, "%s/raft", f->dir);
    snprintf(path, sizeof path, "%s/fenced-3-20261205T061500Z/raft", f->dir);
    assert_int_equal(rename(from, path), 0);
    assert_int_equal(tandem_recover_prepare(f->dir, aside_cb, &seen, errmsg), 0);
    assert_int_equal(seen.calls, 1);
    assert_kept(f->dir, "fenced-3-20261205T061500Z");
    assert_joined_empty(f->dir, 5);
}

/* A crash after the move and the new epoch, before the marker went: the new epoch and join
 * marker are not moved over the kept ones. */
static void test_reseed_after_a_crash_late_keeps_the_old_markers(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    struct aside_seen seen = {0};
    old_data(f->dir);
    write_file(f->dir, TANDEM_RESEED_FILE, "5\naside fenced-3-20261205T061500Z\n");
    assert_int_equal(tandem_recover_prepare(f->dir, NULL, NULL, errmsg), 0);
    write_file(f->dir, TANDEM_RESEED_FILE, "5\naside fenced-3-20261205T061500Z\nmoved\n");
    assert_int_equal(tandem_recover_prepare(f->dir, aside_cb, &seen, errmsg), 0);
    assert_int_equal(seen.calls, 1); /* the report is written again */
    assert_kept(f->dir, "fenced-3-20261205T061500Z");
    assert_joined_empty(f->dir, 5);
}

/* The same item in both places is never overwritten: the start refuses and says which. */
static void test_reseed_refuses_to_overwrite_a_kept_item(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "", path[PATH_MAX];
    old_data(f->dir);
    write_file(f->dir, TANDEM_RESEED_FILE, "5\naside fenced-3-x\n");
    snprintf(path, sizeof path, "%s/fenced-3-x", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    write_file(path, "state", "kept before");
    assert_int_equal(tandem_recover_prepare(f->dir, NULL, NULL, errmsg), TANDEM_STATE);
    assert_non_null(strstr(errmsg, "both"));
    assert_true(tandem_recover_file_exists(f->dir, "state/data.mdb"));
    assert_true(tandem_recover_file_exists(f->dir, TANDEM_RESEED_FILE));
}

static void test_reseed_without_epoch_refuses(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    make_subdir(f->dir, "state");
    write_file(f->dir, "state/data.mdb", "data");
    write_file(f->dir, TANDEM_RESEED_FILE, "soon\n");
    assert_int_equal(tandem_recover_prepare(f->dir, NULL, NULL, errmsg), TANDEM_CORRUPT);
    assert_non_null(strstr(errmsg, "holds no epoch"));
    assert_true(tandem_recover_file_exists(f->dir, "state/data.mdb")); /* nothing wiped */
}

static void test_writes_into_a_missing_directory_fail_with_reason(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "", missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/absent", f->dir);
    assert_int_equal(tandem_epoch_write(missing, 7, errmsg), TANDEM_NOTFOUND);
    assert_non_null(strstr(errmsg, "absent"));
    assert_int_equal(tandem_recover_file_u64(missing, TANDEM_EPOCH_FILE), 0);
    assert_int_equal(tandem_recover_file_remove(f->dir, TANDEM_JOIN_FILE, errmsg), 0);
}

static void test_seed_history_round_trip(void **state)
{
    struct dir_fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    struct tandem_forced_history h, back;
    memset(&h, 0, sizeof h);
    h.epoch = 2;
    snprintf(h.seed, sizeof h.seed, "east-1");
    h.history.terms[0] = (struct tandem_term_start){1, 1};
    h.history.terms[1] = (struct tandem_term_start){4, 1000};
    h.history.n = 2;
    h.history.first_index = 1;
    h.history.last_index = 1057;
    h.history.last_term = 4;
    assert_int_equal(tandem_recover_history_read(f->dir, &back), 0);
    assert_int_equal(tandem_recover_history_write(f->dir, &h, errmsg), 0);
    assert_int_equal(tandem_recover_history_read(f->dir, &back), 1);
    assert_int_equal(back.epoch, 2);
    assert_string_equal(back.seed, "east-1");
    assert_int_equal(back.history.n, 2);
    assert_int_equal(back.history.terms[1].first_index, 1000);
    assert_int_equal(back.history.last_index, 1057);
    write_file(f->dir, TANDEM_FORCED_HISTORY_FILE, "epoch 2\nseed east-1\nterm 4 1\nterm 3 9\n");
    assert_int_equal(tandem_recover_history_read(f->dir, &back), -1); /* terms must rise */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_highest_term_beats_longer_log),
        cmocka_unit_test(test_same_term_longest_log_wins),
        cmocka_unit_test(test_ties_go_to_the_smaller_name_in_any_order),
        cmocka_unit_test(test_lost_site_and_unreachable_are_never_chosen),
        cmocka_unit_test(test_no_survivor_refuses),
        cmocka_unit_test(test_loss_check_two_sites_and_witness),
        cmocka_unit_test(test_loss_check_counts_the_lost_site_even_when_reachable),
        cmocka_unit_test(test_loss_check_ignores_non_voters),
        cmocka_unit_test(test_loss_check_without_voters_refuses),
        cmocka_unit_test(test_survivors_without_quorum_refuse),
        cmocka_unit_test_setup_teardown(test_plan_round_trip_and_done, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_plans_refuse, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_reseed_moves_the_data_aside_and_joins, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_aside_names_sort_by_time_and_never_collide, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_reseed_after_a_crash_half_way_finishes_the_move,
                                        dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_reseed_after_a_crash_late_keeps_the_old_markers,
                                        dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_reseed_refuses_to_overwrite_a_kept_item, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_reseed_without_epoch_refuses, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_seed_history_round_trip, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_writes_into_a_missing_directory_fail_with_reason,
                                        dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
