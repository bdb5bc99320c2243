/* Fuzz target: the API's JSON body decoders and query checks (node/api/) behind the real
 * router and HTTP server, on a stand-in node that leads (raft never runs, as in
 * tests/unit/node/test_router.c). Each write a route proposes is applied at once through the
 * command table to the node's LMDB store and answered with its result, so a decoded command
 * also meets its apply; reads are served from the same store. The store is fresh for every
 * input, with the sites east, west and witness registered. Input: the client's chunk size (one
 * byte, 0 = all at once), then one connection's bytes. Not reached: /v1/node/reseed and
 * /v1/node/recover (they replace the node's state and re-execute it), /v1/events (a stream); they
 * answer 404 here. */
#include <string.h>

#include "fuzz.h"
#include "http_client.h"
#include "node/api/api.h"
#include "node/node.h"
#include "replication/bcp/sites.h"
#include "replication/commands.h"

#define STORE_MAP_BYTES (16u * 1024u * 1024u)

static uv_loop_t loop;
static uv_timer_t tick;
static uv_check_t propose_check;
static struct tandem_config config;
static struct tandem_node node;
static int port;
static const struct tandem_apply_ops apply_ops = {.site_invoked = tandem_sites_invoked};

/* main.c's, which is not in the library. */
void tandem_node_fatal(struct tandem_node *n, const char *what)
{
    (void)n;
    fprintf(stderr, "fuzz_api: tandem_node_fatal: %s\n", what);
    abort();
}

void tandem_node_stop(struct tandem_node *n, int exit_code)
{
    (void)n;
    fprintf(stderr, "fuzz_api: tandem_node_stop(%d) from a request\n", exit_code);
    abort();
}

/* raft never started here: the membership calls a route makes are refused as on a follower
 * (linked with -Wl,--wrap, tests/fuzz/CMakeLists.txt). */
int __wrap_raft_add(struct raft *r, struct raft_change *req, raft_id id, const char *address,
                    raft_change_cb cb)
{
    (void)r, (void)req, (void)id, (void)address, (void)cb;
    return RAFT_NOTLEADER;
}

int __wrap_raft_assign(struct raft *r, struct raft_change *req, raft_id id, int role,
                       raft_change_cb cb)
{
    (void)r, (void)req, (void)id, (void)role, (void)cb;
    return RAFT_NOTLEADER;
}

int __wrap_raft_remove(struct raft *r, struct raft_change *req, raft_id id, raft_change_cb cb)
{
    (void)r, (void)req, (void)id, (void)cb;
    return RAFT_NOTLEADER;
}

int __wrap_raft_transfer(struct raft *r, struct raft_transfer *req, raft_id id, raft_transfer_cb cb)
{
    (void)r, (void)req, (void)id, (void)cb;
    return RAFT_NOTLEADER;
}

static void bcp_stop(void *data, bool reexec)
{
    (void)data;
    fprintf(stderr, "fuzz_api: the BCP runtime stops the node (reexec %d)\n", reexec);
    abort();
}

static void handler(struct tandem_http_server *s, struct tandem_http_request *r)
{
    if (strcmp(r->path, "/v1/node/reseed") == 0 || strcmp(r->path, "/v1/node/recover") == 0 ||
        strcmp(r->path, "/v1/events") == 0) {
        tandem_http_respond_error(r, 404, "not fuzzed");
        return;
    }
    tandem_routes_handle(s, r);
}

/* What the state machine checks after every apply (replication/fsm.c, with invariants on):
 * every index matches its records. */
static void indexes_check(MDB_txn *txn)
{
    if (tandem_job_index_check(&node.store, txn) != 0 ||
        tandem_box_index_check(&node.store, txn) != 0 ||
        tandem_trace_index_check(&node.store, txn) != 0) {
        fprintf(stderr, "fuzz_api: an index broke: %s\n", node.store.errmsg);
        abort();
    }
}

/* The leader's clock, fixed: proposals and applies agree on it, and inputs replay alike. */
static int64_t fixed_now_ms(void)
{
    return 1767225600000; /* 2026-01-01T00:00:00Z */
}

/* Applies command as the next entry (what raft and the state machine do for a committed one);
 * returns 0, or -1 when the store failed (a full map: a node would stop). */
static int apply_next(const Tandem__Command *command, struct tandem_result *result)
{
    MDB_txn *txn;
    if (tandem_store_write_txn(&node.store, &txn) != 0) {
        tandem_node_fatal(&node, node.store.errmsg);
    }
    struct tandem_apply_ctx ctx = {.store = &node.store,
                                   .txn = txn,
                                   .index = node.store.applied_index + 1,
                                   .now_ms = fixed_now_ms(),
                                   .proposer_id = 1,
                                   .ops = &apply_ops};
    if (tandem_command_apply(&ctx, command, result) != 0) {
        tandem_store_abort(&node.store);
        return -1;
    }
    uint8_t digest[TANDEM_DIGEST_LEN] = {0};
    tandem_store_set_applied(&node.store, ctx.index, digest);
    indexes_check(txn);
    return 0;
}

/* The proposer's and raft's part: every queued write is applied (one entry each) and answered
 * with its result; queued reads find everything applied. */
