/* Tests for the raft transport: handshake acceptance and refusals on real loopback sockets, probes
 * and the contact table, the quarantine gate, two raft_uv instances electing a leader and
 * committing an entry over it (and not electing one while quarantined), and the same over mutual
 * TLS with certificates the openssl CLI makes, whose refusals (another member's certificate, a
 * user's, another CA's, plaintext) come before anything reaches raft. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "consensus/member.h"
#include "consensus/raft_relay.h"
#include "consensus/tls.h"
#include "consensus/transport.h"
#include "tests/unit/consensus/frame_build.h"

#define RUN_ITERATIONS_MAX 200000 /* loop iterations any single wait may take */
#define TICK_MS            5      /* wakes the loop so waits notice their deadline */
#define WAIT_MS            3000   /* ceiling for an event that should come at once */
#define RAW_BUF_MAX        4096   /* bytes a raw client or receiver keeps */
#define BUSY_CLIENTS       (TANDEM_TRANSPORT_PENDING_INBOUND_MAX + 1)
#define HELLO_SIZE         400 /* the wire frames, spelled out again so a format change shows here */
#define ACK_SIZE           32
#define HELLO_V1_SIZE      392 /* protocol version 1, refused */
#define HELLO_OFF_FLAGS    32
#define HELLO_OFF_CLUSTER  40
#define HELLO_OFF_ADDRESS  104
#define ACK_OFF_FLAGS      24
#define FLAG_PROBE         1
#define FLAG_LEADER        2
#define STATUS_MALFORMED   3
#define STATUS_VERSION     4

/* ---- loop helpers ---- */

static void tick_cb(uv_timer_t *timer)
{
    (void)timer;
}

/* Runs loop until done(arg) or timeout_ms; returns done(arg). */
static bool run_until(uv_loop_t *loop, bool (*done)(void *arg), void *arg, uint64_t timeout_ms)
{
    uv_timer_t tick;
    assert_int_equal(uv_timer_init(loop, &tick), 0);
    assert_int_equal(uv_timer_start(&tick, tick_cb, TICK_MS, TICK_MS), 0);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    for (unsigned i = 0; i < RUN_ITERATIONS_MAX && !done(arg) && uv_now(loop) < deadline; i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    bool ok = done(arg);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* finishes closing tick before it leaves the stack */
    return ok;
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Lets the loop run for ms, e.g. so the far side of a connection finishes closing. */
static void settle(uv_loop_t *loop, uint64_t ms)
{
    (void)run_until(loop, never, NULL, ms);
}

static void walk_count_cb(uv_handle_t *handle, void *arg)
{
    (void)handle;
    (*(unsigned *)arg)++;
}

static void loop_finish(uv_loop_t *loop)
{
    for (unsigned i = 0; i < 100; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
    }
    unsigned handles = 0;
    uv_walk(loop, walk_count_cb, &handles);
    assert_int_equal(handles, 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Binds port 0 on loopback and returns the port the kernel chose. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* ---- transports driven directly, as raft_uv would ---- */

struct node {
    struct raft_uv_transport transport;
    char name[16];
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    int port;
    raft_id id;
    unsigned accepts;
    raft_id accepted_id;
    char accepted_address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    uv_stream_t *accepted_stream; /* owned */
    unsigned warnings;
    unsigned infos;
    bool closed;
    bool leader; /* what the leading callback answers */
};

static bool node_leading(void *data)
{
    return ((struct node *)data)->leader;
}

static void node_log(void *data, int level, const char *msg)
{
    struct node *n = data;
    (void)msg;
    if (level <= LOG_WARNING) {
        n->warnings++;
    } else {
        n->infos++;
    }
}

static void node_accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                           uv_stream_t *stream)
{
    struct node *n = t->data;
    n->accepts++;
    n->accepted_id = id;
    snprintf(n->accepted_address, sizeof n->accepted_address, "%s", address);
    if (n->accepted_stream != NULL) {
        uv_close((uv_handle_t *)n->accepted_stream, (uv_close_cb)raft_free);
    }
    n->accepted_stream = stream;
}

static bool node_accepted(void *arg)
{
    return ((struct node *)arg)->accepts > 0;
}

static void node_start_with(struct node *n, uv_loop_t *loop, const char *name, const char *cluster,
                            uint64_t epoch, unsigned timeout_ms, struct tandem_tls_ctx *tls,
                            const struct tandem_allow *allow)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->port = free_port();
    snprintf(n->address, sizeof n->address, "%s|east|127.0.0.1:%d|http://127.0.0.1:1", name,
             n->port);
    n->id = tandem_member_id(name);
    struct tandem_transport_config config = {.cluster_id = cluster,
                                             .epoch = epoch,
                                             .handshake_timeout_ms = timeout_ms,
                                             .log = node_log,
                                             .log_data = n,
                                             .leading = node_leading,
                                             .leading_data = n};
    config.tls = tls;
    config.allow = allow;
    assert_int_equal(tandem_transport_init(&n->transport, loop, &config), 0);
    assert_int_equal(n->transport.version, 1);
    n->transport.data = n;
    assert_int_equal(n->transport.init(&n->transport, n->id, n->address), 0);
    assert_int_equal(n->transport.listen(&n->transport, node_accept_cb), 0);
}

static void node_start_tls(struct node *n, uv_loop_t *loop, const char *name, const char *cluster,
                           uint64_t epoch, unsigned timeout_ms, struct tandem_tls_ctx *tls)
{
    node_start_with(n, loop, name, cluster, epoch, timeout_ms, tls, NULL);
}

/* In cluster "prod" at epoch 1, over TLS with tls and behind raft_allow allow. */
static void node_start_config(struct node *n, uv_loop_t *loop, const char *name,
                              unsigned timeout_ms, struct tandem_tls_ctx *tls,
                              const struct tandem_allow *allow)
{
    node_start_with(n, loop, name, "prod", 1, timeout_ms, tls, allow);
}

static void node_start(struct node *n, uv_loop_t *loop, const char *name, const char *cluster,
                       uint64_t epoch, unsigned timeout_ms)
{
    node_start_with(n, loop, name, cluster, epoch, timeout_ms, NULL, NULL);
}

static void node_close_cb(struct raft_uv_transport *t)
{
    struct node *n = t->data;
    n->closed = true;
}

static void node_stop(struct node *n, uv_loop_t *loop)
{
    if (n->accepted_stream != NULL) {
        uv_close((uv_handle_t *)n->accepted_stream, (uv_close_cb)raft_free);
        n->accepted_stream = NULL;
    }
    n->transport.close(&n->transport, node_close_cb);
    assert_true(run_until(loop, flag_set, &n->closed, WAIT_MS));
    tandem_transport_close(&n->transport);
    assert_null(n->transport.impl);
}

static struct tandem_transport_stats node_stats(const struct node *n)
{
    struct tandem_transport_stats stats;
    tandem_transport_stats(&n->transport, &stats);
    return stats;
}

struct conn {
    struct raft_uv_connect req;
    bool done;
    int status;
    uv_stream_t *stream; /* owned */
};

static void conn_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    struct conn *c = req->data;
    c->done = true;
    c->status = status;
    c->stream = stream;
}

/* Connects from to to and waits for the connect callback; returns its status. */
static int node_connect(struct node *from, struct node *to, uv_loop_t *loop, struct conn *c)
{
    memset(c, 0, sizeof *c);
    c->req.data = c;
    assert_int_equal(
        from->transport.connect(&from->transport, &c->req, to->id, to->address, conn_cb), 0);
    assert_true(run_until(loop, flag_set, &c->done, WAIT_MS));
    if (c->status == 0) {
        assert_non_null(c->stream);
    } else {
        assert_null(c->stream);
    }
    return c->status;
}

static void conn_close(struct conn *c)
{
    if (c->stream != NULL) {
        uv_close((uv_handle_t *)c->stream, (uv_close_cb)raft_free);
        c->stream = NULL;
    }
}

/* ---- a raw TCP peer: what a port scanner or a stray client looks like ---- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uint8_t out[RAW_BUF_MAX];
    uint8_t in[RAW_BUF_MAX];
    size_t in_len;
    bool connected;
    bool eof;
    bool closed;
    uint64_t eof_at_ms;
};

static void raw_alloc_cb(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    struct raw *r = handle->data;
    (void)suggested_size;
    buf->base = (char *)r->in + r->in_len;
    buf->len = RAW_BUF_MAX - r->in_len;
}

static void raw_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = stream->data;
    (void)buf;
    if (nread > 0) {
        r->in_len += (size_t)nread;
    } else if (nread < 0) {
        r->eof = true;
        r->eof_at_ms = uv_now(stream->loop);
        uv_read_stop(stream);
    }
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    assert_int_equal(status, 0);
    r->connected = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb, raw_read_cb), 0);
}

/* Connects from source (NULL: any) to port on 127.0.0.1. */
static void raw_start_from(struct raw *r, uv_loop_t *loop, int port, const struct sockaddr *source)
{
    memset(r, 0, sizeof *r);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &addr), 0);
    assert_int_equal(uv_tcp_init(loop, &r->tcp), 0);
    if (source != NULL) {
        assert_int_equal(uv_tcp_bind(&r->tcp, source, 0), 0);
    }
    r->tcp.data = r;
    r->connect_req.data = r;
    assert_int_equal(
        uv_tcp_connect(&r->connect_req, &r->tcp, (struct sockaddr *)&addr, raw_connect_cb), 0);
}

