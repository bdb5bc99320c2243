/* Route table of the process-management and warehouse domain (jobs, boxes, trace): requests are
 * checked and turned into commands here; the rules themselves live in replication/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "node/api/api.h"
#include "node/api/authz.h"
#include "node/api/pdata.h"
#include "replication/domain/domain.h"
#include "storage/error.h"

#define KIND_LEN 3 /* "job" or "box" */
/* Allocations one write request holds: a volume list per bulk row, plus a few. */
#define OWNED_MAX (TANDEM_BULK_CHECKIN_ROWS_MAX + 8)
#define QUERY_MAX 160 /* a decoded query value: text fields are at most 128 bytes */

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define DOMAIN_ROUTES(X)                                                                           \
    X(jobs_create, HTTP_POST, "/v1/jobs", TANDEM_ROUTE_WRITE, TANDEM_PERM_DOMAIN_WRITE,            \
      route_jobs_create)                                                                           \
    X(jobs_list, HTTP_GET, "/v1/jobs", TANDEM_ROUTE_READ, TANDEM_PERM_READ, route_jobs_list)       \
    X(job_get, HTTP_GET, "/v1/jobs/", TANDEM_ROUTE_READ | TANDEM_ROUTE_PREFIX, TANDEM_PERM_READ,   \
      route_job_get)                                                                               \
    X(job_action, HTTP_POST, "/v1/jobs/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX,                \
      TANDEM_PERM_DOMAIN_WRITE, route_job_action)                                                  \
    X(boxes_checkin, HTTP_POST, "/v1/boxes", TANDEM_ROUTE_WRITE, TANDEM_PERM_DOMAIN_WRITE,         \
      route_boxes_checkin)                                                                         \
    X(boxes_list, HTTP_GET, "/v1/boxes", TANDEM_ROUTE_READ, TANDEM_PERM_READ, route_boxes_list)    \
    X(box_get, HTTP_GET, "/v1/boxes/", TANDEM_ROUTE_READ | TANDEM_ROUTE_PREFIX, TANDEM_PERM_READ,  \
      route_box_get)                                                                               \
    X(box_action, HTTP_POST, "/v1/boxes/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX,               \
      TANDEM_PERM_DOMAIN_WRITE, route_box_action)                                                  \
    X(trace_get, HTTP_GET, "/v1/trace/", TANDEM_ROUTE_READ | TANDEM_ROUTE_PREFIX,                  \
      TANDEM_PERM_TRACE, route_trace_get)                                                          \
    X(retention_purge, HTTP_POST, "/v1/retention/purge", TANDEM_ROUTE_WRITE,                       \
      TANDEM_PERM_RETENTION, route_retention_purge)                                                \
    X(disposals_list, HTTP_GET, "/v1/disposals", TANDEM_ROUTE_READ, TANDEM_PERM_READ,              \
      route_disposals_list)

TANDEM_ROUTE_TABLE(tandem_domain_route_table, DOMAIN_ROUTES);

/* ---- write requests: a command and everything its fields borrow ---- */

