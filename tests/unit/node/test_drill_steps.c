/* Tests of the BCP step tables run through storage/sm.h: every allowed and every refused move of
 * the drill and of member rejoin, their names and end states, the sequences they take, and that a
 * refused move aborts the process; and the drill's rto_ms measure. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/bcp/drill.h"
#include "node/bcp/rejoin.h"
#include "storage/sm.h"

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
    {J(REMOVE), J(RESEED)}, {J(RESEED), J(BACK)}, {J(BACK), J(ADD)},      {J(ADD), J(ASSIGN)},
    {J(ASSIGN), J(RECORD)}, {J(RECORD), J(DONE)}, {J(REMOVE), J(FAILED)}, {J(RESEED), J(FAILED)},
    {J(BACK), J(FAILED)},   {J(ADD), J(FAILED)},  {J(ASSIGN), J(FAILED)}, {J(RECORD), J(FAILED)},
};

/* The names, starts and ends, written out independently of drill.c's and rejoin.c's tables. */
static const char *const drill_names[] = {
    "preflight", "warmup",   "invoke",   "takeover", "digest_after_invoke", "hold",
    "revoke",    "failback", "cooldown", "drain",    "digest_after_revoke", "verify",
    "store",     "done",
};
static const char *const rejoin_names[] = {"remove", "reseed", "back", "add",
                                           "assign", "record", "done", "failed"};

struct machine {
    const char *name;
    const struct tandem_sm_conf *conf;
    int count;
    const int (*moves)[2];
    size_t n_moves;
    const char *const *names;
    int initial;   /* the one start */
    int finals[2]; /* the end states */
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Refused in the preflight, or done; a rejoin is done or failed. */
static const struct machine drill = {"drill",      tandem_drill_sm_conf,   TANDEM_DRILL_STEPS,
                                     drill_moves,  COUNT(drill_moves),     drill_names,
                                     D(PREFLIGHT), {D(PREFLIGHT), D(DONE)}};
static const struct machine rejoin = {"rejoin",     tandem_rejoin_sm_conf, TANDEM_REJOIN_STEPS,
                                      rejoin_moves, COUNT(rejoin_moves),   rejoin_names,
                                      J(REMOVE),    {J(DONE), J(FAILED)}};

static bool listed(const struct machine *m, int from, int to)
{
    for (size_t i = 0; i < m->n_moves; i++) {
        if (m->moves[i][0] == from && m->moves[i][1] == to) {
            return true;
        }
    }
    return false;
}

/* A machine on m's table, without the orchestration's invariant (no orchestration object). */
static void sm_start(struct tandem_sm *sm, const struct machine *m, int initial)
{
    tandem_sm_init(sm, m->name, m->conf, m->count, initial, NULL, NULL);
}

/* Puts sm at state as if it had got there: the table's rows are tested one by one. */
static void sm_place(struct tandem_sm *sm, int state)
{
    sm->state = state;
}

static void check_table(const struct machine *m)
{
    struct tandem_sm sm;
    sm_start(&sm, m, m->initial);
    for (int from = 0; from < m->count; from++) {
        sm_place(&sm, from);
        for (int to = -1; to <= m->count; to++) {
            bool want = listed(m, from, to);
            if (tandem_sm_allowed(&sm, to) != want) {
                fail_msg("%s: %s -> %s should be %s", m->name, tandem_sm_state_name(&sm, from),
                         tandem_sm_state_name(&sm, to), want ? "allowed" : "refused");
            }
        }
    }
}

static void check_names_and_ends(const struct machine *m)
{
    struct tandem_sm sm;
    sm_start(&sm, m, m->initial);
    for (int step = 0; step < m->count; step++) {
        assert_string_equal(tandem_sm_state_name(&sm, step), m->names[step]);
        bool initial = step == m->initial;
        bool final = step == m->finals[0] || step == m->finals[1];
        assert_int_equal((m->conf[step].flags & TANDEM_SM_INITIAL) != 0, initial);
        assert_int_equal((m->conf[step].flags & TANDEM_SM_FINAL) != 0, final);
    }
    assert_string_equal(tandem_sm_state_name(&sm, m->count), "?");
    assert_string_equal(tandem_sm_state_name(&sm, -1), "?");
}

static void test_drill_table(void **state)
{
    (void)state;
    check_table(&drill);
    check_names_and_ends(&drill);
}

static void test_rejoin_table(void **state)
{
    (void)state;
    check_table(&rejoin);
    check_names_and_ends(&rejoin);
}

/* Walks steps from its first (an initial state) and ends the machine in its last. */
static void walk(const struct machine *m, const int *steps, size_t n)
{
    struct tandem_sm sm;
    sm_start(&sm, m, steps[0]);
    for (size_t i = 1; i < n; i++) {
        tandem_sm_move(&sm, steps[i]);
        assert_int_equal(tandem_sm_state(&sm), steps[i]);
    }
    assert_int_equal(sm.moves, n - 1);
    tandem_sm_fini(&sm);
}

/* A drill that goes well visits every step once, in declaration order. */
static void test_drill_sequences(void **state)
{
    (void)state;
    int good[TANDEM_DRILL_STEPS];
    for (int i = 0; i < TANDEM_DRILL_STEPS; i++) {
        good[i] = i;
    }
    walk(&drill, good, TANDEM_DRILL_STEPS);
    /* the takeover never completes: revoke, drain, verify and store without digest checks */
    const int late[] = {D(PREFLIGHT), D(WARMUP), D(INVOKE), D(TAKEOVER), D(REVOKE),
                        D(FAILBACK),  D(DRAIN),  D(VERIFY), D(STORE),    D(DONE)};
    walk(&drill, late, COUNT(late));
    /* the invoke is refused: nothing to revoke */
    const int refused[] = {D(PREFLIGHT), D(WARMUP), D(INVOKE), D(DRAIN),
                           D(VERIFY),    D(STORE),  D(DONE)};
    walk(&drill, refused, COUNT(refused));
    /* refused in the preflight: the drill ends where it started */
    const int early[] = {D(PREFLIGHT)};
    walk(&drill, early, 1);
}

static void test_rejoin_sequences(void **state)
{
    (void)state;
    const int member[] = {J(REMOVE), J(RESEED), J(BACK), J(ADD), J(ASSIGN), J(RECORD), J(DONE)};
    walk(&rejoin, member, COUNT(member));
    const int gone_member[] = {J(REMOVE), J(RESEED), J(FAILED)};
    walk(&rejoin, gone_member, COUNT(gone_member));
}

enum attempt { MOVE, END, START };

/* The signal that ended child pid, or 0 when it exited. */
static int death_signal(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* Tries, in a child, to move m from `from` to `to`, to end it in `from`, or to start it in
 * `from`: the child must die of SIGABRT (tandem_assert). */
static void expect_abort(const struct machine *m, enum attempt what, int from, int to)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct tandem_sm sm;
        sm_start(&sm, m, what == START ? from : m->initial);
        sm_place(&sm, from);
        if (what == END) {
            tandem_sm_fini(&sm);
        } else if (what == MOVE) {
            tandem_sm_move(&sm, to);
        }
        _exit(0); /* reached only if the attempt was wrongly allowed */
    }
    assert_int_equal(death_signal(pid), SIGABRT);
}

