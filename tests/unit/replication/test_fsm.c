/* Unit tests for the replicated state machine: entry codec, apply, replay, determinism, kv
 * transactions, the claim hook and snapshots through raft's FSM callbacks. */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "replication/commands.h"
#include "replication/fsm.h"
#include "replication/domain/kv.h"

#define MAP_SIZE       ((size_t)64 * 1024 * 1024)
#define FD_MAX         16  /* descriptors nftw may hold open */
#define ARENA_MAX      512 /* allocations one test's command builders make */
#define SCRIPT_LEN     48  /* entries in the generated workload */
#define SCRIPT_KEYS    7   /* distinct keys the workload touches, so it overwrites and deletes */
#define RESULTS_MAX    16  /* commands in one batch the test claim hook accepts */
#define TEXT_MAX       128 /* bytes of a generated key or value */
#define CRASH_AT       20  /* entries committed before the simulated crash */
#define LONG_KEY_LEN   (TANDEM_KV_KEY_LEN_MAX + 1)
#define TEST_PROPOSER  7
#define OTHER_PROPOSER 8

/* Everything a test allocates for protobuf messages, freed in teardown. */
struct arena {
    void *ptrs[ARENA_MAX];
    size_t n;
};

/* The test claim hook: hands out results only for (id, serial) and records what it saw. */
struct claim {
    uint64_t id, serial;
    unsigned calls, granted;
    uint64_t last_id, last_serial;
    size_t last_n;
    struct tandem_result results[RESULTS_MAX];
};

struct fixture {
    char root[PATH_MAX];
    char dir_a[PATH_MAX], dir_b[PATH_MAX];
    struct tandem_store a, b;
    bool a_open, b_open;
    struct tandem_fsm fa, fb;
    struct arena arena;
    struct claim claim;
    struct raft_buffer script[SCRIPT_LEN];
    char texts[SCRIPT_LEN][2][TEXT_MAX]; /* the script's keys and values */
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void *arena_alloc(struct arena *a, size_t size)
{
    assert_true(a->n < ARENA_MAX);
    void *p = calloc(1, size);
    assert_non_null(p);
    a->ptrs[a->n++] = p;
    return p;
}

static void results_clear(struct claim *c)
{
    for (size_t i = 0; i < RESULTS_MAX; i++) {
        free(c->results[i].body);
        c->results[i].body = NULL;
        c->results[i].status = 0;
    }
}

static struct tandem_result *test_claim(void *data, uint64_t proposer_id, uint64_t serial,
                                        size_t n_commands)
{
    struct claim *c = data;
    c->calls++;
    c->last_id = proposer_id;
    c->last_serial = serial;
    c->last_n = n_commands;
    if (proposer_id != c->id || serial != c->serial || n_commands > RESULTS_MAX) {
        return NULL;
    }
    c->granted++;
    results_clear(c);
    return c->results;
}

static void open_store(struct tandem_store *s, const char *dir, bool *is_open)
{
    int rv = tandem_store_open(s, dir, MAP_SIZE);
    if (rv != 0) {
        fail_msg("tandem_store_open %s: %d %s", dir, rv, s->errmsg);
    }
    *is_open = true;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/tandem-fsm-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir_a, sizeof f->dir_a, "%s/a", f->root);
    snprintf(f->dir_b, sizeof f->dir_b, "%s/b", f->root);
    open_store(&f->a, f->dir_a, &f->a_open);
    open_store(&f->b, f->dir_b, &f->b_open);
    tandem_fsm_init(&f->fa, &f->a);
    tandem_fsm_init(&f->fb, &f->b);
    f->claim.id = TEST_PROPOSER;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->a_open) {
        tandem_store_close(&f->a);
    }
    if (f->b_open) {
        tandem_store_close(&f->b);
    }
    results_clear(&f->claim);
    for (size_t i = 0; i < SCRIPT_LEN; i++) {
        raft_free(f->script[i].base);
    }
    for (size_t i = 0; i < f->arena.n; i++) {
        free(f->arena.ptrs[i]);
    }
    assert_int_equal(nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
    free(f);
    return 0;
}

static ProtobufCBinaryData bin(const char *text)
{
    return (ProtobufCBinaryData){.len = strlen(text), .data = (uint8_t *)text};
}

static Tandem__Command *cmd_put_bin(struct arena *a, ProtobufCBinaryData key,
                                    ProtobufCBinaryData value)
{
    Tandem__Command *c = arena_alloc(a, sizeof *c);
    Tandem__KvPut *put = arena_alloc(a, sizeof *put);
    tandem__command__init(c);
    tandem__kv_put__init(put);
    put->key = key;
    put->value = value;
    c->body_case = TANDEM__COMMAND__BODY_KV_PUT;
    c->kv_put = put;
    return c;
}

static Tandem__Command *cmd_put(struct arena *a, const char *key, const char *value)
{
    return cmd_put_bin(a, bin(key), bin(value));
}

static Tandem__Command *cmd_delete(struct arena *a, const char *key)
{
    Tandem__Command *c = arena_alloc(a, sizeof *c);
    Tandem__KvDelete *del = arena_alloc(a, sizeof *del);
    tandem__command__init(c);
    tandem__kv_delete__init(del);
    del->key = bin(key);
    c->body_case = TANDEM__COMMAND__BODY_KV_DELETE;
    c->kv_delete = del;
    return c;
}

static Tandem__TxnCompare *cmp_value(struct arena *a, const char *key, Tandem__TxnCompare__Op op,
                                     const char *value)
{
    Tandem__TxnCompare *cmp = arena_alloc(a, sizeof *cmp);
    tandem__txn_compare__init(cmp);
    cmp->key = bin(key);
    cmp->target = TANDEM__TXN_COMPARE__TARGET__VALUE;
    cmp->op = op;
    cmp->value = bin(value);
    return cmp;
}

static Tandem__TxnCompare *cmp_mod(struct arena *a, const char *key, Tandem__TxnCompare__Op op,
                                   uint64_t mod_index)
{
    Tandem__TxnCompare *cmp = cmp_value(a, key, op, "");
    cmp->target = TANDEM__TXN_COMPARE__TARGET__MOD_INDEX;
    cmp->mod_index = mod_index;
    return cmp;
}

static Tandem__TxnCompare *cmp_exists(struct arena *a, const char *key, Tandem__TxnCompare__Op op,
                                      bool exists)
{
    Tandem__TxnCompare *cmp = cmp_value(a, key, op, "");
    cmp->target = TANDEM__TXN_COMPARE__TARGET__EXISTS;
    cmp->exists = exists;
    return cmp;
}

static Tandem__TxnOp *txn_op(struct arena *a, Tandem__TxnOp__Kind kind, const char *key,
                             const char *value)
{
    Tandem__TxnOp *op = arena_alloc(a, sizeof *op);
    tandem__txn_op__init(op);
    op->kind = kind;
    op->key = bin(key);
    op->value = bin(value);
    return op;
}

/* A txn with up to three compares (NULLs skipped), one success op and one failure op (either
 * may be NULL). */
static Tandem__Command *cmd_txn(struct arena *a, Tandem__TxnCompare *c1, Tandem__TxnCompare *c2,
                                Tandem__TxnOp *success, Tandem__TxnOp *failure)
{
    Tandem__Command *c = arena_alloc(a, sizeof *c);
    Tandem__Txn *txn = arena_alloc(a, sizeof *txn);
    tandem__command__init(c);
    tandem__txn__init(txn);
    txn->compare = arena_alloc(a, 2 * sizeof *txn->compare);
    txn->success = arena_alloc(a, sizeof *txn->success);
    txn->failure = arena_alloc(a, sizeof *txn->failure);
    if (c1 != NULL) {
        txn->compare[txn->n_compare++] = c1;
    }
    if (c2 != NULL) {
        txn->compare[txn->n_compare++] = c2;
    }
    if (success != NULL) {
        txn->success[txn->n_success++] = success;
    }
    if (failure != NULL) {
        txn->failure[txn->n_failure++] = failure;
    }
    c->body_case = TANDEM__COMMAND__BODY_TXN;
    c->txn = txn;
    return c;
}

/* Encodes a batch of n commands; the caller raft_frees buf.base. */
static struct raft_buffer encode(uint64_t proposer, uint64_t serial, Tandem__Command **commands,
                                 size_t n)
{
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    struct raft_buffer buf;
    batch.proposer_id = proposer;
    batch.serial = serial;
    batch.now_ms = 1700000000000 + (int64_t)serial;
    batch.n_commands = n;
    batch.commands = commands;
    assert_int_equal(tandem_entry_encode(&batch, &buf), 0);
    return buf;
}

static void apply_ok(struct tandem_fsm *f, uint64_t index, const struct raft_buffer *buf)
{
    int rv = tandem_fsm_apply_entry(f, index, buf->base, buf->len);
    if (rv != 0) {
        fail_msg("apply at %llu: %d %s", (unsigned long long)index, rv, f->errmsg);
    }
}

