/* Routing, admission and the responses C gives without asking Python
 * (server/router.c). I/O thread only. */
#ifndef BH_SERVER_ROUTER_H
#define BH_SERVER_ROUTER_H

#include <stddef.h>

#include "common/context.h"
#include "common/request.h"

typedef enum bh_route_kind {
  BH_ROUTE_API,
  BH_ROUTE_LIVEZ,
  BH_ROUTE_READYZ,
  BH_ROUTE_METRICS,
  BH_ROUTE_DOCUMENT,
  BH_ROUTE_NOT_FOUND,
  BH_ROUTE_METHOD_NOT_ALLOWED,
  BH_ROUTE_PREFLIGHT         /* a CORS preflight, answered as server/cors.c decided */
} bh_route_kind_t;

typedef struct bh_route {
  bh_route_kind_t kind;
  int api_index;             /* BH_ROUTE_API: index used by Python */
  const char *allow;         /* BH_ROUTE_METHOD_NOT_ALLOWED: "allow: ...\r\n" */
  const bh_document_t *doc;  /* BH_ROUTE_DOCUMENT */
  int status;                /* BH_ROUTE_PREFLIGHT: 200 or 400, ... */
  const char *text;          /* ... and its text body */
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
/* Seconds this worker has gone without progress past what the watchdog
 * allows, 0 while within it: its Python loop with work pending, or, when
 * `waiting` (requests wait for a sync thread), every sync thread inside one
 * call. The loop's measure is also the supervisor's (supervisor/watch.c); the
 * sync verdict is the I/O thread's, which reports it (bh_shm_report_hung). */
double bh_router_hung_s(const bh_worker_t *w, int waiting);

#endif
