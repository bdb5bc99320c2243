/* Syncs the state store to disk from libuv's thread pool: the loop commits without syncing
 * (MDB_NOSYNC, storage/unsynced.h), and this keeps what the page cache holds unsynced to about
 * one interval, at most one sync at a time. */
#ifndef TANDEM_NODE_STORE_SYNC_H
#define TANDEM_NODE_STORE_SYNC_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "storage/error.h"
#include "storage/store.h"

/* How often commits are synced: the page cache holds about this much unsynced state at most. */
#define TANDEM_STORE_SYNC_INTERVAL_MS 1000u

struct tandem_store_sync {
    uv_loop_t *loop;            /* borrowed */
    struct tandem_store *store; /* borrowed */
    uv_work_t work;
    bool running, closing;
    bool copy_released;       /* store->copies given back on the pool */
    MDB_env *env;             /* the environment the running sync syncs (pinned by copies) */
    char dir[PATH_MAX];       /* and its directory */
    uint64_t commits_started; /* store->commits when the running sync began */
    uint64_t commits_synced;  /* store->commits every commit up to which is on disk */
    uint64_t started_ns;
    int rv;
    char errmsg[TANDEM_ERRMSG_SIZE];
    uint64_t syncs_total;
    /* Called on the loop after each sync with its nanoseconds; NULL: none. */
    void (*observe)(void *data, uint64_t ns);
    /* Called on the loop when a sync failed (errmsg says why): the node must stop. */
    void (*failed)(void *data, const char *errmsg);
    void *data; /* borrowed: observe's and failed's */
    void (*close_cb)(void *data);
    void *close_data;
};

void tandem_store_sync_init(struct tandem_store_sync *sync, uv_loop_t *loop,
                            struct tandem_store *store);

/* Starts a sync on the pool when commits were made since the last one began, none runs, and the
 * last began interval_ms ago or more. Call it after the loop's grouped commit. */
void tandem_store_sync_tick(struct tandem_store_sync *sync, uint64_t now_ns, uint64_t interval_ms);

/* Starts no more syncs and runs close_cb(data) once none runs (at once when none does): the
 * store may close then (its close syncs what is left). */
void tandem_store_sync_close(struct tandem_store_sync *sync, void (*close_cb)(void *data),
                             void *data);

#endif
