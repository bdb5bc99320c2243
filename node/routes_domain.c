/* Route table of the process-management and warehouse domain (jobs, boxes, trace). */
#include "node/routes.h"

static const struct tandem_route routes[] = {
    {NULL, 0, NULL, 0, NULL},
};

const struct tandem_route_table tandem_domain_route_table = {routes, 0};