struct domain_write {
    struct tandem_route_write base; /* first: command, actor, body */
    union {
        Tandem__JobCreate job_create;
        Tandem__JobAction job_action;
        Tandem__BoxCheckin checkin;
        Tandem__BoxAction box_action;
        Tandem__RetentionPurge purge;
    };
    Tandem__JobRecord job;
    void **owned; /* owned: arrays the command points to, each owned */
    size_t n_owned, cap_owned;
    char id[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    char home_site[TANDEM_SITE_LEN_MAX + 1]; /* the actor's home site (own-site rule) */
};

/* An action route's kind: how its verbs parse and how its command is filled. */
struct action_kind {
    const char *name;               /* "job", "box" */
    int (*parse)(const char *verb); /* < 0 for an unknown verb */
    int refused;                    /* a verb that parses but is not an action here (-1: none) */
    const char *verbs_hint;         /* after "no such <name> action: <verb>" */
    int (*fill)(struct domain_write *w, int action, char *why); /* -1 with why: 400 */
};

static void domain_write_free(void *arg)
{
    struct domain_write *w = arg;
    for (size_t i = 0; i < w->n_owned; i++) {
        free(w->owned[i]);
    }
    free(w->owned);
    tandem_route_write_release(&w->base);
    free(w);
}

static void *write_alloc(struct domain_write *w, size_t size)
{
    if (w->n_owned == w->cap_owned) {
        size_t cap = w->cap_owned == 0 ? 8 : 2 * w->cap_owned;
        void **owned = cap <= OWNED_MAX ? realloc(w->owned, cap * sizeof *owned) : NULL;
        if (owned == NULL) {
            return NULL;
        }
        w->owned = owned;
        w->cap_owned = cap;
    }
    void *p = calloc(1, size > 0 ? size : 1);
    if (p != NULL) {
        w->owned[w->n_owned++] = p;
    }
    return p;
}

/* A write request with its actor set and its JSON body parsed (an empty body is {}). Answers r
 * and returns NULL on failure. */
static struct domain_write *domain_write_new(struct tandem_node *node,
                                             struct tandem_http_request *r)
{
    struct domain_write *w = tandem_route_write_new(node, r, sizeof(struct domain_write), 500);
    if (w != NULL) {
        /* The operator's own-site rule: apply compares the record's site at that moment (a BCP
         * invoke may move the work to the operator's site first). */
        snprintf(w->home_site, sizeof w->home_site, "%s", r->principal.site);
        w->base.actor.home_site = w->home_site;
        w->base.actor.site_bound =
            tandem_principal_site_bound(&r->principal, TANDEM_PERM_DOMAIN_WRITE);
    }
    return w;
}

/* Fills w's command from r: returns 0, an HTTP status with why filled (400, 404, 500), or
 * WRITE_ANSWERED when it answered r itself. arg is the route's own. */
typedef int (*write_fill_fn)(struct tandem_node *node, struct tandem_http_request *r,
                             struct domain_write *w, const void *arg, char *why);
#define WRITE_ANSWERED (-1)

/* A route handler that is route_write with fill (the path parameter, if any, is its arg). */
#define WRITE_ROUTE(route, fill)                                                                   \
    static void route(struct tandem_node *node, struct tandem_http_request *r, const char *param)  \
    {                                                                                              \
        route_write(node, r, fill, param);                                                         \
    }

/* Every domain write: the prelude (actor, body), the route's fill, the proposal. */
static void route_write(struct tandem_node *node, struct tandem_http_request *r, write_fill_fn fill,
                        const void *arg)
{
    char why[TANDEM_ERRMSG_SIZE];
    struct domain_write *w = domain_write_new(node, r);
    if (w == NULL) {
        return;
    }
    int status = fill(node, r, w, arg, why);
    if (status == 0) {
        tandem_route_submit(node, r, &w->base.command, domain_write_free, w);
        return;
    }
    if (status != WRITE_ANSWERED) {
        tandem_route_error(node, r, status, "%s", why);
    }
    domain_write_free(w);
}

/* ---- JSON field helpers: each returns 0, or -1 with why (TANDEM_ERRMSG_SIZE bytes) ---- */

/* A string field; absent (or null when nullable) leaves *out unchanged. */
static int field_string(json_t *object, const char *name, bool required, char **out, char *why)
{
    json_t *value = json_object_get(object, name);
    if (value == NULL || (json_is_null(value) && !required)) {
        if (required) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "\"%s\" is required", name);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(value) || strlen(json_string_value(value)) != json_string_length(value)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"%s\" must be a string", name);
        return -1;
    }
    *out = (char *)json_string_value(value);
    return 0;
}

static int field_integer(json_t *object, const char *name, json_int_t min, json_int_t max,
                         json_int_t *out, char *why)
{
    json_t *value = json_object_get(object, name);
    if (value == NULL) {
        return 0;
    }
    if (!json_is_integer(value) || json_integer_value(value) < min ||
        json_integer_value(value) > max) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"%s\" must be an integer from %lld to %lld", name,
                 (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(value);
    return 0;
}

static int field_time(json_t *object, const char *name, protobuf_c_boolean *has, int64_t *ms,
                      char *why)
{
    char *text = NULL;
    if (field_string(object, name, false, &text, why) != 0) {
        return -1;
    }
    if (text == NULL) {
        return 0;
    }
    if (tandem_rfc3339_parse(text, ms) != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "\"%s\" must be an RFC 3339 date-time such as 2024-05-01T09:00:00Z", name);
        return -1;
    }
    *has = 1;
    return 0;
}

/* An array of strings; *items points into a write-owned array. */
static int field_strings(struct domain_write *w, json_t *object, const char *name, size_t max,
                         char ***items, size_t *n, char *why)
{
    json_t *list = json_object_get(object, name);
    if (list == NULL || json_is_null(list)) {
        return 0;
    }
    if (!json_is_array(list) || json_array_size(list) > max) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"%s\" must be an array of at most %zu strings", name,
                 max);
        return -1;
    }
    *items = write_alloc(w, json_array_size(list) * sizeof **items);
    if (*items == NULL) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *item = json_array_get(list, i);
        if (!json_is_string(item)) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "\"%s\" must hold strings only", name);
            return -1;
        }
        (*items)[i] = (char *)json_string_value(item);
    }
    *n = json_array_size(list);
    return 0;
}

/* ---- jobs ---- */

