/* Shortest round-trip digits of a double (see common/shortest.h).
 *
 * The double is m2 * 2**e2. Its rounding interval (the reals that read back
 * as it) reaches halfway to the neighbours: with two more bits of exponent the
 * value and both ends are integers, mv = 4*m2, mp = 4*m2 + 2 and mm = 4*m2 - 2
 * (- 1 at a power of two, whose lower neighbour is closer). All three are
 * scaled by one power of ten, 10**-e10, chosen so that the results vr, vp, vm
 * keep about 17 digits: integer parts of exact products, computed as a 64-bit
 * value times a 125-bit power of five (common/pow5_table.h), which is exact
 * for every double at those widths (the bound is Ulf Adams' Ryu, PLDI 2018,
 * whose method this is). Digits are then dropped from all three while the
 * interval still holds a decimal with one digit fewer; the flags remember
 * whether what was dropped was exactly zero, where the answer depends on it
 * (an end of the interval that is itself allowed, a tie at .5).
 *
 * The tables and the log forms below are checked by common/pow5_table.py; the
 * whole against Python's repr by tests/test_c_units.py, over random doubles
 * of every exponent, float32 values widened, and the edge cases. */
#include "common/shortest.h"
#include "common/pow5_table.h"

#include <stdbool.h>
#include <string.h>

typedef unsigned __int128 u128;

/* floor(e * log10(2)) and floor(e * log10(5)), for
 * the exponents a double needs. */
static inline int log10_pow2(int e) {
  return (int)(((uint32_t)e * 78913) >> 18);
}

static inline int log10_pow5(int e) {
  return (int)(((uint32_t)e * 732923) >> 20);
}

/* floor(m * mul / 2**shift) for a 125-bit mul; shift is above 64. */
static inline uint64_t mul_shift(uint64_t m, const uint64_t mul[2], int shift) {
  u128 low = (u128)m * mul[0];
  u128 high = (u128)m * mul[1];
  return (uint64_t)(((low >> 64) + high) >> (shift - 64));
}

static inline bool divisible_by_pow5(uint64_t v, int q) {
  for (int i = 0; i < q; i++) {
    if (v % 5 != 0)
      return false;
    v /= 5;
  }
  return true;
}

static inline bool divisible_by_pow2(uint64_t v, int q) {
  return q < 64 && (v & ((UINT64_C(1) << q) - 1)) == 0;
}

/* Whether v * 2**e2 / 10**q is an integer: for e2 >= 0 the power of two
 * divides out (q <= e2) and only 5**q can leave a rest; below, v is multiplied
 * by an odd power of five and divided by 2**q. */
static inline bool scales_exactly(uint64_t v, int q, bool exponent_positive) {
  return exponent_positive ? divisible_by_pow5(v, q) : divisible_by_pow2(v, q);
}

bh_decimal_t bh_shortest(double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof(bits));
  uint64_t mantissa = bits & ((UINT64_C(1) << 52) - 1);
  int biased = (int)((bits >> 52) & 0x7ff);
  uint64_t m2;
  int e2;

  if (biased == 0) {
    m2 = mantissa;
    e2 = 1 - 1075 - 2;
  } else {
    m2 = mantissa | (UINT64_C(1) << 52);
    e2 = biased - 1075 - 2;
  }
  /* Python reads decimals with round-half-even: an end of the interval
   * belongs to the double whose mantissa is even. */
  bool ends_included = (m2 & 1) == 0;
  uint64_t mv = 4 * m2, mp = mv + 2;
  uint64_t mm = mv - 1 - (mantissa != 0 || biased <= 1);

  /* vr = floor(mv * 2**e2 / 10**e10), and the same for the ends */
  const uint64_t *mul;
  int q, shift, e10;
  if (e2 >= 0) {
    q = log10_pow2(e2) - (e2 > 3);
    mul = BH_POW5_INV[q];
    shift = -e2 + q + BH_POW5_BITS + bh_pow5_bits(q) - 1;
    e10 = q;
  } else {
    q = log10_pow5(-e2) - (-e2 > 1);
    int i = -e2 - q;
    mul = BH_POW5[i];
    shift = q - (bh_pow5_bits(i) - BH_POW5_BITS);
    e10 = q + e2;
  }
  uint64_t vr = mul_shift(mv, mul, shift);
  uint64_t vp = mul_shift(mp, mul, shift);
  uint64_t vm = mul_shift(mm, mul, shift);
  /* whether the scaled value had nothing after the point */
  bool vr_exact = scales_exactly(mv, q, e2 >= 0);
  bool vm_exact = ends_included && scales_exactly(mm, q, e2 >= 0);
  if (!ends_included && scales_exactly(mp, q, e2 >= 0))
    vp--; /* the upper end itself is excluded */

  int removed = 0;
  unsigned last = 0; /* the last digit dropped from vr */
  uint64_t out;

  if (vm_exact || vr_exact) {
    /* then on while the lower end, itself allowed, ends in a zero: the
     * decimal with that zero dropped is still inside */
    while (vp / 10 > vm / 10 || (vm_exact && vm % 10 == 0)) {
      vm_exact &= vm % 10 == 0;
      vr_exact &= last == 0;
      last = (unsigned)(vr % 10);
      vr /= 10;
      vp /= 10;
      vm /= 10;
      removed++;
    }
    if (vr_exact && last == 5 && vr % 2 == 0)
      last = 4; /* exactly halfway: to the even digit */
    out = vr + ((vr == vm && !vm_exact) || last >= 5);
  } else {
    /* the usual case: no flag can matter, only the rounding of vr */
    bool round_up = false;
    while (vp / 10 > vm / 10) {
      round_up = vr % 10 >= 5;
      vr /= 10;
      vp /= 10;
      vm /= 10;
      removed++;
    }
    out = vr + (vr == vm || round_up);
  }
  /* the digits found may end in zeros when the interval is wide (2**60) */
  while (out % 10 == 0 && out != 0) {
    out /= 10;
    removed++;
  }
  return (bh_decimal_t){out, e10 + removed};
}
