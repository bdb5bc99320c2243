/* Capacity planning on the replicated state: capacity records and their history, the view of
 * sites and backlog a plan reads, the JSON of sites and plans, and the apply of both commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/apply.h"
#include "replication/domain/domain.h"
#include "replication/rebalance/rebalance.h"
#include "replication/bcp/sites.h"
#include "storage/error.h"

#define HISTORY_KEY_LEN     (TANDEM_SITE_LEN_MAX + 1 + 8) /* "<site>\0<seq u64 BE>" */
#define APPLIED_KEY         "applied_index"               /* meta record: u64 LE + digest */
#define HOURS_SCALE         10000.0 /* hours in answers are rounded to 4 decimals */
#define STALE_SUFFIX        "compute a new plan"
#define VIEW_JOBS_FIRST_CAP 1024

/* ---- capacity records and history ---- */

int tandem_capacity_get(struct tandem_store *s, MDB_txn *txn, const char *site,
                        Tandem__CapacityRecord **out)
{
    return tandem_record_get(s, txn, TANDEM_DB_CAPACITY, site, strlen(site),
                             &tandem__capacity_record__descriptor, (ProtobufCMessage **)out);
}

static size_t history_key(const char *site, uint64_t seq, uint8_t out[HISTORY_KEY_LEN])
{
    size_t len = strlen(site);
    memcpy(out, site, len);
    out[len] = '\0';
    tandem_be64_put(out + len + 1, seq);
    return len + 1 + 8;
}

