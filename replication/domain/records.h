/* Shared by jobs.c and boxes.c (private to domain/): one table-driven status machine and one
 * record layout (record, index entries, listing, index check) serving both kinds of record. */
#ifndef TANDEM_REPLICATION_DOMAIN_RECORDS_H
#define TANDEM_REPLICATION_DOMAIN_RECORDS_H

#include <lmdb.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/domain_codec.h"
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
};

extern const struct domain_kind domain_job_kind, domain_box_kind;

/* Stores next and moves its index entries from old (NULL for a new record). */
int domain_record_write(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                        const ProtobufCMessage *old, const ProtobufCMessage *next);

/* `key` then value as a JSON string; `key` then strings as a JSON array. */
void domain_text_field(struct tandem_text *t, const char *key, const char *value);
void domain_text_strings(struct tandem_text *t, const char *key, char *const *strings, size_t n);

/* One page of a listing: the filter (index tags[i] = values[i], the first non-NULL one picks
 * the index) and how a record matches the query and reads as JSON text. */
struct domain_list_query {
    const char *values[DOMAIN_INDEX_KINDS_MAX]; /* borrowed; NULL = any */
    char tags[DOMAIN_INDEX_KINDS_MAX];
    unsigned n_values;
    const char *after; /* borrowed; NULL = first */
    unsigned limit;
    bool (*matches)(const ProtobufCMessage *record, const void *query);
    void (*text)(struct tandem_text *t, const ProtobufCMessage *record);
    const void *query; /* handed to matches */
};
int domain_record_list(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn,
                       const struct domain_list_query *q, struct tandem_text *out,
                       char next[TANDEM_DOMAIN_ID_LEN_MAX + 1]);

/* Every record is stored under its id with all its index entries, and idx_db holds nothing
 * else. Returns 0, TANDEM_CORRUPT with s->errmsg naming the first mismatch, or a store error. */
int domain_record_index_check(const struct domain_kind *kind, struct tandem_store *s, MDB_txn *txn);
/* Whether idx_db holds exactly `expected` entries (TANDEM_CORRUPT with s->errmsg if not). */
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
