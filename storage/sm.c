/* The generic state machine's checks: table shape at init, allowed moves and invariants. */
#include "storage/sm.h"

#include <stdio.h>
#include <stddef.h>

#include "storage/assert.h"

static bool conf_ok(const struct tandem_sm_conf *conf, int state_count)
{
    uint64_t inside =
        state_count == TANDEM_SM_STATES_MAX ? UINT64_MAX : TANDEM_SM_BIT(state_count) - 1;
    for (int i = 0; i < state_count; i++) {
        if (conf[i].name == NULL || (conf[i].allowed & ~inside) != 0) {
            return false;
        }
    }
    return true;
}

/* Logs which machine broke and how before the assertion aborts, since the assertion text alone
 * names only the expression. */
static void sm_report(const struct tandem_sm *sm, int prev, int next, const char *what)
{
    fprintf(stderr, "tandem: state machine %s: %s (%s -> %s)\n", sm->name, what,
            tandem_sm_state_name(sm, prev), tandem_sm_state_name(sm, next));
}

static void sm_check_invariant(const struct tandem_sm *sm, int prev)
{
    if (sm->invariant == NULL) {
        return;
    }
    bool ok = sm->invariant(sm, prev, sm->data);
    if (!ok) {
        sm_report(sm, prev, sm->state, "invariant broken");
    }
    tandem_assert(ok);
}

void tandem_sm_init(struct tandem_sm *sm, const char *name, const struct tandem_sm_conf *conf,
                    int state_count, int initial, tandem_sm_invariant_fn invariant, void *data)
{
    tandem_assert(sm != NULL && name != NULL && conf != NULL);
    tandem_assert(state_count > 0 && state_count <= TANDEM_SM_STATES_MAX);
    tandem_assert(conf_ok(conf, state_count));
    tandem_assert(initial >= 0 && initial < state_count);
    tandem_assert((conf[initial].flags & TANDEM_SM_INITIAL) != 0);
    sm->name = name;
    sm->conf = conf;
    sm->state_count = state_count;
    sm->state = initial;
    sm->moves = 0;
    sm->invariant = invariant;
    sm->data = data;
    sm_check_invariant(sm, -1);
}

void tandem_sm_fini(struct tandem_sm *sm)
{
    tandem_assert(sm->state >= 0 && sm->state < sm->state_count);
    bool final = (sm->conf[sm->state].flags & TANDEM_SM_FINAL) != 0;
    if (!final) {
        sm_report(sm, sm->state, sm->state, "ended in a state that is not final");
    }
    tandem_assert(final);
    sm->state = -1;
}

bool tandem_sm_allowed(const struct tandem_sm *sm, int next)
{
    tandem_assert(sm->state >= 0 && sm->state < sm->state_count);
    return next >= 0 && next < sm->state_count &&
           (sm->conf[sm->state].allowed & TANDEM_SM_BIT(next)) != 0;
}

void tandem_sm_move(struct tandem_sm *sm, int next)
{
    int prev = sm->state;
    bool allowed = tandem_sm_allowed(sm, next);
    if (!allowed) {
        sm_report(sm, prev, next, "move not in the table");
    }
    tandem_assert(allowed);
    sm->state = next;
    sm->moves++;
    sm_check_invariant(sm, prev);
}

const char *tandem_sm_state_name(const struct tandem_sm *sm, int state)
{
    if (state < 0 || state >= sm->state_count) {
        return "?";
    }
    return sm->conf[state].name;
}
