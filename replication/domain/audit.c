/* The audit trail's apply (records chained with SHA-256 in the batch's order, stamped with the
 * batch's time, so every node holds the same chain), its reads, verifier and purge. */
#include "replication/domain/audit.h"

#include <endian.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

#define AUDIT_RECORD_KEY_LEN  9
#define AUDIT_LINK_LEN        (8 + TANDEM_AUDIT_HASH_LEN)
#define AUDIT_VALUE_BYTES_MAX (64 * 1024) /* a packed record: the text fields are bounded */

static void record_key(uint64_t seq, uint8_t key[AUDIT_RECORD_KEY_LEN])
{
    uint64_t be = htobe64(seq);
    key[0] = TANDEM_AUDIT_KEY_RECORD;
    memcpy(key + 1, &be, sizeof be);
}

void tandem_audit_hash(const Tandem__AuditRecord *record, uint8_t out[TANDEM_AUDIT_HASH_LEN])
{
    static const uint8_t zero[TANDEM_AUDIT_HASH_LEN];
    Tandem__AuditRecord copy = *record;
    copy.hash.data = NULL;
    copy.hash.len = 0;
    size_t len = tandem__audit_record__get_packed_size(&copy);
    uint8_t stack[4096];
    uint8_t *buf = len <= sizeof stack ? stack : malloc(len);
    unsigned out_len = 0;
    tandem_assert(buf != NULL);
    tandem__audit_record__pack(&copy, buf);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    tandem_assert(md != NULL);
    bool ok =
        EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(
            md, record->prev_hash.len == TANDEM_AUDIT_HASH_LEN ? record->prev_hash.data : zero,
            TANDEM_AUDIT_HASH_LEN) == 1 &&
        EVP_DigestUpdate(md, buf, len) == 1 && EVP_DigestFinal_ex(md, out, &out_len) == 1;
    tandem_assert(ok && out_len == TANDEM_AUDIT_HASH_LEN);
    EVP_MD_CTX_free(md);
    if (buf != stack) {
        free(buf);
    }
}

