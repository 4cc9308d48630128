/* The GPU monitor (supervisor/gpu_monitor.c): a small child of the supervisor
 * that samples NVML once a second into the shared segment for /metrics. */
#ifndef BH_SUPERVISOR_GPU_MONITOR_H
#define BH_SUPERVISOR_GPU_MONITOR_H

#include <sys/types.h>

#include "traffic/shm.h"

/* The library loaded instead of libnvidia-ml.so.1 when set (tests, odd installs). */
#define BH_NVML_LIBRARY_ENV "BENTOHOST_NVML_LIBRARY"

/* Forks the monitor; returns its pid, or -ENOENT when NVML cannot be loaded
 * (no child is left behind then), or another negative errno. The monitor ends
 * with the supervisor (PR_SET_PDEATHSIG) and on its own when NVML fails to
 * initialise or finds no GPU; the reap loop ignores its pid. */
pid_t bh_sup_gpu_monitor_start(bh_shm_t *shm);

#endif
