"""Services that report where they run: their GPUs (CUDA_VISIBLE_DEVICES), the
BLAS/OpenMP thread counts and the CPUs of each of their threads (tests/test_placement.py)."""

import os

import bentohost


def whereabouts() -> dict:
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            threads[tid] = sorted(os.sched_getaffinity(int(tid)))
        except OSError:  # the thread ended meanwhile
            pass
    return {
        "worker": bentohost.server_context.worker_index,
        "pid": os.getpid(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "cpus": sorted(os.sched_getaffinity(0)),
        "thread_cpus": threads,
    }


@bentohost.service(workers=2, resources={"gpu": 2})
class Model:
    @bentohost.api
    def where(self) -> dict:
        return whereabouts()


@bentohost.service(workers=2, resources={"gpu": 1})
class Entry:
    model = bentohost.depends(Model)

    @bentohost.api
    def where(self) -> dict:
        return whereabouts()

    @bentohost.api
    def model_where(self) -> dict:
        return self.model.where()


@bentohost.service(workers=2, resources={"gpu": 0.5, "cpu": "1500m"})
class Half:
    @bentohost.api
    def where(self) -> dict:
        return whereabouts()


@bentohost.service(workers="gpu_count")
class OnePerGpu:
    @bentohost.api
    def where(self) -> dict:
        return whereabouts()


@bentohost.service(workers=3, resources={"gpu": 2}, gpu_per_worker=True)
class Uneven:
    @bentohost.api
    def where(self) -> dict:
        return whereabouts()


@bentohost.service(workers=1)
class Plain:
    @bentohost.api
    def where(self) -> dict:
        return whereabouts()
