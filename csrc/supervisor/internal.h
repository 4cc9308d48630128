/* Private to the supervisor's files (supervisor.c, watch.c): its state and
 * that of each worker index. */
#ifndef BH_SUPERVISOR_INTERNAL_H
#define BH_SUPERVISOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common/config.h"
#include "common/options.h"
#include "traffic/shm.h"

#define MAX_START_FAILURES 3      /* before any worker was ever ready: give up */
#define MAX_BACKOFF_S 30.0

enum worker_state { W_EMPTY, W_WAITING, W_LOADING, W_READY };

typedef struct sup_worker {
  enum worker_state state;
  pid_t pid;
  double started_at;
  double respawn_at;         /* when W_WAITING */
  int failures;              /* consecutive quick deaths */
  double hang_kill_at;       /* stacks requested from a hung worker: SIGKILL then */
  uint64_t requests_at_start;/* the slot's request count when this life began */
  int recycling;             /* SIGTERM sent to recycle it (--max-requests, --max-worker-rss) */
} sup_worker_t;

typedef struct sup {
  const bh_options_t *opts;
  int listen_fd;
  int signal_fd;
  bh_shm_t *shm;
  int status_rd, status_wr;
  pid_t pid;

  int have_config;
  bh_service_config_t config;
  int nworkers;
  sup_worker_t *workers;     /* [0] unused: indices are 1-based */
  int ever_ready;
  int listening_logged;
  int start_failures;

  int recycling;             /* a worker index being recycled, 0: none (one at a time) */

  int shutting_down;
  double kill_at;            /* graceful deadline once shutting down */
  int exit_code;

  char *line_buf;
  size_t line_len, line_cap;
} sup_t;

static inline double bh_sup_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* watch.c: the periodic checks of live workers, once a second. */
void bh_sup_watchdog(sup_t *s);
void bh_sup_recycle(sup_t *s);

#endif
