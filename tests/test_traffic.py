"""traffic.max_concurrency (exact and global) and traffic.concurrency (issue 3).

Services: tests/services/traffic_limit.py (max_concurrency=4, async API that records
its own start/end), traffic_concurrency.py (concurrency=2), traffic_threads.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RawConn, children_of, pid_dead, raw_request, wait_for

LIMIT = 4
TOO_MANY = {"error": "Too many requests"}


# --------------------------------------------------------------------------- helpers


class Result:
    def __init__(self, index, status=None, headers=None, body=b"", elapsed=None, error=None):
        self.index = index
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.elapsed = elapsed
        self.error = error

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Result #{self.index} {self.status} {self.body[:120]!r} {self.elapsed} err={self.error!r}>"


def burst(srv, path: str, bodies: list, timeout: float = 30.0) -> list[Result]:
    """Send one POST per body, each on its own fresh connection, all released at once.

    Connections are opened before the barrier, so the requests really arrive together."""
    n = len(bodies)
    results: list[Result | None] = [None] * n
    conns = [RawConn(srv.host, srv.port, timeout=timeout) for _ in range(n)]
    barrier = threading.Barrier(n)

    def one(i: int):
        c = conns[i]
        payload = raw_request("POST", path, json.dumps(bodies[i]))
        try:
            barrier.wait(timeout)
            t0 = time.monotonic()
            c.send(payload)
            r = c.read_response()
            results[i] = Result(i, r.status, r.headers, r.body, time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001
            results[i] = Result(i, error=exc)
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return results  # type: ignore[return-value]


def start_burst(srv, path, bodies, timeout=30.0):
    """``burst`` in a background thread; returns (thread, holder) where holder[0] gets the results."""
    holder: list = []
    t = threading.Thread(target=lambda: holder.append(burst(srv, path, bodies, timeout)), daemon=True)
    t.start()
    return t, holder


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = []
    for s, e in intervals:
        events.append((s, 1))
        events.append((e, -1))
    events.sort(key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same instant
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def read_intervals(log_dir: Path) -> list[tuple[float, float, int]]:
    out = []
    for p in sorted(log_dir.glob("worker-*.log")):
        for line in p.read_text().splitlines():
            if line.strip():
                s, e, pid = line.split()
                out.append((float(s), float(e), int(pid)))
    return out


def metric_samples(text: str):
    """[(sample_name, labels, value)] from Prometheus text, parsed by prometheus_client."""
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append((s.name, dict(s.labels), s.value))
    return out


def in_progress(srv, endpoint: str) -> float:
    r = srv.get("/metrics", timeout=5)
    assert r.status_code == 200, r.text
    return sum(
        v
        for name, labels, v in metric_samples(r.text)
        if name == "bentoml_service_request_in_progress" and labels.get("endpoint") == endpoint
    )


def started_markers(log_dir: Path) -> list[tuple[int, int]]:
    """[(pid, worker_index)] for every call of /work that has started."""
    out = []
    for p in log_dir.glob("started-*"):
        pid = int(p.name.split("-")[1])
        out.append((pid, int(p.read_text() or 0)))
    return out


def all_workers(srv, n: int, timeout: float = 30.0) -> dict[int, int]:
    """Like Server.wait_all_workers, but 4 calls at a time and tolerant of 429s."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def who():
        r = requests.post(srv.url + "/whoami", timeout=10)
        return r.json() if r.status_code == 200 else None

    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(2) as ex:
        while time.monotonic() < deadline:
            for res in ex.map(lambda _: who(), range(4)):
                if res:
                    seen[res["worker_index"]] = res["pid"]
            if set(seen) >= set(range(1, n + 1)):
                return seen
    srv.fail(f"not every worker index 1..{n} answered within {timeout}s; saw {seen}")


@pytest.fixture
def limited(server_factory, tmp_path):
    log_dir = tmp_path / "traffic"
    log_dir.mkdir()
    srv = server_factory("traffic_limit.py:Limited", "--workers", "3", env={"TRAFFIC_LOG_DIR": log_dir})
    srv.log_dir = log_dir
    srv.index_to_pid = all_workers(srv, 3)
    return srv


# --------------------------------------------------------------------------- max_concurrency


