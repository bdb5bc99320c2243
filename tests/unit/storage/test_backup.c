/* Unit tests for backup files (storage/backup.h): written from a store, checked at levels 1 and
 * 2, a damaged byte named by part, a structurally damaged state caught at level 2 only, sealed
 * files needing their key, unpacking for a restore. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/backup.h"
#include "storage/backup_file.h"
#include "storage/store.h"

#define MAP_SIZE  ((size_t)64 * 1024 * 1024)
#define RECORDS   2000 /* spread over kv, jobs, boxes and trace */
#define FD_MAX    16
#define APPLIED   4242u
#define LMDB_PAGE 4096u /* the copy's page size on this platform (LMDB uses the OS page) */
#define FILE_MAX  ((size_t)32 * 1024 * 1024)

struct fixture {
    char root[PATH_MAX];
    char state[PATH_MAX];
    char file[PATH_MAX];
    char scratch[PATH_MAX];
    struct tandem_store store;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A store with records in four databases and an applied index. */
static void store_fill(struct tandem_store *s)
{
    MDB_txn *txn;
    const int dbs[] = {TANDEM_DB_KV, TANDEM_DB_JOBS, TANDEM_DB_BOXES, TANDEM_DB_TRACE};
    uint8_t digest[TANDEM_DIGEST_LEN];
    assert_int_equal(tandem_store_write_txn(s, &txn), 0);
    for (unsigned i = 0; i < RECORDS; i++) {
        char key[32], value[64];
        snprintf(key, sizeof key, "key-%06u", i);
        snprintf(value, sizeof value, "value of record %u", i);
        MDB_val k = {.mv_size = strlen(key), .mv_data = key};
        MDB_val v = {.mv_size = strlen(value), .mv_data = value};
        assert_int_equal(mdb_put(txn, s->dbi[dbs[i % 4]], &k, &v, 0), 0);
    }
    memset(digest, 0xab, sizeof digest);
    assert_int_equal(tandem_store_set_applied(s, APPLIED, digest), 0);
    assert_int_equal(tandem_store_commit(s), 0);
}

/* The fixture's scratch root (made) and the paths inside it. */
static void fixture_paths(struct fixture *f)
{
    const char *names[] = {"state", "b.tbk", "scratch"};
    char *paths[] = {f->state, f->file, f->scratch};
    const char *tmp = getenv("TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/tandem-backup-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(paths[i], PATH_MAX, "%s/%s", f->root, names[i]);
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    fixture_paths(f);
    assert_int_equal(mkdir(f->scratch, 0700), 0);
    assert_int_equal(tandem_store_open(&f->store, f->state, MAP_SIZE), 0);
    store_fill(&f->store);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tandem_store_close(&f->store);
    nftw(f->root, remove_entry, FD_MAX, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static const struct tandem_backup_source source = {.cluster_id = "tandem",
                                                   .node = "east-1",
                                                   .site = "east",
                                                   .tandem_version = "test",
                                                   .epoch = 3,
                                                   .term = 7,
                                                   .created_ms = 1700000000123};

static void backup_write(struct fixture *f, const struct tandem_backup_key *key,
                         struct tandem_backup_manifest *m)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    int rv = tandem_backup_write(&f->store, f->file, &source, key, m, errmsg);
    assert_int_equal(rv, 0);
}

/* The manifest holds what GET /v1/digest computes on the source, the counts and the source. */
static void test_manifest_matches_store(void **state)
{
    struct fixture *f = *state;
    struct tandem_backup_manifest m, again;
    uint8_t digest[TANDEM_DIGEST_LEN], data[TANDEM_DIGEST_LEN];
    MDB_txn *txn;
    char errmsg[TANDEM_ERRMSG_SIZE];
    backup_write(f, NULL, &m);
    assert_int_equal(tandem_store_read_txn(&f->store, &txn), 0);
    assert_int_equal(tandem_store_state_digest(&f->store, txn, digest), 0);
    assert_int_equal(tandem_store_digest_without(&f->store, txn, TANDEM_DB_AUDIT, data), 0);
    mdb_txn_abort(txn);
    assert_memory_equal(m.state_digest, digest, sizeof digest);
    assert_memory_equal(m.data_digest, data, sizeof data);
    assert_int_equal(m.applied_index, APPLIED);
    assert_int_equal(m.counts.keys + m.counts.jobs + m.counts.boxes + m.counts.trace_events,
                     RECORDS);
    assert_int_equal(m.counts.jobs, RECORDS / 4);
    assert_string_equal(m.cluster_id, "tandem");
    assert_int_equal(m.term, 7);
    assert_false(m.encrypted);
    /* What the file says (read back) is what the writer returned. */
    assert_int_equal(tandem_backup_manifest_read(f->file, &again, NULL, errmsg), 0);
    assert_memory_equal(again.state_digest, m.state_digest, TANDEM_DIGEST_LEN);
    assert_int_equal(again.created_ms, source.created_ms);
    assert_int_equal(tandem_backup_verify(f->file, 1, NULL, 0, NULL, &again, NULL, errmsg), 0);
    assert_int_equal(tandem_backup_verify(f->file, 2, NULL, 0, f->scratch, &again, NULL, errmsg),
                     0);
}

static void byte_flip(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    uint8_t byte;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);
}

/* One flipped byte in each part is named by that part at level 1. */
static void test_flipped_byte_named(void **state)
{
    struct fixture *f = *state;
    struct tandem_backup_manifest m;
    struct stat st;
    char errmsg[TANDEM_ERRMSG_SIZE], copy[PATH_MAX + 8];
    backup_write(f, NULL, &m);
    assert_int_equal(stat(f->file, &st), 0);
    const struct {
        off_t at;
        enum tandem_backup_part part;
    } cases[] = {
        {10, TANDEM_BACKUP_PART_HEADER},
        {TANDEM_BACKUP_HEADER_BYTES + 20, TANDEM_BACKUP_PART_MANIFEST},
        {st.st_size / 2, TANDEM_BACKUP_PART_STATE},
        {st.st_size - 40, TANDEM_BACKUP_PART_TRAILER}, /* the tag */
        {st.st_size - 1, TANDEM_BACKUP_PART_TRAILER},  /* the checksum */
    };
    snprintf(copy, sizeof copy, "%s.bad", f->file);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum tandem_backup_part part = TANDEM_BACKUP_PART_NONE;
        (void)unlink(copy);
        char cmd[3 * PATH_MAX];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", f->file, copy);
        assert_int_equal(system(cmd), 0);
        byte_flip(copy, cases[i].at);
        assert_int_equal(tandem_backup_verify(copy, 1, NULL, 0, NULL, &m, &part, errmsg),
                         TANDEM_CORRUPT);
        assert_int_equal(part, cases[i].part);
        assert_non_null(strstr(errmsg, tandem_backup_part_name(cases[i].part)));
    }
    /* A truncated file names the part it ends in. */
    enum tandem_backup_part part = TANDEM_BACKUP_PART_NONE;
    assert_int_equal(truncate(copy, TANDEM_BACKUP_HEADER_BYTES + 4096 + 100), 0);
    assert_int_equal(tandem_backup_verify(copy, 1, NULL, 0, NULL, &m, &part, errmsg),
                     TANDEM_CORRUPT);
    assert_int_equal(part, TANDEM_BACKUP_PART_STATE);
}

/* Rewrites the state part with its meta pages zeroed and every checksum recomputed, as someone
 * (or a bug) would who damaged the state before it was hashed: level 1 passes, level 2 not. */
static void state_damage_rehash(const char *path)
{
    static uint8_t buf[FILE_MAX];
    uint8_t *raw = buf;
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_backup_header h;
    struct tandem_backup_manifest m;
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    ssize_t len = read(fd, buf, sizeof buf);
    assert_true(len > 0 && (size_t)len < sizeof buf);
    assert_int_equal(tandem_backup_header_decode(raw, &h, errmsg), 0);
    uint8_t *manifest = raw + TANDEM_BACKUP_HEADER_BYTES, *stored = manifest + h.manifest_len;
    assert_int_equal(
        tandem_backup_manifest_parse((const char *)manifest, h.manifest_len, &m, errmsg), 0);
    memset(stored, 0, 2 * LMDB_PAGE); /* both meta pages: no longer an LMDB file */
    assert_int_equal(tandem_sha256(stored, h.state_len, m.state_sha256, errmsg), 0);
    json_t *json = tandem_backup_manifest_json(&m);
    char *text = json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS);
    assert_true(strlen(text) <= h.manifest_len);
    memset(manifest, ' ', h.manifest_len);
    memcpy(manifest, text, strlen(text));
    free(text);
    json_decref(json);
    assert_int_equal(tandem_sha256(manifest, h.manifest_len, h.manifest_sha256, errmsg), 0);
    tandem_backup_header_encode(&h, raw);
    assert_int_equal(tandem_sha256(raw, BACKUP_HEADER_SHA_AT, h.header_sha256, errmsg), 0);
    tandem_backup_header_encode(&h, raw);
    assert_int_equal(tandem_sha256(raw, (size_t)len - TANDEM_DIGEST_LEN, raw + len - 32, errmsg),
                     0);
    assert_int_equal(pwrite(fd, buf, (size_t)len, 0), len);
    close(fd);
}

