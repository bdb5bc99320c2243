/* Writing a backup file (storage/backup.h): the LMDB copy, its facts, the sealed or plain state,
 * the manifest, the per-part and whole-file SHA-256; and the hash, cipher and I/O helpers the
 * checker shares (storage/backup_file.h). */
#include "storage/backup.h"
#include "storage/backup_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/assert.h"
#include "storage/error.h"
#include "storage/sha256.h"

/* The manifest is padded with blanks to this size, so the header and manifest can be written
 * after the state whose SHA-256 the manifest carries (JSON allows trailing blanks). */
#define MANIFEST_RESERVED 4096u

/* The LMDB copy, compacted, from LMDB's own read transaction: the writer goes on meanwhile. */
static int copy_state(struct tandem_store *s, const char *copy, char *errmsg)
{
    int fd = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tandem_error_from_errno(errno, errmsg, "create the state copy");
    }
    int rv = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
    rv = rv != 0 ? tandem_error_from_mdb(rv, errmsg, "mdb_env_copyfd2") : 0;
    if (close(fd) != 0 && rv == 0) {
        rv = tandem_error_from_errno(errno, errmsg, "close the state copy");
    }
    return rv;
}

/* Streams the copy into out at the current offset, sealed when key, hashing what is stored. */
static int state_stream(int in, int out, const struct tandem_backup_key *key,
                        const uint8_t aad[BACKUP_AAD_BYTES], const uint8_t *nonce, uint64_t len,
                        uint8_t sha[TANDEM_DIGEST_LEN], uint8_t tag[TANDEM_BACKUP_TAG_BYTES],
                        char *errmsg)
{
    EVP_MD_CTX *hash = NULL;
    EVP_CIPHER_CTX *gcm = NULL;
    uint8_t *buf = malloc(2 * (size_t)TANDEM_BACKUP_IO_CHUNK);
    int rv = buf == NULL ? tandem_error_set(errmsg, TANDEM_NOMEM, "backup: out of memory") : 0;
    rv = rv != 0 ? rv : tandem_sha256_begin(&hash, errmsg);
    if (rv == 0 && key != NULL) {
        rv = tandem_backup_gcm_init(&gcm, key, nonce, aad, 1, errmsg);
    }
    for (uint64_t done = 0; rv == 0 && done < len;) {
        size_t n = len - done < TANDEM_BACKUP_IO_CHUNK ? (size_t)(len - done)
                                                       : (size_t)TANDEM_BACKUP_IO_CHUNK;
        uint8_t *stored = key != NULL ? buf + TANDEM_BACKUP_IO_CHUNK : buf;
        rv = tandem_backup_read_full(in, buf, n, "read the state copy", errmsg);
        if (rv == 0 && key != NULL) {
            rv = tandem_backup_gcm_update(gcm, buf, n, stored, errmsg);
        }
        rv = rv != 0 ? rv : tandem_sha256_update(hash, stored, n, errmsg);
        rv = rv != 0 ? rv : tandem_backup_write_full(out, stored, n, "write the backup", errmsg);
        done += n;
    }
    memset(tag, 0, TANDEM_BACKUP_TAG_BYTES);
    if (rv == 0 && key != NULL) {
        rv = tandem_backup_gcm_final(&gcm, tag, 1, errmsg);
    }
    if (rv == 0) {
        rv = tandem_sha256_end(&hash, sha, errmsg);
    }
    EVP_MD_CTX_free(hash);
    EVP_CIPHER_CTX_free(gcm);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, 2 * (size_t)TANDEM_BACKUP_IO_CHUNK); /* clear state bytes */
    }
    free(buf);
    return rv;
}

/* The header and the blank-padded manifest, written at the start of out. */
static int head_write(int out, struct tandem_backup_header *h,
                      const struct tandem_backup_manifest *m, char *errmsg)
{
    uint8_t header[TANDEM_BACKUP_HEADER_BYTES];
    char *manifest = malloc(MANIFEST_RESERVED);
    json_t *json = tandem_backup_manifest_json(m);
    char *text = json == NULL ? NULL : json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(json);
    int rv = manifest == NULL || text == NULL
                 ? tandem_error_set(errmsg, TANDEM_NOMEM, "manifest: out of memory")
                 : 0;
    if (rv == 0 && strlen(text) > MANIFEST_RESERVED) {
        rv = tandem_error_set(errmsg, TANDEM_LIMIT, "manifest over %u bytes", MANIFEST_RESERVED);
    }
    if (rv == 0) {
        memset(manifest, ' ', MANIFEST_RESERVED);
        memcpy(manifest, text, strlen(text));
        h->manifest_len = MANIFEST_RESERVED;
        rv = tandem_sha256(manifest, MANIFEST_RESERVED, h->manifest_sha256, errmsg);
    }
    if (rv == 0) {
        tandem_backup_header_encode(h, header);
        rv = tandem_sha256(header, BACKUP_HEADER_SHA_AT, h->header_sha256, errmsg);
    }
    if (rv == 0) {
        tandem_backup_header_encode(h, header);
        if (lseek(out, 0, SEEK_SET) != 0) {
            rv = tandem_error_from_errno(errno, errmsg, "seek the backup");
        }
    }
    rv = rv != 0 ? rv : tandem_backup_write_full(out, header, sizeof header, "write", errmsg);
    rv = rv != 0 ? rv : tandem_backup_write_full(out, manifest, MANIFEST_RESERVED, "write", errmsg);
    free(manifest);
    free(text);
    return rv;
}

