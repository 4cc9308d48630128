/* Private to the traffic files (shm.c, limiter.c, metrics.c, dep_metrics.c,
 * batch.c, json_items.c) and their unit tests: the segment's layout, the text
 * helpers the metrics renders share, the JSON item scanner and the batcher's
 * fake-clock entry points. The rest of the host uses the per-module headers
 * (traffic/shm.h, limiter.h, metrics.h, dep_metrics.h, batch.h). */
#ifndef BH_TRAFFIC_INTERNAL_H
#define BH_TRAFFIC_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "traffic/batch.h"
#include "traffic/dep_metrics.h"
#include "traffic/limiter.h"
#include "traffic/metrics.h"
#include "traffic/shm.h"

/* ---------------------------------------------------------------- segment layout */

/* Fixed capacities. The segment is MAP_ANONYMOUS, so pages nobody touches cost
 * nothing: capacities are generous rather than exact. */
#define BH_SHM_MAX_APIS 64    /* APIs beyond this are served but not measured */
#define BH_SHM_MAX_CODES 16   /* distinct status codes per API per worker */
#define BH_SHM_MAX_SYNC 256   /* sync threads watched per worker (more are served, not watched) */
#define BH_DUR_NB 18          /* finite request-duration buckets */
#define BH_QUEUE_NB 13        /* finite batch-queue-wait buckets */
#define BH_BATCH_NB 34        /* batch-size buckets: 1..2^31, the end, +Inf */

extern const double bh_dur_buckets[BH_DUR_NB];
extern const double bh_queue_buckets[BH_QUEUE_NB];

typedef struct bh_code_stat {
  _Atomic uint32_t code;             /* 0: free; written last by its worker */
  _Atomic uint64_t count;
  _Atomic uint64_t sum_ns;
  _Atomic uint64_t bucket[BH_DUR_NB + 1]; /* per bucket, not cumulative; last = +Inf */
} bh_code_stat_t;

typedef struct bh_api_stat {
  bh_code_stat_t codes[BH_SHM_MAX_CODES];
  _Atomic int64_t in_progress;
  _Atomic uint64_t batch_count, batch_sum;
  _Atomic uint64_t batch_bucket[BH_BATCH_NB];
  _Atomic uint64_t queue_count, queue_sum_ns;
  _Atomic uint64_t queue_bucket[BH_QUEUE_NB + 1];
} bh_api_stat_t;

/* Calls to dependencies, per (dependency, endpoint) pair (dep_metrics.c). Rows
 * fill in order; the names are written before `used` is set (release) and never
 * change after, so a reader that sees `used` (acquire) reads them safely. */
#define BH_DEP_ROWS 32        /* pairs per worker; further ones share the overflow row */
#define BH_DEP_NAME 64        /* bytes of a dependency's name, NUL included (longer: cut) */
#define BH_DEP_ENDPOINT 128   /* bytes of an endpoint, NUL included (longer: cut) */

typedef struct bh_dep_stat {
  _Atomic uint32_t used;
  char dependency[BH_DEP_NAME];
  char endpoint[BH_DEP_ENDPOINT];
  _Atomic uint64_t count, sum_ns;
  _Atomic uint64_t bucket[BH_DUR_NB + 1]; /* per bucket, not cumulative; last = +Inf */
} bh_dep_stat_t;

/* One per worker process in use (an index's slot, or its twin while a rolling
 * restart runs two processes for it); written only by that worker (and by the
 * supervisor once the worker is dead and reaped, see bh_shm_worker_died, or in
 * `retiring`, which the worker only reads). Page aligned so two workers never
 * write the same cache line. */
