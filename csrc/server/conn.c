/* HTTP/1.1 connections on the I/O thread: accept, reading, pipelining,
 * keep-alive and lingering close, and the hand-off of complete requests.
 *
 * One request in flight per connection: the parser pauses at the end of each
 * message and resumes once its response is written, so pipelined requests are
 * answered in order without a per-connection response queue. Bytes that
 * arrive meanwhile are kept (up to PENDING_MAX) in conn->pending.
 *
 * A connection is freed once both of its handles are closed (refs). A request
 * handed to Python (conn->active) points back at its connection through
 * req->conn until its response starts; when the connection goes away or C
 * answers 504 first, the request is detached (req->conn = NULL) and lives on,
 * alone, until Python's final message for it arrives: Python's handle stays
 * valid whatever happens to the socket.
 *
 * The request timeout reuses the connection's timer: while a request is in
 * Python the connection reads nothing it needs a timer for, and a connection
 * has at most one request waiting for its response headers.
 */
#include "server/internal.h"
#include "common/clock.h"
#include "common/fmt.h"
#include "common/log.h"
#include "traffic/limiter.h"
#include "traffic/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#define READ_BUF_SIZE (64 * 1024)
#define PENDING_MAX (256 * 1024)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES ((size_t)64 << 20)

/* Reads are handled synchronously in read_cb, so one buffer serves every
 * connection of this (only) I/O thread; another the plaintext of TLS. */
static char read_buf[READ_BUF_SIZE];
static char tls_plain[READ_BUF_SIZE];

static void conn_process(bh_conn_t *c);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void conn_fail(bh_conn_t *c);

/* Idle keep-alive and lingering connections are closed; a message whose head
 * or body missed its deadline is answered 408 first. */
static void conn_on_timer(uv_timer_t *t) {
  bh_conn_t *c = t->data;

  if (c->in_message && !c->busy && !c->lingering) {
    c->err_status = 408;
    c->err_reason = c->in_head ? BH_REJ_HEADER_TIMEOUT : BH_REJ_BODY_TIMEOUT;
    conn_fail(c);
    return;
  }
  bh_conn_close(c);
}

void bh_conn_arm(bh_conn_t *c, uint64_t ms) {
  if (!c->closing)
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

/* Total deadlines, not idle timers: a client that trickles a byte at a time
 * re-arms nothing. The body's grows by one second per min_body_rate bytes. */
void bh_conn_arm_deadline(bh_conn_t *c) {
  const bh_options_t *o = c->io->w->opts;
  double deadline_s;
  uint64_t now = bh_now_ns(), at;

  if (c->in_head) {
    deadline_s = o->header_timeout_s;
    at = c->msg_start_ns;
  } else {
    deadline_s = o->body_timeout_s;
    if (o->min_body_rate > 0)
      deadline_s += (double)c->body_seen / (double)o->min_body_rate;
    at = c->body_start_ns;
  }
  at += (uint64_t)(deadline_s * 1e9);
  bh_conn_arm(c, at > now ? (at - now) / 1000000u + 1 : 1);
}

const char *bh_conn_client(bh_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[INET6_ADDRSTRLEN] = "";
  int port = 0;

  if (c->client[0] != '\0')
    return c->client;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET) {
      const struct sockaddr_in *sa = (const struct sockaddr_in *)&ss;
      uv_ip4_name(sa, ip, sizeof(ip));
      port = ntohs(sa->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&ss;
      uv_ip6_name(sa, ip, sizeof(ip));
      port = ntohs(sa->sin6_port);
    }
  }
  snprintf(c->client, sizeof(c->client), "%s:%d", ip[0] ? ip : "unknown", port);
  return c->client;
}

/* ---------------------------------------------------------------- request lifetime */

/* traffic.concurrency: the listener callback leaves a connection it may not
 * take in the kernel's queue without calling uv_accept(); libuv then stops
 * polling the listener until uv_accept() is called. Whenever capacity frees
 * up, take the waiting connection (libuv resumes polling by itself). */
static void io_maybe_resume_accept(bh_io_t *io) {
  if (!io->accept_paused || io->draining || io->finished)
    return;
  if (!bh_limiter_may_accept(io->w) || io->nconns >= (size_t)io->w->opts->max_connections)
    return;
  io->accept_paused = 0;
  bh_http_on_connection((uv_stream_t *)&io->listener, 0);
}

