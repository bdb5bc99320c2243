/* What the micro-benchmarks share (micro_jobs_page.c, micro_backup.c, micro_audit_walk.c): a
 * scratch directory, a store opened with its state machine, and filling it with one batch of
 * commands packed into one entry and applied through the state machine, as raft would. */
#ifndef TANDEM_BENCH_MICRO_APPLY_H
#define TANDEM_BENCH_MICRO_APPLY_H

#include <raft.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/commands.h"
#include "replication/fsm.h"

/* Applies commands[0..n) as the entry at index, stamped now_ms. Returns 0 or -1 (printed). */
static inline int micro_apply(struct tandem_fsm *fsm, uint64_t index, Tandem__Command **commands,
                              size_t n, int64_t now_ms)
{
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    struct raft_buffer buf;
    batch.now_ms = now_ms;
    batch.n_commands = n;
    batch.commands = commands;
    if (tandem_entry_encode(&batch, &buf) != 0) {
        fprintf(stderr, "encode failed\n");
        return -1;
    }
    int rv = tandem_fsm_apply_entry(fsm, index, buf.base, buf.len);
    raft_free(buf.base);
    if (rv != 0) {
        fprintf(stderr, "apply failed: %s\n", fsm->errmsg);
    }
    return rv;
}

/* Opens the store in dir with an LMDB map of map_size bytes and its state machine, as a node's
 * start does. Returns 0, or -1 (printed; nothing left open). */
static inline int micro_open(struct tandem_store *store, struct tandem_fsm *fsm, const char *dir,
                             size_t map_size)
{
    if (tandem_store_open(store, dir, map_size) != 0) {
        fprintf(stderr, "open: %s\n", store->errmsg);
        return -1;
    }
    tandem_fsm_init(fsm, store);
    return 0;
}

/* The benchmark's one optional argument, a count in 1..max, into *n (default_n when absent).
 * Returns 0, or -1 after printing the usage. */
static inline int micro_count_arg(int argc, char **argv, size_t default_n, size_t max, size_t *n)
{
    *n = default_n;
    if (argc < 2) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(argv[1], &end, 10);
    if (argc > 2 || errno != 0 || end == argv[1] || *end != '\0' || v == 0 || v > max) {
        fprintf(stderr, "usage: %s [COUNT (1..%zu)]\n", argv[0], max);
        return -1;
    }
    *n = (size_t)v;
    return 0;
}

/* A new directory tandem-bench-XXXXXX under $TMPDIR (or /tmp) into out. Returns 0 or -1. */
static inline int micro_scratch(char *out, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, size, "%s/tandem-bench-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(out) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

#endif
