"""Hostile clients and misbehaving service code: what the host must survive, and how.

Each test reproduces one attack against a real server (conftest's ``Server``), bounded
in time by lowering the server's limits through CLI flags. Protocol attacks go over raw
sockets (conftest's ``RawConn``); many slow clients are driven from one thread by
``Trickler`` (selectors). The services are in tests/services/hostile_services.py.
A test that needs a ``serve`` option the CLI does not list fails up front, naming it
(``serve()``). Item 13 is marked ``slow``.

The behaviour, by spec item:

1. multipart parts that share a filename are stored by index: 900 (or 3,000) of them are
   answered within 5 s while the service keeps answering other requests;
2. ``--max-multipart-parts`` (1000) and ``--max-multipart-header-size`` (65536) → 413 JSON,
   counted as ``bentohost_requests_rejected_total{reason="multipart_limit"}``;
3. a request takes a ``max_concurrency`` slot only once its body is complete;
4. ``--timeout-request-body`` S / ``--min-body-rate`` R: the body is due S s after the head,
   plus 1 s per R bytes received → 408 + close, ``reason="body_timeout"``;
5. ``--timeout-request-header`` S: the head is due S s after its first byte → 408 + close,
   ``reason="header_timeout"``;
6. strict parsing: bad chunk framing, obs-fold, empty header names, unknown versions,
   unsupported transfer codings, ``--max-headers`` (100, ``reason="headers_count"``);
7. a worker that dies while ready is respawned at once; the log names the route it ran
   and, for a segfault, has its Python stack;
9. a shutdown that had to SIGKILL a worker exits non-zero;
10. the watchdog judges progress per sync thread: a stuck or spinning ``def`` API gets its
    worker replaced;
11. ``--max-requests-per-connection`` (1000): the N-th response says ``connection: close``;
12. ``--max-requests`` / ``--max-worker-rss`` recycle workers one at a time;
13. all of the above at once (slow).

(Item 8, the 504 body for timeouts like 10 or 60, is left to a C unit test.)
"""

from __future__ import annotations

import functools
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import (
    metric,
    REPO,
    RawConn,
    base_env,
    children_of,
    pid_dead,
    raw_request,
    wait_for,
)

SVC = "hostile_services.py"
SVC_FILE_RE = r'File ".*hostile_services\.py", line \d+ in '
TEXT_HEADERS = {"Content-Type": "text/plain"}


# --------------------------------------------------------------------------- helpers


@functools.cache
def cli_options() -> frozenset[str]:
    """The options ``python -m bentohost serve --help`` lists."""
    out = subprocess.run([sys.executable, "-m", "bentohost", "serve", "--help"], capture_output=True,
                         text=True, env=base_env(), cwd=REPO, timeout=30, check=False)
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))


def serve(factory, cls: str, *args: str, **kw):
    """Start ``hostile_services.py:<cls>``; fail clearly if the CLI lacks one of the options.

    (argparse would take an unknown ``--max-requests`` as an abbreviation of a known
    ``--max-requests-per-connection``, hence the exact check.)"""
    missing = [a for a in args if a.startswith("--") and a not in cli_options()]
    if missing:
        pytest.fail(f"`python -m bentohost serve` does not accept {', '.join(missing)} yet")
    return factory(f"{SVC}:{cls}", *args, **kw)


def rejected(srv, reason: str) -> float:
    """``bentohost_requests_rejected_total{reason=...}`` from /metrics (0 when absent)."""
    return metric(srv, "bentohost_requests_rejected_total", reason=reason)


def mark_dir(tmp_path) -> dict:
    d = tmp_path / "marks"
    d.mkdir()
    return {"HOSTILE_MARK_DIR": str(d)}


def marks(srv, kind: str) -> list[int]:
    """pids of the calls of ``kind`` that have started (see hostile_services._mark)."""
    d = srv.env["HOSTILE_MARK_DIR"]
    return [int(n.split("-")[1]) for n in os.listdir(d) if n.startswith(kind + "-")]


