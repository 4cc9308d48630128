/* The one clock the host measures with: CLOCK_MONOTONIC in nanoseconds. */
#ifndef BH_COMMON_CLOCK_H
#define BH_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t bh_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seconds from start_ns until now (0 if the clock reads earlier). */
static inline double bh_since_s(uint64_t start_ns) {
  uint64_t t = bh_now_ns();
  return t > start_ns ? (double)(t - start_ns) / 1e9 : 0.0;
}

#endif
