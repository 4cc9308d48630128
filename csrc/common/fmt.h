/* Number formatting that must match Python's byte for byte. */
#ifndef BH_COMMON_FMT_H
#define BH_COMMON_FMT_H

#include <stddef.h>

/* The longest repr of a finite double: "-2.2250738585072014e-308". */
#define BH_PY_FLOAT_MAX 24

/* A finite v as Python's repr() prints it: the shortest digits that read back
 * as v, fixed notation while the decimal point falls within -4..16 digits of
 * the first (10 -> "10.0", 0.5 -> "0.5", 1e-05, 1e+16). Writes at most
 * BH_PY_FLOAT_MAX bytes at p and returns the position after them. */
char *bh_put_py_float(char *p, double v);

/* The same as a string, and "nan", "inf", "-inf" as repr gives them;
 * BentoML's 504 body is an f-string of a float. */
void bh_py_float(double v, char *out, size_t cap);

#endif
