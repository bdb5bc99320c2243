/* tandemctl member divergence: finds NAME's own API (the members list, then every -e endpoint)
 * and shows the divergence reports that node keeps about its re-seeds, newest first. */
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/ctl.h"

#define DIVERGENCE_PATH       "/v1/node/divergence"
#define DIVERGENCE_CANDIDATES (TANDEM_CTL_ENDPOINTS_MAX + 1) /* NAME's member API + each -e */
#define DIVERGENCE_PROBE_MS   5000
#define IDS_SHOWN             20 /* identifiers printed per kind; -o json has them all */

struct candidates {
    char urls[DIVERGENCE_CANDIDATES][TANDEM_CTL_URL_MAX];
    const char *ptrs[DIVERGENCE_CANDIDATES];
    size_t n;
};

static void candidate_add(struct candidates *c, const char *base)
{
    size_t len = strlen(base);
    while (len > 0 && base[len - 1] == '/') {
        len--;
    }
    if (len == 0 || c->n >= DIVERGENCE_CANDIDATES) {
        return;
    }
    snprintf(c->urls[c->n], sizeof c->urls[c->n], "%s%.*s%s",
             strstr(base, "://") != NULL ? "" : "http://", (int)len, base, DIVERGENCE_PATH);
    c->ptrs[c->n] = c->urls[c->n];
    c->n++;
}

/* NAME's API from the members list (any node answers it), then every endpoint given. */
static void candidates_find(struct tandem_ctl_context *ctx, const char *name, struct candidates *c)
{
    json_t *members = NULL, *m;
    size_t i;
    if (tandem_ctl_get_json(ctx, "/v1/members", "members", &members) == TANDEM_CTL_OK) {
        json_array_foreach(json_object_get(members, "members"), i, m)
        {
            const char *n = json_string_value(json_object_get(m, "name"));
            const char *api = json_string_value(json_object_get(m, "api"));
            if (n != NULL && api != NULL && strcmp(n, name) == 0) {
                candidate_add(c, api);
            }
        }
    }
    json_decref(members);
    for (i = 0; i < ctx->client->endpoint_count; i++) {
        candidate_add(c, ctx->client->endpoints[i]);
    }
}

/* The answer of the node called name among responses: 0 with *out (200) or an error line. */
static int answer_of(struct tandem_ctl_context *ctx, const char *name,
                     struct tandem_ctl_response *responses, size_t n, json_t **out)
{
    for (size_t i = 0; i < n; i++) {
        struct tandem_ctl_response *r = &responses[i];
        if (r->status == 0 || strcmp(r->node, name) != 0) {
            continue;
        }
        if (r->status != 200) {
            char reason[TANDEM_CTL_ERRMSG_SIZE];
            tandem_ctl_response_reason(r, reason, sizeof reason);
            return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s (HTTP %ld)", reason, r->status);
        }
        *out = json_loadb(r->body, r->body_len, 0, NULL);
        if (!json_is_array(json_object_get(*out, "reports"))) {
            json_decref(*out);
            *out = NULL;
            return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "answer has no \"reports\" list");
        }
        return TANDEM_CTL_OK;
    }
    return tandem_ctl_fail(ctx, TANDEM_CTL_EUNREACHABLE,
                           "%s did not answer (its reports are on its own disk: give its API URL "
                           "with -e)",
                           name);
}

static const char *text(json_t *object, const char *field, const char *fallback)
{
    const char *value = json_string_value(json_object_get(object, field));
    return value != NULL ? value : fallback;
}

/* "1057/4 exact", "99/? at_or_before", "unknown". */
static void fork_text(json_t *fork, char *out, size_t size)
{
    json_t *index = json_object_get(fork, "index"), *term = json_object_get(fork, "term");
    const char *certainty = text(fork, "certainty", "unknown");
    if (!json_is_integer(index)) {
        snprintf(out, size, "%s", certainty);
    } else if (json_is_integer(term)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " %s",
                 json_integer_value(index), json_integer_value(term), certainty);
    } else {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT "/? %s", json_integer_value(index), certainty);
    }
}

