/* HTTP/1.1 connections on the I/O thread: llhttp parsing, limits, admission,
 * hand-off of requests to the router, and the response writer (whole
 * responses and chunked streams).
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
#include "http.h"
#include "multipart.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <llhttp.h>

#define READ_BUF_SIZE (64 * 1024)
#define PENDING_MAX (256 * 1024)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES ((size_t)64 << 20)
#define REQUEST_TIMEOUT_MIN_MS 30000
#define BODY_INITIAL_MAX ((size_t)1 << 20)
#define CHUNKED_INITIAL 16384
#define JSON_CT "application/json"

enum { HDR_OTHER, HDR_CONTENT_TYPE, HDR_EXPECT };

typedef struct bh_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  llhttp_t parser;
  bh_io_t *io;
  struct bh_conn *prev, *next;
  int refs;

  /* connection state */
  int closing;      /* uv_close() called */
  int reading;
  int read_eof;     /* the client half-closed; close once answered */
  int busy;         /* a message is complete and not yet answered */
  int lingering;    /* answered with connection: close; discarding input */
  int in_process;
  int in_message;   /* between message begin and message complete */
  size_t lingered;
  char client[64];  /* "ip:port", filled on first use */

  /* the request being answered by Python (attached: active->conn == this) */
  bh_req_t *active;
  int streaming;    /* its chunked response has started */
  int stream_raw;   /* HTTP/1.0 client: no chunked coding, close at the end */
  int stream_status;

  /* the message being parsed */
  int err_status;   /* 400/413/429/431 (or 404/405 for refused Expect) */
  char err_body[224]; /* a JSON body for err_status, when not the default */
  int reject_status;/* answer this (429) at message complete; body discarded */
  size_t hdr_bytes;
  uint64_t msg_start_ns;
  bh_route_t route;
  bh_req_t *req;    /* API request being filled */
  bh_multipart_t *mp;
  size_t body_cap;
  uint64_t body_total; /* Content-Length, 0 when chunked */
  uint64_t body_seen;
  int discard_body;
  int fresh;         /* accepted, first request not begun: counts as load */
  int keep_alive;
  int head;
  int http_minor;
  int force_close;

  char hname[20];
  size_t hname_len;
  int hkind;
  char *url;
  size_t url_len, url_cap;
  char *ctype;
  size_t ctype_len, ctype_cap;
  char expect[16];
  size_t expect_len;
  char *hdrs;       /* the header lines as received, for req->head */
  size_t hdrs_len, hdrs_cap;

  /* unparsed input kept while a request is in flight */
  char *pending;
  size_t pending_off, pending_len, pending_cap;
} bh_conn_t;

typedef struct conn_write {
  uv_write_t req;
  bh_conn_t *conn;
  void *owned;       /* freed once its bytes are on the wire */
  bh_req_t *chunk_req; /* a streamed chunk of this request ... */
  size_t chunk_len;  /* ... of this many bytes (back-pressure accounting) */
  int close;
  int final;         /* the end of a response (not a 100 Continue, not a chunk) */
  char data[];       /* the unsent part of a header built on the stack */
} conn_write_t;

/* Reads are handled synchronously in read_cb, so one buffer serves every
 * connection of this (only) I/O thread. */
static char read_buf[READ_BUF_SIZE];

static void conn_close(bh_conn_t *c);
static void conn_process(bh_conn_t *c);
static void conn_after_response(bh_conn_t *c, int close);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* ---------------------------------------------------------------- helpers */

static int buf_append(char **p, size_t *len, size_t *cap, const char *d,
                      size_t n) {
  if (*len + n > *cap) {
    size_t ncap = *cap ? *cap : 64;
    char *np;
    while (ncap < *len + n)
      ncap *= 2;
    np = realloc(*p, ncap);
    if (np == NULL)
      return -ENOMEM;
    *p = np;
    *cap = ncap;
  }
  memcpy(*p + *len, d, n);
  *len += n;
  return 0;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double since_s(uint64_t start_ns) {
  uint64_t t = now_ns();
  return t > start_ns ? (double)(t - start_ns) / 1e9 : 0.0;
}

static uint64_t keepalive_ms(const bh_io_t *io) {
  double s = io->w->opts->keepalive_timeout_s;
  return s > 0 ? (uint64_t)(s * 1000.0) : 1;
}

static uint64_t request_timeout_ms(const bh_io_t *io) {
  uint64_t ms = keepalive_ms(io);
  return ms > REQUEST_TIMEOUT_MIN_MS ? ms : REQUEST_TIMEOUT_MIN_MS;
}

static double api_timeout_s(const bh_worker_t *w) {
  return w->config.timeout_s > 0 ? w->config.timeout_s : 60.0;
}

/* A double as Python's repr() prints it (60 -> "60.0", 0.5 -> "0.5"): the
 * 504 body must match BentoML's f-string byte for byte. */
static void py_float(double v, char *out, size_t cap) {
  int prec;

  for (prec = 1; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, v);
    if (strtod(out, NULL) == v)
      break;
  }
  if (isfinite(v) && strpbrk(out, ".e") == NULL && strlen(out) + 2 < cap)
    strcat(out, ".0");
}

