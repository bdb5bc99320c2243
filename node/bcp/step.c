/* The checked moves of node/bcp/step.h. */
#include "node/bcp/step.h"

#include "node/log.h"
#include "storage/assert.h"

static bool step_valid(const struct tandem_bcp_steps *m, int step)
{
    return step >= 0 && (unsigned)step < m->count;
}

const char *tandem_bcp_step_name(const struct tandem_bcp_steps *m, int step)
{
    return step_valid(m, step) ? m->names[step] : "invalid";
}

bool tandem_bcp_step_allowed(const struct tandem_bcp_steps *m, int from, int to)
{
    tandem_assert(m->count > 0 && m->count <= TANDEM_BCP_STEPS_MAX);
    if (!step_valid(m, from) || !step_valid(m, to)) {
        return false;
    }
    return (m->allowed[from] & TANDEM_BCP_STEP_BIT(to)) != 0;
}

void tandem_bcp_step_move(const struct tandem_bcp_steps *m, int *step, int to)
{
    if (!tandem_bcp_step_allowed(m, *step, to)) {
        tandem_log(TANDEM_LOG_ERROR, "%s: no move from step %s to %s", m->machine,
                   tandem_bcp_step_name(m, *step), tandem_bcp_step_name(m, to));
    }
    tandem_assert(tandem_bcp_step_allowed(m, *step, to));
    *step = to;
}
