/* The audit trail's routes: the records (GET /v1/audit, one by seq), the chain's verification,
 * the periodic review of failures, and the route followers send their records to the leader by. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/api/perms.h"
#include "node/audit.h"
#include "node/audit_check.h"
#include "node/node.h"
#include "replication/domain/audit.h"
#include "storage/clock.h"
#include "storage/domain_codec.h"

#define AUDIT_LIST_LIMIT_DEFAULT  100
#define AUDIT_FAILURES_SCAN_MAX   100000 /* records one review examines */
#define AUDIT_FAILURES_GROUPS_MAX 1000   /* actor/source groups one review lists */

/* ?since=<RFC 3339> into *since_ms (0 when absent). Returns 0, or -1 after answering 400. */
static int since_param(struct tandem_node *node, struct tandem_http_request *r, int64_t *since_ms)
{
    char text[64];
    int rv = tandem_http_query_get(r->query, "since", text, sizeof text);
    *since_ms = 0;
    if (rv == 0) {
        return 0;
    }
    if (rv < 0 || tandem_rfc3339_parse(text, since_ms) != 0) {
        tandem_route_error(node, r, 400, "since must be an RFC 3339 time (2026-01-31T09:00:00Z)");
        return -1;
    }
    return 0;
}

/* GET /v1/audit[?after_seq=&limit=&since=]: a page; with since, the records before it are
 * skipped one by one (the trail is in seq order), so that page is read on the thread pool. */
struct list_read {
    uint64_t after, limit, next;
    int64_t since_ms;
    json_t *records; /* owned */
    int rv;          /* LMDB's */
};

static void list_read_free(void *arg)
{
    struct list_read *q = arg;
    json_decref(q->records);
    free(q);
}

static int list_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct list_read *q = arg;
    q->records = json_array();
    if (q->records == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_NOMEM, "out of memory");
    }
    q->rv = tandem_audit_list(txn, store, q->after, q->since_ms, (unsigned)q->limit, q->records,
                              &q->next);
    return q->rv == 0 ? 0 : tandem_error_from_mdb(q->rv, store->errmsg, "audit records");
}

static void list_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg, int rv,
                        const char *errmsg)
{
    struct list_read *q = arg;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    json_t *records = q->records;
    q->records = NULL;
    tandem_route_jansson(node, r, 200,
                         json_pack("{s:o,s:o}", "records", records, "next_after_seq",
                                   q->next == 0 ? json_null() : json_integer((json_int_t)q->next)));
}

/* A page without since: at most limit records from after_seq, read on the loop. */
static void list_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct list_read *q = arg;
    MDB_txn *txn;
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    int rv = list_work(&node->store, txn, q);
    mdb_txn_abort(txn);
    list_answer(node, r, q, rv, node->store.errmsg);
}

static void route_audit_list(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    (void)param;
    struct list_read *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    q->limit = AUDIT_LIST_LIMIT_DEFAULT;
    if (tandem_route_query_number(r, "after_seq", 0, UINT64_MAX, &q->after) < 0) {
        tandem_route_error(node, r, 400, "after_seq must be a record number");
    } else if (tandem_route_query_number(r, "limit", 1, TANDEM_AUDIT_LIST_LIMIT_MAX, &q->limit) <
               0) {
        tandem_route_error(node, r, 400, "limit must be 1 to %u", TANDEM_AUDIT_LIST_LIMIT_MAX);
    } else if (since_param(node, r, &q->since_ms) == 0) {
        if (q->since_ms != 0) {
            tandem_route_read_pooled(node, r, list_work, list_answer, q, list_read_free);
        } else {
            tandem_route_read(node, r, list_serve, q, list_read_free);
        }
        return;
    }
    list_read_free(q);
}

static void show_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    const char *param = arg;
    char *end = NULL;
    MDB_txn *txn;
    Tandem__AuditRecord *record;
    unsigned long long seq = strtoull(param, &end, 10);
    if (param[0] < '0' || param[0] > '9' || *end != '\0' || seq == 0) {
        tandem_route_error(node, r, 400, "a record number (1 or more) is expected, not \"%s\"",
                           param);
        return;
    }
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    int rv = tandem_audit_get(txn, &node->store, seq, &record);
    mdb_txn_abort(txn);
    if (rv != 0) {
        tandem_route_error(node, r, 500, "audit record: %s", mdb_strerror(rv));
    } else if (record == NULL) {
        tandem_route_error(node, r, 404, "no audit record %llu (never written, or purged)", seq);
    } else {
        tandem_route_jansson(node, r, 200, tandem_audit_record_json(record));
        tandem__audit_record__free_unpacked(record, NULL);
    }
}

