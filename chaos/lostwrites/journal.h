/* The undo journal's on-disk format, shared by the lost-writes shim (writer) and the rollback.
 *
 * One journal per file (inode) in TANDEM_LOSTWRITES_DIR, named DEV-INO-BTIMESEC.BTIMENSEC.journal:
 *   struct lw_journal_header, then header.path_len bytes of the file's path when the journal was
 *   made, then header.root_len bytes of TANDEM_LOSTWRITES_ROOT (where the rollback looks for the
 *   file by identity if it was renamed since); then records, each a struct lw_record followed by
 *   record.data_len bytes. Integers are in the machine's order: journals never leave the host.
 *
 * Records, in the order the operations happened (the rollback undoes them last to first):
 *   LW_WRITE    a write at .offset is about to happen; data = the bytes it overwrites (those of
 *               [offset, min(offset + len, old_size))); undo: write them back, truncate to
 *               .old_size.
 *   LW_CONTENT  data = bytes at .offset that a following LW_TRUNCATE cuts off (all-zero chunks
 *               are left out: the undo's truncation brings them back as zeros); undo: write them.
 *   LW_TRUNCATE the size goes from .old_size to .offset; undo: truncate to .offset, then to
 *               .old_size (zero-filling what the truncation cut, before the LW_CONTENT undos).
 *   LW_SYNC     an fsync/fdatasync finished while other records were appended: every record
 *               that starts before journal offset .offset is durable and must not be undone.
 * A record cut short by the kill (the last one) is ignored: the shim appends a record completely
 * before it lets the write it describes run, so a torn record's write never happened. */
#ifndef TANDEM_LOSTWRITES_JOURNAL_H
#define TANDEM_LOSTWRITES_JOURNAL_H

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define LW_JOURNAL_MAGIC  "TLWJRNL1"
#define LW_RECORD_MAGIC   0x4c57524bu /* "LWRK" */
#define LW_JOURNAL_SUFFIX ".journal"
#define LW_CHUNK_BYTES    65536 /* truncations are captured and checked for zeros in chunks */
/* A rollback is a power cut, and the next start a new boot: the rollback writes a fresh boot id
 * into JOURNALS/LW_BOOT_ID_FILE and the shim answers opens of the kernel's with it. */
#define LW_BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
#define LW_BOOT_ID_FILE "boot_id"

enum lw_record_type {
    LW_WRITE = 1,
    LW_CONTENT = 2,
    LW_TRUNCATE = 3,
    LW_SYNC = 4,
};

/* What tells one file from another, even after a rename or an inode number's reuse. */
struct lw_identity {
    uint64_t dev;
    uint64_t ino;
    int64_t btime_sec; /* birth time (statx STATX_BTIME); 0 when the file system has none */
    uint32_t btime_nsec;
    uint32_t pad;
};

struct lw_journal_header {
    char magic[8];
    struct lw_identity id;
    uint32_t path_len;
    uint32_t root_len;
    uint32_t writer_pid; /* the process that made it: no rollback while it holds the journal */
    uint32_t pad;
};

struct lw_record {
    uint32_t magic;
    uint32_t type;
    uint64_t offset;
    uint64_t old_size;
    uint64_t data_len;
};

/* The identity of the file statx described (STATX_BASIC_STATS | STATX_BTIME asked). */
static inline struct lw_identity lw_identity_of(const struct statx *st)
{
    struct lw_identity id;
    memset(&id, 0, sizeof id);
    id.dev = ((uint64_t)st->stx_dev_major << 32) | st->stx_dev_minor;
    id.ino = st->stx_ino;
    if (st->stx_mask & STATX_BTIME) {
        id.btime_sec = st->stx_btime.tv_sec;
        id.btime_nsec = st->stx_btime.tv_nsec;
    }
    return id;
}

static inline int lw_identity_equal(const struct lw_identity *a, const struct lw_identity *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->btime_sec == b->btime_sec &&
           a->btime_nsec == b->btime_nsec;
}

#endif
