/* The relay between a peer's connection and raft_uv. Inbound, raft_uv reads a socketpair whose
 * other end this relay writes, and only whole frames that consensus/frame_check.h accepts get
 * there. Outbound over TLS, raft_uv writes plaintext into the socketpair and the relay encrypts
 * it to the peer (which never writes on a connection it accepted: a byte from it drops the
 * connection). libraft decodes whatever it reads with no bound on
 * sizes, counts or terms, so nothing from the wire may reach it unchecked (LIBRAFT-NOTES: "The
 * wire is trusted"). A bad frame drops the connection; raft_uv sees the socketpair close as it
 * would a peer that went away, and the peer reconnects.
 *
 * Memory grows with the bytes a peer has actually sent, never with what a header claims; reading
 * pauses while raft_uv has more than TANDEM_RELAY_QUEUED_BYTES_MAX bytes to take. */
#ifndef TANDEM_CONSENSUS_RAFT_RELAY_H
#define TANDEM_CONSENSUS_RAFT_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <uv.h>

#include "consensus/frame_check.h"
#include "consensus/tls.h"

#define TANDEM_RELAY_CHUNK_BYTES      (64u * 1024u) /* read buffer between frames */
#define TANDEM_RELAY_QUEUED_BYTES_MAX (8u * 1024u * 1024u)
#define TANDEM_RELAY_LABEL_MAX        160

struct tandem_relay;

/* A peer's TCP connection and, over TLS, its session. tcp comes first: callbacks on the handle
 * find the rest from the handle's address, whatever the TLS module keeps in tcp.data. Allocated
 * with raft_malloc (raft_uv frees a plaintext stream it is given with raft_free). */
struct tandem_relay_conn {
    uv_tcp_t tcp;
    struct tandem_tls *tls; /* owned; NULL: plaintext. Freed in tcp's close callback */
    void *owner;            /* borrowed: whom the TLS callbacks (data = the conn) are for */
};

static inline struct tandem_relay_conn *tandem_relay_conn_of(uv_handle_t *tcp)
{
    return (struct tandem_relay_conn *)(void *)tcp;
}

struct tandem_relay_config {
    struct tandem_frame_limits limits;
    /* This node's current raft term: a frame's terms may be at most this plus
     * TANDEM_FRAME_TERM_JUMP_MAX. */
    uint64_t (*term)(void *data);
    /* A frame was refused and the connection is being dropped; why names the problem. */
    void (*refused)(void *data, const struct tandem_relay *relay, const char *why);
    /* The relay has closed both its handles and is about to be freed. */
    void (*closed)(void *data, struct tandem_relay *relay);
    void *data; /* borrowed, passed to the three */
};

/* Starts relaying tcp (raft_malloc'd, connected, not reading; owned by the relay from this call
 * on, success or not: on failure it is closed and freed) for the peer raft id. On success
 * *raft_side is a raft_malloc'd stream for raft_uv's accept callback, which owns it from then on,
 * and *out the relay, which the config's closed callback announces the end of. Returns 0, or
 * RAFT_NOMEM / RAFT_IOERR with errmsg filled (TANDEM_ERRMSG_SIZE bytes), and then no callback of
 * config runs. */
int tandem_relay_start(uv_loop_t *loop, uv_tcp_t *tcp, raft_id id, const char *label,
                       const struct tandem_relay_config *config, struct tandem_relay **out,
                       uv_stream_t **raft_side, char *errmsg);

/* Like tandem_relay_start for a connection whose TLS handshake (and ours) is done: conn
 * (connected, owned by the relay from this call on, success or not) carries the session; reads
 * go through it. outbound: raft_uv's stream is one it writes to the peer (it got it from a
 * connect), and the relay encrypts what it writes; otherwise the relay checks and decrypts the
 * peer's frames as tandem_relay_start does. */
int tandem_relay_start_tls(uv_loop_t *loop, struct tandem_relay_conn *conn, bool outbound,
                           raft_id id, const char *label, const struct tandem_relay_config *config,
                           struct tandem_relay **out, uv_stream_t **raft_side, char *errmsg);

/* Drops the connection (idempotent): both handles close, then config->closed runs. */
void tandem_relay_close(struct tandem_relay *relay);

raft_id tandem_relay_peer(const struct tandem_relay *relay);
const char *tandem_relay_label(const struct tandem_relay *relay);
/* Whole frames passed on; outbound: writes of raft_uv encrypted. */
uint64_t tandem_relay_frames(const struct tandem_relay *relay);
bool tandem_relay_outbound(const struct tandem_relay *relay);

#endif
