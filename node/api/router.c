/* The HTTP API: the route table, request validation, and the handlers that turn requests into
 * commands, reads and cluster operations. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/transport.h"
#include "node/log.h"
#include "node/node.h"
#include "node/api/api.h"
#include "replication/domain/domain.h"
#include "replication/domain/kv.h"
#include "storage/assert.h"
#include "storage/error.h"

#define ROUTE_LOCAL  TANDEM_ROUTE_LOCAL
#define ROUTE_WRITE  TANDEM_ROUTE_WRITE
#define ROUTE_READ   TANDEM_ROUTE_READ
#define ROUTE_PREFIX TANDEM_ROUTE_PREFIX

/* X(id, method, pattern, flags, handler) */
#define TANDEM_ROUTES(X)                                                                           \
    X(healthz, HTTP_GET, "/healthz", ROUTE_LOCAL, route_healthz)                                   \
    X(readyz, HTTP_GET, "/readyz", ROUTE_LOCAL, route_readyz)                                      \
    X(metrics, HTTP_GET, "/metrics", ROUTE_LOCAL, route_metrics)                                   \
    X(status, HTTP_GET, "/v1/status", ROUTE_LOCAL, route_status)                                   \
    X(digest, HTTP_GET, "/v1/digest", ROUTE_LOCAL, route_digest)                                   \
    X(members_list, HTTP_GET, "/v1/members", ROUTE_LOCAL, route_members_list)                      \
    X(members_add, HTTP_POST, "/v1/members", ROUTE_WRITE, route_members_add)                       \
    X(members_remove, HTTP_DELETE, "/v1/members/", ROUTE_WRITE | ROUTE_PREFIX,                     \
      route_members_remove)                                                                        \
    X(leader_transfer, HTTP_POST, "/v1/leader/transfer", ROUTE_WRITE, route_leader_transfer)       \
    X(kv_list, HTTP_GET, "/v1/kv", ROUTE_READ, route_kv_list)                                      \
    X(kv_get, HTTP_GET, "/v1/kv/", ROUTE_READ | ROUTE_PREFIX, route_kv_get)                        \
    X(kv_put, HTTP_PUT, "/v1/kv/", ROUTE_WRITE | ROUTE_PREFIX, route_kv_put)                       \
    X(kv_delete, HTTP_DELETE, "/v1/kv/", ROUTE_WRITE | ROUTE_PREFIX, route_kv_delete)              \
    X(txn, HTTP_POST, "/v1/txn", ROUTE_WRITE, route_txn)

#define ROUTE_DECLARE(id, method, pattern, flags, fn)                                              \
    static void fn(struct tandem_node *node, struct tandem_http_request *r, const char *param);
TANDEM_ROUTES(ROUTE_DECLARE)
#undef ROUTE_DECLARE

enum route_id {
#define ROUTE_ENUM(id, method, pattern, flags, fn) ROUTE_##id,
    TANDEM_ROUTES(ROUTE_ENUM)
#undef ROUTE_ENUM
        ROUTE_COUNT
};

static const struct tandem_route core_routes[] = {
#define ROUTE_ROW(id, method, pattern, flags, fn) {#id, method, pattern, flags, fn},
    TANDEM_ROUTES(ROUTE_ROW)
#undef ROUTE_ROW
};

static const struct tandem_route_table core_route_table = {core_routes, ROUTE_COUNT};

/* Tables tried in order; route ids (metrics labels) number their rows consecutively. */
static const struct tandem_route_table *const route_tables[] = {
    &core_route_table,
    &tandem_domain_route_table,
    &tandem_bcp_route_table,
    &tandem_rebalance_route_table,
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
            assert(routes_count < TANDEM_METRICS_ROUTES_MAX - 1);
            all_routes[routes_count] = &route_tables[t]->routes[i];
            route_names[routes_count] = route_tables[t]->routes[i].name;
            routes_count++;
        }
    }
    route_names[routes_count] = "unmatched";
}

#define PARAM_BYTES_MAX 1024 /* a decoded path parameter (keys are at most 511 bytes) */

static unsigned route_of(const struct tandem_http_request *r)
{
    return (unsigned)(uintptr_t)r->data;
}

