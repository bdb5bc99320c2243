/* Group commit of writes into single raft entries and batching of linearizable reads. */
#include "replication/proposer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "consensus/raft_error.h"
#include "consensus/raft_heap.h"
#include "replication/commands.h"
#include "storage/assert.h"
#include "storage/clock.h"

struct tandem_batch {
    struct raft_apply req;
    struct tandem_proposer *p;
    uint64_t serial;
    struct tandem_write **writes;  /* owned array; the writes are borrowed */
    struct tandem_result *results; /* owned; filled by apply through the claim hook */
    size_t n;
    bool claimed;
    bool limbo;           /* leadership was lost after the entry was appended: outcome open */
    uint64_t limbo_until; /* uv_hrtime() deadline of the limbo */
    struct tandem_batch *prev, *next;
};

struct barrier {
    struct raft_barrier req;
    struct tandem_proposer *p;
    struct tandem_read *reads;
};

void tandem_proposer_init(struct tandem_proposer *p, struct raft *raft, uint64_t id,
                          const struct tandem_proposer_limits *limits)
{
    /* A batch holds at least one command and at least one write may wait: with a zero limit
     * the queue could never drain. */
    tandem_assert(limits->batch_commands_max >= 1 && limits->batch_bytes_max >= 1 &&
                  limits->pending_max >= 1);
    memset(p, 0, sizeof *p);
    p->raft = raft;
    p->id = id;
    p->limits = *limits;
    p->now_ms = tandem_wall_ms;
    p->next_serial = 1;
    p->limbo_ns = 2000000000ull; /* callers may change it (two election timeouts and more) */
    tandem_raft_heap_install();  /* who frees an entry's buffer after a failed call */
}

/* The counters agree with the queues: queued writes are a part of the pending ones, and the
 * queue is empty exactly when its head is NULL. */
static bool counters_ok(const struct tandem_proposer *p)
{
    return p->queued <= p->pending && (p->queued == 0) == (p->queue_head == NULL) &&
           (p->queue_head == NULL) == (p->queue_tail == NULL) &&
           p->barriers_inflight <= TANDEM_BARRIERS_INFLIGHT_MAX;
}

/* Whether a request may be queued now: 0, RAFT_NOTLEADER, or RAFT_BUSY when full. */
static int admission(const struct tandem_proposer *p, bool full)
{
    if (raft_state(p->raft) != RAFT_LEADER) {
        return RAFT_NOTLEADER;
    }
    return full ? RAFT_BUSY : 0;
}

int tandem_proposer_write(struct tandem_proposer *p, struct tandem_write *w)
{
    tandem_assert(w->command != NULL && w->cb != NULL);
    int rv = admission(p, p->pending >= p->limits.pending_max);
    if (rv != 0) {
        return rv;
    }
    w->next = NULL;
    *(p->queue_tail == NULL ? &p->queue_head : &p->queue_tail->next) = w;
    p->queue_tail = w;
    p->queued++;
    p->pending++;
    tandem_assert(counters_ok(p) && p->pending <= p->limits.pending_max);
    return 0;
}

int tandem_proposer_read(struct tandem_proposer *p, struct tandem_read *r)
{
    tandem_assert(r->cb != NULL);
    /* Reads queued behind a barrier not yet proposed share it: only a new barrier is limited. */
    int rv =
        admission(p, p->barriers_inflight >= TANDEM_BARRIERS_INFLIGHT_MAX && p->reads_head == NULL);
    if (rv != 0) {
        return rv;
    }
    r->next = NULL;
    *(p->reads_tail == NULL ? &p->reads_head : &p->reads_tail->next) = r;
    p->reads_tail = r;
    return 0;
}

static void batch_unlink(struct tandem_proposer *p, struct tandem_batch *b)
{
    /* The link that points at b from before and from after: a neighbour's, or the list's. */
    *(b->prev != NULL ? &b->prev->next : &p->inflight_head) = b->next;
    *(b->next != NULL ? &b->next->prev : &p->inflight_tail) = b->prev;
}

static void batch_finish(struct tandem_batch *b, int status)
{
    struct tandem_proposer *p = b->p;
    batch_unlink(p, b);
    /* The batch's writes were counted pending when submitted and are counted down once. */
    tandem_assert(p->pending >= b->n + p->queued);
    p->pending -= (unsigned)b->n;
    /* Applied results win over a late error: the entry is in the state whatever raft says. */
    for (size_t i = 0; i < b->n; i++) {
        struct tandem_write *w = b->writes[i];
        if (b->claimed) {
            w->cb(w, 0, &b->results[i]);
        } else {
            w->cb(w, status == 0 ? RAFT_LEADERSHIPLOST : status, NULL);
        }
        free(b->results[i].body);
    }
    free(b->writes);
    free(b->results);
    free(b);
}

