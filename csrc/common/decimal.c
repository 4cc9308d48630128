/* Decimal to double (see common/decimal.h).
 *
 * Two ways, tried in order:
 *   - Clinger's: w < 2**53 and |e| <= 22 make w and 10**|e| exact doubles, and
 *     one IEEE multiplication or division rounds their exact result once;
 *   - scaling by a power of five from common/pow5_table.h: w, shifted to 64
 *     significant bits, times a 125-bit significand of 5**e (or of 2**k/5**-e)
 *     is a 189-bit product P whose error is known: the exact value lies in
 *     [P, P + w) (5**e truncated) or (P - w, P) (the inverse rounded up). When
 *     both ends of that interval round to the same 53 bits, that is the answer;
 *     when a rounding boundary falls inside, strtod's big numbers decide. With
 *     64-bit significands that happens for about one decimal in 2**60. */
#include "common/decimal.h"
#include "common/pow5_table.h"

#include <errno.h>
#include <float.h>
#include <string.h>

typedef unsigned __int128 u128;

typedef struct u192 {
  uint64_t w[3]; /* least significant first */
} u192_t;

static u192_t mul_64_125(uint64_t a, const uint64_t m[2]) {
  u128 low = (u128)a * m[0], high = (u128)a * m[1];
  u128 mid = (low >> 64) + (uint64_t)high;
  return (u192_t){{(uint64_t)low, (uint64_t)mid, (uint64_t)(high >> 64) + (uint64_t)(mid >> 64)}};
}

static u192_t add_64(u192_t x, uint64_t v) {
  u128 s = (u128)x.w[0] + v;
  x.w[0] = (uint64_t)s;
  s = (u128)x.w[1] + (uint64_t)(s >> 64);
  x.w[1] = (uint64_t)s;
  x.w[2] += (uint64_t)(s >> 64);
  return x;
}

static u192_t sub_64(u192_t x, uint64_t v) {
  uint64_t borrow = x.w[0] < v;
  x.w[0] -= v;
  uint64_t b2 = x.w[1] < borrow;
  x.w[1] -= borrow;
  x.w[2] -= b2;
  return x;
}

/* The top 54 bits of x taken below bit `top` (x < 2**top): 53 for the
 * significand and the rounding bit; *rest says whether any bit below is set.
 * top is 187..189 here, so those bits lie in the highest word. */
static uint64_t top54(u192_t x, int top, int *rest) {
  int drop = top - 54 - 128; /* bits of w[2] below the 54 */
  *rest = (x.w[2] & ((UINT64_C(1) << drop) - 1)) != 0 || x.w[1] != 0 || x.w[0] != 0;
  return x.w[2] >> drop;
}

static int bit_length(u192_t x) {
  return x.w[2] != 0 ? 192 - __builtin_clzll(x.w[2]) : 0; /* the product's top word is never 0 */
}

/* Rounds the 54-bit prefix t (rounding bit last) to 53 bits, half to even
 * when nothing follows it. */
static uint64_t round_prefix(uint64_t t, int rest) {
  uint64_t m = t >> 1;
  if ((t & 1) && (rest || (m & 1)))
    m++;
  return m;
}

/* m (2**52 <= m <= 2**53) times 2**e2 as a double, or -ERANGE outside the normal range. */
static int make_double(uint64_t m, int e2, double *out) {
  if (m == UINT64_C(1) << 53) {
    m >>= 1;
    e2++;
  }
  int biased = e2 + 52 + 1023;
  if (biased < 1 || biased > 2046)
    return -ERANGE;
  uint64_t bits = (uint64_t)biased << 52 | (m & ((UINT64_C(1) << 52) - 1));
  memcpy(out, &bits, sizeof(bits));
  return 0;
}

int bh_decimal_to_double(uint64_t w, int e, double *out) {
  static const double powers[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  if (w == 0) {
    *out = 0.0;
    return 0;
  }
  /* x87's wider arithmetic would round twice */
  if (FLT_EVAL_METHOD == 0 && w < (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
    double d = (double)w;
    *out = e < 0 ? d / powers[-e] : d * powers[e];
    return 0;
  }
  int shift = __builtin_clzll(w);
  uint64_t wn = w << shift;
  u192_t p, lo, hi;
  int e2, exact;

  if (e >= 0) {
    if (e >= BH_POW5_COUNT)
      return -ERANGE;
    /* 5**e = BH_POW5[e] * 2**(bits - 125), truncated unless it fits */
    p = mul_64_125(wn, BH_POW5[e]);
    e2 = e + bh_pow5_bits(e) - BH_POW5_BITS - shift;
    exact = bh_pow5_bits(e) <= BH_POW5_BITS;
    lo = p;
    hi = exact ? p : add_64(p, wn - 1);
  } else {
    int q = -e;
    if (q >= BH_POW5_INV_COUNT)
      return -ERANGE;
    /* 5**-q = BH_POW5_INV[q] * 2**-(bits - 1 + 125), rounded up */
    p = mul_64_125(wn, BH_POW5_INV[q]);
    e2 = -q - (bh_pow5_bits(q) - 1 + BH_POW5_BITS) - shift;
    exact = 0;
    lo = sub_64(p, wn);
    hi = p;
  }
  int top = bit_length(lo);
  if (top != bit_length(hi) || top < 187)
    return -ERANGE;
  int rest_lo, rest_hi;
  uint64_t t = top54(lo, top, &rest_lo);
  if (t != top54(hi, top, &rest_hi))
    return -ERANGE; /* the interval holds a boundary between two prefixes */
  if (!exact && (t & 1) && !rest_lo)
    return -ERANGE; /* its lower end sits exactly on a tie */
  uint64_t m = exact ? round_prefix(t, rest_lo) : (t & 1) ? (t >> 1) + 1 : t >> 1;
  return make_double(m, e2 + top - 53, out);
}
