/* Stand-ins for the traffic side (csrc/traffic/: limiter, metrics, batcher, shm) so
 * that the I/O thread can be tested alone. The limiter admits at most
 * $HARNESS_MAX_CONCURRENCY requests at once (unlimited when unset) and
 * counts acquire/release so a test can check that every admitted request is
 * released exactly once. Runs on the I/O thread only. */
#include "server/internal.h"
#include "traffic/batch.h"
#include "traffic/dep_metrics.h"
#include "traffic/limiter.h"
#include "traffic/metrics.h"
#include "traffic/shm.h"

#include <errno.h>
#include <stdlib.h>

static long stub_limit = -2; /* -2: not read yet, -1: unlimited */
long stub_held, stub_acquired, stub_released, stub_rejected, stub_requests;

int bh_limiter_acquire(bh_worker_t *w) {
  (void)w;
  if (stub_limit == -2) {
    const char *s = getenv("HARNESS_MAX_CONCURRENCY");
    stub_limit = s != NULL && *s ? strtol(s, NULL, 10) : -1;
  }
  if (stub_limit >= 0 && stub_held >= stub_limit)
    return -EBUSY;
  stub_held++;
  stub_acquired++;
  return 0;
}

void bh_limiter_release(bh_worker_t *w) {
  (void)w;
  stub_held--;
  stub_released++;
}

int bh_limiter_full(bh_worker_t *w) {
  (void)w;
  if (stub_limit == -2) {
    const char *s = getenv("HARNESS_MAX_CONCURRENCY");
    stub_limit = s != NULL && *s ? strtol(s, NULL, 10) : -1;
  }
  return stub_limit >= 0 && stub_held >= stub_limit;
}

void bh_metrics_refused(bh_worker_t *w, int reason) {
  (void)w;
  (void)reason;
}

int bh_shm_graph_ready(bh_shm_t *shm) {
  (void)shm;
  return 1;
}

int bh_shm_withdrawn(bh_shm_t *shm) {
  (void)shm;
  return 0;
}

int bh_shm_retiring(bh_shm_t *shm, int slot) {
  (void)shm;
  (void)slot;
  return 0;
}

double bh_shm_sync_stuck_s(bh_shm_t *shm, int index) {
  (void)shm;
  (void)index;
  return 0;
}

double bh_shm_stall_s(bh_shm_t *shm, int index) {
  (void)shm;
  (void)index;
  return 0;
}

void bh_shm_report_hung(bh_shm_t *shm, int slot) {
  (void)shm;
  (void)slot;
}

int bh_metrics_reason_of(int status) {
  (void)status;
  return -1;
}

int bh_limiter_may_accept(bh_worker_t *w) {
  (void)w;
  return 1;
}

void bh_metrics_request(bh_worker_t *w, int api_index, int status, double duration_s) {
  (void)w;
  (void)api_index;
  (void)status;
  (void)duration_s;
  stub_requests++;
}

void bh_metrics_rejected(bh_worker_t *w, int status) {
  (void)w;
  (void)status;
  stub_rejected++;
}

void bh_metrics_inflight(bh_worker_t *w, int api_index, int delta) {
  (void)w;
  (void)api_index;
  (void)delta;
}

void bh_metrics_batch(bh_worker_t *w, int api_index, uint32_t size, double queue_s) {
  (void)w;
  (void)api_index;
  (void)size;
  (void)queue_s;
}

void bh_dep_metrics_observe(bh_worker_t *w, int dep, const char *endpoint, double duration_s) {
  (void)w;
  (void)dep;
  (void)endpoint;
  (void)duration_s;
}

char *bh_metrics_render_graph(bh_shm_t *shm, const bh_metrics_view_t *views, size_t nviews,
                              size_t *len) {
  (void)shm;
  (void)views;
  (void)nviews;
  *len = 0;
  return NULL;
}

int bh_batcher_create(bh_batcher_t **out, bh_worker_t *w, uv_loop_t *loop,
                      const bh_batcher_ops_t *ops) {
  (void)w;
  (void)loop;
  (void)ops;
  *out = NULL;
  return -ENOSYS;
}

void bh_batcher_close(bh_batcher_t *b) {
  (void)b;
}

void bh_batcher_enqueue(bh_batcher_t *b, bh_req_t *req) {
  (void)b;
  bh_http_reject(req, 503);
}

int bh_batcher_member_done(bh_batcher_t *b, bh_req_t *req, bh_out_t *msg,
                           bh_out_t **parent_msg) {
  (void)b;
  (void)req;
  (void)msg;
  *parent_msg = NULL;
  return 0;
}
