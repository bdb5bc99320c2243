/* Boxes from the handover ledger: their field rules, JSON view and listing, and the apply
 * functions of box_checkin and box_action (the status machine and the record layout are tables
 * in records.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/apply.h"
#include "replication/domain/domain.h"
#include "replication/domain/records.h"
#include "storage/error.h"

#define ROW_ERROR_LEN TANDEM_ERRMSG_SIZE /* a row's refusal: filled by the field rules too */

int tandem_box_fields_check(const Tandem__BoxRecord *box, char *errmsg)
{
    bool ok = domain_id_rule("id", box->id, errmsg) &&
              domain_text_rule("ledger", box->ledger, false, errmsg) &&
              domain_text_rule("client", box->client, false, errmsg) &&
              domain_site_rule(box->site, errmsg) &&
              domain_text_rule("shelf", box->shelf, true, errmsg) &&
              domain_rule(box->n_volumes <= TANDEM_BOX_VOLUMES_MAX, errmsg,
                          "a box holds at most %d volumes", TANDEM_BOX_VOLUMES_MAX) &&
              domain_rule(!box->has_retain_until || box->retain_until_ms >= 0, errmsg,
                          "retain_until must not be before 1970");
    for (size_t i = 0; ok && i < box->n_volumes; i++) {
        char name[sizeof "volume " + 20];
        snprintf(name, sizeof name, "volume %zu", i);
        ok = domain_id_rule(name, box->volumes[i], errmsg);
    }
    return ok ? 0 : -1;
}

/* ---- records and indexes ---- */

/* Written by hand, not through jansson: listings spend their time here. */
void tandem_box_text(struct tandem_text *t, const Tandem__BoxRecord *box)
{
    domain_text_field(t, "{\"id\":", box->id);
    domain_text_field(t, ",\"ledger\":", box->ledger);
    domain_text_field(t, ",\"client\":", box->client);
    domain_text_strings(t, ",\"volumes\":", box->volumes, box->n_volumes);
    domain_text_field(t, ",\"site\":", box->site);
    box->shelf[0] != '\0' ? domain_text_field(t, ",\"shelf\":", box->shelf)
                          : tandem_text_cstr(t, ",\"shelf\":null");
    domain_text_field(t, ",\"status\":", tandem_box_status_name(box->status));
    box->job[0] != '\0' ? domain_text_field(t, ",\"job\":", box->job)
                        : tandem_text_cstr(t, ",\"job\":null");
    tandem_text_cstr(t, ",\"retain_until\":");
    box->has_retain_until ? tandem_text_time(t, box->retain_until_ms) : tandem_text_cstr(t, "null");
    domain_text_stamps(t, box->created_ms, box->updated_ms, box->create_index, box->mod_index);
    tandem_text_raw(t, "}", 1);
}

json_t *tandem_box_json(const Tandem__BoxRecord *box)
{
    struct tandem_text t;
    tandem_text_init(&t, TANDEM_LIST_BYTES_MAX);
    tandem_box_text(&t, box);
    return domain_text_json(&t);
}

/* ---- listing ---- */

static void box_list_text(struct tandem_text *t, const ProtobufCMessage *record)
{
    tandem_box_text(t, (const Tandem__BoxRecord *)record);
}

int tandem_box_list(struct tandem_store *s, MDB_txn *txn, const struct tandem_box_query *q,
                    struct tandem_text *out, char next[TANDEM_DOMAIN_ID_LEN_MAX + 1])
{
    /* The job index is the most selective. */
    const struct domain_list_query list = {
        {{TANDEM_IDX_JOB, q->job}, {TANDEM_IDX_SITE, q->site}, {TANDEM_IDX_STATUS, q->status}},
        3,
        q->after,
        q->limit,
        box_list_text};
    return domain_record_list(&domain_box_kind, s, txn, &list, out, next);
}

/* ---- apply: check-in ---- */

struct row_id {
    const char *id;
    size_t row;
};

static int row_id_compare(const void *a, const void *b)
{
    const struct row_id *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->row < y->row ? -1 : x->row > y->row);
}

