/* The client's connections: connecting (Unix socket or TCP), the idle
 * keep-alive pool of each target, writing a request (uv_try_write first, as
 * server/respond.c does), reading its response, and the one retry of a
 * request that met a reused connection the server had closed.
 *
 * A connection is freed once both of its handles are closed (refs). Its call
 * points back at it (call->conn) only while the exchange runs; whoever ends
 * the exchange detaches the call first and then decides its result, so no
 * call ever points at a closed connection.
 *
 * Idle connections are unreferenced: a loop with nothing to do but keep them
 * open may return, as Node's keep-alive agent lets it.
 *
 * A TLS target's connection runs its engine (net/tls.h) between the socket
 * and the parser: the request waits for the handshake, then goes encrypted;
 * what arrives is decrypted before it is parsed. */
#include "net/client_internal.h"
#include "common/log.h"

/* How long a connection whose write failed is still read for an answer the
 * peer sent before it stopped reading. */
#define WRITE_FAILED_GRACE_MS 1000

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void conn_lost(bh_cconn_t *conn, int err);
static void conn_send(bh_cconn_t *conn);

static void conn_on_close(uv_handle_t *h) {
  bh_cconn_t *conn = h->data;
  bh_client_t *c = conn->client;

  if (--conn->refs > 0)
    return;
  free(conn->hdrs);
  free(conn->body);
  bh_tls_free(conn->tls);
  free(conn);
  bh_client_unref(c);
}

/* ---------------------------------------------------------------- the pool */

static void conn_on_timer(uv_timer_t *t);

static void pool_push(bh_cconn_t *conn) {
  bh_ctarget_t *t = &conn->client->targets[conn->target];

  conn->state = BH_CONN_IDLE;
  conn->pool_prev = NULL;
  conn->pool_next = t->idle;
  if (t->idle != NULL)
    t->idle->pool_prev = conn;
  t->idle = conn;
  uv_unref((uv_handle_t *)&conn->h.stream);
  uv_unref((uv_handle_t *)&conn->timer);
  uv_timer_start(&conn->timer, conn_on_timer, conn->client->opts.idle_timeout_ms, 0);
}

static void pool_remove(bh_cconn_t *conn) {
  bh_ctarget_t *t = &conn->client->targets[conn->target];

  if (conn->pool_prev != NULL)
    conn->pool_prev->pool_next = conn->pool_next;
  else
    t->idle = conn->pool_next;
  if (conn->pool_next != NULL)
    conn->pool_next->pool_prev = conn->pool_prev;
  conn->pool_prev = conn->pool_next = NULL;
  uv_ref((uv_handle_t *)&conn->h.stream);
  uv_ref((uv_handle_t *)&conn->timer);
  uv_timer_stop(&conn->timer);
}

bh_client_call_t *bh_cconn_close(bh_cconn_t *conn) {
  bh_client_t *c = conn->client;
  bh_client_call_t *call = conn->call;

  if (conn->state == BH_CONN_CLOSING)
    return NULL;
  if (conn->state == BH_CONN_IDLE)
    pool_remove(conn);
  conn->state = BH_CONN_CLOSING;
  conn->call = NULL;
  if (call != NULL)
    call->conn = NULL;

  if (conn->prev != NULL)
    conn->prev->next = conn->next;
  else
    c->conns = conn->next;
  if (conn->next != NULL)
    conn->next->prev = conn->prev;
  conn->prev = conn->next = NULL;
  c->targets[conn->target].nconns--;

  /* The fd is closed here: libuv touches no buffer of a pending write after
   * this, so the call's request bytes may go before its write callback. */
  uv_close((uv_handle_t *)&conn->h.stream, conn_on_close);
  uv_close((uv_handle_t *)&conn->timer, conn_on_close);
  return call;
}

/* ---------------------------------------------------------------- streamed calls */

/* Moves what the parser has gathered for a streamed call (the final head
 * once, body bytes each read) to the call for delivery from the loop. */
