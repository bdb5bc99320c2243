/* Unit tests of the process-management and warehouse domain: RFC 3339 and record codecs, both
 * transition tables (as tables and as applied, legal and illegal), the guards beyond them,
 * bulk check-in atomicity, generated ids, listings, and the trace with its retention purge. */
#include "test_domain_fixture.h"

#define ROUND_TRIPS 2000              /* random instants formatted and parsed back */
#define MS_MAX      253402300799999LL /* 9999-12-31T23:59:59.999Z */
#define LIST_JOBS   60                /* jobs in the listing test */
#define LIST_PAGE   7                 /* an odd page size so pages end mid-group */
#define BULK_ROWS   500
#define PURGE_OLD   9 /* events written before the cutoff in the purge test */
#define NO_STATUS   (-1)

struct fixture {
    struct dom d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    dom_open(&f->d);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dom_close(&f->d);
    free(f);
    return 0;
}

static void expect_status(struct dom *d, const char *kind, const char *id, const char *status)
{
    char got[32];
    dom_status(d, kind, id, got, sizeof got);
    if (strcmp(got, status) != 0) {
        fail_msg("%s %s: expected status %s, found %s", kind, id, status, got);
    }
}

/* ---- codecs ---- */

static void test_rfc3339(void **state)
{
    int64_t ms;
    char text[TANDEM_RFC3339_LEN_MAX + 1];
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2024-02-29T12:34:56.789+09:00", 1709177696789LL},
        {"2000-03-01T00:00:00-00:30", 951870600000LL},
        {"2023-11-14t22:13:20.5z", 1700000000500LL},
        {"2023-11-14 22:13:20.123456789Z", 1700000000123LL},
    };
    static const char *const bad[] = {
        "2023-02-29T00:00:00Z",      "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z",      "2024-01-01",
        "1969-12-31T23:59:59Z",      "2024-01-01T00:00:00Zx",
        "2024-01-01T00:00:00.Z",     "2024-01-01T00:00:00",
        "2024-01-01T00:00:00+9:00",  "",
        "1970-01-01T00:00:00+00:01",
    };
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (tandem_rfc3339_parse(good[i].text, &ms) != 0 || ms != good[i].ms) {
            fail_msg("%s: parsed %lld, expected %lld", good[i].text, (long long)ms,
                     (long long)good[i].ms);
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (tandem_rfc3339_parse(bad[i], &ms) == 0) {
            fail_msg("%s parsed as %lld", bad[i], (long long)ms);
        }
    }
    tandem_rfc3339_format(1709177696789LL, text);
    assert_string_equal(text, "2024-02-29T03:34:56.789Z");
    tandem_rfc3339_format(0, text);
    assert_string_equal(text, "1970-01-01T00:00:00Z");
    /* Times shown to people always carry milliseconds. */
    tandem_rfc3339_format_ms(0, text);
    assert_string_equal(text, "1970-01-01T00:00:00.000Z");
    tandem_rfc3339_format_ms(1796436146843LL, text);
    assert_string_equal(text, "2026-12-05T02:02:26.843Z");
    srandom(42);
    for (int i = 0; i < ROUND_TRIPS; i++) {
        int64_t want =
            (int64_t)(((uint64_t)random() << 31 | (uint64_t)random()) % (uint64_t)(MS_MAX + 1));
        tandem_rfc3339_format(want, text);
        if (tandem_rfc3339_parse(text, &ms) != 0 || ms != want) {
            fail_msg("%lld -> %s -> %lld", (long long)want, text, (long long)ms);
        }
    }
}

