/* BCP runtime of one node: member health probes, fenced detection, lag samples, the site
 * controller's glue (gather from the site table, propose commands), the status view, restart in
 * place, and one-shot calls to other members' APIs. */
#include "node/bcp/runtime.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/log_scan.h"
#include "consensus/raft_shield.h"
#include "consensus/recover.h"
#include "consensus/transport.h"
#include "node/bcp/events.h"
#include "node/log.h"
#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

/* ---- clients and one-shot calls ---- */

struct call {
    struct tandem_httpc_request req;
    tandem_bcp_call_cb cb;
    void *data;
};

static void closed_one(struct tandem_bcp *b);

static void clients_closed_cb(struct tandem_http_pool *pool)
{
    struct tandem_bcp *b = pool->data;
    tandem_assert(b->closing && b->handles_open > 0);
    b->handles_open--;
    closed_one(b);
}

static void call_cb(struct tandem_httpc_request *req, int status,
                    const struct tandem_httpc_response *resp)
{
    struct call *call = req->data;
    if (status == 0 && resp != NULL) {
        call->cb(call->data, 0, resp->status, resp->body, resp->body_len);
    } else {
        call->cb(call->data, status == 0 ? UV_EPROTO : status, 0, NULL, 0);
    }
    free(call);
}

/* The member whose API is base_url, for TLS to check the server's certificate names it; NULL
 * when no member of the configuration has that URL (then any node certificate will do). */
static const char *call_node(struct tandem_bcp *b, const char *base_url, struct tandem_member *m)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (strcmp(base_url, b->env.self->api) == 0) {
        return b->env.self->name;
    }
    for (unsigned i = 0; i < conf->n; i++) {
        if (tandem_member_address_parse(conf->servers[i].address, m, errmsg) == 0 &&
            strcmp(m->api, base_url) == 0) {
            return m->name;
        }
    }
    return NULL;
}

int tandem_bcp_call(struct tandem_bcp *b, const char *base_url, const char *method,
                    const char *path, const char *extra_headers, const char *body,
                    unsigned timeout_ms, tandem_bcp_call_cb cb, void *data)
{
    char headers[512];
    if (b->closing) {
        return UV_EINVAL;
    }
    struct call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        return UV_ENOMEM;
    }
    call->cb = cb;
    call->data = data;
    call->req.data = call;
    call->req.timeout_ms = timeout_ms;
    snprintf(headers, sizeof headers, "%s%s",
             body != NULL ? "Content-Type: application/json\r\n" : "",
             extra_headers != NULL ? extra_headers : "");
    struct tandem_member member;
    int rv = tandem_http_pool_send_node(
        &b->clients, base_url, call_node(b, base_url, &member), &call->req, method, path,
        headers[0] != '\0' ? headers : NULL, body, body == NULL ? 0 : strlen(body), call_cb);
    if (rv != 0) {
        free(call);
    }
    return rv;
}

/* ---- probes ---- */

static uint64_t bcp_now(struct tandem_bcp *b)
{
    return uv_now(b->env.loop);
}

static struct tandem_bcp_peer *peer_find(struct tandem_bcp *b, const char *name)
{
    for (unsigned i = 0; i < TANDEM_BCP_PEERS_MAX; i++) {
        if (b->peers[i].used && strcmp(b->peers[i].name, name) == 0) {
            return &b->peers[i];
        }
    }
    return NULL;
}

bool tandem_bcp_api_reachable(struct tandem_bcp *b, const char *name, int64_t *age_ms)
{
    struct tandem_bcp_peer *p = peer_find(b, name);
    bool self = strcmp(name, b->env.self->name) == 0;
    uint64_t now = bcp_now(b);
    if (age_ms != NULL) {
        *age_ms =
            self
                ? 0
                : (p == NULL || p->last_ok_ms <= p->since_ms ? -1 : (int64_t)(now - p->last_ok_ms));
    }
    return self || (p != NULL && now - p->last_ok_ms < b->env.config->site_down_after_ms);
}

/* Section 2 of issue 10: a member whose API answers but whose raft port we cannot reach is as
 * good as down for raft; the runtime probes every member's raft port through the transport. */
bool tandem_bcp_raft_reachable(struct tandem_bcp *b, const char *name, int64_t *age_ms)
{
    struct tandem_bcp_peer *p = peer_find(b, name);
    bool self = strcmp(name, b->env.self->name) == 0;
    struct tandem_transport_contact c = {.last_ok_ms = 0};
    uint64_t now = bcp_now(b);
    if (p != NULL) {
        (void)tandem_transport_contact(&b->env.raft->transport, p->id, &c);
    }
    if (age_ms != NULL) {
        *age_ms = self ? 0 : (c.last_ok_ms == 0 ? -1 : (int64_t)(now - c.last_ok_ms));
    }
    uint64_t last = p == NULL ? 0 : (c.last_ok_ms > p->since_ms ? c.last_ok_ms : p->since_ms);
    return self || (p != NULL && now - last < b->env.config->site_down_after_ms);
}

bool tandem_bcp_reachable(struct tandem_bcp *b, const char *name)
{
    return tandem_bcp_api_reachable(b, name, NULL) && tandem_bcp_raft_reachable(b, name, NULL);
}

static void fence(struct tandem_bcp *b, uint64_t epoch, const char *by);

