/* Unit tests of consensus/frame_check.c: every frame libraft 0.22.1 writes passes, whole and in
 * every split; each hostile frame of the channel-security review (0xffffffff entries, random
 * bytes after a hello, a term near 2^64) and each malformed field is refused before a byte of
 * its claimed size would be buffered; and random bytes never pass a frame on unchecked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/frame_check.h"
#include "tests/unit/consensus/frame_build.h"

#define BUF_MAX (256 * 1024)

static const struct tandem_frame_limits limits = {
    .append_bytes_max = 64 * 1024,
    .snapshot_bytes_max = 128 * 1024,
};

static uint8_t buf[BUF_MAX];

/* A good frame passes whole, and every shorter prefix asks for more, never for less than it has
 * and never for more than the frame. */
static void assert_good(const uint8_t *frame, size_t len, uint64_t term_max)
{
    char why[TANDEM_FRAME_WHY_SIZE] = "";
    uint64_t need = 0;
    for (size_t have = 0; have < len; have += (have < 200 ? 1 : 997)) {
        int rv = tandem_frame_size(frame, have, &limits, &need, why);
        assert_int_equal(rv, TANDEM_FRAME_MORE);
        assert_true(need > have && need <= len);
    }
    assert_int_equal(tandem_frame_size(frame, len, &limits, &need, why), TANDEM_FRAME_WHOLE);
    assert_int_equal(need, len);
    if (tandem_frame_check(frame, len, term_max, why) != 0) {
        fail_msg("good frame refused: %s", why);
    }
}

/* A frame refused by its size (with enough bytes to judge) or by the whole-frame check. */
static void assert_refused(const uint8_t *frame, size_t len, uint64_t term_max, const char *what)
{
    char why[TANDEM_FRAME_WHY_SIZE] = "";
    uint64_t need = 0;
    int rv = tandem_frame_size(frame, len, &limits, &need, why);
    if (rv == TANDEM_FRAME_BAD) {
        assert_true(why[0] != '\0');
        return;
    }
    if (rv == TANDEM_FRAME_WHOLE && tandem_frame_check(frame, (size_t)need, term_max, why) != 0) {
        assert_true(why[0] != '\0');
        return;
    }
    fail_msg("%s passed (size %d, need %llu)", what, rv, (unsigned long long)need);
}

static void test_every_message_type_passes(void **state)
{
    (void)state;
    uint8_t types[4] = {RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE, RAFT_COMMAND};
    uint32_t sizes[4] = {100, 8, 0, 3000};
    assert_good(buf, fb_request_vote(buf, 5, 4, 3), 5);
    assert_good(buf, fb_append(buf, 5, 4, types, sizes), 5);
    assert_good(buf, fb_append(buf, 5, 0, types, sizes), 5); /* a heartbeat */
    assert_good(buf, fb_install_snapshot(buf, 5, 3, 4096), 5);
    uint8_t *p = fb_preamble(buf, RAFT_APPEND_ENTRIES_RESULT, 2, 32);
    memset(p, 0, 32);
    fb_put64(p, 5);
    assert_good(buf, 48, 5);
    p = fb_preamble(buf, RAFT_REQUEST_VOTE_RESULT, 2, 24);
    memset(p, 0, 24); /* term 0: a fresh voter's answer to a pre-vote */
    assert_good(buf, 40, 5);
    p = fb_preamble(buf, RAFT_TIMEOUT_NOW, 0, 24);
    fb_put64(fb_put64(fb_put64(p, 5), 9), 5);
    assert_good(buf, 40, 5);
}

