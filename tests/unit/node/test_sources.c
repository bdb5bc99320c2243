/* Unit tests for the per-source connection counts (node/http/sources.h): limits per address,
 * IPv4 and its mapped form as one source, a full table, and many arrivals and departures checked
 * against a plain array (the backward-shift deletion keeps every entry findable). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "node/http/sources.h"

#define CHURN_SOURCES 300   /* distinct addresses in the churn test */
#define CHURN_STEPS   50000 /* acquire or release steps, bounded */

/* The source of an IPv4 or IPv6 address in text (libuv parses it). */
static struct tandem_source source_at(const char *text)
{
    struct sockaddr_storage ss;
    int rv = strchr(text, ':') != NULL ? uv_ip6_addr(text, 0, (struct sockaddr_in6 *)&ss)
                                       : uv_ip4_addr(text, 0, (struct sockaddr_in *)&ss);
    assert_int_equal(rv, 0);
    struct tandem_source s;
    assert_true(tandem_source_of((const struct sockaddr *)&ss, &s));
    return s;
}

static void test_limit_per_source(void **state)
{
    (void)state;
    struct tandem_sources t;
    assert_int_equal(tandem_sources_init(&t, 16), 0);
    struct tandem_source a = source_at("192.0.2.1"), b = source_at("2001:db8::1");
    assert_true(tandem_sources_acquire(&t, &a, 2));
    assert_true(tandem_sources_acquire(&t, &a, 2));
    assert_false(tandem_sources_acquire(&t, &a, 2));
    assert_int_equal(tandem_sources_count(&t, &a), 2);
    assert_true(tandem_sources_acquire(&t, &b, 2));
    assert_int_equal(tandem_sources_count(&t, &b), 1);
    tandem_sources_release(&t, &a);
    assert_int_equal(tandem_sources_count(&t, &a), 1);
    assert_true(tandem_sources_acquire(&t, &a, 2));
    tandem_sources_release(&t, &a);
    tandem_sources_release(&t, &a);
    tandem_sources_release(&t, &b);
    assert_int_equal(t.used, 0);
    assert_int_equal(tandem_sources_count(&t, &a), 0);
    tandem_sources_free(&t);
}

static void test_v4_mapped_is_one_source(void **state)
{
    (void)state;
    struct tandem_sources t;
    assert_int_equal(tandem_sources_init(&t, 4), 0);
    struct tandem_source plain = source_at("198.51.100.7");
    struct tandem_source mapped = source_at("::ffff:198.51.100.7");
    assert_memory_equal(plain.addr, mapped.addr, sizeof plain.addr);
    assert_true(tandem_sources_acquire(&t, &plain, 1));
    assert_false(tandem_sources_acquire(&t, &mapped, 1));
    struct sockaddr other;
    memset(&other, 0, sizeof other);
    other.sa_family = AF_UNIX;
    assert_false(tandem_source_of(&other, &plain));
    tandem_sources_free(&t);
}

static void test_table_full(void **state)
{
    (void)state;
    struct tandem_sources t;
    assert_int_equal(tandem_sources_init(&t, 3), 0);
    struct tandem_source s[4] = {source_at("10.0.0.1"), source_at("10.0.0.2"),
                                 source_at("10.0.0.3"), source_at("10.0.0.4")};
    for (int i = 0; i < 3; i++) {
        assert_true(tandem_sources_acquire(&t, &s[i], 10));
    }
    assert_false(tandem_sources_acquire(&t, &s[3], 10)); /* a fourth address: no room */
    assert_true(tandem_sources_acquire(&t, &s[0], 10));  /* a known one still counts */
    tandem_sources_release(&t, &s[1]);
    assert_true(tandem_sources_acquire(&t, &s[3], 10));
    tandem_sources_free(&t);
    assert_false(tandem_sources_acquire(&t, &s[0], 10)); /* freed: nothing is counted */
}

/* Random arrivals and departures over few slots (many collisions), compared with an array. */
static void test_churn(void **state)
{
    (void)state;
    struct tandem_sources t;
    assert_int_equal(tandem_sources_init(&t, CHURN_SOURCES), 0);
    static uint32_t expected[CHURN_SOURCES];
    struct tandem_source sources[CHURN_SOURCES];
    for (unsigned i = 0; i < CHURN_SOURCES; i++) {
        memset(&sources[i], 0, sizeof sources[i]);
        sources[i].addr[0] = 0x20;
        sources[i].addr[15] = (uint8_t)i;
        sources[i].addr[14] = (uint8_t)(i >> 8);
    }
    srand(12);
    for (unsigned step = 0; step < CHURN_STEPS; step++) {
        unsigned i = (unsigned)rand() % CHURN_SOURCES;
        if (rand() % 2 == 0) {
            bool counted = tandem_sources_acquire(&t, &sources[i], 3);
            assert_int_equal(counted, expected[i] < 3);
            expected[i] += counted ? 1 : 0;
        } else if (expected[i] > 0) {
            tandem_sources_release(&t, &sources[i]);
            expected[i]--;
        }
        if (step % 997 == 0) {
            uint32_t used = 0;
            for (unsigned k = 0; k < CHURN_SOURCES; k++) {
                assert_int_equal(tandem_sources_count(&t, &sources[k]), expected[k]);
                used += expected[k] > 0;
            }
            assert_int_equal(t.used, used);
        }
    }
    tandem_sources_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_source),
        cmocka_unit_test(test_v4_mapped_is_one_source),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
