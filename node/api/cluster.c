/* The cluster resource: health, readiness, metrics, status, digest, members and leadership
 * transfer. Membership changes themselves run in consensus/membership.c; these handlers parse,
 * call and answer. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/aio_destroy.h"
#include "consensus/membership.h"
#include "consensus/raft_heap.h"
#include "consensus/transport.h"
#include "node/readiness.h"
#include "node/api/api.h"
#include "node/audit.h"
#include "node/bcp/site_metrics.h"
#include "node/log.h"
#include "node/node.h"
#include "node/tls_identity.h"
#include "replication/bcp/sites.h"
#include "storage/background.h"
#include "storage/backup.h"
#include "storage/clock.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define CLUSTER_ROUTES(X)                                                                          \
    X(healthz, HTTP_GET, "/healthz", TANDEM_ROUTE_LOCAL, TANDEM_PERM_PUBLIC, route_healthz)        \
    X(readyz, HTTP_GET, "/readyz", TANDEM_ROUTE_LOCAL, TANDEM_PERM_PUBLIC, route_readyz)           \
    X(metrics, HTTP_GET, "/metrics", TANDEM_ROUTE_LOCAL, TANDEM_PERM_READ, route_metrics)          \
    X(status, HTTP_GET, "/v1/status", TANDEM_ROUTE_LOCAL, TANDEM_PERM_READ, route_status)          \
    X(digest, HTTP_GET, "/v1/digest", TANDEM_ROUTE_LOCAL, TANDEM_PERM_READ, route_digest)          \
    X(members_list, HTTP_GET, "/v1/members", TANDEM_ROUTE_LOCAL, TANDEM_PERM_READ,                 \
      route_members_list)                                                                          \
    X(members_add, HTTP_POST, "/v1/members", TANDEM_ROUTE_WRITE, TANDEM_PERM_MEMBERS,              \
      route_members_add)                                                                           \
    X(members_remove, HTTP_DELETE, "/v1/members/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX,       \
      TANDEM_PERM_MEMBERS, route_members_remove)                                                   \
    X(leader_transfer, HTTP_POST, "/v1/leader/transfer", TANDEM_ROUTE_WRITE, TANDEM_PERM_MEMBERS,  \
      route_leader_transfer)                                                                       \
    X(node_log_budget, HTTP_POST, "/v1/node/log-budget", TANDEM_ROUTE_LOCAL, TANDEM_PERM_NODE,     \
      route_node_log_budget)

TANDEM_ROUTE_TABLE(tandem_cluster_route_table, CLUSTER_ROUTES);

static void route_healthz(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_route_json(node, r, 200, NULL, "{\"ok\":true}");
}

static void route_readyz(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    struct tandem_readiness_facts facts;
    (void)p;
    tandem_readiness_facts_read(&node->raft, &node->bcp, &facts);
    const char *reason = tandem_readiness_reason(&facts);
    if (reason == NULL) {
        tandem_route_json(node, r, 200, NULL, "{\"ready\":true}");
    } else if (!facts.fenced && facts.quarantined && node->http.tls_required &&
               r->identity.kind == TANDEM_TLS_PEER_NONE) {
        /* Without a credential, health only: why it is quarantined names members and epochs. */
        tandem_route_json(node, r, 503, NULL, "{\"ready\":false,\"reason\":\"quarantined\"}");
    } else if (!facts.fenced && facts.quarantined) {
        tandem_route_jansson(node, r, 503,
                             json_pack("{s:b,s:s,s:s}", "ready", false, "reason", "quarantined",
                                       "quarantine", node->bcp.quarantine_why));
    } else {
        tandem_route_jansson(node, r, 503,
                             json_pack("{s:b,s:s}", "ready", false, "reason", reason));
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

/* Appends the members a forced failover left behind (home records marked lost, not in the
 * configuration): "role": "lost" until they are rejoined or removed. */
static void lost_members_append(struct tandem_node *node, json_t *members)
{
    struct tandem_site_table *t = tandem_bcp_table_load(&node->bcp);
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; t != NULL && i < t->n_homes; i++) {
        struct tandem_member m;
        if (!t->homes[i].lost ||
            tandem_raft_member_by_name(&node->raft, t->homes[i].name, &m, NULL) == 0 ||
            tandem_member_address_parse(t->homes[i].address, &m, errmsg) != 0) {
            continue;
        }
        json_array_append_new(members, json_pack("{s:s,s:s,s:s,s:s,s:s,s:n,s:b}", "name", m.name,
                                                 "site", m.site, "role", "lost", "raft", m.raft,
                                                 "api", m.api, "match_index", "lost", true));
    }
    free(t);
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
        node->bcp.fenced, "epoch", (json_int_t)node->bcp.epoch, "cluster_id",
        node->config->cluster_id);
    json_object_set_new(self, "boot_id", json_string(node->boot_id));
    json_object_set_new(self, "quarantined", json_boolean(node->bcp.quarantined));
    json_object_set_new(self, "quarantine", json_string(node->bcp.quarantine_why));
    json_t *leader_json = tandem_raft_leader(&node->raft, &leader) == 0
                              ? json_pack("{s:s,s:s}", "name", leader.name, "api", leader.api)
                              : json_null();
    json_t *members = members_json(node);
    lost_members_append(node, members);
    json_t *warnings = json_array(); /* what an operator should act on soon */
    json_t *tls = tandem_tls_identity_status(node->tls, tandem_wall_ms(), warnings);
    json_t *audit = tandem_audit_head_json(node);       /* the audit chain's head (node/audit.h) */
    json_t *backups = tandem_backups_status_json(node); /* each site's newest (verified) backup */
    tandem_route_jansson(node, r, 200,
                         json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "node", self, "leader",
                                   leader_json, "members", members, "tls", tls, "warnings",
                                   warnings, "audit", audit != NULL ? audit : json_null(),
                                   "backups", backups != NULL ? backups : json_null()));
}

