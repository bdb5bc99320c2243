/* The rebalance planner: a pure, deterministic greedy over queued jobs and site capacities that
 * moves stranded work, then at-risk work (due objective), then balances backlog hours. */
#include "replication/rebalance/rebalance.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/domain/domain.h"
#include "storage/error.h"

/* Exact arithmetic: loads reach 1e15 units and capacities 1e9, so products need 128 bits. */
__extension__ typedef __int128 wide;

#define SENTINEL      ((int64_t)1 << 62) /* "no job here" in the due trees; far past any slack */
#define SENTINEL_HALF ((int64_t)1 << 61)
#define SLACK_CLAMP   ((int64_t)1 << 60)
#define STEPS_SLACK   64 /* steps beyond 4 x max_moves (re-moves cost steps, not moves) */
#define NO_MOVE       SIZE_MAX

enum list_kind { LIST_NONE = 0, LIST_FREE = 1, LIST_BOUND = 2 };

const char *tandem_rebalance_objective_name(int objective)
{
    return objective == TANDEM_REBALANCE_DUE ? "due" : "makespan";
}

int tandem_rebalance_objective_parse(const char *name)
{
    if (name != NULL && strcmp(name, "makespan") == 0) {
        return TANDEM_REBALANCE_MAKESPAN;
    }
    if (name != NULL && strcmp(name, "due") == 0) {
        return TANDEM_REBALANCE_DUE;
    }
    return -1;
}

const char *tandem_rebalance_rule_name(int rule)
{
    return rule == TANDEM_REBALANCE_RULE_PINNED ? "pinned" : "boxes_at_site";
}

const char *tandem_rebalance_reason_name(int reason)
{
    static const char *const names[] = {
        [TANDEM_REBALANCE_REASON_CAPACITY] = "no_capacity",
        [TANDEM_REBALANCE_REASON_MAKESPAN] = "makespan",
        [TANDEM_REBALANCE_REASON_DUE] = "due",
    };
    /* Anything else is what the planner moves for when no rule names it: the makespan. */
    return reason >= 0 && (size_t)reason < sizeof names / sizeof names[0]
               ? names[reason]
               : names[TANDEM_REBALANCE_REASON_MAKESPAN];
}

/* ---- Fenwick trees: alive counts of candidate lists, units per queue position ---- */

struct fenwick {
    int64_t *tree; /* borrowed slice of n + 1 entries, 1-based */
    size_t n;
    size_t top; /* highest power of two <= n */
};

static void fenwick_init(struct fenwick *f, int64_t *tree, size_t n)
{
    f->tree = tree;
    f->n = n;
    f->top = 1;
    while (f->top * 2 <= n) {
        f->top *= 2;
    }
}

static size_t low_bit(size_t i)
{
    return i & (~i + 1);
}

static void fenwick_add(struct fenwick *f, size_t index, int64_t value)
{
    for (size_t i = index + 1; i <= f->n; i += low_bit(i)) {
        f->tree[i] += value;
    }
}

/* Sum of the first count entries. */
static int64_t fenwick_prefix(const struct fenwick *f, size_t count)
{
    int64_t sum = 0;
    for (size_t i = count; i > 0; i -= low_bit(i)) {
        sum += f->tree[i];
    }
    return sum;
}

/* The index whose prefix first reaches k (k >= 1, entries 0 or 1). */
static size_t fenwick_find(const struct fenwick *f, int64_t k)
{
    size_t pos = 0;
    for (size_t step = f->top; step > 0 && f->n > 0; step /= 2) {
        size_t next = pos + step;
        if (next <= f->n && f->tree[next] < k) {
            pos = next;
            k -= f->tree[next];
        }
    }
    return pos;
}

/* ---- the due trees: per site, over queue positions, the least slack of jobs on time and the
 * largest slack of jobs at risk (slack < 0), with a lazy add for "everything after moved" ---- */

struct due_node {
    int64_t on_time_min, at_risk_max, lazy;
};

struct due_tree {
    struct due_node *nodes; /* owned; 4n */
    size_t n;
};

static void due_apply(struct due_node *node, int64_t value)
{
    node->on_time_min += value;
    node->at_risk_max += value;
    node->lazy += value;
}

static void due_push(struct due_tree *t, size_t at)
{
    if (t->nodes[at].lazy != 0) {
        due_apply(&t->nodes[2 * at], t->nodes[at].lazy);
        due_apply(&t->nodes[2 * at + 1], t->nodes[at].lazy);
        t->nodes[at].lazy = 0;
    }
}

static void due_pull(struct due_tree *t, size_t at)
{
    const struct due_node *l = &t->nodes[2 * at], *r = &t->nodes[2 * at + 1];
    t->nodes[at].on_time_min = l->on_time_min < r->on_time_min ? l->on_time_min : r->on_time_min;
    t->nodes[at].at_risk_max = l->at_risk_max > r->at_risk_max ? l->at_risk_max : r->at_risk_max;
}

/* slack[i]: the leaf's slack, or SENTINEL where no job with a due time sits. */
static void due_build(struct due_tree *t, size_t at, size_t lo, size_t hi, const int64_t *slack)
{
    t->nodes[at].lazy = 0;
    if (lo == hi) {
        bool here = slack[lo] != SENTINEL;
        t->nodes[at].on_time_min = here && slack[lo] >= 0 ? slack[lo] : SENTINEL;
        t->nodes[at].at_risk_max = here && slack[lo] < 0 ? slack[lo] : -SENTINEL;
        return;
    }
    size_t mid = lo + (hi - lo) / 2;
    due_build(t, 2 * at, lo, mid, slack);
    due_build(t, 2 * at + 1, mid + 1, hi, slack);
    due_pull(t, at);
}

static void due_add(struct due_tree *t, size_t at, size_t lo, size_t hi, size_t l, size_t r,
                    int64_t value)
{
    if (r < lo || hi < l) {
        return;
    }
    if (l <= lo && hi <= r) {
        due_apply(&t->nodes[at], value);
        return;
    }
    due_push(t, at);
    size_t mid = lo + (hi - lo) / 2;
    due_add(t, 2 * at, lo, mid, l, r, value);
    due_add(t, 2 * at + 1, mid + 1, hi, l, r, value);
    due_pull(t, at);
}