static void ids_print(FILE *f, const char *kind, json_t *ids)
{
    size_t i, n = json_array_size(ids);
    json_t *id;
    if (n == 0) {
        return;
    }
    fprintf(f, "    %s:", kind);
    json_array_foreach(ids, i, id)
    {
        if (i == IDS_SHOWN) {
            fprintf(f, " ... (%zu more; -o json lists them)", n - IDS_SHOWN);
            break;
        }
        fprintf(f, " %s", json_string_value(id));
    }
    fputc('\n', f);
}

static void report_print(FILE *f, json_t *r)
{
    char fork[64], after[24] = "?";
    json_t *touched = json_object_get(r, "touched"), *n = json_object_get(r, "entries_after_fork");
    fork_text(json_object_get(r, "fork"), fork, sizeof fork);
    if (json_is_integer(n)) {
        snprintf(after, sizeof after, "%" JSON_INTEGER_FORMAT, json_integer_value(n));
    }
    json_t *bytes = json_object_get(r, "bytes_kept");
    fprintf(f, "%-25s %-24s %-6s %5zu %5zu %6zu %8.1f  %s\n", text(r, "created", "-"), fork, after,
            json_array_size(json_object_get(touched, "keys")),
            json_array_size(json_object_get(touched, "jobs")),
            json_array_size(json_object_get(touched, "boxes")),
            (double)json_integer_value(bytes) / (1024.0 * 1024.0), text(r, "folder", "?"));
    ids_print(f, "keys", json_object_get(touched, "keys"));
    ids_print(f, "jobs", json_object_get(touched, "jobs"));
    ids_print(f, "boxes", json_object_get(touched, "boxes"));
    if (json_object_get(r, "error") != NULL) {
        fprintf(f, "    error: %s\n", text(r, "error", ""));
    }
}

static int divergence_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                            const json_t *answer)
{
    json_t *reports = json_object_get(answer, "reports"), *r;
    size_t i;
    fprintf(ctx->out, "divergence reports of %s (newest first; kept until deleted by hand):\n",
            args->positional[0]);
    fprintf(ctx->out, "%-25s %-24s %-6s %5s %5s %6s %8s  %s\n", "CREATED", "FORK (INDEX/TERM)",
            "AFTER", "KEYS", "JOBS", "BOXES", "MIB", "FOLDER");
    json_array_foreach(reports, i, r)
    {
        report_print(ctx->out, r);
    }
    fprintf(ctx->out, "AFTER: entries after the fork that the cluster never had; reconcile the "
                      "keys, jobs and boxes listed, then delete the folder.\n");
    return TANDEM_CTL_OK;
}

int tandem_ctl_member_divergence(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *name = args->positional[0];
    struct candidates *c = calloc(1, sizeof *c);
    struct tandem_ctl_response *responses = calloc(DIVERGENCE_CANDIDATES, sizeof *responses);
    char errmsg[TANDEM_CTL_ERRMSG_SIZE];
    json_t *answer = NULL;
    int rc = TANDEM_CTL_OK;
    if (c == NULL || responses == NULL) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
        goto done;
    }
    candidates_find(ctx, name, c);
    for (size_t i = 0; i < c->n; i++) {
        tandem_ctl_response_init(&responses[i]);
    }
    long timeout_ms = ctx->timeout_ms < DIVERGENCE_PROBE_MS ? ctx->timeout_ms : DIVERGENCE_PROBE_MS;
    if (tandem_ctl_client_probe(c->ptrs, c->n, timeout_ms, responses, errmsg) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "%s", errmsg);
    } else {
        rc = answer_of(ctx, name, responses, c->n, &answer);
    }
    for (size_t i = 0; i < c->n; i++) {
        tandem_ctl_response_free(&responses[i]);
    }
done:
    free(c);
    free(responses);
    return tandem_ctl_answer(ctx, args, rc, answer, divergence_print);
}
