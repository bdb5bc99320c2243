/* Per-site series of /metrics (Prometheus text), drawn from the BCP status view: each site's
 * state, epoch and replication lag, and how many more voter failures the cluster survives. */
#ifndef TANDEM_NODE_BCP_SITE_METRICS_H
#define TANDEM_NODE_BCP_SITE_METRICS_H

#include <jansson.h>
#include <stdio.h>

/* Writes the series for status (the body of GET /v1/bcp/status, borrowed) to out, one HELP and
 * TYPE line per family. Lag series are written only where status knows the lag (on the
 * leader). */
void tandem_bcp_site_metrics_write(FILE *out, const json_t *status);

#endif
