/* The rolling restart (SIGHUP, and --reload through reload.c): every worker of
 * every pool is replaced, one at a time, without a refused connection or a
 * failed request.
 *
 * For one worker index: a new worker is forked with the same index, writing
 * the twin of the old one's segment slot (traffic/shm.h), so that each process
 * keeps its own counters and in-flight counts and the renders sum the two. It
 * inherits the same listening socket (the entry's TCP socket, or the
 * dependency's Unix socket or loopback port), which the supervisor keeps bound
 * throughout, but accepts only once it is ready (defer_listen): while it loads,
 * the old one serves everything. Its ready line makes it the index's worker;
 * the old one gets SIGTERM marked `retiring` and drains without cutting its
 * idle keep-alive connections (server/io.c). Then the next index.
 *
 * A new worker that dies before it is ready (a syntax error, __init__ raising)
 * aborts the pass: the old workers keep serving and one line says why, the
 * worker's own traceback being just above it. A request during a pass is
 * remembered (one, however many) and runs after it. The layout does not change:
 * the number of workers and the graph are those the supervisor started with. */
#include "supervisor/internal.h"
#include "common/log.h"
#include "common/status.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

/* The slot at position pos of a pass: dependencies first (the graph lists
 * callers before callees, so backwards), so that a new caller finds new
 * callees; within a pool, index order. */
static int pass_slot(const sup_t *s, int pos) {
  for (int v = s->nservices - 1; v >= 0; v--) {
    if (pos < s->services[v].nworkers)
      return s->services[v].first_slot + pos;
    pos -= s->services[v].nworkers;
  }
  return 0;
}

void bh_sup_restart_request(sup_t *s, const char *why) {
  if (s->shutting_down || s->delay_until > 0) {
    bh_log("%s: shutting down, no restart", why);
    return;
  }
  if (s->restart_active && !s->restart_pending)
    bh_log("%s: a restart is running; another one follows it", why);
  snprintf(s->restart_why, sizeof(s->restart_why), "%s", why);
  s->restart_pending = 1;
}

static void start_pass(sup_t *s) {
  s->restart_pending = 0;
  /* The workers read the configuration file from the environment: a changed
   * file takes effect with this pass, and a broken one stops it here. */
  if (bh_sup_load_config() != 0) {
    bh_log("restart (%s) not done: the configuration file has errors; the workers keep serving",
           s->restart_why);
    return;
  }
  s->restart_active = 1;
  s->restart_pos = 0;
  s->restart_done = 0;
  s->restart_started = bh_sup_now_s();
  bh_log("restart (%s): replacing %d worker%s one at a time", s->restart_why, s->nworkers,
         s->nworkers == 1 ? "" : "s");
}

static void start_next(sup_t *s, int slot) {
  sup_worker_t *w = &s->workers[slot];
  int twin = bh_shm_twin(w->shm_slot);
  pid_t pid = bh_sup_fork_worker(s, slot, twin, 1);

  if (pid < 0) {
    bh_log("restart aborted: cannot fork a new worker %s: %s; the old workers keep serving",
           w->name, strerror((int)-pid));
    s->restart_active = 0;
    return;
  }
  w->next.pid = pid;
  w->next.shm_slot = twin;
  w->next.at = bh_sup_now_s();
  bh_log("worker %s (pid %d) loading %s, to replace pid %d", w->name, (int)pid, s->opts->target,
         (int)w->pid);
}

void bh_sup_restart_step(sup_t *s) {
  double t = bh_sup_now_s();

  /* A replaced worker that outlives its graceful timeout (plus the margin its
   * on_shutdown hooks get) is killed, as at shutdown. */
  for (int i = 1; i <= s->nworkers; i++) {
    sup_extra_t *old = &s->workers[i].old;
    if (old->pid != 0 && t >= old->at) {
      bh_log("worker %s (pid %d), replaced, did not finish draining in time: killing it",
             s->workers[i].name, (int)old->pid);
      kill(old->pid, SIGKILL);
      old->at = t + 3600;
    }
  }
  if (!s->restart_active) {
    if (!s->restart_pending || !s->have_config || s->shutting_down || s->delay_until > 0)
      return;
    start_pass(s);
  }
  while (s->restart_active && s->restart_pos < s->nworkers) {
    int slot = pass_slot(s, s->restart_pos);
    sup_worker_t *w = &s->workers[slot];
    if (w->next.pid != 0)
      return; /* its new worker is loading */
    /* Not running, or started since the pass began: its respawn loads (or
     * loaded) the code as it is now. */
    if (w->state == W_WAITING || w->state == W_EMPTY ||
        (w->state == W_LOADING && w->started_at >= s->restart_started)) {
      s->restart_pos++;
      continue;
    }
    /* Loading older code, being recycled, or an earlier pass's old worker
     * still draining in the twin slot: wait. */
    if (w->state != W_READY || w->recycling || w->old.pid != 0)
      return;
    start_next(s, slot);
    return;
  }
  if (s->restart_active) {
    s->restart_active = 0;
    bh_log("restart (%s) done: %d worker%s replaced in %.1fs", s->restart_why, s->restart_done,
           s->restart_done == 1 ? "" : "s", t - s->restart_started);
  }
}