/* The I/O thread is done with req: give back its limiter slot, gauge and
 * drain count, and free it (which removes its temp dir). */
void bh_req_release(bh_io_t *io, bh_req_t *req) {
  uint32_t f;

  if (req == NULL)
    return;
  f = atomic_load(&req->flags);
  if (f & BH_REQ_ADMITTED) {
    bh_limiter_release(io->w);
    bh_metrics_inflight(io->w, req->api_index, -1);
  }
  if (f & BH_REQ_IN_PY)
    io->inflight--;
  bh_req_free(req);
  if (f & BH_REQ_ADMITTED)
    io_maybe_resume_accept(io);
  if (f & BH_REQ_IN_PY)
    bh_io_maybe_finish(io);
}

static void req_cancel(bh_io_t *io, bh_req_t *req) {
  uint32_t f = atomic_load(&req->flags);

  if (!(f & BH_REQ_IN_PY) || (f & BH_REQ_CANCEL_SENT))
    return;
  if (bh_bridge_submit(&io->bridge, req, BH_IN_CANCEL) == 0)
    atomic_fetch_or(&req->flags, BH_REQ_CANCEL_SENT);
  else
    bh_log("worker %d: ring full, could not cancel a request", io->w->index);
}

/* The connection stops waiting for its active request; the request lives on
 * until Python's final message (flag: BH_REQ_GONE or BH_REQ_TIMED_OUT). */
bh_req_t *bh_conn_detach(bh_conn_t *c, uint32_t why) {
  bh_req_t *req = c->active;

  if (req == NULL)
    return NULL;
  c->active = NULL;
  c->streaming = 0;
  req->conn = NULL;
  atomic_fetch_or(&req->flags, why);
  if (why != 0)
    req_cancel(c->io, req);
  return req;
}

/* The message being read is abandoned. */
static void conn_drop_message(bh_conn_t *c) {
  bh_multipart_free(c->mp);
  c->mp = NULL;
  bh_req_release(c->io, c->req);
  c->req = NULL;
}

static void conn_unref(bh_conn_t *c) {
  if (--c->refs > 0)
    return;
  conn_drop_message(c);
  free(c->url);
  free(c->ctype);
  free(c->hdrs);
  bh_cors_req_free(&c->cors);
  free(c->pending);
  bh_tls_free(c->tls);
  free(c);
}

static void conn_on_close(uv_handle_t *h) {
  conn_unref(h->data);
}

/* A new connection almost always carries a request: until its first one
 * begins it counts against traffic.concurrency, or a worker would accept a
 * whole burst of connections before any of them had sent a byte. */
void bh_conn_not_fresh(bh_conn_t *c) {
  if (c->fresh) {
    c->fresh = 0;
    c->io->w->fresh_conns--;
  }
}

void bh_conn_close(bh_conn_t *c) {
  bh_io_t *io = c->io;

  if (c->closing)
    return;
  bh_access_end(c);
  bh_conn_not_fresh(c);
  c->closing = 1;
  c->busy = 1;
  bh_conn_detach(c, BH_REQ_GONE);
  conn_drop_message(c);

  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    io->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  io->nconns--;

  uv_close((uv_handle_t *)&c->tcp, conn_on_close);
  uv_close((uv_handle_t *)&c->timer, conn_on_close);
  io_maybe_resume_accept(io);
  bh_io_maybe_finish(io);
}

static void conn_start_reading(bh_conn_t *c) {
  if (c->reading || c->read_eof || c->closing)
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read) == 0)
    c->reading = 1;
}

static void conn_stop_reading(bh_conn_t *c) {
  if (!c->reading)
    return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}
/* ---------------------------------------------------------------- lingering close */

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
  bh_conn_t *c = req->data;
  if (c->closing)
    return;
  if (status < 0 || c->read_eof)
    bh_conn_close(c);
}

/* Closing a socket with unread input makes the kernel send RST, which can
 * destroy the response before the client reads it. So: FIN our side, then
 * discard what the client still sends until it closes or LINGER_MS pass. */
