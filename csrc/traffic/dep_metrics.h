/* The durations of the calls a worker makes to its dependencies, recorded by
 * its I/O thread into its slot of the shared segment and rendered with the
 * other families of /metrics (traffic/dep_metrics.c). */
#ifndef BH_TRAFFIC_DEP_METRICS_H
#define BH_TRAFFIC_DEP_METRICS_H

#include "common/context.h"
#include "traffic/shm.h"

/* I/O thread: a call to dependency `dep` (its index in w->deps) at route
 * `endpoint` has its result after duration_s, whatever that result is (an HTTP
 * status, a transport error, a timeout). A dep out of range or a NULL endpoint
 * is not a call to a dependency, and is ignored. */
void bh_dep_metrics_observe(bh_worker_t *w, int dep, const char *endpoint, double duration_s);

#endif