static int64_t lag_field(json_t *member, const char *name)
{
    json_t *v = json_object_get(member, name);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

/* Keeps the leader's view of every member's lag, as its probe answer told it: after the
 * leader is lost, the survivors still know what the lag was (the forced invoke reports it). */
static void lag_heard(struct tandem_bcp_peer *p, json_t *view)
{
    struct tandem_bcp_lag_heard *h = &p->bcp->lag_heard;
    const char *name;
    json_t *member;
    if (!json_is_object(view)) {
        return;
    }
    snprintf(h->from, sizeof h->from, "%s", p->name);
    h->at_ms = bcp_now(p->bcp);
    h->n = 0;
    json_object_foreach(view, name, member)
    {
        if (h->n >= TANDEM_BCP_PEERS_MAX || !tandem_member_name_ok(name, TANDEM_NAME_LEN_MAX)) {
            break;
        }
        struct tandem_bcp_lag *l = &h->members[h->n++];
        snprintf(l->name, sizeof l->name, "%s", name);
        l->entries = lag_field(member, "entries");
        l->commands = lag_field(member, "commands");
        l->ms = lag_field(member, "ms");
    }
}

/* A peer of our cluster at a newer fencing epoch means the cluster moved on without us: this is
 * how a follower of the old configuration, which dials no survivor itself, learns it. */
static void probe_epoch(struct tandem_bcp_peer *p, const struct tandem_httpc_response *resp)
{
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    json_t *epoch = json_object_get(root, "epoch");
    const char *cluster = json_string_value(json_object_get(root, "cluster_id"));
    if (json_is_integer(epoch) && cluster != NULL &&
        strcmp(cluster, p->bcp->env.config->cluster_id) == 0 &&
        (uint64_t)json_integer_value(epoch) > p->bcp->epoch) {
        fence(p->bcp, (uint64_t)json_integer_value(epoch), p->name);
    }
    lag_heard(p, json_object_get(root, "lag"));
    json_t *view = json_object_get(root, "view");
    if (json_is_object(view) && !p->bcp->closing) { /* close releases what is kept */
        json_decref(p->view);
        p->view = json_incref(view);
        p->view_ms = bcp_now(p->bcp);
    }
    json_decref(root);
}

static void probe_cb(struct tandem_httpc_request *req, int status,
                     const struct tandem_httpc_response *resp)
{
    struct tandem_bcp_peer *p = req->data;
    p->inflight = false;
    if (status == 0 && resp != NULL && resp->status == 200) {
        p->last_ok_ms = bcp_now(p->bcp);
        probe_epoch(p, resp);
    }
}

static unsigned probe_interval_ms(struct tandem_bcp *b)
{
    unsigned down = b->env.config->site_down_after_ms;
    return down / 6 > TANDEM_BCP_PROBE_INTERVAL_MIN_MS ? down / 6
                                                       : TANDEM_BCP_PROBE_INTERVAL_MIN_MS;
}

/* A PROBE handshake to the member's raft port: what it answers lands in the transport's
 * contact table (raft reachability, quarantine, and a newer epoch that fences us). */
static void peer_probe_raft(struct tandem_bcp *b, struct tandem_bcp_peer *p)
{
    uint64_t now = bcp_now(b);
    if (b->closing || now - p->raft_sent_ms < probe_interval_ms(b)) {
        return;
    }
    p->raft_sent_ms = now;
    int rv = tandem_transport_probe(&b->env.raft->transport, p->id, p->address);
    if (rv != 0 && rv != RAFT_BUSY) {
        tandem_log(TANDEM_LOG_DEBUG, "raft probe of %s: %s", p->name,
                   b->env.raft->transport.errmsg);
    }
}

static void peer_probe(struct tandem_bcp *b, struct tandem_bcp_peer *p)
{
    unsigned interval = probe_interval_ms(b);
    uint64_t now = bcp_now(b);
    if (p->inflight || now - p->last_sent_ms < interval) {
        return;
    }
    if (b->closing) {
        return;
    }
    p->req.data = p;
    p->req.timeout_ms = 2 * interval < TANDEM_BCP_PROBE_TIMEOUT_MAX_MS
                            ? 2 * interval
                            : TANDEM_BCP_PROBE_TIMEOUT_MAX_MS;
    p->last_sent_ms = now;
    if (tandem_http_pool_send_node(&b->clients, p->api, p->name, &p->req, "GET", "/v1/node/epoch",
                                   NULL, NULL, 0, probe_cb) == 0) {
        p->inflight = true;
    }
}

/* Keeps one peer per member of the configuration (self excluded) and probes them. A peer that
 * left the configuration is dropped once its probe finished. */
static void peers_sync(struct tandem_bcp *b)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; i < TANDEM_BCP_PEERS_MAX; i++) {
        b->peers[i].seen = false;
    }
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            strcmp(m.name, b->env.self->name) == 0) {
            continue;
        }
        struct tandem_bcp_peer *p = peer_find(b, m.name);
        for (unsigned j = 0; p == NULL && j < TANDEM_BCP_PEERS_MAX; j++) {
            if (!b->peers[j].used && !b->peers[j].inflight) {
                p = &b->peers[j];
                json_decref(p->view);
                memset(p, 0, sizeof *p);
                p->used = true;
                p->bcp = b;
                p->last_ok_ms = bcp_now(b); /* a new peer gets the benefit of the doubt */
                p->since_ms = p->last_ok_ms;
                snprintf(p->name, sizeof p->name, "%s", m.name);
            }
        }
        if (p != NULL) {
            p->seen = true;
            p->id = conf->servers[i].id;
            snprintf(p->site, sizeof p->site, "%s", m.site);
            snprintf(p->api, sizeof p->api, "%s", m.api);
            snprintf(p->address, sizeof p->address, "%s", conf->servers[i].address);
        }
    }
    for (unsigned i = 0; i < TANDEM_BCP_PEERS_MAX; i++) {
        struct tandem_bcp_peer *p = &b->peers[i];
        if (p->used && !p->seen) {
            p->used = false; /* its probe, if any, still completes into this slot */
        } else if (p->used) {
            peer_probe(b, p);
            peer_probe_raft(b, p);
        }
    }
}

/* ---- fenced detection and lag samples ---- */

static void fence(struct tandem_bcp *b, uint64_t epoch, const char *by)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    tandem_assert(epoch > b->epoch);
    /* Refuse old-epoch peers with the newer epoch (they are fenced in turn) and open no raft
     * connection any more. */
    tandem_transport_set_fenced(&b->env.raft->transport, epoch);
    tandem_transport_set_quarantine(&b->env.raft->transport, true);
    if (!b->fenced) {
        b->fenced = true;
        if (tandem_recover_write_u64(b->env.config->data_dir, TANDEM_FENCED_FILE, epoch, errmsg) !=
            0) {
            tandem_log(TANDEM_LOG_WARN, "fenced marker: %s", errmsg);
        }
    }
    if (!b->fenced_logged) {
        b->fenced_logged = true;
        tandem_log(TANDEM_LOG_ERROR,
                   "fenced: cluster is at epoch %" PRIu64 " and this node at %" PRIu64
                   " (learnt from %s); serving no reads or writes until re-seeded (tandemctl "
                   "member rejoin %s)",
                   epoch, b->epoch, by, b->env.self->name);
    }
}

static void fenced_check(struct tandem_bcp *b)
{
    struct tandem_transport_stats stats;
    tandem_transport_stats(&b->env.raft->transport, &stats);
    if (stats.epoch_newest_seen > b->epoch) {
        fence(b, stats.epoch_newest_seen, "the raft transport");
    }
}

static void sample(struct tandem_bcp *b)
{
    struct raft *r = &b->env.raft->raft;
    if (raft_state(r) != RAFT_LEADER) {
        b->sample_count = 0;
        return;
    }
    b->samples[b->sample_next].ms = bcp_now(b);
    b->samples[b->sample_next].index = raft_last_index(r);
    b->sample_next = (b->sample_next + 1) % TANDEM_BCP_SAMPLES;
    if (b->sample_count < TANDEM_BCP_SAMPLES) {
        b->sample_count++;
    }
}

/* Age of the oldest entry a member with this match index lacks; -1 when unknown. */
static int64_t lag_ms(struct tandem_bcp *b, uint64_t match)
{
    struct raft *r = &b->env.raft->raft;
    if (match >= raft_last_index(r)) {
        return 0;
    }
    if (b->sample_count == 0) {
        return -1;
    }
    unsigned oldest = (b->sample_next + TANDEM_BCP_SAMPLES - b->sample_count) % TANDEM_BCP_SAMPLES;
    for (unsigned k = 0; k < b->sample_count; k++) {
        const struct tandem_bcp_sample *s = &b->samples[(oldest + k) % TANDEM_BCP_SAMPLES];
        if (s->index > match) {
            return (int64_t)(bcp_now(b) - s->ms);
        }
    }
    return 0;
}

int tandem_bcp_site_lag(struct tandem_bcp *b, const char *site, int64_t *entries, int64_t *ms)
{
    struct raft *r = &b->env.raft->raft;
    const struct raft_configuration *conf = &r->configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    bool known = false;
    *entries = *ms = -1;
    for (unsigned i = 0; raft_state(r) == RAFT_LEADER && i < conf->n; i++) {
        struct tandem_member m;
        raft_index match = 0, last = raft_last_index(r);
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            strcmp(m.site, site) != 0 || raft_match_index(r, conf->servers[i].id, &match) != 0) {
            continue;
        }
        match = conf->servers[i].id == b->env.raft->id ? last : match;
        if (match == 0) {
            continue; /* not heard from since this node leads: its lag is unknown */
        }
        int64_t e = last > match ? (int64_t)(last - match) : 0, t = lag_ms(b, match);
        *entries = e > *entries ? e : *entries;
        *ms = t > *ms ? t : *ms;
        known = true;
    }
    return known ? 0 : -1;
}

