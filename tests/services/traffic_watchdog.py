"""traffic.timeout=1: an async API that blocks the event loop (the watchdog's target)."""

from __future__ import annotations

import os
import time

import bentohost


@bentohost.service(traffic={"timeout": 1})
class Stuck:
    @bentohost.api
    async def block_the_loop(self, seconds: float = 30.0) -> str:
        time.sleep(seconds)  # deliberately blocks the event loop: no heartbeat
        return "unblocked"

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