static void test_structural_damage_level2(void **state)
{
    struct fixture *f = *state;
    struct tandem_backup_manifest m;
    enum tandem_backup_part part = TANDEM_BACKUP_PART_NONE;
    char errmsg[TANDEM_ERRMSG_SIZE];
    backup_write(f, NULL, &m);
    state_damage_rehash(f->file);
    assert_int_equal(tandem_backup_verify(f->file, 1, NULL, 0, NULL, &m, &part, errmsg), 0);
    assert_int_equal(tandem_backup_verify(f->file, 2, NULL, 0, f->scratch, &m, &part, errmsg),
                     TANDEM_CORRUPT);
    assert_int_equal(part, TANDEM_BACKUP_PART_STATE);
    /* The scratch directory is left empty. */
    assert_int_equal(rmdir(f->scratch), 0);
}

/* A sealed state: level 1 needs no key; level 2 needs the key of the file's id and refuses a
 * wrong one; the state bytes are not the clear LMDB file. */
static void test_sealed(void **state)
{
    struct fixture *f = *state;
    struct tandem_backup_key key = {.id = 2}, wrong = {.id = 2}, other = {.id = 1};
    struct tandem_backup_manifest m;
    enum tandem_backup_part part;
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(key.key, 0x11, sizeof key.key);
    memset(wrong.key, 0x22, sizeof wrong.key);
    memset(other.key, 0x33, sizeof other.key);
    backup_write(f, &key, &m);
    assert_true(m.encrypted);
    assert_int_equal(m.key_id, 2);
    assert_int_equal(tandem_backup_verify(f->file, 1, NULL, 0, NULL, &m, &part, errmsg), 0);
    assert_int_equal(tandem_backup_verify(f->file, 2, &other, 1, f->scratch, &m, &part, errmsg),
                     TANDEM_NOTFOUND);
    assert_int_equal(part, TANDEM_BACKUP_PART_NONE);
    assert_int_equal(tandem_backup_verify(f->file, 2, &wrong, 1, f->scratch, &m, &part, errmsg),
                     TANDEM_CRYPTO);
    struct tandem_backup_key both[2] = {other, key};
    assert_int_equal(tandem_backup_verify(f->file, 2, both, 2, f->scratch, &m, &part, errmsg), 0);
    assert_int_equal(m.applied_index, APPLIED);
}

