/* The job and box records: their status machines and record layouts as tables, and the one
 * table-driven implementation of names, transitions, index upkeep, listings and index checks. */
#include "replication/domain/records.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "replication/domain/domain.h"
#include "storage/assert.h"
#include "storage/error.h"

#define ALLOWED_TEXT 160 /* "pick, move, ..." in a refusal */

/* ---- the tables ---- */

#define NAME_OF_STATUS(id, name)             name,
#define NAME_OF_ACTION(id, name, from, to)   name,
#define FROM_OF_ACTION(id, name, from, to)   from,
#define TARGET_OF_ACTION(id, name, from, to) to,

static const char *const job_statuses[] = {TANDEM_JOB_STATUSES(NAME_OF_STATUS)};
static const char *const job_actions[] = {TANDEM_JOB_TRANSITIONS(NAME_OF_ACTION)};
static const uint32_t job_from[] = {TANDEM_JOB_TRANSITIONS(FROM_OF_ACTION)};
static const uint32_t job_to[] = {TANDEM_JOB_TRANSITIONS(TARGET_OF_ACTION)};
static const char *const box_statuses[] = {TANDEM_BOX_STATUSES(NAME_OF_STATUS)};
static const char *const box_actions[] = {TANDEM_BOX_TRANSITIONS(NAME_OF_ACTION)};
static const uint32_t box_from[] = {TANDEM_BOX_TRANSITIONS(FROM_OF_ACTION)};
static const uint32_t box_to[] = {TANDEM_BOX_TRANSITIONS(TARGET_OF_ACTION)};

static const struct domain_machine job_machine = {"job",
                                                  job_statuses,
                                                  job_actions,
                                                  job_from,
                                                  job_to,
                                                  TANDEM_JOB_STATUS_COUNT,
                                                  TANDEM_JOB_ACTION_COUNT};
static const struct domain_machine box_machine = {"box",
                                                  box_statuses,
                                                  box_actions,
                                                  box_from,
                                                  box_to,
                                                  TANDEM_BOX_STATUS_COUNT,
                                                  TANDEM_BOX_ACTION_COUNT};

static const char *job_id(const ProtobufCMessage *record)
{
    return ((const Tandem__JobRecord *)record)->id;
}

static const char *box_id(const ProtobufCMessage *record)
{
    return ((const Tandem__BoxRecord *)record)->id;
}

static void job_index_values(const ProtobufCMessage *record, const char **values)
{
    const Tandem__JobRecord *job = (const Tandem__JobRecord *)record;
    values[0] = job->site;
    values[1] = tandem_job_status_name(job->status);
    values[2] = job->client;
    values[3] = tandem_job_stage(job);
}

/* An unlinked box has no job entry. */
static void box_index_values(const ProtobufCMessage *record, const char **values)
{
    const Tandem__BoxRecord *box = (const Tandem__BoxRecord *)record;
    values[0] = box->site;
    values[1] = tandem_box_status_name(box->status);
    values[2] = box->job[0] != '\0' ? box->job : NULL;
}

static void job_stamp(ProtobufCMessage *record, int64_t now_ms, uint64_t index)
{
    Tandem__JobRecord *job = (Tandem__JobRecord *)record;
    job->updated_ms = now_ms;
    job->mod_index = index;
}

static void box_stamp(ProtobufCMessage *record, int64_t now_ms, uint64_t index)
{
    Tandem__BoxRecord *box = (Tandem__BoxRecord *)record;
    box->updated_ms = now_ms;
    box->mod_index = index;
}

const struct domain_kind domain_job_kind = {
    "job",
    TANDEM_DB_JOBS,
    TANDEM_DB_JOB_IDX,
    &tandem__job_record__descriptor,
    4,
    (const char[]){TANDEM_IDX_SITE, TANDEM_IDX_STATUS, TANDEM_IDX_CLIENT, TANDEM_IDX_STAGE},
    job_id,
    job_index_values,
    job_stamp};
const struct domain_kind domain_box_kind = {
    "box",
    TANDEM_DB_BOXES,
    TANDEM_DB_BOX_IDX,
    &tandem__box_record__descriptor,
    3,
    (const char[]){TANDEM_IDX_SITE, TANDEM_IDX_STATUS, TANDEM_IDX_JOB},
    box_id,
    box_index_values,
    box_stamp};

/* ---- names and transitions ---- */

const char *domain_name(const char *const *names, uint32_t n, uint32_t i)
{
    return i < n ? names[i] : "unknown";
}

