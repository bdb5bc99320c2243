/* An LD_PRELOAD shim that lets a process killed with SIGKILL lose what it wrote after its last
 * fsync/fdatasync, the way LazyFS does for etcd's robustness tests.
 *
 * Use (the rollback is built beside this library; see chaos/README.md, "Lost writes"):
 *   LD_PRELOAD=BUILD/libtandem_lostwrites.so TANDEM_LOSTWRITES_DIR=JOURNALS \
 *       TANDEM_LOSTWRITES_ROOT=DATA_DIR tandemd ...      # then kill -9 it
 *   BUILD/tandem-lostwrites-rollback JOURNALS              # DATA_DIR is now as at its last syncs
 * Without TANDEM_LOSTWRITES_DIR the shim does nothing (every call goes straight through). With it
 * but without TANDEM_LOSTWRITES_ROOT the process stops at start with one line on stderr: a fault
 * that silently injects nothing would make a chaos run prove nothing. With an ASan-built program,
 * put the sanitizer's runtime first: LD_PRELOAD="$(gcc -print-file-name=libasan.so) ...".
 *
 * How: before a write changes a regular file under ROOT opened for writing, the shim appends an
 * undo record (offset, the bytes about to be overwritten, the old size) to that file's journal in
 * JOURNALS (chaos/lostwrites/journal.h), with a plain write: a killed process's page cache
 * survives, so the journal does too. A successful fsync/fdatasync of the file drops the records
 * appended before it began (a write racing with it stays journaled).
 * The rollback undoes every journal's records last to first, so each file gets back the content
 * and size it had at its last sync. The model is a power cut at the moment of the kill on a file
 * system that keeps namespace operations (create, rename, unlink, directory fsync) and loses
 * exactly the file data and sizes not yet synced.
 *
 * The rollback also simulates the reboot that follows a power cut: it writes a fresh boot id into
 * JOURNALS/boot_id, and the shim answers an open of /proc/sys/kernel/random/boot_id with that
 * file when it exists (tandemd trusts a store with unsynced commits only within the boot that
 * made them: storage/unsynced.h).
 *
 * Covered (journaled, so lost at the kill unless synced): write, pwrite, writev, pwritev,
 * pwritev2 (and their 64 variants, and the same system calls made through syscall(), which libuv
 * 1.44 uses for pwritev), ftruncate, truncate, open/openat/creat with O_TRUNC, and io_submit
 * writes without RWF_DSYNC/RWF_SYNC. Syncs: fsync, fdatasync (also through syscall()), sync and
 * syncfs (every journal of the file system). Already durable, so never journaled: writes on a
 * descriptor opened O_DSYNC or O_SYNC, pwritev2 and io_submit writes flagged RWF_DSYNC or RWF_SYNC.
 *
 * What tandemd writes, and how (LMDB 0.9.24, libraft 0.22.1 raft_uv, libuv 1.44, all checked):
 *   - LMDB data.mdb (storage/store.c: MDB_NOSYNC, no MDB_WRITEMAP): pages and the meta page by
 *     pwrite/writev without a sync; fdatasync from the thread pool about once a second
 *     (node/store_sync.c) and at a clean close: covered; a kill loses every commit since the
 *     last sync, in no particular order (a torn tree), and the unsynced mark beside it
 *     (storage/unsynced.c: write, fsync, directory fsync) tells the next start.
 *   - LMDB lock.mdb: the reader table, written through a shared mapping: not covered (mapped
 *     writes cannot be seen from here); its ftruncate at creation is, so a rollback may leave it
 *     empty, and LMDB rebuilds it when it opens the environment.
 *   - raft segments (open-N): io_submit with RWF_DSYNC on an O_DIRECT descriptor
 *     (src/uv_writer.c): durable on completion, never journaled; their posix_fallocate is not
 *     journaled either (it only reserves zeros). Finalising one (ftruncate, fsync, rename,
 *     directory fsync), metadata1/2 (pwrite, fdatasync), snapshots (an O_TMPFILE written by
 *     pwritev through syscall(), fsync, linkat, directory fsync): covered, and all synced before
 *     libraft relies on them. tandemd's restore of a snapshot into LMDB (storage/store.c) builds
 *     the new environment beside the old one and syncs it (mdb_env_sync) before the rename.
 *   - DATA_DIR/lock (storage/dir_lock.c: ftruncate + pwrite of the pid, never synced): covered;
 *     after a rollback it names an older pid, which only the lock's error message reads.
 *   - the recovery markers (consensus/recover.c: write, fsync, rename, directory fsync): covered.
 * Not covered: writes through shared mappings (msync is therefore not interposed); data moved by
 * copy_file_range, sendfile or splice; fallocate; a descriptor made by dup/dup2/fcntl(F_DUPFD) or
 * opened by a raw open system call (not tracked: writes through it are not journaled); stdio
 * streams (glibc calls its own write); sync_file_range (not a durability barrier: it leaves the
 * journal alone); namespace operations (a file created or renamed since the last directory sync
 * stays; a file never synced keeps its name and is cut back to the size and content it had before
 * its first journaled write). Two processes writing one file under the shim are not supported
 * (tandemd's data-directory lock rules that out). */
