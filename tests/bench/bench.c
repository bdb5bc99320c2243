/* tandem-bench: an HTTP load generator that drives tandem's KV API or etcd's v3 JSON gateway
 * with the same client code and reports throughput, a latency histogram and errors by kind. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "tests/bench/bench_conn.h"
#include "tests/bench/bench_hist.h"
#include "tests/bench/bench_http.h"

#define BENCH_ENDPOINTS_MAX   16      /* --endpoints URLs */
#define BENCH_CONNECTIONS_MAX 4096    /* --connections; the file-descriptor limit bites first */
#define BENCH_DURATION_S_MAX  86400.0 /* --duration and --warmup */
#define BENCH_OPS_MAX         UINT64_C(1000000000000)
#define BENCH_RATE_MAX        10000000.0 /* --rate, ops/s */
#define BENCH_KEYS_MAX        UINT64_C(1000000000)
#define BENCH_TIMEOUT_MS_MAX  3600000u
#define BENCH_TIMEOUT_MS_DEF  10000u
/* Open loop: sends that came due on one connection while its request was out wait in a backlog
 * this long at most; older ones are dropped and counted (kind "dropped"). */
#define BENCH_OPEN_BACKLOG_MAX 1000u
/* After a connect, io, timeout or parse error (each drops the connection) a connection waits this
 * long before its next request, so a dead server costs a few attempts per second, not a busy loop.
 */
#define BENCH_RETRY_DELAY_MS 50u
/* A 503 (tandem: a full raft log, or a busy pool) is the server asking for the same request
 * again: it is sent again after this, up to BENCH_BUSY_TRIES_MAX times, its latency counting
 * from the first send; then it counts as http_5xx. */
#define BENCH_BUSY_DELAY_MS  100u
#define BENCH_BUSY_TRIES_MAX 600u
#define BENCH_EARLY_NS       1000000u /* open loop: send up to 1 ms early (timer granularity) */
#define BENCH_SAMPLE_BYTES   200      /* first error message kept per kind */

struct bench_options {
    enum tandem_bench_target target;
    const char *endpoints; /* borrowed from argv */
    unsigned connections, timeout_ms;
    double rate, duration_s, warmup_s, read_ratio;
    uint64_t ops, keys, seed;
    size_t value_size;
    const char *cacert, *cert, *key; /* borrowed from argv or the environment; NULL = none */
    int local_reads, json, sequential;
};

struct bench_run;

struct bench_worker {
    struct tandem_bench_conn conn; /* conn.data = this */
    uv_timer_t pace;               /* open-loop schedule and retry delay */
    struct bench_run *run;         /* borrowed */
    uint64_t rng;
    uint64_t interval_ns, next_ns; /* open loop: this connection's share of --rate */
    uint64_t start_ns;             /* latency start of the request in flight */
    enum tandem_bench_op op;       /* the request in flight, sent again after a 503 */
    uint64_t key;
    unsigned busy_tries;
    int measured; /* the request in flight belongs to the measured window */
    int handles_open;
};

struct bench_run {
    uv_loop_t loop;
    const struct bench_options *opt; /* borrowed */
    struct tandem_bench_endpoint endpoints[BENCH_ENDPOINTS_MAX];
    unsigned endpoint_count;
    struct tandem_bench_payload payload;
    struct tandem_tls_ctx *tls_ctx; /* owned; NULL without --cacert/--cert/--key */
    struct bench_worker *workers;   /* owned */
    unsigned workers_ready;         /* workers[0..workers_ready) have both handles open */
    uv_timer_t phase;               /* end of warmup, then end of the run */
    uv_signal_t sigint;
    int phase_open, sigint_open;
    uint64_t begin_ns, measure_start_ns, measure_end_ns;
    int measuring, stopping, interrupted;
    uint64_t issued, finished, next_key;
    uint64_t reads, writes;
    uint64_t outcomes[TANDEM_BENCH_OUTCOME_COUNT];
    uint64_t busy_retries; /* requests sent again after a 503 */
    char samples[TANDEM_BENCH_OUTCOME_COUNT][BENCH_SAMPLE_BYTES];
    struct tandem_bench_hist hist;
};

static void issue(struct bench_worker *w, uint64_t intended_ns);
static void schedule(struct bench_worker *w);
static void stop(struct bench_run *run);

static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state; /* xorshift64*: fast, and any decent spread will do for key choice */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

