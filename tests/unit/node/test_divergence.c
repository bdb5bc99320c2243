/* Unit tests for the node's divergence reports: which recorded forced failover a fenced node is
 * compared with (the oldest one above its epoch), what the report says when there is none,
 * and the listing of kept folders, newest first. */
#include <jansson.h>
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

#include "node/bcp/divergence.h"

/* Node log: 10 entries of term 1, then 5 of term 3 (taken while it wrongly led). */
static const uint64_t node_terms[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3};
#define NODE_ENTRIES (sizeof node_terms / sizeof node_terms[0])

/* {"epoch","seed","first_index","last_index","last_term","terms"} as the site table lists it. */
static json_t *record(uint64_t epoch, uint64_t last_index, const char *terms)
{
    json_t *r = json_pack("{s:I,s:s,s:I,s:I,s:I,s:o}", "epoch", (json_int_t)epoch, "seed", "west-1",
                          "first_index", (json_int_t)1, "last_index", (json_int_t)last_index,
                          "last_term", (json_int_t)0, "terms", json_loads(terms, 0, NULL));
    json_t *list = json_object_get(r, "terms");
    json_t *last = json_array_get(list, json_array_size(list) - 1);
    json_object_set(r, "last_term", json_array_get(last, 0));
    return r;
}

static const char *certainty(json_t *fork)
{
    return json_string_value(json_object_get(fork, "certainty"));
}

static void test_the_oldest_failover_above_the_epoch_is_the_one(void **state)
{
    (void)state;
    json_t *forced = json_array();
    /* Newest first, as recorded: epoch 3 (after a later failover), epoch 2 (the one that fenced
     * a node at epoch 1: its seed had the log to index 12 at term 1 then 2). */
    json_array_append_new(forced, record(3, 30, "[[1,1],[2,11],[5,20]]"));
    json_array_append_new(forced, record(2, 12, "[[1,1],[2,11]]"));
    json_t *fork = tandem_divergence_fork_json(node_terms, 1, NODE_ENTRIES, forced, 1);
    assert_int_equal(json_integer_value(json_object_get(fork, "index")), 10);
    assert_int_equal(json_integer_value(json_object_get(fork, "term")), 1);
    assert_string_equal(certainty(fork), "exact");
    json_t *compared = json_object_get(fork, "compared_with");
    assert_int_equal(json_integer_value(json_object_get(compared, "epoch")), 2);
    assert_string_equal(json_string_value(json_object_get(compared, "seed")), "west-1");
    json_decref(fork);
    fork = tandem_divergence_fork_json(node_terms, 1, NODE_ENTRIES, forced, 2);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(fork, "compared_with"), "epoch")), 3);
    json_decref(fork);
    json_decref(forced);
}

static void test_no_history_says_why(void **state)
{
    (void)state;
    json_t *forced = json_array();
    json_array_append_new(forced, record(2, 12, "[[1,1],[2,11]]"));
    json_t *fork = tandem_divergence_fork_json(node_terms, 1, NODE_ENTRIES, forced, 2);
    assert_string_equal(certainty(fork), "unknown");
    assert_true(json_is_null(json_object_get(fork, "index")));
    assert_non_null(strstr(json_string_value(json_object_get(fork, "reason")), "no forced"));
    json_decref(fork);
    fork = tandem_divergence_fork_json(node_terms, 1, NODE_ENTRIES, NULL, 1);
    assert_non_null(strstr(json_string_value(json_object_get(fork, "reason")), "without"));
    json_decref(fork);
    json_array_append_new(forced, record(4, 12, "[[2,1],[1,11]]")); /* terms fall: malformed */
    fork = tandem_divergence_fork_json(node_terms, 1, NODE_ENTRIES, forced, 3);
    assert_string_equal(certainty(fork), "unknown");
    assert_non_null(strstr(json_string_value(json_object_get(fork, "reason")), "malformed"));
    json_decref(fork);
    json_decref(forced);
}

static void kept_folder(const char *dir, const char *name, const char *created)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0700), 0);
    if (created == NULL) {
        return;
    }
    json_t *report = json_pack("{s:s,s:s}", "created", created, "folder", path);
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, TANDEM_DIVERGENCE_FILE);
    assert_int_equal(json_dump_file(report, path, 0), 0);
    json_decref(report);
}

static void test_listing_newest_first_and_only_kept_folders(void **state)
{
    (void)state;
    char dir[] = "/tmp/tandem-divergence-XXXXXX";
    assert_non_null(mkdtemp(dir));
    json_t *empty = tandem_divergence_list(dir);
    assert_int_equal(json_array_size(empty), 0);
    json_decref(empty);
    kept_folder(dir, "fenced-1-20261205T060000Z", "2026-12-05T06:00:00.000Z");
    kept_folder(dir, "fenced-2-20261205T070000Z", "2026-12-05T07:00:00.000Z");
    kept_folder(dir, "fenced-2-20261205T080000Z", NULL); /* stopped before its report */
    kept_folder(dir, "raft", NULL);
    json_t *list = tandem_divergence_list(dir);
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "created")),
                        "2026-12-05T07:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "created")),
                        "2026-12-05T06:00:00.000Z");
    assert_non_null(json_object_get(json_array_get(list, 2), "error"));
    json_decref(list);
    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_oldest_failover_above_the_epoch_is_the_one),
        cmocka_unit_test(test_no_history_says_why),
        cmocka_unit_test(test_listing_newest_first_and_only_kept_folders),
    };
    return cmocka_run_group_tests_name("node divergence reports", tests, NULL, NULL);
}
