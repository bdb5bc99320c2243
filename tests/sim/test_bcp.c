/* Deterministic simulation of a 2+2+1 tandem cluster (east, west, witness) on raft's in-memory
 * fixture with the real FSM, LMDB stores, site table and site controller planner: seeded
 * schedules of client writes, planned invokes and revokes, site loss, east|west partitions,
 * witness loss, node crashes and disk faults, checked at every step for two leaders in a term and
 * replica divergence, and at the end for lost committed entries, convergence, and leadership or
 * votes left in an invoked site.
 *
 * TANDEM_SIM_BCP_SEEDS=N runs the regression seeds (sim_regression_seeds: every seed that once
 * failed) and seeds 1..N, each in a child process; a failing seed is printed with the command
 * that replays it: TANDEM_SIM_BCP_SEED=N runs that seed in-process. The default, 8,000, and
 * sim_test_fixture's 2,000 are the 10,000 schedules of a CI run: most go here because this is
 * the BCP code's only randomized test (seed 850 was found here) and a seed costs a third of a
 * fixture seed: about 0.05 s of CPU unsanitized, 0.4 s under ASan+UBSan (the summary says).
 * Snapshots are off here (threshold above what a schedule writes): the snapshot paths and the
 * fixture bugs around them are tests/sim/test_fixture.c's subject. A quarter of the client
 * writes create jobs at east or west, and the end check also finds no open job left at an
 * invoked site. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "consensus/raft_node.h"
#include "consensus/raft_shield.h"
#include "consensus/site_controller.h"
#include "replication/domain/domain.h"
#include "replication/fsm.h"
#include "replication/bcp/sites.h"
#include "tests/sim/sim_heap.h"

#define SIM_SERVERS       5
#define SIM_SEEDS_DEFAULT 8000
#define SIM_SEEDS_MAX     1000000
#define SIM_PARALLEL      2   /* seeds simulated at once, one child process each */
#define SIM_PHASES        8   /* fault/operator phases in one schedule */
#define SIM_PHASE_MS_MIN  600 /* simulated length of one phase */
#define SIM_PHASE_MS_SPAN 1600
#define SIM_SETTLE_MS     60000   /* healing, re-electing and reconciling may take this long */
#define SIM_STEPS_MAX     2000000 /* fixture steps one schedule may take */
#define SIM_TERMS_MAX     8192
#define SIM_INDEXES_MAX   65536
#define SIM_APPLIES_MAX   64   /* entries one server may have proposed and not completed */
#define SIM_SITE_DOWN_MS  3000 /* site_down_after_ms of the simulated nodes */
#define SIM_TICK_MS       100  /* the site controller's tick */
#define SIM_BACKOFF_MS    2000
#define SIM_MAP_SIZE      ((size_t)16 * 1024 * 1024)
#define SIM_FD_MAX        16
#define SIM_FAILURE_MAX   512
#define SIM_TEXT_MAX      64

static const char *const sim_names[SIM_SERVERS] = {"east-1", "east-2", "west-1", "west-2",
                                                   "witness-1"};
static const char *const sim_sites[SIM_SERVERS] = {"east", "east", "west", "west", "witness"};

enum sim_busy { SIM_IDLE, SIM_PROPOSING, SIM_ASSIGNING, SIM_TRANSFERRING };

struct sim;

/* The site controller of one server (it acts while that server leads). */
struct sim_controller {
    int busy; /* enum sim_busy */
    struct tandem_site_action action;
    struct raft_change change;
    struct raft_transfer transfer;
    bool change_pending, transfer_pending;
    raft_time last_tick, backoff_until;
    unsigned reported; /* bit per site index of down reports written */
};

struct sim_server {
    struct tandem_store store;
    struct tandem_fsm fsm;
    char dir[PATH_MAX];
    bool store_open;
    bool killed;
    bool disk_fault;
    unsigned applies;               /* raft_apply requests in flight */
    raft_time last_ok[SIM_SERVERS]; /* when this server's probes last reached each server */
    struct sim_controller ctl;
    struct tandem_raft_shield shield; /* libraft 0.22.1's bugs shielded as in tandemd */
    uint64_t applied_seen;
    struct sim *sim; /* borrowed: the way back from raft callbacks */
    unsigned index;
};

struct sim_stats {
    uint64_t writes, invokes, revokes, auto_invokes, transfers, assigns, site_losses, partitions,
        witness_losses, crashes, disk_faults, recovered, repairs, invoked_checks;
};

struct sim {
    uint64_t seed, rng;
    uint64_t timeout_rng; /* election timeouts only, so that other draws stay as they were */
    raft_time timer_start[SIM_SERVERS]; /* each server's election timer, last seen */
    struct raft_fixture fixture;
    bool fixture_ready;
    struct sim_server servers[SIM_SERVERS];
    bool cut[SIM_SERVERS][SIM_SERVERS]; /* network link i->j cut by a partition */
    char root[PATH_MAX];
    uint8_t leader_of_term[SIM_TERMS_MAX];
    uint8_t (*digest_at)[TANDEM_DIGEST_LEN]; /* owned, SIM_INDEXES_MAX */
    bool *digest_seen;                       /* owned */
    uint64_t max_applied;
    uint64_t steps, key_serial;
    char preferred[TANDEM_SITE_LEN_MAX + 1];
    struct sim_stats stats;
    char failure[SIM_FAILURE_MAX];
};

/* One proposal: a packed batch of one command through raft_apply. */
struct sim_apply {
    struct raft_apply req;
    struct sim *sim;
    unsigned server;
    bool controller; /* the controller's step waits for it */
};

#define SIM_CHECK(s, cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            sim_fail(s, __LINE__, __VA_ARGS__);                                                    \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static void sim_fail(struct sim *s, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sim_fail(struct sim *s, int line, const char *fmt, ...)
{
    char text[SIM_FAILURE_MAX - 32];
    va_list args;
    if (s->failure[0] != '\0') {
        return;
    }
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    snprintf(s->failure, sizeof s->failure, "line %d: %s", line, text);
}

