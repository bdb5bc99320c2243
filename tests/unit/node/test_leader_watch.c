/* Tests of the leader watch's snapshot gate on a real loop, with the "leader" a tiny HTTP peer on
 * 127.0.0.1: a follower may snapshot only while a recent look shows it close to the leader. */
#include <stdlib.h>
#include <string.h>

#include "node/leader_watch.h"
#include "peer.h"

#define TRAILING 1000 /* snapshot_trailing: close means within 500 entries of the leader */

struct fixture {
    struct harness h;
    struct peer peer;
    struct tandem_leader_watch watch;
    struct tandem_leader_view view; /* what look answers */
    unsigned looks;
    int watch_closed;
};

static void look(void *data, bool want_leader, struct tandem_leader_view *out)
{
    struct fixture *f = data;
    f->looks++;
    *out = f->view;
    out->leader_known = want_leader && f->view.leader_known;
}

static void leader_says(struct fixture *f, const char *state, long commit_index)
{
    f->peer.status = 200;
    snprintf(f->peer.body, sizeof f->peer.body,
             "{\"node\":{\"state\":\"%s\",\"commit_index\":%ld}}", state, commit_index);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char errmsg[TANDEM_ERRMSG_SIZE];
    assert_non_null(f);
    harness_init(&f->h);
    peer_start(&f->h, &f->peer);
    leader_says(f, "leader", 10000);
    f->view.leader_known = true;
    snprintf(f->view.leader.name, sizeof f->view.leader.name, "leader-1");
    snprintf(f->view.leader.api, sizeof f->view.leader.api, "%s", f->peer.url);
    f->watch.data = f;
    assert_int_equal(tandem_leader_watch_start(&f->watch, &f->h.loop, TRAILING, look, f, errmsg),
                     0);
    assert_ptr_equal(f->watch.data, f); /* the owner's pointer survives start */
    *state = f;
    return 0;
}

static void watch_closed_cb(struct tandem_leader_watch *w)
{
    struct fixture *f = w->data;
    f->watch_closed++;
}

static int watch_closed(void *arg)
{
    struct fixture *f = arg;
    return f->watch_closed;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tandem_leader_watch_close(&f->watch, watch_closed_cb);
    assert_true(harness_run_until(&f->h, watch_closed, f));
    assert_int_equal(f->watch_closed, 1);
    peer_stop(&f->h, &f->peer);
    harness_close(&f->h);
    free(f);
    return 0;
}

static int looked(void *arg)
{
    struct fixture *f = arg;
    return f->watch.seen_ms != 0;
}

/* No look yet: a follower must not snapshot (a leader's snapshot may be on its way). */
static void test_no_look_refuses(void **state)
{
    struct fixture *f = *state;
    f->view.applied = 10000;
    assert_false(tandem_leader_watch_snapshot_allowed(&f->watch));
    assert_true(f->watch.snapshots_deferred == 1);
}

/* A fresh look: allowed within snapshot_trailing/2 of the leader's commit index, not beyond. */
static void test_fresh_look_gates_on_distance(void **state)
{
    struct fixture *f = *state;
    assert_true(harness_run_until(&f->h, looked, f));
    assert_int_equal(f->watch.leader_commit_index, 10000);
    assert_string_equal(f->peer.last_path, "/v1/status");
    f->view.applied = 10000 - TRAILING / 2; /* exactly at the bound */
    assert_true(tandem_leader_watch_snapshot_allowed(&f->watch));
    f->view.applied = 10000 - TRAILING / 2 - 1;
    assert_false(tandem_leader_watch_snapshot_allowed(&f->watch));
    f->view.applied = 12000; /* ahead of the look: still close */
    assert_true(tandem_leader_watch_snapshot_allowed(&f->watch));
}

/* A look older than TANDEM_LEADER_WATCH_FRESH_MS describes a leader that has moved on. */
static void test_stale_look_refuses(void **state)
{
    struct fixture *f = *state;
    assert_true(harness_run_until(&f->h, looked, f));
    f->view.applied = 10000;
    assert_true(tandem_leader_watch_snapshot_allowed(&f->watch));
    f->view.leader_known = false; /* no leader: the watch stops asking */
    harness_run_for(&f->h, TANDEM_LEADER_WATCH_FRESH_MS + 200);
    assert_false(tandem_leader_watch_snapshot_allowed(&f->watch));
}

