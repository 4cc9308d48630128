/* A batch's numeric input as one array, decoded on the I/O thread (see rows.h).
 * Every loop here walks a member's body once, forwards only, so a hostile body
 * costs its length and no more. */
#include "traffic/rows.h"
#include "traffic/internal.h"
#include "common/decimal.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TOKEN 64      /* longer numbers are Python's (none of ours need it) */
#define MAX_INT_DIGITS 18 /* beyond: Python's int, converted by numpy, is the reference */
#define MAX_NPY_HEADER 4096 /* np.save writes ~128 bytes; a longer one is Python's to read */

/* ---------------------------------------------------------------- numbers */

/* A JSON number as read in one pass: its significant digits (w holds them
 * while there are at most 19) and the power of ten they are scaled by. */
typedef struct json_num {
  uint64_t w;
  int digits;   /* significant digits (leading zeros excluded) */
  int e;        /* the value is w * 10**e; saturated far beyond any double */
  int neg;
  int integral; /* no fraction, no exponent */
} json_num_t;

static const uint64_t POW10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/* How many of the 8 bytes at s (the first in the lowest byte) are digits before the
 * first that is not, and in *value the number those digits make. */
static unsigned eight_digits(const char *s, uint64_t *value) {
  uint64_t v;
  memcpy(&v, s, 8);
  uint64_t x = v ^ UINT64_C(0x3030303030303030); /* a digit byte becomes 0..9 */
  uint64_t not_digit = (x & UINT64_C(0xF0F0F0F0F0F0F0F0)) |
                       (((x & UINT64_C(0x0F0F0F0F0F0F0F0F)) + UINT64_C(0x0606060606060606)) &
                        UINT64_C(0x1010101010101010));
  unsigned k = not_digit ? (unsigned)__builtin_ctzll(not_digit) / 8 : 8;
  *value = 0;
  if (k == 0)
    return 0;
  /* the k digits moved to the top bytes, zeros before them, then summed pairwise */
  x = (k < 8 ? x & ((UINT64_C(1) << (8 * k)) - 1) : x) << (8 * (8 - k));
  x = x * 10 + (x >> 8);
  x = (((x & UINT64_C(0x000000FF000000FF)) * (100 + (UINT64_C(1000000) << 32))) +
       (((x >> 16) & UINT64_C(0x000000FF000000FF)) * (1 + (UINT64_C(10000) << 32)))) >>
      32;
  *value = x & 0xFFFFFFFF;
  return k;
}

/* The digits from s[i] on, while they last, into x (past 19 significant ones
 * only their place counts); returns the index after them. Once a significant
 * digit is in, they are taken eight bytes at a time while 19 digits hold them. */
static size_t read_digits(const char *s, size_t i, size_t len, json_num_t *x, int after_point) {
  uint64_t w = x->w, chunk = 0;
  int digits = x->digits, e = x->e;

  for (;;) {
    if (w != 0 && digits <= 19 - 8 && len - i >= 8) {
      unsigned k = eight_digits(s + i, &chunk);
      w = w * POW10[k] + chunk;
      digits += (int)k;
      e -= after_point ? (int)k : 0;
      i += k;
      if (k == 8)
        continue;
      break; /* the byte after them is not a digit */
    }
    if (i >= len)
      break;
    unsigned d = (unsigned)(unsigned char)s[i] - '0';
    if (d > 9)
      break;
    if (digits < 19) {
      w = w * 10 + d;
      digits += w != 0; /* leading zeros are not significant */
      e -= after_point;
    } else {
      digits++;
      e += !after_point;
    }
    i++;
  }
  x->w = w;
  x->digits = digits;
  x->e = e;
  return i;
}

/* The JSON number that starts s[0..len), read into *x; returns its length, 0
 * when s does not start with one (the caller checks what follows it). */
