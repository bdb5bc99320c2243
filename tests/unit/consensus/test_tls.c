/* Tests for the TLS stream module (consensus/tls.h) on real loopback sockets and one libuv loop:
 * handshakes and identities, data both ways with backpressure, the refusals (other CA, user
 * certificate as a server, wrong node, TLS 1.2, plaintext, revoked, expired, bad CN), the end of
 * a stream, closing mid-write, and loading and reloading certificates. The certificates are made
 * with the openssl CLI in a temporary directory by the group setup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "consensus/tls.h"
#include "storage/error.h"

#define RUN_ITERATIONS_MAX 200000 /* loop iterations any single wait may take */
#define TICK_MS            5      /* wakes the loop so waits notice their deadline */
#define WAIT_MS            5000   /* ceiling for an event that should come at once */
#define BULK_BYTES         (4u * 1024u * 1024u)
#define CLOSE_WRITES       256
#define CLOSE_WRITE_BYTES  (64u * 1024u) /* 16 MiB in all: more than loopback buffers take */
#define RX_MAX             (BULK_BYTES + 1024u)
#define RAW_TIMEOUT_S      5

static char cert_dir[64];

/* Makes the CA, node, user, other-CA, expired, revoked and bad-CN certificates and the CRL. */
static const char cert_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "cat > ca.cnf <<'EOF'\n"
    "[ req ]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[ dn ]\n"
    "CN = unused\n"
    "[ ca ]\n"
    "default_ca = tca\n"
    "[ tca ]\n"
    "dir = .\n"
    "database = ./index.txt\n"
    "new_certs_dir = .\n"
    "serial = ./serial\n"
    "crlnumber = ./crlnumber\n"
    "default_md = sha256\n"
    "default_days = 30\n"
    "default_crl_days = 7\n"
    "policy = pol\n"
    "unique_subject = no\n"
    "copy_extensions = none\n"
    "[ pol ]\n"
    "commonName = supplied\n"
    "[ ca_ext ]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[ node_ext ]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth,clientAuth\n"
    "subjectAltName = DNS:$ENV::SAN_NAME,IP:127.0.0.1\n"
    "[ user_ext ]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "EOF\n"
    "touch index.txt; echo 1000 > serial; echo 1000 > crlnumber\n"
    "export SAN_NAME=none\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1.key\"; }\n"
    "mkca() { key $1; openssl req -new -x509 -key $1.key -out $1.pem -subj /CN=$1 -days 30 \\\n"
    "  -config ca.cnf -extensions ca_ext; }\n"
    "sign() { name=$1 ext=$2 cn=$3; shift 3; key $name\n"
    "  openssl req -new -key $name.key -subj \"/CN=$cn\" -out $name.csr -config ca.cnf\n"
    "  SAN_NAME=\"$cn\" openssl ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key \\\n"
    "    -in $name.csr -out $name.pem -extensions $ext \"$@\" 2>/dev/null; }\n"
    "mkca ca\n"
    "sign node-1 node_ext node-1\n"
    "sign node-2 node_ext node-2\n"
    "sign alice user_ext alice\n"
    "sign badcn user_ext 'bad name'\n"
    "sign expired node_ext node-9 -startdate 20200101000000Z -enddate 20200102000000Z\n"
    "sign revoked node_ext node-8\n"
    "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -revoke revoked.pem "
    "2>/dev/null\n"
    "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -gencrl -out ca.crl "
    "2>/dev/null\n"
    "mkca other-ca\n"
    "key other\n"
    "openssl req -new -key other.key -subj /CN=node-1 -out other.csr -config ca.cnf\n"
    "SAN_NAME=node-1 openssl x509 -req -in other.csr -CA other-ca.pem -CAkey other-ca.key \\\n"
    "  -CAcreateserial -days 30 -extfile ca.cnf -extensions node_ext -out other.pem "
    "2>/dev/null\n";

static const char *path(const char *name)
{
    static char paths[8][128];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", cert_dir, name);
    return p;
}

