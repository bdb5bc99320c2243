/* The inbound half of a raft connection, between the peer's TCP stream and raft_uv: raft_uv
 * reads a socketpair whose other end this relay writes, and only whole frames that
 * consensus/frame_check.h accepts get there. libraft decodes whatever it reads with no bound on
 * sizes, counts or terms, so nothing from the wire may reach it unchecked (LIBRAFT-NOTES: "The
 * wire is trusted"). A bad frame drops the connection; raft_uv sees the socketpair close as it
 * would a peer that went away, and the peer reconnects.
 *
 * Memory grows with the bytes a peer has actually sent, never with what a header claims; reading
 * pauses while raft_uv has more than TANDEM_RELAY_QUEUED_BYTES_MAX bytes to take. */
#ifndef TANDEM_CONSENSUS_RAFT_RELAY_H
#define TANDEM_CONSENSUS_RAFT_RELAY_H

#include <stdint.h>

#include <raft.h>
#include <uv.h>

#include "consensus/frame_check.h"

#define TANDEM_RELAY_CHUNK_BYTES      (64u * 1024u) /* read buffer between frames */
#define TANDEM_RELAY_QUEUED_BYTES_MAX (8u * 1024u * 1024u)
#define TANDEM_RELAY_LABEL_MAX        160

struct tandem_relay;

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

/* Drops the connection (idempotent): both handles close, then config->closed runs. */
void tandem_relay_close(struct tandem_relay *relay);

raft_id tandem_relay_peer(const struct tandem_relay *relay);
const char *tandem_relay_label(const struct tandem_relay *relay);
uint64_t tandem_relay_frames(const struct tandem_relay *relay); /* whole frames passed on */

#endif
