/* Snapshots of a large state kept as files beside the store, with raft carrying only a
 * reference to one (issue 17).
 *
 * libraft 0.22 holds a snapshot in memory whole: raft_uv reads its file with one read (capped
 * just under 2 GiB) and loads it again for every InstallSnapshot it sends. A state past
 * snapshot_inline_mib is therefore written by the thread pool to DATA/snapshots/ as a file in
 * the snapshot format (storage/store.h), and the bytes raft stores, sends and restores are a
 * 64-byte reference: the state's applied index, the file's length and its header checksum
 * (which covers every byte of the file, so a file fetched from anywhere is the one the
 * reference names or is refused). A follower told to install a reference fetches the file from
 * the sender over the node-to-node HTTPS channel (GET /v1/node/snapshots/NAME) on the thread
 * pool, and builds the state from its mapped pages. A node keeps the files of its newest
 * TANDEM_SNAPSHOT_FILES_KEPT references: raft_uv keeps its two newest snapshots. */
#ifndef TANDEM_REPLICATION_SNAPSHOT_FILE_H
#define TANDEM_REPLICATION_SNAPSHOT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/error.h"
#include "storage/store.h"

#define TANDEM_SNAPSHOT_REF_MAGIC   "TANDEMSR"
#define TANDEM_SNAPSHOT_REF_FORMAT  1
#define TANDEM_SNAPSHOT_REF_LEN     64
#define TANDEM_SNAPSHOT_FILES_KEPT  2
#define TANDEM_SNAPSHOT_FILE_PREFIX "state-"
#define TANDEM_SNAPSHOT_FILE_SUFFIX ".snap"
/* "state-" 20 digits "-" 16 hex ".snap" and NUL */
#define TANDEM_SNAPSHOT_FILE_NAME_SIZE 64

struct tandem_snapshot_ref {
    uint64_t index;                      /* the state's applied index */
    uint64_t len;                        /* the file's bytes */
    uint8_t checksum[TANDEM_DIGEST_LEN]; /* the file's header checksum */
};

void tandem_snapshot_ref_encode(const struct tandem_snapshot_ref *ref,
                                uint8_t out[TANDEM_SNAPSHOT_REF_LEN]);
/* 1 with *out filled when buf is a reference; 0 when it is something else (an inline snapshot);
 * TANDEM_CORRUPT with errmsg (TANDEM_ERRMSG_SIZE) when it starts like one but is malformed. */
int tandem_snapshot_ref_decode(const void *buf, size_t len, struct tandem_snapshot_ref *out,
                               char *errmsg);
/* The file's name: TANDEM_SNAPSHOT_FILE_PREFIX, the index in 20 digits, 16 hex digits of the
 * checksum, TANDEM_SNAPSHOT_FILE_SUFFIX. */
void tandem_snapshot_file_name(const struct tandem_snapshot_ref *ref,
                               char out[TANDEM_SNAPSHOT_FILE_NAME_SIZE]);
/* Whether name has exactly that form (what GET /v1/node/snapshots/NAME accepts). */
bool tandem_snapshot_file_name_ok(const char *name);
/* Writes the state txn sees into a new snapshot file in dir (tandem_store_snapshot_write_fd),
 * named after its reference (*out), fsynced with its directory, then prunes dir to the
 * TANDEM_SNAPSHOT_FILES_KEPT newest. On any thread (s: the caller's view of the store). Returns 0,
 * or a tandem code with s->errmsg filled and nothing left behind. */
int tandem_snapshot_file_write(struct tandem_store *s, MDB_txn *txn, const char *dir,
                               struct tandem_snapshot_ref *out);

/* Removes from dir every snapshot file but the keep newest (by index) and, with leftovers (at a
 * start: nothing writes them then), every ".tmp" or ".part" file a crash left. Best effort: a
 * file it cannot remove stays for the next call. Returns how many it removed. */
unsigned tandem_snapshot_files_prune(const char *dir, unsigned keep, bool leftovers);

#endif
