/* The state store's syncs on the thread pool (node/store_sync.h). */
#include "node/store_sync.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "storage/assert.h"
#include "storage/background.h"

void tandem_store_sync_init(struct tandem_store_sync *sync, uv_loop_t *loop,
                            struct tandem_store *store)
{
    memset(sync, 0, sizeof *sync);
    sync->loop = loop;
    sync->store = store;
}

static void close_maybe(struct tandem_store_sync *sync)
{
    if (sync->closing && !sync->running && sync->close_cb != NULL) {
        void (*cb)(void *) = sync->close_cb;
        sync->close_cb = NULL;
        cb(sync->close_data);
    }
}

/* On the pool: fdatasync of the data file while the loop goes on committing. */
static void sync_work(uv_work_t *work)
{
    struct tandem_store_sync *sync = work->data;
    sync->rv = tandem_store_sync(sync->env, sync->dir, sync->errmsg);
    /* Given back here: a snapshot install waits on the loop for copies to reach 0, so the
     * after-work callback would never run to give it back (a deadlock). */
    tandem_store_copy_end(sync->store);
    sync->copy_released = true;
}

static void sync_work_cb(uv_work_t *work)
{
    tandem_background_run(sync_work, work); /* storage/background.h */
}

static void sync_after_work_cb(uv_work_t *work, int status)
{
    struct tandem_store_sync *sync = work->data;
    tandem_assert(sync->running);
    sync->running = false;
    if (!sync->copy_released) {
        tandem_store_copy_end(sync->store); /* cancelled before it ran */
    }
    if (status != 0 && sync->rv == 0) {
        sync->rv = tandem_error_from_uv(status, sync->errmsg, "thread pool");
    }
    if (sync->rv == 0) {
        sync->syncs_total++;
        sync->commits_synced = sync->commits_started;
        if (sync->observe != NULL) {
            sync->observe(sync->data, uv_hrtime() - sync->started_ns);
        }
    } else if (status == 0 && sync->failed != NULL) {
        sync->failed(sync->data, sync->errmsg);
    }
    close_maybe(sync);
}

void tandem_store_sync_tick(struct tandem_store_sync *sync, uint64_t now_ns, uint64_t interval_ms)
{
    struct tandem_store *store = sync->store;
    if (sync->running || sync->closing || store->env == NULL || store->poisoned ||
        store->commits == sync->commits_synced ||
        now_ns - sync->started_ns < interval_ms * 1000000u) {
        return;
    }
    sync->env = store->env;
    snprintf(sync->dir, sizeof sync->dir, "%s", store->dir);
    sync->commits_started = store->commits;
    sync->started_ns = now_ns;
    sync->rv = 0;
    sync->copy_released = false;
    sync->work.data = sync;
    /* A snapshot install closes the environment only once copies is 0, and none starts once
     * one is about to (storage/store.h): tried again next turn. */
    if (!tandem_store_copy_begin(store)) {
        return;
    }
    int rv = uv_queue_work(sync->loop, &sync->work, sync_work_cb, sync_after_work_cb);
    if (rv != 0) {
        tandem_store_copy_end(store);
        return; /* tried again next turn; the close syncs whatever is left */
    }
    sync->running = true;
}

void tandem_store_sync_close(struct tandem_store_sync *sync, void (*close_cb)(void *data),
                             void *data)
{
    sync->closing = true;
    sync->close_cb = close_cb;
    sync->close_data = data;
    close_maybe(sync);
}
