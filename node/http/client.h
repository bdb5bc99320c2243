/* Small keep-alive, pipelining HTTP/1.1 client on libuv + http-parser for one host:port, the one
 * "http://host:port" URL parser, and the one pool of such clients keyed by URL (forwarding to the
 * leader, the BCP's calls to other members, the leader watch, the benchmark). */
#ifndef TANDEM_NODE_HTTP_CLIENT_H
#define TANDEM_NODE_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <stdbool.h>
#include <uv.h>
#include "consensus/tls.h"
#include "node/http/head.h"
#include "storage/error.h"
#include "storage/list.h"

#define TANDEM_HTTPC_TIMEOUT_MS_DEFAULT        10000u /* per request, used when 0 is given */
#define TANDEM_HTTPC_TIMEOUT_MS_MAX            3600000u
#define TANDEM_HTTPC_CONNECTIONS_MAX           64   /* ceiling of connections_max */
#define TANDEM_HTTPC_PIPELINE_DEPTH_MAX        32   /* requests in flight per connection */
#define TANDEM_HTTPC_QUEUE_MAX                 1024 /* waiting for a connection; more: UV_ENOBUFS */
#define TANDEM_HTTPC_REQUEST_BYTES_MAX         (65u * 1024u * 1024u)  /* serialised; more: E2BIG */
#define TANDEM_HTTPC_RESPONSE_HEADER_BYTES_MAX (64u * 1024u)          /* more: UV_E2BIG */
#define TANDEM_HTTPC_RESPONSE_BODY_BYTES_MAX   (64u * 1024u * 1024u)  /* more: UV_E2BIG */
#define TANDEM_HTTPC_HEADERS_KEPT_MAX          TANDEM_HTTP_FIELDS_MAX /* later ones dropped */
#define TANDEM_HTTPC_HOST_BYTES_MAX            256
#define TANDEM_HTTPC_READ_BUFFER_BYTES         (64u * 1024u)

struct tandem_httpc;
struct tandem_httpc_conn;

/* Valid only during the callback. */
struct tandem_httpc_response {
    int status;       /* HTTP status */
    const char *body; /* NUL-terminated */
    size_t body_len;
    /* internal */
    const struct tandem_httpc_conn *conn; /* borrowed */
};

/* Case-insensitive; NULL when absent. The first TANDEM_HTTPC_HEADERS_KEPT_MAX fields are kept. */
const char *tandem_httpc_response_header(const struct tandem_httpc_response *r, const char *name);

struct tandem_httpc_request;

/* status: 0 with resp, or a negative UV_* code with resp NULL:
 *   UV_ETIMEDOUT     this request's timeout passed;
 *   UV_ECANCELED     tandem_httpc_close;
 *   UV_ECONNABORTED  another request's timeout closed the connection this one was on;
 *   UV_EPROTO, UV_E2BIG  the response was malformed or over a TANDEM_HTTPC_RESPONSE_* bound;
 *   others           connecting or the connection failed (UV_ECONNREFUSED, UV_EOF, ...).
 * On an error the request may or may not have reached the server: tandem_httpc_request_sent()
 * says whether any of it was written. The client never resends anything. */
typedef void (*tandem_httpc_cb)(struct tandem_httpc_request *req, int status,
                                const struct tandem_httpc_response *resp);

/* The caller's memory, valid from send until its callback. */
struct tandem_httpc_request {
    void *data;          /* free for the caller */
    unsigned timeout_ms; /* 0 = the client's timeout; set before send */
    /* internal */
    struct tandem_httpc *client;    /* borrowed */
    struct tandem_httpc_conn *conn; /* borrowed; NULL while waiting */
    struct tandem_list link;        /* in the connection FIFO or the waiting queue */
    struct tandem_list by_deadline; /* in the client's deadline list: all pending */
    uint64_t deadline_ms;           /* uv_now() scale */
    char *wire; /* owned while waiting for a connection: the serialised request */
    size_t wire_len;
    tandem_httpc_cb cb;
    int is_head, sent;
};

/* 1 when bytes of req were handed to the socket (the server may have acted on it). */
int tandem_httpc_request_sent(const struct tandem_httpc_request *req);

