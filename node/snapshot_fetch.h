/* The member-to-member copy of a snapshot file (replication/snapshot_file.h): what
 * replication/fsm.h's tandem_fsm_fetch_fn does in tandemd. On a thread-pool worker, libcurl GETs
 * /v1/node/snapshots/NAME from the member's API (mutual TLS with the node's own certificate,
 * which node/api/snapshots.c requires) into a new file, then syncs it. The file's integrity is
 * the reference's checksum, checked by the install that maps it: a transport proves only that
 * the bytes came from a node of the cluster. */
#ifndef TANDEM_NODE_SNAPSHOT_FETCH_H
#define TANDEM_NODE_SNAPSHOT_FETCH_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/config.h"

#define TANDEM_SNAPSHOT_FETCH_CONNECT_S 10L
#define TANDEM_SNAPSHOT_FETCH_STALL_S   30L /* no byte for this long: the try fails */

/* What every fetch reads; written once before raft starts, read-only afterwards. */
struct tandem_snapshot_fetcher {
    bool tls;
    char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], crl[PATH_MAX]; /* crl "": none */
};

/* Fills f from the config and initialises libcurl (before any thread uses it). Returns 0, or -1
 * with errmsg (TANDEM_ERRMSG_SIZE) filled. */
int tandem_snapshot_fetcher_init(struct tandem_snapshot_fetcher *f, const struct tandem_config *c,
                                 char *errmsg);
/* tandem_fsm_fetch_fn, data: the fetcher. */
int tandem_snapshot_fetch(void *data, const char *address, const char *name, uint64_t len,
                          const char *dest, const atomic_bool *cancel, char *errmsg);

#endif
