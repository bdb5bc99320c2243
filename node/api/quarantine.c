/* Route table of the start-up quarantine: the node-local release an operator runs
 * (tandemctl member release) and the write that records a release in the decision history. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/bcp/runtime.h"
#include "node/log.h"
#include "node/node.h"
#include "replication/bcp/sites.h"
#include "storage/error.h"

/* POST /v1/node/release {"reason": "..."}: lifts this node's quarantine now. */
static void route_node_release(struct tandem_node *node, struct tandem_http_request *r,
                               const char *p)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    json_error_t jerr;
    (void)p;
    json_t *body = r->body_len == 0 ? json_object() : json_loadb(r->body, r->body_len, 0, &jerr);
    json_t *reason_json = json_object_get(body, "reason");
    const char *reason = json_string_value(reason_json);
    if (!json_is_object(body) || (reason_json != NULL && reason == NULL) ||
        (reason != NULL && strlen(reason) > TANDEM_BCP_RELEASE_REASON_MAX)) {
        tandem_route_error(node, r, 400, "body must be {\"reason\": \"<at most %d bytes>\"}",
                           TANDEM_BCP_RELEASE_REASON_MAX);
        json_decref(body);
        return;
    }
    char was[TANDEM_QUARANTINE_WHY_MAX];
    snprintf(was, sizeof was, "%s", node->bcp.quarantine_why);
    reason = reason == NULL || reason[0] == '\0' ? "no reason given" : reason;
    if (tandem_bcp_release(&node->bcp, reason, errmsg) != 0) {
        tandem_route_error(node, r, 409, "%s", errmsg);
    } else {
        tandem_route_jansson(
            node, r, 200,
            json_pack("{s:s,s:s,s:s}", "released", node->self.name, "reason", reason, "was", was));
    }
    json_decref(body);
}

/* A SiteDecision with its strings, alive until the proposal finished. */
struct decision_command {
    Tandem__Command command;
    Tandem__SiteDecision decision;
    char member[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char reason[TANDEM_SITE_REASON_LEN_MAX + 1];
    char by[TANDEM_SITE_BY_LEN_MAX + 1];
};

/* Copies the string field name of body into out; false when absent, not a string, or longer
 * than out_size - 1 bytes. */
static bool text_field(json_t *body, const char *name, char *out, size_t out_size)
{
    const char *value = json_string_value(json_object_get(body, name));
    if (value == NULL || strlen(value) >= out_size) {
        return false;
    }
    snprintf(out, out_size, "%s", value);
    return true;
}

/* POST /v1/bcp/decisions at the leader: only quarantine releases are recorded this way, so the
 * route cannot be used to write arbitrary history. */
static void route_bcp_decision(struct tandem_node *node, struct tandem_http_request *r,
                               const char *p)
{
    (void)p;
    json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
    const char *action = json_string_value(json_object_get(body, "action"));
    struct decision_command *dc = calloc(1, sizeof *dc);
    bool ok = dc != NULL && action != NULL && strcmp(action, TANDEM_BCP_RELEASE_ACTION) == 0 &&
              text_field(body, "member", dc->member, sizeof dc->member) &&
              tandem_member_name_ok(dc->member, TANDEM_NAME_LEN_MAX) &&
              text_field(body, "site", dc->site, sizeof dc->site) &&
              text_field(body, "reason", dc->reason, sizeof dc->reason) &&
              text_field(body, "by", dc->by, sizeof dc->by);
    json_decref(body);
    if (!ok) {
        tandem_route_error(node, r, dc == NULL ? 500 : 400,
                           "body must be {\"action\": \"%s\", \"member\", \"site\", \"reason\", "
                           "\"by\"}",
                           TANDEM_BCP_RELEASE_ACTION);
        free(dc);
        return;
    }
    tandem__command__init(&dc->command);
    tandem__site_decision__init(&dc->decision);
    dc->decision.action = (char *)TANDEM_BCP_RELEASE_ACTION;
    dc->decision.member = dc->member;
    dc->decision.site = dc->site;
    dc->decision.from_role = (char *)"";
    dc->decision.to_role = (char *)"";
    dc->decision.reason = dc->reason;
    dc->decision.by = dc->by;
    dc->command.body_case = TANDEM__COMMAND__BODY_SITE_DECISION;
    dc->command.site_decision = &dc->decision;
    tandem_log(TANDEM_LOG_WARN, "recording the operator's quarantine release of %s: %s", dc->member,
               dc->reason);
    tandem_route_submit(node, r, &dc->command, free, dc);
}

/* X(id, method, pattern, flags, handler): ids are metrics labels, in this order. */
#define QUARANTINE_ROUTES(X)                                                                       \
    X(node_release, HTTP_POST, "/v1/node/release", TANDEM_ROUTE_LOCAL, route_node_release)         \
    X(bcp_decision, HTTP_POST, "/v1/bcp/decisions", TANDEM_ROUTE_WRITE, route_bcp_decision)

TANDEM_ROUTE_TABLE(tandem_quarantine_route_table, QUARANTINE_ROUTES);
