/* Batcher and JSON item tests with a fake clock. The bridge and the HTTP layer
 * are stubs that record what the batcher hands them. */
#include "traffic/internal.h"
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MS 1000000ull

void bh_log(const char *fmt, ...) {
  (void)fmt;
}

/* ---------------------------------------------------------------- stubs */

static bh_req_t *g_batches[4096];
static uint64_t g_batch_at[4096];
static int g_nbatches, g_ring_full;
static uint64_t g_now;
static bh_req_t *g_rejected[4096];
static int g_reject_status[4096], g_nrejected;

static int stub_submit(void *arg, bh_req_t *req) {
  (void)arg;
  if (g_ring_full)
    return -EAGAIN;
  g_batch_at[g_nbatches] = g_now;
  g_batches[g_nbatches++] = req;
  return 0;
}

void bh_req_free(bh_req_t *req) {
  free(req->body);
  free(req->content_type);
  free(req);
}

static bh_worker_t g_w;

/* Like the server's: the rejection is counted where the answer is written. */
static void stub_reject(void *arg, bh_req_t *req, int status) {
  (void)arg;
  bh_metrics_rejected(&g_w, status);
  g_reject_status[g_nrejected] = status;
  g_rejected[g_nrejected++] = req;
  bh_req_free(req);
}

static const bh_batcher_ops_t stub_ops = {stub_submit, stub_reject, NULL};

bh_out_t *bh_out_new(bh_req_t *req, bh_out_kind_t kind, int status, const char *ct, size_t ctl,
                     const char *headers, size_t hl, const char *data, size_t len) {
  bh_out_t *m = calloc(1, sizeof(*m) + ctl + 1 + hl + len + 1);
  char *p = (char *)(m + 1);
  m->req = req;
  m->kind = kind;
  m->status = status;
  if (ct) {
    memcpy(p, ct, ctl);
    m->content_type = p;
    p += ctl + 1;
  }
  if (headers) {
    memcpy(p, headers, hl);
    m->headers = p;
    m->headers_len = hl;
    p += hl;
  }
  memcpy(p, data, len);
  m->data = p;
  m->len = len;
  return m;
}

/* ---------------------------------------------------------------- helpers */

static bh_api_t g_api;

static bh_batcher_t *setup(int max, double lat, int root) {
  memset(&g_api, 0, sizeof(g_api));
  g_api.name = "f";
  g_api.route = "/f";
  g_api.batchable = 1;
  g_api.max_batch_size = max;
  g_api.max_latency_s = lat;
  g_api.batch_root = root;
  g_api.batch_field = root ? NULL : "xs";
  memset(&g_w, 0, sizeof(g_w));
  g_w.index = 1;
  g_w.slot = 1;
  if (g_w.shm == NULL)
    g_w.shm = bh_shm_create();
  g_w.config.name = "svc";
  g_w.config.apis = &g_api;
  g_w.config.napis = 1;
  g_nbatches = g_nrejected = g_ring_full = 0;
  bh_batcher_t *b;
  CHECK(bh_batcher_create(&b, &g_w, NULL, &stub_ops) == 0 && b != NULL);
  return b;
}

static bh_req_t *mkreq(const char *body, uint64_t start) {
  bh_req_t *r = calloc(1, sizeof(*r));
  r->body = strdup(body);
  r->body_len = strlen(body);
  r->content_type = strdup("application/json");
  r->start_ns = start;
  return r;
}

static void enqueue(bh_batcher_t *b, bh_req_t *r, uint64_t now) {
  g_now = now;
  bh_batcher_enqueue_at(b, r, now);
}

static int members(bh_req_t *h) {
  int n = 0;
  for (; h; h = h->batch_next)
    n++;
  return n;
}

/* Final answers as the HTTP layer would see them. */
static char g_answers[256][512];
static bh_req_t *g_answered[256];
static int g_answer_status[256], g_nanswers;

static void answer(bh_out_t *m) {
  g_answered[g_nanswers] = m->req;
  g_answer_status[g_nanswers] = m->status;
  snprintf(g_answers[g_nanswers++], 512, "%.*s", (int)m->len, m->data);
  bh_req_free(m->req);
  free(m);
}

