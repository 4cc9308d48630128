/* Private to the client's files (client.c, client_conn.c, client_parse.c):
 * the client, its targets, calls and connections, and what each file offers
 * the others. */
#ifndef BH_NET_CLIENT_INTERNAL_H
#define BH_NET_CLIENT_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>
#include <llhttp.h>

#include "net/client.h"
#include "net/tls.h"

/* Reads are handled synchronously in the read callback, so one buffer per
 * client serves all its connections (they share its loop and thread). */
#define BH_CLIENT_READ_BUF (64 * 1024)

typedef struct bh_cconn bh_cconn_t;

/* One worker of the dependency. */
typedef struct bh_ctarget {
  char *unix_path;              /* a copy, or NULL for TCP */
  struct sockaddr_storage addr; /* TCP: the parsed address */
  char *host_line;              /* "Host: ...\r\n" */
  char *tls_name;               /* TLS: the name or address to verify; NULL: plain */
  size_t host_line_len;
  size_t inflight;              /* calls assigned here and not yet finished */
  size_t nconns;                /* open connections: connecting, busy or idle */
  bh_cconn_t *idle;             /* idle keep-alive connections, most recent first */
} bh_ctarget_t;

enum {
  BH_CALL_QUEUED,     /* in the client's queue, no target yet */
  BH_CALL_ACTIVE,     /* on a target: call->conn is connecting or exchanging */
  BH_CALL_DONE,       /* result decided, in the done list */
  BH_CALL_DELIVERED,  /* callback called; the timer is closing */
};

struct bh_client_call {
  bh_client_t *client;
  uv_timer_t timer;             /* the call's timeout; its close frees the call */
  bh_client_cb cb;
  void *arg;
  bh_client_call_t *prev, *next; /* in the client's queue or done list */
  int state;                    /* BH_CALL_* */
  int retried;                  /* already sent again after a stale connection */
  int head;                     /* a HEAD request: the response has no body */
  int has_host;                 /* the caller gave its own Host line */
  size_t target;                /* ACTIVE: the index of its target */
  uint64_t timeout_ms;          /* 0: none */

  /* a streamed call (bh_client_stream) */
  bh_client_data_cb on_data;
  int paused;                   /* bh_client_pause */
  int head_taken;               /* 1: the final head awaits delivery; 2: delivered */
  int head_status;
  int in_data;                  /* in the client's data list */
  bh_client_call_t *data_next;
  char *pend;                   /* body bytes read and not yet delivered */
  size_t pend_len;
  bh_cconn_t *conn;             /* ACTIVE: the connection carrying it */

  /* the result, once DONE */
  int result;
  char *hdrs;                   /* NUL-terminated header block, or NULL */
  size_t hdrs_len;
  char *body;
  size_t body_len;

  /* the request: line, the target's Host line, tail, then the body */
  char *line;                   /* "METHOD PATH HTTP/1.1\r\n" */
  size_t line_len;
  char *tail;                   /* caller's headers, Content-Length, "\r\n" */
  size_t tail_len;
  unsigned nbufs;
  /* nbufs body buffers (the caller's), then room for the 3 + nbufs buffers
   * of one write; the strings follow */
  uv_buf_t bufs[];
};

enum {
  BH_CONN_CONNECTING,
  BH_CONN_BUSY,                 /* an exchange on it: conn->call is set */
  BH_CONN_IDLE,                 /* in its target's pool */
  BH_CONN_CLOSING,              /* uv_close() called */
};

/* One connection to a target. One exchange at a time: a request is written
 * only once the previous response is complete. */
struct bh_cconn {
  union {
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_timer_t timer;             /* connect timeout, idle timeout; after a failed
                                   write, how long an answer may still come */
  uv_connect_t connect_req;
  uv_write_t write_req;
  llhttp_t parser;
  bh_client_t *client;
  size_t target;
  bh_cconn_t *prev, *next;      /* every open connection of the client */
  bh_cconn_t *pool_prev, *pool_next; /* the target's idle pool */
  bh_client_call_t *call;       /* the call in flight on it */
  int refs;                     /* its two handles until they are closed */
  int state;                    /* BH_CONN_* */
  int writing;                  /* uv_write()s pending */
  bh_tls_t *tls;                /* a TLS target's engine */
  int handshaking;              /* TLS: the request waits for the handshake */
  int write_err;                /* the request's write failed: EPIPE or ECONNRESET */
  uint64_t exchanges;           /* requests sent on it; > 1: a reused connection */

  /* the response being parsed (client_parse.c) */
  int got_bytes;                /* a response byte arrived for this exchange */
  int msg_done;                 /* the final response is complete */
  int keep_alive;               /* ... and allows the connection to be reused */
  int in_head;                  /* between message begin and headers complete */
  int head_done;                /* the final response's head is complete */
  int read_stopped;             /* a paused streamed call stopped reading */
  int interim;                  /* the message being parsed is a 1xx */
  int ninterim;                 /* 1xx responses seen for this exchange */
  int err;                      /* a negative errno a callback failed with */
  int status;
  size_t head_bytes;            /* toward max_header_size, over every message */
  char *hdrs;
  size_t hdrs_len, hdrs_cap;
  char *body;
  size_t body_len, body_cap;
};

struct bh_client {
  uv_loop_t *loop;
  bh_client_opts_t opts;
  bh_ctarget_t *targets;
  size_t ntargets;
  size_t rr;                    /* where the next tie-break starts */
  bh_client_call_t *queue_head, *queue_tail;
  size_t nqueued;
  bh_client_call_t *done_head, *done_tail;
  bh_client_call_t *data_head, *data_tail; /* streamed calls with something to deliver */
  bh_cconn_t *conns;            /* every open connection */
  uv_check_t done_check;        /* delivers finished calls after the poll phase */
  uv_idle_t done_idle;          /* keeps that poll from blocking meanwhile */
  int dispatching;
  int delivering;
  int closing;                  /* bh_client_close() called */
  int handles_closed;
  size_t refs;                  /* its two handles, every call and connection */
  char read_buf[BH_CLIENT_READ_BUF];
  char tls_plain[BH_CLIENT_READ_BUF]; /* what TLS decrypted from read_buf */
};

/* ---------------------------------------------------------------- client.c */

/* The call's result is decided (it holds no connection any more): it goes to
 * the done list, its callback follows from the loop. */
void bh_ccall_finish(bh_client_call_t *call, int result);
/* Sends queued calls to targets with room, as long as there are both. */
void bh_client_dispatch(bh_client_t *c);
void bh_client_unref(bh_client_t *c);
/* A streamed call has new head or body bytes (moved from its connection):
 * queued for delivery from the loop; its read timeout starts over. */
void bh_ccall_data_ready(bh_client_call_t *call);

/* ---------------------------------------------------------------- client_conn.c */

/* Starts the exchange of an ACTIVE call on its target: on an idle connection,
 * else on a new one. Failures finish the call. */
void bh_cconn_assign(bh_client_t *c, bh_client_call_t *call);
/* Closes the connection; returns the call it carried (detached), or NULL. */
bh_client_call_t *bh_cconn_close(bh_cconn_t *conn);
/* Stops or restarts reading a busy connection (a streamed call's pause). */
void bh_cconn_pause(bh_cconn_t *conn, int paused);

/* ---------------------------------------------------------------- client_parse.c */

extern const llhttp_settings_t bh_cconn_parser_settings;
/* Ready to parse the response of a new exchange on conn. */
void bh_cconn_parse_start(bh_cconn_t *conn);

#endif
