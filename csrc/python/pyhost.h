/* The Python host (python/pyhost.c): initialises CPython in the worker after
 * fork and runs bentohost._worker.main() on the calling (main) thread. */
#ifndef BH_PYTHON_PYHOST_H
#define BH_PYTHON_PYHOST_H

#include "common/context.h"

/* Returns the worker's exit code (common/status.h). */
int bh_pyhost_run(bh_worker_t *w);

#endif
