/* The client and its calls: targets, request checks and framing, the choice
 * of target (fewest in flight, ties round robin), the FIFO queue, call
 * timeouts, cancel and close, and the deferred delivery of results.
 *
 * Results are never handed to a callback where they are decided: a finished
 * call goes to the done list, which a check handle drains right after the
 * loop's poll phase (an idle handle keeps that poll from blocking meanwhile).
 * So no callback runs inside bh_client_request, bh_client_cancel or
 * bh_client_close, nor inside a libuv or llhttp callback of ours, and a
 * callback may call any function of the client, bh_client_close included.
 *
 * A call is freed when its timer handle is closed, after its callback; the
 * client when its last handle, connection and call are gone (refs). */
#include "net/client_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <strings.h>
#include <sys/un.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_IDLE_TIMEOUT_MS 2000
#define DEFAULT_MAX_CONNS 64
#define DEFAULT_MAX_RESPONSE ((uint64_t)1 << 30)
#define DEFAULT_MAX_HEADER ((size_t)64 << 10)
/* bounds the copy of the caller's buffer array (IOV_MAX on Linux: more
 * would not go in one writev anyway) */
#define MAX_BODY_BUFS 1024

void bh_client_opts_default(bh_client_opts_t *o) {
  o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  o->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  o->max_conns_per_target = DEFAULT_MAX_CONNS;
  o->max_response_size = DEFAULT_MAX_RESPONSE;
  o->max_header_size = DEFAULT_MAX_HEADER;
}

void bh_client_unref(bh_client_t *c) {
  size_t i;

  if (--c->refs > 0)
    return;
  for (i = 0; i < c->ntargets; i++) {
    free(c->targets[i].unix_path);
    free(c->targets[i].host_line);
    free(c->targets[i].tls_name);
  }
  free(c->targets);
  free(c);
}

static void client_on_handle_close(uv_handle_t *h) {
  bh_client_unref(h->data);
}

static void client_close_handles(bh_client_t *c) {
  if (c->handles_closed)
    return;
  c->handles_closed = 1;
  uv_close((uv_handle_t *)&c->done_check, client_on_handle_close);
  uv_close((uv_handle_t *)&c->done_idle, client_on_handle_close);
}

/* ---------------------------------------------------------------- delivery */

static void call_on_close(uv_handle_t *h) {
  bh_client_call_t *call = h->data;
  bh_client_t *c = call->client;

  free(call->hdrs);
  free(call->body);
  free(call->pend);
  free(call);
  bh_client_unref(c);
}

static void call_deliver(bh_client_call_t *call) {
  int ok = call->result > 0;
  const char *hdrs = ok ? (call->hdrs != NULL ? call->hdrs : "") : NULL;
  char *body = ok ? call->body : NULL;

  call->state = BH_CALL_DELIVERED;
  if (ok)
    call->body = NULL; /* the callback owns it now */
  call->cb(call, call->result, hdrs, ok ? call->hdrs_len : 0, body,
           ok ? call->body_len : 0, call->arg);
  uv_close((uv_handle_t *)&call->timer, call_on_close);
}

/* A streamed call's head and the body bytes read since the last turn. */
static void call_deliver_data(bh_client_call_t *call) {
  char *data = call->pend;
  size_t len = call->pend_len;

  call->in_data = 0;
  call->data_next = NULL;
  call->pend = NULL;
  call->pend_len = 0;
  if (call->state == BH_CALL_DELIVERED) {
    free(data); /* cannot happen: data always goes out before the result */
    return;
  }
  if (call->head_taken == 1) {
    call->head_taken = 2;
    call->on_data(call, call->head_status, call->hdrs != NULL ? call->hdrs : "", call->hdrs_len,
                  data, len, call->arg);
  } else if (data != NULL) {
    call->on_data(call, call->head_status, NULL, 0, data, len, call->arg);
  }
}

static void on_idle(uv_idle_t *h) {
  (void)h; /* only there so that the poll phase does not block */
}

