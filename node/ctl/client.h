/* tandemctl's HTTP client: one request tried across the endpoint list with failover, and
 * parallel one-shot probes of member URLs. */
#ifndef TANDEM_CTL_CLIENT_H
#define TANDEM_CTL_CLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/ctl/ctl.h"

#define TANDEM_CTL_ENDPOINTS_MAX      16   /* a longer -e list is a typo, not a cluster */
#define TANDEM_CTL_URL_MAX            4096 /* base URL + path; a 512-byte key encodes to 1536 */
#define TANDEM_CTL_ROUNDS_MAX         3    /* passes over the endpoints while all say "no leader" */
#define TANDEM_CTL_ROUND_PAUSE_MS     300  /* between passes: an election takes a few hundred ms */
#define TANDEM_CTL_CONNECT_TIMEOUT_MS 2000 /* a reachable node accepts well within this */
#define TANDEM_CTL_RESPONSE_MAX       (256L * 1024 * 1024) /* larger answers in memory: refused */
#define TANDEM_CTL_PROBES_MAX         64                   /* members probed at once by status */
#define TANDEM_CTL_NODE_NAME_SIZE     64 /* X-Tandem-Node: node names are at most 63 bytes */

#define TANDEM_CTL_AUTHORIZATION_MAX 320 /* the header line with a token of up to 256 bytes */

struct tandem_ctl_client {
    void *curl; /* owned; CURL *, reused so a multi-page listing keeps its connection */
    char *endpoints[TANDEM_CTL_ENDPOINTS_MAX]; /* owned; base URLs without trailing '/' */
    size_t endpoint_count;
    long timeout_ms; /* whole-attempt bound for each request on each endpoint */
    /* Optional bounds of one tandem_ctl_client_send, set by a command that must answer within
     * its timeout (bcp status): deadline_ms is CLOCK_MONOTONIC milliseconds (0: none) that no
     * attempt runs past; attempt_ms_max (0: none) bounds each attempt, so that one stalled
     * node leaves time for the next; rounds_max replaces TANDEM_CTL_ROUNDS_MAX when above 0. */
    long long deadline_ms;
    long attempt_ms_max;
    int rounds_max;
    /* "Authorization: Bearer <token>" sent with every request when no client certificate is
     * given ("" none): from TANDEM_TOKEN or the file `tandemctl login` wrote. */
    char authorization[TANDEM_CTL_AUTHORIZATION_MAX];
    /* Above 0: each attempt has no overall time bound, and fails instead when fewer than one
     * byte a second came for this many seconds (a download of any size, over any link). */
    long stall_s;
    /* Non-NULL: a transfer stops (within a second) once *interrupted is set, by a signal
     * handler; the send then fails, not tried elsewhere. */
    volatile sig_atomic_t *interrupted;
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
};

/* Where a 2xx answer's body goes instead of memory (a file being downloaded): write gets each
 * piece in order and returns 0, or an errno that stops the transfer (kept in error; the send
 * then fails with TANDEM_CTL_EREFUSED, not tried elsewhere). Non-2xx bodies stay in memory.
 * header (may be NULL) sees every header line of the answer as it arrives. */
struct tandem_ctl_sink {
    int (*write)(void *data, const char *bytes, size_t len);
    void (*header)(void *data, const char *line, size_t len);
    void *data;
    int error;
};

struct tandem_ctl_request {
    const char *method; /* borrowed; "GET", "PUT", "POST" or "DELETE" */
    const char *path;   /* borrowed; starts with '/', already percent-encoded */
    const void *body;   /* borrowed; NULL for none */
    size_t body_len;
    const char *content_type; /* borrowed; NULL when there is no body */
};

struct tandem_ctl_response {
    long status; /* HTTP status; 0 when nothing answered */
    char *body;  /* owned; NUL-terminated (the NUL is not counted in body_len) */
    size_t body_len;
    size_t body_capacity;
    bool too_large;        /* the body passed TANDEM_CTL_RESPONSE_MAX and was cut off */
    int64_t mod_index;     /* X-Tandem-Mod-Index, -1 when absent */
    int64_t create_index;  /* X-Tandem-Create-Index, -1 when absent */
    int64_t applied_index; /* X-Tandem-Applied-Index, -1 when absent */
    char node[TANDEM_CTL_NODE_NAME_SIZE]; /* X-Tandem-Node, "" when absent */
    char location[TANDEM_CTL_URL_MAX];    /* Location (of a redirect), "" when absent */
    long head_status;                     /* of the last status line seen, 0 before any */
    struct tandem_ctl_sink *sink;         /* borrowed; set by the caller, NULL: memory */
    char endpoint[TANDEM_CTL_URL_MAX];    /* base URL (or probe URL) that answered */
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];  /* transport error when status is 0 */
};

void tandem_ctl_response_init(struct tandem_ctl_response *resp);
void tandem_ctl_response_free(struct tandem_ctl_response *resp);

/* Writes the server's reason for a non-2xx answer into out: the "error" string of a JSON body,
 * else the start of the body, else "no reason given". */
void tandem_ctl_response_reason(const struct tandem_ctl_response *resp, char *out, size_t out_size);

/* Splits endpoint_list ("URL,URL,...") into c. Returns 0, or -1 with c->errmsg filled when the
 * list is empty or too long. On failure nothing needs closing. */
int tandem_ctl_client_init(struct tandem_ctl_client *c, const char *endpoint_list, long timeout_ms);
void tandem_ctl_client_close(struct tandem_ctl_client *c);

/* Tries req on each endpoint in order. A node that cannot be reached moves on to the next;
 * so does one that times out, unless the request is a POST that may already have been
 * delivered (retrying could apply it twice). A 503 moves on too, and when a whole pass ends in
 * 503s and failures the pass is repeated, TANDEM_CTL_ROUNDS_MAX passes at most, because a
 * leader election is probably under way. Any other answer is final.
 * Returns TANDEM_CTL_OK with resp holding the final answer (any status, including the last
 * 503), TANDEM_CTL_EUNREACHABLE when no endpoint answered, or TANDEM_CTL_EREFUSED for a
 * local failure (out of memory, answer too large); c->errmsg says why. */
int tandem_ctl_client_send(struct tandem_ctl_client *c, const struct tandem_ctl_request *req,
                           struct tandem_ctl_response *resp);

/* CLOCK_MONOTONIC now in milliseconds, the clock of deadline_ms. */
long long tandem_ctl_now_ms(void);

/* Moves the endpoint whose base URL is base to the front of the list (nothing when absent). */
void tandem_ctl_client_prefer(struct tandem_ctl_client *c, const char *base);
/* As tandem_ctl_client_prefer, adding base first when it is not in the list (a member a node
 * redirected to: its certificate is checked as every endpoint's). Returns 0, or -1 with
 * c->errmsg filled (list full, base too long, out of memory). */
int tandem_ctl_client_prefer_add(struct tandem_ctl_client *c, const char *base);

/* GETs each absolute URL once, all at the same time, each bounded by timeout_ms. responses
 * must hold count initialised entries; responses[i].status is 0 when urls[i] did not answer
 * (responses[i].errmsg says why). Returns 0, or -1 with errmsg (256 bytes) filled when the
 * probes could not be started at all. */
int tandem_ctl_client_probe(const char *const *urls, size_t count, long timeout_ms,
                            struct tandem_ctl_response *responses, char *errmsg);

#endif
