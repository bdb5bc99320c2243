/* What the HTTP server and client share: growing buffers, and a message head's header fields
 * collected from http-parser's split callbacks into one buffer. */
#ifndef TANDEM_NODE_HTTP_HEAD_H
#define TANDEM_NODE_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define TANDEM_HTTP_FIELDS_MAX     64 /* header fields kept per message */
#define TANDEM_HTTP_FIELD_NO_VALUE UINT32_MAX

/* Grows *buf (doubling from 256 bytes) to hold need bytes. Returns 0 or UV_ENOMEM (then *buf is
 * unchanged). */
int tandem_http_buf_reserve(char **buf, size_t *cap, size_t need);
/* Appends n bytes at *len with room for a NUL after them. Returns 0 or UV_ENOMEM. */
int tandem_http_buf_append(char **buf, size_t *len, size_t *cap, const void *at, size_t n);

/* http-parser's settings with the callbacks both roles name alike (on_message_begin,
 * on_header_field, on_header_value, on_headers_complete, on_body, on_message_complete); url_cb
 * is the server's on_url, NULL for the client. */
#define TANDEM_HTTP_PARSER_SETTINGS(url_cb)                                                        \
    {                                                                                              \
        .on_message_begin = on_message_begin, .on_url = (url_cb),                                  \
        .on_header_field = on_header_field, .on_header_value = on_header_value,                    \
        .on_headers_complete = on_headers_complete, .on_body = on_body,                            \
        .on_message_complete = on_message_complete,                                                \
    }

enum tandem_http_parse_result {
    TANDEM_HTTP_PARSE_MORE,    /* every byte taken without error: the message goes on */
    TANDEM_HTTP_PARSE_MESSAGE, /* a message completed (on_message_complete paused the parser) */
    TANDEM_HTTP_PARSE_ERROR,   /* HTTP_PARSER_ERRNO(p) says why */
};

/* Feeds len bytes to p; *used says how many it took. A completed message unpauses the parser,
 * so the caller handles that message and feeds the rest. */
int tandem_http_parse(http_parser *p, const http_parser_settings *settings, const char *data,
                      size_t len, size_t *used);

enum tandem_http_head_error {
    TANDEM_HTTP_HEAD_TOO_BIG = 1, /* over bytes_max */
    TANDEM_HTTP_HEAD_TOO_MANY,    /* over TANDEM_HTTP_FIELDS_MAX fields (when not dropped) */
    TANDEM_HTTP_HEAD_NOMEM,
};

enum tandem_http_head_state {
    TANDEM_HTTP_HEAD_LEAD = 0, /* collecting the leading token (the server's URL), maybe empty */
    TANDEM_HTTP_HEAD_IN_FIELD,
    TANDEM_HTTP_HEAD_IN_VALUE,
    TANDEM_HTTP_HEAD_BETWEEN,
    TANDEM_HTTP_HEAD_DROPPING, /* a field past the maximum, being dropped */
};

struct tandem_http_field {
    uint32_t name, value; /* offsets into text; value TANDEM_HTTP_FIELD_NO_VALUE until seen */
};

/* text holds the leading token, then each field's name and value, each ending with a NUL. */
struct tandem_http_head {
    char *text; /* owned, kept across tandem_http_head_start for reuse */
    size_t len, cap;
    size_t bytes_max; /* text beyond it: TANDEM_HTTP_HEAD_TOO_BIG */
    size_t lead_len;  /* the leading token's length, once ended */
    struct tandem_http_field fields[TANDEM_HTTP_FIELDS_MAX];
    unsigned count;
    int state;       /* enum tandem_http_head_state */
    bool drop_extra; /* fields past the maximum are dropped instead of refused */
};

/* Empties h for a new message (its buffer is kept). */
void tandem_http_head_start(struct tandem_http_head *h, size_t bytes_max, bool drop_extra);
void tandem_http_head_free(struct tandem_http_head *h);

/* http-parser's pieces: of the leading token, of a field's name, of its value. Each returns 0 or
 * an enum tandem_http_head_error. */
int tandem_http_head_lead(struct tandem_http_head *h, const char *at, size_t len);
int tandem_http_head_field(struct tandem_http_head *h, const char *at, size_t len);
int tandem_http_head_value(struct tandem_http_head *h, const char *at, size_t len);
/* Ends the token being collected (trailing blanks are trimmed off a value). */
int tandem_http_head_end(struct tandem_http_head *h);

/* Case-insensitive; the first of repeated fields wins; NULL when absent. */
const char *tandem_http_head_find(const struct tandem_http_head *h, const char *name);

#endif