static void batch_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct tandem_batch *b = req->data;
    (void)result;
    if (status == RAFT_LEADERSHIPLOST && !b->claimed) {
        if (req->index == 0) {
            batch_finish(b, RAFT_NOTLEADER); /* never appended: safe to send again */
            return;
        }
        /* The entry is in our log and may still commit under the next leader (a transfer
         * hands it over): wait, as a follower, to see whether we apply it (the claim hook then
         * fills the results) or apply something else at its index (then it never happened). */
        b->limbo = true;
        b->limbo_until = uv_hrtime() + b->p->limbo_ns;
        return;
    }
    batch_finish(b, status);
}

/* Settles batches in limbo: applied here (answered with their results), or else unknown once
 * the applied index passes theirs or the deadline passes. */
static void limbo_settle(struct tandem_proposer *p, bool give_up)
{
    uint64_t now = uv_hrtime();
    raft_index applied = raft_last_applied(p->raft);
    struct tandem_batch *b = p->inflight_head;
    while (b != NULL) {
        struct tandem_batch *next = b->next;
        if (b->limbo) {
            if (b->claimed) {
                batch_finish(b, 0);
            } else if (applied >= b->req.index) {
                /* Something else was applied at its index, or it was applied where the claim
                 * could not see it (replayed after a restart): the outcome stays unknown. */
                batch_finish(b, RAFT_LEADERSHIPLOST);
            } else if (give_up || now >= b->limbo_until) {
                batch_finish(b, give_up ? RAFT_SHUTDOWN : RAFT_LEADERSHIPLOST);
            }
        }
        b = next;
    }
}

struct tandem_result *tandem_proposer_claim(void *data, uint64_t proposer_id, uint64_t serial,
                                            size_t n_commands)
{
    struct tandem_proposer *p = data;
    if (proposer_id != p->id) {
        return NULL;
    }
    for (struct tandem_batch *b = p->inflight_head; b != NULL; b = b->next) {
        if (b->serial == serial) {
            if (b->n != n_commands || b->claimed) {
                return NULL;
            }
            b->claimed = true;
            return b->results;
        }
    }
    return NULL;
}

/* raft_apply failed after the entry entered raft's log (libraft 0.22.1's legacy layer fails
 * when it cannot persist or send it, e.g. when file descriptors run out): the entry may still
 * commit, so its outcome is unknown until we see what is applied at its index, as for a leader
 * that steps down. Who frees the buffer is settled apart (apply_owned). */
static void apply_failed_after_append(struct tandem_batch *b)
{
    tandem_assert(b->req.index != 0);
    b->p->propose_errors++;
    b->limbo = true;
    b->limbo_until = uv_hrtime() + b->p->limbo_ns;
}

/* raft_apply with the ownership of buf settled, as libraft 0.22.1 leaves it on a failure: freed
 * when the failure came after it copied the entry into its log, ours before (not leader, or out
 * of memory before or during the copy; consensus/raft_heap.h says why neither the code nor the
 * index tells). The watching heap says which; without it (another heap was set) a failure with
 * the entry in raft's log is taken as freed: a leak on out of memory beats a double free. */
/* libraft 0.22.1's legacy layer, when it fails after raft's core took new entries
 * (legacyHandleUpdateEntries: the copy running out of memory, io->truncate or io->append failing
 * as when descriptors run out), discards them from its log while the core keeps them: the next
 * append then starts past the log's end, logAcquire finds nothing, and io->append runs on a NULL
 * array (SIGSEGV, seen under descriptor exhaustion; or worse, entries persisted at the wrong
 * index). Nothing in libraft's API repairs that, so the node stops at once and a restart reads the
 * log from disk; the other voters elect a leader meanwhile, and nothing acknowledged is lost.
 * The fatal line names raft's own reason (raft_errmsg, e.g. "append 1 entries: setup writer for
 * open-3: eventfd: too many open files"), not only its code: "I/O error" alone does not tell an
 * operator whether descriptors, the disk or memory ran out. */
