/* The data directory's exclusive lock: flock on DIR/lock, with the holder's pid inside. */
#include "storage/dir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "storage/assert.h"
#include "storage/error.h"

#define PID_TEXT_MAX 24

/* The pid the holder wrote, or 0 when the file holds none. */
static long holder_pid(int fd)
{
    char text[PID_TEXT_MAX];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) {
        return 0;
    }
    text[n] = '\0';
    return strtol(text, NULL, 10);
}

static int record_pid(int fd, const char *path, char *errmsg)
{
    char text[PID_TEXT_MAX];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    tandem_assert(len > 0 && (size_t)len < sizeof text);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != (ssize_t)len) {
        return tandem_error_from_errno(errno, errmsg, path);
    }
    return 0;
}

int tandem_dir_lock(const char *dir, int *fd, char *errmsg)
{
    char path[PATH_MAX];
    tandem_assert(dir != NULL && fd != NULL);
    *fd = -1;
    if (snprintf(path, sizeof path, "%s/%s", dir, TANDEM_DIR_LOCK_FILE) >= (int)sizeof path) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "data directory path too long: %s", dir);
    }
    int lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        return tandem_error_from_errno(errno, errmsg, path);
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        int rv = err == EWOULDBLOCK
                     ? tandem_error_set(errmsg, TANDEM_STATE,
                                        "data directory %s is in use by another process (pid %ld "
                                        "holds %s); one tandemd per data directory",
                                        dir, holder_pid(lock_fd), path)
                     : tandem_error_from_errno(err, errmsg, path);
        close(lock_fd);
        return rv;
    }
    int rv = record_pid(lock_fd, path, errmsg);
    if (rv != 0) {
        close(lock_fd); /* releases the lock */
        return rv;
    }
    *fd = lock_fd;
    return 0;
}

void tandem_dir_unlock(int fd)
{
    if (fd >= 0) {
        close(fd); /* the lock goes with the last descriptor of its open file */
    }
}
