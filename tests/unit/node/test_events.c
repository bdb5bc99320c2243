/* Tests of BCP notifications: the event ring (order, overflow, resume position and gap), the
 * server-sent-events framing, bcp_event_command word splitting and runs (stdin, a hung run killed
 * by its timeout, the bounded queue), decision event types and the shared write-gap measure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/bcp/events.h"
#include "node/bcp/gap.h"
#include "node/bcp/incident.h"
#include "node/bcp/watch.h"

#define RUN_TIMEOUT_MS 10000 /* every wait in these tests ends by then */

/* ---- the ring ---- */

static void push(struct tandem_event_ring *ring, uint64_t seq)
{
    char json[64];
    snprintf(json, sizeof json, "{\"seq\":%llu}", (unsigned long long)seq);
    assert_int_equal(tandem_event_ring_push(ring, seq, "t", json), 0);
}

static void test_ring_resume_and_gap(void **state)
{
    struct tandem_event_ring ring;
    bool gap = true;
    (void)state;
    assert_int_equal(tandem_event_ring_init(&ring, 4), 0);
    assert_int_equal(tandem_event_ring_after(&ring, 0, &gap), 0);
    assert_false(gap);
    push(&ring, 10);
    push(&ring, 20);
    push(&ring, 21);
    /* resume positions: after a kept seq, between seqs, before all, after all */
    assert_int_equal(tandem_event_ring_after(&ring, 10, &gap), 1);
    assert_false(gap);
    assert_int_equal(tandem_event_ring_after(&ring, 15, &gap), 1);
    assert_int_equal(tandem_event_ring_after(&ring, 0, &gap), 0);
    assert_int_equal(tandem_event_ring_after(&ring, 21, &gap), 3);
    assert_false(gap);
    push(&ring, 30);
    push(&ring, 40); /* drops 10 */
    push(&ring, 50); /* drops 20 */
    assert_int_equal(ring.count, 4);
    assert_int_equal(tandem_event_ring_at(&ring, 0)->seq, 21);
    assert_int_equal(tandem_event_ring_at(&ring, 3)->seq, 50);
    assert_string_equal(tandem_event_ring_at(&ring, 3)->json, "{\"seq\":50}");
    assert_int_equal(ring.dropped_seq_max, 20);
    /* a reader after 10 missed 20: gap; one after 20 missed nothing */
    assert_int_equal(tandem_event_ring_after(&ring, 10, &gap), 0);
    assert_true(gap);
    assert_int_equal(tandem_event_ring_after(&ring, 20, &gap), 0);
    assert_false(gap);
    assert_int_equal(tandem_event_ring_after(&ring, 40, &gap), 3);
    assert_false(gap);
    /* many wraps keep exactly the newest capacity events in order */
    for (uint64_t seq = 51; seq < 1000; seq++) {
        push(&ring, seq);
    }
    for (unsigned k = 0; k < 4; k++) {
        assert_int_equal(tandem_event_ring_at(&ring, k)->seq, 996 + k);
    }
    tandem_event_ring_fini(&ring);
}

static void test_sse_framing(void **state)
{
    char out[256];
    (void)state;
    size_t n = tandem_event_sse(out, sizeof out, 65536, "auto_invoke", "{\"a\":1}");
    assert_string_equal(out, "id: 65536\nevent: auto_invoke\ndata: {\"a\":1}\n\n");
    assert_int_equal(n, strlen(out));
    n = tandem_event_sse(out, sizeof out, 0, "gap", "{}");
    assert_string_equal(out, "event: gap\ndata: {}\n\n"); /* no id: the reader's position stays */
    /* too small: the length needed, like snprintf */
    assert_int_equal(tandem_event_sse(out, 8, 1, "x", "{}"),
                     strlen("id: 1\nevent: x\ndata: {}\n\n"));
}

static void test_command_split(void **state)
{
    char buf[256], *argv[TANDEM_EVENT_COMMAND_ARGS_MAX + 1];
    char many[512] = "";
    (void)state;
    assert_int_equal(tandem_events_command_split("  notify  --to ops ", buf, sizeof buf, argv), 3);
    assert_string_equal(argv[0], "notify");
    assert_string_equal(argv[1], "--to");
    assert_string_equal(argv[2], "ops");
    assert_null(argv[3]);
    assert_int_equal(
        tandem_events_command_split("/bin/sh -c 'cat >> \"a b\"' x\"y z\"", buf, sizeof buf, argv),
        4);
    assert_string_equal(argv[2], "cat >> \"a b\"");
    assert_string_equal(argv[3], "xy z");
    assert_int_equal(tandem_events_command_split("sh -c 'unclosed", buf, sizeof buf, argv), -1);
    assert_int_equal(tandem_events_command_split("   ", buf, sizeof buf, argv), 0);
    for (int i = 0; i <= TANDEM_EVENT_COMMAND_ARGS_MAX; i++) {
        strcat(many, "w ");
    }
    assert_int_equal(tandem_events_command_split(many, buf, sizeof buf, argv), -1);
}

