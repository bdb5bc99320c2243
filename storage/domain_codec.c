/* Domain record codecs: protobuf values in LMDB, big-endian keys, RFC 3339 and index scans. */
#include "storage/domain_codec.h"
#include "storage/assert.h"
#include "storage/token.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_SECOND       1000
#define SECONDS_PER_DAY     86400
#define FRACTION_DIGITS_MAX 9 /* nanoseconds; digits past the milliseconds are dropped */

bool tandem_domain_id_ok(const char *id)
{
    return tandem_token_ok(id, TANDEM_DOMAIN_ID_LEN_MAX, "._:-");
}

/* Length of the UTF-8 sequence starting at s (at most left bytes), 0 when invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    size_t n = s[0] < 0x80             ? 1
               : (s[0] & 0xE0) == 0xC0 ? 2
               : (s[0] & 0xF0) == 0xE0 ? 3
               : (s[0] & 0xF8) == 0xF0 ? 4
                                       : 0;
    if (n == 0 || n > left || (n == 2 && s[0] < 0xC2) || (n == 4 && s[0] > 0xF4)) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    /* Overlong three- and four-byte forms, and UTF-16 surrogates. */
    if ((n == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (n == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (n == 4 && s[0] == 0xF0 && s[1] < 0x90) || (n == 4 && s[0] == 0xF4 && s[1] >= 0x90)) {
        return 0;
    }
    return n;
}

bool tandem_domain_text_ok(const char *text, bool empty_ok)
{
    size_t len = text == NULL ? 0 : strlen(text);
    if (len == 0) {
        return empty_ok;
    }
    if (len > TANDEM_DOMAIN_TEXT_LEN_MAX) {
        return false;
    }
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7F) {
            return false;
        }
        size_t n = utf8_sequence(s + i, len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's civil algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool leap_year(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap_year(y) ? 29 : days[m - 1];
}

/* Reads exactly n digits at *p into *out and advances *p. */
static bool digits(const char **p, unsigned n, unsigned *out)
{
    unsigned v = 0;
    for (unsigned i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* "[.fraction]" into milliseconds; digits past the third are dropped. */
static bool fraction(const char **p, int64_t *ms)
{
    *ms = 0;
    if (**p != '.') {
        return true;
    }
    (*p)++;
    unsigned n = 0;
    for (; (*p)[0] >= '0' && (*p)[0] <= '9'; (*p)++, n++) {
        if (n >= FRACTION_DIGITS_MAX) {
            return false;
        }
        if (n < 3) {
            *ms = *ms * 10 + ((*p)[0] - '0');
        }
    }
    for (unsigned k = n; k < 3; k++) {
        *ms *= 10;
    }
    return n > 0;
}

/* "Z" or "+HH:MM"/"-HH:MM" into an offset east of UTC, in minutes. */
static bool zone(const char **p, int64_t *offset_min)
{
    unsigned hh, mm;
    char sign = **p;
    if (sign == 'Z' || sign == 'z') {
        (*p)++;
        *offset_min = 0;
        return true;
    }
    if (sign != '+' && sign != '-') {
        return false;
    }
    (*p)++;
    if (!digits(p, 2, &hh) || **p != ':' || ((*p)++, !digits(p, 2, &mm)) || hh > 23 || mm > 59) {
        return false;
    }
    *offset_min = (sign == '-' ? -1 : 1) * (int64_t)(hh * 60 + mm);
    return true;
}

int tandem_rfc3339_parse(const char *text, int64_t *ms)
{
    const char *p = text;
    unsigned year, month, day, hour, minute, second;
    int64_t frac_ms, offset_min;
    if (text == NULL || strlen(text) > TANDEM_RFC3339_LEN_MAX) {
        return -1;
    }
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' ||
        !digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' ')) {
        return -1;
    }
    p++;
    if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &minute) || *p++ != ':' ||
        !digits(&p, 2, &second) || !fraction(&p, &frac_ms) || !zone(&p, &offset_min) ||
        *p != '\0') {
        return -1;
    }
    if (year < TANDEM_RFC3339_YEAR_MIN || year > TANDEM_RFC3339_YEAR_MAX || month < 1 ||
        month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 ||
        second > 59) {
        return -1;
    }
    int64_t seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY +
                      (int64_t)(hour * 3600 + minute * 60 + second) - offset_min * 60;
    if (seconds < 0) {
        return -1;
    }
    *ms = seconds * MS_PER_SECOND + frac_ms;
    return 0;
}

