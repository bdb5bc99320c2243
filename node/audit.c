/* Audit records from the node: built from a request's principal and address, queued (bounded),
 * proposed once per loop turn as one AuditAppend through the proposer, and the callbacks of
 * personal-data reads run once their record is applied. */
#include "node/audit.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/log.h"
#include "node/node.h"
#include "replication/domain/audit.h"
#include "storage/assert.h"

#define AUDIT_OFFLINE_MAP_BYTES ((size_t)64 << 20) /* LMDB grows it to the file's size */

struct tandem_audit_item {
    Tandem__AuditRecord record; /* strings owned */
    void (*committed)(void *arg, int status);
    void *arg;
    struct tandem_audit_item *next;
};

/* A follower's records on their way to the leader (POST /v1/node/audit). */
struct audit_forward {
    struct tandem_httpc_request req;
    struct tandem_audit_item *items;
    unsigned n;
    struct tandem_node *node;
};

/* One proposed AuditAppend and the items it carries. */
struct audit_batch {
    struct tandem_write write;
    Tandem__Command command;
    Tandem__AuditAppend append;
    Tandem__AuditRecord **records; /* borrowed from items */
    struct tandem_audit_item *items;
    struct tandem_node *node;
};

static char *text_dup(const char *s, size_t max)
{
    char *d = strndup(s == NULL ? "" : s, max);
    tandem_assert(d != NULL);
    return d;
}

static void item_free(struct tandem_audit_item *item)
{
    Tandem__AuditRecord *r = &item->record;
    free(r->actor);
    free(r->source);
    free(r->node);
    free(r->action);
    free(r->object);
    free(r->detail);
    free(item);
}

static void principal_fill(Tandem__AuditRecord *rec, const struct tandem_http_request *r)
{
    char source[TANDEM_HTTP_SOURCE_BYTES_MAX] = "";
    const char *actor = "";
    if (r != NULL) {
        actor = r->principal.name;
        rec->actor_kind = r->principal.kind == TANDEM_PRINCIPAL_USER   ? TANDEM_AUDIT_USER
                          : r->principal.kind == TANDEM_PRINCIPAL_NODE ? TANDEM_AUDIT_NODE
                                                                       : TANDEM_AUDIT_ANONYMOUS;
        rec->via = (uint32_t)r->principal.via;
        tandem_http_request_source(r, source, sizeof source);
    }
    rec->actor = text_dup(actor, TANDEM_AUDIT_TEXT_LEN_MAX);
    rec->source = text_dup(source, TANDEM_AUDIT_TEXT_LEN_MAX);
}

static struct tandem_audit_item *item_new(struct tandem_node *node,
                                          const struct tandem_http_request *r, const char *action,
                                          const char *object, int status, const char *detail)
{
    struct tandem_audit_item *item = calloc(1, sizeof *item);
    tandem_assert(item != NULL);
    tandem__audit_record__init(&item->record);
    principal_fill(&item->record, r);
    item->record.node = text_dup(node->self.name, TANDEM_AUDIT_TEXT_LEN_MAX);
    item->record.action = text_dup(action != NULL && action[0] != '\0' ? action : "unknown",
                                   TANDEM_AUDIT_TEXT_LEN_MAX);
    item->record.object = text_dup(object, TANDEM_AUDIT_TEXT_LEN_MAX);
    item->record.status = status > 0 ? (uint32_t)status : 0;
    item->record.detail = text_dup(detail, TANDEM_AUDIT_DETAIL_LEN_MAX);
    return item;
}

