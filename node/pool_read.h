/* Reads of a part of the state that grows with it (every job, key, event...) run on libuv's
 * thread pool from a read transaction of their own and come back to the loop with the result,
 * at most TANDEM_POOL_READS_RUNNING_MAX at a time and TANDEM_POOL_READS_WAITING_MAX waiting. */
#ifndef TANDEM_NODE_POOL_READ_H
#define TANDEM_NODE_POOL_READ_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "storage/list.h"
#include "storage/store.h"

/* Reads running on the pool at once. libuv's pool has 4 threads (UV_THREADPOOL_SIZE) and
 * raft_uv prepares and closes its segments and writes snapshots there: two stay free for it,
 * whatever the readers ask. */
#define TANDEM_POOL_READS_RUNNING_MAX 2
/* Reads waiting on the loop for a running one to finish; one more is refused (TANDEM_BUSY:
 * the API answers 503), so a crowd of planners cannot queue without bound. */
#define TANDEM_POOL_READS_WAITING_MAX 32

/* Runs on a pool thread with txn (read-only, aborted by the caller afterwards) and store, a
 * private copy of the node's (its environment and databases, an errmsg of its own, and the
 * applied_index and apply_digest txn sees): it must touch nothing else shared. Returns 0 or a
 * tandem code with store->errmsg filled. */
typedef int (*tandem_pool_read_work_fn)(struct tandem_store *store, MDB_txn *txn, void *data);
/* Runs on the loop once the work ran (rv its result, errmsg its store->errmsg) or could not run
 * (rv TANDEM_STORE: the commit before it or the read transaction failed). */
typedef void (*tandem_pool_read_done_fn)(void *data, int rv, const char *errmsg);

struct tandem_pool_reads {
    uv_loop_t *loop;            /* borrowed */
    struct tandem_store *store; /* borrowed */
    unsigned running, waiting;
    struct tandem_list queue; /* struct tandem_pool_read waiting, oldest first */
    uint64_t done_total, refused_total;
    bool closing;
    void (*close_cb)(void *data); /* runs once nothing runs or waits any more */
    void *close_data;
};

/* One read; its owner keeps it (embedded or allocated) until done runs. */
struct tandem_pool_read {
    uv_work_t work;
    struct tandem_list link;
    struct tandem_pool_reads *reads; /* borrowed */
    struct tandem_store store;       /* the pool's copy: env and dbi handles, its own errmsg */
    tandem_pool_read_work_fn work_cb;
    tandem_pool_read_done_fn done_cb;
    void *data;
    int rv;
    bool copy_released; /* store.copies given back on the pool */
    MDB_txn *pinned;    /* tandem_pool_read_submit_pinned: the read transaction begun on the
                           loop, used (and aborted) on the pool; NULL: one begun there */
};

void tandem_pool_reads_init(struct tandem_pool_reads *reads, uv_loop_t *loop,
                            struct tandem_store *store);

/* Queues read: when its turn comes (at once when fewer than RUNNING_MAX run), the grouped write
 * transaction is committed (so the read sees everything applied before it), the store is pinned
 * against a snapshot install (store->copies, given back on the pool thread: the install waits on
 * the loop), and work runs on the pool; done follows on the loop, exactly once, never inside this
 * call. Returns 0; or TANDEM_BUSY when WAITING_MAX reads already wait, or the code of a commit or
 * uv_queue_work that failed at once, with read->store.errmsg filled (done never runs then). */
int tandem_pool_read_submit(struct tandem_pool_reads *reads, struct tandem_pool_read *read,
                            tandem_pool_read_work_fn work_cb, tandem_pool_read_done_fn done_cb,
                            void *data);

/* As tandem_pool_read_submit, but the read transaction begins now, on the loop, after a commit:
 * the work sees exactly what is applied at this call, however long it waits for its turn and
 * whatever is applied meanwhile (a digest at an index every member takes at the same entry).
 * Refused (TANDEM_BUSY) during a snapshot install's swap, like any read. */
int tandem_pool_read_submit_pinned(struct tandem_pool_reads *reads, struct tandem_pool_read *read,
                                   tandem_pool_read_work_fn work_cb,
                                   tandem_pool_read_done_fn done_cb, void *data);

/* Refuses new reads (TANDEM_SHUTDOWN) and runs close_cb(data) once every read running or waiting
 * is done (at once when none is): the store may close then. */
void tandem_pool_reads_close(struct tandem_pool_reads *reads, void (*close_cb)(void *data),
                             void *data);

#endif
