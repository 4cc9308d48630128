/* Python-compatible float formatting (see common/fmt.h). */
#include "common/fmt.h"
#include "common/shortest.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char DIGIT_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Two digits of v < 100 at p. */
static inline void put_pair(char *p, unsigned v) {
  memcpy(p, DIGIT_PAIRS + 2 * v, 2);
}

/* The digits of v < 10**8, exactly n of them (zeros in front), ending at end. */
static inline void put_low8(char *end, uint32_t v, int n) {
  for (; n >= 2; n -= 2) {
    end -= 2;
    put_pair(end, v % 100);
    v /= 100;
  }
  if (n == 1)
    end[-1] = (char)('0' + v);
}

/* The digits of d, most significant first; returns how many. The two halves
 * of eight digits are independent chains of divisions. */
static int put_digits(char out[20], uint64_t d) {
  static const uint64_t powers[20] = {
      1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
      10000000000u, 100000000000u, 1000000000000u, 10000000000000u, 100000000000000u,
      1000000000000000u, 10000000000000000u, 100000000000000000u, 1000000000000000000u,
      10000000000000000000u};
  int n = 1;
  while (n < 20 && d >= powers[n])
    n++;
  if (n <= 8) {
    put_low8(out + n, (uint32_t)d, n);
  } else if (n <= 16) {
    put_low8(out + n, (uint32_t)(d % 100000000u), 8);
    put_low8(out + n - 8, (uint32_t)(d / 100000000u), n - 8);
  } else {
    uint64_t high = d / 100000000u;
    put_low8(out + n, (uint32_t)(d % 100000000u), 8);
    put_low8(out + n - 8, (uint32_t)(high % 100000000u), 8);
    put_low8(out + n - 16, (uint32_t)(high / 100000000u), n - 16);
  }
  return n;
}

char *bh_put_py_float(char *p, double v) {
  char digits[20];
  int n, point;

  if (signbit(v)) {
    *p++ = '-';
    v = -v;
  }
  if (v == 0) {
    memcpy(p, "0.0", 3);
    return p + 3;
  }
  bh_decimal_t dec = bh_shortest(v);
  n = put_digits(digits, dec.digits);
  point = n + dec.exp10; /* the value is 0.<digits> * 10**point */
  if (point <= -4 || point > 16) {
    int e = point - 1;
    *p++ = digits[0];
    if (n > 1) {
      *p++ = '.';
      memcpy(p, digits + 1, (size_t)n - 1);
      p += n - 1;
    }
    *p++ = 'e';
    *p++ = e < 0 ? '-' : '+';
    if (e < 0)
      e = -e;
    if (e >= 100)
      *p++ = (char)('0' + e / 100);
    *p++ = (char)('0' + e / 10 % 10);
    *p++ = (char)('0' + e % 10);
    return p;
  }
  if (point <= 0) {
    *p++ = '0';
    *p++ = '.';
    memset(p, '0', (size_t)-point);
    p += -point;
    memcpy(p, digits, (size_t)n);
    return p + n;
  }
  if (point < n) {
    memcpy(p, digits, (size_t)point);
    p += point;
    *p++ = '.';
    memcpy(p, digits + point, (size_t)(n - point));
    return p + (n - point);
  }
  memcpy(p, digits, (size_t)n);
  p += n;
  memset(p, '0', (size_t)(point - n));
  p += point - n;
  memcpy(p, ".0", 2);
  return p + 2;
}

void bh_py_float(double v, char *out, size_t cap) {
  char text[BH_PY_FLOAT_MAX + 1];

  if (!isfinite(v)) {
    snprintf(out, cap, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    return;
  }
  *bh_put_py_float(text, v) = '\0';
  snprintf(out, cap, "%s", text);
}
