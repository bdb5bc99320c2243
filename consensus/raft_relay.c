/* The relay between a peer's connection and raft_uv: inbound it reads frames (from TCP or a TLS
 * session), has consensus/frame_check.c judge each whole one, writes the good ones to a
 * socketpair that raft_uv reads, and drops the connection at the first bad one; outbound over
 * TLS it encrypts what raft_uv writes into the socketpair. */
#include "consensus/raft_relay.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage/assert.h"
#include "storage/error.h"

#define WRITE_CHUNK_BYTES ((size_t)1 << 30) /* uv_buf_t lengths are unsigned int */
#define WRITE_BUFS_MAX    64                /* 64 GiB frames: above any ceiling we set */

struct tandem_relay {
    uv_loop_t *loop;                /* borrowed */
    uv_tcp_t *tcp;                  /* owned, raft_malloc'd: the peer's connection */
    struct tandem_relay_conn *conn; /* over TLS: owned, tcp is its first field; else NULL */
    bool outbound;                  /* raft_uv writes (TLS only); else it reads */
    uint8_t *out_buf;               /* outbound: owned, raft_uv's bytes on their way */
    unsigned tls_writes;            /* outbound: tandem_tls_write calls not yet called back */
    bool pipe_reading;              /* outbound: reading raft_uv's bytes (not backpressured) */
    uv_pipe_t pipe;                 /* our end of the socketpair raft_uv reads or writes */
    struct tandem_relay_config config;
    raft_id id;
    char label[TANDEM_RELAY_LABEL_MAX];
    uint8_t *buf; /* owned: bytes read and not yet passed on, from a frame's first byte */
    size_t len, cap;
    uint64_t need;   /* bytes the frame at buf has at least */
    size_t queued;   /* bytes written to the pipe and not yet taken */
    unsigned writes; /* uv_write requests in flight */
    unsigned handles_open;
    bool reading, closing, announce, pipe_open;
    uint64_t frames;
};

/* One frame on its way to raft_uv. */
struct relay_write {
    uv_write_t req;
    struct tandem_relay *relay;
    uint8_t *data; /* owned */
    size_t len;
};

static void relay_maybe_free(struct tandem_relay *relay)
{
    if (relay->handles_open > 0 || relay->writes > 0 || relay->tls_writes > 0) {
        return;
    }
    free(relay->buf);
    free(relay->out_buf);
    if (relay->announce) {
        relay->config.closed(relay->config.data, relay);
    }
    free(relay);
}

static void relay_tcp_close_cb(uv_handle_t *handle)
{
    struct tandem_relay *relay = handle->data;
    raft_free(handle);
    relay->handles_open--;
    relay_maybe_free(relay);
}

/* Over TLS the handle is the first field of its conn, which goes with the session. */
static void relay_tls_close_cb(uv_handle_t *handle)
{
    struct tandem_relay_conn *conn = tandem_relay_conn_of(handle);
    struct tandem_relay *relay = conn->owner;
    tandem_tls_free(conn->tls);
    raft_free(conn);
    relay->handles_open--;
    relay_maybe_free(relay);
}

static void relay_pipe_close_cb(uv_handle_t *handle)
{
    struct tandem_relay *relay = handle->data;
    relay->handles_open--;
    relay_maybe_free(relay);
}

void tandem_relay_close(struct tandem_relay *relay)
{
    if (relay->closing) {
        return;
    }
    relay->closing = true;
    if (relay->conn != NULL) {
        tandem_tls_close_notify(relay->conn->tls);
        uv_close((uv_handle_t *)relay->tcp, relay_tls_close_cb);
    } else {
        uv_close((uv_handle_t *)relay->tcp, relay_tcp_close_cb);
    }
    if (relay->pipe_open) {
        uv_close((uv_handle_t *)&relay->pipe, relay_pipe_close_cb);
    }
}

static void relay_refuse(struct tandem_relay *relay, const char *why)
{
    relay->config.refused(relay->config.data, relay, why);
    tandem_relay_close(relay);
}

