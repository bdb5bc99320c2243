/* Route table of capacity planning: site capacities and their history, the sites' load, and
 * rebalance plans computed here and applied as one command (the rules live in replication/). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/forward.h"
#include "node/node.h"
#include "node/api/api.h"
#include "replication/domain/domain.h"
#include "replication/rebalance/rebalance.h"
#include "storage/error.h"

#define PLANS_KEPT      8  /* computed plans kept in memory for apply by id */
#define QUERY_VALUE_MAX 64 /* a decoded query value: numbers, names, times */
#define PLAN_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))
#define CAPACITY_SUFFIX "/capacity"
#define HISTORY_SUFFIX  "/capacity/history"

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define REBALANCE_ROUTES(X)                                                                        \
    X(sites_list, HTTP_GET, "/v1/sites", TANDEM_ROUTE_READ, TANDEM_PERM_READ, route_sites_list)    \
    X(site_get, HTTP_GET, "/v1/sites/", TANDEM_ROUTE_READ | TANDEM_ROUTE_PREFIX, TANDEM_PERM_READ, \
      route_site_get)                                                                              \
    X(site_capacity_set, HTTP_POST, "/v1/sites/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX,        \
      TANDEM_PERM_PLAN, route_site_capacity_set)                                                   \
    X(rebalance_plan, HTTP_GET, "/v1/rebalance/plan", TANDEM_ROUTE_READ, TANDEM_PERM_PLAN,         \
      route_rebalance_plan)                                                                        \
    X(rebalance_apply, HTTP_POST, "/v1/rebalance/apply", TANDEM_ROUTE_WRITE, TANDEM_PERM_PLAN,     \
      route_rebalance_apply)

TANDEM_ROUTE_TABLE(tandem_rebalance_route_table, REBALANCE_ROUTES);

/* ---- plans kept for apply by id ----
 * A plan is computed by the node that answered GET /v1/rebalance/plan: the leader, unless
 * ?consistency=local. Its moves are kept here so that POST /v1/rebalance/apply {"id"} on the
 * same node needs nothing else; any node accepts the whole plan instead. tandemd runs one node
 * per process, and each entry names its node all the same. */
struct kept_plan {
    const struct tandem_node *node; /* borrowed: identity only */
    char id[TANDEM_REBALANCE_PLAN_ID_LEN + 1];
    json_t *plan; /* owned: {"id","index","objective","moves"} */
};

static struct kept_plan kept_plans[PLANS_KEPT];
static unsigned kept_next;

static void plan_keep(const struct tandem_node *node, json_t *plan)
{
    const char *id = json_string_value(json_object_get(plan, "id"));
    json_t *kept =
        json_pack("{s:O,s:O,s:O,s:O}", "id", json_object_get(plan, "id"), "index",
                  json_object_get(plan, "index"), "objective", json_object_get(plan, "objective"),
                  "moves", json_object_get(plan, "moves"));
    if (id == NULL || kept == NULL) {
        json_decref(kept);
        return; /* apply by id then says the plan is unknown; the whole plan still works */
    }
    for (unsigned i = 0; i < PLANS_KEPT; i++) {
        if (kept_plans[i].node == node && strcmp(kept_plans[i].id, id) == 0) {
            json_decref(kept);
            return;
        }
    }
    struct kept_plan *slot = &kept_plans[kept_next];
    kept_next = (kept_next + 1) % PLANS_KEPT;
    json_decref(slot->plan);
    slot->node = node;
    snprintf(slot->id, sizeof slot->id, "%s", id);
    slot->plan = kept;
}

/* A new reference to the kept plan with this id, NULL when none. */
static json_t *plan_kept(const struct tandem_node *node, const char *id)
{
    for (unsigned i = 0; i < PLANS_KEPT; i++) {
        if (kept_plans[i].node == node && kept_plans[i].plan != NULL &&
            strcmp(kept_plans[i].id, id) == 0) {
            return json_incref(kept_plans[i].plan);
        }
    }
    return NULL;
}

/* ---- shared helpers ---- */

static void respond_json(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, PLAN_JSON_FLAGS) : NULL;
    json_decref(body);
    if (text == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    tandem_route_json(node, r, 200, NULL, text);
    free(text);
}

/* Reads the planning view in txn (on the thread pool). Returns 0, or an error with *status
 * (413 too many jobs or sites, 503 out of memory, 500) and store->errmsg. */
static int view_read(struct tandem_store *store, MDB_txn *txn, struct tandem_rebalance_view *view,
                     int *status)
{
    int rv = tandem_rebalance_view_read(store, txn, view);
    if (rv != 0) {
        *status = rv == E2BIG ? 413 : rv == ENOMEM ? 503 : 500;
        tandem_rebalance_view_free(view);
    }
    return rv;
}

/* What a pooled read of the planning view hands back to the loop. */
struct view_result {
    int status; /* of an error; 200 when body is set */
    char errmsg[TANDEM_ERRMSG_SIZE];
    json_t *body; /* owned */
    char *text;   /* owned: body rendered on the pool */
};

static void view_result_release(struct view_result *v)
{
    json_decref(v->body);
    free(v->text);
}

/* On the pool: renders v->body (taken) into v->text. */
static int view_result_render(struct view_result *v, json_t *body)
{
    v->body = body;
    v->text = body != NULL ? json_dumps(body, PLAN_JSON_FLAGS) : NULL;
    if (v->text == NULL) {
        v->status = 503;
        return tandem_error_set(v->errmsg, TANDEM_NOMEM, "out of memory");
    }
    v->status = 200;
    return 0;
}

/* On the loop: answers r from v (rv: the pool's result). */
static void view_result_answer(struct tandem_node *node, struct tandem_http_request *r,
                               struct view_result *v, int rv, const char *errmsg)
{
    if (v->status == 200 && rv == 0) {
        tandem_route_json(node, r, 200, NULL, v->text);
    } else {
        tandem_route_error(node, r, v->status >= 400 ? v->status : 500, "%s",
                           v->errmsg[0] != '\0' ? v->errmsg : errmsg);
    }
}

/* A command with its actor and the parsed JSON body its strings point into. */
struct rebalance_write {
    struct tandem_route_write base; /* first: command, actor, body */
    Tandem__CapacitySet capacity_set;
    Tandem__RebalanceApply apply;
    struct tandem_rebalance_moves moves;
    char target[TANDEM_SITE_LEN_MAX + 1];
    char plan_id[TANDEM_REBALANCE_PLAN_ID_LEN + 1];
    char objective[QUERY_VALUE_MAX];
};

static void rebalance_write_free(void *arg)
{
    struct rebalance_write *w = arg;
    tandem_rebalance_moves_free(&w->moves);
    tandem_route_write_release(&w->base);
    free(w);
}

/* Parses the body (an object) and sets the actor; answers r and returns NULL on failure. */
static struct rebalance_write *rebalance_write_new(struct tandem_node *node,
                                                   struct tandem_http_request *r)
{
    return tandem_route_write_new(node, r, sizeof(struct rebalance_write), 503);
}

/* "SITE" + suffix in param: copies SITE into site. */
static bool param_site(const char *param, const char *suffix, char *site)
{
    size_t len = strlen(param), suffix_len = strlen(suffix);
    if (len <= suffix_len || strcmp(param + len - suffix_len, suffix) != 0 ||
        len - suffix_len > TANDEM_SITE_LEN_MAX) {
        return false;
    }
    memcpy(site, param, len - suffix_len);
    site[len - suffix_len] = '\0';
    return tandem_domain_site_ok(site);
}

/* ---- sites ---- */

struct site_read {
    char site[TANDEM_SITE_LEN_MAX + 1]; /* "" for the whole list */
    bool history;
    unsigned limit;
    int64_t now_ms;
    struct view_result result;
};

static void site_read_free(void *arg)
{
    struct site_read *q = arg;
    view_result_release(&q->result);
    free(q);
}

/* The one site's object out of the sites listing (taken), or NULL when it has none. */
static json_t *one_site(json_t *list, const char *name)
{
    json_t *sites = json_object_get(list, "sites"), *item, *found = NULL;
    size_t i;
    json_array_foreach(sites, i, item)
    {
        if (strcmp(json_string_value(json_object_get(item, "name")), name) == 0) {
            found = json_incref(item);
            break;
        }
    }
    json_decref(list);
    return found;
}

/* On the pool: every queued and in-progress job is read to sum the sites' load. */
static int sites_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct site_read *q = arg;
    struct view_result *v = &q->result;
    struct tandem_rebalance_view view;
    int rv = view_read(store, txn, &view, &v->status);
    if (rv != 0) {
        snprintf(v->errmsg, sizeof v->errmsg, "%s", store->errmsg);
        return rv;
    }
    json_t *list = tandem_rebalance_sites_json(&view, q->now_ms, v->errmsg);
    tandem_rebalance_view_free(&view);
    if (list == NULL) {
        v->status = 503;
        return TANDEM_NOMEM;
    }
    if (q->site[0] != '\0' && (list = one_site(list, q->site)) == NULL) {
        v->status = 404;
        return tandem_error_set(v->errmsg, TANDEM_NOTFOUND, "site not found: %s", q->site);
    }
    return view_result_render(v, list);
}

