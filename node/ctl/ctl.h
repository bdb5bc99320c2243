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

struct tandem_ctl_context {
    struct tandem_ctl_client *client; /* borrowed */
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
    const char *verb;     /* NULL when the noun alone is the command (status) */
    const char *synopsis; /* arguments and flags, e.g. "KEY [--local]" */
    size_t args_min;
    size_t args_max;
    const char *flags; /* accepted command flags, space-separated; "name=" takes a value */
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

/* Command handlers: cmd_cluster.c. */
int tandem_ctl_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_add(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_remove(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_member_transfer(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

/* Command handlers: cmd_kv.c. */
int tandem_ctl_kv_put(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_del(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);
int tandem_ctl_kv_cas(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args);

#endif
