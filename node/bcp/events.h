/* BCP notifications: a bounded ring of the node's BCP events, their server-sent-events framing,
 * the GET /v1/events streams that follow them, and bcp_event_command, run once per event. */
#ifndef TANDEM_NODE_BCP_EVENTS_H
#define TANDEM_NODE_BCP_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/bcp/event_command.h"
#include "node/config.h"
#include "node/http/server.h"
#include "storage/list.h"

#define TANDEM_EVENT_TYPE_LEN_MAX       31
#define TANDEM_EVENT_JSON_BYTES_MAX     4096 /* one event's data line; longer messages are cut */
#define TANDEM_EVENT_MESSAGE_BYTES_MAX  512
#define TANDEM_EVENT_HEARTBEAT_MS       5000 /* a comment line on every stream this often */
#define TANDEM_EVENT_COMMAND_QUEUE_MAX  64   /* events waiting for bcp_event_command */
#define TANDEM_EVENT_COMMAND_OUTPUT_MAX 1024 /* of its stdout/stderr kept for the log */
/* Sequence numbers: a decision of the replicated history with sequence d has event seq
 * d * TANDEM_EVENT_SEQ_STRIDE on every node; node-local events take the numbers between the
 * last decision this node has seen and the next. */
#define TANDEM_EVENT_SEQ_STRIDE 65536u

/* ---- the ring (no loop needed) ---- */

struct tandem_event_slot {
    uint64_t seq;
    char type[TANDEM_EVENT_TYPE_LEN_MAX + 1];
    char *json; /* owned: the one-line JSON data */
};

struct tandem_event_ring {
    struct tandem_event_slot *slots; /* owned, capacity of them */
    unsigned capacity, start, count;
    uint64_t dropped_seq_max; /* highest seq pushed out of the ring; 0 when none was */
};

/* Returns 0 or UV_ENOMEM. */
int tandem_event_ring_init(struct tandem_event_ring *ring, unsigned capacity);
void tandem_event_ring_fini(struct tandem_event_ring *ring);
/* Appends a copy (seq above every seq in the ring), dropping the oldest when full. Returns 0 or
 * UV_ENOMEM (nothing changed). */
int tandem_event_ring_push(struct tandem_event_ring *ring, uint64_t seq, const char *type,
                           const char *json);
/* The k-th kept event, oldest first (k < count). */
const struct tandem_event_slot *tandem_event_ring_at(const struct tandem_event_ring *ring,
                                                     unsigned k);
/* Position of the first kept event with seq > since; *gap: an event with seq > since was
 * dropped already, so the caller missed some. */
unsigned tandem_event_ring_after(const struct tandem_event_ring *ring, uint64_t since, bool *gap);

/* "id: <seq>\nevent: <type>\ndata: <json>\n\n" (no id line when seq is 0) into out, like
 * snprintf: returns the length it needs. json must be one line. */
size_t tandem_event_sse(char *out, size_t size, uint64_t seq, const char *type, const char *json);

/* ---- the node's event hub ---- */

struct tandem_events_stats {
    uint64_t emitted, streams_refused, command_runs, command_failures, command_timeouts,
        command_dropped;
};

struct tandem_events {
    uv_loop_t *loop;                    /* borrowed */
    const struct tandem_config *config; /* borrowed */
    const char *node_name;              /* borrowed */
    const uint64_t *epoch;              /* borrowed: the node's fencing epoch */
    struct tandem_event_ring ring;
    uint64_t last_seq;      /* highest seq emitted */
    uint64_t decision_seen; /* highest decision sequence turned into an event */
    struct tandem_list streams;
    unsigned n_streams;
    uv_timer_t heartbeat;
    /* bcp_event_command: one run at a time, in event order */
    char *queue[TANDEM_EVENT_COMMAND_QUEUE_MAX]; /* owned JSON texts */
    unsigned queue_start, queue_count;
    char *running_json; /* owned: stdin of the run in flight */
    uv_process_t process;
    uv_pipe_t stdin_pipe, stdout_pipe;
    uv_write_t stdin_write;
    uv_timer_t kill_timer;
    unsigned run_handles; /* process and pipes of the run in flight not yet closed */
    bool running, killed;
    char output[TANDEM_EVENT_COMMAND_OUTPUT_MAX];
    size_t output_len;
    struct tandem_events_stats stats;
    unsigned handles_open;
    bool started, closing;
    void (*close_cb)(struct tandem_events *e);
    void *data; /* the owner's */
};

/* Prepares e (nothing runs yet). epoch is read at each event. Returns 0 or -1 (logged). */
int tandem_events_init(struct tandem_events *e, uv_loop_t *loop, const struct tandem_config *c,
                       const char *node_name, const uint64_t *epoch);
/* Starts the heartbeat. Returns 0 or -1 (logged). */
int tandem_events_start(struct tandem_events *e);
/* Ends every stream, kills a command still running (by its pid), then close_cb. */
void tandem_events_close(struct tandem_events *e, void (*close_cb)(struct tandem_events *e));

/* A node-local event: {"seq","type","time","node","epoch","site"?,"message"} on every stream of
 * this node and to bcp_event_command. site may be NULL. e may be NULL (then nothing happens):
 * e.g. tandem_events_emit(b->env.events, "quarantine_enter", NULL, "waiting for ...") */
void tandem_events_emit(struct tandem_events *e, const char *type, const char *site,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* An event of the replicated history: the decision with sequence decision_seq, recorded at
 * at_ms (leader clock). fields (borrowed) adds to the standard ones. Decisions at or below the
 * last one seen are ignored. */
void tandem_events_decision(struct tandem_events *e, uint64_t decision_seq, int64_t at_ms,
                            const char *type, const char *site, const char *message, json_t *fields,
                            bool run_command);

/* Answers r with a stream of the events after since (all kept ones when has_since is false):
 * a "gap" event first when some were dropped, then every kept one, then new ones as they come.
 * Returns 0, or (r not answered) UV_EAGAIN when bcp_event_streams_max streams are open, or
 * what tandem_http_stream_open returns. */
int tandem_events_stream(struct tandem_events *e, struct tandem_http_request *r, bool has_since,
                         uint64_t since, const char *extra_headers);
/* {"events":[...], "gap": bool, "oldest_seq", "last_seq"}: the kept events after since. */
json_t *tandem_events_list_json(struct tandem_events *e, bool has_since, uint64_t since);

#endif
