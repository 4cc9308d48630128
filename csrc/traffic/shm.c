/* State shared by the supervisor and every worker: one anonymous shared mapping
 * made before the first fork, so every process sees it at the same address and
 * it outlives any single worker (counters survive a respawn).
 *
 * Writers never share a word: the global block is only touched with atomic
 * read-modify-write operations (the max_concurrency count), each slot only by
 * its worker, or by the supervisor after that worker was reaped, and the GPU
 * block only by the supervisor's GPU monitor. No locks, so a worker killed at
 * any instruction can never leave one held. */
#include "traffic/internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

size_t bh_shm_size(void) {
  return sizeof(struct bh_shm);
}

bh_shm_t *bh_shm_create(void) {
  void *p = mmap(NULL, sizeof(struct bh_shm), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  /* Anonymous memory is zero-filled, which is every field's initial value;
   * no memset, so the slots' pages stay untouched until a worker uses them. */
  return p;
}

void bh_shm_set_workers(bh_shm_t *shm, int service, int first_slot, int n) {
  bh_service_block_t *sb = bh_shm_service(shm, service);
  if (sb == NULL)
    return;
  if (n < 0)
    n = 0;
  if (n > BH_MAX_WORKERS)
    n = BH_MAX_WORKERS;
  atomic_store(&sb->first_slot, first_slot);
  atomic_store(&sb->workers, n);
  for (int i = 0; i < n; i++) {
    bh_slot_t *s = bh_shm_slot(shm, first_slot + i), *t = bh_shm_slot(shm, bh_shm_twin(first_slot + i));
    if (s != NULL)
      atomic_store(&s->service, service);
    if (t != NULL)
      atomic_store(&t->service, service);
  }
}

void bh_shm_set_services(bh_shm_t *shm, int n) {
  if (shm != NULL)
    atomic_store(&shm->nservices, n < 1 ? 1 : n > BH_MAX_SERVICES ? BH_MAX_SERVICES : n);
}

void bh_shm_service_ready(bh_shm_t *shm, int service, int delta) {
  bh_service_block_t *sb = bh_shm_service(shm, service);
  if (sb != NULL)
    atomic_fetch_add(&sb->ready, delta);
}

int bh_shm_graph_ready(bh_shm_t *shm) {
  if (shm == NULL)
    return 1;
  int n = atomic_load(&shm->nservices);
  for (int i = 0; i < n; i++)
    if (atomic_load(&shm->services[i].ready) < 1)
      return 0;
  return 1;
}

static void slot_reset(bh_shm_t *shm, int slot, int count_restart) {
  bh_slot_t *s = bh_shm_slot(shm, slot);
  if (s == NULL)
    return;
  bh_service_block_t *sb = bh_shm_service(shm, atomic_load(&s->service));
  if (sb == NULL)
    return;
  /* The worker is reaped, so nobody else writes this slot now. Give its
   * admitted requests back to the global count; clamp so that a count already
   * given back (or an acquire cut short by the kill) never drives it below 0. */
  int64_t mine = atomic_exchange(&s->inflight, 0);
  if (mine > 0) {
    int64_t cur = atomic_load(&sb->inflight);
    int64_t next;
    do {
      next = cur - mine;
      if (next < 0)
        next = 0;
    } while (!atomic_compare_exchange_weak(&sb->inflight, &cur, next));
  }
  atomic_store(&s->pending, 0);
  atomic_store(&s->busy_since_ns, 0);
  for (int i = 0; i < BH_SHM_MAX_SYNC; i++)
    atomic_store_explicit(&s->sync_busy_since_ns[i], 0, memory_order_relaxed);
  atomic_store(&s->heartbeat_ns, 0);
  /* in_progress is a gauge of live requests: a dead worker has none. */
  for (int i = 0; i < BH_SHM_MAX_APIS; i++)
    if (atomic_load_explicit(&s->apis[i].in_progress, memory_order_relaxed) != 0)
      atomic_store(&s->apis[i].in_progress, 0);
  atomic_store(&s->retiring, 0);
  atomic_store(&s->hung, 0);
  if (count_restart)
    atomic_fetch_add(&s->restarts, 1);
}

void bh_shm_worker_died(bh_shm_t *shm, int slot) {
  slot_reset(shm, slot, 1);
}

void bh_shm_worker_retired(bh_shm_t *shm, int slot) {
  slot_reset(shm, slot, 0);
}

void bh_shm_set_retiring(bh_shm_t *shm, int slot, int retiring) {
  bh_slot_t *s = bh_shm_slot(shm, slot);
  if (s != NULL)
    atomic_store(&s->retiring, retiring);
}

int bh_shm_retiring(bh_shm_t *shm, int slot) {
  bh_slot_t *s = bh_shm_slot(shm, slot);
  return s != NULL && atomic_load(&s->retiring) != 0;
}

void bh_shm_report_hung(bh_shm_t *shm, int slot) {
  bh_slot_t *s = bh_shm_slot(shm, slot);
  if (s != NULL)
    atomic_store(&s->hung, 1);
}

int bh_shm_reported_hung(bh_shm_t *shm, int slot) {
  bh_slot_t *s = bh_shm_slot(shm, slot);
  return s != NULL && atomic_load(&s->hung) != 0;
}

void bh_shm_withdraw(bh_shm_t *shm) {
  if (shm != NULL)
    atomic_store(&shm->withdrawn, 1);
}

int bh_shm_withdrawn(bh_shm_t *shm) {
  return shm != NULL && atomic_load(&shm->withdrawn) != 0;
}

void bh_shm_heartbeat(bh_shm_t *shm, int index) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  if (s != NULL)
    atomic_store_explicit(&s->heartbeat_ns, bh_now_ns(), memory_order_relaxed);
}

