/* tandem_assert: an assertion that stays in release builds, logs where it failed and aborts, and
 * tandem_invariant for whole-object checks that run in debug and simulation builds only. */
#ifndef TANDEM_STORAGE_ASSERT_H
#define TANDEM_STORAGE_ASSERT_H

#include <stdbool.h>

/* Logs "assertion failed: EXPR (file:line, function)" to stderr and aborts. */
_Noreturn void tandem_assert_fail(const char *expression, const char *file, int line,
                                  const char *function);

/* Exit status of a fail-stop (EX_SOFTWARE): the node found itself in a state it must not go on
 * from, said why, and stopped so that a restart starts from what is on disk. */
#define TANDEM_FATAL_EXIT_STATUS 70

/* Logs "tandem: fatal: <message>" to stderr and exits with TANDEM_FATAL_EXIT_STATUS at once
 * (_exit: no atexit handlers, no leak report of a process that stops on purpose). */
_Noreturn void tandem_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Kept in every build: an assertion states something a neighbour's bug could make false, and
 * a node that goes on past a broken assumption can corrupt replicated state. */
#define tandem_assert(expression)                                                                  \
    ((expression) ? (void)0 : tandem_assert_fail(#expression, __FILE__, __LINE__, __func__))

/* Whether the expensive whole-object checkers run (Debug builds and the simulations define
 * TANDEM_INVARIANTS=1; release builds keep only tandem_assert). */
#ifdef TANDEM_INVARIANTS
#define TANDEM_INVARIANTS_ON true
#else
#define TANDEM_INVARIANTS_ON false
#endif

/* Runs a whole-object checker (a bool expression) where invariants are on. */
#define tandem_invariant(expression)                                                               \
    do {                                                                                           \
        if (TANDEM_INVARIANTS_ON) {                                                                \
            tandem_assert(expression);                                                             \
        }                                                                                          \
    } while (0)

#endif
