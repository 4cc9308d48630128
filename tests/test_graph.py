"""A service graph served as one pool per service: the entry on TCP, every
dependency on private Unix sockets (one per worker) in a runtime directory that
lives as long as the server; per-service worker indices; the entry's /readyz
waits for the whole graph; SIGTERM drains pool after pool and exits 0."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import time
from pathlib import Path


from conftest import SERVICES

DIAMOND = str(SERVICES / "graph_diamond.py")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def post_unix(path: str, route: str, body: dict) -> tuple[int, dict]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("POST", route, json.dumps(body), {"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def runtime_dir(srv) -> Path:
    """The server's runtime directory, as its log names it."""
    m = re.search(r"dependencies listen on Unix sockets in (\S+)", srv.log())
    assert m, srv.log()
    return Path(m.group(1))


def _children(pid: int) -> list[int]:
    from conftest import children_of

    return children_of(pid)


def test_diamond_runs_one_pool_per_service(server_factory):
    srv = server_factory(f"{DIAMOND}:Entry")
    entry = srv.wait_all_workers(2)
    rundir = runtime_dir(srv)
    assert oct(rundir.stat().st_mode & 0o777) == "0o700"
    socks = sorted(p.name for p in rundir.iterdir())
    # Leaf is reached twice (through Left and Right) and still gets ONE pool of 2 workers.
    assert socks == ["Leaf-1.sock", "Leaf-2.sock", "Left-1.sock", "Right-1.sock"]
    seen: dict[str, dict[int, int]] = {}
    for name in socks:
        status, who = post_unix(str(rundir / name), "/who", {})
        assert status == 200, who
        seen.setdefault(who["service"], {})[who["worker_index"]] = who["pid"]
    assert set(seen["Leaf"]) == {1, 2} and set(seen["Left"]) == {1} and set(seen["Right"]) == {1}
    pids = [p for by_index in seen.values() for p in by_index.values()] + list(entry.values())
    assert len(set(pids)) == 6, f"every worker of every pool is its own process: {seen}, entry {entry}"
    assert len(_children(srv.proc.pid)) == 6
    log = srv.log()
    assert "service Leaf: 2 workers" in log and "worker Leaf/2 (pid" in log

    srv.signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0, srv.log()
    assert not rundir.exists(), "the runtime directory is removed on exit"
    assert "stopped" in srv.log()
    # (callers drained before their dependencies: test_graph_calls.py's two-hop SIGTERM test)


def test_entry_readyz_waits_for_every_service(server_factory):
    srv = server_factory(f"{SERVICES / 'graph_slow_leaf.py'}:SlowEntry", wait_ready=False)
    saw_503 = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = srv.get("/readyz", timeout=2)
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.05)
            continue
        if r.status_code == 503:
            saw_503 = True
        elif r.status_code == 200:
            break
        time.sleep(0.05)
    else:
        srv.fail("the entry never became ready")
    assert saw_503, "/readyz said ready before the 3 s dependency was"
    assert "worker SlowLeaf/1" in srv.log() and re.search(r"worker SlowLeaf/1 \(pid \d+\) ready", srv.log())
    assert srv.get("/livez").status_code == 200


def test_two_classes_with_one_name_is_a_clear_error(server_factory):
    srv = server_factory(f"{SERVICES / 'graph_conflict.py'}:Conflicted", wait_ready=False)
    code = srv.proc.wait(30)
    assert code != 0
    log = srv.log()
    assert "are both named 'Twin'" in log and "TwinA" in log and "TwinB" in log, log
    assert "Traceback" not in log


def test_development_keeps_dependencies_in_process(server_factory):
    srv = server_factory(f"{SERVICES / 'graph_calls.py'}:Front", "--development")
    srv.wait_all_workers(2)
    r = srv.post("/who", {})
    assert r.status_code == 200, r.text
    front, middle, model = r.json()
    # one pool: every hop is a plain Python call in the entry's own worker
    assert front["pid"] == middle["pid"] == model["pid"]
    assert "private sockets" not in srv.log() and "dependencies listen" not in srv.log()
    assert srv.post("/predict", {"x": [1, 2, 3]}).json() == 7.0
