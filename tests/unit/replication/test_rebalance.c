/* Unit tests of capacity planning: the rebalance planner against brute force on small cases, its
 * determinism, constraints and idempotence; and the capacity and plan-apply commands as applied. */
#include "replication/rebalance/rebalance.h"

#include <errno.h>

#include "test_domain_fixture.h"

#define SEEDS              400 /* random small cases per brute-force test */
#define SMALL_JOBS_MAX     8
#define SMALL_SITES_MAX    3
#define SMALL_EFFORT_MAX   20
#define SMALL_CAPACITY_MAX 10
#define BRUTE_MAX          6561 /* 3^8 assignments */
#define HOUR               TANDEM_MS_PER_HOUR
#define T0                 DOM_T0

/* ---- small cases ---- */

struct small_case {
    struct tandem_rebalance_site sites[SMALL_SITES_MAX];
    struct tandem_rebalance_job jobs[SMALL_JOBS_MAX];
    struct tandem_rebalance_input in;
};

static uint64_t rng_state;

static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static uint32_t rng_below(uint32_t n)
{
    return rng() % n;
}

static void site_set(struct tandem_rebalance_site *s, const char *name, uint64_t capacity)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->capacity = capacity;
}

static void job_set(struct tandem_rebalance_job *j, const char *id, uint32_t site, uint64_t effort)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->site = site;
    j->effort = effort;
    j->queued = true;
    j->boxes_site = TANDEM_REBALANCE_BOXES_NONE;
}

/* A random case; constrained adds in-progress, pinned and box-bound jobs and due times. */
static void small_random(struct small_case *c, uint64_t seed, bool constrained, int objective)
{
    static const char *const names[] = {"east", "north", "west"};
    char id[16];
    rng_state = seed * 2654435761ULL + 17;
    memset(c, 0, sizeof *c);
    uint32_t k = 2 + rng_below(SMALL_SITES_MAX - 1);
    size_t n = 1 + rng_below(SMALL_JOBS_MAX);
    for (uint32_t s = 0; s < k; s++) {
        site_set(&c->sites[s], names[s], 1 + rng_below(SMALL_CAPACITY_MAX));
        if (constrained && rng_below(4) == 0) {
            c->sites[s].capacity = 0; /* under BCP, or never set: its queued work is stranded */
        }
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "J%02zu", (i * 7) % SMALL_JOBS_MAX + 10 * (seed % 3));
        job_set(&c->jobs[i], id, rng_below(k), 1 + rng_below(SMALL_EFFORT_MAX));
        c->jobs[i].priority = (int64_t)rng_below(3);
        if (objective == TANDEM_REBALANCE_DUE || (constrained && rng_below(2) == 0)) {
            c->jobs[i].has_due = rng_below(4) != 0;
            c->jobs[i].due_ms = T0 + (int64_t)rng_below(8 * HOUR);
        }
        if (constrained) {
            uint32_t r = rng_below(8);
            c->jobs[i].queued = r != 0;
            c->jobs[i].pinned = r == 1;
            c->jobs[i].boxes_site = r == 2 ? (int32_t)rng_below(k) : TANDEM_REBALANCE_BOXES_NONE;
        }
    }
    c->in = (struct tandem_rebalance_input){c->sites, k, c->jobs, n, objective, 100, T0};
}

/* ---- the objective, computed directly from an assignment ---- */

struct objective {
    uint64_t stranded_jobs, stranded_units;
    size_t at_risk;
    uint64_t units, capacity; /* the makespan as a fraction */
    size_t at_max;            /* sites at the makespan */
};