static void keep_sample(struct bench_run *run, struct bench_worker *w,
                        enum tandem_bench_outcome outcome)
{
    char *sample = run->samples[outcome];
    if (outcome == TANDEM_BENCH_OUTCOME_OK || sample[0] != '\0') {
        return;
    }
    const struct tandem_bench_conn *c = &w->conn;
    if (outcome == TANDEM_BENCH_OUTCOME_CONNECT || outcome == TANDEM_BENCH_OUTCOME_IO) {
        const char *why = c->last_error != 0 ? uv_strerror(c->last_error) : "connection closed";
        snprintf(sample, BENCH_SAMPLE_BYTES, "%s: %s", c->endpoint->url,
                 c->last_error == UV_EPROTO && c->tls_error[0] != '\0' ? c->tls_error : why);
    } else if (outcome == TANDEM_BENCH_OUTCOME_TIMEOUT) {
        snprintf(sample, BENCH_SAMPLE_BYTES, "%s: no response in %u ms", c->endpoint->url,
                 c->timeout_ms);
    } else if (outcome == TANDEM_BENCH_OUTCOME_DROPPED) {
        snprintf(sample, BENCH_SAMPLE_BYTES, "%s: more than %u sends overdue", c->endpoint->url,
                 BENCH_OPEN_BACKLOG_MAX);
    } else if (outcome == TANDEM_BENCH_OUTCOME_PARSE) {
        snprintf(sample, BENCH_SAMPLE_BYTES, "%s: %s (HTTP status %d)", c->endpoint->url,
                 c->parse_error != NULL ? c->parse_error : "malformed response", c->status);
    } else {
        int len = (int)(c->body_prefix_len < 120 ? c->body_prefix_len : 120);
        snprintf(sample, BENCH_SAMPLE_BYTES, "%s: HTTP %d %.*s", c->endpoint->url, c->status, len,
                 c->body_prefix);
    }
}

static void account(struct bench_worker *w, enum tandem_bench_outcome outcome, uint64_t done_ns,
                    enum tandem_bench_op op)
{
    struct bench_run *run = w->run;
    if (!w->measured || run->stopping) {
        return;
    }
    run->finished++;
    run->outcomes[outcome]++;
    keep_sample(run, w, outcome);
    if (outcome == TANDEM_BENCH_OUTCOME_OK) {
        tandem_bench_hist_record(&run->hist, (done_ns - w->start_ns) / 1000u);
        if (op == TANDEM_BENCH_OP_READ) {
            run->reads++;
        } else {
            run->writes++;
        }
    }
    if (run->opt->ops > 0 && run->finished >= run->opt->ops) {
        stop(run);
    }
}

static void retry_later(struct bench_worker *w);
static void busy_resend_cb(uv_timer_t *timer);

static void conn_cb(struct tandem_bench_conn *conn, enum tandem_bench_outcome outcome,
                    uint64_t done_ns)
{
    struct bench_worker *w = conn->data;
    if (outcome == TANDEM_BENCH_OUTCOME_HTTP_5XX && conn->status == 503 && !w->run->stopping &&
        w->busy_tries < BENCH_BUSY_TRIES_MAX &&
        uv_timer_start(&w->pace, busy_resend_cb, BENCH_BUSY_DELAY_MS, 0) == 0) {
        w->busy_tries++;
        w->run->busy_retries += (uint64_t)w->measured;
        return;
    }
    account(w, outcome, done_ns, conn->request.op);
    if (w->run->stopping) {
        return;
    }
    if (outcome == TANDEM_BENCH_OUTCOME_CONNECT || outcome == TANDEM_BENCH_OUTCOME_IO ||
        outcome == TANDEM_BENCH_OUTCOME_TIMEOUT || outcome == TANDEM_BENCH_OUTCOME_PARSE) {
        retry_later(w);
    } else if (w->run->opt->rate > 0) {
        schedule(w);
    } else {
        issue(w, uv_hrtime());
    }
}

static void pace_cb(uv_timer_t *timer)
{
    struct bench_worker *w = timer->data;
    if (w->run->opt->rate > 0) {
        schedule(w);
    } else {
        issue(w, uv_hrtime());
    }
}

/* The request a 503 answered, once more. */
static void busy_resend_cb(uv_timer_t *timer)
{
    struct bench_worker *w = timer->data;
    if (w->run->stopping) {
        return;
    }
    int rv = tandem_bench_conn_send(&w->conn, w->op, w->key);
    if (rv != 0) {
        w->conn.last_error = rv;
        account(w, TANDEM_BENCH_OUTCOME_CONNECT, uv_hrtime(), w->op);
        if (!w->run->stopping) {
            retry_later(w);
        }
    }
}

static void retry_later(struct bench_worker *w)
{
    if (uv_timer_start(&w->pace, pace_cb, BENCH_RETRY_DELAY_MS, 0) != 0) {
        stop(w->run); /* only fails on a closing handle: the run is ending anyway */
    }
}

