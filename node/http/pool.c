/* The one "http(s)://host:port" URL parser and the one pool of kept-alive HTTP clients keyed by
 * URL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/member.h"
#include "node/http/client.h"
#include "storage/assert.h"

#define URL_SCHEME      "http://"
#define URL_SCHEME_LEN  (sizeof URL_SCHEME - 1)
#define URL_SCHEMES     "https://"
#define URL_SCHEMES_LEN (sizeof URL_SCHEMES - 1)

bool tandem_url_is_https(const char *url)
{
    return strncmp(url, URL_SCHEMES, URL_SCHEMES_LEN) == 0;
}

int tandem_url_parse(const char *url, char *host, size_t host_size, int *port, const char **path)
{
    char hostport[TANDEM_URL_LEN_MAX + 1];
    const char *rest;
    if (strncmp(url, URL_SCHEME, URL_SCHEME_LEN) == 0) {
        rest = url + URL_SCHEME_LEN;
    } else if (tandem_url_is_https(url)) {
        rest = url + URL_SCHEMES_LEN;
    } else {
        return UV_EINVAL;
    }
    size_t len = strcspn(rest, "/");
    if (len >= sizeof hostport) {
        return UV_EINVAL;
    }
    memcpy(hostport, rest, len);
    hostport[len] = '\0';
    if (tandem_hostport_split(hostport, host, host_size, port) != 0) {
        return UV_EINVAL;
    }
    size_t host_len = strlen(host);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        memmove(host, host + 1, host_len - 2); /* an IPv6 literal: the client wants it bare */
        host[host_len - 2] = '\0';
    }
    if (path != NULL) {
        *path = rest + len;
    }
    return 0;
}

enum entry_state { ENTRY_OPEN, ENTRY_RETIRING, ENTRY_CLOSING };

struct tandem_http_pool_entry {
    struct tandem_httpc http;      /* first: the client's callbacks find the entry from it */
    struct tandem_http_pool *pool; /* borrowed */
    char key[TANDEM_HTTPC_HOST_BYTES_MAX + TANDEM_TLS_NAME_MAX + 16]; /* host:port node */
    enum entry_state state;
    struct tandem_list link; /* in pool->open or pool->retiring, as state says */
};

static struct tandem_http_pool_entry *entry_of(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_http_pool_entry, link);
}

int tandem_http_pool_init(struct tandem_http_pool *p, uv_loop_t *loop, unsigned clients_max,
                          unsigned connections, unsigned timeout_ms)
{
    memset(p, 0, sizeof *p);
    tandem_list_init(&p->open);
    tandem_list_init(&p->retiring);
    /* connections and timeout_ms are checked by each client's init, on first use. */
    if (clients_max < 1 || clients_max > TANDEM_HTTP_POOL_CLIENTS_MAX) {
        return tandem_error_set(p->errmsg, UV_EINVAL, "http pool: clients_max %u not in [1, %d]",
                                clients_max, TANDEM_HTTP_POOL_CLIENTS_MAX);
    }
    p->loop = loop;
    p->clients_max = clients_max;
    p->connections = connections;
    p->timeout_ms = timeout_ms;
    return 0;
}

static void pool_maybe_closed(struct tandem_http_pool *p)
{
    if (!p->closing || p->open_count + p->retiring_count + p->closing_count > 0 ||
        p->close_cb == NULL) {
        return;
    }
    void (*cb)(struct tandem_http_pool *) = p->close_cb;
    p->close_cb = NULL;
    cb(p); /* last: it may free p */
}

static void entry_closed_cb(struct tandem_httpc *c)
{
    struct tandem_http_pool_entry *e = (struct tandem_http_pool_entry *)c;
    struct tandem_http_pool *p = e->pool;
    tandem_assert(e->state == ENTRY_CLOSING && p->closing_count > 0);
    free(e);
    p->closing_count--;
    pool_maybe_closed(p);
}

static void entry_close(struct tandem_http_pool_entry *e)
{
    struct tandem_http_pool *p = e->pool;
    tandem_assert(e->state == ENTRY_OPEN || e->state == ENTRY_RETIRING);
    tandem_list_remove(&e->link);
    if (e->state == ENTRY_OPEN) {
        p->open_count--;
    } else {
        p->retiring_count--;
    }
    e->state = ENTRY_CLOSING;
    p->closing_count++;
    tandem_httpc_close(&e->http, entry_closed_cb);
}

/* A retiring client closes once the last request it held is answered. */
static void entry_idle_cb(struct tandem_httpc *c)
{
    struct tandem_http_pool_entry *e = (struct tandem_http_pool_entry *)c;
    if (e->state == ENTRY_RETIRING) {
        entry_close(e);
    }
}

static void entry_retire(struct tandem_http_pool_entry *e)
{
    struct tandem_http_pool *p = e->pool;
    tandem_assert(e->state == ENTRY_OPEN);
    if (e->http.pending == 0) {
        entry_close(e);
        return;
    }
    tandem_list_remove(&e->link);
    p->open_count--;
    e->state = ENTRY_RETIRING;
    tandem_list_push_front(&p->retiring, &e->link);
    p->retiring_count++;
}

