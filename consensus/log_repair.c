/* Closes open segments libraft 0.22.1 left behind closed ones into their gaps (log_repair.h). */
#include "consensus/log_repair.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consensus/log_scan.h"
#include "storage/assert.h"

#define SEGMENT_NAME_MAX 48
#define CLOSED_NAME_LEN  33 /* raft_uv's "%016llu-%016llu" */

struct closed_segment {
    uint64_t first, end;
};

struct open_segment {
    unsigned long long counter;
    char name[SEGMENT_NAME_MAX];
    uint64_t n, first_term, last_term, used_bytes; /* as raft_uv loads it alone */
};

struct gap {
    uint64_t first, end; /* the missing indexes, first..end */
};

struct listing {
    struct closed_segment *closed;
    size_t n_closed;
    struct open_segment *open;
    size_t n_open;
};

static bool closed_name(const char *name, struct closed_segment *out)
{
    unsigned long long first, end;
    int consumed = 0;
    char again[SEGMENT_NAME_MAX];
    if (strlen(name) != CLOSED_NAME_LEN ||
        sscanf(name, "%16llu-%16llu%n", &first, &end, &consumed) != 2 ||
        consumed != CLOSED_NAME_LEN) {
        return false;
    }
    snprintf(again, sizeof again, "%016llu-%016llu", first, end);
    if (strcmp(again, name) != 0 || first == 0 || end < first) {
        return false;
    }
    out->first = first;
    out->end = end;
    return true;
}

static bool open_name(const char *name, unsigned long long *counter)
{
    char *end = NULL;
    if (strncmp(name, "open-", 5) != 0 || name[5] < '1' || name[5] > '9') {
        return false;
    }
    errno = 0;
    *counter = strtoull(name + 5, &end, 10);
    return errno == 0 && *end == '\0';
}

static int list_error(int errno_value, const char *verb, const char *path, char *errmsg)
{
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "%s %s", verb, path);
    return tandem_error_from_errno(errno_value != 0 ? errno_value : EIO, errmsg, what);
}

/* array (n elements of sz bytes, room for *cap) with room for one more: array itself, or a
 * larger copy (array is then freed), or NULL (array is kept). */
static void *room_for_one_more(void *array, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap) {
        return array;
    }
    size_t more = *cap == 0 ? 16 : *cap * 2;
    void *p = realloc(array, more * sz);
    if (p != NULL) {
        *cap = more;
    }
    return p;
}

static int list_segments(const char *raft_dir, struct listing *l, char *errmsg)
{
    size_t cap_closed = 0, cap_open = 0;
    unsigned files = 0;
    DIR *d = opendir(raft_dir);
    if (d == NULL) {
        return list_error(errno, "open", raft_dir, errmsg);
    }
    int rv = 0;
    struct dirent *e;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        struct closed_segment c;
        unsigned long long counter;
        if (++files > TANDEM_LOG_SCAN_FILES_MAX) {
            rv = tandem_error_set(errmsg, TANDEM_LIMIT, "%s: more than %d files", raft_dir,
                                  TANDEM_LOG_SCAN_FILES_MAX);
        } else if (closed_name(e->d_name, &c)) {
            void *p = room_for_one_more(l->closed, l->n_closed, &cap_closed, sizeof c);
            if (p == NULL) {
                rv = tandem_error_set(errmsg, TANDEM_NOMEM, "list %s", raft_dir);
            } else {
                l->closed = p;
                l->closed[l->n_closed++] = c;
            }
        } else if (open_name(e->d_name, &counter)) {
            if (l->n_open == TANDEM_LOG_REPAIR_SEGMENTS_MAX) {
                rv = tandem_error_set(errmsg, TANDEM_LIMIT, "%s: more than %u open segments",
                                      raft_dir, TANDEM_LOG_REPAIR_SEGMENTS_MAX);
                break;
            }
            void *p = room_for_one_more(l->open, l->n_open, &cap_open, sizeof *l->open);
            if (p == NULL) {
                rv = tandem_error_set(errmsg, TANDEM_NOMEM, "list %s", raft_dir);
            } else {
                l->open = p;
                struct open_segment *o = &l->open[l->n_open++];
                memset(o, 0, sizeof *o);
                o->counter = counter;
                snprintf(o->name, sizeof o->name, "%s", e->d_name);
            }
        }
    }
    closedir(d);
    return rv;
}

