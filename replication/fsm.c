/* raft FSM over LMDB: batch apply with replay skipping, the apply_digest chain, snapshots. */
#include "replication/fsm.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "replication/bcp/sites.h"
#include "replication/commands.h"
#include "replication/domain/domain.h"
#include "storage/assert.h"
#include "storage/error.h"

int tandem_entry_encode(const Tandem__Batch *batch, struct raft_buffer *buf)
{
    size_t payload = tandem__batch__get_packed_size(batch);
    size_t len = (TANDEM_ENTRY_HEADER_LEN + payload + 7) & ~(size_t)7;
    uint8_t *base;
    uint32_t header[2];
    if (payload > UINT32_MAX) {
        return TANDEM_LIMIT;
    }
    base = raft_malloc(len);
    if (base == NULL) {
        return TANDEM_NOMEM;
    }
    header[0] = htole32(TANDEM_ENTRY_MAGIC);
    header[1] = htole32((uint32_t)payload);
    memcpy(base, header, sizeof header);
    tandem__batch__pack(batch, base + TANDEM_ENTRY_HEADER_LEN);
    memset(base + TANDEM_ENTRY_HEADER_LEN + payload, 0, len - TANDEM_ENTRY_HEADER_LEN - payload);
    buf->base = base;
    buf->len = len;
    return 0;
}

static void unknown_fields_strip(ProtobufCMessage *m);

/* The sub-messages a field of m holds (one, or a repeated field's), each stripped. */
static void field_strip(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    char *at = (char *)m + f->offset;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
        *(uint32_t *)((char *)m + f->quantifier_offset) != f->id) {
        return; /* another member of the oneof is the one set */
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(size_t *)((char *)m + f->quantifier_offset);
        for (size_t i = 0; i < n; i++) {
            unknown_fields_strip((*(ProtobufCMessage ***)at)[i]);
        }
    } else if (*(ProtobufCMessage **)at != NULL) {
        unknown_fields_strip(*(ProtobufCMessage **)at);
    }
}

/* Drops the fields this version does not know, here and in every sub-message. protobuf-c keeps
 * them, and an apply that stores a record copied from the command (job_create's JobRecord) would
 * repack them: one protobuf-c accepts but cannot read back once repacked (field number 0 in a
 * non-minimal varint) made a stored record unreadable (tests/fuzz/regressions/command/). */
static void unknown_fields_strip(ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        free(m->unknown_fields[i].data); /* unpacked with the default allocator */
    }
    free(m->unknown_fields);
    m->unknown_fields = NULL;
    m->n_unknown_fields = 0;
    for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
        if (m->descriptor->fields[i].type == PROTOBUF_C_TYPE_MESSAGE) {
            field_strip(m, &m->descriptor->fields[i]);
        }
    }
}

int tandem_entry_decode(const void *data, size_t len, Tandem__Batch **out, char *errmsg)
{
    uint32_t header[2];
    if (len < TANDEM_ENTRY_HEADER_LEN || len % 8 != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "entry of %zu bytes is not a padded tandem batch", len);
    }
    memcpy(header, data, sizeof header);
    size_t payload = le32toh(header[1]);
    if (le32toh(header[0]) != TANDEM_ENTRY_MAGIC || payload > len - TANDEM_ENTRY_HEADER_LEN) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "entry has a bad header (magic %08x, payload %zu of %zu)",
                                le32toh(header[0]), payload, len);
    }
    *out = tandem__batch__unpack(NULL, payload, (const uint8_t *)data + TANDEM_ENTRY_HEADER_LEN);
    if (*out == NULL) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "entry payload is not a valid Batch message");
    }
    unknown_fields_strip(&(*out)->base);
    return 0;
}

/* What the domains learn from one another through the state machine (see apply.h). */
static const struct tandem_apply_ops apply_ops = {
    .site_invoked = tandem_sites_invoked,
};

/* This chain is the proof that replicas applied the same entries: a failed step must stop the
 * node, never leave a digest half computed. */
int tandem_fsm_digest_step(const uint8_t prev[TANDEM_DIGEST_LEN], uint64_t index, const void *data,
                           size_t len, uint8_t out[TANDEM_DIGEST_LEN], char *errmsg)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint64_t index_le = htole64(index);
    unsigned out_len = 0;
    if (ctx == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "apply digest: out of memory");
    }
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, prev, TANDEM_DIGEST_LEN) == 1 &&
             EVP_DigestUpdate(ctx, &index_le, sizeof index_le) == 1 &&
             EVP_DigestUpdate(ctx, data, len) == 1 && EVP_DigestFinal_ex(ctx, out, &out_len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        return tandem_error_from_ssl(errmsg, "apply digest");
    }
    tandem_assert(out_len == TANDEM_DIGEST_LEN);
    return 0;
}

/* The whole-object checkers, after every apply where invariants are on (Debug and sim builds):
 * every index matches its records, and the site table holds its invariant. Logs what broke. */
static bool state_ok(struct tandem_fsm *f, MDB_txn *txn, uint64_t index)
{
    struct tandem_site_table *sites = malloc(sizeof *sites);
    int rv = sites == NULL ? tandem_error_set(f->store->errmsg, TANDEM_NOMEM, "out of memory")
                           : tandem_sites_load(f->store, txn, sites);
    bool sites_ok = rv == 0 && tandem_site_table_ok(sites);
    free(sites);
    rv = rv != 0 ? rv : tandem_job_index_check(f->store, txn);
    rv = rv != 0 ? rv : tandem_box_index_check(f->store, txn);
    rv = rv != 0 ? rv : tandem_trace_index_check(f->store, txn);
    if (rv != 0 || !sites_ok) {
        fprintf(stderr, "tandem: invariant broken after index %llu: %s\n",
                (unsigned long long)index, rv != 0 ? f->store->errmsg : "site table");
    }
    return rv == 0 && sites_ok;
}

