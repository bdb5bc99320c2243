/* Prometheus metrics: latency histograms and request counts by route and status code. */
#ifndef TANDEM_NODE_METRICS_H
#define TANDEM_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#define TANDEM_HISTOGRAM_BUCKETS  16 /* 50us .. ~1.6s, doubling */
#define TANDEM_METRICS_ROUTES_MAX 128
#define TANDEM_METRICS_CODES_MAX  12 /* distinct status codes tracked per route */
/* Room for one escaped label value: names (sites, members, routes) are far shorter; a longer
 * value is cut at a whole character, never inside an escape. */
#define TANDEM_METRICS_LABEL_MAX 256

struct tandem_histogram {
    uint64_t buckets[TANDEM_HISTOGRAM_BUCKETS]; /* counts <= bound (not cumulative) */
    uint64_t count;
    uint64_t sum_ns;
};

/* The loop's lateness: a timer repeating every TANDEM_LOOP_LAG_INTERVAL_MS measures how late it
 * runs. A timer, not the gap between iterations: an idle loop waits in poll between iterations,
 * which is no lag, while a due timer that runs late is exactly what raft's tick (heartbeats,
 * election timeouts) suffers when a callback holds the loop. Stalls under the interval go
 * unseen; nothing that short threatens an election. */
#define TANDEM_LOOP_LAG_INTERVAL_MS 10
/* A stall this long is logged at warn with what ran on the loop meanwhile (node.c)... */
#define TANDEM_LOOP_LAG_WARN_MS 200
/* ...and so is one whose part not spent waiting for a CPU (tandem_loop_lag_held) is this long:
 * the loop's own work held it past the bound issue 17 sets. */
#define TANDEM_LOOP_HELD_WARN_MS 50

/* Time spent in the loop's known heavy callbacks (running totals), for a stall's log line. */
struct tandem_loop_work {
    uint64_t apply_ns;    /* applying entries to LMDB */
    uint64_t commit_ns;   /* grouped LMDB commits */
    uint64_t restore_ns;  /* installing snapshots */
    uint64_t snapshot_ns; /* taking snapshots: pinning, and serialising when on the loop */
    uint64_t cpu_ns;      /* CPU time of the loop thread: a stall it did not run through was
                             the process waiting (CPU starved, paging, a blocking call) */
    uint64_t runq_ns;     /* time the loop thread was ready to run but waited for a CPU
                             (schedstat): of that waiting, what the machine's other work cost */
    uint64_t majflt;      /* page faults of the loop thread that read from the disk (getrusage):
                             a stall it did not run through, waiting for the state's pages */
};

struct tandem_loop_lag {
    uv_timer_t timer;     /* node.c starts and closes it; data: the node */
    uint64_t last_ns;     /* uv_hrtime of the previous tick; 0 before the first */
    uint64_t max_ns;      /* the longest lateness since start */
    uint64_t held_max_ns; /* the longest lateness less the loop thread's CPU wait meanwhile */
    struct tandem_histogram lag;
    struct tandem_loop_work seen; /* the totals at the previous tick */
    int schedstat_fd;             /* owned: the loop thread's /proc/thread-self/schedstat, or -1 */
};

struct tandem_route_counts {
    int codes[TANDEM_METRICS_CODES_MAX];
    uint64_t counts[TANDEM_METRICS_CODES_MAX];
    uint64_t overflow; /* requests with a code past the tracked ones */
};

struct tandem_metrics {
    struct tandem_histogram apply;
    struct tandem_histogram request;
    struct tandem_histogram log_append;  /* raft log writes with their fsync (raft_shield.h) */
    struct tandem_histogram lmdb_commit; /* grouped LMDB commits (to the page cache) */
    struct tandem_histogram lmdb_sync;   /* the store's fdatasync on the thread pool */
    struct tandem_loop_lag loop_lag;
    uint64_t leader_seen;    /* raft id of the last leader this node knew; 0: none */
    uint64_t leader_changes; /* times the leader this node knows became another one */
    struct tandem_route_counts routes[TANDEM_METRICS_ROUTES_MAX];
};

/* value as a Prometheus label value (text format 0.0.4: backslash, double quote and line feed
 * escaped) in buf of TANDEM_METRICS_LABEL_MAX bytes; returns buf. NULL writes "". */
const char *tandem_metrics_label(const char *value, char *buf);
/* The # HELP and # TYPE lines of a family (help escaped as the format asks). */
void tandem_metrics_family(FILE *out, const char *name, const char *type, const char *help);
/* A family of one sample without labels: its name, type, HELP text and value. */
struct tandem_metrics_scalar {
    const char *name;
    const char *type;
    const char *help;
    uint64_t value;
};
/* Each of the n scalars: its family lines, then its one sample. */
void tandem_metrics_scalars_write(FILE *out, const struct tandem_metrics_scalar *scalars, size_t n);
/* Counts a change of the leader this node knows (leader_id 0: none known, not a change). */
void tandem_metrics_leader_seen(struct tandem_metrics *m, uint64_t leader_id);

/* One tick of the loop-lag timer at now_ns (uv_hrtime): its lateness past the interval since the
 * previous tick, observed in the histogram and the maximum, and returned; 0 at the first tick or
 * when on time. */
uint64_t tandem_loop_lag_tick(struct tandem_loop_lag *l, uint64_t now_ns);
/* Of a tick's lateness late_ns, what the loop held itself: late_ns less runq_ns, the time the loop
 * thread waited for a CPU since the previous tick (its schedstat; 0 when unknown, so that all of
 * the lateness counts). Kept as the maximum, and returned. It counts callbacks and blocking calls
 * (a page fault, an fsync) on the loop, not the machine's other work; it errs low by at most the
 * interval, since a wait can fall in the interval rather than in the lateness. */
uint64_t tandem_loop_lag_held(struct tandem_loop_lag *l, uint64_t late_ns, uint64_t runq_ns);
/* tandem_loop_lag_seconds (histogram), tandem_loop_lag_max_seconds and
 * tandem_loop_held_max_seconds (gauges) and tandem_loop_cpu_wait_seconds_total (counter:
 * l->seen.runq_ns). */
void tandem_loop_lag_write(FILE *out, const struct tandem_loop_lag *l);

void tandem_histogram_observe(struct tandem_histogram *h, uint64_t ns);
/* The upper bound, in microseconds, of the bucket that holds the q-quantile (0 < q <= 1) of h's
 * observations (an estimate from above, as a histogram gives); 0 when h is empty, the largest
 * bound when the quantile lies past it. */
uint64_t tandem_histogram_quantile_us(const struct tandem_histogram *h, double q);
void tandem_metrics_count(struct tandem_metrics *m, unsigned route, int code);
/* Writes a histogram in Prometheus text format (seconds). */
void tandem_histogram_write(FILE *out, const char *name, const char *help,
                            const struct tandem_histogram *h);
/* One line of tandem_connections_refused_total{listener, reason}; the family's TYPE line comes
 * once, before the first listener's lines (node/api/cluster.c). */
void tandem_connections_refused_write(FILE *out, const char *listener, const char *reason,
                                      uint64_t count);
void tandem_route_counts_write(FILE *out, const struct tandem_metrics *m,
                               const char *const *route_names, unsigned n_routes);

#endif