/* first[i] = the earlier row with the same id as row i, or i itself. Returns -1 when out of
 * memory. */
static int duplicates_find(Tandem__BoxRecord *const *boxes, size_t n, size_t *first)
{
    struct row_id *sorted = malloc((n > 0 ? n : 1) * sizeof *sorted);
    if (sorted == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        sorted[i] = (struct row_id){boxes[i]->id, i};
        first[i] = i;
    }
    qsort(sorted, n, sizeof *sorted, row_id_compare);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i].id, sorted[i - 1].id) == 0) {
            first[sorted[i].row] = first[sorted[i - 1].row];
        }
    }
    free(sorted);
    return 0;
}

/* Checks one row; returns 0 (*error empty), or an LMDB error. *status is the HTTP status. */
static int checkin_row_check(const struct tandem_apply_ctx *ctx, const Tandem__BoxRecord *box,
                             size_t row, size_t first, char error[ROW_ERROR_LEN], int *status)
{
    Tandem__BoxRecord *existing = NULL;
    error[0] = '\0';
    if (tandem_box_fields_check(box, error) != 0) {
        *status = 400;
        return 0;
    }
    if (first != row) {
        snprintf(error, ROW_ERROR_LEN, "box %s appears again (first in row %zu)", box->id, first);
        *status = *status == 400 ? 400 : 409;
        return 0;
    }
    int rv = tandem_box_get(ctx->store, ctx->txn, box->id, &existing);
    if (rv == 0 && existing != NULL) {
        snprintf(error, ROW_ERROR_LEN, "box %s already exists (%s)", box->id,
                 tandem_box_status_name(existing->status));
        *status = *status == 400 ? 400 : 409;
        tandem__box_record__free_unpacked(existing, NULL);
    }
    return rv;
}

/* Validates every row; *refused when result says why nothing was written. */
static int checkin_validate(const struct tandem_apply_ctx *ctx, const Tandem__BoxCheckin *c,
                            struct tandem_result *result, bool *refused)
{
    char error[ROW_ERROR_LEN];
    size_t *first = malloc(c->n_boxes * sizeof *first), errors = 0;
    json_t *rows = json_array();
    int status = 0, rv = 0;
    if (first == NULL || rows == NULL || duplicates_find(c->boxes, c->n_boxes, first) != 0) {
        free(first);
        json_decref(rows);
        return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "check-in: out of memory");
    }
    for (size_t i = 0; i < c->n_boxes && rv == 0; i++) {
        rv = checkin_row_check(ctx, c->boxes[i], i, first[i], error, &status);
        if (rv == 0 && error[0] != '\0' && errors++ < TANDEM_BULK_ROW_ERRORS_MAX) {
            json_array_append_new(rows,
                                  json_pack("{s:I,s:s}", "row", (json_int_t)i, "error", error));
        }
    }
    *refused = rv == 0 && errors > 0;
    if (*refused && !c->bulk) {
        tandem_result_error(result, status, "%s", error);
    } else if (*refused) {
        char message[TANDEM_ERRMSG_SIZE];
        snprintf(message, sizeof message,
                 "bulk check-in refused: %zu of %zu rows failed; nothing was checked in", errors,
                 c->n_boxes);
        tandem_result_jansson(result, status,
                              json_pack("{s:s,s:O,s:I}", "error", message, "rows", rows, "errors",
                                        (json_int_t)errors));
    }
    json_decref(rows);
    free(first);
    return rv;
}

static int checkin_write(const struct tandem_apply_ctx *ctx, const Tandem__Actor *actor,
                         const Tandem__BoxRecord *row, Tandem__BoxRecord *box)
{
    *box = *row; /* borrows the command's strings */
    box->status = row->shelf[0] != '\0' ? TANDEM_BOX_STORED : TANDEM_BOX_RECEIVED;
    box->job = "";
    box->created_ms = box->updated_ms = ctx->now_ms;
    box->create_index = box->mod_index = ctx->index;
    int rv = tandem_box_write(ctx->store, ctx->txn, NULL, box);
    if (rv == 0) {
        rv = tandem_trace_append(ctx, actor, "box", box->id, "checkin",
                                 json_pack("{s:s,s:s,s:s,s:s,s:I}", "ledger", box->ledger, "site",
                                           box->site, "shelf", box->shelf, "status",
                                           tandem_box_status_name(box->status), "volumes",
                                           (json_int_t)box->n_volumes));
    }
    return rv;
}

