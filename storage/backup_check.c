/* Checking a backup file (storage/backup.h): level 1 (header, manifest, per-part and whole-file
 * SHA-256), level 2 (the state unpacked, opened and its facts recomputed), and the unpacking a
 * restore uses. Every finding names the first damaged part. */
#include "storage/backup.h"
#include "storage/backup_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/assert.h"
#include "storage/error.h"

/* An open backup file with its header and manifest read and checked. */
struct reader {
    int fd;
    uint64_t size;
    uint8_t raw[TANDEM_BACKUP_HEADER_BYTES]; /* the header as stored (the GCM's AAD) */
    struct tandem_backup_header h;
    struct tandem_backup_manifest m;
    EVP_MD_CTX *file_hash; /* owned: the trailer's SHA-256 so far, NULL when not wanted */
};

static int damage(enum tandem_backup_part *damaged, enum tandem_backup_part part, int rv)
{
    if (damaged != NULL && rv == TANDEM_CORRUPT) {
        *damaged = part;
    }
    return rv;
}

/* The part a file of this size ends in when it is shorter (or longer) than its header says. */
static int size_check(const struct reader *r, enum tandem_backup_part *damaged, char *errmsg)
{
    uint64_t manifest_end = TANDEM_BACKUP_HEADER_BYTES + r->h.manifest_len;
    uint64_t state_end = manifest_end + r->h.state_len;
    uint64_t expected = state_end + TANDEM_BACKUP_TAG_BYTES + TANDEM_DIGEST_LEN;
    if (r->size == expected) {
        return 0;
    }
    enum tandem_backup_part part = r->size < manifest_end ? TANDEM_BACKUP_PART_MANIFEST
                                   : r->size < state_end  ? TANDEM_BACKUP_PART_STATE
                                                          : TANDEM_BACKUP_PART_TRAILER;
    return damage(damaged, part,
                  tandem_error_set(errmsg, TANDEM_CORRUPT,
                                   "%s: the file has %llu bytes, its header says %llu",
                                   tandem_backup_part_name(part), (unsigned long long)r->size,
                                   (unsigned long long)expected));
}

static int header_read(struct reader *r, enum tandem_backup_part *damaged, char *errmsg)
{
    uint8_t sha[TANDEM_DIGEST_LEN];
    int rv = tandem_backup_read_full(r->fd, r->raw, sizeof r->raw, "header", errmsg);
    rv = rv != 0 ? rv : tandem_backup_header_decode(r->raw, &r->h, errmsg);
    rv = rv != 0 ? rv : tandem_sha256(r->raw, BACKUP_HEADER_SHA_AT, sha, errmsg);
    if (rv == 0 && memcmp(sha, r->h.header_sha256, sizeof sha) != 0) {
        rv = tandem_error_set(errmsg, TANDEM_CORRUPT, "header: its SHA-256 does not match");
    }
    if (rv != 0) {
        return damage(damaged, TANDEM_BACKUP_PART_HEADER, rv);
    }
    return size_check(r, damaged, errmsg);
}

static int manifest_check(struct reader *r, const char *text, char *errmsg)
{
    uint8_t sha[TANDEM_DIGEST_LEN];
    int rv = tandem_sha256(text, r->h.manifest_len, sha, errmsg);
    if (rv == 0 && memcmp(sha, r->h.manifest_sha256, sizeof sha) != 0) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT, "manifest: its SHA-256 does not match");
    }
    rv = rv != 0 ? rv : tandem_backup_manifest_parse(text, r->h.manifest_len, &r->m, errmsg);
    if (rv == 0 && (r->m.state_bytes != r->h.state_len || r->m.encrypted != r->h.encrypted ||
                    r->m.key_id != r->h.key_id)) {
        rv = tandem_error_set(errmsg, TANDEM_CORRUPT,
                              "manifest: state length or sealing differs from the header's");
    }
    return rv;
}

