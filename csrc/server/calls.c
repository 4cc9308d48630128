/* Outbound calls to the worker's dependencies: Python posts a call through the
 * bridge, the I/O thread sends it with the dependency's client (net/client.c,
 * least-busy worker first, keep-alive pools) and hands the response back on the
 * ring, so the Python thread is woken once for many responses and no Python
 * HTTP library is on the path. A streamed call's bytes go to Python as they
 * arrive; Python acknowledges what it consumed, and the call's connection is
 * not read while more than the high-water mark waits unconsumed. */
#include "server/calls.h"
#include "server/internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/waiter.h"
#include "net/client.h"
#include "traffic/dep_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pending_call {
  struct pending_call *prev, *next; /* in flight, for cancellation by id */
  bh_client_call_t *call;
  bh_io_t *io;
  bh_out_t *msg;             /* the request: its bytes stay until the response */
  bh_req_t *carrier;
  size_t unacked;            /* streamed bytes handed to Python, not yet consumed */
  int paused;
  uint64_t start_ns;         /* handed to the client: the dependency metric's start */
} pending_call_t;

static bh_client_t **clients; /* per dependency, on this (only) I/O thread */
static bh_tls_ctx_t *tls_client; /* for https:// dependencies; made on first need */
static size_t nclients;
static pending_call_t *inflight;

static void unlink_call(pending_call_t *p) {
  if (p->prev != NULL)
    p->prev->next = p->next;
  else
    inflight = p->next;
  if (p->next != NULL)
    p->next->prev = p->prev;
}

int bh_calls_start(bh_io_t *io) {
  bh_worker_t *w = io->w;

  if (w->ndeps == 0)
    return 0;
  clients = calloc(w->ndeps, sizeof(*clients));
  if (clients == NULL)
    return -ENOMEM;
  nclients = w->ndeps;
  for (size_t i = 0; i < w->ndeps; i++) {
    const bh_dependency_t *d = &w->deps[i];
    bh_client_target_t *targets = calloc(d->npaths ? d->npaths : 1, sizeof(*targets));
    if (targets == NULL)
      return -ENOMEM;
    /* "tcp://ip:port" for a dependency on another host, "tls://ip:port#name"
     * for one reached by https (name: what its certificate must say), else a
     * Unix socket path; the strings made here are freed once the client has
     * copied them. */
    bh_client_opts_t opts = {0};
    for (size_t k = 0; k < d->npaths; k++) {
      const char *p = d->paths[k];
      int tls = strncmp(p, "tls://", 6) == 0;
      if (tls || strncmp(p, "tcp://", 6) == 0) {
        const char *end = tls && strchr(p, '#') ? strchr(p, '#') : p + strlen(p);
        const char *colon = memrchr(p + 6, ':', (size_t)(end - (p + 6)));
        if (colon == NULL || colon == p + 6 || (tls && *end != '#')) {
          free(targets);
          bh_log("worker %d: bad address for %s: %s", w->index, d->name, p);
          return -EINVAL;
        }
        targets[k].host = strndup(p + 6, (size_t)(colon - (p + 6)));
        targets[k].port = atoi(colon + 1);
        if (tls) {
          targets[k].tls_name = end + 1;
          if (tls_client == NULL) {
            char err[512];
            if (bh_tls_client_ctx_new(&tls_client, NULL, err, sizeof(err)) != 0) {
              bh_log("worker %d: cannot call %s over TLS: %s", w->index, d->name, err);
              return -EINVAL;
            }
          }
          opts.tls = tls_client;
        }
      } else {
        targets[k].unix_path = p;
      }
    }
    int err = bh_client_create(&clients[i], &io->loop, targets, d->npaths, &opts);
    for (size_t k = 0; k < d->npaths; k++)
      free((char *)targets[k].host);
    free(targets);
    if (err != 0) {
      bh_log("worker %d: cannot set up calls to %s: %s", w->index, d->name, uv_strerror(err));
      return err;
    }
  }
  return 0;
}

static void give_back(bh_io_t *io, bh_req_t *carrier) {
  if (carrier->waiter != NULL) { /* a thread blocks on it: wake that thread itself */
    bh_waiter_complete(carrier->waiter);
    return;
  }
  if (bh_bridge_submit(&io->bridge, carrier, BH_IN_RESPONSE) != 0) {
    /* The ring is full: Python is far behind; its own timeout answers the call. */
    bh_log("worker %d: ring full, a dependency's response was dropped", io->w->index);
    bh_req_free(carrier);
  }
}

/* The response's header block into r->head; 0 or -ENOMEM. */
static int take_head(bh_req_t *r, const char *headers, size_t len) {
  if ((r->head = malloc(len + 1)) == NULL)
    return -ENOMEM;
  memcpy(r->head, headers, len);
  r->head[len] = '\0';
  r->head_len = len;
  return 0;
}

