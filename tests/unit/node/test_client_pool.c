/* Tests of the one URL parser and the one client pool (node/http/client.h) against tiny servers
 * on 127.0.0.1: clients keyed by host:port, the least recently used retiring when the pool is
 * full, a retiring client finishing its requests before it closes, and close. */
#include <stdlib.h>

#include "harness.h"

static void test_url_parse(void **state)
{
    char host[64];
    int port = 0;
    const char *path = NULL;
    (void)state;
    assert_int_equal(tandem_url_parse("http://127.0.0.1:8101", host, sizeof host, &port, &path), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8101);
    assert_string_equal(path, "");
    assert_int_equal(
        tandem_url_parse("http://node-1.example:80/v1/status?x=1", host, sizeof host, &port, &path),
        0);
    assert_string_equal(host, "node-1.example");
    assert_int_equal(port, 80);
    assert_string_equal(path, "/v1/status?x=1");
    assert_int_equal(tandem_url_parse("http://[::1]:9000/", host, sizeof host, &port, NULL), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9000);
    assert_int_equal(
        tandem_url_parse("https://east-1.example:8101/v1", host, sizeof host, &port, &path), 0);
    assert_string_equal(host, "east-1.example");
    assert_int_equal(port, 8101);
    assert_string_equal(path, "/v1");
    assert_true(tandem_url_is_https("https://h:1"));
    assert_false(tandem_url_is_https("http://h:1"));
    assert_int_equal(tandem_url_parse("ftp://127.0.0.1:1", host, sizeof host, &port, NULL),
                     UV_EINVAL);
    assert_int_equal(tandem_url_parse("http://127.0.0.1", host, sizeof host, &port, NULL),
                     UV_EINVAL);
    assert_int_equal(tandem_url_parse("http://127.0.0.1:0", host, sizeof host, &port, NULL),
                     UV_EINVAL);
    assert_int_equal(tandem_url_parse("http://127.0.0.1:70000", host, sizeof host, &port, NULL),
                     UV_EINVAL);
    assert_int_equal(tandem_url_parse("http://a-very-long-host-name:1", host, 8, &port, NULL),
                     UV_EINVAL);
}

struct pool_closed {
    int closed;
};

static void pool_closed_cb(struct tandem_http_pool *p)
{
    ((struct pool_closed *)p->data)->closed++;
}

static int pool_is_closed(void *arg)
{
    return ((struct pool_closed *)arg)->closed > 0;
}

static void pool_stop(struct harness *h, struct tandem_http_pool *p)
{
    struct pool_closed flag = {0};
    p->data = &flag;
    tandem_http_pool_close(p, pool_closed_cb);
    assert_true(harness_run_until(h, pool_is_closed, &flag));
    assert_int_equal(flag.closed, 1);
}

/* A TLS pool talks https only, a plaintext pool http only; with TLS one client per host:port and
 * expected node name. (The context is never used: nothing is sent.) */
static void test_pool_schemes_and_node_keys(void **state)
{
    struct harness h;
    struct tandem_http_pool plain, secure;
    struct tandem_httpc *c1, *c2, *c3;
    int never_dereferenced = 0;
    (void)state;
    harness_init(&h);
    assert_int_equal(tandem_http_pool_init(&plain, &h.loop, 4, 1, 2000), 0);
    assert_int_equal(tandem_http_pool_get(&plain, "https://127.0.0.1:9", &c1), UV_EINVAL);
    assert_string_equal(plain.errmsg,
                        "http pool: https://127.0.0.1:9 needs TLS but this node runs insecure");
    assert_int_equal(tandem_http_pool_init(&secure, &h.loop, 4, 1, 2000), 0);
    tandem_http_pool_set_tls(&secure, (struct tandem_tls_ctx *)&never_dereferenced);
    assert_int_equal(tandem_http_pool_get(&secure, "http://127.0.0.1:9", &c1), UV_EINVAL);
    assert_string_equal(secure.errmsg,
                        "http pool: http://127.0.0.1:9 is plaintext HTTP but this node speaks TLS");
    assert_int_equal(tandem_http_pool_get_node(&secure, "https://127.0.0.1:9", "east-1", &c1), 0);
    assert_int_equal(tandem_http_pool_get_node(&secure, "https://127.0.0.1:9", "west-1", &c2), 0);
    assert_int_equal(tandem_http_pool_get_node(&secure, "https://127.0.0.1:9/x", "east-1", &c3), 0);
    assert_ptr_not_equal(c1, c2);
    assert_ptr_equal(c1, c3);
    assert_string_equal(c1->expect_node, "east-1");
    assert_ptr_equal(c1->tls, &never_dereferenced);
    pool_stop(&h, &plain);
    pool_stop(&h, &secure);
    harness_close(&h);
}

static void url_of(char *out, size_t size, int port)
{
    snprintf(out, size, "http://127.0.0.1:%d", port);
}