/* See tandem_site_config_stuck: checked on every node, leader or not. */
static void config_check(struct tandem_bcp *b)
{
    struct raft *r = &b->env.raft->raft;
    if (!tandem_site_config_stuck(r)) {
        return;
    }
    unsigned long long index = r->configuration_uncommitted_index;
    if (tandem_site_config_repair(r) == 0) {
        b->controller.config_repairs++;
        /* Routine: the shield that removes the cause stalls followers and is not installed
         * (consensus/raft_shield.h, shield 4). */
        tandem_log(TANDEM_LOG_DEBUG,
                   "libraft kept configuration entry %llu marked uncommitted after applying it; "
                   "cleared the stale marker",
                   index);
    }
}

static void quarantine_check(struct tandem_bcp *b, bool announce);
static void release_note(struct tandem_bcp *b);

/* Remembers the leader this node knows, for the age of a local status view. */
static void leader_seen(struct tandem_bcp *b)
{
    struct tandem_member leader;
    if (tandem_raft_leader(b->env.raft, &leader) == 0) {
        b->leader_seen_ms = bcp_now(b);
        snprintf(b->leader_seen_name, sizeof b->leader_seen_name, "%s", leader.name);
    }
}

static void tick_cb(uv_timer_t *timer)
{
    struct tandem_bcp *b = timer->data;
    if (b->closing) {
        return;
    }
    leader_seen(b);
    config_check(b);
    fenced_check(b);
    sample(b);
    peers_sync(b);
    quarantine_check(b, true);
    release_note(b);
}

/* ---- start-up quarantine (the policy: node/bcp/quarantine.h) ---- */

static bool site_is_witness(const struct tandem_site_table *t, const char *site)
{
    const struct tandem_site *s = t == NULL ? NULL : tandem_site_table_find(t, site);
    return s != NULL ? s->witness : strcmp(site, TANDEM_SITE_WITNESS_NAME) == 0;
}

/* The configuration as the policy sees it, with what the raft transport heard of each. A
 * member counts as reached once it stayed at our epoch for two probe intervals: a node of the
 * other site that returns at the same time as we do and learns of a newer epoch from its own
 * site-mate refuses our next probe, instead of releasing us with a single answer. */
static void quarantine_gather(struct tandem_bcp *b, struct tandem_quarantine_input *in)
{
    uint64_t settle_ms = 2 * (uint64_t)probe_interval_ms(b);
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    struct tandem_site_table *t = tandem_bcp_table_load(b); /* NULL: fall back to site names */
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(in, 0, sizeof *in);
    in->operator_release = b->released_by_operator;
    for (unsigned i = 0; i < conf->n && in->n_members < TANDEM_QUARANTINE_MEMBERS_MAX; i++) {
        struct tandem_member m;
        struct tandem_transport_contact c = {.last_ok_ms = 0};
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        struct tandem_quarantine_member *q = &in->members[in->n_members++];
        snprintf(q->name, sizeof q->name, "%s", m.name);
        snprintf(q->site, sizeof q->site, "%s", m.site);
        q->role = tandem_raft_role_from_raft(conf->servers[i].role);
        q->self = conf->servers[i].id == b->env.raft->id;
        q->witness = site_is_witness(t, m.site);
        if (!q->self &&
            tandem_transport_contact(&b->env.raft->transport, conf->servers[i].id, &c) == 0) {
            q->reached = c.ok_since_ms != 0 && c.last_ok_ms - c.ok_since_ms >= settle_ms;
            q->leading = c.last_leader_ms != 0; /* set only by handshakes at our epoch */
        }
    }
    free(t);
}

static void quarantine_lift(struct tandem_bcp *b, const char *why)
{
    /* An event only when it waited (or was released by hand): a node let go at once, as in a
     * restart into a healthy cluster, has nothing to tell. */
    if (b->quarantine_why[0] != '\0' || b->released_by_operator) {
        tandem_events_emit(b->env.events, "quarantine_release", b->env.self->site, "%s", why);
    }
    tandem_transport_set_quarantine(&b->env.raft->transport, false);
    b->quarantined = false;
    snprintf(b->quarantine_why, sizeof b->quarantine_why, "%s", why);
    tandem_log(TANDEM_LOG_WARN, "start-up quarantine lifted: %s", why);
}

/* Lifts the quarantine once the policy allows it; says at warn what it waits for whenever that
 * changes. A fenced node stays quarantined: it must take no part in raft at all. */
static void quarantine_check(struct tandem_bcp *b, bool announce)
{
    struct tandem_quarantine_input *in = malloc(sizeof *in);
    char why[TANDEM_QUARANTINE_WHY_MAX];
    if (!b->quarantined || b->fenced || in == NULL) {
        free(in);
        return;
    }
    quarantine_gather(b, in);
    enum tandem_quarantine_verdict verdict = tandem_quarantine_decide(in, why);
    free(in);
    if (verdict != TANDEM_QUARANTINE_WAIT) {
        quarantine_lift(b, why);
    } else if (announce && strcmp(why, b->quarantine_why) != 0) {
        if (b->quarantine_why[0] == '\0') {
            tandem_events_emit(b->env.events, "quarantine_enter", b->env.self->site,
                               "neither voting nor campaigning: %s", why);
        }
        snprintf(b->quarantine_why, sizeof b->quarantine_why, "%s", why);
        tandem_log(TANDEM_LOG_WARN,
                   "start-up quarantine: this node neither votes nor campaigns, %s", why);
    }
}

int tandem_bcp_release(struct tandem_bcp *b, const char *reason, char *errmsg)
{
    if (!b->quarantined) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s is not quarantined%s", b->env.self->name,
                 b->fenced ? " (it is fenced: re-seed it with tandemctl member rejoin)" : "");
        return -1;
    }
    if (b->fenced) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "%s is fenced: the cluster moved to a newer epoch; re-seed it with tandemctl "
                 "member rejoin",
                 b->env.self->name);
        return -1;
    }
    char why[TANDEM_QUARANTINE_WHY_MAX + TANDEM_BCP_RELEASE_REASON_MAX + 64];
    snprintf(b->release_reason, sizeof b->release_reason, "%s", reason);
    snprintf(why, sizeof why, "released by an operator (%s); it was %s", reason,
             b->quarantine_why[0] != '\0' ? b->quarantine_why : "just started");
    b->released_by_operator = true;
    b->release_note_pending = true;
    quarantine_lift(b, why);
    return 0;
}

static void release_note_cb(void *data, int status, int http_status, const char *body,
                            size_t body_len)
{
    struct tandem_bcp *b = data;
    b->release_note_inflight = false;
    if (status == 0 && http_status == 200) {
        b->release_note_pending = false;
        tandem_log(TANDEM_LOG_INFO, "operator release of %s recorded in the decisions",
                   b->env.self->name);
    } else {
        tandem_log(TANDEM_LOG_DEBUG, "recording the operator release: %s %.*s",
                   status != 0 ? uv_strerror(status) : "HTTP",
                   (int)(body_len > 200 ? 200 : body_len), body == NULL ? "" : body);
    }
}

/* The operator's release goes into the replicated history once a leader is known (like the
 * forced-invoke note): POSTed to the leader's API, retried until it is recorded. */
