/* The HTTP API's router: the route tables in order, matching (methods, prefixes, percent-decoding),
 * the leader check that runs a route here or forwards it, and the answer helpers every resource
 * file (node/api/cluster.c, kv.c, domain.c, bcp.c, rebalance.c) uses. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "node/api/api.h"
#include "node/api/authz.h"
#include "node/audit.h"
#include "replication/domain/domain.h"
#include "replication/identity/credentials.h"
#include "replication/identity/users.h"
#include "storage/clock.h"
#include "storage/assert.h"
#include "storage/error.h"

#define ROUTE_LOCAL  TANDEM_ROUTE_LOCAL
#define ROUTE_WRITE  TANDEM_ROUTE_WRITE
#define ROUTE_READ   TANDEM_ROUTE_READ
#define ROUTE_PREFIX TANDEM_ROUTE_PREFIX

/* Tables tried in order; route ids (metrics labels) number their rows consecutively. */
static const struct tandem_route_table *const route_tables[] = {
    &tandem_cluster_route_table,     &tandem_kv_route_table,
    &tandem_domain_route_table,      &tandem_bcp_route_table,
    &tandem_rebalance_route_table,   &tandem_quarantine_route_table,
    &tandem_events_route_table,      &tandem_audit_route_table,
    &tandem_users_route_table,       /* node/api/users.c (issue 13) */
    &tandem_pdata_route_table,       /* node/api/keys.c (issue 13) */
    &tandem_backups_route_table,     /* node/api/backups.c (issue 14) */
    &tandem_backup_site_route_table, /* node/api/backup_sites.c (issue 14) */
    &tandem_snapshot_route_table,    /* node/api/snapshots.c (issue 17) */
    &tandem_ui_route_table,          /* node/api/ui.c: the web console (issue 15) */
};
#define ROUTE_TABLES_COUNT (sizeof route_tables / sizeof route_tables[0])

/* The flattened route list, built once: index = route id; the last id is "unmatched". */
static const struct tandem_route *all_routes[TANDEM_METRICS_ROUTES_MAX];
static const char *route_names[TANDEM_METRICS_ROUTES_MAX];
static unsigned routes_count;

static void routes_flatten(void)
{
    if (routes_count > 0) {
        return;
    }
    for (size_t t = 0; t < ROUTE_TABLES_COUNT; t++) {
        for (unsigned i = 0; i < route_tables[t]->count; i++) {
            tandem_assert(routes_count < TANDEM_METRICS_ROUTES_MAX - 1);
            all_routes[routes_count] = &route_tables[t]->routes[i];
            route_names[routes_count] = route_tables[t]->routes[i].name;
            routes_count++;
        }
    }
    route_names[routes_count] = "unmatched";
}

unsigned tandem_route_names(const char *const **names)
{
    routes_flatten();
    *names = route_names;
    return routes_count + 1;
}

#define PARAM_BYTES_MAX 1024 /* a decoded path parameter (keys are at most 511 bytes) */

/* Set in r->data beside the route id when this node forwarded r: the leader audits it (unless
 * no leader answered: router_answer clears it). */
#define ROUTE_FORWARDED_BIT ((uintptr_t)1 << 30)
/* Set when r did nothing here and goes on, or ends, elsewhere: a write refused because the raft
 * log was full (tandem_route_submit), or one handed back to the node that forwarded it
 * (respond_hand_back). Not audited (respond_audit). */
#define ROUTE_UNAUDITED_BIT ((uintptr_t)1 << 29)

static unsigned route_of(const struct tandem_http_request *r)
{
    return (unsigned)((uintptr_t)r->data & ~(ROUTE_FORWARDED_BIT | ROUTE_UNAUDITED_BIT));
}

/* Every mutating request becomes an audit record once its status is known, on the node that
 * acted on it (a follower that forwarded it leaves it to the leader, unless no leader's answer
 * came back: router_answer). A write refused because the raft log is full does not: it changed
 * nothing and is counted (tandem_writes_refused_log_full_total), and a record for each refusal,
 * which clients retry many times a second, would fill the very log the refusal keeps within its
 * budget. Nor does a forwarded request this node hands back because it no longer leads: it did
 * nothing here, and the forwarding node sends it on to the next leader, which records its
 * outcome once. Nor does a member's report of its raft log that was taken (below). */
