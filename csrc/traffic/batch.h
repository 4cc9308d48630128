/* Adaptive batching (traffic/batch.c), one queue per batchable API, on the I/O
 * thread. The batcher knows neither the bridge nor HTTP: the server registers
 * how a formed batch reaches Python and how a refused request is answered. */
#ifndef BH_TRAFFIC_BATCH_H
#define BH_TRAFFIC_BATCH_H

#include <uv.h>

#include "common/context.h"
#include "common/request.h"

typedef struct bh_batcher bh_batcher_t;

typedef struct bh_batcher_ops {
  /* Hands a batch (first, linked through batch_next) to Python: 0, or a
   * negative errno when it cannot go (the batcher then sheds its members). */
  int (*submit)(void *arg, bh_req_t *first);
  /* Answers a request that will not reach Python (503 shed, 500 misuse),
   * releases what it holds and frees it. */
  void (*reject)(void *arg, bh_req_t *req, int status);
  void *arg;
} bh_batcher_ops_t;

/* *out is NULL (and 0 returned) when no API is batchable. loop may be NULL
 * in tests that drive the clock themselves. */
int bh_batcher_create(bh_batcher_t **out, bh_worker_t *w, uv_loop_t *loop,
                      const bh_batcher_ops_t *ops);
void bh_batcher_close(bh_batcher_t *b);
/* Takes the request; it reaches Python inside a batch (ops->submit), or is
 * answered 503 (ops->reject) when it can no longer meet max_latency_ms. */
void bh_batcher_enqueue(bh_batcher_t *b, bh_req_t *req);
/* The I/O thread got Python's final message (COMPLETE or STREAM_END) for a
 * request that went through the batcher (req->items > 0). Returns 0: handle msg
 * for req as usual. Returns 1: msg belonged to a split part and was absorbed (the
 * batcher freed the part and msg); *parent_msg is then NULL, or the joined final
 * message for the parent request, to handle in its place. The batcher also times
 * batches here (a batch ends with its last member's final message). */
int bh_batcher_member_done(bh_batcher_t *b, bh_req_t *req, bh_out_t *msg, bh_out_t **parent_msg);

#endif