/* Applies one command at index as TEST_PROPOSER's batch `index` and returns its result (status,
 * body owned by the fixture's claim). */
static struct tandem_result *apply_claimed(struct fixture *f, struct tandem_fsm *fsm,
                                           uint64_t index, Tandem__Command *command)
{
    struct raft_buffer buf = encode(TEST_PROPOSER, index, &command, 1);
    f->claim.serial = index;
    tandem_fsm_set_claim(fsm, test_claim, &f->claim);
    unsigned granted = f->claim.granted;
    apply_ok(fsm, index, &buf);
    raft_free(buf.base);
    assert_int_equal(f->claim.granted, granted + 1);
    return &f->claim.results[0];
}

/* The committed-or-pending value of key in s (via the open write txn when there is one). */
static Tandem__KvRecord *kv_get(struct tandem_store *s, const char *key)
{
    MDB_txn *txn;
    Tandem__KvRecord *record = NULL;
    bool own = s->write_txn == NULL;
    if (own) {
        assert_int_equal(tandem_store_read_txn(s, &txn), 0);
    } else {
        txn = s->write_txn;
    }
    assert_int_equal(tandem_kv_get(s, txn, key, strlen(key), &record), 0);
    if (own) {
        mdb_txn_abort(txn);
    }
    return record;
}

static void assert_value(struct tandem_store *s, const char *key, const char *value)
{
    Tandem__KvRecord *record = kv_get(s, key);
    if (value == NULL) {
        if (record != NULL) {
            fail_msg("key %s: expected absent, found %.*s", key, (int)record->value.len,
                     record->value.data);
        }
        return;
    }
    if (record == NULL) {
        fail_msg("key %s: expected \"%s\", absent", key, value);
    }
    if (record->value.len != strlen(value) || memcmp(record->value.data, value, strlen(value))) {
        fail_msg("key %s: expected \"%s\", found \"%.*s\"", key, value, (int)record->value.len,
                 record->value.data);
    }
    tandem__kv_record__free_unpacked(record, NULL);
}

static void state_digest(struct tandem_store *s, uint8_t out[TANDEM_DIGEST_LEN])
{
    MDB_txn *txn;
    assert_int_equal(tandem_store_commit(s), 0);
    assert_int_equal(tandem_store_read_txn(s, &txn), 0);
    assert_int_equal(tandem_store_state_digest(s, txn, out), 0);
    mdb_txn_abort(txn);
}

/* A deterministic workload over SCRIPT_KEYS keys: puts, deletes, compare-and-swaps and batches
 * of two commands, entry i to be applied at index i + 1. */
static void build_script(struct fixture *f)
{
    uint32_t rng = 12345;
    for (size_t i = 0; i < SCRIPT_LEN; i++) {
        Tandem__Command *commands[2];
        size_t n = 1;
        char *key = f->texts[i][0], *value = f->texts[i][1];
        rng = rng * 1103515245u + 12345u;
        snprintf(key, TEXT_MAX, "key-%u", (rng >> 8) % SCRIPT_KEYS);
        snprintf(value, TEXT_MAX, "value-%zu-%u", i, rng >> 20);
        switch ((rng >> 4) % 5) {
            case 0:
                commands[0] = cmd_delete(&f->arena, key);
                break;
            case 1:
                commands[0] = cmd_txn(
                    &f->arena, cmp_exists(&f->arena, key, TANDEM__TXN_COMPARE__OP__EQ, true), NULL,
                    txn_op(&f->arena, TANDEM__TXN_OP__KIND__PUT, key, value),
                    txn_op(&f->arena, TANDEM__TXN_OP__KIND__PUT, "missing", value));
                break;
            case 2:
                commands[0] = cmd_put(&f->arena, key, value);
                commands[1] = cmd_put(&f->arena, "counter", value);
                n = 2;
                break;
            default:
                commands[0] = cmd_put(&f->arena, key, value);
                break;
        }
        f->script[i] = encode(i % 3 + 1, i + 1, commands, n);
    }
}

static void apply_script(struct tandem_fsm *fsm, const struct fixture *f, size_t from, size_t to,
                         size_t commit_every)
{
    for (size_t i = from; i < to; i++) {
        apply_ok(fsm, i + 1, &f->script[i]);
        assert_true(fsm->store->applied_index >= i + 1); /* equal unless replaying */
        if (commit_every != 0 && (i + 1) % commit_every == 0) {
            assert_int_equal(tandem_store_commit(fsm->store), 0);
        }
    }
}

static void test_entry_codec_round_trip(void **state)
{
    struct fixture *f = *state;
    char value[TEXT_MAX];
    for (size_t len = 0; len < 24; len++) {
        memset(value, 'v', len);
        value[len] = '\0';
        Tandem__Command *commands[3] = {
            cmd_put(&f->arena, "key", value), cmd_delete(&f->arena, "gone"),
            cmd_txn(&f->arena, cmp_mod(&f->arena, "key", TANDEM__TXN_COMPARE__OP__GT, 3), NULL,
                    txn_op(&f->arena, TANDEM__TXN_OP__KIND__GET, "key", ""), NULL)};
        struct raft_buffer buf = encode(TEST_PROPOSER, 1000 + len, commands, 3);
        Tandem__Batch *batch = NULL;
        char errmsg[256] = "";
        assert_int_equal(buf.len % 8, 0);
        assert_true(buf.len >= TANDEM_ENTRY_HEADER_LEN + len);
        assert_int_equal(tandem_entry_decode(buf.base, buf.len, &batch, errmsg), 0);
        assert_int_equal(batch->proposer_id, TEST_PROPOSER);
        assert_int_equal(batch->serial, 1000 + len);
        assert_int_equal(batch->now_ms, 1700000000000 + (int64_t)(1000 + len));
        assert_int_equal(batch->n_commands, 3);
        assert_int_equal(batch->commands[0]->body_case, TANDEM__COMMAND__BODY_KV_PUT);
        assert_int_equal(batch->commands[0]->kv_put->value.len, len);
        assert_memory_equal(batch->commands[0]->kv_put->key.data, "key", 3);
        assert_int_equal(batch->commands[1]->body_case, TANDEM__COMMAND__BODY_KV_DELETE);
        assert_int_equal(batch->commands[2]->body_case, TANDEM__COMMAND__BODY_TXN);
        assert_int_equal(batch->commands[2]->txn->compare[0]->mod_index, 3);
        tandem__batch__free_unpacked(batch, NULL);
        raft_free(buf.base);
    }
    /* An empty batch still frames to a padded, decodable entry. */
    struct raft_buffer empty = encode(0, 0, NULL, 0);
    Tandem__Batch *batch = NULL;
    char errmsg[256] = "";
    assert_int_equal(empty.len % 8, 0);
    assert_int_equal(tandem_entry_decode(empty.base, empty.len, &batch, errmsg), 0);
    assert_int_equal(batch->n_commands, 0);
    tandem__batch__free_unpacked(batch, NULL);
    raft_free(empty.base);
}

static void assert_decode_fails(const void *data, size_t len)
{
    Tandem__Batch *batch = NULL;
    char errmsg[256] = "";
    assert_int_not_equal(tandem_entry_decode(data, len, &batch, errmsg), 0);
    assert_true(strlen(errmsg) > 0);
}

static void test_entry_decode_rejects(void **state)
{
    struct fixture *f = *state;
    Tandem__Command *command = cmd_put(&f->arena, "key", "value");
    struct raft_buffer buf = encode(TEST_PROPOSER, 1, &command, 1);
    uint8_t *bytes = buf.base;
    uint8_t garbage[32];

    bytes[0] ^= 0xff; /* bad magic */
    assert_decode_fails(buf.base, buf.len);
    bytes[0] ^= 0xff;
    assert_decode_fails(buf.base, 4);           /* shorter than the header */
    assert_decode_fails(buf.base, 0);           /* empty */
    assert_decode_fails(buf.base, buf.len - 4); /* not padded to 8 */
    bytes[4] = 0xff;                            /* payload length past the end */
    assert_decode_fails(buf.base, buf.len);
    memcpy(garbage, buf.base, 4); /* right magic, garbage payload */
    uint32_t payload = 24;
    memcpy(garbage + 4, &payload, 4);
    memset(garbage + 8, 0xff, sizeof garbage - 8);
    assert_decode_fails(garbage, sizeof garbage);

    /* The FSM refuses it as well and leaves the store alone. */
    assert_int_not_equal(tandem_fsm_apply_entry(&f->fa, 1, garbage, sizeof garbage), 0);
    assert_true(strlen(f->fa.errmsg) > 0);
    assert_int_equal(f->a.applied_index, 0);
    assert_int_equal(f->fa.entries_applied, 0);
    raft_free(buf.base);
}

