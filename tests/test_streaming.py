"""End to end: streaming responses, errors, backpressure and cancellation."""

from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import raw_request, wait_for


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory("stream_svc.py:StreamSvc", "--workers", "1")


def _timed_chunks(srv, path, body):
    import requests

    t0 = time.monotonic()
    r = requests.post(srv.url + path, json=body, stream=True, timeout=30)
    arrivals = []
    for chunk in r.iter_content(chunk_size=None):
        arrivals.append((time.monotonic() - t0, chunk))
    return r, arrivals


@pytest.mark.parametrize("path,prefix", [("/ticks", b"data: "), ("/aticks", b"tick ")])
def test_chunks_arrive_as_yielded(srv, path, prefix):
    r, arrivals = _timed_chunks(srv, path, {"n": 4, "delay": 0.3})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.headers.get("transfer-encoding") == "chunked"
    body = b"".join(c for _, c in arrivals)
    assert body.count(prefix) == 4
    # the first chunk comes long before the last one (no buffering of the whole stream)
    assert arrivals[0][0] < 0.25, arrivals
    assert arrivals[-1][0] >= 0.85, arrivals
    assert len(arrivals) >= 3


def test_items_are_encoded(srv):
    r = srv.post("/objects", json_body={})
    assert r.content == b'{"a": 1}raw[1, 2]'
    r = srv.post("/typed", json_body={})
    assert r.headers["content-type"] == "text/plain" and r.text == "xy"


def test_error_before_first_chunk(srv):
    r = srv.post("/fail_first", json_body={"kind": "bad"})
    assert r.status_code == 400 and r.json() == [{"error": "no stream for you"}]
    assert "chunked" not in r.headers.get("transfer-encoding", "")
    r = srv.post("/fail_first", json_body={"kind": "boom"})
    assert r.status_code == 500
    r = srv.post("/afail_first", json_body={})
    assert r.status_code == 400 and r.json() == [{"error": "async no stream"}]
    r = srv.post("/ticks", json_body={"n": "many"})
    assert r.status_code == 400


def test_error_after_first_chunk_ends_stream(srv):
    r = srv.post("/fail_later", json_body={})
    assert r.status_code == 200 and r.text == "one;two;"
    assert "boom after two chunks" in srv.log()
    assert srv.post("/quick", json_body={}).text == "ok"  # the worker is fine


def test_context_on_stream(srv):
    r = srv.post("/status_stream", json_body={})
    assert r.status_code == 206 and r.headers["x-stream"] == "on" and r.text == "partial"


@pytest.mark.parametrize("path", ["/forever", "/aforever"])
def test_client_disconnect_stops_generator(srv, tmp_path, path):
    marker = tmp_path / "marker.txt"
    body = json.dumps({"marker": str(marker)})
    c = srv.conn()
    c.send(raw_request("POST", path, body))
    wait_for(lambda: marker.exists() and marker.read_text().count("yield") >= 3, 10, what="stream started")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    wait_for(lambda: "closed" in marker.read_text(), 10, what="generator closed")
    n = marker.read_text().count("yield")
    time.sleep(0.5)
    assert marker.read_text().count("yield") == n  # it really stopped
    if path == "/aforever":
        assert "cancelled" in marker.read_text() or "closed" in marker.read_text()


@pytest.mark.parametrize("path", ["/flood", "/aflood"])
def test_backpressure_pauses_generator(srv, tmp_path, path):
    marker = tmp_path / "progress.txt"
    n, size = 400, 262144  # 100 MiB in all
    c = srv.conn(timeout=30)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(raw_request("POST", path, json.dumps({"marker": str(marker), "n": n, "size": size})))
    wait_for(lambda: marker.exists(), 10, what="stream started")
    time.sleep(1.0)  # not reading: the generator must stop advancing
    progress = marker.read_text()
    assert progress != "done" and int(progress) < n // 2, progress
    time.sleep(0.5)
    assert marker.read_text() == progress  # paused, not just slow
    resp = c.read_response()
    assert resp.status == 200 and len(resp.body) == n * size
    assert marker.read_text() == "done"
    c.close()


def test_async_cancelled_on_timeout(srv, tmp_path):
    marker = tmp_path / "slow.txt"
    t0 = time.monotonic()
    r = srv.post("/slow", json_body={"marker": str(marker), "seconds": 5})
    assert r.status_code == 504
    assert time.monotonic() - t0 < 4
    wait_for(lambda: marker.exists() and "cancelled" in marker.read_text(), 5, what="coroutine cancelled")
    assert srv.post("/quick", json_body={}).text == "ok"


def test_async_cancelled_on_client_disconnect(srv, tmp_path):
    marker = tmp_path / "gone.txt"
    c = srv.conn()
    c.send(raw_request("POST", "/slow", json.dumps({"marker": str(marker), "seconds": 1.2})))
    time.sleep(0.3)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    wait_for(lambda: marker.exists() and "cancelled" in marker.read_text(), 5, what="coroutine cancelled")
