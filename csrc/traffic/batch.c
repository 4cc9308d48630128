/* Adaptive batching on the I/O thread: one queue per batchable API.
 *
 * The policy, per queue (at most one batch in flight, like BentoML):
 *   - a batch goes out when Python is free for it and either max_batch_size
 *     items wait, or holding longer would not help: holding only pays while
 *     requests are arriving concurrently faster than a batch's fixed cost a,
 *     for at most a in all, and never past the point where the oldest
 *     request would miss max_latency_s;
 *   - under load batches grow by themselves: requests pile up while the
 *     previous batch runs, and all of them (up to the maximum) go next;
 *   - a request that cannot finish within max_latency_s any more is answered
 *     503 before Python sees it.
 * The batch time is modelled as a + b*n for n items, fitted by least squares
 * over recent batches (dispatch to the last member's final message).
 *
 * Everything is event driven: decisions are made on arrival, on a batch's end
 * and when the queue's one uv_timer fires at the exact next deadline. The
 * decisions take `now` as an argument so that tests can drive a fake clock.
 *
 * Requests carrying more items than fit are split: the first part joins the
 * batch and the rest stays at the head of the queue. Parts are child requests
 * whose body is the parent's JSON with the array sliced; their outputs are
 * joined back into one message for the parent. */
#include "traffic/internal.h"
#include "traffic/rows.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NSAMPLES 32
#define NS 1e9

/* ---------------------------------------------------------------- state */

typedef struct bq {
  bh_batcher_t *b;
  int api;
  uint32_t max;         /* max_batch_size */
  double lat;           /* max_latency_s */
  int root;
  const char *field;
  const bh_api_t *spec;  /* the API's description (rows.c reads its dtype) */

  bh_req_t *head, *tail; /* linked through batch_next while queued */
  uint32_t items;        /* items queued (the head's cut parts excluded) */

  int busy;              /* a batch is in flight */
  uint64_t busy_since;
  uint32_t busy_items, busy_left, busy_members;
  uint32_t last_members; /* members of the last dispatched batch */

  uint64_t last_arrival;
  double gap;            /* mean time between arrivals, s (0: unknown) */

  double a, bcoef;       /* batch time = a + bcoef * n */
  double sn[NSAMPLES], sd[NSAMPLES];
  int nsamples, seen;

  uint64_t deadline;     /* what the timer is armed for, 0: nothing */
  uv_timer_t timer;
  int has_timer;
} bq_t;

struct bh_batcher {
  bh_worker_t *w;
  bh_batcher_ops_t ops;
  uv_loop_t *loop;
  bq_t **q;              /* per API index; NULL when not batchable */
  size_t nq;
  bh_split_t *splits;
  int open_timers;       /* closed asynchronously: free b after the last one */
};

static void pump(bq_t *q, uint64_t now);

static void reject(bh_batcher_t *b, bh_req_t *req, int status) {
  b->ops.reject(b->ops.arg, req, status);
}

static double predict(const bq_t *q, uint32_t n) {
  return q->a + q->bcoef * (double)n;
}

static void refit(bq_t *q) {
  int k = q->nsamples < NSAMPLES ? q->nsamples : NSAMPLES;
  if (k == 0)
    return;
  double mn = 0, md = 0, cov = 0, var = 0;
  for (int i = 0; i < k; i++) {
    mn += q->sn[i];
    md += q->sd[i];
  }
  mn /= k;
  md /= k;
  for (int i = 0; i < k; i++) {
    cov += (q->sn[i] - mn) * (q->sd[i] - md);
    var += (q->sn[i] - mn) * (q->sn[i] - mn);
  }
  double a, b;
  if (k >= 2 && var > 1e-9) {
    b = cov / var;
    a = md - b * mn;
  } else {
    /* One batch size seen so far: keep the slope, move the intercept. */
    b = q->bcoef;
    a = md - b * mn;
  }
  if (b < 0) { /* noise: a flat model */
    b = 0;
    a = md;
  }
  if (a < 0) { /* through the origin */
    double snn = 0, snd = 0;
    for (int i = 0; i < k; i++) {
      snn += q->sn[i] * q->sn[i];
      snd += q->sn[i] * q->sd[i];
    }
    a = 0;
    b = snn > 0 ? snd / snn : 0;
  }
  q->a = a;
  q->bcoef = b;
}

