/* The apply contract every replicated command follows: what one command's apply sees (the
 * batch's write transaction), the result it hands back, and the helpers that fill results. */
#ifndef TANDEM_REPLICATION_APPLY_H
#define TANDEM_REPLICATION_APPLY_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/store.h"
#include "tandem.pb-c.h"

/* One command's outcome, handed to whoever is waiting for it. */
struct tandem_result {
    int status; /* HTTP-style: 200 ok, 404, 409 ... a business outcome, never an apply error */
    char *body; /* owned by the receiver: malloc'd JSON, or NULL */
};

struct tandem_apply_ctx;

/* What a domain's apply needs to learn from a sibling domain without calling it (bcp/ moves
 * domain/'s jobs, so domain/ must not call bcp/): the state machine fills these in. */
struct tandem_apply_ops {
    /* *invoked: whether BCP is invoked for site (an unknown site is not). Returns 0 or an LMDB
     * error with ctx->store->errmsg. */
    int (*site_invoked)(const struct tandem_apply_ctx *ctx, const char *site, bool *invoked);
};

/* What one command's apply sees: all inside the batch's single write transaction. */
struct tandem_apply_ctx {
    struct tandem_store *store;         /* borrowed */
    MDB_txn *txn;                       /* borrowed: the grouped write transaction */
    uint64_t index;                     /* raft index of the entry being applied */
    int64_t now_ms;                     /* the leader's clock stamped into the batch */
    uint64_t proposer_id;               /* raft id of the node that proposed the batch */
    const struct tandem_apply_ops *ops; /* borrowed: set by the state machine on every apply */
};

/* An apply function mutates state inside ctx->txn and, when result is non-NULL, fills it.
 * Returns 0 (business failures are results) or an LMDB error, which is fatal for the node. */
typedef int (*tandem_command_apply_fn)(const struct tandem_apply_ctx *ctx,
                                       const Tandem__Command *command,
                                       struct tandem_result *result);

/* Result helpers (each does nothing but free what it was handed when result is NULL). */
/* Body from printf-style JSON text. */
void tandem_result_set(struct tandem_result *result, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Body {"error": <printf-style message>}. */
void tandem_result_error(struct tandem_result *result, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets result to status with body (taken; NULL means out of memory: a 500). */
void tandem_result_jansson(struct tandem_result *result, int status, json_t *body);

#endif