/* Sends one operation whose latency counts from intended_ns (its slot in the open-loop
 * schedule: a late send is charged its wait, so overload shows in the latency) or from the
 * moment it is sent, whichever is earlier (a send up to BENCH_EARLY_NS early, for timer
 * granularity, is measured from when it left). */
static void issue(struct bench_worker *w, uint64_t intended_ns)
{
    struct bench_run *run = w->run;
    const struct bench_options *opt = run->opt;
    if (run->stopping || (opt->ops > 0 && run->measuring && run->issued >= opt->ops)) {
        return;
    }
    uint64_t draw = rng_next(&w->rng);
    enum tandem_bench_op op = (double)(draw >> 11) * 0x1.0p-53 < opt->read_ratio
                                  ? TANDEM_BENCH_OP_READ
                                  : TANDEM_BENCH_OP_WRITE;
    uint64_t key = opt->sequential ? run->next_key++ % opt->keys : rng_next(&w->rng) % opt->keys;
    uint64_t now = uv_hrtime();
    w->start_ns = intended_ns < now ? intended_ns : now;
    w->measured = run->measuring;
    w->op = op;
    w->key = key;
    w->busy_tries = 0;
    run->issued += (uint64_t)run->measuring;
    int rv = tandem_bench_conn_send(&w->conn, op, key);
    if (rv != 0) {
        w->conn.last_error = rv;
        account(w, TANDEM_BENCH_OUTCOME_CONNECT, now, op);
        if (!run->stopping) {
            retry_later(w);
        }
    }
}

/* Open loop: sends the next due operation, dropping what is more than BENCH_OPEN_BACKLOG_MAX
 * behind, or sleeps until the next one is due. */
static void schedule(struct bench_worker *w)
{
    struct bench_run *run = w->run;
    uint64_t now = uv_hrtime();
    if (w->next_ns > now + BENCH_EARLY_NS) {
        uint64_t wait_ms = (w->next_ns - now) / 1000000u;
        if (uv_timer_start(&w->pace, pace_cb, wait_ms, 0) != 0) {
            stop(run);
        }
        return;
    }
    if (now > w->next_ns) {
        uint64_t behind = (now - w->next_ns) / w->interval_ns;
        if (behind > BENCH_OPEN_BACKLOG_MAX) {
            uint64_t skip = behind - BENCH_OPEN_BACKLOG_MAX;
            w->next_ns += skip * w->interval_ns;
            w->measured = run->measuring;
            for (uint64_t i = 0; i < skip && !run->stopping; i++) {
                run->issued += (uint64_t)run->measuring;
                account(w, TANDEM_BENCH_OUTCOME_DROPPED, now, TANDEM_BENCH_OP_WRITE);
            }
        }
    }
    uint64_t intended = w->next_ns;
    w->next_ns += w->interval_ns;
    issue(w, intended);
}

static void begin_measuring(struct bench_run *run);

static void phase_cb(uv_timer_t *timer)
{
    struct bench_run *run = timer->data;
    if (!run->measuring) {
        begin_measuring(run);
    } else {
        stop(run);
    }
}

/* Everything before this was warmup: forget it and start the clock of the measured window. */
static void begin_measuring(struct bench_run *run)
{
    const struct bench_options *opt = run->opt;
    run->measuring = 1;
    run->measure_start_ns = uv_hrtime();
    if (opt->ops == 0) {
        uint64_t ms = (uint64_t)llround(opt->duration_s * 1000.0);
        if (uv_timer_start(&run->phase, phase_cb, ms, 0) != 0) {
            stop(run);
        }
    }
}

static void worker_handle_closed(struct bench_worker *w)
{
    w->handles_open--;
}

static void pace_close_cb(uv_handle_t *handle)
{
    worker_handle_closed(handle->data);
}

static void conn_close_cb(struct tandem_bench_conn *conn)
{
    worker_handle_closed(conn->data);
}

static void stop(struct bench_run *run)
{
    if (run->stopping) {
        return;
    }
    run->stopping = 1;
    run->measure_end_ns = run->measuring ? uv_hrtime() : run->measure_start_ns;
    for (unsigned i = 0; i < run->workers_ready; i++) {
        struct bench_worker *w = &run->workers[i];
        uv_timer_stop(&w->pace);
        uv_close((uv_handle_t *)&w->pace, pace_close_cb);
        tandem_bench_conn_close(&w->conn, conn_close_cb);
    }
    if (run->phase_open) {
        uv_close((uv_handle_t *)&run->phase, NULL);
    }
    if (run->sigint_open) {
        uv_close((uv_handle_t *)&run->sigint, NULL);
    }
}

