/* Tests of the BCP runtime on a real loop with a borrowed env: the fencing epoch from the data
 * directory, fencing by a peer's newer epoch (and not by another cluster's), probes' reachability
 * bookkeeping (API and raft transport), the start-up quarantine's glue, one-shot calls and
 * restart in place; and the refusals and answers of the
 * orchestrations built on it (leader relay, takeover wait, rejoin, drill). The peer is a tiny
 * HTTP server on 127.0.0.1; raft is not started: the configuration is filled in by hand and this
 * node is no leader; the state store is a real, empty one. */
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consensus/recover.h"
#include "consensus/transport.h"
#include "node/bcp/drill.h"
#include "node/bcp/rejoin.h"
#include "node/bcp/runtime.h"
#include "node/bcp/takeover.h"
#include "peer.h"
#include "replication/bcp/sites.h"

#define DOWN_AFTER_MS 600 /* site_down_after_ms: probes every 100 ms, each waits 200 ms */
#define PEER_ID       2

struct fixture {
    struct harness h;
    struct peer peer;
    struct tandem_config config;
    struct tandem_raft raft;
    struct tandem_store store;
    struct tandem_proposer proposer;
    struct tandem_member self;
    struct tandem_bcp bcp;
    bool started;
    int bcp_closed;
    unsigned stops;
    bool reexec;
    int call_status, call_http_status;
    char call_body[256];
    unsigned calls;
    /* what the orchestrations answered through the reply */
    unsigned replies;
    int reply_status;
    char reply_kind[8]; /* "json", "error", "text" */
    char reply_body[1024];
    char reply_headers[128];
    char peer_address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    char self_address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    int peer_raft_port;
    struct raft_uv_transport peer_raft; /* peer-2's raft transport, when a test starts it */
    bool peer_raft_started, transport_closed;
};

static void env_stop(void *data, bool reexec)
{
    struct fixture *f = data;
    f->stops++;
    f->reexec = reexec;
}

static void config_add(struct fixture *f, uint64_t id, const char *name, const char *api)
{
    struct tandem_member m = {.role = TANDEM_ROLE_VOTER};
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.site, sizeof m.site, "%s", id == 1 ? "east" : "west");
    snprintf(m.raft, sizeof m.raft, "127.0.0.1:%d", id == PEER_ID ? f->peer_raft_port : 1);
    snprintf(m.api, sizeof m.api, "%s", api);
    assert_int_equal(tandem_member_address_format(&m, address, sizeof address), 0);
    snprintf(id == PEER_ID ? f->peer_address : f->self_address, sizeof f->peer_address, "%s",
             address);
    assert_int_equal(raft_configuration_add(&f->raft.raft.configuration, id, address, RAFT_VOTER),
                     0);
}

static void write_file(struct fixture *f, const char *name, const char *text)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", f->config.data_dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    harness_init(&f->h);
    peer_start(&f->h, &f->peer);
    snprintf(f->config.data_dir, sizeof f->config.data_dir, "/tmp/tandem-test-bcp-XXXXXX");
    assert_non_null(mkdtemp(f->config.data_dir));
    snprintf(f->config.cluster_id, sizeof f->config.cluster_id, "tandem");
    snprintf(f->config.mode, sizeof f->config.mode, "sync");
    f->config.site_down_after_ms = DOWN_AFTER_MS;
    f->config.election_timeout_ms = 1000;
    snprintf(f->self.name, sizeof f->self.name, "self-1");
    snprintf(f->self.api, sizeof f->self.api, "http://127.0.0.1:1");
    struct tandem_transport_config transport = {
        .cluster_id = "tandem", .epoch = 1, .quarantine = true};
    assert_int_equal(tandem_transport_init(&f->raft.transport, &f->h.loop, &transport), 0);
    f->peer_raft_port = harness_dead_port(&f->h); /* nobody listens until peer_raft_start */
    raft_configuration_init(&f->raft.raft.configuration);
    config_add(f, 1, "self-1", f->self.api);
    config_add(f, PEER_ID, "peer-2", f->peer.url);
    f->raft.id = 1;
    assert_int_equal(f->raft.transport.init(&f->raft.transport, 1, f->self_address), 0);
    f->raft.raft.state = RAFT_FOLLOWER; /* knowing no leader until a test names one */
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/state", f->config.data_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(tandem_store_open(&f->store, path, 16u << 20), 0);
    *state = f;
    return 0;
}