static size_t json_number(const char *s, size_t len, json_num_t *x) {
  size_t i = 0, j;
  memset(x, 0, sizeof(*x));
  x->integral = 1;
  if (i < len && s[i] == '-') {
    x->neg = 1;
    i++;
  }
  if (i >= len)
    return 0;
  if (s[i] == '0')
    i++;
  else if (s[i] >= '1' && s[i] <= '9')
    i = read_digits(s, i, len, x, 0);
  else
    return 0;
  if (i < len && s[i] == '.') {
    x->integral = 0;
    j = read_digits(s, i + 1, len, x, 1);
    if (j == i + 1)
      return 0;
    i = j;
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    int eneg = 0, v = 0;
    x->integral = 0;
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-'))
      eneg = s[i++] == '-';
    for (j = i; i < len && s[i] >= '0' && s[i] <= '9'; i++)
      if (v < 100000)
        v = v * 10 + (s[i] - '0');
    if (i == j)
      return 0;
    x->e += eneg ? -v : v;
  }
  return i;
}

static locale_t c_loc;

static void make_c_locale(void) {
  c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* Made once: the I/O thread and Python threads (python/json_rows.c) read numbers. */
static locale_t c_locale(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_c_locale);
  return c_loc;
}

static int store_integer(const bh_api_t *api, const json_num_t *num, void *out) {
  int neg = num->neg;
  if (num->digits > MAX_INT_DIGITS)
    return -EINVAL;
  uint64_t v = num->w;
  if (api->rows_kind == 'u') {
    if (neg && v != 0)
      return -EINVAL; /* numpy refuses a negative Python int for an unsigned dtype */
    uint64_t max = api->rows_size == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * api->rows_size)) - 1;
    if (v > max)
      return -EINVAL;
    switch (api->rows_size) {
    case 1: *(uint8_t *)out = (uint8_t)v; return 0;
    case 2: *(uint16_t *)out = (uint16_t)v; return 0;
    case 4: *(uint32_t *)out = (uint32_t)v; return 0;
    default: *(uint64_t *)out = v; return 0;
    }
  }
  int64_t max = api->rows_size == 8 ? INT64_MAX : (INT64_C(1) << (8 * api->rows_size - 1)) - 1;
  if (v > (uint64_t)max + (uint64_t)neg)
    return -EINVAL;
  int64_t x = neg ? (int64_t)(0 - v) : (int64_t)v;
  switch (api->rows_size) {
  case 1: *(int8_t *)out = (int8_t)x; return 0;
  case 2: *(int16_t *)out = (int16_t)x; return 0;
  case 4: *(int32_t *)out = (int32_t)x; return 0;
  default: *(int64_t *)out = x; return 0;
  }
}

/* The number x, whose text is s[0..len), as the API's dtype into out. */
static int store_number(const bh_api_t *api, const json_num_t *x, const char *s, size_t len, void *out) {
  char tok[MAX_TOKEN + 1];
  if (len > MAX_TOKEN)
    return -EINVAL;
  if (api->rows_kind != 'f')
    return x->integral ? store_integer(api, x, out) : -EINVAL;
  /* Python's float() of the text, then numpy's cast: strtod is correctly rounded
   * the same way, overflow to infinity and underflow to zero included. */
  if (x->integral && x->digits > MAX_INT_DIGITS)
    return -EINVAL; /* a long integer: Python converts its exact int */
  double d;
  if (x->digits <= 19 && bh_decimal_to_double(x->w, x->e, &d) == 0) {
    if (x->neg)
      d = -d;
  } else {
    memcpy(tok, s, len);
    tok[len] = '\0';
    locale_t c = c_locale();
    /* without a C locale object (out of memory), the process's: Python never sets LC_NUMERIC */
    d = c != (locale_t)0 ? strtod_l(tok, NULL, c) : strtod(tok, NULL);
  }
  if (x->integral && d == 0)
    d = 0.0; /* json reads "-0" as the int 0, which has no sign */
  if (api->rows_size == 4)
    *(float *)out = (float)d;
  else
    *(double *)out = d;
  return 0;
}

int bh_rows_number(const bh_api_t *api, const char *s, size_t len, void *out) {
  json_num_t x;
  if (len == 0 || json_number(s, len, &x) != len)
    return -EINVAL;
  return store_number(api, &x, s, len, out); /* which refuses a token too long */
}

/* ---------------------------------------------------------------- members */

typedef struct acc {
  const bh_api_t *api;
  char *data;
  size_t len, cap;
  int ndim;                        /* -1: no member yet */
  int64_t trailing[BH_ROWS_MAX_DIMS];
} acc_t;

