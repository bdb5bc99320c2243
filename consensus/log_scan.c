/* Loads a kept raft log through a scratch copy with raft_uv's load, and compares term
 * histories to find where two logs forked. */
#include "consensus/log_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "consensus/raft_error.h"
#include "storage/assert.h"

#define COPY_CHUNK_BYTES (64u * 1024u)
#define SCAN_RAFT_ID     1 /* raft_uv's init wants an id; nothing is sent or received */

/* ---- the scratch copy ---- */

static int scan_error(int errno_value, const char *verb, const char *path, char *errmsg)
{
    char what[PATH_MAX + 16];
    snprintf(what, sizeof what, "%s %s", verb, path);
    return tandem_error_from_errno(errno_value != 0 ? errno_value : EIO, errmsg, what);
}

static int copy_file(const char *from, const char *to, char *errmsg)
{
    char buf[COPY_CHUNK_BYTES];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return scan_error(errno, "open", from, errmsg);
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int rv = scan_error(errno, "create", to, errmsg);
        close(in);
        return rv;
    }
    int rv = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0) {
            break;
        }
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            rv = scan_error(errno, "copy", from, errmsg);
            break;
        }
    }
    close(in);
    close(out);
    return rv;
}

/* Files raft_uv's load may rewrite: open segments (finalised) and the metadata. */
static bool rewritten_by_load(const char *name)
{
    return strncmp(name, "open-", 5) == 0 || strncmp(name, "metadata", 8) == 0;
}

static int scratch_fill(const char *raft_dir, const char *scratch_dir, char *errmsg)
{
    DIR *d = opendir(raft_dir);
    if (d == NULL) {
        return scan_error(errno, "open", raft_dir, errmsg);
    }
    int rv = 0;
    unsigned files = 0;
    struct dirent *e;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        char from[PATH_MAX], to[PATH_MAX];
        struct stat st;
        snprintf(from, sizeof from, "%s/%s", raft_dir, e->d_name);
        snprintf(to, sizeof to, "%s/%s", scratch_dir, e->d_name);
        if (lstat(from, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        if (++files > TANDEM_LOG_SCAN_FILES_MAX) {
            rv = tandem_error_set(errmsg, TANDEM_LIMIT, "%s: more than %d files", raft_dir,
                                  TANDEM_LOG_SCAN_FILES_MAX);
        } else if (rewritten_by_load(e->d_name) || link(from, to) != 0) {
            rv = copy_file(from, to, errmsg); /* also where hard links are not allowed */
        }
    }
    closedir(d);
    return rv;
}

/* Removes the flat scratch directory (raft_uv's directory has no subdirectories). */
static void scratch_remove(const char *scratch_dir)
{
    DIR *d = opendir(scratch_dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    unsigned removed = 0;
    while ((e = readdir(d)) != NULL && removed < TANDEM_LOG_SCAN_FILES_MAX + 16) {
        char path[PATH_MAX];
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", scratch_dir, e->d_name);
            (void)unlink(path);
            removed++;
        }
    }
    closedir(d);
    (void)rmdir(scratch_dir);
}

/* ---- raft_uv's load on a private loop ---- */

static int stub_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    (void)t;
    (void)id;
    (void)address;
    return 0;
}

static int stub_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    (void)t;
    (void)cb;
    return RAFT_NOCONNECTION;
}

static int stub_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                        const char *address, raft_uv_connect_cb cb)
{
    (void)t;
    (void)req;
    (void)id;
    (void)address;
    (void)cb;
    return RAFT_NOCONNECTION;
}

static void stub_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    cb(t);
}

void tandem_log_scan_offline_transport(struct raft_uv_transport *t)
{
    memset(t, 0, sizeof *t);
    t->version = 1;
    t->init = stub_init;
    t->listen = stub_listen;
    t->connect = stub_connect;
    t->close = stub_close;
}

static void io_closed_cb(struct raft_io *io)
{
    *(bool *)io->data = true;
}