static void release_note(struct tandem_bcp *b)
{
    struct tandem_member leader;
    uint64_t now = bcp_now(b);
    if (!b->release_note_pending || b->release_note_inflight || b->fenced || b->closing ||
        now - b->release_note_sent_ms < TANDEM_BCP_NOTE_RETRY_MS ||
        tandem_raft_leader(b->env.raft, &leader) != 0) {
        return;
    }
    char by[TANDEM_NAME_LEN_MAX + 16];
    snprintf(by, sizeof by, "operator:%s", b->env.self->name);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s}", "action", TANDEM_BCP_RELEASE_ACTION, "member",
                             b->env.self->name, "site", b->env.self->site, "reason",
                             b->release_reason, "by", by);
    char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
    b->release_note_sent_ms = now;
    if (text != NULL &&
        tandem_bcp_call(b, leader.api, "POST", "/v1/bcp/decisions", NULL, text,
                        TANDEM_BCP_PROBE_TIMEOUT_MAX_MS * 5, release_note_cb, b) == 0) {
        b->release_note_inflight = true;
    }
    free(text);
}

/* ---- site controller glue ---- */

struct tandem_site_table *tandem_bcp_table_load(struct tandem_bcp *b)
{
    struct tandem_store *store = b->env.store;
    struct tandem_site_table *t = malloc(sizeof *t);
    MDB_txn *txn;
    if (t == NULL || tandem_store_commit(store) != 0 || tandem_store_read_txn(store, &txn) != 0) {
        free(t);
        return NULL;
    }
    int rv = tandem_sites_load(store, txn, t);
    mdb_txn_abort(txn);
    if (rv != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static bool site_reported(struct tandem_bcp *b, const char *site)
{
    for (unsigned i = 0; i < b->n_reported; i++) {
        if (strcmp(b->reported[i], site) == 0) {
            return true;
        }
    }
    return false;
}

static void gather_member(struct tandem_bcp *b, const struct tandem_site_table *t,
                          const struct raft_server *server, struct tandem_site_plan_member *out)
{
    struct tandem_member m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct raft *r = &b->env.raft->raft;
    raft_index match = 0;
    memset(out, 0, sizeof *out);
    if (tandem_member_address_parse(server->address, &m, errmsg) != 0) {
        snprintf(out->name, sizeof out->name, "%llu", (unsigned long long)server->id);
    } else {
        snprintf(out->name, sizeof out->name, "%s", m.name);
        snprintf(out->site, sizeof out->site, "%s", m.site);
    }
    const struct tandem_member_home *home = tandem_site_table_home(t, out->name);
    out->id = server->id;
    out->role = tandem_raft_role_from_raft(server->role);
    out->home_role = home == NULL ? -1 : home->role;
    out->self = server->id == b->env.raft->id;
    out->reachable = tandem_bcp_reachable(b, out->name);
    bool known = raft_state(r) == RAFT_LEADER && raft_match_index(r, server->id, &match) == 0;
    out->lost_log =
        known && !out->self &&
        tandem_raft_shield_lost_log(&b->env.raft->shield, server->id, raft_current_term(r));
    /* match 0 means the leader has not heard from it since it took over: not caught up. A lost
     * log leaves match where it was: not caught up either. */
    out->caught_up = out->self || (known && match > 0 && !out->lost_log &&
                                   match + TANDEM_SITE_CATCH_UP_ENTRIES_MAX >= raft_last_index(r));
}

/* Clears down reports of sites that answer again, so a later outage is reported again. */
static void reports_refresh(struct tandem_bcp *b, const struct tandem_site_plan_input *in)
{
    for (unsigned i = 0; i < b->n_reported;) {
        bool answering = false;
        for (unsigned j = 0; j < in->n_members; j++) {
            answering |=
                strcmp(in->members[j].site, b->reported[i]) == 0 && in->members[j].reachable;
        }
        if (answering) {
            memmove(b->reported[i], b->reported[b->n_reported - 1], sizeof b->reported[i]);
            b->n_reported--;
        } else {
            i++;
        }
    }
}

/* The forced invoke is recorded: its note and the seed's history are done with. */
static void forced_recorded(struct tandem_bcp *b)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    const char *data_dir = b->env.config->data_dir;
    (void)tandem_recover_file_remove(data_dir, TANDEM_FORCED_FILE, errmsg);
    (void)tandem_recover_file_remove(data_dir, TANDEM_FORCED_HISTORY_FILE, errmsg);
    b->forced_site[0] = '\0';
    b->forced_history_set = false;
}

static int gather_cb(struct tandem_site_controller *c, struct tandem_site_plan_input *in)
{
    struct tandem_bcp *b = c->data;
    const struct tandem_config *config = b->env.config;
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    if (b->fenced) {
        return -1; /* a fenced leader leads an old configuration: it decides nothing */
    }
    struct tandem_site_table *t = tandem_bcp_table_load(b);
    if (t == NULL) {
        return -1;
    }
    memset(in, 0, sizeof *in);
    for (unsigned i = 0; i < t->n_sites && i < TANDEM_SITE_PLAN_SITES_MAX; i++) {
        struct tandem_site_plan_site *s = &in->sites[in->n_sites++];
        snprintf(s->name, sizeof s->name, "%s", t->sites[i].name);
        s->state = t->sites[i].state;
        s->witness = t->sites[i].witness;
    }
    for (unsigned i = 0; i < conf->n && in->n_members < TANDEM_SITE_PLAN_MEMBERS_MAX; i++) {
        gather_member(b, t, &conf->servers[i], &in->members[in->n_members++]);
    }
    reports_refresh(b, in);
    for (unsigned i = 0; i < in->n_sites; i++) {
        in->sites[i].down_reported = site_reported(b, in->sites[i].name);
    }
    const struct tandem_site *forced = tandem_site_table_find(t, b->forced_site);
    if (b->forced_site[0] != '\0' && forced != NULL && forced->state == TANDEM_SITE_INVOKED) {
        forced_recorded(b);
    }
    snprintf(in->preferred_site, sizeof in->preferred_site, "%s", t->preferred_site);
    in->preferred_set = t->preferred_set;
    snprintf(in->config_preferred_site, sizeof in->config_preferred_site, "%s",
             config->preferred_site);
    snprintf(in->forced_site, sizeof in->forced_site, "%s", b->forced_site);
    in->auto_bcp = config->auto_bcp;
    free(t);
    return 0;
}

/* One proposal of the controller: the command and everything it points to. */
struct proposal {
    struct tandem_write write;
    Tandem__Command command;
    Tandem__SiteUpdate update;
    Tandem__SiteDecision decision;
    Tandem__MemberHomeSet homes;
    Tandem__MemberHome home[TANDEM_SITE_PLAN_MEMBERS_MAX];
    Tandem__MemberHome *home_ptrs[TANDEM_SITE_PLAN_MEMBERS_MAX];
    char addresses[TANDEM_SITE_PLAN_MEMBERS_MAX][TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    char names[TANDEM_SITE_PLAN_MEMBERS_MAX][TANDEM_NAME_LEN_MAX + 1];
    char sites[TANDEM_SITE_PLAN_MEMBERS_MAX][TANDEM_SITE_LEN_MAX + 1];
    struct tandem_site_action action;
    char lost[TANDEM_SITE_HOMES_MAX][TANDEM_NAME_LEN_MAX + 1]; /* forced: members left behind */
    char *lost_ptrs[TANDEM_SITE_HOMES_MAX];
    Tandem__ForcedHistory history;
    uint64_t start_terms[TANDEM_TERM_HISTORY_MAX], start_indexes[TANDEM_TERM_HISTORY_MAX];
    char by[TANDEM_SITE_BY_LEN_MAX + 1];
    char from_role[16], to_role[16];
    struct tandem_site_controller *controller;
    tandem_site_done_fn done;
};

static void proposal_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct proposal *p = w->data;
    struct tandem_bcp *b = p->controller->data;
    int outcome = status != 0 ? status : (result->status == 200 ? 0 : -1);
    if (outcome != 0 && result != NULL && result->body != NULL) {
        tandem_log(TANDEM_LOG_WARN, "site controller: %s refused: %s", p->action.action_name,
                   result->body);
    }
    if (outcome == 0 && p->action.kind == TANDEM_SITE_ACTION_REPORT &&
        b->n_reported < TANDEM_SITE_PLAN_SITES_MAX && !site_reported(b, p->action.site)) {
        snprintf(b->reported[b->n_reported++], TANDEM_SITE_LEN_MAX + 1, "%s", p->action.site);
    }
    if (outcome == 0 && p->action.kind == TANDEM_SITE_ACTION_INVOKE && p->action.force) {
        forced_recorded(b);
    }
    p->done(p->controller, outcome);
    free(p);
}

/* Records the current role of every member without a home record. */
static void build_homes(struct tandem_bcp *b, struct proposal *p)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    const struct tandem_site_plan_input *in = p->controller->input;
    char errmsg[TANDEM_ERRMSG_SIZE];
    tandem__member_home_set__init(&p->homes);
    for (unsigned i = 0; i < conf->n && p->homes.n_members < TANDEM_SITE_PLAN_MEMBERS_MAX; i++) {
        struct tandem_member m;
        bool known = false;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        for (unsigned j = 0; j < in->n_members; j++) {
            known |= strcmp(in->members[j].name, m.name) == 0 && in->members[j].home_role >= 0;
        }
        if (known) {
            continue;
        }
        size_t k = p->homes.n_members++;
        Tandem__MemberHome *h = &p->home[k];
        tandem__member_home__init(h);
        snprintf(p->addresses[k], sizeof p->addresses[k], "%s", conf->servers[i].address);
        snprintf(p->names[k], sizeof p->names[k], "%s", m.name);
        snprintf(p->sites[k], sizeof p->sites[k], "%s", m.site);
        h->address = p->addresses[k];
        h->name = p->names[k];
        h->site = p->sites[k];
        h->role = tandem_raft_role_from_raft(conf->servers[i].role);
        p->home_ptrs[k] = h;
    }
    p->homes.members = p->home_ptrs;
    p->command.body_case = TANDEM__COMMAND__BODY_MEMBER_HOME_SET;
    p->command.member_home_set = &p->homes;
}

