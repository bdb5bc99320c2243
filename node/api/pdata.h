/* Personal-data fields at the API (issue 13 item 6): the node's keyring from key_file, sealing a
 * job's individual_number before its command is proposed, and what a reader is shown. */
#ifndef TANDEM_NODE_API_PDATA_H
#define TANDEM_NODE_API_PDATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/identity/pdata.h"
#include "tandem.pb-c.h"

struct tandem_node;
struct tandem_http_request;

#define TANDEM_PDATA_FIELD_INDIVIDUAL "individual_number"
#define TANDEM_PDATA_JOB_ID_PREFIX    "JP-" /* ids the API gives jobs carrying personal data */

/* Seals job->individual_number in place (buffer: clear length + TANDEM_PDATA_OVERHEAD bytes,
 * kept by the caller until the command is packed) and gives the job an id first when it has
 * none (the id is the associated data). Returns 0, or an HTTP status with why filled: 400 when
 * the node has no key_file (unless insecure), 500 when sealing failed. */
int tandem_pdata_job_seal(struct tandem_node *node, Tandem__JobRecord *job, uint8_t *buffer,
                          char *why);

/* Whether r's principal may see personal data in clear. */
bool tandem_pdata_reader_allowed(const struct tandem_http_request *r);

/* Sets job->individual_number to what r's principal may see: the clear value (opened into
 * clear, TANDEM_PDATA_CLEAR_MAX bytes) with personal-data, TANDEM_PDATA_MASK without it or when
 * the value does not open (logged without the value). The record's own bytes are not freed: the
 * caller frees the record after restoring *saved (the sealed field). */
void tandem_pdata_job_reveal(struct tandem_node *node, const struct tandem_http_request *r,
                             Tandem__JobRecord *job, uint8_t *clear, ProtobufCBinaryData *saved);

/* Answers GET /v1/jobs/ID with job (owned: freed here). When the job holds personal data and r's
 * principal may see it, the answer waits until the read's audit record is committed, and is 503
 * (nothing shown) when it cannot be; otherwise it answers at once with "***" in the field. */
void tandem_pdata_job_answer(struct tandem_node *node, struct tandem_http_request *r,
                             Tandem__JobRecord *job);

#endif