static void raw_start(struct raw *r, uv_loop_t *loop, int port)
{
    raw_start_from(r, loop, port, NULL);
}

static void raw_send(struct raw *r, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)r->out, (unsigned)len);
    assert_int_equal(uv_write(&r->write_req, (uv_stream_t *)&r->tcp, &buf, 1, NULL), 0);
}

static void raw_close_cb(uv_handle_t *handle)
{
    struct raw *r = handle->data;
    r->closed = true;
}

static void raw_stop(struct raw *r, uv_loop_t *loop)
{
    uv_close((uv_handle_t *)&r->tcp, raw_close_cb);
    assert_true(run_until(loop, flag_set, &r->closed, WAIT_MS));
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- a receiver on a handed-over stream ---- */

struct sink {
    uint8_t data[RAW_BUF_MAX];
    size_t len;
    bool eof;
};

static void sink_alloc_cb(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    struct sink *s = handle->data;
    (void)suggested_size;
    buf->base = (char *)s->data + s->len;
    buf->len = RAW_BUF_MAX - s->len;
}

static void sink_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sink *s = stream->data;
    (void)buf;
    if (nread > 0) {
        s->len += (size_t)nread;
    } else if (nread < 0) {
        s->eof = true;
        uv_read_stop(stream);
    }
}

static bool sink_eof(void *arg)
{
    return ((struct sink *)arg)->eof;
}

/* Raft connections must not wait for Nagle, and dead peers must be noticed. */
static void assert_tuned(uv_stream_t *stream)
{
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)stream, &fd), 0);
    int value = 0;
    socklen_t len = sizeof value;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &len), 0);
    assert_int_equal(value, 1);
    value = 0;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &value, &len), 0);
    assert_int_equal(value, 1);
}

/* ---- 1. matching peers: handover ---- */

