/* The standalone drill report (issue 15): one HTML file with the console's report script and
 * style inlined and the drill record embedded as JSON, for `tandemctl bcp drill SITE --report
 * FILE.html`; it opens in a browser without any server and can be handed to an auditor. */
#ifndef TANDEM_NODE_CTL_REPORT_HTML_H
#define TANDEM_NODE_CTL_REPORT_HTML_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The page for report (a drill report as POST /v1/bcp/drill answers it), generated at
 * generated_ms (Unix ms), as a malloc'd NUL-terminated text (caller frees); NULL when out of
 * memory or an embedded file is missing. Every '<' of the JSON is written \u003c, so no value
 * can end the script element it lives in. */
char *tandem_ctl_report_html(const json_t *report, int64_t generated_ms);

/* Writes the page to path (through path.tmp and a rename, mode 0644). Returns 0, or -1 with
 * errmsg (size bytes) saying why. */
int tandem_ctl_report_write(const json_t *report, int64_t generated_ms, const char *path,
                            char *errmsg, size_t size);

#endif