#include "journal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define LW_FDS_MAX    65536 /* descriptors the shim can track: a higher one stops the process */
#define LW_INODES_MAX 256   /* files with unsynced journaled writes at one time */
#define LW_EXPORT     __attribute__((visibility("default")))
/* The 64 variants are the same functions on a 64-bit system. */
#define LW_ALIAS(name) __attribute__((alias(#name), visibility("default")))
#define LW_SYNC_FLAGS  (O_DSYNC | O_SYNC)
#define LW_RWF_DURABLE (RWF_DSYNC | RWF_SYNC)

/* A tracked descriptor: a regular file under the root, opened for writing. */
struct lw_fd {
    atomic_int tracked;
    bool durable; /* opened O_DSYNC/O_SYNC: every write is durable when it returns */
    struct lw_identity id;
};

/* A file with a journal. */
struct lw_inode {
    bool used;
    struct lw_identity id;
    int journal_fd; /* O_RDWR | O_APPEND */
    int read_fd;    /* reads the bytes a write is about to overwrite (the writer's fd may be
                     * O_WRONLY or O_DIRECT) */
    uint64_t header_len;
    uint64_t journal_len;
};

static struct {
    int (*open)(const char *, int, ...);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
    int (*ftruncate)(int, off_t);
    int (*truncate)(const char *, off_t);
    int (*fsync)(int);
    int (*fdatasync)(int);
    void (*sync)(void);
    int (*syncfs)(int);
    int (*close)(int);
    long (*syscall)(long, ...);
} real;

static bool active;
static char journal_dir[PATH_MAX];
static char root_dir[PATH_MAX];
static size_t root_len;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lw_fd fds[LW_FDS_MAX];
static struct lw_inode inodes[LW_INODES_MAX];

static void lw_say(const char *text)
{
    size_t len = strlen(text);
    ssize_t n = real.write != NULL ? real.write(2, text, len) : -1;
    (void)n;
}

/* A journal that cannot be kept would make the fault a lie: stop the process, loudly. */
__attribute__((noreturn)) static void lw_fatal(const char *what, const char *path, int err)
{
    char text[PATH_MAX + 256];
    snprintf(text, sizeof text, "lostwrites: %s %s: %s; stopping the process\n", what,
             path != NULL ? path : "", strerror(err));
    lw_say(text);
    abort();
}

static void *lw_next(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        lw_say("lostwrites: a libc function is missing: ");
        lw_say(name);
        lw_say("\n");
        abort();
    }
    return f;
}

