/* Boxes from the handover ledger: the box transition table, records and their indexes,
 * listings, and the apply functions of box_checkin and box_action. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/commands.h"
#include "replication/domain/domain.h"
#include "storage/error.h"

#define BOX_INDEX_KINDS 3   /* site, status, job (only when linked) */
#define ALLOWED_TEXT    160 /* "pick, move, ..." in a refusal */
#define ROW_ERROR_LEN   256

static const char *const box_status_names[] = {
#define BOX_STATUS_NAME(id, name) name,
    TANDEM_BOX_STATUSES(BOX_STATUS_NAME)
#undef BOX_STATUS_NAME
};

struct box_transition {
    const char *name;
    uint32_t from; /* bit set of statuses */
    uint32_t to;
};

static const struct box_transition box_transitions[] = {
#define BOX_TRANSITION_ROW(id, name, from, to) {name, from, to},
    TANDEM_BOX_TRANSITIONS(BOX_TRANSITION_ROW)
#undef BOX_TRANSITION_ROW
};

const char *tandem_box_status_name(uint32_t status)
{
    return status < TANDEM_BOX_STATUS_COUNT ? box_status_names[status] : "unknown";
}

int tandem_box_status_parse(const char *name)
{
    for (int i = 0; name != NULL && i < TANDEM_BOX_STATUS_COUNT; i++) {
        if (strcmp(name, box_status_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *tandem_box_action_name(uint32_t action)
{
    return action < TANDEM_BOX_ACTION_COUNT ? box_transitions[action].name : "unknown";
}

int tandem_box_action_parse(const char *name)
{
    for (int i = 0; name != NULL && i < TANDEM_BOX_ACTION_COUNT; i++) {
        if (strcmp(name, box_transitions[i].name) == 0) {
            return i;
        }
    }
    return -1;
}

int tandem_box_transition(uint32_t status, uint32_t action, uint32_t *to, char *errmsg)
{
    char allowed[ALLOWED_TEXT] = "";
    size_t used = 0;
    if (status >= TANDEM_BOX_STATUS_COUNT || action >= TANDEM_BOX_ACTION_COUNT) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "unknown box status %u or action %u", status, action);
        return -1;
    }
    const struct box_transition *t = &box_transitions[action];
    if ((t->from & (1u << status)) != 0) {
        *to = t->to;
        return 0;
    }
    for (uint32_t a = 0; a < TANDEM_BOX_ACTION_COUNT && used < sizeof allowed; a++) {
        if ((box_transitions[a].from & (1u << status)) != 0) {
            int n = snprintf(allowed + used, sizeof allowed - used, "%s%s", used ? ", " : "",
                             box_transitions[a].name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "illegal box transition: %s from %s (allowed from %s: %s)", t->name,
             box_status_names[status], box_status_names[status], used ? allowed : "none");
    return -1;
}

int tandem_box_fields_check(const Tandem__BoxRecord *box, char *errmsg)
{
    if (!tandem_domain_id_ok(box->id)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "id must be 1 to %d of [A-Za-z0-9._:-]", TANDEM_DOMAIN_ID_LEN_MAX);
    } else if (!tandem_domain_text_ok(box->ledger, false)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "ledger must be printable text of 1 to %d bytes",
                 TANDEM_DOMAIN_TEXT_LEN_MAX);
    } else if (!tandem_domain_text_ok(box->client, false)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "client must be printable text of 1 to %d bytes",
                 TANDEM_DOMAIN_TEXT_LEN_MAX);
    } else if (!tandem_domain_site_ok(box->site)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "site must be a site label (1 to %d of [A-Za-z0-9._-])",
                 TANDEM_SITE_LEN_MAX);
    } else if (!tandem_domain_text_ok(box->shelf, true)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "shelf must be printable text of at most %d bytes",
                 TANDEM_DOMAIN_TEXT_LEN_MAX);
    } else if (box->n_volumes > TANDEM_BOX_VOLUMES_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "a box holds at most %d volumes", TANDEM_BOX_VOLUMES_MAX);
    } else if (box->has_retain_until && box->retain_until_ms < 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "retain_until must not be before 1970");
    } else {
        for (size_t i = 0; i < box->n_volumes; i++) {
            if (!tandem_domain_id_ok(box->volumes[i])) {
                snprintf(errmsg, TANDEM_ERRMSG_SIZE, "volume %zu must be 1 to %d of [A-Za-z0-9._:-]", i,
                         TANDEM_DOMAIN_ID_LEN_MAX);
                return -1;
            }
        }
        return 0;
    }
    return -1;
}

