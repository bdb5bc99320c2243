/* Unit tests for the source allow-lists (consensus/allow.h): parsing of IPv4 and IPv6 CIDR lists,
 * refusal of bad entries with a message naming them, and matching of v4, v6 and v4-mapped
 * sources. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/allow.h"
#include "storage/error.h"

/* Whether text (an IPv4 or IPv6 address) is allowed by list, which must parse. */
static bool allowed(const char *list, const char *text)
{
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    assert_int_equal(tandem_allow_parse(&allow, list, errmsg), TANDEM_OK);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    return tandem_allow_match(&allow, (const struct sockaddr *)&ss);
}

/* Parsing list fails with TANDEM_CONFIG, an empty result and a message containing needle. */
static void refused(const char *list, const char *needle)
{
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    assert_int_equal(tandem_allow_parse(&allow, list, errmsg), TANDEM_CONFIG);
    assert_int_equal(allow.n, 0);
    if (strstr(errmsg, needle) == NULL) {
        fail_msg("parsing \"%s\": \"%s\" does not name \"%s\"", list, errmsg, needle);
    }
}

static void test_empty_allows_all(void **state)
{
    (void)state;
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_allow_parse(&allow, "", errmsg), TANDEM_OK);
    assert_int_equal(allow.n, 0);
    assert_int_equal(tandem_allow_parse(&allow, " \t ", errmsg), TANDEM_OK);
    assert_int_equal(allow.n, 0);
    assert_true(allowed("", "203.0.113.9"));
    assert_true(allowed("", "2001:db8::1"));
}

/* Which sources each list lets in: IPv4, IPv6, /0, single addresses and IPv4-mapped sources. */
static void test_matching(void **state)
{
    static const struct {
        const char *list, *source;
        bool allowed;
    } cases[] = {
        {"10.0.0.0/8", "10.255.1.2", true},
        {"10.0.0.0/8", "11.0.0.1", false},
        {"192.168.4.0/22", "192.168.7.255", true},
        {"192.168.4.0/22", "192.168.8.0", false},
        {"192.168.4.0/22", "192.168.3.255", false},
        {"127.0.0.1", "127.0.0.1", true}, /* a single address is a /32 */
        {"127.0.0.1", "127.0.0.2", false},
        {"127.0.0.1/32", "127.0.0.1", true},
        {"0.0.0.0/0", "2001:db8::1", false}, /* an IPv4 list says nothing for IPv6 */
        {"2001:db8::/32", "2001:db8:ffff::1", true},
        {"2001:db8::/32", "2001:db9::1", false},
        {"fe80::/10", "febf::1", true},
        {"fe80::/10", "fec0::1", false},
        {"::1", "::1", true}, /* a single address is a /128 */
        {"::1", "::2", false},
        {"::/0", "10.0.0.1", false},
        {"0.0.0.0/0", "203.0.113.9", true},
        {"::/0", "2001:db8::1", true},
        {"0.0.0.0/0, ::/0", "::1", true},
        /* IPv4-mapped IPv6 sources (a dual-stack listener's IPv4 clients) match IPv4 rules. */
        {"127.0.0.1/32", "::ffff:127.0.0.1", true},
        {"127.0.0.1/32", "::ffff:127.0.0.2", false},
        {"10.1.0.0/16", "::ffff:10.1.200.3", true},
        {"::ffff:0:0/96", "::ffff:10.1.200.3", true}, /* and IPv6 rules covering them */
        {"127.0.0.1/32", "::127.0.0.1", false},       /* the compatible form is not mapped */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (allowed(cases[i].list, cases[i].source) != cases[i].allowed) {
            fail_msg("list \"%s\", source %s: expected %s", cases[i].list, cases[i].source,
                     cases[i].allowed ? "allowed" : "refused");
        }
    }
}

