/* Repairs the one raft_uv log shape libraft 0.22.1 writes and then cannot read: an open segment
 * left behind a closed one.
 *
 * raft_uv closes a full open segment on the thread pool (truncate, rename to first-last, sync the
 * directory). When that fails (out of descriptors, a disk error), 0.22.1 sets a flag nothing
 * reads and goes on closing the next segments, so the log on disk becomes: closed segments with a
 * gap (first-a, c-d with c > a + 1), the entries a+1..c-1 all there, checksummed, in open-N. Its
 * next load then either refuses the log ("unexpected closed segment c-d: first index should have
 * been a+1") or, when a snapshot lets it skip the gap, appends open-N's entries after the last
 * closed one under wrong indexes: old commands that a leader would replicate and commit again.
 *
 * Before raft_uv loads the log, this closes such a segment into its gap under the name raft_uv
 * would have given it. Open segments are filled and closed in the order of their counters, so
 * the ones left behind are the first in that order, each with one gap, in index order; raft_uv
 * itself leaves no gaps between closed segments. So the segments are closed into the gaps only
 * when the first ones fill every gap, each exactly (its entry count is the gap's size), and the
 * terms of the open segments rise; otherwise nothing is touched and raft_uv's load judges the
 * log. A segment left open whose older neighbours raft_uv has since removed behind a snapshot
 * leaves no gap to see: tandemd stops long before that (tandem_log_gap_find, node.c). */
#ifndef TANDEM_CONSENSUS_LOG_REPAIR_H
#define TANDEM_CONSENSUS_LOG_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/error.h"

#define TANDEM_LOG_REPAIR_SEGMENTS_MAX 4096u /* open segments examined; raft_uv keeps a few */

struct tandem_log_repair {
    unsigned closed;  /* open segments closed into their gaps */
    char detail[512]; /* "open-1 as 2-228 (227 entries)", one per segment, "; " between */
};

/* Examines raft_dir (a raft_uv directory not in use) and closes open segments left behind closed
 * ones into their gaps. scratch_dir (created and removed) is where each open segment is loaded,
 * as raft_uv loads it, to count its entries. Returns 0 (out says what was done, perhaps
 * nothing), or a tandem error code with errmsg filled when reading or renaming failed. */
int tandem_log_repair(const char *raft_dir, const char *scratch_dir, struct tandem_log_repair *out,
                      char *errmsg);

/* A gap between closed segments of a log in use: raft_uv closes segments one at a time, in
 * order, and removes the oldest first, so a gap that stays is a segment it failed to close. */
struct tandem_log_gap {
    bool found;
    uint64_t first, end; /* the oldest gap's missing indexes */
    unsigned n;          /* gaps seen */
};

#define TANDEM_LOG_GAP_CHECK_MS 5000u /* how often tandemd looks for a gap in its log */

/* Lists raft_dir (in use by raft_uv: only names are read) for gaps between closed segments.
 * Returns 0 (out->found says whether there is one), or a tandem error code with errmsg filled. */
int tandem_log_gap_find(const char *raft_dir, struct tandem_log_gap *out, char *errmsg);
/* What a found gap means, for a log line or a fatal message: "raft log: entries A-B are in a
 * segment raft_uv failed to close while it closed later ones". */
void tandem_log_gap_describe(const struct tandem_log_gap *gap, char *out, size_t size);

#endif
