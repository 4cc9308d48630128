/* Private to the supervisor's files (supervisor.c, settings.c, pools.c,
 * loopback.c, watch.c, restart.c, reload.c, gpu.c, placement.c): its state and
 * that of each worker index. */
#ifndef BH_SUPERVISOR_INTERNAL_H
#define BH_SUPERVISOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/options.h"
#include "traffic/shm.h"

#define MAX_START_FAILURES 3      /* before any worker was ever ready: give up */
#define MAX_BACKOFF_S 30.0

/* --no-uds: the run's key for signed pickle, and the pools' addresses (JSON) */
#define BH_PRIVATE_KEY_ENV "BENTOHOST_PRIVATE_KEY"
#define BH_PRIVATE_ADDRS_ENV "BENTOHOST_PRIVATE_ADDRS"

struct cJSON;

enum worker_state { W_EMPTY, W_WAITING, W_LOADING, W_READY };

/* A second process of one worker index during a rolling restart (restart.c):
 * its new worker loading, or the old one draining. */
typedef struct sup_extra {
  pid_t pid;                 /* 0: none */
  int shm_slot;              /* the segment slot it writes */
  double at;                 /* loading: when forked; draining: when it gets SIGKILL */
} sup_extra_t;

typedef struct sup_worker {
  enum worker_state state;
  pid_t pid;
  double started_at;
  double respawn_at;         /* when W_WAITING */
  int failures;              /* consecutive quick deaths */
  double hang_kill_at;       /* stacks requested from a hung worker: SIGKILL then */
  int service;               /* its service: 0 the entry, then the graph's dependencies */
  int index;                 /* 1..N within its service (server_context.worker_index) */
  char name[48];             /* "2" for the entry's, "Model/2" for a dependency's (logs) */
  uint64_t requests_at_start;/* the slot's request count when this life began */
  int recycling;             /* SIGTERM sent to recycle it (--max-requests, --max-worker-rss) */
  int shm_slot;              /* the segment slot this life writes: its slot or the twin */
  sup_extra_t next, old;     /* restart.c: its replacement loading, its old life draining */
} sup_worker_t;

/* One worker pool: the entry's (listening on TCP) or a dependency's (one Unix
 * socket per worker in the private runtime directory, or one 127.0.0.1 port per
 * worker with --no-uds, so that callers choose the least busy worker rather than
 * the kernel). */
typedef struct sup_service {
  bh_service_config_t config;
  int first_slot, nworkers;
  int *fds;                  /* dependencies: a listening socket per worker, [index - 1] */
  int *ports;                /* --no-uds: their loopback ports, [index - 1] */
} sup_service_t;

typedef struct sup {
  const bh_options_t *opts;
  int listen_fd;
  int signal_fd;
  bh_shm_t *shm;
  int status_rd, status_wr;
  pid_t pid;

  int have_config;
  bh_service_config_t config; /* the entry's */
  sup_service_t *services;   /* [0] the entry (its config is `config`), then dependencies */
  int nservices;
  char *rundir;              /* private runtime directory (0700) of the Unix sockets;
                                NULL with --no-uds */
  int drain_stage;           /* shutting down: the service being drained now */
  int nworkers;
  sup_worker_t *workers;     /* by slot; [0] unused: slots are 1-based */
  int ever_ready;
  int listening_logged;
  int start_failures;

  int recycling;             /* a worker index being recycled, 0: none (one at a time) */

  int shutting_down;
  double kill_at;            /* graceful deadline once shutting down */
  int exit_code;

  char *line_buf;
  size_t line_len, line_cap;

  /* restart.c: the rolling restart (SIGHUP, --reload), one worker at a time */
  int restart_active;
  int restart_pending;       /* asked for (again): a pass starts once none runs */
  int restart_pos;           /* the pass's position in its order of slots */
  int restart_done;          /* workers replaced by this pass */
  double restart_started;
  char restart_why[160];
  double delay_until;        /* --shutdown-delay: the drain begins then; 0: not delaying */
  struct sup_reload *reload; /* reload.c, --reload */
} sup_t;

static inline double bh_sup_now_s(void) {
  return (double)bh_now_ns() / 1e9;
}

