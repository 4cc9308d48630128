/* A thread that waits for one outbound call's response, woken straight by the
 * I/O thread that received it (common/waiter.c). A sync API's call to a
 * dependency blocks its pool thread anyway: handing the response to that
 * thread directly, rather than through the ring to the worker's event loop
 * and on to the thread, saves a wake-up and a hand-over of the GIL per call.
 *
 * Two owners, each dropping its share once: the waiting thread (after the
 * response, or when it gives up) and the I/O thread (once it has a result
 * for the call). Whoever drops last frees the waiter and the carrier. */
#ifndef BH_COMMON_WAITER_H
#define BH_COMMON_WAITER_H

#include <pthread.h>
#include <stdint.h>

#include "common/request.h"

typedef struct bh_waiter {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;        /* the carrier holds the result */
  int refs;        /* under lock */
  bh_req_t *carrier;
} bh_waiter_t;

/* A waiter for carrier (carrier->waiter is set); NULL when out of memory. */
bh_waiter_t *bh_waiter_new(bh_req_t *carrier);

/* The waiting thread: 0 once the result is in the carrier, -ETIMEDOUT after
 * timeout_ms (0: no limit). The caller must not hold the GIL. */
int bh_waiter_wait(bh_waiter_t *w, uint64_t timeout_ms);

/* The waiting thread is done with the carrier (read it, or gave up). */
void bh_waiter_release(bh_waiter_t *w);

/* The I/O thread: the result is in the carrier; wakes the waiting thread and
 * drops the I/O thread's share. */
void bh_waiter_complete(bh_waiter_t *w);

#endif
