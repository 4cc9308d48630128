"""GPU and CPU placement (bentohost/_placement.py, csrc/supervisor/gpu.c, placement.c).

The allocation is checked against BentoML's own allocator tests, ported as data
(tests/unit/bentoml_io/test_allocator.py: 4 GPUs, 8 CPUs); the end-to-end tests
run real servers whose supervisor finds its GPUs through a stand-in CUDA runtime
(tests/c/fake_cudart.c) that reports the devices of FAKE_GPUS.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))
from bentohost._placement import (  # noqa: E402
    Gpu,
    GpuAllocator,
    PlacementError,
    ServicePlan,
    cpu_amount,
    cpu_ranges,
    plan_placement,
)

H200 = 150_000_000_000  # bytes: "139 GiB"
FOUR_H200 = ";".join(f"NVIDIA H200:{H200}:0:0" for _ in range(4))
GPUS4 = [Gpu("NVIDIA H200", H200)] * 4

# ----------------------------------------------------------------- BentoML's cases, as data

# (requests in order, the devices each gets); None: BentoML warns and invents an
# index past the last device, where bentohost refuses (PlacementError)
ASSIGN_CASES = {
    "whole": [(2, [0, 1]), (1, [2]), (1, [3]), (1, None)],
    "fractions": [(0.5, [0]), (1, [1]), (0.5, [0]), (0.5, [2])] + [(0.25, [3])] * 4 + [(1, None)],
}


@pytest.mark.parametrize("case", sorted(ASSIGN_CASES))
def test_assign_matches_bentoml(case):
    alloc = GpuAllocator(4)
    for amount, expected in ASSIGN_CASES[case]:
        if expected is None:
            with pytest.raises(PlacementError, match="asks for resources.gpu=1 but this machine has 4 GPUs"):
                alloc.assign(amount)
        else:
            assert alloc.assign(amount) == expected, (amount, alloc.slots)


def test_a_non_integer_above_one_is_refused():
    with pytest.raises(PlacementError, match="must be a whole number"):
        GpuAllocator(4).assign(1.5)


def test_oversubscribe_shares_the_least_used_devices():
    alloc = GpuAllocator(2, oversubscribe=True)
    assert alloc.assign(1) == [0]
    assert alloc.assign(1) == [1]
    assert alloc.assign(1) == [0]  # both taken: the least used, then the lowest index
    assert alloc.assign(2) == [1, 0]
    assert alloc.assign(0.5) == [1]


def plan(name, workers=1, gpu=None, cpu=None, cpu_count=False, per_worker=False, affinity=False):
    return ServicePlan(name, workers, gpu, cpu, cpu_count, per_worker, affinity)


def visible(placed, name):
    return [w["env"].get("CUDA_VISIBLE_DEVICES") for w in placed[name]]


# (services in allocation order, CUDA_VISIBLE_DEVICES of each worker per service)
ENV_CASES = {
    "gpu=2 twice": ([plan("Foo", gpu=2), plan("Foo2", gpu=2)], {"Foo": ["0,1"], "Foo2": ["2,3"]}),
    "fractions then whole": (
        [plan("Foo", gpu=0.5), plan("Foo2", gpu=0.5), plan("Bar", gpu=2)],
        {"Foo": ["0"], "Foo2": ["0"], "Bar": ["1,2"]},
    ),
    "cpu_count gets none": ([plan("Foo", workers=8, gpu=1, cpu_count=True)], {"Foo": [None] * 8}),
    "every worker the service's": (
        [plan("Foo", workers=2, gpu=2), plan("Bar", workers=2, gpu=0.5), plan("Bar2", workers=2, gpu=0.5)],
        {"Foo": ["0,1", "0,1"], "Bar": ["2", "2"], "Bar2": ["2", "2"]},
    ),
    # bentohost's own: --gpu-per-worker
    "per worker, one each": ([plan("Foo", workers=4, gpu=4, per_worker=True)], {"Foo": ["0", "1", "2", "3"]}),
    "per worker, two each": ([plan("Foo", workers=2, gpu=4, per_worker=True)], {"Foo": ["0,1", "2,3"]}),
    "per worker, round robin": (
        [plan("Foo", gpu=1), plan("Bar", workers=4, gpu=2, per_worker=True)],
        {"Foo": ["0"], "Bar": ["1", "2", "1", "2"]},
    ),
}


@pytest.mark.parametrize("case", sorted(ENV_CASES))
def test_worker_env_matches_bentoml(case):
    services, expected = ENV_CASES[case]
    placed = plan_placement(services, GPUS4, cpus=list(range(8)), environ={})
    assert {name: visible(placed, name) for name in expected} == expected


@pytest.mark.parametrize("environ", [{"CUDA_VISIBLE_DEVICES": "3"}, {"BENTOML_DISABLE_GPU_ALLOCATION": "1"}])
def test_allocation_off_when_the_user_places(environ):
    placed = plan_placement([plan("Foo", gpu=2)], GPUS4, cpus=[0], environ=environ)
    assert visible(placed, "Foo") == [None]


def test_no_gpu_at_all_runs_on_the_cpu():
    assert visible(plan_placement([plan("Foo", gpu=1)], [], cpus=[0], environ={}), "Foo") == [None]


def test_per_worker_needs_a_divisible_split():
    with pytest.raises(PlacementError, match="3 GPUs for 2 workers"):
        plan_placement([plan("Foo", workers=2, gpu=3, per_worker=True)], GPUS4, cpus=[0], environ={})


def test_cpu_affinity_gives_each_worker_its_share():
    services = [plan("A", workers=2, affinity=True), plan("B", workers=2, affinity=True)]
    placed = plan_placement(services, [], cpus=[2, 3, 4, 5, 6, 7, 8, 9], environ={"MKL_NUM_THREADS": "7"})
    assert [w["cpus"] for w in placed["A"] + placed["B"]] == [[2, 3], [4, 5], [6, 7], [8, 9]]
    first = placed["A"][0]
    assert first["env"] == {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "VECLIB_MAXIMUM_THREADS": "2",
                            "NUMEXPR_NUM_THREADS": "2"}  # the user's MKL_NUM_THREADS is kept
    assert first["describe"] == "CPUs 2-3"


def test_more_workers_than_cpus_wrap_around():
    placed = plan_placement([plan("A", workers=3, affinity=True)], [], cpus=[0, 1], environ={})
    assert [w["cpus"] for w in placed["A"]] == [[0], [1], [0]]


def test_resources_cpu_sets_the_thread_counts():
    placed = plan_placement([plan("A", cpu=cpu_amount("1500m"))], [], cpus=[0], environ={})
    assert placed["A"][0]["env"]["OMP_NUM_THREADS"] == "2"
    assert cpu_amount(2) == 2.0 and cpu_amount("0.5") == 0.5
    with pytest.raises(PlacementError):
        cpu_amount("lots")


def test_describe_names_devices_and_cpus():
    placed = plan_placement([plan("A", workers=2, gpu=2, affinity=True), plan("B", gpu=0.5)], GPUS4,
                            cpus=[0, 1], environ={})
    assert placed["A"][0]["describe"] == "GPUs 0,1 (NVIDIA H200, 140 GiB each), CPU 0"
    assert placed["B"][0]["describe"] == "GPU 2 (NVIDIA H200, 140 GiB, shared: 0.5 of it)"
    assert cpu_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


# ----------------------------------------------------------------- end to end, a stand-in CUDA


@pytest.fixture(scope="module")
def fake_cudart(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler to build the stand-in CUDA runtime")
    out = tmp_path_factory.mktemp("cuda") / "libcudart.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(REPO / "tests/c/fake_cudart.c")], check=True)
    return out


def gpu_env(lib: Path, gpus: str = FOUR_H200, **extra) -> dict:
    env = {"BENTOHOST_CUDA_RUNTIME": str(lib), "FAKE_GPUS": gpus, **extra}
    return env


@pytest.fixture(autouse=True)
def _no_inherited_placement(monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "BENTOML_DISABLE_GPU_ALLOCATION", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


def every_worker(srv, path: str, n: int, timeout: float = 30.0) -> dict[int, dict]:
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < n:
        r = srv.post(path, json_body={}, headers={"Connection": "close"})
        assert r.status_code == 200, r.text
        seen[r.json()["worker"]] = r.json()
    assert len(seen) == n, seen
    return seen


def test_graph_gets_bentoml_devices_and_logs_them(server_factory, fake_cudart):
    srv = server_factory("placement.py:Entry", env=gpu_env(fake_cudart))
    entry = every_worker(srv, "/where", 2)
    model = every_worker(srv, "/model_where", 2)
    # the entry first (GPU 0), then its dependency (the next two), every worker its service's
    assert [entry[i]["cuda"] for i in (1, 2)] == ["0", "0"]
    assert [model[i]["cuda"] for i in (1, 2)] == ["1,2", "1,2"]
    log = srv.log()
    assert re.search(r"GPU 3: NVIDIA H200, 140 GiB", log), log
    for name in ("1", "2"):
        assert f"worker {name}: GPU 0 (NVIDIA H200, 140 GiB)" in log, log
        assert f"worker Model/{name}: GPUs 1,2 (NVIDIA H200, 140 GiB each)" in log, log
    # worker 1 described the graph, then was started again with its GPU: not a failure
    assert "starting it again where it is placed" in log and "respawning" not in log, log


def test_gpu_per_worker_flag_gives_each_worker_its_own(server_factory, fake_cudart):
    srv = server_factory("placement.py:Entry", "--gpu-per-worker", env=gpu_env(fake_cudart))
    model = every_worker(srv, "/model_where", 2)
    assert [model[i]["cuda"] for i in (1, 2)] == ["1", "2"]


def test_gpu_count_is_one_worker_per_device(server_factory, fake_cudart):
    srv = server_factory("placement.py:OnePerGpu", env=gpu_env(fake_cudart))
    seen = every_worker(srv, "/where", 4)
    assert [seen[i]["cuda"] for i in (1, 2, 3, 4)] == ["0", "1", "2", "3"]


def test_fractions_share_and_set_threads(server_factory, fake_cudart):
    srv = server_factory("placement.py:Half", env=gpu_env(fake_cudart))
    seen = every_worker(srv, "/where", 2)
    assert [seen[i]["cuda"] for i in (1, 2)] == ["0", "0"]
    assert seen[1]["threads_env"]["OMP_NUM_THREADS"] == "2"  # resources.cpu 1500m
    assert "worker 2: GPU 0 (NVIDIA H200, 140 GiB, shared: 0.5 of it)" in srv.log()


def test_too_few_gpus_is_one_line_and_an_exit(server_factory, fake_cudart):
    one = f"NVIDIA H200:{H200}:0:0"
    srv = server_factory("placement.py:Entry", env=gpu_env(fake_cudart, one), wait_ready=False)
    code = srv.wait_exit(30)
    log = srv.log()
    assert code != 0, log
    assert "error: service Model asks for resources.gpu=2 but this machine has 1 GPU and 1 of them is given" in log
    assert "--gpu-oversubscribe" in log and "Traceback" not in log, log
    assert log.count("loading") == 1, log  # no crash loop


def test_oversubscribe_shares(server_factory, fake_cudart):
    one = f"NVIDIA H200:{H200}:0:0"
    srv = server_factory("placement.py:Entry", "--gpu-oversubscribe", env=gpu_env(fake_cudart, one))
    assert every_worker(srv, "/model_where", 2)[1]["cuda"] == "0"


def test_uneven_per_worker_split_is_refused(server_factory, fake_cudart):
    srv = server_factory("placement.py:Uneven", env=gpu_env(fake_cudart), wait_ready=False)
    assert srv.wait_exit(30) != 0
    assert "gpu_per_worker needs the GPU count to divide the worker count" in srv.log()


def test_user_cuda_visible_devices_turns_allocation_off(server_factory, fake_cudart):
    srv = server_factory("placement.py:Entry", env=gpu_env(fake_cudart, CUDA_VISIBLE_DEVICES="3"))
    assert {w["cuda"] for w in every_worker(srv, "/model_where", 2).values()} == {"3"}
    assert "worker 1:" not in srv.log()


def test_no_cuda_runtime_runs_on_the_cpu(server_factory, tmp_path):
    srv = server_factory("placement.py:Entry", env={"BENTOHOST_CUDA_RUNTIME": str(tmp_path / "none.so")})
    assert {w["cuda"] for w in every_worker(srv, "/where", 2).values()} == {None}
    assert "no GPU was found" in srv.log()


def test_a_hung_probe_times_out(server_factory, fake_cudart):
    srv = server_factory("placement.py:Plain", env=gpu_env(fake_cudart, FAKE_GPUS_HANG="1",
                                                           BENTOHOST_GPU_PROBE_TIMEOUT_MS="500"))
    assert "the GPU probe" in srv.log() and "did not answer" in srv.log()


def test_cpu_affinity_pins_workers_and_the_io_thread(server_factory):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    srv = server_factory("placement.py:Plain", "--cpu-affinity")
    me = every_worker(srv, "/where", 1)[1]
    assert me["cpus"] == cpus  # one worker: all of them
    assert me["threads_env"]["OMP_NUM_THREADS"] == str(len(cpus))
    # the I/O thread alone on the last of them
    assert [c for c in me["thread_cpus"].values() if c == [cpus[-1]]], me
    two = server_factory("placement.py:Plain", "--cpu-affinity", "--workers", "2")
    seen = every_worker(two, "/where", 2)
    assert seen[1]["cpus"] != seen[2]["cpus"] and all(len(w["cpus"]) == len(cpus) // 2 for w in seen.values())
    assert "worker 2: CPU" in two.log()