static uint64_t sim_next(struct sim *s)
{
    s->rng ^= s->rng << 13; /* xorshift64 */
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static unsigned sim_rand(struct sim *s, unsigned n)
{
    return n == 0 ? 0 : (unsigned)(sim_next(s) % n);
}

static struct raft *sim_raft(struct sim *s, unsigned i)
{
    return raft_fixture_get(&s->fixture, i);
}

static raft_time sim_now(struct sim *s)
{
    return raft_fixture_time(&s->fixture);
}

static unsigned env_unsigned(const char *name, unsigned fallback, unsigned max)
{
    const char *text = getenv(name);
    if (text == NULL || text[0] == '\0') {
        return fallback;
    }
    unsigned long value = strtoul(text, NULL, 10);
    return value > max ? max : (unsigned)value;
}

static int site_index(const char *site)
{
    for (int i = 0; i < SIM_SERVERS; i++) {
        if (strcmp(sim_sites[i], site) == 0) {
            return i;
        }
    }
    return -1;
}

/* ---- set-up ---- */

/* The fixture's own tracer prints every raft event: keep the output to failures. */
static void sim_trace(struct raft_tracer *t, int type, const void *data)
{
    (void)t;
    (void)type;
    (void)data;
}

static struct raft_tracer sim_tracer = {.impl = NULL, .version = 2, .emit = sim_trace};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int sim_open_stores(struct sim *s)
{
    const char *tmp = getenv("TMPDIR");
    struct stat st;
    if (tmp == NULL || tmp[0] == '\0') {
        tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    }
    snprintf(s->root, sizeof s->root, "%s/tandem-sim-bcp-XXXXXX", tmp);
    SIM_CHECK(s, mkdtemp(s->root) != NULL, "mkdtemp %s: %s", s->root, strerror(errno));
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        struct sim_server *server = &s->servers[i];
        snprintf(server->dir, sizeof server->dir, "%s/%s", s->root, sim_names[i]);
        int rv = tandem_store_open(&server->store, server->dir, SIM_MAP_SIZE);
        SIM_CHECK(s, rv == 0, "open store %s: %s", sim_names[i], server->store.errmsg);
        server->store_open = true;
        tandem_fsm_init(&server->fsm, &server->store);
        server->sim = s;
        server->index = i;
    }
    return 0;
}

/* Five voters with our FSM, bootstrapped and started. Snapshots off (see the header). */
/* tandemd runs libraft behind consensus/raft_shield.h; TANDEM_SIM_RAW_RAFT=1 shows raft bare. */
static bool sim_shields_on(void)
{
    const char *raw = getenv("TANDEM_SIM_RAW_RAFT");
    return raw == NULL || strcmp(raw, "1") != 0;
}

static int sim_start(struct sim *s)
{
    struct raft_configuration conf;
    int rv = raft_fixture_init(&s->fixture);
    SIM_CHECK(s, rv == 0, "raft_fixture_init: %d", rv);
    s->fixture_ready = true;
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        rv = raft_fixture_grow(&s->fixture, &s->servers[i].fsm.raft_fsm);
        SIM_CHECK(s, rv == 0, "raft_fixture_grow: %d", rv);
        struct raft *r = sim_raft(s, i);
        tandem_fsm_set_raft(&s->servers[i].fsm, r);
        r->tracer = &sim_tracer;
        raft_set_snapshot_threshold(r, 1000000);
        raft_set_snapshot_trailing(r, 2000000);
        raft_set_capacity_threshold(r, 0);
        raft_set_pre_vote(r, true);
        raft_fixture_set_randomized_election_timeout(&s->fixture, i, 1000 + sim_rand(s, 1000));
        raft_fixture_set_network_latency(&s->fixture, i, 5 + sim_rand(s, 30));
        raft_fixture_set_disk_latency(&s->fixture, i, 2 + sim_rand(s, 20));
        if (sim_shields_on()) {
            tandem_raft_shield_install(&s->servers[i].shield, r->io, TANDEM_RAFT_SHIELD_TANDEMD);
        }
    }
    rv = raft_fixture_configuration(&s->fixture, SIM_SERVERS, &conf);
    SIM_CHECK(s, rv == 0, "raft_fixture_configuration: %d", rv);
    rv = raft_fixture_bootstrap(&s->fixture, &conf);
    raft_configuration_close(&conf);
    SIM_CHECK(s, rv == 0, "raft_fixture_bootstrap: %d", rv);
    rv = raft_fixture_start(&s->fixture);
    SIM_CHECK(s, rv == 0, "raft_fixture_start: %d", rv);
    return 0;
}

static void sim_destroy(struct sim *s)
{
    if (s->fixture_ready) {
        raft_fixture_close(&s->fixture); /* fails what is still pending */
    }
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        tandem_raft_shield_remove(&s->servers[i].shield);
        if (s->servers[i].store_open) {
            tandem_store_close(&s->servers[i].store);
        }
    }
    if (s->root[0] != '\0') {
        (void)nftw(s->root, remove_entry, SIM_FD_MAX, FTW_DEPTH | FTW_PHYS);
    }
    free(s->digest_at);
    free(s->digest_seen);
    free(s);
}

static struct sim *sim_create(uint64_t seed)
{
    struct sim *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->seed = seed;
    s->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    s->timeout_rng = ~s->rng;
    s->digest_at = calloc(SIM_INDEXES_MAX, TANDEM_DIGEST_LEN);
    s->digest_seen = calloc(SIM_INDEXES_MAX, sizeof *s->digest_seen);
    assert_non_null(s->digest_at);
    assert_non_null(s->digest_seen);
    /* A third of the schedules prefer west for leadership, as preferred_site would. */
    snprintf(s->preferred, sizeof s->preferred, "%s", sim_rand(s, 3) == 0 ? "west" : "");
    return s;
}

/* ---- proposals ---- */

static void sim_controller_done(struct sim *s, unsigned i, int status);

static void sim_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct sim_apply *a = req->data;
    (void)result;
    a->sim->servers[a->server].applies--;
    if (a->controller) {
        sim_controller_done(a->sim, a->server, status);
    }
    free(a);
}

/* Packs command into one entry and proposes it on server i. Returns 0 or a RAFT_* code (then
 * nothing is pending). */
static int sim_propose(struct sim *s, unsigned i, Tandem__Command *command, bool controller)
{
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    Tandem__Command *commands[1] = {command};
    struct raft_buffer buf;
    if (s->servers[i].applies >= SIM_APPLIES_MAX) {
        return RAFT_BUSY;
    }
    struct sim_apply *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return RAFT_NOMEM;
    }
    batch.proposer_id = i + 1;
    batch.serial = ++s->key_serial;
    batch.now_ms = (int64_t)sim_now(s);
    batch.n_commands = 1;
    batch.commands = commands;
    if (tandem_entry_encode(&batch, &buf) != 0) {
        free(a);
        return RAFT_NOMEM;
    }
    a->sim = s;
    a->server = i;
    a->controller = controller;
    a->req.data = a;
    int rv = raft_apply(sim_raft(s, i), &a->req, &buf, 1, sim_apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
        free(a);
        return rv;
    }
    s->servers[i].applies++;
    return 0;
}