/* Sets one leaf: slack of a job now there, or SENTINEL for none. */
static void due_set(struct due_tree *t, size_t at, size_t lo, size_t hi, size_t p, int64_t slack)
{
    if (lo == hi) {
        t->nodes[at].lazy = 0;
        t->nodes[at].on_time_min = slack != SENTINEL && slack >= 0 ? slack : SENTINEL;
        t->nodes[at].at_risk_max = slack != SENTINEL && slack < 0 ? slack : -SENTINEL;
        return;
    }
    due_push(t, at);
    size_t mid = lo + (hi - lo) / 2;
    if (p <= mid) {
        due_set(t, 2 * at, lo, mid, p, slack);
    } else {
        due_set(t, 2 * at + 1, mid + 1, hi, p, slack);
    }
    due_pull(t, at);
}

/* The least on-time slack in [l, r] (SENTINEL-ish when none). */
static int64_t due_min(struct due_tree *t, size_t at, size_t lo, size_t hi, size_t l, size_t r)
{
    if (r < lo || hi < l) {
        return SENTINEL;
    }
    if (l <= lo && hi <= r) {
        return t->nodes[at].on_time_min;
    }
    due_push(t, at);
    size_t mid = lo + (hi - lo) / 2;
    int64_t a = due_min(t, 2 * at, lo, mid, l, r), b = due_min(t, 2 * at + 1, mid + 1, hi, l, r);
    return a < b ? a : b;
}

/* The leftmost leaf in [l, r] marked at risk whose slack is now >= 0, or SIZE_MAX. */
static size_t due_find_rescued(struct due_tree *t, size_t at, size_t lo, size_t hi, size_t l,
                               size_t r, int64_t *slack)
{
    if (r < lo || hi < l || t->nodes[at].at_risk_max < 0) {
        return SIZE_MAX;
    }
    if (lo == hi) {
        *slack = t->nodes[at].at_risk_max;
        return lo;
    }
    due_push(t, at);
    size_t mid = lo + (hi - lo) / 2;
    size_t found = due_find_rescued(t, 2 * at, lo, mid, l, r, slack);
    return found != SIZE_MAX ? found : due_find_rescued(t, 2 * at + 1, mid + 1, hi, l, r, slack);
}

/* ---- the planner's working state ---- */

struct cand_list {
    const size_t *jobs;   /* borrowed: job indexes sorted by (effort, id) */
    struct fenwick alive; /* 1 where the job sits at the list's source site */
};

struct planner {
    const struct tandem_rebalance_input *in;
    uint32_t k;
    uint32_t *at;                        /* owned: current site per job */
    size_t *move_of;                     /* owned: index into moves, NO_MOVE */
    struct tandem_rebalance_move *moves; /* owned; dead ones have to == from */
    size_t n_moves, live_moves, steps, steps_max;
    uint64_t load[TANDEM_REBALANCE_SITES_MAX];
    size_t *order; /* owned: queue order of all jobs */
    size_t *pos;   /* owned: position of each job in order */
    /* balancing lists: free jobs (any site) and box-bound jobs (source -> box site) */
    uint8_t *kind;     /* owned: enum list_kind per job */
    size_t *list_pos;  /* owned: a job's index in its list */
    size_t *free_jobs; /* owned */
    size_t n_free;
    size_t *bound_jobs; /* owned; grouped by (source, destination) */
    int64_t *trees;     /* owned: every Fenwick slice */
    struct cand_list free_list[TANDEM_REBALANCE_SITES_MAX];
    struct cand_list *bound_list; /* owned: k * k, source * k + destination */
    /* due mode */
    struct fenwick units[TANDEM_REBALANCE_SITES_MAX];
    int64_t *unit_trees; /* owned */
    struct due_tree due[TANDEM_REBALANCE_SITES_MAX];
    bool due_ready;
};

static uint64_t cap(const struct planner *p, uint32_t s)
{
    return p->in->sites[s].capacity;
}

static const struct tandem_rebalance_job *job(const struct planner *p, size_t j)
{
    return &p->in->jobs[j];
}

/* a/b < c/d for b, d > 0 */
static bool frac_less(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    return (wide)a * (wide)d < (wide)c * (wide)b;
}

static bool frac_equal(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    return (wide)a * (wide)d == (wide)c * (wide)b;
}

/* ---- sorting: packed keys (a, b) compared first, ids only on ties, so that sorting 100k jobs
 * does not chase every comparison into the job array ---- */

struct sort_key {
    uint64_t a, b;
    size_t job;
};

typedef void (*sort_key_fn)(const struct tandem_rebalance_job *job, struct sort_key *key);

static uint64_t order_signed(int64_t value)
{
    return (uint64_t)value ^ ((uint64_t)1 << 63);
}

/* Queue order: priority high to low, due times first and earliest first, then id. */
static void key_queue(const struct tandem_rebalance_job *job, struct sort_key *key)
{
    key->a = UINT64_MAX - order_signed(job->priority);
    key->b = job->has_due ? order_signed(job->due_ms) : UINT64_MAX;
}

/* Ids: their first 16 bytes, big-endian, so that (a, b) orders as strcmp does. */
static void key_id(const struct tandem_rebalance_job *job, struct sort_key *key)
{
    const unsigned char *id = (const unsigned char *)job->id;
    size_t len = strlen(job->id);
    key->a = key->b = 0;
    for (size_t i = 0; i < 16; i++) {
        uint64_t byte = i < len ? id[i] : 0;
        if (i < 8) {
            key->a = key->a << 8 | byte;
        } else {
            key->b = key->b << 8 | byte;
        }
    }
}

static void key_effort(const struct tandem_rebalance_job *job, struct sort_key *key)
{
    key->a = job->effort;
    key->b = 0;
}