def test_max_concurrency_is_global_across_workers(limited):
    srv = limited
    samples: list[float] = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            try:
                samples.append(in_progress(srv, "/work"))
            except Exception as exc:  # noqa: BLE001
                samples.append(("error", repr(exc)))  # type: ignore[arg-type]
            time.sleep(0.02)

    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    try:
        results = burst(srv, "/work", [{"seconds": 0.6}] * 40)
    finally:
        stop.set()
        st.join(10)

    errors = [r for r in results if r.error is not None]
    assert not errors, errors
    ok = [r for r in results if r.status == 200]
    rejected = [r for r in results if r.status == 429]
    assert len(ok) + len(rejected) == 40, [r for r in results if r.status not in (200, 429)]
    assert len(ok) >= LIMIT, results  # at least the limit is admitted...
    assert len(rejected) >= 40 - 2 * LIMIT, results  # ...and the burst is far over it

    # measured from the API's own start/end times
    intervals = read_intervals(srv.log_dir)
    assert len(intervals) == len(ok), (intervals, ok)
    peak = max_overlap([(s, e) for s, e, _ in intervals])
    assert peak <= LIMIT, f"{peak} calls ran at once (limit {LIMIT}): {sorted(intervals)}"
    assert peak == LIMIT, f"the limit was never reached: peak {peak}, {sorted(intervals)}"
    # BentoML would split 4 over 3 workers as 2 per worker; here the count is global
    pids = {pid for _, _, pid in intervals}
    assert pids <= set(srv.index_to_pid.values())

    # measured from /metrics, sampled during the run
    bad = [s for s in samples if not isinstance(s, (int, float))]
    assert not bad, f"/metrics failed while saturated: {bad[:3]}"
    assert samples, "no /metrics sample taken"
    assert max(samples) <= LIMIT, f"in_progress samples: {samples}"
    assert max(samples) >= 1, f"in_progress never showed the running calls: {samples}"


def test_rejections_are_429_fast_with_retry_after(limited):
    srv = limited
    results = burst(srv, "/work", [{"seconds": 0.6}] * 40)
    rejected = [r for r in results if r.status == 429]
    assert rejected, results
    for r in rejected:
        assert r.json() == TOO_MANY, r
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        assert "retry-after" in r.headers, r.headers
        assert r.headers["retry-after"].strip().isdigit(), r.headers
        assert r.elapsed < 0.2, f"429 took {r.elapsed:.3f}s: {r}"
    # the rejected calls never reached Python
    assert len(read_intervals(srv.log_dir)) == len([r for r in results if r.status == 200])


def test_health_and_metrics_exempt_while_saturated(limited):
    srv = limited
    t, holder = start_burst(srv, "/work", [{"seconds": 3.0}] * LIMIT)
    try:
        wait_for(lambda: len(started_markers(srv.log_dir)) == LIMIT, 10, what="4 slow calls running")
        # saturated: a new API call is refused...
        r = srv.post("/work", {"seconds": 0.01}, timeout=5)
        assert r.status_code == 429, r.text
        assert r.json() == TOO_MANY
        # ...on any worker, over fresh connections
        for _ in range(6):
            r = srv.post("/whoami", {}, timeout=5)
            assert r.status_code == 429, r.text
        # ...but the infrastructure endpoints still answer
        for path in ("/livez", "/healthz", "/readyz", "/metrics"):
            for _ in range(3):
                r = srv.get(path, timeout=5)
                assert r.status_code == 200, (path, r.status_code, r.text)
        assert in_progress(srv, "/work") == LIMIT
    finally:
        t.join(20)
    results = holder[0]
    assert [r.status for r in results] == [200] * LIMIT, results
    # afterwards the slots are free again
    wait_for(lambda: in_progress(srv, "/work") == 0, 5, what="in_progress back to 0")
    assert srv.post("/work", {"seconds": 0.01}).status_code == 200


def test_killed_worker_gives_its_slots_back(limited):
    srv = limited
    t, holder = start_burst(srv, "/work", [{"seconds": 3.0}] * LIMIT, timeout=20)
    wait_for(lambda: len(started_markers(srv.log_dir)) == LIMIT, 10, what="4 slow calls running")
    holders = [pid for pid, _ in started_markers(srv.log_dir)]
    victim = max(set(holders), key=holders.count)  # the worker holding the most slots
    victim_slots = holders.count(victim)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: pid_dead(victim), 10, what=f"worker {victim} to die")
    t.join(25)
    results = holder[0]
    ok = [r for r in results if r.status == 200]
    assert len(ok) == LIMIT - victim_slots, results  # the survivors' calls still finish

    # the victim is respawned
    def respawned():
        kids = children_of(srv.pid)
        return len(kids) == 3 and victim not in kids
    wait_for(respawned, 20, what="a replacement worker")
    all_workers(srv, 3)
    wait_for(lambda: in_progress(srv, "/work") == 0, 5, what="in_progress back to 0 after the kill")

    # the full limit is available again -- and no more than the limit
    for f in srv.log_dir.glob("worker-*.log"):
        f.unlink()
    results = burst(srv, "/work", [{"seconds": 1.0}] * (2 * LIMIT))
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == LIMIT, f"after the kill: {statuses} ({results})"
    assert statuses.count(429) == LIMIT, f"after the kill: {statuses} ({results})"
    assert max_overlap([(s, e) for s, e, _ in read_intervals(srv.log_dir)]) == LIMIT