void tandem_audit_anonymous(struct tandem_node *node, const struct tandem_http_request *r,
                            const char *action, const char *object, int status)
{
    struct tandem_audit *a = &node->audit;
    char source[TANDEM_AUDIT_SOURCE_BYTES], detail[96] = "";
    uint64_t now = uv_now(node->loop);
    struct tandem_audit_source *slot = NULL, *oldest = &a->anonymous[0];
    tandem_http_request_source(r, source, sizeof source);
    for (unsigned i = 0; i < TANDEM_AUDIT_ANONYMOUS_SOURCES && slot == NULL; i++) {
        struct tandem_audit_source *s = &a->anonymous[i];
        if (s->source[0] != '\0' && strcmp(s->source, source) == 0) {
            slot = s;
        } else if (oldest->source[0] != '\0' &&
                   (s->source[0] == '\0' || s->window_ms < oldest->window_ms)) {
            oldest = s; /* a free slot, else the least recently recorded source */
        }
    }
    if (slot != NULL && now < slot->window_ms + TANDEM_AUDIT_ANONYMOUS_WINDOW_MS) {
        slot->suppressed++; /* in the next record's count */
        return;
    }
    if (slot != NULL && slot->suppressed > 0) {
        snprintf(detail, sizeof detail, "{\"refused_before_unrecorded\":%llu}",
                 (unsigned long long)slot->suppressed);
    }
    if (slot == NULL) {
        slot = oldest; /* a forgotten source's suppressed count is lost: logged */
        if (slot->suppressed > 0) {
            tandem_log(TANDEM_LOG_WARN, "%llu anonymous refusals from %s not audited one by one",
                       (unsigned long long)slot->suppressed, slot->source);
        }
        snprintf(slot->source, sizeof slot->source, "%s", source);
    }
    slot->window_ms = now;
    slot->suppressed = 0;
    tandem_audit(node, r, action, object, status, detail[0] != '\0' ? detail : NULL);
}

bool tandem_audit_full(const struct tandem_node *node)
{
    return node->audit.queued >= TANDEM_AUDIT_QUEUE_MAX;
}

static void enqueue(struct tandem_node *node, struct tandem_audit_item *item)
{
    struct tandem_audit *a = &node->audit;
    if (tandem_audit_full(node)) {
        a->refused++;
        tandem_log(TANDEM_LOG_ERROR, "audit queue full (%u records): %s on %s not recorded",
                   TANDEM_AUDIT_QUEUE_MAX, item->record.action, item->record.object);
        if (item->committed != NULL) {
            item->next = a->refused_head; /* answered 503 at the next flush */
            a->refused_head = item;
        } else {
            item_free(item);
        }
        return;
    }
    item->next = NULL;
    if (a->tail != NULL) {
        a->tail->next = item;
    } else {
        a->head = item;
    }
    a->tail = item;
    a->queued++;
}

void tandem_audit(struct tandem_node *node, const struct tandem_http_request *r, const char *action,
                  const char *object, int status, const char *detail)
{
    enqueue(node, item_new(node, r, action, object, status, detail));
}

void tandem_audit_then(struct tandem_node *node, const struct tandem_http_request *r,
                       const char *action, const char *object,
                       void (*committed)(void *arg, int status), void *arg)
{
    struct tandem_audit_item *item = item_new(node, r, action, object, 200, NULL);
    item->committed = committed;
    item->arg = arg;
    enqueue(node, item);
}

/* Runs the callbacks of a list of items with status and frees them. */
static void items_finish(struct tandem_node *node, struct tandem_audit_item *item, int status)
{
    while (item != NULL) {
        struct tandem_audit_item *next = item->next;
        if (status == 0) {
            node->audit.recorded++;
        } else {
            node->audit.failed++;
        }
        if (item->committed != NULL) {
            item->committed(item->arg, status);
        }
        item_free(item);
        item = next;
    }
}

static void items_requeue(struct tandem_node *node, struct tandem_audit_item *items, unsigned n);

/* Records whose fate is unknown or that no leader took: a waiting read is refused now (status),
 * the others go back to the queue to be sent again (kept twice at worst, never lost), unless
 * the node is stopping. */
static void items_retry(struct tandem_node *node, struct tandem_audit_item *items, int status)
{
    struct tandem_audit_item *again = NULL, **tail = &again;
    unsigned n = 0;
    while (items != NULL) {
        struct tandem_audit_item *next = items->next;
        items->next = NULL;
        if (items->committed != NULL || node->stopping || status == RAFT_SHUTDOWN) {
            items_finish(node, items, status);
        } else {
            *tail = items;
            tail = &items->next;
            n++;
        }
        items = next;
    }
    if (again != NULL) {
        items_requeue(node, again, n);
    }
}

static void batch_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct audit_batch *b = w->data;
    if (status == 0 && result->status != 200) {
        tandem_log(TANDEM_LOG_ERROR, "audit append refused (%d): %s", result->status,
                   result->body != NULL ? result->body : "");
        status = result->status;
    } else if (status != 0) {
        tandem_log(TANDEM_LOG_WARN, "%zu audit records not known to be recorded (%s): sent again",
                   b->append.n_records, raft_strerror(status));
        items_retry(b->node, b->items, status);
        free(b->records);
        free(b);
        return;
    }
    items_finish(b->node, b->items, status);
    free(b->records);
    free(b);
}

