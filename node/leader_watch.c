/* Follower-side watch of the leader's commit index, gating the follower's own snapshots. */
#include "node/leader_watch.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "node/log.h"
#include "storage/assert.h"

static void maybe_closed(struct tandem_leader_watch *w)
{
    if (w->closing && w->pool_closed && !w->inflight && !w->report_inflight &&
        w->close_cb != NULL) {
        void (*cb)(struct tandem_leader_watch *) = w->close_cb;
        w->close_cb = NULL;
        cb(w);
    }
}

static void pool_closed_cb(struct tandem_http_pool *pool)
{
    struct tandem_leader_watch *w = pool->data;
    w->pool_closed = true;
    maybe_closed(w);
}

static void status_cb(struct tandem_httpc_request *req, int status,
                      const struct tandem_httpc_response *resp)
{
    struct tandem_leader_watch *w = req->data;
    w->inflight = false;
    if (status == 0 && resp != NULL && resp->status == 200) {
        json_t *body = json_loadb(resp->body, resp->body_len, 0, NULL);
        json_int_t commit = -1;
        const char *state = NULL;
        if (json_unpack(body, "{s:{s:I,s:s}}", "node", "commit_index", &commit, "state", &state) ==
                0 &&
            commit >= 0 && strcmp(state, "leader") == 0) {
            w->leader_commit_index = (uint64_t)commit;
            w->seen_ms = uv_now(w->loop);
        }
        json_decref(body);
    }
    maybe_closed(w);
}

static void report_cb(struct tandem_httpc_request *req, int status,
                      const struct tandem_httpc_response *resp)
{
    struct tandem_leader_watch *w = req->data;
    w->report_inflight = false;
    if (status == 0 && resp != NULL && resp->status == 200) {
        w->reported_full = w->report_full;
    }
    maybe_closed(w);
}

/* While the log is full, every look reports it; once it is not, one report says so (a leader
 * that missed it forgets the full one within TANDEM_LOG_REPORT_FRESH_MS anyway). */
static void report_send(struct tandem_leader_watch *w, const struct tandem_leader_view *view)
{
    if (w->report_inflight || view->self == NULL || (!view->log_full && !w->reported_full)) {
        return;
    }
    int n = snprintf(w->report_body, sizeof w->report_body,
                     "{\"node\":\"%s\",\"held_bytes\":%llu,\"budget_bytes\":%llu,\"full\":%s}",
                     view->self, (unsigned long long)view->log_held,
                     (unsigned long long)view->log_budget, view->log_full ? "true" : "false");
    tandem_assert(n > 0 && (size_t)n < sizeof w->report_body); /* a name is 63 bytes at most */
    w->report_req.data = w;
    if (tandem_http_pool_send_node(&w->pool, view->leader.api, view->leader.name, &w->report_req,
                                   "POST", "/v1/node/log-budget",
                                   "Content-Type: application/json\r\n", w->report_body, (size_t)n,
                                   report_cb) == 0) {
        w->report_inflight = true;
        w->report_full = view->log_full;
        w->reports_sent++;
    }
}

static void timer_cb(uv_timer_t *timer)
{
    struct tandem_leader_watch *w = timer->data;
    struct tandem_leader_view view;
    if (w->inflight && w->report_inflight) {
        return;
    }
    w->look(w->look_data, true, &view);
    if (view.leading || !view.leader_known) {
        w->reported_full = false; /* a new leader knows no report of this node's */
        return;
    }
    report_send(w, &view);
    if (w->inflight) {
        return;
    }
    w->req.data = w;
    /* The pool holds one client: a new leader's URL retires the former leader's. */
    if (tandem_http_pool_send_node(&w->pool, view.leader.api, view.leader.name, &w->req, "GET",
                                   "/v1/status", NULL, NULL, 0, status_cb) == 0) {
        w->inflight = true;
    }
}

int tandem_leader_watch_start(struct tandem_leader_watch *w, uv_loop_t *loop,
                              unsigned snapshot_trailing, tandem_leader_watch_look_fn look,
                              void *look_data, char *errmsg)
{
    tandem_assert(loop != NULL && look != NULL);
    void *data = w->data; /* the owner's, set before start */
    memset(w, 0, sizeof *w);
    *w = (struct tandem_leader_watch){.loop = loop,
                                      .snapshot_trailing = snapshot_trailing,
                                      .look = look,
                                      .look_data = look_data,
                                      .data = data};
    if (tandem_http_pool_init(&w->pool, loop, 1, 1, TANDEM_LEADER_WATCH_TIMEOUT_MS) != 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "leader watch: %s", w->pool.errmsg);
    }
    w->pool.data = w;
    int rv = uv_timer_init(loop, &w->timer);
    if (rv != 0) {
        tandem_http_pool_close(&w->pool, NULL);
        return tandem_error_from_uv(rv, errmsg, "leader watch timer");
    }
    w->timer.data = w;
    rv = uv_timer_start(&w->timer, timer_cb, 0, TANDEM_LEADER_WATCH_INTERVAL_MS);
    if (rv != 0) {
        uv_close((uv_handle_t *)&w->timer, NULL);
        tandem_http_pool_close(&w->pool, NULL);
        return tandem_error_from_uv(rv, errmsg, "leader watch timer");
    }
    return 0;
}

bool tandem_leader_watch_snapshot_allowed(void *data)
{
    struct tandem_leader_watch *w = data;
    struct tandem_leader_view view;
    if (w->closing) {
        return false; /* stopping: raft's close waits for a snapshot in flight, start none */
    }
    w->look(w->look_data, false, &view);
    if (view.leading) {
        return true;
    }
    /* uv_now is refreshed at the top of each loop iteration, so right after a stall the last
     * look is old even if the stall froze the whole process. */
    uint64_t now = uv_now(w->loop);
    uint64_t applied = view.applied;
    bool fresh = w->seen_ms != 0 && now - w->seen_ms <= TANDEM_LEADER_WATCH_FRESH_MS;
    bool close = applied + w->snapshot_trailing / 2 >= w->leader_commit_index;
    if (fresh && close) {
        return true;
    }
    if (w->snapshots_deferred++ % 64 == 0) {
        tandem_log(TANDEM_LOG_INFO,
                   "snapshot deferred: %s (applied %llu, leader commit %llu): a leader's "
                   "snapshot may be on its way",
                   fresh ? "far behind the leader" : "no fresh look at the leader",
                   (unsigned long long)applied, (unsigned long long)w->leader_commit_index);
    }
    return false;
}

static void timer_closed_cb(uv_handle_t *handle)
{
    struct tandem_leader_watch *w = handle->data;
    tandem_http_pool_close(&w->pool, pool_closed_cb);
}

void tandem_leader_watch_close(struct tandem_leader_watch *w,
                               void (*cb)(struct tandem_leader_watch *w))
{
    w->closing = true;
    w->close_cb = cb;
    uv_close((uv_handle_t *)&w->timer, timer_closed_cb);
}
