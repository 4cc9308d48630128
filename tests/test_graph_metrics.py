"""bentohost_dependency_request_duration_seconds on the entry's /metrics: the
calls MetricEntry's two workers make to MetricLeaf (tests/services/graph_metrics.py),
timed by C on each caller's I/O thread, summed over the caller's workers, with
failures counted: a dependency that raises (an HTTP 500) and a call cut by the
client's timeout (a transport error, no status)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import SERVICES, wait_for

ENTRY = f"{SERVICES / 'graph_metrics.py'}:MetricEntry"
FAMILY = "bentohost_dependency_request_duration_seconds"
LABELS = {"service_name", "dependency", "endpoint"}


@pytest.fixture(scope="module")
def graph(module_server_factory):
    srv = module_server_factory(ENTRY)
    srv.wait_all_workers(2)
    return srv


def scrape(srv) -> str:
    r = requests.get(srv.url + "/metrics", timeout=10, headers={"Connection": "close"})
    assert r.status_code == 200, r.text
    return r.text


def series(text: str, endpoint: str) -> dict:
    """{"count", "sum", le: cumulative count} of MetricEntry -> MetricLeaf at endpoint."""
    out: dict = {}
    fams = [f for f in text_string_to_metric_families(text) if f.name == FAMILY]
    if not fams:
        return out
    assert len(fams) == 1 and fams[0].type == "histogram"
    for s in fams[0].samples:
        assert set(s.labels) - {"le"} == LABELS, s.labels
        if (s.labels["service_name"], s.labels["dependency"], s.labels["endpoint"]) != \
                ("MetricEntry", "MetricLeaf", endpoint):
            continue
        key = s.labels["le"] if s.name.endswith("_bucket") else s.name[len(FAMILY) + 1:]
        out[key] = s.value
    return out


def check_histogram(h: dict, count: int) -> None:
    assert h.get("count") == count, h
    les = [k for k in h if k not in ("count", "sum")]
    assert les[-1] == "+Inf" and len(les) == 19, les
    assert [float(k) for k in les[:-1]] == sorted(float(k) for k in les[:-1]), les
    values = [h[k] for k in les]
    assert values == sorted(values), f"buckets are not cumulative: {h}"
    assert h["+Inf"] == count, h


def counted(srv, endpoint: str, n: int) -> dict | None:
    """The series once its count reached n: the response to the caller may
    leave before the I/O thread records the call's end."""
    h = series(scrape(srv), endpoint)
    return h if h.get("count", 0) >= n else None


def test_calls_are_counted_over_the_entry_workers(graph):
    n = 40
    base = series(scrape(graph), "/predict").get("count", 0)

    def one(i):
        r = requests.post(graph.url + "/predict", json={"x": i}, timeout=20,
                          headers={"Connection": "close"})  # fresh connections: both workers
        assert r.status_code == 200, r.text
        worker, value = r.json()
        assert value == 2 * i
        return worker

    with ThreadPoolExecutor(4) as ex:
        workers = set(ex.map(one, range(n)))
    assert workers == {1, 2}, f"both entry workers should have called the leaf: {workers}"
    h = wait_for(lambda: counted(graph, "/predict", base + n), 10, what="every call recorded")
    check_histogram(h, base + n)
    assert 0 < h["sum"] < n * 5, h
    text = scrape(graph)
    assert text.count(f"# HELP {FAMILY} ") == 1 and text.count(f"# TYPE {FAMILY} histogram\n") == 1


def test_a_dependency_that_raises_is_counted(graph):
    for _ in range(3):
        r = requests.post(graph.url + "/boom", json={}, timeout=20)
        assert r.status_code == 500, r.text
    h = wait_for(lambda: counted(graph, "/boom", 3), 10, what="the failed calls recorded")
    check_histogram(h, 3)


def test_a_call_cut_by_its_timeout_is_counted(graph):
    # MetricEntry's own deadline (traffic.timeout 1.5 s) bounds the call: the C
    # client gives up on the sleeping leaf after ~1.5 s, with no HTTP status.
    r = requests.post(graph.url + "/late", json={"seconds": 4}, timeout=20)
    assert r.status_code >= 500, r.text
    h = wait_for(lambda: counted(graph, "/sleep", 1), 10, what="the timed-out call recorded")
    check_histogram(h, 1)
    assert 1.0 <= h["sum"] < 3.5, f"the call should have ended at its timeout, not the leaf's end: {h}"
    assert h["1.0"] == 0 and h["2.5"] == 1, h
