/* backup_key_file loaded with key_file's checks (replication/identity/backup_keys.h). */
#include "replication/identity/backup_keys.h"

#include <openssl/crypto.h>
#include <string.h>

#include "replication/identity/pdata.h"
#include "storage/assert.h"
#include "storage/error.h"

_Static_assert(TANDEM_PDATA_KEY_BYTES == TANDEM_BACKUP_KEY_BYTES, "both are AES-256 keys");
_Static_assert(TANDEM_PDATA_KEYS_MAX <= TANDEM_BACKUP_KEYS_MAX, "every key of a file fits");

int tandem_backup_keys_load(const char *path, struct tandem_backup_key *keys, unsigned *n_keys,
                            char *errmsg)
{
    struct tandem_keyring ring;
    *n_keys = 0;
    if (path[0] == '\0') {
        return TANDEM_OK;
    }
    int rv = tandem_keyring_load(&ring, path, errmsg);
    if (rv != TANDEM_OK) {
        tandem_error_wrap(errmsg, "backup_key_file");
        return rv;
    }
    /* Sorted by id (insertion: at most 64 keys), so the sealing key is the last one. */
    for (unsigned i = 0; i < ring.n_keys; i++) {
        unsigned at = *n_keys;
        while (at > 0 && keys[at - 1].id > ring.keys[i].id) {
            keys[at] = keys[at - 1];
            at--;
        }
        keys[at].id = ring.keys[i].id;
        memcpy(keys[at].key, ring.keys[i].key, TANDEM_BACKUP_KEY_BYTES);
        (*n_keys)++;
    }
    uint32_t current = tandem_keyring_current(&ring);
    tandem_keyring_clear(&ring);
    tandem_assert(*n_keys > 0 && keys[*n_keys - 1].id == current);
    return TANDEM_OK;
}
