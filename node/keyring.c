/* Loading the node's personal-data keyring from key_file (node/keyring.h). */
#include "node/keyring.h"

#include "node/log.h"
#include "storage/error.h"

int tandem_node_keyring_load(struct tandem_keyring *ring, const char *path, bool insecure,
                             bool at_start)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (path[0] == '\0') {
        if (at_start) {
            tandem_log(insecure ? TANDEM_LOG_WARN : TANDEM_LOG_INFO, "%s",
                       insecure ? "no key_file on an insecure node: personal data is kept in "
                                  "clear (benchmarks only)"
                                : "no key_file: personal data will be refused");
        }
        return 0;
    }
    struct tandem_keyring fresh;
    if (tandem_keyring_load(&fresh, path, errmsg) != TANDEM_OK) {
        tandem_log(TANDEM_LOG_ERROR, "%s%s", errmsg, at_start ? "" : " (the old keys stay)");
        return at_start ? -1 : 0;
    }
    tandem_keyring_clear(ring);
    *ring = fresh;
    tandem_keyring_clear(&fresh);
    tandem_log(TANDEM_LOG_INFO, "key_file: %u personal-data keys, current key id %u", ring->n_keys,
               tandem_keyring_current(ring));
    return 0;
}