/* Stranded jobs go largest first (the classic longest-processing-time order). */
static void key_effort_desc(const struct tandem_rebalance_job *job, struct sort_key *key)
{
    key->a = UINT64_MAX - job->effort;
    key->b = 0;
}

/* Box-bound lists: grouped by (site, box site), then by effort. */
static void key_bound(const struct tandem_rebalance_job *job, struct sort_key *key)
{
    key->a = (uint64_t)job->site << 32 | (uint32_t)job->boxes_site;
    key->b = job->effort;
}

static int key_compare(const struct tandem_rebalance_job *jobs, const struct sort_key *x,
                       const struct sort_key *y)
{
    if (x->a != y->a) {
        return x->a < y->a ? -1 : 1;
    }
    if (x->b != y->b) {
        return x->b < y->b ? -1 : 1;
    }
    return strcmp(jobs[x->job].id, jobs[y->job].id);
}

/* Bottom-up merge sort (stable, no recursion; qsort has no context argument in C11). */
static void keys_sort(const struct tandem_rebalance_job *jobs, struct sort_key *v,
                      struct sort_key *tmp, size_t n)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) {
                tmp[o++] = key_compare(jobs, &v[b], &v[a]) < 0 ? v[b++] : v[a++];
            }
            while (a < mid) {
                tmp[o++] = v[a++];
            }
            while (b < hi) {
                tmp[o++] = v[b++];
            }
        }
        memcpy(v, tmp, n * sizeof *v);
    }
}

/* Sorts the job indexes in v (all n jobs when subset is NULL: v is filled) by key. Returns 0 or
 * ENOMEM. */
static int indexes_sort(const struct tandem_rebalance_job *jobs, size_t *v, bool fill, size_t n,
                        sort_key_fn key)
{
    struct sort_key *keys = malloc((n > 0 ? n : 1) * sizeof *keys);
    struct sort_key *tmp = malloc((n > 0 ? n : 1) * sizeof *tmp);
    if (keys == NULL || tmp == NULL) {
        free(keys);
        free(tmp);
        return ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i].job = fill ? i : v[i];
        key(&jobs[keys[i].job], &keys[i]);
    }
    keys_sort(jobs, keys, tmp, n);
    for (size_t i = 0; i < n; i++) {
        v[i] = keys[i].job;
    }
    free(keys);
    free(tmp);
    return 0;
}

/* A new array of the indexes of subset (NULL: every job) sorted by key; NULL when out of
 * memory. */
static size_t *sorted_indexes(const struct tandem_rebalance_job *jobs, const size_t *subset,
                              size_t n, sort_key_fn key)
{
    size_t *v = malloc((n > 0 ? n : 1) * sizeof *v);
    if (v != NULL && subset != NULL) {
        memcpy(v, subset, n * sizeof *v);
    }
    if (v != NULL && indexes_sort(jobs, v, subset == NULL, n, key) != 0) {
        free(v);
        v = NULL;
    }
    return v;
}

/* ---- at-risk ---- */

/* due < now + units / capacity hours, exactly: (due - now) * capacity < units * ms per hour. */
static bool late(const struct tandem_rebalance_job *j, int64_t now_ms, uint64_t units,
                 uint64_t capacity)
{
    if (!j->has_due) {
        return false;
    }
    if (capacity == 0) {
        return true;
    }
    return (wide)(j->due_ms - now_ms) * (wide)capacity < (wide)units * TANDEM_MS_PER_HOUR;
}

/* floor((due - now) * capacity / ms per hour): the units a site can finish before the due time;
 * the job is late when the units up to and including it exceed this. */
static int64_t due_units(const struct tandem_rebalance_job *j, int64_t now_ms, uint64_t capacity)
{
    wide x = (wide)(j->due_ms - now_ms) * (wide)capacity;
    wide q = x / TANDEM_MS_PER_HOUR;
    if (x % TANDEM_MS_PER_HOUR != 0 && x < 0) {
        q--;
    }
    return q > SLACK_CLAMP ? SLACK_CLAMP : q < -SLACK_CLAMP ? -SLACK_CLAMP : (int64_t)q;
}

/* Per-site backlog, jobs and jobs at risk of the assignment at[] (NULL: the input's). */
static void site_counts(const struct tandem_rebalance_input *in, const size_t *order,
                        const uint32_t *at, uint64_t *units, size_t *jobs, size_t *risk)
{
    memset(units, 0, in->n_sites * sizeof *units);
    memset(jobs, 0, in->n_sites * sizeof *jobs);
    memset(risk, 0, in->n_sites * sizeof *risk);
    for (size_t i = 0; i < in->n_jobs; i++) {
        const struct tandem_rebalance_job *j = &in->jobs[order[i]];
        uint32_t s = at != NULL ? at[order[i]] : j->site;
        units[s] += j->effort;
        jobs[s]++;
        risk[s] += late(j, in->now_ms, units[s], in->sites[s].capacity) ? 1 : 0;
    }
}

/* ---- input checks ---- */

static int input_check(const struct tandem_rebalance_input *in, char *errmsg)
{
    if (in->n_sites == 0 || in->n_sites > TANDEM_REBALANCE_SITES_MAX ||
        in->n_jobs > TANDEM_REBALANCE_JOBS_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "a plan takes 1 to %d sites and at most %d jobs (got %u and %zu)",
                 TANDEM_REBALANCE_SITES_MAX, TANDEM_REBALANCE_JOBS_MAX, in->n_sites, in->n_jobs);
        return EINVAL;
    }
    for (uint32_t s = 0; s < in->n_sites; s++) {
        if (in->sites[s].capacity > TANDEM_SITE_CAPACITY_MAX) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "site %s: capacity above %u", in->sites[s].name,
                     TANDEM_SITE_CAPACITY_MAX);
            return EINVAL;
        }
        for (uint32_t t = 0; t < s; t++) {
            if (strcmp(in->sites[s].name, in->sites[t].name) == 0) {
                snprintf(errmsg, TANDEM_ERRMSG_SIZE, "site %s appears twice", in->sites[s].name);
                return EINVAL;
            }
        }
    }
    for (size_t i = 0; i < in->n_jobs; i++) {
        const struct tandem_rebalance_job *j = &in->jobs[i];
        if (j->site >= in->n_sites || j->effort > TANDEM_JOB_EFFORT_MAX ||
            j->boxes_site < TANDEM_REBALANCE_BOXES_SPLIT ||
            (j->boxes_site >= 0 && (uint32_t)j->boxes_site >= in->n_sites)) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "job %s: site, effort or box site out of range",
                     j->id);
            return EINVAL;
        }
    }
    return 0;
}

