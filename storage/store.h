/* The LMDB state store: one environment per node holding the replicated state, its
 * applied_index and apply_digest, grouped write transactions, snapshots and full-state digests. */
#ifndef TANDEM_STORAGE_STORE_H
#define TANDEM_STORAGE_STORE_H

#include <lmdb.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "storage/error.h"
#include "storage/unsynced.h"

#define TANDEM_DIGEST_LEN        32
#define TANDEM_STORE_KEY_LEN_MAX 511 /* LMDB's default max key size */
/* A snapshot must stay well under 2 GiB (DESIGN.md): raft_uv keeps it in one buffer. */
#define TANDEM_SNAPSHOT_BYTES_MAX ((size_t)1900 * 1024 * 1024)
#define TANDEM_SNAPSHOT_FORMAT    1
/* How long a snapshot restore waits for backup copies of the environment to finish. */
#define TANDEM_STORE_COPY_WAIT_MS (30u * 60u * 1000u)

/* The named databases inside the environment; `meta` holds applied_index and apply_digest and is
 * not part of the state digest. Later domains add rows here: snapshots and digests follow. */
#define TANDEM_STORE_DBS(X)                                                                        \
    X(META, "meta")                                                                                \
    X(KV, "kv")                                                                                    \
    X(JOBS, "jobs")                                                                                \
    X(JOB_IDX, "job_idx")                                                                          \
    X(BOXES, "boxes")                                                                              \
    X(BOX_IDX, "box_idx")                                                                          \
    X(TRACE, "trace")                                                                              \
    X(TRACE_IDX, "trace_idx")                                                                      \
    X(DISPOSALS, "disposals")                                                                      \
    X(DOMAIN_META, "domain_meta")                                                                  \
    X(SITES, "sites")                                                                              \
    X(DRILLS, "drills")                                                                            \
    X(CAPACITY, "capacity")                                                                        \
    X(CAPACITY_HISTORY, "capacity_history")                                                        \
    X(USERS, "users")                                                                              \
    X(AUDIT, "audit")                                                                              \
    X(BACKUPS, "backups")

enum tandem_store_db {
#define TANDEM_STORE_DB_ENUM(id, name) TANDEM_DB_##id,
    TANDEM_STORE_DBS(TANDEM_STORE_DB_ENUM)
#undef TANDEM_STORE_DB_ENUM
        TANDEM_DB_COUNT
};

struct tandem_store {
    MDB_env *env; /* owned */
    MDB_dbi dbi[TANDEM_DB_COUNT];
    MDB_txn *write_txn; /* owned: the grouped write transaction, NULL when none is open */
    char dir[PATH_MAX]; /* the environment's directory */
    size_t map_size;
    uint64_t applied_index;                  /* as of the open write txn (or last commit) */
    uint8_t apply_digest[TANDEM_DIGEST_LEN]; /* likewise */
    uint64_t commits;                        /* grouped commits done */
    uint64_t write_txn_opened_ns;            /* uv_hrtime() when the open write txn began */
    /* Called after each grouped commit that worked, with the nanoseconds it took (LMDB's commit
     * and its fdatasync); NULL: none. Set after tandem_store_open, which clears it. */
    void (*commit_observe)(void *data, uint64_t ns);
    void *observe_data; /* borrowed: commit_observe's */
    /* Readers of env on the thread pool (backups, pool reads, the audit walk), counted by
     * tandem_store_copy_begin/end: a restore waits for them (up to TANDEM_STORE_COPY_WAIT_MS)
     * before it closes env and swaps the directory. */
    atomic_uint copies;
    /* A snapshot install drained the readers (tandem_store_copies_drain, on the thread pool) and
     * will swap env: no new reader starts until tandem_store_swap_done, so the restore on the
     * loop finds none to wait for. */
    atomic_bool swapping;
    bool poisoned; /* a commit failed or an abort could not reload applied_index: writes are
                      refused until the store is reopened */
    /* Commits are not synced (MDB_NOSYNC; storage/unsynced.h): a store opened with
     * tandem_store_open marks its directory with the running boot before its first commit
     * (marked), and a close that synced everything removes the mark. */
    char boot_id[TANDEM_BOOT_ID_LEN + 1];
    bool mark_unsynced; /* this store marks its directory (the live one; not a restore's build) */
    bool marked;        /* the mark is on disk */
    /* tandem_store_open refused dir: it holds commits never synced, made under another boot (or
     * before a sync failed). The node discards it (tandem_store_discard) and raft rebuilds it. */
    bool untrusted;
    /* Set after open (tandemd): a restore's swap renames the replaced environment to
     * DIR.trash-<index> (trash) instead of removing it, for the caller to remove off the loop:
     * unlinking a data file of gigabytes holds the thread that does it. Unset: removed in the
     * restore. Whatever a crash leaves there is removed by the next open. */
    bool trash_later;
    char trash[PATH_MAX + 32]; /* "" or the replaced environment awaiting removal */
    char errmsg[TANDEM_ERRMSG_SIZE];
};

