/* Token buckets per credential with a bounded, hashed table and eviction of the bucket idle
 * longest (node/api/ratelimit.h). */
#include "node/api/ratelimit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <uv.h>

static struct tandem_rate_bucket *bucket_of_chain(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_rate_bucket, chain_link);
}

static struct tandem_rate_bucket *bucket_of_lru(struct tandem_list *link)
{
    return tandem_list_entry(link, struct tandem_rate_bucket, lru_link);
}

void tandem_rate_limit_init(struct tandem_rate_limit *rl, unsigned rps, unsigned burst)
{
    memset(rl, 0, sizeof *rl);
    rl->rps = rps;
    rl->burst = burst > 0 ? burst : 1;
    for (unsigned i = 0; i < TANDEM_RATE_CHAINS; i++) {
        tandem_list_init(&rl->chains[i]);
    }
    tandem_list_init(&rl->lru);
    if (getrandom(&rl->seed, sizeof rl->seed, GRND_NONBLOCK) != (ssize_t)sizeof rl->seed) {
        rl->seed = uv_hrtime();
    }
}

void tandem_rate_limit_free(struct tandem_rate_limit *rl)
{
    while (!tandem_list_empty(&rl->lru)) {
        struct tandem_rate_bucket *b = bucket_of_lru(tandem_list_pop_front(&rl->lru));
        tandem_list_remove(&b->chain_link);
        free(b);
    }
    rl->buckets = 0;
}

/* FNV-1a over the kind and the name, keyed by the seed. */
static unsigned chain_of(const struct tandem_rate_limit *rl, const struct tandem_tls_peer *peer)
{
    uint64_t h = 14695981039346656037ull ^ rl->seed;
    h = (h ^ (uint64_t)peer->kind) * 1099511628211ull;
    for (const char *p = peer->name; *p != '\0'; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    h ^= h >> 29;
    return (unsigned)(h & (TANDEM_RATE_CHAINS - 1));
}

static struct tandem_rate_bucket *bucket_find(struct tandem_rate_limit *rl, unsigned chain,
                                              const struct tandem_tls_peer *peer)
{
    struct tandem_list *link;
    tandem_list_foreach(link, &rl->chains[chain])
    {
        struct tandem_rate_bucket *b = bucket_of_chain(link);
        if (b->peer.kind == peer->kind && strcmp(b->peer.name, peer->name) == 0) {
            return b;
        }
    }
    return NULL;
}

/* A full bucket for peer: a new one, or the one idle longest when the table is full. */
static struct tandem_rate_bucket *bucket_new(struct tandem_rate_limit *rl, unsigned chain,
                                             const struct tandem_tls_peer *peer, uint64_t now_ns)
{
    struct tandem_rate_bucket *b;
    if (rl->buckets < TANDEM_RATE_BUCKETS_MAX) {
        b = malloc(sizeof *b);
        if (b == NULL) {
            return NULL;
        }
        rl->buckets++;
    } else {
        b = bucket_of_lru(rl->lru.prev);
        tandem_list_remove(&b->lru_link);
        tandem_list_remove(&b->chain_link);
        rl->evicted++;
    }
    b->peer = *peer;
    b->tokens = (double)rl->burst;
    b->last_ns = now_ns;
    tandem_list_push_front(&rl->chains[chain], &b->chain_link);
    tandem_list_push_front(&rl->lru, &b->lru_link);
    return b;
}

unsigned tandem_rate_limit_take(struct tandem_rate_limit *rl, const struct tandem_tls_peer *peer,
                                uint64_t now_ns)
{
    if (rl->rps == 0 || peer->kind != TANDEM_TLS_PEER_USER) {
        return 0;
    }
    unsigned chain = chain_of(rl, peer);
    struct tandem_rate_bucket *b = bucket_find(rl, chain, peer);
    if (b == NULL) {
        b = bucket_new(rl, chain, peer, now_ns);
        if (b == NULL) {
            return 0;
        }
    } else {
        tandem_list_remove(&b->lru_link);
        tandem_list_push_front(&rl->lru, &b->lru_link);
    }
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * rl->rps;
        b->tokens = fmin(b->tokens, (double)rl->burst);
        b->last_ns = now_ns;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    rl->limited++;
    return (unsigned)fmax(1.0, ceil((1.0 - b->tokens) / rl->rps));
}
