/* tandem's raft_uv transport: TCP connections between members, mutual TLS (consensus/tls.h)
 * unless the node runs insecure, that prove in a hello/ack handshake that both ends belong to the
 * same cluster and epoch (and, over TLS, that the certificate names the member the hello claims)
 * before raft_uv gets the stream; probe handshakes, a per-peer contact table and the start-up
 * quarantine gate. */
#ifndef TANDEM_CONSENSUS_TRANSPORT_H
#define TANDEM_CONSENSUS_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>

#include "consensus/frame_check.h"
#include "consensus/allow.h"
#include "consensus/member.h"
#include "consensus/tls.h"

/* How long a new connection may take to complete the handshake (both directions, including
 * name resolution and TCP connect for outbound ones) before it is closed. */
#define TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT 5000
#define TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MIN     10
#define TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MAX     60000

/* Inbound connections still in their handshake; more are closed on arrival, so a flood of
 * silent clients cannot use up memory or descriptors beyond this. */
#define TANDEM_TRANSPORT_PENDING_INBOUND_MAX 64

/* Peers remembered in the contact table; the least recently heard one makes room. */
#define TANDEM_TRANSPORT_CONTACTS_MAX 64

/* Inbound raft connections handed over (each through a consensus/raft_relay.h relay). A new one
 * from a peer id replaces that id's older one, and past this many the oldest is dropped: a
 * flood of connections cannot use up descriptors (a cluster needs one per peer). Outbound ones
 * over TLS go through relays too, capped the same way in a list of their own. */
#define TANDEM_TRANSPORT_RELAYS_MAX 64

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
    /* Whether this node is raft leader right now; said to peers in every hello and ack. May be
     * NULL (never leader). */
    bool (*leading)(void *data);
    void *leading_data; /* borrowed */
    bool quarantine;    /* start with the quarantine gate on (tandem_transport_set_quarantine) */
    /* Ceilings for inbound raft frames (consensus/frame_check.h); zero fields take the defaults
     * TANDEM_TRANSPORT_APPEND_BYTES_DEFAULT and TANDEM_TRANSPORT_SNAPSHOT_BYTES_DEFAULT. */
    struct tandem_frame_limits frame_limits;
    /* This node's raft term now: inbound frames may be at most TANDEM_FRAME_TERM_JUMP_MAX above
     * it. May be NULL (then 0). */
    uint64_t (*term)(void *data);
    void *term_data; /* borrowed */
    /* Whether id is a server of this node's raft configuration at exactly address (a member
     * address, consensus/member.h). A newer epoch in an inbound hello is learnt (and fences this
     * node) only from such a member, connecting from the host its raft address names when that
     * is an IP literal: anyone can reach the port and say any epoch. NULL: every peer counts. */
    bool (*member)(void *data, raft_id id, const char *address);
    void *member_data; /* borrowed */
    /* Mutual TLS on every connection (raft and probe, both directions), borrowed: it must outlive
     * the transport. Outbound, the server's certificate must be a node certificate naming the
     * member dialled; inbound, a node certificate naming the member the hello claims. NULL:
     * plaintext (--insecure, tests). */
    struct tandem_tls_ctx *tls;
    /* raft_allow (consensus/allow.h), borrowed, copied at init: an inbound connection from a
     * source outside it is closed right after accept, before TLS. NULL: every source. */
    const struct tandem_allow *allow;
};

#define TANDEM_TRANSPORT_APPEND_BYTES_DEFAULT   ((uint64_t)1 << 30)
#define TANDEM_TRANSPORT_SNAPSHOT_BYTES_DEFAULT ((uint64_t)4 << 30)

