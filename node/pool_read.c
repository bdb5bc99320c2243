/* Reads that grow with the state, run on libuv's thread pool and answered on the loop
 * (node/pool_read.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "node/pool_read.h"
#include "storage/background.h"
#include "storage/error.h"

void tandem_pool_reads_init(struct tandem_pool_reads *reads, uv_loop_t *loop,
                            struct tandem_store *store)
{
    memset(reads, 0, sizeof *reads);
    reads->loop = loop;
    reads->store = store;
    tandem_list_init(&reads->queue);
}

/* On the pool: a read transaction of its own (the environment is MDB_NOTLS). */
static void pool_work(uv_work_t *work)
{
    struct tandem_pool_read *read = work->data;
    MDB_txn *txn = read->pinned;
    int rv = txn != NULL ? 0 : mdb_txn_begin(read->store.env, NULL, MDB_RDONLY, &txn);
    read->pinned = NULL; /* aborted below, whatever happens */
    if (rv != 0) {
        read->rv = tandem_error_from_mdb(rv, read->store.errmsg, "read transaction");
    } else {
        /* The copy's applied_index is the transaction's: applies went on since the commit. */
        read->rv = tandem_store_meta_read(&read->store, txn);
        read->rv = read->rv != 0 ? read->rv : read->work_cb(&read->store, txn, read->data);
        mdb_txn_abort(txn);
    }
    /* Given back here, on the pool: a snapshot install waits on the loop for copies to reach 0,
     * so the loop's after-work callback would never run to give it back (a deadlock). */
    tandem_store_copy_end(read->reads->store);
    read->copy_released = true;
}

static void pool_work_cb(uv_work_t *work)
{
    tandem_background_run(pool_work, work); /* storage/background.h */
}

static int pool_start(struct tandem_pool_reads *reads, struct tandem_pool_read *read);
static void pool_unpin(struct tandem_pool_reads *reads, struct tandem_pool_read *read);

/* Tells the closer once nothing runs or waits. */
static void close_maybe(struct tandem_pool_reads *reads)
{
    if (reads->closing && reads->close_cb != NULL && reads->running == 0 && reads->waiting == 0) {
        void (*cb)(void *) = reads->close_cb;
        reads->close_cb = NULL;
        cb(reads->close_data);
    }
}

/* Starts the oldest waiting read, if any and a slot is free. */
static void pool_next(struct tandem_pool_reads *reads)
{
    while (reads->running < TANDEM_POOL_READS_RUNNING_MAX && !tandem_list_empty(&reads->queue)) {
        struct tandem_list *link = reads->queue.next;
        tandem_list_remove(link);
        reads->waiting--;
        struct tandem_pool_read *read = tandem_list_entry(link, struct tandem_pool_read, link);
        int rv = pool_start(reads, read);
        if (rv != 0) {
            reads->done_total++;
            read->done_cb(read->data, rv, read->store.errmsg); /* may free read */
        }
    }
}

static void pool_after_work_cb(uv_work_t *work, int status)
{
    struct tandem_pool_read *read = work->data;
    struct tandem_pool_reads *reads = read->reads;
    if (!read->copy_released) {
        pool_unpin(reads, read); /* cancelled before it ran */
    }
    if (status != 0) {
        read->rv = tandem_error_from_uv(status, read->store.errmsg, "thread pool");
    }
    reads->running--;
    reads->done_total++;
    read->done_cb(read->data, read->rv, read->store.errmsg); /* may free read */
    pool_next(reads);
    close_maybe(reads);
}

/* The store as the pool reads it: the same environment and databases, nothing else shared. */
static void store_copy(struct tandem_store *copy, const struct tandem_store *store)
{
    memset(copy, 0, sizeof *copy);
    copy->env = store->env;
    memcpy(copy->dbi, store->dbi, sizeof copy->dbi);
    memcpy(copy->dir, store->dir, sizeof copy->dir);
    copy->map_size = store->map_size;
    atomic_init(&copy->copies, 0);
}

/* Commits and pins the store (its copy in read->store): 0, or a tandem code with
 * read->store.errmsg filled and nothing pinned. */
