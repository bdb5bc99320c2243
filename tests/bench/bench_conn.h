/* One tandem-bench connection: keep-alive HTTP/1.1 over libuv, plain or through TLS
 * (consensus/tls.h) for https:// endpoints, with exactly one request in flight (no pipelining),
 * reconnecting on demand, reporting every request's outcome once. */
#ifndef TANDEM_BENCH_CONN_H
#define TANDEM_BENCH_CONN_H

#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "consensus/tls.h"
#include "storage/error.h"
#include "tests/bench/bench_http.h"

/* Bytes handed to one read callback; a response may span several reads. */
#define TANDEM_BENCH_READ_BUFFER_BYTES 16384

enum tandem_bench_conn_state {
    TANDEM_BENCH_CONN_CLOSED,     /* no socket */
    TANDEM_BENCH_CONN_CONNECTING, /* socket connecting, a request waits */
    TANDEM_BENCH_CONN_IDLE,       /* connected, nothing in flight */
    TANDEM_BENCH_CONN_BUSY,       /* request sent (or being written), waiting for its response */
    TANDEM_BENCH_CONN_CLOSING,    /* socket closing; a request may wait for the reconnect */
};

struct tandem_bench_conn;

/* Runs once per tandem_bench_conn_send that returned 0, from the loop (never inside send), with
 * the time the outcome was known (uv_hrtime). Not run for a request cut off by close. The
 * connection is IDLE, CLOSED or CLOSING by then, so the callback may send again. */
typedef void (*tandem_bench_conn_cb)(struct tandem_bench_conn *conn,
                                     enum tandem_bench_outcome outcome, uint64_t done_ns);

struct tandem_bench_conn {
    uv_tcp_t tcp;
    uv_timer_t deadline; /* the request's --timeout-ms, connect included */
    uv_connect_t connect_req;
    uv_write_t write_req;
    http_parser parser;
    void *data;                                   /* free for the owner */
    uv_loop_t *loop;                              /* borrowed */
    const struct tandem_bench_endpoint *endpoint; /* borrowed */
    const struct tandem_bench_payload *payload;   /* borrowed */
    struct tandem_tls_ctx *tls_ctx;               /* borrowed; needed for https:// endpoints */
    struct tandem_tls *tls;                       /* owned while tcp is open over TLS */
    tandem_bench_conn_cb cb;
    void (*close_cb)(struct tandem_bench_conn *conn);
    enum tandem_bench_conn_state state;
    unsigned timeout_ms;
    int request_waiting; /* a request is formatted but not yet handed to the socket */
    int writing;         /* write_req is in use until its callback */
    int closing;         /* tandem_bench_conn_close was called */
    int handles_open;    /* tcp (when open) and deadline */
    int message_complete, keep_alive;
    int status;              /* of the response being parsed */
    int last_error;          /* UV_* code behind the last CONNECT/IO outcome, for samples */
    const char *parse_error; /* static text behind the last PARSE outcome, for samples */
    char tls_error[TANDEM_ERRMSG_SIZE]; /* why the last TLS handshake or record failed */
    struct tandem_bench_request request;
    char body_prefix[TANDEM_BENCH_BODY_PREFIX_BYTES];
    size_t body_prefix_len;
    uint64_t connects;
    char read_buf[TANDEM_BENCH_READ_BUFFER_BYTES];
};

/* Connects lazily (on the first send); tls_ctx (borrowed, may be NULL for http://) is the client
 * identity for an https:// endpoint. Returns 0 or a UV_* code (nothing to close then). */
int tandem_bench_conn_init(struct tandem_bench_conn *conn, uv_loop_t *loop,
                           const struct tandem_bench_endpoint *endpoint,
                           const struct tandem_bench_payload *payload,
                           struct tandem_tls_ctx *tls_ctx, unsigned timeout_ms,
                           tandem_bench_conn_cb cb);

/* Sends op on key_index; the connection must not be CONNECTING or BUSY (one request in flight).
 * Returns 0 (cb will run) or a UV_* code: UV_EBUSY, UV_E2BIG from formatting, UV_ECANCELED after
 * close, or the error of opening a socket (cb will not run). */
int tandem_bench_conn_send(struct tandem_bench_conn *conn, enum tandem_bench_op op,
                           uint64_t key_index);

/* Closes the handles; a request in flight is abandoned without its callback. close_cb runs from
 * the loop when every handle is closed and may free conn. */
void tandem_bench_conn_close(struct tandem_bench_conn *conn,
                             void (*close_cb)(struct tandem_bench_conn *conn));

#endif