static int stream_collect(bh_cconn_t *conn, bh_client_call_t *call) {
  int fresh = 0;
  char *p;

  if (conn->head_done && !call->head_taken) {
    p = malloc(conn->hdrs_len + 1);
    if (p == NULL)
      return -ENOMEM;
    if (conn->hdrs_len > 0)
      memcpy(p, conn->hdrs, conn->hdrs_len);
    p[conn->hdrs_len] = '\0';
    free(call->hdrs);
    call->hdrs = p;
    call->hdrs_len = conn->hdrs_len;
    call->head_status = conn->status;
    call->head_taken = 1;
    fresh = 1;
  }
  if (conn->body_len > 0) {
    if (call->pend == NULL) {
      call->pend = conn->body;
      call->pend_len = conn->body_len;
      conn->body = NULL;
      conn->body_cap = 0;
    } else {
      /* not delivered since the last read: at most a few reads' worth */
      p = realloc(call->pend, call->pend_len + conn->body_len);
      if (p == NULL)
        return -ENOMEM;
      memcpy(p + call->pend_len, conn->body, conn->body_len);
      call->pend = p;
      call->pend_len += conn->body_len;
    }
    conn->body_len = 0;
    fresh = 1;
  }
  if (fresh)
    bh_ccall_data_ready(call);
  return 0;
}

void bh_cconn_pause(bh_cconn_t *conn, int paused) {
  if (conn->state != BH_CONN_BUSY || conn->read_stopped == paused)
    return;
  conn->read_stopped = paused;
  if (paused)
    uv_read_stop(&conn->h.stream);
  else if (uv_read_start(&conn->h.stream, conn_alloc, conn_on_read) < 0)
    conn_lost(conn, UV_EPIPE);
}

/* ---------------------------------------------------------------- ending an exchange */

static void conn_fail(bh_cconn_t *conn, int err) {
  bh_client_call_t *call = bh_cconn_close(conn);

  if (call != NULL)
    bh_ccall_finish(call, err);
}

static int conn_open(bh_client_t *c, bh_client_call_t *call);

/* The connection broke before the response was complete. A reused one that
 * broke before any response byte was most likely closed by the server while
 * it sat in the pool (the idle timeout makes this rare, not impossible): the
 * request goes once more, on a fresh connection. */
static void conn_lost(bh_cconn_t *conn, int err) {
  bh_client_t *c = conn->client;
  bh_client_call_t *call = conn->call;
  int stale;

  if (err == UV_EOF && conn->write_err != 0)
    err = conn->write_err; /* the truer account of what happened */
  stale = conn->exchanges > 1 && !conn->got_bytes && !call->retried &&
          (err == UV_EOF || err == UV_ECONNRESET || err == UV_EPIPE);
  bh_cconn_close(conn);
  if (stale && !c->closing) {
    call->retried = 1;
    err = conn_open(c, call);
    if (err == 0)
      return;
  }
  bh_ccall_finish(call, err == UV_EOF ? -ECONNRESET : err);
}

/* The final response is complete: the call takes its header block and body;
 * the connection goes back to the pool when both sides allow it. */
static void conn_complete(bh_cconn_t *conn, int clean) {
  bh_client_t *c = conn->client;
  bh_client_call_t *call = conn->call;
  int status = conn->status;

  if (call->on_data != NULL) {
    if (stream_collect(conn, call) != 0) {
      conn_fail(conn, -ENOMEM);
      return;
    }
    free(conn->body); /* emptied: every byte went out as data */
    conn->body = NULL;
  }
  if (conn->read_stopped) { /* an idle connection is read: that is how a close is seen */
    conn->read_stopped = 0;
    if (uv_read_start(&conn->h.stream, conn_alloc, conn_on_read) < 0)
      clean = 0;
  }
  conn->call = NULL;
  call->conn = NULL;
  free(call->hdrs); /* a streamed call's copy of the same head */
  call->hdrs = conn->hdrs;
  call->hdrs_len = conn->hdrs_len;
  call->body = conn->body;
  call->body_len = conn->body_len;
  conn->hdrs = conn->body = NULL;
  conn->hdrs_len = conn->hdrs_cap = conn->body_len = conn->body_cap = 0;
  /* Still writing (the server answered before it read the whole request), or
   * the write failed: what is left of the request would be read as the next
   * one, so such a connection is not reused. */
  if (clean && conn->keep_alive && !conn->writing && conn->write_err == 0 && !c->closing)
    pool_push(conn);
  else
    bh_cconn_close(conn);
  bh_ccall_finish(call, status);
}