void tandem_node_respond(struct tandem_node *node, struct tandem_http_request *r, int status,
                         const char *content_type, const char *extra_headers, const void *body,
                         size_t body_len)
{
    char headers[512];
    snprintf(headers, sizeof headers, "X-Tandem-Node: %s\r\nX-Tandem-Applied-Index: %llu\r\n%s",
             node->self.name, (unsigned long long)raft_last_applied(&node->raft.raft),
             extra_headers == NULL ? "" : extra_headers);
    tandem_metrics_count(&node->metrics, route_of(r), status);
    tandem_histogram_observe(&node->metrics.request, uv_hrtime() - r->start_ns);
    tandem_http_respond(r, status, content_type, headers, body, body_len);
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

void tandem_route_error(struct tandem_node *node, struct tandem_http_request *r, int status,
                        const char *fmt, ...)
{
    char message[512], body[1200];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    size_t len = tandem_http_error_json(body, sizeof body, message);
    tandem_node_respond(node, r, status, "application/json", NULL, body,
                        len < sizeof body ? len : strlen(body));
}

/* No leader now: the request waits for one (node/http/park.h) while it is young, then 503. */
static void respond_no_leader(struct tandem_node *node, struct tandem_http_request *r)
{
    if (tandem_park(&node->park, r)) {
        return;
    }
    tandem_route_json(node, r, 503, "Retry-After: 1\r\n",
                      "{\"error\":\"no leader\",\"leader\":null}");
}

static void router_answer(void *data, struct tandem_http_request *r, int status,
                          const char *extra_headers, const char *json)
{
    tandem_route_json(data, r, status, extra_headers, json);
}

static void router_redispatch(void *data, struct tandem_http_request *r)
{
    struct tandem_node *node = data;
    tandem_routes_handle(&node->http, r);
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

json_t *tandem_route_actor_body(struct tandem_node *node, struct tandem_http_request *r, char *user,
                                char *site)
{
    const char *header = tandem_http_request_header(r, TANDEM_USER_HEADER);
    const char *by = tandem_http_request_header(r, TANDEM_FORWARDED_HEADER);
    struct tandem_member m;
    json_error_t jerr;
    if (header != NULL && !tandem_domain_text_ok(header, false)) {
        tandem_route_error(node, r, 400, "%s must be printable text of 1 to %d bytes",
                           TANDEM_USER_HEADER, TANDEM_DOMAIN_TEXT_LEN_MAX);
        return NULL;
    }
    json_t *body = r->body_len == 0 ? json_object() : json_loadb(r->body, r->body_len, 0, &jerr);
    if (body == NULL || !json_is_object(body)) {
        tandem_route_error(node, r, 400, "malformed JSON: %s",
                           body == NULL ? jerr.text : "the body must be an object");
        json_decref(body);
        return NULL;
    }
    snprintf(user, TANDEM_DOMAIN_TEXT_LEN_MAX + 1, "%s",
             header != NULL ? header : TANDEM_ACTOR_DEFAULT);
    bool forwarded = by != NULL && tandem_raft_member_by_name(&node->raft, by, &m, NULL) == 0;
    snprintf(site, TANDEM_SITE_LEN_MAX + 1, "%s", forwarded ? m.site : node->self.site);
    return body;
}

/* A generic proposal: one command, answered with its applied result. */
struct submission {
    struct tandem_write write;
    struct tandem_node *node;
    struct tandem_http_request *r;
    void (*done)(void *owner);
    void *owner;
};

static void submission_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct submission *s = w->data;
    if (status != 0) {
        tandem_route_raft_error(s->node, s->r, status);
    } else {
        tandem_route_json(s->node, s->r, result->status, NULL, result->body);
    }
    if (s->done != NULL) {
        s->done(s->owner);
    }
    free(s);
}

void tandem_route_submit(struct tandem_node *node, struct tandem_http_request *r,
                         Tandem__Command *command, void (*done)(void *owner), void *owner)
{
    struct submission *s = calloc(1, sizeof *s);
    int rv = s == NULL ? RAFT_NOMEM : 0;
    if (rv == 0) {
        s->write.command = command;
        s->write.cb = submission_cb;
        s->write.data = s;
        s->node = node;
        s->r = r;
        s->done = done;
        s->owner = owner;
        rv = tandem_proposer_write(&node->proposer, &s->write);
    }
    if (rv != 0) {
        tandem_route_raft_error(node, r, rv);
        free(s);
        if (done != NULL) {
            done(owner);
        }
    }
}

/* A generic linearizable read. */
struct read_request {
    struct tandem_read read;
    struct tandem_node *node;
    struct tandem_http_request *r;
    tandem_route_serve_fn serve;
    void *arg;
    void (*done)(void *arg);
};

static void read_request_cb(struct tandem_read *rd, int status)
{
    struct read_request *q = rd->data;
    if (status != 0) {
        tandem_route_raft_error(q->node, q->r, status);
    } else {
        q->serve(q->node, q->r, q->arg);
    }
    if (q->done != NULL) {
        q->done(q->arg);
    }
    free(q);
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
    struct read_request *q = calloc(1, sizeof *q);
    int rv = q == NULL ? RAFT_NOMEM : 0;
    if (rv == 0) {
        *q = (struct read_request){.node = node, .r = r, .serve = serve, .arg = arg, .done = done};
        q->read.cb = read_request_cb;
        q->read.data = q;
        rv = tandem_proposer_read(&node->proposer, &q->read);
    }
    if (rv != 0) {
        tandem_route_raft_error(node, r, rv);
        free(q);
        if (done != NULL) {
            done(arg);
        }
    }
}

/* ---- cluster routes ---- */

static void route_healthz(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_route_json(node, r, 200, NULL, "{\"ok\":true}");
}

static void route_readyz(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    struct tandem_member leader;
    (void)p;
    if (node->fenced) {
        tandem_route_json(node, r, 503, NULL, "{\"ready\":false,\"reason\":\"fenced\"}");
    } else if (tandem_raft_leader(&node->raft, &leader) != 0) {
        tandem_route_json(node, r, 503, NULL, "{\"ready\":false,\"reason\":\"no leader\"}");
    } else if (raft_last_applied(&node->raft.raft) < raft_commit_index(&node->raft.raft)) {
        tandem_route_json(node, r, 503, NULL,
                          "{\"ready\":false,\"reason\":\"applying committed entries\"}");
    } else {
        tandem_route_json(node, r, 200, NULL, "{\"ready\":true}");
    }
}

static json_t *member_json(struct tandem_node *node, const struct tandem_member *m, raft_id id)
{
    raft_index match = 0;
    json_t *out = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", m->name, "site", m->site, "role",
                            tandem_role_name(m->role), "raft", m->raft, "api", m->api);
    if (raft_state(&node->raft.raft) == RAFT_LEADER &&
        raft_match_index(&node->raft.raft, id, &match) == 0) {
        if (id == node->raft.id) {
            match = raft_last_index(&node->raft.raft);
        }
        json_object_set_new(out, "match_index", json_integer((json_int_t)match));
    } else {
        json_object_set_new(out, "match_index", json_null());
    }
    return out;
}

static json_t *members_json(struct tandem_node *node)
{
    const struct raft_configuration *conf = &node->raft.raft.configuration;
    json_t *members = json_array();
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        m.role = tandem_raft_role_from_raft(conf->servers[i].role);
        json_array_append_new(members, member_json(node, &m, conf->servers[i].id));
    }
    return members;
}