static void bcp_init(struct fixture *f)
{
    struct tandem_bcp_env env = {.loop = &f->h.loop,
                                 .config = &f->config,
                                 .raft = &f->raft,
                                 .store = &f->store,
                                 .proposer = &f->proposer,
                                 .self = &f->self,
                                 .stop = env_stop,
                                 .data = f};
    tandem_bcp_init(&f->bcp, &env);
}

static void bcp_start(struct fixture *f)
{
    bcp_init(f);
    assert_int_equal(tandem_bcp_start(&f->bcp), 0);
    f->started = true;
}

static void bcp_closed_cb(struct tandem_bcp *b)
{
    struct fixture *f = b->env.data;
    f->bcp_closed++;
}

static int bcp_closed(void *arg)
{
    struct fixture *f = arg;
    return f->bcp_closed;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_data_dir(struct fixture *f)
{
    assert_int_equal(nftw(f->config.data_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static void transport_closed_cb(struct raft_uv_transport *t)
{
    struct fixture *f = t->data;
    f->transport_closed = true;
}

static int transport_closed(void *arg)
{
    return ((struct fixture *)arg)->transport_closed;
}

/* Closes a transport (its probes in flight end) and frees it. */
static void transport_stop(struct fixture *f, struct raft_uv_transport *t)
{
    f->transport_closed = false;
    t->data = f;
    t->close(t, transport_closed_cb);
    assert_true(harness_run_until(&f->h, transport_closed, f));
    tandem_transport_close(t);
    assert_null(t->impl);
}

static void peer_raft_accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                                uv_stream_t *stream)
{
    (void)t;
    (void)id;
    (void)address;
    uv_close((uv_handle_t *)stream, (uv_close_cb)raft_free);
}

/* peer-2's raft port answers (probes only: this runtime's raft never connects). */
static void peer_raft_start(struct fixture *f, uint64_t epoch)
{
    struct tandem_transport_config config = {.cluster_id = "tandem", .epoch = epoch};
    assert_int_equal(tandem_transport_init(&f->peer_raft, &f->h.loop, &config), 0);
    assert_int_equal(f->peer_raft.init(&f->peer_raft, PEER_ID, f->peer_address), 0);
    assert_int_equal(f->peer_raft.listen(&f->peer_raft, peer_raft_accept_cb), 0);
    f->peer_raft_started = true;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->started) {
        tandem_bcp_close(&f->bcp, bcp_closed_cb);
        assert_true(harness_run_until(&f->h, bcp_closed, f));
        assert_int_equal(f->bcp_closed, 1);
    }
    transport_stop(f, &f->raft.transport);
    if (f->peer_raft_started) {
        transport_stop(f, &f->peer_raft);
    }
    peer_stop(&f->h, &f->peer);
    harness_close(&f->h);
    tandem_store_close(&f->store);
    raft_configuration_close(&f->raft.raft.configuration);
    remove_data_dir(f);
    free(f);
    return 0;
}

/* ---- the fencing epoch ---- */

static void test_epoch_from_data_dir(void **state)
{
    struct fixture *f = *state;
    bcp_init(f);
    assert_int_equal(f->bcp.epoch, 1); /* absent: the cluster's first epoch */
    write_file(f, "epoch", "7\n");
    bcp_init(f);
    assert_int_equal(f->bcp.epoch, 7);
    write_file(f, "epoch", "0\n");
    bcp_init(f);
    assert_int_equal(f->bcp.epoch, 1);
    write_file(f, "epoch", "junk\n");
    bcp_init(f);
    assert_int_equal(f->bcp.epoch, 1);
    assert_false(f->bcp.fenced);
}

/* Fenced before a restart stays fenced: the marker holds a newer epoch than ours. */
static void test_fenced_marker_survives_restart(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    write_file(f, "epoch", "7\n");
    assert_int_equal(tandem_recover_write_u64(f->config.data_dir, TANDEM_FENCED_FILE, 7, errmsg),
                     0);
    bcp_init(f);
    assert_false(f->bcp.fenced); /* init reads only the epoch */
    bcp_start(f);
    assert_false(f->bcp.fenced); /* a marker at our own epoch is no fence */
    tandem_bcp_close(&f->bcp, bcp_closed_cb);
    assert_true(harness_run_until(&f->h, bcp_closed, f));
    f->bcp_closed = 0;
    assert_int_equal(tandem_recover_write_u64(f->config.data_dir, TANDEM_FENCED_FILE, 9, errmsg),
                     0);
    bcp_start(f);
    assert_true(f->bcp.fenced);
    assert_int_equal(f->bcp.epoch, 7);
}

static void test_unknown_mode_refused(void **state)
{
    struct fixture *f = *state;
    snprintf(f->config.mode, sizeof f->config.mode, "eager");
    unsigned handles = harness_handles(&f->h);
    bcp_init(f);
    assert_int_equal(tandem_bcp_start(&f->bcp), -1);
    assert_int_equal(harness_handles(&f->h), handles); /* refused before opening anything */
}

/* ---- probes ---- */

static void peer_says(struct fixture *f, unsigned epoch, const char *cluster)
{
    f->peer.status = 200;
    snprintf(f->peer.body, sizeof f->peer.body,
             "{\"epoch\":%u,\"cluster_id\":\"%s\",\"fenced\":false}", epoch, cluster);
}

static int probed_twice(void *arg)
{
    struct fixture *f = arg;
    return f->peer.requests >= 2;
}

static int fenced(void *arg)
{
    struct fixture *f = arg;
    return f->bcp.fenced;
}

static void test_probe_at_our_epoch(void **state)
{
    struct fixture *f = *state;
    peer_says(f, 1, "tandem");
    bcp_start(f);
    assert_true(harness_run_until(&f->h, probed_twice, f));
    assert_string_equal(f->peer.last_path, "/v1/node/epoch");
    assert_true(tandem_bcp_reachable(&f->bcp, "peer-2"));
    assert_true(tandem_bcp_reachable(&f->bcp, "self-1")); /* this node: always */
    assert_false(tandem_bcp_reachable(&f->bcp, "nobody"));
    assert_false(f->bcp.fenced);
}

/* A peer of our cluster at a newer epoch: the cluster moved on without us. */
static void test_newer_epoch_fences(void **state)
{
    struct fixture *f = *state;
    peer_says(f, 3, "tandem");
    bcp_start(f);
    assert_true(harness_run_until(&f->h, fenced, f));
    assert_int_equal(f->bcp.epoch, 1); /* fencing does not adopt the epoch: a re-seed does */
    assert_int_equal(tandem_recover_file_u64(f->config.data_dir, TANDEM_FENCED_FILE), 3);
    assert_int_equal(f->stops, 0); /* fenced nodes keep running, serving nothing */
}

static void test_other_cluster_does_not_fence(void **state)
{
    struct fixture *f = *state;
    peer_says(f, 3, "elsewhere");
    bcp_start(f);
    assert_true(harness_run_until(&f->h, probed_twice, f));
    assert_false(f->bcp.fenced);
    assert_int_equal(tandem_recover_file_u64(f->config.data_dir, TANDEM_FENCED_FILE), 0);
}

static int peer_unreachable(void *arg)
{
    struct fixture *f = arg;
    return !tandem_bcp_reachable(&f->bcp, "peer-2");
}

/* A new peer gets the benefit of the doubt for site_down_after_ms, then counts as down until it
 * answers again. */
static void test_reachability_follows_answers(void **state)
{
    struct fixture *f = *state;
    f->peer.status = 0; /* the peer answers 503 */
    peer_raft_start(f, 1);
    bcp_start(f);
    harness_run_for(&f->h, 2 * 50);
    assert_true(tandem_bcp_reachable(&f->bcp, "peer-2"));
    uv_update_time(&f->h.loop);
    uint64_t started = uv_now(&f->h.loop);
    assert_true(harness_run_until(&f->h, peer_unreachable, f));
    assert_true(uv_now(&f->h.loop) - started >= DOWN_AFTER_MS - 2 * 50 - 50);
    peer_says(f, 1, "tandem");
    assert_true(harness_run_until(&f->h, probed_twice, f));
    harness_run_for(&f->h, 300);
    assert_true(tandem_bcp_reachable(&f->bcp, "peer-2"));
}

/* ---- raft-level reachability (issue 10 section 2) ---- */

static int raft_unreachable(void *arg)
{
    struct fixture *f = arg; /* once it is a peer, probed over its API */
    return f->peer.requests > 0 && !tandem_bcp_raft_reachable(&f->bcp, "peer-2", NULL);
}

static int peer_reachable(void *arg)
{
    struct fixture *f = arg;
    return tandem_bcp_reachable(&f->bcp, "peer-2");
}

/* An API that answers is not enough: a member whose raft port does not is unreachable. */
static void test_raft_unreachable_while_api_answers(void **state)
{
    struct fixture *f = *state;
    int64_t age;
    peer_says(f, 1, "tandem");
    bcp_start(f);
    assert_true(harness_run_until(&f->h, raft_unreachable, f)); /* after the benefit of doubt */
    assert_true(tandem_bcp_api_reachable(&f->bcp, "peer-2", &age));
    assert_true(age >= 0 && age < DOWN_AFTER_MS);
    assert_false(tandem_bcp_raft_reachable(&f->bcp, "peer-2", &age));
    assert_int_equal(age, -1); /* never */
    assert_false(tandem_bcp_reachable(&f->bcp, "peer-2"));
    assert_true(tandem_bcp_raft_reachable(&f->bcp, "self-1", &age));

    peer_raft_start(f, 1);
    assert_true(harness_run_until(&f->h, peer_reachable, f));
    assert_true(tandem_bcp_raft_reachable(&f->bcp, "peer-2", &age));
    assert_true(age >= 0 && age < DOWN_AFTER_MS);
}

/* ---- start-up quarantine glue ---- */

static int released(void *arg)
{
    return !((struct fixture *)arg)->bcp.quarantined;
}

/* self-1 (alone at east) waits for a node of west; peer-2's raft port answering releases it. */
static void test_quarantine_waits_for_the_other_site(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    peer_says(f, 1, "tandem"); /* its API answers: not enough */
    bcp_start(f);
    harness_run_for(&f->h, 300);
    assert_true(f->bcp.quarantined);
    assert_true(tandem_transport_quarantined(&f->raft.transport));
    assert_non_null(
        strstr(f->bcp.quarantine_why, "waiting for a node of site west: peer-2 unreachable"));

    peer_raft_start(f, 1);
    assert_true(harness_run_until(&f->h, released, f));
    assert_false(tandem_transport_quarantined(&f->raft.transport));
    assert_non_null(strstr(f->bcp.quarantine_why, "every non-witness site"));
    assert_int_equal(tandem_bcp_release(&f->bcp, "too late", errmsg), -1);
    assert_non_null(strstr(errmsg, "self-1 is not quarantined"));
    assert_false(f->bcp.release_note_pending);
}

static void test_quarantine_operator_release(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    bcp_start(f);
    harness_run_for(&f->h, 300);
    assert_true(f->bcp.quarantined);
    assert_int_equal(tandem_bcp_release(&f->bcp, "west is gone for good", errmsg), 0);
    assert_false(f->bcp.quarantined);
    assert_false(tandem_transport_quarantined(&f->raft.transport));
    assert_non_null(strstr(f->bcp.quarantine_why,
                           "released by an operator (west is gone for good); it was "
                           "waiting for a node of site west"));
    assert_true(f->bcp.release_note_pending); /* recorded once a leader is known */
}

/* A raft port at a newer epoch fences at once, and a fenced node stays quarantined. */
static void test_quarantine_newer_epoch_fences(void **state)
{
    struct fixture *f = *state;
    char errmsg[TANDEM_ERRMSG_SIZE];
    peer_raft_start(f, 2);
    bcp_start(f);
    assert_true(harness_run_until(&f->h, fenced, f));
    harness_run_for(&f->h, 200);
    assert_true(f->bcp.quarantined);
    assert_true(tandem_transport_quarantined(&f->raft.transport));
    assert_int_equal(tandem_recover_file_u64(f->config.data_dir, TANDEM_FENCED_FILE), 2);
    assert_int_equal(tandem_bcp_release(&f->bcp, "no", errmsg), -1);
    assert_non_null(strstr(errmsg, "fenced"));
}

/* A member that left the configuration is no longer probed nor reachable. */
static void test_removed_peer_forgotten(void **state)
{
    struct fixture *f = *state;
    peer_says(f, 1, "tandem");
    bcp_start(f);
    assert_true(harness_run_until(&f->h, probed_twice, f));
    assert_true(tandem_bcp_reachable(&f->bcp, "peer-2"));
    raft_configuration_close(&f->raft.raft.configuration);
    raft_configuration_init(&f->raft.raft.configuration);
    config_add(f, 1, "self-1", f->self.api);
    harness_run_for(&f->h, 300);
    assert_false(tandem_bcp_reachable(&f->bcp, "peer-2"));
    unsigned requests = f->peer.requests;
    harness_run_for(&f->h, 300);
    assert_int_equal(f->peer.requests, requests);
}

/* ---- one-shot calls and restart ---- */

static void bcp_call_cb(void *data, int status, int http_status, const char *body, size_t len)
{
    struct fixture *f = data;
    f->calls++;
    f->call_status = status;
    f->call_http_status = http_status;
    snprintf(f->call_body, sizeof f->call_body, "%.*s", (int)len, body == NULL ? "" : body);
}

static int called(void *arg)
{
    struct fixture *f = arg;
    return f->calls > 0;
}

static void test_call(void **state)
{
    struct fixture *f = *state;
    f->peer.status = 202;
    snprintf(f->peer.body, sizeof f->peer.body, "{\"ok\":true}");
    bcp_start(f);
    assert_int_equal(tandem_bcp_call(&f->bcp, f->peer.url, "POST", "/v1/node/reseed", NULL, "{}",
                                     1000, bcp_call_cb, f),
                     0);
    assert_true(harness_run_until(&f->h, called, f));
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->call_status, 0);
    assert_int_equal(f->call_http_status, 202);
    assert_string_equal(f->call_body, "{\"ok\":true}");
    assert_string_equal(f->peer.last_action, "/v1/node/reseed");
    /* not an http:// URL: refused at once, the callback never runs */
    assert_int_equal(
        tandem_bcp_call(&f->bcp, "ftp://127.0.0.1:1", "GET", "/", NULL, NULL, 1000, bcp_call_cb, f),
        UV_EINVAL);
    harness_run_for(&f->h, 50);
    assert_int_equal(f->calls, 1);
}

static int stopped(void *arg)
{
    struct fixture *f = arg;
    return f->stops > 0;
}

static void test_restart_in_place(void **state)
{
    struct fixture *f = *state;
    bcp_start(f);
    uv_update_time(&f->h.loop);
    uint64_t asked = uv_now(&f->h.loop);
    tandem_bcp_restart(&f->bcp, "test");
    tandem_bcp_restart(&f->bcp, "test again"); /* one restart at a time */
    assert_true(harness_run_until(&f->h, stopped, f));
    assert_true(uv_now(&f->h.loop) - asked >= TANDEM_BCP_RESTART_DELAY_MS);
    harness_run_for(&f->h, TANDEM_BCP_RESTART_DELAY_MS + 100);
    assert_int_equal(f->stops, 1);
    assert_true(f->reexec);
}

/* ---- orchestrations: how they answer ---- */

static void record(struct fixture *f, const char *kind, int status, const char *body)
{
    f->replies++;
    f->reply_status = status;
    snprintf(f->reply_kind, sizeof f->reply_kind, "%s", kind);
    snprintf(f->reply_body, sizeof f->reply_body, "%s", body == NULL ? "" : body);
}

static void reply_json(void *data, void *request, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    assert_ptr_equal(request, data);
    record(data, "json", status, text);
    free(text);
    json_decref(body);
}

static void reply_error(void *data, void *request, int status, const char *message)
{
    assert_ptr_equal(request, data);
    record(data, "error", status, message);
}

static void reply_text(void *data, void *request, int status, const char *extra_headers,
                       const char *body, size_t body_len)
{
    struct fixture *f = data;
    assert_ptr_equal(request, data);
    assert_int_equal(strlen(body), body_len);
    record(f, "text", status, body);
    snprintf(f->reply_headers, sizeof f->reply_headers, "%s", extra_headers ? extra_headers : "");
}

static const struct tandem_bcp_reply_ops reply_ops = {reply_json, reply_error, reply_text};

static struct tandem_bcp_reply reply_of(struct fixture *f)
{
    return (struct tandem_bcp_reply){.ops = &reply_ops, .data = f, .request = f};
}

static int replied(void *arg)
{
    struct fixture *f = arg;
    return f->replies > 0;
}

static int replied_twice(void *arg)
{
    struct fixture *f = arg;
    return f->replies > 1;
}

static void test_relay_refusals(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    bcp_start(f);
    tandem_bcp_relay_to_leader(&f->bcp, &reply, "/v1/bcp/invoke", "{}", false);
    assert_int_equal(f->replies, 1);
    assert_string_equal(f->reply_kind, "text"); /* no leader known */
    assert_int_equal(f->reply_status, 503);
    assert_string_equal(f->reply_headers, "Retry-After: 1\r\n");
    assert_string_equal(f->reply_body, "{\"error\":\"no leader\",\"leader\":null}");
    f->bcp.fenced = true;
    tandem_bcp_relay_to_leader(&f->bcp, &reply, "/v1/bcp/invoke", "{}", false);
    assert_int_equal(f->replies, 2);
    assert_string_equal(f->reply_kind, "error");
    assert_int_equal(f->reply_status, 503);
    assert_string_equal(f->reply_body,
                        "this node is fenced: re-seed it with tandemctl member rejoin");
}

/* Makes the peer the known leader answering status and body, starts the runtime, relays an
 * invoke there and waits for the reply. */
static void relay_invoke(struct fixture *f, const struct tandem_bcp_reply *reply, int status,
                         const char *body)
{
    f->raft.raft.follower_state.current_leader.id = PEER_ID;
    f->raft.raft.follower_state.current_leader.address = f->peer_address;
    f->peer.status = status;
    snprintf(f->peer.body, sizeof f->peer.body, "%s", body);
    bcp_start(f);
    tandem_bcp_relay_to_leader(&f->bcp, reply, "/v1/bcp/invoke", "{\"site\":\"east\"}", false);
    assert_true(harness_run_until(&f->h, replied, f));
    assert_string_equal(f->peer.last_action, "/v1/bcp/invoke");
}

static void leader_forget(struct fixture *f)
{
    f->raft.raft.follower_state.current_leader.id = 0;
    f->raft.raft.follower_state.current_leader.address = NULL;
}

/* With a leader known, the relay carries the request there and its answer back as it is. */
static void test_relay_to_the_leader(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    relay_invoke(f, &reply, 409, "{\"error\":\"site east is already invoked\"}");
    assert_string_equal(f->reply_kind, "text");
    assert_int_equal(f->reply_status, 409);
    assert_string_equal(f->reply_body, "{\"error\":\"site east is already invoked\"}");
    /* a request another node relayed already is not relayed again */
    f->replies = 0;
    tandem_bcp_relay_to_leader(&f->bcp, &reply, "/v1/bcp/invoke", "{}", true);
    assert_int_equal(f->replies, 1);
    assert_int_equal(f->reply_status, 503);
    leader_forget(f);
}

/* A leader (or something at its URL) answering a status outside 100..599 gets a 502 naming it,
 * not a relayed answer nor an abort: the status comes from the wire. */
static void test_relay_odd_status(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    relay_invoke(f, &reply, 600, "{}");
    assert_string_equal(f->reply_kind, "error");
    assert_int_equal(f->reply_status, 502);
    assert_non_null(strstr(f->reply_body, "HTTP status 600"));
    leader_forget(f);
}

/* The takeover never completes here (no leader): 202 once wait_ms has passed. An invoke's
 * answer counts the jobs it moved away as "jobs_moved", a revoke's those it returned as
 * "jobs_returned", never the other name. */
static void test_wait_answers_202_at_the_bound(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    bcp_start(f);
    uv_update_time(&f->h.loop);
    uint64_t started = uv_now(&f->h.loop);
    tandem_bcp_wait_start(&f->bcp, &reply, TANDEM_BCP_WAIT_INVOKE, "east", false, 200, 4);
    assert_true(harness_run_until(&f->h, replied, f));
    assert_true(uv_now(&f->h.loop) - started >= 200);
    assert_int_equal(f->replies, 1);
    assert_int_equal(f->reply_status, 202);
    assert_non_null(strstr(f->reply_body, "\"complete\":false"));
    assert_non_null(strstr(f->reply_body, "\"jobs_moved\":4"));
    assert_null(strstr(f->reply_body, "jobs_returned"));
    assert_non_null(strstr(f->reply_body, "\"leader\":null"));
    assert_non_null(strstr(f->reply_body, "invoke recorded; the site controller is still"));
    tandem_bcp_wait_start(&f->bcp, &reply, TANDEM_BCP_WAIT_REVOKE, "east", false, 100, 3);
    assert_true(harness_run_until(&f->h, replied_twice, f));
    assert_int_equal(f->reply_status, 202);
    assert_non_null(strstr(f->reply_body, "\"jobs_returned\":3"));
    assert_null(strstr(f->reply_body, "jobs_moved"));
}

/* A node that stops answers its waits at once rather than holding them. */
static void test_wait_ends_when_the_runtime_closes(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    bcp_start(f);
    tandem_bcp_wait_start(&f->bcp, &reply, TANDEM_BCP_WAIT_REVOKE, "east", true, 60000, 0);
    harness_run_for(&f->h, 100);
    assert_int_equal(f->replies, 0);
    f->started = false;
    tandem_bcp_close(&f->bcp, bcp_closed_cb);
    assert_true(harness_run_until(&f->h, replied, f));
    assert_int_equal(f->reply_status, 202);
    assert_non_null(strstr(f->reply_body, "revoke recorded; the site's nodes are still"));
    assert_true(harness_run_until(&f->h, bcp_closed, f));
}

static void test_rejoin_refusals(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    bcp_start(f);
    tandem_bcp_rejoin_start(&f->bcp, &reply, "ghost", NULL);
    assert_int_equal(f->reply_status, 404);
    assert_string_equal(f->reply_body,
                        "no member named ghost (not in the configuration, no home record)");
    tandem_bcp_rejoin_start(&f->bcp, &reply, "self-1", NULL);
    assert_int_equal(f->reply_status, 409);
    assert_string_equal(f->reply_body, "self-1 is the leader: transfer leadership first");
    /* this node does not lead: raft refuses to remove the member, nothing else happens */
    tandem_bcp_rejoin_start(&f->bcp, &reply, "peer-2", NULL);
    assert_int_equal(f->replies, 3);
    assert_int_equal(f->reply_status, 503);
    assert_non_null(strstr(f->reply_body, "rejoin peer-2: removing it failed: "));
    harness_run_for(&f->h, 50);
    assert_string_equal(f->peer.last_action, ""); /* only probes reached it */
}

static void drill(struct fixture *f, const char *body_text)
{
    struct tandem_bcp_reply reply = reply_of(f);
    json_t *body = json_loads(body_text, 0, NULL);
    assert_non_null(body);
    tandem_bcp_drill_start(&f->bcp, &reply, body);
    json_decref(body);
}

/* A site table by hand: east and west, east in `state` since 2023-11-14T22:13:20.250Z by `by`. */
static void table_of(struct tandem_site_table *t, int east_state, const char *by)
{
    memset(t, 0, sizeof *t);
    t->n_sites = 2;
    snprintf(t->sites[0].name, sizeof t->sites[0].name, "east");
    t->sites[0].state = east_state;
    t->sites[0].epoch = 2;
    t->sites[0].since_ms = 1700000000250;
    snprintf(t->sites[0].by, sizeof t->sites[0].by, "%s", by);
    snprintf(t->sites[1].name, sizeof t->sites[1].name, "west");
    t->sites[1].epoch = 1;
}

/* An invoke refused because a drill holds the other site names the drill and says to wait; an
 * invoked site's time is RFC 3339, never raw milliseconds. */
static void test_invoke_refusals_name_the_drill(void **state)
{
    struct fixture *f = *state;
    struct tandem_bcp_reply reply = reply_of(f);
    struct tandem_site_table t;
    bcp_start(f);
    table_of(&t, TANDEM_SITE_INVOKED, "drill:d1700000000000");
    assert_int_equal(tandem_bcp_invoke_precheck(&f->bcp, &t, "west", &reply), -1);
    assert_int_equal(f->reply_status, 409);
    assert_string_equal(f->reply_body,
                        "site east is held by drill d1700000000000 (invoked since "
                        "2023-11-14T22:13:20.250Z), so no other site can take over from west: "
                        "wait for the drill to end, it revokes east itself (tandemctl bcp drills "
                        "shows its report)");
    assert_int_equal(tandem_bcp_invoke_precheck(&f->bcp, &t, "east", &reply), -1);
    assert_string_equal(f->reply_body,
                        "site east is held by drill d1700000000000 (since "
                        "2023-11-14T22:13:20.250Z): wait for the drill to end, it revokes the "
                        "site itself (tandemctl bcp drills shows its report)");
    table_of(&t, TANDEM_SITE_RECOVERING, "drill:d1700000000000");
    assert_int_equal(tandem_bcp_invoke_precheck(&f->bcp, &t, "west", &reply), -1);
    assert_non_null(strstr(f->reply_body, "held by drill d1700000000000 (recovering since "));
    table_of(&t, TANDEM_SITE_INVOKED, "operator");
    assert_int_equal(tandem_bcp_invoke_precheck(&f->bcp, &t, "east", &reply), -1);
    assert_string_equal(f->reply_body,
                        "site east is already invoked (since 2023-11-14T22:13:20.250Z, by "
                        "operator)");
    assert_int_equal(tandem_bcp_invoke_precheck(&f->bcp, &t, "west", &reply), -1);
    assert_non_null(strstr(f->reply_body, "no voter in another active site could take over"));
}

/* Refused before anything changes: a bad body, a site of the configuration the (empty) site
 * table lacks (not registered yet: try again), and a site of no member (unknown). The refused
 * drill closes its timers: the loop ends empty (teardown). */
#define WEST_NOT_REGISTERED                                                                        \
    "site west is not registered yet (the site controller registers every site of the "            \
    "configuration after an election): try again in a moment"

static void test_drill_refusals(void **state)
{
    struct fixture *f = *state;
    bcp_start(f);
    drill(f, "{\"site\":\"no such site!\"}");
    assert_int_equal(f->reply_status, 400);
    drill(f, "{\"site\":\"west\",\"rate\":100000}");
    assert_int_equal(f->reply_status, 400);
    assert_string_equal(f->reply_body, "body must be {\"site\", \"dry_run\"?, \"rate\"? (1-500), "
                                       "\"reason\"? (up to 200 bytes)}");
    char body[400];
    snprintf(body, sizeof body, "{\"site\":\"west\",\"reason\":\"%0201d\"}", 0); /* 201 bytes */
    drill(f, body);
    assert_int_equal(f->reply_status, 400);
    drill(f, "{\"site\":\"west\"}");
    assert_int_equal(f->replies, 4);
    assert_int_equal(f->reply_status, 409);
    assert_string_equal(f->reply_body, "drill west: " WEST_NOT_REGISTERED);
    drill(f, "{\"site\":\"west\"}"); /* the refused drill is no longer the active one */
    assert_int_equal(f->reply_status, 409);
    assert_string_equal(f->reply_body, "drill west: " WEST_NOT_REGISTERED);
    drill(f, "{\"site\":\"north\"}");
    assert_int_equal(f->reply_status, 409);
    assert_string_equal(f->reply_body, "drill north: site north is unknown");
    /* The dry run says the same, so tandemctl can tell before it announces a drill. */
    drill(f, "{\"site\":\"west\",\"dry_run\":true}");
    assert_int_equal(f->reply_status, 200);
    assert_non_null(strstr(f->reply_body, "\"refusal\":\"" WEST_NOT_REGISTERED "\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_epoch_from_data_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_marker_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_mode_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_at_our_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_epoch_fences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_cluster_does_not_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reachability_follows_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_peer_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_to_the_leader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_odd_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_answers_202_at_the_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_ends_when_the_runtime_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejoin_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drill_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invoke_refusals_name_the_drill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raft_unreachable_while_api_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_waits_for_the_other_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_operator_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_newer_epoch_fences, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
