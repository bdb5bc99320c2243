/* Unit tests for tandemctl's tables: the views of the column table, the cell formatters and the
 * FIELD/VALUE print of one object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "capture.h"

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *value = json_loads(text, 0, &jerr);
    if (value == NULL) {
        fail_msg("bad test JSON: %s", jerr.text);
    }
    return value;
}

/* Prints view over items (JSON text) and returns what was printed. */
static const char *view_text(struct capture *c, enum tandem_ctl_view view, const char *items,
                             const void *context)
{
    json_t *array = parse(items);
    capture_open(c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_view_print(&c->ctx, array, view, context), TANDEM_CTL_OK);
    json_decref(array);
    return capture_close(c);
}

/* Views whose whole text a test states: what each shows for values and for what is missing. */
static const struct {
    enum tandem_ctl_view view;
    const char *items; /* JSON array */
    const char *want;
} view_cases[] = {
    {TANDEM_CTL_VIEW_JOBS,
     "[{\"id\": \"j1\", \"client\": \"c\", \"kind\": \"scan\", \"site\": \"east\", "
     "\"stage\": \"scan\", \"status\": \"queued\", \"effort\": 5, \"due\": null, "
     "\"priority\": 1, \"operator\": \"\", \"pinned\": true, \"boxes\": [\"b1\", \"b2\"]}]",
     "ID  CLIENT  KIND  SITE  STAGE  STATUS  EFFORT  DUE  PRIO  OPERATOR  PINNED  BOXES\n"
     "j1  c       scan  east  scan   queued  5       -    1     -         yes     b1,b2\n"},
    /* The leader marked; unknown applied index and lag as "-". */
    {TANDEM_CTL_VIEW_STATUS,
     "[{\"leader\": true, \"name\": \"a\", \"site\": \"s\", \"role\": \"voter\", "
     "\"state\": \"leader\", \"applied_index\": 7, \"lag\": 0}, "
     "{\"leader\": false, \"name\": \"b\", \"site\": \"s\", \"role\": \"voter\", "
     "\"state\": \"down\", \"applied_index\": null, \"lag\": null}]",
     "   MEMBER  SITE  ROLE   STATE   APPLIED  LAG\n"
     "*  a       s     voter  leader  7        0\n"
     "   b       s     voter  down    -        -\n"},
    /* Keys and values escaped; a value that does not decode as "?". */
    {TANDEM_CTL_VIEW_KV,
     "[{\"key\": \"k\\u0001\", \"mod_index\": 3, \"value\": \"v\"}, "
     "{\"key\": \"bin\", \"mod_index\": 4, \"value_b64\": \"AAEC\"}, "
     "{\"key\": \"bad\", \"mod_index\": 5, \"value_b64\": \"!\"}]",
     "KEY    MOD_INDEX  VALUE\n"
     "k\\x01  3          v\n"
     "bin    4          \\x00\\x01\\x02\n"
     "bad    5          ?\n"},
    /* LAG_ENTRIES -1, LAG_WRITES null and LAG_MS missing show "-"; BY and REASON missing stay
     * blank; REACH unknown without the reachability fields. */
    {TANDEM_CTL_VIEW_BCP_SITES,
     "[{\"name\": \"w\", \"state\": \"active\", \"witness\": true, \"epoch\": 2, "
     "\"since\": 1700000000000, \"nodes\": [{\"name\": \"w-1\", \"role\": \"voter\", "
     "\"reachable\": false}], \"lag_entries\": -1, \"lag_commands\": null}]",
     "SITE  STATE             EPOCH  SINCE                     NODES       REACH  LAG_ENTRIES  "
     "LAG_WRITES  LAG_MS  BY  REASON\n"
     "w     active (witness)  2      2023-11-14T22:13:20.000Z  w-1:voter!  -      -            "
     "-           -           \n"},
    /* REACH: one word when every node answers both ways, else the nodes that do not. */
    {TANDEM_CTL_VIEW_BCP_SITES,
     "[{\"name\": \"e\", \"state\": \"active\", \"nodes\": [{\"name\": \"e-1\", \"role\": "
     "\"voter\", \"raft_reachable\": true, \"api_reachable\": true}]}, "
     "{\"name\": \"w\", \"state\": \"active\", \"nodes\": ["
     "{\"name\": \"w-1\", \"role\": \"voter\", \"raft_reachable\": false, \"api_reachable\": "
     "true}, "
     "{\"name\": \"w-2\", \"role\": \"voter\", \"raft_reachable\": true, \"api_reachable\": true}, "
     "{\"name\": \"w-3\", \"role\": \"voter\", \"raft_reachable\": true, \"api_reachable\": "
     "false}, "
     "{\"name\": \"w-4\", \"role\": \"voter\", \"raft_reachable\": false, \"api_reachable\": "
     "false}]}]",
     "SITE  STATE   EPOCH  SINCE  NODES                                    REACH                   "
     "  "
     "             LAG_ENTRIES  LAG_WRITES  LAG_MS  BY  REASON\n"
     "e     active  -      -      e-1:voter                                raft+api                "
     "  "
     "             -            -           -           \n"
     "w     active  -      -      w-1:voter w-2:voter w-3:voter w-4:voter  w-1 api only, w-3 raft "
     "only, w-4 none  -            -           -           \n"},
    /* backup list: ages and sizes for people, lists joined, no verification as "never". */
    {TANDEM_CTL_VIEW_SITE_BACKUPS,
     "[{\"site\": \"east\", \"id\": \"east-1\", \"index\": 42, \"age_ms\": 125000, "
     "\"size\": 1258291, \"holders\": [\"west-1\", \"west-2\"], \"manifest_holders\": "
     "[\"witness-1\"], \"state\": \"degraded\", \"lost\": [\"west-2\"], \"verified\": "
     "{\"at\": \"2026-12-05T15:01:04.512Z\", \"level\": 2, \"by\": \"west-1\"}}, "
     "{\"site\": \"west\", \"id\": \"west-2\", \"index\": 7, \"age_ms\": 900, \"size\": 812, "
     "\"holders\": [\"east-1\"], \"manifest_holders\": [], \"state\": \"kept\", \"lost\": [], "
     "\"verified\": null}]",
     "SITE  ID      INDEX  AGE    SIZE     KEPT_ON        MANIFEST_ON  STATE     LOST_ON  "
     "VERIFIED\n"
     "east  east-1  42     2m05s  1.2 MiB  west-1,west-2  witness-1    degraded  west-2   "
     "L2 2026-12-05T15:01:04.512Z west-1\n"
     "west  west-2  7      0s     812 B    east-1         -            kept      -        never\n"},
};

