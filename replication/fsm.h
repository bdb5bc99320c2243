/* The replicated state machine: raft's FSM over the LMDB store. Applies packed batch entries,
 * keeps the apply_digest chain, skips replayed entries, and snapshots/restores whole states. */
#ifndef TANDEM_REPLICATION_FSM_H
#define TANDEM_REPLICATION_FSM_H

#include <limits.h>
#include <raft.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "replication/snapshot_file.h"
#include "storage/error.h"
#include "storage/sm.h"
#include "storage/store.h"
#include "tandem.pb-c.h"

/* Retention by size (issue 17): libraft's legacy API counts the log in entries
 * (raft_set_snapshot_threshold / raft_set_snapshot_trailing, read at each apply and snapshot), but
 * an entry is a batch of up to batch_bytes_max_kib. The budget sees each applied entry's length
 * and derives the counts: a snapshot once snapshot_bytes of log follow the last one, less what
 * arrived while the last one was being taken (lead_bytes), or once threshold_max entries do;
 * and behind a snapshot as many entries as fit in trailing_bytes (at
 * most trailing_max). Entries the FSM never sees (barriers, configurations) count as 0 bytes. */
#define TANDEM_LOG_BUDGET_RING_MAX (1u << 18) /* entry sizes remembered: 4 MiB at most */
/* The largest snapshot stagger a node takes, in thousandths of the thresholds: the log a node
 * holds before its first snapshot is then at most 1.5 x snapshot_log_mib (plus the trailing). */
#define TANDEM_SNAPSHOT_STAGGER_PERMILLE_MAX 500u
struct tandem_log_budget_entry {
    uint64_t index;
    uint64_t len;
};
struct tandem_log_budget {
    uint64_t snapshot_bytes, trailing_bytes; /* 0: by entry counts only */
    unsigned threshold_max, trailing_max;    /* snapshot_threshold, snapshot_trailing */
    uint64_t snapshot_index;                 /* the last snapshot (taken or installed) */
    uint64_t bytes_since;                    /* log bytes applied after it */
    struct tandem_log_budget_entry *ring;    /* owned: the newest entries, oldest at ring_head */
    size_t ring_cap, ring_head, ring_n;
    /* The first snapshot this node takes after it starts or installs one waits this many
     * thousandths of the thresholds longer, so that the members, which all see the same log,
     * do not all snapshot at the same index (tandem_fsm_set_snapshot_stagger). */
    unsigned stagger_permille;
    bool taken; /* this node took a snapshot since it started or last installed one */
    /* The bytes the log holds: the entries kept behind the last snapshot raft finished (its
     * trailing) and every entry after it. Entries raft loaded from before the snapshot it
     * started from are not known (counted from the next snapshot on). A snapshot being taken
     * trims nothing until it is written, however long that takes. */
    uint64_t held_bytes;
    uint64_t taking_kept; /* the trailing bytes of the snapshot being taken */
    bool taking;
    /* The bytes applied while the last snapshot was being taken: the next one starts that much
     * early (up to 3/4 of snapshot_bytes), so that the log reaches its budget only as it ends. */
    uint64_t lead_bytes;
    /* Bytes of the budget left to what is not entries (raft_uv's segments): the budget is
     * snapshot_bytes + trailing_bytes + reserve_bytes. */
    uint64_t reserve_bytes;
};
/* Segments raft_uv holds on disk beyond the entries' bytes: the open one, the ones it prepares
 * ahead, and the closed one straddling the trailing's start (it removes whole segments only). */
#define TANDEM_LOG_SEGMENTS_RESERVED 4u
/* Sizes the ring for trailing_max entries (up to TANDEM_LOG_BUDGET_RING_MAX). Returns 0 or
 * TANDEM_NOMEM. */
int tandem_log_budget_init(struct tandem_log_budget *b, uint64_t snapshot_bytes,
                           uint64_t trailing_bytes, unsigned threshold_max, unsigned trailing_max);
void tandem_log_budget_free(struct tandem_log_budget *b);
/* An entry of len bytes at index reached the FSM (applied or skipped as a replay). */
void tandem_log_budget_applied(struct tandem_log_budget *b, uint64_t index, uint64_t len);
/* The snapshot_threshold raft should use now: 1 once the entries since the last snapshot hold
 * snapshot_bytes (raft snapshots at its next check), else threshold_max; both stretched by
 * stagger_permille until this node has taken a snapshot. */