/* Counters since init, for metrics and tests. */
struct tandem_transport_stats {
    uint64_t accepted;           /* inbound handshakes handed to raft */
    uint64_t connected;          /* outbound handshakes handed to raft */
    uint64_t refused_cluster;    /* handshakes refused (either side) for a cluster id mismatch */
    uint64_t refused_epoch;      /* ... for an epoch mismatch */
    uint64_t refused_malformed;  /* ... for a malformed, oversized, truncated or foreign frame */
    uint64_t timed_out;          /* handshakes closed by the handshake timeout */
    uint64_t dropped_busy;       /* inbound connections closed at PENDING_INBOUND_MAX */
    uint64_t epoch_newest_seen;  /* highest epoch a peer reported (0 = none); above ours means
                                    the cluster moved on without us: we are fenced */
    uint64_t probed;             /* outbound probe handshakes completed */
    uint64_t probes_answered;    /* inbound probe handshakes answered */
    uint64_t quarantine_refused; /* raft connects failed by the quarantine gate */
    uint64_t refused_frame;      /* inbound connections dropped for a frame libraft must not see */
    uint64_t relays_open;        /* inbound raft connections open now */
    uint64_t relays_replaced;    /* ... closed for a newer one from the same id, or the cap */
    uint64_t epoch_ignored;      /* newer epochs in hellos not learnt: not from a member */
    uint64_t refused_tls;        /* TLS handshakes failed (plaintext, unknown CA, no cert ...) */
    uint64_t refused_identity;   /* certificate not a node's, or naming another member */
    uint64_t refused_allow;      /* inbound connections from outside raft_allow, closed at once */
    uint64_t relays_outbound_open; /* outbound raft connections relayed over TLS open now */
};

/* What the transport knows of one peer, by raft id. Times are the loop's (uv_now), 0 = never. */
struct tandem_transport_contact {
    raft_id id;
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1]; /* the member address last dialled or said */
    uint64_t last_ok_ms;     /* last completed handshake at our cluster and epoch, either
                                direction, probe or raft */
    uint64_t ok_since_ms;    /* first of the handshakes completed since the last one that
                                failed or was refused (0: the last one did): how long the peer
                                has stayed reachable at our epoch */
    uint64_t last_leader_ms; /* last such handshake in which the peer said it leads */
    uint64_t epoch;          /* the epoch it last reported (0 = none yet) */
    uint64_t last_probe_ms;  /* when our last probe to it started */
    bool probing;            /* a probe of ours to it is in flight */
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

/* Starts one outbound PROBE handshake to the peer (a tandem member address): the peer answers
 * the ack and both ends close; the result lands in the contact table. Returns 0 when started,
 * RAFT_BUSY when a probe to that peer is already in flight (nothing started), RAFT_INVALID for
 * a bad address or id, RAFT_CANCELED while closing, RAFT_NOMEM or RAFT_NOCONNECTION (t->errmsg
 * filled). */
int tandem_transport_probe(struct raft_uv_transport *t, raft_id id, const char *address);

/* The contact of one peer: 0, or -1 when the table has no entry for id. */
int tandem_transport_contact(const struct raft_uv_transport *t, raft_id id,
                             struct tandem_transport_contact *out);
/* Copies up to max contacts into out; returns how many. These and the functions below do
 * nothing (find nothing) once the transport was freed. */
unsigned tandem_transport_contacts(const struct raft_uv_transport *t,
                                   struct tandem_transport_contact *out, unsigned max);

/* The quarantine gate. While on, every connect raft_uv asks for fails (from the loop, with
 * RAFT_NOCONNECTION, as for an unreachable peer), so raft sends nothing: no pre-vote, vote,
 * vote grant or append response leaves this node. Inbound handshakes (raft's included) and
 * probes still work, so a leader can reach us and we learn of it. Connections raft already
 * holds stay open: turn it on before raft starts. */
void tandem_transport_set_quarantine(struct raft_uv_transport *t, bool on);

/* This node is fenced: a peer reported newest_epoch, above ours. From now on every inbound
 * handshake of our cluster is refused as an epoch mismatch whose ack carries newest_epoch, so
 * old-epoch peers that reach us learn of the newer epoch too (and are fenced) instead of
 * counting us as a node of their epoch. Outbound connections are the quarantine gate's to
 * stop. */
void tandem_transport_set_fenced(struct raft_uv_transport *t, uint64_t newest_epoch);
bool tandem_transport_quarantined(const struct raft_uv_transport *t);

/* Releases the memory of init. Call it only after t->close's callback has fired (raft_uv calls
 * t->close while closing the raft instance), or when t->listen and t->connect were never
 * called. */
void tandem_transport_close(struct raft_uv_transport *t);

#endif
