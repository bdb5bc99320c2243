/* The node's BCP runtime: health probes of every member, fenced detection, the site controller's
 * glue to the site table and the proposer, the /v1/bcp/status view, restart-in-place for
 * forced failover and re-seeding, and one-shot HTTP calls to other members. */
#ifndef TANDEM_NODE_BCP_RUNTIME_H
#define TANDEM_NODE_BCP_RUNTIME_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/raft_node.h"
#include "consensus/recover.h"
#include "consensus/site_controller.h"
#include "node/bcp/quarantine.h"
#include "node/config.h"
#include "node/http/client.h"
#include "replication/proposer.h"
#include "storage/store.h"

struct tandem_pool_reads; /* node/pool_read.h */

struct tandem_events;

#define TANDEM_BCP_TICK_MS               50 /* probes, fenced check and lag samples */
#define TANDEM_BCP_PEERS_MAX             64 /* members probed */
#define TANDEM_BCP_CLIENTS_MAX           64 /* kept-alive HTTP clients to other nodes' APIs */
#define TANDEM_BCP_CLIENT_CONNECTIONS    4  /* connections per client */
#define TANDEM_BCP_PROBE_INTERVAL_MIN_MS 100
#define TANDEM_BCP_PROBE_TIMEOUT_MAX_MS  1000
#define TANDEM_BCP_SAMPLES               1200 /* (time, last index) ring: lag_ms horizon of 60 s */
#define TANDEM_BCP_RESTART_DELAY_MS      300  /* lets the answer that caused a restart go out */
#define TANDEM_BCP_DECISIONS_SHOWN       20   /* decisions in /v1/bcp/status */
#define TANDEM_BCP_RELEASE_REASON_MAX    200  /* bytes of an operator's release reason */
#define TANDEM_BCP_NOTE_RETRY_MS         1000 /* between attempts to record a release */
#define TANDEM_BCP_RELEASE_ACTION        "quarantine release" /* its decision's action */

/* What the BCP runtime (and the drill, forced failover, rejoin and takeover waits built on it)
 * borrows from the node that owns it. Every pointer is borrowed and outlives the runtime. */
struct tandem_bcp_env {
    uv_loop_t *loop;
    const struct tandem_config *config;
    struct tandem_raft *raft;
    struct tandem_store *store;
    struct tandem_proposer *proposer;
    const struct tandem_member *self;
    struct tandem_events
        *events; /* node/bcp/events.h: tandem_events_emit(events, ...); may be NULL */
    /* Reads that grow with the state (node/pool_read.h); NULL: they run on the loop. */
    struct tandem_pool_reads *pool_reads;
    /* Stops the node with exit code 0; reexec: the process re-executes tandemd afterwards. */
    void (*stop)(void *data, bool reexec);
    void *data; /* the owner's, passed to stop */
};

struct tandem_bcp_peer {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char api[TANDEM_URL_LEN_MAX + 1];
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1]; /* its member address, probed over raft */
    uint64_t id;                                     /* its raft id */
    struct tandem_httpc_request req;                 /* the probe in flight */
    struct tandem_bcp *bcp;                          /* borrowed */
    bool used, inflight, seen;
    uint64_t last_ok_ms, last_sent_ms; /* API probe: last answer at our epoch, last sent */
    uint64_t since_ms;                 /* when it became a peer: the benefit of the doubt */
    uint64_t raft_sent_ms;             /* last raft transport probe started */
    json_t *view;                      /* owned: its last probe answer's "view" (or NULL) */
    uint64_t view_ms;                  /* when that answer came */
};

struct tandem_bcp_sample {
    uint64_t ms;
    uint64_t index;
};

/* One member's replication lag as the leader saw it; -1 where unknown. */
struct tandem_bcp_lag {
    char name[TANDEM_NAME_LEN_MAX + 1];
    int64_t entries;  /* raft log entries */
    int64_t commands; /* client writes in those entries */
    int64_t ms;       /* age of the oldest entry missing */
};

/* The leader's lag view from its last probe answer (n == 0: none heard yet). */
struct tandem_bcp_lag_heard {
    char from[TANDEM_NAME_LEN_MAX + 1];
    uint64_t at_ms; /* loop time it was heard */
    struct tandem_bcp_lag members[TANDEM_BCP_PEERS_MAX];
    unsigned n;
};

struct tandem_bcp {
    struct tandem_bcp_env env;
    uint64_t epoch; /* this node's fencing epoch, from the data directory (1 when absent) */
    bool fenced;    /* a newer epoch was seen: the cluster moved on without this node */
    uv_timer_t timer;
    uv_timer_t restart_timer;
    struct tandem_site_controller controller;
    struct tandem_bcp_peer peers[TANDEM_BCP_PEERS_MAX];
    struct tandem_http_pool clients; /* kept-alive clients to other nodes' APIs, by URL */
    struct tandem_bcp_sample samples[TANDEM_BCP_SAMPLES];
    unsigned sample_next, sample_count;
    char reported[TANDEM_SITE_PLAN_SITES_MAX][TANDEM_SITE_LEN_MAX + 1]; /* down reports written */
    unsigned n_reported;
    char forced_site[TANDEM_SITE_LEN_MAX + 1];   /* forced-invoke note still to record */
    struct tandem_forced_history forced_history; /* the seed's log, recorded with that invoke */
    bool forced_history_set;
    struct tandem_bcp_lag_heard lag_heard;
    uint64_t started_ms;
    uint64_t leader_seen_ms; /* uv_now when this node last knew a leader; 0 = never */
    char leader_seen_name[TANDEM_NAME_LEN_MAX + 1];
    bool fenced_logged;
    /* Start-up quarantine: on at every start until node/bcp/quarantine.h releases it. */
    bool quarantined;
    bool released_by_operator;
    char quarantine_why[TANDEM_QUARANTINE_WHY_MAX]; /* what it waits for, or what released it */
    char release_reason[TANDEM_BCP_RELEASE_REASON_MAX + 1];
    bool release_note_pending; /* the operator's release still to record at a leader */
    bool release_note_inflight;
    uint64_t release_note_sent_ms;
    bool restart_pending;
    unsigned handles_open; /* the controller, the pool and the two timers while open */
    bool closing;
    void (*close_cb)(struct tandem_bcp *b);
};