static void conn_linger(bh_conn_t *c) {
  if (c->closing || c->lingering)
    return;
  c->lingering = 1;
  c->busy = 1;
  conn_drop_message(c);
  c->pending_len = c->pending_off = 0;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_on_shutdown)) {
    bh_conn_close(c);
    return;
  }
  conn_start_reading(c);
  bh_conn_arm(c, LINGER_MS);
}
static void conn_fail(bh_conn_t *c) {
  bh_builtin_resp_t r;
  int api_route = c->route.kind == BH_ROUTE_API && c->in_message;

  if (c->closing)
    return;
  c->busy = 1;
  c->in_message = 0;
  c->force_close = 1;
  conn_drop_message(c);
  c->pending_len = c->pending_off = 0;
  c->head = 0;
  bh_metrics_refused(c->io->w, c->err_reason >= 0 ? c->err_reason
                                                   : bh_metrics_reason_of(c->err_status));
  if (c->err_status == 404 || c->err_status == 405) {
    bh_router_builtin(c->io->w, &c->route, &r);
    bh_conn_respond_builtin(c, &r);
  } else if (api_route && c->err_status != 0) {
    bh_conn_respond_api_error(c, c->route.api_index, c->msg_start_ns, c->err_status,
                           c->err_body[0] ? c->err_body : NULL);
  } else {
    bh_router_error(c->err_status ? c->err_status : 400, &r);
    bh_conn_respond_builtin(c, &r);
  }
}

static void conn_on_request_timeout(uv_timer_t *t) {
  bh_conn_t *c = t->data;
  bh_worker_t *w = c->io->w;
  bh_req_t *req = c->active;
  char num[32], body[128];
  int api_index;
  uint64_t start;

  if (req == NULL || c->streaming || c->closing)
    return;
  api_index = req->api_index;
  start = req->start_ns;
  bh_conn_detach(c, BH_REQ_TIMED_OUT);
  bh_py_float(bh_api_timeout_s(w), num, sizeof(num));
  snprintf(body, sizeof(body),
           "{\"error\":\"Not able to process the request in %s seconds\"}", num);
  bh_conn_respond_api_error(c, api_index, start, 504, body);
}

/* A complete message: answer it from C or hand it to Python. */
static void conn_dispatch(bh_conn_t *c) {
  bh_io_t *io = c->io;
  bh_worker_t *w = io->w;
  bh_builtin_resp_t r;
  bh_req_t *req;
  uint64_t ms, elapsed_ms;

  if (c->closing)
    return;
  uv_timer_stop(&c->timer);
  if (c->route.kind != BH_ROUTE_API) {
    bh_router_builtin(w, &c->route, &r);
    bh_conn_respond_builtin(c, &r);
    return;
  }
  if (c->reject_status != 0) {
    bh_conn_respond_api_error(c, c->route.api_index, c->msg_start_ns,
                           c->reject_status, NULL);
    return;
  }
  req = c->req;
  c->req = NULL;
  /* The max_concurrency slot, now that the whole body is here; none for a
   * worker being replaced (io->hung): its Python would never answer. */
  if (io->hung || bh_limiter_acquire(w) != 0) {
    bh_multipart_free(c->mp);
    c->mp = NULL;
    bh_req_release(io, req);
    bh_conn_respond_api_error(c, c->route.api_index, c->msg_start_ns, io->hung ? 503 : 429, NULL);
    return;
  }
  atomic_fetch_or(&req->flags, BH_REQ_ADMITTED);
  bh_metrics_inflight(w, req->api_index, +1);
  if (c->mp != NULL) {
    int bad = bh_multipart_finish(c->mp, req);
    char body[224];
    int status = bh_multipart_status(c->mp);
    if (bad)
      snprintf(body, sizeof(body), "{\"error\":\"Invalid multipart body: %s\"}",
               bh_multipart_error(c->mp));
    bh_multipart_free(c->mp);
    c->mp = NULL;
    if (bad) {
      int api_index = req->api_index;
      uint64_t start = req->start_ns;
      bh_req_release(io, req);
      bh_conn_respond_api_error(c, api_index, start, status,
                             status == 400 ? body : NULL);
      return;
    }
  }

  req->conn = c;
  c->active = req;
  c->streaming = 0;
  atomic_fetch_or(&req->flags, BH_REQ_IN_PY);
  io->inflight++;
  /* traffic.timeout counts from arrival, and only until the response starts */
  ms = (uint64_t)(bh_api_timeout_s(w) * 1000.0);
  elapsed_ms = (bh_now_ns() - req->start_ns) / 1000000u;
  uv_timer_start(&c->timer, conn_on_request_timeout,
                 ms > elapsed_ms ? ms - elapsed_ms : 1, 0);
  if (bh_router_admit(w, req) != 0)
    bh_http_reject(req, 503);
}