static void conn_on_timer(uv_timer_t *t) {
  conn_close(t->data);
}

static void conn_arm(bh_conn_t *c, uint64_t ms) {
  if (!c->closing)
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

static const char *conn_client(bh_conn_t *c) {
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
  if (!bh_limiter_may_accept(io->w))
    return;
  io->accept_paused = 0;
  bh_http_on_connection((uv_stream_t *)&io->listener, 0);
}

/* The I/O thread is done with req: give back its limiter slot, gauge and
 * drain count, and free it (which removes its temp dir). */
static void req_release(bh_io_t *io, bh_req_t *req) {
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
  if (bh_bridge_submit(&io->w->bridge, req, BH_IN_CANCEL) == 0)
    atomic_fetch_or(&req->flags, BH_REQ_CANCEL_SENT);
  else
    bh_log("worker %d: ring full, could not cancel a request", io->w->index);
}

/* The connection stops waiting for its active request; the request lives on
 * until Python's final message (flag: BH_REQ_GONE or BH_REQ_TIMED_OUT). */
static bh_req_t *conn_detach(bh_conn_t *c, uint32_t why) {
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
  req_release(c->io, c->req);
  c->req = NULL;
}

static void conn_unref(bh_conn_t *c) {
  if (--c->refs > 0)
    return;
  conn_drop_message(c);
  free(c->url);
  free(c->ctype);
  free(c->hdrs);
  free(c->pending);
  free(c);
}

static void conn_on_close(uv_handle_t *h) {
  conn_unref(h->data);
}

/* A new connection almost always carries a request: until its first one
 * begins it counts against traffic.concurrency, or a worker would accept a
 * whole burst of connections before any of them had sent a byte. */
static void conn_not_fresh(bh_conn_t *c) {
  if (c->fresh) {
    c->fresh = 0;
    c->io->w->fresh_conns--;
  }
}

static void conn_close(bh_conn_t *c) {
  bh_io_t *io = c->io;

  if (c->closing)
    return;
  conn_not_fresh(c);
  c->closing = 1;
  c->busy = 1;
  conn_detach(c, BH_REQ_GONE);
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

/* ---------------------------------------------------------------- writer */

/* n streamed bytes of req left us: below the low-water mark, wake a Python
 * writer that waits. Python sets BH_REQ_WANT_WRITABLE and re-checks the
 * count; whoever clears the flag owns the wake-up. */
static void stream_wrote(bh_io_t *io, bh_req_t *req, size_t n) {
  int64_t left = atomic_fetch_sub(&req->pending_bytes, (int64_t)n) - (int64_t)n;

  if (left >= BH_STREAM_LOW_WATER)
    return;
  if (!(atomic_load(&req->flags) & BH_REQ_WANT_WRITABLE))
    return;
  if (atomic_fetch_and(&req->flags, ~(uint32_t)BH_REQ_WANT_WRITABLE) &
      BH_REQ_WANT_WRITABLE) {
    if (bh_bridge_submit(&io->w->bridge, req, BH_IN_WRITABLE) != 0)
      bh_log("worker %d: ring full, a paused stream was not woken", io->w->index);
  }
}

static void write_free(conn_write_t *wr) {
  free(wr->owned);
  free(wr);
}

static void conn_on_write(uv_write_t *req, int status) {
  conn_write_t *wr = (conn_write_t *)req;
  bh_conn_t *c = wr->conn;
  int final = wr->final, close = wr->close;

  /* A detached request is no longer c->active: its accounting is moot. */
  if (wr->chunk_req != NULL && wr->chunk_req == c->active)
    stream_wrote(c->io, wr->chunk_req, wr->chunk_len);
  write_free(wr);
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (final)
    conn_after_response(c, close);
}

/* Writes bufs synchronously when the socket takes it all (the common case:
 * no allocation at all), else queues the rest; with copy_first, what is left
 * of bufs[0] (a header on the caller's stack) is copied first. owned is freed
 * once its bytes are out. Returns 1 when all was written now, 0 when queued
 * (conn_on_write follows), -1 when the connection was closed. */
static int conn_write(bh_conn_t *c, uv_buf_t *bufs, unsigned nbufs,
                      int copy_first, void *owned, bh_req_t *chunk_req,
                      size_t chunk_len, int close, int final) {
  conn_write_t *wr;
  size_t total = 0, extra = 0;
  unsigned i;
  int r;

  for (i = 0; i < nbufs; i++)
    total += bufs[i].len;

  r = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
  if (r == UV_EAGAIN || r == UV_ENOSYS)
    r = 0;
  if (r < 0) {
    free(owned);
    conn_close(c);
    return -1;
  }
  if ((size_t)r == total) {
    free(owned);
    if (chunk_req != NULL)
      stream_wrote(c->io, chunk_req, chunk_len);
    return 1;
  }
  if ((size_t)r >= bufs[0].len)
    copy_first = 0;
  while (nbufs > 0 && (size_t)r >= bufs[0].len) {
    r -= (int)bufs[0].len;
    bufs++;
    nbufs--;
  }
  bufs[0].base += r;
  bufs[0].len -= r;
  if (copy_first)
    extra = bufs[0].len;

  wr = malloc(sizeof(*wr) + extra);
  if (wr == NULL) {
    free(owned);
    conn_close(c);
    return -1;
  }
  if (extra > 0) {
    memcpy(wr->data, bufs[0].base, extra);
    bufs[0].base = wr->data;
  }
  wr->conn = c;
  wr->owned = owned;
  wr->chunk_req = chunk_req;
  wr->chunk_len = chunk_len;
  wr->close = close;
  wr->final = final;
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, nbufs, conn_on_write)) {
    write_free(wr);
    conn_close(c);
    return -1;
  }
  return 0;
}