static json_t *change_json(const Tandem__CapacityChange *c)
{
    char at[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(c->time_ms, at);
    return json_pack("{s:I,s:s,s:o,s:I,s:s,s:s,s:s,s:I}", "seq", (json_int_t)c->seq, "site",
                     c->site, "old",
                     c->had_old ? json_integer((json_int_t)c->old_capacity) : json_null(), "new",
                     (json_int_t)c->new_capacity, "by", c->user, "by_site", c->actor_site, "at", at,
                     "index", (json_int_t)c->index);
}

json_t *tandem_capacity_history_json(struct tandem_store *s, MDB_txn *txn, const char *site,
                                     unsigned limit)
{
    Tandem__CapacityRecord *record = NULL;
    json_t *out = json_array();
    int rv = out == NULL ? ENOMEM : tandem_capacity_get(s, txn, site, &record);
    uint64_t next = record != NULL ? record->changes : 0;
    for (unsigned n = 0; rv == 0 && n < limit && n < TANDEM_CAPACITY_HISTORY_KEPT && next > 0;
         n++) {
        uint8_t key[HISTORY_KEY_LEN];
        Tandem__CapacityChange *change = NULL;
        size_t len = history_key(site, --next, key);
        rv = tandem_record_get(s, txn, TANDEM_DB_CAPACITY_HISTORY, key, len,
                               &tandem__capacity_change__descriptor, (ProtobufCMessage **)&change);
        if (rv == 0 && change != NULL) {
            json_array_append_new(out, change_json(change));
        }
        tandem__capacity_change__free_unpacked(change, NULL);
    }
    if (record != NULL) {
        tandem__capacity_record__free_unpacked(record, NULL);
    }
    if (rv != 0) {
        if (rv == ENOMEM) {
            snprintf(s->errmsg, sizeof s->errmsg, "out of memory");
        }
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Is the site a witness (no work), by the site table or by its conventional name? */
static bool site_is_witness(const struct tandem_site_table *table, const char *name)
{
    const struct tandem_site *site = tandem_site_table_find(table, name);
    return site != NULL ? site->witness : strcmp(name, TANDEM_SITE_WITNESS_NAME) == 0;
}

static int capacity_set_check(const struct tandem_apply_ctx *ctx, const Tandem__CapacitySet *c,
                              struct tandem_result *result, bool *refused)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    *refused = true;
    if (c == NULL || tandem_actor_check(c->actor, errmsg) != 0) {
        tandem_result_error(result, 400, "%s", c == NULL ? "empty capacity command" : errmsg);
        return 0;
    }
    if (!tandem_domain_site_ok(c->site) || c->capacity > TANDEM_SITE_CAPACITY_MAX) {
        tandem_result_error(result, 400,
                            "a site label (1 to %d of [A-Za-z0-9._-]) and a capacity of 0 to %u "
                            "units per hour are needed",
                            TANDEM_SITE_LEN_MAX, TANDEM_SITE_CAPACITY_MAX);
        return 0;
    }
    struct tandem_site_table *table = malloc(sizeof *table);
    if (table == NULL) {
        return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "out of memory");
    }
    int rv = tandem_sites_load(ctx->store, ctx->txn, table);
    if (rv == 0 && site_is_witness(table, c->site)) {
        tandem_result_error(result, 409, "site %s is a witness: it holds no work", c->site);
    } else if (rv == 0) {
        *refused = false;
    }
    free(table);
    return rv;
}

/* Stores change number record->changes - 1 and drops the one that falls out of the kept window. */
static int history_append(const struct tandem_apply_ctx *ctx, const Tandem__CapacitySet *c,
                          const Tandem__CapacityRecord *old, const Tandem__CapacityRecord *next)
{
    Tandem__CapacityChange change = TANDEM__CAPACITY_CHANGE__INIT;
    uint8_t key[HISTORY_KEY_LEN];
    change.seq = next->changes - 1;
    change.site = c->site;
    change.had_old = old != NULL;
    change.old_capacity = old != NULL ? old->capacity : 0;
    change.new_capacity = next->capacity;
    change.user = c->actor->user;
    change.actor_site = c->actor->site;
    change.time_ms = ctx->now_ms;
    change.index = ctx->index;
    int rv = tandem_record_put(ctx->store, ctx->txn, TANDEM_DB_CAPACITY_HISTORY, key,
                               history_key(c->site, change.seq, key), &change.base);
    if (rv == 0 && change.seq >= TANDEM_CAPACITY_HISTORY_KEPT) {
        MDB_val k = {.mv_size =
                         history_key(c->site, change.seq - TANDEM_CAPACITY_HISTORY_KEPT, key),
                     .mv_data = key};
        rv = mdb_del(ctx->txn, ctx->store->dbi[TANDEM_DB_CAPACITY_HISTORY], &k, NULL);
        rv = rv == MDB_NOTFOUND ? 0 : rv;
        if (rv != 0) {
            return tandem_error_from_mdb(rv, ctx->store->errmsg, "capacity history prune");
        }
    }
    return rv;
}

int tandem_capacity_apply_set(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                              struct tandem_result *result)
{
    const Tandem__CapacitySet *c = command->capacity_set;
    Tandem__CapacityRecord *old = NULL;
    bool refused;
    int rv = capacity_set_check(ctx, c, result, &refused);
    if (rv != 0 || refused ||
        (rv = tandem_capacity_get(ctx->store, ctx->txn, c->site, &old)) != 0) {
        return rv;
    }
    json_t *previous = old != NULL ? json_integer((json_int_t)old->capacity) : json_null();
    if (old != NULL && old->capacity == c->capacity) {
        tandem_result_jansson(result, 200,
                              json_pack("{s:s,s:I,s:o,s:b}", "site", c->site, "capacity",
                                        (json_int_t)c->capacity, "previous", previous, "changed",
                                        false));
        tandem__capacity_record__free_unpacked(old, NULL);
        return 0;
    }
    Tandem__CapacityRecord next = TANDEM__CAPACITY_RECORD__INIT;
    next.site = c->site;
    next.capacity = c->capacity;
    next.updated_ms = ctx->now_ms;
    next.mod_index = ctx->index;
    next.changes = (old != NULL ? old->changes : 0) + 1;
    rv = tandem_record_put(ctx->store, ctx->txn, TANDEM_DB_CAPACITY, c->site, strlen(c->site),
                           &next.base);
    if (rv == 0) {
        rv = history_append(ctx, c, old, &next);
    }
    if (rv == 0) {
        tandem_result_jansson(result, 200,
                              json_pack("{s:s,s:I,s:O,s:b,s:I}", "site", c->site, "capacity",
                                        (json_int_t)c->capacity, "previous", previous, "changed",
                                        true, "index", (json_int_t)ctx->index));
    }
    json_decref(previous);
    if (old != NULL) {
        tandem__capacity_record__free_unpacked(old, NULL);
    }
    return rv;
}

/* ---- the view a plan reads ---- */

static int applied_index_read(struct tandem_store *s, MDB_txn *txn, uint64_t *index)
{
    MDB_val k = {.mv_size = strlen(APPLIED_KEY), .mv_data = APPLIED_KEY}, v;
    uint8_t le[8];
    int rv = mdb_get(txn, s->dbi[TANDEM_DB_META], &k, &v);
    *index = 0;
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0 || v.mv_size < sizeof le) {
        return rv != 0 ? tandem_error_from_mdb(rv, s->errmsg, "read applied_index")
                       : tandem_error_set(s->errmsg, TANDEM_CORRUPT, "applied_index is corrupt");
    }
    memcpy(le, v.mv_data, sizeof le);
    for (int i = 7; i >= 0; i--) {
        *index = *index << 8 | le[i];
    }
    return 0;
}

/* The index of site name in view, added (capacity unknown yet) when new. */
static int view_site(struct tandem_store *s, struct tandem_rebalance_view *view, const char *name,
                     uint32_t *index)
{
    for (uint32_t i = 0; i < view->n_sites; i++) {
        if (strcmp(view->sites[i].name, name) == 0) {
            *index = i;
            return 0;
        }
    }
    if (view->n_sites == TANDEM_REBALANCE_SITES_MAX || strlen(name) > TANDEM_SITE_LEN_MAX) {
        snprintf(s->errmsg, sizeof s->errmsg, "more than %d sites to plan over (at %s)",
                 TANDEM_REBALANCE_SITES_MAX, name);
        return E2BIG;
    }
    *index = view->n_sites++;
    memset(&view->sites[*index], 0, sizeof view->sites[*index]);
    memset(&view->info[*index], 0, sizeof view->info[*index]);
    snprintf(view->sites[*index].name, sizeof view->sites[*index].name, "%s", name);
    snprintf(view->info[*index].state, sizeof view->info[*index].state, "active");
    return 0;
}

