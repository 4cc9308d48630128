/* The segment shared by the supervisor and every worker (traffic/shm.c): the
 * exact global max_concurrency count, per-worker counters for /metrics and the
 * heartbeats the supervisor's watchdog reads. Its layout is private to the
 * traffic files (traffic/internal.h). */
#ifndef BH_TRAFFIC_SHM_H
#define BH_TRAFFIC_SHM_H

#include <stdint.h>

/* Workers of all services together, each with a slot (1-based); services of
 * one graph (the entry is service 0). */
#define BH_MAX_WORKERS 256
#define BH_MAX_SERVICES 32
typedef struct bh_shm bh_shm_t;

/* A rolling restart runs a worker index's new process beside the old one, so
 * every slot has a twin (slot + BH_MAX_WORKERS): the new process writes the
 * twin while the old one drains in its own slot, each keeping a single writer.
 * Renders sum a slot and its twin under the one worker_index. */
static inline int bh_shm_twin(int slot) {
  return slot > BH_MAX_WORKERS ? slot - BH_MAX_WORKERS : slot + BH_MAX_WORKERS;
}

bh_shm_t *bh_shm_create(void);                 /* supervisor, before forking */
/* supervisor, after reaping the worker of `slot`: returns its in-flight
 * requests to its service's max_concurrency count and counts the restart. */
void bh_shm_worker_died(bh_shm_t *shm, int slot);
/* The same for a worker that left on purpose (replaced by a rolling restart,
 * or a new worker that never got ready): not counted as a restart. */
void bh_shm_worker_retired(bh_shm_t *shm, int slot);
/* supervisor, before SIGTERM to a worker replaced by a rolling restart (1), or
 * before forking into a free slot (0): the worker then drains without cutting
 * its idle keep-alive connections, each closing after its next answer. */
void bh_shm_set_retiring(bh_shm_t *shm, int slot, int retiring);
int bh_shm_retiring(bh_shm_t *shm, int slot);
/* worker, I/O thread: its sync threads are all stuck while requests wait for
 * them, so it asks to be replaced; the supervisor's watchdog reads it. Cleared
 * when the slot is reset. */
void bh_shm_report_hung(bh_shm_t *shm, int slot);
int bh_shm_reported_hung(bh_shm_t *shm, int slot);
/* supervisor, --shutdown-delay: every /readyz answers 503 from now on */
void bh_shm_withdraw(bh_shm_t *shm);
int bh_shm_withdrawn(bh_shm_t *shm);
/* supervisor, once the graph is known: service `service` runs n workers in the
 * slots from first_slot on (traffic.concurrency and /metrics use it) */
void bh_shm_set_workers(bh_shm_t *shm, int service, int first_slot, int n);
void bh_shm_set_services(bh_shm_t *shm, int n);
/* supervisor: a worker of the service became ready (+1) or left (-1) */
void bh_shm_service_ready(bh_shm_t *shm, int service, int delta);
/* whether every service of the graph has a ready worker (the entry's /readyz) */
int bh_shm_graph_ready(bh_shm_t *shm);
/* seconds since the worker's Python thread last made progress while it had work,
 * or 0 when it is idle or has no Python work pending */
double bh_shm_stall_s(bh_shm_t *shm, int index);
void bh_shm_heartbeat(bh_shm_t *shm, int index); /* worker, Python thread */
/* worker: it runs n sync threads (set once at start) */
void bh_shm_set_sync_threads(bh_shm_t *shm, int index, int n);
/* worker, sync thread `thread`: a call begins (busy) or ends (!busy). */
void bh_shm_sync_busy(bh_shm_t *shm, int index, int thread, int busy);
/* seconds every sync thread of the worker has been inside its current call
 * (the shortest of them), or 0 when any thread is free */
double bh_shm_sync_stuck_s(bh_shm_t *shm, int index);
/* requests the worker index answered, all its lives together */
uint64_t bh_shm_requests(bh_shm_t *shm, int index);
/* the API indices with requests in progress in that worker (up to max) */
int bh_shm_busy_apis(bh_shm_t *shm, int index, int *apis, int max);
/* worker, Python thread: Python work pending (+n when it takes n REQUEST/BATCH
 * member handles from the ring, -1 as it posts each one's final message) */
void bh_shm_work(bh_shm_t *shm, int index, int delta);

/* GPUs: the supervisor's GPU monitor (supervisor/gpu_monitor.c) samples NVML
 * once a second into the segment, /metrics reads it. One writer, any readers. */
#define BH_SHM_MAX_GPUS 16
/* monitor: it watches n GPUs, indices 0..n-1 (clamped to BH_SHM_MAX_GPUS) */
void bh_shm_gpu_count(bh_shm_t *shm, int n);
int bh_shm_gpus(bh_shm_t *shm);
/* monitor: one GPU's sample, stamped now; util_ratio in 0..1 (clamped), or
 * negative when the device does not report it. -EINVAL for a bad index. */
int bh_shm_gpu_set(bh_shm_t *shm, int gpu, uint64_t used, uint64_t total, double util_ratio);
/* the GPU's last sample and its age in seconds; *util is negative when unknown.
 * -EINVAL: bad index; -ENODATA: no sample yet; -EAGAIN: caught mid-write too
 * often (a monitor killed while writing leaves it so). */
int bh_shm_gpu_read(bh_shm_t *shm, int gpu, uint64_t *used, uint64_t *total, double *util,
                    double *age_s);

#endif
