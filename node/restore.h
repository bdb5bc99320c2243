/* A restored data directory at tandemd's start (issue 14): its cluster id checked against the
 * configuration, and raft seeded at the backup's index (consensus/seed.h) on the first start. */
#ifndef TANDEM_NODE_RESTORE_H
#define TANDEM_NODE_RESTORE_H

#include "consensus/member.h"
#include "node/config.h"
#include "storage/store.h"

/* Runs after the state store (store, open) opened and before raft starts. Refuses (logged, -1) a
 * data directory that belongs to another cluster id than c->cluster_id, or a restore marker for
 * another node name; with a marker, seeds DATA_DIR/raft from the state (the members of the
 * configuration, or this node alone as a voter) and removes the marker. Returns 0 or -1. */
int tandem_node_restore_start(struct tandem_store *store, const struct tandem_member *self,
                              const struct tandem_config *c);

#endif
