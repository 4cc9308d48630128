"""Where each worker runs: its GPUs (``CUDA_VISIBLE_DEVICES``), its CPUs and its
BLAS/OpenMP thread counts, decided once by the reporting worker from the whole
graph and handed to the supervisor in the service description (``placement``),
which applies it in each worker right after ``fork()``, before Python starts.

The GPUs are the ones the supervisor found through the CUDA runtime in a child
process (``BENTOHOST_GPUS``, csrc/supervisor/gpu.c). They are given per service
exactly as BentoML's allocator does (entry first, then the dependencies; whole
numbers take the first wholly free devices, a fraction shares a device with the
services asking the same fraction), except that asking for more GPUs than the
machine has is an error unless ``--gpu-oversubscribe`` lets services share.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

GPUS_ENV = "BENTOHOST_GPUS"                    # the supervisor's probe: [{"name", "memory"}]
GPU_PER_WORKER_ENV = "BENTOHOST_GPU_PER_WORKER"
GPU_OVERSUBSCRIBE_ENV = "BENTOHOST_GPU_OVERSUBSCRIBE"
CPU_AFFINITY_ENV = "BENTOHOST_CPU_AFFINITY"
WORKERS_OVERRIDE_ENV = "BENTOHOST_WORKERS_OVERRIDE"  # --workers, for the entry
DISABLE_ENV = "BENTOML_DISABLE_GPU_ALLOCATION"
THREAD_ENVS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
GIB = 1 << 30


class PlacementError(ValueError):
    """A placement that cannot be honoured: one line, and the run stops."""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory: int  # bytes


def probed_gpus(environ: dict[str, str] | None = None) -> list[Gpu]:
    """The devices the supervisor's probe saw (none without a CUDA runtime)."""
    env = os.environ if environ is None else environ
    try:
        found = json.loads(env.get(GPUS_ENV) or "[]")
    except ValueError:
        return []
    return [Gpu(str(g.get("name") or "GPU"), int(g.get("memory") or 0)) for g in found]


@dataclass
class GpuAllocator:
    """BentoML's allocator: ``(remaining, unit)`` per device, in device order.

    ``assign`` returns the device indices for one service; a request the devices
    cannot hold raises :class:`PlacementError`, or with ``oversubscribe`` shares
    the least used devices instead of inventing indices past the last one.
    """

    count: int
    oversubscribe: bool = False
    slots: list[tuple[float, float]] = field(init=False)  # (remaining, unit) per device
    users: list[int] = field(init=False)  # services on each device

    def __post_init__(self) -> None:
        self.slots = [(1.0, 1.0)] * self.count
        self.users = [0] * self.count

    def assign(self, amount: float, who: str = "a service") -> list[int]:
        if amount < 1:
            got = self._fraction(amount, who)
        else:
            if int(amount) != amount:
                raise PlacementError(f"{who}: resources.gpu={amount:g}: a GPU count above 1 must be a whole number")
            got = self._whole(int(amount), who)
        for i in got:
            self.users[i] += 1
        return got

    def _fraction(self, amount: float, who: str) -> list[int]:
        shared = next((i for i, (rest, unit) in enumerate(self.slots) if rest > 0 and unit == amount), None)
        gpu = shared if shared is not None else next(
            (i for i, (rest, _) in enumerate(self.slots) if rest == 1.0), None)
        if gpu is None:
            return self._share(1, amount, who, [])
        rest = self.slots[gpu][0] - amount
        # another service of the same fraction no longer fits: the device is full
        self.slots[gpu] = (0.0 if rest < amount else rest, amount)
        return [gpu]

    def _whole(self, n: int, who: str) -> list[int]:
        free = [i for i, (rest, unit) in enumerate(self.slots) if rest > 0 and unit == 1.0][:n]
        for i in free:
            self.slots[i] = (0.0, 1.0)
        if len(free) < n:
            return self._share(n, n, who, free)
        return free

    def _share(self, n: int, amount: float, who: str, taken: list[int]) -> list[int]:
        if self.count == 0 or not self.oversubscribe:
            busy = self.count - len(taken)
            raise PlacementError(
                f"{who} asks for resources.gpu={amount:g} but "
                + (f"this machine has {self.count} GPU{'s' if self.count != 1 else ''}"
                   + (f" and {busy} of them {'are' if busy != 1 else 'is'} given to other services" if busy else ""))
                + "; pass --gpu-oversubscribe to share them, or set BENTOML_DISABLE_GPU_ALLOCATION=1 "
                "and CUDA_VISIBLE_DEVICES yourself"
            )
        rest = sorted((i for i in range(self.count) if i not in taken), key=lambda i: (self.users[i], i))
        return taken + rest[: n - len(taken)]


def allocation_order(entry: Any, graph: list[Any]) -> list[Any]:
    """BentoML's order: the entry, then its dependencies depth first by attribute name."""
    by_name = {s.name: s for s in graph}
    order: list[Any] = []

    def visit(svc: Any) -> None:
        if svc in order:
            return
        order.append(svc)
        for attr in sorted(svc.dependencies):
            dep = svc.dependencies[attr]
            if dep.on is not None and dep.url is None and dep.on.name in by_name:
                visit(by_name[dep.on.name])

    visit(entry)
    order += [s for s in graph if s not in order]
    return order