/* The review's frames: each killed or pinned a node on main. */
static void test_hostile_frames_from_the_review(void **state)
{
    (void)state;
    char why[TANDEM_FRAME_WHY_SIZE];
    uint64_t need = 0;
    /* AppendEntries claiming 0xffffffff entries: refused from its preamble alone. */
    uint8_t *p = fb_preamble(buf, RAFT_APPEND_ENTRIES, 0, 48 + 16 * (uint64_t)0xffffffff);
    memset(p, 0, 48);
    assert_int_equal(tandem_frame_size(buf, 16, &limits, &need, why), TANDEM_FRAME_BAD);
    /* ... or with a header of the right size for a small count but the big count inside. */
    uint8_t types[1] = {RAFT_COMMAND};
    uint32_t sizes[1] = {10};
    size_t len = fb_append(buf, 5, 1, types, sizes);
    fb_put64(buf + 16 + 32, 0xffffffff);
    assert_refused(buf, len, 5, "entry count above the header");
    /* A term of 2^64-2 with the disrupt-leader flag. */
    assert_refused(buf, fb_request_vote(buf, UINT64_MAX - 1, 1, 1), 5 + TANDEM_FRAME_TERM_JUMP_MAX,
                   "term 2^64-2");
    /* An entry of 4 GiB - 1 bytes, and a payload over the ceiling. */
    sizes[0] = 10;
    len = fb_append(buf, 5, 1, types, sizes);
    fb_put32(buf + 16 + 40 + 12, 0xffffffff);
    assert_int_equal(tandem_frame_size(buf, 16 + 64, &limits, &need, why), TANDEM_FRAME_BAD);
    fb_put32(buf + 16 + 40 + 12, (uint32_t)limits.append_bytes_max + 1);
    assert_int_equal(tandem_frame_size(buf, 16 + 64, &limits, &need, why), TANDEM_FRAME_BAD);
    /* A snapshot over its ceiling, announced in the header. */
    uint8_t conf[64];
    size_t conf_len = fb_conf(conf, 1);
    len = fb_install_snapshot(buf, 5, 1, 16);
    fb_put64(buf + 16 + 40 + conf_len, limits.snapshot_bytes_max + 1);
    assert_int_equal(tandem_frame_size(buf, len, &limits, &need, why), TANDEM_FRAME_BAD);
}

static void test_malformed_fields_refused(void **state)
{
    (void)state;
    uint8_t types[2] = {RAFT_COMMAND, RAFT_CHANGE};
    uint32_t sizes[2] = {16, 0};
    size_t len;
    /* Unknown type; bits outside type and version; header lengths libraft would over-read. */
    fb_preamble(buf, 9, 0, 24);
    assert_refused(buf, 40, 5, "type 9");
    len = fb_request_vote(buf, 5, 4, 0);
    buf[1] = 1;
    assert_refused(buf, len, 5, "preamble byte 1");
    fb_preamble(buf, RAFT_REQUEST_VOTE, 2, 32);
    assert_refused(buf, 48, 5, "RequestVote v2 with a v1 header");
    fb_preamble(buf, RAFT_APPEND_ENTRIES_RESULT, 2, 24);
    assert_refused(buf, 40, 5, "AppendEntriesResult v2 with a v0 header");
    fb_preamble(buf, RAFT_APPEND_ENTRIES, 0, 50);
    assert_refused(buf, 66, 5, "AppendEntries header not whole entries");
    /* Terms: an entry above the message's, a zero term, a last log term above the term. */
    len = fb_append(buf, 5, 2, types, sizes);
    fb_put64(buf + 16 + 40, 6);
    assert_refused(buf, len, 5, "entry term above the message term");
    assert_refused(buf, fb_request_vote(buf, 0, 0, 0), 5, "term 0");
    assert_refused(buf, fb_request_vote(buf, 5, 6, 0), 5, "last term above term");
    assert_refused(buf, fb_request_vote(buf, 5, 4, 4), 5, "unknown RequestVote flag");
    /* Entry type and unused bytes. */
    len = fb_append(buf, 5, 2, types, sizes);
    buf[16 + 40 + 8] = 9;
    assert_refused(buf, len, 5, "entry type 9");
    len = fb_append(buf, 5, 2, types, sizes);
    buf[16 + 40 + 9] = 1;
    assert_refused(buf, len, 5, "entry unused byte");
}

