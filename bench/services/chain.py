"""Service-graph bench services (bench/chain.py): the same file runs under both servers.

BENCH_SERVER=bentohost -> `import bentohost as bentoml`; BENCH_SERVER=bentoml -> `import bentoml`
(bench/chain.py sets it; unset: bentohost when importable, else bentoml). One worker per service.

Chain (2 hops):  Entry.predict(x) -> Pre.process(x) (adds 1 to each) -> Model.predict(x) (sums)
Single (0 hops): Single.predict(x) does the same work in one process.
Each has a sync `def` variant (predict/process, blocking proxy calls from the API's thread) and
an async variant (apredict/aprocess, `await self.dep.to_async.<api>(...)`).

Array (1 hop, 8 MiB across it per request): ArrayEntry.echo(n) sends its cached float32
np.arange(n) (4 MiB for n = 1,048,576) to ArrayModel.echo(a), which returns it unchanged; the
entry checks the size and a strided checksum of what came back and returns a small JSON
object. ArrayEntry.local(n) does the same check on its own array with no hop (the reference).
"""
from __future__ import annotations

import os

import numpy as np

_which = os.environ.get("BENCH_SERVER", "")
if _which == "bentohost":
    import bentohost as bentoml
elif _which == "bentoml":
    import bentoml
else:
    try:
        import bentohost as bentoml
    except ImportError:
        import bentoml

STRIDE = 1024


def checksum(a: np.ndarray) -> float:
    """Sum of every STRIDE-th element, in float64 (exact for an arange up to 2**20)."""
    return float(a[::STRIDE].sum(dtype=np.float64))


# --------------------------------------------------------------------- the 3-service chain


@bentoml.service(workers=1)
class Model:
    @bentoml.api
    def predict(self, x: list[float]) -> float:
        return float(sum(x))

    @bentoml.api
    async def apredict(self, x: list[float]) -> float:
        return float(sum(x))


@bentoml.service(workers=1)
class Pre:
    model = bentoml.depends(Model)

    @bentoml.api
    def process(self, x: list[float]) -> float:
        return self.model.predict(x=[v + 1.0 for v in x])

    @bentoml.api
    async def aprocess(self, x: list[float]) -> float:
        return await self.model.to_async.apredict(x=[v + 1.0 for v in x])


@bentoml.service(workers=1)
class Entry:
    pre = bentoml.depends(Pre)

    @bentoml.api
    def predict(self, x: list[float]) -> float:
        return self.pre.process(x=x)

    @bentoml.api
    async def apredict(self, x: list[float]) -> float:
        return await self.pre.to_async.aprocess(x=x)


# --------------------------------------------------------------------- the same work, one service


@bentoml.service(workers=1)
class Single:
    @bentoml.api
    def predict(self, x: list[float]) -> float:
        return float(sum([v + 1.0 for v in x]))

    @bentoml.api
    async def apredict(self, x: list[float]) -> float:
        return float(sum([v + 1.0 for v in x]))


# --------------------------------------------------------------------- a 4 MiB array across one hop


@bentoml.service(workers=1)
class ArrayModel:
    @bentoml.api
    def echo(self, a: np.ndarray) -> np.ndarray:
        return a


@bentoml.service(workers=1)
class ArrayEntry:
    model = bentoml.depends(ArrayModel)

    def __init__(self) -> None:
        self.arrays: dict[int, np.ndarray] = {}

    def _array(self, n: int) -> np.ndarray:
        a = self.arrays.get(n)
        if a is None:
            a = self.arrays[n] = np.arange(n, dtype=np.float32)
        return a

    @bentoml.api
    def echo(self, n: int) -> dict:
        b = self.model.echo(a=self._array(n))
        return {"n": int(b.size), "dtype": str(b.dtype), "checksum": checksum(b)}

    @bentoml.api
    def local(self, n: int) -> dict:
        b = self._array(n)
        return {"n": int(b.size), "dtype": str(b.dtype), "checksum": checksum(b)}
