/* Unit tests for the point-in-time replay (replication/replay.h): the state it reaches equals a
 * replica's at that index, barriers change nothing, and every refusal (index outside the log's
 * committed range, a compacted or short log, a log of another history) is caught. */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "replication/fsm.h"
#include "replication/replay.h"

#define MAP_SIZE   ((size_t)64 * 1024 * 1024)
#define LOG_LEN    40 /* entries 1..LOG_LEN */
#define BACKUP_AT  10 /* the backup's index */
#define BARRIER_AT 25 /* a barrier: no state change */
#define PROOF_AT   LOG_LEN
#define STORES     3
#define TEXT_MAX   32

struct fixture {
    char root[PATH_MAX];
    struct tandem_store s[STORES]; /* 0 the backup, 1 the log's node, 2 a reference replica */
    struct raft_entry log[LOG_LEN];
    struct tandem_replay_plan plan;
    char errmsg[TANDEM_ERRMSG_SIZE];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Entry i (1-based): a batch putting k<i%7> = v<i>, or a barrier. */
static struct raft_entry entry_make(uint64_t i)
{
    struct raft_entry e = {.term = 1 + i / 16, .type = RAFT_COMMAND};
    char key[TEXT_MAX], value[TEXT_MAX];
    if (i == BARRIER_AT) {
        e.type = RAFT_BARRIER;
        return e;
    }
    snprintf(key, sizeof key, "k%u", (unsigned)(i % 7));
    snprintf(value, sizeof value, "v%u", (unsigned)i);
    Tandem__KvPut put = TANDEM__KV_PUT__INIT;
    Tandem__Command command = TANDEM__COMMAND__INIT, *commands = &command;
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    put.key = (ProtobufCBinaryData){.len = strlen(key), .data = (uint8_t *)key};
    put.value = (ProtobufCBinaryData){.len = strlen(value), .data = (uint8_t *)value};
    command.body_case = TANDEM__COMMAND__BODY_KV_PUT;
    command.kv_put = &put;
    batch.proposer_id = 3;
    batch.serial = i;
    batch.now_ms = 1700000000000 + (int64_t)i;
    batch.n_commands = 1;
    batch.commands = &commands;
    assert_int_equal(tandem_entry_encode(&batch, &e.buf), 0);
    return e;
}

static void apply_to(struct tandem_store *s, const struct raft_entry *log, uint64_t to)
{
    struct tandem_fsm fsm;
    tandem_fsm_init(&fsm, s);
    for (uint64_t i = s->applied_index + 1; i <= to; i++) {
        if (log[i - 1].type == RAFT_COMMAND) {
            int rv = tandem_fsm_apply_entry(&fsm, i, log[i - 1].buf.base, log[i - 1].buf.len);
            assert_int_equal(rv, 0);
        }
    }
    assert_int_equal(tandem_store_commit(s), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/tandem-replay-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    for (int i = 0; i < STORES; i++) {
        char dir[PATH_MAX + 8];
        snprintf(dir, sizeof dir, "%s/%d", f->root, i);
        assert_int_equal(tandem_store_open(&f->s[i], dir, MAP_SIZE), 0);
    }
    for (uint64_t i = 1; i <= LOG_LEN; i++) {
        f->log[i - 1] = entry_make(i);
    }
    apply_to(&f->s[0], f->log, BACKUP_AT);
    apply_to(&f->s[1], f->log, PROOF_AT);
    f->plan.proof_index = f->s[1].applied_index;
    memcpy(f->plan.proof_digest, f->s[1].apply_digest, TANDEM_DIGEST_LEN);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < STORES; i++) {
        tandem_store_close(&f->s[i]);
    }
    for (int i = 0; i < LOG_LEN; i++) {
        raft_free(f->log[i].buf.base);
    }
    (void)nftw(f->root, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void state_digest(struct tandem_store *s, uint8_t out[TANDEM_DIGEST_LEN])
{
    MDB_txn *txn;
    assert_int_equal(tandem_store_read_txn(s, &txn), 0);
    assert_int_equal(tandem_store_state_digest(s, txn, out), 0);
    mdb_txn_abort(txn);
}

static int replay(struct fixture *f, uint64_t first, size_t n, uint64_t to,
                  struct tandem_replay_result *out)
{
    f->plan.to_index = to;
    return tandem_replay(&f->s[0], &f->log[first - 1], first, n, &f->plan, out, f->errmsg);
}

/* Every index from the backup's to the proof's: the replayed state is the replica's there. */
static void test_replay_reaches_the_replicas_state(void **state)
{
    struct fixture *f = *state;
    struct tandem_replay_result r;
    uint8_t got[TANDEM_DIGEST_LEN], want[TANDEM_DIGEST_LEN];
    uint64_t from = BACKUP_AT;
    /* Replays again from where the last one stopped: 13, 19, 25 (a barrier), 31, 37. */
    for (uint64_t to = BACKUP_AT + 3; to <= PROOF_AT; to += 6) {
        assert_int_equal(replay(f, 1, LOG_LEN, to, &r), 0);
        apply_to(&f->s[2], f->log, to);
        assert_int_equal(r.backup_index, from);
        from = r.state_index;
        assert_int_equal(r.state_index, f->s[2].applied_index);
        assert_int_equal(r.state_term, f->log[r.state_index - 1].term);
        state_digest(&f->s[0], got);
        state_digest(&f->s[2], want);
        assert_memory_equal(got, want, sizeof got);
        assert_memory_equal(f->s[0].apply_digest, f->s[2].apply_digest, TANDEM_DIGEST_LEN);
    }
}

/* A barrier is the index asked for: the state stops at the command before it. */
static void test_replay_to_a_barrier(void **state)
{
    struct fixture *f = *state;
    struct tandem_replay_result r;
    assert_int_equal(replay(f, 1, LOG_LEN, BARRIER_AT, &r), 0);
    assert_int_equal(r.state_index, BARRIER_AT - 1);
    assert_int_equal(f->s[0].applied_index, BARRIER_AT - 1);
    assert_int_equal(r.entries_applied, BARRIER_AT - 1 - BACKUP_AT);
}

/* The log may start anywhere up to the backup's index + 1 (the rest was compacted). */
static void test_replay_from_a_trimmed_log(void **state)
{
    struct fixture *f = *state;
    struct tandem_replay_result r;
    assert_int_equal(replay(f, BACKUP_AT + 1, LOG_LEN - BACKUP_AT, PROOF_AT, &r), 0);
    assert_int_equal(r.state_index, PROOF_AT);
}

static void assert_refused(struct fixture *f, int rv, int code, const char *words)
{
    assert_int_equal(rv, code);
    if (strstr(f->errmsg, words) == NULL) {
        fail_msg("'%s' does not say '%s'", f->errmsg, words);
    }
}

/* Refusals before anything is applied: the backup's store stays at its index. */
static void test_replay_refusals_change_nothing(void **state)
{
    struct fixture *f = *state;
    struct tandem_replay_result r;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    state_digest(&f->s[0], before);
    assert_refused(f, replay(f, 1, LOG_LEN, BACKUP_AT - 1, &r), TANDEM_INVALID, "before");
    assert_refused(f, replay(f, 1, LOG_LEN, PROOF_AT + 1, &r), TANDEM_INVALID, "committed");
    assert_refused(f, replay(f, BACKUP_AT + 2, LOG_LEN - BACKUP_AT - 1, PROOF_AT, &r),
                   TANDEM_NOTFOUND, "compacted");
    assert_refused(f, replay(f, 1, PROOF_AT - 1, BACKUP_AT + 1, &r), TANDEM_NOTFOUND, "ends");
    assert_refused(f, replay(f, 1, 0, BACKUP_AT + 1, &r), TANDEM_NOTFOUND, "compacted");
    state_digest(&f->s[0], after);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(f->s[0].applied_index, BACKUP_AT);
}

/* An entry changed after the index asked for is still caught: the chain runs to the proof. */
static void test_replay_catches_another_history(void **state)
{
    struct fixture *f = *state;
    struct tandem_replay_result r;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    struct raft_entry saved = f->log[PROOF_AT - 2];
    state_digest(&f->s[0], before);
    f->log[PROOF_AT - 2] = entry_make(PROOF_AT - 3); /* a different command at PROOF_AT - 1 */
    assert_refused(f, replay(f, 1, LOG_LEN, BACKUP_AT + 5, &r), TANDEM_CORRUPT, "history");
    /* Proven before applied: nothing of the other history reached the state. */
    state_digest(&f->s[0], after);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(f->s[0].applied_index, BACKUP_AT);
    raft_free(f->log[PROOF_AT - 2].buf.base);
    f->log[PROOF_AT - 2] = saved;
    /* A proof from elsewhere (another cluster's node at the same index). */
    f->plan.proof_digest[0] ^= 1;
    assert_refused(f, replay(f, 1, LOG_LEN, BACKUP_AT + 5, &r), TANDEM_CORRUPT, "history");
}

/* Nothing to carry: the backup's own index, proven by an equal digest. */
static void test_replay_at_the_backup_index(void **state)
{
    struct fixture *f = *state;
    struct tandem_replay_result r;
    f->plan.proof_index = BACKUP_AT;
    memcpy(f->plan.proof_digest, f->s[0].apply_digest, TANDEM_DIGEST_LEN);
    assert_int_equal(replay(f, 1, 0, BACKUP_AT, &r), 0);
    assert_int_equal(r.entries_applied, 0);
    assert_int_equal(r.state_index, BACKUP_AT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_reaches_the_replicas_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_to_a_barrier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_from_a_trimmed_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_refusals_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_catches_another_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_at_the_backup_index, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