static void test_refused_move_aborts(void **state)
{
    (void)state;
    expect_abort(&drill, MOVE, D(PREFLIGHT), D(INVOKE)); /* skipping the warm-up */
    expect_abort(&drill, MOVE, D(DONE), D(PREFLIGHT));   /* no move out of done */
    expect_abort(&drill, MOVE, D(HOLD), D(HOLD));        /* no move to itself */
    expect_abort(&rejoin, MOVE, J(REMOVE), J(ADD));      /* re-adding before the wipe */
    expect_abort(&rejoin, MOVE, J(FAILED), J(DONE));
}

/* A machine starts and ends only where its table says. */
static void test_refused_start_and_end_abort(void **state)
{
    (void)state;
    expect_abort(&drill, END, D(HOLD), -1); /* no end in the middle */
    expect_abort(&rejoin, END, J(BACK), -1);
    expect_abort(&drill, START, D(INVOKE), -1);
    expect_abort(&rejoin, START, J(ADD), -1);
}

#define SPAN(from, to) ((struct tandem_drill_span){(from), (to)})
#define ALL            SPAN(0, UINT64_MAX)

/* rto_ms: a probe sent before the digest pause and acknowledged inside it must not make the
 * pause a gap (the measure counted 1,460 ms while an outside writer saw 18 ms). */
static void test_gap_probe_acked_inside_pause(void **state)
{
    (void)state;
    uint64_t acks[] = {1000, 1020, 1040, 1055, 2010, 2030}; /* pause [1050, 2000) */
    assert_int_equal(tandem_drill_longest_gap(acks, 6, ALL, SPAN(1050, 2000)), 20);
}

