/* Open connections counted per source address, so that one address cannot take every
 * connection a listener allows (connections_per_source_max): a fixed open-addressing table. */
#ifndef TANDEM_NODE_HTTP_SOURCES_H
#define TANDEM_NODE_HTTP_SOURCES_H

#include <stdbool.h>
#include <stdint.h>

#include <sys/socket.h>

#define TANDEM_SOURCES_ENTRIES_MAX (1u << 20) /* addresses counted at once, at most */

/* A source address: 16 bytes, IPv4 as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so that a
 * client is one source whichever way a dual-stack listener sees it. */
struct tandem_source {
    uint8_t addr[16];
};

struct tandem_sources_slot {
    struct tandem_source source;
    uint32_t count; /* 0 = free slot */
};

struct tandem_sources {
    struct tandem_sources_slot *slots; /* owned, size a power of two */
    uint32_t mask;                     /* slots - 1 */
    uint32_t used;                     /* slots with count > 0 */
    uint32_t entries_max;              /* used never exceeds it: at most half the slots */
    uint64_t seed;                     /* keys the hash: a client cannot aim at one chain */
};

/* Makes room for entries_max (1..TANDEM_SOURCES_ENTRIES_MAX) addresses at once. Returns 0, or
 * -1 when out of memory (t is then empty and tandem_sources_free is harmless). */
int tandem_sources_init(struct tandem_sources *t, uint32_t entries_max);
void tandem_sources_free(struct tandem_sources *t);

/* The source of sa (AF_INET or AF_INET6). Returns false for any other family. */
bool tandem_source_of(const struct sockaddr *sa, struct tandem_source *out);

/* Counts one more connection from source unless it has max already (or the table is full):
 * returns true when counted. Each true is paired with one tandem_sources_release. */
bool tandem_sources_acquire(struct tandem_sources *t, const struct tandem_source *source,
                            uint32_t max);
void tandem_sources_release(struct tandem_sources *t, const struct tandem_source *source);
/* Connections counted for source now. */
uint32_t tandem_sources_count(const struct tandem_sources *t, const struct tandem_source *source);

#endif