static int conn_keep_pending(bh_conn_t *c, const char *data, size_t len) {
  if (len == 0)
    return 0;
  if (c->pending_off > 0 && c->pending_len + len > c->pending_cap) {
    memmove(c->pending, c->pending + c->pending_off, c->pending_len);
    c->pending_off = 0;
  }
  {
    size_t used = c->pending_off + c->pending_len;
    if (bh_buf_append(&c->pending, &used, &c->pending_cap, data, len))
      return -1;
    c->pending_len = used - c->pending_off;
  }
  return 0;
}

/* Parses what was kept while busy, then goes back to reading. Re-entrant
 * calls (a response written synchronously from inside the loop) return at
 * once: the outer loop carries on. */
static void conn_process(bh_conn_t *c) {
  size_t consumed;
  int r;

  if (c->in_process)
    return;
  c->in_process = 1;
  while (!c->busy && !c->closing && c->pending_len > 0) {
    r = bh_conn_execute(c, c->pending + c->pending_off, c->pending_len, &consumed);
    if (r == 0) {
      c->pending_off = c->pending_len = 0;
    } else if (r < 0) {
      conn_fail(c);
    } else {
      c->pending_off += consumed;
      c->pending_len -= consumed;
      if (c->pending_len == 0)
        c->pending_off = 0;
      conn_dispatch(c);
    }
  }
  c->in_process = 0;

  if (c->busy || c->closing)
    return;
  if (c->read_eof || (c->io->draining && !c->in_message)) {
    bh_conn_close(c);
    return;
  }
  conn_start_reading(c);
  if (c->in_message)
    bh_conn_arm_deadline(c);
  else
    bh_conn_arm(c, bh_keepalive_ms(c->io));
}

void bh_conn_after_response(bh_conn_t *c, int close) {
  if (c->closing)
    return;
  bh_access_end(c);
  if (close) {
    conn_linger(c);
    return;
  }
  c->busy = 0;
  conn_process(c);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  if (bh_conn_body_buffer(h->data, buf) == 0)
    return;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void conn_input(bh_conn_t *c, const char *data, size_t len);
static void conn_tls_input(bh_conn_t *c, const char *data, size_t len);

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bh_conn_t *c = s->data;

  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    /* A half-close still gets its answers, except under a stream: a client
     * that stops sending while it reads an endless response has left. On a
     * dependency's private socket the caller is our own client, which never
     * half-closes: EOF there means the call was given up, so cancel it. */
    if (nread == UV_EOF && c->busy && !c->lingering && !c->streaming && c->io->w->service == 0) {
      c->read_eof = 1;
      conn_stop_reading(c);
      return;
    }
    bh_conn_close(c);
    return;
  }
  if (c->lingering) {
    c->lingered += (size_t)nread;
    if (c->lingered > LINGER_MAX_BYTES)
      bh_conn_close(c);
    return;
  }
  if (c->tls != NULL)
    conn_tls_input(c, buf->base, (size_t)nread);
  else
    conn_input(c, buf->base, (size_t)nread);
}

/* Plaintext from the client: kept while a request is in flight, else parsed. */
static void conn_input(bh_conn_t *c, const char *data, size_t len) {
  size_t consumed;
  int r;

  if (c->busy) {
    if (conn_keep_pending(c, data, len)) {
      bh_conn_close(c);
      return;
    }
    if (c->pending_len > PENDING_MAX)
      conn_stop_reading(c);
    return;
  }

  if (c->in_message)
    bh_conn_arm_deadline(c);
  r = bh_conn_execute(c, data, len, &consumed);
  if (r < 0) {
    conn_fail(c);
    return;
  }
  if (r == 0)
    return;
  if (conn_keep_pending(c, data + consumed, len - consumed)) {
    bh_conn_close(c);
    return;
  }
  conn_dispatch(c);
  conn_process(c);
}

/* Ciphertext from the client: decrypted record by record into conn_input;
 * what the engine has to say (handshake messages, tickets, an alert) goes
 * out at once. A handshake that fails (plain HTTP on the TLS port, garbage,
 * a client certificate that did not verify) closes the connection and is
 * counted; the keep-alive timer armed at accept bounds a slow one. */