static void test_gap_across_pause_counts_both_sides(void **state)
{
    (void)state;
    uint64_t acks[] = {2060, 1000, 1040}; /* unsorted on purpose; pause [1050, 2000) */
    /* 10 ms before the pause and 60 ms after it: the first probe after the pause took 60 ms */
    assert_int_equal(tandem_drill_longest_gap(acks, 3, ALL, SPAN(1050, 2000)), 70);
    assert_int_equal(acks[0], 1000);
}

static void test_gap_outside_pause_is_kept(void **state)
{
    (void)state;
    uint64_t acks[] = {1000, 1020, 1820, 1840, 3000, 3020};
    assert_int_equal(tandem_drill_longest_gap(acks, 6, ALL, SPAN(2000, 2990)), 800);
    uint64_t none[] = {1000, 1020, 1820};
    assert_int_equal(tandem_drill_longest_gap(none, 3, ALL, SPAN(0, 0)), 800); /* no pause */
    assert_int_equal(tandem_drill_longest_gap(none, 1, ALL, SPAN(0, 0)), 0);
    assert_int_equal(tandem_drill_longest_gap(none, 0, ALL, SPAN(0, 0)), 0);
}

/* Only gaps that meet a switchover's span count: a slow write while nothing switched over is
 * no takeover. */
static void test_gap_only_during_the_switchover(void **state)
{
    (void)state;
    uint64_t acks[] = {1000, 1300, 1940, 1960, 2340, 2360}; /* slow: 300 and 640 ms */
    /* invoke sent at 1950, takeover complete at 2330: the 380 ms gap from 1960 */
    assert_int_equal(tandem_drill_longest_gap(acks, 6, SPAN(1950, 2330), SPAN(0, 0)), 380);
    /* a gap that began before the change was sent and ended after counts whole */
    assert_int_equal(tandem_drill_longest_gap(acks, 6, SPAN(1100, 1200), SPAN(0, 0)), 300);
    assert_int_equal(tandem_drill_longest_gap(acks, 6, SPAN(3000, 3100), SPAN(0, 0)), 0);
}

/* The report's latency series: probes grouped by send time, the longest acknowledged latency
 * per bucket, failures counted apart, empty buckets left out, the bucket at least 20 ms. */
static void test_latency_series(void **state)
{
    (void)state;
    const struct tandem_drill_probe_sample probes[] = {
        {1000, 1012, true}, {1010, 1050, true},  {1030, 1031, false},
        {1100, 1110, true}, {1101, 1400, false},
    };
    json_t *series = tandem_drill_latency_series(probes, 5, 1000, 1200);
    assert_non_null(series);
    assert_int_equal(json_integer_value(json_object_get(series, "bucket_ms")), 20);
    char *text = json_dumps(json_object_get(series, "points"), JSON_COMPACT);
    assert_string_equal(text, "[[0,40,2,0],[20,null,0,1],[100,10,1,1]]");
    free(text);
    json_decref(series);
    /* A long drill: at most TANDEM_DRILL_LATENCY_POINTS_MAX + 1 buckets of a wider span. */
    struct tandem_drill_probe_sample many[2000];
    for (unsigned i = 0; i < 2000; i++) {
        many[i] = (struct tandem_drill_probe_sample){i * 30, i * 30 + 5, true};
    }
    series = tandem_drill_latency_series(many, 2000, 0, 60000);
    assert_int_equal(json_integer_value(json_object_get(series, "bucket_ms")), 250);
    assert_true(json_array_size(json_object_get(series, "points")) <=
                TANDEM_DRILL_LATENCY_POINTS_MAX + 1);
    json_decref(series);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drill_table),
        cmocka_unit_test(test_rejoin_table),
        cmocka_unit_test(test_drill_sequences),
        cmocka_unit_test(test_rejoin_sequences),
        cmocka_unit_test(test_refused_move_aborts),
        cmocka_unit_test(test_refused_start_and_end_abort),
        cmocka_unit_test(test_gap_probe_acked_inside_pause),
        cmocka_unit_test(test_gap_across_pause_counts_both_sides),
        cmocka_unit_test(test_gap_outside_pause_is_kept),
        cmocka_unit_test(test_gap_only_during_the_switchover),
        cmocka_unit_test(test_latency_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
