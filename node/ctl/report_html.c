/* Builds and writes the standalone drill report file (node/ctl/report_html.h). */
#include "node/ctl/report_html.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/ui/assets.h"

/* A growing text; on allocation failure it is poisoned (text NULL) and stays so. */
struct buf {
    char *text;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *bytes, size_t len)
{
    if (b->text == NULL) {
        return;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *grown = realloc(b->text, cap);
        if (grown == NULL) {
            free(b->text);
            b->text = NULL;
            return;
        }
        b->text = grown;
        b->cap = cap;
    }
    memcpy(b->text + b->len, bytes, len);
    b->len += len;
    b->text[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *text)
{
    buf_add(b, text, strlen(text));
}

/* An embedded console file; false when it is missing from the build. */
static bool buf_asset(struct buf *b, const char *name)
{
    const struct tandem_ui_asset *a = tandem_ui_asset_find(name);
    if (a == NULL) {
        return false;
    }
    buf_add(b, (const char *)a->bytes, a->len);
    return true;
}

/* The JSON with every '<' as \u003c (only inside strings can one appear). */
static void buf_json(struct buf *b, const json_t *report)
{
    char *text = json_dumps(report, JSON_COMPACT);
    if (text == NULL) {
        free(b->text);
        b->text = NULL;
        return;
    }
    for (const char *p = text; *p != '\0';) {
        const char *lt = strchr(p, '<');
        size_t run = lt == NULL ? strlen(p) : (size_t)(lt - p);
        buf_add(b, p, run);
        if (lt == NULL) {
            break;
        }
        buf_str(b, "\\u003c");
        p = lt + 1;
    }
    free(text);
}

char *tandem_ctl_report_html(const json_t *report, int64_t generated_ms)
{
    char generated[32];
    struct buf b = {malloc(64 * 1024), 0, 64 * 1024};
    if (b.text == NULL) {
        return NULL;
    }
    b.text[0] = '\0';
    snprintf(generated, sizeof generated, "%" PRId64, generated_ms);
    buf_str(&b, "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                "<title>tandem drill report</title>\n<style>\n");
    bool ok = buf_asset(&b, "app.css");
    buf_str(&b, "</style>\n</head>\n<body>\n<div id=\"report-bar\"></div>\n<main "
                "id=\"report-root\"></main>\n<script type=\"application/json\" id=\"drill-data\" "
                "data-generated=\"");
    buf_str(&b, generated);
    buf_str(&b, "\">");
    buf_json(&b, report);
    buf_str(&b, "</script>\n<script>\n");
    ok = ok && buf_asset(&b, "i18n.js");
    buf_str(&b, "\n");
    ok = ok && buf_asset(&b, "report.js");
    buf_str(&b, "\nTandemReport.standalone();\n</script>\n</body>\n</html>\n");
    if (!ok) {
        free(b.text);
        return NULL;
    }
    return b.text;
}

int tandem_ctl_report_write(const json_t *report, int64_t generated_ms, const char *path,
                            char *errmsg, size_t size)
{
    char tmp[4096];
    char *html = tandem_ctl_report_html(report, generated_ms);
    if (html == NULL) {
        snprintf(errmsg, size, "out of memory building the report");
        return -1;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(html);
        snprintf(errmsg, size, "%s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t len = strlen(html), done = 0;
    while (fd >= 0 && done < len) {
        ssize_t n = write(fd, html + done, len - done);
        if (n < 0 && errno != EINTR) {
            break;
        }
        done += n > 0 ? (size_t)n : 0;
    }
    int saved = errno;
    bool written = fd >= 0 && done == len && fsync(fd) == 0;
    saved = written ? 0 : (errno != 0 ? errno : saved);
    if (fd >= 0 && close(fd) != 0 && written) {
        written = false;
        saved = errno;
    }
    free(html);
    if (!written || rename(tmp, path) != 0) {
        snprintf(errmsg, size, "%s: %s", written ? path : tmp, strerror(written ? errno : saved));
        if (fd >= 0) {
            unlink(tmp);
        }
        return -1;
    }
    return 0;
}
