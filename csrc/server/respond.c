/* The response writer: response heads, whole responses (Python's or C's own),
 * 100 Continue, and writes that are tried synchronously before being queued. */
#include "server/internal.h"
#include "common/clock.h"
#include "common/fmt.h"
#include "traffic/metrics.h"

#include <math.h>
#include <stdio.h>

typedef struct bh_conn_write {
  uv_write_t req;
  bh_conn_t *conn;
  void *owned;       /* freed once its bytes are on the wire */
  bh_req_t *chunk_req; /* a streamed chunk of this request ... */
  size_t chunk_len;  /* ... of this many bytes (back-pressure accounting) */
  int close;
  int final;         /* the end of a response (not a 100 Continue, not a chunk) */
  char data[];       /* the unsent part of a header built on the stack */
} conn_write_t;
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
    bh_stream_wrote(c->io, wr->chunk_req, wr->chunk_len);
  write_free(wr);
  if (c->closing)
    return;
  if (status < 0) {
    bh_conn_close(c);
    return;
  }
  if (final)
    bh_conn_after_response(c, close);
}

/* Writes bufs synchronously when the socket takes it all (the common case:
 * no allocation at all), else queues the rest; with copy_first, what is left
 * of bufs[0] (a header on the caller's stack) is copied first. owned is freed
 * once its bytes are out. Returns 1 when all was written now, 0 when queued
 * (conn_on_write follows), -1 when the connection was closed. */
static int conn_write_raw(bh_conn_t *c, uv_buf_t *bufs, unsigned nbufs, int copy_first,
                          void *owned, bh_req_t *chunk_req, size_t chunk_len, int close,
                          int final) {
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
    bh_conn_close(c);
    return -1;
  }
  if ((size_t)r == total) {
    free(owned);
    if (chunk_req != NULL)
      bh_stream_wrote(c->io, chunk_req, chunk_len);
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
    bh_conn_close(c);
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
    bh_conn_close(c);
    return -1;
  }
  return 0;
}

/* The plaintext of one TLS record at most. */
#define TLS_RECORD_MAX 16384

/* What the TLS engine has to send (handshake messages, encrypted records),
 * sent now or copied into a queued write. 0, or -1 when the connection was
 * closed. */
static int tls_send(bh_conn_t *c, bh_req_t *chunk_req, size_t chunk_len, int close, int final) {
  const char *data;
  size_t len = bh_tls_output(c->tls, &data);
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);

  if (len == 0 && !final && chunk_req == NULL)
    return 0;
  int r = conn_write_raw(c, &b, 1, 1, NULL, chunk_req, chunk_len, close, final);
  if (r >= 0)
    bh_tls_output_done(c->tls, len);
  return r;
}

int bh_tls_send_pending(bh_conn_t *c) {
  return tls_send(c, NULL, 0, 0, 0) < 0 ? -1 : 0;
}

/* Plain HTTP goes to the socket as it is; on a TLS connection it is
 * encrypted first (the plaintext is free to go at once: the records are a
 * copy), and the records take its place with the same accounting. */
int bh_conn_write(bh_conn_t *c, uv_buf_t *bufs, unsigned nbufs, int copy_first, void *owned,
                  bh_req_t *chunk_req, size_t chunk_len, int close, int final) {
  unsigned i;

  char one[TLS_RECORD_MAX];
  size_t total = 0;
  int err = 0;

  if (c->tls == NULL)
    return conn_write_raw(c, bufs, nbufs, copy_first, owned, chunk_req, chunk_len, close, final);
  for (i = 0; i < nbufs; i++)
    total += bufs[i].len;
  if (nbufs > 1 && total <= sizeof(one)) {
    /* a head and a small body: one record, not one per piece */
    for (total = 0, i = 0; i < nbufs; total += bufs[i].len, i++)
      memcpy(one + total, bufs[i].base, bufs[i].len);
    err = bh_tls_write(c->tls, one, total);
  } else {
    for (i = 0; i < nbufs && err == 0; i++)
      err = bh_tls_write(c->tls, bufs[i].base, bufs[i].len);
  }
  free(owned);
  if (err != 0) {
    bh_conn_close(c);
    return -1;
  }
  return tls_send(c, chunk_req, chunk_len, close, final);
}

int bh_ctype_ok(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n')
      return 0;
  return 1;
}

int bh_conn_should_close(const bh_conn_t *c) {
  return c->force_close || !c->keep_alive || c->io->draining;
}

const char *bh_conn_header(const bh_conn_t *c, int close) {
  if (close)
    return "connection: close\r\n";
  if (c->http_minor == 0)
    return "connection: keep-alive\r\n";
  return "";
}

/* Builds a response head into stack (or a malloc'd block when it does not
 * fit; *heap is then set). clen < 0: no content-length (a stream). The CORS
 * lines of c's message (server/cors.c) follow extra, on every response. */