static void test_record_codecs(void **state)
{
    struct fixture *f = *state;
    char *stages[] = {"receive", "scan"}, *boxes[] = {"B1", "B2"}, *volumes[] = {"V1"};
    Tandem__JobRecord job = TANDEM__JOB_RECORD__INIT;
    Tandem__BoxRecord box = TANDEM__BOX_RECORD__INIT;
    Tandem__JobRecord *job_back = NULL;
    Tandem__BoxRecord *box_back = NULL;
    job.id = "J1", job.client = "acme", job.kind = "scan", job.site = "east";
    job.n_stages = 2, job.stages = stages, job.stage = 1, job.status = TANDEM_JOB_ON_HOLD;
    job.held_from = TANDEM_JOB_IN_PROGRESS, job.effort = 42, job.has_due = 1;
    job.due_ms = 1709177696789LL, job.priority = -5, job.n_boxes = 2, job.boxes = boxes;
    job.operator_ = "kim", job.pinned = 1, job.created_ms = 1, job.updated_ms = 2;
    job.create_index = 3, job.mod_index = 4;
    job.individual_number.data = (uint8_t *)"123412341234";
    job.individual_number.len = 12;
    box.id = "B1", box.ledger = "L-9", box.client = "acme", box.n_volumes = 1;
    box.volumes = volumes, box.site = "west", box.shelf = "W-1", box.status = TANDEM_BOX_RETURNED;
    box.job = "J1", box.has_retain_until = 1, box.retain_until_ms = 99;
    MDB_txn *txn;
    assert_int_equal(tandem_store_write_txn(&f->d.store, &txn), 0);
    assert_int_equal(tandem_job_write(&f->d.store, txn, NULL, &job), 0);
    assert_int_equal(tandem_box_write(&f->d.store, txn, NULL, &box), 0);
    assert_int_equal(tandem_job_get(&f->d.store, txn, "J1", &job_back), 0);
    assert_int_equal(tandem_box_get(&f->d.store, txn, "B1", &box_back), 0);
    assert_non_null(job_back);
    assert_non_null(box_back);
    /* Re-encoding the decoded record gives the same bytes: nothing was lost or added. */
    size_t n = tandem__job_record__get_packed_size(&job);
    assert_int_equal(tandem__job_record__get_packed_size(job_back), n);
    uint8_t *a = malloc(n), *b = malloc(n);
    tandem__job_record__pack(&job, a);
    tandem__job_record__pack(job_back, b);
    assert_memory_equal(a, b, n);
    free(a);
    free(b);
    assert_string_equal(job_back->operator_, "kim");
    assert_int_equal(job_back->due_ms, 1709177696789LL);
    assert_int_equal(job_back->priority, -5);
    assert_memory_equal(job_back->individual_number.data, "123412341234", 12);
    assert_string_equal(box_back->volumes[0], "V1");
    assert_int_equal(box_back->retain_until_ms, 99);
    assert_int_equal(box_back->status, TANDEM_BOX_RETURNED);
    assert_int_equal(tandem_job_index_check(&f->d.store, txn), 0);
    assert_int_equal(tandem_box_index_check(&f->d.store, txn), 0);
    tandem__job_record__free_unpacked(job_back, NULL);
    tandem__box_record__free_unpacked(box_back, NULL);
}

/* Every domain command survives the raft entry framing with its fields intact. */
static void test_command_codecs(void **state)
{
    struct dom_cmd c[5];
    Tandem__Command *commands[5];
    struct raft_buffer buf;
    Tandem__Batch *batch;
    char errmsg[256];
    (void)state;
    commands[0] = dom_job_create(&c[0], "J1", "acme", "east", "a,b,c");
    c[0].job.has_due = 1;
    c[0].job.due_ms = 12345;
    commands[1] = dom_job_action(&c[1], "J1", TANDEM_JOB_ACTION_OPERATOR, "kim");
    commands[2] = dom_box_checkin(&c[2], "B1", "acme", "east", "A-1");
    commands[3] = dom_box_action(&c[3], "B1", TANDEM_BOX_ACTION_MOVE, NULL, "west", "W-2");
    commands[4] = dom_purge(&c[4], 777, 90, 10);
    dom_encode(DOM_T0, 1, commands, 5, &buf);
    assert_int_equal(buf.len % 8, 0);
    assert_int_equal(tandem_entry_decode(buf.base, buf.len, &batch, errmsg), 0);
    assert_int_equal(batch->n_commands, 5);
    Tandem__JobCreate *jc = batch->commands[0]->job_create;
    assert_string_equal(jc->job->id, "J1");
    assert_int_equal(jc->job->n_stages, 3);
    assert_string_equal(jc->job->stages[2], "c");
    assert_int_equal(jc->job->due_ms, 12345);
    assert_string_equal(jc->actor->user, "tester");
    assert_string_equal(batch->commands[1]->job_action->operator_, "kim");
    assert_string_equal(batch->commands[2]->box_checkin->boxes[0]->shelf, "A-1");
    assert_string_equal(batch->commands[3]->box_action->site, "west");
    assert_int_equal(batch->commands[3]->box_action->action, TANDEM_BOX_ACTION_MOVE);
    assert_int_equal(batch->commands[4]->retention_purge->cutoff_ms, 777);
    assert_int_equal(batch->commands[4]->retention_purge->events_max, 10);
    tandem__batch__free_unpacked(batch, NULL);
    raft_free(buf.base);
}

/* ---- transition tables ---- */

#define Q  TANDEM_JOB_QUEUED
#define P  TANDEM_JOB_IN_PROGRESS
#define H  TANDEM_JOB_ON_HOLD
#define D  TANDEM_JOB_DONE
#define C  TANDEM_JOB_CANCELLED
#define NO (-1)
#define HF (-2) /* back to held_from */

/* [status][action]: advance hold resume complete cancel pin unpin operator */
static const int job_table[TANDEM_JOB_STATUS_COUNT][TANDEM_JOB_ACTION_COUNT] = {
    [Q] = {P, H, NO, D, C, Q, Q, Q},        [P] = {P, H, NO, D, C, P, P, P},
    [H] = {NO, NO, HF, NO, C, H, H, H},     [D] = {NO, NO, NO, NO, NO, NO, NO, NO},
    [C] = {NO, NO, NO, NO, NO, NO, NO, NO},
};

