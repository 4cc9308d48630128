"""GPU placement on real GPUs: torch in each worker, CUDA_VISIBLE_DEVICES per worker, the supervisor's log.

tests/test_placement.py checks the allocation against a stand-in CUDA runtime; this file checks
it where the devices are real (the lent H200 machine: bench/device/run.sh runs it). It skips
unless ``nvidia-smi`` is on PATH, ``torch`` imports and ``torch.cuda.is_available()``.

Each case writes a service into tmp_path with ``@bentohost.service(workers=W, resources={"gpu": G})``
whose ``__init__`` puts a tensor on ``cuda:{worker_index-1}`` (the BentoML pattern: every worker
sees all of the service's GPUs) or on ``cuda:0`` with ``--gpu-per-worker`` (each worker sees its
own), starts a real server, reaches every worker over fresh connections and checks, per worker,
CUDA_VISIBLE_DEVICES, the tensor's device, the physical GPU behind it (by UUID, against
``nvidia-smi``) and the supervisor's placement line ``worker i: GPU n (NAME``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no nvidia-smi: not a GPU machine", allow_module_level=True)
torch = pytest.importorskip("torch", reason="torch is not importable")
if not torch.cuda.is_available():
    pytest.skip("torch.cuda.is_available() is False", allow_module_level=True)

# A worker imports torch and makes a CUDA context before /readyz: far slower than the 30 s default.
READY_TIMEOUT = 240.0


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str


@dataclass(frozen=True)
class Case:
    workers: int
    gpus: int
    per_worker: bool

    @property
    def id(self) -> str:
        return f"w{self.workers}-g{self.gpus}" + ("-per-worker" if self.per_worker else "")


# The first two fit one GPU (the H200 machine); the rest need more and check distinct devices.
CASES = [
    Case(workers=1, gpus=1, per_worker=False),
    Case(workers=2, gpus=1, per_worker=True),  # 2 workers, 1 GPU: both share GPU 0 in turn
    Case(workers=2, gpus=2, per_worker=False),  # both see "0,1", worker i uses cuda:i-1
    Case(workers=2, gpus=2, per_worker=True),  # worker 1 sees "0", worker 2 sees "1"
    Case(workers=4, gpus=2, per_worker=True),  # round robin: 0, 1, 0, 1
    Case(workers=4, gpus=4, per_worker=True),
]


def physical_gpus() -> list[Gpu]:
    """The machine's GPUs as nvidia-smi numbers them (it ignores CUDA_VISIBLE_DEVICES, as the supervisor does)."""
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,name,uuid", "--format=csv,noheader"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    gpus = []
    for line in out.strip().splitlines():
        index, name, uuid = (part.strip() for part in line.split(",", 2))
        gpus.append(Gpu(int(index), name, uuid))
    return gpus


def service_source(case: Case) -> str:
    """A service that puts a tensor on its GPU at start and reports where it is."""
    device = '"cuda:0"' if case.per_worker else 'f"cuda:{bentohost.server_context.worker_index - 1}"'
    return textwrap.dedent(f"""\
        import os

        import torch

        import bentohost


        def _uuid(device) -> str | None:
            # as nvidia-smi prints it: torch gives the bare UUID
            u = getattr(torch.cuda.get_device_properties(device), "uuid", None)
            if u is None:
                return None
            return str(u) if str(u).startswith(("GPU-", "MIG-")) else "GPU-" + str(u)


        @bentohost.service(workers={case.workers}, resources={{"gpu": {case.gpus}}})
        class GpuWhere:
            def __init__(self) -> None:
                self.device = torch.device({device})
                torch.cuda.set_device(self.device)
                self.t = torch.zeros(1, device=self.device)

            @bentohost.api
            def where(self) -> dict:
                # torch's current device is per thread: report the tensor's device too, set at start.
                return {{
                    "worker": bentohost.server_context.worker_index,
                    "pid": os.getpid(),
                    "current_device": torch.cuda.current_device(),
                    "tensor_device": self.t.device.index,
                    "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "name": torch.cuda.get_device_name(self.device),
                    "uuid": _uuid(self.device),
                    "one": float((self.t + 1).item()),
                }}
        """)


def expected_visible(case: Case, worker: int) -> str:
    """CUDA_VISIBLE_DEVICES of worker (1-based) for a service that is alone on the machine."""
    if not case.per_worker:
        return ",".join(str(g) for g in range(case.gpus))
    per = max(1, case.gpus // case.workers)  # GPUs per worker; fewer GPUs than workers: shared in turn
    first = ((worker - 1) * per) % case.gpus
    return ",".join(str(first + k) for k in range(per))


def every_worker(srv, n: int, timeout: float = 60.0) -> dict[int, dict]:
    """POST /where on fresh connections until each worker 1..n answered."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < n:
        r = srv.post("/where", json_body={}, headers={"Connection": "close"}, timeout=60)
        assert r.status_code == 200, r.text
        seen[r.json()["worker"]] = r.json()
    if len(seen) < n:
        srv.fail(f"only workers {sorted(seen)} of 1..{n} answered within {timeout:.0f}s")
    return seen


def placement_line(worker: int, visible: str, name: str) -> str:
    """The start of the supervisor's line for a worker: `worker 2: GPU 1 (NVIDIA H200` or `GPUs 0,1 (...`."""
    word = "GPUs" if "," in visible else "GPU"
    return f"worker {worker}: {word} {visible} ({name}"


@pytest.fixture(autouse=True)
def _no_inherited_placement(monkeypatch):
    # A CUDA_VISIBLE_DEVICES in the test's environment would turn the allocation off (as BentoML does).
    for name in ("CUDA_VISIBLE_DEVICES", "BENTOML_DISABLE_GPU_ALLOCATION"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_worker_gets_its_gpu(case: Case, server_factory, tmp_path: Path):
    gpus = physical_gpus()
    if len(gpus) < case.gpus:
        pytest.skip(f"needs {case.gpus} GPUs, this machine has {len(gpus)}")
    (tmp_path / "gpu_where.py").write_text(service_source(case))
    args = ["--workers", str(case.workers)] + (["--gpu-per-worker"] if case.per_worker else [])
    srv = server_factory(f"{tmp_path / 'gpu_where.py'}:GpuWhere", *args, start=False)
    srv.start(timeout=READY_TIMEOUT)
    seen = every_worker(srv, case.workers)
    log = srv.log()
    for worker in range(1, case.workers + 1):
        got = seen[worker]
        visible = expected_visible(case, worker)
        physical = gpus[int(visible.split(",")[0 if case.per_worker else worker - 1])]
        want_device = 0 if case.per_worker else worker - 1
        assert got["visible"] == visible, (worker, got, log)
        assert got["tensor_device"] == want_device, (worker, got)
        assert got["name"] == physical.name, (worker, got, physical)
        if got["uuid"] is not None:  # torch >= 2.0: the physical device behind cuda:N
            assert got["uuid"] == physical.uuid, (worker, got, physical)
        assert got["one"] == 1.0, got
        assert placement_line(worker, visible, physical.name) in log, (placement_line(worker, visible, physical.name),
                                                                        log)
    if case.per_worker and case.gpus >= case.workers:
        # one GPU each: no two workers on the same physical device
        assert len({seen[w]["uuid"] or seen[w]["visible"] for w in seen}) == case.workers, seen
