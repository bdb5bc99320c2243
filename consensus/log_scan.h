/* Reading a raft_uv log directory that must stay exactly as it is (a fenced node's kept data):
 * a scratch copy is loaded with raft_uv's own load, and the term history of a log, which the
 * divergence report compares with the cluster's to find the fork point. */
#ifndef TANDEM_CONSENSUS_LOG_SCAN_H
#define TANDEM_CONSENSUS_LOG_SCAN_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/error.h"

#define TANDEM_LOG_SCAN_FILES_MAX 100000 /* files in one raft directory */
#define TANDEM_TERM_HISTORY_MAX   64     /* terms a recorded history keeps (the newest) */

/* A log as raft_uv loads it. */
struct tandem_log_scan {
    uint64_t first_index;                   /* index of entries[0] */
    uint64_t snapshot_index, snapshot_term; /* 0 when there is no snapshot */
    struct raft_entry *entries;             /* owned: n entries */
    size_t n;
};

/* Loads raft_dir through a scratch copy made in scratch_dir (a leftover one is replaced; removed
 * afterwards): closed segments and snapshots are hard-linked, open segments and metadata are
 * copied, because raft_uv's load finalises open segments in place. raft_dir is never written.
 * Returns 0, or a tandem error code with errmsg filled. */
int tandem_log_scan_load(const char *raft_dir, const char *scratch_dir, struct tandem_log_scan *out,
                         char *errmsg);
void tandem_log_scan_free(struct tandem_log_scan *scan);
/* Loads the one open segment at segment_path alone, with raft_uv's load, through a scratch copy
 * in scratch_dir: out gets its entries from first_index 1, *used_bytes the length raft_uv keeps
 * of the file (where its last whole batch ends). An empty or zeroed segment gives 0 entries.
 * The segment is never written. Returns 0, or a tandem error code with errmsg filled. */
int tandem_log_scan_open_segment(const char *segment_path, const char *scratch_dir,
                                 struct tandem_log_scan *out, uint64_t *used_bytes, char *errmsg);
/* Fills t with a raft_uv transport that never listens nor connects, for raft_uv used offline
 * (loading a kept log, writing one in a test). */
struct raft_uv_transport;
void tandem_log_scan_offline_transport(struct raft_uv_transport *t);

struct tandem_term_start {
    uint64_t term;
    uint64_t first_index; /* the first index of the log at this term */
};

/* Which term each index of a log has: term k covers [terms[k].first_index, next start - 1],
 * the last one up to last_index. Indexes below first_index are unknown (compacted, or older
 * than the TANDEM_TERM_HISTORY_MAX newest terms). */
struct tandem_term_history {
    uint64_t first_index; /* 0 when the log is empty */
    uint64_t last_index, last_term;
    struct tandem_term_start terms[TANDEM_TERM_HISTORY_MAX]; /* oldest first */
    unsigned n;
};

/* The history of a loaded log, keeping the newest TANDEM_TERM_HISTORY_MAX terms. */
void tandem_term_history_of(const struct tandem_log_scan *scan, struct tandem_term_history *out);
/* Terms rise, starts rise and lie within [first_index, last_index]. */
bool tandem_term_history_ok(const struct tandem_term_history *h);
/* The term of index in h, 0 when h does not know it. */
uint64_t tandem_term_history_term_at(const struct tandem_term_history *h, uint64_t index);

enum tandem_fork_certainty {
    TANDEM_FORK_EXACT,        /* the logs agree up to index and differ (or one ends) after it */
    TANDEM_FORK_AT_OR_BEFORE, /* nothing known in common: the fork is at index or before */
};

struct tandem_fork {
    uint64_t index, term; /* term 0 when not known */
    int certainty;        /* enum tandem_fork_certainty */
};

/* The fork point between a log whose entry first_index + i has term terms[i] (n entries) and
 * the cluster's history: the highest index whose term matches in both (raft's log matching
 * property: then the logs are identical up to it). */
void tandem_fork_find(const uint64_t *terms, uint64_t first_index, size_t n,
                      const struct tandem_term_history *cluster, struct tandem_fork *out);
const char *tandem_fork_certainty_name(int certainty);

#endif
