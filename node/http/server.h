/* HTTP/1.1 server on libuv + http-parser: keep-alive, pipelining with in-order responses,
 * asynchronous handlers, bounded limits and pooled request objects. */
#ifndef TANDEM_NODE_HTTP_SERVER_H
#define TANDEM_NODE_HTTP_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "consensus/allow.h"
#include "consensus/tls.h"
#include "node/http/head.h"
#include "node/http/principal.h"
#include "node/http/sources.h"
#include "storage/error.h"
#include "storage/list.h"

/* Limits: default, minimum and maximum of every field of struct tandem_http_limits. */
#define TANDEM_HTTP_BODY_BYTES_DEFAULT      (1024u * 1024u)
#define TANDEM_HTTP_BODY_BYTES_MIN          1024u
#define TANDEM_HTTP_BODY_BYTES_MAX          (64u * 1024u * 1024u)
#define TANDEM_HTTP_HEADER_BYTES_DEFAULT    (16u * 1024u)
#define TANDEM_HTTP_HEADER_BYTES_MIN        1024u
#define TANDEM_HTTP_HEADER_BYTES_MAX        (64u * 1024u) /* http-parser's own cap is 80 KiB */
#define TANDEM_HTTP_CONNECTIONS_DEFAULT     4096u
#define TANDEM_HTTP_CONNECTIONS_MIN         1u
#define TANDEM_HTTP_CONNECTIONS_MAX         65536u
#define TANDEM_HTTP_PIPELINE_DEPTH_DEFAULT  128u
#define TANDEM_HTTP_PIPELINE_DEPTH_MIN      1u
#define TANDEM_HTTP_PIPELINE_DEPTH_MAX      1024u
#define TANDEM_HTTP_IDLE_TIMEOUT_MS_DEFAULT 60000u
#define TANDEM_HTTP_IDLE_TIMEOUT_MS_MIN     10u
#define TANDEM_HTTP_IDLE_TIMEOUT_MS_MAX     3600000u
/* A request's head (request line and header fields) must arrive within this time of its first
 * byte, and a new connection's first request head within this time of the accept: a client that
 * trickles bytes to hold connections open (slowloris) is answered 408 and closed. */
#define TANDEM_HTTP_HEADER_TIMEOUT_MS_DEFAULT 10000u
#define TANDEM_HTTP_HEADER_TIMEOUT_MS_MIN     10u
#define TANDEM_HTTP_HEADER_TIMEOUT_MS_MAX     600000u
#define TANDEM_HTTP_REQUESTS_DEFAULT          65536u /* requests handed out, not yet answered */
#define TANDEM_HTTP_REQUESTS_MIN              1u
#define TANDEM_HTTP_REQUESTS_MAX              (1u << 20)

/* Fixed bounds of the implementation. */
#define TANDEM_HTTP_HEADERS_KEPT_MAX         TANDEM_HTTP_FIELDS_MAX /* per request; more -> 431 */
#define TANDEM_HTTP_REQUEST_POOL_MAX         1024          /* idle request objects kept for reuse */
#define TANDEM_HTTP_POOLED_BUFFER_BYTES_MAX  (64u * 1024u) /* bigger buffers are freed on reuse */
#define TANDEM_HTTP_READ_BUFFER_BYTES        (64u * 1024u) /* one per server, shared by reads */
#define TANDEM_HTTP_WRITE_BATCH_MAX          64            /* responses gathered into one write */
#define TANDEM_HTTP_LINGER_MS                2000 /* drain the peer after a final response */
#define TANDEM_HTTP_LISTEN_BACKLOG           511
#define TANDEM_HTTP_REJECT_HEADERS_BYTES_MAX 256  /* header lines on the server's refusals */
#define TANDEM_HTTP_ERROR_MESSAGE_BYTES_MAX  1024 /* formatted text of respond_error */
#define TANDEM_HTTP_QUERY_NAME_BYTES_MAX     256  /* longer query names never match */
/* A stream's bytes not yet written; a reader further behind is disconnected. */
#define TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX (1024u * 1024u)
#define TANDEM_HTTP_STREAM_KEEPALIVE_S        60   /* TCP keepalive idle time of a stream */
#define TANDEM_HTTP_STREAM_HEADERS_BYTES_MAX  2048 /* extra header lines of a sized stream */
/* Refused TLS handshakes are logged once per source address per this long (the rest counted);
 * at most this many sources are remembered, so a flood from many addresses logs a bounded
 * number of lines a minute. */