static void conn_on_timer(uv_timer_t *t) {
  bh_cconn_t *conn = t->data;

  if (conn->state == BH_CONN_CONNECTING)
    conn_fail(conn, -ETIMEDOUT);
  else if (conn->call != NULL)
    conn_lost(conn, conn->write_err); /* no answer after a failed write */
  else
    bh_cconn_close(conn); /* idle for idle_timeout_ms */
}

/* ---------------------------------------------------------------- reading */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  bh_cconn_t *conn = h->data;

  (void)suggested;
  *buf = uv_buf_init(conn->client->read_buf, sizeof(conn->client->read_buf));
}

/* EOF: the end of a body that runs to the close, or a response cut short. */
static void conn_eof(bh_cconn_t *conn) {
  llhttp_errno_t e;

  if (!conn->got_bytes) {
    conn_lost(conn, UV_EOF);
    return;
  }
  e = llhttp_finish(&conn->parser);
  if ((e == HPE_OK || e == HPE_PAUSED) && conn->msg_done) {
    conn->keep_alive = 0;
    conn_complete(conn, 0);
    return;
  }
  conn_fail(conn, conn->err ? conn->err : -ECONNRESET);
}

static void conn_parse(bh_cconn_t *conn, const char *data, size_t len);
static void conn_tls_read(bh_cconn_t *conn, const char *data, size_t len);

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bh_cconn_t *conn = s->data;

  if (nread == 0 || conn->state == BH_CONN_CLOSING)
    return;
  if (conn->tls != NULL && nread > 0) {
    conn_tls_read(conn, buf->base, (size_t)nread);
    return;
  }
  if (conn->call == NULL) {
    /* Idle: the server closed it, or sent bytes nobody asked for. Either
     * way it cannot carry another request. */
    bh_cconn_close(conn);
    return;
  }
  if (nread == UV_EOF) {
    conn_eof(conn);
    return;
  }
  if (nread < 0) {
    conn_lost(conn, (int)nread);
    return;
  }
  conn_parse(conn, buf->base, (size_t)nread);
}

/* Response bytes (decrypted, on TLS) for the exchange in flight. */
static void conn_parse(bh_cconn_t *conn, const char *data, size_t len) {
  llhttp_errno_t e;

  conn->got_bytes = 1;
  e = llhttp_execute(&conn->parser, data, len);
  if (conn->call->on_data != NULL && stream_collect(conn, conn->call) != 0) {
    conn_fail(conn, -ENOMEM);
    return;
  }
  if (conn->call->paused && !conn->read_stopped && e == HPE_OK) {
    conn->read_stopped = 1;
    uv_read_stop(&conn->h.stream);
  }
  if (e == HPE_OK)
    return;
  if (e == HPE_PAUSED && conn->msg_done) {
    /* clean: the message ended exactly where this read did */
    conn_complete(conn, llhttp_get_error_pos(&conn->parser) == data + len);
    return;
  }
  conn_fail(conn, conn->err ? conn->err : -EPROTO);
}

/* ---------------------------------------------------------------- writing */

/* A peer that refuses a request often answers before reading all of it (a
 * 413 for a body too big) and closes: that answer, already on its way, says
 * more than the write error. So the read side goes on for a while and ends
 * the exchange: with the answer, or with EOF (a retry if the connection was
 * stale), or conn_on_timer reports the write error. */
static void conn_write_failed(bh_cconn_t *conn, int err) {
  if (err != UV_EPIPE && err != UV_ECONNRESET) {
    conn_lost(conn, err);
    return;
  }
  conn->write_err = err;
  uv_timer_start(&conn->timer, conn_on_timer, WRITE_FAILED_GRACE_MS, 0);
}

/* ---------------------------------------------------------------- TLS */

typedef struct tls_write {
  uv_write_t req;
  bh_cconn_t *conn;
  char data[];
} tls_write_t;

static void tls_on_write(uv_write_t *req, int status) {
  tls_write_t *w = (tls_write_t *)req;
  bh_cconn_t *conn = w->conn; /* valid: its close callback comes after this */

  free(w);
  conn->writing--;
  if (conn->state == BH_CONN_CLOSING || conn->call == NULL)
    return;
  if (status < 0)
    conn_write_failed(conn, status);
}

/* Sends what the engine has ready: now when the socket takes it, else a copy
 * is queued. 0, or a negative errno. */
