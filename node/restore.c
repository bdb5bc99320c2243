/* The first start of a restored node (node/restore.h). */
#include "node/restore.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "consensus/recover.h"
#include "consensus/seed.h"
#include "node/log.h"
#include "replication/snapshot_file.h"
#include "storage/error.h"

/* A data directory that `tandemctl backup restore` seeded belongs to the cluster id it was
 * restored under: started with another one (the old cluster's, by mistake) it would offer the
 * old cluster a stranger's log, so it refuses. */
static int cluster_id_check(const struct tandem_config *c)
{
    char recorded[TANDEM_CLUSTER_ID_LEN_MAX + 1];
    int found = tandem_cluster_id_read(c->data_dir, recorded);
    if (found < 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s/%s is unreadable or malformed", c->data_dir,
                   TANDEM_CLUSTER_ID_FILE);
        return -1;
    }
    if (found == 1 && strcmp(recorded, c->cluster_id) != 0) {
        tandem_log(TANDEM_LOG_ERROR,
                   "this data directory belongs to cluster '%s' (restored from a backup under that "
                   "id), but cluster_id is '%s': set cluster_id = %s, or restore again",
                   recorded, c->cluster_id, recorded);
        return -1;
    }
    return 0;
}

/* The snapshot raft is seeded with: the state itself, or past snapshot_inline_mib a snapshot
 * file and its reference (replication/snapshot_file.h), as the node's own snapshots would be. */
static int seed_snapshot(struct tandem_store *store, MDB_txn *txn, const struct tandem_config *c,
                         void **out, size_t *out_len)
{
    char dir[PATH_MAX];
    struct tandem_snapshot_ref ref;
    if (tandem_store_used_bytes(store->env) <= ((uint64_t)c->snapshot_inline_mib << 20)) {
        return tandem_store_snapshot_write(store, txn, out, out_len);
    }
    snprintf(dir, sizeof dir, "%.*s/snapshots", PATH_MAX - 16, c->data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return tandem_error_from_errno(errno, store->errmsg, "snapshot directory");
    }
    uint8_t *bytes = malloc(TANDEM_SNAPSHOT_REF_LEN);
    if (bytes == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_NOMEM, "out of memory");
    }
    int rv = tandem_snapshot_file_write(store, txn, dir, &ref);
    if (rv != 0) {
        free(bytes);
        return rv;
    }
    tandem_snapshot_ref_encode(&ref, bytes);
    *out = bytes;
    *out_len = TANDEM_SNAPSHOT_REF_LEN;
    return 0;
}

/* Seeds raft/ from the open state at the marker's index. */
static int seed(struct tandem_store *store, const struct tandem_member *me,
                const struct tandem_config *c, const struct tandem_restore_note *note,
                const char *raft_dir)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_member self = *me;
    uint8_t digest[TANDEM_DIGEST_LEN];
    char hex[2 * TANDEM_DIGEST_LEN + 1];
    void *snapshot = NULL;
    size_t len = 0;
    MDB_txn *txn;
    if (store->applied_index != note->index) {
        tandem_log(TANDEM_LOG_ERROR, "restored state is at index %llu, the marker says %llu",
                   (unsigned long long)store->applied_index, (unsigned long long)note->index);
        return -1;
    }
    if (tandem_store_read_txn(store, &txn) != 0 ||
        tandem_store_state_digest(store, txn, digest) != 0 ||
        seed_snapshot(store, txn, c, &snapshot, &len) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "restore: %s", store->errmsg);
        return -1; /* the process exits: the transaction goes with it */
    }
    mdb_txn_abort(txn);
    tandem_digest_hex(digest, hex);
    /* The state as it is now, before raft applies anything on top, against the manifest: the
     * one moment a node can prove it holds exactly the backup (later the site controller's own
     * decisions may already have moved it on). */
    if (note->state_digest[0] != '\0' && strcmp(hex, note->state_digest) != 0) {
        tandem_log(TANDEM_LOG_ERROR,
                   "restored state's digest %s is not the backup manifest's %s: restore again", hex,
                   note->state_digest);
        free(snapshot);
        return -1;
    }
    self.role = TANDEM_ROLE_VOTER;
    const struct tandem_member *members = c->n_members > 0 ? c->members : &self;
    unsigned n = c->n_members > 0 ? c->n_members : 1;
    int rv = tandem_raft_seed(c->data_dir, raft_dir, me, members, n, note->term, note->index,
                              snapshot, len, errmsg);
    free(snapshot);
    if (rv != 0) {
        tandem_log(TANDEM_LOG_ERROR, "restore: %s", errmsg);
        return -1;
    }
    tandem_log(TANDEM_LOG_INFO,
               "restored from backup %s: raft seeded at index %llu, term %llu, with %u member(s) "
               "under cluster id %s; state_digest %s%s",
               note->backup, (unsigned long long)note->index, (unsigned long long)note->term, n,
               note->cluster_id, hex,
               note->state_digest[0] != '\0' ? " (the backup manifest's)" : "");
    return 0;
}

static bool self_listed(const struct tandem_config *c)
{
    for (unsigned i = 0; i < c->n_members; i++) {
        if (strcmp(c->members[i].name, c->name) == 0) {
            return true;
        }
    }
    return c->n_members == 0;
}

int tandem_node_restore_start(struct tandem_store *store, const struct tandem_member *self,
                              const struct tandem_config *c)
{
    char errmsg[TANDEM_ERRMSG_SIZE], raft_dir[PATH_MAX + 8];
    struct tandem_restore_note note;
    struct stat st;
    if (cluster_id_check(c) != 0) {
        return -1;
    }
    int pending = tandem_restore_note_read(c->data_dir, &note, errmsg);
    if (pending <= 0) {
        if (pending < 0) {
            tandem_log(TANDEM_LOG_ERROR, "%s", errmsg);
        }
        return pending;
    }
    if (strcmp(note.name, c->name) != 0 || c->join || !self_listed(c)) {
        tandem_log(TANDEM_LOG_ERROR,
                   "this data directory was restored for node '%s' to bootstrap from: start it "
                   "with name = %s, without join, and with itself among the members",
                   note.name, note.name);
        return -1;
    }
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", c->data_dir);
    /* raft/ exists: a seed finished before a crash took the marker's removal with it. */
    if (stat(raft_dir, &st) != 0 && seed(store, self, c, &note, raft_dir) != 0) {
        return -1;
    }
    if (tandem_recover_file_remove(c->data_dir, TANDEM_RESTORE_FILE, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%s", errmsg);
        return -1;
    }
    return 0;
}