static int certs_setup(void **state)
{
    (void)state;
    snprintf(cert_dir, sizeof cert_dir, "/tmp/tandem-test-tls-XXXXXX");
    if (mkdtemp(cert_dir) == NULL) {
        return -1;
    }
    FILE *f = fopen(path("make.sh"), "w");
    if (f == NULL || fputs(cert_script, f) < 0 || fclose(f) != 0) {
        return -1;
    }
    char command[256];
    snprintf(command, sizeof command, "sh %s %s >%s 2>&1", path("make.sh"), cert_dir,
             path("make.log"));
    if (system(command) != 0) {
        fprintf(stderr, "making test certificates failed, see %s\n", path("make.log"));
        return -1;
    }
    return 0;
}

static int certs_teardown(void **state)
{
    (void)state;
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", cert_dir);
    return system(command) == 0 ? 0 : -1;
}

/* A context of the named identity: NAME.pem and NAME.key, the given CA, crl or NULL. */
static struct tandem_tls_ctx *ctx_of(const char *name, const char *ca, const char *crl)
{
    char cert[128];
    char key[128];
    char ca_path[128];
    char crl_path[128];
    snprintf(cert, sizeof cert, "%s/%s.pem", cert_dir, name);
    snprintf(key, sizeof key, "%s/%s.key", cert_dir, name);
    snprintf(ca_path, sizeof ca_path, "%s/%s", cert_dir, ca);
    snprintf(crl_path, sizeof crl_path, "%s/%s", cert_dir, crl == NULL ? "" : crl);
    struct tandem_tls_files files = {
        .ca = ca_path, .cert = cert, .key = key, .crl = crl == NULL ? NULL : crl_path};
    struct tandem_tls_ctx *ctx = NULL;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    int rc = tandem_tls_ctx_new(&files, &ctx, errmsg);
    if (rc != TANDEM_OK) {
        fail_msg("ctx of %s: %s", name, errmsg);
    }
    return ctx;
}

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
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
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

/* ---- two ends of a connection through the module ---- */

struct end {
    uv_tcp_t tcp;
    bool open;
    struct tandem_tls *tls;
    bool handshake_done;
    int handshake_status;
    char error[TANDEM_ERRMSG_SIZE];
    char *rx; /* owned, RX_MAX bytes */
    size_t rx_len;
    ssize_t rx_end; /* 0, or the final read status */
    unsigned reads;
    size_t read_largest;
    bool stop_each_read;
    unsigned writes_done;
    unsigned writes_ok;
    unsigned writes_net;
    bool closed;
};

struct pair {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_connect_t connect;
    struct end server;
    struct end client;
    struct tandem_tls_ctx *server_ctx; /* borrowed */
    struct tandem_tls_ctx *client_ctx; /* borrowed; NULL: the test connects by itself */
    const char *expect_node;
    int port;
};

static void end_handshake_cb(void *data, int status)
{
    struct end *e = data;
    assert_false(e->handshake_done);
    e->handshake_done = true;
    e->handshake_status = status;
    snprintf(e->error, sizeof e->error, "%s", tandem_tls_error(e->tls));
}

static void end_read_cb(void *data, ssize_t n, const char *buf)
{
    struct end *e = data;
    assert_int_equal(e->rx_end, 0);
    if (n < 0) {
        e->rx_end = n;
        return;
    }
    assert_true(n > 0 && (size_t)n <= TANDEM_TLS_READ_BYTES);
    assert_true(e->rx_len + (size_t)n <= RX_MAX);
    memcpy(e->rx + e->rx_len, buf, (size_t)n);
    e->rx_len += (size_t)n;
    e->reads++;
    e->read_largest = (size_t)n > e->read_largest ? (size_t)n : e->read_largest;
    if (e->stop_each_read) {
        assert_int_equal(tandem_tls_read_stop(e->tls), TANDEM_OK);
    }
}

static void end_write_cb(void *data, void *write_data, int status)
{
    struct end *e = data;
    (void)write_data;
    e->writes_done++;
    if (status == TANDEM_OK) {
        e->writes_ok++;
    } else {
        assert_int_equal(status, TANDEM_NET);
        e->writes_net++;
    }
}

static void end_close_cb(uv_handle_t *handle)
{
    struct end *e = handle->data; /* the module leaves tcp->data to its owner */
    tandem_tls_free(e->tls);
    e->tls = NULL;
    e->closed = true;
}

