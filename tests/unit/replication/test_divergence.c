/* Unit tests for the divergence report's entry list: every command type's identifiers (keys,
 * jobs, boxes) are listed once each, generated job ids are the ones apply would give, values
 * and personal data never appear, undecodable entries are reported, and the lists are bounded. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replication/divergence.h"
#include "replication/fsm.h"

#define ENTRIES_MAX (TANDEM_DIVERGENCE_ENTRIES_MAX + 5)

struct log {
    struct raft_entry entries[ENTRIES_MAX];
    size_t n;
};

static void append_batch(struct log *l, uint64_t term, Tandem__Command **commands, size_t n)
{
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    batch.now_ms = 1796452500123; /* 2026-12-05T06:35:00.123Z */
    batch.commands = commands;
    batch.n_commands = n;
    struct raft_entry *e = &l->entries[l->n++];
    e->term = term;
    e->type = RAFT_COMMAND;
    assert_int_equal(tandem_entry_encode(&batch, &e->buf), 0);
}

static void log_free(struct log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        raft_free(l->entries[i].buf.base);
    }
}

static ProtobufCBinaryData bytes(const char *text)
{
    return (ProtobufCBinaryData){strlen(text), (uint8_t *)text};
}

static const char *string_at(json_t *array, size_t i)
{
    return json_string_value(json_array_get(array, i));
}

static void test_every_identifier_once_and_no_value(void **state)
{
    (void)state;
    struct log *l = calloc(1, sizeof *l);
    Tandem__KvPut put = TANDEM__KV_PUT__INIT;
    put.key = bytes("lost/1");
    put.value = bytes("SECRET-VALUE");
    Tandem__JobRecord job = TANDEM__JOB_RECORD__INIT, generated = TANDEM__JOB_RECORD__INIT;
    job.id = "JOB-7";
    job.individual_number = bytes("123456789012");
    generated.id = "";
    Tandem__JobCreate create = TANDEM__JOB_CREATE__INIT, create2 = TANDEM__JOB_CREATE__INIT;
    create.job = &job;
    create2.job = &generated;
    Tandem__BoxRecord box1 = TANDEM__BOX_RECORD__INIT, box2 = TANDEM__BOX_RECORD__INIT;
    box1.id = "BOX-1";
    box2.id = "BOX-2";
    Tandem__BoxRecord *boxes[] = {&box1, &box2};
    Tandem__BoxCheckin checkin = TANDEM__BOX_CHECKIN__INIT;
    checkin.boxes = boxes;
    checkin.n_boxes = 2;
    Tandem__BoxAction pick = TANDEM__BOX_ACTION__INIT;
    pick.id = "BOX-1";
    pick.job = "JOB-7";
    Tandem__Command c[5] = {TANDEM__COMMAND__INIT, TANDEM__COMMAND__INIT, TANDEM__COMMAND__INIT,
                            TANDEM__COMMAND__INIT, TANDEM__COMMAND__INIT};
    c[0].body_case = TANDEM__COMMAND__BODY_KV_PUT;
    c[0].kv_put = &put;
    c[1].body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    c[1].job_create = &create;
    c[2].body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    c[2].job_create = &create2;
    c[3].body_case = TANDEM__COMMAND__BODY_BOX_CHECKIN;
    c[3].box_checkin = &checkin;
    c[4].body_case = TANDEM__COMMAND__BODY_BOX_ACTION;
    c[4].box_action = &pick;
    Tandem__Command *first[] = {&c[0], &c[1], &c[2]}, *second[] = {&c[3], &c[4], &c[0]};
    append_batch(l, 5, first, 3);
    append_batch(l, 5, second, 3);
    l->entries[l->n++] = (struct raft_entry){.term = 6, .type = RAFT_CHANGE};

    json_t *out = tandem_divergence_entries_json(l->entries, 1058, l->n);
    assert_non_null(out);
    char *text = json_dumps(out, JSON_COMPACT);
    assert_null(strstr(text, "SECRET-VALUE"));
    assert_null(strstr(text, "123456789012"));
    assert_int_equal(json_integer_value(json_object_get(out, "entries_after_fork")), 3);
    json_t *entries = json_object_get(out, "entries");
    json_t *e0 = json_array_get(entries, 0);
    assert_int_equal(json_integer_value(json_object_get(e0, "index")), 1058);
    assert_int_equal(json_integer_value(json_object_get(e0, "term")), 5);
    assert_string_equal(json_string_value(json_object_get(e0, "proposed")),
                        "2026-12-05T06:35:00.123Z");
    json_t *cmd = json_array_get(json_object_get(e0, "commands"), 2);
    assert_string_equal(json_string_value(json_object_get(cmd, "type")), "job_create");
    assert_string_equal(json_string_value(json_object_get(cmd, "job")), "J1058-1");
    json_t *e2 = json_array_get(entries, 2);
    assert_string_equal(json_string_value(json_object_get(e2, "type")), "configuration");
    json_t *touched = json_object_get(out, "touched");
    json_t *keys = json_object_get(touched, "keys"), *jobs = json_object_get(touched, "jobs");
    json_t *boxes_out = json_object_get(touched, "boxes");
    assert_int_equal(json_array_size(keys), 1); /* written twice, listed once */
    assert_string_equal(string_at(keys, 0), "lost/1");
    assert_int_equal(json_array_size(jobs), 2);
    assert_string_equal(string_at(jobs, 0), "JOB-7");
    assert_string_equal(string_at(jobs, 1), "J1058-1");
    assert_int_equal(json_array_size(boxes_out), 2);
    assert_string_equal(string_at(boxes_out, 1), "BOX-2");
    free(text);
    json_decref(out);
    log_free(l);
    free(l);
}