static void on_response(bh_client_call_t *call, int status, const char *headers,
                        size_t headers_len, char *body, size_t body_len, void *arg) {
  pending_call_t *p = arg;
  bh_req_t *carrier = p->carrier;

  (void)call;
  unlink_call(p);
  /* Every result counts, transport errors, timeouts and cancellations too
   * (status < 0): a dependency that fails or hangs is what a user looks at
   * this histogram for. */
  bh_dep_metrics_observe(p->io->w, p->msg->status, p->msg->content_type, bh_since_s(p->start_ns));
  carrier->call_status = status;
  carrier->body = body;
  carrier->body_len = body_len;
  if (status > 0 && headers != NULL)
    (void)take_head(carrier, headers, headers_len); /* without: Python reads no headers */
  give_back(p->io, carrier);
  free(p->msg);
  free(p);
}

/* A streamed call's head (first) or body bytes: an entry of their own. Where
 * that fails the call is cancelled, so Python never sees a stream with a
 * hole in it: its end comes as -ECANCELED. */
static void on_data(bh_client_call_t *call, int status, const char *headers, size_t headers_len,
                    char *data, size_t len, void *arg) {
  pending_call_t *p = arg;
  bh_req_t *frag = calloc(1, sizeof(*frag));

  if (frag == NULL) {
    free(data);
    bh_client_cancel(call);
    return;
  }
  frag->call_id = p->carrier->call_id;
  frag->call_status = status;
  frag->body = data;
  frag->body_len = len;
  if ((headers != NULL && take_head(frag, headers, headers_len) != 0) ||
      bh_bridge_submit(&p->io->bridge, frag, BH_IN_RESPONSE_DATA) != 0) {
    bh_log("worker %d: a dependency's stream could not be handed over: cancelled", p->io->w->index);
    bh_req_free(frag);
    bh_client_cancel(call);
    return;
  }
  p->unacked += len;
  if (!p->paused && p->unacked > BH_STREAM_HIGH_WATER) {
    p->paused = 1;
    bh_client_pause(call, 1);
  }
}

void bh_calls_send(bh_io_t *io, bh_out_t *msg) {
  bh_req_t *carrier = msg->req;
  int dep = msg->status, err = -EINVAL;
  pending_call_t *p = NULL;
  uint64_t start_ns = bh_now_ns();
  uv_buf_t body = uv_buf_init((char *)msg->data, (unsigned)msg->len);

  if (dep >= 0 && (size_t)dep < nclients && msg->content_type != NULL &&
      (p = malloc(sizeof(*p))) != NULL) {
    p->io = io;
    p->msg = msg;
    p->carrier = carrier;
    p->unacked = 0;
    p->paused = 0;
    p->start_ns = start_ns;
    err = bh_client_request(clients[dep], "POST", msg->content_type, msg->headers,
                            msg->headers_len, &body, msg->len > 0 ? 1 : 0, carrier->call_timeout_ms,
                            on_response, p, &p->call);
    if (err == 0 && carrier->call_stream)
      (void)bh_client_stream(p->call, on_data); /* cannot fail right after the request */
    if (err == 0) {
      p->prev = NULL;
      p->next = inflight;
      if (inflight != NULL)
        inflight->prev = p;
      inflight = p;
      return;
    }
  }
  bh_dep_metrics_observe(io->w, dep, msg->content_type, bh_since_s(start_ns)); /* refused at once */
  free(p);
  free(msg);
  carrier->call_status = err != 0 ? err : -ENOMEM;
  give_back(io, carrier);
}

static pending_call_t *find_call(uint64_t id) {
  /* Bounded by the calls this worker has in flight. */
  for (pending_call_t *p = inflight; p != NULL; p = p->next)
    if (p->carrier->call_id == id)
      return p;
  return NULL;
}

void bh_calls_cancel(bh_io_t *io, bh_out_t *msg) {
  uint64_t id;

  (void)io;
  if (msg->len == sizeof(id)) {
    memcpy(&id, msg->data, sizeof(id));
    pending_call_t *p = find_call(id);
    if (p != NULL)
      bh_client_cancel(p->call); /* the dependency sees its client leave */
  }
  free(msg);
}

void bh_calls_ack(bh_io_t *io, bh_out_t *msg) {
  uint64_t v[2];
  pending_call_t *p;

  (void)io;
  if (msg->len == sizeof(v)) {
    memcpy(v, msg->data, sizeof(v));
    if ((p = find_call(v[0])) != NULL) { /* else finished meanwhile */
      p->unacked -= v[1] < p->unacked ? (size_t)v[1] : p->unacked;
      if (p->paused && p->unacked <= BH_STREAM_LOW_WATER) {
        p->paused = 0;
        bh_client_pause(p->call, 0);
      }
    }
  }
  free(msg);
}

void bh_calls_close(bh_io_t *io) {
  (void)io;
  for (size_t i = 0; i < nclients; i++)
    if (clients[i] != NULL)
      bh_client_close(clients[i]);
  free(clients);
  clients = NULL;
  nclients = 0;
}
