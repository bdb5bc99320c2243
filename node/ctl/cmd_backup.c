/* tandemctl backup commands (issue 14): create (POST /v1/backups; with --out the file is streamed
 * from POST /v1/backups/download into FILE and checked: node/ctl/backup_download.h), verify FILE
 * --level 1|2|3 and restore FILE --data-dir DIR --name N, which work on local files with
 * storage/backup.h (level 3 starts a scratch tandemd: node/ctl/backup_local.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/ctl/backup_download.h"
#include "node/ctl/backup_local.h"
#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "replication/identity/backup_keys.h"
#include "storage/backup.h"
#include "storage/backup_file.h"
#include "storage/error.h"

#define CREATE_TIMEOUT_MS (60L * 60 * 1000) /* a backup of a large state takes minutes */

/* The manifest's main facts, one "field value" line each, after a first line. */
static void manifest_lines(FILE *out, const json_t *m)
{
    static const char *const texts[] = {"cluster_id", "node", "site", "created", "state_digest"};
    static const char *const numbers[] = {"applied_index", "term", "epoch"};
    const json_t *counts = json_object_get(m, "counts");
    const char *key;
    const json_t *value;
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        fprintf(out, "  %-14s %" JSON_INTEGER_FORMAT "\n", numbers[i],
                json_integer_value(json_object_get(m, numbers[i])));
    }
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        fprintf(out, "  %-14s %s\n", texts[i], json_string_value(json_object_get(m, texts[i])));
    }
    json_object_foreach((json_t *)counts, key, value)
    {
        fprintf(out, "  %-14s %" JSON_INTEGER_FORMAT "\n", key, json_integer_value(value));
    }
    fprintf(out, "  %-14s %s\n", "sealed",
            json_is_true(json_object_get(m, "encrypted")) ? "yes" : "no");
}

static int created_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                         const json_t *answer)
{
    const char *out = tandem_ctl_args_flag(args, "out");
    fprintf(ctx->out, "backup %s %s %s (%" JSON_INTEGER_FORMAT " bytes)%s%s%s\n",
            json_string_value(json_object_get(answer, "name")), out != NULL ? "taken by" : "on",
            json_string_value(json_object_get(answer, "node")),
            json_integer_value(json_object_get(answer, "bytes")), out != NULL ? ", saved to " : "",
            out != NULL ? out : "", out != NULL ? " (checked: level 1)" : "");
    manifest_lines(ctx->out, json_object_get(answer, "manifest"));
    return TANDEM_CTL_OK;
}

/* Sends the backup to the leader first when an endpoint is the leader: a follower would forward
 * it and give up after its forward_timeout_ms, while a large backup takes longer. Best effort:
 * without an answer the endpoints are tried in order as usual. */
static void leader_prefer(struct tandem_ctl_context *ctx)
{
    json_t *status = NULL;
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
    memcpy(errmsg, ctx->errmsg, sizeof errmsg);
    if (tandem_ctl_get_json(ctx, "/v1/status", NULL, &status) == TANDEM_CTL_OK) {
        const char *api =
            json_string_value(json_object_get(json_object_get(status, "leader"), "api"));
        if (api != NULL) {
            tandem_ctl_client_prefer(ctx->client, api);
        }
    }
    json_decref(status);
    memcpy(ctx->errmsg, errmsg, sizeof errmsg); /* a failed look is no failure of the command */
}

int tandem_ctl_backup_create(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *out = tandem_ctl_args_flag(args, "out");
    json_t *answer = NULL, *body = json_object();
    if (out != NULL && (out[0] == '\0' || access(out, F_OK) == 0)) {
        json_decref(body);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--out %s: %s", out,
                               out[0] == '\0' ? "needs a file name" : "the file exists");
    }
    leader_prefer(ctx);
    tandem_ctl_timeout_at_least(ctx, CREATE_TIMEOUT_MS);
    /* With --out the file comes in the answer itself and is not kept on the node. */
    int rc = out != NULL ? tandem_ctl_backup_download(ctx, out, &answer)
                         : tandem_ctl_post_json(ctx, "/v1/backups", body, &answer);
    json_decref(body);
    if (rc != TANDEM_CTL_OK) {
        json_decref(answer);
        return rc;
    }
    return tandem_ctl_answer(ctx, args, rc, answer, created_print);
}

