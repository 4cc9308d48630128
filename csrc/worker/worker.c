/* A worker process, right after fork(): prepares signals for the two-thread
 * model, runs the Python host on this (the main) thread and exits with its code. */
#include "worker/worker.h"
#include "common/log.h"
#include "common/spool.h"
#include "python/pyhost.h"
#include "server/io.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The entry's name before Python has imported it: the class in "...:Class", as
 * bentohost._loader.guess_service_name() reads it; NULL when the target has none. */
static const char *guess_service(const char *target) {
  static char name[64];
  const char *colon = strrchr(target, ':'), *dot;

  if (colon == NULL || colon[1] == '\0')
    return NULL;
  dot = strrchr(colon + 1, '.');
  snprintf(name, sizeof(name), "%s", dot != NULL ? dot + 1 : colon + 1);
  return name;
}

/* Request bodies, upload buffers and numpy arrays of a few MiB are allocated
 * and freed at every request. With glibc's defaults each gets its own mmap
 * (the threshold rises only as such blocks are freed) and freed heap tops go
 * back to the kernel, so every request faults in and zeroes its pages again:
 * a third of the time of a 1 MiB octet-stream request. Here blocks up to
 * 32 MiB come from the heap and up to 64 MiB of free heap stays mapped; the
 * user's own malloc settings win. */
static void keep_large_blocks(void) {
#if defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
  if (getenv("MALLOC_MMAP_THRESHOLD_") != NULL || getenv("MALLOC_TRIM_THRESHOLD_") != NULL ||
      getenv("GLIBC_TUNABLES") != NULL)
    return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

/* The I/O thread and the Python threads hand requests to each other. When they
 * share a CPU, every hand-off woke the other thread and it preempted the one
 * running, so each thread ran a request or two per turn: at 64 connections on
 * one CPU, one context switch per six requests. Under SCHED_BATCH a woken
 * thread waits for the running one to block (or its slice to end), and each
 * turn handles all that is pending (one switch per thirty requests, 5 %
 * more throughput). Threads on CPUs of their own are not affected; those
 * sharing one with other busy processes no longer preempt them on wake-up.
 * Threads and processes started later inherit it. BENTOHOST_SCHED_NORMAL=1,
 * or any policy set from outside (chrt), keeps the one the worker was given. */
static void batch_scheduling(void) {
  const char *normal = getenv("BENTOHOST_SCHED_NORMAL");
  if ((normal != NULL && strcmp(normal, "1") == 0) || sched_getscheduler(0) != SCHED_OTHER)
    return;
  struct sched_param param = {.sched_priority = 0};
  if (sched_setscheduler(0, SCHED_BATCH, &param) != 0)
    bh_log("worker: SCHED_BATCH refused (%s); scheduling left as it was", strerror(errno));
}

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
  keep_large_blocks();
  batch_scheduling();
  atomic_store(&w->alive, 1);
  /* The worker's own lines say whose they are; publish() names the entry. */
  bh_log_set_origin(w->service_name ? w->service_name : guess_service(w->opts->target), w->index);
  w->start_serving = bh_io_start;

  int code = bh_pyhost_run(w);
  if (code == 0 && w->io_started)
    bh_io_join(w);
  bh_spool_cleanup();
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}
