"""C unit tests: the bridge ring (tests/c/test_ring.c) and the HTTP layer of the
I/O thread driven by a Python-free harness (tests/c/http_harness.c) over raw
sockets. The C programs are compiled here with gcc; the tests skip when gcc,
libuv's headers or llhttp's sources are missing."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
TESTS_C = ROOT / "tests" / "c"
LLHTTP_SRC = Path(os.environ.get("BH_LLHTTP_SRC", "/usr/share/llhttp"))
LLHTTP_INC = Path(os.environ.get("BH_LLHTTP_INC", "/usr/share/include/llhttp"))

CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-pthread"]
HOST_SOURCES = ["bridge.c", "io.c", "http.c", "router.c"]
LLHTTP_SOURCES = ["api.c", "http.c", "llhttp.c"]


def _have_toolchain():
    if shutil.which("gcc") is None:
        return "gcc not found"
    if not Path("/usr/include/uv.h").exists() and not os.environ.get("BH_UV_INC"):
        return "libuv headers (uv.h) not found"
    if not all((LLHTTP_SRC / s).exists() for s in LLHTTP_SOURCES):
        return "llhttp sources not found in %s" % LLHTTP_SRC
    if not (LLHTTP_INC / "llhttp.h").exists():
        return "llhttp.h not found in %s" % LLHTTP_INC
    return None


_missing = _have_toolchain()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("build failed: %s\n%s%s" % (" ".join(map(str, cmd)), r.stdout, r.stderr))


def _build(out, main, extra_flags=(), with_http=True):
    """Compiles main + the host's I/O sources (+ llhttp) into out."""
    out = Path(out)
    objs = []
    inc = ["-I%s" % CSRC, "-I%s" % LLHTTP_INC]
    if with_http:
        for s in LLHTTP_SOURCES:
            o = out.parent / ("%s-llhttp-%s.o" % (out.name, s[:-2]))
            # llhttp's generated code has unused parameters everywhere
            _run(["gcc", *CFLAGS, "-Wno-unused-parameter", "-O2", *extra_flags, *inc,
                  "-c", str(LLHTTP_SRC / s), "-o", str(o)])
            objs.append(str(o))
        srcs = [str(CSRC / s) for s in HOST_SOURCES]
    else:
        srcs = [str(CSRC / "bridge.c")]
    _run(["gcc", *CFLAGS, "-O2", *extra_flags, *inc, str(main), *srcs, *objs, "-luv", "-o", str(out)])
    return out


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cunits")


@pytest.fixture(scope="module")
def harness_bin(build_dir):
    return _build(build_dir / "http_harness", TESTS_C / "http_harness.c", ["-g"])


@pytest.fixture(scope="module")
def harness_asan_bin(build_dir):
    return _build(build_dir / "http_harness_asan", TESTS_C / "http_harness.c",
                  ["-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=undefined"])


# ---------------------------------------------------------------- ring