def assert_still_serving(srv):
    """A normal request on a new connection is answered."""
    with srv.conn(timeout=5) as c:
        c.send(raw_request("POST", "/text", "still fine", headers=TEXT_HEADERS))
        r = c.read_response()
    assert r.status == 200 and r.body == b"still fine", r


def attack(srv, data: bytes, piece: int | None = None, timeout: float = 5.0):
    """Send ``data`` on a new connection (in pieces of ``piece`` bytes, tolerating the server
    closing midway); return (the response, whether the server then closed the connection
    within 3 s)."""
    with srv.conn(timeout=timeout) as c:
        try:
            for i in range(0, len(data), piece or len(data) or 1):
                c.send(data[i:i + (piece or len(data))])
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            resp = c.read_response()
        except TimeoutError:
            pytest.fail(f"no response within {timeout}s")
        except ConnectionError as exc:
            pytest.fail(f"connection dropped without a response: {exc!r}")
        return resp, c.wait_closed(3.0)


def post_timed(url: str, timeout: float = 5.0, **kw) -> tuple[int | str, float, dict]:
    """POST on a fresh connection: (status or the exception's name, seconds, JSON body or {})."""
    t0 = time.monotonic()
    try:
        r = requests.post(url, timeout=timeout, **kw)
    except requests.RequestException as exc:
        return type(exc).__name__, time.monotonic() - t0, {}
    try:
        body = r.json()
    except ValueError:
        body = {}
    return r.status_code, time.monotonic() - t0, body if isinstance(body, dict) else {}