static void end_start(struct end *e, struct tandem_tls_ctx *ctx, enum tandem_tls_role role,
                      const char *expect_node)
{
    e->tcp.data = e;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    assert_int_equal(tandem_tls_new(ctx, &e->tcp, role, expect_node, e, &e->tls, errmsg),
                     TANDEM_OK);
    assert_ptr_equal(e->tcp.data, e);
    assert_int_equal(tandem_tls_handshake(e->tls, end_handshake_cb), TANDEM_OK);
}

static void pair_connection_cb(uv_stream_t *listener, int status)
{
    struct pair *p = listener->data;
    assert_int_equal(status, 0);
    assert_false(p->server.open);
    assert_int_equal(uv_tcp_init(&p->loop, &p->server.tcp), 0);
    p->server.open = true;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&p->server.tcp), 0);
    end_start(&p->server, p->server_ctx, TANDEM_TLS_SERVER, NULL);
}

static void pair_connect_cb(uv_connect_t *req, int status)
{
    struct pair *p = req->data;
    assert_int_equal(status, 0);
    end_start(&p->client, p->client_ctx, TANDEM_TLS_CLIENT, p->expect_node);
}

static bool pair_handshakes_done(void *arg)
{
    struct pair *p = arg;
    return p->server.handshake_done && (p->client_ctx == NULL || p->client.handshake_done);
}

/* Listens on loopback and, with a client context, connects through the module. */
static void pair_open(struct pair *p, struct tandem_tls_ctx *server_ctx,
                      struct tandem_tls_ctx *client_ctx, const char *expect_node)
{
    memset(p, 0, sizeof *p);
    p->server_ctx = server_ctx;
    p->client_ctx = client_ctx;
    p->expect_node = expect_node;
    p->server.rx = malloc(RX_MAX);
    p->client.rx = malloc(RX_MAX);
    assert_non_null(p->server.rx);
    assert_non_null(p->client.rx);
    assert_int_equal(uv_loop_init(&p->loop), 0);
    assert_int_equal(uv_tcp_init(&p->loop, &p->listener), 0);
    p->listener.data = p;
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_bind(&p->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&p->listener, 8, pair_connection_cb), 0);
    int len = sizeof addr;
    assert_int_equal(uv_tcp_getsockname(&p->listener, (struct sockaddr *)&addr, &len), 0);
    p->port = ntohs(addr.sin_port);
    if (client_ctx != NULL) {
        assert_int_equal(uv_tcp_init(&p->loop, &p->client.tcp), 0);
        p->client.open = true;
        p->connect.data = p;
        assert_int_equal(uv_tcp_connect(&p->connect, &p->client.tcp, (const struct sockaddr *)&addr,
                                        pair_connect_cb),
                         0);
    }
}

static void end_close(struct end *e)
{
    if (e->open && !uv_is_closing((uv_handle_t *)&e->tcp)) {
        uv_close((uv_handle_t *)&e->tcp, end_close_cb);
    }
}

static void pair_close(struct pair *p)
{
    end_close(&p->server);
    end_close(&p->client);
    uv_close((uv_handle_t *)&p->listener, NULL);
    loop_finish(&p->loop);
    assert_null(p->server.tls);
    assert_null(p->client.tls);
    free(p->server.rx);
    free(p->client.rx);
}

static bool pair_client_has(void *arg)
{
    struct pair *p = arg;
    return p->client.rx_len > 0 || p->client.rx_end != 0;
}

static bool pair_server_has(void *arg)
{
    struct pair *p = arg;
    return p->server.rx_len > 0 || p->server.rx_end != 0;
}

static void end_write(struct end *e, const char *bytes, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)bytes, (unsigned)len);
    assert_int_equal(tandem_tls_write(e->tls, &buf, 1, NULL, end_write_cb), TANDEM_OK);
}

/* Opens a pair, expects both handshakes to succeed and both ends to be node certificates. */
static void pair_open_ok(struct pair *p, struct tandem_tls_ctx *server_ctx,
                         struct tandem_tls_ctx *client_ctx, const char *expect_node)
{
    pair_open(p, server_ctx, client_ctx, expect_node);
    assert_true(run_until(&p->loop, pair_handshakes_done, p, WAIT_MS));
    assert_int_equal(p->server.handshake_status, TANDEM_OK);
    assert_int_equal(p->client.handshake_status, TANDEM_OK);
}

/* ---- handshakes, identities and data ---- */

