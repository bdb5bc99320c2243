/* tandemctl job commands: create, get, list, the status and stage actions, operator and trace,
 * against /v1/jobs. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/output.h"

#define ID_ENCODED_MAX (TANDEM_CTL_VALUE_MAX * 3 + 1)
#define STAGES_MAX     16 /* the server's limit; more is refused there too */

/* "/v1/jobs/<encoded id><suffix>" into path. */
static int job_path(struct tandem_ctl_context *ctx, const char *id, const char *suffix, char *path,
                    size_t size)
{
    char encoded[ID_ENCODED_MAX];
    if (id[0] == '\0' || tandem_ctl_percent_encode(id, strlen(id), encoded, sizeof encoded) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "ID must be 1 to %d bytes",
                               TANDEM_CTL_VALUE_MAX);
    }
    snprintf(path, size, "/v1/jobs/%s%s", encoded, suffix);
    return TANDEM_CTL_OK;
}

/* Sets body[key] from integer flag --name when given. */
static int flag_integer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const char *name, json_t *body, const char *key)
{
    const char *text = tandem_ctl_args_flag(args, name);
    if (text == NULL) {
        return TANDEM_CTL_OK;
    }
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--%s: expected an integer, got '%s'", name,
                               text);
    }
    json_object_set_new(body, key, json_integer(value));
    return TANDEM_CTL_OK;
}

static void flag_string(const struct tandem_ctl_args *args, const char *name, json_t *body,
                        const char *key)
{
    const char *text = tandem_ctl_args_flag(args, name);
    if (text != NULL) {
        json_object_set_new(body, key, json_string(text));
    }
}

/* "a,b,c" into a JSON array of strings. */
static json_t *stages_split(const char *text)
{
    json_t *out = json_array();
    const char *p = text;
    for (size_t n = 0; out != NULL && n <= STAGES_MAX && *p != '\0'; n++) {
        size_t len = strcspn(p, ",");
        json_array_append_new(out, json_stringn(p, len));
        p += len + (p[len] == ',' ? 1 : 0);
    }
    return out;
}

/* The create body: --file's object (if any), then the positional fields and flags over it. */
static int job_create_body(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                           json_t **out)
{
    const char *file = tandem_ctl_args_flag(args, "file");
    json_error_t jerr;
    json_t *body = file != NULL ? json_load_file(file, 0, &jerr) : json_object();
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s", file ? file : "body",
                               body == NULL ? jerr.text : "not a JSON object");
    }
    if (args->positional_count != 3 && (file == NULL || args->positional_count != 0)) {
        json_decref(body);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "give CLIENT KIND SITE, or --file JOB.json");
    }
    if (args->positional_count == 3) {
        json_object_set_new(body, "client", json_string(args->positional[0]));
        json_object_set_new(body, "kind", json_string(args->positional[1]));
        json_object_set_new(body, "site", json_string(args->positional[2]));
    }
    flag_string(args, "id", body, "id");
    flag_string(args, "due", body, "due");
    flag_string(args, "operator", body, "operator");
    if (tandem_ctl_args_flag(args, "pinned") != NULL) {
        json_object_set_new(body, "pinned", json_true());
    }
    if (tandem_ctl_args_flag(args, "stages") != NULL) {
        json_object_set_new(body, "stages", stages_split(tandem_ctl_args_flag(args, "stages")));
    }
    int rc = flag_integer(ctx, args, "effort", body, "effort");
    if (rc == TANDEM_CTL_OK) {
        rc = flag_integer(ctx, args, "priority", body, "priority");
    }
    if (rc != TANDEM_CTL_OK) {
        json_decref(body);
        return rc;
    }
    *out = body;
    return TANDEM_CTL_OK;
}

/* "job J: stage scan, status in_progress" for people, the object for scripts. */
static int job_print_short(struct tandem_ctl_context *ctx, const char *what, json_t *job)
{
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        return tandem_ctl_print_json(ctx, job);
    }
    fprintf(ctx->out, "%sjob %s: stage %s, status %s\n", what,
            json_string_value(json_object_get(job, "id")),
            json_string_value(json_object_get(job, "stage")),
            json_string_value(json_object_get(job, "status")));
    return TANDEM_CTL_OK;
}