/* A configuration libraft would read past: in a RAFT_CHANGE entry and in InstallSnapshot. */
static void test_malformed_configurations_refused(void **state)
{
    (void)state;
    uint8_t types[1] = {RAFT_CHANGE};
    uint32_t sizes[1] = {0};
    size_t header = 16 + 48 + 16, len = fb_append(buf, 5, 1, types, sizes);
    uint8_t *conf = buf + header;
    static const struct {
        size_t off;
        uint8_t value;
        const char *what;
    } pokes[] = {
        {0, 2, "format 2"},
        {1, 9, "nine servers in a one-server configuration"},
        {9, 0, "id 0 (low byte)"},
        {17, 0, "empty address"},
    };
    for (size_t i = 0; i < sizeof pokes / sizeof pokes[0]; i++) {
        len = fb_append(buf, 5, 1, types, sizes);
        if (pokes[i].off == 9) {
            fb_put64(conf + 9, 0);
        } else {
            conf[pokes[i].off] = pokes[i].value;
        }
        assert_refused(buf, len, 5, pokes[i].what);
    }
    len = fb_append(buf, 5, 1, types, sizes);
    memset(conf + 17, 'x', sizes[0] - 17); /* the address never ends */
    assert_refused(buf, len, 5, "address without its NUL");
    len = fb_append(buf, 5, 1, types, sizes);
    conf[sizes[0] - 1] = 1; /* a padding byte */
    assert_refused(buf, len, 5, "padding not zero");
    len = fb_install_snapshot(buf, 5, 2, 8);
    buf[16 + 40 + 32] = 7; /* the first server's role: format, count, id, "127.0.0.1:9000\0" */
    assert_refused(buf, len, 5, "role 7");
}

/* libraft cannot decode a configuration naming an id or an address twice (the fuzz target
 * fuzz_frame found the checker passing one: tests/fuzz/regressions/frame/). */
static void test_duplicate_servers_refused(void **state)
{
    (void)state;
    uint8_t *conf = buf + 16 + 40; /* servers: id 1 "127.0.0.1:9000", id 2 "127.0.0.1:9001" ... */
    size_t len = fb_install_snapshot(buf, 5, 3, 8);
    assert_good(buf, len, 5);
    fb_put64(conf + 9 + 24, 1); /* the second server's id */
    assert_refused(buf, len, 5, "id 1 twice");
    len = fb_install_snapshot(buf, 5, 3, 8);
    conf[9 + 24 + 8 + 13] = '0'; /* the second server's address ends "9000" too */
    assert_refused(buf, len, 5, "address 127.0.0.1:9000 twice");
    len = fb_install_snapshot(buf, 5, 3, 8);
    fb_put64(conf + 9 + 2 * 24, 1); /* the third server's id, sorted apart from the first */
    assert_refused(buf, len, 5, "id 1 first and last");
}

/* Random bytes (the review sent 4 KiB after a hello): never a frame that passes both checks
 * unless it is one, and never a need beyond the ceilings. Bounded: 20,000 buffers. */
static void test_random_bytes(void **state)
{
    (void)state;
    srand(12345);
    unsigned passed = 0;
    for (unsigned round = 0; round < 20000; round++) {
        size_t len = 16 + (size_t)(rand() % 4096);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)rand();
        }
        if (round % 2 == 0) {
            buf[0] = (uint8_t)(1 + rand() % 6); /* a known type, the rest random */
            memset(buf + 1, 0, 7);
        }
        char why[TANDEM_FRAME_WHY_SIZE];
        uint64_t need = 0;
        int rv = tandem_frame_size(buf, len, &limits, &need, why);
        if (rv == TANDEM_FRAME_MORE) {
            assert_true(need <= 16 + 48 + 16ull * TANDEM_FRAME_ENTRIES_MAX +
                                    limits.snapshot_bytes_max + TANDEM_FRAME_CONF_BYTES_MAX);
        }
        if (rv == TANDEM_FRAME_WHOLE &&
            tandem_frame_check(buf, (size_t)need, TANDEM_FRAME_TERM_JUMP_MAX, why) == 0) {
            passed++;
        }
    }
    assert_true(passed < 100); /* random terms are almost never below 2^20 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_type_passes),
        cmocka_unit_test(test_hostile_frames_from_the_review),
        cmocka_unit_test(test_malformed_fields_refused),
        cmocka_unit_test(test_malformed_configurations_refused),
        cmocka_unit_test(test_duplicate_servers_refused),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