/* Ids must be unique: ties are broken by them. by_id is sorted by id. */
static int ids_check(const struct tandem_rebalance_input *in, const size_t *by_id, char *errmsg)
{
    for (size_t i = 1; i < in->n_jobs; i++) {
        if (strcmp(in->jobs[by_id[i - 1]].id, in->jobs[by_id[i]].id) == 0) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "job %s appears twice", in->jobs[by_id[i]].id);
            return EINVAL;
        }
    }
    return 0;
}

/* ---- which moves a job may make ---- */

/* May job j, sitting at `from`, move to `to`? */
static bool move_allowed(const struct planner *p, size_t j, uint32_t from, uint32_t to)
{
    const struct tandem_rebalance_job *x = job(p, j);
    if (!x->queued || x->pinned || to == from || cap(p, to) == 0) {
        return false;
    }
    return x->boxes_site == TANDEM_REBALANCE_BOXES_NONE || x->boxes_site == (int32_t)to;
}

/* Is there a site with capacity, other than the job's own, that the job may not go to? */
static bool closed_somewhere(const struct planner *p, size_t j)
{
    const struct tandem_rebalance_job *x = job(p, j);
    for (uint32_t s = 0; s < p->k; s++) {
        if (s != x->site && cap(p, s) > 0 && !move_allowed(p, j, x->site, s)) {
            return true;
        }
    }
    return false;
}

/* ---- recording moves ---- */

/* Would moving j use a new move slot that max_moves does not leave? */
static bool slot_missing(const struct planner *p, size_t j)
{
    size_t m = p->move_of[j];
    bool live = m != NO_MOVE && p->moves[m].to != p->moves[m].from;
    return !live && p->live_moves >= p->in->max_moves;
}

static void record_move(struct planner *p, size_t j, uint32_t to, int reason)
{
    size_t m = p->move_of[j];
    if (m == NO_MOVE) {
        m = p->n_moves++;
        p->move_of[j] = m;
        /* Field by field into calloc'd slots: the padding stays zero, so equal plans compare
         * equal byte for byte. */
        p->moves[m].job = j;
        p->moves[m].from = p->at[j];
        p->moves[m].to = p->at[j];
    }
    bool was_live = p->moves[m].to != p->moves[m].from;
    p->moves[m].to = to;
    p->moves[m].reason = reason;
    bool live = to != p->moves[m].from;
    p->live_moves = p->live_moves + (live ? 1 : 0) - (was_live ? 1 : 0);
}

/* Toggles j's presence in the balancing list of site s. */
static void list_toggle(struct planner *p, size_t j, uint32_t s, int64_t delta)
{
    if (p->kind == NULL || cap(p, s) == 0) {
        return;
    }
    if (p->kind[j] == LIST_FREE) {
        fenwick_add(&p->free_list[s].alive, p->list_pos[j], delta);
    } else if (p->kind[j] == LIST_BOUND && s == job(p, j)->site) {
        const struct tandem_rebalance_job *x = job(p, j);
        fenwick_add(&p->bound_list[s * p->k + (uint32_t)x->boxes_site].alive, p->list_pos[j],
                    delta);
    }
}

static int64_t slack_at(const struct planner *p, size_t j, uint32_t s);

/* Updates the due trees for j leaving `from` (later jobs there gain) and joining `to`. */
static void due_move(struct planner *p, size_t j, uint32_t from, uint32_t to)
{
    size_t pos = p->pos[j], last = p->in->n_jobs - 1;
    int64_t e = (int64_t)job(p, j)->effort, slack;
    int64_t arrived = job(p, j)->has_due ? slack_at(p, j, to) : SENTINEL;
    struct due_tree *a = &p->due[from], *b = &p->due[to];
    due_set(a, 1, 0, last, pos, SENTINEL);
    fenwick_add(&p->units[from], pos, -e);
    if (pos < last && e != 0) {
        due_add(a, 1, 0, last, pos + 1, last, e);
        size_t q;
        while ((q = due_find_rescued(a, 1, 0, last, pos + 1, last, &slack)) != SIZE_MAX) {
            due_set(a, 1, 0, last, q, slack);
        }
    }
    fenwick_add(&p->units[to], pos, e);
    if (pos < last && e != 0) {
        due_add(b, 1, 0, last, pos + 1, last, -e);
    }
    due_set(b, 1, 0, last, pos, arrived);
}

static void apply_move(struct planner *p, size_t j, uint32_t to, int reason)
{
    uint32_t from = p->at[j];
    record_move(p, j, to, reason);
    list_toggle(p, j, from, -1);
    list_toggle(p, j, to, 1);
    if (p->due_ready) {
        due_move(p, j, from, to);
    }
    p->load[from] -= job(p, j)->effort;
    p->load[to] += job(p, j)->effort;
    p->at[j] = to;
    p->steps++;
}

/* ---- phase 1: stranded work ---- */

/* The allowed site where j would end soonest, UINT32_MAX when none. */
static uint32_t soonest_site(const struct planner *p, size_t j)
{
    uint32_t best = UINT32_MAX;
    uint64_t e = job(p, j)->effort;
    for (uint32_t s = 0; s < p->k; s++) {
        if (move_allowed(p, j, p->at[j], s) &&
            (best == UINT32_MAX ||
             frac_less(p->load[s] + e, cap(p, s), p->load[best] + e, cap(p, best)))) {
            best = s;
        }
    }
    return best;
}