static int sim_propose_update(struct sim *s, unsigned i, int change, const char *site,
                              const char *reason, const char *by, bool flag, bool controller)
{
    Tandem__Command command = TANDEM__COMMAND__INIT;
    Tandem__SiteUpdate update = TANDEM__SITE_UPDATE__INIT;
    update.action = (Tandem__SiteUpdate__Action)change;
    update.site = (char *)site;
    update.reason = (char *)reason;
    update.by = (char *)by;
    update.failback = change == TANDEM_SITE_REVOKE && flag;
    update.witness = change == TANDEM_SITE_REGISTER && flag;
    update.force = change == TANDEM_SITE_INVOKE && flag;
    command.body_case = TANDEM__COMMAND__BODY_SITE_UPDATE;
    command.site_update = &update;
    return sim_propose(s, i, &command, controller);
}

/* A job for east or west (every fourth write): invokes must move the open ones away. */
static int sim_propose_job(struct sim *s, unsigned i)
{
    char id[SIM_TEXT_MAX];
    Tandem__Command command = TANDEM__COMMAND__INIT;
    Tandem__JobCreate create = TANDEM__JOB_CREATE__INIT;
    Tandem__JobRecord job = TANDEM__JOB_RECORD__INIT;
    Tandem__Actor actor = TANDEM__ACTOR__INIT;
    snprintf(id, sizeof id, "J%" PRIu64, s->steps);
    actor.user = (char *)"sim";
    actor.site = (char *)sim_sites[i];
    job.id = id;
    job.client = (char *)"acme";
    job.kind = (char *)"scan";
    job.site = (char *)(sim_rand(s, 2) == 0 ? "east" : "west");
    job.effort = 1;
    create.actor = &actor;
    create.job = &job;
    command.body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    command.job_create = &create;
    return sim_propose(s, i, &command, false);
}

static int sim_propose_write(struct sim *s, unsigned i)
{
    if (sim_rand(s, 4) == 0) {
        int rv = sim_propose_job(s, i);
        s->stats.writes += rv == 0 ? 1 : 0;
        return rv;
    }
    char key[SIM_TEXT_MAX], value[SIM_TEXT_MAX];
    Tandem__Command command = TANDEM__COMMAND__INIT;
    Tandem__KvPut put = TANDEM__KV_PUT__INIT;
    snprintf(key, sizeof key, "k/%u", sim_rand(s, 64));
    snprintf(value, sizeof value, "v%" PRIu64, s->steps);
    put.key.data = (uint8_t *)key;
    put.key.len = strlen(key);
    put.value.data = (uint8_t *)value;
    put.value.len = strlen(value);
    command.body_case = TANDEM__COMMAND__BODY_KV_PUT;
    command.kv_put = &put;
    int rv = sim_propose(s, i, &command, false);
    s->stats.writes += rv == 0 ? 1 : 0;
    return rv;
}

static void sim_address(unsigned i, char *out, size_t size)
{
    snprintf(out, size, "%s|%s|127.0.0.1:%u|http://127.0.0.1:%u", sim_names[i], sim_sites[i],
             9000 + i, 9100 + i);
}

