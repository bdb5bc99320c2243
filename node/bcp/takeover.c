/* Planned invoke and revoke as their requester sees them: completion checks, the wait for the
 * takeover or failback before answering, and the relay to the leader. */
#include "node/bcp/takeover.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/forward.h"
#include "replication/bcp/sites.h"
#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

bool tandem_bcp_invoke_done(struct tandem_bcp *b, const char *site)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    struct tandem_member leader, m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_raft_leader(b->env.raft, &leader) != 0 || strcmp(leader.site, site) == 0) {
        return false;
    }
    for (unsigned i = 0; i < conf->n; i++) {
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) == 0 &&
            strcmp(m.site, site) == 0 && conf->servers[i].role == RAFT_VOTER) {
            return false;
        }
    }
    return true;
}

bool tandem_bcp_revoke_done(struct tandem_bcp *b, const struct tandem_site_table *t,
                            const char *site, bool failback)
{
    const struct tandem_site *s = tandem_site_table_find(t, site);
    struct tandem_member leader;
    if (s == NULL || s->state != TANDEM_SITE_ACTIVE) {
        return false;
    }
    return !failback ||
           (tandem_raft_leader(b->env.raft, &leader) == 0 && strcmp(leader.site, site) == 0);
}

/* ---- before a planned invoke ---- */

struct invoke_check {
    unsigned voters_left, reachable_left, voters_elsewhere_active;
};

/* Counts what remains after the site's voters step down. */
static void invoke_count(struct tandem_bcp *b, const struct tandem_site_table *t, const char *site,
                         struct invoke_check *out)
{
    const struct raft_configuration *conf = &b->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (conf->servers[i].role != RAFT_VOTER ||
            tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0 ||
            strcmp(m.site, site) == 0) {
            continue;
        }
        const struct tandem_site *s = tandem_site_table_find(t, m.site);
        out->voters_left++;
        out->reachable_left += tandem_bcp_reachable(b, m.name) ? 1 : 0;
        if (s != NULL && s->state == TANDEM_SITE_ACTIVE && !s->witness) {
            out->voters_elsewhere_active++;
        }
    }
}

#define DRILL_BY_PREFIX "drill:" /* the "by" of a drill's invoke and revoke (node/bcp/drill.c) */

/* A site other than `except` that a drill has taken out of service (invoked, or recovering on
 * its way back), or NULL. */
static const struct tandem_site *drill_holding(const struct tandem_site_table *t,
                                               const char *except)
{
    for (unsigned i = 0; i < t->n_sites; i++) {
        const struct tandem_site *s = &t->sites[i];
        if (strcmp(s->name, except) != 0 && s->state != TANDEM_SITE_ACTIVE &&
            strncmp(s->by, DRILL_BY_PREFIX, strlen(DRILL_BY_PREFIX)) == 0) {
            return s;
        }
    }
    return NULL;
}

