/* Read routes whose work grows with the state, answered from the thread pool
 * (tandem_route_read_pooled, node/api/api.h) on node/pool_read.h. */
#include <stdio.h>
#include <stdlib.h>

#include "node/api/api.h"
#include "node/node.h"
#include "node/pool_read.h"

struct tandem_route_pooled {
    struct tandem_pool_read read;  /* first */
    struct tandem_node *node;      /* borrowed */
    struct tandem_http_request *r; /* borrowed until answered */
    tandem_route_pool_fn work;
    tandem_route_pool_answer_fn answer;
    void *arg;
    void (*done)(void *arg);
    bool submitted; /* handed to the pool: its done callback finishes q, not the read's */
};

static void pooled_finish(struct tandem_route_pooled *q)
{
    void (*done)(void *) = q->done;
    void *arg = q->arg;
    free(q);
    if (done != NULL) {
        done(arg);
    }
}

static int pooled_work_cb(struct tandem_store *store, MDB_txn *txn, void *data)
{
    struct tandem_route_pooled *q = data;
    return q->work(store, txn, q->arg);
}

static void pooled_done_cb(void *data, int rv, const char *errmsg)
{
    struct tandem_route_pooled *q = data;
    /* r is still ours even when its client left: the server keeps it until it is answered. */
    q->answer(q->node, q->r, q->arg, rv, errmsg);
    pooled_finish(q);
}

/* Runs after the barrier (or at once with ?consistency=local): hands the work to the pool. */
static void pooled_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct tandem_route_pooled *q = arg;
    int rv =
        tandem_pool_read_submit(&node->pool_reads, &q->read, pooled_work_cb, pooled_done_cb, q);
    if (rv == 0) {
        q->submitted = true; /* pooled_done_cb finishes it, on a later turn */
    } else if (rv == TANDEM_BUSY || rv == TANDEM_SHUTDOWN) {
        tandem_route_retry_later(node, r, "%s: retry later", q->read.store.errmsg);
    } else {
        tandem_route_error(node, r, 500, "%s", q->read.store.errmsg);
    } /* not submitted: pooled_read_done, which runs right after this, finishes q */
}

/* The read's done: finishes only a request that never reached the pool (a failed barrier). */
static void pooled_read_done(void *arg)
{
    struct tandem_route_pooled *q = arg;
    if (!q->submitted) {
        pooled_finish(q);
    }
}

static void route_pooled(struct tandem_node *node, struct tandem_http_request *r,
                         tandem_route_pool_fn work, tandem_route_pool_answer_fn answer, void *arg,
                         void (*done)(void *arg), bool barrier)
{
    struct tandem_route_pooled *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        if (done != NULL) {
            done(arg);
        }
        return;
    }
    *q = (struct tandem_route_pooled){
        .node = node, .r = r, .work = work, .answer = answer, .arg = arg, .done = done};
    if (barrier) {
        tandem_route_read(node, r, pooled_serve, q, pooled_read_done);
    } else {
        pooled_serve(node, r, q);
        pooled_read_done(q);
    }
}

void tandem_route_read_pooled(struct tandem_node *node, struct tandem_http_request *r,
                              tandem_route_pool_fn work, tandem_route_pool_answer_fn answer,
                              void *arg, void (*done)(void *arg))
{
    route_pooled(node, r, work, answer, arg, done, true);
}

void tandem_route_local_pooled(struct tandem_node *node, struct tandem_http_request *r,
                               tandem_route_pool_fn work, tandem_route_pool_answer_fn answer,
                               void *arg, void (*done)(void *arg))
{
    route_pooled(node, r, work, answer, arg, done, false);
}
