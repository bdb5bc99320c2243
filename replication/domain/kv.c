/* The key-value domain: put, delete and compare-and-swap transactions applied inside the batch's
 * write transaction. */
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "replication/apply.h"
#include "replication/domain/kv.h"
#include "storage/error.h"

int tandem_kv_get(struct tandem_store *store, MDB_txn *txn, const void *key, size_t key_len,
                  Tandem__KvRecord **out)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    *out = NULL;
    int rv = mdb_get(txn, store->dbi[TANDEM_DB_KV], &k, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return tandem_error_from_mdb(rv, store->errmsg, "kv get");
    }
    *out = tandem__kv_record__unpack(NULL, v.mv_size, v.mv_data);
    if (*out == NULL) {
        return tandem_error_set(store->errmsg, TANDEM_CORRUPT, "corrupt kv record");
    }
    return 0;
}

static int kv_write(const struct tandem_apply_ctx *ctx, ProtobufCBinaryData key,
                    ProtobufCBinaryData value, uint64_t *create_index)
{
    Tandem__KvRecord *old = NULL;
    Tandem__KvRecord record = TANDEM__KV_RECORD__INIT;
    int rv = tandem_kv_get(ctx->store, ctx->txn, key.data, key.len, &old);
    if (rv != 0) {
        return rv;
    }
    record.value = value;
    record.mod_index = ctx->index;
    record.create_index = old == NULL ? ctx->index : old->create_index;
    tandem__kv_record__free_unpacked(old, NULL);
    MDB_val k = {.mv_size = key.len, .mv_data = key.data};
    MDB_val v = {.mv_size = tandem__kv_record__get_packed_size(&record)};
    rv = mdb_put(ctx->txn, ctx->store->dbi[TANDEM_DB_KV], &k, &v, MDB_RESERVE);
    if (rv != 0) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "kv put");
    }
    tandem__kv_record__pack(&record, v.mv_data);
    if (create_index != NULL) {
        *create_index = record.create_index;
    }
    return 0;
}

static int kv_remove(const struct tandem_apply_ctx *ctx, ProtobufCBinaryData key, bool *deleted)
{
    MDB_val k = {.mv_size = key.len, .mv_data = key.data};
    int rv = mdb_del(ctx->txn, ctx->store->dbi[TANDEM_DB_KV], &k, NULL);
    *deleted = rv == 0;
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return tandem_error_from_mdb(rv, ctx->store->errmsg, "kv delete");
    }
    return 0;
}

/* Keys are checked at the API, but apply checks again: a log is data, not trusted code. */
static bool key_ok(ProtobufCBinaryData key)
{
    return key.len >= 1 && key.len <= TANDEM_KV_KEY_LEN_MAX && memchr(key.data, 0, key.len) == NULL;
}

int tandem_kv_apply_put(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                        struct tandem_result *result)
{
    const Tandem__KvPut *put = command->kv_put;
    if (put == NULL || !key_ok(put->key)) {
        tandem_result_error(result, 400, "invalid key");
        return 0;
    }
    int rv = kv_write(ctx, put->key, put->value, NULL);
    if (rv == 0) {
        tandem_result_set(result, 200, "{\"mod_index\":%llu}", (unsigned long long)ctx->index);
    }
    return rv;
}

int tandem_kv_apply_delete(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                           struct tandem_result *result)
{
    const Tandem__KvDelete *del = command->kv_delete;
    bool deleted = false;
    if (del == NULL || !key_ok(del->key)) {
        tandem_result_error(result, 400, "invalid key");
        return 0;
    }
    int rv = kv_remove(ctx, del->key, &deleted);
    if (rv == 0) {
        tandem_result_set(result, 200, "{\"deleted\":%s,\"mod_index\":%llu}",
                          deleted ? "true" : "false", (unsigned long long)ctx->index);
    }
    return rv;
}

static bool compare_u64(uint64_t have, Tandem__TxnCompare__Op op, uint64_t want)
{
    switch (op) {
        case TANDEM__TXN_COMPARE__OP__EQ:
            return have == want;
        case TANDEM__TXN_COMPARE__OP__NE:
            return have != want;
        case TANDEM__TXN_COMPARE__OP__LT:
            return have < want;
        case TANDEM__TXN_COMPARE__OP__GT:
            return have > want;
        default:
            return false;
    }
}

static int value_cmp(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n == 0 ? 0 : memcmp(a.data, b.data, n);
    if (c != 0) {
        return c;
    }
    return a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
}

/* Evaluates one compare; *holds gets the outcome. A missing key has mod_index 0 and no value. */
static int txn_compare(const struct tandem_apply_ctx *ctx, const Tandem__TxnCompare *cmp,
                       bool *holds)
{
    Tandem__KvRecord *record = NULL;
    int rv = tandem_kv_get(ctx->store, ctx->txn, cmp->key.data, cmp->key.len, &record);
    if (rv != 0) {
        return rv;
    }
    switch (cmp->target) {
        case TANDEM__TXN_COMPARE__TARGET__EXISTS:
            *holds = ((record != NULL) == cmp->exists) == (cmp->op == TANDEM__TXN_COMPARE__OP__EQ);
            break;
        case TANDEM__TXN_COMPARE__TARGET__MOD_INDEX:
            *holds = compare_u64(record == NULL ? 0 : record->mod_index, cmp->op, cmp->mod_index);
            break;
        default: {
            if (record == NULL) {
                *holds = cmp->op == TANDEM__TXN_COMPARE__OP__NE;
                break;
            }
            int c = value_cmp(record->value, cmp->value);
            /* memcmp's sign is all it promises: fold it onto 0/1/2 for </=/>. */
            *holds = compare_u64(c < 0 ? 0 : (c == 0 ? 1 : 2), cmp->op, 1);
            break;
        }
    }
    tandem__kv_record__free_unpacked(record, NULL);
    return 0;
}

