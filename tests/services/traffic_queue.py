"""traffic.timeout=1.0, one sync thread, no max_concurrency: calls queue for the thread."""

from __future__ import annotations

import os
import time

import bentohost


def _mark(kind: str, tag: str) -> None:
    d = os.environ.get("TRAFFIC_LOG_DIR")
    if d:
        with open(os.path.join(d, f"{kind}-{tag}"), "w") as f:
            f.write(f"{time.monotonic()}\n")


@bentohost.service(traffic={"timeout": 1.0}, threads=1)
class Queued:
    @bentohost.api
    def sslow(self, seconds: float, tag: str) -> str:
        _mark("sstart", tag)
        time.sleep(seconds)
        _mark("sreturned", tag)
        return tag
