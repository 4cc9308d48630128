/* Admission on the I/O thread (traffic/limiter.c): the exact global
 * traffic.max_concurrency over all workers, and traffic.concurrency's share of
 * connections per worker. */
#ifndef BH_TRAFFIC_LIMITER_H
#define BH_TRAFFIC_LIMITER_H

#include "common/context.h"

/* 0 admitted, -EBUSY over the limit. Every admitted request is released
 * exactly once, when its response ends. */
int bh_limiter_acquire(bh_worker_t *w);
void bh_limiter_release(bh_worker_t *w);
/* Whether an acquire now would fail (a read only: nothing is taken). */
int bh_limiter_full(bh_worker_t *w);
/* Whether the worker should accept new connections (traffic.concurrency). */
int bh_limiter_may_accept(bh_worker_t *w);

#endif