static int link_read(MDB_txn *txn, const struct tandem_store *store, char which,
                     struct tandem_audit_link *link)
{
    MDB_val k = {1, &which}, v;
    memset(link, 0, sizeof *link);
    int rv = mdb_get(txn, store->dbi[TANDEM_DB_AUDIT], &k, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (v.mv_size != AUDIT_LINK_LEN) {
        return MDB_CORRUPTED;
    }
    uint64_t be;
    memcpy(&be, v.mv_data, sizeof be);
    link->seq = be64toh(be);
    memcpy(link->hash, (const uint8_t *)v.mv_data + 8, TANDEM_AUDIT_HASH_LEN);
    return 0;
}

static int link_write(MDB_txn *txn, const struct tandem_store *store, char which,
                      const struct tandem_audit_link *link)
{
    uint8_t value[AUDIT_LINK_LEN];
    uint64_t be = htobe64(link->seq);
    memcpy(value, &be, sizeof be);
    memcpy(value + 8, link->hash, TANDEM_AUDIT_HASH_LEN);
    MDB_val k = {1, &which}, v = {sizeof value, value};
    return mdb_put(txn, store->dbi[TANDEM_DB_AUDIT], &k, &v, 0);
}

int tandem_audit_head(MDB_txn *txn, const struct tandem_store *store,
                      struct tandem_audit_link *head)
{
    return link_read(txn, store, TANDEM_AUDIT_KEY_HEAD, head);
}

int tandem_audit_anchor(MDB_txn *txn, const struct tandem_store *store,
                        struct tandem_audit_link *anchor)
{
    return link_read(txn, store, TANDEM_AUDIT_KEY_ANCHOR, anchor);
}

/* Chains and stores one record after *head, which moves to it. */
static int append_one(const struct tandem_apply_ctx *ctx, const Tandem__AuditRecord *in,
                      struct tandem_audit_link *head)
{
    uint8_t key[AUDIT_RECORD_KEY_LEN], hash[TANDEM_AUDIT_HASH_LEN];
    Tandem__AuditRecord record = *in;
    record.seq = head->seq + 1;
    record.time_ms = ctx->now_ms;
    record.prev_hash.data = head->hash;
    record.prev_hash.len = TANDEM_AUDIT_HASH_LEN;
    record.hash.data = NULL;
    record.hash.len = 0;
    tandem_audit_hash(&record, hash);
    record.hash.data = hash;
    record.hash.len = TANDEM_AUDIT_HASH_LEN;
    size_t len = tandem__audit_record__get_packed_size(&record);
    record_key(record.seq, key);
    MDB_val k = {sizeof key, key}, v = {len, NULL};
    int rv = mdb_put(ctx->txn, ctx->store->dbi[TANDEM_DB_AUDIT], &k, &v, MDB_RESERVE);
    if (rv != 0) {
        return tandem_store_error(ctx->store, rv, "audit record");
    }
    tandem__audit_record__pack(&record, v.mv_data);
    head->seq = record.seq;
    memcpy(head->hash, hash, sizeof hash);
    return 0;
}

static bool text_ok(const char *s, size_t max)
{
    return s != NULL && strnlen(s, max + 1) <= max;
}

static bool record_ok(const Tandem__AuditRecord *r)
{
    return text_ok(r->actor, TANDEM_AUDIT_TEXT_LEN_MAX) &&
           text_ok(r->source, TANDEM_AUDIT_TEXT_LEN_MAX) &&
           text_ok(r->node, TANDEM_AUDIT_TEXT_LEN_MAX) &&
           text_ok(r->action, TANDEM_AUDIT_TEXT_LEN_MAX) && r->action[0] != '\0' &&
           text_ok(r->object, TANDEM_AUDIT_TEXT_LEN_MAX) &&
           text_ok(r->detail, TANDEM_AUDIT_DETAIL_LEN_MAX) && r->actor_kind <= TANDEM_AUDIT_NODE;
}

int tandem_audit_apply_append(const struct tandem_apply_ctx *ctx, const Tandem__Command *command,
                              struct tandem_result *result)
{
    const Tandem__AuditAppend *append = command->audit_append;
    struct tandem_audit_link head;
    if (append == NULL || append->n_records == 0 || append->n_records > TANDEM_AUDIT_RECORDS_MAX) {
        tandem_result_error(result, 400, "audit_append holds 1 to %u records",
                            TANDEM_AUDIT_RECORDS_MAX);
        return 0;
    }
    for (size_t i = 0; i < append->n_records; i++) {
        if (!record_ok(append->records[i])) {
            tandem_result_error(result, 400, "audit record %zu: a field is missing or too long", i);
            return 0;
        }
    }
    int rv = tandem_audit_head(ctx->txn, ctx->store, &head);
    if (rv != 0) {
        return tandem_store_error(ctx->store, rv, "audit head");
    }
    uint64_t first = head.seq + 1;
    for (size_t i = 0; i < append->n_records; i++) {
        if ((rv = append_one(ctx, append->records[i], &head)) != 0) {
            return rv;
        }
    }
    if ((rv = link_write(ctx->txn, ctx->store, TANDEM_AUDIT_KEY_HEAD, &head)) != 0) {
        return tandem_store_error(ctx->store, rv, "audit head");
    }
    tandem_result_set(result, 200, "{\"first_seq\":%llu,\"last_seq\":%llu}",
                      (unsigned long long)first, (unsigned long long)head.seq);
    return 0;
}

static Tandem__AuditRecord *record_unpack(const MDB_val *v)
{
    return tandem__audit_record__unpack(NULL, v->mv_size, v->mv_data);
}

/* Checks one stored record against the link before it; fills the verdict when broken. */
static bool link_check(const Tandem__AuditRecord *r, const struct tandem_audit_link *prev,
                       struct tandem_audit_verdict *verdict)
{
    uint8_t hash[TANDEM_AUDIT_HASH_LEN];
    const char *reason = NULL;
    if (r->seq != prev->seq + 1) {
        reason = "gap";
    } else if (r->prev_hash.len != TANDEM_AUDIT_HASH_LEN ||
               memcmp(r->prev_hash.data, prev->hash, TANDEM_AUDIT_HASH_LEN) != 0) {
        reason = "prev mismatch";
    } else {
        tandem_audit_hash(r, hash);
        if (r->hash.len != TANDEM_AUDIT_HASH_LEN ||
            memcmp(r->hash.data, hash, TANDEM_AUDIT_HASH_LEN) != 0) {
            reason = "hash mismatch";
        }
    }
    if (reason != NULL) {
        verdict->ok = false;
        verdict->reason = reason;
        verdict->broken_at = reason[0] == 'g' ? prev->seq + 1 : r->seq;
    }
    return reason == NULL;
}

/* Walks the records from the anchor with cursor c. */
static int verify_walk(MDB_cursor *c, struct tandem_audit_verdict *verdict)
{
    struct tandem_audit_link at = verdict->anchor;
    uint8_t start[AUDIT_RECORD_KEY_LEN];
    record_key(at.seq + 1, start);
    MDB_val k = {sizeof start, start}, v;
    int rv = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    for (; rv == 0; rv = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != AUDIT_RECORD_KEY_LEN ||
            ((const uint8_t *)k.mv_data)[0] != TANDEM_AUDIT_KEY_RECORD) {
            break;
        }
        Tandem__AuditRecord *r = record_unpack(&v);
        if (r == NULL) {
            uint64_t be;
            memcpy(&be, (const uint8_t *)k.mv_data + 1, sizeof be);
            *verdict = (struct tandem_audit_verdict){.ok = false,
                                                     .broken_at = be64toh(be),
                                                     .reason = "undecodable",
                                                     .head = verdict->head,
                                                     .anchor = verdict->anchor};
            return 0;
        }
        bool ok = link_check(r, &at, verdict);
        if (ok) {
            at.seq = r->seq;
            memcpy(at.hash, r->hash.data, TANDEM_AUDIT_HASH_LEN);
            verdict->records++;
        }
        tandem__audit_record__free_unpacked(r, NULL);
        if (!ok) {
            return 0;
        }
    }
    if (rv != 0 && rv != MDB_NOTFOUND) {
        return rv;
    }
    if (at.seq != verdict->head.seq) {
        verdict->ok = false;
        verdict->reason = at.seq < verdict->head.seq ? "gap" : "head mismatch";
        verdict->broken_at = at.seq + 1;
    } else if (memcmp(at.hash, verdict->head.hash, TANDEM_AUDIT_HASH_LEN) != 0) {
        verdict->ok = false;
        verdict->reason = "head mismatch";
        verdict->broken_at = at.seq;
    }
    return 0;
}

