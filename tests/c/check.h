/* CHECK for the C unit tests of the traffic side (test_shm.c, test_batch.c,
 * test_dep_metrics.c): a failed check names its line and exits 1. */
#ifndef BH_TESTS_CHECK_H
#define BH_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                   \
  do {                                                                             \
    if (!(c)) {                                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);       \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

#endif
