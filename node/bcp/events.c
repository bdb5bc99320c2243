/* BCP notifications: the event ring, server-sent-events framing, the /v1/events streams and the
 * bcp_event_command runs (uv_spawn, bounded in time and in queue, never blocking the loop). */
#include "node/bcp/events.h"
#include "node/bcp/event_command.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/log.h"
#include "storage/assert.h"
#include "storage/clock.h"
#include "storage/domain_codec.h"
#include "storage/error.h"

/* ---- the ring ---- */

int tandem_event_ring_init(struct tandem_event_ring *ring, unsigned capacity)
{
    tandem_assert(capacity > 0);
    memset(ring, 0, sizeof *ring);
    ring->slots = calloc(capacity, sizeof *ring->slots);
    if (ring->slots == NULL) {
        return UV_ENOMEM;
    }
    ring->capacity = capacity;
    return 0;
}

void tandem_event_ring_fini(struct tandem_event_ring *ring)
{
    for (unsigned k = 0; k < ring->count; k++) {
        free(ring->slots[(ring->start + k) % ring->capacity].json);
    }
    free(ring->slots);
    memset(ring, 0, sizeof *ring);
}

const struct tandem_event_slot *tandem_event_ring_at(const struct tandem_event_ring *ring,
                                                     unsigned k)
{
    tandem_assert(k < ring->count);
    return &ring->slots[(ring->start + k) % ring->capacity];
}

int tandem_event_ring_push(struct tandem_event_ring *ring, uint64_t seq, const char *type,
                           const char *json)
{
    tandem_assert(ring->count == 0 || seq > tandem_event_ring_at(ring, ring->count - 1)->seq);
    char *copy = strdup(json);
    if (copy == NULL) {
        return UV_ENOMEM;
    }
    if (ring->count == ring->capacity) {
        struct tandem_event_slot *oldest = &ring->slots[ring->start];
        ring->dropped_seq_max = oldest->seq;
        free(oldest->json);
        ring->start = (ring->start + 1) % ring->capacity;
        ring->count--;
    }
    struct tandem_event_slot *slot = &ring->slots[(ring->start + ring->count) % ring->capacity];
    slot->seq = seq;
    snprintf(slot->type, sizeof slot->type, "%s", type);
    slot->json = copy;
    ring->count++;
    return 0;
}

