/* tandemctl key commands: rotate (re-seal every personal-data value under key_file's current key,
 * batch after batch) and status. */
#include <stdio.h>
#include <stdlib.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"

#define ROTATE_ROUNDS_MAX 100000 /* batches of 256: 25.6 million values */

/* Sends POST /v1/keys/rotate until a batch re-seals nothing; sums the counts. */
int tandem_ctl_key_rotate(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_int_t resealed = 0, skipped = 0, batch = 1;
    int rc = TANDEM_CTL_OK;
    unsigned round = 0;
    (void)args;
    for (; rc == TANDEM_CTL_OK && batch > 0 && round < ROTATE_ROUNDS_MAX; round++) {
        json_t *root = NULL, *body = json_object();
        rc = tandem_ctl_post_json(ctx, "/v1/keys/rotate", body, &root);
        json_decref(body);
        if (rc == TANDEM_CTL_OK && !json_is_integer(json_object_get(root, "resealed"))) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no \"resealed\" count");
        }
        if (rc == TANDEM_CTL_OK) {
            batch = json_integer_value(json_object_get(root, "resealed"));
            resealed += batch;
            skipped += json_integer_value(json_object_get(root, "skipped"));
        }
        json_decref(root);
    }
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = json_pack("{s:I,s:I,s:I}", "resealed", resealed, "skipped", skipped,
                                 "batches", (json_int_t)round);
        rc = tandem_ctl_print_json(ctx, root);
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        fprintf(ctx->out,
                "re-sealed %" JSON_INTEGER_FORMAT " values under the current key in %u "
                "batches (%" JSON_INTEGER_FORMAT " changed meanwhile and were taken again)\n",
                resealed, round, skipped);
    }
    return rc;
}

int tandem_ctl_key_status(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    json_t *root = NULL;
    struct tandem_ctl_request req = {"GET", "/v1/keys/status", NULL, 0, NULL};
    int rc = tandem_ctl_call_json(ctx, &req, &root);
    (void)args;
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = tandem_ctl_print_json(ctx, root);
    } else if (rc == TANDEM_CTL_OK) {
        fprintf(ctx->out,
                "current key %" JSON_INTEGER_FORMAT " (%" JSON_INTEGER_FORMAT
                " in key_file): %" JSON_INTEGER_FORMAT " values under it, %" JSON_INTEGER_FORMAT
                " pending\n",
                json_integer_value(json_object_get(root, "current")),
                json_integer_value(json_object_get(root, "keys")),
                json_integer_value(json_object_get(root, "done")),
                json_integer_value(json_object_get(root, "pending")));
    }
    json_decref(root);
    return rc;
}