static void respond_audit(struct tandem_node *node, const struct tandem_http_request *r, int status)
{
    if (r->method == HTTP_GET || r->method == HTTP_HEAD ||
        ((uintptr_t)r->data & (ROUTE_FORWARDED_BIT | ROUTE_UNAUDITED_BIT)) != 0 ||
        strcmp(r->path, "/v1/node/audit") == 0) {
        return;
    }
    /* A member's report of its raft log, taken, is the cluster's own bookkeeping, sent every
     * 500 ms while that log is full: a record each would fill the log it reports on (one
     * refused is recorded, as every refusal). */
    if (status == 200 && strcmp(r->path, "/v1/node/log-budget") == 0) {
        return;
    }
    /* A shipped backup is audited where it arrives (its final request), not chunk by chunk. */
    if (strcmp(r->path, "/v1/node/backups/upload") == 0 && strstr(r->query, "final=1") == NULL) {
        return;
    }
    unsigned id = route_of(r);
    tandem_audit(node, r, id <= routes_count ? route_names[id] : "unmatched", r->path, status,
                 NULL);
}

/* Counts r's answer in the metrics and leaves its audit record. */
static void respond_count(struct tandem_node *node, struct tandem_http_request *r, int status)
{
    tandem_metrics_count(&node->metrics, route_of(r), status);
    respond_audit(node, r, status);
    tandem_histogram_observe(&node->metrics.request, uv_hrtime() - r->start_ns);
}

/* The node's own header lines, then extra_headers, into headers. */
static void respond_headers(struct tandem_node *node, const struct tandem_http_request *r,
                            const char *extra_headers, char *headers, size_t size)
{
    /* Without a credential on a TLS listener (health checks, refusals) nothing but the node. */
    bool anonymous = node->http.tls_required && r->identity.kind == TANDEM_TLS_PEER_NONE;
    int used = snprintf(headers, size, "X-Tandem-Node: %s\r\n", node->self.name);
    if (!anonymous) {
        used += snprintf(headers + used, size - (size_t)used, "X-Tandem-Applied-Index: %llu\r\n",
                         (unsigned long long)raft_last_applied(&node->raft.raft));
    }
    snprintf(headers + used, size - (size_t)used, "%s", extra_headers == NULL ? "" : extra_headers);
}

void tandem_node_respond(struct tandem_node *node, struct tandem_http_request *r, int status,
                         const char *content_type, const char *extra_headers, const void *body,
                         size_t body_len)
{
    char headers[512];
    respond_headers(node, r, extra_headers, headers, sizeof headers);
    respond_count(node, r, status);
    tandem_http_respond(r, status, content_type, headers, body, body_len);
}

int tandem_node_stream_sized(struct tandem_node *node, struct tandem_http_request *r,
                             const char *content_type, const char *extra_headers, uint64_t length,
                             tandem_http_stream_drain_fn drain_cb,
                             tandem_http_stream_close_fn close_cb, void *data,
                             struct tandem_http_stream **out)
{
    char headers[TANDEM_HTTP_STREAM_HEADERS_BYTES_MAX - 64];
    respond_headers(node, r, extra_headers, headers, sizeof headers);
    int rv = tandem_http_stream_open_sized(r, 200, content_type, headers, length, drain_cb,
                                           close_cb, data, out);
    if (rv == 0) {
        respond_count(node, r, 200); /* r is answered from the next loop turn on: still here */
    }
    return rv;
}

void tandem_route_json(struct tandem_node *node, struct tandem_http_request *r, int status,
                       const char *extra_headers, const char *text)
{
    tandem_node_respond(node, r, status, "application/json", extra_headers, text,
                        text == NULL ? 0 : strlen(text));
}

void tandem_route_jansson(struct tandem_node *node, struct tandem_http_request *r, int status,
                          json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    tandem_route_json(node, r, text == NULL ? 500 : status, NULL,
                      text == NULL ? "{\"error\":\"out of memory\"}" : text);
    free(text);
}

static void error_respond(struct tandem_node *node, struct tandem_http_request *r, int status,
                          const char *extra_headers, const char *fmt, va_list args)
{
    char message[512], body[1200];
    vsnprintf(message, sizeof message, fmt, args);
    size_t len = tandem_http_error_json(body, sizeof body, message);
    tandem_node_respond(node, r, status, "application/json", extra_headers, body,
                        len < sizeof body ? len : strlen(body));
}

void tandem_route_error(struct tandem_node *node, struct tandem_http_request *r, int status,
                        const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    error_respond(node, r, status, NULL, fmt, args);
    va_end(args);
}

void tandem_route_retry_later(struct tandem_node *node, struct tandem_http_request *r,
                              const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    error_respond(node, r, 503, "Retry-After: 1\r\n", fmt, args);
    va_end(args);
}

