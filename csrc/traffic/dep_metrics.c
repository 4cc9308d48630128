/* bentohost_dependency_request_duration_seconds: the calls a worker makes to
 * its dependencies, timed by its I/O thread (server/calls.c reports each
 * result) and kept per (dependency, endpoint) in a bounded table of its slot;
 * rendered by metrics.c with the other families, summed over a service's
 * workers, labelled service_name (the caller), dependency and endpoint.
 *
 * Each slot has BH_DEP_ROWS rows and one overflow row. A row is claimed by the
 * slot's only writer and keeps its pair for the life of the segment (a respawn
 * goes on counting in it, as every counter does): its names are written before
 * `used` is published and never change after, so no lock is needed and a
 * reader in another worker sees them whole or not at all. Once the rows are
 * taken, every new pair counts in the overflow row, labelled
 * dependency="other", endpoint="other" (a route starts with '/', so it cannot
 * be taken for one). Names longer than their field are cut at a character
 * boundary; two names alike up to the cut share a row. */
#include "traffic/internal.h"

#include <stdlib.h>
#include <string.h>

#define RELAXED memory_order_relaxed
#define OVERFLOW_NAME "other"

/* ---------------------------------------------------------------- recording */

/* The bytes of s kept in a field of cap bytes with its NUL: a cut backs off
 * to the start of a UTF-8 character, so a label never ends mid-character. */