@dataclass
class ServicePlan:
    """What one service asked for: its resolved config (``_config.service_config``)."""

    name: str
    workers: int
    gpu: float | None
    cpu: float | None
    cpu_count_workers: bool
    gpu_per_worker: bool
    cpu_affinity: bool


def cpu_amount(value: Any) -> float | None:
    """BentoML's ``resources.cpu``: 2, 0.5, "2", "500m"."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise PlacementError(f"resources.cpu={value!r}: expected a number of CPUs such as 2, 0.5 or \"500m\"") from None


def cpu_ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    runs: list[list[int]] = []
    for c in cpus:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _gpu_words(ids: list[int], gpus: list[Gpu], share: float | None) -> str:
    if not ids:
        return ""
    kinds = {(gpus[i].name, gpus[i].memory) for i in ids if i < len(gpus)}
    what = ""
    if len(kinds) == 1:
        name, memory = kinds.pop()
        what = f" ({name}, {round(memory / GIB)} GiB{' each' if len(ids) > 1 else ''}" + (
            f", shared: {share:g} of it)" if share is not None and share < 1 else ")")
    return f"GPU{'s' if len(ids) > 1 else ''} {','.join(map(str, ids))}{what}"


def _split_devices(svc: ServicePlan, ids: list[int]) -> list[list[int]]:
    """--gpu-per-worker: worker i's own device(s) out of its service's."""
    n, w = len(ids), svc.workers
    if not svc.gpu_per_worker or n == 0:
        return [ids] * w
    if n % w == 0:
        per = n // w
        return [ids[i * per:(i + 1) * per] for i in range(w)]
    if w % n == 0:
        return [[ids[i % n]] for i in range(w)]
    raise PlacementError(
        f"service {svc.name}: gpu_per_worker needs the GPU count to divide the worker count or the other "
        f"way round; it has {n} GPU{'s' if n != 1 else ''} for {w} workers"
    )


def plan_placement(
    services: list[ServicePlan],
    gpus: list[Gpu],
    cpus: list[int],
    environ: dict[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per service name, one entry per worker: ``env`` (to set), ``cpus``, ``describe``.

    ``services`` come in allocation order (:func:`allocation_order`); every
    worker of the graph is counted once for the CPUs (``cpus``: those this
    process may use), in that order.
    """
    env = os.environ if environ is None else environ
    # no device at all: a service that asks for one runs on the CPU (placement_warnings says so)
    allocate = DISABLE_ENV not in env and "CUDA_VISIBLE_DEVICES" not in env and bool(gpus)
    allocator = GpuAllocator(len(gpus), oversubscribe=env.get(GPU_OVERSUBSCRIBE_ENV) == "1")
    pin = any(s.cpu_affinity for s in services)
    pool = list(cpus) if pin else []
    total = sum(s.workers for s in services)
    share = max(1, len(pool) // total) if pool else 0
    plans: dict[str, list[dict[str, Any]]] = {}
    next_cpu = 0
    for svc in services:
        ids: list[int] = []
        if svc.gpu and allocate and not svc.cpu_count_workers:
            ids = allocator.assign(svc.gpu, f"service {svc.name}")
        devices = _split_devices(svc, ids)
        workers = []
        for k in range(svc.workers):
            place: dict[str, Any] = {"env": {}, "cpus": [], "describe": ""}
            words = [_gpu_words(devices[k], gpus, svc.gpu)] if devices[k] else []
            if devices[k]:
                place["env"]["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices[k]))
            threads = 0
            if svc.cpu_affinity and pool:
                mine = [pool[(next_cpu + j) % len(pool)] for j in range(share)]
                place["cpus"] = mine
                words.append(f"CPU{'s' if len(mine) > 1 else ''} {cpu_ranges(mine)}")
                threads = len(mine)
            if svc.cpu:
                threads = max(1, math.ceil(svc.cpu))
            for name in THREAD_ENVS if threads else ():
                if name not in env:
                    place["env"][name] = str(threads)
            next_cpu += share if pin else 0
            place["describe"] = ", ".join(w for w in words if w)
            workers.append(place)
        plans[svc.name] = workers
    return plans


def placement_warnings(services: list[ServicePlan], gpus: list[Gpu], cpus: int) -> list[str]:
    """What the user should know about a placement that runs anyway."""
    out = []
    env = os.environ
    if not gpus and any(s.gpu for s in services) and DISABLE_ENV not in env and "CUDA_VISIBLE_DEVICES" not in env:
        names = ", ".join(s.name for s in services if s.gpu)
        out.append(f"{names} asks for resources.gpu but no GPU was found (no CUDA runtime or no device): "
                   "running on the CPU")
    total = sum(s.workers for s in services if s.cpu_affinity)
    if any(s.cpu_affinity for s in services) and total > cpus:
        out.append(f"--cpu-affinity: {total} workers on {cpus} CPUs: some workers share a CPU")
    return out
