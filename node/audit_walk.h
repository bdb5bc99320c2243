/* The periodic walk of the audit chain on the thread pool (its verdict: node/audit_check.h). */
#ifndef TANDEM_NODE_AUDIT_WALK_H
#define TANDEM_NODE_AUDIT_WALK_H

struct tandem_node;

/* Once per loop turn (node.c): starts a walk when TANDEM_AUDIT_CHECK_INTERVAL_MS have passed
 * since the last one started (at once after start) and none is running. */
void tandem_audit_check_tick(struct tandem_node *node);

#endif