static void sigint_cb(uv_signal_t *signal, int signum)
{
    struct bench_run *run = signal->data;
    (void)signum;
    run->interrupted = 1;
    stop(run);
}

/* Splits the comma-separated --endpoints into run->endpoints. */
static int parse_endpoints(struct bench_run *run, const char *list, char errmsg[256])
{
    char url[TANDEM_BENCH_URL_BYTES_MAX];
    const char *p = list;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        if (run->endpoint_count == BENCH_ENDPOINTS_MAX) {
            snprintf(errmsg, 256, "more than %d endpoints", BENCH_ENDPOINTS_MAX);
            return -1;
        }
        if (len >= sizeof url) {
            snprintf(errmsg, 256, "endpoint longer than %zu bytes", sizeof url - 1);
            return -1;
        }
        memcpy(url, p, len);
        url[len] = '\0';
        if (len > 0) {
            struct tandem_bench_endpoint *e = &run->endpoints[run->endpoint_count];
            if (tandem_bench_endpoint_parse(e, url, errmsg) != 0) {
                return -1;
            }
            if (e->tls && run->tls_ctx == NULL) {
                snprintf(errmsg, 256,
                         "%s: an https endpoint needs --cacert, --cert and --key "
                         "(or TANDEM_CACERT, TANDEM_CERT, TANDEM_KEY)",
                         url);
                return -1;
            }
            run->endpoint_count++;
        }
        p += len + (p[len] == ',');
    }
    if (run->endpoint_count == 0) {
        snprintf(errmsg, 256, "--endpoints names no URL");
        return -1;
    }
    return 0;
}

static int start_workers(struct bench_run *run, char errmsg[256])
{
    const struct bench_options *opt = run->opt;
    uint64_t now = uv_hrtime();
    for (unsigned i = 0; i < opt->connections; i++) {
        struct bench_worker *w = &run->workers[i];
        w->run = run;
        w->rng = opt->seed + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15) + 1u;
        w->conn.data = w;
        int rv =
            tandem_bench_conn_init(&w->conn, &run->loop, &run->endpoints[i % run->endpoint_count],
                                   &run->payload, run->tls_ctx, opt->timeout_ms, conn_cb);
        if (rv == 0) {
            rv = uv_timer_init(&run->loop, &w->pace);
            if (rv != 0) {
                tandem_bench_conn_close(&w->conn, NULL);
            }
        }
        if (rv != 0) {
            snprintf(errmsg, 256, "connection %u: %s", i, uv_strerror(rv));
            return -1;
        }
        w->pace.data = w;
        w->handles_open = 2;
        run->workers_ready++;
        if (opt->rate > 0) {
            /* Each connection takes every connections-th slot of one schedule at --rate. */
            double slot_ns = 1e9 / opt->rate;
            w->interval_ns = (uint64_t)llround(slot_ns * opt->connections);
            w->next_ns = now + (uint64_t)llround(slot_ns * i);
        }
    }
    return 0;
}

/* Loads the client identity for https:// endpoints when --cacert/--cert/--key (or the
 * environment) name one: all three or none. */
static int tls_init(struct bench_run *run, char errmsg[256])
{
    const struct bench_options *opt = run->opt;
    int given = (opt->cacert != NULL) + (opt->cert != NULL) + (opt->key != NULL);
    if (given == 0) {
        return 0;
    }
    if (given != 3) {
        snprintf(errmsg, 256, "--cacert, --cert and --key go together");
        return -1;
    }
    struct tandem_tls_files files = {.ca = opt->cacert, .cert = opt->cert, .key = opt->key};
    char why[TANDEM_ERRMSG_SIZE];
    if (tandem_tls_ctx_new(&files, &run->tls_ctx, why) != TANDEM_OK) {
        snprintf(errmsg, 256, "TLS: %s", why);
        return -1;
    }
    return 0;
}

