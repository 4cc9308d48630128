/* Decimal to double without strtod, for the significands clients send: exact
 * (correctly rounded, the double strtod and Python's float() give) or a clear
 * "not here" that sends the caller to strtod. */
#ifndef BH_COMMON_DECIMAL_H
#define BH_COMMON_DECIMAL_H

#include <stdint.h>

/* w * 10**e correctly rounded (round half to even) into *out, for any w that
 * fits 64 bits: 0, or -ERANGE when this cannot decide (a result outside the
 * normal range, a decimal too close to halfway between two doubles for the
 * tables' precision, an exponent beyond them). */
int bh_decimal_to_double(uint64_t w, int e, double *out);

#endif
