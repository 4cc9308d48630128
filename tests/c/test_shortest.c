/* bh_put_py_float (common/fmt.c over common/shortest.c) against CPython's own
 * repr(float), PyOS_double_to_string(v, 'r', ...), linked in: every double in
 * each family below, printed both ways and compared byte for byte.
 *
 *   test_shortest COUNT SEED   COUNT values of each family */
#include <Python.h>

#include "common/fmt.h"

#include "xorshift.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static double from_bits(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof(d));
  return d;
}

/* The i-th value of a family; NAN when it has none there. */
static double family_value(int family, long i) {
  uint64_t r = next_random();
  switch (family) {
  case 0: /* any bit pattern: every exponent equally */
    return from_bits(r);
  case 1: { /* float32 values widened, what numpy float32 answers hold */
    uint32_t bits = (uint32_t)r;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
  }
  case 2: { /* every exponent with the mantissas at its edges */
    uint64_t edges[8] = {0, 1, 2, 3, (UINT64_C(1) << 52) - 1, (UINT64_C(1) << 52) - 2, UINT64_C(1) << 51,
                         r & ((UINT64_C(1) << 52) - 1)};
    return from_bits(((uint64_t)(i / 8) % 2047) << 52 | edges[i % 8]);
  }
  case 3: /* subnormals, the smallest ones in order */
    return from_bits(i < 100000 ? (uint64_t)i : r & ((UINT64_C(1) << 52) - 1));
  case 4: { /* powers of ten, their neighbours and small multiples */
    char text[32];
    snprintf(text, sizeof(text), "1e%ld", (i / 5) % 617 - 323);
    double d = strtod(text, NULL);
    switch (i % 5) {
    case 1: return nextafter(d, 0);
    case 2: return nextafter(d, INFINITY);
    case 3: return d * 3;
    case 4: return d * 7.0 / 9.0;
    default: return d;
    }
  }
  case 5: /* integers of every size, short decimals */
    if (r & 1)
      return (double)(r >> (r % 64));
    return (double)(int64_t)(r % 2000001 - 1000000) / 1000.0;
  default:
    return NAN;
  }
}

int main(int argc, char **argv) {
  long count = argc > 1 ? atol(argv[1]) : 100000;
  if (argc > 2)
    xorshift_state = strtoull(argv[2], NULL, 10) | 1;
  long bad = 0, compared = 0;
  char ours[BH_PY_FLOAT_MAX + 8];

  for (int family = 0; family <= 5; family++) {
    for (long i = 0; i < count; i++) {
      double d = family_value(family, i);
      if (!isfinite(d))
        continue;
      memset(ours, 'x', sizeof(ours));
      char *end = bh_put_py_float(ours, d);
      if (end - ours > BH_PY_FLOAT_MAX) {
        printf("%a: %d bytes, over BH_PY_FLOAT_MAX\n", d, (int)(end - ours));
        bad++;
        continue;
      }
      *end = '\0';
      char *python = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
      if (python == NULL) {
        printf("PyOS_double_to_string failed\n");
        return 2;
      }
      if (strcmp(python, ours) != 0 && bad++ < 20)
        printf("family %d, %a: we write %s, Python %s\n", family, d, ours, python);
      PyMem_Free(python);
      compared++;
    }
  }
  printf("%ld values compared, %ld different\n", compared, bad);
  printf(bad ? "FAIL\n" : "OK\n");
  return bad != 0;
}
