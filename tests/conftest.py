"""Shared helpers for the end-to-end tests: start a real server, talk raw HTTP.

``Server`` runs ``python -m bentohost serve ...`` in its own process group with
stdout and stderr captured to a log file, waits for ``/readyz`` and is always
killed (the whole group) at teardown. ``RawConn`` speaks HTTP/1.1 over a plain
socket for the edge cases that ``requests`` hides.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVICES = Path(__file__).resolve().parent / "services"
# The launcher honours BENTOHOST_BIN (e.g. the sanitizer build in test_sanitizers.py).
HOST_BINARY = Path(os.environ.get("BENTOHOST_BIN") or REPO / "bentohost" / "_bin" / "bentohost-host")

READY_TIMEOUT = 30.0


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (e.g. builds a fresh virtualenv)")


# --------------------------------------------------------------------------- utilities


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polled predicates may fail transiently
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")
        time.sleep(interval)


def metric(srv, name: str, **labels) -> float:
    """The sum of ``name``'s samples in ``srv``'s /metrics whose labels match (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    r = srv.get("/metrics", timeout=5)
    assert r.status_code == 200, r.text
    return sum(
        s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == str(v) for k, v in labels.items())
    )


# The supervisor's GPU monitor (csrc/supervisor/gpu_monitor.c) names itself so;
# it runs where NVML loads and is no worker.
GPU_MONITOR_COMM = "bentohost-gpu"


def processes_under(pid: int) -> list[tuple[int, str, str]]:
    """(pid, comm, state) of every direct child of ``pid``, zombies included, from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces/parens
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) >= 2 and int(rest[1]) == pid:
            kids.append((int(entry), comm, rest[0]))
    return sorted(kids)


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid`` (zombies and the GPU monitor left out), from /proc."""
    return [k for k, comm, state in processes_under(pid) if state != "Z" and comm != GPU_MONITOR_COMM]


def pid_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def pid_dead(pid: int) -> bool:
    return pid_state(pid) in (None, "Z", "X")