static void relay_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *out)
{
    struct tandem_relay *relay = handle->data;
    (void)suggested;
    /* Grow towards what the frame needs, at most doubling: memory follows the bytes that came,
     * not the sizes a header claims. At least a chunk, to read small frames many at a time. */
    if (relay->buf == NULL || relay->need > relay->cap) {
        size_t grown = relay->cap * 2 > relay->len + TANDEM_RELAY_CHUNK_BYTES
                           ? relay->cap * 2
                           : relay->len + TANDEM_RELAY_CHUNK_BYTES;
        size_t cap = relay->need < grown ? (size_t)relay->need : grown;
        cap = cap < TANDEM_RELAY_CHUNK_BYTES ? TANDEM_RELAY_CHUNK_BYTES : cap;
        uint8_t *buf = realloc(relay->buf, cap);
        if (buf != NULL) {
            relay->buf = buf;
            relay->cap = cap;
        }
    }
    size_t room = relay->cap - relay->len;
    /* No room (out of memory): libuv then reads with UV_ENOBUFS and we drop the connection. */
    *out = uv_buf_init(room == 0 ? NULL : (char *)relay->buf + relay->len,
                       (unsigned)(room < WRITE_CHUNK_BYTES ? room : WRITE_CHUNK_BYTES));
}

static void relay_write_cb(uv_write_t *req, int status);

/* Hands the frame at the start of buf (size bytes) to raft_uv. Returns 0 or -1 (closing). */
static int relay_pass_on(struct tandem_relay *relay, size_t size)
{
    struct relay_write *w = calloc(1, sizeof *w);
    uint8_t *data = size == relay->len ? relay->buf : malloc(size);
    if (w == NULL || data == NULL) {
        free(w);
        relay_refuse(relay, "out of memory");
        return -1;
    }
    if (data == relay->buf) { /* the frame is the whole buffer: it goes as it is */
        relay->buf = NULL;
        relay->len = relay->cap = 0;
    } else {
        memcpy(data, relay->buf, size);
        memmove(relay->buf, relay->buf + size, relay->len - size);
        relay->len -= size;
    }
    uv_buf_t bufs[WRITE_BUFS_MAX];
    unsigned n = 0;
    for (size_t off = 0; off < size; off += WRITE_CHUNK_BYTES) {
        size_t chunk = size - off < WRITE_CHUNK_BYTES ? size - off : WRITE_CHUNK_BYTES;
        tandem_assert(n < WRITE_BUFS_MAX); /* frame ceilings are far below 64 GiB */
        bufs[n++] = uv_buf_init((char *)data + off, (unsigned)chunk);
    }
    w->relay = relay;
    w->data = data;
    w->len = size;
    w->req.data = w;
    if (uv_write(&w->req, (uv_stream_t *)&relay->pipe, bufs, n, relay_write_cb) != 0) {
        free(data);
        free(w);
        relay_refuse(relay, "raft_uv's end is gone");
        return -1;
    }
    relay->writes++;
    relay->queued += size;
    relay->frames++;
    return 0;
}

static int relay_net_read_start(struct tandem_relay *relay);

static void relay_net_read_stop(struct tandem_relay *relay)
{
    int rv = relay->conn != NULL ? tandem_tls_read_stop(relay->conn->tls)
                                 : uv_read_stop((uv_stream_t *)relay->tcp);
    tandem_assert(rv == 0); /* stopping a reading stream cannot fail */
    relay->reading = false;
}

static uint64_t relay_term_max(const struct tandem_relay *relay)
{
    uint64_t term = relay->config.term(relay->config.data);
    return term > UINT64_MAX - TANDEM_FRAME_TERM_JUMP_MAX ? UINT64_MAX
                                                          : term + TANDEM_FRAME_TERM_JUMP_MAX;
}