unsigned tandem_log_budget_threshold(const struct tandem_log_budget *b);
/* The snapshot_trailing for a snapshot at index: the newest entries up to index whose bytes fit
 * in trailing_bytes, at least 1 and at most trailing_max; *kept_bytes gets their bytes. */
unsigned tandem_log_budget_trailing(const struct tandem_log_budget *b, uint64_t index,
                                    uint64_t *kept_bytes);
/* A snapshot at index was taken or installed: the count starts again after it. */
void tandem_log_budget_snapshot(struct tandem_log_budget *b, uint64_t index);
/* A snapshot starts, which will keep kept_bytes of entries behind it (tandem_log_budget_trailing).
 */
void tandem_log_budget_taking(struct tandem_log_budget *b, uint64_t kept_bytes);
/* The snapshot being taken ended: when written, raft trimmed the log to its trailing. */
void tandem_log_budget_taken(struct tandem_log_budget *b, bool written);
/* A snapshot was installed: the log holds only what follows it. */
void tandem_log_budget_installed(struct tandem_log_budget *b);
/* Whether the log holds snapshot_bytes + trailing_bytes (the budget less reserve_bytes) while a
 * snapshot is being taken, which
 * alone trims it (never without byte budgets; never while none is taken, which would wait for
 * writes to reach its threshold). */
bool tandem_log_budget_full(const struct tandem_log_budget *b);

/* Asks the proposer whether this node waits for the batch (proposer_id, serial) with n commands;
 * returns an array of n results for apply to fill, or NULL when nobody waits. */
typedef struct tandem_result *(*tandem_fsm_claim_fn)(void *data, uint64_t proposer_id,
                                                     uint64_t serial, size_t n_commands);

/* Copies the snapshot file `name` (len bytes) from the member whose raft address is `address`
 * ("name|site|host:port|url", consensus/member.h) into the new file dest, on the thread pool.
 * Returns 0, or a tandem code with errmsg (TANDEM_ERRMSG_SIZE) filled; gives up, failing, soon
 * after *cancel turns true. */
typedef int (*tandem_fsm_fetch_fn)(void *data, const char *address, const char *name, uint64_t len,
                                   const char *dest, const atomic_bool *cancel, char *errmsg);

/* How long an install tries to fetch the file a reference names by default (from the sender,
 * then from every member of the snapshot's configuration, pausing between rounds) before it
 * fails. While it tries, raft counts the install in flight: the node neither votes nor stands. */
#define TANDEM_SNAPSHOT_FETCH_DEADLINE_MS 300000u
#define TANDEM_SNAPSHOT_FETCH_PAUSE_MS    1000u

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
    uint64_t snapshot_ns_total; /* time serialising (and pinning) snapshots on the loop */
    uint64_t entries_applied, entries_skipped, commands_applied, snapshots_taken,
        snapshots_restored;
    uint64_t snapshots_failed; /* serialisations that failed (a state past the snapshot's cap) */
    uint64_t client_commands_applied; /* commands other than the site table's own (BCP) */
    uint64_t apply_ns_total;
    uint64_t restore_ns_total; /* time spent installing snapshots (fsm_restore) */
    /* Shield 7 (tandem_fsm_install_prepare): the state of the snapshot raft installs, built on
     * the thread pool before raft's restore, which then only swaps it in. Written by the worker,
     * read on the loop after it (raft's put callback follows the work's). */
    struct tandem_store_prepared prepared;
    int prepare_rv;
    uint64_t installs_prepared; /* restores that only swapped a prepared state in */
    char prepare_errmsg[TANDEM_ERRMSG_SIZE];
    /* Snapshot files (replication/snapshot_file.h, tandem_fsm_set_snapshot_files): a state whose
     * store uses more than files_inline_max bytes is snapshotted into files_dir, and raft holds a
     * reference; an install of a reference fetches the file through fetch. */
    char files_dir[PATH_MAX]; /* "": inline snapshots only */
    uint64_t files_inline_max;
    tandem_fsm_fetch_fn fetch;
    void *fetch_data;
    atomic_bool fetch_cancel;            /* tandem_fsm_cancel_fetch: the node is stopping */
    unsigned fetch_deadline_ms;          /* TANDEM_SNAPSHOT_FETCH_DEADLINE_MS unless set */
    struct tandem_store_map install_map; /* the file prepared, mapped until the restore */
    uint64_t snapshot_files_written;     /* loop only */
    _Atomic uint64_t snapshot_files_fetched, snapshot_fetch_bytes, snapshot_fetch_failures;
    void (*apply_observe)(void *data, uint64_t ns); /* optional latency hook */
    /* Optional: whether a snapshot may be taken now; see node/leader_watch.h for why. */
    bool (*snapshot_gate)(void *data);
    void *snapshot_gate_data;
    uint64_t snapshots_deferred;
    uint64_t state_checks_skip; /* entries applied before the next whole-state check (fsm.c) */
    /* Retention by size: set by tandem_fsm_set_log_budget; inactive (counts only) otherwise. */
    struct tandem_log_budget log_budget;
    bool log_budget_on;
    unsigned snapshot_threshold_now, snapshot_trailing_now; /* what raft was last told */
    void *observe_data;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

