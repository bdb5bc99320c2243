/* tandem-lostwrites-rollback: undoes the writes the lost-writes shim journaled, so that every
 * file is back to its content and size at its last fsync/fdatasync.
 *
 * Usage: tandem-lostwrites-rollback [--dry-run] JOURNAL_DIR
 * Run it after the process that wrote under the shim is dead (kill -9), before starting it
 * again. For each DIR/ *.journal (chaos/lostwrites/journal.h) it finds the file by its identity
 * (device, inode, birth time) at the journal's path or, when it was renamed since, anywhere
 * under the journal's root; undoes the records after the last sync, last to first; fsyncs the
 * file and removes the journal. A journal whose file no longer exists is removed ("gone": the
 * model keeps namespace operations). One line per journal on stdout; exit 0 when every journal
 * was applied or gone, 1 when one could not be (it is kept, and named on stderr; so is one whose
 * writer still has it open: the process must be dead first), 2 on bad usage.
 * --dry-run prints what would be undone and changes nothing. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_BYTES_MAX (1ull << 32) /* a journal bigger than this is not one of ours */
#define WALK_FDS          16

struct journal {
    const char *name;
    unsigned char *bytes; /* owned: the whole journal */
    size_t len;
    struct lw_journal_header header;
    char path[PATH_MAX];
    char root[PATH_MAX];
};

static struct lw_identity walk_target; /* nftw's callback takes no argument */
static char walk_found[PATH_MAX];

static int fail(const char *journal, const char *what, int err)
{
    fprintf(stderr, "tandem-lostwrites-rollback: %s: %s%s%s\n", journal, what, err ? ": " : "",
            err ? strerror(err) : "");
    return -1;
}

static int load(int dir_fd, struct journal *j)
{
    int fd = openat(dir_fd, j->name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0) {
            close(fd);
        }
        return fail(j->name, "cannot read", err);
    }
    if ((unsigned long long)st.st_size > JOURNAL_BYTES_MAX) {
        close(fd);
        return fail(j->name, "too big to be a journal", 0);
    }
    j->len = (size_t)st.st_size;
    j->bytes = malloc(j->len > 0 ? j->len : 1);
    size_t done = 0;
    while (j->bytes != NULL && done < j->len) {
        ssize_t n = read(fd, j->bytes + done, j->len - done);
        if (n <= 0) {
            break;
        }
        done += (size_t)n;
    }
    close(fd);
    return j->bytes != NULL && done == j->len ? 0 : fail(j->name, "cannot read", EIO);
}

/* Returns 0, PARSE_TORN for a journal its writer died creating (killed between the open and
 * the header's writev: the header comes before any record, so nothing was journaled and nothing
 * needs undoing), or -1 for a file that is no journal. */
enum { PARSE_TORN = 1 };
static int parse_header(struct journal *j)
{
    struct lw_journal_header *h = &j->header;
    size_t magic_seen = j->len < 8 ? j->len : 8;
    if (memcmp(j->bytes, LW_JOURNAL_MAGIC, magic_seen) != 0) {
        return fail(j->name, "not a lost-writes journal", 0);
    }
    if (j->len < sizeof *h) {
        return PARSE_TORN;
    }
    memcpy(h, j->bytes, sizeof *h);
    if (h->path_len == 0 || h->path_len >= PATH_MAX || h->root_len >= PATH_MAX) {
        return fail(j->name, "not a lost-writes journal", 0);
    }
    if (sizeof *h + h->path_len + h->root_len > j->len) {
        return PARSE_TORN;
    }
    memcpy(j->path, j->bytes + sizeof *h, h->path_len);
    j->path[h->path_len] = '\0';
    memcpy(j->root, j->bytes + sizeof *h + h->path_len, h->root_len);
    j->root[h->root_len] = '\0';
    return 0;
}

static bool identity_at(const char *path, const struct lw_identity *id)
{
    struct statx st;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_BTIME, &st) != 0 ||
        !S_ISREG(st.stx_mode)) {
        return false;
    }
    struct lw_identity found = lw_identity_of(&st);
    return lw_identity_equal(&found, id);
}

static int walk_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_F && S_ISREG(st->st_mode) && st->st_ino == walk_target.ino &&
        identity_at(path, &walk_target)) {
        snprintf(walk_found, sizeof walk_found, "%s", path);
        return 1;
    }
    return 0;
}