void bh_shm_work(bh_shm_t *shm, int index, int delta) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  if (s == NULL || delta == 0)
    return;
  int64_t before = atomic_fetch_add(&s->pending, delta);
  /* Going from idle to busy starts the stall clock afresh: an old heartbeat
   * from before an idle period must not count as lack of progress. */
  if (before <= 0 && before + delta > 0) {
    uint64_t now = bh_now_ns();
    atomic_store(&s->busy_since_ns, now);
    atomic_store_explicit(&s->heartbeat_ns, now, memory_order_relaxed);
  }
  if (before + delta < 0) /* unbalanced calls must not wedge the count */
    atomic_store(&s->pending, 0);
}

double bh_shm_stall_at(bh_shm_t *shm, int index, uint64_t now) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  if (s == NULL)
    return 0;
  /* Only Python work counts: an idle Python thread with responses still being
   * written by the I/O thread (slow clients) is not stalled. */
  if (atomic_load(&s->pending) <= 0)
    return 0;
  uint64_t hb = atomic_load_explicit(&s->heartbeat_ns, memory_order_relaxed);
  uint64_t since = atomic_load(&s->busy_since_ns);
  uint64_t last = hb > since ? hb : since;
  if (last == 0 || now <= last)
    return 0; /* never started: the supervisor's start-up timeout covers it */
  return (double)(now - last) / 1e9;
}

void bh_shm_set_sync_threads(bh_shm_t *shm, int index, int n) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  if (s != NULL)
    atomic_store(&s->sync_threads, n < 0 ? 0 : n > BH_SHM_MAX_SYNC ? BH_SHM_MAX_SYNC : n);
}

void bh_shm_sync_busy(bh_shm_t *shm, int index, int thread, int busy) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  if (s != NULL && thread >= 0 && thread < BH_SHM_MAX_SYNC)
    atomic_store_explicit(&s->sync_busy_since_ns[thread], busy ? bh_now_ns() : 0,
                          memory_order_relaxed);
}

double bh_shm_sync_stuck_s(bh_shm_t *shm, int index) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  if (s == NULL)
    return 0;
  int n = atomic_load(&s->sync_threads);
  uint64_t now = bh_now_ns(), shortest = UINT64_MAX;
  if (n <= 0)
    return 0;
  for (int i = 0; i < n; i++) {
    uint64_t since = atomic_load_explicit(&s->sync_busy_since_ns[i], memory_order_relaxed);
    if (since == 0 || since >= now)
      return 0; /* a free thread: the worker still serves sync calls */
    if (now - since < shortest)
      shortest = now - since;
  }
  return (double)shortest / 1e9;
}

