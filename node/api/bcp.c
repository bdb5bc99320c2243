/* Route table of sites and BCP: status, planned invoke and revoke (waiting for the takeover),
 * forced invoke, drills and their history, member rejoin, and the node-local re-seed and
 * recover endpoints the forced path and rejoin call. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/statvfs.h>

#include "consensus/recover.h"
#include "node/api/api.h"
#include "node/bcp/divergence.h"
#include "node/bcp/drill.h"
#include "node/bcp/force.h"
#include "node/bcp/rejoin.h"
#include "node/bcp/takeover.h"
#include "node/log.h"
#include "node/node.h"
#include "node/tls_identity.h"
#include "replication/bcp/sites.h"
#include "storage/clock.h"
#include "storage/error.h"

#define WAIT_MS_DEFAULT       8000 /* invoke/revoke answer after the takeover, or 202 after this */
#define WAIT_MS_MAX           60000
#define WAIT_FORWARD_SLACK_MS 1000 /* stay inside the forwarding node's forward_timeout_ms */
#define DRILLS_LIMIT_DEFAULT  20
#define DRILLS_LIMIT_MAX      TANDEM_DRILLS_KEPT

/* ---- helpers ---- */

static json_t *body_json(struct tandem_node *node, struct tandem_http_request *r)
{
    json_error_t jerr;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    if (body == NULL || !json_is_object(body)) {
        tandem_route_error(node, r, 400, "body must be a JSON object%s%s", body ? "" : ": ",
                           body ? "" : jerr.text);
        json_decref(body);
        return NULL;
    }
    return body;
}

typedef void (*body_route_fn)(struct tandem_node *node, struct tandem_http_request *r,
                              json_t *body);

/* Runs handler with r's body parsed as a JSON object whose fields are all in fields, with their
 * types (400 naming the field otherwise). */
static void with_body(struct tandem_node *node, struct tandem_http_request *r,
                      const struct tandem_route_field *fields, body_route_fn handler)
{
    char why[TANDEM_ERRMSG_SIZE];
    json_t *body = body_json(node, r);
    if (body != NULL && tandem_route_fields_check(body, fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
    } else if (body != NULL) {
        handler(node, r, body);
    }
    json_decref(body);
}

/* A route of the table whose handler takes the parsed body, checked against fields. */
#define BODY_ROUTE(route, fields, handler)                                                         \
    static void route(struct tandem_node *node, struct tandem_http_request *r, const char *p)      \
    {                                                                                              \
        (void)p;                                                                                   \
        with_body(node, r, fields, handler);                                                       \
    }

/* The bodies the routes take. What every site change takes; invoke and revoke add theirs. */
#define SITE_CHANGE_FIELDS                                                                         \
    TANDEM_REQUIRED("site", STRING), TANDEM_OPTIONAL("reason", STRING),                            \
        TANDEM_OPTIONAL("by", STRING), TANDEM_OPTIONAL("wait_ms", INT)
static const struct tandem_route_field invoke_fields[] = {
    SITE_CHANGE_FIELDS, TANDEM_OPTIONAL("force", BOOL), TANDEM_OPTIONAL("confirm_lost", ARRAY),
    TANDEM_OPTIONAL("dry_run", BOOL), TANDEM_FIELDS_END};
static const struct tandem_route_field revoke_fields[] = {
    SITE_CHANGE_FIELDS, TANDEM_OPTIONAL("failback", BOOL), TANDEM_OPTIONAL("return_jobs", BOOL),
    TANDEM_OPTIONAL("dry_run", BOOL), TANDEM_FIELDS_END};
static const struct tandem_route_field prefer_fields[] = {TANDEM_REQUIRED("site", STRING),
                                                          TANDEM_FIELDS_END};
static const struct tandem_route_field drill_fields[] = {
    TANDEM_REQUIRED("site", STRING), TANDEM_OPTIONAL("dry_run", BOOL), TANDEM_OPTIONAL("rate", INT),
    TANDEM_OPTIONAL("reason", STRING), TANDEM_FIELDS_END};
/* The drill report as node/bcp/drill.c's report_build writes it. */
static const struct tandem_route_field drill_report_fields[] = {
    TANDEM_REQUIRED("id", STRING),
    TANDEM_REQUIRED("site", STRING),
    TANDEM_REQUIRED("started", INT),
    TANDEM_REQUIRED("finished", INT),
    TANDEM_REQUIRED("ok", BOOL),
    TANDEM_REQUIRED("rto_ms", INT),
    TANDEM_REQUIRED("rpo_writes", INT),
    TANDEM_REQUIRED("digests_equal", BOOL),
    TANDEM_OPTIONAL("jobs_moved", ANY),
    TANDEM_OPTIONAL("jobs_returned", ANY),
    TANDEM_OPTIONAL("takeover_ms", INT),
    TANDEM_OPTIONAL("failback_ms", INT),
    TANDEM_OPTIONAL("timeline", ANY),
    TANDEM_OPTIONAL("preflight", ANY),
    TANDEM_OPTIONAL("probe", OBJECT),
    TANDEM_OPTIONAL("failback", BOOL),
    TANDEM_OPTIONAL("takeover_gap_ms", ANY),
    TANDEM_OPTIONAL("failback_gap_ms", ANY),
    TANDEM_OPTIONAL("error", STRING),
    TANDEM_OPTIONAL("probe_latency", OBJECT), /* the console's chart (issue 15) */
    TANDEM_OPTIONAL("reason", STRING),
    TANDEM_OPTIONAL("digests", ARRAY),
    TANDEM_FIELDS_END};
static const struct tandem_route_field rejoin_fields[] = {TANDEM_OPTIONAL("by", STRING),
                                                          TANDEM_FIELDS_END};
static const struct tandem_route_field reseed_fields[] = {
    TANDEM_REQUIRED("epoch", INT),  TANDEM_OPTIONAL("cluster_id", STRING),
    TANDEM_OPTIONAL("force", BOOL), TANDEM_OPTIONAL("forced", ARRAY),
    TANDEM_OPTIONAL("by", STRING),  TANDEM_FIELDS_END};
static const struct tandem_route_field recover_fields[] = {
    TANDEM_REQUIRED("epoch", INT), TANDEM_REQUIRED("site", STRING),
    TANDEM_OPTIONAL("reason", STRING), TANDEM_REQUIRED("members", ARRAY), TANDEM_FIELDS_END};
static const struct tandem_route_field recover_member_fields[] = {
    TANDEM_REQUIRED("name", STRING), TANDEM_REQUIRED("site", STRING),
    TANDEM_REQUIRED("raft", STRING), TANDEM_REQUIRED("api", STRING),
    TANDEM_OPTIONAL("role", STRING), TANDEM_FIELDS_END};

static int load_table(struct tandem_node *node, struct tandem_http_request *r,
                      struct tandem_site_table *t)
{
    MDB_txn *txn;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return -1;
    }
    int rv = tandem_sites_load(&node->store, txn, t);
    mdb_txn_abort(txn);
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return -1;
    }
    return 0;
}

