/* Tests of the park: requests that wait out a leader change are dispatched again, answered 503
 * after their bound, refused when the queue is full, and answered at shutdown. */
#include <stdlib.h>

#include "harness.h"
#include "node/http/park.h"

#define REQUESTS 4

/* A stand-in for the router: no leader until `leader` is set; a request that cannot park again
 * is answered 503 with Retry-After, as the router's respond_no_leader does. */
struct router {
    struct tandem_park park;
    struct tandem_http_request requests[REQUESTS];
    int leader, dispatched, refused, answered, redispatches, closed;
    int last_status;
    char last_headers[HARNESS_TEXT_MAX], last_json[HARNESS_TEXT_MAX];
};

static void router_answer(void *data, struct tandem_http_request *r, int status,
                          const char *extra_headers, const char *json)
{
    struct router *t = data;
    (void)r;
    t->answered++;
    t->last_status = status;
    snprintf(t->last_headers, sizeof t->last_headers, "%s", extra_headers ? extra_headers : "");
    snprintf(t->last_json, sizeof t->last_json, "%s", json);
}

static void router_redispatch(void *data, struct tandem_http_request *r)
{
    struct router *t = data;
    t->redispatches++;
    if (t->leader) {
        t->dispatched++;
    } else if (!tandem_park(&t->park, r)) {
        t->refused++;
        router_answer(t, r, 503, "Retry-After: 1\r\n", "{\"error\":\"no leader\",\"leader\":null}");
    }
}

static void router_init(struct harness *h, struct router *t, uint64_t wait_ns)
{
    memset(t, 0, sizeof *t);
    assert_int_equal(
        tandem_park_init(&t->park, &h->loop, wait_ns, router_redispatch, router_answer, t), 0);
    uv_update_time(&h->loop);
    for (unsigned i = 0; i < REQUESTS; i++) {
        t->requests[i].start_ns = uv_hrtime();
        t->requests[i].handed = 1; /* as the server hands requests over */
    }
}

static void park_closed_cb(struct tandem_park *p)
{
    ((struct router *)p->data)->closed = 1;
}

static int router_closed(void *arg)
{
    return ((struct router *)arg)->closed;
}

static void router_close(struct harness *h, struct router *t)
{
    tandem_park_close(&t->park, park_closed_cb);
    assert_true(harness_run_until(h, router_closed, t));
}

static int dispatched(void *arg)
{
    return ((struct router *)arg)->dispatched > 0;
}

static int refused(void *arg)
{
    return ((struct router *)arg)->refused > 0;
}

static void test_park_redispatch_when_leader_appears(void **state)
{
    (void)state;
    struct harness h;
    struct router t;
    harness_init(&h);
    router_init(&h, &t, 5000ull * 1000000ull);
    assert_true(tandem_park(&t.park, &t.requests[0]));
    harness_run_for(&h, 3 * TANDEM_PARK_RETRY_MS);
    assert_true(t.redispatches >= 1); /* tried again, still waiting */
    assert_int_equal(t.dispatched, 0);
    assert_int_equal(t.park.count, 1);
    t.leader = 1;
    assert_true(harness_run_until(&h, dispatched, &t));
    assert_int_equal(t.dispatched, 1);
    assert_int_equal(t.park.count, 0);
    assert_int_equal(t.answered, 0);
    assert_false(uv_is_active((uv_handle_t *)&t.park.timer)); /* idle when empty */
    router_close(&h, &t);
    harness_close(&h);
}

static void test_park_bound_answers_503(void **state)
{
    (void)state;
    struct harness h;
    struct router t;
    const uint64_t wait_ns = 60ull * 1000000ull;
    harness_init(&h);
    router_init(&h, &t, wait_ns);
    assert_true(tandem_park(&t.park, &t.requests[0]));
    assert_true(harness_run_until(&h, refused, &t));
    assert_true(uv_hrtime() - t.requests[0].start_ns >= wait_ns);
    assert_int_equal(t.last_status, 503);
    assert_string_equal(t.last_headers, "Retry-After: 1\r\n");
    assert_int_equal(t.park.expired_total, 1);
    assert_int_equal(t.park.count, 0);
    router_close(&h, &t);
    harness_close(&h);
}

static void test_park_limit_refuses(void **state)
{
    (void)state;
    struct harness h;
    struct router t;
    harness_init(&h);
    router_init(&h, &t, 5000ull * 1000000ull);
    t.park.limit = REQUESTS - 1;
    for (unsigned i = 0; i < REQUESTS - 1; i++) {
        assert_true(tandem_park(&t.park, &t.requests[i]));
    }
    assert_false(tandem_park(&t.park, &t.requests[REQUESTS - 1])); /* the caller answers 503 */
    assert_int_equal(t.park.count, REQUESTS - 1);
    assert_int_equal(t.park.parked_total, REQUESTS - 1);
    router_close(&h, &t);
    assert_int_equal(t.answered, REQUESTS - 1); /* every parked one, at shutdown */
    harness_close(&h);
}

static void test_park_close_answers_and_refuses(void **state)
{
    (void)state;
    struct harness h;
    struct router t;
    harness_init(&h);
    router_init(&h, &t, 5000ull * 1000000ull);
    assert_true(tandem_park(&t.park, &t.requests[0]));
    tandem_park_close(&t.park, park_closed_cb);
    assert_int_equal(t.answered, 1);
    assert_int_equal(t.last_status, 503);
    assert_string_equal(t.last_headers, "Retry-After: 1\r\n");
    assert_string_equal(t.last_json, "{\"error\":\"node is shutting down\"}");
    assert_false(tandem_park(&t.park, &t.requests[1])); /* closing: refused */
    assert_int_equal(t.park.expired_total, 0);
    assert_true(harness_run_until(&h, router_closed, &t));
    harness_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_park_redispatch_when_leader_appears),
        cmocka_unit_test(test_park_bound_answers_503),
        cmocka_unit_test(test_park_limit_refuses),
        cmocka_unit_test(test_park_close_answers_and_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
