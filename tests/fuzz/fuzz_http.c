/* Fuzz target: the HTTP server (node/http/server.c, head.c, http-parser) as a client reaches it:
 * the input is a chunk size (one byte) and the bytes of one connection (http_client.h), read by a
 * real server on 127.0.0.1 whose handler looks up headers and query values, percent-decodes the
 * path, and answers at once, later and out of order (/later...), with an error (/error...) or as a
 * stream
 * (/stream...). Small limits make the 413, 431 and backpressure paths reachable. */
#include <string.h>

#include "fuzz.h"
#include "http_client.h"
#include "node/http/server.h"

#define LATER_MAX 64

static uv_loop_t loop;
static uv_timer_t tick;
static uv_check_t answer_check;
static struct tandem_http_server server;
static int port;
static struct tandem_http_request *later[LATER_MAX];
static unsigned later_count;

static void stream_close_cb(struct tandem_http_stream *stream, void *data)
{
    (void)stream;
    (void)data;
}

static void answer(struct tandem_http_request *r)
{
    char text[256];
    size_t len = 0;
    int found = tandem_http_query_get(r->query, "q", text, sizeof text);
    const char *user = tandem_http_request_header(r, "X-Tandem-User");
    if (tandem_http_path_decode(r->path, strlen(r->path), text, sizeof text, &len) != 0) {
        tandem_http_respond_error(r, 400, "malformed path %s", r->path);
    } else if (strncmp(r->path, "/error", 6) == 0) {
        tandem_http_respond_error(r, 404, "no %s for %s (%d)", text, user ? user : "-", found);
    } else {
        tandem_http_respond(r, 200, "application/octet-stream", "X-Fuzz: 1\r\n", r->body,
                            r->body_len);
    }
}

static void handler(struct tandem_http_server *s, struct tandem_http_request *r)
{
    (void)s;
    struct tandem_http_stream *stream;
    if (strncmp(r->path, "/later", 6) == 0 && later_count < LATER_MAX) {
        later[later_count++] = r;
    } else if (strncmp(r->path, "/stream", 7) == 0 &&
               tandem_http_stream_open(r, 200, "text/event-stream", NULL, stream_close_cb, NULL,
                                       &stream) == 0) {
        tandem_http_stream_write(stream, "data: x\n\n", 9);
        tandem_http_stream_close(stream);
    } else {
        answer(r);
    }
}

/* Held requests are answered after the poll phase, newest first: out of request order. */
static void answer_later_cb(uv_check_t *check)
{
    (void)check;
    while (later_count > 0) {
        answer(later[--later_count]);
    }
}

static void server_start_once(void)
{
    if (port != 0) {
        return;
    }
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_http_limits limits;
    tandem_http_limits_default(&limits);
    limits.body_bytes_max = TANDEM_HTTP_BODY_BYTES_MIN;
    limits.header_bytes_max = 2 * TANDEM_HTTP_HEADER_BYTES_MIN;
    limits.pipeline_depth_max = 4;
    limits.idle_timeout_ms = 2000;
    limits.header_timeout_ms = 2000;
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0 ||
        uv_check_init(&loop, &answer_check) != 0 ||
        tandem_http_server_init(&server, &loop, &limits, handler, NULL) != 0 ||
        tandem_http_server_listen(&server, "127.0.0.1", 0, errmsg) != 0) {
        fprintf(stderr, "fuzz_http: cannot start the server\n");
        abort();
    }
    uv_check_start(&answer_check, answer_later_cb);
    port = tandem_http_server_port(&server);
}

static bool exchange_done(void *arg)
{
    return fuzz_client_closed(arg) && later_count == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_client client;
    server_start_once();
    if (size == 0) {
        return 0;
    }
    /* The first byte: the size of the client's writes (0: all at once). */
    fuzz_client_start(&client, &loop, port, data + 1, size - 1, data[0]);
    fuzz_run_until(&loop, &tick, exchange_done, &client, "the HTTP exchange");
    return 0;
}