static void reply_json(void *data, void *request, int status, json_t *body)
{
    tandem_route_jansson(data, request, status, body);
}

static void reply_error(void *data, void *request, int status, const char *message)
{
    tandem_route_error(data, request, status, "%s", message);
}

static void reply_text(void *data, void *request, int status, const char *extra_headers,
                       const char *body, size_t body_len)
{
    tandem_node_respond(data, request, status, "application/json", extra_headers, body, body_len);
}

static const struct tandem_bcp_reply_ops reply_ops = {reply_json, reply_error, reply_text};

/* How node/bcp/ answers r. */
static struct tandem_bcp_reply reply_to(struct tandem_node *node, struct tandem_http_request *r)
{
    return (struct tandem_bcp_reply){.ops = &reply_ops, .data = node, .request = r};
}

/* ---- status and drills history ---- */

static json_t *node_view_json(struct tandem_node *node);

/* The answering node's own row gets its view at once (the others' come from probes). */
static void status_self_view(struct tandem_node *node, json_t *body)
{
    size_t i, j;
    json_t *site, *member;
    json_array_foreach(json_object_get(body, "sites"), i, site)
    {
        json_array_foreach(json_object_get(site, "nodes"), j, member)
        {
            const char *name = json_string_value(json_object_get(member, "name"));
            json_t *view =
                name != NULL && strcmp(name, node->self.name) == 0 ? node_view_json(node) : NULL;
            if (view != NULL) {
                json_object_set_new(view, "age_ms", json_integer(0));
                json_object_set_new(member, "view", view);
            }
        }
    }
}

static void status_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    MDB_txn *txn;
    (void)arg;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    json_t *body = tandem_bcp_status_json(&node->bcp, txn);
    mdb_txn_abort(txn);
    if (body == NULL) {
        tandem_route_error(node, r, 500, "site table: %s", node->store.errmsg);
        return;
    }
    json_t *backups = tandem_backups_status_json(node); /* issue 14 item 5 */
    json_object_set_new(body, "backups", backups != NULL ? backups : json_null());
    status_self_view(node, body);
    if (tandem_route_local(r)) {
        /* This node's own view, never forwarded: say so, and how old it is. */
        json_t *local = tandem_bcp_local_json(&node->bcp, node->proposer.now_ms());
        json_object_update(body, local);
        json_decref(local);
    }
    tandem_route_jansson(node, r, 200, body);
}

/* ?consistency=local: this node's view at once, leader or not (tandemctl bcp status --local and
 * its fallback when no leader answers). */
static void route_bcp_status(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_route_read(node, r, status_serve, NULL, NULL);
}

static const struct tandem_route_history drills_history = {
    "drills", DRILLS_LIMIT_DEFAULT, DRILLS_LIMIT_MAX, tandem_sites_drills_json};

static void route_bcp_drills(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_route_history(node, r, &drills_history);
}

/* ---- proposals ---- */

/* A site command with its strings, alive until the proposal finished. */
struct site_command {
    Tandem__Command command;
    Tandem__SiteUpdate update;
    Tandem__DrillStore drill_store;
    Tandem__DrillRecord drill;
    char site[TANDEM_SITE_LEN_MAX + 1];
    char reason[TANDEM_SITE_REASON_LEN_MAX + 1];
    char by[TANDEM_SITE_BY_LEN_MAX + 1];
    char drill_id[TANDEM_DRILL_ID_LEN_MAX + 1];
    char *report; /* owned */
};

static void site_command_free(void *owner)
{
    struct site_command *sc = owner;
    free(sc->report);
    free(sc);
}

