/* The worker's I/O thread: owns the libuv loop, the listening socket and the
 * connections, and drains gracefully on SIGTERM.
 *
 * The Python main thread blocks SIGTERM, so the kernel delivers it to this
 * thread, where libuv turns it into a loop event. Shutdown order: stop
 * accepting, close idle connections, let in-flight requests finish (their
 * responses say connection: close), and once no connection and no request is
 * left, tell Python through the bridge and let uv_run() return.
 */
#include "server/io.h"
#include "server/internal.h"
#include "server/calls.h"
#include "server/access_log.h"
#include "common/log.h"
#include "traffic/batch.h"

#include <signal.h>

/* One I/O thread per worker process. */
static bh_io_t io_state;

bh_io_t *bh_io_get(void) {
  return &io_state;
}

static void io_close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

void bh_io_maybe_finish(bh_io_t *io) {
  sigset_t set;

  if (!io->draining || io->finished || io->nconns > 0 || io->inflight > 0)
    return;
  io->finished = 1;

  /* Closing the last SIGTERM watcher restores SIG_DFL; with the signal
   * blocked here too, a late SIGTERM stays pending instead of killing a
   * worker that is exiting cleanly anyway. */
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  if (io->w->batcher != NULL) {
    bh_batcher_close(io->w->batcher);
    io->w->batcher = NULL;
  }
  bh_access_log_stop(io);
  bh_calls_close(io);
  bh_bridge_signal_shutdown(&io->bridge);
  io_close_handle((uv_handle_t *)&io->listener);
  io_close_handle((uv_handle_t *)&io->sigterm);
  io_close_handle((uv_handle_t *)&io->drain_timer);
  bh_bridge_close(&io->bridge);
}

static void io_on_drain_timeout(uv_timer_t *t) {
  bh_io_t *io = t->data;

  if (io->nconns > 0)
    bh_log("worker %d: graceful shutdown timed out, closing %zu connection(s)",
           io->w->index, io->nconns);
  bh_http_close_all(io);
  bh_io_maybe_finish(io);
}

static void io_on_sigterm(uv_signal_t *s, int signum) {
  bh_io_t *io = s->data;
  double grace = io->w->opts->graceful_timeout_s;

  (void)signum;
  if (io->draining)
    return;
  io->draining = 1;
  io_close_handle((uv_handle_t *)&io->listener);
  bh_http_drain(io);
  if (grace > 0 && !io->finished)
    uv_timer_start(&io->drain_timer, io_on_drain_timeout,
                   (uint64_t)(grace * 1000.0), 0);
  bh_io_maybe_finish(io);
}

static int io_any_batchable(const bh_worker_t *w) {
  size_t i;
  for (i = 0; i < w->config.napis; i++)
    if (w->config.apis[i].batchable)
      return 1;
  return 0;
}

/* The batcher's way to Python and its way to answer a request it refuses. */
static int io_submit_batch(void *arg, bh_req_t *first) {
  (void)arg;
  return bh_bridge_submit(&io_state.bridge, first, BH_IN_BATCH);
}

static void io_reject(void *arg, bh_req_t *req, int status) {
  (void)arg;
  bh_http_reject(req, status);
}

static void io_start_done(bh_io_t *io, int err) {
  pthread_mutex_lock(&io->start_lock);
  io->start_err = err;
  io->start_done = 1;
  pthread_cond_signal(&io->start_cond);
  pthread_mutex_unlock(&io->start_lock);
}

static void *io_thread_main(void *arg) {
  bh_io_t *io = arg;
  bh_worker_t *w = io->w;
  uv_loop_t *loop = &io->loop;
  sigset_t set;
  int err;

  /* Writing to a reset socket must give EPIPE here, not kill the worker. */
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  err = uv_loop_init(loop);
  if (err != 0) {
    io_start_done(io, err);
    return NULL;
  }
  err = bh_bridge_init(&io->bridge, loop, BH_BRIDGE_CAPACITY,
                       bh_http_on_out, io);
  if (err != 0) {
    uv_loop_close(loop);
    io_start_done(io, err);
    return NULL;
  }

  err = bh_calls_start(io);
  if (err != 0) {
    bh_calls_close(io);
    bh_bridge_close(&io->bridge);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    bh_bridge_destroy(&io->bridge);
    io_start_done(io, err);
    return NULL;
  }

  /* Batch queues and their timers live on this loop. Without them the
   * batchable APIs still work, one call per request. */
  w->batcher = NULL;
  if (io_any_batchable(w)) {
    static const bh_batcher_ops_t ops = {io_submit_batch, io_reject, NULL};
    err = bh_batcher_create(&w->batcher, w, loop, &ops);
    if (err != 0) {
      bh_log("worker %d: adaptive batching unavailable: %s", w->index,
             uv_strerror(err));
      w->batcher = NULL;
    }
  }

  uv_signal_init(loop, &io->sigterm);
  io->sigterm.data = io;
  uv_timer_init(loop, &io->drain_timer);
  io->drain_timer.data = io;
  uv_tcp_init(loop, &io->listener);
  io->listener.data = io;

  /* Unblocked only once libuv's handler is installed: a SIGTERM that arrived
   * early is pending and must not meet the default action. */
  err = uv_signal_start(&io->sigterm, io_on_sigterm, SIGTERM);
  if (err == 0) {
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  }
  if (err == 0)
    err = uv_tcp_open(&io->listener, w->listen_fd);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&io->listener,
                    w->opts->backlog > 0 ? w->opts->backlog : 2048,
                    bh_http_on_connection);
  if (err != 0) {
    if (w->batcher != NULL) {
      bh_batcher_close(w->batcher);
      w->batcher = NULL;
    }
    io_close_handle((uv_handle_t *)&io->listener);
    io_close_handle((uv_handle_t *)&io->sigterm);
    io_close_handle((uv_handle_t *)&io->drain_timer);
    bh_bridge_close(&io->bridge);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    bh_bridge_destroy(&io->bridge);
    io_start_done(io, err);
    return NULL;
  }

  err = bh_access_log_start(io);
  if (err != 0)
    bh_log("warning: worker %d: no access log: %s", w->index, strerror(-err));

  w->bridge = &io->bridge;
  atomic_store(&w->io_ready, 1);
  io_start_done(io, 0);

  uv_run(loop, UV_RUN_DEFAULT);
  err = uv_loop_close(loop);
  if (err != 0)
    bh_log("worker %d: I/O loop closed with handles left: %s", w->index,
           uv_strerror(err));
  return NULL;
}

int bh_io_start(bh_worker_t *w) {
  bh_io_t *io = &io_state;
  int err;

  memset(io, 0, sizeof(*io));
  io->w = w;
  pthread_mutex_init(&io->start_lock, NULL);
  pthread_cond_init(&io->start_cond, NULL);

  err = pthread_create(&io->thread, NULL, io_thread_main, io);
  if (err != 0)
    return -err;

  pthread_mutex_lock(&io->start_lock);
  while (!io->start_done)
    pthread_cond_wait(&io->start_cond, &io->start_lock);
  pthread_mutex_unlock(&io->start_lock);

  if (io->start_err != 0) {
    pthread_join(io->thread, NULL);
    return io->start_err;
  }
  w->io_started = 1;
  return 0;
}

int bh_io_join(bh_worker_t *w) {
  int err;

  if (!w->io_started)
    return 0;
  err = pthread_join(io_state.thread, NULL);
  w->io_started = 0;
  return -err;
}