static void on_check(uv_check_t *h) {
  bh_client_t *c = h->data;
  bh_client_call_t *list = c->done_head, *data = c->data_head, *call;

  /* Only the calls finished (or read) before this turn: a callback whose new
   * call fails at once waits for the next turn, so these loops always end.
   * Data first: a stream's bytes always reach on_data before its result. */
  c->done_head = c->done_tail = NULL;
  c->data_head = c->data_tail = NULL;
  uv_check_stop(&c->done_check);
  uv_idle_stop(&c->done_idle);
  c->delivering = 1;
  while (data != NULL) {
    call = data;
    data = call->data_next;
    call_deliver_data(call);
  }
  while (list != NULL) {
    call = list;
    list = call->next;
    call->next = call->prev = NULL;
    call_deliver(call);
  }
  c->delivering = 0;
  if (c->closing && c->done_head == NULL && c->data_head == NULL)
    client_close_handles(c);
}

/* ---------------------------------------------------------------- calls */

static void schedule_delivery(bh_client_t *c);

static void queue_unlink(bh_client_t *c, bh_client_call_t *call) {
  if (call->prev != NULL)
    call->prev->next = call->next;
  else
    c->queue_head = call->next;
  if (call->next != NULL)
    call->next->prev = call->prev;
  else
    c->queue_tail = call->prev;
  call->prev = call->next = NULL;
  c->nqueued--;
}

void bh_ccall_finish(bh_client_call_t *call, int result) {
  bh_client_t *c = call->client;
  int was_active = call->state == BH_CALL_ACTIVE;

  if (call->state == BH_CALL_QUEUED)
    queue_unlink(c, call);
  else if (was_active)
    c->targets[call->target].inflight--;
  uv_timer_stop(&call->timer);
  call->state = BH_CALL_DONE;
  call->result = result;
  call->conn = NULL;
  call->prev = c->done_tail;
  call->next = NULL;
  if (c->done_tail != NULL)
    c->done_tail->next = call;
  else
    c->done_head = call;
  c->done_tail = call;
  schedule_delivery(c);
  if (was_active)
    bh_client_dispatch(c); /* its target has room again */
}

/* Ends a call that has no result yet; its connection, if any, is closed
 * (the response, if it ever comes, has nobody to go to). */
static void call_abort(bh_client_call_t *call, int result) {
  if (call->state == BH_CALL_ACTIVE && call->conn != NULL)
    bh_cconn_close(call->conn);
  if (call->state == BH_CALL_QUEUED || call->state == BH_CALL_ACTIVE)
    bh_ccall_finish(call, result);
}

static void call_on_timeout(uv_timer_t *t) {
  call_abort(t->data, -ETIMEDOUT);
}

static void schedule_delivery(bh_client_t *c) {
  if (!c->handles_closed) {
    uv_check_start(&c->done_check, on_check);
    uv_idle_start(&c->done_idle, on_idle);
  }
}

void bh_ccall_data_ready(bh_client_call_t *call) {
  bh_client_t *c = call->client;

  if (!call->in_data) {
    call->in_data = 1;
    call->data_next = NULL;
    if (c->data_tail != NULL)
      c->data_tail->data_next = call;
    else
      c->data_head = call;
    c->data_tail = call;
    schedule_delivery(c);
  }
  if (call->timeout_ms > 0 && !call->paused && call->state == BH_CALL_ACTIVE)
    uv_timer_start(&call->timer, call_on_timeout, call->timeout_ms, 0);
}

int bh_client_stream(bh_client_call_t *call, bh_client_data_cb on_data) {
  if (call == NULL || on_data == NULL || call->state >= BH_CALL_DONE ||
      (call->conn != NULL && call->conn->got_bytes))
    return -EINVAL;
  call->on_data = on_data;
  return 0;
}

void bh_client_pause(bh_client_call_t *call, int paused) {
  paused = paused != 0;
  if (call == NULL || call->on_data == NULL || call->paused == paused ||
      call->state >= BH_CALL_DONE)
    return;
  call->paused = paused;
  if (call->state != BH_CALL_ACTIVE)
    return;
  if (call->conn != NULL)
    bh_cconn_pause(call->conn, paused);
  if (paused)
    uv_timer_stop(&call->timer);
  else if (call->timeout_ms > 0 && call->state == BH_CALL_ACTIVE)
    uv_timer_start(&call->timer, call_on_timeout, call->timeout_ms, 0);
}