/* Fields this version does not know are dropped at decode, in every sub-message: an apply that
 * stores a record copied from its command must not store them (fuzz_command's reproducer in
 * tests/fuzz/regressions/command/ made a stored job unreadable that way). */
static void test_entry_decode_drops_unknown_fields(void **state)
{
    (void)state;
    uint8_t value[] = {42};
    ProtobufCMessageUnknownField unknown = {
        .tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 1, .data = value};
    Tandem__JobRecord job = TANDEM__JOB_RECORD__INIT;
    Tandem__JobCreate create = TANDEM__JOB_CREATE__INIT;
    Tandem__Command command = TANDEM__COMMAND__INIT, *commands[] = {&command};
    job.id = "J-1";
    job.base.n_unknown_fields = command.base.n_unknown_fields = 1;
    job.base.unknown_fields = command.base.unknown_fields = &unknown;
    create.job = &job;
    command.body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    command.job_create = &create;
    struct raft_buffer buf = encode(TEST_PROPOSER, 1, commands, 1);
    Tandem__Batch *batch = NULL;
    char errmsg[256] = "";
    assert_int_equal(tandem_entry_decode(buf.base, buf.len, &batch, errmsg), 0);
    assert_int_equal(batch->commands[0]->base.n_unknown_fields, 0);
    assert_int_equal(batch->commands[0]->job_create->job->base.n_unknown_fields, 0);
    assert_null(batch->commands[0]->job_create->job->base.unknown_fields);
    assert_string_equal(batch->commands[0]->job_create->job->id, "J-1");
    tandem__batch__free_unpacked(batch, NULL);
    raft_free(buf.base);
}

static void test_apply_puts_deletes_txns(void **state)
{
    struct fixture *f = *state;
    Tandem__Command *batch1[] = {cmd_put(&f->arena, "a", "1"), cmd_put(&f->arena, "b", "2")};
    Tandem__Command *batch2[] = {cmd_put(&f->arena, "a", "10"), cmd_delete(&f->arena, "b"),
                                 cmd_delete(&f->arena, "never")};
    Tandem__Command *batch3[] = {
        cmd_txn(&f->arena, cmp_value(&f->arena, "a", TANDEM__TXN_COMPARE__OP__EQ, "10"), NULL,
                txn_op(&f->arena, TANDEM__TXN_OP__KIND__PUT, "c", "3"),
                txn_op(&f->arena, TANDEM__TXN_OP__KIND__PUT, "c", "wrong"))};
    struct raft_buffer e1 = encode(1, 1, batch1, 2), e2 = encode(1, 2, batch2, 3),
                       e3 = encode(2, 1, batch3, 1);
    apply_ok(&f->fa, 1, &e1);
    apply_ok(&f->fa, 2, &e2);
    apply_ok(&f->fa, 3, &e3);
    assert_int_equal(f->fa.entries_applied, 3);
    assert_int_equal(f->fa.commands_applied, 6);
    assert_int_equal(f->a.applied_index, 3);
    assert_int_equal(tandem_store_commit(&f->a), 0);
    assert_value(&f->a, "a", "10");
    assert_value(&f->a, "b", NULL);
    assert_value(&f->a, "c", "3");
    Tandem__KvRecord *a = kv_get(&f->a, "a"), *c = kv_get(&f->a, "c");
    assert_int_equal(a->create_index, 1); /* an overwrite keeps create_index */
    assert_int_equal(a->mod_index, 2);
    assert_int_equal(c->create_index, 3);
    assert_int_equal(c->mod_index, 3);
    tandem__kv_record__free_unpacked(a, NULL);
    tandem__kv_record__free_unpacked(c, NULL);
    /* A re-created key starts a new life. */
    Tandem__Command *again = cmd_put(&f->arena, "b", "new");
    struct raft_buffer e4 = encode(1, 3, &again, 1);
    apply_ok(&f->fa, 4, &e4);
    Tandem__KvRecord *b = kv_get(&f->a, "b");
    assert_int_equal(b->create_index, 4);
    tandem__kv_record__free_unpacked(b, NULL);
    raft_free(e1.base);
    raft_free(e2.base);
    raft_free(e3.base);
    raft_free(e4.base);
}

static void test_replay_idempotent(void **state)
{
    struct fixture *f = *state;
    uint8_t digest[TANDEM_DIGEST_LEN], apply_digest[TANDEM_DIGEST_LEN], again[TANDEM_DIGEST_LEN];
    build_script(f);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 5);
    state_digest(&f->a, digest);
    memcpy(apply_digest, f->a.apply_digest, TANDEM_DIGEST_LEN);

    /* Restart: raft replays every entry from the start of its log. */
    tandem_store_close(&f->a);
    open_store(&f->a, f->dir_a, &f->a_open);
    tandem_fsm_init(&f->fa, &f->a);
    assert_int_equal(f->a.applied_index, SCRIPT_LEN);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0);
    assert_int_equal(f->fa.entries_skipped, SCRIPT_LEN);
    assert_int_equal(f->fa.entries_applied, 0);
    assert_null(f->a.write_txn); /* skipping writes nothing */
    state_digest(&f->a, again);
    assert_memory_equal(digest, again, TANDEM_DIGEST_LEN);
    assert_memory_equal(apply_digest, f->a.apply_digest, TANDEM_DIGEST_LEN);
}

static void test_replay_after_lost_group_commit(void **state)
{
    struct fixture *f = *state;
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    build_script(f);
    apply_script(&f->fb, f, 0, SCRIPT_LEN, 0); /* the reference */

    apply_script(&f->fa, f, 0, CRASH_AT, CRASH_AT);
    apply_script(&f->fa, f, CRASH_AT, SCRIPT_LEN, 0);
    /* A crash loses the open group: the store falls back to its last commit. */
    tandem_store_abort(&f->a);
    tandem_store_close(&f->a);
    open_store(&f->a, f->dir_a, &f->a_open);
    tandem_fsm_init(&f->fa, &f->a);
    assert_int_equal(f->a.applied_index, CRASH_AT);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0);
    assert_int_equal(f->fa.entries_skipped, CRASH_AT);
    assert_int_equal(f->fa.entries_applied, SCRIPT_LEN - CRASH_AT);
    state_digest(&f->a, da);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_memory_equal(f->a.apply_digest, f->b.apply_digest, TANDEM_DIGEST_LEN);
}

/* An apply that fails through raft's callback after earlier entries of the same (uncommitted)
 * group must not let a later apply go on top of the older state: libraft 0.22 retries the index,
 * and the group's earlier entries would be lost on this replica for good. The store refuses every
 * later write; a restart replays from the last commit and ends where the reference does. */
static void test_failed_apply_poisons_the_store(void **state)
{
    struct fixture *f = *state;
    struct raft raft;
    struct raft_buffer garbage;
    MDB_txn *txn = NULL;
    uint8_t bytes[32] = {0};
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    void *result = NULL;
    build_script(f);
    apply_script(&f->fb, f, 0, SCRIPT_LEN, 0); /* the reference */

    memset(&raft, 0, sizeof raft);
    tandem_fsm_set_raft(&f->fa, &raft);
    apply_script(&f->fa, f, 0, CRASH_AT, CRASH_AT);     /* committed */
    apply_script(&f->fa, f, CRASH_AT, CRASH_AT + 5, 0); /* the open group */
    raft.last_applied = CRASH_AT + 5;
    garbage.base = bytes;
    garbage.len = sizeof bytes;
    assert_int_not_equal(f->fa.raft_fsm.apply(&f->fa.raft_fsm, &garbage, &result), 0);
    assert_true(f->a.poisoned);
    assert_int_equal(f->a.applied_index, CRASH_AT); /* the group is gone from the store */
    /* raft retries the next index: refused, not applied over the hole. */
    uint64_t applied = f->fa.entries_applied;
    assert_int_not_equal(f->fa.raft_fsm.apply(&f->fa.raft_fsm, &f->script[CRASH_AT + 5], &result),
                         0);
    assert_int_equal(f->fa.entries_applied, applied);
    assert_int_equal(f->a.applied_index, CRASH_AT);
    assert_int_not_equal(tandem_store_write_txn(&f->a, &txn), 0);

    /* The restart: reopen, replay the whole log, and match the reference. */
    tandem_store_close(&f->a);
    open_store(&f->a, f->dir_a, &f->a_open);
    tandem_fsm_init(&f->fa, &f->a);
    assert_false(f->a.poisoned);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0);
    assert_int_equal(f->fa.entries_skipped, CRASH_AT);
    state_digest(&f->a, da);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_memory_equal(f->a.apply_digest, f->b.apply_digest, TANDEM_DIGEST_LEN);
}

