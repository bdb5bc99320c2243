/* Unit tests for the /metrics renderers (node/metrics.h, node/bcp/site_metrics.h,
 * node/audit_check.h): label and HELP escaping, cumulative histogram buckets, leader changes, the
 * per-site series from a status view and the audit chain's verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "node/audit_check.h"
#include "node/bcp/site_metrics.h"
#include "node/metrics.h"
#include "replication/domain/audit.h"

/* What a renderer wrote: call render(out, arg) on a memory stream; the caller frees. */
static char *rendered(void (*render)(FILE *out, const void *arg), const void *arg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    render(out, arg);
    assert_int_equal(fclose(out), 0);
    return text;
}

static void test_label_escaping(void **state)
{
    (void)state;
    char buf[TANDEM_METRICS_LABEL_MAX];
    assert_string_equal(tandem_metrics_label("east-1", buf), "east-1");
    assert_string_equal(tandem_metrics_label("a\"b\\c\nd", buf), "a\\\"b\\\\c\\nd");
    assert_string_equal(tandem_metrics_label(NULL, buf), "");
    /* A value too long is cut at a whole character, never between a backslash and its pair. */
    char longer[TANDEM_METRICS_LABEL_MAX * 2];
    memset(longer, '"', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    size_t n = strlen(tandem_metrics_label(longer, buf));
    assert_true(n < TANDEM_METRICS_LABEL_MAX);
    assert_int_equal(n % 2, 0);
    for (size_t i = 0; i < n; i += 2) {
        assert_memory_equal(buf + i, "\\\"", 2);
    }
}

static void render_family(FILE *out, const void *arg)
{
    (void)arg;
    tandem_metrics_family(out, "tandem_x_total", "counter", "Back\\slash and\nnew line.");
}

static void test_family_lines(void **state)
{
    (void)state;
    char *text = rendered(render_family, NULL);
    assert_string_equal(text, "# HELP tandem_x_total Back\\\\slash and\\nnew line.\n"
                              "# TYPE tandem_x_total counter\n");
    free(text);
}

static void render_histogram(FILE *out, const void *arg)
{
    tandem_histogram_write(out, "tandem_h_seconds", "A histogram.", arg);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    struct tandem_histogram h;
    memset(&h, 0, sizeof h);
    tandem_histogram_observe(&h, 10000);          /* 10 us: the first bucket (50 us) */
    tandem_histogram_observe(&h, 50000);          /* on the bound: still the first */
    tandem_histogram_observe(&h, 150000);         /* 150 us: the 200 us bucket */
    tandem_histogram_observe(&h, 60000000000ull); /* 60 s: past every bound, +Inf only */
    char *text = rendered(render_histogram, &h);
    assert_non_null(strstr(text, "# TYPE tandem_h_seconds histogram\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_bucket{le=\"0.000050\"} 2\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_bucket{le=\"0.000100\"} 2\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_bucket{le=\"0.000200\"} 3\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_bucket{le=\"1.638400\"} 3\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_sum 60.000210000\n"));
    assert_non_null(strstr(text, "tandem_h_seconds_count 4\n"));
    free(text);
}

/* The p99 the console shows: the bound of the bucket where 99% of observations are reached. */
static void test_histogram_quantile(void **state)
{
    struct tandem_histogram h = {0};
    (void)state;
    assert_int_equal(tandem_histogram_quantile_us(&h, 0.99), 0);
    for (int i = 0; i < 98; i++) {
        tandem_histogram_observe(&h, 40000); /* <= 50 us */
    }
    tandem_histogram_observe(&h, 150000); /* <= 200 us */
    tandem_histogram_observe(&h, 700000); /* <= 800 us */
    assert_int_equal(tandem_histogram_quantile_us(&h, 0.5), 50);
    assert_int_equal(tandem_histogram_quantile_us(&h, 0.99), 200);
    assert_int_equal(tandem_histogram_quantile_us(&h, 1.0), 800);
    tandem_histogram_observe(&h, 10000000000ull); /* 10 s: past every bucket */
    assert_int_equal(tandem_histogram_quantile_us(&h, 1.0), (50ull << 15));
}

static void test_leader_changes(void **state)
{
    (void)state;
    struct tandem_metrics *m = calloc(1, sizeof *m);
    assert_non_null(m);
    tandem_metrics_leader_seen(m, 0); /* no leader yet: nothing changed */
    assert_int_equal(m->leader_changes, 0);
    tandem_metrics_leader_seen(m, 3); /* the first leader learnt */
    tandem_metrics_leader_seen(m, 3);
    assert_int_equal(m->leader_changes, 1);
    tandem_metrics_leader_seen(m, 0); /* an election: not a change by itself */
    tandem_metrics_leader_seen(m, 3); /* the same leader again */
    assert_int_equal(m->leader_changes, 1);
    tandem_metrics_leader_seen(m, 5);
    assert_int_equal(m->leader_changes, 2);
    free(m);
}

static void render_sites(FILE *out, const void *arg)
{
    tandem_bcp_site_metrics_write(out, arg);
}

static void test_site_series(void **state)
{
    (void)state;
    json_error_t error;
    json_t *status = json_loads(
        "{\"sites\": ["
        " {\"name\": \"east\", \"state\": \"active\", \"epoch\": 3, \"lag_entries\": 0,"
        "  \"lag_ms\": 0, \"nodes\": [{\"role\": \"voter\", \"reachable\": true},"
        "                            {\"role\": \"voter\", \"reachable\": true}]},"
        " {\"name\": \"we\\\"st\", \"state\": \"invoked\", \"epoch\": 4, \"lag_entries\": 12,"
        "  \"lag_ms\": 2500, \"nodes\": [{\"role\": \"standby\", \"reachable\": false},"
        "                               {\"role\": \"standby\", \"reachable\": true}]},"
        " {\"name\": \"witness\", \"state\": \"active\", \"epoch\": 1, \"lag_entries\": null,"
        "  \"nodes\": [{\"role\": \"voter\", \"reachable\": true}]}]}",
        0, &error);
    assert_non_null(status);
    char *text = rendered(render_sites, status);
    assert_non_null(strstr(text, "tandem_site_state{site=\"we\\\"st\",state=\"invoked\"} 1\n"));
    assert_non_null(strstr(text, "tandem_site_state{site=\"we\\\"st\",state=\"active\"} 0\n"));
    assert_non_null(strstr(text, "tandem_site_epoch{site=\"we\\\"st\"} 4\n"));
    assert_non_null(strstr(text, "tandem_site_lag_entries{site=\"we\\\"st\"} 12\n"));
    assert_non_null(strstr(text, "tandem_site_lag_seconds{site=\"we\\\"st\"} 2.500\n"));
    assert_null(strstr(text, "tandem_site_lag_entries{site=\"witness\"}")); /* unknown: none */
    /* Three voters, all reached: one more may fail; losing east (two voters) leaves one. */
    assert_non_null(strstr(text, "tandem_failure_tolerance 1\n"));
    assert_non_null(strstr(text, "tandem_site_loss_tolerated{site=\"east\"} 0\n"));
    assert_non_null(strstr(text, "tandem_site_loss_tolerated{site=\"witness\"} 1\n"));
    assert_non_null(strstr(text, "tandem_site_nodes{site=\"we\\\"st\"} 2\n"));
    assert_non_null(strstr(text, "tandem_site_nodes_reachable{site=\"we\\\"st\"} 1\n"));
    assert_non_null(strstr(text, "tandem_site_nodes_reachable{site=\"east\"} 2\n"));
    assert_non_null(strstr(text, "# HELP tandem_site_nodes_reachable "));
    assert_non_null(strstr(text, "# TYPE tandem_site_nodes_reachable gauge\n"));
    free(text);
    json_decref(status);
}

struct audit_render {
    const struct tandem_audit_check *check;
    int64_t now_ms;
};

static void render_audit(FILE *out, const void *arg)
{
    const struct audit_render *a = arg;
    tandem_audit_check_metrics_write(a->check, a->now_ms, out);
}

static void test_audit_chain_series(void **state)
{
    (void)state;
    struct tandem_audit_check check;
    memset(&check, 0, sizeof check);
    struct audit_render a = {&check, 1000000};
    /* Before the first walk ends: no verdict sample (an alert must not read 0 as broken). */
    char *text = rendered(render_audit, &a);
    assert_non_null(strstr(text, "# TYPE tandem_audit_chain_ok gauge\n"));
    assert_null(strstr(text, "\ntandem_audit_chain_ok "));
    assert_non_null(strstr(text, "tandem_audit_chain_verified_age_seconds -1.000\n"));
    free(text);
    check.failures = 2; /* walks that could not read the store */
    text = rendered(render_audit, &a);
    assert_non_null(strstr(text, "# TYPE tandem_audit_chain_walk_failures_total counter\n"
                                 "tandem_audit_chain_walk_failures_total 2\n"));
    free(text);

    struct tandem_audit_verdict v;
    memset(&v, 0, sizeof v);
    v.ok = true;
    v.records = 41;
    tandem_audit_check_record(&check, &v, 990000, 2500000);
    text = rendered(render_audit, &a);
    assert_non_null(strstr(text, "\ntandem_audit_chain_ok 1\n"));
    assert_non_null(strstr(text, "tandem_audit_chain_records 41\n"));
    assert_non_null(strstr(text, "tandem_audit_chain_broken_at 0\n"));
    assert_non_null(strstr(text, "tandem_audit_chain_verified_age_seconds 10.000\n"));
    assert_non_null(strstr(text, "tandem_audit_chain_verify_duration_seconds 0.002500\n"));
    free(text);

    v.ok = false;
    v.records = 6;
    v.broken_at = 7;
    v.reason = "hash mismatch";
    tandem_audit_check_record(&check, &v, 1000000, 1000);
    text = rendered(render_audit, &a);
    assert_non_null(strstr(text, "\ntandem_audit_chain_ok 0\n"));
    assert_non_null(strstr(text, "tandem_audit_chain_broken_at 7\n"));
    assert_non_null(strstr(text, "tandem_audit_chain_verified_age_seconds 0.000\n"));
    free(text);
    assert_int_equal(check.walks, 2);
}

static void render_loop_lag(FILE *out, const void *arg)
{
    tandem_loop_lag_write(out, arg);
}

/* The loop-lag timer's ticks: lateness is the time past the interval since the previous tick,
 * never negative; the first tick only sets the reference; the maximum is kept. */
static void test_loop_lag(void **state)
{
    (void)state;
    struct tandem_loop_lag l;
    const uint64_t ms = 1000000u, interval = TANDEM_LOOP_LAG_INTERVAL_MS * ms;
    memset(&l, 0, sizeof l);
    assert_int_equal(tandem_loop_lag_tick(&l, 5000 * ms), 0); /* the reference */
    assert_int_equal(l.lag.count, 0);
    assert_int_equal(tandem_loop_lag_tick(&l, 5000 * ms + interval - ms), 0); /* early */
    uint64_t t = 5000 * ms + interval - ms;
    assert_int_equal(tandem_loop_lag_tick(&l, t + interval + 300 * ms), 300 * ms);
    t += interval + 300 * ms;
    assert_int_equal(tandem_loop_lag_tick(&l, t + interval + 2 * ms), 2 * ms);
    assert_int_equal(l.lag.count, 3);
    assert_int_equal(l.max_ns, 300 * ms);
    assert_int_equal(l.lag.sum_ns, 302 * ms);
    /* 0 lands in the first bucket, 2 ms in the 3.2 ms one, 300 ms in the 409.6 ms one. */
    assert_int_equal(l.lag.buckets[0], 1);
    assert_int_equal(l.lag.buckets[6], 1);
    assert_int_equal(l.lag.buckets[13], 1);
    char *text = rendered(render_loop_lag, &l);
    assert_non_null(strstr(text, "# TYPE tandem_loop_lag_seconds histogram\n"));
    assert_non_null(strstr(text, "tandem_loop_lag_seconds_count 3\n"));
    assert_non_null(strstr(text, "tandem_loop_lag_seconds_bucket{le=\"0.409600\"} 3\n"));
    assert_non_null(strstr(text, "tandem_loop_lag_seconds_bucket{le=\"0.204800\"} 2\n"));
    assert_non_null(strstr(text, "# TYPE tandem_loop_lag_max_seconds gauge\n"
                                 "tandem_loop_lag_max_seconds 0.300000000\n"));
    free(text);
    /* What the loop held itself: the lateness less the CPU wait, never below 0. */
    assert_int_equal(tandem_loop_lag_held(&l, 300 * ms, 280 * ms), 20 * ms);
    assert_int_equal(tandem_loop_lag_held(&l, 40 * ms, 0), 40 * ms); /* no wait known */
    assert_int_equal(tandem_loop_lag_held(&l, 5 * ms, 9 * ms), 0);   /* waited in the interval */
    assert_int_equal(l.held_max_ns, 40 * ms);
    text = rendered(render_loop_lag, &l);
    assert_non_null(strstr(text, "# TYPE tandem_loop_held_max_seconds gauge\n"
                                 "tandem_loop_held_max_seconds 0.040000000\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),       cmocka_unit_test(test_family_lines),
        cmocka_unit_test(test_histogram_cumulative), cmocka_unit_test(test_leader_changes),
        cmocka_unit_test(test_histogram_quantile),   cmocka_unit_test(test_site_series),
        cmocka_unit_test(test_audit_chain_series),   cmocka_unit_test(test_loop_lag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