static void record_batch(bq_t *q, uint32_t n, double d) {
  /* The first batch carries the warm-up (imports, JIT, caches): not a sample. */
  if (q->seen++ == 0)
    return;
  q->sn[q->nsamples % NSAMPLES] = (double)n;
  q->sd[q->nsamples % NSAMPLES] = d;
  q->nsamples++;
  refit(q);
}

static bq_t *queue_of(bh_batcher_t *b, int api) {
  if (b == NULL || api < 0 || (size_t)api >= b->nq)
    return NULL;
  return b->q[api];
}

static bh_split_t *split_of(bh_batcher_t *b, bh_req_t *parent) {
  for (bh_split_t *s = b->splits; s; s = s->next)
    if (s->parent == parent)
      return s;
  return NULL;
}

static void split_free(bh_batcher_t *b, bh_split_t *s) {
  for (bh_split_t **p = &b->splits; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      break;
    }
  free(s->first);
  free(s->err);
  free(s->out);
  free(s);
}

/* Items of a queued request not yet cut into parts. */
static uint32_t remaining(bh_batcher_t *b, bh_req_t *r) {
  bh_split_t *s = r->split_parent == r ? split_of(b, r) : NULL;
  return s ? r->items - s->off : r->items;
}

static double age_s(const bh_req_t *r, uint64_t now) {
  return now > r->start_ns ? (double)(now - r->start_ns) / NS : 0;
}

static bh_req_t *pop_head(bq_t *q) {
  bh_req_t *r = q->head;
  q->head = r->batch_next;
  if (q->head == NULL)
    q->tail = NULL;
  r->batch_next = NULL;
  return r;
}

/* BentoML's generic 5xx body, which clients match on. */
static const char k503[] =
    "{\"error\":\"An unexpected error has occurred, please check the server log.\"}";

/* Answer a queued request 503. The head may be a split parent whose earlier
 * parts are still in Python: it is then answered when they finish. */
static void shed_head(bq_t *q) {
  bh_batcher_t *b = q->b;
  bh_req_t *r = q->head;
  uint32_t rem = remaining(b, r);
  pop_head(q);
  q->items -= rem;
  bh_split_t *s = r->split_parent == r ? split_of(b, r) : NULL;
  if (s != NULL) {
    s->off = r->items;
    s->done += rem;
    if (s->err == NULL)
      s->err = bh_out_new(r, BH_OUT_COMPLETE, 503, "application/json", 16, NULL, 0, k503,
                          sizeof(k503) - 1);
    if (s->outstanding > 0)
      return; /* the last part's final message answers the parent */
    split_free(b, s);
  }
  reject(b, r, 503);
}

/* ---------------------------------------------------------------- timers */

static void on_timer(uv_timer_t *t) {
  bq_t *q = t->data;
  q->deadline = 0;
  pump(q, bh_now_ns());
}

static void arm(bq_t *q, uint64_t now) {
  if (!q->has_timer)
    return;
  if (q->deadline == 0) {
    uv_timer_stop(&q->timer);
    return;
  }
  uint64_t ms = q->deadline > now ? (q->deadline - now + 999999) / 1000000 : 0;
  uv_timer_start(&q->timer, on_timer, ms, 0);
}

/* ---------------------------------------------------------------- dispatch */

