/* Python-compatible float formatting (see common/fmt.h). */
#include "common/fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bh_py_float(double v, char *out, size_t cap) {
  char digits[40];
  int prec, exp, decimals;

  if (!isfinite(v)) {
    snprintf(out, cap, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    return;
  }
  for (prec = 0; prec < 17; prec++) {
    snprintf(digits, sizeof(digits), "%.*e", prec, v);
    if (strtod(digits, NULL) == v)
      break;
  }
  exp = atoi(strchr(digits, 'e') + 1);
  if (exp < -4 || exp >= 16) {
    snprintf(out, cap, "%s", digits); /* C's %e writes Python's form: 1e+16, 1.5e-05 */
    return;
  }
  decimals = prec - exp > 0 ? prec - exp : 0;
  snprintf(out, cap, "%.*f", decimals, v);
  if (strchr(out, '.') == NULL && strlen(out) + 2 < cap)
    strcat(out, ".0");
}
