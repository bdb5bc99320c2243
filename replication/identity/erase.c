/* The personal-data erase command and the choice of jobs past retention
 * (replication/identity/erase.h). */
#include "replication/identity/erase.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "replication/domain/domain.h"
#include "replication/identity/pdata.h"
#include "storage/error.h"

static const char *const erased_fields[] = {"individual_number"};

/* ---- choosing (read-only, on the proposing node) ---- */

struct erase_choice {
    int64_t cutoff_ms;
    char (*ids)[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    size_t n;
    bool full;
};

static int erase_choice_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct erase_choice *c = arg;
    if (job->individual_number.len == 0 || job->updated_ms > c->cutoff_ms) {
        return 0;
    }
    if (c->n == TANDEM_PDATA_ERASE_BATCH) {
        c->full = true;
        return 1; /* stops the walk */
    }
    snprintf(c->ids[c->n++], TANDEM_DOMAIN_ID_LEN_MAX + 1, "%s", id);
    return 0;
}

int tandem_pdata_erase_choose(struct tandem_store *s, MDB_txn *txn, int64_t cutoff_ms,
                              char (*ids)[TANDEM_DOMAIN_ID_LEN_MAX + 1], size_t *n, bool *more)
{
    static const uint32_t finished[] = {TANDEM_JOB_DONE, TANDEM_JOB_CANCELLED};
    struct erase_choice c = {.cutoff_ms = cutoff_ms, .ids = ids};
    bool exhausted = true, all = true;
    int rv = 0;
    for (size_t i = 0; i < sizeof finished / sizeof finished[0] && rv == 0 && !c.full; i++) {
        rv = tandem_jobs_status_walk(s, txn, finished[i], "", TANDEM_PDATA_ERASE_SCAN_MAX,
                                     erase_choice_visit, &c, &exhausted);
        all = all && exhausted;
    }
    *n = c.n;
    *more = c.full || !all;
    return rv == 1 ? 0 : rv;
}

/* ---- apply ---- */

static int erase_check(const struct tandem_apply_ctx *ctx, const Tandem__PersonalDataErase *e,
                       char *errmsg)
{
    if (e == NULL) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "empty erase command");
        return -1;
    }
    if (tandem_actor_check(e->actor, errmsg) != 0) {
        return -1;
    }
    if (e->n_jobs == 0 || e->n_jobs > TANDEM_PDATA_ERASE_BATCH) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "an erase names 1 to %d jobs",
                 TANDEM_PDATA_ERASE_BATCH);
        return -1;
    }
    for (size_t i = 0; i < e->n_jobs; i++) {
        if (!tandem_domain_id_ok(e->jobs[i])) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "job id must be 1 to %d of [A-Za-z0-9._:-]",
                     TANDEM_DOMAIN_ID_LEN_MAX);
            return -1;
        }
    }
    if (!e->by_policy) {
        return 0;
    }
    /* Nothing inside the retention period goes by policy, whatever the proposer computed. */
    if (e->retention_days < TANDEM_PDATA_RETENTION_DAYS_MIN ||
        e->retention_days > TANDEM_PDATA_RETENTION_DAYS_MAX ||
        e->cutoff_ms > ctx->now_ms - (int64_t)e->retention_days * TANDEM_MS_PER_DAY) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "cutoff is inside the personal-data retention period (retention_days %d..%d)",
                 TANDEM_PDATA_RETENTION_DAYS_MIN, TANDEM_PDATA_RETENTION_DAYS_MAX);
        return -1;
    }
    return 0;
}

/* Whether the stored job is erased now: it holds personal data and, by policy, is finished at
 * or before the cutoff (a job reopened or updated since it was chosen keeps its data). */
static bool erase_due(const Tandem__PersonalDataErase *e, const Tandem__JobRecord *job)
{
    if (job == NULL || job->individual_number.len == 0) {
        return false;
    }
    return !e->by_policy ||
           ((job->status == TANDEM_JOB_DONE || job->status == TANDEM_JOB_CANCELLED) &&
            job->updated_ms <= e->cutoff_ms);
}

/* Clears one job's fields and writes its deletion record and trace event. */
static int erase_job(const struct tandem_apply_ctx *ctx, const Tandem__PersonalDataErase *e,
                     const Tandem__JobRecord *old, json_t *disposals)
{
    Tandem__JobRecord next = *old;
    Tandem__DisposalRecord d = TANDEM__DISPOSAL_RECORD__INIT;
    next.individual_number.data = NULL;
    next.individual_number.len = 0;
    next.mod_index = ctx->index;
    int rv = tandem_job_write(ctx->store, ctx->txn, old, &next);
    d.kind = TANDEM_PDATA_DISPOSAL_KIND;
    d.job = old->id;
    d.client = old->client;
    d.fields = (char **)erased_fields;
    d.n_fields = sizeof erased_fields / sizeof erased_fields[0];
    d.by_policy = e->by_policy;
    d.actor = e->actor->user;
    d.site = e->actor->site;
    d.time_ms = ctx->now_ms;
    d.index = ctx->index;
    d.cutoff_ms = e->by_policy ? e->cutoff_ms : 0;
    d.retention_days = e->by_policy ? e->retention_days : 0;
    if (rv == 0) {
        rv = tandem_disposal_append(ctx, &d);
    }
    if (rv == 0) {
        json_t *details = json_pack("{s:[s],s:b,s:I}", "fields", erased_fields[0], "by_policy",
                                    e->by_policy, "disposal", (json_int_t)d.seq);
        rv = tandem_trace_append(ctx, e->actor, "job", old->id, "personal_data_erase", details);
    }
    if (rv == 0) {
        json_array_append_new(disposals, tandem_disposal_json(&d));
    }
    return rv;
}