int tandem_ctl_job_create(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *body = NULL, *job = NULL;
    int rc = job_create_body(ctx, args, &body);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_json(ctx, "/v1/jobs", body, &job);
    }
    if (rc == TANDEM_CTL_OK) {
        rc = job_print_short(ctx, "created ", job);
    }
    json_decref(body);
    json_decref(job);
    return rc;
}

int tandem_ctl_job_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    bool local = tandem_ctl_args_flag(args, "local") != NULL;
    int rc =
        job_path(ctx, args->positional[0], local ? "?consistency=local" : "", path, sizeof path);
    return rc == TANDEM_CTL_OK ? tandem_ctl_get_print(ctx, path) : rc;
}

int tandem_ctl_job_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    static const char *const headers[] = {"ID",    "CLIENT",   "KIND",   "SITE",
                                          "STAGE", "STATUS",   "EFFORT", "DUE",
                                          "PRIO",  "OPERATOR", "PINNED", "BOXES"};
    static const char *const fields[] = {"id",       "client",   "kind",   "site",
                                         "stage",    "status",   "effort", "due",
                                         "priority", "operator", "pinned", "boxes"};
    static const char *const filters[] = {"site", "status", "client", "stage"};
    char base[TANDEM_CTL_URL_MAX] = "/v1/jobs";
    size_t limit;
    bool more = false;
    int rc = tandem_ctl_limit_flag(ctx, args, &limit);
    for (size_t i = 0; i < 4 && rc == TANDEM_CTL_OK; i++) {
        rc = tandem_ctl_query_append(ctx, base, sizeof base, filters[i],
                                     tandem_ctl_args_flag(args, filters[i]));
    }
    if (rc == TANDEM_CTL_OK && tandem_ctl_args_flag(args, "local") != NULL) {
        rc = tandem_ctl_query_append(ctx, base, sizeof base, "consistency", "local");
    }
    json_t *jobs = json_array();
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_page_all(ctx, base, "jobs", limit, jobs, &more);
    }
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = json_pack("{s:O,s:b}", "jobs", jobs, "more", more);
        rc = tandem_ctl_print_json(ctx, root);
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_objects_print(ctx, jobs, headers, fields, 12);
    }
    json_decref(jobs);
    return rc;
}

static int job_action(struct tandem_ctl_context *ctx, const char *id, const char *verb,
                      const json_t *body)
{
    char path[TANDEM_CTL_URL_MAX], suffix[32];
    json_t *job = NULL;
    snprintf(suffix, sizeof suffix, "/%s", verb);
    int rc = job_path(ctx, id, suffix, path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_json(ctx, path, body, &job);
    }
    if (rc == TANDEM_CTL_OK) {
        rc = job_print_short(ctx, "", job);
    }
    json_decref(job);
    return rc;
}

#define JOB_ACTION_HANDLER(fn, verb)                                                               \
    int fn(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)                     \
    {                                                                                              \
        return job_action(ctx, args->positional[0], verb, NULL);                                   \
    }
JOB_ACTION_HANDLER(tandem_ctl_job_advance, "advance")
JOB_ACTION_HANDLER(tandem_ctl_job_hold, "hold")
JOB_ACTION_HANDLER(tandem_ctl_job_resume, "resume")
JOB_ACTION_HANDLER(tandem_ctl_job_complete, "complete")
JOB_ACTION_HANDLER(tandem_ctl_job_cancel, "cancel")
JOB_ACTION_HANDLER(tandem_ctl_job_pin, "pin")
JOB_ACTION_HANDLER(tandem_ctl_job_unpin, "unpin")
#undef JOB_ACTION_HANDLER

int tandem_ctl_job_operator(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *body =
        json_pack("{s:o}", "operator",
                  args->positional_count > 1 ? json_string(args->positional[1]) : json_null());
    if (body == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "NAME must be UTF-8");
    }
    int rc = job_action(ctx, args->positional[0], "operator", body);
    json_decref(body);
    return rc;
}

int tandem_ctl_job_trace(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_trace_print(ctx, "job", args->positional[0]);
}
