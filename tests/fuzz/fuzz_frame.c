/* Fuzz target: the raft frame checker (consensus/frame_check.h), fed as the relay feeds it, with
 * a differential check: every configuration the checker passes, libraft must decode. */
#include <string.h>

#include <raft.h>

#include "consensus/frame_check.h"
#include "fuzz.h"

#define TERM_MAX       ((uint64_t)1 << 20)
#define IS_FIXED       56u /* InstallSnapshot's header before its configuration */
#define IS_CONF_OFF    40u
#define AE_FIXED       48u
#define AE_ENTRIES_OFF 40u
#define ENTRY_HEADER   16u

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* A configuration the checker let through must be one libraft decodes. */
static void conf_decodes(const uint8_t *conf, size_t len)
{
    struct raft_configuration c;
    struct raft_buffer buf = {.base = (void *)conf, .len = len};
    raft_configuration_init(&c);
    if (raft_configuration_decode(&buf, &c) != 0) {
        fprintf(stderr,
                "fuzz_frame: a configuration of %zu bytes passed the check but libraft "
                "cannot decode it\n",
                len);
        abort();
    }
    raft_configuration_close(&c);
}

static void frame_passed(const uint8_t *frame, size_t len)
{
    const uint8_t *header = frame + TANDEM_FRAME_PREAMBLE_SIZE;
    uint64_t header_len = get64(frame + 8);
    if (frame[0] == RAFT_INSTALL_SNAPSHOT) {
        conf_decodes(header + IS_CONF_OFF, (size_t)(header_len - IS_FIXED));
    } else if (frame[0] == RAFT_APPEND_ENTRIES) {
        const uint8_t *payload = header + header_len;
        uint64_t n = (header_len - AE_FIXED) / ENTRY_HEADER, offset = 0;
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *entry = header + AE_ENTRIES_OFF + i * ENTRY_HEADER;
            uint32_t size = (uint32_t)(get64(entry + 8) >> 32); /* bytes 12..15 */
            if (entry[8] == RAFT_CHANGE) {
                conf_decodes(payload + offset, size);
            }
            offset += size;
        }
        if (TANDEM_FRAME_PREAMBLE_SIZE + header_len + offset != len) {
            fprintf(stderr, "fuzz_frame: entries of %llu bytes in a frame of %zu\n",
                    (unsigned long long)offset, len);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct tandem_frame_limits limits = {.append_bytes_max = 1u << 20,
                                                      .snapshot_bytes_max = 1u << 20};
    char why[TANDEM_FRAME_WHY_SIZE];
    /* Frames one after the other, as a stream brings them; each asked about with the bytes it
     * said it needs, never more than are there. */
    while (size > 0) {
        uint64_t need = 0;
        size_t have = size < TANDEM_FRAME_PREAMBLE_SIZE ? size : TANDEM_FRAME_PREAMBLE_SIZE;
        int rv;
        while ((rv = tandem_frame_size(data, have, &limits, &need, why)) == TANDEM_FRAME_MORE) {
            if (need <= have) {
                fprintf(stderr, "fuzz_frame: asks for %llu bytes with %zu in\n",
                        (unsigned long long)need, have);
                abort();
            }
            if (need > size) {
                return 0; /* the stream ends inside the frame */
            }
            have = (size_t)need;
        }
        if (rv == TANDEM_FRAME_BAD) {
            return 0;
        }
        if (rv != TANDEM_FRAME_WHOLE || need > have || need < TANDEM_FRAME_PREAMBLE_SIZE) {
            abort();
        }
        /* The whole frame in a buffer of its own size: ASan sees any read beyond it. */
        uint8_t *frame = malloc((size_t)need);
        memcpy(frame, data, (size_t)need);
        if (tandem_frame_check(frame, (size_t)need, TERM_MAX, why) == 0) {
            frame_passed(frame, (size_t)need);
        }
        free(frame);
        data += need;
        size -= (size_t)need;
    }
    return 0;
}