/* dlsym's void * to a function pointer without the cast ISO C forbids. */
#define LW_RESOLVE(name)                                                                           \
    do {                                                                                           \
        void *lw_f_ = lw_next(#name);                                                              \
        memcpy(&real.name, &lw_f_, sizeof lw_f_);                                                  \
    } while (0)

static void lw_resolve(void)
{
    LW_RESOLVE(open);
    LW_RESOLVE(write);
    LW_RESOLVE(pwrite);
    LW_RESOLVE(writev);
    LW_RESOLVE(pwritev);
    LW_RESOLVE(pwritev2);
    LW_RESOLVE(ftruncate);
    LW_RESOLVE(truncate);
    LW_RESOLVE(fsync);
    LW_RESOLVE(fdatasync);
    LW_RESOLVE(sync);
    LW_RESOLVE(syncfs);
    LW_RESOLVE(close);
    LW_RESOLVE(syscall);
}

static void lw_atfork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void lw_atfork_release(void)
{
    pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void lw_init(void)
{
    lw_resolve();
    const char *dir = getenv("TANDEM_LOSTWRITES_DIR");
    if (dir == NULL || dir[0] == '\0') {
        return;
    }
    const char *root = getenv("TANDEM_LOSTWRITES_ROOT");
    if (root == NULL || root[0] == '\0') {
        lw_say("lostwrites: TANDEM_LOSTWRITES_DIR is set but TANDEM_LOSTWRITES_ROOT is not: set "
               "it to the data directory whose writes may be lost\n");
        _exit(2);
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        lw_fatal("cannot make the journal directory", dir, errno);
    }
    if (realpath(dir, journal_dir) == NULL) {
        lw_fatal("cannot resolve the journal directory", dir, errno);
    }
    if (mkdir(root, 0700) != 0 && errno != EEXIST) {
        lw_fatal("cannot make the root directory", root, errno);
    }
    if (realpath(root, root_dir) == NULL) {
        lw_fatal("cannot resolve the root directory", root, errno);
    }
    root_len = strlen(root_dir);
    for (size_t i = 0; i < LW_INODES_MAX; i++) {
        inodes[i].journal_fd = inodes[i].read_fd = -1;
    }
    pthread_atfork(lw_atfork_prepare, lw_atfork_release, lw_atfork_release);
    active = true;
}

static bool lw_under(const char *path, const char *dir, size_t dir_len)
{
    return strncmp(path, dir, dir_len) == 0 && (path[dir_len] == '/' || path[dir_len] == '\0');
}

/* The identity and size of what fd refers to; false when it is not a regular file. */
static bool lw_stat(int fd, struct lw_identity *id, uint64_t *size)
{
    struct statx st;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &st) != 0 ||
        !S_ISREG(st.stx_mode)) {
        return false;
    }
    *id = lw_identity_of(&st);
    *size = st.stx_size;
    return true;
}

static bool lw_fd_path(int fd, char *out, size_t size)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    if (n <= 0) {
        return false;
    }
    out[n] = '\0';
    return true;
}

/* After a successful open: track fd when it is a regular file under the root opened to write. */
static void lw_track(int fd, int flags)
{
    char path[PATH_MAX];
    uint64_t size;
    struct lw_identity id;
    if (!active || fd < 0 || (flags & O_ACCMODE) == O_RDONLY || (flags & O_PATH) != 0 ||
        !lw_fd_path(fd, path, sizeof path) || !lw_under(path, root_dir, root_len) ||
        lw_under(path, journal_dir, strlen(journal_dir)) || !lw_stat(fd, &id, &size)) {
        return;
    }
    if (fd >= LW_FDS_MAX) {
        lw_fatal("descriptor beyond the shim's table for", path, EMFILE);
    }
    fds[fd].id = id;
    fds[fd].durable = (flags & LW_SYNC_FLAGS) != 0;
    atomic_store(&fds[fd].tracked, 1);
}

static bool lw_is_tracked(int fd)
{
    return active && fd >= 0 && fd < LW_FDS_MAX && atomic_load(&fds[fd].tracked) != 0;
}

static void lw_untrack(int fd)
{
    if (fd >= 0 && fd < LW_FDS_MAX) {
        atomic_store(&fds[fd].tracked, 0);
    }
}

static struct lw_inode *lw_find(const struct lw_identity *id)
{
    for (size_t i = 0; i < LW_INODES_MAX; i++) {
        if (inodes[i].used && lw_identity_equal(&inodes[i].id, id)) {
            return &inodes[i];
        }
    }
    return NULL;
}