#define TANDEM_HTTP_TLS_REFUSAL_LOG_MS      60000u
#define TANDEM_HTTP_TLS_REFUSAL_SOURCES_MAX 64
#define TANDEM_HTTP_SOURCE_BYTES_MAX        64 /* an address as text (INET6_ADDRSTRLEN fits) */

struct tandem_http_limits {
    size_t body_bytes_max;       /* larger request bodies are answered 413 by the server */
    size_t header_bytes_max;     /* request line + header fields; larger -> 431 */
    unsigned connections_max;    /* further connections are accepted and closed at once */
    unsigned pipeline_depth_max; /* per connection; when full, reading pauses (backpressure) */
    unsigned idle_timeout_ms;    /* a connection with nothing in flight for this long closes */
    unsigned header_timeout_ms;  /* a request head not complete this long after it began -> 408 */
    unsigned requests_max;       /* server-wide requests handed out and unanswered; more -> 503 */
};

void tandem_http_limits_default(struct tandem_http_limits *l);

/* Returns 0, or -1 with errmsg (TANDEM_ERRMSG_SIZE bytes) naming the field outside its [MIN, MAX].
 */
int tandem_http_limits_check(const struct tandem_http_limits *l, char *errmsg);

struct tandem_http_server;
struct tandem_http_conn;
struct tandem_http_stream;

/* A complete request handed to the handler. Everything is owned by the server and stays valid,
 * unchanged, until tandem_http_respond*() is called on it, even if the client disconnects
 * first. Fields below "internal" are not for the handler. */
struct tandem_http_request {
    int method;     /* enum http_method */
    int http_major; /* request's HTTP version */
    int http_minor;
    const char *url;   /* raw request target, NUL-terminated */
    const char *path;  /* url up to '?', NUL-terminated, NOT percent-decoded */
    const char *query; /* after '?', NUL-terminated, "" when none */
    const char *body;  /* NUL-terminated ("" when none) */
    size_t body_len;
    uint64_t start_ns; /* uv_hrtime() when the request was complete */
    void *data;        /* free for the handler; NULL when handed over */
    /* Who the connection's TLS handshake proved the client to be: kind TANDEM_TLS_PEER_NONE on a
     * plaintext (insecure) server. Set by the server before the handler runs. */
    struct tandem_tls_peer peer;
    /* Who the request acts as, set by the router's authorisation (node/api/authz.h): peer, or
     * the user a node forwarded the request for. */
    struct tandem_tls_peer identity;
    /* The person, node or nobody the request acts as, with its roles (node/http/principal.h);
     * resolved by the router before the handler runs. */
    struct tandem_principal principal;
    /* internal */
    struct tandem_http_server *server; /* borrowed */
    struct tandem_http_conn *conn;     /* borrowed; NULL once the connection is gone */
    struct tandem_list link;           /* in the connection queue or the server pool */
    struct tandem_http_head head;      /* url (the leading token), header fields, path, query */
    char *body_buf;                    /* owned */
    size_t body_cap;
    char *resp; /* owned: the serialised response */
    size_t resp_len, resp_cap;
    int keep_alive; /* the connection stays open after this response */
    int handed;     /* given to the handler, awaiting respond */
    int responded;  /* resp holds the response */
    int streaming;  /* resp is the head of the connection's stream */
};

/* Returns the value of header `name` (case-insensitive), NULL if absent. The first of repeated
 * fields wins. */
const char *tandem_http_request_header(const struct tandem_http_request *r, const char *name);
/* The address of the client a node forwarded a request for (node/http/forward.c sends it; a
 * request that carries it from a peer other than a node is refused by node/api/authz.c). */