/* Sorts job indexes into queue order (insertion sort: small cases only). */
static void queue_order(const struct tandem_rebalance_input *in, size_t *order)
{
    for (size_t i = 0; i < in->n_jobs; i++) {
        order[i] = i;
    }
    for (size_t i = 1; i < in->n_jobs; i++) {
        for (size_t k = i; k > 0; k--) {
            const struct tandem_rebalance_job *a = &in->jobs[order[k - 1]],
                                              *b = &in->jobs[order[k]];
            bool swap = a->priority != b->priority             ? a->priority < b->priority
                        : a->has_due != b->has_due             ? b->has_due
                        : a->has_due && a->due_ms != b->due_ms ? a->due_ms > b->due_ms
                                                               : strcmp(a->id, b->id) > 0;
            if (!swap) {
                break;
            }
            size_t t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    }
}

static struct objective objective_of(const struct tandem_rebalance_input *in, const uint32_t *at)
{
    struct objective o = {0, 0, 0, 0, 1, 0};
    uint64_t load[TANDEM_REBALANCE_SITES_MAX] = {0};
    size_t order[SMALL_JOBS_MAX * 64];
    queue_order(in, order);
    for (size_t i = 0; i < in->n_jobs; i++) {
        const struct tandem_rebalance_job *j = &in->jobs[order[i]];
        uint32_t s = at[order[i]];
        uint64_t c = in->sites[s].capacity;
        load[s] += j->effort;
        if (c == 0) {
            o.stranded_jobs++;
            o.stranded_units += j->effort;
        }
        if (j->has_due && (c == 0 || (double)(j->due_ms - in->now_ms) * (double)c <
                                         (double)load[s] * (double)HOUR)) {
            o.at_risk++;
        }
    }
    for (uint32_t s = 0; s < in->n_sites; s++) {
        uint64_t c = in->sites[s].capacity;
        if (c == 0) {
            continue;
        }
        if (o.at_max == 0 || load[s] * o.capacity > o.units * c) {
            o.units = load[s];
            o.capacity = c;
            o.at_max = 1;
        } else if (load[s] * o.capacity == o.units * c) {
            o.at_max++;
        }
    }
    return o;
}

/* <0, 0, >0 as a is better than, equal to, worse than b under the objective. */
static int objective_compare(const struct objective *a, const struct objective *b, int objective)
{
    if (a->stranded_jobs != b->stranded_jobs) {
        return a->stranded_jobs < b->stranded_jobs ? -1 : 1;
    }
    if (a->stranded_units != b->stranded_units) {
        return a->stranded_units < b->stranded_units ? -1 : 1;
    }
    if (objective == TANDEM_REBALANCE_DUE && a->at_risk != b->at_risk) {
        return a->at_risk < b->at_risk ? -1 : 1;
    }
    if (a->units * b->capacity != b->units * a->capacity) {
        return a->units * b->capacity < b->units * a->capacity ? -1 : 1;
    }
    return a->at_max < b->at_max ? -1 : a->at_max > b->at_max ? 1 : 0;
}

static double makespan_hours(const struct objective *o)
{
    return (double)o->units / (double)o->capacity;
}

static void assignment_initial(const struct tandem_rebalance_input *in, uint32_t *at)
{
    for (size_t i = 0; i < in->n_jobs; i++) {
        at[i] = in->jobs[i].site;
    }
}

static bool may_move(const struct tandem_rebalance_input *in, size_t j, uint32_t to)
{
    const struct tandem_rebalance_job *x = &in->jobs[j];
    if (to == x->site) {
        return true;
    }
    return x->queued && !x->pinned && in->sites[to].capacity > 0 &&
           (x->boxes_site == TANDEM_REBALANCE_BOXES_NONE || x->boxes_site == (int32_t)to);
}

/* The best objective over every assignment the constraints allow. */
static struct objective brute_force(const struct tandem_rebalance_input *in)
{
    uint32_t at[SMALL_JOBS_MAX];
    struct objective best;
    bool found = false;
    size_t total = 1;
    for (size_t i = 0; i < in->n_jobs; i++) {
        total *= in->n_sites;
    }
    assert_true(total <= BRUTE_MAX);
    for (size_t code = 0; code < total; code++) {
        size_t rest = code;
        bool ok = true;
        for (size_t i = 0; i < in->n_jobs && ok; i++) {
            at[i] = (uint32_t)(rest % in->n_sites);
            rest /= in->n_sites;
            ok = may_move(in, i, at[i]);
        }
        if (!ok) {
            continue; /* at[] is only partly filled: never evaluate it */
        }
        struct objective o = objective_of(in, at);
        if (!found || objective_compare(&o, &best, in->objective) < 0) {
            best = o;
            found = true;
        }
    }
    assert_true(found);
    return best;
}

/* ---- plan helpers ---- */

static void plan_or_fail(const struct tandem_rebalance_input *in, struct tandem_rebalance_plan *p)
{
    char errmsg[256];
    int rv = tandem_rebalance_plan(in, p, errmsg);
    if (rv != 0) {
        fail_msg("plan: %s", errmsg);
    }
}

/* The assignment after the plan, checking every move against the constraints on the way. */
static void assignment_after(const struct tandem_rebalance_input *in,
                             const struct tandem_rebalance_plan *p, uint32_t *at)
{
    assignment_initial(in, at);
    assert_true(p->n_moves <= in->max_moves);
    for (size_t m = 0; m < p->n_moves; m++) {
        const struct tandem_rebalance_move *mv = &p->moves[m];
        const struct tandem_rebalance_job *x = &in->jobs[mv->job];
        assert_int_equal(mv->from, x->site);
        assert_int_not_equal(mv->from, mv->to);
        assert_true(x->queued);
        assert_false(x->pinned);
        assert_true(in->sites[mv->to].capacity > 0);
        assert_true(x->boxes_site == TANDEM_REBALANCE_BOXES_NONE ||
                    x->boxes_site == (int32_t)mv->to);
        for (size_t k = 0; k < m; k++) {
            assert_int_not_equal(p->moves[k].job, mv->job); /* each job once */
        }
        at[mv->job] = mv->to;
    }
}

/* Applies the moves in order and checks that each one strictly improves the objective. */
static void check_each_move_improves(const struct tandem_rebalance_input *in,
                                     const struct tandem_rebalance_plan *p)
{
    uint32_t at[SMALL_JOBS_MAX * 64];
    assignment_initial(in, at);
    struct objective before = objective_of(in, at);
    for (size_t m = 0; m < p->n_moves; m++) {
        at[p->moves[m].job] = p->moves[m].to;
        struct objective after = objective_of(in, at);
        if (objective_compare(&after, &before, in->objective) >= 0) {
            fail_msg("move %zu (job %s) does not improve the objective", m,
                     in->jobs[p->moves[m].job].id);
        }
        before = after;
    }
}

/* The input with every job at its planned site. */
static void input_after(const struct tandem_rebalance_input *in,
                        const struct tandem_rebalance_plan *p, struct tandem_rebalance_job *jobs)
{
    memcpy(jobs, in->jobs, in->n_jobs * sizeof *jobs);
    for (size_t m = 0; m < p->n_moves; m++) {
        jobs[p->moves[m].job].site = p->moves[m].to;
    }
}

/* ---- brute force ---- */

/* Makespan, no constraints: the stated bound is optimum + the largest job's hours at the
 * slowest site with capacity. */
static void test_makespan_against_brute_force(void **state)
{
    (void)state;
    size_t optimal = 0, re_moves = 0;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        struct small_case c;
        struct tandem_rebalance_plan p;
        uint32_t at[SMALL_JOBS_MAX];
        small_random(&c, seed, false, TANDEM_REBALANCE_MAKESPAN);
        plan_or_fail(&c.in, &p);
        assignment_after(&c.in, &p, at);
        struct objective got = objective_of(&c.in, at), best = brute_force(&c.in);
        uint64_t effort_max = 0, capacity_min = UINT64_MAX;
        for (size_t i = 0; i < c.in.n_jobs; i++) {
            effort_max = c.jobs[i].effort > effort_max ? c.jobs[i].effort : effort_max;
        }
        for (uint32_t s = 0; s < c.in.n_sites; s++) {
            capacity_min = c.sites[s].capacity < capacity_min ? c.sites[s].capacity : capacity_min;
        }
        double bound = makespan_hours(&best) + (double)effort_max / (double)capacity_min;
        if (makespan_hours(&got) > bound + 1e-9) {
            fail_msg("seed %llu: makespan %.4f h, optimum %.4f h, bound %.4f h",
                     (unsigned long long)seed, makespan_hours(&got), makespan_hours(&best), bound);
        }
        optimal += objective_compare(&got, &best, TANDEM_REBALANCE_MAKESPAN) == 0 ? 1 : 0;
        re_moves += p.steps != p.n_moves ? 1 : 0;
        if (p.steps == p.n_moves) {
            check_each_move_improves(&c.in, &p);
        }
        tandem_rebalance_plan_free(&p);
    }
    print_message("makespan: %zu of %d small cases optimal, %zu with a job moved twice\n", optimal,
                  SEEDS, re_moves);
}

