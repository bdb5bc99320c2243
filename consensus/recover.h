/* Forced failover (quorum lost) and re-seeding: choosing the survivor to raft_recover, the
 * fencing epoch files, and the markers in a node's data directory that make the next start
 * recover, wipe and join, or record a forced invoke. */
#ifndef TANDEM_CONSENSUS_RECOVER_H
#define TANDEM_CONSENSUS_RECOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/log_scan.h"
#include "consensus/member.h"
#include "storage/error.h"

#define TANDEM_RECOVER_MEMBERS_MAX    64            /* members of a recovered configuration */
#define TANDEM_RECOVER_FILE_BYTES_MAX (64u * 1024u) /* a marker file; larger is corrupt */

/* Files in the data directory (beside raft/ and state/). */
#define TANDEM_EPOCH_FILE       "epoch"         /* the fencing epoch, decimal */
#define TANDEM_RESEED_FILE      "reseed"        /* next start: move the data aside, then join */
#define TANDEM_RECOVER_FILE     "recover"       /* next start: raft_recover into this config */
#define TANDEM_FORCED_FILE      "forced-invoke" /* after recover: the site to record as invoked */
#define TANDEM_JOIN_FILE        "join"          /* never bootstrap from this data directory */
#define TANDEM_FENCED_FILE      "fenced"        /* newest epoch seen while fenced, decimal */
#define TANDEM_RESEED_INFO_FILE "reseed.json"   /* what the cluster said when it asked to re-seed */
#define TANDEM_FORCED_HISTORY_FILE                                                                 \
    "forced-history" /* the seed's log before raft_recover, for the forced record */

/* A re-seed keeps the old data in DATA_DIR/fenced-<old epoch>-<UTC time>/ (never removed by
 * tandemd): raft/, state/ and the markers exactly as they were. */
#define TANDEM_ASIDE_PREFIX   "fenced-"
#define TANDEM_ASIDE_NAME_MAX 64

/* What one member said about itself when the forced path polled it. */
struct tandem_recover_candidate {
    struct tandem_member member; /* member.role: its role in the old configuration */
    bool reachable;
    uint64_t term, last_index, commit_index, epoch;
};

/* The plan the chosen survivor starts from. */
struct tandem_recover_plan {
    uint64_t epoch;
    char site[TANDEM_SITE_LEN_MAX + 1]; /* the lost site, recorded as invoked afterwards */
    char reason[128];
    struct tandem_member members[TANDEM_RECOVER_MEMBERS_MAX]; /* the new configuration */
    unsigned n_members;
};

/* Index of the reachable candidate outside lost_site with the highest (term, last_index), ties
 * to the smaller name; -1 when none. */
int tandem_recover_choose(const struct tandem_recover_candidate *c, unsigned n,
                          const char *lost_site);
/* True when every majority of the old voters includes a reachable candidate outside lost_site:
 * then every committed entry is on some survivor and the chosen one has it. */
bool tandem_recover_no_committed_loss(const struct tandem_recover_candidate *c, unsigned n,
                                      const char *lost_site);

/* Files. Each returns 0, or a tandem error code (storage/error.h) with errmsg
 * (TANDEM_ERRMSG_SIZE bytes) filled. Writes are atomic (temporary file, fsync, rename, fsync of
 * the directory). */
int tandem_epoch_write(const char *data_dir, uint64_t epoch, char *errmsg);
/* 0 when the file is absent or unreadable. */
uint64_t tandem_recover_file_u64(const char *data_dir, const char *file);
bool tandem_recover_file_exists(const char *data_dir, const char *file);
int tandem_recover_file_remove(const char *data_dir, const char *file, char *errmsg);
int tandem_recover_write_u64(const char *data_dir, const char *file, uint64_t value, char *errmsg);
/* Writes text (at most TANDEM_RECOVER_FILE_BYTES_MAX bytes to be read back) as DATA_DIR/file. */
int tandem_recover_file_write(const char *data_dir, const char *file, const char *text,
                              char *errmsg);

int tandem_recover_plan_write(const char *data_dir, const struct tandem_recover_plan *plan,
                              char *errmsg);
/* Returns 1 and fills plan when the recover marker exists, 0 when absent, -1 when corrupt. */
int tandem_recover_plan_read(const char *data_dir, struct tandem_recover_plan *plan, char *errmsg);
/* After raft_recover succeeded: the recover marker becomes the forced-invoke note, so the
 * recovery never runs twice. */
int tandem_recover_plan_done(const char *data_dir, char *errmsg);
/* Returns 1 with site filled (TANDEM_SITE_LEN_MAX + 1) when a forced-invoke note exists. */
int tandem_recover_forced_note(const char *data_dir, char *site);

/* Asks the next start to re-seed at epoch, keeping the old data in DATA_DIR/aside (a name from
 * tandem_recover_aside_name; NULL: chosen at that start). */
int tandem_recover_reseed_write(const char *data_dir, uint64_t epoch, const char *aside,
                                char *errmsg);
/* "fenced-<old_epoch>-<YYYYMMDDTHHMMSSZ>" (UTC, sorts by time) into out (TANDEM_ASIDE_NAME_MAX
 * + 1 bytes), with "-2", "-3" ... appended while DATA_DIR already holds that name. */
void tandem_recover_aside_name(const char *data_dir, uint64_t old_epoch, int64_t now_ms, char *out);
/* The aside folder a pending re-seed moves the data to, into out (TANDEM_ASIDE_NAME_MAX + 1):
 * 1 when named, 0 when none is pending or not yet named. */
int tandem_recover_reseed_aside(const char *data_dir, char *out);

/* Called once the old data is in aside_dir (an absolute or data_dir-relative path) and before
 * the node starts empty: writes the divergence report there. Its failures are its own (logged);
 * the re-seed goes on, since the data is kept either way. */
typedef void (*tandem_recover_aside_cb)(void *data, const char *aside_dir, uint64_t old_epoch,
                                        uint64_t new_epoch);

/* The seed's log history before raft_recover (TANDEM_FORCED_HISTORY_FILE), kept until the
 * forced invoke that carries it is recorded. read returns 1 when present and valid, 0 when
 * absent, -1 when corrupt. */
struct tandem_forced_history {
    uint64_t epoch;
    char seed[TANDEM_NAME_LEN_MAX + 1];
    struct tandem_term_history history;
};
int tandem_recover_history_write(const char *data_dir, const struct tandem_forced_history *f,
                                 char *errmsg);
int tandem_recover_history_read(const char *data_dir, struct tandem_forced_history *f);

/* Runs before the state store opens: a pending reseed moves raft/, state/ and the markers into
 * the aside folder (crash-safe: each item is renamed, the reseed marker goes last), calls
 * aside_cb (may be NULL), writes the new epoch and the join marker; a pending recover writes its
 * epoch. Returns 0, or a tandem error code with errmsg filled. */
int tandem_recover_prepare(const char *data_dir, tandem_recover_aside_cb aside_cb, void *data,
                           char *errmsg);

#endif
