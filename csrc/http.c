/* HTTP/1.1 connections on the I/O thread: llhttp parsing, limits, hand-off
 * of requests to the router, and the response writer.
 *
 * One request in flight per connection: the parser pauses at the end of each
 * message and resumes once its response is written, so pipelined requests are
 * answered in order without a per-connection response queue. Bytes that
 * arrive meanwhile are kept (up to PENDING_MAX) in conn->pending.
 *
 * A connection stays allocated while a handle or an in-flight request refers
 * to it (refs); it is freed by whichever of the close callbacks or the
 * completion drops the last reference.
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <llhttp.h>

#define READ_BUF_SIZE (64 * 1024)
#define PENDING_MAX (256 * 1024)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES ((size_t)64 << 20)
#define REQUEST_TIMEOUT_MIN_MS 30000
#define BODY_INITIAL_MAX ((size_t)1 << 20)
#define CHUNKED_INITIAL 16384

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

  /* the message being parsed */
  int err_status;   /* 413/431 (or 404/405 for refused Expect) from a callback */
  size_t hdr_bytes;
  bh_route_t route;
  bh_req_t *req;    /* API request being filled */
  size_t body_cap;
  uint64_t body_total; /* Content-Length, 0 when chunked */
  uint64_t body_seen;
  int discard_body;
  int keep_alive;
  int head;
  int http_minor;
  int force_close;

  char hname[16];
  size_t hname_len;
  int hkind;
  char *url;
  size_t url_len, url_cap;
  char *ctype;
  size_t ctype_len, ctype_cap;
  char expect[16];
  size_t expect_len;

  /* unparsed input kept while a request is in flight */
  char *pending;
  size_t pending_off, pending_len, pending_cap;
} bh_conn_t;