static void test_views_print_exact_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof view_cases / sizeof view_cases[0]; i++) {
        struct capture c;
        assert_string_equal(view_text(&c, view_cases[i].view, view_cases[i].items, NULL),
                            view_cases[i].want);
    }
}

/* Every view has columns, no more than a table takes: with no items, the header alone. */
static void test_every_view_prints_its_header(void **state)
{
    (void)state;
    for (int view = 0; view < TANDEM_CTL_VIEW_COUNT; view++) {
        struct capture c;
        double scale = 1.0;
        const char *text = view_text(&c, (enum tandem_ctl_view)view, "[]", &scale);
        assert_non_null(strchr(text, '\n'));
        assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
    }
}

static void test_value_cells_are_cut(void **state)
{
    struct capture c;
    char items[1024], id[400];
    (void)state;
    memset(id, 'a', 300);
    id[300] = '\0';
    snprintf(items, sizeof items, "[{\"id\": \"%s\"}]", id);
    const char *text = view_text(&c, TANDEM_CTL_VIEW_JOBS, items, NULL);
    const char *row = strchr(text, '\n') + 1;
    assert_int_equal(strspn(row, "a"), TANDEM_CTL_VALUE_SIZE - 1);
}

static void test_plan_sites_view_draws_changes_and_bars(void **state)
{
    struct capture c;
    (void)state;
    json_t *sites =
        parse("[{\"name\": \"east\", \"state\": \"active\", \"capacity\": 10, "
              "\"backlog_hours_before\": 4.0, \"backlog_hours_after\": 2.0, \"at_risk_before\": 3, "
              "\"at_risk_after\": 1, \"jobs_before\": 5, \"jobs_after\": 4}, "
              "{\"name\": \"west\", \"state\": \"bcp\", \"capacity\": 0, "
              "\"backlog_hours_before\": null, \"backlog_hours_after\": 2.0}]");
    double scale = tandem_ctl_plan_scale(sites);
    assert_true(scale == 4.0);
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_view_print(&c.ctx, sites, TANDEM_CTL_VIEW_PLAN_SITES, &scale),
                     TANDEM_CTL_OK);
    json_decref(sites);
    const char *text = capture_close(&c);
    assert_non_null(strstr(text, "4.00" TANDEM_CTL_ARROW "2.00"));
    assert_non_null(strstr(text, "[##########]" TANDEM_CTL_ARROW "[#####.....]"));
    assert_non_null(strstr(text, "west (BCP)"));
    assert_non_null(strstr(text, "inf" TANDEM_CTL_ARROW "2.00"));
    assert_non_null(strstr(text, "[!!!!!!!!!!]" TANDEM_CTL_ARROW "[#####.....]"));
    assert_non_null(strstr(text, "3" TANDEM_CTL_ARROW "1"));
    assert_non_null(strstr(text, "0" TANDEM_CTL_ARROW "0")); /* west's missing counts */
}

