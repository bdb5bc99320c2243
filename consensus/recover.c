/* Forced failover helpers: survivor choice, loss bound, and the data-directory markers that the
 * next start of tandemd acts on (raft_recover, move-aside-and-join, fencing epoch). */
#include "consensus/recover.h"
#include "storage/assert.h"
#include "storage/clock.h"
#include "storage/error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ASIDE_SUFFIX_MAX 100 /* re-seeds within one second that still get their own folder */

int tandem_recover_choose(const struct tandem_recover_candidate *c, unsigned n,
                          const char *lost_site)
{
    int best = -1;
    for (unsigned i = 0; i < n; i++) {
        if (!c[i].reachable || strcmp(c[i].member.site, lost_site) == 0) {
            continue;
        }
        if (best < 0) {
            best = (int)i;
            continue;
        }
        const struct tandem_recover_candidate *b = &c[best];
        bool better = c[i].term > b->term ||
                      (c[i].term == b->term && c[i].last_index > b->last_index) ||
                      (c[i].term == b->term && c[i].last_index == b->last_index &&
                       strcmp(c[i].member.name, b->member.name) < 0);
        if (better) {
            best = (int)i;
        }
    }
    return best;
}

bool tandem_recover_no_committed_loss(const struct tandem_recover_candidate *c, unsigned n,
                                      const char *lost_site)
{
    unsigned voters = 0, surviving = 0;
    for (unsigned i = 0; i < n; i++) {
        if (c[i].member.role != TANDEM_ROLE_VOTER) {
            continue;
        }
        voters++;
        surviving += c[i].reachable && strcmp(c[i].member.site, lost_site) != 0 ? 1 : 0;
    }
    /* Every majority (voters/2 + 1 members) meets a survivor iff the lost voters are fewer. */
    return voters > 0 && voters - surviving < voters / 2 + 1;
}

/* ---- files ---- */

static void path_join(char *out, size_t size, const char *dir, const char *file)
{
    snprintf(out, size, "%s/%s", dir, file);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return -1;
    }
    int rv = fsync(fd);
    close(fd);
    return rv;
}

/* Translates errno_value for an operation on path: "<verb> <path>: <strerror>". */
static int file_error(int errno_value, const char *verb, const char *path, char *errmsg)
{
    char what[PATH_MAX + 16];
    snprintf(what, sizeof what, "%s %s", verb, path);
    return tandem_error_from_errno(errno_value != 0 ? errno_value : EIO, errmsg, what);
}

static int write_atomic(const char *data_dir, const char *file, const char *text, char *errmsg)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    path_join(path, sizeof path, data_dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return file_error(errno, "create", tmp, errmsg);
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    /* A short write with errno 0 (disk full on the last block) is still a failure: EIO. */
    int saved = n == (ssize_t)len ? 0 : (n < 0 ? errno : EIO);
    if (saved == 0 && fsync(fd) != 0) {
        saved = errno;
    }
    if (close(fd) != 0 && saved == 0) {
        saved = errno;
    }
    if (saved == 0 && rename(tmp, path) != 0) {
        saved = errno;
    }
    if (saved != 0) {
        (void)unlink(tmp);
        return file_error(saved, "write", path, errmsg);
    }
    /* The marker is in place; a lost directory fsync only means a crash could undo it, which
     * the next start handles as if the marker was never written. */
    (void)fsync_dir(data_dir);
    return 0;
}

/* Reads a small file into a malloc'd NUL-terminated buffer; NULL when absent or too large. */
static char *read_small(const char *data_dir, const char *file)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, data_dir, file);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return NULL;
    }
    char *buf = malloc(TANDEM_RECOVER_FILE_BYTES_MAX + 1);
    size_t n = buf == NULL ? 0 : fread(buf, 1, TANDEM_RECOVER_FILE_BYTES_MAX + 1, f);
    fclose(f);
    if (buf == NULL || n > TANDEM_RECOVER_FILE_BYTES_MAX) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int tandem_recover_write_u64(const char *data_dir, const char *file, uint64_t value, char *errmsg)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64 "\n", value);
    return write_atomic(data_dir, file, text, errmsg);
}

int tandem_recover_file_write(const char *data_dir, const char *file, const char *text,
                              char *errmsg)
{
    return write_atomic(data_dir, file, text, errmsg);
}