int domain_parse(const char *const *names, uint32_t n, const char *name)
{
    for (uint32_t i = 0; name != NULL && i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int domain_transition(const struct domain_machine *m, uint32_t status, uint32_t action,
                      uint32_t *to, char *errmsg)
{
    char allowed[ALLOWED_TEXT] = "";
    size_t used = 0;
    if (status >= m->n_statuses || action >= m->n_actions) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "unknown %s status %u or action %u", m->kind, status,
                 action);
        return -1;
    }
    if ((m->from[action] & (1u << status)) != 0) {
        *to = m->to[action];
        return 0;
    }
    for (uint32_t a = 0; a < m->n_actions && used < sizeof allowed; a++) {
        if ((m->from[a] & (1u << status)) != 0) {
            int n = snprintf(allowed + used, sizeof allowed - used, "%s%s", used ? ", " : "",
                             m->action_names[a]);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "illegal %s transition: %s from %s (allowed from %s: %s)",
             m->kind, m->action_names[action], m->statuses[status], m->statuses[status],
             used ? allowed : "none");
    return -1;
}

/* tandem_<what>_name and tandem_<what>_parse, both over one table of names. */
#define DOMAIN_NAMES(what, names, count)                                                           \
    const char *tandem_##what##_name(uint32_t i)                                                   \
    {                                                                                              \
        return domain_name(names, count, i);                                                       \
    }                                                                                              \
    int tandem_##what##_parse(const char *name)                                                    \
    {                                                                                              \
        return domain_parse(names, count, name);                                                   \
    }

DOMAIN_NAMES(job_status, job_statuses, TANDEM_JOB_STATUS_COUNT)
DOMAIN_NAMES(job_action, job_actions, TANDEM_JOB_ACTION_COUNT)
DOMAIN_NAMES(box_status, box_statuses, TANDEM_BOX_STATUS_COUNT)
DOMAIN_NAMES(box_action, box_actions, TANDEM_BOX_ACTION_COUNT)
#undef DOMAIN_NAMES

int tandem_job_transition(uint32_t status, uint32_t action, uint32_t held_from, uint32_t *to,
                          char *errmsg)
{
    if (domain_transition(&job_machine, status, action, to, errmsg) != 0) {
        return -1;
    }
    *to = *to == TANDEM_JOB_TO_SAME ? status : *to == TANDEM_JOB_TO_HELD_FROM ? held_from : *to;
    return 0;
}

int tandem_box_transition(uint32_t status, uint32_t action, uint32_t *to, char *errmsg)
{
    return domain_transition(&box_machine, status, action, to, errmsg);
}

const char *tandem_job_stage(const Tandem__JobRecord *job)
{
    return job->stage < job->n_stages ? job->stages[job->stage] : "";
}

/* ---- records and their index entries ---- */

int tandem_job_get(struct tandem_store *s, MDB_txn *txn, const char *id, Tandem__JobRecord **out)
{
    return tandem_record_get(s, txn, TANDEM_DB_JOBS, id, strlen(id),
                             &tandem__job_record__descriptor, (ProtobufCMessage **)out);
}

int tandem_box_get(struct tandem_store *s, MDB_txn *txn, const char *id, Tandem__BoxRecord **out)
{
    return tandem_record_get(s, txn, TANDEM_DB_BOXES, id, strlen(id),
                             &tandem__box_record__descriptor, (ProtobufCMessage **)out);
}

static bool same_value(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int domain_record_write(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                        const ProtobufCMessage *old, const ProtobufCMessage *next)
{
    const char *old_values[DOMAIN_INDEX_KINDS_MAX] = {NULL}, *new_values[DOMAIN_INDEX_KINDS_MAX];
    const char *id = kind->id(next);
    int rv = 0;
    tandem_assert(old == NULL || strcmp(kind->id(old), id) == 0);
    kind->index_values(next, new_values);
    if (old != NULL) {
        kind->index_values(old, old_values);
    }
    for (unsigned i = 0; i < kind->n_index && rv == 0; i++) {
        if (old != NULL && same_value(old_values[i], new_values[i])) {
            continue;
        }
        if (old_values[i] != NULL) {
            rv = tandem_index_del(s, txn, kind->idx_db, kind->tags[i], old_values[i], id);
        }
        if (rv == 0 && new_values[i] != NULL) {
            rv = tandem_index_put(s, txn, kind->idx_db, kind->tags[i], new_values[i], id);
        }
    }
    return rv != 0 ? rv : tandem_record_put(s, txn, kind->db, id, strlen(id), next);
}

int tandem_job_write(struct tandem_store *s, MDB_txn *txn, const Tandem__JobRecord *old,
                     const Tandem__JobRecord *next)
{
    return domain_record_write(&domain_job_kind, s, txn, old == NULL ? NULL : &old->base,
                               &next->base);
}

int tandem_box_write(struct tandem_store *s, MDB_txn *txn, const Tandem__BoxRecord *old,
                     const Tandem__BoxRecord *next)
{
    return domain_record_write(&domain_box_kind, s, txn, old == NULL ? NULL : &old->base,
                               &next->base);
}

/* ---- JSON text ---- */

void domain_text_field(struct tandem_text *t, const char *key, const char *value)
{
    tandem_text_cstr(t, key);
    tandem_text_string(t, value, strlen(value));
}

void domain_text_strings(struct tandem_text *t, const char *key, char *const *strings, size_t n)
{
    tandem_text_cstr(t, key);
    tandem_text_raw(t, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            tandem_text_raw(t, ",", 1);
        }
        tandem_text_string(t, strings[i], strlen(strings[i]));
    }
    tandem_text_raw(t, "]", 1);
}

/* ---- records named by index entries ---- */

/* The record an index entry names, rest being the entry's key after its prefix: the id. Fills
 * id (TANDEM_DOMAIN_ID_LEN_MAX + 1 bytes). Returns 0 with *out never NULL, TANDEM_CORRUPT
 * with s->errmsg when the key is no id or names a missing record, or a store error. */
static int record_get_indexed(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                              const uint8_t *rest, size_t rest_len, char *id,
                              ProtobufCMessage **out)
{
    *out = NULL;
    if (rest_len == 0 || rest_len > TANDEM_DOMAIN_ID_LEN_MAX) {
        return tandem_error_set(s->errmsg, TANDEM_CORRUPT, "corrupt %s key of %zu bytes",
                                kind->name, rest_len);
    }
    memcpy(id, rest, rest_len);
    id[rest_len] = '\0';
    int rv = tandem_record_get(s, txn, kind->db, id, rest_len, kind->descriptor, out);
    if (rv == 0 && *out == NULL) {
        rv = tandem_error_set(s->errmsg, TANDEM_CORRUPT, "%s index names missing %s %s", kind->name,
                              kind->name, id);
    }
    return rv;
}

struct runnable_walk {
    struct tandem_store *s;
    MDB_txn *txn;
    tandem_job_visit_fn visit;
    void *arg;
};

static int runnable_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                          bool *stop)
{
    struct runnable_walk *w = arg;
    char id[TANDEM_DOMAIN_ID_LEN_MAX + 1];
    ProtobufCMessage *m = NULL;
    (void)value;
    (void)stop;
    int rv = record_get_indexed(&domain_job_kind, w->s, w->txn, rest, rest_len, id, &m);
    if (rv == 0) {
        rv = w->visit(w->arg, id, (const Tandem__JobRecord *)m);
    }
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rv;
}

