"""HTTP/1.1 edge cases over raw sockets."""

import json
import time

import pytest

from conftest import raw_request

KEEPALIVE_S = 2
MAX_HEADER = 16384
MAX_BODY = 1 << 20


@pytest.fixture(scope="module")
def edge_server(module_server_factory):
    return module_server_factory(
        "basic.py:Basic", "--workers", "1",
        "--timeout-keep-alive", str(KEEPALIVE_S),
        "--max-header-size", str(MAX_HEADER),
        "--max-body-size", str(MAX_BODY),
    )


def echo_req(text: str, extra_headers: dict | None = None) -> bytes:
    return raw_request("POST", "/echo", json.dumps({"text": text}), headers=extra_headers)


def test_keep_alive_reuses_connection(edge_server):
    with edge_server.conn() as c:
        for i in range(5):
            c.send(echo_req(f"msg{i}"))
            r = c.read_response()
            assert r.status == 200, r
            assert r.body == f"msg{i}".encode()
            assert r.headers.get("connection", "keep-alive").lower() != "close"


def test_pipelined_requests_answered_in_order(edge_server):
    with edge_server.conn() as c:
        reqs = [echo_req(f"p{i}") for i in range(5)]
        reqs.insert(2, raw_request("GET", "/livez"))
        reqs.insert(4, raw_request("POST", "/add", json.dumps({"a": 1, "b": 2})))
        c.send(b"".join(reqs))
        bodies = [c.read_response().body for _ in range(len(reqs))]
        assert bodies == [b"p0", b"p1", b"\n", b"p2", b"3", b"p3", b"p4"]


def test_pipelined_slow_then_fast_keeps_order(edge_server):
    with edge_server.conn() as c:
        c.send(raw_request("POST", "/asleep", json.dumps({"seconds": 0.5})) + echo_req("fast"))
        first = c.read_response()
        second = c.read_response()
        assert first.status == 200 and json.loads(first.body)["slept"] == 0.5
        assert second.status == 200 and second.body == b"fast"


def test_chunked_request_body(edge_server):
    payload = json.dumps({"text": "chunked body works"}).encode()
    with edge_server.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(payload), 7):
            part = payload[i:i + 7]
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.01)
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"chunked body works"
        # the connection is still usable
        c.send(echo_req("after"))
        assert c.read_response().body == b"after"


def test_expect_100_continue(edge_server):
    body = json.dumps({"text": "continued"}).encode()
    with edge_server.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        interim = c.read_response()
        assert interim.status == 100, interim
        c.send(body)
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"continued"


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz"])
def test_head_has_no_body(edge_server, path):
    with edge_server.conn() as c:
        c.send(raw_request("HEAD", path))
        r = c.read_response(head=True)
        assert r.status == 200, r
        # a following request on the same connection must parse cleanly (no stray body)
        c.send(raw_request("GET", path))
        r2 = c.read_response()
        assert r2.status == 200, r2
        assert r2.body == b"\n"
        assert c.buf == b""


def test_content_length_and_transfer_encoding_is_400(edge_server):
    with edge_server.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, r


@pytest.mark.parametrize("values", [("5", "6"), ("5", "5")], ids=["different", "identical"])
def test_duplicate_content_length_is_400(edge_server, values):
    with edge_server.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %s\r\nContent-Length: %s\r\n\r\nhello!" % (values[0].encode(), values[1].encode()))
        r = c.read_response()
        assert r.status == 400, r


def test_bad_chunk_is_400(edge_server):
    with edge_server.conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, r


def test_garbage_request_line_is_400(edge_server):
    with edge_server.conn() as c:
        c.send(b"THIS IS NOT HTTP\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, r


def test_header_block_over_limit_is_431(edge_server):
    with edge_server.conn() as c:
        c.send(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER + 1000) + b"\r\n\r\n")
        r = c.read_response()
        assert r.status == 431, r


def test_many_headers_over_limit_is_431(edge_server):
    with edge_server.conn() as c:
        hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEADER // 100 + 20))
        c.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        r = c.read_response()
        assert r.status == 431, r


