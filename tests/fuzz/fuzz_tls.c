/* Fuzz target: the TLS stream module (consensus/tls.c) in the server role, as a peer reaches
 * it over TCP on 127.0.0.1. The server echoes what it decrypts. Input: one control byte, then
 * the bytes. Control byte mod 3: 0 = the bytes are the peer's raw records from the first byte
 * (a ClientHello or anything else); 1 = a real client (tandem_tls, a node certificate)
 * handshakes, then sends the bytes as plaintext; 2 = the client handshakes, then writes the
 * bytes raw onto the TCP stream, behind valid records. Control byte / 3: the size of the raw
 * writes (0 = all at once). A CA and a node certificate are made once with the openssl CLI. */
#include <string.h>

#include "consensus/tls.h"
#include "fuzz.h"
#include "http_client.h"
#include "storage/error.h"

static uv_loop_t loop;
static uv_timer_t tick;
static uv_tcp_t listener;
static int port;
static struct tandem_tls_ctx *ctx;
static unsigned server_conns; /* accepted and not yet closed */

struct server_conn {
    uv_tcp_t tcp;
    struct tandem_tls *tls;
};

static const char cert_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "printf '%s\\n' '[ node ]' 'basicConstraints = critical,CA:FALSE' \\\n"
    "  'keyUsage = critical,digitalSignature' 'extendedKeyUsage = serverAuth,clientAuth' \\\n"
    "  'subjectAltName = DNS:node-1,IP:127.0.0.1' > ext.cnf\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1; }\n"
    "key ca.key\n"
    "openssl req -new -x509 -key ca.key -out ca.pem -subj /CN=fuzz-ca -days 3650\n"
    "key node.key\n"
    "openssl req -new -key node.key -subj /CN=node-1 -out node.csr\n"
    "openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \\\n"
    "  -extfile ext.cnf -extensions node -out node.pem\n";

/* ---- the server: handshake, then echo ---- */

static void server_close_cb(uv_handle_t *handle)
{
    struct server_conn *c = handle->data;
    tandem_tls_free(c->tls);
    free(c);
    server_conns--;
}

static void server_close(struct server_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, server_close_cb);
    }
}

static void server_write_cb(void *data, void *write_data, int status)
{
    (void)write_data;
    if (status != 0) {
        server_close(data);
    }
}

static void server_read_cb(void *data, ssize_t n, const char *buf)
{
    struct server_conn *c = data;
    if (n < 0) {
        tandem_tls_close_notify(c->tls);
        server_close(c);
        return;
    }
    uv_buf_t echo = uv_buf_init((char *)buf, (unsigned)n);
    if (tandem_tls_write(c->tls, &echo, 1, NULL, server_write_cb) != TANDEM_OK) {
        server_close(c);
    }
}

static void server_handshake_cb(void *data, int status)
{
    struct server_conn *c = data;
    struct tandem_tls_peer peer;
    if (status != 0) {
        server_close(c);
        return;
    }
    tandem_tls_peer(c->tls, &peer);
    if (peer.kind != TANDEM_TLS_PEER_NODE || !tandem_tls_peer_is_node(c->tls, "node-1")) {
        fprintf(stderr, "fuzz_tls: the handshake passed without the client's node certificate\n");
        abort();
    }
    if (tandem_tls_read_start(c->tls, server_read_cb) != TANDEM_OK) {
        server_close(c);
    }
}

static void connection_cb(uv_stream_t *server, int status)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct server_conn *c = calloc(1, sizeof *c);
    if (status != 0 || c == NULL || uv_tcp_init(&loop, &c->tcp) != 0) {
        abort();
    }
    c->tcp.data = c;
    server_conns++;
    uv_tcp_nodelay(&c->tcp, 1); /* no delayed-ACK stalls between handshake flights */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        tandem_tls_new(ctx, &c->tcp, TANDEM_TLS_SERVER, NULL, c, &c->tls, errmsg) != TANDEM_OK ||
        tandem_tls_handshake(c->tls, server_handshake_cb) != TANDEM_OK) {
        server_close(c);
    }
}

/* ---- a TLS client: handshake, then plaintext or raw bytes ---- */

struct tls_client {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct tandem_tls *tls;
    const uint8_t *data; /* borrowed */
    size_t size;
    int mode;
    bool closed;
};

static void client_close_cb(uv_handle_t *handle)
{
    struct tls_client *c = handle->data;
    tandem_tls_free(c->tls);
    c->tls = NULL;
    c->closed = true;
}

static void client_close(struct tls_client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, client_close_cb);
    }
}

static void client_read_cb(void *data, ssize_t n, const char *buf)
{
    (void)buf;
    if (n < 0) {
        client_close(data); /* the server is done with us */
    }
}

