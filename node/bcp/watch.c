/* The BCP watch: replicated decisions become events as they are applied, this node's view of
 * sites, failure tolerance and fencing becomes node-local events, and real invokes this node led
 * are followed for their incident reports. */
#include "node/bcp/watch.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "node/log.h"
#include "storage/assert.h"
#include "storage/clock.h"

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* ---- decisions ---- */

const char *tandem_bcp_watch_decision_type(const char *action, const char *by)
{
    /* Invokes and revokes are named by who decided: "auto:east-1" makes auto_invoke. */
    static const char *const kinds[][3] = {{"auto:", "auto_invoke", "auto_revoke"},
                                           {"forced:", "forced_invoke", "forced_revoke"},
                                           {"drill:", "drill_invoke", "drill_revoke"},
                                           {"", "planned_invoke", "planned_revoke"}};
    static const char *const others[][2] = {
        {"recovered", "site_recovered"},     {"register", "site_registered"},
        {"prefer", "preferred_site"},        {"promote", "role_change"},
        {"demote", "role_change"},           {"transfer", "leadership_transfer"},
        {"witness-unreachable", "site_down"}};
    bool invoke = strcmp(action, "invoke") == 0, revoke = strcmp(action, "revoke") == 0;
    for (size_t i = 0; (invoke || revoke) && i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strncmp(by, kinds[i][0], strlen(kinds[i][0])) == 0) {
            return kinds[i][invoke ? 1 : 2];
        }
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        if (strcmp(action, others[i][0]) == 0) {
            return others[i][1];
        }
    }
    return "decision";
}

static uint64_t site_down_since(const struct tandem_bcp_watch *w, const char *site)
{
    for (unsigned i = 0; i < w->n_down; i++) {
        if (strcmp(w->down[i], site) == 0) {
            return w->down_since_ms[i];
        }
    }
    return 0;
}

/* The lag of site when the decision was recorded at at_ms: now if this node still leads, else
 * the last sample it took as the leader, if that is recent enough. */
static void lag_at(struct tandem_bcp_watch *w, const char *site, int64_t at_ms, int64_t *entries,
                   int64_t *ms)
{
    if (tandem_bcp_site_lag(w->bcp, site, entries, ms) == 0) {
        return;
    }
    for (unsigned i = 0; i < w->n_lags; i++) {
        const struct tandem_watch_lag *l = &w->lags[i];
        if (strcmp(l->site, site) == 0 && l->wall_ms >= at_ms - 2 * TANDEM_WATCH_TICK_MS) {
            *entries = l->entries;
            *ms = l->ms;
        }
    }
}

/* While leading: every site's lag now, for lag_at. */
static void lags_sample(struct tandem_bcp_watch *w, int64_t now_wall)
{
    const struct raft_configuration *conf = &w->bcp->env.raft->raft.configuration;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (!w->leading) {
        return;
    }
    w->n_lags = 0;
    for (unsigned i = 0; i < conf->n && w->n_lags < TANDEM_SITES_MAX; i++) {
        struct tandem_member m;
        bool known = false;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        for (unsigned k = 0; k < w->n_lags; k++) {
            known |= strcmp(w->lags[k].site, m.site) == 0;
        }
        struct tandem_watch_lag *l = &w->lags[w->n_lags];
        if (!known && tandem_bcp_site_lag(w->bcp, m.site, &l->entries, &l->ms) == 0) {
            snprintf(l->site, sizeof l->site, "%s", m.site);
            l->wall_ms = now_wall;
            w->n_lags++;
        }
    }
}