static void test_connect_and_handover(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node a, b;
    node_start(&a, &loop, "east-1", "prod", 7, 0);
    node_start(&b, &loop, "west-1", "prod", 7, 0);
    assert_int_equal(tandem_transport_epoch(&a.transport), 7);

    struct conn c;
    assert_int_equal(node_connect(&a, &b, &loop, &c), 0);
    /* The acceptor hands over once its ack is written; the connector may see the ack first. */
    assert_true(run_until(&loop, node_accepted, &b, WAIT_MS));
    assert_int_equal(b.accepts, 1);
    assert_int_equal(b.accepted_id, a.id);
    assert_string_equal(b.accepted_address, a.address);
    assert_int_equal(a.accepts, 0);
    assert_tuned(c.stream); /* the accepted side is a relay's socketpair (consensus/raft_relay.h) */

    static uint8_t payload[64];
    size_t payload_len = fb_request_vote(payload, 1, 0, 0); /* a frame, passed on as it is */
    struct sink sink = {.len = 0};
    b.accepted_stream->data = &sink;
    assert_int_equal(uv_read_start(b.accepted_stream, sink_alloc_cb, sink_read_cb), 0);
    uv_write_t write_req;
    uv_buf_t buf = uv_buf_init((char *)payload, (unsigned)payload_len);
    assert_int_equal(uv_write(&write_req, c.stream, &buf, 1, NULL), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    conn_close(&c); /* the acceptor then reads exactly the payload and EOF */
    assert_true(run_until(&loop, sink_eof, &sink, WAIT_MS));
    assert_int_equal(sink.len, payload_len);
    assert_memory_equal(sink.data, payload, payload_len);

    struct tandem_transport_stats sa = node_stats(&a), sb = node_stats(&b);
    assert_int_equal(sa.connected, 1);
    assert_int_equal(sb.accepted, 1);
    assert_int_equal(sb.refused_cluster + sb.refused_epoch + sb.refused_malformed, 0);
    assert_int_equal(a.warnings + b.warnings, 0);
    node_stop(&a, &loop);
    node_stop(&b, &loop);
    loop_finish(&loop);
}

/* ---- 2. cluster id mismatch ---- */

static void test_cluster_mismatch(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node a, b;
    node_start(&a, &loop, "east-1", "prod", 1, 0);
    node_start(&b, &loop, "west-1", "staging", 1, 0);

    struct conn c;
    for (unsigned attempt = 0; attempt < 3; attempt++) {
        assert_int_equal(node_connect(&a, &b, &loop, &c), RAFT_NOCONNECTION);
    }
    settle(&loop, 50); /* let b finish closing */
    assert_int_equal(b.accepts, 0);
    struct tandem_transport_stats sa = node_stats(&a), sb = node_stats(&b);
    assert_int_equal(sb.refused_cluster, 3);
    assert_int_equal(sa.refused_cluster, 3);
    assert_int_equal(sb.accepted + sa.connected, 0);
    /* Raft retries every second: each side says so once, not at every attempt. */
    assert_int_equal(b.warnings, 1);
    assert_int_equal(a.warnings, 1);
    assert_int_equal(sa.epoch_newest_seen, 0); /* another cluster's epoch means nothing */
    node_stop(&a, &loop);
    node_stop(&b, &loop);
    loop_finish(&loop);
}

/* ---- 3. epoch mismatch, then agreement ---- */

static void test_epoch_mismatch_then_set_epoch(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node a, b;
    node_start(&a, &loop, "east-1", "prod", 1, 0);
    node_start(&b, &loop, "west-1", "prod", 2, 0);

    struct conn c;
    assert_int_equal(node_connect(&a, &b, &loop, &c), RAFT_NOCONNECTION);
    assert_int_equal(node_connect(&b, &a, &loop, &c), RAFT_NOCONNECTION);
    settle(&loop, 50);
    assert_int_equal(a.accepts + b.accepts, 0);
    struct tandem_transport_stats sa = node_stats(&a), sb = node_stats(&b);
    assert_int_equal(sa.refused_epoch, 2); /* refused by b, then refused b */
    assert_int_equal(sb.refused_epoch, 2);
    assert_int_equal(sa.epoch_newest_seen, 2); /* a can tell it is behind */
    assert_int_equal(sb.epoch_newest_seen, 1); /* the highest a peer reported */

    tandem_transport_set_epoch(&a.transport, 2);
    assert_int_equal(tandem_transport_epoch(&a.transport), 2);
    assert_int_equal(node_connect(&a, &b, &loop, &c), 0);
    assert_true(run_until(&loop, node_accepted, &b, WAIT_MS));
    assert_int_equal(b.accepts, 1);
    assert_int_equal(b.accepted_id, a.id);
    assert_int_equal(node_stats(&a).connected, 1);
    conn_close(&c);
    node_stop(&a, &loop);
    node_stop(&b, &loop);
    loop_finish(&loop);
}

/* ---- 4. garbage and oversized hellos ---- */

static bool raw_eof(void *arg)
{
    return ((struct raw *)arg)->eof;
}

/* Sends len bytes of r->out and expects the connection closed; with an exact-size frame the
 * MALFORMED ack must arrive first (with more, the unread rest may turn the close into a reset). */
static void expect_malformed(uv_loop_t *loop, struct raw *r, size_t len, bool expect_ack)
{
    assert_true(run_until(loop, flag_set, &r->connected, WAIT_MS));
    raw_send(r, len);
    assert_true(run_until(loop, raw_eof, r, WAIT_MS));
    if (expect_ack) {
        assert_int_equal(r->in_len, ACK_SIZE);
        assert_memory_equal(r->in, "TNDMACK!", 8);
        assert_int_equal(get_le32(r->in + 12), STATUS_MALFORMED);
    }
    raw_stop(r, loop);
}

/* A version 2 hello at epoch 1 from raft id 42 that is right up to its address field. */
static void hello_build(uint8_t *out, uint32_t address_len, const char *address)
{
    memset(out, 0, HELLO_SIZE);
    memcpy(out, "TNDMHELO", 8);
    put_le(out + 8, 2, 4);
    put_le(out + 12, address_len, 4);
    put_le(out + 16, 1, 8);
    put_le(out + 24, 42, 8);
    memcpy(out + HELLO_OFF_CLUSTER, "prod", 4);
    memcpy(out + HELLO_OFF_ADDRESS, address, strlen(address));
}

static void test_malformed_hello(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n;
    node_start(&n, &loop, "east-1", "prod", 1, 0);
    static struct raw r;

    raw_start(&r, &loop, n.port); /* garbage: not even the magic */
    memset(r.out, 'A', HELLO_SIZE);
    expect_malformed(&loop, &r, HELLO_SIZE, true);

    raw_start(&r, &loop, n.port); /* more garbage than a hello */
    memset(r.out, 'B', RAW_BUF_MAX);
    expect_malformed(&loop, &r, RAW_BUF_MAX, false);

    raw_start(&r, &loop, n.port); /* the right magic and version, an oversized address */
    hello_build(r.out, 100000, "");
    memset(r.out + HELLO_OFF_ADDRESS, 'x', HELLO_SIZE - HELLO_OFF_ADDRESS);
    expect_malformed(&loop, &r, HELLO_SIZE, true);

    raw_start(&r, &loop, n.port); /* a valid frame whose address is not a member address */
    hello_build(r.out, 5, "a|b|c");
    expect_malformed(&loop, &r, HELLO_SIZE, true);

    raw_start(&r, &loop, n.port); /* a valid hello but for a flag this version does not know */
    static const char valid[] = "raw-1|west|127.0.0.1:1|http://127.0.0.1:1";
    hello_build(r.out, (uint32_t)strlen(valid), valid);
    put_le(r.out + HELLO_OFF_FLAGS, 0x100, 8);
    expect_malformed(&loop, &r, HELLO_SIZE, true);

    raw_start(&r, &loop, n.port); /* a hello cut short */
    hello_build(r.out, 5, "a|b|c");
    raw_send(&r, 100);
    settle(&loop, 20);
    uv_shutdown_t shutdown_req;
    assert_int_equal(uv_shutdown(&shutdown_req, (uv_stream_t *)&r.tcp, NULL), 0);
    assert_true(run_until(&loop, raw_eof, &r, WAIT_MS));
    raw_stop(&r, &loop);

    settle(&loop, 20);
    struct tandem_transport_stats stats = node_stats(&n);
    assert_int_equal(stats.refused_malformed, 6);
    assert_int_equal(stats.accepted, 0);
    assert_int_equal(n.accepts, 0);
    assert_int_equal(n.warnings, 1); /* all from 127.0.0.1, all malformed: said once */
    node_stop(&n, &loop);
    loop_finish(&loop);
}

/* A hello and raft bytes in one write: the bytes must reach raft, none eaten by the handshake. */
static void test_pipelined_bytes_stay_in_stream(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n;
    node_start(&n, &loop, "east-1", "prod", 1, 0);
    static struct raw r;
    static const char address[] = "raw-1|west|127.0.0.1:1|http://127.0.0.1:1";
    static uint8_t payload[64];
    size_t payload_len = fb_request_vote(payload, 1, 0, 0); /* right behind the hello */
    raw_start(&r, &loop, n.port);
    assert_true(run_until(&loop, flag_set, &r.connected, WAIT_MS));
    hello_build(r.out, (uint32_t)strlen(address), address);
    memcpy(r.out + HELLO_SIZE, payload, payload_len);
    raw_send(&r, HELLO_SIZE + payload_len);
    assert_true(run_until(&loop, node_accepted, &n, WAIT_MS));
    assert_int_equal(n.accepted_id, 42);
    assert_string_equal(n.accepted_address, address);

    struct sink sink = {.len = 0};
    n.accepted_stream->data = &sink;
    assert_int_equal(uv_read_start(n.accepted_stream, sink_alloc_cb, sink_read_cb), 0);
    uv_shutdown_t shutdown_req;
    assert_int_equal(uv_shutdown(&shutdown_req, (uv_stream_t *)&r.tcp, NULL), 0);
    assert_true(run_until(&loop, sink_eof, &sink, WAIT_MS));
    assert_int_equal(sink.len, payload_len);
    assert_memory_equal(sink.data, payload, payload_len);
    assert_int_equal(r.in_len, ACK_SIZE); /* the OK ack */
    assert_memory_equal(r.in, "TNDMACK!", 8);
    assert_int_equal(get_le32(r.in + 12), 0);
    raw_stop(&r, &loop);
    node_stop(&n, &loop);
    loop_finish(&loop);
}

/* Sends a hello, then frame (len bytes) in two writes split at split, and returns what the
 * accepted stream gave raft before its EOF. */
static size_t relayed_after_hello(const uint8_t *frame, size_t len, size_t split,
                                  struct tandem_transport_stats *stats)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n;
    node_start(&n, &loop, "east-1", "prod", 1, 0);
    static struct raw r;
    static const char address[] = "raw-1|west|127.0.0.1:1|http://127.0.0.1:1";
    raw_start(&r, &loop, n.port);
    assert_true(run_until(&loop, flag_set, &r.connected, WAIT_MS));
    hello_build(r.out, (uint32_t)strlen(address), address);
    memcpy(r.out + HELLO_SIZE, frame, split);
    raw_send(&r, HELLO_SIZE + split);
    assert_true(run_until(&loop, node_accepted, &n, WAIT_MS));
    static struct sink sink;
    sink.len = 0;
    sink.eof = false;
    n.accepted_stream->data = &sink;
    assert_int_equal(uv_read_start(n.accepted_stream, sink_alloc_cb, sink_read_cb), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    memcpy(r.out, frame + split, len - split);
    raw_send(&r, len - split);
    uv_shutdown_t shutdown_req;
    assert_int_equal(uv_shutdown(&shutdown_req, (uv_stream_t *)&r.tcp, NULL), 0);
    assert_true(run_until(&loop, sink_eof, &sink, WAIT_MS));
    *stats = node_stats(&n);
    raw_stop(&r, &loop);
    node_stop(&n, &loop);
    loop_finish(&loop);
    return sink.len;
}

/* Frames reach raft whole, however TCP splits them; a frame libraft must not decode drops the
 * connection with nothing of it passed on (the channel-security review's frames). */
static void test_frames_checked_before_raft(void **state)
{
    (void)state;
    static uint8_t frame[2048];
    _Static_assert(sizeof frame <= RAW_BUF_MAX - HELLO_SIZE, "a frame fits behind a hello");
    struct tandem_transport_stats stats;
    uint8_t types[2] = {RAFT_COMMAND, RAFT_CHANGE};
    uint32_t sizes[2] = {100, 0};
    size_t len = fb_append(frame, 1, 2, types, sizes);
    for (size_t split = 0; split <= len; split += 37) {
        assert_int_equal(relayed_after_hello(frame, len, split, &stats), len);
        assert_int_equal(stats.refused_frame, 0);
    }
    fb_put64(frame + 16 + 32, 0xffffffff); /* entry count: libraft segfaulted on this */
    assert_int_equal(relayed_after_hello(frame, len, len, &stats), 0);
    assert_int_equal(stats.refused_frame, 1);
    len = fb_request_vote(frame, UINT64_MAX - 1, 1, 1); /* pins every term at 2^64-1 on main */
    assert_int_equal(relayed_after_hello(frame, len, 10, &stats), 0);
    assert_int_equal(stats.refused_frame, 1);
    srand(7);
    for (size_t i = 0; i < sizeof frame; i++) {
        frame[i] = (uint8_t)rand(); /* random bytes after a hello */
    }
    assert_int_equal(relayed_after_hello(frame, sizeof frame, 0, &stats), 0);
    assert_int_equal(stats.refused_frame, 1);
}

/* ---- 5. silent client ---- */

static void test_silent_client_times_out(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n;
    node_start(&n, &loop, "east-1", "prod", 1, 200);
    static struct raw r;
    raw_start(&r, &loop, n.port);
    assert_true(run_until(&loop, flag_set, &r.connected, WAIT_MS));
    uint64_t connected_at = uv_now(&loop);
    assert_true(run_until(&loop, raw_eof, &r, WAIT_MS));
    assert_true(r.eof_at_ms - connected_at >= 150);
    assert_int_equal(r.in_len, 0);
    assert_int_equal(node_stats(&n).timed_out, 1);
    assert_int_equal(n.accepts, 0);
    raw_stop(&r, &loop);
    node_stop(&n, &loop);
    loop_finish(&loop);
}

/* ---- 7. pending handshakes are bounded ---- */

struct busy {
    struct raw *clients;
    unsigned n;
};

static bool busy_all_connected_one_eof(void *arg)
{
    struct busy *b = arg;
    unsigned connected = 0, eofs = 0;
    for (unsigned i = 0; i < b->n; i++) {
        connected += b->clients[i].connected;
        eofs += b->clients[i].eof;
    }
    return connected == b->n && eofs >= 1;
}

static void test_pending_handshakes_bounded(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n;
    node_start(&n, &loop, "east-1", "prod", 1, 0); /* default timeout: 5 s, far off */
    static struct raw clients[BUSY_CLIENTS];
    struct busy busy = {clients, BUSY_CLIENTS};
    for (unsigned i = 0; i < BUSY_CLIENTS; i++) {
        raw_start(&clients[i], &loop, n.port);
    }
    assert_true(run_until(&loop, busy_all_connected_one_eof, &busy, WAIT_MS));
    settle(&loop, 100); /* no second drop comes */
    unsigned eofs = 0;
    for (unsigned i = 0; i < BUSY_CLIENTS; i++) {
        eofs += clients[i].eof;
    }
    assert_int_equal(eofs, 1);
    assert_int_equal(node_stats(&n).dropped_busy, 1);
    assert_int_equal(node_stats(&n).timed_out, 0);
    node_stop(&n, &loop); /* closes the 64 pending handshakes */
    for (unsigned i = 0; i < BUSY_CLIENTS; i++) {
        raw_stop(&clients[i], &loop);
    }
    loop_finish(&loop);
}

/* ---- 8. close cancels pending connects ---- */

struct mute {
    uv_tcp_t listener;
    uv_tcp_t peer;
    bool accepted;
    size_t bytes;
    uint8_t buf[RAW_BUF_MAX];
};

static void mute_alloc_cb(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    struct mute *m = handle->data;
    (void)suggested_size;
    buf->base = (char *)m->buf;
    buf->len = sizeof m->buf;
}

static void mute_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct mute *m = stream->data;
    (void)buf;
    if (nread > 0) {
        m->bytes += (size_t)nread;
    } else if (nread < 0) {
        uv_read_stop(stream);
    }
}

