/* The supervisor: binds the listening socket, forks the workers, learns the
 * service configuration from the first one, respawns workers that die and drains
 * them on SIGTERM/SIGINT (after --shutdown-delay; a second signal kills them).
 * SIGHUP and --reload replace them one at a time (restart.c, reload.c).
 *
 * It never initialises Python and deliberately does not use libuv either: libuv
 * keeps process-global signal state that a forked child would inherit, so the
 * supervisor runs a small poll() loop over a signalfd and the status pipe. */
#include "supervisor/supervisor.h"
#include "supervisor/internal.h"
#include "supervisor/gpu_monitor.h"
#include "bh.h"
#include "common/config.h"
#include "common/context.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/status.h"
#include "traffic/shm.h"
#include "worker/worker.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int bind_listener(const bh_options_t *opts, int *out_fd) {
  struct addrinfo hints, *res = NULL, *ai;
  char port[16];
  int fd = -1, err = 0;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(port, sizeof(port), "%d", opts->port);
  int gai = getaddrinfo(opts->host, port, &hints, &res);
  if (gai != 0) {
    bh_log("error: cannot resolve --host '%s': %s", opts->host, gai_strerror(gai));
    return -EINVAL;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      err = -errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, opts->backlog) == 0)
      break;
    err = -errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    bh_log("error: cannot listen on %s:%d: %s", opts->host, opts->port, strerror(-err));
    return err ? err : -EADDRNOTAVAIL;
  }
  *out_fd = fd;
  return 0;
}

static const char *signal_name(int sig) {
  const char *s = strsignal(sig);
  return s ? s : "unknown signal";
}

/* In a worker: the listening sockets of other pools are not its own. */
static void close_other_listeners(const sup_t *s, int keep) {
  if (s->listen_fd >= 0 && s->listen_fd != keep)
    close(s->listen_fd);
  for (int i = 1; i < s->nservices; i++)
    for (int k = 0; k < s->services[i].nworkers; k++)
      if (s->services[i].fds[k] >= 0 && s->services[i].fds[k] != keep)
        close(s->services[i].fds[k]);
}

