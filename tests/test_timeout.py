"""traffic.timeout → 504 (issue 3): async tasks are cancelled, sync calls keep their slot.

Service: tests/services/traffic_timeout.py (timeout=1.0, max_concurrency=1, one worker).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest

from conftest import metric as _metric, raw_request, wait_for

TIMEOUT_BODY = {"error": "Not able to process the request in 1.0 seconds"}


@pytest.fixture
def timeouts(server_factory, tmp_path):
    d = tmp_path / "marks"
    d.mkdir()
    srv = server_factory("traffic_timeout.py:Timeouts", "--workers", "1", env={"TRAFFIC_LOG_DIR": d})
    srv.marks = d
    return srv


def marker(srv, kind: str, tag: str):
    p = srv.marks / f"{kind}-{tag}"
    return p if p.exists() else None


def test_async_past_timeout_gets_504_and_is_cancelled(timeouts):
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    r = srv.post("/aslow", {"seconds": 10, "tag": tag}, timeout=15)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504, (r.status_code, r.text)
    assert r.json() == TIMEOUT_BODY, r.text
    assert r.content == b'{"error":"Not able to process the request in 1.0 seconds"}', r.content
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert 0.9 <= elapsed < 3.0, f"504 after {elapsed:.2f}s for a 1.0s timeout"
    assert marker(srv, "astart", tag)
    # the coroutine sees CancelledError (its except block writes the marker)
    wait_for(lambda: marker(srv, "cancelled", tag), 5, what="the timed-out task to be cancelled")
    time.sleep(0.2)
    assert not marker(srv, "afinished", tag)


def test_async_cancelled_task_frees_its_slot(timeouts):
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    r = srv.post("/aslow", {"seconds": 10, "tag": tag}, timeout=15)
    assert r.status_code == 504, r.text
    wait_for(lambda: marker(srv, "cancelled", tag), 5, what="the timed-out task to be cancelled")

    # max_concurrency=1: once the cancelled task is gone, the next call is admitted
    def served():
        r = srv.post("/fast", {}, timeout=5)
        assert r.status_code in (200, 429), (r.status_code, r.text)
        return r.status_code == 200 and r.text == "fast"

    wait_for(served, 3, interval=0.1, what="the slot of the cancelled call to be freed")


def test_async_within_timeout_is_served(timeouts):
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    r = srv.post("/aslow", {"seconds": 0.3, "tag": tag}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.text == "async-done"
    assert not marker(srv, "cancelled", tag)


def test_sync_past_timeout_504_but_slot_held_until_return(timeouts):
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    r = srv.post("/sslow", {"seconds": 3.5, "tag": tag}, timeout=15)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504, (r.status_code, r.text)
    assert r.json() == TIMEOUT_BODY, r.text
    assert 0.9 <= elapsed < 3.0, f"504 after {elapsed:.2f}s for a 1.0s timeout"
    assert not marker(srv, "sreturned", tag), "the sync call cannot have returned yet"

    # the method still runs: its slot is still taken (max_concurrency=1) -> 429
    r2 = srv.post("/fast", {}, timeout=5)
    assert not marker(srv, "sreturned", tag), "the test was too slow to observe the held slot"
    assert r2.status_code == 429, (
        f"a call during the timed-out sync method's sleep got {r2.status_code} {r2.text!r}; "
        "the slot must stay taken until the method really returns"
    )
    assert r2.json() == {"error": "Too many requests"}

    # once it really returns, the slot is released and the next call is served
    wait_for(lambda: marker(srv, "sreturned", tag), 10, what="the sync method to return")

    def served():
        r = srv.post("/fast", {}, timeout=5)
        assert r.status_code in (200, 429), (r.status_code, r.text)
        return r.status_code == 200 and r.text == "fast"

    wait_for(served, 3, interval=0.1, what="the slot to be released after the late return")


LATE = re.compile(r"late|after (the )?timeout|timed[- ]out|dropp", re.I)


def test_sync_late_result_is_logged_and_dropped(timeouts):
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    r = srv.post("/sslow", {"seconds": 1.8, "tag": tag}, timeout=15)
    assert r.status_code == 504, r.text
    wait_for(lambda: marker(srv, "sreturned", tag), 10, what="the sync method to return")

    def logged():
        lines = [l for l in srv.log().splitlines() if LATE.search(l) and "sslow" in l]
        return lines

    lines = wait_for(logged, 5, what="a log line about the late result of /sslow")
    assert lines, srv.log()
    # the late result never reaches a client: the next response on a new call is its own
    def served():
        r = srv.post("/fast", {}, timeout=5)
        return r.status_code == 200 and r.text == "fast"

    wait_for(served, 3, interval=0.1, what="/fast to be served")


def test_sync_late_exception_is_logged(timeouts):
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    r = srv.post("/sfail", {"seconds": 1.8, "tag": tag}, timeout=15)
    assert r.status_code == 504, r.text
    wait_for(lambda: marker(srv, "sreturned", tag), 10, what="the sync method to return")
    wait_for(lambda: f"late-exception-{tag}" in srv.log(), 5,
             what="the late exception to be logged")


def test_504_keeps_the_connection_usable_and_clean(timeouts):
    """After a 504 on a keep-alive connection, the late result never shows up on it."""
    srv = timeouts
    tag = uuid.uuid4().hex[:8]
    with srv.conn(timeout=15) as c:
        c.send(raw_request("POST", "/sslow", json.dumps({"seconds": 1.5, "tag": tag})))
        r = c.read_response()
        assert r.status == 504, r
        wait_for(lambda: marker(srv, "sreturned", tag), 10, what="the sync method to return")
        if r.headers.get("connection", "").lower() == "close":
            return  # the server closed the connection after the 504: nothing late can appear on it
        # the same keep-alive connection goes on working, and no late response appears on it
        deadline = time.monotonic() + 3
        while True:
            c.send(raw_request("POST", "/fast", "{}"))
            r = c.read_response()
            if r.status != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status == 200 and r.body == b"fast", r


# --------------------------------------------------------------------------- streams


def test_stream_is_bounded_only_until_its_first_byte(timeouts):
    srv = timeouts
    t0 = time.monotonic()
    r = srv.post("/astream", {"first_delay": 0.0, "n": 5, "delay": 0.4}, timeout=15)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.text == "".join(f"c{i}\n" for i in range(5)), r.text
    assert elapsed >= 1.5, f"the stream should have run past the 1.0 s timeout ({elapsed:.2f}s)"


def test_stream_without_first_byte_in_time_gets_504(timeouts):
    srv = timeouts
    t0 = time.monotonic()
    r = srv.post("/astream", {"first_delay": 3.0, "n": 2, "delay": 0.1}, timeout=15)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504, (r.status_code, r.text)
    assert r.json() == TIMEOUT_BODY
    assert elapsed < 2.5, elapsed


# --------------------------------------------------------------------------- metrics


def test_504_is_counted(timeouts):
    srv = timeouts
    rejected = _metric(srv, "bentohost_requests_rejected_total", reason="504")
    total = _metric(srv, "bentoml_service_request_total", endpoint="/aslow", http_response_code=504)
    tag = uuid.uuid4().hex[:8]
    r = srv.post("/aslow", {"seconds": 5, "tag": tag}, timeout=15)
    assert r.status_code == 504, r.text
    wait_for(lambda: marker(srv, "cancelled", tag), 5, what="the task to be cancelled")
    assert _metric(srv, "bentohost_requests_rejected_total", reason="504") == rejected + 1
    # like BentoML (metrics middleware outside the timeout): the 504 is in request_total too
    assert _metric(srv, "bentoml_service_request_total", endpoint="/aslow", http_response_code=504) == total + 1


# --------------------------------------------------------------------------- queued calls


# A sync-only service with one thread takes its requests on that thread (in place); with
# BENTOHOST_SYNC_HANDOFF=1 the loop takes them and hands them over, as for mixed services.
SYNC_PATHS = pytest.mark.parametrize("handoff", ["0", "1"], ids=["in-place", "handoff"])


def _queued_pair(server_factory, tmp_path, handoff: str = "0"):
    """threads=1: A (3 s) holds the only sync thread, B (0.1 s) arrives during it and waits."""
    d = tmp_path / "marks"
    d.mkdir()
    srv = server_factory("traffic_queue.py:Queued", "--workers", "1",
                         env={"TRAFFIC_LOG_DIR": d, "BENTOHOST_SYNC_HANDOFF": handoff})
    out = {}

    def call(tag, seconds):
        t0 = time.monotonic()
        r = srv.post("/sslow", {"seconds": seconds, "tag": tag}, timeout=15)
        out[tag] = (r.status_code, r.text, time.monotonic() - t0)

    ta = threading.Thread(target=call, args=("A", 3.0), daemon=True)
    ta.start()
    wait_for(lambda: (d / "sstart-A").exists(), 5, what="A to start")
    tb = threading.Thread(target=call, args=("B", 0.1), daemon=True)
    tb.start()
    tb.join(10)
    ta.join(10)
    return srv, d, out


@SYNC_PATHS
def test_call_queued_behind_the_sync_thread_times_out_from_its_arrival(server_factory, tmp_path, handoff):
    """B's 504 comes 1 s after B arrived, not when A ends."""
    srv, d, out = _queued_pair(server_factory, tmp_path, handoff)
    assert out["A"][0] == 504, out
    assert out["B"][0] == 504, out
    assert json.loads(out["B"][1]) == TIMEOUT_BODY
    assert out["B"][2] < 2.0, f"B's 504 took {out['B'][2]:.2f}s: it waited for A instead of its own timeout"


@SYNC_PATHS
def test_call_timed_out_before_it_started_is_never_run(server_factory, tmp_path, handoff):
    """BentoML parity (reference §7: the app task is cancelled at the timeout, and a sync
    call still waiting for the thread limiter never runs): B, 504'd while queued, must not
    be started once A frees the thread."""
    srv, d, out = _queued_pair(server_factory, tmp_path, handoff)
    assert out["B"][0] == 504, out
    wait_for(lambda: (d / "sreturned-A").exists(), 10, what="A to return")
    time.sleep(0.5)
    assert not (d / "sstart-B").exists(), "B was run after its 504 had been sent"