/* Record visits per applied entry that the whole-state checks may cost, on average. */
#define STATE_CHECK_VISITS_PER_ENTRY 256

/* Whether state_ok runs after this entry. It visits every job, box and trace event: run after
 * every entry it made catching up quadratic in the state's size (a restarted Debug node
 * applying 1,400 entries over a few thousand records kept its loop busy for over a minute, and
 * its peers' handshakes timed out). So it runs after every entry while the state is small, and
 * then once every records / STATE_CHECK_VISITS_PER_ENTRY entries: a bounded cost per entry
 * whatever the size, and a broken index is still found, that many entries later at most. */
static bool state_check_due(struct tandem_fsm *f, MDB_txn *txn)
{
    const int dbs[] = {TANDEM_DB_JOBS, TANDEM_DB_BOXES, TANDEM_DB_TRACE};
    uint64_t records = 0;
    if (f->state_checks_skip > 0) {
        f->state_checks_skip--;
        return false;
    }
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        MDB_stat st;
        if (mdb_stat(txn, f->store->dbi[dbs[i]], &st) == 0) {
            records += st.ms_entries;
        }
    }
    f->state_checks_skip = records / STATE_CHECK_VISITS_PER_ENTRY;
    return true;
}

/* Applies every command of batch in ctx's write transaction; non-zero (a store error, fatal)
 * with f->errmsg naming the command. */
static int batch_apply(struct tandem_fsm *f, const struct tandem_apply_ctx *ctx,
                       const Tandem__Batch *batch)
{
    struct tandem_result *results = NULL;
    if (f->claim != NULL) {
        results = f->claim(f->claim_data, batch->proposer_id, batch->serial, batch->n_commands);
    }
    for (size_t i = 0; i < batch->n_commands; i++) {
        int rv =
            tandem_command_apply(ctx, batch->commands[i], results == NULL ? NULL : &results[i]);
        if (rv != 0) {
            snprintf(f->errmsg, sizeof f->errmsg, "apply %s at index %llu: %s",
                     tandem_command_name(batch->commands[i]), (unsigned long long)ctx->index,
                     f->store->errmsg);
            return rv;
        }
        /* Whoever waits gets an answer: an apply function that returned 0 filled its result. */
        tandem_assert(results == NULL || results[i].status != 0);
        f->client_commands_applied += tandem_command_is_client(batch->commands[i]) ? 1 : 0;
    }
    return 0;
}

int tandem_fsm_apply_entry(struct tandem_fsm *f, uint64_t index, const void *data, size_t len)
{
    struct tandem_apply_ctx ctx = {.store = f->store, .index = index, .ops = &apply_ops};
    uint8_t digest[TANDEM_DIGEST_LEN];
    Tandem__Batch *batch;
    uint64_t start = uv_hrtime();
    int rv;

    tandem_assert(index > 0 && data != NULL);
    if (index <= f->store->applied_index) {
        f->entries_skipped++; /* replay after restart: LMDB already holds it */
        return 0;
    }
    /* Not index == applied_index + 1: barriers and configuration changes take raft indexes
     * without reaching the state machine, so the index may skip ahead; it never goes back. */
    if ((rv = tandem_entry_decode(data, len, &batch, f->errmsg)) != 0) {
        return rv;
    }
    if ((rv = tandem_store_write_txn(f->store, &ctx.txn)) != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "%s", f->store->errmsg);
        goto out;
    }
    ctx.now_ms = batch->now_ms;
    ctx.proposer_id = batch->proposer_id;
    if ((rv = batch_apply(f, &ctx, batch)) != 0) {
        goto out;
    }
    tandem_invariant(!state_check_due(f, ctx.txn) || state_ok(f, ctx.txn, index));
    if ((rv = tandem_fsm_digest_step(f->store->apply_digest, index, data, len, digest,
                                     f->errmsg)) != 0) {
        goto out;
    }
    if ((rv = tandem_store_set_applied(f->store, index, digest)) != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "%s", f->store->errmsg);
        goto out;
    }
    /* Postcondition: the store now stands at this entry, with this entry's digest. */
    tandem_assert(f->store->applied_index == index &&
                  memcmp(f->store->apply_digest, digest, sizeof digest) == 0);
    f->entries_applied++;
    f->commands_applied += batch->n_commands;
out:
    tandem__batch__free_unpacked(batch, NULL);
    uint64_t elapsed = uv_hrtime() - start;
    f->apply_ns_total += elapsed;
    if (f->apply_observe != NULL) {
        f->apply_observe(f->observe_data, elapsed);
    }
    return rv;
}

int tandem_log_budget_init(struct tandem_log_budget *b, uint64_t snapshot_bytes,
                           uint64_t trailing_bytes, unsigned threshold_max, unsigned trailing_max)
{
    tandem_assert(threshold_max > 0 && trailing_max > 0);
    memset(b, 0, sizeof *b);
    b->snapshot_bytes = snapshot_bytes;
    b->trailing_bytes = trailing_bytes;
    b->threshold_max = threshold_max;
    b->trailing_max = trailing_max;
    b->ring_cap =
        trailing_max < TANDEM_LOG_BUDGET_RING_MAX ? trailing_max : TANDEM_LOG_BUDGET_RING_MAX;
    b->ring = calloc(b->ring_cap, sizeof *b->ring);
    return b->ring == NULL ? TANDEM_NOMEM : 0;
}

