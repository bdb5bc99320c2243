/* Micro-benchmark: how long serialising a node's state into a snapshot takes (the work raft's
 * snapshot runs on the thread pool) and how big it is, on a live node's state directory opened
 * read-only beside it. Usage: micro_snapshot STATE_DIR ; prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "storage/store.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    struct tandem_store store;
    MDB_txn *txn;
    void *buf = NULL;
    size_t len = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: micro_snapshot STATE_DIR\n");
        return 2;
    }
    if (tandem_store_open_shared(&store, argv[1]) != 0) {
        fprintf(stderr, "micro_snapshot: %s\n", store.errmsg);
        return 1;
    }
    int rv = tandem_store_read_txn(&store, &txn);
    double started = now_ms();
    if (rv == 0) {
        rv = tandem_store_snapshot_write(&store, txn, &buf, &len);
        mdb_txn_abort(txn);
    }
    double took = now_ms() - started;
    if (rv != 0) {
        fprintf(stderr, "micro_snapshot: %s\n", store.errmsg);
        tandem_store_close(&store);
        return 1;
    }
    printf("{\"applied_index\":%llu,\"snapshot_bytes\":%zu,\"serialise_ms\":%.1f}\n",
           (unsigned long long)store.applied_index, len, took);
    free(buf);
    tandem_store_close(&store);
    return 0;
}