int tandem_box_apply_checkin(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                             struct tandem_result *result)
{
    const Tandem__BoxCheckin *c = command->box_checkin;
    char errmsg[TANDEM_ERRMSG_SIZE];
    bool refused = false;
    if (c == NULL || tandem_actor_check(c->actor, errmsg) != 0 || c->n_boxes == 0 ||
        c->n_boxes > (c->bulk ? TANDEM_BULK_CHECKIN_ROWS_MAX : 1)) {
        tandem_result_error(result, 400, "%s",
                            c == NULL || c->actor == NULL       ? "empty check-in"
                            : c->n_boxes == 0 || c->n_boxes > 1 ? "a check-in needs 1 box, or 1 to "
                                                                  "10000 rows in bulk"
                                                                : errmsg);
        return 0;
    }
    for (size_t i = 0; i < c->n_boxes; i++) {
        if (tandem_actor_site_refused(c->actor, "box", c->boxes[i]->id, c->boxes[i]->site,
                                      result)) {
            return 0;
        }
    }
    int rv = checkin_validate(ctx, c, result, &refused);
    if (rv != 0 || refused) {
        return rv;
    }
    Tandem__BoxRecord box;
    for (size_t i = 0; i < c->n_boxes && rv == 0; i++) {
        rv = checkin_write(ctx, c->actor, c->boxes[i], &box);
    }
    if (rv == 0) {
        tandem_result_jansson(result, 201,
                              c->bulk ? json_pack("{s:I}", "checked_in", (json_int_t)c->n_boxes)
                                      : tandem_box_json(&box));
    }
    return rv;
}

/* ---- apply: actions ---- */

/* The typed views of a change of a box (records.h). */
#define OLD_BOX(c)    ((const Tandem__BoxRecord *)(c)->old)
#define BOX_ACTION(c) ((const Tandem__BoxAction *)(c)->command)

static bool job_has_box(const Tandem__JobRecord *job, const char *box)
{
    for (size_t i = 0; i < job->n_boxes; i++) {
        if (strcmp(job->boxes[i], box) == 0) {
            return true;
        }
    }
    return false;
}

/* Checks the pick rules against job; refuses c when one fails. */
static void pick_guard(struct domain_change *c, const Tandem__JobRecord *job)
{
    const char *job_id = BOX_ACTION(c)->job;
    if (job == NULL) {
        domain_refuse(c, 404, "job not found: %s", job_id);
    } else if ((TANDEM_JOB_OPEN & (1u << job->status)) == 0) {
        domain_refuse(c, 409, "job %s is %s: boxes are picked for open jobs only", job_id,
                      tandem_job_status_name(job->status));
    } else if (strcmp(job->client, OLD_BOX(c)->client) != 0) {
        domain_refuse(c, 409, "box %s belongs to client %s, job %s to client %s", OLD_BOX(c)->id,
                      OLD_BOX(c)->client, job_id, job->client);
    } else if (c->actor->site_bound && strcmp(c->actor->home_site, job->site) != 0) {
        /* Picking changes the job too: the own-site rule holds for it as for the box. */
        domain_refuse(c, 403,
                      "%s rule: operator %s of site %s acts only at its own site, and job "
                      "%s is at site %s",
                      TANDEM_OWN_SITE_RULE, c->actor->user, c->actor->home_site, job_id, job->site);
    } else if (!job_has_box(job, OLD_BOX(c)->id) && job->n_boxes >= TANDEM_JOB_BOXES_MAX) {
        domain_refuse(c, 409, "job %s already has %d boxes", job_id, TANDEM_JOB_BOXES_MAX);
    }
}

