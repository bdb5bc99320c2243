/* tandemd's option table and what is generated from it: INI parsing, flags, help and docs. */
#include "node/config.h"
#include "node/bcp/event_command.h"
#include "consensus/allow.h"
#include "storage/error.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A config file beyond this is a mistake (a log or a binary), not a config. */
#define CONFIG_FILE_BYTES_MAX (1024 * 1024)
/* The longest line inih reads (its buffer holds the newline and the NUL too). */
#define CONFIG_LINE_MAX (INI_MAX_LINE - 2)
/* Followers must be able to miss a heartbeat before standing for election. */
#define ELECTION_HEARTBEAT_RATIO_MIN 2u
/* Longest option name a flag may spell; longer ones are unknown by construction. */
#define OPTION_NAME_LEN_MAX 63

enum option_type { OPTION_STRING, OPTION_UINT, OPTION_BOOL, OPTION_MEMBER, OPTION_ACTION };

/* How a string option's value is checked, both when set and in tandem_config_validate. */
enum option_check {
    CHECK_NONE,
    CHECK_LABEL,
    CHECK_HOSTPORT,
    CHECK_URL,
    CHECK_LOG_LEVEL,
    CHECK_COMMAND
};

/* Flag-only actions, in increasing precedence when several are given. */
enum option_action {
    ACTION_NONE,
    ACTION_PRINT_CONFIG,
    ACTION_VERSION,
    ACTION_MARKDOWN,
    ACTION_HELP
};

#define OPTION_REQUIRED 0x1u /* validate refuses an empty value */
#define OPTION_CLI_ONLY 0x2u /* a flag only, never an INI key */

struct option {
    const char *name;
    enum option_type type;
    size_t offset; /* into struct tandem_config */
    size_t size;   /* strings: buffer size including the NUL */
    enum option_check check;
    const char *default_string; /* strings; NULL means empty */
    unsigned default_uint;      /* integers and booleans */
    unsigned min;
    unsigned max;
    unsigned flags;
    enum option_action action;
    const char *group;
    const char *value_doc;   /* what a value looks like, for help */
    const char *default_doc; /* set when the default is derived, not a constant */
    const char *help;
};

#define FIELD(field)                                                                               \
    .offset = offsetof(struct tandem_config, field),                                               \
    .size = sizeof(((struct tandem_config *)0)->field)

#define STRING_OPTION(name_, field, check_, default_, flags_, group_, value_doc_, help_)           \
    {                                                                                              \
        .name = name_, .type = OPTION_STRING, FIELD(field), .check = check_,                       \
        .default_string = default_, .flags = flags_, .group = group_, .value_doc = value_doc_,     \
        .help = help_                                                                              \
    }
#define UINT_OPTION(field, default_, min_, max_, group_, help_)                                    \
    {                                                                                              \
        .name = #field, .type = OPTION_UINT, FIELD(field), .default_uint = default_, .min = min_,  \
        .max = max_, .group = group_, .help = help_                                                \
    }
#define ACTION_OPTION(name_, action_, help_)                                                       \
    {                                                                                              \
        .name = name_, .type = OPTION_ACTION, .flags = OPTION_CLI_ONLY, .action = action_,         \
        .group = "command_line", .help = help_                                                     \
    }