pid_t bh_sup_fork_worker(sup_t *s, int index, int shm_slot, int defer_listen) {
  sup_worker_t *w = &s->workers[index];
  int reporter = !s->have_config;
  /* A free slot: whatever its last process was told is over. */
  bh_shm_set_retiring(s->shm, shm_slot, 0);
  pid_t pid = fork();
  if (pid < 0)
    return -errno;
  if (pid == 0) {
    /* The mask the worker runs with (see worker.c), set at once: a SIGTERM from
     * kill_all() right after fork() must wait for the I/O thread, not kill. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    close(s->signal_fd);
    close(s->status_rd);
    if (bh_sup_reload_fd(s) >= 0)
      close(bh_sup_reload_fd(s));
    signal(SIGCHLD, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    sigprocmask(SIG_SETMASK, &term, NULL);
    /* Workers never outlive the supervisor. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->pid)
      _exit(1);
    bh_worker_t worker;
    memset(&worker, 0, sizeof(worker));
    if (bh_sup_placement_apply(s, index, &worker.io_cpu) != 0)
      bh_log("warning: worker %s: could not apply all of its placement: %s", w->name, strerror(errno));
    worker.index = w->index;
    worker.slot = shm_slot;
    worker.defer_listen = defer_listen;
    worker.service = w->service;
    worker.service_name = w->service > 0 ? s->services[w->service].config.name : NULL;
    worker.listen_fd = bh_sup_listen_fd(s, index);
    close_other_listeners(s, worker.listen_fd);
    worker.status_fd = s->status_wr;
    worker.reporter = reporter;
    worker.opts = s->opts;
    worker.shm = s->shm;
    bh_worker_main(&worker);
    _exit(1);
  }
  return pid;
}

/* Whether another worker of index's pool is loading or serving. */
static int pool_has_other(const sup_t *s, int index) {
  for (int i = 1; i <= s->nworkers; i++)
    if (i != index && s->workers[i].service == s->workers[index].service &&
        (s->workers[i].state == W_LOADING || s->workers[i].state == W_READY))
      return 1;
  return 0;
}

static void spawn_worker(sup_t *s, int index) {
  sup_worker_t *w = &s->workers[index];
  /* Only a pool's first worker accepts while it loads (its /readyz says 503
   * meanwhile); the others, and a respawn beside live siblings, accept once
   * ready, so that no request or probe waits on a worker still importing
   * while a sibling could answer it. */
  pid_t pid = bh_sup_fork_worker(s, index, w->shm_slot, pool_has_other(s, index));
  if (pid < 0) {
    bh_log("error: fork failed for worker %s: %s; retrying", w->name, strerror((int)-pid));
    w->state = W_WAITING;
    w->respawn_at = bh_sup_now_s() + 1.0;
    return;
  }
  w->pid = pid;
  w->hang_kill_at = 0;
  w->recycling = 0;
  w->requests_at_start = bh_shm_requests(s->shm, w->shm_slot);
  w->state = W_LOADING;
  w->started_at = bh_sup_now_s();
  bh_log("worker %s (pid %d) loading %s", w->name, (int)pid, s->opts->target);
  char where[256];
  bh_sup_placement_describe(s, index, where, sizeof(where));
  if (where[0] != '\0')
    bh_log("worker %s: %s", w->name, where);
}

/* service -1: every pool */
static void kill_service(sup_t *s, int service, int sig) {
  for (int i = 1; i <= s->nworkers; i++)
    if ((s->workers[i].state == W_LOADING || s->workers[i].state == W_READY) &&
        (service < 0 || s->workers[i].service == service))
      kill(s->workers[i].pid, sig);
}

static void kill_all(sup_t *s, int sig) {
  kill_service(s, -1, sig);
}

static int live_in(const sup_t *s, int service) {
  int n = 0;
  for (int i = 1; i <= s->nworkers; i++)
    n += (s->workers[i].state == W_LOADING || s->workers[i].state == W_READY) &&
         (service < 0 || s->workers[i].service == service);
  return n;
}

static int live_workers(const sup_t *s) {
  return live_in(s, -1);
}

static void begin_shutdown(sup_t *s, int exit_code) {
  if (s->shutting_down)
    return;
  s->shutting_down = 1;
  s->exit_code = exit_code;
  s->delay_until = 0;
  bh_sup_restart_stop(s);
  /* The workers keep their own copy of the socket until they have drained. */
  close(s->listen_fd);
  s->listen_fd = -1;
  for (int i = 1; i <= s->nworkers; i++)
    if (s->workers[i].state == W_WAITING)
      s->workers[i].state = W_EMPTY;
  /* The entry first, then each dependency once its callers are gone, so a call
   * in flight through several hops finishes (callers come before callees in
   * the graph's order). */
  s->drain_stage = 0;
  kill_service(s, 0, SIGTERM);
  /* A margin over the workers' own drain deadline, so that they can close what
   * is left and exit cleanly before being killed. */
  s->kill_at = bh_sup_now_s() + s->opts->graceful_timeout_s + 5.0;
}

/* Shutting down: once the pool being drained is gone, drain the next. */
static void drain_next(sup_t *s) {
  while (s->drain_stage < s->nservices - 1 && live_in(s, s->drain_stage) == 0) {
    s->drain_stage++;
    kill_service(s, s->drain_stage, SIGTERM);
    s->kill_at = bh_sup_now_s() + s->opts->graceful_timeout_s + 5.0;
  }
}

static int grow_workers(sup_t *s, int n) {
  sup_worker_t *ws = realloc(s->workers, sizeof(sup_worker_t) * (size_t)(n + 1));
  if (ws == NULL)
    return -ENOMEM;
  for (int i = s->nworkers + 1; i <= n; i++) {
    memset(&ws[i], 0, sizeof(ws[i]));
    ws[i].index = i;
    ws[i].shm_slot = i;
    snprintf(ws[i].name, sizeof(ws[i].name), "%d", i);
  }
  s->workers = ws;
  s->nworkers = n;
  return 0;
}

static void on_config(sup_t *s, const char *json, size_t len) {
  /* Shutting down while worker 1 was loading: start no more workers. */
  if (s->have_config || s->shutting_down)
    return;
  if (bh_config_parse(&s->config, json, len) != 0) {
    bh_log("error: the worker reported an unreadable service configuration");
    begin_shutdown(s, 1);
    return;
  }
  s->have_config = 1;
  int n = s->opts->workers_override > 0 ? s->opts->workers_override : s->config.workers;
  int err = bh_sup_graph_setup(s, json, len, n);
  if (err != 0) {
    bh_log("error: cannot set up the service graph: %s", strerror(-err));
    begin_shutdown(s, 1);
    return;
  }
  int total = n, old = s->nworkers;
  for (int i = 1; i < s->nservices; i++)
    total += s->services[i].nworkers;
  if (grow_workers(s, total) != 0) {
    bh_log("error: out of memory");
    begin_shutdown(s, 1);
    return;
  }
  bh_shm_set_services(s->shm, s->nservices);
  for (int v = 0; v < s->nservices; v++) {
    const bh_service_config_t *cfg = v == 0 ? &s->config : &s->services[v].config;
    int first = s->services[v].first_slot, count = s->services[v].nworkers;
    size_t napis = 0;
    for (size_t j = 0; j < cfg->napis; j++)
      napis += !cfg->apis[j].task_route;
    bh_log("service %s: %d worker%s, %d thread%s each, %zu api%s%s", cfg->name, count,
           count == 1 ? "" : "s", cfg->threads, cfg->threads == 1 ? "" : "s", napis,
           napis == 1 ? "" : "s",
           v == 0                ? ""
           : s->opts->no_uds     ? " (a dependency, on loopback ports)"
                                 : " (a dependency, on private sockets)");
    bh_shm_set_workers(s->shm, v, first, count);
    for (int k = 0; k < count; k++) {
      sup_worker_t *w = &s->workers[first + k];
      w->service = v;
      w->index = k + 1;
      if (v == 0)
        snprintf(w->name, sizeof(w->name), "%d", k + 1);
      else
        snprintf(w->name, sizeof(w->name), "%.32s/%d", cfg->name, k + 1);
    }
  }
  if (s->nservices > 1 && s->opts->no_uds) {
    if ((err = bh_sup_loopback_publish(s)) != 0) {
      bh_log("error: cannot hand the pools' addresses to the workers: %s", strerror(-err));
      begin_shutdown(s, 1);
      return;
    }
  } else if (s->nservices > 1) {
    bh_log("dependencies listen on Unix sockets in %s", s->rundir);
  } else {
    bh_sup_rundir_remove(s); /* a single service has no use for it */
  }
  for (int i = old + 1; i <= total; i++)
    spawn_worker(s, i);
}

static void on_ready(sup_t *s, int index, pid_t pid) {
  if (index < 1 || index > s->nworkers || bh_sup_restart_on_ready(s, index, pid) ||
      s->workers[index].pid != pid)
    return;
  sup_worker_t *w = &s->workers[index];
  if (w->state != W_LOADING)
    return;
  w->state = W_READY;
  s->ever_ready = 1;
  bh_shm_service_ready(s->shm, w->service, +1);
  bh_log("worker %s (pid %d) ready in %.2fs", w->name, (int)pid, bh_sup_now_s() - w->started_at);
  if (!s->listening_logged && s->have_config) {
    for (int i = 1; i <= s->nworkers; i++)
      if (s->workers[i].state != W_READY)
        return;
    s->listening_logged = 1;
    bh_log("listening on http://%s:%d", s->opts->host, s->opts->port);
  }
}

/* One message per line: "<kind> <index> <pid> [payload]". */
static void on_status_line(sup_t *s, char *line, size_t len) {
  char kind[16];
  int index, pid, consumed = 0;
  line[len] = '\0';
  if (sscanf(line, "%15s %d %d%n", kind, &index, &pid, &consumed) != 3)
    return;
  if (index > BH_MAX_WORKERS) /* a rolling restart's new worker, in the twin slot */
    index = bh_shm_twin(index);
  const char *payload = line + consumed;
  if (*payload == ' ')
    payload++;
  if (strcmp(kind, "config") == 0)
    on_config(s, payload, len - (size_t)(payload - line));
  else if (strcmp(kind, "ready") == 0)
    on_ready(s, index, (pid_t)pid);
}

static void read_status(sup_t *s) {
  for (;;) {
    if (s->line_cap - s->line_len < 4096) {
      size_t cap = s->line_cap ? s->line_cap * 2 : 16384;
      char *buf = realloc(s->line_buf, cap);
      if (buf == NULL)
        return;
      s->line_buf = buf;
      s->line_cap = cap;
    }
    ssize_t n = read(s->status_rd, s->line_buf + s->line_len, s->line_cap - s->line_len - 1);
    if (n <= 0)
      break;
    s->line_len += (size_t)n;
  }
  size_t start = 0;
  for (size_t i = 0; i < s->line_len; i++) {
    if (s->line_buf[i] == '\n') {
      on_status_line(s, s->line_buf + start, i - start);
      start = i + 1;
    }
  }
  memmove(s->line_buf, s->line_buf + start, s->line_len - start);
  s->line_len -= start;
}

static double backoff_s(int failures) {
  if (failures <= 0)
    return 0;
  double d = 0.25;
  for (int i = 1; i < failures && d < MAX_BACKOFF_S; i++)
    d *= 2;
  return d < MAX_BACKOFF_S ? d : MAX_BACKOFF_S;
}

/* " while running /a, /b": the routes that had requests in the worker when it
 * died (read from its slot before the slot is reset). */
static void describe_running(sup_t *s, int index, char *out, size_t cap) {
  int apis[8], n = bh_shm_busy_apis(s->shm, s->workers[index].shm_slot, apis, 8);
  const bh_service_config_t *cfg = bh_sup_config(s, index);
  size_t len = 0;

  out[0] = '\0';
  for (int k = 0; k < n && len + 2 < cap; k++) {
    const char *route = NULL;
    for (size_t j = 0; j < cfg->napis; j++)
      if (cfg->apis[j].index == apis[k])
        route = cfg->apis[j].route;
    int w = snprintf(out + len, cap - len, "%s%s", k == 0 ? " while running " : ", ",
                     route != NULL ? route : "?");
    if (w < 0)
      break;
    len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
  }
}

void bh_sup_exit_reason(int status, char *out, size_t cap) {
  if (WIFSIGNALED(status))
    snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(status),
             signal_name(WTERMSIG(status)));
  else
    snprintf(out, cap, "exited with code %d", WEXITSTATUS(status));
}

static void on_worker_exit(sup_t *s, pid_t pid, int status) {
  int index = 0;
  if (bh_sup_restart_on_exit(s, pid, status))
    return;
  for (int i = 1; i <= s->nworkers; i++)
    if (s->workers[i].pid == pid && s->workers[i].state != W_EMPTY)
      index = i;
  if (index == 0)
    return;
  sup_worker_t *w = &s->workers[index];
  int was_ready = w->state == W_READY, recycled = w->recycling;
  char reason[96], running[256] = "";
  bh_sup_exit_reason(status, reason, sizeof(reason));
  describe_running(s, index, running, sizeof(running));
  if (was_ready)
    bh_shm_service_ready(s->shm, w->service, -1);
  w->state = W_EMPTY;
  w->pid = 0;
  w->recycling = 0;
  if (s->recycling == index)
    s->recycling = 0;
  /* Its in-flight requests will never end: give their slots back. */
  bh_shm_worker_died(s->shm, w->shm_slot);

  if (s->shutting_down) {
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      bh_log("worker %s (pid %d) %s during shutdown", w->name, (int)pid, reason);
    return;
  }
  if (w->next.pid != 0) {
    /* A rolling restart's new worker takes the index over once ready. */
    bh_log("worker %s (pid %d) %s%s; its replacement (pid %d) is loading", w->name, (int)pid,
           reason, running, (int)w->next.pid);
    return;
  }
  if (s->have_config && WIFEXITED(status) && WEXITSTATUS(status) == BH_EXIT_PLACE) {
    /* The reporter described the graph: it runs again where it was placed. */
    bh_log("worker %s (pid %d) described the service; starting it again where it is placed", w->name,
           (int)pid);
    w->state = W_WAITING;
    w->respawn_at = bh_sup_now_s();
    return;
  }
  if (!s->have_config) {
    /* The first worker could not even import the service: its traceback is
     * above, and restarting it would only print it again. */
    bh_log("error: could not load service '%s': worker %d %s (see the traceback above)",
           s->opts->target, index, reason);
    begin_shutdown(s, 1);
    return;
  }
  if (!was_ready) {
    s->start_failures++;
    if (!s->ever_ready && s->start_failures >= MAX_START_FAILURES) {
      bh_log("error: no worker could start: worker %d %s during start-up, %d times in a row; "
             "giving up", index, reason, s->start_failures);
      begin_shutdown(s, 1);
      return;
    }
  }
  /* Back off only while a worker index never gets ready (a broken start-up);
   * one that served requests is replaced at once, however soon it died: a
   * request that crashes its worker must not take the service down by being
   * sent a few times. */
  w->failures = was_ready ? 0 : w->failures + 1;
  double delay = backoff_s(w->failures);
  if (recycled && WIFEXITED(status) && WEXITSTATUS(status) == 0)
    bh_log("worker %s (pid %d) recycled; respawning now", w->name, (int)pid);
  else
    bh_log("worker %s (pid %d) %s%s%s; respawning %s%.2fs", w->name, (int)pid, reason,
           was_ready ? "" : " during start-up", running, delay > 0 ? "in " : "after ", delay);
  w->state = W_WAITING;
  w->respawn_at = bh_sup_now_s() + delay;
}

/* Every child, not only workers: as a container's PID 1 the supervisor inherits the
 * orphans of the service's code (a daemonised subprocess), and on_worker_exit() ignores
 * the pids that are no worker's, so none of them stays a zombie. */
static void reap(sup_t *s) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    bh_spool_remove_worker(pid);
    on_worker_exit(s, pid, status);
  }
}

