/* The process-management and warehouse domain: job and box rules as transition tables, record
 * and index key layouts, listings, the trace, and the invariant checks apply and tests share. */
#ifndef TANDEM_REPLICATION_DOMAIN_DOMAIN_H
#define TANDEM_REPLICATION_DOMAIN_DOMAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/member.h"
#include "replication/apply.h"
#include "storage/domain_codec.h"
#include "storage/store.h"
#include "tandem.pb-c.h"
#include "storage/error.h"

/* ---- limits ---- */
#define TANDEM_JOB_STAGES_MAX            16         /* stages of one job */
#define TANDEM_JOB_STAGE_LEN_MAX         31         /* a stage name: [a-z0-9_-] */
#define TANDEM_JOB_BOXES_MAX             1000       /* boxes ever picked for one job */
#define TANDEM_JOB_EFFORT_MAX            1000000000 /* work units of one job */
#define TANDEM_JOB_PRIORITY_ABS_MAX      1000000    /* priority in [-max, max] */
#define TANDEM_JOB_ID_ATTEMPTS_MAX       64         /* generated ids tried before giving up */
#define TANDEM_BOX_VOLUMES_MAX           256        /* volumes inside one box */
#define TANDEM_BULK_CHECKIN_ROWS_MAX     10000      /* rows of one bulk check-in */
#define TANDEM_BULK_ROW_ERRORS_MAX       100        /* row errors listed in one refusal */
#define TANDEM_INDIVIDUAL_NUMBER_LEN_MAX 64         /* bytes of the personal-data field */
#define TANDEM_INDIVIDUAL_STORED_LEN_MAX (TANDEM_INDIVIDUAL_NUMBER_LEN_MAX + 33) /* sealed */
#define TANDEM_LIST_LIMIT_DEFAULT        100    /* page size when none is asked for */
#define TANDEM_LIST_LIMIT_MAX            1000   /* largest page of jobs, boxes or events */
#define TANDEM_LIST_SCAN_MAX             100000 /* index entries one filtered page may examine */
#define TANDEM_LIST_PAGE_BYTES           (8 * 1024 * 1024)  /* a page ends early past this text */
#define TANDEM_LIST_BYTES_MAX            (16 * 1024 * 1024) /* text buffer of one page */
#define TANDEM_PURGE_EVENTS_MAX          50000 /* trace events one purge command removes */
#define TANDEM_RETENTION_DAYS_DEFAULT    90
#define TANDEM_RETENTION_DAYS_MIN        1
#define TANDEM_RETENTION_DAYS_MAX        36500
#define TANDEM_MS_PER_DAY                86400000LL
#define TANDEM_ACTOR_DEFAULT             "anonymous"

/* ---- statuses ---- */
/* X(id, name) */
#define TANDEM_JOB_STATUSES(X)                                                                     \
    X(QUEUED, "queued")                                                                            \
    X(IN_PROGRESS, "in_progress")                                                                  \
    X(ON_HOLD, "on_hold")                                                                          \
    X(DONE, "done")                                                                                \
    X(CANCELLED, "cancelled")

#define TANDEM_BOX_STATUSES(X)                                                                     \
    X(RECEIVED, "received")                                                                        \
    X(STORED, "stored")                                                                            \
    X(PICKED, "picked")                                                                            \
    X(IN_PROCESS, "in_process")                                                                    \
    X(RETURNED, "returned")                                                                        \
    X(DISPOSED, "disposed")

#define TANDEM_DOMAIN_ENUM_JOB(id, name) TANDEM_JOB_##id,
enum tandem_job_status { TANDEM_JOB_STATUSES(TANDEM_DOMAIN_ENUM_JOB) TANDEM_JOB_STATUS_COUNT };
#undef TANDEM_DOMAIN_ENUM_JOB
#define TANDEM_DOMAIN_ENUM_BOX(id, name) TANDEM_BOX_##id,
enum tandem_box_status { TANDEM_BOX_STATUSES(TANDEM_DOMAIN_ENUM_BOX) TANDEM_BOX_STATUS_COUNT };
#undef TANDEM_DOMAIN_ENUM_BOX

/* Targets of a job transition that are not a fixed status. */
#define TANDEM_JOB_TO_SAME      100u /* the status does not change (pin, operator) */
#define TANDEM_JOB_TO_HELD_FROM 101u /* back to the status the job was held from */