/* Whether the process that made the journal still holds it open: undoing its writes under it
 * would corrupt a live process's files (it must be killed, and gone, first). */
static bool writer_alive(const char *dir, const struct journal *j)
{
    char proc[64], link[PATH_MAX + 64], target[PATH_MAX + 64], dir_path[PATH_MAX];
    char journal_path[PATH_MAX + 64];
    if (realpath(dir, dir_path) == NULL) {
        return false;
    }
    snprintf(journal_path, sizeof journal_path, "%s/%s", dir_path, j->name);
    snprintf(proc, sizeof proc, "/proc/%u/fd", j->header.writer_pid);
    DIR *fds = opendir(proc);
    bool alive = false;
    for (struct dirent *e; fds != NULL && !alive && (e = readdir(fds)) != NULL;) {
        snprintf(link, sizeof link, "%s/%s", proc, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            alive = strcmp(target, journal_path) == 0;
        }
    }
    if (fds != NULL) {
        closedir(fds);
    }
    return alive;
}

/* Where the journal's file is now: its path, or where a rename took it under the root. */
static bool find_file(const struct journal *j, char *out, size_t size)
{
    if (identity_at(j->path, &j->header.id)) {
        snprintf(out, size, "%s", j->path);
        return true;
    }
    walk_target = j->header.id;
    if (j->root[0] != '\0' && nftw(j->root, walk_visit, WALK_FDS, FTW_PHYS) == 1) {
        snprintf(out, size, "%s", walk_found);
        return true;
    }
    return false;
}

/* The offsets of the records to undo (those after the last sync), in order; *count of them. */
static size_t *records_to_undo(const struct journal *j, size_t *count, bool *torn)
{
    size_t at = sizeof j->header + j->header.path_len + j->header.root_len, n = 0, start = at;
    size_t *offsets = malloc(sizeof *offsets * (j->len / sizeof(struct lw_record) + 1));
    *torn = false;
    while (offsets != NULL && at < j->len) {
        struct lw_record r;
        if (j->len - at < sizeof r) {
            *torn = true;
            break;
        }
        memcpy(&r, j->bytes + at, sizeof r);
        if (r.magic != LW_RECORD_MAGIC || r.type < LW_WRITE || r.type > LW_SYNC ||
            r.data_len > j->len - at - sizeof r) {
            *torn = true; /* the kill cut it: its write never ran (journal.h) */
            break;
        }
        if (r.type == LW_SYNC) {
            start = r.offset > start ? (size_t)r.offset : start;
        } else {
            offsets[n++] = at;
        }
        at += sizeof r + (size_t)r.data_len;
    }
    size_t kept = 0;
    for (size_t i = 0; offsets != NULL && i < n; i++) {
        if (offsets[i] >= start) {
            offsets[kept++] = offsets[i];
        }
    }
    *count = kept;
    return offsets;
}

static int write_all(int fd, const unsigned char *data, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, data + done, len - done, (off_t)(offset + done));
        if (n <= 0) {
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static int undo_one(int fd, const struct lw_record *r, const unsigned char *data)
{
    switch (r->type) {
        case LW_WRITE:
            return write_all(fd, data, (size_t)r->data_len, r->offset) == 0 &&
                           ftruncate(fd, (off_t)r->old_size) == 0
                       ? 0
                       : -1;
        case LW_CONTENT:
            return write_all(fd, data, (size_t)r->data_len, r->offset);
        case LW_TRUNCATE:
            return ftruncate(fd, (off_t)r->offset) == 0 && ftruncate(fd, (off_t)r->old_size) == 0
                       ? 0
                       : -1;
        default:
            return -1;
    }
}

/* Undoes the records last to first on the file at path, then makes the result durable. */
static int undo_all(const struct journal *j, const char *path, const size_t *offsets, size_t count)
{
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return fail(j->name, path, errno);
    }
    struct stat before, after;
    int rv = fstat(fd, &before);
    for (size_t i = count; rv == 0 && i > 0; i--) {
        struct lw_record r;
        memcpy(&r, j->bytes + offsets[i - 1], sizeof r);
        rv = undo_one(fd, &r, j->bytes + offsets[i - 1] + sizeof r);
    }
    if (rv != 0 || fsync(fd) != 0 || fstat(fd, &after) != 0) {
        int err = errno;
        close(fd);
        return fail(j->name, path, err);
    }
    close(fd);
    printf("%s: undid %zu records, size %lld -> %lld\n", path, count, (long long)before.st_size,
           (long long)after.st_size);
    return 0;
}

