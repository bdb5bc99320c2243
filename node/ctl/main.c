/* tandemctl entry point: global options, command lookup in the table, usage and dispatch. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/help_formats.h"
#include "node/ctl/tls.h"

#define TIMEOUT_S_DEFAULT ((double)TANDEM_CTL_TIMEOUT_S_DEFAULT)
#define TIMEOUT_S_MAX     3600.0 /* longer waits are a typo */
#define ENDPOINTS_ENV     TANDEM_CTL_ENDPOINTS_ENV

struct options {
    const char *endpoints;     /* borrowed from argv or the environment; NULL when not given */
    struct tandem_ctl_tls tls; /* from the flags only; the environment fills the gaps later */
    enum tandem_ctl_output output;
    double timeout_s;
    bool help;
    const struct tandem_ctl_command *command; /* borrowed; row of the table */
    const char *noun;                         /* borrowed; first word, even if no row matched */
    struct tandem_ctl_args args;
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
};

/* "kv put" and, with synopsis, "kv put KEY VALUE". */
static void command_words(const struct tandem_ctl_command *c, bool synopsis, char *out, size_t size)
{
    bool with = synopsis && c->synopsis[0] != '\0';
    snprintf(out, size, "%s%s%s%s%s", c->noun, c->verb ? " " : "", c->verb ? c->verb : "",
             with ? " " : "", with ? c->synopsis : "");
}

static void print_command_usage(FILE *out, const struct tandem_ctl_command *c)
{
    char words[64];
    command_words(c, false, words, sizeof(words));
    if (c->synopsis[0] != '\0') {
        fprintf(out, "  %-22s %s\n", words, c->synopsis);
    } else {
        fprintf(out, "  %s\n", words);
    }
    fprintf(out, "  %-22s %s\n", "", c->help);
}

static void print_usage(FILE *out, const char *noun)
{
    fprintf(out, "usage: tandemctl [-e URL,...] [--cacert FILE] [--cert FILE --key FILE] "
                 "[-o table|json] [--timeout SECONDS] <command> [args]\n\n"
                 "options:\n");
    for (size_t i = 0; i < tandem_ctl_global_option_count; i++) {
        const struct tandem_ctl_global_option *g = &tandem_ctl_global_options[i];
        char words[64];
        snprintf(words, sizeof words, "%s%s%s", g->flags, g->value ? " " : "",
                 g->value ? g->value : "");
        fprintf(out, "  %-25s%s\n", words, g->help);
    }
    fprintf(out, "\ncommands:\n");
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        if (noun == NULL || strcmp(noun, tandem_ctl_commands[i].noun) == 0) {
            print_command_usage(out, &tandem_ctl_commands[i]);
        }
    }
    fprintf(out, "\nexit codes:\n");
#define PRINT_EXIT_CODE(name, value, text) fprintf(out, "  %d  %s\n", value, text);
    TANDEM_CTL_EXIT_CODES(PRINT_EXIT_CODE)
#undef PRINT_EXIT_CODE
}

static bool noun_known(const char *noun)
{
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        if (strcmp(tandem_ctl_commands[i].noun, noun) == 0) {
            return true;
        }
    }
    return false;
}

/* Finds the row for noun (and verb, which may be NULL). */
static const struct tandem_ctl_command *command_find(const char *noun, const char *verb)
{
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        const struct tandem_ctl_command *c = &tandem_ctl_commands[i];
        if (strcmp(c->noun, noun) != 0) {
            continue;
        }
        if (c->verb == NULL || (verb != NULL && strcmp(c->verb, verb) == 0)) {
            return c;
        }
    }
    return NULL;
}

/* Lists noun's verbs, "a, b, c", into out. */
static void noun_verbs(const char *noun, char *out, size_t out_size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < tandem_ctl_command_count && o < out_size; i++) {
        const struct tandem_ctl_command *c = &tandem_ctl_commands[i];
        if (strcmp(c->noun, noun) == 0 && c->verb != NULL) {
            int n = snprintf(out + o, out_size - o, "%s%s", o ? ", " : "", c->verb);
            o += n > 0 ? (size_t)n : 0;
        }
    }
}

