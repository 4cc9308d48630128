/* The supervisor's periodic look at its live workers: the watchdog that
 * replaces a hung worker, and recycling (--max-requests, --max-worker-rss),
 * one worker at a time so that the others keep serving. */
#include "supervisor/internal.h"
#include "common/log.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

/* A worker is hung when, for longer than watchdog_factor x traffic.timeout,
 * its event loop made no progress while it had work, or when it says so: its
 * I/O thread, which sees the requests waiting, reports every sync thread
 * inside one call that long while requests wait for one (the loop keeps
 * ticking then, so it needs its own look). It gets SIGUSR1 first
 * (faulthandler writes its Python stacks to the log), then SIGKILL; it is
 * respawned at once, as any worker that had been ready. */
void bh_sup_watchdog(sup_t *s) {
  if (!s->have_config || s->opts->watchdog_factor <= 0 || s->shutting_down)
    return;
  double t = bh_sup_now_s();
  /* One stack dump at a time: faulthandler writes in small pieces, and two
   * workers dumping together would interleave their lines in the log. */
  int dumping = 0;
  for (int i = 1; i <= s->nworkers; i++)
    dumping |= s->workers[i].state == W_READY && s->workers[i].hang_kill_at > 0 &&
               t < s->workers[i].hang_kill_at;
  for (int i = 1; i <= s->nworkers; i++) {
    sup_worker_t *w = &s->workers[i];
    if (w->state != W_READY)
      continue;
    if (w->hang_kill_at > 0) {
      if (t >= w->hang_kill_at) {
        kill(w->pid, SIGKILL);
        w->hang_kill_at = t + 3600;
      }
      continue;
    }
    double limit = s->opts->watchdog_factor * bh_sup_config(s, i)->timeout_s;
    double loop = bh_shm_stall_s(s->shm, w->shm_slot);
    int reported = bh_shm_reported_hung(s->shm, w->shm_slot);
    if (!dumping && (loop > limit || reported)) {
      double sync = bh_shm_sync_stuck_s(s->shm, w->shm_slot);
      dumping = 1;
      bh_log("worker %s (pid %d) made no progress for %.1fs (limit %.1fs%s): writing its Python "
             "stacks and restarting it", w->name, (int)w->pid, loop > limit ? loop : sync, limit,
             loop > limit ? "" : ", every sync thread inside one call while requests wait");
      kill(w->pid, SIGUSR1);
      w->hang_kill_at = t + 1.0;
    }
  }
}

/* Resident memory of pid in bytes, 0 when unknown. */
static uint64_t rss_bytes(pid_t pid) {
  char path[64];
  unsigned long long size = 0, resident = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
  if ((f = fopen(path, "r")) == NULL)
    return 0;
  if (fscanf(f, "%llu %llu", &size, &resident) != 2)
    resident = 0;
  fclose(f);
  return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Starts recycling at most one worker, and only while every other worker is
 * ready: a recycled worker drains like on SIGTERM (its in-flight requests
 * finish, its listener closes so the others take the new connections) and is
 * respawned at once when it exits. */
void bh_sup_recycle(sup_t *s) {
  const bh_options_t *o = s->opts;
  char why[96];

  /* A rolling restart replaces them all anyway, one at a time already. */
  if (!s->have_config || s->shutting_down || s->recycling != 0 || s->restart_active ||
      (o->max_requests == 0 && o->max_worker_rss == 0))
    return;
  for (int i = 1; i <= s->nworkers; i++)
    if (s->workers[i].state != W_READY)
      return;
  for (int i = 1; i <= s->nworkers; i++) {
    sup_worker_t *w = &s->workers[i];
    uint64_t served = bh_shm_requests(s->shm, w->shm_slot) - w->requests_at_start, rss = 0;
    if (o->max_requests > 0 && served >= o->max_requests)
      snprintf(why, sizeof(why), "answered %llu requests (--max-requests %llu)",
               (unsigned long long)served, (unsigned long long)o->max_requests);
    else if (o->max_worker_rss > 0 && (rss = rss_bytes(w->pid)) > o->max_worker_rss)
      snprintf(why, sizeof(why), "uses %.0f MiB (--max-worker-rss %.0f MiB)", (double)rss / 1048576.0,
               (double)o->max_worker_rss / 1048576.0);
    else
      continue;
    bh_log("worker %s (pid %d) %s: recycling it", w->name, (int)w->pid, why);
    w->recycling = 1;
    s->recycling = i;
    kill(w->pid, SIGTERM);
    return;
  }
}