/* No leader now: the request waits for one (node/http/park.h) while it is young, then 503. */
static void respond_no_leader(struct tandem_node *node, struct tandem_http_request *r)
{
    if (tandem_park(&node->park, r)) {
        return;
    }
    tandem_route_json(node, r, 503, "Retry-After: 1\r\n", TANDEM_NO_LEADER_JSON);
}

/* A request a node forwarded here that this node cannot serve as leader, and that did nothing
 * here: 503 marked safe to retry, so the forwarding node parks it and sends it to whoever leads
 * now. */
static void respond_hand_back(struct tandem_node *node, struct tandem_http_request *r)
{
    tandem_assert(tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL);
    r->data = (void *)((uintptr_t)r->data | ROUTE_UNAUDITED_BIT);
    tandem_route_json(node, r, 503, "Retry-After: 1\r\n" TANDEM_RETRY_SAFE_HEADER ": 1\r\n",
                      "{\"error\":\"not the leader\"}");
}

/* 503 with Retry-After, like "no leader": {"error", "quarantined": true, "leader": null}. */
static void respond_quarantined(struct tandem_node *node, struct tandem_http_request *r)
{
    char error[TANDEM_QUARANTINE_WHY_MAX + 128];
    snprintf(error, sizeof error,
             "this node is in start-up quarantine (%s); ask another node, or see tandemctl bcp "
             "status",
             node->bcp.quarantine_why[0] != '\0' ? node->bcp.quarantine_why : "just started");
    json_t *body = json_pack("{s:s,s:b,s:n}", "error", error, "quarantined", true, "leader");
    char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    tandem_route_json(node, r, 503, "Retry-After: 1\r\n",
                      text != NULL ? text : "{\"error\":\"start-up quarantine\"}");
    free(text);
    json_decref(body);
}

/* The park's and the forwarder's own answers: the request ends here, without a leader's answer
 * (its forward failed, or it waited out its bound), so this node audits it even when it
 * forwarded it. When the forward failed after the request was sent, the leader may also have
 * acted on it and recorded what it did; the record here says what the client was told. */
static void router_answer(void *data, struct tandem_http_request *r, int status,
                          const char *extra_headers, const char *json)
{
    r->data = (void *)((uintptr_t)r->data & ~ROUTE_FORWARDED_BIT);
    tandem_route_json(data, r, status, extra_headers, json);
}

static void route_request(struct tandem_node *node, struct tandem_http_request *r);

/* A parked request was admitted when it arrived: it is routed again, not charged again. */
static void router_redispatch(void *data, struct tandem_http_request *r)
{
    route_request(data, r);
}

/* What this node has applied, as its answers' X-Tandem-Applied-Index says. */
static uint64_t router_applied(void *data)
{
    struct tandem_node *node = data;
    return raft_last_applied(&node->raft.raft);
}

void tandem_router_init(struct tandem_node *node)
{
    const struct tandem_config *c = node->config;
    /* A request may wait out about four election timeouts for a leader before it fails. */
    uint64_t park_wait_ns = (uint64_t)c->election_timeout_ms * 4 * 1000000u;
    int rv = tandem_park_init(&node->park, node->loop, park_wait_ns, router_redispatch,
                              router_answer, node);
    tandem_assert(rv == 0); /* a timer on a live loop cannot fail */
    rv = tandem_forwarder_init(&node->forwarder, node->loop, node->self.name, &node->park,
                               c->forward_connections, c->forward_timeout_ms, router_answer, node);
    tandem_assert(rv == 0); /* one client per pool is within bounds */
    /* A session write's answer waits here for this node's apply: about one heartbeat. */
    tandem_forwarder_set_hold(&node->forwarder, router_applied, node,
                              (unsigned)c->election_timeout_ms * 2);
}

/* Translates a raft error on a write or read into an HTTP answer. */
void tandem_route_raft_error(struct tandem_node *node, struct tandem_http_request *r, int rv)
{
    switch (rv) {
        case RAFT_BUSY:
            tandem_route_error(node, r, 429, "too many pending requests (pending_requests_max %u)",
                               node->config->pending_requests_max);
            return;
        case RAFT_NOTLEADER:
            respond_no_leader(node, r);
            return;
        case RAFT_LEADERSHIPLOST:
        case RAFT_SHUTDOWN:
            tandem_route_json(node, r, 503, "Retry-After: 1\r\n",
                              "{\"error\":\"leadership lost before the outcome was known; the "
                              "request may or may not have been applied\"}");
            return;
        default:
            tandem_route_error(node, r, 503, "raft: %s", raft_strerror(rv));
            return;
    }
}