static void test_handshake_data_and_identities(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *n2 = ctx_of("node-2", "ca.pem", NULL);
    struct pair p;
    pair_open_ok(&p, n1, n2, "node-1");

    struct tandem_tls_peer peer;
    tandem_tls_peer(p.server.tls, &peer);
    assert_int_equal(peer.kind, TANDEM_TLS_PEER_NODE);
    assert_string_equal(peer.name, "node-2");
    assert_true(tandem_tls_peer_is_node(p.server.tls, "node-2"));
    assert_false(tandem_tls_peer_is_node(p.server.tls, "node-1"));
    assert_false(tandem_tls_peer_is_node(p.server.tls, "NODE-2"));
    tandem_tls_peer(p.client.tls, &peer);
    assert_int_equal(peer.kind, TANDEM_TLS_PEER_NODE);
    assert_string_equal(peer.name, "node-1");
    assert_true(tandem_tls_peer_is_node(p.client.tls, "node-1"));

    /* Sent before the server reads: kept and handed over on read_start. */
    end_write(&p.client, "ping", 4);
    (void)run_until(&p.loop, never, NULL, 50);
    assert_int_equal(p.server.rx_len, 0);
    assert_int_equal(tandem_tls_read_start(p.server.tls, end_read_cb), TANDEM_OK);
    assert_int_equal(tandem_tls_read_start(p.client.tls, end_read_cb), TANDEM_OK);
    assert_true(run_until(&p.loop, pair_server_has, &p, WAIT_MS));
    assert_int_equal(p.server.rx_len, 4);
    assert_memory_equal(p.server.rx, "ping", 4);

    uv_buf_t bufs[3] = {uv_buf_init("po", 2), uv_buf_init("", 0), uv_buf_init("ng", 2)};
    assert_int_equal(tandem_tls_write(p.server.tls, bufs, 3, NULL, end_write_cb), TANDEM_OK);
    assert_true(tandem_tls_write_queue_bytes(p.server.tls) > 0 ||
                p.server.writes_done == 1); /* counted until uv_write completes */
    assert_true(run_until(&p.loop, pair_client_has, &p, WAIT_MS));
    assert_int_equal(p.client.rx_len, 4);
    assert_memory_equal(p.client.rx, "pong", 4);
    assert_int_equal(p.server.writes_ok, 1);
    assert_int_equal(p.client.writes_ok, 1);
    assert_int_equal(tandem_tls_write_queue_bytes(p.server.tls), 0);
    assert_string_equal(tandem_tls_error(p.server.tls), "");
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(n2);
}

static bool end_read_once(void *arg)
{
    struct end *e = arg;
    return e->reads > 0 || e->rx_end != 0;
}

static bool end_writes_all_done(void *arg)
{
    struct end *e = arg;
    return e->writes_done == e->writes_ok + e->writes_net && e->writes_done > 0 &&
           tandem_tls_write_queue_bytes(e->tls) == 0;
}

static unsigned char bulk_byte(size_t at)
{
    return (unsigned char)((at * 7u + 3u) % 251u);
}

/* 4 MiB in writes of many sizes, read one callback at a time with read_stop/read_start. */
static void test_bulk_with_backpressure(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *n2 = ctx_of("node-2", "ca.pem", NULL);
    struct pair p;
    pair_open_ok(&p, n1, n2, NULL);
    unsigned char *source = malloc(BULK_BYTES);
    assert_non_null(source);
    for (size_t i = 0; i < BULK_BYTES; i++) {
        source[i] = bulk_byte(i);
    }
    static const size_t sizes[] = {1, 100, 5000, 16384, 16385, 40000, 70000, 3};
    unsigned writes = 0;
    for (size_t at = 0, k = 0; at < BULK_BYTES; k++) {
        size_t n = sizes[k % 8] < BULK_BYTES - at ? sizes[k % 8] : BULK_BYTES - at;
        /* Two buffers per write: the module gathers them into full records. */
        uv_buf_t bufs[2] = {uv_buf_init((char *)source + at, (unsigned)(n / 2)),
                            uv_buf_init((char *)source + at + n / 2, (unsigned)(n - n / 2))};
        assert_int_equal(tandem_tls_write(p.client.tls, bufs, 2, NULL, end_write_cb), TANDEM_OK);
        at += n;
        writes++;
    }
    memset(source, 0, BULK_BYTES); /* the module encrypted at once: the buffers are free */
    (void)run_until(&p.loop, never, NULL, 100);
    assert_int_equal(p.server.rx_len, 0); /* nobody reads: nothing is handed up */

    p.server.stop_each_read = true;
    for (unsigned round = 0; round < 100000 && p.server.rx_len < BULK_BYTES; round++) {
        size_t before = p.server.rx_len;
        p.server.reads = 0;
        assert_int_equal(tandem_tls_read_start(p.server.tls, end_read_cb), TANDEM_OK);
        assert_true(run_until(&p.loop, end_read_once, &p.server, WAIT_MS));
        assert_int_equal(p.server.reads, 1); /* stopped in the callback: no second one */
        assert_true(p.server.rx_len > before);
    }
    assert_int_equal(p.server.rx_len, BULK_BYTES);
    assert_true(p.server.read_largest > 16384); /* records are handed up in batches */
    for (size_t i = 0; i < BULK_BYTES; i++) {
        if ((unsigned char)p.server.rx[i] != bulk_byte(i)) {
            fail_msg("byte %zu differs", i);
        }
    }
    assert_true(run_until(&p.loop, end_writes_all_done, &p.client, WAIT_MS));
    assert_int_equal(p.client.writes_ok, writes);
    free(source);
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(n2);
}