static struct site_command *site_command_new(int change, const char *site, const char *reason,
                                             const char *by)
{
    struct site_command *sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        return NULL;
    }
    tandem__command__init(&sc->command);
    tandem__site_update__init(&sc->update);
    snprintf(sc->site, sizeof sc->site, "%s", site);
    snprintf(sc->reason, sizeof sc->reason, "%s", reason);
    snprintf(sc->by, sizeof sc->by, "%s", by);
    sc->update.action = (Tandem__SiteUpdate__Action)change;
    sc->update.site = sc->site;
    sc->update.reason = sc->reason;
    sc->update.by = sc->by;
    sc->command.body_case = TANDEM__COMMAND__BODY_SITE_UPDATE;
    sc->command.site_update = &sc->update;
    return sc;
}

/* Validates the common {"site","reason","by"} fields. Returns 0, or -1 after answering 400. */
static int site_fields(struct tandem_node *node, struct tandem_http_request *r, json_t *body,
                       const char **site, const char **reason, const char **by)
{
    *site = json_string_value(json_object_get(body, "site"));
    *reason = json_string_value(json_object_get(body, "reason"));
    *by = json_string_value(json_object_get(body, "by"));
    if (*site == NULL || !tandem_member_name_ok(*site, TANDEM_SITE_LEN_MAX)) {
        tandem_route_error(node, r, 400,
                           "\"site\" must be a site label (1-%d of A-Z a-z 0-9 . _ -)",
                           TANDEM_SITE_LEN_MAX);
        return -1;
    }
    if ((*reason != NULL && strlen(*reason) > TANDEM_SITE_REASON_LEN_MAX) ||
        (*by != NULL && strlen(*by) > TANDEM_SITE_BY_LEN_MAX)) {
        tandem_route_error(node, r, 400, "\"reason\" or \"by\" too long");
        return -1;
    }
    return 0;
}

static unsigned wait_bound_ms(struct tandem_node *node, json_t *body)
{
    json_t *wait = json_object_get(body, "wait_ms");
    unsigned ms = WAIT_MS_DEFAULT;
    if (json_is_integer(wait) && json_integer_value(wait) >= 0 &&
        json_integer_value(wait) <= WAIT_MS_MAX) {
        ms = (unsigned)json_integer_value(wait);
    }
    unsigned forward = node->config->forward_timeout_ms;
    unsigned cap = forward > WAIT_FORWARD_SLACK_MS ? forward - WAIT_FORWARD_SLACK_MS : forward / 2;
    return ms < cap ? ms : cap;
}

/* A site change submitted by a route: answered with its result, or waited for. */
struct change_request {
    struct tandem_write write;
    struct site_command *sc;
    struct tandem_node *node;
    struct tandem_http_request *r;
    int kind; /* enum tandem_bcp_wait_kind, or -1 for no waiting */
    bool failback;
    unsigned wait_ms;
};

/* A site taken out of service is a failover: warn, whoever asked (an operator, a drill). */
static void change_log(const struct change_request *c, const struct tandem_result *result)
{
    const Tandem__SiteUpdate *u = &c->sc->update;
    if (result->status == 200 && c->kind == TANDEM_BCP_WAIT_INVOKE) {
        tandem_log(TANDEM_LOG_WARN, "site %s invoked by %s (%s): its work moves to another site",
                   u->site, u->by, u->reason);
    } else if (result->status == 200 && c->kind == TANDEM_BCP_WAIT_REVOKE) {
        tandem_log(TANDEM_LOG_INFO, "site %s revoked by %s (%s)%s", u->site, u->by, u->reason,
                   c->failback ? ", with failback" : "");
    }
}

static void change_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct change_request *c = w->data;
    if (status == 0) {
        change_log(c, result);
    }
    if (status != 0) {
        tandem_route_raft_error(c->node, c->r, status);
    } else if (result->status != 200 || c->kind < 0 || c->wait_ms == 0) {
        tandem_route_json(c->node, c->r, result->status, NULL, result->body);
    } else {
        json_t *applied = json_loads(result->body == NULL ? "{}" : result->body, 0, NULL);
        const char *key = c->kind == TANDEM_BCP_WAIT_REVOKE ? "jobs_returned" : "jobs_moved";
        json_int_t moved = json_integer_value(json_object_get(applied, key));
        json_decref(applied);
        struct tandem_bcp_reply reply = reply_to(c->node, c->r);
        tandem_bcp_wait_start(&c->node->bcp, &reply, (enum tandem_bcp_wait_kind)c->kind,
                              c->sc->site, c->failback, c->wait_ms, moved);
    }
    site_command_free(c->sc);
    free(c);
}