static const char *state_name(struct tandem_node *node)
{
    switch (raft_state(&node->raft.raft)) {
        case RAFT_FOLLOWER:
            return "follower";
        case RAFT_CANDIDATE:
            return "candidate";
        case RAFT_LEADER:
            return "leader";
        default:
            return "unavailable";
    }
}

static void route_status(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    struct raft *raft = &node->raft.raft;
    struct tandem_member leader, me;
    char digest[2 * TANDEM_DIGEST_LEN + 1];
    (void)p;
    int role =
        tandem_raft_member_by_name(&node->raft, node->self.name, &me, NULL) == 0 ? me.role : -1;
    tandem_digest_hex(node->store.apply_digest, digest);
    json_t *self = json_pack(
        "{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:b,s:I,s:s}", "name", node->self.name, "site",
        node->self.site, "role", role < 0 ? "none" : tandem_role_name(role), "state",
        state_name(node), "term", (json_int_t)raft_current_term(raft), "commit_index",
        (json_int_t)raft_commit_index(raft), "applied_index", (json_int_t)raft_last_applied(raft),
        "last_index", (json_int_t)raft_last_index(raft), "apply_digest", digest, "fenced",
        node->fenced, "epoch", (json_int_t)node->epoch, "cluster_id", node->config->cluster_id);
    json_t *leader_json = tandem_raft_leader(&node->raft, &leader) == 0
                              ? json_pack("{s:s,s:s}", "name", leader.name, "api", leader.api)
                              : json_null();
    tandem_route_jansson(node, r, 200,
                         json_pack("{s:o,s:o,s:o}", "node", self, "leader", leader_json, "members",
                                   members_json(node)));
}

static void route_members_list(struct tandem_node *node, struct tandem_http_request *r,
                               const char *p)
{
    (void)p;
    tandem_route_jansson(node, r, 200, json_pack("{s:o}", "members", members_json(node)));
}

static void route_digest(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    MDB_txn *txn;
    uint8_t digest[TANDEM_DIGEST_LEN];
    char hex[2 * TANDEM_DIGEST_LEN + 1];
    (void)p;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    uint64_t applied = node->store.applied_index;
    int rv = tandem_store_state_digest(&node->store, txn, digest);
    mdb_txn_abort(txn);
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return;
    }
    tandem_digest_hex(digest, hex);
    tandem_route_jansson(
        node, r, 200,
        json_pack("{s:I,s:s}", "applied_index", (json_int_t)applied, "state_digest", hex));
}

static void route_metrics(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    struct raft *raft = &node->raft.raft;
    char *text = NULL;
    size_t len = 0;
    struct tandem_transport_stats ts;
    struct tandem_http_server_stats hs;
    (void)p;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    tandem_transport_stats(&node->raft.transport, &ts);
    tandem_http_server_stats(&node->http, &hs);
    fprintf(out,
            "# TYPE tandem_raft_term gauge\ntandem_raft_term %llu\n"
            "# TYPE tandem_raft_commit_index gauge\ntandem_raft_commit_index %llu\n"
            "# TYPE tandem_raft_applied_index gauge\ntandem_raft_applied_index %llu\n"
            "# TYPE tandem_raft_last_index gauge\ntandem_raft_last_index %llu\n"
            "# TYPE tandem_raft_leader gauge\ntandem_raft_leader %d\n"
            "# TYPE tandem_fenced gauge\ntandem_fenced %d\n"
            "# TYPE tandem_entries_applied_total counter\ntandem_entries_applied_total %llu\n"
            "# TYPE tandem_commands_applied_total counter\ntandem_commands_applied_total %llu\n"
            "# TYPE tandem_entries_proposed_total counter\ntandem_entries_proposed_total %llu\n"
            "# TYPE tandem_barriers_total counter\ntandem_barriers_total %llu\n"
            "# TYPE tandem_lmdb_commits_total counter\ntandem_lmdb_commits_total %llu\n"
            "# TYPE tandem_snapshots_taken_total counter\ntandem_snapshots_taken_total %llu\n"
            "# TYPE tandem_snapshots_deferred_total counter\n"
            "tandem_snapshots_deferred_total %llu\n"
            "# TYPE tandem_snapshots_restored_total counter\n"
            "tandem_snapshots_restored_total %llu\n"
            "# TYPE tandem_forwarded_total counter\ntandem_forwarded_total %llu\n"
            "# TYPE tandem_transport_refused_total counter\n"
            "tandem_transport_refused_total{reason=\"cluster\"} %llu\n"
            "tandem_transport_refused_total{reason=\"epoch\"} %llu\n"
            "tandem_transport_refused_total{reason=\"malformed\"} %llu\n"
            "# TYPE tandem_http_connections_open gauge\ntandem_http_connections_open %llu\n",
            (unsigned long long)raft_current_term(raft),
            (unsigned long long)raft_commit_index(raft),
            (unsigned long long)node->store.applied_index,
            (unsigned long long)raft_last_index(raft), raft_state(raft) == RAFT_LEADER,
            node->fenced, (unsigned long long)node->fsm.entries_applied,
            (unsigned long long)node->fsm.commands_applied,
            (unsigned long long)node->proposer.entries_proposed,
            (unsigned long long)node->proposer.barriers_proposed,
            (unsigned long long)node->store.commits, (unsigned long long)node->fsm.snapshots_taken,
            (unsigned long long)node->fsm.snapshots_deferred,
            (unsigned long long)node->fsm.snapshots_restored,
            (unsigned long long)node->forwarder.forwarded, (unsigned long long)ts.refused_cluster,
            (unsigned long long)ts.refused_epoch, (unsigned long long)ts.refused_malformed,
            (unsigned long long)hs.connections_open);
    tandem_histogram_write(out, "tandem_apply_duration_seconds",
                           "Time to apply one raft entry to LMDB.", &node->metrics.apply);
    tandem_histogram_write(out, "tandem_http_request_duration_seconds",
                           "Time from a complete request to its answer.", &node->metrics.request);
    tandem_route_counts_write(out, &node->metrics, route_names, routes_count + 1);
    fclose(out);
    tandem_node_respond(node, r, 200, "text/plain; version=0.0.4", NULL, text, len);
    free(text);
}