static int tls_flush(bh_cconn_t *conn) {
  const char *data;
  size_t len = bh_tls_output(conn->tls, &data);
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  tls_write_t *w;
  int r;

  if (len == 0)
    return 0;
  r = uv_try_write(&conn->h.stream, &b, 1);
  if (r == UV_EAGAIN || r == UV_ENOSYS)
    r = 0;
  if (r < 0)
    return r;
  if ((size_t)r < len) {
    if ((w = malloc(sizeof(*w) + len - (size_t)r)) == NULL)
      return -ENOMEM;
    memcpy(w->data, data + r, len - (size_t)r);
    w->conn = conn;
    b = uv_buf_init(w->data, (unsigned)(len - (size_t)r));
    if ((r = uv_write(&w->req, &conn->h.stream, &b, 1, tls_on_write)) < 0) {
      free(w);
      return r;
    }
    conn->writing++;
  }
  bh_tls_output_done(conn->tls, len);
  return 0;
}

static void tls_failed(bh_cconn_t *conn) {
  bh_client_t *c = conn->client;

  bh_log("TLS to %s failed: %s", c->targets[conn->target].tls_name, bh_tls_error(conn->tls));
  conn_fail(conn, -ECONNABORTED);
}

/* Encrypts the request's buffers and sends the records. */
static void tls_send(bh_cconn_t *conn, const uv_buf_t *w, unsigned n) {
  unsigned i;
  int r;

  for (i = 0; i < n; i++)
    if (bh_tls_write(conn->tls, w[i].base, w[i].len) != 0) {
      tls_failed(conn);
      return;
    }
  if ((r = tls_flush(conn)) != 0)
    conn_write_failed(conn, r);
}

static void conn_tls_read(bh_cconn_t *conn, const char *data, size_t len) {
  char *plain = conn->client->tls_plain;
  ssize_t got;
  int r;

  if (bh_tls_feed(conn->tls, data, len) != 0) {
    conn_fail(conn, -ENOMEM);
    return;
  }
  if (conn->call == NULL) {
    /* idle: session tickets may still come; anything else ends it */
    if (bh_tls_read(conn->tls, plain, BH_CLIENT_READ_BUF) != 0 || tls_flush(conn) != 0)
      bh_cconn_close(conn);
    return;
  }
  if (conn->handshaking) {
    r = bh_tls_handshake(conn->tls);
    if (r < 0 || tls_flush(conn) != 0) {
      tls_failed(conn);
      return;
    }
    if (r == 0)
      return;
    conn->handshaking = 0;
    conn_send(conn);
    if (conn->state == BH_CONN_CLOSING || conn->call == NULL)
      return;
  }
  /* each turn consumes fed bytes: bounded by len; stops once the exchange ended */
  while ((got = bh_tls_read(conn->tls, plain, BH_CLIENT_READ_BUF)) > 0) {
    conn_parse(conn, plain, (size_t)got);
    if (conn->state != BH_CONN_BUSY || conn->call == NULL)
      return;
  }
  if (got == -EPIPE) /* close_notify: as EOF */
    conn_eof(conn);
  else if (got < 0)
    tls_failed(conn);
}

static void conn_on_write(uv_write_t *req, int status) {
  bh_cconn_t *conn = req->data;

  conn->writing = 0;
  if (conn->state == BH_CONN_CLOSING || conn->call == NULL)
    return;
  if (status < 0)
    conn_write_failed(conn, status);
}

static uv_buf_t buf_of(char *base, size_t len) {
  uv_buf_t b;

  b.base = base;
  b.len = len;
  return b;
}

/* Writes the call's request: synchronously when the socket takes it all
 * (the common case: no allocation), the rest queued with uv_write. */
