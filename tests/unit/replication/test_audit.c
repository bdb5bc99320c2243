/* Unit tests of the audit chain: records chained at apply on the batch's clock (the same chain
 * on every store), verification naming the first broken link, and the anchor a purge leaves. */
#include <endian.h>

#include "test_domain_fixture.h"

#include "replication/domain/audit.h"

#define AUDIT_TEST_RECORDS 8

static Tandem__AuditRecord records[AUDIT_TEST_RECORDS];
static Tandem__AuditRecord *record_ptrs[AUDIT_TEST_RECORDS];
static char objects[AUDIT_TEST_RECORDS][32];

/* An AuditAppend of n records (from first), each a kv_put by alice on its own object. */
static Tandem__Command *append_command(Tandem__Command *command, Tandem__AuditAppend *append,
                                       size_t first, size_t n)
{
    for (size_t i = first; i < first + n; i++) {
        tandem__audit_record__init(&records[i]);
        snprintf(objects[i], sizeof objects[i], "/v1/kv/key-%zu", i);
        records[i].actor = "alice";
        records[i].actor_kind = TANDEM_AUDIT_USER;
        records[i].via = 1;
        records[i].source = "127.0.0.1";
        records[i].node = "east-1";
        records[i].action = "kv_put";
        records[i].object = objects[i];
        records[i].status = 200;
        records[i].detail = "";
        record_ptrs[i] = &records[i];
    }
    tandem__command__init(command);
    tandem__audit_append__init(append);
    append->records = &record_ptrs[first];
    append->n_records = n;
    command->body_case = TANDEM__COMMAND__BODY_AUDIT_APPEND;
    command->audit_append = append;
    return command;
}

/* Applies 3 records at DOM_T0 and 2 more a day later. */
static void apply_five(struct dom *d)
{
    Tandem__Command command;
    Tandem__AuditAppend append;
    dom_apply_expect(d, append_command(&command, &append, 0, 3), 200);
    d->now_ms += TANDEM_MS_PER_DAY;
    dom_apply_expect(d, append_command(&command, &append, 3, 2), 200);
}

static struct tandem_audit_verdict verify(struct dom *d)
{
    struct tandem_audit_verdict v;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_audit_verify(txn, &d->store, &v), 0);
    mdb_txn_abort(txn);
    return v;
}

static void test_chain_links_every_record(void **state)
{
    struct dom d;
    static const uint8_t zero[TANDEM_AUDIT_HASH_LEN];
    (void)state;
    dom_open(&d);
    apply_five(&d);
    MDB_txn *txn = dom_read(&d);
    struct tandem_audit_link head;
    assert_int_equal(tandem_audit_head(txn, &d.store, &head), 0);
    assert_int_equal(head.seq, 5);
    uint8_t prev[TANDEM_AUDIT_HASH_LEN], hash[TANDEM_AUDIT_HASH_LEN];
    memcpy(prev, zero, sizeof prev);
    for (uint64_t seq = 1; seq <= 5; seq++) {
        Tandem__AuditRecord *r;
        assert_int_equal(tandem_audit_get(txn, &d.store, seq, &r), 0);
        assert_non_null(r);
        assert_int_equal(r->seq, seq);
        assert_int_equal(r->time_ms, seq <= 3 ? DOM_T0 : DOM_T0 + TANDEM_MS_PER_DAY);
        assert_memory_equal(r->prev_hash.data, prev, TANDEM_AUDIT_HASH_LEN);
        tandem_audit_hash(r, hash);
        assert_memory_equal(r->hash.data, hash, TANDEM_AUDIT_HASH_LEN);
        memcpy(prev, hash, sizeof prev);
        tandem__audit_record__free_unpacked(r, NULL);
    }
    assert_memory_equal(head.hash, prev, TANDEM_AUDIT_HASH_LEN);
    mdb_txn_abort(txn);
    struct tandem_audit_verdict v = verify(&d);
    assert_true(v.ok);
    assert_int_equal(v.records, 5);
    dom_close(&d);
}

