/* Python's messages on the I/O thread: whole responses, chunked streams with
 * back-pressure, chunk merging, and requests answered without Python. */
#include "server/internal.h"
#include "server/calls.h"
#include "common/clock.h"
#include "common/log.h"
#include "traffic/batch.h"
#include "traffic/metrics.h"

#include <stdio.h>

/* ---------------------------------------------------------------- writer */

/* n streamed bytes of req left us: below the low-water mark, wake a Python
 * writer that waits. Python sets BH_REQ_WANT_WRITABLE and re-checks the
 * count; whoever clears the flag owns the wake-up. */
void bh_stream_wrote(bh_io_t *io, bh_req_t *req, size_t n) {
  int64_t left = atomic_fetch_sub(&req->pending_bytes, (int64_t)n) - (int64_t)n;

  if (left >= BH_STREAM_LOW_WATER)
    return;
  if (!(atomic_load(&req->flags) & BH_REQ_WANT_WRITABLE))
    return;
  if (atomic_fetch_and(&req->flags, ~(uint32_t)BH_REQ_WANT_WRITABLE) &
      BH_REQ_WANT_WRITABLE) {
    if (bh_bridge_submit(&io->bridge, req, BH_IN_WRITABLE) != 0)
      bh_log("worker %d: ring full, a paused stream was not woken", io->w->index);
  }
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
  if (ctype == NULL || !bh_ctype_ok(ctype))
    ctype = "application/octet-stream";
  hdr = bh_build_head(c, stack, sizeof(stack), &heap, c->stream_status, ctype,
                   msg->headers, msg->headers_len, -1,
                   c->stream_raw ? "" : "transfer-encoding: chunked\r\n",
                   c->stream_raw ? "connection: close\r\n" : bh_conn_header(c, c->io->draining),
                   bh_request_id_for_head(c, msg->headers, msg->headers_len), &hlen);
  free(msg);
  if (hdr == NULL) {
    bh_conn_close(c);
    return;
  }
  buf = uv_buf_init(hdr, (unsigned)hlen);
  bh_access_begin(c, c->stream_status, 0);
  bh_conn_write(c, &buf, 1, 1, NULL, NULL, 0, 0, 0);
  free(heap);
}

static void stream_chunk(bh_conn_t *c, bh_req_t *req, bh_out_t *msg) {
  char line[24];
  uv_buf_t bufs[3];
  size_t len = msg->len;
  int n;

  if (len == 0 || c->head) {
    bh_stream_wrote(c->io, req, len);
    free(msg);
    return;
  }
  bh_access_bytes(&c->acc, len);
  if (c->stream_raw) {
    bufs[0] = uv_buf_init((char *)msg->data, (unsigned)len);
    bh_conn_write(c, bufs, 1, 0, msg, req, len, 0, 0);
    return;
  }
  n = snprintf(line, sizeof(line), "%zx\r\n", len);
  bufs[0] = uv_buf_init(line, (unsigned)n);
  bufs[1] = uv_buf_init((char *)msg->data, (unsigned)len);
  bufs[2] = uv_buf_init((char *)"\r\n", 2);
  bh_conn_write(c, bufs, 3, 1, msg, req, len, 0, 0);
}

static void stream_end(bh_conn_t *c, bh_req_t *req) {
  bh_io_t *io = c->io;
  static const char last[] = "0\r\n\r\n";
  uv_buf_t buf = uv_buf_init((char *)last, sizeof(last) - 1);
  int close = bh_conn_should_close(c), raw = c->stream_raw;

  bh_metrics_request(io->w, req->api_index, c->stream_status, bh_since_s(req->start_ns));
  bh_conn_detach(c, 0);
  c->stream_raw = 0;
  bh_req_release(io, req);
  if (raw) {
    bh_conn_after_response(c, 1);
    return;
  }
  if (bh_conn_write(c, &buf, 1, 0, NULL, NULL, 0, close, 1) == 1)
    bh_conn_after_response(c, close);
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
      bh_stream_wrote(io, req, msg->len);
    if (final) {
      if (atomic_load(&req->flags) & BH_REQ_TIMED_OUT) {
        const bh_api_t *api = bh_router_api(w, req->api_index);
        bh_log("late result for %s after timeout dropped",
               api != NULL && api->route != NULL ? api->route : "?");
      }
      bh_req_release(io, req);
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
    bh_metrics_request(w, req->api_index, msg->status, bh_since_s(req->start_ns));
    bh_conn_detach(c, 0);
    /* released first: the next pipelined request may take its slot at once */
    bh_req_release(io, req);
    bh_conn_respond(c, msg->status, msg->content_type, msg->headers,
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
      bh_stream_wrote(io, req, msg->len);
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
  case BH_OUT_CALL: /* handled before: bh_calls_send() */
  case BH_OUT_CALL_CANCEL:
  case BH_OUT_CALL_ACK:
    break;
  }
  free(msg);
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
    if (msg->kind == BH_OUT_CALL)
      bh_calls_send(io, msg);
    else if (msg->kind == BH_OUT_CALL_CANCEL)
      bh_calls_cancel(io, msg);
    else if (msg->kind == BH_OUT_CALL_ACK)
      bh_calls_ack(io, msg);
    else
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
    bh_req_release(io, req);
    return;
  }
  uv_timer_stop(&c->timer);
  bh_conn_detach(c, 0);
  bh_req_release(io, req);
  bh_conn_respond_api_error(c, api_index, start, status, NULL);
}
