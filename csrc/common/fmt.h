/* Number formatting that must match Python's byte for byte. */
#ifndef BH_COMMON_FMT_H
#define BH_COMMON_FMT_H

#include <stddef.h>

/* v as Python's repr() prints it: the shortest digits that read back as v,
 * fixed notation for exponents -4..15 (10 -> "10.0", 0.5 -> "0.5"), else
 * "1e+16"; BentoML's 504 body is an f-string of a float. */
void bh_py_float(double v, char *out, size_t cap);

#endif