/* Appends the box to the job's list and records the link on the job's trace. */
static int pick_link_job(struct domain_change *c, const Tandem__JobRecord *job)
{
    const struct tandem_apply_ctx *ctx = c->ctx;
    Tandem__JobRecord next = *job;
    char **boxes = malloc((job->n_boxes + 1) * sizeof *boxes);
    if (boxes == NULL) {
        return tandem_error_set(ctx->store->errmsg, TANDEM_NOMEM, "pick: out of memory");
    }
    if (job->n_boxes > 0) {
        memcpy(boxes, job->boxes, job->n_boxes * sizeof *boxes);
    }
    boxes[job->n_boxes] = OLD_BOX(c)->id;
    next.boxes = boxes;
    next.n_boxes = job->n_boxes + 1;
    next.updated_ms = ctx->now_ms;
    next.mod_index = ctx->index;
    int rv = tandem_job_write(ctx->store, ctx->txn, job, &next);
    free(boxes);
    if (rv == 0) {
        rv = tandem_trace_append(ctx, BOX_ACTION(c)->actor, "job", job->id, "link_box",
                                 json_pack("{s:s}", "box", OLD_BOX(c)->id));
    }
    return rv;
}

static int box_pick(struct domain_change *c)
{
    Tandem__JobRecord *job = NULL;
    if (!tandem_domain_id_ok(BOX_ACTION(c)->job)) {
        domain_refuse(c, 400, "pick needs the id of the job it is for");
        return 0;
    }
    int rv = tandem_job_get(c->ctx->store, c->ctx->txn, BOX_ACTION(c)->job, &job);
    if (rv != 0) {
        return rv;
    }
    pick_guard(c, job);
    if (c->refuse_status == 0) {
        c->next.box.status = c->to;
        c->next.box.job = BOX_ACTION(c)->job;
        c->details = json_pack("{s:s,s:s}", "job", job->id, "from",
                               tandem_box_status_name(OLD_BOX(c)->status));
        c->changed = true;
        rv = job_has_box(job, OLD_BOX(c)->id) ? 0 : pick_link_job(c, job);
    }
    tandem__job_record__free_unpacked(job, NULL);
    return rv;
}

static int box_return(struct domain_change *c)
{
    c->next.box.status = c->to;
    c->details = json_pack("{s:s,s:s}", "job", OLD_BOX(c)->job, "from",
                           tandem_box_status_name(OLD_BOX(c)->status));
    c->changed = true;
    return 0;
}

static int box_move(struct domain_change *c)
{
    const Tandem__BoxAction *a = BOX_ACTION(c);
    if (!tandem_domain_site_ok(a->site) || !tandem_domain_text_ok(a->shelf, false)) {
        domain_refuse(c, 400, "move needs a site label and a shelf of 1 to %d printable bytes",
                      TANDEM_DOMAIN_TEXT_LEN_MAX);
        return 0;
    }
    c->next.box.status = c->to;
    c->next.box.site = a->site;
    c->next.box.shelf = a->shelf;
    c->changed = OLD_BOX(c)->status != c->to || strcmp(OLD_BOX(c)->site, a->site) != 0 ||
                 strcmp(OLD_BOX(c)->shelf, a->shelf) != 0;
    c->details = json_pack("{s:s,s:s,s:s,s:s,s:s}", "from_site", OLD_BOX(c)->site, "to_site",
                           a->site, "from_shelf", OLD_BOX(c)->shelf, "to_shelf", a->shelf, "from",
                           tandem_box_status_name(OLD_BOX(c)->status));
    return 0;
}

/* Writes the disposal record of the box being disposed of. */
static int dispose_record(struct domain_change *c, uint64_t *seq)
{
    Tandem__DisposalRecord d = TANDEM__DISPOSAL_RECORD__INIT;
    const Tandem__BoxRecord *box = OLD_BOX(c);
    d.kind = "box";
    d.box = box->id;
    d.ledger = box->ledger;
    d.client = box->client;
    d.n_volumes = box->n_volumes;
    d.volumes = box->volumes;
    d.job = box->job;
    d.actor = BOX_ACTION(c)->actor->user;
    d.site = BOX_ACTION(c)->actor->site;
    d.time_ms = c->ctx->now_ms;
    d.index = c->ctx->index;
    int rv = tandem_disposal_append(c->ctx, &d);
    *seq = d.seq;
    return rv;
}

