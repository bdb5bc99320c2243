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
    static const struct tandem_route_field fields[] = {TANDEM_OPTIONAL("reason", STRING),
                                                       TANDEM_FIELDS_END};
    json_t *body = r->body_len == 0 ? json_object() : json_loadb(r->body, r->body_len, 0, &jerr);
    if (json_is_object(body) && tandem_route_fields_check(body, fields, errmsg) != 0) {
        tandem_route_error(node, r, 400, "%s", errmsg);
        json_decref(body);
        return;
    }
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

/* A SiteDecision whose strings point into the request's parsed body, both alive until the
 * proposal finished. */
struct decision_command {
    Tandem__Command command;
    Tandem__SiteDecision decision;
    json_t *body; /* owned */
};

static void decision_command_free(void *owner)
{
    struct decision_command *dc = owner;
    json_decref(dc->body);
    free(dc);
}

/* The string field name of body when it is one of at most len_max bytes, else NULL. */
static char *text_field(json_t *body, const char *name, size_t len_max)
{
    const char *value = json_string_value(json_object_get(body, name));
    return value != NULL && strlen(value) <= len_max ? (char *)value : NULL;
}

/* POST /v1/bcp/decisions at the leader: only quarantine releases are recorded this way, so the
 * route cannot be used to write arbitrary history. */
static void route_bcp_decision(struct tandem_node *node, struct tandem_http_request *r,
                               const char *p)
{
    static const struct tandem_route_field fields[] = {
        TANDEM_REQUIRED("action", STRING), TANDEM_REQUIRED("member", STRING),
        TANDEM_REQUIRED("site", STRING),   TANDEM_REQUIRED("reason", STRING),
        TANDEM_REQUIRED("by", STRING),     TANDEM_FIELDS_END};
    char why[TANDEM_ERRMSG_SIZE];
    json_t *body = json_loadb(r->body, r->body_len, 0, NULL);
    (void)p;
    if (json_is_object(body) && tandem_route_fields_check(body, fields, why) != 0) {
        tandem_route_error(node, r, 400, "%s", why);
        json_decref(body);
        return;
    }
    struct decision_command *dc = calloc(1, sizeof *dc);
    if (dc == NULL) {
        json_decref(body);
        tandem_route_error(node, r, 500, "out of memory");
        return;
    }
    tandem__command__init(&dc->command);
    tandem__site_decision__init(&dc->decision);
    Tandem__SiteDecision *d = &dc->decision;
    dc->body = body;
    d->action = text_field(dc->body, "action", TANDEM_SITE_ACTION_LEN_MAX);
    d->member = text_field(dc->body, "member", TANDEM_NAME_LEN_MAX);
    d->site = text_field(dc->body, "site", TANDEM_SITE_LEN_MAX);
    d->reason = text_field(dc->body, "reason", TANDEM_SITE_REASON_LEN_MAX);
    d->by = text_field(dc->body, "by", TANDEM_SITE_BY_LEN_MAX);
    if (d->action == NULL || strcmp(d->action, TANDEM_BCP_RELEASE_ACTION) != 0 ||
        d->member == NULL || !tandem_member_name_ok(d->member, TANDEM_NAME_LEN_MAX) ||
        d->site == NULL || d->reason == NULL || d->by == NULL) {
        tandem_route_error(node, r, 400,
                           "body must be {\"action\": \"%s\", \"member\", \"site\", \"reason\", "
                           "\"by\"}",
                           TANDEM_BCP_RELEASE_ACTION);
        decision_command_free(dc);
        return;
    }
    d->from_role = d->to_role = (char *)"";
    dc->command.body_case = TANDEM__COMMAND__BODY_SITE_DECISION;
    dc->command.site_decision = d;
    tandem_log(TANDEM_LOG_WARN, "recording the operator's quarantine release of %s: %s", d->member,
               d->reason);
    tandem_route_submit(node, r, &dc->command, decision_command_free, dc);
}

/* X(id, method, pattern, flags, perm, handler): ids are metrics labels, in this order. */
#define QUARANTINE_ROUTES(X)                                                                       \
    X(node_release, HTTP_POST, "/v1/node/release", TANDEM_ROUTE_LOCAL, TANDEM_PERM_NODE,           \
      route_node_release)                                                                          \
    X(bcp_decision, HTTP_POST, "/v1/bcp/decisions", TANDEM_ROUTE_WRITE, TANDEM_PERM_BCP,           \
      route_bcp_decision)

TANDEM_ROUTE_TABLE(tandem_quarantine_route_table, QUARANTINE_ROUTES);
