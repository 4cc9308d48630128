"""GPU metrics in /metrics (issue 11): the supervisor's GPU monitor samples NVML
into the shared segment once a second, and any worker renders the
bentohost_gpu_* gauges from it.

NVML is tests/c/fake_nvml.c, built here into a temporary libnvidia-ml.so.1 and
named by BENTOHOST_NVML_LIBRARY; FAKE_GPUS says what its GPUs report. Without
that variable (and no NVIDIA driver on the test machine) there are no GPU
series at all. Skipped without a C compiler."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import GPU_MONITOR_COMM, children_of, pid_dead, processes_under, wait_for

FAKE_NVML = Path(__file__).resolve().parent / "c" / "fake_nvml.c"
GPUS = "NVIDIA H200:150000000000:1073741824:37;NVIDIA H200:150000000000:42000000000:100"
FAMILIES = ("bentohost_gpu_memory_used_bytes", "bentohost_gpu_memory_total_bytes",
            "bentohost_gpu_utilization_ratio")

CC = shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler for the stand-in NVML")
    lib = tmp_path_factory.mktemp("nvml") / "libnvidia-ml.so.1"
    r = subprocess.run([CC, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2",
                        "-shared", "-fPIC", str(FAKE_NVML), "-o", str(lib)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return lib


def gpu_samples(srv) -> tuple[dict, dict]:
    """{(name, gpu): value} of the GPU families and {family: type}, parsed."""
    r = requests.get(srv.url + "/metrics", timeout=10, headers={"Connection": "close"})
    assert r.status_code == 200, r.text
    values, types = {}, {}
    for fam in text_string_to_metric_families(r.text):
        if fam.name.startswith("bentohost_gpu_"):
            types[fam.name] = fam.type
            for s in fam.samples:
                values[(s.name, s.labels["gpu"])] = s.value
    return values, types


def test_gpu_series_from_nvml(server_factory, fake_nvml):
    srv = server_factory("basic.py:Basic", "--workers", "2",
                         env={"BENTOHOST_NVML_LIBRARY": str(fake_nvml), "FAKE_GPUS": GPUS})
    deadline = time.monotonic() + 10
    values, types = gpu_samples(srv)
    while len(values) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
        values, types = gpu_samples(srv)
    if len(values) < 6:
        srv.fail(f"GPU series did not appear within 10s: {values}")
    assert types == {name: "gauge" for name in FAMILIES}, types
    assert values == {
        ("bentohost_gpu_memory_used_bytes", "0"): 1073741824,
        ("bentohost_gpu_memory_total_bytes", "0"): 150000000000,
        ("bentohost_gpu_utilization_ratio", "0"): 0.37,
        ("bentohost_gpu_memory_used_bytes", "1"): 42000000000,
        ("bentohost_gpu_memory_total_bytes", "1"): 150000000000,
        ("bentohost_gpu_utilization_ratio", "1"): 1.0,
    }, values
    # the monitor: one child of the supervisor beside its workers
    kids = processes_under(srv.pid)
    assert [c for _, c, st in kids if st != "Z"].count(GPU_MONITOR_COMM) == 1, kids
    assert len(children_of(srv.pid)) == 2, kids
    monitor = next(p for p, c, st in kids if c == GPU_MONITOR_COMM and st != "Z")
    # it keeps none of the supervisor's descriptors (the listening socket among them)
    assert sorted(os.listdir(f"/proc/{monitor}/fd")) == ["0", "1", "2"], os.listdir(f"/proc/{monitor}/fd")
    # still sampled seconds later (a stale sample would drop out after ~5 s)
    time.sleep(6)
    assert len(gpu_samples(srv)[0]) == 6
    # and it ends with the supervisor, however that ends
    os.kill(srv.pid, signal.SIGKILL)
    wait_for(lambda: pid_dead(monitor), 10, what="the GPU monitor to end with the supervisor")


def test_no_gpu_series_without_nvml(server_factory):
    srv = server_factory("basic.py:Basic", env={"BENTOHOST_NVML_LIBRARY": "/nonexistent/libnvidia-ml.so.1"})
    r = requests.get(srv.url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert "bentohost_gpu_" not in r.text
    list(text_string_to_metric_families(r.text))  # still valid text
    # nothing left behind: no monitor process, live or zombie
    kids = processes_under(srv.pid)
    assert GPU_MONITOR_COMM not in [c for _, c, _ in kids] and len(kids) == 1, kids
    # and nothing said about it: a host without a GPU is no error
    assert "gpu" not in srv.log().lower() and "libnvidia" not in srv.log(), srv.log()