static int job_from_json(struct domain_write *w, json_t *body, Tandem__JobRecord *job, char *why)
{
    static const char *const known[] = {"id",
                                        "client",
                                        "kind",
                                        "site",
                                        "stages",
                                        "effort",
                                        "due",
                                        "priority",
                                        "operator",
                                        "pinned",
                                        "individual_number",
                                        NULL};
    json_int_t effort = 0, priority = 0;
    char *individual = NULL;
    json_t *pinned = json_object_get(body, "pinned");
    tandem__job_record__init(job);
    if (tandem_route_fields_only(body, known, why) != 0 ||
        field_string(body, "id", false, &job->id, why) ||
        field_string(body, "client", true, &job->client, why) ||
        field_string(body, "kind", true, &job->kind, why) ||
        field_string(body, "site", true, &job->site, why) ||
        field_strings(w, body, "stages", TANDEM_JOB_STAGES_MAX, &job->stages, &job->n_stages,
                      why) ||
        field_integer(body, "effort", 0, TANDEM_JOB_EFFORT_MAX, &effort, why) ||
        field_integer(body, "priority", -TANDEM_JOB_PRIORITY_ABS_MAX, TANDEM_JOB_PRIORITY_ABS_MAX,
                      &priority, why) ||
        field_time(body, "due", &job->has_due, &job->due_ms, why) ||
        field_string(body, "operator", false, &job->operator_, why) ||
        field_string(body, "individual_number", false, &individual, why)) {
        return -1;
    }
    if (pinned != NULL && !json_is_boolean(pinned)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"pinned\" must be true or false");
        return -1;
    }
    if (job->id != NULL && (strcmp(job->id, ".") == 0 || strcmp(job->id, "..") == 0)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"id\" cannot be \".\" or \"..\"");
        return -1;
    }
    job->pinned = json_is_true(pinned);
    job->effort = (uint64_t)effort;
    job->priority = priority;
    if (individual != NULL) {
        if (strlen(individual) > TANDEM_INDIVIDUAL_NUMBER_LEN_MAX) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "individual_number is longer than %d bytes",
                     TANDEM_INDIVIDUAL_NUMBER_LEN_MAX);
            return -1;
        }
        job->individual_number.data = (uint8_t *)individual;
        job->individual_number.len = strlen(individual);
    }
    return tandem_job_fields_check(job, why);
}

static int job_create_fill(struct tandem_node *node, struct tandem_http_request *r,
                           struct domain_write *w, const void *arg, char *why)
{
    (void)r, (void)arg;
    if (job_from_json(w, w->base.json, &w->job, why) != 0) {
        return 400;
    }
    /* Sealed before proposing: the raft log, snapshots and LMDB only ever see the sealed form. */
    size_t len = w->job.individual_number.len;
    uint8_t *sealed = len == 0 ? NULL : write_alloc(w, 32 + len + TANDEM_PDATA_OVERHEAD);
    if (len > 0 && sealed == NULL) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "out of memory");
        return 500;
    }
    int status = tandem_pdata_job_seal(node, &w->job, sealed, why);
    if (status != 0) {
        return status;
    }
    tandem__job_create__init(&w->job_create);
    w->job_create.actor = &w->base.actor;
    w->job_create.job = &w->job;
    w->base.command.body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    w->base.command.job_create = &w->job_create;
    return 0;
}

WRITE_ROUTE(route_jobs_create, job_create_fill)
/* Splits "ID/verb" into id (checked) and verb; answers r and returns -1 when malformed. */
static int split_action(struct tandem_node *node, struct tandem_http_request *r, const char *param,
                        const char *noun, char *id, const char **verb)
{
    const char *slash = strrchr(param, '/');
    size_t id_len = slash == NULL ? 0 : (size_t)(slash - param);
    if (slash == NULL || id_len == 0 || id_len > TANDEM_DOMAIN_ID_LEN_MAX) {
        tandem_route_error(node, r, 404, "no such route: %s (POST /v1/%ses/ID/ACTION)", r->path,
                           noun);
        return -1;
    }
    memcpy(id, param, id_len);
    id[id_len] = '\0';
    if (!tandem_route_id_ok(id)) {
        tandem_route_error(node, r, 400, "%s id must be 1 to %d of [A-Za-z0-9._:-]", noun,
                           TANDEM_DOMAIN_ID_LEN_MAX);
        return -1;
    }
    *verb = slash + 1;
    return 0;
}

/* The action fields every job and box action carries (the two message types differ). */
#define ACTION_FIELDS_SET(a, w, action_code)                                                       \
    ((a)->actor = &(w)->base.actor, (a)->id = (w)->id, (a)->action = (uint32_t)(action_code))

static int job_action_fill(struct domain_write *w, int action, char *why)
{
    static const char *const known[] = {"operator", NULL};
    Tandem__JobAction *a = &w->job_action;
    tandem__job_action__init(a);
    ACTION_FIELDS_SET(a, w, action);
    w->base.command.body_case = TANDEM__COMMAND__BODY_JOB_ACTION;
    w->base.command.job_action = a;
    static const char *const none[] = {NULL};
    if (action != TANDEM_JOB_ACTION_OPERATOR) {
        return tandem_route_fields_only(w->base.json, none, why) != 0 ? -1 : 0;
    }
    if ((tandem_route_fields_only(w->base.json, known, why) != 0 ||
         field_string(w->base.json, "operator", false, &a->operator_, why) != 0 ||
         !tandem_domain_text_ok(a->operator_, true))) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "body must be {\"operator\": \"name\"|null}");
        return -1;
    }
    return 0;
}

