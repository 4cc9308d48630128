/* A search for two bytes a fixed distance apart (server/scan.c): the
 * multipart parser's way to find a delimiter candidate in binary content. */
#ifndef BH_SERVER_SCAN_H
#define BH_SERVER_SCAN_H

#include <stddef.h>

/* The first c in [0, n) with p[c] == first and p[c + gap] == last, or NULL;
 * it reads p[0 .. n + gap). */
const char *bh_scan_pair(const char *p, size_t n, char first, size_t gap, char last);

#endif
