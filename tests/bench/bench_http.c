/* tandem-bench's HTTP vocabulary: endpoint URLs, request bytes per target, response outcomes. */
#include "tests/bench/bench_http.h"

#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

static const char *const outcome_names[] = {
#define TANDEM_BENCH_OUTCOME_NAME(name, text) text,
    TANDEM_BENCH_OUTCOMES(TANDEM_BENCH_OUTCOME_NAME)
#undef TANDEM_BENCH_OUTCOME_NAME
};

const char *tandem_bench_outcome_name(enum tandem_bench_outcome outcome)
{
    return outcome < TANDEM_BENCH_OUTCOME_COUNT ? outcome_names[outcome] : "unknown";
}

/* Splits "host:port" or "[v6]:port" into host and port text. */
static int split_host_port(const char *hostport, char *host, size_t host_size, char *port,
                           size_t port_size)
{
    const char *colon;
    const char *host_start = hostport;
    size_t host_len;
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (close == NULL || close[1] != ':') {
            return -1;
        }
        host_start = hostport + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (colon == NULL) {
            return -1;
        }
        host_len = (size_t)(colon - hostport);
    }
    size_t port_len = strlen(colon + 1);
    if (host_len == 0 || host_len >= host_size || port_len == 0 || port_len >= port_size ||
        strspn(colon + 1, "0123456789") != port_len) {
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    memcpy(port, colon + 1, port_len + 1);
    return 0;
}

/* Resolves host:port to e->addr, preferring an IPv4 address as loopback services usually bind. */
static int resolve(struct tandem_bench_endpoint *e, const char *port, char errmsg[256])
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    int rv = getaddrinfo(e->host, port, &hints, &list);
    if (rv != 0) {
        snprintf(errmsg, 256, "%s: cannot resolve %s: %s", e->url, e->host, gai_strerror(rv));
        return -1;
    }
    const struct addrinfo *pick = list;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    memcpy(&e->addr, pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(list);
    return 0;
}

int tandem_bench_endpoint_parse(struct tandem_bench_endpoint *e, const char *url, char errmsg[256])
{
    memset(e, 0, sizeof *e);
    size_t len = strlen(url);
    if (len == 0 || len >= sizeof e->url) {
        snprintf(errmsg, 256, "endpoint URL empty or longer than %d bytes",
                 TANDEM_BENCH_URL_BYTES_MAX - 1);
        return -1;
    }
    memcpy(e->url, url, len + 1);
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
        e->tls = 1;
    } else {
        snprintf(errmsg, 256, "%s: endpoint must start with http:// or https://", url);
        return -1;
    }
    len = strlen(rest);
    if (len > 0 && rest[len - 1] == '/') {
        len--;
    }
    if (len == 0 || memchr(rest, '/', len) != NULL) {
        snprintf(errmsg, 256, "%s: want scheme://host:port with no path", url);
        return -1;
    }
    memcpy(e->host_header, rest, len);
    e->host_header[len] = '\0';
    char port[8];
    if (split_host_port(e->host_header, e->host, sizeof e->host, port, sizeof port) != 0 ||
        atoi(port) < 1 || atoi(port) > 65535) {
        snprintf(errmsg, 256, "%s: want scheme://host:port (port 1..65535)", url);
        return -1;
    }
    return resolve(e, port, errmsg);
}