/* A child request carrying items [from, to) of r. */
static bh_req_t *make_part(bq_t *q, bh_req_t *r, uint32_t from, uint32_t to) {
  bh_req_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->body = bh_json_slice(r->body, r->body_len, q->root, q->field, from, to, &c->body_len);
  if (c->body == NULL) {
    free(c);
    return NULL;
  }
  if (r->content_type != NULL && (c->content_type = strdup(r->content_type)) == NULL) {
    free(c->body);
    free(c);
    return NULL;
  }
  c->conn = r->conn;
  c->api_index = r->api_index;
  memcpy(c->client, r->client, sizeof(c->client));
  c->split_parent = r;
  c->items = to - from;
  c->start_ns = r->start_ns;
  atomic_init(&c->flags, 0);
  atomic_init(&c->pending_bytes, 0);
  return c;
}

/* The batch's input as one array, where the API's input is one (rows.h); on
 * failure Python decodes each member as before. */
static void decode_rows(bq_t *q, bh_req_t *first) {
  const bh_api_t *api = q->spec;
  bh_rows_t *rows;
  if (api->rows_kind == 0 || (rows = malloc(sizeof(*rows))) == NULL)
    return;
  if (bh_rows_build(api, first, rows) != 0) {
    free(rows);
    return;
  }
  first->rows = rows;
}

/* Cut up to n items off the head of the queue into a batch and send it. */
static void dispatch(bq_t *q, uint32_t n, uint64_t now) {
  bh_batcher_t *b = q->b;
  bh_req_t *first = NULL, *last = NULL;
  uint32_t taken = 0, members = 0;
  uint64_t oldest = q->head->start_ns;

  while (q->head != NULL && taken < n) {
    bh_req_t *r = q->head, *m;
    uint32_t rem = remaining(b, r), room = n - taken;
    bh_split_t *s = r->split_parent == r ? split_of(b, r) : NULL;
    if (s == NULL && rem <= room) {
      m = pop_head(q);
      taken += rem;
      q->items -= rem;
    } else {
      if (s == NULL) { /* the first cut of this request */
        s = calloc(1, sizeof(*s));
        if (s == NULL)
          goto whole;
        s->parent = r;
        s->next = b->splits;
        b->splits = s;
        r->split_parent = r; /* marks a split parent (see member_done) */
      }
      uint32_t take = rem <= room ? rem : room;
      m = make_part(q, r, s->off, s->off + take);
      if (m == NULL) {
        if (s->off > 0 || s->outstanding > 0)
          break; /* out of memory: send what we have, retry later */
        split_free(b, s);
        r->split_parent = NULL;
        goto whole;
      }
      s->off += take;
      s->outstanding++;
      taken += take;
      q->items -= take;
      if (s->off == r->items)
        pop_head(q); /* fully cut: the parent waits for its parts, off queue */
    }
    goto link;
  whole:
    /* Could not split: send the request whole, over the size. Correct, if big. */
    m = pop_head(q);
    taken += rem;
    q->items -= rem;
  link:
    m->batch_next = NULL;
    if (last != NULL)
      last->batch_next = m;
    else
      first = m;
    last = m;
    members++;
  }
  if (first == NULL)
    return;

  decode_rows(q, first);
  int err = b->ops.submit(b->ops.arg, first);
  if (err != 0) {
    /* The ring is full: Python is far behind, so shedding is the honest answer. */
    bh_req_t *m = first, *next;
    for (; m != NULL; m = next) {
      next = m->batch_next;
      m->batch_next = NULL;
      bh_req_t *p = m->split_parent;
      if (p == NULL) {
        reject(b, m, 503);
        continue;
      }
      bh_split_t *s = split_of(b, p);
      s->outstanding--;
      s->done += m->items;
      bh_req_free(m);
      if (q->head == p) { /* the rest of it goes too */
        uint32_t rem = p->items - s->off;
        pop_head(q);
        q->items -= rem;
        s->off = p->items;
        s->done += rem;
      }
      if (s->outstanding == 0 && s->done >= p->items) {
        split_free(b, s);
        reject(b, p, 503);
      }
    }
    return;
  }
  q->busy = 1;
  q->busy_since = now;
  q->busy_items = taken;
  q->busy_left = members;
  q->busy_members = members;
  q->last_members = members;
  bh_metrics_batch(b->w, q->api, taken, now > oldest ? (double)(now - oldest) / NS : 0);
}

