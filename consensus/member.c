/* Member identity codecs: names, ids, roles and the packed raft address string. */
#include "consensus/member.h"
#include "storage/error.h"
#include "storage/token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t tandem_member_id(const char *name)
{
    uint64_t hash = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        hash ^= *p;
        hash *= 1099511628211ULL;
    }
    hash &= 0x7fffffffffffffffULL;
    return hash == 0 ? 1 : hash;
}

bool tandem_member_name_ok(const char *name, size_t len_max)
{
    return tandem_token_ok(name, len_max, "-_.");
}

int tandem_hostport_split(const char *hostport, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || colon == hostport) {
        return -1;
    }
    size_t host_len = (size_t)(colon - hostport);
    if (host_len + 1 > host_size) {
        return -1;
    }
    char *end = NULL;
    long value = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || value < 1 || value > 65535) {
        return -1;
    }
    memcpy(host, hostport, host_len);
    host[host_len] = '\0';
    *port = (int)value;
    return 0;
}

static int member_check(const struct tandem_member *m, char *errmsg)
{
    char host[TANDEM_HOSTPORT_LEN_MAX + 1];
    int port;
    if (!tandem_member_name_ok(m->name, TANDEM_NAME_LEN_MAX)) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "invalid member name '%s' (1-63 of A-Z a-z 0-9 . _ -)", m->name);
    }
    if (!tandem_member_name_ok(m->site, TANDEM_SITE_LEN_MAX)) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "invalid site '%s' for member %s", m->site,
                                m->name);
    }
    if (tandem_hostport_split(m->raft, host, sizeof host, &port) != 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "invalid raft address '%s' for member %s (want host:port)", m->raft,
                                m->name);
    }
    if (strncmp(m->api, "http://", 7) != 0 && strncmp(m->api, "https://", 8) != 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "invalid API URL '%s' for member %s (want http[s]://host:port)",
                                m->api, m->name);
    }
    if (strchr(m->api, '|') != NULL || strchr(m->api, ',') != NULL) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "invalid API URL '%s' for member %s",
                                m->api, m->name);
    }
    return 0;
}

int tandem_member_address_format(const struct tandem_member *m, char *out, size_t out_size)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    int rv = member_check(m, errmsg);
    if (rv != 0) {
        return rv;
    }
    int n = snprintf(out, out_size, "%s|%s|%s|%s", m->name, m->site, m->raft, m->api);
    return (n < 0 || (size_t)n >= out_size) ? TANDEM_LIMIT : 0;
}

/* Copies the next separator-delimited field of *cursor into out. */
static int take_field(const char **cursor, char separator, char *out, size_t out_size)
{
    const char *start = *cursor;
    const char *end = strchr(start, separator);
    size_t len = end == NULL ? strlen(start) : (size_t)(end - start);
    if (len == 0 || len + 1 > out_size) {
        return -1;
    }
    memcpy(out, start, len);
    out[len] = '\0';
    *cursor = end == NULL ? start + len : end + 1;
    return end == NULL ? 1 : 0;
}

static int fields_parse(const char *text, char separator, struct tandem_member *m, char *role,
                        size_t role_size, char *errmsg)
{
    const char *cursor = text;
    memset(m, 0, sizeof *m);
    m->role = TANDEM_ROLE_VOTER;
    if (take_field(&cursor, separator, m->name, sizeof m->name) != 0 ||
        take_field(&cursor, separator, m->site, sizeof m->site) != 0 ||
        take_field(&cursor, separator, m->raft, sizeof m->raft) != 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID,
                                "malformed member '%s' (want name%csite%chost:port%curl)", text,
                                separator, separator, separator);
    }
    int last = take_field(&cursor, separator, m->api, sizeof m->api);
    if (last < 0) {
        return tandem_error_set(errmsg, TANDEM_INVALID, "malformed member '%s': missing API URL",
                                text);
    }
    if (role != NULL) {
        role[0] = '\0';
    }
    if (last == 0) {
        if (role_size == 0 || take_field(&cursor, separator, role, role_size) != 1) {
            return tandem_error_set(errmsg, TANDEM_INVALID,
                                    "malformed member '%s': too many fields", text);
        }
    }
    return member_check(m, errmsg);
}

int tandem_member_address_parse(const char *address, struct tandem_member *m, char *errmsg)
{
    return fields_parse(address, '|', m, NULL, 0, errmsg);
}

int tandem_member_spec_parse(const char *spec, struct tandem_member *m, char *errmsg)
{
    char role[16];
    int rv = fields_parse(spec, ',', m, role, sizeof role, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (role[0] != '\0') {
        m->role = tandem_role_parse(role);
        if (m->role < 0) {
            return tandem_error_set(errmsg, TANDEM_INVALID,
                                    "unknown role '%s' for member %s (voter|standby|spare)", role,
                                    m->name);
        }
    }
    return 0;
}

/* Indexed by enum tandem_role. */
static const char *const role_names[] = {
    [TANDEM_ROLE_VOTER] = "voter",
    [TANDEM_ROLE_STANDBY] = "standby",
    [TANDEM_ROLE_SPARE] = "spare",
};
#define ROLE_COUNT ((int)(sizeof role_names / sizeof role_names[0]))

const char *tandem_role_name(int role)
{
    return role >= 0 && role < ROLE_COUNT ? role_names[role] : "unknown";
}

int tandem_role_parse(const char *text)
{
    for (int role = 0; role < ROLE_COUNT; role++) {
        if (strcmp(text, role_names[role]) == 0) {
            return role;
        }
    }
    return -1;
}