static int ctype_ok(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n')
      return 0;
  return 1;
}

static int conn_should_close(const bh_conn_t *c) {
  return c->force_close || !c->keep_alive || c->io->draining;
}

static const char *conn_header(const bh_conn_t *c, int close) {
  if (close)
    return "connection: close\r\n";
  if (c->http_minor == 0)
    return "connection: keep-alive\r\n";
  return "";
}

/* Builds a response head into stack (or a malloc'd block when it does not
 * fit; *heap is then set). clen < 0: no content-length (a stream). */
static char *build_head(char *stack, size_t stack_cap, char **heap, int status,
                        const char *ctype, const char *extra, size_t extra_len,
                        long long clen, const char *tail, const char *conn_hdr,
                        size_t *outlen) {
  size_t cap = 200 + strlen(ctype) + extra_len + strlen(tail) + strlen(conn_hdr);
  char *hdr = stack, *p;
  int n;

  *heap = NULL;
  if (cap > stack_cap) {
    if ((hdr = *heap = malloc(cap)) == NULL)
      return NULL;
  }
  n = snprintf(hdr, cap, "HTTP/1.1 %d %s\r\ncontent-type: %s\r\n", status,
               bh_http_reason(status), ctype);
  p = hdr + n;
  if (clen >= 0)
    p += sprintf(p, "content-length: %lld\r\n", clen);
  if (extra != NULL && extra_len > 0) {
    memcpy(p, extra, extra_len);
    p += extra_len;
  }
  p += sprintf(p, "%s%s\r\n", tail, conn_hdr);
  *outlen = (size_t)(p - hdr);
  return hdr;
}

/* Sends one whole response for the current message. owned (may be NULL) is
 * freed once written; extra holds header lines "Name: value\r\n". */
static void conn_respond(bh_conn_t *c, int status, const char *ctype,
                         const char *extra, size_t extra_len, const char *body,
                         size_t len, void *owned) {
  char stack[512], *heap, *hdr;
  uv_buf_t bufs[2];
  size_t hlen;
  int close, r;

  close = conn_should_close(c);
  if (status < 100 || status > 999)
    status = 500;
  if (ctype == NULL || !ctype_ok(ctype))
    ctype = "application/octet-stream";
  hdr = build_head(stack, sizeof(stack), &heap, status, ctype, extra, extra_len,
                   (long long)len, "", conn_header(c, close), &hlen);
  if (hdr == NULL) {
    free(owned);
    conn_close(c);
    return;
  }
  bufs[0] = uv_buf_init(hdr, (unsigned)hlen);
  bufs[1] = uv_buf_init((char *)body, (unsigned)len);

  r = conn_write(c, bufs, (len > 0 && !c->head) ? 2 : 1, 1, owned, NULL, 0,
                 close, 1);
  free(heap);
  if (r == 1)
    conn_after_response(c, close);
}

static void conn_respond_builtin(bh_conn_t *c, const bh_builtin_resp_t *r) {
  conn_respond(c, r->status, r->content_type, r->headers,
               r->headers ? strlen(r->headers) : 0, r->body, r->body_len,
               r->owned);
}