static void mute_listen_cb(uv_stream_t *listener, int status)
{
    struct mute *m = listener->data;
    assert_int_equal(status, 0);
    assert_false(m->accepted);
    assert_int_equal(uv_tcp_init(listener->loop, &m->peer), 0);
    m->peer.data = m;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&m->peer), 0);
    m->accepted = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&m->peer, mute_alloc_cb, mute_read_cb), 0);
}

static bool mute_got_hello(void *arg)
{
    return ((struct mute *)arg)->bytes >= HELLO_SIZE;
}

static bool both_done(void *arg)
{
    struct conn *c = arg;
    return c[0].done && c[1].done;
}

static void test_close_cancels_connects(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node a;
    node_start(&a, &loop, "east-1", "prod", 1, 0);
    static struct mute mute;
    memset(&mute, 0, sizeof mute);
    int port = free_port();
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &addr), 0);
    assert_int_equal(uv_tcp_init(&loop, &mute.listener), 0);
    mute.listener.data = &mute;
    assert_int_equal(uv_tcp_bind(&mute.listener, (struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&mute.listener, 8, mute_listen_cb), 0);
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    snprintf(address, sizeof address, "mute|west|127.0.0.1:%d|http://127.0.0.1:1", port);

    struct conn c[2];
    memset(c, 0, sizeof c);
    c[0].req.data = &c[0];
    c[1].req.data = &c[1];
    assert_int_equal(a.transport.connect(&a.transport, &c[0].req, 5, address, conn_cb), 0);
    assert_true(run_until(&loop, mute_got_hello, &mute, WAIT_MS)); /* c[0] awaits the ack */
    assert_int_equal(mute.bytes, HELLO_SIZE);
    assert_int_equal(a.transport.connect(&a.transport, &c[1].req, 5, address, conn_cb), 0);
    a.transport.close(&a.transport, node_close_cb); /* c[1] is still resolving */
    assert_true(run_until(&loop, both_done, c, WAIT_MS));
    assert_int_equal(c[0].status, RAFT_CANCELED);
    assert_int_equal(c[1].status, RAFT_CANCELED);
    assert_true(run_until(&loop, flag_set, &a.closed, WAIT_MS));
    tandem_transport_close(&a.transport);
    uv_close((uv_handle_t *)&mute.peer, NULL);
    uv_close((uv_handle_t *)&mute.listener, NULL);
    loop_finish(&loop);
}

/* ---- 8. protocol version 1 is refused, and said so ---- */

/* A loop with up to three transports: east-1, west-1, west-2, at the epochs given. */
struct nodes {
    uv_loop_t loop;
    struct node n[3];
    unsigned count;
};

static void nodes_start(struct nodes *s, unsigned count, const uint64_t *epochs)
{
    static const char *const names[] = {"east-1", "west-1", "west-2"};
    assert_true(count <= 3);
    assert_int_equal(uv_loop_init(&s->loop), 0);
    s->count = count;
    for (unsigned i = 0; i < count; i++) {
        node_start(&s->n[i], &s->loop, names[i], "prod", epochs[i], 0);
    }
}

/* Stops the nodes a test left running and checks the loop is empty. */
static void nodes_stop(struct nodes *s)
{
    for (unsigned i = 0; i < s->count; i++) {
        if (!s->n[i].closed) {
            node_stop(&s->n[i], &s->loop);
        }
    }
    loop_finish(&s->loop);
}

static void test_version_1_refused(void **state)
{
    (void)state;
    static struct nodes s;
    static struct raw r;
    static const char address[] = "old-1|west|127.0.0.1:1|http://127.0.0.1:1";
    nodes_start(&s, 1, (uint64_t[]){1});
    struct node *n = &s.n[0];
    raw_start(&r, &s.loop, n->port);
    assert_true(run_until(&s.loop, flag_set, &r.connected, WAIT_MS));
    /* A version 1 hello is 8 bytes shorter: the head alone must get the answer, no timeout. */
    hello_build(r.out, (uint32_t)strlen(address), address);
    put_le(r.out + 8, 1, 4);
    raw_send(&r, HELLO_V1_SIZE);
    assert_true(run_until(&s.loop, raw_eof, &r, WAIT_MS));
    assert_int_equal(r.in_len, ACK_SIZE);
    assert_memory_equal(r.in, "TNDMACK!", 8);
    assert_int_equal(get_le32(r.in + 8), 2);
    assert_int_equal(get_le32(r.in + 12), STATUS_VERSION);
    raw_stop(&r, &s.loop);
    struct tandem_transport_stats stats = node_stats(n);
    assert_int_equal(stats.refused_malformed, 1);
    assert_int_equal(stats.timed_out, 0);
    assert_int_equal(n->accepts, 0);
    assert_int_equal(n->warnings, 1);
    nodes_stop(&s);
}

/* ---- 9. flags, probes and the contact table ---- */

static struct tandem_transport_contact node_contact(const struct node *of, const struct node *peer)
{
    struct tandem_transport_contact c;
    assert_int_equal(tandem_transport_contact(&of->transport, peer->id, &c), 0);
    assert_int_equal(c.id, peer->id);
    return c;
}

/* A raft connection fills both ends' contacts; only a leader's hello or ack marks leadership. */
static void test_contacts_and_leader_flag(void **state)
{
    (void)state;
    static struct nodes s;
    nodes_start(&s, 2, (uint64_t[]){7, 7});
    struct node *a = &s.n[0], *b = &s.n[1];
    struct tandem_transport_contact c;
    assert_int_equal(tandem_transport_contact(&a->transport, b->id, &c), -1);

    a->leader = true;
    struct conn conn;
    assert_int_equal(node_connect(a, b, &s.loop, &conn), 0);
    assert_true(run_until(&s.loop, node_accepted, b, WAIT_MS));
    struct tandem_transport_contact ab = node_contact(a, b), ba = node_contact(b, a);
    assert_true(ab.last_ok_ms > 0 && ba.last_ok_ms > 0);
    assert_int_equal(ab.last_leader_ms, 0); /* b does not lead */
    assert_int_equal(ba.last_leader_ms, ba.last_ok_ms);
    assert_int_equal(ab.epoch, 7);
    assert_int_equal(ba.epoch, 7);
    assert_string_equal(ba.address, a->address);
    assert_string_equal(ab.address, b->address);
    assert_false(ab.probing);
    conn_close(&conn);

    a->leader = false; /* now b leads: its ack says so */
    b->leader = true;
    assert_int_equal(node_connect(a, b, &s.loop, &conn), 0);
    assert_true(node_contact(a, b).last_leader_ms > 0);
    struct tandem_transport_contact all[TANDEM_TRANSPORT_CONTACTS_MAX];
    assert_int_equal(tandem_transport_contacts(&a->transport, all, TANDEM_TRANSPORT_CONTACTS_MAX),
                     1);
    conn_close(&conn);
    nodes_stop(&s);
}

static bool not_probing(void *arg)
{
    struct node **pair = arg;
    struct tandem_transport_contact c;
    return tandem_transport_contact(&pair[0]->transport, pair[1]->id, &c) == 0 && !c.probing;
}

/* Probes and waits for it to finish; returns the prober's contact of the peer. */
static struct tandem_transport_contact probe_wait(uv_loop_t *loop, struct node *from,
                                                  struct node *to)
{
    struct node *pair[2] = {from, to};
    assert_int_equal(tandem_transport_probe(&from->transport, to->id, to->address), 0);
    assert_int_equal(tandem_transport_probe(&from->transport, to->id, to->address), RAFT_BUSY);
    assert_true(run_until(loop, not_probing, pair, WAIT_MS));
    return node_contact(from, to);
}

/* A probe is answered and closed: raft never sees it, but both contact tables do. */
static void test_probe(void **state)
{
    (void)state;
    static struct nodes s;
    nodes_start(&s, 3, (uint64_t[]){3, 3, 2});
    struct node *a = &s.n[0], *b = &s.n[1], *old = &s.n[2];
    b->leader = true;
    struct tandem_transport_contact c = probe_wait(&s.loop, a, b);
    assert_true(c.last_ok_ms > 0 && c.last_probe_ms > 0);
    assert_int_equal(c.last_leader_ms, c.last_ok_ms);
    assert_int_equal(c.ok_since_ms, c.last_ok_ms);
    assert_int_equal(c.epoch, 3);
    settle(&s.loop, 20);
    uint64_t first_ok_ms = c.last_ok_ms;
    c = probe_wait(&s.loop, a, b); /* still there: the run of answers goes on */
    assert_true(c.last_ok_ms > first_ok_ms);
    assert_int_equal(c.ok_since_ms, first_ok_ms);
    settle(&s.loop, 20);
    assert_int_equal(b->accepts, 0);
    assert_int_equal(node_stats(a).probed, 2);
    assert_int_equal(node_stats(b).probes_answered, 2);
    assert_int_equal(node_stats(a).connected + node_stats(b).accepted, 0);
    assert_true(node_contact(b, a).last_ok_ms > 0);

    /* Another epoch: no contact at ours, but its epoch is known (and fences the older side). */
    c = probe_wait(&s.loop, a, old);
    assert_int_equal(c.last_ok_ms, 0);
    assert_int_equal(c.epoch, 2);
    c = probe_wait(&s.loop, old, a);
    assert_int_equal(c.last_ok_ms, 0);
    assert_int_equal(c.epoch, 3);
    assert_int_equal(node_stats(old).epoch_newest_seen, 3);

    /* Nobody listening: the probe ends, nothing was heard. */
    node_stop(old, &s.loop);
    c = probe_wait(&s.loop, a, old);
    assert_true(c.last_probe_ms > 0);
    assert_int_equal(c.last_ok_ms, 0);

    /* b moves to another epoch: the run of answers at ours ends. */
    tandem_transport_set_epoch(&b->transport, 4);
    c = probe_wait(&s.loop, a, b);
    assert_int_equal(c.ok_since_ms, 0);
    assert_int_equal(c.epoch, 4);
    assert_true(c.last_ok_ms > 0); /* when it last was at ours */

    assert_int_equal(tandem_transport_probe(&a->transport, b->id, "not an address"), RAFT_INVALID);
    assert_int_equal(tandem_transport_probe(&a->transport, 0, b->address), RAFT_INVALID);
    nodes_stop(&s);
}

