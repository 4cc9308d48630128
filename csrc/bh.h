/* bentohost: declarations shared between the host's source files.
 *
 * Process model: the supervisor (supervisor.c) never initialises Python; it forks
 * workers (worker.c). A worker runs two threads:
 *   - the I/O thread (io.c, http.c, router.c): libuv + llhttp, never takes the GIL;
 *   - the process's main thread (pyhost.c): CPython running an asyncio loop.
 * They meet in the bridge (bridge.c): an SPSC ring of requests towards Python,
 * woken through an eventfd, and an MPSC completion list back, woken by uv_async.
 */
#ifndef BH_H
#define BH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <uv.h>

#define BH_VERSION "0.1.0"

typedef struct bh_worker bh_worker_t;

/* ---------------------------------------------------------------- options */

typedef struct bh_options {
  const char *target;        /* service target as given on the command line */
  const char *python;        /* sys.executable of the launcher (not resolved) */
  const char *prefix;        /* sys.prefix of the launcher, checked in workers */
  const char *host;          /* default "0.0.0.0" */
  int port;                  /* default 3000 */
  int backlog;               /* default 2048 */
  int workers_override;      /* --workers; 0 means "as the service says" */
  double graceful_timeout_s; /* --timeout-graceful-shutdown, default 30 */
  double keepalive_timeout_s;/* --timeout-keep-alive, default 5 */
  uint64_t max_body_size;    /* --max-body-size, default 100 MiB */
  size_t max_header_size;    /* --max-header-size, default 64 KiB */
  double watchdog_factor;    /* --watchdog-factor: kill a worker stalled this many
                                times traffic.timeout; 0 disables; default 2 */
} bh_options_t;

int bh_options_parse(bh_options_t *opts, int argc, char **argv);

/* ---------------------------------------------------------------- config */

/* What the service reported about itself (JSON written by bentohost/_config.py). */
typedef struct bh_api {
  char *name;
  char *route;        /* "/classify" */
  size_t route_len;
  int index;          /* position in the JSON "apis" list == index used by Python */
  int is_async;
  int is_stream;
  int batchable;
  int needs_request;  /* the method takes a Context: hand Python the request head */
  int batch_root;     /* batchable input is the bare body (positional-only) */
  char *batch_field;  /* batchable input's field name in the JSON object, or NULL */
  int max_batch_size;
  double max_latency_s;
} bh_api_t;

typedef struct bh_service_config {
  char *name;
  int workers;        /* already resolved ("cpu_count" -> a number) */
  int threads;
  double timeout_s;   /* traffic.timeout, default 60 */
  int max_concurrency;/* traffic.max_concurrency, 0 = unlimited (global, all workers) */
  int concurrency;    /* traffic.concurrency, 0 = unset */
  bh_api_t *apis;
  size_t napis;
} bh_service_config_t;

int bh_config_parse(bh_service_config_t *cfg, const char *json, size_t len);
void bh_config_free(bh_service_config_t *cfg);

/* ---------------------------------------------------------------- requests */

/* A multipart/form-data part, parsed by C. File parts are streamed to a file in
 * the request's temp_dir; other parts are kept in memory. */
typedef struct bh_part {
  char *name;
  char *filename;      /* NULL for plain fields */
  char *content_type;  /* NULL if the part had none */
  char *path;          /* file parts: where the content was written */
  char *data;          /* plain fields: the value */
  size_t len;          /* bytes of content (file or data) */
} bh_part_t;

enum {
  BH_REQ_TIMED_OUT = 1 << 0,  /* C answered 504; Python's result is dropped */
  BH_REQ_GONE = 1 << 1,       /* the client went away */
  BH_REQ_STREAMING = 1 << 2,  /* response headers sent, chunks follow */
  BH_REQ_WANT_WRITABLE = 1 << 3, /* Python waits for a BH_IN_WRITABLE event */
};

/* One HTTP request on its way to Python and back. Allocated by the I/O thread and
 * freed by it, only after Python's final message for it (complete or stream_end)
 * has been processed: a handle Python holds is always valid. */
typedef struct bh_req {
  void *conn;            /* the connection, owned by the I/O thread */
  int api_index;
  char *body;            /* malloc'd request body (may be NULL when empty) */
  size_t body_len;
  char *content_type;    /* malloc'd, NUL-terminated, NULL if absent */

  /* Request metadata, kept when the API needs_request or the body is multipart. */
  char *head;            /* raw request line + header lines, as received */
  size_t head_len;
  char client[64];       /* "ip:port" of the peer */
  char *temp_dir;        /* per-request directory, removed after the response */
  bh_part_t *parts;      /* multipart parts (body is then NULL) */
  size_t nparts;

  /* Batching (batch.c): members of one batch, head first; items this request
   * carries; a request split across batches points at its parent. */
  struct bh_req *batch_next;
  struct bh_req *split_parent;
  uint32_t items;

  uint64_t start_ns;     /* arrival, CLOCK_MONOTONIC */
  _Atomic uint32_t flags;          /* BH_REQ_* */
  _Atomic int64_t pending_bytes;   /* streamed bytes not yet written to the socket */
} bh_req_t;

