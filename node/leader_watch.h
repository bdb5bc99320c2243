/* A follower's periodic look at the leader's progress, which decides whether the follower may
 * take its own snapshot: a follower only receives an InstallSnapshot when it is far behind, and
 * one that arrives while it writes its own snapshot is dropped by consensus/raft_shield.h (libraft
 * 0.22.1 would crash on it), to be sent again only after install_snapshot_timeout_ms (30 s by
 * default). So a follower snapshots only when a fresh look says it is close.
 *
 * The gate is no longer what keeps the node alive: tests/sim/test_shields.c shows the crash with
 * the shield off and none with it on, without any gate (the fixture has none). It stays for the
 * catch-up time: in the 20 schedules of test_all_shields_on, 147 InstallSnapshots arrived during
 * the follower's own snapshot write, each one a resend timeout lost without the gate. */
#ifndef TANDEM_NODE_LEADER_WATCH_H
#define TANDEM_NODE_LEADER_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/member.h"
#include "node/http/client.h"

#define TANDEM_LEADER_WATCH_INTERVAL_MS 500 /* how often a follower asks the leader */
/* How old a look may be and still count: after a stall (SIGSTOP, a partition) the last look
 * describes a leader that has long moved on. */
#define TANDEM_LEADER_WATCH_FRESH_MS   1500
#define TANDEM_LEADER_WATCH_TIMEOUT_MS 1000

/* What the watch needs of this node's raft, asked afresh on every look and every gate call
 * (the gate does not want the leader: leader_known stays false). */
struct tandem_leader_view {
    bool leading;      /* this node leads: it never asks, and may always snapshot */
    bool leader_known; /* leader is filled in */
    struct tandem_member leader;
    uint64_t applied; /* this node's last applied index */
    /* Asked with the leader only: this node's name, and whether its raft log holds its whole
     * byte budget while its snapshot is being taken (tandem_fsm_log_full), with the figures. */
    const char *self;
    bool log_full;
    uint64_t log_held, log_budget;
};

typedef void (*tandem_leader_watch_look_fn)(void *data, bool want_leader,
                                            struct tandem_leader_view *out);

struct tandem_leader_watch {
    uv_loop_t *loop; /* borrowed */
    unsigned snapshot_trailing;
    tandem_leader_watch_look_fn look;
    void *look_data; /* borrowed, passed to look */
    void *data;      /* free for the owner */
    uv_timer_t timer;
    struct tandem_http_pool pool; /* one client, to the current leader */
    struct tandem_httpc_request req;
    bool inflight;
    uint64_t leader_commit_index; /* from the last answer */
    uint64_t seen_ms;             /* uv_now when it arrived; 0 = never */
    uint64_t snapshots_deferred;
    /* The report of a full log to the leader (node/log_reports.h): sent on each look while the
     * log is full, and once more when it no longer is, until the leader takes it. */
    struct tandem_httpc_request report_req;
    bool report_inflight;
    bool report_full;   /* what the report in flight says */
    bool reported_full; /* the leader took a report of a full log, and none since saying not */
    char report_body[192];
    uint64_t reports_sent;
    bool pool_closed;
    bool closing;
    void (*close_cb)(struct tandem_leader_watch *w);
};

/* Starts looking at the leader every TANDEM_LEADER_WATCH_INTERVAL_MS. Returns 0, or a tandem
 * error code (errmsg filled); the timer, if it was opened, then closes on the loop. */
int tandem_leader_watch_start(struct tandem_leader_watch *w, uv_loop_t *loop,
                              unsigned snapshot_trailing, tandem_leader_watch_look_fn look,
                              void *look_data, char *errmsg);
/* The FSM's snapshot gate (see tandem_fsm_set_snapshot_gate). */
bool tandem_leader_watch_snapshot_allowed(void *data);
void tandem_leader_watch_close(struct tandem_leader_watch *w,
                               void (*cb)(struct tandem_leader_watch *w));

#endif