void tandem_fsm_init(struct tandem_fsm *f, struct tandem_store *store);
void tandem_fsm_set_raft(struct tandem_fsm *f, struct raft *raft);
/* Turns retention by size on (after tandem_fsm_set_raft): the FSM adjusts raft's snapshot
 * threshold and trailing from the entries it sees. Returns 0 or TANDEM_NOMEM. */
int tandem_fsm_set_log_budget(struct tandem_fsm *f, uint64_t snapshot_bytes,
                              uint64_t trailing_bytes, uint64_t reserve_bytes,
                              unsigned threshold_max, unsigned trailing_max);
/* Staggers this node's snapshots (after tandem_fsm_set_log_budget): its first one after a start
 * or an install waits permille thousandths (below 1000) of the thresholds longer. Give each
 * member its own share, so that their first snapshots are that far apart: they all see the same
 * log. Later ones drift apart or together with each node's lead (lead_bytes). */
void tandem_fsm_set_snapshot_stagger(struct tandem_fsm *f, unsigned permille);
/* Whether the node's raft log is full (tandem_log_budget_full): false without a budget. *held
 * and *budget are filled either way (0 without a budget). */
bool tandem_fsm_log_full(const struct tandem_fsm *f, uint64_t *held, uint64_t *budget);
/* Whether this node is taking a snapshot: from raft's snapshot call (the read transaction pinned)
 * until raft finalizes it, written to disk or not. Loop thread. */
bool tandem_fsm_snapshot_taking(const struct tandem_fsm *f);
/* Releases what tandem_fsm_set_log_budget allocated. */
void tandem_fsm_close(struct tandem_fsm *f);
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

/* Shield 7's hook (consensus/raft_shield.h): on the thread pool, builds the state of the
 * snapshot raft is about to install beside the store (data: the fsm), for fsm_restore to swap
 * in; for a reference, first fetches the file it names, from sender (the InstallSnapshot's
 * raft address, "" when unknown) or another member. A failure of an inline snapshot only costs
 * the restore its shortcut (it builds on the loop and reports then): returns 0. A reference
 * whose file could not be had or built returns the code, errmsg (TANDEM_ERRMSG_SIZE) saying
 * why: no restore on the loop could do better, so the shield stops the node before raft stores
 * the install. Returning 0, it has also drained the store's readers on the pool
 * (tandem_store_copies_drain), so that the swap on the loop waits for none; none starts until
 * tandem_fsm_install_done, shield 7's install_done (on the loop, once raft's callback ran). */
int tandem_fsm_install_prepare(void *data, const struct raft_snapshot *snapshot, const char *sender,
                               char *errmsg);
void tandem_fsm_install_done(void *data);

/* Snapshots of a state past inline_max bytes go to files in dir (created if absent), fetched
 * through fetch on install (before raft_start: its restore may read a file). Returns 0, or a
 * tandem code with f->errmsg filled. */
int tandem_fsm_set_snapshot_files(struct tandem_fsm *f, const char *dir, uint64_t inline_max,
                                  tandem_fsm_fetch_fn fetch, void *fetch_data);
/* Makes a fetch in progress give up (before the shield's close waits for the install). */
void tandem_fsm_cancel_fetch(struct tandem_fsm *f);

/* Applies one raw entry at index (used by apply, and by tests driving the FSM directly). */
int tandem_fsm_apply_entry(struct tandem_fsm *f, uint64_t index, const void *data, size_t len);

#endif
