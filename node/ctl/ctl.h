/* tandemctl's shared vocabulary: exit codes, parsed arguments, the command table and helpers
 * every command handler uses to call the API and report failure. */
#ifndef TANDEM_CTL_H
#define TANDEM_CTL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* Exit codes are the contract with scripts; --help prints this table. */
#define TANDEM_CTL_EXIT_CODES(X)                                                                   \
    X(TANDEM_CTL_OK, 0, "success")                                                                 \
    X(TANDEM_CTL_EREFUSED, 1, "the server refused the request (HTTP 4xx/5xx) or answered badly")   \
    X(TANDEM_CTL_EUSAGE, 2, "usage error")                                                         \
    X(TANDEM_CTL_EUNREACHABLE, 3, "no endpoint reachable")

#define TANDEM_CTL_EXIT_ENUM(name, value, text) name = value,
enum tandem_ctl_exit { TANDEM_CTL_EXIT_CODES(TANDEM_CTL_EXIT_ENUM) };
#undef TANDEM_CTL_EXIT_ENUM

#define TANDEM_CTL_ERRMSG_SIZE 256 /* one stderr line: "<what failed>: <reason>" */
#define TANDEM_CTL_WHAT_SIZE   128 /* "<noun> <verb> <first argument>" for error lines */
#define TANDEM_CTL_ARGS_MAX    16  /* positional arguments after noun and verb */
#define TANDEM_CTL_FLAGS_MAX   8   /* command flags such as --limit N */

enum tandem_ctl_output { TANDEM_CTL_OUTPUT_TABLE, TANDEM_CTL_OUTPUT_JSON };

struct tandem_ctl_flag {
    const char *name;  /* borrowed from argv; without the leading "--" and any "=value" */
    size_t name_len;   /* name is not NUL-terminated when the flag was given as --name=value */
    const char *value; /* borrowed from argv; "" for switches */
};

struct tandem_ctl_args {
    const char *positional[TANDEM_CTL_ARGS_MAX]; /* borrowed from argv */
    size_t positional_count;
    struct tandem_ctl_flag flags[TANDEM_CTL_FLAGS_MAX];
    size_t flag_count;
};

/* Returns the value of --name (or "" for a switch), NULL when the flag was not given. */
const char *tandem_ctl_args_flag(const struct tandem_ctl_args *args, const char *name);

struct tandem_ctl_client;
struct tandem_ctl_request;
struct tandem_ctl_response;

struct tandem_ctl_command;

struct tandem_ctl_context {
    const struct tandem_ctl_command *command; /* borrowed; the row being run */
    struct tandem_ctl_client *client;         /* borrowed */
    enum tandem_ctl_output output;
    FILE *out;                       /* borrowed; stdout */
    FILE *in;                        /* borrowed; stdin, for values given as "-" */
    long timeout_ms;                 /* per request attempt, from --timeout */
    char what[TANDEM_CTL_WHAT_SIZE]; /* the command being run, prefix of error lines */
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
};

typedef int (*tandem_ctl_handler)(struct tandem_ctl_context *ctx,
                                  const struct tandem_ctl_args *args);

/* One row per command; main.c parses, validates and dispatches from this table alone, and
 * --help is generated from it. */
struct tandem_ctl_command {
    const char *noun;
    const char *verb; /* NULL when the noun alone is the command (status) */
    /* Arguments and flags, e.g. "KEY [--limit N] [--local]". It is also the list of flags
     * the command accepts: "--name WORD" takes a value, "--name]" is a switch. */
    const char *synopsis;
    size_t args_min;
    size_t args_max;
    tandem_ctl_handler handler;
    const char *help; /* one line */
};

extern const struct tandem_ctl_command tandem_ctl_commands[];
extern const size_t tandem_ctl_command_count;

/* Formats "<ctx->what>: <reason>" into ctx->errmsg (control characters become spaces so the
 * message stays one line) and returns code. */
