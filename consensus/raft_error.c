/* libraft's return codes mapped onto tandem's error table, with raft's own text kept. */
#include "consensus/raft_error.h"

#include <raft.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "storage/assert.h"

static int raft_code_map(int raft_rc)
{
    switch (raft_rc) {
        case 0:
            return TANDEM_OK;
        case RAFT_NOTLEADER:
            return TANDEM_NOTLEADER;
        case RAFT_LEADERSHIPLOST:
            return TANDEM_LEADERSHIP_LOST;
        case RAFT_BUSY:
        case RAFT_TOOMANY:
            return TANDEM_BUSY;
        case RAFT_NOMEM:
            return TANDEM_NOMEM;
        case RAFT_SHUTDOWN:
            return TANDEM_SHUTDOWN;
        case RAFT_CORRUPT:
            return TANDEM_CORRUPT;
        default:
            return TANDEM_RAFT;
    }
}

int tandem_error_from_raft(int raft_rc, const char *raft_errmsg, char *errmsg, const char *what)
{
    tandem_assert(errmsg != NULL && what != NULL);
    if (raft_rc == 0) {
        return TANDEM_OK;
    }
    /* raft's instance text may be stale or the same as the code's: keep it only when it adds
     * something, and copy it first since it may live in the errmsg being written. */
    char detail[TANDEM_ERRMSG_SIZE] = "";
    const char *code_text = raft_strerror(raft_rc);
    if (raft_errmsg != NULL && raft_errmsg[0] != '\0') {
        snprintf(detail, sizeof detail, "%s", raft_errmsg);
    }
    bool add = detail[0] != '\0' && strcmp(detail, code_text) != 0;
    snprintf(errmsg, TANDEM_ERRMSG_SIZE, "%s: %s%s%s", what, code_text, add ? ": " : "",
             add ? detail : "");
    return raft_code_map(raft_rc);
}