/* ---- records and indexes ---- */

int tandem_box_get(struct tandem_store *s, MDB_txn *txn, const char *id, Tandem__BoxRecord **out)
{
    return tandem_record_get(s, txn, TANDEM_DB_BOXES, id, strlen(id),
                             &tandem__box_record__descriptor, (ProtobufCMessage **)out);
}

static const char box_index_tags[BOX_INDEX_KINDS] = {TANDEM_IDX_SITE, TANDEM_IDX_STATUS,
                                                     TANDEM_IDX_JOB};

/* values[i] is NULL when the box has no entry of that kind (an unlinked box has no job). */
static void box_index_values(const Tandem__BoxRecord *box, const char *values[BOX_INDEX_KINDS])
{
    values[0] = box->site;
    values[1] = tandem_box_status_name(box->status);
    values[2] = box->job[0] != '\0' ? box->job : NULL;
}

static bool same_value(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int tandem_box_write(struct tandem_store *s, MDB_txn *txn, const Tandem__BoxRecord *old,
                     const Tandem__BoxRecord *next)
{
    const char *old_values[BOX_INDEX_KINDS] = {NULL, NULL, NULL}, *new_values[BOX_INDEX_KINDS];
    int rv = 0;
    box_index_values(next, new_values);
    if (old != NULL) {
        box_index_values(old, old_values);
    }
    for (int i = 0; i < BOX_INDEX_KINDS && rv == 0; i++) {
        if (old != NULL && same_value(old_values[i], new_values[i])) {
            continue;
        }
        if (old_values[i] != NULL) {
            rv = tandem_index_del(s, txn, TANDEM_DB_BOX_IDX, box_index_tags[i], old_values[i],
                                  old->id);
        }
        if (rv == 0 && new_values[i] != NULL) {
            rv = tandem_index_put(s, txn, TANDEM_DB_BOX_IDX, box_index_tags[i], new_values[i],
                                  next->id);
        }
    }
    if (rv == 0) {
        rv = tandem_record_put(s, txn, TANDEM_DB_BOXES, next->id, strlen(next->id), &next->base);
    }
    return rv;
}

static void text_field(struct tandem_text *t, const char *key, const char *value)
{
    tandem_text_cstr(t, key);
    tandem_text_string(t, value, strlen(value));
}

/* Written by hand, not through jansson: listings spend their time here. */
void tandem_box_text(struct tandem_text *t, const Tandem__BoxRecord *box)
{
    text_field(t, "{\"id\":", box->id);
    text_field(t, ",\"ledger\":", box->ledger);
    text_field(t, ",\"client\":", box->client);
    tandem_text_cstr(t, ",\"volumes\":[");
    for (size_t i = 0; i < box->n_volumes; i++) {
        if (i > 0) {
            tandem_text_raw(t, ",", 1);
        }
        tandem_text_string(t, box->volumes[i], strlen(box->volumes[i]));
    }
    text_field(t, "],\"site\":", box->site);
    box->shelf[0] != '\0' ? text_field(t, ",\"shelf\":", box->shelf)
                          : tandem_text_cstr(t, ",\"shelf\":null");
    text_field(t, ",\"status\":", tandem_box_status_name(box->status));
    box->job[0] != '\0' ? text_field(t, ",\"job\":", box->job)
                        : tandem_text_cstr(t, ",\"job\":null");
    tandem_text_cstr(t, ",\"retain_until\":");
    box->has_retain_until ? tandem_text_time(t, box->retain_until_ms) : tandem_text_cstr(t, "null");
    tandem_text_cstr(t, ",\"created\":");
    tandem_text_time(t, box->created_ms);
    tandem_text_cstr(t, ",\"updated\":");
    tandem_text_time(t, box->updated_ms);
    tandem_text_cstr(t, ",\"create_index\":");
    tandem_text_int(t, (int64_t)box->create_index);
    tandem_text_cstr(t, ",\"mod_index\":");
    tandem_text_int(t, (int64_t)box->mod_index);
    tandem_text_raw(t, "}", 1);
}

json_t *tandem_box_json(const Tandem__BoxRecord *box)
{
    struct tandem_text t;
    tandem_text_init(&t, TANDEM_LIST_BYTES_MAX);
    tandem_box_text(&t, box);
    json_t *out = t.failed ? NULL : json_loadb(t.data, t.len, 0, NULL);
    tandem_text_free(&t);
    return out;
}

/* ---- listing ---- */

struct box_walk {
    struct tandem_store *s;
    MDB_txn *txn;
    const struct tandem_box_query *q;
    struct tandem_text *out;
    bool via_index;
    size_t count;
    char last[TANDEM_DOMAIN_ID_LEN_MAX + 1];
};

static bool box_matches(const Tandem__BoxRecord *box, const struct tandem_box_query *q)
{
    return (q->site == NULL || strcmp(box->site, q->site) == 0) &&
           (q->status == NULL || strcmp(tandem_box_status_name(box->status), q->status) == 0) &&
           (q->job == NULL || strcmp(box->job, q->job) == 0);
}

static int box_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                     bool *stop)
{
    struct box_walk *w = arg;
    ProtobufCMessage *m = NULL;
    int rv;
    if (rest_len == 0 || rest_len > TANDEM_DOMAIN_ID_LEN_MAX) {
        snprintf(w->s->errmsg, sizeof w->s->errmsg, "corrupt box key of %zu bytes", rest_len);
        return MDB_CORRUPTED;
    }
    memcpy(w->last, rest, rest_len);
    w->last[rest_len] = '\0';
    rv = w->via_index ? tandem_box_get(w->s, w->txn, w->last, (Tandem__BoxRecord **)&m)
                      : tandem_record_decode(w->s, value, &tandem__box_record__descriptor, &m);
    if (rv == 0 && m == NULL) {
        snprintf(w->s->errmsg, sizeof w->s->errmsg, "box index names missing box %s", w->last);
        rv = MDB_CORRUPTED;
    }
    if (rv != 0) {
        return rv;
    }
    if (box_matches((Tandem__BoxRecord *)m, w->q)) {
        if (w->count > 0) {
            tandem_text_raw(w->out, ",", 1);
        }
        tandem_box_text(w->out, (Tandem__BoxRecord *)m);
        *stop = ++w->count >= w->q->limit || w->out->len >= TANDEM_LIST_PAGE_BYTES;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int tandem_box_list(struct tandem_store *s, MDB_txn *txn, const struct tandem_box_query *q,
                    struct tandem_text *out, char next[TANDEM_DOMAIN_ID_LEN_MAX + 1])
{
    uint8_t prefix[TANDEM_INDEX_KEY_LEN_MAX];
    size_t prefix_len = 0;
    struct box_walk w = {.s = s, .txn = txn, .q = q, .out = out};
    const char *after = q->after != NULL ? q->after : "";
    bool exhausted;
    int db = TANDEM_DB_BOXES;
    /* The index most likely to be selective first; the other filters check each record. */
    const char *values[BOX_INDEX_KINDS] = {q->job, q->site, q->status};
    const char tags[BOX_INDEX_KINDS] = {TANDEM_IDX_JOB, TANDEM_IDX_SITE, TANDEM_IDX_STATUS};
    next[0] = '\0';
    for (int i = 0; i < BOX_INDEX_KINDS && !w.via_index; i++) {
        if (values[i] != NULL) {
            prefix_len = tandem_index_key(tags[i], values[i], "", prefix);
            db = TANDEM_DB_BOX_IDX;
            w.via_index = true;
            if (prefix_len == 0) {
                return 0; /* a filter value longer than any key matches nothing */
            }
        }
    }
    if (q->limit == 0) {
        return 0;
    }
    int rv = tandem_index_scan(s, txn, db, prefix, prefix_len, (const uint8_t *)after,
                               strlen(after), TANDEM_LIST_SCAN_MAX, box_visit, &w, &exhausted);
    if (rv == 0 && !exhausted) {
        memcpy(next, w.last, sizeof w.last);
    }
    return rv;
}

/* ---- invariant ---- */

static int box_check_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                           bool *stop)
{
    struct box_walk *w = arg;
    ProtobufCMessage *m;
    const char *values[BOX_INDEX_KINDS];
    uint8_t key[TANDEM_INDEX_KEY_LEN_MAX];
    (void)stop;
    int rv = tandem_record_decode(w->s, value, &tandem__box_record__descriptor, &m);
    if (rv != 0) {
        return rv;
    }
    const Tandem__BoxRecord *box = (Tandem__BoxRecord *)m;
    if (strlen(box->id) != rest_len || memcmp(box->id, rest, rest_len) != 0) {
        snprintf(w->s->errmsg, sizeof w->s->errmsg, "box %s is stored under another key", box->id);
        rv = EINVAL;
    }
    box_index_values(box, values);
    for (int i = 0; i < BOX_INDEX_KINDS && rv == 0; i++) {
        if (values[i] == NULL) {
            continue;
        }
        MDB_val k = {.mv_size = tandem_index_key(box_index_tags[i], values[i], box->id, key),
                     .mv_data = key},
                v;
        rv = mdb_get(w->txn, w->s->dbi[TANDEM_DB_BOX_IDX], &k, &v);
        if (rv == MDB_NOTFOUND) {
            snprintf(w->s->errmsg, sizeof w->s->errmsg, "box %s has no index entry %c/%s", box->id,
                     box_index_tags[i], values[i]);
            rv = EINVAL;
        }
        w->count++;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rv;
}

int tandem_box_index_check(struct tandem_store *s, MDB_txn *txn)
{
    struct box_walk w = {.s = s, .txn = txn};
    MDB_stat stat;
    bool exhausted;
    uint8_t none[1] = {0};
    int rv = tandem_index_scan(s, txn, TANDEM_DB_BOXES, none, 0, none, 0, SIZE_MAX, box_check_visit,
                               &w, &exhausted);
    if (rv != 0) {
        return rv;
    }
    if ((rv = mdb_stat(txn, s->dbi[TANDEM_DB_BOX_IDX], &stat)) != 0) {
        return tandem_store_error(s, rv, "box index stat");
    }
    if (stat.ms_entries != w.count) {
        snprintf(s->errmsg, sizeof s->errmsg, "box_idx holds %zu entries, the boxes need %zu",
                 stat.ms_entries, w.count);
        return EINVAL;
    }
    return 0;
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
        snprintf(ctx->store->errmsg, sizeof ctx->store->errmsg, "check-in: out of memory");
        free(first);
        json_decref(rows);
        return ENOMEM;
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
        char message[256];
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
    bool refused;
    if (c == NULL || tandem_actor_check(c->actor, errmsg) != 0 || c->n_boxes == 0 ||
        c->n_boxes > (c->bulk ? TANDEM_BULK_CHECKIN_ROWS_MAX : 1)) {
        tandem_result_error(result, 400, "%s",
                            c == NULL || c->actor == NULL       ? "empty check-in"
                            : c->n_boxes == 0 || c->n_boxes > 1 ? "a check-in needs 1 box, or 1 to "
                                                                  "10000 rows in bulk"
                                                                : errmsg);
        return 0;
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

/* One action on one box: the handler changes `next` (a shallow copy of old) or refuses. */
struct box_change {
    const struct tandem_apply_ctx *ctx;
    const Tandem__BoxAction *action;
    const Tandem__BoxRecord *old; /* borrowed */
    Tandem__BoxRecord next;       /* borrows old's and the command's strings */
    uint32_t to;
    json_t *details; /* owned until the trace takes it */
    bool changed;
    int refuse_status;
    char refuse_errmsg[TANDEM_ERRMSG_SIZE];
};

typedef int (*box_action_fn)(struct box_change *c);

static void box_refuse(struct box_change *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void box_refuse(struct box_change *c, int status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(c->refuse_errmsg, sizeof c->refuse_errmsg, fmt, args);
    va_end(args);
    c->refuse_status = status;
}

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
static void pick_guard(struct box_change *c, const Tandem__JobRecord *job)
{
    const char *job_id = c->action->job;
    if (job == NULL) {
        box_refuse(c, 404, "job not found: %s", job_id);
    } else if ((TANDEM_JOB_OPEN & (1u << job->status)) == 0) {
        box_refuse(c, 409, "job %s is %s: boxes are picked for open jobs only", job_id,
                   tandem_job_status_name(job->status));
    } else if (strcmp(job->client, c->old->client) != 0) {
        box_refuse(c, 409, "box %s belongs to client %s, job %s to client %s", c->old->id,
                   c->old->client, job_id, job->client);
    } else if (!job_has_box(job, c->old->id) && job->n_boxes >= TANDEM_JOB_BOXES_MAX) {
        box_refuse(c, 409, "job %s already has %d boxes", job_id, TANDEM_JOB_BOXES_MAX);
    }
}

/* Appends the box to the job's list and records the link on the job's trace. */
static int pick_link_job(struct box_change *c, const Tandem__JobRecord *job)
{
    const struct tandem_apply_ctx *ctx = c->ctx;
    Tandem__JobRecord next = *job;
    char **boxes = malloc((job->n_boxes + 1) * sizeof *boxes);
    if (boxes == NULL) {
        snprintf(ctx->store->errmsg, sizeof ctx->store->errmsg, "pick: out of memory");
        return ENOMEM;
    }
    if (job->n_boxes > 0) {
        memcpy(boxes, job->boxes, job->n_boxes * sizeof *boxes);
    }
    boxes[job->n_boxes] = c->old->id;
    next.boxes = boxes;
    next.n_boxes = job->n_boxes + 1;
    next.updated_ms = ctx->now_ms;
    next.mod_index = ctx->index;
    int rv = tandem_job_write(ctx->store, ctx->txn, job, &next);
    free(boxes);
    if (rv == 0) {
        rv = tandem_trace_append(ctx, c->action->actor, "job", job->id, "link_box",
                                 json_pack("{s:s}", "box", c->old->id));
    }
    return rv;
}

static int box_pick(struct box_change *c)
{
    Tandem__JobRecord *job = NULL;
    if (!tandem_domain_id_ok(c->action->job)) {
        box_refuse(c, 400, "pick needs the id of the job it is for");
        return 0;
    }
    int rv = tandem_job_get(c->ctx->store, c->ctx->txn, c->action->job, &job);
    if (rv != 0) {
        return rv;
    }
    pick_guard(c, job);
    if (c->refuse_status == 0) {
        c->next.status = c->to;
        c->next.job = c->action->job;
        c->details =
            json_pack("{s:s,s:s}", "job", job->id, "from", tandem_box_status_name(c->old->status));
        c->changed = true;
        rv = job_has_box(job, c->old->id) ? 0 : pick_link_job(c, job);
    }
    tandem__job_record__free_unpacked(job, NULL);
    return rv;
}

static int box_return(struct box_change *c)
{
    c->next.status = c->to;
    c->details =
        json_pack("{s:s,s:s}", "job", c->old->job, "from", tandem_box_status_name(c->old->status));
    c->changed = true;
    return 0;
}

static int box_move(struct box_change *c)
{
    const Tandem__BoxAction *a = c->action;
    if (!tandem_domain_site_ok(a->site) || !tandem_domain_text_ok(a->shelf, false)) {
        box_refuse(c, 400, "move needs a site label and a shelf of 1 to %d printable bytes",
                   TANDEM_DOMAIN_TEXT_LEN_MAX);
        return 0;
    }
    c->next.status = c->to;
    c->next.site = a->site;
    c->next.shelf = a->shelf;
    c->changed = c->old->status != c->to || strcmp(c->old->site, a->site) != 0 ||
                 strcmp(c->old->shelf, a->shelf) != 0;
    c->details = json_pack("{s:s,s:s,s:s,s:s,s:s}", "from_site", c->old->site, "to_site", a->site,
                           "from_shelf", c->old->shelf, "to_shelf", a->shelf, "from",
                           tandem_box_status_name(c->old->status));
    return 0;
}

/* Writes the disposal record of the box being disposed of. */
static int dispose_record(struct box_change *c, uint64_t *seq)
{
    Tandem__DisposalRecord d = TANDEM__DISPOSAL_RECORD__INIT;
    const Tandem__BoxRecord *box = c->old;
    d.kind = "box";
    d.box = box->id;
    d.ledger = box->ledger;
    d.client = box->client;
    d.n_volumes = box->n_volumes;
    d.volumes = box->volumes;
    d.job = box->job;
    d.actor = c->action->actor->user;
    d.site = c->action->actor->site;
    d.time_ms = c->ctx->now_ms;
    d.index = c->ctx->index;
    int rv = tandem_disposal_append(c->ctx, &d);
    *seq = d.seq;
    return rv;
}

static int box_dispose(struct box_change *c)
{
    const Tandem__BoxRecord *box = c->old;
    Tandem__JobRecord *job = NULL;
    uint64_t seq = 0;
    int rv = box->job[0] != '\0' ? tandem_job_get(c->ctx->store, c->ctx->txn, box->job, &job) : 0;
    if (rv != 0) {
        return rv;
    }
    char until[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(box->retain_until_ms, until);
    if (job != NULL && (TANDEM_JOB_OPEN & (1u << job->status)) != 0) {
        box_refuse(c, 409, "box %s is linked to open job %s (%s): complete or cancel it first",
                   box->id, job->id, tandem_job_status_name(job->status));
    } else if (box->has_retain_until && c->ctx->now_ms < box->retain_until_ms) {
        box_refuse(c, 409, "box %s must be retained until %s", box->id, until);
    } else {
        rv = dispose_record(c, &seq);
        c->next.status = c->to;
        c->details = json_pack("{s:I,s:s}", "disposal", (json_int_t)seq, "from",
                               tandem_box_status_name(box->status));
        c->changed = true;
    }
    tandem__job_record__free_unpacked(job, NULL);
    return rv;
}

static int box_process_refused(struct box_change *c)
{
    box_refuse(c, 400, "boxes go into process when their job advances, not by request");
    return 0;
}

/* Indexed by enum tandem_box_action. */
static const box_action_fn box_action_fns[TANDEM_BOX_ACTION_COUNT] = {
    [TANDEM_BOX_ACTION_PICK] = box_pick,       [TANDEM_BOX_ACTION_PROCESS] = box_process_refused,
    [TANDEM_BOX_ACTION_RETURN] = box_return,   [TANDEM_BOX_ACTION_MOVE] = box_move,
    [TANDEM_BOX_ACTION_DISPOSE] = box_dispose,
};

static int box_change_commit(struct box_change *c, struct tandem_result *result)
{
    const struct tandem_apply_ctx *ctx = c->ctx;
    int rv = 0;
    if (c->changed) {
        c->next.updated_ms = ctx->now_ms;
        c->next.mod_index = ctx->index;
        rv = tandem_box_write(ctx->store, ctx->txn, c->old, &c->next);
        if (rv == 0) {
            rv = tandem_trace_append(ctx, c->action->actor, "box", c->old->id,
                                     tandem_box_action_name(c->action->action), c->details);
            c->details = NULL;
        }
    }
    if (rv == 0) {
        tandem_result_jansson(result, 200, tandem_box_json(&c->next));
    }
    return rv;
}

int tandem_box_apply_action(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                            struct tandem_result *result)
{
    const Tandem__BoxAction *a = command->box_action;
    struct box_change c = {.ctx = ctx, .action = a};
    Tandem__BoxRecord *box = NULL;
    if (a == NULL || tandem_actor_check(a->actor, c.refuse_errmsg) != 0 ||
        !tandem_domain_id_ok(a->id) || a->action >= TANDEM_BOX_ACTION_COUNT) {
        tandem_result_error(result, 400, "%s",
                            a == NULL || a->actor == NULL ? "empty box action"
                            : c.refuse_errmsg[0] != '\0'  ? c.refuse_errmsg
                                                          : "invalid box id or action");
        return 0;
    }
    int rv = tandem_box_get(ctx->store, ctx->txn, a->id, &box);
    if (rv != 0 || box == NULL) {
        if (rv == 0) {
            tandem_result_error(result, 404, "box not found: %s", a->id);
        }
        return rv;
    }
    c.old = box;
    c.next = *box;
    if (tandem_box_transition(box->status, a->action, &c.to, c.refuse_errmsg) != 0) {
        c.refuse_status = 409;
    } else {
        rv = box_action_fns[a->action](&c);
    }
    if (rv == 0 && c.refuse_status != 0) {
        tandem_result_error(result, c.refuse_status, "%s", c.refuse_errmsg);
    } else if (rv == 0) {
        rv = box_change_commit(&c, result);
    }
    json_decref(c.details);
    tandem__box_record__free_unpacked(box, NULL);
    return rv;
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
