/* Unit test of the bridge: the SPSC ring with its eventfd wake-up protocol,
 * and the completion list drained on the loop thread by uv_async.
 * Exits 0 on success; prints what went wrong otherwise. */
#include "python/bridge.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bh_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[test_ring] ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

static size_t n_items = 2000000;
static bh_bridge_t ring_bridge;
static _Atomic size_t producer_full;

static void *producer(void *arg) {
  size_t i;
  unsigned seed = 12345;
  (void)arg;
  for (i = 1; i <= n_items; i++) {
    /* Each pointer carries its sequence number; the ring never dereferences. */
    bh_req_t *req = (bh_req_t *)(uintptr_t)i;
    while (bh_bridge_submit(&ring_bridge, req, (bh_in_kind_t)(i & 3)) == -EAGAIN) {
      atomic_fetch_add(&producer_full, 1);
      sched_yield();
    }
    /* Pause now and then so the consumer goes to sleep often: that is where
     * a lost wake-up would show. */
    seed = seed * 1103515245 + 12345;
    if ((seed >> 16) % 4096 == 0) {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static void test_ring(void) {
  uv_loop_t loop;
  pthread_t th;
  bh_in_t batch[256];
  size_t expect = 1, sleeps = 0, spurious = 0, n, i;
  struct pollfd pfd;

  CHECK(uv_loop_init(&loop) == 0);
  CHECK(bh_bridge_init(&ring_bridge, &loop, 1000, NULL, NULL) == 0);
  CHECK(ring_bridge.capacity == 1024);

  /* a full ring refuses, an empty one arms the wake-up */
  for (i = 0; i < 1024; i++)
    CHECK(bh_bridge_submit(&ring_bridge, (bh_req_t *)(uintptr_t)(i + 1), BH_IN_REQUEST) == 0);
  CHECK(bh_bridge_submit(&ring_bridge, (bh_req_t *)1, BH_IN_CANCEL) == -EAGAIN);
  for (i = 0; i < 1024; i += n) {
    n = bh_bridge_take(&ring_bridge, batch, 256);
    CHECK(n == 256);
    CHECK(batch[0].req == (bh_req_t *)(uintptr_t)(i + 1));
    CHECK(batch[0].kind == BH_IN_REQUEST);
  }
  CHECK(bh_bridge_take(&ring_bridge, batch, 256) == 0);
  CHECK(atomic_load(&ring_bridge.consumer_sleeping) == 1);
  CHECK(bh_bridge_submit(&ring_bridge, (bh_req_t *)7, BH_IN_WRITABLE) == 0);
  CHECK(atomic_load(&ring_bridge.consumer_sleeping) == 0);
  pfd.fd = ring_bridge.eventfd;
  pfd.events = POLLIN;
  CHECK(poll(&pfd, 1, 0) == 1);
  bh_bridge_clear_eventfd(&ring_bridge);
  CHECK(poll(&pfd, 1, 0) == 0);
  CHECK(bh_bridge_take(&ring_bridge, batch, 256) == 1 && batch[0].req == (bh_req_t *)7);
  CHECK(batch[0].kind == BH_IN_WRITABLE);

  CHECK(pthread_create(&th, NULL, producer, NULL) == 0);
  while (expect <= n_items) {
    n = bh_bridge_take(&ring_bridge, batch, 256);
    if (n == 0) {
      int r;
      sleeps++;
      pfd.fd = ring_bridge.eventfd;
      pfd.events = POLLIN;
      /* A lost wake-up leaves us here with items in the ring. */
      r = poll(&pfd, 1, 5000);
      if (r == 0) {
        fprintf(stderr, "lost wake-up: expecting %zu, tail-head=%zu\n", expect,
                atomic_load(&ring_bridge.tail) - atomic_load(&ring_bridge.head));
        exit(1);
      }
      CHECK(r == 1);
      bh_bridge_clear_eventfd(&ring_bridge);
      continue;
    }
    for (i = 0; i < n; i++) {
      if (batch[i].req != (bh_req_t *)(uintptr_t)expect ||
          batch[i].kind != (bh_in_kind_t)(expect & 3)) {
        fprintf(stderr, "out of order: got %zu/%d want %zu\n",
                (size_t)(uintptr_t)batch[i].req, (int)batch[i].kind, expect);
        exit(1);
      }
      expect++;
    }
  }
  pthread_join(th, NULL);
  CHECK(bh_bridge_take(&ring_bridge, batch, 256) == 0);

  bh_bridge_signal_shutdown(&ring_bridge);
  CHECK(poll(&pfd, 1, 0) == 1);
  CHECK(atomic_load(&ring_bridge.shutdown) == 1);
  (void)spurious;
  printf("ring: %zu items in order, %zu consumer sleeps, %zu full-ring retries\n",
         n_items, sleeps, (size_t)atomic_load(&producer_full));

  bh_bridge_close(&ring_bridge);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  bh_bridge_destroy(&ring_bridge);
}

/* ---- messages: several threads post, one loop thread collects ---- */

#define COMPLETERS 4
#define PER_THREAD 50000

static bh_bridge_t done_bridge;
static size_t done_count, done_batches;
static size_t next_seq[COMPLETERS];

/* The req pointer carries (thread, sequence); the bridge never dereferences it. */
static void on_out(bh_out_t *list, void *arg) {
  bh_out_t *next;
  (void)arg;
  done_batches++;
  for (; list != NULL; list = next) {
    uintptr_t id = (uintptr_t)list->req;
    size_t t = id % COMPLETERS, seq = id / COMPLETERS;
    next = list->next;
    /* per producer, messages arrive in the order they were posted */
    CHECK(seq == next_seq[t]);
    next_seq[t]++;
    CHECK(list->status == 200);
    CHECK(list->kind == (bh_out_kind_t)(seq & 3));
    CHECK(list->content_type != NULL && strcmp(list->content_type, "text/plain") == 0);
    CHECK(list->headers_len == 8 && memcmp(list->headers, "x: 1\r\n\r\n", 8) == 0);
    CHECK(list->len == 2 && memcmp(list->data, "ok", 2) == 0);
    free(list); /* one allocation */
    done_count++;
  }
  if (done_count == (size_t)COMPLETERS * PER_THREAD)
    bh_bridge_close(&done_bridge);
}

static void *completer(void *arg) {
  size_t t = (size_t)(intptr_t)arg;
  size_t i;
  for (i = 0; i < PER_THREAD; i++) {
    bh_out_t *msg = bh_out_new((bh_req_t *)(uintptr_t)(i * COMPLETERS + t),
                               (bh_out_kind_t)(i & 3), 200, "text/plainXX", 10,
                               "x: 1\r\n\r\n", 8, "ok", 2);
    CHECK(msg != NULL);
    bh_bridge_post(&done_bridge, msg);
  }
  return NULL;
}

static void test_completions(void) {
  uv_loop_t loop;
  pthread_t th[COMPLETERS];
  bh_out_t *m;
  int t;

  /* empty strings and data are NULL, not dangling */
  m = bh_out_new(NULL, BH_OUT_STREAM_END, 0, NULL, 0, NULL, 0, NULL, 0);
  CHECK(m != NULL && m->content_type == NULL && m->headers == NULL && m->data == NULL);
  CHECK(m->len == 0 && m->headers_len == 0 && m->kind == BH_OUT_STREAM_END);
  free(m);

  CHECK(uv_loop_init(&loop) == 0);
  CHECK(bh_bridge_init(&done_bridge, &loop, 16, on_out, NULL) == 0);
  for (t = 0; t < COMPLETERS; t++)
    CHECK(pthread_create(&th[t], NULL, completer, (void *)(intptr_t)t) == 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once on_out closed the async */
  for (t = 0; t < COMPLETERS; t++)
    pthread_join(th[t], NULL);
  CHECK(done_count == (size_t)COMPLETERS * PER_THREAD);
  CHECK(done_batches <= done_count);
  CHECK(uv_loop_close(&loop) == 0);
  bh_bridge_destroy(&done_bridge);
  printf("completions: %zu from %d threads in %zu batches\n", done_count,
         COMPLETERS, done_batches);
}

int main(int argc, char **argv) {
  if (argc > 1)
    n_items = strtoull(argv[1], NULL, 10);
  test_ring();
  test_completions();
  printf("OK\n");
  return 0;
}