static void change_submit(struct tandem_node *node, struct tandem_http_request *r,
                          struct site_command *sc, int kind, bool failback, unsigned wait_ms)
{
    struct change_request *c = sc == NULL ? NULL : calloc(1, sizeof *c);
    if (c == NULL) {
        if (sc != NULL) {
            site_command_free(sc);
        }
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    *c = (struct change_request){.write = {.command = &sc->command, .data = c, .cb = change_cb},
                                 .sc = sc,
                                 .node = node,
                                 .r = r,
                                 .kind = kind,
                                 .failback = failback,
                                 .wait_ms = wait_ms};
    int rv = tandem_proposer_write(&node->proposer, &c->write);
    if (rv != 0) {
        tandem_route_raft_error(node, r, rv);
        site_command_free(sc);
        free(c);
    }
}

/* ---- planned invoke, revoke, prefer ---- */

/* A dry run's answer: what the change would do now, and nothing done. */
static void dry_run_answer(struct tandem_node *node, struct tandem_http_request *r,
                           const char *action, const char *site, bool failback, bool return_jobs)
{
    bool invoke = strcmp(action, "invoke") == 0;
    struct tandem_bcp_reply reply = reply_to(node, r);
    /* The jobs that would move are read on the thread pool: the answer may come later. */
    tandem_bcp_change_preview(
        &node->bcp, &reply, site, invoke, failback, return_jobs,
        json_pack("{s:b,s:s,s:s}", "dry_run", true, "action", action, "site", site));
}

static void invoke_planned(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    const char *site, *reason, *by;
    struct tandem_site_table *t = malloc(sizeof *t);
    if (t == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    struct tandem_bcp_reply reply = reply_to(node, r);
    if (site_fields(node, r, body, &site, &reason, &by) != 0 || load_table(node, r, t) != 0 ||
        tandem_bcp_invoke_precheck(&node->bcp, t, site, &reply) != 0) {
        free(t);
        return;
    }
    free(t);
    if (json_is_true(json_object_get(body, "dry_run"))) {
        dry_run_answer(node, r, "invoke", site, false, false);
        return;
    }
    struct site_command *sc = site_command_new(
        TANDEM_SITE_INVOKE, site, reason ? reason : "planned invoke", by ? by : "operator");
    change_submit(node, r, sc, TANDEM_BCP_WAIT_INVOKE, false, wait_bound_ms(node, body));
}

static bool forwarded(const struct tandem_http_request *r)
{
    return tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL;
}

/* Invoke and revoke move leadership themselves: they go to the leader over a bcp client that a
 * leader change does not cancel (node/bcp/takeover.h). */
static void relay_to_leader(struct tandem_node *node, struct tandem_http_request *r)
{
    struct tandem_bcp_reply reply = reply_to(node, r);
    tandem_bcp_relay_to_leader(&node->bcp, &reply, r->url, r->body, forwarded(r));
}

/* "confirm_lost": an array of 1..TANDEM_BCP_CONFIRM_LOST_MAX distinct member names, or absent
 * (*n = 0). Answers 400 and returns -1 otherwise. */
static int confirm_lost_field(struct tandem_node *node, struct tandem_http_request *r, json_t *body,
                              const char **names, unsigned *n)
{
    json_t *list = json_object_get(body, "confirm_lost"), *v;
    size_t i;
    *n = 0;
    if (list == NULL) {
        return 0;
    }
    bool ok = json_is_array(list) && json_array_size(list) > 0 &&
              json_array_size(list) <= TANDEM_BCP_CONFIRM_LOST_MAX &&
              json_is_true(json_object_get(body, "force"));
    json_array_foreach(list, i, v)
    {
        const char *name = json_string_value(v);
        ok = ok && name != NULL && tandem_member_name_ok(name, TANDEM_NAME_LEN_MAX);
        for (unsigned k = 0; ok && k < *n; k++) {
            ok = strcmp(names[k], name) != 0;
        }
        if (ok) {
            names[(*n)++] = name;
        }
    }
    if (!ok) {
        tandem_route_error(node, r, 400,
                           "\"confirm_lost\" needs \"force\": true and 1-%d distinct member names",
                           TANDEM_BCP_CONFIRM_LOST_MAX);
        return -1;
    }
    return 0;
}

static void invoke_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    const char *confirmed[TANDEM_BCP_CONFIRM_LOST_MAX];
    unsigned n_confirmed = 0;
    if (confirm_lost_field(node, r, body, confirmed, &n_confirmed) != 0) {
        return;
    }
    if (json_is_true(json_object_get(body, "force")) &&
        json_is_true(json_object_get(body, "dry_run"))) {
        tandem_route_error(node, r, 400,
                           "\"dry_run\" is for planned invokes: a forced one is decided by the "
                           "members reachable when it runs");
    } else if (json_is_true(json_object_get(body, "force"))) {
        const char *site, *reason, *by;
        if (site_fields(node, r, body, &site, &reason, &by) == 0) {
            struct tandem_bcp_reply reply = reply_to(node, r);
            tandem_bcp_force_invoke_confirmed(&node->bcp, &reply, site,
                                              reason ? reason : "forced failover", confirmed,
                                              n_confirmed);
        }
    } else if (raft_state(&node->raft.raft) == RAFT_LEADER && !node->bcp.fenced) {
        invoke_planned(node, r, body);
    } else {
        relay_to_leader(node, r);
    }
}

BODY_ROUTE(route_bcp_invoke, invoke_fields, invoke_body)

/* A revoke's dry run: refused as the revoke itself would be (no such site, or a state the table
 * of allowed moves has no revoke from). */
static void revoke_dry_run(struct tandem_node *node, struct tandem_http_request *r,
                           const char *site, json_t *body)
{
    struct tandem_site_table *t = malloc(sizeof *t);
    if (t == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    if (load_table(node, r, t) != 0) {
        free(t);
        return;
    }
    const struct tandem_site *s = tandem_site_table_find(t, site);
    if (s == NULL) {
        tandem_route_error(node, r, 404, "no site named %s in the site table", site);
    } else if (tandem_site_next_state(s->state, TANDEM_SITE_REVOKE) < 0) {
        tandem_route_error(node, r, 409, "site %s is %s: cannot revoke it", site,
                           tandem_site_state_name(s->state));
    } else {
        dry_run_answer(node, r, "revoke", site, json_is_true(json_object_get(body, "failback")),
                       json_is_true(json_object_get(body, "return_jobs")));
    }
    free(t);
}

static void revoke_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    const char *site, *reason, *by;
    if (site_fields(node, r, body, &site, &reason, &by) != 0) {
        return;
    }
    if (json_is_true(json_object_get(body, "dry_run"))) {
        revoke_dry_run(node, r, site, body);
    } else {
        bool failback = json_is_true(json_object_get(body, "failback"));
        struct site_command *sc = site_command_new(
            TANDEM_SITE_REVOKE, site, reason ? reason : "revoke", by ? by : "operator");
        if (sc != NULL) {
            sc->update.failback = failback;
            sc->update.return_jobs = json_is_true(json_object_get(body, "return_jobs"));
        }
        change_submit(node, r, sc, TANDEM_BCP_WAIT_REVOKE, failback, wait_bound_ms(node, body));
    }
}

/* Checked here before it is relayed: a bad body gets its 400 from the node asked. */
static void revoke_or_relay(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    if (raft_state(&node->raft.raft) != RAFT_LEADER || node->bcp.fenced) {
        relay_to_leader(node, r);
    } else {
        revoke_body(node, r, body);
    }
}

BODY_ROUTE(route_bcp_revoke, revoke_fields, revoke_or_relay)

static void prefer_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    const char *site = json_string_value(json_object_get(body, "site"));
    if (site == NULL || (site[0] != '\0' && !tandem_member_name_ok(site, TANDEM_SITE_LEN_MAX))) {
        tandem_route_error(node, r, 400, "body must be {\"site\": \"<site>\" or \"\"}");
    } else {
        change_submit(node, r,
                      site_command_new(TANDEM_SITE_PREFER, site, "operator preference", "operator"),
                      -1, false, 0);
    }
}