/* A forced invoke names the members it left behind: those with a home record that are not in
 * the recovered configuration. */
static void build_lost(struct tandem_bcp *b, struct proposal *p)
{
    struct tandem_site_table *t = tandem_bcp_table_load(b);
    struct tandem_member m;
    for (unsigned i = 0; t != NULL && i < t->n_homes; i++) {
        if (tandem_raft_member_by_name(b->env.raft, t->homes[i].name, &m, NULL) == 0) {
            continue;
        }
        size_t k = p->update.n_lost_members++;
        snprintf(p->lost[k], sizeof p->lost[k], "%s", t->homes[i].name);
        p->lost_ptrs[k] = p->lost[k];
    }
    p->update.lost_members = p->lost_ptrs;
    free(t);
}

/* A forced invoke carries the seed's log history, for the fork points of fenced nodes. */
static void build_history(struct tandem_bcp *b, struct proposal *p)
{
    const struct tandem_term_history *h = &b->forced_history.history;
    tandem__forced_history__init(&p->history);
    p->history.epoch = b->forced_history.epoch;
    p->history.seed = b->forced_history.seed;
    p->history.first_index = h->first_index;
    p->history.last_index = h->last_index;
    p->history.last_term = h->last_term;
    for (unsigned k = 0; k < h->n; k++) {
        p->start_terms[k] = h->terms[k].term;
        p->start_indexes[k] = h->terms[k].first_index;
    }
    p->history.start_terms = p->start_terms;
    p->history.n_start_terms = h->n;
    p->history.start_indexes = p->start_indexes;
    p->history.n_start_indexes = h->n;
    p->update.history = &p->history;
}

static void build_update(struct proposal *p, int change)
{
    tandem__site_update__init(&p->update);
    p->update.action = (Tandem__SiteUpdate__Action)change;
    p->update.site = p->action.site;
    p->update.reason = p->action.reason;
    p->update.by = p->by;
    p->update.force = p->action.force;
    p->update.witness = p->action.witness;
    p->command.body_case = TANDEM__COMMAND__BODY_SITE_UPDATE;
    p->command.site_update = &p->update;
}

static void build_decision(struct proposal *p)
{
    const struct tandem_site_action *a = &p->action;
    tandem__site_decision__init(&p->decision);
    bool assign = a->kind == TANDEM_SITE_ACTION_ASSIGN;
    snprintf(p->from_role, sizeof p->from_role, "%s", assign ? tandem_role_name(a->from_role) : "");
    snprintf(p->to_role, sizeof p->to_role, "%s", assign ? tandem_role_name(a->to_role) : "");
    p->decision.action = p->action.action_name;
    p->decision.member = p->action.member;
    p->decision.site = p->action.site;
    p->decision.from_role = p->from_role;
    p->decision.to_role = p->to_role;
    p->decision.reason = p->action.reason;
    p->decision.by = p->by;
    p->command.body_case = TANDEM__COMMAND__BODY_SITE_DECISION;
    p->command.site_decision = &p->decision;
}

/* The site change a controller action proposes, or -1 when it proposes something else. */
static int site_change_of(int kind)
{
    static const struct {
        int kind, change;
    } changes[] = {
        {TANDEM_SITE_ACTION_REGISTER, TANDEM_SITE_REGISTER},
        {TANDEM_SITE_ACTION_PREFER, TANDEM_SITE_PREFER},
        {TANDEM_SITE_ACTION_INVOKE, TANDEM_SITE_INVOKE},
        {TANDEM_SITE_ACTION_RECOVERED, TANDEM_SITE_RECOVERED},
        {TANDEM_SITE_ACTION_REVOKE, TANDEM_SITE_REVOKE},
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        if (changes[i].kind == kind) {
            return changes[i].change;
        }
    }
    return -1;
}

static int propose_cb(struct tandem_site_controller *c, const struct tandem_site_action *a,
                      tandem_site_done_fn done)
{
    struct tandem_bcp *b = c->data;
    struct proposal *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return -1;
    }
    p->action = *a;
    p->controller = c;
    p->done = done;
    tandem__command__init(&p->command);
    bool automatic = a->kind == TANDEM_SITE_ACTION_INVOKE && !a->force;
    snprintf(p->by, sizeof p->by, "%s:%s",
             a->force ? "forced" : (automatic ? "auto" : "controller"), b->env.self->name);
    int change = site_change_of(a->kind);
    if (change >= 0) {
        build_update(p, change);
        if (change == TANDEM_SITE_INVOKE && a->force) {
            build_lost(b, p);
            if (b->forced_history_set) {
                build_history(b, p);
            }
        }
    } else if (a->kind == TANDEM_SITE_ACTION_RECORD_HOMES) {
        build_homes(b, p);
    } else {
        build_decision(p);
    }
    if (p->command.body_case == TANDEM__COMMAND__BODY_MEMBER_HOME_SET && p->homes.n_members == 0) {
        free(p);
        return -1;
    }
    p->write.command = &p->command;
    p->write.data = p;
    p->write.cb = proposal_cb;
    if (tandem_proposer_write(b->env.proposer, &p->write) != 0) {
        free(p);
        return -1;
    }
    return 0;
}

