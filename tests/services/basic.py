"""The main end-to-end test service: one API per behaviour under test."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import numpy as np
from pydantic import BaseModel, Field

import bentohost
from bentohost.exceptions import InvalidArgument, NotFound, ServiceUnavailable


class Item(BaseModel):
    name: str
    size: int


class Out(BaseModel):
    name: str
    size: int
    tags: list[str] = []


def _mark(kind: str) -> None:
    """Drop a file in $BH_TEST_MARK_DIR so a test can see a call has started."""
    d = os.environ.get("BH_TEST_MARK_DIR")
    if d:
        with open(os.path.join(d, f"{kind}-{uuid.uuid4().hex}"), "w") as f:
            f.write(str(os.getpid()))


@bentohost.service
class Basic:
    @bentohost.api
    def echo(self, text: str) -> str:
        return text

    @bentohost.api
    def add(self, a: int, b: int = 2) -> int:
        return a + b

    @bentohost.api
    def noargs(self) -> dict:
        return {"ok": True}

    @bentohost.api
    def dict_out(self) -> dict:
        return {"a": 1, "b": [1, 2], "c": "x"}

    @bentohost.api
    def raw(self, text: str, /) -> str:
        return "got:" + text

    @bentohost.api
    def root_sum(self, xs: list[int], /) -> int:
        return sum(xs)

    @bentohost.api
    def model_out(self, name: str, size: int = 3) -> Out:
        return Out(name=name, size=size)

    @bentohost.api
    def model_in(self, item: Item) -> dict:
        return {"name": item.name, "double": item.size * 2}

    @bentohost.api
    def array(self, rows: int = 2, cols: int = 3) -> np.ndarray:
        return np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)

    @bentohost.api
    def list_out(self) -> list[int]:
        return [1, 2, 3]

    @bentohost.api
    def big(self, n: int) -> str:
        return "x" * n

    @bentohost.api
    def length(self, text: str) -> int:
        return len(text)

    @bentohost.api
    def boom(self) -> str:
        raise ValueError("kaboom-marker-8d1f")

    @bentohost.api
    async def aboom(self) -> str:
        raise KeyError("async-kaboom-marker-31b9")

    @bentohost.api
    def bad_arg(self) -> str:
        raise InvalidArgument("x")

    @bentohost.api
    def not_found(self) -> str:
        raise NotFound("nothing here")

    @bentohost.api
    def unavailable(self) -> str:
        raise ServiceUnavailable("down for now")

    @bentohost.api(route="/v1/custom")
    def custom(self) -> str:
        return "custom-route"

    @bentohost.api
    def __call__(self, name: str = "world") -> str:
        return f"hello {name}"

    @bentohost.api
    def sleep(self, seconds: float = 1.0) -> str:
        _mark("sleep")
        time.sleep(seconds)
        return "slept"

    @bentohost.api
    async def asleep(self, seconds: float = 1.0) -> dict:
        _mark("asleep")
        await asyncio.sleep(seconds)
        return {"slept": seconds, "pid": os.getpid()}

    @bentohost.api
    def with_ctx(self, x: int, ctx: bentohost.Context) -> int:
        ctx.response.status_code = 201
        return x

    @bentohost.api
    def field_default(self, n: int = Field(default=5, ge=0)) -> int:
        return n * 2

    @bentohost.api
    def whoami(self) -> dict:
        return {
            "worker_index": bentohost.server_context.worker_index,
            "pid": os.getpid(),
            "prefix": sys.prefix,
            "executable": sys.executable,
        }
