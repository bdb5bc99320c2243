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

uint64_t tandem_gap_add(struct tandem_gap *g, uint64_t at_ms)
{
    uint64_t previous = g->previous_ms;
    tandem_assert(at_ms >= previous);
    bool across_pause = previous > 0 && previous <= g->pause_from_ms && at_ms >= g->pause_to_ms &&
                        g->pause_to_ms > 0;
    uint64_t gap = previous == 0 ? 0 : at_ms - previous;
    if (across_pause) {
        gap = (g->pause_from_ms - previous) + (at_ms - g->pause_to_ms);
    }
    if (gap > g->longest_ms) {
        g->longest_ms = gap;
        g->longest_end_ms = at_ms;
    }
    g->previous_ms = at_ms;
    return gap;
}