static void fail_stop_after_copy(struct raft *raft, int rv, const char *what)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    (void)tandem_error_from_raft(rv, raft_errmsg(raft), errmsg, what);
    tandem_fatal("%s; libraft had copied the entry into its log and 0.22.1 cannot append again "
                 "after that: stopping so that a restart reads the raft log from disk",
                 errmsg);
}

static int apply_owned(struct tandem_batch *b, struct raft_buffer *buf, uint64_t index)
{
    bool watched = tandem_raft_heap_watch(buf->base);
    int rv = raft_apply(b->p->raft, &b->req, buf, 1, batch_apply_cb);
    unsigned frees = watched ? tandem_raft_heap_unwatch() : 0;
    if (rv != 0 && raft_last_index(b->p->raft) >= index) {
        fail_stop_after_copy(b->p->raft, rv, "raft_apply"); /* its core took the entry: see above */
    }
    if (rv != 0 && (watched ? frees == 0 : raft_last_index(b->p->raft) < index)) {
        raft_free(buf->base); /* raft never took or copied it: the buffer is still ours */
    }
    return rv;
}

/* How many queued writes the next batch takes: up to the command limit and the byte limit,
 * and always the first (one command larger than the byte limit still goes alone). */
static size_t batch_count(const struct tandem_proposer *p)
{
    size_t n = 0, bytes = 0;
    for (struct tandem_write *w = p->queue_head; w != NULL && n < p->limits.batch_commands_max;
         w = w->next) {
        size_t size = tandem__command__get_packed_size(w->command) + 8;
        if (n > 0 && bytes + size > p->limits.batch_bytes_max) {
            break;
        }
        bytes += size;
        n++;
    }
    /* The batch bounds: never empty, never past the command limit, past the byte limit only
     * when one command alone is that large. */
    tandem_assert(n >= 1 && n <= p->limits.batch_commands_max && n <= p->queued);
    tandem_assert(n == 1 || bytes <= p->limits.batch_bytes_max);
    return n;
}

/* Remembers that entry index of term packs commands client writes; a new term starts over. */
static void counts_record(struct tandem_proposer *p, uint64_t term, uint64_t index,
                          uint64_t commands)
{
    if (term != p->counts_term) {
        p->counts_term = term;
        p->counts_n = p->counts_next = 0;
    }
    p->counts[p->counts_next] = (struct tandem_proposer_count){index, commands};
    p->counts_next = (p->counts_next + 1) % TANDEM_PROPOSER_COUNTS_KEPT;
    p->counts_n += p->counts_n < TANDEM_PROPOSER_COUNTS_KEPT ? 1 : 0;
}

int64_t tandem_proposer_commands_between(const struct tandem_proposer *p, uint64_t after,
                                         uint64_t upto)
{
    if (upto <= after) {
        return 0;
    }
    unsigned oldest =
        (p->counts_next + TANDEM_PROPOSER_COUNTS_KEPT - p->counts_n) % TANDEM_PROPOSER_COUNTS_KEPT;
    /* Entries before the oldest one remembered may be another leader's, or forgotten. */
    if (raft_state(p->raft) != RAFT_LEADER || raft_current_term(p->raft) != p->counts_term ||
        p->counts_n == 0 || after + 1 < p->counts[oldest].index ||
        upto > raft_last_index(p->raft)) {
        return -1;
    }
    int64_t commands = 0;
    for (unsigned k = 0; k < p->counts_n; k++) {
        const struct tandem_proposer_count *c =
            &p->counts[(oldest + k) % TANDEM_PROPOSER_COUNTS_KEPT];
        commands += c->index > after && c->index <= upto ? (int64_t)c->commands : 0;
    }
    return commands;
}

