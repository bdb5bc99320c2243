/* The replicated state machine: raft's FSM over the LMDB store. Applies packed batch entries,
 * keeps the apply_digest chain, skips replayed entries, and snapshots/restores whole states. */
#ifndef TANDEM_REPLICATION_FSM_H
#define TANDEM_REPLICATION_FSM_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "storage/error.h"
#include "storage/sm.h"
#include "storage/store.h"
#include "tandem.pb-c.h"

/* Asks the proposer whether this node waits for the batch (proposer_id, serial) with n commands;
 * returns an array of n results for apply to fill, or NULL when nobody waits. */
typedef struct tandem_result *(*tandem_fsm_claim_fn)(void *data, uint64_t proposer_id,
                                                     uint64_t serial, size_t n_commands);

struct tandem_fsm {
    struct raft_fsm raft_fsm;   /* handed to raft_init; raft_fsm.data points back here */
    struct raft *raft;          /* borrowed: the index being applied is last_applied + 1 */
    struct tandem_store *store; /* borrowed */
    tandem_fsm_claim_fn claim;
    void *claim_data;
    /* A snapshot's life (idle -> pinned -> written -> idle): snapshot() pins a read transaction,
     * snapshot_async serialises it, snapshot_finalize releases both (fsm.c's table). */
    struct tandem_sm snapshot_sm;
    MDB_txn *snapshot_txn;
    void *snapshot_buf;                /* owned: malloc'd serialised state */
    struct raft_buffer *snapshot_bufs; /* the array raft sees; owned */
    /* Serialise later, off the loop (tandem_fsm_snapshot_fill on the thread pool, called by
     * consensus/raft_shield.h's shield 6): snapshot_async then only pins. */
    bool fill_later;
    struct tandem_store *fill_view; /* owned while filling: the worker's copy of the store */
    int fill_rv;                    /* the worker's result, read back on the loop */
    void *fill_buf;                 /* the worker's bytes, handed over on the loop */
    size_t fill_len;
    uint64_t fill_ns;                /* how long the worker took */
    uint64_t snapshot_fill_ns_total; /* time serialising snapshots off the loop */
    uint64_t snapshot_ns_total;      /* time serialising (and pinning) snapshots on the loop */
    uint64_t entries_applied, entries_skipped, commands_applied, snapshots_taken,
        snapshots_restored;
    uint64_t client_commands_applied; /* commands other than the site table's own (BCP) */
    uint64_t apply_ns_total;
    uint64_t restore_ns_total; /* time spent installing snapshots (fsm_restore) */
    void (*apply_observe)(void *data, uint64_t ns); /* optional latency hook */
    /* Optional: whether a snapshot may be taken now; see node/leader_watch.h for why. */
    bool (*snapshot_gate)(void *data);
    void *snapshot_gate_data;
    uint64_t snapshots_deferred;
    void *observe_data;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

void tandem_fsm_init(struct tandem_fsm *f, struct tandem_store *store);
void tandem_fsm_set_raft(struct tandem_fsm *f, struct raft *raft);
void tandem_fsm_set_claim(struct tandem_fsm *f, tandem_fsm_claim_fn claim, void *data);

/* Entry framing: [u32 magic][u32 payload length][protobuf Batch][zero pad to 8 bytes]. raft_uv
 * cannot read back entries whose length is not a multiple of 8. */
#define TANDEM_ENTRY_MAGIC      0x31424454u /* "TDB1" little-endian */
#define TANDEM_ENTRY_HEADER_LEN 8
/* Encodes batch into buf->base (raft_malloc'd; ownership to the caller). Returns 0,
 * TANDEM_LIMIT (payload past 4 GiB) or TANDEM_NOMEM. */
int tandem_entry_encode(const Tandem__Batch *batch, struct raft_buffer *buf);
/* Decodes; the caller frees *out with tandem__batch__free_unpacked(*out, NULL). Returns 0, or
 * TANDEM_CORRUPT with errmsg (TANDEM_ERRMSG_SIZE bytes). */
int tandem_entry_decode(const void *data, size_t len, Tandem__Batch **out, char *errmsg);

/* One step of the apply digest chain: out = SHA-256(prev || index (LE) || entry bytes), taken by
 * every applied entry. Returns 0, or TANDEM_CRYPTO / TANDEM_NOMEM with errmsg. */
int tandem_fsm_digest_step(const uint8_t prev[TANDEM_DIGEST_LEN], uint64_t index, const void *data,
                           size_t len, uint8_t out[TANDEM_DIGEST_LEN], char *errmsg);
/* Shield 6's hooks (consensus/raft_shield.h), for an fsm with fill_later set: fill runs on the
 * thread pool and serialises the pinned state into the worker's own buffer (data: the fsm;
 * returns 0 or a raft code); filled runs on the loop afterwards and hands the bytes to raft's
 * buffer array (or, on failure, keeps nothing: raft's callback finalizes). */
int tandem_fsm_snapshot_fill(void *data);
void tandem_fsm_snapshot_filled(void *data, int status);

/* Applies one raw entry at index (used by apply, and by tests driving the FSM directly). */
int tandem_fsm_apply_entry(struct tandem_fsm *f, uint64_t index, const void *data, size_t len);

#endif