static void on_signal(sup_t *s) {
  struct signalfd_siginfo si;
  while (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    switch (si.ssi_signo) {
    case SIGCHLD:
      reap(s);
      break;
    case SIGHUP:
      bh_sup_restart_request(s, "SIGHUP");
      break;
    case SIGTERM:
    case SIGINT:
      if (s->shutting_down || s->delay_until > 0) {
        /* Whoever asks twice wants it over: no more waiting for anything. */
        bh_log("second %s: killing the workers now",
               si.ssi_signo == SIGINT ? "interrupt" : "SIGTERM");
        begin_shutdown(s, 1);
        kill_all(s, SIGKILL);
        bh_sup_restart_kill(s, SIGKILL);
        if (s->exit_code == 0)
          s->exit_code = 1;
      } else if (s->opts->shutdown_delay_s > 0) {
        /* Kubernetes withdraws the endpoint on a failing readiness probe, some
         * time after it sent SIGTERM: until then new connections keep coming,
         * and must be served, not refused. */
        bh_log("shutting down in %gs (--shutdown-delay): still serving, /readyz answers 503",
               s->opts->shutdown_delay_s);
        bh_shm_withdraw(s->shm);
        bh_sup_restart_stop(s);
        s->delay_until = bh_sup_now_s() + s->opts->shutdown_delay_s;
      } else {
        bh_log("shutting down: draining in-flight requests (up to %.0fs)",
               s->opts->graceful_timeout_s);
        begin_shutdown(s, 0);
      }
      break;
    default:
      break;
    }
  }
}

