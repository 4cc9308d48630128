"""max_concurrency=4 (global, all workers): an async API that records when it runs.

Each call appends "start end pid" to $TRAFFIC_LOG_DIR/worker-<index>.log when it
finishes and drops a "started-<pid>-<uuid>" marker when it starts, so a test can see
which worker holds a slot. Times are time.monotonic() (CLOCK_MONOTONIC: one clock
for all processes on the machine).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncGenerator

import bentohost


def _dir() -> str | None:
    return os.environ.get("TRAFFIC_LOG_DIR")


@bentohost.service(traffic={"max_concurrency": 4, "timeout": 30})
class Limited:
    @bentohost.api
    async def work(self, seconds: float = 0.6) -> dict:
        start = time.monotonic()
        d = _dir()
        if d:
            with open(os.path.join(d, f"started-{os.getpid()}-{uuid.uuid4().hex}"), "w") as f:
                f.write(str(bentohost.server_context.worker_index))
        await asyncio.sleep(seconds)
        end = time.monotonic()
        if d:
            path = os.path.join(d, f"worker-{bentohost.server_context.worker_index}.log")
            with open(path, "a") as f:
                f.write(f"{start} {end} {os.getpid()}\n")
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}

    @bentohost.api
    async def stream(self, n: int = 4, delay: float = 0.5) -> AsyncGenerator[str, None]:
        for i in range(n):
            if i:
                await asyncio.sleep(delay)
            yield f"chunk {i}\n"

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
