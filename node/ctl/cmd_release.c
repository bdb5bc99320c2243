/* tandemctl member release: lifts the start-up quarantine of one named node, at that node. */
#include <stdio.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"

#define RELEASE_REASON_MAX 200 /* the server's limit on the reason text */

static int release_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                         const json_t *root)
{
    const char *was = json_string_value(json_object_get(root, "was"));
    fprintf(ctx->out,
            "%s released from start-up quarantine; it was %s\n"
            "the release is recorded in the BCP decisions once %s sees a leader\n",
            args->positional[0], was != NULL && was[0] != '\0' ? was : "just started",
            args->positional[0]);
    return TANDEM_CTL_OK;
}

/* Finds member name's API base URL in any node's local status (a quarantined cluster has no
 * leader to ask). Returns an exit code; api is filled on TANDEM_CTL_OK. */
static int member_api(struct tandem_ctl_context *ctx, const char *name, char *api, size_t size)
{
    json_t *root = NULL, *member;
    size_t i;
    int rc = tandem_ctl_get_json(ctx, "/v1/status?consistency=local", "members", &root);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "no member named '%s' in the configuration",
                         name);
    json_array_foreach(json_object_get(root, "members"), i, member)
    {
        const char *member_name = json_string_value(json_object_get(member, "name"));
        const char *url = json_string_value(json_object_get(member, "api"));
        if (member_name != NULL && url != NULL && strcmp(member_name, name) == 0 &&
            strlen(url) < size) {
            snprintf(api, size, "%s", url);
            rc = TANDEM_CTL_OK;
            break;
        }
    }
    json_decref(root);
    return rc;
}

int tandem_ctl_member_release(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *reason = tandem_ctl_args_flag(args, "reason");
    char api[TANDEM_CTL_URL_MAX];
    struct tandem_ctl_client node;
    if (reason != NULL && strlen(reason) > RELEASE_REASON_MAX) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "--reason: at most %d bytes",
                               RELEASE_REASON_MAX);
    }
    int rc = member_api(ctx, args->positional[0], api, sizeof api);
    if (rc != TANDEM_CTL_OK) {
        return tandem_ctl_answer(ctx, args, rc, NULL, release_print);
    }
    /* The release acts at the node itself: no failover to another endpoint. */
    if (tandem_ctl_client_init(&node, api, ctx->client->timeout_ms) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "member %s: %s", args->positional[0],
                               node.errmsg);
    }
    struct tandem_ctl_client *endpoints = ctx->client;
    ctx->client = &node;
    json_t *body = json_object();
    if (body != NULL && reason != NULL) {
        json_object_set_new(body, "reason", json_string(reason));
    }
    rc = tandem_ctl_post_answer(ctx, args, TANDEM_CTL_OK, "/v1/node/release", body, release_print);
    ctx->client = endpoints;
    tandem_ctl_client_close(&node);
    return rc;
}