static int view_capacities(struct tandem_store *s, MDB_txn *txn, struct tandem_rebalance_view *view)
{
    MDB_cursor *cursor;
    MDB_val k, v;
    int err = 0, rv = mdb_cursor_open(txn, s->dbi[TANDEM_DB_CAPACITY], &cursor);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, s->errmsg, "capacity cursor");
    }
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rv == 0 && err == 0;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        Tandem__CapacityRecord *r = NULL;
        uint32_t i;
        err = tandem_record_decode(s, &v, &tandem__capacity_record__descriptor,
                                   (ProtobufCMessage **)&r);
        err = err != 0 ? err : view_site(s, view, r->site, &i);
        if (err == 0) {
            view->info[i].has_configured = true;
            view->info[i].configured = r->capacity;
        }
        tandem__capacity_record__free_unpacked(r, NULL);
    }
    mdb_cursor_close(cursor);
    if (err != 0) {
        return err; /* ours, with s->errmsg: a corrupt record, or E2BIG (too many sites) */
    }
    return rv == MDB_NOTFOUND ? 0 : tandem_error_from_mdb(rv, s->errmsg, "capacity scan");
}

static int view_site_table(struct tandem_store *s, MDB_txn *txn, struct tandem_rebalance_view *view)
{
    struct tandem_site_table *table = malloc(sizeof *table);
    if (table == NULL) {
        /* The view's readers map ENOMEM and E2BIG to 503 and 413 (node/api/rebalance.c). */
        snprintf(s->errmsg, TANDEM_ERRMSG_SIZE, "out of memory");
        return ENOMEM;
    }
    int rv = tandem_sites_load(s, txn, table);
    for (unsigned t = 0; rv == 0 && t < table->n_sites; t++) {
        uint32_t i;
        rv = view_site(s, view, table->sites[t].name, &i);
        if (rv == 0) {
            snprintf(view->info[i].state, sizeof view->info[i].state, "%s",
                     tandem_site_state_name(table->sites[t].state));
            view->info[i].witness = table->sites[t].witness;
            view->info[i].in_table = true;
        }
    }
    free(table);
    return rv;
}

/* Where the boxes physically with the job (picked or in process for it) are. */
static int job_boxes_site(struct tandem_store *s, MDB_txn *txn, struct tandem_rebalance_view *view,
                          const Tandem__JobRecord *job, int32_t *out)
{
    *out = TANDEM_REBALANCE_BOXES_NONE;
    for (size_t b = 0; b < job->n_boxes; b++) {
        Tandem__BoxRecord *box = NULL;
        uint32_t site;
        int rv = tandem_box_get(s, txn, job->boxes[b], &box);
        bool with_job = rv == 0 && box != NULL && strcmp(box->job, job->id) == 0 &&
                        (box->status == TANDEM_BOX_PICKED || box->status == TANDEM_BOX_IN_PROCESS);
        if (with_job && (rv = view_site(s, view, box->site, &site)) == 0) {
            *out = *out == TANDEM_REBALANCE_BOXES_NONE || *out == (int32_t)site
                       ? (int32_t)site
                       : TANDEM_REBALANCE_BOXES_SPLIT;
        }
        if (box != NULL) {
            tandem__box_record__free_unpacked(box, NULL);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int view_job_add(struct tandem_store *s, MDB_txn *txn, struct tandem_rebalance_view *view,
                        const Tandem__JobRecord *job)
{
    if (view->n_jobs >= TANDEM_REBALANCE_JOBS_MAX) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "more than %d queued and in-progress jobs to plan over",
                 TANDEM_REBALANCE_JOBS_MAX);
        return E2BIG;
    }
    if (view->n_jobs == view->jobs_cap) {
        size_t cap = view->jobs_cap == 0 ? VIEW_JOBS_FIRST_CAP : 2 * view->jobs_cap;
        struct tandem_rebalance_job *grown = realloc(view->jobs, cap * sizeof *grown);
        if (grown == NULL) {
            snprintf(s->errmsg, TANDEM_ERRMSG_SIZE, "out of memory reading %zu jobs", view->n_jobs);
            return ENOMEM;
        }
        view->jobs = grown;
        view->jobs_cap = cap;
    }
    struct tandem_rebalance_job *j = &view->jobs[view->n_jobs];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", job->id);
    j->effort = job->effort;
    j->priority = job->priority;
    j->has_due = job->has_due;
    j->due_ms = job->due_ms;
    j->queued = job->status == TANDEM_JOB_QUEUED;
    j->pinned = job->pinned;
    int rv = view_site(s, view, job->site, &j->site);
    rv = rv != 0 ? rv : job_boxes_site(s, txn, view, job, &j->boxes_site);
    view->n_jobs += rv == 0 ? 1 : 0;
    return rv;
}

struct view_walk {
    struct tandem_store *s;
    MDB_txn *txn;
    struct tandem_rebalance_view *view;
};

static int view_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct view_walk *w = arg;
    (void)id;
    return view_job_add(w->s, w->txn, w->view, job);
}

