/* HTTP with failover for tandemctl: libcurl easy handle for requests, multi handle for probes. */
#include "node/ctl/client.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "node/ctl/encode.h"
#include "node/ctl/tls.h"

_Static_assert(TANDEM_CTL_ERRMSG_SIZE >= CURL_ERROR_SIZE, "curl error buffer must fit errmsg");

#define RESPONSE_INITIAL_CAPACITY 4096 /* most answers are small JSON objects */
#define PROBE_SLACK_MS            1000 /* multi loop outlives the per-probe timeout by this */
#define PROBE_POLL_MS             100  /* one curl_multi_poll wait */

enum attempt_result {
    ATTEMPT_ANSWERED,        /* an HTTP response arrived */
    ATTEMPT_NOT_DELIVERED,   /* the request never reached the node */
    ATTEMPT_MAYBE_DELIVERED, /* the connection broke or timed out after the request went out */
    ATTEMPT_LOCAL_ERROR,     /* our side failed: memory, oversized answer */
};

void tandem_ctl_response_init(struct tandem_ctl_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->mod_index = -1;
    resp->create_index = -1;
    resp->applied_index = -1;
}

void tandem_ctl_response_free(struct tandem_ctl_response *resp)
{
    free(resp->body);
    tandem_ctl_response_init(resp);
}

/* Clears what a previous attempt left, keeping the buffer for reuse and the sink. */
static void response_reset(struct tandem_ctl_response *resp)
{
    char *body = resp->body;
    size_t capacity = resp->body_capacity;
    struct tandem_ctl_sink *sink = resp->sink;

    tandem_ctl_response_init(resp);
    resp->body = body;
    resp->body_capacity = capacity;
    resp->sink = sink;
    if (body != NULL) {
        body[0] = '\0';
    }
}

void tandem_ctl_response_reason(const struct tandem_ctl_response *resp, char *out, size_t out_size)
{
    json_error_t jerr;
    json_t *root = NULL;
    const char *error = NULL;

    if (resp->body_len > 0) {
        root = json_loadb(resp->body, resp->body_len, 0, &jerr);
    }
    if (root != NULL) {
        error = json_string_value(json_object_get(root, "error"));
    }
    if (error != NULL) {
        snprintf(out, out_size, "%s", error);
    } else if (resp->body_len > 0) {
        tandem_ctl_escape((const unsigned char *)resp->body, resp->body_len, 120, out, out_size);
    } else {
        snprintf(out, out_size, "no reason given");
    }
    json_decref(root);
}

static size_t response_write_cb(char *data, size_t size, size_t count, void *user)
{
    struct tandem_ctl_response *resp = user;
    size_t len = size * count;
    size_t need = resp->body_len + len + 1;

    if (resp->sink != NULL && resp->head_status >= 200 && resp->head_status <= 299) {
        resp->sink->error = resp->sink->write(resp->sink->data, data, len);
        return resp->sink->error == 0 ? len : 0;
    }
    if (need > (size_t)TANDEM_CTL_RESPONSE_MAX) {
        resp->too_large = true;
        return 0;
    }
    if (need > resp->body_capacity) {
        size_t capacity = resp->body_capacity ? resp->body_capacity : RESPONSE_INITIAL_CAPACITY;
        while (capacity < need) {
            capacity *= 2;
        }
        char *grown = realloc(resp->body, capacity);
        if (grown == NULL) {
            return 0;
        }
        resp->body = grown;
        resp->body_capacity = capacity;
    }
    memcpy(resp->body + resp->body_len, data, len);
    resp->body_len += len;
    resp->body[resp->body_len] = '\0';
    return len;
}

/* Matches "Name:" case-insensitively at the start of a header line; returns the value with
 * surrounding blanks trimmed into value (NUL-terminated), or false. */
