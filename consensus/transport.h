/* tandem's raft_uv transport: TCP connections between members that prove, in a hello/ack
 * handshake, that both ends belong to the same cluster and epoch before raft_uv gets the stream. */
#ifndef TANDEM_CONSENSUS_TRANSPORT_H
#define TANDEM_CONSENSUS_TRANSPORT_H

#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>

#include "consensus/member.h"

/* How long a new connection may take to complete the handshake (both directions, including
 * name resolution and TCP connect for outbound ones) before it is closed. */
#define TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT 5000
#define TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MIN     10
#define TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MAX     60000

/* Inbound connections still in their handshake; more are closed on arrival, so a flood of
 * silent clients cannot use up memory or descriptors beyond this. */
#define TANDEM_TRANSPORT_PENDING_INBOUND_MAX 64

struct tandem_transport_config {
    const char *cluster_id;        /* borrowed, copied at init */
    uint64_t epoch;                /* fencing epoch; peers with another epoch are refused */
    const char *bind_address;      /* borrowed, copied; optional "host:port" to listen on instead of
                                      the raft field of our own member address; NULL = that field */
    unsigned handshake_timeout_ms; /* 0 = TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT */
    /* Called for refusals, timeouts and I/O errors; level is a syslog(3) priority (LOG_WARNING,
     * LOG_INFO). msg is only valid during the call. May be NULL. */
    void (*log)(void *data, int level, const char *msg);
    void *log_data; /* borrowed */
};

/* Counters since init, for metrics and tests. */
struct tandem_transport_stats {
    uint64_t accepted;          /* inbound handshakes handed to raft */
    uint64_t connected;         /* outbound handshakes handed to raft */
    uint64_t refused_cluster;   /* handshakes refused (either side) for a cluster id mismatch */
    uint64_t refused_epoch;     /* ... for an epoch mismatch */
    uint64_t refused_malformed; /* ... for a malformed, oversized, truncated or foreign frame */
    uint64_t timed_out;         /* handshakes closed by the handshake timeout */
    uint64_t dropped_busy;      /* inbound connections closed at PENDING_INBOUND_MAX */
    uint64_t epoch_newest_seen; /* highest epoch a peer reported (0 = none); above ours means
                                   the cluster moved on without us: we are fenced */
};

/* Fills t (version 1, impl, methods) for raft_uv_init. t->data is preserved. Returns 0, or
 * RAFT_INVALID (bad config) / RAFT_NOMEM with t->errmsg filled; then nothing is allocated.
 * Our own identity and listen address come later from raft through t->init: the address is a
 * tandem member address "name|site|host:port|url". */
int tandem_transport_init(struct raft_uv_transport *t, struct uv_loop_s *loop,
                          const struct tandem_transport_config *config);

/* Connections handshaken from now on use and require epoch; established ones stay open. Also
 * forgets which refusals were logged, so the next refusal of each peer is logged again. */
void tandem_transport_set_epoch(struct raft_uv_transport *t, uint64_t epoch);
uint64_t tandem_transport_epoch(const struct raft_uv_transport *t);

void tandem_transport_stats(const struct raft_uv_transport *t, struct tandem_transport_stats *out);

/* Releases the memory of init. Call it only after t->close's callback has fired (raft_uv calls
 * t->close while closing the raft instance), or when t->listen and t->connect were never
 * called. */
void tandem_transport_close(struct raft_uv_transport *t);

#endif