BODY_ROUTE(route_bcp_prefer, prefer_fields, prefer_body)

/* ---- drills ---- */

static void drill_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    if (node->bcp.fenced) {
        tandem_route_error(node, r, 503, "this node is fenced");
    } else {
        struct tandem_bcp_reply reply = reply_to(node, r);
        tandem_bcp_drill_start(&node->bcp, &reply, body);
    }
}

BODY_ROUTE(route_bcp_drill, drill_fields, drill_body)

static void drill_store_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    const char *id = json_string_value(json_object_get(body, "id"));
    const char *site = json_string_value(json_object_get(body, "site"));
    char *report = json_dumps(body, JSON_COMPACT);
    struct site_command *sc = calloc(1, sizeof *sc);
    if (id == NULL || site == NULL || strlen(id) > TANDEM_DRILL_ID_LEN_MAX || id[0] == '\0' ||
        strlen(site) > TANDEM_SITE_LEN_MAX || report == NULL || sc == NULL ||
        strlen(report) > TANDEM_DRILL_REPORT_BYTES_MAX) {
        tandem_route_error(node, r, 400,
                           "a drill report needs \"id\" and \"site\" and must be "
                           "at most 256 KiB");
        free(report);
        free(sc);
        return;
    }
    tandem__command__init(&sc->command);
    tandem__drill_store__init(&sc->drill_store);
    tandem__drill_record__init(&sc->drill);
    snprintf(sc->drill_id, sizeof sc->drill_id, "%s", id);
    snprintf(sc->site, sizeof sc->site, "%s", site);
    sc->report = report;
    sc->drill.id = sc->drill_id;
    sc->drill.site = sc->site;
    sc->drill.report_json = report;
    sc->drill.started_ms = (int64_t)json_integer_value(json_object_get(body, "started"));
    sc->drill.finished_ms = (int64_t)json_integer_value(json_object_get(body, "finished"));
    sc->drill.ok = json_is_true(json_object_get(body, "ok"));
    sc->drill.rto_ms = (int64_t)json_integer_value(json_object_get(body, "rto_ms"));
    sc->drill.rpo_writes = (uint64_t)json_integer_value(json_object_get(body, "rpo_writes"));
    sc->drill.digests_equal = json_is_true(json_object_get(body, "digests_equal"));
    json_t *jobs = json_object_get(body, "jobs_moved");
    sc->drill.jobs_moved = json_is_integer(jobs) ? (int64_t)json_integer_value(jobs) : -1;
    sc->drill_store.record = &sc->drill;
    sc->command.body_case = TANDEM__COMMAND__BODY_DRILL_STORE;
    sc->command.drill_store = &sc->drill_store;
    tandem_route_submit(node, r, &sc->command, site_command_free, sc);
}

BODY_ROUTE(route_bcp_drill_store, drill_report_fields, drill_store_body)

/* ---- member rejoin (at the leader: node/bcp/rejoin.h) ---- */