static void client_write_cb(void *data, void *write_data, int status)
{
    (void)write_data;
    struct tls_client *c = data;
    if (status != 0) {
        client_close(c);
    }
}

static void client_raw_write_cb(uv_write_t *req, int status)
{
    struct tls_client *c = req->data;
    if (status != 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, NULL) != 0) {
        client_close(c);
    }
}

/* Mode 1 sends the bytes through TLS, then close_notify; mode 2 writes them raw. */
static void client_handshake_cb(void *data, int status)
{
    struct tls_client *c = data;
    uv_buf_t buf = uv_buf_init((char *)c->data, (unsigned)c->size);
    if (status != 0) {
        fprintf(stderr, "fuzz_tls: the client's handshake failed: %s\n", tandem_tls_error(c->tls));
        abort();
    }
    if (tandem_tls_read_start(c->tls, client_read_cb) != TANDEM_OK) {
        client_close(c);
    } else if (c->mode == 1) {
        if (c->size > 0 && tandem_tls_write(c->tls, &buf, 1, NULL, client_write_cb) != TANDEM_OK) {
            client_close(c);
            return;
        }
        tandem_tls_close_notify(c->tls);
    } else {
        c->write_req.data = c;
        if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, client_raw_write_cb) != 0) {
            client_close(c);
        }
    }
}

static void client_connect_cb(uv_connect_t *req, int status)
{
    struct tls_client *c = req->data;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (status != 0 ||
        tandem_tls_new(ctx, &c->tcp, TANDEM_TLS_CLIENT, "node-1", c, &c->tls, errmsg) !=
            TANDEM_OK ||
        tandem_tls_handshake(c->tls, client_handshake_cb) != TANDEM_OK) {
        fprintf(stderr, "fuzz_tls: cannot start the client\n");
        abort();
    }
}

static void client_start(struct tls_client *c, const uint8_t *data, size_t size, int mode)
{
    struct sockaddr_in addr;
    memset(c, 0, sizeof *c);
    c->data = data;
    c->size = size;
    c->mode = mode;
    uv_ip4_addr("127.0.0.1", port, &addr);
    c->tcp.data = c->connect_req.data = c;
    if (uv_tcp_init(&loop, &c->tcp) != 0 || uv_tcp_nodelay(&c->tcp, 1) != 0 ||
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&addr,
                       client_connect_cb) != 0) {
        abort();
    }
}

/* ---- set-up and the exchange ---- */

static void start_once(void)
{
    if (port != 0) {
        return;
    }
    char dir[192], path[3][256], command[512], errmsg[TANDEM_ERRMSG_SIZE];
    snprintf(dir, sizeof dir, "%s/tls", fuzz_tmp_dir());
    snprintf(path[0], sizeof path[0], "%s/make.sh", dir);
    snprintf(command, sizeof command, "mkdir -p %s", dir);
    FILE *f = system(command) == 0 ? fopen(path[0], "w") : NULL;
    if (f == NULL || fputs(cert_script, f) < 0 || fclose(f) != 0) {
        abort();
    }
    snprintf(command, sizeof command, "sh %s %s >%s/make.log 2>&1", path[0], dir, dir);
    if (system(command) != 0) {
        fprintf(stderr, "fuzz_tls: making certificates failed (see %s/make.log)\n", dir);
        abort();
    }
    snprintf(path[0], sizeof path[0], "%s/ca.pem", dir);
    snprintf(path[1], sizeof path[1], "%s/node.pem", dir);
    snprintf(path[2], sizeof path[2], "%s/node.key", dir);
    struct tandem_tls_files files = {.ca = path[0], .cert = path[1], .key = path[2]};
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (tandem_tls_ctx_new(&files, &ctx, errmsg) != TANDEM_OK) {
        fprintf(stderr, "fuzz_tls: %s\n", errmsg);
        abort();
    }
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0 ||
        uv_tcp_init(&loop, &listener) != 0 ||
        uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&listener, 128, connection_cb) != 0 ||
        uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len) != 0) {
        abort();
    }
    port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static bool raw_done(void *arg)
{
    return fuzz_client_closed(arg) && server_conns == 0;
}

static bool client_done(void *arg)
{
    return ((struct tls_client *)arg)->closed && server_conns == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_client raw;
    static struct tls_client client;
    if (size == 0) {
        return 0;
    }
    start_once();
    int mode = data[0] % 3;
    if (mode == 0) {
        fuzz_client_start(&raw, &loop, port, data + 1, size - 1, data[0] / 3);
        fuzz_run_until(&loop, &tick, raw_done, &raw, "the raw TLS exchange");
    } else {
        client_start(&client, data + 1, size - 1, mode);
        fuzz_run_until(&loop, &tick, client_done, &client, "the TLS client's exchange");
    }
    return 0;
}
