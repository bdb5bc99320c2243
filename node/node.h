/* The daemon's node: everything one tandemd process runs on its single libuv loop, and its
 * lifecycle (node/node.c): start, stop, fatal. */
#ifndef TANDEM_NODE_NODE_H
#define TANDEM_NODE_NODE_H

#include <stdbool.h>
#include <uv.h>

#include "consensus/leader_loss.h"
#include "consensus/raft_node.h"
#include "node/snapshot_fetch.h"
#include "node/bcp/events.h"
#include "node/bcp/runtime.h"
#include "node/bcp/watch.h"
#include "node/api/ratelimit.h"
#include "node/audit_queue.h"
#include "node/backup_state.h"
#include "node/config.h"
#include "node/http/forward.h"
#include "node/http/park.h"
#include "node/http/server.h"
#include "node/leader_watch.h"
#include "node/log_reports.h"
#include "node/audit_check.h"
#include "node/metrics.h"
#include "node/pool_read.h"
#include "node/store_sync.h"
#include "node/sd_notify.h"
#include "replication/fsm.h"
#include "replication/identity/pdata.h"
#include "replication/proposer.h"
#include "storage/store.h"

struct tandem_node_backup;

/* Hex digits of a node's boot id (struct tandem_node.boot_id). */
#define TANDEM_NODE_BOOT_ID_LEN 16

struct tandem_node {
    uv_loop_t *loop;                    /* borrowed */
    const struct tandem_config *config; /* borrowed */
    struct tandem_member self;
    struct tandem_store store;
    struct tandem_fsm fsm;
    struct tandem_snapshot_fetcher snapshot_fetcher; /* the fsm's fetch of snapshot files */
    uint64_t writes_refused_log_full;        /* client writes answered 503: the raft log was full */
    uint64_t writes_refused_member_log_full; /* of those, for another member's log */
    struct tandem_raft raft;
    struct tandem_proposer proposer;
    struct tandem_http_server http;
    struct tandem_http_server metrics_http; /* metrics_address: plaintext, GET /metrics only */
    bool metrics_http_open;                 /* metrics_http was initialised (closed on stop) */
    struct tandem_allow api_allow;          /* api_allow parsed: the API and metrics listeners */
    struct tandem_rate_limit rate_limit;    /* per user certificate, checked by the router */
    struct tandem_forwarder forwarder;
    struct tandem_leader_watch leader_watch; /* gates follower snapshots */
    struct tandem_log_reports log_reports;   /* members' full raft logs: writes wait for them */
    struct tandem_leader_loss leader_loss;   /* a dead leader's followers campaign sooner */
    struct tandem_park park;                 /* requests waiting out a leader change */
    struct tandem_metrics metrics;
    struct tandem_audit audit; /* records queued for the next AuditAppend (node/audit.h) */
    struct tandem_audit_check audit_check; /* the periodic chain walk (node/audit_check.h) */
    struct tandem_bcp bcp;         /* probes, fencing (epoch, fenced), site controller, restarts */
    struct tandem_events events;   /* BCP events: /v1/events and bcp_event_command */
    struct tandem_bcp_watch watch; /* what becomes an event; incident reports */
    struct tandem_backups backups; /* the scheduled mutual backup (node/backup_state.h) */
    struct tandem_pool_reads pool_reads; /* reads that grow with the state (node/pool_read.h) */
    struct tandem_list digest_waits; /* GET /v1/digest?at=N waiting for entry N (api/cluster.c) */
    unsigned digest_waits_n;
    struct tandem_store_sync store_sync; /* the state store's syncs (node/store_sync.h) */
    bool store_rebuilt;     /* the state store was discarded at start (storage/unsynced.h) */
    uv_check_t flush_check; /* once per loop iteration: group commit, then propose */
    /* The watch for a raft segment raft_uv failed to close (node.c log_gap_tick): the loop-lag
     * beats since the last look, and the gap seen then (first 0: none; indexes start at 1). */
    struct {
        unsigned ticks;
        uint64_t first, end;
    } log_gap;
    uv_signal_t sigterm, sigint;
    uv_signal_t sighup;            /* reloads the TLS certificates */
    struct tandem_sd sd;           /* systemd's notifications (node/sd_notify.h) */
    struct tandem_tls_ctx *tls;    /* borrowed (main owns it): NULL when TLS is off */
    struct tandem_keyring keyring; /* personal-data keys from key_file (node/api/pdata.h) */
    int data_dir_lock; /* owned: held from start to exit (storage/dir_lock.h); -1 when none */
    bool reexec;       /* after stopping, main re-executes tandemd (forced failover, re-seed) */
    /* Random per start (a re-executed tandemd has a new one): tells the process that accepted a
     * re-seed from the one that came back after it, even when both answer with an empty log. */
    char boot_id[TANDEM_NODE_BOOT_ID_LEN + 1];
    /* The automatic personal-data erasure (node/api/keys.c): the last pass (uv_now ms), a batch
     * in flight, and whether the last batch left more past retention. */
    uint64_t erase_last_ms;
    bool erase_inflight, erase_again;
    struct tandem_node_backup *backup; /* owned: the backup being taken (node/backup.h) or NULL */
    /* Set by tandem_node_start: one of the things tandem_node_stop waits for has closed (a backup
     * in flight counts); the last one closes the store and releases the data directory. */
    void (*closed)(struct tandem_node *node);
    bool stopping;
    int exit_code;
    unsigned handles_open;
};

/* Opens the state, starts raft, the API and the BCP runtime on loop with config (borrowed,
 * outlives the node), with node->tls (set before, NULL = no TLS) on the API and the clients.
 * Returns 0, or -1 (logged): the process exits, nothing is handed back. Run the loop afterwards; it
 * ends after tandem_node_stop with exit_code and reexec set. */
int tandem_node_start(struct tandem_node *node, uv_loop_t *loop, const struct tandem_config *c);
/* Closes everything; the loop ends once all is closed. Idempotent. */
void tandem_node_stop(struct tandem_node *node, int exit_code);
/* Stops the node after a fatal error (the supervisor restarts it; raft replays). */
void tandem_node_fatal(struct tandem_node *node, const char *what);

/* The erasure after personal_data_retention_days without an operator (issue 13 item 7): on the
 * leader only, at most every erase_interval_s, proposes one by-policy erase of at most
 * TANDEM_PDATA_ERASE_BATCH jobs past retention (chosen as POST /v1/retention/erase {} chooses
 * them, each with its "by policy" deletion record); a full batch is followed by the next one
 * once it is applied. Followers do nothing. Called once per loop turn (node.c);
 * node/api/keys.c. */
void tandem_pdata_erase_tick(struct tandem_node *node);

/* The HTTP handler: routes a request (node/api/router.c). */
void tandem_routes_handle(struct tandem_http_server *s, struct tandem_http_request *r);
/* Answers r and counts it in the metrics (node/api/router.c). */
void tandem_node_respond(struct tandem_node *node, struct tandem_http_request *r, int status,
                         const char *content_type, const char *extra_headers, const void *body,
                         size_t body_len);

#endif
