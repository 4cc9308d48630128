/* The batch-input decoder (traffic/rows.c). `test_rows number DTYPE TOKEN...`
 * prints each token as the dtype's bytes in hex, or ERR where C leaves the batch
 * to Python (tests/test_batch_rows.py compares them with Python's json and
 * numpy); `test_rows` alone runs the checks below and prints OK. */
#include "traffic/rows.h"
#include "check.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bh_api_t api_of(const char *dtype) {
  bh_api_t api;
  memset(&api, 0, sizeof(api));
  api.rows_kind = dtype[0] == 'f' ? 'f' : dtype[0] == 'u' ? 'u' : 'i';
  api.rows_size = atoi(dtype + (dtype[0] == 'u' ? 4 : dtype[0] == 'f' ? 5 : 3)) / 8;
  api.batch_field = "x";
  return api;
}

static bh_req_t *member(const char *ctype, const void *body, size_t len, bh_req_t *prev);
static void free_members(bh_req_t *m);

/* The token read as an element of arrays ({"x": [TOKEN]} and [[TOKEN, TOKEN]] with
 * whitespace) must give what it gives alone: MISMATCH where it does not. */
static int array_agrees(const bh_api_t *one, const char *token, int alone_ok, const unsigned char *alone) {
  static const char *const forms[] = {"{\"x\": [%s]}", "{\"x\":[[%s,\n\t%s ]]}"};
  bh_api_t api = *one;
  char body[256];
  if (strpbrk(token, ",[]{}\" \t\r\n") != NULL || strlen(token) > 64)
    return 1; /* its own delimiters: another array */
  for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
    bh_rows_t rows;
    snprintf(body, sizeof(body), forms[f], token, token);
    bh_req_t *m = member("application/json", body, strlen(body), NULL);
    int rc = bh_rows_build(&api, m, &rows);
    free_members(m);
    if ((rc == 0) != alone_ok)
      return 0;
    if (rc != 0)
      continue;
    int ok = rows.len == (f + 1) * (size_t)api.rows_size;
    for (size_t k = 0; ok && k <= f; k++)
      ok = memcmp(rows.data + k * (size_t)api.rows_size, alone, (size_t)api.rows_size) == 0;
    free(rows.data);
    free(rows.counts);
    if (!ok)
      return 0;
  }
  return 1;
}

static int numbers(int argc, char **argv) {
  bh_api_t api = api_of(argv[2]);
  for (int i = 3; i < argc; i++) {
    unsigned char out[8];
    int ok = bh_rows_number(&api, argv[i], strlen(argv[i]), out) == 0;
    if (!array_agrees(&api, argv[i], ok, out)) {
      printf("MISMATCH\n");
      continue;
    }
    if (!ok) {
      printf("ERR\n");
      continue;
    }
    for (int k = 0; k < api.rows_size; k++)
      printf("%02x", out[k]);
    printf("\n");
  }
  return 0;
}

static bh_req_t *member(const char *ctype, const void *body, size_t len, bh_req_t *prev) {
  bh_req_t *r = calloc(1, sizeof(*r));
  CHECK(r != NULL);
  r->body = malloc(len + 1);
  memcpy(r->body, body, len);
  r->body_len = len;
  r->content_type = ctype ? strdup(ctype) : NULL;
  if (prev != NULL)
    prev->batch_next = r;
  return r;
}

static void free_members(bh_req_t *m) {
  while (m != NULL) {
    bh_req_t *next = m->batch_next;
    free(m->body);
    free(m->content_type);
    free(m);
    m = next;
  }
}

static void expect_floats(const bh_rows_t *rows, const float *want, size_t n) {
  CHECK(rows->len == n * sizeof(float));
  CHECK(memcmp(rows->data, want, rows->len) == 0);
}

static void release(bh_rows_t *rows) {
  free(rows->data);
  free(rows->counts);
}