static size_t kept(const char *s, size_t cap) {
  size_t n = strnlen(s, cap);
  if (n < cap)
    return n;
  n = cap - 1;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

static int same(const char *stored, const char *s, size_t n) {
  return strncmp(stored, s, n) == 0 && stored[n] == '\0';
}

static void claim(bh_dep_stat_t *r, const char *dep, size_t nd, const char *ep, size_t ne) {
  memcpy(r->dependency, dep, nd);
  r->dependency[nd] = '\0';
  memcpy(r->endpoint, ep, ne);
  r->endpoint[ne] = '\0';
  atomic_store_explicit(&r->used, 1, memory_order_release);
}

/* Rows are taken in order, so the first free one ends the scan: at most
 * BH_DEP_ROWS short compares per call, next to a round trip to another process. */
static bh_dep_stat_t *row_of(bh_slot_t *s, const char *dep, const char *ep) {
  size_t nd = kept(dep, BH_DEP_NAME), ne = kept(ep, BH_DEP_ENDPOINT);
  for (int i = 0; i < BH_DEP_ROWS; i++) {
    bh_dep_stat_t *r = &s->deps[i];
    if (!atomic_load_explicit(&r->used, RELAXED)) {
      claim(r, dep, nd, ep, ne);
      return r;
    }
    if (same(r->dependency, dep, nd) && same(r->endpoint, ep, ne))
      return r;
  }
  bh_dep_stat_t *o = &s->deps[BH_DEP_ROWS];
  if (!atomic_load_explicit(&o->used, RELAXED))
    claim(o, OVERFLOW_NAME, strlen(OVERFLOW_NAME), OVERFLOW_NAME, strlen(OVERFLOW_NAME));
  return o;
}

void bh_dep_metrics_observe(bh_worker_t *w, int dep, const char *endpoint, double duration_s) {
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  if (s == NULL || dep < 0 || (size_t)dep >= w->ndeps || endpoint == NULL)
    return;
  const char *name = w->deps[dep].name != NULL ? w->deps[dep].name : "";
  bh_dep_stat_t *r = row_of(s, name, endpoint);
  int i = bh_metrics_bucket_of(duration_s, bh_dur_buckets, BH_DUR_NB);
  atomic_fetch_add_explicit(&r->bucket[i], 1, RELAXED);
  atomic_fetch_add_explicit(&r->sum_ns, bh_metrics_ns(duration_s), RELAXED);
  atomic_fetch_add_explicit(&r->count, 1, RELAXED);
}

/* ---------------------------------------------------------------- rendering */

/* A pair's totals over a service's slots; the names point into the segment,
 * where a published row's names never change. */
typedef struct dep_total {
  const char *dependency, *endpoint;
  uint64_t count, sum_ns;
  uint64_t bucket[BH_DUR_NB + 1];
} dep_total_t;

static int by_names(const void *a, const void *b) {
  const dep_total_t *x = a, *y = b;
  int c = strcmp(x->dependency, y->dependency);
  return c != 0 ? c : strcmp(x->endpoint, y->endpoint);
}

/* Adds row r to the totals t[0..*n), growing t; -1 when out of memory. */
static int add_row(dep_total_t **t, size_t *n, size_t *cap, bh_dep_stat_t *r) {
  size_t k = 0;
  while (k < *n && !(strcmp((*t)[k].dependency, r->dependency) == 0 &&
                     strcmp((*t)[k].endpoint, r->endpoint) == 0))
    k++;
  if (k == *n) {
    if (*n == *cap) {
      size_t ncap = *cap ? *cap * 2 : BH_DEP_ROWS + 1;
      dep_total_t *p = realloc(*t, ncap * sizeof(*p));
      if (p == NULL)
        return -1;
      *t = p;
      *cap = ncap;
    }
    memset(&(*t)[k], 0, sizeof((*t)[k]));
    (*t)[k].dependency = r->dependency;
    (*t)[k].endpoint = r->endpoint;
    (*n)++;
  }
  dep_total_t *x = &(*t)[k];
  x->count += atomic_load_explicit(&r->count, RELAXED);
  x->sum_ns += atomic_load_explicit(&r->sum_ns, RELAXED);
  for (int i = 0; i <= BH_DUR_NB; i++)
    x->bucket[i] += atomic_load_explicit(&r->bucket[i], RELAXED);
  return 0;
}

void bh_dep_metrics_put(bh_mbuf_t *b, bh_shm_t *shm, const char *service_name, int first_slot,
                        int nslots, int *head) {
  dep_total_t *t = NULL;
  size_t n = 0, cap = 0;

  for (int w = 0; w < 2 * nslots && !b->failed; w++) { /* the slots, then their twins */
    bh_slot_t *s = bh_shm_slot(shm, w < nslots ? first_slot + w : bh_shm_twin(first_slot + w - nslots));
    /* Rows are taken in order and the overflow row (the last) only after all
     * of them: the first free one ends the slot, and a service that calls no
     * dependency costs one read here. */
    for (int i = 0; s != NULL && i <= BH_DEP_ROWS && !b->failed; i++) {
      bh_dep_stat_t *r = &s->deps[i];
      if (!atomic_load_explicit(&r->used, memory_order_acquire))
        break;
      if (add_row(&t, &n, &cap, r) != 0)
        b->failed = 1;
    }
  }
  if (n > 1)
    qsort(t, n, sizeof(*t), by_names);
  if (n > 0 && !*head) {
    bh_mbuf_put(b, "# HELP bentohost_dependency_request_duration_seconds Duration of the calls a "
                   "service made to its dependencies, from the caller, failures included\n");
    bh_mbuf_put(b, "# TYPE bentohost_dependency_request_duration_seconds histogram\n");
    *head = 1;
  }
  for (size_t k = 0; k < n && !b->failed; k++) {
    const char *kv[] = {"service_name", service_name, "dependency", t[k].dependency,
                        "endpoint", t[k].endpoint, NULL};
    char *l = bh_mbuf_labels(kv);
    if (l == NULL) {
      b->failed = 1;
      break;
    }
    bh_mbuf_histogram(b, "bentohost_dependency_request_duration_seconds", l, t[k].bucket,
                      bh_dur_buckets, BH_DUR_NB, (double)t[k].sum_ns / 1e9, t[k].count);
    free(l);
  }
  free(t);
}