static int view_jobs(struct tandem_store *s, MDB_txn *txn, struct tandem_rebalance_view *view)
{
    struct view_walk w = {s, txn, view};
    bool exhausted = false;
    int rv = tandem_jobs_runnable_walk(s, txn, (size_t)TANDEM_REBALANCE_JOBS_MAX + 1, view_visit,
                                       &w, &exhausted);
    if (rv == 0 && !exhausted) {
        snprintf(s->errmsg, sizeof s->errmsg, "more than %d jobs to plan over",
                 TANDEM_REBALANCE_JOBS_MAX);
        return E2BIG;
    }
    return rv;
}

/* Sites in name order (plans and views list them so), job and box site indexes remapped. */
static void view_sort_sites(struct tandem_rebalance_view *view)
{
    uint32_t order[TANDEM_REBALANCE_SITES_MAX], remap[TANDEM_REBALANCE_SITES_MAX];
    struct tandem_rebalance_site sites[TANDEM_REBALANCE_SITES_MAX];
    struct tandem_rebalance_site_info info[TANDEM_REBALANCE_SITES_MAX];
    for (uint32_t i = 0; i < view->n_sites; i++) {
        uint32_t k = i;
        for (; k > 0 && strcmp(view->sites[order[k - 1]].name, view->sites[i].name) > 0; k--) {
            order[k] = order[k - 1];
        }
        order[k] = i;
    }
    for (uint32_t i = 0; i < view->n_sites; i++) {
        remap[order[i]] = i;
        sites[i] = view->sites[order[i]];
        info[i] = view->info[order[i]];
    }
    memcpy(view->sites, sites, view->n_sites * sizeof *sites);
    memcpy(view->info, info, view->n_sites * sizeof *info);
    for (size_t j = 0; j < view->n_jobs; j++) {
        view->jobs[j].site = remap[view->jobs[j].site];
        if (view->jobs[j].boxes_site >= 0) {
            view->jobs[j].boxes_site = (int32_t)remap[view->jobs[j].boxes_site];
        }
    }
}

int tandem_rebalance_view_read(struct tandem_store *s, MDB_txn *txn,
                               struct tandem_rebalance_view *view)
{
    memset(view, 0, sizeof *view);
    int rv = applied_index_read(s, txn, &view->index);
    rv = rv != 0 ? rv : view_capacities(s, txn, view);
    rv = rv != 0 ? rv : view_site_table(s, txn, view);
    rv = rv != 0 ? rv : view_jobs(s, txn, view);
    if (rv != 0) {
        return rv;
    }
    view_sort_sites(view);
    for (uint32_t i = 0; i < view->n_sites; i++) {
        const struct tandem_rebalance_site_info *info = &view->info[i];
        bool bcp = strcmp(info->state, "invoked") == 0 || strcmp(info->state, "recovering") == 0;
        view->info[i].witness =
            info->witness ||
            (!info->in_table && strcmp(view->sites[i].name, TANDEM_SITE_WITNESS_NAME) == 0);
        view->sites[i].capacity = bcp || info->witness ? 0 : info->configured;
    }
    return 0;
}

void tandem_rebalance_view_free(struct tandem_rebalance_view *view)
{
    free(view->jobs);
    view->jobs = NULL;
    view->n_jobs = view->jobs_cap = 0;
}

/* ---- JSON of sites and plans ---- */

/* Hours to 4 decimals; null when the work can never finish (capacity 0 with work queued). */
static json_t *hours_json(uint64_t units, uint64_t capacity)
{
    if (units == 0) {
        return json_real(0.0);
    }
    if (capacity == 0) {
        return json_null();
    }
    double hours = (double)units / (double)capacity;
    if (hours < 1e12) {
        hours = (double)(int64_t)(hours * HOURS_SCALE + 0.5) / HOURS_SCALE;
    }
    return json_real(hours);
}

static json_t *configured_json(const struct tandem_rebalance_site_info *info)
{
    return info->has_configured ? json_integer((json_int_t)info->configured) : json_null();
}

static json_t *site_view_json(const struct tandem_rebalance_view *view, uint32_t i,
                              const struct tandem_rebalance_site_result *r)
{
    size_t queued = 0, running = 0;
    for (size_t j = 0; j < view->n_jobs; j++) {
        if (view->jobs[j].site == i) {
            queued += view->jobs[j].queued ? 1 : 0;
            running += view->jobs[j].queued ? 0 : 1;
        }
    }
    const struct tandem_rebalance_site *site = &view->sites[i];
    return json_pack(
        "{s:s,s:s,s:b,s:I,s:o,s:I,s:o,s:I,s:I,s:I}", "name", site->name, "state",
        view->info[i].state, "witness", view->info[i].witness, "capacity",
        (json_int_t)site->capacity, "capacity_configured", configured_json(&view->info[i]),
        "backlog_units", (json_int_t)r->backlog_before, "backlog_hours",
        hours_json(r->backlog_before, site->capacity), "jobs_queued", (json_int_t)queued,
        "jobs_in_progress", (json_int_t)running, "jobs_at_risk", (json_int_t)r->at_risk_before);
}

