"""Calls across pools: `depends()` resolves to a proxy whose calls the caller
worker's I/O thread makes with the C client over the dependency's private Unix
sockets, with BentoML's pickle on the wire; sync and async on either side, numpy
across a hop, errors that keep their status, the public port refusing pickle,
a killed dependency (503, then recovery), and SIGTERM through two hops."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import pytest
import requests

from conftest import SERVICES, children_of, wait_for

CALLS = f"{SERVICES / 'graph_calls.py'}:Front"


@pytest.fixture(scope="module")
def chain(module_server_factory):
    srv = module_server_factory(CALLS)
    srv.wait_all_workers(2)
    return srv


def post(srv, path: str, body: dict, **kw) -> requests.Response:
    return requests.post(srv.url + path, json=body, timeout=kw.pop("timeout", 20), **kw)


@pytest.mark.parametrize("path,expected", [
    ("/predict", 7.0),           # sync -> sync -> sync (two hops)
    ("/apredict", 13.0),         # async -> async -> async
    ("/sync_to_async", 12.0),    # a sync API calling an async one with .to_sync
    ("/async_to_sync", 6.0),     # an async API calling a sync one with .to_async
])
def test_calls_across_hops(chain, path, expected):
    r = post(chain, path, {"x": [1, 2, 3]})
    assert r.status_code == 200, r.text
    assert r.json() == expected


def test_each_hop_runs_in_its_own_pool(chain):
    r = post(chain, "/who", {})
    assert r.status_code == 200, r.text
    front, middle, model = r.json()
    assert [front["service"], middle["service"], model["service"]] == ["Front", "Middle", "Model"]
    assert len({front["pid"], middle["pid"], model["pid"]}) == 3


def test_calls_spread_over_the_dependency_workers(chain):
    seen = set()
    for _ in range(40):
        r = post(chain, "/who", {})
        seen.add(r.json()[2]["worker_index"])
    assert seen == {1, 2}, f"Model's two workers should both get calls: {seen}"


def test_numpy_crosses_a_hop(chain):
    r = post(chain, "/matmul", {"n": 64})
    assert r.status_code == 200, r.text
    shape, total, dtype = r.json()
    assert shape == [64, 64] and dtype == "float32" and total > 0


@pytest.mark.parametrize("n", [16, 512])  # 1 KiB and 1 MiB: the big one is read without a copy
def test_arrays_across_a_hop_are_writable_on_both_sides(chain, n):
    r = post(chain, "/scale", {"n": n})
    assert r.status_code == 200, r.text
    assert r.json() == [[n, n], 3.0 * n * n, True]


@pytest.mark.parametrize("kind,status,text", [
    ("invalid", 400, "x must not be empty"),
    ("missing", 404, "no such model"),
    ("boom", 500, "An unexpected error has occurred"),
])
def test_errors_keep_their_meaning(chain, kind, status, text):
    r = post(chain, "/fail", {"kind": kind})
    assert r.status_code == status, r.text
    assert text in r.text
    assert "secret detail" not in r.text


def test_public_port_refuses_pickle_and_never_unpickles(chain, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    r = requests.post(chain.url + "/predict", data=pickle.dumps({"x": Evil()}),
                      headers={"content-type": "application/vnd.bentoml+pickle"}, timeout=10)
    assert r.status_code == 415, r.text
    time.sleep(0.5)
    assert not marker.exists()


def test_killed_dependency_gives_503_then_recovers(server_factory):
    srv = server_factory(CALLS)
    srv.wait_all_workers(2)
    assert post(srv, "/predict", {"x": [1]}).status_code == 200
    middle = [p for p in children_of(srv.proc.pid) if _service_of(srv, p) == "Middle"]
    assert len(middle) == 1
    os.kill(middle[0], signal.SIGKILL)
    statuses = [post(srv, "/predict", {"x": [1]}).status_code for _ in range(3)]
    assert set(statuses) <= {200, 503}, statuses
    # it is respawned at once and the graph recovers by itself
    wait_for(lambda: post(srv, "/predict", {"x": [1]}).status_code == 200, 20, what="recovery")
    assert all(post(srv, "/predict", {"x": [1]}).status_code == 200 for _ in range(10))


def _service_of(srv, pid: int) -> str | None:
    import re

    for line in srv.log().splitlines():
        m = re.search(r"worker (\w+)/\d+ \(pid (\d+)\)", line)
        if m and int(m.group(2)) == pid:
            return m.group(1)
    return None


def test_sigterm_drains_through_two_hops(server_factory):
    srv = server_factory(CALLS)
    srv.wait_all_workers(2)
    results: list[int] = []

    def caller() -> None:
        for _ in range(30):
            try:
                results.append(post(srv, "/predict", {"x": [1, 2]}).status_code)
            except requests.ConnectionError:
                return  # the entry stopped accepting: not an accepted request

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    srv.signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert srv.proc.wait(30) == 0, srv.log()
    assert results and all(s == 200 for s in results), results


def test_caller_budget_travels_with_the_call(chain):
    r = post(chain, "/budget", {})
    assert r.status_code == 200, r.text
    left = r.json()
    # Front's traffic.timeout is 60 s: the dependency is told what is left of it
    assert 50 < left <= 60.0, left


def test_client_leaving_the_entry_cancels_the_call_in_the_dependency(server_factory, tmp_path):
    srv = server_factory(CALLS, env={"GRAPH_MARK_DIR": str(tmp_path)})
    srv.wait_all_workers(2)
    import socket as socketlib

    body = b'{"seconds": 20}'
    s = socketlib.create_connection((srv.host, srv.port))
    s.sendall(b"POST /aslow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(1.0)
    # gone for good (a reset; a plain FIN is a half-close that still gets its answer)
    s.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    wait_for(lambda: (tmp_path / "model-cancelled").exists(), 10,
             what="the dependency's call to be cancelled when the entry's client left")


def test_entry_metrics_carry_every_service(chain):
    from prometheus_client.parser import text_string_to_metric_families

    assert post(chain, "/predict", {"x": [1]}).status_code == 200
    r = requests.get(chain.url + "/metrics", timeout=10)
    assert r.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    totals = fams["bentoml_service_request"].samples
    by_service = {(s.labels["service_name"], s.labels["endpoint"]) for s in totals
                  if s.name.endswith("_total") and s.value > 0}
    # the call went Front -> Middle -> Model: each counted it under its own name
    assert {("Front", "/predict"), ("Middle", "/predict"), ("Model", "/predict")} <= by_service, by_service
    restarts = {s.labels["service_name"] for s in fams["bentohost_worker_restarts"].samples}
    assert restarts == {"Front", "Middle", "Model"}
