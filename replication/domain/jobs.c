/* Jobs: their field rules, JSON view and listing, and the apply functions of job_create and
 * job_action (the status machine and the record layout are tables in records.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/apply.h"
#include "replication/domain/domain.h"
#include "replication/domain/records.h"
#include "storage/error.h"

#define JOB_GEN_KEY "job_gen" /* domain_meta: raft index and count of the last generated id */

const char *const tandem_job_default_stages[TANDEM_JOB_DEFAULT_STAGES_COUNT] = {
    "receive", "scan", "enter", "verify", "ship"};

bool tandem_job_stage_name_ok(const char *stage)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyz0123456789_-";
    size_t len = stage == NULL ? 0 : strlen(stage);
    return len > 0 && len <= TANDEM_JOB_STAGE_LEN_MAX && strspn(stage, allowed) == len;
}

static int stages_check(char *const *stages, size_t n, char *errmsg)
{
    if (n > TANDEM_JOB_STAGES_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "a job has at most %d stages", TANDEM_JOB_STAGES_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!tandem_job_stage_name_ok(stages[i])) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "stage %zu must be 1 to %d of [a-z0-9_-]", i,
                     TANDEM_JOB_STAGE_LEN_MAX);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(stages[i], stages[k]) == 0) {
                snprintf(errmsg, TANDEM_ERRMSG_SIZE, "stage %s appears twice", stages[i]);
                return -1;
            }
        }
    }
    return 0;
}

int tandem_job_fields_check(const Tandem__JobRecord *job, char *errmsg)
{
    bool ok =
        (job->id[0] == '\0' || domain_id_rule("id", job->id, errmsg)) &&
        domain_text_rule("client", job->client, false, errmsg) &&
        domain_text_rule("kind", job->kind, false, errmsg) && domain_site_rule(job->site, errmsg) &&
        domain_rule(job->effort <= TANDEM_JOB_EFFORT_MAX, errmsg,
                    "effort must be 0 to %d work units", TANDEM_JOB_EFFORT_MAX) &&
        domain_rule(job->priority >= -TANDEM_JOB_PRIORITY_ABS_MAX &&
                        job->priority <= TANDEM_JOB_PRIORITY_ABS_MAX,
                    errmsg, "priority must be within +-%d", TANDEM_JOB_PRIORITY_ABS_MAX) &&
        domain_rule(!job->has_due || job->due_ms >= 0, errmsg, "due must not be before 1970") &&
        domain_text_rule("operator", job->operator_, true, errmsg) &&
        domain_rule(job->individual_number.len <= TANDEM_INDIVIDUAL_STORED_LEN_MAX, errmsg,
                    "individual_number is longer than %d bytes", TANDEM_INDIVIDUAL_NUMBER_LEN_MAX);
    return ok ? stages_check(job->stages, job->n_stages, errmsg) : -1;
}

/* ---- records and indexes ---- */

static json_t *strings_json(char *const *strings, size_t n)
{
    json_t *out = json_array();
    for (size_t i = 0; out != NULL && i < n; i++) {
        json_array_append_new(out, json_string(strings[i]));
    }
    return out;
}

/* Written by hand, not through jansson: listings of 100k jobs spend their time here. */
void tandem_job_text(struct tandem_text *t, const Tandem__JobRecord *job, bool personal)
{
    domain_text_field(t, "{\"id\":", job->id);
    domain_text_field(t, ",\"client\":", job->client);
    domain_text_field(t, ",\"kind\":", job->kind);
    domain_text_strings(t, ",\"stages\":", job->stages, job->n_stages);
    domain_text_field(t, ",\"stage\":", tandem_job_stage(job));
    domain_text_field(t, ",\"status\":", tandem_job_status_name(job->status));
    domain_text_field(t, ",\"site\":", job->site);
    tandem_text_cstr(t, ",\"effort\":");
    tandem_text_int(t, (int64_t)job->effort);
    tandem_text_cstr(t, ",\"due\":");
    job->has_due ? tandem_text_time(t, job->due_ms) : tandem_text_cstr(t, "null");
    tandem_text_cstr(t, ",\"priority\":");
    tandem_text_int(t, job->priority);
    domain_text_strings(t, ",\"boxes\":", job->boxes, job->n_boxes);
    job->operator_[0] != '\0' ? domain_text_field(t, ",\"operator\":", job->operator_)
                              : tandem_text_cstr(t, ",\"operator\":null");
    tandem_text_cstr(t, job->pinned ? ",\"pinned\":true" : ",\"pinned\":false");
    domain_text_stamps(t, job->created_ms, job->updated_ms, job->create_index, job->mod_index);
    if (job->status == TANDEM_JOB_ON_HOLD) {
        domain_text_field(t, ",\"held_from\":", tandem_job_status_name(job->held_from));
    }
    if (personal && job->individual_number.len > 0) {
        tandem_text_cstr(t, ",\"individual_number\":");
        tandem_text_string(t, (const char *)job->individual_number.data,
                           job->individual_number.len);
    } else if (personal) {
        tandem_text_cstr(t, ",\"individual_number\":null");
    }
    tandem_text_raw(t, "}", 1);
}