#define TANDEM_FORWARDED_SOURCE_HEADER "X-Tandem-Forwarded-Source"
/* Whether text is an IPv4 or IPv6 address as tandem_http_request_source writes it. */
bool tandem_http_source_text_ok(const char *text);
/* The client's address (IP) into out ("?" when unknown or the connection is gone): for a request
 * a node forwarded (its certificate proved it), the address of the client it forwarded for. */
void tandem_http_request_source(const struct tandem_http_request *r, char *out, size_t size);

/* Called once per complete request, on the loop thread, in request order per connection. The
 * handler must eventually call exactly one tandem_http_respond*() on r, now or later. It may
 * call tandem_http_server_close(). The server itself answers, without calling the handler:
 * 400 malformed request, 413 body over body_bytes_max (from Content-Length before the body is
 * read), 431 header fields over header_bytes_max or TANDEM_HTTP_HEADERS_KEPT_MAX, 503 over
 * requests_max; each {"error":"..."} and the connection closes after it. "Expect: 100-continue"
 * gets "100 Continue" when nothing earlier on the connection is unanswered; otherwise none is
 * sent and the client sends the body after its own wait (curl: 1 s). */
typedef void (*tandem_http_handler_fn)(struct tandem_http_server *s, struct tandem_http_request *r);

struct tandem_http_server_stats {
    uint64_t connections_open, connections_total, connections_rejected;
    uint64_t requests_total; /* handed to the handler */
    uint64_t requests_outstanding;
    uint64_t rejected_400, rejected_408, rejected_413, rejected_431, rejected_503, rejected_505;
    uint64_t streams_open;
    /* Connections closed right after accept, before anything is read: source outside the
     * allow-list, or already at per_source_max open connections. */
    uint64_t refused_allow, refused_per_source;
    uint64_t tls_refused; /* failed or timed-out TLS handshakes (connection closed) */
};

/* A source whose refused handshake was logged ("" = a free slot), and until when (uv_now) its
 * next refusals are only counted. */
struct tandem_http_refusal_source {
    char source[TANDEM_HTTP_SOURCE_BYTES_MAX];
    uint64_t quiet_until_ms;
};

struct tandem_http_server {
    void *data; /* free for the owner (set by init); the handler reads it through s->data */
    char errmsg[TANDEM_ERRMSG_SIZE];
    /* Set by the owner when the listener speaks TLS (0 by init): the router then asks every
     * request for a credential (node/api/authz.h). */
    int tls_required;
    /* internal */
    uv_loop_t *loop; /* borrowed */
    uv_tcp_t listener;
    uv_idle_t resume_idle; /* resumes connections whose pipeline drained */
    struct tandem_http_limits limits;
    tandem_http_handler_fn handler;
    struct tandem_list conns;  /* owned tandem_http_conn, freed in close callbacks */
    struct tandem_list resume; /* borrowed tandem_http_conn to resume, last queued first */
    struct tandem_list pool;   /* owned idle tandem_http_request */
    unsigned pool_count;
    char *read_buf; /* owned, TANDEM_HTTP_READ_BUFFER_BYTES */
    int read_buf_busy;
    unsigned handles_open; /* listener + resume_idle not yet closed */
    unsigned rejecting;    /* over-limit sockets being closed */
    int listening, closing, finished;
    void (*close_cb)(struct tandem_http_server *s);
    struct tandem_http_server_stats stats;
    char reject_headers[TANDEM_HTTP_REJECT_HEADERS_BYTES_MAX]; /* on the server's own refusals */
    const struct tandem_allow *allow;                          /* borrowed; NULL: every source */
    unsigned per_source_max;       /* open connections from one address; 0: no limit */
    struct tandem_sources sources; /* owned when per_source_max > 0 */
    struct tandem_tls_ctx *tls;    /* borrowed: NULL = plaintext */
    struct tandem_http_refusal_source refusals[TANDEM_HTTP_TLS_REFUSAL_SOURCES_MAX];
};

