/* Prometheus metrics: latency histograms and request counts by route and status code. */
#ifndef TANDEM_NODE_METRICS_H
#define TANDEM_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

struct tandem_route_counts {
    int codes[TANDEM_METRICS_CODES_MAX];
    uint64_t counts[TANDEM_METRICS_CODES_MAX];
    uint64_t overflow; /* requests with a code past the tracked ones */
};

struct tandem_metrics {
    struct tandem_histogram apply;
    struct tandem_histogram request;
    struct tandem_histogram log_append;  /* raft log writes with their fsync (raft_shield.h) */
    struct tandem_histogram lmdb_commit; /* grouped LMDB commits with their fdatasync */
    uint64_t leader_seen;                /* raft id of the last leader this node knew; 0: none */
    uint64_t leader_changes;             /* times the leader this node knows became another one */
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