int tandem_jobs_runnable_walk(struct tandem_store *s, MDB_txn *txn, size_t scan_max,
                              tandem_job_visit_fn visit, void *arg, bool *exhausted)
{
    static const uint32_t statuses[] = {TANDEM_JOB_QUEUED, TANDEM_JOB_IN_PROGRESS};
    struct runnable_walk w = {s, txn, visit, arg};
    int rv = 0;
    *exhausted = true;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0] && rv == 0 && *exhausted; i++) {
        uint8_t prefix[TANDEM_INDEX_KEY_LEN_MAX];
        size_t len =
            tandem_index_key(TANDEM_IDX_STATUS, tandem_job_status_name(statuses[i]), "", prefix);
        rv = tandem_index_scan(s, txn, TANDEM_DB_JOB_IDX, prefix, len, NULL, 0, scan_max,
                               runnable_visit, &w, exhausted);
    }
    return rv;
}

int tandem_jobs_status_walk(struct tandem_store *s, MDB_txn *txn, uint32_t status,
                            const char *after, size_t scan_max, tandem_job_visit_fn visit,
                            void *arg, bool *exhausted)
{
    struct runnable_walk w = {s, txn, visit, arg};
    uint8_t prefix[TANDEM_INDEX_KEY_LEN_MAX];
    size_t len = tandem_index_key(TANDEM_IDX_STATUS, tandem_job_status_name(status), "", prefix);
    return tandem_index_scan(s, txn, TANDEM_DB_JOB_IDX, prefix, len, (const uint8_t *)after,
                             strlen(after), scan_max, runnable_visit, &w, exhausted);
}