/* With in-progress, pinned and box-bound jobs: the plan respects them, is never worse than
 * before, and stays within the same bound of the constrained optimum. */
static void test_constrained_against_brute_force(void **state)
{
    (void)state;
    for (int objective = 0; objective <= TANDEM_REBALANCE_DUE; objective++) {
        size_t optimal = 0;
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            struct small_case c;
            struct tandem_rebalance_plan p;
            uint32_t at[SMALL_JOBS_MAX], start[SMALL_JOBS_MAX];
            small_random(&c, seed + 1000, true, objective);
            plan_or_fail(&c.in, &p);
            assignment_after(&c.in, &p, at);
            assignment_initial(&c.in, start);
            struct objective got = objective_of(&c.in, at), before = objective_of(&c.in, start);
            struct objective best = brute_force(&c.in);
            assert_true(objective_compare(&got, &before, objective) <= 0);
            assert_true(objective_compare(&best, &got, objective) <= 0);
            assert_true(p.n_moves == 0 || objective_compare(&got, &before, objective) < 0);
            optimal += objective_compare(&got, &best, objective) == 0 ? 1 : 0;
            if (p.steps == p.n_moves) {
                check_each_move_improves(&c.in, &p);
            }
            tandem_rebalance_plan_free(&p);
        }
        print_message("%s, constrained: %zu of %d small cases optimal\n",
                      tandem_rebalance_objective_name(objective), optimal, SEEDS);
    }
}

/* Planning again over the state the plan leads to proposes nothing. */
static void test_idempotent(void **state)
{
    (void)state;
    for (int objective = 0; objective <= TANDEM_REBALANCE_DUE; objective++) {
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            struct small_case c;
            struct tandem_rebalance_plan p, again;
            struct tandem_rebalance_job jobs[SMALL_JOBS_MAX];
            small_random(&c, seed + 5000, seed % 2 == 0, objective);
            plan_or_fail(&c.in, &p);
            input_after(&c.in, &p, jobs);
            struct tandem_rebalance_input next = c.in;
            next.jobs = jobs;
            plan_or_fail(&next, &again);
            if (again.n_moves != 0) {
                fail_msg("%s seed %llu: %zu moves, then %zu more (first: %s)",
                         tandem_rebalance_objective_name(objective), (unsigned long long)seed,
                         p.n_moves, again.n_moves, jobs[again.moves[0].job].id);
            }
            tandem_rebalance_plan_free(&p);
            tandem_rebalance_plan_free(&again);
        }
    }
}

