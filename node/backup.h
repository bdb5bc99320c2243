/* Backups taken by a running node (issue 14): one at a time, on the thread pool, from the
 * committed state, into backup_dir or a given path; what POST /v1/backups and the schedule
 * (node/bcp, B2) both call. The file format and its checks are storage/backup.h's. */
#ifndef TANDEM_NODE_BACKUP_H
#define TANDEM_NODE_BACKUP_H

#include <stdint.h>

#include "storage/backup.h"
#include "storage/error.h"

struct tandem_node;

/* Length of a backup file name made by tandem_node_backup_name. */
#define TANDEM_BACKUP_NAME_LEN_MAX 255

/* Runs once on the loop when a backup finished: status 0 with the manifest and the file's path,
 * or a tandem code with errmsg (nothing is left at the path then). */
typedef void (*tandem_node_backup_cb)(void *data, int status,
                                      const struct tandem_backup_manifest *manifest,
                                      const char *path, const char *errmsg);

/* Takes a backup of this node's committed state into path (NULL: backup_dir/<a new name>).
 * Commits the grouped writes first, so the file holds at least every entry applied when this is
 * called; making that index a leader-confirmed one is the caller's part (POST /v1/backups calls
 * it after a read barrier on the leader; a scheduled backup on a node that has applied the
 * leader's commit index). The copy, the digests and the file are made on the thread pool; the
 * writer never stops. The state is sealed when backup_key_file is set. Returns 0 (then cb runs
 * exactly once), TANDEM_BUSY when this node is already taking one, or another code with errmsg
 * (TANDEM_ERRMSG_SIZE) filled (cb never runs then). */
int tandem_node_backup_take(struct tandem_node *node, const char *path, tandem_node_backup_cb cb,
                            void *data, char *errmsg);

/* Whether this node is taking a backup now. */
bool tandem_node_backup_running(const struct tandem_node *node);

/* "<cluster>-<site>-<node>-<index>-<YYYYMMDDTHHMMSS.mmmZ>.tbk" into out
 * (TANDEM_BACKUP_NAME_LEN_MAX + 1): sorts by time within one node. */
void tandem_node_backup_name(const char *cluster_id, const char *site, const char *node,
                             uint64_t applied_index, int64_t now_ms, char *out);

/* Whether name is a plain file name that tandem_node_backup_name could have made (no path, no
 * dot-dot): the check for names taken from requests. */
bool tandem_node_backup_name_ok(const char *name);

#endif
