/* Unit tests of replication/bcp/backups.c: the replicated table of shipped backups - a record
 * stored once, malformed ones refused, verification and loss by holders only, retirement and
 * the bounded tombstones, the listing and the per-site summary the status views show. */
#include "test_domain_fixture.h"

#include "replication/bcp/backups.h"

#define T_MIN 60000LL

struct rec {
    Tandem__BackupStore store;
    Tandem__BackupRecord record;
    char id[TANDEM_BACKUP_ID_LEN_MAX + 1];
    char *holders[TANDEM_BACKUP_HOLDERS_MAX + 1];
    char *witnesses[2];
};

/* A record of site taken at created_ms, kept on west-1 and west-2 (east) or the east nodes. */
static Tandem__Command *store_cmd(struct dom_cmd *c, struct rec *r, const char *site,
                                  int64_t created_ms, uint64_t index)
{
    Tandem__Command *command = dom_command(c, NULL);
    bool east = strcmp(site, "east") == 0;
    tandem__backup_store__init(&r->store);
    tandem__backup_record__init(&r->record);
    snprintf(r->id, sizeof r->id, "%s-%lld", site, (long long)created_ms);
    r->holders[0] = east ? "west-1" : "east-1";
    r->holders[1] = east ? "west-2" : "east-2";
    r->witnesses[0] = "witness-1";
    r->record.id = r->id;
    r->record.site = (char *)site;
    r->record.taken_by = east ? "east-2" : "west-2";
    r->record.index = index;
    r->record.term = 3;
    r->record.size = 4096;
    r->record.sha256 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    r->record.state_digest = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    r->record.created_ms = created_ms;
    r->record.holders = r->holders;
    r->record.n_holders = 2;
    r->record.manifest_holders = r->witnesses;
    r->record.n_manifest_holders = 1;
    r->record.verified_level = 1;
    r->record.verified_by = r->holders[0];
    r->record.manifest_json = "{\"applied_index\":1}";
    r->store.record = &r->record;
    command->body_case = TANDEM__COMMAND__BODY_BACKUP_STORE;
    command->backup_store = &r->store;
    return command;
}

static int update(struct dom *d, const char *id, int kind, const char *node, uint32_t level,
                  const char *reason)
{
    struct dom_cmd c;
    Tandem__BackupUpdate u;
    Tandem__Command *command = dom_command(&c, NULL);
    tandem__backup_update__init(&u);
    u.id = (char *)id;
    u.kind = (Tandem__BackupUpdate__Kind)kind;
    u.node = (char *)node;
    u.level = level;
    u.reason = (char *)reason;
    command->body_case = TANDEM__COMMAND__BODY_BACKUP_UPDATE;
    command->backup_update = &u;
    return dom_apply(d, command);
}

static void store_expect(struct dom *d, const char *site, int64_t created_ms, uint64_t index,
                         int status)
{
    struct dom_cmd c;
    struct rec r;
    dom_apply_expect(d, store_cmd(&c, &r, site, created_ms, index), status);
}

static Tandem__BackupRecord *record_now(struct dom *d, const char *id)
{
    Tandem__BackupRecord *r = NULL;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_backups_get(&d->store, txn, id, &r), 0);
    mdb_txn_abort(txn);
    return r;
}

static enum tandem_backup_state state_now(struct dom *d, const char *id)
{
    Tandem__BackupRecord *r = record_now(d, id);
    assert_non_null(r);
    enum tandem_backup_state s = tandem_backup_state_of(r);
    tandem__backup_record__free_unpacked(r, NULL);
    return s;
}

static void test_store_once(void **state)
{
    struct dom d;
    (void)state;
    dom_open(&d);
    store_expect(&d, "east", DOM_T0 - T_MIN, 10, 200);
    json_t *body = dom_body(&d);
    assert_string_equal(json_string_value(json_object_get(body, "state")), "kept");
    assert_string_equal(json_string_value(json_object_get(body, "recorded")),
                        "2023-11-14T22:13:20.000Z");
    assert_int_equal(json_integer_value(json_object_get(body, "age_ms")), T_MIN);
    json_decref(body);
    store_expect(&d, "east", DOM_T0 - T_MIN, 10, 409); /* the same id again */
    Tandem__BackupRecord *r = record_now(&d, "east-1699999940000");
    assert_non_null(r);
    assert_int_equal(r->index, 10);
    assert_int_equal(r->verified_ms, DOM_T0); /* level 1 on arrival, at the leader's clock */
    tandem__backup_record__free_unpacked(r, NULL);
    dom_close(&d);
}

static void test_malformed_refused(void **state)
{
    struct dom d;
    struct dom_cmd c;
    struct rec r;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    (void)state;
    dom_open(&d);
    dom_digest(&d, before);
    Tandem__Command *command = store_cmd(&c, &r, "east", DOM_T0, 1);
    r.record.n_holders = 0; /* kept nowhere */
    dom_apply_expect(&d, command, 400);
    command = store_cmd(&c, &r, "east", DOM_T0, 1);
    r.record.id = "../etc";
    dom_apply_expect(&d, command, 400);
    command = store_cmd(&c, &r, "east", DOM_T0, 1);
    r.holders[1] = "bad name";
    dom_apply_expect(&d, command, 400);
    command = store_cmd(&c, &r, "east", DOM_T0, 1);
    r.record.retired_ms = 5; /* born retired */
    dom_apply_expect(&d, command, 400);
    command = store_cmd(&c, &r, "east", DOM_T0, 1);
    for (int i = 0; i <= TANDEM_BACKUP_HOLDERS_MAX; i++) {
        r.holders[i] = "west-1";
    }
    r.record.n_holders = TANDEM_BACKUP_HOLDERS_MAX + 1; /* too many to keep it */
    dom_apply_expect(&d, command, 400);
    assert_int_equal(update(&d, "east-1", TANDEM__BACKUP_UPDATE__KIND__LOST, "west-1", 0, "x"),
                     404);
    dom_digest(&d, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN); /* nothing changed */
    dom_close(&d);
}

