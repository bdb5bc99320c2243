/* Capacity planning: site capacities and their history, the load of each site, and the rebalance
 * planner (a pure function from queued work and capacities to a plan) with the apply of plans. */
#ifndef TANDEM_REPLICATION_REBALANCE_REBALANCE_H
#define TANDEM_REPLICATION_REBALANCE_REBALANCE_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/member.h"
#include "replication/apply.h"
#include "storage/domain_codec.h"
#include "storage/store.h"
#include "tandem.pb-c.h"
#include "storage/error.h"

/* ---- limits ---- */
#define TANDEM_SITE_CAPACITY_MAX          1000000000u /* effort units per hour of one site */
#define TANDEM_CAPACITY_HISTORY_KEPT      1000        /* newest capacity changes kept per site */
#define TANDEM_CAPACITY_HISTORY_LIMIT_MAX 1000        /* changes one history answer lists */
#define TANDEM_REBALANCE_SITES_MAX        32          /* sites one plan considers */
/* Queued + in-progress jobs one plan reads (HTTP 413 beyond). Planning runs on the loop thread,
 * about 0.3 s per 100k jobs (view read, plan, JSON): this keeps it inside the election timeout. */
#define TANDEM_REBALANCE_JOBS_MAX      200000
#define TANDEM_REBALANCE_MOVES_DEFAULT 1000  /* moves of a plan when none is asked for */
#define TANDEM_REBALANCE_MOVES_MAX     10000 /* moves in one plan: one raft command */
/* Excluded jobs a plan lists; the rest are only counted. */
#define TANDEM_REBALANCE_EXCLUDED_SHOWN 1000
#define TANDEM_REBALANCE_ROUNDS_MAX     64 /* due-date passes alternating with balancing */
#define TANDEM_REBALANCE_PROBE_MAX      8  /* neighbours tried when the nearest job is unsafe */
#define TANDEM_REBALANCE_PLAN_ID_LEN    32 /* hex characters: 128 bits of SHA-256 */
/* The due objective keeps a tree per site with capacity over all jobs: sites x jobs bounded. */
#define TANDEM_REBALANCE_DUE_CELLS_MAX 2000000
#define TANDEM_MS_PER_HOUR             3600000LL

enum tandem_rebalance_objective {
    TANDEM_REBALANCE_MAKESPAN = 0, /* the largest backlog in hours over sites with capacity */
    TANDEM_REBALANCE_DUE = 1,      /* jobs at risk of missing their due time, then makespan */
};
const char *tandem_rebalance_objective_name(int objective);
int tandem_rebalance_objective_parse(const char *name); /* -1 when unknown */

/* Why a queued job may not go everywhere; a plan lists the job with the rule's name. */
enum tandem_rebalance_rule {
    TANDEM_REBALANCE_RULE_PINNED = 0, /* "pinned": stays at its site */
    TANDEM_REBALANCE_RULE_BOXES = 1,  /* "boxes_at_site": only to the site holding its boxes */
};
const char *tandem_rebalance_rule_name(int rule);

/* Why a move was made (the "reason" of a move). */
enum tandem_rebalance_reason {
    TANDEM_REBALANCE_REASON_CAPACITY = 0, /* "no_capacity": its site has capacity 0 */
    TANDEM_REBALANCE_REASON_MAKESPAN = 1, /* "makespan": lowers the largest backlog */
    TANDEM_REBALANCE_REASON_DUE = 2,      /* "due": the job makes its due time there */
};
const char *tandem_rebalance_reason_name(int reason);

/* Where a job's linked boxes are (tandem_rebalance_job.boxes_site). */
#define TANDEM_REBALANCE_BOXES_NONE  (-1) /* no linked box: the job may go to any site */
#define TANDEM_REBALANCE_BOXES_SPLIT (-2) /* boxes at several sites: the job may not move */

/* ---- the planner's input: a pure function of these ---- */

struct tandem_rebalance_site {
    char name[TANDEM_SITE_LEN_MAX + 1];
    /* Effective units per hour. 0 (never set, or the site is under BCP): the site receives no
     * work, and work queued there is stranded, which the planner moves first. */
    uint64_t capacity;
};