static void test_binary_keys_txns_and_bad_entries(void **state)
{
    (void)state;
    struct log *l = calloc(1, sizeof *l);
    Tandem__TxnOp put = TANDEM__TXN_OP__INIT, get = TANDEM__TXN_OP__INIT;
    const char binary[] = {'\xff', '\x01'};
    put.kind = TANDEM__TXN_OP__KIND__PUT;
    put.key = (ProtobufCBinaryData){2, (uint8_t *)binary};
    put.value = bytes("v");
    get.kind = TANDEM__TXN_OP__KIND__GET;
    get.key = bytes("only-read");
    Tandem__TxnOp *ops[] = {&get, &put};
    Tandem__Txn txn = TANDEM__TXN__INIT;
    txn.success = ops;
    txn.n_success = 2;
    Tandem__Command c = TANDEM__COMMAND__INIT;
    c.body_case = TANDEM__COMMAND__BODY_TXN;
    c.txn = &txn;
    Tandem__Command *cs[] = {&c};
    append_batch(l, 3, cs, 1);
    static uint8_t garbage[16] = {1, 2, 3};
    l->entries[l->n++] =
        (struct raft_entry){.term = 3, .type = RAFT_COMMAND, .buf = {.base = NULL, .len = 0}};
    l->entries[l->n - 1].buf.base = garbage;
    l->entries[l->n - 1].buf.len = sizeof garbage;

    json_t *out = tandem_divergence_entries_json(l->entries, 10, l->n);
    json_t *keys = json_object_get(json_object_get(out, "touched"), "keys");
    assert_int_equal(json_array_size(keys), 1); /* the read key changed nothing */
    assert_string_equal(string_at(keys, 0), "hex:ff01");
    json_t *bad = json_array_get(json_object_get(out, "entries"), 1);
    assert_non_null(json_object_get(bad, "error"));
    json_decref(out);
    l->n--; /* the garbage is not raft's memory */
    log_free(l);
    free(l);
}

static void test_the_list_is_bounded_but_the_count_is_not(void **state)
{
    (void)state;
    struct log *l = calloc(1, sizeof *l);
    for (size_t i = 0; i < ENTRIES_MAX; i++) {
        l->entries[l->n++] = (struct raft_entry){.term = 2, .type = RAFT_BARRIER};
    }
    json_t *out = tandem_divergence_entries_json(l->entries, 1, l->n);
    assert_int_equal(json_integer_value(json_object_get(out, "entries_after_fork")), ENTRIES_MAX);
    assert_int_equal(json_array_size(json_object_get(out, "entries")),
                     TANDEM_DIVERGENCE_ENTRIES_MAX);
    assert_int_equal(json_integer_value(json_object_get(out, "entries_listed")),
                     TANDEM_DIVERGENCE_ENTRIES_MAX);
    json_decref(out);
    free(l);
}

/* Ids apply generates count from 1 within each entry, as apply numbers them. */
static void test_generated_job_ids_restart_in_each_entry(void **state)
{
    (void)state;
    struct log *l = calloc(1, sizeof *l);
    Tandem__JobRecord job = TANDEM__JOB_RECORD__INIT;
    job.id = "";
    Tandem__JobCreate create = TANDEM__JOB_CREATE__INIT;
    create.job = &job;
    Tandem__Command c = TANDEM__COMMAND__INIT;
    c.body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    c.job_create = &create;
    Tandem__Command *two[] = {&c, &c};
    append_batch(l, 4, two, 2);
    append_batch(l, 4, two, 1);
    json_t *out = tandem_divergence_entries_json(l->entries, 41, l->n);
    json_t *jobs = json_object_get(json_object_get(out, "touched"), "jobs");
    assert_int_equal(json_array_size(jobs), 3);
    assert_string_equal(string_at(jobs, 0), "J41-1");
    assert_string_equal(string_at(jobs, 1), "J41-2");
    assert_string_equal(string_at(jobs, 2), "J42-1");
    json_decref(out);
    log_free(l);
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_identifier_once_and_no_value),
        cmocka_unit_test(test_binary_keys_txns_and_bad_entries),
        cmocka_unit_test(test_the_list_is_bounded_but_the_count_is_not),
        cmocka_unit_test(test_generated_job_ids_restart_in_each_entry),
    };
    return cmocka_run_group_tests_name("divergence report entries", tests, NULL, NULL);
}