/* 409: site is already invoked, by a drill (named, with the way out) or by someone else. */
static void refuse_invoked(const struct tandem_site *s, const struct tandem_bcp_reply *reply)
{
    char since[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format_ms(s->since_ms, since);
    if (strncmp(s->by, DRILL_BY_PREFIX, strlen(DRILL_BY_PREFIX)) == 0) {
        tandem_bcp_reply_error(reply, 409,
                               "site %s is held by drill %s (since %s): wait for the drill to "
                               "end, it revokes the site itself (tandemctl bcp drills shows its "
                               "report)",
                               s->name, s->by + strlen(DRILL_BY_PREFIX), since);
    } else {
        tandem_bcp_reply_error(reply, 409, "site %s is already invoked (since %s, by %s)", s->name,
                               since, s->by);
    }
}

int tandem_bcp_invoke_precheck(struct tandem_bcp *b, const struct tandem_site_table *t,
                               const char *site, const struct tandem_bcp_reply *reply)
{
    const struct tandem_site *s = tandem_site_table_find(t, site);
    struct invoke_check check;
    if (s == NULL) {
        tandem_bcp_reply_error(reply, 404, "no site named %s in the site table", site);
        return -1;
    }
    if (s->witness) {
        tandem_bcp_reply_error(reply, 409, "site %s is a witness: it holds no work to take over",
                               site);
        return -1;
    }
    if (s->state == TANDEM_SITE_INVOKED) {
        refuse_invoked(s, reply);
        return -1;
    }
    invoke_count(b, t, site, &check);
    const struct tandem_site *drilled = drill_holding(t, site);
    if (check.voters_elsewhere_active == 0 && drilled != NULL) {
        char since[TANDEM_RFC3339_LEN_MAX + 1];
        tandem_rfc3339_format_ms(drilled->since_ms, since);
        tandem_bcp_reply_error(reply, 409,
                               "site %s is held by drill %s (%s since %s), so no other site can "
                               "take over from %s: wait for the drill to end, it revokes %s "
                               "itself (tandemctl bcp drills shows its report)",
                               drilled->name, drilled->by + strlen(DRILL_BY_PREFIX),
                               tandem_site_state_name(drilled->state), since, site, drilled->name);
        return -1;
    }
    if (check.voters_elsewhere_active == 0) {
        bool async = strcmp(b->env.config->mode, "async") == 0;
        tandem_bcp_reply_error(reply, 409,
                               "no voter in another active site could take over from %s%s", site,
                               async ? " (mode async: the DR site holds standbys only; once the "
                                       "primary is lost, use bcp invoke --force)"
                                     : "");
        return -1;
    }
    if (check.reachable_left * 2 <= check.voters_left) {
        tandem_bcp_reply_error(reply, 409,
                               "after %s steps down only %u of %u remaining voters answer: the "
                               "cluster would lose its quorum",
                               site, check.reachable_left, check.voters_left);
        return -1;
    }
    return 0;
}

/* ---- waiting for a takeover or a failback ---- */

struct waiter {
    uv_timer_t timer;
    struct tandem_bcp *bcp;        /* borrowed */
    struct tandem_bcp_reply reply; /* answered once, then the timer closes */
    enum tandem_bcp_wait_kind kind;
    bool failback;
    char site[TANDEM_SITE_LEN_MAX + 1];
    uint64_t started_ms, deadline_ms;
    json_int_t jobs_moved; /* from the applied change: returned to the site by a revoke */
};

static void waiter_closed_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void waiter_answer(struct waiter *w, const struct tandem_site_table *t, bool complete)
{
    const struct tandem_site *s = tandem_site_table_find(t, w->site);
    json_t *body = json_pack(
        "{s:o,s:o,s:b,s:I,s:I}", "site", s == NULL ? json_null() : tandem_site_json(s), "leader",
        tandem_bcp_leader_json(w->bcp), "complete", complete, "elapsed_ms",
        (json_int_t)(uv_now(w->bcp->env.loop) - w->started_ms),
        w->kind == TANDEM_BCP_WAIT_REVOKE ? "jobs_returned" : "jobs_moved", w->jobs_moved);
    if (!complete && body != NULL) {
        json_object_set_new(body, "note",
                            json_string(w->kind == TANDEM_BCP_WAIT_INVOKE
                                            ? "invoke recorded; the site controller is still "
                                              "moving roles (see bcp status)"
                                            : "revoke recorded; the site's nodes are still "
                                              "catching up (see bcp status)"));
    }
    tandem_bcp_reply_json(&w->reply, complete ? 200 : 202, body);
    uv_close((uv_handle_t *)&w->timer, waiter_closed_cb);
}

static void waiter_poll(uv_timer_t *timer)
{
    struct waiter *w = timer->data;
    struct tandem_site_table *t = tandem_bcp_table_load(w->bcp);
    if (t == NULL) {
        uv_timer_stop(timer);
        tandem_bcp_reply_error(&w->reply, 500, "site table unreadable: %s",
                               w->bcp->env.store->errmsg);
        uv_close((uv_handle_t *)&w->timer, waiter_closed_cb);
        return;
    }
    bool done = w->kind == TANDEM_BCP_WAIT_INVOKE
                    ? tandem_bcp_invoke_done(w->bcp, w->site)
                    : tandem_bcp_revoke_done(w->bcp, t, w->site, w->failback);
    if (done || w->bcp->closing || uv_now(w->bcp->env.loop) >= w->deadline_ms) {
        uv_timer_stop(timer);
        waiter_answer(w, t, done);
    }
    free(t);
}

void tandem_bcp_wait_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                           enum tandem_bcp_wait_kind kind, const char *site, bool failback,
                           unsigned wait_ms, json_int_t jobs_moved)
{
    tandem_assert(kind == TANDEM_BCP_WAIT_INVOKE || kind == TANDEM_BCP_WAIT_REVOKE);
    tandem_assert(wait_ms > 0);
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL) {
        tandem_bcp_reply_error(reply, 500, "out of memory (the change was applied)");
        return;
    }
    *w = (struct waiter){
        .bcp = b, .reply = *reply, .kind = kind, .failback = failback, .jobs_moved = jobs_moved};
    snprintf(w->site, sizeof w->site, "%s", site);
    w->started_ms = uv_now(b->env.loop);
    w->deadline_ms = w->started_ms + wait_ms;
    int rv = uv_timer_init(b->env.loop, &w->timer);
    if (rv != 0) {
        tandem_bcp_reply_error(reply, 500, "%s (the change was applied)", uv_strerror(rv));
        free(w);
        return;
    }
    w->timer.data = w;
    rv = uv_timer_start(&w->timer, waiter_poll, 0, TANDEM_BCP_WAIT_POLL_MS);
    if (rv != 0) {
        tandem_bcp_reply_error(reply, 500, "%s (the change was applied)", uv_strerror(rv));
        uv_close((uv_handle_t *)&w->timer, waiter_closed_cb);
    }
}

