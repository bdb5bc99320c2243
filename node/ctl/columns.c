/* tandemctl's tables: the column table of every view, the cell formatters and the printer. */
#include "node/ctl/columns.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/ctl/encode.h"
#include "node/ctl/output.h"

#define OBJECT_VALUE_SIZE    (TANDEM_CTL_VALUE_SIZE * 4) /* a single object's VALUE column */
#define KV_KEY_DISPLAY_MAX   200 /* kv list KEY column: long keys are cut, not wrapped */
#define KV_VALUE_DISPLAY_MAX 40  /* kv list VALUE column */
#define NODES_CELL_SIZE      512 /* bcp status NODES column */
#define BAR_WIDTH            10  /* characters inside a plan's load bar's [ ] */
#define FIELD_NAME_SIZE      64  /* "<field>_before" of a plan's before -> after columns */
#define CHANGE_CELL_SIZE     96  /* a plan's "before -> after" cell */

static tandem_ctl_cell_format cell_value, cell_text, cell_yes_no, cell_site_state, cell_leader,
    cell_kv_key, cell_kv_value, cell_nodes, cell_reach, cell_plan_site, cell_integer_change,
    cell_hours_change, cell_load_change, cell_age, cell_bytes, cell_verified;

/* A column of one view. */
struct view_column {
    enum tandem_ctl_view view;
    struct tandem_ctl_column column;
};