static void test_decision_types(void **state)
{
    (void)state;
    assert_string_equal(tandem_bcp_watch_decision_type("invoke", "auto:east-1"), "auto_invoke");
    assert_string_equal(tandem_bcp_watch_decision_type("invoke", "forced:e"), "forced_invoke");
    assert_string_equal(tandem_bcp_watch_decision_type("invoke", "drill:d1"), "drill_invoke");
    assert_string_equal(tandem_bcp_watch_decision_type("invoke", "operator"), "planned_invoke");
    assert_string_equal(tandem_bcp_watch_decision_type("revoke", "operator"), "planned_revoke");
    assert_string_equal(tandem_bcp_watch_decision_type("demote", "controller:x"), "role_change");
    assert_string_equal(tandem_bcp_watch_decision_type("witness-unreachable", "c"), "site_down");
    assert_string_equal(tandem_bcp_watch_decision_type("something-new", "c"), "decision");
}

/* The measure the drill's rto_ms and the incident report share. */
static void test_write_gap(void **state)
{
    struct tandem_gap g;
    (void)state;
    tandem_gap_init(&g, 0, 0);
    assert_int_equal(tandem_gap_add(&g, 100), 0);
    assert_int_equal(tandem_gap_add(&g, 130), 30);
    assert_int_equal(tandem_gap_add(&g, 480), 350);
    assert_int_equal(tandem_gap_add(&g, 500), 20);
    assert_int_equal(g.longest_ms, 350);
    assert_int_equal(g.longest_end_ms, 480);
    /* a pause [200, 900] between two writes does not count */
    tandem_gap_init(&g, 200, 900);
    (void)tandem_gap_add(&g, 150);
    assert_int_equal(tandem_gap_add(&g, 950), 100); /* 50 before the pause + 50 after */
    assert_int_equal(g.longest_ms, 100);
}

/* ---- the hub with a loop: streams aside, the command runs ---- */

struct hub {
    uv_loop_t loop;
    struct tandem_config config;
    struct tandem_events events;
    uint64_t epoch;
    char dir[64], sink[128];
    int closed;
};