/* ---- determinism and constraints on larger inputs ---- */

#define WIDE_JOBS  600
#define WIDE_SITES 4

struct wide_case {
    struct tandem_rebalance_site sites[WIDE_SITES];
    struct tandem_rebalance_job jobs[WIDE_JOBS];
    struct tandem_rebalance_input in;
};

static void wide_random(struct wide_case *c, uint64_t seed, int objective)
{
    static const char *const names[WIDE_SITES] = {"east", "north", "south", "west"};
    rng_state = seed + 99;
    memset(c, 0, sizeof *c);
    for (uint32_t s = 0; s < WIDE_SITES; s++) {
        site_set(&c->sites[s], names[s], s == 2 ? 0 : 10 + rng_below(200));
    }
    for (size_t i = 0; i < WIDE_JOBS; i++) {
        char id[16];
        snprintf(id, sizeof id, "W%04zu", (i * 7919) % WIDE_JOBS);
        job_set(&c->jobs[i], id, rng_below(2) == 0 ? 0 : rng_below(WIDE_SITES),
                rng_below(5) == 0 ? 5 : 1 + rng_below(60));
        c->jobs[i].priority = (int64_t)rng_below(3);
        c->jobs[i].has_due = rng_below(3) != 0;
        c->jobs[i].due_ms = T0 + (int64_t)rng_below(40 * HOUR);
        uint32_t r = rng_below(10);
        c->jobs[i].queued = r != 0;
        c->jobs[i].pinned = r == 1;
        c->jobs[i].boxes_site = r == 2   ? (int32_t)rng_below(WIDE_SITES)
                                : r == 3 ? TANDEM_REBALANCE_BOXES_SPLIT
                                         : TANDEM_REBALANCE_BOXES_NONE;
    }
    c->in = (struct tandem_rebalance_input){
        c->sites, WIDE_SITES, c->jobs, WIDE_JOBS, objective, TANDEM_REBALANCE_MOVES_DEFAULT, T0};
}

/* The same input gives the same plan; so does the same jobs in another order (ties go by id). */
static void test_deterministic(void **state)
{
    (void)state;
    static struct wide_case c, shuffled;
    for (int objective = 0; objective <= TANDEM_REBALANCE_DUE; objective++) {
        struct tandem_rebalance_plan a, b, d;
        wide_random(&c, 7, objective);
        plan_or_fail(&c.in, &a);
        plan_or_fail(&c.in, &b);
        assert_int_equal(a.n_moves, b.n_moves);
        assert_memory_equal(a.moves, b.moves, a.n_moves * sizeof *a.moves);
        assert_memory_equal(a.sites, b.sites, sizeof a.sites);
        assert_true(a.n_moves > 10);
        shuffled = c;
        for (size_t i = WIDE_JOBS - 1; i > 0; i--) {
            size_t k = rng_below((uint32_t)i + 1);
            struct tandem_rebalance_job t = shuffled.jobs[i];
            shuffled.jobs[i] = shuffled.jobs[k];
            shuffled.jobs[k] = t;
        }
        shuffled.in.jobs = shuffled.jobs;
        plan_or_fail(&shuffled.in, &d);
        assert_int_equal(a.n_moves, d.n_moves);
        for (size_t m = 0; m < a.n_moves; m++) {
            assert_string_equal(c.jobs[a.moves[m].job].id, shuffled.jobs[d.moves[m].job].id);
            assert_int_equal(a.moves[m].to, d.moves[m].to);
        }
        tandem_rebalance_plan_free(&a);
        tandem_rebalance_plan_free(&b);
        tandem_rebalance_plan_free(&d);
    }
}

/* Only queued, unpinned jobs move, box-bound ones only to their boxes, nothing goes to a site
 * with capacity 0, max_moves holds, exclusions are listed by rule, and a second plan is empty. */
static void test_constraints(void **state)
{
    (void)state;
    static struct wide_case c;
    static struct tandem_rebalance_job after[WIDE_JOBS];
    static uint32_t at[WIDE_JOBS];
    for (int objective = 0; objective <= TANDEM_REBALANCE_DUE; objective++) {
        for (uint64_t seed = 0; seed < 20; seed++) {
            struct tandem_rebalance_plan p, again;
            wide_random(&c, seed, objective);
            c.in.max_moves = seed % 3 == 0 ? 7 : TANDEM_REBALANCE_MOVES_DEFAULT;
            plan_or_fail(&c.in, &p);
            assert_true(p.n_moves <= c.in.max_moves);
            for (size_t m = 0; m < p.n_moves; m++) {
                assert_true(c.sites[p.moves[m].to].capacity > 0); /* south has none */
                assert_int_not_equal(c.jobs[p.moves[m].job].boxes_site,
                                     TANDEM_REBALANCE_BOXES_SPLIT);
            }
            for (size_t i = 0; i < WIDE_JOBS; i++) {
                at[i] = c.jobs[i].site;
            }
            size_t pinned = 0, bound = 0;
            for (size_t e = 0; e < p.n_excluded; e++) {
                const struct tandem_rebalance_job *x = &c.jobs[p.excluded[e].job];
                assert_true(x->queued);
                assert_true(p.excluded[e].rule == TANDEM_REBALANCE_RULE_PINNED ? x->pinned
                                                                               : !x->pinned);
                pinned += x->pinned ? 1 : 0;
                bound += x->pinned ? 0 : 1;
                assert_true(e == 0 || strcmp(c.jobs[p.excluded[e - 1].job].id, x->id) < 0);
            }
            assert_true(pinned > 0 && bound > 0);
            if (c.in.max_moves == TANDEM_REBALANCE_MOVES_DEFAULT) {
                input_after(&c.in, &p, after);
                struct tandem_rebalance_input next = c.in;
                next.jobs = after;
                plan_or_fail(&next, &again);
                assert_int_equal(again.n_moves, 0);
                tandem_rebalance_plan_free(&again);
            }
            (void)at;
            tandem_rebalance_plan_free(&p);
        }
    }
}