static int phase_stranded(struct planner *p)
{
    size_t n = 0;
    size_t *subset = malloc((p->in->n_jobs > 0 ? p->in->n_jobs : 1) * sizeof *subset);
    if (subset == NULL) {
        return ENOMEM;
    }
    for (size_t j = 0; j < p->in->n_jobs; j++) {
        if (cap(p, p->at[j]) == 0 && job(p, j)->queued && !job(p, j)->pinned) {
            subset[n++] = j;
        }
    }
    size_t *order = sorted_indexes(p->in->jobs, subset, n, key_effort_desc);
    free(subset);
    if (order == NULL) {
        return ENOMEM;
    }
    for (size_t i = 0; i < n && p->steps < p->steps_max; i++) {
        uint32_t to = soonest_site(p, order[i]);
        if (to != UINT32_MAX && !slot_missing(p, order[i])) {
            apply_move(p, order[i], to, TANDEM_REBALANCE_REASON_CAPACITY);
        }
    }
    free(order);
    return 0;
}

/* ---- balancing lists ---- */

static bool balance_candidate(const struct planner *p, size_t j)
{
    const struct tandem_rebalance_job *x = job(p, j);
    return x->queued && !x->pinned && x->effort > 0;
}

/* Classifies each job into the free list or a (source, box site) list. */
static void lists_classify(struct planner *p, size_t *n_bound)
{
    *n_bound = 0;
    p->n_free = 0;
    for (size_t j = 0; j < p->in->n_jobs; j++) {
        const struct tandem_rebalance_job *x = job(p, j);
        p->kind[j] = LIST_NONE;
        if (!balance_candidate(p, j)) {
            continue;
        }
        if (x->boxes_site == TANDEM_REBALANCE_BOXES_NONE) {
            p->kind[j] = LIST_FREE;
            p->free_jobs[p->n_free++] = j;
        } else if (x->boxes_site >= 0 && (uint32_t)x->boxes_site != p->at[j] &&
                   x->site == p->at[j] && cap(p, p->at[j]) > 0 &&
                   cap(p, (uint32_t)x->boxes_site) > 0) {
            p->kind[j] = LIST_BOUND;
            p->bound_jobs[(*n_bound)++] = j;
        }
    }
}

static int lists_build(struct planner *p)
{
    size_t n = p->in->n_jobs, n_bound, k = p->k, used = 0;
    p->kind = calloc(n > 0 ? n : 1, 1);
    p->list_pos = calloc(n > 0 ? n : 1, sizeof *p->list_pos);
    p->free_jobs = malloc((n > 0 ? n : 1) * sizeof *p->free_jobs);
    p->bound_jobs = malloc((n > 0 ? n : 1) * sizeof *p->bound_jobs);
    p->bound_list = calloc(k * k, sizeof *p->bound_list);
    if (p->kind == NULL || p->list_pos == NULL || p->free_jobs == NULL || p->bound_jobs == NULL ||
        p->bound_list == NULL) {
        return ENOMEM;
    }
    lists_classify(p, &n_bound);
    p->trees = calloc(k * (p->n_free + 1) + n_bound + k * k, sizeof *p->trees);
    if (p->trees == NULL ||
        indexes_sort(p->in->jobs, p->free_jobs, false, p->n_free, key_effort) != 0 ||
        indexes_sort(p->in->jobs, p->bound_jobs, false, n_bound, key_bound) != 0) {
        return ENOMEM;
    }
    for (size_t i = 0; i < p->n_free; i++) {
        p->list_pos[p->free_jobs[i]] = i;
    }
    for (uint32_t s = 0; s < k; s++, used += p->n_free + 1) {
        p->free_list[s].jobs = p->free_jobs;
        fenwick_init(&p->free_list[s].alive, p->trees + used, p->n_free);
    }
    for (size_t i = 0; i < n_bound;) {
        const struct tandem_rebalance_job *x = job(p, p->bound_jobs[i]);
        struct cand_list *l = &p->bound_list[x->site * k + (uint32_t)x->boxes_site];
        size_t start = i;
        for (; i < n_bound && job(p, p->bound_jobs[i])->site == x->site &&
               job(p, p->bound_jobs[i])->boxes_site == x->boxes_site;
             i++) {
            p->list_pos[p->bound_jobs[i]] = i - start;
        }
        l->jobs = p->bound_jobs + start;
        fenwick_init(&l->alive, p->trees + used, i - start);
        used += i - start + 1;
    }
    for (size_t j = 0; j < n; j++) {
        list_toggle(p, j, p->at[j], 1);
    }
    return 0;
}

/* ---- list queries ---- */

static uint64_t list_effort(const struct planner *p, const struct cand_list *l, size_t i)
{
    return job(p, l->jobs[i])->effort;
}

/* First index whose effort is >= e (or > e when strict). */
static size_t list_bound(const struct planner *p, const struct cand_list *l, uint64_t e,
                         bool strict)
{
    size_t lo = 0, hi = l->alive.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t x = list_effort(p, l, mid);
        if (x < e || (strict && x == e)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* The alive entry at or after index i, SIZE_MAX when none. */
static size_t alive_from(const struct cand_list *l, size_t i)
{
    int64_t before = fenwick_prefix(&l->alive, i);
    if (before == fenwick_prefix(&l->alive, l->alive.n)) {
        return SIZE_MAX;
    }
    return fenwick_find(&l->alive, before + 1);
}

/* The alive entry before index i, SIZE_MAX when none. */
static size_t alive_before(const struct cand_list *l, size_t i)
{
    int64_t before = fenwick_prefix(&l->alive, i);
    return before == 0 ? SIZE_MAX : fenwick_find(&l->alive, before);
}

/* Among alive entries with the same effort as entry i, the first (smallest id). */
static size_t first_of_effort(const struct planner *p, const struct cand_list *l, size_t i)
{
    return alive_from(l, list_bound(p, l, list_effort(p, l, i), false));
}

/* ---- phase 2: due dates ---- */

/* Slack of j if it sat at s (capacity > 0): units s could still fit before j's due time. */
static int64_t slack_at(const struct planner *p, size_t j, uint32_t s)
{
    const struct tandem_rebalance_job *x = job(p, j);
    int64_t before = fenwick_prefix(&p->units[s], p->pos[j]);
    return due_units(x, p->in->now_ms, cap(p, s)) - before - (int64_t)x->effort;
}

/* Would inserting e units at queue position pos of site d make a job there late? */
static bool pushes_late(struct planner *p, uint32_t d, size_t pos, uint64_t e)
{
    size_t last = p->in->n_jobs - 1;
    return pos < last && e > 0 && due_min(&p->due[d], 1, 0, last, pos + 1, last) < (int64_t)e;
}

/* A move that makes no job late that was on time (the due objective never gets worse). */
static bool due_safe(struct planner *p, size_t j, uint32_t m, uint32_t d)
{
    const struct tandem_rebalance_job *x = job(p, j);
    if (x->has_due && slack_at(p, j, m) >= 0 && slack_at(p, j, d) < 0) {
        return false;
    }
    return !pushes_late(p, d, p->pos[j], x->effort);
}

/* Fills the units tree of s and each queue position's slack there (SENTINEL: no due job). */
static void due_slacks(struct planner *p, uint32_t s, int64_t *slack)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < p->in->n_jobs; i++) {
        size_t j = p->order[i];
        bool here = p->at[j] == s;
        if (here) {
            cum += job(p, j)->effort;
            fenwick_add(&p->units[s], i, (int64_t)job(p, j)->effort);
        }
        slack[i] = here && job(p, j)->has_due
                       ? due_units(job(p, j), p->in->now_ms, cap(p, s)) - (int64_t)cum
                       : SENTINEL;
    }
}

