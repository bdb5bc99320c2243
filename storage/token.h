/* Checks of identifier-like text (node names, site labels, record ids): ASCII letters and
 * digits plus a caller-given set of punctuation, within a length bound. */
#ifndef TANDEM_STORAGE_TOKEN_H
#define TANDEM_STORAGE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

/* True when text is 1..len_max bytes of A-Z a-z 0-9 and the characters of punctuation. A NULL
 * text is not a token. */
bool tandem_token_ok(const char *text, size_t len_max, const char *punctuation);

#endif
