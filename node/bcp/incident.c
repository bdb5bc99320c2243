/* Incident reports of real invokes: following the invoke, the write gaps around it, the report
 * and its storing in the replicated history (through this node's API, which forwards to the
 * leader). */
#include "node/bcp/incident.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/bcp/events.h"
#include "node/log.h"
#include "storage/assert.h"
#include "storage/domain_codec.h"

/* ---- client write gaps ---- */

void tandem_incidents_init(struct tandem_incidents *in, struct tandem_bcp *b)
{
    memset(in, 0, sizeof *in);
    in->bcp = b;
    tandem_gap_init(&in->writes, 0, 0);
}

void tandem_incidents_write(struct tandem_incidents *in, uint64_t now_ms)
{
    if (now_ms < in->writes.previous_ms) {
        now_ms = in->writes.previous_ms; /* the same clock, read in another order */
    }
    uint64_t gap = tandem_gap_add(&in->writes, now_ms);
    if (gap >= TANDEM_INCIDENT_GAP_FLOOR_MS) {
        in->gaps[in->gaps_next] = (struct tandem_write_gap){.end_ms = now_ms, .length_ms = gap};
        in->gaps_next = (in->gaps_next + 1) % TANDEM_INCIDENT_GAPS_KEPT;
        in->gaps_count += in->gaps_count < TANDEM_INCIDENT_GAPS_KEPT ? 1 : 0;
    }
    for (unsigned i = 0; i < TANDEM_INCIDENTS_OPEN_MAX; i++) {
        struct tandem_incident *x = &in->open[i];
        if (x->used && x->first_write_ms == 0 && now_ms >= x->decided_ms) {
            x->first_write_ms = now_ms;
        }
    }
}

int64_t tandem_incidents_longest_gap(const struct tandem_incidents *in, uint64_t from_ms,
                                     uint64_t to_ms, uint64_t *end_ms)
{
    int64_t longest = -1;
    for (unsigned k = 0; k < in->gaps_count; k++) {
        const struct tandem_write_gap *g = &in->gaps[k];
        uint64_t start = g->end_ms - g->length_ms;
        uint64_t lo = start > from_ms ? start : from_ms, hi = g->end_ms < to_ms ? g->end_ms : to_ms;
        if (hi > lo && (int64_t)(hi - lo) > longest) {
            longest = (int64_t)(hi - lo);
            *end_ms = g->end_ms;
        }
    }
    return longest;
}

/* ---- following an invoke ---- */

/* The first client write applied at or after from_ms, from the remembered gaps (the invoke is
 * seen a tick after it was decided); 0 when there was none yet. */
static uint64_t first_write_since(const struct tandem_incidents *in, uint64_t from_ms)
{
    if (in->writes.previous_ms < from_ms) {
        return 0;
    }
    for (unsigned k = 0; k < in->gaps_count; k++) {
        const struct tandem_write_gap *g = &in->gaps[k];
        if (g->end_ms - g->length_ms < from_ms && g->end_ms >= from_ms) {
            return g->end_ms; /* the gap open at from_ms ended with that write */
        }
    }
    return from_ms; /* writes within the same ms as from_ms: no gap spans it */
}

static const char *invoke_kind(const char *by)
{
    if (strncmp(by, "auto:", 5) == 0) {
        return "auto";
    }
    if (strncmp(by, "forced:", 7) == 0) {
        return "forced";
    }
    return "planned";
}

void tandem_incidents_invoke(struct tandem_incidents *in, const Tandem__SiteDecisionRecord *d,
                             uint64_t now_ms, int64_t now_wall_ms, uint64_t site_down_ms,
                             int64_t lag_entries, int64_t lag_ms)
{
    struct tandem_incident *x = NULL;
    for (unsigned i = 0; x == NULL && i < TANDEM_INCIDENTS_OPEN_MAX; i++) {
        x = in->open[i].used ? NULL : &in->open[i];
    }
    if (x == NULL) {
        tandem_log(TANDEM_LOG_WARN, "incident report of decision %" PRIu64 " not made: %d open",
                   d->seq, TANDEM_INCIDENTS_OPEN_MAX);
        return;
    }
    memset(x, 0, sizeof *x);
    x->used = true;
    x->decision_seq = d->seq;
    snprintf(x->site, sizeof x->site, "%s", d->site);
    snprintf(x->kind, sizeof x->kind, "%s", invoke_kind(d->by));
    snprintf(x->by, sizeof x->by, "%s", d->by);
    snprintf(x->reason, sizeof x->reason, "%s", d->reason);
    /* Only the node that led when the invoke was decided follows it (node/bcp/watch.c). */
    const struct tandem_member *self = in->bcp->env.self;
    snprintf(x->leader_before, sizeof x->leader_before, "%s", self->name);
    x->leader_was_in_site = strcmp(self->site, x->site) == 0;
    x->decided_wall_ms = d->at_ms;
    int64_t ago = now_wall_ms - d->at_ms;
    x->decided_ms = ago > 0 && (uint64_t)ago < now_ms ? now_ms - (uint64_t)ago : now_ms;
    x->detected_ms = strcmp(x->kind, "auto") == 0 ? site_down_ms : x->decided_ms;
    x->first_write_ms = first_write_since(in, x->decided_ms);
    x->jobs_moved = d->jobs_moved;
    x->lag_entries = lag_entries;
    x->lag_ms = lag_ms;
    tandem_log(TANDEM_LOG_WARN, "incident: %s invoke of site %s (decision %" PRIu64 ") followed",
               x->kind, x->site, x->decision_seq);
}