static void test_user_certificate_peer(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *alice = ctx_of("alice", "ca.pem", NULL);
    struct pair p;
    pair_open_ok(&p, n1, alice, "node-1");
    struct tandem_tls_peer peer;
    tandem_tls_peer(p.server.tls, &peer);
    assert_int_equal(peer.kind, TANDEM_TLS_PEER_USER);
    assert_string_equal(peer.name, "alice");
    assert_false(tandem_tls_peer_is_node(p.server.tls, "alice"));
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(alice);
}

/* A client's handshake may finish before the server judged its certificate (TLS 1.3): the
 * refusal then reaches the client as a read error. */
static void expect_server_refusal(struct pair *p, int status, const char *reason)
{
    assert_true(run_until(&p->loop, pair_handshakes_done, p, WAIT_MS));
    assert_int_equal(p->server.handshake_status, status);
    if (strstr(p->server.error, reason) == NULL) {
        fail_msg("server error \"%s\" lacks \"%s\"", p->server.error, reason);
    }
    struct tandem_tls_peer peer;
    tandem_tls_peer(p->server.tls, &peer);
    assert_int_equal(peer.kind, TANDEM_TLS_PEER_NONE);
    if (p->client_ctx != NULL && p->client.handshake_status == TANDEM_OK) {
        assert_int_equal(tandem_tls_read_start(p->client.tls, end_read_cb), TANDEM_OK);
        assert_true(run_until(&p->loop, pair_client_has, p, WAIT_MS));
        assert_int_equal(p->client.rx_len, 0);
        assert_int_equal(p->client.rx_end, UV_EPROTO);
    }
}

static void expect_client_refusal(struct pair *p, const char *reason)
{
    assert_true(run_until(&p->loop, pair_handshakes_done, p, WAIT_MS));
    assert_int_equal(p->client.handshake_status, TANDEM_CRYPTO);
    if (strstr(p->client.error, reason) == NULL) {
        fail_msg("client error \"%s\" lacks \"%s\"", p->client.error, reason);
    }
    assert_int_not_equal(p->server.handshake_status, TANDEM_OK); /* told by the alert */
}

static void test_other_ca_refused(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *other = ctx_of("other", "other-ca.pem", NULL);
    struct pair p;
    pair_open(&p, n1, other, NULL);
    assert_true(run_until(&p.loop, pair_handshakes_done, &p, WAIT_MS));
    /* Each end refuses the other's CA; whoever judges first sends the alert. */
    assert_int_not_equal(p.server.handshake_status, TANDEM_OK);
    assert_int_equal(p.client.handshake_status, TANDEM_CRYPTO);
    assert_non_null(strstr(p.client.error, "certificate verify failed"));
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(other);
}

static void test_user_certificate_as_server_refused(void **state)
{
    (void)state;
    struct tandem_tls_ctx *alice = ctx_of("alice", "ca.pem", NULL);
    struct tandem_tls_ctx *n2 = ctx_of("node-2", "ca.pem", NULL);
    struct pair p;
    pair_open(&p, alice, n2, NULL);
    expect_client_refusal(&p, "peer is not a node certificate");
    pair_close(&p);
    tandem_tls_ctx_free(alice);
    tandem_tls_ctx_free(n2);
}

