"""traffic.timeout=1.0 and max_concurrency=1.

Markers go to $TRAFFIC_LOG_DIR: "<kind>-<tag>" files, so a test sees an async task
being cancelled and a sync call really returning after its 504.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator

import bentohost


def _mark(kind: str, tag: str) -> None:
    d = os.environ.get("TRAFFIC_LOG_DIR")
    if d:
        with open(os.path.join(d, f"{kind}-{tag}"), "w") as f:
            f.write(f"{time.monotonic()} {os.getpid()}\n")


@bentohost.service(traffic={"timeout": 1.0, "max_concurrency": 1})
class Timeouts:
    @bentohost.api
    async def aslow(self, seconds: float, tag: str) -> str:
        _mark("astart", tag)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            _mark("cancelled", tag)
            raise
        _mark("afinished", tag)
        return "async-done"

    @bentohost.api
    def sslow(self, seconds: float, tag: str) -> str:
        _mark("sstart", tag)
        time.sleep(seconds)
        _mark("sreturned", tag)
        return f"late-result-{tag}"

    @bentohost.api
    def sfail(self, seconds: float, tag: str) -> str:
        _mark("sstart", tag)
        time.sleep(seconds)
        _mark("sreturned", tag)
        raise RuntimeError(f"late-exception-{tag}")

    @bentohost.api
    async def astream(self, first_delay: float = 0.0, n: int = 5, delay: float = 0.4) -> AsyncGenerator[str, None]:
        await asyncio.sleep(first_delay)
        for i in range(n):
            if i:
                await asyncio.sleep(delay)
            yield f"c{i}\n"

    @bentohost.api
    def fast(self) -> str:
        return "fast"
