"""Calls to dependencies through the C host: the worker's I/O thread sends them
with its HTTP client (keep-alive pools, the least busy worker of the dependency
first) and hands the responses back through the bridge, so no Python HTTP
library is on the path. Implements ``_remote.Transport``."""

from __future__ import annotations

import concurrent.futures
import errno
import itertools
import os
import threading
from typing import Any

from ._pickle import is_pickle
from ._remote import TransportResult
from ._remote_stream import StreamCall, parse_headers

__all__ = ["CallTransport", "RESPONSE", "RESPONSE_DATA", "socket_paths"]

#: the index of a response entry in ``take()``: ``(call_id, RESPONSE, status, headers, body)``
RESPONSE = -3
#: a streamed call's head (first entry) and body bytes: ``(call_id, RESPONSE_DATA, status, headers, data)``
RESPONSE_DATA = -4
#: how long past its timeout a blocked caller waits for the I/O thread's answer
_BACKSTOP_S = 0.5


def socket_paths(runtime_dir: str, name: str, workers: int) -> list[str]:
    """Where the supervisor listens for each worker of a dependency (supervisor/pools.c)."""
    return [os.path.join(runtime_dir, f"{name}-{i}.sock") for i in range(1, workers + 1)]


class CallTransport:
    """``call()`` from any thread; ``complete()`` on the worker's loop as responses arrive."""

    def __init__(self, host: Any, dependencies: dict[str, int]) -> None:
        self._host = host
        self._deps = dependencies
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[TransportResult]] = {}
        self._streams: dict[int, StreamCall] = {}
        self._lock = threading.Lock()

    def call(
        self,
        dependency: str,
        route: str,
        content_type: str,
        body: list[bytes | memoryview],
        headers: list[tuple[str, str]],
        timeout: float | None,
    ) -> concurrent.futures.Future[TransportResult]:
        future: concurrent.futures.Future[TransportResult] = concurrent.futures.Future()
        try:
            dep = self._index(dependency)
        except ConnectionError as exc:
            future.set_exception(exc)
            return future
        call_id = next(self._ids)
        with self._lock:
            self._pending[call_id] = future
        try:
            self._host.call(dep, call_id, route, _header_lines(content_type, headers), _parts(body),
                            float(timeout or 0.0))
        except BaseException:
            with self._lock:
                self._pending.pop(call_id, None)
            raise
        # A caller that gives up (its own client left, or its deadline passed) aborts
        # the exchange: the dependency sees its client leave and cancels the work.
        future.add_done_callback(lambda f, call_id=call_id: self._abandoned(f, call_id))
        return future

    def _index(self, dependency: str) -> int:
        """The I/O thread's index of a dependency; ConnectionError for an unknown one."""
        dep = self._deps.get(dependency)
        if dep is None:
            raise ConnectionError(f"{dependency!r} is not a dependency of this service")
        return dep

    def call_blocking(
        self,
        dependency: str,
        route: str,
        content_type: str,
        body: list[bytes | memoryview],
        headers: list[tuple[str, str]],
        timeout: float | None,
    ) -> TransportResult:
        """``call()`` for a thread that blocks on the answer: the I/O thread wakes this
        thread itself, without the worker's event loop in between."""
        dep = self._index(dependency)
        # C's timer ends the call at `timeout`; the wait's own bound is only a backstop
        wait = 0.0 if not timeout else timeout + _BACKSTOP_S
        status, head, data = self._host.call_wait(
            dep, next(self._ids), route, _header_lines(content_type, headers), _parts(body),
            float(timeout or 0.0), wait,
        )
        if status == -errno.ETIMEDOUT:
            raise TimeoutError("the dependency did not answer in time")
        if status < 0:
            raise ConnectionError(os.strerror(-status))
        headers = parse_headers(head)
        return status, headers, _body(data, headers)

    def call_stream(
        self,
        dependency: str,
        route: str,
        content_type: str,
        body: list[bytes | memoryview],
        headers: list[tuple[str, str]],
        timeout: float | None,
        deadline: float | None,
    ) -> StreamCall:
        """A call whose response is read as it arrives; ``timeout`` bounds each wait for
        more of it (the head, then every run of bytes), ``deadline`` the whole."""
        dep = self._index(dependency)
        call_id = next(self._ids)
        stream = StreamCall(self._host, call_id, deadline)
        with self._lock:
            self._streams[call_id] = stream
        try:
            self._host.call(dep, call_id, route, _header_lines(content_type, headers), _parts(body),
                            float(timeout or 0.0), True)
        except BaseException:
            with self._lock:
                self._streams.pop(call_id, None)
            raise
        return stream

    def _abandoned(self, future: concurrent.futures.Future[TransportResult], call_id: int) -> None:
        if not future.cancelled():
            return
        with self._lock:
            pending = self._pending.pop(call_id, None) is not None
        if pending:
            self._host.cancel_call(call_id)

    def deliver(self, kind: int, call_id: int, status: int, headers: bytes, body: bytes) -> None:
        """An entry of ``take()`` for a call: its whole response or a streamed one's end
        (``RESPONSE``), or a streamed one's head and bytes (``RESPONSE_DATA``)."""
        if kind == RESPONSE_DATA:
            stream = self._streams.get(call_id)
            if stream is not None:
                stream.feed(status, headers, body)
        elif kind == RESPONSE:
            with self._lock:
                stream = self._streams.pop(call_id, None)
            if stream is not None:
                stream.finish(status)
            else:
                self.complete(call_id, status, headers, body)

    def complete(self, call_id: int, status: int, headers: bytes, body: bytes) -> None:
        with self._lock:
            future = self._pending.pop(call_id, None)
        if future is None or future.done():  # the caller gave up meanwhile
            return
        try:
            if status == -errno.ETIMEDOUT:
                future.set_exception(TimeoutError("the dependency did not answer in time"))
            elif status < 0:
                future.set_exception(ConnectionError(os.strerror(-status)))
            else:
                parsed = parse_headers(headers)
                future.set_result((status, parsed, _body(body, parsed)))
        except concurrent.futures.InvalidStateError:  # cancelled between the check and now
            pass


def _body(data: Any, headers: dict[str, str]) -> Any:
    """A big body comes from C as a writable memoryview over the bytes it read (no copy):
    kept so for a pickle, whose arrays are then views of it (a small pickle is copied
    into a bytearray so that its arrays are writable too, as a local call's are); made
    ``bytes`` for everything else, which JSON, text and user code expect."""
    if is_pickle(headers.get("content-type")):
        return bytearray(data) if data.__class__ is bytes else data
    return data if data.__class__ is bytes else bytes(data)


def _header_lines(content_type: str, headers: list[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in [("Content-Type", content_type), *headers])


def _parts(body: list[bytes | memoryview]) -> Any:
    """The body's parts as C takes them: one copy there, none here."""
    return body[0] if len(body) == 1 else list(body) if len(body) <= 64 else b"".join(body)