struct tandem_rebalance_job {
    char id[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    uint32_t site; /* index into the input's sites */
    uint64_t effort;
    int64_t priority; /* higher runs first */
    bool has_due;
    int64_t due_ms;
    bool queued; /* false: in progress; counts in its site's backlog and never moves */
    bool pinned;
    int32_t boxes_site; /* index of the site holding all linked boxes, or _NONE / _SPLIT */
};

struct tandem_rebalance_input {
    const struct tandem_rebalance_site *sites; /* borrowed; names unique */
    uint32_t n_sites;                          /* 1..TANDEM_REBALANCE_SITES_MAX */
    const struct tandem_rebalance_job *jobs;   /* borrowed; ids unique */
    size_t n_jobs;                             /* at most TANDEM_REBALANCE_JOBS_MAX */
    int objective;                             /* enum tandem_rebalance_objective */
    size_t max_moves;                          /* jobs a plan may move */
    int64_t now_ms;                            /* the instant due-date risk is judged at */
};

struct tandem_rebalance_move {
    size_t job;    /* index into the input's jobs */
    uint32_t from; /* the job's site in the input */
    uint32_t to;   /* never a site with capacity 0 */
    int reason;    /* enum tandem_rebalance_reason */
};

struct tandem_rebalance_excluded {
    size_t job;
    int rule; /* enum tandem_rebalance_rule */
};

/* One site before and after the plan. Backlog = queued + in-progress effort. */
struct tandem_rebalance_site_result {
    uint64_t backlog_before, backlog_after; /* units */
    size_t jobs_before, jobs_after;         /* queued + in progress */
    size_t at_risk_before, at_risk_after;
};

struct tandem_rebalance_plan {
    struct tandem_rebalance_move *moves; /* owned; in the order the planner chose them */
    size_t n_moves;
    struct tandem_rebalance_excluded *excluded; /* owned; in job id order */
    size_t n_excluded;
    struct tandem_rebalance_site_result sites[TANDEM_REBALANCE_SITES_MAX];
    size_t steps; /* improving steps taken (a job moved twice collapses into one move) */
};

/* At-risk: each site runs its backlog in queue order (priority high to low, then due time
 * earliest first and jobs without one last, then id); a job with a due time is at risk when due <
 * now + (the effort of it and every job before it in that order) / capacity. At a site with
 * capacity 0 every job with a due time is at risk.
 *
 * The objective, compared lexicographically, each move strictly better than the state before:
 *   1. stranded work: jobs, then units, at sites with capacity 0;
 *   2. makespan: (the largest backlog/capacity over sites with capacity, how many sites have
 *      it) — or, for TANDEM_REBALANCE_DUE, first the number of jobs at risk, then that.
 * Only queued, unpinned jobs move; a job with linked boxes only to the site holding them all.
 * Greedy: stranded jobs first (largest first, each to the site where it ends soonest); then
 * for the due objective, at-risk jobs in queue order to a site where they make their due time
 * without putting any other job at risk; then from the most loaded sites, the job nearest the
 * balancing effort. Ties: smaller job id, then site order. It stops when no move improves,
 * after max_moves jobs, or after TANDEM_REBALANCE_ROUNDS_MAX rounds.
 * Bound (makespan, queued unconstrained jobs): makespan <= optimum + the largest job effort /
 * the smallest positive capacity.
 * Deterministic: the same input gives the same plan. Returns 0, or EINVAL (bad input), E2BIG
 * (due objective past TANDEM_REBALANCE_DUE_CELLS_MAX) or ENOMEM with errmsg (TANDEM_ERRMSG_SIZE
 * bytes). On failure out holds nothing to free. */
int tandem_rebalance_plan(const struct tandem_rebalance_input *in,
                          struct tandem_rebalance_plan *out, char *errmsg);
void tandem_rebalance_plan_free(struct tandem_rebalance_plan *plan);

/* Per site of in: backlog units, jobs and jobs at risk (at_risk_before etc.; *_after equal). */
int tandem_rebalance_load(const struct tandem_rebalance_input *in,
                          struct tandem_rebalance_site_result *sites, char *errmsg);

/* The plan id: hex of the first 128 bits of SHA-256 over (index, objective, moves). Returns 0,
 * TANDEM_NOMEM or TANDEM_CRYPTO (every EVP_* return is checked). */
int tandem_rebalance_plan_id(uint64_t index, const char *objective,
                             Tandem__RebalanceMove *const *moves, size_t n_moves,
                             char out[TANDEM_REBALANCE_PLAN_ID_LEN + 1]);

/* ---- the replicated state (replication/rebalance/capacity.c) ----
 * capacity:         site -> CapacityRecord
 * capacity_history: "<site>\0<seq u64 BE>" -> CapacityChange (newest KEPT per site) */

/* *out is NULL when the site has no capacity set; free with
 * tandem__capacity_record__free_unpacked. */
int tandem_capacity_get(struct tandem_store *s, MDB_txn *txn, const char *site,
                        Tandem__CapacityRecord **out);
/* The newest `limit` changes of site, newest first. NULL with s->errmsg on an LMDB error. */
json_t *tandem_capacity_history_json(struct tandem_store *s, MDB_txn *txn, const char *site,
                                     unsigned limit);

/* Everything a plan or the site view reads, from one read transaction. */
struct tandem_rebalance_site_info {
    char state[16];      /* "active", "invoked", "recovering" (BCP) */
    bool has_configured; /* a capacity was set */
    uint64_t configured; /* the capacity set; the effective one is 0 under BCP */
    bool witness;        /* holds no work */
    bool in_table;       /* the BCP site table knows the site */
};

struct tandem_rebalance_view {
    uint64_t index; /* applied index of the state read */
    struct tandem_rebalance_site sites[TANDEM_REBALANCE_SITES_MAX];
    struct tandem_rebalance_site_info info[TANDEM_REBALANCE_SITES_MAX];
    uint32_t n_sites;                  /* in name order */
    struct tandem_rebalance_job *jobs; /* owned; queued and in-progress jobs */
    size_t n_jobs;
    size_t jobs_cap;
};

/* Reads the sites (capacity records, the BCP site table, sites with queued or in-progress
 * jobs), those jobs and where their linked boxes are. Returns 0, an LMDB error with s->errmsg,
 * or E2BIG (too many sites or jobs) / ENOMEM with s->errmsg. Free with _view_free either way. */
int tandem_rebalance_view_read(struct tandem_store *s, MDB_txn *txn,
                               struct tandem_rebalance_view *view);
void tandem_rebalance_view_free(struct tandem_rebalance_view *view);

/* {"sites":[{"name","state","capacity","capacity_configured","backlog_units","backlog_hours",
 *  "jobs_queued","jobs_in_progress","jobs_at_risk"}]}; backlog_hours is null when the
 * backlog can never finish (capacity 0 and backlog > 0). NULL with errmsg on failure. */
json_t *tandem_rebalance_sites_json(const struct tandem_rebalance_view *view, int64_t now_ms,
                                    char *errmsg);

/* Plans over view and renders {"id","index","objective","at","max_moves","moves":[{"job","from",
 * "to","effort","reason"}],"sites":[{...before/after...}],"before":{"stranded_jobs","at_risk",
 * "makespan_hours"},"after":{...},"excluded":[{"job","site","rule"}],"excluded_total"}.
 * Returns NULL with errmsg (TANDEM_ERRMSG_SIZE bytes) and *status (HTTP 413 too big, 503 no
 * memory). */
json_t *tandem_rebalance_plan_json(const struct tandem_rebalance_view *view, int objective,
                                   size_t max_moves, int64_t now_ms, int *status, char *errmsg);

/* The apply command's moves from a plan's "moves" array, checked for shape (job ids, site
 * labels, efforts, at most TANDEM_REBALANCE_MOVES_MAX; apply refuses a job twice). The strings
 * point into moves_json, which must outlive them. Returns 0, or -1 with errmsg. */
struct tandem_rebalance_moves {
    Tandem__RebalanceMove *moves; /* owned array */
    Tandem__RebalanceMove **ptrs; /* owned array of pointers into moves */
    size_t n;
};
int tandem_rebalance_moves_parse(json_t *moves_json, struct tandem_rebalance_moves *out,
                                 char *errmsg);
void tandem_rebalance_moves_free(struct tandem_rebalance_moves *moves);

/* Apply functions (command table rows in replication/commands.h). */
int tandem_capacity_apply_set(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                              struct tandem_result *result);
int tandem_rebalance_apply(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                           struct tandem_result *result);

/* Capacity planning's rows of the command table, applied in capacity.c. */
#define TANDEM_REBALANCE_COMMANDS(X)                                                               \
    X(capacity_set, TANDEM__COMMAND__BODY_CAPACITY_SET, tandem_capacity_apply_set)                 \
    X(rebalance_apply, TANDEM__COMMAND__BODY_REBALANCE_APPLY, tandem_rebalance_apply)

#endif
