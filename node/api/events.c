/* Route table of BCP notifications and incident reports: GET /v1/events (server-sent events, or
 * JSON with ?format=json), and the replicated incident reports of real invokes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/bcp/events.h"
#include "node/node.h"
#include "replication/bcp/sites.h"

#define INCIDENTS_LIMIT_DEFAULT 20

/* ---- events ---- */

/* The position to resume after: Last-Event-ID (what an EventSource sends back) or ?since=SEQ.
 * Returns 1 with *since set, 0 when neither is given, -1 after answering 400. */
static int events_since(struct tandem_node *node, struct tandem_http_request *r, uint64_t *since)
{
    const char *last = tandem_http_request_header(r, "Last-Event-ID");
    if (last != NULL) {
        char *end = NULL;
        unsigned long long value = strtoull(last, &end, 10);
        if (last[0] < '0' || last[0] > '9' || *end != '\0') {
            tandem_route_error(node, r, 400, "Last-Event-ID must be an event seq (a number)");
            return -1;
        }
        *since = value;
        return 1;
    }
    int rv = tandem_route_query_number(r, "since", 0, UINT64_MAX, since);
    if (rv < 0) {
        tandem_route_error(node, r, 400, "since must be an event seq (a number)");
    }
    return rv;
}

static void route_events(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    char format[16] = "", headers[256];
    uint64_t since = 0;
    (void)p;
    int has_since = events_since(node, r, &since);
    if (has_since < 0) {
        return;
    }
    int rv = tandem_http_query_get(r->query, "format", format, sizeof format);
    if (rv < 0 || (rv == 1 && strcmp(format, "json") != 0 && strcmp(format, "sse") != 0)) {
        tandem_route_error(node, r, 400, "format must be sse (the default) or json");
        return;
    }
    if (strcmp(format, "json") == 0) {
        json_t *body = tandem_events_list_json(&node->events, has_since == 1, since);
        tandem_route_jansson(node, r, body == NULL ? 500 : 200,
                             body == NULL ? json_pack("{s:s}", "error", "out of memory") : body);
        return;
    }
    if (r->method == HTTP_HEAD) {
        tandem_node_respond(node, r, 200, "text/event-stream", NULL, NULL, 0); /* no stream */
        return;
    }
    snprintf(headers, sizeof headers, "X-Tandem-Node: %s\r\n", node->self.name);
    rv = tandem_events_stream(&node->events, r, has_since == 1, since, headers);
    if (rv == UV_EAGAIN) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"error\":\"%u event streams are open already (bcp_event_streams_max)\"}",
                 node->config->bcp_event_streams_max);
        tandem_route_json(node, r, 503, "Retry-After: 5\r\n", body);
        return;
    }
    if (rv == UV_EBUSY) {
        tandem_route_error(node, r, 400,
                           "an event stream cannot be followed by pipelined "
                           "requests on its connection");
    } else if (rv != 0) {
        tandem_route_error(node, r, 503, "cannot open the event stream: %s", uv_strerror(rv));
    }
}

/* ---- incident reports ---- */

/* The command storing one report, alive until its proposal finished. */
struct incident_command {
    Tandem__Command command;
    Tandem__IncidentStore store;
    Tandem__IncidentRecord record;
    json_t *body; /* owned: the record's strings point into it */
    char *report; /* owned */
};

static void incident_command_free(void *owner)
{
    struct incident_command *ic = owner;
    json_decref(ic->body);
    free(ic->report);
    free(ic);
}

static int64_t integer_or(json_t *body, const char *name, int64_t fallback)
{
    json_t *v = json_object_get(body, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : fallback;
}

/* A report has a decision (> 0), a site label and a kind, and fits the stored record. */
static bool incident_body_ok(json_t *body, const char *report)
{
    const char *site = json_string_value(json_object_get(body, "site"));
    const char *kind = json_string_value(json_object_get(body, "kind"));
    return report != NULL && site != NULL && kind != NULL &&
           json_integer_value(json_object_get(body, "decision_seq")) > 0 &&
           tandem_member_name_ok(site, TANDEM_SITE_LEN_MAX) &&
           strlen(kind) <= TANDEM_INCIDENT_KIND_LEN_MAX &&
           strlen(report) <= TANDEM_INCIDENT_REPORT_BYTES_MAX;
}

/* The command for a checked report; takes body and report. */
static void incident_command_fill(struct incident_command *ic, json_t *body, char *report)
{
    tandem__command__init(&ic->command);
    tandem__incident_store__init(&ic->store);
    tandem__incident_record__init(&ic->record);
    ic->body = body;
    ic->report = report;
    ic->record.decision_seq = (uint64_t)json_integer_value(json_object_get(body, "decision_seq"));
    ic->record.site = (char *)json_string_value(json_object_get(body, "site"));
    ic->record.kind = (char *)json_string_value(json_object_get(body, "kind"));
    ic->record.decided_ms = integer_or(body, "decided_ms", 0);
    ic->record.longest_write_gap_ms = integer_or(body, "longest_write_gap_ms", -1);
    ic->record.jobs_moved = integer_or(body, "jobs_moved", 0);
    ic->record.report_json = report;
    ic->store.record = &ic->record;
    ic->command.body_case = TANDEM__COMMAND__BODY_INCIDENT_STORE;
    ic->command.incident_store = &ic->store;
}

static void route_incident_store(struct tandem_node *node, struct tandem_http_request *r,
                                 const char *p)
{
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
    char *report = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    bool ok = incident_body_ok(body, report);
    struct incident_command *ic = ok ? calloc(1, sizeof *ic) : NULL;
    if (ic != NULL) {
        incident_command_fill(ic, body, report);
        tandem_route_submit(node, r, &ic->command, incident_command_free, ic);
        return;
    }
    json_decref(body);
    free(report);
    if (ok) {
        tandem_route_error(node, r, 503, "out of memory");
        return;
    }
    tandem_route_error(node, r, 400,
                       "an incident report is a JSON object with \"decision_seq\" (> 0), "
                       "\"site\" and \"kind\", at most %u bytes",
                       TANDEM_INCIDENT_REPORT_BYTES_MAX);
}

static const struct tandem_route_history incidents_history = {
    "incidents", INCIDENTS_LIMIT_DEFAULT, TANDEM_INCIDENTS_KEPT, tandem_sites_incidents_json};

static void route_incidents(struct tandem_node *node, struct tandem_http_request *r, const char *p)
{
    (void)p;
    tandem_route_history(node, r, &incidents_history);
}

/* ---- the route table ---- */

static const struct tandem_route routes[] = {
    /* Local: each node streams what it sees (README: which events every node shows). */
    {"events", HTTP_GET, "/v1/events", TANDEM_ROUTE_LOCAL, route_events, TANDEM_PERM_READ},
    {"bcp_incidents", HTTP_GET, "/v1/bcp/incidents", TANDEM_ROUTE_READ, route_incidents,
     TANDEM_PERM_READ},
    {"bcp_incident_store", HTTP_POST, "/v1/bcp/incidents", TANDEM_ROUTE_WRITE, route_incident_store,
     TANDEM_PERM_BCP},
};

const struct tandem_route_table tandem_events_route_table = {routes,
                                                             sizeof routes / sizeof routes[0]};
