/* bcp_event_command split into the words uv_spawn runs, without a shell. */
#include "node/bcp/event_command.h"

#include <stddef.h>

int tandem_events_command_split(const char *command, char *buf, size_t buf_size,
                                char *argv[TANDEM_EVENT_COMMAND_ARGS_MAX + 1])
{
    size_t o = 0;
    int argc = 0;
    const char *p = command;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (argc == TANDEM_EVENT_COMMAND_ARGS_MAX) {
            return -1;
        }
        argv[argc++] = buf + o;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            char quote = (*p == '\'' || *p == '"') ? *p++ : '\0';
            while (*p != '\0' &&
                   (quote != '\0' ? *p != quote
                                  : (*p != ' ' && *p != '\t' && *p != '\'' && *p != '"'))) {
                if (o + 1 >= buf_size) {
                    return -1;
                }
                buf[o++] = *p++;
            }
            if (quote != '\0') {
                if (*p != quote) {
                    return -1; /* unclosed quote */
                }
                p++;
            }
        }
        buf[o++] = '\0';
    }
    argv[argc] = NULL;
    return argc;
}
