/* Metrics: recorded by each worker's I/O thread into its own slot of the shared
 * segment, rendered by any worker as the totals of all of them (what BentoML
 * gets from PROMETHEUS_MULTIPROC_DIR, without files or a lock).
 *
 * Histograms keep per-bucket (not cumulative) counts so that recording is one
 * atomic add; the render accumulates. Recording uses relaxed atomics: a scrape
 * racing a request may see its count before its sum, which Prometheus tolerates.
 * The calls to dependencies have their own table and family (dep_metrics.c). */
#include "traffic/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAXED memory_order_relaxed

/* BentoML's DEFAULT_BUCKET for request durations (plus +Inf). */
const double bh_dur_buckets[BH_DUR_NB] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
                                          1.0,   2.5,  5.0,   7.5,  10.0,  30.0, 60.0, 120.0, 180.0};
const double bh_queue_buckets[BH_QUEUE_NB] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1.0,   2.5,  5.0};

/* ---------------------------------------------------------------- recording */

static bh_api_stat_t *api_stat(bh_worker_t *w, int api_index) {
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  if (s == NULL || api_index < 0 || api_index >= BH_SHM_MAX_APIS)
    return NULL;
  return &s->apis[api_index];
}

int bh_metrics_bucket_of(double v, const double *bounds, int n) {
  int i = 0;
  while (i < n && v > bounds[i]) /* le: v <= bound */
    i++;
  return i; /* n means +Inf */
}

uint64_t bh_metrics_ns(double s) {
  if (!(s > 0))
    return 0;
  if (s > 1.8e10)
    s = 1.8e10;
  return (uint64_t)(s * 1e9 + 0.5);
}

void bh_metrics_request(bh_worker_t *w, int api_index, int status, double duration_s) {
  bh_slot_t *slot = bh_shm_slot(w->shm, w->slot);
  if (slot != NULL)
    atomic_fetch_add_explicit(&slot->requests, 1, RELAXED);
  bh_api_stat_t *a = api_stat(w, api_index);
  if (a == NULL || status <= 0)
    return;
  /* First come, first served: the slot's only writer is this thread, so a
   * plain scan then a store of the code publishes a new row. */
  bh_code_stat_t *c = NULL;
  for (int i = 0; i < BH_SHM_MAX_CODES; i++) {
    uint32_t code = atomic_load_explicit(&a->codes[i].code, RELAXED);
    if (code == (uint32_t)status) {
      c = &a->codes[i];
      break;
    }
    if (code == 0) {
      c = &a->codes[i];
      atomic_store_explicit(&c->code, (uint32_t)status, memory_order_release);
      break;
    }
  }
  if (c == NULL)
    return; /* more than BH_SHM_MAX_CODES distinct codes: not measured */
  int i = bh_metrics_bucket_of(duration_s, bh_dur_buckets, BH_DUR_NB);
  atomic_fetch_add_explicit(&c->bucket[i], 1, RELAXED);
  atomic_fetch_add_explicit(&c->sum_ns, bh_metrics_ns(duration_s), RELAXED);
  atomic_fetch_add_explicit(&c->count, 1, RELAXED);
}

void bh_metrics_rejected(bh_worker_t *w, int status) {
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  int r = status == 429 ? BH_REJ_429 : status == 503 ? BH_REJ_503 : status == 504 ? BH_REJ_504 : -1;
  if (s != NULL && r >= 0)
    atomic_fetch_add_explicit(&s->rejected[r], 1, RELAXED);
}

void bh_metrics_refused(bh_worker_t *w, int reason) {
  bh_slot_t *s = bh_shm_slot(w->shm, w->slot);
  if (s != NULL && reason >= 0 && reason < BH_REJ_N)
    atomic_fetch_add_explicit(&s->rejected[reason], 1, RELAXED);
}

int bh_metrics_reason_of(int status) {
  switch (status) {
  case 400: return BH_REJ_BAD_REQUEST;
  case 408: return BH_REJ_HEADER_TIMEOUT;
  case 413: return BH_REJ_BODY_SIZE;
  case 431: return BH_REJ_HEADER_SIZE;
  case 501: return BH_REJ_NOT_IMPLEMENTED;
  case 505: return BH_REJ_HTTP_VERSION;
  default: return -1;
  }
}