void tandem_log_budget_free(struct tandem_log_budget *b)
{
    free(b->ring);
    b->ring = NULL;
    b->ring_cap = b->ring_n = b->ring_head = 0;
}

void tandem_log_budget_applied(struct tandem_log_budget *b, uint64_t index, uint64_t len)
{
    if (index <= b->snapshot_index) {
        return; /* behind the snapshot: no longer counted in the log */
    }
    b->bytes_since += len;
    b->held_bytes += len;
    size_t slot = (b->ring_head + b->ring_n) % b->ring_cap;
    if (b->ring_n == b->ring_cap) {
        b->ring_head = (b->ring_head + 1) % b->ring_cap; /* forget the oldest */
    } else {
        b->ring_n++;
    }
    b->ring[slot].index = index;
    b->ring[slot].len = len;
}

unsigned tandem_log_budget_threshold(const struct tandem_log_budget *b)
{
    /* 1: raft snapshots at its next check whatever its own count since its last snapshot (which
     * after a restart this budget does not know); raft counts threshold_max itself. */
    uint64_t stretch = b->taken ? 0 : b->stagger_permille;
    uint64_t bytes = b->snapshot_bytes + b->snapshot_bytes * stretch / 1000;
    uint64_t lead_max = b->snapshot_bytes / 4u * 3u;
    bytes -= b->lead_bytes < lead_max ? b->lead_bytes : lead_max; /* start early: see .h */
    uint64_t entries = (uint64_t)b->threshold_max + (uint64_t)b->threshold_max * stretch / 1000;
    if (b->snapshot_bytes != 0 && b->bytes_since >= bytes) {
        return 1;
    }
    return entries < UINT_MAX ? (unsigned)entries : UINT_MAX;
}

unsigned tandem_log_budget_trailing(const struct tandem_log_budget *b, uint64_t index,
                                    uint64_t *kept_bytes)
{
    /* Walk back from the newest entry at or below index while the bytes fit, and no further
     * than trailing_max entries: one walk gives the count raft keeps and the bytes it holds. */
    uint64_t bytes = 0, oldest = index + 1, newest_len = 0;
    for (size_t k = b->ring_n; k > 0; k--) {
        const struct tandem_log_budget_entry *e = &b->ring[(b->ring_head + k - 1) % b->ring_cap];
        if (e->index > index) {
            continue;
        }
        newest_len = e->index == index ? e->len : newest_len;
        if (index - e->index >= b->trailing_max) {
            oldest = index + 1 - b->trailing_max; /* the ceiling in entries */
            break;
        }
        if (b->trailing_bytes != 0 && bytes + e->len > b->trailing_bytes) {
            break;
        }
        bytes += e->len;
        oldest = e->index;
    }
    *kept_bytes = bytes;
    if (b->trailing_bytes == 0) {
        return b->trailing_max;
    }
    uint64_t keep = index + 1 - oldest; /* entries from the oldest kept up to index */
    if (keep == 0) {
        *kept_bytes = newest_len; /* even alone it does not fit, but raft keeps one */
        keep = 1;
    }
    tandem_assert(keep <= b->trailing_max);
    return (unsigned)keep;
}

void tandem_log_budget_taking(struct tandem_log_budget *b, uint64_t kept_bytes)
{
    b->taking_kept = kept_bytes;
    b->taking = true;
}

void tandem_log_budget_taken(struct tandem_log_budget *b, bool written)
{
    if (b->taking && written) {
        /* bytes_since: what followed the snapshot's index (tandem_log_budget_snapshot). */
        b->held_bytes = b->taking_kept + b->bytes_since;
        b->lead_bytes = b->bytes_since;
    }
    b->taking = false;
}

void tandem_log_budget_installed(struct tandem_log_budget *b)
{
    b->held_bytes = b->bytes_since;
    b->taking = false;
}

bool tandem_log_budget_full(const struct tandem_log_budget *b)
{
    return b->snapshot_bytes != 0 && b->trailing_bytes != 0 && b->taking &&
           b->held_bytes >= b->snapshot_bytes + b->trailing_bytes;
}

bool tandem_fsm_log_full(const struct tandem_fsm *f, uint64_t *held, uint64_t *budget)
{
    *held = f->log_budget_on ? f->log_budget.held_bytes : 0;
    *budget = f->log_budget_on ? f->log_budget.snapshot_bytes + f->log_budget.trailing_bytes +
                                     f->log_budget.reserve_bytes
                               : 0;
    return f->log_budget_on && tandem_log_budget_full(&f->log_budget);
}

void tandem_log_budget_snapshot(struct tandem_log_budget *b, uint64_t index)
{
    if (index <= b->snapshot_index) {
        return;
    }
    b->snapshot_index = index;
    b->bytes_since = 0;
    /* Entries after index (applied before the snapshot was recorded) still count. */
    for (size_t k = 0; k < b->ring_n; k++) {
        const struct tandem_log_budget_entry *e = &b->ring[(b->ring_head + k) % b->ring_cap];
        b->bytes_since += e->index > index ? e->len : 0;
    }
}

/* Tells raft the threshold the budget wants now, when it changed. */
static void budget_threshold_set(struct tandem_fsm *f)
{
    unsigned threshold = tandem_log_budget_threshold(&f->log_budget);
    if (threshold != f->snapshot_threshold_now) {
        raft_set_snapshot_threshold(f->raft, threshold);
        f->snapshot_threshold_now = threshold;
    }
}