static size_t base64_encode(const unsigned char *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t n = (uint32_t)in[i] << 16;
        if (i + 1 < len) {
            n |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < len) {
            n |= in[i + 2];
        }
        out[o++] = alphabet[(n >> 18) & 63];
        out[o++] = alphabet[(n >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(n >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[n & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

int tandem_bench_payload_init(struct tandem_bench_payload *p, enum tandem_bench_target target,
                              size_t value_len, int local_reads, uint64_t seed, char errmsg[256])
{
    static const char printable[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    memset(p, 0, sizeof *p);
    if (value_len > TANDEM_BENCH_VALUE_BYTES_MAX) {
        snprintf(errmsg, 256, "value size %zu above %d", value_len, TANDEM_BENCH_VALUE_BYTES_MAX);
        return -1;
    }
    p->target = target;
    p->local_reads = local_reads;
    p->value = malloc(value_len + 1);
    p->value_b64 = malloc((value_len + 2) / 3 * 4 + 1);
    if (p->value == NULL || p->value_b64 == NULL) {
        snprintf(errmsg, 256, "out of memory for a %zu-byte value", value_len);
        tandem_bench_payload_free(p);
        return -1;
    }
    uint64_t x = seed | 1u;
    for (size_t i = 0; i < value_len; i++) {
        x ^= x << 13; /* xorshift64: any fixed filler would do, this one does not compress */
        x ^= x >> 7;
        x ^= x << 17;
        p->value[i] = printable[x % (sizeof printable - 1)];
    }
    p->value[value_len] = '\0';
    p->value_len = value_len;
    p->value_b64_len = base64_encode((const unsigned char *)p->value, value_len, p->value_b64);
    return 0;
}

void tandem_bench_payload_free(struct tandem_bench_payload *p)
{
    free(p->value);
    free(p->value_b64);
    p->value = NULL;
    p->value_b64 = NULL;
}

static const char etcd_value_tail[] = "\"}";

static int format_tandem(struct tandem_bench_request *req, const struct tandem_bench_payload *p,
                         const struct tandem_bench_endpoint *e, const char *key)
{
    int n;
    if (req->op == TANDEM_BENCH_OP_WRITE) {
        n = snprintf(req->head, sizeof req->head,
                     "PUT /v1/kv/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n", key,
                     e->host_header, p->value_len);
        req->bufs[1] = uv_buf_init(p->value, (unsigned)p->value_len);
        req->nbufs = 2;
    } else {
        n = snprintf(req->head, sizeof req->head, "GET /v1/kv/%s%s HTTP/1.1\r\nHost: %s\r\n\r\n",
                     key, p->local_reads ? "?consistency=local" : "", e->host_header);
        req->nbufs = 1;
    }
    if (n < 0 || (size_t)n >= sizeof req->head) {
        return UV_E2BIG;
    }
    req->bufs[0] = uv_buf_init(req->head, (unsigned)n);
    return 0;
}

static int format_etcd(struct tandem_bench_request *req, const struct tandem_bench_payload *p,
                       const struct tandem_bench_endpoint *e, const char *key)
{
    char key_b64[64];
    char body[160]; /* the JSON before the value (write) or all of it (read) */
    base64_encode((const unsigned char *)key, strlen(key), key_b64);
    int body_len;
    size_t content_len;
    if (req->op == TANDEM_BENCH_OP_WRITE) {
        body_len = snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"", key_b64);
        content_len = (size_t)body_len + p->value_b64_len + sizeof etcd_value_tail - 1;
    } else {
        body_len = snprintf(body, sizeof body, "{\"key\":\"%s\"%s}", key_b64,
                            p->local_reads ? ",\"serializable\":true" : "");
        content_len = (size_t)body_len;
    }
    int n = snprintf(req->head, sizeof req->head,
                     "POST /v3/kv/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     req->op == TANDEM_BENCH_OP_WRITE ? "put" : "range", e->host_header,
                     content_len, body);
    if (body_len < 0 || (size_t)body_len >= sizeof body || n < 0 || (size_t)n >= sizeof req->head) {
        return UV_E2BIG;
    }
    req->bufs[0] = uv_buf_init(req->head, (unsigned)n);
    req->nbufs = 1;
    if (req->op == TANDEM_BENCH_OP_WRITE) {
        req->bufs[1] = uv_buf_init(p->value_b64, (unsigned)p->value_b64_len);
        req->bufs[2] = uv_buf_init((char *)etcd_value_tail, sizeof etcd_value_tail - 1);
        req->nbufs = 3;
    }
    return 0;
}

int tandem_bench_request_format(struct tandem_bench_request *req,
                                const struct tandem_bench_payload *p,
                                const struct tandem_bench_endpoint *e, enum tandem_bench_op op,
                                uint64_t key_index)
{
    char key[32];
    snprintf(key, sizeof key, "bench-%" PRIu64, key_index);
    req->op = op;
    if (p->target == TANDEM_BENCH_TARGET_TANDEM) {
        return format_tandem(req, p, e, key);
    }
    return format_etcd(req, p, e, key);
}

/* memmem for a short needle in a bounded prefix. */
static int contains(const char *haystack, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++) {
        if (memcmp(haystack + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

enum tandem_bench_outcome tandem_bench_response_classify(enum tandem_bench_target target,
                                                         enum tandem_bench_op op, int status,
                                                         const char *body_prefix, size_t len)
{
    if (status == 200) {
        /* etcd answers a range over an absent key with 200 and no "kvs" field. */
        if (target == TANDEM_BENCH_TARGET_ETCD && op == TANDEM_BENCH_OP_READ &&
            !contains(body_prefix, len, "\"kvs\"")) {
            return TANDEM_BENCH_OUTCOME_NOT_FOUND;
        }
        return TANDEM_BENCH_OUTCOME_OK;
    }
    if (status == 404 && op == TANDEM_BENCH_OP_READ && target == TANDEM_BENCH_TARGET_TANDEM) {
        return TANDEM_BENCH_OUTCOME_NOT_FOUND;
    }
    if (status >= 400 && status < 500) {
        return TANDEM_BENCH_OUTCOME_HTTP_4XX;
    }
    if (status >= 500 && status < 600) {
        return TANDEM_BENCH_OUTCOME_HTTP_5XX;
    }
    return TANDEM_BENCH_OUTCOME_PARSE;
}
