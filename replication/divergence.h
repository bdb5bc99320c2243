/* The divergence report's account of a fenced node's entries after the fork point: each
 * entry's index, term and command types, and the keys, jobs and boxes they touched, decoded
 * from the replicated command schema. Identifiers only: no value and no personal data. */
#ifndef TANDEM_REPLICATION_DIVERGENCE_H
#define TANDEM_REPLICATION_DIVERGENCE_H

#include <jansson.h>
#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#define TANDEM_DIVERGENCE_ENTRIES_MAX 1000 /* entries listed one by one; the count covers all */
#define TANDEM_DIVERGENCE_IDS_MAX     1000 /* keys, jobs and boxes listed (each) */

/* {"entries_after_fork": n, "entries": [{"index","term","type","proposed","commands":[...]}],
 *  "entries_listed": m, "touched": {"keys":[...],"jobs":[...],"boxes":[...]},
 *  "touched_truncated": bool} for entries[0..n), the first at first_index. A key that is not
 * UTF-8 shows as "hex:<bytes>". NULL when out of memory. */
json_t *tandem_divergence_entries_json(const struct raft_entry *entries, uint64_t first_index,
                                       size_t n);

#endif
