/* Step machines of the BCP orchestrations (drill, rejoin) as allowed-transition tables: every
 * move is checked against the table, and the caller's invariant is checked after it. */
#ifndef TANDEM_NODE_BCP_STEP_H
#define TANDEM_NODE_BCP_STEP_H

#include <stdbool.h>

#define TANDEM_BCP_STEPS_MAX 32 /* steps of one machine: a move set is one unsigned bit mask */

#define TANDEM_BCP_STEP_BIT(step) (1u << (step))

struct tandem_bcp_steps {
    const char *machine;      /* "drill", "rejoin": named in the assertion's log */
    const char *const *names; /* names[step] */
    const unsigned *allowed;  /* allowed[from]: TANDEM_BCP_STEP_BIT of every step it may go to */
    unsigned count;           /* steps, at most TANDEM_BCP_STEPS_MAX */
};

const char *tandem_bcp_step_name(const struct tandem_bcp_steps *m, int step);
bool tandem_bcp_step_allowed(const struct tandem_bcp_steps *m, int from, int to);
/* Moves *step to `to`, aborting (tandem_assert) on a move the table does not allow. */
void tandem_bcp_step_move(const struct tandem_bcp_steps *m, int *step, int to);

#endif