/* ---------------------------------------------------------------- decisions */

/* Decide what the queue does at `now`: shed, dispatch, or wait until the next
 * deadline (which the timer is then armed for). */
static void pump(bq_t *q, uint64_t now) {
  q->deadline = 0;
  while (q->head != NULL) {
    bh_req_t *h = q->head;
    uint32_t own = remaining(q->b, h);
    if (own > q->max)
      own = q->max;
    uint32_t next = q->items < q->max ? q->items : q->max;
    double age = age_s(h, now);
    /* Shedding only when the wait is the problem: if even a batch of the head
     * alone is predicted over the bound, the model (or the bound) is off and
     * refusing everybody would help nobody. */
    int can_shed = predict(q, own) <= q->lat;
    /* Whether the model was fitted on measured batches rather than priors. */
    int trained = q->nsamples >= 2;

    if (q->busy) {
      double left = q->busy_since / NS + predict(q, q->busy_items) - now / NS;
      if (left < 0)
        left = 0;
      /* Waiting behind the batch in flight is what makes it late. A function
       * measured slower than the bound itself still serves whoever finds Python
       * free, but nobody queued behind it. */
      if (age >= q->lat || ((can_shed || trained) && age + left + predict(q, own) > q->lat)) {
        shed_head(q);
        continue;
      }
      /* The moment the head could no longer make it, if the batch in flight
       * has not finished by then. */
      double slack = can_shed ? q->lat - predict(q, own) : q->lat;
      q->deadline = h->start_ns + (uint64_t)(slack * NS) + 1000;
      break;
    }

    /* Python is free for this API. A smaller batch may still save the head
     * where a full one would not: never let the batch size alone shed it. */
    uint32_t n = next;
    if (age + predict(q, n) > q->lat && q->bcoef > 0) {
      double fit = (q->lat - age - q->a) / q->bcoef;
      n = fit < (double)own ? own : fit < (double)next ? (uint32_t)fit : next;
    }
    if (can_shed && age + predict(q, own) > q->lat) {
      shed_head(q);
      continue;
    }
    if (q->items >= q->max || n < next) {
      dispatch(q, n, now);
      continue;
    }
    /* Hold for more only while it can pay: requests arrive concurrently (the
     * last batch had several, or several wait now: a lone sequential caller
     * would only be delayed) and faster than a batch's fixed cost, and the
     * head still meets the bound with a margin. */
    double hold_until = h->start_ns / NS + 0.95 * q->lat - predict(q, next + 1);
    /* Like renting skis: never wait longer in total than the fixed cost a batch
     * saves. Under load the queue fills while Python is busy anyway. */
    if (hold_until > h->start_ns / NS + q->a)
      hold_until = h->start_ns / NS + q->a;
    double expect = q->last_arrival / NS + q->gap;
    int concurrent = q->last_members > 1 || q->head->batch_next != NULL;
    if (concurrent && q->gap > 0 && q->gap <= q->a && now / NS - q->last_arrival / NS <= 2 * q->gap &&
        expect <= hold_until && now / NS < hold_until) {
      double until = q->last_arrival / NS + 2 * q->gap;
      if (until > hold_until)
        until = hold_until;
      q->deadline = (uint64_t)(until * NS) + 1;
      if (q->deadline <= now)
        q->deadline = now + 1;
      break;
    }
    dispatch(q, next, now);
  }
  arm(q, now);
}

/* ---------------------------------------------------------------- entry points */