/* Appends the SHA-256 of everything in out before it. */
static int trailer_write(int out, uint64_t len, char *errmsg)
{
    EVP_MD_CTX *hash = NULL;
    uint8_t sha[TANDEM_DIGEST_LEN];
    uint8_t *buf = malloc(TANDEM_BACKUP_IO_CHUNK);
    int rv = buf == NULL ? tandem_error_set(errmsg, TANDEM_NOMEM, "backup: out of memory") : 0;
    if (rv == 0 && lseek(out, 0, SEEK_SET) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "seek the backup");
    }
    rv = rv != 0 ? rv : tandem_sha256_begin(&hash, errmsg);
    for (uint64_t done = 0; rv == 0 && done < len;) {
        size_t n = len - done < TANDEM_BACKUP_IO_CHUNK ? (size_t)(len - done)
                                                       : (size_t)TANDEM_BACKUP_IO_CHUNK;
        rv = tandem_backup_read_full(out, buf, n, "read the backup back", errmsg);
        rv = rv != 0 ? rv : tandem_sha256_update(hash, buf, n, errmsg);
        done += n;
        if (rv != 0) {
            EVP_MD_CTX_free(hash);
        }
    }
    rv = rv != 0 ? rv : tandem_sha256_end(&hash, sha, errmsg);
    rv = rv != 0 ? rv : tandem_backup_write_full(out, sha, sizeof sha, "write", errmsg);
    free(buf);
    return rv;
}

/* Builds the file at tmp from the copy: state (sealed when key), tag, header, manifest, trailer. */
static int assemble(const char *copy, const char *tmp, const struct tandem_backup_key *key,
                    struct tandem_backup_manifest *m, char *errmsg)
{
    struct tandem_backup_header h = {.encrypted = key != NULL, .key_id = key ? key->id : 0};
    uint8_t aad[TANDEM_BACKUP_HEADER_BYTES], tag[TANDEM_BACKUP_TAG_BYTES];
    struct stat st;
    int in = open(copy, O_RDONLY | O_CLOEXEC), out = -1, rv = 0;
    if (in < 0 || fstat(in, &st) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "open the state copy");
        goto done;
    }
    if ((out = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        rv = tandem_error_from_errno(errno, errmsg, "create the backup");
        goto done;
    }
    if (key != NULL && RAND_bytes(h.nonce, sizeof h.nonce) != 1) {
        rv = tandem_error_from_ssl(errmsg, "RAND_bytes");
        goto done;
    }
    h.manifest_len = MANIFEST_RESERVED;
    h.state_len = (uint64_t)st.st_size;
    tandem_backup_header_encode(&h, aad); /* the first BACKUP_AAD_BYTES are final already */
    if (lseek(out, (off_t)(TANDEM_BACKUP_HEADER_BYTES + MANIFEST_RESERVED), SEEK_SET) < 0) {
        rv = tandem_error_from_errno(errno, errmsg, "seek the backup");
        goto done;
    }
    rv = state_stream(in, out, key, aad, h.nonce, h.state_len, m->state_sha256, tag, errmsg);
    rv = rv != 0 ? rv : tandem_backup_write_full(out, tag, sizeof tag, "write", errmsg);
    m->state_bytes = h.state_len;
    m->encrypted = h.encrypted;
    m->key_id = h.key_id;
    rv = rv != 0 ? rv : head_write(out, &h, m, errmsg);
    rv = rv != 0 ? rv
                 : trailer_write(out,
                                 TANDEM_BACKUP_HEADER_BYTES + MANIFEST_RESERVED + h.state_len +
                                     TANDEM_BACKUP_TAG_BYTES,
                                 errmsg);
    if (rv == 0 && fsync(out) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "fsync the backup");
    }
done:
    if (in >= 0) {
        close(in);
    }
    if (out >= 0 && close(out) != 0 && rv == 0) {
        rv = tandem_error_from_errno(errno, errmsg, "close the backup");
    }
    return rv;
}

int tandem_backup_write(struct tandem_store *s, const char *path,
                        const struct tandem_backup_source *source,
                        const struct tandem_backup_key *key, struct tandem_backup_manifest *out,
                        char *errmsg)
{
    char copy[PATH_MAX + 16], tmp[PATH_MAX + 16];
    if (strlen(path) >= PATH_MAX) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "backup path too long");
    }
    snprintf(copy, sizeof copy, "%s.copy", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    (void)unlink(copy); /* left by a crash: never a finished backup */
    (void)unlink(tmp);
    memset(out, 0, sizeof *out);
    int rv = copy_state(s, copy, errmsg);
    /* The manifest describes the copy itself: index, digests and counts all read from it. */
    rv = rv != 0 ? rv : tandem_backup_state_facts(copy, out, errmsg);
    if (rv == 0) {
        out->format = TANDEM_BACKUP_FORMAT;
        snprintf(out->cluster_id, sizeof out->cluster_id, "%s", source->cluster_id);
        snprintf(out->node, sizeof out->node, "%s", source->node);
        snprintf(out->site, sizeof out->site, "%s", source->site);
        snprintf(out->tandem_version, sizeof out->tandem_version, "%s", source->tandem_version);
        out->epoch = source->epoch;
        out->term = source->term;
        out->created_ms = source->created_ms;
        rv = assemble(copy, tmp, key, out, errmsg);
    }
    (void)unlink(copy);
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "rename the backup into place");
    }
    if (rv != 0) {
        (void)unlink(tmp);
        return rv;
    }
    tandem_store_fsync_parent(path);
    return 0;
}