struct tandem_httpc_stats {
    uint64_t connects, connect_errors, requests, responses, errors;
    uint64_t tls_refused; /* TLS handshakes that failed (the server's certificate, mostly) */
};

struct tandem_httpc {
    void *data; /* free for the owner */
    char errmsg[TANDEM_ERRMSG_SIZE];
    /* internal */
    uv_loop_t *loop; /* borrowed */
    char host[TANDEM_HTTPC_HOST_BYTES_MAX];
    char host_header[TANDEM_HTTPC_HOST_BYTES_MAX + 16]; /* host:port, IPv6 in brackets */
    char port_text[8];
    struct sockaddr_storage addr; /* when host is numeric */
    int host_numeric, port;
    unsigned connections_max, timeout_ms;
    uv_timer_t timer;         /* the earliest deadline */
    struct tandem_list conns; /* owned tandem_httpc_conn, newest first, freed in close callbacks */
    unsigned conns_active;    /* not closing */
    struct tandem_list waiting; /* borrowed tandem_httpc_request, oldest first */
    unsigned waiting_count;
    struct tandem_list deadlines; /* borrowed tandem_httpc_request, earliest deadline first */
    char *read_buf;               /* owned */
    int read_buf_busy, timer_open, closing, finished;
    void (*close_cb)(struct tandem_httpc *c);
    struct tandem_httpc_stats stats;
    unsigned pending;                          /* sent and not yet called back */
    void (*idle_cb)(struct tandem_httpc *c);   /* the pool's: after a callback left pending at 0 */
    struct tandem_tls_ctx *tls;                /* borrowed: NULL = plaintext */
    char expect_node[TANDEM_TLS_NAME_MAX + 1]; /* "" = any node certificate */
    uint64_t tls_quiet_until_ms; /* uv_now until which handshake failures are only counted */
};

/* host: numeric IPv4/IPv6 or a name (resolved asynchronously per connection; IPv4 results are
 * preferred). connections_max in 1..TANDEM_HTTPC_CONNECTIONS_MAX; timeout_ms 0 = default.
 * Returns 0 or a UV_* code with c->errmsg filled (then nothing needs closing). Connects lazily. */
int tandem_httpc_init(struct tandem_httpc *c, uv_loop_t *loop, const char *host, int port,
                      unsigned connections_max, unsigned timeout_ms);

/* Speaks TLS (tandem_tls CLIENT role: our certificate is the client certificate) on every
 * connection made from now on; call before the first send. The server must present a NODE
 * certificate of the cluster CA, naming expect_node when not NULL. tls is borrowed and outlives
 * c. A failed handshake fails the requests on that connection with UV_EPROTO and is logged at
 * warn (once a minute per client) with the reason. Returns 0 or UV_EINVAL (name too long). */
int tandem_httpc_set_tls(struct tandem_httpc *c, struct tandem_tls_ctx *tls,
                         const char *expect_node);

/* Queues a request: method and target are copied, extra_headers (NULL or complete lines each
 * ending "\r\n") and body too. Host and, when there is a body or the method is POST/PUT/PATCH,
 * Content-Length are added. req must stay valid until cb, which runs from the loop, never inside
 * this call. Returns 0, or (and cb never runs): UV_ENOBUFS when TANDEM_HTTPC_QUEUE_MAX requests
 * already wait for a connection, UV_E2BIG, UV_EINVAL (CR, LF or space in method/target),
 * UV_ECANCELED after close, or the error of starting a connection. */
int tandem_httpc_send(struct tandem_httpc *c, struct tandem_httpc_request *req, const char *method,
                      const char *target, const char *extra_headers, const void *body,
                      size_t body_len, tandem_httpc_cb cb);

/* Every pending request's callback runs with UV_ECANCELED before this returns; close_cb runs
 * from the loop once every handle is closed, and may free c. */
void tandem_httpc_close(struct tandem_httpc *c, void (*close_cb)(struct tandem_httpc *c));

/* ---- URLs ---- */

/* Splits "http://host:port[/path]" or "https://..." (IPv6 hosts in brackets) into host (room for
 * host_size bytes), port and, when path is not NULL, the path ("" or "/...", pointing into url).
 * Returns 0 or UV_EINVAL (another scheme, no port, a host too long). */
