/* Paced writeback of a large sequential file write (a snapshot file written or fetched). Left to
 * the kernel, gigabytes stay dirty in the page cache and are flushed at once, by the kernel's
 * own threshold or by the final fdatasync, while raft's log and LMDB wait behind them for their
 * own syncs. Instead, every TANDEM_WRITEBACK_STEP bytes written, the writer starts their
 * writeback and waits for the step before (sync_file_range): at most two steps of it are dirty,
 * and the writer goes at the disk's pace. Best effort: a failure here only loses the pacing; the
 * final fdatasync reports what matters. Any thread. */
#ifndef TANDEM_STORAGE_WRITEBACK_H
#define TANDEM_STORAGE_WRITEBACK_H

#include <stdint.h>

#define TANDEM_WRITEBACK_STEP ((uint64_t)8 << 20)

struct tandem_writeback {
    int fd;
    uint64_t started; /* bytes from 0 whose writeback was started */
};

void tandem_writeback_init(struct tandem_writeback *w, int fd);
/* written: the bytes written to fd so far, from offset 0. */
void tandem_writeback_note(struct tandem_writeback *w, uint64_t written);

#endif
