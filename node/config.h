/* tandemd's configuration: one option table drives the INI file, the flags, --help and the docs. */
#ifndef TANDEM_NODE_CONFIG_H
#define TANDEM_NODE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "consensus/member.h"
#include "storage/error.h"

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "0.1.0"
#endif

#define TANDEM_MEMBERS_MAX           16   /* initial members accepted from the config */
#define TANDEM_LOG_LEVEL_LEN_MAX     7    /* "debug", "info", "warn", "error" */
#define TANDEM_EVENT_COMMAND_LEN_MAX 1023 /* bcp_event_command: the program and its arguments */
#define TANDEM_ALLOW_LEN_MAX         1023 /* api_allow, raft_allow: comma-separated CIDR lists */

struct tandem_config {
    char config_path[PATH_MAX]; /* "" when no --config was given */
    /* identity */
    char name[TANDEM_NAME_LEN_MAX + 1];
    char site[TANDEM_SITE_LEN_MAX + 1];
    char cluster_id[TANDEM_CLUSTER_ID_LEN_MAX + 1];
    char data_dir[PATH_MAX];
    char raft_address[TANDEM_HOSTPORT_LEN_MAX + 1];
    char api_address[TANDEM_HOSTPORT_LEN_MAX + 1];
    char api_url[TANDEM_URL_LEN_MAX + 1]; /* tandem_config_load fills "http://" api_address */
    bool join; /* start empty and wait for `tandemctl member add` instead of bootstrapping */
    struct tandem_member members[TANDEM_MEMBERS_MAX]; /* initial members, bootstrap only */
    unsigned n_members;
    /* raft */
    unsigned heartbeat_ms;
    unsigned election_timeout_ms; /* at least 2 * heartbeat_ms */
    unsigned snapshot_threshold;
    unsigned snapshot_trailing; /* at least snapshot_threshold */
    unsigned snapshot_log_mib;  /* log since the last snapshot that triggers one (threshold too) */
    unsigned trailing_log_mib;  /* log kept behind a snapshot (snapshot_trailing caps it) */
    unsigned pool_nice;         /* storage/background.h */
    unsigned snapshot_inline_mib; /* a larger state is snapshotted to a file (snapshot_file.h) */
    unsigned snapshot_fetch_timeout_s; /* an install's tries to fetch its file */
    unsigned max_inflight_entries;
    unsigned install_snapshot_timeout_ms;
    unsigned segment_size_kib;
    /* state machine / batching */
    unsigned map_size_mib;
    unsigned commit_interval_ms; /* grouped LMDB commit cadence */
    unsigned batch_commands_max;
    unsigned batch_bytes_max_kib; /* below segment_size_kib: one entry fits one segment */
    unsigned pending_requests_max;
    /* API */
    unsigned body_bytes_max_kib; /* at most batch_bytes_max_kib */
    unsigned connections_max;
    unsigned header_timeout_ms;
    unsigned forward_connections;
    unsigned forward_timeout_ms;
    char metrics_address[TANDEM_HOSTPORT_LEN_MAX + 1]; /* "" = /metrics on the API listener only */
    char api_allow[TANDEM_ALLOW_LEN_MAX + 1];          /* CIDR list; "" = every source */
    unsigned connections_per_source_max;               /* open API connections from one address */
    unsigned rate_limit_rps;   /* requests per second per credential; 0 = off */
    unsigned rate_limit_burst; /* requests a credential may send at once */
    /* channel security (consensus/tls.h) */
    bool insecure; /* no TLS and no authentication: benchmarks only, logged at warn */
    char tls_ca[PATH_MAX];
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];
    char tls_crl[PATH_MAX];                    /* "" = no CRL */
    char raft_allow[TANDEM_ALLOW_LEN_MAX + 1]; /* CIDR list; "" = every source */
    /* domain */
    unsigned retention_days; /* trace events older than this may be purged */
    /* issue 13, personal data (I4) */
    char key_file[PATH_MAX];               /* "" = personal data refused */
    unsigned personal_data_retention_days; /* after done/cancelled, then erased */
    unsigned erase_interval_s;             /* the leader's automatic erasure pass, every so often */
    /* users (replication/identity/users.h): the leader puts these into its commands */
    unsigned password_max_age_days; /* 0: every password is expired at once */
    unsigned password_history;      /* hashes a new password may not repeat, current included */
    unsigned lockout_failures;      /* consecutive failed logins that lock */
    unsigned lockout_minutes;
    unsigned token_ttl_minutes;
    /* logging */
    char log_level[TANDEM_LOG_LEVEL_LEN_MAX + 1]; /* debug|info|warn|error */
    /* sites and BCP (consensus/site_controller.h) */
    unsigned site_down_after_ms; /* no answer from any node of a site this long: site is down */
    bool auto_bcp;               /* the leader invokes BCP for a down site by itself */
    char preferred_site[TANDEM_SITE_LEN_MAX + 1]; /* seeds the site table's preference; "" none */
    char mode[8]; /* sync | async (voters at the primary, standbys at the DR site) */
    /* notifications (node/bcp/events.h) */
    char bcp_event_command[TANDEM_EVENT_COMMAND_LEN_MAX + 1]; /* "" none */
    unsigned bcp_event_command_timeout_ms;
    unsigned bcp_events_kept;       /* the ring /v1/events resumes from */
    unsigned bcp_event_streams_max; /* concurrent GET /v1/events */
    /* audit */
    unsigned audit_retention_days; /* audit records younger than this are never purged */
    /* backups (issue 14, node/backup.h); then the schedule (node/backup_state.h) */
    char backup_dir[PATH_MAX];         /* "" = <data_dir>/backups (tandem_config_load derives it) */
    char backup_key_file[PATH_MAX];    /* "" = backups are written plain */
    unsigned backup_interval_minutes;  /* 0 = no scheduled backups */
    unsigned backup_interval_s;        /* when not 0, overrides the minutes (tests, drills) */
    unsigned backup_keep;              /* newest backups kept per site */
    unsigned backup_keep_days;         /* older ones are retired (the newest always stays) */
    unsigned backup_verify_interval_s; /* level 2 of each site's newest backup; 0 = never */
    unsigned backup_check_interval_s;  /* holders look at their copies this often */
    unsigned backup_attempts;          /* tries of one scheduled backup before it is raised */
    unsigned backup_retry_s;           /* first wait between tries, doubled each time */
    unsigned backup_timeout_s;         /* one take-and-ship, at most */
};

