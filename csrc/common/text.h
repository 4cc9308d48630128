/* Text written by pointer: heads, log lines and JSON numbers, without printf,
 * whose format parsing costs more than the copies themselves. The caller has
 * made room (each returns the position after what it wrote). */
#ifndef BH_COMMON_TEXT_H
#define BH_COMMON_TEXT_H

#include <stdint.h>
#include <string.h>

static inline char *bh_put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

#define BH_PUT_LIT(p, lit) bh_put((p), (lit), sizeof(lit) - 1)

static inline char *bh_put_str(char *p, const char *s) {
  return bh_put(p, s, strlen(s));
}

static inline char *bh_put_u64(char *p, uint64_t v) {
  char tmp[20];
  int k = 0;

  do {
    tmp[k++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (k > 0)
    *p++ = tmp[--k];
  return p;
}

static inline char *bh_put_i64(char *p, int64_t v) {
  if (v < 0) {
    *p++ = '-';
    return bh_put_u64(p, (uint64_t)0 - (uint64_t)v);
  }
  return bh_put_u64(p, (uint64_t)v);
}

#endif