static struct tandem_rebalance_input view_input(const struct tandem_rebalance_view *view,
                                                int objective, size_t max_moves, int64_t now_ms)
{
    return (struct tandem_rebalance_input){view->sites, view->n_sites, view->jobs, view->n_jobs,
                                           objective,   max_moves,     now_ms};
}

json_t *tandem_rebalance_sites_json(const struct tandem_rebalance_view *view, int64_t now_ms,
                                    char *errmsg)
{
    struct tandem_rebalance_site_result r[TANDEM_REBALANCE_SITES_MAX];
    struct tandem_rebalance_input in = view_input(view, TANDEM_REBALANCE_MAKESPAN, 0, now_ms);
    char at[TANDEM_RFC3339_LEN_MAX + 1];
    json_t *sites = json_array();
    if (sites == NULL || (view->n_sites > 0 && tandem_rebalance_load(&in, r, errmsg) != 0)) {
        if (sites == NULL) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory");
        }
        json_decref(sites);
        return NULL;
    }
    for (uint32_t i = 0; i < view->n_sites; i++) {
        json_array_append_new(sites, site_view_json(view, i, &r[i]));
    }
    tandem_rfc3339_format(now_ms, at);
    json_t *out =
        json_pack("{s:I,s:s,s:o}", "index", (json_int_t)view->index, "at", at, "sites", sites);
    if (out == NULL) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory");
    }
    return out;
}

static json_t *plan_site_json(const struct tandem_rebalance_view *view, uint32_t i,
                              const struct tandem_rebalance_site_result *r)
{
    const struct tandem_rebalance_site *site = &view->sites[i];
    json_t *out = json_pack("{s:s,s:s,s:I,s:o,s:I,s:I,s:o,s:o}", "name", site->name, "state",
                            view->info[i].state, "capacity", (json_int_t)site->capacity,
                            "capacity_configured", configured_json(&view->info[i]),
                            "backlog_units_before", (json_int_t)r->backlog_before,
                            "backlog_units_after", (json_int_t)r->backlog_after,
                            "backlog_hours_before", hours_json(r->backlog_before, site->capacity),
                            "backlog_hours_after", hours_json(r->backlog_after, site->capacity));
    json_t *more =
        json_pack("{s:I,s:I,s:I,s:I}", "jobs_before", (json_int_t)r->jobs_before, "jobs_after",
                  (json_int_t)r->jobs_after, "at_risk_before", (json_int_t)r->at_risk_before,
                  "at_risk_after", (json_int_t)r->at_risk_after);
    if (out != NULL && more != NULL) {
        json_object_update(out, more);
    }
    json_decref(more);
    return out;
}

/* {"stranded_jobs","at_risk","makespan_hours"} before (after = false) or after the plan. */
static json_t *objective_json(const struct tandem_rebalance_view *view,
                              const struct tandem_rebalance_plan *plan, bool after)
{
    size_t stranded = 0, at_risk = 0;
    uint64_t units = 0, capacity = 0;
    for (uint32_t i = 0; i < view->n_sites; i++) {
        const struct tandem_rebalance_site_result *r = &plan->sites[i];
        uint64_t load = after ? r->backlog_after : r->backlog_before, c = view->sites[i].capacity;
        at_risk += after ? r->at_risk_after : r->at_risk_before;
        if (c == 0) {
            stranded += after ? r->jobs_after : r->jobs_before;
        } else if (capacity == 0 || (double)load * (double)capacity > (double)units * (double)c) {
            units = load;
            capacity = c;
        }
    }
    return json_pack("{s:I,s:I,s:o}", "stranded_jobs", (json_int_t)stranded, "at_risk",
                     (json_int_t)at_risk, "makespan_hours",
                     capacity == 0 ? json_null() : hours_json(units, capacity));
}

/* The moves as the apply command carries them (strings borrowed from view), and their JSON. */
static int plan_moves(const struct tandem_rebalance_view *view,
                      const struct tandem_rebalance_plan *plan, Tandem__RebalanceMove *moves,
                      Tandem__RebalanceMove **ptrs, json_t *out)
{
    for (size_t m = 0; m < plan->n_moves; m++) {
        const struct tandem_rebalance_move *mv = &plan->moves[m];
        const struct tandem_rebalance_job *job = &view->jobs[mv->job];
        tandem__rebalance_move__init(&moves[m]);
        moves[m].job = (char *)job->id;
        moves[m].from = (char *)view->sites[mv->from].name;
        moves[m].to = (char *)view->sites[mv->to].name;
        moves[m].effort = job->effort;
        ptrs[m] = &moves[m];
        if (json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:I,s:s}", "job", job->id, "from",
                                                 moves[m].from, "to", moves[m].to, "effort",
                                                 (json_int_t)job->effort, "reason",
                                                 tandem_rebalance_reason_name(mv->reason))) != 0) {
            return ENOMEM;
        }
    }
    return 0;
}

