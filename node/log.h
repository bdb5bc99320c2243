/* tandemd's log: one line per event on stderr, with time, level and node name. */
#ifndef TANDEM_NODE_LOG_H
#define TANDEM_NODE_LOG_H

enum tandem_log_level { TANDEM_LOG_DEBUG, TANDEM_LOG_INFO, TANDEM_LOG_WARN, TANDEM_LOG_ERROR };

/* Returns 0, or -1 when name is not debug|info|warn|error. */
int tandem_log_setup(const char *node_name, const char *level_name);
void tandem_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adapter for callbacks that take syslog(3) priorities (the transport's). */
void tandem_log_syslog(void *data, int priority, const char *msg);

#endif