/* ---- membership ---- */

/* A membership change can meet the site controller's own (one change at a time in raft):
 * the role assignment after an add is retried for a while before giving up. */
#define MEMBER_ASSIGN_RETRY_MS     50
#define MEMBER_ASSIGN_ATTEMPTS_MAX 40

struct member_change {
    struct raft_change change;
    uv_timer_t timer; /* drives the assignment after an add; closed before mc is freed */
    bool timer_started;
    unsigned attempts;
    struct tandem_node *node;
    struct tandem_http_request *r;
    struct tandem_member member;
    uint64_t id;
};

static void member_change_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void member_change_done(struct member_change *mc, int status)
{
    if (status != 0) {
        tandem_route_error(mc->node, mc->r, status == RAFT_NOTLEADER ? 503 : 409,
                           "membership change for %s failed: %s", mc->member.name,
                           raft_strerror(status));
    } else {
        json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", mc->member.name, "site",
                              mc->member.site, "role", tandem_role_name(mc->member.role), "raft",
                              mc->member.raft, "api", mc->member.api);
        tandem_route_jansson(mc->node, mc->r, 200, json_pack("{s:o}", "member", m));
    }
    if (mc->timer_started) {
        uv_close((uv_handle_t *)&mc->timer, member_change_closed_cb);
    } else {
        free(mc);
    }
}

static void member_assign_cb(struct raft_change *req, int status)
{
    member_change_done(req->data, status);
}

static void member_assign_try(uv_timer_t *timer)
{
    struct member_change *mc = timer->data;
    int rv = raft_assign(&mc->node->raft.raft, &mc->change, mc->id,
                         tandem_raft_role_to_raft(mc->member.role), member_assign_cb);
    if (rv == RAFT_CANTCHANGE && ++mc->attempts < MEMBER_ASSIGN_ATTEMPTS_MAX) {
        uv_timer_start(&mc->timer, member_assign_try, MEMBER_ASSIGN_RETRY_MS, 0);
    } else if (rv != 0) {
        member_change_done(mc, rv);
    }
}

static void member_add_cb(struct raft_change *req, int status)
{
    struct member_change *mc = req->data;
    if (status != 0 || mc->member.role == TANDEM_ROLE_SPARE) {
        member_change_done(mc, status);
        return;
    }
    /* Assign from the loop, not inside raft's own callback for this request. */
    uv_timer_init(mc->node->loop, &mc->timer);
    mc->timer.data = mc;
    mc->timer_started = true;
    uv_timer_start(&mc->timer, member_assign_try, 0, 0);
}

static int member_from_json(json_t *body, struct tandem_member *m, char *errmsg)
{
    const char *name = NULL, *site = NULL, *raft_addr = NULL, *api = NULL, *role = "voter";
    char spec[512];
    if (json_unpack(body, "{s:s,s:s,s:s,s:s,s?:s}", "name", &name, "site", &site, "raft",
                    &raft_addr, "api", &api, "role", &role) != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "body must be {\"name\",\"site\",\"raft\",\"api\",\"role\"?} "
                 "with string values");
        return -1;
    }
    snprintf(spec, sizeof spec, "%s,%s,%s,%s,%s", name, site, raft_addr, api, role);
    return tandem_member_spec_parse(spec, m, errmsg);
}