/* POST /v1/node/log-budget: a member says whether its raft log holds its whole byte budget
 * (node/log_reports.h). Each node reports for itself; the leader keeps the report. */
static void route_node_log_budget(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *p)
{
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("node", STRING), TANDEM_REQUIRED("held_bytes", INT),
        TANDEM_REQUIRED("budget_bytes", INT), TANDEM_REQUIRED("full", BOOL), TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    json_error_t jerr;
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!json_is_object(body) || tandem_route_fields_check(body, fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s",
                           json_is_object(body) ? why : "the body must be a JSON object");
        json_decref(body);
        return;
    }
    const char *name = json_string_value(json_object_get(body, "node"));
    json_int_t held = json_integer_value(json_object_get(body, "held_bytes"));
    json_int_t budget = json_integer_value(json_object_get(body, "budget_bytes"));
    bool full = json_is_true(json_object_get(body, "full"));
    struct tandem_member member;
    int status = 0;
    if (held < 0 || budget <= 0) {
        status = 400;
        snprintf(why, sizeof why,
                 "\"held_bytes\" must be at least 0 and \"budget_bytes\" more than 0");
    } else if (!r->principal.insecure && strcmp(r->principal.name, name) != 0) {
        status = 403;
        snprintf(why, sizeof why, "%s may report only its own raft log, not %s's",
                 r->principal.name, name);
    } else if (tandem_raft_member_by_name(&node->raft, name, &member, NULL) != 0) {
        status = 404;
        snprintf(why, sizeof why, "%s is not a member of the configuration", name);
    }
    if (status != 0) {
        tandem_route_error(node, r, status, "%s", why);
        json_decref(body);
        return;
    }
    uint64_t now_ms = uv_now(node->loop);
    bool was = tandem_log_reports_full(&node->log_reports, now_ms) != NULL;
    tandem_log_reports_note(&node->log_reports, name, (uint64_t)held, (uint64_t)budget, full,
                            now_ms);
    bool now = tandem_log_reports_full(&node->log_reports, now_ms) != NULL;
    if (was != now) {
        tandem_log(TANDEM_LOG_INFO,
                   now ? "member %s's raft log holds %lld MiB of its %lld MiB budget: client "
                         "writes wait for its snapshot"
                       : "member %s's raft log is within its budget again (%lld of %lld MiB)",
                   name, (long long)(held >> 20), (long long)(budget >> 20));
    }
    json_decref(body);
    tandem_route_json(node, r, 200, NULL, "{\"ok\":true}");
}

static void route_members_list(struct tandem_node *node, struct tandem_http_request *r,
                               const char *p)
{
    (void)p;
    tandem_route_jansson(node, r, 200, json_pack("{s:o}", "members", members_json(node)));
}

/* GET /v1/digest: hashes every record of the state, on the thread pool. */
struct digest_read {
    uint64_t applied;
    uint8_t digest[TANDEM_DIGEST_LEN], data[TANDEM_DIGEST_LEN];
    struct tandem_backup_counts counts;
};

static int digest_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct digest_read *q = arg;
    q->applied = store->applied_index; /* the transaction's (node/pool_read.h) */
    int rv = tandem_store_state_digest(store, txn, q->digest);
    if (rv == 0) {
        rv = tandem_store_digest_without(store, txn, TANDEM_DB_AUDIT, q->data);
    }
    return rv != 0 ? rv : tandem_backup_counts_read(store, txn, &q->counts, store->errmsg);
}

static void digest_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg,
                          int rv, const char *errmsg)
{
    struct digest_read *q = arg;
    char hex[2 * TANDEM_DIGEST_LEN + 1], data_hex[2 * TANDEM_DIGEST_LEN + 1];
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    tandem_digest_hex(q->digest, hex);
    tandem_digest_hex(q->data, data_hex);
    /* data_digest: everything but the audit trail, which records refused requests too; counts:
     * what a backup's manifest records (storage/backup.h), for a restore to be compared. */
    tandem_route_jansson(node, r, 200,
                         json_pack("{s:I,s:s,s:s,s:{s:I,s:I,s:I,s:I}}", "applied_index",
                                   (json_int_t)q->applied, "state_digest", hex, "data_digest",
                                   data_hex, "counts", "keys", (json_int_t)q->counts.keys, "jobs",
                                   (json_int_t)q->counts.jobs, "boxes", (json_int_t)q->counts.boxes,
                                   "trace_events", (json_int_t)q->counts.trace_events));
}

/* GET /v1/digest?at=N: the digest of the state as it stood right after this node applied the
 * first entry at or past N, so that every member reports the same applied index while writes go
 * on (a BCP drill's parity check under live traffic). The request waits (wait_ms) for that
 * entry; the read transaction is pinned on the loop the moment it is applied. */