/* Takes up to the limits off the queue into one batch and proposes it. */
static int propose_one(struct tandem_proposer *p)
{
    Tandem__Batch message = TANDEM__BATCH__INIT;
    struct raft_buffer buf;
    struct tandem_batch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return RAFT_NOMEM;
    }
    size_t n = batch_count(p);
    b->writes = calloc(n, sizeof *b->writes);
    b->results = calloc(n, sizeof *b->results);
    Tandem__Command **commands = calloc(n, sizeof *commands);
    if (b->writes == NULL || b->results == NULL || commands == NULL) {
        free(commands);
        free(b->writes);
        free(b->results);
        free(b);
        return RAFT_NOMEM;
    }
    unsigned client_writes = 0; /* what the lag of a member counts */
    for (size_t i = 0; i < n; i++) {
        struct tandem_write *w = p->queue_head;
        p->queue_head = w->next;
        b->writes[i] = w;
        commands[i] = w->command;
        client_writes += tandem_command_is_client(w->command) ? 1u : 0u;
    }
    if (p->queue_head == NULL) {
        p->queue_tail = NULL;
    }
    p->queued -= (unsigned)n;
    b->p = p;
    b->n = n;
    b->serial = p->next_serial++;
    message.proposer_id = p->id;
    message.serial = b->serial;
    message.now_ms = p->now_ms();
    message.n_commands = n;
    message.commands = commands;
    /* Link before raft_apply: a single-voter leader may apply inside the call. */
    b->req.data = b;
    b->prev = p->inflight_tail;
    if (p->inflight_tail != NULL) {
        p->inflight_tail->next = b;
    } else {
        p->inflight_head = b;
    }
    p->inflight_tail = b;
    /* The index raft_apply gives the entry (read before: a single voter may apply within). */
    uint64_t index = raft_last_index(p->raft) + 1, term = raft_current_term(p->raft);
    int rv = tandem_entry_encode(&message, &buf);
    free(commands);
    if (rv != 0) {
        rv = RAFT_NOMEM;
    } else if ((rv = apply_owned(b, &buf, index)) != 0 && raft_last_index(p->raft) >= index) {
        apply_failed_after_append(b);
        return rv;
    }
    if (rv != 0) {
        p->propose_errors++;
        batch_finish(b, rv); /* never proposed: the writes learn it now */
        return rv;
    }
    p->entries_proposed++;
    p->commands_proposed += n;
    counts_record(p, term, index, client_writes);
    return 0;
}

/* Answers a list of reads (each callback may free its read). */
static void reads_finish(struct tandem_read *r, int status)
{
    while (r != NULL) {
        struct tandem_read *next = r->next;
        r->cb(r, status);
        r = next;
    }
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct barrier *b = req->data;
    tandem_assert(b->p->barriers_inflight > 0);
    b->p->barriers_inflight--;
    struct tandem_read *r = b->reads;
    free(b);
    reads_finish(r, status);
}

static void flush_reads(struct tandem_proposer *p)
{
    struct barrier *b;
    if (p->reads_head == NULL) {
        return;
    }
    b = calloc(1, sizeof *b);
    int rv = b == NULL ? RAFT_NOMEM : 0;
    if (rv == 0) {
        b->p = p;
        b->reads = p->reads_head;
        b->req.data = b;
        p->reads_head = p->reads_tail = NULL;
        p->barriers_inflight++;
        /* libraft 0.22.1's raft_barrier frees its 8-byte entry buffer (its first allocation)
         * twice when the append or a send fails after the copy: the watch absorbs the second. */
        bool watched = tandem_raft_heap_watch_next(8);
        raft_index last = raft_last_index(p->raft);
        rv = raft_barrier(p->raft, &b->req, barrier_cb);
        if (watched) {
            (void)tandem_raft_heap_unwatch();
        }
        if (rv != 0 && raft_last_index(p->raft) > last) {
            /* its core took the entry: see above */
            fail_stop_after_copy(p->raft, rv, "raft_barrier");
        }
        if (rv == 0) {
            p->barriers_proposed++;
        } else {
            barrier_cb(&b->req, rv); /* raft refused it: its callback never runs */
        }
        return;
    }
    tandem_proposer_fail_queued(p, rv);
}

void tandem_proposer_flush(struct tandem_proposer *p)
{
    limbo_settle(p, false);
    while (p->queue_head != NULL) {
        if (propose_one(p) != 0) {
            tandem_proposer_fail_queued(p, RAFT_NOTLEADER);
            break;
        }
    }
    flush_reads(p);
}

void tandem_proposer_fail_queued(struct tandem_proposer *p, int status)
{
    limbo_settle(p, status == RAFT_SHUTDOWN);
    struct tandem_write *w = p->queue_head;
    struct tandem_read *r = p->reads_head;
    tandem_assert(counters_ok(p));
    p->queue_head = p->queue_tail = NULL;
    p->reads_head = p->reads_tail = NULL;
    p->pending -= p->queued;
    p->queued = 0;
    while (w != NULL) {
        struct tandem_write *next = w->next;
        w->cb(w, status, NULL);
        w = next;
    }
    reads_finish(r, status);
}