static const struct action_kind job_action_kind = {
    "job", tandem_job_action_parse, -1, "", job_action_fill,
};

/* ---- boxes ---- */

static int box_from_json(struct domain_write *w, json_t *row, Tandem__BoxRecord *box, char *why)
{
    static const char *const known[] = {"id",   "ledger", "client",       "volumes",
                                        "site", "shelf",  "retain_until", NULL};
    tandem__box_record__init(box);
    if (!json_is_object(row)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "a box must be a JSON object");
        return -1;
    }
    if (tandem_route_fields_only(row, known, why) != 0 ||
        field_string(row, "id", true, &box->id, why) ||
        field_string(row, "ledger", true, &box->ledger, why) ||
        field_string(row, "client", true, &box->client, why) ||
        field_string(row, "site", true, &box->site, why) ||
        field_string(row, "shelf", false, &box->shelf, why) ||
        field_strings(w, row, "volumes", TANDEM_BOX_VOLUMES_MAX, &box->volumes, &box->n_volumes,
                      why) ||
        field_time(row, "retain_until", &box->has_retain_until, &box->retain_until_ms, why)) {
        return -1;
    }
    if (strcmp(box->id, ".") == 0 || strcmp(box->id, "..") == 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "\"id\" cannot be \".\" or \"..\"");
        return -1;
    }
    return tandem_box_fields_check(box, why);
}

/* Parses every row; answers 400 with the per-row errors when any is malformed. */
static int boxes_from_json(struct tandem_node *node, struct tandem_http_request *r,
                           struct domain_write *w, json_t *list)
{
    char why[TANDEM_ERRMSG_SIZE];
    size_t n = json_array_size(list), errors = 0;
    Tandem__BoxRecord *rows = write_alloc(w, n * sizeof *rows);
    Tandem__BoxRecord **ptrs = write_alloc(w, n * sizeof *ptrs);
    json_t *row_errors = json_array();
    if (rows == NULL || ptrs == NULL || row_errors == NULL) {
        json_decref(row_errors);
        tandem_route_error(node, r, 500, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = &rows[i];
        if (box_from_json(w, json_array_get(list, i), &rows[i], why) != 0 &&
            errors++ < TANDEM_BULK_ROW_ERRORS_MAX) {
            json_array_append_new(row_errors,
                                  json_pack("{s:I,s:s}", "row", (json_int_t)i, "error", why));
        }
    }
    if (errors > 0) {
        snprintf(why, sizeof why,
                 "bulk check-in refused: %zu of %zu rows are malformed; nothing was checked in",
                 errors, n);
        tandem_route_jansson(node, r, 400,
                             json_pack("{s:s,s:o,s:I}", "error", why, "rows", row_errors, "errors",
                                       (json_int_t)errors));
        return -1;
    }
    json_decref(row_errors);
    w->checkin.boxes = ptrs;
    w->checkin.n_boxes = n;
    return 0;
}

/* One box (the body is the box) or a bulk check-in ({"boxes": [rows]}). */
static int checkin_fill(struct tandem_node *node, struct tandem_http_request *r,
                        struct domain_write *w, const void *arg, char *why)
{
    (void)arg;
    json_t *list = json_object_get(w->base.json, "boxes");
    tandem__box_checkin__init(&w->checkin);
    w->checkin.bulk = list != NULL;
    w->checkin.actor = &w->base.actor;
    w->base.command.body_case = TANDEM__COMMAND__BODY_BOX_CHECKIN;
    w->base.command.box_checkin = &w->checkin;
    if (list != NULL && (!json_is_array(list) || json_array_size(list) == 0 ||
                         json_array_size(list) > TANDEM_BULK_CHECKIN_ROWS_MAX ||
                         json_object_size(w->base.json) != 1)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "a bulk check-in is {\"boxes\": [1 to %d rows]}",
                 TANDEM_BULK_CHECKIN_ROWS_MAX);
        return 400;
    }
    if (list != NULL) {
        return boxes_from_json(node, r, w, list) != 0 ? WRITE_ANSWERED : 0;
    }
    Tandem__BoxRecord *box = write_alloc(w, sizeof *box);
    Tandem__BoxRecord **ptrs = write_alloc(w, sizeof *ptrs);
    if (box == NULL || ptrs == NULL) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "out of memory");
        return 500;
    }
    if (box_from_json(w, w->base.json, box, why) != 0) {
        return 400;
    }
    ptrs[0] = box;
    w->checkin.boxes = ptrs;
    w->checkin.n_boxes = 1;
    return 0;
}