/* Passes on every whole frame in buf; stops at the first incomplete one or a bad one. */
static void relay_frames(struct tandem_relay *relay)
{
    char why[TANDEM_FRAME_WHY_SIZE];
    while (!relay->closing && relay->len > 0) {
        uint64_t need = 0;
        int rv = tandem_frame_size(relay->buf, relay->len, &relay->config.limits, &need, why);
        if (rv == TANDEM_FRAME_BAD) {
            relay_refuse(relay, why);
            return;
        }
        relay->need = need;
        if (rv == TANDEM_FRAME_MORE) {
            break;
        }
        if (tandem_frame_check(relay->buf, (size_t)need, relay_term_max(relay), why) != 0) {
            relay_refuse(relay, why);
            return;
        }
        if (relay_pass_on(relay, (size_t)need) != 0) {
            return;
        }
        relay->need = TANDEM_FRAME_PREAMBLE_SIZE;
    }
    if (!relay->closing && relay->reading && relay->queued > TANDEM_RELAY_QUEUED_BYTES_MAX) {
        relay_net_read_stop(relay);
    }
}

static void relay_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tandem_relay *relay = stream->data;
    (void)buf;
    if (relay->closing) {
        return;
    }
    if (nread < 0) {
        tandem_relay_close(relay); /* the peer went away (EOF) or failed; ENOBUFS: no memory */
        return;
    }
    relay->len += (size_t)nread;
    relay_frames(relay);
}

static void relay_write_cb(uv_write_t *req, int status)
{
    struct relay_write *w = req->data;
    struct tandem_relay *relay = w->relay;
    relay->writes--;
    relay->queued -= w->len;
    free(w->data);
    free(w);
    if (relay->closing) {
        relay_maybe_free(relay);
        return;
    }
    if (status < 0) {
        tandem_relay_close(relay); /* raft_uv closed its end */
        return;
    }
    if (!relay->reading && relay->queued <= TANDEM_RELAY_QUEUED_BYTES_MAX / 2) {
        if (relay_net_read_start(relay) != 0) {
            tandem_relay_close(relay);
            return;
        }
    }
}

static void relay_pipe_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *out)
{
    static char sink[64];
    (void)handle, (void)suggested;
    *out = uv_buf_init(sink, sizeof sink);
}

/* raft_uv never writes on a connection it receives on: any read here is its end closing. */
static void relay_pipe_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread != 0) {
        tandem_relay_close(stream->data);
    }
}

/* ---- over TLS ---- */

/* Makes room for more bytes after the buffered ones: doubling, but not past what the frame
 * needs unless the bytes that came are more. Returns 0 or -1 (out of memory). */
static int relay_reserve(struct tandem_relay *relay, size_t more)
{
    if (relay->cap - relay->len >= more) {
        return 0;
    }
    size_t want = relay->len + more;
    size_t need = relay->need > want ? (size_t)relay->need : want;
    size_t cap =
        relay->cap * 2 > TANDEM_RELAY_CHUNK_BYTES ? relay->cap * 2 : TANDEM_RELAY_CHUNK_BYTES;
    cap = cap < want ? want : cap > need ? need : cap;
    uint8_t *buf = realloc(relay->buf, cap);
    if (buf == NULL) {
        return -1;
    }
    relay->buf = buf;
    relay->cap = cap;
    return 0;
}

/* Inbound: the peer's decrypted bytes, judged frame by frame as over plain TCP. */
static void relay_tls_read_cb(void *data, ssize_t n, const char *bytes)
{
    struct tandem_relay *relay = ((struct tandem_relay_conn *)data)->owner;
    if (relay->closing) {
        return;
    }
    if (n < 0) {
        tandem_relay_close(relay); /* the peer went away, or its records were bad */
        return;
    }
    if (relay_reserve(relay, (size_t)n) != 0) {
        relay_refuse(relay, "out of memory");
        return;
    }
    memcpy(relay->buf + relay->len, bytes, (size_t)n);
    relay->len += (size_t)n;
    relay_frames(relay);
}

/* Outbound: the acceptor's raft_uv never writes, so a byte from the peer is a peer we must not
 * trust; the end of its stream ends ours. */
static void relay_tls_outbound_read_cb(void *data, ssize_t n, const char *bytes)
{
    struct tandem_relay *relay = ((struct tandem_relay_conn *)data)->owner;
    (void)bytes;
    if (relay->closing || n == 0) {
        return;
    }
    if (n > 0) {
        relay_refuse(relay, "the peer wrote on a raft connection it accepted");
        return;
    }
    tandem_relay_close(relay);
}