int bh_sup_restart_on_ready(sup_t *s, int slot, pid_t pid) {
  sup_worker_t *w = &s->workers[slot];
  double t = bh_sup_now_s();

  if (w->next.pid == 0 || w->next.pid != pid)
    return 0;
  if (w->state == W_READY) {
    /* From here the new one accepts too: the old one may stop. */
    w->old.pid = w->pid;
    w->old.shm_slot = w->shm_slot;
    w->old.at = t + s->opts->graceful_timeout_s + 5.0;
    bh_shm_set_retiring(s->shm, w->shm_slot, 1);
    kill(w->pid, SIGTERM);
    bh_log("worker %s (pid %d) ready in %.2fs; pid %d drains", w->name, (int)pid, t - w->next.at,
           (int)w->pid);
  } else {
    /* The old one died meanwhile (its ready count went with it). */
    bh_shm_service_ready(s->shm, w->service, +1);
    bh_log("worker %s (pid %d) ready in %.2fs", w->name, (int)pid, t - w->next.at);
  }
  w->pid = pid;
  w->shm_slot = w->next.shm_slot;
  w->started_at = w->next.at;
  w->state = W_READY;
  w->failures = 0;
  w->hang_kill_at = 0;
  w->recycling = 0;
  w->requests_at_start = bh_shm_requests(s->shm, w->shm_slot);
  w->next.pid = 0;
  s->ever_ready = 1;
  if (s->restart_active) {
    s->restart_done++;
    s->restart_pos++;
  }
  return 1;
}

int bh_sup_restart_on_exit(sup_t *s, pid_t pid, int status) {
  char reason[96];

  for (int i = 1; i <= s->nworkers; i++) {
    sup_worker_t *w = &s->workers[i];
    if (w->old.pid == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        bh_log("worker %s (pid %d), replaced, drained and exited", w->name, (int)pid);
      } else {
        bh_sup_exit_reason(status, reason, sizeof(reason));
        bh_log("worker %s (pid %d), replaced, %s while draining", w->name, (int)pid, reason);
      }
      bh_shm_worker_retired(s->shm, w->old.shm_slot);
      w->old.pid = 0;
      return 1;
    }
    if (w->next.pid != pid)
      continue;
    bh_shm_worker_retired(s->shm, w->next.shm_slot);
    w->next.pid = 0;
    if (s->shutting_down)
      return 1;
    bh_sup_exit_reason(status, reason, sizeof(reason));
    bh_log("restart aborted: the new worker %s (pid %d) %s before it was ready (%s); "
           "the old workers keep serving", w->name, (int)pid, reason,
           WIFEXITED(status) && WEXITSTATUS(status) == BH_EXIT_LOAD_FAILED
               ? "the service does not import: the error is above"
               : "see above");
    s->restart_active = 0;
    if (w->state == W_EMPTY) { /* its old worker died meanwhile: respawn as usual */
      w->state = W_WAITING;
      w->respawn_at = bh_sup_now_s() + 1.0;
    }
    return 1;
  }
  return 0;
}

void bh_sup_restart_stop(sup_t *s) {
  /* New workers serve nothing before they are ready: no drain to wait for. */
  bh_sup_restart_kill(s, 0);
  s->restart_active = 0;
  s->restart_pending = 0;
}

int bh_sup_restart_live(const sup_t *s) {
  int n = 0;
  for (int i = 1; i <= s->nworkers; i++)
    n += (s->workers[i].next.pid != 0) + (s->workers[i].old.pid != 0);
  return n;
}

/* sig 0: the loading new workers only, with SIGKILL; else every extra. */
void bh_sup_restart_kill(sup_t *s, int sig) {
  for (int i = 1; i <= s->nworkers; i++) {
    if (s->workers[i].next.pid != 0)
      kill(s->workers[i].next.pid, SIGKILL);
    if (sig != 0 && s->workers[i].old.pid != 0)
      kill(s->workers[i].old.pid, sig);
  }
}

double bh_sup_restart_deadline(const sup_t *s) {
  double d = 0;
  for (int i = 1; i <= s->nworkers; i++)
    if (s->workers[i].old.pid != 0 && (d == 0 || s->workers[i].old.at < d))
      d = s->workers[i].old.at;
  return d;
}
