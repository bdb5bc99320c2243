/* Micro-benchmark: the rebalance planner over 100k queued jobs (all at one site, efforts 1..100,
 * due within 400 h, east 10000 and west 5000 units/h), per objective and move limit; then what GET
 * /v1/rebalance/plan does: read the view from a store filled through the state machine, plan,
 * render the JSON. Usage: micro_rebalance_plan [JOBS] ; prints milliseconds per pass. */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "replication/commands.h"
#include "replication/domain/domain.h"
#include "replication/fsm.h"
#include "replication/rebalance/rebalance.h"

#define JOBS_DEFAULT 100000
#define JOBS_MAX     TANDEM_REBALANCE_JOBS_MAX
#define PER_ENTRY    1000 /* job_create commands packed into one raft entry */
#define PASSES       3
#define MAP_SIZE     ((size_t)4 * 1024 * 1024 * 1024)
#define FD_MAX       16
#define NOW_MS       1700000000000LL
#define HOUR_MS      3600000LL
#define ID_LEN       16
#define EFFORT_MAX   100
#define DUE_HOURS    400 /* due times spread over the backlog east alone would take (~500 h) */
#define EAST         10000
#define WEST         5000

static double clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t rng_state = 42;

static uint32_t rng_below(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Job i's fields, the same in memory and in the store. */
static void job_fields(size_t i, uint64_t *effort, int64_t *priority, int64_t *due_ms)
{
    *effort = 1 + rng_below(EFFORT_MAX);
    *priority = (int64_t)rng_below(3);
    *due_ms = NOW_MS + (int64_t)rng_below(DUE_HOURS) * HOUR_MS + (int64_t)(i % 1000);
}

static int bench_pure(size_t n)
{
    struct tandem_rebalance_site sites[2] = {{"east", EAST}, {"west", WEST}};
    struct tandem_rebalance_job *jobs = calloc(n, sizeof *jobs);
    if (jobs == NULL) {
        return ENOMEM;
    }
    rng_state = 42;
    for (size_t i = 0; i < n; i++) {
        snprintf(jobs[i].id, sizeof jobs[i].id, "J%07zu", i);
        job_fields(i, &jobs[i].effort, &jobs[i].priority, &jobs[i].due_ms);
        jobs[i].has_due = true;
        jobs[i].queued = true;
        jobs[i].boxes_site = TANDEM_REBALANCE_BOXES_NONE;
    }
    static const struct {
        int objective;
        size_t max_moves;
    } runs[] = {{TANDEM_REBALANCE_MAKESPAN, TANDEM_REBALANCE_MOVES_MAX},
                {TANDEM_REBALANCE_MAKESPAN, JOBS_MAX},
                {TANDEM_REBALANCE_DUE, TANDEM_REBALANCE_MOVES_MAX},
                {TANDEM_REBALANCE_DUE, JOBS_MAX}};
    int rv = 0;
    for (size_t r = 0; r < sizeof runs / sizeof runs[0] && rv == 0; r++) {
        struct tandem_rebalance_input in = {sites, 2, jobs, n, runs[r].objective, runs[r].max_moves,
                                            NOW_MS};
        for (int pass = 0; pass < PASSES && rv == 0; pass++) {
            struct tandem_rebalance_plan plan;
            char errmsg[256];
            double start = clock_ms();
            rv = tandem_rebalance_plan(&in, &plan, errmsg);
            double took = clock_ms() - start;
            if (rv != 0) {
                fprintf(stderr, "plan: %s\n", errmsg);
                break;
            }
            printf("planner  %-8s max_moves %-7zu jobs %zu: %zu moves, at risk %zu -> %zu, "
                   "%.1f ms\n",
                   tandem_rebalance_objective_name(runs[r].objective), runs[r].max_moves, n,
                   plan.n_moves, plan.sites[0].at_risk_before + plan.sites[1].at_risk_before,
                   plan.sites[0].at_risk_after + plan.sites[1].at_risk_after, took);
            tandem_rebalance_plan_free(&plan);
        }
    }
    free(jobs);
    return rv;
}

/* ---- through the store ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int apply_commands(struct tandem_fsm *fsm, uint64_t index, Tandem__Command **commands,
                          size_t n)
{
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    struct raft_buffer buf;
    batch.proposer_id = 1;
    batch.serial = index;
    batch.now_ms = NOW_MS;
    batch.n_commands = n;
    batch.commands = commands;
    int rv = tandem_entry_encode(&batch, &buf);
    if (rv == 0) {
        rv = tandem_fsm_apply_entry(fsm, index, buf.base, buf.len);
        raft_free(buf.base);
    }
    return rv;
}

/* Creates jobs [first, first + n) at east in one entry. */
static int fill_entry(struct tandem_fsm *fsm, uint64_t index, size_t first, size_t n)
{
    static Tandem__Command commands[PER_ENTRY];
    static Tandem__Command *ptrs[PER_ENTRY];
    static Tandem__JobCreate creates[PER_ENTRY];
    static Tandem__JobRecord jobs[PER_ENTRY];
    static char ids[PER_ENTRY][ID_LEN];
    static Tandem__Actor actor = TANDEM__ACTOR__INIT;
    actor.user = "bench";
    actor.site = "east";
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], ID_LEN, "J%07zu", first + i);
        tandem__job_record__init(&jobs[i]);
        jobs[i].id = ids[i];
        jobs[i].client = "acme";
        jobs[i].kind = "scan";
        jobs[i].site = "east";
        jobs[i].has_due = 1;
        job_fields(first + i, &jobs[i].effort, &jobs[i].priority, &jobs[i].due_ms);
        tandem__job_create__init(&creates[i]);
        creates[i].actor = &actor;
        creates[i].job = &jobs[i];
        tandem__command__init(&commands[i]);
        commands[i].body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
        commands[i].job_create = &creates[i];
        ptrs[i] = &commands[i];
    }
    return apply_commands(fsm, index, ptrs, n);
}