/* Unlinks up to max queued items, oldest first; *n counts them. */
static struct tandem_audit_item *items_take(struct tandem_node *node, unsigned max, unsigned *n)
{
    struct tandem_audit *a = &node->audit;
    struct tandem_audit_item *first = a->head, *last = a->head;
    *n = a->queued < max ? a->queued : max;
    tandem_assert(*n > 0);
    for (unsigned i = 1; i < *n; i++) {
        last = last->next;
    }
    a->head = last->next;
    last->next = NULL;
    if (a->head == NULL) {
        a->tail = NULL;
    }
    a->queued -= *n;
    return first;
}

/* Puts n items taken by items_take back at the front of the queue. */
static void items_requeue(struct tandem_node *node, struct tandem_audit_item *items, unsigned n)
{
    struct tandem_audit *a = &node->audit;
    struct tandem_audit_item *last = items;
    while (last->next != NULL) {
        last = last->next;
    }
    last->next = a->head;
    a->head = items;
    if (a->tail == NULL) {
        a->tail = last;
    }
    a->queued += n;
}

/* Takes up to TANDEM_AUDIT_RECORDS_MAX queued items into one AuditAppend. */
static struct audit_batch *batch_take(struct tandem_node *node)
{
    unsigned n;
    struct audit_batch *b = calloc(1, sizeof *b);
    tandem_assert(b != NULL);
    b->node = node;
    b->items = items_take(node, TANDEM_AUDIT_RECORDS_MAX, &n);
    b->records = calloc(n, sizeof *b->records);
    tandem_assert(b->records != NULL);
    unsigned i = 0;
    for (struct tandem_audit_item *item = b->items; item != NULL; item = item->next) {
        b->records[i++] = &item->record;
    }
    tandem__command__init(&b->command);
    tandem__audit_append__init(&b->append);
    b->command.body_case = TANDEM__COMMAND__BODY_AUDIT_APPEND;
    b->command.audit_append = &b->append;
    b->append.records = b->records;
    b->append.n_records = n;
    b->write.command = &b->command;
    b->write.data = b;
    b->write.cb = batch_cb;
    return b;
}

static json_t *item_json(const Tandem__AuditRecord *r)
{
    return json_pack("{s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:i,s:s}", "actor", r->actor, "actor_kind",
                     (int)r->actor_kind, "via", (int)r->via, "source", r->source, "node", r->node,
                     "action", r->action, "object", r->object, "status", (int)r->status, "detail",
                     r->detail);
}

static void forward_cb(struct tandem_httpc_request *req, int status,
                       const struct tandem_httpc_response *resp)
{
    struct audit_forward *f = req->data;
    struct tandem_node *node = f->node;
    node->audit.forwarding = false;
    if (status == 0 && resp->status == 200) {
        items_finish(node, f->items, 0);
    } else if (status == 0 && resp->status >= 400 && resp->status < 500) {
        /* Refused as malformed: sending them again would never succeed. */
        tandem_log(TANDEM_LOG_ERROR, "%u audit records refused by the leader (HTTP %d)", f->n,
                   resp->status);
        items_finish(node, f->items, resp->status);
    } else {
        /* Sent again at the next turn: an audit record is kept twice rather than lost. */
        tandem_log(TANDEM_LOG_WARN, "%u audit records not taken by the leader (%s %d); retrying",
                   f->n, status == 0 ? "HTTP" : "error", status == 0 ? resp->status : status);
        node->audit.retry_after_ms = uv_now(node->loop) + TANDEM_AUDIT_RETRY_MS;
        items_retry(node, f->items, RAFT_NOTLEADER);
    }
    free(f);
}

/* A follower sends its records to the leader, one request at a time, which answers once they
 * are applied. No leader known: they wait (bounded by the queue). */