WRITE_ROUTE(route_boxes_checkin, checkin_fill)
/* The body of pick ({"job"}) or move ({"site","shelf"}); nothing for return and dispose. */
static int box_action_body(struct domain_write *w, int action, char *why)
{
    static const char *const pick_fields[] = {"job", NULL};
    static const char *const move_fields[] = {"site", "shelf", NULL};
    static const char *const none[] = {NULL};
    Tandem__BoxAction *a = &w->box_action;
    if (action == TANDEM_BOX_ACTION_PICK) {
        if (tandem_route_fields_only(w->base.json, pick_fields, why) != 0 ||
            field_string(w->base.json, "job", true, &a->job, why) != 0) {
            return -1;
        }
        if (!tandem_route_id_ok(a->job)) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "\"job\" must be a job id");
            return -1;
        }
    } else if (action == TANDEM_BOX_ACTION_MOVE) {
        if (tandem_route_fields_only(w->base.json, move_fields, why) != 0 ||
            field_string(w->base.json, "site", true, &a->site, why) != 0 ||
            field_string(w->base.json, "shelf", true, &a->shelf, why) != 0) {
            return -1;
        }
        if (!tandem_domain_site_ok(a->site) || !tandem_domain_text_ok(a->shelf, false)) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "move needs a site label and a shelf of printable text");
            return -1;
        }
    } else if (tandem_route_fields_only(w->base.json, none, why) != 0) {
        return -1; /* return and dispose take no fields */
    }
    return 0;
}

static int box_action_fill(struct domain_write *w, int action, char *why)
{
    Tandem__BoxAction *a = &w->box_action;
    tandem__box_action__init(a);
    ACTION_FIELDS_SET(a, w, action);
    w->base.command.body_case = TANDEM__COMMAND__BODY_BOX_ACTION;
    w->base.command.box_action = a;
    return box_action_body(w, action, why);
}

static const struct action_kind box_action_kind = {
    "box",
    tandem_box_action_parse,
    TANDEM_BOX_ACTION_PROCESS, /* the pick route's own step, not an action of its own */
    " (pick, return, move, dispose)",
    box_action_fill,
};

/* POST /v1/<kind>s/<id>/<verb>: one action on one job or box. */
/* POST /v1/<kind>s/<id>/<verb>: one action on one job or box (arg: its struct action_call). */
struct action_call {
    const char *param; /* "ID/verb" */
    const struct action_kind *kind;
};

static int action_fill(struct tandem_node *node, struct tandem_http_request *r,
                       struct domain_write *w, const void *arg, char *why)
{
    const struct action_call *call = arg;
    const struct action_kind *kind = call->kind;
    const char *verb;
    if (split_action(node, r, call->param, kind->name, w->id, &verb) != 0) {
        return WRITE_ANSWERED;
    }
    int action = kind->parse(verb);
    if (action < 0 || action == kind->refused) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "no such %s action: %s%s", kind->name, verb,
                 kind->verbs_hint);
        return 404;
    }
    return kind->fill(w, action, why) != 0 ? 400 : 0;
}

static void route_action(struct tandem_node *node, struct tandem_http_request *r, const char *param,
                         const struct action_kind *kind)
{
    struct action_call call = {param, kind};
    route_write(node, r, action_fill, &call);
}
static void route_job_action(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    route_action(node, r, param, &job_action_kind);
}

static void route_box_action(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    route_action(node, r, param, &box_action_kind);
}

/* ---- retention ---- */

static int purge_fill(struct tandem_node *node, struct tandem_http_request *r,
                      struct domain_write *w, const void *arg, char *why)
{
    static const char *const known[] = {"events_max", NULL};
    json_int_t events_max = 0;
    (void)r, (void)arg;
    if (tandem_route_fields_only(w->base.json, known, why) != 0 ||
        field_integer(w->base.json, "events_max", 1, TANDEM_PURGE_EVENTS_MAX, &events_max, why) !=
            0) {
        return 400;
    }
    unsigned days = node->config->retention_days;
    tandem__retention_purge__init(&w->purge);
    w->purge.actor = &w->base.actor;
    /* The leader's clock and config decide the cutoff; apply only checks it. */
    w->purge.cutoff_ms = node->proposer.now_ms() - (int64_t)days * TANDEM_MS_PER_DAY;
    w->purge.retention_days = days;
    w->purge.events_max = (uint32_t)events_max;
    w->purge.audit_retention_days = node->config->audit_retention_days;
    w->purge.audit_cutoff_ms =
        node->proposer.now_ms() - (int64_t)w->purge.audit_retention_days * TANDEM_MS_PER_DAY;
    w->base.command.body_case = TANDEM__COMMAND__BODY_RETENTION_PURGE;
    w->base.command.retention_purge = &w->purge;
    return 0;
}

WRITE_ROUTE(route_retention_purge, purge_fill)
/* ---- reads ---- */

#define LIST_FILTERS_MAX 4
#define LIST_STATUS      1 /* every listing's second filter is "status" */

struct domain_read;