bool tandem_route_local(const struct tandem_http_request *r)
{
    char value[16];
    return tandem_http_query_get(r->query, "consistency", value, sizeof value) == 1 &&
           strcmp(value, "local") == 0;
}

/* ?consistency= is local or linearizable (the default) on every route; anything else would
 * silently read linearizably. Returns 0, or -1 with why. */
static int consistency_check(const struct tandem_http_request *r, char *why)
{
    char value[16];
    int rv = tandem_http_query_get(r->query, "consistency", value, sizeof value);
    if (rv == 0 ||
        (rv == 1 && (strcmp(value, "local") == 0 || strcmp(value, "linearizable") == 0))) {
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "consistency must be local or linearizable");
    return -1;
}

int tandem_route_fields_only(json_t *object, const char *const *known, char *why)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        bool found = false;
        for (size_t i = 0; known[i] != NULL && !found; i++) {
            found = strcmp(key, known[i]) == 0;
        }
        if (!found) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "unknown field \"%s\"", key);
            return -1;
        }
    }
    return 0;
}

static const char *const field_type_names[] = {
    [TANDEM_FIELD_ANY] = "any value",  [TANDEM_FIELD_STRING] = "a string",
    [TANDEM_FIELD_BOOL] = "a boolean", [TANDEM_FIELD_INT] = "an integer",
    [TANDEM_FIELD_ARRAY] = "an array", [TANDEM_FIELD_OBJECT] = "an object",
};

static bool field_type_ok(json_t *value, enum tandem_route_field_type type)
{
    switch (type) {
        case TANDEM_FIELD_ANY:
            return true;
        case TANDEM_FIELD_STRING:
            return json_is_string(value);
        case TANDEM_FIELD_BOOL:
            return json_is_boolean(value);
        case TANDEM_FIELD_INT:
            return json_is_integer(value);
        case TANDEM_FIELD_ARRAY:
            return json_is_array(value);
        case TANDEM_FIELD_OBJECT:
            return json_is_object(value);
    }
    return false;
}

int tandem_route_fields_check(json_t *object, const struct tandem_route_field *fields, char *why)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        const struct tandem_route_field *f = fields;
        while (f->name != NULL && strcmp(f->name, key) != 0) {
            f++;
        }
        if (f->name == NULL) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "unknown field \"%s\"", key);
            return -1;
        }
        if (!field_type_ok(value, f->type)) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "field \"%s\" must be %s", key,
                     field_type_names[f->type]);
            return -1;
        }
    }
    for (const struct tandem_route_field *f = fields; f->name != NULL; f++) {
        if (f->required && json_object_get(object, f->name) == NULL) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "missing field \"%s\"", f->name);
            return -1;
        }
    }
    return 0;
}

bool tandem_route_id_ok(const char *id)
{
    return id != NULL && tandem_domain_id_ok(id) && strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

int tandem_route_query_number(const struct tandem_http_request *r, const char *name, uint64_t min,
                              uint64_t max, uint64_t *out)
{
    char text[32];
    char *end = NULL;
    int rv = tandem_http_query_get(r->query, name, text, sizeof text);
    if (rv <= 0) {
        return rv;
    }
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < min || value > max) {
        return -1;
    }
    *out = value;
    return 1;
}

/* Commits grouped writes so that reads see everything applied so far. */
int tandem_route_read_txn(struct tandem_node *node, struct tandem_http_request *r, MDB_txn **txn)
{
    if (tandem_store_commit(&node->store) != 0) {
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        tandem_node_fatal(node, node->store.errmsg);
        return -1;
    }
    if (tandem_store_read_txn(&node->store, txn) != 0) {
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return -1;
    }
    return 0;
}

static void history_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    const struct tandem_route_history *h = arg;
    char text[16];
    uint64_t limit = h->limit_default;
    MDB_txn *txn;
    if (tandem_route_query_number(r, "limit", 1, h->limit_max, &limit) < 0) {
        tandem_route_error(node, r, 400, "limit must be 1 to %u", h->limit_max);
        return;
    }
    int rv = tandem_http_query_get(r->query, "full", text, sizeof text);
    bool full = rv == 1 && (strcmp(text, "1") == 0 || strcmp(text, "true") == 0);
    if (rv < 0 || (rv == 1 && !full && strcmp(text, "0") != 0 && strcmp(text, "false") != 0)) {
        tandem_route_error(node, r, 400, "full must be 1, true, 0 or false");
        return;
    }
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    json_t *items = h->list(&node->store, txn, (unsigned)limit, full);
    mdb_txn_abort(txn);
    if (items == NULL) {
        tandem_route_error(node, r, 500, "%s: %s", h->name, node->store.errmsg);
        return;
    }
    tandem_route_jansson(node, r, 200, json_pack("{s:o}", h->name, items));
}