json_t *tandem_job_json(const Tandem__JobRecord *job, bool personal)
{
    struct tandem_text t;
    tandem_text_init(&t, TANDEM_LIST_BYTES_MAX);
    tandem_job_text(&t, job, personal);
    return domain_text_json(&t);
}

/* ---- listing ---- */

static void job_list_text(struct tandem_text *t, const ProtobufCMessage *record)
{
    tandem_job_text(t, (const Tandem__JobRecord *)record, false);
}

int tandem_job_list(struct tandem_store *s, MDB_txn *txn, const struct tandem_job_query *q,
                    struct tandem_text *out, char next[TANDEM_DOMAIN_ID_LEN_MAX + 1])
{
    const struct domain_list_query list = {{{TANDEM_IDX_CLIENT, q->client},
                                            {TANDEM_IDX_STAGE, q->stage},
                                            {TANDEM_IDX_SITE, q->site},
                                            {TANDEM_IDX_STATUS, q->status}},
                                           4,
                                           q->after,
                                           q->limit,
                                           job_list_text};
    return domain_record_list(&domain_job_kind, s, txn, &list, out, next);
}

/* ---- apply: create ---- */

/* "J<index>-<n>": the raft index makes it unique cluster-wide and the same on every replica. */
static int job_generate_id(const struct tandem_apply_ctx *ctx,
                           char id[TANDEM_DOMAIN_ID_LEN_MAX + 1], bool *found)
{
    MDB_dbi dbi = ctx->store->dbi[TANDEM_DB_DOMAIN_META];
    MDB_val k = {.mv_size = strlen(JOB_GEN_KEY), .mv_data = JOB_GEN_KEY}, v;
    uint8_t state[12];
    uint32_t n = 1;
    int rv = mdb_get(ctx->txn, dbi, &k, &v);
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "job id counter");
    }
    if (rv == 0 && v.mv_size == sizeof state && tandem_be64_get(v.mv_data) == ctx->index) {
        memcpy(state, v.mv_data, sizeof state);
        n = ((uint32_t)state[8] << 24 | (uint32_t)state[9] << 16 | (uint32_t)state[10] << 8 |
             state[11]) +
            1;
    }
    *found = false;
    for (unsigned attempt = 0; attempt < TANDEM_JOB_ID_ATTEMPTS_MAX && !*found; attempt++, n++) {
        MDB_val probe_key, probe;
        snprintf(id, TANDEM_DOMAIN_ID_LEN_MAX + 1, "J%llu-%u", (unsigned long long)ctx->index, n);
        probe_key.mv_size = strlen(id);
        probe_key.mv_data = id;
        rv = mdb_get(ctx->txn, ctx->store->dbi[TANDEM_DB_JOBS], &probe_key, &probe);
        if (rv != 0 && rv != MDB_NOTFOUND) {
            return tandem_error_from_mdb(rv, ctx->store->errmsg, "job id probe");
        }
        *found = rv == MDB_NOTFOUND;
    }
    n--;
    tandem_be64_put(state, ctx->index);
    state[8] = (uint8_t)(n >> 24);
    state[9] = (uint8_t)(n >> 16);
    state[10] = (uint8_t)(n >> 8);
    state[11] = (uint8_t)n;
    v.mv_size = sizeof state;
    v.mv_data = state;
    rv = mdb_put(ctx->txn, dbi, &k, &v, 0);
    return rv == 0 ? 0 : tandem_error_from_mdb(rv, ctx->store->errmsg, "job id counter");
}

