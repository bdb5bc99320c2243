/* Restore (issue 14): the marker `tandemctl backup restore` leaves in a data directory, and the
 * raft seeding tandemd does on its next start so that raft begins at the restored index: the raft
 * directory gets the term and one snapshot at that index holding the new configuration and the
 * state, so the log continues after it and a member added later receives the snapshot (never an
 * empty log replayed onto nothing). */
#ifndef TANDEM_CONSENSUS_SEED_H
#define TANDEM_CONSENSUS_SEED_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/member.h"
#include "storage/error.h"

/* Files in the data directory (beside raft/ and state/, see consensus/recover.h). */
#define TANDEM_RESTORE_FILE    "restored"   /* next start: seed raft/ from state/ */
#define TANDEM_CLUSTER_ID_FILE "cluster-id" /* the cluster id the directory belongs to */
#define TANDEM_SEED_DIR        "raft.seed"  /* raft/ while it is being seeded */

#define TANDEM_RESTORE_DIGEST_HEX 64 /* a SHA-256 in hex */

/* What the restore marker says. */
struct tandem_restore_note {
    char name[TANDEM_NAME_LEN_MAX + 1];             /* the node the data is for */
    char cluster_id[TANDEM_CLUSTER_ID_LEN_MAX + 1]; /* the cluster it starts */
    uint64_t index, term, epoch;                    /* of the backup's manifest */
    char backup[256];                               /* the backup file's name, for the log */
    /* The manifest's state digest in hex (GET /v1/digest's state_digest at index); the first
     * start checks the restored state against it. Empty in a marker without the line. */
    char state_digest[TANDEM_RESTORE_DIGEST_HEX + 1];
};

/* Writes the marker atomically. Returns 0 or a tandem code with errmsg filled. */
int tandem_restore_note_write(const char *data_dir, const struct tandem_restore_note *note,
                              char *errmsg);
/* 1 with *note filled when the marker exists, 0 when absent, -1 (errmsg) when corrupt. */
int tandem_restore_note_read(const char *data_dir, struct tandem_restore_note *note, char *errmsg);

/* The cluster id recorded in DATA_DIR/cluster-id into out (TANDEM_CLUSTER_ID_LEN_MAX + 1):
 * 1 when recorded, 0 when absent, -1 when unreadable or malformed. */
int tandem_cluster_id_read(const char *data_dir, char *out);
int tandem_cluster_id_write(const char *data_dir, const char *cluster_id, char *errmsg);

/* Seeds raft_dir, which must not exist yet: builds it as DATA_DIR/raft.seed with raft_uv (the term
 * `term`, then a snapshot at (term, index) holding members as the configuration and
 * snapshot/snapshot_len as its data, the FSM's snapshot format), then renames it to raft_dir.
 * self is this node (its raft id). Runs its own loop to completion; call it before raft starts.
 * Returns 0 or a tandem code with errmsg filled (raft.seed is removed again). */
int tandem_raft_seed(const char *data_dir, const char *raft_dir, const struct tandem_member *self,
                     const struct tandem_member *members, unsigned n_members, uint64_t term,
                     uint64_t index, void *snapshot, size_t snapshot_len, char *errmsg);

#endif