/* Every table, one row per column, in the order the columns print. */
static const struct view_column columns[] = {
    {TANDEM_CTL_VIEW_KV, {"KEY", "key", cell_kv_key, "-"}},
    {TANDEM_CTL_VIEW_KV, {"MOD_INDEX", "mod_index", tandem_ctl_cell_integer, "0"}},
    {TANDEM_CTL_VIEW_KV, {"VALUE", "value", cell_kv_value, "?"}},
    {TANDEM_CTL_VIEW_STATUS, {"", "leader", cell_leader, ""}},
    {TANDEM_CTL_VIEW_STATUS, {"MEMBER", "name", cell_text, "-"}},
    {TANDEM_CTL_VIEW_STATUS, {"SITE", "site", cell_text, "-"}},
    {TANDEM_CTL_VIEW_STATUS, {"ROLE", "role", cell_text, "-"}},
    {TANDEM_CTL_VIEW_STATUS, {"STATE", "state", cell_text, "-"}},
    {TANDEM_CTL_VIEW_STATUS, {"APPLIED", "applied_index", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_STATUS, {"LAG", "lag", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_MEMBERS, {"NAME", "name", cell_text, "-"}},
    {TANDEM_CTL_VIEW_MEMBERS, {"SITE", "site", cell_text, "-"}},
    {TANDEM_CTL_VIEW_MEMBERS, {"ROLE", "role", cell_text, "-"}},
    {TANDEM_CTL_VIEW_MEMBERS, {"RAFT", "raft", cell_text, "-"}},
    {TANDEM_CTL_VIEW_MEMBERS, {"API", "api", cell_text, "-"}},
    {TANDEM_CTL_VIEW_MEMBERS, {"MATCH_INDEX", "match_index", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"ID", "id", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"CLIENT", "client", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"KIND", "kind", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"SITE", "site", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"STAGE", "stage", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"STATUS", "status", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"EFFORT", "effort", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"DUE", "due", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"PRIO", "priority", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"OPERATOR", "operator", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"PINNED", "pinned", cell_value, "-"}},
    {TANDEM_CTL_VIEW_JOBS, {"BOXES", "boxes", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"ID", "id", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"LEDGER", "ledger", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"CLIENT", "client", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"SITE", "site", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"SHELF", "shelf", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"STATUS", "status", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"JOB", "job", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"VOLUMES", "volumes", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BOXES, {"RETAIN_UNTIL", "retain_until", cell_value, "-"}},
    {TANDEM_CTL_VIEW_EVENTS, {"SEQ", "seq", cell_value, "-"}},
    {TANDEM_CTL_VIEW_EVENTS, {"TIME", "time", cell_value, "-"}},
    {TANDEM_CTL_VIEW_EVENTS, {"ACTION", "action", cell_value, "-"}},
    {TANDEM_CTL_VIEW_EVENTS, {"ACTOR", "actor", cell_value, "-"}},
    {TANDEM_CTL_VIEW_EVENTS, {"SITE", "site", cell_value, "-"}},
    {TANDEM_CTL_VIEW_EVENTS, {"DETAILS", "details", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"SEQ", "seq", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"TIME", "time", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"KIND", "kind", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"BOX", "box", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"EVENTS", "events_purged", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"ACTOR", "actor", cell_value, "-"}},
    {TANDEM_CTL_VIEW_DISPOSALS, {"SITE", "site", cell_value, "-"}},
    {TANDEM_CTL_VIEW_SITES, {"SITE", "name", cell_text, "?"}},
    {TANDEM_CTL_VIEW_SITES, {"STATE", "state", cell_site_state, "?"}},
    {TANDEM_CTL_VIEW_SITES, {"CAPACITY", "capacity", tandem_ctl_cell_integer, "-"}},
    {TANDEM_CTL_VIEW_SITES, {"SET", "capacity_configured", tandem_ctl_cell_integer, "-"}},
    {TANDEM_CTL_VIEW_SITES, {"BACKLOG", "backlog_units", tandem_ctl_cell_integer, "-"}},
    {TANDEM_CTL_VIEW_SITES, {"HOURS", "backlog_hours", tandem_ctl_cell_hours, "inf"}},
    {TANDEM_CTL_VIEW_SITES, {"QUEUED", "jobs_queued", tandem_ctl_cell_integer, "-"}},
    {TANDEM_CTL_VIEW_SITES, {"RUNNING", "jobs_in_progress", tandem_ctl_cell_integer, "-"}},
    {TANDEM_CTL_VIEW_SITES, {"AT_RISK", "jobs_at_risk", tandem_ctl_cell_integer, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"SEQ", "seq", cell_value, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"AT", "at", cell_value, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"BY", "by", cell_value, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"BY_SITE", "by_site", cell_value, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"OLD", "old", cell_value, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"NEW", "new", cell_value, "-"}},
    {TANDEM_CTL_VIEW_CAPACITY_HISTORY, {"INDEX", "index", cell_value, "-"}},
    {TANDEM_CTL_VIEW_PLAN_SITES, {"SITE", "name", cell_plan_site, "?"}},
    {TANDEM_CTL_VIEW_PLAN_SITES, {"CAP/H", "capacity", tandem_ctl_cell_integer, "0"}},
    {TANDEM_CTL_VIEW_PLAN_SITES, {"BACKLOG HOURS", "backlog_hours", cell_hours_change, "inf"}},
    {TANDEM_CTL_VIEW_PLAN_SITES, {"LOAD", "backlog_hours", cell_load_change, "-"}},
    {TANDEM_CTL_VIEW_PLAN_SITES, {"AT RISK", "at_risk", cell_integer_change, "0"}},
    {TANDEM_CTL_VIEW_PLAN_SITES, {"JOBS", "jobs", cell_integer_change, "0"}},
    {TANDEM_CTL_VIEW_PLAN_MOVES, {"JOB", "job", cell_value, "-"}},
    {TANDEM_CTL_VIEW_PLAN_MOVES, {"FROM", "from", cell_value, "-"}},
    {TANDEM_CTL_VIEW_PLAN_MOVES, {"TO", "to", cell_value, "-"}},
    {TANDEM_CTL_VIEW_PLAN_MOVES, {"EFFORT", "effort", cell_value, "-"}},
    {TANDEM_CTL_VIEW_PLAN_MOVES, {"REASON", "reason", cell_value, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"SITE", "name", cell_text, ""}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"STATE", "state", cell_site_state, ""}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"EPOCH", "epoch", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"SINCE", "since", tandem_ctl_cell_time, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"NODES", "nodes", cell_nodes, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"REACH", "nodes", cell_reach, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"LAG_ENTRIES", "lag_entries", tandem_ctl_cell_index, "-"}},
    /* client writes in the entries lacking: an entry packs a loop iteration's writes */
    {TANDEM_CTL_VIEW_BCP_SITES, {"LAG_WRITES", "lag_commands", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"LAG_MS", "lag_ms", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"BY", "by", cell_text, ""}},
    {TANDEM_CTL_VIEW_BCP_SITES, {"REASON", "reason", cell_text, ""}},
    {TANDEM_CTL_VIEW_DRILLS, {"SEQ", "seq", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_DRILLS, {"ID", "id", cell_text, ""}},
    {TANDEM_CTL_VIEW_DRILLS, {"SITE", "site", cell_text, ""}},
    {TANDEM_CTL_VIEW_DRILLS, {"OK", "ok", cell_yes_no, "-"}},
    {TANDEM_CTL_VIEW_DRILLS, {"RTO_MS", "rto_ms", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_DRILLS, {"RPO", "rpo_writes", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_DRILLS, {"DIGESTS_EQ", "digests_equal", cell_yes_no, "-"}},
    {TANDEM_CTL_VIEW_DRILLS, {"JOBS_MOVED", "jobs_moved", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_DRILLS, {"STARTED", "started", tandem_ctl_cell_time, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"SITE", "site", cell_text, ""}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"ID", "id", cell_text, ""}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"INDEX", "index", tandem_ctl_cell_index, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"AGE", "age_ms", cell_age, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"SIZE", "size", cell_bytes, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"KEPT_ON", "holders", cell_value, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"MANIFEST_ON", "manifest_holders", cell_value, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"STATE", "state", cell_text, ""}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"LOST_ON", "lost", cell_value, "-"}},
    {TANDEM_CTL_VIEW_SITE_BACKUPS, {"VERIFIED", "verified", cell_verified, "never"}},
};
#define COLUMN_COUNT (sizeof(columns) / sizeof(columns[0]))

/* ---- formatters every kind of table uses ---- */

void tandem_ctl_cell(const json_t *value, char *out, size_t size)
{
    size_t used = 0;
    const char *key;
    json_t *item;
    size_t i;
    out[0] = '\0';
    if (json_is_object(value)) {
        json_object_foreach((json_t *)value, key, item)
        {
            char inner[TANDEM_CTL_VALUE_SIZE];
            tandem_ctl_cell(item, inner, sizeof inner);
            int n = snprintf(out + used, size - used, "%s%s=%s", used ? " " : "", key, inner);
            used = n < 0 || (size_t)n >= size - used ? size - 1 : used + (size_t)n;
        }
    } else if (json_is_array(value)) {
        json_array_foreach(value, i, item)
        {
            int n = snprintf(out + used, size - used, "%s%s", i ? "," : "",
                             json_is_string(item) ? json_string_value(item) : "?");
            used = n < 0 || (size_t)n >= size - used ? size - 1 : used + (size_t)n;
        }
    } else if (json_is_string(value)) {
        snprintf(out, size, "%s", json_string_value(value));
    } else if (json_is_integer(value)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else if (json_is_boolean(value)) {
        snprintf(out, size, "%s", json_is_true(value) ? "yes" : "no");
    } else {
        snprintf(out, size, "-");
    }
}

/* Any value as tandem_ctl_cell puts it, cut to TANDEM_CTL_VALUE_SIZE; "" shows as absent. */
static void cell_value(const json_t *item, const struct tandem_ctl_column *column,
                       const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    (void)context;
    tandem_ctl_cell(value, out, size < TANDEM_CTL_VALUE_SIZE ? size : TANDEM_CTL_VALUE_SIZE);
    if (value == NULL || json_is_null(value) || out[0] == '\0') {
        snprintf(out, size, "%s", column->absent);
    }
}

/* A string. */
static void cell_text(const json_t *item, const struct tandem_ctl_column *column,
                      const void *context, char *out, size_t size)
{
    const char *text = json_string_value(json_object_get(item, column->field));
    (void)context;
    snprintf(out, size, "%s", text != NULL ? text : column->absent);
}

/* The field as an integer of at least min, else absent. */
static void integer_cell(const json_t *item, const struct tandem_ctl_column *column, json_int_t min,
                         char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    if (json_is_integer(value) && json_integer_value(value) >= min) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else {
        snprintf(out, size, "%s", column->absent);
    }
}

void tandem_ctl_cell_integer(const json_t *item, const struct tandem_ctl_column *column,
                             const void *context, char *out, size_t size)
{
    (void)context;
    integer_cell(item, column, LLONG_MIN, out, size);
}

void tandem_ctl_cell_index(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size)
{
    (void)context;
    integer_cell(item, column, 0, out, size);
}

void tandem_ctl_cell_hours(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    (void)context;
    if (json_is_number(value)) {
        snprintf(out, size, "%.2f", json_number_value(value));
    } else {
        snprintf(out, size, "%s", column->absent);
    }
}

void tandem_ctl_cell_time(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    json_int_t ms = json_is_integer(value) ? json_integer_value(value) : 0;
    (void)context;
    if (ms <= 0 || tandem_ctl_time_text((long long)ms, out, size) != 0) {
        snprintf(out, size, "%s", column->absent);
    }
}

int tandem_ctl_time_text(long long ms, char *out, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    char stamp[32];
    if (ms < 0 || gmtime_r(&seconds, &tm) == NULL ||
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
        (size_t)snprintf(out, size, "%s.%03lldZ", stamp, ms % 1000) >= size) {
        return -1;
    }
    return 0;
}

/* "yes" when the field is true, else "no". */
static void cell_yes_no(const json_t *item, const struct tandem_ctl_column *column,
                        const void *context, char *out, size_t size)
{
    (void)context;
    snprintf(out, size, "%s", json_is_true(json_object_get(item, column->field)) ? "yes" : "no");
}

/* ---- formatters of one view ---- */

/* An age in ms as "45s", "12m03s", "5h02m" or "3d04h". */
static void cell_age(const json_t *item, const struct tandem_ctl_column *column,
                     const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    json_int_t s = json_is_integer(value) ? json_integer_value(value) / 1000 : -1;
    (void)context;
    if (s < 0) {
        snprintf(out, size, "%s", column->absent);
    } else if (s < 60) {
        snprintf(out, size, "%llds", (long long)s);
    } else if (s < 3600) {
        snprintf(out, size, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    } else if (s < 86400) {
        snprintf(out, size, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    } else {
        snprintf(out, size, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    }
}

/* A byte count as "812 B", "3.4 KiB", "12.0 MiB" or "1.50 GiB". */
static void cell_bytes(const json_t *item, const struct tandem_ctl_column *column,
                       const void *context, char *out, size_t size)
{
    const json_t *value = json_object_get(item, column->field);
    double b = json_is_integer(value) ? (double)json_integer_value(value) : -1.0;
    (void)context;
    if (b < 0) {
        snprintf(out, size, "%s", column->absent);
    } else if (b < 1024) {
        snprintf(out, size, "%.0f B", b);
    } else if (b < 1024.0 * 1024) {
        snprintf(out, size, "%.1f KiB", b / 1024);
    } else if (b < 1024.0 * 1024 * 1024) {
        snprintf(out, size, "%.1f MiB", b / (1024.0 * 1024));
    } else {
        snprintf(out, size, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    }
}

/* A backup's last verification: "L2 2024-05-01T09:30:00.250Z west-1". */
static void cell_verified(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size)
{
    const json_t *v = json_object_get(item, column->field);
    const char *at = json_string_value(json_object_get(v, "at"));
    const char *by = json_string_value(json_object_get(v, "by"));
    (void)context;
    if (at == NULL || by == NULL) {
        snprintf(out, size, "%s", column->absent);
        return;
    }
    snprintf(out, size, "L%" JSON_INTEGER_FORMAT " %s %s",
             json_integer_value(json_object_get(v, "level")), at, by);
}

/* A site's state, with " (witness)" when the site is a witness. */
static void cell_site_state(const json_t *item, const struct tandem_ctl_column *column,
                            const void *context, char *out, size_t size)
{
    const char *state = json_string_value(json_object_get(item, column->field));
    (void)context;
    snprintf(out, size, "%s%s", state != NULL ? state : column->absent,
             json_is_true(json_object_get(item, "witness")) ? " (witness)" : "");
}

/* "*" on the leader's row. */
static void cell_leader(const json_t *item, const struct tandem_ctl_column *column,
                        const void *context, char *out, size_t size)
{
    (void)context;
    snprintf(out, size, "%s",
             json_is_true(json_object_get(item, column->field)) ? "*" : column->absent);
}

/* A key, escaped for one line and cut after KV_KEY_DISPLAY_MAX characters. */
static void cell_kv_key(const json_t *item, const struct tandem_ctl_column *column,
                        const void *context, char *out, size_t size)
{
    const char *key = json_string_value(json_object_get(item, column->field));
    (void)context;
    if (key == NULL) {
        snprintf(out, size, "%s", column->absent);
        return;
    }
    tandem_ctl_escape((const unsigned char *)key, strlen(key), KV_KEY_DISPLAY_MAX, out, size);
}

/* A value (the field, or "value_b64" decoded), escaped and cut after KV_VALUE_DISPLAY_MAX
 * characters; absent when neither decodes. */
static void cell_kv_value(const json_t *item, const struct tandem_ctl_column *column,
                          const void *context, char *out, size_t size)
{
    const char *text = json_string_value(json_object_get(item, column->field));
    const char *b64 = json_string_value(json_object_get(item, "value_b64"));
    unsigned char *bytes = NULL;
    size_t len = 0;
    (void)context;
    if (text != NULL) {
        tandem_ctl_escape((const unsigned char *)text, strlen(text), KV_VALUE_DISPLAY_MAX, out,
                          size);
    } else if (b64 != NULL && tandem_ctl_base64_decode(b64, &bytes, &len) == 0) {
        tandem_ctl_escape(bytes, len, KV_VALUE_DISPLAY_MAX, out, size);
        free(bytes);
    } else {
        snprintf(out, size, "%s", column->absent);
    }
}

/* A site's nodes, "name:role" each, "!" marking the unreachable; cut at NODES_CELL_SIZE. */
static void cell_nodes(const json_t *item, const struct tandem_ctl_column *column,
                       const void *context, char *out, size_t size)
{
    size_t used = 0, i;
    json_t *node;
    (void)context;
    size = size < NODES_CELL_SIZE ? size : NODES_CELL_SIZE;
    out[0] = '\0';
    json_array_foreach(json_object_get(item, column->field), i, node)
    {
        const char *name = json_string_value(json_object_get(node, "name"));
        const char *role = json_string_value(json_object_get(node, "role"));
        int n = snprintf(out + used, size - used, "%s%s:%s%s", used > 0 ? " " : "",
                         name ? name : "", role ? role : "",
                         json_is_false(json_object_get(node, "reachable")) ? "!" : "");
        if (n < 0 || (size_t)n >= size - used) {
            break;
        }
        used += (size_t)n;
    }
}

/* How a node answers: over raft and the API, one of them, or neither. NULL when the server did
 * not say. */
static const char *reach_label(const json_t *node)
{
    json_t *raft = json_object_get(node, "raft_reachable");
    json_t *api = json_object_get(node, "api_reachable");
    if (!json_is_boolean(raft) || !json_is_boolean(api)) {
        return NULL;
    }
    static const char *const labels[2][2] = {{"none", "api only"}, {"raft only", "raft+api"}};
    return labels[json_is_true(raft)][json_is_true(api)];
}

/* A site's reachability: "raft+api" when every node answers both ways, else each node that does
 * not with how it answers ("west-1 api only, west-2 none"); cut at NODES_CELL_SIZE. */
static void cell_reach(const json_t *item, const struct tandem_ctl_column *column,
                       const void *context, char *out, size_t size)
{
    size_t used = 0, i, known = 0;
    json_t *node;
    (void)context;
    size = size < NODES_CELL_SIZE ? size : NODES_CELL_SIZE;
    out[0] = '\0';
    json_array_foreach(json_object_get(item, column->field), i, node)
    {
        const char *label = reach_label(node);
        const char *name = json_string_value(json_object_get(node, "name"));
        known += label != NULL;
        if (label == NULL || strcmp(label, "raft+api") == 0) {
            continue;
        }
        int n = snprintf(out + used, size - used, "%s%s %s", used > 0 ? ", " : "", name ? name : "",
                         label);
        if (n < 0 || (size_t)n >= size - used) {
            break;
        }
        used += (size_t)n;
    }
    if (used == 0) {
        snprintf(out, size, "%s", known > 0 ? "raft+api" : column->absent);
    }
}

/* A plan's site: its name, marked when the site is not active. */
static void cell_plan_site(const json_t *item, const struct tandem_ctl_column *column,
                           const void *context, char *out, size_t size)
{
    const char *name = json_string_value(json_object_get(item, column->field));
    const char *state = json_string_value(json_object_get(item, "state"));
    (void)context;
    snprintf(out, size, "%s%s", name != NULL ? name : column->absent,
             state != NULL && strcmp(state, "active") == 0 ? "" : " (BCP)");
}

/* "before → after": show applied to <field>_before and <field>_after. */
static void cell_change(const json_t *item, const struct tandem_ctl_column *column,
                        tandem_ctl_cell_format *show, const void *context, char *out, size_t size)
{
    char before_field[FIELD_NAME_SIZE], after_field[FIELD_NAME_SIZE];
    char before[CHANGE_CELL_SIZE / 2], after[CHANGE_CELL_SIZE / 2];
    struct tandem_ctl_column side = *column;

    snprintf(before_field, sizeof before_field, "%s_before", column->field);
    snprintf(after_field, sizeof after_field, "%s_after", column->field);
    side.field = before_field;
    show(item, &side, context, before, sizeof before);
    side.field = after_field;
    show(item, &side, context, after, sizeof after);
    snprintf(out, size < CHANGE_CELL_SIZE ? size : CHANGE_CELL_SIZE, "%s" TANDEM_CTL_ARROW "%s",
             before, after);
}

static void cell_integer_change(const json_t *item, const struct tandem_ctl_column *column,
                                const void *context, char *out, size_t size)
{
    cell_change(item, column, tandem_ctl_cell_integer, context, out, size);
}

static void cell_hours_change(const json_t *item, const struct tandem_ctl_column *column,
                              const void *context, char *out, size_t size)
{
    cell_change(item, column, tandem_ctl_cell_hours, context, out, size);
}

/* [#####.....] of the hours against the scale (context, a double); [!!!!!!!!!!] for work that
 * never finishes. */
static void cell_load(const json_t *item, const struct tandem_ctl_column *column,
                      const void *context, char *out, size_t size)
{
    const json_t *hours = json_object_get(item, column->field);
    double scale = *(const double *)context;
    size_t filled = BAR_WIDTH;
    char bar[BAR_WIDTH + 1], mark = '!';
    if (json_is_number(hours)) {
        double h = json_number_value(hours);
        filled = scale > 0 ? (size_t)(h / scale * BAR_WIDTH + 0.5) : 0;
        filled = filled > BAR_WIDTH ? BAR_WIDTH : filled;
        mark = '#';
    }
    for (size_t i = 0; i < BAR_WIDTH; i++) {
        bar[i] = i < filled ? mark : '.';
    }
    bar[BAR_WIDTH] = '\0';
    snprintf(out, size, "[%s]", bar);
}

static void cell_load_change(const json_t *item, const struct tandem_ctl_column *column,
                             const void *context, char *out, size_t size)
{
    cell_change(item, column, cell_load, context, out, size);
}

double tandem_ctl_plan_scale(const json_t *sites)
{
    double scale = 0;
    size_t i;
    const json_t *site;
    json_array_foreach(sites, i, site)
    {
        const json_t *b = json_object_get(site, "backlog_hours_before");
        const json_t *a = json_object_get(site, "backlog_hours_after");
        scale = json_is_number(b) && json_number_value(b) > scale ? json_number_value(b) : scale;
        scale = json_is_number(a) && json_number_value(a) > scale ? json_number_value(a) : scale;
    }
    return scale;
}

void tandem_ctl_field_text(const json_t *item, const char *field, tandem_ctl_cell_format *format,
                           const char *absent, char *out, size_t size)
{
    struct tandem_ctl_column column = {"", field, format, absent};
    format(item, &column, NULL, out, size);
}

/* ---- printing ---- */

/* Prints the table and frees it; rc is what filling it returned. */
static int table_finish(struct tandem_ctl_context *ctx, struct tandem_ctl_table *table, int rc)
{
    if (rc == TANDEM_CTL_OK && tandem_ctl_table_print(table, ctx->out) != 0) {
        rc = tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "writing output failed");
    }
    tandem_ctl_table_free(table);
    return rc;
}

static int table_row(struct tandem_ctl_context *ctx, struct tandem_ctl_table *table,
                     const char *const *row)
{
    if (tandem_ctl_table_add(table, row) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "out of memory building the table");
    }
    return TANDEM_CTL_OK;
}

/* view's columns, in order, into out (room for TANDEM_CTL_TABLE_COLUMNS_MAX); returns how
 * many the view has, which tandem_ctl_table_init refuses when out could not hold them all. */
static size_t view_columns(enum tandem_ctl_view view, const struct tandem_ctl_column **out)
{
    size_t n = 0;
    for (size_t i = 0; i < COLUMN_COUNT; i++) {
        if (columns[i].view == view && n < TANDEM_CTL_TABLE_COLUMNS_MAX) {
            out[n] = &columns[i].column;
        }
        n += columns[i].view == view;
    }
    return n;
}

int tandem_ctl_view_print(struct tandem_ctl_context *ctx, const json_t *items,
                          enum tandem_ctl_view view, const void *context)
{
    const struct tandem_ctl_column *view_column[TANDEM_CTL_TABLE_COLUMNS_MAX];
    const char *headers[TANDEM_CTL_TABLE_COLUMNS_MAX];
    char cells[TANDEM_CTL_TABLE_COLUMNS_MAX][TANDEM_CTL_CELL_SIZE];
    const char *row[TANDEM_CTL_TABLE_COLUMNS_MAX];
    struct tandem_ctl_table table;
    size_t count = view_columns(view, view_column), i;
    const json_t *item;
    int rc = TANDEM_CTL_OK;

    for (size_t c = 0; c < count && c < TANDEM_CTL_TABLE_COLUMNS_MAX; c++) {
        headers[c] = view_column[c]->header;
        row[c] = cells[c];
    }
    if (tandem_ctl_table_init(&table, count, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_array_foreach(items, i, item)
    {
        for (size_t c = 0; c < count; c++) {
            view_column[c]->format(item, view_column[c], context, cells[c], sizeof cells[c]);
        }
        rc = table_row(ctx, &table, row);
        if (rc != TANDEM_CTL_OK) {
            break;
        }
    }
    return table_finish(ctx, &table, rc);
}

int tandem_ctl_object_print(struct tandem_ctl_context *ctx, const json_t *object)
{
    static const char *const headers[] = {"FIELD", "VALUE"};
    struct tandem_ctl_table table;
    char cell[OBJECT_VALUE_SIZE];
    const char *key;
    json_t *value;
    int rc = TANDEM_CTL_OK;

    if (tandem_ctl_table_init(&table, 2, headers) != 0) {
        return tandem_ctl_fail(ctx, TANDEM_CTL_EREFUSED, "table setup failed");
    }
    json_object_foreach((json_t *)object, key, value)
    {
        tandem_ctl_cell(value, cell, sizeof cell);
        const char *row[] = {key, json_is_null(value) || cell[0] == '\0' ? "-" : cell};
        rc = table_row(ctx, &table, row);
        if (rc != TANDEM_CTL_OK) {
            break;
        }
    }
    return table_finish(ctx, &table, rc);
}
