/* The request side of HTTP/1.1: llhttp's callbacks (llhttp in strict mode),
 * the checks llhttp leaves to us where request smuggling begins, the header and
 * body limits, routing at the end of the head, and the body's accumulation (or
 * the multipart parser's feed). Every loop here is bounded by the bytes given. */
#include "server/internal.h"
#include "common/clock.h"
#include "traffic/limiter.h"
#include "traffic/metrics.h"
#include "common/log.h"

#include <stdio.h>
#include <strings.h>

#define BODY_INITIAL_MAX ((size_t)1 << 20)
#define CHUNKED_INITIAL 16384
/* Below this, a body's rest is read through the read buffer like a head. */
#define BODY_DIRECT_MIN ((size_t)16 << 10)
#define BODY_GROWTH 8
#define PICKLE_CT "application/vnd.bentoml+pickle"

/* A refusal: the status to answer and the reason it is counted under. */
static int refuse(bh_conn_t *c, int status, int reason) {
  c->err_status = status;
  c->err_reason = reason;
  return -1;
}

/* Head bytes (and chunk extensions) count toward --max-header-size. */
static int hdr_count(bh_conn_t *c, size_t n) {
  c->hdr_bytes += n;
  if (c->hdr_bytes > c->io->w->opts->max_header_size)
    return refuse(c, 431, BH_REJ_HEADER_SIZE);
  return 0;
}

/* Whether the header value span at `at` follows a line break with only blanks
 * in between: an obs-fold (RFC 9112 5.2), which a server must reject rather than
 * read as one value that a proxy may have read as two headers. */
static int folded(const bh_conn_t *c, const char *at) {
  const char *q = at;

  while (q > c->exec_start && (q[-1] == ' ' || q[-1] == '\t'))
    q--;
  if (q > c->exec_start)
    return q[-1] == '\n';
  return c->tail_fold;
}

/* Transfer-Encoding may only be "chunked" (RFC 9112 6.1: a server that does
 * not understand a coding answers 501). */
static int te_is_chunked(const char *v, size_t len) {
  while (len > 0 && (*v == ' ' || *v == '\t'))
    v++, len--;
  while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
    len--;
  return len == 7 && strncasecmp(v, "chunked", 7) == 0;
}

static int on_message_begin(llhttp_t *p) {
  bh_conn_t *c = p->data;

  if (c->fresh) {
    /* The request is admitted (and counted in-flight) at its headers, so the
     * connection stops counting as fresh from then on. */
    bh_conn_not_fresh(c);
  }
  c->in_message = 1;
  c->in_head = 1;
  c->nheaders = 0;
  c->te_len = 0;
  c->has_te = 0;
  c->tail_fold = 0;
  c->err_reason = -1;
  c->err_status = 0;
  c->err_body[0] = '\0';
  c->reject_status = 0;
  c->hdr_bytes = 0;
  bh_cors_reset(&c->cors);
  c->url_len = c->ctype_len = c->expect_len = c->hname_len = c->hdrs_len = 0;
  c->hkind = BH_HDR_OTHER;
  c->discard_body = 0;
  c->body_seen = 0;
  c->head = 0;
  c->force_close = 0;
  c->route.kind = BH_ROUTE_NOT_FOUND; /* until the headers are complete */
  /* the access line says "-" for a version this message has not shown yet */
  p->http_major = p->http_minor = 0;
  bh_access_message(c);
  c->msg_start_ns = bh_now_ns();
  bh_conn_arm_deadline(c);
  return 0;
}

/* The access line names the method of a message refused before its target. */
static int on_method_complete(llhttp_t *p) {
  ((bh_conn_t *)p->data)->acc.method_known = 1;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
    return -1;
  return bh_buf_append(&c->url, &c->url_len, &c->url_cap, at, len) ? -1 : 0;
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
  if (c->hname_len == 0 && ++c->nheaders > c->io->w->opts->max_headers)
    return refuse(c, 431, BH_REJ_HEADERS_COUNT);
  if (c->hname_len + len <= sizeof(c->hname))
    memcpy(c->hname + c->hname_len, at, len);
  c->hname_len += len;
  return bh_buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, at, len) ? -1 : 0;
}