/* The issue's example: east 100 units/h, west 50, 60 jobs of 5 units at east: the larger
 * backlog ends within one job (0.1 h at west) of the optimum 2.0 h. */
static void test_issue_example(void **state)
{
    (void)state;
    struct tandem_rebalance_site sites[2];
    static struct tandem_rebalance_job jobs[60];
    struct tandem_rebalance_plan p;
    site_set(&sites[0], "east", 100);
    site_set(&sites[1], "west", 50);
    for (size_t i = 0; i < 60; i++) {
        char id[16];
        snprintf(id, sizeof id, "J%02zu", i);
        job_set(&jobs[i], id, 0, 5);
    }
    struct tandem_rebalance_input in = {sites, 2, jobs, 60, TANDEM_REBALANCE_MAKESPAN, 1000, T0};
    plan_or_fail(&in, &p);
    assert_int_equal(p.n_moves, 20);
    assert_int_equal(p.sites[0].backlog_after, 200);
    assert_int_equal(p.sites[1].backlog_after, 100);
    assert_string_equal(jobs[p.moves[0].job].id, "J00"); /* equal efforts: smallest id first */
    check_each_move_improves(&in, &p);
    tandem_rebalance_plan_free(&p);
}

/* A site under BCP (capacity 0) gets nothing and its queued work leaves; when its capacity is
 * back, the plan moves work back to it (failback). */
static void test_failover_failback(void **state)
{
    (void)state;
    struct tandem_rebalance_site sites[2];
    static struct tandem_rebalance_job jobs[40], after[40];
    struct tandem_rebalance_plan out, back;
    site_set(&sites[0], "east", 100);
    site_set(&sites[1], "west", 0); /* invoked */
    for (size_t i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "J%02zu", i);
        job_set(&jobs[i], id, i < 20 ? 0 : 1, 5);
        jobs[i].queued = i != 39; /* in progress at west: stays, stranded */
    }
    struct tandem_rebalance_input in = {sites, 2, jobs, 40, TANDEM_REBALANCE_MAKESPAN, 1000, T0};
    plan_or_fail(&in, &out);
    assert_int_equal(out.n_moves, 19);
    for (size_t m = 0; m < out.n_moves; m++) {
        assert_int_equal(out.moves[m].to, 0);
        assert_int_equal(out.moves[m].reason, TANDEM_REBALANCE_REASON_CAPACITY);
    }
    input_after(&in, &out, after);
    sites[1].capacity = 100; /* revoked, active again */
    in.jobs = after;
    plan_or_fail(&in, &back);
    assert_true(back.n_moves >= 9);
    for (size_t m = 0; m < back.n_moves; m++) {
        assert_int_equal(back.moves[m].from, 0);
        assert_int_equal(back.moves[m].to, 1);
    }
    assert_int_equal(back.sites[0].backlog_after, 100);
    assert_int_equal(back.sites[1].backlog_after, 100);
    tandem_rebalance_plan_free(&out);
    tandem_rebalance_plan_free(&back);
}

/* Due objective: an at-risk job moves to where it makes its due time, and no job that was on
 * time there becomes late; risk is counted in queue order (priority, then due time). */
