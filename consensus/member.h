/* Member identity: how a node's name, site, raft and API addresses travel inside raft's
 * configuration as one address string, and how raft ids derive from names. */
#ifndef TANDEM_CONSENSUS_MEMBER_H
#define TANDEM_CONSENSUS_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "storage/error.h"

#define TANDEM_NAME_LEN_MAX       63  /* node names: [A-Za-z0-9._-], 1..63 chars */
#define TANDEM_CLUSTER_ID_LEN_MAX 63  /* cluster ids: same alphabet, 1..63 chars */
#define TANDEM_SITE_LEN_MAX       31  /* site labels: same alphabet, 1..31 chars */
#define TANDEM_HOSTPORT_LEN_MAX   63  /* "host:port" */
#define TANDEM_URL_LEN_MAX        127 /* API base URL, e.g. http://127.0.0.1:8101 */
/* name|site|host:port|url plus separators and NUL. */
#define TANDEM_MEMBER_ADDRESS_LEN_MAX                                                              \
    (TANDEM_NAME_LEN_MAX + TANDEM_SITE_LEN_MAX + TANDEM_HOSTPORT_LEN_MAX + TANDEM_URL_LEN_MAX + 4)

enum tandem_role { TANDEM_ROLE_VOTER = 0, TANDEM_ROLE_STANDBY = 1, TANDEM_ROLE_SPARE = 2 };

struct tandem_member {
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char raft[TANDEM_HOSTPORT_LEN_MAX + 1]; /* host:port of the raft transport */
    char api[TANDEM_URL_LEN_MAX + 1];       /* base URL of the HTTP API */
    int role;                               /* enum tandem_role */
};

/* raft ids are a 63-bit FNV-1a hash of the node name, never 0: every node derives the same id
 * for a name without a registry. */
uint64_t tandem_member_id(const char *name);

bool tandem_member_name_ok(const char *name, size_t len_max);

/* Encodes m as "name|site|host:port|url" into out (TANDEM_MEMBER_ADDRESS_LEN_MAX + 1 bytes).
 * Returns 0, or TANDEM_INVALID when a field is invalid (TANDEM_LIMIT when out is too small). */
int tandem_member_address_format(const struct tandem_member *m, char *out, size_t out_size);

/* Parses "name|site|host:port|url" (role is left as TANDEM_ROLE_VOTER). Returns 0, or
 * TANDEM_INVALID with a reason in errmsg (TANDEM_ERRMSG_SIZE bytes) when malformed. */
int tandem_member_address_parse(const char *address, struct tandem_member *m, char *errmsg);

/* Splits "host:port" into host (NUL-terminated, out size host_size) and port. Returns 0 or -1. */
int tandem_hostport_split(const char *hostport, char *host, size_t host_size, int *port);

/* Parses "name,site,host:port,url[,role]" (the --member option form). Returns 0, or
 * TANDEM_INVALID with errmsg (TANDEM_ERRMSG_SIZE bytes) filled. */
int tandem_member_spec_parse(const char *spec, struct tandem_member *m, char *errmsg);

const char *tandem_role_name(int role);
int tandem_role_parse(const char *text); /* -1 when unknown */

#endif
