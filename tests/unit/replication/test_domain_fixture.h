/* Shared fixture of the domain unit tests: a state machine on a temporary LMDB store, driven with
 * encoded batches exactly as raft would, and builders for the domain's commands. */
#ifndef TANDEM_TEST_DOMAIN_FIXTURE_H
#define TANDEM_TEST_DOMAIN_FIXTURE_H

#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "replication/commands.h"
#include "replication/domain/domain.h"
#include "replication/fsm.h"

#define DOM_MAP_SIZE   ((size_t)256 * 1024 * 1024)
#define DOM_BATCH_MAX  64 /* commands in one test batch */
#define DOM_FD_MAX     16 /* descriptors nftw may hold open */
#define DOM_PROPOSER   7
#define DOM_T0         1700000000000LL /* 2023-11-14T22:13:20Z */
#define DOM_STAGES_MAX 16
#define DOM_TEXT_MAX   256

struct dom {
    char dir[PATH_MAX];
    struct tandem_store store;
    struct tandem_fsm fsm;
    struct tandem_result results[DOM_BATCH_MAX];
    uint64_t index; /* of the last applied entry */
    uint64_t serial;
    int64_t now_ms; /* stamped into the next batch */
};

/* Storage for one command and everything it points to. */
struct dom_cmd {
    Tandem__Command command;
    Tandem__Actor actor;
    Tandem__JobCreate job_create;
    Tandem__JobRecord job;
    char stage_text[DOM_TEXT_MAX];
    char *stages[DOM_STAGES_MAX];
    Tandem__JobAction job_action;
    Tandem__BoxCheckin checkin;
    Tandem__BoxRecord box;
    Tandem__BoxRecord *box_ptr;
    Tandem__BoxAction box_action;
    Tandem__RetentionPurge purge;
};

static inline struct tandem_result *dom_claim(void *data, uint64_t proposer_id, uint64_t serial,
                                              size_t n_commands)
{
    struct dom *d = data;
    if (proposer_id != DOM_PROPOSER || serial != d->serial || n_commands > DOM_BATCH_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < DOM_BATCH_MAX; i++) {
        free(d->results[i].body);
        d->results[i].body = NULL;
        d->results[i].status = 0;
    }
    return d->results;
}

static inline int dom_remove_entry(const char *path, const struct stat *st, int flag,
                                   struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Opens a fresh store in a new temporary directory. */
static inline void dom_open(struct dom *d)
{
    const char *tmp = getenv("TMPDIR");
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s/tandem-domain-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(d->dir));
    int rv = tandem_store_open(&d->store, d->dir, DOM_MAP_SIZE);
    if (rv != 0) {
        fail_msg("tandem_store_open: %s", d->store.errmsg);
    }
    tandem_fsm_init(&d->fsm, &d->store);
    tandem_fsm_set_claim(&d->fsm, dom_claim, d);
    d->now_ms = DOM_T0;
}

static inline void dom_close(struct dom *d)
{
    tandem_store_close(&d->store);
    for (size_t i = 0; i < DOM_BATCH_MAX; i++) {
        free(d->results[i].body);
        d->results[i].body = NULL;
    }
    assert_int_equal(nftw(d->dir, dom_remove_entry, DOM_FD_MAX, FTW_DEPTH | FTW_PHYS), 0);
}

/* Encodes commands as one entry stamped with now_ms; the caller raft_frees buf->base. */
static inline void dom_encode(int64_t now_ms, uint64_t serial, Tandem__Command **commands, size_t n,
                              struct raft_buffer *buf)
{
    Tandem__Batch batch = TANDEM__BATCH__INIT;
    batch.proposer_id = DOM_PROPOSER;
    batch.serial = serial;
    batch.now_ms = now_ms;
    batch.n_commands = n;
    batch.commands = commands;
    assert_int_equal(tandem_entry_encode(&batch, buf), 0);
}

static inline void dom_apply_entry(struct dom *d, const struct raft_buffer *buf)
{
    int rv = tandem_fsm_apply_entry(&d->fsm, ++d->index, buf->base, buf->len);
    if (rv != 0) {
        fail_msg("apply at %llu: %s", (unsigned long long)d->index, d->fsm.errmsg);
    }
}

