/* backup_key_file (issue 14): read with key_file's format and checks (pdata.h) into the keys a
 * backup file is sealed and opened with (storage/backup.h). */
#ifndef TANDEM_REPLICATION_IDENTITY_BACKUP_KEYS_H
#define TANDEM_REPLICATION_IDENTITY_BACKUP_KEYS_H

#include "storage/backup.h"

/* Loads path into keys (room for TANDEM_BACKUP_KEYS_MAX) sorted by id, the highest (the one
 * that seals) last; *n_keys = 0 when path is "" (plain backups). Returns TANDEM_OK or an error
 * with a one-line errmsg that never holds a key byte. The caller wipes keys (OPENSSL_cleanse). */
int tandem_backup_keys_load(const char *path, struct tandem_backup_key *keys, unsigned *n_keys,
                            char *errmsg);

#endif