static void check_json_and_binary(void) {
  bh_api_t api = api_of("float32");
  bh_rows_t rows;
  const char *a = "{\"x\": [[1, 2.5, -0]]}", *b = " {\"x\":[[3,4,5e0],\n [6, 7, 8]]} ";
  bh_req_t *first = member("application/json", a, strlen(a), NULL);
  bh_req_t *second = member(NULL, b, strlen(b), first);
  float raw[3] = {9, 10, 11};
  member("application/octet-stream", raw, sizeof(raw), second);
  api.rows_nshape = 2; /* Shape((-1, 3)): the raw member is one row */
  api.rows_shape[0] = -1;
  api.rows_shape[1] = 3;
  CHECK(bh_rows_build(&api, first, &rows) == 0);
  float want[] = {1, 2.5f, 0.0f, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  expect_floats(&rows, want, 12);
  CHECK(rows.ndim == 2 && rows.shape[0] == 4 && rows.shape[1] == 3);
  CHECK(rows.nmembers == 3 && rows.counts[0] == 1 && rows.counts[1] == 2 && rows.counts[2] == 1);
  release(&rows);
  free_members(first);

  /* no Shape: the raw member is 1-D, the JSON ones 2-D: not one array */
  api.rows_nshape = 0;
  first = member(NULL, a, strlen(a), NULL);
  member("application/octet-stream", raw, sizeof(raw), first);
  CHECK(bh_rows_build(&api, first, &rows) == -EINVAL);
  free_members(first);

  /* a .npy member (np.save of float32 [[9, 10, 11]]) beside a JSON one */
  static const char npy_head[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }";
  char npy[10 + 0x76 + sizeof(raw)];
  memset(npy, ' ', sizeof(npy));
  memcpy(npy, npy_head, sizeof(npy_head) - 1);
  npy[10 + 0x76 - 1] = '\n';
  memcpy(npy + 10 + 0x76, raw, sizeof(raw));
  first = member(NULL, a, strlen(a), NULL);
  member("application/x-npy", npy, sizeof(npy), first);
  CHECK(bh_rows_build(&api, first, &rows) == 0);
  float want2[] = {1, 2.5f, 0.0f, 9, 10, 11};
  expect_floats(&rows, want2, 6);
  CHECK(rows.shape[0] == 2 && rows.counts[1] == 1);
  CHECK(bh_rows_count_binary(&api, first->batch_next) == 1);
  release(&rows);
  free_members(first);
}

/* Bodies Python must see: C declines every one of them. */
static void check_declined(void) {
  static const char *const bodies[] = {
      "{\"x\": [[1, 2], [3]]}",      /* ragged */
      "{\"x\": [[1, [2]], [3, 4]]}", /* mixed depths */
      "{\"x\": [[1, NaN]]}",         /* Python's json reads NaN: it decides */
      "{\"x\": [[1, 2]], \"y\": 1}", /* another key */
      "{\"x\": [[1, 2]],}",          /* broken JSON after the array */
      "{\"x\": [[1, 2,]]}",          /* a trailing comma */
      "{\"x\": []}",                 /* empty */
      "{\"x\": [[01]]}",             /* a leading zero */
      "{\"x\": [[1.]]}",             /* a bare point */
      "{\"x\": [[\"1\"]]}",          /* a string */
      "{\"x\": [[true]]}",           /* a bool */
      "{\"x\": 5}",                  /* not an array */
      "{\"x\": [[1e5]]",             /* cut short */
      "[[1, 2]]",                    /* the bare array, but the API names a field */
  };
  bh_api_t api = api_of("float32");
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    bh_rows_t rows;
    bh_req_t *m = member(NULL, bodies[i], strlen(bodies[i]), NULL);
    if (bh_rows_build(&api, m, &rows) != -EINVAL) {
      fprintf(stderr, "accepted: %s\n", bodies[i]);
      exit(1);
    }
    free_members(m);
  }
  /* a deep body is refused after BH_ROWS_MAX_DIMS levels, not followed to its end */
  char deep[4096];
  size_t n = 0;
  deep[n++] = '[';
  for (int i = 0; i < 2000; i++)
    deep[n++] = '[';
  api.batch_root = 1;
  bh_rows_t rows;
  bh_req_t *m = member(NULL, deep, n, NULL);
  CHECK(bh_rows_build(&api, m, &rows) == -EINVAL);
  free_members(m);
}

static void check_integers(void) {
  bh_api_t api = api_of("uint8");
  unsigned char v;
  CHECK(bh_rows_number(&api, "255", 3, &v) == 0 && v == 255);
  CHECK(bh_rows_number(&api, "256", 3, &v) == -EINVAL);
  CHECK(bh_rows_number(&api, "-1", 2, &v) == -EINVAL);
  CHECK(bh_rows_number(&api, "-0", 2, &v) == 0 && v == 0);
  CHECK(bh_rows_number(&api, "1.0", 3, &v) == -EINVAL);
  bh_api_t i64 = api_of("int64");
  int64_t x;
  CHECK(bh_rows_number(&i64, "-9223372036854775808", 20, &x) == -EINVAL); /* 19 digits: Python's */
  CHECK(bh_rows_number(&i64, "-922337203685477580", 19, &x) == 0 && x == -922337203685477580LL);
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "number") == 0)
    return numbers(argc, argv);
  check_json_and_binary();
  check_declined();
  check_integers();
  printf("OK\n");
  return 0;
}
