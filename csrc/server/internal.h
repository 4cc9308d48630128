/* Private to the server files (io.c, conn.c, parse.c, respond.c, stream.c,
 * router.c): the I/O thread's state, a connection, and what each file offers
 * the others. Nothing here may be touched from the Python side. */
#ifndef BH_SERVER_INTERNAL_H
#define BH_SERVER_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <llhttp.h>

#include "common/context.h"
#include "common/text.h"
#include "common/request.h"
#include "python/bridge.h"
#include "server/cors.h"
#include "server/access_log.h"
#include "server/multipart.h"
#include "server/router.h"
#include "net/tls.h"
#include "traffic/metrics.h"

#define BH_BRIDGE_CAPACITY 65536
#define BH_JSON_CT "application/json"

/* Request flags private to the I/O thread, above the BH_REQ_* bits of
 * common/request.h. Python changes flags only with atomic or/and, so these are
 * never lost. */
enum {
  BH_REQ_ADMITTED = 1u << 16,    /* holds a limiter slot and an in-flight gauge */
  BH_REQ_IN_PY = 1u << 17,       /* handed to Python or the batcher: io->inflight */
  BH_REQ_CANCEL_SENT = 1u << 18, /* BH_IN_CANCEL submitted */
};

enum { BH_HDR_OTHER, BH_HDR_CONTENT_TYPE, BH_HDR_EXPECT, BH_HDR_TRANSFER_ENCODING, BH_HDR_CORS,
       BH_HDR_REQUEST_ID };

struct bh_conn;

/* State of the I/O thread; one per worker process. */
typedef struct bh_io {
  bh_worker_t *w;
  uv_loop_t loop;
  pthread_t thread;
  bh_bridge_t bridge;        /* w->bridge points here */
  uv_tcp_t listener;
  uv_signal_t sigterm;
  uv_timer_t drain_timer;
  uv_timer_t hang_timer;     /* looks for the watchdog's verdict (io.c) */
  bh_cors_t *cors;           /* the service's http.cors, NULL: disabled */

  struct bh_conn *conns;     /* every open connection (intrusive list) */
  size_t nconns;
  size_t inflight;           /* handed to Python or the batcher, not yet freed */
  int accept_paused;         /* a connection waits in the listener (concurrency) */
  int draining;              /* take nothing new, finish what is in flight */
  int terminating;           /* SIGTERM seen */
  int hung;                  /* the watchdog replaces this worker: Python gets nothing more */
  int finished;              /* handles closed, uv_run about to return */

  /* start-up hand-shake with bh_io_start() */
  pthread_mutex_t start_lock;
  pthread_cond_t start_cond;
  int start_done;
  int start_err;

  /* defer_listen: the Python thread asks for uv_listen() through listen_async
   * and waits, under start_lock, until listen_state is 2 (done or refused) */
  uv_async_t listen_async;
  int listen_state;          /* 0 not asked, 1 asked, 2 done (listen_err) or closed */
  int listen_err;
} bh_io_t;

/* One HTTP/1.1 connection. One request in flight at a time: the parser pauses
 * at the end of each message and resumes once its response is written. */
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
  int in_head;      /* between message begin and the end of the head */
  int nheaders;
  int has_te;       /* a Transfer-Encoding line was seen */
  char te[64];      /* its value (longer ones are refused) */
  size_t te_len;
  const char *exec_start; /* the buffer llhttp is parsing (obs-fold check) */
  int tail_fold;    /* the previous buffer ended in a line break and blanks */
  uint64_t body_start_ns;
  uint64_t nrequests;  /* requests on this connection */
  int err_reason;   /* BH_REJ_* the refusal is counted under, -1: by status */
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

  char hname[40];    /* long enough for the CORS request headers' names */
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
  bh_cors_req_t cors; /* what CORS read of the message, and its lines (server/cors.c) */

  bh_tls_t *tls;     /* on a TLS listener: the connection's engine */
  bh_access_t acc;   /* the current message's access line and request id */

  /* unparsed input kept while a request is in flight */
  char *pending;
  size_t pending_off, pending_len, pending_cap;
} bh_conn_t;

/* ---------------------------------------------------------------- timing */

static inline uint64_t bh_keepalive_ms(const bh_io_t *io) {
  double s = io->w->opts->keepalive_timeout_s;
  return s > 0 ? (uint64_t)(s * 1000.0) : 1;
}

static inline double bh_api_timeout_s(const bh_worker_t *w) {
  return w->config.timeout_s > 0 ? w->config.timeout_s : 60.0;
}

/* ---------------------------------------------------------------- growing buffers */