def base_env(extra: dict | None = None, use_repo: bool = True) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if use_repo:
        env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("BENTOML_CONTAINERIZED", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


# --------------------------------------------------------------------------- the server


class Server:
    """One ``python -m bentohost serve`` process group."""

    def __init__(
        self,
        target: str,
        *args: str,
        log_path: Path,
        env: dict | None = None,
        python: str = sys.executable,
        cwd: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        use_repo: bool = True,
    ):
        if ":" in target and not os.path.isabs(target.split(":", 1)[0]) and cwd is None:
            path, cls = target.split(":", 1)
            if (SERVICES / path).exists():
                target = f"{SERVICES / path}:{cls}"
        self.target = target
        self.args = list(args)
        self.host = host
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.env = base_env(env, use_repo=use_repo)
        self.python = python
        self.cwd = str(cwd or REPO)
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # -- process control
    @property
    def cmd(self) -> list[str]:
        return [
            self.python, "-m", "bentohost", "serve", self.target,
            "--port", str(self.port), "--host", self.host, *self.args,
        ]

    def start(self, wait_ready: bool = True, timeout: float = READY_TIMEOUT) -> "Server":
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def fail(self, msg: str):
        pytest.fail(f"{msg}\ncommand: {' '.join(self.cmd)}\n----- server log -----\n{self.log()}\n----------------------")

    def wait_ready(self, timeout: float = READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"server exited with code {self.proc.returncode} before /readyz answered 200")
            try:
                r = self.get("/readyz", timeout=2)
                last = r.status_code
                if r.status_code == 200:
                    return
            except Exception as exc:  # noqa: BLE001
                last = repr(exc)
            time.sleep(0.05)
        self.fail(f"/readyz did not answer 200 within {timeout}s (last: {last})")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"server did not exit within {timeout}s")

    def signal(self, sig: int):
        os.kill(self.pid, sig)

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def worker_pids(self) -> list[int]:
        return children_of(self.pid)

    # -- HTTP
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str, **kw):
        import requests

        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)

    def head(self, path: str, **kw):
        import requests

        kw.setdefault("timeout", 30)
        return requests.head(self.url + path, **kw)

    def post(self, path: str, json_body=None, data=None, headers=None, **kw):
        import requests

        kw.setdefault("timeout", 30)
        if json_body is not None:
            data = json.dumps(json_body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        return requests.post(self.url + path, data=data, headers=headers, **kw)

    def conn(self, timeout: float = 10.0) -> "RawConn":
        return RawConn(self.host, self.port, timeout=timeout)

    def whoami(self) -> dict:
        r = self.post("/whoami", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_all_workers(self, n: int, timeout: float = 30.0) -> dict[int, int]:
        """Hit ``/whoami`` over fresh connections until every index 1..n answered.

        Returns {worker_index: pid}."""
        from concurrent.futures import ThreadPoolExecutor

        seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(8) as ex:
            while time.monotonic() < deadline:
                for res in ex.map(lambda _: self.whoami(), range(8)):
                    seen[res["worker_index"]] = res["pid"]
                if set(seen) >= set(range(1, n + 1)):
                    return seen
        self.fail(f"not every worker index 1..{n} answered within {timeout}s; saw {seen}")


@pytest.fixture(scope="session")
def host_binary():
    if not HOST_BINARY.exists():
        pytest.fail(f"host binary {HOST_BINARY} is not built (run the build, e.g. `pip install -e .`)")
    return HOST_BINARY


class ServerFactory:
    def __init__(self, tmp_dir: Path):
        self.tmp_dir = Path(tmp_dir)
        self.servers: list[Server] = []

    def __call__(self, target: str, *args: str, start: bool = True, wait_ready: bool = True, **kw) -> Server:
        log_path = self.tmp_dir / f"server-{len(self.servers)}-{os.getpid()}.log"
        srv = Server(target, *args, log_path=log_path, **kw)
        self.servers.append(srv)
        if start:
            srv.start(wait_ready=wait_ready)
        return srv

    def close(self):
        for srv in self.servers:
            srv.kill()


@pytest.fixture
def server_factory(tmp_path, host_binary):
    """Function-scoped: ``server_factory("basic.py:Basic", "--workers", "2")``."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory, host_binary):
    factory = ServerFactory(tmp_path_factory.mktemp("srv"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def basic_server(module_server_factory) -> Server:
    """One worker serving tests/services/basic.py:Basic, shared by a module."""
    return module_server_factory("basic.py:Basic", "--workers", "1")


# --------------------------------------------------------------------------- raw HTTP


class RawResponse:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, version: str):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body
        self.version = version

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.reason} {self.headers} {self.body[:200]!r}>"


class RawConn:
    """A plain TCP connection with a read buffer, so pipelined responses can be split."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed while waiting for {sep!r}; have {self.buf[:200]!r}")
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep) :]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head: bool = False) -> RawResponse:
        """Read one full response (1xx interim responses are returned on their own)."""
        raw_head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = raw_head.split("\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError(f"bad status line {lines[0]!r}")
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        hmap = {k.lower(): v for k, v in headers}
        if head or 100 <= status < 200 or status in (204, 304):
            body = b""
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size_line = self._read_until(b"\r\n").split(b";")[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    # trailers until an empty line
                    while self._read_until(b"\r\n"):
                        pass
                    break
                parts.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n"
            body = b"".join(parts)
        elif "content-length" in hmap:
            body = self._read_exact(int(hmap["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return RawResponse(status, reason, headers, body, version)

    def wait_closed(self, timeout: float) -> bool:
        """True when the peer closes (EOF or reset) within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if data:
            self.buf += data
            return self.wait_closed(timeout)
        return True


def raw_request(method: str, path: str, body: bytes | str = b"", headers: dict | None = None,
                host: str = "localhost") -> bytes:
    if isinstance(body, str):
        body = body.encode()
    h = {"Host": host}
    if body or method in ("POST", "PUT"):
        h["Content-Length"] = str(len(body))
    if body:
        h.setdefault("Content-Type", "application/json")
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + body
