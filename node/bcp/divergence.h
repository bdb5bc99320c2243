/* The divergence report of a re-seeded node: written into the folder that keeps its old data
 * (DATA_DIR/fenced-<epoch>-<time>/divergence.json) at the start that moves the data there, and
 * listed by GET /v1/node/divergence. The fork point comes from the forced failover's recorded
 * history of the cluster's log (replication/bcp/sites.h), handed over by the rejoin. */
#ifndef TANDEM_NODE_BCP_DIVERGENCE_H
#define TANDEM_NODE_BCP_DIVERGENCE_H

#include <jansson.h>
#include <stdint.h>

#define TANDEM_DIVERGENCE_FILE             "divergence.json"
#define TANDEM_DIVERGENCE_REPORTS_MAX      64                   /* kept folders listed */
#define TANDEM_DIVERGENCE_REPORT_BYTES_MAX (8u * 1024u * 1024u) /* one report read back */

/* Who the report is about; borrowed by the callback. */
struct tandem_divergence_self {
    const char *name;
    const char *site;
};

/* tandem_recover_prepare's aside callback (data: struct tandem_divergence_self): scans the
 * kept raft log, finds the fork point against the forced failover that fenced the node (from
 * the kept reseed.json) and writes divergence.json atomically. Failures are logged and leave a
 * report that says what is missing. */
void tandem_divergence_write_cb(void *data, const char *aside_dir, uint64_t old_epoch,
                                uint64_t new_epoch);

/* The fork point of terms (n entries from first_index) against the forced record that fenced a
 * node at old_epoch (the oldest in forced, a JSON array as tandem_sites_forced_json gives,
 * with an epoch above old_epoch): {"index","term","certainty","compared_with"}, or certainty
 * "unknown" with a reason. */
json_t *tandem_divergence_fork_json(const uint64_t *terms, uint64_t first_index, size_t n,
                                    json_t *forced, uint64_t old_epoch);

/* The reports kept in data_dir, newest first (at most TANDEM_DIVERGENCE_REPORTS_MAX); a folder
 * without a readable report is listed with an "error". NULL when out of memory. */
json_t *tandem_divergence_list(const char *data_dir);

#endif
