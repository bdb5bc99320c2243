/* Micro-benchmark of backups (issue 14): fills a temporary store through the state machine with
 * JOBS jobs, 2 x JOBS boxes and moves of those boxes until about 10 x JOBS trace events, then
 * times and sizes tandem_backup_write (plain and sealed), verify levels 1 and 2 and the unpack a
 * restore does. Usage: micro_backup [JOBS] [KEEP_FILE]; KEEP_FILE keeps the plain backup there
 * (tests/bench/backup-figures.sh times tandemctl's level 3 and restore on it). */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "replication/commands.h"
#include "replication/domain/domain.h"
#include "replication/fsm.h"
#include "tests/bench/micro_apply.h"
#include "storage/backup.h"

#define JOBS_DEFAULT  100000
#define JOBS_MAX      1000000
#define PER_ENTRY     1000 /* commands packed into one raft entry */
#define MOVES_PER_BOX 7    /* moves of each box are spread over two passes: see fill */
#define MAP_SIZE      ((size_t)8 * 1024 * 1024 * 1024)
#define FD_MAX        16
#define NOW_MS        1700000000000LL
#define ID_LEN        16

enum fill_kind { FILL_JOB, FILL_BOX, FILL_MOVE };

static const char *const sites[] = {"east", "west"};
static const char *const clients[] = {"acme", "globex", "initech", "umbrella"};

/* nftw's visit for the clean-up: directories come after their entries (FTW_DEPTH). */
static int cleanup_visit(const char *path, const struct stat *st, int kind, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return kind == FTW_DP ? rmdir(path) : unlink(path);
}

/* The loop-free monotonic clock, in milliseconds. */
static double now_ms(void)
{
    return (double)uv_hrtime() / 1e6;
}

/* Command i of an entry of the given kind (static storage: one entry at a time). */
static void command_make(Tandem__Command *c, Tandem__Actor *actor, enum fill_kind kind, size_t n,
                         size_t slot)
{
    static Tandem__JobCreate creates[PER_ENTRY];
    static Tandem__JobRecord jobs[PER_ENTRY];
    static Tandem__BoxCheckin checkins[PER_ENTRY];
    static Tandem__BoxRecord boxes[PER_ENTRY], *box_ptrs[PER_ENTRY];
    static Tandem__BoxAction moves[PER_ENTRY];
    static char ids[PER_ENTRY][ID_LEN], shelves[PER_ENTRY][ID_LEN];
    tandem__command__init(c);
    if (kind == FILL_JOB) {
        snprintf(ids[slot], ID_LEN, "J%07zu", n);
        tandem__job_record__init(&jobs[slot]);
        jobs[slot].id = ids[slot];
        jobs[slot].client = (char *)clients[n % 4];
        jobs[slot].kind = "scan";
        jobs[slot].site = (char *)sites[n % 2];
        jobs[slot].effort = 5;
        tandem__job_create__init(&creates[slot]);
        creates[slot].actor = actor;
        creates[slot].job = &jobs[slot];
        c->body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
        c->job_create = &creates[slot];
        return;
    }
    snprintf(ids[slot], ID_LEN, "B%07zu", kind == FILL_BOX ? n : n / MOVES_PER_BOX);
    /* Moves go to shelves of their own ("M..."): a move to the shelf a box already stands on
     * records no event, and "S<n % 97>" was that shelf for every 97th box's first move. */
    snprintf(shelves[slot], ID_LEN, "%c%zu", kind == FILL_BOX ? 'S' : 'M', n % 97);
    if (kind == FILL_BOX) {
        tandem__box_record__init(&boxes[slot]);
        boxes[slot].id = ids[slot];
        boxes[slot].ledger = "L-2026-1";
        boxes[slot].client = (char *)clients[n % 4];
        boxes[slot].site = (char *)sites[n % 2];
        boxes[slot].shelf = shelves[slot];
        box_ptrs[slot] = &boxes[slot];
        tandem__box_checkin__init(&checkins[slot]);
        checkins[slot].actor = actor;
        checkins[slot].n_boxes = 1;
        checkins[slot].boxes = &box_ptrs[slot];
        c->body_case = TANDEM__COMMAND__BODY_BOX_CHECKIN;
        c->box_checkin = &checkins[slot];
        return;
    }
    tandem__box_action__init(&moves[slot]);
    moves[slot].actor = actor;
    moves[slot].id = ids[slot];
    moves[slot].action = TANDEM_BOX_ACTION_MOVE;
    moves[slot].site = (char *)sites[(n / MOVES_PER_BOX) % 2];
    moves[slot].shelf = shelves[slot];
    c->body_case = TANDEM__COMMAND__BODY_BOX_ACTION;
    c->box_action = &moves[slot];
}

/* Applies one entry of commands [first, first + n) of kind. */
static int fill_entry(struct tandem_fsm *fsm, uint64_t index, enum fill_kind kind, size_t first,
                      size_t n)
{
    static Tandem__Command commands[PER_ENTRY];
    static Tandem__Command *ptrs[PER_ENTRY];
    Tandem__Actor actor = TANDEM__ACTOR__INIT;
    actor.user = "bench";
    actor.site = "east";
    for (size_t i = 0; i < n; i++) {
        command_make(&commands[i], &actor, kind, first + i, i);
        ptrs[i] = &commands[i];
    }
    return micro_apply(fsm, index, ptrs, n, NOW_MS);
}