static json_t *plan_excluded(const struct tandem_rebalance_view *view,
                             const struct tandem_rebalance_plan *plan)
{
    json_t *out = json_array();
    for (size_t i = 0; out != NULL && i < plan->n_excluded && i < TANDEM_REBALANCE_EXCLUDED_SHOWN;
         i++) {
        const struct tandem_rebalance_job *job = &view->jobs[plan->excluded[i].job];
        json_array_append_new(out, json_pack("{s:s,s:s,s:s}", "job", job->id, "site",
                                             view->sites[job->site].name, "rule",
                                             tandem_rebalance_rule_name(plan->excluded[i].rule)));
    }
    return out;
}

/* Renders a computed plan; NULL when out of memory. */
static json_t *plan_render(const struct tandem_rebalance_view *view,
                           const struct tandem_rebalance_plan *plan, int objective,
                           size_t max_moves, int64_t now_ms)
{
    char id[TANDEM_REBALANCE_PLAN_ID_LEN + 1], at[TANDEM_RFC3339_LEN_MAX + 1];
    const char *objective_name = tandem_rebalance_objective_name(objective);
    size_t n = plan->n_moves > 0 ? plan->n_moves : 1;
    Tandem__RebalanceMove *moves = malloc(n * sizeof *moves);
    Tandem__RebalanceMove **ptrs = malloc(n * sizeof *ptrs);
    json_t *moves_json = json_array(), *sites = json_array(), *out = NULL;
    if (moves == NULL || ptrs == NULL || moves_json == NULL || sites == NULL ||
        plan_moves(view, plan, moves, ptrs, moves_json) != 0 ||
        tandem_rebalance_plan_id(view->index, objective_name, ptrs, plan->n_moves, id) != 0) {
        goto err_after_alloc;
    }
    for (uint32_t i = 0; i < view->n_sites; i++) {
        json_array_append_new(sites, plan_site_json(view, i, &plan->sites[i]));
    }
    tandem_rfc3339_format(now_ms, at);
    out = json_pack("{s:s,s:I,s:s,s:s,s:I,s:O,s:O,s:o,s:o,s:o,s:I}", "id", id, "index",
                    (json_int_t)view->index, "objective", objective_name, "at", at, "max_moves",
                    (json_int_t)max_moves, "moves", moves_json, "sites", sites, "before",
                    objective_json(view, plan, false), "after", objective_json(view, plan, true),
                    "excluded", plan_excluded(view, plan), "excluded_total",
                    (json_int_t)plan->n_excluded);
err_after_alloc:
    json_decref(moves_json);
    json_decref(sites);
    free(ptrs);
    free(moves);
    return out;
}

json_t *tandem_rebalance_plan_json(const struct tandem_rebalance_view *view, int objective,
                                   size_t max_moves, int64_t now_ms, int *status, char *errmsg)
{
    struct tandem_rebalance_plan plan;
    struct tandem_rebalance_input in = view_input(view, objective, max_moves, now_ms);
    memset(&plan, 0, sizeof plan);
    if (view->n_sites > 0) {
        int rv = tandem_rebalance_plan(&in, &plan, errmsg);
        if (rv != 0) {
            *status = rv == E2BIG ? 413 : rv == ENOMEM ? 503 : 500;
            return NULL;
        }
    }
    json_t *out = plan_render(view, &plan, objective, max_moves, now_ms);
    tandem_rebalance_plan_free(&plan);
    if (out == NULL) {
        *status = 503;
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory rendering the plan");
    }
    return out;
}

/* ---- plans given back for apply ---- */

void tandem_rebalance_moves_free(struct tandem_rebalance_moves *moves)
{
    free(moves->moves);
    free(moves->ptrs);
    *moves = (struct tandem_rebalance_moves){0};
}

static int move_parse(json_t *item, Tandem__RebalanceMove *out, size_t i, char *errmsg)
{
    json_t *effort = json_object_get(item, "effort");
    const char *job = json_string_value(json_object_get(item, "job"));
    const char *from = json_string_value(json_object_get(item, "from"));
    const char *to = json_string_value(json_object_get(item, "to"));
    tandem__rebalance_move__init(out);
    if (!json_is_object(item) || job == NULL || !tandem_domain_id_ok(job) || from == NULL ||
        to == NULL || !tandem_domain_site_ok(from) || !tandem_domain_site_ok(to) ||
        !json_is_integer(effort) || json_integer_value(effort) < 0 ||
        json_integer_value(effort) > TANDEM_JOB_EFFORT_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "move %zu must be {\"job\":ID,\"from\":SITE,\"to\":SITE,\"effort\":N} as the "
                 "plan gave it",
                 i);
        return -1;
    }
    out->job = (char *)job;
    out->from = (char *)from;
    out->to = (char *)to;
    out->effort = (uint64_t)json_integer_value(effort);
    return 0;
}

int tandem_rebalance_moves_parse(json_t *moves_json, struct tandem_rebalance_moves *out,
                                 char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (!json_is_array(moves_json) || json_array_size(moves_json) > TANDEM_REBALANCE_MOVES_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "\"moves\" must be an array of at most %d moves",
                 TANDEM_REBALANCE_MOVES_MAX);
        return -1;
    }
    size_t n = json_array_size(moves_json);
    out->moves = malloc((n > 0 ? n : 1) * sizeof *out->moves);
    out->ptrs = malloc((n > 0 ? n : 1) * sizeof *out->ptrs);
    if (out->moves == NULL || out->ptrs == NULL) {
        tandem_rebalance_moves_free(out);
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (move_parse(json_array_get(moves_json, i), &out->moves[i], i, errmsg) != 0) {
            tandem_rebalance_moves_free(out);
            return -1;
        }
        out->ptrs[i] = &out->moves[i];
    }
    out->n = n;
    return 0;
}