static void test_job_transition_table(void **state)
{
    char errmsg[256];
    uint32_t to;
    (void)state;
    for (uint32_t s = 0; s < TANDEM_JOB_STATUS_COUNT; s++) {
        for (uint32_t a = 0; a < TANDEM_JOB_ACTION_COUNT; a++) {
            int want = job_table[s][a];
            int rv = tandem_job_transition(s, a, TANDEM_JOB_IN_PROGRESS, &to, errmsg);
            if ((rv == 0) != (want != NO)) {
                fail_msg("%s from %s: table says %d, expected %s", tandem_job_action_name(a),
                         tandem_job_status_name(s), rv, want == NO ? "illegal" : "legal");
            }
            if (rv == 0) {
                assert_int_equal(to, want == HF ? TANDEM_JOB_IN_PROGRESS : (uint32_t)want);
            } else {
                assert_non_null(strstr(errmsg, "illegal job transition"));
            }
        }
    }
    assert_int_equal(tandem_job_transition(H, TANDEM_JOB_ACTION_RESUME, Q, &to, errmsg), 0);
    assert_int_equal(to, Q);
    assert_int_not_equal(tandem_job_transition(D, TANDEM_JOB_ACTION_ADVANCE, Q, &to, errmsg), 0);
    assert_string_equal(errmsg,
                        "illegal job transition: advance from done (allowed from done: none)");
    assert_int_not_equal(tandem_job_transition(H, TANDEM_JOB_ACTION_ADVANCE, Q, &to, errmsg), 0);
    assert_string_equal(errmsg, "illegal job transition: advance from on_hold (allowed from "
                                "on_hold: resume, cancel, pin, unpin, operator)");
    assert_int_equal(tandem_job_action_parse("advance"), TANDEM_JOB_ACTION_ADVANCE);
    assert_int_equal(tandem_job_action_parse("fly"), -1);
    assert_int_equal(tandem_job_status_parse("on_hold"), H);
}

#define RE TANDEM_BOX_RECEIVED
#define ST TANDEM_BOX_STORED
#define PI TANDEM_BOX_PICKED
#define IP TANDEM_BOX_IN_PROCESS
#define RT TANDEM_BOX_RETURNED
#define DI TANDEM_BOX_DISPOSED

/* [status][action]: pick process return move dispose */
static const int box_table[TANDEM_BOX_STATUS_COUNT][TANDEM_BOX_ACTION_COUNT] = {
    [RE] = {NO, NO, NO, ST, NO}, [ST] = {PI, NO, NO, ST, DI}, [PI] = {NO, IP, RT, NO, NO},
    [IP] = {NO, NO, RT, NO, NO}, [RT] = {NO, NO, NO, ST, DI}, [DI] = {NO, NO, NO, NO, NO},
};

static void test_box_transition_table(void **state)
{
    char errmsg[256];
    uint32_t to;
    (void)state;
    for (uint32_t s = 0; s < TANDEM_BOX_STATUS_COUNT; s++) {
        for (uint32_t a = 0; a < TANDEM_BOX_ACTION_COUNT; a++) {
            int want = box_table[s][a];
            int rv = tandem_box_transition(s, a, &to, errmsg);
            if ((rv == 0) != (want != NO)) {
                fail_msg("%s from %s: table says %d", tandem_box_action_name(a),
                         tandem_box_status_name(s), rv);
            }
            if (rv == 0) {
                assert_int_equal(to, (uint32_t)want);
            }
        }
    }
    assert_int_not_equal(tandem_box_transition(ST, TANDEM_BOX_ACTION_RETURN, &to, errmsg), 0);
    assert_string_equal(errmsg, "illegal box transition: return from stored (allowed from stored: "
                                "pick, move, dispose)");
    assert_int_equal(tandem_box_transition(42, 0, &to, errmsg), -1);
    assert_int_equal(tandem_box_status_parse("in_process"), IP);
}

/* ---- transitions as applied ---- */

/* A job in status s, stages a,b: in_progress means at b (its last stage). */
static void job_in_status(struct dom *d, const char *id, int s)
{
    struct dom_cmd c;
    dom_apply_expect(d, dom_job_create(&c, id, "acme", "east", "a,b"), 201);
    if (s == P || s == D) {
        dom_apply_expect(d, dom_job_action(&c, id, TANDEM_JOB_ACTION_ADVANCE, NULL), 200);
    }
    if (s == D) {
        dom_apply_expect(d, dom_job_action(&c, id, TANDEM_JOB_ACTION_COMPLETE, NULL), 200);
    }
    if (s == H || s == C) {
        int action = s == H ? TANDEM_JOB_ACTION_HOLD : TANDEM_JOB_ACTION_CANCEL;
        dom_apply_expect(d, dom_job_action(&c, id, action, NULL), 200);
    }
    expect_status(d, "job", id, tandem_job_status_name((uint32_t)s));
}

/* What applying each action does: HTTP status and the resulting status (or NO when refused). */
struct outcome {
    int http;
    int status;
};

/* [status][action]; 409s beyond the table are guards: advance at the last stage, complete
 * before it. */