/* Two stores applying the same entries hold the same head (apply is deterministic). */
static void test_chain_is_the_same_on_every_store(void **state)
{
    struct dom a, b;
    struct tandem_audit_link ha, hb;
    (void)state;
    dom_open(&a);
    dom_open(&b);
    apply_five(&a);
    apply_five(&b);
    MDB_txn *ta = dom_read(&a), *tb = dom_read(&b);
    assert_int_equal(tandem_audit_head(ta, &a.store, &ha), 0);
    assert_int_equal(tandem_audit_head(tb, &b.store, &hb), 0);
    assert_int_equal(ha.seq, hb.seq);
    assert_memory_equal(ha.hash, hb.hash, TANDEM_AUDIT_HASH_LEN);
    mdb_txn_abort(ta);
    mdb_txn_abort(tb);
    dom_close(&a);
    dom_close(&b);
}

/* Rewrites record seq with one field changed (its stored hash kept), or deletes it. */
static void tamper(struct dom *d, uint64_t seq, bool delete)
{
    MDB_txn *txn;
    Tandem__AuditRecord *r;
    uint8_t key[9] = {TANDEM_AUDIT_KEY_RECORD};
    uint64_t be = htobe64(seq);
    memcpy(key + 1, &be, sizeof be);
    MDB_val k = {sizeof key, key};
    assert_int_equal(tandem_store_write_txn(&d->store, &txn), 0);
    if (delete) {
        assert_int_equal(mdb_del(txn, d->store.dbi[TANDEM_DB_AUDIT], &k, NULL), 0);
    } else {
        assert_int_equal(tandem_audit_get(txn, &d->store, seq, &r), 0);
        r->status = 403; /* the record now says the request was refused */
        uint8_t buf[1024];
        MDB_val v = {tandem__audit_record__pack(r, buf), buf};
        assert_int_equal(mdb_put(txn, d->store.dbi[TANDEM_DB_AUDIT], &k, &v, 0), 0);
        tandem__audit_record__free_unpacked(r, NULL);
    }
    assert_int_equal(tandem_store_commit(&d->store), 0);
}

static void test_verify_names_the_broken_link(void **state)
{
    struct dom d;
    (void)state;
    dom_open(&d);
    apply_five(&d);
    tamper(&d, 3, false);
    struct tandem_audit_verdict v = verify(&d);
    assert_false(v.ok);
    assert_int_equal(v.broken_at, 3);
    assert_string_equal(v.reason, "hash mismatch");
    assert_int_equal(v.records, 2);
    dom_close(&d);

    dom_open(&d);
    apply_five(&d);
    tamper(&d, 2, true);
    v = verify(&d);
    assert_false(v.ok);
    assert_int_equal(v.broken_at, 2);
    assert_string_equal(v.reason, "gap");
    dom_close(&d);

    dom_open(&d);
    apply_five(&d);
    tamper(&d, 5, true); /* the newest record gone: the head still names it */
    v = verify(&d);
    assert_false(v.ok);
    assert_int_equal(v.broken_at, 5);
    dom_close(&d);
}

/* A purge removes the old records and leaves the last one's hash as the anchor: the rest still
 * verifies, the head is unchanged, and the next append chains on. */
static void test_purge_leaves_an_anchor(void **state)
{
    struct dom d;
    uint64_t purged;
    MDB_txn *txn;
    struct tandem_audit_link before, after;
    (void)state;
    dom_open(&d);
    apply_five(&d);
    txn = dom_read(&d);
    assert_int_equal(tandem_audit_head(txn, &d.store, &before), 0);
    mdb_txn_abort(txn);
    assert_int_equal(tandem_store_write_txn(&d.store, &txn), 0);
    assert_int_equal(tandem_audit_purge(txn, &d.store, DOM_T0 + 1, 1000, &purged), 0);
    assert_int_equal(purged, 3);
    assert_int_equal(tandem_store_commit(&d.store), 0);
    struct tandem_audit_verdict v = verify(&d);
    assert_true(v.ok);
    assert_int_equal(v.records, 2);
    assert_int_equal(v.anchor.seq, 3);
    assert_int_equal(v.head.seq, 5);
    txn = dom_read(&d);
    assert_int_equal(tandem_audit_head(txn, &d.store, &after), 0);
    Tandem__AuditRecord *r;
    assert_int_equal(tandem_audit_get(txn, &d.store, 2, &r), 0);
    assert_null(r);
    mdb_txn_abort(txn);
    assert_memory_equal(before.hash, after.hash, TANDEM_AUDIT_HASH_LEN);
    Tandem__Command command;
    Tandem__AuditAppend append;
    dom_apply_expect(&d, append_command(&command, &append, 5, 1), 200);
    v = verify(&d);
    assert_true(v.ok);
    assert_int_equal(v.records, 3);
    assert_int_equal(v.head.seq, 6);
    dom_close(&d);
}