static void sites_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg, int rv,
                         const char *errmsg)
{
    struct site_read *q = arg;
    view_result_answer(node, r, &q->result, rv, errmsg);
}

static void serve_history(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct site_read *q = arg;
    MDB_txn *txn;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    json_t *history = tandem_capacity_history_json(&node->store, txn, q->site, q->limit);
    mdb_txn_abort(txn);
    if (history == NULL) {
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return;
    }
    respond_json(node, r, json_pack("{s:s,s:o}", "site", q->site, "history", history));
}

static void route_sites_list(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    (void)param;
    struct site_read *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    q->now_ms = node->proposer.now_ms();
    tandem_route_read_pooled(node, r, sites_work, sites_answer, q, site_read_free);
}

/* A query integer in [min, max]; *out keeps its default when absent. */
static int query_number(struct tandem_http_request *r, const char *name, long min, long max,
                        long *out)
{
    char text[QUERY_VALUE_MAX];
    int rv = tandem_http_query_get(r->query, name, text, sizeof text);
    if (rv == 0) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long value = rv < 0 ? 0 : strtol(text, &end, 10);
    if (rv < 0 || errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        return -1;
    }
    *out = value;
    return 0;
}

/* GET /v1/sites/SITE or /v1/sites/SITE/capacity/history[?limit=N] */
static void route_site_get(struct tandem_node *node, struct tandem_http_request *r,
                           const char *param)
{
    struct site_read *q = calloc(1, sizeof *q);
    long limit = TANDEM_LIST_LIMIT_DEFAULT;
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    q->history = param_site(param, HISTORY_SUFFIX, q->site);
    if (!q->history && tandem_domain_site_ok(param)) {
        snprintf(q->site, sizeof q->site, "%s", param);
    } else if (!q->history) {
        tandem_route_error(node, r, 404,
                           "no such route: %s (GET /v1/sites/SITE or /v1/sites/SITE%s)", r->path,
                           HISTORY_SUFFIX);
        free(q);
        return;
    }
    if (query_number(r, "limit", 1, TANDEM_CAPACITY_HISTORY_LIMIT_MAX, &limit) != 0) {
        tandem_route_error(node, r, 400, "limit must be an integer from 1 to %d",
                           TANDEM_CAPACITY_HISTORY_LIMIT_MAX);
        free(q);
        return;
    }
    q->limit = (unsigned)limit;
    q->now_ms = node->proposer.now_ms();
    if (q->history) { /* a page of at most TANDEM_CAPACITY_HISTORY_LIMIT_MAX records */
        tandem_route_read(node, r, serve_history, q, site_read_free);
    } else {
        tandem_route_read_pooled(node, r, sites_work, sites_answer, q, site_read_free);
    }
}

