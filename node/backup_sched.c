/* The scheduled mutual backup's runtime on one node: the leader's schedule, retries and events,
 * retention and level-2 verifications, every holder's check of what it keeps, and the status
 * and metrics views (node/backup_state.h). */
#include "node/backup_state.h"
#include "node/backup_stream.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/bcp/backup_plan.h"
#include "storage/backup.h"
#include "node/log.h"
#include "node/node.h"
#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/clock.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

/* ---- lifecycle ---- */

void tandem_backup_path(const char *dir, const char *id, bool manifest, char *out)
{
    snprintf(out, PATH_MAX, "%.*s/" TANDEM_BACKUP_KEPT_DIR "/%s%s", PATH_MAX - 128, dir, id,
             manifest ? TANDEM_BACKUP_MANIFEST_SUFFIX : TANDEM_BACKUP_SUFFIX);
}

static int dir_make(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        tandem_log(TANDEM_LOG_ERROR, "backup_dir: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Once both exist, their resolved paths (symbolic links followed) must not put the backups
 * inside the raft log or the state store. */
static int dir_outside(const char *dir, const char *data_dir)
{
    static const char *const inners[] = {"raft", "state"};
    char real_dir[PATH_MAX], inner[PATH_MAX + 8], real_inner[PATH_MAX];
    if (realpath(dir, real_dir) == NULL) {
        tandem_log(TANDEM_LOG_ERROR, "backup_dir %s: %s", dir, strerror(errno));
        return -1;
    }
    for (unsigned i = 0; i < sizeof inners / sizeof inners[0]; i++) {
        snprintf(inner, sizeof inner, "%s/%s", data_dir, inners[i]);
        size_t n = realpath(inner, real_inner) != NULL ? strlen(real_inner) : 0;
        if (n > 0 && strncmp(real_dir, real_inner, n) == 0 &&
            (real_dir[n] == '\0' || real_dir[n] == '/')) {
            tandem_log(TANDEM_LOG_ERROR, "option backup_dir: %s lies inside %s", real_dir,
                       real_inner);
            return -1;
        }
    }
    return 0;
}

/* Files taken for a download are removed once sent or cut; what a crash left is removed at
 * start, when no download can be running. */
static void download_leftovers_remove(const char *folder)
{
    char path[PATH_MAX + 16];
    DIR *d = opendir(folder);
    struct dirent *e;
    for (unsigned n = 0;
         d != NULL && (e = readdir(d)) != NULL && n < TANDEM_BACKUP_DOWNLOAD_SWEEP_MAX; n++) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0)) {
            continue;
        }
        snprintf(path, sizeof path, "%.*s/%s", PATH_MAX - 256, folder, e->d_name);
        if (unlink(path) == 0) {
            tandem_log(TANDEM_LOG_INFO, "backup download left by a stop removed: %s", path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

int tandem_backups_init(struct tandem_node *node)
{
    struct tandem_backups *b = &node->backups;
    char path[PATH_MAX + 16];
    memset(b, 0, sizeof *b);
    tandem_list_init(&b->streams);
    tandem_config_backup_dir(node->config, b->dir);
    if (dir_make(b->dir) != 0) {
        return -1;
    }
    static const char *const subdirs[] = {TANDEM_BACKUP_KEPT_DIR, TANDEM_BACKUP_INCOMING_DIR,
                                          TANDEM_BACKUP_OUTGOING_DIR, TANDEM_BACKUP_DOWNLOAD_DIR};
    for (unsigned i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", b->dir, subdirs[i]);
        if (dir_make(path) != 0) {
            return -1;
        }
    }
    if (dir_outside(b->dir, node->config->data_dir) != 0) {
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", b->dir, TANDEM_BACKUP_DOWNLOAD_DIR);
    download_leftovers_remove(path);
    return 0;
}

static void close_maybe(struct tandem_node *node)
{
    struct tandem_backups *b = &node->backups;
    if (b->closing && b->works == 0 && b->close_cb != NULL) {
        void (*cb)(struct tandem_node *) = b->close_cb;
        b->close_cb = NULL;
        cb(node);
    }
}

void tandem_backups_work_begin(struct tandem_node *node)
{
    node->backups.works++;
}

void tandem_backups_work_end(struct tandem_node *node)
{
    tandem_assert(node->backups.works > 0);
    node->backups.works--;
    close_maybe(node);
}

void tandem_backups_close(struct tandem_node *node, void (*cb)(struct tandem_node *node))
{
    struct tandem_backups *b = &node->backups;
    b->closing = true;
    b->close_cb = cb;
    for (unsigned i = 0; i < TANDEM_BACKUP_UPLOADS_MAX; i++) {
        struct tandem_backup_upload *u = &b->uploads[i];
        if (u->used && !u->busy) {
            (void)close(u->fd); /* the part is swept later: the upload cannot finish now */
            u->used = false;
        }
    }
    close_maybe(node);
}

/* ---- proposals of the leader ---- */

struct proposal {
    struct tandem_write write;
    struct tandem_node *node;
    Tandem__Command command;
    Tandem__BackupStore store;
    Tandem__BackupRecord record;
    Tandem__BackupUpdate update;
    char *holders[TANDEM_BACKUP_HOLDERS_MAX], *witnesses[TANDEM_BACKUP_HOLDERS_MAX];
    char *manifest_text; /* owned */
    json_t *json;        /* owned: the record's strings point into it */
    char site[TANDEM_SITE_LEN_MAX + 1];
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1], by[TANDEM_NAME_LEN_MAX + 1];
    char reason[TANDEM_BACKUP_REASON_LEN_MAX + 1];
};

static void proposal_free(struct proposal *p)
{
    json_decref(p->json);
    free(p->manifest_text);
    free(p);
}

static struct tandem_backup_run *run_of(struct tandem_backups *b, const char *site)
{
    for (unsigned i = 0; i < b->n_runs; i++) {
        if (strcmp(b->runs[i].site, site) == 0) {
            return &b->runs[i];
        }
    }
    if (b->n_runs == TANDEM_BACKUP_SITES_MAX) {
        return NULL;
    }
    struct tandem_backup_run *run = &b->runs[b->n_runs++];
    memset(run, 0, sizeof *run);
    snprintf(run->site, sizeof run->site, "%s", site);
    return run;
}

/* A try of site's backup failed: retried after a backoff, raised once the tries are spent. */
static void try_failed(struct tandem_node *node, struct tandem_backup_run *run, const char *why)
{
    const struct tandem_config *c = node->config;
    uint64_t interval = tandem_config_backup_interval_ms(c), now = uv_now(node->loop);
    run->inflight = false;
    run->attempts++;
    run->failures++;
    snprintf(run->last_error, sizeof run->last_error, "%s", why);
    run->last_error_ms = tandem_wall_ms();
    if (run->attempts < c->backup_attempts) {
        uint64_t wait = tandem_backup_plan_backoff((uint64_t)c->backup_retry_s * 1000u,
                                                   run->attempts, interval);
        tandem_log(TANDEM_LOG_WARN,
                   "backup of %s failed (try %u of %u, again in %" PRIu64 " ms): %s", run->site,
                   run->attempts, c->backup_attempts, wait, why);
        run->next_ms = now + wait;
        return;
    }
    run->raised++;
    tandem_log(TANDEM_LOG_ERROR, "backup of %s failed %u times: %s", run->site, run->attempts, why);
    tandem_events_emit(&node->events, "backup_failed", run->site,
                       "the scheduled backup of %s failed %u times; last: %s", run->site,
                       run->attempts, why);
    run->attempts = 0;
    /* The next try waits a whole interval (at least the first retry's wait). */
    uint64_t retry = (uint64_t)c->backup_retry_s * 1000u;
    run->next_ms = now + (interval > retry ? interval : retry);
}

static void store_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct proposal *p = w->data;
    struct tandem_backup_run *run = run_of(&p->node->backups, p->site);
    if (run != NULL && status == 0 && result != NULL && result->status == 200) {
        run->inflight = false;
        run->attempts = 0;
        tandem_log(TANDEM_LOG_INFO,
                   "backup %s of %s recorded (index %" PRIu64 ", %" PRIu64
                   " bytes, kept on %zu nodes)",
                   p->record.id, p->site, p->record.index, p->record.size, p->record.n_holders);
    } else if (run != NULL) {
        try_failed(p->node, run,
                   status != 0                              ? "the record was not committed"
                   : result != NULL && result->body != NULL ? result->body
                                                            : "no result");
    }
    proposal_free(p);
}

static int strings_from(json_t *array, char **out, size_t *n)
{
    *n = 0;
    if (!json_is_array(array) || json_array_size(array) > TANDEM_BACKUP_HOLDERS_MAX) {
        return -1;
    }
    for (size_t i = 0; i < json_array_size(array); i++) {
        out[(*n)++] = (char *)json_string_value(json_array_get(array, i));
        if (out[*n - 1] == NULL) {
            return -1;
        }
    }
    return 0;
}

static uint64_t json_u64(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static const char *json_text(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s != NULL ? s : "";
}

/* The taker's answer (a record as JSON) into p's BackupStore. Returns 0 or -1. */
static int record_from_json(struct proposal *p, json_t *rec)
{
    Tandem__BackupRecord *r = &p->record;
    tandem__backup_record__init(r);
    r->id = (char *)json_text(rec, "id");
    r->site = (char *)json_text(rec, "site");
    r->taken_by = (char *)json_text(rec, "taken_by");
    r->index = json_u64(rec, "index");
    r->term = json_u64(rec, "term");
    r->size = json_u64(rec, "size");
    r->sha256 = (char *)json_text(rec, "sha256");
    r->state_digest = (char *)json_text(rec, "state_digest");
    r->created_ms = (int64_t)json_u64(rec, "created_ms");
    r->verified_level = (uint32_t)json_u64(rec, "verified_level");
    r->verified_by = (char *)json_text(rec, "verified_by");
    p->manifest_text = json_dumps(json_object_get(rec, "manifest"), JSON_COMPACT);
    r->manifest_json = p->manifest_text != NULL ? p->manifest_text : (char *)"";
    r->holders = p->holders;
    r->manifest_holders = p->witnesses;
    if (strings_from(json_object_get(rec, "holders"), p->holders, &r->n_holders) != 0 ||
        strings_from(json_object_get(rec, "manifest_holders"), p->witnesses,
                     &r->n_manifest_holders) != 0 ||
        strcmp(r->site, p->site) != 0) {
        return -1;
    }
    tandem__backup_store__init(&p->store);
    p->store.record = r;
    tandem__command__init(&p->command);
    p->command.body_case = TANDEM__COMMAND__BODY_BACKUP_STORE;
    p->command.backup_store = &p->store;
    return 0;
}

struct take_call {
    struct tandem_node *node;
    char site[TANDEM_SITE_LEN_MAX + 1];
};

static void take_call_cb(void *data, int status, int http_status, const char *body, size_t body_len)
{
    struct take_call *call = data;
    struct tandem_node *node = call->node;
    struct tandem_backup_run *run = run_of(&node->backups, call->site);
    char why[TANDEM_BACKUP_ERROR_LEN_MAX + 1];
    struct proposal *p = NULL;
    tandem_backups_work_end(node);
    if (run == NULL || node->stopping) {
        free(call);
        return;
    }
    if (status != 0 || http_status != 200) {
        json_t *err = status == 0 ? json_loadb(body, body_len, 0, NULL) : NULL;
        snprintf(why, sizeof why, "%s: %s", run->taker,
                 status != 0 ? uv_strerror(status)
                 : json_string_value(json_object_get(err, "error")) != NULL
                     ? json_string_value(json_object_get(err, "error"))
                     : "no reason given");
        json_decref(err);
        try_failed(node, run, why);
        free(call);
        return;
    }
    p = calloc(1, sizeof *p);
    if (p != NULL) {
        p->node = node;
        snprintf(p->site, sizeof p->site, "%s", call->site);
        p->json = json_loadb(body, body_len, 0, NULL);
    }
    free(call);
    if (p == NULL || p->json == NULL || record_from_json(p, p->json) != 0) {
        try_failed(node, run, "the taker's answer is no backup record");
        if (p != NULL) {
            proposal_free(p);
        }
        return;
    }
    p->write = (struct tandem_write){.command = &p->command, .data = p, .cb = store_cb};
    if (tandem_proposer_write(&node->proposer, &p->write) != 0) {
        try_failed(node, run, "no longer leading: the record was not proposed");
        proposal_free(p);
    }
}

/* ---- the plan's input: the configuration as the leader sees it ---- */

static bool site_witness(const struct tandem_site_table *t, const char *site)
{
    const struct tandem_site *s = t == NULL ? NULL : tandem_site_table_find(t, site);
    return s != NULL ? s->witness : strcmp(site, TANDEM_SITE_WITNESS_NAME) == 0;
}

static void plan_gather(struct tandem_node *node, struct tandem_backup_plan_input *in)
{
    struct raft *r = &node->raft.raft;
    const struct raft_configuration *conf = &r->configuration;
    struct tandem_site_table *t = tandem_bcp_table_load(&node->bcp); /* NULL: site names */
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(in, 0, sizeof *in);
    in->last_index = raft_last_index(r);
    for (unsigned i = 0; i < conf->n && in->n_members < TANDEM_BACKUP_PLAN_MEMBERS_MAX; i++) {
        struct tandem_member m;
        raft_index match = 0;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        struct tandem_backup_member *b = &in->members[in->n_members++];
        snprintf(b->name, sizeof b->name, "%s", m.name);
        snprintf(b->site, sizeof b->site, "%s", m.site);
        snprintf(b->api, sizeof b->api, "%s", m.api);
        b->witness = site_witness(t, m.site);
        b->leader = conf->servers[i].id == node->raft.id;
        b->reachable = tandem_bcp_reachable(&node->bcp, m.name);
        b->voter = conf->servers[i].role != RAFT_SPARE;
        if (b->leader) {
            b->match = in->last_index;
        } else if (raft_match_index(r, conf->servers[i].id, &match) == 0) {
            b->match = match;
        }
    }
    free(t);
}

static json_t *members_json(const struct tandem_backup_plan_input *in, const unsigned *idx,
                            unsigned n)
{
    json_t *out = json_array();
    for (unsigned i = 0; out != NULL && i < n; i++) {
        const struct tandem_backup_member *m = &in->members[idx[i]];
        json_array_append_new(out, json_pack("{s:s,s:s}", "name", m->name, "api", m->api));
    }
    return out;
}

/* ---- the schedule ---- */

/* Starts one try of site's backup: a caught-up node of site takes it and ships it to every
 * reachable node of the other sites. Returns 0, or -1 with why filled (nothing started). */
static int take_start(struct tandem_node *node, const struct tandem_backup_plan_input *in,
                      struct tandem_backup_run *run, char *why, size_t why_size)
{
    unsigned holders[TANDEM_BACKUP_HOLDERS_MAX], witnesses[TANDEM_BACKUP_HOLDERS_MAX];
    int taker = tandem_backup_plan_taker(in, run->site);
    unsigned n_holders =
        tandem_backup_plan_holders(in, run->site, holders, TANDEM_BACKUP_HOLDERS_MAX);
    unsigned n_witnesses = tandem_backup_plan_witnesses(in, witnesses, TANDEM_BACKUP_HOLDERS_MAX);
    if (taker < 0 || n_holders == 0) {
        snprintf(why, why_size, "%s",
                 taker < 0 ? "no caught-up node of the site is reachable"
                           : "no node of another site is reachable to keep it");
        return -1;
    }
    snprintf(run->id, sizeof run->id, "%s-%" PRId64, run->site, tandem_wall_ms());
    snprintf(run->taker, sizeof run->taker, "%s", in->members[taker].name);
    json_t *body = json_pack("{s:s,s:s,s:o,s:o}", "id", run->id, "site", run->site, "holders",
                             members_json(in, holders, n_holders), "witnesses",
                             members_json(in, witnesses, n_witnesses));
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    struct take_call *call = calloc(1, sizeof *call);
    json_decref(body);
    int rv = UV_ENOMEM;
    if (text != NULL && call != NULL) {
        call->node = node;
        snprintf(call->site, sizeof call->site, "%s", run->site);
        rv =
            tandem_bcp_call(&node->bcp, in->members[taker].api, "POST", "/v1/node/backups/take",
                            NULL, text, node->config->backup_timeout_s * 1000u, take_call_cb, call);
    }
    free(text);
    if (rv != 0) {
        free(call);
        snprintf(why, why_size, "calling %s: %s", run->taker, uv_strerror(rv));
        return -1;
    }
    tandem_backups_work_begin(node);
    run->inflight = true;
    tandem_log(TANDEM_LOG_INFO, "backup %s: taken by %s, kept on %u nodes", run->id, run->taker,
               n_holders);
    return 0;
}

static void schedule(struct tandem_node *node, const struct tandem_backup_plan_input *in,
                     const struct tandem_backup_site_summary *sums, unsigned n_sums)
{
    uint64_t interval = tandem_config_backup_interval_ms(node->config), now = uv_now(node->loop);
    char why[TANDEM_BACKUP_ERROR_LEN_MAX + 1];
    for (unsigned i = 0; i < in->n_members; i++) {
        const struct tandem_backup_member *m = &in->members[i];
        struct tandem_backup_run *run = m->witness ? NULL : run_of(&node->backups, m->site);
        int64_t newest = 0;
        if (run == NULL || run->inflight || now < run->next_ms) {
            continue;
        }
        for (unsigned s = 0; s < n_sums; s++) {
            newest = strcmp(sums[s].site, m->site) == 0 ? sums[s].newest_created_ms : newest;
        }
        if (!tandem_backup_plan_due(newest, tandem_wall_ms(), interval)) {
            continue;
        }
        if (take_start(node, in, run, why, sizeof why) != 0) {
            try_failed(node, run, why);
        }
    }
}

/* ---- retention and verification (leader) ---- */

struct site_walk {
    const char *site;
    struct tandem_backup_kept kept[TANDEM_BACKUP_RECORDS_MAX];
    char ids[TANDEM_BACKUP_RECORDS_MAX][TANDEM_BACKUP_ID_LEN_MAX + 1];
    unsigned n;
    /* the newest record still kept somewhere, for the verification */
    char newest[TANDEM_BACKUP_ID_LEN_MAX + 1];
    int64_t newest_ms;
    int64_t level2_ms; /* the site's last level-2 verification, of whichever backup */
    char holder[TANDEM_BACKUP_HOLDERS_MAX][TANDEM_NAME_LEN_MAX + 1];
    unsigned n_holders;
};

static int site_visit(void *arg, const Tandem__BackupRecord *r)
{
    struct site_walk *w = arg;
    if (strcmp(r->site, w->site) != 0 || r->retired_ms != 0 || w->n == TANDEM_BACKUP_RECORDS_MAX) {
        return 0;
    }
    snprintf(w->ids[w->n], sizeof w->ids[w->n], "%s", r->id);
    w->kept[w->n] = (struct tandem_backup_kept){w->ids[w->n], r->created_ms};
    w->n++;
    if (r->verified_level >= 2 && r->verified_ms > w->level2_ms) {
        w->level2_ms = r->verified_ms;
    }
    if (tandem_backup_state_of(r) != TANDEM_BACKUP_LOST && r->created_ms >= w->newest_ms) {
        snprintf(w->newest, sizeof w->newest, "%s", r->id);
        w->newest_ms = r->created_ms;
        w->n_holders = 0;
        for (size_t i = 0; i < r->n_holders; i++) {
            if (!tandem_backup_lost_at(r, r->holders[i])) {
                snprintf(w->holder[w->n_holders++], TANDEM_NAME_LEN_MAX + 1, "%s", r->holders[i]);
            }
        }
    }
    return 0;
}

static int kept_newest_first(const void *a, const void *b)
{
    const struct tandem_backup_kept *x = a, *y = b;
    return x->created_ms < y->created_ms ? 1 : x->created_ms > y->created_ms ? -1 : 0;
}

static void update_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct proposal *p = w->data;
    struct tandem_node *node = p->node;
    if (p->update.kind == TANDEM__BACKUP_UPDATE__KIND__RETIRED) {
        node->backups.retire_inflight = false;
    }
    if (status != 0 || result == NULL || result->status != 200) {
        tandem_log(TANDEM_LOG_WARN, "backup %s: update not recorded: %s", p->id,
                   status != 0                      ? "not committed"
                   : result != NULL && result->body ? result->body
                                                    : "");
    }
    proposal_free(p);
}

/* Proposes kind for id (node and reason may be ""). Returns 0 or -1 (not leading, no memory). */
static int update_propose(struct tandem_node *node, const char *id, int kind, const char *by,
                          uint32_t level, const char *reason)
{
    struct proposal *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return -1;
    }
    p->node = node;
    snprintf(p->id, sizeof p->id, "%s", id);
    snprintf(p->by, sizeof p->by, "%s", by);
    snprintf(p->reason, sizeof p->reason, "%s", reason);
    tandem__backup_update__init(&p->update);
    p->update.id = p->id;
    p->update.kind = (Tandem__BackupUpdate__Kind)kind;
    p->update.node = p->by;
    p->update.level = level;
    p->update.reason = p->reason;
    tandem__command__init(&p->command);
    p->command.body_case = TANDEM__COMMAND__BODY_BACKUP_UPDATE;
    p->command.backup_update = &p->update;
    p->write = (struct tandem_write){.command = &p->command, .data = p, .cb = update_cb};
    if (tandem_proposer_write(&node->proposer, &p->write) != 0) {
        proposal_free(p);
        return -1;
    }
    return 0;
}

/* One retirement per tick at most: retention is never in a hurry. */
static void retention(struct tandem_node *node, struct site_walk *w)
{
    bool retire[TANDEM_BACKUP_RECORDS_MAX];
    const struct tandem_config *c = node->config;
    qsort(w->kept, w->n, sizeof w->kept[0], kept_newest_first);
    if (node->backups.retire_inflight ||
        tandem_backup_plan_retire(w->kept, w->n, c->backup_keep, c->backup_keep_days,
                                  tandem_wall_ms(), retire) == 0) {
        return;
    }
    for (unsigned i = 0; i < w->n; i++) {
        if (retire[i] && update_propose(node, w->kept[i].id, TANDEM__BACKUP_UPDATE__KIND__RETIRED,
                                        "", 0, "retention") == 0) {
            node->backups.retire_inflight = true;
            tandem_log(TANDEM_LOG_INFO, "backup %s retired (backup_keep %u, backup_keep_days %u)",
                       w->kept[i].id, c->backup_keep, c->backup_keep_days);
            return;
        }
    }
}

struct verify_call {
    struct tandem_node *node;
    char site[TANDEM_SITE_LEN_MAX + 1];
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    char holder[TANDEM_NAME_LEN_MAX + 1];
};

static void verify_call_cb(void *data, int status, int http_status, const char *body,
                           size_t body_len)
{
    struct verify_call *call = data;
    struct tandem_node *node = call->node;
    struct tandem_backup_run *run = run_of(&node->backups, call->site);
    tandem_backups_work_end(node);
    if (run != NULL) {
        run->verify_inflight = false;
    }
    json_t *answer = status == 0 ? json_loadb(body, body_len, 0, NULL) : NULL;
    const char *err = json_string_value(json_object_get(answer, "error"));
    if (!node->stopping && status == 0 && http_status == 200) {
        node->backups.stats.verifications++;
        (void)update_propose(node, call->id, TANDEM__BACKUP_UPDATE__KIND__VERIFIED, call->holder, 2,
                             "");
    } else if (!node->stopping && status == 0 && (http_status == 422 || http_status == 404)) {
        node->backups.stats.verification_failures++;
        tandem_log(TANDEM_LOG_ERROR, "backup %s at %s failed its level-2 verification: %s",
                   call->id, call->holder, err != NULL ? err : "no reason");
        tandem_events_emit(&node->events, "backup_verify_failed", call->site,
                           "backup %s kept at %s failed verification at level 2: %s", call->id,
                           call->holder, err != NULL ? err : "no reason given");
        (void)update_propose(node, call->id, TANDEM__BACKUP_UPDATE__KIND__LOST, call->holder, 0,
                             err != NULL ? err : "verification failed");
    } else if (!node->stopping) {
        tandem_log(TANDEM_LOG_WARN, "backup %s: level-2 verification at %s not done: %s", call->id,
                   call->holder,
                   status != 0   ? uv_strerror(status)
                   : err != NULL ? err
                                 : "HTTP");
    }
    json_decref(answer);
    free(call);
}

/* Every backup_verify_interval_s (the first time soon after the first backup arrived), the
 * newest backup of a site gets a level-2 check at one of its holders. */
static void verification(struct tandem_node *node, const struct tandem_backup_plan_input *in,
                         struct tandem_backup_run *run, const struct site_walk *w)
{
    uint64_t every = (uint64_t)node->config->backup_verify_interval_s * 1000u;
    uint64_t now = uv_now(node->loop);
    int64_t wall = tandem_wall_ms();
    if (every == 0 || w->newest[0] == '\0' || run->verify_inflight || now < run->verify_next_ms ||
        (w->level2_ms > 0 && wall - w->level2_ms < (int64_t)every)) {
        return;
    }
    for (unsigned h = 0; h < w->n_holders; h++) {
        for (unsigned i = 0; i < in->n_members; i++) {
            const struct tandem_backup_member *m = &in->members[i];
            if (strcmp(m->name, w->holder[h]) != 0 || !m->reachable) {
                continue;
            }
            struct verify_call *call = calloc(1, sizeof *call);
            char body[128];
            snprintf(body, sizeof body, "{\"id\":\"%s\",\"level\":2}", w->newest);
            if (call == NULL) {
                return;
            }
            *call = (struct verify_call){.node = node};
            snprintf(call->site, sizeof call->site, "%s", run->site);
            snprintf(call->id, sizeof call->id, "%s", w->newest);
            snprintf(call->holder, sizeof call->holder, "%s", m->name);
            run->verify_next_ms = now + (uint64_t)node->config->backup_retry_s * 1000u;
            if (tandem_bcp_call(&node->bcp, m->api, "POST", "/v1/node/backups/verify", NULL, body,
                                node->config->backup_timeout_s * 1000u, verify_call_cb,
                                call) != 0) {
                free(call);
                return;
            }
            tandem_backups_work_begin(node);
            run->verify_inflight = true;
            return;
        }
    }
}

static void leader_tick(struct tandem_node *node)
{
    struct tandem_backup_plan_input *in = malloc(sizeof *in);
    struct site_walk *w = malloc(sizeof *w);
    struct tandem_backup_site_summary sums[TANDEM_BACKUP_SITES_MAX];
    unsigned n_sums = 0;
    MDB_txn *txn = NULL;
    if (in == NULL || w == NULL || tandem_store_read_txn(&node->store, &txn) != 0) {
        free(in);
        free(w);
        return;
    }
    plan_gather(node, in);
    int rv = tandem_backups_summary(&node->store, txn, sums, TANDEM_BACKUP_SITES_MAX, &n_sums);
    if (rv == 0) {
        schedule(node, in, sums, n_sums);
    }
    for (unsigned i = 0; rv == 0 && i < node->backups.n_runs; i++) {
        w->site = node->backups.runs[i].site;
        w->n = w->n_holders = 0;
        w->newest[0] = '\0';
        w->newest_ms = w->level2_ms = 0;
        rv = tandem_backups_walk(&node->store, txn, site_visit, w);
        if (rv == 0) {
            verification(node, in, &node->backups.runs[i], w);
            retention(node, w);
        }
    }
    mdb_txn_abort(txn);
    if (rv != 0) {
        tandem_log(TANDEM_LOG_WARN, "backup schedule: %s", node->store.errmsg);
    }
    free(in);
    free(w);
}

void tandem_backups_tick(struct tandem_node *node)
{
    struct tandem_backups *b = &node->backups;
    uint64_t now = uv_now(node->loop);
    if (b->closing || node->stopping || now - b->last_tick_ms < TANDEM_BACKUP_TICK_MS) {
        return;
    }
    b->last_tick_ms = now;
    tandem_backup_streams_expire(node);
    if (now - b->last_check_ms >= (uint64_t)node->config->backup_check_interval_s * 1000u) {
        b->last_check_ms = now;
        tandem_backups_holder_check(node);
    }
    if (raft_state(&node->raft.raft) != RAFT_LEADER) {
        b->n_runs = 0; /* a later leadership starts afresh from the replicated records */
        b->leading_since_ms = 0;
        return;
    }
    /* A new leader first hears from every member (their match index, their probes) for
     * site_down_after_ms, so it does not fail tries for want of a caught-up node. */
    b->leading_since_ms = b->leading_since_ms != 0 ? b->leading_since_ms : now;
    if (now - b->leading_since_ms < node->config->site_down_after_ms) {
        return;
    }
    if (tandem_store_commit(&node->store) != 0) { /* the schedule reads every applied record */
        tandem_node_fatal(node, node->store.errmsg);
        return;
    }
    leader_tick(node);
}

/* ---- views ---- */

json_t *tandem_backups_status_json(struct tandem_node *node)
{
    struct tandem_backup_site_summary sums[TANDEM_BACKUP_SITES_MAX];
    unsigned n = 0;
    MDB_txn *txn;
    if (tandem_store_read_txn(&node->store, &txn) != 0) {
        return NULL;
    }
    int rv = tandem_backups_summary(&node->store, txn, sums, TANDEM_BACKUP_SITES_MAX, &n);
    mdb_txn_abort(txn);
    if (rv != 0) {
        return NULL;
    }
    json_t *sites = tandem_backups_summary_json(sums, n, tandem_wall_ms());
    for (unsigned i = 0; sites != NULL && i < node->backups.n_runs; i++) {
        const struct tandem_backup_run *run = &node->backups.runs[i];
        json_t *site = json_object_get(sites, run->site);
        if (site == NULL || run->last_error_ms == 0) {
            continue;
        }
        char at[TANDEM_RFC3339_LEN_MAX + 1];
        tandem_rfc3339_format_ms(run->last_error_ms, at);
        json_object_set_new(site, "last_failure",
                            json_pack("{s:s,s:s,s:I}", "at", at, "error", run->last_error,
                                      "failures", (json_int_t)run->failures));
    }
    return json_pack("{s:b,s:I,s:o}", "scheduled",
                     tandem_config_backup_interval_ms(node->config) > 0, "interval_s",
                     (json_int_t)(tandem_config_backup_interval_ms(node->config) / 1000u), "sites",
                     sites != NULL ? sites : json_object());
}

static void age_line(FILE *out, const char *site, const char *kind, int64_t created_ms,
                     int64_t now_ms)
{
    char label[TANDEM_METRICS_LABEL_MAX];
    if (created_ms > 0) {
        fprintf(out, "tandem_backup_age_seconds{site=\"%s\",backup=\"%s\"} %.3f\n",
                tandem_metrics_label(site, label), kind,
                (double)(now_ms > created_ms ? now_ms - created_ms : 0) / 1000.0);
    }
}

/* The counts of each site's backups by state, and the scheduled runs' failures. */
static void backup_counts_write(struct tandem_node *node,
                                const struct tandem_backup_site_summary *sums, unsigned n,
                                FILE *out)
{
    char label[TANDEM_METRICS_LABEL_MAX];
    tandem_metrics_family(out, "tandem_backups", "gauge",
                          "Backups of each site by state (kept, degraded: some holders lost "
                          "their copy, lost: all did, or a verification found it damaged).");
    for (unsigned i = 0; i < n; i++) {
        tandem_metrics_label(sums[i].site, label);
        fprintf(out,
                "tandem_backups{site=\"%s\",state=\"kept\"} %u\n"
                "tandem_backups{site=\"%s\",state=\"degraded\"} %u\n"
                "tandem_backups{site=\"%s\",state=\"lost\"} %u\n",
                label, sums[i].kept, label, sums[i].degraded, label, sums[i].lost);
    }
    tandem_metrics_family(out, "tandem_backup_failures_total", "counter",
                          "Scheduled backup tries of each site that failed (on the leader that "
                          "ran them).");
    for (unsigned i = 0; i < node->backups.n_runs; i++) {
        fprintf(out, "tandem_backup_failures_total{site=\"%s\"} %" PRIu64 "\n",
                tandem_metrics_label(node->backups.runs[i].site, label),
                node->backups.runs[i].failures);
    }
}

void tandem_backups_metrics_write(struct tandem_node *node, FILE *out)
{
    struct tandem_backup_site_summary sums[TANDEM_BACKUP_SITES_MAX];
    const struct tandem_backup_stats *st = &node->backups.stats;
    unsigned n = 0;
    MDB_txn *txn;
    int64_t now = tandem_wall_ms();
    if (tandem_store_read_txn(&node->store, &txn) == 0) {
        if (tandem_backups_summary(&node->store, txn, sums, TANDEM_BACKUP_SITES_MAX, &n) != 0) {
            n = 0;
        }
        mdb_txn_abort(txn);
    }
    tandem_metrics_family(out, "tandem_backup_age_seconds", "gauge",
                          "Age of each site's newest backup still kept somewhere "
                          "(backup=newest), and of its newest verified one (backup=verified).");
    for (unsigned i = 0; i < n; i++) {
        age_line(out, sums[i].site, "newest", sums[i].newest_created_ms, now);
        age_line(out, sums[i].site, "verified", sums[i].verified_created_ms, now);
    }
    backup_counts_write(node, sums, n, out);
    const struct tandem_metrics_scalar counters[] = {
        {"tandem_backups_taken_total", "counter", "Backups this node took for the schedule.",
         st->taken},
        {"tandem_backups_received_total", "counter",
         "Backups of another site this node received and kept.", st->received},
        {"tandem_backups_refused_total", "counter",
         "Backups this node refused on arrival (failed their check).", st->arrival_refused},
        {"tandem_backups_lost_reported_total", "counter",
         "Kept backups this node found missing or damaged and reported.", st->lost_reported},
        {"tandem_backup_verifications_total", "counter",
         "Level-2 verifications of a kept backup that passed (run by the leader's schedule).",
         st->verifications},
        {"tandem_backup_verification_failures_total", "counter",
         "Level-2 verifications that found the kept backup damaged or gone.",
         st->verification_failures},
    };
    tandem_metrics_scalars_write(out, counters, sizeof counters / sizeof counters[0]);
    fprintf(out,
            "# HELP tandem_backup_downloads_open Backup files being sent to clients now.\n"
            "# TYPE tandem_backup_downloads_open gauge\ntandem_backup_downloads_open %u\n"
            "# HELP tandem_backup_downloads_total Backup files sent to clients: complete, or cut "
            "before their end.\n# TYPE tandem_backup_downloads_total counter\n"
            "tandem_backup_downloads_total{result=\"complete\"} %" PRIu64 "\n"
            "tandem_backup_downloads_total{result=\"cut\"} %" PRIu64 "\n",
            node->backups.downloads, node->backups.downloads_done, node->backups.downloads_cut);
}
