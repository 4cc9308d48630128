"""A chain of pools: Front -> Middle -> Model, with sync and async APIs on each
hop, numpy across a hop, and errors that keep their meaning."""
import asyncio
import os
from pathlib import Path

import numpy as np

import bentohost
from bentohost.exceptions import InvalidArgument, NotFound


def whoami(name: str) -> dict:
    return {"service": name, "pid": os.getpid(), "worker_index": bentohost.server_context.worker_index}


@bentohost.service(workers=2)
class Model:
    @bentohost.api
    def predict(self, x: list[float]) -> float:
        return float(sum(x))

    @bentohost.api
    async def apredict(self, x: list[float]) -> float:
        return float(sum(x)) * 2

    @bentohost.api
    def matmul(self, a: np.ndarray) -> np.ndarray:
        return a @ a.T

    @bentohost.api
    def who(self) -> dict:
        return whoami("Model")

    @bentohost.api
    def scale(self, a: np.ndarray) -> np.ndarray:
        a *= 2  # in place: the array that crossed the hop is the dependency's to change
        return a

    @bentohost.api
    async def aslow(self, seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            mark = os.environ.get("GRAPH_MARK_DIR")
            if mark:
                Path(mark, "model-cancelled").touch()
            raise
        return "done"

    @bentohost.api
    def budget(self, ctx: bentohost.Context) -> float:
        return float(ctx.request.headers.get("x-bentohost-deadline", "-1"))

    @bentohost.api
    def fail(self, kind: str) -> str:
        if kind == "invalid":
            raise InvalidArgument("x must not be empty")
        if kind == "missing":
            raise NotFound("no such model")
        raise RuntimeError("secret detail of the model")


@bentohost.service(workers=1)
class Middle:
    model = bentohost.depends(Model)

    @bentohost.api
    def predict(self, x: list[float]) -> float:
        return self.model.predict(x=x) + 1

    @bentohost.api
    async def apredict(self, x: list[float]) -> float:
        return await self.model.apredict(x=x) + 1

    @bentohost.api
    def who(self) -> list:
        return [whoami("Middle"), self.model.who()]


@bentohost.service(workers=2)
class Front:
    middle = bentohost.depends(Middle)
    model = bentohost.depends(Model)

    @bentohost.api
    def predict(self, x: list[float]) -> float:
        return self.middle.predict(x=x)

    @bentohost.api
    async def apredict(self, x: list[float]) -> float:
        return await self.middle.apredict(x=x)

    @bentohost.api
    def sync_to_async(self, x: list[float]) -> float:
        return self.model.to_sync.apredict(x=x)

    @bentohost.api
    async def async_to_sync(self, x: list[float]) -> float:
        return await self.model.to_async.predict(x=x)

    @bentohost.api
    def matmul(self, n: int) -> list:
        a = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
        out = self.model.matmul(a=a)
        return [list(out.shape), float(out.sum()), str(out.dtype)]

    @bentohost.api
    def scale(self, n: int) -> list:
        a = np.ones((n, n), dtype=np.float32)
        out = self.model.scale(a=a)
        out += 1  # the answer is the caller's to change too
        return [list(out.shape), float(out.sum()), bool(out.flags.writeable)]

    @bentohost.api
    def who(self) -> list:
        return [whoami("Front"), *self.middle.who()]

    @bentohost.api
    def fail(self, kind: str) -> str:
        return self.model.fail(kind=kind)

    @bentohost.api
    def whoami(self) -> dict:
        return whoami("Front")

    @bentohost.api
    async def aslow(self, seconds: float) -> str:
        return await self.model.aslow(seconds=seconds)

    @bentohost.api
    def budget(self) -> float:
        return self.model.budget()