int tandem_epoch_write(const char *data_dir, uint64_t epoch, char *errmsg)
{
    return tandem_recover_write_u64(data_dir, TANDEM_EPOCH_FILE, epoch, errmsg);
}

uint64_t tandem_recover_file_u64(const char *data_dir, const char *file)
{
    char *text = read_small(data_dir, file);
    uint64_t value = 0;
    if (text != NULL && sscanf(text, "%" SCNu64, &value) != 1) {
        value = 0;
    }
    free(text);
    return value;
}

bool tandem_recover_file_exists(const char *data_dir, const char *file)
{
    char path[PATH_MAX];
    struct stat st;
    path_join(path, sizeof path, data_dir, file);
    return stat(path, &st) == 0;
}

int tandem_recover_file_remove(const char *data_dir, const char *file, char *errmsg)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, data_dir, file);
    if (unlink(path) != 0 && errno != ENOENT) {
        return file_error(errno, "remove", path, errmsg);
    }
    (void)fsync_dir(data_dir);
    return 0;
}

/* Format: "epoch N\nsite S\nreason R\nmember ADDRESS ROLE\n..." */
int tandem_recover_plan_write(const char *data_dir, const struct tandem_recover_plan *plan,
                              char *errmsg)
{
    size_t size = 256 + plan->n_members * (TANDEM_MEMBER_ADDRESS_LEN_MAX + 32);
    char *text = malloc(size), address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    if (text == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory");
    }
    size_t used = (size_t)snprintf(text, size, "epoch %" PRIu64 "\nsite %s\nreason %s\n",
                                   plan->epoch, plan->site, plan->reason);
    for (unsigned i = 0; i < plan->n_members && used < size; i++) {
        if (tandem_member_address_format(&plan->members[i], address, sizeof address) != 0) {
            free(text);
            return tandem_error_set(errmsg, TANDEM_INVALID, "invalid member %s",
                                    plan->members[i].name);
        }
        used += (size_t)snprintf(text + used, size - used, "member %s %s\n", address,
                                 tandem_role_name(plan->members[i].role));
    }
    int rv = write_atomic(data_dir, TANDEM_RECOVER_FILE, text, errmsg);
    free(text);
    return rv;
}

static int plan_line(const char *line, struct tandem_recover_plan *plan, char *errmsg)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1], role[16];
    _Static_assert(TANDEM_MEMBER_ADDRESS_LEN_MAX == 288, "the member sscanf width below");
    if (strncmp(line, "epoch ", 6) == 0 && sscanf(line + 6, "%" SCNu64, &plan->epoch) == 1) {
        return 0;
    }
    if (strncmp(line, "site ", 5) == 0) {
        snprintf(plan->site, sizeof plan->site, "%s", line + 5);
        return 0;
    }
    if (strncmp(line, "reason ", 7) == 0) {
        snprintf(plan->reason, sizeof plan->reason, "%s", line + 7);
        return 0;
    }
    if (strncmp(line, "member ", 7) != 0 || plan->n_members >= TANDEM_RECOVER_MEMBERS_MAX ||
        sscanf(line + 7, "%288s %15s", address, role) != 2) {
        (void)tandem_error_set(errmsg, TANDEM_CORRUPT, "malformed line '%.80s'", line);
        return -1;
    }
    struct tandem_member *m = &plan->members[plan->n_members];
    if (tandem_member_address_parse(address, m, errmsg) != 0) {
        return -1;
    }
    if ((m->role = tandem_role_parse(role)) < 0) {
        (void)tandem_error_set(errmsg, TANDEM_CORRUPT, "unknown role '%s' for member %s", role,
                               m->name);
        return -1;
    }
    plan->n_members++;
    return 0;
}

int tandem_recover_plan_read(const char *data_dir, struct tandem_recover_plan *plan, char *errmsg)
{
    char *text = read_small(data_dir, TANDEM_RECOVER_FILE);
    if (text == NULL) {
        return 0;
    }
    memset(plan, 0, sizeof *plan);
    int rv = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL && rv == 0;
         line = strtok_r(NULL, "\n", &save)) {
        rv = plan_line(line, plan, errmsg);
    }
    free(text);
    if (rv == 0 && (plan->epoch == 0 || plan->n_members == 0)) {
        (void)tandem_error_set(errmsg, TANDEM_CORRUPT, "recover marker has no epoch or no members");
        rv = -1;
    }
    return rv == 0 ? 1 : -1;
}

