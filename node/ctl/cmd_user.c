/* tandemctl user add|list|roles|disable|delete|passwd: the users API (issue 13). Passwords are
 * read from stdin (--password-stdin), never from the command line, where ps would show them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    int rc = user_path(ctx, args->positional[0], "/roles", path, sizeof path);
    return tandem_ctl_post_answer(ctx, args, rc, path,
                                  json_pack("{s:s}", "roles", args->positional[1]), user_print);
}

int tandem_ctl_user_disable(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    int rc = user_path(ctx, args->positional[0], "/disable", path, sizeof path);
    return tandem_ctl_post_answer(ctx, args, rc, path, json_object(), user_print);
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

#define TOKEN_MAX 256 /* TANDEM_TOKEN_LEN_MAX of the server */

/* $XDG_CONFIG_HOME/tandem (or ~/.config/tandem) into dir; -1 when neither is set. */
static int token_dir(char *dir, size_t size)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n = xdg != NULL && xdg[0] != '\0' ? snprintf(dir, size, "%s/tandem", xdg)
            : home != NULL                ? snprintf(dir, size, "%s/.config/tandem", home)
                                          : -1;
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

void tandem_ctl_token_load(char *out, size_t size)
{
    char dir[PATH_MAX], path[PATH_MAX + 8], token[TOKEN_MAX + 2] = "";
    const char *env = getenv("TANDEM_TOKEN");
    out[0] = '\0';
    if (env != NULL && env[0] != '\0') {
        snprintf(token, sizeof token, "%s", env);
    } else if (token_dir(dir, sizeof dir) == 0) {
        snprintf(path, sizeof path, "%s/token", dir);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            if (fgets(token, sizeof token, f) == NULL) {
                token[0] = '\0';
            }
            fclose(f);
        }
    }
    token[strcspn(token, "\r\n")] = '\0';
    if (token[0] != '\0' && strlen(token) <= TOKEN_MAX) {
        snprintf(out, size, "Authorization: Bearer %s", token);
    }
}

/* Writes token to the token file: directory 0700, file 0600, replaced whole. */
static int token_save(struct tandem_ctl_context *ctx, const char *token)
{
    char dir[PATH_MAX], path[PATH_MAX + 8], tmp[PATH_MAX + 16];
    if (token_dir(dir, sizeof dir) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "neither XDG_CONFIG_HOME nor HOME is set");
    }
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        (void)mkdir(parent, 0700); /* ~/.config: exists or is made; errors show below */
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s: %s", dir, strerror(errno));
    }
    (void)chmod(dir, 0700);
    snprintf(path, sizeof path, "%s/token", dir);
    snprintf(tmp, sizeof tmp, "%s/token.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s: %s", tmp, strerror(errno));
    }
    size_t len = strlen(token);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, token, len) == (ssize_t)len &&
              write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok && rename(tmp, path) == 0;
    if (!ok) {
        int saved = errno;
        (void)unlink(tmp);
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s: %s", path, strerror(saved));
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_login(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char password[PASSWORD_MAX + 2];
    const char *user = tandem_ctl_args_flag(args, "user");
    json_t *answer = NULL;
    if (user == NULL || user[0] == '\0') {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--user NAME is required");
    }
    int rc = need_stdin(ctx, args);
    if (rc == TANDEM_CTL_OK) {
        rc = password_read(ctx, "password", password, sizeof password);
    }
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *body = json_pack("{s:s,s:s}", "user", user, "password", password);
    memset(password, 0, sizeof password);
    rc = tandem_ctl_post_packed(ctx, "/v1/auth/login", body, &answer);
    const char *token = json_string_value(json_object_get(answer, "token"));
    if (rc == TANDEM_CTL_OK && token == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "the server answered no token");
    }
    if (rc == TANDEM_CTL_OK) {
        rc = token_save(ctx, token);
    }
    if (rc == TANDEM_CTL_OK) {
        fprintf(ctx->out, "logged in as %s until %s\n", user,
                json_string_value(json_object_get(answer, "expires")));
    }
    json_decref(answer);
    return rc;
}
