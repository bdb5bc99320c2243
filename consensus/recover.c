/* Forced failover helpers: survivor choice, loss bound, and the data-directory markers that the
 * next start of tandemd acts on (raft_recover, wipe-and-join, fencing epoch). */
#include "consensus/recover.h"
#include "storage/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WIPE_DEPTH_MAX   4    /* raft/ and state/ hold files, not deep trees */
#define WIPE_ENTRIES_MAX 4096 /* files removed from one directory before giving up */

int tandem_recover_choose(const struct tandem_recover_candidate *c, unsigned n,
                          const char *lost_site)
{
    int best = -1;
    for (unsigned i = 0; i < n; i++) {
        if (!c[i].reachable || strcmp(c[i].member.site, lost_site) == 0) {
            continue;
        }
        if (best < 0) {
            best = (int)i;
            continue;
        }
        const struct tandem_recover_candidate *b = &c[best];
        bool better = c[i].term > b->term ||
                      (c[i].term == b->term && c[i].last_index > b->last_index) ||
                      (c[i].term == b->term && c[i].last_index == b->last_index &&
                       strcmp(c[i].member.name, b->member.name) < 0);
        if (better) {
            best = (int)i;
        }
    }
    return best;
}

bool tandem_recover_no_committed_loss(const struct tandem_recover_candidate *c, unsigned n,
                                      const char *lost_site)
{
    unsigned voters = 0, surviving = 0;
    for (unsigned i = 0; i < n; i++) {
        if (c[i].member.role != TANDEM_ROLE_VOTER) {
            continue;
        }
        voters++;
        surviving += c[i].reachable && strcmp(c[i].member.site, lost_site) != 0 ? 1 : 0;
    }
    /* Every majority (voters/2 + 1 members) meets a survivor iff the lost voters are fewer. */
    return voters > 0 && voters - surviving < voters / 2 + 1;
}

/* ---- files ---- */

static void path_join(char *out, size_t size, const char *dir, const char *file)
{
    snprintf(out, size, "%s/%s", dir, file);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return -1;
    }
    int rv = fsync(fd);
    close(fd);
    return rv;
}

static int write_atomic(const char *data_dir, const char *file, const char *text, char *errmsg)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    path_join(path, sizeof path, data_dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "create %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int rv = (n == (ssize_t)len && fsync(fd) == 0) ? 0 : -1;
    int saved = errno;
    close(fd);
    if (rv != 0 || rename(tmp, path) != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "write %s: %s", path, strerror(rv != 0 ? saved : errno));
        unlink(tmp);
        return -1;
    }
    (void)fsync_dir(data_dir);
    return 0;
}

/* Reads a small file into a malloc'd NUL-terminated buffer; NULL when absent or too large. */
static char *read_small(const char *data_dir, const char *file)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, data_dir, file);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return NULL;
    }
    char *buf = malloc(TANDEM_RECOVER_FILE_BYTES_MAX + 1);
    size_t n = buf == NULL ? 0 : fread(buf, 1, TANDEM_RECOVER_FILE_BYTES_MAX + 1, f);
    fclose(f);
    if (buf == NULL || n > TANDEM_RECOVER_FILE_BYTES_MAX) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int tandem_recover_write_u64(const char *data_dir, const char *file, uint64_t value, char *errmsg)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64 "\n", value);
    return write_atomic(data_dir, file, text, errmsg);
}

int tandem_epoch_write(const char *data_dir, uint64_t epoch, char *errmsg)
{
    return tandem_recover_write_u64(data_dir, TANDEM_EPOCH_FILE, epoch, errmsg);
}

uint64_t tandem_recover_file_u64(const char *data_dir, const char *file)
{
    char *text = read_small(data_dir, file);
    uint64_t value = 0;
    if (text != NULL && sscanf(text, "%" SCNu64, &value) != 1) {
        value = 0;
    }
    free(text);
    return value;
}

bool tandem_recover_file_exists(const char *data_dir, const char *file)
{
    char path[PATH_MAX];
    struct stat st;
    path_join(path, sizeof path, data_dir, file);
    return stat(path, &st) == 0;
}

int tandem_recover_file_remove(const char *data_dir, const char *file, char *errmsg)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, data_dir, file);
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "remove %s: %s", path, strerror(errno));
        return -1;
    }
    (void)fsync_dir(data_dir);
    return 0;
}

/* Format: "epoch N\nsite S\nreason R\nmember ADDRESS ROLE\n..." */
int tandem_recover_plan_write(const char *data_dir, const struct tandem_recover_plan *plan,
                              char *errmsg)
{
    size_t size = 256 + plan->n_members * (TANDEM_MEMBER_ADDRESS_LEN_MAX + 32);
    char *text = malloc(size), address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    if (text == NULL) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory");
        return -1;
    }
    size_t used = (size_t)snprintf(text, size, "epoch %" PRIu64 "\nsite %s\nreason %s\n",
                                   plan->epoch, plan->site, plan->reason);
    for (unsigned i = 0; i < plan->n_members && used < size; i++) {
        if (tandem_member_address_format(&plan->members[i], address, sizeof address) != 0) {
            free(text);
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "invalid member %s", plan->members[i].name);
            return -1;
        }
        used += (size_t)snprintf(text + used, size - used, "member %s %s\n", address,
                                 tandem_role_name(plan->members[i].role));
    }
    int rv = write_atomic(data_dir, TANDEM_RECOVER_FILE, text, errmsg);
    free(text);
    return rv;
}

