/* The mark a live state store leaves in its directory while it holds commits that were never
 * synced to disk, and the kernel boot they were made under.
 *
 * The store commits with MDB_NOSYNC and syncs from the thread pool (node/store_sync.h), so the
 * loop never waits on the disk. A process that dies keeps its commits in the page cache, and
 * LMDB's copy-on-write keeps the last committed tree whole: such a store is sound after a
 * restart in the same boot. A machine that loses power loses whatever was not synced, in any
 * order: LMDB's meta page may then point at pages that never reached the disk. So a store whose
 * mark names another boot than the running kernel's is not trusted; the node discards it and
 * raft rebuilds it from its own snapshot and log, which are synced before raft relies on them. */
#ifndef TANDEM_STORAGE_UNSYNCED_H
#define TANDEM_STORAGE_UNSYNCED_H

#include <stdbool.h>

#define TANDEM_UNSYNCED_FILE "unsynced"
/* The running kernel's boot id: a new random UUID at every boot. */
#define TANDEM_BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
#define TANDEM_BOOT_ID_LEN  36
/* What the mark holds after a sync failed: the page cache may have dropped pages the disk never
 * got (Linux marks them clean after a failed writeback), so no boot can trust the store. */
#define TANDEM_UNSYNCED_FAILED "sync-failed"

/* Reads the running kernel's boot id into out (TANDEM_BOOT_ID_LEN + 1 bytes). Returns 0 or a
 * tandem code with errmsg (TANDEM_ERRMSG_SIZE bytes) filled. */
int tandem_boot_id(char *out, char *errmsg);

/* Reads dir's mark: 0 with *present false when there is none, or true with what it holds in
 * boot (TANDEM_BOOT_ID_LEN + 1 bytes; TANDEM_UNSYNCED_FAILED after a failed sync, or an empty
 * string when the mark is torn). A tandem code with errmsg filled when it cannot be read. */
int tandem_unsynced_read(const char *dir, bool *present, char *boot, char *errmsg);

/* Writes dir's mark holding boot, durably (the file and the directory entry are synced) before
 * it returns: it must be on disk before any unsynced commit can be. */
int tandem_unsynced_mark(const char *dir, const char *boot, char *errmsg);

/* Removes dir's mark durably: for a store whose every commit was synced. */
int tandem_unsynced_clear(const char *dir, char *errmsg);

#endif