struct digest_wait {
    struct pool_digest {
        struct tandem_pool_read read; /* first */
        struct digest_read q;
    } pooled;
    struct tandem_list link;
    struct tandem_node *node;
    struct tandem_http_request *r; /* borrowed until answered */
    uint64_t at, deadline_ms;      /* deadline on uv_now */
    uint64_t restores;             /* the node's snapshot restores when it began waiting */
};

static void digest_wait_done(void *data, int rv, const char *errmsg)
{
    struct digest_wait *w = data;
    if (rv == TANDEM_BUSY || rv == TANDEM_SHUTDOWN) {
        tandem_route_retry_later(w->node, w->r, "%s: retry later", errmsg);
    } else {
        digest_answer(w->node, w->r, &w->pooled.q, rv, errmsg);
    }
    free(w);
}

static int digest_wait_work(struct tandem_store *store, MDB_txn *txn, void *data)
{
    struct digest_wait *w = data;
    return digest_work(store, txn, &w->pooled.q);
}

/* Pins the state as it stands now and hands the digest to the pool; answers w either way. */
static void digest_wait_serve(struct digest_wait *w)
{
    int rv = tandem_pool_read_submit_pinned(&w->node->pool_reads, &w->pooled.read, digest_wait_work,
                                            digest_wait_done, w);
    if (rv != 0) {
        digest_wait_done(w, rv, w->pooled.read.store.errmsg);
    }
}

static void digest_wait_unlink(struct tandem_node *node, struct digest_wait *w)
{
    tandem_list_remove(&w->link);
    tandem_assert(node->digest_waits_n > 0);
    node->digest_waits_n--;
}

void tandem_digest_waits_applied(struct tandem_node *node)
{
    struct tandem_list *link = node->digest_waits.next;
    while (link != &node->digest_waits) {
        struct digest_wait *w = tandem_list_entry(link, struct digest_wait, link);
        link = link->next;
        if (node->store.applied_index < w->at) {
            continue;
        }
        digest_wait_unlink(node, w);
        if (node->fsm.snapshots_restored != w->restores) {
            /* A snapshot moved the state meanwhile: this is not the first entry past at. */
            tandem_route_error(node, w->r, 409,
                               "a snapshot install moved applied index past %" PRIu64, w->at);
            free(w);
        } else {
            digest_wait_serve(w);
        }
    }
}

void tandem_digest_waits_tick(struct tandem_node *node)
{
    uint64_t now = uv_now(node->loop);
    struct tandem_list *link = node->digest_waits.next;
    while (link != &node->digest_waits) {
        struct digest_wait *w = tandem_list_entry(link, struct digest_wait, link);
        link = link->next;
        if (!node->stopping && now < w->deadline_ms) {
            continue;
        }
        digest_wait_unlink(node, w);
        if (node->stopping) {
            tandem_route_retry_later(node, w->r, "the node is shutting down: retry later");
        } else {
            tandem_route_retry_later(node, w->r,
                                     "applied index %" PRIu64 " did not reach %" PRIu64
                                     " in time: retry later",
                                     node->store.applied_index, w->at);
        }
        free(w);
    }
}

static void route_digest(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    uint64_t at = 0, wait_ms = TANDEM_DIGEST_WAIT_MS_DEFAULT;
    int has_at = tandem_route_query_number(r, "at", 1, UINT64_MAX, &at);
    if (has_at < 0) {
        tandem_route_error(node, r, 400, "at must be a raft index (1 or more)");
        return;
    }
    if (tandem_route_query_number(r, "wait_ms", 0, TANDEM_DIGEST_WAIT_MS_MAX, &wait_ms) < 0) {
        tandem_route_error(node, r, 400, "wait_ms must be 0 to %u", TANDEM_DIGEST_WAIT_MS_MAX);
        return;
    }
    if (has_at == 0) {
        struct digest_read *q = calloc(1, sizeof *q);
        if (q == NULL) {
            tandem_route_error(node, r, 503, "out of memory");
            return;
        }
        tandem_route_local_pooled(node, r, digest_work, digest_answer, q, free);
        return;
    }
    /* Past it: the state at that entry is gone (the caller asks again further on). Equal: the
     * state is that entry's now. */
    if (node->store.applied_index > at) {
        tandem_route_error(node, r, 409, "applied index %" PRIu64 " is past %" PRIu64,
                           node->store.applied_index, at);
        return;
    }
    if (node->store.applied_index < at && node->digest_waits_n >= TANDEM_DIGEST_WAITS_MAX) {
        tandem_route_retry_later(node, r,
                                 "too many digests wait for an index on this node: retry later");
        return;
    }
    struct digest_wait *w = calloc(1, sizeof *w);
    if (w == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    w->node = node;
    w->r = r;
    w->at = at;
    w->deadline_ms = uv_now(node->loop) + wait_ms;
    w->restores = node->fsm.snapshots_restored;
    if (node->store.applied_index == at) {
        digest_wait_serve(w);
        return;
    }
    tandem_list_push_back(&node->digest_waits, &w->link);
    node->digest_waits_n++;
}

/* The start-up quarantine flag and, per member, whether its raft port and its API answered
 * within site_down_after_ms. */
static void reach_metrics(struct tandem_node *node, FILE *out)
{
    const struct raft_configuration *conf = &node->raft.raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE], label[TANDEM_METRICS_LABEL_MAX];
    tandem_metrics_family(out, "tandem_quarantined", "gauge",
                          "1 while this node is held in its start-up quarantine (no vote, no "
                          "lead) until it is released.");
    fprintf(out, "tandem_quarantined %d\n", node->bcp.quarantined);
    tandem_metrics_family(out, "tandem_peer_reachable", "gauge",
                          "1 when the member's raft port (via=raft) or API (via=api) answered "
                          "within site_down_after_ms.");
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            strcmp(m.name, node->self.name) == 0) {
            continue;
        }
        tandem_metrics_label(m.name, label);
        fprintf(out, "tandem_peer_reachable{peer=\"%s\",via=\"raft\"} %d\n", label,
                tandem_bcp_raft_reachable(&node->bcp, m.name, NULL));
        fprintf(out, "tandem_peer_reachable{peer=\"%s\",via=\"api\"} %d\n", label,
                tandem_bcp_api_reachable(&node->bcp, m.name, NULL));
    }
}

