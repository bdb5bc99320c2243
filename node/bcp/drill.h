/* BCP drills: on the node that receives the request, a probe writer through nodes of both sites,
 * a planned invoke and takeover, digest parity, a revoke with failback, and a report of RTO and
 * RPO stored in the replicated drill history. */
#ifndef TANDEM_NODE_BCP_DRILL_H
#define TANDEM_NODE_BCP_DRILL_H

#include <jansson.h>

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

struct tandem_node;
struct tandem_http_request;

/* Runs a drill for body {"site", "dry_run"?, "rate"?} and answers r with its report (or, dry,
 * with the plan). One drill per node at a time (409 otherwise). */
void tandem_bcp_drill_start(struct tandem_node *node, struct tandem_http_request *r, json_t *body);

#endif