static void test_due_objective(void **state)
{
    (void)state;
    struct tandem_rebalance_site sites[2];
    struct tandem_rebalance_job jobs[4];
    struct tandem_rebalance_plan p;
    struct tandem_rebalance_site_result load[2];
    char errmsg[256];
    site_set(&sites[0], "east", 10);
    site_set(&sites[1], "west", 10);
    job_set(&jobs[0], "A", 0, 10); /* 1 h at east, first in the queue */
    jobs[0].priority = 1;
    job_set(&jobs[1], "B", 0, 10); /* 2 h: late for a 1.5 h due time */
    jobs[1].has_due = true;
    jobs[1].due_ms = T0 + HOUR + HOUR / 2;
    job_set(&jobs[2], "C", 1, 5); /* west: 0.5 h, due in 1 h */
    jobs[2].has_due = true;
    jobs[2].due_ms = T0 + HOUR;
    jobs[2].priority = 5;
    job_set(&jobs[3], "D", 1, 9); /* west, after C: 1.4 h */
    struct tandem_rebalance_input in = {sites, 2, jobs, 4, TANDEM_REBALANCE_DUE, 100, T0};
    assert_int_equal(tandem_rebalance_load(&in, load, errmsg), 0);
    assert_int_equal(load[0].at_risk_before, 1);
    assert_int_equal(load[1].at_risk_before, 0);
    plan_or_fail(&in, &p);
    assert_true(p.n_moves >= 1);
    assert_string_equal(jobs[p.moves[0].job].id, "B");
    assert_int_equal(p.moves[0].reason, TANDEM_REBALANCE_REASON_DUE);
    assert_int_equal(p.sites[0].at_risk_after + p.sites[1].at_risk_after, 0);
    tandem_rebalance_plan_free(&p);
    in.objective = TANDEM_REBALANCE_MAKESPAN; /* no move lowers 2 h, so B stays late */
    plan_or_fail(&in, &p);
    assert_int_equal(p.n_moves, 0);
    assert_int_equal(p.sites[0].at_risk_after, 1);
    tandem_rebalance_plan_free(&p);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct tandem_rebalance_site sites[2];
    struct tandem_rebalance_job jobs[2];
    struct tandem_rebalance_plan p;
    char errmsg[256];
    site_set(&sites[0], "east", 10);
    site_set(&sites[1], "east", 10);
    job_set(&jobs[0], "A", 0, 1);
    job_set(&jobs[1], "A", 0, 1);
    struct tandem_rebalance_input in = {sites, 2, jobs, 1, TANDEM_REBALANCE_MAKESPAN, 10, T0};
    assert_int_equal(tandem_rebalance_plan(&in, &p, errmsg), EINVAL);
    assert_non_null(strstr(errmsg, "twice"));
    snprintf(sites[1].name, sizeof sites[1].name, "west");
    in.n_jobs = 2;
    assert_int_equal(tandem_rebalance_plan(&in, &p, errmsg), EINVAL);
    assert_non_null(strstr(errmsg, "job A appears twice"));
    jobs[1].id[0] = 'B';
    jobs[1].site = 7;
    assert_int_equal(tandem_rebalance_plan(&in, &p, errmsg), EINVAL);
    in.n_sites = 0;
    assert_int_equal(tandem_rebalance_plan(&in, &p, errmsg), EINVAL);
}

/* ---- the commands, applied ---- */

struct rb_cmd {
    struct dom_cmd base;
    Tandem__CapacitySet capacity_set;
    Tandem__RebalanceApply apply;
    struct tandem_rebalance_moves moves;
    char id[TANDEM_REBALANCE_PLAN_ID_LEN + 1];
};

static Tandem__Command *rb_capacity(struct rb_cmd *c, const char *site, uint64_t capacity)
{
    Tandem__Command *command = dom_command(&c->base, "planner");
    tandem__capacity_set__init(&c->capacity_set);
    c->capacity_set.actor = &c->base.actor;
    c->capacity_set.site = (char *)site;
    c->capacity_set.capacity = capacity;
    command->body_case = TANDEM__COMMAND__BODY_CAPACITY_SET;
    command->capacity_set = &c->capacity_set;
    return command;
}

/* The apply command of a plan object, as the route builds it. */
static Tandem__Command *rb_apply(struct rb_cmd *c, json_t *plan)
{
    char errmsg[256];
    Tandem__Command *command = dom_command(&c->base, "planner");
    if (tandem_rebalance_moves_parse(json_object_get(plan, "moves"), &c->moves, errmsg) != 0) {
        fail_msg("moves: %s", errmsg);
    }
    snprintf(c->id, sizeof c->id, "%s", json_string_value(json_object_get(plan, "id")));
    tandem__rebalance_apply__init(&c->apply);
    c->apply.actor = &c->base.actor;
    c->apply.plan_id = c->id;
    c->apply.index = (uint64_t)json_integer_value(json_object_get(plan, "index"));
    c->apply.objective = (char *)json_string_value(json_object_get(plan, "objective"));
    c->apply.n_moves = c->moves.n;
    c->apply.moves = c->moves.ptrs;
    command->body_case = TANDEM__COMMAND__BODY_REBALANCE_APPLY;
    command->rebalance_apply = &c->apply;
    return command;
}

static void rb_job(struct dom *d, const char *id, const char *site, uint64_t effort)
{
    struct dom_cmd c;
    Tandem__Command *command = dom_job_create(&c, id, "acme", site, NULL);
    c.job.effort = effort;
    dom_apply_expect(d, command, 201);
}

/* The plan over the stored state, as GET /v1/rebalance/plan computes it. */
static json_t *rb_plan(struct dom *d, int objective, char **text)
{
    struct tandem_rebalance_view view;
    char errmsg[256];
    int status = 0;
    MDB_txn *txn = dom_read(d);
    int rv = tandem_rebalance_view_read(&d->store, txn, &view);
    mdb_txn_abort(txn);
    if (rv != 0) {
        fail_msg("view: %s", d->store.errmsg);
    }
    assert_int_equal(view.index, d->index);
    json_t *plan = tandem_rebalance_plan_json(&view, objective, TANDEM_REBALANCE_MOVES_DEFAULT, T0,
                                              &status, errmsg);
    tandem_rebalance_view_free(&view);
    if (plan == NULL) {
        fail_msg("plan: %d %s", status, errmsg);
    }
    *text = json_dumps(plan, JSON_COMPACT | JSON_SORT_KEYS);
    return plan;
}

