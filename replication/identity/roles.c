/* The role names and their parsing (replication/identity/roles.h). */
#include "replication/identity/roles.h"

#include <stdio.h>
#include <string.h>

#include "storage/error.h"

struct role_entry {
    uint32_t bit;
    const char *name;
};

#define TANDEM_ROLE_ENTRY(id, bit, name, what) {1u << (bit), name},
static const struct role_entry role_table[] = {TANDEM_ROLES(TANDEM_ROLE_ENTRY)};
#undef TANDEM_ROLE_ENTRY

uint32_t tandem_role_from_name(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof role_table / sizeof role_table[0]; i++) {
        if (strlen(role_table[i].name) == len && memcmp(role_table[i].name, name, len) == 0) {
            return role_table[i].bit;
        }
    }
    return 0;
}

const char *tandem_role_name_of(uint32_t role)
{
    for (size_t i = 0; i < sizeof role_table / sizeof role_table[0]; i++) {
        if (role_table[i].bit == role) {
            return role_table[i].name;
        }
    }
    return NULL;
}

int tandem_roles_parse(const char *text, uint32_t *roles, char *errmsg)
{
    uint32_t set = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        uint32_t bit = tandem_role_from_name(p, len);
        if (bit == 0) {
            tandem_error_set(errmsg, TANDEM_INVALID, "unknown role '%.*s'",
                             (int)(len < 64 ? len : 64), p);
            return -1;
        }
        if ((set & bit) != 0) {
            tandem_error_set(errmsg, TANDEM_INVALID, "role '%s' given twice",
                             tandem_role_name_of(bit));
            return -1;
        }
        set |= bit;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    *roles = set;
    return 0;
}

void tandem_roles_format(uint32_t roles, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof role_table / sizeof role_table[0]; i++) {
        if ((roles & role_table[i].bit) == 0) {
            continue;
        }
        int n = snprintf(out + used, size - used, "%s%s", used > 0 ? "," : "", role_table[i].name);
        if (n < 0 || (size_t)n >= size - used) {
            return; /* cut: out stays NUL-terminated */
        }
        used += (size_t)n;
    }
}