static void route_members_add(struct tandem_node *node, struct tandem_http_request *r,
                              const char *p)
{
    struct tandem_member existing;
    char errmsg[TANDEM_ERRMSG_SIZE];
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    json_error_t jerr;
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    struct member_change *mc = calloc(1, sizeof *mc);
    if (mc == NULL) {
        json_decref(body);
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    if (body == NULL) {
        tandem_route_error(node, r, 400, "malformed JSON: %s", jerr.text);
        goto err;
    }
    if (member_from_json(body, &mc->member, errmsg) != 0) {
        tandem_route_error(node, r, 400, "%s", errmsg);
        goto err;
    }
    if (tandem_raft_member_by_name(&node->raft, mc->member.name, &existing, NULL) == 0) {
        tandem_route_error(node, r, 409, "member %s already exists", mc->member.name);
        goto err;
    }
    const struct raft_configuration *conf = &node->raft.raft.configuration;
    for (unsigned i = 0; i < conf->n; i++) {
        if (tandem_member_address_parse(conf->servers[i].address, &existing, errmsg) == 0 &&
            strcmp(existing.raft, mc->member.raft) == 0) {
            tandem_route_error(node, r, 409, "raft address %s is already used by %s",
                               mc->member.raft, existing.name);
            goto err;
        }
    }
    json_decref(body);
    tandem_member_address_format(&mc->member, address, sizeof address);
    mc->node = node;
    mc->r = r;
    mc->id = tandem_member_id(mc->member.name);
    mc->change.data = mc;
    int rv = raft_add(&node->raft.raft, &mc->change, mc->id, address, member_add_cb);
    if (rv != 0) {
        member_change_done(mc, rv);
    }
    return;
err:
    json_decref(body);
    free(mc);
}

static void member_remove_cb(struct raft_change *req, int status)
{
    struct member_change *mc = req->data;
    if (status != 0) {
        member_change_done(mc, status);
        return;
    }
    tandem_route_jansson(mc->node, mc->r, 200, json_pack("{s:s}", "removed", mc->member.name));
    free(mc);
}

static void route_members_remove(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *name)
{
    struct member_change *mc = calloc(1, sizeof *mc);
    if (mc == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    if (tandem_raft_member_by_name(&node->raft, name, &mc->member, &mc->id) != 0) {
        tandem_route_error(node, r, 404, "no member named %s", name);
        free(mc);
        return;
    }
    mc->node = node;
    mc->r = r;
    mc->change.data = mc;
    int rv = raft_remove(&node->raft.raft, &mc->change, mc->id, member_remove_cb);
    if (rv != 0) {
        member_change_done(mc, rv);
    }
}

/* Leadership transfer: libraft may ignore a transfer, so confirm by watching the leader and
 * retry while we are still the leader. The request struct is never freed inside its callback. */
#define TRANSFER_ATTEMPTS_MAX 3
#define TRANSFER_POLL_MS      50

struct transfer {
    struct raft_transfer req;
    uv_timer_t timer;
    struct tandem_node *node;
    struct tandem_http_request *r;
    uint64_t id;
    char name[TANDEM_NAME_LEN_MAX + 1];
    unsigned attempts;
    unsigned polls_left;
    bool inflight;
};

static void transfer_close_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void transfer_finish(struct transfer *t, int status, const char *error)
{
    if (status == 200) {
        tandem_route_jansson(t->node, t->r, 200, json_pack("{s:s}", "leader", t->name));
    } else {
        tandem_route_error(t->node, t->r, status, "leadership transfer to %s: %s", t->name, error);
    }
    uv_close((uv_handle_t *)&t->timer, transfer_close_cb);
}

static void transfer_cb(struct raft_transfer *req)
{
    struct transfer *t = req->data;
    t->inflight = false;
}

static void transfer_poll(uv_timer_t *timer)
{
    struct transfer *t = timer->data;
    raft_id leader_id;
    const char *address;
    if (t->inflight) {
        return;
    }
    raft_leader(&t->node->raft.raft, &leader_id, &address);
    if (leader_id == t->id) {
        uv_timer_stop(timer);
        transfer_finish(t, 200, NULL);
        return;
    }
    bool leader = raft_state(&t->node->raft.raft) == RAFT_LEADER;
    if (leader && t->attempts < TRANSFER_ATTEMPTS_MAX) {
        t->req.data = t;
        if (raft_transfer(&t->node->raft.raft, &t->req, t->id, transfer_cb) == 0) {
            t->attempts++;
            t->inflight = true;
            return;
        }
    }
    if (t->polls_left-- == 0 || (leader && t->attempts >= TRANSFER_ATTEMPTS_MAX)) {
        uv_timer_stop(timer);
        transfer_finish(t, 504, "the new leader was not confirmed in time");
    }
}

static void route_leader_transfer(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *p)
{
    struct tandem_member m;
    const char *name = NULL;
    json_error_t jerr;
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    if (body == NULL || json_unpack(body, "{s:s}", "name", &name) != 0) {
        tandem_route_error(node, r, 400, "body must be {\"name\": \"<member>\"}");
        json_decref(body);
        return;
    }
    struct transfer *t = calloc(1, sizeof *t);
    if (t == NULL) {
        json_decref(body);
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    snprintf(t->name, sizeof t->name, "%s", name);
    json_decref(body);
    if (tandem_raft_member_by_name(&node->raft, t->name, &m, &t->id) != 0) {
        tandem_route_error(node, r, 404, "no member named %s", t->name);
        free(t);
        return;
    }
    if (m.role != TANDEM_ROLE_VOTER) {
        tandem_route_error(node, r, 409, "%s is a %s, not a voter", t->name,
                           tandem_role_name(m.role));
        free(t);
        return;
    }
    t->node = node;
    t->r = r;
    t->polls_left = (4 * node->config->election_timeout_ms) / TRANSFER_POLL_MS + 1;
    uv_timer_init(node->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, transfer_poll, 0, TRANSFER_POLL_MS);
}

/* ---- KV ---- */

static bool key_valid(const char *key, size_t len, char *why, size_t why_size)
{
    if (len == 0 || len > TANDEM_KV_KEY_LEN_MAX) {
        snprintf(why, why_size, "key must be 1 to %d bytes", TANDEM_KV_KEY_LEN_MAX);
        return false;
    }
    json_t *probe = json_stringn(key, len);
    if (probe == NULL) {
        snprintf(why, why_size, "key must be valid UTF-8 without NUL");
        return false;
    }
    json_decref(probe);
    return true;
}

/* A transaction's decoded compares and operations (about 15 KiB: kept off plain puts). */
struct txn_body {
    Tandem__Txn txn;
    Tandem__TxnCompare compares[TANDEM_TXN_COMPARES_MAX];
    Tandem__TxnCompare *compare_ptrs[TANDEM_TXN_COMPARES_MAX];
    Tandem__TxnOp ops[2 * TANDEM_TXN_OPS_MAX];
    Tandem__TxnOp *op_ptrs[2 * TANDEM_TXN_OPS_MAX];
    uint8_t *decoded[TANDEM_TXN_COMPARES_MAX + 2 * TANDEM_TXN_OPS_MAX]; /* owned */
    unsigned n_decoded;
};

struct kv_request {
    struct tandem_write write;
    struct tandem_read read;
    Tandem__Command command;
    union {
        Tandem__KvPut put;
        Tandem__KvDelete del;
    };
    struct tandem_node *node;
    struct tandem_http_request *r;
    char key[TANDEM_KV_KEY_LEN_MAX + 1];
    size_t key_len;
    struct txn_body *t; /* owned: only transactions carry one */
    json_t *json;       /* owned: the parsed body, keys point into it */
};

static void kv_request_free(struct kv_request *k)
{
    for (unsigned i = 0; k->t != NULL && i < k->t->n_decoded; i++) {
        free(k->t->decoded[i]);
    }
    free(k->t);
    json_decref(k->json);
    free(k);
}

static void kv_write_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct kv_request *k = w->data;
    if (status != 0) {
        tandem_route_raft_error(k->node, k->r, status);
    } else {
        tandem_route_json(k->node, k->r, result->status, NULL, result->body);
    }
    kv_request_free(k);
}

static void kv_submit(struct tandem_node *node, struct kv_request *k)
{
    k->write.command = &k->command;
    k->write.cb = kv_write_cb;
    k->write.data = k;
    int rv = tandem_proposer_write(&node->proposer, &k->write);
    if (rv != 0) {
        tandem_route_raft_error(node, k->r, rv);
        kv_request_free(k);
    }
}

static struct kv_request *kv_request_new(struct tandem_node *node, struct tandem_http_request *r,
                                         const char *key)
{
    char why[128];
    struct kv_request *k;
    if (key != NULL && !key_valid(key, strlen(key), why, sizeof why)) {
        tandem_route_error(node, r, 400, "%s", why);
        return NULL;
    }
    k = calloc(1, sizeof *k);
    if (k == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return NULL;
    }
    tandem__command__init(&k->command);
    k->node = node;
    k->r = r;
    if (key != NULL) {
        k->key_len = strlen(key);
        memcpy(k->key, key, k->key_len + 1);
    }
    return k;
}

static void route_kv_put(struct tandem_node *node, struct tandem_http_request *r, const char *key)
{
    struct kv_request *k = kv_request_new(node, r, key);
    if (k == NULL) {
        return;
    }
    tandem__kv_put__init(&k->put);
    k->put.key.data = (uint8_t *)k->key;
    k->put.key.len = k->key_len;
    k->put.value.data = (uint8_t *)r->body; /* the request stays valid until answered */
    k->put.value.len = r->body_len;
    k->command.body_case = TANDEM__COMMAND__BODY_KV_PUT;
    k->command.kv_put = &k->put;
    kv_submit(node, k);
}

static void route_kv_delete(struct tandem_node *node, struct tandem_http_request *r,
                            const char *key)
{
    struct kv_request *k = kv_request_new(node, r, key);
    if (k == NULL) {
        return;
    }
    tandem__kv_delete__init(&k->del);
    k->del.key.data = (uint8_t *)k->key;
    k->del.key.len = k->key_len;
    k->command.body_case = TANDEM__COMMAND__BODY_KV_DELETE;
    k->command.kv_delete = &k->del;
    kv_submit(node, k);
}

static void kv_get_serve(struct tandem_node *node, struct tandem_http_request *r, const char *key,
                         size_t key_len)
{
    MDB_txn *txn;
    Tandem__KvRecord *record = NULL;
    char headers[128];
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    int rv = tandem_kv_get(&node->store, txn, key, key_len, &record);
    if (rv != 0) {
        mdb_txn_abort(txn);
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return;
    }
    if (record == NULL) {
        mdb_txn_abort(txn);
        tandem_route_error(node, r, 404, "key not found: %.*s", (int)key_len, key);
        return;
    }
    snprintf(headers, sizeof headers, "X-Tandem-Mod-Index: %llu\r\nX-Tandem-Create-Index: %llu\r\n",
             (unsigned long long)record->mod_index, (unsigned long long)record->create_index);
    tandem_node_respond(node, r, 200, "application/octet-stream", headers, record->value.data,
                        record->value.len);
    tandem__kv_record__free_unpacked(record, NULL);
    mdb_txn_abort(txn);
}

static void kv_list_serve(struct tandem_node *node, struct tandem_http_request *r);

static void kv_read_cb(struct tandem_read *rd, int status)
{
    struct kv_request *k = rd->data;
    if (status != 0) {
        tandem_route_raft_error(k->node, k->r, status);
    } else if (route_of(k->r) == ROUTE_kv_list) {
        kv_list_serve(k->node, k->r);
    } else {
        kv_get_serve(k->node, k->r, k->key, k->key_len);
    }
    kv_request_free(k);
}

/* Linearizable reads wait for this loop iteration's shared barrier. */
static void read_linearizable(struct tandem_node *node, struct tandem_http_request *r,
                              const char *key)
{
    struct kv_request *k = kv_request_new(node, r, key);
    if (k == NULL) {
        return;
    }
    k->read.cb = kv_read_cb;
    k->read.data = k;
    int rv = tandem_proposer_read(&node->proposer, &k->read);
    if (rv != 0) {
        tandem_route_raft_error(node, r, rv);
        kv_request_free(k);
    }
}

static void route_kv_get(struct tandem_node *node, struct tandem_http_request *r, const char *key)
{
    char why[128];
    if (!key_valid(key, strlen(key), why, sizeof why)) {
        tandem_route_error(node, r, 400, "%s", why);
    } else if (tandem_route_local(r)) {
        kv_get_serve(node, r, key, strlen(key));
    } else {
        read_linearizable(node, r, key);
    }
}

static int list_params(struct tandem_http_request *r, char *prefix, char *after, long *limit,
                       char *why)
{
    char text[32];
    int rv;
    if ((rv = tandem_http_query_get(r->query, "prefix", prefix, TANDEM_KV_KEY_LEN_MAX + 1)) < 0 ||
        (rv == 0 && (prefix[0] = '\0', 0))) {
        snprintf(why, 128, "prefix is malformed or longer than %d bytes", TANDEM_KV_KEY_LEN_MAX);
        return -1;
    }
    if ((rv = tandem_http_query_get(r->query, "after", after, TANDEM_KV_KEY_LEN_MAX + 1)) < 0) {
        snprintf(why, 128, "after is malformed or longer than %d bytes", TANDEM_KV_KEY_LEN_MAX);
        return -1;
    }
    if (rv == 0) {
        after[0] = '\0';
    }
    *limit = 100;
    rv = tandem_http_query_get(r->query, "limit", text, sizeof text);
    if (rv != 0) {
        char *end = NULL;
        errno = 0;
        *limit = rv < 0 ? -1 : strtol(text, &end, 10);
        if (rv < 0 || errno != 0 || end == text || *end != '\0' || *limit < 1 ||
            *limit > TANDEM_KV_LIST_LIMIT_MAX) {
            snprintf(why, 128, "limit must be an integer from 1 to %d", TANDEM_KV_LIST_LIMIT_MAX);
            return -1;
        }
    }
    return 0;
}

static void kv_list_serve(struct tandem_node *node, struct tandem_http_request *r)
{
    char prefix[TANDEM_KV_KEY_LEN_MAX + 1], after[TANDEM_KV_KEY_LEN_MAX + 1], why[128];
    long limit;
    MDB_txn *txn;
    MDB_cursor *cursor;
    if (list_params(r, prefix, after, &limit, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        return;
    }
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    if (mdb_cursor_open(txn, node->store.dbi[TANDEM_DB_KV], &cursor) != 0) {
        mdb_txn_abort(txn);
        tandem_route_error(node, r, 500, "cannot open a cursor");
        return;
    }
    size_t prefix_len = strlen(prefix), after_len = strlen(after);
    const char *start = after_len > 0 && strcmp(after, prefix) > 0 ? after : prefix;
    MDB_val key = {.mv_size = strlen(start), .mv_data = (void *)start}, value;
    int rv = key.mv_size == 0 ? mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
                              : mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE);
    json_t *kvs = json_array();
    bool more = false;
    for (; rv == 0; rv = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
        if (key.mv_size < prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0) {
            break;
        }
        if (after_len > 0 && key.mv_size == after_len &&
            memcmp(key.mv_data, after, after_len) == 0) {
            continue;
        }
        if (json_array_size(kvs) >= (size_t)limit) {
            more = true;
            break;
        }
        Tandem__KvRecord *record = tandem__kv_record__unpack(NULL, value.mv_size, value.mv_data);
        if (record != NULL) {
            json_array_append_new(kvs, tandem_kv_record_json(key.mv_data, key.mv_size, record));
            tandem__kv_record__free_unpacked(record, NULL);
        }
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    tandem_route_jansson(node, r, 200, json_pack("{s:o,s:b}", "kvs", kvs, "more", more));
}

static void route_kv_list(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    char prefix[TANDEM_KV_KEY_LEN_MAX + 1], after[TANDEM_KV_KEY_LEN_MAX + 1], why[128];
    long limit;
    (void)p;
    if (list_params(r, prefix, after, &limit, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why); /* refuse before any barrier */
    } else if (tandem_route_local(r)) {
        kv_list_serve(node, r);
    } else {
        read_linearizable(node, r, NULL);
    }
}

/* ---- txn ---- */

static int txn_bytes(struct kv_request *k, json_t *text, ProtobufCBinaryData *out, char *why)
{
    uint8_t *data;
    size_t len;
    if (!json_is_string(text) ||
        tandem_base64_decode(json_string_value(text), json_string_length(text), &data, &len) != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "value must be a base64 string");
        return -1;
    }
    k->t->decoded[k->t->n_decoded++] = data;
    out->data = data;
    out->len = len;
    return 0;
}

static int txn_key(json_t *object, ProtobufCBinaryData *out, char *why)
{
    json_t *key = json_object_get(object, "key");
    if (!json_is_string(key) ||
        !key_valid(json_string_value(key), json_string_length(key), why, TANDEM_ERRMSG_SIZE)) {
        if (!json_is_string(key)) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "each compare and operation needs a string \"key\"");
        }
        return -1;
    }
    out->data = (uint8_t *)json_string_value(key);
    out->len = json_string_length(key);
    return 0;
}