static const struct outcome job_applied[TANDEM_JOB_STATUS_COUNT][TANDEM_JOB_ACTION_COUNT] = {
    [Q] = {{200, P}, {200, H}, {409, NO}, {409, NO}, {200, C}, {200, Q}, {200, Q}, {200, Q}},
    [P] = {{409, NO}, {200, H}, {409, NO}, {200, D}, {200, C}, {200, P}, {200, P}, {200, P}},
    [H] = {{409, NO}, {409, NO}, {200, Q}, {409, NO}, {200, C}, {200, H}, {200, H}, {200, H}},
    [D] = {{409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}},
    [C] = {{409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}},
};

static void test_job_transitions_applied(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    char id[32];
    struct dom_cmd c;
    for (int s = 0; s < TANDEM_JOB_STATUS_COUNT; s++) {
        for (int a = 0; a < TANDEM_JOB_ACTION_COUNT; a++) {
            const struct outcome *want = &job_applied[s][a];
            snprintf(id, sizeof id, "J%d-%d", s, a);
            job_in_status(d, id, s);
            dom_digest(d, before);
            int got = dom_apply(d, dom_job_action(&c, id, a, "kim"));
            if (got != want->http) {
                fail_msg("%s from %s: got %d (%s), expected %d",
                         tandem_job_action_name((uint32_t)a), tandem_job_status_name((uint32_t)s),
                         got, d->results[0].body, want->http);
            }
            dom_digest(d, after);
            if (want->status == NO) {
                /* Refused: nothing changed, not even the trace. */
                assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
                assert_non_null(strstr(d->results[0].body, "\"error\""));
            } else {
                expect_status(d, "job", id, tandem_job_status_name((uint32_t)want->status));
            }
        }
    }
    dom_check_indexes(d);
}

/* A box in status s, its job (if any) named job_id and open, at its middle stage. */
static void box_in_status(struct dom *d, const char *id, const char *job_id, int s)
{
    struct dom_cmd c;
    dom_apply_expect(d, dom_job_create(&c, job_id, "acme", "east", "a,b,c"), 201);
    dom_apply_expect(d, dom_box_checkin(&c, id, "acme", "east", s == RE ? NULL : "A-1"), 201);
    if (s == PI || s == IP || s == RT) {
        dom_apply_expect(d, dom_box_action(&c, id, TANDEM_BOX_ACTION_PICK, job_id, NULL, NULL),
                         200);
    }
    if (s == IP || s == RT) {
        dom_apply_expect(d, dom_job_action(&c, job_id, TANDEM_JOB_ACTION_ADVANCE, NULL), 200);
    }
    if (s == RT) {
        dom_apply_expect(d, dom_box_action(&c, id, TANDEM_BOX_ACTION_RETURN, NULL, NULL, NULL),
                         200);
    }
    if (s == DI) {
        dom_apply_expect(d, dom_box_action(&c, id, TANDEM_BOX_ACTION_DISPOSE, NULL, NULL, NULL),
                         200);
    }
    expect_status(d, "box", id, tandem_box_status_name((uint32_t)s));
}

/* [status][action]: pick process return move dispose. process is never a request (400);
 * dispose of a returned box is refused while its job is open. */
static const struct outcome box_applied[TANDEM_BOX_STATUS_COUNT][TANDEM_BOX_ACTION_COUNT] = {
    [RE] = {{409, NO}, {409, NO}, {409, NO}, {200, ST}, {409, NO}},
    [ST] = {{200, PI}, {409, NO}, {409, NO}, {200, ST}, {200, DI}},
    [PI] = {{409, NO}, {400, NO}, {200, RT}, {409, NO}, {409, NO}},
    [IP] = {{409, NO}, {409, NO}, {200, RT}, {409, NO}, {409, NO}},
    [RT] = {{409, NO}, {409, NO}, {409, NO}, {200, ST}, {409, NO}},
    [DI] = {{409, NO}, {409, NO}, {409, NO}, {409, NO}, {409, NO}},
};

static void test_box_transitions_applied(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    char id[32], job[32], other[32];
    struct dom_cmd c;
    for (int s = 0; s < TANDEM_BOX_STATUS_COUNT; s++) {
        for (int a = 0; a < TANDEM_BOX_ACTION_COUNT; a++) {
            const struct outcome *want = &box_applied[s][a];
            snprintf(id, sizeof id, "B%d-%d", s, a);
            snprintf(job, sizeof job, "J%d-%d", s, a);
            snprintf(other, sizeof other, "K%d-%d", s, a);
            box_in_status(d, id, job, s);
            /* A pick names a second open job, so a refusal can only come from the box. */
            dom_apply_expect(d, dom_job_create(&c, other, "acme", "east", NULL), 201);
            dom_digest(d, before);
            int got = dom_apply(d, dom_box_action(&c, id, a, other, "west", "W-1"));
            if (got != want->http) {
                fail_msg("%s from %s: got %d (%s), expected %d",
                         tandem_box_action_name((uint32_t)a), tandem_box_status_name((uint32_t)s),
                         got, d->results[0].body, want->http);
            }
            dom_digest(d, after);
            if (want->status == NO) {
                assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
            } else {
                expect_status(d, "box", id, tandem_box_status_name((uint32_t)want->status));
            }
        }
    }
    dom_check_indexes(d);
}