typedef struct bh_slot {
  _Atomic int64_t inflight;        /* admitted by bh_limiter_acquire, not yet released */
  _Atomic int64_t pending;         /* Python work taken and not finished (bh_shm_work) */
  _Atomic uint64_t heartbeat_ns;   /* CLOCK_MONOTONIC of the Python thread's last progress */
  _Atomic uint64_t busy_since_ns;  /* when the worker last went from idle to busy */
  _Atomic int32_t service;         /* the service whose worker uses the slot */
  _Atomic uint64_t restarts;
  _Atomic uint64_t requests;       /* answered (every response end), for --max-requests */
  _Atomic int32_t sync_threads;    /* sync threads the worker runs (their slots below) */
  _Atomic int32_t retiring;        /* written by the supervisor: see bh_shm_set_retiring */
  _Atomic int32_t hung;            /* written by the worker: see bh_shm_report_hung */
  /* per sync thread: CLOCK_MONOTONIC when its current call began, 0 when idle */
  _Atomic uint64_t sync_busy_since_ns[BH_SHM_MAX_SYNC];
  _Atomic uint64_t rejected[BH_REJ_N];
  bh_api_stat_t apis[BH_SHM_MAX_APIS];
  bh_dep_stat_t deps[BH_DEP_ROWS + 1]; /* [BH_DEP_ROWS]: the overflow row */
} __attribute__((aligned(4096))) bh_slot_t;

/* One per service of the graph (the entry is service 0). */
typedef struct bh_service_block {
  _Atomic int64_t inflight;        /* exact in-flight count of the service (max_concurrency) */
  _Atomic int32_t workers;         /* its workers, set by the supervisor */
  _Atomic int32_t first_slot;      /* its workers use slots first_slot .. first_slot+workers-1 */
  _Atomic int32_t ready;           /* its workers that are ready, kept by the supervisor */
} bh_service_block_t;

/* One GPU's last sample, written by the supervisor's GPU monitor only (its
 * single writer) under a sequence count: odd while a sample is being written,
 * so that a reader never pairs one second's memory with another's. Plain
 * atomics would let a render mix `used` of one sample with `total` of the
 * next; a lock could be left held by a monitor killed mid-write. */
typedef struct bh_gpu_stat {
  _Atomic uint32_t seq;
  _Atomic uint32_t util_ppm;       /* utilisation, millionths; BH_GPU_UTIL_NONE: unknown */
  _Atomic uint64_t used, total;    /* memory, bytes */
  _Atomic uint64_t at_ns;          /* CLOCK_MONOTONIC of the sample; 0: none yet */
} bh_gpu_stat_t;

#define BH_GPU_UTIL_NONE UINT32_MAX

typedef struct bh_gpu_block {
  _Atomic int32_t count;           /* GPUs the monitor watches (<= BH_SHM_MAX_GPUS) */
  bh_gpu_stat_t gpus[BH_SHM_MAX_GPUS];
} bh_gpu_block_t;

struct bh_shm {
  _Atomic int32_t nservices;       /* services of the graph (1 without dependencies) */
  _Atomic int32_t withdrawn;       /* --shutdown-delay: /readyz says 503 */
  bh_service_block_t services[BH_MAX_SERVICES];
  char pad[4096 - 8 - sizeof(bh_service_block_t) * BH_MAX_SERVICES];
  /* [0] unused: slots are 1-based; 1..BH_MAX_WORKERS and their twins after */
  bh_slot_t slots[2 * BH_MAX_WORKERS + 1];
  /* last, so that adding it moved no slot; its own page, away from the workers' */
  bh_gpu_block_t gpu __attribute__((aligned(4096)));
};

static inline bh_service_block_t *bh_shm_service(bh_shm_t *shm, int service) {
  if (shm == NULL || service < 0 || service >= BH_MAX_SERVICES)
    return NULL;
  return &shm->services[service];
}

static inline bh_slot_t *bh_shm_slot(bh_shm_t *shm, int index) {
  if (shm == NULL || index < 1 || index > 2 * BH_MAX_WORKERS)
    return NULL;
  return &shm->slots[index];
}

size_t bh_shm_size(void);
double bh_shm_stall_at(bh_shm_t *shm, int index, uint64_t now_ns);
/* Bucket index of a batch of `size` items among 1,2,4,..,<end, end, +Inf. */
int bh_batch_bucket_index(uint32_t size, uint32_t end);
/* The bounds for the render: fills up to BH_BATCH_NB-1 finite bounds. */
int bh_batch_bucket_bounds(uint32_t end, double *bounds);

/* ---------------------------------------------------------------- metrics text */

/* A growing text buffer; `failed` sticks after an allocation or format error. */
typedef struct bh_mbuf {
  char *p;
  size_t len, cap;
  int failed;
} bh_mbuf_t;