/* The command of a controller action, as node/bcp/runtime.c builds it. */
static int sim_propose_action(struct sim *s, unsigned i, const struct tandem_site_action *a,
                              const struct tandem_site_plan_input *in)
{
    Tandem__Command command = TANDEM__COMMAND__INIT;
    Tandem__SiteDecision decision = TANDEM__SITE_DECISION__INIT;
    Tandem__MemberHomeSet homes = TANDEM__MEMBER_HOME_SET__INIT;
    Tandem__MemberHome home[SIM_SERVERS], *home_ptrs[SIM_SERVERS];
    char addresses[SIM_SERVERS][TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    switch (a->kind) {
        case TANDEM_SITE_ACTION_REGISTER:
            return sim_propose_update(s, i, TANDEM_SITE_REGISTER, a->site, a->reason, "controller",
                                      a->witness, true);
        case TANDEM_SITE_ACTION_PREFER:
            return sim_propose_update(s, i, TANDEM_SITE_PREFER, a->site, a->reason, "controller",
                                      false, true);
        case TANDEM_SITE_ACTION_INVOKE:
            s->stats.auto_invokes++;
            return sim_propose_update(s, i, TANDEM_SITE_INVOKE, a->site, a->reason, "auto",
                                      a->force, true);
        case TANDEM_SITE_ACTION_RECOVERED:
            s->stats.recovered++;
            return sim_propose_update(s, i, TANDEM_SITE_RECOVERED, a->site, a->reason, "controller",
                                      false, true);
        case TANDEM_SITE_ACTION_RECORD_HOMES:
            for (unsigned k = 0; k < in->n_members; k++) {
                if (in->members[k].home_role >= 0) {
                    continue;
                }
                unsigned j = (unsigned)in->members[k].id - 1;
                tandem__member_home__init(&home[homes.n_members]);
                sim_address(j, addresses[homes.n_members], sizeof addresses[0]);
                home[homes.n_members].name = (char *)sim_names[j];
                home[homes.n_members].site = (char *)sim_sites[j];
                home[homes.n_members].address = addresses[homes.n_members];
                home[homes.n_members].role = in->members[k].role;
                home_ptrs[homes.n_members] = &home[homes.n_members];
                homes.n_members++;
            }
            homes.members = home_ptrs;
            command.body_case = TANDEM__COMMAND__BODY_MEMBER_HOME_SET;
            command.member_home_set = &homes;
            return sim_propose(s, i, &command, true);
        default:
            decision.action = (char *)a->action_name;
            decision.member = (char *)a->member;
            decision.site = (char *)a->site;
            decision.from_role = (char *)"";
            decision.to_role = (char *)"";
            decision.reason = (char *)a->reason;
            decision.by = (char *)"controller";
            command.body_case = TANDEM__COMMAND__BODY_SITE_DECISION;
            command.site_decision = &decision;
            return sim_propose(s, i, &command, true);
    }
}

/* ---- the site controller, as node/bcp/runtime.c and consensus/site_controller.c run it ---- */

static int sim_load_table(struct sim *s, unsigned i, struct tandem_site_table *t)
{
    struct tandem_store *store = &s->servers[i].store;
    MDB_txn *txn = store->write_txn;
    bool own = txn == NULL;
    if (own && tandem_store_read_txn(store, &txn) != 0) {
        return -1;
    }
    int rv = tandem_sites_load(store, txn, t);
    if (own) {
        mdb_txn_abort(txn);
    }
    SIM_CHECK(s, rv == 0, "%s: site table unreadable: %s", sim_names[i], store->errmsg);
    SIM_CHECK(s, tandem_site_table_ok(t), "%s: site table invariant broken", sim_names[i]);
    return 0;
}

static void sim_gather_member(struct sim *s, unsigned leader, const struct tandem_site_table *t,
                              const struct raft_server *server, struct tandem_site_plan_member *m)
{
    struct raft *r = sim_raft(s, leader);
    unsigned j = (unsigned)server->id - 1;
    raft_index match = 0;
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", sim_names[j]);
    snprintf(m->site, sizeof m->site, "%s", sim_sites[j]);
    m->id = server->id;
    m->role = tandem_raft_role_from_raft(server->role);
    const struct tandem_member_home *home = tandem_site_table_home(t, m->name);
    m->home_role = home == NULL ? -1 : home->role;
    m->self = j == leader;
    m->reachable = m->self || sim_now(s) - s->servers[leader].last_ok[j] < SIM_SITE_DOWN_MS;
    bool known = raft_match_index(r, server->id, &match) == 0;
    m->caught_up = m->self || (known && match > 0 &&
                               match + TANDEM_SITE_CATCH_UP_ENTRIES_MAX >= raft_last_index(r));
}

static int sim_gather(struct sim *s, unsigned leader, struct tandem_site_plan_input *in)
{
    struct tandem_site_table t;
    const struct raft_configuration *conf = &sim_raft(s, leader)->configuration;
    struct sim_controller *c = &s->servers[leader].ctl;
    if (sim_load_table(s, leader, &t) != 0) {
        return -1;
    }
    memset(in, 0, sizeof *in);
    for (unsigned k = 0; k < t.n_sites; k++) {
        struct tandem_site_plan_site *site = &in->sites[in->n_sites++];
        snprintf(site->name, sizeof site->name, "%s", t.sites[k].name);
        site->state = t.sites[k].state;
        site->witness = t.sites[k].witness;
    }
    for (unsigned k = 0; k < conf->n; k++) {
        sim_gather_member(s, leader, &t, &conf->servers[k], &in->members[in->n_members++]);
    }
    for (unsigned k = 0; k < in->n_sites; k++) {
        int bit = site_index(in->sites[k].name);
        bool answering = false;
        for (unsigned m = 0; m < in->n_members; m++) {
            answering |=
                strcmp(in->members[m].site, in->sites[k].name) == 0 && in->members[m].reachable;
        }
        if (answering && bit >= 0) {
            c->reported &= ~(1u << bit);
        }
        in->sites[k].down_reported = bit >= 0 && (c->reported & (1u << bit)) != 0;
    }
    snprintf(in->preferred_site, sizeof in->preferred_site, "%s", t.preferred_site);
    in->preferred_set = t.preferred_set;
    snprintf(in->config_preferred_site, sizeof in->config_preferred_site, "%s", s->preferred);
    in->auto_bcp = true;
    return 0;
}

static void sim_transfer_cb(struct raft_transfer *req)
{
    struct sim_server *server = req->data;
    server->ctl.transfer_pending = false;
    if (server->ctl.busy == SIM_TRANSFERRING) {
        server->ctl.busy = SIM_IDLE;
    }
}

static void sim_assign_cb(struct raft_change *req, int status)
{
    struct sim_server *server = req->data;
    server->ctl.change_pending = false;
    if (server->ctl.busy == SIM_ASSIGNING) {
        server->ctl.busy = SIM_IDLE;
        if (status != 0) {
            server->ctl.backoff_until = sim_now(server->sim) + SIM_BACKOFF_MS;
        }
    }
}

/* The step's command was applied (or not): take the raft action behind it. */
static void sim_controller_done(struct sim *s, unsigned i, int status)
{
    struct sim_server *server = &s->servers[i];
    struct sim_controller *c = &server->ctl;
    struct raft *r = sim_raft(s, i);
    c->busy = SIM_IDLE;
    if (status != 0 || raft_state(r) != RAFT_LEADER) {
        c->backoff_until = sim_now(s) + (status != 0 ? SIM_BACKOFF_MS : 0);
        return;
    }
    int bit = site_index(c->action.site);
    if (c->action.kind == TANDEM_SITE_ACTION_REPORT && bit >= 0) {
        c->reported |= 1u << bit;
    } else if (c->action.kind == TANDEM_SITE_ACTION_TRANSFER && !c->transfer_pending) {
        c->transfer.data = server;
        if (raft_transfer(r, &c->transfer, c->action.member_id, sim_transfer_cb) == 0) {
            c->transfer_pending = true;
            c->busy = SIM_TRANSFERRING;
            s->stats.transfers++;
        } else {
            c->backoff_until = sim_now(s) + SIM_BACKOFF_MS;
        }
    } else if (c->action.kind == TANDEM_SITE_ACTION_ASSIGN && !c->change_pending) {
        c->change.data = server;
        if (raft_assign(r, &c->change, c->action.member_id,
                        tandem_raft_role_to_raft(c->action.to_role), sim_assign_cb) == 0) {
            c->change_pending = true;
            c->busy = SIM_ASSIGNING;
            s->stats.assigns++;
        } else {
            c->backoff_until = sim_now(s) + SIM_BACKOFF_MS;
        }
    }
}

static int sim_controller_tick(struct sim *s, unsigned i)
{
    struct sim_controller *c = &s->servers[i].ctl;
    struct tandem_site_plan_input in;
    raft_time now = sim_now(s);
    if (c->busy != SIM_IDLE || now < c->backoff_until || now - c->last_tick < SIM_TICK_MS) {
        return 0;
    }
    c->last_tick = now;
    if (sim_gather(s, i, &in) != 0) {
        return -1;
    }
    tandem_site_plan(&in, &c->action);
    if (c->action.kind == TANDEM_SITE_ACTION_NONE) {
        return 0;
    }
    c->busy = SIM_PROPOSING;
    if (sim_propose_action(s, i, &c->action, &in) != 0) {
        c->busy = SIM_IDLE;
        c->backoff_until = now + SIM_BACKOFF_MS;
    }
    return 0;
}

/* ---- faults ---- */

static void sim_apply_network(struct sim *s)
{
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        for (unsigned j = 0; j < SIM_SERVERS; j++) {
            if (i == j) {
                continue;
            }
            bool cut = raft_fixture_saturated(&s->fixture, i, j);
            if (s->cut[i][j] && !cut) {
                raft_fixture_saturate(&s->fixture, i, j);
            } else if (!s->cut[i][j] && cut) {
                raft_fixture_desaturate(&s->fixture, i, j);
            }
        }
    }
}

