/* A follower that finds its leader's process gone campaigns after a short timeout instead of a
 * whole election timeout.
 *
 * A leader killed (kill -9, a crash, an OOM kill) or stopped leaves its followers waiting a
 * randomized election timeout, 400-800 ms at the defaults, and libraft's followers refuse votes
 * (pre-votes included) while their own timer still runs: an election succeeds only once a
 * majority of the survivors' timers ran out. Stop 23's lab measured a leader-kill write gap of
 * 686-922 ms for every one-round election.
 *
 * Once the leader has been quiet for two heartbeats, the follower probes its raft port (a PROBE
 * handshake, consensus/transport.h). A probe that fails fast (connection refused or reset, host
 * unreachable: not a handshake timeout) means nothing listens there any more, so the follower
 * lowers its election timeout to fast_timeout_ms for this one election. libraft 0.22.1 re-draws
 * the follower's randomized timeout at once (raft_set_election_timeout), counted from the last
 * contact. The configured timeout comes back as soon as the follower is no longer a follower
 * of that leader: it campaigned, or heard of another leader.
 *
 * Only liveness changes: a follower that campaigns early does so with pre-vote, which the other
 * followers refuse while they still hear a leader, and raft's safety never rests on timeouts.
 * A leader that is only cut off (a partition that drops packets) answers no probe at all, and
 * the election timeout stays as configured. */
#ifndef TANDEM_CONSENSUS_LEADER_LOSS_H
#define TANDEM_CONSENSUS_LEADER_LOSS_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>

/* Heartbeats without word from the leader before it is probed. */
#define TANDEM_LEADER_LOSS_QUIET_HEARTBEATS 2u

struct tandem_leader_loss {
    struct raft *raft;                   /* borrowed */
    struct raft_uv_transport *transport; /* borrowed: tandem_transport_init's */
    unsigned heartbeat_ms, election_timeout_ms, fast_timeout_ms;
    unsigned fast_fail_ms;     /* a probe that failed later than this timed out: no proof */
    raft_id suspect;           /* the quiet leader probed; 0: none */
    uint64_t probe_started_ms; /* raft's clock (io->time) */
    bool shortened;            /* the election timeout is fast_timeout_ms now */
    uint64_t shortened_total;  /* times a refused probe shortened it */
    void (*log)(void *data, const char *leader, unsigned fast_timeout_ms);
    void *log_data;
};

/* fast_timeout_ms below election_timeout_ms and at least one heartbeat; fast_fail_ms below the
 * transport's handshake timeout, so that a probe that timed out never counts as refused. */
void tandem_leader_loss_init(struct tandem_leader_loss *l, struct raft *raft,
                             struct raft_uv_transport *transport, unsigned heartbeat_ms,
                             unsigned election_timeout_ms, unsigned fast_timeout_ms,
                             unsigned fast_fail_ms);

/* Looks once (call it every half heartbeat or so, on the loop): probes a quiet leader, shortens
 * the election timeout when the probe failed fast, restores it once that leader is behind. */
void tandem_leader_loss_tick(struct tandem_leader_loss *l);

#endif
