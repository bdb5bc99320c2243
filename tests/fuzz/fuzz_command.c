/* Fuzz target: the replicated command path, from bytes to state. The input is a protobuf Batch;
 * it is framed as a raft entry and applied through the state machine (replication/fsm.h:
 * decode, every command through the command table) to an LMDB store, and the write transaction
 * is then thrown away, so every input starts from the same empty state. The raw input is also
 * decoded as an entry, framing included. With invariants on (TANDEM_INVARIANTS) the whole-store
 * checkers run after the apply. */
#include <endian.h>
#include <string.h>

#include "fuzz.h"
#include "replication/fsm.h"
#include "storage/assert.h"

#define STORE_MAP_BYTES (64u * 1024u * 1024u)
#define COMMANDS_MAX    4096u /* results handed out per batch: a batch bigger goes unclaimed */

static struct tandem_store store;
static struct tandem_fsm fsm;
static struct tandem_result results[COMMANDS_MAX];
static size_t results_claimed;

/* The proposer's part: a waiting writer gets every command's result. */
static struct tandem_result *claim(void *data, uint64_t proposer_id, uint64_t serial, size_t n)
{
    (void)data;
    (void)proposer_id;
    (void)serial;
    if (n > COMMANDS_MAX) {
        return NULL;
    }
    memset(results, 0, n * sizeof results[0]);
    results_claimed = n;
    return results;
}

static void store_open_once(void)
{
    static bool open;
    if (open) {
        return;
    }
    char dir[192];
    snprintf(dir, sizeof dir, "%s/store", fuzz_tmp_dir());
    if (tandem_store_open(&store, dir, STORE_MAP_BYTES) != 0) {
        fprintf(stderr, "fuzz_command: %s\n", store.errmsg);
        abort();
    }
    tandem_fsm_init(&fsm, &store);
    tandem_fsm_set_claim(&fsm, claim, NULL);
    open = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    Tandem__Batch *batch = NULL;
    if (tandem_entry_decode(data, size, &batch, errmsg) == 0) {
        tandem__batch__free_unpacked(batch, NULL);
    }
    if (size > UINT32_MAX) {
        return 0;
    }
    store_open_once();
    size_t len = (TANDEM_ENTRY_HEADER_LEN + size + 7) & ~(size_t)7;
    uint8_t *entry = calloc(1, len);
    uint32_t header[2] = {htole32(TANDEM_ENTRY_MAGIC), htole32((uint32_t)size)};
    memcpy(entry, header, sizeof header);
    memcpy(entry + TANDEM_ENTRY_HEADER_LEN, data, size);
    results_claimed = 0;
    int rv = tandem_fsm_apply_entry(&fsm, store.applied_index + 1, entry, len);
    free(entry);
    /* A store error is fatal in a node; here it can only be the map filling up. */
    if (rv != 0 && rv != TANDEM_CORRUPT && rv != TANDEM_STORE_FULL) {
        fprintf(stderr, "fuzz_command: apply failed: %s\n", fsm.errmsg);
        abort();
    }
    for (size_t i = 0; i < results_claimed; i++) {
        tandem_assert(rv != 0 || results[i].status != 0);
        if (getenv("TANDEM_FUZZ_ECHO") != NULL) { /* to see what a seed's commands did */
            fprintf(stderr, "%d %s\n", results[i].status, results[i].body ? results[i].body : "");
        }
        free(results[i].body);
    }
    tandem_store_abort(&store);
    return 0;
}