/* Validates limits (NULL = defaults) and initialises s. Returns 0, or a UV_* code with s->errmsg
 * filled; then nothing needs closing. After 0, s must be closed with tandem_http_server_close. */
int tandem_http_server_init(struct tandem_http_server *s, uv_loop_t *loop,
                            const struct tandem_http_limits *limits, tandem_http_handler_fn handler,
                            void *data);

/* Binds host (numeric IPv4 or IPv6) and port (0 = ephemeral) and starts accepting. Returns 0 or
 * a UV_* code with errmsg (TANDEM_ERRMSG_SIZE bytes) filled. */
int tandem_http_server_listen(struct tandem_http_server *s, const char *host, int port,
                              char *errmsg);

/* The bound port, or -1 when not listening. */
int tandem_http_server_port(const struct tandem_http_server *s);

/* Serves HTTPS: every connection accepted from now on runs a TLS server handshake of tls
 * (borrowed, outlives s; NULL = plaintext, the default) before any HTTP byte is read. The
 * head deadline (header_timeout_ms from the accept) also bounds the handshake. A failed or late
 * handshake closes the connection without an answer, counts in stats.tls_refused and is logged
 * at warn once per source per TANDEM_HTTP_TLS_REFUSAL_LOG_MS. Each request's peer says who the
 * client certificate names. */
void tandem_http_server_set_tls(struct tandem_http_server *s, struct tandem_tls_ctx *tls);

/* Header lines ("Name: value\r\n"...) added to the answers the server gives itself (400, 413,
 * 431, 503), so they name the node like every other answer. Returns 0, or -1 when too long. */
int tandem_http_server_set_reject_headers(struct tandem_http_server *s, const char *headers);

/* Admission of new connections, checked right after accept and before anything is read (so
 * before any TLS): the source address must match allow (borrowed, must outlive s; NULL = every
 * source) and have fewer than per_source_max (0 = no limit) connections open. Refused
 * connections are closed at once and counted (refused_allow, refused_per_source). Call before
 * listen. Returns 0, or UV_ENOMEM with s->errmsg filled. */
int tandem_http_server_set_sources(struct tandem_http_server *s, const struct tandem_allow *allow,
                                   unsigned per_source_max);

void tandem_http_server_stats(const struct tandem_http_server *s,
                              struct tandem_http_server_stats *out);

/* Stops accepting and closes every connection at once (responses not yet written are dropped).
 * Requests still held by the handler stay valid and must still be answered: respond then only
 * releases them. close_cb (may be NULL) runs once all handles are closed AND every such request
 * has been answered: from the loop, or inside the respond call answering the last one. It may
 * free s. */
void tandem_http_server_close(struct tandem_http_server *s,
                              void (*close_cb)(struct tandem_http_server *s));

/* Answers r; r must not be touched afterwards. extra_headers: NULL or complete header lines, each
 * ending "\r\n". The server adds Content-Length (not for 1xx/204/304), Content-Type (when
 * content_type is not NULL) and Connection. Headers and body are copied. A HEAD request gets no
 * body. Responses go out in request order per connection, whatever order respond is called in. */
void tandem_http_respond(struct tandem_http_request *r, int status, const char *content_type,
                         const char *extra_headers, const void *body, size_t body_len);
void tandem_http_respond_json(struct tandem_http_request *r, int status, const char *extra_headers,
                              const char *json_text);
/* Body {"error":"<message>"}, the message JSON-escaped (invalid UTF-8 becomes U+FFFD) and cut at
 * TANDEM_HTTP_ERROR_MESSAGE_BYTES_MAX. */
