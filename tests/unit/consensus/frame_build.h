/* Builders of raft_uv wire frames for tests, written from the layouts in libraft 0.22.1
 * src/uv_encoding.c and src/configuration.c (little-endian, 16-byte preamble, header, payload). */
#ifndef TANDEM_TESTS_FRAME_BUILD_H
#define TANDEM_TESTS_FRAME_BUILD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <raft.h>

static inline uint8_t *fb_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
    return p + 8;
}

static inline uint8_t *fb_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
    return p + 4;
}

static inline uint8_t *fb_preamble(uint8_t *p, unsigned type, unsigned version, uint64_t header)
{
    p = fb_put64(p, (uint64_t)type | (uint64_t)version << 16);
    return fb_put64(p, header);
}

/* RequestVote, version 2 (40-byte header). Returns the frame's size. */
static inline size_t fb_request_vote(uint8_t *out, uint64_t term, uint64_t last_term,
                                     uint64_t flags)
{
    uint8_t *p = fb_preamble(out, RAFT_REQUEST_VOTE, 2, 40);
    p = fb_put64(p, term);
    p = fb_put64(p, 7); /* candidate id */
    p = fb_put64(p, 10);
    p = fb_put64(p, last_term);
    p = fb_put64(p, flags);
    return (size_t)(p - out);
}

/* A configuration of n servers "127.0.0.1:900<i>", voters, ids 1..n; returns its padded size. */
static inline size_t fb_conf(uint8_t *out, unsigned n)
{
    uint8_t *p = out;
    *p++ = 1; /* format */
    p = fb_put64(p, n);
    for (unsigned i = 0; i < n; i++) {
        char address[32];
        int len = snprintf(address, sizeof address, "127.0.0.1:900%u", i);
        p = fb_put64(p, i + 1);
        memcpy(p, address, (size_t)len + 1);
        p += len + 1;
        *p++ = RAFT_VOTER;
    }
    size_t size = (size_t)(p - out);
    size_t padded = (size + 7) / 8 * 8;
    memset(p, 0, padded - size);
    return padded;
}

/* AppendEntries of term with n entries of the given types and sizes; payload bytes are 0xab,
 * except RAFT_CHANGE entries, which hold a one-server configuration (sizes[i] is then ignored
 * and set). Returns the frame's size. */
static inline size_t fb_append(uint8_t *out, uint64_t term, unsigned n, const uint8_t *types,
                               uint32_t *sizes)
{
    uint8_t *p = fb_preamble(out, RAFT_APPEND_ENTRIES, 0, 48 + 16 * (uint64_t)n);
    p = fb_put64(p, term);
    p = fb_put64(p, 5);    /* prev index */
    p = fb_put64(p, term); /* prev term */
    p = fb_put64(p, 4);    /* commit */
    p = fb_put64(p, n);
    uint8_t *entries = p;
    p += 16 * (size_t)n;
    p = fb_put64(p, 0); /* unused */
    for (unsigned i = 0; i < n; i++) {
        if (types[i] == RAFT_CHANGE) {
            sizes[i] = (uint32_t)fb_conf(p, 1);
        } else {
            memset(p, 0xab, sizes[i]);
        }
        p += sizes[i];
        uint8_t *e = entries + 16 * (size_t)i;
        e = fb_put64(e, term);
        e[0] = types[i];
        e[1] = e[2] = e[3] = 0;
        fb_put32(e + 4, sizes[i]);
    }
    return (size_t)(p - out);
}

/* InstallSnapshot of term with a configuration of servers and data_len bytes of data. */
static inline size_t fb_install_snapshot(uint8_t *out, uint64_t term, unsigned servers,
                                         uint64_t data_len)
{
    uint8_t conf[1024];
    size_t conf_len = fb_conf(conf, servers);
    uint8_t *p = fb_preamble(out, RAFT_INSTALL_SNAPSHOT, 0, 56 + conf_len);
    p = fb_put64(p, term);
    p = fb_put64(p, 100); /* last index */
    p = fb_put64(p, term);
    p = fb_put64(p, 90); /* configuration index */
    p = fb_put64(p, conf_len);
    memcpy(p, conf, conf_len);
    p += conf_len;
    p = fb_put64(p, data_len);
    p = fb_put64(p, 0);
    memset(p, 0xcd, (size_t)data_len);
    return (size_t)(p - out) + (size_t)data_len;
}

#endif
