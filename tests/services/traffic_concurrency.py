"""traffic.concurrency=2 (ideal parallelism), max_concurrency=8: slow calls report their worker."""

from __future__ import annotations

import asyncio
import os
import time

import bentohost


@bentohost.service(traffic={"concurrency": 2, "max_concurrency": 8, "timeout": 30})
class Spread:
    @bentohost.api
    async def slow(self, seconds: float = 1.0) -> dict:
        start = time.monotonic()
        await asyncio.sleep(seconds)
        return {
            "worker_index": bentohost.server_context.worker_index,
            "pid": os.getpid(),
            "start": start,
            "end": time.monotonic(),
        }

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