static int relay_net_read_start(struct tandem_relay *relay)
{
    int rv;
    if (relay->conn != NULL) {
        rv = tandem_tls_read_start(relay->conn->tls, relay->outbound ? relay_tls_outbound_read_cb
                                                                     : relay_tls_read_cb);
    } else {
        rv = uv_read_start((uv_stream_t *)relay->tcp, relay_alloc_cb, relay_read_cb);
    }
    relay->reading = rv == 0;
    return rv;
}

static void relay_out_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *out)
{
    struct tandem_relay *relay = handle->data;
    (void)suggested;
    *out = uv_buf_init((char *)relay->out_buf, TANDEM_RELAY_CHUNK_BYTES);
}

static void relay_out_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void relay_out_write_cb(void *data, void *write_data, int status)
{
    struct tandem_relay *relay = write_data;
    (void)data;
    relay->tls_writes--;
    if (relay->closing) {
        relay_maybe_free(relay);
        return;
    }
    if (status != 0) {
        tandem_relay_close(relay); /* the peer is gone: raft_uv sees its stream fail */
        return;
    }
    if (!relay->pipe_reading &&
        tandem_tls_write_queue_bytes(relay->conn->tls) <= TANDEM_RELAY_QUEUED_BYTES_MAX / 2) {
        if (uv_read_start((uv_stream_t *)&relay->pipe, relay_out_alloc_cb, relay_out_read_cb) !=
            0) {
            tandem_relay_close(relay);
            return;
        }
        relay->pipe_reading = true;
    }
}

/* Outbound: raft_uv's bytes, encrypted at once (out_buf is free again when the write returns);
 * reading pauses while more than TANDEM_RELAY_QUEUED_BYTES_MAX wait for the socket. */
static void relay_out_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tandem_relay *relay = stream->data;
    if (relay->closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        tandem_relay_close(relay); /* raft_uv closed its stream */
        return;
    }
    uv_buf_t plain = uv_buf_init(buf->base, (unsigned)nread);
    if (tandem_tls_write(relay->conn->tls, &plain, 1, relay, relay_out_write_cb) != TANDEM_OK) {
        tandem_relay_close(relay);
        return;
    }
    relay->tls_writes++;
    relay->frames++; /* writes passed on: raft_uv writes a message at a time */
    if (tandem_tls_write_queue_bytes(relay->conn->tls) > TANDEM_RELAY_QUEUED_BYTES_MAX) {
        int rv = uv_read_stop(stream);
        tandem_assert(rv == 0);
        relay->pipe_reading = false;
    }
}

static void relay_fail_close_cb(uv_handle_t *handle)
{
    raft_free(handle);
}

/* Opens the socketpair: our end into relay->pipe, raft_uv's into a raft_malloc'd pipe. On
 * failure relay->pipe may be initialised (pipe_open says so) and is closed with the relay. */
static int relay_pair_open(struct tandem_relay *relay, uv_stream_t **raft_side, char *errmsg)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return tandem_error_from_errno(errno, errmsg, "relay socketpair");
    }
    uv_pipe_t *side = raft_malloc(sizeof *side);
    if (side == NULL) {
        close(fds[0]);
        close(fds[1]);
        return tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory");
    }
    int rv = uv_pipe_init(relay->loop, &relay->pipe, 0);
    tandem_assert(rv == 0); /* uv_pipe_init only initialises fields */
    relay->pipe.data = relay;
    relay->pipe_open = true;
    relay->handles_open++;
    rv = uv_pipe_init(relay->loop, side, 0);
    tandem_assert(rv == 0);
    if ((rv = uv_pipe_open(&relay->pipe, fds[0])) != 0) {
        close(fds[0]);
        close(fds[1]);
        uv_close((uv_handle_t *)side, relay_fail_close_cb);
    } else if ((rv = uv_pipe_open(side, fds[1])) != 0) {
        close(fds[1]);
        uv_close((uv_handle_t *)side, relay_fail_close_cb);
    }
    if (rv != 0) {
        return tandem_error_from_uv(rv, errmsg, "relay socketpair");
    }
    *raft_side = (uv_stream_t *)side;
    return 0;
}

