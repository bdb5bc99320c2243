/* A small generic state machine (after dqlite's src/lib/sm.c): named states, an
 * allowed-transition table, and an invariant callback checked with tandem_assert on every move. */
#ifndef TANDEM_STORAGE_SM_H
#define TANDEM_STORAGE_SM_H

#include <stdbool.h>
#include <stdint.h>

/* A machine has at most this many states: the allowed moves of a state are one uint64_t. */
#define TANDEM_SM_STATES_MAX 64

/* The bit of state s in an allowed-transition mask. */
#define TANDEM_SM_BIT(s) ((uint64_t)1 << (unsigned)(s))

/* Flags of a state. */
enum {
    TANDEM_SM_INITIAL = 1u << 0, /* the machine may start here */
    TANDEM_SM_FINAL = 1u << 1,   /* the machine may end (tandem_sm_fini) here */
};

/* One row of a machine's table, indexed by state. */
struct tandem_sm_conf {
    const char *name; /* for logs and assertion messages */
    unsigned flags;   /* TANDEM_SM_INITIAL | TANDEM_SM_FINAL */
    uint64_t allowed; /* TANDEM_SM_BIT(next) for every state this one may move to */
};

struct tandem_sm;

/* Whether the object the machine drives is consistent with its new state. prev is the state
 * moved from, or -1 right after tandem_sm_init. Called on every move; false aborts. */
typedef bool (*tandem_sm_invariant_fn)(const struct tandem_sm *sm, int prev, void *data);

struct tandem_sm {
    const char *name;                  /* the machine's name ("site controller"), borrowed */
    const struct tandem_sm_conf *conf; /* borrowed: state_count rows, outlives the machine */
    int state_count;                   /* 1..TANDEM_SM_STATES_MAX */
    int state;                         /* current state, an index into conf */
    uint64_t moves;                    /* transitions done since init */
    tandem_sm_invariant_fn invariant;  /* may be NULL */
    void *data;                        /* borrowed: handed to invariant */
};

/* Checks the table (every row named, allowed masks inside the table) and that initial is an
 * INITIAL state, then enters it and runs the invariant. Violations abort: a table is code. */
void tandem_sm_init(struct tandem_sm *sm, const char *name, const struct tandem_sm_conf *conf,
                    int state_count, int initial, tandem_sm_invariant_fn invariant, void *data);
/* Asserts the machine rests in a FINAL state; the machine is unusable afterwards. */
void tandem_sm_fini(struct tandem_sm *sm);

/* Whether the table allows moving from the current state to next. */
bool tandem_sm_allowed(const struct tandem_sm *sm, int next);
/* Moves to next: asserts the table allows it, then asserts the invariant. */
void tandem_sm_move(struct tandem_sm *sm, int next);

static inline int tandem_sm_state(const struct tandem_sm *sm)
{
    return sm->state;
}
/* The table's name for state ("?" outside the table). */
const char *tandem_sm_state_name(const struct tandem_sm *sm, int state);

#endif
