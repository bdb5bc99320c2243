/* The longest write gap: the measure a drill's report and a real invoke's incident report share
 * (time between consecutive acknowledged or applied writes, less a pause the measurer made). */
#ifndef TANDEM_NODE_BCP_GAP_H
#define TANDEM_NODE_BCP_GAP_H

#include <stdbool.h>
#include <stdint.h>

struct tandem_gap {
    uint64_t pause_from_ms, pause_to_ms; /* excluded from the measure; pause_to_ms 0: none */
    uint64_t previous_ms;                /* the last write added; 0 before the first */
    uint64_t longest_ms;
    uint64_t longest_end_ms; /* the write that ended the longest gap */
};

/* Starts a measure; the pause [pause_from_ms, pause_to_ms] (pause_to_ms 0: none) does not count. */
void tandem_gap_init(struct tandem_gap *g, uint64_t pause_from_ms, uint64_t pause_to_ms);
/* The gap between writes at a and b (b >= a), less whatever part of it falls inside the pause
 * [pause_from_ms, pause_to_ms] (none when pause_to_ms <= pause_from_ms). */
uint64_t tandem_gap_between(uint64_t a, uint64_t b, uint64_t pause_from_ms, uint64_t pause_to_ms);
/* Adds a write at at_ms (not before the previous one) and returns the gap it ends (0 for the
 * first). */
uint64_t tandem_gap_add(struct tandem_gap *g, uint64_t at_ms);

#endif