static void test_replay_deterministic(void **state)
{
    struct fixture *f = *state;
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    build_script(f);
    /* Same entries, different group-commit boundaries. */
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 1);
    apply_script(&f->fb, f, 0, SCRIPT_LEN, 0);
    state_digest(&f->a, da);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_memory_equal(f->a.apply_digest, f->b.apply_digest, TANDEM_DIGEST_LEN);
    assert_int_equal(f->a.applied_index, f->b.applied_index);
    for (unsigned k = 0; k < SCRIPT_KEYS; k++) {
        char key[TEXT_MAX];
        snprintf(key, sizeof key, "key-%u", k);
        Tandem__KvRecord *ra = kv_get(&f->a, key), *rb = kv_get(&f->b, key);
        assert_true((ra == NULL) == (rb == NULL));
        if (ra != NULL) {
            assert_int_equal(ra->value.len, rb->value.len);
            assert_memory_equal(ra->value.data, rb->value.data, ra->value.len);
            assert_int_equal(ra->mod_index, rb->mod_index);
        }
        tandem__kv_record__free_unpacked(ra, NULL);
        tandem__kv_record__free_unpacked(rb, NULL);
    }
}

static void test_apply_digest_changes_every_entry(void **state)
{
    struct fixture *f = *state;
    uint8_t seen[SCRIPT_LEN + 1][TANDEM_DIGEST_LEN];
    build_script(f);
    memcpy(seen[0], f->a.apply_digest, TANDEM_DIGEST_LEN);
    for (size_t i = 0; i < SCRIPT_LEN; i++) {
        apply_ok(&f->fa, i + 1, &f->script[i]);
        memcpy(seen[i + 1], f->a.apply_digest, TANDEM_DIGEST_LEN);
        for (size_t j = 0; j <= i; j++) {
            assert_memory_not_equal(seen[i + 1], seen[j], TANDEM_DIGEST_LEN);
        }
    }
    /* The same history at shifted indexes is a different history. */
    for (size_t i = 0; i < SCRIPT_LEN; i++) {
        apply_ok(&f->fb, i + 2, &f->script[i]);
    }
    assert_memory_not_equal(f->a.apply_digest, f->b.apply_digest, TANDEM_DIGEST_LEN);
}

/* Applies a txn with one compare at index: success puts r=yes, failure puts r=no. Returns
 * whether the compare held, checked against both the stored outcome and the result body. */
static bool txn_holds(struct fixture *f, uint64_t index, Tandem__TxnCompare *cmp)
{
    Tandem__Command *command =
        cmd_txn(&f->arena, cmp, NULL, txn_op(&f->arena, TANDEM__TXN_OP__KIND__PUT, "r", "yes"),
                txn_op(&f->arena, TANDEM__TXN_OP__KIND__PUT, "r", "no"));
    struct tandem_result *result = apply_claimed(f, &f->fa, index, command);
    assert_int_equal(result->status, 200);
    json_t *body = json_loads(result->body, 0, NULL);
    assert_non_null(body);
    json_t *succeeded = json_object_get(body, "succeeded");
    assert_true(json_is_boolean(succeeded));
    bool holds = json_is_true(succeeded);
    json_decref(body);
    Tandem__KvRecord *r = kv_get(&f->a, "r");
    assert_non_null(r);
    assert_int_equal(r->mod_index, index);
    assert_memory_equal(r->value.data, holds ? "yes" : "no", r->value.len);
    tandem__kv_record__free_unpacked(r, NULL);
    return holds;
}

static void test_txn_compare_semantics(void **state)
{
    struct fixture *f = *state;
    struct arena *a = &f->arena;
    uint64_t i = 1;
    Tandem__Command *setup_cmd = cmd_put(a, "k", "b");
    (void)apply_claimed(f, &f->fa, i++, setup_cmd); /* k = "b", mod_index 1 */

    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__EQ, "b")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__EQ, "c")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__EQ, "bb")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__NE, "c")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__NE, "b")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "c")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "bb")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "b")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "a")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__GT, "a")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__GT, "")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__GT, "b")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__GT, "c")));

    assert_true(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__EQ, 1)));
    assert_false(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__EQ, 2)));
    assert_true(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__NE, 2)));
    assert_true(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__LT, 2)));
    assert_false(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__LT, 1)));
    assert_true(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__GT, 0)));
    assert_false(txn_holds(f, i++, cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__GT, 1)));

    assert_true(txn_holds(f, i++, cmp_exists(a, "k", TANDEM__TXN_COMPARE__OP__EQ, true)));
    assert_false(txn_holds(f, i++, cmp_exists(a, "k", TANDEM__TXN_COMPARE__OP__EQ, false)));
    assert_false(txn_holds(f, i++, cmp_exists(a, "k", TANDEM__TXN_COMPARE__OP__NE, true)));
    assert_true(txn_holds(f, i++, cmp_exists(a, "missing", TANDEM__TXN_COMPARE__OP__EQ, false)));
    assert_false(txn_holds(f, i++, cmp_exists(a, "missing", TANDEM__TXN_COMPARE__OP__EQ, true)));
    assert_true(txn_holds(f, i++, cmp_exists(a, "missing", TANDEM__TXN_COMPARE__OP__NE, true)));

    /* A missing key has no value and mod_index 0. */
    assert_false(txn_holds(f, i++, cmp_value(a, "missing", TANDEM__TXN_COMPARE__OP__EQ, "")));
    assert_true(txn_holds(f, i++, cmp_value(a, "missing", TANDEM__TXN_COMPARE__OP__NE, "x")));
    assert_false(txn_holds(f, i++, cmp_value(a, "missing", TANDEM__TXN_COMPARE__OP__LT, "x")));
    assert_false(txn_holds(f, i++, cmp_value(a, "missing", TANDEM__TXN_COMPARE__OP__GT, "")));
    assert_true(txn_holds(f, i++, cmp_mod(a, "missing", TANDEM__TXN_COMPARE__OP__EQ, 0)));

    /* r was last written by the previous txn, at its index. */
    uint64_t previous = i - 1;
    assert_true(txn_holds(f, i++, cmp_mod(a, "r", TANDEM__TXN_COMPARE__OP__EQ, previous)));
}

static void test_txn_value_order_is_bytewise(void **state)
{
    struct fixture *f = *state;
    struct arena *a = &f->arena;
    uint64_t i = 1;
    (void)apply_claimed(f, &f->fa, i++, cmd_put(a, "k", "b"));
    /* Values further apart than one byte step: the outcome must not depend on the magnitude
     * memcmp happens to return. */
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "d")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "z")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__GT, "d")));
    assert_true(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__GT, "0")));
    assert_false(txn_holds(f, i++, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__LT, "0")));
}

static void test_txn_branches(void **state)
{
    struct fixture *f = *state;
    struct arena *a = &f->arena;
    (void)apply_claimed(f, &f->fa, 1, cmd_put(a, "k", "v"));
    (void)apply_claimed(f, &f->fa, 2, cmd_put(a, "gone", "x"));

    /* Two compares are ANDed: the second fails, so the failure branch runs. */
    Tandem__Command *txn = cmd_txn(a, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__EQ, "v"),
                                   cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__GT, 5),
                                   txn_op(a, TANDEM__TXN_OP__KIND__DELETE, "gone", ""),
                                   txn_op(a, TANDEM__TXN_OP__KIND__GET, "k", ""));
    struct tandem_result *result = apply_claimed(f, &f->fa, 3, txn);
    assert_int_equal(result->status, 200);
    json_t *body = json_loads(result->body, 0, NULL);
    assert_non_null(body);
    assert_true(json_is_false(json_object_get(body, "succeeded")));
    json_t *results = json_object_get(body, "results");
    assert_int_equal(json_array_size(results), 1);
    json_t *get = json_array_get(results, 0);
    assert_string_equal(json_string_value(json_object_get(get, "op")), "get");
    assert_string_equal(json_string_value(json_object_get(get, "value")), "dg=="); /* "v" */
    assert_int_equal(json_integer_value(json_object_get(get, "mod_index")), 1);
    json_decref(body);
    assert_value(&f->a, "gone", "x");

    /* Both hold: the success branch deletes. */
    txn = cmd_txn(a, cmp_value(a, "k", TANDEM__TXN_COMPARE__OP__EQ, "v"),
                  cmp_mod(a, "k", TANDEM__TXN_COMPARE__OP__LT, 5),
                  txn_op(a, TANDEM__TXN_OP__KIND__DELETE, "gone", ""),
                  txn_op(a, TANDEM__TXN_OP__KIND__PUT, "k", "failure"));
    result = apply_claimed(f, &f->fa, 4, txn);
    body = json_loads(result->body, 0, NULL);
    assert_non_null(body);
    assert_true(json_is_true(json_object_get(body, "succeeded")));
    get = json_array_get(json_object_get(body, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(get, "op")), "delete");
    assert_true(json_is_true(json_object_get(get, "deleted")));
    json_decref(body);
    assert_value(&f->a, "gone", NULL);
    assert_value(&f->a, "k", "v");

    /* No compares: the success branch. */
    txn = cmd_txn(a, NULL, NULL, txn_op(a, TANDEM__TXN_OP__KIND__PUT, "k", "s"),
                  txn_op(a, TANDEM__TXN_OP__KIND__PUT, "k", "f"));
    result = apply_claimed(f, &f->fa, 5, txn);
    assert_int_equal(result->status, 200);
    assert_value(&f->a, "k", "s");
}

