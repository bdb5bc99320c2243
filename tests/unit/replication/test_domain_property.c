/* Property and determinism tests of the domain: after many random operations (legal and
 * illegal, batched as raft would) every index entry matches its record and every record has its
 * entries; two fresh state machines applying the same log reach the same state digest. The seed
 * is printed; TANDEM_SEED=N repeats a run. */
#include "test_domain_fixture.h"

#include <errno.h>
#include <time.h>

#define OPS           3000 /* random commands in the property run */
#define BATCH_MAX     8    /* commands in one generated entry */
#define CHECK_EVERY   50   /* entries between full invariant checks */
#define JOBS          40   /* distinct job ids the generator uses */
#define BOXES         120  /* distinct box ids */
#define BULK_ROWS_MAX 6
#define LOG_ENTRIES   400 /* entries in the replay log */
#define DAY_MS        TANDEM_MS_PER_DAY

static const char *const sites[] = {"east", "west"};
static const char *const clients[] = {"acme", "globex", "initech"};

struct rng {
    uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
    r->state ^= r->state << 13;
    r->state ^= r->state >> 7;
    r->state ^= r->state << 17;
    return r->state;
}

static unsigned rng_below(struct rng *r, unsigned n)
{
    return (unsigned)(rng_next(r) % n);
}

/* One generated command and the strings and rows it points to. */
struct gen_cmd {
    struct dom_cmd c;
    char id[16], job[16], shelf[16];
    char row_ids[BULK_ROWS_MAX][16];
    Tandem__BoxRecord rows[BULK_ROWS_MAX];
    Tandem__BoxRecord *ptrs[BULK_ROWS_MAX];
};

static void gen_job_id(struct rng *r, char *out)
{
    snprintf(out, 16, "J%02u", rng_below(r, JOBS));
}

static void gen_box_id(struct rng *r, char *out)
{
    snprintf(out, 16, "B%03u", rng_below(r, BOXES));
}

static Tandem__Command *gen_job_create(struct rng *r, struct gen_cmd *g)
{
    static const char *const stage_sets[] = {NULL, "a", "a,b", "x,y,z"};
    gen_job_id(r, g->id);
    bool generated = rng_below(r, 10) == 0; /* sometimes let apply pick the id */
    return dom_job_create(&g->c, generated ? NULL : g->id, clients[rng_below(r, 3)],
                          sites[rng_below(r, 2)], stage_sets[rng_below(r, 4)]);
}

static Tandem__Command *gen_checkin(struct rng *r, struct gen_cmd *g)
{
    gen_box_id(r, g->id);
    snprintf(g->shelf, sizeof g->shelf, "S%u", rng_below(r, 5));
    Tandem__Command *command =
        dom_box_checkin(&g->c, g->id, clients[rng_below(r, 3)], sites[rng_below(r, 2)],
                        rng_below(r, 4) == 0 ? NULL : g->shelf);
    if (rng_below(r, 3) == 0) {
        size_t n = 2 + rng_below(r, BULK_ROWS_MAX - 1);
        for (size_t i = 0; i < n; i++) {
            g->rows[i] = g->c.box;
            gen_box_id(r, g->row_ids[i]);
            g->rows[i].id = g->row_ids[i];
            g->ptrs[i] = &g->rows[i];
        }
        g->c.checkin.boxes = g->ptrs;
        g->c.checkin.n_boxes = n;
        g->c.checkin.bulk = 1;
    }
    return command;
}

/* Picks and returns often, disposal rarely, so that boxes live through whole cycles. */
static int gen_box_action(struct rng *r)
{
    unsigned p = rng_below(r, 100);
    return p < 40   ? TANDEM_BOX_ACTION_PICK
           : p < 60 ? TANDEM_BOX_ACTION_RETURN
           : p < 88 ? TANDEM_BOX_ACTION_MOVE
           : p < 98 ? TANDEM_BOX_ACTION_DISPOSE
                    : TANDEM_BOX_ACTION_PROCESS;
}

