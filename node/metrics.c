/* Fixed-size histograms and counters rendered as Prometheus text. */
#include "node/metrics.h"

static uint64_t bucket_bound_ns(unsigned i)
{
    return (uint64_t)50000 << i;
}

void tandem_histogram_observe(struct tandem_histogram *h, uint64_t ns)
{
    unsigned i = 0;
    while (i < TANDEM_HISTOGRAM_BUCKETS - 1 && ns > bucket_bound_ns(i)) {
        i++;
    }
    if (ns <= bucket_bound_ns(i)) {
        h->buckets[i]++;
    }
    h->count++;
    h->sum_ns += ns;
}

void tandem_metrics_count(struct tandem_metrics *m, unsigned route, int code)
{
    if (route >= TANDEM_METRICS_ROUTES_MAX) {
        return;
    }
    struct tandem_route_counts *rc = &m->routes[route];
    for (unsigned i = 0; i < TANDEM_METRICS_CODES_MAX; i++) {
        if (rc->codes[i] == code || rc->codes[i] == 0) {
            rc->codes[i] = code;
            rc->counts[i]++;
            return;
        }
    }
    rc->overflow++;
}

void tandem_histogram_write(FILE *out, const char *name, const char *help,
                            const struct tandem_histogram *h)
{
    uint64_t cumulative = 0;
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (unsigned i = 0; i < TANDEM_HISTOGRAM_BUCKETS; i++) {
        cumulative += h->buckets[i];
        fprintf(out, "%s_bucket{le=\"%.6f\"} %llu\n", name, (double)bucket_bound_ns(i) / 1e9,
                (unsigned long long)cumulative);
    }
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    fprintf(out, "%s_sum %.9f\n%s_count %llu\n", name, (double)h->sum_ns / 1e9, name,
            (unsigned long long)h->count);
}

void tandem_route_counts_write(FILE *out, const struct tandem_metrics *m,
                               const char *const *route_names, unsigned n_routes)
{
    fprintf(out, "# HELP tandem_http_requests_total HTTP requests by route and status code.\n"
                 "# TYPE tandem_http_requests_total counter\n");
    for (unsigned r = 0; r < n_routes && r < TANDEM_METRICS_ROUTES_MAX; r++) {
        const struct tandem_route_counts *rc = &m->routes[r];
        for (unsigned i = 0; i < TANDEM_METRICS_CODES_MAX && rc->codes[i] != 0; i++) {
            fprintf(out, "tandem_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                    route_names[r], rc->codes[i], (unsigned long long)rc->counts[i]);
        }
    }
}

void tandem_connections_refused_write(FILE *out, const char *listener, const char *reason,
                                      uint64_t count)
{
    fprintf(out, "tandem_connections_refused_total{listener=\"%s\",reason=\"%s\"} %llu\n", listener,
            reason, (unsigned long long)count);
}