static int fsm_apply(struct raft_fsm *raft_fsm, const struct raft_buffer *buf, void **result)
{
    struct tandem_fsm *f = raft_fsm->data;
    tandem_assert(f->raft != NULL); /* set before raft_start: the index comes from it */
    *result = NULL;                 /* results travel through the claim hook, never through raft */
    int rv = tandem_fsm_apply_entry(f, raft_last_applied(f->raft) + 1, buf->base, buf->len);
    if (rv != 0) {
        fprintf(stderr, "tandem: FATAL: state machine apply failed: %s\n", f->errmsg);
        /* Dropping the unfinished transaction also drops the group's earlier entries, which
         * raft counts as applied: libraft 0.22 retries this index later, and applying it on top
         * of the older state would lose them on this replica for good. So the store refuses
         * every later write; the node stops (node.c sees the poisoned store) and the raft log
         * replays from the last committed applied_index on restart. */
        tandem_store_abort(f->store);
        tandem_store_poison(f->store);
        return RAFT_IOERR;
    }
    if (f->log_budget_on) {
        /* raft reads the threshold after this apply (src/legacy.c legacyShouldTakeSnapshot). */
        tandem_log_budget_applied(&f->log_budget, raft_last_applied(f->raft) + 1, buf->len);
        budget_threshold_set(f);
    }
    return 0;
}

/* ---- the snapshot's life: a table of allowed moves, checked with what each state holds ---- */

enum { SNAPSHOT_IDLE, SNAPSHOT_PINNED, SNAPSHOT_WRITTEN };

static const struct tandem_sm_conf snapshot_states[] = {
    [SNAPSHOT_IDLE] = {"idle", TANDEM_SM_INITIAL | TANDEM_SM_FINAL, TANDEM_SM_BIT(SNAPSHOT_PINNED)},
    /* finalize without a successful async (raft gave up, or async failed) goes back to idle */
    [SNAPSHOT_PINNED] = {"pinned", 0,
                         TANDEM_SM_BIT(SNAPSHOT_WRITTEN) | TANDEM_SM_BIT(SNAPSHOT_IDLE)},
    [SNAPSHOT_WRITTEN] = {"written", 0, TANDEM_SM_BIT(SNAPSHOT_IDLE)},
};

static bool snapshot_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    const struct tandem_fsm *f = data;
    (void)prev;
    switch (tandem_sm_state(sm)) {
        case SNAPSHOT_IDLE: /* nothing pinned, nothing held */
            return f->snapshot_txn == NULL && f->snapshot_buf == NULL && f->snapshot_bufs == NULL;
        case SNAPSHOT_PINNED: /* a read transaction and raft's buffer array, no bytes yet */
            return f->snapshot_txn != NULL && f->snapshot_bufs != NULL && f->snapshot_buf == NULL;
        case SNAPSHOT_WRITTEN: /* the bytes raft is writing, from the still-pinned state */
            return f->snapshot_txn != NULL && f->snapshot_buf != NULL && f->snapshot_bufs != NULL &&
                   f->snapshot_bufs[0].base == f->snapshot_buf;
        default:
            return false;
    }
}

/* Called on the loop thread: commit what apply grouped, then pin a read transaction so that the
 * serialisation sees exactly the applied state, while apply goes on in new write txns. */
static int fsm_snapshot(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct tandem_fsm *f = raft_fsm->data;
    /* libraft's legacy layer asks for one snapshot at a time; a second would leak the first. */
    tandem_assert(tandem_sm_state(&f->snapshot_sm) == SNAPSHOT_IDLE);
    if (f->snapshot_gate != NULL && !f->snapshot_gate(f->snapshot_gate_data)) {
        /* raft gives up on this snapshot and asks again after the next apply. */
        f->snapshots_deferred++;
        return RAFT_BUSY;
    }
    uint64_t start = uv_hrtime();
    int rv = tandem_store_commit(f->store);
    if (rv == 0) {
        rv = tandem_store_read_txn(f->store, &f->snapshot_txn);
    }
    f->snapshot_ns_total += uv_hrtime() - start;
    if (rv != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "snapshot: %s", f->store->errmsg);
        f->snapshot_txn = NULL;
        return RAFT_IOERR;
    }
    f->snapshot_bufs = raft_malloc(sizeof *f->snapshot_bufs);
    if (f->snapshot_bufs == NULL) {
        mdb_txn_abort(f->snapshot_txn);
        f->snapshot_txn = NULL;
        return RAFT_NOMEM;
    }
    f->snapshot_bufs[0].base = NULL;
    f->snapshot_bufs[0].len = 0;
    if (f->log_budget_on) {
        /* raft passes the trailing count to raft_uv right after this (putSnapshot) and trims its
         * in-memory log with it when the snapshot is written (takeSnapshotCb). */
        uint64_t index = raft_last_applied(f->raft);
        uint64_t kept;
        f->snapshot_trailing_now = tandem_log_budget_trailing(&f->log_budget, index, &kept);
        raft_set_snapshot_trailing(f->raft, f->snapshot_trailing_now);
        tandem_log_budget_taking(&f->log_budget, kept);
        tandem_log_budget_snapshot(&f->log_budget, index);
        f->log_budget.taken = true; /* from here on, every snapshot_log_mib less the lead */
        budget_threshold_set(f);
    }
    tandem_sm_move(&f->snapshot_sm, SNAPSHOT_PINNED);
    *bufs = f->snapshot_bufs;
    *n_bufs = 1;
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs);

