/* The worker's I/O thread: owns the libuv loop, the listening socket and the
 * connections, and drains gracefully on SIGTERM.
 *
 * The Python main thread blocks SIGTERM, so the kernel delivers it to this
 * thread, where libuv turns it into a loop event. Shutdown order: stop
 * accepting, close idle connections, let in-flight requests finish (their
 * responses say connection: close), and once no connection and no request is
 * left, tell Python through the bridge and let uv_run() return.
 *
 * A worker replaced by a rolling restart (its slot says `retiring`) keeps its
 * idle keep-alive connections instead of closing them: a client may be
 * writing its next request on one at that very moment, and would see it fail.
 * Each is answered once more, with connection: close, or closes at its
 * keep-alive timeout. A rolling restart's new worker (defer_listen) accepts
 * only once it is ready (io_start_listening).
 */
#include "server/io.h"
#include "server/internal.h"
#include "server/calls.h"
#include "server/access_log.h"
#include "common/log.h"
#include "traffic/batch.h"
#include "traffic/shm.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

/* Four looks a second at the watchdog's measure: well inside the second the
 * supervisor waits between seeing a hang and the kill. */
#define HANG_CHECK_MS 250

/* One I/O thread per worker process. */
static bh_io_t io_state;

bh_io_t *bh_io_get(void) {
  return &io_state;
}

static void io_close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* The listen hand-shake is over: wake a Python thread waiting for it. */
static void io_listen_settle(bh_io_t *io, int err) {
  pthread_mutex_lock(&io->start_lock);
  if (io->listen_state != 2) {
    io->listen_err = err;
    io->listen_state = 2;
    if (io->w->defer_listen)
      io_close_handle((uv_handle_t *)&io->listen_async);
  }
  pthread_cond_broadcast(&io->start_cond);
  pthread_mutex_unlock(&io->start_lock);
}

