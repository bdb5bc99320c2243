/* tandemctl bcp events (kept events, or --follow the server-sent event stream, resuming after a
 * dropped connection) and bcp incidents (the replicated incident reports of real invokes). */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"
#include "node/ctl/tls.h"

#define FOLLOW_RETRIES_MAX      10 /* reconnections in a row that bring nothing */
#define FOLLOW_RETRY_PAUSE_MS   1000
#define SSE_EVENT_BYTES_MAX     65536 /* one event as it arrives; more is a broken stream */
#define INCIDENTS_LIMIT_MAX     100
#define INCIDENTS_LIMIT_DEFAULT 20

static const char *text(const json_t *obj, const char *field)
{
    const char *v = json_string_value(json_object_get(obj, field));
    return v == NULL ? "" : v;
}

/* One event: a JSON line (-o json) or a table row. */
static void event_print(struct tandem_ctl_context *ctx, const json_t *event)
{
    if (ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        char *line = json_dumps(event, JSON_COMPACT);
        if (line != NULL) {
            fprintf(ctx->out, "%s\n", line);
        }
        free(line);
    } else {
        const char *site = text(event, "site");
        fprintf(ctx->out, "%-14" JSON_INTEGER_FORMAT " %-24s %-27s %-8s %-10s %s\n",
                json_integer_value(json_object_get(event, "seq")), text(event, "time"),
                text(event, "type"), site[0] != '\0' ? site : "-", text(event, "node"),
                text(event, "message"));
    }
    fflush(ctx->out);
}

static int since_flag(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                      unsigned long long *since, bool *has_since)
{
    const char *value = tandem_ctl_args_flag(args, "since");
    char *end = NULL;
    *has_since = value != NULL;
    if (value == NULL) {
        return TANDEM_CTL_OK;
    }
    errno = 0;
    *since = strtoull(value, &end, 10);
    if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--since: expected an event seq (a number)");
    }
    return TANDEM_CTL_OK;
}

static void table_header(struct tandem_ctl_context *ctx)
{
    if (ctx->output != TANDEM_CTL_OUTPUT_JSON) {
        fprintf(ctx->out, "%-14s %-24s %-27s %-8s %-10s %s\n", "SEQ", "TIME", "TYPE", "SITE",
                "NODE", "MESSAGE");
    }
}

/* ---- kept events ---- */

static int events_list(struct tandem_ctl_context *ctx, bool has_since, unsigned long long since)
{
    char path[96];
    json_t *root = NULL;
    size_t i;
    json_t *event;
    if (has_since) {
        snprintf(path, sizeof path, "/v1/events?format=json&since=%llu", since);
    } else {
        snprintf(path, sizeof path, "/v1/events?format=json");
    }
    int rc = tandem_ctl_get_json(ctx, path, "events", &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (json_is_true(json_object_get(root, "gap"))) {
        fprintf(stderr, "%s: events after %llu are no longer kept; the oldest kept is %lld\n",
                ctx->what, since,
                (long long)json_integer_value(json_object_get(root, "oldest_seq")));
    }
    table_header(ctx);
    json_array_foreach(json_object_get(root, "events"), i, event)
    {
        event_print(ctx, event);
    }
    json_decref(root);
    return TANDEM_CTL_OK;
}

/* ---- --follow: the event stream ---- */

struct follow {
    struct tandem_ctl_context *ctx;
    char *buf; /* owned: bytes of the event being received */
    size_t len;
    unsigned long long last_id;
    bool has_id, progressed, broken;
};

/* One complete event block: its id, type and data lines. */
static void follow_block(struct follow *f, char *block)
{
    char *data = NULL, *save = NULL;
    for (char *line = strtok_r(block, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "id: ", 4) == 0) {
            f->last_id = strtoull(line + 4, NULL, 10);
            f->has_id = true;
        } else if (strncmp(line, "data: ", 6) == 0) {
            data = line + 6;
        }
    }
    json_t *event = data == NULL ? NULL : json_loads(data, 0, NULL);
    if (event != NULL) {
        if (strcmp(text(event, "type"), "gap") == 0 && f->ctx->output != TANDEM_CTL_OUTPUT_JSON) {
            fprintf(stderr, "%s: %s\n", f->ctx->what, text(event, "message"));
        } else {
            event_print(f->ctx, event);
        }
        f->progressed = true;
        json_decref(event);
    }
}

static size_t follow_write_cb(char *bytes, size_t size, size_t n, void *data)
{
    struct follow *f = data;
    size_t len = size * n;
    if (f->len + len + 1 > SSE_EVENT_BYTES_MAX) {
        f->broken = true;
        return 0; /* aborts the transfer */
    }
    memcpy(f->buf + f->len, bytes, len);
    f->len += len;
    f->buf[f->len] = '\0';
    char *end;
    while ((end = strstr(f->buf, "\n\n")) != NULL) {
        *end = '\0';
        size_t used = (size_t)(end - f->buf) + 2;
        follow_block(f, f->buf);
        memmove(f->buf, f->buf + used, f->len - used + 1);
        f->len -= used;
    }
    return len;
}

