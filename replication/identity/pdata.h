/* Personal data sealed with AES-256-GCM before it enters the raft log (issue 13 item 6): the
 * keyring read from key_file and the seal/open of one field value.
 *
 * A sealed value is stored in the record's existing bytes field (JobRecord.individual_number):
 *   version (1 byte, TANDEM_PDATA_VERSION) | key id (uint32, big-endian) | nonce (12 bytes, fresh
 *   random per value) | ciphertext (as long as the clear value) | GCM tag (16 bytes)
 * The associated data is "<record id>\0<field name>", so a value copied onto another record or
 * another field does not open. Keys are never replicated and never logged: every node reads the
 * same key_file ("<id> <64 hex chars>" per line; mode 0600 or 0400, owned by the node's user). */
#ifndef TANDEM_REPLICATION_IDENTITY_PDATA_H
#define TANDEM_REPLICATION_IDENTITY_PDATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TANDEM_PDATA_VERSION   1u
#define TANDEM_PDATA_KEY_BYTES 32  /* AES-256 */
#define TANDEM_PDATA_NONCE     12  /* GCM's standard nonce */
#define TANDEM_PDATA_TAG       16  /* GCM's full tag */
#define TANDEM_PDATA_KEYS_MAX  64  /* lines of key_file */
#define TANDEM_PDATA_CLEAR_MAX 256 /* bytes of one clear value */
#define TANDEM_PDATA_HEADER    (1 + 4 + TANDEM_PDATA_NONCE)
#define TANDEM_PDATA_OVERHEAD  (TANDEM_PDATA_HEADER + TANDEM_PDATA_TAG)
#define TANDEM_PDATA_FILE_MAX  8192  /* bytes of key_file */
#define TANDEM_PDATA_MASK      "***" /* what a reader without personal-data sees */

struct tandem_pdata_key {
    uint32_t id;
    unsigned char key[TANDEM_PDATA_KEY_BYTES];
};

/* The data keys; the highest id is current (seals new values). Zeroed on free. */
struct tandem_keyring {
    struct tandem_pdata_key keys[TANDEM_PDATA_KEYS_MAX];
    unsigned n_keys;
};

/* Reads path into ring (replacing what it held only on success). Refuses a file that is not a
 * regular file owned by the calling user with mode 0600 or 0400, a malformed line, a repeated
 * id, id 0 or no key. Returns TANDEM_OK or an error with a one-line errmsg (never a key byte). */
int tandem_keyring_load(struct tandem_keyring *ring, const char *path, char *errmsg);
/* Parses key_file's text (the permission checks are load's). */
int tandem_keyring_parse(struct tandem_keyring *ring, const char *text, size_t len, char *errmsg);
/* Wipes the keys. */
void tandem_keyring_clear(struct tandem_keyring *ring);
/* The current key id, 0 when the ring is empty. */
uint32_t tandem_keyring_current(const struct tandem_keyring *ring);

/* Whether a role set (replication/identity/roles.h) holds personal-data, which shows the clear
 * values. */
bool tandem_pdata_roles_allow(uint32_t roles);

/* Whether value has a sealed value's shape (version byte and length), and its key id. */
bool tandem_pdata_is_sealed(const uint8_t *value, size_t len, uint32_t *key_id);

/* Seals clear (clear_len <= TANDEM_PDATA_CLEAR_MAX) under the current key into out, which holds
 * clear_len + TANDEM_PDATA_OVERHEAD bytes; *out_len is set. */
int tandem_pdata_seal(const struct tandem_keyring *ring, const char *record_id, const char *field,
                      const uint8_t *clear, size_t clear_len, uint8_t *out, size_t *out_len,
                      char *errmsg);
/* Opens a sealed value into out (at least len - TANDEM_PDATA_OVERHEAD bytes). Fails with
 * TANDEM_NOTFOUND when its key id is not in the ring, TANDEM_CRYPTO when the tag does not verify
 * (tampered value, nonce, key id or associated data). errmsg never holds the value. */
int tandem_pdata_open(const struct tandem_keyring *ring, const char *record_id, const char *field,
                      const uint8_t *sealed, size_t len, uint8_t *out, size_t *out_len,
                      char *errmsg);

#endif