static int txn_compare_parse(struct kv_request *k, json_t *c, Tandem__TxnCompare *out, char *why)
{
    static const char *const ops[] = {"==", "!=", "<", ">"};
    const char *target = json_string_value(json_object_get(c, "target"));
    const char *op = json_string_value(json_object_get(c, "op"));
    tandem__txn_compare__init(out);
    if (!json_is_object(c) || txn_key(c, &out->key, why) != 0) {
        return json_is_object(c)
                   ? -1
                   : (snprintf(why, TANDEM_ERRMSG_SIZE, "compare must be an object"), -1);
    }
    int op_index = -1;
    for (int i = 0; op != NULL && i < 4; i++) {
        op_index = strcmp(op, ops[i]) == 0 ? i : op_index;
    }
    if (op_index < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "compare op must be one of == != < >");
        return -1;
    }
    out->op = (Tandem__TxnCompare__Op)op_index;
    if (target != NULL && strcmp(target, "value") == 0) {
        out->target = TANDEM__TXN_COMPARE__TARGET__VALUE;
        return txn_bytes(k, json_object_get(c, "value"), &out->value, why);
    }
    if (target != NULL && strcmp(target, "mod_index") == 0) {
        json_t *index = json_object_get(c, "mod_index");
        if (!json_is_integer(index) || json_integer_value(index) < 0) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "mod_index compare needs a non-negative integer \"mod_index\"");
            return -1;
        }
        out->target = TANDEM__TXN_COMPARE__TARGET__MOD_INDEX;
        out->mod_index = (uint64_t)json_integer_value(index);
        return 0;
    }
    if (target != NULL && strcmp(target, "exists") == 0) {
        json_t *exists = json_object_get(c, "exists");
        if (!json_is_boolean(exists) || op_index > 1) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "exists compare needs a boolean \"exists\" and op == or !=");
            return -1;
        }
        out->target = TANDEM__TXN_COMPARE__TARGET__EXISTS;
        out->exists = json_is_true(exists);
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "compare target must be value, mod_index or exists");
    return -1;
}

