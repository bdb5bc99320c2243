/* A backup's manifest as JSON and back, and the facts read from a state copy
 * (storage/backup.h). */
#include "storage/backup.h"

#include <string.h>

#include "storage/assert.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

static const char *const part_names[] = {
#define TANDEM_BACKUP_PART_NAME(id, name) name,
    TANDEM_BACKUP_PARTS(TANDEM_BACKUP_PART_NAME)
#undef TANDEM_BACKUP_PART_NAME
};

const char *tandem_backup_part_name(int part)
{
    return part >= 0 && part < TANDEM_BACKUP_PART_COUNT ? part_names[part] : "?";
}

json_t *tandem_backup_manifest_json(const struct tandem_backup_manifest *m)
{
    char apply[2 * TANDEM_DIGEST_LEN + 1], state[2 * TANDEM_DIGEST_LEN + 1];
    char data[2 * TANDEM_DIGEST_LEN + 1], sha[2 * TANDEM_DIGEST_LEN + 1];
    char created[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_digest_hex(m->apply_digest, apply);
    tandem_digest_hex(m->state_digest, state);
    tandem_digest_hex(m->data_digest, data);
    tandem_digest_hex(m->state_sha256, sha);
    tandem_rfc3339_format_ms(m->created_ms, created);
    json_t *counts = json_pack("{s:I,s:I,s:I,s:I}", "keys", (json_int_t)m->counts.keys, "jobs",
                               (json_int_t)m->counts.jobs, "boxes", (json_int_t)m->counts.boxes,
                               "trace_events", (json_int_t)m->counts.trace_events);
    if (counts == NULL) {
        return NULL;
    }
    json_t *out = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s,s:o,s:s,s:I,s:I,s:s,s:b,s:I}", "format",
        (json_int_t)m->format, "cluster_id", m->cluster_id, "node", m->node, "site", m->site,
        "tandem_version", m->tandem_version, "epoch", (json_int_t)m->epoch, "term",
        (json_int_t)m->term, "applied_index", (json_int_t)m->applied_index, "apply_digest", apply,
        "state_digest", state, "data_digest", data, "counts", counts, "created", created,
        "created_ms", (json_int_t)m->created_ms, "state_bytes", (json_int_t)m->state_bytes,
        "state_sha256", sha, "encrypted", m->encrypted, "key_id", (json_int_t)m->key_id);
    return out;
}

static int hex_digest(const char *text, uint8_t out[TANDEM_DIGEST_LEN])
{
    if (text == NULL || strlen(text) != 2 * TANDEM_DIGEST_LEN) {
        return -1;
    }
    for (size_t i = 0; i < TANDEM_DIGEST_LEN; i++) {
        unsigned value = 0;
        for (int k = 0; k < 2; k++) {
            char c = text[2 * i + (size_t)k];
            unsigned nibble = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                              : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                                     : 16u;
            if (nibble > 15) {
                return -1;
            }
            value = value << 4 | nibble;
        }
        out[i] = (uint8_t)value;
    }
    return 0;
}

/* A label field into out (TANDEM_BACKUP_LABEL_LEN_MAX + 1 or the version's size). */
static int text_field(json_t *root, const char *name, char *out, size_t size, char *errmsg)
{
    const char *text = json_string_value(json_object_get(root, name));
    if (text == NULL || text[0] == '\0' || strlen(text) >= size) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: field \"%s\" missing or bad",
                                name);
    }
    memcpy(out, text, strlen(text) + 1);
    return 0;
}

static int number_field(json_t *object, const char *name, uint64_t *out, char *errmsg)
{
    json_t *value = json_object_get(object, name);
    if (!json_is_integer(value) || json_integer_value(value) < 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: field \"%s\" missing or bad",
                                name);
    }
    *out = (uint64_t)json_integer_value(value);
    return 0;
}

static int digest_field(json_t *root, const char *name, uint8_t out[TANDEM_DIGEST_LEN],
                        char *errmsg)
{
    if (hex_digest(json_string_value(json_object_get(root, name)), out) != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: field \"%s\" missing or bad",
                                name);
    }
    return 0;
}