static void test_object_print_lists_fields(void **state)
{
    struct capture c;
    (void)state;
    json_t *object = parse("{\"id\": \"j1\", \"stages\": [\"a\", \"b\"], \"due\": null, "
                           "\"x\": {\"k\": 1}, \"note\": \"\"}");
    capture_open(&c, TANDEM_CTL_OUTPUT_TABLE);
    assert_int_equal(tandem_ctl_object_print(&c.ctx, object), TANDEM_CTL_OK);
    json_decref(object);
    assert_string_equal(capture_close(&c), "FIELD   VALUE\n"
                                           "id      j1\n"
                                           "stages  a,b\n"
                                           "due     -\n"
                                           "x       k=1\n"
                                           "note    -\n");
}

static void test_field_text_formats(void **state)
{
    static const struct {
        const char *field;
        tandem_ctl_cell_format *format;
        const char *absent, *want;
    } cases[] = {
        {"at", tandem_ctl_cell_time, "-", "2023-11-14T22:13:20.000Z"},
        {"at_ms", tandem_ctl_cell_time, "-", "2023-11-14T22:13:20.250Z"},
        {"zero", tandem_ctl_cell_time, "-", "-"},
        {"neg", tandem_ctl_cell_index, "-", "-"},
        {"neg", tandem_ctl_cell_integer, "-", "-1"},
        {"s", tandem_ctl_cell_integer, "unset", "unset"},
        {"h", tandem_ctl_cell_hours, "inf", "1.50"},
        {"missing", tandem_ctl_cell_hours, "inf", "inf"},
    };
    char out[64];
    (void)state;
    json_t *item = parse(
        "{\"at\": 1700000000000, \"at_ms\": 1700000000250, \"zero\": 0, \"neg\": -1, \"h\": 1.5, "
        "\"s\": \"x\"}");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tandem_ctl_field_text(item, cases[i].field, cases[i].format, cases[i].absent, out,
                              sizeof out);
        assert_string_equal(out, cases[i].want);
    }
    json_decref(item);
}

static void test_cell_shows_any_value(void **state)
{
    char out[TANDEM_CTL_VALUE_SIZE];
    (void)state;
    json_t *value = parse("[{\"a\": [\"x\", 1], \"b\": false}, \"s\", 7, true, null]");
    tandem_ctl_cell(json_array_get(value, 0), out, sizeof out);
    assert_string_equal(out, "a=x,? b=no");
    tandem_ctl_cell(json_array_get(value, 1), out, sizeof out);
    assert_string_equal(out, "s");
    tandem_ctl_cell(json_array_get(value, 2), out, sizeof out);
    assert_string_equal(out, "7");
    tandem_ctl_cell(json_array_get(value, 3), out, sizeof out);
    assert_string_equal(out, "yes");
    tandem_ctl_cell(json_array_get(value, 4), out, sizeof out);
    assert_string_equal(out, "-");
    json_decref(value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_print_exact_text),
        cmocka_unit_test(test_every_view_prints_its_header),
        cmocka_unit_test(test_value_cells_are_cut),
        cmocka_unit_test(test_plan_sites_view_draws_changes_and_bars),
        cmocka_unit_test(test_object_print_lists_fields),
        cmocka_unit_test(test_field_text_formats),
        cmocka_unit_test(test_cell_shows_any_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
