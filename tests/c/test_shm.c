/* Shared segment, limiter and metrics tests. Workers are forked processes
 * sharing one bh_shm_create() segment, as under the supervisor.
 *   test_shm            run the checks
 *   test_shm render     print a populated /metrics page for pytest to parse */
#include "traffic/internal.h"
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

void bh_log(const char *fmt, ...) {
  (void)fmt;
}

static bh_api_t apis[2] = {
    {.name = "classify", .route = "/classify", .batchable = 1, .max_batch_size = 100, .max_latency_s = 1},
    {.name = "echo", .route = "/e\"cho", .batchable = 0},
};

static void worker_init(bh_worker_t *w, bh_shm_t *shm, int index, int maxc, int conc) {
  memset(w, 0, sizeof(*w));
  w->index = index;
  w->slot = index; /* one service: slot == worker index */
  w->shm = shm;
  w->config.name = "svc";
  w->config.workers = 4;
  w->config.max_concurrency = maxc;
  w->config.concurrency = conc;
  w->config.apis = apis;
  w->config.napis = 2;
}

static void test_limiter_contention(void) {
  enum { WORKERS = 8, LIMIT = 5, ROUNDS = 200000 };
  bh_shm_t *shm = bh_shm_create();
  CHECK(shm != NULL);
  bh_shm_set_workers(shm, 0, 1, WORKERS);
  _Atomic int64_t *seen = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(seen != MAP_FAILED);
  pid_t pids[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    pids[i] = fork();
    CHECK(pids[i] >= 0);
    if (pids[i] == 0) {
      bh_worker_t w;
      worker_init(&w, shm, i + 1, LIMIT, 0);
      long admitted = 0, refused = 0;
      for (int r = 0; r < ROUNDS; r++) {
        if (bh_limiter_acquire(&w) != 0) {
          refused++;
          continue;
        }
        admitted++;
        int64_t now = atomic_load(&shm->services[0].inflight);
        int64_t m = atomic_load(seen);
        while (now > m && !atomic_compare_exchange_weak(seen, &m, now))
          ;
        if (now > LIMIT)
          _exit(2);
        if (r % 3 == 0)
          sched_yield(); /* hold it a little, so others meet a full limiter */
        bh_limiter_release(&w);
      }
      atomic_fetch_add(&seen[1], refused);
      atomic_fetch_add(&seen[2], admitted);
      _exit(0);
    }
  }
  for (int i = 0; i < WORKERS; i++) {
    int st;
    CHECK(waitpid(pids[i], &st, 0) == pids[i]);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
      fprintf(stderr, "child %d: status %d\n", i, st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  CHECK(atomic_load(&shm->services[0].inflight) == 0);
  CHECK(atomic_load(seen) <= LIMIT);
  for (int i = 1; i <= WORKERS; i++)
    CHECK(atomic_load(&shm->slots[i].inflight) == 0);
  CHECK(atomic_load(&seen[1]) > 0); /* the limit was met, and held */
  CHECK(atomic_load(&seen[2]) > 0);
  printf("limiter: %d workers x %d rounds, global max seen %lld (limit %d), %lld refused\n", WORKERS,
         ROUNDS, (long long)atomic_load(seen), LIMIT, (long long)atomic_load(&seen[1]));
  munmap(seen, 4096);
  munmap(shm, bh_shm_size());
}

static void test_worker_death(void) {
  bh_shm_t *shm = bh_shm_create();
  bh_worker_t w1, w2;
  worker_init(&w1, shm, 1, 4, 0);
  worker_init(&w2, shm, 2, 4, 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* worker 2 admits 3 and dies without releasing */
    for (int i = 0; i < 3; i++)
      if (bh_limiter_acquire(&w2) != 0)
        _exit(1);
    bh_metrics_inflight(&w2, 0, 3);
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(atomic_load(&shm->services[0].inflight) == 3);
  CHECK(bh_limiter_acquire(&w1) == 0);
  CHECK(bh_limiter_acquire(&w1) == -EBUSY); /* 4 of 4 */
  bh_shm_worker_died(shm, 2);
  CHECK(atomic_load(&shm->services[0].inflight) == 1);
  CHECK(atomic_load(&shm->slots[2].restarts) == 1);
  CHECK(atomic_load(&shm->slots[2].apis[0].in_progress) == 0);
  CHECK(bh_limiter_acquire(&w1) == 0);
  bh_limiter_release(&w1);
  bh_limiter_release(&w1);
  bh_limiter_release(&w1); /* unbalanced: ignored */
  CHECK(atomic_load(&shm->services[0].inflight) == 0);
  /* a worker's own word that it is hung lasts until its slot is reset */
  CHECK(!bh_shm_reported_hung(shm, 1));
  bh_shm_report_hung(shm, 1);
  CHECK(bh_shm_reported_hung(shm, 1) && !bh_shm_reported_hung(shm, 2));
  bh_shm_worker_retired(shm, 1);
  CHECK(!bh_shm_reported_hung(shm, 1));
  bh_shm_report_hung(shm, 999); /* out of range: ignored */
  CHECK(!bh_shm_reported_hung(shm, 999));
  bh_shm_worker_died(shm, 2); /* twice: nothing left to give back */
  CHECK(atomic_load(&shm->services[0].inflight) == 0);
  CHECK(atomic_load(&shm->slots[2].restarts) == 2);

  /* unlimited still counts */
  w1.config.max_concurrency = 0;
  for (int i = 0; i < 10; i++)
    CHECK(bh_limiter_acquire(&w1) == 0);
  CHECK(atomic_load(&shm->services[0].inflight) == 10);
  bh_shm_worker_died(shm, 1);
  CHECK(atomic_load(&shm->services[0].inflight) == 0);
  printf("worker death gives back its slots\n");
  munmap(shm, bh_shm_size());
}

static void test_may_accept_and_stall(void) {
  bh_shm_t *shm = bh_shm_create();
  bh_worker_t w;
  worker_init(&w, shm, 3, 0, 10);
  bh_shm_set_workers(shm, 0, 1, 4); /* ceil(10 / 4) = 3 each */
  for (int i = 0; i < 3; i++) {
    CHECK(bh_limiter_may_accept(&w));
    CHECK(bh_limiter_acquire(&w) == 0);
  }
  CHECK(!bh_limiter_may_accept(&w));
  bh_shm_set_workers(shm, 0, 1, 2); /* ceil(10 / 2) = 5 */
  CHECK(bh_limiter_may_accept(&w));
  w.config.concurrency = 0;
  CHECK(bh_limiter_may_accept(&w));

  /* stall: only while Python work is pending */
  uint64_t now = bh_now_ns();
  CHECK(bh_shm_stall_at(shm, 3, now + 5000000000ull) == 0); /* in flight, no Python work */
  bh_shm_work(shm, 3, 2);
  double s = bh_shm_stall_at(shm, 3, bh_now_ns() + 2000000000ull);
  CHECK(s > 1.9 && s < 2.5);
  bh_shm_heartbeat(shm, 3);
  s = bh_shm_stall_at(shm, 3, bh_now_ns() + 1000000000ull);
  CHECK(s > 0.9 && s < 1.5);
  bh_shm_work(shm, 3, -1);
  CHECK(bh_shm_stall_at(shm, 3, bh_now_ns() + 1000000000ull) > 0.9);
  bh_shm_work(shm, 3, -1);
  CHECK(bh_shm_stall_at(shm, 3, bh_now_ns() + 1000000000ull) == 0);
  bh_shm_work(shm, 3, -1); /* unbalanced: clamped */
  CHECK(atomic_load(&shm->slots[3].pending) == 0);
  CHECK(bh_shm_stall_s(shm, 999) == 0);
  printf("concurrency share and stall ok\n");
  munmap(shm, bh_shm_size());
}

/* The GPU block: one writer (the supervisor's monitor), readers that never
 * see half of a sample, stale samples left out of /metrics. */
static void test_gpu_block(void) {
  bh_shm_t *shm = bh_shm_create();
  uint64_t used, total;
  double util, age;
  CHECK(bh_shm_gpus(shm) == 0);
  CHECK(bh_shm_gpu_read(shm, 0, &used, &total, &util, &age) == -ENODATA);
  CHECK(bh_shm_gpu_read(shm, BH_SHM_MAX_GPUS, &used, &total, &util, &age) == -EINVAL);
  CHECK(bh_shm_gpu_set(shm, -1, 1, 2, 0.5) == -EINVAL);
  bh_shm_gpu_count(shm, 99);
  CHECK(bh_shm_gpus(shm) == BH_SHM_MAX_GPUS);
  bh_shm_gpu_count(shm, 2);
  CHECK(bh_shm_gpus(shm) == 2);

  /* nothing sampled yet: no GPU family on the page */
  bh_worker_t w;
  worker_init(&w, shm, 1, 0, 0);
  char *text = bh_metrics_render(shm, &w.config, 0, NULL);
  CHECK(text != NULL && strstr(text, "bentohost_gpu_") == NULL);
  free(text);

  CHECK(bh_shm_gpu_set(shm, 0, 1073741824ull, 150000000000ull, 0.37) == 0);
  CHECK(bh_shm_gpu_set(shm, 1, 5, 10, -1) == 0); /* no utilisation reported */
  CHECK(bh_shm_gpu_read(shm, 0, &used, &total, &util, &age) == 0);
  CHECK(used == 1073741824ull && total == 150000000000ull && util == 0.37 && age < 1);
  CHECK(bh_shm_gpu_read(shm, 1, &used, &total, &util, &age) == 0);
  CHECK(used == 5 && total == 10 && util < 0);
  CHECK(bh_shm_gpu_set(shm, 1, 5, 10, 7.0) == 0 && bh_shm_gpu_read(shm, 1, NULL, NULL, &util, NULL) == 0);
  CHECK(util == 1.0); /* clamped */
  CHECK(bh_shm_gpu_set(shm, 1, 5, 10, -1) == 0);

  text = bh_metrics_render(shm, &w.config, 0, NULL);
  CHECK(text != NULL);
  CHECK(strstr(text, "# TYPE bentohost_gpu_memory_used_bytes gauge\n") != NULL);
  CHECK(strstr(text, "bentohost_gpu_memory_used_bytes{gpu=\"0\"} 1073741824.0\n") != NULL);
  CHECK(strstr(text, "bentohost_gpu_memory_total_bytes{gpu=\"1\"} 10.0\n") != NULL);
  CHECK(strstr(text, "bentohost_gpu_utilization_ratio{gpu=\"0\"} 0.37\n") != NULL);
  CHECK(strstr(text, "bentohost_gpu_utilization_ratio{gpu=\"1\"}") == NULL);
  free(text);

  /* a sample older than ~5 s is a monitor gone quiet: left out */
  atomic_store(&shm->gpu.gpus[0].at_ns, bh_now_ns() - 6000000000ull);
  text = bh_metrics_render(shm, &w.config, 0, NULL);
  CHECK(text != NULL && strstr(text, "{gpu=\"0\"}") == NULL && strstr(text, "{gpu=\"1\"}") != NULL);
  free(text);

  /* a writer killed mid-sample (odd count) makes reads give up, not spin */
  atomic_fetch_add(&shm->gpu.gpus[1].seq, 1);
  CHECK(bh_shm_gpu_read(shm, 1, &used, &total, &util, &age) == -EAGAIN);
  text = bh_metrics_render(shm, &w.config, 0, NULL);
  CHECK(text != NULL && strstr(text, "bentohost_gpu_") == NULL);
  free(text);
  atomic_fetch_add(&shm->gpu.gpus[1].seq, 1);

  /* another process writing as fast as it can: every read is one whole sample */
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (uint64_t i = 1; i <= 2000000; i++)
      bh_shm_gpu_set(shm, 1, i, 2 * i, (double)(i % 100) / 100);
    _exit(0);
  }
  long reads = 0;
  for (;;) {
    int st;
    int done = waitpid(pid, &st, WNOHANG) == pid;
    if (bh_shm_gpu_read(shm, 1, &used, &total, &util, &age) == 0) {
      CHECK(total == 2 * used);
      reads++;
    }
    if (done) {
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
      break;
    }
  }
  CHECK(bh_shm_gpu_read(shm, 1, &used, &total, &util, &age) == 0 && used == 2000000);
  printf("gpu block: %ld consistent reads\n", reads);
  munmap(shm, bh_shm_size());
}

static void render(void) {
  bh_shm_t *shm = bh_shm_create();
  bh_shm_set_workers(shm, 0, 1, 2);
  bh_worker_t w1, w2;
  worker_init(&w1, shm, 1, 0, 0);
  worker_init(&w2, shm, 2, 0, 0);
  /* two processes write their own slots; the render sums them */
  pid_t pid = fork();
  if (pid == 0) {
    bh_metrics_request(&w2, 0, 200, 0.003);
    bh_metrics_request(&w2, 0, 200, 0.2);
    bh_metrics_request(&w2, 0, 429, 0.0001);
    bh_metrics_rejected(&w2, 429);
    bh_metrics_batch(&w2, 0, 3, 0.004);
    bh_metrics_inflight(&w2, 0, 2);
    _exit(0);
  }
  waitpid(pid, NULL, 0);
  bh_metrics_request(&w1, 0, 200, 1.5);
  bh_metrics_request(&w1, 1, 500, 0.01);
  bh_metrics_request(&w1, 1, 404, 0.01);
  bh_metrics_rejected(&w1, 503);
  bh_metrics_rejected(&w1, 504);
  bh_metrics_batch(&w1, 0, 100, 0.5);
  bh_metrics_batch(&w1, 0, 1, 0.0);
  bh_metrics_inflight(&w1, 0, 1);
  bh_metrics_inflight(&w1, 0, -1);
  bh_shm_worker_died(shm, 2);
  size_t len;
  char *text = bh_metrics_render(shm, &w1.config, 0, &len);
  CHECK(text != NULL && strlen(text) == len);
  fwrite(text, 1, len, stdout);
  free(text);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "render") == 0) {
    render();
    return 0;
  }
  test_limiter_contention();
  test_worker_death();
  test_may_accept_and_stall();
  test_gpu_block();
  printf("OK\n");
  return 0;
}
