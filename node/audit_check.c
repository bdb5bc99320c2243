/* The periodic audit chain walk and its series (node/audit_check.h). */
#include "node/audit_check.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "node/metrics.h"
#include "node/node.h"
#include "replication/domain/audit.h"
#include "storage/clock.h"
#include "storage/error.h"
#include "node/log.h"

struct audit_walk {
    uv_work_t work;
    struct tandem_node *node; /* borrowed */
    struct tandem_audit_verdict verdict;
    int rv; /* 0, or the LMDB code that stopped the walk */
    uint64_t duration_ns;
};

/* On the thread pool: a read transaction of its own (the environment is MDB_NOTLS). */
static void walk_work_cb(uv_work_t *work)
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
}

static void walk_after_work_cb(uv_work_t *work, int status)
{
    struct audit_walk *w = work->data;
    struct tandem_node *node = w->node;
    struct tandem_audit_check *check = &node->audit_check;
    atomic_fetch_sub(&node->store.copies, 1);
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
    /* A snapshot install waits for the walk before it swaps the environment (storage/store.h). */
    atomic_fetch_add(&node->store.copies, 1);
    int rv = uv_queue_work(node->loop, &w->work, walk_work_cb, walk_after_work_cb);
    if (rv != 0) {
        atomic_fetch_sub(&node->store.copies, 1);
        free(w);
        check->failures++;
        tandem_log(TANDEM_LOG_WARN, "audit chain walk: uv_queue_work: %s", uv_strerror(rv));
        return;
    }
    check->running = true;
}

void tandem_audit_check_record(struct tandem_audit_check *check,
                               const struct tandem_audit_verdict *verdict, int64_t now_ms,
                               uint64_t duration_ns)
{
    check->known = true;
    check->ok = verdict->ok;
    check->error = 0;
    check->records = verdict->records;
    check->broken_at = verdict->ok ? 0 : verdict->broken_at;
    check->verified_at_ms = now_ms;
    check->duration_ns = duration_ns;
    check->walks++;
}

void tandem_audit_check_metrics_write(const struct tandem_audit_check *check, int64_t now_ms,
                                      FILE *out)
{
    tandem_metrics_family(out, "tandem_audit_chain_ok", "gauge",
                          "1 when the last walk of the audit chain found every link intact, 0 "
                          "when it found a broken one; absent until the first walk ends.");
    if (check->known) {
        fprintf(out, "tandem_audit_chain_ok %d\n", check->ok ? 1 : 0);
    }
    tandem_metrics_family(out, "tandem_audit_chain_broken_at", "gauge",
                          "Sequence number of the first broken audit record (0: none).");
    fprintf(out, "tandem_audit_chain_broken_at %" PRIu64 "\n", check->broken_at);
    tandem_metrics_family(out, "tandem_audit_chain_records", "gauge",
                          "Audit records the last walk checked.");
    fprintf(out, "tandem_audit_chain_records %" PRIu64 "\n", check->records);
    tandem_metrics_family(out, "tandem_audit_chain_verified_age_seconds", "gauge",
                          "Seconds since the last finished walk of the audit chain (-1: none "
                          "since start).");
    fprintf(out, "tandem_audit_chain_verified_age_seconds %.3f\n",
            check->verified_at_ms == 0
                ? -1.0
                : (double)(now_ms > check->verified_at_ms ? now_ms - check->verified_at_ms : 0) /
                      1000.0);
    tandem_metrics_family(out, "tandem_audit_chain_verify_duration_seconds", "gauge",
                          "How long the last walk of the audit chain took (on the thread pool).");
    fprintf(out, "tandem_audit_chain_verify_duration_seconds %.6f\n",
            (double)check->duration_ns / 1e9);
    tandem_metrics_family(out, "tandem_audit_chain_walk_failures_total", "counter",
                          "Walks of the audit chain that could not read the store.");
    fprintf(out, "tandem_audit_chain_walk_failures_total %" PRIu64 "\n", check->failures);
}
