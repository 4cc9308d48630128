"""traffic.concurrency=4 with `threads` unset: the sync pool gets ceil(4 / workers) threads."""

from __future__ import annotations

import os
import threading
import time

import bentohost


@bentohost.service(traffic={"concurrency": 4, "timeout": 30})
class Threads:
    @bentohost.api
    def block(self, seconds: float = 0.8) -> dict:
        start = time.monotonic()
        time.sleep(seconds)
        return {
            "worker_index": bentohost.server_context.worker_index,
            "thread": threading.get_ident(),
            "start": start,
            "end": time.monotonic(),
        }