static int reserve(acc_t *a, size_t more) {
  if (a->cap - a->len >= more)
    return 0;
  size_t cap = a->cap ? a->cap : 4096;
  while (cap - a->len < more)
    cap *= 2;
  char *d = realloc(a->data, cap);
  if (d == NULL)
    return -ENOMEM;
  a->data = d;
  a->cap = cap;
  return 0;
}

/* A member of `elems` values now at the end of a->data, whose own shape is dims[0..ndim):
 * under a declared Shape it is reshaped as numpy would; its rows in *rows. */
static int add_member(acc_t *a, const int64_t *dims, int ndim, size_t elems, uint32_t *rows) {
  const bh_api_t *api = a->api;
  int64_t own[BH_ROWS_MAX_DIMS];
  if (api->rows_nshape > 0) {
    int64_t per = 1;
    for (int k = 1; k < api->rows_nshape; k++)
      per *= api->rows_shape[k];
    if (per <= 0 || elems % (size_t)per != 0)
      return -EINVAL;
    int64_t n = (int64_t)(elems / (size_t)per);
    if (api->rows_shape[0] >= 0 && n != api->rows_shape[0])
      return -EINVAL;
    own[0] = n;
    for (int k = 1; k < api->rows_nshape; k++)
      own[k] = api->rows_shape[k];
    ndim = api->rows_nshape;
  } else {
    if (ndim < 1)
      return -EINVAL;
    memcpy(own, dims, sizeof(int64_t) * (size_t)ndim);
  }
  if (own[0] > UINT32_MAX)
    return -EINVAL;
  if (a->ndim < 0) {
    a->ndim = ndim;
    memcpy(a->trailing, own + 1, sizeof(int64_t) * (size_t)(ndim - 1));
  } else if (a->ndim != ndim || memcmp(a->trailing, own + 1, sizeof(int64_t) * (size_t)(ndim - 1)) != 0) {
    return -EINVAL; /* np.concatenate would refuse it: Python says so */
  }
  *rows = (uint32_t)own[0];
  return 0;
}

static size_t skip_ws(const char *s, size_t i, size_t n) {
  if (i < n && (unsigned char)s[i] > ' ')
    return i; /* no whitespace: the common case, without a call */
  return bh_json_skip_ws(s, i, n);
}

/* A rectangular nested JSON array of numbers at s[i] == '['; *end past it. */
static int parse_array(acc_t *a, const char *s, size_t i, size_t n, size_t *end, int64_t *dims, int *ndim,
                       size_t *elems) {
  int64_t count[BH_ROWS_MAX_DIMS];
  int known[BH_ROWS_MAX_DIMS] = {0}, depth = 0, leaf = -1;
  size_t size = (size_t)a->api->rows_size;

  *elems = 0;
  for (;;) { /* at an opening bracket */
    if (depth == BH_ROWS_MAX_DIMS || (leaf >= 0 && depth >= leaf))
      return -EINVAL;
    count[depth++] = 0;
    i = skip_ws(s, i + 1, n);
    for (;;) { /* at a value */
      if (i >= n)
        return -EINVAL;
      if (s[i] == '[')
        break;
      if (s[i] == ']')
        return -EINVAL; /* empty, or a trailing comma: numpy's shapes are Python's call */
      json_num_t x;
      size_t t = i + json_number(s + i, n - i, &x);
      /* a number is followed by the end of its array, a comma or whitespace: what
       * would be more of its token ("1x", "01", "1.5.2") is not JSON */
      if (t == i || (t < n && s[t] != ',' && s[t] != ']' && skip_ws(s, t, n) == t))
        return -EINVAL;
      if (leaf < 0)
        leaf = depth;
      if (depth != leaf || reserve(a, size) != 0)
        return -EINVAL;
      if (store_number(a->api, &x, s + i, t - i, a->data + a->len) != 0)
        return -EINVAL;
      a->len += size;
      (*elems)++;
      count[depth - 1]++;
      i = skip_ws(s, t, n);
      /* after a value: more of this array, or the end of one or more arrays */
      while (i < n && s[i] == ']') {
        int d = depth - 1;
        if (known[d] && dims[d] != count[d])
          return -EINVAL;
        dims[d] = count[d];
        known[d] = 1;
        if (--depth == 0) {
          *end = i + 1;
          *ndim = leaf;
          return 0;
        }
        count[depth - 1]++;
        i = skip_ws(s, i + 1, n);
      }
      if (i >= n || s[i] != ',')
        return -EINVAL;
      i = skip_ws(s, i + 1, n);
    }
  }
}

