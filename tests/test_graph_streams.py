"""Streams across a hop: a dependency's generator reaches the caller item by
item over the C client (framed, so structured items survive), through two
hops, with back-pressure from a slow consumer, and a client that leaves the
entry closes the dependency's generator."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import requests

from conftest import SERVICES, wait_for

TARGET = f"{SERVICES / 'graph_streams.py'}:Front"


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    return tmp_path_factory.mktemp("marks")


@pytest.fixture(scope="module")
def graph(module_server_factory, marks):
    env = {**os.environ, "GRAPH_MARK_DIR": str(marks)}
    return module_server_factory(TARGET, env=env)


def post(srv, path, body, **kw):
    return requests.post(srv.url + path, json=body, timeout=kw.pop("timeout", 30), **kw)


def test_tokens_arrive_as_the_dependency_yields_them(graph):
    with post(graph, "/tokens", {"n": 5, "delay": 0.3}, stream=True) as r:
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        it = r.iter_content(chunk_size=None)
        first = next(it)
        # the first token is there long before the dependency's generator ends (1.5 s)
        assert time.monotonic() - t0 < 1.0
        rest = b"".join(it)
    assert (first + rest).decode() == "".join(f"tok{i} " for i in range(5))


def test_a_sync_api_streams_a_dependencys_async_generator(graph):
    r = post(graph, "/sync_tokens", {"n": 4})
    assert r.status_code == 200, r.text
    assert r.text == "tok0 tok1 tok2 tok3 "


@pytest.mark.parametrize("path", ["/items", "/aitems"])
def test_structured_items_survive_the_hop(graph, path):
    r = post(graph, path, {"n": 50})
    assert r.status_code == 200, r.text
    assert r.json() == [{"i": i, "sq": i * i, "text": 'a\n{"b": }\n'} for i in range(50)]


def test_model_items_are_validated_into_their_type(graph):
    r = post(graph, "/points", {"n": 3})
    assert r.status_code == 200, r.text
    assert r.json() == [{"x": i, "label": f"p{i}"} for i in range(3)]


def test_numpy_items_cross_the_hop(graph):
    r = post(graph, "/arrays", {"n": 4})
    assert r.status_code == 200, r.text
    assert r.json() == [[[i + 1, 3], "float32", float(i * (i + 1) * 3)] for i in range(4)]


def test_a_stream_crosses_two_hops(graph):
    r = post(graph, "/relay", {"n": 6})
    assert r.status_code == 200, r.text
    assert r.text == "".join(f"TOK{i} " for i in range(6))


def test_an_error_before_the_first_item_keeps_its_status(graph):
    r = post(graph, "/refuses", {"n": -1})
    assert r.status_code == 400, r.text
    assert "n must not be negative" in r.text
    assert post(graph, "/refuses", {"n": 1}).json() == ["fine"]


def test_a_slow_consumer_holds_the_dependency_back(graph):
    # 4000 x 64 KiB = 250 MiB: far more than the buffers between the two services
    r = post(graph, "/slow_consumer", {"n": 4000, "size": 65536}, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["total"] == 4000 * 65536
    ahead_bytes = out["ahead"] * 65536
    assert ahead_bytes < 64 << 20, f"the dependency ran {ahead_bytes >> 20} MiB ahead of its consumer"


def _mark_path(marks, name):
    return marks / name


def test_closing_the_callers_generator_cancels_the_dependencys(graph, marks):
    mark = _mark_path(marks, "leaf-stream-closed")
    mark.unlink(missing_ok=True)
    r = post(graph, "/first_then_stop", {})
    assert r.status_code == 200, r.text
    assert r.text == "beat 0\n"
    wait_for(mark.exists, timeout=10, what="the dependency's generator was not closed")


def test_a_client_that_leaves_the_entry_stops_the_dependency(graph, marks):
    mark = _mark_path(marks, "leaf-stream-closed")
    mark.unlink(missing_ok=True)
    s = socket.create_connection((graph.host, graph.port))
    body = b"{}"
    s.sendall(b"POST /forever HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 2\r\n\r\n" + body)
    got = b""
    while b"beat 2" not in got:
        data = s.recv(4096)
        assert data, got
        got += data
    s.close()
    wait_for(mark.exists, timeout=10, what="the dependency's generator ran on after the client left")


def test_a_stream_cut_short_by_the_dependency_is_an_error(server_factory):
    """Leaf's worker dies after its first item (a server of its own: the module's
    graph stays whole): the caller gets an error, never the items so far passed off
    as a complete answer."""
    srv = server_factory(TARGET)
    t0 = time.monotonic()
    r = post(srv, "/cut_short", {})
    assert r.status_code == 503, r.text
    assert time.monotonic() - t0 < 10
    log = srv.log()
    assert "unreachable" in log or "broke" in log or "reset" in log.lower(), log


def test_json_frames_on_request(graph):
    """Any caller may ask a bentohost stream for one JSON line per item."""
    # the dependency's own port is private; the entry's stream APIs take the header too
    r = requests.post(graph.url + "/tokens", json={"n": 3}, headers={"X-Bentohost-Stream": "json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in r.text.splitlines()] == ["tok0 ", "tok1 ", "tok2 "]


def test_streams_over_loopback_tcp_pools(server_factory):
    """BENTOML_NO_UDS: the pools' ports are reachable by any local user, so items come
    as JSON lines there (a signed graph unpickles nothing it cannot check)."""
    srv = server_factory(TARGET, env={**os.environ, "BENTOML_NO_UDS": "1"})
    r = post(srv, "/items", {"n": 5})
    assert r.status_code == 200, r.text
    assert r.json() == [{"i": i, "sq": i * i, "text": 'a\n{"b": }\n'} for i in range(5)]
    assert post(srv, "/relay", {"n": 3}).text == "TOK0 TOK1 TOK2 "