/* Applies command at index and checks a 400 result that leaves the kv state untouched. */
static void assert_rejected(struct fixture *f, uint64_t index, Tandem__Command *command)
{
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    state_digest(&f->a, before);
    struct tandem_result *result = apply_claimed(f, &f->fa, index, command);
    assert_int_equal(result->status, 400);
    assert_non_null(result->body);
    assert_non_null(strstr(result->body, "error"));
    state_digest(&f->a, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    /* Refused commands are still applied entries: everyone refuses them at the same index. */
    assert_int_equal(f->a.applied_index, index);
}

static void test_invalid_keys_rejected(void **state)
{
    struct fixture *f = *state;
    struct arena *a = &f->arena;
    char *long_key = arena_alloc(a, LONG_KEY_LEN + 1);
    static const uint8_t nul_key[] = {'a', 0, 'b'};
    uint64_t i = 1;
    memset(long_key, 'k', LONG_KEY_LEN);
    (void)apply_claimed(f, &f->fa, i++, cmd_put(a, "k", "v"));

    assert_rejected(f, i++, cmd_put(a, "", "v"));
    assert_rejected(f, i++, cmd_put(a, long_key, "v"));
    assert_rejected(
        f, i++,
        cmd_put_bin(a, (ProtobufCBinaryData){.len = 3, .data = (uint8_t *)nul_key}, bin("v")));
    assert_rejected(f, i++, cmd_delete(a, ""));
    assert_rejected(f, i++, cmd_delete(a, long_key));
    /* A bad key in either branch refuses the whole txn, even the branch that would not run. */
    assert_rejected(f, i++,
                    cmd_txn(a, NULL, NULL, txn_op(a, TANDEM__TXN_OP__KIND__PUT, "k", "x"),
                            txn_op(a, TANDEM__TXN_OP__KIND__PUT, "", "x")));
    assert_rejected(
        f, i++,
        cmd_txn(a, NULL, NULL, txn_op(a, TANDEM__TXN_OP__KIND__DELETE, long_key, ""), NULL));
    /* A command this binary does not know. */
    Tandem__Command *unknown = arena_alloc(a, sizeof *unknown);
    tandem__command__init(unknown);
    assert_rejected(f, i++, unknown);
    /* A longest valid key is fine. */
    long_key[TANDEM_KV_KEY_LEN_MAX] = '\0';
    struct tandem_result *result = apply_claimed(f, &f->fa, i++, cmd_put(a, long_key, "v"));
    assert_int_equal(result->status, 200);
    assert_value(&f->a, long_key, "v");
}

static void test_txn_compare_invalid_key(void **state)
{
    struct fixture *f = *state;
    struct arena *a = &f->arena;
    char *long_key = arena_alloc(a, LONG_KEY_LEN + 1);
    memset(long_key, 'k', LONG_KEY_LEN);
    (void)apply_claimed(f, &f->fa, 1, cmd_put(a, "k", "v"));
    /* A compare's key comes from the log like any other: a bad one must be a 400 result, not
     * an apply error that stops every replica. */
    assert_rejected(f, 2,
                    cmd_txn(a, cmp_value(a, "", TANDEM__TXN_COMPARE__OP__EQ, "v"), NULL,
                            txn_op(a, TANDEM__TXN_OP__KIND__PUT, "k", "x"), NULL));
    assert_rejected(f, 3,
                    cmd_txn(a, cmp_exists(a, long_key, TANDEM__TXN_COMPARE__OP__EQ, true), NULL,
                            txn_op(a, TANDEM__TXN_OP__KIND__PUT, "k", "x"), NULL));
}

static void test_claim_hook(void **state)
{
    struct fixture *f = *state;
    struct arena *a = &f->arena;
    Tandem__Command *commands[] = {cmd_put(a, "x", "1"), cmd_delete(a, "y"), cmd_put(a, "", "")};
    tandem_fsm_set_claim(&f->fa, test_claim, &f->claim);

    /* Another proposer's batch: claimed by nobody here, applied all the same. */
    struct raft_buffer other = encode(OTHER_PROPOSER, 5, commands, 3);
    f->claim.serial = 5;
    apply_ok(&f->fa, 1, &other);
    assert_int_equal(f->claim.calls, 1);
    assert_int_equal(f->claim.granted, 0);
    assert_int_equal(f->claim.last_id, OTHER_PROPOSER);
    assert_int_equal(f->claim.last_serial, 5);
    assert_int_equal(f->claim.last_n, 3);
    assert_int_equal(f->claim.results[0].status, 0);
    assert_value(&f->a, "x", "1");

    /* Ours, but another serial. */
    struct raft_buffer stale = encode(TEST_PROPOSER, 4, commands, 3);
    apply_ok(&f->fa, 2, &stale);
    assert_int_equal(f->claim.granted, 0);
    assert_int_equal(f->claim.results[0].status, 0);

    /* Ours: one result per command, in order. */
    struct raft_buffer mine = encode(TEST_PROPOSER, 5, commands, 3);
    apply_ok(&f->fa, 3, &mine);
    assert_int_equal(f->claim.granted, 1);
    assert_int_equal(f->claim.results[0].status, 200);
    assert_non_null(strstr(f->claim.results[0].body, "\"mod_index\":3"));
    assert_int_equal(f->claim.results[1].status, 200);
    assert_non_null(strstr(f->claim.results[1].body, "\"deleted\":false"));
    assert_int_equal(f->claim.results[2].status, 400);

    /* Replayed entries are never claimed: their writers got answers long ago. */
    unsigned calls = f->claim.calls;
    apply_ok(&f->fa, 3, &mine);
    assert_int_equal(f->claim.calls, calls);
    assert_int_equal(f->fa.entries_skipped, 1);

    raft_free(other.base);
    raft_free(stale.base);
    raft_free(mine.base);
}

/* Takes a snapshot through raft's callbacks; returns a raft_malloc'd copy of its bytes. */
static struct raft_buffer snapshot_via_raft(struct tandem_fsm *f, struct raft_buffer *between,
                                            uint64_t between_index)
{
    struct raft_buffer *bufs = NULL, copy;
    unsigned n = 0;
    assert_int_equal(f->raft_fsm.snapshot(&f->raft_fsm, &bufs, &n), 0);
    assert_null(f->store->write_txn); /* snapshot() commits the grouped transaction */
    if (between != NULL) {
        /* apply goes on while the read transaction is pinned; the snapshot must not see it */
        apply_ok(f, between_index, between);
        assert_int_equal(tandem_store_commit(f->store), 0);
    }
    assert_int_equal(f->raft_fsm.snapshot_async(&f->raft_fsm, &bufs, &n), 0);
    assert_int_equal(n, 1);
    assert_non_null(bufs[0].base);
    copy.len = bufs[0].len;
    copy.base = raft_malloc(copy.len);
    assert_non_null(copy.base);
    memcpy(copy.base, bufs[0].base, copy.len);
    assert_int_equal(f->raft_fsm.snapshot_finalize(&f->raft_fsm, &bufs, &n), 0);
    assert_null(f->snapshot_txn);
    return copy;
}

static void test_snapshot_via_raft_callbacks(void **state)
{
    struct fixture *f = *state;
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    uint64_t index = 0;
    char errmsg[256] = "";
    uint8_t apply_digest[TANDEM_DIGEST_LEN];
    build_script(f);
    /* Left uncommitted on purpose: snapshot() must commit the group before pinning its view. */
    apply_script(&f->fa, f, 0, SCRIPT_LEN - 1, 0);
    assert_non_null(f->a.write_txn);
    assert_int_equal(tandem_store_state_digest(&f->a, f->a.write_txn, da), 0);
    memcpy(apply_digest, f->a.apply_digest, TANDEM_DIGEST_LEN);

    struct raft_buffer snap = snapshot_via_raft(&f->fa, &f->script[SCRIPT_LEN - 1], SCRIPT_LEN);
    assert_int_equal(f->fa.snapshots_taken, 1);
    assert_int_equal(f->a.applied_index, SCRIPT_LEN);
    assert_int_equal(tandem_store_snapshot_check(snap.base, snap.len, &index, errmsg), 0);
    assert_int_equal(index, SCRIPT_LEN - 1);

    /* Restore into the second FSM: it takes ownership of snap.base. */
    assert_int_equal(f->fb.raft_fsm.restore(&f->fb.raft_fsm, &snap), 0);
    assert_int_equal(f->fb.snapshots_restored, 1);
    assert_int_equal(f->b.applied_index, SCRIPT_LEN - 1);
    assert_memory_equal(f->b.apply_digest, apply_digest, TANDEM_DIGEST_LEN);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);

    /* The restored FSM goes on with the next entry and reaches the same state; replayed entries
     * the snapshot covered are skipped. */
    apply_ok(&f->fb, SCRIPT_LEN - 1, &f->script[SCRIPT_LEN - 2]);
    assert_int_equal(f->fb.entries_skipped, 1);
    apply_ok(&f->fb, SCRIPT_LEN, &f->script[SCRIPT_LEN - 1]);
    state_digest(&f->a, da);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
    assert_memory_equal(f->a.apply_digest, f->b.apply_digest, TANDEM_DIGEST_LEN);

    /* A snapshot at or behind the local state is accepted without touching it. */
    struct raft_buffer old = snapshot_via_raft(&f->fa, NULL, 0);
    assert_int_equal(f->fb.raft_fsm.restore(&f->fb.raft_fsm, &old), 0);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);
}