/* Applies commands as one entry; their results are in d->results. */
static inline void dom_apply_batch(struct dom *d, Tandem__Command **commands, size_t n)
{
    struct raft_buffer buf;
    assert_true(n <= DOM_BATCH_MAX);
    d->serial++;
    dom_encode(d->now_ms, d->serial, commands, n, &buf);
    dom_apply_entry(d, &buf);
    raft_free(buf.base);
}

/* Applies one command; returns its HTTP-style status (body in d->results[0].body). */
static inline int dom_apply(struct dom *d, Tandem__Command *command)
{
    dom_apply_batch(d, &command, 1);
    assert_non_null(d->results[0].body);
    return d->results[0].status;
}

static inline void dom_apply_expect(struct dom *d, Tandem__Command *command, int status)
{
    int got = dom_apply(d, command);
    if (got != status) {
        fail_msg("expected %d, got %d: %s", status, got, d->results[0].body);
    }
}

/* The last result's body as JSON (caller decrefs). */
static inline json_t *dom_body(struct dom *d)
{
    json_t *body = json_loads(d->results[0].body, 0, NULL);
    assert_non_null(body);
    return body;
}

static inline MDB_txn *dom_read(struct dom *d)
{
    MDB_txn *txn;
    assert_int_equal(tandem_store_commit(&d->store), 0);
    assert_int_equal(tandem_store_read_txn(&d->store, &txn), 0);
    return txn;
}

static inline void dom_digest(struct dom *d, uint8_t out[TANDEM_DIGEST_LEN])
{
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_store_state_digest(&d->store, txn, out), 0);
    mdb_txn_abort(txn);
}

/* Fails the test unless every index matches its records exactly. */
static inline void dom_check_indexes(struct dom *d)
{
    MDB_txn *txn = dom_read(d);
    int rv = tandem_job_index_check(&d->store, txn);
    rv = rv != 0 ? rv : tandem_box_index_check(&d->store, txn);
    rv = rv != 0 ? rv : tandem_trace_index_check(&d->store, txn);
    mdb_txn_abort(txn);
    if (rv != 0) {
        fail_msg("index check: %s", d->store.errmsg);
    }
}

static inline Tandem__Command *dom_command(struct dom_cmd *c, const char *user)
{
    memset(c, 0, sizeof *c);
    tandem__command__init(&c->command);
    tandem__actor__init(&c->actor);
    c->actor.user = (char *)(user != NULL ? user : "tester");
    c->actor.site = "east";
    return &c->command;
}

/* stages: "a,b,c", or NULL for the default stages. */
static inline Tandem__Command *dom_job_create(struct dom_cmd *c, const char *id, const char *client,
                                              const char *site, const char *stages)
{
    Tandem__Command *command = dom_command(c, NULL);
    tandem__job_create__init(&c->job_create);
    tandem__job_record__init(&c->job);
    c->job.id = (char *)(id != NULL ? id : "");
    c->job.client = (char *)client;
    c->job.kind = "scan";
    c->job.site = (char *)site;
    c->job.effort = 3;
    if (stages != NULL) {
        snprintf(c->stage_text, sizeof c->stage_text, "%s", stages);
        for (char *save = NULL, *s = strtok_r(c->stage_text, ",", &save);
             s != NULL && c->job.n_stages < DOM_STAGES_MAX; s = strtok_r(NULL, ",", &save)) {
            c->stages[c->job.n_stages++] = s;
        }
        c->job.stages = c->stages;
    }
    c->job_create.actor = &c->actor;
    c->job_create.job = &c->job;
    command->body_case = TANDEM__COMMAND__BODY_JOB_CREATE;
    command->job_create = &c->job_create;
    return command;
}

static inline Tandem__Command *dom_job_action(struct dom_cmd *c, const char *id, int action,
                                              const char *operator_name)
{
    Tandem__Command *command = dom_command(c, NULL);
    tandem__job_action__init(&c->job_action);
    c->job_action.actor = &c->actor;
    c->job_action.id = (char *)id;
    c->job_action.action = (uint32_t)action;
    c->job_action.operator_ = (char *)(operator_name != NULL ? operator_name : "");
    command->body_case = TANDEM__COMMAND__BODY_JOB_ACTION;
    command->job_action = &c->job_action;
    return command;
}