static void decision_visit(void *arg, const Tandem__SiteDecisionRecord *d)
{
    struct tandem_bcp_watch *w = arg;
    char message[TANDEM_EVENT_MESSAGE_BYTES_MAX];
    const char *type = tandem_bcp_watch_decision_type(d->action, d->by);
    bool member = d->member[0] != '\0';
    snprintf(message, sizeof message, "%s %s%s%s%s: %s (by %s)", d->action,
             member ? d->member : d->site, member ? " (" : "", member ? d->site : "",
             member ? ")" : "", d->reason, d->by);
    json_t *fields =
        json_pack("{s:b,s:I,s:I,s:s,s:s}", "local", false, "decision_seq", (json_int_t)d->seq,
                  "index", (json_int_t)d->index, "action", d->action, "by", d->by);
    if (fields != NULL && member) {
        json_object_set_new(fields, "member", json_string(d->member));
    }
    if (fields != NULL && (strcmp(d->action, "invoke") == 0 || strcmp(d->action, "revoke") == 0)) {
        json_object_set_new(fields, "jobs_moved", json_integer((json_int_t)d->jobs_moved));
    }
    /* Decisions from before this process started are history: shown, not acted upon. */
    bool fresh = w->seeded && d->at_ms >= w->started_wall_ms;
    tandem_events_decision(w->events, d->seq, d->at_ms, type, d->site, message, fields, fresh);
    json_decref(fields);
    /* The node that proposed the invoke led then: it follows it (exactly one node does). */
    if (fresh && strcmp(d->action, "invoke") == 0 && strncmp(d->by, "drill:", 6) != 0 &&
        d->proposer_id == w->bcp->env.raft->id) {
        int64_t entries = -1, ms = -1;
        lag_at(w, d->site, d->at_ms, &entries, &ms);
        tandem_incidents_invoke(&w->incidents, d, mono_ms(), tandem_wall_ms(),
                                site_down_since(w, d->site), entries, ms);
    }
}

static void decisions_poll(struct tandem_bcp_watch *w)
{
    struct tandem_store *store = w->bcp->env.store;
    MDB_txn *txn;
    if (tandem_store_read_txn(store, &txn) != 0) {
        return; /* the next tick tries again */
    }
    /* The first pass shows the kept history (TANDEM_SITE_DECISIONS_KEPT at most). */
    unsigned limit = w->seeded ? TANDEM_WATCH_DECISIONS_BATCH : TANDEM_SITE_DECISIONS_KEPT;
    if (tandem_sites_decisions_after(store, txn, w->events->decision_seen, limit, decision_visit,
                                     w) != 0) {
        tandem_log(TANDEM_LOG_WARN, "events: decisions: %s", store->errmsg);
    }
    mdb_txn_abort(txn);
    w->seeded = true;
}

/* ---- this node's view ---- */

static void site_down_note(struct tandem_bcp_watch *w, const char *site, bool down, uint64_t now)
{
    unsigned i = 0;
    while (i < w->n_down && strcmp(w->down[i], site) != 0) {
        i++;
    }
    if (down && i == w->n_down && w->n_down < TANDEM_SITES_MAX) {
        snprintf(w->down[w->n_down], sizeof w->down[0], "%s", site);
        w->down_since_ms[w->n_down++] = now;
        tandem_events_emit(w->events, "site_down", site,
                           "no node of site %s answered for site_down_after_ms (%u ms), as %s "
                           "sees it",
                           site, w->bcp->env.config->site_down_after_ms, w->bcp->env.self->name);
    } else if (!down && i < w->n_down) {
        w->n_down--;
        memmove(w->down[i], w->down[w->n_down], sizeof w->down[i]);
        w->down_since_ms[i] = w->down_since_ms[w->n_down];
        tandem_events_emit(w->events, "site_up", site,
                           "a node of site %s answers again, as %s "
                           "sees it",
                           site, w->bcp->env.self->name);
    }
}