/* What a thread's fill saw: its result and whether it ran on another thread than the test's. */
struct fill_thread {
    struct tandem_fsm *f;
    int rv;
};

static void *fill_thread_main(void *arg)
{
    struct fill_thread *t = arg;
    t->rv = tandem_fsm_snapshot_fill(t->f);
    return NULL;
}

/* With fill_later (tandemd, shield 6), snapshot_async only pins: no bytes on the loop. The fill,
 * on another thread while apply goes on in new write transactions, serialises exactly the pinned
 * state; filled hands raft the bytes, the same as an on-loop snapshot of that state. */
static void test_snapshot_filled_off_the_loop(void **state)
{
    struct fixture *f = *state;
    struct raft_buffer *bufs = NULL;
    unsigned n = 0;
    build_script(f);
    apply_script(&f->fa, f, 0, SCRIPT_LEN - 1, 0);
    struct raft_buffer on_loop = snapshot_via_raft(&f->fa, NULL, 0);

    f->fa.fill_later = true;
    assert_false(tandem_fsm_snapshot_taking(&f->fa));
    assert_int_equal(f->fa.raft_fsm.snapshot(&f->fa.raft_fsm, &bufs, &n), 0);
    assert_true(tandem_fsm_snapshot_taking(&f->fa)); /* tandem_snapshot_taking from the pin */
    assert_int_equal(f->fa.raft_fsm.snapshot_async(&f->fa.raft_fsm, &bufs, &n), 0);
    assert_int_equal(n, 1);
    assert_null(bufs[0].base);                      /* nothing serialised yet */
    assert_int_equal(atomic_load(&f->a.copies), 1); /* a restore would wait for the reader */
    apply_ok(&f->fa, SCRIPT_LEN, &f->script[SCRIPT_LEN - 1]); /* apply goes on meanwhile */
    assert_int_equal(tandem_store_commit(&f->a), 0);

    struct fill_thread t = {.f = &f->fa, .rv = -1};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, fill_thread_main, &t), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(t.rv, 0);
    assert_null(bufs[0].base); /* handed over only on the loop */
    tandem_fsm_snapshot_filled(&f->fa, 0);
    assert_int_equal(atomic_load(&f->a.copies), 0);
    assert_int_equal(f->fa.snapshots_taken, 2);
    assert_int_equal(bufs[0].len, on_loop.len);
    assert_memory_equal(bufs[0].base, on_loop.base, on_loop.len);
    assert_true(tandem_fsm_snapshot_taking(&f->fa)); /* raft writes it to disk meanwhile */
    assert_int_equal(f->fa.raft_fsm.snapshot_finalize(&f->fa.raft_fsm, &bufs, &n), 0);
    assert_false(tandem_fsm_snapshot_taking(&f->fa));
    assert_null(f->fa.snapshot_txn);

    /* A failed fill keeps nothing; raft's callback finalizes the pinned snapshot. */
    assert_int_equal(f->fa.raft_fsm.snapshot(&f->fa.raft_fsm, &bufs, &n), 0);
    assert_int_equal(f->fa.raft_fsm.snapshot_async(&f->fa.raft_fsm, &bufs, &n), 0);
    assert_int_equal(f->fa.snapshots_failed, 0);
    tandem_fsm_snapshot_filled(&f->fa, RAFT_IOERR);
    assert_null(bufs[0].base);
    assert_int_equal(f->fa.snapshots_taken, 2);
    assert_int_equal(f->fa.snapshots_failed, 1);     /* what TandemSnapshotFailing reads */
    assert_true(tandem_fsm_snapshot_taking(&f->fa)); /* until raft's finalize */
    assert_int_equal(f->fa.raft_fsm.snapshot_finalize(&f->fa.raft_fsm, &bufs, &n), 0);
    assert_false(tandem_fsm_snapshot_taking(&f->fa));
    assert_int_equal(atomic_load(&f->a.copies), 0);
    raft_free(on_loop.base);
}

/* A fetch for the tests: copies the named file from from_dir (the sender's files), or, with
 * from_dir NULL, fails and cancels the install's fetch (so the test need not wait out
 * TANDEM_SNAPSHOT_FETCH_DEADLINE_MS). */
struct fetch_probe {
    const char *from_dir;
    struct tandem_fsm *fsm;
    unsigned calls;
    char address[128];
};

static int probe_fetch(void *data, const char *address, const char *name, uint64_t len,
                       const char *dest, const atomic_bool *cancel, char *errmsg)
{
    struct fetch_probe *p = data;
    char path[PATH_MAX];
    (void)cancel;
    p->calls++;
    snprintf(p->address, sizeof p->address, "%s", address);
    if (p->from_dir == NULL) {
        tandem_fsm_cancel_fetch(p->fsm);
        return tandem_error_set(errmsg, TANDEM_NET, "connection refused");
    }
    snprintf(path, sizeof path, "%s/%s", p->from_dir, name);
    FILE *in = fopen(path, "rb"), *out = fopen(dest, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char chunk[4096];
    size_t n, total = 0;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0) {
        assert_int_equal(fwrite(chunk, 1, n, out), n);
        total += n;
    }
    assert_int_equal(total, len);
    assert_int_equal(fclose(in), 0);
    assert_int_equal(fclose(out), 0);
    return 0;
}

/* fa's snapshot taken as on tandemd (pinned, filled on the pool, handed over): a copy of the
 * bytes raft would store. */
static struct raft_buffer snapshot_filled(struct tandem_fsm *fsm)
{
    struct raft_buffer *bufs = NULL, copy;
    unsigned n = 0;
    fsm->fill_later = true;
    assert_int_equal(fsm->raft_fsm.snapshot(&fsm->raft_fsm, &bufs, &n), 0);
    assert_int_equal(fsm->raft_fsm.snapshot_async(&fsm->raft_fsm, &bufs, &n), 0);
    assert_int_equal(tandem_fsm_snapshot_fill(fsm), 0);
    tandem_fsm_snapshot_filled(fsm, 0);
    copy.len = bufs[0].len;
    copy.base = raft_malloc(copy.len);
    assert_non_null(copy.base);
    memcpy(copy.base, bufs[0].base, copy.len);
    assert_int_equal(fsm->raft_fsm.snapshot_finalize(&fsm->raft_fsm, &bufs, &n), 0);
    return copy;
}