static int due_build_all(struct planner *p)
{
    size_t n = p->in->n_jobs, nodes = 4 * (n > 0 ? n : 1);
    size_t sites_with_capacity = 0;
    for (uint32_t s = 0; s < p->k; s++) {
        sites_with_capacity += cap(p, s) > 0 ? 1 : 0;
    }
    if (n == 0 || sites_with_capacity == 0) {
        return 0;
    }
    if (sites_with_capacity * n > TANDEM_REBALANCE_DUE_CELLS_MAX) {
        return E2BIG;
    }
    int64_t *slack = malloc(n * sizeof *slack);
    p->unit_trees = calloc(p->k * (n + 1), sizeof *p->unit_trees);
    if (slack == NULL || p->unit_trees == NULL) {
        free(slack);
        return ENOMEM;
    }
    for (uint32_t s = 0; s < p->k; s++) {
        fenwick_init(&p->units[s], p->unit_trees + s * (n + 1), n);
        if (cap(p, s) == 0) {
            continue;
        }
        p->due[s].nodes = malloc(nodes * sizeof(struct due_node));
        if (p->due[s].nodes == NULL) {
            free(slack);
            return ENOMEM;
        }
        p->due[s].n = n;
        due_slacks(p, s, slack);
        due_build(&p->due[s], 1, 0, n - 1, slack);
    }
    free(slack);
    p->due_ready = true;
    return 0;
}

/* At-risk jobs in queue order, each to the allowed site where it makes its due time without
 * making another job late, the least loaded such site first. */
static size_t pass_due(struct planner *p)
{
    size_t moved = 0, n = p->in->n_jobs;
    for (size_t i = 0; i < n && p->steps < p->steps_max; i++) {
        size_t j = p->order[i];
        const struct tandem_rebalance_job *x = job(p, j);
        uint32_t a = p->at[j], best = UINT32_MAX;
        if (!x->queued || x->pinned || !x->has_due || cap(p, a) == 0 || slack_at(p, j, a) >= 0 ||
            slot_missing(p, j)) {
            continue;
        }
        for (uint32_t d = 0; d < p->k; d++) {
            if (!move_allowed(p, j, a, d) || slack_at(p, j, d) < 0 ||
                pushes_late(p, d, i, x->effort)) {
                continue;
            }
            if (best == UINT32_MAX || frac_less(p->load[d] + x->effort, cap(p, d),
                                                p->load[best] + x->effort, cap(p, best))) {
                best = d;
            }
        }
        if (best != UINT32_MAX) {
            apply_move(p, j, best, TANDEM_REBALANCE_REASON_DUE);
            moved++;
        }
    }
    return moved;
}

/* ---- phase 3: balancing ---- */

/* The makespan after moving e units from m to d (UINT32_MAX: no move): the largest
 * backlog/capacity over sites with capacity, and how many sites have it. */
struct makespan {
    uint64_t units, capacity;
    size_t sites;
};

static bool makespan_less(const struct makespan *a, const struct makespan *b)
{
    if (!frac_equal(a->units, a->capacity, b->units, b->capacity)) {
        return frac_less(a->units, a->capacity, b->units, b->capacity);
    }
    return a->sites < b->sites;
}

static struct makespan makespan_after(const struct planner *p, uint32_t m, uint32_t d, uint64_t e)
{
    struct makespan out = {0, 1, 0};
    for (uint32_t s = 0; s < p->k; s++) {
        if (cap(p, s) == 0) {
            continue;
        }
        uint64_t load = p->load[s] - (s == m ? e : 0) + (s == d ? e : 0);
        if (out.sites == 0 || frac_less(out.units, out.capacity, load, cap(p, s))) {
            out = (struct makespan){load, cap(p, s), 1};
        } else if (frac_equal(out.units, out.capacity, load, cap(p, s))) {
            out.sites++;
        }
    }
    return out;
}

struct choice {
    bool found;
    size_t job;
    uint32_t to;
    struct makespan after;
};

/* Takes the move of j from m to d as the best so far if it improves on `now` and beats it. */
static bool consider(struct planner *p, struct choice *best, const struct makespan *now, size_t j,
                     uint32_t m, uint32_t d)
{
    if (slot_missing(p, j) || (p->due_ready && !due_safe(p, j, m, d))) {
        return false;
    }
    struct makespan after = makespan_after(p, m, d, job(p, j)->effort);
    if (!makespan_less(&after, now)) {
        return false;
    }
    if (!best->found || makespan_less(&after, &best->after) ||
        (!makespan_less(&best->after, &after) &&
         (strcmp(job(p, j)->id, job(p, best->job)->id) < 0 || (best->job == j && d < best->to)))) {
        *best = (struct choice){true, j, d, after};
    }
    return true;
}

