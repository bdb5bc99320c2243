/* Source allow-lists (api_allow, raft_allow): a parsed list of IPv4/IPv6 CIDR rules and the check
 * a listener makes on a connection's source address right after accept, before any TLS. */
#ifndef TANDEM_CONSENSUS_ALLOW_H
#define TANDEM_CONSENSUS_ALLOW_H

#include <stdbool.h>
#include <stdint.h>

#include <sys/socket.h>

#define TANDEM_ALLOW_RULES_MAX 64   /* rules in one list; more is a configuration error */
#define TANDEM_ALLOW_TEXT_MAX  4096 /* characters in one list */

struct tandem_allow {
    unsigned n; /* 0 = every source allowed */
    struct {
        int family;       /* AF_INET or AF_INET6 */
        uint8_t addr[16]; /* network bytes; 4 used for AF_INET */
        unsigned prefix;  /* 0..32 or 0..128 */
    } rule[TANDEM_ALLOW_RULES_MAX];
};

/* Parses a comma-separated list of "a.b.c.d/n", "x::/n" or single addresses (= /32, /128);
 * spaces and tabs around entries are ignored; "" (or only blanks) allows every source (n = 0).
 * An entry with bits set past its prefix ("10.0.0.5/24") is refused rather than masked: the
 * operator meant either the host or the network, and guessing would widen or narrow the list
 * silently. Returns TANDEM_OK, or TANDEM_CONFIG with errmsg (TANDEM_ERRMSG_SIZE) naming the bad
 * entry; out is then empty (n = 0) and must not be used. */
int tandem_allow_parse(struct tandem_allow *out, const char *list, char *errmsg);

/* Whether sa (AF_INET or AF_INET6; anything else never matches a non-empty list) is allowed.
 * n == 0 -> true. An IPv4-mapped IPv6 source (::ffff:a.b.c.d) is matched as IPv4 against IPv4
 * rules (a dual-stack listener sees IPv4 clients that way), and as IPv6 against IPv6 rules. */
bool tandem_allow_match(const struct tandem_allow *a, const struct sockaddr *sa);

#endif