/* Python: echo each member's input array (fail members whose body has "fail"). */
static void finish(bh_batcher_t *b, bh_req_t *head, uint64_t now) {
  g_now = now;
  for (bh_req_t *m = head, *next; m; m = next) {
    next = m->batch_next;
    size_t open, close;
    long count;
    bh_out_t *msg;
    if (strstr(m->body, "fail"))
      msg = bh_out_new(m, BH_OUT_COMPLETE, 500, "application/json", 16, NULL, 0, "{\"error\":\"x\"}", 13);
    else {
      CHECK(bh_json_items(m->body, m->body_len, g_api.batch_root, g_api.batch_field, &open, &close,
                          &count, NULL, 0) == 0);
      msg = bh_out_new(m, BH_OUT_COMPLETE, 200, "application/json", 16, NULL, 0, m->body + open,
                       close - open + 1);
    }
    bh_out_t *pm = NULL;
    int r = bh_batcher_member_done_at(b, m, msg, &pm, now);
    if (r == 0)
      answer(msg);
    else if (pm != NULL)
      answer(pm);
  }
}

static void done(bh_batcher_t *b) {
  bh_batcher_close(b);
}

/* ---------------------------------------------------------------- JSON */

static void test_json(void) {
  CHECK(bh_json_count_items("[1,2,3]", 7, 1, NULL) == 3);
  CHECK(bh_json_count_items(" [ ] ", 5, 1, NULL) == 1); /* empty: weighs 1 */
  const char *t = " { \"a\" : [9,9], \"x\\\"s\": 1, \"xs\" :\n [ \"a,]\\\"[\" , [1,[2,3]] ,{\"k\":\"]}\"}, -1.5e3 ,true] , \"z\":{} } ";
  CHECK(bh_json_count_items(t, strlen(t), 0, "xs") == 5);
  CHECK(bh_json_count_items(t, strlen(t), 0, "a") == 2);
  CHECK(bh_json_count_items(t, strlen(t), 0, "x\"s") == 1); /* not an array */
  CHECK(bh_json_count_items(t, strlen(t), 0, "nope") == 1);
  CHECK(bh_json_count_items("{\"xs\": [1, 2", 12, 0, "xs") == 1); /* truncated */
  CHECK(bh_json_count_items("\"[1,2]\"", 7, 1, NULL) == 1);     /* a string */
  CHECK(bh_json_count_items("[\"\\\\\",\"\\\\\\\"\"]", 14, 1, NULL) == 2);
  size_t n;
  char *s = bh_json_slice(t, strlen(t), 0, "xs", 1, 3, &n);
  CHECK(s && strcmp(s, " { \"a\" : [9,9], \"x\\\"s\": 1, \"xs\" :\n [[1,[2,3]] ,{\"k\":\"]}\"}] , \"z\":{} } ") == 0);
  CHECK(strlen(s) == n);
  free(s);
  s = bh_json_slice(t, strlen(t), 0, "xs", 0, 1, &n);
  CHECK(s && strstr(s, "[\"a,]\\\"[\"]") != NULL);
  free(s);
  s = bh_json_slice("[1, 2 ,3]", 9, 1, NULL, 2, 3, &n);
  CHECK(s && strcmp(s, "[3]") == 0);
  free(s);
  CHECK(bh_json_slice("[1]", 3, 1, NULL, 0, 2, &n) == NULL);
  printf("json items ok\n");
}

/* ---------------------------------------------------------------- batcher */

static void test_dispatch_when_full(void) {
  bh_batcher_t *b = setup(4, 1.0, 0);
  enqueue(b, mkreq("{\"xs\":[0]}", 0), 0); /* Python free, nothing to wait for: at once */
  CHECK(g_nbatches == 1 && members(g_batches[0]) == 1);
  for (int i = 1; i <= 4; i++)
    enqueue(b, mkreq("{\"xs\":[1]}", i * MS), i * MS);
  CHECK(g_nbatches == 1 && bh_batcher_queued(b, 0) == 4); /* one batch in flight at most */
  finish(b, g_batches[0], 10 * MS);
  CHECK(g_nbatches == 2 && members(g_batches[1]) == 4); /* full: sent as the previous ends */
  finish(b, g_batches[1], 20 * MS);
  /* a request carrying max items goes at once */
  enqueue(b, mkreq("{\"xs\":[1,2,3,4]}", 21 * MS), 21 * MS);
  CHECK(g_nbatches == 3 && g_batches[2]->items == 4);
  finish(b, g_batches[2], 30 * MS);
  CHECK(g_nanswers == 6 && strcmp(g_answers[5], "[1,2,3,4]") == 0);
  done(b);
  g_nanswers = 0;
  printf("dispatch when full ok\n");
}