void bh_client_cancel(bh_client_call_t *call) {
  if (call != NULL)
    call_abort(call, -ECANCELED);
}

/* ---------------------------------------------------------------- target choice */

/* The target with the fewest calls in flight among those with room; ties go
 * round robin from c->rr. SIZE_MAX when every target is full. */
static size_t pick_target(bh_client_t *c) {
  size_t best = SIZE_MAX, i, t;

  for (i = 0; i < c->ntargets; i++) {
    t = (c->rr + i) % c->ntargets;
    if (c->targets[t].inflight >= c->opts.max_conns_per_target)
      continue;
    if (best == SIZE_MAX || c->targets[t].inflight < c->targets[best].inflight)
      best = t;
  }
  if (best != SIZE_MAX)
    c->rr = (best + 1) % c->ntargets;
  return best;
}

/* Re-entered from bh_ccall_finish when a call fails at once: the outer loop
 * carries on and sees the room that call left. */
void bh_client_dispatch(bh_client_t *c) {
  bh_client_call_t *call;
  size_t t;

  if (c->dispatching || c->closing)
    return;
  c->dispatching = 1;
  while (c->queue_head != NULL) { /* each turn takes one call off the queue */
    t = pick_target(c);
    if (t == SIZE_MAX)
      break;
    call = c->queue_head;
    queue_unlink(c, call);
    call->state = BH_CALL_ACTIVE;
    call->target = t;
    c->targets[t].inflight++;
    bh_cconn_assign(c, call);
  }
  c->dispatching = 0;
}

/* ---------------------------------------------------------------- requests */

/* RFC 9110 tchar: what a method or a header name may be made of. */
static int tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int name_is(const char *name, size_t len, const char *want) {
  return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* The caller's header lines: each "Name: value\r\n", no bare CR or LF, no
 * NUL or other control byte in a value (a line break smuggled into a value
 * would start a header, or a request, of its own), and none of the lines the
 * client owns for framing. Sets *has_host when the caller gave a Host. */
static int check_headers(const char *h, size_t len, int *has_host) {
  size_t i = 0, start, colon;
  unsigned char ch;

  *has_host = 0;
  while (i < len) { /* each turn consumes one line */
    start = i;
    colon = SIZE_MAX;
    for (; i < len && h[i] != '\r' && h[i] != '\n'; i++) {
      ch = (unsigned char)h[i];
      if (colon == SIZE_MAX) {
        if (ch == ':')
          colon = i;
        else if (!tchar(ch))
          return -EINVAL;
      } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
        return -EINVAL;
      }
    }
    if (colon == SIZE_MAX || colon == start || i + 1 >= len || h[i] != '\r' || h[i + 1] != '\n')
      return -EINVAL;
    if (name_is(h + start, colon - start, "content-length") ||
        name_is(h + start, colon - start, "transfer-encoding"))
      return -EINVAL;
    if (name_is(h + start, colon - start, "host"))
      *has_host = 1;
    i += 2;
  }
  return 0;
}