/* Every function below that returns int returns 0 or a tandem error code (storage/error.h) and
 * writes the reason into s->errmsg (TANDEM_ERRMSG_SIZE bytes), unless it says otherwise. */

/* Opens (creating when absent) the environment in dir. Refused (TANDEM_CORRUPT, with untrusted
 * set) when dir's unsynced mark names another boot than the running one, or a failed sync. */
int tandem_store_open(struct tandem_store *s, const char *dir, size_t map_size);
/* Commits, and for a marked store syncs the environment and removes the mark (unless the store
 * is poisoned: what it holds is then left for the next open to judge). */
void tandem_store_close(struct tandem_store *s);
/* Removes the environment in dir (its files, its mark and the directory), durably. */
int tandem_store_discard(const char *dir, char *errmsg);
/* Syncs env's data file (dir its directory) to disk: callable from any thread while the loop
 * commits. A failure marks dir TANDEM_UNSYNCED_FAILED (no later open trusts it) and returns a
 * tandem code with errmsg filled; the caller must stop the node. */
int tandem_store_sync(MDB_env *env, const char *dir, char *errmsg);
/* Opens the LMDB data file `file` (an environment without its directory: MDB_NOSUBDIR) read-only
 * and without a lock file, for a backup's copy: every named database must be there and the meta
 * record well-formed (TANDEM_CORRUPT otherwise, as for LMDB's own damage codes); applied_index
 * and apply_digest are loaded. Writes are refused (there is no write transaction). Close it with
 * tandem_store_close. */
int tandem_store_open_readonly(struct tandem_store *s, const char *file);
/* Opens the environment in dir (a live node's state/) read-only beside the process that writes
 * it: LMDB's lock file keeps this reader's pages from being reused, so it is safe while tandemd
 * runs. applied_index and apply_digest are loaded; writes are refused. Close with
 * tandem_store_close. */
int tandem_store_open_shared(struct tandem_store *s, const char *dir);

/* Returns the grouped write transaction, opening it when none is open. Refused (TANDEM_STATE)
 * once the store is poisoned. */
int tandem_store_write_txn(struct tandem_store *s, MDB_txn **txn);
/* Commits the grouped write transaction, if any. A failed commit poisons the store (writes are
 * refused): the caller must stop the node (the raft log replays from the last committed
 * applied_index on the next start). */
int tandem_store_commit(struct tandem_store *s);
/* Whether the open write transaction is older than interval_ns (so it is time to commit). */
bool tandem_store_commit_due(const struct tandem_store *s, uint64_t now_ns, uint64_t interval_ns);
/* Throws the open write transaction away and reloads applied_index/apply_digest from disk. */
void tandem_store_abort(struct tandem_store *s);
/* Refuses every later write until the store is reopened: for an owner that lost part of what
 * it applied (a failed apply after earlier entries of the same group), so nothing is applied on
 * top of a state with a hole in it. The raft log replays the lost entries after a restart. */
void tandem_store_poison(struct tandem_store *s);

/* Records the applied entry inside the open write transaction (same txn as its data). index
 * must be above applied_index (asserted: replay skips what is already applied). */
int tandem_store_set_applied(struct tandem_store *s, uint64_t index,
                             const uint8_t digest[TANDEM_DIGEST_LEN]);

/* A read-only transaction on committed state (commit first to see the latest apply). The caller
 * aborts it. MDB_NOTLS is set, so it may be used from another thread. */
int tandem_store_read_txn(struct tandem_store *s, MDB_txn **txn);

/* Sets s->applied_index and s->apply_digest to what txn sees (a reader on the thread pool works
 * on a copy of the store: the node's own fields move on with apply). */
int tandem_store_meta_read(struct tandem_store *s, MDB_txn *txn);

/* SHA-256 over every state database (not meta), in key order, framed so that no two different
 * states hash alike. Computed in the given read transaction. */
int tandem_store_state_digest(struct tandem_store *s, MDB_txn *txn, uint8_t out[TANDEM_DIGEST_LEN]);
/* The same digest with one database (enum tandem_db) left out, -1 for none: GET /v1/digest's
 * data_digest leaves the audit trail out, which grows with every request, refused ones too. */
int tandem_store_digest_without(struct tandem_store *s, MDB_txn *txn, int skip_db,
                                uint8_t out[TANDEM_DIGEST_LEN]);

/* Serialises the state visible in txn into one malloc'd buffer (*out, *out_len; the caller
 * frees with free()). Header: magic, format, applied_index, apply_digest, record count and a
 * SHA-256 of the payload. */
int tandem_store_snapshot_write(struct tandem_store *s, MDB_txn *txn, void **out, size_t *out_len);

/* The same snapshot, byte for byte, written to fd (a new file opened O_RDWR: it is mapped to be
 * checksummed) in chunks, with no bound on its size and bounded memory; then fdatasync'd. *out_len
 * is the file's length, *out_index the state's applied index and checksum the header's (which
 * covers every byte). The caller names,
 * renames and fsyncs the directory. */
int tandem_store_snapshot_write_fd(struct tandem_store *s, MDB_txn *txn, int fd, uint64_t *out_len,
                                   uint64_t *out_index, uint8_t checksum[TANDEM_DIGEST_LEN]);

