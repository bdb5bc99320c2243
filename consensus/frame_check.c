/* Checks raft_uv's wire frames (sizes, counts, terms, configurations) before libraft decodes
 * them. The layouts are those of libraft 0.22.1 src/uv_encoding.c and src/configuration.c; the
 * header lengths accepted are exactly those whose decoding reads inside the header. */
#include "consensus/frame_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#define PREAMBLE_ALLOWED_BITS UINT64_C(0x0000000000ff00ff) /* type (byte 0), version (byte 2) */
#define AE_FIXED              48u /* term, prev index, prev term, commit, count, unused */
#define AE_COUNT_OFF          32u
#define ENTRY_HEADER          16u /* term, type, 3 unused bytes, u32 length */
#define IS_FIXED                                                                                   \
    56u /* term, last index, last term, conf index, conf length, data                              \
           length, unused */
#define IS_CONF_OFF   40u
#define CONF_FORMAT   1u
#define CONF_HEAD     9u /* format byte, u64 server count */
#define CONF_ROLE_MAX 2u /* RAFT_STANDBY, RAFT_VOTER, RAFT_SPARE */

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fills why from fmt, which names a and b (in that order) as %llu, or only a, or neither. */
static int bad(char *why, const char *fmt, uint64_t a, uint64_t b)
{
    snprintf(why, TANDEM_FRAME_WHY_SIZE, fmt, (unsigned long long)a, (unsigned long long)b);
    return TANDEM_FRAME_BAD;
}

/* The header lengths each type's decoder reads safely, given the version byte. */
static int header_length_check(unsigned type, unsigned version, uint64_t len, char *why)
{
    bool ok;
    switch (type) {
        case RAFT_REQUEST_VOTE:
            ok = len == 40 || (len == 32 && version == 0);
            break;
        case RAFT_REQUEST_VOTE_RESULT:
            ok = len == 24 || (len == 16 && version <= 1);
            break;
        case RAFT_APPEND_ENTRIES_RESULT:
            ok = len == 32 || (len == 24 && version == 0);
            break;
        case RAFT_TIMEOUT_NOW:
            ok = len == 24;
            break;
        case RAFT_APPEND_ENTRIES:
            ok = len >= AE_FIXED && (len - AE_FIXED) % ENTRY_HEADER == 0 &&
                 (len - AE_FIXED) / ENTRY_HEADER <= TANDEM_FRAME_ENTRIES_MAX;
            break;
        case RAFT_INSTALL_SNAPSHOT:
            ok = len >= IS_FIXED + 24 && len - IS_FIXED <= TANDEM_FRAME_CONF_BYTES_MAX &&
                 (len - IS_FIXED) % 8 == 0;
            break;
        default:
            return bad(why, "unknown message type %llu (version %llu)", type, version);
    }
    return ok ? 0 : bad(why, "message type %llu with a header of %llu bytes", type, len);
}

/* The payload an AppendEntries header announces: the sum of its entries' lengths. */
static int append_payload(const uint8_t *header, uint64_t len, const struct tandem_frame_limits *l,
                          uint64_t *payload, char *why)
{
    uint64_t n = get64(header + AE_COUNT_OFF);
    if (n != (len - AE_FIXED) / ENTRY_HEADER) {
        return bad(why, "AppendEntries claims %llu entries in a header for %llu", n,
                   (len - AE_FIXED) / ENTRY_HEADER);
    }
    *payload = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t size = get32(header + AE_COUNT_OFF + 8 + i * ENTRY_HEADER + 12);
        if (size > TANDEM_FRAME_ENTRY_BYTES_MAX) {
            return bad(why, "entry %llu of %llu bytes", i, size);
        }
        *payload += size;
    }
    if (*payload > l->append_bytes_max) {
        return bad(why, "AppendEntries of %llu bytes (at most %llu)", *payload,
                   l->append_bytes_max);
    }
    return 0;
}

