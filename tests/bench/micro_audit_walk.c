/* Micro-benchmark of the audit chain walk that every node runs every 5 minutes on the thread pool
 * (node/audit_check.h) and GET /v1/audit/verify runs on demand: N audit records applied through
 * the state machine in AuditAppends of TANDEM_AUDIT_RECORDS_MAX, then tandem_audit_verify timed
 * over the whole chain. Usage: micro_audit_walk [RECORDS (1..10000000), default 1000000]. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "micro_apply.h"
#include "replication/domain/audit.h"
#include "storage/store.h"

#define RECORDS_DEFAULT 1000000
#define RECORDS_MAX     10000000
#define MAP_SIZE        ((size_t)8 << 30)
#define NOW_MS          1764950400000LL /* 2025-12-05T16:00:00Z */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One AuditAppend of n records, as the node proposes a loop turn's (node/audit.c), at index:
 * each one a kv_put of its own key by a user, like most of a busy trail. */
static int append_entry(struct tandem_fsm *fsm, uint64_t index, size_t n)
{
    static const Tandem__AuditRecord kv_put = {
        .base = PROTOBUF_C_MESSAGE_INIT(&tandem__audit_record__descriptor),
        .actor = "bench",
        .actor_kind = 1,
        .via = 1,
        .source = "127.0.0.1",
        .node = "east-1",
        .action = "kv_put",
        .status = 200,
        .detail = ""};
    static Tandem__AuditRecord records[TANDEM_AUDIT_RECORDS_MAX];
    static Tandem__AuditRecord *ptrs[TANDEM_AUDIT_RECORDS_MAX];
    static char objects[TANDEM_AUDIT_RECORDS_MAX][32];
    Tandem__AuditAppend append = TANDEM__AUDIT_APPEND__INIT;
    Tandem__Command command = TANDEM__COMMAND__INIT;
    Tandem__Command *commands[1] = {&command};
    for (size_t i = 0; i < n; i++) {
        records[i] = kv_put;
        snprintf(objects[i], sizeof objects[i], "/v1/kv/k%zu", i);
        records[i].object = objects[i];
        ptrs[i] = &records[i];
    }
    append.records = ptrs;
    append.n_records = n;
    command.body_case = TANDEM__COMMAND__BODY_AUDIT_APPEND;
    command.audit_append = &append;
    return micro_apply(fsm, index, commands, 1, NOW_MS);
}

static int walk(struct tandem_store *store, size_t n)
{
    MDB_txn *txn;
    struct tandem_audit_verdict v;
    if (tandem_store_read_txn(store, &txn) != 0) {
        fprintf(stderr, "read txn: %s\n", store->errmsg);
        return -1;
    }
    double start = now_ms();
    int rv = tandem_audit_verify(txn, store, &v);
    double took = now_ms() - start;
    mdb_txn_abort(txn);
    if (rv != 0 || !v.ok || v.records != n) {
        fprintf(stderr, "verify: rv %d ok %d records %llu of %zu\n", rv, v.ok,
                (unsigned long long)v.records, n);
        return -1;
    }
    printf("walked %zu records in %.0f ms: %.2f us a record, %.0f records/s\n", n, took,
           took * 1e3 / (double)n, (double)n / (took / 1e3));
    return 0;
}

static int bench(const char *dir, size_t n)
{
    struct tandem_store store;
    struct tandem_fsm fsm;
    if (micro_open(&store, &fsm, dir, MAP_SIZE) != 0) {
        return -1;
    }
    double appended_ms = now_ms();
    int rv = 0;
    for (size_t done = 0; done < n && rv == 0; done += TANDEM_AUDIT_RECORDS_MAX) {
        size_t count = n - done < TANDEM_AUDIT_RECORDS_MAX ? n - done : TANDEM_AUDIT_RECORDS_MAX;
        rv = append_entry(&fsm, done / TANDEM_AUDIT_RECORDS_MAX + 1, count);
    }
    rv = rv == 0 ? tandem_store_commit(&store) : rv;
    if (rv == 0) {
        printf("appended %zu audit records through the state machine in %.0f ms\n", n,
               now_ms() - appended_ms);
        rv = walk(&store, n);
        rv = rv == 0 ? walk(&store, n) : rv; /* again, with the pages in the cache */
    }
    tandem_store_close(&store);
    return rv;
}

int main(int argc, char **argv)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    size_t n;
    if (micro_count_arg(argc, argv, RECORDS_DEFAULT, RECORDS_MAX, &n) != 0) {
        return 2;
    }
    if (micro_scratch(dir, sizeof dir) != 0) {
        return 1;
    }
    int rv = bench(dir, n);
    /* The store is one LMDB environment: its two files, then the directory. */
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    (void)unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    (void)unlink(path);
    if (rmdir(dir) != 0) {
        fprintf(stderr, "left %s: %s\n", dir, strerror(errno));
    }
    return rv == 0 ? 0 : 1;
}