void tandem_http_respond_error(struct tandem_http_request *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Streaming responses (server-sent events): the head goes out without Content-Length and with
 * "Connection: close", then chunks are written as they come until either side closes. */

/* Runs once when the stream's connection is gone (the client left, a write failed, more than
 * TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX were waiting, tandem_http_stream_close, or the server
 * closed), from the loop and never inside a stream call. The stream is freed after it returns. */
typedef void (*tandem_http_stream_close_fn)(struct tandem_http_stream *stream, void *data);

/* Answers r with the head of a streaming response (extra_headers as for tandem_http_respond)
 * and returns the stream through *out; r must not be touched afterwards. Reads no further
 * requests on the connection. Returns 0, UV_EBUSY when requests pipelined after r are already
 * waiting (r is then not answered), or UV_ENOMEM (r not answered). */
int tandem_http_stream_open(struct tandem_http_request *r, int status, const char *content_type,
                            const char *extra_headers, tandem_http_stream_close_fn close_cb,
                            void *data, struct tandem_http_stream **out);
/* Queues bytes (copied) after what was written before. Returns 0, or a UV_* code when the
 * stream is closing or over its buffer bound; then the connection closes and close_cb follows. */
int tandem_http_stream_write(struct tandem_http_stream *stream, const void *bytes, size_t len);
/* Closes the connection after nothing more; close_cb still runs. Idempotent. */
void tandem_http_stream_close(struct tandem_http_stream *stream);

/* Fixed-length streams (a file sent in chunks): the writer is told when bytes left its buffer,
 * so it keeps at most TANDEM_HTTP_STREAM_BUFFERED_BYTES_MAX queued however slow the reader. */

/* Runs from the loop after the head went out and whenever a write of the stream completed (so
 * tandem_http_stream_buffered dropped), until tandem_http_stream_end or the close. It may write
 * and end the stream. */
typedef void (*tandem_http_stream_drain_fn)(struct tandem_http_stream *stream, void *data);

/* As tandem_http_stream_open, with "Content-Length: content_length" in the head (the writer
 * must write exactly that many bytes, then end) and drain_cb (may be NULL). Returns as
 * tandem_http_stream_open does, or UV_E2BIG when extra_headers are over
 * TANDEM_HTTP_STREAM_HEADERS_BYTES_MAX (r is then not answered). */
int tandem_http_stream_open_sized(struct tandem_http_request *r, int status,
                                  const char *content_type, const char *extra_headers,
                                  uint64_t content_length, tandem_http_stream_drain_fn drain_cb,
                                  tandem_http_stream_close_fn close_cb, void *data,
                                  struct tandem_http_stream **out);
/* Bytes written and not yet confirmed by the socket (TLS: encrypted and handed to tcp). */
size_t tandem_http_stream_buffered(const struct tandem_http_stream *stream);
/* Nothing more will be written: once every byte is out, the connection sends its FIN (TLS
 * close_notify first), discards what the client still sends for up to TANDEM_HTTP_LINGER_MS
 * and closes; close_cb runs then. Idempotent. */
void tandem_http_stream_end(struct tandem_http_stream *stream);
/* Whether the stream was ended and every byte written was confirmed by the socket (so a close
 * after it is the clean one); meaningful in close_cb too. */
bool tandem_http_stream_delivered(const struct tandem_http_stream *stream);

/* Writes `{"error":"<escaped text>"}` into out; returns its length, or the length it needs (and
 * writes nothing usable) when out_size is too small, like snprintf. */
size_t tandem_http_error_json(char *out, size_t out_size, const char *text);

/* Query helpers. query is the part after '?', pairs separated by '&'. Names and values are
 * percent-decoded with '+' as space; the first pair whose decoded name equals name wins; a pair
 * without '=' has the value "". Returns 1 found (out NUL-terminated), 0 absent, -1 when the value
 * is malformed, decodes to a NUL byte or does not fit out_size. */
int tandem_http_query_get(const char *query, const char *name, char *out, size_t out_size);

/* Percent-decodes in[0..in_len) with '+' as space (query form). Returns 0 with out NUL-terminated
 * and *out_len set (out_len may be NULL), or -1 on a bad escape, %00, or not fitting out_size. */
int tandem_http_url_decode(const char *in, size_t in_len, char *out, size_t out_size,
                           size_t *out_len);
/* The same for path segments: '+' stays '+'. */
int tandem_http_path_decode(const char *in, size_t in_len, char *out, size_t out_size,
                            size_t *out_len);

#endif
