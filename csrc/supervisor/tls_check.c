/* TLS before any worker starts: the session-ticket keys every worker will
 * share, and the --ssl-* flags' files checked, so that a missing file, a key
 * that does not match its certificate or a wrong password is one line and
 * an exit rather than a worker that fails over and over. (Each worker makes
 * its own context later, from the same flags over its service's `ssl`
 * block: a rolling restart then loads renewed certificate files.) */
#include "supervisor/internal.h"
#include "common/log.h"
#include "net/tls.h"

#include <stdlib.h>
#include <string.h>

int bh_sup_tls_check(const bh_options_t *opts) {
  bh_tls_opts_t t;
  bh_tls_ctx_t *ctx;
  char err[512];

  if (bh_tls_init_tickets() != 0) {
    bh_log("error: no randomness for the TLS session tickets");
    return -1;
  }
  if (opts->ssl_certfile == NULL)
    return 0; /* plain HTTP, or TLS from the config file's ssl block (checked by the worker) */
  memset(&t, 0, sizeof(t));
  t.certfile = opts->ssl_certfile;
  t.keyfile = opts->ssl_keyfile;
  t.password = getenv("BENTOHOST_SSL_KEYFILE_PASSWORD");
  t.ca_certs = opts->ssl_ca_certs;
  t.ciphers = opts->ssl_ciphers;
  t.cert_reqs = opts->ssl_cert_reqs >= 0 ? opts->ssl_cert_reqs : 0;
  t.version = opts->ssl_version >= 0 ? opts->ssl_version : 0;
  if (bh_tls_ctx_new(&ctx, &t, err, sizeof(err)) != 0) {
    bh_log("error: %s", err);
    return -1;
  }
  bh_tls_ctx_free(ctx);
  return 0;
}
