/* The door between a worker's I/O thread and its Python thread
 * (python/bridge.c): an SPSC ring of requests towards Python, woken through an
 * eventfd, and an MPSC list of Python's messages back, woken by uv_async. */
#ifndef BH_PYTHON_BRIDGE_H
#define BH_PYTHON_BRIDGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <uv.h>

#include "common/request.h"

/* Towards Python: what a ring entry means. */
typedef enum bh_in_kind {
  BH_IN_REQUEST = 0,   /* a request to run */
  BH_IN_BATCH = 1,     /* req is the head of a batch (req->batch_next...) */
  BH_IN_CANCEL = 2,    /* timed out or client gone: cancel what runs for req */
  BH_IN_WRITABLE = 3,  /* a paused stream may write again */
  BH_IN_RESPONSE = 4,  /* req carries the response to an outbound call (Python frees it) */
  BH_IN_RESPONSE_DATA = 5, /* a streamed call's head (in its first entry) and body bytes */
} bh_in_kind_t;

typedef struct bh_in {
  bh_req_t *req;
  bh_in_kind_t kind;
} bh_in_t;

typedef void (*bh_out_cb)(bh_out_t *list, void *arg);

typedef struct bh_bridge {
  /* I/O thread -> Python: single-producer single-consumer ring */
  bh_in_t *slots;
  size_t capacity;            /* a power of two */
  _Atomic size_t head;        /* next slot the consumer reads */
  _Atomic size_t tail;        /* next slot the producer writes */
  _Atomic int consumer_sleeping;
  _Atomic int shutdown;       /* set by the I/O thread once drained */
  int eventfd;

  /* Python (any thread) -> I/O thread: mutex-protected list + uv_async */
  pthread_mutex_t done_lock;
  bh_out_t *done_head, *done_tail;
  uv_async_t done_async;
  bh_out_cb on_out;
  void *on_out_arg;
} bh_bridge_t;

/* Called on the I/O thread with its loop (uv_async must belong to that loop). */
int bh_bridge_init(bh_bridge_t *b, uv_loop_t *loop, size_t capacity,
                   bh_out_cb on_out, void *arg);
void bh_bridge_close(bh_bridge_t *b);   /* I/O thread, at the end */
void bh_bridge_destroy(bh_bridge_t *b); /* after the I/O thread ended: ring and eventfd */
/* I/O thread; -EAGAIN if full. */
int bh_bridge_submit(bh_bridge_t *b, bh_req_t *req, bh_in_kind_t kind);
/* Python side: pops up to max entries. When it finds the ring empty it arms the
 * eventfd wake-up before returning 0, so a later submit wakes the consumer. */
size_t bh_bridge_take(bh_bridge_t *b, bh_in_t *out, size_t max);
void bh_bridge_clear_eventfd(bh_bridge_t *b);
void bh_bridge_post(bh_bridge_t *b, bh_out_t *msg); /* any thread */
void bh_bridge_signal_shutdown(bh_bridge_t *b);    /* I/O thread */

#endif
