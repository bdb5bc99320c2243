/* The KV resource: get, put, delete, list and transactions on the replicated key-value store. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/node.h"
#include "replication/domain/kv.h"
#include "storage/assert.h"
#include "storage/error.h"

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define KV_ROUTES(X)                                                                               \
    X(kv_list, HTTP_GET, "/v1/kv", TANDEM_ROUTE_READ, TANDEM_PERM_READ, route_kv_list)             \
    X(kv_get, HTTP_GET, "/v1/kv/", TANDEM_ROUTE_READ | TANDEM_ROUTE_PREFIX, TANDEM_PERM_READ,      \
      route_kv_get)                                                                                \
    X(kv_put, HTTP_PUT, "/v1/kv/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX, TANDEM_PERM_KV_WRITE, \
      route_kv_put)                                                                                \
    X(kv_delete, HTTP_DELETE, "/v1/kv/", TANDEM_ROUTE_WRITE | TANDEM_ROUTE_PREFIX,                 \
      TANDEM_PERM_KV_WRITE, route_kv_delete)                                                       \
    X(txn, HTTP_POST, "/v1/txn", TANDEM_ROUTE_WRITE, TANDEM_PERM_KV_WRITE, route_txn)

TANDEM_ROUTE_TABLE(tandem_kv_route_table, KV_ROUTES);

/* why: TANDEM_ERRMSG_SIZE bytes. */
static bool key_valid(const char *key, size_t len, char *why)
{
    if (len == 0 || len > TANDEM_KV_KEY_LEN_MAX) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "key must be 1 to %d bytes", TANDEM_KV_KEY_LEN_MAX);
        return false;
    }
    json_t *probe = json_stringn(key, len);
    if (probe == NULL) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "key must be valid UTF-8 without NUL");
        return false;
    }
    json_decref(probe);
    return true;
}

/* A transaction's decoded compares and operations (about 15 KiB: kept off plain puts). */
struct txn_body {
    Tandem__Txn txn;
    Tandem__TxnCompare compares[TANDEM_TXN_COMPARES_MAX];
    Tandem__TxnCompare *compare_ptrs[TANDEM_TXN_COMPARES_MAX];
    Tandem__TxnOp ops[2 * TANDEM_TXN_OPS_MAX];
    Tandem__TxnOp *op_ptrs[2 * TANDEM_TXN_OPS_MAX];
    uint8_t *decoded[TANDEM_TXN_COMPARES_MAX + 2 * TANDEM_TXN_OPS_MAX]; /* owned */
    unsigned n_decoded;
};

/* What a KV request keeps until it is answered: the command it proposes and what that borrows. */
struct kv_request {
    Tandem__Command command;
    union {
        Tandem__KvPut put;
        Tandem__KvDelete del;
    };
    char key[TANDEM_KV_KEY_LEN_MAX + 1];
    size_t key_len;
    bool list;          /* a list rather than a get */
    struct txn_body *t; /* owned: only transactions carry one */
    json_t *json;       /* owned: the parsed body, keys point into it */
};

static void kv_request_free(void *arg)
{
    struct kv_request *k = arg;
    for (unsigned i = 0; k->t != NULL && i < k->t->n_decoded; i++) {
        free(k->t->decoded[i]);
    }
    free(k->t);
    json_decref(k->json);
    free(k);
}

/* A request for key (NULL: none), or NULL after answering r 400 or 500. */
static struct kv_request *kv_request_new(struct tandem_node *node, struct tandem_http_request *r,
                                         const char *key)
{
    char why[TANDEM_ERRMSG_SIZE];
    struct kv_request *k;
    if (key != NULL && !key_valid(key, strlen(key), why)) {
        tandem_route_error(node, r, 400, "%s", why);
        return NULL;
    }
    k = calloc(1, sizeof *k);
    if (k == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        return NULL;
    }
    tandem__command__init(&k->command);
    if (key != NULL) {
        k->key_len = strlen(key);
        memcpy(k->key, key, k->key_len + 1);
    }
    return k;
}