/* One box; shelf NULL checks it in as received. */
static inline Tandem__Command *dom_box_checkin(struct dom_cmd *c, const char *id,
                                               const char *client, const char *site,
                                               const char *shelf)
{
    Tandem__Command *command = dom_command(c, NULL);
    tandem__box_checkin__init(&c->checkin);
    tandem__box_record__init(&c->box);
    c->box.id = (char *)id;
    c->box.ledger = "L-1";
    c->box.client = (char *)client;
    c->box.site = (char *)site;
    c->box.shelf = (char *)(shelf != NULL ? shelf : "");
    c->box_ptr = &c->box;
    c->checkin.actor = &c->actor;
    c->checkin.boxes = &c->box_ptr;
    c->checkin.n_boxes = 1;
    command->body_case = TANDEM__COMMAND__BODY_BOX_CHECKIN;
    command->box_checkin = &c->checkin;
    return command;
}

static inline Tandem__Command *dom_box_action(struct dom_cmd *c, const char *id, int action,
                                              const char *job, const char *site, const char *shelf)
{
    Tandem__Command *command = dom_command(c, NULL);
    tandem__box_action__init(&c->box_action);
    c->box_action.actor = &c->actor;
    c->box_action.id = (char *)id;
    c->box_action.action = (uint32_t)action;
    c->box_action.job = (char *)(job != NULL ? job : "");
    c->box_action.site = (char *)(site != NULL ? site : "");
    c->box_action.shelf = (char *)(shelf != NULL ? shelf : "");
    command->body_case = TANDEM__COMMAND__BODY_BOX_ACTION;
    command->box_action = &c->box_action;
    return command;
}

static inline Tandem__Command *dom_purge(struct dom_cmd *c, int64_t cutoff_ms, uint32_t days,
                                         uint32_t events_max)
{
    Tandem__Command *command = dom_command(c, NULL);
    tandem__retention_purge__init(&c->purge);
    c->purge.actor = &c->actor;
    c->purge.cutoff_ms = cutoff_ms;
    c->purge.retention_days = days;
    c->purge.events_max = events_max;
    command->body_case = TANDEM__COMMAND__BODY_RETENTION_PURGE;
    command->retention_purge = &c->purge;
    return command;
}

/* A listing's comma-separated text as a JSON array (caller decrefs). */
static inline json_t *dom_text_array(const struct tandem_text *t)
{
    assert_false(t->failed);
    char *text = malloc(t->len + 3);
    assert_non_null(text);
    text[0] = '[';
    memcpy(text + 1, t->data != NULL ? t->data : "", t->len);
    text[t->len + 1] = ']';
    text[t->len + 2] = '\0';
    json_error_t jerr;
    json_t *out = json_loads(text, 0, &jerr);
    if (out == NULL) {
        fail_msg("listing is not JSON: %s: %s", jerr.text, text);
    }
    free(text);
    return out;
}

/* The current status name of a job or box ("" when absent). */
static inline const char *dom_status(struct dom *d, const char *kind, const char *id, char *out,
                                     size_t size)
{
    MDB_txn *txn = dom_read(d);
    out[0] = '\0';
    if (strcmp(kind, "job") == 0) {
        Tandem__JobRecord *job = NULL;
        assert_int_equal(tandem_job_get(&d->store, txn, id, &job), 0);
        if (job != NULL) {
            snprintf(out, size, "%s", tandem_job_status_name(job->status));
        }
        tandem__job_record__free_unpacked(job, NULL);
    } else {
        Tandem__BoxRecord *box = NULL;
        assert_int_equal(tandem_box_get(&d->store, txn, id, &box), 0);
        if (box != NULL) {
            snprintf(out, size, "%s", tandem_box_status_name(box->status));
        }
        tandem__box_record__free_unpacked(box, NULL);
    }
    mdb_txn_abort(txn);
    return out;
}

#endif