static void route_audit_show(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    /* param lives in the router's frame: only a local read may use it after this returns. */
    char *copy = strdup(param);
    if (copy == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    tandem_route_read(node, r, show_serve, copy, free);
}

static json_t *link_json(const struct tandem_audit_link *link)
{
    char hex[2 * TANDEM_AUDIT_HASH_LEN + 1];
    tandem_digest_hex(link->hash, hex);
    return json_pack("{s:I,s:s}", "seq", (json_int_t)link->seq, "hash", hex);
}

/* GET /v1/audit/verify: walks the whole chain, on the thread pool. */
struct verify_read {
    struct tandem_audit_verdict verdict;
    uint64_t duration_ns;
};

static int verify_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct verify_read *q = arg;
    uint64_t started_ns = uv_hrtime();
    int rv = tandem_audit_verify(txn, store, &q->verdict);
    q->duration_ns = uv_hrtime() - started_ns;
    return rv == 0 ? 0 : tandem_error_from_mdb(rv, store->errmsg, "audit verify");
}

static void verify_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg,
                          int rv, const char *errmsg)
{
    struct verify_read *q = arg;
    const struct tandem_audit_verdict *v = &q->verdict;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    /* The freshest verdict is the one /metrics shows (node/audit_check.h). */
    tandem_audit_check_record(&node->audit_check, v, tandem_wall_ms(), q->duration_ns);
    json_t *body =
        json_pack("{s:b,s:I,s:o,s:o,s:s}", "ok", v->ok, "records", (json_int_t)v->records, "head",
                  link_json(&v->head), "anchor", link_json(&v->anchor), "node", node->self.name);
    if (!v->ok) {
        json_object_set_new(body, "broken_at", json_integer((json_int_t)v->broken_at));
        json_object_set_new(body, "reason", json_string(v->reason));
    }
    tandem_route_jansson(node, r, 200, body);
}

static void route_audit_verify(struct tandem_node *node, struct tandem_http_request *r,
                               const char *param)
{
    (void)param;
    struct verify_read *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    tandem_route_read_pooled(node, r, verify_work, verify_answer, q, free);
}

static bool is_failure(json_t *record)
{
    const char *action = json_string_value(json_object_get(record, "action"));
    json_int_t status = json_integer_value(json_object_get(record, "status"));
    return strcmp(action, "login_failed") == 0 || strcmp(action, "denied") == 0 || status == 401 ||
           status == 403;
}

/* Adds one failure to its actor/source group in groups (an object keyed by actor and source). */
static void failure_count(json_t *groups, json_t *record)
{
    const char *actor = json_string_value(json_object_get(record, "actor"));
    const char *source = json_string_value(json_object_get(record, "source"));
    const char *action = json_string_value(json_object_get(record, "action"));
    json_t *time = json_object_get(record, "time");
    char key[2 * TANDEM_AUDIT_TEXT_LEN_MAX + 2];
    snprintf(key, sizeof key, "%s\x1f%s", actor, source);
    json_t *g = json_object_get(groups, key);
    if (g == NULL) {
        if (json_object_size(groups) >= AUDIT_FAILURES_GROUPS_MAX) {
            return;
        }
        g = json_pack("{s:s,s:s,s:i,s:O,s:O,s:{}}", "actor", actor[0] ? actor : "anonymous",
                      "source", source, "count", 0, "first", time, "last", time, "actions");
        json_object_set_new(groups, key, g);
    }
    json_object_set_new(g, "count",
                        json_integer(json_integer_value(json_object_get(g, "count")) + 1));
    json_object_set(g, "last", time);
    json_t *actions = json_object_get(g, "actions");
    json_int_t n = json_integer_value(json_object_get(actions, action));
    json_object_set_new(actions, action, json_integer(n + 1));
}

/* GET /v1/audit/failures[?since=]: up to AUDIT_FAILURES_SCAN_MAX records, on the thread pool. */
struct failures_read {
    int64_t since_ms;
    uint64_t after, scanned;
    json_t *groups; /* owned: failures by actor and source */
};

