/* The fuzzing HTTP client the HTTP and API targets share: it connects to a server on
 * 127.0.0.1 on the same loop, writes the input in chunks that the server reads one at a time
 * (each chunk written after a poll phase: the server's read came between), half-closes, and
 * reads the answers until the server closes (echoed on stderr when TANDEM_FUZZ_ECHO is set). */
#ifndef TANDEM_TESTS_FUZZ_HTTP_CLIENT_H
#define TANDEM_TESTS_FUZZ_HTTP_CLIENT_H

#include <string.h>

#include "fuzz.h"

struct fuzz_client {
    uv_tcp_t tcp;
    uv_check_t feeder;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    const uint8_t *data; /* borrowed: the input */
    size_t size, sent, chunk;
    size_t received;
    char in[4096];
    bool connected, writing, shut, eof;
    unsigned handles_open;
};

static void fuzz_client_close_cb(uv_handle_t *handle)
{
    struct fuzz_client *c = handle->data;
    c->handles_open--;
}

static void fuzz_client_finish(struct fuzz_client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, fuzz_client_close_cb);
        uv_close((uv_handle_t *)&c->feeder, fuzz_client_close_cb);
    }
}

static void fuzz_client_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct fuzz_client *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->in, sizeof c->in);
}

static void fuzz_client_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct fuzz_client *c = stream->data;
    if (nread > 0) {
        c->received += (size_t)nread;
        if (getenv("TANDEM_FUZZ_ECHO") != NULL) { /* to see what a seed gets back */
            fwrite(buf->base, 1, (size_t)nread, stderr);
        }
    } else if (nread < 0) {
        c->eof = true; /* EOF or a reset: the server is done with us */
        fuzz_client_finish(c);
    }
}

static void fuzz_client_write_cb(uv_write_t *req, int status)
{
    struct fuzz_client *c = req->data;
    c->writing = false;
    if (status != 0) {
        fuzz_client_finish(c); /* the server closed first */
    }
}

static void fuzz_client_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* After each poll phase: the next chunk, or the half-close once all is out. */
static void fuzz_client_feed_cb(uv_check_t *check)
{
    struct fuzz_client *c = check->data;
    if (!c->connected || c->writing || c->shut || uv_is_closing((uv_handle_t *)&c->tcp)) {
        return;
    }
    if (c->sent < c->size) {
        size_t n = c->size - c->sent < c->chunk ? c->size - c->sent : c->chunk;
        uv_buf_t buf = uv_buf_init((char *)c->data + c->sent, (unsigned)n);
        c->write_req.data = c;
        if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, fuzz_client_write_cb) != 0) {
            fuzz_client_finish(c);
            return;
        }
        c->writing = true;
        c->sent += n;
        return;
    }
    c->shut = true;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, fuzz_client_shutdown_cb) != 0) {
        fuzz_client_finish(c);
    }
}

static void fuzz_client_connect_cb(uv_connect_t *req, int status)
{
    struct fuzz_client *c = req->data;
    if (status != 0) {
        fprintf(stderr, "fuzz: cannot connect to the server: %s\n", uv_strerror(status));
        abort();
    }
    c->connected = true;
    uv_read_start((uv_stream_t *)&c->tcp, fuzz_client_alloc_cb, fuzz_client_read_cb);
}

/* Starts sending data to 127.0.0.1:port in writes of chunk bytes (0: all at once). */
static void fuzz_client_start(struct fuzz_client *c, uv_loop_t *loop, int port, const uint8_t *data,
                              size_t size, size_t chunk)
{
    struct sockaddr_in addr;
    memset(c, 0, sizeof *c);
    c->chunk = chunk != 0 ? chunk : SIZE_MAX;
    c->data = data;
    c->size = size;
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (uv_tcp_init(loop, &c->tcp) != 0 || uv_check_init(loop, &c->feeder) != 0) {
        abort();
    }
    c->tcp.data = c->feeder.data = c->connect_req.data = c;
    c->handles_open = 2;
    uv_tcp_nodelay(&c->tcp, 1); /* small writes go out at once, as a real peer's would */
    uv_check_start(&c->feeder, fuzz_client_feed_cb);
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&addr,
                       fuzz_client_connect_cb) != 0) {
        abort();
    }
}

static bool fuzz_client_closed(void *arg)
{
    return ((struct fuzz_client *)arg)->handles_open == 0;
}

#endif