void tandem_route_history(struct tandem_node *node, struct tandem_http_request *r,
                          const struct tandem_route_history *history)
{
    tandem_route_read(node, r, history_serve, (void *)history, NULL);
}

/* The actor (the authenticated principal, never a header) and the body of a write; returns the
 * body, or NULL after answering r 400. */
static json_t *route_actor_body(struct tandem_node *node, struct tandem_http_request *r,
                                struct tandem_route_write *w)
{
    const char *by = tandem_http_request_header(r, TANDEM_FORWARDED_HEADER);
    struct tandem_member m;
    json_error_t jerr;
    json_t *body = r->body_len == 0 ? json_object() : json_loadb(r->body, r->body_len, 0, &jerr);
    if (body == NULL || !json_is_object(body)) {
        tandem_route_error(node, r, 400, "malformed JSON: %s",
                           body == NULL ? jerr.text : "the body must be an object");
        json_decref(body);
        return NULL;
    }
    snprintf(w->user, sizeof w->user, "%s",
             r->principal.name[0] != '\0' ? r->principal.name : TANDEM_ACTOR_DEFAULT);
    bool forwarded = by != NULL && tandem_raft_member_by_name(&node->raft, by, &m, NULL) == 0;
    snprintf(w->site, sizeof w->site, "%s", forwarded ? m.site : node->self.site);
    return body;
}

void *tandem_route_write_new(struct tandem_node *node, struct tandem_http_request *r, size_t size,
                             int oom_status)
{
    tandem_assert(size >= sizeof(struct tandem_route_write));
    struct tandem_route_write *w = calloc(1, size);
    if (w == NULL) {
        tandem_route_error(node, r, oom_status, "out of memory");
        return NULL;
    }
    w->json = route_actor_body(node, r, w);
    if (w->json == NULL) {
        free(w);
        return NULL;
    }
    tandem__command__init(&w->command);
    tandem__actor__init(&w->actor);
    w->actor.user = w->user;
    w->actor.site = w->site;
    return w;
}

void tandem_route_write_release(struct tandem_route_write *w)
{
    json_decref(w->json);
    w->json = NULL;
}

/* A proposal or a linearizable read waiting for raft, and what runs once it is answered. */
struct pending {
    union {
        struct tandem_write write;
        struct tandem_read read;
    };
    struct tandem_node *node;      /* borrowed */
    struct tandem_http_request *r; /* borrowed: answered exactly once */
    tandem_route_serve_fn serve;   /* reads: answers r; NULL for writes */
    void (*done)(void *arg);
    void *arg;
};

/* A linearizable read whose barrier lost the leadership (a transfer, an election) did nothing,
 * whatever the moment: it is asked again of whoever leads next (parked until there is one), or,
 * when a node forwarded it here, handed back to that node to send there (never forwarded
 * twice). A write in the same case may have been applied: that stays a 503 the caller sees. */
static void read_raft_error(struct tandem_node *node, struct tandem_http_request *r, int rv)
{
    if (rv != RAFT_LEADERSHIPLOST && rv != RAFT_NOTLEADER) {
        tandem_route_raft_error(node, r, rv);
    } else if (tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL) {
        respond_hand_back(node, r);
    } else {
        respond_no_leader(node, r);
    }
}

/* Answers r (the raft error, the read served, or the write's applied result), then done. p is
 * NULL when it could not be allocated (status is then RAFT_NOMEM). */
static void pending_finish(struct tandem_node *node, struct tandem_http_request *r,
                           struct pending *p, int status, const struct tandem_result *result)
{
    tandem_assert(status != 0 || p != NULL);
    if (status != 0 && p != NULL && p->serve != NULL) {
        read_raft_error(node, r, status);
    } else if (status != 0) {
        tandem_route_raft_error(node, r, status);
    } else if (p->serve != NULL) {
        p->serve(node, r, p->arg);
    } else {
        tandem_route_json(node, r, result->status, NULL, result->body);
    }
    if (p != NULL) {
        void (*done)(void *) = p->done;
        void *arg = p->arg;
        free(p);
        if (done != NULL) {
            done(arg);
        }
    }
}