int tandem_url_parse(const char *url, char *host, size_t host_size, int *port, const char **path);
/* Whether url starts with "https://". */
bool tandem_url_is_https(const char *url);

/* ---- a pool of clients keyed by URL ---- */

#define TANDEM_HTTP_POOL_CLIENTS_MAX 64 /* ceiling of clients_max (the BCP keeps one per peer) */

struct tandem_http_pool_entry;

/* Clients to up to clients_max servers at once, one per host:port, made on first use. A client
 * pushed out (the least recently used, when another server is needed) retires: the requests it
 * holds finish, then it closes. A forwarder with clients_max 1 so follows the leader while the
 * requests already sent to a former leader are let finish. */
struct tandem_http_pool {
    void *data; /* free for the owner */
    char errmsg[TANDEM_ERRMSG_SIZE];
    /* internal */
    uv_loop_t *loop; /* borrowed */
    unsigned clients_max, connections, timeout_ms;
    struct tandem_list open;     /* owned entries: most recently used first */
    struct tandem_list retiring; /* owned entries: finishing their requests */
    unsigned open_count, retiring_count, closing_count;
    int closing;
    struct tandem_tls_ctx *tls; /* borrowed: NULL = plaintext (set by tandem_http_pool_set_tls) */
    void (*close_cb)(struct tandem_http_pool *p);
};

/* clients_max in 1..TANDEM_HTTP_POOL_CLIENTS_MAX; connections and timeout_ms per client as in
 * tandem_httpc_init (checked there, so a bad value fails every get). Returns 0 or UV_EINVAL with
 * p->errmsg filled; allocates nothing. */
int tandem_http_pool_init(struct tandem_http_pool *p, uv_loop_t *loop, unsigned clients_max,
                          unsigned connections, unsigned timeout_ms);

/* With tls (borrowed, outlives p) the pool talks only https:// URLs, with tls as the client
 * identity; without (the default, an insecure node) only http:// ones. The other scheme fails
 * get with UV_EINVAL: a TLS node never sends a byte in plaintext. Call before the first get. */
void tandem_http_pool_set_tls(struct tandem_http_pool *p, struct tandem_tls_ctx *tls);

/* The client for url's host:port (made now if needed), valid until the next pool call from the
 * owner. Returns 0, or with *out NULL and p->errmsg filled: UV_EINVAL (url, see tandem_url_parse),
 * UV_ECANCELED (closing), UV_ENOMEM, or tandem_httpc_init's error. */
int tandem_http_pool_get(struct tandem_http_pool *p, const char *url, struct tandem_httpc **out);
/* The same for a server that must prove, over TLS, to be the node named node (NULL = any node of
 * the cluster CA): one client per host:port and name. */
int tandem_http_pool_get_node(struct tandem_http_pool *p, const char *url, const char *node,
                              struct tandem_httpc **out);

/* tandem_http_pool_get, then tandem_httpc_send with target as given (url's own path is not
 * used); same returns and ownership as those two. */
int tandem_http_pool_send(struct tandem_http_pool *p, const char *url,
                          struct tandem_httpc_request *req, const char *method, const char *target,
                          const char *extra_headers, const void *body, size_t body_len,
                          tandem_httpc_cb cb);

/* tandem_http_pool_send to a server that must be node (see tandem_http_pool_get_node). */
int tandem_http_pool_send_node(struct tandem_http_pool *p, const char *url, const char *node,
                               struct tandem_httpc_request *req, const char *method,
                               const char *target, const char *extra_headers, const void *body,
                               size_t body_len, tandem_httpc_cb cb);

/* Every open client retires (its requests finish, then it closes). */
void tandem_http_pool_retire(struct tandem_http_pool *p);

/* Closes every client, cancelling what they hold (callbacks run with UV_ECANCELED before this
 * returns); close_cb runs from the loop once all are closed (at once from here when none was
 * ever made), and may free p. */
void tandem_http_pool_close(struct tandem_http_pool *p,
                            void (*close_cb)(struct tandem_http_pool *p));

#endif