static int snapshot_payload(const uint8_t *header, uint64_t len,
                            const struct tandem_frame_limits *l, uint64_t *payload, char *why)
{
    uint64_t conf_len = get64(header + IS_CONF_OFF - 8);
    if (conf_len != len - IS_FIXED) {
        return bad(why, "InstallSnapshot configuration of %llu bytes in a header for %llu",
                   conf_len, len - IS_FIXED);
    }
    *payload = get64(header + IS_CONF_OFF + conf_len);
    if (*payload == 0 || *payload > l->snapshot_bytes_max) {
        return bad(why, "InstallSnapshot of %llu bytes (1 to %llu)", *payload,
                   l->snapshot_bytes_max);
    }
    return 0;
}

int tandem_frame_size(const uint8_t *buf, size_t have, const struct tandem_frame_limits *limits,
                      uint64_t *need, char *why)
{
    if (have < TANDEM_FRAME_PREAMBLE_SIZE) {
        *need = TANDEM_FRAME_PREAMBLE_SIZE;
        return TANDEM_FRAME_MORE;
    }
    uint64_t p0 = get64(buf), header_len = get64(buf + 8), payload = 0;
    unsigned type = (unsigned)(p0 & 0xff), version = (unsigned)((p0 >> 16) & 0xff);
    if ((p0 & ~PREAMBLE_ALLOWED_BITS) != 0) {
        return bad(why, "preamble %#llx has bits besides type and version", p0, 0);
    }
    if (header_length_check(type, version, header_len, why) != 0) {
        return TANDEM_FRAME_BAD;
    }
    if (have < TANDEM_FRAME_PREAMBLE_SIZE + header_len) {
        *need = TANDEM_FRAME_PREAMBLE_SIZE + header_len;
        return TANDEM_FRAME_MORE;
    }
    const uint8_t *header = buf + TANDEM_FRAME_PREAMBLE_SIZE;
    int rv = type == RAFT_APPEND_ENTRIES ? append_payload(header, header_len, limits, &payload, why)
             : type == RAFT_INSTALL_SNAPSHOT
                 ? snapshot_payload(header, header_len, limits, &payload, why)
                 : 0;
    if (rv != 0) {
        return TANDEM_FRAME_BAD;
    }
    *need = TANDEM_FRAME_PREAMBLE_SIZE + header_len + payload;
    return have >= *need ? TANDEM_FRAME_WHOLE : TANDEM_FRAME_MORE;
}

