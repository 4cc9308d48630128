/* Parsing of the host's options: machine-written by the launcher, but every
 * error is still reported as one readable line. */
#include "common/options.h"
#include "common/log.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || v < 0)
    return -EINVAL;
  *out = v;
  return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || s[0] == '-')
    return -EINVAL;
  *out = (uint64_t)v;
  return 0;
}

enum {
  OPT_TARGET = 1000, OPT_PYTHON, OPT_PREFIX, OPT_HOST, OPT_PORT, OPT_BACKLOG,
  OPT_WORKERS, OPT_GRACEFUL, OPT_KEEPALIVE, OPT_MAX_BODY, OPT_MAX_HEADER, OPT_WATCHDOG,
  OPT_HEADER_TIMEOUT, OPT_BODY_TIMEOUT, OPT_MIN_BODY_RATE, OPT_MAX_CONNECTIONS, OPT_MAX_HEADERS,
  OPT_MAX_CONN_REQUESTS, OPT_MAX_PARTS, OPT_MAX_PART_HEADERS, OPT_MAX_REQUESTS, OPT_MAX_RSS,
  OPT_NO_UDS,
  OPT_SSL_CERTFILE, OPT_SSL_KEYFILE, OPT_SSL_CA_CERTS, OPT_SSL_CIPHERS, OPT_SSL_CERT_REQS,
  OPT_SSL_VERSION,
  OPT_SHUTDOWN_DELAY, OPT_RELOAD, OPT_RELOAD_DIR,
  OPT_ACCESS_LOG, OPT_NO_ACCESS_LOG, OPT_LOG_FORMAT,
};

void bh_options_defaults(bh_options_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->host = "0.0.0.0";
  opts->port = 3000;
  opts->backlog = 2048;
  opts->graceful_timeout_s = 30;
  opts->keepalive_timeout_s = 5;
  opts->max_body_size = 100ull << 20;
  opts->max_header_size = 64u << 10;
  opts->watchdog_factor = 2.0;
  opts->header_timeout_s = 30;
  opts->body_timeout_s = 30;
  opts->min_body_rate = 1024;
  opts->max_connections = 10000;
  opts->max_headers = 100;
  opts->max_conn_requests = 1000;
  opts->max_parts = 1000;
  opts->max_part_headers = 1u << 20;
  opts->ssl_cert_reqs = -1;
  opts->ssl_version = -1;
  opts->access_log = 1;
}

