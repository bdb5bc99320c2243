/* Unit tests for the members' reports of a full raft log (node/log_reports.h) on a clock given
 * by hand: a report counts for TANDEM_LOG_REPORT_FRESH_MS, "not full" takes it back, the fullest
 * is the one named, and with every slot taken the report that ends soonest gives way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/log_reports.h"

#define MIB (1ull << 20)
#define T0  100000ull

static void test_a_report_counts_while_fresh(void **state)
{
    (void)state;
    struct tandem_log_reports rs;
    memset(&rs, 0, sizeof rs);
    assert_null(tandem_log_reports_full(&rs, T0));
    tandem_log_reports_note(&rs, "west-1", 170 * MIB, 192 * MIB, true, T0);
    const struct tandem_log_report *r = tandem_log_reports_full(&rs, T0);
    assert_non_null(r);
    assert_string_equal(r->name, "west-1");
    assert_int_equal(r->held_bytes, 170 * MIB);
    assert_int_equal(r->budget_bytes, 192 * MIB);
    assert_int_equal(tandem_log_reports_count(&rs, T0), 1);
    assert_non_null(tandem_log_reports_full(&rs, T0 + TANDEM_LOG_REPORT_FRESH_MS - 1));
    /* A member that stops reporting (stopped, cut off) stops holding writes back. */
    assert_null(tandem_log_reports_full(&rs, T0 + TANDEM_LOG_REPORT_FRESH_MS));
    assert_int_equal(tandem_log_reports_count(&rs, T0 + TANDEM_LOG_REPORT_FRESH_MS), 0);
    assert_int_equal(rs.received, 1);
}

static void test_a_new_report_renews_and_not_full_takes_it_back(void **state)
{
    (void)state;
    struct tandem_log_reports rs;
    memset(&rs, 0, sizeof rs);
    tandem_log_reports_note(&rs, "west-1", 170 * MIB, 192 * MIB, true, T0);
    tandem_log_reports_note(&rs, "west-1", 175 * MIB, 192 * MIB, true, T0 + 1000);
    assert_int_equal(tandem_log_reports_count(&rs, T0 + 1000), 1); /* one member, one slot */
    const struct tandem_log_report *r =
        tandem_log_reports_full(&rs, T0 + 1000 + TANDEM_LOG_REPORT_FRESH_MS - 1);
    assert_non_null(r);
    assert_int_equal(r->held_bytes, 175 * MIB);
    tandem_log_reports_note(&rs, "west-1", 90 * MIB, 192 * MIB, false, T0 + 1200);
    assert_null(tandem_log_reports_full(&rs, T0 + 1200));
    /* "Not full" from a member that never said full changes nothing. */
    tandem_log_reports_note(&rs, "east-2", 10 * MIB, 192 * MIB, false, T0 + 1300);
    assert_int_equal(tandem_log_reports_count(&rs, T0 + 1300), 0);
    assert_int_equal(rs.received, 2);
}

static void test_the_fullest_is_named(void **state)
{
    (void)state;
    struct tandem_log_reports rs;
    memset(&rs, 0, sizeof rs);
    tandem_log_reports_note(&rs, "east-2", 160 * MIB, 192 * MIB, true, T0);
    tandem_log_reports_note(&rs, "witness", 60 * MIB, 64 * MIB, true, T0);
    tandem_log_reports_note(&rs, "west-1", 170 * MIB, 192 * MIB, true, T0);
    assert_int_equal(tandem_log_reports_count(&rs, T0), 3);
    assert_string_equal(tandem_log_reports_full(&rs, T0)->name, "witness"); /* 94 % */
    tandem_log_reports_note(&rs, "witness", 10 * MIB, 64 * MIB, false, T0);
    assert_string_equal(tandem_log_reports_full(&rs, T0)->name, "west-1"); /* 89 % */
}

static void test_a_full_table_gives_way_to_the_report_ending_soonest(void **state)
{
    (void)state;
    struct tandem_log_reports rs;
    char name[32];
    memset(&rs, 0, sizeof rs);
    for (unsigned i = 0; i < TANDEM_LOG_REPORTS_MAX; i++) {
        snprintf(name, sizeof name, "m-%u", i);
        tandem_log_reports_note(&rs, name, 100 * MIB, 192 * MIB, true, T0 + i);
    }
    assert_int_equal(tandem_log_reports_count(&rs, T0 + 100), TANDEM_LOG_REPORTS_MAX);
    tandem_log_reports_note(&rs, "late", 180 * MIB, 192 * MIB, true, T0 + 100);
    assert_int_equal(tandem_log_reports_count(&rs, T0 + 100), TANDEM_LOG_REPORTS_MAX);
    assert_string_equal(tandem_log_reports_full(&rs, T0 + 100)->name, "late");
    bool m0 = false, m1 = false;
    for (unsigned i = 0; i < TANDEM_LOG_REPORTS_MAX; i++) {
        m0 = m0 || strcmp(rs.slot[i].name, "m-0") == 0;
        m1 = m1 || strcmp(rs.slot[i].name, "m-1") == 0;
    }
    assert_false(m0); /* the oldest report went */
    assert_true(m1);
    /* A stale slot is taken before any fresh one. */
    memset(&rs, 0, sizeof rs);
    for (unsigned i = 0; i < TANDEM_LOG_REPORTS_MAX; i++) {
        snprintf(name, sizeof name, "m-%u", i);
        tandem_log_reports_note(&rs, name, 100 * MIB, 192 * MIB, true, i == 7 ? T0 : T0 + 1000);
    }
    tandem_log_reports_note(&rs, "late", 100 * MIB, 192 * MIB, true,
                            T0 + TANDEM_LOG_REPORT_FRESH_MS);
    assert_string_equal(rs.slot[7].name, "late");
    assert_int_equal(tandem_log_reports_count(&rs, T0 + TANDEM_LOG_REPORT_FRESH_MS),
                     TANDEM_LOG_REPORTS_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_report_counts_while_fresh),
        cmocka_unit_test(test_a_new_report_renews_and_not_full_takes_it_back),
        cmocka_unit_test(test_the_fullest_is_named),
        cmocka_unit_test(test_a_full_table_gives_way_to_the_report_ending_soonest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
