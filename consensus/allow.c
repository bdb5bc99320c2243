/* Source allow-lists: parsing "a.b.c.d/n, x::/n" lists and matching accepted sources against
 * them (consensus/allow.h). */
#include "consensus/allow.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "storage/error.h"

#define ENTRY_TEXT_MAX 63 /* the longest IPv6 text (45) plus "/128", with room to spare */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Reads a decimal prefix length of 1..3 digits, no sign; -1 when it is not one. */
static int parse_prefix(const char *text)
{
    size_t len = strlen(text);
    if (len == 0 || len > 3) {
        return -1;
    }
    int value = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return -1;
        }
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

/* Whether any bit of addr past the first prefix bits is set. */
static bool host_bits_set(const uint8_t *addr, unsigned bytes, unsigned prefix)
{
    for (unsigned bit = prefix; bit < bytes * 8; bit++) {
        if (addr[bit / 8] & (0x80u >> (bit % 8))) {
            return true;
        }
    }
    return false;
}

/* Parses one trimmed entry of len characters into rule number out->n. */
static int parse_entry(struct tandem_allow *out, const char *entry, size_t len, char *errmsg)
{
    char text[ENTRY_TEXT_MAX + 1];
    if (len > ENTRY_TEXT_MAX) {
        return tandem_error_set(errmsg, TANDEM_CONFIG, "\"%.*s...\": too long for an address",
                                ENTRY_TEXT_MAX, entry);
    }
    memcpy(text, entry, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    unsigned n = out->n;
    int family = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
    unsigned bytes = family == AF_INET ? 4 : 16;
    if (inet_pton(family, text, out->rule[n].addr) != 1) {
        return tandem_error_set(errmsg, TANDEM_CONFIG, "\"%.*s\": not an IPv%c address", (int)len,
                                entry, family == AF_INET ? '4' : '6');
    }
    int prefix = slash != NULL ? parse_prefix(slash + 1) : (int)bytes * 8;
    if (prefix < 0 || prefix > (int)bytes * 8) {
        return tandem_error_set(errmsg, TANDEM_CONFIG,
                                "\"%.*s\": the prefix length must be 0 to %u", (int)len, entry,
                                bytes * 8);
    }
    if (host_bits_set(out->rule[n].addr, bytes, (unsigned)prefix)) {
        return tandem_error_set(errmsg, TANDEM_CONFIG,
                                "\"%.*s\": bits set past the /%d prefix (write the network "
                                "address, or the host alone)",
                                (int)len, entry, prefix);
    }
    out->rule[n].family = family;
    out->rule[n].prefix = (unsigned)prefix;
    out->n = n + 1;
    return TANDEM_OK;
}

static int parse_list(struct tandem_allow *out, const char *list, char *errmsg)
{
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        const char *stop = end != NULL ? end : p + strlen(p);
        while (p < stop && is_blank(*p)) {
            p++;
        }
        const char *last = stop;
        while (last > p && is_blank(last[-1])) {
            last--;
        }
        if (last == p) {
            return tandem_error_set(errmsg, TANDEM_CONFIG, "an empty entry in \"%s\"", list);
        }
        if (out->n == TANDEM_ALLOW_RULES_MAX) {
            return tandem_error_set(errmsg, TANDEM_CONFIG, "more than %d entries",
                                    TANDEM_ALLOW_RULES_MAX);
        }
        int rc = parse_entry(out, p, (size_t)(last - p), errmsg);
        if (rc != TANDEM_OK) {
            return rc;
        }
        if (end == NULL) {
            return TANDEM_OK;
        }
        p = end + 1;
    }
}

int tandem_allow_parse(struct tandem_allow *out, const char *list, char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (list == NULL) {
        return TANDEM_OK;
    }
    if (strlen(list) > TANDEM_ALLOW_TEXT_MAX) {
        return tandem_error_set(errmsg, TANDEM_CONFIG, "longer than %d characters",
                                TANDEM_ALLOW_TEXT_MAX);
    }
    const char *p = list;
    while (is_blank(*p)) {
        p++;
    }
    if (*p == '\0') {
        return TANDEM_OK;
    }
    int rc = parse_list(out, list, errmsg);
    if (rc != TANDEM_OK) {
        out->n = 0;
    }
    return rc;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8;
    if (memcmp(a, b, whole) != 0) {
        return false;
    }
    unsigned rest = prefix % 8;
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool tandem_allow_match(const struct tandem_allow *a, const struct sockaddr *sa)
{
    if (a->n == 0) {
        return true;
    }
    const uint8_t *v4 = NULL;
    const uint8_t *v6 = NULL;
    if (sa->sa_family == AF_INET) {
        v4 = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        v6 = in6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            v4 = in6->s6_addr + 12;
        }
    } else {
        return false;
    }
    for (unsigned i = 0; i < a->n; i++) {
        const uint8_t *addr = a->rule[i].family == AF_INET ? v4 : v6;
        if (addr != NULL && prefix_equal(addr, a->rule[i].addr, a->rule[i].prefix)) {
            return true;
        }
    }
    return false;
}
