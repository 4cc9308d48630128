/* The service's own description, as the reporting worker found it on import
 * (JSON written by bentohost/_config.py): its APIs and traffic settings. */
#ifndef BH_COMMON_CONFIG_H
#define BH_COMMON_CONFIG_H

#include <stddef.h>

/* The HTTP method of a route: APIs are POST; a task's sub-routes (bentohost/_tasks.py)
 * are also GET (status, result; HEAD too) and PUT (cancel). */
enum { BH_METHOD_POST = 0, BH_METHOD_GET = 1, BH_METHOD_PUT = 2 };

#define BH_API_MAX_SHAPE 8

typedef struct bh_api {
  char *name;
  char *route;        /* "/classify" */
  size_t route_len;
  int index;          /* position in the JSON "apis" list == index used by Python */
  int method;         /* BH_METHOD_*: the one HTTP method the route takes ("method", default POST) */
  int task_route;     /* a task's sub-route ("task": its action), not an API of its own */
  int is_async;
  int is_stream;
  int batchable;
  int needs_request;  /* the method takes a Context: hand Python the request head */
  int batch_root;     /* batchable input is the bare body (positional-only) */
  char *batch_field;  /* batchable input's field name in the JSON object, or NULL */
  int max_batch_size;
  double max_latency_s;
  /* the batch input decoded in C into one array (traffic/rows.c): its numpy dtype's
   * kind ('f', 'i', 'u'; 0: Python decodes every member) and size, and the declared
   * Shape (rows_nshape 0: none; its first dimension may be -1) */
  char rows_kind;
  int rows_size;
  int rows_nshape;
  long long rows_shape[BH_API_MAX_SHAPE];
  /* the input's PIL image fields: their uploads are held in memory when the
   * body is small (server/multipart.c), as the decoded image will be anyway;
   * image_root: the input is one root image, which any file part can be */
  char **image_fields;
  size_t nimage_fields;
  int image_root;
} bh_api_t;

typedef struct bh_service_config {
  char *name;
  int workers;        /* already resolved ("cpu_count" -> a number) */
  int threads;
  double timeout_s;   /* traffic.timeout, default 60 */
  int max_concurrency;/* traffic.max_concurrency, 0 = unlimited (global, all workers) */
  int concurrency;    /* traffic.concurrency, 0 = unset */
  /* the service's `ssl` block (BentoML's keys); the --ssl-* flags override it */
  int ssl_enabled;
  char *ssl_certfile, *ssl_keyfile, *ssl_keyfile_password, *ssl_ca_certs, *ssl_ciphers;
  int ssl_cert_reqs;  /* -1: unset */
  int ssl_version;    /* -1: unset */
  char *cors;         /* http.cors as JSON for server/cors.c (bentohost/_cors.py), NULL: off */
  char *placement;    /* where each worker runs, JSON, one entry per worker index
                         (bentohost/_placement.py; supervisor/placement.c applies it);
                         NULL: nothing to place */
  bh_api_t *apis;
  size_t napis;
} bh_service_config_t;

/* 0, or a negative errno when the JSON is not a service description. */
int bh_config_parse(bh_service_config_t *cfg, const char *json, size_t len);
void bh_config_free(bh_service_config_t *cfg);
/* The dependencies of the entry's description (its "graph" list: every other
 * service of the graph, callers before callees): *deps is a malloc'd array of
 * *ndeps configs (each freed with bh_config_free), NULL when there are none. */
int bh_config_parse_graph(const char *json, size_t len, bh_service_config_t **deps, size_t *ndeps);

#endif
