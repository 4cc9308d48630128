/* The bridge between the I/O thread and the Python side of a worker.
 *
 * Towards Python: a single-producer single-consumer ring of bh_in_t entries
 * (a request and what happened to it).
 * The I/O thread is the only producer, the Python main thread the only consumer.
 * The consumer is woken through an eventfd, but only when it announced that it
 * is about to sleep (consumer_sleeping), so a busy consumer costs the producer
 * no system call.
 *
 * Back to the I/O thread: any Python thread appends a bh_out_t message to a
 * mutex-protected list and pokes a uv_async_t; libuv coalesces the pokes, so
 * one loop iteration handles every message that arrived in the meantime, in
 * the order they were posted.
 */
#include "python/bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

static void bridge_on_async(uv_async_t *handle) {
  bh_bridge_t *b = handle->data;
  bh_out_t *list;

  pthread_mutex_lock(&b->done_lock);
  list = b->done_head;
  b->done_head = b->done_tail = NULL;
  pthread_mutex_unlock(&b->done_lock);

  if (list != NULL && b->on_out != NULL)
    b->on_out(list, b->on_out_arg);
}

int bh_bridge_init(bh_bridge_t *b, uv_loop_t *loop, size_t capacity,
                   bh_out_cb on_out, void *arg) {
  size_t cap;
  int err;

  if (capacity < 2)
    capacity = 2;
  for (cap = 1; cap < capacity; cap <<= 1)
    if (cap > (SIZE_MAX >> 2))
      return -EINVAL;

  memset(b, 0, sizeof(*b));
  b->slots = calloc(cap, sizeof(*b->slots));
  if (b->slots == NULL)
    return -ENOMEM;
  b->capacity = cap;
  atomic_init(&b->head, 0);
  atomic_init(&b->tail, 0);
  atomic_init(&b->consumer_sleeping, 0);
  atomic_init(&b->shutdown, 0);
  b->on_out = on_out;
  b->on_out_arg = arg;

  b->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (b->eventfd < 0) {
    err = -errno;
    goto fail_slots;
  }
  err = -pthread_mutex_init(&b->done_lock, NULL);
  if (err != 0)
    goto fail_fd;
  err = uv_async_init(loop, &b->done_async, bridge_on_async);
  if (err != 0)
    goto fail_lock;
  b->done_async.data = b;
  return 0;

fail_lock:
  pthread_mutex_destroy(&b->done_lock);
fail_fd:
  close(b->eventfd);
  b->eventfd = -1;
fail_slots:
  free(b->slots);
  b->slots = NULL;
  return err;
}

/* Only the async handle goes here: the Python side may still poll the eventfd
 * and look at head/tail until it has seen `shutdown`, so the ring and the
 * eventfd live until bh_bridge_destroy(). */
void bh_bridge_close(bh_bridge_t *b) {
  if (!uv_is_closing((uv_handle_t *)&b->done_async))
    uv_close((uv_handle_t *)&b->done_async, NULL);
}

void bh_bridge_destroy(bh_bridge_t *b) {
  free(b->slots);
  b->slots = NULL;
  if (b->eventfd >= 0)
    close(b->eventfd);
  b->eventfd = -1;
  pthread_mutex_destroy(&b->done_lock);
}

static void bridge_wake(bh_bridge_t *b) {
  static const uint64_t one = 1;
  ssize_t n;

  /* EAGAIN means the counter is already non-zero: the reader will wake anyway. */
  do
    n = write(b->eventfd, &one, sizeof(one));
  while (n < 0 && errno == EINTR);
}

int bh_bridge_submit(bh_bridge_t *b, bh_req_t *req, bh_in_kind_t kind) {
  size_t tail = atomic_load_explicit(&b->tail, memory_order_relaxed);
  size_t head = atomic_load_explicit(&b->head, memory_order_acquire);

  if (tail - head >= b->capacity)
    return -EAGAIN;
  b->slots[tail & (b->capacity - 1)].req = req;
  b->slots[tail & (b->capacity - 1)].kind = kind;
  atomic_store_explicit(&b->tail, tail + 1, memory_order_release);

  /* Pairs with the fence in bh_bridge_take(): either the consumer sees the
   * new tail after announcing sleep, or we see its announcement here. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&b->consumer_sleeping, memory_order_relaxed) &&
      atomic_exchange(&b->consumer_sleeping, 0))
    bridge_wake(b);
  return 0;
}

size_t bh_bridge_take(bh_bridge_t *b, bh_in_t *out, size_t max) {
  size_t head = atomic_load_explicit(&b->head, memory_order_relaxed);
  size_t tail = atomic_load_explicit(&b->tail, memory_order_acquire);
  size_t n, i;

  if (tail == head) {
    atomic_store_explicit(&b->consumer_sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    tail = atomic_load_explicit(&b->tail, memory_order_acquire);
    if (tail == head)
      return 0;
    /* The producer may already have cleared the flag and written the
     * eventfd; that only costs the consumer one spurious wake-up. */
    atomic_store_explicit(&b->consumer_sleeping, 0, memory_order_relaxed);
  }

  n = tail - head;
  if (n > max)
    n = max;
  for (i = 0; i < n; i++)
    out[i] = b->slots[(head + i) & (b->capacity - 1)];
  atomic_store_explicit(&b->head, head + n, memory_order_release);
  return n;
}

void bh_bridge_clear_eventfd(bh_bridge_t *b) {
  uint64_t v;
  ssize_t n;

  do
    n = read(b->eventfd, &v, sizeof(v));
  while (n < 0 && errno == EINTR);
}

void bh_bridge_post(bh_bridge_t *b, bh_out_t *msg) {
  msg->next = NULL;
  pthread_mutex_lock(&b->done_lock);
  if (b->done_tail != NULL)
    b->done_tail->next = msg;
  else
    b->done_head = msg;
  b->done_tail = msg;
  /* Sent under the lock: once the I/O thread can see this message, the send
   * is over, so after the last final message it may close the handle and the
   * loop without racing a send still in progress. uv_async_send() is a
   * compare-and-swap when a wake-up is already pending. */
  uv_async_send(&b->done_async);
  pthread_mutex_unlock(&b->done_lock);
}

void bh_bridge_signal_shutdown(bh_bridge_t *b) {
  atomic_store(&b->shutdown, 1);
  bridge_wake(b);
}