static json_t *job_create_details(const Tandem__JobRecord *job)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:I}", "client", job->client, "kind", job->kind, "site",
                     job->site, "stages", strings_json(job->stages, job->n_stages), "effort",
                     (json_int_t)job->effort);
}

/* Validates the command and settles the id; *refused is set when result already says why. */
static int job_create_prepare(const struct tandem_apply_ctx *ctx, const Tandem__JobCreate *c,
                              char id[TANDEM_DOMAIN_ID_LEN_MAX + 1], struct tandem_result *result,
                              bool *refused)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    Tandem__JobRecord *existing = NULL;
    bool found = true;
    *refused = true;
    if (c == NULL || c->job == NULL || tandem_actor_check(c->actor, errmsg) != 0 ||
        tandem_job_fields_check(c->job, errmsg) != 0) {
        tandem_result_error(result, 400, "%s", c == NULL || c->job == NULL ? "empty job" : errmsg);
        return 0;
    }
    if (tandem_actor_site_refused(c->actor, "job", c->job->id[0] != '\0' ? c->job->id : "(new)",
                                  c->job->site, result)) {
        return 0;
    }
    int rv = c->job->id[0] == '\0' ? job_generate_id(ctx, id, &found) : 0;
    if (rv != 0) {
        return rv;
    }
    if (!found) {
        tandem_result_error(result, 409, "no free job id at index %llu",
                            (unsigned long long)ctx->index);
        return 0;
    }
    if (c->job->id[0] != '\0') {
        snprintf(id, TANDEM_DOMAIN_ID_LEN_MAX + 1, "%s", c->job->id);
        if ((rv = tandem_job_get(ctx->store, ctx->txn, id, &existing)) != 0) {
            return rv;
        }
    }
    if (existing != NULL) {
        tandem__job_record__free_unpacked(existing, NULL);
        tandem_result_error(result, 409, "job %s already exists", id);
        return 0;
    }
    *refused = false;
    return 0;
}

