/* tandemctl's local backup work (node/ctl/backup_local.h): checks at levels 1-3 and restores. */
#include "node/ctl/backup_local.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "consensus/member.h"
#include "consensus/recover.h"
#include "consensus/seed.h"
#include "node/ctl/client.h"
#include "storage/assert.h"
#include "storage/error.h"

#define VERIFY_NODE_NAME "verify"
#define POLL_MS          100

static int damaged_fail(struct tandem_ctl_context *ctx, const char *file, int rv,
                        enum tandem_backup_part part, const char *errmsg)
{
    if (part != TANDEM_BACKUP_PART_NONE) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s: %s damaged: %s", file,
                               tandem_backup_part_name(part), errmsg);
    }
    return tandem_ctl_fail(ctx,
                           rv == TANDEM_NOTFOUND || rv == TANDEM_INVALID ? TANDEM_CTL_EUSAGE
                                                                         : TANDEM_CTL_EREFUSED,
                           "%s: %s", file, errmsg);
}

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void tree_remove(const char *dir)
{
    (void)nftw(dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh 0700 directory under --scratch, $TMPDIR or /tmp. */
static int scratch_make(struct tandem_ctl_context *ctx, const char *base, char *out, size_t size)
{
    const char *tmp = base != NULL ? base : getenv("TMPDIR");
    snprintf(out, size, "%s/tandem-verify-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(out) == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "scratch directory %s: %s", out,
                               strerror(errno));
    }
    return TANDEM_CTL_OK;
}

/* 1 when dir is absent or an empty directory, 0 when it holds anything, -1 when unreadable. */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? 1 : -1;
    }
    int empty = 1;
    for (struct dirent *e = readdir(d); e != NULL && empty; e = readdir(d)) {
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    }
    closedir(d);
    return empty;
}