/* Fills o->errmsg with one line ending in a pointer to the right --help. */
static int usage_error(struct options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(struct options *o, const char *fmt, ...)
{
    char hint[64] = "tandemctl --help";
    /* Room is left for the hint, which must survive any reason. */
    char reason[TANDEM_CTL_ERRMSG_SIZE - sizeof(hint) - 16];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (o->command != NULL) {
        snprintf(hint, sizeof(hint), "tandemctl %s%s%s --help", o->command->noun,
                 o->command->verb ? " " : "", o->command->verb ? o->command->verb : "");
    } else if (o->noun != NULL && noun_known(o->noun)) {
        snprintf(hint, sizeof(hint), "tandemctl %s --help", o->noun);
    }
    snprintf(o->errmsg, sizeof(o->errmsg), "%s; see '%s'", reason, hint);
    return TANDEM_CTL_EUSAGE;
}

/* Value of an option given as "-x VALUE", "--name VALUE" or "--name=VALUE"; advances *i past
 * a separate value. NULL when the value is missing. */
static const char *option_value(int argc, char **argv, int *i, const char *eq)
{
    if (eq != NULL) {
        return eq + 1;
    }
    if (*i + 1 >= argc) {
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

static int parse_output(struct options *o, const char *value)
{
    if (value != NULL && strcmp(value, "table") == 0) {
        o->output = TANDEM_CTL_OUTPUT_TABLE;
    } else if (value != NULL && strcmp(value, "json") == 0) {
        o->output = TANDEM_CTL_OUTPUT_JSON;
    } else {
        return usage_error(o, "-o: expected table or json, got '%s'", value ? value : "");
    }
    return 0;
}

static int parse_timeout(struct options *o, const char *value)
{
    char *end = NULL;
    errno = 0;
    double t = value != NULL ? strtod(value, &end) : 0.0;
    if (value == NULL || end == value || *end != '\0' || errno != 0 ||
        !(t > 0.0 && t <= TIMEOUT_S_MAX)) { /* written so NaN fails too */
        return usage_error(o, "--timeout: expected seconds in (0, %.0f], got '%s'", TIMEOUT_S_MAX,
                           value ? value : "");
    }
    o->timeout_s = t;
    return 0;
}

/* Handles argv[*i] if it is a global option: returns 0 when handled, -1 when it is not a
 * global option, else a usage exit code. */
static int parse_global(struct options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
#define OPTION_IS(name) (len == strlen(name) && strncmp(a, name, len) == 0)
    bool help = OPTION_IS("-h") || OPTION_IS("--help");
    bool endpoints = OPTION_IS("-e") || OPTION_IS("--endpoints");
    bool output = OPTION_IS("-o") || OPTION_IS("--output");
    bool timeout = OPTION_IS("--timeout");
    const char **tls = OPTION_IS("--cacert") ? &o->tls.cacert
                       : OPTION_IS("--cert") ? &o->tls.cert
                       : OPTION_IS("--key")  ? &o->tls.key
                                             : NULL;
#undef OPTION_IS
    if (help) {
        o->help = true;
        return eq == NULL ? 0 : usage_error(o, "--help takes no value");
    }
    if (!endpoints && !output && !timeout && tls == NULL) {
        return -1;
    }
    const char *value = option_value(argc, argv, i, eq);
    if (value == NULL) {
        return usage_error(o, "%.*s: missing value", (int)len, a);
    }
    if (endpoints) {
        o->endpoints = value;
        return 0;
    }
    if (tls != NULL) {
        *tls = value;
        return 0;
    }
    return output ? parse_output(o, value) : parse_timeout(o, value);
}

/* Looks --name up in the command's synopsis, which writes every flag the command accepts;
 * *takes_value tells whether a value word follows it there ("[--limit N]", not "[--local]"). */
static bool command_flag_known(const struct tandem_ctl_command *c, const char *name, size_t len,
                               bool *takes_value)
{
    for (const char *p = strstr(c->synopsis, "--"); p != NULL; p = strstr(p + 2, "--")) {
        const char *flag = p + 2;
        size_t n = strcspn(flag, " ]");
        if (n == len && strncmp(flag, name, len) == 0) {
            *takes_value = flag[n] == ' ' && flag[n + 1] != '[' && flag[n + 1] != '|';
            return true;
        }
    }
    return false;
}

static int parse_command_flag(struct options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    bool takes_value = false;

    if (o->command == NULL || strncmp(a, "--", 2) != 0) {
        return usage_error(o, "unknown option '%s'", a);
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    if (!command_flag_known(o->command, name, len, &takes_value)) {
        return usage_error(o, "unknown option '--%.*s'", (int)len, name);
    }
    if (o->args.flag_count == TANDEM_CTL_FLAGS_MAX) {
        return usage_error(o, "more than %d options", TANDEM_CTL_FLAGS_MAX);
    }
    const char *value = "";
    if (takes_value) {
        value = option_value(argc, argv, i, eq);
        if (value == NULL) {
            return usage_error(o, "--%.*s: missing value", (int)len, name);
        }
    } else if (eq != NULL) {
        return usage_error(o, "--%.*s takes no value", (int)len, name);
    }
    struct tandem_ctl_flag *f = &o->args.flags[o->args.flag_count++];
    f->name = name;
    f->name_len = len;
    f->value = value;
    return 0;
}

/* A non-option word: the noun, the verb, or a positional argument of the command. */
static int parse_word(struct options *o, const char *word)
{
    if (o->command != NULL) {
        if (o->args.positional_count == TANDEM_CTL_ARGS_MAX) {
            return usage_error(o, "more than %d arguments", TANDEM_CTL_ARGS_MAX);
        }
        o->args.positional[o->args.positional_count++] = word;
        return 0;
    }
    if (o->noun == NULL) {
        o->noun = word;
        if (!noun_known(word)) {
            return usage_error(o, "unknown command '%s'", word);
        }
        o->command = command_find(word, NULL);
        return 0;
    }
    o->command = command_find(o->noun, word);
    if (o->command == NULL) {
        return usage_error(o, "unknown command '%s %s'", o->noun, word);
    }
    return 0;
}

static int parse_argv(struct options *o, int argc, char **argv)
{
    bool options_done = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || a[0] != '-' || a[1] == '\0') {
            rc = parse_word(o, a);
        } else {
            rc = parse_global(o, argc, argv, &i);
            if (rc < 0) {
                rc = parse_command_flag(o, argc, argv, &i);
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Checks what the table says about the parsed words; help has been handled already. */
static int check_command(struct options *o)
{
    char verbs[256];

    if (o->noun == NULL) {
        return usage_error(o, "missing command");
    }
    if (o->command == NULL) {
        noun_verbs(o->noun, verbs, sizeof(verbs));
        return usage_error(o, "%s: missing subcommand (%s)", o->noun, verbs);
    }
    const struct tandem_ctl_command *c = o->command;
    size_t n = o->args.positional_count;
    if (n < c->args_min || n > c->args_max) {
        char words[64];
        char usage[160];
        command_words(c, false, words, sizeof(words));
        command_words(c, true, usage, sizeof(usage));
        return usage_error(o, "%s: %s arguments (usage: %s)", words,
                           n < c->args_min ? "missing" : "too many", usage);
    }
    return 0;
}

/* "<noun> <verb> <first argument>": the prefix of every error line. */
static void context_what(const struct options *o, char *what, size_t size)
{
    const struct tandem_ctl_command *c = o->command;
    char first[64] = "";

    if (o->args.positional_count > 0) {
        const char *a = o->args.positional[0];
        first[0] = ' ';
        tandem_ctl_escape((const unsigned char *)a, strlen(a), 48, first + 1, sizeof(first) - 1);
    }
    snprintf(what, size, "%s%s%s%s", c->noun, c->verb ? " " : "", c->verb ? c->verb : "", first);
}

/* Commands that work on local files only (backup verify and restore) and need no endpoint. */
static bool command_offline(const struct tandem_ctl_command *c)
{
    return c->handler == tandem_ctl_backup_verify || c->handler == tandem_ctl_backup_restore;
}

static int run(const struct options *o)
{
    struct tandem_ctl_client client;
    struct tandem_ctl_context ctx;
    const char *endpoints = o->endpoints ? o->endpoints : getenv(ENDPOINTS_ENV);
    /* Rounded up by hand: tandemctl does not link libm. */
    long timeout_ms = (long)(o->timeout_s * 1000.0 + 0.999);

    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
    if (tandem_ctl_tls_set(&o->tls, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "tandemctl: %s\n", errmsg);
        return TANDEM_CTL_EUSAGE;
    }
    if (tandem_ctl_client_init(&client, endpoints ? endpoints : "", timeout_ms) != 0) {
        if (!command_offline(o->command)) {
            fprintf(stderr, "tandemctl: %s\n", client.errmsg);
            return TANDEM_CTL_EUSAGE;
        }
        memset(&client, 0, sizeof client); /* local files only: no endpoint is called */
    }
    if (o->tls.cert == NULL && getenv("TANDEM_CERT") == NULL) {
        tandem_ctl_token_load(client.authorization, sizeof client.authorization);
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.command = o->command;
    ctx.client = &client;
    ctx.output = o->output;
    ctx.out = stdout;
    ctx.in = stdin;
    ctx.timeout_ms = timeout_ms;
    context_what(o, ctx.what, sizeof(ctx.what));

    int rc = o->command->handler(&ctx, &o->args);
    if (fflush(stdout) != 0 && rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_fail(&ctx, TANDEM_CTL_EREFUSED, "writing output: %s", strerror(errno));
    }
    if (rc != TANDEM_CTL_OK) {
        fprintf(stderr, "tandemctl: %s\n", ctx.errmsg[0] ? ctx.errmsg : ctx.what);
    }
    tandem_ctl_client_close(&client);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;

    if (argc == 2 && strcmp(argv[1], "--help-markdown") == 0) { /* the man page's source */
        return tandem_ctl_print_markdown(stdout) == 0 && fflush(stdout) == 0 ? TANDEM_CTL_OK
                                                                             : TANDEM_CTL_EREFUSED;
    }
    if (argc == 2 && strcmp(argv[1], "--bash-completion") == 0) {
        return tandem_ctl_print_bash_completion(stdout) == 0 && fflush(stdout) == 0
                   ? TANDEM_CTL_OK
                   : TANDEM_CTL_EREFUSED;
    }
    memset(&o, 0, sizeof(o));
    o.output = TANDEM_CTL_OUTPUT_TABLE;
    o.timeout_s = TIMEOUT_S_DEFAULT;
    int rc = parse_argv(&o, argc, argv);
    if (rc != 0) {
        fprintf(stderr, "tandemctl: %s\n", o.errmsg);
        return rc;
    }
    if (o.help) {
        if (o.command != NULL) {
            char usage[160];
            command_words(o.command, true, usage, sizeof(usage));
            fprintf(stdout, "usage: tandemctl [options] %s\n  %s\n", usage, o.command->help);
        } else {
            print_usage(stdout, o.noun);
        }
        return fflush(stdout) == 0 ? TANDEM_CTL_OK : TANDEM_CTL_EREFUSED;
    }
    rc = check_command(&o);
    if (rc != 0) {
        fprintf(stderr, "tandemctl: %s\n", o.errmsg);
        return rc;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tandemctl: curl_global_init failed\n");
        return TANDEM_CTL_EREFUSED;
    }
    rc = run(&o);
    curl_global_cleanup();
    return rc;
}