/* A C-made error on an API route: counted like any API response. */
static void conn_respond_api_error(bh_conn_t *c, int api_index,
                                   uint64_t start_ns, int status,
                                   const char *json) {
  bh_worker_t *w = c->io->w;
  bh_builtin_resp_t r;

  bh_metrics_request(w, api_index, status, since_s(start_ns));
  if (status == 429 || status == 503 || status == 504)
    bh_metrics_rejected(w, status);
  if (json != NULL) {
    char *body = strdup(json);
    if (body == NULL) {
      conn_close(c);
      return;
    }
    conn_respond(c, status, JSON_CT, NULL, 0, body, strlen(body), body);
    return;
  }
  bh_router_error(status, &r);
  conn_respond_builtin(c, &r);
}

static void conn_send_continue(bh_conn_t *c) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t buf = uv_buf_init((char *)msg, sizeof(msg) - 1);

  conn_write(c, &buf, 1, 0, NULL, NULL, 0, 0, 0);
}

/* ---------------------------------------------------------------- lingering close */

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
  bh_conn_t *c = req->data;
  if (c->closing)
    return;
  if (status < 0 || c->read_eof)
    conn_close(c);
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
    conn_close(c);
    return;
  }
  conn_start_reading(c);
  conn_arm(c, LINGER_MS);
}

/* ---------------------------------------------------------------- llhttp callbacks */

static int hdr_count(bh_conn_t *c, size_t n) {
  c->hdr_bytes += n;
  if (c->hdr_bytes > c->io->w->opts->max_header_size) {
    c->err_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  bh_conn_t *c = p->data;

  if (c->fresh) {
    /* The request is admitted (and counted in-flight) at its headers, so the
     * connection stops counting as fresh from then on. */
    conn_not_fresh(c);
  }
  c->in_message = 1;
  c->err_status = 0;
  c->err_body[0] = '\0';
  c->reject_status = 0;
  c->hdr_bytes = 0;
  c->url_len = c->ctype_len = c->expect_len = c->hname_len = c->hdrs_len = 0;
  c->hkind = HDR_OTHER;
  c->discard_body = 0;
  c->body_seen = 0;
  c->head = 0;
  c->force_close = 0;
  c->route.kind = BH_ROUTE_NOT_FOUND; /* until the headers are complete */
  c->msg_start_ns = now_ns();
  conn_arm(c, request_timeout_ms(c->io));
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
    return -1;
  return buf_append(&c->url, &c->url_len, &c->url_cap, at, len) ? -1 : 0;
}

static int on_span_counted(llhttp_t *p, const char *at, size_t len) {
  (void)at;
  return hdr_count(p->data, len + 2);
}

/* The header lines are kept as they come (bounded by max_header_size through
 * hdr_count) so that a request that needs them gets one copy in req->head. */
static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
    return -1;
  if (c->hname_len + len <= sizeof(c->hname))
    memcpy(c->hname + c->hname_len, at, len);
  c->hname_len += len;
  return buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, at, len) ? -1 : 0;
}

static int on_header_field_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;
  c->hkind = HDR_OTHER;
  if (c->hname_len == 12 && strncasecmp(c->hname, "content-type", 12) == 0) {
    c->hkind = HDR_CONTENT_TYPE;
    c->ctype_len = 0; /* the last one wins */
  } else if (c->hname_len == 6 && strncasecmp(c->hname, "expect", 6) == 0) {
    c->hkind = HDR_EXPECT;
    c->expect_len = 0;
  }
  c->hname_len = 0;
  return buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, ": ", 2) ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
    return -1;
  if (buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, at, len))
    return -1;
  if (c->hkind == HDR_CONTENT_TYPE)
    return buf_append(&c->ctype, &c->ctype_len, &c->ctype_cap, at, len) ? -1 : 0;
  if (c->hkind == HDR_EXPECT) {
    if (c->expect_len + len <= sizeof(c->expect))
      memcpy(c->expect + c->expect_len, at, len);
    c->expect_len += len;
  }
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;
  c->hkind = HDR_OTHER;
  if (buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, "\r\n", 2))
    return -1;
  return hdr_count(c, 4); /* ": " and CRLF */
}

/* The path without scheme, authority, query or fragment. */
static void url_path(const char *url, size_t len, const char **path,
                     size_t *plen) {
  size_t i = 0;

  if (len > 0 && url[0] != '/') {
    const char *sep = memmem(url, len, "://", 3);
    if (sep != NULL) {
      i = (size_t)(sep - url) + 3;
      while (i < len && url[i] != '/')
        i++;
    }
  }
  *path = url + i;
  for (*plen = 0; i + *plen < len; (*plen)++) {
    char ch = url[i + *plen];
    if (ch == '?' || ch == '#')
      break;
  }
  if (*plen == 0) {
    *path = "/";
    *plen = 1;
  }
}

