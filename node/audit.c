/* Audit records from the node: built from a request's principal and address, queued (bounded),
 * proposed once per loop turn as one AuditAppend through the proposer, and the callbacks of
 * personal-data reads run once their record is applied. */
#include "node/audit.h"

#include <stdlib.h>
#include <string.h>

#include "node/log.h"
#include "node/node.h"
#include "replication/domain/audit.h"
#include "storage/assert.h"

struct tandem_audit_item {
    Tandem__AuditRecord record; /* strings owned */
    void (*committed)(void *arg, int status);
    void *arg;
    struct tandem_audit_item *next;
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

static void batch_cb(struct tandem_write *w, int status, struct tandem_result *result)
{
    struct audit_batch *b = w->data;
    if (status == 0 && result->status != 200) {
        tandem_log(TANDEM_LOG_ERROR, "audit append refused (%d): %s", result->status,
                   result->body != NULL ? result->body : "");
        status = result->status;
    } else if (status != 0) {
        tandem_log(TANDEM_LOG_ERROR, "%zu audit records not recorded: %s", b->append.n_records,
                   raft_strerror(status));
    }
    items_finish(b->node, b->items, status);
    free(b->records);
    free(b);
}

/* Takes up to TANDEM_AUDIT_RECORDS_MAX queued items into one batch. */
static struct audit_batch *batch_take(struct tandem_node *node)
{
    struct tandem_audit *a = &node->audit;
    unsigned n = a->queued < TANDEM_AUDIT_RECORDS_MAX ? a->queued : TANDEM_AUDIT_RECORDS_MAX;
    struct audit_batch *b = calloc(1, sizeof *b);
    tandem_assert(b != NULL);
    b->records = calloc(n, sizeof *b->records);
    tandem_assert(b->records != NULL);
    b->node = node;
    tandem__command__init(&b->command);
    tandem__audit_append__init(&b->append);
    b->command.body_case = TANDEM__COMMAND__BODY_AUDIT_APPEND;
    b->command.audit_append = &b->append;
    b->items = a->head;
    struct tandem_audit_item *last = a->head;
    for (unsigned i = 0; i < n; i++) {
        last = i == 0 ? a->head : last->next;
        b->records[i] = &last->record;
    }
    a->head = last->next;
    last->next = NULL;
    if (a->head == NULL) {
        a->tail = NULL;
    }
    a->queued -= n;
    b->append.records = b->records;
    b->append.n_records = n;
    b->write.command = &b->command;
    b->write.data = b;
    b->write.cb = batch_cb;
    return b;
}

/* Puts a batch that could not be proposed back at the front of the queue. */
static void batch_untake(struct tandem_node *node, struct audit_batch *b)
{
    struct tandem_audit *a = &node->audit;
    struct tandem_audit_item *last = b->items;
    while (last->next != NULL) {
        last = last->next;
    }
    last->next = a->head;
    a->head = b->items;
    if (a->tail == NULL) {
        a->tail = last;
    }
    a->queued += (unsigned)b->append.n_records;
    free(b->records);
    free(b);
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
        /* TODO(I3): forward to the leader (POST /v1/node/audit). */
        tandem_log(TANDEM_LOG_ERROR, "%u audit records not recorded: this node is not the leader",
                   a->queued);
        tandem_audit_fail_queued(node, RAFT_NOTLEADER);
        return;
    }
    struct audit_batch *b = batch_take(node);
    int rv = tandem_proposer_write(&node->proposer, &b->write);
    if (rv == RAFT_BUSY) {
        batch_untake(node, b); /* the proposer is full: next turn */
        return;
    }
    if (rv != 0) {
        struct tandem_audit_item *items = b->items;
        free(b->records);
        free(b);
        items_finish(node, items, rv);
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