/* ---- guards ---- */

static void test_advance_moves_picked_boxes(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    dom_apply_expect(d, dom_job_create(&c, "J1", "acme", "east", "a,b"), 201);
    dom_apply_expect(d, dom_box_checkin(&c, "B1", "acme", "east", "A-1"), 201);
    dom_apply_expect(d, dom_box_checkin(&c, "B2", "acme", "east", "A-2"), 201);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL), 200);
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_ADVANCE, NULL), 200);
    expect_status(d, "box", "B1", "in_process");
    expect_status(d, "box", "B2", "stored");
    /* Past the last stage: refused, naming the rule. */
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_ADVANCE, NULL), 409);
    assert_non_null(strstr(d->results[0].body, "last stage b"));
    json_t *job = NULL;
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_PIN, NULL), 200);
    job = dom_body(d);
    assert_true(json_is_true(json_object_get(job, "pinned")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(job, "boxes"), 0)), "B1");
    json_decref(job);
    dom_check_indexes(d);
}

static void test_pick_rules(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    dom_apply_expect(d, dom_job_create(&c, "J1", "acme", "east", NULL), 201);
    dom_apply_expect(d, dom_job_create(&c, "J2", "other", "east", NULL), 201);
    dom_apply_expect(d, dom_job_create(&c, "J3", "acme", "east", NULL), 201);
    dom_apply_expect(d, dom_job_action(&c, "J3", TANDEM_JOB_ACTION_CANCEL, NULL), 200);
    dom_apply_expect(d, dom_box_checkin(&c, "B1", "acme", "east", "A-1"), 201);
    dom_apply_expect(d, dom_box_action(&c, "B9", TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL), 404);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J9", NULL, NULL), 404);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J2", NULL, NULL), 409);
    assert_non_null(strstr(d->results[0].body, "belongs to client acme"));
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J3", NULL, NULL), 409);
    assert_non_null(strstr(d->results[0].body, "open jobs only"));
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "bad id", NULL, NULL),
                     400);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL), 200);
    /* Not in stock any more. */
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL), 409);
    assert_non_null(strstr(d->results[0].body, "illegal box transition: pick from picked"));
    dom_check_indexes(d);
}

static void test_dispose_rules(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    MDB_txn *txn;
    uint64_t next;
    dom_apply_expect(d, dom_job_create(&c, "J1", "acme", "east", "a,b"), 201);
    Tandem__Command *checkin = dom_box_checkin(&c, "B1", "acme", "east", "A-1");
    c.box.has_retain_until = 1;
    c.box.retain_until_ms = DOM_T0 + 1000;
    dom_apply_expect(d, checkin, 201);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL), 200);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_RETURN, NULL, NULL, NULL), 200);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_DISPOSE, NULL, NULL, NULL), 409);
    assert_non_null(strstr(d->results[0].body, "linked to open job J1"));
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_CANCEL, NULL), 200);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_DISPOSE, NULL, NULL, NULL), 409);
    assert_non_null(strstr(d->results[0].body, "retained until"));
    d->now_ms = DOM_T0 + 1000;
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_DISPOSE, NULL, NULL, NULL), 200);
    expect_status(d, "box", "B1", "disposed");
    json_t *list = json_array();
    txn = dom_read(d);
    assert_int_equal(tandem_disposal_list(&d->store, txn, 0, 10, list, &next), 0);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(list), 1);
    json_t *record = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(record, "kind")), "box");
    assert_string_equal(json_string_value(json_object_get(record, "box")), "B1");
    assert_string_equal(json_string_value(json_object_get(record, "job")), "J1");
    assert_int_equal(next, 0);
    json_decref(list);
    dom_check_indexes(d);
}

/* Bulk rows (id i of ids), site east, shelf S. */
static Tandem__Command *bulk_command(struct dom_cmd *c, Tandem__BoxRecord *rows,
                                     Tandem__BoxRecord **ptrs, char (*ids)[16], size_t n)
{
    Tandem__Command *command = dom_box_checkin(c, "unused", "acme", "east", "S");
    for (size_t i = 0; i < n; i++) {
        rows[i] = c->box;
        rows[i].id = ids[i];
        ptrs[i] = &rows[i];
    }
    c->checkin.boxes = ptrs;
    c->checkin.n_boxes = n;
    c->checkin.bulk = 1;
    return command;
}

static size_t box_count(struct dom *d)
{
    MDB_stat stat;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(mdb_stat(txn, d->store.dbi[TANDEM_DB_BOXES], &stat), 0);
    mdb_txn_abort(txn);
    return stat.ms_entries;
}