static int box_dispose(struct domain_change *c)
{
    const Tandem__BoxRecord *box = OLD_BOX(c);
    Tandem__JobRecord *job = NULL;
    uint64_t seq = 0;
    int rv = box->job[0] != '\0' ? tandem_job_get(c->ctx->store, c->ctx->txn, box->job, &job) : 0;
    if (rv != 0) {
        return rv;
    }
    char until[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(box->retain_until_ms, until);
    if (job != NULL && (TANDEM_JOB_OPEN & (1u << job->status)) != 0) {
        domain_refuse(c, 409, "box %s is linked to open job %s (%s): complete or cancel it first",
                      box->id, job->id, tandem_job_status_name(job->status));
    } else if (box->has_retain_until && c->ctx->now_ms < box->retain_until_ms) {
        domain_refuse(c, 409, "box %s must be retained until %s", box->id, until);
    } else {
        rv = dispose_record(c, &seq);
        c->next.box.status = c->to;
        c->details = json_pack("{s:I,s:s}", "disposal", (json_int_t)seq, "from",
                               tandem_box_status_name(box->status));
        c->changed = true;
    }
    tandem__job_record__free_unpacked(job, NULL);
    return rv;
}

static int box_process_refused(struct domain_change *c)
{
    domain_refuse(c, 400, "boxes go into process when their job advances, not by request");
    return 0;
}

/* Indexed by enum tandem_box_action. */
static const domain_change_fn box_handlers[TANDEM_BOX_ACTION_COUNT] = {
    [TANDEM_BOX_ACTION_PICK] = box_pick,       [TANDEM_BOX_ACTION_PROCESS] = box_process_refused,
    [TANDEM_BOX_ACTION_RETURN] = box_return,   [TANDEM_BOX_ACTION_MOVE] = box_move,
    [TANDEM_BOX_ACTION_DISPOSE] = box_dispose,
};

static int box_transition(struct domain_change *c)
{
    return tandem_box_transition(OLD_BOX(c)->status, c->action, &c->to, c->refuse_errmsg);
}

static json_t *box_result_json(const ProtobufCMessage *record)
{
    return tandem_box_json((const Tandem__BoxRecord *)record);
}

static const struct domain_actions box_actions = {&domain_box_kind,       TANDEM_BOX_ACTION_COUNT,
                                                  tandem_box_action_name, box_transition,
                                                  box_handlers,           NULL,
                                                  box_result_json};

int tandem_box_apply_action(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                            struct tandem_result *result)
{
    return domain_apply_action(&box_actions, ctx, (const ProtobufCMessage *)command->box_action,
                               result);
}

/* ---- apply: boxes follow their job ---- */

int tandem_box_apply_process(const struct tandem_apply_ctx *ctx, const Tandem__Actor *actor,
                             const Tandem__JobRecord *job)
{
    int rv = 0;
    for (size_t i = 0; i < job->n_boxes && rv == 0; i++) {
        Tandem__BoxRecord *box = NULL;
        rv = tandem_box_get(ctx->store, ctx->txn, job->boxes[i], &box);
        if (rv == 0 && box != NULL && box->status == TANDEM_BOX_PICKED &&
            strcmp(box->job, job->id) == 0) {
            Tandem__BoxRecord next = *box;
            next.status = TANDEM_BOX_IN_PROCESS;
            next.updated_ms = ctx->now_ms;
            next.mod_index = ctx->index;
            rv = tandem_box_write(ctx->store, ctx->txn, box, &next);
            if (rv == 0) {
                rv = tandem_trace_append(
                    ctx, actor, "box", box->id, tandem_box_action_name(TANDEM_BOX_ACTION_PROCESS),
                    json_pack("{s:s,s:s}", "job", job->id, "stage", job->stages[job->stage]));
            }
        }
        tandem__box_record__free_unpacked(box, NULL);
    }
    return rv;
}