static void test_hold_then_bound(void) {
  bh_batcher_t *b = setup(1000, 0.4, 1); /* L = 400 ms; prior fixed cost a = 20 ms */
  uint64_t t = 0;
  enqueue(b, mkreq("[0]", t), t);
  CHECK(g_nbatches == 1);
  for (t = 1 * MS; t <= 4 * MS; t += MS)
    enqueue(b, mkreq("[1]", t), t);
  finish(b, g_batches[0], 5 * MS);
  /* arrivals every 1 ms, faster than a: it holds, for at most a */
  CHECK(g_nbatches == 1);
  uint64_t dl = bh_batcher_deadline(b, 0);
  CHECK(dl > 5 * MS && dl <= 7 * MS); /* until the next expected arrival is overdue */
  for (t = 5 * MS; g_nbatches == 1 && t < 200 * MS; t += MS) {
    uint64_t d = bh_batcher_deadline(b, 0);
    if (d != 0 && d <= t) {
      g_now = t;
      bh_batcher_tick_at(b, t);
      if (g_nbatches > 1)
        break;
    }
    enqueue(b, mkreq("[1]", t), t);
  }
  CHECK(g_nbatches == 2);
  double age = (double)(g_batch_at[1] - g_batches[1]->start_ns) / 1e9;
  printf("light hold: %d requests, head waited %.1f ms (a = %.1f ms)\n", members(g_batches[1]),
         age * 1e3, bh_batcher_predict(b, 0, 0) * 1e3);
  double a0 = bh_batcher_predict(b, 0, 0);
  CHECK(age >= 0.8 * a0 && age <= a0 + 0.0015);
  /* Teach it slow batches: 150 ms fixed cost. Now the latency bound, not the
   * fixed cost, limits holding. */
  uint64_t now = g_batch_at[1];
  for (int i = 0; i < 6; i++) {
    now += 150 * MS + (uint64_t)members(g_batches[g_nbatches - 1]) * MS / 10;
    finish(b, g_batches[g_nbatches - 1], now);
    g_nanswers = g_nrejected = 0;
    if (!bh_batcher_busy(b, 0)) {
      now += MS;
      enqueue(b, mkreq("[1]", now), now);
      enqueue(b, mkreq("[1,1]", now), now);
      if (!bh_batcher_busy(b, 0)) {
        g_now = bh_batcher_deadline(b, 0);
        bh_batcher_tick_at(b, g_now);
        now = g_now;
      }
    }
    CHECK(bh_batcher_busy(b, 0));
  }
  printf("model after slow batches: a = %.0f ms\n", bh_batcher_predict(b, 0, 0) * 1e3);
  CHECK(bh_batcher_predict(b, 0, 0) > 0.12);
  /* a burst arrives while that batch runs */
  for (int i = 0; i < 15; i++) {
    now += MS;
    enqueue(b, mkreq("[1]", now), now);
  }
  CHECK(g_nrejected == 0);
  now += MS;
  finish(b, g_batches[g_nbatches - 1], now);
  int before = g_nbatches;
  CHECK(g_nbatches == before); /* still holding */
  uint64_t t0 = now + MS;
  for (t = t0; g_nbatches == before && t < t0 + 500 * MS; t += MS) {
    uint64_t d = bh_batcher_deadline(b, 0);
    if (d != 0 && d <= t) {
      g_now = t;
      bh_batcher_tick_at(b, t);
      if (g_nbatches > before)
        break;
    }
    enqueue(b, mkreq("[1]", t), t);
  }
  CHECK(g_nbatches == before + 1);
  bh_req_t *h = g_batches[before];
  age = (double)(g_batch_at[before] - h->start_ns) / 1e9;
  uint32_t n = bh_batcher_queued(b, 0) + (uint32_t)members(h);
  double done_at = age + bh_batcher_predict(b, 0, (uint32_t)members(h));
  printf("held %d requests for %.0f ms; head expected done at %.0f ms (bound 400)\n", members(h),
         age * 1e3, done_at * 1e3);
  (void)n;
  CHECK(age > 0.05 && done_at <= 0.4 && done_at > 0.36); /* held up to the bound, not past it */
  CHECK(g_nrejected == 0);
  finish(b, h, g_batch_at[before] + 160 * MS);
  done(b);
  g_nanswers = 0;
  printf("hold under the bound ok\n");
}

static void test_sequential_caller_not_held(void) {
  bh_batcher_t *b = setup(100, 1.0, 1);
  for (int i = 0; i < 20; i++) {
    uint64_t t = (uint64_t)i * 3 * MS;
    enqueue(b, mkreq("[1]", t), t);
    CHECK(g_nbatches == i + 1); /* never delayed: nobody else is coming */
    finish(b, g_batches[i], t + 2 * MS);
  }
  done(b);
  g_nanswers = 0;
  printf("sequential caller ok\n");
}