int tandem_pdata_apply_erase(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__PersonalDataErase *e = command->personal_data_erase;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (erase_check(ctx, e, errmsg) != 0) {
        tandem_result_error(result, 400, "%s", errmsg);
        return 0;
    }
    json_t *disposals = json_array();
    int rv = 0;
    for (size_t i = 0; i < e->n_jobs && rv == 0; i++) {
        Tandem__JobRecord *job = NULL;
        rv = tandem_job_get(ctx->store, ctx->txn, e->jobs[i], &job);
        if (rv == 0 && erase_due(e, job)) {
            rv = erase_job(ctx, e, job, disposals);
        }
        if (job != NULL) {
            tandem__job_record__free_unpacked(job, NULL);
        }
    }
    if (rv != 0) {
        json_decref(disposals);
        return rv;
    }
    tandem_result_jansson(result, 200,
                          json_pack("{s:I,s:o}", "erased", (json_int_t)json_array_size(disposals),
                                    "disposals", disposals));
    return 0;
}

/* ---- key rotation ---- */

struct pdata_walk {
    int (*visit)(void *arg, const char *id, const Tandem__JobRecord *job);
    void *arg;
};

static int pdata_walk_visit(void *arg, const char *id, const Tandem__JobRecord *job)
{
    struct pdata_walk *w = arg;
    return job->individual_number.len == 0 ? 0 : w->visit(w->arg, id, job);
}

int tandem_pdata_jobs_walk(struct tandem_store *s, MDB_txn *txn,
                           int (*visit)(void *arg, const char *id, const Tandem__JobRecord *job),
                           void *arg)
{
    struct pdata_walk w = {visit, arg};
    bool exhausted = true;
    int rv = 0;
    for (uint32_t status = 0; status < TANDEM_JOB_STATUS_COUNT && rv == 0; status++) {
        rv = tandem_jobs_status_walk(s, txn, status, "", TANDEM_PDATA_ERASE_SCAN_MAX,
                                     pdata_walk_visit, &w, &exhausted);
    }
    return rv;
}

static int reseal_check(const Tandem__PersonalDataReseal *c, char *errmsg)
{
    uint32_t key_id = 0;
    if (c == NULL || tandem_actor_check(c->actor, errmsg) != 0) {
        if (c == NULL) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "empty reseal command");
        }
        return -1;
    }
    if (c->n_values == 0 || c->n_values > TANDEM_PDATA_ERASE_BATCH) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "a reseal holds 1 to %d values",
                 TANDEM_PDATA_ERASE_BATCH);
        return -1;
    }
    for (size_t i = 0; i < c->n_values; i++) {
        const Tandem__PersonalDataResealed *v = c->values[i];
        if (!tandem_domain_id_ok(v->job) ||
            !tandem_pdata_is_sealed(v->sealed.data, v->sealed.len, &key_id) ||
            v->sealed.len > TANDEM_INDIVIDUAL_STORED_LEN_MAX) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "reseal value %zu is not a sealed job value", i);
            return -1;
        }
    }
    return 0;
}

int tandem_pdata_apply_reseal(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                              struct tandem_result *result)
{
    const Tandem__PersonalDataReseal *c = command->personal_data_reseal;
    char errmsg[TANDEM_ERRMSG_SIZE];
    size_t done = 0, skipped = 0;
    if (reseal_check(c, errmsg) != 0) {
        tandem_result_error(result, 400, "%s", errmsg);
        return 0;
    }
    int rv = 0;
    for (size_t i = 0; i < c->n_values && rv == 0; i++) {
        Tandem__JobRecord *job = NULL;
        rv = tandem_job_get(ctx->store, ctx->txn, c->values[i]->job, &job);
        /* compare-and-set: a job changed since the value was re-sealed keeps what it has */
        if (rv == 0 && job != NULL && job->mod_index == c->values[i]->expected_mod_index &&
            job->individual_number.len > 0) {
            Tandem__JobRecord next = *job;
            next.individual_number = c->values[i]->sealed; /* same content: mod_index stays */
            rv = tandem_job_write(ctx->store, ctx->txn, job, &next);
            done++;
        } else {
            skipped++;
        }
        if (job != NULL) {
            tandem__job_record__free_unpacked(job, NULL);
        }
    }
    if (rv == 0) {
        tandem_result_jansson(
            result, 200,
            json_pack("{s:I,s:I}", "resealed", (json_int_t)done, "skipped", (json_int_t)skipped));
    }
    return rv;
}
