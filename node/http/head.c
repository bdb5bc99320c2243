/* Growing buffers and header-field collection shared by the HTTP server and client. */
#include "node/http/head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "storage/assert.h"

#define BUF_BYTES_FIRST 256

int tandem_http_buf_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap > 0 ? *cap : BUF_BYTES_FIRST;
    while (n < need) {
        n *= 2;
    }
    char *p = realloc(*buf, n);
    if (p == NULL) {
        return UV_ENOMEM;
    }
    *buf = p;
    *cap = n;
    return 0;
}

int tandem_http_buf_append(char **buf, size_t *len, size_t *cap, const void *at, size_t n)
{
    if (tandem_http_buf_reserve(buf, cap, *len + n + 1) != 0) {
        return UV_ENOMEM;
    }
    memcpy(*buf + *len, at, n);
    *len += n;
    return 0;
}

void tandem_http_head_start(struct tandem_http_head *h, size_t bytes_max, bool drop_extra)
{
    h->len = h->lead_len = 0; /* text and cap are kept: a warm buffer is reused */
    h->count = 0;
    h->state = TANDEM_HTTP_HEAD_LEAD;
    h->bytes_max = bytes_max;
    h->drop_extra = drop_extra;
}

void tandem_http_head_free(struct tandem_http_head *h)
{
    free(h->text);
    h->text = NULL;
    h->cap = h->len = 0;
}

static int head_append(struct tandem_http_head *h, const char *at, size_t len)
{
    if (h->len + len > h->bytes_max) {
        return TANDEM_HTTP_HEAD_TOO_BIG;
    }
    if (tandem_http_buf_append(&h->text, &h->len, &h->cap, at, len) != 0) {
        return TANDEM_HTTP_HEAD_NOMEM;
    }
    return 0;
}

int tandem_http_head_lead(struct tandem_http_head *h, const char *at, size_t len)
{
    tandem_assert(h->state == TANDEM_HTTP_HEAD_LEAD); /* the token comes before any field */
    return head_append(h, at, len);
}

int tandem_http_head_end(struct tandem_http_head *h)
{
    switch (h->state) {
        case TANDEM_HTTP_HEAD_LEAD:
            h->lead_len = h->len;
            break;
        case TANDEM_HTTP_HEAD_IN_VALUE: {
            uint32_t start = h->fields[h->count - 1].value;
            while (h->len > start && (h->text[h->len - 1] == ' ' || h->text[h->len - 1] == '\t')) {
                h->len--;
            }
            break;
        }
        case TANDEM_HTTP_HEAD_IN_FIELD:
            break;
        default:
            h->state = TANDEM_HTTP_HEAD_BETWEEN;
            return 0; /* nothing being collected */
    }
    h->state = TANDEM_HTTP_HEAD_BETWEEN;
    return head_append(h, "", 1);
}

/* http-parser splits a field across reads: a field right after a field is its remainder (an
 * empty value still gets a zero-length value callback). */
int tandem_http_head_field(struct tandem_http_head *h, const char *at, size_t len)
{
    if (h->state != TANDEM_HTTP_HEAD_IN_FIELD) {
        int rv = tandem_http_head_end(h);
        if (rv != 0) {
            return rv;
        }
        if (h->count == TANDEM_HTTP_FIELDS_MAX) {
            h->state = TANDEM_HTTP_HEAD_DROPPING;
            return h->drop_extra ? 0 : TANDEM_HTTP_HEAD_TOO_MANY;
        }
        tandem_assert(h->len < TANDEM_HTTP_FIELD_NO_VALUE); /* bytes_max keeps offsets small */
        h->fields[h->count].name = (uint32_t)h->len;
        h->fields[h->count].value = TANDEM_HTTP_FIELD_NO_VALUE;
        h->count++;
        h->state = TANDEM_HTTP_HEAD_IN_FIELD;
    }
    return head_append(h, at, len);
}

int tandem_http_head_value(struct tandem_http_head *h, const char *at, size_t len)
{
    if (h->state == TANDEM_HTTP_HEAD_DROPPING) {
        return 0;
    }
    if (h->state == TANDEM_HTTP_HEAD_IN_FIELD) {
        int rv = head_append(h, "", 1);
        if (rv != 0) {
            return rv;
        }
        h->fields[h->count - 1].value = (uint32_t)h->len;
        h->state = TANDEM_HTTP_HEAD_IN_VALUE;
    }
    tandem_assert(h->state == TANDEM_HTTP_HEAD_IN_VALUE); /* a value follows its name */
    return head_append(h, at, len);
}

const char *tandem_http_head_find(const struct tandem_http_head *h, const char *name)
{
    for (unsigned i = 0; i < h->count; i++) {
        if (h->fields[i].value != TANDEM_HTTP_FIELD_NO_VALUE &&
            strcasecmp(h->text + h->fields[i].name, name) == 0) {
            return h->text + h->fields[i].value;
        }
    }
    return NULL;
}

int tandem_http_parse(http_parser *p, const http_parser_settings *settings, const char *data,
                      size_t len, size_t *used)
{
    *used = http_parser_execute(p, settings, data, len);
    tandem_assert(*used <= len);
    enum http_errno e = HTTP_PARSER_ERRNO(p);
    if (e == HPE_PAUSED) {
        http_parser_pause(p, 0);
        return TANDEM_HTTP_PARSE_MESSAGE;
    }
    return e == HPE_OK ? TANDEM_HTTP_PARSE_MORE : TANDEM_HTTP_PARSE_ERROR;
}