/* The effective backup directory into out (PATH_MAX bytes): backup_dir, or <data_dir>/backups. */
void tandem_config_backup_dir(const struct tandem_config *c, char *out);
/* The effective interval between scheduled backups of a site in ms; 0 when off. */
uint64_t tandem_config_backup_interval_ms(const struct tandem_config *c);

void tandem_config_defaults(struct tandem_config *c);

/* Fills c from defaults, then the INI file named by --config (if any), then the other flags
 * (which override the file; --member flags replace the file's members), derives api_url and
 * validates. Returns 0 when c is ready to run, 1 when --help, --version or --print-config was
 * handled (its text written to out; the caller exits 0), or -1 with a one-line reason in errmsg
 * (TANDEM_ERRMSG_SIZE bytes). Prints nothing else. */
int tandem_config_load(struct tandem_config *c, int argc, char **argv, FILE *out, char *errmsg);

/* Checks required options, formats, ranges, member lists and cross-option rules. Returns 0, or
 * -1 with a one-line reason in errmsg (TANDEM_ERRMSG_SIZE bytes). */
int tandem_config_validate(const struct tandem_config *c, char *errmsg);

/* Usage plus every option with its type, default, range and help, from the option table. */
void tandem_config_print_help(FILE *out);

/* The README's configuration reference, one Markdown table row per option. */
void tandem_config_print_markdown(FILE *out);

/* The effective configuration as an INI file that tandem_config_load reads back unchanged. */
void tandem_config_print_ini(const struct tandem_config *c, FILE *out);

/* The option table's size and names, in table order (for tests and tooling). */
unsigned tandem_config_option_count(void);
const char *tandem_config_option_name(unsigned index); /* NULL when index is out of range */

#endif