static void test_host_bits_refused(void **state)
{
    (void)state;
    refused("10.0.0.5/24", "10.0.0.5/24");
    refused("10.0.0.0/8, 192.168.1.1/16", "192.168.1.1/16");
    refused("2001:db8::1/32", "2001:db8::1/32");
    refused("0.0.0.1/0", "past the /0 prefix");
    /* The network address itself is fine. */
    assert_true(allowed("10.0.0.0/24", "10.0.0.5"));
}

static void test_garbage_refused(void **state)
{
    (void)state;
    refused("localhost", "\"localhost\": not an IPv4 address");
    refused("10.0.0.0/33", "\"10.0.0.0/33\": the prefix length must be 0 to 32");
    refused("::/129", "0 to 128");
    refused("10.0.0.0/", "\"10.0.0.0/\"");
    refused("10.0.0.0/-1", "\"10.0.0.0/-1\"");
    refused("10.0.0.0/+8", "\"10.0.0.0/+8\"");
    refused("10.0.0.0/8x", "\"10.0.0.0/8x\"");
    refused("10.0.0.0/0008", "\"10.0.0.0/0008\"");
    refused("10.0.0", "\"10.0.0\"");
    refused("1.2.3.4.5", "\"1.2.3.4.5\"");
    refused("2001:db8:::1", "not an IPv6 address");
    refused("10.0.0.0/8 11.0.0.0/8", "\"10.0.0.0/8 11.0.0.0/8\"");
    refused("10.0.0.0/8,", "an empty entry");
    refused("10.0.0.0/8,,11.0.0.0/8", "an empty entry");
    refused(",", "an empty entry");
    char longer[200];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    refused(longer, "too long for an address");
}

static void test_too_many_rules(void **state)
{
    (void)state;
    char list[TANDEM_ALLOW_RULES_MAX * 20 + 32];
    size_t len = 0;
    for (unsigned i = 0; i < TANDEM_ALLOW_RULES_MAX; i++) {
        len += (size_t)snprintf(list + len, sizeof list - len, "%s10.0.%u.0/24", i ? "," : "", i);
    }
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_allow_parse(&allow, list, errmsg), TANDEM_OK);
    assert_int_equal(allow.n, TANDEM_ALLOW_RULES_MAX);
    assert_true(allowed(list, "10.0.63.7"));
    snprintf(list + len, sizeof list - len, ",10.1.0.0/16");
    refused(list, "more than 64 entries");
}

static void test_whitespace(void **state)
{
    (void)state;
    const char *list = " \t10.0.0.0/8 ,\t2001:db8::/32\t,  127.0.0.1  ";
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_allow_parse(&allow, list, errmsg), TANDEM_OK);
    assert_int_equal(allow.n, 3);
    assert_int_equal(allow.rule[0].family, AF_INET);
    assert_int_equal(allow.rule[0].prefix, 8);
    assert_int_equal(allow.rule[1].family, AF_INET6);
    assert_int_equal(allow.rule[1].prefix, 32);
    assert_int_equal(allow.rule[2].prefix, 32);
    assert_true(allowed(list, "10.9.9.9"));
    assert_true(allowed(list, "2001:db8::7"));
    assert_true(allowed(list, "127.0.0.1"));
    assert_false(allowed(list, "127.0.0.2"));
    /* Blanks inside an entry are not trimmed away. */
    refused("10.0.0.0 /8", "\"10.0.0.0 /8\"");
}

static void test_other_family_refused(void **state)
{
    (void)state;
    struct tandem_allow allow;
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_allow_parse(&allow, "0.0.0.0/0,::/0", errmsg), TANDEM_OK);
    struct sockaddr unix_like;
    memset(&unix_like, 0, sizeof unix_like);
    unix_like.sa_family = AF_UNIX;
    assert_false(tandem_allow_match(&allow, &unix_like));
    assert_int_equal(tandem_allow_parse(&allow, "", errmsg), TANDEM_OK);
    assert_true(tandem_allow_match(&allow, &unix_like));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_allows_all),     cmocka_unit_test(test_matching),
        cmocka_unit_test(test_host_bits_refused),    cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_too_many_rules),       cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_other_family_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
