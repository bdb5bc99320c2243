/* The BCP watch: turns what this node sees into BCP events (node/bcp/events.h) - the replicated
 * decisions as they are applied, and its own view: sites down and up, failure tolerance,
 * fencing - and follows the real invokes it led for their incident reports. */
#ifndef TANDEM_NODE_BCP_WATCH_H
#define TANDEM_NODE_BCP_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node/bcp/events.h"
#include "node/bcp/incident.h"
#include "node/bcp/runtime.h"

#define TANDEM_WATCH_TICK_MS         50
#define TANDEM_WATCH_DECISIONS_BATCH 64 /* decisions turned into events per tick */

struct tandem_bcp_watch {
    struct tandem_bcp *bcp;          /* borrowed */
    struct tandem_events *events;    /* borrowed */
    const uint64_t *client_commands; /* borrowed: the FSM's count of applied client commands */
    struct tandem_incidents incidents;
    uv_timer_t timer;
    bool open, seeded, fenced_seen, leading, tolerance_known;
    uint64_t started_ms, client_commands_seen;
    int64_t started_wall_ms;
    int tolerance; /* voter failures the configuration survives, as this node sees it */
    /* Each site's replication lag, sampled every tick while this node leads: a planned invoke
     * of the leader's site moves leadership away before the decision is seen here. */
    struct tandem_watch_lag {
        char site[TANDEM_SITE_LEN_MAX + 1];
        int64_t entries, ms; /* -1 unknown */
        int64_t wall_ms;     /* when sampled */
    } lags[TANDEM_SITES_MAX];
    unsigned n_lags;
    char down[TANDEM_SITES_MAX][TANDEM_SITE_LEN_MAX + 1];
    uint64_t down_since_ms[TANDEM_SITES_MAX];
    unsigned n_down;
    void (*close_cb)(struct tandem_bcp_watch *w);
};

/* Starts the watch (its timer). Returns 0 or -1 (logged). */
int tandem_bcp_watch_start(struct tandem_bcp_watch *w, struct tandem_bcp *b,
                           struct tandem_events *events, const uint64_t *client_commands);
/* After every applied entry: notes the time of client writes for the write-gap measure. */
void tandem_bcp_watch_applied(struct tandem_bcp_watch *w);
void tandem_bcp_watch_close(struct tandem_bcp_watch *w, void (*cb)(struct tandem_bcp_watch *w));

/* The event type of a decision record ("auto_invoke", "planned_revoke", "role_change"...). */
const char *tandem_bcp_watch_decision_type(const char *action, const char *by);

#endif