int tandem_job_apply_create(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                            struct tandem_result *result)
{
    const Tandem__JobCreate *c = command->job_create;
    char id[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    bool refused;
    int rv = job_create_prepare(ctx, c, id, result, &refused);
    if (rv != 0 || refused) {
        return rv;
    }
    /* An invoked site's work has moved away (BCP): new work must not land there either. */
    bool invoked = false;
    if ((rv = ctx->ops->site_invoked(ctx, c->job->site, &invoked)) != 0) {
        return rv;
    }
    if (invoked) {
        tandem_result_error(result, 409,
                            "site %s is invoked (BCP): create the job at a site in service",
                            c->job->site);
        return 0;
    }
    Tandem__JobRecord job = *c->job; /* borrows the command's strings */
    job.id = id;
    if (job.n_stages == 0) {
        job.n_stages = TANDEM_JOB_DEFAULT_STAGES_COUNT;
        job.stages = (char **)tandem_job_default_stages;
    }
    job.stage = 0;
    job.status = TANDEM_JOB_QUEUED;
    job.held_from = TANDEM_JOB_QUEUED;
    job.n_boxes = 0;
    job.boxes = NULL;
    job.created_ms = job.updated_ms = ctx->now_ms;
    job.create_index = job.mod_index = ctx->index;
    rv = tandem_job_write(ctx->store, ctx->txn, NULL, &job);
    if (rv == 0) {
        rv = tandem_trace_append(ctx, c->actor, "job", id, "create", job_create_details(&job));
    }
    if (rv == 0) {
        tandem_result_jansson(result, 201, tandem_job_json(&job, false));
    }
    return rv;
}

/* ---- apply: actions ---- */

/* The typed views of a change of a job (records.h). */
#define OLD_JOB(c)    ((const Tandem__JobRecord *)(c)->old)
#define JOB_ACTION(c) ((const Tandem__JobAction *)(c)->command)

static int job_status_change(struct domain_change *c)
{
    c->details = json_pack("{s:s,s:s}", "from", tandem_job_status_name(OLD_JOB(c)->status), "to",
                           tandem_job_status_name(c->to));
    c->next.job.status = c->to;
    c->changed = true;
    return 0;
}

static int job_advance(struct domain_change *c)
{
    const Tandem__JobRecord *old = OLD_JOB(c);
    if (old->stage + 1 >= old->n_stages) {
        domain_refuse(c, 409, "job %s is at its last stage %s: complete it instead of advancing",
                      old->id, tandem_job_stage(old));
        return 0;
    }
    c->next.job.stage = old->stage + 1;
    c->next.job.status = c->to;
    c->details = json_pack("{s:s,s:s,s:s}", "from", tandem_job_stage(old), "to",
                           old->stages[old->stage + 1], "status", tandem_job_status_name(c->to));
    c->changed = true;
    return 0;
}

static int job_hold(struct domain_change *c)
{
    c->next.job.held_from = OLD_JOB(c)->status;
    return job_status_change(c);
}

static int job_complete(struct domain_change *c)
{
    const Tandem__JobRecord *old = OLD_JOB(c);
    if (old->stage + 1 < old->n_stages) {
        domain_refuse(c, 409, "job %s is at stage %s: complete needs its last stage %s", old->id,
                      tandem_job_stage(old), old->stages[old->n_stages - 1]);
        return 0;
    }
    return job_status_change(c);
}

static int job_pin(struct domain_change *c)
{
    bool pinned = JOB_ACTION(c)->action == TANDEM_JOB_ACTION_PIN;
    c->changed = OLD_JOB(c)->pinned != pinned;
    c->next.job.pinned = pinned;
    c->details = json_object();
    return 0;
}

static int job_operator(struct domain_change *c)
{
    const char *name = JOB_ACTION(c)->operator_;
    if (!tandem_domain_text_ok(name, true)) {
        domain_refuse(c, 400, "operator must be printable text of at most %d bytes",
                      TANDEM_DOMAIN_TEXT_LEN_MAX);
        return 0;
    }
    c->changed = strcmp(OLD_JOB(c)->operator_, name) != 0;
    c->next.job.operator_ = (char *)name;
    c->details = json_pack("{s:s,s:s}", "from", OLD_JOB(c)->operator_, "to", name);
    return 0;
}

/* Indexed by enum tandem_job_action. */
static const domain_change_fn job_handlers[TANDEM_JOB_ACTION_COUNT] = {
    [TANDEM_JOB_ACTION_ADVANCE] = job_advance,
    [TANDEM_JOB_ACTION_HOLD] = job_hold,
    [TANDEM_JOB_ACTION_RESUME] = job_status_change,
    [TANDEM_JOB_ACTION_COMPLETE] = job_complete,
    [TANDEM_JOB_ACTION_CANCEL] = job_status_change,
    [TANDEM_JOB_ACTION_PIN] = job_pin,
    [TANDEM_JOB_ACTION_UNPIN] = job_pin,
    [TANDEM_JOB_ACTION_OPERATOR] = job_operator,
};

static int job_transition(struct domain_change *c)
{
    return tandem_job_transition(OLD_JOB(c)->status, c->action, OLD_JOB(c)->held_from, &c->to,
                                 c->refuse_errmsg);
}

/* Advancing a job moves its picked boxes into process. */
static int job_after(struct domain_change *c)
{
    return c->action == TANDEM_JOB_ACTION_ADVANCE
               ? tandem_box_apply_process(c->ctx, c->actor, &c->next.job)
               : 0;
}

static json_t *job_result_json(const ProtobufCMessage *record)
{
    return tandem_job_json((const Tandem__JobRecord *)record, false);
}

static const struct domain_actions job_actions = {
    &domain_job_kind, TANDEM_JOB_ACTION_COUNT, tandem_job_action_name, job_transition, job_handlers,
    job_after,        job_result_json};

int tandem_job_apply_action(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                            struct tandem_result *result)
{
    return domain_apply_action(&job_actions, ctx, (const ProtobufCMessage *)command->job_action,
                               result);
}