static void sim_kill(struct sim *s, unsigned i)
{
    if (!s->servers[i].killed) {
        raft_fixture_kill(&s->fixture, i);
        s->servers[i].killed = true;
    }
}

/* A restarted node's probes start from scratch, giving every peer the benefit of the doubt. */
static void sim_revive(struct sim *s, unsigned i)
{
    if (s->servers[i].killed) {
        raft_fixture_revive(&s->fixture, i);
        s->servers[i].killed = false;
        for (unsigned j = 0; j < SIM_SERVERS; j++) {
            s->servers[i].last_ok[j] = sim_now(s);
        }
    }
}

static void sim_heal(struct sim *s)
{
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        sim_revive(s, i);
        for (unsigned j = 0; j < SIM_SERVERS; j++) {
            s->cut[i][j] = false;
        }
        if (s->servers[i].disk_fault) {
            raft_fixture_set_disk_latency(&s->fixture, i, 2 + sim_rand(s, 20));
            s->servers[i].disk_fault = false;
        }
    }
    sim_apply_network(s);
}

static unsigned sim_random_site_server(struct sim *s)
{
    return sim_rand(s, 2) == 0 ? 0 : 2; /* the first node of east or of west */
}

/* The leader as the fixture sees it, SIM_SERVERS when none. */
static unsigned sim_leader(struct sim *s)
{
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        if (!s->servers[i].killed && raft_state(sim_raft(s, i)) == RAFT_LEADER) {
            return i;
        }
    }
    return SIM_SERVERS;
}

static void sim_operator(struct sim *s, bool invoke)
{
    unsigned leader = sim_leader(s);
    const char *site = sim_sites[sim_random_site_server(s)];
    if (leader == SIM_SERVERS) {
        return;
    }
    if (invoke) {
        s->stats.invokes++;
        (void)sim_propose_update(s, leader, TANDEM_SITE_INVOKE, site, "operator", "sim", false,
                                 false);
    } else {
        s->stats.revokes++;
        (void)sim_propose_update(s, leader, TANDEM_SITE_REVOKE, site, "operator", "sim",
                                 sim_rand(s, 2) == 0, false);
    }
}

/* A disk fault: a disk that turns slow for the phase, or one that fails, which stops tandemd
 * (a failed LMDB commit or raft append is fatal; its supervisor restarts it at the next heal).
 * Injecting the failed raft I/O itself (raft_fixture_io_fault) makes libraft 0.22.1's legacy
 * layer double-free with asserts compiled out (the recvCb path LIBRAFT-NOTES.md describes), so
 * it only runs with TANDEM_SIM_BCP_IO_FAULTS=1, for checking a newer libraft. */
static void sim_disk_fault(struct sim *s, unsigned i)
{
    s->stats.disk_faults++;
    if (env_unsigned("TANDEM_SIM_BCP_IO_FAULTS", 0, 1) == 1) {
        raft_fixture_io_fault(&s->fixture, i, (int)sim_rand(s, 20), 1);
    } else if (sim_rand(s, 2) == 0) {
        raft_fixture_set_disk_latency(&s->fixture, i, 200 + sim_rand(s, 800));
        s->servers[i].disk_fault = true;
    } else {
        sim_kill(s, i);
    }
}

/* Starts one phase's fault or operator action. */
static void sim_fault(struct sim *s)
{
    unsigned first = sim_random_site_server(s);
    unsigned kind = sim_rand(s, 9);
    /* TANDEM_SIM_BCP_FAULTS: a bit mask of the kinds below to keep (diagnosis); default all. */
    if ((env_unsigned("TANDEM_SIM_BCP_FAULTS", 0x1ff, 0x1ff) & (1u << kind)) == 0) {
        return;
    }
    switch (kind) {
        case 0: /* site loss */
            sim_kill(s, first);
            sim_kill(s, first + 1);
            s->stats.site_losses++;
            break;
        case 1: /* east | west partition; the witness sees both */
            for (unsigned i = 0; i < 2; i++) {
                for (unsigned j = 2; j < 4; j++) {
                    s->cut[i][j] = s->cut[j][i] = true;
                }
            }
            sim_apply_network(s);
            s->stats.partitions++;
            break;
        case 2:
            sim_kill(s, 4);
            s->stats.witness_losses++;
            break;
        case 3:
            sim_kill(s, sim_rand(s, SIM_SERVERS));
            s->stats.crashes++;
            break;
        case 4:
            sim_disk_fault(s, sim_rand(s, SIM_SERVERS));
            break;
        case 5:
        case 6:
            sim_operator(s, true);
            break;
        case 7:
            sim_operator(s, false);
            break;
        default:
            break; /* a quiet phase */
    }
}

/* ---- invariants ---- */

static int sim_check_leaders(struct sim *s)
{
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        struct raft *r = sim_raft(s, i);
        if (raft_state(r) != RAFT_LEADER) {
            continue;
        }
        raft_term term = raft_current_term(r);
        SIM_CHECK(s, term < SIM_TERMS_MAX, "term %" PRIu64 " beyond SIM_TERMS_MAX", (uint64_t)term);
        if (s->leader_of_term[term] == 0) {
            s->leader_of_term[term] = (uint8_t)(i + 1);
        }
        SIM_CHECK(s, s->leader_of_term[term] == i + 1, "%s and %s both led term %" PRIu64,
                  sim_names[s->leader_of_term[term] - 1], sim_names[i], (uint64_t)term);
    }
    return 0;
}