/* pools.c: the graph's pools, their sockets and the runtime directory. */
/* tls_check.c: the ticket keys, and the --ssl-* files checked; 0 or -1 (logged). */
int bh_sup_tls_check(const bh_options_t *opts);

int bh_sup_rundir_create(sup_t *s);
void bh_sup_rundir_remove(sup_t *s);
/* Learns the dependencies from the entry's description, binds their sockets
 * and lays out every pool's slots (the entry keeps slots 1..n). 0 or -errno. */
int bh_sup_graph_setup(sup_t *s, const char *json, size_t len, int entry_workers);
void bh_sup_graph_free(sup_t *s);
/* The listening socket a slot's worker serves on. */
int bh_sup_listen_fd(const sup_t *s, int slot);
/* The config of the service a slot belongs to. */
static inline const bh_service_config_t *bh_sup_config(const sup_t *s, int slot) {
  int svc = s->workers[slot].service;
  return svc == 0 || s->services == NULL ? &s->config : &s->services[svc].config;
}

/* loopback.c (--no-uds): the run's key in the environment, before any fork; a
 * dependency's ports from its description (bound and listening); the addresses
 * of every pool in the environment of the workers forked after. 0 or -errno. */
int bh_sup_key_create(void);
int bh_sup_loopback_bind(sup_service_t *svc, const struct cJSON *desc, int backlog);
int bh_sup_loopback_publish(const sup_t *s);

/* settings.c: BENTOML_CONFIG and the bento arguments (--arg-file, --arg), read
 * and checked into the workers' environment before any fork: 0 or -1 (logged). */
int bh_sup_load_config(void);
int bh_sup_load_arguments(void);

/* supervisor.c, for restart.c: forks a worker of `slot` writing `shm_slot`
 * (defer_listen: it accepts only once ready); its pid or -errno. Why a
 * worker stopped, from waitpid's status. */
pid_t bh_sup_fork_worker(sup_t *s, int slot, int shm_slot, int defer_listen);
void bh_sup_exit_reason(int status, char *out, size_t cap);

/* restart.c. A pass replaces every worker (dependencies first): a new worker
 * with the same index, in the twin slot, listening once ready; then SIGTERM to
 * the old one (it drains as `retiring`); then the next. */
void bh_sup_restart_request(sup_t *s, const char *why);   /* coalesced */
void bh_sup_restart_step(sup_t *s);                        /* every loop turn */
void bh_sup_restart_stop(sup_t *s);                        /* shutting down */
int bh_sup_restart_on_ready(sup_t *s, int slot, pid_t pid); /* 1: it was a new worker */
int bh_sup_restart_on_exit(sup_t *s, pid_t pid, int status); /* 1: one of the extras */
int bh_sup_restart_live(const sup_t *s);                   /* extras alive */
void bh_sup_restart_kill(sup_t *s, int sig);
double bh_sup_restart_deadline(const sup_t *s);            /* next drain deadline, 0: none */

/* reload.c (--reload): inotify over the watched trees. 0 or -errno. */
int bh_sup_reload_start(sup_t *s);
void bh_sup_reload_stop(sup_t *s);
int bh_sup_reload_fd(const sup_t *s);                      /* -1: none */
void bh_sup_reload_read(sup_t *s);                         /* its fd is readable */
double bh_sup_reload_due(const sup_t *s);                  /* 0: nothing pending */
void bh_sup_reload_tick(sup_t *s);                         /* quiet period over: restart */

/* gpu.c: the machine's GPUs into BENTOHOST_GPUS (JSON) for the workers, learnt in
 * a child process before any worker is forked; none found is not an error. 0 or -errno. */
int bh_sup_gpu_probe(void);

/* placement.c: a worker's placement from its service's description. In the forked
 * child: its environment and CPUs set, *io_cpu the I/O thread's (1 + CPU, 0: any);
 * 0, or -1 when some of it could not be applied. In words, for the log ("" when none). */
int bh_sup_placement_apply(const sup_t *s, int slot, int *io_cpu);
void bh_sup_placement_describe(const sup_t *s, int slot, char *out, size_t cap);

/* watch.c: the periodic checks of live workers, once a second. */
void bh_sup_watchdog(sup_t *s);
void bh_sup_recycle(sup_t *s);

#endif
