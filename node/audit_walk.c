/* The periodic walk of the audit chain on the thread pool; its verdict: node/audit_check.h. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "node/audit_check.h"
#include "node/log.h"
#include "node/node.h"
#include "replication/domain/audit.h"
#include "storage/background.h"
#include "storage/clock.h"

struct audit_walk {
    uv_work_t work;
    struct tandem_node *node; /* borrowed */
    struct tandem_audit_verdict verdict;
    int rv;             /* 0, or the LMDB code that stopped the walk */
    bool copy_released; /* store.copies given back by the work itself */
    uint64_t duration_ns;
};

/* On the thread pool: a read transaction of its own (the environment is MDB_NOTLS). */
static void walk_work(uv_work_t *work)
{
    struct audit_walk *w = work->data;
    MDB_txn *txn;
    uint64_t started = uv_hrtime();
    w->rv = mdb_txn_begin(w->node->store.env, NULL, MDB_RDONLY, &txn);
    if (w->rv == 0) {
        w->rv = tandem_audit_verify(txn, &w->node->store, &w->verdict);
        mdb_txn_abort(txn);
    }
    w->duration_ns = uv_hrtime() - started;
    /* Released here, on the pool: a snapshot install waits on the loop for copies to reach 0,
     * so the loop's after-work callback would never run to release it (a deadlock). */
    tandem_store_copy_end(&w->node->store);
    w->copy_released = true;
}

static void walk_work_cb(uv_work_t *work)
{
    tandem_background_run(walk_work, work); /* storage/background.h */
}

static void walk_after_work_cb(uv_work_t *work, int status)
{
    struct audit_walk *w = work->data;
    struct tandem_node *node = w->node;
    struct tandem_audit_check *check = &node->audit_check;
    if (!w->copy_released) {
        tandem_store_copy_end(&node->store); /* cancelled before it ran */
    }
    check->running = false;
    if (status != 0 || w->rv != 0) {
        check->failures++;
        check->error = status != 0 ? status : w->rv;
        tandem_log(TANDEM_LOG_WARN, "audit chain walk: %s",
                   status != 0 ? uv_strerror(status) : mdb_strerror(w->rv));
    } else {
        tandem_audit_check_record(check, &w->verdict, tandem_wall_ms(), w->duration_ns);
        if (!w->verdict.ok) {
            tandem_log(TANDEM_LOG_ERROR, "audit chain broken at record %" PRIu64 ": %s",
                       w->verdict.broken_at, w->verdict.reason);
        }
    }
    free(w);
    if (node->stopping && node->closed != NULL) {
        node->closed(node); /* tandem_node_stop counted this walk */
    }
}

void tandem_audit_check_tick(struct tandem_node *node)
{
    struct tandem_audit_check *check = &node->audit_check;
    uint64_t now = uv_now(node->loop);
    if (check->running || node->stopping ||
        (check->started_ms != 0 && now - check->started_ms < TANDEM_AUDIT_CHECK_INTERVAL_MS)) {
        return;
    }
    check->started_ms = now != 0 ? now : 1;
    struct audit_walk *w = calloc(1, sizeof *w);
    if (w == NULL) {
        check->failures++;
        return;
    }
    w->node = node;
    w->work.data = w;
    /* A snapshot install waits for the walk before it swaps the environment, and no walk starts
     * once one is about to (storage/store.h): the next tick tries again. */
    if (!tandem_store_copy_begin(&node->store)) {
        free(w);
        return;
    }
    int rv = uv_queue_work(node->loop, &w->work, walk_work_cb, walk_after_work_cb);
    if (rv != 0) {
        tandem_store_copy_end(&node->store);
        free(w);
        check->failures++;
        tandem_log(TANDEM_LOG_WARN, "audit chain walk: uv_queue_work: %s", uv_strerror(rv));
        return;
    }
    check->running = true;
}
