/* The shortest decimal that reads back as a given double, the digits Python's
 * repr(float) prints (David Gay's dtoa, mode 0), found with 128-bit integer
 * arithmetic in a few tens of nanoseconds instead of dtoa's big numbers. */
#ifndef BH_COMMON_SHORTEST_H
#define BH_COMMON_SHORTEST_H

#include <stdint.h>

typedef struct bh_decimal {
  uint64_t digits; /* no trailing zeros, at most 17 digits */
  int exp10;       /* the value is digits * 10**exp10 */
} bh_decimal_t;

/* v must be finite and positive (the caller writes the sign, zero, NaN and the
 * infinities). Of the decimals with the fewest digits that round to v, the one
 * nearest v; a tie goes to the even last digit. */
bh_decimal_t bh_shortest(double v);

#endif