typedef struct conn_write {
  uv_write_t req;
  bh_conn_t *conn;
  bh_req_t *owner;   /* freed once its body is on the wire */
  int close;
  int final;         /* a response (not a 100 Continue) */
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

static uint64_t keepalive_ms(const bh_io_t *io) {
  double s = io->w->opts->keepalive_timeout_s;
  return s > 0 ? (uint64_t)(s * 1000.0) : 1;
}

static uint64_t request_timeout_ms(const bh_io_t *io) {
  uint64_t ms = keepalive_ms(io);
  return ms > REQUEST_TIMEOUT_MIN_MS ? ms : REQUEST_TIMEOUT_MIN_MS;
}

static void conn_on_timer(uv_timer_t *t) {
  conn_close(t->data);
}

static void conn_arm(bh_conn_t *c, uint64_t ms) {
  if (!c->closing)
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

static void conn_unref(bh_conn_t *c) {
  if (--c->refs > 0)
    return;
  bh_req_free(c->req);
  free(c->url);
  free(c->ctype);
  free(c->pending);
  free(c);
}

static void conn_on_close(uv_handle_t *h) {
  conn_unref(h->data);
}

static void conn_close(bh_conn_t *c) {
  bh_io_t *io = c->io;

  if (c->closing)
    return;
  c->closing = 1;
  c->busy = 1;
  bh_req_free(c->req);
  c->req = NULL;

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

static void write_free(conn_write_t *wr) {
  bh_req_free(wr->owner);
  free(wr);
}

static void conn_on_write(uv_write_t *req, int status) {
  conn_write_t *wr = (conn_write_t *)req;
  bh_conn_t *c = wr->conn;
  int final = wr->final, close = wr->close;

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
 * of bufs[0] (a header on the caller's stack) is copied first. owner is freed
 * once its bytes are out. Returns 1 when all was written now, 0 when queued
 * (conn_on_write follows), -1 when the connection was closed. */
static int conn_write(bh_conn_t *c, uv_buf_t *bufs, unsigned nbufs,
                      int copy_first, bh_req_t *owner, int close, int final) {
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
    bh_req_free(owner);
    conn_close(c);
    return -1;
  }
  if ((size_t)r == total) {
    bh_req_free(owner);
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
    bh_req_free(owner);
    conn_close(c);
    return -1;
  }
  if (extra > 0) {
    memcpy(wr->data, bufs[0].base, extra);
    bufs[0].base = wr->data;
  }
  wr->conn = c;
  wr->owner = owner;
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

/* Sends one response for the current message. owner (may be NULL) owns body. */
static void conn_respond(bh_conn_t *c, int status, const char *ctype,
                         const char *body, size_t len, const char *allow,
                         bh_req_t *owner) {
  bh_io_t *io = c->io;
  char stack[512], *hdr = stack;
  uv_buf_t bufs[2];
  const char *conn_hdr = "";
  size_t cap;
  int close, n, r;

  close = c->force_close || !c->keep_alive || io->draining;
  if (close)
    conn_hdr = "connection: close\r\n";
  else if (c->http_minor == 0)
    conn_hdr = "connection: keep-alive\r\n";
  if (status < 100 || status > 999)
    status = 500;
  if (ctype == NULL || !ctype_ok(ctype))
    ctype = "application/octet-stream";

  cap = 160 + strlen(ctype) + (allow ? strlen(allow) : 0);
  if (cap > sizeof(stack) && (hdr = malloc(cap)) == NULL) {
    bh_req_free(owner);
    conn_close(c);
    return;
  }
  n = snprintf(hdr, cap,
               "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
               "%s%s%s%s\r\n",
               status, bh_http_reason(status), ctype, len,
               allow ? "allow: " : "", allow ? allow : "", allow ? "\r\n" : "",
               conn_hdr);
  bufs[0] = uv_buf_init(hdr, (unsigned)n);
  bufs[1] = uv_buf_init((char *)body, (unsigned)len);

  r = conn_write(c, bufs, (len > 0 && !c->head) ? 2 : 1, 1, owner, close, 1);
  if (hdr != stack)
    free(hdr);
  if (r == 1)
    conn_after_response(c, close);
}

static void conn_respond_builtin(bh_conn_t *c, const bh_builtin_resp_t *r) {
  conn_respond(c, r->status, r->content_type, r->body, r->body_len, r->allow,
               NULL);
}

static void conn_send_continue(bh_conn_t *c) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t buf = uv_buf_init((char *)msg, sizeof(msg) - 1);

  conn_write(c, &buf, 1, 0, NULL, 0, 0);
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
  bh_req_free(c->req);
  c->req = NULL;
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

  c->in_message = 1;
  c->err_status = 0;
  c->hdr_bytes = 0;
  c->url_len = c->ctype_len = c->expect_len = c->hname_len = 0;
  c->hkind = HDR_OTHER;
  c->discard_body = 0;
  c->body_seen = 0;
  c->head = 0;
  c->force_close = 0;
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

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
    return -1;
  if (c->hname_len + len <= sizeof(c->hname))
    memcpy(c->hname + c->hname_len, at, len);
  c->hname_len += len;
  return 0;
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
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
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

static int on_headers_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;
  bh_worker_t *w = c->io->w;
  const char *path;
  size_t plen;
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_len = (p->flags & F_CONTENT_LENGTH) != 0;
  int has_body = chunked || (has_len && p->content_length > 0);
  int expect_continue;

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

  c->req = calloc(1, sizeof(*c->req));
  if (c->req == NULL)
    return -1;
  c->req->api_index = c->route.api_index;
  if (c->ctype_len > 0) {
    c->req->content_type = strndup(c->ctype, c->ctype_len);
    if (c->req->content_type == NULL)
      return -1;
  }
  c->body_cap = 0;
  c->body_total = chunked ? 0 : p->content_length;
  if (has_body) {
    /* Sized from Content-Length, but a client cannot make us reserve more
     * than BODY_INITIAL_MAX before it has sent the bytes. */
    c->body_cap = chunked ? CHUNKED_INITIAL
                  : p->content_length < BODY_INITIAL_MAX ? (size_t)p->content_length
                  : BODY_INITIAL_MAX;
    c->req->body = malloc(c->body_cap);
    if (c->req->body == NULL)
      return -1;
  }
  if (expect_continue && has_body)
    conn_send_continue(c);
  return c->closing ? -1 : 0; /* the 100 Continue may have failed */
}

static int on_chunk_header(llhttp_t *p) {
  bh_conn_t *c = p->data;
  uint64_t have = c->req ? c->req->body_len : c->body_seen;
  if (p->content_length > c->io->w->opts->max_body_size - have) {
    c->err_status = 413;
    return -1;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  bh_req_t *req = c->req;
  size_t need;

  if (req == NULL) {
    c->body_seen += len;
    return 0;
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

  if (c->closing)
    return;
  c->busy = 1;
  c->in_message = 0;
  c->force_close = 1;
  bh_req_free(c->req);
  c->req = NULL;
  c->pending_len = c->pending_off = 0;
  if (c->err_status == 404 || c->err_status == 405) {
    bh_router_builtin(c->io->w, &c->route, &r);
  } else {
    bh_router_error(c->err_status ? c->err_status : 400, &r);
  }
  c->head = 0;
  conn_respond_builtin(c, &r);
}

/* A complete message: answer it from C or hand it to Python. */
static void conn_dispatch(bh_conn_t *c) {
  bh_builtin_resp_t r;
  bh_req_t *req;

  if (c->closing)
    return;
  uv_timer_stop(&c->timer);
  if (c->route.kind != BH_ROUTE_API) {
    bh_router_builtin(c->io->w, &c->route, &r);
    conn_respond_builtin(c, &r);
    return;
  }
  req = c->req;
  c->req = NULL;
  req->conn = c;
  if (bh_router_admit(c->io->w, req) != 0) {
    bh_req_free(req);
    bh_router_error(503, &r);
    conn_respond_builtin(c, &r);
    return;
  }
  c->refs++;
  c->io->inflight++;
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
    if (nread == UV_EOF && c->busy && !c->lingering) {
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

/* ---------------------------------------------------------------- public */

void bh_http_on_connection(uv_stream_t *listener, int status) {
  bh_io_t *io = listener->data;
  bh_conn_t *c;

  if (status < 0) {
    bh_log("accept: %s", uv_strerror(status));
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

void bh_http_on_complete(bh_req_t *list, void *arg) {
  bh_io_t *io = arg;
  bh_req_t *req, *next;

  for (req = list; req != NULL; req = next) {
    bh_conn_t *c = req->conn;
    next = req->next;
    io->inflight--;
    if (c->closing) {
      bh_req_free(req);
      conn_unref(c);
      continue;
    }
    c->refs--; /* the handles still hold theirs */
    conn_respond(c, req->status, req->resp_content_type, req->resp_body,
                 req->resp_body ? req->resp_len : 0, NULL, req);
  }
  bh_io_maybe_finish(io);
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