unsigned tandem_event_ring_after(const struct tandem_event_ring *ring, uint64_t since, bool *gap)
{
    *gap = ring->dropped_seq_max > since;
    unsigned lo = 0, hi = ring->count; /* seqs increase: binary search */
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (tandem_event_ring_at(ring, mid)->seq <= since) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

size_t tandem_event_sse(char *out, size_t size, uint64_t seq, const char *type, const char *json)
{
    tandem_assert(strchr(json, '\n') == NULL && strchr(json, '\r') == NULL);
    int n = seq > 0
                ? snprintf(out, size, "id: %" PRIu64 "\nevent: %s\ndata: %s\n\n", seq, type, json)
                : snprintf(out, size, "event: %s\ndata: %s\n\n", type, json);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- streams ---- */

struct event_stream {
    struct tandem_list link; /* in events->streams */
    struct tandem_events *events;
    struct tandem_http_stream *http; /* borrowed: the server frees it after stream_closed_cb */
};

static void events_maybe_closed(struct tandem_events *e);

static void stream_closed_cb(struct tandem_http_stream *http, void *data)
{
    struct event_stream *s = data;
    struct tandem_events *e = s->events;
    (void)http;
    tandem_list_remove(&s->link);
    tandem_assert(e->n_streams > 0);
    e->n_streams--;
    free(s);
    events_maybe_closed(e);
}

static void stream_send(struct event_stream *s, uint64_t seq, const char *type, const char *json)
{
    char frame[TANDEM_EVENT_JSON_BYTES_MAX + 128];
    size_t len = tandem_event_sse(frame, sizeof frame, seq, type, json);
    if (len < sizeof frame) {
        (void)tandem_http_stream_write(s->http, frame, len); /* failing closes the stream */
    }
}

static void streams_send(struct tandem_events *e, uint64_t seq, const char *type, const char *json)
{
    struct tandem_list *link = e->streams.next;
    while (link != &e->streams) {
        struct event_stream *s = tandem_list_entry(link, struct event_stream, link);
        link = link->next;
        stream_send(s, seq, type, json);
    }
}

static void heartbeat_cb(uv_timer_t *timer)
{
    struct tandem_events *e = timer->data;
    static const char beat[] = ": heartbeat\n\n";
    struct tandem_list *link;
    tandem_list_foreach(link, &e->streams)
    {
        struct event_stream *s = tandem_list_entry(link, struct event_stream, link);
        (void)tandem_http_stream_write(s->http, beat, sizeof beat - 1);
    }
}

/* The gap event a resuming reader gets first: it has no id, so the reader's position stays. */
static void stream_gap(struct event_stream *s, uint64_t since)
{
    struct tandem_events *e = s->events;
    uint64_t oldest = e->ring.count > 0 ? tandem_event_ring_at(&e->ring, 0)->seq : 0;
    char text[TANDEM_EVENT_MESSAGE_BYTES_MAX];
    snprintf(text, sizeof text,
             "events after %" PRIu64 " up to %" PRIu64
             " are no longer kept (bcp_events_kept %u); the stream goes on from the oldest kept",
             since, e->ring.dropped_seq_max, e->ring.capacity);
    json_t *gap = json_pack("{s:s,s:I,s:I,s:I,s:s}", "type", "gap", "since", (json_int_t)since,
                            "dropped_up_to", (json_int_t)e->ring.dropped_seq_max, "oldest_kept",
                            (json_int_t)oldest, "message", text);
    char *json = gap == NULL ? NULL : json_dumps(gap, JSON_COMPACT);
    if (json != NULL) {
        stream_send(s, 0, "gap", json);
    }
    free(json);
    json_decref(gap);
}

int tandem_events_stream(struct tandem_events *e, struct tandem_http_request *r, bool has_since,
                         uint64_t since, const char *extra_headers)
{
    char headers[1024];
    if (e->closing || e->n_streams >= e->config->bcp_event_streams_max) {
        e->stats.streams_refused++;
        return UV_EAGAIN;
    }
    struct event_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return UV_ENOMEM;
    }
    s->events = e;
    snprintf(headers, sizeof headers, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n%s",
             extra_headers == NULL ? "" : extra_headers);
    int rv = tandem_http_stream_open(r, 200, "text/event-stream", headers, stream_closed_cb, s,
                                     &s->http);
    if (rv != 0) {
        free(s);
        return rv;
    }
    tandem_list_push_back(&e->streams, &s->link);
    e->n_streams++;
    bool gap = false;
    unsigned first = has_since ? tandem_event_ring_after(&e->ring, since, &gap) : 0;
    (void)tandem_http_stream_write(s->http, ": tandem events\n\n", 17);
    if (gap) {
        stream_gap(s, since);
    }
    for (unsigned k = first; k < e->ring.count; k++) {
        const struct tandem_event_slot *slot = tandem_event_ring_at(&e->ring, k);
        stream_send(s, slot->seq, slot->type, slot->json);
    }
    return 0;
}

json_t *tandem_events_list_json(struct tandem_events *e, bool has_since, uint64_t since)
{
    bool gap = false;
    unsigned first = has_since ? tandem_event_ring_after(&e->ring, since, &gap) : 0;
    json_t *list = json_array();
    for (unsigned k = first; list != NULL && k < e->ring.count; k++) {
        json_t *event = json_loads(tandem_event_ring_at(&e->ring, k)->json, 0, NULL);
        if (event != NULL) {
            json_array_append_new(list, event);
        }
    }
    uint64_t oldest = e->ring.count > 0 ? tandem_event_ring_at(&e->ring, 0)->seq : 0;
    const struct tandem_events_stats *st = &e->stats;
    return json_pack("{s:o,s:b,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I}}", "events", list, "gap", gap,
                     "oldest_seq", (json_int_t)oldest, "last_seq", (json_int_t)e->last_seq, "kept",
                     (json_int_t)e->ring.capacity, "streams", (json_int_t)e->n_streams, "command",
                     "runs", (json_int_t)st->command_runs, "failures",
                     (json_int_t)st->command_failures, "timeouts", (json_int_t)st->command_timeouts,
                     "dropped", (json_int_t)st->command_dropped);
}

/* ---- bcp_event_command ---- */

static void command_next(struct tandem_events *e);

static void run_handle_closed_cb(uv_handle_t *handle)
{
    struct tandem_events *e = handle->data;
    tandem_assert(e->run_handles > 0);
    if (--e->run_handles > 0) {
        return;
    }
    e->running = false;
    free(e->running_json);
    e->running_json = NULL;
    uv_timer_stop(&e->kill_timer);
    if (e->closing) {
        events_maybe_closed(e);
    } else {
        command_next(e);
    }
}

static void run_close(uv_handle_t *handle)
{
    if (!uv_is_closing(handle)) {
        uv_close(handle, run_handle_closed_cb);
    }
}

static void exit_cb(uv_process_t *process, int64_t exit_status, int term_signal)
{
    struct tandem_events *e = process->data;
    if (e->killed) {
        e->stats.command_timeouts++;
    } else if (exit_status != 0 || term_signal != 0) {
        e->stats.command_failures++;
        tandem_log(TANDEM_LOG_WARN,
                   "bcp_event_command exited with status %" PRId64 " (signal %d): %.*s",
                   exit_status, term_signal, (int)e->output_len, e->output);
    }
    /* Its children may hold the pipes open: the run ends with the command itself. */
    run_close((uv_handle_t *)&e->stdin_pipe);
    run_close((uv_handle_t *)&e->stdout_pipe);
    run_close((uv_handle_t *)process);
}

static void kill_cb(uv_timer_t *timer)
{
    struct tandem_events *e = timer->data;
    if (!e->running || e->killed) {
        return;
    }
    e->killed = true;
    tandem_log(TANDEM_LOG_WARN,
               "bcp_event_command (pid %d) still running after %u ms: killed (SIGKILL)",
               e->process.pid, e->config->bcp_event_command_timeout_ms);
    (void)uv_process_kill(&e->process, SIGKILL);
}

static void stdin_written_cb(uv_write_t *req, int status)
{
    struct tandem_events *e = req->data;
    (void)status; /* a command that does not read its stdin gets EPIPE: not an error of ours */
    run_close((uv_handle_t *)&e->stdin_pipe);
}

static void output_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char scratch[512];
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void output_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tandem_events *e = stream->data;
    if (nread > 0) {
        size_t room = sizeof e->output - e->output_len;
        size_t n = (size_t)nread < room ? (size_t)nread : room;
        memcpy(e->output + e->output_len, buf->base, n);
        e->output_len += n;
    } else if (nread < 0) {
        run_close((uv_handle_t *)stream);
    }
}