static int next_timeout_ms(const sup_t *s) {
  double t = bh_sup_now_s(), next = t + 1.0; /* the watchdog looks once a second */
  for (int i = 1; i <= s->nworkers; i++)
    if (s->workers[i].state == W_WAITING && s->workers[i].respawn_at < next)
      next = s->workers[i].respawn_at;
  if (s->shutting_down && s->kill_at < next)
    next = s->kill_at;
  if (s->delay_until > 0 && s->delay_until < next)
    next = s->delay_until;
  double d = bh_sup_restart_deadline(s), r = bh_sup_reload_due(s);
  if (d > 0 && d < next)
    next = d;
  if (r > 0 && r < next)
    next = r;
  double ms = (next - t) * 1000.0;
  return ms < 0 ? 0 : (int)ms + 1;
}

static void run_timers(sup_t *s) {
  double t = bh_sup_now_s();
  if (s->shutting_down && t >= s->kill_at && live_workers(s) > 0) {
    bh_log("graceful shutdown timed out: killing %d worker(s); exiting with code 1",
           live_workers(s));
    kill_all(s, SIGKILL);
    bh_sup_restart_kill(s, SIGKILL);
    /* Requests were cut short: whoever stopped us should know. */
    if (s->exit_code == 0)
      s->exit_code = 1;
    s->kill_at = t + 3600;
  }
  if (s->delay_until > 0 && t >= s->delay_until) {
    bh_log("shutdown delay over: draining in-flight requests (up to %.0fs)",
           s->opts->graceful_timeout_s);
    begin_shutdown(s, 0);
  }
  for (int i = 1; i <= s->nworkers; i++)
    if (!s->shutting_down && s->workers[i].state == W_WAITING && t >= s->workers[i].respawn_at)
      spawn_worker(s, i);
  bh_sup_watchdog(s);
  bh_sup_recycle(s);
  bh_sup_reload_tick(s);
  bh_sup_restart_step(s);
}