int tandem_ctl_fail(struct tandem_ctl_context *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends req with failover. Returns TANDEM_CTL_OK for a 2xx answer (resp filled); otherwise
 * fills ctx->errmsg and returns TANDEM_CTL_EREFUSED (HTTP error, with the server's "error"
 * and the status) or TANDEM_CTL_EUNREACHABLE. resp must be initialised; caller frees it. */
int tandem_ctl_call(struct tandem_ctl_context *ctx, const struct tandem_ctl_request *req,
                    struct tandem_ctl_response *resp);

/* tandem_ctl_call for JSON endpoints: on success *out is a new reference to the answer's
 * JSON object (caller decrefs). */
int tandem_ctl_call_json(struct tandem_ctl_context *ctx, const struct tandem_ctl_request *req,
                         json_t **out);

/* Prints value with 2-space indentation and a newline; returns an exit code. */
int tandem_ctl_print_json(struct tandem_ctl_context *ctx, const json_t *value);

/* Lets long server-side operations finish inside one attempt: raises the client's timeout to
 * at least ms. */
void tandem_ctl_timeout_at_least(struct tandem_ctl_context *ctx, long ms);

/* GETs path; *out as for tandem_ctl_call_json. With list not NULL the answer must hold an
 * array under that name (otherwise TANDEM_CTL_EREFUSED and *out is left alone). */
int tandem_ctl_get_json(struct tandem_ctl_context *ctx, const char *path, const char *list,
                        json_t **out);
/* POSTs body (borrowed; NULL: none) as JSON; *out as for tandem_ctl_call_json. */
int tandem_ctl_post_json(struct tandem_ctl_context *ctx, const char *path, const json_t *body,
                         json_t **out);
/* tandem_ctl_post_json for a body just packed from arguments: body is consumed, and NULL
 * (packing refuses text that is not UTF-8) is a usage error. */
int tandem_ctl_post_packed(struct tandem_ctl_context *ctx, const char *path, json_t *body,
                           json_t **out);

/* Prints an API answer for people (-o table); returns an exit code. */
typedef int tandem_ctl_answer_print(struct tandem_ctl_context *ctx,
                                    const struct tandem_ctl_args *args, const json_t *answer);
/* POSTs body (consumed; NULL: the arguments it was packed from were not UTF-8, a usage error)
 * to path when rc, the code of building it, is TANDEM_CTL_OK; then tandem_ctl_answer. */
int tandem_ctl_post_answer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                           int rc, const char *path, json_t *body, tandem_ctl_answer_print *print);
/* The end of most handlers: rc is the code of the call that produced answer (consumed, may be
 * NULL). When it is TANDEM_CTL_OK, prints answer as JSON (-o json) or through print. */
int tandem_ctl_answer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args, int rc,
                      json_t *answer, tandem_ctl_answer_print *print);

/* Domain commands (jobs, boxes, trace, sites) and their shared helpers. */
#define TANDEM_CTL_VALUE_MAX 128 /* bytes of an id or text value sent in a path or query */

/* "<collection>/<value, percent-encoded><suffix>" into path; what names the argument in the
 * usage error for an empty or too long value ("ID", "SITE"). */
int tandem_ctl_item_path(struct tandem_ctl_context *ctx, const char *collection, const char *what,
                         const char *value, const char *suffix, char *path, size_t size);
/* GETs <collection>/<ID> (this node's state with --local) and prints the object: a FIELD/VALUE
 * table, or JSON. */
int tandem_ctl_item_show(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                         const char *collection);
/* POSTs body (borrowed; NULL: none) to <collection>/<ID>/<verb> and prints the answer. */
int tandem_ctl_item_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                           const char *collection, const char *verb, const json_t *body,
                           tandem_ctl_answer_print *print);

/* Command handlers: cmd_backup.c (issue 14). */
int tandem_ctl_backup_create(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_backup_verify(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_backup_restore(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_cluster.c. */
int tandem_ctl_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_add(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* cmd_divergence.c */
int tandem_ctl_member_divergence(struct tandem_ctl_context *ctx,
                                 const struct tandem_ctl_args *args);
int tandem_ctl_member_remove(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_transfer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_rejoin(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* Command handler: cmd_release.c. */
int tandem_ctl_member_release(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_kv.c. */
int tandem_ctl_kv_put(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_del(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_cas(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_job.c. */
int tandem_ctl_job_create(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_job_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_job_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* advance, hold, ...: the verb of the command row, with no body. */
int tandem_ctl_job_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_job_operator(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_box.c. */
int tandem_ctl_box_checkin(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_box_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_box_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_box_pick(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_box_move(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* return, dispose: the verb of the command row, with no body. */
int tandem_ctl_box_action(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_trace.c. trace_show: trace job/box and job/box trace alike. */
int tandem_ctl_trace_show(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_trace_purge(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_key_rotate(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_key_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_trace_disposals(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_bcp.c. */
int tandem_ctl_bcp_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* backup list (node/ctl/cmd_site_backups.c) */
int tandem_ctl_backup_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_bcp_invoke(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_bcp_revoke(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_bcp_drill(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_bcp_drills(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_bcp_prefer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* cmd_audit.c */
int tandem_ctl_audit_tail(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_audit_show(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_audit_verify(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_audit_failures(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* cmd_events.c */
int tandem_ctl_bcp_events(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_bcp_incidents(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_site.c. */
int tandem_ctl_site_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* Users (cmd_user.c, issue 13). */
int tandem_ctl_user_add(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_user_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_user_roles(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_user_disable(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_user_delete(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_user_passwd(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* login --user NAME --password-stdin: keeps the token in $XDG_CONFIG_HOME/tandem/token (default
 * ~/.config/tandem/token; directory 0700, file 0600). */
int tandem_ctl_login(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
/* "Authorization: Bearer <token>" from $TANDEM_TOKEN or the token file into out; "" when
 * neither holds one. */
void tandem_ctl_token_load(char *out, size_t size);
int tandem_ctl_site_set_capacity(struct tandem_ctl_context *ctx,
                                 const struct tandem_ctl_args *args);
int tandem_ctl_site_capacity_history(struct tandem_ctl_context *ctx,
                                     const struct tandem_ctl_args *args);

/* Command handlers: cmd_rebalance.c. */
int tandem_ctl_rebalance_plan(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_rebalance_apply(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

#endif