def test_repeated_bursts_do_not_leak_slots(limited):
    """Three saturated rounds in a row: each round still admits exactly the limit."""
    srv = limited
    for round_ in range(3):
        results = burst(srv, "/work", [{"seconds": 0.5}] * 12)
        statuses = sorted(r.status for r in results)
        assert statuses.count(200) == LIMIT, f"round {round_}: {statuses}"
        assert statuses.count(429) == 12 - LIMIT, f"round {round_}: {statuses}"
        wait_for(lambda: in_progress(srv, "/work") == 0, 5, what="in_progress back to 0")


# --------------------------------------------------------------------------- concurrency


def test_concurrency_spreads_requests_over_workers(server_factory):
    srv = server_factory("traffic_concurrency.py:Spread", "--workers", "2")
    srv.wait_all_workers(2)
    results = burst(srv, "/slow", [{"seconds": 1.0}] * 4)
    assert all(r.status == 200 for r in results), results
    indexes = [r.json()["worker_index"] for r in results]
    assert set(indexes) == {1, 2}, f"4 slow requests all went to one worker: {indexes}"
    per_worker = {i: indexes.count(i) for i in (1, 2)}
    assert max(per_worker.values()) <= 3, per_worker


def test_requests_above_concurrency_are_still_served(server_factory):
    srv = server_factory("traffic_concurrency.py:Spread", "--workers", "2")
    srv.wait_all_workers(2)
    # 5 > concurrency (2) but < max_concurrency (8): none is refused
    results = burst(srv, "/slow", [{"seconds": 0.5}] * 5)
    assert [r.status for r in results] == [200] * 5, results
    assert {r.json()["worker_index"] for r in results} == {1, 2}


def test_concurrency_sizes_the_sync_thread_pool(server_factory):
    """threads unset + concurrency=4 on one worker: ceil(4/1) = 4 sync calls at once."""
    srv = server_factory("traffic_threads.py:Threads", "--workers", "1")
    results = burst(srv, "/block", [{"seconds": 0.8}] * 4)
    assert [r.status for r in results] == [200] * 4, results
    bodies = [r.json() for r in results]
    assert len({b["thread"] for b in bodies}) == 4, bodies
    assert max_overlap([(b["start"], b["end"]) for b in bodies]) == 4, bodies


# --------------------------------------------------------------------------- streaming


def test_stream_holds_its_slot_until_the_stream_ends(limited):
    srv = limited
    conns = [RawConn(srv.host, srv.port, timeout=15) for _ in range(LIMIT)]
    try:
        for c in conns:
            c.send(raw_request("POST", "/stream", json.dumps({"n": 4, "delay": 0.6})))
        for c in conns:  # every stream has started: status line and headers are out
            head = c._read_until(b"\r\n\r\n").decode("latin-1")
            assert head.startswith("HTTP/1.1 200"), head
        t_headers = time.monotonic()
        # the response has started, but the streams still hold the 4 slots
        r = srv.post("/work", {"seconds": 0.01}, timeout=5)
        still_streaming = time.monotonic() - t_headers < 1.5
        assert still_streaming, "the test was too slow to observe the streams"
        assert r.status_code == 429, (r.status_code, r.text)
        assert srv.get("/livez", timeout=5).status_code == 200
        assert in_progress(srv, "/stream") == LIMIT
        # read the rest of every stream
        for c in conns:
            body = b""
            while b"0\r\n\r\n" not in body:
                assert c._fill(), f"stream closed early: {body!r}"
                body, c.buf = body + c.buf, b""
            assert all(f"chunk {i}".encode() in body for i in range(4)), body
    finally:
        for c in conns:
            c.close()

    def served():
        r = srv.post("/work", {"seconds": 0.01}, timeout=5)
        assert r.status_code in (200, 429), r.text
        return r.status_code == 200

    wait_for(served, 3, interval=0.1, what="the slots to be free after the streams ended")
    wait_for(lambda: in_progress(srv, "/stream") == 0, 5, what="in_progress{/stream} back to 0")
