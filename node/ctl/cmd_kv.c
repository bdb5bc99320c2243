/* tandemctl kv commands: put, get, del, list and cas against /v1/kv and /v1/txn. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/ctl/client.h"
#include "node/ctl/columns.h"
#include "node/ctl/ctl.h"
#include "node/ctl/encode.h"
#include "node/ctl/listing.h"

#define VALUE_MAX                                                                                  \
    (64L * 1024 * 1024)               /* values read from stdin or a file; the server's body       \
                                         limit is lower, this only bounds our memory */
#define KEY_ENCODED_MAX (512 * 3 + 1) /* a 512-byte key, every byte percent-encoded */
#define LIST_PAGE_MAX   1000          /* keys asked for per page (the server allows 10000) */
#define READ_CHUNK      65536         /* first buffer for stdin/file values; doubles */

/* A value argument: literal, "-" (stdin) or "@FILE". Owned bytes plus length. */
struct value {
    unsigned char *data; /* owned; NUL-terminated for convenience */
    size_t len;
};

static int read_stream(struct tandem_ctl_context *ctx, FILE *in, const char *name, struct value *v)
{
    size_t capacity = READ_CHUNK;
    v->data = malloc(capacity + 1);
    v->len = 0;
    if (v->data == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    for (;;) {
        if (v->len == capacity) {
            if ((long)capacity >= VALUE_MAX) {
                if (fgetc(in) == EOF) {
                    break;
                }
                return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: value larger than %ld bytes",
                                       name, VALUE_MAX);
            }
            capacity *= 2;
            unsigned char *grown = realloc(v->data, capacity + 1);
            if (grown == NULL) {
                return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
            }
            v->data = grown;
        }
        size_t n = fread(v->data + v->len, 1, capacity - v->len, in);
        v->len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(in)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: read failed", name);
    }
    v->data[v->len] = '\0';
    return TANDEM_CTL_OK;
}

/* Fills v from a value argument; on failure v may hold memory, value_free frees it. */
static int value_read(struct tandem_ctl_context *ctx, const char *arg, struct value *v)
{
    v->data = NULL;
    v->len = 0;
    if (strcmp(arg, "-") == 0) {
        return read_stream(ctx, ctx->in, "stdin", v);
    }
    if (arg[0] == '@') {
        FILE *f = fopen(arg + 1, "rb");
        if (f == NULL) {
            return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "%s: %s", arg + 1, strerror(errno));
        }
        int rc = read_stream(ctx, f, arg + 1, v);
        fclose(f);
        return rc;
    }
    v->len = strlen(arg);
    v->data = (unsigned char *)strdup(arg);
    return v->data ? TANDEM_CTL_OK : tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
}

static void value_free(struct value *v)
{
    free(v->data);
    v->data = NULL;
    v->len = 0;
}

/* "/v1/kv/<encoded key><suffix>" into path. */
static int key_path(struct tandem_ctl_context *ctx, const char *key, const char *suffix, char *path,
                    size_t path_size)
{
    char encoded[KEY_ENCODED_MAX];

    if (key[0] == '\0') {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "KEY must not be empty");
    }
    if (tandem_ctl_percent_encode(key, strlen(key), encoded, sizeof(encoded)) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "KEY longer than 512 bytes");
    }
    snprintf(path, path_size, "/v1/kv/%s%s", encoded, suffix);
    return TANDEM_CTL_OK;
}

/* Sets "value" (valid UTF-8) or "value_b64" on obj, so scripts get text when it is text. */
static int json_set_value(json_t *obj, const unsigned char *data, size_t len)
{
    if (tandem_ctl_utf8_valid(data, len)) {
        return json_object_set_new(obj, "value", json_stringn((const char *)data, len));
    }
    char *b64 = tandem_ctl_base64_encode(data, len);
    if (b64 == NULL) {
        return -1;
    }
    int rc = json_object_set_new(obj, "value_b64", json_string(b64));
    free(b64);
    return rc;
}

