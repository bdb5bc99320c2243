/* Background priority for the thread pool. The loop thread carries heartbeats, elections and
 * every request; the pool carries bulk work whose length grows with the state (a snapshot of
 * gigabytes, a backup, a digest, the audit walk, scrypt). When both want a CPU, the loop must
 * win: a snapshot that takes a few seconds longer costs nothing, a heartbeat held behind it
 * costs an election. So a pool thread lowers its own CPU priority (nice) for the length of each
 * piece of bulk work, and takes the process's back when it ends. RocksDB lowers its compaction
 * threads the same way.
 *
 * Back, not for good: libuv's pool threads take libuv's own locks between two pieces of work
 * (the queue, the loop's list of finished work), and the loop takes the same locks to queue work
 * or collect what finished. A thread kept low that holds one of them when the CPUs are busy
 * waits long for a CPU, and the loop waits behind it (a priority inversion: loop stalls of
 * 50-140 ms at 10 million keys, issue 17). Between two pieces of work a thread is at the loop's
 * priority, so it holds those locks at that priority too; the work libraft queues (file writes
 * and syncs of its log) runs there as well.
 *
 * Lowering one's own priority needs no privilege; taking it back needs CAP_SYS_NICE or an
 * RLIMIT_NICE that allows the process's own nice value (systemd: LimitNICE=+0, set in
 * deploy/systemd/tandemd@.service). Without either, a thread stays low after its first piece of
 * work, as before this change, and is counted (tandem_background_threads_stuck). Best effort: a
 * failure only loses the preference, never the work. */
#ifndef TANDEM_STORAGE_BACKGROUND_H
#define TANDEM_STORAGE_BACKGROUND_H

#include <stdbool.h>
#include <stdint.h>

#define TANDEM_BACKGROUND_NICE_DEFAULT 10
#define TANDEM_BACKGROUND_NICE_MAX     19 /* the lowest priority Linux has */

/* The nice increment pool work takes from now on (0: none; 1..19); set once at start, before
 * the pool runs anything. Values past the range are clamped. */
void tandem_background_set_nice(int nice);
int tandem_background_nice(void);
/* At the start of a piece of pool work: lowers the calling thread by the configured increment
 * until tandem_background_leave. Returns true when this call lowered it (false: nothing
 * configured, setpriority refused, or the thread is still low from an earlier piece). Every
 * enter is paired with a leave on the same thread, never nested. */
bool tandem_background_enter(void);
/* At the end of that piece of work: the thread takes back the priority it had before enter. */
void tandem_background_leave(void);
struct uv_work_s; /* libuv's uv_work_t */
/* A pool work callback's whole body: fn(work) between enter and leave. */
void tandem_background_run(void (*fn)(struct uv_work_s *work), struct uv_work_s *work);
/* Pieces of work run at the background priority, threads that could not take their priority
 * back (they stay low), and lowerings setpriority refused. */
uint64_t tandem_background_works_lowered(void);
uint64_t tandem_background_threads_stuck(void);
uint64_t tandem_background_failures(void);

#endif