/* A put (the body is the value) or a delete of one key. */
static void kv_write_key(struct tandem_node *node, struct tandem_http_request *r, const char *key,
                         Tandem__Command__BodyCase body_case)
{
    struct kv_request *k = kv_request_new(node, r, key);
    if (k == NULL) {
        return;
    }
    ProtobufCBinaryData key_data = {.len = k->key_len, .data = (uint8_t *)k->key};
    k->command.body_case = body_case;
    if (body_case == TANDEM__COMMAND__BODY_KV_PUT) {
        tandem__kv_put__init(&k->put);
        k->put.key = key_data;
        /* The request stays valid until answered. */
        k->put.value = (ProtobufCBinaryData){.len = r->body_len, .data = (uint8_t *)r->body};
        k->command.kv_put = &k->put;
    } else {
        tandem_assert(body_case == TANDEM__COMMAND__BODY_KV_DELETE);
        tandem__kv_delete__init(&k->del);
        k->del.key = key_data;
        k->command.kv_delete = &k->del;
    }
    tandem_route_submit(node, r, &k->command, kv_request_free, k);
}

static void route_kv_put(struct tandem_node *node, struct tandem_http_request *r, const char *key)
{
    kv_write_key(node, r, key, TANDEM__COMMAND__BODY_KV_PUT);
}

static void route_kv_delete(struct tandem_node *node, struct tandem_http_request *r,
                            const char *key)
{
    kv_write_key(node, r, key, TANDEM__COMMAND__BODY_KV_DELETE);
}

static void kv_get_serve(struct tandem_node *node, struct tandem_http_request *r, const char *key,
                         size_t key_len)
{
    MDB_txn *txn;
    Tandem__KvRecord *record = NULL;
    char headers[128];
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    int rv = tandem_kv_get(&node->store, txn, key, key_len, &record);
    if (rv != 0) {
        mdb_txn_abort(txn);
        tandem_route_error(node, r, 500, "%s", node->store.errmsg);
        return;
    }
    if (record == NULL) {
        mdb_txn_abort(txn);
        tandem_route_error(node, r, 404, "key not found: %.*s", (int)key_len, key);
        return;
    }
    snprintf(headers, sizeof headers, "X-Tandem-Mod-Index: %llu\r\nX-Tandem-Create-Index: %llu\r\n",
             (unsigned long long)record->mod_index, (unsigned long long)record->create_index);
    tandem_node_respond(node, r, 200, "application/octet-stream", headers, record->value.data,
                        record->value.len);
    tandem__kv_record__free_unpacked(record, NULL);
    mdb_txn_abort(txn);
}

static void kv_list_serve(struct tandem_node *node, struct tandem_http_request *r);

static void kv_serve(struct tandem_node *node, struct tandem_http_request *r, void *arg)
{
    struct kv_request *k = arg;
    if (k->list) {
        kv_list_serve(node, r);
    } else {
        kv_get_serve(node, r, k->key, k->key_len);
    }
}

/* A get of key, or the list when key is NULL: at once with ?consistency=local, else after this
 * loop iteration's shared barrier. */
static void kv_read(struct tandem_node *node, struct tandem_http_request *r, const char *key)
{
    struct kv_request *k = kv_request_new(node, r, key);
    if (k != NULL) {
        k->list = key == NULL;
        tandem_route_read(node, r, kv_serve, k, kv_request_free);
    }
}

static void route_kv_get(struct tandem_node *node, struct tandem_http_request *r, const char *key)
{
    kv_read(node, r, key);
}