/* The same host:port gets the same client; another one pushes the least recently used out. */
static void test_pool_keys_and_lru(void **state)
{
    struct harness h;
    struct leader a, b, c;
    struct tandem_http_pool pool;
    struct tandem_httpc *ca, *ca2, *cb, *cc;
    char url_a[64], url_b[64], url_c[64];
    (void)state;
    harness_init(&h);
    leader_start(&h, &a, 0);
    leader_start(&h, &b, 0);
    leader_start(&h, &c, 0);
    url_of(url_a, sizeof url_a, a.port);
    url_of(url_b, sizeof url_b, b.port);
    url_of(url_c, sizeof url_c, c.port);
    assert_int_equal(tandem_http_pool_init(&pool, &h.loop, 2, 1, 2000), 0);
    assert_int_equal(tandem_http_pool_get(&pool, url_a, &ca), 0);
    assert_int_equal(tandem_http_pool_get(&pool, url_b, &cb), 0);
    assert_int_equal(tandem_http_pool_get(&pool, strcat(url_a, "/ignored/path"), &ca2), 0);
    assert_ptr_equal(ca, ca2); /* keyed by host:port; a is now the most recently used */
    assert_int_equal(pool.open_count, 2);
    assert_int_equal(tandem_http_pool_get(&pool, url_c, &cc), 0);
    assert_int_equal(pool.open_count, 2); /* b, idle, closed to make room */
    assert_int_equal(pool.closing_count, 1);
    assert_int_equal(tandem_http_pool_get(&pool, "ftp://x:1", &cc), UV_EINVAL);
    assert_null(cc);
    pool_stop(&h, &pool);
    leader_stop(&h, &a);
    leader_stop(&h, &b);
    leader_stop(&h, &c);
    harness_close(&h);
}

/* A client pushed out while its request is in flight lets that request finish, then closes. */
static void test_pool_retiring_finishes(void **state)
{
    struct harness h;
    struct leader a, b;
    struct tandem_http_pool pool;
    struct call call;
    struct tandem_httpc *cb;
    char url_a[64], url_b[64];
    (void)state;
    harness_init(&h);
    leader_start(&h, &a, 0);
    leader_start(&h, &b, 0);
    url_of(url_a, sizeof url_a, a.port);
    url_of(url_b, sizeof url_b, b.port);
    assert_int_equal(tandem_http_pool_init(&pool, &h.loop, 1, 1, 2000), 0);
    memset(&call, 0, sizeof call);
    call.req.data = &call;
    assert_int_equal(
        tandem_http_pool_send(&pool, url_a, &call.req, "GET", "/x", NULL, NULL, 0, call_cb), 0);
    assert_int_equal(tandem_http_pool_get(&pool, url_b, &cb), 0); /* a retires, busy */
    assert_int_equal(pool.retiring_count, 1);
    assert_int_equal(pool.open_count, 1);
    assert_true(harness_run_until(&h, call_done, &call));
    assert_int_equal(call.status, 0); /* not cancelled */
    assert_int_equal(call.http_status, 200);
    assert_int_equal(pool.retiring_count, 0); /* closed once its last answer came */
    pool_stop(&h, &pool);
    leader_stop(&h, &a);
    leader_stop(&h, &b);
    harness_close(&h);
}

/* Close cancels what is in flight, refuses new work, and calls back once. */
static void test_pool_close(void **state)
{
    struct harness h;
    struct leader a;
    struct tandem_http_pool pool;
    struct call call;
    struct tandem_httpc *c;
    char url_a[64];
    (void)state;
    harness_init(&h);
    leader_start(&h, &a, 0);
    url_of(url_a, sizeof url_a, a.port);
    assert_int_equal(tandem_http_pool_init(&pool, &h.loop, 1, 1, 2000), 0);
    memset(&call, 0, sizeof call);
    call.req.data = &call;
    assert_int_equal(
        tandem_http_pool_send(&pool, url_a, &call.req, "GET", "/x", NULL, NULL, 0, call_cb), 0);
    struct pool_closed flag = {0};
    pool.data = &flag;
    tandem_http_pool_close(&pool, pool_closed_cb);
    assert_true(call.done);
    assert_int_equal(call.status, UV_ECANCELED);
    assert_int_equal(tandem_http_pool_get(&pool, url_a, &c), UV_ECANCELED);
    assert_true(harness_run_until(&h, pool_is_closed, &flag));
    assert_int_equal(flag.closed, 1);
    /* A pool that never made a client closes at once. */
    assert_int_equal(tandem_http_pool_init(&pool, &h.loop, 1, 1, 2000), 0);
    flag.closed = 0;
    pool.data = &flag;
    tandem_http_pool_close(&pool, pool_closed_cb);
    assert_int_equal(flag.closed, 1);
    assert_int_equal(tandem_http_pool_init(&pool, &h.loop, 0, 1, 2000), UV_EINVAL);
    leader_stop(&h, &a);
    harness_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),         cmocka_unit_test(test_pool_schemes_and_node_keys),
        cmocka_unit_test(test_pool_keys_and_lru), cmocka_unit_test(test_pool_retiring_finishes),
        cmocka_unit_test(test_pool_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
