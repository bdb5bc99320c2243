/* tandemctl's help in other forms, all from its tables: the global options, Markdown for the
 * man page (--help-markdown) and a bash completion script (--bash-completion). */
#ifndef TANDEM_NODE_CTL_HELP_FORMATS_H
#define TANDEM_NODE_CTL_HELP_FORMATS_H

#include <stddef.h>
#include <stdio.h>

#define TANDEM_CTL_ENDPOINTS_ENV     "TANDEM_ENDPOINTS"
#define TANDEM_CTL_TIMEOUT_S_DEFAULT 10 /* per request attempt; leader transfer answers within */
#define TANDEM_CTL_STR_(x)           #x
#define TANDEM_CTL_STR(x)            TANDEM_CTL_STR_(x)

/* One global option as --help shows it: "-e, --endpoints" or "    --cacert", then its value. */
struct tandem_ctl_global_option {
    const char *flags;
    const char *value; /* NULL for a switch */
    const char *help;
};

extern const struct tandem_ctl_global_option tandem_ctl_global_options[];
extern const size_t tandem_ctl_global_option_count;

/* The manual page's text (go-md2man's Markdown): name, synopsis, options, every command of the
 * table, environment, exit status. Returns 0, or -1 when out failed. */
int tandem_ctl_print_markdown(FILE *out);

/* A bash completion script for tandemctl: nouns, each noun's verbs, each command's flags, the
 * global options and their values (-o table|json, files for the TLS options). Returns 0 or -1. */
int tandem_ctl_print_bash_completion(FILE *out);

#endif
