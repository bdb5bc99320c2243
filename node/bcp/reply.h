/* How a BCP orchestration (drill, forced failover, rejoin, takeover wait, leader relay) answers
 * the request that started it, without knowing the router: node/api/bcp.c binds a reply to an
 * HTTP request. Each orchestration calls exactly one reply function, exactly once. */
#ifndef TANDEM_NODE_BCP_REPLY_H
#define TANDEM_NODE_BCP_REPLY_H

#include <jansson.h>
#include <stddef.h>

struct tandem_bcp_reply_ops {
    /* Takes body (NULL answers 500 out of memory). */
    void (*json)(void *data, void *request, int status, json_t *body);
    /* {"error": message} */
    void (*error)(void *data, void *request, int status, const char *message);
    /* A JSON text as it is, with extra_headers (NULL or lines ending "\r\n"). */
    void (*text)(void *data, void *request, int status, const char *extra_headers, const char *body,
                 size_t body_len);
};

struct tandem_bcp_reply {
    const struct tandem_bcp_reply_ops *ops; /* borrowed (static) */
    void *data;                             /* borrowed: the router's node */
    void *request;                          /* borrowed: the request to answer */
};

#define TANDEM_BCP_REPLY_MESSAGE_MAX 512 /* an error message longer than this is cut */

void tandem_bcp_reply_json(const struct tandem_bcp_reply *reply, int status, json_t *body);
void tandem_bcp_reply_error(const struct tandem_bcp_reply *reply, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tandem_bcp_reply_text(const struct tandem_bcp_reply *reply, int status,
                           const char *extra_headers, const char *body, size_t body_len);

#endif