uint64_t bh_shm_requests(bh_shm_t *shm, int index) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  return s != NULL ? atomic_load_explicit(&s->requests, memory_order_relaxed) : 0;
}

int bh_shm_busy_apis(bh_shm_t *shm, int index, int *apis, int max) {
  bh_slot_t *s = bh_shm_slot(shm, index);
  int n = 0;
  for (int i = 0; s != NULL && i < BH_SHM_MAX_APIS && n < max; i++)
    if (atomic_load_explicit(&s->apis[i].in_progress, memory_order_relaxed) > 0)
      apis[n++] = i;
  return n;
}

double bh_shm_stall_s(bh_shm_t *shm, int index) {
  return bh_shm_stall_at(shm, index, bh_now_ns());
}

/* ---------------------------------------------------------------- GPU samples */

static bh_gpu_stat_t *gpu_stat(bh_shm_t *shm, int gpu) {
  if (shm == NULL || gpu < 0 || gpu >= BH_SHM_MAX_GPUS)
    return NULL;
  return &shm->gpu.gpus[gpu];
}

void bh_shm_gpu_count(bh_shm_t *shm, int n) {
  if (shm != NULL)
    atomic_store(&shm->gpu.count, n < 0 ? 0 : n > BH_SHM_MAX_GPUS ? BH_SHM_MAX_GPUS : n);
}

int bh_shm_gpus(bh_shm_t *shm) {
  return shm != NULL ? atomic_load(&shm->gpu.count) : 0;
}

int bh_shm_gpu_set(bh_shm_t *shm, int gpu, uint64_t used, uint64_t total, double util_ratio) {
  bh_gpu_stat_t *g = gpu_stat(shm, gpu);
  if (g == NULL)
    return -EINVAL;
  uint32_t ppm = BH_GPU_UTIL_NONE;
  if (util_ratio >= 0) /* NaN is unknown too */
    ppm = util_ratio >= 1 ? 1000000u : (uint32_t)(util_ratio * 1e6 + 0.5);
  /* Seqlock writer (one writer: no read-modify-write needed). The release
   * fence keeps the odd count ahead of the fields, the release store keeps
   * the fields ahead of the even one. */
  uint32_t seq = atomic_load_explicit(&g->seq, memory_order_relaxed);
  atomic_store_explicit(&g->seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&g->used, used, memory_order_relaxed);
  atomic_store_explicit(&g->total, total, memory_order_relaxed);
  atomic_store_explicit(&g->util_ppm, ppm, memory_order_relaxed);
  atomic_store_explicit(&g->at_ns, bh_now_ns(), memory_order_relaxed);
  atomic_store_explicit(&g->seq, seq + 2, memory_order_release);
  return 0;
}

int bh_shm_gpu_read(bh_shm_t *shm, int gpu, uint64_t *used, uint64_t *total, double *util,
                    double *age_s) {
  bh_gpu_stat_t *g = gpu_stat(shm, gpu);
  if (g == NULL)
    return -EINVAL;
  /* Bounded: a monitor killed between its two counts leaves the count odd
   * for good, and a scrape must not spin on it. */
  for (int tries = 0; tries < 1000; tries++) {
    uint32_t s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
    if (s1 & 1) {
      sched_yield();
      continue;
    }
    uint64_t u = atomic_load_explicit(&g->used, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&g->total, memory_order_relaxed);
    uint32_t ppm = atomic_load_explicit(&g->util_ppm, memory_order_relaxed);
    uint64_t at = atomic_load_explicit(&g->at_ns, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&g->seq, memory_order_relaxed) != s1)
      continue;
    if (at == 0)
      return -ENODATA;
    uint64_t now = bh_now_ns();
    if (used)
      *used = u;
    if (total)
      *total = t;
    if (util)
      *util = ppm == BH_GPU_UTIL_NONE ? -1.0 : (double)ppm / 1e6;
    if (age_s)
      *age_s = now > at ? (double)(now - at) / 1e9 : 0.0;
    return 0;
  }
  return -EAGAIN;
}