static int fsm_snapshot_async(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct tandem_fsm *f = raft_fsm->data;
    size_t len = 0;
    tandem_assert(tandem_sm_state(&f->snapshot_sm) == SNAPSHOT_PINNED);
    if (f->fill_later) {
        /* libraft 0.22.1 calls this on the loop thread: leave the bytes to the thread pool
         * (shield 6 calls tandem_fsm_snapshot_fill before raft_uv reads the buffers). */
        f->fill_view = malloc(sizeof *f->fill_view);
        if (f->fill_view == NULL) {
            fsm_snapshot_finalize(raft_fsm, bufs, n_bufs);
            return RAFT_NOMEM;
        }
        memcpy(f->fill_view, f->store, sizeof *f->fill_view);
        atomic_fetch_add(&f->store->copies, 1); /* a restore waits for the reader */
        *bufs = f->snapshot_bufs;
        *n_bufs = 1;
        return 0;
    }
    uint64_t start = uv_hrtime();
    int rv = tandem_store_snapshot_write(f->store, f->snapshot_txn, &f->snapshot_buf, &len);
    f->snapshot_ns_total += uv_hrtime() - start;
    if (rv != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "snapshot: %s", f->store->errmsg);
        /* raft calls no snapshot_finalize after a failed snapshot_async: release here. */
        fsm_snapshot_finalize(raft_fsm, bufs, n_bufs);
        *bufs = NULL;
        *n_bufs = 0;
        return RAFT_IOERR;
    }
    f->snapshot_bufs[0].base = f->snapshot_buf;
    f->snapshot_bufs[0].len = len;
    tandem_sm_move(&f->snapshot_sm, SNAPSHOT_WRITTEN);
    *bufs = f->snapshot_bufs;
    *n_bufs = 1;
    f->snapshots_taken++;
    return 0;
}

/* On the thread pool: the pinned state into a new snapshot file, whose reference becomes the
 * bytes raft stores (fill_buf). */
static int snapshot_file_fill(struct tandem_fsm *f)
{
    struct tandem_snapshot_ref ref;
    uint8_t *bytes = malloc(TANDEM_SNAPSHOT_REF_LEN);
    if (bytes == NULL) {
        return tandem_error_set(f->fill_view->errmsg, TANDEM_NOMEM,
                                "snapshot reference: out of memory");
    }
    int rv = tandem_snapshot_file_write(f->fill_view, f->snapshot_txn, f->files_dir, &ref);
    if (rv != 0) {
        free(bytes);
        return rv;
    }
    tandem_snapshot_ref_encode(&ref, bytes);
    f->fill_buf = bytes;
    f->fill_len = TANDEM_SNAPSHOT_REF_LEN;
    return 0;
}

/* Whether this snapshot goes to a file: one is configured and the state is past the inline
 * bound (the store's used pages, a bound above what the serialised state takes). */
static bool snapshot_to_file(const struct tandem_fsm *f, MDB_env *env)
{
    return f->files_dir[0] != '\0' && tandem_store_used_bytes(env) > f->files_inline_max;
}

int tandem_fsm_snapshot_fill(void *data)
{
    struct tandem_fsm *f = data;
    /* Only this thread touches fill_view and the fill_ fields until filled runs; the pinned
     * read transaction may be used here (MDB_NOTLS). */
    if (snapshot_to_file(f, f->fill_view->env)) {
        f->fill_rv = snapshot_file_fill(f);
    } else {
        f->fill_rv =
            tandem_store_snapshot_write(f->fill_view, f->snapshot_txn, &f->fill_buf, &f->fill_len);
    }
    return f->fill_rv == 0 ? 0 : RAFT_IOERR;
}

void tandem_fsm_snapshot_filled(void *data, int status)
{
    struct tandem_fsm *f = data;
    tandem_assert(f->fill_later && f->fill_view != NULL);
    tandem_assert(tandem_sm_state(&f->snapshot_sm) == SNAPSHOT_PINNED);
    atomic_fetch_sub(&f->store->copies, 1);
    if (status == 0) {
        f->snapshot_buf = f->fill_buf;
        f->snapshot_bufs[0].base = f->fill_buf;
        f->snapshot_bufs[0].len = f->fill_len;
        tandem_sm_move(&f->snapshot_sm, SNAPSHOT_WRITTEN);
        f->snapshots_taken++;
        f->snapshot_files_written +=
            memcmp(f->fill_buf, TANDEM_SNAPSHOT_REF_MAGIC, 8) == 0 ? 1 : 0; /* 136 B at least */
    } else {
        snprintf(f->errmsg, sizeof f->errmsg, "snapshot: %s",
                 f->fill_rv != 0 ? f->fill_view->errmsg : "the thread pool refused the work");
        fprintf(stderr, "tandem: %s\n", f->errmsg);
        f->snapshots_failed++; /* raft tries again later; meanwhile its log keeps growing */
        free(f->fill_buf);     /* NULL unless the work failed after the worker wrote */
    }
    free(f->fill_view);
    f->fill_view = NULL;
    f->fill_buf = NULL;
    f->fill_len = 0;
    f->fill_rv = 0;
}

bool tandem_fsm_snapshot_taking(const struct tandem_fsm *f)
{
    return tandem_sm_state(&f->snapshot_sm) != SNAPSHOT_IDLE;
}