static Tandem__Command *gen_command(struct rng *r, struct gen_cmd *g, int64_t now_ms)
{
    unsigned kind = rng_below(r, 100);
    if (kind < 12) {
        return gen_job_create(r, g);
    }
    if (kind < 40) {
        gen_job_id(r, g->id);
        return dom_job_action(&g->c, g->id, (int)rng_below(r, TANDEM_JOB_ACTION_COUNT),
                              rng_below(r, 2) ? "kim" : "");
    }
    if (kind < 55) {
        return gen_checkin(r, g);
    }
    if (kind < 98) {
        gen_box_id(r, g->id);
        gen_job_id(r, g->job);
        snprintf(g->shelf, sizeof g->shelf, "S%u", rng_below(r, 5));
        return dom_box_action(&g->c, g->id, gen_box_action(r), g->job, sites[rng_below(r, 2)],
                              g->shelf);
    }
    return dom_purge(&g->c, now_ms - 90 * DAY_MS, 90, rng_below(r, 2) ? 0 : 5);
}

/* Generates one entry of 1..BATCH_MAX commands stamped now_ms. */
static void gen_entry(struct rng *r, struct gen_cmd *cmds, int64_t now_ms, uint64_t serial,
                      struct raft_buffer *buf, size_t *n)
{
    Tandem__Command *commands[BATCH_MAX];
    *n = 1 + rng_below(r, BATCH_MAX);
    for (size_t i = 0; i < *n; i++) {
        commands[i] = gen_command(r, &cmds[i], now_ms);
    }
    dom_encode(now_ms, serial, commands, *n, buf);
}

/* Picked and in-process boxes are on their job's list; every listed box exists. */
static void check_links(struct dom *d)
{
    MDB_txn *txn = dom_read(d);
    char id[16];
    for (unsigned b = 0; b < BOXES; b++) {
        Tandem__BoxRecord *box = NULL;
        snprintf(id, sizeof id, "B%03u", b);
        assert_int_equal(tandem_box_get(&d->store, txn, id, &box), 0);
        if (box != NULL &&
            (box->status == TANDEM_BOX_PICKED || box->status == TANDEM_BOX_IN_PROCESS)) {
            Tandem__JobRecord *job = NULL;
            assert_int_equal(tandem_job_get(&d->store, txn, box->job, &job), 0);
            assert_non_null(job);
            bool listed = false;
            for (size_t i = 0; i < job->n_boxes; i++) {
                listed = listed || strcmp(job->boxes[i], id) == 0;
            }
            assert_true(listed);
            assert_string_equal(job->client, box->client);
            tandem__job_record__free_unpacked(job, NULL);
        }
        tandem__box_record__free_unpacked(box, NULL);
    }
    mdb_txn_abort(txn);
}

static uint64_t test_seed(void)
{
    const char *text = getenv("TANDEM_SEED");
    uint64_t seed = text != NULL ? strtoull(text, NULL, 10) : (uint64_t)time(NULL);
    print_message("domain property seed: %llu (TANDEM_SEED=%llu repeats it)\n",
                  (unsigned long long)seed, (unsigned long long)seed);
    return seed == 0 ? 1 : seed;
}

static void test_indexes_match_records(void **state)
{
    static struct gen_cmd cmds[BATCH_MAX];
    struct dom d;
    struct rng r = {test_seed()};
    size_t done = 0, entries = 0, refused = 0;
    (void)state;
    dom_open(&d);
    while (done < OPS) {
        struct raft_buffer buf;
        size_t n;
        d.now_ms += (int64_t)rng_below(&r, (unsigned)DAY_MS);
        gen_entry(&r, cmds, d.now_ms, ++d.serial, &buf, &n);
        dom_apply_entry(&d, &buf);
        raft_free(buf.base);
        for (size_t i = 0; i < n; i++) {
            refused += d.results[i].status >= 400;
            assert_true(d.results[i].status >= 200 && d.results[i].status < 500);
        }
        done += n;
        if (++entries % CHECK_EVERY == 0) {
            dom_check_indexes(&d);
            check_links(&d);
        }
    }
    dom_check_indexes(&d);
    check_links(&d);
    /* Both kinds of outcome happened, or the run proved little. */
    assert_true(refused > OPS / 10 && refused < OPS - OPS / 10);
    dom_close(&d);
}

