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

/* How many digits d has: from its bit length, then one comparison. */
static inline int count_digits(uint64_t d) {
  static const uint64_t powers[20] = {
      1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
      10000000000u, 100000000000u, 1000000000000u, 10000000000000u, 100000000000000u,
      1000000000000000u, 10000000000000000u, 100000000000000000u, 1000000000000000000u,
      10000000000000000000u};
  int bits = 64 - __builtin_clzll(d | 1);
  int n = (bits * 1233) >> 12; /* floor(bits * log10(2)): n or n + 1 digits */
  return n + (n < 20 && d >= powers[n]);
}

/* The n digits of d at p, most significant first. The halves of eight digits
 * are independent chains of divisions. */
static void put_digits(char *p, uint64_t d, int n) {
  if (n <= 8) {
    put_low8(p + n, (uint32_t)d, n);
  } else if (n <= 16) {
    put_low8(p + n, (uint32_t)(d % 100000000u), 8);
    put_low8(p + n - 8, (uint32_t)(d / 100000000u), n - 8);
  } else {
    uint64_t high = d / 100000000u;
    put_low8(p + n, (uint32_t)(d % 100000000u), 8);
    put_low8(p + n - 8, (uint32_t)(high % 100000000u), 8);
    put_low8(p + n - 16, (uint32_t)(high / 100000000u), n - 16);
  }
}

/* The digits are written where they end up, shifted by one where a point
 * goes among them. */
char *bh_put_py_float(char *p, double v) {
  if (signbit(v)) {
    *p++ = '-';
    v = -v;
  }
  if (v == 0) {
    memcpy(p, "0.0", 3);
    return p + 3;
  }
  bh_decimal_t dec = bh_shortest(v);
  int n = count_digits(dec.digits);
  int point = n + dec.exp10; /* the value is 0.<digits> * 10**point */
  if (point <= -4 || point > 16) {
    int e = point - 1;
    put_digits(p + 1, dec.digits, n);
    p[0] = p[1];
    if (n > 1) {
      p[1] = '.';
      p += n + 1;
    } else {
      p += 1;
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
    memcpy(p, "0.000", 2 + (size_t)-point);
    p += 2 - point;
    put_digits(p, dec.digits, n);
    return p + n;
  }
  if (point < n) {
    put_digits(p + 1, dec.digits, n);
    memmove(p, p + 1, (size_t)point);
    p[point] = '.';
    return p + n + 1;
  }
  put_digits(p, dec.digits, n);
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
