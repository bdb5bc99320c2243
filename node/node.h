/* The daemon's node: everything one tandemd process runs on its single libuv loop. */
#ifndef TANDEM_NODE_NODE_H
#define TANDEM_NODE_NODE_H

#include <stdbool.h>
#include <uv.h>

#include "consensus/raft_node.h"
#include "node/bcp/runtime.h"
#include "node/config.h"
#include "node/http/forward.h"
#include "node/http/server.h"
#include "node/leader_watch.h"
#include "node/http/park.h"
#include "node/metrics.h"
#include "replication/fsm.h"
#include "replication/proposer.h"
#include "storage/store.h"

struct tandem_node {
    uv_loop_t *loop;                    /* borrowed */
    const struct tandem_config *config; /* borrowed */
    struct tandem_member self;
    struct tandem_store store;
    struct tandem_fsm fsm;
    struct tandem_raft raft;
    struct tandem_proposer proposer;
    struct tandem_http_server http;
    struct tandem_forwarder forwarder;
    struct tandem_leader_watch leader_watch; /* gates follower snapshots */
    struct tandem_park park;                 /* requests waiting out a leader change */
    struct tandem_metrics metrics;
    struct tandem_bcp bcp;  /* probes, fencing, site controller (node/bcp/runtime.h) */
    uv_check_t flush_check; /* once per loop iteration: group commit, then propose */
    uv_signal_t sigterm, sigint;
    uint64_t epoch;
    bool fenced;
    bool reexec; /* after stopping, main re-executes tandemd (forced failover, re-seed) */
    bool stopping;
    int exit_code;
    unsigned handles_open;
};

/* The HTTP handler: routes a request (node/api/router.c). */
void tandem_routes_handle(struct tandem_http_server *s, struct tandem_http_request *r);
/* Answers r and counts it in the metrics. */
void tandem_node_respond(struct tandem_node *node, struct tandem_http_request *r, int status,
                         const char *content_type, const char *extra_headers, const void *body,
                         size_t body_len);
/* Stops the node after a fatal error (the supervisor restarts it; raft replays). */
void tandem_node_fatal(struct tandem_node *node, const char *what);
void tandem_node_stop(struct tandem_node *node, int exit_code);

#endif