static void propose_cb(uv_check_t *check)
{
    struct tandem_proposer *p = &node.proposer;
    (void)check;
    /* The node's flush check proposes the audit records first (node/node.c); what it could not
     * propose (this node is no raft leader) is dropped so that inputs do not pile records up. */
    tandem_audit_flush(&node);
    tandem_audit_fail_queued(&node, RAFT_SHUTDOWN);
    while (p->queue_head != NULL) {
        struct tandem_write *w = p->queue_head;
        p->queue_head = w->next;
        if (p->queue_head == NULL) {
            p->queue_tail = NULL;
        }
        p->queued--;
        p->pending--;
        struct tandem_result result = {0};
        if (apply_next(w->command, &result) != 0) {
            w->cb(w, RAFT_NOTLEADER, NULL);
        } else {
            w->cb(w, 0, &result);
        }
        free(result.body);
    }
    struct tandem_read *r = p->reads_head;
    p->reads_head = p->reads_tail = NULL;
    while (r != NULL) {
        struct tandem_read *next = r->next;
        r->cb(r, 0);
        r = next;
    }
}

/* The sites a cluster registers at its start (east, west and a witness), so that the BCP,
 * capacity and rebalance routes find them. */
static void sites_register(void)
{
    static const char *const sites[] = {"east", "west", "witness"};
    for (unsigned i = 0; i < 3; i++) {
        Tandem__SiteUpdate update = TANDEM__SITE_UPDATE__INIT;
        Tandem__Command command = TANDEM__COMMAND__INIT;
        struct tandem_result result = {0};
        update.action = TANDEM__SITE_UPDATE__ACTION__REGISTER;
        update.site = (char *)sites[i];
        update.by = "config";
        update.witness = i == 2;
        command.body_case = TANDEM__COMMAND__BODY_SITE_UPDATE;
        command.site_update = &update;
        if (apply_next(&command, &result) != 0 || result.status != 200) {
            fprintf(stderr, "fuzz_api: cannot register site %s: %s\n", sites[i],
                    result.body ? result.body : "");
            abort();
        }
        free(result.body);
    }
    if (tandem_store_commit(&node.store) != 0) {
        tandem_node_fatal(&node, node.store.errmsg);
    }
}

/* Every input starts from an empty store: each database emptied in one committed write. */
static void store_empty(void)
{
    MDB_txn *txn;
    if (tandem_store_write_txn(&node.store, &txn) != 0) {
        tandem_node_fatal(&node, node.store.errmsg);
    }
    for (int i = 0; i < TANDEM_DB_COUNT; i++) {
        if (mdb_drop(txn, node.store.dbi[i], 0) != 0) {
            tandem_node_fatal(&node, "mdb_drop");
        }
    }
    if (tandem_store_commit(&node.store) != 0) {
        tandem_node_fatal(&node, node.store.errmsg);
    }
    tandem_store_abort(&node.store); /* reloads the applied index: 0 */
}

static void node_start_once(void)
{
    if (port != 0) {
        return;
    }
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_store_open(&node.store, fuzz_tmp_dir(), STORE_MAP_BYTES) != 0) {
        fprintf(stderr, "fuzz_api: %s\n", node.store.errmsg);
        abort();
    }
    tandem_config_defaults(&config);
    config.insecure = true;    /* a plaintext server: the peer is anonymous and allowed */
    config.rate_limit_rps = 0; /* the fuzzer asks faster than any client may */
    config.forward_connections = 1;
    config.pending_requests_max = 64;
    node.loop = &loop;
    node.config = &config;
    snprintf(node.self.name, sizeof node.self.name, "east-1");
    snprintf(node.self.site, sizeof node.self.site, "east");
    node.raft.raft.state = RAFT_LEADER;
    struct tandem_bcp_env env = {.loop = &loop,
                                 .config = &config,
                                 .raft = &node.raft,
                                 .store = &node.store,
                                 .proposer = &node.proposer,
                                 .self = &node.self,
                                 .pool_reads = &node.pool_reads,
                                 .stop = bcp_stop};
    tandem_bcp_init(&node.bcp, &env); /* not started: no probes, no site controller */
    node.bcp.quarantined = false;     /* as once released: writes are taken */
    struct tandem_proposer_limits limits = {
        .batch_commands_max = 64, .batch_bytes_max = 1u << 20, .pending_max = 64};
    tandem_proposer_init(&node.proposer, &node.raft.raft, 1, &limits);
    node.proposer.now_ms = fixed_now_ms;
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0 ||
        uv_check_init(&loop, &propose_check) != 0) {
        abort();
    }
    /* Reads of the whole state (plans, digests, dry runs) run on the thread pool, as in tandemd. */
    tandem_pool_reads_init(&node.pool_reads, &loop, &node.store);
    tandem_router_init(&node);
    if (tandem_http_server_init(&node.http, &loop, NULL, handler, &node) != 0 ||
        tandem_http_server_listen(&node.http, "127.0.0.1", 0, errmsg) != 0) {
        fprintf(stderr, "fuzz_api: cannot start the server\n");
        abort();
    }
    uv_check_start(&propose_check, propose_cb);
    port = tandem_http_server_port(&node.http);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_client client;
    if (size == 0) {
        return 0;
    }
    node_start_once();
    store_empty();
    sites_register();
    fuzz_client_start(&client, &loop, port, data + 1, size - 1, data[0]);
    fuzz_run_until(&loop, &tick, fuzz_client_closed, &client, "the API exchange");
    return 0;
}