void bh_req_free(bh_req_t *req);

/* ---------------------------------------------------------------- bridge */

/* Towards Python: what a ring entry means. */
typedef enum bh_in_kind {
  BH_IN_REQUEST = 0,   /* a request to run */
  BH_IN_BATCH = 1,     /* req is the head of a batch (req->batch_next...) */
  BH_IN_CANCEL = 2,    /* timed out or client gone: cancel what runs for req */
  BH_IN_WRITABLE = 3,  /* a paused stream may write again */
} bh_in_kind_t;

typedef struct bh_in {
  bh_req_t *req;
  bh_in_kind_t kind;
} bh_in_t;

/* Back to the I/O thread: what Python says about a request. One allocation
 * holds the message and its strings (content_type, headers and data point into
 * the same block). */
typedef enum bh_out_kind {
  BH_OUT_COMPLETE = 0,     /* the whole response; final */
  BH_OUT_STREAM_START = 1, /* status + headers of a chunked response */
  BH_OUT_CHUNK = 2,        /* one chunk of a streamed body */
  BH_OUT_STREAM_END = 3,   /* the end of a streamed body; final */
} bh_out_kind_t;

typedef struct bh_out {
  struct bh_out *next;
  bh_req_t *req;
  bh_out_kind_t kind;
  int status;
  const char *content_type;  /* NUL-terminated, or NULL */
  const char *headers;       /* extra header lines "Name: value\r\n"..., or NULL */
  size_t headers_len;
  const char *data;          /* body or chunk */
  size_t len;
} bh_out_t;

/* Allocates a message with room for the strings and copies them in. */
bh_out_t *bh_out_new(bh_req_t *req, bh_out_kind_t kind, int status,
                     const char *content_type, size_t content_type_len,
                     const char *headers, size_t headers_len,
                     const char *data, size_t len);

typedef void (*bh_out_cb)(bh_out_t *list, void *arg);

/* Streaming back-pressure: Python stops advancing a generator once more than the
 * high-water mark is queued for a socket, and is woken (BH_IN_WRITABLE) once the
 * queue drains below the low-water mark. */
#define BH_STREAM_HIGH_WATER (1 << 20)
#define BH_STREAM_LOW_WATER (256 << 10)

typedef struct bh_bridge {
  /* I/O thread -> Python: single-producer single-consumer ring */
  bh_in_t *slots;
  size_t capacity;            /* a power of two */
  _Atomic size_t head;        /* next slot the consumer reads */
  _Atomic size_t tail;        /* next slot the producer writes */
  _Atomic int consumer_sleeping;
  _Atomic int shutdown;       /* set by the I/O thread once drained */
  int eventfd;

  /* Python (any thread) -> I/O thread: mutex-protected list + uv_async */
  pthread_mutex_t done_lock;
  bh_out_t *done_head, *done_tail;
  uv_async_t done_async;
  bh_out_cb on_out;
  void *on_out_arg;
} bh_bridge_t;

/* Called on the I/O thread with its loop (uv_async must belong to that loop). */
int bh_bridge_init(bh_bridge_t *b, uv_loop_t *loop, size_t capacity,
                   bh_out_cb on_out, void *arg);
void bh_bridge_close(bh_bridge_t *b);   /* I/O thread, at the end */
void bh_bridge_destroy(bh_bridge_t *b); /* after bh_io_join(): ring and eventfd */
/* I/O thread; -EAGAIN if full. */
int bh_bridge_submit(bh_bridge_t *b, bh_req_t *req, bh_in_kind_t kind);
/* Python side: pops up to max entries. When it finds the ring empty it arms the
 * eventfd wake-up before returning 0, so a later submit wakes the consumer. */
size_t bh_bridge_take(bh_bridge_t *b, bh_in_t *out, size_t max);
void bh_bridge_clear_eventfd(bh_bridge_t *b);
void bh_bridge_post(bh_bridge_t *b, bh_out_t *msg); /* any thread */
void bh_bridge_signal_shutdown(bh_bridge_t *b);    /* I/O thread */

/* ---------------------------------------------------------------- shared memory */

/* One MAP_SHARED|MAP_ANONYMOUS segment created by the supervisor before the first
 * fork (shm.c). A global block plus one slot per worker index, each slot written
 * only by its worker (C11 atomics, no locks). Layout private to shm.c/metrics.c. */
#define BH_MAX_WORKERS 256
typedef struct bh_shm bh_shm_t;

bh_shm_t *bh_shm_create(void);                 /* supervisor, before forking */
/* supervisor, after reaping worker `index`: returns its in-flight requests to the
 * global max_concurrency count and counts the restart. */
void bh_shm_worker_died(bh_shm_t *shm, int index);
/* supervisor, once the worker count is known (traffic.concurrency uses it) */
void bh_shm_set_workers(bh_shm_t *shm, int n);
/* seconds since the worker's Python thread last made progress while it had work,
 * or 0 when it is idle or has no Python work pending */
