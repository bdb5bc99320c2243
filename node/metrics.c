/* Fixed-size histograms and counters rendered as Prometheus text. */
#include "node/metrics.h"

#include "storage/assert.h"

#include <string.h>

static uint64_t bucket_bound_ns(unsigned i)
{
    return (uint64_t)50000 << i;
}

const char *tandem_metrics_label(const char *value, char *buf)
{
    size_t n = 0;
    for (const char *c = value != NULL ? value : ""; *c != '\0'; c++) {
        const char *escaped = *c == '\\' ? "\\\\" : *c == '"' ? "\\\"" : *c == '\n' ? "\\n" : NULL;
        size_t need = escaped != NULL ? 2 : 1;
        if (n + need >= TANDEM_METRICS_LABEL_MAX) {
            break;
        }
        if (escaped != NULL) {
            memcpy(buf + n, escaped, 2);
        } else {
            buf[n] = *c;
        }
        n += need;
    }
    buf[n] = '\0';
    return buf;
}

void tandem_metrics_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s ", name);
    for (const char *c = help; *c != '\0'; c++) {
        if (*c == '\\' || *c == '\n') {
            fputs(*c == '\\' ? "\\\\" : "\\n", out);
        } else {
            fputc(*c, out);
        }
    }
    fprintf(out, "\n# TYPE %s %s\n", name, type);
}

void tandem_metrics_scalars_write(FILE *out, const struct tandem_metrics_scalar *scalars, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tandem_metrics_family(out, scalars[i].name, scalars[i].type, scalars[i].help);
        fprintf(out, "%s %llu\n", scalars[i].name, (unsigned long long)scalars[i].value);
    }
}

void tandem_metrics_leader_seen(struct tandem_metrics *m, uint64_t leader_id)
{
    if (leader_id != 0 && leader_id != m->leader_seen) {
        m->leader_seen = leader_id;
        m->leader_changes++;
    }
}

uint64_t tandem_loop_lag_tick(struct tandem_loop_lag *l, uint64_t now_ns)
{
    const uint64_t interval_ns = (uint64_t)TANDEM_LOOP_LAG_INTERVAL_MS * 1000000u;
    uint64_t late_ns = 0;
    if (l->last_ns != 0 && now_ns > l->last_ns + interval_ns) {
        late_ns = now_ns - l->last_ns - interval_ns;
    }
    if (l->last_ns != 0) {
        tandem_histogram_observe(&l->lag, late_ns);
        l->max_ns = late_ns > l->max_ns ? late_ns : l->max_ns;
    }
    l->last_ns = now_ns;
    return late_ns;
}

uint64_t tandem_loop_lag_held(struct tandem_loop_lag *l, uint64_t late_ns, uint64_t runq_ns)
{
    uint64_t held_ns = late_ns > runq_ns ? late_ns - runq_ns : 0;
    l->held_max_ns = held_ns > l->held_max_ns ? held_ns : l->held_max_ns;
    return held_ns;
}

void tandem_loop_lag_write(FILE *out, const struct tandem_loop_lag *l)
{
    tandem_histogram_write(out, "tandem_loop_lag_seconds",
                           "How late a timer repeating every 10 ms runs: how long the event loop "
                           "was held by callbacks (heartbeats wait that long).",
                           &l->lag);
    tandem_metrics_family(out, "tandem_loop_lag_max_seconds", "gauge",
                          "The longest loop lag since this process started.");
    fprintf(out, "tandem_loop_lag_max_seconds %.9f\n", (double)l->max_ns / 1e9);
    tandem_metrics_family(out, "tandem_loop_held_max_seconds", "gauge",
                          "The longest loop lag since this process started less the time the "
                          "loop thread waited for a CPU meanwhile: how long the loop's own work "
                          "(callbacks, blocking calls) held it, whatever else the machine ran.");
    fprintf(out, "tandem_loop_held_max_seconds %.9f\n", (double)l->held_max_ns / 1e9);
    tandem_metrics_family(out, "tandem_loop_cpu_wait_seconds_total", "counter",
                          "Time the loop thread was ready to run but waited for a CPU (other "
                          "processes and threads had them): lag that is the machine's, not the "
                          "loop's own work.");
    fprintf(out, "tandem_loop_cpu_wait_seconds_total %.9f\n", (double)l->seen.runq_ns / 1e9);
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

uint64_t tandem_histogram_quantile_us(const struct tandem_histogram *h, double q)
{
    tandem_assert(q > 0.0 && q <= 1.0);
    if (h->count == 0) {
        return 0;
    }
    /* The rank of the quantile among the observations, 1-based, rounded up. */
    uint64_t rank = (uint64_t)((double)h->count * q);
    rank += (double)rank < (double)h->count * q ? 1 : 0;
    rank = rank == 0 ? 1 : rank;
    uint64_t cumulative = 0;
    for (unsigned i = 0; i < TANDEM_HISTOGRAM_BUCKETS; i++) {
        cumulative += h->buckets[i];
        if (cumulative >= rank) {
            return bucket_bound_ns(i) / 1000u;
        }
    }
    return bucket_bound_ns(TANDEM_HISTOGRAM_BUCKETS - 1) / 1000u; /* past the largest bound */
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
    tandem_metrics_family(out, name, "histogram", help);
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
    char label[TANDEM_METRICS_LABEL_MAX];
    tandem_metrics_family(out, "tandem_http_requests_total", "counter",
                          "HTTP requests by route and status code.");
    for (unsigned r = 0; r < n_routes && r < TANDEM_METRICS_ROUTES_MAX; r++) {
        const struct tandem_route_counts *rc = &m->routes[r];
        for (unsigned i = 0; i < TANDEM_METRICS_CODES_MAX && rc->codes[i] != 0; i++) {
            fprintf(out, "tandem_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                    tandem_metrics_label(route_names[r], label), rc->codes[i],
                    (unsigned long long)rc->counts[i]);
        }
    }
}

void tandem_connections_refused_write(FILE *out, const char *listener, const char *reason,
                                      uint64_t count)
{
    fprintf(out, "tandem_connections_refused_total{listener=\"%s\",reason=\"%s\"} %llu\n", listener,
            reason, (unsigned long long)count);
}
