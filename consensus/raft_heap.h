/* A raft heap stacked on the current one that tells a caller whether libraft freed a buffer
 * during one raft_* call, and shields libraft 0.22.1's double free in raft_barrier.
 *
 * Why: in libraft 0.22.1's legacy layer (src/legacy.c, legacyHandleUpdateEntries) raft_apply
 * and raft_barrier copy the new entry into the log and then free the submitted buffer; a
 * failure after that copy (io->truncate or io->append refusing it, io->send failing, as when file
 * descriptors run out) is returned to the caller with the buffer already freed. A failure before
 * the copy (not leader, out of memory) leaves it with the caller. Neither the return code nor
 * raft's public state tells the two apart. raft_barrier frees its own buffer again on every
 * error (its err_after_buf_alloc label): a double free whenever the failure came after the copy.
 *
 * A watch lasts one raft_* call on the calling thread (libuv's threadpool may allocate through
 * raft's heap at the same time: its threads never see the watch). During it, raft_free of the
 * watched pointer is counted and deferred to tandem_raft_heap_unwatch, which frees the block
 * once however many times libraft freed it; deferring also keeps the address from being handed
 * to another allocation between the two frees. */
#ifndef TANDEM_CONSENSUS_RAFT_HEAP_H
#define TANDEM_CONSENSUS_RAFT_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Stacks the watching heap on raft's current heap (raft_heap_get), unless it already is the
 * current one. Every operation is passed to that heap, so blocks allocated before are freed
 * correctly after. Call it on the loop thread before raft runs (raft_heap_set is not safe while
 * libuv's threadpool allocates through raft's heap): tandem_raft_start does. Calling it again is
 * harmless. */
void tandem_raft_heap_install(void);

/* Starts watching ptr (a block from raft_malloc). Returns false, watching nothing, when the
 * watching heap is not raft's current heap (somebody set another since) or a watch is already
 * on: the caller then cannot know and must decide as without the watch. */
bool tandem_raft_heap_watch(void *ptr);

/* Starts watching the first block of exactly size bytes that raft allocates on this thread from
 * now on (raft_barrier's 8-byte entry buffer is its first allocation). Returns as _watch. */
bool tandem_raft_heap_watch_next(size_t size);

/* Ends the watch: frees the watched block once if libraft freed it at least once, and returns
 * how many times libraft freed it (0: the block is still the caller's, or raft keeps it). */
unsigned tandem_raft_heap_unwatch(void);

/* How many second frees of a watched block were absorbed since start (each one a double free
 * libraft would have done). */
uint64_t tandem_raft_heap_double_frees(void);

#endif