static const char *job_site(struct dom *d, const char *id, char *out)
{
    Tandem__JobRecord *job = NULL;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_job_get(&d->store, txn, id, &job), 0);
    assert_non_null(job);
    snprintf(out, TANDEM_SITE_LEN_MAX + 1, "%s", job->site);
    tandem__job_record__free_unpacked(job, NULL);
    mdb_txn_abort(txn);
    return out;
}

static int setup(void **state)
{
    struct dom *d = calloc(1, sizeof *d);
    assert_non_null(d);
    dom_open(d);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dom *d = *state;
    dom_close(d);
    free(d);
    return 0;
}

static void test_capacity_set_and_history(void **state)
{
    struct dom *d = *state;
    struct rb_cmd c;
    dom_apply_expect(d, rb_capacity(&c, "east", 100), 200);
    d->now_ms += 1000;
    dom_apply_expect(d, rb_capacity(&c, "east", 100), 200); /* unchanged: no history row */
    json_t *body = dom_body(d);
    assert_false(json_is_true(json_object_get(body, "changed")));
    json_decref(body);
    dom_apply_expect(d, rb_capacity(&c, "east", 60), 200);
    dom_apply_expect(d, rb_capacity(&c, "witness", 10), 409);
    dom_apply_expect(d, rb_capacity(&c, "east", (uint64_t)TANDEM_SITE_CAPACITY_MAX + 1), 400);
    dom_apply_expect(d, rb_capacity(&c, "no/site", 1), 400);
    MDB_txn *txn = dom_read(d);
    json_t *history = tandem_capacity_history_json(&d->store, txn, "east", 10);
    json_t *none = tandem_capacity_history_json(&d->store, txn, "west", 10);
    mdb_txn_abort(txn);
    assert_non_null(history);
    assert_int_equal(json_array_size(history), 2);
    assert_int_equal(json_array_size(none), 0);
    json_t *newest = json_array_get(history, 0), *oldest = json_array_get(history, 1);
    assert_int_equal(json_integer_value(json_object_get(newest, "old")), 100);
    assert_int_equal(json_integer_value(json_object_get(newest, "new")), 60);
    assert_string_equal(json_string_value(json_object_get(newest, "by")), "planner");
    assert_string_equal(json_string_value(json_object_get(newest, "at")), "2023-11-14T22:13:21Z");
    assert_true(json_is_null(json_object_get(oldest, "old")));
    json_decref(history);
    json_decref(none);
}

/* Plan, apply (jobs move, each with a trace event), plan again (nothing), then a plan whose job
 * is put on hold before apply is refused with 409 and changes nothing. */
static void test_plan_apply_and_stale(void **state)
{
    struct dom *d = *state;
    struct rb_cmd c, hold;
    char *text, *again_text, site[TANDEM_SITE_LEN_MAX + 1];
    dom_apply_expect(d, rb_capacity(&c, "east", 100), 200);
    dom_apply_expect(d, rb_capacity(&c, "west", 50), 200);
    for (int i = 0; i < 60; i++) {
        char id[16];
        snprintf(id, sizeof id, "R%02d", i);
        rb_job(d, id, "east", 5);
    }
    json_t *plan = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &text);
    json_t *same = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &again_text);
    assert_string_equal(text, again_text); /* byte-identical */
    assert_int_equal(json_array_size(json_object_get(plan, "moves")), 20);
    dom_apply_expect(d, rb_apply(&c, plan), 200);
    tandem_rebalance_moves_free(&c.moves);
    assert_string_equal(job_site(d, "R00", site), "west");
    dom_check_indexes(d);
    MDB_txn *txn = dom_read(d);
    json_t *events = json_array();
    uint64_t next;
    assert_int_equal(tandem_trace_list(&d->store, txn, "job", "R00", 0, 10, events, &next), 0);
    mdb_txn_abort(txn);
    json_t *last = json_array_get(events, json_array_size(events) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "action")), "rebalance");
    json_decref(events);
    free(text);
    free(again_text);
    json_decref(plan);
    json_decref(same);

    plan = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &text);
    assert_int_equal(json_array_size(json_object_get(plan, "moves")), 0);
    json_decref(plan);
    free(text);

    for (int i = 0; i < 15; i++) {
        char id[16];
        snprintf(id, sizeof id, "S%02d", i);
        rb_job(d, id, "east", 5);
    }
    plan = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &text);
    json_t *moves = json_object_get(plan, "moves");
    assert_true(json_array_size(moves) >= 2);
    const char *held = json_string_value(json_object_get(json_array_get(moves, 1), "job"));
    dom_apply_expect(d, dom_job_action(&hold.base, held, TANDEM_JOB_ACTION_HOLD, NULL), 200);
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    dom_digest(d, before);
    dom_apply_expect(d, rb_apply(&c, plan), 409);
    char expected[256];
    snprintf(expected, sizeof expected,
             "{\"error\":\"plan is stale: job %s changed since index %lld; compute a new plan\"}",
             held, (long long)json_integer_value(json_object_get(plan, "index")));
    assert_string_equal(d->results[0].body, expected);
    dom_digest(d, after);
    assert_memory_equal(before, after, sizeof before); /* nothing changed */
    tandem_rebalance_moves_free(&c.moves);

    /* A forged plan: moves that do not hash to the id. */
    json_array_remove(moves, 0);
    dom_apply_expect(d, rb_apply(&c, plan), 400);
    tandem_rebalance_moves_free(&c.moves);
    json_decref(plan);
    free(text);
}