int tandem_bcp_plan_input(struct tandem_bcp *b, struct tandem_site_plan_input *in)
{
    return gather_cb(&b->controller, in);
}

static void controller_log_cb(struct tandem_site_controller *c, int level, const char *msg)
{
    (void)c;
    tandem_log(level == TANDEM_SITE_LOG_WARN    ? TANDEM_LOG_WARN
               : level == TANDEM_SITE_LOG_DEBUG ? TANDEM_LOG_DEBUG
                                                : TANDEM_LOG_INFO,
               "%s", msg);
}

/* ---- status ---- */

struct node_lag {
    json_int_t entries;  /* raft log entries the member lacks; -1 unknown */
    json_int_t commands; /* client writes packed in those entries; -1 unknown */
    json_int_t ms;       /* -1 unknown */
};

/* "api_reachable", "raft_reachable" and the age of each one's last contact (null: never). */
static void reach_json(struct tandem_bcp *b, const char *name, json_t *out)
{
    int64_t api_age, raft_age;
    bool api = tandem_bcp_api_reachable(b, name, &api_age);
    bool raft = tandem_bcp_raft_reachable(b, name, &raft_age);
    json_object_set_new(out, "api_reachable", json_boolean(api));
    json_object_set_new(out, "raft_reachable", json_boolean(raft));
    json_object_set_new(out, "api_contact_age_ms",
                        api_age < 0 ? json_null() : json_integer((json_int_t)api_age));
    json_object_set_new(out, "raft_contact_age_ms",
                        raft_age < 0 ? json_null() : json_integer((json_int_t)raft_age));
}

/* The lag of member id as this node, the leader, sees it; *match its match index. */
static void member_lag(struct tandem_bcp *b, uint64_t id, struct node_lag *lag, raft_index *match)
{
    struct raft *r = &b->env.raft->raft;
    lag->entries = lag->commands = lag->ms = -1;
    *match = 0;
    if (raft_state(r) != RAFT_LEADER || raft_match_index(r, id, match) != 0) {
        return;
    }
    raft_index last = raft_last_index(r);
    if (id == b->env.raft->id) {
        *match = last;
    }
    lag->entries = last > *match ? (json_int_t)(last - *match) : 0;
    lag->commands = tandem_proposer_commands_between(b->env.proposer, *match, last);
    lag->ms = lag_ms(b, *match);
}

static json_t *lag_value(json_int_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

/* in_config false: a member known only by its home record; lost: a forced failover left it
 * behind, shown with the role "lost". */
static json_t *node_json(struct tandem_bcp *b, const char *name, int role, int home_role,
                         uint64_t id, bool in_config, bool lost, struct node_lag *lag)
{
    raft_index match = 0;
    lag->entries = lag->commands = lag->ms = -1;
    if (in_config) {
        member_lag(b, id, lag, &match);
    }
    json_t *out = json_pack("{s:s,s:s,s:s,s:b,s:b}", "name", name, "role",
                            in_config ? tandem_role_name(role) : (lost ? "lost" : "none"),
                            "home_role", home_role < 0 ? "unknown" : tandem_role_name(home_role),
                            "reachable", tandem_bcp_reachable(b, name), "lost", !in_config && lost);
    if (out == NULL) {
        return NULL;
    }
    json_object_set_new(out, "match_index",
                        lag->entries < 0 ? json_null() : json_integer((json_int_t)match));
    json_object_set_new(out, "lag_entries",
                        lag->entries < 0 ? json_null() : json_integer(lag->entries));
    json_object_set_new(out, "lag_ms", lag->ms < 0 ? json_null() : json_integer(lag->ms));
    json_object_set_new(out, "lag_commands", lag_value(lag->commands));
    reach_json(b, name, out);
    const struct tandem_bcp_peer *p = peer_find(b, name);
    if (p != NULL && p->view != NULL) { /* what the node said of itself, and how long ago */
        json_t *view = json_deep_copy(p->view);
        json_object_set_new(view, "age_ms", json_integer((json_int_t)(bcp_now(b) - p->view_ms)));
        json_object_set_new(out, "view", view);
    }
    return out;
}

static void lag_max(struct node_lag *site, const struct node_lag *n)
{
    site->entries = n->entries > site->entries ? n->entries : site->entries;
    site->commands = n->commands > site->commands ? n->commands : site->commands;
    site->ms = n->ms > site->ms ? n->ms : site->ms;
}

json_t *tandem_bcp_lag_view(struct tandem_bcp *b)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (raft_state(&b->env.raft->raft) != RAFT_LEADER || b->fenced) {
        return NULL;
    }
    json_t *view = json_object();
    for (unsigned i = 0; view != NULL && i < conf->n; i++) {
        struct tandem_member m;
        struct node_lag lag;
        raft_index match;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        member_lag(b, conf->servers[i].id, &lag, &match);
        json_object_set_new(view, m.name,
                            json_pack("{s:o,s:o,s:o}", "entries", lag_value(lag.entries),
                                      "commands", lag_value(lag.commands), "ms",
                                      lag_value(lag.ms)));
    }
    return view;
}

/* Nodes of one site: members of the configuration, then home records no longer in it. */
static json_t *site_nodes(struct tandem_bcp *b, const struct tandem_site_table *t, const char *site,
                          struct node_lag *site_lag)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    json_t *nodes = json_array();
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct node_lag lag;
    site_lag->entries = site_lag->commands = site_lag->ms = -1;
    for (unsigned i = 0; nodes != NULL && i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            strcmp(m.site, site) != 0) {
            continue;
        }
        const struct tandem_member_home *home = tandem_site_table_home(t, m.name);
        json_array_append_new(nodes, node_json(b, m.name,
                                               tandem_raft_role_from_raft(conf->servers[i].role),
                                               home == NULL ? -1 : home->role, conf->servers[i].id,
                                               true, false, &lag));
        lag_max(site_lag, &lag);
    }
    for (unsigned i = 0; nodes != NULL && i < t->n_homes; i++) {
        struct tandem_member m;
        if (strcmp(t->homes[i].site, site) != 0 ||
            tandem_raft_member_by_name(b->env.raft, t->homes[i].name, &m, NULL) == 0) {
            continue;
        }
        json_array_append_new(nodes, node_json(b, t->homes[i].name, -1, t->homes[i].role, 0, false,
                                               t->homes[i].lost, &lag));
    }
    return nodes;
}

static json_t *site_entry(struct tandem_bcp *b, const struct tandem_site_table *t,
                          const struct tandem_site *site)
{
    struct node_lag lag;
    json_t *out = tandem_site_json(site);
    if (out == NULL) {
        return NULL;
    }
    json_object_set_new(out, "nodes", site_nodes(b, t, site->name, &lag));
    json_object_set_new(out, "lag_entries",
                        lag.entries < 0 ? json_null() : json_integer(lag.entries));
    json_object_set_new(out, "lag_ms", lag.ms < 0 ? json_null() : json_integer(lag.ms));
    json_object_set_new(out, "lag_commands", lag_value(lag.commands));
    return out;
}

