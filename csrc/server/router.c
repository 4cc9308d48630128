/* Routing, admission and the responses C gives without asking Python.
 * Runs on the I/O thread only; reads the worker's flags with atomics because
 * the Python side flips them. */
#include "server/internal.h"
#include "traffic/batch.h"
#include "traffic/metrics.h"
#include "traffic/shm.h"

#include <errno.h>
#include <string.h>
#include <llhttp.h>

#define JSON "application/json"
#define TEXT "text/plain; charset=utf-8"
#define STR(s) s, sizeof(s) - 1
#define ALLOW_GET "allow: GET, HEAD\r\n"

static int path_is(const char *path, size_t len, const char *lit, size_t litlen) {
  return len == litlen && memcmp(path, lit, len) == 0;
}

/* APIs take POST; a task's status and result routes GET (and HEAD), its cancel PUT. */
static int route_method_ok(int route_method, int method, int get_like) {
  switch (route_method) {
  case BH_METHOD_GET: return get_like;
  case BH_METHOD_PUT: return method == HTTP_PUT;
  default: return method == HTTP_POST;
  }
}

void bh_router_match(const bh_worker_t *w, int method, const char *path,
                     size_t len, bh_route_t *out) {
  int get_like = method == HTTP_GET || method == HTTP_HEAD;
  const bh_document_t *doc;
  size_t i;

  out->api_index = -1;
  out->allow = NULL;
  out->doc = NULL;

  if (path_is(path, len, STR("/livez")) || path_is(path, len, STR("/healthz"))) {
    out->kind = get_like ? BH_ROUTE_LIVEZ : BH_ROUTE_METHOD_NOT_ALLOWED;
    out->allow = ALLOW_GET;
    return;
  }
  if (path_is(path, len, STR("/readyz"))) {
    out->kind = get_like ? BH_ROUTE_READYZ : BH_ROUTE_METHOD_NOT_ALLOWED;
    out->allow = ALLOW_GET;
    return;
  }
  if (path_is(path, len, STR("/metrics"))) {
    out->kind = get_like ? BH_ROUTE_METRICS : BH_ROUTE_METHOD_NOT_ALLOWED;
    out->allow = ALLOW_GET;
    return;
  }

  /* A handful of APIs per service: a linear scan beats hashing here. */
  for (i = 0; i < w->config.napis; i++) {
    const bh_api_t *api = &w->config.apis[i];
    size_t rlen;
    if (api->route == NULL)
      continue;
    rlen = api->route_len ? api->route_len : strlen(api->route);
    if (path_is(path, len, api->route, rlen)) {
      if (route_method_ok(api->method, method, get_like)) {
        out->kind = BH_ROUTE_API;
        out->api_index = api->index;
      } else {
        out->kind = BH_ROUTE_METHOD_NOT_ALLOWED;
        out->allow = api->method == BH_METHOD_GET ? ALLOW_GET
                     : api->method == BH_METHOD_PUT ? "allow: PUT\r\n"
                                                    : "allow: POST\r\n";
      }
      return;
    }
  }
  /* Documents (schema, docs, the web page) are few and set up before the
   * I/O thread starts, so the list is read without locking. */
  for (doc = w->documents; doc != NULL; doc = doc->next) {
    if (doc->path != NULL && path_is(path, len, doc->path, strlen(doc->path))) {
      out->kind = get_like ? BH_ROUTE_DOCUMENT : BH_ROUTE_METHOD_NOT_ALLOWED;
      out->allow = ALLOW_GET;
      out->doc = doc;
      return;
    }
  }
  out->kind = BH_ROUTE_NOT_FOUND;
}

void bh_router_error(int status, bh_builtin_resp_t *out) {
  out->status = status;
  out->content_type = JSON;
  out->headers = NULL;
  out->owned = NULL;
  switch (status) {
  case 400: out->body = "{\"error\":\"Bad Request\"}"; break;
  case 404: out->body = "{\"error\":\"Not Found\"}"; break;
  case 405: out->body = "{\"error\":\"Method Not Allowed\"}"; break;
  case 413: out->body = "{\"error\":\"Request Entity Too Large\"}"; break;
  case 429:
    out->body = "{\"error\":\"Too many requests\"}";
    out->headers = "retry-after: 1\r\n";
    break;
  case 431: out->body = "{\"error\":\"Request Header Fields Too Large\"}"; break;
  case 408: out->body = "{\"error\":\"Request Timeout\"}"; break;
  case 501: out->body = "{\"error\":\"Not Implemented\"}"; break;
  case 505: out->body = "{\"error\":\"HTTP Version Not Supported\"}"; break;
  /* BentoML answers a shed request with its generic 5xx body: clients match it. */
  case 503: out->body = "{\"error\":\"An unexpected error has occurred, please check the server log.\"}"; break;
  case 500:
  default:
    out->status = 500;
    out->body = "{\"error\":\"Internal Server Error\"}";
    break;
  }
  out->body_len = strlen(out->body);
}

