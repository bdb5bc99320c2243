/* Codecs of the process-management and warehouse records: protobuf records in LMDB values,
 * big-endian sequence keys, RFC 3339 times, field formats and ordered index scans. */
#ifndef TANDEM_STORAGE_DOMAIN_CODEC_H
#define TANDEM_STORAGE_DOMAIN_CODEC_H

#include <lmdb.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/store.h"

#define TANDEM_DOMAIN_ID_LEN_MAX   64  /* job, box and volume ids: [A-Za-z0-9._:-] */
#define TANDEM_DOMAIN_TEXT_LEN_MAX 128 /* client, kind, ledger, shelf, operator, actor (bytes) */
#define TANDEM_RFC3339_LEN_MAX     40  /* "2024-01-31T23:59:59.123+09:00" and then some */
#define TANDEM_RFC3339_YEAR_MIN    1970
#define TANDEM_RFC3339_YEAR_MAX    9999
#define TANDEM_INDEX_KEY_LEN_MAX   TANDEM_STORE_KEY_LEN_MAX

/* An id: 1..TANDEM_DOMAIN_ID_LEN_MAX of [A-Za-z0-9._:-], so it is safe in paths and keys. */
bool tandem_domain_id_ok(const char *id);
/* Printable text: valid UTF-8 without control characters, at most TANDEM_DOMAIN_TEXT_LEN_MAX
 * bytes; empty only when empty_ok. */
bool tandem_domain_text_ok(const char *text, bool empty_ok);

/* Parses an RFC 3339 date-time ("2024-05-01T09:30:00Z", "...T09:30:00.250+09:00") into Unix
 * milliseconds. Returns 0, or -1 when the text is not one (or is before 1970). */
int tandem_rfc3339_parse(const char *text, int64_t *ms);
/* Formats ms as UTC, "2024-05-01T00:30:00Z" or with ".250" when there are milliseconds. */
void tandem_rfc3339_format(int64_t ms, char out[TANDEM_RFC3339_LEN_MAX + 1]);
/* The same, always with milliseconds ("2024-05-01T00:30:00.000Z"): times shown to people in
 * errors, logs and status views. */
void tandem_rfc3339_format_ms(int64_t ms, char out[TANDEM_RFC3339_LEN_MAX + 1]);

void tandem_be64_put(uint8_t out[8], uint64_t value);
uint64_t tandem_be64_get(const void *in);

/* Reads and decodes the record at key in db; *out is NULL when absent. A record that does not
 * decode is MDB_CORRUPTED. The caller frees *out with protobuf_c_message_free_unpacked. */
int tandem_record_get(struct tandem_store *s, MDB_txn *txn, int db, const void *key, size_t key_len,
                      const ProtobufCMessageDescriptor *descriptor, ProtobufCMessage **out);
/* Decodes value (MDB_CORRUPTED with s->errmsg when it does not). */
int tandem_record_decode(struct tandem_store *s, const MDB_val *value,
                         const ProtobufCMessageDescriptor *descriptor, ProtobufCMessage **out);
/* Encodes message and stores it at key in db. */
int tandem_record_put(struct tandem_store *s, MDB_txn *txn, int db, const void *key, size_t key_len,
                      const ProtobufCMessage *message);

/* A growable JSON text buffer with a ceiling: appends past max (or out of memory) set failed
 * and are dropped, so a listing is cut, never unbounded. */
struct tandem_text {
    char *data; /* owned; NUL-terminated when len > 0 */
    size_t len, cap, max;
    bool failed;
};
void tandem_text_init(struct tandem_text *t, size_t max);
void tandem_text_free(struct tandem_text *t);
void tandem_text_raw(struct tandem_text *t, const char *s, size_t n);
void tandem_text_cstr(struct tandem_text *t, const char *s);
/* A JSON string: quoted, with '"', '\\' and control characters escaped. */
void tandem_text_string(struct tandem_text *t, const char *s, size_t n);
void tandem_text_int(struct tandem_text *t, int64_t value);
/* A quoted RFC 3339 time. */
void tandem_text_time(struct tandem_text *t, int64_t ms);

/* Index keys are "<tag>\0<value>\0<id>": built into out (TANDEM_INDEX_KEY_LEN_MAX bytes).
 * Returns the length, or 0 when it would not fit. An empty id gives the scan prefix. */
size_t tandem_index_key(char tag, const char *value, const char *id, uint8_t *out);
int tandem_index_put(struct tandem_store *s, MDB_txn *txn, int db, char tag, const char *value,
                     const char *id);
int tandem_index_del(struct tandem_store *s, MDB_txn *txn, int db, char tag, const char *value,
                     const char *id);

/* An ordered scan for listings: keys of db starting with prefix, strictly after
 * prefix + after (after "" starts at the prefix), in key order. visit gets the key's rest after
 * the prefix and the value; it sets *stop to end the scan. At most scan_max keys are visited;
 * *exhausted tells whether the prefix range ended within the scan. */
typedef int (*tandem_scan_fn)(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                              bool *stop);
int tandem_index_scan(struct tandem_store *s, MDB_txn *txn, int db, const uint8_t *prefix,
                      size_t prefix_len, const uint8_t *after, size_t after_len, size_t scan_max,
                      tandem_scan_fn visit, void *arg, bool *exhausted);

#endif
