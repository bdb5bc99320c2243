/* Identifier-like text checks shared by the member codec and the record codecs. */
#include "storage/token.h"

#include <string.h>

#include "storage/assert.h"

static bool ascii_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool tandem_token_ok(const char *text, size_t len_max, const char *punctuation)
{
    tandem_assert(punctuation != NULL);
    /* strnlen: an unterminated or huge text is judged on len_max + 1 bytes, never read past. */
    size_t len = text == NULL ? 0 : strnlen(text, len_max + 1);
    if (len == 0 || len > len_max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!ascii_alnum(text[i]) && strchr(punctuation, text[i]) == NULL) {
            return false;
        }
    }
    return true;
}
