/* base64, percent-encoding, UTF-8 validation and display escaping for tandemctl. */
#include "node/ctl/encode.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char BASE64_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes the four characters of one group of n (1 to 3) bytes; '=' pads a short group. */
static void base64_group(const unsigned char *in, size_t n, char *out)
{
    uint32_t v = 0;
    for (size_t k = 0; k < 3; k++) {
        v = v << 8 | (k < n ? in[k] : 0u);
    }
    for (size_t k = 0; k < 4; k++) {
        out[k] = k <= n ? BASE64_ALPHABET[(v >> (18 - 6 * k)) & 63] : '=';
    }
}

char *tandem_ctl_base64_encode(const unsigned char *data, size_t len)
{
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3) {
        return NULL;
    }
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3, o += 4) {
        base64_group(data + i, len - i < 3 ? len - i : 3, out + o);
    }
    out[o] = '\0';
    return out;
}

static int base64_value(char c)
{
    const char *p = c != '\0' ? strchr(BASE64_ALPHABET, c) : NULL;
    return p != NULL ? (int)(p - BASE64_ALPHABET) : -1;
}

int tandem_ctl_base64_decode(const char *text, unsigned char **out, size_t *out_len)
{
    size_t len = strlen(text);
    if (len % 4 != 0) {
        return -1;
    }
    unsigned char *buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int pad = 0;
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            char c = text[i + k];
            int d = base64_value(c);
            /* '=' may only close the last group, at most twice, and only at its end. */
            if (c == '=' && last && k >= 2 && (k == 3 || text[i + 3] == '=')) {
                pad++;
                d = 0;
            } else if (d < 0 || pad > 0) {
                free(buf);
                return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        buf[o++] = (unsigned char)(v >> 16);
        if (pad < 2) {
            buf[o++] = (unsigned char)(v >> 8);
        }
        if (pad < 1) {
            buf[o++] = (unsigned char)v;
        }
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

int tandem_ctl_percent_encode(const char *data, size_t len, char *out, size_t out_size)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (o + (unreserved ? 1 : 3) >= out_size) {
            return -1;
        }
        if (unreserved) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 15];
        }
    }
    if (o >= out_size) {
        return -1;
    }
    out[o] = '\0';
    return 0;
}

/* Length of the valid UTF-8 sequence at data (RFC 3629: no overlongs, surrogates or values
 * above U+10FFFF), 0 when invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t avail)
{
    if (s[0] < 0x80) {
        return 1;
    }
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || s[0] > 0xF4 || n > avail) {
        return 0;
    }
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            return 0;
        }
    }
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F)) {
        return 0;
    }
    return n;
}

bool tandem_ctl_utf8_valid(const unsigned char *data, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(data + i, len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

void tandem_ctl_escape(const unsigned char *data, size_t len, size_t display_max, char *out,
                       size_t out_size)
{
    size_t o = 0;
    size_t shown = 0;

    if (out_size == 0) {
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = data[i];
        bool printable = c >= 0x20 && c < 0x7F && c != '\\';
        size_t width = printable ? 1 : 4;
        if (shown + width > display_max || o + width + 4 > out_size) {
            if (o + 4 <= out_size) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (printable) {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, 5, "\\x%02x", c);
            o += 4;
        }
        shown += width;
    }
    out[o] = '\0';
}