static void test_shed(void) {
  bh_batcher_t *b = setup(2, 0.1, 1); /* priors: a = 5 ms, b = 2.5 ms/item */
  /* Refusing on arrival needs a model fitted to measured batches: three batches
   * (the first is warm-up) that take what the priors say. */
  for (int i = 0; i < 3; i++) {
    uint64_t t = (uint64_t)i * 10 * MS;
    enqueue(b, mkreq("[0]", t), t);
    CHECK(g_nbatches == i + 1);
    finish(b, g_batches[i], t + 7 * MS + MS / 2);
  }
  g_nbatches = 0;
  g_nanswers = 0;
  const uint64_t T = 50 * MS;
  enqueue(b, mkreq("[0]", T), T);
  CHECK(g_nbatches == 1); /* ... and Python never finishes it */
  enqueue(b, mkreq("[1]", T + MS), T + MS);
  uint64_t dl = bh_batcher_deadline(b, 0);
  CHECK(dl > T + 80 * MS && dl < T + 100 * MS);
  g_now = dl - MS;
  bh_batcher_tick_at(b, dl - MS);
  CHECK(g_nrejected == 0);
  g_now = dl;
  bh_batcher_tick_at(b, dl);
  CHECK(g_nrejected == 1 && g_reject_status[0] == 503);
  CHECK(bh_batcher_queued(b, 0) == 0 && bh_batcher_deadline(b, 0) == 0);
  /* a long queue ahead: refused at once, before Python sees them */
  for (int i = 0; i < 40; i++)
    enqueue(b, mkreq("[1]", T + 100 * MS), T + 100 * MS);
  int shed = g_nrejected - 1;
  printf("queue of 40 behind a stuck batch: %d refused at arrival\n", shed);
  CHECK(shed >= 15 && shed <= 30);
  CHECK(atomic_load(&g_w.shm->slots[1].rejected[BH_REJ_503]) == (uint64_t)g_nrejected);
  /* the batch ends: what is left goes out, full */
  finish(b, g_batches[0], T + 101 * MS);
  CHECK(g_nbatches == 2 && members(g_batches[1]) == 2);
  while (g_nbatches > 0 && bh_batcher_busy(b, 0)) {
    int k = g_nbatches - 1;
    finish(b, g_batches[k], g_now + 5 * MS);
    if (g_nbatches == k + 1)
      break;
  }
  CHECK(bh_batcher_queued(b, 0) == 0);
  done(b);
  g_nanswers = 0;
  printf("shed ok\n");
}

static void test_growth(void) {
  /* A simulated Python taking 5 ms + 0.2 ms per item; constant arrival rates. */
  double mean[3];
  uint64_t gaps[3] = {20 * MS, 2 * MS, MS / 2};
  for (int g = 0; g < 3; g++) {
    bh_batcher_t *b = setup(64, 1.0, 1);
    uint64_t next_arrival = 0, busy_end = 0;
    int arrivals = 0, served = 0, nb = 0;
    bh_req_t *inflight = NULL;
    int seen_batches = 0;
    while (arrivals < 2000 || inflight != NULL || bh_batcher_queued(b, 0) > 0) {
      uint64_t dl = bh_batcher_deadline(b, 0);
      uint64_t t = UINT64_MAX;
      if (arrivals < 2000)
        t = next_arrival;
      if (inflight && busy_end < t)
        t = busy_end;
      if (dl && dl < t)
        t = dl;
      CHECK(t != UINT64_MAX);
      g_now = t;
      if (inflight && busy_end == t) {
        bh_req_t *h = inflight;
        inflight = NULL;
        served += members(h);
        finish(b, h, t);
        g_nanswers = 0;
      } else if (arrivals < 2000 && next_arrival == t) {
        enqueue(b, mkreq("[1]", t), t);
        arrivals++;
        next_arrival += gaps[g];
      } else {
        bh_batcher_tick_at(b, t);
      }
      if (g_nbatches > seen_batches) {
        CHECK(inflight == NULL && g_nbatches == seen_batches + 1);
        inflight = g_batches[seen_batches++];
        busy_end = g_now + 5 * MS + (uint64_t)members(inflight) * MS / 5;
        nb++;
      }
    }
    mean[g] = (double)served / nb;
    printf("gap %.2f ms: %d batches, mean size %.1f, %d shed, model a=%.1f ms b=%.2f ms\n",
           gaps[g] / 1e6, nb, mean[g], g_nrejected, bh_batcher_predict(b, 0, 0) * 1e3,
           (bh_batcher_predict(b, 0, 1) - bh_batcher_predict(b, 0, 0)) * 1e3);
    CHECK(g_nrejected == 0 && served == 2000);
    done(b);
  }
  CHECK(mean[0] < 1.5 && mean[1] > 2 && mean[2] > mean[1] * 2);
  printf("growth under load ok\n");
}