static void route_member_rejoin(struct tandem_node *node, struct tandem_http_request *r,
                                const char *param)
{
    char name[TANDEM_NAME_LEN_MAX + 1];
    const char *slash = strchr(param, '/');
    size_t len = slash == NULL ? 0 : (size_t)(slash - param);
    if (slash == NULL || strcmp(slash, "/rejoin") != 0 || len == 0 || len > TANDEM_NAME_LEN_MAX) {
        tandem_route_error(node, r, 404, "no such route: %s", r->path);
        return;
    }
    memcpy(name, param, len);
    name[len] = '\0';
    json_t *body = r->body_len > 0 ? body_json(node, r) : json_object();
    char why[TANDEM_ERRMSG_SIZE];
    if (body == NULL) {
        return; /* answered 400 */
    }
    /* Who: the authenticated principal, else (anonymous) the body's "by", else "operator". A bad
     * "by" is refused even when the principal names the caller: bad input changes nothing. */
    const char *asked = json_string_value(json_object_get(body, "by"));
    const char *by = r->principal.kind != TANDEM_PRINCIPAL_ANONYMOUS ? r->principal.name : asked;
    if (tandem_route_fields_check(body, rejoin_fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
    } else if ((asked != NULL && strlen(asked) > TANDEM_SITE_BY_LEN_MAX) ||
               (by != NULL && strlen(by) > TANDEM_SITE_BY_LEN_MAX)) {
        tandem_route_error(node, r, 400, "\"by\" is longer than %d bytes", TANDEM_SITE_BY_LEN_MAX);
    } else {
        struct tandem_bcp_reply reply = reply_to(node, r);
        tandem_bcp_rejoin_start(&node->bcp, &reply, name, by);
    }
    json_decref(body);
}

/* ---- node-local: epoch (probed by peers), re-seed and recover ---- */

/* This node as it sees itself, for the console's row of it (issue 15): raft state, term,
 * commit and applied index, the certificate's days left, the data directory's free bytes, the
 * p99 of its raft log writes with their fsync (the histogram bucket's bound; null when
 * unknown), and whether it is fenced or in start-up quarantine. The leader shows every node's, from
 * its probes (GET /v1/node/epoch). */
static json_t *node_view_json(struct tandem_node *node)
{
    struct raft *raft = &node->raft.raft;
    struct statvfs fs;
    static const char *const states[] = {
        [RAFT_FOLLOWER] = "follower", [RAFT_CANDIDATE] = "candidate", [RAFT_LEADER] = "leader"};
    int state = raft_state(raft);
    json_t *warnings = json_array();
    json_t *tls = tandem_tls_identity_status(node->tls, tandem_wall_ms(), warnings);
    json_t *days = json_object_get(json_object_get(tls, "cert"), "days_left");
    bool disk = statvfs(node->config->data_dir, &fs) == 0;
    uint64_t fsync_us = tandem_histogram_quantile_us(&node->metrics.log_append, 0.99);
    json_t *view = json_pack(
        "{s:s,s:I,s:I,s:I,s:O?,s:o,s:o}", "state",
        state >= RAFT_FOLLOWER && state <= RAFT_LEADER ? states[state] : "unavailable", "term",
        (json_int_t)raft_current_term(raft), "commit_index", (json_int_t)raft_commit_index(raft),
        "applied_index", (json_int_t)raft_last_applied(raft), "cert_days_left",
        json_is_integer(days) ? days : NULL, "disk_free_bytes",
        disk ? json_integer((json_int_t)((uint64_t)fs.f_bavail * fs.f_frsize)) : json_null(),
        "fsync_p99_ms", fsync_us > 0 ? json_real((double)fsync_us / 1000.0) : json_null());
    if (view != NULL) {
        json_object_set_new(view, "fenced", json_boolean(node->bcp.fenced));
        json_object_set_new(view, "quarantined", json_boolean(node->bcp.quarantined));
    }
    json_decref(tls);
    json_decref(warnings);
    return view;
}

static void route_node_epoch(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    json_t *body = json_pack("{s:I,s:s,s:b,s:o*}", "epoch", (json_int_t)node->bcp.epoch,
                             "cluster_id", node->config->cluster_id, "fenced", node->bcp.fenced,
                             "view", node_view_json(node));
    json_t *lag = tandem_bcp_lag_view(&node->bcp);
    if (body != NULL && lag != NULL) {
        json_object_set_new(body, "lag", lag); /* the leader's: survivors keep the last one */
    } else {
        json_decref(lag);
    }
    tandem_route_jansson(node, r, 200, body);
}

/* What the cluster said when it asked for the re-seed, kept with the old data for its
 * divergence report: who asked and the forced failovers' histories of the cluster's log. A
 * re-seed without them removes an older file, so it is never moved into the wrong folder. */
static int reseed_info_write(struct tandem_node *node, json_t *body, char *errmsg)
{
    json_t *forced = json_object_get(body, "forced");
    json_t *by = json_object_get(body, "by");
    if (!json_is_array(forced) && by == NULL) {
        return tandem_recover_file_remove(node->config->data_dir, TANDEM_RESEED_INFO_FILE, errmsg);
    }
    json_t *info = json_pack("{s:O?,s:O?}", "by", by, "forced", forced);
    char *text = info != NULL ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    int rv = text == NULL ? tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory")
                          : tandem_recover_file_write(node->config->data_dir,
                                                      TANDEM_RESEED_INFO_FILE, text, errmsg);
    free(text);
    return rv;
}

/* Where the re-seed keeps this node's data: DATA_DIR/fenced-<our epoch>-<now>. */
static void reseed_aside(struct tandem_node *node, char *name, char *path, size_t size)
{
    tandem_recover_aside_name(node->config->data_dir, node->bcp.epoch, tandem_wall_ms(), name);
    char dir[PATH_MAX];
    if (realpath(node->config->data_dir, dir) == NULL) {
        snprintf(dir, sizeof dir, "%s", node->config->data_dir);
    }
    snprintf(path, size, "%s/%s", dir, name);
}

static void reseed_accept(struct tandem_node *node, struct tandem_http_request *r, json_t *body,
                          uint64_t epoch)
{
    char errmsg[TANDEM_ERRMSG_SIZE], aside[TANDEM_ASIDE_NAME_MAX + 1], kept[PATH_MAX];
    reseed_aside(node, aside, kept, sizeof kept);
    if (reseed_info_write(node, body, errmsg) != 0 ||
        tandem_recover_reseed_write(node->config->data_dir, epoch, aside, errmsg) != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    tandem_route_jansson(
        node, r, 202,
        json_pack("{s:s,s:I,s:s,s:s,s:s}", "reseeding", node->self.name, "epoch", (json_int_t)epoch,
                  "boot_id", node->boot_id, "data_kept_at", kept, "note",
                  "the old data moves there at the restart, with divergence.json; tandemd never "
                  "deletes it"));
    tandem_log(TANDEM_LOG_WARN, "re-seed at epoch %" PRIu64 ": the old data goes to %s", epoch,
               kept);
    tandem_bcp_restart(&node->bcp, "re-seed: moving the old data aside, joining at the new epoch");
}

/* "forced" (the histories) and "by" (who asked) are optional; bad ones are a 400. */
static bool reseed_extras_ok(json_t *body)
{
    json_t *forced = json_object_get(body, "forced"), *by = json_object_get(body, "by");
    return (forced == NULL ||
            (json_is_array(forced) && json_array_size(forced) <= TANDEM_FORCED_KEPT)) &&
           (by == NULL || (json_is_string(by) && json_string_length(by) <= TANDEM_SITE_BY_LEN_MAX));
}

static void reseed_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    json_t *epoch_json = json_object_get(body, "epoch");
    const char *cluster = json_string_value(json_object_get(body, "cluster_id"));
    bool force = json_is_true(json_object_get(body, "force"));
    uint64_t epoch = json_is_integer(epoch_json) && json_integer_value(epoch_json) > 0
                         ? (uint64_t)json_integer_value(epoch_json)
                         : 0;
    bool other_cluster = cluster != NULL && strcmp(cluster, node->config->cluster_id) != 0;
    if (epoch == 0 || other_cluster) {
        tandem_route_error(node, r, 400, "body must be {\"epoch\": N, \"cluster_id\": \"%s\"}",
                           node->config->cluster_id);
    } else if (!reseed_extras_ok(body)) {
        tandem_route_error(node, r, 400,
                           "\"forced\" must be an array of at most %d histories and \"by\" a "
                           "string of at most %d bytes",
                           TANDEM_FORCED_KEPT, TANDEM_SITE_BY_LEN_MAX);
    } else if (raft_state(&node->raft.raft) == RAFT_LEADER && !node->bcp.fenced) {
        /* A fenced leader leads an old configuration nobody else follows: it may go. */
        tandem_route_error(node, r, 409, "%s is a leader: it is never re-seeded", node->self.name);
    } else if (epoch < node->bcp.epoch ||
               (!node->bcp.fenced && epoch == node->bcp.epoch && !force)) {
        tandem_route_error(node, r, 409,
                           "epoch %" PRIu64 " is not newer than ours (%" PRIu64
                           ") and this node is not fenced",
                           epoch, node->bcp.epoch);
    } else {
        reseed_accept(node, r, body, epoch);
    }
}

BODY_ROUTE(route_node_reseed, reseed_fields, reseed_body)

/* This node's divergence reports, newest first; served by the node itself, fenced or not. */
static void route_node_divergence(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *p)
{
    (void)p;
    json_t *reports = tandem_divergence_list(node->config->data_dir);
    if (reports == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
    } else if (json_array_size(reports) == 0) {
        json_decref(reports);
        tandem_route_error(node, r, 404,
                           "node %s has no divergence reports (no %s/" TANDEM_ASIDE_PREFIX
                           "* folder: it was never re-seeded)",
                           node->self.name, node->config->data_dir);
    } else {
        tandem_route_jansson(node, r, 200,
                             json_pack("{s:s,s:s,s:o}", "node", node->self.name, "data_dir",
                                       node->config->data_dir, "reports", reports));
    }
}

static const char *field(json_t *object, const char *name)
{
    const char *value = json_string_value(json_object_get(object, name));
    return value == NULL ? "" : value;
}

static int plan_from_json(struct tandem_node *node, json_t *body, struct tandem_recover_plan *plan,
                          char *errmsg)
{
    json_t *members = json_object_get(body, "members"), *m;
    json_t *epoch = json_object_get(body, "epoch");
    const char *site = json_string_value(json_object_get(body, "site"));
    const char *reason = json_string_value(json_object_get(body, "reason"));
    bool self_voter = false;
    size_t i;
    memset(plan, 0, sizeof *plan);
    if (!json_is_integer(epoch) || json_integer_value(epoch) <= (json_int_t)node->bcp.epoch ||
        site == NULL || !tandem_member_name_ok(site, TANDEM_SITE_LEN_MAX) ||
        !json_is_array(members) || json_array_size(members) == 0 ||
        json_array_size(members) > TANDEM_RECOVER_MEMBERS_MAX) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "body must be {\"epoch\": N > %" PRIu64 ", \"site\", \"members\": [...]} ",
                 node->bcp.epoch);
        return -1;
    }
    plan->epoch = (uint64_t)json_integer_value(epoch);
    snprintf(plan->site, sizeof plan->site, "%s", site);
    snprintf(plan->reason, sizeof plan->reason, "%s", reason == NULL ? "forced failover" : reason);
    json_array_foreach(members, i, m)
    {
        char spec[512], why[TANDEM_ERRMSG_SIZE];
        if (!json_is_object(m) || tandem_route_fields_check(m, recover_member_fields, why) != 0) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "members[%zu]: %s", i,
                     json_is_object(m) ? why : "must be an object");
            return -1;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        snprintf(spec, sizeof spec, "%s,%s,%s,%s,%s", field(m, "name"), field(m, "site"),
                 field(m, "raft"), field(m, "api"), role ? role : "voter");
        if (tandem_member_spec_parse(spec, &plan->members[plan->n_members], errmsg) != 0) {
            return -1;
        }
        self_voter |= strcmp(plan->members[plan->n_members].name, node->self.name) == 0 &&
                      plan->members[plan->n_members].role == TANDEM_ROLE_VOTER;
        plan->n_members++;
    }
    if (!self_voter) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s must be a voter of the recovered configuration",
                 node->self.name);
        return -1;
    }
    return 0;
}