static int txn_op_parse(struct kv_request *k, json_t *o, Tandem__TxnOp *out, char *why)
{
    const char *op = json_string_value(json_object_get(o, "op"));
    tandem__txn_op__init(out);
    if (!json_is_object(o)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "operation must be an object");
        return -1;
    }
    if (txn_key(o, &out->key, why) != 0) {
        return -1;
    }
    if (op != NULL && strcmp(op, "put") == 0) {
        out->kind = TANDEM__TXN_OP__KIND__PUT;
        return txn_bytes(k, json_object_get(o, "value"), &out->value, why);
    }
    if (op != NULL && strcmp(op, "delete") == 0) {
        out->kind = TANDEM__TXN_OP__KIND__DELETE;
        return 0;
    }
    if (op != NULL && strcmp(op, "get") == 0) {
        out->kind = TANDEM__TXN_OP__KIND__GET;
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "operation op must be put, delete or get");
    return -1;
}

static int txn_ops_parse(struct kv_request *k, json_t *list, size_t base, size_t *n, char *why,
                         const char *name)
{
    *n = 0;
    if (list == NULL) {
        return 0;
    }
    if (!json_is_array(list) || json_array_size(list) > TANDEM_TXN_OPS_MAX) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s must be an array of at most %d operations", name,
                 TANDEM_TXN_OPS_MAX);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        k->t->op_ptrs[base + i] = &k->t->ops[base + i];
        if (txn_op_parse(k, json_array_get(list, i), &k->t->ops[base + i], why) != 0) {
            return -1;
        }
    }
    *n = json_array_size(list);
    return 0;
}