/* Writes value as exactly width digits. */
static char *put_digits(char *out, unsigned value, unsigned width)
{
    for (unsigned i = width; i > 0; i--) {
        out[i - 1] = (char)('0' + value % 10);
        value /= 10;
    }
    return out + width;
}

/* millis_always: ".000" too, for times shown to people (one width in logs and errors). */
static void rfc3339_format(int64_t ms, char out[TANDEM_RFC3339_LEN_MAX + 1], bool millis_always)
{
    int64_t seconds = ms >= 0 ? ms / MS_PER_SECOND : (ms - (MS_PER_SECOND - 1)) / MS_PER_SECOND;
    unsigned millis = (unsigned)(ms - seconds * MS_PER_SECOND);
    int64_t days = seconds >= 0 ? seconds / SECONDS_PER_DAY
                                : (seconds - (SECONDS_PER_DAY - 1)) / SECONDS_PER_DAY;
    unsigned rest = (unsigned)(seconds - days * SECONDS_PER_DAY);
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    if (year < 0 || year > TANDEM_RFC3339_YEAR_MAX) {
        snprintf(out, TANDEM_RFC3339_LEN_MAX + 1, "%s",
                 year < 0 ? "0000-01-01T00:00:00Z" : "9999-12-31T23:59:59Z");
        return;
    }
    char *p = put_digits(out, (unsigned)year, 4);
    *p++ = '-';
    p = put_digits(p, month, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    p = put_digits(p, rest / 3600, 2);
    *p++ = ':';
    p = put_digits(p, rest / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, rest % 60, 2);
    if (millis != 0 || millis_always) {
        *p++ = '.';
        p = put_digits(p, millis, 3);
    }
    *p++ = 'Z';
    *p = '\0';
}

void tandem_rfc3339_format(int64_t ms, char out[TANDEM_RFC3339_LEN_MAX + 1])
{
    rfc3339_format(ms, out, false);
}

void tandem_rfc3339_format_ms(int64_t ms, char out[TANDEM_RFC3339_LEN_MAX + 1])
{
    rfc3339_format(ms, out, true);
}

void tandem_text_init(struct tandem_text *t, size_t max)
{
    memset(t, 0, sizeof *t);
    t->max = max;
}

void tandem_text_free(struct tandem_text *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

static bool text_reserve(struct tandem_text *t, size_t n)
{
    if (t->failed || t->len + n + 1 > t->max) {
        t->failed = true;
        return false;
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap == 0 ? 4096 : t->cap;
        while (cap < t->len + n + 1) {
            cap *= 2;
        }
        char *data = realloc(t->data, cap);
        if (data == NULL) {
            t->failed = true;
            return false;
        }
        t->data = data;
        t->cap = cap;
    }
    return true;
}

void tandem_text_raw(struct tandem_text *t, const char *s, size_t n)
{
    if (text_reserve(t, n)) {
        memcpy(t->data + t->len, s, n);
        t->len += n;
        t->data[t->len] = '\0';
    }
}

void tandem_text_cstr(struct tandem_text *t, const char *s)
{
    tandem_text_raw(t, s, strlen(s));
}

void tandem_text_string(struct tandem_text *t, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (!text_reserve(t, 6 * n + 2)) {
        return;
    }
    char *out = t->data + t->len;
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
            out += 6;
        } else {
            *out++ = (char)c;
        }
    }
    *out++ = '"';
    t->len = (size_t)(out - t->data);
    t->data[t->len] = '\0';
}