static int closed_cmp(const void *a, const void *b)
{
    const struct closed_segment *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int open_cmp(const void *a, const void *b)
{
    const struct open_segment *x = a, *y = b;
    return x->counter < y->counter ? -1 : x->counter > y->counter;
}

/* The gaps between consecutive closed segments, oldest first. Overlapping segments are raft_uv's
 * to judge: *n_gaps 0. */
static struct gap *gaps_of(const struct listing *l, size_t *n_gaps, char *errmsg, int *rv)
{
    struct gap *gaps = NULL;
    size_t cap = 0;
    *n_gaps = 0;
    *rv = 0;
    for (size_t i = 0; i + 1 < l->n_closed; i++) {
        const struct closed_segment *older = &l->closed[i], *newer = &l->closed[i + 1];
        if (newer->first <= older->end) {
            *n_gaps = 0;
            break;
        }
        if (newer->first > older->end + 1) {
            void *p = room_for_one_more(gaps, *n_gaps, &cap, sizeof *gaps);
            if (p == NULL) {
                *rv = tandem_error_set(errmsg, TANDEM_NOMEM, "gaps of the raft log");
                break;
            }
            gaps = p;
            gaps[(*n_gaps)++] = (struct gap){older->end + 1, newer->first - 1};
        }
    }
    return gaps;
}

/* Loads each open segment alone; drops the empty ones (raft_uv removes them at its load). */
static int count_open(const char *raft_dir, const char *scratch_dir, struct listing *l,
                      char *errmsg)
{
    size_t kept = 0;
    for (size_t i = 0; i < l->n_open; i++) {
        struct open_segment *o = &l->open[i];
        char path[PATH_MAX + SEGMENT_NAME_MAX];
        struct tandem_log_scan scan;
        snprintf(path, sizeof path, "%s/%s", raft_dir, o->name);
        int rv = tandem_log_scan_open_segment(path, scratch_dir, &scan, &o->used_bytes, errmsg);
        if (rv != 0) {
            return rv;
        }
        o->n = scan.n;
        if (scan.n > 0) {
            o->first_term = scan.entries[0].term;
            o->last_term = scan.entries[scan.n - 1].term;
            l->open[kept++] = *o;
        }
        tandem_log_scan_free(&scan);
    }
    l->n_open = kept;
    return 0;
}

/* Whether the first n_gaps open segments fill the gaps, in order, exactly, and the terms of the
 * open segments rise. A gap none fills (a segment lost) leaves the whole log to raft_uv. */
static bool fits(const struct listing *l, const struct gap *gaps, size_t n_gaps)
{
    if (l->n_open < n_gaps) {
        return false;
    }
    for (size_t i = 0; i < n_gaps; i++) {
        if (l->open[i].n != gaps[i].end - gaps[i].first + 1) {
            return false;
        }
    }
    for (size_t i = 1; i < l->n_open; i++) {
        if (l->open[i].first_term < l->open[i - 1].last_term) {
            return false;
        }
    }
    return true;
}

/* Truncates o where its entries end and renames it into g without replacing a file, then syncs
 * the directory. A crash before the rename leaves a shorter open segment raft_uv reads alike. */
static int close_into(const char *raft_dir, const struct open_segment *o, const struct gap *g,
                      char *errmsg)
{
    char closed[SEGMENT_NAME_MAX];
    snprintf(closed, sizeof closed, "%016llu-%016llu", (unsigned long long)g->first,
             (unsigned long long)g->end);
    int dir = open(raft_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        return list_error(errno, "open", raft_dir, errmsg);
    }
    int rv = 0;
    int fd = openat(dir, o->name, O_RDWR | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)o->used_bytes) != 0 || fsync(fd) != 0) {
        rv = list_error(errno, "truncate", o->name, errmsg);
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rv == 0 && renameat2(dir, o->name, dir, closed, RENAME_NOREPLACE) != 0) {
        rv = list_error(errno, "rename to", closed, errmsg);
    }
    if (rv == 0 && fsync(dir) != 0) {
        rv = list_error(errno, "sync", raft_dir, errmsg);
    }
    close(dir);
    return rv;
}

static void listing_free(struct listing *l)
{
    free(l->closed);
    free(l->open);
    memset(l, 0, sizeof *l);
}

int tandem_log_repair(const char *raft_dir, const char *scratch_dir, struct tandem_log_repair *out,
                      char *errmsg)
{
    struct listing l = {0};
    struct gap *gaps = NULL;
    size_t n_gaps = 0;
    memset(out, 0, sizeof *out);
    int rv = list_segments(raft_dir, &l, errmsg);
    if (rv != 0 || l.n_open == 0 || l.n_closed < 2) {
        listing_free(&l);
        return rv;
    }
    qsort(l.closed, l.n_closed, sizeof *l.closed, closed_cmp);
    qsort(l.open, l.n_open, sizeof *l.open, open_cmp);
    gaps = gaps_of(&l, &n_gaps, errmsg, &rv);
    if (rv == 0 && n_gaps > 0) {
        rv = count_open(raft_dir, scratch_dir, &l, errmsg);
    }
    bool fill = rv == 0 && n_gaps > 0 && fits(&l, gaps, n_gaps);
    for (size_t i = 0; fill && rv == 0 && i < n_gaps; i++) {
        rv = close_into(raft_dir, &l.open[i], &gaps[i], errmsg);
        if (rv == 0) {
            size_t used = strlen(out->detail);
            snprintf(out->detail + used, sizeof out->detail - used,
                     "%s%s as %016llu-%016llu (%llu entries)", used > 0 ? "; " : "", l.open[i].name,
                     (unsigned long long)gaps[i].first, (unsigned long long)gaps[i].end,
                     (unsigned long long)l.open[i].n);
            out->closed++;
        }
    }
    free(gaps);
    listing_free(&l);
    return rv;
}

int tandem_log_gap_find(const char *raft_dir, struct tandem_log_gap *out, char *errmsg)
{
    struct listing l = {0};
    size_t n_gaps = 0;
    memset(out, 0, sizeof *out);
    int rv = list_segments(raft_dir, &l, errmsg);
    if (rv == 0 && l.n_closed >= 2) {
        qsort(l.closed, l.n_closed, sizeof *l.closed, closed_cmp);
        struct gap *gaps = gaps_of(&l, &n_gaps, errmsg, &rv);
        if (rv == 0 && n_gaps > 0) {
            *out = (struct tandem_log_gap){
                .found = true, .first = gaps[0].first, .end = gaps[0].end, .n = (unsigned)n_gaps};
        }
        free(gaps);
    }
    listing_free(&l);
    return rv;
}

void tandem_log_gap_describe(const struct tandem_log_gap *gap, char *out, size_t size)
{
    tandem_assert(gap->found);
    snprintf(out, size,
             "raft log: entries %llu-%llu are in a segment raft_uv failed to close while it "
             "closed later ones",
             (unsigned long long)gap->first, (unsigned long long)gap->end);
}