static int pool_pin(struct tandem_pool_reads *reads, struct tandem_pool_read *read)
{
    int rv = tandem_store_commit(reads->store);
    if (rv != 0) { /* the store is poisoned now: the node stops at the end of this turn */
        snprintf(read->store.errmsg, sizeof read->store.errmsg, "%s", reads->store->errmsg);
        return rv;
    }
    store_copy(&read->store, reads->store);
    /* A snapshot install waits for the read before it swaps the environment, and no read starts
     * once one is about to (storage/store.h). */
    if (!tandem_store_copy_begin(reads->store)) {
        return tandem_error_set(read->store.errmsg, TANDEM_BUSY,
                                "a snapshot install is replacing this node's state");
    }
    read->copy_released = false;
    return 0;
}

/* Undoes pool_pin, and aborts the read transaction a pinned submit began. */
static void pool_unpin(struct tandem_pool_reads *reads, struct tandem_pool_read *read)
{
    if (read->pinned != NULL) {
        mdb_txn_abort(read->pinned);
        read->pinned = NULL;
    }
    tandem_store_copy_end(reads->store);
}

/* Pins the store (unless a pinned read did at its submit) and queues read on the pool. Returns
 * 0, or a tandem code with read->store.errmsg filled (nothing queued, nothing pinned, done not
 * run). */
static int pool_start(struct tandem_pool_reads *reads, struct tandem_pool_read *read)
{
    int rv = read->pinned != NULL ? 0 : pool_pin(reads, read);
    if (rv != 0) {
        return rv;
    }
    read->work.data = read;
    rv = uv_queue_work(reads->loop, &read->work, pool_work_cb, pool_after_work_cb);
    if (rv != 0) {
        pool_unpin(reads, read);
        return tandem_error_from_uv(rv, read->store.errmsg, "uv_queue_work");
    }
    reads->running++;
    return 0;
}

static int submit(struct tandem_pool_reads *reads, struct tandem_pool_read *read,
                  tandem_pool_read_work_fn work_cb, tandem_pool_read_done_fn done_cb, void *data,
                  bool pinned)
{
    tandem_assert(reads->loop != NULL && work_cb != NULL && done_cb != NULL);
    read->pinned = NULL;
    if (reads->closing) {
        return tandem_error_set(read->store.errmsg, TANDEM_SHUTDOWN, "the node is shutting down");
    }
    if (reads->running >= TANDEM_POOL_READS_RUNNING_MAX &&
        reads->waiting >= TANDEM_POOL_READS_WAITING_MAX) {
        reads->refused_total++;
        return tandem_error_set(read->store.errmsg, TANDEM_BUSY,
                                "%u reads of the whole state run and %u wait on this node",
                                reads->running, reads->waiting);
    }
    read->reads = reads;
    read->work_cb = work_cb;
    read->done_cb = done_cb;
    read->data = data;
    read->rv = 0;
    tandem_list_init(&read->link);
    if (pinned) {
        int rv = pool_pin(reads, read);
        if (rv != 0) {
            return rv;
        }
        MDB_txn *txn;
        if ((rv = mdb_txn_begin(read->store.env, NULL, MDB_RDONLY, &txn)) != 0) {
            pool_unpin(reads, read); /* nothing begun: the store's pin only */
            return tandem_error_from_mdb(rv, read->store.errmsg, "read transaction");
        }
        read->pinned = txn;
    }
    if (reads->running < TANDEM_POOL_READS_RUNNING_MAX) {
        return pool_start(reads, read);
    }
    tandem_list_push_back(&reads->queue, &read->link);
    reads->waiting++;
    return 0;
}

int tandem_pool_read_submit(struct tandem_pool_reads *reads, struct tandem_pool_read *read,
                            tandem_pool_read_work_fn work_cb, tandem_pool_read_done_fn done_cb,
                            void *data)
{
    return submit(reads, read, work_cb, done_cb, data, false);
}

int tandem_pool_read_submit_pinned(struct tandem_pool_reads *reads, struct tandem_pool_read *read,
                                   tandem_pool_read_work_fn work_cb,
                                   tandem_pool_read_done_fn done_cb, void *data)
{
    return submit(reads, read, work_cb, done_cb, data, true);
}

void tandem_pool_reads_close(struct tandem_pool_reads *reads, void (*close_cb)(void *data),
                             void *data)
{
    reads->closing = true;
    reads->close_cb = close_cb;
    reads->close_data = data;
    close_maybe(reads);
}
