/* Checks raft_uv's wire frames before libraft decodes them: libraft 0.22.1 trusts every size and
 * count in a frame (an AppendEntries claiming 0xffffffff entries segfaults inside libraft, and
 * random bytes ask for an allocation of any size), and takes any term, so one frame could pin
 * the cluster's term at its maximum. A frame here is what src/uv_encoding.c writes: a 16-byte
 * preamble (u64 type in byte 0 and version in byte 2, u64 header length), the header, then the
 * payload (AppendEntries: the entries' data; InstallSnapshot: the snapshot). All little-endian.
 *
 * The checker is pure (no I/O): the relay feeds it the bytes it has and learns how many the
 * frame needs, then checks the whole frame once it is in. */
#ifndef TANDEM_CONSENSUS_FRAME_CHECK_H
#define TANDEM_CONSENSUS_FRAME_CHECK_H

#include <stddef.h>
#include <stdint.h>

#define TANDEM_FRAME_PREAMBLE_SIZE 16
/* Ceilings. Entries per AppendEntries: libraft sends at most max_inflight_entries (our config
 * allows up to 65536). An entry is one proposer batch (batch_bytes_max_kib, at most 64 MiB) or a
 * configuration. A configuration names at most TANDEM_FRAME_SERVERS_MAX servers. */
#define TANDEM_FRAME_ENTRIES_MAX     65536u
#define TANDEM_FRAME_ENTRY_BYTES_MAX ((uint64_t)65 * 1024 * 1024)
#define TANDEM_FRAME_SERVERS_MAX     1024u
#define TANDEM_FRAME_CONF_BYTES_MAX  ((uint64_t)1024 * 1024)
#define TANDEM_FRAME_WHY_SIZE        160
/* How far above our own term a frame's term may be: with pre-vote on, terms grow one per
 * successful election, so an honest peer is never a million ahead; a forged term is refused
 * before raft adopts it (it would hold every node near 2^64 for good). */
#define TANDEM_FRAME_TERM_JUMP_MAX ((uint64_t)1 << 20)

struct tandem_frame_limits {
    uint64_t append_bytes_max;   /* payload of one AppendEntries */
    uint64_t snapshot_bytes_max; /* payload of one InstallSnapshot */
};

enum {
    TANDEM_FRAME_MORE = 1, /* *need says how many bytes the frame has at least */
    TANDEM_FRAME_WHOLE,    /* *need is the frame's exact size, and that many bytes are in */
    TANDEM_FRAME_BAD,      /* why says what is wrong; the connection must be dropped */
};

/* Looks at the first have bytes of a frame. Returns TANDEM_FRAME_MORE with *need > have (read
 * that many, then ask again), TANDEM_FRAME_WHOLE with *need <= have, or TANDEM_FRAME_BAD with
 * why (TANDEM_FRAME_WHY_SIZE bytes): a type, version or header length libraft cannot decode
 * safely, or a size over a ceiling. Every size is judged before a byte of it is buffered. */
int tandem_frame_size(const uint8_t *buf, size_t have, const struct tandem_frame_limits *limits,
                      uint64_t *need, char *why);

/* Checks a whole frame (tandem_frame_size said TANDEM_FRAME_WHOLE; len is its size): every
 * term at most term_max, entry terms not above the message's, entry types, and the encoding of
 * every configuration (InstallSnapshot's, and RAFT_CHANGE entries') within its bounds. Returns
 * 0, or -1 with why. */
int tandem_frame_check(const uint8_t *frame, size_t len, uint64_t term_max, char *why);

#endif
