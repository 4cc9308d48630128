"""Metrics: an API that succeeds, one that fails (500), and a slow one under max_concurrency=2."""

from __future__ import annotations

import asyncio
import os

import bentohost


@bentohost.service(traffic={"max_concurrency": 2, "timeout": 30})
class Metered:
    @bentohost.api
    def ok(self, n: int = 1) -> int:
        return n + 1

    @bentohost.api
    def fail(self) -> str:
        raise ValueError("metrics-test-failure")

    @bentohost.api
    async def slow(self, seconds: float = 1.0) -> str:
        await asyncio.sleep(seconds)
        return "slow"

    @bentohost.api
    async def count(self) -> dict:
        await asyncio.sleep(0.05)
        return {"worker_index": bentohost.server_context.worker_index}

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
