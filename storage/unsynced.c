/* The unsynced-commits mark of a live state store (storage/unsynced.h). */
#include "storage/unsynced.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "storage/assert.h"
#include "storage/error.h"

/* The mark's text: a boot id (or TANDEM_UNSYNCED_FAILED) and a newline. */
#define MARK_TEXT_MAX (TANDEM_BOOT_ID_LEN + 2)

/* Reads up to size - 1 bytes of path (opened with open(2): the lost-writes shim of the chaos
 * tests answers a simulated reboot there) and cuts them at the first newline. */
static int read_line(const char *path, char *out, size_t size, char *errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return tandem_error_from_errno(errno, errmsg, path);
    }
    ssize_t n = read(fd, out, size - 1);
    int saved = errno;
    close(fd);
    if (n < 0) {
        return tandem_error_from_errno(saved, errmsg, path);
    }
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

int tandem_boot_id(char *out, char *errmsg)
{
    char text[MARK_TEXT_MAX + 1];
    int rv = read_line(TANDEM_BOOT_ID_PATH, text, sizeof text, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (strlen(text) != TANDEM_BOOT_ID_LEN) {
        return tandem_error_set(errmsg, TANDEM_IO, "%s holds no boot id", TANDEM_BOOT_ID_PATH);
    }
    memcpy(out, text, TANDEM_BOOT_ID_LEN + 1);
    return 0;
}

static void mark_path(const char *dir, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s", dir, TANDEM_UNSYNCED_FILE);
    tandem_assert(n > 0 && (size_t)n < size);
}

int tandem_unsynced_read(const char *dir, bool *present, char *boot, char *errmsg)
{
    char path[PATH_MAX + 16], text[MARK_TEXT_MAX + 1];
    mark_path(dir, path, sizeof path);
    *present = false;
    boot[0] = '\0';
    if (access(path, F_OK) != 0) { /* no directory either: the open makes it, or says why not */
        return errno == ENOENT || errno == ENOTDIR ? 0
                                                   : tandem_error_from_errno(errno, errmsg, path);
    }
    int rv = read_line(path, text, sizeof text, errmsg);
    if (rv != 0) {
        return rv;
    }
    *present = true;
    /* Torn (written but not synced when the power went): trusted by no boot. */
    if (strlen(text) <= TANDEM_BOOT_ID_LEN) {
        memcpy(boot, text, strlen(text) + 1);
    }
    return 0;
}

/* fsync of the directory holding a created or removed name. */
static int sync_dir(const char *dir, char *errmsg)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return tandem_error_from_errno(errno, errmsg, dir);
    }
    int rv = fsync(fd) == 0 ? 0 : tandem_error_from_errno(errno, errmsg, dir);
    close(fd);
    return rv;
}

int tandem_unsynced_mark(const char *dir, const char *boot, char *errmsg)
{
    char path[PATH_MAX + 16], text[MARK_TEXT_MAX + 1];
    tandem_assert(strlen(boot) <= TANDEM_BOOT_ID_LEN);
    mark_path(dir, path, sizeof path);
    int len = snprintf(text, sizeof text, "%s\n", boot);
    tandem_assert(len > 0 && (size_t)len < sizeof text);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tandem_error_from_errno(errno, errmsg, path);
    }
    int rv = 0;
    if (write(fd, text, (size_t)len) != (ssize_t)len || fsync(fd) != 0) {
        rv = tandem_error_from_errno(errno != 0 ? errno : EIO, errmsg, path);
    }
    close(fd);
    return rv != 0 ? rv : sync_dir(dir, errmsg);
}

int tandem_unsynced_clear(const char *dir, char *errmsg)
{
    char path[PATH_MAX + 16];
    mark_path(dir, path, sizeof path);
    if (unlink(path) != 0) {
        return errno == ENOENT ? 0 : tandem_error_from_errno(errno, errmsg, path);
    }
    return sync_dir(dir, errmsg);
}
