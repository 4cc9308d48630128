/* CORS answered on the I/O thread (server/cors.c), as Starlette's CORSMiddleware
 * (which BentoML's http.cors config drives) answers it: a preflight from C alone,
 * and the Access-Control-* / Vary lines on every other response. */
#ifndef BH_SERVER_CORS_H
#define BH_SERVER_CORS_H

#include <stddef.h>

#include "server/router.h"

/* The service's http.cors, compiled once before the I/O thread starts; read-only. */
typedef struct bh_cors bh_cors_t;

/* What one request said about CORS and what its response will carry. Lives in
 * its connection and is reset at each message's start. */
typedef struct bh_cors_req {
  unsigned seen;          /* BH_CORS_* bits: the headers met (the first of each counts) */
  unsigned field;         /* the one whose value is being read now, 0: none */
  char *origin;           /* Origin, as sent (head bytes: bounded by --max-header-size) */
  size_t origin_len, origin_cap;
  char *acrh;             /* Access-Control-Request-Headers */
  size_t acrh_len, acrh_cap;
  char acrm[24];          /* Access-Control-Request-Method; longer is no method we allow */
  size_t acrm_len;
  int preflight;          /* the request is a preflight: C answers it */
  int status;             /* ... with this status (200 or 400) ... */
  char text[64];          /* ... and this body */
  char *out;              /* header lines for this request's response, "name: value\r\n"... */
  size_t out_len, out_cap;
} bh_cors_req_t;

/* json: the "cors" object that bentohost/_cors.py wrote into the service
 * config. 0, or -EINVAL / -ENOMEM with one line in err. */
int bh_cors_new(bh_cors_t **out, const char *json, char *err, size_t errlen);
void bh_cors_free(bh_cors_t *cors);

/* A new message: forget the previous one's headers and lines. */
void bh_cors_reset(bh_cors_req_t *r);
/* A header name ended: 1 when it is one CORS reads (its value follows through
 * bh_cors_value), 0 otherwise. */
int bh_cors_field(bh_cors_req_t *r, const char *name, size_t len);
/* A piece of that header's value; 0 or -ENOMEM. */
int bh_cors_value(bh_cors_req_t *r, const char *at, size_t len);
/* The head is complete: decides preflight or not, and writes r->out. 0 or -ENOMEM. */
int bh_cors_head(const bh_cors_t *cors, bh_cors_req_t *r, int method);
/* After routing: a preflight takes the route over (any path, as Starlette does). */
void bh_cors_route(const bh_cors_req_t *r, bh_route_t *route);
/* The connection is freed. */
void bh_cors_req_free(bh_cors_req_t *r);

#endif