/* Everything of run that needs no undoing beyond run_free: loop, handles, payload, workers. */
static int run_init(struct bench_run *run, const struct bench_options *opt, char errmsg[256])
{
    memset(run, 0, sizeof *run);
    run->opt = opt;
    tandem_bench_hist_reset(&run->hist);
    if (tls_init(run, errmsg) != 0) {
        return -1;
    }
    if (parse_endpoints(run, opt->endpoints, errmsg) != 0) {
        goto err_after_tls;
    }
    if (tandem_bench_payload_init(&run->payload, opt->target, opt->value_size, opt->local_reads,
                                  opt->seed, errmsg) != 0) {
        goto err_after_tls;
    }
    run->workers = calloc(opt->connections, sizeof *run->workers);
    int rv = run->workers == NULL ? UV_ENOMEM : uv_loop_init(&run->loop);
    if (rv != 0) {
        snprintf(errmsg, 256, "setting up: %s", uv_strerror(rv));
        goto err_after_payload;
    }
    rv = uv_timer_init(&run->loop, &run->phase);
    run->phase_open = rv == 0;
    if (rv == 0) {
        rv = uv_signal_init(&run->loop, &run->sigint);
        run->sigint_open = rv == 0;
    }
    if (rv != 0) {
        snprintf(errmsg, 256, "setting up: %s", uv_strerror(rv));
        goto err_after_loop;
    }
    run->phase.data = run;
    run->sigint.data = run;
    if (start_workers(run, errmsg) != 0) {
        goto err_after_loop;
    }
    return 0;
err_after_loop:
    stop(run); /* closes every handle opened so far */
    uv_run(&run->loop, UV_RUN_DEFAULT);
    uv_loop_close(&run->loop);
err_after_payload:
    free(run->workers);
    tandem_bench_payload_free(&run->payload);
err_after_tls:
    tandem_tls_ctx_free(run->tls_ctx);
    return -1;
}

/* Runs the loop until the run stops by itself (duration, op count) or on SIGINT. */
static int run_execute(struct bench_run *run, char errmsg[256])
{
    const struct bench_options *opt = run->opt;
    int rv = uv_signal_start(&run->sigint, sigint_cb, SIGINT);
    run->begin_ns = uv_hrtime();
    if (rv == 0 && opt->warmup_s > 0) {
        rv = uv_timer_start(&run->phase, phase_cb, (uint64_t)llround(opt->warmup_s * 1000.0), 0);
    } else if (rv == 0) {
        begin_measuring(run);
    }
    if (rv != 0) {
        snprintf(errmsg, 256, "starting: %s", uv_strerror(rv));
        stop(run);
    }
    for (unsigned i = 0; i < run->workers_ready && !run->stopping; i++) {
        if (opt->rate > 0) {
            schedule(&run->workers[i]);
        } else {
            issue(&run->workers[i], uv_hrtime());
        }
    }
    uv_run(&run->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < run->workers_ready; i++) {
        if (run->workers[i].handles_open != 0) {
            snprintf(errmsg, 256, "connection %u still had handles open after the run", i);
            rv = UV_EBUSY;
        }
    }
    return rv == 0 ? 0 : -1;
}

static void run_free(struct bench_run *run)
{
    uv_loop_close(&run->loop);
    free(run->workers);
    run->workers = NULL;
    tandem_bench_payload_free(&run->payload);
    tandem_tls_ctx_free(run->tls_ctx);
    run->tls_ctx = NULL;
}

/* TCP connections made over the whole run, warmup included: more than --connections means
 * the server closed keep-alive connections or errors broke them. */
static uint64_t connects_total(const struct bench_run *run)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < run->workers_ready; i++) {
        total += run->workers[i].conn.connects;
    }
    return total;
}

static double measured_seconds(const struct bench_run *run)
{
    return (double)(run->measure_end_ns - run->measure_start_ns) / 1e9;
}

static uint64_t error_total(const struct bench_run *run)
{
    uint64_t total = 0;
    for (int k = TANDEM_BENCH_OUTCOME_OK + 1; k < TANDEM_BENCH_OUTCOME_COUNT; k++) {
        total += run->outcomes[k];
    }
    return total;
}

static const double report_percentiles[] = {50.0, 90.0, 99.0, 99.9};
static const char *const report_percentile_names[] = {"p50", "p90", "p99", "p99_9"};
#define REPORT_PERCENTILES (sizeof report_percentiles / sizeof report_percentiles[0])