#define TANDEM_JOB_BIT(s) (1u << TANDEM_JOB_##s)
#define TANDEM_BOX_BIT(s) (1u << TANDEM_BOX_##s)
#define TANDEM_JOB_OPEN                                                                            \
    (TANDEM_JOB_BIT(QUEUED) | TANDEM_JOB_BIT(IN_PROGRESS) | TANDEM_JOB_BIT(ON_HOLD))
#define TANDEM_JOB_RUNNABLE (TANDEM_JOB_BIT(QUEUED) | TANDEM_JOB_BIT(IN_PROGRESS))

/* The legal job moves. X(action id, name, statuses it is allowed from, status it leads to).
 * Guards beyond the table: advance needs a next stage, complete needs the last stage. */
#define TANDEM_JOB_TRANSITIONS(X)                                                                  \
    X(ADVANCE, "advance", TANDEM_JOB_RUNNABLE, TANDEM_JOB_IN_PROGRESS)                             \
    X(HOLD, "hold", TANDEM_JOB_RUNNABLE, TANDEM_JOB_ON_HOLD)                                       \
    X(RESUME, "resume", TANDEM_JOB_BIT(ON_HOLD), TANDEM_JOB_TO_HELD_FROM)                          \
    X(COMPLETE, "complete", TANDEM_JOB_RUNNABLE, TANDEM_JOB_DONE)                                  \
    X(CANCEL, "cancel", TANDEM_JOB_OPEN, TANDEM_JOB_CANCELLED)                                     \
    X(PIN, "pin", TANDEM_JOB_OPEN, TANDEM_JOB_TO_SAME)                                             \
    X(UNPIN, "unpin", TANDEM_JOB_OPEN, TANDEM_JOB_TO_SAME)                                         \
    X(OPERATOR, "operator", TANDEM_JOB_OPEN, TANDEM_JOB_TO_SAME)

/* The legal box moves. "process" is not an API verb: advancing a job moves its picked boxes.
 * Guards beyond the table: pick needs an open job of the same client; dispose needs no open
 * linked job and retain_until passed. Check-in creates a box: received, or stored with a shelf. */
#define TANDEM_BOX_TRANSITIONS(X)                                                                  \
    X(PICK, "pick", TANDEM_BOX_BIT(STORED), TANDEM_BOX_PICKED)                                     \
    X(PROCESS, "process", TANDEM_BOX_BIT(PICKED), TANDEM_BOX_IN_PROCESS)                           \
    X(RETURN, "return", TANDEM_BOX_BIT(PICKED) | TANDEM_BOX_BIT(IN_PROCESS), TANDEM_BOX_RETURNED)  \
    X(MOVE, "move", TANDEM_BOX_BIT(RECEIVED) | TANDEM_BOX_BIT(STORED) | TANDEM_BOX_BIT(RETURNED),  \
      TANDEM_BOX_STORED)                                                                           \
    X(DISPOSE, "dispose", TANDEM_BOX_BIT(STORED) | TANDEM_BOX_BIT(RETURNED), TANDEM_BOX_DISPOSED)

#define TANDEM_DOMAIN_ENUM_JOB_ACTION(id, name, from, to) TANDEM_JOB_ACTION_##id,
enum tandem_job_action {
    TANDEM_JOB_TRANSITIONS(TANDEM_DOMAIN_ENUM_JOB_ACTION) TANDEM_JOB_ACTION_COUNT
};
#undef TANDEM_DOMAIN_ENUM_JOB_ACTION
#define TANDEM_DOMAIN_ENUM_BOX_ACTION(id, name, from, to) TANDEM_BOX_ACTION_##id,
enum tandem_box_action {
    TANDEM_BOX_TRANSITIONS(TANDEM_DOMAIN_ENUM_BOX_ACTION) TANDEM_BOX_ACTION_COUNT
};
#undef TANDEM_DOMAIN_ENUM_BOX_ACTION

/* Names ("unknown" out of range) and parsing (-1 when unknown). */
const char *tandem_job_status_name(uint32_t status);
int tandem_job_status_parse(const char *name);
const char *tandem_job_action_name(uint32_t action);
int tandem_job_action_parse(const char *name);
const char *tandem_box_status_name(uint32_t status);
int tandem_box_status_parse(const char *name);
const char *tandem_box_action_name(uint32_t action);
int tandem_box_action_parse(const char *name);

/* Looks action up in the transition table. Returns 0 with the resulting status in *to, or -1
 * with the rule broken in errmsg (TANDEM_ERRMSG_SIZE bytes), e.g. "illegal box transition: return
 * from stored (allowed from stored: pick, move, dispose)". */
