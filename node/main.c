/* tandemd: one node of a tandem cluster — arguments, logging and the process (exit code,
 * re-execution after a forced failover or re-seed); the node itself is node/node.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "consensus/aio_destroy.h"
#include "node/log.h"
#include "node/node.h"
#include "node/tls_identity.h"
#include "storage/error.h"

int main(int argc, char **argv)
{
    static struct tandem_config config;
    static struct tandem_node node;
    char errmsg[TANDEM_ERRMSG_SIZE];
    /* Neither libuv nor raft_uv ignores SIGPIPE: a peer closing a socket would kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* After a re-execution (/proc/self/exe, below) the kernel names the process "exe": ps, top
     * and scripts that look for tandemd by name should still find it. */
    (void)prctl(PR_SET_NAME, "tandemd", 0, 0, 0);
    if (argc == 3 && strcmp(argv[1], "--audit-verify") == 0) {
        return tandem_audit_verify_dir(argv[2], stdout, stderr); /* offline: node/audit_queue.h */
    }
    int rv = tandem_config_load(&config, argc, argv, stdout, errmsg);
    if (rv == 1) {
        return 0;
    }
    if (rv != 0) {
        fprintf(stderr, "tandemd: %s\n", errmsg);
        return 2;
    }
    /* The TLS files are part of the config: a missing or mismatched one is one line and exit 2. */
    struct tandem_tls_ctx *tls = NULL;
    if (tandem_tls_identity_load(&config, &tls, errmsg) != TANDEM_OK) {
        fprintf(stderr, "tandemd: %s\n", errmsg);
        return 2;
    }
    node.tls = tls;
    tandem_log_setup(config.name, config.log_level);
    uv_loop_t *loop = uv_default_loop();
    tandem_log(TANDEM_LOG_INFO, "tandemd %s starting: site %s, cluster %s, data %s", TANDEM_VERSION,
               config.site, config.cluster_id, config.data_dir);
    rv = 1;
    /* raft_uv's AIO contexts are destroyed off the loop (consensus/aio_destroy.h); without the
     * thread they are destroyed where raft_uv does it, as before. */
    if (tandem_aio_destroyer_start(errmsg) != 0) {
        tandem_log(TANDEM_LOG_WARN, "%s: raft log segments close on the loop", errmsg);
    }
    if (tandem_node_start(&node, loop, &config) == 0) {
        uv_run(loop, UV_RUN_DEFAULT);
        rv = node.exit_code;
    }
    uv_loop_close(loop);
    tandem_aio_destroyer_stop();
    if (tls != NULL) {
        tandem_tls_ctx_free(tls); /* every connection has closed with the loop */
    }
    if (node.reexec) {
        /* Forced failover or re-seed: the markers in the data directory say what the new
         * process does; the same PID keeps supervisors and pid files right. */
        fflush(NULL);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "tandemd: re-exec failed: %s\n", strerror(errno));
        return 1;
    }
    return rv;
}
