/* A worker process, right after fork(): prepares signals for the two-thread
 * model, runs the Python host on this (the main) thread and exits with its code. */
#include "worker/worker.h"
#include "python/pyhost.h"
#include "server/io.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int bh_worker_main(bh_worker_t *w) {
  sigset_t mask;

  /* SIGTERM must reach the I/O thread (it unblocks it for itself), never the
   * Python thread; threads started later from here inherit this mask. */
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  /* Ctrl-C reaches the whole process group: the supervisor turns it into an
   * orderly SIGTERM for each worker, so workers ignore it themselves. */
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  atomic_store(&w->alive, 1);
  w->start_serving = bh_io_start;

  int code = bh_pyhost_run(w);
  if (code == 0 && w->io_started)
    bh_io_join(w);
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}
