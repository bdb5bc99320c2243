/* Unit tests for the rate limit per credential (node/api/ratelimit.h) on a clock given by hand:
 * burst then rate, Retry-After seconds, who is exempt, separate buckets, and eviction of the
 * bucket idle longest when the table is full. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/api/ratelimit.h"

#define SECOND_NS 1000000000ull
#define T0        (1000 * SECOND_NS)

static struct tandem_tls_peer peer(enum tandem_tls_peer_kind kind, const char *name)
{
    struct tandem_tls_peer p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    snprintf(p.name, sizeof p.name, "%s", name);
    return p;
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    struct tandem_rate_limit rl;
    tandem_rate_limit_init(&rl, 2, 3);
    struct tandem_tls_peer alice = peer(TANDEM_TLS_PEER_USER, "alice");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0), 0);
    }
    assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0), 1); /* half a second: 1 s */
    assert_int_equal(rl.limited, 1);
    assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0 + SECOND_NS / 4), 1);
    assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0 + SECOND_NS / 2), 0);
    assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0 + SECOND_NS / 2), 1);
    /* A long pause refills to the burst, no further. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0 + 100 * SECOND_NS), 0);
    }
    assert_int_equal(tandem_rate_limit_take(&rl, &alice, T0 + 100 * SECOND_NS), 1);
    assert_int_equal(rl.limited, 4);
    tandem_rate_limit_free(&rl);
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    struct tandem_rate_limit rl;
    tandem_rate_limit_init(&rl, 1, 1);
    struct tandem_tls_peer bob = peer(TANDEM_TLS_PEER_USER, "bob");
    assert_int_equal(tandem_rate_limit_take(&rl, &bob, T0), 0);
    assert_int_equal(tandem_rate_limit_take(&rl, &bob, T0), 1);
    assert_int_equal(tandem_rate_limit_take(&rl, &bob, T0 + SECOND_NS / 10), 1); /* rounded up */
    assert_int_equal(tandem_rate_limit_take(&rl, &bob, T0 + SECOND_NS), 0);
    /* A clock that goes back takes nothing away and adds nothing. */
    assert_int_equal(tandem_rate_limit_take(&rl, &bob, T0), 1);
    tandem_rate_limit_free(&rl);
}

static void test_exempt_and_separate(void **state)
{
    (void)state;
    struct tandem_rate_limit rl;
    tandem_rate_limit_init(&rl, 1, 1);
    struct tandem_tls_peer user = peer(TANDEM_TLS_PEER_USER, "east-1");
    struct tandem_tls_peer node = peer(TANDEM_TLS_PEER_NODE, "east-1");
    struct tandem_tls_peer none = peer(TANDEM_TLS_PEER_NONE, "");
    struct tandem_tls_peer carol = peer(TANDEM_TLS_PEER_USER, "carol");
    assert_int_equal(tandem_rate_limit_take(&rl, &user, T0), 0);
    assert_int_equal(tandem_rate_limit_take(&rl, &user, T0), 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(tandem_rate_limit_take(&rl, &node, T0), 0); /* same name, a node */
        assert_int_equal(tandem_rate_limit_take(&rl, &none, T0), 0);
    }
    assert_int_equal(tandem_rate_limit_take(&rl, &carol, T0), 0); /* a bucket of her own */
    assert_int_equal(rl.buckets, 2);
    tandem_rate_limit_free(&rl);
    /* rps 0: no limit at all. */
    tandem_rate_limit_init(&rl, 0, 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(tandem_rate_limit_take(&rl, &user, T0), 0);
    }
    assert_int_equal(rl.buckets, 0);
    tandem_rate_limit_free(&rl);
}

/* A full table evicts the bucket idle longest: a user seen recently keeps an empty bucket. */
static void test_eviction(void **state)
{
    (void)state;
    struct tandem_rate_limit rl;
    tandem_rate_limit_init(&rl, 1, 1);
    char name[32];
    for (unsigned i = 0; i < TANDEM_RATE_BUCKETS_MAX; i++) {
        snprintf(name, sizeof name, "user-%u", i);
        struct tandem_tls_peer p = peer(TANDEM_TLS_PEER_USER, name);
        assert_int_equal(tandem_rate_limit_take(&rl, &p, T0), 0);
    }
    assert_int_equal(rl.buckets, TANDEM_RATE_BUCKETS_MAX);
    struct tandem_tls_peer first = peer(TANDEM_TLS_PEER_USER, "user-0");
    struct tandem_tls_peer second = peer(TANDEM_TLS_PEER_USER, "user-1");
    assert_int_equal(tandem_rate_limit_take(&rl, &first, T0), 1); /* empty, and now recent */
    struct tandem_tls_peer newcomer = peer(TANDEM_TLS_PEER_USER, "newcomer");
    assert_int_equal(tandem_rate_limit_take(&rl, &newcomer, T0), 0);
    assert_int_equal(rl.buckets, TANDEM_RATE_BUCKETS_MAX);
    assert_int_equal(rl.evicted, 1);
    assert_int_equal(tandem_rate_limit_take(&rl, &first, T0), 1); /* kept: still empty */
    /* user-1 was idle longest: evicted, it comes back with a full bucket. */
    assert_int_equal(tandem_rate_limit_take(&rl, &second, T0), 0);
    assert_int_equal(rl.evicted, 2);
    tandem_rate_limit_free(&rl);
    assert_int_equal(rl.buckets, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_exempt_and_separate),
        cmocka_unit_test(test_eviction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