static void test_bulk_checkin_atomic(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    static Tandem__BoxRecord rows[BULK_ROWS];
    static Tandem__BoxRecord *ptrs[BULK_ROWS];
    static char ids[BULK_ROWS][16];
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    for (size_t i = 0; i < BULK_ROWS; i++) {
        snprintf(ids[i], sizeof ids[i], "BX%04zu", i);
    }
    dom_apply_expect(d, dom_box_checkin(&c, "BX0250", "acme", "east", "A-1"), 201);
    dom_apply_expect(d, dom_box_checkin(&c, "BX0250", "acme", "east", "A-1"), 409);
    assert_string_equal(d->results[0].body, "{\"error\":\"box BX0250 already exists (stored)\"}");
    /* One row already exists, another repeats an earlier row: all refused, nothing written. */
    snprintf(ids[400], sizeof ids[400], "BX0007");
    dom_digest(d, before);
    dom_apply_expect(d, bulk_command(&c, rows, ptrs, ids, BULK_ROWS), 409);
    dom_digest(d, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    json_t *body = dom_body(d);
    json_t *errors = json_object_get(body, "rows");
    assert_int_equal(json_array_size(errors), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errors, 0), "row")), 250);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errors, 1), "row")), 400);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(errors, 1), "error")),
                           "first in row 7"));
    json_decref(body);
    /* A malformed row makes it 400. */
    snprintf(ids[400], sizeof ids[400], "bad id");
    dom_apply_expect(d, bulk_command(&c, rows, ptrs, ids, BULK_ROWS), 400);
    assert_int_equal(box_count(d), 1);
    /* Fixed: every row goes in at once. */
    snprintf(ids[400], sizeof ids[400], "BX0400");
    snprintf(ids[250], sizeof ids[250], "BY0250");
    dom_apply_expect(d, bulk_command(&c, rows, ptrs, ids, BULK_ROWS), 201);
    assert_string_equal(d->results[0].body, "{\"checked_in\":500}");
    assert_int_equal(box_count(d), BULK_ROWS + 1);
    dom_check_indexes(d);
}

static void test_generated_ids(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c[3];
    Tandem__Command *commands[3];
    char want[32];
    /* Claim the id the next entry would generate first: generation skips it. */
    snprintf(want, sizeof want, "J%llu-1", (unsigned long long)d->index + 2);
    dom_apply_expect(d, dom_job_create(&c[0], want, "acme", "east", NULL), 201);
    for (int i = 0; i < 3; i++) {
        commands[i] = dom_job_create(&c[i], NULL, "acme", "east", NULL);
    }
    dom_apply_batch(d, commands, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d->results[i].status, 201);
        json_t *job = json_loads(d->results[i].body, 0, NULL);
        snprintf(want, sizeof want, "J%llu-%d", (unsigned long long)d->index, i + 2);
        assert_string_equal(json_string_value(json_object_get(job, "id")), want);
        json_decref(job);
    }
    dom_apply_expect(d, dom_job_create(&c[0], want, "acme", "east", NULL), 409);
    dom_apply_expect(d, dom_job_create(&c[0], NULL, "acme", "east", "a,a"), 400);
    dom_apply_expect(d, dom_job_create(&c[0], NULL, "acme", "no site!", NULL), 400);
    dom_check_indexes(d);
}

/* ---- listings ---- */

static const char *const list_sites[] = {"east", "west"};
static const char *const list_clients[] = {"acme", "globex", "initech"};

/* Pages through jobs with q until next is empty; returns how many were listed, checking each
 * matches and ids ascend. */