static int fsm_snapshot_finalize(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    struct tandem_fsm *f = raft_fsm->data;
    (void)bufs;
    (void)n_bufs;
    tandem_assert(tandem_sm_state(&f->snapshot_sm) != SNAPSHOT_IDLE);
    tandem_assert(f->snapshot_txn != NULL);
    tandem_assert(f->fill_view == NULL); /* never while the thread pool reads the txn */
    if (f->log_budget_on) {
        /* Written: raft trims its log right after this (legacy takeSnapshotCb). */
        tandem_log_budget_taken(&f->log_budget,
                                tandem_sm_state(&f->snapshot_sm) == SNAPSHOT_WRITTEN);
    }
    mdb_txn_abort(f->snapshot_txn);
    f->snapshot_txn = NULL;
    free(f->snapshot_buf);
    f->snapshot_buf = NULL;
    raft_free(f->snapshot_bufs);
    f->snapshot_bufs = NULL;
    tandem_sm_move(&f->snapshot_sm, SNAPSHOT_IDLE);
    return 0;
}

/* Whether raft calls restore from an installed snapshot (legacyHandleUpdateCommitIndex) rather
 * than from raft_start: raft_start restores before it loads the log into its trail (empty until
 * then), an install after TrailRestore put the snapshot's index there. */
static bool restore_at_runtime(const struct tandem_fsm *f)
{
    return f->raft != NULL && raft_last_index(f->raft) != 0;
}

/* The path of the file ref names, in the fsm's directory. */
static void ref_path(const struct tandem_fsm *f, const struct tandem_snapshot_ref *ref, char *out,
                     size_t out_size)
{
    char name[TANDEM_SNAPSHOT_FILE_NAME_SIZE];
    tandem_snapshot_file_name(ref, name);
    snprintf(out, out_size, "%.*s/%s", PATH_MAX - TANDEM_SNAPSHOT_FILE_NAME_SIZE - 2, f->files_dir,
             name);
}

/* Sleeps ms in steps, false once cancelled. */
static bool fetch_pause(struct tandem_fsm *f, unsigned ms)
{
    for (unsigned slept = 0; slept < ms; slept += 100) {
        if (atomic_load(&f->fetch_cancel)) {
            return false;
        }
        (void)usleep(100 * 1000);
    }
    return !atomic_load(&f->fetch_cancel);
}

/* On the thread pool: the file ref names into path, from sender first, then from every member
 * of the snapshot's configuration, round after round until fetch_deadline_ms. A
 * file fetched is checked by the prepare that maps it (the reference's checksum covers it). */
static int ref_fetch(struct tandem_fsm *f, const struct raft_snapshot *snapshot,
                     const struct tandem_snapshot_ref *ref, const char *sender, const char *path)
{
    char part[PATH_MAX + 8], name[TANDEM_SNAPSHOT_FILE_NAME_SIZE], errmsg[TANDEM_ERRMSG_SIZE];
    uint64_t started = uv_hrtime();
    unsigned tries = 0;
    tandem_snapshot_file_name(ref, name);
    snprintf(part, sizeof part, "%s.part", path);
    if (f->fetch == NULL) {
        return tandem_error_set(f->prepare_errmsg, TANDEM_NOTFOUND,
                                "snapshot file %s: absent, and this node fetches none", name);
    }
    errmsg[0] = '\0';
    do {
        for (unsigned i = 0; i <= snapshot->configuration.n; i++) {
            const struct raft_server *member =
                i == 0 ? NULL : &snapshot->configuration.servers[i - 1];
            const char *from = member == NULL ? sender : member->address;
            bool again = member != NULL && sender != NULL && strcmp(from, sender) == 0;
            bool self = member != NULL && f->raft != NULL && member->id == f->raft->id;
            if (from == NULL || from[0] == '\0' || again || self) {
                continue; /* no sender, the sender again, or this node */
            }
            tries++;
            int rv = f->fetch(f->fetch_data, from, name, ref->len, part, &f->fetch_cancel, errmsg);
            if (rv == 0 && rename(part, path) == 0) {
                tandem_store_fsync_parent(path);
                atomic_fetch_add(&f->snapshot_files_fetched, 1);
                atomic_fetch_add(&f->snapshot_fetch_bytes, ref->len);
                return 0;
            }
            if (rv == 0) {
                (void)tandem_error_from_errno(errno, errmsg, "snapshot file rename");
            }
            (void)unlink(part);
            atomic_fetch_add(&f->snapshot_fetch_failures, 1);
            fprintf(stderr, "tandem: snapshot file %s from %.100s: %s\n", name, from, errmsg);
            if (atomic_load(&f->fetch_cancel)) {
                break;
            }
        }
    } while ((uv_hrtime() - started) / 1000000u < f->fetch_deadline_ms &&
             fetch_pause(f, TANDEM_SNAPSHOT_FETCH_PAUSE_MS));
    return tandem_error_set(f->prepare_errmsg, TANDEM_NET,
                            "snapshot file %s: not fetched from any member in %u tries (%.200s)",
                            name, tries, errmsg[0] != '\0' ? errmsg : "no member to ask");
}

/* On the thread pool: a reference's file, fetched when absent, mapped (install_map) and built
 * beside the store. */
