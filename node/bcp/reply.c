/* The reply functions of node/bcp/reply.h: format, check, hand to the bound answerer. */
#include "node/bcp/reply.h"

#include <stdarg.h>
#include <stdio.h>

#include "storage/assert.h"

void tandem_bcp_reply_json(const struct tandem_bcp_reply *reply, int status, json_t *body)
{
    tandem_assert(reply->ops != NULL && reply->request != NULL);
    tandem_assert(status >= 100 && status <= 599);
    reply->ops->json(reply->data, reply->request, status, body);
}

void tandem_bcp_reply_error(const struct tandem_bcp_reply *reply, int status, const char *fmt, ...)
{
    char message[TANDEM_BCP_REPLY_MESSAGE_MAX];
    va_list args;
    tandem_assert(reply->ops != NULL && reply->request != NULL);
    tandem_assert(status >= 400 && status <= 599);
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    reply->ops->error(reply->data, reply->request, status, message);
}

void tandem_bcp_reply_text(const struct tandem_bcp_reply *reply, int status,
                           const char *extra_headers, const char *body, size_t body_len)
{
    tandem_assert(reply->ops != NULL && reply->request != NULL);
    tandem_assert(status >= 100 && status <= 599);
    reply->ops->text(reply->data, reply->request, status, extra_headers, body, body_len);
}
