/* The host's command-line options (machine-written by bentohost/cli.py). Read
 * by every layer, written only by bh_options_parse() before anything starts. */
#ifndef BH_COMMON_OPTIONS_H
#define BH_COMMON_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#define BH_MAX_RELOAD_DIRS 16

typedef struct bh_options {
  const char *target;        /* service target as given on the command line */
  const char *python;        /* sys.executable of the launcher (not resolved) */
  const char *prefix;        /* sys.prefix of the launcher, checked in workers */
  const char *host;          /* default "0.0.0.0" */
  int port;                  /* default 3000 */
  int backlog;               /* default 2048 */
  int workers_override;      /* --workers; 0 means "as the service says" */
  double graceful_timeout_s; /* --timeout-graceful-shutdown, default 30 */
  double keepalive_timeout_s;/* --timeout-keep-alive, default 5 */
  uint64_t max_body_size;    /* --max-body-size, default 100 MiB */
  size_t max_header_size;    /* --max-header-size, default 64 KiB */
  double watchdog_factor;    /* --watchdog-factor: kill a worker stalled this many
                                times traffic.timeout; 0 disables; default 2 */

  /* Limits against hostile clients (each refusal counted by reason in /metrics). */
  double header_timeout_s;   /* --timeout-request-header: head deadline, default 30 */
  double body_timeout_s;     /* --timeout-request-body: body deadline, default 30 ... */
  uint64_t min_body_rate;    /* --min-body-rate: ... plus 1 s per this many bytes, default 1024 */
  int max_connections;       /* --max-connections per worker, default 10000 */
  int max_headers;           /* --max-headers per request, default 100 */
  uint64_t max_conn_requests;/* --max-requests-per-connection, default 1000; 0 = unlimited */
  int max_parts;             /* --max-multipart-parts, default 1000 */
  uint64_t max_part_headers; /* --max-multipart-header-size, default 1 MiB */

  /* Recycling, one worker at a time (0 = never). */
  uint64_t max_requests;     /* --max-requests per worker */
  uint64_t max_worker_rss;   /* --max-worker-rss, bytes */

  int no_uds;                /* --no-uds (BENTOML_NO_UDS): dependency pools on 127.0.0.1 ports */

  /* TLS on the entry's port (net/tls.h), BentoML's --ssl-* flags; the key's
   * password comes in the environment (BENTOHOST_SSL_KEYFILE_PASSWORD), never
   * on a command line that `ps` shows. certfile NULL: from the config file's
   * ssl block, if any (the worker reads it), else plain HTTP. */
  const char *ssl_certfile, *ssl_keyfile, *ssl_ca_certs, *ssl_ciphers;
  int ssl_cert_reqs;         /* -1: unset (the config file's, else 0) */
  int ssl_version;           /* -1: unset (the config file's, else 17) */
  /* Restarts and shutdown (supervisor/restart.c, reload.c). */
  double shutdown_delay_s;   /* --shutdown-delay: after SIGTERM, serve this long with /readyz 503 */
  int reload;                /* --reload: a rolling restart when a watched file changes */
  const char *reload_dirs[BH_MAX_RELOAD_DIRS]; /* --reload-dir (the launcher adds the service's) */
  int nreload_dirs;
  /* Logs (common/log.c, server/access_log.c). */
  int access_log;            /* --access-log / --no-access-log: one line per request, default on */
  int log_json;              /* --log-format json: JSON lines instead of text */
} bh_options_t;

/* Every option at its default (what the launcher passes when not told otherwise). */
void bh_options_defaults(bh_options_t *opts);

/* Fills opts from argv (argv[0] is the subcommand); 0 or -EINVAL after
 * logging the reason. The strings point into argv. */
int bh_options_parse(bh_options_t *opts, int argc, char **argv);

#endif