static int ref_prepare(struct tandem_fsm *f, const struct raft_snapshot *snapshot,
                       const struct tandem_snapshot_ref *ref, const char *sender)
{
    char path[PATH_MAX];
    struct stat st;
    if (f->files_dir[0] == '\0') {
        return tandem_error_set(f->prepare_errmsg, TANDEM_INVALID,
                                "a snapshot file reference, but this node keeps no snapshot files");
    }
    ref_path(f, ref, path, sizeof path);
    int rv = stat(path, &st) == 0 && (uint64_t)st.st_size == ref->len
                 ? 0
                 : ref_fetch(f, snapshot, ref, sender, path);
    if (rv == 0) {
        rv = tandem_store_snapshot_map(path, &f->install_map, f->prepare_errmsg);
    }
    if (rv == 0) {
        /* A file that claims to be another snapshot is refused before the build reads it all. */
        uint64_t index = 0;
        uint8_t checksum[TANDEM_DIGEST_LEN];
        rv = tandem_store_snapshot_peek(f->install_map.base, f->install_map.len, &index, checksum,
                                        f->prepare_errmsg);
        if (rv == 0 &&
            (index != ref->index || memcmp(checksum, ref->checksum, TANDEM_DIGEST_LEN) != 0)) {
            rv = tandem_error_set(f->prepare_errmsg, TANDEM_CORRUPT,
                                  "snapshot file %s is not the one the reference names", path);
        }
    }
    if (rv == 0) {
        rv = tandem_store_restore_prepare(f->store->dir, f->store->map_size, f->install_map.base,
                                          f->install_map.len, &f->prepared, f->prepare_errmsg);
    }
    if (rv == 0 && memcmp(f->prepared.checksum, ref->checksum, TANDEM_DIGEST_LEN) != 0) {
        rv = tandem_error_set(f->prepare_errmsg, TANDEM_CORRUPT,
                              "snapshot file %s is not the one the reference names", path);
        memset(&f->prepared, 0, sizeof f->prepared); /* its DIR.new goes with the next build */
    }
    if (rv != 0) {
        tandem_store_snapshot_unmap(&f->install_map);
        if (rv == TANDEM_CORRUPT) {
            (void)unlink(path); /* the next install fetches it again */
        }
        return rv;
    }
    (void)tandem_snapshot_files_prune(f->files_dir, TANDEM_SNAPSHOT_FILES_KEPT, false);
    return 0;
}

int tandem_fsm_install_prepare(void *data, const struct raft_snapshot *snapshot, const char *sender,
                               char *errmsg)
{
    struct tandem_fsm *f = data;
    struct tandem_snapshot_ref ref;
    /* One install at a time. One whose put failed never reached the restore: its DIR.new is
     * rebuilt below (or removed when the store next opens). */
    memset(&f->prepared, 0, sizeof f->prepared);
    tandem_store_snapshot_unmap(&f->install_map);
    f->prepare_rv = 0;
    if (snapshot->n_bufs != 1) { /* raft hands an install over in one buffer */
        f->prepare_rv =
            tandem_error_set(f->prepare_errmsg, TANDEM_INVALID, "%u buffers", snapshot->n_bufs);
        return 0;
    }
    int is_ref = tandem_snapshot_ref_decode(snapshot->bufs[0].base, snapshot->bufs[0].len, &ref,
                                            f->prepare_errmsg);
    if (is_ref != 0 && is_ref != 1) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s", f->prepare_errmsg);
        return is_ref; /* no restore could read it either */
    }
    /* Only the store's path and size are read here: the loop changes neither (the restore that
     * swaps directories follows this work, never runs beside it). */
    f->prepare_rv = is_ref == 1 ? ref_prepare(f, snapshot, &ref, sender)
                                : tandem_store_restore_prepare(
                                      f->store->dir, f->store->map_size, snapshot->bufs[0].base,
                                      snapshot->bufs[0].len, &f->prepared, f->prepare_errmsg);
    if (is_ref == 1 && f->prepare_rv != 0) {
        /* The restore on the loop could not fetch the file: the install must not be stored. */
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s", f->prepare_errmsg);
        return f->prepare_rv;
    }
    /* The swap waits for the store's readers on the pool (backups, scans, digests: minutes at
     * millions of keys), here, rather than on the loop: from now on none starts. */
    char drain_errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_store_copies_drain(f->store, drain_errmsg) != 0) {
        fprintf(stderr, "tandem: %s; the restore waits for it\n", drain_errmsg);
    }
    return 0;
}

void tandem_fsm_install_done(void *data)
{
    struct tandem_fsm *f = data;
    tandem_store_swap_done(f->store);
}

/* The restore of a reference (on the loop): the state prepared from its file, or at raft_start
 * the node's own file. A state already at or past the reference needs no file. */
static int ref_restore(struct tandem_fsm *f, const struct tandem_snapshot_ref *ref)
{
    char path[PATH_MAX];
    int rv = tandem_store_commit(f->store);
    if (rv != 0 || f->store->applied_index >= ref->index) {
        if (rv == 0 && f->prepared.ready) {
            rv = tandem_store_restore_prepared(f->store, f->install_map.base, f->install_map.len,
                                               &f->prepared); /* skips, and removes DIR.new */
        }
        return rv;
    }
    if (f->install_map.base == NULL) { /* raft_start, or a prepare that failed */
        if (f->files_dir[0] == '\0') {
            return tandem_error_set(f->store->errmsg, TANDEM_INVALID,
                                    "a snapshot file reference, but this node keeps no files");
        }
        ref_path(f, ref, path, sizeof path);
        if ((rv = tandem_store_snapshot_map(path, &f->install_map, f->store->errmsg)) != 0) {
            return rv;
        }
    }
    return tandem_store_restore_prepared(f->store, f->install_map.base, f->install_map.len,
                                         &f->prepared);
}

/* Ours to free once we return 0. On a failure libraft 0.22.1 differs by caller (src/legacy.c):
 * raft_start frees the buffer (snapshotDestroy) and fails; an install at runtime neither frees
 * it nor uses it again (a leak), and goes on with a state machine that missed the snapshot while
 * its log holds nothing before it: the node could never apply again. So at runtime we free the
 * buffer and poison the store: the node stops (node.c), and on restart raft_start retries the
 * restore from the snapshot raft persisted, or fails and says so. */