/* Takes env (copied) and loads the fencing epoch; before raft starts, which needs the epoch. */
void tandem_bcp_init(struct tandem_bcp *b, const struct tandem_bcp_env *env);
/* Starts probes, the fenced check and the site controller. Returns 0 or -1 (logged). */
int tandem_bcp_start(struct tandem_bcp *b);
void tandem_bcp_close(struct tandem_bcp *b, void (*cb)(struct tandem_bcp *b));

/* The site controller's view right now (the dry-run drill plans with it). Returns 0 or -1. */
int tandem_bcp_plan_input(struct tandem_bcp *b, struct tandem_site_plan_input *in);

/* At the leader: the largest replication lag of site's members in the configuration, in entries
 * and in ms (-1 when unknown). Returns 0, or -1 when this node does not lead or knows none. */
int tandem_bcp_site_lag(struct tandem_bcp *b, const char *site, int64_t *entries, int64_t *ms);

/* Whether a member answered an API probe, and completed a raft transport handshake at our
 * epoch, both within site_down_after_ms (this node: always). A new peer gets the benefit of
 * the doubt for site_down_after_ms. */
bool tandem_bcp_reachable(struct tandem_bcp *b, const char *name);
/* Each half of it; *age_ms (may be NULL) is the age of the last contact, -1 when never. */
bool tandem_bcp_api_reachable(struct tandem_bcp *b, const char *name, int64_t *age_ms);
bool tandem_bcp_raft_reachable(struct tandem_bcp *b, const char *name, int64_t *age_ms);

/* tandemctl member release: lifts this node's start-up quarantine now (logged at warn with
 * reason) and records the decision in the replicated history once a leader is known. Returns
 * 0, or -1 with errmsg (TANDEM_ERRMSG_SIZE) filled when the node is not quarantined. */
int tandem_bcp_release(struct tandem_bcp *b, const char *reason, char *errmsg);

/* On the leader: {"<member>": {"entries", "commands", "ms"}} (null where unknown), the lag of
 * every member; NULL elsewhere. Every probe answer carries it to the other members. */
json_t *tandem_bcp_lag_view(struct tandem_bcp *b);
/* {"name", "api", "site"} of the leader this node knows, or JSON null. */
json_t *tandem_bcp_leader_json(struct tandem_bcp *b);
/* The body of GET /v1/bcp/status, from the applied state in txn. NULL on an LMDB error. */
json_t *tandem_bcp_status_json(struct tandem_bcp *b, MDB_txn *txn);
/* What GET /v1/bcp/status?consistency=local adds: "local": true, "as_of" (wall_now_ms, RFC 3339),
 * this node's raft state and indexes, whether it knows a leader, and the leader it last knew
 * ("last_leader": {"name", "seen", "age_ms"} or null). NULL when out of memory. */
json_t *tandem_bcp_local_json(struct tandem_bcp *b, int64_t wall_now_ms);
/* Stops the node after TANDEM_BCP_RESTART_DELAY_MS and re-executes tandemd with the same
 * arguments; the markers written before (consensus/recover.h) say what the next start does. */
void tandem_bcp_restart(struct tandem_bcp *b, const char *why);

/* Prepares raft options from the data directory's markers: join when re-seeded, the recovered
 * configuration when a forced failover chose this node. *plan (owned, may be NULL) goes to
 * tandem_bcp_raft_started afterwards. Returns 0 or -1 (logged). */
struct tandem_raft_options;
struct tandem_recover_plan;
int tandem_bcp_raft_prepare(const char *data_dir, struct tandem_raft_options *o,
                            struct tandem_recover_plan **plan);
int tandem_bcp_raft_started(const char *data_dir, struct tandem_recover_plan *plan);

/* A one-shot request to another node's API (base URL + path) over a kept-alive client, with
 * extra_headers (NULL or complete lines ending "\r\n"; a body is sent as JSON). These clients
 * are never retired when the leader changes, so a long request (invoke waiting for the takeover
 * it causes) is not cancelled by that change. cb runs exactly once from the loop: status 0 with
 * the HTTP status and body (valid during the call), or a negative UV_* code. Returns 0, or a
 * UV_* code and cb never runs. */
typedef void (*tandem_bcp_call_cb)(void *data, int status, int http_status, const char *body,
                                   size_t body_len);
int tandem_bcp_call(struct tandem_bcp *b, const char *base_url, const char *method,
                    const char *path, const char *extra_headers, const char *body,
                    unsigned timeout_ms, tandem_bcp_call_cb cb, void *data);

/* The applied site table (grouped writes committed first), owned by the caller (free). NULL
 * after an LMDB error (store's errmsg) or when out of memory. */
struct tandem_site_table;
struct tandem_site_table *tandem_bcp_table_load(struct tandem_bcp *b);

#endif
