/* tandemctl's help in other forms, all from its tables: the global options, Markdown for the
 * man page (--help-markdown) and a bash completion script (--bash-completion). */
#include "node/ctl/help_formats.h"

#include <stdbool.h>
#include <string.h>

#include "node/ctl/ctl.h"
#include "node/ctl/tls.h"

const struct tandem_ctl_global_option tandem_ctl_global_options[] = {
    {"-e, --endpoints", "URL,...",
     "API base URLs tried in order (default: $" TANDEM_CTL_ENDPOINTS_ENV ")"},
    {"    --cacert", "FILE",
     "cluster CA that https:// servers must chain to (default: $" TANDEM_CTL_CACERT_ENV ")"},
    {"    --cert", "FILE",
     "client certificate naming the user (default: $" TANDEM_CTL_CERT_ENV ")"},
    {"    --key", "FILE", "its private key (default: $" TANDEM_CTL_KEY_ENV ")"},
    {"-o, --output", "FORMAT", "table (default) or json"},
    {"    --timeout", "SECONDS",
     "bound on each request attempt (default " TANDEM_CTL_STR(TANDEM_CTL_TIMEOUT_S_DEFAULT) ")"},
    {"-h, --help", NULL, "this help; '<command> --help' for one command"},
    {"--", NULL, "ends options: a VALUE may then start with '-'"},
};
const size_t tandem_ctl_global_option_count =
    sizeof tandem_ctl_global_options / sizeof tandem_ctl_global_options[0];

/* text with Markdown's special characters escaped. */
static void md_text(FILE *out, const char *text)
{
    for (const char *p = text; *p != '\0'; p++) {
        if (strchr("\\`*_[]<>|#", *p) != NULL) {
            fputc('\\', out);
        }
        fputc(*p, out);
    }
}

static void md_command(FILE *out, const struct tandem_ctl_command *c)
{
    fprintf(out, "**%s%s%s**", c->noun, c->verb ? " " : "", c->verb ? c->verb : "");
    if (c->synopsis[0] != '\0') {
        fputc(' ', out);
        md_text(out, c->synopsis);
    }
    fputs("\n: ", out);
    md_text(out, c->help);
    fputs("\n\n", out);
}

int tandem_ctl_print_markdown(FILE *out)
{
    fputs("% TANDEMCTL 1 \"\" \"tandem\" \"tandem manual\"\n\n"
          "# NAME\n\ntandemctl - command-line client of a tandem cluster\n\n"
          "# SYNOPSIS\n\n**tandemctl** \\[*options*\\] *command* \\[*args*\\]\n\n"
          "# DESCRIPTION\n\ntandemctl calls the HTTP API of a tandem cluster's nodes, trying "
          "the endpoints in order and following the leader. Backup files are checked and "
          "restored locally.\n\n# OPTIONS\n\n",
          out);
    for (size_t i = 0; i < tandem_ctl_global_option_count; i++) {
        const struct tandem_ctl_global_option *g = &tandem_ctl_global_options[i];
        fprintf(out, "**%s**", g->flags + strspn(g->flags, " "));
        if (g->value != NULL) {
            fprintf(out, " *%s*", g->value);
        }
        fputs("\n: ", out);
        md_text(out, g->help);
        fputs("\n\n", out);
    }
    fputs("# COMMANDS\n\n", out);
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        md_command(out, &tandem_ctl_commands[i]);
    }
    fputs("# ENVIRONMENT\n\n", out);
    const char *env[] = {TANDEM_CTL_ENDPOINTS_ENV, TANDEM_CTL_CACERT_ENV, TANDEM_CTL_CERT_ENV,
                         TANDEM_CTL_KEY_ENV};
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) {
        fputs("**", out);
        md_text(out, env[i]);
        fputs("**\n: the default of the option naming it above\n\n", out);
    }
    fputs("# EXIT STATUS\n\n", out);
#define MD_EXIT_CODE(name, value, text) fprintf(out, "**%d**\n: %s\n\n", value, text);
    TANDEM_CTL_EXIT_CODES(MD_EXIT_CODE)
#undef MD_EXIT_CODE
    fputs("# SEE ALSO\n\n**tandemd**(8)\n", out);
    return ferror(out) ? -1 : 0;
}

/* Writes the --flags of a synopsis ("KEY [--limit N] [--local]" -> "--limit --local"). */
static void synopsis_flags(FILE *out, const char *synopsis)
{
    const char *sep = "";
    for (const char *p = strstr(synopsis, "--"); p != NULL; p = strstr(p + 2, "--")) {
        fprintf(out, "%s%.*s", sep, (int)strcspn(p, " ]|"), p);
        sep = " ";
    }
}

static bool noun_seen_before(size_t i)
{
    for (size_t j = 0; j < i; j++) {
        if (strcmp(tandem_ctl_commands[j].noun, tandem_ctl_commands[i].noun) == 0) {
            return true;
        }
    }
    return false;
}

