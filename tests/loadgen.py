"""Steady load for the restart tests: closed-loop keep-alive clients, one thread and
one ``http.client`` connection each, and a readiness poller on fresh connections
(as a Kubernetes probe). Every failure is kept: an exception (a reset, a refused
connect, a response cut short) or an unexpected status or body."""

from __future__ import annotations

import http.client
import threading
import time


class Load:
    def __init__(self, host: str, port: int, path: str, body: bytes = b"{}", clients: int = 64,
                 check=None):
        self.host, self.port, self.path, self.body = host, port, path, body
        self.clients, self.check = clients, check
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        ok = 0
        while not self._stop.is_set():
            try:
                conn.request("POST", self.path, self.body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                if r.status != 200 or (self.check is not None and not self.check(data)):
                    self._fail(f"{r.status} {data[:200]!r}")
                else:
                    ok += 1
                if r.will_close:  # the server said connection: close (a draining worker)
                    conn.close()
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self._fail(repr(exc))
                conn.close()
        conn.close()
        with self._lock:
            self.ok += ok

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> "Load":
        self._stop.set()
        for t in self._threads:
            t.join(60)
        return self


class ReadyPoller:
    """GET /readyz on a new connection every ``interval`` seconds; keeps every status."""

    def __init__(self, host: str, port: int, interval: float = 0.02):
        self.host, self.port, self.interval = host, port, interval
        self.statuses: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                conn.request("GET", "/readyz")
                r = conn.getresponse()
                r.read()
                self.statuses.append(r.status)
            except Exception as exc:  # noqa: BLE001
                self.statuses.append(repr(exc))
            finally:
                conn.close()
            time.sleep(self.interval)

    def start(self) -> "ReadyPoller":
        self._thread.start()
        return self

    def stop(self) -> "ReadyPoller":
        self._stop.set()
        self._thread.join(30)
        return self

    def not_ready(self) -> list[object]:
        return [s for s in self.statuses if s != 200]


def long_request(url: str, seconds: float) -> tuple[threading.Thread, list]:
    """POST /asleep for ``seconds`` on a thread; the list gets its status or the
    exception's name (a request cut off by a forced stop)."""
    import requests

    outcome: list = []

    def call():
        try:
            outcome.append(requests.post(url + "/asleep", json={"seconds": seconds}, timeout=seconds + 10).status_code)
        except requests.RequestException as exc:
            outcome.append(type(exc).__name__)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    return t, outcome