/* Forgets a journal whose records are all durable (or whose file is gone): removes the file. */
static void lw_forget(struct lw_inode *in)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%llu-%llu-%lld.%u" LW_JOURNAL_SUFFIX, journal_dir,
             (unsigned long long)in->id.dev, (unsigned long long)in->id.ino,
             (long long)in->id.btime_sec, in->id.btime_nsec);
    if (unlink(path) != 0 && errno != ENOENT) {
        lw_fatal("cannot remove the journal", path, errno);
    }
    real.close(in->journal_fd);
    real.close(in->read_fd);
    memset(in, 0, sizeof *in);
    in->journal_fd = in->read_fd = -1;
}

static void lw_append(struct lw_inode *in, const struct lw_record *r, const void *data)
{
    struct iovec iov[2] = {{(void *)r, sizeof *r}, {(void *)data, r->data_len}};
    size_t want = sizeof *r + r->data_len;
    ssize_t n = real.writev(in->journal_fd, iov, r->data_len > 0 ? 2 : 1);
    if (n != (ssize_t)want) {
        lw_fatal("cannot append to a journal", NULL, n < 0 ? errno : ENOSPC);
    }
    in->journal_len += want;
}

/* Writes a new journal's header, or adopts one left by an earlier run that was not rolled back
 * (its records stay: they are older than ours, and the rollback undoes them after ours). */
static void lw_journal_start(struct lw_inode *in, const char *path, const char *file_path)
{
    struct stat st;
    if (fstat(in->journal_fd, &st) != 0) {
        lw_fatal("cannot stat the journal", path, errno);
    }
    if (st.st_size > 0 && (size_t)st.st_size < sizeof(struct lw_journal_header)) {
        /* Torn by a writer killed while creating it: no record follows such a header. */
        if (ftruncate(in->journal_fd, 0) != 0) {
            lw_fatal("cannot truncate a torn journal", path, errno);
        }
        st.st_size = 0;
    }
    if (st.st_size > 0) {
        struct lw_journal_header h;
        if (pread(in->journal_fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
            memcmp(h.magic, LW_JOURNAL_MAGIC, 8) != 0) {
            lw_fatal("not a journal", path, EINVAL);
        }
        in->header_len = sizeof h + h.path_len + h.root_len;
        in->journal_len = (uint64_t)st.st_size;
        return;
    }
    struct lw_journal_header h = {.id = in->id};
    memcpy(h.magic, LW_JOURNAL_MAGIC, 8);
    h.path_len = (uint32_t)strlen(file_path);
    h.root_len = (uint32_t)root_len;
    h.writer_pid = (uint32_t)getpid();
    struct iovec iov[3] = {{&h, sizeof h}, {(void *)file_path, h.path_len}, {root_dir, root_len}};
    in->header_len = sizeof h + h.path_len + h.root_len;
    if (real.writev(in->journal_fd, iov, 3) != (ssize_t)in->header_len) {
        lw_fatal("cannot write the journal header", path, errno);
    }
    in->journal_len = in->header_len;
}

/* Drops journals of files that no longer exist, to make room. */
static void lw_reclaim(void)
{
    for (size_t i = 0; i < LW_INODES_MAX; i++) {
        struct stat st;
        if (inodes[i].used && fstat(inodes[i].read_fd, &st) == 0 && st.st_nlink == 0) {
            lw_forget(&inodes[i]);
        }
    }
}

static struct lw_inode *lw_slot(void)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < LW_INODES_MAX; i++) {
            if (!inodes[i].used) {
                return &inodes[i];
            }
        }
        lw_reclaim();
    }
    lw_fatal("too many files with unsynced writes", NULL, ENFILE);
}