/* POST /v1/sites/SITE/capacity {"capacity": N} */
static void route_site_capacity_set(struct tandem_node *node, struct tandem_http_request *r,
                                    const char *param)
{
    char site[TANDEM_SITE_LEN_MAX + 1];
    if (!param_site(param, CAPACITY_SUFFIX, site)) {
        tandem_route_error(node, r, 404, "no such route: %s (POST /v1/sites/SITE%s)", r->path,
                           CAPACITY_SUFFIX);
        return;
    }
    struct rebalance_write *w = rebalance_write_new(node, r);
    if (w == NULL) {
        return;
    }
    static const struct tandem_route_field fields[] = {TANDEM_REQUIRED("capacity", INT),
                                                       TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    json_t *capacity = json_object_get(w->base.json, "capacity");
    if (tandem_route_fields_check(w->base.json, fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s: the body must be {\"capacity\": N}", why);
        rebalance_write_free(w);
        return;
    }
    if (!json_is_integer(capacity) || json_integer_value(capacity) < 0 ||
        json_integer_value(capacity) > (json_int_t)TANDEM_SITE_CAPACITY_MAX) {
        tandem_route_error(node, r, 400,
                           "body must be {\"capacity\": N}, N effort units per hour from 0 to %u",
                           TANDEM_SITE_CAPACITY_MAX);
        rebalance_write_free(w);
        return;
    }
    snprintf(w->target, sizeof w->target, "%s", site);
    tandem__capacity_set__init(&w->capacity_set);
    w->capacity_set.actor = &w->base.actor;
    w->capacity_set.site = w->target;
    w->capacity_set.capacity = (uint64_t)json_integer_value(capacity);
    w->base.command.body_case = TANDEM__COMMAND__BODY_CAPACITY_SET;
    w->base.command.capacity_set = &w->capacity_set;
    tandem_route_submit(node, r, &w->base.command, rebalance_write_free, w);
}

/* ---- plans ---- */

struct plan_read {
    int objective;
    size_t max_moves;
    int64_t at_ms; /* the plan's time: ?at= or now, taken on the loop */
    struct view_result result;
};

static void plan_read_free(void *arg)
{
    struct plan_read *q = arg;
    view_result_release(&q->result);
    free(q);
}

/* On the pool: the planner reads every queued and in-progress job (0.3 s per 100,000). */
static int plan_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct plan_read *q = arg;
    struct view_result *v = &q->result;
    struct tandem_rebalance_view view;
    int rv = view_read(store, txn, &view, &v->status);
    if (rv != 0) {
        snprintf(v->errmsg, sizeof v->errmsg, "%s", store->errmsg);
        return rv;
    }
    v->status = 500;
    json_t *plan = tandem_rebalance_plan_json(&view, q->objective, q->max_moves, q->at_ms,
                                              &v->status, v->errmsg);
    tandem_rebalance_view_free(&view);
    return plan == NULL ? TANDEM_INVALID : view_result_render(v, plan);
}

static void plan_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg, int rv,
                        const char *errmsg)
{
    struct plan_read *q = arg;
    if (rv == 0 && q->result.body != NULL) {
        plan_keep(node, q->result.body); /* kept on the loop: POST /v1/rebalance/apply {"id"} */
    }
    view_result_answer(node, r, &q->result, rv, errmsg);
}