/* {"field": [...]} (nothing else) or the bare array: the member's array. */
static int json_member(acc_t *a, const bh_req_t *m, uint32_t *rows) {
  const char *s = m->body;
  size_t n = m->body_len, i = skip_ws(s, 0, n), end = 0, elems = 0;
  const bh_api_t *api = a->api;
  int64_t dims[BH_ROWS_MAX_DIMS];
  int ndim = 0;

  if (!api->batch_root) {
    size_t flen = api->batch_field ? strlen(api->batch_field) : 0;
    if (flen == 0 || i >= n || s[i] != '{')
      return -EINVAL;
    i = skip_ws(s, i + 1, n);
    if (n - i < flen + 2 || s[i] != '"' || memcmp(s + i + 1, api->batch_field, flen) != 0 || s[i + 1 + flen] != '"')
      return -EINVAL;
    i = skip_ws(s, i + flen + 2, n);
    if (i >= n || s[i] != ':')
      return -EINVAL;
    i = skip_ws(s, i + 1, n);
  }
  if (i >= n || s[i] != '[')
    return -EINVAL;
  size_t before = a->len;
  int err = parse_array(a, s, i, n, &end, dims, &ndim, &elems);
  if (err != 0) {
    a->len = before;
    return err;
  }
  i = skip_ws(s, end, n);
  if (!api->batch_root) {
    if (i >= n || s[i] != '}')
      return -EINVAL;
    i = skip_ws(s, i + 1, n);
  }
  if (i != n)
    return -EINVAL;
  return add_member(a, dims, ndim, elems, rows);
}

static int is_npy(const bh_req_t *m) {
  return bh_media_type_is(m->content_type, "application/x-npy") ||
         (m->body_len >= 6 && memcmp(m->body, "\x93NUMPY", 6) == 0);
}

/* The dtype's .npy descr: "<f4", "|u1". */
static void descr_of(const bh_api_t *api, char out[8]) {
  out[0] = api->rows_size == 1 ? '|' : '<';
  out[1] = api->rows_kind;
  out[2] = (char)('0' + api->rows_size);
  out[3] = '\0';
}

/* np.save's header: its data offset and its shape; -EINVAL for anything else
 * (another dtype, Fortran order, a header this scanner does not read). */
static int npy_header(const bh_api_t *api, const char *s, size_t n, size_t *data, int64_t *dims, int *ndim) {
  size_t hlen, at;
  if (n < 10 || memcmp(s, "\x93NUMPY", 6) != 0)
    return -EINVAL;
  if (s[6] == 1) {
    hlen = (unsigned char)s[8] | (size_t)(unsigned char)s[9] << 8;
    at = 10;
  } else if ((s[6] == 2 || s[6] == 3) && n >= 12) {
    hlen = (unsigned char)s[8] | (size_t)(unsigned char)s[9] << 8 | (size_t)(unsigned char)s[10] << 16 |
           (size_t)(unsigned char)s[11] << 24;
    at = 12;
  } else {
    return -EINVAL;
  }
  if (hlen > n - at || hlen > MAX_NPY_HEADER)
    return -EINVAL;
  char h[MAX_NPY_HEADER + 1], want[8], descr[32];
  memcpy(h, s + at, hlen);
  h[hlen] = '\0';
  descr_of(api, want);
  snprintf(descr, sizeof(descr), "'descr': '%s'", want);
  const char *shape = strstr(h, "'shape': (");
  if (strstr(h, descr) == NULL || strstr(h, "'fortran_order': False") == NULL || shape == NULL)
    return -EINVAL;
  const char *p = shape + strlen("'shape': (");
  *ndim = 0;
  while (*p != ')') {
    char *next;
    while (*p == ' ' || *p == ',')
      p++;
    if (*p == ')')
      break;
    long long d = strtoll(p, &next, 10);
    if (next == p || d < 0 || *ndim == BH_ROWS_MAX_DIMS)
      return -EINVAL;
    dims[(*ndim)++] = d;
    p = next;
  }
  *data = at + hlen;
  return 0;
}

