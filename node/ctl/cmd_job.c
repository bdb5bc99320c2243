/* tandemctl job commands: create, get, list, the status and stage actions, operator and trace,
 * against /v1/jobs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/ctl.h"
#include "node/ctl/listing.h"

#define STAGES_MAX 16 /* the server's limit; more is refused there too */

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

/* "job J: stage scan, status in_progress", after prefix. */
static void job_line(struct tandem_ctl_context *ctx, const char *prefix, const json_t *job)
{
    fprintf(ctx->out, "%sjob %s: stage %s, status %s\n", prefix,
            json_string_value(json_object_get(job, "id")),
            json_string_value(json_object_get(job, "stage")),
            json_string_value(json_object_get(job, "status")));
}

static int job_created_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                             const json_t *job)
{
    (void)args;
    job_line(ctx, "created ", job);
    return TANDEM_CTL_OK;
}

static int job_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                     const json_t *job)
{
    (void)args;
    job_line(ctx, "", job);
    return TANDEM_CTL_OK;
}

int tandem_ctl_job_create(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *body = NULL;
    int rc = job_create_body(ctx, args, &body);
    return tandem_ctl_post_answer(ctx, args, rc, "/v1/jobs", body, job_created_print);
}

int tandem_ctl_job_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_item_show(ctx, args, "/v1/jobs");
}

int tandem_ctl_job_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    static const char *const filters[] = {"site", "status", "client", "stage", NULL};
    static const struct tandem_ctl_listing listing = {"jobs", filters, true, TANDEM_CTL_VIEW_JOBS};
    return tandem_ctl_list(ctx, args, "/v1/jobs", &listing);
}

int tandem_ctl_job_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    return tandem_ctl_item_action(ctx, args, "/v1/jobs", ctx->command->verb, NULL, job_print);
}

int tandem_ctl_job_operator(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *body =
        json_pack("{s:o}", "operator",
                  args->positional_count > 1 ? json_string(args->positional[1]) : json_null());
    if (body == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "NAME must be UTF-8");
    }
    int rc = tandem_ctl_item_action(ctx, args, "/v1/jobs", "operator", body, job_print);
    json_decref(body);
    return rc;
}