/* A listing route: its query filters, the status words it knows, and the replicated list. */
struct list_kind {
    const char *key;                       /* the answer's array: {"<key>":[...],"next":...} */
    const char *filters[LIST_FILTERS_MAX]; /* query parameters; NULL after the last */
    int (*status_parse)(const char *text); /* < 0 for an unknown status */
    const char *status_why;                /* the 400 message for one */
    int (*list)(struct tandem_store *store, MDB_txn *txn, const struct domain_read *q,
                struct tandem_text *items, char *next);
};

struct domain_read {
    char id[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    char kind[KIND_LEN + 1];
    const struct list_kind *list;              /* listings: which one */
    char filters[LIST_FILTERS_MAX][QUERY_MAX]; /* listings: by list->filters */
    bool has_filter[LIST_FILTERS_MAX];
    char after[QUERY_MAX];
    unsigned limit;
    uint64_t after_seq;
    struct tandem_text items;                /* a listing read on the thread pool */
    char next[TANDEM_DOMAIN_ID_LEN_MAX + 1]; /* likewise */
};

static void domain_read_free(void *arg)
{
    struct domain_read *q = arg;
    if (q != NULL && q->items.data != NULL) {
        tandem_text_free(&q->items);
    }
    free(q);
}

static struct domain_read *domain_read_new(struct tandem_node *node, struct tandem_http_request *r)
{
    struct domain_read *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
    }
    return q;
}

/* An optional text parameter; *has says whether it was given. */
static int query_text(struct tandem_http_request *r, const char *name, char *out, bool *has,
                      char *why)
{
    int rv = tandem_http_query_get(r->query, name, out, QUERY_MAX);
    if (rv < 0 || (rv == 1 && !tandem_domain_text_ok(out, false))) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s must be printable text of 1 to %d bytes", name,
                 TANDEM_DOMAIN_TEXT_LEN_MAX);
        return -1;
    }
    *has = rv == 1;
    return 0;
}

static int query_limit(struct tandem_http_request *r, unsigned *limit, char *why)
{
    uint64_t value = TANDEM_LIST_LIMIT_DEFAULT;
    if (tandem_route_query_number(r, "limit", 1, TANDEM_LIST_LIMIT_MAX, &value) < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "limit must be an integer from 1 to %d",
                 TANDEM_LIST_LIMIT_MAX);
        return -1;
    }
    *limit = (unsigned)value;
    return 0;
}

static int query_after_id(struct tandem_http_request *r, char *after, char *why)
{
    int rv = tandem_http_query_get(r->query, "after", after, QUERY_MAX);
    if (rv < 0 || (rv == 1 && !tandem_route_id_ok(after))) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "after must be an id from a previous page's \"next\"");
        return -1;
    }
    if (rv == 0) {
        after[0] = '\0';
    }
    return 0;
}

static int query_after_seq(struct tandem_http_request *r, uint64_t *after, char *why)
{
    *after = 0;
    if (tandem_route_query_number(r, "after", 0, UINT64_MAX, after) < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "after must be a sequence number from a previous page's \"next\"");
        return -1;
    }
    return 0;
}

/* Ends a read whose store access failed. */
static void serve_txn_error(struct tandem_node *node, struct tandem_http_request *r, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    tandem_route_error(node, r, 500, "%s", node->store.errmsg);
}

/* GET /v1/jobs/ID or /v1/boxes/ID (q->kind says which). */
static void serve_get(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct domain_read *q = arg;
    Tandem__JobRecord *job = NULL;
    Tandem__BoxRecord *box = NULL;
    MDB_txn *txn;
    bool is_job = strcmp(q->kind, "job") == 0;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    int rv = is_job ? tandem_job_get(&node->store, txn, q->id, &job)
                    : tandem_box_get(&node->store, txn, q->id, &box);
    if (rv != 0) {
        serve_txn_error(node, r, txn);
        return;
    }
    mdb_txn_abort(txn);
    if (job == NULL && box == NULL) {
        tandem_route_error(node, r, 404, "%s not found: %s", q->kind, q->id);
        return;
    }
    if (job != NULL) {
        tandem_pdata_job_answer(node, r, job); /* frees job; may wait for the read's audit */
        return;
    }
    tandem_route_jansson(node, r, 200, tandem_box_json(box));
    tandem__box_record__free_unpacked(box, NULL);
}

/* The id of a GET /v1/{jobs,boxes}/ID route; answers r and returns NULL when malformed. */
static struct domain_read *read_by_id(struct tandem_node *node, struct tandem_http_request *r,
                                      const char *param, const char *noun)
{
    if (!tandem_route_id_ok(param)) {
        if (strchr(param, '/') != NULL) {
            tandem_route_error(node, r, 404, "no such route: %s", r->path);
        } else {
            tandem_route_error(node, r, 400, "%s id must be 1 to %d of [A-Za-z0-9._:-]", noun,
                               TANDEM_DOMAIN_ID_LEN_MAX);
        }
        return NULL;
    }
    struct domain_read *q = domain_read_new(node, r);
    if (q != NULL) {
        snprintf(q->id, sizeof q->id, "%s", param);
    }
    return q;
}