/* Walks alive entries from i (left or right) until one is taken, at most PROBE_MAX of them when
 * the due objective rules some out; the nearest only otherwise. */
static void probe(struct planner *p, struct choice *best, const struct makespan *now,
                  const struct cand_list *l, size_t i, bool left, uint32_t m, uint32_t d)
{
    size_t tries = p->due_ready ? TANDEM_REBALANCE_PROBE_MAX : 1;
    for (size_t t = 0; t < tries && i != SIZE_MAX; t++) {
        if (consider(p, best, now, l->jobs[i], m, d)) {
            return;
        }
        i = left ? alive_before(l, i) : alive_from(l, i + 1);
    }
}

/* The jobs of list l (at m) nearest the effort that would even out m and d. */
static void list_candidates(struct planner *p, struct choice *best, const struct makespan *now,
                            const struct cand_list *l, uint32_t m, uint32_t d)
{
    if (l->jobs == NULL || l->alive.n == 0) {
        return;
    }
    /* Moving e helps only if (L_d + e)/c_d < L_m/c_m, so some room must exist. */
    wide room = (wide)p->load[m] * (wide)cap(p, d) - (wide)p->load[d] * (wide)cap(p, m);
    if (room <= 0) {
        return;
    }
    uint64_t even = (uint64_t)(room / ((wide)cap(p, m) + (wide)cap(p, d)));
    size_t above = list_bound(p, l, even, true);
    size_t i = alive_before(l, above);
    if (i != SIZE_MAX) {
        probe(p, best, now, l, first_of_effort(p, l, i), true, m, d);
    }
    i = alive_from(l, above);
    if (i != SIZE_MAX) {
        probe(p, best, now, l, i, false, m, d);
    }
}

static size_t phase_balance(struct planner *p)
{
    size_t moved = 0;
    while (p->steps < p->steps_max) {
        struct makespan now = makespan_after(p, UINT32_MAX, UINT32_MAX, 0);
        struct choice best = {.found = false};
        for (uint32_t m = 0; m < p->k && now.sites > 0; m++) {
            if (cap(p, m) == 0 || !frac_equal(p->load[m], cap(p, m), now.units, now.capacity)) {
                continue;
            }
            for (uint32_t d = 0; d < p->k; d++) {
                if (d != m && cap(p, d) > 0) {
                    list_candidates(p, &best, &now, &p->free_list[m], m, d);
                    list_candidates(p, &best, &now, &p->bound_list[m * p->k + d], m, d);
                }
            }
        }
        if (!best.found) {
            break;
        }
        apply_move(p, best.job, best.to, TANDEM_REBALANCE_REASON_MAKESPAN);
        moved++;
    }
    return moved;
}

/* ---- the plan ---- */

static void planner_free(struct planner *p)
{
    /* Every array the planner owns, in one list so that none is forgotten. */
    void *owned[] = {p->at,         p->move_of, p->moves,      p->order,
                     p->pos,        p->kind,    p->list_pos,   p->free_jobs,
                     p->bound_jobs, p->trees,   p->bound_list, p->unit_trees};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
        free(owned[i]);
    }
    for (uint32_t s = 0; s < TANDEM_REBALANCE_SITES_MAX; s++) {
        free(p->due[s].nodes);
    }
}

static int planner_init(struct planner *p, const struct tandem_rebalance_input *in)
{
    size_t n = in->n_jobs, slots = in->max_moves < n ? in->max_moves : n;
    memset(p, 0, sizeof *p);
    p->in = in;
    p->k = in->n_sites;
    p->steps_max = 4 * slots + STEPS_SLACK;
    p->at = malloc((n > 0 ? n : 1) * sizeof *p->at);
    p->move_of = malloc((n > 0 ? n : 1) * sizeof *p->move_of);
    p->moves = calloc(slots > 0 ? slots : 1, sizeof *p->moves);
    p->pos = malloc((n > 0 ? n : 1) * sizeof *p->pos);
    p->order = sorted_indexes(in->jobs, NULL, n, key_queue);
    if (p->at == NULL || p->move_of == NULL || p->moves == NULL || p->pos == NULL ||
        p->order == NULL) {
        return ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        p->at[i] = in->jobs[i].site;
        p->move_of[i] = NO_MOVE;
        p->pos[p->order[i]] = i;
        p->load[in->jobs[i].site] += in->jobs[i].effort;
    }
    return 0;
}

static int planner_run(struct planner *p)
{
    int rv = phase_stranded(p);
    if (rv == 0) {
        rv = lists_build(p);
    }
    if (rv != 0 || p->in->objective != TANDEM_REBALANCE_DUE) {
        if (rv == 0) {
            phase_balance(p);
        }
        return rv;
    }
    if ((rv = due_build_all(p)) != 0) {
        return rv;
    }
    /* Balancing can open room for an at-risk job and the reverse: alternate until neither
     * moves, so planning again right after applying proposes nothing. */
    for (size_t round = 0; round < TANDEM_REBALANCE_ROUNDS_MAX; round++) {
        size_t moved = pass_due(p);
        moved += phase_balance(p);
        if (moved == 0) {
            break;
        }
    }
    return 0;
}

