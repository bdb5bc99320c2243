/* BCP drills: on the node that receives the request, a probe writer through nodes of both sites,
 * a planned invoke and takeover, digest parity, a revoke with failback, and a report of RTO and
 * RPO stored in the replicated drill history. */
#ifndef TANDEM_NODE_BCP_DRILL_H
#define TANDEM_NODE_BCP_DRILL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/bcp/reply.h"
#include "node/bcp/runtime.h"
#include "storage/sm.h"

#define TANDEM_DRILL_RATE_DEFAULT      50 /* probe writes per second */
#define TANDEM_DRILL_RATE_MAX          500
#define TANDEM_DRILL_PROBES_MAX        10000 /* probe writes in one drill; the writer stops here */
#define TANDEM_DRILL_INFLIGHT_MAX      64    /* probe writes outstanding at once */
#define TANDEM_DRILL_WRITE_TIMEOUT_MS  5000
#define TANDEM_DRILL_LAG_ENTRIES_MAX   1000 /* preflight: replication lag allowed per site */
#define TANDEM_DRILL_SETTLE_MS         1000 /* probing before invoke, in invoked state, after revoke */
#define TANDEM_DRILL_STEP_TIMEOUT_MS   30000 /* takeover or failback must complete within this */
#define TANDEM_DRILL_DIGEST_TIMEOUT_MS 10000 /* live nodes must reach the same applied index */
#define TANDEM_DRILL_TIMELINE_MAX      64
#define TANDEM_DRILL_REASON_LEN_MAX    200 /* the operator's reason; the decision adds the id */
/* The report's probe latency series (the console's chart, issue 15): probes grouped by the time
 * they were sent into at most this many buckets of at least TANDEM_DRILL_LATENCY_BUCKET_MS_MIN. */
#define TANDEM_DRILL_LATENCY_POINTS_MAX    240
#define TANDEM_DRILL_LATENCY_BUCKET_MS_MIN 20

/* A drill's steps, in the order a drill that goes well takes them. A failure after the invoke
 * still revokes; any other failure drains the probe writer and stores the report. */
enum tandem_drill_step {
    TANDEM_DRILL_PREFLIGHT,
    TANDEM_DRILL_WARMUP,
    TANDEM_DRILL_INVOKE,
    TANDEM_DRILL_TAKEOVER,
    TANDEM_DRILL_DIGEST_AFTER_INVOKE,
    TANDEM_DRILL_HOLD,
    TANDEM_DRILL_REVOKE,
    TANDEM_DRILL_FAILBACK,
    TANDEM_DRILL_COOLDOWN,
    TANDEM_DRILL_DRAIN,
    TANDEM_DRILL_DIGEST_AFTER_REVOKE,
    TANDEM_DRILL_VERIFY,
    TANDEM_DRILL_STORE,
    TANDEM_DRILL_DONE,
    TANDEM_DRILL_STEPS,
};

/* The drill's step machine (storage/sm.h): names, allowed moves, where a drill may end. */
extern const struct tandem_sm_conf tandem_drill_sm_conf[TANDEM_DRILL_STEPS];

/* A span of loop time in ms, [from, to). */
struct tandem_drill_span {
    uint64_t from, to;
};

/* The drill's write gap: the longest time between two consecutive acknowledgements among the n
 * times in acks (sorted in place) whose gap meets `within` (a switchover: from the change sent
 * until it completed), leaving out the time inside `pause`, the drill's own digest pause (none
 * when pause.to <= pause.from). A probe sent before the pause and acknowledged inside it does
 * not turn the pause into a gap. */
/* A probe write as the series sees it: sent and acknowledged at these loop times, ok when the
 * write was acknowledged (HTTP 200). */
struct tandem_drill_probe_sample {
    uint64_t sent_ms, ack_ms;
    bool ok;
};

/* The latency series of n probes of a drill started at started_ms (loop time): {"bucket_ms",
 * "points": [[t_ms, max_latency_ms or null, acked, failed], ...]}, a point per bucket that holds
 * a probe, t_ms the bucket's start after started_ms. NULL when out of memory. */
json_t *tandem_drill_latency_series(const struct tandem_drill_probe_sample *probes, unsigned n,
                                    uint64_t started_ms, uint64_t now_ms);

uint64_t tandem_drill_longest_gap(uint64_t *acks, unsigned n, struct tandem_drill_span within,
                                  struct tandem_drill_span pause);

/* Answers reply with what a site change would do now, without doing it (the dry runs of invoke,
 * revoke and drill), from the site controller's own planner: {"role_changes": [{"member","site",
 * "from","to"}], "leader", "leadership_moves", "jobs_moved" (invoke) or "jobs_returned"
 * (revoke): n, "jobs": [ids] (null when they could not be read)} with the fields of extra
 * (taken; NULL for none) added. invoke: the site invoked, its leadership and open work leave.
 * Revoke: the roles once the site is active again; with failback leadership comes back and, with
 * failback or return_jobs, the jobs BCP moved away that are still queued. The jobs are read on
 * the thread pool (b->env.pool_reads; here when NULL), so the answer may come on a later loop
 * turn; 503 when too many such reads are in flight, 500 when the site table cannot be read. */
void tandem_bcp_change_preview(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                               const char *site, bool invoke, bool failback, bool return_jobs,
                               json_t *extra);

/* Runs a drill for body {"site", "dry_run"?, "rate"?} and answers reply with its report (or,
 * dry, with the plan). One drill per node at a time (409 otherwise). */
void tandem_bcp_drill_start(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                            json_t *body);

#endif