static json_t *json_index(int64_t index)
{
    return index >= 0 ? json_integer((json_int_t)index) : json_null();
}

static int kv_put_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    (void)args;
    fprintf(ctx->out, "ok mod_index %" JSON_INTEGER_FORMAT "\n",
            json_integer_value(json_object_get(root, "mod_index")));
    return TANDEM_CTL_OK;
}

int tandem_ctl_kv_put(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    struct value v;
    json_t *root = NULL;

    int rc = key_path(ctx, args->positional[0], "", path, sizeof(path));
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    rc = value_read(ctx, args->positional[1], &v);
    if (rc == TANDEM_CTL_OK) {
        struct tandem_ctl_request req = {"PUT", path, v.data, v.len, "application/octet-stream"};
        rc = tandem_ctl_call_json(ctx, &req, &root);
    }
    value_free(&v);
    return tandem_ctl_answer(ctx, args, rc, root, kv_put_print);
}

static int kv_get_print_json(struct tandem_ctl_context *ctx, const char *key,
                             const struct tandem_ctl_response *resp)
{
    json_t *obj = json_object();
    int rc = TANDEM_CTL_OK;

    if (obj == NULL || json_object_set_new(obj, "key", json_string(key)) != 0 ||
        json_set_value(obj, (const unsigned char *)(resp->body ? resp->body : ""),
                       resp->body_len) != 0 ||
        json_object_set_new(obj, "mod_index", json_index(resp->mod_index)) != 0 ||
        json_object_set_new(obj, "create_index", json_index(resp->create_index)) != 0 ||
        json_object_set_new(obj, "applied_index", json_index(resp->applied_index)) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory composing JSON");
    } else {
        rc = tandem_ctl_print_json(ctx, obj);
    }
    json_decref(obj);
    return rc;
}

int tandem_ctl_kv_get(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    struct tandem_ctl_response resp;
    bool local = tandem_ctl_args_flag(args, "local") != NULL;

    int rc =
        key_path(ctx, args->positional[0], local ? "?consistency=local" : "", path, sizeof(path));
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    tandem_ctl_response_init(&resp);
    struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
    rc = tandem_ctl_call(ctx, &req, &resp);
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        rc = kv_get_print_json(ctx, args->positional[0], &resp);
    } else if (rc == TANDEM_CTL_OK && resp.body_len > 0) {
        /* Exactly the stored bytes: no newline added, so binary values round-trip. */
        if (fwrite(resp.body, 1, resp.body_len, ctx->out) != resp.body_len) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
        }
    }
    tandem_ctl_response_free(&resp);
    return rc;
}

static int kv_del_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                        const json_t *root)
{
    (void)args;
    if (json_is_true(json_object_get(root, "deleted"))) {
        fprintf(ctx->out, "ok deleted mod_index %" JSON_INTEGER_FORMAT "\n",
                json_integer_value(json_object_get(root, "mod_index")));
    } else {
        fprintf(ctx->out, "ok nothing deleted (key absent)\n");
    }
    return TANDEM_CTL_OK;
}

int tandem_ctl_kv_del(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    char path[TANDEM_CTL_URL_MAX];
    json_t *root = NULL;

    int rc = key_path(ctx, args->positional[0], "", path, sizeof(path));
    if (rc == TANDEM_CTL_OK) {
        struct tandem_ctl_request req = {"DELETE", path, NULL, 0, NULL};
        rc = tandem_ctl_call_json(ctx, &req, &root);
    }
    return tandem_ctl_answer(ctx, args, rc, root, kv_del_print);
}

