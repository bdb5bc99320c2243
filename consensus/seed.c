/* The restore marker, the data directory's cluster id and the raft seeding of a restored node
 * (consensus/seed.h). */
#include "consensus/seed.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "consensus/raft_error.h"
#include "consensus/raft_node.h"
#include "consensus/recover.h"
#include "storage/assert.h"
#include "storage/error.h"

#define NOTE_BYTES_MAX 4096 /* a restore marker; larger is not ours */

int tandem_restore_note_write(const char *data_dir, const struct tandem_restore_note *note,
                              char *errmsg)
{
    char text[NOTE_BYTES_MAX];
    int n =
        snprintf(text, sizeof text,
                 "name %s\ncluster_id %s\nindex %" PRIu64 "\nterm %" PRIu64 "\nepoch %" PRIu64
                 "\nbackup %s\n",
                 note->name, note->cluster_id, note->index, note->term, note->epoch, note->backup);
    if (note->state_digest[0] != '\0' && n > 0 && (size_t)n < sizeof text) {
        snprintf(text + n, sizeof text - (size_t)n, "state_digest %s\n", note->state_digest);
    }
    return tandem_recover_file_write(data_dir, TANDEM_RESTORE_FILE, text, errmsg);
}

/* Reads DATA_DIR/file (at most NOTE_BYTES_MAX - 1 bytes) into text: 1, 0 when absent, -1. */
static int small_read(const char *data_dir, const char *file, char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return errno == ENOENT ? 0 : -1;
    }
    size_t n = fread(text, 1, NOTE_BYTES_MAX, f);
    fclose(f);
    if (n >= NOTE_BYTES_MAX) {
        return -1;
    }
    text[n] = '\0';
    return 1;
}

static bool note_line(const char *line, struct tandem_restore_note *note)
{
    if (sscanf(line, "index %" SCNu64, &note->index) == 1 ||
        sscanf(line, "term %" SCNu64, &note->term) == 1 ||
        sscanf(line, "epoch %" SCNu64, &note->epoch) == 1) {
        return true;
    }
    if (strncmp(line, "name ", 5) == 0) {
        snprintf(note->name, sizeof note->name, "%s", line + 5);
        return tandem_member_name_ok(note->name, TANDEM_NAME_LEN_MAX);
    }
    if (strncmp(line, "cluster_id ", 11) == 0) {
        snprintf(note->cluster_id, sizeof note->cluster_id, "%s", line + 11);
        return tandem_member_name_ok(note->cluster_id, TANDEM_CLUSTER_ID_LEN_MAX);
    }
    if (strncmp(line, "state_digest ", 13) == 0) {
        const char *hex = line + 13;
        snprintf(note->state_digest, sizeof note->state_digest, "%s", hex);
        return strlen(hex) == TANDEM_RESTORE_DIGEST_HEX &&
               strspn(hex, "0123456789abcdef") == TANDEM_RESTORE_DIGEST_HEX;
    }
    if (strncmp(line, "backup ", 7) == 0) {
        snprintf(note->backup, sizeof note->backup, "%s", line + 7);
        return true;
    }
    return false;
}

int tandem_restore_note_read(const char *data_dir, struct tandem_restore_note *note, char *errmsg)
{
    char text[NOTE_BYTES_MAX], *save = NULL;
    memset(note, 0, sizeof *note);
    int found = small_read(data_dir, TANDEM_RESTORE_FILE, text);
    bool ok = found == 1;
    for (char *line = ok ? strtok_r(text, "\n", &save) : NULL; line != NULL && ok;
         line = strtok_r(NULL, "\n", &save)) {
        ok = note_line(line, note);
    }
    if (found != 0 && (!ok || note->index == 0 || note->term == 0 || note->name[0] == '\0' ||
                       note->cluster_id[0] == '\0')) {
        (void)tandem_error_set(errmsg, TANDEM_CORRUPT, "%s/%s is not a restore marker", data_dir,
                               TANDEM_RESTORE_FILE);
        return -1;
    }
    return found;
}

int tandem_cluster_id_read(const char *data_dir, char *out)
{
    char text[NOTE_BYTES_MAX];
    int found = small_read(data_dir, TANDEM_CLUSTER_ID_FILE, text);
    if (found != 1) {
        return found;
    }
    text[strcspn(text, "\n")] = '\0';
    if (!tandem_member_name_ok(text, TANDEM_CLUSTER_ID_LEN_MAX)) {
        return -1;
    }
    snprintf(out, TANDEM_CLUSTER_ID_LEN_MAX + 1, "%s", text);
    return 1;
}

int tandem_cluster_id_write(const char *data_dir, const char *cluster_id, char *errmsg)
{
    char text[TANDEM_CLUSTER_ID_LEN_MAX + 2];
    if (!tandem_member_name_ok(cluster_id, TANDEM_CLUSTER_ID_LEN_MAX)) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "bad cluster id '%.80s'", cluster_id);
    }
    snprintf(text, sizeof text, "%s\n", cluster_id);
    return tandem_recover_file_write(data_dir, TANDEM_CLUSTER_ID_FILE, text, errmsg);
}

