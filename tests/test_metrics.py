"""/metrics rendered by C from shared memory (issue 3, reference §5).

Service: tests/services/traffic_metrics.py (max_concurrency=2), two workers.
Parsed with prometheus_client's text parser.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import RawConn, children_of, pid_dead, raw_request, wait_for


def parse(text: str):
    """[(sample_name, labels, value)] and {family_name: type}."""
    samples, types = [], {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples.append((s.name, dict(s.labels), s.value))
    return samples, types


def scrape(srv):
    # a fresh connection each time: whichever worker accepts it answers
    r = requests.get(srv.url + "/metrics", timeout=10, headers={"Connection": "close"})
    assert r.status_code == 200, r.text
    return r


def total(samples, name: str, **labels) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items()))


def request_total(srv, endpoint: str, code: int) -> float:
    samples, _ = parse(scrape(srv).text)
    return total(samples, "bentoml_service_request_total", endpoint=endpoint, http_response_code=code)


def all_workers(srv, n: int, timeout: float = 30.0) -> dict[int, int]:
    """Each index 1..n answered /whoami; two calls at a time (max_concurrency=2), 429s tolerated."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.post(srv.url + "/whoami", timeout=10, headers={"Connection": "close"})
        if r.status_code == 200:
            seen[r.json()["worker_index"]] = r.json()["pid"]
        if set(seen) >= set(range(1, n + 1)):
            return seen
    srv.fail(f"not every worker index 1..{n} answered within {timeout}s; saw {seen}")


@pytest.fixture
def metered(server_factory):
    srv = server_factory("traffic_metrics.py:Metered", "--workers", "2")
    srv.index_to_pid = all_workers(srv, 2)
    return srv


def test_metrics_is_prometheus_text(metered):
    r = scrape(metered)
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    assert "version=0.0.4" in r.headers["content-type"], r.headers
    samples, types = parse(r.text)
    assert types.get("bentoml_service_request") == "counter", types
    assert types.get("bentoml_service_request_duration_seconds") == "histogram", types
    assert types.get("bentoml_service_request_in_progress") == "gauge", types
    # BentoML pre-creates 200 and 500 at zero for each API route
    names = {(n, l.get("endpoint"), l.get("http_response_code")) for n, l, _ in samples}
    for ep in ("/ok", "/fail", "/slow"):
        for code in ("200", "500"):
            assert ("bentoml_service_request_total", ep, code) in names, (ep, code)


def test_request_total_per_endpoint_and_code(metered):
    srv = metered
    base_ok = request_total(srv, "/ok", 200)
    base_fail = request_total(srv, "/fail", 500)
    for i in range(5):
        r = srv.post("/ok", {"n": i})
        assert r.status_code == 200 and r.json() == i + 1, r.text
    for _ in range(3):
        r = srv.post("/fail", {})
        assert r.status_code == 500, r.text
    samples, _ = parse(scrape(srv).text)
    assert total(samples, "bentoml_service_request_total", endpoint="/ok", http_response_code=200) == base_ok + 5
    assert total(samples, "bentoml_service_request_total", endpoint="/fail", http_response_code=500) == base_fail + 3
    assert total(samples, "bentoml_service_request_total", endpoint="/fail", http_response_code=200) == 0
    # labels as in BentoML
    some = [l for n, l, _ in samples if n == "bentoml_service_request_total" and l.get("endpoint") == "/ok"][0]
    for label in ("endpoint", "service_name", "http_response_code"):
        assert label in some, some
    assert some["service_name"] == "Metered", some


def test_request_duration_histogram(metered):
    srv = metered
    for _ in range(4):
        assert srv.post("/ok", {}).status_code == 200
    r = srv.post("/slow", {"seconds": 0.3})
    assert r.status_code == 200, r.text
    samples, types = parse(scrape(srv).text)
    name = "bentoml_service_request_duration_seconds"
    assert types[name] == "histogram"

    def of(suffix, ep):
        return [(l, v) for n, l, v in samples if n == name + suffix and l.get("endpoint") == ep]

    assert sum(v for _, v in of("_count", "/ok")) == 4
    buckets = sorted(((float(l["le"]), v) for l, v in of("_bucket", "/ok")), key=lambda b: b[0])
    assert buckets and buckets[-1][0] == float("inf") and buckets[-1][1] == 4, buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"buckets are not cumulative: {buckets}"
    slow_sum = sum(v for _, v in of("_sum", "/slow"))
    assert 0.29 <= slow_sum < 5, f"the 0.3 s call was recorded as {slow_sum}s"
    # it fell in a bucket above 0.25 s
    slow_buckets = {float(l["le"]): v for l, v in of("_bucket", "/slow")}
    below = [v for le, v in slow_buckets.items() if le < 0.29]
    assert all(v == 0 for v in below), slow_buckets