/* Sites with no member answering probes, and the voter failures the cluster still survives. */
static void view_check(struct tandem_bcp_watch *w, uint64_t now)
{
    const struct raft_configuration *conf = &w->bcp->env.raft->raft.configuration;
    char sites[TANDEM_SITES_MAX][TANDEM_SITE_LEN_MAX + 1], errmsg[TANDEM_ERRMSG_SIZE];
    bool answering[TANDEM_SITES_MAX] = {false};
    unsigned n_sites = 0, voters = 0, reachable = 0;
    for (unsigned i = 0; i < conf->n; i++) {
        struct tandem_member m;
        if (tandem_member_address_parse(conf->servers[i].address, &m, errmsg) != 0) {
            continue;
        }
        unsigned s = 0;
        while (s < n_sites && strcmp(sites[s], m.site) != 0) {
            s++;
        }
        if (s == n_sites && n_sites < TANDEM_SITES_MAX) {
            snprintf(sites[n_sites++], sizeof sites[0], "%s", m.site);
        }
        bool up = tandem_bcp_reachable(w->bcp, m.name);
        answering[s < TANDEM_SITES_MAX ? s : 0] |= up;
        voters += conf->servers[i].role == RAFT_VOTER ? 1 : 0;
        reachable += conf->servers[i].role == RAFT_VOTER && up ? 1 : 0;
    }
    for (unsigned s = 0; s < n_sites; s++) {
        site_down_note(w, sites[s], !answering[s], now);
    }
    int tolerance = (int)reachable - (int)(voters / 2 + 1);
    tolerance = tolerance < -1 ? -1 : tolerance;
    if (w->tolerance_known && tolerance != w->tolerance) {
        tandem_events_emit(
            w->events,
            tolerance < w->tolerance ? "failure_tolerance_dropped" : "failure_tolerance_recovered",
            NULL,
            "the cluster now survives %d more voter failure%s (was %d): %u of %u "
            "voters answer, as %s sees it",
            tolerance < 0 ? 0 : tolerance, tolerance == 1 ? "" : "s",
            w->tolerance < 0 ? 0 : w->tolerance, reachable, voters, w->bcp->env.self->name);
    }
    w->tolerance = tolerance;
    w->tolerance_known = voters > 0;
}

static void fenced_check(struct tandem_bcp_watch *w)
{
    if (w->bcp->fenced && !w->fenced_seen) {
        w->fenced_seen = true;
        tandem_events_emit(w->events, "fenced", NULL,
                           "%s is fenced: the cluster moved to a newer epoch without it; re-seed "
                           "it with tandemctl member rejoin %s",
                           w->bcp->env.self->name, w->bcp->env.self->name);
    }
}

static void tick_cb(uv_timer_t *timer)
{
    struct tandem_bcp_watch *w = timer->data;
    uint64_t now = mono_ms();
    int64_t now_wall = tandem_wall_ms();
    w->leading = raft_state(&w->bcp->env.raft->raft) == RAFT_LEADER;
    fenced_check(w);
    /* Probes give every peer the benefit of the doubt at first: judge after one down period.
     * Before the decisions: a site seen down by the same rule the controller invokes it by is
     * noted (and told) before its invoke is. */
    if (now - w->started_ms >= w->bcp->env.config->site_down_after_ms) {
        view_check(w, now);
    }
    decisions_poll(w);
    lags_sample(w, now_wall);
    tandem_incidents_tick(&w->incidents, now, now_wall);
}

/* ---- lifecycle ---- */

void tandem_bcp_watch_applied(struct tandem_bcp_watch *w)
{
    if (!w->open || *w->client_commands == w->client_commands_seen) {
        return;
    }
    w->client_commands_seen = *w->client_commands;
    tandem_incidents_write(&w->incidents, mono_ms());
}

int tandem_bcp_watch_start(struct tandem_bcp_watch *w, struct tandem_bcp *b,
                           struct tandem_events *events, const uint64_t *client_commands)
{
    memset(w, 0, sizeof *w);
    w->bcp = b;
    w->events = events;
    w->client_commands = client_commands;
    w->client_commands_seen = *client_commands;
    w->started_ms = mono_ms();
    w->started_wall_ms = tandem_wall_ms();
    tandem_incidents_init(&w->incidents, b);
    int rv = uv_timer_init(b->env.loop, &w->timer);
    w->timer.data = w;
    if (rv == 0) {
        w->open = true;
        rv = uv_timer_start(&w->timer, tick_cb, TANDEM_WATCH_TICK_MS, TANDEM_WATCH_TICK_MS);
        tandem_assert(rv == 0); /* a timer with a callback always starts */
    }
    if (rv != 0) {
        tandem_log(TANDEM_LOG_ERROR, "bcp watch: %s", uv_strerror(rv));
        return -1;
    }
    return 0;
}

static void timer_closed_cb(uv_handle_t *handle)
{
    struct tandem_bcp_watch *w = handle->data;
    w->close_cb(w);
}

void tandem_bcp_watch_close(struct tandem_bcp_watch *w, void (*cb)(struct tandem_bcp_watch *w))
{
    tandem_assert(cb != NULL);
    w->close_cb = cb;
    if (!w->open) {
        cb(w); /* never started */
        return;
    }
    w->open = false;
    uv_close((uv_handle_t *)&w->timer, timer_closed_cb);
}