static int id_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int address_compare(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* libraft's configurationDecode refuses a second server with an id or an address already
 * seen, so a configuration with one must not pass (sorted: a frame may hold thousands). */
static int conf_unique(uint64_t *ids, const char **addresses, uint64_t n, char *why)
{
    qsort(ids, (size_t)n, sizeof *ids, id_compare);
    qsort(addresses, (size_t)n, sizeof *addresses, address_compare);
    for (uint64_t i = 1; i < n; i++) {
        if (ids[i] == ids[i - 1]) {
            return bad(why, "configuration names server id %llu twice", ids[i], 0);
        }
        if (strcmp(addresses[i], addresses[i - 1]) == 0) {
            return bad(why, "configuration names an address twice", 0, 0);
        }
    }
    return 0;
}

/* A configuration as configurationEncode writes it: format, count, then per server an id, a
 * NUL-terminated address and a role; zero padding to a multiple of 8. */
static int conf_check(const uint8_t *conf, uint64_t len, char *why)
{
    uint64_t ids[TANDEM_FRAME_SERVERS_MAX];
    const char *addresses[TANDEM_FRAME_SERVERS_MAX];
    if (len < CONF_HEAD || conf[0] != CONF_FORMAT) {
        return bad(why, "configuration of %llu bytes, format %llu", len, len > 0 ? conf[0] : 0);
    }
    uint64_t n = get64(conf + 1), at = CONF_HEAD;
    if (n == 0 || n > TANDEM_FRAME_SERVERS_MAX) {
        return bad(why, "configuration of %llu servers (1 to %llu)", n, TANDEM_FRAME_SERVERS_MAX);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (len - at < 8 || get64(conf + at) == 0) {
            return bad(why, "configuration server %llu: no id at byte %llu", i, at);
        }
        ids[i] = get64(conf + at);
        at += 8;
        addresses[i] = (const char *)conf + at;
        const uint8_t *nul = memchr(conf + at, 0, len - at);
        if (nul == NULL || nul == conf + at || (uint64_t)(nul - conf) + 1 >= len) {
            return bad(why, "configuration server %llu: no address at byte %llu", i, at);
        }
        at = (uint64_t)(nul - conf) + 1;
        if (conf[at] > CONF_ROLE_MAX) {
            return bad(why, "configuration server %llu: role %llu", i, conf[at]);
        }
        at++;
    }
    if ((at + 7) / 8 * 8 != len) {
        return bad(why, "configuration of %llu bytes for %llu", len, at);
    }
    if (conf_unique(ids, addresses, n, why) != 0) {
        return TANDEM_FRAME_BAD;
    }
    for (uint64_t k = at; k < len; k++) {
        if (conf[k] != 0) {
            return bad(why, "configuration: padding byte %llu is not zero", k, 0);
        }
    }
    return 0;
}

static int append_check(const uint8_t *header, uint64_t header_len, const uint8_t *payload,
                        uint64_t term, char *why)
{
    uint64_t n = (header_len - AE_FIXED) / ENTRY_HEADER, offset = 0;
    if (get64(header + 16) > term) {
        return bad(why, "AppendEntries previous term %llu above its term %llu", get64(header + 16),
                   term);
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *entry = header + AE_COUNT_OFF + 8 + i * ENTRY_HEADER;
        uint32_t size = get32(entry + 12);
        if (get64(entry) > term || get64(entry) == 0) {
            return bad(why, "entry %llu of term %llu", i, get64(entry));
        }
        if (entry[8] != RAFT_COMMAND && entry[8] != RAFT_BARRIER && entry[8] != RAFT_CHANGE) {
            return bad(why, "entry %llu of type %llu", i, entry[8]);
        }
        if (entry[9] != 0 || entry[10] != 0 || entry[11] != 0) {
            return bad(why, "entry %llu: unused bytes set", i, 0);
        }
        if (entry[8] == RAFT_CHANGE && conf_check(payload + offset, size, why) != 0) {
            return TANDEM_FRAME_BAD;
        }
        offset += size;
    }
    return 0;
}

int tandem_frame_check(const uint8_t *frame, size_t len, uint64_t term_max, char *why)
{
    uint64_t header_len = get64(frame + 8);
    unsigned type = frame[0];
    const uint8_t *header = frame + TANDEM_FRAME_PREAMBLE_SIZE;
    uint64_t term = get64(header);
    if (len < TANDEM_FRAME_PREAMBLE_SIZE + header_len) {
        return bad(why, "frame of %llu bytes for a header of %llu", len, header_len);
    }
    bool result = type == RAFT_REQUEST_VOTE_RESULT || type == RAFT_APPEND_ENTRIES_RESULT;
    if ((term == 0 && !result) || term > term_max) { /* a fresh voter answers at term 0 */
        return bad(why, "term %llu (at most %llu now)", term, term_max);
    }
    switch (type) {
        case RAFT_REQUEST_VOTE:
            if (get64(header + 24) > term || (header_len == 40 && get64(header + 32) > 3)) {
                return bad(why, "RequestVote with last term %llu, flags %llu", get64(header + 24),
                           header_len == 40 ? get64(header + 32) : 0);
            }
            return 0;
        case RAFT_TIMEOUT_NOW:
            return get64(header + 16) > term
                       ? bad(why, "TimeoutNow last term %llu above its term %llu",
                             get64(header + 16), term)
                       : 0;
        case RAFT_APPEND_ENTRIES:
            return append_check(header, header_len, header + header_len, term, why);
        case RAFT_INSTALL_SNAPSHOT:
            if (get64(header + 16) > term || get64(header + 24) > get64(header + 8)) {
                return bad(why, "InstallSnapshot last term %llu, configuration index %llu",
                           get64(header + 16), get64(header + 24));
            }
            return conf_check(header + IS_CONF_OFF, header_len - IS_FIXED, why);
        default:
            return 0; /* results: their sizes were all there is to check */
    }
}