static bool header_match(const char *line, size_t len, const char *name, char *value,
                         size_t value_size)
{
    size_t name_len = strlen(name);

    if (len <= name_len || line[name_len] != ':' || strncasecmp(line, name, name_len) != 0) {
        return false;
    }
    const char *start = line + name_len + 1;
    const char *end = line + len;
    while (start < end && isspace((unsigned char)*start)) {
        start++;
    }
    while (end > start && isspace((unsigned char)end[-1])) {
        end--;
    }
    size_t n = (size_t)(end - start);
    if (n >= value_size) {
        n = value_size - 1;
    }
    memcpy(value, start, n);
    value[n] = '\0';
    return true;
}

static int64_t parse_index(const char *text)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0) {
        return -1;
    }
    return (int64_t)v;
}

static size_t response_header_cb(char *line, size_t size, size_t count, void *user)
{
    struct tandem_ctl_response *resp = user;
    size_t len = size * count;
    char value[TANDEM_CTL_NODE_NAME_SIZE];

    if (resp->sink != NULL && resp->sink->header != NULL) {
        resp->sink->header(resp->sink->data, line, len);
    }
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new status line (after 100 Continue, say) starts a new header set. */
        resp->mod_index = resp->create_index = resp->applied_index = -1;
        resp->node[0] = '\0';
        resp->location[0] = '\0';
        const char *space = memchr(line, ' ', len);
        resp->head_status = space != NULL ? strtol(space + 1, NULL, 10) : 0;
    } else if (header_match(line, len, "Location", resp->location, sizeof(resp->location))) {
        /* kept for the caller */
    } else if (header_match(line, len, "X-Tandem-Mod-Index", value, sizeof(value))) {
        resp->mod_index = parse_index(value);
    } else if (header_match(line, len, "X-Tandem-Create-Index", value, sizeof(value))) {
        resp->create_index = parse_index(value);
    } else if (header_match(line, len, "X-Tandem-Applied-Index", value, sizeof(value))) {
        resp->applied_index = parse_index(value);
    } else if (header_match(line, len, "X-Tandem-Node", value, sizeof(value))) {
        snprintf(resp->node, sizeof(resp->node), "%s", value);
    }
    return len;
}

/* Options every transfer shares. headers is borrowed and must outlive the transfer. */
static void easy_prepare(CURL *curl, const char *url, long timeout_ms,
                         struct tandem_ctl_response *resp, struct curl_slist *headers)
{
    long connect_ms =
        timeout_ms < TANDEM_CTL_CONNECT_TIMEOUT_MS ? timeout_ms : TANDEM_CTL_CONNECT_TIMEOUT_MS;

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "tandemctl");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, response_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, response_header_cb);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, resp->errmsg);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    tandem_ctl_tls_apply(curl);
}

/* Sorts a failed transfer into "never arrived" (safe to send elsewhere) or "may have been
 * acted on". A fresh connection is forced for POSTs, so a zero connect time means the
 * request bytes never left. */
static enum attempt_result classify_failure(CURL *curl, CURLcode code)
{
    curl_off_t connect_us = 0;

    switch (code) {
        case CURLE_WRITE_ERROR: /* only our write callback fails writes: size or memory */
        case CURLE_OUT_OF_MEMORY:
        case CURLE_ABORTED_BY_CALLBACK: /* interrupted: no other endpoint either */
            return ATTEMPT_LOCAL_ERROR;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
            return ATTEMPT_NOT_DELIVERED;
        case CURLE_OPERATION_TIMEDOUT:
            if (curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_us) == CURLE_OK &&
                connect_us == 0) {
                return ATTEMPT_NOT_DELIVERED;
            }
            return ATTEMPT_MAYBE_DELIVERED;
        default:
            return ATTEMPT_MAYBE_DELIVERED;
    }
}

long long tandem_ctl_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The bound of the next attempt: the timeout, cut to what is left before the deadline; 0 when
 * the deadline has passed. */
