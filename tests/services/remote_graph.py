"""A small dependency graph for service-to-service tests: Entry -> (Middle -> Leaf, Leaf).

``Entry`` reaches ``Leaf`` twice (directly and through ``Middle``): a diamond.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Generator
from pathlib import Path

import numpy as np
import pydantic

import bentohost
from bentohost.exceptions import (
    BentoMLException,
    InvalidArgument,
    NotFound,
    ServiceUnavailable,
    UnprocessableEntity,
)


class Item(pydantic.BaseModel):
    name: str
    price: float = 1.0
    tags: list[str] = []


@bentohost.service(traffic={"timeout": 7})
class Leaf:
    @bentohost.api
    def add(self, a: int, b: int = 1) -> int:
        return a + b

    @bentohost.api
    async def ashout(self, text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    @bentohost.api
    def double(self, x: np.ndarray) -> np.ndarray:
        return x * 2

    @bentohost.api
    async def echo_array(self, x: np.ndarray) -> np.ndarray:
        return x

    @bentohost.api
    def describe_file(self, f: Path, label: str = "") -> dict[str, str]:
        return {"label": label, "content": f.read_text(), "dir": os.path.dirname(f), "suffix": f.suffix}

    @bentohost.api
    def make_file(self, text: str, ctx: bentohost.Context) -> Path:
        path = Path(ctx.temp_dir) / "made.txt"
        path.write_text(text)
        return path

    @bentohost.api
    def reprice(self, item: Item, factor: float = 2.0) -> Item:
        return Item(name=item.name, price=item.price * factor, tags=[*item.tags, "repriced"])

    @bentohost.api
    def items(self, n: int) -> list[Item]:
        return [Item(name=str(i)) for i in range(n)]

    @bentohost.api
    def shout_root(self, text: str, /) -> str:
        return text.upper()

    @bentohost.api
    def created(self, x: int, ctx: bentohost.Context) -> int:
        ctx.response.status_code = 201
        ctx.response.headers["x-leaf"] = "yes"
        return x

    @bentohost.api
    def fail(self, kind: str) -> str:
        if kind == "bad":
            raise InvalidArgument("bad thing")
        if kind == "nf":
            raise NotFound("no such thing")
        if kind == "422":
            raise UnprocessableEntity("cannot process")
        if kind == "429":
            raise BentoMLException("slow down", error_code=429)
        if kind == "unavail":
            raise ServiceUnavailable("busy")
        raise RuntimeError("boom in leaf")

    @bentohost.api(batchable=True)
    def batch(self, xs: list[int]) -> list[int]:
        return [x + 1 for x in xs]

    @bentohost.api
    def count(self, n: int) -> Generator[str, None, None]:
        for i in range(n):
            yield str(i)

    @bentohost.api
    async def acount(self, n: int) -> AsyncGenerator[str, None]:
        for i in range(n):
            yield str(i)


@bentohost.service
class Middle:
    leaf = bentohost.depends(Leaf)

    @bentohost.api
    def total(self, values: list[int]) -> int:
        out = 0
        for v in values:
            out = self.leaf.add(a=out, b=v)
        return out

    @bentohost.api
    async def atotal(self, values: list[int]) -> int:
        out = 0
        for v in values:
            out = await self.leaf.to_async.add(a=out, b=v)
        return out


@bentohost.service
class Entry:
    middle = bentohost.depends(Middle)
    leaf = bentohost.depends(Leaf)

    @bentohost.api
    def total(self, values: list[int]) -> int:
        return self.middle.total(values=values)

    @bentohost.api
    async def shout(self, text: str) -> str:
        return await self.leaf.ashout(text=text)

    @bentohost.api
    def fail(self, kind: str) -> str:
        return self.leaf.fail(kind=kind)

    @bentohost.api
    async def afail(self, kind: str) -> str:
        return await self.leaf.to_async.fail(kind=kind)