static json_t *sites_json(struct tandem_bcp *b, const struct tandem_site_table *t)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    json_t *sites = json_array();
    char errmsg[TANDEM_ERRMSG_SIZE];
    for (unsigned i = 0; sites != NULL && i < t->n_sites; i++) {
        json_array_append_new(sites, site_entry(b, t, &t->sites[i]));
    }
    /* Sites the controller has not registered yet still show, as active. */
    for (unsigned i = 0; sites != NULL && i < conf->n; i++) {
        struct tandem_member m;
        bool listed = false;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            tandem_site_table_find(t, m.site) != NULL) {
            continue;
        }
        for (size_t j = 0; j < json_array_size(sites); j++) {
            const char *name = json_string_value(json_object_get(json_array_get(sites, j), "name"));
            listed |= name != NULL && strcmp(name, m.site) == 0;
        }
        if (!listed) {
            struct tandem_site site = {.state = TANDEM_SITE_ACTIVE};
            snprintf(site.name, sizeof site.name, "%s", m.site);
            site.witness = strcmp(m.site, TANDEM_SITE_WITNESS_NAME) == 0;
            snprintf(site.reason, sizeof site.reason, "not registered yet");
            json_array_append_new(sites, site_entry(b, t, &site));
        }
    }
    return sites;
}

static const char *busy_name(int busy)
{
    static const char *const names[] = {"idle", "proposing", "assigning", "transferring"};
    return busy >= 0 && busy <= TANDEM_SITE_TRANSFERRING ? names[busy] : "unknown";
}

json_t *tandem_bcp_leader_json(struct tandem_bcp *b)
{
    struct tandem_member leader;
    if (tandem_raft_leader(b->env.raft, &leader) != 0) {
        return json_null();
    }
    return json_pack("{s:s,s:s,s:s}", "name", leader.name, "api", leader.api, "site", leader.site);
}

json_t *tandem_bcp_status_json(struct tandem_bcp *b, MDB_txn *txn)
{
    const struct tandem_config *config = b->env.config;
    struct tandem_site_table *t = malloc(sizeof *t);
    if (t == NULL || tandem_sites_load(b->env.store, txn, t) != 0) {
        free(t);
        return NULL;
    }
    json_t *decisions = tandem_sites_decisions_json(b->env.store, txn, TANDEM_BCP_DECISIONS_SHOWN);
    json_t *leader_json = tandem_bcp_leader_json(b);
    json_t *controller =
        json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "state", busy_name(b->controller.busy),
                  "last", b->controller.last, "actions", (json_int_t)b->controller.actions,
                  "transfers_confirmed", (json_int_t)b->controller.transfers_confirmed,
                  "transfers_failed", (json_int_t)b->controller.transfers_failed, "transfers_early",
                  (json_int_t)b->controller.transfers_early, "transfer_resends",
                  (json_int_t)b->controller.transfer_resends, "config_repairs",
                  (json_int_t)b->controller.config_repairs);
    json_t *out =
        json_pack("{s:o,s:o,s:s,s:b,s:I,s:I,s:b,s:o,s:o?,s:s,s:s}", "sites", sites_json(b, t),
                  "leader", leader_json, "preferred_site", t->preferred_site, "auto_bcp",
                  config->auto_bcp, "site_down_after_ms", (json_int_t)config->site_down_after_ms,
                  "epoch", (json_int_t)b->epoch, "fenced", b->fenced, "controller", controller,
                  "decisions", decisions, "node", b->env.self->name, "mode", config->mode);
    if (out != NULL) {
        json_object_set_new(out, "quarantined", json_boolean(b->quarantined));
        json_object_set_new(out, "quarantine", json_string(b->quarantine_why));
    }
    free(t);
    return out;
}

/* libraft's name of state; it has none for RAFT_UNAVAILABLE (and crashes asked for one). */
static const char *raft_state_text(int state)
{
    return state >= RAFT_FOLLOWER && state <= RAFT_LEADER ? raft_state_name(state) : "unavailable";
}

json_t *tandem_bcp_local_json(struct tandem_bcp *b, int64_t wall_now_ms)
{
    struct raft *r = &b->env.raft->raft;
    struct tandem_member leader;
    char as_of[TANDEM_RFC3339_LEN_MAX + 1], seen[TANDEM_RFC3339_LEN_MAX + 1];
    json_t *last = json_null();
    leader_seen(b);
    if (b->leader_seen_ms != 0) {
        uint64_t age = bcp_now(b) - b->leader_seen_ms;
        tandem_rfc3339_format_ms(wall_now_ms - (int64_t)age, seen);
        last = json_pack("{s:s,s:s,s:I}", "name", b->leader_seen_name, "seen", seen, "age_ms",
                         (json_int_t)age);
    }
    tandem_rfc3339_format_ms(wall_now_ms, as_of);
    return json_pack(
        "{s:b,s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:o}", "local", true, "as_of", as_of, "node_state",
        raft_state_text(raft_state(r)), "term", (json_int_t)raft_current_term(r), "commit_index",
        (json_int_t)raft_commit_index(r), "applied_index", (json_int_t)raft_last_applied(r),
        "last_index", (json_int_t)raft_last_index(r), "leader_known",
        tandem_raft_leader(b->env.raft, &leader) == 0, "last_leader", last);
}

/* ---- restart in place ---- */

static void restart_cb(uv_timer_t *timer)
{
    struct tandem_bcp *b = timer->data;
    tandem_assert(b->restart_pending);
    b->env.stop(b->env.data, true);
}

void tandem_bcp_restart(struct tandem_bcp *b, const char *why)
{
    if (b->restart_pending || b->closing) {
        return;
    }
    b->restart_pending = true;
    tandem_log(TANDEM_LOG_WARN, "restarting in place: %s", why);
    int rv = uv_timer_start(&b->restart_timer, restart_cb, TANDEM_BCP_RESTART_DELAY_MS, 0);
    if (rv != 0) {
        char errmsg[TANDEM_ERRMSG_SIZE];
        tandem_error_from_uv(rv, errmsg, "restart timer");
        tandem_log(TANDEM_LOG_ERROR, "%s: restarting at once", errmsg);
        b->env.stop(b->env.data, true);
    }
}

/* The seed's log before raft_recover, for the forced record (consensus/recover.h). A failure
 * costs only the fork points of later divergence reports, never the failover: logged. */
static void seed_history_write(const char *data_dir, const struct tandem_raft_options *o,
                               uint64_t epoch)
{
    char errmsg[TANDEM_ERRMSG_SIZE], scratch[PATH_MAX];
    struct tandem_log_scan scan;
    struct tandem_forced_history *f = calloc(1, sizeof *f);
    snprintf(scratch, sizeof scratch, "%s/.forced-scan", data_dir);
    int rv = f == NULL ? TANDEM_NOMEM : tandem_log_scan_load(o->raft_dir, scratch, &scan, errmsg);
    if (rv == 0) {
        f->epoch = epoch;
        snprintf(f->seed, sizeof f->seed, "%s", o->self->name);
        tandem_term_history_of(&scan, &f->history);
        tandem_log_scan_free(&scan);
        rv = tandem_recover_history_write(data_dir, f, errmsg);
    }
    if (rv != 0) {
        tandem_log(TANDEM_LOG_WARN, "forced failover: the seed's log history is not recorded: %s",
                   f == NULL ? "out of memory" : errmsg);
    }
    free(f);
}

