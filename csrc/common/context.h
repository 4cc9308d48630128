/* The state of one worker process, shared by its two threads: the I/O thread
 * (server/) and the Python thread (python/). Every layer inside a worker reads
 * it; each field has one writer, named beside it. Types of the layers above
 * appear only as opaque pointers, so this header depends on nothing but common/. */
#ifndef BH_COMMON_CONTEXT_H
#define BH_COMMON_CONTEXT_H

#include <stdatomic.h>
#include <stddef.h>

#include "common/config.h"
#include "common/options.h"

struct bh_bridge;
struct bh_shm;
struct bh_batcher;

/* A document C serves on GET from memory (/schema.json, /docs.json, /, ...),
 * registered by Python before the I/O thread starts, then read-only. */
typedef struct bh_document {
  struct bh_document *next;
  char *path;
  char *content_type;
  char *body;
  size_t len;
} bh_document_t;

/* A service this worker calls: its workers' sockets, registered by Python
 * before the I/O thread starts, then read-only. */
typedef struct bh_dependency {
  char *name;
  char **paths;              /* Unix socket paths, one per worker of the dependency */
  size_t npaths;
} bh_dependency_t;

typedef struct bh_worker bh_worker_t;

struct bh_worker {
  /* set by the supervisor before the worker starts */
  int index;                 /* 1..N within its service: server_context.worker_index */
  int slot;                  /* its slot in the shared segment (1-based, all services) */
  int service;               /* its service in the graph: 0 the entry */
  const char *service_name;  /* the service it serves; NULL: the entry */
  int listen_fd;             /* inherited listening socket */
  int status_fd;             /* pipe to the supervisor */
  int reporter;              /* this worker reports the service config */
  int defer_listen;          /* a rolling restart's new worker, or one starting beside
                                live siblings: accept only once ready, so a worker still
                                loading takes no request (restart.c, supervisor.c) */
  const bh_options_t *opts;
  struct bh_shm *shm;        /* created by the supervisor, inherited */
  struct bh_tls_ctx *tls;    /* the entry's TLS context (net/tls.h), made before the fork; NULL: plain */
  int io_cpu;                /* --cpu-affinity: 1 + the CPU the I/O thread runs on; 0: anywhere
                                (so that a zeroed worker is unpinned) */

  /* set by worker/worker.c: starts the I/O thread once Python has published
   * the configuration (the Python host reaches the server only through it) */
  int (*start_serving)(bh_worker_t *w);
  /* set by server/io.c when defer_listen: the Python thread calls it once the
   * worker is ready, before saying so; it returns once the listener accepts
   * (0) or with a negative errno */
  int (*start_listening)(bh_worker_t *w);

  /* Python thread, before start_serving */
  bh_service_config_t config;
  bh_document_t *documents;
  bh_dependency_t *deps;
  size_t ndeps;
  /* the entry's: every other service of the graph, in the supervisor's order
   * (service i + 1), so that its /metrics carries the whole graph */
  bh_service_config_t *graph;
  size_t ngraph;
  int io_started;

  /* I/O thread, before start_serving returns */
  struct bh_bridge *bridge;
  struct bh_batcher *batcher; /* NULL when no API is batchable */
  int fresh_conns;           /* I/O thread: accepted connections with no request yet */

  _Atomic int ready;         /* /readyz: instance built and on_startup hooks run */
  _Atomic int alive;         /* /livez: __is_alive__ */
  _Atomic int io_ready;      /* the I/O thread has initialised the bridge */
};

#endif
