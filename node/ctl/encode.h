/* Byte encodings tandemctl needs: base64 (API values), percent-encoding (URL keys), UTF-8
 * checks and printable escapes for one-line output. */
#ifndef TANDEM_CTL_ENCODE_H
#define TANDEM_CTL_ENCODE_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a new NUL-terminated base64 string (caller frees), NULL when out of memory. */
char *tandem_ctl_base64_encode(const unsigned char *data, size_t len);

/* Decodes standard base64 (padding required, no whitespace) into a new buffer (caller frees;
 * one spare NUL byte follows the data). Returns 0, or -1 when text is not base64 or memory
 * ran out. */
int tandem_ctl_base64_decode(const char *text, unsigned char **out, size_t *out_len);

/* Percent-encodes every byte except RFC 3986 unreserved ones, so '/', ' ', '?', '%' and '&'
 * in keys survive as path segments and query values. Returns 0, or -1 when out_size is too
 * small. */
int tandem_ctl_percent_encode(const char *data, size_t len, char *out, size_t out_size);

bool tandem_ctl_utf8_valid(const unsigned char *data, size_t len);

/* Writes data for a one-line display: printable ASCII as is, other bytes as \xNN, cut after
 * display_max characters with "...". out is always NUL-terminated. */
void tandem_ctl_escape(const unsigned char *data, size_t len, size_t display_max, char *out,
                       size_t out_size);

#endif