static void recover_body(struct tandem_node *node, struct tandem_http_request *r, json_t *body)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_recover_plan *plan = malloc(sizeof *plan);
    if (plan == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    if (plan_from_json(node, body, plan, errmsg) != 0) {
        tandem_route_error(node, r, 400, "%s", errmsg);
    } else if (raft_state(&node->raft.raft) == RAFT_LEADER) {
        tandem_route_error(node, r, 409, "%s is a leader: quorum is not lost", node->self.name);
    } else if (tandem_recover_plan_write(node->config->data_dir, plan, errmsg) != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
    } else {
        tandem_route_jansson(node, r, 202,
                             json_pack("{s:s,s:I,s:I}", "recovering", node->self.name, "epoch",
                                       (json_int_t)plan->epoch, "members",
                                       (json_int_t)plan->n_members));
        tandem_bcp_restart(&node->bcp, "forced failover: raft_recover at the new epoch");
    }
    free(plan);
}

BODY_ROUTE(route_node_recover, recover_fields, recover_body)

/* ---- the route table ---- */

static const struct tandem_route routes[] = {
    {"bcp_status", HTTP_GET, "/v1/bcp/status", TANDEM_ROUTE_READ, route_bcp_status,
     TANDEM_PERM_READ},
    /* Local: a planned invoke is forwarded to the leader here, a forced one runs here. */
    {"bcp_invoke", HTTP_POST, "/v1/bcp/invoke", TANDEM_ROUTE_LOCAL, route_bcp_invoke,
     TANDEM_PERM_BCP},
    /* Local too: relayed to the leader over a client a leader change does not cancel. */
    {"bcp_revoke", HTTP_POST, "/v1/bcp/revoke", TANDEM_ROUTE_LOCAL, route_bcp_revoke,
     TANDEM_PERM_BCP},
    {"bcp_prefer", HTTP_POST, "/v1/bcp/prefer", TANDEM_ROUTE_WRITE, route_bcp_prefer,
     TANDEM_PERM_BCP},
    {"bcp_drill", HTTP_POST, "/v1/bcp/drill", TANDEM_ROUTE_LOCAL, route_bcp_drill, TANDEM_PERM_BCP},
    {"bcp_drills", HTTP_GET, "/v1/bcp/drills", TANDEM_ROUTE_READ, route_bcp_drills,
     TANDEM_PERM_READ},
    {"bcp_drill_store", HTTP_POST, "/v1/bcp/drills", TANDEM_ROUTE_WRITE, route_bcp_drill_store,
     TANDEM_PERM_BCP},
    {"member_rejoin", HTTP_POST, "/v1/members/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX,
     route_member_rejoin, TANDEM_PERM_MEMBERS},
    {"node_epoch", HTTP_GET, "/v1/node/epoch", TANDEM_ROUTE_LOCAL, route_node_epoch,
     TANDEM_PERM_NODE},
    {"node_reseed", HTTP_POST, "/v1/node/reseed", TANDEM_ROUTE_LOCAL, route_node_reseed,
     TANDEM_PERM_NODE},
    {"node_divergence", HTTP_GET, "/v1/node/divergence", TANDEM_ROUTE_LOCAL, route_node_divergence,
     TANDEM_PERM_NODE},
    {"node_recover", HTTP_POST, "/v1/node/recover", TANDEM_ROUTE_LOCAL, route_node_recover,
     TANDEM_PERM_NODE},
};

const struct tandem_route_table tandem_bcp_route_table = {routes, sizeof routes / sizeof routes[0]};
