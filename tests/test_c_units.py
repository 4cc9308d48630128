"""C unit tests: the bridge ring (tests/c/test_ring.c) and the HTTP layer of the
I/O thread driven by a Python-free harness (tests/c/http_harness.c) over raw
sockets. The C programs are compiled here with gcc; the tests skip when gcc,
libuv's headers or llhttp's sources are missing."""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
TESTS_C = ROOT / "tests" / "c"
LLHTTP_SRC = Path(os.environ.get("BH_LLHTTP_SRC", "/usr/share/llhttp"))
LLHTTP_INC = Path(os.environ.get("BH_LLHTTP_INC", "/usr/share/include/llhttp"))

CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-DLLHTTP_STRICT_MODE=1", "-Wall", "-Wextra", "-Werror", "-pthread"]
# Every file of the server and of what it calls below it (the outbound client).
SERVER_SOURCES = sorted(str(p.relative_to(CSRC)) for d in ("server", "net") for p in (CSRC / d).glob("*.c"))
# What the ring and the multipart parser need without the server around them.
CORE_SOURCES = ["python/bridge.c", "common/request.c", "common/fs.c", "common/spool.c", "common/fmt.c", "common/shortest.c",
                "common/options.c"]
# The server's access log formats its lines with the host's log (which replaces the
# harness's own bh_log there).
HOST_SOURCES = SERVER_SOURCES + CORE_SOURCES + ["common/log.c", "common/waiter.c"]
# The traffic side (limiter, metrics, batcher) is replaced by stubs here.
STUB_SOURCES = ["traffic_stubs.c"]
LLHTTP_SOURCES = ["api.c", "http.c", "llhttp.c"]
# Python's float repr without Python.
FLOAT_SOURCES = [str(CSRC / "common" / s) for s in ("fmt.c", "shortest.c")]


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
        srcs = [str(CSRC / s) for s in HOST_SOURCES] + [str(TESTS_C / s) for s in STUB_SOURCES]
    else:
        srcs = [str(CSRC / s) for s in CORE_SOURCES + ["server/multipart.c", "server/part_header.c", "server/scan.c"]]
    _run(["gcc", *CFLAGS, "-O2", *extra_flags, *inc, str(main), *srcs, *objs, "-luv", "-lm",
          *(["-lssl", "-lcrypto", "-lcjson"] if with_http else []), "-o", str(out)])
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


