"""The service description that the C host reads (routes, workers, threads, ...)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ._cors import cors_for_host
from ._io import build_input
from ._overrides import apply as apply_overrides
from ._rows import rows_spec
from ._placement import (CPU_AFFINITY_ENV, GPU_PER_WORKER_ENV, WORKERS_OVERRIDE_ENV, ServicePlan,
                         allocation_order, cpu_amount, placement_warnings, plan_placement, probed_gpus)
from ._service import Service
from ._tasks import task_routes

__all__ = ["service_config_json", "service_config", "cpu_count", "resolve_workers", "drain_order"]

DEFAULT_TRAFFIC: dict[str, Any] = {"timeout": 60.0, "max_concurrency": None, "concurrency": None}
#: ``serve --timeout`` (BentoML's, env BENTOML_TIMEOUT): traffic.timeout of every service served,
#: over the decorator and the configuration file alike
TIMEOUT_ENV = "BENTOHOST_TIMEOUT"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _cgroup_v2_dirs(root: str, proc_cgroup: str) -> list[str]:
    """The process's cgroup v2 directory and its ancestors, innermost first."""
    rel = None
    text = _read(proc_cgroup)
    if text:
        for line in text.splitlines():
            if line.startswith("0::"):
                rel = line[3:].strip()
                break
    dirs = []
    if rel:
        parts = [p for p in rel.split("/") if p]
        for i in range(len(parts), 0, -1):
            dirs.append(os.path.join(root, *parts[:i]))
    dirs.append(root)
    return dirs


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """CPU quota from cgroup v2 ``cpu.max`` (tightest ancestor) or v1 CFS quota; None if unlimited."""
    limit: float | None = None
    for d in _cgroup_v2_dirs(root, proc_cgroup):
        text = _read(os.path.join(d, "cpu.max"))
        if not text:
            continue
        parts = text.split()
        if len(parts) >= 1 and parts[0] != "max":
            try:
                quota = float(parts[0])
                period = float(parts[1]) if len(parts) > 1 else 100000.0
            except ValueError:
                continue
            if quota > 0 and period > 0:
                value = quota / period
                limit = value if limit is None else min(limit, value)
    if limit is not None:
        return limit
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        q = _read(os.path.join(root, sub, "cpu.cfs_quota_us"))
        p = _read(os.path.join(root, sub, "cpu.cfs_period_us"))
        if q is None or p is None:
            continue
        try:
            quota, period = float(q), float(p)
        except ValueError:
            continue
        if quota > 0 and period > 0:
            return quota / period
        return None
    return None


def cpu_count(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int:
    """Usable CPUs: the cgroup quota (rounded down), capped by the affinity mask, at least 1."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        available = min(available, math.floor(limit))
    return max(1, available)


def usable_cpus(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> list[int]:
    """The CPUs workers are pinned to: the affinity mask's first :func:`cpu_count`."""
    return sorted(os.sched_getaffinity(0))[: cpu_count(root, proc_cgroup)]


def resolve_workers(value: Any) -> int:
    if value is None:
        return 1
    if value == "cpu_count":
        return cpu_count()
    if value == "gpu_count":  # one worker per GPU the supervisor found (at least one)
        return max(1, len(probed_gpus()))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"workers must be a positive int, 'cpu_count' or 'gpu_count', got {value!r}")
    return value


def _threads(value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"threads must be a positive int, got {value!r}")
    return value


def effective_threads(threads: Any, concurrency: Any, workers: int) -> int:
    """Size of a worker's pool of Python threads for sync APIs.

    ``threads`` when the service sets it; otherwise, when ``traffic.concurrency`` is
    set, ``ceil(concurrency / workers)`` (each worker then runs its share of the
    wanted concurrency in parallel); otherwise 1, BentoML's default of one sync call
    at a time per worker.
    """
    if threads is not None:
        return _threads(threads)
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"traffic.concurrency must be a positive int, got {concurrency!r}")
        return max(1, math.ceil(concurrency / max(1, workers)))
    return 1


def _batch_location(m: Any) -> tuple[str | None, bool]:
    """Where the batchable input lives in a JSON body: ``(field, is_root)``."""
    if not m.batchable:
        return None, False
    import inspect

    params = [
        p
        for p in list(inspect.signature(m.func).parameters.values())[1:]
        if p.name != m.ctx_param
    ]
    if m.input_spec is not None:
        fields = list(m.input_spec.model_fields)
        return (fields[0] if len(fields) == 1 else None), False
    if len(params) == 1 and params[0].kind is inspect.Parameter.POSITIONAL_ONLY:
        return None, True
    if len(params) == 1:
        return params[0].name, False
    return None, False


def _image_inputs(m: Any) -> dict[str, Any]:
    """The PIL image inputs, whose uploads C holds in memory when the body is small
    (csrc/server/multipart.c): the image is decoded in memory anyway, and BentoML
    opens it from the upload's file object, not a path."""
    spec = build_input(m.func, m.input_spec, m.ctx_param)
    if spec.kind == "root_image":
        return {"image_root": True}
    names = sorted(n for n, k in spec.field_kinds.items() if k == "image")
    return {"image_fields": names} if names else {}


def effective_config(svc: Service[Any]) -> dict[str, Any]:
    """The decorator's config under BENTOML_CONFIG's and BENTOML_CONFIG_OVERRIDES' (read and
    checked by the supervisor in C, csrc/common/yamlconf.c, and handed to every worker as
    ``BENTOHOST_CONFIG_JSON``)."""
    base = {**svc.config, "envs": list(svc.envs)}
    merged = os.environ.get("BENTOHOST_CONFIG_JSON")
    return apply_overrides(base, svc.name, json.loads(merged)) if merged else base