static void hub_start(struct hub *h, const char *command, unsigned timeout_ms)
{
    memset(h, 0, sizeof *h);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    tandem_config_defaults(&h->config);
    snprintf(h->dir, sizeof h->dir, "/tmp/tandem-test-events-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->sink, sizeof h->sink, "%s/sink", h->dir);
    snprintf(h->config.bcp_event_command, sizeof h->config.bcp_event_command, command, h->sink);
    h->config.bcp_event_command_timeout_ms = timeout_ms;
    h->epoch = 3;
    assert_int_equal(tandem_events_init(&h->events, &h->loop, &h->config, "east-1", &h->epoch), 0);
    assert_int_equal(tandem_events_start(&h->events), 0);
}

static void hub_closed_cb(struct tandem_events *e)
{
    struct hub *h = e->data;
    h->closed = 1;
}

static void hub_run_until(struct hub *h, int (*done)(struct hub *h))
{
    uint64_t deadline = uv_hrtime() / 1000000 + RUN_TIMEOUT_MS;
    while (!done(h) && uv_hrtime() / 1000000 < deadline) {
        uv_run(&h->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    assert_true(done(h));
}

static int hub_is_closed(struct hub *h)
{
    return h->closed;
}

static void hub_stop(struct hub *h)
{
    h->events.data = h;
    tandem_events_close(&h->events, hub_closed_cb);
    hub_run_until(h, hub_is_closed);
    uv_run(&h->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&h->loop), 0); /* nothing left on the loop */
    unlink(h->sink);
    rmdir(h->dir);
}

static int sink_has_two_lines(struct hub *h)
{
    char text[4096] = "";
    FILE *f = fopen(h->sink, "r");
    size_t n = f == NULL ? 0 : fread(text, 1, sizeof text - 1, f);
    if (f != NULL) {
        fclose(f);
    }
    text[n] = '\0';
    char *newline = strchr(text, '\n');
    return h->events.stats.command_runs == 2 && !h->events.running && newline != NULL &&
           strchr(newline + 1, '\n') != NULL;
}

static void test_command_gets_event_on_stdin(void **state)
{
    struct hub h;
    char text[4096] = "";
    (void)state;
    hub_start(&h, "/bin/sh -c 'cat >> %s'", 5000);
    tandem_events_emit(&h.events, "fenced", NULL, "east-1 is %s", "fenced");
    tandem_events_decision(&h.events, 2, 1765000000000, "auto_invoke", "west", "invoke west", NULL,
                           true);
    hub_run_until(&h, sink_has_two_lines);
    FILE *f = fopen(h.sink, "r");
    assert_non_null(f);
    assert_true(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    json_t *first = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(first);
    assert_string_equal(json_string_value(json_object_get(first, "type")), "fenced");
    assert_int_equal(json_integer_value(json_object_get(first, "seq")), 1);
    assert_int_equal(json_integer_value(json_object_get(first, "epoch")), 3);
    assert_string_equal(json_string_value(json_object_get(first, "node")), "east-1");
    json_decref(first);
    json_t *second = json_loads(strchr(text, '\n') + 1, JSON_DISABLE_EOF_CHECK, NULL);
    assert_int_equal(json_integer_value(json_object_get(second, "seq")),
                     2 * TANDEM_EVENT_SEQ_STRIDE);
    assert_string_equal(json_string_value(json_object_get(second, "time")), "2025-12-06T05:46:40Z");
    json_decref(second);
    assert_int_equal(h.events.stats.command_failures, 0);
    /* a local event after decision 2 numbers after it */
    tandem_events_emit(&h.events, "site_up", "west", "back");
    assert_int_equal(h.events.last_seq, 2 * TANDEM_EVENT_SEQ_STRIDE + 1);
    hub_stop(&h);
}

static int one_killed_and_idle(struct hub *h)
{
    return h->events.stats.command_timeouts >= 1 && !h->events.running &&
           h->events.queue_count == 0;
}

/* A run that never ends is killed after its timeout, and the queue behind it is bounded. */
static void test_hung_command_killed(void **state)
{
    struct hub h;
    (void)state;
    hub_start(&h, "sleep 30", 100);
    for (unsigned i = 0; i < TANDEM_EVENT_COMMAND_QUEUE_MAX + 5; i++) {
        tandem_events_emit(&h.events, "site_down", "west", "event %u", i);
    }
    /* one running, TANDEM_EVENT_COMMAND_QUEUE_MAX waiting, the rest dropped and counted */
    assert_true(h.events.running);
    assert_int_equal(h.events.queue_count, TANDEM_EVENT_COMMAND_QUEUE_MAX);
    assert_int_equal(h.events.stats.command_dropped, 4);
    assert_int_equal(h.events.ring.count, TANDEM_EVENT_COMMAND_QUEUE_MAX + 5);
    /* drop the backlog so the test waits for one kill only */
    while (h.events.queue_count > 0) {
        free(h.events.queue[h.events.queue_start]);
        h.events.queue_start = (h.events.queue_start + 1) % TANDEM_EVENT_COMMAND_QUEUE_MAX;
        h.events.queue_count--;
    }
    hub_run_until(&h, one_killed_and_idle);
    assert_int_equal(h.events.stats.command_timeouts, 1);
    /* stopping the node while a run is in flight kills it and still closes everything */
    tandem_events_emit(&h.events, "site_up", "west", "back");
    assert_true(h.events.running);
    hub_stop(&h);
}

/* The incident report's write gap: gaps between applied client writes, clipped to the window;
 * writes in the same ms leave none. */
static void test_incident_write_gaps(void **state)
{
    static struct tandem_incidents in;
    uint64_t end = 0;
    (void)state;
    tandem_incidents_init(&in, NULL);
    assert_int_equal(tandem_incidents_longest_gap(&in, 0, 100000, &end), -1);
    tandem_incidents_write(&in, 1000);
    tandem_incidents_write(&in, 1000); /* same ms: no gap */
    tandem_incidents_write(&in, 1005);
    tandem_incidents_write(&in, 1900); /* 895 ms without a write */
    tandem_incidents_write(&in, 1920);
    tandem_incidents_write(&in, 5000); /* 3080 ms, mostly before the window below */
    tandem_incidents_write(&in, 5010);
    assert_int_equal(tandem_incidents_longest_gap(&in, 0, 100000, &end), 3080);
    assert_int_equal(end, 5000);
    assert_int_equal(tandem_incidents_longest_gap(&in, 4500, 100000, &end), 500); /* clipped */
    assert_int_equal(tandem_incidents_longest_gap(&in, 1000, 2000, &end), 895);
    assert_int_equal(end, 1900);
    assert_int_equal(tandem_incidents_longest_gap(&in, 6000, 7000, &end), -1);
    /* a clock read out of order never makes a negative gap */
    tandem_incidents_write(&in, 5009);
    assert_int_equal(in.writes.previous_ms, 5010);
}

static int two_failed_and_idle(struct hub *h)
{
    return h->events.stats.command_failures == 2 && !h->events.running &&
           h->events.queue_count == 0;
}

/* A command that cannot start is counted, and the next event still gets its run. */
static void test_command_missing(void **state)
{
    struct hub h;
    (void)state;
    hub_start(&h, "/nonexistent/tandem-notify %s", 1000);
    tandem_events_emit(&h.events, "site_down", "west", "one");
    tandem_events_emit(&h.events, "site_up", "west", "two");
    hub_run_until(&h, two_failed_and_idle);
    assert_int_equal(h.events.stats.command_runs, 0);
    assert_int_equal(h.events.ring.count, 2); /* the events themselves are kept */
    hub_stop(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_resume_and_gap),
        cmocka_unit_test(test_sse_framing),
        cmocka_unit_test(test_command_split),
        cmocka_unit_test(test_decision_types),
        cmocka_unit_test(test_write_gap),
        cmocka_unit_test(test_command_gets_event_on_stdin),
        cmocka_unit_test(test_hung_command_killed),
        cmocka_unit_test(test_command_missing),
        cmocka_unit_test(test_incident_write_gaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
