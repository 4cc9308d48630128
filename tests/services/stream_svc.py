"""Streaming, backpressure and cancellation (tests/test_streaming.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Annotated

import bentohost
from bentohost.exceptions import InvalidArgument
from bentohost.validators import ContentType


def _note(marker: str, text: str) -> None:
    if marker:
        with open(marker, "a") as f:
            f.write(text + "\n")


@bentohost.service(traffic={"timeout": 1.5})
class StreamSvc:
    @bentohost.api
    def ticks(self, n: int = 3, delay: float = 0.3) -> Generator[str, None, None]:
        for i in range(n):
            if i:
                time.sleep(delay)
            yield f"data: {i}\n\n"

    @bentohost.api
    async def aticks(self, n: int = 3, delay: float = 0.3) -> AsyncGenerator[str, None]:
        for i in range(n):
            if i:
                await asyncio.sleep(delay)
            yield f"tick {i}\n"

    @bentohost.api
    def objects(self) -> Generator[dict, None, None]:
        yield {"a": 1}
        yield b"raw"
        yield [1, 2]

    @bentohost.api
    def typed(self) -> Generator[Annotated[str, ContentType("text/plain")], None, None]:
        yield "x"
        yield "y"

    @bentohost.api
    def fail_first(self, kind: str = "bad") -> Generator[str, None, None]:
        if kind == "bad":
            raise InvalidArgument("no stream for you")
        raise RuntimeError("boom before first chunk")
        yield "never"

    @bentohost.api
    async def afail_first(self) -> AsyncGenerator[str, None]:
        raise InvalidArgument("async no stream")
        yield "never"

    @bentohost.api
    def fail_later(self) -> Generator[str, None, None]:
        yield "one;"
        yield "two;"
        raise RuntimeError("boom after two chunks")

    @bentohost.api
    def status_stream(self, ctx: bentohost.Context) -> Generator[str, None, None]:
        ctx.response.status_code = 206
        ctx.response.headers["X-Stream"] = "on"
        yield "partial"

    @bentohost.api
    def forever(self, marker: str) -> Generator[str, None, None]:
        try:
            i = 0
            while True:
                _note(marker, f"yield {i}")
                yield f"chunk {i}\n"
                i += 1
                time.sleep(0.05)
        finally:
            _note(marker, "closed")

    @bentohost.api
    async def aforever(self, marker: str) -> AsyncGenerator[str, None]:
        try:
            i = 0
            while True:
                _note(marker, f"yield {i}")
                yield f"chunk {i}\n"
                i += 1
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            _note(marker, "cancelled")
            raise
        finally:
            _note(marker, "closed")

    @bentohost.api
    def flood(self, marker: str, n: int = 400, size: int = 262144) -> Generator[bytes, None, None]:
        block = b"x" * size
        for i in range(n):
            Path(marker).write_text(str(i))
            yield block
        Path(marker).write_text("done")

    @bentohost.api
    async def aflood(self, marker: str, n: int = 400, size: int = 262144) -> AsyncGenerator[bytes, None]:
        block = b"y" * size
        for i in range(n):
            Path(marker).write_text(str(i))
            yield block
        Path(marker).write_text("done")

    @bentohost.api
    async def slow(self, marker: str, seconds: float = 5.0) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            _note(marker, "cancelled")
            raise
        return "late"

    @bentohost.api
    def quick(self) -> str:
        return "ok"