/* Opens path and reads its header and manifest; with hash, starts the whole-file SHA-256. */
static int reader_open(struct reader *r, const char *path, bool hash,
                       enum tandem_backup_part *damaged, char *errmsg)
{
    struct stat st;
    memset(r, 0, sizeof *r);
    if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(r->fd, &st) != 0) {
        return tandem_error_from_errno(errno, errmsg, path);
    }
    r->size = (uint64_t)st.st_size;
    int rv = header_read(r, damaged, errmsg);
    char *text = rv == 0 ? malloc(r->h.manifest_len) : NULL;
    if (rv == 0 && text == NULL) {
        rv = tandem_error_set(errmsg, TANDEM_NOMEM, "manifest: out of memory");
    }
    if (rv == 0 &&
        (rv = tandem_backup_read_full(r->fd, text, r->h.manifest_len, "manifest", errmsg)) == 0) {
        rv = damage(damaged, TANDEM_BACKUP_PART_MANIFEST, manifest_check(r, text, errmsg));
    }
    if (rv == 0 && hash && (rv = tandem_sha256_begin(&r->file_hash, errmsg)) == 0) {
        rv = tandem_sha256_update(r->file_hash, r->raw, sizeof r->raw, errmsg);
        rv = rv != 0 ? rv : tandem_sha256_update(r->file_hash, text, r->h.manifest_len, errmsg);
    }
    free(text);
    return rv;
}

static void reader_close(struct reader *r)
{
    EVP_MD_CTX_free(r->file_hash);
    r->file_hash = NULL;
    if (r->fd >= 0) {
        close(r->fd);
    }
    r->fd = -1;
}

/* Level 1 past the manifest: the state's SHA-256, then the tag and the trailer. */
static int hashes_check(struct reader *r, enum tandem_backup_part *damaged, char *errmsg)
{
    EVP_MD_CTX *state = NULL;
    uint8_t sha[TANDEM_DIGEST_LEN], tail[TANDEM_BACKUP_TAG_BYTES + TANDEM_DIGEST_LEN];
    uint8_t *buf = malloc(TANDEM_BACKUP_IO_CHUNK);
    int rv = buf == NULL ? tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory") : 0;
    rv = rv != 0 ? rv : tandem_sha256_begin(&state, errmsg);
    for (uint64_t done = 0; rv == 0 && done < r->h.state_len;) {
        uint64_t left = r->h.state_len - done;
        size_t n = left < TANDEM_BACKUP_IO_CHUNK ? (size_t)left : (size_t)TANDEM_BACKUP_IO_CHUNK;
        rv = tandem_backup_read_full(r->fd, buf, n, "state", errmsg);
        rv = rv != 0 ? rv : tandem_sha256_update(state, buf, n, errmsg);
        rv = rv != 0 ? rv : tandem_sha256_update(r->file_hash, buf, n, errmsg);
        done += n;
        if (rv != 0) {
            EVP_MD_CTX_free(state);
        }
    }
    free(buf);
    rv = rv != 0 ? rv : tandem_sha256_end(&state, sha, errmsg);
    if (rv == 0 && memcmp(sha, r->m.state_sha256, sizeof sha) != 0) {
        return damage(damaged, TANDEM_BACKUP_PART_STATE,
                      tandem_error_set(errmsg, TANDEM_CORRUPT,
                                       "state: its SHA-256 differs from the manifest's"));
    }
    rv = rv != 0 ? rv : tandem_backup_read_full(r->fd, tail, sizeof tail, "trailer", errmsg);
    rv = rv != 0 ? rv : tandem_sha256_update(r->file_hash, tail, TANDEM_BACKUP_TAG_BYTES, errmsg);
    rv = rv != 0 ? rv : tandem_sha256_end(&r->file_hash, sha, errmsg);
    if (rv == 0 && memcmp(sha, tail + TANDEM_BACKUP_TAG_BYTES, sizeof sha) != 0) {
        rv = tandem_error_set(errmsg, TANDEM_CORRUPT,
                              "trailer: the file's SHA-256 does not match (tag or checksum)");
    }
    return damage(damaged, TANDEM_BACKUP_PART_TRAILER, rv);
}

