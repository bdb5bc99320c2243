/* Group commit: every write a loop iteration collects is packed into ONE raft entry (raft_apply
 * with n = 1, never more: LIBRAFT-NOTES.md), and every linearizable read it collects shares one
 * raft_barrier. */
#ifndef TANDEM_REPLICATION_PROPOSER_H
#define TANDEM_REPLICATION_PROPOSER_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/fsm.h"

#define TANDEM_BARRIERS_INFLIGHT_MAX 256 /* outstanding raft_barrier requests */
/* Entries whose client-write count the leader remembers, so that a replication lag can be told
 * in writes as well as in entries (one entry packs every write of a loop iteration). */
#define TANDEM_PROPOSER_COUNTS_KEPT 8192

struct tandem_write;
/* status 0: result holds the applied outcome; result->body stays the proposer's and is valid
 * only during the callback (copy it, or take it and set it to NULL).
 * Otherwise a RAFT_* code: RAFT_NOTLEADER (never proposed), RAFT_LEADERSHIPLOST or
 * RAFT_SHUTDOWN (outcome unknown: the entry may still commit). */
typedef void (*tandem_write_cb)(struct tandem_write *w, int status, struct tandem_result *result);

struct tandem_write {
    Tandem__Command *command; /* borrowed: must stay valid until cb */
    void *data;
    tandem_write_cb cb;
    struct tandem_write *next; /* internal */
};

struct tandem_read;
/* status 0: this node was leader and had applied everything committed before the read arrived. */
typedef void (*tandem_read_cb)(struct tandem_read *r, int status);

struct tandem_read {
    void *data;
    tandem_read_cb cb;
    struct tandem_read *next; /* internal */
};

struct tandem_proposer_limits {
    unsigned batch_commands_max; /* commands in one entry */
    size_t batch_bytes_max;      /* encoded bytes in one entry */
    unsigned pending_max;        /* writes queued or in flight before submit says RAFT_BUSY */
};

struct tandem_batch; /* in-flight entry, internal */

/* One entry this node proposed as leader and the client writes (commands) it packs. */
struct tandem_proposer_count {
    uint64_t index;
    uint64_t commands;
};

struct tandem_proposer {
    struct raft *raft; /* borrowed */
    uint64_t id;       /* this node's raft id, stamped into each batch */
    struct tandem_proposer_limits limits;
    int64_t (*now_ms)(void);                      /* the clock stamped into batches */
    struct tandem_write *queue_head, *queue_tail; /* submitted, not yet proposed */
    unsigned queued;
    unsigned pending; /* queued + in flight */
    struct tandem_batch *inflight_head, *inflight_tail;
    struct tandem_read *reads_head, *reads_tail;
    unsigned barriers_inflight;
    uint64_t next_serial;
    uint64_t limbo_ns; /* how long a batch whose leader stepped down waits for its outcome */
    uint64_t entries_proposed, commands_proposed, barriers_proposed, propose_errors;
    /* The newest TANDEM_PROPOSER_COUNTS_KEPT entries proposed in term counts_term, oldest at
     * counts_next once full: see tandem_proposer_commands_between. */
    struct tandem_proposer_count counts[TANDEM_PROPOSER_COUNTS_KEPT];
    unsigned counts_n, counts_next;
    uint64_t counts_term;
};

void tandem_proposer_init(struct tandem_proposer *p, struct raft *raft, uint64_t id,
                          const struct tandem_proposer_limits *limits);
/* Queues w for the next flush. Returns 0, RAFT_NOTLEADER when this node is not the leader, or
 * RAFT_BUSY when pending_max writes are already waiting (the caller answers 429). On non-zero
 * the callback never runs. */
int tandem_proposer_write(struct tandem_proposer *p, struct tandem_write *w);
/* Queues a linearizable read (same return codes). */
int tandem_proposer_read(struct tandem_proposer *p, struct tandem_read *r);
/* Proposes everything queued: called once per loop iteration. */
void tandem_proposer_flush(struct tandem_proposer *p);
/* Fails everything queued (not in flight: raft fails those) with status. */
void tandem_proposer_fail_queued(struct tandem_proposer *p, int status);
/* The client writes in the log entries (after, upto]: -1 (unknown) unless this node leads,
 * proposed entries in its current term up to upto, and remembers every entry of its term from
 * after + 1 on. Entries of the term the proposer did not make (the leader's first no-op,
 * barriers, configuration changes) hold no client write. */
int64_t tandem_proposer_commands_between(const struct tandem_proposer *p, uint64_t after,
                                         uint64_t upto);
/* The FSM's claim hook (see tandem_fsm_claim_fn). */
struct tandem_result *tandem_proposer_claim(void *data, uint64_t proposer_id, uint64_t serial,
                                            size_t n_commands);

#endif