static void audit_forward(struct tandem_node *node)
{
    struct tandem_audit *a = &node->audit;
    struct tandem_member leader;
    if (a->forwarding || uv_now(node->loop) < a->retry_after_ms ||
        tandem_raft_leader(&node->raft, &leader) != 0) {
        return;
    }
    struct audit_forward *f = calloc(1, sizeof *f);
    tandem_assert(f != NULL);
    f->node = node;
    f->items = items_take(node, TANDEM_AUDIT_RECORDS_MAX, &f->n);
    json_t *records = json_array();
    for (struct tandem_audit_item *i = f->items; i != NULL; i = i->next) {
        json_array_append_new(records, item_json(&i->record));
    }
    json_t *whole = json_pack("{s:o}", "records", records);
    char *body = whole == NULL ? NULL : json_dumps(whole, JSON_COMPACT);
    json_decref(whole);
    f->req.data = f;
    int rv = body == NULL ? UV_ENOMEM
                          : tandem_http_pool_send_node(&node->bcp.clients, leader.api, leader.name,
                                                       &f->req, "POST", "/v1/node/audit",
                                                       "Content-Type: application/json\r\n", body,
                                                       strlen(body), forward_cb);
    free(body);
    if (rv != 0) {
        a->retry_after_ms = uv_now(node->loop) + TANDEM_AUDIT_RETRY_MS;
        items_requeue(node, f->items, f->n);
        free(f);
        return;
    }
    a->forwarding = true;
}

void tandem_audit_flush(struct tandem_node *node)
{
    struct tandem_audit *a = &node->audit;
    struct tandem_audit_item *refused = a->refused_head;
    a->refused_head = NULL;
    items_finish(node, refused, RAFT_BUSY);
    if (a->queued == 0) {
        return;
    }
    if (raft_state(&node->raft.raft) != RAFT_LEADER) {
        audit_forward(node);
        return;
    }
    struct audit_batch *b = batch_take(node);
    int rv = tandem_proposer_write(&node->proposer, &b->write);
    if (rv == RAFT_BUSY) {
        items_requeue(node, b->items, (unsigned)b->append.n_records); /* proposer full: next turn */
        free(b->records);
        free(b);
        return;
    }
    if (rv != 0) {
        struct tandem_audit_item *items = b->items;
        free(b->records);
        free(b);
        items_retry(node, items, rv); /* leadership just went: a follower forwards them */
        return;
    }
    a->proposals++;
}

void tandem_audit_fail_queued(struct tandem_node *node, int status)
{
    struct tandem_audit *a = &node->audit;
    struct tandem_audit_item *items = a->head, *refused = a->refused_head;
    a->head = a->tail = a->refused_head = NULL;
    a->queued = 0;
    items_finish(node, items, status);
    items_finish(node, refused, status);
}

/* Many records' callbacks folded into one: runs once all ran, with the first failure. */
struct audit_join {
    unsigned remaining;
    int status;
    void (*committed)(void *arg, int status);
    void *arg;
};

static void join_cb(void *arg, int status)
{
    struct audit_join *j = arg;
    if (j->status == 0) {
        j->status = status;
    }
    if (--j->remaining == 0) {
        j->committed(j->arg, j->status);
        free(j);
    }
}

static bool forwarded_ok(json_t *o, char *why, size_t i)
{
    static const char *const texts[] = {"actor", "source", "node", "action", "object", "detail"};
    static const char *const ints[] = {"actor_kind", "via", "status"};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        json_t *v = json_object_get(o, texts[k]);
        size_t max = k == 5 ? TANDEM_AUDIT_DETAIL_LEN_MAX : TANDEM_AUDIT_TEXT_LEN_MAX;
        if (!json_is_string(v) || json_string_length(v) > max) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "record %zu: %s must be a string of at most %zu "
                     "bytes",
                     i, texts[k], max);
            return false;
        }
    }
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        json_t *v = json_object_get(o, ints[k]);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 999) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "record %zu: %s must be an integer 0..999", i,
                     ints[k]);
            return false;
        }
    }
    if (json_string_length(json_object_get(o, "action")) == 0 ||
        json_integer_value(json_object_get(o, "actor_kind")) > TANDEM_AUDIT_NODE) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "record %zu: action empty or actor_kind unknown", i);
        return false;
    }
    return true;
}

