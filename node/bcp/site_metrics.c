/* Per-site /metrics series from the BCP status view (node/bcp/site_metrics.h). */
#include "node/bcp/site_metrics.h"

#include <string.h>

#include "node/metrics.h"
#include "replication/bcp/sites.h"

/* Voters in the status view, and those of them this node reaches; except: a site whose voters
 * are left out (NULL: none). */
static void voters_count(const json_t *sites, const char *except, long *voters, long *reachable)
{
    size_t i, j;
    json_t *site, *node;
    *voters = *reachable = 0;
    json_array_foreach(sites, i, site)
    {
        const char *name = json_string_value(json_object_get(site, "name"));
        bool skipped = except != NULL && name != NULL && strcmp(name, except) == 0;
        json_array_foreach(json_object_get(site, "nodes"), j, node)
        {
            const char *role = json_string_value(json_object_get(node, "role"));
            if (role == NULL || strcmp(role, "voter") != 0) {
                continue;
            }
            *voters += 1;
            *reachable += !skipped && json_is_true(json_object_get(node, "reachable")) ? 1 : 0;
        }
    }
}

static void family(FILE *out, const char *name, const char *help)
{
    tandem_metrics_family(out, name, "gauge", help);
}

/* The site's name as a label value, escaped into buf (TANDEM_METRICS_LABEL_MAX bytes). */
static const char *site_label(const json_t *site, char *buf)
{
    return tandem_metrics_label(json_string_value(json_object_get(site, "name")), buf);
}

/* One sample per site of the integer field divided by divisor, where the site has one. */
static void per_site(FILE *out, const json_t *sites, const char *name, const char *help,
                     const char *field, unsigned divisor)
{
    size_t i;
    json_t *site;
    family(out, name, help);
    json_array_foreach(sites, i, site)
    {
        json_t *value = json_object_get(site, field);
        char site_name[TANDEM_METRICS_LABEL_MAX];
        site_label(site, site_name);
        if (!json_is_integer(value)) {
            continue;
        }
        if (divisor == 1) {
            fprintf(out, "%s{site=\"%s\"} %" JSON_INTEGER_FORMAT "\n", name, site_name,
                    json_integer_value(value));
        } else {
            fprintf(out, "%s{site=\"%s\"} %.3f\n", name, site_name,
                    (double)json_integer_value(value) / divisor);
        }
    }
}

static void site_states(FILE *out, const json_t *sites)
{
    size_t i;
    json_t *site;
    family(out, "tandem_site_state",
           "BCP state of each site: 1 for the state it is in, 0 for the others.");
    json_array_foreach(sites, i, site)
    {
        char name[TANDEM_METRICS_LABEL_MAX];
        const char *state = json_string_value(json_object_get(site, "state"));
        site_label(site, name);
        for (int s = 0; s < TANDEM_SITE_STATE_COUNT; s++) {
            const char *text = tandem_site_state_name(s);
            fprintf(out, "tandem_site_state{site=\"%s\",state=\"%s\"} %d\n", name, text,
                    state != NULL && strcmp(state, text) == 0);
        }
    }
}

/* Further voter failures the configuration survives: cluster-wide, and per site whether losing
 * the whole site (on top of what is already unreachable) still leaves a quorum. */
static void tolerance(FILE *out, const json_t *sites)
{
    size_t i;
    json_t *site;
    long voters, reachable;
    voters_count(sites, NULL, &voters, &reachable);
    family(out, "tandem_failure_tolerance",
           "More voter failures the configuration survives with a quorum, as this node sees "
           "the voters it reaches; negative: that many voters short of a quorum.");
    fprintf(out, "tandem_failure_tolerance %ld\n", reachable - (voters / 2 + 1));
    family(out, "tandem_site_loss_tolerated",
           "1 when the cluster keeps a quorum if the whole site is lost, else 0.");
    json_array_foreach(sites, i, site)
    {
        char label[TANDEM_METRICS_LABEL_MAX];
        voters_count(sites, json_string_value(json_object_get(site, "name")), &voters, &reachable);
        fprintf(out, "tandem_site_loss_tolerated{site=\"%s\"} %d\n", site_label(site, label),
                reachable >= voters / 2 + 1);
    }
}

/* Per site: its members in the status view, and those this node reaches (itself counted). */
static void reachability(FILE *out, const json_t *sites)
{
    size_t i, j;
    json_t *site, *node;
    char label[TANDEM_METRICS_LABEL_MAX];
    family(out, "tandem_site_nodes", "Members of each site (voters, standbys and witnesses).");
    json_array_foreach(sites, i, site)
    {
        fprintf(out, "tandem_site_nodes{site=\"%s\"} %zu\n", site_label(site, label),
                json_array_size(json_object_get(site, "nodes")));
    }
    family(out, "tandem_site_nodes_reachable",
           "Members of each site whose raft port and API this node reaches (itself included); "
           "0: the site is cut off from this node.");
    json_array_foreach(sites, i, site)
    {
        long reachable = 0;
        json_array_foreach(json_object_get(site, "nodes"), j, node)
        {
            reachable += json_is_true(json_object_get(node, "reachable")) ? 1 : 0;
        }
        fprintf(out, "tandem_site_nodes_reachable{site=\"%s\"} %ld\n", site_label(site, label),
                reachable);
    }
}

void tandem_bcp_site_metrics_write(FILE *out, const json_t *status)
{
    const json_t *sites = json_object_get(status, "sites");
    site_states(out, sites);
    per_site(out, sites, "tandem_site_epoch",
             "BCP epoch of each site: it moves on every invoke and revoke.", "epoch", 1);
    per_site(out, sites, "tandem_site_lag_entries",
             "Entries the site's furthest-behind node lacks (known on the leader only).",
             "lag_entries", 1);
    per_site(out, sites, "tandem_site_lag_seconds",
             "Age of the oldest entry the site's furthest-behind node lacks (known on the leader "
             "only).",
             "lag_ms", 1000);
    tolerance(out, sites);
    reachability(out, sites);
}
