/* Counters recorded by the I/O thread into the shared segment, and their
 * Prometheus rendering (traffic/metrics.c). */
#ifndef BH_TRAFFIC_METRICS_H
#define BH_TRAFFIC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/context.h"
#include "traffic/shm.h"

void bh_metrics_request(bh_worker_t *w, int api_index, int status, double duration_s);
void bh_metrics_rejected(bh_worker_t *w, int status);  /* 429 / 503 / 504 by C */
void bh_metrics_inflight(bh_worker_t *w, int api_index, int delta);
void bh_metrics_batch(bh_worker_t *w, int api_index, uint32_t size, double queue_s);
/* Prometheus text of the totals of every worker; returns a malloc'd buffer. */
char *bh_metrics_render(bh_shm_t *shm, const bh_service_config_t *cfg, size_t *len);

#endif