/* The journal of the file fd refers to (made on first use). Called with the lock held. */
static struct lw_inode *lw_journal(int fd, const struct lw_identity *id)
{
    struct lw_inode *in = lw_find(id);
    if (in != NULL) {
        return in;
    }
    char file_path[PATH_MAX], path[PATH_MAX + 128], link[64];
    if (!lw_fd_path(fd, file_path, sizeof file_path)) {
        lw_fatal("cannot name the file of descriptor", NULL, errno);
    }
    in = lw_slot();
    in->id = *id;
    snprintf(path, sizeof path, "%s/%llu-%llu-%lld.%u" LW_JOURNAL_SUFFIX, journal_dir,
             (unsigned long long)id->dev, (unsigned long long)id->ino, (long long)id->btime_sec,
             id->btime_nsec);
    in->journal_fd = real.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (in->journal_fd < 0) {
        lw_fatal("cannot open the journal", path, errno);
    }
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    in->read_fd = real.open(link, O_RDONLY | O_CLOEXEC);
    if (in->read_fd < 0) {
        lw_fatal("cannot open for reading", file_path, errno);
    }
    in->used = true;
    lw_journal_start(in, path, file_path);
    return in;
}

static void lw_read_old(struct lw_inode *in, void *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(in->read_fd, (char *)buf + done, len - done, (off_t)(offset + done));
        if (n <= 0) {
            lw_fatal("cannot read the bytes a write overwrites", NULL, n < 0 ? errno : EIO);
        }
        done += (size_t)n;
    }
}

/* Journals a write of len bytes at offset (-1: the descriptor's position) that is about to run
 * on tracked fd. rwf: the call's RWF_ flags. Called with the lock held. */
static void lw_before_write(int fd, off_t offset, size_t len, int rwf)
{
    struct lw_identity id;
    uint64_t size;
    if (!lw_stat(fd, &id, &size) || !lw_identity_equal(&id, &fds[fd].id)) {
        lw_untrack(fd); /* closed behind our back (a raw close, dup2) and reused */
        return;
    }
    if (fds[fd].durable || (rwf & LW_RWF_DURABLE) != 0 || len == 0) {
        return;
    }
    int flags = fcntl(fd, F_GETFL);
    uint64_t at = (flags >= 0 && (flags & O_APPEND)) ? size
                  : offset >= 0                      ? (uint64_t)offset
                                                     : (uint64_t)lseek(fd, 0, SEEK_CUR);
    struct lw_inode *in = lw_journal(fd, &id);
    size_t old_len = at >= size ? 0 : (size_t)(size - at < len ? size - at : len);
    void *old = old_len > 0 ? malloc(old_len) : NULL;
    if (old_len > 0 && old == NULL) {
        lw_fatal("out of memory saving the bytes a write overwrites", NULL, ENOMEM);
    }
    lw_read_old(in, old, old_len, at);
    struct lw_record r = {LW_RECORD_MAGIC, LW_WRITE, at, size, old_len};
    lw_append(in, &r, old);
    free(old);
}