/* Spawns the command with json (owned from here on) on stdin; its stdout is kept for the log
 * line of a failed run, its stderr is the node's. */
static int command_spawn(struct tandem_events *e, char *json)
{
    char words[TANDEM_EVENT_COMMAND_LEN_MAX + 1], *argv[TANDEM_EVENT_COMMAND_ARGS_MAX + 1];
    if (tandem_events_command_split(e->config->bcp_event_command, words, sizeof words, argv) <= 0) {
        free(json);
        return UV_EINVAL; /* the config check refuses such a command: not reached */
    }
    int rv = uv_pipe_init(e->loop, &e->stdin_pipe, 0);
    rv = rv != 0 ? rv : uv_pipe_init(e->loop, &e->stdout_pipe, 0);
    tandem_assert(rv == 0); /* a pipe handle on a live loop cannot fail to initialise */
    e->stdin_pipe.data = e->stdout_pipe.data = e->process.data = e;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&e->stdin_pipe},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&e->stdout_pipe},
        {.flags = UV_INHERIT_FD, .data.fd = 2}, /* the node's own stderr */
    };
    uv_process_options_t options = {
        .exit_cb = exit_cb, .file = argv[0], .args = argv, .stdio = stdio, .stdio_count = 3};
    e->running = true;
    e->killed = false;
    e->output_len = 0;
    e->running_json = json;
    e->run_handles = 3;
    rv = uv_spawn(e->loop, &e->process, &options);
    if (rv != 0) {
        /* A failed spawn's handle still needs closing; the last close frees json and starts
         * the next run. */
        run_close((uv_handle_t *)&e->stdin_pipe);
        run_close((uv_handle_t *)&e->stdout_pipe);
        run_close((uv_handle_t *)&e->process);
        return rv;
    }
    e->stats.command_runs++;
    (void)uv_read_start((uv_stream_t *)&e->stdout_pipe, output_alloc_cb, output_read_cb);
    uv_buf_t buf = uv_buf_init(json, (unsigned)strlen(json)); /* the event and a newline */
    e->stdin_write.data = e;
    if (uv_write(&e->stdin_write, (uv_stream_t *)&e->stdin_pipe, &buf, 1, stdin_written_cb) != 0) {
        run_close((uv_handle_t *)&e->stdin_pipe);
    }
    (void)uv_timer_start(&e->kill_timer, kill_cb, e->config->bcp_event_command_timeout_ms, 0);
    return 0;
}

