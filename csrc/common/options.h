/* The host's command-line options (machine-written by bentohost/cli.py). Read
 * by every layer, written only by bh_options_parse() before anything starts. */
#ifndef BH_COMMON_OPTIONS_H
#define BH_COMMON_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

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
} bh_options_t;

/* Fills opts from argv (argv[0] is the subcommand); 0 or -EINVAL after
 * logging the reason. The strings point into argv. */
int bh_options_parse(bh_options_t *opts, int argc, char **argv);

#endif