def test_ring_and_completions(build_dir):
    exe = _build(build_dir / "test_ring", TESTS_C / "test_ring.c", with_http=False)
    r = subprocess.run([str(exe), "2000000"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2000000 items in order" in r.stdout
    assert r.stdout.strip().endswith("OK")


def test_ring_tsan(build_dir):
    exe = build_dir / "test_ring_tsan"
    try:
        _build(exe, TESTS_C / "test_ring.c", ["-g", "-O1", "-fsanitize=thread"], with_http=False)
    except AssertionError as e:
        pytest.skip("no ThreadSanitizer: %s" % str(e)[:200])
    r = subprocess.run([str(exe), "200000"], capture_output=True, text=True, timeout=300)
    if "FATAL: ThreadSanitizer" in r.stderr:  # e.g. unsupported memory layout
        pytest.skip(r.stderr[:200])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING: ThreadSanitizer" not in r.stderr, r.stderr


# ---------------------------------------------------------------- harness


class Harness:
    def __init__(self, exe, max_body=1 << 20, keepalive=1.0, max_header=8192, ready_ms=0, env=None):
        self.proc = subprocess.Popen(
            [str(exe), "0", str(max_body), str(keepalive), str(max_header), str(ready_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError("harness did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
        self.stderr = ""

    def connect(self, timeout=5.0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def terminate(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
            raise AssertionError("harness did not exit after SIGTERM: " + self.stderr)
        return self.proc.returncode


@pytest.fixture
def harness(harness_bin):
    started = []

    def start(**kw):
        h = Harness(harness_bin, **kw)
        started.append(h)
        return h

    yield start
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()


class Reader:
    """Reads HTTP/1.1 responses from a socket, keeping leftover bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; have %r" % self.buf[:200])
        self.buf += data

    def response(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        hdr, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = hdr.decode("latin-1").split("\r\n")
        proto, status, _reason = (lines[0].split(" ", 2) + [""])[:3]
        assert proto == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            assert k.lower() not in headers, "duplicate header %s" % k
            headers[k.lower()] = v.strip()
        status = int(status)
        if status == 100:
            return status, headers, b""
        assert "content-length" in headers, lines
        n = 0 if head else int(headers["content-length"])
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self, timeout=3.0):
        """True when the peer closes (EOF or reset) within timeout with no further data."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert data == b"", "unexpected data %r" % data[:200]
        return True


def post(path, body, ctype="application/json", extra=""):
    return ("POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (path, ctype, len(body), extra)).encode() + body


def get(path, method="GET", extra=""):
    return ("%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (method, path, extra)).encode()


def test_round_trip(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(post("/echo", b'{"x": [1, 2, 3]}'))
        status, headers, body = r.response()
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert body == b'{"x": [1, 2, 3]}'
        assert "connection" not in headers
        s.sendall(post("/echo", b""))
        assert r.response()[2] == b"{}"
        s.sendall(post("/ctype?a=b#f", b"zz", ctype="image/png"))
        status, headers, body = r.response()
        assert (status, headers["content-type"], body) == (201, "text/plain", b"image/png")
    assert h.terminate() == 0


def test_keepalive_reuse_and_large_body(harness):
    h = harness()
    big = os.urandom(600000).hex().encode()[:900000]
    with h.connect() as s:
        r = Reader(s)
        for i in range(20):
            s.sendall(post("/echo", b'{"i":%d}' % i))
            status, _, body = r.response()
            assert status == 200 and body == b'{"i":%d}' % i
        s.sendall(post("/echo", big))
        status, _, body = r.response()
        assert status == 200 and body == big
        s.sendall(get("/livez"))
        assert r.response()[0] == 200


def test_pipelined_in_order(harness):
    h = harness()
    reqs = []
    for i in range(50):
        if i % 5 == 4:
            reqs.append(get("/livez"))
        else:
            reqs.append(post("/echo", b'{"n":%d}' % i))
    with h.connect() as s:
        s.sendall(b"".join(reqs))
        r = Reader(s)
        for i in range(50):
            status, headers, body = r.response()
            assert status == 200
            if i % 5 == 4:
                assert body == b"\n"
            else:
                assert body == b'{"n":%d}' % i


def test_pipelined_byte_by_byte(harness):
    h = harness()
    data = post("/echo", b'{"a":1}') + get("/readyz") + post("/echo", b"[2]")
    with h.connect() as s:
        for i in range(len(data)):
            s.send(data[i:i + 1])
        r = Reader(s)
        assert r.response()[2] == b'{"a":1}'
        assert r.response()[0] == 200
        assert r.response()[2] == b"[2]"


def test_chunked_body(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"chunk', b'ed": ', b"true}"):
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.01)
        s.sendall(b"0\r\n\r\n")
        status, _, body = r.response()
        assert status == 200 and body == b'{"chunked": true}'
        # a larger one, several chunks per write, forcing the buffer to grow
        payload = b"x" * 100000
        chunks = b"".join(b"%x\r\n%s\r\n" % (1000, payload[i:i + 1000]) for i in range(0, len(payload), 1000))
        s.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        status, _, body = r.response()
        assert status == 200 and body == payload


def test_expect_100_continue(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        body = b'{"expect":1}'
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        status, _, _ = r.response()
        assert status == 100
        s.sendall(body)
        status, _, got = r.response()
        assert status == 200 and got == body
    # too large: a final 413 instead of 100, and no body is awaited
    with h.connect() as s:
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (50 << 20))
        status, headers, body = r.response()
        assert status == 413
        assert headers["connection"] == "close"
        assert r.closed()


def test_head_livez_healthz(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(get("/livez", "HEAD"))
        status, headers, body = r.response(head=True)
        assert status == 200
        assert headers["content-length"] == "1"
        assert headers["content-type"] == "text/plain; charset=utf-8"
        s.sendall(get("/healthz"))
        status, _, body = r.response()
        assert status == 200 and body == b"\n"
        assert r.buf == b""


@pytest.mark.parametrize("raw", [
    b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
], ids=["cl+te", "dup-cl", "bad-chunk", "garbage", "bad-header"])
def test_bad_request(harness, raw):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(raw)
        status, headers, body = r.response()
        assert status == 400
        assert body == b'{"error":"Bad Request"}'
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert r.closed()


def test_header_too_large(harness):
    h = harness(max_header=4096)
    with h.connect() as s:
        r = Reader(s)
        s.sendall(b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        status, headers, body = r.response()
        assert status == 431
        assert body == b'{"error":"Request Header Fields Too Large"}'
        assert r.closed()
    # many small headers add up too; a header just under the limit is fine
    with h.connect() as s:
        r = Reader(s)
        s.sendall(b"GET /livez HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(600)) + b"\r\n")
        assert r.response()[0] == 431
    with h.connect() as s:
        r = Reader(s)
        s.sendall(b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
        assert r.response()[0] == 200


def test_body_too_large_not_read(harness):
    h = harness(max_body=10000)
    with h.connect() as s:
        r = Reader(s)
        t0 = time.monotonic()
        # claims 100 MB, sends only a little: the answer must not wait for the rest
        s.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 20000)
        status, headers, body = r.response()
        assert status == 413
        assert body == b'{"error":"Request Entity Too Large"}'
        assert headers["connection"] == "close"
        assert time.monotonic() - t0 < 1.0
        assert r.closed()
    with h.connect() as s:  # chunked, decided while counting
        r = Reader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"1000\r\n" + b"y" * 4096 + b"\r\n" + b"2000\r\n" + b"y" * 100)
        assert r.response()[0] == 413
        assert r.closed()
    with h.connect() as s:  # at the limit is fine
        r = Reader(s)
        s.sendall(post("/echo", b"z" * 10000))
        status, _, body = r.response()
        assert status == 200 and len(body) == 10000


def test_idle_keepalive_timeout(harness):
    h = harness(keepalive=0.5)
    with h.connect() as s:
        r = Reader(s)
        s.sendall(get("/livez"))
        assert r.response()[0] == 200
        t0 = time.monotonic()
        assert r.closed(timeout=3.0)
        assert 0.3 < time.monotonic() - t0 < 2.0
    with h.connect() as s:  # never sends anything
        assert Reader(s).closed(timeout=3.0)


def test_not_found_and_method_not_allowed(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(get("/missing"))
        status, headers, body = r.response()
        assert (status, body) == (404, b'{"error":"Not Found"}')
        assert headers["content-type"] == "application/json"
        s.sendall(post("/missing", b"{}"))
        assert r.response()[0] == 404
        s.sendall(get("/echo"))
        status, headers, body = r.response()
        assert (status, body) == (405, b'{"error":"Method Not Allowed"}')
        assert headers["allow"] == "POST"
        s.sendall(post("/livez", b"{}"))
        status, headers, _ = r.response()
        assert status == 405 and headers["allow"] == "GET, HEAD"
        s.sendall(get("/echo", "HEAD"))
        status, headers, body = r.response(head=True)
        assert status == 405 and body == b""
        # the connection survived all of these
        s.sendall(post("/echo", b"[1]"))
        assert r.response()[2] == b"[1]"


def test_readyz(harness):
    h = harness(ready_ms=800)
    with h.connect() as s:
        r = Reader(s)
        s.sendall(get("/readyz"))
        status, headers, body = r.response()
        assert (status, body) == (503, b"Service is not ready.\n")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        deadline = time.monotonic() + 5
        while True:
            s.sendall(get("/readyz"))
            status, _, body = r.response()
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (status, body) == (200, b"\n")


def test_http10(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
        status, headers, body = r.response()
        assert status == 200 and headers["connection"] == "close"
        assert r.closed()
    with h.connect() as s:
        r = Reader(s)
        for _ in range(2):
            s.sendall(b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}")
            status, headers, body = r.response()
            assert status == 200 and headers["connection"].lower() == "keep-alive"


def test_connection_close_and_half_close(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(post("/echo", b"[1]") + post("/echo", b"[2]", extra="Connection: close\r\n"))
        assert r.response()[2] == b"[1]"
        status, headers, body = r.response()
        assert body == b"[2]" and headers["connection"] == "close"
        assert r.closed()
    with h.connect() as s:  # the client shuts its side after sending: still answered
        r = Reader(s)
        s.sendall(post("/echo", b"[3]") + post("/echo", b"[4]"))
        s.shutdown(socket.SHUT_WR)
        assert r.response()[2] == b"[3]"
        assert r.response()[2] == b"[4]"
        assert r.closed()


def test_client_gone_while_in_python(harness):
    h = harness()
    s = h.connect()
    s.sendall(post("/echo", b"sleep:300"))
    time.sleep(0.05)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST while the request is in "Python"
    time.sleep(0.5)
    with h.connect() as s2:
        r = Reader(s2)
        s2.sendall(get("/livez"))
        assert r.response()[0] == 200
    assert h.terminate() == 0


def test_sigterm_drains_in_flight(harness):
    h = harness()
    idle = h.connect()
    idle_r = Reader(idle)
    idle.sendall(get("/livez"))
    assert idle_r.response()[0] == 200
    busy = h.connect()
    busy_r = Reader(busy)
    busy.sendall(post("/echo", b"sleep:700"))
    time.sleep(0.2)
    t0 = time.monotonic()
    h.proc.send_signal(signal.SIGTERM)
    # the idle keep-alive connection goes at once
    assert idle_r.closed(timeout=2.0)
    assert time.monotonic() - t0 < 0.5
    # new connections are refused once the listener is closed
    time.sleep(0.05)
    with pytest.raises(OSError):
        c = h.connect(timeout=1.0)
        c.sendall(get("/livez"))
        Reader(c).response()
    # the in-flight request still gets its answer, with connection: close
    status, headers, body = busy_r.response()
    assert status == 200 and body == b'{"slept":true}'
    assert headers["connection"] == "close"
    assert busy_r.closed()
    assert h.terminate() == 0
    assert "clean exit" in h.stderr


def test_sigterm_idle_exits_quickly(harness):
    h = harness()
    t0 = time.monotonic()
    assert h.terminate() == 0
    assert time.monotonic() - t0 < 2.0


def test_asan_ubsan_clean(harness_asan_bin):
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=24"
    h = Harness(harness_asan_bin, max_body=20000, max_header=4096, env=env)
    try:
        with h.connect() as s:
            r = Reader(s)
            s.sendall(b"".join(post("/echo", b'{"n":%d}' % i) for i in range(20)))
            for i in range(20):
                assert r.response()[2] == b'{"n":%d}' % i
            s.sendall(b"POST /ctype HTTP/1.1\r\nContent-Type: a/b\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nab\r\n0\r\n\r\n")
            assert r.response()[2] == b"a/b"
            s.sendall(get("/readyz", "HEAD") + get("/nope") + get("/echo"))
            r.response(head=True)
            assert r.response()[0] == 404
            assert r.response()[0] == 405
        for raw in (b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                    b"POST /echo HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
                    b"GET / HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n",
                    b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n"):
            with h.connect() as s:
                r = Reader(s)
                s.sendall(raw)
                assert r.response()[0] in (400, 413, 431)
        gone = h.connect()
        gone.sendall(post("/echo", b"sleep:200"))
        time.sleep(0.05)
        gone.close()
        busy = h.connect()
        busy.sendall(post("/echo", b"sleep:400"))
        time.sleep(0.1)
        h.proc.send_signal(signal.SIGTERM)
        assert Reader(busy).response()[0] == 200
        busy.close()
        rc = h.terminate()
    finally:
        if h.proc.poll() is None:
            h.proc.kill()
    if "LeakSanitizer does not work under ptrace" in h.stderr:
        pytest.skip("LeakSanitizer unavailable here")
    assert "ERROR: AddressSanitizer" not in h.stderr, h.stderr
    assert "ERROR: LeakSanitizer" not in h.stderr, h.stderr
    assert "runtime error" not in h.stderr, h.stderr
    assert rc == 0, h.stderr