static bool file_exists(const char *dir, const struct tandem_snapshot_ref *ref)
{
    char name[TANDEM_SNAPSHOT_FILE_NAME_SIZE], path[PATH_MAX];
    struct stat st;
    tandem_snapshot_file_name(ref, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && (uint64_t)st.st_size == ref->len;
}

/* Past snapshot_inline_mib (0 here) a snapshot is a file and raft holds a 64-byte reference; the
 * member that installs it fetches the file from the sender, checks it against the reference and
 * swaps in the state it built off the loop; a state already at the reference needs no file. */
static void test_snapshot_file_reference(void **state)
{
    struct fixture *f = *state;
    char files_a[PATH_MAX], files_b[PATH_MAX], errmsg[TANDEM_ERRMSG_SIZE] = "";
    uint8_t da[TANDEM_DIGEST_LEN], db[TANDEM_DIGEST_LEN];
    struct fetch_probe probe = {.fsm = &f->fb};
    struct tandem_snapshot_ref ref;
    const char *sender = "east-1|east|127.0.0.1:7001|http://127.0.0.1:8001";
    snprintf(files_a, sizeof files_a, "%s/files-a", f->root);
    snprintf(files_b, sizeof files_b, "%s/files-b", f->root);
    assert_int_equal(tandem_fsm_set_snapshot_files(&f->fa, files_a, 0, NULL, NULL), 0);
    assert_int_equal(tandem_fsm_set_snapshot_files(&f->fb, files_b, 0, probe_fetch, &probe), 0);
    build_script(f);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0);
    state_digest(&f->a, da);

    struct raft_buffer snap = snapshot_filled(&f->fa);
    assert_int_equal(snap.len, TANDEM_SNAPSHOT_REF_LEN);
    assert_int_equal(tandem_snapshot_ref_decode(snap.base, snap.len, &ref, errmsg), 1);
    assert_int_equal(ref.index, f->a.applied_index);
    assert_true(file_exists(files_a, &ref));
    assert_int_equal(f->fa.snapshot_files_written, 1);
    uint8_t ref_bytes[TANDEM_SNAPSHOT_REF_LEN];
    memcpy(ref_bytes, snap.base, sizeof ref_bytes); /* the restore frees snap */

    /* The install: fetched from the sender on the pool, then only swapped in. */
    probe.from_dir = files_a;
    struct raft_snapshot install = {.index = ref.index, .term = 1, .bufs = &snap, .n_bufs = 1};
    assert_int_equal(tandem_fsm_install_prepare(&f->fb, &install, sender, errmsg), 0);
    assert_int_equal(probe.calls, 1);
    assert_string_equal(probe.address, sender);
    assert_true(f->fb.prepared.ready);
    assert_true(file_exists(files_b, &ref)); /* kept: raft's own snapshot now names it */
    assert_int_equal(atomic_load(&f->fb.snapshot_files_fetched), 1);
    assert_int_equal(atomic_load(&f->fb.snapshot_fetch_bytes), ref.len);
    assert_int_equal(f->fb.raft_fsm.restore(&f->fb.raft_fsm, &snap), 0);
    assert_int_equal(f->fb.installs_prepared, 1);
    assert_null(f->fb.install_map.base);
    assert_int_equal(f->b.applied_index, ref.index);
    state_digest(&f->b, db);
    assert_memory_equal(da, db, TANDEM_DIGEST_LEN);

    /* At or past the reference (raft_start after a clean stop): no file is read or fetched. */
    struct raft_buffer again = snapshot_filled(&f->fa);
    assert_int_equal(f->fb.raft_fsm.restore(&f->fb.raft_fsm, &again), 0);
    assert_int_equal(probe.calls, 1);

    /* A file the sender cannot give: the prepare fails (the shield then stops the node before
     * raft stores the install) and leaves no part file behind. */
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0); /* replays: skipped, the index stays */
    struct tandem_snapshot_ref missing = ref;
    missing.index = ref.index + 5;
    uint8_t bytes[TANDEM_SNAPSHOT_REF_LEN];
    tandem_snapshot_ref_encode(&missing, bytes);
    struct raft_buffer lost = {.base = bytes, .len = sizeof bytes};
    install.bufs = &lost;
    probe.from_dir = NULL;
    errmsg[0] = '\0';
    assert_int_not_equal(tandem_fsm_install_prepare(&f->fb, &install, sender, errmsg), 0);
    assert_non_null(strstr(errmsg, "not fetched from any member"));
    assert_int_equal(probe.calls, 2);
    assert_int_equal(atomic_load(&f->fb.snapshot_fetch_failures), 1);
    assert_false(f->fb.prepared.ready);
    assert_int_equal(tandem_snapshot_files_prune(files_b, 8, true), 0); /* no .part left */

    /* A file that is not the one named (a flipped byte): refused, and removed to be fetched
     * again. */
    char name[TANDEM_SNAPSHOT_FILE_NAME_SIZE], path[PATH_MAX];
    tandem_snapshot_file_name(&ref, name);
    snprintf(path, sizeof path, "%s/%s", files_b, name);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/%s", files_a, name);
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    assert_int_equal(fseek(file, (long)ref.len - 1, SEEK_SET), 0);
    int last = fgetc(file);
    assert_int_equal(fseek(file, (long)ref.len - 1, SEEK_SET), 0);
    assert_int_not_equal(fputc(last ^ 0x01, file), EOF);
    assert_int_equal(fclose(file), 0);
    atomic_store(&f->fb.fetch_cancel, false);
    probe.from_dir = files_a;
    struct raft_buffer named = {.base = ref_bytes, .len = sizeof ref_bytes};
    install.bufs = &named;
    errmsg[0] = '\0';
    assert_int_equal(tandem_fsm_install_prepare(&f->fb, &install, sender, errmsg), TANDEM_CORRUPT);
    assert_false(file_exists(files_b, &ref));
    assert_null(f->fb.install_map.base);

    /* One whose header names another snapshot (its checksum field differs) is refused from the
     * header, before the build. Offset 104: after magic, format, db_count, applied_index,
     * records, payload_len and the two digests. */
    file = fopen(path, "r+b");
    assert_non_null(file);
    assert_int_equal(fseek(file, (long)ref.len - 1, SEEK_SET), 0);
    assert_int_not_equal(fputc(last, file), EOF); /* the payload is whole again */
    assert_int_equal(fseek(file, 104, SEEK_SET), 0);
    int first = fgetc(file);
    assert_int_equal(fseek(file, 104, SEEK_SET), 0);
    assert_int_not_equal(fputc(first ^ 0x01, file), EOF);
    assert_int_equal(fclose(file), 0);
    errmsg[0] = '\0';
    assert_int_equal(tandem_fsm_install_prepare(&f->fb, &install, sender, errmsg), TANDEM_CORRUPT);
    assert_non_null(strstr(errmsg, "is not the one the reference names"));
    assert_false(file_exists(files_b, &ref));
    assert_false(f->fb.prepared.ready);
    tandem_fsm_close(&f->fb);
    tandem_fsm_close(&f->fa);
}

/* Retention by size: the threshold drops to 1 once the log since the last snapshot holds the
 * byte budget, and stays at the entry ceiling before; the trailing count keeps the newest entries
 * that fit the trailing bytes, at least 1, at most the entry ceiling; a snapshot starts the count
 * again and entries already behind it no longer count. */
static void test_log_budget_derivation(void **state)
{
    (void)state;
    struct tandem_log_budget b;
    assert_int_equal(tandem_log_budget_init(&b, 1000, 2500, 50, 8), 0);
    assert_int_equal(b.ring_cap, 8);
    assert_int_equal(tandem_log_budget_threshold(&b), 50);
    for (uint64_t i = 1; i <= 3; i++) {
        tandem_log_budget_applied(&b, i, 300); /* 900 bytes: under budget */
    }
    assert_int_equal(tandem_log_budget_threshold(&b), 50);
    tandem_log_budget_applied(&b, 5, 100); /* index 4 was a barrier: 0 bytes */
    assert_int_equal(tandem_log_budget_threshold(&b), 1);
    /* Behind a snapshot at 5: 100 + 300 + 300 + 300 fit in 2500 bytes, all of 1..5. */
    uint64_t kept = 0;
    assert_int_equal(tandem_log_budget_trailing(&b, 5, &kept), 5);
    assert_int_equal(kept, 1000);
    tandem_log_budget_snapshot(&b, 5);
    assert_int_equal(b.bytes_since, 0);
    assert_int_equal(tandem_log_budget_threshold(&b), 50);
    tandem_log_budget_applied(&b, 4, 300); /* a replay behind the snapshot: not counted */
    assert_int_equal(b.bytes_since, 0);

    /* Large entries: only the newest two of 1000 bytes fit in 2500. */
    for (uint64_t i = 6; i <= 9; i++) {
        tandem_log_budget_applied(&b, i, 1000);
    }
    assert_int_equal(tandem_log_budget_threshold(&b), 1);
    assert_int_equal(tandem_log_budget_trailing(&b, 9, &kept), 2);
    assert_int_equal(kept, 2000);
    /* Entries applied after the snapshot's index do not count towards its trailing, but still
     * count in the log since it. */
    assert_int_equal(tandem_log_budget_trailing(&b, 8, &kept), 2);
    assert_int_equal(kept, 2000);
    tandem_log_budget_snapshot(&b, 8);
    assert_int_equal(b.bytes_since, 1000);
    /* One entry bigger than the whole trailing budget: keep 1 all the same. */
    tandem_log_budget_applied(&b, 10, 9000);
    assert_int_equal(tandem_log_budget_trailing(&b, 10, &kept), 1);
    assert_int_equal(kept, 9000);
    tandem_log_budget_snapshot(&b, 10);

    /* Small entries: the entry ceiling wins, and the ring forgets past its capacity. */
    for (uint64_t i = 11; i <= 30; i++) {
        tandem_log_budget_applied(&b, i, 8);
    }
    assert_int_equal(b.ring_n, 8);
    assert_int_equal(tandem_log_budget_trailing(&b, 30, &kept), 8);
    assert_int_equal(kept, 64);
    assert_int_equal(tandem_log_budget_threshold(&b), 50); /* 160 bytes */
    tandem_log_budget_free(&b);

    /* A zero budget means entry counts only. */
    assert_int_equal(tandem_log_budget_init(&b, 0, 0, 16, 32), 0);
    tandem_log_budget_applied(&b, 1, 1u << 30);
    assert_int_equal(tandem_log_budget_threshold(&b), 16);
    assert_int_equal(tandem_log_budget_trailing(&b, 1, &kept), 32);
    assert_int_equal(kept, 1u << 30);
    tandem_log_budget_free(&b);

    /* The ceiling in entries counts indexes, not remembered entries: with 7 and 8 never seen
     * (configurations), 4 entries behind 10 are 7..10, holding the bytes of 9 and 10. */
    assert_int_equal(tandem_log_budget_init(&b, 1000, 2500, 50, 4), 0);
    tandem_log_budget_applied(&b, 6, 10);
    tandem_log_budget_applied(&b, 9, 20);
    tandem_log_budget_applied(&b, 10, 30);
    assert_int_equal(tandem_log_budget_trailing(&b, 10, &kept), 4);
    assert_int_equal(kept, 50);
    tandem_log_budget_free(&b);
}