static bool lw_zero(const unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Journals a truncation to length of the file in, whose size is size. Lock held. */
static void lw_before_truncate(struct lw_inode *in, uint64_t size, uint64_t length)
{
    static unsigned char chunk[LW_CHUNK_BYTES];
    for (uint64_t at = length; at < size; at += LW_CHUNK_BYTES) {
        size_t len = size - at < LW_CHUNK_BYTES ? (size_t)(size - at) : LW_CHUNK_BYTES;
        lw_read_old(in, chunk, len, at);
        if (!lw_zero(chunk, len)) {
            struct lw_record c = {LW_RECORD_MAGIC, LW_CONTENT, at, size, len};
            lw_append(in, &c, chunk);
        }
    }
    struct lw_record r = {LW_RECORD_MAGIC, LW_TRUNCATE, length, size, 0};
    lw_append(in, &r, NULL);
}

static void lw_truncate_fd(int fd, off_t length)
{
    struct lw_identity id;
    uint64_t size;
    if (!lw_stat(fd, &id, &size) || (uint64_t)length == size) {
        return;
    }
    lw_before_truncate(lw_journal(fd, &id), size, (uint64_t)length);
}

/* open(..., O_TRUNC) and truncate(path) on a file under the root: journal the cut first. */
static void lw_truncate_path(int dirfd, const char *path, off_t length)
{
    char resolved[PATH_MAX];
    int fd = (int)real.syscall(SYS_openat, dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) {
        return; /* nothing to cut: the call creates the file or fails on its own */
    }
    if (lw_fd_path(fd, resolved, sizeof resolved) && lw_under(resolved, root_dir, root_len) &&
        !lw_under(resolved, journal_dir, strlen(journal_dir))) {
        lw_truncate_fd(fd, length);
    }
    real.close(fd);
}

/* After fd's sync succeeded: the records before journal offset through are durable. */
static void lw_synced(const struct lw_identity *id, uint64_t through)
{
    struct lw_inode *in = lw_find(id);
    if (in == NULL) {
        return;
    }
    if (in->journal_len == through) {
        lw_forget(in);
        return;
    }
    struct lw_record r = {LW_RECORD_MAGIC, LW_SYNC, through, 0, 0};
    lw_append(in, &r, NULL);
}

/* fsync/fdatasync of fd, through sync_fn: the journal empties only if the sync succeeds, and
 * only of what was appended before the sync began (a concurrent write stays journaled). */
static int lw_sync_fd(int fd, int (*sync_fn)(int))
{
    struct lw_identity id;
    uint64_t size, through = 0;
    bool known = false;
    if (active && lw_stat(fd, &id, &size)) {
        pthread_mutex_lock(&lock);
        struct lw_inode *in = lw_find(&id);
        if (in != NULL) {
            known = true;
            through = in->journal_len;
        }
        pthread_mutex_unlock(&lock);
    }
    int rv = sync_fn(fd);
    if (rv == 0 && known) {
        int saved = errno;
        pthread_mutex_lock(&lock);
        lw_synced(&id, through);
        pthread_mutex_unlock(&lock);
        errno = saved;
    }
    return rv;
}

/* Where each journal (of dev, when dev_only) stood before a sync() or syncfs() began. */
struct lw_mark {
    struct lw_identity id;
    uint64_t through;
};

static size_t lw_mark_all(struct lw_mark *marks, bool dev_only, uint64_t dev)
{
    size_t count = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < LW_INODES_MAX; i++) {
        if (inodes[i].used && (!dev_only || inodes[i].id.dev == dev)) {
            marks[count].id = inodes[i].id;
            marks[count++].through = inodes[i].journal_len;
        }
    }
    pthread_mutex_unlock(&lock);
    return count;
}

/* After the sync succeeded: what each marked journal held before it is durable. */
static void lw_synced_marks(const struct lw_mark *marks, size_t count)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count; i++) {
        lw_synced(&marks[i].id, marks[i].through);
    }
    pthread_mutex_unlock(&lock);
}

static size_t lw_iov_len(const struct iovec *iov, int count)
{
    size_t len = 0;
    for (int i = 0; i < count; i++) {
        len += iov[i].iov_len;
    }
    return len;
}

#define LW_JOURNALED(fd, offset, len, rwf, call)                                                   \
    do {                                                                                           \
        if (!lw_is_tracked(fd)) {                                                                  \
            return call;                                                                           \
        }                                                                                          \
        pthread_mutex_lock(&lock);                                                                 \
        lw_before_write(fd, offset, len, rwf);                                                     \
        ssize_t lw_rv_ = call;                                                                     \
        int lw_errno_ = errno;                                                                     \
        pthread_mutex_unlock(&lock);                                                               \
        errno = lw_errno_;                                                                         \
        return lw_rv_;                                                                             \
    } while (0)

LW_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    LW_JOURNALED(fd, -1, n, 0, real.write(fd, buf, n));
}

LW_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset)
{
    LW_JOURNALED(fd, offset, n, 0, real.pwrite(fd, buf, n, offset));
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset) LW_ALIAS(pwrite);

LW_EXPORT ssize_t writev(int fd, const struct iovec *iov, int count)
{
    LW_JOURNALED(fd, -1, lw_iov_len(iov, count), 0, real.writev(fd, iov, count));
}

