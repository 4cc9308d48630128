/* A seeded random stream for the C tests that compare against a reference over
 * many values (test_shortest.c, test_decimal.c): xorshift64, never 0. */
#ifndef BH_TESTS_XORSHIFT_H
#define BH_TESTS_XORSHIFT_H

#include <stdint.h>

static uint64_t xorshift_state = 88172645463325252u;

static inline uint64_t next_random(void) {
  xorshift_state ^= xorshift_state << 13;
  xorshift_state ^= xorshift_state >> 7;
  xorshift_state ^= xorshift_state << 17;
  return xorshift_state;
}

#endif