void bh_metrics_inflight(bh_worker_t *w, int api_index, int delta) {
  bh_api_stat_t *a = api_stat(w, api_index);
  if (a != NULL)
    atomic_fetch_add_explicit(&a->in_progress, delta, RELAXED);
}

int bh_batch_bucket_bounds(uint32_t end, double *bounds) {
  /* BentoML's exponential_buckets(1, 2, end): 1, 2, 4, ... below end, then end. */
  int n = 0;
  if (end < 1)
    end = 1;
  for (uint64_t b = 1; b < end && n < BH_BATCH_NB - 2; b *= 2)
    bounds[n++] = (double)b;
  bounds[n++] = (double)end;
  return n;
}

int bh_batch_bucket_index(uint32_t size, uint32_t end) {
  double bounds[BH_BATCH_NB];
  int n = bh_batch_bucket_bounds(end, bounds);
  return bh_metrics_bucket_of((double)size, bounds, n);
}

static uint32_t largest_batch(const bh_service_config_t *cfg) {
  uint32_t m = 1;
  for (size_t i = 0; i < cfg->napis; i++)
    if (cfg->apis[i].batchable && cfg->apis[i].max_batch_size > 0 &&
        (uint32_t)cfg->apis[i].max_batch_size > m)
      m = (uint32_t)cfg->apis[i].max_batch_size;
  return m;
}

void bh_metrics_batch(bh_worker_t *w, int api_index, uint32_t size, double queue_s) {
  bh_api_stat_t *a = api_stat(w, api_index);
  if (a == NULL)
    return;
  int i = bh_batch_bucket_index(size, largest_batch(&w->config));
  atomic_fetch_add_explicit(&a->batch_bucket[i], 1, RELAXED);
  atomic_fetch_add_explicit(&a->batch_sum, size, RELAXED);
  atomic_fetch_add_explicit(&a->batch_count, 1, RELAXED);
  i = bh_metrics_bucket_of(queue_s, bh_queue_buckets, BH_QUEUE_NB);
  atomic_fetch_add_explicit(&a->queue_bucket[i], 1, RELAXED);
  atomic_fetch_add_explicit(&a->queue_sum_ns, bh_metrics_ns(queue_s), RELAXED);
  atomic_fetch_add_explicit(&a->queue_count, 1, RELAXED);
}

/* ---------------------------------------------------------------- rendering */

