/* tandemctl backup restore --to-index (issue 14): the state unpacked from a backup is carried
 * forward through a node's kept raft log to the chosen index (replication/replay.h). */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "consensus/log_scan.h"
#include "consensus/recover.h"
#include "consensus/seed.h"
#include "node/ctl/backup_local.h"
#include "replication/replay.h"
#include "storage/assert.h"
#include "storage/error.h"

#define REPLAY_MAP_BYTES_MIN (4ull << 30) /* as tandemd's default map_size_mib */

/* The log's node: its applied index and apply digest, read beside a running tandemd. */
static int proof_read(const char *log_dir, struct tandem_replay_plan *plan, char *errmsg)
{
    char path[PATH_MAX];
    struct tandem_store store;
    snprintf(path, sizeof path, "%s/state", log_dir);
    int rv = tandem_store_open_shared(&store, path);
    if (rv != 0) {
        tandem_error_set(errmsg, rv, "--log-dir %s: %s", log_dir, store.errmsg);
    } else {
        plan->proof_index = store.applied_index;
        memcpy(plan->proof_digest, store.apply_digest, sizeof plan->proof_digest);
    }
    tandem_store_close(&store);
    return rv;
}

/* A data directory of this backup's cluster: raft/ and state/, and no other cluster's id. */
static int log_dir_check(const char *log_dir, const struct tandem_backup_manifest *m, char *errmsg)
{
    char raft[PATH_MAX], state[PATH_MAX], id[TANDEM_CLUSTER_ID_LEN_MAX + 1];
    struct stat st;
    snprintf(raft, sizeof raft, "%s/raft", log_dir);
    snprintf(state, sizeof state, "%s/state", log_dir);
    if (stat(raft, &st) != 0 || !S_ISDIR(st.st_mode) || stat(state, &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "--log-dir %s: no raft/ and state/ there (give the data "
                                "directory of a node of the backup's cluster)",
                                log_dir);
    }
    /* Only restored directories record their id; the digest chain is the proof for the rest. */
    if (tandem_cluster_id_read(log_dir, id) == 1 && strcmp(id, m->cluster_id) != 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "--log-dir %s belongs to cluster '%s', the backup to '%s'", log_dir,
                                id, m->cluster_id);
    }
    return 0;
}

static int replay_into(const char *state_dir, const struct tandem_log_scan *log,
                       const struct tandem_replay_plan *plan, struct tandem_replay_result *res,
                       char *errmsg)
{
    char data[PATH_MAX];
    struct stat st;
    struct tandem_store store;
    snprintf(data, sizeof data, "%s/data.mdb", state_dir);
    uint64_t map = stat(data, &st) == 0 ? 2 * (uint64_t)st.st_size + (1ull << 30) : 0;
    map = map > REPLAY_MAP_BYTES_MIN ? map : REPLAY_MAP_BYTES_MIN;
    int rv = tandem_store_open(&store, state_dir, (size_t)map);
    if (rv != 0) {
        tandem_error_set(errmsg, rv, "%s: %s", state_dir, store.errmsg);
        tandem_store_close(&store);
        return rv;
    }
    rv = tandem_replay(&store, log->entries, log->first_index, log->n, plan, res, errmsg);
    tandem_store_close(&store);
    return rv;
}

/* The restored state's own facts into m (index, digests, counts), with the entry's term and the
 * newest epoch the log's node knew. */
static int manifest_update(const char *state_dir, const char *log_dir,
                           const struct tandem_replay_result *res, struct tandem_backup_manifest *m,
                           char *errmsg)
{
    char data[PATH_MAX];
    struct tandem_backup_manifest facts;
    snprintf(data, sizeof data, "%s/data.mdb", state_dir);
    int rv = tandem_backup_state_facts(data, &facts, errmsg);
    if (rv != 0) {
        return rv;
    }
    tandem_assert(facts.applied_index == res->state_index);
    m->applied_index = facts.applied_index;
    memcpy(m->apply_digest, facts.apply_digest, sizeof m->apply_digest);
    memcpy(m->state_digest, facts.state_digest, sizeof m->state_digest);
    memcpy(m->data_digest, facts.data_digest, sizeof m->data_digest);
    m->counts = facts.counts;
    m->term = res->state_term > m->term ? res->state_term : m->term;
    uint64_t epoch = tandem_recover_file_u64(log_dir, TANDEM_EPOCH_FILE);
    m->epoch = epoch > m->epoch ? epoch : m->epoch;
    return 0;
}

int tandem_ctl_backup_replay(const char *data_dir, const char *log_dir, uint64_t to_index,
                             struct tandem_backup_manifest *m, struct tandem_replay_result *res,
                             char *errmsg)
{
    char state_dir[PATH_MAX], scratch[PATH_MAX];
    struct tandem_replay_plan plan = {.to_index = to_index};
    struct tandem_log_scan log;
    snprintf(state_dir, sizeof state_dir, "%s/state", data_dir);
    snprintf(scratch, sizeof scratch, "%s/raft.scan", data_dir);
    int rv = log_dir_check(log_dir, m, errmsg);
    /* The proof first: the log read afterwards holds at least what its node had applied. */
    rv = rv != 0 ? rv : proof_read(log_dir, &plan, errmsg);
    if (rv != 0) {
        return rv;
    }
    char raft[PATH_MAX];
    snprintf(raft, sizeof raft, "%s/raft", log_dir);
    if ((rv = tandem_log_scan_load(raft, scratch, &log, errmsg)) != 0) {
        return rv;
    }
    rv = replay_into(state_dir, &log, &plan, res, errmsg);
    tandem_log_scan_free(&log);
    return rv != 0 ? rv : manifest_update(state_dir, log_dir, res, m, errmsg);
}
