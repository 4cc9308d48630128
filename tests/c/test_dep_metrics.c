/* The dependency-call table (traffic/dep_metrics.c): recording per (dependency,
 * endpoint), calls that are not to a dependency, names cut to their fields,
 * the overflow row, a respawn counting on in its rows, and the render summed
 * over two workers' slots written by two processes.
 *   test_dep_metrics          run the checks
 *   test_dep_metrics render   print a populated /metrics page for pytest to parse */
#include "traffic/internal.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAMILY "bentohost_dependency_request_duration_seconds"

void bh_log(const char *fmt, ...) {
  (void)fmt;
}

static char long_dep[100];
static bh_dependency_t deps[3] = {{.name = "Leaf"}, {.name = "Other"}, {.name = long_dep}};
static bh_api_t entry_apis[1] = {{.name = "predict", .route = "/predict"}};
static bh_api_t leaf_apis[1] = {{.name = "predict", .route = "/predict"}};

static void worker_init(bh_worker_t *w, bh_shm_t *shm, int slot, char *svc) {
  memset(w, 0, sizeof(*w));
  w->index = slot;
  w->slot = slot;
  w->shm = shm;
  w->config.name = svc;
  w->config.workers = 2;
  w->config.apis = entry_apis;
  w->config.napis = 1;
  w->deps = deps;
  w->ndeps = 3;
}

/* A fresh segment and Entry's worker in slot 1. */
static bh_shm_t *fresh(bh_worker_t *w) {
  bh_shm_t *shm = bh_shm_create();
  CHECK(shm != NULL);
  worker_init(w, shm, 1, "Entry");
  return shm;
}

static int used_rows(bh_shm_t *shm, int slot) {
  int n = 0;
  for (int i = 0; i < BH_DEP_ROWS; i++)
    n += atomic_load(&shm->slots[slot].deps[i].used) != 0;
  return n;
}

static void test_recording(void) {
  bh_worker_t w;
  bh_shm_t *shm = fresh(&w);

  bh_dep_metrics_observe(&w, 0, "/predict", 0.003);
  bh_dep_metrics_observe(&w, 0, "/predict", 0.003);
  bh_dep_metrics_observe(&w, 0, "/predict", 0.3);
  bh_dep_metrics_observe(&w, 1, "/predict", 1.0);  /* another dependency, same route */
  bh_dep_metrics_observe(&w, 0, "/other", 200.0);  /* past the last bound: +Inf */
  /* not calls to a dependency */
  bh_dep_metrics_observe(&w, -1, "/predict", 1.0);
  bh_dep_metrics_observe(&w, 3, "/predict", 1.0);
  bh_dep_metrics_observe(&w, 0, NULL, 1.0);

  bh_dep_stat_t *r = shm->slots[1].deps;
  CHECK(used_rows(shm, 1) == 3);
  CHECK(strcmp(r[0].dependency, "Leaf") == 0 && strcmp(r[0].endpoint, "/predict") == 0);
  CHECK(r[0].count == 3 && r[0].bucket[0] == 2 && r[0].bucket[7] == 1); /* 0.005, 0.5 */
  CHECK(r[0].sum_ns == 306000000ull);
  CHECK(strcmp(r[1].dependency, "Other") == 0 && r[1].count == 1 && r[1].bucket[9] == 1);
  CHECK(strcmp(r[2].endpoint, "/other") == 0 && r[2].bucket[BH_DUR_NB] == 1);
  CHECK(shm->slots[1].deps[BH_DEP_ROWS].used == 0);

  /* a respawned worker in the slot counts on in the rows it finds */
  bh_shm_worker_died(shm, 1);
  bh_dep_metrics_observe(&w, 0, "/predict", 0.01);
  CHECK(used_rows(shm, 1) == 3 && r[0].count == 4 && r[0].bucket[1] == 1);

  /* a slot outside the segment is ignored */
  w.slot = BH_MAX_WORKERS + 1;
  bh_dep_metrics_observe(&w, 0, "/predict", 0.01);
  printf("recording ok\n");
  munmap(shm, bh_shm_size());
}

static void test_truncation(void) {
  bh_worker_t w;
  bh_shm_t *shm = fresh(&w);
  bh_dep_stat_t *r = shm->slots[1].deps;

  /* 126 ASCII bytes, then a 2-byte character across the 127-byte limit */
  char ep[200], ep2[200];
  ep[0] = '/';
  memset(ep + 1, 'x', 125);
  strcpy(ep + 126, "\xc3\xa9yyy");
  bh_dep_metrics_observe(&w, 2, ep, 0.01);
  CHECK(strlen(r[0].dependency) == BH_DEP_NAME - 1);
  CHECK(strncmp(r[0].dependency, long_dep, BH_DEP_NAME - 1) == 0);
  CHECK(strlen(r[0].endpoint) == 126 && memcmp(r[0].endpoint, ep, 126) == 0);
  bh_dep_metrics_observe(&w, 2, ep, 0.01);
  CHECK(r[0].count == 2 && used_rows(shm, 1) == 1);
  /* alike up to the cut (127 bytes): one row */
  memcpy(ep2, ep, 126);
  strcpy(ep2 + 126, "zzzz");
  bh_dep_metrics_observe(&w, 2, ep2, 0.01);
  CHECK(used_rows(shm, 1) == 2 && strlen(r[1].endpoint) == BH_DEP_ENDPOINT - 1);
  strcpy(ep2 + 127, "qqq");
  bh_dep_metrics_observe(&w, 2, ep2, 0.01);
  CHECK(used_rows(shm, 1) == 2 && r[1].count == 2);

  /* a 3-byte character whose first byte is the last that fits: cut before it */
  memset(ep, 'x', 126);
  ep[0] = '/';
  strcpy(ep + 126, "\xe2\x82\xac");
  bh_dep_metrics_observe(&w, 0, ep, 0.01);
  CHECK(strlen(r[2].endpoint) == 126);
  /* exactly at the limit: kept whole */
  memset(ep, 'x', BH_DEP_ENDPOINT - 1);
  ep[0] = '/';
  ep[BH_DEP_ENDPOINT - 1] = '\0';
  bh_dep_metrics_observe(&w, 1, ep, 0.01);
  CHECK(strcmp(r[3].endpoint, ep) == 0);
  printf("truncation ok\n");
  munmap(shm, bh_shm_size());
}