int tandem_recover_plan_done(const char *data_dir, char *errmsg)
{
    char from[PATH_MAX], to[PATH_MAX];
    path_join(from, sizeof from, data_dir, TANDEM_RECOVER_FILE);
    path_join(to, sizeof to, data_dir, TANDEM_FORCED_FILE);
    if (rename(from, to) != 0) {
        return file_error(errno, "rename", from, errmsg);
    }
    (void)fsync_dir(data_dir);
    return 0;
}

int tandem_recover_forced_note(const char *data_dir, char *site)
{
    char *text = read_small(data_dir, TANDEM_FORCED_FILE);
    int found = 0;
    char *save = NULL;
    for (char *line = text == NULL ? NULL : strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "site ", 5) == 0 &&
            tandem_member_name_ok(line + 5, TANDEM_SITE_LEN_MAX)) {
            snprintf(site, TANDEM_SITE_LEN_MAX + 1, "%s", line + 5);
            found = 1;
        }
    }
    free(text);
    return found;
}

/* ---- the seed's history ---- */

/* Format: "epoch E\nseed NAME\nfirst F\nlast I T\nterm T I\n..." */
int tandem_recover_history_write(const char *data_dir, const struct tandem_forced_history *f,
                                 char *errmsg)
{
    const struct tandem_term_history *h = &f->history;
    char text[256 + TANDEM_TERM_HISTORY_MAX * 48];
    size_t used = (size_t)snprintf(text, sizeof text,
                                   "epoch %" PRIu64 "\nseed %s\nfirst %" PRIu64 "\nlast %" PRIu64
                                   " %" PRIu64 "\n",
                                   f->epoch, f->seed, h->first_index, h->last_index, h->last_term);
    for (unsigned k = 0; k < h->n && used < sizeof text; k++) {
        used += (size_t)snprintf(text + used, sizeof text - used, "term %" PRIu64 " %" PRIu64 "\n",
                                 h->terms[k].term, h->terms[k].first_index);
    }
    tandem_assert(used < sizeof text);
    return write_atomic(data_dir, TANDEM_FORCED_HISTORY_FILE, text, errmsg);
}

static bool history_line(const char *line, struct tandem_forced_history *f)
{
    struct tandem_term_history *h = &f->history;
    struct tandem_term_start *s = &h->terms[h->n < TANDEM_TERM_HISTORY_MAX ? h->n : 0];
    if (sscanf(line, "epoch %" SCNu64, &f->epoch) == 1 ||
        sscanf(line, "first %" SCNu64, &h->first_index) == 1 ||
        sscanf(line, "last %" SCNu64 " %" SCNu64, &h->last_index, &h->last_term) == 2) {
        return true;
    }
    if (strncmp(line, "seed ", 5) == 0) {
        snprintf(f->seed, sizeof f->seed, "%s", line + 5);
        return tandem_member_name_ok(f->seed, TANDEM_NAME_LEN_MAX);
    }
    if (h->n < TANDEM_TERM_HISTORY_MAX &&
        sscanf(line, "term %" SCNu64 " %" SCNu64, &s->term, &s->first_index) == 2) {
        h->n++;
        return true;
    }
    return false;
}

int tandem_recover_history_read(const char *data_dir, struct tandem_forced_history *f)
{
    char *text = read_small(data_dir, TANDEM_FORCED_HISTORY_FILE), *save = NULL;
    bool ok = true;
    memset(f, 0, sizeof *f);
    if (text == NULL) {
        return tandem_recover_file_exists(data_dir, TANDEM_FORCED_HISTORY_FILE) ? -1 : 0;
    }
    for (char *line = strtok_r(text, "\n", &save); line != NULL && ok;
         line = strtok_r(NULL, "\n", &save)) {
        ok = history_line(line, f);
    }
    free(text);
    return ok && f->epoch > 0 && tandem_term_history_ok(&f->history) ? 1 : -1;
}

/* ---- re-seed: the old data moves aside ---- */

/* What the old data directory holds beside the lock, moved as a whole (the reseed marker
 * itself stays until the end). */
static const char *const aside_items[] = {
    "raft",
    "state",
    "state.new",
    "state.old",
    TANDEM_EPOCH_FILE,
    TANDEM_FENCED_FILE,
    TANDEM_RECOVER_FILE,
    TANDEM_FORCED_FILE,
    TANDEM_JOIN_FILE,
    TANDEM_FORCED_HISTORY_FILE,
    TANDEM_RESEED_INFO_FILE,
};