static struct tandem_audit_item *item_from_json(json_t *o)
{
    struct tandem_audit_item *item = calloc(1, sizeof *item);
    tandem_assert(item != NULL);
    Tandem__AuditRecord *r = &item->record;
    tandem__audit_record__init(r);
    r->actor = text_dup(json_string_value(json_object_get(o, "actor")), SIZE_MAX);
    r->source = text_dup(json_string_value(json_object_get(o, "source")), SIZE_MAX);
    r->node = text_dup(json_string_value(json_object_get(o, "node")), SIZE_MAX);
    r->action = text_dup(json_string_value(json_object_get(o, "action")), SIZE_MAX);
    r->object = text_dup(json_string_value(json_object_get(o, "object")), SIZE_MAX);
    r->detail = text_dup(json_string_value(json_object_get(o, "detail")), SIZE_MAX);
    r->actor_kind = (uint32_t)json_integer_value(json_object_get(o, "actor_kind"));
    r->via = (uint32_t)json_integer_value(json_object_get(o, "via"));
    r->status = (uint32_t)json_integer_value(json_object_get(o, "status"));
    return item;
}

int tandem_audit_forwarded(struct tandem_node *node, json_t *records,
                           void (*committed)(void *arg, int status), void *arg, char *why)
{
    size_t n = json_array_size(records);
    if (!json_is_array(records) || n == 0 || n > TANDEM_AUDIT_RECORDS_MAX) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "records must be an array of 1 to %u records",
                 TANDEM_AUDIT_RECORDS_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!forwarded_ok(json_array_get(records, i), why, i)) {
            return -1;
        }
    }
    if (node->audit.queued + n > TANDEM_AUDIT_QUEUE_MAX) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "the audit queue is full");
        return -1;
    }
    struct audit_join *j = calloc(1, sizeof *j);
    tandem_assert(j != NULL);
    *j = (struct audit_join){(unsigned)n, 0, committed, arg};
    for (size_t i = 0; i < n; i++) {
        struct tandem_audit_item *item = item_from_json(json_array_get(records, i));
        item->committed = join_cb;
        item->arg = j;
        enqueue(node, item);
    }
    return 0;
}

json_t *tandem_audit_head_json(struct tandem_node *node)
{
    MDB_txn *txn;
    struct tandem_audit_link head;
    char hex[2 * TANDEM_AUDIT_HASH_LEN + 1];
    if (tandem_store_commit(&node->store) != 0 || tandem_store_read_txn(&node->store, &txn) != 0) {
        return NULL;
    }
    int rv = tandem_audit_head(txn, &node->store, &head);
    mdb_txn_abort(txn);
    if (rv != 0) {
        return NULL;
    }
    tandem_digest_hex(head.hash, hex);
    return json_pack("{s:I,s:s}", "seq", (json_int_t)head.seq, "hash", hex);
}

int tandem_audit_verify_dir(const char *data_dir, FILE *out, FILE *err)
{
    static struct tandem_store store; /* large: not on the stack */
    char path[PATH_MAX], head[2 * TANDEM_AUDIT_HASH_LEN + 1];
    MDB_txn *txn;
    struct tandem_audit_verdict v;
    snprintf(path, sizeof path, "%s/state", data_dir);
    if (access(path, F_OK) != 0) {
        fprintf(err, "tandemd: --audit-verify: no state store in %s\n", data_dir);
        return 2;
    }
    if (tandem_store_open(&store, path, AUDIT_OFFLINE_MAP_BYTES) != 0) {
        fprintf(err, "tandemd: --audit-verify: %s\n", store.errmsg);
        return 2;
    }
    int rv = tandem_store_read_txn(&store, &txn);
    if (rv == 0) {
        rv = tandem_audit_verify(txn, &store, &v);
        mdb_txn_abort(txn);
    }
    if (rv != 0) {
        fprintf(err, "tandemd: --audit-verify: %s\n", rv > 0 ? mdb_strerror(rv) : store.errmsg);
        tandem_store_close(&store);
        return 2;
    }
    tandem_store_close(&store);
    tandem_digest_hex(v.head.hash, head);
    if (v.ok) {
        fprintf(out, "{\"ok\":true,\"records\":%llu,\"head\":{\"seq\":%llu,\"hash\":\"%s\"}}\n",
                (unsigned long long)v.records, (unsigned long long)v.head.seq, head);
        return 0;
    }
    fprintf(out, "{\"ok\":false,\"broken_at\":%llu,\"reason\":\"%s\",\"records\":%llu}\n",
            (unsigned long long)v.broken_at, v.reason, (unsigned long long)v.records);
    return 1;
}