static void test_overflow(void) {
  bh_worker_t w;
  bh_shm_t *shm = fresh(&w);
  char ep[32];
  for (int i = 0; i < BH_DEP_ROWS + 5; i++) {
    snprintf(ep, sizeof(ep), "/route%d", i);
    bh_dep_metrics_observe(&w, i % 2, ep, 0.01);
  }
  bh_dep_stat_t *o = &shm->slots[1].deps[BH_DEP_ROWS];
  CHECK(used_rows(shm, 1) == BH_DEP_ROWS);
  CHECK(o->used && strcmp(o->dependency, "other") == 0 && strcmp(o->endpoint, "other") == 0);
  CHECK(o->count == 5);
  /* pairs that have a row keep it once the table is full */
  bh_dep_metrics_observe(&w, 0, "/route0", 0.01);
  CHECK(shm->slots[1].deps[0].count == 2 && o->count == 5);
  bh_dep_metrics_observe(&w, 1, "/route0", 0.01); /* new pair: overflow */
  CHECK(o->count == 6);
  printf("overflow ok\n");
  munmap(shm, bh_shm_size());
}

/* Entry runs two workers (slots 1 and 2), Leaf one (slot 3) with a dependency
 * of its own; the child process writes slot 2. */
static char *render_graph(void) {
  bh_shm_t *shm = bh_shm_create();
  CHECK(shm != NULL);
  bh_shm_set_services(shm, 2);
  bh_shm_set_workers(shm, 0, 1, 2);
  bh_shm_set_workers(shm, 1, 3, 1);
  bh_worker_t w1, w2, leaf;
  worker_init(&w1, shm, 1, "Entry");
  worker_init(&w2, shm, 2, "Entry");
  worker_init(&leaf, shm, 3, "Leaf");
  leaf.config.workers = 1;
  leaf.config.apis = leaf_apis;
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    bh_dep_metrics_observe(&w2, 0, "/predict", 0.02);
    bh_dep_metrics_observe(&w2, 0, "/predict", 3.0);
    bh_dep_metrics_observe(&w2, 1, "/e\"p", 0.001);
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  bh_dep_metrics_observe(&w1, 0, "/predict", 0.003);
  bh_dep_metrics_observe(&w1, 0, "/predict", 0.3);
  bh_dep_metrics_observe(&leaf, 1, "/deeper", 0.04);
  bh_metrics_view_t views[2] = {{&w1.config, 0}, {&leaf.config, 1}};
  size_t len;
  char *text = bh_metrics_render_graph(shm, views, 2, &len);
  CHECK(text != NULL && strlen(text) == len);
  munmap(shm, bh_shm_size());
  return text;
}

static int count_of(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

static void test_render(void) {
  char *text = render_graph();
  CHECK(count_of(text, "# HELP " FAMILY " ") == 1);
  CHECK(count_of(text, "# TYPE " FAMILY " histogram\n") == 1);
  /* both Entry workers summed in one series */
  CHECK(strstr(text, FAMILY "_count{service_name=\"Entry\",dependency=\"Leaf\",endpoint=\"/predict\"} 4.0\n"));
  CHECK(strstr(text, FAMILY "_bucket{service_name=\"Entry\",dependency=\"Leaf\",endpoint=\"/predict\",le=\"0.005\"} 1.0\n"));
  CHECK(strstr(text, FAMILY "_bucket{service_name=\"Entry\",dependency=\"Leaf\",endpoint=\"/predict\",le=\"2.5\"} 3.0\n"));
  CHECK(strstr(text, FAMILY "_bucket{service_name=\"Entry\",dependency=\"Leaf\",endpoint=\"/predict\",le=\"+Inf\"} 4.0\n"));
  CHECK(strstr(text, FAMILY "_sum{service_name=\"Entry\",dependency=\"Leaf\",endpoint=\"/predict\"} 3.323\n"));
  CHECK(strstr(text, FAMILY "_count{service_name=\"Entry\",dependency=\"Other\",endpoint=\"/e\\\"p\"} 1.0\n"));
  /* the other service under its own name */
  CHECK(strstr(text, FAMILY "_count{service_name=\"Leaf\",dependency=\"Other\",endpoint=\"/deeper\"} 1.0\n"));
  CHECK(count_of(text, FAMILY "_count{") == 3);
  free(text);

  /* nothing measured: no family at all */
  bh_worker_t w;
  bh_shm_t *shm = fresh(&w);
  size_t len;
  text = bh_metrics_render(shm, &w.config, 0, &len);
  CHECK(text != NULL && strstr(text, FAMILY) == NULL);
  free(text);
  munmap(shm, bh_shm_size());
  printf("render ok\n");
}

int main(int argc, char **argv) {
  memset(long_dep, 'd', sizeof(long_dep) - 1);
  if (argc > 1 && strcmp(argv[1], "render") == 0) {
    char *text = render_graph();
    fputs(text, stdout);
    free(text);
    return 0;
  }
  test_recording();
  test_truncation();
  test_overflow();
  test_render();
  printf("OK\n");
  return 0;
}
