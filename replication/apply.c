/* The result helpers of the apply contract: how an apply function words its outcome. */
#include "replication/apply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESULT_MESSAGE_BYTES_MAX 512 /* an error message in a result body */

void tandem_result_set(struct tandem_result *result, int status, const char *fmt, ...)
{
    va_list args;
    if (result == NULL) {
        return;
    }
    free(result->body);
    result->status = status;
    va_start(args, fmt);
    if (vasprintf(&result->body, fmt, args) < 0) {
        result->body = NULL;
    }
    va_end(args);
}

void tandem_result_error(struct tandem_result *result, int status, const char *fmt, ...)
{
    char message[RESULT_MESSAGE_BYTES_MAX];
    va_list args;
    if (result == NULL) {
        return;
    }
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    json_t *body = json_pack("{s:s}", "error", message);
    free(result->body);
    result->status = status;
    result->body = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
}

void tandem_result_jansson(struct tandem_result *result, int status, json_t *body)
{
    if (result == NULL) {
        json_decref(body);
        return;
    }
    char *text = body == NULL ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
    free(result->body);
    result->status = text == NULL ? 500 : status;
    result->body = text != NULL ? text : strdup("{\"error\":\"out of memory\"}");
}
