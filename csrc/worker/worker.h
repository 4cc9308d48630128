/* A worker process (worker/worker.c): entered right after fork(), it runs the
 * Python host on the main thread, which starts the I/O thread (server/) once
 * the service is published. */
#ifndef BH_WORKER_WORKER_H
#define BH_WORKER_WORKER_H

#include "common/context.h"

/* Never returns: exits with the Python host's code (common/status.h). */
int bh_worker_main(bh_worker_t *w) __attribute__((noreturn));

#endif