/* What consensus/raft_shield.h did against libraft 0.22.1's bugs (each count a bug avoided). */
static void shield_metrics(struct tandem_node *node, FILE *out)
{
    const struct tandem_raft_shield_stats *st = &node->raft.shield.stats;
    tandem_metrics_family(out, "tandem_raft_shield_terms_fixed_total", "counter",
                          "InstallSnapshots sent with the loaded snapshot's term (libraft 0.22.1 "
                          "bug avoided).");
    fprintf(out, "tandem_raft_shield_terms_fixed_total %llu\n",
            (unsigned long long)st->terms_fixed);
    tandem_metrics_family(out, "tandem_raft_shield_installs_dropped_total", "counter",
                          "InstallSnapshots dropped during an install or this node's own "
                          "snapshot write (libraft 0.22.1 bugs avoided).");
    fprintf(out,
            "tandem_raft_shield_installs_dropped_total{during=\"install\"} %llu\n"
            "tandem_raft_shield_installs_dropped_total{during=\"snapshot\"} %llu\n",
            (unsigned long long)st->dropped_installing,
            (unsigned long long)st->dropped_snapshotting);
    tandem_metrics_family(out, "tandem_raft_shield_appends_cut_total", "counter",
                          "AppendEntries cut before a second configuration entry.");
    fprintf(out, "tandem_raft_shield_appends_cut_total %llu\n",
            (unsigned long long)st->appends_cut);
    tandem_metrics_family(out, "tandem_raft_shield_lost_logs_total", "counter",
                          "Followers seen, while this node led, to have lost entries they had "
                          "acknowledged (an emptied data directory); leadership then moves.");
    fprintf(out, "tandem_raft_shield_lost_logs_total %llu\n", (unsigned long long)st->lost_logs);
    tandem_metrics_family(out, "tandem_raft_shield_ticks_deferred_total", "counter",
                          "Raft ticks that came a whole interval late (this node's loop was held) "
                          "and ran after the loop read the messages that came meanwhile.");
    fprintf(out, "tandem_raft_shield_ticks_deferred_total %llu\n",
            (unsigned long long)st->ticks_deferred);
}

/* The per-site series, from this node's committed site table (skipped if it cannot be read;
 * a scrape does not commit the grouped writes, so it may trail them by a few milliseconds). */
static void site_metrics(struct tandem_node *node, FILE *out)
{
    MDB_txn *txn;
    if (tandem_store_read_txn(&node->store, &txn) != 0) {
        return;
    }
    json_t *status = tandem_bcp_status_json(&node->bcp, txn);
    mdb_txn_abort(txn);
    if (status != NULL) {
        tandem_bcp_site_metrics_write(out, status);
        json_decref(status);
    }
}

/* Connections refused before they could do anything, per listener and reason: the raft
 * transport's (identity mismatches count as tls, pending-handshake drops as cap), the API's and
 * the metrics listener's (node/http/server.h); then requests over the rate limit. */
static void connections_refused_metrics(struct tandem_node *node,
                                        const struct tandem_transport_stats *ts,
                                        const struct tandem_http_server_stats *api, FILE *out)
{
    struct tandem_http_server_stats ms;
    tandem_metrics_family(out, "tandem_connections_refused_total", "counter",
                          "Connections closed on arrival, by listener and reason (allow: source "
                          "outside the allow-list; per_source: connections_per_source_max; cap: "
                          "connections_max; tls: failed handshake).");
    tandem_connections_refused_write(out, "raft", "allow", ts->refused_allow);
    tandem_connections_refused_write(out, "raft", "tls", ts->refused_tls + ts->refused_identity);
    tandem_connections_refused_write(out, "raft", "cap", ts->dropped_busy);
    tandem_connections_refused_write(out, "api", "allow", api->refused_allow);
    tandem_connections_refused_write(out, "api", "per_source", api->refused_per_source);
    tandem_connections_refused_write(out, "api", "cap", api->connections_rejected);
    tandem_connections_refused_write(out, "api", "tls", api->tls_refused);
    if (node->metrics_http_open) {
        tandem_http_server_stats(&node->metrics_http, &ms);
        tandem_connections_refused_write(out, "metrics", "allow", ms.refused_allow);
        tandem_connections_refused_write(out, "metrics", "per_source", ms.refused_per_source);
        tandem_connections_refused_write(out, "metrics", "cap", ms.connections_rejected);
    }
    tandem_metrics_family(out, "tandem_http_rate_limited_total", "counter",
                          "Requests answered 429 by the rate limit per credential.");
    fprintf(out, "tandem_http_rate_limited_total %llu\n",
            (unsigned long long)node->rate_limit.limited);
}