static size_t list_all(struct dom *d, struct tandem_job_query q)
{
    char after[TANDEM_DOMAIN_ID_LEN_MAX + 1] = "", next[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    char last[TANDEM_DOMAIN_ID_LEN_MAX + 1] = "";
    size_t total = 0;
    for (int page = 0; page < LIST_JOBS + 2; page++) {
        struct tandem_text text;
        tandem_text_init(&text, TANDEM_LIST_BYTES_MAX);
        q.after = after;
        MDB_txn *txn = dom_read(d);
        assert_int_equal(tandem_job_list(&d->store, txn, &q, &text, next), 0);
        mdb_txn_abort(txn);
        json_t *jobs = dom_text_array(&text);
        tandem_text_free(&text);
        assert_true(json_array_size(jobs) <= q.limit);
        size_t i;
        json_t *job;
        json_array_foreach(jobs, i, job)
        {
            const char *id = json_string_value(json_object_get(job, "id"));
            assert_true(strcmp(id, last) > 0);
            snprintf(last, sizeof last, "%s", id);
            assert_true(q.site == NULL ||
                        strcmp(json_string_value(json_object_get(job, "site")), q.site) == 0);
            assert_true(q.client == NULL ||
                        strcmp(json_string_value(json_object_get(job, "client")), q.client) == 0);
            assert_true(q.status == NULL ||
                        strcmp(json_string_value(json_object_get(job, "status")), q.status) == 0);
            assert_true(q.stage == NULL ||
                        strcmp(json_string_value(json_object_get(job, "stage")), q.stage) == 0);
        }
        total += json_array_size(jobs);
        json_decref(jobs);
        if (next[0] == '\0') {
            return total;
        }
        snprintf(after, sizeof after, "%s", next);
    }
    fail_msg("listing did not end");
    return 0;
}

static void test_listing(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    char id[16];
    size_t by_site[2] = {0}, by_client_queued[3] = {0}, advanced = 0;
    for (int i = 0; i < LIST_JOBS; i++) {
        snprintf(id, sizeof id, "J%03d", i);
        dom_apply_expect(d, dom_job_create(&c, id, list_clients[i % 3], list_sites[i % 2], NULL),
                         201);
        by_site[i % 2]++;
        if (i % 5 == 0) {
            dom_apply_expect(d, dom_job_action(&c, id, TANDEM_JOB_ACTION_ADVANCE, NULL), 200);
            advanced++;
        } else {
            by_client_queued[i % 3]++;
        }
    }
    struct tandem_job_query q = {.limit = LIST_PAGE};
    assert_int_equal(list_all(d, q), LIST_JOBS);
    q.site = "west";
    assert_int_equal(list_all(d, q), by_site[1]);
    q.site = NULL;
    q.status = "in_progress";
    assert_int_equal(list_all(d, q), advanced);
    q.stage = "scan";
    assert_int_equal(list_all(d, q), advanced);
    q.status = q.stage = NULL;
    for (int k = 0; k < 3; k++) {
        q.client = list_clients[k];
        q.status = "queued";
        assert_int_equal(list_all(d, q), by_client_queued[k]);
    }
    q.client = "nobody";
    q.status = NULL;
    assert_int_equal(list_all(d, q), 0);
    q.client = NULL;
    q.limit = 1;
    assert_int_equal(list_all(d, q), LIST_JOBS);
    dom_check_indexes(d);
}

static size_t box_list_count(struct dom *d, const struct tandem_box_query *q, char *next)
{
    struct tandem_text text;
    tandem_text_init(&text, TANDEM_LIST_BYTES_MAX);
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_box_list(&d->store, txn, q, &text, next), 0);
    mdb_txn_abort(txn);
    json_t *boxes = dom_text_array(&text);
    size_t n = json_array_size(boxes);
    json_decref(boxes);
    tandem_text_free(&text);
    return n;
}

static void test_box_listing_by_job(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    char id[16], next[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    dom_apply_expect(d, dom_job_create(&c, "J1", "acme", "east", NULL), 201);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "B%02d", i);
        dom_apply_expect(d, dom_box_checkin(&c, id, "acme", i < 6 ? "east" : "west", "S"), 201);
        if (i % 2 == 0) {
            dom_apply_expect(d, dom_box_action(&c, id, TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL),
                             200);
        }
    }
    struct tandem_box_query q = {.job = "J1", .limit = 100};
    assert_int_equal(box_list_count(d, &q, next), 5);
    assert_string_equal(next, "");
    q.site = "west";
    assert_int_equal(box_list_count(d, &q, next), 2); /* B06, B08 */
    q = (struct tandem_box_query){.status = "stored", .limit = 2};
    assert_int_equal(box_list_count(d, &q, next), 2);
    assert_string_equal(next, "B03");
}

/* ---- trace and retention ---- */

static size_t trace_count(struct dom *d, const char *kind, const char *id)
{
    uint64_t next;
    json_t *events = json_array();
    MDB_txn *txn = dom_read(d);
    assert_int_equal(
        tandem_trace_list(&d->store, txn, kind, id, 0, TANDEM_LIST_LIMIT_MAX, events, &next), 0);
    mdb_txn_abort(txn);
    size_t n = json_array_size(events);
    json_decref(events);
    return n;
}

static void test_trace_and_purge(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    const int64_t day = TANDEM_MS_PER_DAY;
    dom_apply_expect(d, dom_job_create(&c, "J1", "acme", "east", NULL), 201); /* 1 event */
    dom_apply_expect(d, dom_box_checkin(&c, "B1", "acme", "east", "S"), 201); /* 1 */
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PICK, "J1", NULL, NULL),
                     200); /* 2: box pick, job link_box */
    for (int i = 0; i < PURGE_OLD - 4; i++) {
        dom_apply_expect(
            d,
            dom_job_action(&c, "J1", i % 2 ? TANDEM_JOB_ACTION_UNPIN : TANDEM_JOB_ACTION_PIN, NULL),
            200);
    }
    /* Idempotent pin: 200 and no event. */
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_PIN, NULL), 200);
    assert_int_equal(trace_count(d, "job", "J1") + trace_count(d, "box", "B1"), PURGE_OLD);
    d->now_ms = DOM_T0 + 100 * day;
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_ADVANCE, NULL), 200);
    /* A cutoff inside the retention period is refused. */
    dom_apply_expect(d, dom_purge(&c, d->now_ms - day, 90, 0), 400);
    /* Two at a time: "more" until the old events are gone, then the new ones stay. */
    int64_t cutoff = d->now_ms - 90 * day;
    dom_apply_expect(d, dom_purge(&c, cutoff, 90, 2), 200);
    json_t *body = dom_body(d);
    json_t *disposal = json_object_get(body, "disposal");
    assert_int_equal(json_integer_value(json_object_get(disposal, "events_purged")), 2);
    assert_true(json_is_true(json_object_get(disposal, "more")));
    assert_string_equal(json_string_value(json_object_get(disposal, "kind")), "trace_purge");
    json_decref(body);
    dom_check_indexes(d);
    dom_apply_expect(d, dom_purge(&c, cutoff, 90, 0), 200);
    body = dom_body(d);
    disposal = json_object_get(body, "disposal");
    assert_int_equal(json_integer_value(json_object_get(disposal, "events_purged")), PURGE_OLD - 2);
    assert_int_equal(json_integer_value(json_object_get(disposal, "job_events")) +
                         json_integer_value(json_object_get(disposal, "box_events")),
                     PURGE_OLD - 2);
    assert_false(json_is_true(json_object_get(disposal, "more")));
    json_decref(body);
    /* Left: the advance of J1 and the process of B1 it caused. */
    assert_int_equal(trace_count(d, "job", "J1"), 1);
    assert_int_equal(trace_count(d, "box", "B1"), 1);
    dom_check_indexes(d);
}

