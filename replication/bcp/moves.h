/* Work that follows BCP: an invoked site's queued and in-progress jobs move to the site taking
 * over, and come back on a revoke with failback. Runs inside the site update's apply. */
#ifndef TANDEM_REPLICATION_BCP_MOVES_H
#define TANDEM_REPLICATION_BCP_MOVES_H

#include <jansson.h>
#include <stdbool.h>

#include "replication/apply.h"

/* Invoke (failback false): moves every queued or in-progress job at site to `to`; an
 * in-progress job keeps its stage and loses its operator (it restarts at that stage). Each
 * moved job remembers site in bcp_from and gets a bcp_move trace event.
 * Failback (to ignored): jobs BCP moved away from site that are still queued return to it
 * (bcp_failback event); the others stay where they are. *moved counts the jobs moved. Returns
 * 0 or an LMDB error. */
int tandem_bcp_jobs_move(const struct tandem_apply_ctx *ctx, const char *site, const char *to,
                         bool failback, const char *by, unsigned *moved);

/* Appends to out (a JSON array) the ids of the jobs an invoke of site would move now, or with
 * failback those a revoke with failback would bring back to it (moved away by BCP and still
 * queued elsewhere), at most TANDEM_BCP_JOBS_LISTED_MAX of them (the dry runs' answer). Returns
 * 0 or an LMDB error. */
#define TANDEM_BCP_JOBS_LISTED_MAX 10000
int tandem_bcp_jobs_list(struct tandem_store *store, MDB_txn *txn, const char *site, bool failback,
                         json_t *out);

#endif