LW_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset)
{
    LW_JOURNALED(fd, offset, lw_iov_len(iov, count), 0, real.pwritev(fd, iov, count, offset));
}

ssize_t pwritev64(int fd, const struct iovec *iov, int count, off_t offset) LW_ALIAS(pwritev);

LW_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int count, off_t offset, int flags)
{
    LW_JOURNALED(fd, offset, lw_iov_len(iov, count), flags,
                 real.pwritev2(fd, iov, count, offset, flags));
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int count, off_t offset, int flags)
    LW_ALIAS(pwritev2);

LW_EXPORT int ftruncate(int fd, off_t length)
{
    if (!lw_is_tracked(fd)) {
        return real.ftruncate(fd, length);
    }
    pthread_mutex_lock(&lock);
    lw_truncate_fd(fd, length);
    int rv = real.ftruncate(fd, length);
    int saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rv;
}

int ftruncate64(int fd, off_t length) LW_ALIAS(ftruncate);

LW_EXPORT int truncate(const char *path, off_t length)
{
    if (!active) {
        return real.truncate(path, length);
    }
    pthread_mutex_lock(&lock);
    lw_truncate_path(AT_FDCWD, path, length);
    int rv = real.truncate(path, length);
    int saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rv;
}

int truncate64(const char *path, off_t length) LW_ALIAS(truncate);

/* Every open variant: journals an O_TRUNC cut, opens, tracks. */
static int lw_open(int dirfd, const char *path, int flags, mode_t mode)
{
    if (!active) {
        return (int)real.syscall(SYS_openat, dirfd, path, flags, mode);
    }
    if (strcmp(path, LW_BOOT_ID_PATH) == 0) { /* the boot a rollback simulated, if any */
        char boot[PATH_MAX + 16];
        snprintf(boot, sizeof boot, "%s/%s", journal_dir, LW_BOOT_ID_FILE);
        int fd = (int)real.syscall(SYS_openat, AT_FDCWD, boot, O_RDONLY | O_CLOEXEC, 0);
        if (fd >= 0) {
            return fd;
        }
    }
    /* The lock spans the open only when it cuts the file: journal, then cut, with no write in
     * between. Tracking needs no lock: no other thread uses fd before open returns it. */
    bool cuts = (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY;
    if (cuts) {
        pthread_mutex_lock(&lock);
        lw_truncate_path(dirfd, path, 0);
    }
    int fd = (int)real.syscall(SYS_openat, dirfd, path, flags, mode);
    int saved = errno;
    if (cuts) {
        pthread_mutex_unlock(&lock);
    }
    lw_track(fd, flags);
    errno = saved;
    return fd;
}

static mode_t lw_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

/* The mode argument an open variant was given, when its flags say there is one. */
#define LW_VA_MODE(flags, mode)                                                                    \
    do {                                                                                           \
        va_list lw_ap_;                                                                            \
        va_start(lw_ap_, flags);                                                                   \
        mode = lw_mode(flags, lw_ap_);                                                             \
        va_end(lw_ap_);                                                                            \
    } while (0)

LW_EXPORT int open(const char *path, int flags, ...)
{
    mode_t mode;
    LW_VA_MODE(flags, mode);
    return lw_open(AT_FDCWD, path, flags, mode);
}

LW_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode;
    LW_VA_MODE(flags, mode);
    return lw_open(dirfd, path, flags, mode);
}

int open64(const char *path, int flags, ...) LW_ALIAS(open);
int openat64(int dirfd, const char *path, int flags, ...) LW_ALIAS(openat);

/* The _FORTIFY_SOURCE entry points (their callers pass no mode). */
LW_EXPORT int __open_2(const char *path, int flags)
{
    return lw_open(AT_FDCWD, path, flags, 0);
}

LW_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    return lw_open(dirfd, path, flags, 0);
}

int __open64_2(const char *path, int flags) LW_ALIAS(__open_2);
int __openat64_2(int dirfd, const char *path, int flags) LW_ALIAS(__openat_2);