/* req->head: "METHOD url HTTP/x.y\r\n" + the header lines. */
static int keep_head(bh_conn_t *c, llhttp_t *p, bh_req_t *req) {
  const char *method = llhttp_method_name((llhttp_method_t)p->method);
  size_t cap = strlen(method) + c->url_len + c->hdrs_len + 32;
  int n;

  req->head = malloc(cap);
  if (req->head == NULL)
    return -1;
  n = snprintf(req->head, cap, "%s %.*s HTTP/%d.%d\r\n", method, (int)c->url_len,
               c->url ? c->url : "", p->http_major, p->http_minor);
  if (c->hdrs_len > 0)
    memcpy(req->head + n, c->hdrs, c->hdrs_len);
  req->head_len = (size_t)n + c->hdrs_len;
  req->head[req->head_len] = '\0';
  snprintf(req->client, sizeof(req->client), "%s", conn_client(c));
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;
  bh_worker_t *w = c->io->w;
  const bh_api_t *api;
  const char *path;
  size_t plen;
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_len = (p->flags & F_CONTENT_LENGTH) != 0;
  int has_body = chunked || (has_len && p->content_length > 0);
  int expect_continue, multipart;
  bh_req_t *req;

  c->head = p->method == HTTP_HEAD;
  c->http_minor = p->http_minor;
  expect_continue = c->expect_len == 12 &&
                    strncasecmp(c->expect, "100-continue", 12) == 0 &&
                    p->http_major == 1 && p->http_minor >= 1;

  if (has_len && p->content_length > w->opts->max_body_size) {
    c->err_status = 413;
    return -1;
  }

  url_path(c->url, c->url_len, &path, &plen);
  bh_router_match(w, p->method, path, plen, &c->route);

  if (c->route.kind != BH_ROUTE_API) {
    c->discard_body = 1;
    /* The client waits for our go-ahead: answer now and drop the connection
     * rather than leave it unsure whether the body follows. */
    if (expect_continue && has_body) {
      c->err_status = c->route.kind == BH_ROUTE_METHOD_NOT_ALLOWED ? 405 : 404;
      return -1;
    }
    return 0;
  }

  /* Admission before the body is read: a refused body is discarded as it
   * arrives, never buffered. */
  if (bh_limiter_acquire(w) != 0) {
    if (expect_continue && has_body) {
      c->err_status = 429;
      return -1;
    }
    c->reject_status = 429;
    c->discard_body = 1;
    return 0;
  }
  req = c->req = calloc(1, sizeof(*c->req));
  if (req == NULL) {
    bh_limiter_release(w);
    return -1;
  }
  req->api_index = c->route.api_index;
  req->start_ns = c->msg_start_ns;
  atomic_init(&req->flags, BH_REQ_ADMITTED);
  atomic_init(&req->pending_bytes, 0);
  bh_metrics_inflight(w, req->api_index, +1);

  multipart = c->ctype_len > 0 && bh_multipart_match(c->ctype, c->ctype_len);
  api = bh_router_api(w, req->api_index);
  if (c->ctype_len > 0) {
    req->content_type = strndup(c->ctype, c->ctype_len);
    if (req->content_type == NULL)
      return -1;
  }
  if ((multipart || (api != NULL && api->needs_request)) && keep_head(c, p, req))
    return -1;

  c->body_cap = 0;
  c->body_total = chunked ? 0 : p->content_length;
  if (multipart) {
    int r = bh_multipart_new(&c->mp, c->ctype, c->ctype_len, w->opts->max_body_size);
    if (r == -ENOMEM)
      return -1;
    if (r != 0) {
      c->err_status = 400;
      snprintf(c->err_body, sizeof(c->err_body),
               "{\"error\":\"Invalid multipart body: %s\"}", bh_multipart_error(c->mp));
      return -1;
    }
  } else if (has_body) {
    /* Sized from Content-Length, but a client cannot make us reserve more
     * than BODY_INITIAL_MAX before it has sent the bytes. */
    c->body_cap = chunked ? CHUNKED_INITIAL
                  : p->content_length < BODY_INITIAL_MAX ? (size_t)p->content_length
                  : BODY_INITIAL_MAX;
    req->body = malloc(c->body_cap);
    if (req->body == NULL)
      return -1;
  }
  if (expect_continue && has_body)
    conn_send_continue(c);
  return c->closing ? -1 : 0; /* the 100 Continue may have failed */
}

