/* Divergence reports: written at the start that moves a fenced node's data aside, compared
 * against the cluster's recorded forced failover, listed for the node-local API. */
#include "node/bcp/divergence.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "consensus/log_scan.h"
#include "consensus/recover.h"
#include "node/log.h"
#include "replication/divergence.h"
#include "storage/clock.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

#define KEPT_WALK_FDS 16 /* descriptors nftw may hold while it sizes a kept folder */
#define WHAT_TO_DO                                                                                 \
    "The entries after the fork were never part of the cluster's history. Check each key, job "    \
    "and box listed against the cluster (tandemctl kv get, job get, box get) and with whoever "    \
    "made the change (each entry has its time), re-enter what must be kept, then delete this "     \
    "folder by hand: tandemd never deletes it. The entries' full content stays in raft/ here; "    \
    "state/ holds what this node had applied."

/* ---- the fork point ---- */

/* The history of the forced failover that fenced a node at old_epoch: the oldest one above
 * it, since that failover's seed held the log the node diverged from. */
static json_t *forced_record_for(json_t *forced, uint64_t old_epoch)
{
    json_t *best = NULL, *r;
    size_t i;
    json_array_foreach(forced, i, r)
    {
        json_int_t epoch = json_integer_value(json_object_get(r, "epoch"));
        if (epoch > 0 && (uint64_t)epoch > old_epoch &&
            (best == NULL || epoch < json_integer_value(json_object_get(best, "epoch")))) {
            best = r;
        }
    }
    return best;
}

static bool history_from_json(json_t *r, struct tandem_term_history *h)
{
    json_t *terms = json_object_get(r, "terms"), *t;
    size_t i;
    memset(h, 0, sizeof *h);
    if (!json_is_array(terms) || json_array_size(terms) > TANDEM_TERM_HISTORY_MAX) {
        return false;
    }
    json_array_foreach(terms, i, t)
    {
        h->terms[i].term = (uint64_t)json_integer_value(json_array_get(t, 0));
        h->terms[i].first_index = (uint64_t)json_integer_value(json_array_get(t, 1));
    }
    h->n = (unsigned)json_array_size(terms);
    h->first_index = (uint64_t)json_integer_value(json_object_get(r, "first_index"));
    h->last_index = (uint64_t)json_integer_value(json_object_get(r, "last_index"));
    h->last_term = (uint64_t)json_integer_value(json_object_get(r, "last_term"));
    return tandem_term_history_ok(h);
}

static json_t *fork_unknown(const char *reason)
{
    return json_pack("{s:n,s:n,s:s,s:s}", "index", "term", "certainty", "unknown", "reason",
                     reason);
}

json_t *tandem_divergence_fork_json(const uint64_t *terms, uint64_t first_index, size_t n,
                                    json_t *forced, uint64_t old_epoch)
{
    struct tandem_term_history h;
    struct tandem_fork fork;
    json_t *record = forced_record_for(forced, old_epoch);
    if (!json_is_array(forced)) {
        return fork_unknown("this re-seed came without the cluster's history (a forced failover "
                            "re-seeds its other survivors this way, before it is recorded): "
                            "nothing to compare with");
    }
    if (record == NULL) {
        return fork_unknown("the cluster recorded no forced failover after this node's epoch, "
                            "so there is no history of its log to compare with");
    }
    if (!history_from_json(record, &h)) {
        return fork_unknown("the cluster's recorded history of its log is malformed");
    }
    tandem_fork_find(terms, first_index, n, &h, &fork);
    json_t *compared =
        json_pack("{s:O,s:O,s:I,s:I,s:I}", "epoch", json_object_get(record, "epoch"), "seed",
                  json_object_get(record, "seed"), "first_index", (json_int_t)h.first_index,
                  "last_index", (json_int_t)h.last_index, "last_term", (json_int_t)h.last_term);
    json_t *out = json_pack("{s:I,s:s,s:o}", "index", (json_int_t)fork.index, "certainty",
                            tandem_fork_certainty_name(fork.certainty), "compared_with", compared);
    json_object_set_new(out, "term",
                        fork.term > 0 ? json_integer((json_int_t)fork.term) : json_null());
    return out;
}

