/* Fuzz target: the raft transport's inbound side (consensus/transport.c, raft_relay.c,
 * frame_check.c) as a peer reaches it over TCP on 127.0.0.1: the hello's decoding and judging,
 * the ack, and for an accepted connection the relay that checks every frame before raft reads
 * it (raft's end is drained here, as raft_uv would). Input: one control byte (bit 0: a valid
 * hello goes first; the rest: the size of the peer's writes, 0 = all at once), then the bytes. */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "consensus/member.h"
#include "consensus/transport.h"
#include "fuzz.h"
#include "http_client.h"

#define HELLO_SIZE 400
#define CLUSTER    "prod"
#define PEER       "raw-1|west|127.0.0.1:1|http://127.0.0.1:1"

static uv_loop_t loop;
static uv_timer_t tick;
static struct raft_uv_transport transport;
static int port;
static uv_stream_t *accepted; /* raft's end of the accepted connection, being drained */
static char sink[4096];

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* A version 2 hello of cluster "prod" at epoch 1 from raft id 42 (transport.c's layout). */
static void hello_build(uint8_t *out)
{
    memset(out, 0, HELLO_SIZE);
    memcpy(out, "TNDMHELO", 8);
    put_le(out + 8, 2, 4);
    put_le(out + 12, strlen(PEER), 4);
    put_le(out + 16, 1, 8);
    put_le(out + 24, 42, 8);
    memcpy(out + 40, CLUSTER, strlen(CLUSTER));
    memcpy(out + 104, PEER, strlen(PEER));
}

static void accepted_close_cb(uv_handle_t *handle)
{
    raft_free(handle);
    accepted = NULL;
}

static void sink_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(sink, sizeof sink);
}

static void sink_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0 && !uv_is_closing((uv_handle_t *)stream)) {
        uv_close((uv_handle_t *)stream, accepted_close_cb);
    }
}

static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
    (void)t;
    (void)id;
    (void)address;
    if (accepted != NULL && !uv_is_closing((uv_handle_t *)accepted)) {
        uv_close((uv_handle_t *)accepted, NULL); /* not reached: one connection at a time */
    }
    accepted = stream;
    uv_read_start(stream, sink_alloc_cb, sink_read_cb);
}

/* An epoch from a hello is never learnt: every input meets the same, unfenced transport. */
static bool member_never(void *data, raft_id id, const char *address)
{
    (void)data;
    (void)id;
    (void)address;
    return false;
}

static int free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        abort();
    }
    close(fd);
    return ntohs(addr.sin_port);
}

static void transport_start_once(void)
{
    if (port != 0) {
        return;
    }
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    port = free_port();
    snprintf(address, sizeof address, "east-1|east|127.0.0.1:%d|http://127.0.0.1:1", port);
    struct tandem_transport_config config = {
        .cluster_id = CLUSTER,
        .epoch = 1,
        .handshake_timeout_ms = 2000,
        .member = member_never,
        .frame_limits = {.append_bytes_max = 1u << 20, .snapshot_bytes_max = 1u << 20}};
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0 ||
        tandem_transport_init(&transport, &loop, &config) != 0 ||
        transport.init(&transport, tandem_member_id("east-1"), address) != 0 ||
        transport.listen(&transport, accept_cb) != 0) {
        fprintf(stderr, "fuzz_transport: cannot start the transport\n");
        abort();
    }
}

static bool exchange_done(void *arg)
{
    return fuzz_client_closed(arg) && accepted == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_client client;
    static uint8_t stream[HELLO_SIZE + (1u << 20)];
    if (size == 0 || size - 1 > sizeof stream - HELLO_SIZE) {
        return 0;
    }
    transport_start_once();
    size_t len = 0;
    if ((data[0] & 1) != 0) {
        hello_build(stream);
        len = HELLO_SIZE;
    }
    memcpy(stream + len, data + 1, size - 1);
    len += size - 1;
    fuzz_client_start(&client, &loop, port, stream, len, data[0] >> 1);
    fuzz_run_until(&loop, &tick, exchange_done, &client, "the raft handshake");
    return 0;
}