/* Appends one listed entry (value decoded from base64) to kvs as the composed object. */
static int list_collect(struct tandem_ctl_context *ctx, json_t *entry, json_t *kvs)
{
    const char *key = json_string_value(json_object_get(entry, "key"));
    const char *b64 = json_string_value(json_object_get(entry, "value"));
    unsigned char *data = NULL;
    size_t len = 0;

    if (key == NULL || b64 == NULL || tandem_ctl_base64_decode(b64, &data, &len) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "server sent a malformed entry");
    }
    json_t *obj = json_object();
    int rc = obj == NULL || json_object_set_new(obj, "key", json_string(key)) != 0 ||
             json_set_value(obj, data, len) != 0 ||
             json_object_set(obj, "mod_index", json_object_get(entry, "mod_index")) != 0 ||
             json_object_set(obj, "create_index", json_object_get(entry, "create_index")) != 0 ||
             json_array_append_new(kvs, obj) != 0;
    free(data);
    if (rc != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory collecting keys");
    }
    return TANDEM_CTL_OK;
}

/* Builds the page query: prefix, limit and (when paging) the exclusive start key. */
static int list_path(struct tandem_ctl_context *ctx, const char *prefix, const char *after,
                     size_t limit, bool local, char *path, size_t path_size)
{
    char prefix_enc[KEY_ENCODED_MAX];
    char after_enc[KEY_ENCODED_MAX] = "";

    if (tandem_ctl_percent_encode(prefix, strlen(prefix), prefix_enc, sizeof(prefix_enc)) != 0 ||
        (after != NULL &&
         tandem_ctl_percent_encode(after, strlen(after), after_enc, sizeof(after_enc)) != 0)) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "key or prefix longer than 512 bytes");
    }
    snprintf(path, path_size, "/v1/kv?prefix=%s&limit=%zu%s%s%s", prefix_enc, limit,
             after ? "&after=" : "", after_enc, local ? "&consistency=local" : "");
    return TANDEM_CTL_OK;
}

/* Pages through the listing into kvs until the server has no more or limit keys arrived.
 * *more tells whether keys were left out. */
static int list_fetch(struct tandem_ctl_context *ctx, const char *prefix, size_t limit, bool local,
                      json_t *kvs, bool *more)
{
    char path[TANDEM_CTL_URL_MAX];
    char *after = NULL; /* owned; last key of the previous page */
    int rc = TANDEM_CTL_OK;

    *more = true;
    /* Each page adds at least one key or ends the loop, so limit pages suffice. */
    for (size_t page = 0; page < limit && json_array_size(kvs) < limit && *more; page++) {
        size_t want = limit - json_array_size(kvs);
        json_t *root = NULL;
        rc = list_path(ctx, prefix, after, want < LIST_PAGE_MAX ? want : LIST_PAGE_MAX, local, path,
                       sizeof(path));
        struct tandem_ctl_request req = {"GET", path, NULL, 0, NULL};
        if (rc == TANDEM_CTL_OK) {
            rc = tandem_ctl_call_json(ctx, &req, &root);
        }
        if (rc != TANDEM_CTL_OK) {
            break;
        }
        json_t *page_kvs = json_object_get(root, "kvs");
        size_t i;
        json_t *entry;
        json_array_foreach(page_kvs, i, entry)
        {
            if (rc == TANDEM_CTL_OK && json_array_size(kvs) < limit) {
                rc = list_collect(ctx, entry, kvs);
            }
        }
        *more = json_is_true(json_object_get(root, "more"));
        free(after);
        size_t got = json_array_size(page_kvs);
        json_t *last = json_object_get(json_array_get(page_kvs, got ? got - 1 : 0), "key");
        after = json_is_string(last) ? strdup(json_string_value(last)) : NULL;
        json_decref(root);
        if (rc == TANDEM_CTL_OK && *more && after == NULL) {
            rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED,
                                 "server said more keys follow but sent none (or memory ran out)");
        }
        if (rc != TANDEM_CTL_OK) {
            break;
        }
    }
    free(after);
    return rc;
}