static int fill(struct tandem_fsm *fsm, size_t jobs)
{
    const struct {
        enum fill_kind kind;
        size_t count;
    } steps[] = {{FILL_JOB, jobs}, {FILL_BOX, 2 * jobs}, {FILL_MOVE, 2 * jobs * MOVES_PER_BOX / 2}};
    uint64_t index = 1;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        for (size_t first = 0; first < steps[s].count; first += PER_ENTRY, index++) {
            size_t n = steps[s].count - first < PER_ENTRY ? steps[s].count - first : PER_ENTRY;
            if (fill_entry(fsm, index, steps[s].kind, first, n) != 0) {
                return -1;
            }
            if (index % 64 == 0 && tandem_store_commit(fsm->store) != 0) {
                return -1;
            }
        }
    }
    return tandem_store_commit(fsm->store);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static int timed(const char *what, int rv, double start, const char *path, const char *errmsg)
{
    if (rv != 0) {
        fprintf(stderr, "%s failed: %s\n", what, errmsg);
        return -1;
    }
    printf("%-28s %9.0f ms   file %8.1f MiB\n", what, now_ms() - start,
           path != NULL ? (double)file_size(path) / (1024.0 * 1024.0) : 0.0);
    return 0;
}

static int measure(struct tandem_store *store, const char *root, const char *keep)
{
    char file[PATH_MAX], sealed[PATH_MAX], scratch[PATH_MAX], state[PATH_MAX];
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_backup_manifest m;
    struct tandem_backup_key key = {.id = 1};
    const struct tandem_backup_source source = {.cluster_id = "bench",
                                                .node = "bench-1",
                                                .site = "east",
                                                .tandem_version = "bench",
                                                .epoch = 1,
                                                .term = 1,
                                                .created_ms = NOW_MS};
    memset(key.key, 0x5a, sizeof key.key);
    snprintf(file, sizeof file, "%s", keep != NULL ? keep : "");
    if (keep == NULL) {
        snprintf(file, sizeof file, "%s/plain.tbk", root);
    }
    snprintf(sealed, sizeof sealed, "%s/sealed.tbk", root);
    snprintf(scratch, sizeof scratch, "%s/scratch", root);
    snprintf(state, sizeof state, "%s/restored", root);
    if (mkdir(scratch, 0700) != 0) {
        return -1;
    }
    double t = now_ms();
    int rv = timed("backup (plain)", tandem_backup_write(store, file, &source, NULL, &m, errmsg), t,
                   file, errmsg);
    printf("counts: keys %llu, jobs %llu, boxes %llu, trace events %llu; state %.1f MiB\n",
           (unsigned long long)m.counts.keys, (unsigned long long)m.counts.jobs,
           (unsigned long long)m.counts.boxes, (unsigned long long)m.counts.trace_events,
           (double)m.state_bytes / (1024.0 * 1024.0));
    t = now_ms();
    rv = rv != 0 ? rv
                 : timed("backup (sealed, AES-GCM)",
                         tandem_backup_write(store, sealed, &source, &key, &m, errmsg), t, sealed,
                         errmsg);
    for (int level = 1; rv == 0 && level <= 2; level++) {
        char what[64];
        snprintf(what, sizeof what, "verify level %d (plain)", level);
        t = now_ms();
        rv = timed(what, tandem_backup_verify(file, level, NULL, 0, scratch, &m, NULL, errmsg), t,
                   NULL, errmsg);
    }
    t = now_ms();
    rv = rv != 0 ? rv
                 : timed("verify level 2 (sealed)",
                         tandem_backup_verify(sealed, 2, &key, 1, scratch, &m, NULL, errmsg), t,
                         NULL, errmsg);
    t = now_ms();
    rv = rv != 0
             ? rv
             : timed("unpack for restore (plain)",
                     tandem_backup_unpack(file, NULL, 0, state, &m, NULL, errmsg), t, NULL, errmsg);
    return rv;
}

int main(int argc, char **argv)
{
    char root[PATH_MAX], dir[PATH_MAX + 8];
    size_t jobs = JOBS_DEFAULT;
    struct tandem_store store;
    struct tandem_fsm fsm;
    /* JOBS: 1..JOBS_MAX; anything else (trailing text, 0, too many) is a usage error. */
    char *end = NULL;
    unsigned long long asked = argc > 1 ? strtoull(argv[1], &end, 10) : JOBS_DEFAULT;
    if (argc > 1 && (end == argv[1] || *end != '\0' || asked == 0 || asked > JOBS_MAX)) {
        fprintf(stderr, "usage: %s [JOBS (1..%d)] [KEEP_FILE]\n", argv[0], JOBS_MAX);
        return 2;
    }
    jobs = (size_t)asked;
    if (micro_scratch(root, sizeof root) != 0) {
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/state", root);
    int rv = tandem_store_open(&store, dir, MAP_SIZE);
    if (rv == 0) {
        tandem_fsm_init(&fsm, &store);
        double t = now_ms();
        rv = fill(&fsm, jobs);
        printf("filled through the state machine in %.0f ms\n", now_ms() - t);
        rv = rv == 0 ? measure(&store, root, argc > 2 ? argv[2] : NULL) : rv;
        tandem_store_close(&store);
    } else {
        fprintf(stderr, "open: %s\n", store.errmsg);
    }
    nftw(root, cleanup_visit, FD_MAX, FTW_DEPTH | FTW_PHYS);
    return rv == 0 ? 0 : 1;
}