/* ---- apply: a plan ---- */

static int move_by_job(const void *a, const void *b)
{
    const Tandem__RebalanceMove *x = *(Tandem__RebalanceMove *const *)a;
    const Tandem__RebalanceMove *y = *(Tandem__RebalanceMove *const *)b;
    return strcmp(x->job, y->job);
}

/* Shape checks of the command; fills errmsg (400) when it is malformed. */
static int plan_shape_check(const struct tandem_apply_ctx *ctx, const Tandem__RebalanceApply *a,
                            char *errmsg)
{
    char id[TANDEM_REBALANCE_PLAN_ID_LEN + 1];
    if (a == NULL || tandem_actor_check(a->actor, errmsg) != 0) {
        return a == NULL ? (snprintf(errmsg, TANDEM_ERRMSG_SIZE, "empty plan"), -1) : -1;
    }
    if (tandem_rebalance_objective_parse(a->objective) < 0 ||
        a->n_moves > TANDEM_REBALANCE_MOVES_MAX || a->index >= ctx->index) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "a plan needs an objective, at most %d moves and the index it was "
                 "computed at (below %llu)",
                 TANDEM_REBALANCE_MOVES_MAX, (unsigned long long)ctx->index);
        return -1;
    }
    for (size_t i = 0; i < a->n_moves; i++) {
        const Tandem__RebalanceMove *m = a->moves[i];
        if (!tandem_domain_id_ok(m->job) || !tandem_domain_site_ok(m->from) ||
            !tandem_domain_site_ok(m->to) || strcmp(m->from, m->to) == 0) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "move %zu needs a job id and two different sites",
                     i);
            return -1;
        }
    }
    if (tandem_rebalance_plan_id(a->index, a->objective, a->moves, a->n_moves, id) != 0 ||
        strcmp(id, a->plan_id) != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "plan id %.40s does not match its index, objective and moves", a->plan_id);
        return -1;
    }
    return 0;
}

/* No job twice: each move's check reads the state before any move is written. */
static int plan_duplicates_check(const Tandem__RebalanceApply *a, char *errmsg, bool *nomem)
{
    Tandem__RebalanceMove **sorted = malloc((a->n_moves > 0 ? a->n_moves : 1) * sizeof *sorted);
    *nomem = sorted == NULL;
    if (sorted == NULL) {
        return -1;
    }
    memcpy(sorted, a->moves, a->n_moves * sizeof *sorted);
    qsort(sorted, a->n_moves, sizeof *sorted, move_by_job);
    int rv = 0;
    for (size_t i = 1; i < a->n_moves && rv == 0; i++) {
        if (strcmp(sorted[i - 1]->job, sorted[i]->job) == 0) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "job %s appears twice in the plan",
                     sorted[i]->job);
            rv = -1;
        }
    }
    free(sorted);
    return rv;
}

/* Refuses with 409 when a box with the job is at a site other than the destination. */
static int move_boxes_check(const struct tandem_apply_ctx *ctx, const Tandem__JobRecord *job,
                            const char *to, char *stale)
{
    for (size_t b = 0; b < job->n_boxes && stale[0] == '\0'; b++) {
        Tandem__BoxRecord *box = NULL;
        int rv = tandem_box_get(ctx->store, ctx->txn, job->boxes[b], &box);
        if (rv != 0) {
            return rv;
        }
        if (box != NULL && strcmp(box->job, job->id) == 0 &&
            (box->status == TANDEM_BOX_PICKED || box->status == TANDEM_BOX_IN_PROCESS) &&
            strcmp(box->site, to) != 0) {
            snprintf(stale, TANDEM_ERRMSG_SIZE,
                     "plan is stale: box %s of job %s is at site %s, not %s; %s", box->id, job->id,
                     box->site, to, STALE_SUFFIX);
        }
        if (box != NULL) {
            tandem__box_record__free_unpacked(box, NULL);
        }
    }
    return 0;
}

/* A site a move leaves or joins: its capacity must be unchanged since the plan, and the
 * destination must still take work (capacity > 0, not a witness, not under BCP). */