int tandem_ctl_kv_list(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *prefix = args->positional_count > 0 ? args->positional[0] : "";
    bool local = tandem_ctl_args_flag(args, "local") != NULL;
    size_t limit;
    bool more = false;

    int rc = tandem_ctl_limit_flag(ctx, args, &limit);
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    json_t *kvs = json_array();
    if (kvs == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory");
    }
    rc = list_fetch(ctx, prefix, limit, local, kvs, &more);
    if (rc == TANDEM_CTL_OK && ctx->output == TANDEM_CTL_OUTPUT_JSON) {
        json_t *root = json_pack("{s:O,s:b}", "kvs", kvs, "more", more);
        rc = root ? tandem_ctl_print_json(ctx, root)
                  : tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory composing JSON");
        json_decref(root);
    } else if (rc == TANDEM_CTL_OK) {
        rc = tandem_ctl_view_print(ctx, kvs, TANDEM_CTL_VIEW_KV, NULL);
    }
    if (rc == TANDEM_CTL_OK && more && tandem_ctl_args_flag(args, "limit") == NULL) {
        fprintf(stderr,
                "tandemctl: %s: stopped after %zu keys; more exist (use a longer "
                "prefix)\n",
                ctx->what, json_array_size(kvs));
    }
    json_decref(kvs);
    return rc;
}

/* The txn body: compare value == old, then put new; nothing on failure. */
static json_t *cas_body(const char *key, const struct value *old_value,
                        const struct value *new_value)
{
    char *old_b64 = tandem_ctl_base64_encode(old_value->data, old_value->len);
    char *new_b64 = tandem_ctl_base64_encode(new_value->data, new_value->len);
    json_t *body = NULL;

    if (old_b64 != NULL && new_b64 != NULL) {
        body = json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:s,s:s,s:s}],s:[]}", "compare", "key", key,
                         "target", "value", "op", "==", "value", old_b64, "success", "op", "put",
                         "key", key, "value", new_b64, "failure");
    }
    free(old_b64);
    free(new_b64);
    return body;
}

/* The put's mod_index from the txn results, else the answer's. */
static int cas_print(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                     const json_t *root)
{
    json_t *put = json_array_get(json_object_get(root, "results"), 0);
    json_t *index = json_object_get(put, "mod_index");
    (void)args;
    if (!json_is_integer(index)) {
        index = json_object_get(root, "mod_index");
    }
    fprintf(ctx->out, "ok mod_index %" JSON_INTEGER_FORMAT "\n", json_integer_value(index));
    return TANDEM_CTL_OK;
}

static int cas_send(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args,
                    const struct value *old_value, const struct value *new_value)
{
    const char *key = args->positional[0];
    json_t *body = cas_body(key, old_value, new_value);
    json_t *root = NULL;

    if (body == NULL) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "KEY must be UTF-8 (or memory ran out)");
    }
    int rc = tandem_ctl_post_json(ctx, "/v1/txn", body, &root);
    json_decref(body);
    if (rc == TANDEM_CTL_OK && !json_is_true(json_object_get(root, "succeeded"))) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "compare failed (current value differs)");
    }
    return tandem_ctl_answer(ctx, args, rc, root, cas_print);
}

int tandem_ctl_kv_cas(struct tandem_ctl_context *ctx, const struct tandem_ctl_args *args)
{
    const char *key = args->positional[0];
    struct value old_value = {NULL, 0};
    struct value new_value = {NULL, 0};
    char path[TANDEM_CTL_URL_MAX];

    int rc = key_path(ctx, key, "", path, sizeof(path)); /* same key checks as put */
    if (rc != TANDEM_CTL_OK) {
        return rc;
    }
    if (strcmp(args->positional[1], "-") == 0 && strcmp(args->positional[2], "-") == 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EUSAGE, "only one of OLD and NEW can be '-'");
    }
    rc = value_read(ctx, args->positional[1], &old_value);
    if (rc != TANDEM_CTL_OK) {
        goto err_after_values;
    }
    rc = value_read(ctx, args->positional[2], &new_value);
    if (rc != TANDEM_CTL_OK) {
        goto err_after_values;
    }
    rc = cas_send(ctx, args, &old_value, &new_value);

err_after_values:
    value_free(&new_value);
    value_free(&old_value);
    return rc;
}