static const struct option options[] = {
    STRING_OPTION("name", name, CHECK_LABEL, NULL, OPTION_REQUIRED, "identity", "name",
                  "This node's name, unique in the cluster; its raft id derives from it"),
    STRING_OPTION("site", site, CHECK_LABEL, NULL, OPTION_REQUIRED, "identity", "label",
                  "Site this node runs in: east, west, witness or another label"),
    STRING_OPTION("cluster_id", cluster_id, CHECK_LABEL, "tandem", 0, "identity", "label",
                  "Cluster identity carried in the raft handshake; peers with another are refused"),
    STRING_OPTION("data_dir", data_dir, CHECK_NONE, NULL, OPTION_REQUIRED, "identity", "path",
                  "Directory holding the raft log, snapshots and the state store"),
    STRING_OPTION("raft_address", raft_address, CHECK_HOSTPORT, NULL, OPTION_REQUIRED, "identity",
                  "host:port", "Address the raft transport listens on and peers dial"),
    STRING_OPTION("api_address", api_address, CHECK_HOSTPORT, NULL, OPTION_REQUIRED, "identity",
                  "host:port", "Address the HTTP API listens on"),
    {.name = "api_url",
     .type = OPTION_STRING,
     FIELD(api_url),
     .check = CHECK_URL,
     .group = "identity",
     .value_doc = "url",
     .default_doc = "https://<api_address>",
     .help = "Base URL of this node's API as advertised to peers and clients; must be https:// "
             "unless insecure (then the default is http://<api_address>)"},
    {.name = "join",
     .type = OPTION_BOOL,
     FIELD(join),
     .default_uint = 0,
     .max = 1,
     .group = "identity",
     .value_doc = "bool",
     .help = "Start empty and wait to be added by `tandemctl member add` instead of bootstrapping"},
    {.name = "member",
     .type = OPTION_MEMBER,
     .group = "identity",
     .value_doc = "name,site,host:port,url[,role]",
     .help = "Initial member for bootstrap, once per member; --member flags replace the file's"},
    UINT_OPTION(heartbeat_ms, 50, 10, 10000, "raft",
                "Interval between the leader's heartbeats, in milliseconds"),
    UINT_OPTION(election_timeout_ms, 400, 50, 60000, "raft",
                "Silence from the leader before a follower stands for election, in milliseconds; "
                "at least 2 x heartbeat_ms"),
    UINT_OPTION(snapshot_threshold, 65536, 16, 100000000, "raft",
                "Entries applied since the last snapshot that trigger a new one"),
    UINT_OPTION(snapshot_trailing, 131072, 16, 200000000, "raft",
                "Entries kept after a snapshot so a lagging follower catches up from the log; "
                "at least snapshot_threshold"),
    UINT_OPTION(snapshot_log_mib, 64, 1, 65536, "raft",
                "MiB of raft log since the last snapshot that trigger a new one (or "
                "snapshot_threshold entries, whichever comes first)"),
    UINT_OPTION(trailing_log_mib, 128, 1, 131072, "raft",
                "MiB of raft log kept after a snapshot (or snapshot_trailing entries, whichever is "
                "fewer); at least snapshot_log_mib"),
    UINT_OPTION(snapshot_inline_mib, 256, 0, 1024, "raft",
                "A state whose store uses more MiB is snapshotted to a file in data_dir/snapshots "
                "and raft holds a reference to it, fetched by a member that installs it; at most "
                "this much state travels inside raft"),
    UINT_OPTION(snapshot_fetch_timeout_s, 300, 1, 86400, "raft",
                "Time a member installing a snapshot file keeps trying to fetch it from the "
                "members before it stops (a restart catches up afresh), in seconds"),
    UINT_OPTION(max_inflight_entries, 1024, 1, 65536, "raft",
                "Entries sent to a follower before waiting for its acknowledgements"),
    UINT_OPTION(install_snapshot_timeout_ms, 30000, 1000, 3600000, "raft",
                "Time allowed for sending a snapshot to a follower, in milliseconds"),
    UINT_OPTION(segment_size_kib, 8192, 64, 65536, "raft",
                "Size of one raft log segment file, in KiB"),
    UINT_OPTION(map_size_mib, 4096, 16, 1048576, "state_machine",
                "Maximum size of the LMDB state store, in MiB"),
    UINT_OPTION(pool_nice, 10, 0, 19, "state_machine",
                "Nice increment a thread-pool thread takes while it runs a snapshot, backup, "
                "digest or scan, so the event loop (heartbeats, requests) wins a busy CPU; 0: the "
                "loop's own priority"),
    UINT_OPTION(commit_interval_ms, 5, 0, 1000, "state_machine",
                "Longest time applied entries wait for their grouped LMDB commit; 0 = every loop "
                "iteration (the raft log replays what a crash loses)"),
    UINT_OPTION(batch_commands_max, 1024, 1, 65536, "state_machine",
                "Commands packed into one raft entry"),
    UINT_OPTION(batch_bytes_max_kib, 4096, 1, 65536, "state_machine",
                "Bytes packed into one raft entry, in KiB; below segment_size_kib"),
    UINT_OPTION(pending_requests_max, 65536, 1, 1048576, "state_machine",
                "Writes waiting for commit before new ones are answered with HTTP 429"),
    UINT_OPTION(body_bytes_max_kib, 1024, 1, 65536, "api",
                "Largest request body, in KiB (HTTP 413 above); at most batch_bytes_max_kib"),
    UINT_OPTION(connections_max, 4096, 1, 1048576, "api",
                "Open API connections; more are refused. tandemd raises its open-files soft limit "
                "to the hard "
                "limit and refuses to start when that is below connections_max + 1024"),
    UINT_OPTION(header_timeout_ms, 10000, 10, 600000, "api",
                "Time a request's head may take to arrive from its first byte (and a new "
                "connection's first request from the accept), in ms; slower clients get HTTP 408"),
    UINT_OPTION(forward_connections, 16, 1, 1024, "api",
                "Kept-alive connections from a follower to the leader for forwarded requests"),
    UINT_OPTION(forward_timeout_ms, 10000, 100, 600000, "api",
                "Time a forwarded request may take before the client gets HTTP 503, in ms"),
    STRING_OPTION(
        "metrics_address", metrics_address, CHECK_NONE, NULL, 0, "api", "host:port",
        "Extra listener serving only GET /metrics, plaintext HTTP without a credential (bind it "
        "to the monitoring network; api_allow applies to it too); empty: /metrics on the API, "
        "credential needed"),
    STRING_OPTION("api_allow", api_allow, CHECK_NONE, NULL, 0, "api", "cidr,...",
                  "Sources (IPv4/IPv6 CIDR, comma-separated) allowed to connect to the API and "
                  "metrics listeners; others are closed before TLS; empty: every source"),
    UINT_OPTION(connections_per_source_max, 1024, 1, 1048576, "api",
                "Open API connections from one source address; more are closed on arrival"),
    UINT_OPTION(rate_limit_rps, 10000, 0, 10000000, "api",
                "Requests per second one user may make (token bucket; HTTP 429 with "
                "Retry-After above it); 0: no limit"),
    UINT_OPTION(rate_limit_burst, 20000, 1, 10000000, "api",
                "Requests one user may make at once before rate_limit_rps applies"),
    {.name = "insecure",
     .type = OPTION_BOOL,
     FIELD(insecure),
     .default_uint = 0,
     .max = 1,
     .group = "security",
     .value_doc = "bool",
     .help = "No TLS on any listener and no authentication: for benchmarks only, never with "
             "personal data; logged at warn on every start"},
    STRING_OPTION("tls_ca", tls_ca, CHECK_NONE, NULL, 0, "security", "path",
                  "PEM file of the cluster CA: every peer, node or user, must chain to it; "
                  "required unless insecure"),
    STRING_OPTION("tls_cert", tls_cert, CHECK_NONE, NULL, 0, "security", "path",
                  "PEM file of this node's certificate (CN and a SAN DNS name = the node name); "
                  "required unless insecure; reloaded on SIGHUP"),
    STRING_OPTION("tls_key", tls_key, CHECK_NONE, NULL, 0, "security", "path",
                  "PEM file of the certificate's private key; required unless insecure; reloaded "
                  "on SIGHUP"),
    STRING_OPTION("tls_crl", tls_crl, CHECK_NONE, NULL, 0, "security", "path",
                  "PEM file of the CA's revocation list, honoured on every listener and reloaded "
                  "on SIGHUP; empty: none"),
    STRING_OPTION("raft_allow", raft_allow, CHECK_NONE, NULL, 0, "security", "cidr,...",
                  "Sources (IPv4/IPv6 CIDR, comma-separated) allowed to connect to the raft "
                  "transport; others are closed before TLS; empty: every source"),
    /* issue 13, personal data (I4) */
    STRING_OPTION("key_file", key_file, CHECK_NONE, NULL, 0, "security", "path",
                  "File of personal-data keys, one \"<id> <64 hex digits>\" a line (highest id "
                  "seals), mode 0600 or 0400, the same file on every node, never replicated; "
                  "reloaded on SIGHUP; empty: personal data is refused"),
    UINT_OPTION(personal_data_retention_days, 365, 1, 36500, "domain",
                "Days after a job is done or cancelled before its personal-data fields are "
                "erased (with a deletion record)"),
    /* issue 13, the automatic erasure (m13b) */
    UINT_OPTION(erase_interval_s, 3600, 1, 86400, "domain",
                "Seconds between the leader's passes that erase the personal-data fields of jobs "
                "past personal_data_retention_days (in batches, each with a deletion record \"by "
                "policy\"), without an operator"),
    UINT_OPTION(retention_days, 90, 1, 36500, "domain",
                "Days trace events are kept; POST /v1/retention/purge removes older ones"),
    UINT_OPTION(password_max_age_days, 90, 0, 3650, "users",
                "Days a password stays valid; an expired one can only be changed (POST "
                "/v1/users/NAME/password); 0 expires every password at once (tests)"),
    UINT_OPTION(password_history, 5, 1, 24, "users",
                "Password hashes kept per user (the current one included) that a new password "
                "may not repeat"),
    UINT_OPTION(lockout_failures, 5, 1, 1000, "users",
                "Consecutive failed logins that lock a user for lockout_minutes"),
    UINT_OPTION(lockout_minutes, 15, 1, 10080, "users",
                "Minutes a user stays locked after lockout_failures failed logins"),
    UINT_OPTION(token_ttl_minutes, 60, 1, 1440, "users",
                "Minutes a bearer token from POST /v1/auth/login stays valid"),
    STRING_OPTION("log_level", log_level, CHECK_LOG_LEVEL, "info", 0, "logging",
                  "debug|info|warn|error", "Least severe level written to the log"),
    UINT_OPTION(site_down_after_ms, 3000, 100, 600000, "bcp",
                "Silence from every node of a site, as the leader's health probes see it, after "
                "which the site counts as down (and is invoked when auto_bcp is on), in ms"),
    {.name = "auto_bcp",
     .type = OPTION_BOOL,
     FIELD(auto_bcp),
     .default_uint = 1,
     .max = 1,
     .group = "bcp",
     .value_doc = "bool",
     .help = "The leader invokes BCP for a site that stays down site_down_after_ms while it "
             "keeps a quorum"},
    STRING_OPTION("preferred_site", preferred_site, CHECK_NONE, NULL, 0, "bcp", "label",
                  "Site where the site controller keeps leadership (seeds the replicated "
                  "preference once); empty: any active non-witness site"),
    STRING_OPTION("mode", mode, CHECK_NONE, "sync", 0, "bcp", "sync|async",
                  "sync: voters in both sites and a witness, RPO 0; async: voters at the primary "
                  "site, standbys at the DR site, lag is the RPO exposure and BCP of the primary "
                  "is the forced path"),
    STRING_OPTION("bcp_event_command", bcp_event_command, CHECK_COMMAND, NULL, 0, "bcp",
                  "program args",
                  "Run for every BCP event with the event's JSON line on stdin, one run at a "
                  "time, without a shell (words split on blanks, '...' and \"...\" group; use "
                  "/bin/sh -c '...' for shell syntax); empty: none"),
    UINT_OPTION(bcp_event_command_timeout_ms, 5000, 100, 600000, "bcp",
                "A bcp_event_command run still going after this is killed (SIGKILL), in ms"),
    UINT_OPTION(bcp_events_kept, 1024, 16, 65536, "bcp",
                "BCP events kept in memory for GET /v1/events to resume from"),
    UINT_OPTION(bcp_event_streams_max, 16, 1, 1024, "bcp",
                "Concurrent GET /v1/events streams; more are answered 503"),
    UINT_OPTION(audit_retention_days, 400, 30, 36500, "audit",
                "Days audit records are kept at least; POST /v1/retention/purge removes older ones "
                "(the last removed record's hash stays as the chain's anchor)"),
    /* issue 14, backups (node/backup.h) and their schedule (node/backup_state.h) */
    {.name = "backup_dir",
     .type = OPTION_STRING,
     FIELD(backup_dir),
     .check = CHECK_NONE,
     .group = "backup",
     .value_doc = "path",
     .default_doc = "<data_dir>/backups",
     .help = "Directory where this node writes the backups it takes (POST /v1/backups, the "
             "schedule) and keeps the ones shipped to it; created with mode 0700; never inside "
             "data_dir's raft/ or state/"},
    STRING_OPTION("backup_key_file", backup_key_file, CHECK_NONE, NULL, 0, "backup", "path",
                  "File of backup keys in key_file's format (\"<id> <64 hex digits>\" a line, "
                  "mode 0600 or 0400); the highest id seals each backup's state with "
                  "AES-256-GCM, any listed id opens one; empty: backups are written plain "
                  "(personal-data fields stay sealed inside either way)"),
    UINT_OPTION(backup_interval_minutes, 0, 0, 525600, "backup",
                "Minutes between the scheduled backups of each site, taken by a caught-up node "
                "of the site and shipped to the other site's nodes; 0: no scheduled backups"),
    UINT_OPTION(backup_interval_s, 0, 0, 31536000, "backup",
                "Seconds between scheduled backups; overrides backup_interval_minutes when not 0 "
                "(tests and drills)"),
    UINT_OPTION(backup_keep, 7, 1, 512, "backup",
                "Newest backups of each site kept; older ones are removed from their holders"),
    UINT_OPTION(backup_keep_days, 30, 1, 36500, "backup",
                "Days a backup is kept at most (each site's newest backup is always kept)"),
    UINT_OPTION(backup_verify_interval_s, 86400, 0, 31536000, "backup",
                "Seconds between level-2 verifications (the state opened and its digest "
                "recomputed) of each site's newest backup at a holder; 0: never"),
    UINT_OPTION(backup_check_interval_s, 60, 1, 86400, "backup",
                "Seconds between a holder's checks that the backups recorded as kept by it are "
                "there with their size; a missing one is reported as lost"),
    UINT_OPTION(backup_attempts, 3, 1, 100, "backup",
                "Tries of one scheduled backup before the failure is raised as an event "
                "(backup_failed)"),
    UINT_OPTION(backup_retry_s, 30, 1, 86400, "backup",
                "Seconds before a failed scheduled backup is tried again, doubled after each try"),
    UINT_OPTION(backup_timeout_s, 1800, 10, 3600, "backup",
                "Seconds one scheduled backup (take, ship to every holder) may take before it "
                "counts as failed; also how long a backup download's reader may take no byte "
                "before it is disconnected"),
    STRING_OPTION("config", config_path, CHECK_NONE, NULL, OPTION_CLI_ONLY, "command_line", "path",
                  "INI file read before the flags, which override it"),
    ACTION_OPTION("help", ACTION_HELP, "Print this help and exit"),
    ACTION_OPTION("version", ACTION_VERSION, "Print the version and exit"),
    ACTION_OPTION("help-markdown", ACTION_MARKDOWN,
                  "Print the configuration reference as a Markdown table (the README's) and exit"),
    ACTION_OPTION("print-config", ACTION_PRINT_CONFIG,
                  "Print the effective configuration as INI and exit"),
};