static int move_site_check(const struct tandem_apply_ctx *ctx, const struct tandem_site_table *t,
                           const char *name, bool destination, uint64_t index, char *stale)
{
    Tandem__CapacityRecord *record = NULL;
    const struct tandem_site *site = tandem_site_table_find(t, name);
    int rv = tandem_capacity_get(ctx->store, ctx->txn, name, &record);
    if (rv != 0) {
        return rv;
    }
    if (record != NULL && record->mod_index > index) {
        snprintf(stale, TANDEM_ERRMSG_SIZE,
                 "plan is stale: the capacity of site %s changed since index %llu; %s", name,
                 (unsigned long long)index, STALE_SUFFIX);
    } else if (destination && site != NULL && site->state != TANDEM_SITE_ACTIVE) {
        snprintf(stale, TANDEM_ERRMSG_SIZE, "plan is stale: site %s is under BCP (%s); %s", name,
                 tandem_site_state_name(site->state), STALE_SUFFIX);
    } else if (destination &&
               (record == NULL || record->capacity == 0 || site_is_witness(t, name))) {
        snprintf(stale, TANDEM_ERRMSG_SIZE, "plan is stale: site %s has no capacity; %s", name,
                 STALE_SUFFIX);
    }
    if (record != NULL) {
        tandem__capacity_record__free_unpacked(record, NULL);
    }
    return 0;
}

/* Reads the job of move m into *job and checks it and its sites; stale[0] != 0 refuses. */
static int move_check(const struct tandem_apply_ctx *ctx, const Tandem__RebalanceApply *a,
                      const Tandem__RebalanceMove *m, const struct tandem_site_table *t,
                      Tandem__JobRecord **job, char *stale)
{
    int rv = tandem_job_get(ctx->store, ctx->txn, m->job, job);
    if (rv != 0) {
        return rv;
    }
    const Tandem__JobRecord *j = *job;
    if (j == NULL || j->mod_index > a->index || j->status != TANDEM_JOB_QUEUED || j->pinned ||
        strcmp(j->site, m->from) != 0) {
        snprintf(stale, TANDEM_ERRMSG_SIZE, "plan is stale: job %s changed since index %llu; %s",
                 m->job, (unsigned long long)a->index, STALE_SUFFIX);
        return 0;
    }
    rv = move_site_check(ctx, t, m->from, false, a->index, stale);
    if (rv == 0 && stale[0] == '\0') {
        rv = move_site_check(ctx, t, m->to, true, a->index, stale);
    }
    if (rv == 0 && stale[0] == '\0') {
        rv = move_boxes_check(ctx, j, m->to, stale);
    }
    return rv;
}

static int move_write(const struct tandem_apply_ctx *ctx, const Tandem__RebalanceApply *a,
                      const Tandem__RebalanceMove *m, const Tandem__JobRecord *job)
{
    Tandem__JobRecord next = *job;
    next.site = m->to;
    next.updated_ms = ctx->now_ms;
    next.mod_index = ctx->index;
    int rv = tandem_job_write(ctx->store, ctx->txn, job, &next);
    if (rv == 0) {
        rv = tandem_trace_append(ctx, a->actor, "job", job->id, "rebalance",
                                 json_pack("{s:s,s:s,s:s,s:s}", "from", m->from, "to", m->to,
                                           "plan", a->plan_id, "objective", a->objective));
    }
    return rv;
}

/* Checks every move, then (only if none is stale) writes them all. */
static int plan_check_write(const struct tandem_apply_ctx *ctx, const Tandem__RebalanceApply *a,
                            Tandem__JobRecord **jobs, char *stale)
{
    struct tandem_site_table *table = malloc(sizeof *table);
    if (table == NULL) {
        return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "out of memory");
    }
    int rv = tandem_sites_load(ctx->store, ctx->txn, table);
    for (size_t i = 0; i < a->n_moves && rv == 0 && stale[0] == '\0'; i++) {
        rv = move_check(ctx, a, a->moves[i], table, &jobs[i], stale);
    }
    free(table);
    for (size_t i = 0; i < a->n_moves && rv == 0 && stale[0] == '\0'; i++) {
        rv = move_write(ctx, a, a->moves[i], jobs[i]);
    }
    return rv;
}

int tandem_rebalance_apply(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                           struct tandem_result *result)
{
    const Tandem__RebalanceApply *a = command->rebalance_apply;
    char errmsg[TANDEM_ERRMSG_SIZE] = "", stale[TANDEM_ERRMSG_SIZE] = "";
    bool nomem = false;
    if (plan_shape_check(ctx, a, errmsg) != 0 || plan_duplicates_check(a, errmsg, &nomem) != 0) {
        if (nomem) {
            return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "out of memory");
        }
        tandem_result_error(result, 400, "%s", errmsg);
        return 0;
    }
    Tandem__JobRecord **jobs = calloc(a->n_moves > 0 ? a->n_moves : 1, sizeof *jobs);
    if (jobs == NULL) {
        return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "out of memory");
    }
    int rv = plan_check_write(ctx, a, jobs, stale);
    for (size_t i = 0; i < a->n_moves; i++) {
        if (jobs[i] != NULL) {
            tandem__job_record__free_unpacked(jobs[i], NULL);
        }
    }
    free(jobs);
    if (rv == 0 && stale[0] != '\0') {
        tandem_result_error(result, 409, "%s", stale);
    } else if (rv == 0) {
        tandem_result_jansson(result, 200,
                              json_pack("{s:s,s:s,s:I,s:I,s:I}", "id", a->plan_id, "objective",
                                        a->objective, "index", (json_int_t)a->index,
                                        "applied_index", (json_int_t)ctx->index, "moved",
                                        (json_int_t)a->n_moves));
    }
    return rv;
}