/* mkdir -p with mode 0700, as an operator expects of a new data directory. */
static int dir_make(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static void cluster_id_new(char *out)
{
    unsigned char random[6] = {0};
    if (RAND_bytes(random, sizeof random) != 1) {
        unsigned long long t = (unsigned long long)time(NULL) ^ (unsigned long long)getpid();
        memcpy(random, &t, sizeof random);
    }
    snprintf(out, TANDEM_BACKUP_LABEL_LEN_MAX + 1, "restored-%02x%02x%02x%02x%02x%02x", random[0],
             random[1], random[2], random[3], random[4], random[5]);
}

/* The files beside state/: the epoch, the cluster id and the marker. */
static int restore_files(const struct tandem_ctl_backup_restore *r,
                         const struct tandem_backup_manifest *m, const char *cluster_id,
                         char *errmsg)
{
    struct tandem_restore_note note = {.index = m->applied_index,
                                       .term = m->term > 0 ? m->term : 1,
                                       .epoch = m->epoch > 0 ? m->epoch : 1};
    const char *base = strrchr(r->file, '/');
    snprintf(note.name, sizeof note.name, "%s", r->name);
    snprintf(note.cluster_id, sizeof note.cluster_id, "%s", cluster_id);
    snprintf(note.backup, sizeof note.backup, "%s", base != NULL ? base + 1 : r->file);
    tandem_digest_hex(m->state_digest, note.state_digest);
    int rv = tandem_epoch_write(r->data_dir, note.epoch, errmsg);
    rv = rv != 0 ? rv : tandem_cluster_id_write(r->data_dir, cluster_id, errmsg);
    /* Last: without the marker the directory is not a restore a start would act on. */
    return rv != 0 ? rv : tandem_restore_note_write(r->data_dir, &note, errmsg);
}

/* The unpacked state carried on to r->to_index through r->log_dir's log, when asked. */
static int restore_state(const struct tandem_ctl_backup_restore *r,
                         const struct tandem_backup_manifest *m, char *errmsg)
{
    if (r->log_dir == NULL) {
        return 0;
    }
    tandem_assert(r->replayed != NULL);
    r->replayed->state = *m;
    return tandem_ctl_backup_replay(r->data_dir, r->log_dir, r->to_index, &r->replayed->state,
                                    &r->replayed->replay, errmsg);
}

/* Unpacks the state into data_dir/state (carried on to r->to_index when asked), checks its personal
 * data against ring (may be NULL) and writes the files beside it; on failure nothing of it stays.
 */
static int restore_seed(struct tandem_ctl_context *ctx, const struct tandem_ctl_backup_restore *r,
                        const struct tandem_keyring *ring, struct tandem_backup_manifest *m,
                        const char *cluster_id, struct tandem_ctl_restore_pdata *pdata)
{
    char state_dir[PATH_MAX], state_file[PATH_MAX + 16], errmsg[TANDEM_ERRMSG_SIZE];
    enum tandem_backup_part part = TANDEM_BACKUP_PART_NONE;
    snprintf(state_dir, sizeof state_dir, "%s/state", r->data_dir);
    snprintf(state_file, sizeof state_file, "%s/data.mdb", state_dir);
    int rv = tandem_backup_unpack(r->file, r->keys, r->n_keys, state_dir, m, &part, errmsg);
    if (rv != 0) {
        return damaged_fail(ctx, r->file, rv, part, errmsg);
    }
    if ((rv = restore_state(r, m, errmsg)) != 0) {
        rv = tandem_ctl_fail(ctx, rv == TANDEM_INVALID ? TANDEM_CTL_EUSAGE : TANDEM_CTL_EREFUSED,
                             "%s", errmsg);
    }
    rv = rv != 0 ? rv : tandem_ctl_restore_pdata_check(ctx, state_file, ring, pdata);
    if (rv == 0 &&
        restore_files(r, r->log_dir != NULL ? &r->replayed->state : m, cluster_id, errmsg) != 0) {
        rv = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s: %s", r->data_dir, errmsg);
    }
    if (rv != 0) {
        tree_remove(state_dir); /* nothing half-restored stays */
    }
    return rv;
}

int tandem_ctl_backup_restore_dir(struct tandem_ctl_context *ctx,
                                  const struct tandem_ctl_backup_restore *r,
                                  struct tandem_backup_manifest *m, char *cluster_id,
                                  struct tandem_ctl_restore_pdata *pdata)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_keyring ring;
    if (!tandem_member_name_ok(r->name, TANDEM_NAME_LEN_MAX)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--name: '%s' is not a node name", r->name);
    }
    if (r->cluster_id != NULL && !tandem_member_name_ok(r->cluster_id, TANDEM_CLUSTER_ID_LEN_MAX)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--new-cluster-id: '%s' is not a cluster id",
                               r->cluster_id);
    }
    int empty = dir_empty(r->data_dir);
    if (empty != 1) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "--data-dir %s %s: a restore never mixes with existing data",
                               r->data_dir, empty == 0 ? "is not empty" : "cannot be read");
    }
    memset(&ring, 0, sizeof ring);
    if (r->data_key_file != NULL && tandem_keyring_load(&ring, r->data_key_file, errmsg) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--data-key-file: %s", errmsg);
    }
    bool created = access(r->data_dir, F_OK) != 0; /* removed again when the restore fails */
    int rv = TANDEM_CTL_OK;
    if (dir_make(r->data_dir) != 0) {
        rv = tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--data-dir %s: %s", r->data_dir,
                             strerror(errno));
    } else {
        if (r->cluster_id != NULL) {
            snprintf(cluster_id, TANDEM_BACKUP_LABEL_LEN_MAX + 1, "%s", r->cluster_id);
        } else {
            cluster_id_new(cluster_id);
        }
        rv = restore_seed(ctx, r, r->data_key_file != NULL ? &ring : NULL, m, cluster_id, pdata);
        if (rv != 0 && created) {
            (void)rmdir(r->data_dir);
        }
    }
    tandem_keyring_clear(&ring);
    return rv;
}

/* A port nobody listens on now (bound to port 0, then released) into *port. */
static int free_port(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rv = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                     getsockname(fd, (struct sockaddr *)&sa, &len) == 0
                 ? 0
                 : -1;
    if (fd >= 0) {
        close(fd);
    }
    *port = ntohs(sa.sin_port);
    return rv;
}

/* The tandemd beside this tandemctl, else "tandemd" (found on $PATH). */
static void tandemd_path(const char *given, char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = given == NULL ? readlink("/proc/self/exe", self, sizeof self - 1) : -1;
    if (given != NULL) {
        snprintf(out, size, "%s", given);
        return;
    }
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash != NULL) {
        snprintf(slash + 1, sizeof self - (size_t)(slash + 1 - self), "tandemd");
        if (access(self, X_OK) == 0) {
            snprintf(out, size, "%s", self);
            return;
        }
    }
    snprintf(out, size, "tandemd");
}