static void pending_write_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct pending *p = w->data;
    pending_finish(p->node, p->r, p, status, result);
}

static void pending_read_cb(struct tandem_read *rd, int status)
{
    struct pending *p = rd->data;
    pending_finish(p->node, p->r, p, status, NULL);
}

static struct pending *pending_new(struct tandem_node *node, struct tandem_http_request *r,
                                   tandem_route_serve_fn serve, void (*done)(void *arg), void *arg)
{
    struct pending *p = calloc(1, sizeof *p);
    if (p != NULL) {
        *p = (struct pending){.node = node, .r = r, .serve = serve, .done = done, .arg = arg};
    }
    return p;
}

/* After starting p failed with rv: answers r and runs done (which p, if any, would have run). */
static void pending_failed(struct tandem_node *node, struct tandem_http_request *r,
                           struct pending *p, int rv, void (*done)(void *arg), void *arg)
{
    if (p != NULL) {
        pending_finish(node, r, p, rv, NULL);
        return;
    }
    tandem_route_raft_error(node, r, rv);
    if (done != NULL) {
        done(arg);
    }
}

void tandem_route_submit(struct tandem_node *node, struct tandem_http_request *r,
                         Tandem__Command *command, void (*done)(void *owner), void *owner)
{
    /* The log stays within its byte budget however long a snapshot of a large state takes:
     * a client write waits for the snapshot to trim it (the BCP's and the cluster's own writes,
     * few and small, go on). A follower's log holds every entry this leader appends, so while a
     * member reports its own full (its snapshot lasts longer than this node's), client writes
     * wait for it too (node/log_reports.h). */
    uint64_t held, budget;
    bool own = tandem_fsm_log_full(&node->fsm, &held, &budget);
    const struct tandem_log_report *member =
        own ? NULL : tandem_log_reports_full(&node->log_reports, uv_now(node->loop));
    if (own || member != NULL) {
        char whose[TANDEM_NAME_LEN_MAX + 32] = "the raft log";
        if (member != NULL) {
            snprintf(whose, sizeof whose, "member %s's raft log", member->name);
            held = member->held_bytes;
            budget = member->budget_bytes;
            node->writes_refused_member_log_full++;
        }
        node->writes_refused_log_full++;
        r->data = (void *)((uintptr_t)r->data | ROUTE_UNAUDITED_BIT); /* not audited */
        tandem_route_retry_later(node, r,
                                 "%s holds %" PRIu64 " MiB of its %" PRIu64
                                 " MiB budget (snapshot_log_mib + trailing_log_mib) until the "
                                 "snapshot %s trims it: retry later",
                                 whose, held >> 20, budget >> 20,
                                 member != NULL ? "it is taking" : "being taken");
        if (done != NULL) {
            done(owner);
        }
        return;
    }
    struct pending *p = pending_new(node, r, NULL, done, owner);
    int rv = RAFT_NOMEM;
    if (p != NULL) {
        p->write.command = command;
        p->write.cb = pending_write_cb;
        p->write.data = p;
        rv = tandem_proposer_write(&node->proposer, &p->write);
    }
    if (rv != 0) {
        pending_failed(node, r, p, rv, done, owner);
    }
}

void tandem_route_read(struct tandem_node *node, struct tandem_http_request *r,
                       tandem_route_serve_fn serve, void *arg, void (*done)(void *arg))
{
    if (tandem_route_local(r)) {
        serve(node, r, arg);
        if (done != NULL) {
            done(arg);
        }
        return;
    }
    struct pending *p = pending_new(node, r, serve, done, arg);
    int rv = RAFT_NOMEM;
    if (p != NULL) {
        p->read.cb = pending_read_cb;
        p->read.data = p;
        rv = tandem_proposer_read(&node->proposer, &p->read);
    }
    if (rv != 0) {
        pending_failed(node, r, p, rv, done, arg);
    }
}

/* ---- dispatch ---- */

static bool needs_leader(const struct tandem_route *route, const struct tandem_http_request *r)
{
    return (route->flags & ROUTE_WRITE) != 0 ||
           ((route->flags & ROUTE_READ) != 0 && !tandem_route_local(r));
}

