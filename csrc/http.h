/* Internal to the I/O thread: io.c (thread, listener, shutdown), http.c
 * (connections, llhttp, response writer) and router.c (routes, admission,
 * built-in responses). Nothing here may be touched from the Python side. */
#ifndef BH_HTTP_H
#define BH_HTTP_H

#include "bh.h"

#define BH_BRIDGE_CAPACITY 65536

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
  size_t inflight;           /* submitted to Python, not yet completed */
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
void bh_http_on_complete(bh_req_t *list, void *arg);  /* bridge callback */
void bh_http_drain(bh_io_t *io);        /* close idle connections, mark the rest */
void bh_http_close_all(bh_io_t *io);    /* graceful timeout: close everything */
void bh_io_maybe_finish(bh_io_t *io);   /* io.c: called when conns/inflight drop */

/* router.c */
typedef enum bh_route_kind {
  BH_ROUTE_API,
  BH_ROUTE_LIVEZ,
  BH_ROUTE_READYZ,
  BH_ROUTE_NOT_FOUND,
  BH_ROUTE_METHOD_NOT_ALLOWED
} bh_route_kind_t;

typedef struct bh_route {
  bh_route_kind_t kind;
  int api_index;             /* BH_ROUTE_API: index used by Python */
  const char *allow;         /* BH_ROUTE_METHOD_NOT_ALLOWED: allow header value */
} bh_route_t;

/* A response produced by C alone; body points to static or owned memory. */
typedef struct bh_builtin_resp {
  int status;
  const char *content_type;
  const char *body;
  size_t body_len;
  const char *allow;         /* NULL or the value of an allow header */
} bh_builtin_resp_t;

/* path excludes the query string; method is an llhttp method number. */
void bh_router_match(const bh_worker_t *w, int method, const char *path,
                     size_t len, bh_route_t *out);
void bh_router_builtin(const bh_worker_t *w, const bh_route_t *r,
                       bh_builtin_resp_t *out);
void bh_router_error(int status, bh_builtin_resp_t *out);
/* Hands a request to Python; -EAGAIN when the ring is full (answer 503). */
int bh_router_admit(bh_worker_t *w, bh_req_t *req);
const char *bh_http_reason(int status);

#endif
