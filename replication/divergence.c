/* Decodes a fenced node's entries after the fork into the divergence report's entry list and
 * the identifiers they touched. */
#include "replication/divergence.h"

#include <stdio.h>
#include <string.h>

#include "replication/commands.h"
#include "replication/fsm.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

#define HEX_KEY_BYTES_MAX 128 /* a binary key longer than this is cut in the report */

enum touched_kind { TOUCHED_KEY, TOUCHED_JOB, TOUCHED_BOX, TOUCHED_KINDS };

static const char *const touched_names[TOUCHED_KINDS] = {"keys", "jobs", "boxes"};

/* Identifiers in first-seen order, without repeats, bounded. */
struct touched {
    json_t *lists[TOUCHED_KINDS];
    json_t *seen[TOUCHED_KINDS]; /* the lists' members as object keys */
    bool truncated;
};

static void touch(struct touched *t, int kind, json_t *id)
{
    const char *text = json_string_value(id);
    if (text == NULL || json_object_get(t->seen[kind], text) != NULL) {
        return;
    }
    if (json_array_size(t->lists[kind]) >= TANDEM_DIVERGENCE_IDS_MAX) {
        t->truncated = true;
        return;
    }
    json_object_set_new(t->seen[kind], text, json_true());
    json_array_append(t->lists[kind], id);
}

/* A key as text when it is UTF-8, else "hex:..." (never the value). */
static json_t *key_json(ProtobufCBinaryData key)
{
    json_t *text = json_stringn((const char *)key.data, key.len);
    if (text != NULL) {
        return text;
    }
    char hex[4 + 2 * HEX_KEY_BYTES_MAX + 1] = "hex:";
    size_t len = key.len < HEX_KEY_BYTES_MAX ? key.len : HEX_KEY_BYTES_MAX;
    for (size_t i = 0; i < len; i++) {
        snprintf(hex + 4 + 2 * i, 3, "%02x", key.data[i]);
    }
    return json_string(hex);
}

/* Adds id under name to out (a string, or an array under a plural name) and to touched. */
static void id_add(json_t *out, const char *name, struct touched *t, int kind, json_t *id)
{
    if (id == NULL) {
        return;
    }
    touch(t, kind, id);
    json_t *list = json_object_get(out, name);
    if (json_is_array(list)) {
        json_array_append_new(list, id);
    } else {
        json_object_set_new(out, name, id);
    }
}

static void txn_keys(const Tandem__Txn *txn, json_t *out, struct touched *t)
{
    json_object_set_new(out, "keys", json_array());
    for (size_t i = 0; i < txn->n_success; i++) {
        if (txn->success[i]->kind != TANDEM__TXN_OP__KIND__GET) {
            id_add(out, "keys", t, TOUCHED_KEY, key_json(txn->success[i]->key));
        }
    }
    for (size_t i = 0; i < txn->n_failure; i++) {
        if (txn->failure[i]->kind != TANDEM__TXN_OP__KIND__GET) {
            id_add(out, "keys", t, TOUCHED_KEY, key_json(txn->failure[i]->key));
        }
    }
}

static void boxes_checked_in(const Tandem__BoxCheckin *c, json_t *out, struct touched *t)
{
    json_object_set_new(out, "boxes", json_array());
    for (size_t i = 0; i < c->n_boxes; i++) {
        id_add(out, "boxes", t, TOUCHED_BOX, json_string(c->boxes[i]->id));
    }
}

static void jobs_moved(const Tandem__RebalanceApply *a, json_t *out, struct touched *t)
{
    json_object_set_new(out, "jobs", json_array());
    for (size_t i = 0; i < a->n_moves; i++) {
        id_add(out, "jobs", t, TOUCHED_JOB, json_string(a->moves[i]->job));
    }
}

/* A created job without an id gets "J<index>-<n>" at apply, n counting within the entry. */
static void job_created(const Tandem__JobCreate *c, uint64_t index, unsigned *generated,
                        json_t *out, struct touched *t)
{
    char id[64];
    const char *given = c->job != NULL ? c->job->id : NULL;
    if (given != NULL && given[0] != '\0') {
        id_add(out, "job", t, TOUCHED_JOB, json_string(given));
        return;
    }
    snprintf(id, sizeof id, "J%llu-%u", (unsigned long long)index, ++*generated);
    id_add(out, "job", t, TOUCHED_JOB, json_string(id));
    json_object_set_new(out, "generated_id", json_true());
}