/* c's command, its actor an operator of site east bound to it (the own-site rule). */
static Tandem__Command *east_operator(struct dom_cmd *c, Tandem__Command *command)
{
    c->actor.home_site = "east";
    c->actor.site_bound = true;
    return command;
}

/* The operator's own-site rule at apply: a site-bound actor acts on records of its home site
 * only (403, nothing changed); once the record's site is the actor's, the same command applies;
 * an actor not bound (the default) acts anywhere. */
static void test_own_site_rule(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    uint8_t before[TANDEM_DIGEST_LEN], after[TANDEM_DIGEST_LEN];
    dom_apply_expect(d, east_operator(&c, dom_job_create(&c, "OS-E", "acme", "east", "a,b")), 201);
    dom_apply_expect(d, dom_job_create(&c, "OS-W", "acme", "west", "a,b"), 201);
    dom_apply_expect(d, east_operator(&c, dom_box_checkin(&c, "OSBOX1", "acme", "east", "A1")),
                     201);
    dom_digest(d, before);
    assert_int_equal(
        dom_apply(d, east_operator(&c, dom_job_create(&c, "OS-W2", "acme", "west", "a,b"))), 403);
    assert_non_null(strstr(d->results[0].body, "\"rule\":\"operator-own-site\""));
    assert_non_null(strstr(d->results[0].body, "\"site\":\"west\""));
    assert_int_equal(
        dom_apply(d,
                  east_operator(&c, dom_job_action(&c, "OS-W", TANDEM_JOB_ACTION_ADVANCE, NULL))),
        403);
    assert_int_equal(
        dom_apply(d, east_operator(&c, dom_box_checkin(&c, "OSBOX2", "acme", "west", "A1"))), 403);
    assert_int_equal(
        dom_apply(d, east_operator(&c, dom_box_action(&c, "OSBOX1", TANDEM_BOX_ACTION_PICK, "OS-W",
                                                      NULL, NULL))),
        403);
    dom_digest(d, after);
    assert_memory_equal(before, after, TANDEM_DIGEST_LEN);
    dom_apply_expect(
        d, east_operator(&c, dom_job_action(&c, "OS-E", TANDEM_JOB_ACTION_ADVANCE, NULL)), 200);
    dom_apply_expect(d, dom_job_action(&c, "OS-W", TANDEM_JOB_ACTION_ADVANCE, NULL), 200);
}

static void test_invalid_commands(void **state)
{
    struct fixture *f = *state;
    struct dom *d = &f->d;
    struct dom_cmd c;
    Tandem__Command *command = dom_job_action(&c, "J1", TANDEM_JOB_ACTION_COUNT, NULL);
    dom_apply_expect(d, command, 400);
    dom_apply_expect(d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_ADVANCE, NULL), 404);
    command = dom_job_action(&c, "J1", TANDEM_JOB_ACTION_ADVANCE, NULL);
    c.actor.site = "";
    dom_apply_expect(d, command, 400);
    command = dom_box_checkin(&c, "B1", "acme", "east", NULL);
    c.checkin.actor = NULL;
    dom_apply_expect(d, command, 400);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_RETURN, NULL, NULL, NULL), 404);
    dom_apply_expect(d, dom_box_checkin(&c, "B1", "acme", "east", NULL), 201);
    dom_apply_expect(d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_MOVE, NULL, "east", ""), 400);
    dom_apply_expect(d, dom_purge(&c, 0, 0, 0), 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test_setup_teardown(test_record_codecs, setup, teardown),
        cmocka_unit_test(test_command_codecs),
        cmocka_unit_test(test_job_transition_table),
        cmocka_unit_test(test_box_transition_table),
        cmocka_unit_test_setup_teardown(test_job_transitions_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_box_transitions_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_advance_moves_picked_boxes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pick_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispose_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_checkin_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generated_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_box_listing_by_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_and_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_site_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_commands, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
