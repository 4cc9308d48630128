/* The worker's I/O thread (server/io.c), as the worker starts and joins it. */
#ifndef BH_SERVER_IO_H
#define BH_SERVER_IO_H

#include "common/context.h"

/* Starts the thread and returns once the bridge and listener are set up
 * (w->bridge is then valid): 0 or a negative errno. */
int bh_io_start(bh_worker_t *w);
/* Waits for the thread to end after its drain; 0 or a negative errno. */
int bh_io_join(bh_worker_t *w);

#endif