/* Runs a matched route here, forwards it to the leader, or answers 503. */
static void dispatch(struct tandem_node *node, const struct tandem_route *route,
                     struct tandem_http_request *r, const char *param)
{
    struct tandem_member leader;
    char why[TANDEM_ERRMSG_SIZE];
    if (consistency_check(r, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        return;
    }
    if (node->bcp.fenced && route->flags != ROUTE_LOCAL) {
        tandem_route_error(node, r, 503,
                           "this node is fenced: the cluster moved to a newer epoch without it; "
                           "re-seed it with tandemctl member rejoin");
        return;
    }
    if (node->stopping) {
        tandem_route_json(node, r, 503, "Retry-After: 1\r\n",
                          "{\"error\":\"node is shutting down\"}");
        return;
    }
    if (node->bcp.quarantined && needs_leader(route, r)) {
        respond_quarantined(node, r); /* not forwarded either: it may be of an old configuration */
        return;
    }
    if (!needs_leader(route, r) || raft_state(&node->raft.raft) == RAFT_LEADER) {
        route->fn(node, r, param);
        return;
    }
    if (tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL) {
        /* Forwarded here but leadership moved on: nothing was done, so the forwarding node may
         * send it again to whoever leads now (it parks it until then). Never forward twice. */
        respond_hand_back(node, r);
        return;
    }
    if (tandem_raft_leader(&node->raft, &leader) != 0) {
        respond_no_leader(node, r);
        return;
    }
    r->data = (void *)((uintptr_t)r->data | ROUTE_FORWARDED_BIT);
    if ((route->flags & TANDEM_ROUTE_SESSION) != 0) {
        tandem_forwarder_send_held(&node->forwarder, r, &leader);
    } else {
        tandem_forwarder_send(&node->forwarder, r, &leader);
    }
}

/* The id of the route r's method and path match, or routes_count; *path_known tells whether
 * some route has the path. */
static unsigned route_match(const struct tandem_http_request *r, bool *path_known)
{
    *path_known = false;
    for (unsigned i = 0; i < routes_count; i++) {
        const struct tandem_route *route = all_routes[i];
        size_t len = strlen(route->pattern);
        bool match = (route->flags & ROUTE_PREFIX) != 0
                         ? strncmp(r->path, route->pattern, len) == 0 && r->path[len] != '\0'
                         : strcmp(r->path, route->pattern) == 0;
        if (!match) {
            continue;
        }
        *path_known = true;
        if (route->method == r->method || (route->method == HTTP_GET && r->method == HTTP_HEAD)) {
            return i;
        }
    }
    return routes_count;
}

static void route_request(struct tandem_node *node, struct tandem_http_request *r)
{
    char param[PARAM_BYTES_MAX];
    bool path_known;
    unsigned id = route_match(r, &path_known);
    r->data = (void *)(uintptr_t)id;
    if (id < routes_count) {
        const struct tandem_route *route = all_routes[id];
        size_t len = strlen(route->pattern);
        param[0] = '\0';
        if ((route->flags & ROUTE_PREFIX) != 0 &&
            tandem_http_path_decode(r->path + len, strlen(r->path + len), param, sizeof param,
                                    NULL) != 0) {
            tandem_route_error(node, r, 400, "malformed path parameter");
            return;
        }
        dispatch(node, route, r, param);
        return;
    }
    if (path_known) {
        tandem_route_error(node, r, 405, "method %s not allowed on %s",
                           http_method_str((enum http_method)r->method), r->path);
    } else {
        tandem_route_error(node, r, 404, "no such route: %s", r->path);
    }
}

/* A user's record as committed on this node (grouped writes committed first, so a disable is
 * seen from its commit on). */
static int router_user_get(void *arg, const char *name, struct tandem_user *out, char *why)
{
    struct tandem_node *node = arg;
    MDB_txn *txn;
    if (tandem_store_commit(&node->store) != 0 || tandem_store_read_txn(&node->store, &txn) != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "user records: %s", node->store.errmsg);
        return TANDEM_STORE;
    }
    int rv = tandem_user_get(txn, &node->store, name, out);
    mdb_txn_abort(txn);
    if (rv != TANDEM_OK && rv != TANDEM_NOTFOUND) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "user records: %s", node->store.errmsg);
    }
    return rv;
}

/* A bearer token's user (replication/identity/credentials.h), checked on this node's records. */
static int router_token_check(void *arg, const char *token, struct tandem_user *out, char *why)
{
    struct tandem_node *node = arg;
    MDB_txn *txn;
    if (tandem_store_commit(&node->store) != 0 || tandem_store_read_txn(&node->store, &txn) != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "user records: %s", node->store.errmsg);
        return TANDEM_STORE;
    }
    int rv = tandem_token_check(txn, &node->store, token, tandem_wall_ms(), out, why);
    mdb_txn_abort(txn);
    if (rv != TANDEM_OK && rv != TANDEM_NOTFOUND) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "user records: %s", node->store.errmsg);
    }
    return rv;
}