/* The checkers are real: a missing or stray index entry is found. */
static void test_index_check_detects_damage(void **state)
{
    struct dom d;
    struct dom_cmd c;
    MDB_txn *txn;
    (void)state;
    dom_open(&d);
    dom_apply_expect(&d, dom_job_create(&c, "J1", "acme", "east", NULL), 201);
    dom_apply_expect(&d, dom_box_checkin(&c, "B1", "acme", "east", "S"), 201);
    dom_check_indexes(&d);
    assert_int_equal(tandem_store_write_txn(&d.store, &txn), 0);
    assert_int_equal(tandem_index_del(&d.store, txn, TANDEM_DB_JOB_IDX, 't', "queued", "J1"), 0);
    assert_int_equal(tandem_job_index_check(&d.store, txn), TANDEM_CORRUPT);
    assert_non_null(strstr(d.store.errmsg, "J1 has no index entry t/queued"));
    assert_int_equal(tandem_index_put(&d.store, txn, TANDEM_DB_JOB_IDX, 't', "queued", "J1"), 0);
    assert_int_equal(tandem_job_index_check(&d.store, txn), 0);
    assert_int_equal(tandem_index_put(&d.store, txn, TANDEM_DB_BOX_IDX, 's', "west", "B1"), 0);
    assert_int_equal(tandem_box_index_check(&d.store, txn), TANDEM_CORRUPT);
    assert_non_null(strstr(d.store.errmsg, "box_idx holds"));
    tandem_store_abort(&d.store);
    dom_close(&d);
}

/* Builds the replay log: LOG_ENTRIES entries generated from seed. */
static void log_build(uint64_t seed, struct raft_buffer *log)
{
    static struct gen_cmd cmds[BATCH_MAX];
    struct rng r = {seed};
    int64_t now = DOM_T0;
    for (size_t i = 0; i < LOG_ENTRIES; i++) {
        size_t n;
        now += (int64_t)rng_below(&r, (unsigned)(2 * DAY_MS));
        gen_entry(&r, cmds, now, i + 1, &log[i], &n);
    }
}

/* Applies the log to a fresh state machine, committing every commit_every entries. */
static void log_apply(const struct raft_buffer *log, size_t commit_every,
                      uint8_t digest[TANDEM_DIGEST_LEN], uint8_t apply_digest[TANDEM_DIGEST_LEN])
{
    struct dom d;
    dom_open(&d);
    tandem_fsm_set_claim(&d.fsm, NULL, NULL); /* a follower: nobody waits for results */
    for (size_t i = 0; i < LOG_ENTRIES; i++) {
        dom_apply_entry(&d, &log[i]);
        if ((i + 1) % commit_every == 0) {
            assert_int_equal(tandem_store_commit(&d.store), 0);
        }
    }
    dom_digest(&d, digest);
    memcpy(apply_digest, d.store.apply_digest, TANDEM_DIGEST_LEN);
    dom_check_indexes(&d);
    dom_close(&d);
}

static void test_replay_determinism(void **state)
{
    static struct raft_buffer log[LOG_ENTRIES], other[LOG_ENTRIES];
    uint8_t a[TANDEM_DIGEST_LEN], b[TANDEM_DIGEST_LEN], c[TANDEM_DIGEST_LEN];
    uint8_t chain_a[TANDEM_DIGEST_LEN], chain_b[TANDEM_DIGEST_LEN], chain_c[TANDEM_DIGEST_LEN];
    uint64_t seed = test_seed();
    (void)state;
    log_build(seed, log);
    log_apply(log, 1, a, chain_a);
    log_apply(log, 64, b, chain_b); /* other commit grouping, same state */
    assert_memory_equal(a, b, TANDEM_DIGEST_LEN);
    assert_memory_equal(chain_a, chain_b, TANDEM_DIGEST_LEN);
    log_build(seed + 1, other);
    log_apply(other, 1, c, chain_c);
    assert_memory_not_equal(a, c, TANDEM_DIGEST_LEN);
    for (size_t i = 0; i < LOG_ENTRIES; i++) {
        raft_free(log[i].base);
        raft_free(other[i].base);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_indexes_match_records),
        cmocka_unit_test(test_index_check_detects_damage),
        cmocka_unit_test(test_replay_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