static void route_get(struct tandem_node *node, struct tandem_http_request *r, const char *param,
                      const char *noun)
{
    struct domain_read *q = read_by_id(node, r, param, noun);
    if (q != NULL) {
        snprintf(q->kind, sizeof q->kind, "%s", noun);
        tandem_route_read(node, r, serve_get, q, domain_read_free);
    }
}

static void route_job_get(struct tandem_node *node, struct tandem_http_request *r,
                          const char *param)
{
    route_get(node, r, param, "job");
}

static void route_box_get(struct tandem_node *node, struct tandem_http_request *r,
                          const char *param)
{
    route_get(node, r, param, "box");
}

/* Answers {"<key>":[items],"next":"id"|null} from a listing's text. */
static void serve_list_text(struct tandem_node *node, struct tandem_http_request *r,
                            const char *key, struct tandem_text *items, const char *next)
{
    struct tandem_text body;
    tandem_text_init(&body, TANDEM_LIST_BYTES_MAX + 2 * TANDEM_DOMAIN_ID_LEN_MAX + 64);
    tandem_text_cstr(&body, "{\"");
    tandem_text_cstr(&body, key);
    tandem_text_cstr(&body, "\":[");
    tandem_text_raw(&body, items->data != NULL ? items->data : "", items->len);
    tandem_text_cstr(&body, "],\"next\":");
    next[0] != '\0' ? tandem_text_string(&body, next, strlen(next))
                    : tandem_text_cstr(&body, "null");
    tandem_text_cstr(&body, "}");
    if (items->failed || body.failed) {
        tandem_route_error(node, r, 500, "out of memory for the listing");
    } else {
        tandem_route_json(node, r, 200, NULL, body.data);
    }
    tandem_text_free(&body);
}

/* A listing filter's value, NULL when the query did not give it. */
static const char *list_filter(const struct domain_read *q, unsigned i)
{
    return q->has_filter[i] ? q->filters[i] : NULL;
}

/* The fields every listing query has (the job and box query types differ). */
#define LIST_QUERY_COMMON_SET(query, q)                                                            \
    ((query).site = list_filter(q, 0), (query).status = list_filter(q, LIST_STATUS),               \
     (query).after = (q)->after, (query).limit = (q)->limit)

static int jobs_list(struct tandem_store *store, MDB_txn *txn, const struct domain_read *q,
                     struct tandem_text *items, char *next)
{
    struct tandem_job_query query = {.client = list_filter(q, 2), .stage = list_filter(q, 3)};
    LIST_QUERY_COMMON_SET(query, q);
    return tandem_job_list(store, txn, &query, items, next);
}

static int boxes_list(struct tandem_store *store, MDB_txn *txn, const struct domain_read *q,
                      struct tandem_text *items, char *next)
{
    struct tandem_box_query query = {.job = list_filter(q, 2)};
    LIST_QUERY_COMMON_SET(query, q);
    return tandem_box_list(store, txn, &query, items, next);
}

static const struct list_kind jobs_list_kind = {
    "jobs",
    {"site", "status", "client", "stage"},
    tandem_job_status_parse,
    "status must be queued, in_progress, on_hold, done or cancelled",
    jobs_list,
};

static const struct list_kind boxes_list_kind = {
    "boxes",
    {"site", "status", "job", NULL},
    tandem_box_status_parse,
    "status must be received, stored, picked, in_process, returned or disposed",
    boxes_list,
};

static void serve_list(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct domain_read *q = arg;
    char next[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    struct tandem_text items;
    MDB_txn *txn;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    tandem_text_init(&items, TANDEM_LIST_BYTES_MAX);
    if (q->list->list(&node->store, txn, q, &items, next) != 0) {
        tandem_text_free(&items);
        serve_txn_error(node, r, txn);
        return;
    }
    mdb_txn_abort(txn);
    serve_list_text(node, r, q->list->key, &items, next);
    tandem_text_free(&items);
}

/* On the pool: a filtered page may examine up to TANDEM_LIST_SCAN_MAX index entries. */
static int list_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct domain_read *q = arg;
    tandem_text_init(&q->items, TANDEM_LIST_BYTES_MAX);
    return q->list->list(store, txn, q, &q->items, q->next);
}

static void list_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg, int rv,
                        const char *errmsg)
{
    struct domain_read *q = arg;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
    } else {
        serve_list_text(node, r, q->list->key, &q->items, q->next);
    }
}

/* Whether the listing names a filter: it then walks an index, not the records by id. */
static bool list_filtered(const struct domain_read *q)
{
    for (unsigned i = 0; i < LIST_FILTERS_MAX; i++) {
        if (q->has_filter[i]) {
            return true;
        }
    }
    return false;
}