/* GET /v1/rebalance/plan[?objective=makespan|due&max_moves=N&at=TIME] */
static void route_rebalance_plan(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *param)
{
    char text[QUERY_VALUE_MAX];
    long max_moves = TANDEM_REBALANCE_MOVES_DEFAULT;
    (void)param;
    struct plan_read *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    int rv = tandem_http_query_get(r->query, "objective", text, sizeof text);
    q->objective = rv == 0  ? TANDEM_REBALANCE_MAKESPAN
                   : rv < 0 ? -1
                            : tandem_rebalance_objective_parse(text);
    if (q->objective < 0) {
        tandem_route_error(node, r, 400, "objective must be makespan or due");
    } else if (query_number(r, "max_moves", 0, TANDEM_REBALANCE_MOVES_MAX, &max_moves) != 0) {
        tandem_route_error(node, r, 400, "max_moves must be an integer from 0 to %d",
                           TANDEM_REBALANCE_MOVES_MAX);
    } else if ((rv = tandem_http_query_get(r->query, "at", text, sizeof text)) != 0 &&
               (rv < 0 || tandem_rfc3339_parse(text, &q->at_ms) != 0 || q->at_ms == 0)) {
        tandem_route_error(node, r, 400,
                           "at must be an RFC 3339 date-time such as 2024-05-01T09:00:00Z");
    } else {
        q->max_moves = (size_t)max_moves;
        q->at_ms = q->at_ms != 0 ? q->at_ms : node->proposer.now_ms();
        tandem_route_read_pooled(node, r, plan_work, plan_answer, q, plan_read_free);
        return;
    }
    plan_read_free(q);
}

/* Fills the apply command from a plan object {"id","index","objective","moves"}; answers r with
 * 400 and returns -1 when it is malformed or its id does not match. */