/* The table keeps at most TANDEM_TRANSPORT_CONTACTS_MAX peers, the latest heard among them. */
static void test_contacts_bounded(void **state)
{
    (void)state;
    static struct nodes s;
    static struct raw r;
    static struct tandem_transport_contact all[TANDEM_TRANSPORT_CONTACTS_MAX + 8];
    const unsigned peers = TANDEM_TRANSPORT_CONTACTS_MAX + 6;
    nodes_start(&s, 1, (uint64_t[]){1});
    struct node *n = &s.n[0];
    for (unsigned i = 1; i <= peers; i++) {
        char address[64];
        snprintf(address, sizeof address, "p-%u|west|127.0.0.1:1|http://127.0.0.1:1", i);
        raw_start(&r, &s.loop, n->port);
        assert_true(run_until(&s.loop, flag_set, &r.connected, WAIT_MS));
        hello_build(r.out, (uint32_t)strlen(address), address);
        put_le(r.out + 24, i, 8);                       /* raft id i */
        put_le(r.out + HELLO_OFF_FLAGS, FLAG_PROBE, 8); /* answered and closed */
        raw_send(&r, HELLO_SIZE);
        assert_true(run_until(&s.loop, raw_eof, &r, WAIT_MS));
        assert_int_equal(r.in_len, ACK_SIZE);
        assert_int_equal(get_le32(r.in + 12), 0);
        raw_stop(&r, &s.loop);
    }
    assert_int_equal(
        tandem_transport_contacts(&n->transport, all, TANDEM_TRANSPORT_CONTACTS_MAX + 8),
        TANDEM_TRANSPORT_CONTACTS_MAX);
    struct tandem_transport_contact c;
    assert_int_equal(tandem_transport_contact(&n->transport, peers, &c), 0);
    assert_string_equal(c.address, "p-70|west|127.0.0.1:1|http://127.0.0.1:1");
    assert_int_equal(node_stats(n).probes_answered, peers);
    assert_int_equal(n->accepts, 0);
    nodes_stop(&s);
}

/* A fenced node refuses peers of its own (old) epoch and tells them the newer one. */
static void test_fenced_node_tells_the_newer_epoch(void **state)
{
    (void)state;
    static struct nodes s;
    nodes_start(&s, 3, (uint64_t[]){1, 1, 2});
    struct node *old = &s.n[0], *fenced = &s.n[1], *newer = &s.n[2];
    assert_true(probe_wait(&s.loop, old, fenced).ok_since_ms > 0); /* before: same epoch */
    tandem_transport_set_fenced(&fenced->transport, 2);
    struct tandem_transport_contact c = probe_wait(&s.loop, old, fenced);
    assert_int_equal(c.ok_since_ms, 0);
    assert_int_equal(c.epoch, 2);
    assert_int_equal(node_stats(old).epoch_newest_seen, 2);
    struct conn conn;
    assert_int_equal(node_connect(old, fenced, &s.loop, &conn), RAFT_NOCONNECTION);
    settle(&s.loop, 20);
    assert_int_equal(fenced->accepts, 0);
    /* a node of the newer epoch is refused too, and told the fenced node's own epoch */
    c = probe_wait(&s.loop, newer, fenced);
    assert_int_equal(c.last_ok_ms, 0);
    assert_int_equal(c.epoch, 1);
    nodes_stop(&s);
}

/* ---- 10. the quarantine gate ---- */

static void test_quarantine_gate(void **state)
{
    (void)state;
    static struct nodes s;
    nodes_start(&s, 2, (uint64_t[]){1, 1});
    struct node *leader = &s.n[0], *q = &s.n[1];
    tandem_transport_set_quarantine(&q->transport, true);
    assert_true(tandem_transport_quarantined(&q->transport));

    /* raft's connect fails, from the loop (never inside the call), as for an unreachable peer */
    struct conn c;
    memset(&c, 0, sizeof c);
    c.req.data = &c;
    assert_int_equal(
        q->transport.connect(&q->transport, &c.req, leader->id, leader->address, conn_cb), 0);
    assert_false(c.done);
    assert_true(run_until(&s.loop, flag_set, &c.done, WAIT_MS));
    assert_int_equal(c.status, RAFT_NOCONNECTION);
    assert_null(c.stream);
    settle(&s.loop, 20);
    assert_int_equal(leader->accepts, 0);
    assert_int_equal(node_stats(q).quarantine_refused, 1);

    /* inbound raft connections and probes still work: a leader reaches us and we hear of it */
    leader->leader = true;
    assert_int_equal(node_connect(leader, q, &s.loop, &c), 0);
    assert_true(run_until(&s.loop, node_accepted, q, WAIT_MS));
    assert_true(node_contact(q, leader).last_leader_ms > 0);
    conn_close(&c);
    assert_true(probe_wait(&s.loop, q, leader).last_ok_ms > 0);

    tandem_transport_set_quarantine(&q->transport, false);
    assert_false(tandem_transport_quarantined(&q->transport));
    assert_int_equal(node_connect(q, leader, &s.loop, &c), 0);
    conn_close(&c);
    assert_int_equal(node_stats(q).quarantine_refused, 1);
    nodes_stop(&s);
}

/* ---- 6. raft_uv over the transport ---- */

struct raft_node {
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    char dir[64];
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    raft_id id;
    unsigned applied;
    uint64_t last_value;
    bool closed;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct raft_node *n = fsm->data;
    if (buf->len != 8) {
        return RAFT_MALFORMED;
    }
    memcpy(&n->last_value, buf->base, 8);
    n->applied++;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct raft_node *n = fsm->data;
    *bufs = raft_malloc(sizeof **bufs);
    if (*bufs == NULL) {
        return RAFT_NOMEM;
    }
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_malloc(8);
    if ((*bufs)[0].base == NULL) {
        raft_free(*bufs);
        return RAFT_NOMEM;
    }
    memcpy((*bufs)[0].base, &n->last_value, 8);
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct raft_node *n = fsm->data;
    if (buf->len != 8) {
        return RAFT_MALFORMED;
    }
    memcpy(&n->last_value, buf->base, 8);
    raft_free(buf->base);
    return 0;
}

static void raft_node_init(struct raft_node *n, uv_loop_t *loop, const char *name, int port,
                           bool quarantine, struct tandem_tls_ctx *tls)
{
    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/tandem-transport-XXXXXX");
    assert_non_null(mkdtemp(n->dir));
    snprintf(n->address, sizeof n->address, "%s|east|127.0.0.1:%d|http://127.0.0.1:1", name, port);
    n->id = tandem_member_id(name);
    n->fsm = (struct raft_fsm){.version = 1,
                               .data = n,
                               .apply = fsm_apply,
                               .snapshot = fsm_snapshot,
                               .restore = fsm_restore};
    struct tandem_transport_config config = {
        .cluster_id = "prod", .epoch = 3, .quarantine = quarantine, .tls = tls};
    assert_int_equal(tandem_transport_init(&n->transport, loop, &config), 0);
    assert_int_equal(raft_uv_init(&n->io, loop, n->dir, &n->transport), 0);
    raft_uv_set_auto_recovery(&n->io, false);
    raft_uv_set_connect_retry_delay(&n->io, 50);
    raft_uv_set_segment_size(&n->io, 256 * 1024);
    assert_int_equal(raft_init(&n->raft, &n->io, &n->fsm, n->id, n->address), 0);
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, 300);
    raft_set_heartbeat_timeout(&n->raft, 50);
    raft_set_capacity_threshold(&n->raft, 0);
}

static void raft_node_close_cb(struct raft *r)
{
    struct raft_node *n = r->data;
    n->closed = true;
}

static void remove_dir(const char *path)
{
    DIR *dir = opendir(path);
    assert_non_null(dir);
    char file[64 + 256 + 2]; /* dir + d_name */
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            assert_int_equal(unlink(file), 0);
        }
    }
    closedir(dir);
    assert_int_equal(rmdir(path), 0);
}

