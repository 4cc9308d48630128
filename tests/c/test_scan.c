/* bh_scan_pair (server/scan.c) against a byte-by-byte reference: random bytes,
 * text where CRs are everywhere, hits at every offset around the vector steps,
 * and buffers that end right after the bytes it may read (so ASan sees any
 * read past p + n + gap). */
#include "check.h"
#include "server/scan.h"
#include "xorshift.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *reference(const char *p, size_t n, char first, size_t gap, char last) {
  for (size_t c = 0; c < n; c++)
    if (p[c] == first && p[c + gap] == last)
      return p + c;
  return NULL;
}

/* a copy of src[0 .. len) in a block of exactly len bytes */
static char *exact(const char *src, size_t len) {
  char *q = malloc(len ? len : 1);
  CHECK(q != NULL);
  memcpy(q, src, len);
  return q;
}

static size_t checked;

static void compare(const char *src, size_t len, char first, size_t gap, char last) {
  for (size_t off = 0; off < 3 && off + gap <= len; off++) {
    size_t n = len - off - gap;
    char *q = exact(src + off, n + gap);
    const char *want = reference(q, n, first, gap, last);
    const char *got = bh_scan_pair(q, n, first, gap, last);
    if (got != want) {
      fprintf(stderr, "len %zu off %zu gap %zu: want %td got %td\n", len, off, gap,
              want ? want - q : -1, got ? got - q : -1);
      CHECK(0);
    }
    free(q);
    checked++;
  }
}

int main(void) {
  static char buf[70000];
  size_t gaps[] = {4, 5, 17, 31, 32, 63, 64, 65, 74, 127, 128, 200};

  for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
    size_t gap = gaps[g];
    char last = 'q';

    /* random bytes: hits are rare, ~1 in 64 KiB */
    for (size_t i = 0; i < sizeof(buf); i++)
      buf[i] = (char)next_random();
    compare(buf, sizeof(buf), '\r', gap, last);

    /* CRLF-heavy text: many first bytes, few lasts */
    for (size_t i = 0; i < sizeof(buf); i++)
      buf[i] = (next_random() % 4 == 0) ? '\r' : (next_random() % 300 == 0 ? last : 'a');
    for (size_t len = gap; len < 600; len += 7)
      compare(buf + (next_random() % 1000), len, '\r', gap, last);
    compare(buf, sizeof(buf), '\r', gap, last);

    /* one hit at every offset up to past two steps of the widest loop, and a
     * pair split across a step (first in one, last in the next) */
    for (size_t at = 0; at < 300; at++)
      for (size_t len = at + gap + 1; len < at + gap + 260; len += 37) {
        memset(buf, 'a', len);
        buf[at] = '\r';
        buf[at + gap] = last;
        compare(buf, len, '\r', gap, last);
        buf[at + gap] = 'a'; /* first byte only: no hit */
        compare(buf, len, '\r', gap, last);
      }

    /* high bytes as the pair (signed char compares) */
    memset(buf, 0, 1000);
    buf[500] = (char)0xff;
    buf[500 + gap] = (char)0x80;
    compare(buf, 1000, (char)0xff, gap, (char)0x80);
  }
  /* nothing to scan */
  CHECK(bh_scan_pair("\r\r\r\r\r", 0, '\r', 4, '\r') == NULL);
  printf("%zu comparisons OK\n", checked);
  return 0;
}