/* Whether the configuration is committed with no voter in site. */
static bool config_done(struct tandem_bcp *b, const char *site)
{
    const struct raft *r = &b->env.raft->raft;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (r->configuration_uncommitted_index != 0) {
        return false;
    }
    for (unsigned i = 0; i < r->configuration.n; i++) {
        struct tandem_member m;
        if (r->configuration.servers[i].role == RAFT_VOTER &&
            tandem_member_address_parse(r->configuration.servers[i].address, &m, errmsg) == 0 &&
            strcmp(m.site, site) == 0) {
            return false;
        }
    }
    return true;
}

static bool leader_outside(struct tandem_bcp *b, const char *site, char *name, size_t size)
{
    struct tandem_member leader;
    if (tandem_raft_leader(b->env.raft, &leader) != 0 || strcmp(leader.site, site) == 0) {
        return false;
    }
    snprintf(name, size, "%s", leader.name);
    return true;
}

/* ---- the report ---- */

/* RFC 3339 of a monotonic time (0: JSON null), through the wall clock now. */
static json_t *when(uint64_t ms, uint64_t now_ms, int64_t now_wall_ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 1];
    if (ms == 0) {
        return json_null();
    }
    tandem_rfc3339_format(now_wall_ms - (int64_t)(now_ms - ms), text);
    return json_string(text);
}

static json_t *after_decided(const struct tandem_incident *x, uint64_t ms)
{
    return ms == 0 ? json_null() : json_integer((json_int_t)ms - (json_int_t)x->decided_ms);
}

static json_t *timeline_json(const struct tandem_incident *x, uint64_t now, int64_t wall)
{
    char decided[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(x->decided_wall_ms, decided);
    return json_pack("{s:o,s:s,s:o,s:o,s:o,s:{s:o,s:o,s:o,s:o}}", "detected",
                     when(x->detected_ms, now, wall), "decided", decided, "config_committed",
                     when(x->config_ms, now, wall), "leader_moved", when(x->leader_ms, now, wall),
                     "first_write_accepted", when(x->first_write_ms, now, wall), "after_decided_ms",
                     "detected", after_decided(x, x->detected_ms), "config_committed",
                     after_decided(x, x->config_ms), "leader_moved", after_decided(x, x->leader_ms),
                     "first_write_accepted", after_decided(x, x->first_write_ms));
}

static json_t *nullable(int64_t value)
{
    return value < 0 ? json_null() : json_integer((json_int_t)value);
}

/* Where the write gap is looked for: from the decision for a planned or forced invoke (nothing
 * stopped writes before it); for an auto invoke from when the site can have failed: before it
 * was seen down by site_down_after_ms and two election timeouts (a new leader, if the old one
 * was in it). */
static uint64_t window_start(const struct tandem_incidents *in, const struct tandem_incident *x)
{
    const struct tandem_config *c = in->bcp->env.config;
    uint64_t lookback = (uint64_t)c->site_down_after_ms + 2u * c->election_timeout_ms;
    uint64_t seen = x->detected_ms != 0 ? x->detected_ms : x->decided_ms;
    if (strcmp(x->kind, "auto") != 0) {
        return x->decided_ms;
    }
    return seen > lookback ? seen - lookback : 1;
}

static json_t *report_build(struct tandem_incidents *in, const struct tandem_incident *x,
                            uint64_t now, int64_t wall)
{
    uint64_t from = window_start(in, x), end = 0;
    int64_t gap = tandem_incidents_longest_gap(in, from, now, &end);
    char decided[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(x->decided_wall_ms, decided);
    json_t *report = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:b}", "decision_seq",
        (json_int_t)x->decision_seq, "site", x->site, "kind", x->kind, "by", x->by, "reason",
        x->reason, "decided", decided, "decided_ms", (json_int_t)x->decided_wall_ms, "jobs_moved",
        (json_int_t)x->jobs_moved, "leader_before", x->leader_before, "leader_after",
        x->leader_after, "reported_by", in->bcp->env.self->name, "complete", x->complete_ms != 0);
    if (report == NULL) {
        return NULL;
    }
    json_object_set_new(report, "leader_was_in_site", json_boolean(x->leader_was_in_site));
    json_object_set_new(report, "timeline", timeline_json(x, now, wall));
    json_object_set_new(report, "longest_write_gap_ms", nullable(gap));
    json_object_set_new(report, "longest_write_gap_ended",
                        gap < 0 ? json_null() : when(end, now, wall));
    json_object_set_new(report, "write_gap_window",
                        json_pack("{s:o,s:o,s:I}", "from", when(from, now, wall), "to",
                                  when(now, now, wall), "floor_ms",
                                  (json_int_t)TANDEM_INCIDENT_GAP_FLOOR_MS));
    json_object_set_new(report, "lag_at_invoke",
                        json_pack("{s:o,s:o,s:s}", "entries", nullable(x->lag_entries), "ms",
                                  nullable(x->lag_ms), "sampled_by", in->bcp->env.self->name));
    return report;
}

