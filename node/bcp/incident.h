/* Incident reports of real invokes (auto, planned, forced): the node that led when the invoke
 * was decided follows it (configuration committed, leadership moved, first client write), measures
 * the longest client write gap around it and stores the report in the replicated history. */
#ifndef TANDEM_NODE_BCP_INCIDENT_H
#define TANDEM_NODE_BCP_INCIDENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/bcp/gap.h"
#include "node/bcp/runtime.h"
#include "replication/bcp/sites.h"

#define TANDEM_INCIDENTS_OPEN_MAX       4     /* invokes followed at once */
#define TANDEM_INCIDENT_GAPS_KEPT       16384 /* recent write gaps remembered (256 KiB) */
#define TANDEM_INCIDENT_GAP_FLOOR_MS    1     /* writes within the same ms leave no gap */
#define TANDEM_INCIDENT_SETTLE_MS       1000  /* after the last timeline point, before reporting */
#define TANDEM_INCIDENT_WAIT_MS         30000 /* report with what is known by then */
#define TANDEM_INCIDENT_POST_TIMEOUT_MS 10000

/* One remembered write gap: [end_ms - length_ms, end_ms] on the node's monotonic clock. */
struct tandem_write_gap {
    uint64_t end_ms, length_ms;
};

/* The invoke being followed. Times are this node's monotonic milliseconds (0: not yet). */
struct tandem_incident {
    bool used, posting;
    bool leader_was_in_site; /* when decided: leadership had to leave the site */
    uint64_t decision_seq;
    char site[TANDEM_SITE_LEN_MAX + 1];
    char kind[TANDEM_INCIDENT_KIND_LEN_MAX + 1];
    char by[TANDEM_SITE_BY_LEN_MAX + 1];
    char reason[TANDEM_SITE_REASON_LEN_MAX + 1];
    char leader_before[TANDEM_NAME_LEN_MAX + 1];
    char leader_after[TANDEM_NAME_LEN_MAX + 1];
    int64_t decided_wall_ms;
    int64_t jobs_moved;
    int64_t lag_entries, lag_ms; /* -1: unknown */
    uint64_t detected_ms, decided_ms, config_ms, leader_ms, first_write_ms, complete_ms;
};

struct tandem_incidents {
    struct tandem_bcp *bcp; /* borrowed */
    struct tandem_incident open[TANDEM_INCIDENTS_OPEN_MAX];
    struct tandem_gap writes; /* the running measure of applied client writes */
    struct tandem_write_gap gaps[TANDEM_INCIDENT_GAPS_KEPT];
    unsigned gaps_next, gaps_count;
    uint64_t stored, failed; /* reports stored, reports that could not be */
};

void tandem_incidents_init(struct tandem_incidents *in, struct tandem_bcp *b);
/* A client write was applied at now_ms (monotonic). */
void tandem_incidents_write(struct tandem_incidents *in, uint64_t now_ms);
/* An invoke decision this node led for (d borrowed), seen at now_ms: starts following it (this
 * node is the leader before it in the report).
 * site_down_ms: when this node saw the site go down (0: it did not). */
void tandem_incidents_invoke(struct tandem_incidents *in, const Tandem__SiteDecisionRecord *d,
                             uint64_t now_ms, int64_t now_wall_ms, uint64_t site_down_ms,
                             int64_t lag_entries, int64_t lag_ms);
/* Each tick: timeline points, and the report of an incident that settled. */
void tandem_incidents_tick(struct tandem_incidents *in, uint64_t now_ms, int64_t now_wall_ms);

/* The longest part inside [from_ms, to_ms] of a remembered gap; -1 when none overlaps it (no
 * client write there, or all of them within the same ms). */
int64_t tandem_incidents_longest_gap(const struct tandem_incidents *in, uint64_t from_ms,
                                     uint64_t to_ms, uint64_t *end_ms);

#endif