int tandem_backup_manifest_read(const char *path, struct tandem_backup_manifest *out,
                                enum tandem_backup_part *damaged, char *errmsg)
{
    struct reader r;
    if (damaged != NULL) {
        *damaged = TANDEM_BACKUP_PART_NONE;
    }
    int rv = reader_open(&r, path, false, damaged, errmsg);
    if (rv == 0) {
        *out = r.m;
    }
    reader_close(&r);
    return rv;
}

static const struct tandem_backup_key *key_find(const struct tandem_backup_key *keys, unsigned n,
                                                uint32_t id)
{
    for (unsigned i = 0; i < n; i++) {
        if (keys[i].id == id) {
            return &keys[i];
        }
    }
    return NULL;
}

/* Copies (opening the seal) the state part of r into fd; r is positioned at the state. */
static int state_unseal(struct reader *r, const struct tandem_backup_key *key, int fd, char *errmsg)
{
    EVP_CIPHER_CTX *gcm = NULL;
    uint8_t tag[TANDEM_BACKUP_TAG_BYTES];
    uint8_t *buf = malloc(2 * (size_t)TANDEM_BACKUP_IO_CHUNK);
    int rv = buf == NULL ? tandem_error_set(errmsg, TANDEM_NOMEM, "out of memory") : 0;
    if (rv == 0 && key != NULL) {
        rv = tandem_backup_gcm_init(&gcm, key, r->h.nonce, r->raw, 0, errmsg);
    }
    for (uint64_t done = 0; rv == 0 && done < r->h.state_len;) {
        uint64_t left = r->h.state_len - done;
        size_t n = left < TANDEM_BACKUP_IO_CHUNK ? (size_t)left : (size_t)TANDEM_BACKUP_IO_CHUNK;
        uint8_t *clear = key != NULL ? buf + TANDEM_BACKUP_IO_CHUNK : buf;
        rv = tandem_backup_read_full(r->fd, buf, n, "state", errmsg);
        if (rv == 0 && key != NULL) {
            rv = tandem_backup_gcm_update(gcm, buf, n, clear, errmsg);
        }
        rv = rv != 0 ? rv : tandem_backup_write_full(fd, clear, n, "unpack the state", errmsg);
        done += n;
    }
    if (rv == 0 && key != NULL) {
        rv = tandem_backup_read_full(r->fd, tag, sizeof tag, "tag", errmsg);
        rv = rv != 0 ? rv : tandem_backup_gcm_final(&gcm, tag, 0, errmsg);
    }
    EVP_CIPHER_CTX_free(gcm);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, 2 * (size_t)TANDEM_BACKUP_IO_CHUNK);
    }
    free(buf);
    if (rv == 0 && fsync(fd) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "fsync the unpacked state");
    }
    return rv;
}

/* What the unpacked state says against what the manifest says. */
static int facts_compare(const struct tandem_backup_manifest *m, const char *file, char *errmsg)
{
    struct tandem_backup_manifest f;
    memset(&f, 0, sizeof f);
    int rv = tandem_backup_state_facts(file, &f, errmsg);
    if (rv != 0) {
        tandem_error_wrap(errmsg, "state");
        return rv;
    }
    const char *what =
        f.applied_index != m->applied_index                               ? "applied_index"
        : memcmp(f.apply_digest, m->apply_digest, TANDEM_DIGEST_LEN) != 0 ? "apply_digest"
        : memcmp(f.state_digest, m->state_digest, TANDEM_DIGEST_LEN) != 0 ? "state_digest"
        : memcmp(f.data_digest, m->data_digest, TANDEM_DIGEST_LEN) != 0   ? "data_digest"
        : memcmp(&f.counts, &m->counts, sizeof f.counts) != 0             ? "counts"
                                                                          : NULL;
    if (what != NULL) {
        return tandem_error_set(errmsg, TANDEM_CORRUPT,
                                "state: its %s differs from the manifest's (state at index %llu)",
                                what, (unsigned long long)f.applied_index);
    }
    return 0;
}