static void conn_send(bh_cconn_t *conn) {
  bh_client_call_t *call = conn->call;
  bh_ctarget_t *t = &conn->client->targets[conn->target];
  uv_buf_t *w = call->bufs + call->nbufs;
  unsigned n = 0, i;
  size_t total = 0, done;
  int r;

  conn->exchanges++;
  conn->write_err = 0;
  bh_cconn_parse_start(conn);
  w[n++] = buf_of(call->line, call->line_len);
  if (!call->has_host)
    w[n++] = buf_of(t->host_line, t->host_line_len);
  w[n++] = buf_of(call->tail, call->tail_len);
  for (i = 0; i < call->nbufs; i++)
    if (call->bufs[i].len > 0)
      w[n++] = call->bufs[i];
  if (conn->tls != NULL) {
    tls_send(conn, w, n);
    return;
  }
  for (i = 0; i < n; i++)
    total += w[i].len;

  r = uv_try_write(&conn->h.stream, w, n);
  if (r == UV_EAGAIN || r == UV_ENOSYS)
    r = 0;
  if (r < 0) {
    conn_write_failed(conn, r);
    return;
  }
  if ((size_t)r == total)
    return;
  done = (size_t)r;
  while (n > 0 && done >= w->len) { /* bounded by n */
    done -= w->len;
    w++;
    n--;
  }
  w->base += done;
  w->len -= done;
  /* libuv copies the buffer array; the bytes stay the call's */
  r = uv_write(&conn->write_req, &conn->h.stream, w, n, conn_on_write);
  if (r < 0) {
    conn_lost(conn, r);
    return;
  }
  conn->writing = 1;
}

/* ---------------------------------------------------------------- connecting */

static void conn_on_connect(uv_connect_t *req, int status) {
  bh_cconn_t *conn = req->data;
  bh_client_t *c = conn->client;

  if (conn->state == BH_CONN_CLOSING)
    return; /* UV_ECANCELED: closed while connecting */
  uv_timer_stop(&conn->timer);
  if (status == 0)
    status = uv_read_start(&conn->h.stream, conn_alloc, conn_on_read);
  if (status < 0) {
    conn_fail(conn, status);
    return;
  }
  conn->state = BH_CONN_BUSY;
  if (c->targets[conn->target].tls_name != NULL) {
    if ((conn->tls = bh_tls_client_new(c->opts.tls, c->targets[conn->target].tls_name)) == NULL) {
      conn_fail(conn, -ENOMEM);
      return;
    }
    conn->handshaking = 1; /* the request goes once the handshake is done */
    if (bh_tls_handshake(conn->tls) < 0 || tls_flush(conn) != 0)
      tls_failed(conn);
    return;
  }
  conn_send(conn);
}

/* A new connection for call, which stays ACTIVE on its target. 0, or a
 * negative errno (nothing left open; the caller finishes the call). */
static int conn_open(bh_client_t *c, bh_client_call_t *call) {
  bh_ctarget_t *t = &c->targets[call->target];
  bh_cconn_t *conn;
  int r;

  conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    return -ENOMEM;
  conn->client = c;
  conn->target = call->target;
  r = t->unix_path != NULL ? uv_pipe_init(c->loop, &conn->h.pipe, 0)
                           : uv_tcp_init(c->loop, &conn->h.tcp);
  if (r < 0) {
    free(conn); /* no handle was registered */
    return r;
  }
  uv_timer_init(c->loop, &conn->timer);
  conn->h.stream.data = conn;
  conn->timer.data = conn;
  conn->connect_req.data = conn;
  conn->write_req.data = conn;
  conn->refs = 2;
  c->refs++;
  conn->next = c->conns;
  if (c->conns != NULL)
    c->conns->prev = conn;
  c->conns = conn;
  t->nconns++;
  conn->state = BH_CONN_CONNECTING;
  conn->call = call;
  call->conn = conn;

  if (t->unix_path != NULL) {
    /* errors, ENOENT and ECONNREFUSED included, arrive in the callback */
    uv_pipe_connect(&conn->connect_req, &conn->h.pipe, t->unix_path, conn_on_connect);
  } else {
    uv_tcp_nodelay(&conn->h.tcp, 1); /* applied when the socket is made */
    r = uv_tcp_connect(&conn->connect_req, &conn->h.tcp, (const struct sockaddr *)&t->addr,
                       conn_on_connect);
    if (r < 0) {
      bh_cconn_close(conn);
      return r;
    }
  }
  uv_timer_start(&conn->timer, conn_on_timer, c->opts.connect_timeout_ms, 0);
  return 0;
}

void bh_cconn_assign(bh_client_t *c, bh_client_call_t *call) {
  bh_cconn_t *conn = c->targets[call->target].idle;
  int r;

  if (conn != NULL) {
    pool_remove(conn);
    conn->state = BH_CONN_BUSY;
    conn->call = call;
    call->conn = conn;
    conn_send(conn);
    return;
  }
  r = conn_open(c, call);
  if (r < 0)
    bh_ccall_finish(call, r);
}