static void test_loss_and_verification(void **state)
{
    struct dom d;
    const char *id = "east-1700000000000";
    (void)state;
    dom_open(&d);
    store_expect(&d, "east", DOM_T0, 20, 200);
    /* Only holders verify or lose a copy. */
    assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__LOST, "east-1", 0, "gone"), 409);
    assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__VERIFIED, "witness-1", 2, ""),
                     409);
    assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__LOST, "west-1", 0, "missing"),
                     200);
    assert_int_equal(state_now(&d, id), TANDEM_BACKUP_DEGRADED);
    assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__LOST, "west-1", 0, "again"), 200);
    assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__LOST, "west-2", 0, "missing"),
                     200);
    assert_int_equal(state_now(&d, id), TANDEM_BACKUP_LOST);
    Tandem__BackupRecord *r = record_now(&d, id);
    assert_int_equal(r->n_lost, 2); /* west-1 counted once */
    assert_string_equal(r->lost_reason, "missing");
    tandem__backup_record__free_unpacked(r, NULL);
    /* A copy verified again is there again. */
    d.now_ms += T_MIN;
    assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__VERIFIED, "west-2", 2, ""), 200);
    assert_int_equal(state_now(&d, id), TANDEM_BACKUP_DEGRADED);
    r = record_now(&d, id);
    assert_int_equal(r->verified_level, 2);
    assert_string_equal(r->verified_by, "west-2");
    assert_int_equal(r->verified_ms, DOM_T0 + T_MIN);
    tandem__backup_record__free_unpacked(r, NULL);
    dom_close(&d);
}

static void test_retired_tombstones_bounded(void **state)
{
    struct dom d;
    char id[64];
    (void)state;
    dom_open(&d);
    for (int i = 0; i < TANDEM_BACKUP_RETIRED_KEPT + 3; i++) {
        store_expect(&d, "west", DOM_T0 + i, (uint64_t)i + 1, 200);
        snprintf(id, sizeof id, "west-%lld", (long long)(DOM_T0 + i));
        d.now_ms++;
        assert_int_equal(update(&d, id, TANDEM__BACKUP_UPDATE__KIND__RETIRED, "", 0, "retention"),
                         200);
    }
    assert_int_equal(state_now(&d, id), TANDEM_BACKUP_RETIRED);
    Tandem__BackupRecord *first = record_now(&d, "west-1700000000000");
    assert_null(first); /* the oldest tombstones went */
    MDB_txn *txn = dom_read(&d);
    json_t *live = tandem_backups_list_json(&d.store, txn, "", false, d.now_ms);
    json_t *all = tandem_backups_list_json(&d.store, txn, "", true, d.now_ms);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(json_object_get(live, "backups")), 0);
    assert_int_equal(json_array_size(json_object_get(all, "backups")), TANDEM_BACKUP_RETIRED_KEPT);
    json_decref(live);
    json_decref(all);
    dom_close(&d);
}

static void test_summary_per_site(void **state)
{
    struct dom d;
    struct tandem_backup_site_summary sums[TANDEM_BACKUP_SITES_MAX];
    unsigned n = 0;
    (void)state;
    dom_open(&d);
    store_expect(&d, "east", DOM_T0 - 3 * T_MIN, 5, 200);
    store_expect(&d, "east", DOM_T0 - T_MIN, 9, 200);
    store_expect(&d, "west", DOM_T0 - 2 * T_MIN, 7, 200);
    /* Every copy of east's newest is lost: the newest east backup is the older one. */
    assert_int_equal(
        update(&d, "east-1699999940000", TANDEM__BACKUP_UPDATE__KIND__LOST, "west-1", 0, "missing"),
        200);
    assert_int_equal(
        update(&d, "east-1699999940000", TANDEM__BACKUP_UPDATE__KIND__LOST, "west-2", 0, "missing"),
        200);
    MDB_txn *txn = dom_read(&d);
    assert_int_equal(tandem_backups_summary(&d.store, txn, sums, TANDEM_BACKUP_SITES_MAX, &n), 0);
    json_t *east = tandem_backups_list_json(&d.store, txn, "east", false, DOM_T0);
    mdb_txn_abort(txn);
    assert_int_equal(n, 2);
    assert_string_equal(sums[0].site, "east");
    assert_int_equal(sums[0].newest_created_ms, DOM_T0 - 3 * T_MIN);
    assert_int_equal(sums[0].newest_index, 5);
    assert_int_equal(sums[0].kept, 1);
    assert_int_equal(sums[0].lost, 1);
    assert_string_equal(sums[1].site, "west");
    assert_int_equal(sums[1].verified_created_ms, DOM_T0 - 2 * T_MIN);
    json_t *js = tandem_backups_summary_json(sums, n, DOM_T0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(js, "east"), "newest_age_ms")),
        3 * T_MIN);
    assert_int_equal(json_array_size(json_object_get(east, "backups")), 2); /* site filter */
    json_decref(js);
    json_decref(east);
    dom_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_once),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_loss_and_verification),
        cmocka_unit_test(test_retired_tombstones_bounded),
        cmocka_unit_test(test_summary_per_site),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
