/* Tests of node/ctl/help_formats.c: the man page's Markdown names every command and global option
 * with Markdown's special characters escaped, and the bash completion script, run by bash,
 * completes nouns, verbs, flags and option values from the command table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/ctl/ctl.h"
#include "node/ctl/help_formats.h"

static char *print_to_string(int (*print)(FILE *out))
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    assert_int_equal(print(out), 0);
    assert_int_equal(fclose(out), 0);
    return text;
}

static void test_markdown_names_every_command_and_option(void **state)
{
    (void)state;
    char *md = print_to_string(tandem_ctl_print_markdown);
    assert_non_null(strstr(md, "% TANDEMCTL 1 "));
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        const struct tandem_ctl_command *c = &tandem_ctl_commands[i];
        char words[96];
        snprintf(words, sizeof words, "\n**%s%s%s**", c->noun, c->verb ? " " : "",
                 c->verb ? c->verb : "");
        assert_non_null(strstr(md, words));
    }
    for (size_t i = 0; i < tandem_ctl_global_option_count; i++) {
        const char *flags = tandem_ctl_global_options[i].flags;
        char words[64];
        snprintf(words, sizeof words, "\n**%s**", flags + strspn(flags, " "));
        assert_non_null(strstr(md, words));
    }
    /* Escaped: "[--limit N]" would be a link, "a|b" a table cell. */
    assert_non_null(strstr(md, "\\[--limit N\\]"));
    assert_non_null(strstr(md, "voter\\|standby\\|spare"));
    assert_null(strstr(md, " [--limit N]"));
    assert_non_null(strstr(md, "# EXIT STATUS\n\n**0**\n: success\n"));
    free(md);
}

/* What bash offers when completing the last of words with the generated script. */
static void complete(const char *script_path, const char *words, char *out, size_t size)
{
    char command[1024];
    snprintf(command, sizeof command,
             "bash -c 'source \"$0\"; COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
             "_tandemctl; echo \"${COMPREPLY[*]}\"' %s",
             words, script_path);
    FILE *p = popen(command, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
    assert_int_equal(pclose(p), 0);
}

static void test_bash_completion_from_the_table(void **state)
{
    (void)state;
    char *script = print_to_string(tandem_ctl_print_bash_completion);
    char path[] = "/tmp/tandemctl-completion-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, script, strlen(script)), (ssize_t)strlen(script));
    close(fd);
    char got[1024];
    complete(path, "tandemctl \"\"", got, sizeof got);
    for (size_t i = 0; i < tandem_ctl_command_count; i++) {
        assert_non_null(strstr(got, tandem_ctl_commands[i].noun));
    }
    assert_non_null(strstr(got, "--endpoints"));
    complete(path, "tandemctl kv \"\"", got, sizeof got);
    assert_string_equal(got, "put get del list cas");
    complete(path, "tandemctl -e https://a:1 kv l", got, sizeof got); /* -e's value skipped */
    assert_string_equal(got, "list");
    complete(path, "tandemctl kv list --l", got, sizeof got);
    assert_string_equal(got, "--limit --local");
    complete(path, "tandemctl status --h", got, sizeof got); /* a noun without verbs */
    assert_string_equal(got, "--help");
    complete(path, "tandemctl -o \"\"", got, sizeof got);
    assert_string_equal(got, "table json");
    unlink(path);
    free(script);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markdown_names_every_command_and_option),
        cmocka_unit_test(test_bash_completion_from_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
