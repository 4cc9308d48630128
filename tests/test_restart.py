"""Production serving: the rolling restart on SIGHUP (one worker at a time, no failed
request, /readyz 200 throughout), a broken new version that keeps the old workers,
coalesced SIGHUPs, --timeout-graceful-shutdown for replaced workers, a second
SIGTERM that forces the exit, and --shutdown-delay.

Load: tests/loadgen.py (64 keep-alive clients on threads, /readyz on fresh connections)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time

import pytest
import requests

from conftest import SERVICES, pid_dead, wait_for
from loadgen import Load, ReadyPoller, long_request


def _passes_done(srv, why: str = "SIGHUP") -> int:
    return srv.log().count(f"restart ({why}) done")


def _restart_under_load(srv, path: str, body: bytes, check, passes: int = 1, settle: float = 1.0):
    load = Load(srv.host, srv.port, path, body, clients=64, check=check).start()
    ready = ReadyPoller(srv.host, srv.port).start()
    try:
        time.sleep(settle)
        before = load.ok + len(load.failures)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: _passes_done(srv) >= passes, 90, interval=0.1, what="the restart to finish")
        time.sleep(settle)
    finally:
        load.stop()
        ready.stop()
    return load, ready, before


def test_sighup_replaces_every_worker_under_load(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "2")
    old = srv.wait_all_workers(2)
    load, ready, _ = _restart_under_load(
        srv, "/add", b'{"a": 40, "b": 2}', lambda d: d == b"42")
    assert not load.failures, (len(load.failures), load.failures[:10], srv.log())
    assert load.ok > 500, load.ok
    assert ready.statuses and not ready.not_ready(), (ready.not_ready()[:10], srv.log())
    new = srv.wait_all_workers(2)
    assert set(new) == {1, 2}
    assert set(new.values()).isdisjoint(old.values()), (old, new)
    # the old processes drained and exited; only the new ones are left
    wait_for(lambda: sorted(srv.worker_pids()) == sorted(new.values()), 20, what="the old workers to exit")
    log = srv.log()
    for index, pid in old.items():
        assert re.search(rf"worker {index} \(pid \d+\) ready in [\d.]+s; pid {pid} drains", log), log
        assert f"worker {index} (pid {pid}), replaced, drained and exited" in log, log
    # a planned replacement is not a crash
    from conftest import metric
    assert metric(srv, "bentohost_worker_restarts_total") == 0
    assert metric(srv, "bentoml_service_request_total", endpoint="/add", http_response_code=200) >= load.ok


@pytest.mark.parametrize("flags", [[], ["--no-uds"]], ids=["unix-sockets", "no-uds"])
def test_sighup_restarts_a_graph_under_load(server_factory, flags):
    """Front (2) -> Middle (1) -> Model (2): every pool is replaced, the pool of one too,
    while calls cross both hops; the private sockets (or loopback ports) never refuse a caller."""
    srv = server_factory(f"{SERVICES / 'graph_calls.py'}:Front", *flags)
    before = srv.post("/who", {}).json()
    load, ready, _ = _restart_under_load(
        srv, "/predict", b'{"x": [1.0, 2.0, 3.0]}', lambda d: float(d) == 7.0)
    assert not load.failures, (len(load.failures), load.failures[:10], srv.log())
    assert load.ok > 200, load.ok
    assert not ready.not_ready(), (ready.not_ready()[:10], srv.log())
    log = srv.log()
    assert "restart (SIGHUP): replacing 5 workers one at a time" in log, log
    for name in ("Model/1", "Model/2", "Middle/1", "1", "2"):
        assert re.search(rf"worker {re.escape(name)} \(pid \d+\) ready in [\d.]+s; pid \d+ drains", log), (name, log)
    # dependencies first: a new caller finds new callees
    during = log[log.index("restart (SIGHUP): replacing"):]
    assert during.index("worker Model/1 (pid") < during.index("worker Middle/1 (pid") < during.index("worker 1 (pid")
    after = srv.post("/who", {}).json()
    assert {w["pid"] for w in after}.isdisjoint(w["pid"] for w in before), (before, after)


def _copy_service(tmp_path, name: str = "svc.py") -> str:
    dst = tmp_path / name
    shutil.copy(SERVICES / "basic.py", dst)
    return str(dst)


def test_broken_new_version_keeps_the_old_workers(server_factory, tmp_path):
    path = _copy_service(tmp_path)
    srv = server_factory(f"{path}:Basic", "--workers", "2")
    old = srv.wait_all_workers(2)
    good = open(path).read()
    with open(path, "a") as f:
        f.write("\ndef broken(:\n")  # a syntax error in the new version
    ready = ReadyPoller(srv.host, srv.port).start()
    try:
        srv.signal(signal.SIGHUP)
        wait_for(lambda: "restart aborted" in srv.log(), 30, what="the restart to be aborted")
        for _ in range(20):
            assert srv.post("/add", {"a": 1, "b": 1}, timeout=10).json() == 2
    finally:
        ready.stop()
    assert not ready.not_ready(), ready.not_ready()[:10]
    assert srv.wait_all_workers(2) == old
    log = srv.log()
    aborted = [line for line in log.splitlines() if "restart aborted" in line]
    assert len(aborted) == 1, log
    assert "worker 2 (pid" in aborted[0] or "worker 1 (pid" in aborted[0], aborted
    assert "does not import" in aborted[0] and "the old workers keep serving" in aborted[0], aborted
    assert log.count("SyntaxError") == 1, log
    assert "restart (SIGHUP) done" not in log
    # the fixed version goes through
    with open(path, "w") as f:
        f.write(good)
    srv.signal(signal.SIGHUP)
    wait_for(lambda: _passes_done(srv) == 1, 60, what="the second restart")
    new = srv.wait_all_workers(2)
    assert set(new.values()).isdisjoint(old.values())


def test_sighups_during_a_restart_are_coalesced(server_factory):
    srv = server_factory("slow_init.py:SlowInit", "--workers", "2", env={"SLOW_INIT_SECONDS": "1"})
    srv.signal(signal.SIGHUP)
    wait_for(lambda: "restart (SIGHUP): replacing" in srv.log(), 10, what="the restart to begin")
    for _ in range(4):
        srv.signal(signal.SIGHUP)
        time.sleep(0.05)
    wait_for(lambda: _passes_done(srv) == 2, 60, what="two passes")
    time.sleep(1.5)
    log = srv.log()
    assert _passes_done(srv) == 2, log  # one more pass for four SIGHUPs, not four
    assert log.count("a restart is running; another one follows it") == 1, log
    assert srv.post("/ping", {}).text == "pong"


def test_replaced_worker_honours_the_graceful_timeout(server_factory, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    srv = server_factory("basic.py:Basic", "--workers", "1", "--timeout-graceful-shutdown", "1",
                         env={"BH_TEST_MARK_DIR": marks})
    old = srv.whoami()["pid"]
    t, outcome = long_request(srv.url, 60)
    wait_for(lambda: os.listdir(marks), 10, what="the long request to start")
    srv.signal(signal.SIGHUP)
    wait_for(lambda: _passes_done(srv) == 1, 30, what="the restart")
    t0 = time.monotonic()
    wait_for(lambda: pid_dead(old), 15, what="the replaced worker to be stopped")
    assert time.monotonic() - t0 < 10, "--timeout-graceful-shutdown 1 was not applied to the replaced worker"
    t.join(10)
    assert outcome and outcome[0] != 200, outcome
    assert srv.whoami()["pid"] != old
    assert srv.proc.poll() is None


def test_second_sigterm_forces_a_fast_exit(server_factory, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    srv = server_factory("basic.py:Basic", "--workers", "2", "--timeout-graceful-shutdown", "60",
                         env={"BH_TEST_MARK_DIR": marks})
    workers = srv.worker_pids()
    t, outcome = long_request(srv.url, 60)
    wait_for(lambda: os.listdir(marks), 10, what="the long request to start")
    srv.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.proc.poll() is None, "the first SIGTERM did not wait for the in-flight request"
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    code = srv.wait_exit(10)
    assert time.monotonic() - t0 < 3, srv.log()
    assert code != 0, srv.log()
    assert "second SIGTERM: killing the workers now" in srv.log()
    assert all(pid_dead(p) for p in workers)
    t.join(10)
    assert outcome and outcome[0] != 200, outcome  # cut off, as asked


def test_shutdown_delay_serves_with_readyz_503_then_exits_zero(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "2", "--shutdown-delay", "2")
    srv.wait_all_workers(2)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    seen_503 = served = 0
    while time.monotonic() - t0 < 1.6:
        r = requests.get(srv.url + "/readyz", timeout=5)  # a new connection each time
        assert r.status_code in (200, 503), r
        seen_503 += r.status_code == 503
        assert requests.post(srv.url + "/add", json={"a": 1}, timeout=5).json() == 3
        served += 1
        time.sleep(0.05)
    assert seen_503 > 0 and served > 5
    assert requests.get(srv.url + "/readyz", timeout=5).status_code == 503
    code = srv.wait_exit(20)
    elapsed = time.monotonic() - t0
    assert code == 0, srv.log()
    assert elapsed >= 2.0, elapsed
    assert "--shutdown-delay" in srv.log()


def test_second_sigterm_during_the_shutdown_delay_exits_at_once(server_factory):
    srv = server_factory("basic.py:Basic", "--workers", "1", "--shutdown-delay", "30")
    srv.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.post("/add", {"a": 1}).json() == 3
    t0 = time.monotonic()
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(10) != 0
    assert time.monotonic() - t0 < 3


def test_metrics_add_up_across_a_restart(server_factory):
    """The new worker writes the twin slot: the totals keep counting, never go back."""
    from conftest import metric
    srv = server_factory("basic.py:Basic", "--workers", "1")
    for _ in range(20):
        srv.post("/add", {"a": 1})
    before = metric(srv, "bentoml_service_request_total", endpoint="/add")
    srv.signal(signal.SIGHUP)
    wait_for(lambda: _passes_done(srv) == 1, 30, what="the restart")
    assert metric(srv, "bentoml_service_request_total", endpoint="/add") == before
    for _ in range(5):
        srv.post("/add", {"a": 1})
    assert metric(srv, "bentoml_service_request_total", endpoint="/add") == before + 5
    assert json.loads(srv.post("/whoami", {}).text)["worker_index"] == 1