int tandem_job_transition(uint32_t status, uint32_t action, uint32_t held_from, uint32_t *to,
                          char *errmsg);
int tandem_box_transition(uint32_t status, uint32_t action, uint32_t *to, char *errmsg);

/* The name of the job's current stage ("" past its stages). */
const char *tandem_job_stage(const Tandem__JobRecord *job);

/* receive -> scan -> enter -> verify -> ship */
#define TANDEM_JOB_DEFAULT_STAGES_COUNT 5
extern const char *const tandem_job_default_stages[TANDEM_JOB_DEFAULT_STAGES_COUNT];

/* ---- validation, shared by the API (400 before proposing) and apply (a log is data) ---- */
bool tandem_domain_site_ok(const char *site);
bool tandem_job_stage_name_ok(const char *stage);
/* The client-given fields of a new job (id may be ""). Returns 0 or -1 with errmsg. */
int tandem_job_fields_check(const Tandem__JobRecord *job, char *errmsg);
/* The client-given fields of a box row. Returns 0 or -1 with errmsg. */
int tandem_box_fields_check(const Tandem__BoxRecord *box, char *errmsg);
/* Actor user and site. Returns 0 or -1 with errmsg. */
int tandem_actor_check(const Tandem__Actor *actor, char *errmsg);
/* The operator's own-site rule (issue 13), checked at apply so that it cannot race with a BCP
 * invoke moving the work: a site-bound actor acts only on a job or box whose current site is its
 * home site. Returns false when the actor may act; true after filling result with a 403 whose
 * body names the rule (TANDEM_OWN_SITE_RULE), the user's site and the record's. */
#define TANDEM_OWN_SITE_RULE "operator-own-site"
bool tandem_actor_site_refused(const Tandem__Actor *actor, const char *kind, const char *id,
                               const char *site, struct tandem_result *result);

/* ---- records ----
 * jobs:      id -> JobRecord          job_idx: "s\0<site>\0<id>", "t\0<status>\0<id>",
 *                                              "c\0<client>\0<id>", "g\0<stage>\0<id>"
 * boxes:     id -> BoxRecord          box_idx: "s\0<site>\0<id>", "t\0<status>\0<id>",
 *                                              "j\0<job>\0<id>" (when linked)
 * trace:     seq (u64 BE) -> TraceEvent        trace_idx: "<kind>\0<id>\0<seq BE>"
 * disposals: seq (u64 BE) -> DisposalRecord
 * domain_meta: "trace_seq", "disposal_seq" (u64 BE), "job_gen" (index u64 BE, n u32 BE) */
#define TANDEM_IDX_SITE   's'
#define TANDEM_IDX_STATUS 't'
#define TANDEM_IDX_CLIENT 'c'
#define TANDEM_IDX_STAGE  'g'
#define TANDEM_IDX_JOB    'j'

/* *out is NULL when absent; free with tandem__job_record__free_unpacked (or box). */
int tandem_job_get(struct tandem_store *s, MDB_txn *txn, const char *id, Tandem__JobRecord **out);
int tandem_box_get(struct tandem_store *s, MDB_txn *txn, const char *id, Tandem__BoxRecord **out);

/* Visits the runnable jobs (queued, then in progress; each in id order) through the status
 * index, at most scan_max index entries per status; *exhausted is false when that cut the walk
 * short. visit gets each job, borrowed for the call, and stops the walk by returning non-zero.
 * Returns 0, visit's code, TANDEM_CORRUPT when the index names a missing job, or a store
 * error (each with s->errmsg). */
typedef int (*tandem_job_visit_fn)(void *arg, const char *id, const Tandem__JobRecord *job);
int tandem_jobs_runnable_walk(struct tandem_store *s, MDB_txn *txn, size_t scan_max,
                              tandem_job_visit_fn visit, void *arg, bool *exhausted);
/* The same walk over the jobs of one status (enum tandem_job_status) from after (exclusive,
 * "" = first). */
int tandem_jobs_status_walk(struct tandem_store *s, MDB_txn *txn, uint32_t status,
                            const char *after, size_t scan_max, tandem_job_visit_fn visit,
                            void *arg, bool *exhausted);

/* Stores next and moves its index entries from old (NULL for a new record). */
int tandem_job_write(struct tandem_store *s, MDB_txn *txn, const Tandem__JobRecord *old,
                     const Tandem__JobRecord *next);
int tandem_box_write(struct tandem_store *s, MDB_txn *txn, const Tandem__BoxRecord *old,
                     const Tandem__BoxRecord *next);