static void failures_read_free(void *arg)
{
    struct failures_read *q = arg;
    json_decref(q->groups);
    free(q);
}

static int failures_work(struct tandem_store *store, MDB_txn *txn, void *arg)
{
    struct failures_read *q = arg;
    int rv = 0;
    if ((q->groups = json_object()) == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_NOMEM, "out of memory");
    }
    do {
        json_t *page = json_array(), *record;
        size_t i;
        rv = tandem_audit_list(txn, store, q->after, q->since_ms, TANDEM_AUDIT_LIST_LIMIT_MAX, page,
                               &q->after);
        json_array_foreach(page, i, record)
        {
            if (is_failure(record)) {
                failure_count(q->groups, record);
            }
        }
        q->scanned += json_array_size(page);
        json_decref(page);
    } while (rv == 0 && q->after != 0 && q->scanned < AUDIT_FAILURES_SCAN_MAX);
    return rv == 0 ? 0 : tandem_error_from_mdb(rv, store->errmsg, "audit records");
}

static void failures_answer(struct tandem_node *node, struct tandem_http_request *r, void *arg,
                            int rv, const char *errmsg)
{
    struct failures_read *q = arg;
    if (rv != 0) {
        tandem_route_error(node, r, 500, "%s", errmsg);
        return;
    }
    json_t *list = json_array(), *g;
    const char *key;
    json_object_foreach(q->groups, key, g)
    {
        json_array_append(list, g);
    }
    tandem_route_jansson(node, r, 200,
                         json_pack("{s:o,s:I,s:b}", "failures", list, "scanned",
                                   (json_int_t)q->scanned, "complete", q->after == 0));
}

static void route_audit_failures(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *param)
{
    (void)param;
    struct failures_read *q = calloc(1, sizeof *q);
    if (q == NULL) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    if (since_param(node, r, &q->since_ms) != 0) {
        free(q);
        return;
    }
    tandem_route_read_pooled(node, r, failures_work, failures_answer, q, failures_read_free);
}

/* A follower's records: answered once they are applied (200) or could not be (503). */
static void forwarded_cb(void *arg, int status)
{
    struct tandem_http_request *r = arg;
    struct tandem_node *node = r->server->data;
    if (status == 0) {
        tandem_route_json(node, r, 200, NULL, "{\"ok\":true}");
    } else {
        tandem_route_json(node, r, 503, "Retry-After: 1\r\n",
                          "{\"error\":\"the audit records could not be committed\"}");
    }
}

static void route_node_audit(struct tandem_node *node, struct tandem_http_request *r,
                             const char *param)
{
    json_error_t jerr;
    char why[TANDEM_ERRMSG_SIZE];
    (void)param;
    json_t *body = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!json_is_object(body)) {
        json_decref(body);
        tandem_route_error(node, r, 400, "the body must be a JSON object {\"records\":[...]}");
        return;
    }
    int rv = tandem_audit_forwarded(node, json_object_get(body, "records"), forwarded_cb, r, why);
    json_decref(body);
    if (rv != 0) {
        tandem_route_error(node, r, strstr(why, "full") != NULL ? 503 : 400, "%s", why);
    }
}

/* X(id, method, pattern, flags, permission, handler) */
#define AUDIT_ROUTES(X)                                                                            \
    X(audit_list, HTTP_GET, "/v1/audit", TANDEM_ROUTE_READ, TANDEM_PERM_AUDIT, route_audit_list)   \
    X(audit_verify, HTTP_GET, "/v1/audit/verify", TANDEM_ROUTE_READ, TANDEM_PERM_AUDIT,            \
      route_audit_verify)                                                                          \
    X(audit_failures, HTTP_GET, "/v1/audit/failures", TANDEM_ROUTE_READ, TANDEM_PERM_AUDIT,        \
      route_audit_failures)                                                                        \
    X(audit_show, HTTP_GET, "/v1/audit/records/", TANDEM_ROUTE_READ | TANDEM_ROUTE_PREFIX,         \
      TANDEM_PERM_AUDIT, route_audit_show)                                                         \
    X(node_audit, HTTP_POST, "/v1/node/audit", TANDEM_ROUTE_WRITE, TANDEM_PERM_NODE,               \
      route_node_audit)

TANDEM_ROUTE_TABLE(tandem_audit_route_table, AUDIT_ROUTES);