int tandem_audit_verify(MDB_txn *txn, const struct tandem_store *store,
                        struct tandem_audit_verdict *verdict)
{
    MDB_cursor *c;
    memset(verdict, 0, sizeof *verdict);
    verdict->ok = true;
    int rv = tandem_audit_head(txn, store, &verdict->head);
    if (rv == 0) {
        rv = tandem_audit_anchor(txn, store, &verdict->anchor);
    }
    if (rv != 0) {
        return rv;
    }
    if ((rv = mdb_cursor_open(txn, store->dbi[TANDEM_DB_AUDIT], &c)) != 0) {
        return rv;
    }
    rv = verify_walk(c, verdict);
    mdb_cursor_close(c);
    return rv;
}

static json_t *hex_json(const ProtobufCBinaryData *b)
{
    char hex[2 * TANDEM_AUDIT_HASH_LEN + 1];
    if (b->len != TANDEM_AUDIT_HASH_LEN) {
        return json_string("");
    }
    tandem_digest_hex(b->data, hex);
    return json_string(hex);
}

json_t *tandem_audit_record_json(const Tandem__AuditRecord *r)
{
    static const char *const kinds[] = {"anonymous", "user", "node"};
    /* node/http/principal.h's enum tandem_principal_via, in its order. */
    static const char *const vias[] = {"none", "cert", "token", "forwarded", "cookie"};
    char time[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format_ms(r->time_ms, time);
    json_t *detail = r->detail[0] != '\0' ? json_loads(r->detail, 0, NULL) : NULL;
    if (detail == NULL && r->detail[0] != '\0') {
        detail = json_string(r->detail);
    }
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:o,s:o,s:o}", "seq",
                     (json_int_t)r->seq, "time", time, "actor", r->actor, "actor_kind",
                     kinds[r->actor_kind <= 2 ? r->actor_kind : 0], "via",
                     vias[r->via <= 4 ? r->via : 0], "source", r->source, "node", r->node, "action",
                     r->action, "object", r->object, "status", (int)r->status, "detail",
                     detail != NULL ? detail : json_null(), "prev_hash", hex_json(&r->prev_hash),
                     "hash", hex_json(&r->hash));
}