static int list_params(struct tandem_http_request *r, char *prefix, char *after, long *limit,
                       char *why)
{
    int rv;
    if ((rv = tandem_http_query_get(r->query, "prefix", prefix, TANDEM_KV_KEY_LEN_MAX + 1)) < 0 ||
        (rv == 0 && (prefix[0] = '\0', 0))) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "prefix is malformed or longer than %d bytes",
                 TANDEM_KV_KEY_LEN_MAX);
        return -1;
    }
    if ((rv = tandem_http_query_get(r->query, "after", after, TANDEM_KV_KEY_LEN_MAX + 1)) < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "after is malformed or longer than %d bytes",
                 TANDEM_KV_KEY_LEN_MAX);
        return -1;
    }
    if (rv == 0) {
        after[0] = '\0';
    }
    uint64_t value = 100;
    if (tandem_route_query_number(r, "limit", 1, TANDEM_KV_LIST_LIMIT_MAX, &value) < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "limit must be an integer from 1 to %d",
                 TANDEM_KV_LIST_LIMIT_MAX);
        return -1;
    }
    *limit = (long)value;
    return 0;
}

static void kv_list_serve(struct tandem_node *node, struct tandem_http_request *r)
{
    char prefix[TANDEM_KV_KEY_LEN_MAX + 1], after[TANDEM_KV_KEY_LEN_MAX + 1],
        why[TANDEM_ERRMSG_SIZE];
    long limit;
    MDB_txn *txn;
    MDB_cursor *cursor;
    if (list_params(r, prefix, after, &limit, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        return;
    }
    if (tandem_route_read_txn(node, r, &txn) != 0) {
        return;
    }
    if (mdb_cursor_open(txn, node->store.dbi[TANDEM_DB_KV], &cursor) != 0) {
        mdb_txn_abort(txn);
        tandem_route_error(node, r, 500, "cannot open a cursor");
        return;
    }
    size_t prefix_len = strlen(prefix), after_len = strlen(after);
    const char *start = after_len > 0 && strcmp(after, prefix) > 0 ? after : prefix;
    MDB_val key = {.mv_size = strlen(start), .mv_data = (void *)start}, value;
    int rv = key.mv_size == 0 ? mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
                              : mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE);
    json_t *kvs = json_array();
    bool more = false;
    for (; rv == 0; rv = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
        if (key.mv_size < prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0) {
            break;
        }
        if (after_len > 0 && key.mv_size == after_len &&
            memcmp(key.mv_data, after, after_len) == 0) {
            continue;
        }
        if (json_array_size(kvs) >= (size_t)limit) {
            more = true;
            break;
        }
        Tandem__KvRecord *record = tandem__kv_record__unpack(NULL, value.mv_size, value.mv_data);
        if (record != NULL) {
            json_array_append_new(kvs, tandem_kv_record_json(key.mv_data, key.mv_size, record));
            tandem__kv_record__free_unpacked(record, NULL);
        }
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    tandem_route_jansson(node, r, 200, json_pack("{s:o,s:b}", "kvs", kvs, "more", more));
}

static void route_kv_list(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    char prefix[TANDEM_KV_KEY_LEN_MAX + 1], after[TANDEM_KV_KEY_LEN_MAX + 1],
        why[TANDEM_ERRMSG_SIZE];
    long limit;
    (void)p;
    if (list_params(r, prefix, after, &limit, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why); /* refuse before any barrier */
    } else {
        kv_read(node, r, NULL);
    }
}

/* ---- txn ---- */

static int txn_bytes(struct kv_request *k, json_t *text, ProtobufCBinaryData *out, char *why)
{
    uint8_t *data;
    size_t len;
    if (!json_is_string(text) ||
        tandem_base64_decode(json_string_value(text), json_string_length(text), &data, &len) != 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "value must be a base64 string");
        return -1;
    }
    k->t->decoded[k->t->n_decoded++] = data;
    out->data = data;
    out->len = len;
    return 0;
}

static int txn_key(json_t *object, ProtobufCBinaryData *out, char *why)
{
    json_t *key = json_object_get(object, "key");
    if (!json_is_string(key) || !key_valid(json_string_value(key), json_string_length(key), why)) {
        if (!json_is_string(key)) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "each compare and operation needs a string \"key\"");
        }
        return -1;
    }
    out->data = (uint8_t *)json_string_value(key);
    out->len = json_string_length(key);
    return 0;
}