/* _tandemctl_verbs NOUN: the noun's verbs; _tandemctl_flags "NOUN VERB" (or "NOUN"): flags. */
static void bash_tables(FILE *out)
{
    fputs("_tandemctl_verbs() {\n    case $1 in\n", out);
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        if (tandem_ctl_commands[i].verb == NULL || noun_seen_before(i)) {
            continue;
        }
        fprintf(out, "        %s) echo \"", tandem_ctl_commands[i].noun);
        const char *sep = "";
        for (size_t j = i; j < tandem_ctl_command_count; j++) {
            const struct tandem_ctl_command *c = &tandem_ctl_commands[j];
            if (c->verb != NULL && strcmp(c->noun, tandem_ctl_commands[i].noun) == 0) {
                fprintf(out, "%s%s", sep, c->verb);
                sep = " ";
            }
        }
        fputs("\" ;;\n", out);
    }
    fputs("    esac\n}\n\n_tandemctl_flags() {\n    case $1 in\n", out);
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        const struct tandem_ctl_command *c = &tandem_ctl_commands[i];
        fprintf(out, "        \"%s%s%s\") echo \"", c->noun, c->verb ? " " : "",
                c->verb ? c->verb : "");
        synopsis_flags(out, c->synopsis); /* --help is a global option */
        fputs("\" ;;\n", out);
    }
    fputs("    esac\n}\n\n", out);
}

/* The global options: all of them, and those that take a value. */
static void bash_globals(FILE *out)
{
    fputs("_tandemctl_globals=\"", out);
    for (size_t i = 0; i < tandem_ctl_global_option_count; i++) {
        const char *f = tandem_ctl_global_options[i].flags;
        fprintf(out, "%s%.*s", i ? " " : "", (int)strcspn(f, ","), f + strspn(f, " "));
        if (strchr(f, ',') != NULL) {
            fprintf(out, " %s", strchr(f, ',') + 2);
        }
    }
    fputs("\"\n_tandemctl_valued=\"", out);
    const char *sep = "";
    for (size_t i = 0; i < tandem_ctl_global_option_count; i++) {
        const struct tandem_ctl_global_option *g = &tandem_ctl_global_options[i];
        if (g->value != NULL) {
            const char *f = g->flags + strspn(g->flags, " ");
            fprintf(out, "%s%.*s", sep, (int)strcspn(f, ","), f);
            fprintf(out, "%s%s", strchr(f, ',') ? " " : "",
                    strchr(f, ',') ? strchr(f, ',') + 2 : "");
            sep = " ";
        }
    }
    fputs("\"\n\n", out);
}

static const char bash_main[] =
    "_tandemctl() {\n"
    "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
    "    local noun=\"\" verb=\"\" i w\n"
    "    case $prev in\n"
    "        -o | --output) COMPREPLY=($(compgen -W \"table json\" -- \"$cur\")); return ;;\n"
    "        --cacert | --cert | --key) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
    "        -e | --endpoints | --timeout) return ;;\n"
    "    esac\n"
    "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
    "        w=${COMP_WORDS[i]}\n"
    "        if [[ \" $_tandemctl_valued \" == *\" $w \"* ]]; then\n"
    "            i=$((i + 1))\n"
    "        elif [[ $w != -* && -z $noun ]]; then\n"
    "            noun=$w\n"
    "        elif [[ $w != -* && -z $verb ]]; then\n"
    "            verb=$w\n"
    "        fi\n"
    "    done\n"
    "    local verbs=\"\"\n"
    "    [[ -z $noun ]] || verbs=$(_tandemctl_verbs \"$noun\")\n"
    "    if [[ -z $noun ]]; then\n"
    "        COMPREPLY=($(compgen -W \"$_tandemctl_nouns $_tandemctl_globals\" -- \"$cur\"))\n"
    "    elif [[ -n $verbs && -z $verb ]]; then\n"
    "        COMPREPLY=($(compgen -W \"$verbs\" -- \"$cur\"))\n"
    "    elif [[ $cur == -* ]]; then\n"
    "        local key=$noun\n"
    "        [[ -z $verbs ]] || key=\"$noun $verb\"\n"
    "        COMPREPLY=($(compgen -W \"$(_tandemctl_flags \"$key\") $_tandemctl_globals\" -- "
    "\"$cur\"))\n"
    "    else\n"
    "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
    "    fi\n"
    "}\n"
    "complete -F _tandemctl tandemctl\n";

int tandem_ctl_print_bash_completion(FILE *out)
{
    fputs("# bash completion for tandemctl: generated by `tandemctl --bash-completion` from its "
          "command table.\n\n_tandemctl_nouns=\"",
          out);
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        if (!noun_seen_before(i)) {
            fprintf(out, "%s%s", i ? " " : "", tandem_ctl_commands[i].noun);
        }
    }
    fputs("\"\n", out);
    bash_globals(out);
    bash_tables(out);
    fputs(bash_main, out);
    return ferror(out) ? -1 : 0;
}