/* applied_index never goes back; two servers at one index applied the same history. */
static int sim_check_applied(struct sim *s)
{
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        struct sim_server *server = &s->servers[i];
        uint64_t index = server->store.applied_index;
        SIM_CHECK(s, index >= server->applied_seen,
                  "%s: applied_index went back %" PRIu64 " -> %" PRIu64, sim_names[i],
                  server->applied_seen, index);
        server->applied_seen = index;
        if (index == 0) {
            continue;
        }
        SIM_CHECK(s, index < SIM_INDEXES_MAX, "index %" PRIu64 " beyond SIM_INDEXES_MAX", index);
        if (!s->digest_seen[index]) {
            s->digest_seen[index] = true;
            memcpy(s->digest_at[index], server->store.apply_digest, TANDEM_DIGEST_LEN);
        }
        SIM_CHECK(s,
                  memcmp(s->digest_at[index], server->store.apply_digest, TANDEM_DIGEST_LEN) == 0,
                  "%s: apply_digest at index %" PRIu64 " differs from another server's",
                  sim_names[i], index);
        s->max_applied = index > s->max_applied ? index : s->max_applied;
    }
    return 0;
}

/* A fresh election timeout for every server whose timer restarted, as raft draws one at each
 * reset. The fixture instead pins each server's "randomized" timeout to one value (it re-seeds
 * raft's generator before every step), and on the 100 ms tick three voters whose values fall
 * in one tick window time out together forever: seed 850 livelocked that way, a candidate with
 * a stale log restarting its election (libraft 0.22.1 does not return a candidate to pre-vote)
 * on the same tick as the others' pre-votes, and bumping the term under them every round. The
 * new value takes effect at the server's next reset. */
static void sim_redraw_timeouts(struct sim *s)
{
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        raft_time start = sim_raft(s, i)->election_timer_start;
        if (start == s->timer_start[i]) {
            continue;
        }
        s->timer_start[i] = start;
        s->timeout_rng ^= s->timeout_rng << 13; /* xorshift64, a stream of its own */
        s->timeout_rng ^= s->timeout_rng >> 7;
        s->timeout_rng ^= s->timeout_rng << 17;
        raft_fixture_set_randomized_election_timeout(&s->fixture, i,
                                                     1000 + (unsigned)(s->timeout_rng % 1000));
    }
}

/* One fixture event, then what each node's loop does: commit, probe, run the controller. */
static int sim_step(struct sim *s)
{
    SIM_CHECK(s, ++s->steps < SIM_STEPS_MAX, "more than %d steps", SIM_STEPS_MAX);
    raft_fixture_step(&s->fixture);
    sim_redraw_timeouts(s);
    raft_time now = sim_now(s);
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        struct sim_server *server = &s->servers[i];
        SIM_CHECK(s, tandem_store_commit(&server->store) == 0, "%s commit: %s", sim_names[i],
                  server->store.errmsg);
        for (unsigned j = 0; j < SIM_SERVERS && !server->killed; j++) {
            if (!s->servers[j].killed && !s->cut[i][j] && !s->cut[j][i]) {
                server->last_ok[j] = now;
            }
        }
        /* As node/bcp/runtime.c does on every node: clear libraft's stale configuration marker. */
        if (tandem_site_config_stuck(sim_raft(s, i)) &&
            tandem_site_config_repair(sim_raft(s, i)) == 0) {
            s->stats.repairs++;
        }
        if (!server->killed && raft_state(sim_raft(s, i)) == RAFT_LEADER &&
            sim_controller_tick(s, i) != 0) {
            return -1;
        }
    }
    if (sim_check_leaders(s) != 0 || sim_check_applied(s) != 0) {
        return -1;
    }
    return s->failure[0] == '\0' ? 0 : -1;
}