/* A compare carries the operand of its own target only (value, mod_index or exists). */
static int txn_only_one(json_t *c, const char *operand, char *why)
{
    static const char *const operands[] = {"value", "mod_index", "exists"};
    for (size_t i = 0; i < sizeof operands / sizeof operands[0]; i++) {
        if (strcmp(operands[i], operand) != 0 && json_object_get(c, operands[i]) != NULL) {
            snprintf(why, TANDEM_ERRMSG_SIZE, "a %s compare takes no \"%s\"", operand, operands[i]);
            return -1;
        }
    }
    return 0;
}

static int txn_compare_parse(struct kv_request *k, json_t *c, Tandem__TxnCompare *out, char *why)
{
    static const char *const ops[] = {"==", "!=", "<", ">"};
    static const char *const fields[] = {"key",       "op",     "target", "value",
                                         "mod_index", "exists", NULL};
    const char *target = json_string_value(json_object_get(c, "target"));
    const char *op = json_string_value(json_object_get(c, "op"));
    tandem__txn_compare__init(out);
    if (!json_is_object(c) || txn_key(c, &out->key, why) != 0) {
        return json_is_object(c)
                   ? -1
                   : (snprintf(why, TANDEM_ERRMSG_SIZE, "compare must be an object"), -1);
    }
    if (tandem_route_fields_only(c, fields, why) != 0) {
        return -1;
    }
    int op_index = -1;
    for (int i = 0; op != NULL && i < 4; i++) {
        op_index = strcmp(op, ops[i]) == 0 ? i : op_index;
    }
    if (op_index < 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "compare op must be one of == != < >");
        return -1;
    }
    out->op = (Tandem__TxnCompare__Op)op_index;
    if (target != NULL && strcmp(target, "value") == 0) {
        out->target = TANDEM__TXN_COMPARE__TARGET__VALUE;
        return txn_only_one(c, "value", why) != 0
                   ? -1
                   : txn_bytes(k, json_object_get(c, "value"), &out->value, why);
    }
    if (target != NULL && strcmp(target, "mod_index") == 0) {
        json_t *index = json_object_get(c, "mod_index");
        if (!json_is_integer(index) || json_integer_value(index) < 0) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "mod_index compare needs a non-negative integer \"mod_index\"");
            return -1;
        }
        if (txn_only_one(c, "mod_index", why) != 0) {
            return -1;
        }
        out->target = TANDEM__TXN_COMPARE__TARGET__MOD_INDEX;
        out->mod_index = (uint64_t)json_integer_value(index);
        return 0;
    }
    if (target != NULL && strcmp(target, "exists") == 0) {
        json_t *exists = json_object_get(c, "exists");
        if (!json_is_boolean(exists) || op_index > 1) {
            snprintf(why, TANDEM_ERRMSG_SIZE,
                     "exists compare needs a boolean \"exists\" and op == or !=");
            return -1;
        }
        if (txn_only_one(c, "exists", why) != 0) {
            return -1;
        }
        out->target = TANDEM__TXN_COMPARE__TARGET__EXISTS;
        out->exists = json_is_true(exists);
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "compare target must be value, mod_index or exists");
    return -1;
}

static int txn_op_parse(struct kv_request *k, json_t *o, Tandem__TxnOp *out, char *why)
{
    const char *op = json_string_value(json_object_get(o, "op"));
    tandem__txn_op__init(out);
    if (!json_is_object(o)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "operation must be an object");
        return -1;
    }
    static const char *const put_fields[] = {"key", "op", "value", NULL};
    static const char *const key_fields[] = {"key", "op", NULL};
    bool put = op != NULL && strcmp(op, "put") == 0;
    if (txn_key(o, &out->key, why) != 0 ||
        tandem_route_fields_only(o, put ? put_fields : key_fields, why) != 0) {
        return -1;
    }
    if (put) {
        out->kind = TANDEM__TXN_OP__KIND__PUT;
        return txn_bytes(k, json_object_get(o, "value"), &out->value, why);
    }
    if (op != NULL && strcmp(op, "delete") == 0) {
        out->kind = TANDEM__TXN_OP__KIND__DELETE;
        return 0;
    }
    if (op != NULL && strcmp(op, "get") == 0) {
        out->kind = TANDEM__TXN_OP__KIND__GET;
        return 0;
    }
    snprintf(why, TANDEM_ERRMSG_SIZE, "operation op must be put, delete or get");
    return -1;
}

