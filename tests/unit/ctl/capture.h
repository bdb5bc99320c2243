/* What tandemctl's unit tests run a helper in: a context printing into a buffer, as table or
 * JSON output, and the parsed arguments a handler would get. */
#ifndef TANDEM_TEST_CTL_CAPTURE_H
#define TANDEM_TEST_CTL_CAPTURE_H

#include <stdio.h>
#include <string.h>

#include "node/ctl/ctl.h"

#define CAPTURE_OUTPUT_MAX 8192 /* bytes of printed text a test inspects */

struct capture {
    struct tandem_ctl_context ctx;
    struct tandem_ctl_args args;
    char text[CAPTURE_OUTPUT_MAX];
};

/* Opens c's output; errors name "test" as the command. */
static inline void capture_open(struct capture *c, enum tandem_ctl_output output)
{
    memset(c, 0, sizeof *c);
    c->ctx.out = fmemopen(c->text, sizeof c->text - 1, "w");
    assert_non_null(c->ctx.out);
    c->ctx.output = output;
    snprintf(c->ctx.what, sizeof c->ctx.what, "test");
}

/* Closes c's output and returns everything printed. */
static inline const char *capture_close(struct capture *c)
{
    assert_int_equal(fclose(c->ctx.out), 0);
    c->ctx.out = NULL;
    return c->text;
}

#endif