/* The reseed marker: "<epoch>\n[aside NAME\n][moved\n]". */
struct reseed_marker {
    uint64_t epoch;
    char aside[TANDEM_ASIDE_NAME_MAX + 1];
    bool moved; /* every item is in the aside folder, durably */
};

/* A name we made: "fenced-" then digits, letters and dashes only, never a path. */
static bool aside_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len <= strlen(TANDEM_ASIDE_PREFIX) || len > TANDEM_ASIDE_NAME_MAX ||
        strncmp(name, TANDEM_ASIDE_PREFIX, strlen(TANDEM_ASIDE_PREFIX)) != 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

/* 1 and m filled when the marker exists, 0 when absent, -1 when it is corrupt. */
static int reseed_marker_read(const char *data_dir, struct reseed_marker *m, char *errmsg)
{
    char *text = read_small(data_dir, TANDEM_RESEED_FILE), *save = NULL;
    memset(m, 0, sizeof *m);
    if (text == NULL) {
        return tandem_recover_file_exists(data_dir, TANDEM_RESEED_FILE) ? -1 : 0;
    }
    int rv = sscanf(text, "%" SCNu64, &m->epoch) == 1 && m->epoch > 0 ? 1 : -1;
    for (char *line = strtok_r(text, "\n", &save); line != NULL && rv == 1;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "aside ", 6) == 0) {
            snprintf(m->aside, sizeof m->aside, "%s", line + 6);
            rv = aside_name_ok(m->aside) ? 1 : -1;
        } else if (strcmp(line, "moved") == 0) {
            m->moved = true;
        }
    }
    free(text);
    if (rv < 0) {
        (void)tandem_error_set(errmsg, TANDEM_CORRUPT, "%s/%s holds no epoch or a bad aside name",
                               data_dir, TANDEM_RESEED_FILE);
    }
    return rv;
}

static int reseed_marker_write(const char *data_dir, const struct reseed_marker *m, char *errmsg)
{
    char text[TANDEM_ASIDE_NAME_MAX + 64];
    snprintf(text, sizeof text, "%" PRIu64 "\n%s%s%s%s", m->epoch, m->aside[0] ? "aside " : "",
             m->aside, m->aside[0] ? "\n" : "", m->moved ? "moved\n" : "");
    return write_atomic(data_dir, TANDEM_RESEED_FILE, text, errmsg);
}

int tandem_recover_reseed_write(const char *data_dir, uint64_t epoch, const char *aside,
                                char *errmsg)
{
    struct reseed_marker m = {.epoch = epoch};
    if (aside != NULL) {
        if (!aside_name_ok(aside)) {
            return tandem_error_set(errmsg, TANDEM_INVALID, "bad aside folder name '%s'", aside);
        }
        snprintf(m.aside, sizeof m.aside, "%s", aside);
    }
    return reseed_marker_write(data_dir, &m, errmsg);
}

int tandem_recover_reseed_aside(const char *data_dir, char *out)
{
    struct reseed_marker m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (reseed_marker_read(data_dir, &m, errmsg) != 1 || m.aside[0] == '\0') {
        return 0;
    }
    snprintf(out, TANDEM_ASIDE_NAME_MAX + 1, "%s", m.aside);
    return 1;
}

void tandem_recover_aside_name(const char *data_dir, uint64_t old_epoch, int64_t now_ms, char *out)
{
    char when[32];
    struct tm tm;
    time_t seconds = (time_t)(now_ms / 1000);
    if (gmtime_r(&seconds, &tm) == NULL ||
        strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm) == 0) {
        snprintf(when, sizeof when, "0");
    }
    snprintf(out, TANDEM_ASIDE_NAME_MAX + 1, TANDEM_ASIDE_PREFIX "%" PRIu64 "-%s", old_epoch, when);
    for (unsigned n = 2; tandem_recover_file_exists(data_dir, out) && n < ASIDE_SUFFIX_MAX; n++) {
        snprintf(out, TANDEM_ASIDE_NAME_MAX + 1, TANDEM_ASIDE_PREFIX "%" PRIu64 "-%s-%u", old_epoch,
                 when, n);
    }
}