static int txn_ops_parse(struct kv_request *k, json_t *list, size_t base, size_t *n, char *why,
                         const char *name)
{
    *n = 0;
    if (list == NULL) {
        return 0;
    }
    if (!json_is_array(list) || json_array_size(list) > TANDEM_TXN_OPS_MAX) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "%s must be an array of at most %d operations", name,
                 TANDEM_TXN_OPS_MAX);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        k->t->op_ptrs[base + i] = &k->t->ops[base + i];
        if (txn_op_parse(k, json_array_get(list, i), &k->t->ops[base + i], why) != 0) {
            return -1;
        }
    }
    *n = json_array_size(list);
    return 0;
}

static int txn_parse(struct kv_request *k, char *why)
{
    static const char *const fields[] = {"compare", "success", "failure", NULL};
    json_t *compare = json_object_get(k->json, "compare");
    tandem__txn__init(&k->t->txn);
    if (!json_is_object(k->json)) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "body must be a JSON object with compare, success and failure");
        return -1;
    }
    if (tandem_route_fields_only(k->json, fields, why) != 0) {
        return -1;
    }
    if (compare != NULL &&
        (!json_is_array(compare) || json_array_size(compare) > TANDEM_TXN_COMPARES_MAX)) {
        snprintf(why, TANDEM_ERRMSG_SIZE, "compare must be an array of at most %d compares",
                 TANDEM_TXN_COMPARES_MAX);
        return -1;
    }
    for (size_t i = 0; compare != NULL && i < json_array_size(compare); i++) {
        k->t->compare_ptrs[i] = &k->t->compares[i];
        if (txn_compare_parse(k, json_array_get(compare, i), &k->t->compares[i], why) != 0) {
            return -1;
        }
    }
    k->t->txn.n_compare = compare == NULL ? 0 : json_array_size(compare);
    k->t->txn.compare = k->t->compare_ptrs;
    if (txn_ops_parse(k, json_object_get(k->json, "success"), 0, &k->t->txn.n_success, why,
                      "success") != 0 ||
        txn_ops_parse(k, json_object_get(k->json, "failure"), TANDEM_TXN_OPS_MAX,
                      &k->t->txn.n_failure, why, "failure") != 0) {
        return -1;
    }
    if (k->t->txn.n_success == 0 && k->t->txn.n_failure == 0) {
        snprintf(why, TANDEM_ERRMSG_SIZE,
                 "a txn needs at least one operation in success or failure");
        return -1;
    }
    k->t->txn.success = k->t->op_ptrs;
    k->t->txn.failure = k->t->op_ptrs + TANDEM_TXN_OPS_MAX;
    return 0;
}

static void route_txn(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    json_error_t jerr;
    char why[TANDEM_ERRMSG_SIZE];
    (void)p;
    struct kv_request *k = kv_request_new(node, r, NULL);
    if (k == NULL) {
        return;
    }
    k->t = calloc(1, sizeof *k->t);
    if (k->t == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        kv_request_free(k);
        return;
    }
    k->json = json_loadb(r->body, r->body_len, 0, &jerr);
    if (k->json == NULL) {
        tandem_route_error(node, r, 400, "malformed JSON: %s", jerr.text);
        kv_request_free(k);
        return;
    }
    if (txn_parse(k, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        kv_request_free(k);
        return;
    }
    k->command.body_case = TANDEM__COMMAND__BODY_TXN;
    k->command.txn = &k->t->txn;
    tandem_route_submit(node, r, &k->command, kv_request_free, k);
}
