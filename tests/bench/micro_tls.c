/* micro_tls: what the TLS stream module (consensus/tls.h) costs on one loop and one core - N
 * loopback connections, each a client sending a request of --size bytes and a server echoing
 * it, closed loop, for --seconds; prints round trips per second and handshakes per second.
 * Certificates come from deploy/certs.sh in a temporary directory.
 *
 *   micro_tls [--connections N] [--size BYTES] [--seconds S] [--plain]
 *
 * --plain runs the same exchange over bare TCP, for the difference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "consensus/tls.h"
#include "storage/error.h"

#define CONNECTIONS_MAX 4096
#define SIZE_MAX_BYTES  (1u << 20)

struct side {
    uv_tcp_t tcp;
    struct tandem_tls *tls; /* NULL with --plain */
    struct link *link;
    size_t got; /* bytes of the current message received */
};

/* One client/server pair. */
struct link {
    struct side client;
    struct side server;
    uv_connect_t connect;
    unsigned ready; /* handshakes done (2 = both) */
};

static struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    struct sockaddr_in addr;
    struct tandem_tls_ctx *ctx;
    struct link *links;
    unsigned connections, accepted, ready;
    size_t size;
    char *message;
    int plain, running;
    uint64_t round_trips;
    char read_buf[65536];
} bench;

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "micro_tls: %s: %s\n", what, detail);
    exit(1);
}

static void send_message(struct side *s);

static void tls_written_cb(void *data, void *write_data, int status)
{
    (void)data;
    (void)write_data;
    if (status != TANDEM_OK && bench.running) {
        fail("write", tandem_strerror(status));
    }
}

static void tcp_written_cb(uv_write_t *req, int status)
{
    free(req);
    if (status != 0 && bench.running) {
        fail("write", uv_strerror(status));
    }
}

static void send_message(struct side *s)
{
    uv_buf_t buf = uv_buf_init(bench.message, (unsigned)bench.size);
    if (s->tls != NULL) {
        if (tandem_tls_write(s->tls, &buf, 1, NULL, tls_written_cb) != TANDEM_OK) {
            fail("write", tandem_tls_error(s->tls));
        }
        return;
    }
    uv_write_t *req = malloc(sizeof *req);
    if (req == NULL || uv_write(req, (uv_stream_t *)&s->tcp, &buf, 1, tcp_written_cb) != 0) {
        fail("write", "uv_write");
    }
}

/* A whole message arrived at s: the server echoes it, the client counts and sends the next. */
static void received(struct side *s, ssize_t n)
{
    if (n < 0) {
        if (bench.running) {
            fail("read", uv_strerror((int)n));
        }
        return;
    }
    s->got += (size_t)n;
    while (s->got >= bench.size && bench.running) {
        s->got -= bench.size;
        if (s == &s->link->client) {
            bench.round_trips++;
        }
        send_message(s);
    }
}

static void tls_read_cb(void *data, ssize_t n, const char *buf)
{
    (void)buf;
    received(data, n);
}

static void tcp_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(bench.read_buf, sizeof bench.read_buf);
}

static void tcp_read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n != 0) {
        received(stream->data, n);
    }
}

static void side_ready(struct side *s)
{
    int rc = s->tls != NULL ? tandem_tls_read_start(s->tls, tls_read_cb)
                            : uv_read_start((uv_stream_t *)&s->tcp, tcp_alloc_cb, tcp_read_cb);
    if (rc != 0) {
        fail("read_start", s->tls != NULL ? tandem_tls_error(s->tls) : uv_strerror(rc));
    }
    bench.ready++;
}

static void handshake_cb(void *data, int status)
{
    struct side *s = data;
    if (status != TANDEM_OK) {
        fail("handshake", tandem_tls_error(s->tls));
    }
    side_ready(s);
}

static void side_start(struct side *s, enum tandem_tls_role role)
{
    s->tcp.data = s;
    uv_tcp_nodelay(&s->tcp, 1);
    if (bench.plain) {
        side_ready(s);
        return;
    }
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_tls_new(bench.ctx, &s->tcp, role, NULL, s, &s->tls, errmsg) != TANDEM_OK) {
        fail("tls_new", errmsg);
    }
    if (tandem_tls_handshake(s->tls, handshake_cb) != TANDEM_OK) {
        fail("handshake", tandem_tls_error(s->tls));
    }
}

static void connection_cb(uv_stream_t *listener, int status)
{
    if (status != 0 || bench.accepted == bench.connections) {
        fail("accept", uv_strerror(status));
    }
    struct side *s = &bench.links[bench.accepted++].server;
    uv_tcp_init(&bench.loop, &s->tcp);
    if (uv_accept(listener, (uv_stream_t *)&s->tcp) != 0) {
        fail("accept", "uv_accept");
    }
    side_start(s, TANDEM_TLS_SERVER);
}

static void connect_cb(uv_connect_t *req, int status)
{
    if (status != 0) {
        fail("connect", uv_strerror(status));
    }
    side_start(req->data, TANDEM_TLS_CLIENT);
}

static void close_cb(uv_handle_t *handle)
{
    struct side *s = handle->data;
    tandem_tls_free(s->tls);
    s->tls = NULL;
}

static void run_until_ready(void)
{
    while (bench.ready < 2 * bench.connections) {
        uv_run(&bench.loop, UV_RUN_ONCE);
    }
}