/* ---- relay to the leader ---- */

struct relay {
    struct tandem_bcp_reply reply;
};

static void relay_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct relay *relay = data;
    if (status != 0) {
        tandem_bcp_reply_error(&relay->reply, 503,
                               "relaying to the leader failed: %s (the change may have been "
                               "applied: see bcp status)",
                               uv_strerror(status));
    } else if (http_status < 100 || http_status > 599) {
        /* http_parser passes any three digits; the answer is ours to vouch for. */
        tandem_bcp_reply_error(&relay->reply, 502,
                               "the leader answered with HTTP status %d (the change may have been "
                               "applied: see bcp status)",
                               http_status);
    } else {
        tandem_bcp_reply_text(&relay->reply, http_status, NULL, body, len);
    }
    free(relay);
}

/* Invoke and revoke move leadership themselves: the general forwarder retires its client to an
 * old leader and cancels what is in flight there, which would turn a successful invoke into a
 * 503 (and a client's retry into a 409). They go to the leader over a bcp client instead. */
void tandem_bcp_relay_to_leader(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                                const char *url, const char *body, bool forwarded)
{
    struct tandem_member leader;
    char headers[128];
    if (b->fenced) {
        tandem_bcp_reply_error(reply, 503,
                               "this node is fenced: re-seed it with tandemctl member rejoin");
        return;
    }
    if (tandem_raft_leader(b->env.raft, &leader) != 0 || forwarded) {
        tandem_bcp_reply_text(reply, 503, "Retry-After: 1\r\n", TANDEM_NO_LEADER_JSON,
                              sizeof TANDEM_NO_LEADER_JSON - 1);
        return;
    }
    struct relay *relay = calloc(1, sizeof *relay);
    if (relay == NULL) {
        tandem_bcp_reply_error(reply, 500, "out of memory");
        return;
    }
    relay->reply = *reply;
    snprintf(headers, sizeof headers, "%s: %s\r\n", TANDEM_FORWARDED_HEADER, b->env.self->name);
    int rv = tandem_bcp_call(b, leader.api, "POST", url, headers, body,
                             b->env.config->forward_timeout_ms, relay_cb, relay);
    if (rv != 0) {
        free(relay);
        tandem_bcp_reply_error(reply, 503, "cannot reach the leader %s: %s", leader.name,
                               uv_strerror(rv));
    }
}