/* X-Tandem-User names the actor only on a request a node forwarded (where the forwarded identity
 * is the principal); from anyone else it is refused, so old clients notice. */
static int actor_header_check(const struct tandem_http_request *r, char *why)
{
    if (tandem_http_request_header(r, TANDEM_USER_HEADER) == NULL ||
        (r->peer.kind == TANDEM_TLS_PEER_NODE &&
         tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL)) {
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "%s is not accepted: the actor is the authenticated identity",
             TANDEM_USER_HEADER);
    return 400;
}

/* Who r acts as (r->principal), then the route's permission (default deny). Unmatched routes
 * are left to answer 404/405. Returns 0 or the refusal's status with why. */
static int authorise(struct tandem_node *node, const struct tandem_http_server *s,
                     struct tandem_http_request *r, char *why)
{
    const struct tandem_authz_users users = {router_user_get, router_token_check, node};
    int status =
        tandem_authz_principal(s->tls_required != 0, r, &r->identity, &users, &r->principal, why);
    bool known = route_of(r) < routes_count;
    if (status != 0 && known && all_routes[route_of(r)]->perm == TANDEM_PERM_PUBLIC) {
        /* Health answers anyone, a certificate without a user record included. */
        r->principal = (struct tandem_principal){.kind = TANDEM_PRINCIPAL_ANONYMOUS};
        status = 0;
    }
    if (status == 0) {
        status = actor_header_check(r, why);
    }
    if (status == 0 && known) {
        status = tandem_authz_permit(&r->principal, all_routes[route_of(r)]->perm, why);
    }
    return status;
}

/* Whether r counts against a user's rate limit, and whose (in *user): a person who
 * authenticated here, by certificate, bearer token or the console's cookie. Not a node, nor a
 * user a node forwarded (the first node counted it), nor a caller without a credential. */
static bool rate_limited(const struct tandem_http_request *r, struct tandem_tls_peer *user)
{
    const struct tandem_principal *p = &r->principal;
    if (p->kind != TANDEM_PRINCIPAL_USER || p->insecure ||
        p->via == TANDEM_PRINCIPAL_VIA_FORWARDED) {
        return false;
    }
    *user = (struct tandem_tls_peer){.kind = TANDEM_TLS_PEER_USER};
    snprintf(user->name, sizeof user->name, "%s", p->name);
    return true;
}

/* Who may call (node/api/authz.h), then the rate limit per user: before any JSON is parsed or
 * anything proposed. Returns 0, or -1 after answering r. */
static int admit(struct tandem_node *node, const struct tandem_http_server *s,
                 struct tandem_http_request *r)
{
    char why[TANDEM_ERRMSG_SIZE], body[TANDEM_HTTP_ERROR_MESSAGE_BYTES_MAX], headers[64];
    int status = tandem_authz_check(s->tls_required != 0, r, &r->identity, why);
    unsigned wait_s = 0;
    if (status == 0) {
        status = authorise(node, s, r, why);
        if (status != 0 && (r->method == HTTP_GET || r->method == HTTP_HEAD)) {
            /* Refused reads are audited here; refused writes by respond_audit, as every write. */
            tandem_audit(node, r,
                         route_of(r) < routes_count ? route_names[route_of(r)] : "unmatched",
                         r->path, status, why);
        }
    }
    if (status == 0) {
        struct tandem_tls_peer user;
        wait_s = rate_limited(r, &user)
                     ? tandem_rate_limit_take(&node->rate_limit, &user, uv_hrtime())
                     : 0;
        if (wait_s == 0) {
            return 0;
        }
        status = 429;
        snprintf(why, sizeof why, "rate limit: %u requests per second for %s", node->rate_limit.rps,
                 user.name);
    }
    if (status == 401) {
        snprintf(headers, sizeof headers, "%s", TANDEM_AUTHZ_CHALLENGE);
    } else if (status == 429) {
        snprintf(headers, sizeof headers, "Retry-After: %u\r\n", wait_s);
    } else {
        headers[0] = '\0';
    }
    tandem_http_error_json(body, sizeof body, why);
    tandem_route_json(node, r, status, headers, body);
    return -1;
}

void tandem_routes_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct tandem_node *node = s->data;
    bool path_known;
    routes_flatten();
    /* Refusals are counted under the route asked for. */
    r->data = (void *)(uintptr_t)route_match(r, &path_known);
    if (admit(node, s, r) == 0) {
        route_request(node, r);
    }
}