void bh_batcher_enqueue_at(bh_batcher_t *b, bh_req_t *req, uint64_t now) {
  bq_t *q = queue_of(b, req->api_index);
  if (q == NULL) {
    reject(b, req, 500); /* not batchable: a caller bug, answer rather than hang */
    return;
  }
  uint32_t binary = bh_rows_count_binary(q->spec, req);
  req->items = binary > 0            ? binary
               : req->body != NULL ? bh_json_count_items(req->body, req->body_len, q->root, q->field)
                                   : 1;
  req->batch_next = NULL;
  req->split_parent = NULL;

  if (q->last_arrival != 0 && now > q->last_arrival) {
    double g = (double)(now - q->last_arrival) / NS;
    q->gap = q->gap == 0 ? g : 0.8 * q->gap + 0.2 * g;
  }
  q->last_arrival = now;

  /* Refuse at once what the queue ahead makes impossible: it would only wait
   * to be refused later. */
  if (q->busy || q->head != NULL) {
    uint32_t own = req->items < q->max ? req->items : q->max;
    double t = 0;
    if (q->busy) {
      t = q->busy_since / NS + predict(q, q->busy_items) - now / NS;
      if (t < 0)
        t = 0;
    }
    uint64_t end = (uint64_t)q->items + own;
    uint64_t full = (end - 1) / q->max; /* batches before the one it completes in */
    t += (double)full * predict(q, q->max) + predict(q, (uint32_t)(end - full * q->max));
    /* Only on a model fitted to measured batches: priors times a long queue
     * would refuse requests on a guess (BentoML's spurious 503s). */
    if (q->nsamples >= 2 && predict(q, own) <= q->lat && age_s(req, now) + t > q->lat) {
      reject(b, req, 503); /* which counts it as rejected */
      return;
    }
  }

  if (q->tail != NULL)
    q->tail->batch_next = req;
  else
    q->head = req;
  q->tail = req;
  q->items += req->items;
  pump(q, now);
}

void bh_batcher_enqueue(bh_batcher_t *b, bh_req_t *req) {
  bh_batcher_enqueue_at(b, req, bh_now_ns());
}

int bh_batcher_member_done_at(bh_batcher_t *b, bh_req_t *req, bh_out_t *msg,
                              bh_out_t **parent_msg, uint64_t now) {
  *parent_msg = NULL;
  if (req->split_parent == req)
    return 0; /* a split parent's joined message coming back: handle it as usual */
  bq_t *q = queue_of(b, req->api_index);
  if (q == NULL)
    return 0;
  int absorbed = 0;
  bh_req_t *parent = req->split_parent;
  if (parent != NULL) {
    bh_split_t *s = split_of(b, parent);
    absorbed = 1;
    if (s != NULL) {
      bh_split_absorb(s, msg);
      s->outstanding--;
      s->done += req->items;
      if (s->err != NULL && s->off < parent->items && q->head == parent) {
        /* A part failed: the rest need not run. */
        uint32_t rem = parent->items - s->off;
        pop_head(q);
        q->items -= rem;
        s->off = parent->items;
        s->done += rem;
      }
      if (s->outstanding == 0 && s->done >= parent->items) {
        *parent_msg = bh_split_join(s);
        split_free(b, s);
        if (*parent_msg == NULL) { /* out of memory: answer it plainly */
          parent->split_parent = NULL;
          reject(b, parent, 500);
        }
      }
    } else {
      free(msg);
    }
    bh_req_free(req);
  }
  if (q->busy && q->busy_left > 0 && --q->busy_left == 0) {
    q->busy = 0;
    record_batch(q, q->busy_items, now > q->busy_since ? (double)(now - q->busy_since) / NS : 0);
    pump(q, now);
  }
  return absorbed;
}

int bh_batcher_member_done(bh_batcher_t *b, bh_req_t *req, bh_out_t *msg, bh_out_t **parent_msg) {
  return bh_batcher_member_done_at(b, req, msg, parent_msg, bh_now_ns());
}