static long attempt_timeout_ms(const struct tandem_ctl_client *c)
{
    long bound = c->attempt_ms_max > 0 && c->attempt_ms_max < c->timeout_ms ? c->attempt_ms_max
                                                                            : c->timeout_ms;
    if (c->deadline_ms <= 0) {
        return bound;
    }
    long long left = c->deadline_ms - tandem_ctl_now_ms();
    if (left <= 0) {
        return 0;
    }
    return left < bound ? (long)left : bound;
}

void tandem_ctl_client_prefer(struct tandem_ctl_client *c, const char *base)
{
    for (size_t i = 1; i < c->endpoint_count; i++) {
        if (strcmp(c->endpoints[i], base) == 0) {
            char *chosen = c->endpoints[i];
            memmove(&c->endpoints[1], &c->endpoints[0], i * sizeof c->endpoints[0]);
            c->endpoints[0] = chosen;
            return;
        }
    }
}

int tandem_ctl_client_prefer_add(struct tandem_ctl_client *c, const char *base)
{
    for (size_t i = 0; i < c->endpoint_count; i++) {
        if (strcmp(c->endpoints[i], base) == 0) {
            tandem_ctl_client_prefer(c, base);
            return 0;
        }
    }
    if (c->endpoint_count == TANDEM_CTL_ENDPOINTS_MAX || strlen(base) >= TANDEM_CTL_URL_MAX / 2) {
        snprintf(c->errmsg, sizeof(c->errmsg), "cannot add endpoint %.200s", base);
        return -1;
    }
    char *copy = strdup(base);
    if (copy == NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg), "out of memory");
        return -1;
    }
    memmove(&c->endpoints[1], &c->endpoints[0], c->endpoint_count * sizeof c->endpoints[0]);
    c->endpoints[0] = copy;
    c->endpoint_count++;
    return 0;
}

/* libcurl's progress callback (at least once a second): non-zero stops the transfer. */
static int interrupted_cb(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return *(volatile sig_atomic_t *)data != 0;
}

static enum attempt_result client_attempt(struct tandem_ctl_client *c, const char *base,
                                          const struct tandem_ctl_request *req,
                                          struct tandem_ctl_response *resp)
{
    CURL *curl = c->curl;
    char url[TANDEM_CTL_URL_MAX];
    char content_type[128];
    struct curl_slist *headers = NULL;
    bool is_post = strcmp(req->method, "POST") == 0;

    response_reset(resp);
    snprintf(resp->endpoint, sizeof(resp->endpoint), "%s", base);
    if ((size_t)snprintf(url, sizeof(url), "%s%s", base, req->path) >= sizeof(url)) {
        snprintf(resp->errmsg, sizeof(resp->errmsg), "URL longer than %d bytes",
                 TANDEM_CTL_URL_MAX - 1);
        return ATTEMPT_LOCAL_ERROR;
    }
    snprintf(content_type, sizeof(content_type), "Content-Type: %s",
             req->content_type ? req->content_type : "application/json");
    /* An empty Expect stops curl's 100-continue round trip on large bodies. */
    struct curl_slist *h1 = curl_slist_append(NULL, "Expect:");
    struct curl_slist *h2 = h1 ? curl_slist_append(h1, content_type) : NULL;
    if (h2 == NULL) {
        curl_slist_free_all(h1);
        snprintf(resp->errmsg, sizeof(resp->errmsg), "out of memory");
        return ATTEMPT_LOCAL_ERROR;
    }
    headers = h2;
    /* The actor is whoever the certificate (or token) authenticates: no X-Tandem-User. */
    if (c->authorization[0] != '\0') {
        struct curl_slist *h3 = curl_slist_append(h2, c->authorization);
        if (h3 == NULL) {
            curl_slist_free_all(h2);
            snprintf(resp->errmsg, sizeof(resp->errmsg), "out of memory");
            return ATTEMPT_LOCAL_ERROR;
        }
        headers = h3;
    }

