/* Line-oriented logging to stderr with UTC timestamps. */
#include "node/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>

static int log_level = TANDEM_LOG_INFO;
static char log_name[64] = "tandemd";
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int tandem_log_setup(const char *node_name, const char *level_name)
{
    snprintf(log_name, sizeof log_name, "%s", node_name);
    for (int i = 0; i < 4; i++) {
        if (strcmp(level_name, level_names[i]) == 0) {
            log_level = i;
            return 0;
        }
    }
    return -1;
}

static void log_line(int level, const char *fmt, va_list args)
{
    struct timeval tv;
    struct tm tm;
    char stamp[32];
    char message[1024];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    vsnprintf(message, sizeof message, fmt, args);
    fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", stamp, (long)(tv.tv_usec / 1000), level_names[level],
            log_name, message);
}

void tandem_log(int level, const char *fmt, ...)
{
    va_list args;
    if (level < log_level) {
        return;
    }
    va_start(args, fmt);
    log_line(level, fmt, args);
    va_end(args);
}

void tandem_log_syslog(void *data, int priority, const char *msg)
{
    (void)data;
    int level = priority <= LOG_ERR       ? TANDEM_LOG_ERROR
                : priority == LOG_WARNING ? TANDEM_LOG_WARN
                : priority == LOG_DEBUG   ? TANDEM_LOG_DEBUG
                                          : TANDEM_LOG_INFO;
    tandem_log(level, "%s", msg);
}
