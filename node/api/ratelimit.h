/* Request rate per credential (rate_limit_rps, rate_limit_burst): one token bucket per user
 * certificate in a bounded table; the bucket idle longest is evicted to make room. */
#ifndef TANDEM_NODE_API_RATELIMIT_H
#define TANDEM_NODE_API_RATELIMIT_H

#include <stdint.h>

#include "consensus/tls.h"
#include "storage/list.h"

#define TANDEM_RATE_BUCKETS_MAX 4096 /* credentials tracked at once; a full table evicts */
#define TANDEM_RATE_CHAINS      1024 /* hash chains, a power of two */

struct tandem_rate_bucket {
    struct tandem_list chain_link; /* in its hash chain */
    struct tandem_list lru_link;   /* in lru, most recently used first */
    struct tandem_tls_peer peer;
    double tokens;
    uint64_t last_ns;
};

struct tandem_rate_limit {
    unsigned rps;   /* tokens added per second; 0: no limit */
    unsigned burst; /* a bucket's size */
    struct tandem_list chains[TANDEM_RATE_CHAINS];
    struct tandem_list lru; /* owned tandem_rate_bucket */
    unsigned buckets;
    uint64_t seed;
    uint64_t limited; /* requests refused (tandem_http_rate_limited_total) */
    uint64_t evicted; /* buckets evicted to make room */
};

/* rps 0 turns limiting off. Nothing to free until a bucket exists. */
void tandem_rate_limit_init(struct tandem_rate_limit *rl, unsigned rps, unsigned burst);
void tandem_rate_limit_free(struct tandem_rate_limit *rl);

/* Takes a token for peer at now_ns. Returns 0 when the request may run, else the whole seconds
 * (>= 1) until a token is back (Retry-After), counted in limited. Only user certificates are
 * limited: no credential (health checks, the insecure mode) and node certificates (forwarding,
 * probes, whose users the first node limited) pass. Out of memory for a new bucket passes too:
 * the limit protects the node, and refusing everyone then would not. */
unsigned tandem_rate_limit_take(struct tandem_rate_limit *rl, const struct tandem_tls_peer *peer,
                                uint64_t now_ns);

#endif