/* A scratch tandemd on the restored directory: fork and exec, output into its log file. */
static pid_t scratch_spawn(const char *program, char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            (void)dup2(fd, STDOUT_FILENO);
            (void)dup2(fd, STDERR_FILENO);
        }
        if (null >= 0) {
            (void)dup2(null, STDIN_FILENO);
        }
        if (strchr(program, '/') != NULL) {
            execv(program, argv);
        } else {
            execvp(program, argv);
        }
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* SIGTERM, then SIGKILL after TANDEM_CTL_VERIFY_STOP_MS; always reaps it. */
static void scratch_stop(pid_t pid)
{
    int status;
    (void)kill(pid, SIGTERM);
    for (long waited = 0; waited < TANDEM_CTL_VERIFY_STOP_MS; waited += POLL_MS) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return;
        }
        sleep_ms(POLL_MS);
    }
    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, &status, 0);
}

/* Polls GET /v1/digest on url until it answers 200 (within TANDEM_CTL_VERIFY_START_MS, while
 * the scratch node runs); *out is the answer. */
static int digest_wait(struct tandem_ctl_context *ctx, const char *url, pid_t pid, json_t **out)
{
    struct tandem_ctl_client client;
    struct tandem_ctl_request req = {"GET", "/v1/digest", NULL, 0, NULL};
    if (tandem_ctl_client_init(&client, url, 2000) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "level 3: %s", client.errmsg);
    }
    client.rounds_max = 1;
    int rc = TANDEM_CTL_EUNREACHABLE, status;
    for (long waited = 0; waited < TANDEM_CTL_VERIFY_START_MS && rc != TANDEM_CTL_OK;
         waited += POLL_MS) {
        struct tandem_ctl_response resp;
        tandem_ctl_response_init(&resp);
        json_error_t jerr;
        if (tandem_ctl_client_send(&client, &req, &resp) == TANDEM_CTL_OK && resp.status == 200 &&
            (*out = json_loadb(resp.body, resp.body_len, 0, &jerr)) != NULL) {
            rc = TANDEM_CTL_OK;
        }
        tandem_ctl_response_free(&resp);
        if (rc != TANDEM_CTL_OK && waitpid(pid, &status, WNOHANG) == pid) {
            tandem_ctl_client_close(&client);
            return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                                   "level 3: the scratch tandemd exited (status %d) before "
                                   "answering: see its log",
                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        if (rc != TANDEM_CTL_OK) {
            sleep_ms(POLL_MS);
        }
    }
    tandem_ctl_client_close(&client);
    if (rc != TANDEM_CTL_OK) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                               "level 3: the scratch tandemd did not answer within %ld ms",
                               TANDEM_CTL_VERIFY_START_MS);
    }
    return TANDEM_CTL_OK;
}

static const char *text_of(const json_t *object, const char *name)
{
    const char *text = json_string_value(json_object_get(object, name));
    return text != NULL ? text : "";
}

/* The digest answer of the scratch node against the manifest: index, digests, counts. */
static int digest_compare(struct tandem_ctl_context *ctx, const json_t *got,
                          const struct tandem_backup_manifest *m)
{
    char state[2 * TANDEM_DIGEST_LEN + 1], data[2 * TANDEM_DIGEST_LEN + 1];
    const json_t *counts = json_object_get(got, "counts");
    tandem_digest_hex(m->state_digest, state);
    tandem_digest_hex(m->data_digest, data);
    const char *what =
        (uint64_t)json_integer_value(json_object_get(got, "applied_index")) != m->applied_index
            ? "applied_index"
        : strcmp(text_of(got, "state_digest"), state) != 0 ? "state_digest"
        : strcmp(text_of(got, "data_digest"), data) != 0   ? "data_digest"
        : (uint64_t)json_integer_value(json_object_get(counts, "keys")) != m->counts.keys ||
                (uint64_t)json_integer_value(json_object_get(counts, "jobs")) != m->counts.jobs ||
                (uint64_t)json_integer_value(json_object_get(counts, "boxes")) != m->counts.boxes ||
                (uint64_t)json_integer_value(json_object_get(counts, "trace_events")) !=
                    m->counts.trace_events
            ? "counts"
            : NULL;
    if (what != NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                               "level 3: the started node's %s differs from the manifest's", what);
    }
    return TANDEM_CTL_OK;
}