static int plan_line(const char *line, struct tandem_recover_plan *plan, char *errmsg)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1], role[16];
    if (strncmp(line, "epoch ", 6) == 0) {
        return sscanf(line + 6, "%" SCNu64, &plan->epoch) == 1 ? 0 : -1;
    }
    if (strncmp(line, "site ", 5) == 0) {
        snprintf(plan->site, sizeof plan->site, "%s", line + 5);
        return 0;
    }
    if (strncmp(line, "reason ", 7) == 0) {
        snprintf(plan->reason, sizeof plan->reason, "%s", line + 7);
        return 0;
    }
    if (strncmp(line, "member ", 7) != 0 || plan->n_members >= TANDEM_RECOVER_MEMBERS_MAX ||
        sscanf(line + 7, "%288s %15s", address, role) != 2) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "malformed line '%.80s'", line);
        return -1;
    }
    struct tandem_member *m = &plan->members[plan->n_members];
    if (tandem_member_address_parse(address, m, errmsg) != 0 ||
        (m->role = tandem_role_parse(role)) < 0) {
        return -1;
    }
    plan->n_members++;
    return 0;
}

int tandem_recover_plan_read(const char *data_dir, struct tandem_recover_plan *plan, char *errmsg)
{
    char *text = read_small(data_dir, TANDEM_RECOVER_FILE);
    if (text == NULL) {
        return 0;
    }
    memset(plan, 0, sizeof *plan);
    int rv = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL && rv == 0;
         line = strtok_r(NULL, "\n", &save)) {
        rv = plan_line(line, plan, errmsg);
    }
    free(text);
    if (rv == 0 && (plan->epoch == 0 || plan->n_members == 0)) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "recover marker has no epoch or no members");
        rv = -1;
    }
    return rv == 0 ? 1 : -1;
}

int tandem_recover_plan_done(const char *data_dir, char *errmsg)
{
    char from[PATH_MAX], to[PATH_MAX];
    path_join(from, sizeof from, data_dir, TANDEM_RECOVER_FILE);
    path_join(to, sizeof to, data_dir, TANDEM_FORCED_FILE);
    if (rename(from, to) != 0) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "rename %s: %s", from, strerror(errno));
        return -1;
    }
    (void)fsync_dir(data_dir);
    return 0;
}

int tandem_recover_forced_note(const char *data_dir, char *site)
{
    char *text = read_small(data_dir, TANDEM_FORCED_FILE);
    int found = 0;
    char *save = NULL;
    for (char *line = text == NULL ? NULL : strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "site ", 5) == 0 &&
            tandem_member_name_ok(line + 5, TANDEM_SITE_LEN_MAX)) {
            snprintf(site, TANDEM_SITE_LEN_MAX + 1, "%s", line + 5);
            found = 1;
        }
    }
    free(text);
    return found;
}

/* Removes everything inside dir (not dir itself), depth-bounded. */
static int wipe_dir(const char *dir, int depth, char *errmsg)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? 0
                               : (snprintf(errmsg, TANDEM_ERRMSG_SIZE, "open %s: %s", dir, strerror(errno)), -1);
    }
    int rv = 0;
    unsigned entries = 0;
    struct dirent *e;
    while (rv == 0 && (e = readdir(d)) != NULL && entries++ < WIPE_ENTRIES_MAX) {
        char path[PATH_MAX];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        path_join(path, sizeof path, dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            rv = depth >= WIPE_DEPTH_MAX ? -1 : wipe_dir(path, depth + 1, errmsg);
            rv = rv == 0 && rmdir(path) != 0 ? -1 : rv;
        } else if (unlink(path) != 0) {
            rv = -1;
        }
        if (rv != 0 && errmsg[0] == '\0') {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "remove %s: %s", path, strerror(errno));
        }
    }
    closedir(d);
    return rv;
}

static int reseed_now(const char *data_dir, uint64_t epoch, char *errmsg)
{
    static const char *const dirs[] = {"raft", "state", "state.new", "state.old"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        path_join(path, sizeof path, data_dir, dirs[i]);
        errmsg[0] = '\0';
        if (wipe_dir(path, 0, errmsg) != 0) {
            return -1;
        }
    }
    if (write_atomic(data_dir, TANDEM_JOIN_FILE, "join\n", errmsg) != 0 ||
        tandem_epoch_write(data_dir, epoch, errmsg) != 0 ||
        tandem_recover_file_remove(data_dir, TANDEM_FENCED_FILE, errmsg) != 0 ||
        tandem_recover_file_remove(data_dir, TANDEM_RECOVER_FILE, errmsg) != 0 ||
        tandem_recover_file_remove(data_dir, TANDEM_FORCED_FILE, errmsg) != 0) {
        return -1;
    }
    /* Last: a crash before this line repeats the wipe on the next start. */
    return tandem_recover_file_remove(data_dir, TANDEM_RESEED_FILE, errmsg);
}

int tandem_recover_prepare(const char *data_dir, char *errmsg)
{
    struct tandem_recover_plan *plan;
    uint64_t epoch = tandem_recover_file_u64(data_dir, TANDEM_RESEED_FILE);
    if (tandem_recover_file_exists(data_dir, TANDEM_RESEED_FILE)) {
        if (epoch == 0) {
            snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s/%s holds no epoch", data_dir, TANDEM_RESEED_FILE);
            return -1;
        }
        return reseed_now(data_dir, epoch, errmsg);
    }
    plan = malloc(sizeof *plan);
    if (plan == NULL) {
        snprintf(errmsg, TANDEM_ERRMSG_SIZE, "out of memory");
        return -1;
    }
    int found = tandem_recover_plan_read(data_dir, plan, errmsg);
    int rv = found < 0 ? -1 : 0;
    if (found == 1) {
        rv = tandem_epoch_write(data_dir, plan->epoch, errmsg);
        if (rv == 0) {
            rv = tandem_recover_file_remove(data_dir, TANDEM_FENCED_FILE, errmsg);
        }
    }
    free(plan);
    return rv;
}