/* --key-file into keys (none without the flag). */
static int keys_load(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                     struct tandem_backup_key *keys, unsigned *n)
{
    const char *path = tandem_ctl_args_flag(args, "key-file");
    char errmsg[TANDEM_ERRMSG_SIZE];
    *n = 0;
    if (path != NULL && tandem_backup_keys_load(path, keys, n, errmsg) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--key-file: %s", errmsg);
    }
    return TANDEM_CTL_OK;
}

static int verified_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                          const json_t *answer)
{
    (void)args;
    fprintf(ctx->out, "%s: level %" JSON_INTEGER_FORMAT " passed\n",
            json_string_value(json_object_get(answer, "file")),
            json_integer_value(json_object_get(answer, "level")));
    manifest_lines(ctx->out, json_object_get(answer, "manifest"));
    return TANDEM_CTL_OK;
}

int tandem_ctl_backup_verify(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *level_text = tandem_ctl_args_flag(args, "level");
    struct tandem_backup_key keys[TANDEM_BACKUP_KEYS_MAX];
    struct tandem_backup_manifest m;
    unsigned n_keys = 0;
    int level = level_text == NULL ? 1 : atoi(level_text);
    if (level < 1 || level > 3 || (level_text != NULL && strlen(level_text) != 1)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--level must be 1, 2 or 3");
    }
    int rc = keys_load(ctx, args, keys, &n_keys);
    if (rc == TANDEM_CTL_OK) {
        struct tandem_ctl_backup_check check = {
            .file = args->positional[0],
            .level = level,
            .keys = keys,
            .n_keys = n_keys,
            .scratch = tandem_ctl_args_flag(args, "scratch"),
            .tandemd = tandem_ctl_args_flag(args, "tandemd"),
        };
        rc = tandem_ctl_backup_check(ctx, &check, &m);
    }
    OPENSSL_cleanse(keys, sizeof keys);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *answer = json_pack("{s:s,s:i,s:b,s:o}", "file", args->positional[0], "level", level,
                               "ok", 1, "manifest", tandem_backup_manifest_json(&m));
    return tandem_ctl_answer(ctx, args, rc, answer, verified_print);
}

static int restored_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                          const json_t *answer)
{
    const char *name = json_string_value(json_object_get(answer, "name"));
    const char *cluster_id = json_string_value(json_object_get(answer, "cluster_id"));
    const json_t *pdata = json_object_get(answer, "personal_data");
    const json_t *pit = json_object_get(answer, "point_in_time");
    (void)args;
    fprintf(ctx->out, "restored %s into %s at index %" JSON_INTEGER_FORMAT "\n",
            json_string_value(json_object_get(answer, "file")),
            json_string_value(json_object_get(answer, "data_dir")),
            json_integer_value(json_object_get(answer, "applied_index")));
    if (pit != NULL) {
        fprintf(ctx->out,
                "point in time: backup at index %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                " entries replayed to index %" JSON_INTEGER_FORMAT
                ", state_digest %s, data_digest %s\n",
                json_integer_value(json_object_get(pit, "backup_index")),
                json_integer_value(json_object_get(pit, "entries_applied")),
                json_integer_value(json_object_get(pit, "to_index")),
                json_string_value(json_object_get(pit, "state_digest")),
                json_string_value(json_object_get(pit, "data_digest")));
    }
    /* What the operator does next: the directory refuses any other name or cluster id. */
    fprintf(ctx->out,
            "start tandemd there with name = %s and cluster_id = %s (a single voter unless its "
            "configuration lists members)\n",
            name, cluster_id);
    json_int_t sealed = json_integer_value(json_object_get(pdata, "sealed"));
    if (sealed > 0 && !json_is_true(json_object_get(pdata, "checked"))) {
        fprintf(ctx->out,
                "%" JSON_INTEGER_FORMAT " personal-data values are sealed under the old "
                "cluster's key_file: give the new nodes a key_file holding those keys (check it "
                "with --data-key-file)\n",
                sealed);
    } else if (sealed > 0) {
        fprintf(ctx->out, "all %" JSON_INTEGER_FORMAT " personal-data values open with %s\n",
                sealed, tandem_ctl_args_flag(args, "data-key-file"));
    }
    return TANDEM_CTL_OK;
}