static int fsm_restore(struct raft_fsm *raft_fsm, struct raft_buffer *buf)
{
    struct tandem_fsm *f = raft_fsm->data;
    uint64_t start = uv_hrtime();
    bool prepared = f->prepared.ready;
    if (f->prepare_rv != 0) {
        fprintf(stderr, "tandem: snapshot prepare failed, restoring on the loop: %s\n",
                f->prepare_errmsg);
        f->prepare_rv = 0;
    }
    struct tandem_snapshot_ref ref;
    int rv = tandem_snapshot_ref_decode(buf->base, buf->len, &ref, f->store->errmsg);
    if (rv == 1) {
        rv = ref_restore(f, &ref);
    } else if (rv == 0) {
        rv = tandem_store_restore_prepared(f->store, buf->base, buf->len, &f->prepared);
    }
    memset(&f->prepared, 0, sizeof f->prepared); /* used, or removed: never twice */
    tandem_store_snapshot_unmap(&f->install_map);
    f->installs_prepared += prepared && rv == 0 ? 1 : 0;
    f->restore_ns_total += uv_hrtime() - start;
    if (rv != 0) {
        snprintf(f->errmsg, sizeof f->errmsg, "%s", f->store->errmsg);
        fprintf(stderr, "tandem: restore failed: %s\n", f->errmsg);
        if (restore_at_runtime(f)) {
            raft_free(buf->base);
            tandem_store_poison(f->store);
        }
        return RAFT_IOERR;
    }
    f->snapshots_restored++;
    raft_free(buf->base);
    if (f->log_budget_on) {
        tandem_log_budget_snapshot(&f->log_budget, f->store->applied_index);
        tandem_log_budget_installed(&f->log_budget);
        f->log_budget.taken = false; /* now in the sender's phase: stagger again */
        budget_threshold_set(f);
    }
    return 0;
}

void tandem_fsm_init(struct tandem_fsm *f, struct tandem_store *store)
{
    memset(f, 0, sizeof *f);
    f->store = store;
    f->raft_fsm.version = 3;
    f->raft_fsm.data = f;
    f->raft_fsm.apply = fsm_apply;
    f->raft_fsm.snapshot = fsm_snapshot;
    f->raft_fsm.restore = fsm_restore;
    f->raft_fsm.snapshot_finalize = fsm_snapshot_finalize;
    f->raft_fsm.snapshot_async = fsm_snapshot_async;
    tandem_sm_init(&f->snapshot_sm, "snapshot", snapshot_states,
                   (int)(sizeof snapshot_states / sizeof snapshot_states[0]), SNAPSHOT_IDLE,
                   snapshot_invariant, f);
}

void tandem_fsm_set_raft(struct tandem_fsm *f, struct raft *raft)
{
    f->raft = raft;
}

int tandem_fsm_set_log_budget(struct tandem_fsm *f, uint64_t snapshot_bytes,
                              uint64_t trailing_bytes, uint64_t reserve_bytes,
                              unsigned threshold_max, unsigned trailing_max)
{
    tandem_assert(f->raft != NULL && !f->log_budget_on);
    /* The entries keep at least half the trailing, whatever the reserve asked. */
    reserve_bytes = reserve_bytes <= trailing_bytes / 2 ? reserve_bytes : trailing_bytes / 2;
    int rv = tandem_log_budget_init(&f->log_budget, snapshot_bytes, trailing_bytes - reserve_bytes,
                                    threshold_max, trailing_max);
    if (rv != 0) {
        return tandem_error_set(f->errmsg, rv, "log budget: out of memory");
    }
    f->log_budget.reserve_bytes = reserve_bytes;
    f->log_budget_on = true;
    f->snapshot_threshold_now = threshold_max;
    f->snapshot_trailing_now = trailing_max;
    return 0;
}

void tandem_fsm_set_snapshot_stagger(struct tandem_fsm *f, unsigned permille)
{
    tandem_assert(f->log_budget_on && permille < 1000);
    f->log_budget.stagger_permille = permille;
}

void tandem_fsm_close(struct tandem_fsm *f)
{
    tandem_log_budget_free(&f->log_budget);
    f->log_budget_on = false;
    tandem_store_snapshot_unmap(&f->install_map); /* an install that never reached the restore */
}

int tandem_fsm_set_snapshot_files(struct tandem_fsm *f, const char *dir, uint64_t inline_max,
                                  tandem_fsm_fetch_fn fetch, void *fetch_data)
{
    if (strlen(dir) + TANDEM_SNAPSHOT_FILE_NAME_SIZE + 8 >= sizeof f->files_dir) {
        return tandem_error_set(f->errmsg, TANDEM_INVALID, "snapshot directory path too long");
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return tandem_error_from_errno(errno, f->errmsg, "snapshot directory");
    }
    snprintf(f->files_dir, sizeof f->files_dir, "%s", dir);
    f->files_inline_max = inline_max;
    f->fetch = fetch;
    f->fetch_data = fetch_data;
    f->fetch_deadline_ms = TANDEM_SNAPSHOT_FETCH_DEADLINE_MS;
    atomic_store(&f->fetch_cancel, false);
    /* A crash mid-write or mid-fetch leaves a .tmp or .part behind. */
    (void)tandem_snapshot_files_prune(dir, TANDEM_SNAPSHOT_FILES_KEPT, true);
    return 0;
}

void tandem_fsm_cancel_fetch(struct tandem_fsm *f)
{
    atomic_store(&f->fetch_cancel, true);
}

void tandem_fsm_set_claim(struct tandem_fsm *f, tandem_fsm_claim_fn claim, void *data)
{
    f->claim = claim;
    f->claim_data = data;
}
