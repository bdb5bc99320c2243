/* Open connections per source address: linear probing with backward-shift deletion, so the table
 * never fills with tombstones however often clients come and go (node/http/sources.h). */
#include "node/http/sources.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <uv.h>

#include "storage/assert.h"

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint32_t home_of(const struct tandem_sources *t, const struct tandem_source *source)
{
    uint64_t high, low;
    memcpy(&high, source->addr, 8);
    memcpy(&low, source->addr + 8, 8);
    return (uint32_t)(mix(mix(high ^ t->seed) ^ low) & t->mask);
}

int tandem_sources_init(struct tandem_sources *t, uint32_t entries_max)
{
    tandem_assert(entries_max >= 1 && entries_max <= TANDEM_SOURCES_ENTRIES_MAX);
    memset(t, 0, sizeof *t);
    uint32_t slots = 2;
    while (slots < 2 * entries_max) {
        slots *= 2;
    }
    t->slots = calloc(slots, sizeof *t->slots);
    if (t->slots == NULL) {
        return -1;
    }
    t->mask = slots - 1;
    t->entries_max = entries_max;
    if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed) {
        t->seed = uv_hrtime(); /* unkeyed only in the sense of guessable: still correct */
    }
    return 0;
}

void tandem_sources_free(struct tandem_sources *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}

bool tandem_source_of(const struct sockaddr *sa, struct tandem_source *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out->addr, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

/* The slot holding source, or the free slot where it would go. */
static uint32_t slot_find(const struct tandem_sources *t, const struct tandem_source *source)
{
    uint32_t i = home_of(t, source);
    /* Bounded: used <= entries_max <= half the slots, so a free slot is always met. */
    while (t->slots[i].count != 0 &&
           memcmp(t->slots[i].source.addr, source->addr, sizeof source->addr) != 0) {
        i = (i + 1) & t->mask;
    }
    return i;
}

bool tandem_sources_acquire(struct tandem_sources *t, const struct tandem_source *source,
                            uint32_t max)
{
    if (t->slots == NULL) {
        return false;
    }
    uint32_t i = slot_find(t, source);
    struct tandem_sources_slot *slot = &t->slots[i];
    if (slot->count == 0) {
        if (t->used >= t->entries_max || max == 0) {
            return false;
        }
        slot->source = *source;
        t->used++;
    } else if (slot->count >= max) {
        return false;
    }
    slot->count++;
    return true;
}

/* Whether the entry in slot j, whose home slot is k, may move back into the hole at i: k is not
 * cyclically within (i, j]. */
static bool may_fill(uint32_t i, uint32_t j, uint32_t k)
{
    return i <= j ? (k <= i || k > j) : (k <= i && k > j);
}

void tandem_sources_release(struct tandem_sources *t, const struct tandem_source *source)
{
    uint32_t i = slot_find(t, source);
    tandem_assert(t->slots[i].count > 0); /* every release pairs with an acquire */
    if (--t->slots[i].count > 0) {
        return;
    }
    t->used--;
    for (uint32_t j = (i + 1) & t->mask; t->slots[j].count != 0; j = (j + 1) & t->mask) {
        if (may_fill(i, j, home_of(t, &t->slots[j].source))) {
            t->slots[i] = t->slots[j];
            t->slots[j].count = 0;
            i = j;
        }
    }
}

uint32_t tandem_sources_count(const struct tandem_sources *t, const struct tandem_source *source)
{
    if (t->slots == NULL) {
        return 0;
    }
    return t->slots[slot_find(t, source)].count;
}