char *bh_build_head(const bh_conn_t *c, char *stack, size_t stack_cap, char **heap, int status,
                        const char *ctype, const char *extra, size_t extra_len,
                        long long clen, const char *tail, const char *conn_hdr,
                        const char *rid, size_t *outlen) {
  const bh_cors_req_t *cors = &c->cors;
  size_t rid_len = rid != NULL ? strlen(rid) : 0;
  size_t cap = 200 + strlen(ctype) + extra_len + cors->out_len + strlen(tail) + strlen(conn_hdr) + rid_len;
  char *hdr = stack, *p;

  *heap = NULL;
  if (cap > stack_cap) {
    if ((hdr = *heap = malloc(cap)) == NULL)
      return NULL;
  }
  p = BH_PUT_LIT(hdr, "HTTP/1.1 ");
  p = bh_put_u64(p, (uint64_t)status);
  *p++ = ' ';
  p = bh_put_str(p, bh_http_reason(status));
  p = BH_PUT_LIT(p, "\r\ncontent-type: ");
  p = bh_put_str(p, ctype);
  p = BH_PUT_LIT(p, "\r\n");
  if (clen >= 0) {
    p = BH_PUT_LIT(p, "content-length: ");
    p = bh_put_u64(p, (uint64_t)clen);
    p = BH_PUT_LIT(p, "\r\n");
  }
  if (extra != NULL && extra_len > 0) {
    memcpy(p, extra, extra_len);
    p += extra_len;
  }
  if (cors->out_len > 0) {
    memcpy(p, cors->out, cors->out_len);
    p += cors->out_len;
  }
  if (rid != NULL) {
    memcpy(p, "x-request-id: ", 14);
    memcpy(p + 14, rid, rid_len);
    memcpy(p + 14 + rid_len, "\r\n", 2);
    p += 16 + rid_len;
  }
  p = bh_put_str(p, tail);
  p = bh_put_str(p, conn_hdr);
  p = BH_PUT_LIT(p, "\r\n");
  *outlen = (size_t)(p - hdr);
  return hdr;
}

/* Sends one whole response for the current message. owned (may be NULL) is
 * freed once written; extra holds header lines "Name: value\r\n". */
void bh_conn_respond(bh_conn_t *c, int status, const char *ctype,
                         const char *extra, size_t extra_len, const char *body,
                         size_t len, void *owned) {
  char stack[512], *heap, *hdr;
  uv_buf_t bufs[2];
  size_t hlen;
  int close, r;

  close = bh_conn_should_close(c);
  if (status < 100 || status > 999)
    status = 500;
  if (ctype == NULL || !bh_ctype_ok(ctype))
    ctype = "application/octet-stream";
  hdr = bh_build_head(c, stack, sizeof(stack), &heap, status, ctype, extra, extra_len,
                   (long long)len, "", bh_conn_header(c, close),
                   bh_request_id_for_head(c, extra, extra_len), &hlen);
  if (hdr == NULL) {
    free(owned);
    bh_conn_close(c);
    return;
  }
  bufs[0] = uv_buf_init(hdr, (unsigned)hlen);
  bufs[1] = uv_buf_init((char *)body, (unsigned)len);

  bh_access_begin(c, status, c->head ? 0 : len);
  r = bh_conn_write(c, bufs, (len > 0 && !c->head) ? 2 : 1, 1, owned, NULL, 0,
                 close, 1);
  free(heap);
  if (r == 1)
    bh_conn_after_response(c, close);
}

void bh_conn_respond_builtin(bh_conn_t *c, const bh_builtin_resp_t *r) {
  bh_conn_respond(c, r->status, r->content_type, r->headers,
               r->headers ? strlen(r->headers) : 0, r->body, r->body_len,
               r->owned);
}

/* A C-made error on an API route: counted like any API response. */
void bh_conn_respond_api_error(bh_conn_t *c, int api_index,
                                   uint64_t start_ns, int status,
                                   const char *json) {
  bh_worker_t *w = c->io->w;
  bh_builtin_resp_t r;

  bh_metrics_request(w, api_index, status, bh_since_s(start_ns));
  if (status == 429 || status == 503 || status == 504)
    bh_metrics_rejected(w, status);
  if (json != NULL) {
    char *body = strdup(json);
    if (body == NULL) {
      bh_conn_close(c);
      return;
    }
    bh_conn_respond(c, status, BH_JSON_CT, NULL, 0, body, strlen(body), body);
    return;
  }
  bh_router_error(status, &r);
  bh_conn_respond_builtin(c, &r);
}

void bh_conn_send_continue(bh_conn_t *c) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t buf = uv_buf_init((char *)msg, sizeof(msg) - 1);

  bh_conn_write(c, &buf, 1, 0, NULL, NULL, 0, 0, 0);
}

const char *bh_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Request Entity Too Large";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return status < 300 ? "OK" : status < 400 ? "Redirect"
                : status < 500 ? "Client Error" : "Server Error";
  }
}
