/* Admission on the I/O thread: traffic.max_concurrency, exact across every
 * worker, and traffic.concurrency, the per-worker share used to stop accepting.
 *
 * BentoML gives each worker ceil(max_concurrency / workers) and never looks
 * across workers, so a busy worker 429s while its neighbours idle. Here one
 * global counter in the shared segment is the truth: a CAS loop admits only
 * while it is below the limit, so no interleaving of workers ever exceeds it. */
#include "traffic/internal.h"

#include <errno.h>

int bh_limiter_acquire(bh_worker_t *w) {
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  bh_service_block_t *shm = bh_shm_service(w->shm, w->service);
  if (s == NULL || shm == NULL)
    return 0; /* no segment (tests, tools): nothing to enforce */
  int64_t limit = w->config.max_concurrency;
  if (limit > 0) {
    int64_t cur = atomic_load(&shm->inflight);
    do {
      if (cur >= limit)
        return -EBUSY;
    } while (!atomic_compare_exchange_weak(&shm->inflight, &cur, cur + 1));
  } else {
    atomic_fetch_add(&shm->inflight, 1); /* unlimited, still counted */
  }
  /* Global first, then the slot: if the worker is killed in between, the
   * supervisor gives back one too few, which costs one slot of capacity but
   * can never let the global count exceed the limit. */
  atomic_fetch_add(&s->inflight, 1);
  return 0;
}

int bh_limiter_full(bh_worker_t *w) {
  int64_t limit = w->config.max_concurrency;
  bh_service_block_t *sb = bh_shm_service(w->shm, w->service);
  if (sb == NULL || limit <= 0)
    return 0;
  return atomic_load_explicit(&sb->inflight, memory_order_relaxed) >= limit;
}

void bh_limiter_release(bh_worker_t *w) {
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  bh_service_block_t *shm = bh_shm_service(w->shm, w->service);
  if (s == NULL || shm == NULL)
    return;
  /* Slot first, then global, for the same reason as in acquire. */
  if (atomic_fetch_sub(&s->inflight, 1) <= 0) {
    atomic_fetch_add(&s->inflight, 1); /* an unbalanced release: ignore it */
    return;
  }
  atomic_fetch_sub(&shm->inflight, 1);
}

int bh_limiter_may_accept(bh_worker_t *w) {
  int64_t c = w->config.concurrency;
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  bh_service_block_t *sb = bh_shm_service(w->shm, w->service);
  if (c <= 0 || s == NULL || sb == NULL)
    return 1;
  int64_t n = atomic_load(&sb->workers);
  if (n <= 0)
    n = w->config.workers > 0 ? w->config.workers : 1;
  int64_t share = (c + n - 1) / n;
  return atomic_load(&s->inflight) + w->fresh_conns < share;
}
