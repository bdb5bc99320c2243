/* Background priority for the thread pool. The loop thread carries heartbeats, elections and
 * every request; the pool carries bulk work whose length grows with the state (a snapshot of
 * gigabytes, a backup, a digest, the audit walk, scrypt). When both want a CPU, the loop must
 * win: a snapshot that takes a few seconds longer costs nothing, a heartbeat held behind it
 * costs an election. So every thread that runs pool work lowers its own CPU priority (nice) the
 * first time it does, and keeps it: libuv's pool threads live as long as the process, and the
 * work libraft itself queues there (file writes, snapshot files) is bulk work as well. RocksDB
 * does the same with its compaction threads.
 *
 * Raising one's own nice value needs no privilege; nothing here ever lowers it again, which
 * would. Best effort: a failure only loses the preference, so it is counted, not fatal. */
#ifndef TANDEM_STORAGE_BACKGROUND_H
#define TANDEM_STORAGE_BACKGROUND_H

#include <stdbool.h>
#include <stdint.h>

#define TANDEM_BACKGROUND_NICE_DEFAULT 10
#define TANDEM_BACKGROUND_NICE_MAX     19 /* the lowest priority Linux has */

/* The nice increment pool threads take from now on (0: none; 1..19); set once at start, before
 * the pool runs anything. Values past the range are clamped. */
void tandem_background_set_nice(int nice);
int tandem_background_nice(void);
/* At the start of every pool work callback: lowers the calling thread once, by the configured
 * increment. Returns true when this call lowered it. Any thread. */
bool tandem_background_enter(void);
/* Pool threads lowered so far, and attempts that failed (setpriority refused). */
uint64_t tandem_background_threads_lowered(void);
uint64_t tandem_background_failures(void);

#endif