double bh_router_hung_s(const bh_worker_t *w, int waiting) {
  double limit = w->opts->watchdog_factor * bh_api_timeout_s(w), loop, sync;

  if (limit <= 0 || w->shm == NULL)
    return 0;
  loop = bh_shm_stall_s(w->shm, w->slot);
  if (loop > limit)
    return loop;
  /* A long sync call is no hang by itself (it cannot be interrupted, and the
   * caller had its 504): only once requests wait for a thread that none of
   * the stuck ones will free. */
  sync = waiting ? bh_shm_sync_stuck_s(w->shm, w->slot) : 0;
  return sync > limit ? sync : 0;
}

/* This service's series, and at the entry every service's of the graph. */
static char *render_metrics(const bh_worker_t *w, size_t *len) {
  bh_metrics_view_t views[BH_MAX_SERVICES];
  size_t n = 0;

  views[n++] = (bh_metrics_view_t){&w->config, w->service};
  for (size_t i = 0; i < w->ngraph && n < BH_MAX_SERVICES; i++)
    views[n++] = (bh_metrics_view_t){&w->graph[i], (int)i + 1};
  return bh_metrics_render_graph(w->shm, views, n, len);
}

void bh_router_builtin(const bh_worker_t *w, const bh_route_t *r,
                       bh_builtin_resp_t *out) {
  out->content_type = TEXT;
  out->headers = NULL;
  out->owned = NULL;
  switch (r->kind) {
  case BH_ROUTE_LIVEZ:
    if (atomic_load_explicit(&w->alive, memory_order_relaxed)) {
      out->status = 200;
      out->body = "\n";
    } else {
      out->status = 503;
      out->body = "Service is dead because .__is_alive__() returns False.";
    }
    break;
  case BH_ROUTE_READYZ:
    /* hung: a request sent here would wait for a stuck thread, or the worker
     * is about to be replaced; withdrawn: --shutdown-delay, the load
     * balancer is to stop sending */
    if (atomic_load_explicit(&w->ready, memory_order_relaxed) && bh_router_hung_s(w, 1) == 0 &&
        !bh_shm_withdrawn(w->shm) && (w->service != 0 || bh_shm_graph_ready(w->shm))) {
      out->status = 200;
      out->body = "\n";
    } else {
      out->status = 503;
      out->body = "Service is not ready.\n";
    }
    break;
  case BH_ROUTE_METRICS:
    if (w->shm == NULL) {
      bh_router_error(404, out);
      return;
    }
    out->body = render_metrics(w, &out->body_len);
    if (out->body == NULL) {
      bh_router_error(500, out);
      return;
    }
    out->owned = (void *)out->body;
    out->status = 200;
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return;
  case BH_ROUTE_DOCUMENT:
    out->status = 200;
    out->content_type = r->doc->content_type ? r->doc->content_type
                                             : "application/octet-stream";
    out->body = r->doc->body ? r->doc->body : "";
    out->body_len = r->doc->body ? r->doc->len : 0;
    return;
  case BH_ROUTE_PREFLIGHT: /* its Access-Control-* lines go with the head (server/cors.c) */
    out->status = r->status;
    out->body = r->text;
    break;
  case BH_ROUTE_METHOD_NOT_ALLOWED:
    bh_router_error(405, out);
    out->headers = r->allow;
    return;
  case BH_ROUTE_NOT_FOUND:
  default:
    bh_router_error(404, out);
    return;
  }
  out->body_len = strlen(out->body);
}

const bh_api_t *bh_router_api(const bh_worker_t *w, int index) {
  size_t i;

  if (index >= 0 && (size_t)index < w->config.napis &&
      w->config.apis[index].index == index)
    return &w->config.apis[index];
  for (i = 0; i < w->config.napis; i++)
    if (w->config.apis[i].index == index)
      return &w->config.apis[i];
  return NULL;
}

int bh_router_limited(const bh_route_t *r) {
  return r->kind == BH_ROUTE_API;
}

int bh_router_admit(bh_worker_t *w, bh_req_t *req) {
  const bh_api_t *api = bh_router_api(w, req->api_index);

  if (w->batcher != NULL && api != NULL && api->batchable) {
    bh_batcher_enqueue(w->batcher, req);
    return 0;
  }
  return bh_bridge_submit(w->bridge, req, BH_IN_REQUEST);
}