def test_py_float_matches_python_repr(build_dir):
    """The 504 body prints traffic.timeout as Python does: 10 -> 10.0, never 1e+01."""
    exe = build_dir / "test_fmt"
    _run(["gcc", *CFLAGS, "-O2", "-I%s" % CSRC, str(TESTS_C / "test_fmt.c"), *FLOAT_SOURCES, "-lm", "-o", str(exe)])
    values = [10.0, 60.0, 0.5, 1.0, 2.5, 30.0, 100.0, 1e15, 1e16, 123.456, 0.0001, 0.00001, 1 / 3, 3600.0,
              1e22, 0.1, 7.25, 1e-7]
    args = [a for v in values for a in (repr(v), repr(v))]
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("sanitized", [False, True], ids=["release", "asan"])
def test_decimal_to_double_is_strtods(build_dir, sanitized):
    """JSON numbers read without strtod are strtod's doubles: random decimals of up to
    19 digits at every exponent, doubles' 16- and 17-digit forms, and decimals a hair
    off the midpoint between two doubles, where the fast path must give up instead
    (tests/c/test_decimal.c)."""
    extra = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"] if sanitized else ["-O2"]
    exe = build_dir / ("test_decimal" + ("_asan" if sanitized else ""))
    _run(["gcc", *CFLAGS, *extra, "-I%s" % CSRC, str(TESTS_C / "test_decimal.c"), str(CSRC / "common" / "decimal.c"),
          "-lm", "-o", str(exe)])
    count = 20000 if sanitized else 500000
    r = subprocess.run([str(exe), str(count), str(int(time.time()))], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("OK")


def _embed_flags():
    """Compile and link flags of this interpreter's libpython (python3-config --embed)."""
    include = sysconfig.get_paths()["include"]
    ldversion = sysconfig.get_config_var("LDVERSION") or sysconfig.get_python_version()
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libpl = sysconfig.get_config_var("LIBPL") or libdir
    libs = shlex.split(sysconfig.get_config_var("LIBS") or "") + shlex.split(sysconfig.get_config_var("SYSLIBS") or "")
    rpath = ["-Wl,-rpath,%s" % libdir] if sysconfig.get_config_var("Py_ENABLE_SHARED") else []
    return ["-I%s" % include], ["-L%s" % libdir, "-L%s" % libpl, "-lpython%s" % ldversion, *rpath, *libs, "-lm"]


@pytest.mark.parametrize("sanitized", [False, True], ids=["release", "asan"])
def test_shortest_float_digits_are_pythons_repr(build_dir, sanitized):
    """Every float a numpy answer or a 504 body prints is repr(float)'s text, found
    without dtoa: random doubles of every exponent, float32 values widened,
    subnormals, powers of ten and their neighbours, integers (tests/c/test_shortest.c
    against PyOS_double_to_string linked in)."""
    cflags, ldflags = _embed_flags()
    extra = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"] if sanitized else ["-O2"]
    exe = build_dir / ("test_shortest" + ("_asan" if sanitized else ""))
    _run(["gcc", *CFLAGS, *extra, "-I%s" % CSRC, *cflags, str(TESTS_C / "test_shortest.c"), *FLOAT_SOURCES,
          *ldflags, "-o", str(exe)])
    count = 20000 if sanitized else 400000
    r = subprocess.run([str(exe), str(count), str(int(time.time()))], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    assert r.returncode == 0, r.stdout + r.stderr
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
    def __init__(self, exe, max_body=1 << 20, keepalive=1.0, max_header=8192, ready_ms=0, env=None,
                 timeout=60.0):
        self.proc = subprocess.Popen(
            [str(exe), "0", str(max_body), str(keepalive), str(max_header), str(ready_ms), repr(timeout)],
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

    def head(self):
        """Reads a response head only: (status, headers)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        hdr, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = hdr.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            assert k.lower() not in headers, "duplicate header %s" % k
            headers[k.lower()] = v.strip()
        return int(lines[0].split(" ")[1]), headers

    def chunk(self):
        """One chunk of a chunked body; b"" for the last one (its CRLF read too)."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        n = int(line, 16)
        assert n > 0 or line == b"0", line
        while len(self.buf) < n + 2:
            self._fill()
        data, crlf, self.buf = self.buf[:n], self.buf[n:n + 2], self.buf[n + 2:]
        assert crlf == b"\r\n", crlf
        return data

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


# ---------------------------------------------------------------- v2: metadata, streams, timeouts, multipart


def _stats(h):
    with h.connect() as s:
        s.sendall(post("/stats", b""))
        status, _, body = Reader(s).response()
        assert status == 200
        return json.loads(body)


def _wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def _rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_multipart_parser_unit(build_dir, tmp_path):
    exe = _build(build_dir / "test_multipart", TESTS_C / "test_multipart.c",
                 ["-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
                 with_http=False)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("OK")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("loop", ["best", "sse2"])
def test_scan_pair_unit(build_dir, loop):
    """The delimiter scan against a byte-by-byte reference, in each of its loops on x86-64
    (the CPU's best, and SSE2 alone) and in the generic one elsewhere."""
    flags = ["-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    if loop == "sse2":
        flags.append("-DBH_SCAN_SSE2_ONLY")
    exe = build_dir / ("test_scan_" + loop)
    _run(["gcc", *CFLAGS, *flags, "-I%s" % CSRC, str(TESTS_C / "test_scan.c"), str(CSRC / "server" / "scan.c"),
          "-o", str(exe)])
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("comparisons OK")


def test_request_metadata_and_extra_headers(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(post("/meta?q=1", b"{}", extra="X-Custom: abc\r\nCookie: k=v\r\n"))
        status, headers, body = r.response()
        assert status == 202
        assert headers["content-type"] == "text/plain"
        assert headers["x-extra"] == "1" and headers["x-other"] == "two"
        head, client = body.decode().rsplit("\nclient=", 1)
        # the request id the client did not send comes first (server/access_log.c)
        rid = headers["x-request-id"]
        assert re.fullmatch("[0-9a-f]{16}", rid)
        assert head.startswith("POST /meta?q=1 HTTP/1.1\r\nx-request-id: %s\r\nHost: t\r\n" % rid)
        assert "X-Custom: abc\r\n" in head and "Cookie: k=v\r\n" in head
        assert head.endswith("\r\n")
        assert client == "127.0.0.1:%d" % s.getsockname()[1]
        # the fast path keeps no metadata
        s.sendall(post("/echo", b"[1]"))
        assert r.response()[2] == b"[1]"


def read_stream(r) -> bytes:
    """The body of a chunked stream, whatever its chunk boundaries."""
    body = b""
    while True:
        c = r.chunk()
        if c == b"":
            return body
        body += c


def test_streamed_response(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        t0 = time.monotonic()
        s.sendall(post("/stream", b"4,200"))
        status, headers = r.head()
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["x-stream"] == "yes"
        got, times = [], []
        while True:
            c = r.chunk()
            times.append(time.monotonic() - t0)
            if c == b"":
                break
            got.append(c)
        assert got == [b"data: %d\n\n" % i for i in range(4)]
        # each chunk was written as soon as it was made, not at the end
        assert times[0] < 0.3, times
        assert times[3] - times[0] > 0.45, times
        # keep-alive goes on with the next (pipelined) requests
        s.sendall(post("/echo", b"[7]") + post("/stream", b"2,0"))
        assert r.response()[2] == b"[7]"
        status, headers = r.head()
        assert status == 200
        # posted back to back, the two chunks may be merged into one write
        assert read_stream(r) == b"data: 0\n\ndata: 1\n\n"
        s.sendall(get("/livez"))
        assert r.response()[0] == 200
    assert h.terminate() == 0
    assert "held=0" in h.stderr


def test_stream_backpressure(harness):
    h = harness()
    total = 32 << 20
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(10)
    s.connect(("127.0.0.1", h.port))
    with s:
        r = Reader(s)
        s.sendall(post("/stream", b"bp:%d" % total))
        time.sleep(1.0)  # not reading: the producer must pause at the high-water mark
        st = _stats(h)
        time.sleep(0.3)
        st2 = _stats(h)
        # stalled: the producer waits for a WRITABLE event that has not come
        # (the socket buffers took some rounds before they filled up)
        assert st["waits"] >= 1, st
        assert (st2["waits"], st2["writable"]) == (st["waits"], st["writable"]), (st, st2)
        assert st2["waits"] == st2["writable"] + 1, st2
        status, headers = r.head()
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        n, last = 0, b""
        while True:
            c = r.chunk()
            if c == b"":
                break
            if c.startswith(b"waits="):
                last = c
            else:
                n += len(c)
        assert n == total
        waits, writable = [int(x.split(b"=")[1]) for x in last.split()]
        assert waits >= 1 and writable >= 1, last
        s.sendall(post("/echo", b"[1]"))
        assert r.response()[2] == b"[1]"
    assert h.terminate() == 0


def test_disconnect_sends_cancel(harness):
    h = harness()
    s = h.connect()
    s.sendall(post("/echo", b"sleep:400"))
    time.sleep(0.1)
    _rst(s)
    assert _wait_for(lambda: _stats(h)["cancels"] == 1)
    # a stream whose client leaves: cancelled, and the producer sees it
    s = h.connect()
    r = Reader(s)
    s.sendall(post("/stream", b"1000,20"))
    assert r.head()[0] == 200
    assert r.chunk() == b"data: 0\n\n"
    _rst(s)
    st = _wait_for(lambda: (lambda x: x if x["stream_gone"] == 1 else None)(_stats(h)))
    assert st["cancels"] == 2, st
    time.sleep(0.5)  # the sleeper's late completion is dropped
    st = _stats(h)
    assert st["held"] == 1 and st["acquired"] == st["released"] + 1, st  # only /stats itself
    assert h.terminate() == 0
    assert "held=0" in h.stderr


def test_timeout_504_then_late_result_dropped(harness):
    h = harness(timeout=1, keepalive=5.0)
    with h.connect() as s:
        r = Reader(s)
        t0 = time.monotonic()
        s.sendall(post("/echo", b"sleep:1600"))
        status, headers, body = r.response()
        assert 0.9 < time.monotonic() - t0 < 1.5
        assert status == 504
        assert headers["content-type"] == "application/json"
        assert body == b'{"error":"Not able to process the request in 1.0 seconds"}'
        assert "connection" not in headers
        # the connection still works while the late call runs on
        s.sendall(post("/echo", b"[2]"))
        assert r.response()[2] == b"[2]"
        time.sleep(1.0)
        st = _stats(h)
        assert st["cancels"] == 1 and st["late_posts"] == 1, st
        assert st["held"] == 1, st
        s.sendall(post("/echo", b"[3]"))
        assert r.response()[2] == b"[3]"
    assert h.terminate() == 0
    assert "late result for /echo after timeout dropped" in h.stderr
    assert h.stderr.count("late result") == 1


def test_timeout_prints_like_python(harness):
    h = harness(timeout=0.5)
    with h.connect() as s:
        r = Reader(s)
        s.sendall(post("/echo", b"sleep:900"))
        status, _, body = r.response()
        assert (status, body) == (504, b'{"error":"Not able to process the request in 0.5 seconds"}')
        # a stream is bounded only until it starts
        s.sendall(post("/stream", b"3,300"))
        status, headers = r.head()
        assert status == 200
        assert [r.chunk() for _ in range(4)] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b""]
    assert h.terminate() == 0


def _multipart(boundary, parts):
    out = []
    for name, filename, ctype, data in parts:
        disp = 'form-data; name="%s"' % name
        if filename is not None:
            disp += '; filename="%s"' % filename
        hdr = "--%s\r\nContent-Disposition: %s\r\n" % (boundary, disp)
        if ctype:
            hdr += "Content-Type: %s\r\n" % ctype
        out.append(hdr.encode() + b"\r\n" + data + b"\r\n")
    return b"".join(out) + ("--%s--\r\n" % boundary).encode()


def _temp_dirs(d):
    return [p for p in Path(d).iterdir() if p.name.startswith("bentohost-req-")]


def test_multipart_upload_50mib(harness_bin, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    h = Harness(harness_bin, max_body=200 << 20, env=env)
    try:
        boundary = "----bhBoundary7MA4YWxk"
        data = bytearray(os.urandom(50 << 20))
        for off in range(1000, len(data), 7 << 20):  # near-misses of the delimiter
            near = b"\r\n--" + boundary[:-1].encode() + b"\r"
            data[off:off + len(near)] = near
        data = bytes(data)
        body = _multipart(boundary, [("meta", None, None, b'{"a": 1}'),
                                     ("file", "../evil name.bin", "application/octet-stream", data)])
        with h.connect(timeout=30) as s:
            r = Reader(s)
            s.sendall(("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                       "Content-Length: %d\r\n\r\n" % (boundary, len(body))).encode())
            for i in range(0, len(body), 1 << 20):
                s.sendall(body[i:i + (1 << 20)])
            status, _, resp = r.response()
            assert status == 200, resp
            info = json.loads(resp)
            assert info["body_null"] is True and info["has_head"] is True
            meta, f = info["parts"]
            assert meta["name"] == "meta" and meta["filename"] is None and meta["path"] is None
            assert meta["len"] == 8 and meta["crc"] == zlib.crc32(b'{"a": 1}')
            assert f["name"] == "file" and f["filename"] == "../evil name.bin"
            assert f["ctype"] == "application/octet-stream"
            assert f["path"] == info["temp_dir"] + "/evil_name.bin"  # <temp dir>/<sanitized name>
            assert Path(info["temp_dir"]).parent == tmp_path
            assert f["len"] == f["disk"] == len(data)
            assert f["crc"] == zlib.crc32(data)
            # the temp dir goes with the request
            assert not os.path.exists(info["temp_dir"])
            assert _temp_dirs(tmp_path) == []
            s.sendall(post("/echo", b"[1]"))
            assert r.response()[2] == b"[1]"
        assert h.terminate() == 0
    finally:
        if h.proc.poll() is None:
            h.proc.kill()


def test_multipart_malformed(harness_bin, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    h = Harness(harness_bin, max_body=1 << 20, env=env)
    try:
        with h.connect() as s:
            r = Reader(s)
            s.sendall(post("/upload", b"--x\r\n", ctype="multipart/form-data"))
            status, headers, body = r.response()
            assert (status, body) == (400, b'{"error":"Invalid multipart body: missing boundary"}')
            assert headers["content-type"] == "application/json"
        with h.connect() as s:  # complete message, truncated multipart: the connection lives on
            r = Reader(s)
            b = _multipart("b", [("f", "a.txt", None, b"abc")])[:-10]
            s.sendall(post("/upload", b, ctype="multipart/form-data; boundary=b"))
            status, headers, body = r.response()
            assert (status, body) == (400, b'{"error":"Invalid multipart body: truncated body"}')
            assert "connection" not in headers
            s.sendall(post("/echo", b"[1]"))
            assert r.response()[2] == b"[1]"
        with h.connect() as s:  # malformed in the middle of a file part
            r = Reader(s)
            b = (b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\n'
                 + b"x" * 5000 + b"\r\n--bX\r\n" + b"y" * 5000)
            s.sendall(post("/upload", b, ctype="multipart/form-data; boundary=b"))
            status, headers, body = r.response()
            assert (status, body) == (400, b'{"error":"Invalid multipart body: malformed boundary line"}')
            assert headers["connection"] == "close"
        # a client that leaves in the middle of an upload
        s = h.connect()
        b = b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\n' + b"z" * 100000
        s.sendall(("POST /upload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   "Content-Length: %d\r\n\r\n" % (len(b) + 1000)).encode() + b)
        assert _wait_for(lambda: _temp_dirs(tmp_path))
        _rst(s)
        assert _wait_for(lambda: _temp_dirs(tmp_path) == [])
        # too large for max_body_size while streaming a chunked upload
        with h.connect() as s:
            r = Reader(s)
            s.sendall(b"POST /upload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            piece = b'--b\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n' + b"q" * 60000
            try:
                for _ in range(30):
                    s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                pass
            assert r.response()[0] == 413
        assert _wait_for(lambda: _temp_dirs(tmp_path) == [])
        st = _stats(h)
        assert st["held"] == 1, st
        assert h.terminate() == 0
    finally:
        if h.proc.poll() is None:
            h.proc.kill()
    assert _temp_dirs(tmp_path) == []


def test_documents_and_metrics(harness):
    h = harness()
    with h.connect() as s:
        r = Reader(s)
        s.sendall(get("/schema.json"))
        status, headers, body = r.response()
        assert (status, headers["content-type"], body) == (200, "application/json", b'{"name":"Harness"}')
        s.sendall(get("/", "HEAD"))
        status, headers, body = r.response(head=True)
        assert status == 200 and headers["content-length"] == "20" and body == b""
        assert headers["content-type"] == "text/html; charset=utf-8"
        s.sendall(get("/"))
        assert r.response()[2] == b"<html>harness</html>"
        s.sendall(post("/schema.json", b"{}"))
        status, headers, _ = r.response()
        assert status == 405 and headers["allow"] == "GET, HEAD"
        s.sendall(get("/schema.jsonx"))
        assert r.response()[0] == 404
        s.sendall(get("/metrics"))  # no shared memory in the harness
        assert r.response()[0] == 404


def test_too_many_requests(harness_bin):
    env = dict(os.environ, HARNESS_MAX_CONCURRENCY="1")
    h = Harness(harness_bin, env=env)
    try:
        a = h.connect()
        a.sendall(post("/echo", b"sleep:600"))
        time.sleep(0.15)
        with h.connect() as b:
            r = Reader(b)
            b.sendall(post("/echo", b"x" * 200000))
            status, headers, body = r.response()
            assert (status, body) == (429, b'{"error":"Too many requests"}')
            assert headers["retry-after"] == "1"
            assert headers["content-type"] == "application/json"
            assert "connection" not in headers
            # exempt routes still answer, and the connection lives on
            b.sendall(get("/livez") + get("/schema.json"))
            assert r.response()[0] == 200
            assert r.response()[0] == 200
            assert Reader(a).response()[2] == b'{"slept":true}'
            a.close()
            b.sendall(post("/echo", b"[5]"))
            assert r.response()[2] == b"[5]"
        st = _stats(h)
        assert st["held"] == 1 and st["acquired"] == st["released"] + 1, st
        assert h.terminate() == 0
        assert "held=0" in h.stderr
    finally:
        if h.proc.poll() is None:
            h.proc.kill()


def test_asan_ubsan_v2_paths(harness_asan_bin, tmp_path):
    """Streams, disconnects, timeouts with late results, multipart and 429 under ASan/UBSan."""
    env = dict(os.environ, TMPDIR=str(tmp_path), HARNESS_MAX_CONCURRENCY="3")
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=24"
    h = Harness(harness_asan_bin, max_body=4 << 20, keepalive=5.0, env=env, timeout=0.5)
    try:
        with h.connect() as s:
            r = Reader(s)
            s.sendall(post("/meta", b"{}", extra="X-A: b\r\n"))
            assert r.response()[0] == 202
            s.sendall(post("/stream", b"3,10") + post("/echo", b"[1]"))
            assert r.head()[0] == 200
            assert read_stream(r) == b"".join(b"data: %d\n\n" % i for i in range(3))
            assert r.response()[2] == b"[1]"
            body = _multipart("bb", [("a", None, None, b"1"), ("f", "x.bin", "a/b", os.urandom(300000))])
            s.sendall(post("/upload", body, ctype="multipart/form-data; boundary=bb"))
            status, _, resp = r.response()
            assert status == 200 and len(json.loads(resp)["parts"]) == 2
            s.sendall(post("/upload", body[:-20], ctype="multipart/form-data; boundary=bb"))
            assert r.response()[0] == 400
            # timed out, then late
            s.sendall(post("/echo", b"sleep:800"))
            assert r.response()[0] == 504
            # over the limit while two sleep
            a1, a2 = h.connect(), h.connect()
            a1.sendall(post("/echo", b"sleep:300"))
            a2.sendall(post("/echo", b"sleep:300"))
            time.sleep(0.1)
            s.sendall(post("/echo", b"[2]"))
            assert r.response()[0] == 429
            a1.close()
            a2.close()
            time.sleep(0.6)  # the sleepers and the late call give their slots back
        for raw in (post("/upload", b"--q\r\nbroken\r\n\r\n" + b"p" * 30,
                         ctype="multipart/form-data; boundary=q"),
                    post("/upload", b"hello", ctype="multipart/form-data")):
            with h.connect() as s:
                s.sendall(raw)
                assert Reader(s).response()[0] == 400
        s = h.connect()
        s.sendall(post("/stream", b"1000,5"))
        r = Reader(s)
        assert r.head()[0] == 200
        r.chunk()
        _rst(s)
        s = h.connect()
        s.sendall(b"POST /upload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=q\r\n"
                  b"Content-Length: 100000\r\n\r\n--q\r\nContent-Disposition: form-data; name=f; filename=g\r\n\r\nabc")
        time.sleep(0.1)
        _rst(s)
        time.sleep(0.8)  # late results arrive and are dropped
        busy = h.connect()
        busy.sendall(post("/stream", b"5,60"))
        time.sleep(0.05)
        h.proc.send_signal(signal.SIGTERM)  # the stream in flight still ends
        rb = Reader(busy)
        assert rb.head()[0] == 200
        assert [rb.chunk() for _ in range(6)][-1] == b""
        busy.close()
        rc = h.terminate()
    except BaseException:
        if h.proc.poll() is not None:  # the harness died: its report says why
            raise AssertionError("harness exited %s:\n%s" % (h.proc.returncode, h.proc.stderr.read()[-6000:]))
        raise
    finally:
        if h.proc.poll() is None:
            h.proc.kill()
    if "LeakSanitizer does not work under ptrace" in h.stderr:
        pytest.skip("LeakSanitizer unavailable here")
    assert "ERROR: AddressSanitizer" not in h.stderr, h.stderr
    assert "ERROR: LeakSanitizer" not in h.stderr, h.stderr
    assert "runtime error" not in h.stderr, h.stderr
    assert rc == 0, h.stderr
    assert "held=0" in h.stderr, h.stderr
    assert _temp_dirs(tmp_path) == []