LW_EXPORT int creat(const char *path, mode_t mode)
{
    return lw_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode) LW_ALIAS(creat);

LW_EXPORT int fsync(int fd)
{
    return lw_sync_fd(fd, real.fsync);
}

LW_EXPORT int fdatasync(int fd)
{
    return lw_sync_fd(fd, real.fdatasync);
}

LW_EXPORT void sync(void)
{
    static struct lw_mark marks[LW_INODES_MAX]; /* sync() has no way to report an error */
    static pthread_mutex_t marks_lock = PTHREAD_MUTEX_INITIALIZER;
    if (!active) {
        real.sync();
        return;
    }
    pthread_mutex_lock(&marks_lock);
    size_t count = lw_mark_all(marks, false, 0);
    real.sync();
    lw_synced_marks(marks, count);
    pthread_mutex_unlock(&marks_lock);
}

LW_EXPORT int syncfs(int fd)
{
    struct lw_mark marks[LW_INODES_MAX];
    struct statx st;
    if (!active || statx(fd, "", AT_EMPTY_PATH, 0, &st) != 0) {
        return real.syncfs(fd);
    }
    size_t count = lw_mark_all(marks, true, ((uint64_t)st.stx_dev_major << 32) | st.stx_dev_minor);
    int rv = real.syncfs(fd);
    if (rv == 0) {
        int saved = errno;
        lw_synced_marks(marks, count);
        errno = saved;
    }
    return rv;
}

LW_EXPORT int close(int fd)
{
    lw_untrack(fd);
    return real.close(fd);
}

static long lw_sync_syscall(long fd, long number)
{
    return lw_sync_fd((int)fd, number == SYS_fsync ? real.fsync : real.fdatasync);
}

/* io_submit: writes without RWF_DSYNC/RWF_SYNC on tracked descriptors are journaled first. */
static void lw_before_io_submit(long count, struct iocb **iocbs)
{
    for (long i = 0; i < count; i++) {
        struct iocb *cb = iocbs[i];
        int fd = (int)cb->aio_fildes;
        if (!lw_is_tracked(fd) ||
            (cb->aio_lio_opcode != IOCB_CMD_PWRITE && cb->aio_lio_opcode != IOCB_CMD_PWRITEV)) {
            continue;
        }
        size_t len =
            cb->aio_lio_opcode == IOCB_CMD_PWRITE
                ? (size_t)cb->aio_nbytes
                : lw_iov_len((const struct iovec *)(uintptr_t)cb->aio_buf, (int)cb->aio_nbytes);
        pthread_mutex_lock(&lock);
        lw_before_write(fd, (off_t)cb->aio_offset, len, (int)cb->aio_rw_flags);
        pthread_mutex_unlock(&lock);
    }
}

/* libuv 1.44 closes and writes vectors through syscall(); libraft submits its writes so. */
LW_EXPORT long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) {
        a[i] = va_arg(ap, long);
    }
    va_end(ap);
    int fd = (int)a[0];
    switch (number) {
        case SYS_close:
            return close(fd);
        case SYS_write:
            return write(fd, (const void *)a[1], (size_t)a[2]);
        case SYS_pwrite64:
            return pwrite(fd, (const void *)a[1], (size_t)a[2], (off_t)a[3]);
        case SYS_writev:
            return writev(fd, (const struct iovec *)a[1], (int)a[2]);
        case SYS_pwritev: /* the kernel's split offset: low and high halves, one on x86-64 */
            return pwritev(fd, (const struct iovec *)a[1], (int)a[2], (off_t)a[3]);
        case SYS_pwritev2:
            return pwritev2(fd, (const struct iovec *)a[1], (int)a[2], (off_t)a[3], (int)a[5]);
        case SYS_ftruncate:
            return ftruncate(fd, (off_t)a[1]);
        case SYS_fsync:
        case SYS_fdatasync:
            return lw_sync_syscall(a[0], number);
        case SYS_io_submit:
            if (active) {
                lw_before_io_submit(a[1], (struct iocb **)a[2]);
            }
            break;
        default:
            break;
    }
    return real.syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