static int on_chunk_header(llhttp_t *p) {
  bh_conn_t *c = p->data;
  if (p->content_length > c->io->w->opts->max_body_size - c->body_seen) {
    c->err_status = 413;
    return -1;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  bh_req_t *req = c->req;
  size_t need;

  c->body_seen += len;
  if (req == NULL)
    return 0;
  if (c->mp != NULL) {
    if (bh_multipart_feed(c->mp, at, len) == 0)
      return 0;
    c->err_status = bh_multipart_status(c->mp);
    if (c->err_status == 400)
      snprintf(c->err_body, sizeof(c->err_body),
               "{\"error\":\"Invalid multipart body: %s\"}", bh_multipart_error(c->mp));
    else
      bh_log("multipart upload failed: %s", bh_multipart_error(c->mp));
    return -1;
  }
  need = req->body_len + len;
  if (need > c->body_cap) {
    /* glibc moves large blocks with mremap, so doubling stays cheap */
    size_t ncap = c->body_cap ? c->body_cap : CHUNKED_INITIAL;
    char *nb;
    while (ncap < need)
      ncap *= 2;
    if (c->body_total >= need && ncap > c->body_total)
      ncap = c->body_total;
    nb = realloc(req->body, ncap);
    if (nb == NULL)
      return -1;
    req->body = nb;
    c->body_cap = ncap;
  }
  memcpy(req->body + req->body_len, at, len);
  req->body_len = need;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;

  c->in_message = 0;
  c->keep_alive = llhttp_should_keep_alive(p);
  if (p->upgrade)
    c->keep_alive = 0;
  c->busy = 1;
  return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_method = on_span_counted,
  .on_version = on_span_counted,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_header_field_complete = on_header_field_complete,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_chunk_header = on_chunk_header,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------- request flow */

/* Returns 1 when a message completed (consumed bytes were parsed), 0 when all
 * of data was parsed, -1 on a protocol error. */
static int conn_execute(bh_conn_t *c, const char *data, size_t len,
                        size_t *consumed) {
  llhttp_errno_t err = llhttp_execute(&c->parser, data, len);

  if (err == HPE_OK) {
    *consumed = len;
    return 0;
  }
  if ((err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && c->busy) {
    *consumed = (size_t)(llhttp_get_error_pos(&c->parser) - data);
    if (err == HPE_PAUSED_UPGRADE)
      c->keep_alive = 0;
    llhttp_resume(&c->parser);
    return 1;
  }
  return -1;
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
  if (c->err_status == 404 || c->err_status == 405) {
    bh_router_builtin(c->io->w, &c->route, &r);
    conn_respond_builtin(c, &r);
  } else if (api_route && c->err_status != 0) {
    conn_respond_api_error(c, c->route.api_index, c->msg_start_ns, c->err_status,
                           c->err_body[0] ? c->err_body : NULL);
  } else {
    bh_router_error(c->err_status ? c->err_status : 400, &r);
    conn_respond_builtin(c, &r);
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
  conn_detach(c, BH_REQ_TIMED_OUT);
  py_float(api_timeout_s(w), num, sizeof(num));
  snprintf(body, sizeof(body),
           "{\"error\":\"Not able to process the request in %s seconds\"}", num);
  conn_respond_api_error(c, api_index, start, 504, body);
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
    conn_respond_builtin(c, &r);
    return;
  }
  if (c->reject_status != 0) {
    conn_respond_api_error(c, c->route.api_index, c->msg_start_ns,
                           c->reject_status, NULL);
    return;
  }
  req = c->req;
  c->req = NULL;
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
      req_release(io, req);
      conn_respond_api_error(c, api_index, start, status,
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
  ms = (uint64_t)(api_timeout_s(w) * 1000.0);
  elapsed_ms = (now_ns() - req->start_ns) / 1000000u;
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
    if (buf_append(&c->pending, &used, &c->pending_cap, data, len))
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
    r = conn_execute(c, c->pending + c->pending_off, c->pending_len, &consumed);
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
    conn_close(c);
    return;
  }
  conn_start_reading(c);
  conn_arm(c, c->in_message ? request_timeout_ms(c->io) : keepalive_ms(c->io));
}

static void conn_after_response(bh_conn_t *c, int close) {
  if (c->closing)
    return;
  if (close) {
    conn_linger(c);
    return;
  }
  c->busy = 0;
  conn_process(c);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bh_conn_t *c = s->data;
  size_t consumed;
  int r;

  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    /* A half-close still gets its answers, except under a stream: a client
     * that stops sending while it reads an endless response has left. */
    if (nread == UV_EOF && c->busy && !c->lingering && !c->streaming) {
      c->read_eof = 1;
      conn_stop_reading(c);
      return;
    }
    conn_close(c);
    return;
  }
  if (c->lingering) {
    c->lingered += (size_t)nread;
    if (c->lingered > LINGER_MAX_BYTES)
      conn_close(c);
    return;
  }
  if (c->busy) {
    if (conn_keep_pending(c, buf->base, (size_t)nread)) {
      conn_close(c);
      return;
    }
    if (c->pending_len > PENDING_MAX)
      conn_stop_reading(c);
    return;
  }

  if (c->in_message)
    conn_arm(c, request_timeout_ms(c->io));
  r = conn_execute(c, buf->base, (size_t)nread, &consumed);
  if (r < 0) {
    conn_fail(c);
    return;
  }
  if (r == 0)
    return;
  if (conn_keep_pending(c, buf->base + consumed, (size_t)nread - consumed)) {
    conn_close(c);
    return;
  }
  conn_dispatch(c);
  conn_process(c);
}

/* ---------------------------------------------------------------- Python's messages */

static void stream_start(bh_conn_t *c, bh_req_t *req, bh_out_t *msg) {
  char stack[512], *heap, *hdr;
  const char *ctype = msg->content_type;
  uv_buf_t buf;
  size_t hlen;

  uv_timer_stop(&c->timer);
  c->streaming = 1;
  c->stream_status = msg->status >= 100 && msg->status <= 999 ? msg->status : 500;
  /* HTTP/1.0 has no chunked coding: the body ends when the connection does */
  c->stream_raw = c->http_minor == 0;
  if (c->stream_raw)
    c->force_close = 1;
  atomic_fetch_or(&req->flags, BH_REQ_STREAMING);
  if (ctype == NULL || !ctype_ok(ctype))
    ctype = "application/octet-stream";
  hdr = build_head(stack, sizeof(stack), &heap, c->stream_status, ctype,
                   msg->headers, msg->headers_len, -1,
                   c->stream_raw ? "" : "transfer-encoding: chunked\r\n",
                   c->stream_raw ? "connection: close\r\n" : conn_header(c, c->io->draining),
                   &hlen);
  free(msg);
  if (hdr == NULL) {
    conn_close(c);
    return;
  }
  buf = uv_buf_init(hdr, (unsigned)hlen);
  conn_write(c, &buf, 1, 1, NULL, NULL, 0, 0, 0);
  free(heap);
}

static void stream_chunk(bh_conn_t *c, bh_req_t *req, bh_out_t *msg) {
  char line[24];
  uv_buf_t bufs[3];
  size_t len = msg->len;
  int n;

  if (len == 0 || c->head) {
    stream_wrote(c->io, req, len);
    free(msg);
    return;
  }
  if (c->stream_raw) {
    bufs[0] = uv_buf_init((char *)msg->data, (unsigned)len);
    conn_write(c, bufs, 1, 0, msg, req, len, 0, 0);
    return;
  }
  n = snprintf(line, sizeof(line), "%zx\r\n", len);
  bufs[0] = uv_buf_init(line, (unsigned)n);
  bufs[1] = uv_buf_init((char *)msg->data, (unsigned)len);
  bufs[2] = uv_buf_init((char *)"\r\n", 2);
  conn_write(c, bufs, 3, 1, msg, req, len, 0, 0);
}

static void stream_end(bh_conn_t *c, bh_req_t *req) {
  bh_io_t *io = c->io;
  static const char last[] = "0\r\n\r\n";
  uv_buf_t buf = uv_buf_init((char *)last, sizeof(last) - 1);
  int close = conn_should_close(c), raw = c->stream_raw;

  bh_metrics_request(io->w, req->api_index, c->stream_status, since_s(req->start_ns));
  conn_detach(c, 0);
  c->stream_raw = 0;
  req_release(io, req);
  if (raw) {
    conn_after_response(c, 1);
    return;
  }
  if (conn_write(c, &buf, 1, 0, NULL, NULL, 0, close, 1) == 1)
    conn_after_response(c, close);
}

static void out_handle(bh_io_t *io, bh_out_t *msg, int batch_checked) {
  bh_worker_t *w = io->w;
  bh_req_t *req = msg->req;
  bh_conn_t *c;
  int final = msg->kind == BH_OUT_COMPLETE || msg->kind == BH_OUT_STREAM_END;

  if (final && !batch_checked && req->items > 0 && w->batcher != NULL) {
    bh_out_t *parent = NULL;
    if (bh_batcher_member_done(w->batcher, req, msg, &parent) == 1) {
      if (parent != NULL)
        out_handle(io, parent, 1);
      return;
    }
  }

  c = req->conn;
  if (c == NULL || c->active != req || c->closing) {
    /* Detached (timed out, or the client left): nothing goes on the wire. */
    if (msg->kind == BH_OUT_CHUNK)
      stream_wrote(io, req, msg->len);
    if (final) {
      if (atomic_load(&req->flags) & BH_REQ_TIMED_OUT) {
        const bh_api_t *api = bh_router_api(w, req->api_index);
        bh_log("late result for %s after timeout dropped",
               api != NULL && api->route != NULL ? api->route : "?");
      }
      req_release(io, req);
    }
    free(msg);
    return;
  }

  switch (msg->kind) {
  case BH_OUT_COMPLETE:
    if (c->streaming) { /* Python gave up on its stream: end it cleanly */
      free(msg);
      stream_end(c, req);
      return;
    }
    uv_timer_stop(&c->timer);
    bh_metrics_request(w, req->api_index, msg->status, since_s(req->start_ns));
    conn_detach(c, 0);
    /* released first: the next pipelined request may take its slot at once */
    req_release(io, req);
    conn_respond(c, msg->status, msg->content_type, msg->headers,
                 msg->headers_len, msg->data, msg->len, msg);
    return;
  case BH_OUT_STREAM_START:
    if (c->streaming) {
      free(msg);
      return;
    }
    stream_start(c, req, msg);
    return;
  case BH_OUT_CHUNK:
    if (!c->streaming) { /* a chunk before the stream started: drop it */
      stream_wrote(io, req, msg->len);
      free(msg);
      return;
    }
    stream_chunk(c, req, msg);
    return;
  case BH_OUT_STREAM_END:
    if (!c->streaming) { /* an empty stream that never started */
      msg->kind = BH_OUT_COMPLETE;
      msg->status = 200;
      msg->len = 0;
      out_handle(io, msg, 1);
      return;
    }
    free(msg);
    stream_end(c, req);
    return;
  }
  free(msg);
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
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  c->io = io;
  c->refs = 1;
  uv_tcp_init(io->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_on_close);
    return;
  }
  c->refs++;
  uv_timer_init(io->loop, &c->timer);
  c->timer.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  c->keep_alive = 1;
  c->fresh = 1;
  io->w->fresh_conns++;

  c->next = io->conns;
  if (io->conns != NULL)
    io->conns->prev = c;
  io->conns = c;
  io->nconns++;

  conn_start_reading(c);
  if (!c->reading) {
    conn_close(c);
    return;
  }
  conn_arm(c, keepalive_ms(io));
}

#define MERGE_CHUNK_MAX (16u << 10)  /* chunks smaller than this are merged */
#define MERGE_TOTAL_MAX (256u << 10) /* into writes of at most this much */

/* Consecutive chunks of one stream that arrived in the same hand-off are sent as
 * one chunk with one write: a generator yielding small tokens would otherwise
 * cost a system call (and a chunk header) per token. All of them were yielded
 * before this point, so merging delays none. Returns the message to handle, whose
 * next is the first message not merged. */
static bh_out_t *merge_chunks(bh_out_t *msg) {
  size_t total = msg->len;
  int n = 1;
  bh_out_t *m, *next, *merged;
  char *p;

  if (msg->len >= MERGE_CHUNK_MAX)
    return msg;
  for (m = msg->next; m != NULL && m->kind == BH_OUT_CHUNK && m->req == msg->req &&
                      m->len < MERGE_CHUNK_MAX && total + m->len <= MERGE_TOTAL_MAX;
       m = m->next) {
    total += m->len;
    n++;
  }
  if (n == 1)
    return msg;
  /* Same single-block layout as bh_out_new(): freed with one free(). */
  merged = malloc(sizeof(*merged) + total);
  if (merged == NULL)
    return msg; /* handled one by one instead */
  *merged = *msg;
  p = (char *)(merged + 1);
  merged->data = p;
  merged->len = total;
  for (m = msg; n-- > 0; m = next) {
    next = m->next;
    if (m->len > 0) { /* an empty chunk has no data at all */
      memcpy(p, m->data, m->len);
      p += m->len;
    }
    free(m);
  }
  merged->next = m;
  return merged;
}

void bh_http_on_out(bh_out_t *list, void *arg) {
  bh_io_t *io = arg;
  bh_out_t *msg, *next;

  for (msg = list; msg != NULL; msg = next) {
    if (msg->kind == BH_OUT_CHUNK)
      msg = merge_chunks(msg);
    next = msg->next;
    out_handle(io, msg, 0);
  }
  bh_io_maybe_finish(io);
}

void bh_http_reject(bh_req_t *req, int status) {
  bh_io_t *io = bh_io_get();
  bh_conn_t *c = req->conn;
  int api_index = req->api_index;
  uint64_t start = req->start_ns;

  if (c == NULL || c->active != req || c->closing) {
    req_release(io, req);
    return;
  }
  uv_timer_stop(&c->timer);
  conn_detach(c, 0);
  req_release(io, req);
  conn_respond_api_error(c, api_index, start, status, NULL);
}

void bh_http_drain(bh_io_t *io) {
  bh_conn_t *c, *next;

  for (c = io->conns; c != NULL; c = next) {
    next = c->next;
    if (!c->busy && !c->in_message)
      conn_close(c);
  }
}

void bh_http_close_all(bh_io_t *io) {
  while (io->conns != NULL)
    conn_close(io->conns);
}
