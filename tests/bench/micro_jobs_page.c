/* Micro-benchmark: pages through 100k jobs with the listing function GET /v1/jobs uses (limit
 * 1000, after = next), JSON text included, on a temporary store filled through the state
 * machine. Usage: micro_jobs_page [JOBS] ; prints jobs/s and total ms for each pass. */
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
#include "tests/bench/micro_apply.h"

#define JOBS_DEFAULT 100000
#define JOBS_MAX     10000000
#define PER_ENTRY    1000 /* job_create commands packed into one raft entry */
#define PAGE         1000 /* the API's largest page */
#define PASSES       3
#define MAP_SIZE     ((size_t)4 * 1024 * 1024 * 1024)
#define FD_MAX       16
#define NOW_MS       1700000000000LL
#define ID_LEN       16

static const char *const sites[] = {"east", "west"};
static const char *const clients[] = {"acme", "globex", "initech", "umbrella"};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Applies one entry creating jobs [first, first + n). */
static int fill_entry(struct tandem_fsm *fsm, uint64_t index, size_t first, size_t n)
{
    static Tandem__Command commands[PER_ENTRY];
    static Tandem__Command *ptrs[PER_ENTRY];
    static Tandem__JobCreate creates[PER_ENTRY];
    static Tandem__JobRecord jobs[PER_ENTRY];
    static char ids[PER_ENTRY][ID_LEN];
    Tandem__Actor actor = TANDEM__ACTOR__INIT;
    actor.user = "bench";
    actor.site = "east";
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], ID_LEN, "J%07zu", first + i);
        tandem__job_record__init(&jobs[i]);
        jobs[i].id = ids[i];
        jobs[i].client = (char *)clients[(first + i) % 4];
        jobs[i].kind = "scan";
        jobs[i].site = (char *)sites[(first + i) % 2];
        jobs[i].effort = 5;
        tandem__job_create__init(&creates[i]);
        creates[i].actor = &actor;
        creates[i].job = &jobs[i];
        tandem__command__init(&commands[i]);
        commands[i].body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
        commands[i].job_create = &creates[i];
        ptrs[i] = &commands[i];
    }
    return micro_apply(fsm, index, ptrs, n, NOW_MS);
}

/* One pass over every page of q; returns the jobs listed (or -1), bytes of JSON in *bytes. */
static long page_all(struct tandem_store *store, struct tandem_job_query q, size_t *bytes)
{
    char after[TANDEM_DOMAIN_ID_LEN_MAX + 1] = "", next[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    long total = 0;
    MDB_txn *txn;
    *bytes = 0;
    if (tandem_store_read_txn(store, &txn) != 0) {
        return -1;
    }
    for (long page = 0; page <= JOBS_MAX / PAGE; page++) {
        struct tandem_text items, body;
        tandem_text_init(&items, TANDEM_LIST_BYTES_MAX);
        tandem_text_init(&body, TANDEM_LIST_BYTES_MAX * 2);
        q.after = after;
        if (tandem_job_list(store, txn, &q, &items, next) != 0) {
            fprintf(stderr, "list failed: %s\n", store->errmsg);
            tandem_text_free(&items);
            total = -1;
            break;
        }
        /* The body the API answers with, assembled the same way. */
        tandem_text_cstr(&body, "{\"jobs\":[");
        tandem_text_raw(&body, items.data != NULL ? items.data : "", items.len);
        tandem_text_cstr(&body, "],\"next\":");
        tandem_text_string(&body, next, strlen(next));
        tandem_text_cstr(&body, "}");
        *bytes += body.len;
        /* Count the objects: every job object starts with {"id": exactly once. */
        for (const char *p = items.data; p != NULL && (p = strstr(p, "{\"id\":")) != NULL; p++) {
            total++;
        }
        tandem_text_free(&items);
        tandem_text_free(&body);
        if (next[0] == '\0') {
            break;
        }
        snprintf(after, sizeof after, "%s", next);
    }
    mdb_txn_abort(txn);
    return total;
}

static int run(struct tandem_store *store, const char *what, struct tandem_job_query q,
               long expected)
{
    for (int pass = 1; pass <= PASSES; pass++) {
        size_t bytes;
        double start = now_ms();
        long listed = page_all(store, q, &bytes);
        double elapsed = now_ms() - start;
        if (listed != expected) {
            fprintf(stderr, "%s: listed %ld jobs, expected %ld\n", what, listed, expected);
            return -1;
        }
        printf("%-22s pass %d: %ld jobs in %ld pages of %d, %.1f ms total, %.0f jobs/s, "
               "%.1f MiB JSON\n",
               what, pass, listed, (listed + PAGE - 1) / PAGE, PAGE, elapsed,
               (double)listed / (elapsed / 1e3), (double)bytes / (1024.0 * 1024.0));
    }
    return 0;
}

static int bench(const char *dir, size_t n)
{
    struct tandem_store store;
    struct tandem_fsm fsm;
    if (tandem_store_open(&store, dir, MAP_SIZE) != 0) {
        fprintf(stderr, "open: %s\n", store.errmsg);
        return -1;
    }
    tandem_fsm_init(&fsm, &store);
    double start = now_ms();
    int rv = 0;
    for (size_t first = 0; first < n && rv == 0; first += PER_ENTRY) {
        size_t count = n - first < PER_ENTRY ? n - first : PER_ENTRY;
        rv = fill_entry(&fsm, first / PER_ENTRY + 1, first, count);
    }
    if (rv == 0 && (rv = tandem_store_commit(&store)) == 0) {
        printf("created %zu jobs through the state machine in %.0f ms\n", n, now_ms() - start);
        struct tandem_job_query all = {.limit = PAGE};
        struct tandem_job_query east = {.site = "east", .limit = PAGE};
        struct tandem_job_query acme_queued = {.client = "acme", .status = "queued", .limit = PAGE};
        rv = run(&store, "all jobs", all, (long)n);
        rv = rv == 0 ? run(&store, "site=east (index)", east, (long)(n + 1) / 2) : rv;
        rv = rv == 0 ? run(&store, "client=acme&status=...", acme_queued, (long)(n + 3) / 4) : rv;
    }
    tandem_store_close(&store);
    return rv;
}

int main(int argc, char **argv)
{
    char dir[PATH_MAX];
    size_t n = JOBS_DEFAULT;
    if (argc > 1) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (errno != 0 || end == argv[1] || *end != '\0' || v == 0 || v > JOBS_MAX) {
            fprintf(stderr, "usage: %s [JOBS (1..%d)]\n", argv[0], JOBS_MAX);
            return 2;
        }
        n = (size_t)v;
    }
    if (micro_scratch(dir, sizeof dir) != 0) {
        return 1;
    }
    int rv = bench(dir, n);
    nftw(dir, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS);
    return rv == 0 ? 0 : 1;
}