static int on_header_field_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;
  c->hkind = BH_HDR_OTHER;
  if (c->hname_len == 0)
    return refuse(c, 400, BH_REJ_BAD_REQUEST); /* ": x" */
  if (c->hname_len == 17 && strncasecmp(c->hname, "transfer-encoding", 17) == 0) {
    c->hkind = BH_HDR_TRANSFER_ENCODING;
    if (c->has_te)
      return refuse(c, 501, BH_REJ_NOT_IMPLEMENTED); /* a second coding line */
    c->has_te = 1;
  } else if (c->hname_len == 12 && strncasecmp(c->hname, "content-type", 12) == 0) {
    c->hkind = BH_HDR_CONTENT_TYPE;
    c->ctype_len = 0; /* the last one wins */
  } else if (c->hname_len == 6 && strncasecmp(c->hname, "expect", 6) == 0) {
    c->hkind = BH_HDR_EXPECT;
    c->expect_len = 0;
  } else if (c->io->cors != NULL && c->hname_len <= sizeof(c->hname) &&
             bh_cors_field(&c->cors, c->hname, c->hname_len)) {
    c->hkind = BH_HDR_CORS;
  } else if (c->hname_len == 12 && strncasecmp(c->hname, "x-request-id", 12) == 0) {
    c->hkind = BH_HDR_REQUEST_ID;
    bh_access_rid_piece(c, NULL, 0, 1);
  }
  c->hname_len = 0;
  return bh_buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, ": ", 2) ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  bh_conn_t *c = p->data;
  if (hdr_count(c, len))
    return -1;
  if (len > 0 && folded(c, at))
    return refuse(c, 400, BH_REJ_BAD_REQUEST);
  if (bh_buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, at, len))
    return -1;
  if (c->hkind == BH_HDR_TRANSFER_ENCODING) {
    if (c->te_len + len > sizeof(c->te))
      return refuse(c, 501, BH_REJ_NOT_IMPLEMENTED);
    memcpy(c->te + c->te_len, at, len);
    c->te_len += len;
    return 0;
  }
  if (c->hkind == BH_HDR_CONTENT_TYPE)
    return bh_buf_append(&c->ctype, &c->ctype_len, &c->ctype_cap, at, len) ? -1 : 0;
  if (c->hkind == BH_HDR_CORS)
    return bh_cors_value(&c->cors, at, len) ? -1 : 0;
  if (c->hkind == BH_HDR_REQUEST_ID)
    bh_access_rid_piece(c, at, len, 0);
  if (c->hkind == BH_HDR_EXPECT) {
    if (c->expect_len + len <= sizeof(c->expect))
      memcpy(c->expect + c->expect_len, at, len);
    c->expect_len += len;
  }
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  bh_conn_t *c = p->data;
  c->hkind = BH_HDR_OTHER;
  if (bh_buf_append(&c->hdrs, &c->hdrs_len, &c->hdrs_cap, "\r\n", 2))
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

/* req->head: "METHOD url HTTP/x.y\r\n" + the header lines. An id the client
 * did not give comes first, so that Python's headers["x-request-id"] is the
 * one the response and the access line carry. */
