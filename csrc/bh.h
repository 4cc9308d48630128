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
} bh_options_t;

int bh_options_parse(bh_options_t *opts, int argc, char **argv);

/* ---------------------------------------------------------------- config */

/* What the service reported about itself (JSON written by bentohost/_worker.py). */
typedef struct bh_api {
  char *name;
  char *route;        /* "/classify" */
  size_t route_len;
  int index;          /* position in the JSON "apis" list == index used by Python */
  int is_async;
  int is_stream;
  int batchable;
} bh_api_t;

typedef struct bh_service_config {
  char *name;
  int workers;        /* already resolved ("cpu_count" -> a number) */
  int threads;
  bh_api_t *apis;
  size_t napis;
} bh_service_config_t;

int bh_config_parse(bh_service_config_t *cfg, const char *json, size_t len);
void bh_config_free(bh_service_config_t *cfg);

/* ---------------------------------------------------------------- requests */

/* One HTTP request on its way to Python and back. Allocated and freed by the I/O
 * thread. Between bh_bridge_submit() and bh_bridge_complete() only the Python side
 * touches it; the response fields are written by bh_bridge_complete(). */
typedef struct bh_req {
  struct bh_req *next;   /* completion list link (bridge) */
  void *conn;            /* the connection, owned by the I/O thread */
  int api_index;
  char *body;            /* malloc'd request body (may be NULL when empty) */
  size_t body_len;
  char *content_type;    /* malloc'd, NUL-terminated, NULL if absent */

  /* response, set by bh_bridge_complete() */
  int status;
  char *resp_content_type;  /* malloc'd, NUL-terminated */
  char *resp_body;          /* malloc'd */
  size_t resp_len;
} bh_req_t;

void bh_req_free(bh_req_t *req);

/* ---------------------------------------------------------------- bridge */

typedef void (*bh_completion_cb)(bh_req_t *completed_list, void *arg);

typedef struct bh_bridge {
  /* I/O thread -> Python: single-producer single-consumer ring */
  bh_req_t **slots;
  size_t capacity;            /* a power of two */
  _Atomic size_t head;        /* next slot the consumer reads */
  _Atomic size_t tail;        /* next slot the producer writes */
  _Atomic int consumer_sleeping;
  _Atomic int shutdown;       /* set by the I/O thread once drained */
  int eventfd;

  /* Python (any thread) -> I/O thread: mutex-protected list + uv_async */
  pthread_mutex_t done_lock;
  bh_req_t *done_head, *done_tail;
  uv_async_t done_async;
  bh_completion_cb on_complete;
  void *on_complete_arg;
} bh_bridge_t;

/* Called on the I/O thread with its loop (uv_async must belong to that loop). */
int bh_bridge_init(bh_bridge_t *b, uv_loop_t *loop, size_t capacity,
                   bh_completion_cb on_complete, void *arg);
void bh_bridge_close(bh_bridge_t *b);       /* I/O thread, at the end */
int bh_bridge_submit(bh_bridge_t *b, bh_req_t *req); /* I/O thread; -EAGAIN if full */
/* Python side: pops up to max requests. When it finds the ring empty it arms the
 * eventfd wake-up before returning 0, so a later submit wakes the consumer. */
size_t bh_bridge_take(bh_bridge_t *b, bh_req_t **out, size_t max);
void bh_bridge_clear_eventfd(bh_bridge_t *b);
void bh_bridge_complete(bh_bridge_t *b, bh_req_t *req); /* any thread */
void bh_bridge_signal_shutdown(bh_bridge_t *b);         /* I/O thread */
/* After bh_io_join(), once the Python side no longer polls the eventfd:
 * frees the ring and closes the eventfd (bh_bridge_close() only closes the
 * uv_async handle, because Python may still be waiting on the eventfd). */
void bh_bridge_destroy(bh_bridge_t *b);

/* ---------------------------------------------------------------- worker */

typedef struct bh_worker {
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

  _Atomic int ready;         /* /readyz: instance built and on_startup hooks run */
  _Atomic int alive;         /* /livez: __is_alive__ */
  _Atomic int io_ready;      /* the I/O thread has initialised the bridge */
} bh_worker_t;

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
#define BH_EXIT_LOAD_FAILED 3   /* the service could not be imported: do not respawn */
#define BH_EXIT_START_FAILED 4  /* instance or on_startup failed: respawn with backoff */

#endif