static int txn_parse(struct kv_request *k, char *why)
{
    json_t *compare = json_object_get(k->json, "compare");
    tandem__txn__init(&k->t->txn);
    if (!json_is_object(k->json)) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "body must be a JSON object with compare, success and failure");
        return -1;
    }
    if (compare != NULL &&
        (!json_is_array(compare) || json_array_size(compare) > TANDEM_TXN_COMPARES_MAX)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "compare must be an array of at most %d compares",
                 TANDEM_TXN_COMPARES_MAX);
        return -1;
    }
    for (size_t i = 0; compare != NULL && i < json_array_size(compare); i++) {
        k->t->compare_ptrs[i] = &k->t->compares[i];
        if (txn_compare_parse(k, json_array_get(compare, i), &k->t->compares[i], why) != 0) {
            return -1;
        }
    }
    k->t->txn.n_compare = compare == NULL ? 0 : json_array_size(compare);
    k->t->txn.compare = k->t->compare_ptrs;
    if (txn_ops_parse(k, json_object_get(k->json, "success"), 0, &k->t->txn.n_success, why,
                      "success") != 0 ||
        txn_ops_parse(k, json_object_get(k->json, "failure"), TANDEM_TXN_OPS_MAX,
                      &k->t->txn.n_failure, why, "failure") != 0) {
        return -1;
    }
    k->t->txn.success = k->t->op_ptrs;
    k->t->txn.failure = k->t->op_ptrs + TANDEM_TXN_OPS_MAX;
    return 0;
}

static void route_txn(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    json_error_t jerr;
    char why[TANDEM_ERRMSG_SIZE];
    (void)p;
    struct kv_request *k = kv_request_new(node, r, NULL);
    if (k == NULL) {
        return;
    }
    k->t = calloc(1, sizeof *k->t);
    if (k->t == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        kv_request_free(k);
        return;
    }
    k->json = json_loadb(r->body, r->body_len, 0, &jerr);
    if (k->json == NULL) {
        tandem_route_error(node, r, 400, "malformed JSON: %s", jerr.text);
        kv_request_free(k);
        return;
    }
    if (txn_parse(k, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        kv_request_free(k);
        return;
    }
    k->command.body_case = TANDEM__COMMAND__BODY_TXN;
    k->command.txn = &k->t->txn;
    kv_submit(node, k);
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
    if (node->fenced && route->flags != ROUTE_LOCAL) {
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
    if (!needs_leader(route, r) || raft_state(&node->raft.raft) == RAFT_LEADER) {
        route->fn(node, r, param);
        return;
    }
    if (tandem_http_request_header(r, TANDEM_FORWARDED_HEADER) != NULL) {
        /* Forwarded here but leadership moved on: nothing was done, so the forwarding node may
         * send it again to whoever leads now (it parks it until then). Never forward twice. */
        tandem_route_json(node, r, 503, "Retry-After: 1\r\n" TANDEM_RETRY_SAFE_HEADER ": 1\r\n",
                          "{\"error\":\"not the leader\"}");
        return;
    }
    if (tandem_raft_leader(&node->raft, &leader) != 0) {
        respond_no_leader(node, r);
        return;
    }
    tandem_forwarder_send(&node->forwarder, r, &leader);
}

void tandem_routes_handle(struct tandem_http_server *s, struct tandem_http_request *r)
{
    struct tandem_node *node = s->data;
    char param[PARAM_BYTES_MAX];
    bool path_known = false;
    routes_flatten();
    r->data = (void *)(uintptr_t)routes_count;
    for (unsigned i = 0; i < routes_count; i++) {
        const struct tandem_route *route = all_routes[i];
        size_t len = strlen(route->pattern);
        bool match = (route->flags & ROUTE_PREFIX) != 0
                         ? strncmp(r->path, route->pattern, len) == 0 && r->path[len] != '\0'
                         : strcmp(r->path, route->pattern) == 0;
        if (!match) {
            continue;
        }
        path_known = true;
        if (route->method != r->method && !(route->method == HTTP_GET && r->method == HTTP_HEAD)) {
            continue;
        }
        r->data = (void *)(uintptr_t)i;
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