/* A request target: visible ASCII, no space, CR, LF or NUL. */
static int check_path(const char *p) {
  if (*p == '\0')
    return -EINVAL;
  for (; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
      return -EINVAL;
  return 0;
}

static int check_method(const char *m) {
  if (*m == '\0')
    return -EINVAL;
  for (; *m; m++)
    if (!tchar((unsigned char)*m))
      return -EINVAL;
  return 0;
}

int bh_client_request(bh_client_t *c, const char *method, const char *path, const char *headers,
                      size_t headers_len, const uv_buf_t *body, unsigned nbufs,
                      uint64_t timeout_ms, bh_client_cb cb, void *arg, bh_client_call_t **out) {
  bh_client_call_t *call;
  size_t mlen, plen, total = 0, line_len, tail_cap, size;
  char clen[48] = "";
  int has_host = 0, r;
  unsigned i;

  if (out != NULL)
    *out = NULL;
  if (c == NULL || method == NULL || path == NULL || cb == NULL ||
      (headers == NULL && headers_len > 0) || (body == NULL && nbufs > 0) || nbufs > MAX_BODY_BUFS)
    return -EINVAL;
  if (c->closing)
    return -ESHUTDOWN;
  if ((r = check_method(method)) != 0 || (r = check_path(path)) != 0 ||
      (r = check_headers(headers, headers_len, &has_host)) != 0)
    return r;
  for (i = 0; i < nbufs; i++) {
    if (body[i].len > 0 && body[i].base == NULL)
      return -EINVAL;
    if (body[i].len > SIZE_MAX - total)
      return -EINVAL;
    total += body[i].len;
  }
  if (total > 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0))
    snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", total);

  mlen = strlen(method);
  plen = strlen(path);
  line_len = mlen + 1 + plen + sizeof(" HTTP/1.1\r\n") - 1;
  if (headers_len > SIZE_MAX / 4 || plen > SIZE_MAX / 4)
    return -EINVAL;
  tail_cap = headers_len + strlen(clen) + 2;
  size = sizeof(*call) + (2 * (size_t)nbufs + 3) * sizeof(uv_buf_t) + line_len + tail_cap + 1;
  call = calloc(1, size);
  if (call == NULL)
    return -ENOMEM;

  call->client = c;
  call->timeout_ms = timeout_ms;
  call->cb = cb;
  call->arg = arg;
  call->head = strcmp(method, "HEAD") == 0;
  call->has_host = has_host;
  call->nbufs = nbufs;
  if (nbufs > 0)
    memcpy(call->bufs, body, nbufs * sizeof(uv_buf_t));
  call->line = (char *)(call->bufs + 2 * (size_t)nbufs + 3);
  memcpy(call->line, method, mlen);
  call->line[mlen] = ' ';
  memcpy(call->line + mlen + 1, path, plen);
  memcpy(call->line + mlen + 1 + plen, " HTTP/1.1\r\n", sizeof(" HTTP/1.1\r\n") - 1);
  call->line_len = line_len;
  call->tail = call->line + line_len;
  if (headers_len > 0)
    memcpy(call->tail, headers, headers_len);
  memcpy(call->tail + headers_len, clen, strlen(clen));
  memcpy(call->tail + headers_len + strlen(clen), "\r\n", 2);
  call->tail_len = tail_cap;

  uv_timer_init(c->loop, &call->timer);
  call->timer.data = call;
  c->refs++;

  call->state = BH_CALL_QUEUED;
  call->prev = c->queue_tail;
  if (c->queue_tail != NULL)
    c->queue_tail->next = call;
  else
    c->queue_head = call;
  c->queue_tail = call;
  c->nqueued++;
  if (timeout_ms > 0)
    uv_timer_start(&call->timer, call_on_timeout, timeout_ms, 0);
  if (out != NULL)
    *out = call;
  bh_client_dispatch(c);
  return 0;
}

/* ---------------------------------------------------------------- create, close */