static int sim_run_until(struct sim *s, raft_time until)
{
    while (sim_now(s) < until) {
        if (sim_rand(s, 40) == 0) {
            unsigned leader = sim_leader(s);
            if (leader < SIM_SERVERS) {
                (void)sim_propose_write(s, leader);
            }
        }
        if (sim_step(s) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- settling and the final checks ---- */

struct settle {
    unsigned leader;
    raft_term term;
    uint64_t sentinel_index; /* raft index of the leader's sentinel write, 0 before it */
};

/* True once one leader's sentinel write is applied everywhere and its controller rests. */
static bool sim_settled(struct sim *s, struct settle *st)
{
    unsigned leader = sim_leader(s);
    if (leader == SIM_SERVERS) {
        return false;
    }
    struct raft *r = sim_raft(s, leader);
    if (leader != st->leader || raft_current_term(r) != st->term) {
        st->leader = leader;
        st->term = raft_current_term(r);
        st->sentinel_index = 0;
    }
    if (st->sentinel_index == 0) {
        if (sim_propose_write(s, leader) == 0) {
            st->sentinel_index = raft_last_index(r);
        }
        return false;
    }
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        if (s->servers[i].store.applied_index < st->sentinel_index ||
            s->servers[i].store.applied_index != s->servers[leader].store.applied_index) {
            return false;
        }
    }
    struct tandem_site_plan_input in;
    struct tandem_site_action action;
    if (s->servers[leader].ctl.busy != SIM_IDLE || sim_gather(s, leader, &in) != 0) {
        return false;
    }
    tandem_site_plan(&in, &action);
    return action.kind == TANDEM_SITE_ACTION_NONE;
}

static int sim_state_digest(struct sim *s, unsigned i, uint8_t out[TANDEM_DIGEST_LEN])
{
    struct tandem_store *store = &s->servers[i].store;
    MDB_txn *txn;
    SIM_CHECK(s, tandem_store_commit(store) == 0 && tandem_store_read_txn(store, &txn) == 0,
              "%s: %s", sim_names[i], store->errmsg);
    int rv = tandem_store_state_digest(store, txn, out);
    mdb_txn_abort(txn);
    SIM_CHECK(s, rv == 0, "%s: state digest: %s", sim_names[i], store->errmsg);
    return 0;
}

/* Open (queued or in-progress) jobs at site, in the leader's state. */
static int sim_open_jobs_at(struct sim *s, unsigned leader, const char *site, unsigned *count)
{
    struct tandem_store *store = &s->servers[leader].store;
    MDB_txn *txn;
    MDB_cursor *cursor;
    MDB_val k, v;
    *count = 0;
    SIM_CHECK(s, tandem_store_commit(store) == 0 && tandem_store_read_txn(store, &txn) == 0,
              "%s: %s", sim_names[leader], store->errmsg);
    int rv = mdb_cursor_open(txn, store->dbi[TANDEM_DB_JOBS], &cursor);
    for (rv = rv == 0 ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST) : rv; rv == 0;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        Tandem__JobRecord *job = tandem__job_record__unpack(NULL, v.mv_size, v.mv_data);
        if (job != NULL && strcmp(job->site, site) == 0 &&
            (job->status == TANDEM_JOB_QUEUED || job->status == TANDEM_JOB_IN_PROGRESS)) {
            (*count)++;
        }
        tandem__job_record__free_unpacked(job, NULL);
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return 0;
}

/* No vote, no leadership and no open job stays in an invoked site once the controller rests. */
static int sim_check_invoked(struct sim *s, unsigned leader)
{
    struct tandem_site_table t;
    const struct raft_configuration *conf = &sim_raft(s, leader)->configuration;
    if (sim_load_table(s, leader, &t) != 0) {
        return -1;
    }
    for (unsigned k = 0; k < t.n_sites; k++) {
        unsigned open_jobs = 0;
        if (t.sites[k].state != TANDEM_SITE_INVOKED) {
            continue;
        }
        if (sim_open_jobs_at(s, leader, t.sites[k].name, &open_jobs) != 0) {
            return -1;
        }
        SIM_CHECK(s, open_jobs == 0, "%u open jobs still assigned to invoked site %s", open_jobs,
                  t.sites[k].name);
        s->stats.invoked_checks++;
    }
    for (unsigned k = 0; k < t.n_sites; k++) {
        if (t.sites[k].state != TANDEM_SITE_INVOKED) {
            continue;
        }
        SIM_CHECK(s, strcmp(sim_sites[leader], t.sites[k].name) != 0,
                  "leader %s sits in invoked site %s", sim_names[leader], t.sites[k].name);
        for (unsigned m = 0; m < conf->n; m++) {
            unsigned j = (unsigned)conf->servers[m].id - 1;
            SIM_CHECK(s,
                      strcmp(sim_sites[j], t.sites[k].name) != 0 ||
                          conf->servers[m].role != RAFT_VOTER,
                      "%s still votes although site %s is invoked", sim_names[j], t.sites[k].name);
        }
    }
    return 0;
}

/* Each server's raft state, printed with a failure: what a stuck settle is waiting for. */
static void sim_print_servers(struct sim *s, FILE *out)
{
    unsigned leader = sim_leader(s);
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        struct raft *r = sim_raft(s, i);
        const struct raft_configuration *conf = &r->configuration;
        raft_index match = 0;
        bool known = leader < SIM_SERVERS &&
                     raft_match_index(sim_raft(s, leader), (raft_id)(i + 1), &match) == 0;
        int role = -1;
        for (unsigned k = 0; k < conf->n; k++) {
            role = conf->servers[k].id == i + 1 ? conf->servers[k].role : role;
        }
        fprintf(out,
                "  %s: %s term %" PRIu64 " last %" PRIu64 " commit %" PRIu64 " applied %" PRIu64
                " store %" PRIu64 " role %d conf %" PRIu64 "/%" PRIu64 " match %s%" PRIu64 "%s\n",
                sim_names[i], raft_state_name(raft_state(r)), (uint64_t)raft_current_term(r),
                (uint64_t)raft_last_index(r), (uint64_t)r->commit_index,
                (uint64_t)raft_last_applied(r), s->servers[i].store.applied_index, role,
                (uint64_t)r->configuration_committed_index,
                (uint64_t)r->configuration_uncommitted_index, known ? "" : "?", (uint64_t)match,
                s->servers[i].killed ? " killed" : "");
    }
}

static int sim_settle(struct sim *s)
{
    struct settle st = {.leader = SIM_SERVERS};
    sim_heal(s);
    raft_time deadline = sim_now(s) + SIM_SETTLE_MS;
    while (!sim_settled(s, &st)) {
        const struct sim_controller *c =
            st.leader < SIM_SERVERS ? &s->servers[st.leader].ctl : &s->servers[0].ctl;
        SIM_CHECK(s, sim_now(s) < deadline,
                  "not settled after %d ms (leader %s, applied %" PRIu64 ", sentinel %" PRIu64
                  ", controller busy %d with %s %s: %s)",
                  SIM_SETTLE_MS, st.leader < SIM_SERVERS ? sim_names[st.leader] : "none",
                  st.leader < SIM_SERVERS ? s->servers[st.leader].store.applied_index : 0,
                  st.sentinel_index, c->busy, c->action.action_name, c->action.member,
                  c->action.reason);
        if (sim_step(s) != 0) {
            return -1;
        }
    }
    uint8_t first[TANDEM_DIGEST_LEN], digest[TANDEM_DIGEST_LEN];
    for (unsigned i = 0; i < SIM_SERVERS; i++) {
        if (sim_state_digest(s, i, i == 0 ? first : digest) != 0) {
            return -1;
        }
        SIM_CHECK(s, i == 0 || memcmp(first, digest, TANDEM_DIGEST_LEN) == 0,
                  "%s: state digest differs from %s's", sim_names[i], sim_names[0]);
    }
    SIM_CHECK(s, s->servers[st.leader].store.applied_index >= s->max_applied,
              "applied index %" PRIu64 " was seen, the settled cluster is at %" PRIu64,
              s->max_applied, s->servers[st.leader].store.applied_index);
    return sim_check_invoked(s, st.leader);
}

static int sim_run(struct sim *s)
{
    if (sim_open_stores(s) != 0 || sim_start(s) != 0) {
        return -1;
    }
    for (unsigned phase = 0; phase < SIM_PHASES; phase++) {
        if (sim_rand(s, 3) != 0) {
            sim_heal(s);
        }
        sim_fault(s);
        if (sim_run_until(s, sim_now(s) + SIM_PHASE_MS_MIN + sim_rand(s, SIM_PHASE_MS_SPAN)) != 0) {
            return -1;
        }
    }
    return sim_settle(s);
}

static int run_seed(uint64_t seed, struct sim_stats *stats, bool verbose)
{
    struct sim *s = sim_create(seed);
    int rv = sim_run(s);
    if (rv != 0 || s->failure[0] != '\0') {
        fprintf(stderr, "sim: seed %" PRIu64 " FAILED at %" PRIu64 " ms, step %" PRIu64 ": %s\n",
                seed, (uint64_t)sim_now(s), s->steps, s->failure);
        sim_print_servers(s, stderr);
        rv = -1;
    } else if (verbose) {
        fprintf(stderr,
                "sim: seed %" PRIu64 " ok: %" PRIu64 " steps, %" PRIu64 " ms, applied %" PRIu64
                ", writes %" PRIu64 ", transfers %" PRIu64 ", assigns %" PRIu64 "\n",
                seed, s->steps, (uint64_t)sim_now(s), s->max_applied, s->stats.writes,
                s->stats.transfers, s->stats.assigns);
    }
    *stats = s->stats;
    sim_destroy(s);
    return rv;
}

/* ---- seeds in child processes ---- */

struct sim_child {
    pid_t pid;
    uint64_t seed;
    int fd;
};

static void stats_add(struct sim_stats *total, const struct sim_stats *st)
{
    total->writes += st->writes;
    total->invokes += st->invokes;
    total->revokes += st->revokes;
    total->auto_invokes += st->auto_invokes;
    total->transfers += st->transfers;
    total->assigns += st->assigns;
    total->site_losses += st->site_losses;
    total->partitions += st->partitions;
    total->witness_losses += st->witness_losses;
    total->crashes += st->crashes;
    total->disk_faults += st->disk_faults;
    total->recovered += st->recovered;
    total->repairs += st->repairs;
    total->invoked_checks += st->invoked_checks;
}

static void child_start(struct sim_child *child, uint64_t seed)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sim_stats stats;
        close(fds[0]);
        int rv = run_seed(seed, &stats, false);
        if (rv == 0 && write(fds[1], &stats, sizeof stats) != (ssize_t)sizeof stats) {
            rv = -1;
        }
        close(fds[1]);
        exit(rv == 0 ? 0 : 1); /* exit, not _exit: the leak checker runs at exit */
    }
    close(fds[1]);
    child->pid = pid;
    child->seed = seed;
    child->fd = fds[0];
}