/* Unpacking makes a state directory the store opens at the backup's index and digest; it
 * refuses an existing directory. */
static void test_unpack(void **state)
{
    struct fixture *f = *state;
    struct tandem_backup_manifest m, facts;
    struct tandem_store restored;
    char dir[PATH_MAX + 16], errmsg[TANDEM_ERRMSG_SIZE];
    uint8_t digest[TANDEM_DIGEST_LEN];
    MDB_txn *txn;
    backup_write(f, NULL, &m);
    snprintf(dir, sizeof dir, "%s/restored", f->root);
    assert_int_equal(tandem_backup_unpack(f->file, NULL, 0, dir, &facts, NULL, errmsg), 0);
    assert_int_not_equal(tandem_backup_unpack(f->file, NULL, 0, dir, &facts, NULL, errmsg), 0);
    assert_int_equal(tandem_store_open(&restored, dir, MAP_SIZE), 0);
    assert_int_equal(restored.applied_index, APPLIED);
    assert_memory_equal(restored.apply_digest, m.apply_digest, TANDEM_DIGEST_LEN);
    assert_int_equal(tandem_store_read_txn(&restored, &txn), 0);
    assert_int_equal(tandem_store_state_digest(&restored, txn, digest), 0);
    mdb_txn_abort(txn);
    assert_memory_equal(digest, m.state_digest, TANDEM_DIGEST_LEN);
    tandem_store_close(&restored);
}

/* Damaged manifests are refused field by field. */
static void test_manifest_parse_refuses(void **state)
{
    struct tandem_backup_manifest m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    const char *bad[] = {"", "[]", "{\"format\":1}", "{\"cluster_id\":\"x\"}"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tandem_backup_manifest_parse(bad[i], strlen(bad[i]), &m, errmsg),
                         TANDEM_CORRUPT);
        assert_non_null(strstr(errmsg, "manifest"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_manifest_matches_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structural_damage_level2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpack, setup, teardown),
        cmocka_unit_test(test_manifest_parse_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
