/* Internal to the I/O thread: io.c (thread, listener, shutdown), http.c
 * (connections, llhttp, response writer) and router.c (routes, admission,
 * built-in responses). Nothing here may be touched from the Python side. */
#ifndef BH_HTTP_H
#define BH_HTTP_H

#include "bh.h"

#define BH_BRIDGE_CAPACITY 65536

/* Request flags private to the I/O thread, above the BH_REQ_* bits of bh.h.
 * Python changes flags only with atomic or/and, so these are never lost. */
enum {
  BH_REQ_ADMITTED = 1u << 16,    /* holds a limiter slot and an in-flight gauge */
  BH_REQ_IN_PY = 1u << 17,       /* handed to Python or the batcher: io->inflight */
  BH_REQ_CANCEL_SENT = 1u << 18, /* BH_IN_CANCEL submitted */
};

struct bh_conn;

/* State of the I/O thread; one per worker process. */
typedef struct bh_io {
  bh_worker_t *w;
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_signal_t sigterm;
  uv_timer_t drain_timer;

  struct bh_conn *conns;     /* every open connection (intrusive list) */
  size_t nconns;
  size_t inflight;           /* handed to Python or the batcher, not yet freed */
  int accept_paused;         /* a connection waits in the listener (concurrency) */
  int draining;              /* SIGTERM seen: finish what is in flight */
  int finished;              /* handles closed, uv_run about to return */
  int drain_timer_active;

  /* start-up hand-shake with bh_io_start() */
  pthread_mutex_t start_lock;
  pthread_cond_t start_cond;
  int start_done;
  int start_err;
} bh_io_t;

/* http.c */
void bh_http_on_connection(uv_stream_t *listener, int status);
void bh_http_on_out(bh_out_t *list, void *arg);  /* bridge callback */
void bh_http_drain(bh_io_t *io);        /* close idle connections, mark the rest */
void bh_http_close_all(bh_io_t *io);    /* graceful timeout: close everything */
void bh_io_maybe_finish(bh_io_t *io);   /* io.c: called when conns/inflight drop */
bh_io_t *bh_io_get(void);               /* io.c: this process's I/O thread state */

/* router.c */
typedef enum bh_route_kind {
  BH_ROUTE_API,
  BH_ROUTE_LIVEZ,
  BH_ROUTE_READYZ,
  BH_ROUTE_METRICS,
  BH_ROUTE_DOCUMENT,
  BH_ROUTE_NOT_FOUND,
  BH_ROUTE_METHOD_NOT_ALLOWED
} bh_route_kind_t;

typedef struct bh_route {
  bh_route_kind_t kind;
  int api_index;             /* BH_ROUTE_API: index used by Python */
  const char *allow;         /* BH_ROUTE_METHOD_NOT_ALLOWED: "allow: ...\r\n" */
  const bh_document_t *doc;  /* BH_ROUTE_DOCUMENT */
} bh_route_t;

/* A response produced by C alone; body points to static memory, or to owned
 * (malloc'd, freed once written). */
typedef struct bh_builtin_resp {
  int status;
  const char *content_type;
  const char *body;
  size_t body_len;
  const char *headers;       /* NULL or extra header lines ("allow: POST\r\n") */
  void *owned;
} bh_builtin_resp_t;

/* path excludes the query string; method is an llhttp method number. */
void bh_router_match(const bh_worker_t *w, int method, const char *path,
                     size_t len, bh_route_t *out);
void bh_router_builtin(const bh_worker_t *w, const bh_route_t *r,
                       bh_builtin_resp_t *out);
void bh_router_error(int status, bh_builtin_resp_t *out);
/* The API Python knows by this index, or NULL. */
const bh_api_t *bh_router_api(const bh_worker_t *w, int index);
/* Whether the route counts against the limiter (API calls only). */
int bh_router_limited(const bh_route_t *r);
/* Hands a request to Python (or the API's batcher); -EAGAIN when the ring is
 * full (answer 503). */
int bh_router_admit(bh_worker_t *w, bh_req_t *req);
const char *bh_http_reason(int status);

#endif
