/* Forced failover, run at a surviving node when quorum is lost (node/bcp/force.c). */
#ifndef TANDEM_NODE_BCP_FORCE_H
#define TANDEM_NODE_BCP_FORCE_H

#include "node/bcp/reply.h"
#include "node/bcp/runtime.h"

/* Refuses while a leader exists or a node of `site` answers; otherwise raft_recovers the
 * survivor with the longest log into a configuration of the survivors at a new fencing epoch,
 * re-seeds the other survivors, answers reply with the report and restarts this node if it is
 * a survivor. */
void tandem_bcp_force_invoke(struct tandem_bcp *b, const struct tandem_bcp_reply *reply,
                             const char *site, const char *reason);

#endif
