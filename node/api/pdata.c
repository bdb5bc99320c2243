/* The node's personal-data keyring and the sealing and showing of a job's personal-data fields
 * (node/api/pdata.h). */
#include "node/api/pdata.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/api/api.h"
#include "node/audit.h"
#include "node/log.h"
#include "node/node.h"
#include "replication/domain/domain.h"
#include "storage/error.h"

/* A fresh id for a job created without one: the sealed value's associated data needs it now. */
static int pdata_job_id(Tandem__JobRecord *job, uint8_t *buffer, char *why)
{
    unsigned char random[8];
    if (RAND_bytes(random, sizeof random) != 1) {
        tandem_error_from_ssl(why, "job id");
        return 500;
    }
    char *id = (char *)buffer;
    int at = snprintf(id, 32, "%s", TANDEM_PDATA_JOB_ID_PREFIX);
    for (size_t i = 0; i < sizeof random; i++) {
        at += snprintf(id + at, 32 - (size_t)at, "%02x", random[i]);
    }
    job->id = id;
    return 0;
}

int tandem_pdata_job_seal(struct tandem_node *node, Tandem__JobRecord *job, uint8_t *buffer,
                          char *why)
{
    size_t len = 0;
    if (job->individual_number.len == 0) {
        return 0;
    }
    if (node->keyring.n_keys == 0) {
        if (node->config->insecure) {
            return 0; /* benchmark mode: documented as never holding personal data */
        }
        snprintf(why, TANDEM_ERRMSG_SIZE, "no key_file: personal data cannot be stored");
        return 400;
    }
    if ((job->id == NULL || job->id[0] == '\0') && pdata_job_id(job, buffer, why) != 0) {
        return 500;
    }
    uint8_t *out = buffer + 32;
    if (tandem_pdata_seal(&node->keyring, job->id, TANDEM_PDATA_FIELD_INDIVIDUAL,
                          job->individual_number.data, job->individual_number.len, out, &len,
                          why) != TANDEM_OK) {
        return 500;
    }
    job->individual_number.data = out;
    job->individual_number.len = len;
    return 0;
}

bool tandem_pdata_reader_allowed(const struct tandem_http_request *r)
{
    const struct tandem_principal *p = &r->principal;
    return tandem_pdata_roles_allow(p->roles) || p->bootstrap || p->insecure;
}

void tandem_pdata_job_reveal(struct tandem_node *node, const struct tandem_http_request *r,
                             Tandem__JobRecord *job, uint8_t *clear, ProtobufCBinaryData *saved)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    uint32_t key_id = 0;
    size_t len = 0;
    *saved = job->individual_number;
    if (saved->len == 0) {
        return;
    }
    bool sealed = tandem_pdata_is_sealed(saved->data, saved->len, &key_id);
    if (!tandem_pdata_reader_allowed(r)) {
        job->individual_number.data = (uint8_t *)TANDEM_PDATA_MASK;
        job->individual_number.len = strlen(TANDEM_PDATA_MASK);
        return;
    }
    if (!sealed) {
        return; /* stored in clear by an insecure (benchmark) node */
    }
    if (tandem_pdata_open(&node->keyring, job->id, TANDEM_PDATA_FIELD_INDIVIDUAL, saved->data,
                          saved->len, clear, &len, errmsg) != TANDEM_OK) {
        tandem_log(TANDEM_LOG_ERROR, "personal data: %s", errmsg);
        job->individual_number.data = (uint8_t *)TANDEM_PDATA_MASK;
        job->individual_number.len = strlen(TANDEM_PDATA_MASK);
        return;
    }
    job->individual_number.data = clear;
    job->individual_number.len = len;
}

/* Answers r with job as its principal may see it, then frees job. */
static void job_answer_now(struct tandem_node *node, struct tandem_http_request *r,
                           Tandem__JobRecord *job)
{
    uint8_t clear[TANDEM_PDATA_CLEAR_MAX];
    ProtobufCBinaryData sealed = {0};
    tandem_pdata_job_reveal(node, r, job, clear, &sealed);
    tandem_route_jansson(node, r, 200, tandem_job_json(job, true));
    OPENSSL_cleanse(clear, sizeof clear);
    job->individual_number = sealed;
    tandem__job_record__free_unpacked(job, NULL);
}

struct pdata_read {
    struct tandem_node *node;
    struct tandem_http_request *r;
    Tandem__JobRecord *job; /* owned */
};

static void pdata_read_audited_cb(void *arg, int status)
{
    struct pdata_read *read = arg;
    if (status != 0) {
        tandem_route_error(read->node, read->r, 503,
                           "the audit record of this personal-data read could not be committed: "
                           "nothing is shown; retry");
        tandem__job_record__free_unpacked(read->job, NULL);
    } else {
        job_answer_now(read->node, read->r, read->job);
    }
    free(read);
}

void tandem_pdata_job_answer(struct tandem_node *node, struct tandem_http_request *r,
                             Tandem__JobRecord *job)
{
    if (job->individual_number.len == 0 || !tandem_pdata_reader_allowed(r)) {
        job_answer_now(node, r, job);
        return;
    }
    struct pdata_read *read = malloc(sizeof *read);
    if (read == NULL) {
        tandem_route_error(node, r, 500, "out of memory");
        tandem__job_record__free_unpacked(job, NULL);
        return;
    }
    *read = (struct pdata_read){node, r, job};
    tandem_audit_then(node, r, "personal_data_read", job->id, pdata_read_audited_cb, read);
}