/* Makes certificates with deploy/certs.sh (found next to this program's source tree or in
 * TANDEM_SOURCE_DIR) in dir and loads the node's identity. */
static void load_identity(const char *dir)
{
    const char *source = getenv("TANDEM_SOURCE_DIR");
    char command[1024];
    snprintf(command, sizeof command, "bash %s/deploy/certs.sh %s --nodes node-1 >/dev/null",
             source != NULL ? source : ".", dir);
    if (system(command) != 0) {
        fail("certificates", "deploy/certs.sh failed (set TANDEM_SOURCE_DIR to the source tree)");
    }
    char ca[512], cert[512], key[512], errmsg[TANDEM_ERRMSG_SIZE];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/node-1.pem", dir);
    snprintf(key, sizeof key, "%s/node-1.key", dir);
    struct tandem_tls_files files = {.ca = ca, .cert = cert, .key = key};
    if (tandem_tls_ctx_new(&files, &bench.ctx, errmsg) != TANDEM_OK) {
        fail("loading certificates", errmsg);
    }
}

static void parse(int argc, char **argv, double *seconds)
{
    bench.connections = 64;
    bench.size = 256;
    *seconds = 3;
    for (int i = 1; i < argc; i++) {
        int has_value = i + 1 < argc;
        if (strcmp(argv[i], "--plain") == 0) {
            bench.plain = 1;
        } else if (strcmp(argv[i], "--connections") == 0 && has_value) {
            bench.connections = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--size") == 0 && has_value) {
            bench.size = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seconds") == 0 && has_value) {
            *seconds = strtod(argv[++i], NULL);
        } else {
            fail("usage", "micro_tls [--connections N] [--size BYTES] [--seconds S] [--plain]");
        }
    }
    if (bench.connections < 1 || bench.connections > CONNECTIONS_MAX || bench.size < 1 ||
        bench.size > SIZE_MAX_BYTES || !(*seconds > 0 && *seconds <= 600)) {
        fail("usage", "connections 1..4096, size 1..1048576, seconds (0, 600]");
    }
}

int main(int argc, char **argv)
{
    double seconds;
    parse(argc, argv, &seconds);
    char dir[] = "/tmp/micro-tls-XXXXXX";
    if (!bench.plain && mkdtemp(dir) == NULL) {
        fail("mkdtemp", dir);
    }
    if (!bench.plain) {
        load_identity(dir);
    }
    bench.links = calloc(bench.connections, sizeof *bench.links);
    bench.message = calloc(1, bench.size);
    if (bench.links == NULL || bench.message == NULL) {
        fail("memory", "calloc");
    }
    uv_loop_init(&bench.loop);
    uv_tcp_init(&bench.loop, &bench.listener);
    uv_ip4_addr("127.0.0.1", 0, &bench.addr);
    int len = sizeof bench.addr;
    if (uv_tcp_bind(&bench.listener, (struct sockaddr *)&bench.addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&bench.listener, 4096, connection_cb) != 0 ||
        uv_tcp_getsockname(&bench.listener, (struct sockaddr *)&bench.addr, &len) != 0) {
        fail("listen", "127.0.0.1");
    }
    uint64_t start = uv_hrtime();
    for (unsigned i = 0; i < bench.connections; i++) {
        struct link *l = &bench.links[i];
        l->client.link = l;
        l->server.link = l;
        l->connect.data = &l->client;
        uv_tcp_init(&bench.loop, &l->client.tcp);
        uv_tcp_connect(&l->connect, &l->client.tcp, (struct sockaddr *)&bench.addr, connect_cb);
    }
    bench.running = 1;
    run_until_ready();
    double setup_s = (double)(uv_hrtime() - start) / 1e9;
    for (unsigned i = 0; i < bench.connections; i++) {
        send_message(&bench.links[i].client);
    }
    start = uv_hrtime();
    uint64_t end = start + (uint64_t)(seconds * 1e9);
    while (uv_hrtime() < end) {
        uv_run(&bench.loop, UV_RUN_ONCE);
    }
    double measured_s = (double)(uv_hrtime() - start) / 1e9;
    bench.running = 0;
    printf("micro_tls %s: %u connections, %zu-byte messages: %.0f round trips/s (%.1f MB/s each "
           "way); %u connections set up in %.3f s\n",
           bench.plain ? "plain TCP" : "TLS 1.3", bench.connections, bench.size,
           (double)bench.round_trips / measured_s,
           (double)bench.round_trips * (double)bench.size / measured_s / 1e6, bench.connections,
           setup_s);
    for (unsigned i = 0; i < bench.connections; i++) {
        uv_close((uv_handle_t *)&bench.links[i].client.tcp, close_cb);
        uv_close((uv_handle_t *)&bench.links[i].server.tcp, close_cb);
    }
    uv_close((uv_handle_t *)&bench.listener, NULL);
    uv_run(&bench.loop, UV_RUN_DEFAULT);
    uv_loop_close(&bench.loop);
    tandem_tls_ctx_free(bench.ctx);
    free(bench.links);
    free(bench.message);
    if (!bench.plain) {
        snprintf(bench.read_buf, sizeof bench.read_buf, "rm -rf %s", dir);
        return system(bench.read_buf) == 0 ? 0 : 1;
    }
    return 0;
}