struct cluster {
    uv_loop_t loop;
    struct raft_node *nodes;
    struct raft_apply apply;
    bool apply_done;
    int apply_status;
};

static struct raft_node *cluster_leader(struct cluster *c)
{
    for (unsigned i = 0; i < 2; i++) {
        if (raft_state(&c->nodes[i].raft) == RAFT_LEADER) {
            return &c->nodes[i];
        }
    }
    return NULL;
}

static bool cluster_has_leader(void *arg)
{
    return cluster_leader(arg) != NULL;
}

static bool cluster_applied(void *arg)
{
    struct cluster *c = arg;
    return c->apply_done && c->nodes[0].applied == 1 && c->nodes[1].applied == 1;
}

static bool cluster_closed(void *arg)
{
    struct cluster *c = arg;
    return c->nodes[0].closed && c->nodes[1].closed;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct cluster *c = req->data;
    (void)result;
    c->apply_done = true;
    c->apply_status = status;
}

static void cluster_bootstrap_start(struct cluster *c)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(
            raft_configuration_add(&conf, c->nodes[i].id, c->nodes[i].address, RAFT_VOTER), 0);
    }
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(raft_bootstrap(&c->nodes[i].raft, &conf), 0);
    }
    raft_configuration_close(&conf);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(raft_start(&c->nodes[i].raft), 0);
    }
}

static void cluster_close(struct cluster *c, uv_loop_t *loop)
{
    for (unsigned i = 0; i < 2; i++) {
        raft_close(&c->nodes[i].raft, raft_node_close_cb);
    }
    assert_true(run_until(loop, cluster_closed, c, WAIT_MS));
    for (unsigned i = 0; i < 2; i++) {
        raft_uv_close(&c->nodes[i].io);
        tandem_transport_close(&c->nodes[i].transport);
        assert_null(c->nodes[i].transport.impl);
        remove_dir(c->nodes[i].dir);
    }
    loop_finish(loop);
}

/* Two voters with pre-vote on (as tandemd runs them), bootstrapped and started on loop; the
 * first one's transport with the quarantine gate on when asked; over TLS when tls is given (one
 * ctx per node, NULL: plaintext). */
static void cluster_start_tls(struct cluster *c, bool quarantine_first,
                              struct tandem_tls_ctx *const tls[2])
{
    static struct raft_node nodes[2];
    uv_loop_t *loop = &c->loop;
    memset(c, 0, sizeof *c);
    assert_int_equal(uv_loop_init(loop), 0);
    raft_node_init(&nodes[0], loop, "east-1", free_port(), quarantine_first,
                   tls != NULL ? tls[0] : NULL);
    raft_node_init(&nodes[1], loop, "west-1", free_port(), false, tls != NULL ? tls[1] : NULL);
    for (unsigned i = 0; i < 2; i++) {
        raft_set_pre_vote(&nodes[i].raft, true);
    }
    c->nodes = nodes;
    cluster_bootstrap_start(c);
}

static void cluster_start(struct cluster *c, bool quarantine_first)
{
    cluster_start_tls(c, quarantine_first, NULL);
}

/* Elects a leader, commits one entry on both and checks the transports refused nothing. */
static void cluster_elect_and_commit(struct cluster *c)
{
    assert_true(run_until(&c->loop, cluster_has_leader, c, 5000));
    struct raft_node *leader = cluster_leader(c);
    struct raft_buffer buf = {.base = raft_malloc(8), .len = 8}; /* padded to 8 bytes */
    assert_non_null(buf.base);
    uint64_t value = 0x7a6e646d;
    memcpy(buf.base, &value, 8);
    c->apply.data = c;
    assert_int_equal(raft_apply(&leader->raft, &c->apply, &buf, 1, apply_cb), 0);
    assert_true(run_until(&c->loop, cluster_applied, c, 5000));
    assert_int_equal(c->apply_status, 0);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(c->nodes[i].last_value, value);
        struct tandem_transport_stats stats;
        tandem_transport_stats(&c->nodes[i].transport, &stats);
        assert_true(stats.connected >= 1 && stats.accepted >= 1);
        assert_int_equal(stats.refused_cluster + stats.refused_epoch + stats.refused_malformed +
                             stats.refused_tls + stats.refused_identity + stats.refused_frame,
                         0);
    }
}

static void test_raft_over_transport(void **state)
{
    (void)state;
    static struct cluster c;
    cluster_start(&c, false);
    cluster_elect_and_commit(&c);
    cluster_close(&c, &c.loop);
}

/* One of two voters quarantined: it grants nothing and asks for nothing, so no leader is
 * elected, and with pre-vote neither raises its term (a pre-candidate asks at term + 1 without
 * taking it: libraft's election.c, electionStart). Lifting the gate lets them elect. */
static void test_raft_quarantined_elects_nobody(void **state)
{
    (void)state;
    static struct cluster c;
    cluster_start(&c, true);
    raft_term terms[2] = {raft_current_term(&c.nodes[0].raft), raft_current_term(&c.nodes[1].raft)};

    /* ten election timeouts: west-1 pre-votes in every one of them */
    assert_false(run_until(&c.loop, cluster_has_leader, &c, 3000));
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(raft_current_term(&c.nodes[i].raft), terms[i]);
    }
    struct tandem_transport_stats stats;
    tandem_transport_stats(&c.nodes[0].transport, &stats);
    assert_true(stats.quarantine_refused >= 1);
    assert_int_equal(stats.connected, 0);
    assert_true(stats.accepted >= 1); /* west-1's pre-vote requests arrived */

    tandem_transport_set_quarantine(&c.nodes[0].transport, false);
    assert_true(run_until(&c.loop, cluster_has_leader, &c, 5000));
    cluster_close(&c, &c.loop);
}

/* ---- mutual TLS ---- */

/* Certificates as deploy/certs.sh makes them (consensus/tls.h): a cluster CA (ECDSA P-256), node
 * certificates (serverAuth + clientAuth, CN and SAN DNS = node name, SAN IP 127.0.0.1), a user
 * certificate (clientAuth only) and a second CA with a node certificate of its own. */
#define TLS_DIR_MAX 64
static char tls_dir[TLS_DIR_MAX];

static const char tls_script[] =
    "set -e; cd '%s'; exec 2>/dev/null\n"
    "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
    "-keyout $1.key -out $1.pem -subj /CN=$1 -addext basicConstraints=critical,CA:TRUE "
    "-addext keyUsage=critical,keyCertSign,cRLSign; }\n"
    "cert() { printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
    "extendedKeyUsage=%%s\\n%%s' \"$3\" \"$4\" > $2.ext;"
    " openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $2.key "
    "-out $2.csr -subj /CN=$2;"
    " openssl x509 -req -in $2.csr -CA $1.pem -CAkey $1.key -CAcreateserial -days 2 "
    "-extfile $2.ext -out $2.pem; }\n"
    "node() { cert $1 $2 serverAuth,clientAuth \"subjectAltName=DNS:$2,IP:127.0.0.1\"; }\n"
    "ca ca; ca rogue-ca\n"
    "node ca east-1; node ca west-1; node ca mallory-1; cert ca admin clientAuth ''\n"
    "node rogue-ca rogue-1\n";

static void tls_certs_make(void)
{
    char command[sizeof tls_script + TLS_DIR_MAX];
    snprintf(tls_dir, sizeof tls_dir, "/tmp/tandem-transport-tls-XXXXXX");
    assert_non_null(mkdtemp(tls_dir));
    snprintf(command, sizeof command, tls_script, tls_dir);
    assert_int_equal(system(command), 0);
}

static void tls_certs_remove(void)
{
    char command[TLS_DIR_MAX + 16];
    snprintf(command, sizeof command, "rm -rf '%s'", tls_dir);
    assert_int_equal(system(command), 0);
}

/* A TLS identity of the cluster CA (or ca): cert.pem and cert.key. */
static struct tandem_tls_ctx *tls_ctx(const char *ca, const char *cert)
{
    char ca_path[TLS_DIR_MAX + 32], cert_path[TLS_DIR_MAX + 32], key_path[TLS_DIR_MAX + 32];
    char errmsg[TANDEM_ERRMSG_SIZE];
    snprintf(ca_path, sizeof ca_path, "%s/%s.pem", tls_dir, ca);
    snprintf(cert_path, sizeof cert_path, "%s/%s.pem", tls_dir, cert);
    snprintf(key_path, sizeof key_path, "%s/%s.key", tls_dir, cert);
    struct tandem_tls_files files = {.ca = ca_path, .cert = cert_path, .key = key_path};
    struct tandem_tls_ctx *ctx = NULL;
    int rv = tandem_tls_ctx_new(&files, &ctx, errmsg);
    if (rv != 0) {
        fail_msg("TLS identity %s: %s", cert, errmsg);
    }
    return ctx;
}

/* Writes len bytes of frame on a raft stream from connect. */
static void stream_send(uv_loop_t *loop, uv_stream_t *stream, const uint8_t *frame, size_t len)
{
    static uv_write_t write_req;
    uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)len);
    assert_int_equal(uv_write(&write_req, stream, &buf, 1, NULL), 0);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Connects a to b over TLS, sends frame and returns what b's raft stream got before its EOF. */