/* raft's indexes and leadership, and what this node's state machine and proposer did. */
static void raft_metrics(struct tandem_node *node, FILE *out)
{
    struct raft *raft = &node->raft.raft;
    raft_id leader = 0;
    const char *leader_address = NULL;
    raft_leader(raft, &leader, &leader_address);
    tandem_metrics_leader_seen(&node->metrics, leader);
    uint64_t log_held, log_budget;
    (void)tandem_fsm_log_full(&node->fsm, &log_held, &log_budget);
    struct tandem_aio_destroy_stats aio;
    tandem_aio_destroy_stats_read(&aio);
    const struct tandem_metrics_scalar series[] = {
        {"tandem_raft_term", "gauge", "Current raft term.", raft_current_term(raft)},
        {"tandem_raft_commit_index", "gauge", "Highest log index known committed.",
         raft_commit_index(raft)},
        {"tandem_raft_applied_index", "gauge", "Highest log index applied to the state store.",
         node->store.applied_index},
        {"tandem_raft_last_index", "gauge", "Index of the last entry in this node's log.",
         raft_last_index(raft)},
        {"tandem_raft_leader", "gauge", "1 when this node is the leader.",
         raft_state(raft) == RAFT_LEADER},
        {"tandem_raft_has_leader", "gauge",
         "1 when this node knows a leader (itself included); 0 during an election or without a "
         "quorum.",
         leader != 0},
        {"tandem_raft_leader_changes_total", "counter",
         "Times the leader this node knows became another node (the first one it learns counts).",
         node->metrics.leader_changes},
        {"tandem_fenced", "gauge",
         "1 when this node is fenced: it saw a newer BCP epoch and refuses writes until it "
         "catches up.",
         node->bcp.fenced},
        {"tandem_entries_applied_total", "counter", "raft entries applied.",
         node->fsm.entries_applied},
        {"tandem_commands_applied_total", "counter", "Commands applied (an entry packs several).",
         node->fsm.commands_applied},
        {"tandem_entries_proposed_total", "counter", "raft entries this node proposed.",
         node->proposer.entries_proposed},
        {"tandem_barriers_total", "counter", "raft barriers this node proposed.",
         node->proposer.barriers_proposed},
        {"tandem_lmdb_commits_total", "counter", "Grouped LMDB commits (to the page cache).",
         node->store.commits},
        {"tandem_lmdb_syncs_total", "counter", "fdatasyncs of the state store, on the thread pool.",
         node->store_sync.syncs_total},
        {"tandem_lmdb_map_used_bytes", "gauge",
         "Bytes of the state store's map in use (its data file's last page): at map_size_mib the "
         "node stops.",
         node->store.env != NULL ? tandem_store_used_bytes(node->store.env) : 0},
        {"tandem_lmdb_map_size_bytes", "gauge", "The state store's map size (map_size_mib).",
         (uint64_t)node->store.map_size},
        {"tandem_state_rebuilt", "gauge",
         "1 when this process discarded a state store a power loss may have torn.",
         node->store_rebuilt ? 1u : 0u},
        {"tandem_snapshots_taken_total", "counter", "raft snapshots taken.",
         node->fsm.snapshots_taken},
        {"tandem_snapshot_taking", "gauge",
         "1 while this node takes a raft snapshot: from pinning the state until raft has it on "
         "disk (or gave it up).",
         tandem_fsm_snapshot_taking(&node->fsm) ? 1u : 0u},
        {"tandem_snapshots_deferred_total", "counter", "raft snapshots put off.",
         node->fsm.snapshots_deferred},
        {"tandem_snapshots_failed_total", "counter",
         "raft snapshots whose serialisation failed (the state past what one snapshot holds, "
         "or out of memory): the log is not trimmed meanwhile.",
         node->fsm.snapshots_failed},
        {"tandem_snapshots_restored_total", "counter", "raft snapshots installed.",
         node->fsm.snapshots_restored},
        {"tandem_snapshot_files_written_total", "counter",
         "raft snapshots taken as a file, raft holding a reference (past snapshot_inline_mib).",
         node->fsm.snapshot_files_written},
        {"tandem_snapshot_files_fetched_total", "counter",
         "Snapshot files fetched from another member to install a reference.",
         atomic_load(&node->fsm.snapshot_files_fetched)},
        {"tandem_snapshot_fetch_bytes_total", "counter", "Bytes of snapshot files fetched.",
         atomic_load(&node->fsm.snapshot_fetch_bytes)},
        {"tandem_snapshot_fetch_failures_total", "counter",
         "Tries to fetch a snapshot file from a member that failed (another member, or a later "
         "round, is tried).",
         atomic_load(&node->fsm.snapshot_fetch_failures)},
        {"tandem_raft_log_held_bytes", "gauge",
         "Bytes of entries the raft log holds by the byte budget's count: the trailing kept "
         "behind the last snapshot written and everything after it.",
         log_held},
        {"tandem_writes_refused_log_full_total", "counter",
         "Client writes answered 503 because the raft log held its whole byte budget "
         "(snapshot_log_mib + trailing_log_mib) while a snapshot was being taken: this "
         "node's, or on the leader another member's (its report).",
         node->writes_refused_log_full},
        {"tandem_writes_refused_member_log_full_total", "counter",
         "Of those, the writes refused for another member's full log.",
         node->writes_refused_member_log_full},
        {"tandem_raft_members_log_full", "gauge",
         "Members whose fresh report says their raft log holds its whole byte budget: while "
         "one does, the leader refuses client writes.",
         tandem_log_reports_count(&node->log_reports, uv_now(node->loop))},
        {"tandem_raft_log_full_reports_total", "counter",
         "Reports of a full raft log this node received (from followers, to the leader), and "
         "that this node sent.",
         node->log_reports.received + node->leader_watch.reports_sent},
        {"tandem_raft_aio_destroys_deferred_total", "counter",
         "Kernel AIO contexts of closed raft log segments destroyed by threads of their own "
         "rather than on the loop (io_destroy waits for RCU grace periods).",
         aio.deferred},
        {"tandem_raft_aio_destroys_synchronous_total", "counter",
         "Such contexts destroyed where raft_uv did it, on the loop: the destroyer was not "
         "running or its queue was full.",
         aio.synchronous},
        {"tandem_snapshots_prepared_total", "counter",
         "raft snapshots installed by swapping in a state built on the thread pool.",
         node->fsm.installs_prepared},
        {"tandem_forwarded_total", "counter", "Requests this follower forwarded to the leader.",
         node->forwarder.forwarded},
        {"tandem_leader_loss_fast_total", "counter",
         "Elections this follower shortened: its quiet leader's raft port refused a probe.",
         node->leader_loss.shortened_total},
        {"tandem_pool_reads_running", "gauge",
         "Reads of the whole state running on the thread pool.", node->pool_reads.running},
        {"tandem_pool_reads_waiting", "gauge", "Reads of the whole state waiting for a pool slot.",
         node->pool_reads.waiting},
        {"tandem_pool_reads_total", "counter", "Reads of the whole state done on the pool.",
         node->pool_reads.done_total},
        {"tandem_pool_reads_refused_total", "counter",
         "Reads of the whole state refused with 503: too many waited.",
         node->pool_reads.refused_total},
        {"tandem_raft_double_frees_absorbed_total", "counter",
         "libraft double frees absorbed by the watching heap (consensus/raft_heap.h).",
         tandem_raft_heap_double_frees()},
    };
    tandem_metrics_scalars_write(out, series, sizeof series / sizeof series[0]);
}

