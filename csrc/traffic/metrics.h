/* Counters recorded by the I/O thread into the shared segment, and their
 * Prometheus rendering (traffic/metrics.c). */
#ifndef BH_TRAFFIC_METRICS_H
#define BH_TRAFFIC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/context.h"
#include "traffic/shm.h"

/* Why the host refused a request (or a connection) itself, as counted in
 * bentohost_requests_rejected_total{reason}; names in metrics.c. */
enum {
  BH_REJ_429, BH_REJ_503, BH_REJ_504,
  BH_REJ_HEADER_TIMEOUT,   /* 408: --timeout-request-header */
  BH_REJ_BODY_TIMEOUT,     /* 408: --timeout-request-body / --min-body-rate */
  BH_REJ_HEADERS_COUNT,    /* 431: --max-headers */
  BH_REJ_HEADER_SIZE,      /* 431: --max-header-size (chunk extensions included) */
  BH_REJ_BODY_SIZE,        /* 413: --max-body-size */
  BH_REJ_MULTIPART,        /* 413: --max-multipart-parts / --max-multipart-header-size */
  BH_REJ_BAD_REQUEST,      /* 400: malformed HTTP */
  BH_REJ_NOT_IMPLEMENTED,  /* 501: a transfer coding other than chunked */
  BH_REJ_HTTP_VERSION,     /* 505: not HTTP/1.x */
  BH_REJ_CONNECTIONS,      /* accepting paused at --max-connections */
  BH_REJ_TLS_HANDSHAKE,    /* a TLS handshake failed: the connection was closed */
  BH_REJ_N
};

void bh_metrics_request(bh_worker_t *w, int api_index, int status, double duration_s);
void bh_metrics_rejected(bh_worker_t *w, int status);  /* 429 / 503 / 504 by C */
void bh_metrics_refused(bh_worker_t *w, int reason);   /* a BH_REJ_*; -1: nothing */
/* The reason a protocol-level refusal with this status counts under, or -1
 * (429/503/504 are counted by bh_metrics_rejected where they are answered). */
int bh_metrics_reason_of(int status);
void bh_metrics_inflight(bh_worker_t *w, int api_index, int delta);
void bh_metrics_batch(bh_worker_t *w, int api_index, uint32_t size, double queue_s);
/* Prometheus text of the totals of every worker of service `service` (0: the
 * entry); returns a malloc'd buffer. */
char *bh_metrics_render(bh_shm_t *shm, const bh_service_config_t *cfg, int service, size_t *len);
/* The same for several services of a graph at once (the entry's /metrics
 * carries them all, each with its own service_name). */
typedef struct bh_metrics_view {
  const bh_service_config_t *cfg;
  int service;
} bh_metrics_view_t;
char *bh_metrics_render_graph(bh_shm_t *shm, const bh_metrics_view_t *views, size_t nviews,
                              size_t *len);

#endif
