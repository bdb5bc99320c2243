/* bcp_event_command split into the program and arguments it is run with (no shell): the
 * config check and the event hub (node/bcp/events.c) read it the same way. */
#ifndef TANDEM_NODE_BCP_EVENT_COMMAND_H
#define TANDEM_NODE_BCP_EVENT_COMMAND_H

#include <stddef.h>

#define TANDEM_EVENT_COMMAND_ARGS_MAX 32 /* words of bcp_event_command */

/* command split into words: plain words, or '...'/"..." groups (no escapes). Returns the count
 * (argv NULL-terminated, pointing into buf), or -1 on an unclosed quote or too many words. */
int tandem_events_command_split(const char *command, char *buf, size_t buf_size,
                                char *argv[TANDEM_EVENT_COMMAND_ARGS_MAX + 1]);

#endif