/* The raft transport's refusals and connections, and the API's open connections. */
static void transport_metrics(const struct tandem_transport_stats *ts,
                              const struct tandem_http_server_stats *hs, FILE *out)
{
    tandem_metrics_family(out, "tandem_transport_refused_total", "counter",
                          "raft messages or connections the transport refused, by reason.");
    fprintf(out,
            "tandem_transport_refused_total{reason=\"cluster\"} %llu\n"
            "tandem_transport_refused_total{reason=\"epoch\"} %llu\n"
            "tandem_transport_refused_total{reason=\"malformed\"} %llu\n"
            "tandem_transport_refused_total{reason=\"frame\"} %llu\n"
            "tandem_transport_refused_total{reason=\"tls\"} %llu\n"
            "tandem_transport_refused_total{reason=\"identity\"} %llu\n",
            (unsigned long long)ts->refused_cluster, (unsigned long long)ts->refused_epoch,
            (unsigned long long)ts->refused_malformed, (unsigned long long)ts->refused_frame,
            (unsigned long long)ts->refused_tls, (unsigned long long)ts->refused_identity);
    const struct tandem_metrics_scalar series[] = {
        {"tandem_raft_connections_open", "gauge", "raft connections open.", ts->relays_open},
        {"tandem_raft_connections_replaced_total", "counter",
         "raft connections replaced by a newer one to the same peer.", ts->relays_replaced},
        {"tandem_http_connections_open", "gauge", "API connections open.", hs->connections_open},
    };
    tandem_metrics_scalars_write(out, series, sizeof series / sizeof series[0]);
}