/* A capacity change after the plan, or a box of a moved job going elsewhere, makes it stale. */
static void test_stale_capacity_and_boxes(void **state)
{
    struct dom *d = *state;
    struct rb_cmd c;
    struct dom_cmd b;
    char *text;
    dom_apply_expect(d, rb_capacity(&c, "east", 10), 200);
    dom_apply_expect(d, rb_capacity(&c, "west", 10), 200);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "J%d", i);
        rb_job(d, id, "east", 10);
    }
    json_t *plan = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &text);
    assert_int_equal(json_array_size(json_object_get(plan, "moves")), 2);
    dom_apply_expect(d, rb_capacity(&c, "west", 20), 200);
    dom_apply_expect(d, rb_apply(&c, plan), 409);
    assert_non_null(strstr(d->results[0].body, "capacity of site west changed"));
    tandem_rebalance_moves_free(&c.moves);
    json_decref(plan);
    free(text);

    plan = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &text);
    char moved[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    snprintf(moved, sizeof moved, "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(plan, "moves"), 0), "job")));
    dom_apply_expect(d, dom_box_checkin(&b, "BOX1", "acme", "east", "A1"), 201);
    dom_apply_expect(d, dom_box_action(&b, "BOX1", TANDEM_BOX_ACTION_PICK, moved, NULL, NULL), 200);
    dom_apply_expect(d, rb_apply(&c, plan), 409); /* the pick changed the job, too */
    tandem_rebalance_moves_free(&c.moves);
    json_decref(plan);
    free(text);

    /* Planned now, the job with its box at east is excluded and stays. */
    plan = rb_plan(d, TANDEM_REBALANCE_MAKESPAN, &text);
    json_t *excluded = json_array_get(json_object_get(plan, "excluded"), 0);
    assert_string_equal(json_string_value(json_object_get(excluded, "job")), moved);
    assert_string_equal(json_string_value(json_object_get(excluded, "rule")), "boxes_at_site");
    json_t *m;
    size_t i;
    json_array_foreach(json_object_get(plan, "moves"), i, m)
    {
        assert_string_not_equal(json_string_value(json_object_get(m, "job")), moved);
    }
    dom_apply_expect(d, rb_apply(&c, plan), 200);
    tandem_rebalance_moves_free(&c.moves);
    json_decref(plan);
    free(text);
}

static void test_sites_view(void **state)
{
    struct dom *d = *state;
    struct rb_cmd c;
    struct dom_cmd j;
    struct tandem_rebalance_view view;
    char errmsg[256];
    dom_apply_expect(d, rb_capacity(&c, "east", 10), 200);
    rb_job(d, "A", "east", 30);
    Tandem__Command *late = dom_job_create(&j, "B", "acme", "north", NULL);
    j.job.effort = 4;
    j.job.has_due = true;
    j.job.due_ms = T0 + HOUR;
    dom_apply_expect(d, late, 201);
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_rebalance_view_read(&d->store, txn, &view), 0);
    mdb_txn_abort(txn);
    json_t *out = tandem_rebalance_sites_json(&view, T0, errmsg);
    tandem_rebalance_view_free(&view);
    assert_non_null(out);
    json_t *sites = json_object_get(out, "sites");
    assert_int_equal(json_array_size(sites), 2); /* east (capacity set), north (a job) */
    json_t *east = json_array_get(sites, 0), *north = json_array_get(sites, 1);
    assert_string_equal(json_string_value(json_object_get(east, "name")), "east");
    assert_true(json_real_value(json_object_get(east, "backlog_hours")) == 3.0);
    assert_int_equal(json_integer_value(json_object_get(east, "jobs_queued")), 1);
    assert_true(json_is_null(json_object_get(north, "backlog_hours"))); /* never finishes */
    assert_true(json_is_null(json_object_get(north, "capacity_configured")));
    assert_int_equal(json_integer_value(json_object_get(north, "jobs_at_risk")), 1);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_makespan_against_brute_force),
        cmocka_unit_test(test_constrained_against_brute_force),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_constraints),
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_failover_failback),
        cmocka_unit_test(test_due_objective),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test_setup_teardown(test_capacity_set_and_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_apply_and_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_capacity_and_boxes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sites_view, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