static void command_next(struct tandem_events *e)
{
    while (!e->running && !e->closing && e->queue_count > 0) {
        char *json = e->queue[e->queue_start];
        e->queue_start = (e->queue_start + 1) % TANDEM_EVENT_COMMAND_QUEUE_MAX;
        e->queue_count--;
        int rv = command_spawn(e, json);
        if (rv != 0) {
            e->stats.command_failures++;
            tandem_log(TANDEM_LOG_WARN, "bcp_event_command: cannot start %s: %s",
                       e->config->bcp_event_command, uv_strerror(rv));
        }
    }
}

static void command_queue(struct tandem_events *e, const char *json)
{
    if (e->config->bcp_event_command[0] == '\0' || e->closing) {
        return;
    }
    size_t len = strlen(json);
    char *copy = NULL;
    if (e->queue_count == TANDEM_EVENT_COMMAND_QUEUE_MAX || (copy = malloc(len + 2)) == NULL) {
        e->stats.command_dropped++;
        tandem_log(TANDEM_LOG_WARN,
                   "bcp_event_command: %u events already wait; event dropped (%" PRIu64
                   " dropped so far)",
                   (unsigned)TANDEM_EVENT_COMMAND_QUEUE_MAX, e->stats.command_dropped);
        return;
    }
    memcpy(copy, json, len);
    memcpy(copy + len, "\n", 2);
    e->queue[(e->queue_start + e->queue_count) % TANDEM_EVENT_COMMAND_QUEUE_MAX] = copy;
    e->queue_count++;
    command_next(e);
}

/* ---- emitting ---- */

/* Fills the standard fields into fields (owned by the caller), then records and sends it. */
static void event_publish(struct tandem_events *e, uint64_t seq, const char *type, int64_t at_ms,
                          const char *site, const char *message, json_t *fields, bool run_command)
{
    char time[TANDEM_RFC3339_LEN_MAX + 1], cut[TANDEM_EVENT_MESSAGE_BYTES_MAX];
    tandem_rfc3339_format(at_ms, time);
    snprintf(cut, sizeof cut, "%s", message);
    json_t *event =
        json_pack("{s:I,s:s,s:s,s:s,s:I,s:s}", "seq", (json_int_t)seq, "type", type, "time", time,
                  "node", e->node_name, "epoch", (json_int_t)*e->epoch, "message", cut);
    if (event == NULL) {
        return;
    }
    if (site != NULL && site[0] != '\0') {
        json_object_set_new(event, "site", json_string(site));
    }
    if (fields != NULL) {
        json_object_update_missing(event, fields);
    }
    char *json = json_dumps(event, JSON_COMPACT);
    json_decref(event);
    if (json == NULL || strlen(json) > TANDEM_EVENT_JSON_BYTES_MAX ||
        tandem_event_ring_push(&e->ring, seq, type, json) != 0) {
        tandem_log(TANDEM_LOG_WARN, "event %s not recorded: too long or out of memory", type);
        free(json);
        return;
    }
    e->last_seq = seq;
    e->stats.emitted++;
    streams_send(e, seq, type, json);
    if (run_command) {
        command_queue(e, json);
    }
    free(json);
}

