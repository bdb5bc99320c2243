/* Micro-benchmark: how long serialising a node's state into a snapshot takes (the work raft's
 * snapshot runs on the thread pool) and how big it is, on a live node's state directory opened
 * read-only beside it. Usage: micro_snapshot STATE_DIR [FILE] ; prints one JSON line. With FILE
 * (a path that must not exist; removed afterwards) the snapshot is written there as tandemd
 * writes a snapshot file past snapshot_inline_mib, else into memory (capped below 2 GiB). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "storage/store.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The snapshot of txn's state into file; its length into *len. */
static int to_file(struct tandem_store *store, MDB_txn *txn, const char *file, uint64_t *len)
{
    uint64_t index;
    uint8_t checksum[TANDEM_DIGEST_LEN];
    int fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(store->errmsg, sizeof store->errmsg, "%s: cannot create it", file);
        return -1;
    }
    int rv = tandem_store_snapshot_write_fd(store, txn, fd, len, &index, checksum);
    (void)close(fd);
    (void)unlink(file);
    return rv;
}

int main(int argc, char **argv)
{
    struct tandem_store store;
    MDB_txn *txn;
    void *buf = NULL;
    size_t len = 0;
    uint64_t file_len = 0;
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: micro_snapshot STATE_DIR [FILE]\n");
        return 2;
    }
    if (tandem_store_open_shared(&store, argv[1]) != 0) {
        fprintf(stderr, "micro_snapshot: %s\n", store.errmsg);
        return 1;
    }
    int rv = tandem_store_read_txn(&store, &txn);
    double started = now_ms();
    if (rv == 0) {
        rv = argc == 3 ? to_file(&store, txn, argv[2], &file_len)
                       : tandem_store_snapshot_write(&store, txn, &buf, &len);
        mdb_txn_abort(txn);
    }
    double took = now_ms() - started;
    if (rv != 0) {
        fprintf(stderr, "micro_snapshot: %s\n", store.errmsg);
        tandem_store_close(&store);
        return 1;
    }
    printf("{\"applied_index\":%llu,\"snapshot_bytes\":%llu,\"serialise_ms\":%.1f,\"to\":\"%s\"}\n",
           (unsigned long long)store.applied_index,
           (unsigned long long)(argc == 3 ? file_len : len), took, argc == 3 ? "file" : "memory");
    free(buf);
    tandem_store_close(&store);
    return 0;
}
