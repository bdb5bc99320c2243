/* Log-linear latency histogram for tandem-bench: bucket arithmetic and percentiles. */
#include "tests/bench/bench_hist.h"

#include <math.h>
#include <string.h>

/* Index of the highest set bit; value must not be 0. */
static unsigned highest_bit(uint64_t value)
{
    return 63u - (unsigned)__builtin_clzll(value);
}

/* Magnitude 0 holds 0..2^SUB_BITS-1 one per bucket; magnitude m > 0 holds
 * [2^(m+SUB_BITS-1), 2^(m+SUB_BITS)) in HALF buckets 2^m wide. */
static unsigned bucket_of(uint64_t value_us)
{
    unsigned magnitude = 0;
    if (value_us >= (UINT64_C(1) << TANDEM_BENCH_HIST_SUB_BITS)) {
        magnitude = highest_bit(value_us) - (TANDEM_BENCH_HIST_SUB_BITS - 1u);
    }
    unsigned sub = (unsigned)(value_us >> magnitude);
    return magnitude * TANDEM_BENCH_HIST_HALF + sub;
}

/* The largest value that falls into bucket index. */
static uint64_t bucket_upper(unsigned index)
{
    unsigned magnitude = 0;
    unsigned sub = index;
    if (index >= 2u * TANDEM_BENCH_HIST_HALF) {
        magnitude = index / TANDEM_BENCH_HIST_HALF - 1u;
        sub = index - magnitude * TANDEM_BENCH_HIST_HALF;
    }
    return (((uint64_t)sub + 1u) << magnitude) - 1u;
}

void tandem_bench_hist_reset(struct tandem_bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min_us = UINT64_MAX;
}

void tandem_bench_hist_record(struct tandem_bench_hist *h, uint64_t value_us)
{
    if (value_us > TANDEM_BENCH_HIST_VALUE_MAX_US) {
        value_us = TANDEM_BENCH_HIST_VALUE_MAX_US;
    }
    h->counts[bucket_of(value_us)]++;
    h->total++;
    h->sum_us += value_us;
    if (value_us < h->min_us) {
        h->min_us = value_us;
    }
    if (value_us > h->max_us) {
        h->max_us = value_us;
    }
}

uint64_t tandem_bench_hist_percentile(const struct tandem_bench_hist *h, double percentile)
{
    if (h->total == 0) {
        return 0;
    }
    if (percentile < 0.0) {
        percentile = 0.0;
    }
    if (percentile > 100.0) {
        percentile = 100.0;
    }
    uint64_t want = (uint64_t)ceil(percentile / 100.0 * (double)h->total);
    if (want == 0) {
        want = 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < TANDEM_BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t upper = bucket_upper(i);
            return upper < h->max_us ? upper : h->max_us;
        }
    }
    return h->max_us;
}

double tandem_bench_hist_mean(const struct tandem_bench_hist *h)
{
    return h->total == 0 ? 0.0 : (double)h->sum_us / (double)h->total;
}
