/* Snapshot file references, names and retention (replication/snapshot_file.h). */
#include "replication/snapshot_file.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/assert.h"

/* Layout, little-endian: magic[8], format u32, reserved u32, index u64, len u64, checksum[32]. */
#define REF_INDEX_AT    16
#define REF_LEN_AT      24
#define REF_CHECKSUM_AT 32
_Static_assert(REF_CHECKSUM_AT + TANDEM_DIGEST_LEN == TANDEM_SNAPSHOT_REF_LEN, "ref layout");

void tandem_snapshot_ref_encode(const struct tandem_snapshot_ref *ref,
                                uint8_t out[TANDEM_SNAPSHOT_REF_LEN])
{
    uint32_t format = htole32(TANDEM_SNAPSHOT_REF_FORMAT);
    uint64_t index = htole64(ref->index), len = htole64(ref->len);
    memset(out, 0, TANDEM_SNAPSHOT_REF_LEN);
    memcpy(out, TANDEM_SNAPSHOT_REF_MAGIC, 8);
    memcpy(out + 8, &format, sizeof format);
    memcpy(out + REF_INDEX_AT, &index, sizeof index);
    memcpy(out + REF_LEN_AT, &len, sizeof len);
    memcpy(out + REF_CHECKSUM_AT, ref->checksum, TANDEM_DIGEST_LEN);
}

int tandem_snapshot_ref_decode(const void *buf, size_t len, struct tandem_snapshot_ref *out,
                               char *errmsg)
{
    const uint8_t *b = buf;
    uint32_t format, reserved;
    uint64_t index, file_len;
    if (len < 8 || memcmp(b, TANDEM_SNAPSHOT_REF_MAGIC, 8) != 0) {
        return 0;
    }
    if (len != TANDEM_SNAPSHOT_REF_LEN) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "snapshot reference of %zu bytes", len);
    }
    memcpy(&format, b + 8, sizeof format);
    memcpy(&reserved, b + 12, sizeof reserved);
    memcpy(&index, b + REF_INDEX_AT, sizeof index);
    memcpy(&file_len, b + REF_LEN_AT, sizeof file_len);
    if (le32toh(format) != TANDEM_SNAPSHOT_REF_FORMAT || reserved != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "unsupported snapshot reference format %u",
                                le32toh(format));
    }
    out->index = le64toh(index);
    out->len = le64toh(file_len);
    if (out->len == 0 || out->len > (uint64_t)SIZE_MAX) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "snapshot reference to a file of %" PRIu64 " bytes", out->len);
    }
    memcpy(out->checksum, b + REF_CHECKSUM_AT, TANDEM_DIGEST_LEN);
    return 1;
}

void tandem_snapshot_file_name(const struct tandem_snapshot_ref *ref,
                               char out[TANDEM_SNAPSHOT_FILE_NAME_SIZE])
{
    char hex[2 * TANDEM_DIGEST_LEN + 1];
    tandem_digest_hex(ref->checksum, hex);
    int n = snprintf(out, TANDEM_SNAPSHOT_FILE_NAME_SIZE, "%s%020" PRIu64 "-%.16s%s",
                     TANDEM_SNAPSHOT_FILE_PREFIX, ref->index, hex, TANDEM_SNAPSHOT_FILE_SUFFIX);
    tandem_assert(n > 0 && n < TANDEM_SNAPSHOT_FILE_NAME_SIZE);
}

static bool all_of(const char *s, size_t n, const char *alphabet)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' || strchr(alphabet, s[i]) == NULL) {
            return false;
        }
    }
    return true;
}

bool tandem_snapshot_file_name_ok(const char *name)
{
    const size_t prefix = sizeof TANDEM_SNAPSHOT_FILE_PREFIX - 1;
    const size_t suffix = sizeof TANDEM_SNAPSHOT_FILE_SUFFIX - 1;
    if (strlen(name) != prefix + 20 + 1 + 16 + suffix) {
        return false;
    }
    return strncmp(name, TANDEM_SNAPSHOT_FILE_PREFIX, prefix) == 0 &&
           all_of(name + prefix, 20, "0123456789") && name[prefix + 20] == '-' &&
           all_of(name + prefix + 21, 16, "0123456789abcdef") &&
           strcmp(name + prefix + 37, TANDEM_SNAPSHOT_FILE_SUFFIX) == 0;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

unsigned tandem_snapshot_files_prune(const char *dir, unsigned keep, bool leftovers)
{
    DIR *d = opendir(dir);
    char **names = NULL, path[PATH_MAX];
    size_t n = 0, cap = 0;
    unsigned removed = 0;
    if (d == NULL) {
        return 0;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (ends_with(e->d_name, ".tmp") || ends_with(e->d_name, ".part")) {
            if (!leftovers) {
                continue;
            }
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            removed += unlink(path) == 0 ? 1 : 0;
            continue;
        }
        if (!tandem_snapshot_file_name_ok(e->d_name)) {
            continue;
        }
        if (n == cap) {
            size_t more = cap == 0 ? 8 : 2 * cap;
            char **grown = realloc(names, more * sizeof *names);
            if (grown == NULL) {
                break;
            }
            names = grown;
            cap = more;
        }
        if ((names[n] = strdup(e->d_name)) != NULL) {
            n++;
        }
    }
    closedir(d);
    /* Zero-padded indexes: the names sort by index. */
    if (n > 0) {
        qsort(names, n, sizeof *names, name_cmp);
    }
    for (size_t i = 0; i < n; i++) {
        if (i + keep < n) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            removed += unlink(path) == 0 ? 1 : 0;
        }
        free(names[i]);
    }
    free(names);
    return removed;
}

int tandem_snapshot_file_write(struct tandem_store *s, MDB_txn *txn, const char *dir,
                               struct tandem_snapshot_ref *out)
{
    char tmp[PATH_MAX], path[PATH_MAX], name[TANDEM_SNAPSHOT_FILE_NAME_SIZE];
    snprintf(tmp, sizeof tmp, "%.*s/state-new.tmp", PATH_MAX - 20, dir);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tandem_error_from_errno(errno, s->errmsg, "snapshot file");
    }
    int rv = tandem_store_snapshot_write_fd(s, txn, fd, &out->len, &out->index, out->checksum);
    if (close(fd) != 0 && rv == 0) {
        rv = tandem_error_from_errno(errno, s->errmsg, "snapshot file close");
    }
    if (rv == 0) {
        tandem_snapshot_file_name(out, name);
        snprintf(path, sizeof path, "%.*s/%s", PATH_MAX - TANDEM_SNAPSHOT_FILE_NAME_SIZE - 2, dir,
                 name);
        if (rename(tmp, path) != 0) {
            rv = tandem_error_from_errno(errno, s->errmsg, "snapshot file rename");
        }
    }
    if (rv != 0) {
        (void)unlink(tmp);
        return rv;
    }
    tandem_store_fsync_parent(path); /* raft stores the reference only after this */
    (void)tandem_snapshot_files_prune(dir, TANDEM_SNAPSHOT_FILES_KEPT, false);
    return 0;
}