static void test_split(void) {
  bh_batcher_t *b = setup(3, 5.0, 0);
  const char *body = "{\"pre\": \"[x]\", \"xs\": [1, \"a,]\\\"\", [2, 3], {\"k\": \"]\"}, 5, 6, 7], \"post\": [0]}";
  bh_req_t *p = mkreq(body, 0);
  enqueue(b, p, 0);
  CHECK(p->items == 7 && g_nbatches == 1 && members(g_batches[0]) == 1);
  bh_req_t *c = g_batches[0];
  CHECK(c->split_parent == p && c->items == 3);
  CHECK(strcmp(c->body, "{\"pre\": \"[x]\", \"xs\": [1, \"a,]\\\"\", [2, 3]], \"post\": [0]}") == 0);
  enqueue(b, mkreq("{\"xs\": [8]}", MS), MS);
  finish(b, c, 2 * MS);
  CHECK(g_nbatches == 2 && g_batches[1]->items == 3 && g_nanswers == 0);
  finish(b, g_batches[1], 3 * MS);
  /* the last part of the parent shares a batch with the next request */
  CHECK(g_nbatches == 3 && members(g_batches[2]) == 2);
  CHECK(g_batches[2]->items == 1 && g_batches[2]->batch_next->items == 1);
  finish(b, g_batches[2], 4 * MS);
  CHECK(g_nanswers == 2);
  CHECK(g_answered[0] == p && g_answer_status[0] == 200);
  CHECK(strcmp(g_answers[0], "[1, \"a,]\\\"\", [2, 3],{\"k\": \"]\"}, 5, 6,7]") == 0);
  CHECK(strcmp(g_answers[1], "[8]") == 0);
  g_nanswers = 0;

  /* a failing part fails the parent, and the rest of it is not run */
  bh_req_t *f = mkreq("{\"xs\": [1, 2, 3, 4, 5, 6, 7], \"fail\": 1}", 10 * MS);
  enqueue(b, f, 10 * MS);
  CHECK(g_nbatches == 4);
  finish(b, g_batches[3], 11 * MS);
  CHECK(g_nanswers == 1 && g_answered[0] == f && g_answer_status[0] == 500);
  CHECK(g_nbatches == 4 && bh_batcher_queued(b, 0) == 0);
  done(b);
  g_nanswers = 0;
  printf("split and join ok\n");
}

static void test_max_one(void) {
  bh_batcher_t *b = setup(1, 1.0, 1);
  bh_req_t *p = mkreq("[\"a\", \"b\", \"c\"]", 0);
  enqueue(b, p, 0);
  enqueue(b, mkreq("[\"d\"]", 0), 0);
  for (int i = 0; i < 4; i++) {
    CHECK(g_nbatches == i + 1 && members(g_batches[i]) == 1 && g_batches[i]->items == 1);
    finish(b, g_batches[i], (uint64_t)(i + 1) * MS);
  }
  CHECK(g_nanswers == 2 && g_answered[0] == p && strcmp(g_answers[0], "[\"a\",\"b\",\"c\"]") == 0);
  CHECK(strcmp(g_answers[1], "[\"d\"]") == 0);
  done(b);
  g_nanswers = 0;
  printf("max_batch_size=1 ok\n");
}

static void test_ring_full(void) {
  bh_batcher_t *b = setup(2, 1.0, 1);
  g_ring_full = 1;
  enqueue(b, mkreq("[1,2,3]", 0), 0);
  CHECK(g_nrejected == 1 && g_reject_status[0] == 503 && g_nbatches == 0);
  CHECK(bh_batcher_queued(b, 0) == 0 && !bh_batcher_busy(b, 0));
  g_ring_full = 0;
  enqueue(b, mkreq("[1]", MS), MS);
  CHECK(g_nbatches == 1);
  finish(b, g_batches[0], 2 * MS);
  done(b);
  g_nanswers = 0;
  printf("ring full ok\n");
}

int main(void) {
  test_json();
  test_dispatch_when_full();
  test_hold_then_bound();
  test_sequential_caller_not_held();
  test_shed();
  test_growth();
  test_split();
  test_max_one();
  test_ring_full();
  printf("OK\n");
  return 0;
}