    curl_easy_reset(curl);
    easy_prepare(curl, url, attempt_timeout_ms(c), resp, headers);
    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    }
    if (req->body != NULL || strcmp(req->method, "PUT") == 0 || is_post) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
    }
    curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, is_post ? 1L : 0L);
    if (c->stall_s > 0) {
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, c->stall_s);
    }
    if (c->interrupted != NULL) {
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, interrupted_cb);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)c->interrupted);
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    }

    CURLcode code = curl_easy_perform(curl);
    enum attempt_result result = ATTEMPT_ANSWERED;
    if (code == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    } else {
        resp->status = 0;
        if (resp->errmsg[0] == '\0') {
            snprintf(resp->errmsg, sizeof(resp->errmsg), "%s", curl_easy_strerror(code));
        }
        if (resp->too_large) {
            snprintf(resp->errmsg, sizeof(resp->errmsg), "answer larger than %ld bytes",
                     TANDEM_CTL_RESPONSE_MAX);
        } else if (code == CURLE_WRITE_ERROR && resp->sink != NULL && resp->sink->error != 0) {
            snprintf(resp->errmsg, sizeof(resp->errmsg), "writing the answer: %s",
                     strerror(resp->sink->error));
        } else if (code == CURLE_WRITE_ERROR) {
            snprintf(resp->errmsg, sizeof(resp->errmsg), "out of memory for the answer");
        }
        tandem_ctl_tls_explain(code, url, resp->errmsg, sizeof(resp->errmsg));
        result = classify_failure(curl, code);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    return result;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Messages longer than errmsg are cut on purpose: their start says what failed. */
static void client_error(struct tandem_ctl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_error(struct tandem_ctl_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
}

/* Moves src's contents into dst (freeing dst's), leaving src empty. */
/* Moves src's answer into dst; the sink stays with src, which the next endpoint answers into
 * (a download that met a 503 first would otherwise go on into memory). */
static void response_move(struct tandem_ctl_response *dst, struct tandem_ctl_response *src)
{
    struct tandem_ctl_sink *sink = src->sink;
    tandem_ctl_response_free(dst);
    memcpy(dst, src, sizeof(*dst));
    dst->sink = NULL;
    tandem_ctl_response_init(src);
    src->sink = sink;
}

/* One attempt on endpoint i. Returns -1 to go on to the next endpoint, else the final code. */
static int client_try_endpoint(struct tandem_ctl_client *c, size_t i,
                               const struct tandem_ctl_request *req,
                               struct tandem_ctl_response *resp,
                               struct tandem_ctl_response *unavailable, bool *saw_unavailable)
{
    bool idempotent = strcmp(req->method, "POST") != 0;
    if (attempt_timeout_ms(c) == 0) {
        client_error(c, "%s: not tried, no time left", c->endpoints[i]);
        return -1;
    }
    enum attempt_result r = client_attempt(c, c->endpoints[i], req, resp);

    switch (r) {
        case ATTEMPT_LOCAL_ERROR:
            client_error(c, "%s", resp->errmsg);
            return TANDEM_CTL_EREFUSED;
        case ATTEMPT_MAYBE_DELIVERED:
            if (!idempotent) {
                client_error(c, "%s: %s after the request was sent; outcome unknown, not retried",
                             c->endpoints[i], resp->errmsg);
                return TANDEM_CTL_EUNREACHABLE;
            }
            client_error(c, "%s: %s", c->endpoints[i], resp->errmsg);
            return -1;
        case ATTEMPT_NOT_DELIVERED:
            client_error(c, "%s: %s", c->endpoints[i], resp->errmsg);
            return -1;
        case ATTEMPT_ANSWERED:
            if (resp->status != 503) {
                return TANDEM_CTL_OK;
            }
            /* No leader or shutting down: that node's answer is not the cluster's. */
            response_move(unavailable, resp);
            *saw_unavailable = true;
            return -1;
    }
    return -1;
}

int tandem_ctl_client_send(struct tandem_ctl_client *c, const struct tandem_ctl_request *req,
                           struct tandem_ctl_response *resp)
{
    struct tandem_ctl_response unavailable;
    int rc = -1;

    tandem_ctl_response_init(&unavailable);
    c->errmsg[0] = '\0';
    int rounds = c->rounds_max > 0 ? c->rounds_max : TANDEM_CTL_ROUNDS_MAX;
    for (int round = 0; round < rounds && rc < 0; round++) {
        if (round > 0) {
            sleep_ms(TANDEM_CTL_ROUND_PAUSE_MS);
        }
        bool saw_unavailable = false;
        for (size_t i = 0; i < c->endpoint_count && rc < 0; i++) {
            rc = client_try_endpoint(c, i, req, resp, &unavailable, &saw_unavailable);
        }
        if (!saw_unavailable) {
            break; /* nobody said 503 this pass, so repeating it will not find a leader */
        }
    }
    if (rc < 0 && unavailable.status != 0) {
        /* Every node that answered said 503; hand over the last such answer. */
        response_move(resp, &unavailable);
        rc = TANDEM_CTL_OK;
    } else if (rc < 0) {
        char last[TANDEM_CTL_ERRMSG_SIZE];
        snprintf(last, sizeof(last), "%s", c->errmsg);
        client_error(c, "no endpoint reachable (tried %zu): %s", c->endpoint_count, last);
        rc = TANDEM_CTL_EUNREACHABLE;
    }
    tandem_ctl_response_free(&unavailable);
    return rc;
}

/* Copies one comma-separated endpoint, trimmed and without trailing '/', into c. Returns 0
 * (empty entries are skipped) or -1 with c->errmsg filled. */
static int client_add_endpoint(struct tandem_ctl_client *c, const char *start, size_t len)
{
    while (len > 0 && isspace((unsigned char)*start)) {
        start++;
        len--;
    }
    while (len > 0 && (isspace((unsigned char)start[len - 1]) || start[len - 1] == '/')) {
        len--;
    }
    if (len == 0) {
        return 0;
    }
    if (c->endpoint_count == TANDEM_CTL_ENDPOINTS_MAX) {
        snprintf(c->errmsg, sizeof(c->errmsg), "more than %d endpoints", TANDEM_CTL_ENDPOINTS_MAX);
        return -1;
    }
    if (len >= TANDEM_CTL_URL_MAX / 2) {
        snprintf(c->errmsg, sizeof(c->errmsg), "endpoint longer than %d bytes",
                 TANDEM_CTL_URL_MAX / 2 - 1);
        return -1;
    }
    char *copy = strndup(start, len);
    if (copy == NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg), "out of memory");
        return -1;
    }
    c->endpoints[c->endpoint_count++] = copy;
    return 0;
}

