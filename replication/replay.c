/* Point-in-time replay of a kept raft log onto a restored state (replication/replay.h). */
#include "replication/replay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/fsm.h"
#include "storage/assert.h"

#define REPLAY_COMMIT_EVERY 512 /* entries per LMDB commit: bounded dirty pages, few fsyncs */

static int replay_refuse(const struct tandem_store *store, uint64_t first_index, size_t n,
                         const struct tandem_replay_plan *plan, char *errmsg)
{
    uint64_t from = store->applied_index;
    uint64_t last = first_index + n - 1; /* first_index - 1 when the log is empty */
    if (plan->to_index < from) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "--to-index %" PRIu64 " is before the backup's index %" PRIu64,
                                plan->to_index, from);
    }
    if (plan->to_index > plan->proof_index) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "--to-index %" PRIu64 " is past index %" PRIu64
                                ", the last one the log's node applied: later entries may not be "
                                "committed",
                                plan->to_index, plan->proof_index);
    }
    if (plan->proof_index > from && (n == 0 || first_index > from + 1)) {
        return tandem_error_set(errmsg, TANDEM_NOTFOUND,
                                "the log holds indexes %" PRIu64 "..%" PRIu64 ", not %" PRIu64
                                " onwards: the entries after the backup are "
                                "gone (compacted); use a newer backup",
                                first_index, last, from + 1);
    }
    if (plan->proof_index > from && plan->proof_index > last) {
        return tandem_error_set(errmsg, TANDEM_NOTFOUND,
                                "the log ends at index %" PRIu64 ", before index %" PRIu64
                                " its node applied",
                                last, plan->proof_index);
    }
    return 0;
}

static const struct raft_entry *entry_at(const struct raft_entry *entries, uint64_t first_index,
                                         uint64_t index)
{
    tandem_assert(index >= first_index);
    return &entries[index - first_index];
}

/* Applies (store->applied_index, to_index] through a state machine without raft. */
static int replay_apply(struct tandem_store *store, const struct raft_entry *entries,
                        uint64_t first_index, uint64_t to_index, struct tandem_replay_result *out,
                        char *errmsg)
{
    struct tandem_fsm *fsm = calloc(1, sizeof *fsm);
    if (fsm == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "replay: out of memory");
    }
    tandem_fsm_init(fsm, store);
    int rv = 0;
    for (uint64_t i = store->applied_index + 1; i <= to_index && rv == 0; i++) {
        const struct raft_entry *e = entry_at(entries, first_index, i);
        if (e->type != RAFT_COMMAND) {
            continue; /* configuration changes and barriers change no state */
        }
        rv = tandem_fsm_apply_entry(fsm, i, e->buf.base, e->buf.len);
        if (rv != 0) {
            tandem_error_set(errmsg, rv, "replay: %s", fsm->errmsg);
            break;
        }
        out->state_index = i;
        out->state_term = e->term;
        out->entries_applied++;
        if (out->entries_applied % REPLAY_COMMIT_EVERY == 0 && (rv = tandem_store_commit(store))) {
            tandem_error_set(errmsg, rv, "replay: %s", store->errmsg);
        }
    }
    if (rv == 0 && (rv = tandem_store_commit(store)) != 0) {
        tandem_error_set(errmsg, rv, "replay: %s", store->errmsg);
    }
    free(fsm);
    return rv;
}

/* Carries the chain from the store's digest over the commands (store index, proof_index],
 * before anything is applied: entries of another history never reach the state machine. *at_to
 * receives the chain at to_index, which the replay must then reach. */
static int replay_prove(const struct tandem_store *store, const struct raft_entry *entries,
                        uint64_t first_index, const struct tandem_replay_plan *plan,
                        uint8_t at_to[TANDEM_DIGEST_LEN], char *errmsg)
{
    uint8_t digest[TANDEM_DIGEST_LEN];
    char want[2 * TANDEM_DIGEST_LEN + 1], got[2 * TANDEM_DIGEST_LEN + 1];
    memcpy(digest, store->apply_digest, sizeof digest);
    memcpy(at_to, digest, TANDEM_DIGEST_LEN);
    for (uint64_t i = store->applied_index + 1; i <= plan->proof_index; i++) {
        const struct raft_entry *e = entry_at(entries, first_index, i);
        if (e->type == RAFT_COMMAND) {
            int rv = tandem_fsm_digest_step(digest, i, e->buf.base, e->buf.len, digest, errmsg);
            if (rv != 0) {
                return rv;
            }
        }
        if (i == plan->to_index) {
            memcpy(at_to, digest, TANDEM_DIGEST_LEN);
        }
    }
    if (memcmp(digest, plan->proof_digest, sizeof digest) != 0) {
        tandem_digest_hex(plan->proof_digest, want);
        tandem_digest_hex(digest, got);
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "the log is not this backup's history: its node's apply digest "
                                "at index %" PRIu64 " is %.16s..., the backup's state carried "
                                "through the log gives %.16s...",
                                plan->proof_index, want, got);
    }
    return 0;
}

int tandem_replay(struct tandem_store *store, const struct raft_entry *entries,
                  uint64_t first_index, size_t n, const struct tandem_replay_plan *plan,
                  struct tandem_replay_result *out, char *errmsg)
{
    tandem_assert(store->env != NULL && store->write_txn == NULL && plan != NULL);
    memset(out, 0, sizeof *out);
    out->backup_index = store->applied_index;
    out->state_index = store->applied_index;
    uint8_t at_to[TANDEM_DIGEST_LEN];
    int rv = replay_refuse(store, first_index, n, plan, errmsg);
    rv = rv != 0 ? rv : replay_prove(store, entries, first_index, plan, at_to, errmsg);
    rv = rv != 0 ? rv : replay_apply(store, entries, first_index, plan->to_index, out, errmsg);
    if (rv == 0 && memcmp(store->apply_digest, at_to, sizeof at_to) != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "replay: the state's apply digest at index %" PRIu64
                                " is not the proven chain's",
                                out->state_index);
    }
    /* Postcondition: the store stands at the last command the replay reached. */
    tandem_assert(rv != 0 || store->applied_index == out->state_index);
    return rv;
}