int bh_supervisor_run(const bh_options_t *opts) {
  sup_t s;
  memset(&s, 0, sizeof(s));
  s.opts = opts;
  s.pid = getpid();
  s.listen_fd = -1;

  if (bh_sup_load_config() != 0 || bh_sup_load_arguments() != 0 || bh_sup_tls_check(opts) != 0)
    return 2;
  if (bind_listener(opts, &s.listen_fd) != 0)
    return 1;
  /* Before the first fork, so that every worker shares it. */
  s.shm = bh_shm_create();
  if (s.shm == NULL) {
    bh_log("error: cannot create the shared-memory segment: %s", strerror(errno));
    return 1;
  }
  /* /metrics' GPU gauges, where NVML is present (none and no process otherwise) */
  bh_sup_gpu_monitor_start(s.shm);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  s.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  int pipefd[2];
  if (s.signal_fd < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
    bh_log("error: cannot set up the supervisor: %s", strerror(errno));
    return 1;
  }
  s.status_rd = pipefd[0];
  s.status_wr = pipefd[1];
  fcntl(s.status_rd, F_SETFL, O_NONBLOCK);

  /* Never inherited: these belong to this run only. */
  unsetenv(BH_PRIVATE_KEY_ENV);
  unsetenv(BH_PRIVATE_ADDRS_ENV);
  if (opts->no_uds) {
    int err = bh_sup_key_create();
    unsetenv("BENTOHOST_RUNTIME_DIR");
    if (err != 0) {
      bh_log("error: cannot make the key of the loopback pools: %s", strerror(-err));
      return 1;
    }
  } else if (bh_sup_rundir_create(&s) != 0) {
    bh_log("error: cannot create the runtime directory: %s", strerror(errno));
    return 1;
  }
  /* Workers keep uploads' dirs and files for reuse (common/spool.h); their
   * spool dirs are removed here when they exit, a crash included. */
  if (bh_spool_tag_workers() != 0) {
    bh_log("error: cannot set the workers' spool tag: %s", strerror(errno));
    return 1;
  }
  if (grow_workers(&s, 1) != 0)
    return 1;
  if (opts->workers_override > 0) { /* the reporter places the entry's workers */
    char n[16];
    snprintf(n, sizeof(n), "%d", opts->workers_override);
    setenv("BENTOHOST_WORKERS_OVERRIDE", n, 1);
  }
  int gerr = bh_sup_gpu_probe();
  if (gerr != 0)
    bh_log("warning: cannot look for GPUs: %s", strerror(-gerr));
  bh_log("bentohost %s: supervisor pid %d", BH_VERSION, (int)s.pid);
  if (opts->reload && bh_sup_reload_start(&s) != 0)
    return 1;
  spawn_worker(&s, 1);

  for (;;) {
    if (s.shutting_down)
      drain_next(&s);
    if (s.shutting_down && live_workers(&s) == 0 && bh_sup_restart_live(&s) == 0)
      break;
    struct pollfd pfds[3] = {
        {.fd = s.signal_fd, .events = POLLIN},
        {.fd = s.status_rd, .events = POLLIN},
        {.fd = bh_sup_reload_fd(&s), .events = POLLIN}, /* -1: ignored by poll() */
    };
    int n = poll(pfds, 3, next_timeout_ms(&s));
    if (n < 0 && errno != EINTR) {
      bh_log("error: poll: %s", strerror(errno));
      s.exit_code = 1;
      break;
    }
    if (pfds[1].revents & POLLIN)
      read_status(&s);
    if (pfds[0].revents & POLLIN)
      on_signal(&s);
    if (pfds[2].revents & POLLIN)
      bh_sup_reload_read(&s);
    run_timers(&s);
  }
  /* Late status lines (a ready message racing shutdown) are irrelevant now. */
  if (s.exit_code == 0)
    bh_log("stopped");
  bh_sup_reload_stop(&s);
  bh_sup_rundir_remove(&s);
  bh_sup_graph_free(&s);
  bh_config_free(&s.config);
  free(s.workers);
  free(s.line_buf);
  return s.exit_code;
}