/* A binary member's data offset, element count and own shape: 0, or -EINVAL
 * when it is not one the API's dtype reads. */
static int binary_layout(const bh_api_t *api, const bh_req_t *m, size_t *off, size_t *elems, int64_t *dims,
                         int *ndim) {
  size_t size = (size_t)api->rows_size;
  *off = 0;
  *ndim = 1;
  if (!is_npy(m)) {
    if (m->body_len % size != 0)
      return -EINVAL;
    *elems = m->body_len / size;
    dims[0] = (int64_t)*elems;
    return 0;
  }
  if (npy_header(api, m->body, m->body_len, off, dims, ndim) != 0)
    return -EINVAL;
  *elems = 1;
  for (int k = 0; k < *ndim; k++) {
    if (dims[k] != 0 && *elems > SIZE_MAX / size / (size_t)dims[k])
      return -EINVAL;
    *elems *= (size_t)dims[k];
  }
  /* numpy's frombuffer refuses a short one */
  return *elems * size <= m->body_len - *off ? 0 : -EINVAL;
}

static int binary_member(acc_t *a, const bh_req_t *m, uint32_t *rows) {
  size_t size = (size_t)a->api->rows_size, off, elems;
  int64_t dims[BH_ROWS_MAX_DIMS];
  int ndim;
  if (binary_layout(a->api, m, &off, &elems, dims, &ndim) != 0)
    return -EINVAL;
  if (reserve(a, elems * size) != 0)
    return -ENOMEM;
  memcpy(a->data + a->len, m->body + off, elems * size);
  a->len += elems * size;
  return add_member(a, dims, ndim, elems, rows);
}

uint32_t bh_rows_count_binary(const bh_api_t *api, const bh_req_t *req) {
  size_t off, elems;
  int64_t dims[BH_ROWS_MAX_DIMS];
  int ndim;
  if (api->rows_kind == 0 || req->body == NULL ||
      !(is_npy(req) || bh_media_type_is(req->content_type, "application/octet-stream")) ||
      binary_layout(api, req, &off, &elems, dims, &ndim) != 0 || ndim < 1)
    return 0;
  if (api->rows_nshape > 0) {
    int64_t per = 1;
    for (int k = 1; k < api->rows_nshape; k++)
      per *= api->rows_shape[k];
    return per > 0 && elems / (size_t)per <= UINT32_MAX ? (uint32_t)(elems / (size_t)per) : 0;
  }
  return dims[0] > 0 && dims[0] <= UINT32_MAX ? (uint32_t)dims[0] : 0;
}

/* ---------------------------------------------------------------- the batch */

int bh_rows_build(const bh_api_t *api, bh_req_t *first, bh_rows_t *out) {
  acc_t a = {.api = api, .ndim = -1};
  size_t n = 0;
  int err = 0;

  memset(out, 0, sizeof(*out));
  if (api->rows_kind == 0)
    return -EINVAL;
  for (bh_req_t *m = first; m != NULL; m = m->batch_next)
    n++;
  if ((out->counts = malloc(n * sizeof(uint32_t))) == NULL)
    return -ENOMEM;
  uint64_t total = 0;
  size_t k = 0;
  for (bh_req_t *m = first; m != NULL && err == 0; m = m->batch_next, k++) {
    if (m->body == NULL || m->nparts > 0)
      err = -EINVAL;
    else if (m->content_type == NULL || bh_media_type_is(m->content_type, "application/json"))
      err = json_member(&a, m, &out->counts[k]);
    else if (is_npy(m) || bh_media_type_is(m->content_type, "application/octet-stream"))
      err = binary_member(&a, m, &out->counts[k]);
    else
      err = -EINVAL;
    if (err == 0)
      total += out->counts[k];
  }
  if (err != 0 || a.ndim < 1) {
    free(a.data);
    free(out->counts);
    memset(out, 0, sizeof(*out));
    return err != 0 ? err : -EINVAL;
  }
  out->data = a.data;
  out->len = a.len;
  out->ndim = a.ndim;
  out->shape[0] = (int64_t)total;
  memcpy(out->shape + 1, a.trailing, sizeof(int64_t) * (size_t)(a.ndim - 1));
  out->nmembers = n;
  return 0;
}