static void report_table(const struct bench_run *run)
{
    const struct bench_options *opt = run->opt;
    double seconds = measured_seconds(run);
    uint64_t ok = run->outcomes[TANDEM_BENCH_OUTCOME_OK];
    printf("target     %s, %u connection(s) over %u endpoint(s), %s",
           opt->target == TANDEM_BENCH_TARGET_TANDEM ? "tandem" : "etcd", opt->connections,
           run->endpoint_count, opt->rate > 0 ? "open loop" : "closed loop");
    if (opt->rate > 0) {
        printf(" at %.0f ops/s", opt->rate);
    }
    printf("\nworkload   %.0f%% reads (%s), %zu-byte values, %" PRIu64 " keys\n",
           opt->read_ratio * 100.0, opt->local_reads ? "local" : "linearizable", opt->value_size,
           opt->keys);
    printf("measured   %.2f s after %.2f s warmup%s, %" PRIu64 " connects\n", seconds,
           opt->warmup_s, run->interrupted ? " (interrupted)" : "", connects_total(run));
    printf("ops        %" PRIu64 " ok (%" PRIu64 " writes, %" PRIu64 " reads), %.1f ops/s\n", ok,
           run->writes, run->reads, seconds > 0 ? (double)ok / seconds : 0.0);
    printf("latency ms");
    for (size_t i = 0; i < REPORT_PERCENTILES; i++) {
        printf("  p%g %.3f", report_percentiles[i],
               (double)tandem_bench_hist_percentile(&run->hist, report_percentiles[i]) / 1000.0);
    }
    printf("  max %.3f  mean %.3f\n", (double)run->hist.max_us / 1000.0,
           tandem_bench_hist_mean(&run->hist) / 1000.0);
    printf("errors     %" PRIu64 " (", error_total(run));
    for (int k = TANDEM_BENCH_OUTCOME_OK + 1; k < TANDEM_BENCH_OUTCOME_COUNT; k++) {
        printf("%s%s %" PRIu64, k == 1 ? "" : ", ", tandem_bench_outcome_name(k), run->outcomes[k]);
    }
    printf(")\n");
    if (run->busy_retries > 0) {
        printf("retried    %" PRIu64 " sends again after a 503\n", run->busy_retries);
    }
    for (int k = TANDEM_BENCH_OUTCOME_OK + 1; k < TANDEM_BENCH_OUTCOME_COUNT; k++) {
        if (run->samples[k][0] != '\0') {
            printf("  first %s: %s\n", tandem_bench_outcome_name(k), run->samples[k]);
        }
    }
}

/* json_object_set_new that keeps going on failure: the dump below then fails as a whole. */
static void put(json_t *object, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(object, key, value) != 0) {
        json_object_set_new(object, "incomplete", json_true());
    }
}

static json_t *report_json_counters(const struct bench_run *run)
{
    json_t *errors = json_object();
    json_t *samples = json_object();
    if (errors == NULL || samples == NULL) {
        json_decref(errors);
        json_decref(samples);
        return NULL;
    }
    put(errors, "total", json_integer((json_int_t)error_total(run)));
    for (int k = TANDEM_BENCH_OUTCOME_OK + 1; k < TANDEM_BENCH_OUTCOME_COUNT; k++) {
        put(errors, tandem_bench_outcome_name(k), json_integer((json_int_t)run->outcomes[k]));
        if (run->samples[k][0] != '\0') {
            put(samples, tandem_bench_outcome_name(k), json_string(run->samples[k]));
        }
    }
    put(errors, "samples", samples);
    return errors;
}