def consecutive_ok(url: str, n: int, within: float, per_call: float = 3.0) -> list:
    """Fresh POSTs to ``url`` until ``n`` in a row answer 200; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    history: list = []
    streak = 0
    while streak < n:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {n} consecutive 200s from {url} within {within}s; got {history}")
        status, _, _ = post_timed(url, timeout=min(per_call, max(left, 0.2)), json={})
        history.append(status)
        streak = streak + 1 if status == 200 else 0
        if status != 200:
            time.sleep(0.05)
    return history


class Background:
    """Calls ``fn`` repeatedly in a thread until stopped; keeps what each call returned."""

    def __init__(self, fn, pause: float = 0.0):
        self.fn, self.pause, self.results = fn, pause, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.results.append(self.fn())
            self._stop.wait(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def same_name_files(n: int, pad: int = 0) -> tuple[bytes, str]:
    """A multipart/form-data body of ``n`` parts "files", all with filename="same.bin", part i
    holding str(i); ``pad`` adds an extra header line of that many bytes to each part's
    headers. Returns (body, content type)."""
    boundary = "hostile" + uuid.uuid4().hex
    extra = f"X-Pad: {'p' * pad}\r\n" if pad else ""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="same.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n{extra}\r\n").encode()
    body = b"".join(head + str(i).encode() + b"\r\n" for i in range(n)) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_multipart(srv, body_ctype: tuple[bytes, str], timeout: float = 30):
    body, ctype = body_ctype
    return srv.post("/files", data=body, headers={"Content-Type": ctype}, timeout=timeout)


def assert_413_json(r):
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert isinstance(r.json().get("error"), str), r.text


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Trickler:
    """Many slow clients on one thread: each connection gets ``head`` at once, then ``step``
    bytes of ``trickle`` every ``interval`` seconds; whatever comes back is recorded, and the
    time the server closed the connection (EOF or reset).

        with Trickler(host, port) as t:   # closes every connection at the end
            t.add(...); t.add(...)
            t.start()
    """

    class Conn:
        def __init__(self, sock: socket.socket, trickle: bytes, step: int, interval: float):
            self.sock, self.trickle, self.step, self.interval = sock, trickle, step, interval
            self.sent = 0
            self.opened_at = time.monotonic()   # after the head (if any) was sent
            self.next_at = self.opened_at
            self.first_byte_at: float | None = None
            self.closed_at: float | None = None
            self.received = b""

        @property
        def status(self) -> int | None:
            m = re.match(rb"HTTP/1\.[01] (\d{3})", self.received)
            return int(m.group(1)) if m else None

        def header(self, name: str) -> str | None:
            head = self.received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == name.lower():
                    return v.strip()
            return None

        def __repr__(self):
            return (f"<Conn sent={self.sent} closed_after="
                    f"{None if self.closed_at is None else round(self.closed_at - self.opened_at, 2)} "
                    f"received={self.received[:120]!r}>")

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.conns: list[Trickler.Conn] = []
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, head: bytes, trickle: bytes, step: int = 1, interval: float = 1.0) -> Trickler.Conn:
        assert not self._thread.is_alive(), "add every connection before start()"
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if head:
            sock.sendall(head)
        sock.setblocking(False)
        conn = Trickler.Conn(sock, trickle, step, interval)
        self.conns.append(conn)
        self._sel.register(sock, selectors.EVENT_READ, conn)
        return conn

    def _closed(self, conn: Trickler.Conn):
        if conn.closed_at is None:
            conn.closed_at = time.monotonic()
            self._sel.unregister(conn.sock)

    def _run(self):
        while not self._stop.is_set():
            now = time.monotonic()
            for c in self.conns:
                if c.closed_at is None and c.sent < len(c.trickle) and now >= c.next_at:
                    try:
                        c.sent += c.sock.send(c.trickle[c.sent:c.sent + c.step])
                    except BlockingIOError:
                        pass
                    except OSError:
                        c.sent = len(c.trickle)  # the server stopped reading: keep reading what it says
                    if c.first_byte_at is None:
                        c.first_byte_at = now
                    c.next_at = now + c.interval
            for key, _ in self._sel.select(timeout=0.02):
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    c.received += data
                else:
                    self._closed(c)

    def start(self) -> Trickler:
        self._thread.start()
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for c in self.conns:
            c.sock.close()
        self._sel.close()

    def wait_all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.closed_at is not None for c in self.conns):
                return True
            time.sleep(0.05)
        return False


def slow_body_head(path: str = "/text", length: int = 1000) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def slow_head_request() -> bytes:
    """A request head long enough never to finish when sent a byte per 0.3 s."""
    return b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 400 + b"\r\n\r\n"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hostile(module_server_factory):
    """2 workers, no new options: the parser cases run against it."""
    return module_server_factory(f"{SVC}:Hostile")


# --------------------------------------------------------------------------- 1. same-name parts


@pytest.mark.parametrize("n", [900, 3000])
def test_same_filename_parts_answered_fast(server_factory, n):
    """Parts stored by index: no per-part search for a free name (3,000 may get 413: item 2)."""
    srv = server_factory(f"{SVC}:Hostile")
    srv.wait_all_workers(2)
    body = same_name_files(n)
    with Background(lambda: post_timed(srv.url + "/whoami", json={}), pause=0.05) as other:
        t0 = time.monotonic()
        r = post_multipart(srv, body, timeout=60)
        elapsed = time.monotonic() - t0
    assert elapsed < 5.0, f"{n} parts named same.bin took {elapsed:.2f}s (status {r.status_code})"
    if n <= 1000:
        assert r.status_code == 200, r.text[:300]
        assert r.json()["contents"] == [str(i) for i in range(n)]
    assert other.results, "no other request ran during the upload"
    slow = [(s, round(t, 2)) for s, t, _ in other.results if s != 200 or t > 1.0]
    assert not slow, f"other requests during the upload failed or were slow: {slow}"


def test_same_filename_parts_are_stored_by_index(hostile):
    r = post_multipart(hostile, same_name_files(20))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["contents"] == [str(i) for i in range(20)]
    assert out["distinct_paths"] == 20
    # <temp dir>/<the upload's own name>, then <temp dir>/.<part index>/<name>: no search
    assert out["names"] == ["same.bin"] * 20
    assert out["folders"][0].startswith("bentohost-req-")
    assert out["folders"][1:] == [f".{i}" for i in range(1, 20)]


# --------------------------------------------------------------------------- 2. multipart limits


@pytest.mark.parametrize("flags,limit", [(("--max-multipart-parts", "10"), 10), ((), 1000)],
                         ids=["flag-10", "default-1000"])
def test_multipart_part_count_limit(server_factory, flags, limit):
    srv = serve(server_factory, "Hostile", *flags)
    r = post_multipart(srv, same_name_files(limit))
    assert r.status_code == 200, r.text[:300]
    before = rejected(srv, "multipart_limit")
    assert_413_json(post_multipart(srv, same_name_files(limit + 1)))
    assert rejected(srv, "multipart_limit") == before + 1
    assert_still_serving(srv)


@pytest.mark.parametrize("flags,under,over", [
    (("--max-multipart-header-size", "1024"), (3, 0), (3, 600)),
    ((), (900, 300), (900, 1200)),
], ids=["flag-1024", "default-1MiB"])
def test_multipart_header_size_limit(server_factory, flags, under, over):
    """Total bytes of all parts' headers (under/over: (parts, padding bytes per part))."""
    srv = serve(server_factory, "Hostile", *flags)
    r = post_multipart(srv, same_name_files(under[0], pad=under[1]))
    assert r.status_code == 200, r.text[:300]
    before = rejected(srv, "multipart_limit")
    assert_413_json(post_multipart(srv, same_name_files(over[0], pad=over[1])))
    assert rejected(srv, "multipart_limit") == before + 1
    assert_still_serving(srv)