/* Follows the stream of one endpoint until it ends. Returns the HTTP status (0: none). */
static long follow_once(struct follow *f, const char *endpoint, bool has_since,
                        unsigned long long since)
{
    char url[TANDEM_CTL_URL_MAX], last[64];
    struct curl_slist *headers = NULL;
    long status = 0;
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        return 0;
    }
    snprintf(url, sizeof url, "%s/v1/events", endpoint);
    if (f->has_id || has_since) {
        snprintf(last, sizeof last, "Last-Event-ID: %llu", f->has_id ? f->last_id : since);
        headers = curl_slist_append(headers, last);
    }
    f->len = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)TANDEM_CTL_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "tandemctl");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, follow_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, f);
    /* The server sends a heartbeat every few seconds: a silent minute means a dead link. */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
    tandem_ctl_tls_apply(curl);
    curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
}

/* Follows across the endpoints; after a dropped stream it resumes after the last event seen
 * (Last-Event-ID). Ends with an error after FOLLOW_RETRIES_MAX attempts in a row bring nothing. */
static int events_follow(struct tandem_ctl_context *ctx, bool has_since, unsigned long long since)
{
    struct follow f = {.ctx = ctx, .buf = malloc(SSE_EVENT_BYTES_MAX)};
    struct tandem_ctl_client *client = ctx->client;
    unsigned fruitless = 0;
    long status = 0;
    if (f.buf == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUNREACHABLE, "out of memory");
    }
    table_header(ctx);
    for (size_t k = 0; fruitless < FOLLOW_RETRIES_MAX; k++) {
        f.progressed = f.broken = false;
        status = follow_once(&f, client->endpoints[k % client->endpoint_count], has_since, since);
        fruitless = f.progressed ? 0 : fruitless + 1;
        usleep(FOLLOW_RETRY_PAUSE_MS * 1000);
    }
    free(f.buf);
    return tandem_ctl_fail(ctx, TANDEM_CTL_EUNREACHABLE,
                           "no events from any endpoint in %d attempts (last HTTP status %ld)",
                           FOLLOW_RETRIES_MAX, status);
}

int tandem_ctl_bcp_events(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    unsigned long long since = 0;
    bool has_since = false;
    int rc = since_flag(ctx, args, &since, &has_since);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (tandem_ctl_args_flag(args, "follow") != NULL) {
        return events_follow(ctx, has_since, since);
    }
    return events_list(ctx, has_since, since);
}

/* ---- incident reports ---- */

static const char *when(const json_t *timeline, const char *point)
{
    const char *v = json_string_value(json_object_get(timeline, point));
    return v == NULL ? "-" : v;
}

static void incident_print(struct tandem_ctl_context *ctx, const json_t *incident)
{
    const json_t *report = json_object_get(incident, "report");
    const json_t *timeline = json_object_get(report, "timeline");
    const json_t *lag = json_object_get(report, "lag_at_invoke");
    const json_t *gap = json_object_get(incident, "longest_write_gap_ms");
    fprintf(ctx->out,
            "incident %" JSON_INTEGER_FORMAT
            ": %s invoke of site %s at %s; jobs moved %" JSON_INTEGER_FORMAT "\n",
            json_integer_value(json_object_get(incident, "decision_seq")), text(incident, "kind"),
            text(incident, "site"), text(incident, "decided"),
            json_integer_value(json_object_get(incident, "jobs_moved")));
    char gap_text[32] = "unknown", lag_text[64] = "unknown";
    json_t *entries = json_object_get(lag, "entries"), *ms = json_object_get(lag, "ms");
    if (json_is_integer(gap)) {
        snprintf(gap_text, sizeof gap_text, "%" JSON_INTEGER_FORMAT " ms", json_integer_value(gap));
    }
    if (json_is_integer(entries)) {
        snprintf(lag_text, sizeof lag_text,
                 "%" JSON_INTEGER_FORMAT " entries, %s%" JSON_INTEGER_FORMAT " ms",
                 json_integer_value(entries), json_is_integer(ms) ? "" : "unknown ",
                 json_is_integer(ms) ? json_integer_value(ms) : 0);
    }
    fprintf(ctx->out, "  longest write gap: %s  lag at invoke: %s\n", gap_text, lag_text);
    static const char *const points[] = {"detected", "decided", "config_committed", "leader_moved",
                                         "first_write_accepted"};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        fprintf(ctx->out, "  %-21s %s\n", points[i], when(timeline, points[i]));
    }
}

int tandem_ctl_bcp_incidents(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *limit = tandem_ctl_args_flag(args, "limit");
    char *end = NULL, path[64];
    json_t *root = NULL;
    size_t i;
    json_t *incident;
    long n = limit == NULL ? INCIDENTS_LIMIT_DEFAULT : strtol(limit, &end, 10);
    if (limit != NULL && (end == limit || *end != '\0' || n < 1 || n > INCIDENTS_LIMIT_MAX)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--limit: expected 1..%d",
                               INCIDENTS_LIMIT_MAX);
    }
    snprintf(path, sizeof path, "/v1/bcp/incidents?limit=%ld&full=1", n);
    int rc = tandem_ctl_get_json(ctx, path, "incidents", &root);
    if (rc != TANDEM_CTL_OK || ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = rc == TANDEM_CTL_OK ? tandem_ctl_print_json(ctx, root) : rc;
        json_decref(root);
        return rc;
    }
    if (json_array_size(json_object_get(root, "incidents")) == 0) {
        fprintf(ctx->out, "no incident reports\n");
    }
    json_array_foreach(json_object_get(root, "incidents"), i, incident)
    {
        incident_print(ctx, incident);
    }
    json_decref(root);
    return TANDEM_CTL_OK;
}
