/* One thread waiting for one call's response; see waiter.h for who owns what. */
#include "common/waiter.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

bh_waiter_t *bh_waiter_new(bh_req_t *carrier) {
  bh_waiter_t *w = calloc(1, sizeof(*w));
  pthread_condattr_t attr;

  if (w == NULL)
    return NULL;
  pthread_mutex_init(&w->lock, NULL);
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines immune to clock steps */
  pthread_cond_init(&w->cond, &attr);
  pthread_condattr_destroy(&attr);
  w->refs = 2;
  w->carrier = carrier;
  carrier->waiter = w;
  return w;
}

/* Called with w->lock held; unlocks it, and frees w (and the carrier) when
 * this was the last share. */
static void drop(bh_waiter_t *w) {
  int last = --w->refs == 0;

  pthread_mutex_unlock(&w->lock);
  if (!last)
    return;
  bh_req_free(w->carrier);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

int bh_waiter_wait(bh_waiter_t *w, uint64_t timeout_ms) {
  struct timespec until;
  int rc = 0;

  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += (time_t)(timeout_ms / 1000);
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&w->lock);
  while (!w->done && rc != ETIMEDOUT) /* each turn waits once; spurious wake-ups loop */
    rc = timeout_ms > 0 ? pthread_cond_timedwait(&w->cond, &w->lock, &until)
                        : pthread_cond_wait(&w->cond, &w->lock);
  rc = w->done ? 0 : -ETIMEDOUT;
  pthread_mutex_unlock(&w->lock);
  return rc;
}

void bh_waiter_release(bh_waiter_t *w) {
  pthread_mutex_lock(&w->lock);
  drop(w);
}

void bh_waiter_complete(bh_waiter_t *w) {
  pthread_mutex_lock(&w->lock);
  w->done = 1;
  pthread_cond_signal(&w->cond);
  drop(w);
}