def test_any_worker_answers_with_the_totals_of_all_workers(metered):
    srv = metered
    base = request_total(srv, "/count", 200)
    per_worker = {1: 0, 2: 0}

    def one(_):
        r = requests.post(srv.url + "/count", json={}, timeout=10, headers={"Connection": "close"})
        return r.json()["worker_index"] if r.status_code == 200 else None

    from concurrent.futures import ThreadPoolExecutor

    # pairs of concurrent calls (max_concurrency=2) on fresh connections, until both
    # workers have served a good share
    with ThreadPoolExecutor(2) as ex:
        for _ in range(100):
            for idx in ex.map(one, range(2)):
                if idx is not None:
                    per_worker[idx] += 1
            if sum(per_worker.values()) >= 30 and min(per_worker.values()) >= 3:
                break
    assert min(per_worker.values()) >= 1, f"the calls did not reach both workers: {per_worker}"
    n = sum(per_worker.values())
    # every scrape, whichever worker answers it, shows all of them
    values = [request_total(srv, "/count", 200) for _ in range(12)]
    assert values == [base + n] * 12, (values, per_worker)


def test_counters_survive_a_worker_respawn(metered):
    srv = metered
    for i in range(10):
        assert requests.post(srv.url + "/ok", json={"n": i}, timeout=10,
                             headers={"Connection": "close"}).status_code == 200
    assert requests.post(srv.url + "/fail", json={}, timeout=10).status_code == 500
    samples, _ = parse(scrape(srv).text)
    ok_before = total(samples, "bentoml_service_request_total", endpoint="/ok", http_response_code=200)
    fail_before = total(samples, "bentoml_service_request_total", endpoint="/fail", http_response_code=500)
    restarts_before = total(samples, "bentohost_worker_restarts_total")
    assert ok_before == 10 and fail_before == 1
    assert restarts_before == 0, samples

    victim = srv.index_to_pid[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: pid_dead(victim), 10, what=f"worker {victim} to die")
    wait_for(lambda: len(children_of(srv.pid)) == 2 and victim not in children_of(srv.pid), 20,
             what="the replacement worker")
    srv.wait_ready()
    seen = all_workers(srv, 2)
    assert seen[1] != victim

    for _ in range(8):  # scrapes land on both workers, the new one included
        samples, _ = parse(scrape(srv).text)
        assert total(samples, "bentoml_service_request_total", endpoint="/ok", http_response_code=200) == ok_before
        assert total(samples, "bentoml_service_request_total", endpoint="/fail", http_response_code=500) == fail_before
        restarts = total(samples, "bentohost_worker_restarts_total")
        assert restarts == 1, [s for s in samples if s[0].startswith("bentohost_worker_restarts")]
    # the respawned index is the one counted, when the counter is per worker
    per_worker = [l for n, l, v in samples if n == "bentohost_worker_restarts_total" and v > 0]
    for labels in per_worker:
        if "worker_index" in labels:
            assert labels["worker_index"] == "1", per_worker


def _burst_slow(srv, n: int, seconds: float) -> list[int]:
    conns = [RawConn(srv.host, srv.port, timeout=20) for _ in range(n)]
    statuses: list = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(10)
            conns[i].send(raw_request("POST", "/slow", json.dumps({"seconds": seconds})))
            statuses[i] = conns[i].read_response().status
        finally:
            conns[i].close()

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return statuses


def test_rejected_429_are_counted(metered):
    srv = metered
    samples, _ = parse(scrape(srv).text)
    base = total(samples, "bentohost_requests_rejected_total", reason="429")
    statuses = _burst_slow(srv, 6, 1.0)
    n429 = statuses.count(429)
    assert statuses.count(200) == 2 and n429 == 4, statuses  # max_concurrency=2
    samples, types = parse(scrape(srv).text)
    assert types.get("bentohost_requests_rejected") == "counter", types
    assert total(samples, "bentohost_requests_rejected_total", reason="429") == base + n429, \
        [s for s in samples if s[0].startswith("bentohost_requests_rejected")]


def test_429_counted_in_request_total(metered):
    """BentoML's metrics middleware is outside the limiter, so 429s are in request_total too."""
    srv = metered
    statuses = _burst_slow(srv, 5, 1.0)
    assert statuses.count(429) == 3, statuses
    assert request_total(srv, "/slow", 429) == 3


def test_in_progress_gauge_follows_running_requests(metered):
    srv = metered
    holder = []
    t = threading.Thread(target=lambda: holder.append(_burst_slow(srv, 2, 2.0)), daemon=True)
    t.start()

    def two_running():
        samples, _ = parse(scrape(srv).text)
        return total(samples, "bentoml_service_request_in_progress", endpoint="/slow") == 2

    wait_for(two_running, 5, interval=0.05, what="in_progress{endpoint=/slow} == 2")
    t.join(15)
    assert holder == [[200, 200]], holder
    samples, _ = parse(scrape(srv).text)
    assert total(samples, "bentoml_service_request_in_progress", endpoint="/slow") == 0
    # /metrics itself is not counted
    assert total(samples, "bentoml_service_request_total", endpoint="/metrics") == 0
