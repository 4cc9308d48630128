/* bh_decimal_to_double (common/decimal.c) against glibc's strtod, which rounds
 * correctly: decimals of 1 to 19 digits at every exponent a double has, the
 * 17-digit forms of random doubles, and 19-digit decimals within a hair of the
 * midpoint between two doubles (where the fast path must give up, not guess).
 *
 *   test_decimal COUNT SEED   COUNT decimals of each family */
#include "common/decimal.h"

#include "xorshift.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static double random_double(void) {
  double d;
  do {
    uint64_t bits = next_random() & ~(UINT64_C(1) << 63);
    memcpy(&d, &bits, sizeof(d));
  } while (!isfinite(d) || d == 0);
  return d;
}

/* text "ddd...e[+-]x" (digits, an optional point, an exponent) as w * 10**e;
 * -1 past 19 digits. */
static int split(const char *text, uint64_t *w, int *e) {
  int digits = 0, scale = 0;
  const char *s = text;
  *w = 0;
  for (; *s != '\0' && *s != 'e'; s++) {
    if (*s == '.') {
      scale = 1;
      continue;
    }
    if (digits == 19)
      return -1;
    *w = *w * 10 + (uint64_t)(*s - '0');
    digits++;
    *e -= scale;
  }
  if (*s == 'e')
    *e += atoi(s + 1);
  return 0;
}

int main(int argc, char **argv) {
  long count = argc > 1 ? atol(argv[1]) : 100000;
  if (argc > 2)
    xorshift_state = strtoull(argv[2], NULL, 10) | 1;
  long bad = 0, decided = 0, total = 0;
  char text[64];

  for (int family = 0; family < 4; family++) {
    for (long i = 0; i < count; i++) {
      uint64_t r = next_random();
      switch (family) {
      case 0: { /* 1 to 19 random digits, any exponent */
        int n = 1 + (int)(r % 19), k;
        for (k = 0; k < n; k++)
          text[k] = (char)('0' + next_random() % 10);
        if (text[0] == '0')
          text[0] = '1';
        snprintf(text + n, sizeof(text) - (size_t)n, "e%d", (int)(next_random() % 680) - 360);
        break;
      }
      case 1: /* a double's 17 significant digits */
        snprintf(text, sizeof(text), "%.16e", random_double());
        break;
      case 2: /* 16 digits: mostly not the same double */
        snprintf(text, sizeof(text), "%.15e", random_double());
        break;
      default: { /* a hair off the midpoint between a double and the next */
        double d = random_double(), up = nextafter(d, INFINITY);
        long double mid = ((long double)d + (long double)up) / 2;
        snprintf(text, sizeof(text), "%.18Le", mid);
        break;
      }
      }
      uint64_t w;
      int e = 0;
      double ours, want = strtod(text, NULL);
      if (split(text, &w, &e) != 0)
        continue;
      total++;
      if (bh_decimal_to_double(w, e, &ours) != 0)
        continue; /* left to strtod: always right */
      decided++;
      if (memcmp(&ours, &want, sizeof(ours)) != 0 && bad++ < 20)
        printf("%s: we read %a, strtod %a\n", text, ours, want);
    }
  }
  printf("%ld decimals, %ld decided without strtod, %ld different\n", total, decided, bad);
  printf(bad ? "FAIL\n" : "OK\n");
  return bad != 0;
}