void bh_mbuf_put(bh_mbuf_t *b, const char *fmt, ...) {
  va_list ap;
  if (b->failed)
    return;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

/* A label value with \ " and newline escaped, as the text format wants. */
static void put_label(bh_mbuf_t *b, const char *name, const char *v, int comma) {
  bh_mbuf_put(b, "%s%s=\"", comma ? "," : "", name);
  for (const char *c = v ? v : ""; *c; c++) {
    if (*c == '\\')
      bh_mbuf_put(b, "\\\\");
    else if (*c == '"')
      bh_mbuf_put(b, "\\\"");
    else if (*c == '\n')
      bh_mbuf_put(b, "\\n");
    else
      bh_mbuf_put(b, "%c", *c);
  }
  bh_mbuf_put(b, "\"");
}

/* Go/Python style float, the shortest exact form: 1.0, 0.005, 180.0. */
static void fmt_float(char *out, size_t n, double v) {
  char tmp[40];
  if (v == (double)(long long)v && v < 1e15 && v > -1e15) {
    snprintf(out, n, "%lld.0", (long long)v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  if (strchr(tmp, '.') == NULL && strchr(tmp, 'e') == NULL && strchr(tmp, 'n') == NULL)
    snprintf(out, n, "%.37s.0", tmp);
  else
    snprintf(out, n, "%.39s", tmp);
}

void bh_mbuf_histogram(bh_mbuf_t *b, const char *name, const char *labels,
                       const uint64_t *per_bucket, const double *bounds, int nb, double sum,
                       uint64_t count) {
  char le[64];
  uint64_t acc = 0;
  for (int i = 0; i < nb; i++) {
    acc += per_bucket[i];
    fmt_float(le, sizeof(le), bounds[i]);
    bh_mbuf_put(b, "%s_bucket{%s,le=\"%s\"} %llu.0\n", name, labels, le, (unsigned long long)acc);
  }
  acc += per_bucket[nb];
  bh_mbuf_put(b, "%s_bucket{%s,le=\"+Inf\"} %llu.0\n", name, labels, (unsigned long long)acc);
  bh_mbuf_put(b, "%s_count{%s} %llu.0\n", name, labels, (unsigned long long)count);
  fmt_float(le, sizeof(le), sum);
  bh_mbuf_put(b, "%s_sum{%s} %s\n", name, labels, le);
}

char *bh_mbuf_labels(const char *const *kv) {
  bh_mbuf_t h = {malloc(256), 0, 256, 0};
  if (h.p == NULL)
    return NULL;
  h.p[0] = '\0';
  for (int i = 0; kv[i] != NULL; i += 2)
    put_label(&h, kv[i], kv[i + 1], i > 0);
  if (h.failed) {
    free(h.p);
    return NULL;
  }
  return h.p;
}

typedef struct code_total {
  uint32_t code;
  uint64_t count, sum_ns;
  uint64_t bucket[BH_DUR_NB + 1];
} code_total_t;

/* One service's part of the render: its config, its slots, and its request
 * totals gathered per API and status (the families must not interleave, so
 * every service's rows are gathered before any family is printed). */
typedef struct view {
  const bh_service_config_t *cfg;
  const char *svc;
  int first, hi;             /* slots first .. first+hi-1, labelled worker_index 1..hi */
  size_t napis;
  size_t *ncodes;
  code_total_t **per_api;
} view_t;

/* The j-th of the 2 x n slots of a service's workers (first .. first+n-1,
 * then their twins, see bh_shm_twin). */
static int life_slot(int first, int n, int j) {
  return j < n ? first + j : bh_shm_twin(first + j - n);
}

static int view_gather(view_t *v, bh_shm_t *shm, const bh_metrics_view_t *in) {
  const bh_service_config_t *cfg = in->cfg;
  bh_service_block_t *sb = bh_shm_service(shm, in->service);

  v->cfg = cfg;
  v->svc = cfg->name ? cfg->name : "";
  v->hi = sb ? atomic_load(&sb->workers) : 0;
  v->first = sb ? atomic_load(&sb->first_slot) : 1;
  if (cfg->workers > v->hi)
    v->hi = cfg->workers;
  if (v->hi < 1)
    v->hi = 1;
  if (v->first < 1)
    v->first = 1;
  if (v->first + v->hi - 1 > BH_MAX_WORKERS)
    v->hi = BH_MAX_WORKERS - v->first + 1;
  v->napis = cfg->napis < BH_SHM_MAX_APIS ? cfg->napis : BH_SHM_MAX_APIS;
  v->ncodes = calloc(v->napis + 1, sizeof(size_t));
  v->per_api = calloc(v->napis + 1, sizeof(*v->per_api));
  if (v->ncodes == NULL || v->per_api == NULL)
    return -ENOMEM;
  for (size_t a = 0; a < v->napis; a++) {
    size_t cap = BH_SHM_MAX_CODES * 2 * (size_t)v->hi + 2, n = 0; /* slots and twins */
    code_total_t *t = calloc(cap, sizeof(*t));
    if (t == NULL)
      return -ENOMEM;
    /* BentoML pre-creates 200 and 500 at 0 for every route. */
    t[n++].code = 200;
    t[n++].code = 500;
    for (int j = 0; j < 2 * v->hi && shm; j++) {
      bh_api_stat_t *st = &shm->slots[life_slot(v->first, v->hi, j)].apis[a];
      for (int c = 0; c < BH_SHM_MAX_CODES; c++) {
        uint32_t code = atomic_load_explicit(&st->codes[c].code, memory_order_acquire);
        if (code == 0)
          break;
        size_t k = 0;
        while (k < n && t[k].code != code)
          k++;
        if (k == n)
          t[n++].code = code;
        t[k].count += atomic_load_explicit(&st->codes[c].count, RELAXED);
        t[k].sum_ns += atomic_load_explicit(&st->codes[c].sum_ns, RELAXED);
        for (int i = 0; i <= BH_DUR_NB; i++)
          t[k].bucket[i] += atomic_load_explicit(&st->codes[c].bucket[i], RELAXED);
      }
    }
    v->per_api[a] = t;
    v->ncodes[a] = n;
  }
  return 0;
}

static void view_free(view_t *v) {
  for (size_t a = 0; v->per_api && a < v->napis; a++)
    free(v->per_api[a]);
  free(v->per_api);
  free(v->ncodes);
}

/* A sample older than this is a monitor that stopped (or a GPU that stopped
 * answering): its last numbers would be a lie, so its series go. */
#define GPU_STALE_S 5.0

/* The GPUs the supervisor's monitor sampled (shm.h). Machine-wide, so once
 * per page whatever the services; no family at all without a fresh sample,
 * so that a host without NVML shows no empty GPU families. */
static void gpu_put(bh_mbuf_t *b, bh_shm_t *shm) {
  static const struct {
    const char *name, *help;
  } fam[3] = {
      {"bentohost_gpu_memory_used_bytes", "GPU memory in use, bytes (NVML)"},
      {"bentohost_gpu_memory_total_bytes", "GPU memory in total, bytes (NVML)"},
      {"bentohost_gpu_utilization_ratio", "Share of NVML's last sample period in which a kernel ran on the GPU, 0..1"},
  };
  struct {
    uint64_t used, total;
    double util;
  } g[BH_SHM_MAX_GPUS];
  int ok[BH_SHM_MAX_GPUS] = {0}, any = 0, n = bh_shm_gpus(shm);
  for (int i = 0; i < n && i < BH_SHM_MAX_GPUS; i++) {
    double age;
    ok[i] = bh_shm_gpu_read(shm, i, &g[i].used, &g[i].total, &g[i].util, &age) == 0 &&
            age < GPU_STALE_S;
    any |= ok[i];
  }
  if (!any)
    return;
  for (int f = 0; f < 3; f++) {
    bh_mbuf_put(b, "# HELP %s %s\n# TYPE %s gauge\n", fam[f].name, fam[f].help, fam[f].name);
    for (int i = 0; i < n && i < BH_SHM_MAX_GPUS; i++) {
      char v[64];
      if (!ok[i] || (f == 2 && g[i].util < 0))
        continue;
      if (f == 2)
        fmt_float(v, sizeof(v), g[i].util);
      else
        snprintf(v, sizeof(v), "%llu.0", (unsigned long long)(f == 0 ? g[i].used : g[i].total));
      bh_mbuf_put(b, "%s{gpu=\"%d\"} %s\n", fam[f].name, i, v);
    }
  }
}

char *bh_metrics_render(bh_shm_t *shm, const bh_service_config_t *cfg, int service, size_t *len) {
  bh_metrics_view_t one = {cfg, service};
  return bh_metrics_render_graph(shm, &one, 1, len);
}

char *bh_metrics_render_graph(bh_shm_t *shm, const bh_metrics_view_t *in, size_t nviews,
                              size_t *len) {
  bh_mbuf_t b = {malloc(16384), 0, 16384, 0};
  const char *ver = "not available";
  view_t *views = calloc(nviews ? nviews : 1, sizeof(*views));
  if (b.p == NULL || views == NULL) {
    free(b.p);
    free(views);
    return NULL;
  }
  b.p[0] = '\0';
  for (size_t v = 0; v < nviews; v++)
    if (view_gather(&views[v], shm, &in[v]) != 0)
      b.failed = 1;

  bh_mbuf_put(&b, "# HELP bentoml_service_request_total Total number of server HTTP requests\n");
  bh_mbuf_put(&b, "# TYPE bentoml_service_request_total counter\n");
  for (size_t v = 0; v < nviews && !b.failed; v++)
    for (size_t a = 0; a < views[v].napis && !b.failed; a++)
      for (size_t k = 0; k < views[v].ncodes[a]; k++) {
        const char *svc = views[v].svc;
        char code[16];
        snprintf(code, sizeof(code), "%u", views[v].per_api[a][k].code);
        const char *kv[] = {"endpoint", views[v].cfg->apis[a].route, "service_name", svc,
                            "service_version", ver, "http_response_code", code, "runner_name", svc,
                            NULL};
        char *l = bh_mbuf_labels(kv);
        if (l == NULL) {
          b.failed = 1;
          break;
        }
        bh_mbuf_put(&b, "bentoml_service_request_total{%s} %llu.0\n", l,
            (unsigned long long)views[v].per_api[a][k].count);
        free(l);
      }

  bh_mbuf_put(&b, "# HELP bentoml_service_request_duration_seconds Server HTTP request duration in seconds\n");
  bh_mbuf_put(&b, "# TYPE bentoml_service_request_duration_seconds histogram\n");
  for (size_t v = 0; v < nviews && !b.failed; v++)
    for (size_t a = 0; a < views[v].napis && !b.failed; a++)
      for (size_t k = 0; k < views[v].ncodes[a]; k++) {
        code_total_t *t = &views[v].per_api[a][k];
        const char *svc = views[v].svc;
        if (t->count == 0)
          continue; /* the pre-created zero rows are a counter-only courtesy */
        char code[16];
        snprintf(code, sizeof(code), "%u", t->code);
        const char *kv[] = {"endpoint", views[v].cfg->apis[a].route, "service_name", svc,
                            "service_version", ver, "http_response_code", code, "runner_name", svc,
                            NULL};
        char *l = bh_mbuf_labels(kv);
        if (l == NULL) {
          b.failed = 1;
          break;
        }
        bh_mbuf_histogram(&b, "bentoml_service_request_duration_seconds", l, t->bucket, bh_dur_buckets,
                      BH_DUR_NB, (double)t->sum_ns / 1e9, t->count);
        free(l);
      }

  bh_mbuf_put(&b, "# HELP bentoml_service_request_in_progress Total number of HTTP requests in progress now\n");
  bh_mbuf_put(&b, "# TYPE bentoml_service_request_in_progress gauge\n");
  for (size_t v = 0; v < nviews && !b.failed; v++)
    for (size_t a = 0; a < views[v].napis && !b.failed; a++) {
      const view_t *vw = &views[v];
      int64_t n = 0;
      for (int j = 0; j < 2 * vw->hi && shm; j++)
        n += atomic_load_explicit(&shm->slots[life_slot(vw->first, vw->hi, j)].apis[a].in_progress, RELAXED);
      if (n < 0)
        n = 0;
      const char *kv[] = {"endpoint", vw->cfg->apis[a].route, "service_name", vw->svc,
                          "service_version", ver, "runner_name", vw->svc, NULL};
      char *l = bh_mbuf_labels(kv);
      if (l == NULL) {
        b.failed = 1;
        break;
      }
      bh_mbuf_put(&b, "bentoml_service_request_in_progress{%s} %lld.0\n", l, (long long)n);
      free(l);
    }

  /* Batch sizes are per worker (BentoML labels them with worker_index). */
  int any_batch = 0;
  for (size_t v = 0; v < nviews; v++)
    for (size_t a = 0; a < views[v].napis; a++)
      any_batch |= views[v].cfg->apis[a].batchable;
  if (any_batch && !b.failed) {
    bh_mbuf_put(&b, "# HELP bentoml_service_adaptive_batch_size Runner adaptive batch size\n");
    bh_mbuf_put(&b, "# TYPE bentoml_service_adaptive_batch_size histogram\n");
    for (size_t v = 0; v < nviews && !b.failed; v++) {
      const view_t *vw = &views[v];
      double bounds[BH_BATCH_NB];
      int nb = bh_batch_bucket_bounds(largest_batch(vw->cfg), bounds);
      for (int w = 1; w <= vw->hi && shm && !b.failed; w++)
        for (size_t a = 0; a < vw->napis && !b.failed; a++) {
          if (!vw->cfg->apis[a].batchable)
            continue;
          /* the index's slot and its twin: one series per worker_index */
          uint64_t per[BH_BATCH_NB] = {0}, count = 0, sum = 0;
          for (int k = 0; k < 2; k++) {
            int slot = vw->first + w - 1;
            bh_api_stat_t *st = &shm->slots[k ? bh_shm_twin(slot) : slot].apis[a];
            count += atomic_load_explicit(&st->batch_count, RELAXED);
            sum += atomic_load_explicit(&st->batch_sum, RELAXED);
            for (int i = 0; i <= nb; i++)
              per[i] += atomic_load_explicit(&st->batch_bucket[i], RELAXED);
          }
          if (count == 0)
            continue;
          char wi[16];
          snprintf(wi, sizeof(wi), "%d", w);
          const char *kv[] = {"runner_name", vw->svc, "worker_index", wi, "method_name",
                              vw->cfg->apis[a].name, "service_version", ver, "service_name",
                              vw->svc, NULL};
          char *l = bh_mbuf_labels(kv);
          if (l == NULL) {
            b.failed = 1;
            break;
          }
          bh_mbuf_histogram(&b, "bentoml_service_adaptive_batch_size", l, per, bounds, nb,
                        (double)sum, count);
          free(l);
        }
    }

    bh_mbuf_put(&b, "# HELP bentohost_batch_queue_seconds Time the oldest request of a batch waited in its queue\n");
    bh_mbuf_put(&b, "# TYPE bentohost_batch_queue_seconds histogram\n");
    for (size_t v = 0; v < nviews && !b.failed; v++)
      for (size_t a = 0; a < views[v].napis && !b.failed; a++) {
        const view_t *vw = &views[v];
        if (!vw->cfg->apis[a].batchable)
          continue;
        uint64_t per[BH_QUEUE_NB + 1] = {0}, count = 0, sum = 0;
        for (int j = 0; j < 2 * vw->hi && shm; j++) {
          bh_api_stat_t *st = &shm->slots[life_slot(vw->first, vw->hi, j)].apis[a];
          count += atomic_load_explicit(&st->queue_count, RELAXED);
          sum += atomic_load_explicit(&st->queue_sum_ns, RELAXED);
          for (int i = 0; i <= BH_QUEUE_NB; i++)
            per[i] += atomic_load_explicit(&st->queue_bucket[i], RELAXED);
        }
        const char *kv[] = {"endpoint", vw->cfg->apis[a].route, "method_name",
                            vw->cfg->apis[a].name, "service_name", vw->svc, NULL};
        char *l = bh_mbuf_labels(kv);
        if (l == NULL) {
          b.failed = 1;
          break;
        }
        bh_mbuf_histogram(&b, "bentohost_batch_queue_seconds", l, per, bh_queue_buckets, BH_QUEUE_NB,
                      (double)sum / 1e9, count);
        free(l);
      }
  }

  /* Per service only when the graph has several (a single service keeps its
   * label set as it always had). */
  static const char *const reasons[BH_REJ_N] = {
      "429", "503", "504", "header_timeout", "body_timeout", "headers_count", "header_size",
      "body_size", "multipart_limit", "bad_request", "not_implemented", "http_version",
      "connections", "tls_handshake"};
  bh_mbuf_put(&b, "# HELP bentohost_requests_rejected_total Requests answered by the host without running them\n");
  bh_mbuf_put(&b, "# TYPE bentohost_requests_rejected_total counter\n");
  for (size_t v = 0; v < nviews && !b.failed; v++)
    for (int r = 0; r < BH_REJ_N; r++) {
      uint64_t n = 0;
      for (int j = 0; j < 2 * views[v].hi && shm; j++)
        n += atomic_load_explicit(&shm->slots[life_slot(views[v].first, views[v].hi, j)].rejected[r], RELAXED);
      if (nviews > 1)
        bh_mbuf_put(&b, "bentohost_requests_rejected_total{reason=\"%s\",service_name=\"%s\"} %llu.0\n",
            reasons[r], views[v].svc, (unsigned long long)n);
      else
        bh_mbuf_put(&b, "bentohost_requests_rejected_total{reason=\"%s\"} %llu.0\n", reasons[r],
            (unsigned long long)n);
    }

  bh_mbuf_put(&b, "# HELP bentohost_worker_restarts_total Times a worker index was restarted after dying\n");
  bh_mbuf_put(&b, "# TYPE bentohost_worker_restarts_total counter\n");
  for (size_t v = 0; v < nviews && !b.failed; v++)
    for (int w = 1; w <= views[v].hi; w++) {
      int slot = views[v].first + w - 1;
      uint64_t n = shm ? atomic_load_explicit(&shm->slots[slot].restarts, RELAXED) +
                             atomic_load_explicit(&shm->slots[bh_shm_twin(slot)].restarts, RELAXED)
                       : 0;
      if (nviews > 1)
        bh_mbuf_put(&b, "bentohost_worker_restarts_total{worker_index=\"%d\",service_name=\"%s\"} %llu.0\n",
            w, views[v].svc, (unsigned long long)n);
      else
        bh_mbuf_put(&b, "bentohost_worker_restarts_total{worker_index=\"%d\"} %llu.0\n", w,
            (unsigned long long)n);
    }

  int dep_head = 0;
  for (size_t v = 0; v < nviews && !b.failed; v++)
    bh_dep_metrics_put(&b, shm, views[v].svc, views[v].first, views[v].hi, &dep_head);
  if (!b.failed)
    gpu_put(&b, shm);

  for (size_t v = 0; v < nviews; v++)
    view_free(&views[v]);
  free(views);
  if (b.failed) {
    free(b.p);
    return NULL;
  }
  if (len)
    *len = b.len;
  return b.p;
}