static int load_with_raft_uv(uv_loop_t *loop, const char *dir, struct tandem_log_scan *out,
                             char *errmsg)
{
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_snapshot *snapshot = NULL;
    raft_term term;
    raft_id voted_for;
    raft_index start = 1;
    bool closed = false;
    tandem_log_scan_offline_transport(&transport);
    memset(&io, 0, sizeof io);
    int rv = raft_uv_init(&io, loop, dir, &transport);
    if (rv != 0) {
        return tandem_error_from_raft(rv, io.errmsg, errmsg, "raft_uv_init");
    }
    raft_uv_set_auto_recovery(&io, false); /* a corrupt kept log is reported, not repaired */
    rv = io.init(&io, SCAN_RAFT_ID, "scan");
    if (rv == 0) {
        rv = io.load(&io, &term, &voted_for, &snapshot, &start, &out->entries, &out->n);
        if (rv != 0) {
            rv = tandem_error_from_raft(rv, io.errmsg, errmsg, "load the raft log");
        }
        io.data = &closed;
        io.close(&io, io_closed_cb);
        for (unsigned i = 0; !closed && i < 1000; i++) {
            (void)uv_run(loop, UV_RUN_ONCE);
        }
    } else {
        rv = tandem_error_from_raft(rv, io.errmsg, errmsg, "open the raft log");
    }
    raft_uv_close(&io);
    out->first_index = start;
    if (snapshot != NULL) {
        out->snapshot_index = snapshot->index;
        out->snapshot_term = snapshot->term;
        for (unsigned i = 0; i < snapshot->n_bufs; i++) {
            raft_free(snapshot->bufs[i].base);
        }
        raft_free(snapshot->bufs);
        raft_configuration_close(&snapshot->configuration);
        raft_free(snapshot);
    }
    return rv;
}

/* Loads the filled scratch_dir with raft_uv on a private loop. */
static int scratch_load(const char *scratch_dir, struct tandem_log_scan *out, char *errmsg)
{
    uv_loop_t loop;
    int rv = uv_loop_init(&loop);
    if (rv != 0) {
        return tandem_error_from_uv(rv, errmsg, "scan loop");
    }
    rv = load_with_raft_uv(&loop, scratch_dir, out, errmsg);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop);
    return rv;
}

/* A fresh scratch_dir (one left over by a crash during an earlier scan is replaced). */
static int scratch_create(const char *scratch_dir, char *errmsg)
{
    scratch_remove(scratch_dir);
    return mkdir(scratch_dir, 0700) == 0 ? 0 : scan_error(errno, "create", scratch_dir, errmsg);
}