void bh_mbuf_put(bh_mbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The label list of one sample from NULL-ended name/value pairs, values
 * escaped; malloc'd, NULL when out of memory. */
char *bh_mbuf_labels(const char *const *kv);
/* One histogram's _bucket (cumulated from per-bucket counts, +Inf last), _count
 * and _sum lines; labels is a label list without braces. */
void bh_mbuf_histogram(bh_mbuf_t *b, const char *name, const char *labels,
                       const uint64_t *per_bucket, const double *bounds, int nb, double sum,
                       uint64_t count);
/* The bucket of v among n bounds (le: v <= bound); n means +Inf. */
int bh_metrics_bucket_of(double v, const double *bounds, int n);
/* Seconds to whole nanoseconds, clamped to [0, ~570 years]. */
uint64_t bh_metrics_ns(double s);
/* bentohost_dependency_request_duration_seconds of one service, whose workers
 * use slots first_slot .. first_slot+nslots-1, summed over them. *head starts
 * at 0 and is set once the family's HELP and TYPE lines are written, so that
 * several services share them; nothing is written before a call was measured. */
void bh_dep_metrics_put(bh_mbuf_t *b, bh_shm_t *shm, const char *service_name, int first_slot,
                        int nslots, int *head);

/* ---------------------------------------------------------------- JSON items */

/* The batch input of a body: `root` says the body is the value itself, else
 * `field` names it inside the top-level object. On success (0) *open and *close
 * are the offsets of the value's '[' and ']' when it is an array (*count its
 * elements), or *count is -1 when the value exists but is not an array.
 * Negative errno when the body is not JSON the scanner understands. When elems
 * is not NULL it receives 2*count offsets (start, end) of the elements. */
int bh_json_items(const char *body, size_t len, int root, const char *field,
                  size_t *open, size_t *close, long *count, size_t *elems, size_t max_elems);
/* The index of the first non-blank byte of s[i..n), or n. */
size_t bh_json_skip_ws(const char *s, size_t i, size_t n);
/* Items a request carries for batching: the array's length, or 1. */
uint32_t bh_json_count_items(const char *body, size_t len, int root, const char *field);
/* A copy of body with the array sliced to elements [from, to): prefix + the
 * elements with their separators + suffix. malloc'd, NULL on error. */
char *bh_json_slice(const char *body, size_t len, int root, const char *field,
                    uint32_t from, uint32_t to, size_t *out_len);

/* ---------------------------------------------------------------- split requests */

/* A request split across batches: it stays at the head of its queue while
 * parts of it are cut off, and is answered once every part has finished. */
typedef struct bh_split {
  struct bh_split *next;
  bh_req_t *parent;
  uint32_t off;         /* items already cut into parts */
  uint32_t outstanding; /* parts sent and not finished */
  uint32_t done;        /* items finished (or dropped) */
  bh_out_t *first;      /* first part's message: status, content type, headers */
  bh_out_t *err;        /* first failure: becomes the parent's answer */
  char *out;            /* the parts' array contents, joined */
  size_t out_len, out_cap;
} bh_split_t;

/* A part's final message: keeps its array's contents, or its failure (msg is
 * kept or freed). */
void bh_split_absorb(bh_split_t *s, bh_out_t *msg);
/* The parent's final message from what the parts gave (NULL: out of memory). */
bh_out_t *bh_split_join(bh_split_t *s);

/* ---------------------------------------------------------------- batcher, fake clock */

/* The same as the traffic/batch.h entry points, at an explicit time (tests drive a fake
 * clock through these; the public ones pass the monotonic clock). */
void bh_batcher_enqueue_at(bh_batcher_t *b, bh_req_t *req, uint64_t now);
int bh_batcher_member_done_at(bh_batcher_t *b, bh_req_t *req, bh_out_t *msg,
                              bh_out_t **parent_msg, uint64_t now);
/* What the uv_timer does when it fires. */
void bh_batcher_tick_at(bh_batcher_t *b, uint64_t now);
/* The deadline the timer of API `api` is armed for (0: none), for tests. */
uint64_t bh_batcher_deadline(bh_batcher_t *b, int api);
/* The model's predicted duration of an n-item batch of API `api`, seconds. */
double bh_batcher_predict(bh_batcher_t *b, int api, uint32_t n);
/* Queued items of API `api`, and whether a batch of it is in flight. */
uint32_t bh_batcher_queued(bh_batcher_t *b, int api);
int bh_batcher_busy(bh_batcher_t *b, int api);

#endif