static void route_metrics(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
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
    raft_metrics(node, out);
    transport_metrics(&ts, &hs, out);
    connections_refused_metrics(node, &ts, &hs, out);
    reach_metrics(node, out);
    shield_metrics(node, out);
    tandem_tls_identity_metrics(node->tls, tandem_wall_ms(), out);
    tandem_histogram_write(out, "tandem_apply_duration_seconds",
                           "Time to apply one raft entry to LMDB.", &node->metrics.apply);
    tandem_histogram_write(out, "tandem_raft_log_append_duration_seconds",
                           "Time raft takes to write a batch of log entries and fsync it.",
                           &node->metrics.log_append);
    tandem_histogram_write(out, "tandem_lmdb_commit_duration_seconds",
                           "Time of one grouped LMDB commit of the state (no sync: see "
                           "tandem_lmdb_sync_duration_seconds).",
                           &node->metrics.lmdb_commit);
    tandem_histogram_write(out, "tandem_lmdb_sync_duration_seconds",
                           "Time of one fdatasync of the state store, on the thread pool.",
                           &node->metrics.lmdb_sync);
    tandem_loop_lag_write(out, &node->metrics.loop_lag);
    const struct tandem_metrics_scalar pool[] = {
        {"tandem_pool_work_lowered_total", "counter",
         "Pieces of bulk work the thread pool ran at the background priority (pool_nice): they "
         "yield a busy CPU to the event loop.",
         tandem_background_works_lowered()},
        {"tandem_pool_threads_stuck_low", "gauge",
         "Pool threads that could not take the loop's priority back after bulk work (neither "
         "CAP_SYS_NICE nor RLIMIT_NICE allows it): they stay low, and the loop may wait behind "
         "one holding a lock of the pool.",
         tandem_background_threads_stuck()},
        {"tandem_pool_nice_failures_total", "counter",
         "Pieces of bulk work whose background priority could not be set (they ran at the "
         "loop's).",
         tandem_background_failures()},
    };
    tandem_metrics_scalars_write(out, pool, sizeof pool / sizeof pool[0]);
    tandem_histogram_write(out, "tandem_http_request_duration_seconds",
                           "Time from a complete request to its answer.", &node->metrics.request);
    const char *const *names;
    unsigned names_count = tandem_route_names(&names);
    tandem_route_counts_write(out, &node->metrics, names, names_count);
    site_metrics(node, out);
    tandem_backups_metrics_write(node, out);
    tandem_audit_check_metrics_write(&node->audit_check, tandem_wall_ms(), out);
    fclose(out);
    tandem_node_respond(node, r, 200, "text/plain; version=0.0.4", NULL, text, len);
    free(text);
}

/* ---- membership: consensus/membership.c does the work ---- */

/* A membership change in flight: who to answer, and the answer's body on success. */
struct membership_call {
    struct tandem_node *node;      /* borrowed */
    struct tandem_http_request *r; /* borrowed: answered exactly once */
    json_t *(*success_json)(const struct tandem_member *m);
};

static int membership_http_status(int code)
{
    switch (code) {
        case TANDEM_NOTFOUND:
            return 404;
        case TANDEM_NOMEM:
            return 500;
        case TANDEM_NOTLEADER:
            return 503;
        case TANDEM_TIMEOUT:
            return 504;
        default:
            return 409; /* exists, not a voter, raft refused */
    }
}

static void membership_answer(struct membership_call *call, int status, const char *errmsg,
                              const struct tandem_member *m)
{
    if (status != TANDEM_OK) {
        tandem_route_error(call->node, call->r, membership_http_status(status), "%s", errmsg);
    } else {
        tandem_route_jansson(call->node, call->r, 200, call->success_json(m));
    }
    free(call);
}

static void membership_cb(void *data, int status, const char *errmsg, const struct tandem_member *m)
{
    membership_answer(data, status, errmsg, m);
}

static struct membership_call *
membership_call_new(struct tandem_node *node, struct tandem_http_request *r,
                    json_t *(*success_json)(const struct tandem_member *))
{
    struct membership_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return NULL;
    }
    *call = (struct membership_call){.node = node, .r = r, .success_json = success_json};
    return call;
}

/* Answers at once when the change did not start (its callback never runs then). */
static void membership_started(struct membership_call *call, int rv, const char *errmsg)
{
    if (rv != TANDEM_OK) {
        membership_answer(call, rv, errmsg, NULL);
    }
}

static json_t *member_added_json(const struct tandem_member *m)
{
    json_t *member = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", m->name, "site", m->site, "role",
                               tandem_role_name(m->role), "raft", m->raft, "api", m->api);
    return json_pack("{s:o}", "member", member);
}

static json_t *member_removed_json(const struct tandem_member *m)
{
    return json_pack("{s:s}", "removed", m->name);
}

static json_t *leader_moved_json(const struct tandem_member *m)
{
    return json_pack("{s:s}", "leader", m->name);
}

static const struct tandem_route_field member_fields[] = {
    TANDEM_REQUIRED("name", STRING), TANDEM_REQUIRED("site", STRING),
    TANDEM_REQUIRED("raft", STRING), TANDEM_REQUIRED("api", STRING),
    TANDEM_OPTIONAL("role", STRING), TANDEM_FIELDS_END};

static const struct tandem_route_field transfer_fields[] = {TANDEM_REQUIRED("name", STRING),
                                                            TANDEM_FIELDS_END};

static int member_from_json(json_t *body, struct tandem_member *m, char *errmsg)
{
    const char *name = NULL, *site = NULL, *raft_addr = NULL, *api = NULL, *role = "voter";
    char spec[512];
    if (!json_is_object(body)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "the body must be a JSON object");
        return -1;
    }
    if (tandem_route_fields_check(body, member_fields, errmsg) != 0) {
        return -1;
    }
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
    struct tandem_member m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    json_error_t jerr;
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    if (body == NULL) {
        tandem_route_error(node, r, 400, "malformed JSON: %s", jerr.text);
        return;
    }
    int rv = member_from_json(body, &m, errmsg);
    json_decref(body);
    if (rv != 0) {
        tandem_route_error(node, r, 400, "%s", errmsg);
        return;
    }
    struct membership_call *call = membership_call_new(node, r, member_added_json);
    if (call != NULL) {
        membership_started(
            call, tandem_membership_add(&node->raft, node->loop, &m, errmsg, membership_cb, call),
            errmsg);
    }
}