int tandem_ctl_client_init(struct tandem_ctl_client *c, const char *endpoint_list, long timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->timeout_ms = timeout_ms;
    const char *p = endpoint_list;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (client_add_endpoint(c, p, len) != 0) {
            goto err_after_endpoints;
        }
        p += len + (comma ? 1 : 0);
    }
    if (c->endpoint_count == 0) {
        snprintf(c->errmsg, sizeof(c->errmsg),
                 "no endpoints: use -e URL,... or set TANDEM_ENDPOINTS");
        goto err_after_endpoints;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg), "curl_easy_init failed");
        goto err_after_endpoints;
    }
    return 0;

err_after_endpoints:
    for (size_t i = 0; i < c->endpoint_count; i++) {
        free(c->endpoints[i]);
        c->endpoints[i] = NULL;
    }
    c->endpoint_count = 0;
    return -1;
}

void tandem_ctl_client_close(struct tandem_ctl_client *c)
{
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
        c->curl = NULL;
    }
    for (size_t i = 0; i < c->endpoint_count; i++) {
        free(c->endpoints[i]);
        c->endpoints[i] = NULL;
    }
    c->endpoint_count = 0;
}

/* Drives the multi handle until every probe finished or the deadline passed; finished
 * transfers get their status or error recorded. */