/* Appends n bytes to a malloc'd buffer, doubling it as needed; 0 or -ENOMEM. */
static inline int bh_buf_append(char **p, size_t *len, size_t *cap, const char *d,
                                size_t n) {
  if (n == 0) /* an empty span (an empty header name): *p may still be NULL */
    return 0;
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

/* ---------------------------------------------------------------- io.c */

bh_io_t *bh_io_get(void);               /* this process's I/O thread state */
void bh_io_maybe_finish(bh_io_t *io);   /* called when conns/inflight drop */

/* ---------------------------------------------------------------- conn.c */

void bh_http_on_connection(uv_stream_t *listener, int status);
void bh_http_drain(bh_io_t *io);        /* close idle keep-alive connections */
void bh_http_close_all(bh_io_t *io);    /* graceful timeout: close everything */
/* Requests waiting for Python's answer (a streamed response begun is not). */
size_t bh_http_waiting(const bh_io_t *io);
/* Answers every request still waiting for Python with status (a streamed
 * response already begun is left alone); how many. */
size_t bh_http_fail_waiting(bh_io_t *io, int status);
void bh_conn_close(bh_conn_t *c);
void bh_conn_arm(bh_conn_t *c, uint64_t ms);
/* Arms the timer for the message's deadline: its head's, or its body's
 * (--timeout-request-header, --timeout-request-body, --min-body-rate). */
void bh_conn_arm_deadline(bh_conn_t *c);
const char *bh_conn_client(bh_conn_t *c);
void bh_conn_not_fresh(bh_conn_t *c);
/* The response of the current message is on the wire (or queued whole). */
void bh_conn_after_response(bh_conn_t *c, int close);
/* The connection stops waiting for its active request; the request lives on
 * until Python's final message (why: BH_REQ_GONE or BH_REQ_TIMED_OUT, or 0). */
bh_req_t *bh_conn_detach(bh_conn_t *c, uint32_t why);
/* The I/O thread is done with req: its limiter slot, gauge and drain count. */
void bh_req_release(bh_io_t *io, bh_req_t *req);

/* ---------------------------------------------------------------- parse.c */

extern const llhttp_settings_t bh_parser_settings;
/* 1 when a message completed (*consumed bytes were parsed), 0 when all of data
 * was parsed, -1 on a protocol error (c->err_status says which). */
int bh_conn_execute(bh_conn_t *c, const char *data, size_t len, size_t *consumed);
int bh_conn_body_buffer(const bh_conn_t *c, uv_buf_t *buf); /* 0: read the body in place */

/* ---------------------------------------------------------------- respond.c */

/* Writes bufs now when the socket takes them, else queues the rest; 1 written,
 * 0 queued (the write callback follows), -1 when the connection was closed. */
int bh_conn_write(bh_conn_t *c, uv_buf_t *bufs, unsigned nbufs, int copy_first,
                  void *owned, bh_req_t *chunk_req, size_t chunk_len, int close,
                  int final);
/* TLS: sends what the connection's engine has ready (its handshake); 0, or
 * -1 when the connection was closed. */
int bh_tls_send_pending(bh_conn_t *c);
int bh_ctype_ok(const char *s);
int bh_conn_should_close(const bh_conn_t *c);
const char *bh_conn_header(const bh_conn_t *c, int close);
/* ... with c's CORS lines after extra; rid: the x-request-id line's value, or NULL for none */
char *bh_build_head(const bh_conn_t *c, char *stack, size_t stack_cap, char **heap, int status,
                    const char *ctype, const char *extra, size_t extra_len,
                    long long clen, const char *tail, const char *conn_hdr,
                    const char *rid, size_t *outlen);
void bh_conn_respond(bh_conn_t *c, int status, const char *ctype,
                     const char *extra, size_t extra_len, const char *body,
                     size_t len, void *owned);
void bh_conn_respond_builtin(bh_conn_t *c, const bh_builtin_resp_t *r);
/* A C-made error on an API route, counted like any API response. */
void bh_conn_respond_api_error(bh_conn_t *c, int api_index, uint64_t start_ns,
                               int status, const char *json);
void bh_conn_send_continue(bh_conn_t *c);
const char *bh_http_reason(int status);

/* ---------------------------------------------------------------- stream.c */

void bh_http_on_out(bh_out_t *list, void *arg);  /* the bridge's callback */
/* Answers a request that never reached Python (or whose batch refused it)
 * with a JSON error, releases what it holds and frees it. */
void bh_http_reject(bh_req_t *req, int status);
/* n streamed bytes of req left us (back-pressure accounting). */
void bh_stream_wrote(bh_io_t *io, bh_req_t *req, size_t n);

#endif