/* Removing a member a forced failover left behind (no longer in the configuration) forgets its
 * home record, so it is no longer shown as lost. */
struct home_forget {
    Tandem__Command command;
    Tandem__MemberHomeSet set;
    Tandem__MemberHome home;
    Tandem__MemberHome *homes[1];
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
};

/* Returns true when name is a lost member: then r is answered (the home record forgotten). */
static bool lost_member_remove(struct tandem_node *node, struct tandem_http_request *r,
                               const char *name)
{
    struct tandem_member m;
    struct tandem_site_table *t = NULL;
    const struct tandem_member_home *home = NULL;
    if (tandem_raft_member_by_name(&node->raft, name, &m, NULL) != 0) {
        t = tandem_bcp_table_load(&node->bcp);
        home = t == NULL ? NULL : tandem_site_table_home(t, name);
    }
    struct home_forget *f = home != NULL && home->lost ? calloc(1, sizeof *f) : NULL;
    if (f != NULL) {
        tandem__command__init(&f->command);
        tandem__member_home_set__init(&f->set);
        tandem__member_home__init(&f->home);
        snprintf(f->name, sizeof f->name, "%s", home->name);
        snprintf(f->site, sizeof f->site, "%s", home->site);
        snprintf(f->address, sizeof f->address, "%s", home->address);
        f->home = (Tandem__MemberHome){.base = f->home.base,
                                       .name = f->name,
                                       .site = f->site,
                                       .address = f->address,
                                       .role = home->role,
                                       .forget = true};
        f->homes[0] = &f->home;
        f->set.n_members = 1;
        f->set.members = f->homes;
        f->command.body_case = TANDEM__COMMAND__BODY_MEMBER_HOME_SET;
        f->command.member_home_set = &f->set;
        tandem_route_submit(node, r, &f->command, free, f);
    }
    bool lost = home != NULL && home->lost;
    if (lost && f == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
    }
    free(t);
    return lost;
}

static void route_members_remove(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *name)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (lost_member_remove(node, r, name)) {
        return;
    }
    struct membership_call *call = membership_call_new(node, r, member_removed_json);
    if (call != NULL) {
        membership_started(
            call, tandem_membership_remove(&node->raft, name, errmsg, membership_cb, call), errmsg);
    }
}

/* The site controller moves leadership off a witness site and off an invoked site at once
 * (consensus/site_controller.c, plan_leave): a transfer there would be confirmed, answered 200,
 * and undone within a tick. Refused instead, saying why (409). Returns 0 when the transfer may
 * go on (also when name is no member: tandem_membership_transfer answers that). */
static int transfer_target_check(struct tandem_node *node, const char *name, char *errmsg)
{
    struct tandem_member m;
    if (tandem_raft_member_by_name(&node->raft, name, &m, NULL) != 0) {
        return TANDEM_OK;
    }
    struct tandem_site_table *t = tandem_bcp_table_load(&node->bcp);
    const struct tandem_site *s = t == NULL ? NULL : tandem_site_table_find(t, m.site);
    bool witness = s != NULL ? s->witness : strcmp(m.site, TANDEM_SITE_WITNESS_NAME) == 0;
    bool invoked = s != NULL && s->state == TANDEM_SITE_INVOKED;
    free(t);
    if (witness) {
        return tandem_error_set(errmsg, TANDEM_STATE,
                                "%s is in witness site %s, which never keeps leadership: the "
                                "site controller would move it off at once",
                                name, m.site);
    }
    if (invoked) {
        return tandem_error_set(errmsg, TANDEM_STATE,
                                "%s is in invoked site %s: the site controller would move "
                                "leadership off it at once (revoke the site first)",
                                name, m.site);
    }
    return TANDEM_OK;
}

static void route_leader_transfer(struct tandem_node *node, struct tandem_http_request *r,
                                  const char *p)
{
    char name[TANDEM_NAME_LEN_MAX + 1], errmsg[TANDEM_ERRMSG_SIZE];
    const char *text = NULL;
    json_error_t jerr;
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    if (body != NULL && json_is_object(body) &&
        tandem_route_fields_check(body, transfer_fields, errmsg) != 0) {
        tandem_route_error(node, r, 400, "%s: the body must be {\"name\": \"<member>\"}", errmsg);
        json_decref(body);
        return;
    }
    if (body == NULL || json_unpack(body, "{s:s}", "name", &text) != 0) {
        tandem_route_error(node, r, 400, "body must be {\"name\": \"<member>\"}");
        json_decref(body);
        return;
    }
    snprintf(name, sizeof name, "%s", text);
    json_decref(body);
    if (transfer_target_check(node, name, errmsg) != TANDEM_OK) {
        tandem_route_error(node, r, 409, "%s", errmsg);
        return;
    }
    struct membership_call *call = membership_call_new(node, r, leader_moved_json);
    if (call != NULL) {
        /* Confirmed within about four election timeouts. */
        unsigned confirm_ms = 4 * node->config->election_timeout_ms;
        membership_started(call,
                           tandem_membership_transfer(&node->raft, node->loop, name, confirm_ms,
                                                      errmsg, membership_cb, call),
                           errmsg);
    }
}