static void test_expect_node_mismatch_refused(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *n2 = ctx_of("node-2", "ca.pem", NULL);
    struct pair p;
    pair_open(&p, n1, n2, "node-2");
    expect_client_refusal(&p, "peer certificate does not name node node-2");
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(n2);
}

static void test_revoked_refused_with_crl(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", "ca.crl");
    struct tandem_tls_ctx *revoked = ctx_of("revoked", "ca.pem", NULL); /* it knows no CRL */
    struct pair p;
    pair_open(&p, n1, revoked, NULL);
    expect_server_refusal(&p, TANDEM_CRYPTO, "certificate revoked");
    pair_close(&p);
    /* Without the CRL the same certificate passes: the CRL is what refused it. */
    struct tandem_tls_ctx *n1_no_crl = ctx_of("node-1", "ca.pem", NULL);
    pair_open_ok(&p, n1_no_crl, revoked, NULL);
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(n1_no_crl);
    tandem_tls_ctx_free(revoked);
}

static void test_bad_cn_refused(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *bad = ctx_of("badcn", "ca.pem", NULL);
    struct pair p;
    pair_open(&p, n1, bad, NULL);
    expect_server_refusal(&p, TANDEM_CRYPTO, "CN is not a valid name");
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(bad);
}

/* ---- clients that are not the module: TLS 1.2, an expired certificate, plaintext ---- */

struct raw_client {
    int port;
    SSL_CTX *ctx; /* NULL: send plaintext */
    pthread_t thread;
    atomic_bool done;
};

static void *raw_client_main(void *arg)
{
    struct raw_client *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval timeout = {.tv_sec = RAW_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        char byte;
        if (r->ctx == NULL) {
            static const char request[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            ssize_t sent = write(fd, request, sizeof request - 1);
            (void)sent;
            while (read(fd, &byte, 1) > 0) {
            }
        } else {
            SSL *ssl = SSL_new(r->ctx);
            SSL_set_fd(ssl, fd);
            if (SSL_connect(ssl) == 1) {
                (void)SSL_read(ssl, &byte, 1);
            }
            SSL_free(ssl);
            ERR_clear_error();
        }
    }
    close(fd);
    atomic_store(&r->done, true);
    return NULL;
}

/* A plain OpenSSL client context with the named identity, at most max_version. */
static SSL_CTX *raw_ctx(const char *name, int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    char file[128];
    snprintf(file, sizeof file, "%s/%s.pem", cert_dir, name);
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, file, SSL_FILETYPE_PEM), 1);
    snprintf(file, sizeof file, "%s/%s.key", cert_dir, name);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, file, SSL_FILETYPE_PEM), 1);
    return ctx;
}

static void raw_refusal(SSL_CTX *client, int status, const char *reason)
{
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct pair p;
    pair_open(&p, n1, NULL, NULL);
    struct raw_client r = {.port = p.port, .ctx = client};
    assert_int_equal(pthread_create(&r.thread, NULL, raw_client_main, &r), 0);
    assert_true(run_until(&p.loop, pair_handshakes_done, &p, WAIT_MS));
    assert_int_equal(p.server.handshake_status, status);
    if (strstr(p.server.error, reason) == NULL) {
        fail_msg("server error \"%s\" lacks \"%s\"", p.server.error, reason);
    }
    assert_int_equal(tandem_tls_read_start(p.server.tls, end_read_cb), TANDEM_STATE);
    assert_int_equal(ERR_peek_error(), 0); /* the module left OpenSSL's queue empty */
    end_close(&p.server);
    assert_int_equal(pthread_join(r.thread, NULL), 0);
    assert_true(atomic_load(&r.done));
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    SSL_CTX_free(client);
}

static void test_tls12_client_refused(void **state)
{
    (void)state;
    raw_refusal(raw_ctx("node-2", TLS1_2_VERSION), TANDEM_PROTOCOL, "only TLS 1.3");
}

static void test_expired_client_refused(void **state)
{
    (void)state;
    raw_refusal(raw_ctx("expired", TLS1_3_VERSION), TANDEM_CRYPTO, "certificate has expired");
}