void bh_io_maybe_finish(bh_io_t *io) {
  sigset_t set;

  if (!io->draining || io->finished || io->nconns > 0 || io->inflight > 0)
    return;
  io->finished = 1;
  io_listen_settle(io, -ECANCELED);

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
  io_close_handle((uv_handle_t *)&io->hang_timer);
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

/* Takes no new connection (the pool's other workers get them) and, unless
 * keep_idle, closes the idle keep-alive ones; what is in flight finishes. */
static void io_stop_taking(bh_io_t *io, int keep_idle) {
  io->draining = 1;
  io_close_handle((uv_handle_t *)&io->listener);
  if (!keep_idle)
    bh_http_drain(io);
}

static void io_on_sigterm(uv_signal_t *s, int signum) {
  bh_io_t *io = s->data;
  double grace = io->w->opts->graceful_timeout_s;

  (void)signum;
  if (io->terminating)
    return;
  io->terminating = 1;
  io_stop_taking(io, bh_shm_retiring(io->w->shm, io->w->slot));
  if (grace > 0 && !io->finished)
    uv_timer_start(&io->drain_timer, io_on_drain_timeout,
                   (uint64_t)(grace * 1000.0), 0);
  bh_io_maybe_finish(io);
}

/* A worker without progress too long is replaced: the supervisor's watchdog
 * (supervisor/watch.c) SIGKILLs it a second after it sees a stalled Python
 * loop, or after this thread reports every sync thread stuck while requests
 * wait. This thread reads the loop's measure too, more often, so it gets
 * there first: it takes no more connections, so its siblings (or its
 * replacement) get them, and it answers 503 now every request it holds that
 * has not been answered, since Python would never answer them and the kill
 * would cut them. */
static void io_on_hang_check(uv_timer_t *t) {
  bh_io_t *io = t->data;
  double hung = bh_router_hung_s(io->w, bh_http_waiting(io) > 0);
  size_t n;

  if (hung == 0 || io->finished)
    return;
  uv_timer_stop(t);
  io->hung = 1;
  bh_shm_report_hung(io->w->shm, io->w->slot);
  io_stop_taking(io, 0);
  n = bh_http_fail_waiting(io, 503);
  bh_log("worker %d: no progress for %.1fs: taking no more connections, %zu waiting request(s) "
         "answered 503; the supervisor replaces this worker", io->w->index, hung, n);
  bh_io_maybe_finish(io);
}

static void io_on_listen_async(uv_async_t *a) {
  bh_io_t *io = a->data;
  bh_worker_t *w = io->w;
  int err = -ECANCELED;

  if (!io->draining)
    err = uv_listen((uv_stream_t *)&io->listener, w->opts->backlog > 0 ? w->opts->backlog : 2048,
                    bh_http_on_connection);
  io_listen_settle(io, err);
}

/* Python thread (w->start_listening). The GIL is not held: the I/O thread
 * never takes it, but other Python threads may run meanwhile. */
static int io_start_listening(bh_worker_t *w) {
  bh_io_t *io = &io_state;
  int err;

  (void)w;
  pthread_mutex_lock(&io->start_lock);
  if (io->listen_state == 0) {
    io->listen_state = 1;
    uv_async_send(&io->listen_async); /* under the lock: never after its close */
  }
  while (io->listen_state != 2)
    pthread_cond_wait(&io->start_cond, &io->start_lock);
  err = io->listen_err;
  pthread_mutex_unlock(&io->start_lock);
  return err;
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
  /* --cpu-affinity: the worker's Python threads keep the rest of its CPUs, so the
   * sockets are served beside them without the two moving between caches. */
  if (w->io_cpu > 0) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(w->io_cpu - 1, &cpus);
    pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
  }

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
  uv_timer_init(loop, &io->hang_timer);
  io->hang_timer.data = io;
  uv_tcp_init(loop, &io->listener);
  io->listener.data = io;
  if (w->defer_listen) {
    uv_async_init(loop, &io->listen_async, io_on_listen_async);
    io->listen_async.data = io;
  }

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
  if (err == 0 && !w->defer_listen)
    err = uv_listen((uv_stream_t *)&io->listener,
                    w->opts->backlog > 0 ? w->opts->backlog : 2048,
                    bh_http_on_connection);
  if (err != 0) {
    io_listen_settle(io, err);
    if (w->batcher != NULL) {
      bh_batcher_close(w->batcher);
      w->batcher = NULL;
    }
    io_close_handle((uv_handle_t *)&io->listener);
    io_close_handle((uv_handle_t *)&io->sigterm);
    io_close_handle((uv_handle_t *)&io->drain_timer);
    io_close_handle((uv_handle_t *)&io->hang_timer);
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

  if (w->opts->watchdog_factor > 0 && w->shm != NULL)
    uv_timer_start(&io->hang_timer, io_on_hang_check, HANG_CHECK_MS, HANG_CHECK_MS);
  w->bridge = &io->bridge;
  if (w->defer_listen)
    w->start_listening = io_start_listening;
  atomic_store(&w->io_ready, 1);
  io_start_done(io, 0);

  uv_run(loop, UV_RUN_DEFAULT);
  err = uv_loop_close(loop);
  if (err != 0)
    bh_log("worker %d: I/O loop closed with handles left: %s", w->index,
           uv_strerror(err));
  return NULL;
}

/* The entry's TLS context, from the --ssl-* flags over the service's `ssl`
 * block. Made here, in each worker, so that a rolling restart (SIGHUP) picks
 * up renewed certificate files; the supervisor checked the flags' files
 * before any worker started, and its ticket keys (net/tls.h) make every
 * worker resume every session. 0, or -EINVAL after logging why. */
static int io_tls_setup(bh_worker_t *w) {
  const bh_options_t *o = w->opts;
  const bh_service_config_t *c = &w->config;
  bh_tls_opts_t t;
  char err[512];

  if (w->service != 0 || (o->ssl_certfile == NULL && !c->ssl_enabled))
    return 0; /* as BentoML: the ssl block counts only when `enabled` */
  memset(&t, 0, sizeof(t));
  t.certfile = o->ssl_certfile ? o->ssl_certfile : c->ssl_certfile;
  t.keyfile = o->ssl_keyfile ? o->ssl_keyfile : c->ssl_keyfile;
  t.password = getenv("BENTOHOST_SSL_KEYFILE_PASSWORD");
  if (t.password == NULL || !*t.password)
    t.password = c->ssl_keyfile_password;
  t.ca_certs = o->ssl_ca_certs ? o->ssl_ca_certs : c->ssl_ca_certs;
  t.ciphers = o->ssl_ciphers ? o->ssl_ciphers : c->ssl_ciphers;
  t.cert_reqs = o->ssl_cert_reqs >= 0 ? o->ssl_cert_reqs : c->ssl_cert_reqs >= 0 ? c->ssl_cert_reqs : 0;
  t.version = o->ssl_version >= 0 ? o->ssl_version : c->ssl_version >= 0 ? c->ssl_version : 0;
  if (bh_tls_ctx_new(&w->tls, &t, err, sizeof(err)) != 0) {
    bh_log("error: %s", err);
    return -EINVAL;
  }
  return 0;
}

int bh_io_start(bh_worker_t *w) {
  bh_io_t *io = &io_state;
  int err;

  if ((err = io_tls_setup(w)) != 0)
    return err;
  memset(io, 0, sizeof(*io));
  io->w = w;
  if (w->config.cors != NULL) {
    char why[256];
    if ((err = bh_cors_new(&io->cors, w->config.cors, why, sizeof(why))) != 0) {
      bh_log("worker %d: http.cors: %s", w->index, why);
      return err;
    }
  }
  pthread_mutex_init(&io->start_lock, NULL);
  pthread_cond_init(&io->start_cond, NULL);

  err = pthread_create(&io->thread, NULL, io_thread_main, io);
  if (err != 0) {
    bh_cors_free(io->cors);
    return -err;
  }

  pthread_mutex_lock(&io->start_lock);
  while (!io->start_done)
    pthread_cond_wait(&io->start_cond, &io->start_lock);
  pthread_mutex_unlock(&io->start_lock);

  if (io->start_err != 0) {
    pthread_join(io->thread, NULL);
    bh_cors_free(io->cors);
    io->cors = NULL;
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
  bh_cors_free(io_state.cors);
  io_state.cors = NULL;
  return -err;
}