double bh_shm_stall_s(bh_shm_t *shm, int index);
void bh_shm_heartbeat(bh_shm_t *shm, int index); /* worker, Python thread */
/* worker, Python thread: Python work pending (+n when it takes n REQUEST/BATCH
 * member handles from the ring, -1 as it posts each one's final message) */
void bh_shm_work(bh_shm_t *shm, int index, int delta);
/* Prometheus text of the totals of every worker; returns a malloc'd buffer. */
char *bh_metrics_render(bh_shm_t *shm, const bh_service_config_t *cfg, size_t *len);

/* ---------------------------------------------------------------- traffic (I/O thread) */

/* Global max_concurrency admission (limiter.c): 0 admitted, -EBUSY over the limit.
 * Every admitted request is released exactly once, when its response ends. */
int bh_limiter_acquire(bh_worker_t *w);
void bh_limiter_release(bh_worker_t *w);
/* Whether the worker should accept new connections (traffic.concurrency). */
int bh_limiter_may_accept(bh_worker_t *w);

/* Metrics recorded by the I/O thread when a response ends (metrics.c). */
void bh_metrics_request(bh_worker_t *w, int api_index, int status, double duration_s);
void bh_metrics_rejected(bh_worker_t *w, int status);  /* 429 / 503 / 504 by C */
void bh_metrics_inflight(bh_worker_t *w, int api_index, int delta);
void bh_metrics_batch(bh_worker_t *w, int api_index, uint32_t size, double queue_s);

/* Adaptive batching (batch.c), one queue per batchable API, on the I/O thread. */
typedef struct bh_batcher bh_batcher_t;
int bh_batcher_create(bh_batcher_t **out, bh_worker_t *w, uv_loop_t *loop);
void bh_batcher_close(bh_batcher_t *b);
/* Takes the request; it reaches Python inside a BH_IN_BATCH, or is answered 503
 * (bh_http_reject) when it can no longer meet max_latency_ms. */
void bh_batcher_enqueue(bh_batcher_t *b, bh_req_t *req);
/* The I/O thread got Python's final message (COMPLETE or STREAM_END) for a
 * request that went through the batcher (req->items > 0). Returns 0: handle msg
 * for req as usual. Returns 1: msg belonged to a split part and was absorbed (the
 * batcher freed the part and msg); *parent_msg is then NULL, or the joined final
 * message for the parent request, to handle in its place. The batcher also times
 * batches here (a batch ends with its last member's final message). */
int bh_batcher_member_done(bh_batcher_t *b, bh_req_t *req, bh_out_t *msg, bh_out_t **parent_msg);

/* http.c: answer a request that never reached Python (or whose batch refused it)
 * with a JSON error, release what it holds and free it. */
void bh_http_reject(bh_req_t *req, int status);

/* ---------------------------------------------------------------- worker */

struct bh_worker {
  int index;                 /* 1..N, server_context.worker_index */
  int listen_fd;             /* inherited listening socket */
  int status_fd;             /* pipe to the supervisor */
  int reporter;              /* this worker reports the service config */
  const bh_options_t *opts;

  bh_service_config_t config;/* filled by bh_worker_publish() */
  char *service_json;        /* the JSON as reported */

  bh_bridge_t bridge;
  uv_loop_t io_loop;
  pthread_t io_thread;
  int io_started;

  bh_shm_t *shm;             /* created by the supervisor, inherited */
  bh_batcher_t *batcher;     /* NULL when no API is batchable */
  /* Documents C serves on GET from memory (/schema.json, /docs.json, /, ...),
   * registered by Python before publish(). */
  struct bh_document *documents;

  int fresh_conns;           /* I/O thread: accepted connections with no request yet */

  _Atomic int ready;         /* /readyz: instance built and on_startup hooks run */
  _Atomic int alive;         /* /livez: __is_alive__ */
  _Atomic int io_ready;      /* the I/O thread has initialised the bridge */
};

typedef struct bh_document {
  struct bh_document *next;
  char *path;
  char *content_type;
  char *body;
  size_t len;
} bh_document_t;

int bh_worker_main(bh_worker_t *w); /* never returns */

/* I/O thread (io.c). bh_io_start() returns once the bridge is initialised. */
int bh_io_start(bh_worker_t *w);
int bh_io_join(bh_worker_t *w);

/* Messages on the status pipe, one line each ("<kind> <index> <pid> [payload]\n"). */
int bh_status_send(int fd, const char *kind, int index, const char *payload, size_t len);

/* Python host (pyhost.c): initialises CPython and runs bentohost._worker.main().
 * Returns the worker's exit code. */
int bh_pyhost_run(bh_worker_t *w);

/* Supervisor (supervisor.c). */
int bh_supervisor_run(const bh_options_t *opts);

/* Logging: one line to stderr with a "[bentohost]" prefix. */
void bh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Exit codes of a worker that the supervisor understands. */
#define BH_EXIT_LOAD_FAILED 3   /* the service could not be imported: fatal before the
                                   config is known, a start-up failure after */
#define BH_EXIT_START_FAILED 4  /* instance or on_startup failed: respawn with backoff */

#endif