/* ---- writing the report ---- */

static json_t *load_small_json(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size > (off_t)TANDEM_DIVERGENCE_REPORT_BYTES_MAX) {
        return NULL;
    }
    return json_load_file(path, 0, NULL);
}

/* The log part of the report: its range, the fork and the entries after it. */
static void report_log(json_t *report, const struct tandem_log_scan *scan, json_t *forced,
                       uint64_t old_epoch)
{
    uint64_t *terms = calloc(scan->n > 0 ? scan->n : 1, sizeof *terms);
    for (size_t i = 0; terms != NULL && i < scan->n; i++) {
        terms[i] = scan->entries[i].term;
    }
    uint64_t last = scan->n > 0 ? scan->first_index + scan->n - 1 : scan->snapshot_index;
    json_object_set_new(report, "log",
                        json_pack("{s:I,s:I,s:I,s:I}", "first_index", (json_int_t)scan->first_index,
                                  "last_index", (json_int_t)last, "last_term",
                                  (json_int_t)(scan->n > 0 ? terms[scan->n - 1] : 0),
                                  "snapshot_index", (json_int_t)scan->snapshot_index));
    json_t *fork = terms == NULL ? fork_unknown("out of memory")
                                 : tandem_divergence_fork_json(terms, scan->first_index, scan->n,
                                                               forced, old_epoch);
    free(terms);
    json_object_set_new(report, "fork", fork);
    json_t *index = json_object_get(fork, "index");
    if (!json_is_integer(index)) {
        json_object_set_new(report, "entries_after_fork", json_null());
        return;
    }
    uint64_t after = (uint64_t)json_integer_value(index) + 1;
    size_t skip = after > scan->first_index ? (size_t)(after - scan->first_index) : 0;
    skip = skip < scan->n ? skip : scan->n;
    json_t *entries = tandem_divergence_entries_json(scan->entries + skip, scan->first_index + skip,
                                                     scan->n - skip);
    json_object_update(report, entries);
    json_decref(entries);
}

static uint64_t kept_bytes; /* nftw's visitor has no user data: the walk's running sum */

static int count_bytes(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path, (void)flag, (void)ftw;
    kept_bytes += (uint64_t)st->st_blocks * 512u; /* what the disk holds, sparse files counted */
    return 0;
}

/* Disk space the kept folder takes (the loop thread is not running yet: a plain walk). */
static uint64_t folder_bytes(const char *dir)
{
    kept_bytes = 0;
    (void)nftw(dir, count_bytes, KEPT_WALK_FDS, FTW_PHYS);
    return kept_bytes;
}

static int write_report(const char *aside_dir, json_t *report, char *errmsg)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", aside_dir, TANDEM_DIVERGENCE_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rv = json_dump_file(report, tmp, JSON_INDENT(2)) == 0 ? 0 : EIO;
    int fd = rv == 0 ? open(tmp, O_RDONLY | O_CLOEXEC) : -1;
    if (rv == 0 && (fd < 0 || fsync(fd) != 0 || rename(tmp, path) != 0)) {
        rv = errno != 0 ? errno : EIO;
    }
    if (fd >= 0) {
        close(fd);
    }
    int dir = open(aside_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        (void)fsync(dir);
        close(dir);
    }
    return rv == 0 ? 0 : tandem_error_from_errno(rv, errmsg, path);
}

static json_t *report_new(const struct tandem_divergence_self *self, const char *aside_dir,
                          uint64_t old_epoch, uint64_t new_epoch, json_t *info)
{
    char folder[PATH_MAX], now[TANDEM_RFC3339_LEN_MAX + 1];
    tandem_rfc3339_format(tandem_wall_ms(), now);
    if (realpath(aside_dir, folder) == NULL) {
        snprintf(folder, sizeof folder, "%s", aside_dir);
    }
    const char *by = json_string_value(json_object_get(info, "by"));
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "node", self->name, "site", self->site,
                     "created", now, "folder", folder, "old_epoch", (json_int_t)old_epoch,
                     "cluster_epoch", (json_int_t)new_epoch, "requested_by",
                     by != NULL ? by : "forced failover", "what_to_do", WHAT_TO_DO);
}

