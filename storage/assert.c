/* The failure path of tandem_assert: say what broke and where, then abort for a core dump. */
#include "storage/assert.h"

#include <stdio.h>
#include <stdlib.h>

void tandem_assert_fail(const char *expression, const char *file, int line, const char *function)
{
    fprintf(stderr, "tandem: assertion failed: %s (%s:%d, %s)\n", expression, file, line, function);
    fflush(stderr);
    abort();
}