static int rollback_one(const char *dir, int dir_fd, const char *name, bool dry_run)
{
    struct journal j = {.name = name};
    char path[PATH_MAX];
    size_t count = 0;
    bool torn = false;
    size_t *offsets = NULL;
    int rv = load(dir_fd, &j);
    if (rv == 0 && (rv = parse_header(&j)) == PARSE_TORN) {
        printf("%s: header torn (its writer died creating it): no record to undo\n", name);
        rv = 0;
    } else if (rv == 0) {
        offsets = records_to_undo(&j, &count, &torn);
        if (offsets == NULL) {
            rv = fail(name, "out of memory", ENOMEM);
        } else if (writer_alive(dir, &j)) {
            fprintf(stderr,
                    "tandem-lostwrites-rollback: %s: its writer (pid %u) is still running: kill "
                    "it, and let it die, first\n",
                    name, j.header.writer_pid);
            rv = -1; /* the journal stays */
        } else if (!find_file(&j, path, sizeof path)) {
            printf("%s: gone (%zu records not needed)\n", j.path, count);
        } else if (dry_run) {
            printf("%s: would undo %zu records%s\n", path, count, torn ? " (torn tail)" : "");
        } else {
            rv = undo_all(&j, path, offsets, count);
        }
    }
    if (rv == 0 && !dry_run && unlinkat(dir_fd, name, 0) != 0) {
        rv = fail(name, "cannot remove", errno);
    }
    free(offsets);
    free(j.bytes);
    return rv;
}

static int is_journal(const struct dirent *e)
{
    size_t len = strlen(e->d_name), suffix = strlen(LW_JOURNAL_SUFFIX);
    return len > suffix && strcmp(e->d_name + len - suffix, LW_JOURNAL_SUFFIX) == 0;
}

/* The reboot after the power cut: a fresh boot id (the kernel's random UUID) for the shim to
 * answer with (journal.h). */
static int new_boot(const char *dir)
{
    char boot[64] = {0}, path[PATH_MAX + 16];
    int in = open("/proc/sys/kernel/random/uuid", O_RDONLY | O_CLOEXEC);
    ssize_t n = in < 0 ? -1 : read(in, boot, sizeof boot - 1);
    if (in >= 0) {
        close(in);
    }
    snprintf(path, sizeof path, "%s/%s", dir, LW_BOOT_ID_FILE);
    int out = n <= 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0 || write(out, boot, (size_t)n) != n) {
        fprintf(stderr, "tandem-lostwrites-rollback: %s: cannot write a new boot id: %s\n", path,
                strerror(errno));
        if (out >= 0) {
            close(out);
        }
        return -1;
    }
    close(out);
    printf("new boot id %s", boot);
    return 0;
}

int main(int argc, char **argv)
{
    bool dry_run = argc == 3 && strcmp(argv[1], "--dry-run") == 0;
    if (argc != 2 + (dry_run ? 1 : 0) || argv[argc - 1][0] == '-') {
        fprintf(stderr, "usage: tandem-lostwrites-rollback [--dry-run] JOURNAL_DIR\n");
        return 2;
    }
    const char *dir = argv[argc - 1];
    struct dirent **entries;
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int n = dir_fd < 0 ? -1 : scandir(dir, &entries, is_journal, alphasort);
    if (n < 0) {
        fprintf(stderr, "tandem-lostwrites-rollback: %s: %s\n", dir, strerror(errno));
        if (dir_fd >= 0) {
            close(dir_fd);
        }
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        failed += rollback_one(dir, dir_fd, entries[i]->d_name, dry_run) != 0;
        free(entries[i]);
    }
    free(entries);
    close(dir_fd);
    if (!dry_run && failed == 0 && new_boot(dir) != 0) {
        failed++;
    }
    printf("%d journals, %d failed\n", n, failed);
    return failed > 0 ? 1 : 0;
}