/* A snapshot file mapped read-only, to hand to the functions below that take a buffer. */
struct tandem_store_map {
    void *base;
    size_t len;
};
/* Returns 0, or a tandem code with errmsg (TANDEM_ERRMSG_SIZE) filled: TANDEM_NOTFOUND when
 * there is no such file, TANDEM_CORRUPT when it cannot hold a snapshot. */
int tandem_store_snapshot_map(const char *path, struct tandem_store_map *out, char *errmsg);
void tandem_store_snapshot_unmap(struct tandem_store_map *m); /* a zeroed map is fine */

/* The bytes env's data file uses (its last page, times the page size); 0 when LMDB cannot say.
 * Callable from any thread. */
uint64_t tandem_store_used_bytes(MDB_env *env);

/* Reads the header of a snapshot buffer and verifies its checksum. TANDEM_CORRUPT with errmsg
 * (TANDEM_ERRMSG_SIZE bytes) filled when it is no valid snapshot. */
int tandem_store_snapshot_check(const void *buf, size_t len, uint64_t *applied_index, char *errmsg);

/* A reader of env on the thread pool starts: false (and nothing counted) while a snapshot
 * install is about to swap env, when the caller answers "busy, retry". Then
 * tandem_store_copy_end once the reader is done with env. Any thread. */
bool tandem_store_copy_begin(struct tandem_store *s);
void tandem_store_copy_end(struct tandem_store *s);
/* For a snapshot install, on the thread pool: from now on no reader starts, and this waits for
 * the running ones to end (up to TANDEM_STORE_COPY_WAIT_MS; then TANDEM_BUSY with errmsg
 * filled, and the restore on the loop waits for what is left). tandem_store_swap_done, on the
 * loop once the install is over (restored or not), lets readers start again. */
int tandem_store_copies_drain(struct tandem_store *s, char *errmsg);
void tandem_store_swap_done(struct tandem_store *s);
/* The replaced environment a restore left in trash (trash_later): copied into path (size
 * bytes) and forgotten by s; false when there is none. Then tandem_store_trash_remove(path), on
 * any thread. */
bool tandem_store_trash_take(struct tandem_store *s, char *path, size_t size);
/* Removes an environment directory (its files and the directory); 0 or -1 with errno. */
int tandem_store_trash_remove(const char *path);

/* Reads the header of a snapshot buffer without verifying its checksum (a cheap look at which
 * snapshot it claims to be: index and header checksum). TANDEM_CORRUPT with errmsg
 * (TANDEM_ERRMSG_SIZE bytes) filled when it cannot be one. */
int tandem_store_snapshot_peek(const void *buf, size_t len, uint64_t *applied_index,
                               uint8_t checksum[TANDEM_DIGEST_LEN], char *errmsg);

/* Restores a snapshot: builds a new environment beside the current one, verifies it, then swaps
 * it in. When the local state is already at or past the snapshot's index the swap is skipped
 * (after verifying the buffer). Any pending write transaction is committed first. */
int tandem_store_restore(struct tandem_store *s, const void *buf, size_t len);

/* A snapshot's environment built ahead of its restore, off the loop. */
struct tandem_store_prepared {
    const void *buf; /* borrowed, for identity only: the buffer it was built from */
    size_t len;
    uint8_t checksum[TANDEM_DIGEST_LEN]; /* the header's, which covers every byte */
    bool ready;                          /* DIR.new holds exactly buf's state, verified */
};

/* Builds, verifies and syncs the state of snapshot buf (checksum, records, state digest) in
 * DIR.new beside the store at dir, as tandem_store_restore would: on any thread, touching no
 * open store. *out is filled (ready) on success; else errmsg (TANDEM_ERRMSG_SIZE bytes) says why
 * and nothing is left behind. */
int tandem_store_restore_prepare(const char *dir, size_t map_size, const void *buf, size_t len,
                                 struct tandem_store_prepared *out, char *errmsg);

/* tandem_store_restore of a buffer prepared: when prepared is ready for this very buffer
 * (pointer, length, header checksum) only the swap runs, with no pass over the bytes; otherwise,
 * or with prepared NULL, the whole restore. A prepared environment left unused is removed. */
int tandem_store_restore_prepared(struct tandem_store *s, const void *buf, size_t len,
                                  const struct tandem_store_prepared *prepared);

/* fsyncs the directory that holds path (a file or a directory), best effort: makes a rename or
 * a new entry there durable. */
void tandem_store_fsync_parent(const char *path);

/* Hex of a digest into out (2*TANDEM_DIGEST_LEN+1 bytes). */
void tandem_digest_hex(const uint8_t digest[TANDEM_DIGEST_LEN], char *out);

/* Writes "what: <LMDB's text for rv>" into s->errmsg and returns rv itself, the LMDB code: for
 * record code (domain_codec.h, replication/) that still passes LMDB codes up. New code should
 * translate with tandem_error_from_mdb instead. */
int tandem_store_error(struct tandem_store *s, int rv, const char *what);

#endif
