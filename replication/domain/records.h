/* Shared by jobs.c and boxes.c (private to domain/): one table-driven status machine and one
 * record layout (record, index entries, listing, index check) serving both kinds of record. */
#ifndef TANDEM_REPLICATION_DOMAIN_RECORDS_H
#define TANDEM_REPLICATION_DOMAIN_RECORDS_H

#include <jansson.h>
#include <lmdb.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "storage/domain_codec.h"
#include "storage/error.h"
#include "storage/store.h"

#define DOMAIN_INDEX_KINDS_MAX 4 /* index entries of one record (a job has 4, a box 3) */

/* A kind of record: where it lives, how its index entries are derived, how it is listed. */
struct domain_kind {
    const char *name; /* "job", "box": in messages */
    int db, idx_db;   /* TANDEM_DB_* of the records and of their index */
    const ProtobufCMessageDescriptor *descriptor;
    unsigned n_index;
    const char *tags; /* n_index TANDEM_IDX_* tags */
    const char *(*id)(const ProtobufCMessage *record);
    /* values[i] of tags[i]; NULL when the record has no entry of that kind. */
    void (*index_values)(const ProtobufCMessage *record, const char **values);
    /* Stamps a changed record with the batch's time and index (updated_ms, mod_index). */
    void (*stamp)(ProtobufCMessage *record, int64_t now_ms, uint64_t index);
};

extern const struct domain_kind domain_job_kind, domain_box_kind;

/* One action on one record (a job or a box): the kind's handler changes next (a shallow copy
 * of old) or refuses. */
struct domain_change {
    const struct domain_kind *kind;
    const struct tandem_apply_ctx *ctx;
    const ProtobufCMessage *command; /* borrowed: the JobAction or BoxAction */
    const Tandem__Actor *actor;      /* borrowed: the command's */
    uint32_t action;
    const char *action_name;
    const ProtobufCMessage *old; /* borrowed */
    union {
        Tandem__JobRecord job;
        Tandem__BoxRecord box;
    } next;          /* the kind's shallow copy of old: borrows old's and the command's strings */
    uint32_t to;     /* status the transition table leads to */
    json_t *details; /* owned until the trace takes it */
    bool changed;
    int refuse_status; /* non-zero: refused, refuse_errmsg says why */
    char refuse_errmsg[TANDEM_ERRMSG_SIZE];
};

typedef int (*domain_change_fn)(struct domain_change *c);

void domain_refuse(struct domain_change *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks an action command (actor, id, action_ok) and reads the record it names into *old.
 * Returns 0 with *old set, 0 with *old NULL when result says why not (400, 404), or a store
 * error. The caller frees *old with protobuf_c_message_free_unpacked. */
int domain_action_open(const struct domain_kind *kind, const struct tandem_apply_ctx *ctx,
                       const Tandem__Actor *actor, const char *id, bool action_ok,
                       ProtobufCMessage **old, struct tandem_result *result);

/* Ends c after its handler returned rv: a refusal becomes the result; a change is stamped,
 * written with its index entries and traced, then after() (NULL: nothing) runs, and the
 * result is json(next). Frees c->details. Returns 0 or a store error. */
int domain_change_close(struct domain_change *c, int rv, int (*after)(struct domain_change *c),
                        json_t *(*json)(const ProtobufCMessage *record),
                        struct tandem_result *result);

/* What differs between a job action and a box action. */
struct domain_actions {
    const struct domain_kind *kind;
    uint32_t n_actions;
    const char *(*action_name)(uint32_t action);
    /* The transition table: 0 with c->to, or -1 with c->refuse_errmsg. */
    int (*transition)(struct domain_change *c);
    /* By action: changes c->next or refuses; 0 or a store error. */
    const domain_change_fn *handlers;
    /* After the write and the trace: what else the action changes (NULL: nothing). */
    domain_change_fn after;
    json_t *(*json)(const ProtobufCMessage *record); /* the result body */
};

/* The one flow of an action command (JobAction or BoxAction, NULL when absent): check it, read
 * its record, run the transition table and the action's handler, close. */
int domain_apply_action(const struct domain_actions *ops, const struct tandem_apply_ctx *ctx,
                        const ProtobufCMessage *command, struct tandem_result *result);

/* Stores next and moves its index entries from old (NULL for a new record). */
int domain_record_write(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                        const ProtobufCMessage *old, const ProtobufCMessage *next);

/* Field rules shared by jobs and boxes: each returns whether the rule holds and, when not,
 * fills errmsg (TANDEM_ERRMSG_SIZE) with the refusal. Chained with && they stop at the first
 * broken rule. */
bool domain_rule(bool ok, char *errmsg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool domain_id_rule(const char *name, const char *id, char *errmsg);
bool domain_text_rule(const char *name, const char *text, bool empty_ok, char *errmsg);
bool domain_site_rule(const char *site, char *errmsg);

/* The times and raft indexes every record carries, as JSON members. */
void domain_text_stamps(struct tandem_text *t, int64_t created_ms, int64_t updated_ms,
                        uint64_t create_index, uint64_t mod_index);
/* Parses what t holds (NULL when it failed or does not parse) and frees t. */
json_t *domain_text_json(struct tandem_text *t);

/* `key` then value as a JSON string; `key` then strings as a JSON array. */
void domain_text_field(struct tandem_text *t, const char *key, const char *value);
void domain_text_strings(struct tandem_text *t, const char *key, char *const *strings, size_t n);

/* One filter of a listing: the records whose index entry `tag` holds value (NULL: any). */
struct domain_filter {
    char tag;
    const char *value; /* borrowed */
};

/* One page of a listing. The filters come most selective first: the first one set picks the
 * index to walk, and a record is listed when every filter matches its index entries. */
struct domain_list_query {
    struct domain_filter filters[DOMAIN_INDEX_KINDS_MAX];
    unsigned n_filters;
    const char *after; /* borrowed; NULL = first */
    unsigned limit;
    void (*text)(struct tandem_text *t, const ProtobufCMessage *record); /* a listed record */
};
int domain_record_list(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                       const struct domain_list_query *q, struct tandem_text *out,
                       char next[TANDEM_DOMAIN_ID_LEN_MAX + 1]);

/* Every record is stored under its id with all its index entries, and idx_db holds nothing
 * else. Returns 0, TANDEM_CORRUPT with s->errmsg naming the first mismatch, or a store error. */
int domain_record_index_check(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn);
/* Whether idx_db holds exactly `expected` entries (TANDEM_CORRUPT with s->errmsg if not).
 * In trace.c, below records.c: the trace check needs it too. */
int domain_index_count_check(struct tandem_store *s, MDB_txn *txn, int idx_db, size_t expected,
                             const char *what);

/* A status machine: statuses, and per action the statuses it is allowed from and where it leads. */
struct domain_machine {
    const char *kind;                /* "job", "box" */
    const char *const *statuses;     /* n_statuses names */
    const char *const *action_names; /* n_actions names */
    const uint32_t *from;            /* per action: bit set of statuses */
    const uint32_t *to;              /* per action: the status it leads to (or a TO_* marker) */
    uint32_t n_statuses, n_actions;
};

/* names[i], or "unknown" past n. */
const char *domain_name(const char *const *names, uint32_t n, uint32_t i);
/* The index of name in names, or -1. */
int domain_parse(const char *const *names, uint32_t n, const char *name);
/* 0 with the action's target in *to, or -1 with the refusal in errmsg (TANDEM_ERRMSG_SIZE). */
int domain_transition(const struct domain_machine *m, uint32_t status, uint32_t action,
                      uint32_t *to, char *errmsg);

#endif