bool domain_rule(bool ok, char *errmsg, const char *fmt, ...)
{
    if (!ok) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(errmsg, TANDEM_ERRMSG_SIZE, fmt, args);
        va_end(args);
    }
    return ok;
}

bool domain_id_rule(const char *name, const char *id, char *errmsg)
{
    return domain_rule(tandem_domain_id_ok(id), errmsg, "%s must be 1 to %d of [A-Za-z0-9._:-]",
                       name, TANDEM_DOMAIN_ID_LEN_MAX);
}

bool domain_text_rule(const char *name, const char *text, bool empty_ok, char *errmsg)
{
    return domain_rule(tandem_domain_text_ok(text, empty_ok), errmsg,
                       "%s must be printable text of %s %d bytes", name,
                       empty_ok ? "at most" : "1 to", TANDEM_DOMAIN_TEXT_LEN_MAX);
}

bool domain_site_rule(const char *site, char *errmsg)
{
    return domain_rule(tandem_domain_site_ok(site), errmsg,
                       "site must be a site label (1 to %d of [A-Za-z0-9._-])",
                       TANDEM_SITE_LEN_MAX);
}

void domain_text_stamps(struct tandem_text *t, int64_t created_ms, int64_t updated_ms,
                        uint64_t create_index, uint64_t mod_index)
{
    tandem_text_cstr(t, ",\"created\":");
    tandem_text_time(t, created_ms);
    tandem_text_cstr(t, ",\"updated\":");
    tandem_text_time(t, updated_ms);
    tandem_text_cstr(t, ",\"create_index\":");
    tandem_text_int(t, (int64_t)create_index);
    tandem_text_cstr(t, ",\"mod_index\":");
    tandem_text_int(t, (int64_t)mod_index);
}

json_t *domain_text_json(struct tandem_text *t)
{
    json_t *out = t->failed ? NULL : json_loadb(t->data, t->len, 0, NULL);
    tandem_text_free(t);
    return out;
}

/* ---- listings ---- */

struct list_walk {
    const struct domain_kind *kind;
    struct tandem_store *s;
    MDB_txn *txn;
    const struct domain_list_query *q;
    struct tandem_text *out;
    bool via_index;
    unsigned count;
    char last[TANDEM_DOMAIN_ID_LEN_MAX + 1];
};

/* Whether every filter of q matches record's index entries. */
static bool record_matches(const struct domain_kind *kind, const ProtobufCMessage *record,
                           const struct domain_list_query *q)
{
    const char *values[DOMAIN_INDEX_KINDS_MAX];
    kind->index_values(record, values);
    for (unsigned f = 0; f < q->n_filters; f++) {
        const char *tag = memchr(kind->tags, q->filters[f].tag, kind->n_index);
        tandem_assert(tag != NULL); /* a filter names one of the kind's indexes */
        const char *value = values[tag - kind->tags];
        if (q->filters[f].value != NULL &&
            (value == NULL || strcmp(value, q->filters[f].value) != 0)) {
            return false;
        }
    }
    return true;
}