def test_headers_under_limit_are_fine(edge_server):
    with edge_server.conn() as c:
        c.send(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER // 2) + b"\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r


def test_body_over_limit_is_413_without_reading_it(edge_server):
    """Announce 50 MiB, send only a little: the 413 must come without the rest."""
    with edge_server.conn(timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % (50 << 20))
        c.send(b'{"text": "' + b"a" * 1000)
        t0 = time.monotonic()
        r = c.read_response()
        assert r.status == 413, r
        assert time.monotonic() - t0 < 5


def test_chunked_body_over_limit_is_413(edge_server):
    with edge_server.conn(timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 65536
        got = None
        try:
            for _ in range((MAX_BODY // len(chunk)) + 4):
                c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            got = c.read_response()
        except ConnectionResetError:
            pytest.fail("connection reset before a 413 response could be read")
        assert got.status == 413, got


def test_body_at_limit_is_accepted(edge_server):
    text = "b" * (MAX_BODY - 100)
    body = json.dumps({"text": text})
    assert len(body) <= MAX_BODY
    with edge_server.conn() as c:
        c.send(raw_request("POST", "/length", body))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == str(len(text)).encode()


def test_idle_keep_alive_connection_is_closed(edge_server):
    with edge_server.conn(timeout=10) as c:
        c.send(raw_request("GET", "/livez"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        closed = c.wait_closed(timeout=KEEPALIVE_S + 8)
        elapsed = time.monotonic() - t0
        assert closed, f"idle connection still open after {elapsed:.1f}s (--timeout-keep-alive {KEEPALIVE_S})"
        assert elapsed >= KEEPALIVE_S * 0.5, f"closed too early: {elapsed:.2f}s"


def test_connection_close_is_honoured(edge_server):
    with edge_server.conn() as c:
        c.send(raw_request("GET", "/livez", headers={"Connection": "close"}))
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(timeout=5)


def test_http10_request(edge_server):
    with edge_server.conn() as c:
        c.send(b"GET /livez HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"\n"
        assert c.wait_closed(timeout=5)


def test_expect_100_continue_over_limit_gets_413_not_100(edge_server):
    with edge_server.conn(timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (MAX_BODY * 4))
        r = c.read_response()
        assert r.status == 413, r


def test_many_pipelined_requests_in_one_write(edge_server):
    n = 100
    with edge_server.conn(timeout=20) as c:
        c.send(b"".join(raw_request("POST", "/add", json.dumps({"a": i, "b": 0})) for i in range(n)))
        got = [c.read_response() for _ in range(n)]
        assert [r.status for r in got] == [200] * n
        assert [int(r.body) for r in got] == list(range(n))


def test_request_split_across_many_writes(edge_server):
    req = echo_req("trickled in")
    with edge_server.conn() as c:
        for i in range(0, len(req), 5):
            c.send(req[i:i + 5])
            time.sleep(0.002)
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"trickled in"


def test_error_response_then_connection_still_usable_or_closed(edge_server):
    """After an API-level 400 (validation), keep-alive continues normally."""
    with edge_server.conn() as c:
        c.send(raw_request("POST", "/add", "{}"))
        r = c.read_response()
        assert r.status == 400, r
        c.send(raw_request("POST", "/add", json.dumps({"a": 1})))
        r = c.read_response()
        assert r.status == 200 and r.body == b"3", r


@pytest.mark.parametrize("path,status", [("/echo", 405), ("/no/such/path", 404)])
def test_head_on_error_routes_has_no_body(edge_server, path, status):
    with edge_server.conn() as c:
        c.send(raw_request("HEAD", path))
        r = c.read_response(head=True)
        assert r.status == status, r
        c.send(raw_request("GET", "/livez"))
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"\n", r2


def test_client_disconnect_mid_request_is_harmless(edge_server):
    for path in ("/asleep", "/sleep"):
        c = edge_server.conn()
        c.send(raw_request("POST", path, json.dumps({"seconds": 0.3})))
        c.close()
    # half-sent request, then gone
    c = edge_server.conn()
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te")
    c.close()
    time.sleep(0.5)
    with edge_server.conn() as c:
        c.send(echo_req("still fine"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"still fine", r
    assert edge_server.proc.poll() is None


def test_health_probes_answer_while_sync_api_is_busy(edge_server):
    """threads=1: a running sync call must not block /livez or /readyz (answered by the I/O thread)."""
    import threading

    t = threading.Thread(target=lambda: edge_server.post("/sleep", {"seconds": 2.0}, timeout=30))
    t.start()
    try:
        time.sleep(0.3)
        for path in ("/livez", "/readyz"):
            with edge_server.conn(timeout=5) as c:
                t0 = time.monotonic()
                c.send(raw_request("GET", path))
                r = c.read_response()
                assert r.status == 200, r
                assert time.monotonic() - t0 < 0.5, f"{path} waited for the busy worker"
    finally:
        t.join(30)