static bool child_reap(struct sim_child *children, struct sim_stats *total, uint64_t *seed)
{
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    assert_true(pid > 0);
    for (unsigned i = 0; i < SIM_PARALLEL; i++) {
        struct sim_child *child = &children[i];
        if (child->pid != pid) {
            continue;
        }
        struct sim_stats stats;
        ssize_t n = read(child->fd, &stats, sizeof stats);
        close(child->fd);
        child->pid = 0;
        *seed = child->seed;
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && n == (ssize_t)sizeof stats;
        if (ok) {
            stats_add(total, &stats);
        } else {
            fprintf(stderr,
                    "sim: seed %" PRIu64 " %s %d\n  replay: TANDEM_SIM_BCP_SEED=%" PRIu64 " %s\n",
                    child->seed,
                    WIFSIGNALED(status) ? "CRASHED with signal" : "failed, exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), child->seed,
                    program_invocation_name);
        }
        return ok;
    }
    fail_msg("reaped unknown child %d", (int)pid);
    return false;
}

/* Seeds that once failed, run first on every run (TANDEM_SIM_BCP_SEED=N replays one). */
static const uint64_t sim_regression_seeds[] = {
    850,  /* livelock: voters' pinned election timeouts on one tick; see sim_redraw_timeouts */
    5438, /* a follower stalled for good by raft_shield's configuration-index cut (not installed) */
};
#define SIM_REGRESSIONS (sizeof sim_regression_seeds / sizeof sim_regression_seeds[0])

/* The k-th seed of a run: the regression seeds, then 1..count. */
static uint64_t seed_at(uint64_t k)
{
    return k < SIM_REGRESSIONS ? sim_regression_seeds[k] : k - SIM_REGRESSIONS + 1;
}

/* The regression seeds and seeds 1..count, SIM_PARALLEL at a time. Returns the failed count. */
static unsigned run_seeds(uint64_t count, struct sim_stats *total, uint64_t *first_failed)
{
    struct sim_child children[SIM_PARALLEL];
    uint64_t next = 0, seed = 0, end = SIM_REGRESSIONS + count;
    unsigned running = 0, failed = 0;
    memset(children, 0, sizeof children);
    while (next < end || running > 0) {
        for (unsigned i = 0; i < SIM_PARALLEL && next < end; i++) {
            if (children[i].pid == 0) {
                child_start(&children[i], seed_at(next++));
                running++;
            }
        }
        if (!child_reap(children, total, &seed)) {
            *first_failed = failed == 0 || seed < *first_failed ? seed : *first_failed;
            failed++;
        }
        running--;
    }
    return failed;
}

static void test_random_bcp_schedules(void **state)
{
    struct sim_stats total, stats;
    uint64_t first_failed = 0;
    (void)state;
    memset(&total, 0, sizeof total);
    const char *one = getenv("TANDEM_SIM_BCP_SEED");
    if (one != NULL && one[0] != '\0') {
        assert_int_equal(run_seed(strtoull(one, NULL, 10), &stats, true), 0);
        return;
    }
    unsigned seeds = env_unsigned("TANDEM_SIM_BCP_SEEDS", SIM_SEEDS_DEFAULT, SIM_SEEDS_MAX);
    struct sim_clock clock = sim_clock_start();
    unsigned failed = run_seeds(seeds, &total, &first_failed);
    sim_clock_print(&clock, "sim_test_bcp", (unsigned)SIM_REGRESSIONS, seeds, SIM_PARALLEL);
    fprintf(stderr,
            "sim: %u seeds, %u failed; writes %" PRIu64 ", operator invokes %" PRIu64
            " revokes %" PRIu64 ", controller invokes %" PRIu64 " transfers %" PRIu64
            " assigns %" PRIu64 " recoveries %" PRIu64 "; site losses %" PRIu64
            ", partitions %" PRIu64 ", witness losses %" PRIu64 ", crashes %" PRIu64
            ", disk faults %" PRIu64 "; stale-config repairs %" PRIu64
            "; invoked sites checked for open jobs %" PRIu64 "\n",
            seeds + (unsigned)SIM_REGRESSIONS, failed, total.writes, total.invokes, total.revokes,
            total.auto_invokes, total.transfers, total.assigns, total.recovered, total.site_losses,
            total.partitions, total.witness_losses, total.crashes, total.disk_faults, total.repairs,
            total.invoked_checks);
    if (failed > 0) {
        fail_msg("%u of %u seeds failed (first: replay with TANDEM_SIM_BCP_SEED=%" PRIu64 ")",
                 failed, seeds, first_failed);
    }
    if (seeds >= 50) { /* the schedules exercised what they claim to */
        assert_true(total.site_losses > 0 && total.partitions > 0 && total.witness_losses > 0);
        assert_true(total.crashes > 0 && total.disk_faults > 0);
        assert_true(total.auto_invokes > 0 && total.transfers > 0 && total.assigns > 0);
        assert_true(total.recovered > 0);
    }
}

int main(void)
{
    raft_heap_set(&sim_heap); /* before the first raft allocation */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bcp_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