static size_t tls_relayed(uv_loop_t *loop, struct node *a, struct node *b, const uint8_t *frame,
                          size_t len)
{
    struct conn c;
    b->accepts = 0;
    assert_int_equal(node_connect(a, b, loop, &c), 0);
    assert_true(run_until(loop, node_accepted, b, WAIT_MS));
    assert_int_equal(b->accepted_id, a->id);
    static struct sink sink;
    memset(&sink, 0, sizeof sink);
    b->accepted_stream->data = &sink;
    assert_int_equal(uv_read_start(b->accepted_stream, sink_alloc_cb, sink_read_cb), 0);
    stream_send(loop, c.stream, frame, len);
    settle(loop, 50);
    conn_close(&c); /* the relay ends the session; b's stream ends after what it passed on */
    assert_true(run_until(loop, sink_eof, &sink, WAIT_MS));
    assert_memory_equal(sink.data, frame, sink.len);
    return sink.len;
}

/* Two members with node certificates: raft frames pass both relays, a frame libraft must not
 * decode is still refused (a member's certificate may be stolen), probes work. */
static void test_tls_connect_and_frames(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tandem_tls_ctx *east = tls_ctx("ca", "east-1"), *west = tls_ctx("ca", "west-1");
    struct node a, b;
    node_start_tls(&a, &loop, "east-1", "prod", 7, 0, east);
    node_start_tls(&b, &loop, "west-1", "prod", 7, 0, west);
    static uint8_t frame[2048];
    uint8_t types[2] = {RAFT_COMMAND, RAFT_CHANGE};
    uint32_t sizes[2] = {100, 0};
    size_t len = fb_append(frame, 1, 2, types, sizes);
    assert_int_equal(tls_relayed(&loop, &a, &b, frame, len), len);
    assert_int_equal(node_stats(&a).relays_outbound_open + node_stats(&b).relays_open, 0);
    fb_put64(frame + 16 + 32, 0xffffffff); /* entry count: libraft segfaulted on this */
    assert_int_equal(tls_relayed(&loop, &a, &b, frame, len), 0);
    assert_int_equal(node_stats(&b).refused_frame, 1);

    struct tandem_transport_contact c = probe_wait(&loop, &a, &b);
    assert_true(c.last_ok_ms > 0);
    struct tandem_transport_stats sa = node_stats(&a), sb = node_stats(&b);
    assert_int_equal(sa.connected, 2);
    assert_int_equal(sa.probed, 1);
    assert_int_equal(sb.accepted, 2);
    assert_int_equal(sa.refused_tls + sa.refused_identity + sb.refused_tls + sb.refused_identity,
                     0);
    node_stop(&a, &loop);
    node_stop(&b, &loop);
    loop_finish(&loop);
    tandem_tls_ctx_free(east);
    tandem_tls_ctx_free(west);
}

/* b (as west-1) holds cert of the same CA: a refuses it (identity or TLS), raft never sees it,
 * and once a minute is said at warn (identity) or info. Then returns the stats of a. */
static struct tandem_transport_stats tls_refused(const char *ca, const char *cert,
                                                 unsigned *warnings)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tandem_tls_ctx *east = tls_ctx("ca", "east-1"), *intruder = tls_ctx(ca, cert);
    struct node a, b;
    node_start_tls(&a, &loop, "east-1", "prod", 7, 0, east);
    node_start_tls(&b, &loop, "west-1", "prod", 7, 0, intruder);
    struct conn c;
    for (unsigned attempt = 0; attempt < 3; attempt++) {
        assert_int_equal(node_connect(&b, &a, &loop, &c), RAFT_NOCONNECTION);
    }
    settle(&loop, 50);
    assert_int_equal(a.accepts, 0);
    struct tandem_transport_stats sa = node_stats(&a);
    assert_int_equal(sa.accepted + sa.probes_answered, 0);
    assert_int_equal(sa.refused_tls + sa.refused_identity, 3);
    assert_int_equal(sa.epoch_newest_seen, 0);
    assert_int_equal(a.warnings + a.infos, 1); /* one line per peer and minute */
    *warnings = a.warnings;
    /* The other way round, a's client refuses whoever answers for west-1 with that cert. */
    assert_int_equal(node_connect(&a, &b, &loop, &c), RAFT_NOCONNECTION);
    assert_int_equal(node_stats(&a).connected, 0);
    assert_int_equal(b.accepts, 0);
    node_stop(&a, &loop);
    node_stop(&b, &loop);
    loop_finish(&loop);
    tandem_tls_ctx_free(east);
    tandem_tls_ctx_free(intruder);
    return sa;
}

/* Another member's valid node certificate and a user's are refused for their identity (at warn),
 * another CA's in the TLS handshake (at info). */
static void test_tls_strangers_refused(void **state)
{
    (void)state;
    static const struct {
        const char *ca, *cert;
        bool identity; /* refused as an identity, else in TLS */
    } cases[] = {
        {"ca", "mallory-1", true},
        {"ca", "admin", true},
        {"rogue-ca", "rogue-1", false},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned warnings = 0;
        struct tandem_transport_stats s = tls_refused(cases[i].ca, cases[i].cert, &warnings);
        assert_int_equal(cases[i].identity ? s.refused_identity : s.refused_tls, 3);
        assert_int_equal(warnings, cases[i].identity ? 1 : 0);
    }
}

/* A plaintext hello to a TLS transport is refused before it is read as one; a silent client is
 * dropped by the handshake timeout, its pending slot freed. */
static void test_tls_plaintext_and_silent_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tandem_tls_ctx *east = tls_ctx("ca", "east-1");
    struct node n;
    node_start_tls(&n, &loop, "east-1", "prod", 1, 300, east);
    static struct raw r, silent;
    static const char address[] = "west-1|west|127.0.0.1:1|http://127.0.0.1:1";
    raw_start(&r, &loop, n.port);
    raw_start(&silent, &loop, n.port);
    assert_true(run_until(&loop, flag_set, &r.connected, WAIT_MS));
    hello_build(r.out, (uint32_t)strlen(address), address);
    raw_send(&r, HELLO_SIZE);
    assert_true(run_until(&loop, raw_eof, &r, WAIT_MS));
    assert_true(r.in_len < 8 || memcmp(r.in, "TNDMACK!", 8) != 0); /* no ack, at most an alert */
    assert_int_equal(node_stats(&n).refused_tls, 1);
    assert_int_equal(node_stats(&n).timed_out, 0);
    assert_true(run_until(&loop, raw_eof, &silent, WAIT_MS));
    assert_int_equal(silent.in_len, 0);
    struct tandem_transport_stats stats = node_stats(&n);
    assert_int_equal(stats.timed_out, 1);
    assert_int_equal(stats.accepted + n.accepts, 0);
    assert_int_equal(stats.epoch_newest_seen, 0);
    raw_stop(&r, &loop);
    raw_stop(&silent, &loop);
    node_stop(&n, &loop);
    loop_finish(&loop);
    tandem_tls_ctx_free(east);
}

static void test_raft_over_tls(void **state)
{
    (void)state;
    static struct cluster c;
    struct tandem_tls_ctx *tls[2] = {tls_ctx("ca", "east-1"), tls_ctx("ca", "west-1")};
    cluster_start_tls(&c, false, tls);
    cluster_elect_and_commit(&c);
    for (unsigned i = 0; i < 2; i++) {
        struct tandem_transport_stats stats;
        tandem_transport_stats(&c.nodes[i].transport, &stats);
        assert_true(stats.relays_outbound_open >= 1);
    }
    cluster_close(&c, &c.loop);
    tandem_tls_ctx_free(tls[0]);
    tandem_tls_ctx_free(tls[1]);
}

/* raft_allow: a source outside the list is closed right after accept, before TLS or a hello is
 * read (no handshake timeout, no TLS refusal), and counted; a source inside gets on as usual. */
static void test_raft_allow_refuses_source(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_allow_parse(&allow, "127.0.0.1/32, ::1", errmsg), 0);
    struct tandem_tls_ctx *east = tls_ctx("ca", "east-1"), *west = tls_ctx("ca", "west-1");
    struct node a, b;
    node_start_config(&a, &loop, "east-1", 5000, east, &allow);
    node_start_tls(&b, &loop, "west-1", "prod", 1, 0, west);
    static struct raw outsider;
    struct sockaddr_in from;
    assert_int_equal(uv_ip4_addr("127.0.0.2", 0, &from), 0);
    raw_start_from(&outsider, &loop, a.port, (const struct sockaddr *)&from);
    assert_true(run_until(&loop, flag_set, &outsider.connected, WAIT_MS));
    uint64_t connected_at = uv_now(&loop);
    assert_true(run_until(&loop, raw_eof, &outsider, WAIT_MS));
    assert_true(outsider.eof_at_ms - connected_at < 1000); /* not the 5 s handshake timeout */
    assert_int_equal(outsider.in_len, 0);                  /* not even a TLS alert */
    struct tandem_transport_stats stats = node_stats(&a);
    assert_int_equal(stats.refused_allow, 1);
    assert_int_equal(stats.refused_tls + stats.timed_out + stats.accepted, 0);
    assert_int_equal(a.infos, 1);

    struct conn c; /* from 127.0.0.1: allowed */
    assert_int_equal(node_connect(&b, &a, &loop, &c), 0);
    assert_true(run_until(&loop, node_accepted, &a, WAIT_MS));
    assert_int_equal(node_stats(&a).refused_allow, 1);
    conn_close(&c);
    raw_stop(&outsider, &loop);
    node_stop(&a, &loop);
    node_stop(&b, &loop);
    loop_finish(&loop);
    tandem_tls_ctx_free(east);
    tandem_tls_ctx_free(west);
}

