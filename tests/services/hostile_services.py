"""Services for tests/test_hostile.py: targets for hostile clients and misbehaving code.

Three services, one per traffic setting the attacks need:

* ``Hostile``: 2 workers, ``max_concurrency=64``; raw-text and file-list APIs, APIs that
  kill their worker (``os._exit``, a segfault), a memory hog and a long sleep.
* ``Limited``: 2 workers, ``max_concurrency=4`` (slow bodies must not hold its slots).
* ``Stuck``: 2 workers, 1 sync thread each, ``timeout=2``: sync APIs that never return.

APIs that a test must see start drop a marker file "<kind>-<pid>-<uuid>" in
$HOSTILE_MARK_DIR. The imports stay light (no numpy/pandas) so that a worker's RSS is
mostly the interpreter's.
"""

from __future__ import annotations

import ctypes
import os
import time
import uuid
from pathlib import Path

import bentohost

_HOARD: list[bytearray] = []


def _mark(kind: str) -> None:
    d = os.environ.get("HOSTILE_MARK_DIR")
    if d:
        with open(os.path.join(d, f"{kind}-{os.getpid()}-{uuid.uuid4().hex}"), "w") as f:
            f.write(str(bentohost.server_context.worker_index))


def _whoami() -> dict:
    return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}


@bentohost.service(workers=2, traffic={"max_concurrency": 64, "timeout": 30})
class Hostile:
    @bentohost.api
    def whoami(self) -> dict:
        return _whoami()

    @bentohost.api
    def text(self, text: str, /) -> str:
        """The raw body back (text/plain): valid for any body, so a lenient parse shows as 200."""
        return text

    @bentohost.api
    def files(self, files: list[Path]) -> dict:
        return {
            "contents": [p.read_text() for p in files],
            "names": [p.name for p in files],
            "folders": [p.parent.name for p in files],
            "distinct_paths": len({str(p) for p in files}),
        }

    @bentohost.api
    def crash(self) -> str:
        _mark("crash")
        os._exit(1)

    @bentohost.api
    def segv(self) -> str:
        _mark("segv")
        return repr(ctypes.string_at(0))  # reads address 0: SIGSEGV

    @bentohost.api
    def hog(self, mb: int = 100) -> dict:
        """Allocates ``mb`` MiB and keeps it (touched, so it is resident)."""
        _HOARD.append(bytearray(b"\x01" * (mb << 20)))
        return _whoami()

    @bentohost.api
    def sleep(self, seconds: float = 30.0) -> str:
        _mark("sleep")
        time.sleep(seconds)
        return "slept"


@bentohost.service(workers=2, traffic={"max_concurrency": 4, "timeout": 30})
class Limited:
    @bentohost.api
    def text(self, text: str, /) -> str:
        return text

    @bentohost.api
    def whoami(self) -> dict:
        return _whoami()


@bentohost.service(workers=2, threads=1, traffic={"timeout": 2})
class Stuck:
    @bentohost.api
    def stuck(self) -> str:
        _mark("stuck")
        time.sleep(10**6)
        return "never"

    @bentohost.api
    def spin(self) -> str:
        _mark("spin")
        while True:
            pass

    @bentohost.api
    def ok(self) -> dict:
        return _whoami()

    @bentohost.api
    def whoami(self) -> dict:
        return _whoami()


@bentohost.service(workers=1, threads=1, traffic={"timeout": 2})
class StuckAlone:
    """One worker: a call queued behind the stuck one has no sibling to go to."""

    @bentohost.api
    def stuck(self) -> str:
        _mark("stuck")
        time.sleep(10**6)
        return "never"

    @bentohost.api
    def whoami(self) -> dict:
        return _whoami()
