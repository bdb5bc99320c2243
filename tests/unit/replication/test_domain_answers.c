/* Unit tests that pin the domain's refusals word for word: the answers of the shared action flow
 * (400 and 404 of job and box actions) and of the shared field rules, which the API returns. */
#include "test_domain_fixture.h"

/* Applies command and checks its status and body exactly. */
static void expect_answer(struct dom *d, Tandem__Command *command, int status, const char *body)
{
    dom_apply_expect(d, command, status);
    assert_string_equal(d->results[0].body, body);
}

static void test_action_refusals(void **state)
{
    (void)state;
    struct dom d;
    struct dom_cmd c;
    dom_open(&d);
    dom_apply_expect(&d, dom_job_create(&c, "J1", "acme", "east", NULL), 201);
    dom_apply_expect(&d, dom_box_checkin(&c, "B1", "acme", "east", "S-1"), 201);

    Tandem__Command *command = dom_job_action(&c, "J1", TANDEM_JOB_ACTION_HOLD, NULL);
    c.job_action.actor = NULL;
    expect_answer(&d, command, 400, "{\"error\":\"empty job action\"}");
    expect_answer(&d, dom_job_action(&c, "J 1", TANDEM_JOB_ACTION_HOLD, NULL), 400,
                  "{\"error\":\"invalid job id or action\"}");
    expect_answer(&d, dom_job_action(&c, "J1", TANDEM_JOB_ACTION_COUNT, NULL), 400,
                  "{\"error\":\"invalid job id or action\"}");
    expect_answer(&d, dom_job_action(&c, "J9", TANDEM_JOB_ACTION_HOLD, NULL), 404,
                  "{\"error\":\"job not found: J9\"}");
    command = dom_job_action(&c, "J1", TANDEM_JOB_ACTION_HOLD, NULL);
    c.actor.user = "";
    expect_answer(&d, command, 400,
                  "{\"error\":\"the actor must be printable text of 1 to 128 bytes\"}");

    command = dom_box_action(&c, "B1", TANDEM_BOX_ACTION_RETURN, NULL, NULL, NULL);
    c.box_action.actor = NULL;
    expect_answer(&d, command, 400, "{\"error\":\"empty box action\"}");
    expect_answer(&d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_COUNT, NULL, NULL, NULL), 400,
                  "{\"error\":\"invalid box id or action\"}");
    expect_answer(&d, dom_box_action(&c, "B9", TANDEM_BOX_ACTION_RETURN, NULL, NULL, NULL), 404,
                  "{\"error\":\"box not found: B9\"}");
    expect_answer(&d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_RETURN, NULL, NULL, NULL), 409,
                  "{\"error\":\"illegal box transition: return from stored (allowed from "
                  "stored: pick, move, dispose)\"}");
    expect_answer(&d, dom_box_action(&c, "B1", TANDEM_BOX_ACTION_PROCESS, NULL, NULL, NULL), 409,
                  "{\"error\":\"illegal box transition: process from stored (allowed from "
                  "stored: pick, move, dispose)\"}");
    dom_check_indexes(&d);
    dom_close(&d);
}

static void expect_job_refusal(const Tandem__JobRecord *job, const char *errmsg_expected)
{
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    assert_int_equal(tandem_job_fields_check(job, errmsg), -1);
    assert_string_equal(errmsg, errmsg_expected);
}

static void expect_box_refusal(const Tandem__BoxRecord *box, const char *errmsg_expected)
{
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    assert_int_equal(tandem_box_fields_check(box, errmsg), -1);
    assert_string_equal(errmsg, errmsg_expected);
}

/* The first broken rule is the one reported, in the order the rules are written. */
static void test_field_rules(void **state)
{
    (void)state;
    struct dom_cmd c;
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    dom_job_create(&c, "", "acme", "east", NULL);
    assert_int_equal(tandem_job_fields_check(&c.job, errmsg), 0);
    c.job.id = "bad id";
    expect_job_refusal(&c.job, "id must be 1 to 64 of [A-Za-z0-9._:-]");
    c.job.id = "J1";
    c.job.client = "";
    c.job.effort = TANDEM_JOB_EFFORT_MAX + 1; /* also broken: the client is reported first */
    expect_job_refusal(&c.job, "client must be printable text of 1 to 128 bytes");
    c.job.client = "acme";
    c.job.site = "no site";
    expect_job_refusal(&c.job, "site must be a site label (1 to 31 of [A-Za-z0-9._-])");
    c.job.site = "east";
    expect_job_refusal(&c.job, "effort must be 0 to 1000000000 work units");
    c.job.effort = 1;
    c.job.priority = -TANDEM_JOB_PRIORITY_ABS_MAX - 1;
    expect_job_refusal(&c.job, "priority must be within +-1000000");
    c.job.priority = 0;
    c.job.has_due = true;
    c.job.due_ms = -1;
    expect_job_refusal(&c.job, "due must not be before 1970");
    c.job.has_due = false;
    c.job.operator_ = "tab\there";
    expect_job_refusal(&c.job, "operator must be printable text of at most 128 bytes");

    char *volumes[] = {"V1", "bad volume"};
    dom_box_checkin(&c, "B1", "acme", "east", NULL);
    assert_int_equal(tandem_box_fields_check(&c.box, errmsg), 0);
    c.box.ledger = "";
    expect_box_refusal(&c.box, "ledger must be printable text of 1 to 128 bytes");
    c.box.ledger = "L-1";
    c.box.shelf = "tab\there";
    expect_box_refusal(&c.box, "shelf must be printable text of at most 128 bytes");
    c.box.shelf = "";
    c.box.volumes = volumes;
    c.box.n_volumes = 2;
    expect_box_refusal(&c.box, "volume 1 must be 1 to 64 of [A-Za-z0-9._:-]");
    c.box.has_retain_until = true;
    c.box.retain_until_ms = -5;
    expect_box_refusal(&c.box, "retain_until must not be before 1970");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_action_refusals),
        cmocka_unit_test(test_field_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