/* Unpacks path's state into the LMDB data file `file` (created) and checks its facts. */
static int unpack_file(const char *path, const struct tandem_backup_key *keys, unsigned n_keys,
                       const char *file, struct tandem_backup_manifest *out,
                       enum tandem_backup_part *damaged, char *errmsg)
{
    struct reader r;
    int rv = reader_open(&r, path, false, damaged, errmsg);
    const struct tandem_backup_key *key = NULL;
    if (rv == 0 && r.h.encrypted && (key = key_find(keys, n_keys, r.h.key_id)) == NULL) {
        rv = tandem_error_set(errmsg, TANDEM_NOTFOUND,
                              "the state is sealed with backup key %u, which is not in the key "
                              "file given",
                              r.h.key_id);
    }
    int fd = rv == 0 ? open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    if (rv == 0 && fd < 0) {
        rv = tandem_error_from_errno(errno, errmsg, file);
    }
    rv = rv != 0 ? rv : state_unseal(&r, key, fd, errmsg);
    if (fd >= 0 && close(fd) != 0 && rv == 0) {
        rv = tandem_error_from_errno(errno, errmsg, "close the unpacked state");
    }
    rv =
        rv != 0 ? rv : damage(damaged, TANDEM_BACKUP_PART_STATE, facts_compare(&r.m, file, errmsg));
    if (rv == 0) {
        *out = r.m;
    }
    reader_close(&r);
    return rv;
}

/* Level 1 on path: *out filled when it passes. */
static int level1(const char *path, struct tandem_backup_manifest *out,
                  enum tandem_backup_part *damaged, char *errmsg)
{
    struct reader r;
    int rv = reader_open(&r, path, true, damaged, errmsg);
    rv = rv != 0 ? rv : hashes_check(&r, damaged, errmsg);
    if (rv == 0) {
        *out = r.m;
    }
    reader_close(&r);
    return rv;
}

int tandem_backup_verify(const char *path, int level, const struct tandem_backup_key *keys,
                         unsigned n_keys, const char *scratch_dir,
                         struct tandem_backup_manifest *out, enum tandem_backup_part *damaged,
                         char *errmsg)
{
    char file[PATH_MAX + 64];
    enum tandem_backup_part ignored;
    damaged = damaged != NULL ? damaged : &ignored;
    *damaged = TANDEM_BACKUP_PART_NONE;
    if (level < 1 || level > 2 || (level == 2 && scratch_dir == NULL)) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "level must be 1 or 2 (with a scratch "
                                "directory)");
    }
    int rv = level1(path, out, damaged, errmsg);
    if (rv != 0 || level == 1) {
        return rv;
    }
    snprintf(file, sizeof file, "%s/verify-%ld.mdb", scratch_dir, (long)getpid());
    (void)unlink(file);
    rv = unpack_file(path, keys, n_keys, file, out, damaged, errmsg);
    (void)unlink(file);
    return rv;
}

int tandem_backup_unpack(const char *path, const struct tandem_backup_key *keys, unsigned n_keys,
                         const char *state_dir, struct tandem_backup_manifest *out,
                         enum tandem_backup_part *damaged, char *errmsg)
{
    char file[PATH_MAX + 16];
    enum tandem_backup_part ignored;
    damaged = damaged != NULL ? damaged : &ignored;
    *damaged = TANDEM_BACKUP_PART_NONE;
    int rv = level1(path, out, damaged, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (mkdir(state_dir, 0700) != 0) {
        return tandem_error_from_errno(errno, errmsg, state_dir);
    }
    snprintf(file, sizeof file, "%s/data.mdb", state_dir);
    rv = unpack_file(path, keys, n_keys, file, out, damaged, errmsg);
    if (rv != 0) {
        (void)unlink(file);
        (void)rmdir(state_dir);
    }
    return rv;
}