static int relay_reads_start(struct tandem_relay *relay, char *errmsg)
{
    int rv = relay_net_read_start(relay);
    if (rv != 0) {
        return relay->conn != NULL ? tandem_error_set(errmsg, TANDEM_NET, "relay read: %s",
                                                      tandem_tls_error(relay->conn->tls))
                                   : tandem_error_from_uv(rv, errmsg, "relay read");
    }
    if (relay->outbound) {
        rv = uv_read_start((uv_stream_t *)&relay->pipe, relay_out_alloc_cb, relay_out_read_cb);
        relay->pipe_reading = rv == 0;
    } else {
        rv = uv_read_start((uv_stream_t *)&relay->pipe, relay_pipe_alloc_cb, relay_pipe_read_cb);
    }
    return rv == 0 ? 0 : tandem_error_from_uv(rv, errmsg, "relay read");
}

/* Opens the socketpair and starts reading; on failure closes relay (no callback of config). */
static int relay_begin(struct tandem_relay *relay, const char *label, struct tandem_relay **out,
                       uv_stream_t **raft_side, char *errmsg)
{
    relay->need = TANDEM_FRAME_PREAMBLE_SIZE;
    relay->handles_open = 1; /* tcp */
    snprintf(relay->label, sizeof relay->label, "%s", label);
    uv_stream_t *side = NULL;
    int rv = relay_pair_open(relay, &side, errmsg);
    if (rv == 0 && (rv = relay_reads_start(relay, errmsg)) != 0) {
        uv_close((uv_handle_t *)side, relay_fail_close_cb);
    }
    if (rv != 0) {
        tandem_relay_close(relay); /* announce is false: no callback of config runs */
        return rv == TANDEM_NOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    relay->announce = true;
    *out = relay;
    *raft_side = side;
    return 0;
}

int tandem_relay_start(uv_loop_t *loop, uv_tcp_t *tcp, raft_id id, const char *label,
                       const struct tandem_relay_config *config, struct tandem_relay **out,
                       uv_stream_t **raft_side, char *errmsg)
{
    struct tandem_relay *relay = calloc(1, sizeof *relay);
    if (relay == NULL) {
        uv_close((uv_handle_t *)tcp, relay_fail_close_cb);
        (void)tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory");
        return RAFT_NOMEM;
    }
    relay->loop = loop;
    relay->tcp = tcp;
    relay->config = *config;
    relay->id = id;
    tcp->data = relay;
    return relay_begin(relay, label, out, raft_side, errmsg);
}

static void relay_conn_fail_close_cb(uv_handle_t *handle)
{
    struct tandem_relay_conn *conn = tandem_relay_conn_of(handle);
    tandem_tls_free(conn->tls);
    raft_free(conn);
}

int tandem_relay_start_tls(uv_loop_t *loop, struct tandem_relay_conn *conn, bool outbound,
                           raft_id id, const char *label, const struct tandem_relay_config *config,
                           struct tandem_relay **out, uv_stream_t **raft_side, char *errmsg)
{
    tandem_assert(conn->tls != NULL);
    struct tandem_relay *relay = calloc(1, sizeof *relay);
    uint8_t *out_buf = outbound ? malloc(TANDEM_RELAY_CHUNK_BYTES) : NULL;
    if (relay == NULL || (outbound && out_buf == NULL)) {
        free(relay);
        free(out_buf);
        uv_close((uv_handle_t *)&conn->tcp, relay_conn_fail_close_cb);
        (void)tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory");
        return RAFT_NOMEM;
    }
    relay->loop = loop;
    relay->conn = conn;
    relay->tcp = &conn->tcp;
    relay->outbound = outbound;
    relay->out_buf = out_buf;
    relay->config = *config;
    relay->id = id;
    conn->owner = relay; /* the TLS callbacks are the relay's from now on */
    return relay_begin(relay, label, out, raft_side, errmsg);
}

raft_id tandem_relay_peer(const struct tandem_relay *relay)
{
    return relay->id;
}

const char *tandem_relay_label(const struct tandem_relay *relay)
{
    return relay->label;
}

uint64_t tandem_relay_frames(const struct tandem_relay *relay)
{
    return relay->frames;
}

bool tandem_relay_outbound(const struct tandem_relay *relay)
{
    return relay->outbound;
}
