/* What tandemctl does with backup files on this machine (issue 14): checks at levels 1-3 (level
 * 3 restores into a scratch directory and starts a scratch tandemd on it) and the restore that
 * seeds a data directory. */
#ifndef TANDEM_CTL_BACKUP_LOCAL_H
#define TANDEM_CTL_BACKUP_LOCAL_H

#include "node/ctl/ctl.h"
#include "replication/replay.h"
#include "replication/identity/pdata.h"
#include "storage/backup.h"
#include "storage/domain_codec.h"

/* How long a level-3 check waits for its scratch tandemd to answer, and to stop. */
#define TANDEM_CTL_VERIFY_START_MS 60000L
#define TANDEM_CTL_VERIFY_STOP_MS  10000L

struct tandem_ctl_backup_check {
    const char *file;
    int level;                            /* 1, 2 or 3 */
    const struct tandem_backup_key *keys; /* borrowed: to open a sealed state (levels 2, 3) */
    unsigned n_keys;
    const char *scratch; /* where scratch directories go; NULL: $TMPDIR or /tmp */
    const char *tandemd; /* level 3: the tandemd program; NULL: beside tandemctl, else $PATH */
};

/* Checks check->file at check->level; *m is its manifest when it passes. Returns an exit code
 * with ctx->errmsg naming the first damaged part ("<file>: <part> damaged: <why>"). */
int tandem_ctl_backup_check(struct tandem_ctl_context *ctx,
                            const struct tandem_ctl_backup_check *check,
                            struct tandem_backup_manifest *m);

struct tandem_ctl_backup_restore {
    const char *file;
    const char *data_dir;   /* refused unless absent or empty */
    const char *name;       /* the node that will start on it */
    const char *cluster_id; /* NULL: a new random one, so it cannot join its old cluster */
    const struct tandem_backup_key *keys;
    unsigned n_keys;
    /* --data-key-file: the personal-data key file (key_file's format) the new cluster will run
     * with; every sealed value of the backup must open with it, else the restore is refused.
     * NULL: the values are counted, not checked. */
    const char *data_key_file;
    /* Point in time: NULL for the backup's own index, else a node's data directory whose raft
     * log carries the state on to to_index (replication/replay.h). */
    const char *log_dir;
    uint64_t to_index;
    struct tandem_ctl_backup_replayed *replayed; /* filled when log_dir is set */
};

/* What a point-in-time restore reached: the restored state's facts as a manifest (index,
 * term, epoch, digests, counts) and the replay's figures. */
struct tandem_ctl_backup_replayed {
    struct tandem_backup_manifest state;
    struct tandem_replay_result replay;
};

/* Carries DATA_DIR/state (unpacked from the backup whose manifest is *m) through log_dir's raft
 * log to to_index; *m is updated to describe the result. Returns a tandem code with errmsg. */
int tandem_ctl_backup_replay(const char *data_dir, const char *log_dir, uint64_t to_index,
                             struct tandem_backup_manifest *m, struct tandem_replay_result *res,
                             char *errmsg);

#define TANDEM_CTL_RESTORE_KEY_IDS_MAX 16 /* distinct key ids a restore reports */
/* Jobs of one status a restore's personal-data check reads at most (10 million, a hundred times
 * the largest state measured for issue 14); a larger state is refused rather than half-checked. */
#define TANDEM_CTL_RESTORE_JOBS_SCAN_MAX 10000000

/* What a restore found about the personal data of the restored state. */
struct tandem_ctl_restore_pdata {
    uint64_t sealed; /* sealed values (jobs' individual_number) */
    uint64_t opened; /* of them, opened with the given key file */
    bool checked;    /* a key file was given */
    uint32_t key_ids[TANDEM_CTL_RESTORE_KEY_IDS_MAX];
    unsigned n_key_ids;
    char first_unopened[TANDEM_DOMAIN_ID_LEN_MAX + 1]; /* a job whose value did not open */
    uint32_t first_key_id;
};

/* Counts the sealed personal-data values (every job's individual_number) in the LMDB file
 * state_file and, with ring (else NULL), opens each of them. Returns an exit code:
 * TANDEM_CTL_EREFUSED with ctx->errmsg naming a job when a value does not open with ring, the
 * state cannot be read or holds more than TANDEM_CTL_RESTORE_JOBS_SCAN_MAX jobs of a status. */
int tandem_ctl_restore_pdata_check(struct tandem_ctl_context *ctx, const char *state_file,
                                   const struct tandem_keyring *ring,
                                   struct tandem_ctl_restore_pdata *out);

/* Seeds data_dir from the backup: state/ (checked as level 2 does; carried on to to_index when
 * log_dir is set; its personal data as
 * tandem_ctl_restore_pdata_check does, into *pdata), the epoch, the cluster id file and the
 * restore marker tandemd acts on at its first start (consensus/seed.h). cluster_id
 * receives the id used (TANDEM_BACKUP_LABEL_LEN_MAX + 1). Returns an exit code; on failure what
 * it wrote is removed again. */
int tandem_ctl_backup_restore_dir(struct tandem_ctl_context *ctx,
                                  const struct tandem_ctl_backup_restore *restore,
                                  struct tandem_backup_manifest *m, char *cluster_id,
                                  struct tandem_ctl_restore_pdata *pdata);

#endif
