/* The longest write gap between consecutive writes, outside a pause the measurer made. */
#include "node/bcp/gap.h"

#include <string.h>

#include "storage/assert.h"

void tandem_gap_init(struct tandem_gap *g, uint64_t pause_from_ms, uint64_t pause_to_ms)
{
    memset(g, 0, sizeof *g);
    g->pause_from_ms = pause_from_ms;
    g->pause_to_ms = pause_to_ms;
}

uint64_t tandem_gap_between(uint64_t a, uint64_t b, uint64_t pause_from_ms, uint64_t pause_to_ms)
{
    tandem_assert(b >= a);
    uint64_t gap = b - a;
    /* The part of [a, b] inside the pause is the measurer's own doing, whichever side of the
     * pause's start the write before it fell. */
    uint64_t from = a > pause_from_ms ? a : pause_from_ms;
    uint64_t to = b < pause_to_ms ? b : pause_to_ms;
    if (pause_to_ms > pause_from_ms && to > from) {
        gap -= to - from;
    }
    return gap;
}

uint64_t tandem_gap_add(struct tandem_gap *g, uint64_t at_ms)
{
    uint64_t previous = g->previous_ms;
    tandem_assert(at_ms >= previous);
    uint64_t gap =
        previous == 0 ? 0 : tandem_gap_between(previous, at_ms, g->pause_from_ms, g->pause_to_ms);
    if (gap > g->longest_ms) {
        g->longest_ms = gap;
        g->longest_end_ms = at_ms;
    }
    g->previous_ms = at_ms;
    return gap;
}