int bh_options_parse(bh_options_t *opts, int argc, char **argv) {
  static const struct option longopts[] = {
      {"target", required_argument, NULL, OPT_TARGET},
      {"python", required_argument, NULL, OPT_PYTHON},
      {"prefix", required_argument, NULL, OPT_PREFIX},
      {"host", required_argument, NULL, OPT_HOST},
      {"port", required_argument, NULL, OPT_PORT},
      {"backlog", required_argument, NULL, OPT_BACKLOG},
      {"workers", required_argument, NULL, OPT_WORKERS},
      {"timeout-graceful-shutdown", required_argument, NULL, OPT_GRACEFUL},
      {"timeout-keep-alive", required_argument, NULL, OPT_KEEPALIVE},
      {"max-body-size", required_argument, NULL, OPT_MAX_BODY},
      {"max-header-size", required_argument, NULL, OPT_MAX_HEADER},
      {"watchdog-factor", required_argument, NULL, OPT_WATCHDOG},
      {"timeout-request-header", required_argument, NULL, OPT_HEADER_TIMEOUT},
      {"timeout-request-body", required_argument, NULL, OPT_BODY_TIMEOUT},
      {"min-body-rate", required_argument, NULL, OPT_MIN_BODY_RATE},
      {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
      {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
      {"max-requests-per-connection", required_argument, NULL, OPT_MAX_CONN_REQUESTS},
      {"max-multipart-parts", required_argument, NULL, OPT_MAX_PARTS},
      {"max-multipart-header-size", required_argument, NULL, OPT_MAX_PART_HEADERS},
      {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
      {"max-worker-rss", required_argument, NULL, OPT_MAX_RSS},
      {"no-uds", no_argument, NULL, OPT_NO_UDS},
      {"ssl-certfile", required_argument, NULL, OPT_SSL_CERTFILE},
      {"ssl-keyfile", required_argument, NULL, OPT_SSL_KEYFILE},
      {"ssl-ca-certs", required_argument, NULL, OPT_SSL_CA_CERTS},
      {"ssl-ciphers", required_argument, NULL, OPT_SSL_CIPHERS},
      {"ssl-cert-reqs", required_argument, NULL, OPT_SSL_CERT_REQS},
      {"ssl-version", required_argument, NULL, OPT_SSL_VERSION},
      {"shutdown-delay", required_argument, NULL, OPT_SHUTDOWN_DELAY},
      {"reload", no_argument, NULL, OPT_RELOAD},
      {"reload-dir", required_argument, NULL, OPT_RELOAD_DIR},
      {"access-log", no_argument, NULL, OPT_ACCESS_LOG},
      {"no-access-log", no_argument, NULL, OPT_NO_ACCESS_LOG},
      {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
      {NULL, 0, NULL, 0},
  };
  bh_options_defaults(opts);

  int c;
  uint64_t u = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    const char *name = "";
    int bad = 0;
    switch (c) {
    case OPT_TARGET: opts->target = optarg; break;
    case OPT_PYTHON: opts->python = optarg; break;
    case OPT_PREFIX: opts->prefix = optarg; break;
    case OPT_HOST: opts->host = optarg; break;
    case OPT_PORT:
      name = "--port";
      bad = parse_u64(optarg, &u) || u > 65535;
      opts->port = (int)u;
      break;
    case OPT_BACKLOG:
      name = "--backlog";
      bad = parse_u64(optarg, &u) || u < 1 || u > 1000000;
      opts->backlog = (int)u;
      break;
    case OPT_WORKERS:
      name = "--workers";
      bad = parse_u64(optarg, &u) || u > 4096;
      opts->workers_override = (int)u;
      break;
    case OPT_GRACEFUL:
      name = "--timeout-graceful-shutdown";
      bad = parse_double(optarg, &opts->graceful_timeout_s) != 0;
      break;
    case OPT_KEEPALIVE:
      name = "--timeout-keep-alive";
      bad = parse_double(optarg, &opts->keepalive_timeout_s) != 0;
      break;
    case OPT_MAX_BODY:
      name = "--max-body-size";
      bad = parse_u64(optarg, &opts->max_body_size) != 0;
      break;
    case OPT_MAX_HEADER:
      name = "--max-header-size";
      bad = parse_u64(optarg, &u) || u < 256;
      opts->max_header_size = (size_t)u;
      break;
    case OPT_WATCHDOG:
      name = "--watchdog-factor";
      bad = parse_double(optarg, &opts->watchdog_factor) != 0;
      break;
    case OPT_HEADER_TIMEOUT:
      name = "--timeout-request-header";
      bad = parse_double(optarg, &opts->header_timeout_s) != 0;
      break;
    case OPT_BODY_TIMEOUT:
      name = "--timeout-request-body";
      bad = parse_double(optarg, &opts->body_timeout_s) != 0;
      break;
    case OPT_MIN_BODY_RATE:
      name = "--min-body-rate";
      bad = parse_u64(optarg, &opts->min_body_rate) != 0;
      break;
    case OPT_MAX_CONNECTIONS:
      name = "--max-connections";
      bad = parse_u64(optarg, &u) || u < 1 || u > 10000000;
      opts->max_connections = (int)u;
      break;
    case OPT_MAX_HEADERS:
      name = "--max-headers";
      bad = parse_u64(optarg, &u) || u < 1 || u > 100000;
      opts->max_headers = (int)u;
      break;
    case OPT_MAX_CONN_REQUESTS:
      name = "--max-requests-per-connection";
      bad = parse_u64(optarg, &opts->max_conn_requests) != 0;
      break;
    case OPT_MAX_PARTS:
      name = "--max-multipart-parts";
      bad = parse_u64(optarg, &u) || u < 1 || u > 10000000;
      opts->max_parts = (int)u;
      break;
    case OPT_MAX_PART_HEADERS:
      name = "--max-multipart-header-size";
      bad = parse_u64(optarg, &opts->max_part_headers) != 0;
      break;
    case OPT_MAX_REQUESTS:
      name = "--max-requests";
      bad = parse_u64(optarg, &opts->max_requests) != 0;
      break;
    case OPT_MAX_RSS:
      name = "--max-worker-rss";
      bad = parse_u64(optarg, &opts->max_worker_rss) != 0;
      break;
    case OPT_NO_UDS: opts->no_uds = 1; break;
    case OPT_SSL_CERTFILE: opts->ssl_certfile = optarg; break;
    case OPT_SSL_KEYFILE: opts->ssl_keyfile = optarg; break;
    case OPT_SSL_CA_CERTS: opts->ssl_ca_certs = optarg; break;
    case OPT_SSL_CIPHERS: opts->ssl_ciphers = optarg; break;
    case OPT_SSL_CERT_REQS:
      name = "--ssl-cert-reqs";
      bad = parse_u64(optarg, &u) || u > 2;
      opts->ssl_cert_reqs = (int)u;
      break;
    case OPT_SSL_VERSION:
      name = "--ssl-version";
      bad = parse_u64(optarg, &u) || u > 1000;
      opts->ssl_version = (int)u;
      break;
    case OPT_SHUTDOWN_DELAY:
      name = "--shutdown-delay";
      bad = parse_double(optarg, &opts->shutdown_delay_s) != 0;
      break;
    case OPT_RELOAD: opts->reload = 1; break;
    case OPT_RELOAD_DIR:
      name = "--reload-dir";
      bad = opts->nreload_dirs >= BH_MAX_RELOAD_DIRS || *optarg == '\0';
      if (!bad)
        opts->reload_dirs[opts->nreload_dirs++] = optarg;
      break;
    case OPT_ACCESS_LOG: opts->access_log = 1; break;
    case OPT_NO_ACCESS_LOG: opts->access_log = 0; break;
    case OPT_LOG_FORMAT:
      name = "--log-format";
      bad = strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0;
      opts->log_json = strcmp(optarg, "json") == 0;
      break;
    default:
      return -EINVAL;
    }
    if (bad) {
      bh_log("error: invalid value for %s: '%s'", name, optarg);
      return -EINVAL;
    }
  }
  if (opts->target == NULL || opts->python == NULL) {
    bh_log("error: --target and --python are required");
    return -EINVAL;
  }
  return 0;
}
