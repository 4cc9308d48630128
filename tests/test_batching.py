"""Adaptive batching in C (issue 3, reference §6).

Service: tests/services/traffic_batch.py on one worker. ``predict`` (numpy,
max_batch_size=8) computes ``2x + 1`` row by row, so every request's answer is
known without batching; ``sizes_seen`` returns every batch size each batchable
function received.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RawConn, metric, raw_request

GENERIC_5XX = {"error": "An unexpected error has occurred, please check the server log."}


@pytest.fixture(scope="module")
def batcher(module_server_factory):
    return module_server_factory("traffic_batch.py:Batcher", "--workers", "1")


def burst(srv, path: str, bodies: list, timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """One POST per body on its own connection, all released together; [(status, body)]."""
    n = len(bodies)
    out: list = [None] * n
    conns = [RawConn(srv.host, srv.port, timeout=timeout) for _ in range(n)]
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(timeout)
            conns[i].send(raw_request("POST", path, json.dumps(bodies[i])))
            r = conns[i].read_response()
            out[i] = (r.status, r.body)
        except Exception as exc:  # noqa: BLE001
            out[i] = (None, repr(exc).encode())
        finally:
            conns[i].close()

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout + 10)
    return out


def sizes(srv) -> dict[str, list[int]]:
    r = srv.post("/sizes_seen", {})
    assert r.status_code == 200, r.text
    return r.json()


def rows(i: int, k: int = 1) -> list[list[float]]:
    """k distinct rows for request i."""
    return [[i + 0.25, -float(i), 1000.0 * i + j] for j in range(k)]


def expected(x) -> list:
    return (np.asarray(x, dtype=np.float64) * 2 + 1).tolist()


# --------------------------------------------------------------------------- numpy


def test_single_request_is_answered_like_the_unbatched_call(batcher):
    r = batcher.post("/predict", {"x": rows(7)})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json(), expected(rows(7)))


def test_concurrent_single_rows_form_batches_and_keep_order(batcher):
    before = len(sizes(batcher)["predict"])
    # a few rounds warm the batcher's latency model up; each round must be correct
    seen_batched = False
    for round_ in range(4):
        bodies = [{"x": rows(100 * round_ + i)} for i in range(16)]
        results = burst(batcher, "/predict", bodies)
        for i, (status, body) in enumerate(results):
            assert status == 200, (round_, i, status, body)
            np.testing.assert_allclose(json.loads(body), expected(bodies[i]["x"]),
                                       err_msg=f"request {i} of round {round_} got someone else's rows")
        new = sizes(batcher)["predict"][before:]
        before += len(new)
        assert sum(new) == 16, f"round {round_}: the function saw {sum(new)} rows for 16 requests: {new}"
        assert all(1 <= s <= 8 for s in new), new
        if any(s > 1 for s in new):
            seen_batched = True
            break
    assert seen_batched, "16 concurrent single-row requests never formed a batch larger than 1"


def test_request_with_more_rows_than_max_batch_size_is_split(batcher):
    before = len(sizes(batcher)["predict"])
    x = rows(3, k=20)  # 20 rows, max_batch_size=8
    r = batcher.post("/predict", {"x": x})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out) == 20
    np.testing.assert_allclose(out, expected(x))
    new = sizes(batcher)["predict"][before:]
    assert sum(new) == 20, new
    assert max(new) <= 8, f"a batch of {max(new)} rows exceeds max_batch_size=8: {new}"
    assert len(new) >= 3, new


def test_multi_row_requests_mixed_with_single_rows(batcher):
    before = len(sizes(batcher)["predict"])
    ks = [1, 5, 1, 11, 3, 1, 7, 2, 1, 9]
    bodies = [{"x": rows(10 * i, k)} for i, k in enumerate(ks)]
    results = burst(batcher, "/predict", bodies)
    for i, (status, body) in enumerate(results):
        assert status == 200, (i, status, body)
        out = json.loads(body)
        assert len(out) == ks[i], (i, out)
        np.testing.assert_allclose(out, expected(bodies[i]["x"]), err_msg=f"request {i} (k={ks[i]})")
    new = sizes(batcher)["predict"][before:]
    assert sum(new) == sum(ks), new
    assert max(new) <= 8, new


def test_max_batch_size_one(batcher):
    before = len(sizes(batcher)["predict1"])
    bodies = [{"x": rows(i)} for i in range(8)] + [{"x": rows(50, k=3)}]
    results = burst(batcher, "/predict1", bodies)
    for i, (status, body) in enumerate(results):
        assert status == 200, (i, status, body)
        np.testing.assert_allclose(json.loads(body), expected(bodies[i]["x"]))
    new = sizes(batcher)["predict1"][before:]
    assert new == [1] * 11, new


# --------------------------------------------------------------------------- lists


def test_list_batchable_api(batcher):
    r = batcher.post("/double", {"xs": [1, 2, 3]})
    assert r.status_code == 200, r.text
    assert r.json() == [2, 4, 6]

    before = len(sizes(batcher)["double"])
    bodies = [{"xs": [1000 * i + j for j in range(1 + i % 3)]} for i in range(16)]
    results = burst(batcher, "/double", bodies)
    for i, (status, body) in enumerate(results):
        assert status == 200, (i, status, body)
        assert json.loads(body) == [2 * v for v in bodies[i]["xs"]], (i, body)
    new = sizes(batcher)["double"][before:]
    assert sum(new) == sum(len(b["xs"]) for b in bodies), new
    assert max(new) <= 8, new
    assert len(new) < len(bodies), f"16 concurrent list requests were never batched together: {new}"


def test_list_request_split_across_batches(batcher):
    before = len(sizes(batcher)["double"])
    xs = list(range(100, 119))  # 19 items, max_batch_size=8
    r = batcher.post("/double", {"xs": xs})
    assert r.status_code == 200, r.text
    assert r.json() == [2 * v for v in xs]
    new = sizes(batcher)["double"][before:]
    assert sum(new) == 19 and max(new) <= 8, new


# --------------------------------------------------------------------------- failures


def test_batch_function_exception_fails_every_member(batcher):
    bodies = [{"xs": [i]} for i in range(8)]
    results = burst(batcher, "/explode", bodies)
    for i, (status, body) in enumerate(results):
        assert status == 500, (i, status, body)
        assert json.loads(body) == GENERIC_5XX, body
    assert "batch-explode-marker" in batcher.log()
    # the worker is fine afterwards
    r = batcher.post("/double", {"xs": [4]})
    assert r.status_code == 200 and r.json() == [8], r.text


def test_batch_output_that_cannot_be_split_back_is_500(batcher):
    results = burst(batcher, "/short", [{"xs": [i, i + 1]} for i in range(8)])
    for i, (status, body) in enumerate(results):
        assert status == 500, (i, status, body)
    r = batcher.post("/double", {"xs": [5]})
    assert r.status_code == 200 and r.json() == [10], r.text


def test_batched_requests_are_counted_one_by_one(batcher):
    before = metric(batcher, "bentoml_service_request_total", endpoint="/predict", http_response_code=200)
    results = burst(batcher, "/predict", [{"x": rows(i)} for i in range(16)])
    assert [s for s, _ in results] == [200] * 16, results
    after = metric(batcher, "bentoml_service_request_total", endpoint="/predict", http_response_code=200)
    assert after == before + 16


def test_batch_queue_time_metric(batcher):
    burst(batcher, "/predict", [{"x": rows(i)} for i in range(8)])
    r = batcher.get("/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    queue = [f for name, f in fams.items() if name.startswith("bentohost_") and "queue" in name]
    assert queue, f"no bentohost queue-time metric among {sorted(fams)}"
    counts = [s for f in queue for s in f.samples
              if s.name.endswith("_count") and s.labels.get("method_name", "predict") == "predict"]
    assert counts and sum(s.value for s in counts) >= 1, counts


# --------------------------------------------------------------------------- shedding


def test_requests_that_cannot_meet_max_latency_get_503(batcher):
    """overload: max_latency_ms=50, the function takes 0.3 s, 16 concurrent calls."""
    got_503 = False
    for round_ in range(3):
        bodies = [{"x": rows(i)} for i in range(16)]
        t0 = time.monotonic()
        results = burst(batcher, "/overload", bodies)
        statuses = [s for s, _ in results]
        assert set(statuses) <= {200, 503}, results
        for i, (status, body) in enumerate(results):
            if status == 200:
                np.testing.assert_allclose(json.loads(body), expected(bodies[i]["x"]))
            else:
                assert json.loads(body) == GENERIC_5XX, body
        if 503 in statuses:
            got_503 = True
            # at most a few batches of 4 can run in the time the burst took
            assert statuses.count(503) >= 4, statuses
            break
        assert time.monotonic() - t0 < 10
    assert got_503, "a 50 ms latency bound with a 300 ms function under load never shed a request"


def test_shed_requests_never_reach_python(batcher):
    before = sum(sizes(batcher)["overload"])
    rejected = metric(batcher, "bentohost_requests_rejected_total", reason="503")
    bodies = [{"x": rows(i)} for i in range(16)]
    results = burst(batcher, "/overload", bodies)
    ok = sum(1 for s, _ in results if s == 200)
    shed = sum(1 for s, _ in results if s == 503)
    assert ok + shed == 16, results
    assert sum(sizes(batcher)["overload"]) - before == ok, "a shed request was still run by Python"
    assert metric(batcher, "bentohost_requests_rejected_total", reason="503") == rejected + shed


# --------------------------------------------------------------------------- metrics


def test_adaptive_batch_size_histogram(batcher):
    # make sure there are batches larger than one for predict
    burst(batcher, "/predict", [{"x": rows(i)} for i in range(16)])
    seen = sizes(batcher)
    r = batcher.get("/metrics")
    assert r.status_code == 200, r.text
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert "bentoml_service_adaptive_batch_size" in fams, sorted(fams)
    fam = fams["bentoml_service_adaptive_batch_size"]
    assert fam.type == "histogram", fam.type

    def samples(method, suffix):
        return [s for s in fam.samples
                if s.name == "bentoml_service_adaptive_batch_size" + suffix
                and s.labels.get("method_name") == method]

    for method in ("predict", "double", "predict1"):
        count = sum(s.value for s in samples(method, "_count"))
        assert count == len(seen[method]), (method, count, seen[method])
    # the buckets see batches larger than one for predict
    le1 = sum(s.value for s in samples("predict", "_bucket") if float(s.labels["le"]) == 1.0)
    total = sum(s.value for s in samples("predict", "_count"))
    assert total - le1 == sum(1 for s in seen["predict"] if s > 1), (le1, total, seen["predict"])
    inf = [s for s in samples("predict", "_bucket") if s.labels["le"] == "+Inf"]
    assert inf and sum(s.value for s in inf) == total
    # labels as in BentoML
    some = samples("predict", "_count")[0]
    for label in ("service_name", "method_name", "worker_index"):
        assert label in some.labels, some.labels