def service_config(svc: Service[Any]) -> dict[str, Any]:
    """The dict serialised by :func:`service_config_json`; ``apis`` order is the wire index."""
    cfg = effective_config(svc)
    traffic = {**DEFAULT_TRAFFIC, **{k: v for k, v in (cfg.get("traffic") or {}).items() if v is not None}}
    traffic["timeout"] = float(os.environ.get(TIMEOUT_ENV) or traffic["timeout"])
    resources = {k: v for k, v in (cfg.get("resources") or {}).items() if v is not None}
    workers = resolve_workers(cfg.get("workers"))
    apis = []
    for m in svc.apis.values():
        field, root = _batch_location(m)
        apis.append(
            {
                "name": m.name,
                "route": svc.path_prefix + m.route,
                "is_async": m.is_async,
                "is_stream": m.is_stream,
                "needs_request": m.ctx_param is not None,
                "batchable": m.batchable,
                "batch_dim": list(m.batch_dim),
                "batch_field": field,
                "batch_root": root,
                "max_batch_size": m.max_batch_size,
                "max_latency_ms": m.max_latency_ms,
                "rows": rows_spec(m),
                **_image_inputs(m),
            }
        )
    for tr in task_routes(svc):
        # after every API, so the APIs keep their wire indexes; the query string is needed
        apis.append(
            {
                "name": f"{tr.api}_{tr.action}",
                "route": svc.path_prefix + tr.route,
                "method": tr.method,
                "task": tr.action,
                "is_async": True,
                "is_stream": False,
                "needs_request": True,
                "batchable": False,
            }
        )
    return {
        "name": svc.name,
        "workers": workers,
        "threads": effective_threads(cfg.get("threads"), traffic.get("concurrency"), workers),
        "traffic": traffic,
        "resources": resources,
        "envs": list(cfg.get("envs") or []),
        # BentoML's ssl block: the entry's worker makes its TLS context from it, under the --ssl-* flags
        "ssl": {k: v for k, v in (cfg.get("ssl") or {}).items() if v is not None},
        "apis": apis,
        "cors": cors_for_host(cfg, svc.name),
    }


def drain_order(graph: list[Service[Any]]) -> list[Service[Any]]:
    """The graph's services with every caller before the services it calls (the
    supervisor drains them in this order); ``graph[0]`` is the entry and stays first."""
    by_name = {s.name: s for s in graph}
    done: set[str] = set()
    post: list[Service[Any]] = []

    def visit(svc: Service[Any]) -> None:
        if svc.name in done:
            return
        done.add(svc.name)
        for dep in svc.dependencies.values():
            if dep.on is not None and dep.url is None and dep.on.name in by_name:
                visit(by_name[dep.on.name])
        post.append(svc)

    for svc in graph:
        visit(svc)
    return post[::-1]


def service_plan(svc: Service[Any], cfg: dict[str, Any], entry: bool) -> ServicePlan:
    """What the service asks of the hardware, from its effective config."""
    raw = effective_config(svc)
    workers = cfg["workers"]
    override = os.environ.get(WORKERS_OVERRIDE_ENV)
    if entry and override:
        workers = int(override)  # --workers: the supervisor runs that many of the entry
    gpu_count = raw.get("workers") == "gpu_count"
    gpu = (cfg.get("resources") or {}).get("gpu")
    if gpu_count and gpu is None:
        gpu = workers if probed_gpus() else None
    return ServicePlan(
        name=svc.name,
        workers=workers,
        gpu=float(gpu) if gpu else None,
        cpu=cpu_amount((cfg.get("resources") or {}).get("cpu")),
        cpu_count_workers=raw.get("workers") == "cpu_count",
        gpu_per_worker=gpu_count or bool(raw.get("gpu_per_worker")) or os.environ.get(GPU_PER_WORKER_ENV) == "1",
        cpu_affinity=bool(raw.get("cpu_affinity")) or os.environ.get(CPU_AFFINITY_ENV) == "1",
    )


def add_placement(entry: Service[Any], graph: list[Service[Any]], descs: dict[str, dict[str, Any]]) -> list[str]:
    """Each description's ``placement`` (one per worker, only where there is
    something to place); returns the warnings to print. Raises PlacementError."""
    order = allocation_order(entry, graph)
    plans = [service_plan(s, descs[s.name], s is entry) for s in order]
    gpus, cpus = probed_gpus(), usable_cpus()
    placed = plan_placement(plans, gpus, cpus)
    for name, workers in placed.items():
        if any(w["env"] or w["cpus"] for w in workers):
            descs[name]["placement"] = workers
    return placement_warnings(plans, gpus, len(cpus))


def service_config_json(
    svc: Service[Any],
    graph: list[Service[Any]] | None = None,
    ports: dict[str, list[int]] | None = None,
    warnings: list[str] | None = None,
) -> str:
    """Compact JSON for the C host: name, workers, threads, traffic, resources, envs, apis;
    for the entry of a graph also ``graph``: every other service's description, callers first
    (with ``ports``, the loopback ports each dependency's workers listen on: ``--no-uds``).
    With ``warnings`` (a list to fill: the reporting worker's), also where each worker runs
    (``placement``, :mod:`bentohost._placement`)."""
    cfg = service_config(svc)
    services = graph if graph else [svc]
    if len(services) > 1:
        cfg["graph"] = [service_config(dep) for dep in drain_order(services)[1:]]
        for dep in cfg["graph"]:
            if ports and dep["name"] in ports:
                dep["ports"] = ports[dep["name"]]
    if warnings is not None:
        descs = {cfg["name"]: cfg, **{d["name"]: d for d in cfg.get("graph", [])}}
        warnings += add_placement(services[0], services, descs)
    return json.dumps(cfg, separators=(",", ":"))