static void test_bad_append_changes_nothing(void **state)
{
    struct dom d;
    Tandem__Command command;
    Tandem__AuditAppend append;
    (void)state;
    dom_open(&d);
    append_command(&command, &append, 0, 2);
    records[1].action = "";
    dom_apply_expect(&d, &command, 400);
    struct tandem_audit_verdict v = verify(&d);
    assert_true(v.ok);
    assert_int_equal(v.head.seq, 0);
    append.n_records = 0;
    dom_apply_expect(&d, &command, 400);
    dom_close(&d);
}

static Tandem__Command *purge_command(Tandem__Command *command, Tandem__RetentionPurge *purge,
                                      Tandem__Actor *actor, int64_t now_ms, uint32_t audit_days,
                                      int64_t audit_cutoff_ms)
{
    tandem__actor__init(actor);
    actor->user = "sec";
    actor->site = "east";
    tandem__retention_purge__init(purge);
    purge->actor = actor;
    purge->retention_days = 90;
    purge->cutoff_ms = now_ms - 90 * TANDEM_MS_PER_DAY;
    purge->audit_retention_days = audit_days;
    purge->audit_cutoff_ms = audit_cutoff_ms;
    tandem__command__init(command);
    command->body_case = TANDEM__COMMAND__BODY_RETENTION_PURGE;
    command->retention_purge = purge;
    return command;
}

/* POST /v1/retention/purge's command: audit records inside audit_retention_days stay (a cutoff
 * inside the period or a period under the floor is refused, nothing removed); older ones go,
 * a deletion record takes their place on the chain, and the chain still verifies. */
static void test_retention_purge_keeps_the_period_and_records_the_deletion(void **state)
{
    struct dom d;
    Tandem__Command command;
    Tandem__RetentionPurge purge;
    Tandem__Actor actor;
    (void)state;
    dom_open(&d);
    apply_five(&d); /* records at DOM_T0 (3) and DOM_T0 + 1 day (2) */
    d.now_ms = DOM_T0 + 31 * TANDEM_MS_PER_DAY;
    int64_t period = 30 * TANDEM_MS_PER_DAY;
    dom_apply_expect(&d, purge_command(&command, &purge, &actor, d.now_ms, 30, d.now_ms), 400);
    dom_apply_expect(&d, purge_command(&command, &purge, &actor, d.now_ms, 10, 0), 400);
    struct tandem_audit_verdict v = verify(&d);
    assert_int_equal(v.records, 5);
    dom_apply_expect(&d, purge_command(&command, &purge, &actor, d.now_ms, 30, d.now_ms - period),
                     200);
    json_t *body = dom_body(&d);
    json_t *audit = json_object_get(body, "audit");
    assert_int_equal(json_integer_value(json_object_get(audit, "purged")), 3);
    assert_int_equal(json_integer_value(json_object_get(audit, "anchor_seq")), 3);
    json_decref(body);
    v = verify(&d);
    assert_true(v.ok);
    assert_int_equal(v.anchor.seq, 3);
    assert_int_equal(v.head.seq, 6);
    assert_int_equal(v.records, 3);
    MDB_txn *txn = dom_read(&d);
    Tandem__AuditRecord *r;
    assert_int_equal(tandem_audit_get(txn, &d.store, 6, &r), 0);
    assert_non_null(r);
    assert_string_equal(r->action, "audit_purge");
    assert_string_equal(r->actor, "sec");
    assert_non_null(strstr(r->detail, "\"purged\":3"));
    tandem__audit_record__free_unpacked(r, NULL);
    mdb_txn_abort(txn);
    dom_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_links_every_record),
        cmocka_unit_test(test_chain_is_the_same_on_every_store),
        cmocka_unit_test(test_verify_names_the_broken_link),
        cmocka_unit_test(test_purge_leaves_an_anchor),
        cmocka_unit_test(test_bad_append_changes_nothing),
        cmocka_unit_test(test_retention_purge_keeps_the_period_and_records_the_deletion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