# --------------------------------------------------------------------------- 3. slow bodies vs slots


def test_slow_bodies_do_not_hold_concurrency_slots(server_factory):
    """max_concurrency=4; 8 clients trickle 1 body byte a second: normal calls still get 200."""
    srv = server_factory(f"{SVC}:Limited")
    with Trickler(srv.host, srv.port) as t:
        for _ in range(8):
            t.add(slow_body_head(length=1000), b"b" * 1000, step=1, interval=1.0)
        t.start()
        time.sleep(1.0)
        statuses = []
        for i in range(20):
            status, _, _ = post_timed(srv.url + "/text", data=f"normal {i}".encode(), headers=TEXT_HEADERS)
            statuses.append(status)
            time.sleep(0.2)
        dropped = [c for c in t.conns if c.closed_at is not None]
    assert statuses == [200] * 20, f"normal calls while 8 bodies trickle in: {statuses}"
    assert not dropped, f"slow bodies were dropped, the attack did not last: {dropped}"


# --------------------------------------------------------------------------- 4. body deadline


BODY_TRICKLES = {
    "content-length": (slow_body_head(length=1000), b"b" * 1000, 1),
    "chunked": (b"POST /text HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"1\r\nb\r\n" * 200, 6),
}


@pytest.mark.parametrize("kind", list(BODY_TRICKLES))
def test_trickled_body_past_deadline_gets_408(server_factory, kind):
    srv = serve(server_factory, "Hostile", "--timeout-request-body", "2")
    before = rejected(srv, "body_timeout")
    head, trickle, step = BODY_TRICKLES[kind]
    with Trickler(srv.host, srv.port) as t:
        conn = t.add(head, trickle, step=step, interval=0.2)
        t.start().wait_all_closed(8)
    assert conn.closed_at is not None, f"a body trickling at 5 B/s is still open after 8s: {conn}"
    after = conn.closed_at - conn.opened_at
    assert conn.status == 408, conn
    assert (conn.header("connection") or "").lower() == "close", conn
    assert 1.5 <= after <= 4.0, f"closed {after:.2f}s after the head for --timeout-request-body 2"
    assert rejected(srv, "body_timeout") == before + 1
    assert_still_serving(srv)


def test_body_at_min_body_rate_is_not_cut_off(server_factory):
    """6 KiB at 1 KiB per 0.6 s takes 3.6 s > 2 s, but earns 1 s per 1024 bytes received."""
    srv = serve(server_factory, "Hostile", "--timeout-request-body", "2", "--min-body-rate", "1024")
    payload = b"k" * 6144
    with srv.conn(timeout=10) as c:
        c.send(slow_body_head(length=len(payload)))
        for i in range(0, len(payload), 1024):
            time.sleep(0.6)
            c.send(payload[i:i + 1024])
        r = c.read_response()
    assert r.status == 200 and r.body == payload, r


# --------------------------------------------------------------------------- 5. head deadline


def test_slowloris_heads_get_408_and_close(server_factory):
    """50 clients send their head a byte per 0.3 s: every byte re-arms nothing."""
    srv = serve(server_factory, "Hostile", "--timeout-request-header", "2")
    before = rejected(srv, "header_timeout")
    with Trickler(srv.host, srv.port) as t:
        for _ in range(50):
            t.add(b"", slow_head_request(), step=1, interval=0.3)
        t.start().wait_all_closed(6)
    still_open = [c for c in t.conns if c.closed_at is None]
    assert not still_open, f"{len(still_open)} of 50 slow heads still open after 6s: {still_open[:3]}"
    spans = [c.closed_at - c.first_byte_at for c in t.conns]
    assert max(spans) <= 4.0, f"slow heads closed up to {max(spans):.2f}s after their first byte"
    assert min(spans) >= 1.5, f"a slow head was closed after {min(spans):.2f}s (limit 2s)"
    wrong = [c for c in t.conns if c.status != 408 or (c.header("connection") or "").lower() != "close"]
    assert not wrong, f"{len(wrong)} slow heads closed without 408 + connection: close: {wrong[:3]}"
    assert rejected(srv, "header_timeout") == before + 50
    assert_still_serving(srv)


# --------------------------------------------------------------------------- 6. parser strictness


def _chunked(rest: bytes, te: bytes = b"chunked") -> bytes:
    return (b"POST /text HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: " + te
            + b"\r\n\r\n" + rest)


def _get(version: bytes = b" HTTP/1.1", headers: bytes = b"Host: x\r\n") -> bytes:
    return b"GET /livez" + version + b"\r\n" + headers + b"\r\n"


PARSER_CASES = {
    # name: (request, acceptable statuses)
    "chunk-data-without-crlf": (_chunked(b"d\r\nhello, world!XX0\r\n\r\n"), (400,)),
    "huge-chunk-extensions": (_chunked(b"5;" + b"a=b;" * 50000 + b"\r\nhello\r\n0\r\n\r\n"), (400, 431)),
    "huge-chunk-extension-value": (_chunked(b"5;a=" + b"v" * 200000 + b"\r\nhello\r\n0\r\n\r\n"), (400, 431)),
    "transfer-encoding-obs-fold": (
        b"POST /text HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
        + b"5\r\nhello\r\n0\r\n\r\n", (400,)),
    "obs-fold": (_get(headers=b"Host: x\r\nX-Folded: a\r\n b\r\n"), (400,)),
    "empty-header-name": (_get(headers=b"Host: x\r\n: x\r\n"), (400,)),
    "http-2.0": (_get(b" HTTP/2.0"), (505,)),
    "http-3.0": (_get(b" HTTP/3.0"), (505,)),
    "http-0.9": (_get(b" HTTP/0.9"), (505,)),
    "http-0.9-style-no-version": (b"GET /livez\r\n\r\n", (505,)),
    "gzip-chunked": (_chunked(b"5\r\nhello\r\n0\r\n\r\n", te=b"gzip, chunked"), (501,)),
    "identity": (_chunked(b"hello", te=b"identity"), (400, 501)),
    "content-length-and-chunked": (
        b"POST /text HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", (400,)),
    "101-header-lines": (_get(headers=b"Host: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100))), (431,)),
}


@pytest.mark.parametrize("case", list(PARSER_CASES))
def test_parser_rejects_and_closes(hostile, case):
    data, statuses = PARSER_CASES[case]
    r, closed = attack(hostile, data, piece=16384)
    assert r.status in statuses, f"{case}: got {r.status}, want one of {statuses}: {r}"
    assert closed, f"{case}: the connection stayed open after {r.status}"
    assert_still_serving(hostile)


def test_max_headers_flag(server_factory):
    srv = serve(server_factory, "Hostile", "--max-headers", "10")
    ten = b"Host: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(9))
    with srv.conn() as c:
        c.send(_get(headers=ten))
        assert c.read_response().status == 200
    before = rejected(srv, "headers_count")
    r, closed = attack(srv, _get(headers=ten + b"X-One-Too-Many: v\r\n"))
    assert r.status == 431 and closed, r
    assert rejected(srv, "headers_count") == before + 1
    assert_still_serving(srv)


# --------------------------------------------------------------------------- 7. crash respawn


def _exit_lines(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if re.search(r"worker \d+ \(pid \d+\)", line) and re.search(r"exit|killed|signal|died", line, re.IGNORECASE)]


def test_crashing_worker_is_respawned_at_once(server_factory, tmp_path):
    """10 calls that os._exit(1) the worker, 0.3 s apart: no doubling backoff for a worker
    that had been ready, so right after them the service answers again."""
    srv = server_factory(f"{SVC}:Hostile", env=mark_dir(tmp_path))
    srv.wait_all_workers(2)
    for _ in range(10):
        post_timed(srv.url + "/crash", timeout=2.0, json={})
        time.sleep(0.3)
    history = consecutive_ok(srv.url + "/whoami", 5, within=2.0, per_call=1.0)
    assert len(marks(srv, "crash")) >= 5, f"only {len(marks(srv, 'crash'))} crash calls ran"
    lines = _exit_lines(srv.log())
    assert any("/crash" in line for line in lines), \
        f"no worker exit line names the route /crash (after {history}):\n" + "\n".join(lines)


def test_segfault_logs_python_stack_and_route(server_factory, tmp_path):
    srv = server_factory(f"{SVC}:Hostile", env=mark_dir(tmp_path))
    srv.wait_all_workers(2)
    post_timed(srv.url + "/segv", timeout=5.0, json={})
    assert marks(srv, "segv"), "the segfaulting call did not run"
    consecutive_ok(srv.url + "/whoami", 5, within=5.0)
    wait_for(lambda: _exit_lines(srv.log()), 5, what="a worker exit line")
    log = srv.log()
    assert "Fatal Python error" in log or re.search(SVC_FILE_RE + "segv", log), \
        f"no faulthandler stack for the segfault:\n{log}"
    assert any("/segv" in line for line in _exit_lines(log)), f"no worker exit line names /segv:\n{log}"


# --------------------------------------------------------------------------- 9. forced shutdown


def test_shutdown_that_killed_a_worker_exits_nonzero(server_factory, tmp_path):
    srv = server_factory(f"{SVC}:Hostile", "--timeout-graceful-shutdown", "1", env=mark_dir(tmp_path))
    caller = threading.Thread(target=post_timed, args=(srv.url + "/sleep",),
                              kwargs={"timeout": 40, "json": {"seconds": 30}}, daemon=True)
    caller.start()
    wait_for(lambda: marks(srv, "sleep"), 5, what="the 30 s call to start")
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(8)
    except subprocess.TimeoutExpired:
        srv.fail("the server did not exit within 8s of SIGTERM (--timeout-graceful-shutdown 1)")
    took = time.monotonic() - t0
    # graceful 1 s, then the supervisor's 5 s margin for on_shutdown hooks before SIGKILL
    assert code != 0 and took <= 7.5, (
        f"the server had to kill a worker; it exited with code {code}, {took:.2f}s after SIGTERM "
        f"(--timeout-graceful-shutdown 1):\n{srv.log()}")
    assert re.search(r"kill", srv.log(), re.IGNORECASE), srv.log()


# --------------------------------------------------------------------------- 10. stuck sync code


@pytest.mark.parametrize("api", ["stuck", "spin"])
def test_stuck_sync_thread_gets_worker_replaced(server_factory, tmp_path, api):
    """workers=2, threads=1, timeout=2: a def API that never returns (sleeping or spinning)
    on both workers; the watchdog (2 x 2 s without progress on every sync thread) logs its
    stack and replaces the worker."""
    srv = server_factory(f"{SVC}:Stuck", env=mark_dir(tmp_path))
    srv.wait_all_workers(2)
    pool = ThreadPoolExecutor(8)
    calls = []
    for _ in range(8):  # fresh connections until both workers run one
        calls.append(pool.submit(post_timed, srv.url + f"/{api}", timeout=10, json={}))
        deadline = time.monotonic() + 1.0  # a call sent to the already stuck worker never starts
        while len(marks(srv, api)) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(set(marks(srv, api))) >= 2:
            break
    stuck_pids = set(marks(srv, api))
    assert len(stuck_pids) == 2, f"could not get /{api} running on both workers: {stuck_pids}"
    results = [f.result(timeout=15) for f in calls]
    pool.shutdown(wait=False)
    # 504 at the call's own timeout, or 503 from the hung worker itself at the watchdog's verdict
    assert all(s in (503, 504) and t < 4.5 for s, t, _ in results), f"/{api} calls: {results}"

    consecutive_ok(srv.url + "/ok", 6, within=15.0)
    wait_for(lambda: all(pid_dead(p) for p in stuck_pids), 5, what=f"the stuck workers {stuck_pids} to be gone")
    log = srv.log()
    assert re.search(r"no progress|watchdog", log, re.IGNORECASE), log
    assert re.search(SVC_FILE_RE + api, log), f"no stack of the stuck /{api} thread in the log:\n{log}"


def test_hung_worker_answers_what_it_holds_and_leaves_new_calls_to_its_replacement(
        server_factory, tmp_path):
    """workers=1, threads=1, timeout=2: /stuck never returns, so the watchdog's verdict comes 4 s
    into it and the kill a second or two later. A call queued behind it 3.3 s in would time out
    only after the kill: the hung worker answers it 503 at the verdict instead. A call sent
    between the verdict and the kill is not taken by the hung worker: it waits in the listen
    queue for the replacement, which answers it."""
    srv = server_factory(f"{SVC}:StuckAlone", env=mark_dir(tmp_path))
    srv.wait_all_workers(1)
    pool = ThreadPoolExecutor(3)
    first = pool.submit(post_timed, srv.url + "/stuck", timeout=10, json={})
    wait_for(lambda: marks(srv, "stuck"), 5, what="the stuck call to start")
    started = time.monotonic()
    (stuck_pid,) = marks(srv, "stuck")
    time.sleep(3.3)
    queued = pool.submit(post_timed, srv.url + "/whoami", timeout=10, json={})
    wait_for(lambda: "taking no more connections" in srv.log(), 5, what="the hung worker's verdict")
    assert not pid_dead(stuck_pid), "the hung worker was killed before this test could call it"
    later = pool.submit(post_timed, srv.url + "/whoami", timeout=20, json={})

    assert first.result(15)[0] == 504
    status, took, _ = queued.result(15)
    assert status == 503 and took < 2.0, (status, took, srv.log())
    status, _, body = later.result(25)
    assert status == 200 and body.get("pid") not in (None, stuck_pid), (status, body, srv.log())
    assert time.monotonic() - started < 20
    pool.shutdown(wait=False)


# --------------------------------------------------------------------------- 11. keep-alive cap


@pytest.mark.parametrize("flags,n", [(("--max-requests-per-connection", "5"), 5), ((), 1000)],
                         ids=["flag-5", "default-1000"])
def test_keep_alive_request_cap(server_factory, flags, n):
    srv = serve(server_factory, "Hostile", *flags)
    with srv.conn(timeout=10) as c:
        for i in range(1, n + 1):
            c.send(raw_request("POST", "/whoami", "{}"))
            r = c.read_response()
            assert r.status == 200, (i, r)
            close = r.headers.get("connection", "").lower() == "close"
            assert close == (i == n), f"response {i} of {n}: connection: {r.headers.get('connection')}"
        assert c.wait_closed(5), f"the server kept the connection open after {n} requests"


# --------------------------------------------------------------------------- 12. recycling


def test_max_requests_recycles_workers(server_factory):
    srv = serve(server_factory, "Hostile", "--max-requests", "50")
    results = []
    for _ in range(300):  # spread over a few seconds: the supervisor looks once a second
        results.append(post_timed(srv.url + "/whoami", json={}))
        time.sleep(0.01)
    failed = [(i, s) for i, (s, _, _) in enumerate(results) if s != 200]
    assert not failed, f"requests failed while workers were recycled: {failed[:10]}"
    pids = {body["pid"] for _, _, body in results}
    assert len(pids) > 2, f"300 requests with --max-requests 50 were all served by {pids}"


def test_max_worker_rss_recycles(server_factory):
    srv = serve(server_factory, "Hostile", "--max-worker-rss", "80")
    before = set(srv.wait_all_workers(2).values())
    hog_status, _, grown = post_timed(srv.url + "/hog", timeout=10, json={"mb": 100})
    failures, fresh = [], set()
    deadline = time.monotonic() + 10
    while not fresh and time.monotonic() < deadline:
        status, _, body = post_timed(srv.url + "/whoami", json={})
        if status != 200:
            failures.append(status)
        elif body["pid"] not in before:
            fresh.add(body["pid"])
        time.sleep(0.05)
    assert fresh, f"no new worker within 10s after a worker grew past --max-worker-rss 80 (hog: {hog_status}, {grown})"
    assert not failures, f"requests failed while the grown worker was recycled: {failures}"
    if grown:
        wait_for(lambda: pid_dead(grown["pid"]), 5, what="the grown worker to be gone")


# --------------------------------------------------------------------------- 13. everything at once


def normal_client(srv, seconds: float, every_200=None) -> tuple[list[float], list]:
    """Sequential POST /whoami on a keep-alive connection (a new one whenever the server
    closes it) for ``seconds``: (sorted latencies, the 429/5xx statuses and errors seen)."""
    latencies: list[float] = []
    bad: list = []
    conn = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if conn is None:
            conn = RawConn(srv.host, srv.port, timeout=5)
        t0 = time.monotonic()
        try:
            conn.send(raw_request("POST", "/whoami", "{}"))
            r = conn.read_response()
        except (ConnectionError, OSError) as exc:
            bad.append(repr(exc))
            conn.close()
            conn = None
            continue
        latencies.append(time.monotonic() - t0)
        if r.status == 429 or r.status >= 500:
            bad.append(r.status)
        if r.headers.get("connection", "").lower() == "close":
            conn.close()
            conn = None
        if every_200 is not None and len(latencies) % 200 == 0:
            every_200()
    if conn is not None:
        conn.close()
    return sorted(latencies), bad


def _raise_nofile(want: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to ``want`` (or skip); returns the old limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        pytest.skip(f"cannot raise RLIMIT_NOFILE to {want}: {exc}")
    return soft, hard


@pytest.mark.slow
def test_resource_exhaustion_keeps_normal_client_fast(server_factory):
    """5,000 idle connections + 64 slow bodies + 200 slow heads + 900 same-name parts, all at
    once: a normal client's p99 stays < 50 ms, with no 429 or 5xx; workers stay < 300 MB."""
    old = _raise_nofile(8192)  # before the server starts: it inherits the limit
    idle: list[socket.socket] = []
    try:
        srv = serve(server_factory, "Hostile", "--timeout-request-header", "5", "--timeout-request-body", "5")
        srv.wait_all_workers(2)
        for _ in range(5000):
            idle.append(socket.create_connection((srv.host, srv.port), timeout=10))
        with Trickler(srv.host, srv.port) as t:
            for _ in range(64):
                t.add(slow_body_head(length=1000), b"b" * 1000, step=1, interval=1.0)
            for _ in range(200):
                t.add(b"", slow_head_request(), step=1, interval=0.3)
            t.start()
            upload = threading.Thread(target=post_multipart, args=(srv, same_name_files(900)), daemon=True)
            upload.start()
            peak: dict[int, float] = {}

            def sample_rss():
                for pid in children_of(srv.pid):
                    peak[pid] = max(peak.get(pid, 0.0), rss_mb(pid))

            latencies, bad = normal_client(srv, 10.0, every_200=sample_rss)
            upload.join(30)
        sample_rss()
        assert latencies, f"the normal client got no answer at all: {bad[:20]}"
        p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
        print(f"\nnormal client: {len(latencies)} requests, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
              f"worker peak RSS (MB): { {p: round(v, 1) for p, v in peak.items()} }")
        assert not bad, f"the normal client got errors: {bad[:20]}"
        assert p99 < 0.050, f"p99 {p99 * 1000:.1f} ms under attack"
        assert peak and max(peak.values()) < 300, f"worker RSS (MB): {peak}"
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