int tandem_bcp_raft_prepare(const char *data_dir, struct tandem_raft_options *o,
                            struct tandem_recover_plan **plan)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    *plan = NULL;
    if (tandem_recover_file_exists(data_dir, TANDEM_JOIN_FILE)) {
        o->join = true; /* re-seeded: never bootstrap, wait to be added */
    }
    struct tandem_recover_plan *p = malloc(sizeof *p);
    if (p == NULL) {
        tandem_log(TANDEM_LOG_ERROR, "out of memory");
        return -1;
    }
    int found = tandem_recover_plan_read(data_dir, p, errmsg);
    if (found < 0) {
        tandem_log(TANDEM_LOG_ERROR, "recover marker %s/%s: %s", data_dir, TANDEM_RECOVER_FILE,
                   errmsg);
        free(p);
        return -1;
    }
    if (found == 0) {
        free(p);
        return 0;
    }
    tandem_log(TANDEM_LOG_WARN,
               "forced failover: raft_recover into %u members at epoch %" PRIu64 " (site %s lost)",
               p->n_members, p->epoch, p->site);
    seed_history_write(data_dir, o, p->epoch);
    o->recover_members = p->members;
    o->n_recover_members = p->n_members;
    *plan = p;
    return 0;
}

int tandem_bcp_raft_started(const char *data_dir, struct tandem_recover_plan *plan)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    int rv = 0;
    if (plan != NULL && tandem_recover_plan_done(data_dir, errmsg) != 0) {
        /* raft_recover must not run twice: refuse to go on rather than risk it. */
        tandem_log(TANDEM_LOG_ERROR, "forced failover: %s", errmsg);
        rv = -1;
    }
    free(plan);
    return rv;
}

/* ---- lifecycle ---- */

/* One of the runtime's handles or clients finished closing. */
static void closed_one(struct tandem_bcp *b)
{
    if (b->closing && b->handles_open == 0 && b->close_cb != NULL) {
        void (*cb)(struct tandem_bcp *) = b->close_cb;
        b->close_cb = NULL;
        cb(b);
    }
}

static void handle_closed_cb(uv_handle_t *handle)
{
    struct tandem_bcp *b = handle->data;
    tandem_assert(b->handles_open > 0);
    b->handles_open--;
    closed_one(b);
}

static void controller_closed_cb(struct tandem_site_controller *c)
{
    struct tandem_bcp *b = c->data;
    tandem_assert(b->handles_open > 0);
    b->handles_open--;
    closed_one(b);
}

/* The fencing epoch lives beside the raft data; absent means the cluster's first epoch. */
static uint64_t epoch_load(const char *data_dir)
{
    char path[PATH_MAX + 16];
    uint64_t epoch = 1;
    snprintf(path, sizeof path, "%s/epoch", data_dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fscanf(f, "%" SCNu64, &epoch) != 1 || epoch == 0) {
            epoch = 1;
        }
        fclose(f);
    }
    return epoch;
}

void tandem_bcp_init(struct tandem_bcp *b, const struct tandem_bcp_env *env)
{
    tandem_assert(env->loop != NULL && env->config != NULL && env->raft != NULL);
    tandem_assert(env->store != NULL && env->proposer != NULL && env->self != NULL);
    tandem_assert(env->stop != NULL);
    memset(b, 0, sizeof *b);
    b->env = *env;
    b->quarantined = true; /* on every start; the raft options start the transport's gate on */
    b->epoch = epoch_load(env->config->data_dir);
    tandem_assert(b->epoch > 0);
}

/* The fenced marker of an earlier process, and a forced failover still to record. */
static void markers_load(struct tandem_bcp *b)
{
    const char *data_dir = b->env.config->data_dir;
    uint64_t fenced_at = tandem_recover_file_u64(data_dir, TANDEM_FENCED_FILE);
    if (fenced_at > b->epoch) {
        b->fenced = true; /* fenced before a restart stays fenced until re-seeded */
        tandem_transport_set_fenced(&b->env.raft->transport, fenced_at);
        tandem_log(TANDEM_LOG_ERROR,
                   "fenced: cluster is at epoch %" PRIu64 ", this node at %" PRIu64, fenced_at,
                   b->epoch);
        b->fenced_logged = true;
    }
    if (tandem_recover_forced_note(data_dir, b->forced_site) == 1) {
        tandem_log(TANDEM_LOG_WARN, "forced failover note: site %s to be recorded as invoked",
                   b->forced_site);
        b->forced_history_set = tandem_recover_history_read(data_dir, &b->forced_history) == 1;
    }
}

static int timers_start(struct tandem_bcp *b, char *errmsg)
{
    int rv = uv_timer_init(b->env.loop, &b->timer);
    if (rv == 0) {
        b->handles_open++;
        rv = uv_timer_init(b->env.loop, &b->restart_timer);
    }
    if (rv == 0) {
        b->handles_open++;
        b->timer.data = b->restart_timer.data = b;
        rv = uv_timer_start(&b->timer, tick_cb, TANDEM_BCP_TICK_MS, TANDEM_BCP_TICK_MS);
    }
    return rv == 0 ? 0 : tandem_error_from_uv(rv, errmsg, "bcp timers");
}

int tandem_bcp_start(struct tandem_bcp *b)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    const struct tandem_config *config = b->env.config;
    tandem_assert(b->handles_open == 0 && !b->closing);
    if (strcmp(config->mode, "sync") != 0 && strcmp(config->mode, "async") != 0) {
        tandem_log(TANDEM_LOG_ERROR, "option mode: '%s' is neither sync nor async", config->mode);
        return -1;
    }
    b->started_ms = uv_now(b->env.loop);
    markers_load(b);
    /* Nothing to protect (a joining node, a sole voter) is let go before the API answers; a
     * node that must wait says so at the first tick, once events are running. */
    quarantine_check(b, false);
    if (b->quarantined) {
        tandem_log(TANDEM_LOG_WARN,
                   "start-up quarantine: neither voting nor campaigning until this node reaches a "
                   "leader of epoch %" PRIu64 " or a node of every non-witness site, or an "
                   "operator runs tandemctl member release %s",
                   b->epoch, b->env.self->name);
    }
    if (tandem_site_controller_init(&b->controller, b->env.loop, &b->env.raft->raft,
                                    config->election_timeout_ms, gather_cb, propose_cb,
                                    controller_log_cb, b) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "site controller: out of memory");
        return -1;
    }
    b->handles_open = 1; /* the controller */
    if (tandem_http_pool_init(&b->clients, b->env.loop, TANDEM_BCP_CLIENTS_MAX,
                              TANDEM_BCP_CLIENT_CONNECTIONS, 0) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "bcp clients: %s", b->clients.errmsg);
        return -1;
    }
    b->clients.data = b;
    b->handles_open++; /* the client pool */
    if (timers_start(b, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s", errmsg);
        return -1;
    }
    tandem_assert(b->handles_open == 4);
    return 0;
}

void tandem_bcp_close(struct tandem_bcp *b, void (*cb)(struct tandem_bcp *b))
{
    for (unsigned i = 0; i < TANDEM_BCP_PEERS_MAX; i++) {
        json_decref(b->peers[i].view);
        b->peers[i].view = NULL;
    }
    b->closing = true;
    b->close_cb = cb;
    uv_close((uv_handle_t *)&b->timer, handle_closed_cb);
    uv_close((uv_handle_t *)&b->restart_timer, handle_closed_cb);
    tandem_site_controller_close(&b->controller, controller_closed_cb);
    tandem_http_pool_close(&b->clients, clients_closed_cb);
}
