"""Streams across hops (tests/test_graph_streams.py): Front -> Leaf and
Front -> Mid -> Leaf, generators on both sides, structured items, numpy
items, back-pressure and cancellation seen from the dependency."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Generator
from pathlib import Path

import numpy as np
from pydantic import BaseModel

import bentohost
from bentohost.exceptions import InvalidArgument


class Point(BaseModel):
    x: int
    label: str


def _mark(name: str) -> None:
    folder = os.environ.get("GRAPH_MARK_DIR")
    if folder:
        Path(folder, name).touch()


@bentohost.service(workers=1)
class Leaf:
    produced = 0

    @bentohost.api
    async def atokens(self, n: int, delay: float = 0.0) -> AsyncGenerator[str, None]:
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield f"tok{i} "

    @bentohost.api
    def items(self, n: int) -> Generator[dict, None, None]:
        for i in range(n):
            # text with line breaks and JSON-looking bytes: an unframed stream would merge these
            yield {"i": i, "sq": i * i, "text": 'a\n{"b": }\n'}

    @bentohost.api
    def points(self, n: int) -> Generator[Point, None, None]:
        for i in range(n):
            yield Point(x=i, label=f"p{i}")

    @bentohost.api
    def arrays(self, n: int) -> Generator[np.ndarray, None, None]:
        for i in range(n):
            yield np.full((i + 1, 3), i, dtype=np.float32)

    @bentohost.api
    def big(self, n: int, size: int) -> Generator[bytes, None, None]:
        Leaf.produced = 0
        chunk = b"x" * size
        for _ in range(n):
            Leaf.produced += 1
            yield chunk

    @bentohost.api
    def produced_so_far(self) -> int:
        return Leaf.produced

    @bentohost.api
    async def forever(self) -> AsyncGenerator[str, None]:
        try:
            i = 0
            while True:
                yield f"beat {i}\n"
                i += 1
                await asyncio.sleep(0.05)
        finally:
            _mark("leaf-stream-closed")

    @bentohost.api
    def refuses(self, n: int) -> Generator[str, None, None]:
        if n < 0:
            raise InvalidArgument("n must not be negative")
        yield "fine"

    @bentohost.api
    def cut_short(self) -> Generator[str, None, None]:
        yield "first"
        time.sleep(0.2)
        os._exit(3)  # the worker dies mid-stream: its caller must not see a complete answer
        yield "never"


@bentohost.service(workers=1)
class Mid:
    leaf = bentohost.depends(Leaf)

    @bentohost.api
    async def relay(self, n: int) -> AsyncGenerator[str, None]:
        async for tok in self.leaf.atokens(n=n):
            yield tok.upper()


@bentohost.service(workers=1, traffic={"timeout": 30})
class Front:
    leaf = bentohost.depends(Leaf)
    mid = bentohost.depends(Mid)

    @bentohost.api
    async def tokens(self, n: int, delay: float = 0.0) -> AsyncGenerator[str, None]:
        async for tok in self.leaf.atokens(n=n, delay=delay):
            yield tok

    @bentohost.api
    def sync_tokens(self, n: int) -> Generator[str, None, None]:
        yield from self.leaf.to_sync.atokens(n=n)

    @bentohost.api
    def items(self, n: int) -> list:
        return list(self.leaf.items(n=n))

    @bentohost.api
    async def aitems(self, n: int) -> list:
        return [item async for item in self.leaf.to_async.items(n=n)]

    @bentohost.api
    def points(self, n: int) -> list:
        out = []
        for p in self.leaf.points(n=n):
            assert isinstance(p, Point), type(p)
            out.append(p.model_dump())
        return out

    @bentohost.api
    def arrays(self, n: int) -> list:
        return [[list(a.shape), str(a.dtype), float(a.sum())] for a in self.leaf.arrays(n=n)]

    @bentohost.api
    async def relay(self, n: int) -> AsyncGenerator[str, None]:
        async for tok in self.mid.relay(n=n):
            yield tok

    @bentohost.api
    async def forever(self) -> AsyncGenerator[str, None]:
        async for beat in self.leaf.forever():
            yield beat

    @bentohost.api
    def refuses(self, n: int) -> list:
        return list(self.leaf.refuses(n=n))

    @bentohost.api
    def first_then_stop(self) -> str:
        gen = self.leaf.to_sync.forever()
        first = next(gen)
        gen.close()  # the caller stops early: the dependency's generator ends too
        return first

    @bentohost.api
    def cut_short(self) -> list:
        return list(self.leaf.cut_short())

    @bentohost.api
    def slow_consumer(self, n: int, size: int) -> dict:
        gen = self.leaf.big(n=n, size=size)
        total = len(next(gen))
        time.sleep(1.5)  # the dependency must not run far ahead meanwhile
        ahead = self.leaf.produced_so_far()
        for chunk in gen:
            total += len(chunk)
        return {"total": total, "ahead": ahead}

    @bentohost.api
    def whoami(self) -> dict:
        return {"worker_index": bentohost.server_context.worker_index, "pid": os.getpid()}
