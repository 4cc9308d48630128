/* bh_py_float against the strings Python's repr() gives (tests/test_c_units.py
 * passes the expected values on the command line: value repr value repr ...). */
#include "common/fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  char out[64];
  int bad = 0;

  for (int i = 1; i + 1 < argc; i += 2) {
    bh_py_float(strtod(argv[i], NULL), out, sizeof(out));
    if (strcmp(out, argv[i + 1]) != 0) {
      printf("%s: got %s, Python says %s\n", argv[i], out, argv[i + 1]);
      bad = 1;
    }
  }
  printf(bad ? "FAIL\n" : "OK\n");
  return bad;
}