/* Live moves in the order they were first made, and the excluded jobs in id order. */
static int plan_fill(const struct planner *p, const size_t *by_id,
                     struct tandem_rebalance_plan *out)
{
    const struct tandem_rebalance_input *in = p->in;
    out->moves = calloc(p->live_moves > 0 ? p->live_moves : 1, sizeof *out->moves);
    out->excluded = malloc((in->n_jobs > 0 ? in->n_jobs : 1) * sizeof *out->excluded);
    if (out->moves == NULL || out->excluded == NULL) {
        return ENOMEM;
    }
    for (size_t m = 0; m < p->n_moves; m++) {
        if (p->moves[m].to != p->moves[m].from) {
            memcpy(&out->moves[out->n_moves++], &p->moves[m], sizeof *out->moves);
        }
    }
    for (size_t i = 0; i < in->n_jobs; i++) {
        const struct tandem_rebalance_job *x = &in->jobs[by_id[i]];
        if (!x->queued) {
            continue;
        }
        if (x->pinned) {
            out->excluded[out->n_excluded++] =
                (struct tandem_rebalance_excluded){by_id[i], TANDEM_REBALANCE_RULE_PINNED};
        } else if (x->boxes_site != TANDEM_REBALANCE_BOXES_NONE && closed_somewhere(p, by_id[i])) {
            out->excluded[out->n_excluded++] =
                (struct tandem_rebalance_excluded){by_id[i], TANDEM_REBALANCE_RULE_BOXES};
        }
    }
    out->steps = p->steps;
    return 0;
}

static void plan_sites(const struct planner *p, struct tandem_rebalance_plan *out)
{
    uint64_t units[TANDEM_REBALANCE_SITES_MAX];
    size_t jobs[TANDEM_REBALANCE_SITES_MAX], risk[TANDEM_REBALANCE_SITES_MAX];
    site_counts(p->in, p->order, NULL, units, jobs, risk);
    for (uint32_t s = 0; s < p->k; s++) {
        out->sites[s].backlog_before = units[s];
        out->sites[s].jobs_before = jobs[s];
        out->sites[s].at_risk_before = risk[s];
    }
    site_counts(p->in, p->order, p->at, units, jobs, risk);
    for (uint32_t s = 0; s < p->k; s++) {
        out->sites[s].backlog_after = units[s];
        out->sites[s].jobs_after = jobs[s];
        out->sites[s].at_risk_after = risk[s];
    }
}

int tandem_rebalance_plan(const struct tandem_rebalance_input *in,
                          struct tandem_rebalance_plan *out, char *errmsg)
{
    struct planner p;
    size_t *by_id = NULL;
    memset(out, 0, sizeof *out);
    int rv = input_check(in, errmsg);
    if (rv != 0) {
        return rv;
    }
    if ((rv = planner_init(&p, in)) != 0) {
        goto err_after_planner;
    }
    by_id = sorted_indexes(in->jobs, NULL, in->n_jobs, key_id);
    if (by_id == NULL) {
        rv = ENOMEM;
        goto err_after_planner;
    }
    if ((rv = ids_check(in, by_id, errmsg)) != 0) {
        goto err_after_by_id;
    }
    if ((rv = planner_run(&p)) == 0 && (rv = plan_fill(&p, by_id, out)) == 0) {
        plan_sites(&p, out);
    }
err_after_by_id:
    free(by_id);
err_after_planner:
    planner_free(&p);
    if (rv != 0) {
        if (rv == ENOMEM) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory planning %zu jobs", in->n_jobs);
        } else if (rv == E2BIG) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                     "the due objective plans at most %d jobs x sites with capacity",
                     TANDEM_REBALANCE_DUE_CELLS_MAX);
        }
        tandem_rebalance_plan_free(out);
    }
    return rv;
}

void tandem_rebalance_plan_free(struct tandem_rebalance_plan *plan)
{
    free(plan->moves);
    free(plan->excluded);
    *plan = (struct tandem_rebalance_plan){0};
}

int tandem_rebalance_load(const struct tandem_rebalance_input *in,
                          struct tandem_rebalance_site_result *sites, char *errmsg)
{
    uint64_t units[TANDEM_REBALANCE_SITES_MAX];
    size_t jobs[TANDEM_REBALANCE_SITES_MAX], risk[TANDEM_REBALANCE_SITES_MAX];
    int rv = input_check(in, errmsg);
    if (rv != 0) {
        return rv;
    }
    size_t *order = sorted_indexes(in->jobs, NULL, in->n_jobs, key_queue);
    if (order == NULL) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory sorting %zu jobs", in->n_jobs);
        return ENOMEM;
    }
    site_counts(in, order, NULL, units, jobs, risk);
    free(order);
    for (uint32_t s = 0; s < in->n_sites; s++) {
        sites[s] = (struct tandem_rebalance_site_result){units[s], units[s], jobs[s],
                                                         jobs[s],  risk[s],  risk[s]};
    }
    return 0;
}

/* ---- plan ids ---- */

static int digest_text(EVP_MD_CTX *md, const char *text)
{
    return EVP_DigestUpdate(md, text, strlen(text) + 1) == 1 ? 0 : -1;
}

static int digest_u64(EVP_MD_CTX *md, uint64_t value)
{
    uint8_t be[8];
    tandem_be64_put(be, value);
    return EVP_DigestUpdate(md, be, sizeof be) == 1 ? 0 : -1;
}

int tandem_rebalance_plan_id(uint64_t index, const char *objective,
                             Tandem__RebalanceMove *const *moves, size_t n_moves,
                             char out[TANDEM_REBALANCE_PLAN_ID_LEN + 1])
{
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rv = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -1;
    rv = rv != 0 ? rv : digest_text(md, "tandem-rebalance-plan-1");
    rv = rv != 0 ? rv : digest_u64(md, index);
    rv = rv != 0 ? rv : digest_text(md, objective);
    rv = rv != 0 ? rv : digest_u64(md, n_moves);
    for (size_t i = 0; i < n_moves && rv == 0; i++) {
        rv = digest_text(md, moves[i]->job);
        rv = rv != 0 ? rv : digest_text(md, moves[i]->from);
        rv = rv != 0 ? rv : digest_text(md, moves[i]->to);
        rv = rv != 0 ? rv : digest_u64(md, moves[i]->effort);
    }
    if (rv == 0 && EVP_DigestFinal_ex(md, digest, &len) != 1) {
        rv = -1;
    }
    bool nomem = md == NULL;
    EVP_MD_CTX_free(md);
    out[0] = '\0';
    for (size_t i = 0; rv == 0 && i < TANDEM_REBALANCE_PLAN_ID_LEN / 2; i++) {
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    }
    return rv == 0 ? 0 : nomem ? TANDEM_NOMEM : TANDEM_CRYPTO;
}