#define OPTIONS_COUNT ((unsigned)(sizeof options / sizeof options[0]))

static const char *const log_levels[] = {"debug", "info", "warn", "error"};

__attribute__((format(printf, 2, 3))) static int fail(char *errmsg, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(errmsg, TANDEM_ERRMSG_SIZE, format, args);
    va_end(args);
    return -1;
}

unsigned tandem_config_option_count(void)
{
    return OPTIONS_COUNT;
}

const char *tandem_config_option_name(unsigned index)
{
    return index < OPTIONS_COUNT ? options[index].name : NULL;
}

/* Flags may spell '_' as '-' (and the reverse), as most daemons' flags do. */
static bool names_equal(const char *a, const char *b)
{
    for (;; a++, b++) {
        char x = *a == '-' ? '_' : *a;
        char y = *b == '-' ? '_' : *b;
        if (x != y) {
            return false;
        }
        if (x == '\0') {
            return true;
        }
    }
}

static const struct option *option_find(const char *name)
{
    for (unsigned i = 0; i < OPTIONS_COUNT; i++) {
        if (names_equal(options[i].name, name)) {
            return &options[i];
        }
    }
    return NULL;
}

static void *option_field(const struct option *opt, struct tandem_config *c)
{
    return (char *)c + opt->offset;
}

static const void *option_field_const(const struct option *opt, const struct tandem_config *c)
{
    return (const char *)c + opt->offset;
}