/* Removes dir and the plain files raft_uv left in it (it makes no subdirectories). */
static void seed_dir_remove(const char *dir)
{
    char path[PATH_MAX + 300];
    DIR *d = opendir(dir);
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            (void)unlink(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    (void)rmdir(dir);
}

struct seed_run {
    bool put_done, closed;
    int put_status;
};

static void seed_put_cb(struct raft_io_snapshot_put *req, int status)
{
    struct seed_run *run = req->data;
    run->put_done = true;
    run->put_status = status;
}

static void seed_close_cb(struct raft_io *io)
{
    struct seed_run *run = io->data;
    run->closed = true;
}

/* The empty raft directory gets the term, then the snapshot; raft_uv writes both. */
static int seed_write(struct raft_io *io, uv_loop_t *loop, struct raft_snapshot *snapshot,
                      struct seed_run *run, char *errmsg)
{
    raft_term term;
    raft_id vote;
    struct raft_snapshot *loaded = NULL;
    raft_index start;
    struct raft_entry *entries = NULL;
    size_t n = 0;
    struct raft_io_snapshot_put req = {.data = run};
    int rv = io->load(io, &term, &vote, &loaded, &start, &entries, &n);
    if (rv != 0) {
        return tandem_error_from_raft(rv, io->errmsg, errmsg, "seed: load");
    }
    if (loaded != NULL || n > 0 || term != 0) {
        return tandem_error_set(errmsg, TANDEM_STATE, "seed: the raft directory is not empty");
    }
    if ((rv = io->set_term(io, snapshot->term)) != 0) {
        return tandem_error_from_raft(rv, io->errmsg, errmsg, "seed: set term");
    }
    if ((rv = io->snapshot_put(io, 0, &req, snapshot, seed_put_cb)) != 0) {
        return tandem_error_from_raft(rv, io->errmsg, errmsg, "seed: snapshot");
    }
    while (!run->put_done) {
        (void)uv_run(loop, UV_RUN_ONCE);
    }
    if (run->put_status != 0) {
        return tandem_error_from_raft(run->put_status, io->errmsg, errmsg, "seed: snapshot");
    }
    return 0;
}

/* Runs raft_uv on its own loop over seed_dir: init, write, close. */
static int seed_run(const char *seed_dir, const struct tandem_member *self,
                    struct raft_snapshot *snapshot, char *errmsg)
{
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct seed_run run = {0};
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    int rv = uv_loop_init(&loop);
    if (rv != 0) {
        return tandem_error_from_uv(rv, errmsg, "seed: loop");
    }
    memset(&transport, 0, sizeof transport);
    memset(&io, 0, sizeof io);
    transport.version = 1; /* raft_uv refuses version 0 */
    (void)tandem_member_address_format(self, address, sizeof address);
    if ((rv = raft_uv_tcp_init(&transport, &loop)) != 0) {
        rv = tandem_error_from_raft(rv, NULL, errmsg, "seed: transport");
        goto err_after_loop;
    }
    if ((rv = raft_uv_init(&io, &loop, seed_dir, &transport)) != 0) {
        rv = tandem_error_from_raft(rv, io.errmsg, errmsg, "seed: raft_uv_init");
        goto err_after_transport;
    }
    raft_uv_set_auto_recovery(&io, false);
    io.data = &run;
    rv = io.init(&io, tandem_member_id(self->name), address);
    if (rv != 0) {
        rv = tandem_error_from_raft(rv, io.errmsg, errmsg, "seed: raft_uv init");
        raft_uv_close(&io);
        goto err_after_transport;
    }
    rv = seed_write(&io, &loop, snapshot, &run, errmsg);
    io.close(&io, seed_close_cb);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    tandem_assert(run.closed);
    raft_uv_close(&io);
err_after_transport:
    raft_uv_tcp_close(&transport);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
err_after_loop:
    (void)uv_loop_close(&loop);
    return rv;
}

int tandem_raft_seed(const char *data_dir, const char *raft_dir, const struct tandem_member *self,
                     const struct tandem_member *members, unsigned n_members, uint64_t term,
                     uint64_t index, void *snapshot, size_t snapshot_len, char *errmsg)
{
    char seed_dir[PATH_MAX];
    struct stat st;
    struct raft_buffer buf = {.base = snapshot, .len = snapshot_len};
    struct raft_snapshot s = {
        .index = index, .term = term, .configuration_index = index, .bufs = &buf, .n_bufs = 1};
    tandem_assert(term > 0 && index > 0 && n_members > 0);
    if (stat(raft_dir, &st) == 0) {
        return tandem_error_set(errmsg, TANDEM_EXISTS, "%s exists: a restore seeds no raft log",
                                raft_dir);
    }
    snprintf(seed_dir, sizeof seed_dir, "%s/%s", data_dir, TANDEM_SEED_DIR);
    seed_dir_remove(seed_dir); /* a seed a crash interrupted starts over */
    if (mkdir(seed_dir, 0700) != 0) {
        return tandem_error_from_errno(errno, errmsg, seed_dir);
    }
    int rv = tandem_raft_configuration_build(&s.configuration, members, n_members, errmsg);
    rv = rv != 0 ? rv : seed_run(seed_dir, self, &s, errmsg);
    raft_configuration_close(&s.configuration);
    if (rv == 0 && rename(seed_dir, raft_dir) != 0) {
        rv = tandem_error_from_errno(errno, errmsg, "seed: rename into raft/");
    }
    if (rv != 0) {
        seed_dir_remove(seed_dir);
        return rv;
    }
    int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* until this is on disk a crash repeats the seed (the marker stays) */
        close(fd);
    }
    return 0;
}
