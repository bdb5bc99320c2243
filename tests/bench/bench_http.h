/* tandem-bench's HTTP vocabulary: endpoints, the request bytes each target (tandem's KV API or
 * etcd's v3 JSON gateway) expects, and how a response counts. No I/O here. */
#ifndef TANDEM_BENCH_HTTP_H
#define TANDEM_BENCH_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#define TANDEM_BENCH_URL_BYTES_MAX   256     /* one endpoint URL */
#define TANDEM_BENCH_VALUE_BYTES_MAX 1048576 /* --value-size ceiling: 1 MiB */
/* Request line, headers and the JSON around an etcd key: keys are at most 26 bytes, so 512 is
 * far from tight even with the longest host name a URL may hold. */
#define TANDEM_BENCH_HEAD_BYTES_MAX (512 + TANDEM_BENCH_URL_BYTES_MAX)
#define TANDEM_BENCH_REQUEST_BUFS   3 /* head, value, JSON tail */

enum tandem_bench_target { TANDEM_BENCH_TARGET_TANDEM, TANDEM_BENCH_TARGET_ETCD };
enum tandem_bench_op { TANDEM_BENCH_OP_WRITE, TANDEM_BENCH_OP_READ };

/* How an operation ended; every kind but OK is an error kind of the report. */
#define TANDEM_BENCH_OUTCOMES(X)                                                                   \
    X(OK, "ok")                                                                                    \
    X(CONNECT, "connect")     /* could not connect (or TLS handshake failed) */                    \
    X(IO, "io")               /* the connection broke while the request was out */                 \
    X(TIMEOUT, "timeout")     /* no whole response within --timeout-ms */                          \
    X(HTTP_4XX, "http_4xx")   /* 4xx other than a read's 404 */                                    \
    X(HTTP_5XX, "http_5xx")   /* 5xx, e.g. 503 no leader */                                        \
    X(NOT_FOUND, "not_found") /* a read found no such key (tandem 404, etcd no kvs) */             \
    X(PARSE, "parse")         /* malformed response, or a status not 200, 4xx or 5xx */            \
    X(DROPPED, "dropped")     /* open loop: the backlog of a connection overflowed */

enum tandem_bench_outcome {
#define TANDEM_BENCH_OUTCOME_ENUM(name, text) TANDEM_BENCH_OUTCOME_##name,
    TANDEM_BENCH_OUTCOMES(TANDEM_BENCH_OUTCOME_ENUM)
#undef TANDEM_BENCH_OUTCOME_ENUM
        TANDEM_BENCH_OUTCOME_COUNT
};

const char *tandem_bench_outcome_name(enum tandem_bench_outcome outcome);

struct tandem_bench_endpoint {
    char url[TANDEM_BENCH_URL_BYTES_MAX];
    char host_header[TANDEM_BENCH_URL_BYTES_MAX]; /* host:port as given, for Host: */
    char host[TANDEM_BENCH_URL_BYTES_MAX];        /* for TLS server name checks */
    int tls;                                      /* https:// */
    struct sockaddr_storage addr;                 /* resolved once, IPv4 preferred */
};

/* url: http://HOST:PORT or https://HOST:PORT (an optional trailing "/"). Resolves HOST now
 * (blocking). Returns 0, or -1 with errmsg filled. */
int tandem_bench_endpoint_parse(struct tandem_bench_endpoint *e, const char *url, char errmsg[256]);

/* The bytes every request of a run shares, built once so that no request allocates. */
struct tandem_bench_payload {
    enum tandem_bench_target target;
    int local_reads; /* tandem ?consistency=local, etcd serializable */
    char *value;     /* owned: value_len printable bytes */
    size_t value_len;
    char *value_b64; /* owned: base64 of value (etcd) */
    size_t value_b64_len;
};

/* Returns 0, or -1 with errmsg filled (nothing to free then). */
int tandem_bench_payload_init(struct tandem_bench_payload *p, enum tandem_bench_target target,
                              size_t value_len, int local_reads, uint64_t seed, char errmsg[256]);
void tandem_bench_payload_free(struct tandem_bench_payload *p);

/* One serialised request: bufs point into head and into the payload (borrowed, read-only). */
struct tandem_bench_request {
    char head[TANDEM_BENCH_HEAD_BYTES_MAX];
    uv_buf_t bufs[TANDEM_BENCH_REQUEST_BUFS];
    unsigned nbufs;
    enum tandem_bench_op op;
};

/* Fills req with op on key "bench-<key_index>". Returns 0, or UV_E2BIG when head would not fit
 * (a host name near the URL bound). */
int tandem_bench_request_format(struct tandem_bench_request *req,
                                const struct tandem_bench_payload *p,
                                const struct tandem_bench_endpoint *e, enum tandem_bench_op op,
                                uint64_t key_index);

/* Bytes of a response body kept for classification and error samples. */
#define TANDEM_BENCH_BODY_PREFIX_BYTES 1024

/* body_prefix: the first bytes of the body (at most TANDEM_BENCH_BODY_PREFIX_BYTES). */
enum tandem_bench_outcome tandem_bench_response_classify(enum tandem_bench_target target,
                                                         enum tandem_bench_op op, int status,
                                                         const char *body_prefix, size_t len);

#endif