static json_t *pdata_json(const struct tandem_ctl_restore_pdata *p)
{
    json_t *ids = json_array();
    for (unsigned i = 0; i < p->n_key_ids; i++) {
        json_array_append_new(ids, json_integer((json_int_t)p->key_ids[i]));
    }
    return json_pack("{s:I,s:I,s:b,s:o}", "sealed", (json_int_t)p->sealed, "opened",
                     (json_int_t)p->opened, "checked", p->checked, "key_ids", ids);
}

/* --to-index N with --log-dir DIR, both or neither. */
static int point_in_time_flags(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                               struct tandem_ctl_backup_restore *restore)
{
    const char *text = tandem_ctl_args_flag(args, "to-index");
    restore->log_dir = tandem_ctl_args_flag(args, "log-dir");
    if ((text == NULL) != (restore->log_dir == NULL)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "--to-index N and --log-dir DIR go together (the log that "
                               "carries the backup on to index N)");
    }
    if (text == NULL) {
        return TANDEM_CTL_OK;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || n == 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "--to-index: expected a raft index, got '%s'", text);
    }
    restore->to_index = n;
    return TANDEM_CTL_OK;
}

/* The point-in-time part of a restore's answer. */
static json_t *replayed_json(const struct tandem_ctl_backup_replayed *r, uint64_t to_index)
{
    char state[2 * TANDEM_DIGEST_LEN + 1], data[2 * TANDEM_DIGEST_LEN + 1];
    tandem_digest_hex(r->state.state_digest, state);
    tandem_digest_hex(r->state.data_digest, data);
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:s,s:s,s:{s:I,s:I,s:I,s:I}}", "to_index",
                     (json_int_t)to_index, "backup_index", (json_int_t)r->replay.backup_index,
                     "state_index", (json_int_t)r->replay.state_index, "term",
                     (json_int_t)r->state.term, "entries_applied",
                     (json_int_t)r->replay.entries_applied, "state_digest", state, "data_digest",
                     data, "counts", "keys", (json_int_t)r->state.counts.keys, "jobs",
                     (json_int_t)r->state.counts.jobs, "boxes", (json_int_t)r->state.counts.boxes,
                     "trace_events", (json_int_t)r->state.counts.trace_events);
}

int tandem_ctl_backup_restore(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    struct tandem_ctl_backup_replayed replayed;
    struct tandem_backup_key keys[TANDEM_BACKUP_KEYS_MAX];
    struct tandem_backup_manifest m;
    struct tandem_ctl_restore_pdata pdata;
    char cluster_id[TANDEM_BACKUP_LABEL_LEN_MAX + 1];
    unsigned n_keys = 0;
    struct tandem_ctl_backup_restore restore = {
        .file = args->positional[0],
        .data_dir = tandem_ctl_args_flag(args, "data-dir"),
        .name = tandem_ctl_args_flag(args, "name"),
        .cluster_id = tandem_ctl_args_flag(args, "new-cluster-id"),
        .data_key_file = tandem_ctl_args_flag(args, "data-key-file"),
    };
    if (restore.data_dir == NULL || restore.name == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--data-dir DIR and --name NAME are needed");
    }
    restore.replayed = &replayed;
    int rc = point_in_time_flags(ctx, args, &restore);
    rc = rc != TANDEM_CTL_OK ? rc : keys_load(ctx, args, keys, &n_keys);
    restore.keys = keys;
    restore.n_keys = n_keys;
    rc = rc != TANDEM_CTL_OK ? rc
                             : tandem_ctl_backup_restore_dir(ctx, &restore, &m, cluster_id, &pdata);
    OPENSSL_cleanse(keys, sizeof keys);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *answer = json_pack(
        "{s:s,s:s,s:s,s:s,s:I,s:o,s:o}", "file", restore.file, "data_dir", restore.data_dir, "name",
        restore.name, "cluster_id", cluster_id, "applied_index",
        (json_int_t)(restore.log_dir != NULL ? replayed.state.applied_index : m.applied_index),
        "manifest", tandem_backup_manifest_json(&m), "personal_data", pdata_json(&pdata));
    if (answer != NULL && restore.log_dir != NULL) {
        json_object_set_new(answer, "point_in_time", replayed_json(&replayed, restore.to_index));
    }
    return tandem_ctl_answer(ctx, args, rc, answer, restored_print);
}