int tandem_audit_get(MDB_txn *txn, const struct tandem_store *store, uint64_t seq,
                     Tandem__AuditRecord **out)
{
    uint8_t key[AUDIT_RECORD_KEY_LEN];
    record_key(seq, key);
    MDB_val k = {sizeof key, key}, v;
    *out = NULL;
    int rv = mdb_get(txn, store->dbi[TANDEM_DB_AUDIT], &k, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    *out = record_unpack(&v);
    return *out == NULL ? MDB_CORRUPTED : 0;
}

int tandem_audit_list(MDB_txn *txn, const struct tandem_store *store, uint64_t after_seq,
                      int64_t since_ms, unsigned limit, json_t *out, uint64_t *next)
{
    MDB_cursor *c;
    uint8_t start[AUDIT_RECORD_KEY_LEN];
    unsigned n = 0;
    *next = 0;
    record_key(after_seq + 1, start);
    int rv = mdb_cursor_open(txn, store->dbi[TANDEM_DB_AUDIT], &c);
    if (rv != 0) {
        return rv;
    }
    MDB_val k = {sizeof start, start}, v;
    for (rv = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rv == 0;
         rv = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != AUDIT_RECORD_KEY_LEN ||
            ((const uint8_t *)k.mv_data)[0] != TANDEM_AUDIT_KEY_RECORD) {
            break;
        }
        Tandem__AuditRecord *r = record_unpack(&v);
        if (r == NULL) {
            rv = MDB_CORRUPTED;
            break;
        }
        if (n == limit) {
            tandem__audit_record__free_unpacked(r, NULL);
            break;
        }
        if (r->time_ms >= since_ms) {
            json_array_append_new(out, tandem_audit_record_json(r));
            n++;
            *next = n == limit ? r->seq : 0;
        }
        tandem__audit_record__free_unpacked(r, NULL);
    }
    mdb_cursor_close(c);
    if (n < limit || rv == MDB_NOTFOUND) {
        *next = n == limit && rv == 0 ? *next : 0;
    }
    return rv == MDB_NOTFOUND || rv == 0 ? 0 : rv;
}