static int numbers_parse(json_t *root, struct tandem_backup_manifest *m, char *errmsg)
{
    uint64_t format = 0, created = 0, key_id = 0;
    json_t *counts = json_object_get(root, "counts");
    int rv = number_field(root, "format", &format, errmsg);
    rv = rv != 0 ? rv : number_field(root, "epoch", &m->epoch, errmsg);
    rv = rv != 0 ? rv : number_field(root, "term", &m->term, errmsg);
    rv = rv != 0 ? rv : number_field(root, "applied_index", &m->applied_index, errmsg);
    rv = rv != 0 ? rv : number_field(root, "created_ms", &created, errmsg);
    rv = rv != 0 ? rv : number_field(root, "state_bytes", &m->state_bytes, errmsg);
    rv = rv != 0 ? rv : number_field(root, "key_id", &key_id, errmsg);
    rv = rv != 0 ? rv : number_field(counts, "keys", &m->counts.keys, errmsg);
    rv = rv != 0 ? rv : number_field(counts, "jobs", &m->counts.jobs, errmsg);
    rv = rv != 0 ? rv : number_field(counts, "boxes", &m->counts.boxes, errmsg);
    rv = rv != 0 ? rv : number_field(counts, "trace_events", &m->counts.trace_events, errmsg);
    if (rv == 0 && (format != TANDEM_BACKUP_FORMAT || key_id > UINT32_MAX)) {
        rv = tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: format %llu or key id unknown",
                              (unsigned long long)format);
    }
    m->format = (uint32_t)format;
    m->created_ms = (int64_t)created;
    m->key_id = (uint32_t)key_id;
    return rv;
}

int tandem_backup_manifest_parse(const char *text, size_t len, struct tandem_backup_manifest *out,
                                 char *errmsg)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    memset(out, 0, sizeof *out);
    if (!json_is_object(root)) {
        json_decref(root);
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: not a JSON object: %s",
                                jerr.text);
    }
    int rv = text_field(root, "cluster_id", out->cluster_id, sizeof out->cluster_id, errmsg);
    rv = rv != 0 ? rv : text_field(root, "node", out->node, sizeof out->node, errmsg);
    rv = rv != 0 ? rv : text_field(root, "site", out->site, sizeof out->site, errmsg);
    rv = rv != 0 ? rv
                 : text_field(root, "tandem_version", out->tandem_version,
                              sizeof out->tandem_version, errmsg);
    rv = rv != 0 ? rv : numbers_parse(root, out, errmsg);
    rv = rv != 0 ? rv : digest_field(root, "apply_digest", out->apply_digest, errmsg);
    rv = rv != 0 ? rv : digest_field(root, "state_digest", out->state_digest, errmsg);
    rv = rv != 0 ? rv : digest_field(root, "data_digest", out->data_digest, errmsg);
    rv = rv != 0 ? rv : digest_field(root, "state_sha256", out->state_sha256, errmsg);
    json_t *encrypted = json_object_get(root, "encrypted");
    if (rv == 0 && !json_is_boolean(encrypted)) {
        rv = tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: field \"encrypted\" missing");
    }
    out->encrypted = json_is_true(encrypted);
    json_decref(root);
    return rv;
}

int tandem_backup_counts_read(struct tandem_store *s, MDB_txn *txn,
                              struct tandem_backup_counts *out, char *errmsg)
{
    const int dbs[] = {TANDEM_DB_KV, TANDEM_DB_JOBS, TANDEM_DB_BOXES, TANDEM_DB_TRACE};
    uint64_t *fields[] = {&out->keys, &out->jobs, &out->boxes, &out->trace_events};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        MDB_stat st;
        int rv = mdb_stat(txn, s->dbi[dbs[i]], &st);
        if (rv != 0) {
            return tandem_error_from_mdb(rv, errmsg, "count records");
        }
        *fields[i] = st.ms_entries;
    }
    return 0;
}

/* The facts of a store opened on a copy: index, apply chain, digests and counts. */
static int facts_read(struct tandem_store *s, struct tandem_backup_manifest *facts, char *errmsg)
{
    MDB_txn *txn;
    facts->applied_index = s->applied_index;
    memcpy(facts->apply_digest, s->apply_digest, TANDEM_DIGEST_LEN);
    int rv = tandem_store_read_txn(s, &txn);
    if (rv != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s", s->errmsg);
        return rv;
    }
    /* The functions GET /v1/digest calls (node/api/cluster.c), on the copy. */
    rv = tandem_store_state_digest(s, txn, facts->state_digest);
    if (rv == 0) {
        rv = tandem_store_digest_without(s, txn, TANDEM_DB_AUDIT, facts->data_digest);
    }
    if (rv != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s", s->errmsg);
        rv = rv == TANDEM_STORE ? TANDEM_CORRUPT : rv; /* a walk failed inside the copy */
    } else {
        rv = tandem_backup_counts_read(s, txn, &facts->counts, errmsg);
    }
    mdb_txn_abort(txn);
    return rv;
}

int tandem_backup_state_facts(const char *file, struct tandem_backup_manifest *facts, char *errmsg)
{
    struct tandem_store s;
    int rv = tandem_store_open_readonly(&s, file);
    if (rv != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s", s.errmsg);
        tandem_store_close(&s);
        return rv;
    }
    rv = facts_read(&s, facts, errmsg);
    tandem_store_close(&s);
    return rv;
}
