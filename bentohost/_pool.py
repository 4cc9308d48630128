"""The pool of Python threads that runs a worker's sync work (``def`` APIs,
generator steps, batches)."""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("bentohost")

#: ``(fn, handle, x, body, content_type, meta)``: the pool calls ``fn(handle, x, body, content_type, meta)``
Job = tuple[Callable[..., None], int, Any, Any, Any, Any]


class ThreadPool:
    """``threads`` Python threads running sync work (sync APIs, generator steps, batches).

    A drained batch goes in with one ``deque.extend`` and at most ``min(len, threads)``
    wake-ups (one with the default single thread); each woken thread keeps taking
    jobs until the deque is empty. A job is ``(fn, *args)``; ``fn`` must answer its
    handle itself (exceptions are logged).
    """

    def __init__(self, size: int, on_call: Callable[[int], Any] | None = None) -> None:
        """``on_call(i)`` as thread ``i`` enters a job and ``on_call(~i)`` as it leaves it:
        the host's watchdog judges progress per thread (a stuck call shows there even
        while the event loop keeps ticking)."""
        self.size = max(1, size)
        self._jobs: collections.deque[Job] = collections.deque()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._on_call = on_call
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"bentohost-api-{i}", daemon=True)
            for i in range(self.size)
        ]
        for t in self._threads:
            t.start()

    def submit_many(self, jobs: list[Job]) -> None:
        self._jobs.extend(jobs)
        put = self._wake.put
        for _ in range(min(len(jobs), self.size)):
            put(True)

    def submit(self, job: Job) -> None:
        self._jobs.append(job)
        self._wake.put(True)

    def busy(self) -> bool:
        """True when jobs are waiting for a thread."""
        return bool(self._jobs)

    def stop(self) -> None:
        for _ in self._threads:
            self._wake.put(False)

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    def _run(self, index: int) -> None:
        jobs = self._jobs
        popleft = jobs.popleft
        wait = self._wake.get
        mark = self._on_call
        while wait():
            while True:
                try:
                    fn, handle, x, body, ctype, meta = popleft()
                except IndexError:
                    break
                if mark is not None:
                    mark(index)
                try:
                    fn(handle, x, body, ctype, meta)
                except BaseException:  # noqa: BLE001 - keep the thread alive
                    logger.exception("job failed")
                if mark is not None:
                    mark(~index)