static int list_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                      bool *stop)
{
    struct list_walk *w = arg;
    ProtobufCMessage *m = NULL;
    int rv;
    if (w->via_index) {
        rv = record_get_indexed(w->kind, w->s, w->txn, rest, rest_len, w->last, &m);
    } else if (rest_len == 0 || rest_len > TANDEM_DOMAIN_ID_LEN_MAX) {
        rv = tandem_error_set(w->s->errmsg, TANDEM_CORRUPT, "corrupt %s key of %zu bytes",
                              w->kind->name, rest_len);
    } else {
        memcpy(w->last, rest, rest_len);
        w->last[rest_len] = '\0';
        rv = tandem_record_decode(w->s, value, w->kind->descriptor, &m);
    }
    if (rv != 0) {
        return rv;
    }
    if (record_matches(w->kind, m, w->q)) {
        if (w->count > 0) {
            tandem_text_raw(w->out, ",", 1);
        }
        w->q->text(w->out, m);
        *stop = ++w->count >= w->q->limit || w->out->len >= TANDEM_LIST_PAGE_BYTES;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int domain_record_list(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                       const struct domain_list_query *q, struct tandem_text *out,
                       char next[TANDEM_DOMAIN_ID_LEN_MAX + 1])
{
    uint8_t prefix[TANDEM_INDEX_KEY_LEN_MAX];
    size_t prefix_len = 0;
    struct list_walk w = {.kind = kind, .s = s, .txn = txn, .q = q, .out = out};
    const char *after = q->after != NULL ? q->after : "";
    bool exhausted;
    int db = kind->db;
    tandem_assert(q->n_filters <= DOMAIN_INDEX_KINDS_MAX);
    next[0] = '\0';
    /* The caller orders the filters most selective first; the others check each record. */
    for (unsigned i = 0; i < q->n_filters && !w.via_index; i++) {
        if (q->filters[i].value != NULL) {
            prefix_len = tandem_index_key(q->filters[i].tag, q->filters[i].value, "", prefix);
            db = kind->idx_db;
            w.via_index = true;
            if (prefix_len == 0) {
                return 0; /* a filter value longer than any key matches nothing */
            }
        }
    }
    if (q->limit == 0) {
        return 0;
    }
    int rv = tandem_index_scan(s, txn, db, prefix, prefix_len, (const uint8_t *)after,
                               strlen(after), TANDEM_LIST_SCAN_MAX, list_visit, &w, &exhausted);
    if (rv == 0 && !exhausted) {
        memcpy(next, w.last, sizeof w.last);
    }
    return rv;
}

/* ---- index checks ---- */

struct check_walk {
    const struct domain_kind *kind;
    struct tandem_store *s;
    MDB_txn *txn;
    size_t count; /* index entries the records need */
};

static int check_visit(void *arg, const uint8_t *rest, size_t rest_len, const MDB_val *value,
                       bool *stop)
{
    struct check_walk *w = arg;
    const char *kind = w->kind->name, *values[DOMAIN_INDEX_KINDS_MAX];
    uint8_t key[TANDEM_INDEX_KEY_LEN_MAX];
    ProtobufCMessage *m;
    (void)stop;
    int rv = tandem_record_decode(w->s, value, w->kind->descriptor, &m);
    if (rv != 0) {
        return rv;
    }
    const char *id = w->kind->id(m);
    if (strlen(id) != rest_len || memcmp(id, rest, rest_len) != 0) {
        rv = tandem_error_set(w->s->errmsg, TANDEM_CORRUPT, "%s %s is stored under another key",
                              kind, id);
    }
    w->kind->index_values(m, values);
    for (unsigned i = 0; i < w->kind->n_index && rv == 0; i++) {
        if (values[i] == NULL) {
            continue;
        }
        MDB_val k = {.mv_size = tandem_index_key(w->kind->tags[i], values[i], id, key),
                     .mv_data = key},
                v;
        rv = mdb_get(w->txn, w->s->dbi[w->kind->idx_db], &k, &v);
        if (rv == MDB_NOTFOUND) {
            rv = tandem_error_set(w->s->errmsg, TANDEM_CORRUPT, "%s %s has no index entry %c/%s",
                                  kind, id, w->kind->tags[i], values[i]);
        } else if (rv != 0) {
            rv = tandem_error_from_mdb(rv, w->s->errmsg, "index check");
        }
        w->count++;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rv;
}

int domain_record_index_check(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn)
{
    struct check_walk w = {.kind = kind, .s = s, .txn = txn};
    char what[TANDEM_ERRMSG_SIZE];
    bool exhausted;
    uint8_t none[1] = {0};
    int rv = tandem_index_scan(s, txn, kind->db, none, 0, none, 0, SIZE_MAX, check_visit, &w,
                               &exhausted);
    if (rv != 0) {
        return rv;
    }
    snprintf(what, sizeof what, "%s_idx", kind->name);
    return domain_index_count_check(s, txn, kind->idx_db, w.count, what);
}

int tandem_job_index_check(struct tandem_store *s, MDB_txn *txn)
{
    return domain_record_index_check(&domain_job_kind, s, txn);
}

int tandem_box_index_check(struct tandem_store *s, MDB_txn *txn)
{
    return domain_record_index_check(&domain_box_kind, s, txn);
}

/* ---- actions ---- */

void domain_refuse(struct domain_change *c, int status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(c->refuse_errmsg, sizeof c->refuse_errmsg, fmt, args);
    va_end(args);
    c->refuse_status = status;
}

int domain_action_open(const struct domain_kind *kind, const struct tandem_apply_ctx *ctx,
                       const Tandem__Actor *actor, const char *id, bool action_ok,
                       ProtobufCMessage **old, struct tandem_result *result)
{
    char errmsg[TANDEM_ERRMSG_SIZE] = "";
    *old = NULL;
    if (tandem_actor_check(actor, errmsg) != 0 || !tandem_domain_id_ok(id) || !action_ok) {
        char what[TANDEM_ERRMSG_SIZE];
        snprintf(what, sizeof what, actor == NULL ? "empty %s action" : "invalid %s id or action",
                 kind->name);
        tandem_result_error(result, 400, "%s", actor != NULL && errmsg[0] != '\0' ? errmsg : what);
        return 0;
    }
    int rv =
        tandem_record_get(ctx->store, ctx->txn, kind->db, id, strlen(id), kind->descriptor, old);
    if (rv == 0 && *old == NULL) {
        tandem_result_error(result, 404, "%s not found: %s", kind->name, id);
    }
    return rv;
}

int domain_change_close(struct domain_change *c, int rv, int (*after)(struct domain_change *c),
                        json_t *(*json)(const ProtobufCMessage *record),
                        struct tandem_result *result)
{
    const struct tandem_apply_ctx *ctx = c->ctx;
    /* An action has one outcome: a handler that refused changed nothing. */
    tandem_assert(rv != 0 || c->refuse_status == 0 || !c->changed);
    if (rv == 0 && c->refuse_status != 0) {
        tandem_result_error(result, c->refuse_status, "%s", c->refuse_errmsg);
    } else if (rv == 0) {
        if (c->changed) {
            c->kind->stamp((ProtobufCMessage *)&c->next, ctx->now_ms, ctx->index);
            rv = domain_record_write(c->kind, ctx->store, ctx->txn, c->old,
                                     (const ProtobufCMessage *)&c->next);
            if (rv == 0) {
                rv = tandem_trace_append(ctx, c->actor, c->kind->name, c->kind->id(c->old),
                                         c->action_name, c->details);
                c->details = NULL;
            }
            if (rv == 0 && after != NULL) {
                rv = after(c);
            }
        }
        if (rv == 0) {
            tandem_result_jansson(result, 200, json((const ProtobufCMessage *)&c->next));
        }
    }
    json_decref(c->details);
    c->details = NULL;
    return rv;
}

/* JobAction and BoxAction share the fields actor, id and action: one flow reads them through
 * the message's descriptor. */
static const void *command_field(const ProtobufCMessage *command, const char *name)
{
    const ProtobufCFieldDescriptor *field =
        protobuf_c_message_descriptor_get_field_by_name(command->descriptor, name);
    tandem_assert(field != NULL);
    return (const char *)command + field->offset;
}

int domain_apply_action(const struct domain_actions *ops, const struct tandem_apply_ctx *ctx,
                        const ProtobufCMessage *command, struct tandem_result *result)
{
    struct domain_change c = {.kind = ops->kind, .ctx = ctx, .command = command};
    ProtobufCMessage *old = NULL;
    if (command != NULL) {
        c.actor = *(Tandem__Actor *const *)command_field(command, "actor");
        c.action = *(const uint32_t *)command_field(command, "action");
    }
    const char *id = command == NULL ? NULL : *(char *const *)command_field(command, "id");
    int rv =
        domain_action_open(ops->kind, ctx, c.actor, id, c.action < ops->n_actions, &old, result);
    if (rv != 0 || old == NULL) {
        return rv;
    }
    tandem_assert(old->descriptor == ops->kind->descriptor &&
                  ops->kind->descriptor->sizeof_message <= sizeof c.next);
    const char *site = ops->kind == &domain_job_kind ? ((const Tandem__JobRecord *)old)->site
                                                     : ((const Tandem__BoxRecord *)old)->site;
    if (tandem_actor_site_refused(c.actor, ops->kind->name, id, site, result)) {
        protobuf_c_message_free_unpacked(old, NULL);
        return 0;
    }
    memcpy(&c.next, old, ops->kind->descriptor->sizeof_message);
    c.old = old;
    c.action_name = ops->action_name(c.action);
    tandem_assert(c.action < ops->n_actions && ops->handlers[c.action] != NULL);
    if (ops->transition(&c) != 0) {
        c.refuse_status = 409;
    } else {
        rv = ops->handlers[c.action](&c);
    }
    rv = domain_change_close(&c, rv, ops->after, ops->json, result);
    protobuf_c_message_free_unpacked(old, NULL);
    return rv;
}