void tandem_text_int(struct tandem_text *t, int64_t value)
{
    char digits[24];
    size_t n = 0;
    uint64_t v = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (value < 0) {
        digits[sizeof digits - 1 - n++] = '-';
    }
    tandem_text_raw(t, digits + sizeof digits - n, n);
}

void tandem_text_time(struct tandem_text *t, int64_t ms)
{
    char text[TANDEM_RFC3339_LEN_MAX + 3];
    text[0] = '"';
    tandem_rfc3339_format(ms, text + 1);
    size_t n = strlen(text);
    text[n] = '"';
    tandem_text_raw(t, text, n + 1);
}

void tandem_be64_put(uint8_t out[8], uint64_t value)
{
    uint64_t be = htobe64(value);
    memcpy(out, &be, sizeof be);
}

uint64_t tandem_be64_get(const void *in)
{
    uint64_t be;
    memcpy(&be, in, sizeof be);
    return be64toh(be);
}

int tandem_record_decode(struct tandem_store *s, const MDB_val *value,
                         const ProtobufCMessageDescriptor *descriptor, ProtobufCMessage **out)
{
    *out = protobuf_c_message_unpack(descriptor, NULL, value->mv_size, value->mv_data);
    if (*out == NULL) {
        snprintf(s->errmsg, sizeof s->errmsg, "corrupt %s record", descriptor->short_name);
        return MDB_CORRUPTED;
    }
    return 0;
}

int tandem_record_get(struct tandem_store *s, MDB_txn *txn, int db, const void *key, size_t key_len,
                      const ProtobufCMessageDescriptor *descriptor, ProtobufCMessage **out)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    tandem_assert(db > TANDEM_DB_META && db < TANDEM_DB_COUNT);
    *out = NULL;
    int rv = mdb_get(txn, s->dbi[db], &k, &v);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return tandem_store_error(s, rv, "record get");
    }
    return tandem_record_decode(s, &v, descriptor, out);
}

int tandem_record_put(struct tandem_store *s, MDB_txn *txn, int db, const void *key, size_t key_len,
                      const ProtobufCMessage *message)
{
    /* Records live in the state databases; meta is the store's own. */
    tandem_assert(db > TANDEM_DB_META && db < TANDEM_DB_COUNT);
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v = {.mv_size = protobuf_c_message_get_packed_size(message)};
    int rv = mdb_put(txn, s->dbi[db], &k, &v, MDB_RESERVE);
    if (rv != 0) {
        return tandem_store_error(s, rv, "record put");
    }
    /* LMDB reserved exactly the size asked for: packing more would write past it. */
    size_t packed = protobuf_c_message_pack(message, v.mv_data);
    tandem_assert(packed == v.mv_size);
    return 0;
}

size_t tandem_index_key(char tag, const char *value, const char *id, uint8_t *out)
{
    size_t value_len = strlen(value), id_len = strlen(id);
    size_t len = 2 + value_len + 1 + id_len;
    if (len > TANDEM_INDEX_KEY_LEN_MAX) {
        return 0;
    }
    /* The tag and the NULs are what keep index keys of different kinds and values apart. */
    tandem_assert(tag != '\0');
    out[0] = (uint8_t)tag;
    out[1] = '\0';
    memcpy(out + 2, value, value_len);
    out[2 + value_len] = '\0';
    memcpy(out + 3 + value_len, id, id_len);
    return len;
}

