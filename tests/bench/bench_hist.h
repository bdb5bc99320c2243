/* Log-linear latency histogram in microseconds for tandem-bench (HDR-like, fixed memory). */
#ifndef TANDEM_BENCH_HIST_H
#define TANDEM_BENCH_HIST_H

#include <stdint.h>

/* 2^SUB_BITS linear buckets per power of two, half of them new in every magnitude: a recorded
 * value is reported at most 1/64 (1.6 %) above what was measured. */
#define TANDEM_BENCH_HIST_SUB_BITS 7
/* Magnitudes above the first linear range: values up to 2^(MAGNITUDES + SUB_BITS) - 1 us (about
 * 25 days) get their own bucket, larger ones are clamped to that. */
#define TANDEM_BENCH_HIST_MAGNITUDES 34
#define TANDEM_BENCH_HIST_HALF       (1u << (TANDEM_BENCH_HIST_SUB_BITS - 1))
#define TANDEM_BENCH_HIST_BUCKETS    ((TANDEM_BENCH_HIST_MAGNITUDES + 2) * TANDEM_BENCH_HIST_HALF)
#define TANDEM_BENCH_HIST_VALUE_MAX_US                                                             \
    ((UINT64_C(1) << (TANDEM_BENCH_HIST_MAGNITUDES + TANDEM_BENCH_HIST_SUB_BITS)) - 1)

struct tandem_bench_hist {
    uint64_t counts[TANDEM_BENCH_HIST_BUCKETS];
    uint64_t total;
    uint64_t min_us, max_us; /* exact; min_us is UINT64_MAX while empty */
    uint64_t sum_us;
};

void tandem_bench_hist_reset(struct tandem_bench_hist *h);

/* Values above TANDEM_BENCH_HIST_VALUE_MAX_US are recorded as that value. */
void tandem_bench_hist_record(struct tandem_bench_hist *h, uint64_t value_us);

/* The smallest bucket bound with at least percentile % of the values at or below it (never above
 * the largest value recorded); 0 when empty. percentile in 0..100. */
uint64_t tandem_bench_hist_percentile(const struct tandem_bench_hist *h, double percentile);

double tandem_bench_hist_mean(const struct tandem_bench_hist *h);

#endif