/* The listing's filters, limit and cursor from the query. Returns 0 or -1 with why filled. */
static int list_params(struct tandem_http_request *r, struct domain_read *q, char *why)
{
    const struct list_kind *kind = q->list;
    for (unsigned i = 0; i < LIST_FILTERS_MAX && kind->filters[i] != NULL; i++) {
        if (query_text(r, kind->filters[i], q->filters[i], &q->has_filter[i], why) != 0) {
            return -1;
        }
    }
    if (query_limit(r, &q->limit, why) != 0 || query_after_id(r, q->after, why) != 0) {
        return -1;
    }
    if (q->has_filter[LIST_STATUS] && kind->status_parse(q->filters[LIST_STATUS]) < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s", kind->status_why);
        return -1;
    }
    return 0;
}

static void route_list(struct tandem_node *node, struct tandem_http_request *r,
                       const struct list_kind *kind)
{
    char why[TANDEM_ERRMSG_SIZE];
    struct domain_read *q = domain_read_new(node, r);
    if (q == NULL) {
        return;
    }
    q->list = kind;
    if (list_params(r, q, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why); /* refused before any barrier */
        free(q);
        return;
    }
    /* Without a filter a page reads at most limit records by id: cheap enough for the loop. */
    if (list_filtered(q)) {
        tandem_route_read_pooled(node, r, list_work, list_answer, q, domain_read_free);
    } else {
        tandem_route_read(node, r, serve_list, q, domain_read_free);
    }
}

static void route_jobs_list(struct tandem_node *node, struct tandem_http_request *r,
                            const char *param)
{
    (void)param;
    route_list(node, r, &jobs_list_kind);
}

static void route_boxes_list(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    (void)param;
    route_list(node, r, &boxes_list_kind);
}

static json_t *next_seq_json(uint64_t next)
{
    return next != 0 ? json_integer((json_int_t)next) : json_null();
}

/* Pages by sequence number: a job's or box's trace (q->kind set) or the disposals, answered as
 * {"events"|"disposals":[...],"next":seq|null}. */
static void serve_seq_list(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct domain_read *q = arg;
    bool trace = q->kind[0] != '\0';
    uint64_t next;
    MDB_txn *txn;
    json_t *list = json_array();
    if (list == NULL || tandem_route_read_txn(node, r, &txn) != 0) {
        if (list == NULL) {
            tandem_route_error(node, r, 500, "out of memory");
        }
        json_decref(list);
        return;
    }
    int rv = trace ? tandem_trace_list(&node->store, txn, q->kind, q->id, q->after_seq, q->limit,
                                       list, &next)
                   : tandem_disposal_list(&node->store, txn, q->after_seq, q->limit, list, &next);
    if (rv != 0) {
        json_decref(list);
        serve_txn_error(node, r, txn);
        return;
    }
    mdb_txn_abort(txn);
    tandem_route_jansson(
        node, r, 200,
        json_pack("{s:o,s:o}", trace ? "events" : "disposals", list, "next", next_seq_json(next)));
}

/* A read paged by sequence number (?limit=&after=); NULL after answering r 400 or 500. */
static struct domain_read *seq_read_new(struct tandem_node *node, struct tandem_http_request *r)
{
    char why[TANDEM_ERRMSG_SIZE];
    struct domain_read *q = domain_read_new(node, r);
    if (q != NULL &&
        (query_limit(r, &q->limit, why) != 0 || query_after_seq(r, &q->after_seq, why) != 0)) {
        tandem_route_error(node, r, 400, "%s", why);
        free(q);
        return NULL;
    }
    return q;
}

/* GET /v1/trace/{job|box}/ID[?limit=&after=] */
static void route_trace_get(struct tandem_node *node, struct tandem_http_request *r,
                            const char *param)
{
    char why[TANDEM_ERRMSG_SIZE];
    const char *slash = strchr(param, '/');
    size_t kind_len = slash == NULL ? 0 : (size_t)(slash - param);
    if (kind_len != KIND_LEN ||
        (strncmp(param, "job", KIND_LEN) != 0 && strncmp(param, "box", KIND_LEN) != 0)) {
        tandem_route_error(node, r, 404, "no such route: %s (GET /v1/trace/job/ID or box/ID)",
                           r->path);
        return;
    }
    if (!tandem_route_id_ok(slash + 1)) {
        tandem_route_error(node, r, 400, "id must be 1 to %d of [A-Za-z0-9._:-]",
                           TANDEM_DOMAIN_ID_LEN_MAX);
        return;
    }
    struct domain_read *q = seq_read_new(node, r);
    if (q == NULL) {
        return;
    }
    memcpy(q->kind, param, KIND_LEN);
    snprintf(q->id, sizeof q->id, "%s", slash + 1);
    if (tandem_http_query_get(r->query, "limit", why, sizeof why) == 0) {
        q->limit = TANDEM_LIST_LIMIT_MAX; /* a whole timeline unless paging is asked for */
    }
    tandem_route_read(node, r, serve_seq_list, q, domain_read_free);
}

static void route_disposals_list(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *param)
{
    (void)param;
    struct domain_read *q = seq_read_new(node, r);
    if (q != NULL) {
        tandem_route_read(node, r, serve_seq_list, q, domain_read_free);
    }
}
