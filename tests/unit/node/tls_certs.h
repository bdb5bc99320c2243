/* Test certificates for the node's TLS unit tests, made with the openssl CLI in a temporary
 * directory the way deploy/certs.sh makes them: a cluster CA (ECDSA P-256), NODE certificates
 * (EKU serverAuth+clientAuth, SAN DNS:<name>,IP:127.0.0.1), a USER certificate (clientAuth), a
 * node certificate expiring in 10 days, and a second CA with a node certificate of its own. */
#ifndef TANDEM_TESTS_UNIT_NODE_TLS_CERTS_H
#define TANDEM_TESTS_UNIT_NODE_TLS_CERTS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/tls.h"
#include "storage/error.h"

#define TLS_CERTS_DIR_MAX 64

/* $1: the directory. Files: ca.pem otherca.pem both.pem (the two CAs), and <file>.pem/.key for
 * east-1 west-1 (nodes), alice (user), soon (node east-1, 10 days), foreign (node east-1 of
 * otherca). */
static const char tls_certs_script[] =
    "set -e; cd \"$1\"\n"
    "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key "
    "-out $1.pem -subj /CN=$1 -days 800 -addext basicConstraints=critical,CA:TRUE -addext "
    "keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }\n"
    "leaf() {\n"
    "  printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\n' > $5.ext\n"
    "  if [ $3 = node ]; then printf 'extendedKeyUsage=serverAuth,clientAuth\\n"
    "subjectAltName=DNS:%s,IP:127.0.0.1\\n' $2 >> $5.ext;\n"
    "  else printf 'extendedKeyUsage=clientAuth\\n' >> $5.ext; fi\n"
    "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $5.key -out "
    "$5.csr -subj /CN=$2 2>/dev/null\n"
    "  openssl x509 -req -in $5.csr -CA $1.pem -CAkey $1.key -CAcreateserial -days $4 -extfile "
    "$5.ext -out $5.pem 2>/dev/null\n"
    "  rm -f $5.csr $5.ext\n"
    "}\n"
    "ca ca; ca otherca\n"
    "leaf ca east-1 node 400 east-1; leaf ca west-1 node 400 west-1\n"
    "leaf ca alice user 400 alice; leaf ca east-1 node 10 soon\n"
    "leaf otherca east-1 node 400 foreign\n"
    "cat ca.pem otherca.pem > both.pem\n";

/* Makes the certificates in a new directory (its name in dir). */
static inline void tls_certs_make(char dir[TLS_CERTS_DIR_MAX])
{
    char command[sizeof tls_certs_script + 2 * TLS_CERTS_DIR_MAX];
    snprintf(dir, TLS_CERTS_DIR_MAX, "/tmp/tandem-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    FILE *script = NULL;
    snprintf(command, sizeof command, "%s/make.sh", dir);
    script = fopen(command, "w");
    assert_non_null(script);
    assert_int_equal(fputs(tls_certs_script, script) >= 0, 1);
    assert_int_equal(fclose(script), 0);
    snprintf(command, sizeof command, "sh %s/make.sh %s", dir, dir);
    assert_int_equal(system(command), 0);
}

static inline void tls_certs_remove(const char *dir)
{
    char command[2 * TLS_CERTS_DIR_MAX];
    assert_true(strncmp(dir, "/tmp/tandem-tls-", 16) == 0); /* never anything else */
    snprintf(command, sizeof command, "rm -rf %s", dir);
    assert_int_equal(system(command), 0);
}

/* A context with dir/<ca>.pem as the CA and dir/<who>.pem/.key as the identity. */
static inline struct tandem_tls_ctx *tls_certs_ctx(const char *dir, const char *ca, const char *who)
{
    char ca_path[256], cert[256], key[256], errmsg[TANDEM_ERRMSG_SIZE];
    struct tandem_tls_ctx *ctx = NULL;
    snprintf(ca_path, sizeof ca_path, "%s/%s.pem", dir, ca);
    snprintf(cert, sizeof cert, "%s/%s.pem", dir, who);
    snprintf(key, sizeof key, "%s/%s.key", dir, who);
    struct tandem_tls_files files = {.ca = ca_path, .cert = cert, .key = key, .crl = NULL};
    int rv = tandem_tls_ctx_new(&files, &ctx, errmsg);
    if (rv != TANDEM_OK) {
        fail_msg("tls ctx %s/%s: %s", ca, who, errmsg);
    }
    return ctx;
}

#endif
