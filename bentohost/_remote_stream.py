"""One streamed call to a dependency, from the worker's loop to whoever iterates it.

The I/O thread hands a streamed response to Python as it arrives: the head
first, then runs of body bytes (``CallTransport.deliver``, on the worker's event
loop). A :class:`StreamCall` queues them for its consumer, an async generator on
some loop or a sync generator on a pool thread, and acknowledges each run it
hands out: C stops reading the dependency's connection while more than a
megabyte waits unconsumed, so a slow consumer slows the dependency's generator
instead of filling memory. Closing a stream before its end (the caller's client
left, the caller's generator was closed) cancels the call: the dependency sees
its client leave and stops its generator too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

__all__ = ["StreamCall", "parse_headers"]


def parse_headers(block: bytes) -> dict[str, str]:
    """A raw header block ``Name: value\\r\\n...`` as a dict with lower-case names."""
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class StreamCall:
    """The consumer side: ``head`` / ``next`` (sync) and ``head_async`` / ``next_async``.

    ``next`` returns the next run of body bytes, or None at a clean end; it raises
    ``ConnectionError`` (or ``TimeoutError``) when the stream broke off. ``deadline``
    (a ``time.monotonic()`` value) bounds every wait.
    """

    def __init__(self, host: Any, call_id: int, deadline: float | None) -> None:
        self._host = host
        self.call_id = call_id
        self.deadline = deadline
        self._cond = threading.Condition()
        self._runs: deque[bytes] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self.status = 0
        self.headers: dict[str, str] | None = None
        self._end: int | None = None  # the final status: > 0 a clean end, < 0 a negative errno
        self._closed = False
        self.pickle_frames = False  # the caller asked for pickle frames (it may unpickle them)

    # -- the worker's loop: what C delivered

    def feed(self, status: int, headers: bytes, data: bytes) -> None:
        with self._cond:
            if self.headers is None:
                self.status = status
                self.headers = parse_headers(headers)
            if data:
                # a big run comes as a view of C's buffer: the consumer gets bytes, as ever
                self._runs.append(data if data.__class__ is bytes else bytes(data))
            self._notify()

    def finish(self, status: int) -> None:
        with self._cond:
            self._end = status
            if status > 0 and self.headers is None:  # a response without a head entry
                self.status = status
                self.headers = {}
            self._notify()

    def _notify(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            loop = fut.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                _wake(fut)
            else:
                loop.call_soon_threadsafe(_wake, fut)

    # -- the consumer

    def _has_head(self) -> bool:
        return self.headers is not None or self._end is not None

    def _has_run(self) -> bool:
        return bool(self._runs) or self._end is not None

    def _left(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the dependency's stream did not finish in time")
        return left

    def _wait_sync(self, ready: Any) -> None:
        with self._cond:
            while not ready():
                left = self._left()
                self._cond.wait(left)

    async def _wait_async(self, ready: Any) -> None:
        while True:
            with self._cond:
                if ready():
                    return
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
            try:
                await asyncio.wait_for(fut, self._left())
            except asyncio.TimeoutError as exc:
                raise TimeoutError("the dependency's stream did not finish in time") from exc

    def _head_result(self) -> tuple[int, dict[str, str]]:
        if self.headers is None:
            self._raise_end()
        assert self.headers is not None
        return self.status, self.headers

    def head(self) -> tuple[int, dict[str, str]]:
        """``(status, headers)`` of the response, once its head arrived."""
        self._wait_sync(self._has_head)
        return self._head_result()

    async def head_async(self) -> tuple[int, dict[str, str]]:
        await self._wait_async(self._has_head)
        return self._head_result()

    def _take(self) -> bytes | None:
        with self._cond:
            if self._runs:
                data = self._runs.popleft()
                ended = self._end is not None
            elif self._end is not None and self._end > 0:
                return None
            else:
                self._raise_end()
        if not ended:
            self._host.call_ack(self.call_id, len(data))
        return data

    def next(self) -> bytes | None:
        self._wait_sync(self._has_run)
        return self._take()

    async def next_async(self) -> bytes | None:
        await self._wait_async(self._has_run)
        return self._take()

    def _raise_end(self) -> None:
        import errno
        import os

        status = self._end if self._end is not None else -errno.ECONNRESET
        if status == -errno.ETIMEDOUT:
            raise TimeoutError("the dependency's stream went silent for longer than its timeout")
        raise ConnectionError(os.strerror(-status) if status < 0 else f"status {status}")

    def close(self) -> None:
        """The consumer is done; before the end this cancels the call."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            pending = self._end is None
            self._runs.clear()
        if pending:
            self._host.cancel_call(self.call_id)