void bh_batcher_tick_at(bh_batcher_t *b, uint64_t now) {
  for (size_t i = 0; i < b->nq; i++)
    if (b->q[i] != NULL && b->q[i]->deadline != 0 && b->q[i]->deadline <= now)
      pump(b->q[i], now);
}

uint64_t bh_batcher_deadline(bh_batcher_t *b, int api) {
  bq_t *q = queue_of(b, api);
  return q ? q->deadline : 0;
}

double bh_batcher_predict(bh_batcher_t *b, int api, uint32_t n) {
  bq_t *q = queue_of(b, api);
  return q ? predict(q, n) : 0;
}

uint32_t bh_batcher_queued(bh_batcher_t *b, int api) {
  bq_t *q = queue_of(b, api);
  return q ? q->items : 0;
}

int bh_batcher_busy(bh_batcher_t *b, int api) {
  bq_t *q = queue_of(b, api);
  return q ? q->busy : 0;
}

/* ---------------------------------------------------------------- life cycle */

int bh_batcher_create(bh_batcher_t **out, bh_worker_t *w, uv_loop_t *loop,
                      const bh_batcher_ops_t *ops) {
  *out = NULL;
  const bh_service_config_t *cfg = &w->config;
  int any = 0;
  for (size_t i = 0; i < cfg->napis; i++)
    any |= cfg->apis[i].batchable;
  if (!any)
    return 0;
  bh_batcher_t *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return -ENOMEM;
  b->w = w;
  b->ops = *ops;
  b->loop = loop;
  b->nq = cfg->napis;
  b->q = calloc(cfg->napis, sizeof(*b->q));
  if (b->q == NULL) {
    free(b);
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->napis; i++) {
    const bh_api_t *api = &cfg->apis[i];
    if (!api->batchable)
      continue;
    bq_t *q = calloc(1, sizeof(*q));
    if (q == NULL) {
      bh_batcher_close(b);
      return -ENOMEM;
    }
    b->q[i] = q;
    q->b = b;
    q->api = (int)i;
    q->spec = api;
    q->max = api->max_batch_size > 0 ? (uint32_t)api->max_batch_size : 1;
    q->lat = api->max_latency_s > 0 ? api->max_latency_s : 60.0;
    q->root = api->batch_root;
    q->field = api->batch_field;
    /* Priors until batches are measured: a fixed cost of 5% of the bound (at
     * most 50 ms) and a full batch twice that, well inside the bound. */
    q->a = fmin(0.05, q->lat / 20);
    q->bcoef = q->a / q->max;
    if (loop != NULL) {
      int err = uv_timer_init(loop, &q->timer);
      if (err != 0) {
        bh_batcher_close(b);
        return err;
      }
      q->timer.data = q;
      q->has_timer = 1;
      b->open_timers++;
    }
  }
  *out = b;
  return 0;
}

static void batcher_free(bh_batcher_t *b) {
  for (size_t i = 0; i < b->nq; i++)
    free(b->q[i]);
  while (b->splits != NULL)
    split_free(b, b->splits);
  free(b->q);
  free(b);
}

static void on_timer_closed(uv_handle_t *h) {
  bq_t *q = h->data;
  bh_batcher_t *b = q->b;
  if (--b->open_timers == 0)
    batcher_free(b);
}

void bh_batcher_close(bh_batcher_t *b) {
  if (b == NULL)
    return;
  int timers = 0;
  for (size_t i = 0; i < b->nq; i++) {
    bq_t *q = b->q[i];
    if (q == NULL)
      continue;
    /* Normally empty by now (the I/O thread drains before closing). */
    while (q->head != NULL)
      shed_head(q);
    if (q->has_timer) {
      q->has_timer = 0;
      uv_timer_stop(&q->timer);
      uv_close((uv_handle_t *)&q->timer, on_timer_closed);
      timers++;
    }
  }
  if (timers == 0)
    batcher_free(b);
}