struct post {
    struct tandem_incidents *in;
    struct tandem_incident *x;
};

static void post_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct post *p = data;
    struct tandem_incident *x = p->x;
    struct tandem_bcp *b = p->in->bcp;
    bool ok = status == 0 && (http_status == 200 || http_status == 409);
    if (ok) {
        p->in->stored++;
        tandem_events_emit(b->env.events, "incident_reported", x->site,
                           "incident report of the %s invoke of site %s stored (decision %" PRIu64
                           ")",
                           x->kind, x->site, x->decision_seq);
    } else {
        p->in->failed++;
        tandem_log(TANDEM_LOG_WARN, "incident report of decision %" PRIu64 " not stored: %s %.*s",
                   x->decision_seq, status != 0 ? uv_strerror(status) : "",
                   (int)(len > 200 ? 200 : len), body == NULL ? "" : body);
    }
    memset(x, 0, sizeof *x);
    free(p);
}

static void report_post(struct tandem_incidents *in, struct tandem_incident *x, uint64_t now,
                        int64_t wall)
{
    struct tandem_bcp *b = in->bcp;
    json_t *report = report_build(in, x, now, wall);
    char *text = report == NULL ? NULL : json_dumps(report, JSON_COMPACT);
    struct post *p = text == NULL ? NULL : calloc(1, sizeof *p);
    json_decref(report);
    x->posting = true;
    if (p != NULL) {
        *p = (struct post){.in = in, .x = x};
        if (tandem_bcp_call(b, b->env.self->api, "POST", "/v1/bcp/incidents", NULL, text,
                            TANDEM_INCIDENT_POST_TIMEOUT_MS, post_cb, p) == 0) {
            free(text);
            return;
        }
    }
    in->failed++;
    tandem_log(TANDEM_LOG_WARN, "incident report of decision %" PRIu64 " not stored: %s",
               x->decision_seq, "cannot send it");
    memset(x, 0, sizeof *x);
    free(p);
    free(text);
}

void tandem_incidents_tick(struct tandem_incidents *in, uint64_t now_ms, int64_t now_wall_ms)
{
    for (unsigned i = 0; i < TANDEM_INCIDENTS_OPEN_MAX; i++) {
        struct tandem_incident *x = &in->open[i];
        if (!x->used || x->posting) {
            continue;
        }
        if (x->config_ms == 0 && config_done(in->bcp, x->site)) {
            x->config_ms = now_ms;
        }
        if (x->leader_ms == 0 &&
            leader_outside(in->bcp, x->site, x->leader_after, sizeof x->leader_after)) {
            x->leader_ms = now_ms;
        }
        if (x->complete_ms == 0 && x->config_ms != 0 && x->leader_ms != 0 &&
            x->first_write_ms != 0) {
            x->complete_ms = now_ms;
        }
        bool settled = x->complete_ms != 0 && now_ms - x->complete_ms >= TANDEM_INCIDENT_SETTLE_MS;
        if (settled || now_ms - x->decided_ms >= TANDEM_INCIDENT_WAIT_MS) {
            report_post(in, x, now_ms, now_wall_ms);
        }
    }
}
