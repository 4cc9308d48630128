"""Task APIs for tests/test_tasks.py: sync and async, failing, slow, file input."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

import bentohost
from bentohost.exceptions import InvalidArgument


class Sum(BaseModel):
    total: int
    worker: int | None = None


@bentohost.service(traffic={"timeout": 30})
class TaskSvc:
    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}

    @bentohost.task
    def add(self, a: int, b: int = 1, delay: float = Field(default=0.0, ge=0, le=60)) -> Sum:
        time.sleep(delay)
        return Sum(total=a + b, worker=bentohost.server_context.worker_index)

    @bentohost.task(route="/shout")
    async def ashout(self, text: str, delay: float = 0.0) -> str:
        await asyncio.sleep(delay)
        return text.upper()

    @bentohost.task
    def boom(self, message: str = "boom") -> str:
        raise RuntimeError(message)

    @bentohost.task
    def refuse(self, why: str) -> str:
        raise InvalidArgument(f"refused: {why}")

    @bentohost.task
    def flaky(self, marker: str) -> str:
        """Fails the first time (no marker file yet), succeeds on a retry."""
        if not os.path.exists(marker):
            Path(marker).write_text("seen")
            raise RuntimeError("first run fails")
        return "second run"

    @bentohost.task
    def hang(self, marker: str, seconds: float = 30.0) -> str:
        """Writes its pid to ``marker`` once it runs, then sleeps."""
        Path(marker).write_text(str(os.getpid()))
        time.sleep(seconds)
        return "woke"

    @bentohost.task
    async def ahang(self, marker: str, seconds: float = 30.0) -> str:
        Path(marker).write_text(str(os.getpid()))
        await asyncio.sleep(seconds)
        return "woke"

    @bentohost.task
    def upload(self, f: Path, note: str = "") -> dict:
        return {"name": f.name, "size": f.stat().st_size, "head": f.read_bytes()[:4].decode("latin-1"), "note": note}