static void conn_tls_input(bh_conn_t *c, const char *data, size_t len) {
  ssize_t got = 0;
  int was_done = bh_tls_handshake_done(c->tls);

  if (bh_tls_feed(c->tls, data, len) != 0) {
    bh_conn_close(c);
    return;
  }
  /* each turn consumes fed bytes: bounded by len */
  while (!c->closing && (got = bh_tls_read(c->tls, tls_plain, sizeof(tls_plain))) > 0)
    conn_input(c, tls_plain, (size_t)got);
  if (c->closing)
    return;
  if (bh_tls_send_pending(c) != 0)
    return;
  if (got < 0) {
    if (!was_done && !bh_tls_handshake_done(c->tls))
      bh_metrics_refused(c->io->w, BH_REJ_TLS_HANDSHAKE);
    bh_conn_close(c);
  }
}
/* ---------------------------------------------------------------- public */

void bh_http_on_connection(uv_stream_t *listener, int status) {
  bh_io_t *io = listener->data;
  bh_conn_t *c;

  if (status < 0) {
    bh_log("accept: %s", uv_strerror(status));
    return;
  }
  /* See io_maybe_resume_accept(): not accepting pauses the listener. */
  if (!bh_limiter_may_accept(io->w)) {
    io->accept_paused = 1;
    return;
  }
  if (io->nconns >= (size_t)io->w->opts->max_connections) {
    if (!io->accept_paused)
      bh_metrics_refused(io->w, BH_REJ_CONNECTIONS);
    io->accept_paused = 1;
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  c->io = io;
  c->refs = 1;
  uv_tcp_init(&io->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_on_close);
    return;
  }
  c->refs++;
  uv_timer_init(&io->loop, &c->timer);
  c->timer.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &bh_parser_settings);
  c->parser.data = c;
  c->keep_alive = 1;
  c->fresh = 1;
  io->w->fresh_conns++;

  c->next = io->conns;
  if (io->conns != NULL)
    io->conns->prev = c;
  io->conns = c;
  io->nconns++;

  if (io->w->tls != NULL && (c->tls = bh_tls_new(io->w->tls)) == NULL) {
    bh_conn_close(c);
    return;
  }
  conn_start_reading(c);
  if (!c->reading) {
    bh_conn_close(c);
    return;
  }
  bh_conn_arm(c, bh_keepalive_ms(io));
}
/* How long a drain waits for the first request of a connection accepted
 * just before it: the request was on its way or was never sent. */
#define DRAIN_FRESH_MS 1000

/* A keep-alive connection between requests may be closed (its client knows a
 * reused connection can be), but one accepted a moment ago has not sent its
 * first request yet: closing it would fail a request the client just sent.
 * It is answered once, with connection: close, or closes soon. */
void bh_http_drain(bh_io_t *io) {
  bh_conn_t *c, *next;
  uint64_t fresh_ms = bh_keepalive_ms(io) < DRAIN_FRESH_MS ? bh_keepalive_ms(io) : DRAIN_FRESH_MS;

  for (c = io->conns; c != NULL; c = next) {
    next = c->next;
    if (c->busy || c->in_message)
      continue;
    if (c->fresh)
      bh_conn_arm(c, fresh_ms);
    else
      bh_conn_close(c);
  }
}

/* Its request is with Python and no byte of the answer has gone out. */
static int conn_waiting(const bh_conn_t *c) {
  return c->active != NULL && !c->streaming && !c->closing;
}

size_t bh_http_waiting(const bh_io_t *io) {
  size_t n = 0;

  for (const bh_conn_t *c = io->conns; c != NULL; c = c->next)
    n += conn_waiting(c);
  return n;
}

size_t bh_http_fail_waiting(bh_io_t *io, int status) {
  bh_conn_t *c, *next;
  size_t n = 0;

  for (c = io->conns; c != NULL; c = next) {
    next = c->next; /* a close only unlinks c; its memory lasts until the close callback */
    if (!conn_waiting(c))
      continue;
    int api_index = c->active->api_index;
    uint64_t start = c->active->start_ns;
    uv_timer_stop(&c->timer);
    bh_conn_detach(c, BH_REQ_TIMED_OUT);
    bh_conn_respond_api_error(c, api_index, start, status, NULL);
    n++;
  }
  return n;
}

void bh_http_close_all(bh_io_t *io) {
  while (io->conns != NULL)
    bh_conn_close(io->conns);
}