/* The server's own judgement of a client from another CA (this client judges nobody). */
static void test_other_ca_client_refused_by_server(void **state)
{
    (void)state;
    raw_refusal(raw_ctx("other", TLS1_3_VERSION), TANDEM_CRYPTO,
                "certificate verify failed: unable to get local issuer certificate");
}

static void test_plaintext_refused(void **state)
{
    (void)state;
    raw_refusal(NULL, TANDEM_PROTOCOL, "TLS handshake: ");
}

/* ---- the end of a stream ---- */

static void test_close_notify_and_tcp_eof(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *n2 = ctx_of("node-2", "ca.pem", NULL);
    struct pair p;
    pair_open_ok(&p, n1, n2, NULL);
    assert_int_equal(tandem_tls_read_start(p.server.tls, end_read_cb), TANDEM_OK);
    end_write(&p.client, "last", 4);
    tandem_tls_close_notify(p.client.tls);
    assert_true(run_until(&p.loop, pair_server_has, &p, WAIT_MS));
    (void)run_until(&p.loop, never, NULL, 20);
    assert_int_equal(p.server.rx_len, 4);
    assert_int_equal(p.server.rx_end, UV_EOF);
    pair_close(&p);

    /* TCP EOF without close_notify is an end too. */
    pair_open_ok(&p, n1, n2, NULL);
    assert_int_equal(tandem_tls_read_start(p.server.tls, end_read_cb), TANDEM_OK);
    uv_shutdown_t shutdown;
    assert_int_equal(uv_shutdown(&shutdown, (uv_stream_t *)&p.client.tcp, NULL), 0);
    assert_true(run_until(&p.loop, pair_server_has, &p, WAIT_MS));
    assert_int_equal(p.server.rx_len, 0);
    assert_int_equal(p.server.rx_end, UV_EOF);
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(n2);
}

static bool end_closed(void *arg)
{
    return ((struct end *)arg)->closed;
}

/* Closing tcp with writes queued runs every write callback, the queued ones with TANDEM_NET,
 * before the close callback frees the session. */
static void test_close_mid_write(void **state)
{
    (void)state;
    struct tandem_tls_ctx *n1 = ctx_of("node-1", "ca.pem", NULL);
    struct tandem_tls_ctx *n2 = ctx_of("node-2", "ca.pem", NULL);
    struct pair p;
    pair_open_ok(&p, n1, n2, NULL);
    char *chunk = calloc(1, CLOSE_WRITE_BYTES);
    assert_non_null(chunk);
    for (unsigned i = 0; i < CLOSE_WRITES; i++) {
        end_write(&p.client, chunk, CLOSE_WRITE_BYTES);
    }
    free(chunk);
    assert_true(tandem_tls_write_queue_bytes(p.client.tls) > 0);
    end_close(&p.client);
    uv_buf_t late = uv_buf_init("x", 1); /* a write on a closing session is refused */
    assert_int_equal(tandem_tls_write(p.client.tls, &late, 1, NULL, end_write_cb), TANDEM_NET);
    assert_true(run_until(&p.loop, end_closed, &p.client, WAIT_MS));
    assert_int_equal(p.client.writes_done, CLOSE_WRITES);
    assert_true(p.client.writes_net > 0);
    assert_int_equal(p.client.writes_ok + p.client.writes_net, CLOSE_WRITES);
    pair_close(&p);
    tandem_tls_ctx_free(n1);
    tandem_tls_ctx_free(n2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_data_and_identities),
        cmocka_unit_test(test_bulk_with_backpressure),
        cmocka_unit_test(test_user_certificate_peer),
        cmocka_unit_test(test_other_ca_refused),
        cmocka_unit_test(test_user_certificate_as_server_refused),
        cmocka_unit_test(test_expect_node_mismatch_refused),
        cmocka_unit_test(test_revoked_refused_with_crl),
        cmocka_unit_test(test_bad_cn_refused),
        cmocka_unit_test(test_tls12_client_refused),
        cmocka_unit_test(test_expired_client_refused),
        cmocka_unit_test(test_other_ca_client_refused_by_server),
        cmocka_unit_test(test_plaintext_refused),
        cmocka_unit_test(test_close_notify_and_tcp_eof),
        cmocka_unit_test(test_close_mid_write),
    };
    return cmocka_run_group_tests(tests, certs_setup, certs_teardown);
}
