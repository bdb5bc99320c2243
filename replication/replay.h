/* Point-in-time restore (issue 14): replays a kept raft log on top of a restored backup's state
 * up to a chosen index, and proves with the apply digest chain that the log is the backup's own
 * history and that every replayed entry was committed. */
#ifndef TANDEM_REPLICATION_REPLAY_H
#define TANDEM_REPLICATION_REPLAY_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/error.h"
#include "storage/store.h"

/* Where to stop, and the proof the log is checked against: the applied index and apply digest
 * of the node whose log it is (its state/). What a node applied was committed, so no index past
 * proof_index is replayed; and the digest chain from the backup's state through the log's
 * commands must arrive at proof_digest, else the log is another history (another cluster, a
 * fork, a damaged file) and nothing is kept. */
struct tandem_replay_plan {
    uint64_t to_index;
    uint64_t proof_index;
    uint8_t proof_digest[TANDEM_DIGEST_LEN];
};

struct tandem_replay_result {
    uint64_t backup_index;    /* the store's applied index before the replay */
    uint64_t state_index;     /* the last command at or before to_index: the new applied index */
    uint64_t state_term;      /* that entry's term; 0 when nothing was replayed */
    uint64_t entries_applied; /* command entries applied */
};

/* Checks the chain from the store's apply digest through the log's commands (entries[0] is
 * first_index, n entries) on to plan->proof_index, then applies the commands (store's index,
 * plan->to_index] to store through the state machine and commits. Refused before anything is
 * applied: TANDEM_INVALID when to_index is before the store's index or past proof_index;
 * TANDEM_NOTFOUND when the log does not hold every entry from the store's index + 1 to
 * proof_index; TANDEM_CORRUPT when the chain does not arrive at proof_digest. A failed apply
 * leaves replayed entries in the store: the caller discards it.
 * Returns 0 with *out filled, or a tandem code with errmsg (TANDEM_ERRMSG_SIZE). */
int tandem_replay(struct tandem_store *store, const struct raft_entry *entries,
                  uint64_t first_index, size_t n, const struct tandem_replay_plan *plan,
                  struct tandem_replay_result *out, char *errmsg);

#endif