int tandem_audit_purge(MDB_txn *txn, struct tandem_store *store, int64_t before_ms,
                       unsigned max_records, uint64_t *purged)
{
    struct tandem_audit_link head, anchor;
    *purged = 0;
    int rv = tandem_audit_head(txn, store, &head);
    if (rv == 0) {
        rv = tandem_audit_anchor(txn, store, &anchor);
    }
    while (rv == 0 && *purged < max_records && anchor.seq + 1 < head.seq) {
        Tandem__AuditRecord *r;
        if ((rv = tandem_audit_get(txn, store, anchor.seq + 1, &r)) != 0 || r == NULL) {
            break; /* a gap stays for verify to name */
        }
        bool old = r->time_ms < before_ms && r->hash.len == TANDEM_AUDIT_HASH_LEN;
        if (old) {
            anchor.seq = r->seq;
            memcpy(anchor.hash, r->hash.data, TANDEM_AUDIT_HASH_LEN);
        }
        tandem__audit_record__free_unpacked(r, NULL);
        if (!old) {
            break;
        }
        uint8_t key[AUDIT_RECORD_KEY_LEN];
        record_key(anchor.seq, key);
        MDB_val k = {sizeof key, key};
        if ((rv = mdb_del(txn, store->dbi[TANDEM_DB_AUDIT], &k, NULL)) == 0) {
            (*purged)++;
        }
    }
    if (rv == 0 && *purged > 0) {
        rv = link_write(txn, store, TANDEM_AUDIT_KEY_ANCHOR, &anchor);
    }
    return rv == 0 ? 0 : tandem_store_error(store, rv, "audit purge");
}

int tandem_audit_retention_check(const struct tandem_apply_ctx *ctx,
                                 const Tandem__RetentionPurge *p, char *errmsg)
{
    if (p->audit_retention_days == 0) {
        return 0;
    }
    if (p->audit_retention_days < TANDEM_AUDIT_RETENTION_DAYS_MIN ||
        p->audit_retention_days > 36500) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "audit_retention_days must be %d..36500",
                 TANDEM_AUDIT_RETENTION_DAYS_MIN);
        return -1;
    }
    if (p->audit_cutoff_ms > ctx->now_ms - (int64_t)p->audit_retention_days * 86400000LL) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE,
                 "audit cutoff is inside the audit retention period of %u days",
                 p->audit_retention_days);
        return -1;
    }
    return 0;
}

int tandem_audit_apply_retention(const struct tandem_apply_ctx *ctx,
                                 const Tandem__RetentionPurge *p, json_t **out)
{
    uint64_t purged;
    struct tandem_audit_link head, anchor;
    char detail[160];
    *out = NULL;
    if (p->audit_retention_days == 0) {
        return 0;
    }
    int rv = tandem_audit_purge(ctx->txn, ctx->store, p->audit_cutoff_ms, TANDEM_AUDIT_PURGE_MAX,
                                &purged);
    if (rv == 0) {
        rv = tandem_audit_anchor(ctx->txn, ctx->store, &anchor);
    }
    if (rv == 0 && purged > 0) {
        /* The deletion record: the purge itself is on the chain it shortened. */
        Tandem__AuditRecord record = TANDEM__AUDIT_RECORD__INIT;
        snprintf(
            detail, sizeof detail, "{\"purged\":%llu,\"anchor_seq\":%llu,\"retention_days\":%u}",
            (unsigned long long)purged, (unsigned long long)anchor.seq, p->audit_retention_days);
        record.actor = p->actor != NULL ? p->actor->user : "";
        record.actor_kind = TANDEM_AUDIT_USER;
        record.source = "";
        record.node = p->actor != NULL ? p->actor->site : "";
        record.action = "audit_purge";
        record.object = "audit";
        record.status = 200;
        record.detail = detail;
        rv = tandem_audit_head(ctx->txn, ctx->store, &head);
        if (rv == 0 && (rv = append_one(ctx, &record, &head)) == 0) {
            rv = link_write(ctx->txn, ctx->store, TANDEM_AUDIT_KEY_HEAD, &head);
        }
    }
    if (rv != 0) {
        return tandem_store_error(ctx->store, rv, "audit retention");
    }
    *out =
        json_pack("{s:I,s:I}", "purged", (json_int_t)purged, "anchor_seq", (json_int_t)anchor.seq);
    return 0;
}
