/* tandemctl backup create --out FILE: the backup streamed from the leader (POST
 * /v1/backups/download) into FILE.part, synced, checked at level 1 against the answer's headers,
 * then moved to FILE; nothing is left at FILE or FILE.part when any step fails. */
#ifndef TANDEM_CTL_BACKUP_DOWNLOAD_H
#define TANDEM_CTL_BACKUP_DOWNLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "node/ctl/ctl.h"
#include "storage/backup.h"

#define TANDEM_CTL_PART_SUFFIX          ".part"
#define TANDEM_CTL_DOWNLOAD_STALL_S     3600L /* a backup of a large state takes minutes */
#define TANDEM_CTL_DOWNLOAD_PATH        "/v1/backups/download"
#define TANDEM_CTL_DOWNLOAD_NAME_SIZE   256
#define TANDEM_CTL_DOWNLOAD_SHA256_SIZE 65 /* hex and NUL */

/* What the answer's head said about the file (the X-Tandem-Backup-* lines, Content-Length). */
struct tandem_ctl_download_head {
    char name[TANDEM_CTL_DOWNLOAD_NAME_SIZE];           /* "" when absent */
    char sha256[TANDEM_CTL_DOWNLOAD_SHA256_SIZE];       /* the trailer's hash; "" when absent */
    char state_digest[TANDEM_CTL_DOWNLOAD_SHA256_SIZE]; /* "" when absent */
    int64_t index;                                      /* -1 when absent */
    int64_t length;                                     /* Content-Length, -1 when absent */
};

void tandem_ctl_download_head_init(struct tandem_ctl_download_head *h);
/* Takes one header line ("Name: value\r\n"; a status line starts afresh) into h. */
void tandem_ctl_download_head_line(struct tandem_ctl_download_head *h, const char *line,
                                   size_t len);
/* The base URL of a redirect to the download route: location without its path, which must be
 * TANDEM_CTL_DOWNLOAD_PATH, into out. Returns 0, or -1 when location is not such a URL
 * (http:// or https://, a host, that path, nothing after it), does not fit out_size, or is
 * http:// when answered_by (the endpoint that sent the redirect) is https://: the credentials
 * tandemctl sends never leave TLS. */
int tandem_ctl_download_base(const char *location, const char *answered_by, char *out,
                             size_t out_size);
/* Compares what the file's manifest and trailer (sha256_hex) say with the head; returns 0, or
 * -1 with why (TANDEM_CTL_ERRMSG_SIZE) naming the first difference. Absent head fields are not
 * compared, except sha256 and length, which the server always sends. */
int tandem_ctl_download_matches(const struct tandem_ctl_download_head *h,
                                const struct tandem_backup_manifest *m, const char *sha256_hex,
                                uint64_t size, char *why);

/* Streams a backup into out (which must not exist, nor out.part) and checks it; *answer gets
 * {"name","node","bytes","out","manifest"} on TANDEM_CTL_OK. Returns a TANDEM_CTL_* code with
 * ctx->errmsg filled otherwise. */
int tandem_ctl_backup_download(struct tandem_ctl_context *ctx, const char *out, json_t **answer);

#endif
