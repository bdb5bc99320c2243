/* The failure path of tandem_assert: say what broke and where, then abort for a core dump. */
#include "storage/assert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void tandem_assert_fail(const char *expression, const char *file, int line, const char *function)
{
    fprintf(stderr, "tandem: assertion failed: %s (%s:%d, %s)\n", expression, file, line, function);
    fflush(stderr);
    abort();
}

void tandem_fatal(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "tandem: fatal: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
    fflush(stderr);
    _exit(TANDEM_FATAL_EXIT_STATUS);
}