static int apply_from_plan(struct tandem_node *node, struct tandem_http_request *r,
                           struct rebalance_write *w, json_t *plan)
{
    char why[TANDEM_ERRMSG_SIZE], id[TANDEM_REBALANCE_PLAN_ID_LEN + 1];
    json_t *index = json_object_get(plan, "index");
    const char *objective = json_string_value(json_object_get(plan, "objective"));
    if (!json_is_integer(index) || json_integer_value(index) < 0 || objective == NULL ||
        tandem_rebalance_objective_parse(objective) < 0) {
        tandem_route_error(node, r, 400,
                           "a plan needs \"index\" and \"objective\" as GET /v1/rebalance/plan "
                           "gave them");
        return -1;
    }
    if (tandem_rebalance_moves_parse(json_object_get(plan, "moves"), &w->moves, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        return -1;
    }
    snprintf(w->objective, sizeof w->objective, "%s", objective);
    tandem__rebalance_apply__init(&w->apply);
    w->apply.actor = &w->base.actor;
    w->apply.plan_id = w->plan_id;
    w->apply.index = (uint64_t)json_integer_value(index);
    w->apply.objective = w->objective;
    w->apply.n_moves = w->moves.n;
    w->apply.moves = w->moves.ptrs;
    if (tandem_rebalance_plan_id(w->apply.index, w->objective, w->moves.ptrs, w->moves.n, id) !=
            0 ||
        strcmp(id, w->plan_id) != 0) {
        tandem_route_error(node, r, 400,
                           "plan id %s does not match its index, objective and moves (expected "
                           "%s): send the plan unchanged",
                           w->plan_id, id);
        return -1;
    }
    return 0;
}

/* What POST /v1/rebalance/apply takes: {"id"}, or the plan as GET /v1/rebalance/plan gave it. */
static const struct tandem_route_field plan_id_fields[] = {TANDEM_REQUIRED("id", STRING),
                                                           TANDEM_FIELDS_END};
static const struct tandem_route_field plan_fields[] = {
    TANDEM_REQUIRED("id", STRING),          TANDEM_REQUIRED("index", INT),
    TANDEM_REQUIRED("objective", STRING),   TANDEM_REQUIRED("moves", ARRAY),
    TANDEM_OPTIONAL("at", STRING),          TANDEM_OPTIONAL("max_moves", INT),
    TANDEM_OPTIONAL("sites", ARRAY),        TANDEM_OPTIONAL("before", ANY),
    TANDEM_OPTIONAL("after", ANY),          TANDEM_OPTIONAL("excluded", ANY),
    TANDEM_OPTIONAL("excluded_total", INT), TANDEM_FIELDS_END};

/* POST /v1/rebalance/apply {"id"} (a plan this node computed) or the whole plan */
static void route_rebalance_apply(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *param)
{
    (void)param;
    struct rebalance_write *w = rebalance_write_new(node, r);
    if (w == NULL) {
        return;
    }
    char why[TANDEM_ERRMSG_SIZE];
    bool whole = json_object_get(w->base.json, "moves") != NULL;
    if (tandem_route_fields_check(w->base.json, whole ? plan_fields : plan_id_fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s: the body must be {\"id\": PLAN_ID} or the whole plan",
                           why);
        rebalance_write_free(w);
        return;
    }
    const char *id = json_string_value(json_object_get(w->base.json, "id"));
    if (id == NULL || strlen(id) != TANDEM_REBALANCE_PLAN_ID_LEN) {
        tandem_route_error(node, r, 400, "body must be {\"id\": PLAN_ID} or the whole plan");
        rebalance_write_free(w);
        return;
    }
    snprintf(w->plan_id, sizeof w->plan_id, "%s", id);
    json_t *plan = json_object_get(w->base.json, "moves") != NULL ? json_incref(w->base.json)
                                                                  : plan_kept(node, w->plan_id);
    if (plan == NULL) {
        tandem_route_error(node, r, 404,
                           "plan %s is not known to %s (plans are kept in the memory of the node "
                           "that computed them, %d at most): compute a new plan, or send the "
                           "whole plan",
                           w->plan_id, node->self.name, PLANS_KEPT);
        rebalance_write_free(w);
        return;
    }
    json_decref(w->base.json);
    w->base.json = plan; /* the command's strings point into it */
    if (apply_from_plan(node, r, w, plan) != 0) {
        rebalance_write_free(w);
        return;
    }
    w->base.command.body_case = TANDEM__COMMAND__BODY_REBALANCE_APPLY;
    w->base.command.rebalance_apply = &w->apply;
    tandem_route_submit(node, r, &w->base.command, rebalance_write_free, w);
}