void tandem_events_emit(struct tandem_events *e, const char *type, const char *site,
                        const char *fmt, ...)
{
    char message[TANDEM_EVENT_MESSAGE_BYTES_MAX];
    if (e == NULL || !e->started || e->closing) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* Between the last decision seen and the next one: every node numbers decisions alike. */
    uint64_t seq = e->decision_seen * TANDEM_EVENT_SEQ_STRIDE + 1;
    seq = seq > e->last_seq + 1 ? seq : e->last_seq + 1;
    json_t *fields = json_pack("{s:b}", "local", true);
    event_publish(e, seq, type, tandem_wall_ms(), site, message, fields, true);
    json_decref(fields);
}

void tandem_events_decision(struct tandem_events *e, uint64_t decision_seq, int64_t at_ms,
                            const char *type, const char *site, const char *message, json_t *fields,
                            bool run_command)
{
    if (e == NULL || e->closing || decision_seq <= e->decision_seen) {
        return;
    }
    e->decision_seen = decision_seq;
    uint64_t seq = decision_seq * TANDEM_EVENT_SEQ_STRIDE;
    /* Only after TANDEM_EVENT_SEQ_STRIDE local events since the last decision: stay ordered. */
    seq = seq > e->last_seq ? seq : e->last_seq + 1;
    event_publish(e, seq, type, at_ms, site, message, fields, run_command);
}

/* ---- lifecycle ---- */

int tandem_events_init(struct tandem_events *e, uv_loop_t *loop, const struct tandem_config *c,
                       const char *node_name, const uint64_t *epoch)
{
    memset(e, 0, sizeof *e);
    e->loop = loop;
    e->config = c;
    e->node_name = node_name;
    e->epoch = epoch;
    tandem_list_init(&e->streams);
    if (tandem_event_ring_init(&e->ring, c->bcp_events_kept) != 0) {
        tandem_log(TANDEM_LOG_ERROR, "events: out of memory for %u events", c->bcp_events_kept);
        return -1;
    }
    return 0;
}

/* The heartbeat and the kill timer close with the hub. */
static void timer_closed_cb(uv_handle_t *handle)
{
    struct tandem_events *e = handle->data;
    tandem_assert(e->handles_open > 0);
    e->handles_open--;
    events_maybe_closed(e);
}

int tandem_events_start(struct tandem_events *e)
{
    int rv = uv_timer_init(e->loop, &e->heartbeat);
    tandem_assert(rv == 0); /* a timer on a live loop cannot fail to initialise */
    rv = uv_timer_init(e->loop, &e->kill_timer);
    tandem_assert(rv == 0);
    e->heartbeat.data = e->kill_timer.data = e;
    e->handles_open = 2;
    e->started = true;
    rv = uv_timer_start(&e->heartbeat, heartbeat_cb, TANDEM_EVENT_HEARTBEAT_MS,
                        TANDEM_EVENT_HEARTBEAT_MS);
    tandem_assert(rv == 0); /* a timer with a callback always starts */
    return 0;
}

static void events_maybe_closed(struct tandem_events *e)
{
    if (!e->closing || e->handles_open > 0 || e->n_streams > 0 || e->running ||
        e->close_cb == NULL) {
        return;
    }
    while (e->queue_count > 0) {
        free(e->queue[e->queue_start]);
        e->queue_start = (e->queue_start + 1) % TANDEM_EVENT_COMMAND_QUEUE_MAX;
        e->queue_count--;
    }
    tandem_event_ring_fini(&e->ring);
    void (*cb)(struct tandem_events *) = e->close_cb;
    e->close_cb = NULL;
    cb(e);
}

void tandem_events_close(struct tandem_events *e, void (*close_cb)(struct tandem_events *e))
{
    tandem_assert(!e->closing);
    e->closing = true;
    e->close_cb = close_cb;
    if (e->running && !e->killed) {
        e->killed = true;
        (void)uv_process_kill(&e->process, SIGKILL); /* by its pid; its exit closes the run */
    }
    struct tandem_list *link;
    tandem_list_foreach(link, &e->streams)
    {
        tandem_http_stream_close(tandem_list_entry(link, struct event_stream, link)->http);
    }
    if (e->started) {
        uv_close((uv_handle_t *)&e->heartbeat, timer_closed_cb);
        uv_close((uv_handle_t *)&e->kill_timer, timer_closed_cb);
    }
    events_maybe_closed(e);
}