static int index_op(struct tandem_store *s, MDB_txn *txn, int db, char tag, const char *value,
                    const char *id, bool put)
{
    uint8_t key[TANDEM_INDEX_KEY_LEN_MAX];
    MDB_val k = {.mv_size = tandem_index_key(tag, value, id, key), .mv_data = key};
    MDB_val v = {.mv_size = 0, .mv_data = key};
    if (k.mv_size == 0) {
        snprintf(s->errmsg, sizeof s->errmsg, "index key %c/%s/%s too long", tag, value, id);
        return EINVAL;
    }
    int rv = put ? mdb_put(txn, s->dbi[db], &k, &v, 0) : mdb_del(txn, s->dbi[db], &k, NULL);
    if (rv == MDB_NOTFOUND && !put) {
        return 0; /* nothing to remove: the entry was never there */
    }
    return rv == 0 ? 0 : tandem_store_error(s, rv, put ? "index put" : "index delete");
}

int tandem_index_put(struct tandem_store *s, MDB_txn *txn, int db, char tag, const char *value,
                     const char *id)
{
    return index_op(s, txn, db, tag, value, id, true);
}

int tandem_index_del(struct tandem_store *s, MDB_txn *txn, int db, char tag, const char *value,
                     const char *id)
{
    return index_op(s, txn, db, tag, value, id, false);
}

static bool in_range(const MDB_val *key, const uint8_t *prefix, size_t prefix_len)
{
    return key->mv_size >= prefix_len && memcmp(key->mv_data, prefix, prefix_len) == 0;
}

/* Positions the cursor on the first key after prefix + after. */
static int scan_start(MDB_cursor *cursor, const uint8_t *prefix, size_t prefix_len,
                      const uint8_t *after, size_t after_len, MDB_val *key, MDB_val *value)
{
    uint8_t start[TANDEM_INDEX_KEY_LEN_MAX];
    if (prefix_len + after_len > sizeof start) {
        return MDB_NOTFOUND;
    }
    memcpy(start, prefix, prefix_len);
    if (after_len > 0) {
        memcpy(start + prefix_len, after, after_len);
    }
    key->mv_size = prefix_len + after_len;
    key->mv_data = start;
    int rv = key->mv_size == 0 ? mdb_cursor_get(cursor, key, value, MDB_FIRST)
                               : mdb_cursor_get(cursor, key, value, MDB_SET_RANGE);
    if (rv == 0 && after_len > 0 && key->mv_size == prefix_len + after_len &&
        memcmp(key->mv_data, start, key->mv_size) == 0) {
        rv = mdb_cursor_get(cursor, key, value, MDB_NEXT); /* after is exclusive */
    }
    return rv;
}

int tandem_index_scan(struct tandem_store *s, MDB_txn *txn, int db, const uint8_t *prefix,
                      size_t prefix_len, const uint8_t *after, size_t after_len, size_t scan_max,
                      tandem_scan_fn visit, void *arg, bool *exhausted)
{
    MDB_cursor *cursor;
    MDB_val key, value;
    bool stop = false;
    int rv = mdb_cursor_open(txn, s->dbi[db], &cursor);
    if (rv != 0) {
        return tandem_store_error(s, rv, "open cursor");
    }
    *exhausted = false;
    rv = scan_start(cursor, prefix, prefix_len, after, after_len, &key, &value);
    for (size_t n = 0; rv == 0 && in_range(&key, prefix, prefix_len); n++) {
        if (n == scan_max || stop) {
            break; /* a key in range is left: not exhausted */
        }
        const uint8_t *k = key.mv_data;
        int visit_rv = visit(arg, k + prefix_len, key.mv_size - prefix_len, &value, &stop);
        if (visit_rv != 0) {
            mdb_cursor_close(cursor); /* visit filled s->errmsg */
            return visit_rv;
        }
        rv = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
    }
    mdb_cursor_close(cursor);
    if (rv == MDB_NOTFOUND || (rv == 0 && !in_range(&key, prefix, prefix_len))) {
        *exhausted = true;
        return 0;
    }
    return rv == 0 ? 0 : tandem_store_error(s, rv, "index scan");
}
