/* Forced failover (quorum lost) and re-seeding: choosing the survivor to raft_recover, the
 * fencing epoch files, and the markers in a node's data directory that make the next start
 * recover, wipe and join, or record a forced invoke. */
#ifndef TANDEM_CONSENSUS_RECOVER_H
#define TANDEM_CONSENSUS_RECOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/member.h"
#include "storage/error.h"

#define TANDEM_RECOVER_MEMBERS_MAX    64            /* members of a recovered configuration */
#define TANDEM_RECOVER_FILE_BYTES_MAX (64u * 1024u) /* a marker file; larger is corrupt */

/* Files in the data directory (beside raft/ and state/). */
#define TANDEM_EPOCH_FILE   "epoch"         /* the fencing epoch, decimal */
#define TANDEM_RESEED_FILE  "reseed"        /* next start: wipe raft/ and state/, then join */
#define TANDEM_RECOVER_FILE "recover"       /* next start: raft_recover into this config */
#define TANDEM_FORCED_FILE  "forced-invoke" /* after recover: the site to record as invoked */
#define TANDEM_JOIN_FILE    "join"          /* never bootstrap from this data directory */
#define TANDEM_FENCED_FILE  "fenced"        /* newest epoch seen while fenced, decimal */

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

int tandem_recover_plan_write(const char *data_dir, const struct tandem_recover_plan *plan,
                              char *errmsg);
/* Returns 1 and fills plan when the recover marker exists, 0 when absent, -1 when corrupt. */
int tandem_recover_plan_read(const char *data_dir, struct tandem_recover_plan *plan, char *errmsg);
/* After raft_recover succeeded: the recover marker becomes the forced-invoke note, so the
 * recovery never runs twice. */
int tandem_recover_plan_done(const char *data_dir, char *errmsg);
/* Returns 1 with site filled (TANDEM_SITE_LEN_MAX + 1) when a forced-invoke note exists. */
int tandem_recover_forced_note(const char *data_dir, char *site);

/* Runs before the state store opens: a pending reseed wipes raft/ and state/, writes the new
 * epoch and the join marker; a pending recover writes its epoch. Returns 0, or a tandem error
 * code with errmsg filled. */
int tandem_recover_prepare(const char *data_dir, char *errmsg);

#endif