static int target_init(bh_ctarget_t *t, const bh_client_target_t *in) {
  char name[320]; /* an address and port, or a TLS name (up to 253) and port */
  const char *host;
  int n;

  if (in->unix_path != NULL) {
    if (in->unix_path[0] == '\0')
      return -EINVAL;
    /* libuv would silently cut a longer path and connect somewhere else */
    if (strlen(in->unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
      return -ENAMETOOLONG;
    if ((t->unix_path = strdup(in->unix_path)) == NULL)
      return -ENOMEM;
    t->host_line = strdup("Host: localhost\r\n");
  } else {
    if (in->host == NULL || in->port <= 0 || in->port > 65535)
      return -EINVAL;
    host = strcmp(in->host, "localhost") == 0 ? "127.0.0.1" : in->host;
    if (uv_ip4_addr(host, in->port, (struct sockaddr_in *)&t->addr) == 0)
      n = snprintf(name, sizeof(name), "%s:%d", host, in->port);
    else if (uv_ip6_addr(host, in->port, (struct sockaddr_in6 *)&t->addr) == 0)
      n = snprintf(name, sizeof(name), "[%s]:%d", host, in->port);
    else
      return -EINVAL;
    if (n < 0 || (size_t)n >= sizeof(name))
      return -EINVAL;
    if (in->tls_name != NULL) {
      /* the name the certificate is for goes in Host too, as a browser would send it */
      if ((t->tls_name = strdup(in->tls_name)) == NULL)
        return -ENOMEM;
      if (inet_pton(AF_INET, in->tls_name, &(struct in_addr){0}) != 1 &&
          strchr(in->tls_name, ':') == NULL) {
        n = snprintf(name, sizeof(name), "%s:%d", in->tls_name, in->port);
        if (n < 0 || (size_t)n >= sizeof(name))
          return -EINVAL;
      }
    }
    t->host_line = malloc(strlen(name) + sizeof("Host: \r\n"));
    if (t->host_line != NULL)
      sprintf(t->host_line, "Host: %s\r\n", name);
  }
  if (t->host_line == NULL)
    return -ENOMEM;
  t->host_line_len = strlen(t->host_line);
  return 0;
}

int bh_client_create(bh_client_t **out, uv_loop_t *loop, const bh_client_target_t *targets,
                     size_t ntargets, const bh_client_opts_t *opts) {
  bh_client_t *c;
  size_t i;
  int r = 0;

  if (out == NULL)
    return -EINVAL;
  *out = NULL;
  if (loop == NULL || targets == NULL || ntargets == 0 || ntargets > SIZE_MAX / sizeof(bh_ctarget_t))
    return -EINVAL;
  if ((c = calloc(1, sizeof(*c))) == NULL)
    return -ENOMEM;
  if ((c->targets = calloc(ntargets, sizeof(*c->targets))) == NULL) {
    free(c);
    return -ENOMEM;
  }
  c->ntargets = ntargets;
  for (i = 0; i < ntargets && r == 0; i++)
    r = target_init(&c->targets[i], &targets[i]);
  for (i = 0; i < ntargets && r == 0; i++)
    if (targets[i].tls_name != NULL && (opts == NULL || opts->tls == NULL))
      r = -EINVAL;
  if (r != 0) {
    c->refs = 1;
    bh_client_unref(c); /* no handle yet: frees at once */
    return r;
  }

  bh_client_opts_default(&c->opts);
  if (opts != NULL) {
    if (opts->connect_timeout_ms > 0)
      c->opts.connect_timeout_ms = opts->connect_timeout_ms;
    if (opts->idle_timeout_ms > 0)
      c->opts.idle_timeout_ms = opts->idle_timeout_ms;
    if (opts->max_conns_per_target > 0)
      c->opts.max_conns_per_target = opts->max_conns_per_target;
    if (opts->max_response_size > 0)
      c->opts.max_response_size = opts->max_response_size;
    if (opts->max_header_size > 0)
      c->opts.max_header_size = opts->max_header_size;
    c->opts.tls = opts->tls;
  }
  c->loop = loop;
  uv_check_init(loop, &c->done_check);
  uv_idle_init(loop, &c->done_idle);
  c->done_check.data = c;
  c->done_idle.data = c;
  c->refs = 2;
  *out = c;
  return 0;
}

void bh_client_close(bh_client_t *c) {
  bh_cconn_t *conn, *next;
  bh_client_call_t *call;

  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  while (c->queue_head != NULL) /* each turn unlinks one */
    bh_ccall_finish(c->queue_head, -ECANCELED);
  for (conn = c->conns; conn != NULL; conn = next) {
    next = conn->next;
    call = bh_cconn_close(conn);
    if (call != NULL)
      bh_ccall_finish(call, -ECANCELED);
  }
  /* With results still to deliver, on_check closes the handles after them. */
  if (c->done_head == NULL && c->data_head == NULL && !c->delivering)
    client_close_handles(c);
}

size_t bh_client_inflight(const bh_client_t *c, size_t target) {
  return c != NULL && target < c->ntargets ? c->targets[target].inflight : 0;
}

size_t bh_client_conns(const bh_client_t *c, size_t target) {
  return c != NULL && target < c->ntargets ? c->targets[target].nconns : 0;
}

size_t bh_client_queued(const bh_client_t *c) {
  return c != NULL ? c->nqueued : 0;
}