/* JSON views, as text (listings) and as jansson (single answers; parsed from the same text).
 * personal adds individual_number (single-job answers only, never listings). */
void tandem_job_text(struct tandem_text *t, const Tandem__JobRecord *job, bool personal);
void tandem_box_text(struct tandem_text *t, const Tandem__BoxRecord *box);
json_t *tandem_job_json(const Tandem__JobRecord *job, bool personal);
json_t *tandem_box_json(const Tandem__BoxRecord *box);
json_t *tandem_trace_event_json(const Tandem__TraceEvent *event);
json_t *tandem_disposal_json(const Tandem__DisposalRecord *disposal);

/* ---- listings (the API's GET handlers and the benchmark call these) ---- */
struct tandem_job_query {
    const char *site, *status, *client, *stage; /* borrowed; NULL = any */
    const char *after;                          /* borrowed; exclusive start id, NULL = first */
    unsigned limit;                             /* 1..TANDEM_LIST_LIMIT_MAX */
};
struct tandem_box_query {
    const char *site, *status, *job; /* borrowed; NULL = any */
    const char *after;
    unsigned limit;
};
/* Appends the matching records' JSON objects, comma-separated, to out (init it with
 * TANDEM_LIST_BYTES_MAX) in id order. next gets the id to pass as `after` for the following
 * page, "" when the listing is complete. A page may hold fewer than limit records (filters
 * that matched little within TANDEM_LIST_SCAN_MAX entries, or TANDEM_LIST_PAGE_BYTES of text)
 * and still have a next. */
int tandem_job_list(struct tandem_store *s, MDB_txn *txn, const struct tandem_job_query *q,
                    struct tandem_text *out, char next[TANDEM_DOMAIN_ID_LEN_MAX + 1]);
int tandem_box_list(struct tandem_store *s, MDB_txn *txn, const struct tandem_box_query *q,
                    struct tandem_text *out, char next[TANDEM_DOMAIN_ID_LEN_MAX + 1]);
/* Events of one job or box ("job"/"box") in sequence order after after_seq; *next is the seq to
 * continue from, 0 when complete. */
int tandem_trace_list(struct tandem_store *s, MDB_txn *txn, const char *kind, const char *id,
                      uint64_t after_seq, unsigned limit, json_t *out, uint64_t *next);
int tandem_disposal_list(struct tandem_store *s, MDB_txn *txn, uint64_t after_seq, unsigned limit,
                         json_t *out, uint64_t *next);

/* ---- apply helpers ---- */
/* Appends a trace event for kind/id stamped with the batch's time and index; takes details. */
int tandem_trace_append(const struct tandem_apply_ctx *ctx, const Tandem__Actor *actor,
                        const char *kind, const char *id, const char *action, json_t *details);
/* Stores d under the next disposal sequence number (filled into d->seq). */
int tandem_disposal_append(const struct tandem_apply_ctx *ctx, Tandem__DisposalRecord *d);
/* Increments the u64 counter at key in domain_meta and returns the new value. */
int tandem_domain_counter_next(const struct tandem_apply_ctx *ctx, const char *key,
                               uint64_t *value);
/* Moves the picked boxes of job (just advanced to stage) into in_process, one event each. */
int tandem_box_apply_process(const struct tandem_apply_ctx *ctx, const Tandem__Actor *actor,
                             const Tandem__JobRecord *job);

/* ---- invariants: every index entry matches its record and every record has its entries.
 * Return 0, TANDEM_CORRUPT with s->errmsg naming the first mismatch, or a store error. ---- */
int tandem_job_index_check(struct tandem_store *s, MDB_txn *txn);
int tandem_box_index_check(struct tandem_store *s, MDB_txn *txn);
int tandem_trace_index_check(struct tandem_store *s, MDB_txn *txn);

/* The domain's rows of the command table: applied in jobs.c, boxes.c and trace.c. */
#define TANDEM_DOMAIN_COMMANDS(X)                                                                  \
    X(job_create, TANDEM__COMMAND__BODY_JOB_CREATE, tandem_job_apply_create)                       \
    X(job_action, TANDEM__COMMAND__BODY_JOB_ACTION, tandem_job_apply_action)                       \
    X(box_checkin, TANDEM__COMMAND__BODY_BOX_CHECKIN, tandem_box_apply_checkin)                    \
    X(box_action, TANDEM__COMMAND__BODY_BOX_ACTION, tandem_box_apply_action)                       \
    X(retention_purge, TANDEM__COMMAND__BODY_RETENTION_PURGE, tandem_trace_apply_purge)

#endif