/* What the log holds: everything until a snapshot is written (however long it takes), then its
 * trailing and what followed. Full once it holds snapshot_bytes + trailing_bytes while a
 * snapshot is taken; the next snapshot starts as much early as the last one saw arrive. */
static void test_log_budget_held_and_full(void **state)
{
    (void)state;
    struct tandem_log_budget b;
    assert_int_equal(tandem_log_budget_init(&b, 1000, 2500, 50, 8), 0); /* budget 3500 */
    for (uint64_t i = 1; i <= 3; i++) {
        tandem_log_budget_applied(&b, i, 300);
    }
    assert_int_equal(b.held_bytes, 900);
    /* A snapshot at 3 keeping 2 entries (600 bytes) starts: nothing is trimmed while it is
     * taken. */
    tandem_log_budget_taking(&b, 600);
    tandem_log_budget_snapshot(&b, 3);
    tandem_log_budget_applied(&b, 4, 1500);
    tandem_log_budget_applied(&b, 5, 1000);
    assert_int_equal(b.held_bytes, 3400);
    assert_false(tandem_log_budget_full(&b));
    tandem_log_budget_applied(&b, 6, 200);
    assert_int_equal(b.held_bytes, 3600);
    assert_true(tandem_log_budget_full(&b));
    /* It failed: raft trimmed nothing, and no snapshot is there to wait for: writes go on (the
     * next snapshot needs them to reach its threshold). */
    tandem_log_budget_taken(&b, false);
    assert_int_equal(b.held_bytes, 3600);
    assert_false(tandem_log_budget_full(&b));
    /* The next one, at 6 keeping 1 entry, is written after entry 7 arrived: 200 + 100 held. */
    tandem_log_budget_taking(&b, 200);
    tandem_log_budget_snapshot(&b, 6);
    tandem_log_budget_applied(&b, 7, 100);
    assert_true(tandem_log_budget_full(&b));
    tandem_log_budget_taken(&b, true);
    assert_int_equal(b.held_bytes, 300);
    assert_false(tandem_log_budget_full(&b));
    /* 100 bytes arrived during it: the next starts 100 bytes early. */
    b.taken = true;
    assert_int_equal(b.lead_bytes, 100);
    tandem_log_budget_applied(&b, 8, 700);
    assert_int_equal(tandem_log_budget_threshold(&b), 50); /* 800 of 900 */
    tandem_log_budget_applied(&b, 9, 100);
    assert_int_equal(tandem_log_budget_threshold(&b), 1);
    /* Never more than 3/4 of snapshot_bytes early. */
    b.lead_bytes = 1u << 30;
    tandem_log_budget_snapshot(&b, 9);
    tandem_log_budget_applied(&b, 10, 249);
    assert_int_equal(tandem_log_budget_threshold(&b), 50);
    tandem_log_budget_applied(&b, 11, 1);
    assert_int_equal(tandem_log_budget_threshold(&b), 1);
    /* An installed snapshot leaves only what follows it. */
    tandem_log_budget_snapshot(&b, 20);
    tandem_log_budget_installed(&b);
    assert_int_equal(b.held_bytes, 0);
    tandem_log_budget_free(&b);

    /* Without byte budgets the log is never full. */
    assert_int_equal(tandem_log_budget_init(&b, 0, 0, 16, 32), 0);
    tandem_log_budget_taking(&b, 0);
    tandem_log_budget_applied(&b, 2, 1u << 30);
    assert_false(tandem_log_budget_full(&b));
    tandem_log_budget_free(&b);
}

/* The stagger stretches both thresholds until this node has taken a snapshot, then the plain
 * period keeps the phase; an install starts the stretch again. */
static void test_log_budget_stagger(void **state)
{
    (void)state;
    struct tandem_log_budget b;
    assert_int_equal(tandem_log_budget_init(&b, 1000, 2500, 50, 8), 0);
    b.stagger_permille = 400;
    assert_int_equal(tandem_log_budget_threshold(&b), 70); /* 50 + 40 % */
    tandem_log_budget_applied(&b, 1, 1000);
    assert_int_equal(tandem_log_budget_threshold(&b), 70); /* 1000 of 1400 bytes */
    tandem_log_budget_applied(&b, 2, 400);
    assert_int_equal(tandem_log_budget_threshold(&b), 1);
    tandem_log_budget_snapshot(&b, 2);
    b.taken = true; /* what the FSM's snapshot records */
    assert_int_equal(tandem_log_budget_threshold(&b), 50);
    tandem_log_budget_applied(&b, 3, 1000);
    assert_int_equal(tandem_log_budget_threshold(&b), 1); /* the plain byte budget now */
    tandem_log_budget_snapshot(&b, 3);
    b.taken = false; /* an install: in the sender's phase, so stagger again */
    tandem_log_budget_applied(&b, 4, 1000);
    assert_int_equal(tandem_log_budget_threshold(&b), 70);
    tandem_log_budget_free(&b);
}

static void test_snapshot_restore_refuses_corrupt(void **state)
{
    struct fixture *f = *state;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    build_script(f);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0);
    apply_script(&f->fb, f, 0, 3, 0);
    state_digest(&f->b, before);
    struct raft_buffer snap = snapshot_via_raft(&f->fa, NULL, 0);
    ((uint8_t *)snap.base)[snap.len - 1] ^= 0x20;
    /* On failure raft keeps ownership: the buffer is still ours to free. */
    assert_int_not_equal(f->fb.raft_fsm.restore(&f->fb.raft_fsm, &snap), 0);
    assert_non_null(strstr(f->fb.errmsg, "checksum"));
    assert_int_equal(f->fb.snapshots_restored, 0);
    assert_int_equal(f->b.applied_index, 3);
    state_digest(&f->b, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    raft_free(snap.base);
}

/* An installed snapshot that fails to restore at runtime (raft's trail already at the snapshot's
 * index): libraft 0.22.1 would neither free the buffer nor stop, so the FSM frees it (no leak
 * under LSan; raft_free here would be a double free) and poisons the store, which stops the node.
 */
static void test_runtime_restore_failure_frees_and_poisons(void **state)
{
    struct fixture *f = *state;
    struct raft raft;
    build_script(f);
    apply_script(&f->fa, f, 0, SCRIPT_LEN, 0);
    apply_script(&f->fb, f, 0, 3, 0);
    struct raft_buffer snap = snapshot_via_raft(&f->fa, NULL, 0);
    ((uint8_t *)snap.base)[snap.len - 1] ^= 0x20;
    memset(&raft, 0, sizeof raft);
    raft.trail.snapshot.index = raft.trail.offset = SCRIPT_LEN; /* as TrailRestore leaves it */
    tandem_fsm_set_raft(&f->fb, &raft);
    assert_int_not_equal(f->fb.raft_fsm.restore(&f->fb.raft_fsm, &snap), 0);
    assert_true(f->b.poisoned);
    assert_int_equal(f->b.applied_index, 3); /* the old state, intact on disk */
    assert_int_equal(f->fb.snapshots_restored, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entry_codec_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_decode_rejects, setup, teardown),
        cmocka_unit_test(test_entry_decode_drops_unknown_fields),
        cmocka_unit_test_setup_teardown(test_apply_puts_deletes_txns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_after_lost_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_apply_poisons_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_digest_changes_every_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_compare_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_value_order_is_bytewise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_branches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_keys_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_compare_invalid_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_via_raft_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_filled_off_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_file_reference, setup, teardown),
        cmocka_unit_test(test_log_budget_derivation),
        cmocka_unit_test(test_log_budget_stagger),
        cmocka_unit_test(test_log_budget_held_and_full),
        cmocka_unit_test_setup_teardown(test_snapshot_restore_refuses_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_restore_failure_frees_and_poisons, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