int tandem_log_scan_load(const char *raft_dir, const char *scratch_dir, struct tandem_log_scan *out,
                         char *errmsg)
{
    memset(out, 0, sizeof *out);
    int rv = scratch_create(scratch_dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    if ((rv = scratch_fill(raft_dir, scratch_dir, errmsg)) == 0) {
        rv = scratch_load(scratch_dir, out, errmsg);
    }
    scratch_remove(scratch_dir);
    if (rv != 0) {
        tandem_log_scan_free(out);
    }
    return rv;
}

int tandem_log_scan_open_segment(const char *segment_path, const char *scratch_dir,
                                 struct tandem_log_scan *out, uint64_t *used_bytes, char *errmsg)
{
    char copy[PATH_MAX + 32];
    struct stat st;
    memset(out, 0, sizeof *out);
    *used_bytes = 0;
    int rv = scratch_create(scratch_dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    snprintf(copy, sizeof copy, "%s/open-1", scratch_dir);
    if ((rv = copy_file(segment_path, copy, errmsg)) == 0) {
        rv = scratch_load(scratch_dir, out, errmsg);
    }
    /* raft_uv's load truncated the copy where its entries end and renamed it closed. */
    if (rv == 0 && out->n > 0) {
        snprintf(copy, sizeof copy, "%s/%016llu-%016llu", scratch_dir, 1ULL,
                 (unsigned long long)out->n);
        if (stat(copy, &st) != 0) {
            rv = scan_error(errno, "stat the loaded copy", copy, errmsg);
        } else {
            *used_bytes = (uint64_t)st.st_size;
        }
    }
    scratch_remove(scratch_dir);
    if (rv != 0) {
        tandem_log_scan_free(out);
    }
    return rv;
}

void tandem_log_scan_free(struct tandem_log_scan *scan)
{
    void *last_batch = NULL;
    for (size_t i = 0; i < scan->n; i++) {
        /* Entries of one batch are adjacent and share its memory. */
        if (scan->entries[i].batch != NULL && scan->entries[i].batch != last_batch) {
            last_batch = scan->entries[i].batch;
            raft_free(last_batch);
        }
    }
    raft_free(scan->entries);
    scan->entries = NULL;
    scan->n = 0;
}

/* ---- term histories and the fork point ---- */

static void history_add(struct tandem_term_history *h, uint64_t term, uint64_t index)
{
    if (h->n > 0 && h->terms[h->n - 1].term == term) {
        return;
    }
    if (h->n == TANDEM_TERM_HISTORY_MAX) {
        memmove(&h->terms[0], &h->terms[1], (h->n - 1) * sizeof h->terms[0]);
        h->n--;
    }
    h->terms[h->n++] = (struct tandem_term_start){term, index};
}

void tandem_term_history_of(const struct tandem_log_scan *scan, struct tandem_term_history *out)
{
    memset(out, 0, sizeof *out);
    if (scan->n == 0 && scan->snapshot_index > 0) {
        history_add(out, scan->snapshot_term, scan->snapshot_index);
        out->last_index = scan->snapshot_index;
    }
    for (size_t i = 0; i < scan->n; i++) {
        history_add(out, scan->entries[i].term, scan->first_index + i);
        out->last_index = scan->first_index + i;
    }
    out->first_index = out->n > 0 ? out->terms[0].first_index : 0;
    out->last_term = out->n > 0 ? out->terms[out->n - 1].term : 0;
    tandem_invariant(tandem_term_history_ok(out));
}

bool tandem_term_history_ok(const struct tandem_term_history *h)
{
    if (h->n > TANDEM_TERM_HISTORY_MAX || (h->n == 0) != (h->first_index == 0)) {
        return false;
    }
    for (unsigned k = 0; k < h->n; k++) {
        const struct tandem_term_start *s = &h->terms[k];
        if (s->term == 0 || s->first_index > h->last_index ||
            (k == 0 && s->first_index != h->first_index) ||
            (k > 0 &&
             (s->term <= h->terms[k - 1].term || s->first_index <= h->terms[k - 1].first_index))) {
            return false;
        }
    }
    return h->n == 0 || h->terms[h->n - 1].term == h->last_term;
}

uint64_t tandem_term_history_term_at(const struct tandem_term_history *h, uint64_t index)
{
    if (h->n == 0 || index < h->first_index || index > h->last_index) {
        return 0;
    }
    unsigned k = h->n - 1;
    while (h->terms[k].first_index > index) {
        k--; /* terms[0].first_index == first_index <= index ends the walk */
    }
    return h->terms[k].term;
}

void tandem_fork_find(const uint64_t *terms, uint64_t first_index, size_t n,
                      const struct tandem_term_history *cluster, struct tandem_fork *out)
{
    uint64_t last = n > 0 ? first_index + n - 1 : 0;
    uint64_t lo = first_index > cluster->first_index ? first_index : cluster->first_index;
    uint64_t hi = last < cluster->last_index ? last : cluster->last_index;
    tandem_assert(tandem_term_history_ok(cluster));
    memset(out, 0, sizeof *out);
    for (uint64_t i = hi; n > 0 && cluster->n > 0 && i >= lo && i > 0; i--) {
        uint64_t term = terms[i - first_index];
        if (term == tandem_term_history_term_at(cluster, i)) {
            out->index = i;
            out->term = term;
            out->certainty = TANDEM_FORK_EXACT;
            return;
        }
    }
    /* Nothing in common where both logs are known: the fork is below what either holds. */
    lo = lo == 0 ? 1 : lo;
    out->index = lo - 1 < last ? lo - 1 : last;
    out->certainty = out->index == 0 ? TANDEM_FORK_EXACT : TANDEM_FORK_AT_OR_BEFORE;
}

const char *tandem_fork_certainty_name(int certainty)
{
    return certainty == TANDEM_FORK_EXACT ? "exact" : "at_or_before";
}