/* Starts tandemd on dir/data as one of two voters whose partner never answers: it can never
 * lead, so nothing is applied on top of the restored state before the comparison. Plaintext on
 * 127.0.0.1 ephemeral ports (--insecure): the check runs on this machine only, for seconds, on
 * a 0700 scratch copy whose personal data stays sealed (the node gets no key_file). */
static int level3_run(struct tandem_ctl_context *ctx, const struct tandem_ctl_backup_check *check,
                      const char *dir, const struct tandem_backup_manifest *m)
{
    int ports[4];
    char program[PATH_MAX], data[PATH_MAX + 8], log[PATH_MAX + 16], raft[32], api[32], url[48];
    char self[160], peer[160];
    for (int i = 0; i < 4; i++) {
        if (free_port(&ports[i]) != 0) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "level 3: no free port");
        }
    }
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/tandemd.log", dir);
    snprintf(raft, sizeof raft, "127.0.0.1:%d", ports[0]);
    snprintf(api, sizeof api, "127.0.0.1:%d", ports[1]);
    snprintf(url, sizeof url, "http://%s", api);
    snprintf(self, sizeof self, "%s,%s,%s,%s,voter", VERIFY_NODE_NAME, m->site, raft, url);
    snprintf(peer, sizeof peer, "%s-absent,%s,127.0.0.1:%d,http://127.0.0.1:%d,voter",
             VERIFY_NODE_NAME, m->site, ports[2], ports[3]);
    tandemd_path(check->tandemd, program, sizeof program);
    char *argv[] = {program,
                    "--name",
                    VERIFY_NODE_NAME,
                    "--site",
                    (char *)m->site,
                    "--cluster_id",
                    (char *)"verify",
                    "--data_dir",
                    data,
                    "--raft_address",
                    raft,
                    "--api_address",
                    api,
                    "--insecure",
                    "--member",
                    self,
                    "--member",
                    peer,
                    "--log_level",
                    "warn",
                    NULL};
    pid_t pid = scratch_spawn(program, argv, log);
    if (pid < 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "level 3: fork: %s", strerror(errno));
    }
    json_t *got = NULL;
    int rc = digest_wait(ctx, url, pid, &got);
    rc = rc == TANDEM_CTL_OK ? digest_compare(ctx, got, m) : rc;
    json_decref(got);
    scratch_stop(pid);
    return rc;
}

/* Level 3: restore into a scratch directory, start a node on it, compare, stop, clean up. */
static int level3(struct tandem_ctl_context *ctx, const struct tandem_ctl_backup_check *check,
                  struct tandem_backup_manifest *m)
{
    char dir[PATH_MAX], data[PATH_MAX + 8], cluster_id[TANDEM_BACKUP_LABEL_LEN_MAX + 1];
    int rc = scratch_make(ctx, check->scratch, dir, sizeof dir - 16);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    snprintf(data, sizeof data, "%s/data", dir);
    struct tandem_ctl_backup_restore restore = {.file = check->file,
                                                .data_dir = data,
                                                .name = VERIFY_NODE_NAME,
                                                .cluster_id = "verify",
                                                .keys = check->keys,
                                                .n_keys = check->n_keys};
    struct tandem_ctl_restore_pdata pdata;
    rc = tandem_ctl_backup_restore_dir(ctx, &restore, m, cluster_id, &pdata);
    rc = rc == TANDEM_CTL_OK ? level3_run(ctx, check, dir, m) : rc;
    if (rc == TANDEM_CTL_OK || getenv("TANDEM_VERIFY_KEEP") == NULL) {
        tree_remove(dir);
    }
    return rc;
}

int tandem_ctl_backup_check(struct tandem_ctl_context *ctx,
                            const struct tandem_ctl_backup_check *check,
                            struct tandem_backup_manifest *m)
{
    char dir[PATH_MAX], errmsg[TANDEM_ERRMSG_SIZE];
    enum tandem_backup_part part = TANDEM_BACKUP_PART_NONE;
    if (check->level == 3) {
        return level3(ctx, check, m);
    }
    if (check->level == 2 && scratch_make(ctx, check->scratch, dir, sizeof dir) != 0) {
        return TANDEM_CTL_EUSAGE;
    }
    int rv = tandem_backup_verify(check->file, check->level, check->keys, check->n_keys,
                                  check->level == 2 ? dir : NULL, m, &part, errmsg);
    if (check->level == 2) {
        tree_remove(dir);
    }
    return rv == 0 ? TANDEM_CTL_OK : damaged_fail(ctx, check->file, rv, part, errmsg);
}