/* A TLS server that acks like a member and then writes, which an acceptor's raft_uv never does:
 * behind its ack in one record (the handshake refuses the extra bytes) or later, once raft has
 * the stream (the outbound relay drops it). */
struct chatty {
    uv_tcp_t listener;
    struct tandem_relay_conn conn; /* tcp first, for the close callback */
    uv_timer_t later;
    struct tandem_tls_ctx *ctx;
    uint8_t hello[HELLO_SIZE];
    size_t hello_len;
    bool junk_in_ack, accepted, closed;
    int port;
};

static const char chatty_junk[] = "an acceptor never writes this";

static void chatty_written_cb(void *data, void *write_data, int status)
{
    (void)data, (void)write_data, (void)status;
}

static void chatty_write(struct chatty *m, bool ack, bool junk)
{
    uint8_t out[ACK_SIZE + sizeof chatty_junk];
    size_t len = 0;
    if (ack) {
        memset(out, 0, ACK_SIZE);
        memcpy(out, "TNDMACK!", 8);
        put_le(out + 8, 2, 4);
        put_le(out + 16, 7, 8); /* epoch 7, status OK */
        len = ACK_SIZE;
    }
    if (junk) {
        memcpy(out + len, chatty_junk, sizeof chatty_junk);
        len += sizeof chatty_junk;
    }
    uv_buf_t buf = uv_buf_init((char *)out, (unsigned)len);
    assert_int_equal(tandem_tls_write(m->conn.tls, &buf, 1, m, chatty_written_cb), 0);
}

static void chatty_later_cb(uv_timer_t *timer)
{
    chatty_write(timer->data, false, true);
}

static void chatty_read_cb(void *data, ssize_t n, const char *bytes)
{
    struct chatty *m = ((struct tandem_relay_conn *)data)->owner;
    if (n <= 0 || m->hello_len + (size_t)n > HELLO_SIZE) {
        return;
    }
    memcpy(m->hello + m->hello_len, bytes, (size_t)n);
    m->hello_len += (size_t)n;
    if (m->hello_len == HELLO_SIZE) {
        chatty_write(m, true, m->junk_in_ack);
        if (!m->junk_in_ack) {
            assert_int_equal(uv_timer_start(&m->later, chatty_later_cb, 100, 0), 0);
        }
    }
}

static void chatty_handshake_cb(void *data, int status)
{
    assert_int_equal(status, 0);
    assert_int_equal(tandem_tls_read_start(((struct tandem_relay_conn *)data)->tls, chatty_read_cb),
                     0);
}

static void chatty_listen_cb(uv_stream_t *listener, int status)
{
    struct chatty *m = listener->data;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(status, 0);
    assert_false(m->accepted); /* one connection */
    assert_int_equal(uv_tcp_init(listener->loop, &m->conn.tcp), 0);
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&m->conn.tcp), 0);
    m->accepted = true;
    assert_int_equal(tandem_tls_new(m->ctx, &m->conn.tcp, TANDEM_TLS_SERVER, NULL, &m->conn,
                                    &m->conn.tls, errmsg),
                     0);
    assert_int_equal(tandem_tls_handshake(m->conn.tls, chatty_handshake_cb), 0);
}

static void chatty_start(struct chatty *m, uv_loop_t *loop, bool junk_in_ack)
{
    memset(m, 0, sizeof *m);
    m->junk_in_ack = junk_in_ack;
    m->conn.owner = m;
    m->ctx = tls_ctx("ca", "west-1");
    m->port = free_port();
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", m->port, &addr), 0);
    assert_int_equal(uv_tcp_init(loop, &m->listener), 0);
    m->listener.data = m;
    assert_int_equal(uv_tcp_bind(&m->listener, (struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&m->listener, 4, chatty_listen_cb), 0);
    assert_int_equal(uv_timer_init(loop, &m->later), 0);
    m->later.data = m;
}

static void chatty_conn_close_cb(uv_handle_t *handle)
{
    struct tandem_relay_conn *conn = tandem_relay_conn_of(handle);
    struct chatty *m = conn->owner;
    tandem_tls_free(conn->tls);
    m->closed = true;
}

static void chatty_stop(struct chatty *m, uv_loop_t *loop)
{
    uv_close((uv_handle_t *)&m->listener, NULL);
    uv_close((uv_handle_t *)&m->later, NULL);
    if (m->accepted) {
        uv_close((uv_handle_t *)&m->conn.tcp, chatty_conn_close_cb);
        assert_true(run_until(loop, flag_set, &m->closed, WAIT_MS));
    }
    settle(loop, 10);
    tandem_tls_ctx_free(m->ctx);
}

static bool frame_refused(void *arg)
{
    return node_stats(arg).refused_frame > 0;
}

static void test_tls_acceptor_that_writes_is_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct tandem_tls_ctx *east = tls_ctx("ca", "east-1");
    struct node a, peer;
    node_start_tls(&a, &loop, "east-1", "prod", 7, 0, east);
    static struct chatty m;
    struct conn c;
    for (int junk_in_ack = 1; junk_in_ack >= 0; junk_in_ack--) {
        chatty_start(&m, &loop, junk_in_ack == 1);
        memset(&peer, 0, sizeof peer);
        peer.id = tandem_member_id("west-1");
        snprintf(peer.address, sizeof peer.address, "west-1|west|127.0.0.1:%d|http://127.0.0.1:1",
                 m.port);
        if (junk_in_ack) {
            assert_int_equal(node_connect(&a, &peer, &loop, &c), RAFT_NOCONNECTION);
            assert_int_equal(node_stats(&a).refused_malformed, 1);
        } else {
            assert_int_equal(node_connect(&a, &peer, &loop, &c), 0);
            assert_int_equal(node_stats(&a).relays_outbound_open, 1);
            assert_true(run_until(&loop, frame_refused, &a, WAIT_MS));
            settle(&loop, 20);
            assert_int_equal(node_stats(&a).relays_outbound_open, 0);
            conn_close(&c);
        }
        chatty_stop(&m, &loop);
    }
    assert_int_equal(node_stats(&a).connected, 1);
    node_stop(&a, &loop);
    loop_finish(&loop);
    tandem_tls_ctx_free(east);
}

static int tls_group_setup(void **state)
{
    (void)state;
    tls_certs_make();
    return 0;
}

static int tls_group_teardown(void **state)
{
    (void)state;
    tls_certs_remove();
    return 0;
}

/* ---- config validation ---- */

static void test_config_rejected(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct raft_uv_transport t;
    memset(&t, 0, sizeof t);
    struct tandem_transport_config config = {.cluster_id = "bad id"};
    assert_int_equal(tandem_transport_init(&t, &loop, &config), RAFT_INVALID);
    config.cluster_id = "prod";
    config.bind_address = "nohostport";
    assert_int_equal(tandem_transport_init(&t, &loop, &config), RAFT_INVALID);
    config.bind_address = NULL;
    config.handshake_timeout_ms = TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MAX + 1;
    assert_int_equal(tandem_transport_init(&t, &loop, &config), RAFT_INVALID);
    config.handshake_timeout_ms = 0;
    assert_int_equal(tandem_transport_init(&t, &loop, &config), 0);
    assert_int_equal(t.init(&t, 1, "127.0.0.1:9001"), RAFT_INVALID); /* not a member address */
    tandem_transport_close(&t);
    loop_finish(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_handover),
        cmocka_unit_test(test_cluster_mismatch),
        cmocka_unit_test(test_epoch_mismatch_then_set_epoch),
        cmocka_unit_test(test_malformed_hello),
        cmocka_unit_test(test_pipelined_bytes_stay_in_stream),
        cmocka_unit_test(test_frames_checked_before_raft),
        cmocka_unit_test(test_silent_client_times_out),
        cmocka_unit_test(test_raft_over_transport),
        cmocka_unit_test(test_pending_handshakes_bounded),
        cmocka_unit_test(test_close_cancels_connects),
        cmocka_unit_test(test_config_rejected),
        cmocka_unit_test(test_version_1_refused),
        cmocka_unit_test(test_contacts_and_leader_flag),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_contacts_bounded),
        cmocka_unit_test(test_quarantine_gate),
        cmocka_unit_test(test_fenced_node_tells_the_newer_epoch),
        cmocka_unit_test(test_raft_quarantined_elects_nobody),
        cmocka_unit_test(test_tls_connect_and_frames),
        cmocka_unit_test(test_tls_strangers_refused),
        cmocka_unit_test(test_tls_plaintext_and_silent_refused),
        cmocka_unit_test(test_raft_over_tls),
        cmocka_unit_test(test_raft_allow_refuses_source),
        cmocka_unit_test(test_tls_acceptor_that_writes_is_dropped),
    };
    return cmocka_run_group_tests(tests, tls_group_setup, tls_group_teardown);
}