/* Renames every item of the data directory into aside_dir, then makes the renames durable.
 * Each rename is atomic, so a crash leaves every item in one place or the other, and the next
 * start finishes the move: an item that is in both places is refused, never overwritten. */
static int move_aside(const char *data_dir, const char *aside_dir, char *errmsg)
{
    char from[PATH_MAX], to[PATH_MAX];
    struct stat st;
    if (mkdir(aside_dir, 0700) != 0 && errno != EEXIST) {
        return file_error(errno, "create", aside_dir, errmsg);
    }
    if (fsync_dir(data_dir) != 0) {
        return file_error(errno, "fsync", data_dir, errmsg);
    }
    for (size_t i = 0; i < sizeof aside_items / sizeof aside_items[0]; i++) {
        path_join(from, sizeof from, data_dir, aside_items[i]);
        path_join(to, sizeof to, aside_dir, aside_items[i]);
        if (lstat(from, &st) != 0) {
            continue; /* absent, or moved before a crash */
        }
        if (lstat(to, &st) == 0) {
            return tandem_error_set(errmsg, TANDEM_STATE,
                                    "both %s and %s exist: move one away by hand", from, to);
        }
        if (rename(from, to) != 0) {
            return file_error(errno, "move", from, errmsg);
        }
    }
    if (fsync_dir(aside_dir) != 0) {
        return file_error(errno, "fsync", aside_dir, errmsg);
    }
    if (fsync_dir(data_dir) != 0) {
        return file_error(errno, "fsync", data_dir, errmsg);
    }
    return 0;
}

/* Name first (in the marker), then the move, then the report, then the new epoch and the join
 * marker; the reseed marker goes last, so a crash anywhere repeats only what is left. */
static int reseed_now(const char *data_dir, struct reseed_marker *m, tandem_recover_aside_cb cb,
                      void *data, char *errmsg)
{
    char aside_dir[PATH_MAX];
    uint64_t old_epoch = 0;
    if (m->aside[0] == '\0') {
        uint64_t epoch = tandem_recover_file_u64(data_dir, TANDEM_EPOCH_FILE);
        tandem_recover_aside_name(data_dir, epoch == 0 ? 1 : epoch, tandem_wall_ms(), m->aside);
        if (reseed_marker_write(data_dir, m, errmsg) != 0) {
            return TANDEM_IO;
        }
    }
    path_join(aside_dir, sizeof aside_dir, data_dir, m->aside);
    if (!m->moved) {
        int rv = move_aside(data_dir, aside_dir, errmsg);
        if (rv != 0) {
            return rv;
        }
        m->moved = true;
        if (reseed_marker_write(data_dir, m, errmsg) != 0) {
            return TANDEM_IO;
        }
    }
    (void)sscanf(m->aside, TANDEM_ASIDE_PREFIX "%" SCNu64, &old_epoch);
    if (cb != NULL) {
        cb(data, aside_dir, old_epoch, m->epoch);
    }
    if (write_atomic(data_dir, TANDEM_JOIN_FILE, "join\n", errmsg) != 0 ||
        tandem_epoch_write(data_dir, m->epoch, errmsg) != 0) {
        return TANDEM_IO; /* errmsg says which file */
    }
    /* Last: a crash before this line repeats the steps not done yet on the next start. */
    return tandem_recover_file_remove(data_dir, TANDEM_RESEED_FILE, errmsg);
}

int tandem_recover_prepare(const char *data_dir, tandem_recover_aside_cb aside_cb, void *data,
                           char *errmsg)
{
    struct tandem_recover_plan *plan;
    struct reseed_marker marker;
    int pending = reseed_marker_read(data_dir, &marker, errmsg);
    if (pending < 0) {
        return TANDEM_CORRUPT; /* nothing moved: the operator looks at the marker */
    }
    if (pending == 1) {
        return reseed_now(data_dir, &marker, aside_cb, data, errmsg);
    }
    plan = malloc(sizeof *plan);
    if (plan == NULL) {
        return tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory");
    }
    int found = tandem_recover_plan_read(data_dir, plan, errmsg);
    int rv = found < 0 ? TANDEM_CORRUPT : 0;
    if (found == 1) {
        rv = tandem_epoch_write(data_dir, plan->epoch, errmsg);
        if (rv == 0) {
            rv = tandem_recover_file_remove(data_dir, TANDEM_FENCED_FILE, errmsg);
        }
    }
    free(plan);
    return rv;
}