static int txn_op(const struct tandem_apply_ctx *ctx, const Tandem__TxnOp *op, json_t *results)
{
    json_t *out = NULL;
    int rv = 0;
    switch (op->kind) {
        case TANDEM__TXN_OP__KIND__PUT:
            rv = kv_write(ctx, op->key, op->value, NULL);
            out = json_pack("{s:s,s:I}", "op", "put", "mod_index", (json_int_t)ctx->index);
            break;
        case TANDEM__TXN_OP__KIND__DELETE: {
            bool deleted = false;
            rv = kv_remove(ctx, op->key, &deleted);
            out = json_pack("{s:s,s:b}", "op", "delete", "deleted", deleted);
            break;
        }
        default: {
            Tandem__KvRecord *record = NULL;
            rv = tandem_kv_get(ctx->store, ctx->txn, op->key.data, op->key.len, &record);
            if (rv == 0 && results != NULL) {
                out = tandem_kv_record_json(op->key.data, op->key.len, record);
                json_object_set_new(out, "op", json_string("get"));
            }
            tandem__kv_record__free_unpacked(record, NULL);
            break;
        }
    }
    if (results != NULL && out != NULL) {
        json_array_append_new(results, out);
    } else {
        json_decref(out);
    }
    return rv;
}

int tandem_kv_apply_txn(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                        struct tandem_result *result)
{
    const Tandem__Txn *txn = command->txn;
    bool succeeded = true;
    int rv = 0;
    if (txn == NULL || txn->n_compare > TANDEM_TXN_COMPARES_MAX ||
        txn->n_success > TANDEM_TXN_OPS_MAX || txn->n_failure > TANDEM_TXN_OPS_MAX) {
        tandem_result_error(result, 400, "invalid transaction");
        return 0;
    }
    for (size_t i = 0; i < txn->n_compare; i++) {
        if (!key_ok(txn->compare[i]->key)) {
            tandem_result_error(result, 400, "invalid key in transaction compare %zu", i);
            return 0;
        }
    }
    for (size_t i = 0; i < txn->n_success + txn->n_failure; i++) {
        const Tandem__TxnOp *op =
            i < txn->n_success ? txn->success[i] : txn->failure[i - txn->n_success];
        if (!key_ok(op->key)) {
            tandem_result_error(result, 400, "invalid key in transaction operation %zu", i);
            return 0;
        }
    }
    for (size_t i = 0; i < txn->n_compare && succeeded; i++) {
        if ((rv = txn_compare(ctx, txn->compare[i], &succeeded)) != 0) {
            return rv;
        }
    }
    size_t n = succeeded ? txn->n_success : txn->n_failure;
    Tandem__TxnOp **ops = succeeded ? txn->success : txn->failure;
    json_t *results = result == NULL ? NULL : json_array();
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = txn_op(ctx, ops[i], results);
    }
    if (rv == 0 && result != NULL) {
        json_t *body = json_pack("{s:b,s:I,s:O}", "succeeded", succeeded, "mod_index",
                                 (json_int_t)ctx->index, "results", results);
        result->status = 200;
        free(result->body);
        result->body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
    }
    json_decref(results);
    return rv;
}

json_t *tandem_kv_record_json(const void *key, size_t key_len, const Tandem__KvRecord *record)
{
    json_t *out = json_object();
    json_object_set_new(out, "key", json_stringn(key, key_len));
    if (record == NULL) {
        json_object_set_new(out, "value", json_null());
        json_object_set_new(out, "mod_index", json_integer(0));
        return out;
    }
    json_object_set_new(out, "value", tandem_base64_json(record->value.data, record->value.len));
    json_object_set_new(out, "mod_index", json_integer((json_int_t)record->mod_index));
    json_object_set_new(out, "create_index", json_integer((json_int_t)record->create_index));
    return out;
}

json_t *tandem_base64_json(const void *data, size_t len)
{
    /* Standard alphabet with padding and no line breaks: OpenSSL's EVP_EncodeBlock. */
    size_t out_len = 4 * ((len + 2) / 3);
    unsigned char *out = len <= INT_MAX / 2 ? malloc(out_len + 1) : NULL;
    if (out == NULL) {
        return json_null();
    }
    int written = EVP_EncodeBlock(out, data, (int)len);
    json_t *text = written >= 0 && (size_t)written == out_len
                       ? json_stringn((const char *)out, out_len)
                       : json_null();
    free(out);
    return text;
}

static int base64_digit(char c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' || c == '-' ? 62
           : c == '/' || c == '_' ? 63
                                  : -1;
}

/* Strict (RFC 4648 section 3.5): whole 4-character groups, at most two '=' and only at the end,
 * and the bits a padded group leaves over are zero, so every value has exactly one encoding. */
int tandem_base64_decode(const char *in, size_t in_len, uint8_t **out, size_t *out_len)
{
    size_t pad =
        in_len >= 1 && in[in_len - 1] == '=' ? (in_len >= 2 && in[in_len - 2] == '=' ? 2 : 1) : 0;
    if (in_len % 4 != 0) {
        return TANDEM_INVALID;
    }
    uint8_t *buf = malloc(in_len / 4 * 3 + 1);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (buf == NULL) {
        return TANDEM_NOMEM;
    }
    for (size_t i = 0; i < in_len - pad; i++) {
        int v = base64_digit(in[i]);
        if (v < 0) {
            free(buf);
            return TANDEM_INVALID;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    if ((acc & ((1u << bits) - 1u)) != 0) { /* a non-canonical last group */
        free(buf);
        return TANDEM_INVALID;
    }
    *out = buf;
    *out_len = o;
    return 0;
}