static struct tandem_http_pool_entry *entry_find(struct tandem_http_pool *p, const char *key)
{
    struct tandem_list *link;
    tandem_list_foreach(link, &p->open)
    {
        struct tandem_http_pool_entry *e = entry_of(link);
        if (strcmp(e->key, key) == 0) {
            tandem_list_remove(&e->link); /* to the front: most recently used */
            tandem_list_push_front(&p->open, &e->link);
            return e;
        }
    }
    return NULL;
}

static int entry_make(struct tandem_http_pool *p, const char *host, int port, const char *node,
                      const char *key, struct tandem_http_pool_entry **out)
{
    struct tandem_http_pool_entry *e = calloc(1, sizeof *e);
    if (e == NULL) {
        return tandem_error_set(p->errmsg, UV_ENOMEM, "http pool: out of memory");
    }
    int rv = tandem_httpc_init(&e->http, p->loop, host, port, p->connections, p->timeout_ms);
    if (rv == 0 && p->tls != NULL) {
        int tls_rv = tandem_httpc_set_tls(&e->http, p->tls, node);
        tandem_assert(tls_rv == 0); /* the name's length was checked by get */
    }
    if (rv != 0) {
        snprintf(p->errmsg, sizeof p->errmsg, "%s", e->http.errmsg);
        free(e);
        return rv;
    }
    e->http.idle_cb = entry_idle_cb;
    e->pool = p;
    e->state = ENTRY_OPEN;
    snprintf(e->key, sizeof e->key, "%s", key);
    tandem_list_push_front(&p->open, &e->link);
    p->open_count++;
    *out = e;
    return 0;
}

void tandem_http_pool_set_tls(struct tandem_http_pool *p, struct tandem_tls_ctx *tls)
{
    tandem_assert(p->open_count + p->retiring_count + p->closing_count == 0); /* before use */
    p->tls = tls;
}

int tandem_http_pool_get(struct tandem_http_pool *p, const char *url, struct tandem_httpc **out)
{
    return tandem_http_pool_get_node(p, url, NULL, out);
}

int tandem_http_pool_get_node(struct tandem_http_pool *p, const char *url, const char *node,
                              struct tandem_httpc **out)
{
    char host[TANDEM_HTTPC_HOST_BYTES_MAX];
    char key[sizeof((struct tandem_http_pool_entry *)0)->key];
    int port;
    *out = NULL;
    if (p->closing) {
        return tandem_error_set(p->errmsg, UV_ECANCELED, "http pool: closing");
    }
    if (tandem_url_parse(url, host, sizeof host, &port, NULL) != 0) {
        return tandem_error_set(p->errmsg, UV_EINVAL,
                                "http pool: not an http(s)://host:port URL: %.128s", url);
    }
    if (node != NULL && strlen(node) > TANDEM_TLS_NAME_MAX) {
        return tandem_error_set(p->errmsg, UV_EINVAL, "http pool: node name too long");
    }
    if (tandem_url_is_https(url) != (p->tls != NULL)) {
        return tandem_error_set(p->errmsg, UV_EINVAL,
                                p->tls != NULL
                                    ? "http pool: %.128s is plaintext HTTP but this node speaks TLS"
                                    : "http pool: %.128s needs TLS but this node runs insecure",
                                url);
    }
    snprintf(key, sizeof key, "%s:%d %s", host, port, node != NULL ? node : "");
    struct tandem_http_pool_entry *e = entry_find(p, key);
    if (e == NULL) {
        while (p->open_count >= p->clients_max) {
            entry_retire(entry_of(p->open.prev)); /* the least recently used makes room */
        }
        int rv = entry_make(p, host, port, node, key, &e);
        if (rv != 0) {
            return rv;
        }
    }
    tandem_assert(e->state == ENTRY_OPEN && p->open_count <= p->clients_max);
    *out = &e->http;
    return 0;
}

int tandem_http_pool_send(struct tandem_http_pool *p, const char *url,
                          struct tandem_httpc_request *req, const char *method, const char *target,
                          const char *extra_headers, const void *body, size_t body_len,
                          tandem_httpc_cb cb)
{
    return tandem_http_pool_send_node(p, url, NULL, req, method, target, extra_headers, body,
                                      body_len, cb);
}

int tandem_http_pool_send_node(struct tandem_http_pool *p, const char *url, const char *node,
                               struct tandem_httpc_request *req, const char *method,
                               const char *target, const char *extra_headers, const void *body,
                               size_t body_len, tandem_httpc_cb cb)
{
    struct tandem_httpc *c;
    int rv = tandem_http_pool_get_node(p, url, node, &c);
    if (rv != 0) {
        return rv;
    }
    return tandem_httpc_send(c, req, method, target, extra_headers, body, body_len, cb);
}

void tandem_http_pool_retire(struct tandem_http_pool *p)
{
    while (!tandem_list_empty(&p->open)) {
        entry_retire(entry_of(tandem_list_first(&p->open)));
    }
}

void tandem_http_pool_close(struct tandem_http_pool *p,
                            void (*close_cb)(struct tandem_http_pool *p))
{
    tandem_assert(!p->closing); /* closed once */
    p->closing = 1;
    p->close_cb = close_cb;
    while (!tandem_list_empty(&p->open)) {
        entry_close(entry_of(tandem_list_first(&p->open)));
    }
    while (!tandem_list_empty(&p->retiring)) {
        /* shutting down: what they still hold is cancelled */
        entry_close(entry_of(tandem_list_first(&p->retiring)));
    }
    pool_maybe_closed(p);
}