void tandem_divergence_write_cb(void *data, const char *aside_dir, uint64_t old_epoch,
                                uint64_t new_epoch)
{
    const struct tandem_divergence_self *self = data;
    char path[PATH_MAX], errmsg[TANDEM_ERRMSG_SIZE] = "";
    struct tandem_log_scan scan;
    snprintf(path, sizeof path, "%s/%s", aside_dir, TANDEM_RESEED_INFO_FILE);
    json_t *info = load_small_json(path);
    json_t *report = report_new(self, aside_dir, old_epoch, new_epoch, info);
    snprintf(path, sizeof path, "%s/raft", aside_dir);
    char scratch[PATH_MAX];
    snprintf(scratch, sizeof scratch, "%s/.scan", aside_dir);
    if (tandem_log_scan_load(path, scratch, &scan, errmsg) == 0) {
        report_log(report, &scan, json_object_get(info, "forced"), old_epoch);
        tandem_log_scan_free(&scan);
    } else {
        json_object_set_new(report, "error", json_string(errmsg));
        json_object_set_new(report, "fork", fork_unknown("the kept raft log could not be read"));
    }
    json_decref(info);
    json_object_set_new(report, "bytes_kept", json_integer((json_int_t)folder_bytes(aside_dir)));
    json_t *after = json_object_get(report, "entries_after_fork");
    if (write_report(aside_dir, report, errmsg) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "divergence report: %s (the old data is kept in %s)", errmsg,
                   aside_dir);
    } else {
        tandem_log(
            TANDEM_LOG_WARN,
            "re-seed: the old data is kept in %s with its divergence report (%" JSON_INTEGER_FORMAT
            " entries after the fork, fork %s); tandemd never deletes it",
            json_string_value(json_object_get(report, "folder")),
            json_is_integer(after) ? json_integer_value(after) : (json_int_t)-1,
            json_string_value(json_object_get(json_object_get(report, "fork"), "certainty")));
    }
    json_decref(report);
}

/* ---- listing ---- */

static json_t *report_read(const char *data_dir, const char *name)
{
    char path[PATH_MAX], folder[PATH_MAX];
    snprintf(folder, sizeof folder, "%s/%s", data_dir, name);
    snprintf(path, sizeof path, "%s/%s", folder, TANDEM_DIVERGENCE_FILE);
    json_t *report = load_small_json(path);
    if (json_is_object(report)) {
        return report;
    }
    json_decref(report);
    if (realpath(folder, path) == NULL) {
        snprintf(path, sizeof path, "%s", folder);
    }
    return json_pack("{s:s,s:s,s:s}", "folder", path, "name", name, "error",
                     "no readable divergence.json (the re-seed stopped before writing it?)");
}

/* Newest first: by "created", else by the folder name (which sorts by time within an epoch). */
static int report_cmp(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *cx = json_string_value(json_object_get(x, "created"));
    const char *cy = json_string_value(json_object_get(y, "created"));
    const char *fx = json_string_value(json_object_get(x, "folder"));
    const char *fy = json_string_value(json_object_get(y, "folder"));
    int c = strcmp(cy != NULL ? cy : "", cx != NULL ? cx : "");
    return c != 0 ? c : strcmp(fy != NULL ? fy : "", fx != NULL ? fx : "");
}

json_t *tandem_divergence_list(const char *data_dir)
{
    json_t *found[TANDEM_DIVERGENCE_REPORTS_MAX];
    size_t n = 0;
    DIR *d = opendir(data_dir);
    for (struct dirent *e = d != NULL ? readdir(d) : NULL;
         e != NULL && n < TANDEM_DIVERGENCE_REPORTS_MAX; e = readdir(d)) {
        if (strncmp(e->d_name, TANDEM_ASIDE_PREFIX, strlen(TANDEM_ASIDE_PREFIX)) == 0) {
            json_t *report = report_read(data_dir, e->d_name);
            if (report != NULL) {
                found[n++] = report;
            }
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    qsort(found, n, sizeof found[0], report_cmp);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(list, found[i]);
    }
    return list;
}
