/* Key-value domain helpers shared by apply and the API's read path. */
#ifndef TANDEM_REPLICATION_DOMAIN_KV_H
#define TANDEM_REPLICATION_DOMAIN_KV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/store.h"
#include "tandem.pb-c.h"

#define TANDEM_KV_KEY_LEN_MAX    511 /* LMDB's key size limit */
#define TANDEM_TXN_COMPARES_MAX  64  /* compares in one transaction */
#define TANDEM_TXN_OPS_MAX       64  /* operations in one branch of a transaction */
#define TANDEM_KV_LIST_LIMIT_MAX 10000

/* Reads one record (NULL when absent); free with tandem__kv_record__free_unpacked. */
int tandem_kv_get(struct tandem_store *store, MDB_txn *txn, const void *key, size_t key_len,
                  Tandem__KvRecord **out);
/* {"key","value"(base64),"mod_index","create_index"}; value null when record is NULL. */
json_t *tandem_kv_record_json(const void *key, size_t key_len, const Tandem__KvRecord *record);
json_t *tandem_base64_json(const void *data, size_t len);
/* Strict: padded, whole groups, canonical last group; standard or URL-safe alphabet. *out
 * malloc'd. Returns 0, TANDEM_INVALID or TANDEM_NOMEM. */
int tandem_base64_decode(const char *in, size_t in_len, uint8_t **out, size_t *out_len);

/* This header's rows of the command table (replication/commands.h), applied in kv.c. */
#define TANDEM_KV_COMMANDS(X)                                                                      \
    X(kv_put, TANDEM__COMMAND__BODY_KV_PUT, tandem_kv_apply_put)                                   \
    X(kv_delete, TANDEM__COMMAND__BODY_KV_DELETE, tandem_kv_apply_delete)                          \
    X(txn, TANDEM__COMMAND__BODY_TXN, tandem_kv_apply_txn)

#endif