static int keep_head(bh_conn_t *c, llhttp_t *p, bh_req_t *req) {
  const char *method = llhttp_method_name((llhttp_method_t)p->method);
  const char *made = bh_request_id_made(c);
  size_t cap = strlen(method) + c->url_len + c->hdrs_len + 32 + (made ? 16 + strlen(made) : 0);

  req->head = malloc(cap);
  if (req->head == NULL)
    return -1;
  char *o = bh_put_str(req->head, method);
  *o++ = ' ';
  if (c->url_len > 0)
    o = bh_put(o, c->url, c->url_len);
  o = BH_PUT_LIT(o, " HTTP/");
  o = bh_put_u64(o, p->http_major);
  *o++ = '.';
  o = bh_put_u64(o, p->http_minor);
  o = BH_PUT_LIT(o, "\r\n");
  if (made != NULL) {
    o = BH_PUT_LIT(o, "x-request-id: ");
    o = bh_put_str(o, made);
    o = BH_PUT_LIT(o, "\r\n");
  }
  if (c->hdrs_len > 0)
    o = bh_put(o, c->hdrs, c->hdrs_len);
  *o = '\0';
  req->head_len = (size_t)(o - req->head);
  const char *client = bh_conn_client(c);
  size_t clen = strnlen(client, sizeof(req->client) - 1);
  memcpy(req->client, client, clen);
  req->client[clen] = '\0';
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
  int expect_continue, multipart, pickle;
  bh_req_t *req;

  c->in_head = 0;
  c->body_start_ns = bh_now_ns();
  c->head = p->method == HTTP_HEAD;
  c->http_minor = p->http_minor;
  if (p->http_major != 1)
    return refuse(c, 505, BH_REJ_HTTP_VERSION);
  if (c->has_te && !te_is_chunked(c->te, c->te_len))
    return refuse(c, 501, BH_REJ_NOT_IMPLEMENTED);
  expect_continue = c->expect_len == 12 &&
                    strncasecmp(c->expect, "100-continue", 12) == 0 &&
                    p->http_major == 1 && p->http_minor >= 1;

  /* From here on every response carries the CORS lines, a 413 included. */
  if (c->io->cors != NULL && bh_cors_head(c->io->cors, &c->cors, p->method) != 0)
    return -1;
  if (has_len && p->content_length > w->opts->max_body_size)
    return refuse(c, 413, BH_REJ_BODY_SIZE);

  url_path(c->url, c->url_len, &path, &plen);
  bh_router_match(w, p->method, path, plen, &c->route);
  bh_cors_route(&c->cors, &c->route);

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

  /* The max_concurrency slot is taken once the body is complete (conn.c), so
   * that a body arriving at a trickle holds none. A service already at its
   * limit refuses now, and the body is discarded as it arrives, never buffered. */
  if (bh_limiter_full(w)) {
    if (expect_continue && has_body) {
      c->err_status = 429;
      return -1;
    }
    c->reject_status = 429;
    c->discard_body = 1;
    return 0;
  }
  req = c->req = calloc(1, sizeof(*c->req));
  if (req == NULL)
    return -1;
  req->api_index = c->route.api_index;
  req->start_ns = c->msg_start_ns;
  atomic_init(&req->flags, 0);
  atomic_init(&req->pending_bytes, 0);

  multipart = c->ctype_len > 0 && bh_multipart_match(c->ctype, c->ctype_len);
  api = bh_router_api(w, req->api_index);
  if (c->ctype_len > 0) {
    req->content_type = strndup(c->ctype, c->ctype_len);
    if (req->content_type == NULL)
      return -1;
  }
  /* A pickle body (from a caller of the graph) needs its buffer-lengths header;
   * a stream, the caller's request for frames (bentohost/_frames.py). */
  pickle = c->ctype_len >= sizeof(PICKLE_CT) - 1 &&
           strncasecmp(c->ctype, PICKLE_CT, sizeof(PICKLE_CT) - 1) == 0;
  if ((multipart || pickle || (api != NULL && (api->needs_request || api->is_stream))) &&
      keep_head(c, p, req))
    return -1;

  c->body_cap = 0;
  c->body_total = chunked ? 0 : p->content_length;
  if (multipart) {
    bh_multipart_limits_t limits = {w->opts->max_body_size, (size_t)w->opts->max_parts,
                                     (size_t)w->opts->max_part_headers, c->body_total,
                                     api ? api->image_fields : NULL, api ? api->nimage_fields : 0,
                                     api ? api->image_root : 0};
    int r = bh_multipart_new(&c->mp, c->ctype, c->ctype_len, &limits);
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
    bh_conn_send_continue(c);
  return c->closing ? -1 : 0; /* the 100 Continue may have failed */
}

static int on_chunk_header(llhttp_t *p) {
  bh_conn_t *c = p->data;
  if (p->content_length > c->io->w->opts->max_body_size - c->body_seen)
    return refuse(c, 413, BH_REJ_BODY_SIZE);
  return 0;
}

/* Chunk extensions carry nothing we use, but count toward the head's limit
 * (the class of CVE-2024-22019: unbounded extensions). */
static int on_chunk_extension(llhttp_t *p, const char *at, size_t len) {
  (void)at;
  return hdr_count(p->data, len);
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
    if (c->err_status == 413)
      c->err_reason = BH_REJ_MULTIPART;
    if (c->err_status != 500)
      snprintf(c->err_body, sizeof(c->err_body),
               "{\"error\":\"Invalid multipart body: %s\"}", bh_multipart_error(c->mp));
    else
      bh_log("multipart upload failed: %s", bh_multipart_error(c->mp));
    return -1;
  }
  /* read in place (bh_conn_body_buffer): at is inside the body's own block */
  if (req->body_len < c->body_cap && at == req->body + req->body_len) {
    req->body_len += len;
    return 0;
  }
  need = req->body_len + len;
  if (need > c->body_cap) {
    /* Each growth copies the body so far (the worker keeps blocks up to
     * 32 MiB on the heap, where realloc cannot mremap): a body of known length
     * grows at once to as much as BODY_GROWTH times what has arrived, so a
     * 5 MiB one is copied once (1 MiB), not three times (7 MiB), and a client
     * still cannot make us reserve much more than it has sent. */
    size_t ncap = c->body_cap ? c->body_cap : CHUNKED_INITIAL;
    char *nb;
    while (ncap < need)
      ncap *= 2;
    if (c->body_total >= need && need <= SIZE_MAX / BODY_GROWTH && ncap < need * BODY_GROWTH)
      ncap = need * BODY_GROWTH;
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
  /* A capped keep-alive connection lets load spread again over the workers
   * (a respawned one gets none of the clients' open connections). */
  if (c->io->w->opts->max_conn_requests > 0 &&
      ++c->nrequests >= c->io->w->opts->max_conn_requests)
    c->force_close = 1;
  c->busy = 1;
  return HPE_PAUSED;
}

const llhttp_settings_t bh_parser_settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_method = on_span_counted,
  .on_method_complete = on_method_complete,
  .on_version = on_span_counted,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_header_field_complete = on_header_field_complete,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_chunk_header = on_chunk_header,
  .on_chunk_extension_name = on_chunk_extension,
  .on_chunk_extension_value = on_chunk_extension,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------- request flow */

/* Where the socket's next bytes can go: straight into the body's buffer when
 * they can only be body (no more than the rest of a Content-Length body that
 * is kept in memory as is), so that on_body has nothing to copy; the body's
 * 1 MiB memcpy out of the read buffer was a sixth of the I/O thread's time on
 * a 1 MiB octet-stream upload. 0, or -1: use the shared read buffer. */
int bh_conn_body_buffer(const bh_conn_t *c, uv_buf_t *buf) {
  const bh_req_t *req = c->req;
  uint64_t left;
  size_t room;

  if (req == NULL || req->body == NULL || c->tls != NULL || c->mp != NULL || c->busy || c->closing ||
      c->lingering || !c->in_message || c->in_head || c->discard_body || c->reject_status != 0 ||
      c->err_status != 0 || c->body_total == 0 || c->body_seen >= c->body_total)
    return -1;
  left = c->body_total - c->body_seen;
  room = c->body_cap - req->body_len;
  if (room > left)
    room = (size_t)left;
  if (room < BODY_DIRECT_MIN)
    return -1;
  *buf = uv_buf_init(req->body + req->body_len, (unsigned int)(room < UINT32_MAX ? room : UINT32_MAX));
  return 0;
}

/* Returns 1 when a message completed (consumed bytes were parsed), 0 when all
 * of data was parsed, -1 on a protocol error. */
int bh_conn_execute(bh_conn_t *c, const char *data, size_t len,
                    size_t *consumed) {
  llhttp_errno_t err;
  size_t i;

  c->exec_start = data;
  err = llhttp_execute(&c->parser, data, len);
  if (err == HPE_OK) {
    /* Where the next buffer's first header value could be an obs-fold: this
     * one ended in a line break and blanks. */
    for (i = len; i > 0 && (data[i - 1] == ' ' || data[i - 1] == '\t'); i--)
      ;
    if (i > 0)
      c->tail_fold = data[i - 1] == '\n';
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
  if (c->err_status == 0 && err == HPE_INVALID_VERSION)
    refuse(c, 505, BH_REJ_HTTP_VERSION);
  return -1;
}

