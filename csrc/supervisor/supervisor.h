/* The supervisor (supervisor/supervisor.c): binds the socket, forks and watches
 * the workers. Single-threaded, never initialises Python, uses no libuv. */
#ifndef BH_SUPERVISOR_SUPERVISOR_H
#define BH_SUPERVISOR_SUPERVISOR_H

#include "common/options.h"

/* Runs until shutdown; returns the process's exit code. */
int bh_supervisor_run(const bh_options_t *opts);

#endif