static int fill_store(struct tandem_store *store, struct tandem_fsm *fsm, size_t n)
{
    static const char *const names[] = {"east", "west"};
    static const uint64_t capacities[] = {EAST, WEST};
    Tandem__Actor actor = TANDEM__ACTOR__INIT;
    uint64_t index = 0;
    int rv = 0;
    actor.user = "bench";
    actor.site = "east";
    for (size_t s = 0; s < 2 && rv == 0; s++) {
        Tandem__CapacitySet set = TANDEM__CAPACITY_SET__INIT;
        Tandem__Command command = TANDEM__COMMAND__INIT, *ptr = &command;
        set.actor = &actor;
        set.site = (char *)names[s];
        set.capacity = capacities[s];
        command.body_case = TANDEM__COMMAND__BODY_CAPACITY_SET;
        command.capacity_set = &set;
        rv = apply_commands(fsm, ++index, &ptr, 1);
    }
    rng_state = 42;
    for (size_t first = 0; first < n && rv == 0; first += PER_ENTRY) {
        rv = fill_entry(fsm, ++index, first, n - first < PER_ENTRY ? n - first : PER_ENTRY);
    }
    return rv == 0 ? tandem_store_commit(store) : rv;
}

static int bench_store_pass(struct tandem_store *store, int objective)
{
    struct tandem_rebalance_view view;
    MDB_txn *txn;
    char errmsg[256];
    int status = 0;
    double start = clock_ms();
    int rv = tandem_store_read_txn(store, &txn);
    if (rv != 0) {
        return rv;
    }
    rv = tandem_rebalance_view_read(store, txn, &view);
    mdb_txn_abort(txn);
    double read = clock_ms();
    json_t *plan =
        rv == 0 ? tandem_rebalance_plan_json(&view, objective, TANDEM_REBALANCE_MOVES_DEFAULT,
                                             NOW_MS, &status, errmsg)
                : NULL;
    char *text = plan != NULL ? json_dumps(plan, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    double done = clock_ms();
    if (text == NULL) {
        fprintf(stderr, "plan: %s\n", rv != 0 ? store->errmsg : errmsg);
        rv = rv != 0 ? rv : EIO;
    } else {
        printf("GET plan %-8s jobs %zu: view read %.1f ms, plan + JSON %.1f ms (%zu bytes, %zu "
               "moves)\n",
               tandem_rebalance_objective_name(objective), view.n_jobs, read - start, done - read,
               strlen(text), json_array_size(json_object_get(plan, "moves")));
    }
    free(text);
    json_decref(plan);
    tandem_rebalance_view_free(&view);
    return rv;
}

static int bench_store(size_t n)
{
    char dir[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    struct tandem_store store;
    struct tandem_fsm fsm;
    snprintf(dir, sizeof dir, "%s/tandem-bench-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        return errno;
    }
    int rv = tandem_store_open(&store, dir, MAP_SIZE);
    if (rv != 0) {
        fprintf(stderr, "store: %s\n", store.errmsg);
        goto err_after_dir;
    }
    tandem_fsm_init(&fsm, &store);
    if ((rv = fill_store(&store, &fsm, n)) != 0) {
        fprintf(stderr, "fill: %s %s\n", store.errmsg, fsm.errmsg);
    }
    for (int pass = 0; pass < PASSES && rv == 0; pass++) {
        rv = bench_store_pass(&store, TANDEM_REBALANCE_MAKESPAN);
    }
    rv = rv == 0 ? bench_store_pass(&store, TANDEM_REBALANCE_DUE) : rv;
    tandem_store_close(&store);
err_after_dir:
    nftw(dir, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS);
    return rv;
}

int main(int argc, char **argv)
{
    size_t n = JOBS_DEFAULT;
    if (argc > 1) {
        char *end = NULL;
        unsigned long long value = strtoull(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || value == 0 || value > JOBS_MAX) {
            fprintf(stderr, "usage: %s [JOBS (1..%d)]\n", argv[0], JOBS_MAX);
            return 2;
        }
        n = (size_t)value;
    }
    int rv = bench_pure(n);
    rv = rv == 0 ? bench_store(n) : rv;
    return rv == 0 ? 0 : 1;
}