static int report_json(const struct bench_run *run)
{
    const struct bench_options *opt = run->opt;
    double seconds = measured_seconds(run);
    uint64_t ok = run->outcomes[TANDEM_BENCH_OUTCOME_OK];
    json_t *root = json_object();
    json_t *endpoints = json_array();
    json_t *latency = json_object();
    if (root == NULL || endpoints == NULL || latency == NULL) {
        json_decref(root);
        json_decref(endpoints);
        json_decref(latency);
        return -1;
    }
    for (unsigned i = 0; i < run->endpoint_count; i++) {
        json_array_append_new(endpoints, json_string(run->endpoints[i].url));
    }
    put(root, "target", json_string(opt->target == TANDEM_BENCH_TARGET_TANDEM ? "tandem" : "etcd"));
    put(root, "endpoints", endpoints);
    put(root, "connections", json_integer(opt->connections));
    put(root, "mode", json_string(opt->rate > 0 ? "open" : "closed"));
    put(root, "rate", json_real(opt->rate));
    put(root, "read_ratio", json_real(opt->read_ratio));
    put(root, "consistency", json_string(opt->local_reads ? "local" : "linearizable"));
    put(root, "value_size", json_integer((json_int_t)opt->value_size));
    put(root, "keys", json_integer((json_int_t)opt->keys));
    put(root, "warmup_s", json_real(opt->warmup_s));
    put(root, "duration_s", json_real(seconds));
    put(root, "interrupted", json_boolean(run->interrupted));
    put(root, "connects", json_integer((json_int_t)connects_total(run)));
    put(root, "ops", json_integer((json_int_t)ok));
    put(root, "writes", json_integer((json_int_t)run->writes));
    put(root, "reads", json_integer((json_int_t)run->reads));
    put(root, "ops_per_s", json_real(seconds > 0 ? (double)ok / seconds : 0.0));
    for (size_t i = 0; i < REPORT_PERCENTILES; i++) {
        uint64_t us = tandem_bench_hist_percentile(&run->hist, report_percentiles[i]);
        put(latency, report_percentile_names[i], json_integer((json_int_t)us));
    }
    put(latency, "max", json_integer((json_int_t)run->hist.max_us));
    put(latency, "mean", json_real(tandem_bench_hist_mean(&run->hist)));
    put(root, "latency_us", latency);
    put(root, "errors", report_json_counters(run));
    put(root, "busy_retries", json_integer((json_int_t)run->busy_retries));
    char *text = json_object_get(root, "incomplete") != NULL
                     ? NULL
                     : json_dumps(root, JSON_REAL_PRECISION(6));
    json_decref(root);
    if (text == NULL) {
        return -1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

static const char usage_text[] =
    "usage: tandem-bench --target tandem|etcd --endpoints URL[,URL...] [options]\n"
    "  --connections N      connections, spread over the endpoints round-robin (default 16);\n"
    "                       one request in flight on each (no pipelining)\n"
    "  --rate OPS_PER_S     open loop at this total rate, latency counted from each request's\n"
    "                       scheduled time; 0 = closed loop (default)\n"
    "  --duration SECONDS   measured time (default 10), or\n"
    "  --ops N              measured operations (attempts, errors included)\n"
    "  --warmup SECONDS     load before measuring, not reported (default 0)\n"
    "  --keys N             keys bench-0 .. bench-N-1 (default 10000)\n"
    "  --key-order random|sequential   sequential writes each key once per N ops (preload)\n"
    "  --value-size BYTES   written values (default 256)\n"
    "  --read-ratio 0..1    share of reads (default 0: writes only)\n"
    "  --consistency linearizable|local   reads: tandem ?consistency=local, etcd serializable\n"
    "  --timeout-ms MS      per request, connect included (default 10000)\n"
    "  --seed N             key choice and value bytes (default 1)\n"
    "  --cacert FILE --cert FILE --key FILE   for https:// endpoints: the cluster CA and the\n"
    "                       client certificate (a user's or a node's) with its key; default\n"
    "                       TANDEM_CACERT, TANDEM_CERT, TANDEM_KEY. TLS 1.3, the server must\n"
    "                       present a node certificate of the CA\n"
    "  -o table|json        report format (default table)\n"
    "tandem: PUT/GET /v1/kv/bench-<n>. etcd: POST /v3/kv/put and /v3/kv/range, base64 keys.\n"
    "Writes sent to a tandem follower are forwarded to the leader: point write benchmarks at\n"
    "the leader's URL to measure replication alone.\n";

static int parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (text[0] < '0' || text[0] > '9') {
        return -1;
    }
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *text, double min, double max, double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !(v >= min && v <= max)) {
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    OPT_TARGET = 256,
    OPT_ENDPOINTS,
    OPT_CONNECTIONS,
    OPT_RATE,
    OPT_DURATION,
    OPT_OPS,
    OPT_WARMUP,
    OPT_KEYS,
    OPT_KEY_ORDER,
    OPT_VALUE_SIZE,
    OPT_READ_RATIO,
    OPT_CONSISTENCY,
    OPT_TIMEOUT,
    OPT_SEED,
    OPT_CACERT,
    OPT_CERT,
    OPT_KEY,
};

static const struct option long_options[] = {
    {"target", required_argument, NULL, OPT_TARGET},
    {"endpoints", required_argument, NULL, OPT_ENDPOINTS},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"ops", required_argument, NULL, OPT_OPS},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"key-order", required_argument, NULL, OPT_KEY_ORDER},
    {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
    {"read-ratio", required_argument, NULL, OPT_READ_RATIO},
    {"consistency", required_argument, NULL, OPT_CONSISTENCY},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Applies one option; -1 with errmsg filled when its value is not acceptable. */
static int apply_option(struct bench_options *opt, int c, const char *arg, char errmsg[256])
{
    uint64_t u = 0;
    int rv = 0;
    switch (c) {
        case OPT_TARGET:
            rv = strcmp(arg, "tandem") == 0 || strcmp(arg, "etcd") == 0 ? 0 : -1;
            opt->target =
                strcmp(arg, "etcd") == 0 ? TANDEM_BENCH_TARGET_ETCD : TANDEM_BENCH_TARGET_TANDEM;
            break;
        case OPT_ENDPOINTS:
            opt->endpoints = arg;
            break;
        case OPT_CONNECTIONS:
            rv = parse_u64(arg, 1, BENCH_CONNECTIONS_MAX, &u);
            opt->connections = (unsigned)u;
            break;
        case OPT_RATE:
            rv = parse_double(arg, 0, BENCH_RATE_MAX, &opt->rate);
            break;
        case OPT_DURATION:
            rv = parse_double(arg, 0.001, BENCH_DURATION_S_MAX, &opt->duration_s);
            break;
        case OPT_OPS:
            rv = parse_u64(arg, 1, BENCH_OPS_MAX, &opt->ops);
            break;
        case OPT_WARMUP:
            rv = parse_double(arg, 0, BENCH_DURATION_S_MAX, &opt->warmup_s);
            break;
        case OPT_KEYS:
            rv = parse_u64(arg, 1, BENCH_KEYS_MAX, &opt->keys);
            break;
        case OPT_KEY_ORDER:
            rv = strcmp(arg, "random") == 0 || strcmp(arg, "sequential") == 0 ? 0 : -1;
            opt->sequential = strcmp(arg, "sequential") == 0;
            break;
        case OPT_VALUE_SIZE:
            rv = parse_u64(arg, 0, TANDEM_BENCH_VALUE_BYTES_MAX, &u);
            opt->value_size = (size_t)u;
            break;
        case OPT_READ_RATIO:
            rv = parse_double(arg, 0, 1, &opt->read_ratio);
            break;
        case OPT_CONSISTENCY:
            rv = strcmp(arg, "linearizable") == 0 || strcmp(arg, "local") == 0 ? 0 : -1;
            opt->local_reads = strcmp(arg, "local") == 0;
            break;
        case OPT_TIMEOUT:
            rv = parse_u64(arg, 1, BENCH_TIMEOUT_MS_MAX, &u);
            opt->timeout_ms = (unsigned)u;
            break;
        case OPT_SEED:
            rv = parse_u64(arg, 0, UINT64_MAX, &opt->seed);
            break;
        case OPT_CACERT:
        case OPT_CERT:
        case OPT_KEY:
            rv = arg[0] != '\0' ? 0 : -1;
            *(c == OPT_CACERT ? &opt->cacert : c == OPT_CERT ? &opt->cert : &opt->key) = arg;
            break;
        case 'o':
            rv = strcmp(arg, "table") == 0 || strcmp(arg, "json") == 0 ? 0 : -1;
            opt->json = strcmp(arg, "json") == 0;
            break;
        default:
            rv = -1;
            break;
    }
    if (rv != 0) {
        snprintf(errmsg, 256, "bad value '%s' for an option (see --help)", arg);
    }
    return rv;
}

static const char *env_or_null(const char *name)
{
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

static int parse_options(struct bench_options *opt, int argc, char **argv, char errmsg[256])
{
    *opt = (struct bench_options){.connections = 16,
                                  .timeout_ms = BENCH_TIMEOUT_MS_DEF,
                                  .keys = 10000,
                                  .value_size = 256,
                                  .seed = 1,
                                  .cacert = env_or_null("TANDEM_CACERT"),
                                  .cert = env_or_null("TANDEM_CERT"),
                                  .key = env_or_null("TANDEM_KEY")};
    int target_given = 0, duration_given = 0, c;
    while ((c = getopt_long(argc, argv, "o:h", long_options, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (c == '?' || apply_option(opt, c, optarg, errmsg) != 0) {
            if (c == '?') {
                snprintf(errmsg, 256, "unknown option (see --help)");
            }
            return -1;
        }
        target_given |= c == OPT_TARGET;
        duration_given |= c == OPT_DURATION;
    }
    if (optind < argc || !target_given || opt->endpoints == NULL) {
        snprintf(errmsg, 256, "%s",
                 optind < argc ? "unexpected argument" : "--target and --endpoints are required");
        return -1;
    }
    if (duration_given && opt->ops > 0) {
        snprintf(errmsg, 256, "--duration and --ops exclude each other");
        return -1;
    }
    if (opt->ops == 0 && !duration_given) {
        opt->duration_s = 10.0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char errmsg[256] = "";
    struct bench_options opt;
    static struct bench_run run; /* large (histogram, endpoints): not on the stack */
    if (parse_options(&opt, argc, argv, errmsg) != 0) {
        fprintf(stderr, "tandem-bench: %s\n", errmsg);
        return 2;
    }
    if (run_init(&run, &opt, errmsg) != 0) {
        fprintf(stderr, "tandem-bench: %s\n", errmsg);
        return 1;
    }
    int rv = run_execute(&run, errmsg);
    if (rv == 0) {
        rv = opt.json ? report_json(&run) : (report_table(&run), 0);
        if (rv != 0) {
            snprintf(errmsg, 256, "out of memory writing the JSON report");
        }
    }
    run_free(&run);
    if (rv != 0) {
        fprintf(stderr, "tandem-bench: %s\n", errmsg);
        return 1;
    }
    return 0;
}