static void probe_run(CURLM *multi, CURL **easies, size_t count,
                      struct tandem_ctl_response *responses, long timeout_ms)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long deadline_ms =
        (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 + timeout_ms + PROBE_SLACK_MS;
    /* Each poll waits at most PROBE_POLL_MS, so this also bounds the loop by count. */
    long polls_max = (timeout_ms + PROBE_SLACK_MS) / PROBE_POLL_MS + 1;
    int running = 1;

    for (long poll = 0; running > 0 && poll < polls_max; poll++) {
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            break;
        }
        CURLMsg *msg;
        int queued;
        while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
            for (size_t i = 0; i < count && msg->msg == CURLMSG_DONE; i++) {
                if (easies[i] != msg->easy_handle) {
                    continue;
                }
                if (msg->data.result == CURLE_OK) {
                    curl_easy_getinfo(easies[i], CURLINFO_RESPONSE_CODE, &responses[i].status);
                } else if (responses[i].errmsg[0] == '\0') {
                    snprintf(responses[i].errmsg, sizeof(responses[i].errmsg), "%s",
                             curl_easy_strerror(msg->data.result));
                }
                if (msg->data.result != CURLE_OK) {
                    tandem_ctl_tls_explain(msg->data.result, responses[i].endpoint,
                                           responses[i].errmsg, sizeof(responses[i].errmsg));
                }
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (running == 0 || (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 >= deadline_ms) {
            break;
        }
        curl_multi_poll(multi, NULL, 0, PROBE_POLL_MS, NULL);
    }
}

int tandem_ctl_client_probe(const char *const *urls, size_t count, long timeout_ms,
                            struct tandem_ctl_response *responses, char *errmsg)
{
    CURL *easies[TANDEM_CTL_PROBES_MAX] = {0};
    struct curl_slist *headers = NULL;
    int rc = -1;

    if (count > TANDEM_CTL_PROBES_MAX) {
        snprintf(errmsg, TANDEM_CTL_ERRMSG_SIZE, "more than %d members to probe",
                 TANDEM_CTL_PROBES_MAX);
        return -1;
    }
    CURLM *multi = curl_multi_init();
    if (multi == NULL) {
        snprintf(errmsg, TANDEM_CTL_ERRMSG_SIZE, "curl_multi_init failed");
        return -1;
    }
    headers = curl_slist_append(NULL, "Expect:");
    if (headers == NULL) {
        snprintf(errmsg, TANDEM_CTL_ERRMSG_SIZE, "out of memory");
        goto err_after_multi;
    }
    for (size_t i = 0; i < count; i++) {
        response_reset(&responses[i]);
        snprintf(responses[i].endpoint, sizeof(responses[i].endpoint), "%s", urls[i]);
        easies[i] = curl_easy_init();
        if (easies[i] == NULL) {
            snprintf(errmsg, TANDEM_CTL_ERRMSG_SIZE, "curl_easy_init failed");
            goto err_after_easies;
        }
        easy_prepare(easies[i], urls[i], timeout_ms, &responses[i], headers);
        curl_easy_setopt(easies[i], CURLOPT_HTTPGET, 1L);
        if (curl_multi_add_handle(multi, easies[i]) != CURLM_OK) {
            snprintf(errmsg, TANDEM_CTL_ERRMSG_SIZE, "curl_multi_add_handle failed");
            goto err_after_easies;
        }
    }
    probe_run(multi, easies, count, responses, timeout_ms);
    for (size_t i = 0; i < count; i++) {
        if (responses[i].status == 0 && responses[i].errmsg[0] == '\0') {
            snprintf(responses[i].errmsg, sizeof(responses[i].errmsg), "no answer in time");
        }
    }
    rc = 0;

err_after_easies:
    for (size_t i = 0; i < count && easies[i] != NULL; i++) {
        curl_multi_remove_handle(multi, easies[i]);
        curl_easy_cleanup(easies[i]);
    }
    curl_slist_free_all(headers);
err_after_multi:
    curl_multi_cleanup(multi);
    return rc;
}