static void box_acted(const Tandem__BoxAction *a, json_t *out, struct touched *t)
{
    id_add(out, "box", t, TOUCHED_BOX, json_string(a->id));
    if (a->job != NULL && a->job[0] != '\0') {
        id_add(out, "job", t, TOUCHED_JOB, json_string(a->job)); /* a pick */
    }
}

/* {"type"} plus the identifiers the command names; sites, capacity, retention and drills name
 * no key, job or box: their type says enough. */
static json_t *command_json(const Tandem__Command *c, uint64_t index, unsigned *generated,
                            struct touched *t)
{
    json_t *out = json_pack("{s:s}", "type", tandem_command_name(c));
    int body = (int)c->body_case;
    if (body == TANDEM__COMMAND__BODY_KV_PUT || body == TANDEM__COMMAND__BODY_KV_DELETE) {
        id_add(out, "key", t, TOUCHED_KEY,
               key_json(body == TANDEM__COMMAND__BODY_KV_PUT ? c->kv_put->key : c->kv_delete->key));
    } else if (body == TANDEM__COMMAND__BODY_TXN) {
        txn_keys(c->txn, out, t);
    } else if (body == TANDEM__COMMAND__BODY_JOB_CREATE) {
        job_created(c->job_create, index, generated, out, t);
    } else if (body == TANDEM__COMMAND__BODY_JOB_ACTION) {
        id_add(out, "job", t, TOUCHED_JOB, json_string(c->job_action->id));
    } else if (body == TANDEM__COMMAND__BODY_BOX_CHECKIN) {
        boxes_checked_in(c->box_checkin, out, t);
    } else if (body == TANDEM__COMMAND__BODY_BOX_ACTION) {
        box_acted(c->box_action, out, t);
    } else if (body == TANDEM__COMMAND__BODY_REBALANCE_APPLY) {
        jobs_moved(c->rebalance_apply, out, t);
    }
    return out;
}

static const char *entry_type_name(int type)
{
    switch (type) {
        case RAFT_COMMAND:
            return "command";
        case RAFT_CHANGE:
            return "configuration";
        case RAFT_BARRIER:
            return "barrier";
        default:
            return "unknown";
    }
}

/* One entry as JSON; the identifiers it touched go into t. */
static json_t *entry_json(const struct raft_entry *e, uint64_t index, struct touched *t)
{
    char errmsg[TANDEM_ERRMSG_SIZE], when[TANDEM_RFC3339_LEN_MAX + 1];
    Tandem__Batch *batch = NULL;
    json_t *out = json_pack("{s:I,s:I,s:s}", "index", (json_int_t)index, "term",
                            (json_int_t)e->term, "type", entry_type_name((int)e->type));
    if (out == NULL || e->type != RAFT_COMMAND) {
        return out;
    }
    if (tandem_entry_decode(e->buf.base, e->buf.len, &batch, errmsg) != 0) {
        json_object_set_new(out, "error", json_string(errmsg));
        return out;
    }
    tandem_rfc3339_format(batch->now_ms, when);
    json_object_set_new(out, "proposed", json_string(when));
    json_t *commands = json_array();
    unsigned generated = 0;
    for (size_t i = 0; i < batch->n_commands; i++) {
        json_array_append_new(commands, command_json(batch->commands[i], index, &generated, t));
    }
    json_object_set_new(out, "commands", commands);
    tandem__batch__free_unpacked(batch, NULL);
    return out;
}

json_t *tandem_divergence_entries_json(const struct raft_entry *entries, uint64_t first_index,
                                       size_t n)
{
    struct touched t = {.truncated = false};
    json_t *list = json_array(), *touched = json_object();
    for (int k = 0; k < TOUCHED_KINDS; k++) {
        t.lists[k] = json_array();
        t.seen[k] = json_object();
    }
    for (size_t i = 0; i < n; i++) {
        json_t *entry = entry_json(&entries[i], first_index + i, &t);
        if (i < TANDEM_DIVERGENCE_ENTRIES_MAX) {
            json_array_append(list, entry);
        }
        json_decref(entry);
    }
    for (int k = 0; k < TOUCHED_KINDS; k++) {
        json_object_set_new(touched, touched_names[k], t.lists[k]);
        json_decref(t.seen[k]);
    }
    return json_pack("{s:I,s:o,s:I,s:o,s:b}", "entries_after_fork", (json_int_t)n, "entries", list,
                     "entries_listed", (json_int_t)json_array_size(list), "touched", touched,
                     "touched_truncated", t.truncated);
}
