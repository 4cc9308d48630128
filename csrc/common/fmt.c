/* Python-compatible float formatting (see common/fmt.h). */
#include "common/fmt.h"
#include "common/shortest.h"
#include "common/text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
  n = (int)(bh_put_u64(digits, dec.digits) - digits);
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
