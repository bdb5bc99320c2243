/* tandemctl user add|list|roles|disable|delete|passwd: the users API (issue 13). Passwords are
 * read from stdin (--password-stdin), never from the command line, where ps would show them. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/output.h"

#define PASSWORD_MAX 1024 /* TANDEM_PASSWORD_LEN_MAX of the server */

/* One line of stdin (without its line end) into out; a usage error when there is none. */
static int password_read(struct tandem_ctl_context *ctx, const char *what, char *out, size_t size)
{
    if (fgets(out, (int)size, ctx->in) == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: nothing on stdin", what);
    }
    out[strcspn(out, "\r\n")] = '\0';
    if (out[0] == '\0') {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: empty line on stdin", what);
    }
    return TANDEM_CTL_OK;
}

static int need_stdin(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    if (tandem_ctl_args_flag(args, "password-stdin") == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE,
                               "give the password on stdin with --password-stdin");
    }
    return TANDEM_CTL_OK;
}

static int user_path(struct tandem_ctl_context *ctx, const char *name, const char *suffix,
                     char *path, size_t size)
{
    return tandem_ctl_item_path(ctx, "/v1/users", "NAME", name, suffix, path, size);
}

static int user_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                      const json_t *answer)
{
    (void)args;
    return tandem_ctl_object_print(ctx, answer);
}

/* NAME ROLES SITE STATE, one user a line. */
static int users_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                       const json_t *answer)
{
    size_t i;
    json_t *user;
    (void)args;
    fprintf(ctx->out, "%-24s %-40s %-10s %s\n", "NAME", "ROLES", "SITE", "STATE");
    json_array_foreach(json_object_get(answer, "users"), i, user)
    {
        char roles[256] = "";
        size_t j;
        json_t *role;
        json_array_foreach(json_object_get(user, "roles"), j, role)
        {
            size_t len = strlen(roles);
            snprintf(roles + len, sizeof roles - len, "%s%s", len > 0 ? "," : "",
                     json_string_value(role));
        }
        const char *state = json_is_true(json_object_get(user, "disabled")) ? "disabled"
                            : json_object_get(user, "locked_until") != NULL ? "locked"
                                                                            : "active";
        fprintf(ctx->out, "%-24s %-40s %-10s %s\n",
                json_string_value(json_object_get(user, "name")), roles,
                json_string_value(json_object_get(user, "site")), state);
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_user_add(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char password[PASSWORD_MAX + 2];
    const char *roles = tandem_ctl_args_flag(args, "roles");
    const char *site = tandem_ctl_args_flag(args, "site");
    json_t *answer = NULL;
    if (roles == NULL || site == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--roles and --site are required");
    }
    int rc = need_stdin(ctx, args);
    if (rc == TANDEM_CTL_OK) {
        rc = password_read(ctx, "password", password, sizeof password);
    }
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "name", args->positional[0], "roles", roles,
                             "site", site, "password", password);
    memset(password, 0, sizeof password);
    rc = tandem_ctl_post_packed(ctx, "/v1/users", body, &answer);
    return tandem_ctl_answer(ctx, args, rc, answer, user_print);
}

int tandem_ctl_user_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *answer = NULL;
    int rc = tandem_ctl_get_json(ctx, "/v1/users", "users", &answer);
    return tandem_ctl_answer(ctx, args, rc, answer, users_print);
}

int tandem_ctl_user_roles(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *answer = NULL;
    int rc = user_path(ctx, args->positional[0], "/roles", path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_packed(ctx, path, json_pack("{s:s}", "roles", args->positional[1]),
                                    &answer);
    }
    return tandem_ctl_answer(ctx, args, rc, answer, user_print);
}

int tandem_ctl_user_disable(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *answer = NULL;
    int rc = user_path(ctx, args->positional[0], "/disable", path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_post_json(ctx, path, NULL, &answer);
    }
    return tandem_ctl_answer(ctx, args, rc, answer, user_print);
}

int tandem_ctl_user_delete(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *answer = NULL;
    int rc = user_path(ctx, args->positional[0], "", path, sizeof path);
    if (rc == TANDEM_CTL_OK) {
        struct tandem_ctl_request req = {"DELETE", path, NULL, 0, NULL};
        rc = tandem_ctl_call_json(ctx, &req, &answer);
    }
    return tandem_ctl_answer(ctx, args, rc, answer, user_print);
}

/* passwd NAME --password-stdin: stdin holds the new password, or with --old the old one on the
 * first line and the new one on the second (changing one's own). */
int tandem_ctl_user_passwd(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char old[PASSWORD_MAX + 2] = "", new_password[PASSWORD_MAX + 2];
    char path[TANDEM_CTL_URL_MAX];
    json_t *answer = NULL, *body;
    bool with_old = tandem_ctl_args_flag(args, "old") != NULL;
    int rc = need_stdin(ctx, args);
    if (rc == TANDEM_CTL_OK && with_old) {
        rc = password_read(ctx, "old password", old, sizeof old);
    }
    if (rc == TANDEM_CTL_OK) {
        rc = password_read(ctx, "new password", new_password, sizeof new_password);
    }
    if (rc == TANDEM_CTL_OK) {
        rc = user_path(ctx, args->positional[0], "/password", path, sizeof path);
    }
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    body = with_old ? json_pack("{s:s,s:s}", "old_password", old, "new_password", new_password)
                    : json_pack("{s:s}", "new_password", new_password);
    memset(old, 0, sizeof old);
    memset(new_password, 0, sizeof new_password);
    rc = tandem_ctl_post_packed(ctx, path, body, &answer);
    return tandem_ctl_answer(ctx, args, rc, answer, user_print);
}