static bool ascii_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* host:port where host is a name, an IPv4 address or a bracketed IPv6 address; no character
 * that could break the packed member address ("name|site|host:port|url"). */
static bool hostport_ok(const char *text)
{
    char host[TANDEM_HOSTPORT_LEN_MAX + 1];
    int port;
    if (strlen(text) > TANDEM_HOSTPORT_LEN_MAX ||
        tandem_hostport_split(text, host, sizeof host, &port) != 0) {
        return false;
    }
    size_t len = strlen(host);
    bool bracketed = host[0] == '[';
    if (bracketed && (len < 3 || host[len - 1] != ']')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = host[i];
        bool inside = bracketed && i > 0 && i < len - 1;
        bool ok = ascii_alnum(ch) || ch == '.' || ch == '-' || ch == '_' || (inside && ch == ':') ||
                  (bracketed && (i == 0 || i == len - 1));
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool url_ok(const char *text)
{
    const char *rest;
    if (strncmp(text, "http://", 7) == 0) {
        rest = text + 7;
    } else if (strncmp(text, "https://", 8) == 0) {
        rest = text + 8;
    } else {
        return false;
    }
    if (rest[0] == '\0' || strlen(text) > TANDEM_URL_LEN_MAX) {
        return false;
    }
    for (const char *p = rest; *p != '\0'; p++) {
        if (*p <= ' ' || *p > '~' || *p == '|' || *p == ',') {
            return false;
        }
    }
    return true;
}

static bool log_level_ok(const char *text)
{
    for (size_t i = 0; i < sizeof log_levels / sizeof log_levels[0]; i++) {
        if (strcmp(text, log_levels[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int string_check(const struct option *opt, const char *value, char *errmsg)
{
    switch (opt->check) {
        case CHECK_NONE:
            return 0;
        case CHECK_LABEL:
            if (!tandem_member_name_ok(value, opt->size - 1)) {
                return fail(errmsg,
                            "option %s: '%s' is not a valid label (1-%zu of A-Z a-z 0-9 . _ -)",
                            opt->name, value, opt->size - 1);
            }
            return 0;
        case CHECK_HOSTPORT:
            if (!hostport_ok(value)) {
                return fail(errmsg, "option %s: '%s' is not a valid host:port", opt->name, value);
            }
            return 0;
        case CHECK_URL:
            if (!url_ok(value)) {
                return fail(errmsg, "option %s: '%s' is not a valid http:// or https:// URL",
                            opt->name, value);
            }
            return 0;
        case CHECK_LOG_LEVEL:
            if (!log_level_ok(value)) {
                return fail(errmsg, "option %s: '%s' is not one of debug, info, warn, error",
                            opt->name, value);
            }
            return 0;
        case CHECK_COMMAND: {
            char words[TANDEM_EVENT_COMMAND_LEN_MAX + 1];
            char *argv[TANDEM_EVENT_COMMAND_ARGS_MAX + 1];
            if (value[0] != '\0' &&
                tandem_events_command_split(value, words, sizeof words, argv) <= 0) {
                return fail(errmsg, "option %s: '%s' has an unclosed quote or more than %d words",
                            opt->name, value, TANDEM_EVENT_COMMAND_ARGS_MAX);
            }
            return 0;
        }
    }
    return fail(errmsg, "option %s: unknown check", opt->name);
}

static int uint_check(const struct option *opt, unsigned long long value, char *errmsg)
{
    if (value < opt->min) {
        return fail(errmsg, "option %s: %llu is below the minimum %u", opt->name, value, opt->min);
    }
    if (value > opt->max) {
        return fail(errmsg, "option %s: %llu is above the maximum %u", opt->name, value, opt->max);
    }
    return 0;
}

/* Strict: decimal digits only, so "-1", "+5", " 5", "5ms" and "" are all refused. */
static int uint_parse(const struct option *opt, const char *text, unsigned *out, char *errmsg)
{
    if (text[0] < '0' || text[0] > '9') {
        return fail(errmsg, "option %s: '%s' is not a non-negative integer", opt->name, text);
    }
    errno = 0;
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end != '\0') {
        return fail(errmsg, "option %s: '%s' is not a non-negative integer", opt->name, text);
    }
    if (errno == ERANGE) {
        return fail(errmsg, "option %s: %s is above the maximum %u", opt->name, text, opt->max);
    }
    if (uint_check(opt, value, errmsg) != 0) {
        return -1;
    }
    *out = (unsigned)value;
    return 0;
}

static int bool_parse(const struct option *opt, const char *text, bool *out, char *errmsg)
{
    static const char *const truths[] = {"true", "1", "yes"};
    static const char *const falsehoods[] = {"false", "0", "no"};
    for (size_t i = 0; i < sizeof truths / sizeof truths[0]; i++) {
        if (strcmp(text, truths[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(text, falsehoods[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return fail(errmsg, "option %s: '%s' is not a boolean (true|false|1|0|yes|no)", opt->name,
                text);
}

static int member_append(struct tandem_config *c, const char *spec, char *errmsg)
{
    char why[TANDEM_ERRMSG_SIZE];
    struct tandem_member member;
    if (c->n_members >= TANDEM_MEMBERS_MAX) {
        return fail(errmsg, "option member: more than %d members", TANDEM_MEMBERS_MAX);
    }
    if (tandem_member_spec_parse(spec, &member, why) != 0) {
        return fail(errmsg, "option member: %s", why);
    }
    c->members[c->n_members++] = member;
    return 0;
}

/* Whether an INI file can hold value so that it reads back the same (what --print-config
 * writes must load again): inih strips blanks at either end of a value and takes a ';' at its
 * start or after a blank as the start of a comment, and a control character would break the line
 * (fuzz_config found a data_dir ";x" that printed and read back as ""). */
static bool ini_value_ok(const char *value, size_t len)
{
    if (len > 0 && (value[0] == ' ' || value[0] == '\t' || value[0] == ';' ||
                    value[len - 1] == ' ' || value[len - 1] == '\t')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f ||
            (ch == ';' && (value[i - 1] == ' ' || value[i - 1] == '\t'))) {
            return false;
        }
    }
    return true;
}

static int option_set(struct tandem_config *c, const struct option *opt, const char *value,
                      char *errmsg)
{
    void *field = option_field(opt, c);
    size_t len = strlen(value);
    switch (opt->type) {
        case OPTION_STRING:
            if (len >= opt->size) {
                return fail(errmsg, "option %s: value is longer than %zu characters", opt->name,
                            opt->size - 1);
            }
            if (!ini_value_ok(value, len)) {
                return fail(errmsg,
                            "option %s: a config file cannot hold this value (a blank at either "
                            "end, a ';' first or after a blank, or a control character)",
                            opt->name);
            }
            if (len > 0 && string_check(opt, value, errmsg) != 0) {
                return -1;
            }
            /* Zero the tail so a shorter value leaves no trace of a longer one. */
            memset(field, 0, opt->size);
            memcpy(field, value, len);
            return 0;
        case OPTION_UINT:
            return uint_parse(opt, value, field, errmsg);
        case OPTION_BOOL:
            return bool_parse(opt, value, field, errmsg);
        case OPTION_MEMBER:
            return member_append(c, value, errmsg);
        case OPTION_ACTION:
            return 0;
    }
    return fail(errmsg, "option %s: unknown type", opt->name);
}

void tandem_config_defaults(struct tandem_config *c)
{
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(c, 0, sizeof *c);
    for (unsigned i = 0; i < OPTIONS_COUNT; i++) {
        const struct option *opt = &options[i];
        if (opt->type == OPTION_STRING && opt->default_string != NULL) {
            /* The table's defaults are valid by construction; the unit test proves it. */
            (void)option_set(c, opt, opt->default_string, errmsg);
        } else if (opt->type == OPTION_UINT) {
            *(unsigned *)option_field(opt, c) = opt->default_uint;
        } else if (opt->type == OPTION_BOOL) {
            *(bool *)option_field(opt, c) = opt->default_uint != 0;
        }
    }
}

/* ---- INI file ---------------------------------------------------------------------------- */

struct ini_state {
    struct tandem_config *config; /* borrowed */
    const char *path;             /* borrowed */
    FILE *file;                   /* borrowed */
    unsigned line;                /* lines handed to inih so far */
    size_t bytes;                 /* bytes read so far, bounded by CONFIG_FILE_BYTES_MAX */
    bool failed;
    unsigned error_line; /* line of the first error, to order it against inih's syntax errors */
    char errmsg[TANDEM_ERRMSG_SIZE];
};

/* Keeps the first error only: later ones are usually consequences of it. */
__attribute__((format(printf, 3, 4))) static void ini_error(struct ini_state *state, unsigned line,
                                                            const char *format, ...)
{
    if (state->failed) {
        return;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(state->errmsg, sizeof state->errmsg, format, args);
    va_end(args);
    state->failed = true;
    state->error_line = line;
}

/* Feeds inih one file line per call. Counting lines here gives exact line numbers; stripping
 * leading blanks turns off inih's continuation lines, which would silently glue an indented
 * "key = value" onto the previous option; and a line longer than inih's buffer is an error
 * instead of inih's silent truncation. */
static char *ini_read_line(char *str, int num, void *stream)
{
    struct ini_state *state = stream;
    size_t capacity = num > 2 ? (size_t)num - 2 : 0; /* room for '\n' and NUL */
    size_t len = 0;
    bool seen = false, leading = true, too_long = false;
    int ch;
    while ((ch = fgetc(state->file)) != EOF) {
        seen = true;
        if (++state->bytes > CONFIG_FILE_BYTES_MAX) {
            ini_error(state, state->line + 1, "%s: larger than %d bytes", state->path,
                      CONFIG_FILE_BYTES_MAX);
            return NULL;
        }
        if (ch == '\n') {
            break;
        }
        if (leading && (ch == ' ' || ch == '\t')) {
            continue;
        }
        leading = false;
        if (len < capacity) {
            str[len++] = (char)ch;
        } else {
            too_long = true;
        }
    }
    if (ferror(state->file)) {
        ini_error(state, state->line + 1, "%s: cannot read: %s", state->path, strerror(errno));
        return NULL;
    }
    if (!seen) {
        return NULL;
    }
    state->line++;
    if (too_long) {
        ini_error(state, state->line, "%s:%u: line longer than %zu characters", state->path,
                  state->line, capacity);
        len = 0;
    }
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static int ini_handle(void *user, const char *section, const char *key, const char *value)
{
    struct ini_state *state = user;
    char why[TANDEM_ERRMSG_SIZE];
    (void)section; /* sections only group options for the reader */
    const struct option *opt = option_find(key);
    if (opt == NULL) {
        ini_error(state, state->line, "%s:%u: unknown option '%s'", state->path, state->line, key);
        return 0;
    }
    if ((opt->flags & OPTION_CLI_ONLY) != 0) {
        ini_error(state, state->line, "%s:%u: option '%s' is only valid on the command line",
                  state->path, state->line, key);
        return 0;
    }
    if (option_set(state->config, opt, value, why) != 0) {
        ini_error(state, state->line, "%s:%u: %s", state->path, state->line, why);
        return 0;
    }
    return 1;
}

static int config_file_read(struct tandem_config *c, char *errmsg)
{
    struct ini_state state = {.config = c, .path = c->config_path};
    state.file = fopen(c->config_path, "r");
    if (state.file == NULL) {
        return fail(errmsg, "cannot open config file '%s': %s", c->config_path, strerror(errno));
    }
    int rc = ini_parse_stream(ini_read_line, &state, ini_handle, &state);
    fclose(state.file);
    /* inih reports the first line it could not parse; ours may come from a later line. */
    if (rc > 0 && (!state.failed || (unsigned)rc < state.error_line)) {
        return fail(errmsg, "%s:%d: syntax error (want 'option = value' or '[section]')",
                    c->config_path, rc);
    }
    if (state.failed) {
        memcpy(errmsg, state.errmsg, sizeof state.errmsg);
        return -1;
    }
    if (rc != 0) {
        return fail(errmsg, "%s: cannot parse (inih error %d)", c->config_path, rc);
    }
    return 0;
}

/* ---- command line ------------------------------------------------------------------------ */

/* Resolves argv[*index] ("--name value", "--name=value", "--flag") into an option and its
 * value, and moves *index past what it used. */
static int flag_next(int argc, char **argv, int *index, const struct option **opt_out,
                     const char **value_out, char *errmsg)
{
    const char *arg = argv[*index];
    char key[OPTION_NAME_LEN_MAX + 1];
    if (strcmp(arg, "-h") == 0) {
        arg = "--help";
    }
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
        return fail(errmsg, "unexpected argument '%s' (options are --name value or --name=value)",
                    arg);
    }
    const char *name = arg + 2;
    const char *equals = strchr(name, '=');
    size_t key_len = equals != NULL ? (size_t)(equals - name) : strlen(name);
    const struct option *opt = NULL;
    if (key_len < sizeof key) {
        memcpy(key, name, key_len);
        key[key_len] = '\0';
        opt = option_find(key);
    }
    if (opt == NULL) {
        return fail(errmsg, "unknown option '--%.*s' (see --help)", (int)key_len, name);
    }
    *index += 1;
    if (equals != NULL) {
        if (opt->type == OPTION_ACTION) {
            return fail(errmsg, "option --%s takes no value", opt->name);
        }
        *value_out = equals + 1;
    } else if (opt->type == OPTION_BOOL) {
        *value_out = "true";
    } else if (opt->type == OPTION_ACTION) {
        *value_out = "";
    } else if (*index < argc) {
        *value_out = argv[(*index)++];
    } else {
        return fail(errmsg, "option --%s needs a value", opt->name);
    }
    *opt_out = opt;
    return 0;
}

/* First pass: checks the flags' shape, finds --config (the file goes below the other flags)
 * and the action with the highest precedence. */
static int flags_scan(struct tandem_config *c, int argc, char **argv, enum option_action *action,
                      char *errmsg)
{
    *action = ACTION_NONE;
    for (int i = 1; i < argc;) {
        const struct option *opt = NULL;
        const char *value = NULL;
        if (flag_next(argc, argv, &i, &opt, &value, errmsg) != 0) {
            return -1;
        }
        if (opt->type == OPTION_ACTION && opt->action > *action) {
            *action = opt->action;
        }
        /* --config is the one flag-only string option. */
        if (opt->type == OPTION_STRING && (opt->flags & OPTION_CLI_ONLY) != 0) {
            if (value[0] == '\0') {
                return fail(errmsg, "option --config needs a file name");
            }
            if (option_set(c, opt, value, errmsg) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Second pass, after the file: every other flag overrides it. */
static int flags_apply(struct tandem_config *c, int argc, char **argv, char *errmsg)
{
    bool members_replaced = false;
    for (int i = 1; i < argc;) {
        const struct option *opt = NULL;
        const char *value = NULL;
        if (flag_next(argc, argv, &i, &opt, &value, errmsg) != 0) {
            return -1;
        }
        if ((opt->flags & OPTION_CLI_ONLY) != 0) {
            continue;
        }
        if (opt->type == OPTION_MEMBER && !members_replaced) {
            c->n_members = 0;
            memset(c->members, 0, sizeof c->members);
            members_replaced = true;
        }
        if (option_set(c, opt, value, errmsg) != 0) {
            return -1;
        }
    }
    return 0;
}

static int printed_lines_fit(const struct tandem_config *c, char *errmsg);

int tandem_config_load(struct tandem_config *c, int argc, char **argv, FILE *out, char *errmsg)
{
    enum option_action action;
    tandem_config_defaults(c);
    if (flags_scan(c, argc, argv, &action, errmsg) != 0) {
        return -1;
    }
    if (action == ACTION_HELP) {
        tandem_config_print_help(out);
        return 1;
    }
    if (action == ACTION_VERSION) {
        fprintf(out, "tandemd %s\n", TANDEM_VERSION);
        return 1;
    }
    if (action == ACTION_MARKDOWN) {
        tandem_config_print_markdown(out);
        return 1;
    }
    if (c->config_path[0] != '\0' && config_file_read(c, errmsg) != 0) {
        return -1;
    }
    if (flags_apply(c, argc, argv, errmsg) != 0) {
        return -1;
    }
    if (c->api_url[0] == '\0' && c->api_address[0] != '\0') {
        /* Fits: "https://" plus at most TANDEM_HOSTPORT_LEN_MAX is below TANDEM_URL_LEN_MAX. */
        snprintf(c->api_url, sizeof c->api_url, "%s://%s", c->insecure ? "http" : "https",
                 c->api_address);
    }
    if (c->backup_dir[0] == '\0' && c->data_dir[0] != '\0') {
        snprintf(c->backup_dir, sizeof c->backup_dir, "%.*s/backups", PATH_MAX - 16, c->data_dir);
    }
    if (tandem_config_validate(c, errmsg) != 0 || printed_lines_fit(c, errmsg) != 0) {
        return -1;
    }
    if (action == ACTION_PRINT_CONFIG) {
        tandem_config_print_ini(c, out);
        return 1;
    }
    return 0;
}

/* ---- validation -------------------------------------------------------------------------- */

/* What --print-config writes must load again, and inih reads lines of at most CONFIG_LINE_MAX
 * characters: a value that would print a longer line (a long data_dir given as a flag, or the
 * backup_dir derived from a data_dir that fits) is refused here (fuzz_config found the second). */
static int printed_lines_fit(const struct tandem_config *c, char *errmsg)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out == NULL) {
        return fail(errmsg, "print the configuration: %s", strerror(errno));
    }
    tandem_config_print_ini(c, out);
    if (fclose(out) != 0) {
        free(text);
        return fail(errmsg, "print the configuration: %s", strerror(errno));
    }
    int rv = 0;
    for (const char *line = text, *end = text + size; rv == 0 && line < end;) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        size_t len = (size_t)((newline != NULL ? newline : end) - line);
        if (len > CONFIG_LINE_MAX) {
            const char *eq = memchr(line, '=', len);
            int key_len = eq != NULL && eq > line ? (int)(eq - line) - 1 : 0;
            rv = fail(errmsg,
                      "option %.*s: its value is too long: written as INI its line would be %zu "
                      "characters, and a line holds at most %d",
                      key_len, line, len, CONFIG_LINE_MAX);
        }
        line += len + 1;
    }
    free(text);
    return rv;
}

static int validate_option(const struct tandem_config *c, const struct option *opt, char *errmsg)
{
    const void *field = option_field_const(opt, c);
    if (opt->type == OPTION_UINT) {
        return uint_check(opt, *(const unsigned *)field, errmsg);
    }
    if (opt->type != OPTION_STRING) {
        return 0;
    }
    const char *value = field;
    if (memchr(value, '\0', opt->size) == NULL) {
        return fail(errmsg, "option %s is not NUL-terminated", opt->name);
    }
    if (value[0] == '\0' && (opt->flags & OPTION_REQUIRED) != 0) {
        return fail(errmsg, "option %s is required", opt->name);
    }
    if (value[0] == '\0' && opt->check == CHECK_NONE) {
        return 0;
    }
    return string_check(opt, value, errmsg);
}

static int validate_member_list(const struct tandem_config *c, char *errmsg)
{
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    if (c->n_members > TANDEM_MEMBERS_MAX) {
        return fail(errmsg, "option member: %u members, more than %d", c->n_members,
                    TANDEM_MEMBERS_MAX);
    }
    for (unsigned i = 0; i < c->n_members; i++) {
        const struct tandem_member *m = &c->members[i];
        if (memchr(m->name, '\0', sizeof m->name) == NULL ||
            tandem_member_address_format(m, address, sizeof address) != 0 ||
            tandem_role_parse(tandem_role_name(m->role)) != m->role) {
            return fail(errmsg, "option member: member %u is invalid", i + 1);
        }
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(c->members[j].name, m->name) == 0) {
                return fail(errmsg, "option member: duplicate member name '%s'", m->name);
            }
            if (strcmp(c->members[j].raft, m->raft) == 0) {
                return fail(errmsg, "option member: duplicate raft address '%s' (%s and %s)",
                            m->raft, c->members[j].name, m->name);
            }
        }
    }
    return 0;
}

/* A bootstrapping node writes the member list as raft's first configuration, so it must be in
 * it exactly as it will listen, and someone must be able to vote. */
static int validate_self_in_members(const struct tandem_config *c, char *errmsg)
{
    const struct tandem_member *self = NULL;
    bool voter = false;
    if (c->join || c->n_members == 0) {
        return 0;
    }
    for (unsigned i = 0; i < c->n_members; i++) {
        if (strcmp(c->members[i].name, c->name) == 0) {
            self = &c->members[i];
        }
        voter = voter || c->members[i].role == TANDEM_ROLE_VOTER;
    }
    if (self == NULL) {
        return fail(errmsg,
                    "this node (%s) is not among the members: add a member for it, or set join "
                    "to wait to be added",
                    c->name);
    }
    if (strcmp(self->raft, c->raft_address) != 0) {
        return fail(errmsg, "member %s has raft address %s but raft_address is %s", self->name,
                    self->raft, c->raft_address);
    }
    if (strcmp(self->site, c->site) != 0) {
        return fail(errmsg, "member %s has site %s but site is %s", self->name, self->site,
                    c->site);
    }
    if (!voter) {
        return fail(errmsg, "option member: no member is a voter, so none could be elected");
    }
    return 0;
}

/* The allow-lists must parse, so that a typo is a refusal to start, not an open listener. */
static int validate_allow_lists(const struct tandem_config *c, char *errmsg)
{
    struct tandem_allow allow;
    char why[TANDEM_ERRMSG_SIZE];
    if (tandem_allow_parse(&allow, c->api_allow, why) != TANDEM_OK) {
        return fail(errmsg, "option api_allow: %s", why);
    }
    if (tandem_allow_parse(&allow, c->raft_allow, why) != TANDEM_OK) {
        return fail(errmsg, "option raft_allow: %s", why);
    }
    if (c->metrics_address[0] != '\0' && !hostport_ok(c->metrics_address)) {
        return fail(errmsg, "option metrics_address: '%s' is not a valid host:port",
                    c->metrics_address);
    }
    return 0;
}

/* Whether path is dir or lies under it, by their text (trailing slashes ignored). */
static bool path_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* A backup directory inside raft/ or state/ would be moved aside with them by a re-seed, and
 * files there are not the state's: refused. (The start checks the resolved paths again.) */
static int validate_backup_dir(const struct tandem_config *c, char *errmsg)
{
    char dir[PATH_MAX], inner[PATH_MAX + 8];
    static const char *const inners[] = {"raft", "state"};
    if (c->data_dir[0] == '\0') {
        return 0; /* data_dir's own check says what is missing */
    }
    tandem_config_backup_dir(c, dir);
    if (path_within(c->data_dir, dir)) {
        return fail(errmsg, "option backup_dir: '%s' must not be data_dir or hold it", dir);
    }
    for (unsigned i = 0; i < sizeof inners / sizeof inners[0]; i++) {
        snprintf(inner, sizeof inner, "%s/%s", c->data_dir, inners[i]);
        if (path_within(dir, inner)) {
            return fail(errmsg, "option backup_dir: '%s' must not be inside data_dir's %s/", dir,
                        inners[i]);
        }
    }
    return 0;
}

void tandem_config_backup_dir(const struct tandem_config *c, char *out)
{
    if (c->backup_dir[0] != '\0') {
        snprintf(out, PATH_MAX, "%s", c->backup_dir);
    } else {
        snprintf(out, PATH_MAX, "%.*s/backups", PATH_MAX - 9, c->data_dir);
    }
}

uint64_t tandem_config_backup_interval_ms(const struct tandem_config *c)
{
    return c->backup_interval_s != 0 ? (uint64_t)c->backup_interval_s * 1000u
                                     : (uint64_t)c->backup_interval_minutes * 60000u;
}

static int validate_relations(const struct tandem_config *c, char *errmsg)
{
    if (validate_allow_lists(c, errmsg) != 0) {
        return -1;
    }
    if ((unsigned long long)c->election_timeout_ms <
        (unsigned long long)ELECTION_HEARTBEAT_RATIO_MIN * c->heartbeat_ms) {
        return fail(errmsg,
                    "option election_timeout_ms: %u must be at least %u x heartbeat_ms (%u)",
                    c->election_timeout_ms, ELECTION_HEARTBEAT_RATIO_MIN, c->heartbeat_ms);
    }
    if (c->trailing_log_mib < c->snapshot_log_mib) {
        return fail(errmsg, "option trailing_log_mib: %u must be at least snapshot_log_mib (%u)",
                    c->trailing_log_mib, c->snapshot_log_mib);
    }
    if (c->snapshot_trailing < c->snapshot_threshold) {
        return fail(errmsg, "option snapshot_trailing: %u must be at least snapshot_threshold (%u)",
                    c->snapshot_trailing, c->snapshot_threshold);
    }
    if (c->batch_bytes_max_kib >= c->segment_size_kib) {
        return fail(errmsg,
                    "option batch_bytes_max_kib: %u must be below segment_size_kib (%u): a batch "
                    "is one raft entry and must fit in one log segment",
                    c->batch_bytes_max_kib, c->segment_size_kib);
    }
    if (c->body_bytes_max_kib > c->batch_bytes_max_kib) {
        return fail(errmsg,
                    "option body_bytes_max_kib: %u must not exceed batch_bytes_max_kib (%u): one "
                    "request must fit in one batch",
                    c->body_bytes_max_kib, c->batch_bytes_max_kib);
    }
    return validate_backup_dir(c, errmsg);
}

/* A TLS file option names a readable regular file, or nothing when it is optional. */
static int validate_tls_file(const char *option, const char *path, bool required, char *errmsg)
{
    struct stat st;
    if (path[0] == '\0') {
        return required ? fail(errmsg,
                               "option %s is required unless insecure = true (deploy/certs.sh "
                               "makes the certificates)",
                               option)
                        : 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(errmsg, "option %s: cannot read '%s': %s", option, path, strerror(errno));
    }
    int rc = fstat(fd, &st);
    close(fd);
    if (rc != 0 || !S_ISREG(st.st_mode)) {
        return fail(errmsg, "option %s: '%s' is not a regular file", option, path);
    }
    return 0;
}

/* With TLS on (the default) the node needs its CA, certificate and key, and every URL it
 * advertises or dials must be https://. */
static int validate_tls(const struct tandem_config *c, char *errmsg)
{
    static const char https[] = "https://";
    if (c->insecure) {
        return 0;
    }
    if (validate_tls_file("tls_ca", c->tls_ca, true, errmsg) != 0 ||
        validate_tls_file("tls_cert", c->tls_cert, true, errmsg) != 0 ||
        validate_tls_file("tls_key", c->tls_key, true, errmsg) != 0 ||
        validate_tls_file("tls_crl", c->tls_crl, false, errmsg) != 0) {
        return -1;
    }
    if (strncmp(c->api_url, https, sizeof https - 1) != 0) {
        return fail(errmsg, "option api_url: '%s' must be https:// unless insecure = true",
                    c->api_url);
    }
    for (unsigned i = 0; i < c->n_members; i++) {
        if (strncmp(c->members[i].api, https, sizeof https - 1) != 0) {
            return fail(errmsg,
                        "option member: %s's url '%s' must be https:// unless insecure = true",
                        c->members[i].name, c->members[i].api);
        }
    }
    return 0;
}

int tandem_config_validate(const struct tandem_config *c, char *errmsg)
{
    for (unsigned i = 0; i < OPTIONS_COUNT; i++) {
        if (validate_option(c, &options[i], errmsg) != 0) {
            return -1;
        }
    }
    if (validate_member_list(c, errmsg) != 0 || validate_self_in_members(c, errmsg) != 0) {
        return -1;
    }
    if (validate_relations(c, errmsg) != 0) {
        return -1;
    }
    return validate_tls(c, errmsg);
}

/* ---- generated text ---------------------------------------------------------------------- */

static void option_default_text(const struct option *opt, char *out, size_t size)
{
    if (opt->default_doc != NULL) {
        snprintf(out, size, "%s", opt->default_doc);
    } else if (opt->type == OPTION_UINT) {
        snprintf(out, size, "%u", opt->default_uint);
    } else if (opt->type == OPTION_BOOL) {
        snprintf(out, size, "%s", opt->default_uint != 0 ? "true" : "false");
    } else if (opt->type == OPTION_STRING && opt->default_string != NULL) {
        snprintf(out, size, "%s", opt->default_string);
    } else {
        snprintf(out, size, "%s", "");
    }
}

static void option_range_text(const struct option *opt, char *out, size_t size)
{
    switch (opt->type) {
        case OPTION_UINT:
            snprintf(out, size, "%u..%u", opt->min, opt->max);
            return;
        case OPTION_BOOL:
            snprintf(out, size, "true, false");
            return;
        case OPTION_MEMBER:
            snprintf(out, size, "%s; up to %d", opt->value_doc, TANDEM_MEMBERS_MAX);
            return;
        case OPTION_ACTION:
            snprintf(out, size, "flag");
            return;
        case OPTION_STRING:
            break;
    }
    if (opt->check == CHECK_LABEL) {
        snprintf(out, size, "1-%zu of A-Z a-z 0-9 . _ -", opt->size - 1);
    } else if (opt->check == CHECK_URL) {
        snprintf(out, size, "http:// or https:// URL");
    } else if (opt->check == CHECK_LOG_LEVEL) {
        snprintf(out, size, "debug, info, warn, error");
    } else {
        snprintf(out, size, "%s", opt->value_doc);
    }
}

/* The value placeholder shown after a flag in --help, by type: %s is the range for integers and
 * the value's description otherwise. */
static const char *const value_formats[] = {
    [OPTION_STRING] = " <%s>",   [OPTION_UINT] = " <integer %s>",
    [OPTION_BOOL] = "[=<bool>]", [OPTION_MEMBER] = " <%s>",
    [OPTION_ACTION] = "",
};

static void option_value_text(const struct option *opt, char *out, size_t size)
{
    char range[96];
    option_range_text(opt, range, sizeof range);
    snprintf(out, size, value_formats[opt->type],
             opt->type == OPTION_UINT ? range : opt->value_doc);
}

static void print_help_option(FILE *out, const struct option *opt)
{
    char value[96], default_text[64];
    option_value_text(opt, value, sizeof value);
    option_default_text(opt, default_text, sizeof default_text);
    fprintf(out, "  --%s%s", opt->name, value);
    if ((opt->flags & OPTION_REQUIRED) != 0) {
        fprintf(out, " (required)");
    } else if (opt->type == OPTION_MEMBER) {
        fprintf(out, " (repeatable, up to %d)", TANDEM_MEMBERS_MAX);
    } else if (default_text[0] != '\0') {
        fprintf(out, " (default %s)", default_text);
    }
    fprintf(out, "\n      %s\n", opt->help);
}

void tandem_config_print_help(FILE *out)
{
    const char *group = NULL;
    fprintf(out, "usage: tandemd [--config FILE] [--option value | --option=value ...]\n"
                 "\n"
                 "Options start at their defaults, then the INI file given by --config sets them\n"
                 "(keys are option names; [section] headers only group them), then flags override\n"
                 "the file. '-' and '_' are interchangeable in flag names.\n");
    for (unsigned i = 0; i < OPTIONS_COUNT; i++) {
        if (group == NULL || strcmp(group, options[i].group) != 0) {
            group = options[i].group;
            fprintf(out, "\n%s:\n", group);
        }
        print_help_option(out, &options[i]);
    }
}

/* Markdown table cell text: a '|' would end the cell. */
static void markdown_cell(FILE *out, const char *text)
{
    fputs(" ", out);
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '|') {
            fputc('\\', out);
        }
        fputc(*p, out);
    }
    fputs(" |", out);
}

void tandem_config_print_markdown(FILE *out)
{
    char default_text[64], range[96], cell[128], description[256];
    fprintf(out, "| option | default | range | description |\n|---|---|---|---|\n");
    for (unsigned i = 0; i < OPTIONS_COUNT; i++) {
        const struct option *opt = &options[i];
        option_default_text(opt, default_text, sizeof default_text);
        option_range_text(opt, range, sizeof range);
        fprintf(out, "| `%s%s` |", (opt->flags & OPTION_CLI_ONLY) != 0 ? "--" : "", opt->name);
        if ((opt->flags & OPTION_REQUIRED) != 0) {
            snprintf(cell, sizeof cell, "required");
        } else if (default_text[0] == '\0') {
            snprintf(cell, sizeof cell, "none");
        } else {
            snprintf(cell, sizeof cell, "`%s`", default_text);
        }
        markdown_cell(out, cell);
        markdown_cell(out, range);
        snprintf(description, sizeof description, "%s%s",
                 (opt->flags & OPTION_CLI_ONLY) != 0 ? "(command line only) " : "", opt->help);
        markdown_cell(out, description);
        fputc('\n', out);
    }
}

void tandem_config_print_ini(const struct tandem_config *c, FILE *out)
{
    const char *group = NULL;
    fprintf(out, "# tandemd %s effective configuration\n", TANDEM_VERSION);
    for (unsigned i = 0; i < OPTIONS_COUNT; i++) {
        const struct option *opt = &options[i];
        const void *field = option_field_const(opt, c);
        if ((opt->flags & OPTION_CLI_ONLY) != 0) {
            continue;
        }
        if (group == NULL || strcmp(group, opt->group) != 0) {
            group = opt->group;
            fprintf(out, "\n[%s]\n", group);
        }
        if (opt->type == OPTION_STRING) {
            fprintf(out, "%s = %.*s\n", opt->name, (int)opt->size, (const char *)field);
        } else if (opt->type == OPTION_UINT) {
            fprintf(out, "%s = %u\n", opt->name, *(const unsigned *)field);
        } else if (opt->type == OPTION_BOOL) {
            fprintf(out, "%s = %s\n", opt->name, *(const bool *)field ? "true" : "false");
        }
        unsigned n_members = c->n_members < TANDEM_MEMBERS_MAX ? c->n_members : TANDEM_MEMBERS_MAX;
        for (unsigned m = 0; opt->type == OPTION_MEMBER && m < n_members; m++) {
            const struct tandem_member *member = &c->members[m];
            fprintf(out, "%s = %s,%s,%s,%s,%s\n", opt->name, member->name, member->site,
                    member->raft, member->api, tandem_role_name(member->role));
        }
    }
}