/* An answer from a node that is not (or no longer) the leader does not count as a look. */
static void test_non_leader_answer_ignored(void **state)
{
    struct fixture *f = *state;
    leader_says(f, "follower", 10000);
    f->peer.requests = 0;
    harness_run_for(&f->h, 2 * TANDEM_LEADER_WATCH_INTERVAL_MS + 100);
    assert_true(f->peer.requests >= 2);
    assert_int_equal(f->watch.seen_ms, 0);
    f->view.applied = 10000;
    assert_false(tandem_leader_watch_snapshot_allowed(&f->watch));
}

/* The leader itself snapshots and never asks anyone. */
static void test_leader_always_allowed(void **state)
{
    struct fixture *f = *state;
    f->view.leading = true;
    f->view.leader_known = false;
    f->view.applied = 0;
    harness_run_for(&f->h, TANDEM_LEADER_WATCH_INTERVAL_MS + 100);
    assert_int_equal(f->peer.requests, 0);
    assert_true(tandem_leader_watch_snapshot_allowed(&f->watch));
    /* Except once stopping: raft's close waits for a snapshot in flight (consensus/raft_node.c)
     * and a new one would only make it wait longer. */
    f->watch.closing = true;
    assert_false(tandem_leader_watch_snapshot_allowed(&f->watch));
    f->watch.closing = false; /* teardown closes it for real */
}

static int report_says_full(void *arg)
{
    struct fixture *f = arg;
    return f->peer.posts > 0 && strstr(f->peer.last_post_body, "\"full\":true") != NULL;
}

static int report_says_not_full(void *arg)
{
    struct fixture *f = arg;
    return f->peer.posts > 0 && strstr(f->peer.last_post_body, "\"full\":false") != NULL;
}

/* A follower whose log holds its whole budget says so to the leader on every look, and once
 * more when it no longer does; then it says nothing more (node/log_reports.h). */
static void test_full_log_is_reported_until_it_is_not(void **state)
{
    struct fixture *f = *state;
    harness_run_for(&f->h, TANDEM_LEADER_WATCH_INTERVAL_MS + 100);
    assert_int_equal(f->peer.posts, 0); /* not full: no report */
    f->view.self = "follower-2";
    f->view.log_full = true;
    f->view.log_held = 170u << 20;
    f->view.log_budget = 192u << 20;
    assert_true(harness_run_until(&f->h, report_says_full, f));
    assert_string_equal(f->peer.last_post_path, "/v1/node/log-budget");
    assert_string_equal(f->peer.last_post_body, "{\"node\":\"follower-2\",\"held_bytes\":178257920,"
                                                "\"budget_bytes\":201326592,\"full\":true}");
    unsigned posts = f->peer.posts;
    harness_run_for(&f->h, 2 * TANDEM_LEADER_WATCH_INTERVAL_MS + 100);
    assert_true(f->peer.posts >= posts + 2); /* on every look while full */
    f->view.log_full = false;
    f->view.log_held = 90u << 20;
    assert_true(harness_run_until(&f->h, report_says_not_full, f));
    posts = f->peer.posts;
    harness_run_for(&f->h, 3 * TANDEM_LEADER_WATCH_INTERVAL_MS);
    assert_int_equal(f->peer.posts, posts); /* taken: said once */
    assert_int_equal(f->watch.reports_sent, posts);
}

/* A report the leader did not take (an error) leaves nothing to take back: a refused "full" is
 * followed by no "not full", and a leader that comes up meanwhile hears the next "full". */
static void test_refused_report_is_not_taken(void **state)
{
    struct fixture *f = *state;
    f->peer.status = 0; /* every answer 503 */
    f->view.self = "follower-2";
    f->view.log_full = true;
    f->view.log_held = f->view.log_budget = 192u << 20;
    assert_true(harness_run_until(&f->h, report_says_full, f));
    assert_false(f->watch.reported_full);
    f->view.log_full = false;
    unsigned posts = f->peer.posts;
    harness_run_for(&f->h, 3 * TANDEM_LEADER_WATCH_INTERVAL_MS);
    assert_int_equal(f->peer.posts, posts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_look_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_look_gates_on_distance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_look_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_leader_answer_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_always_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_log_is_reported_until_it_is_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_report_is_not_taken, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
