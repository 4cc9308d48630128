"""A two-service graph for the signed-pickle tests: what the dependency saw on the
wire, a value only pickle carries, a batchable API and the keys' visibility."""
import os
from fractions import Fraction
from typing import Any

import numpy as np

import bentohost


@bentohost.service(workers=1)
class Leaf:
    @bentohost.api
    def wire(self, ctx: bentohost.Context) -> dict:
        """How this call arrived: its content type and whether it was signed."""
        headers = ctx.request.headers
        return {"content_type": headers.get("content-type", ""),
                "signed": "x-bentohost-signature" in headers}

    @bentohost.api
    def third(self, value: Any) -> Any:
        """A Fraction in and out: only pickle carries it."""
        return Fraction(value) / 3

    @bentohost.api
    def scale(self, a: np.ndarray) -> np.ndarray:
        return a * 2

    @bentohost.api(batchable=True)
    def bump(self, xs: list[int]) -> list[int]:
        return [x + 1 for x in xs]

    @bentohost.api
    def keys_visible(self) -> list:
        return sorted(k for k in os.environ if k in ("BENTOHOST_PRIVATE_KEY", "BENTOHOST_GRAPH_SECRET"))


@bentohost.service(workers=1)
class Entry:
    leaf = bentohost.depends(Leaf)

    @bentohost.api
    def wire(self) -> dict:
        return self.leaf.wire()

    @bentohost.api
    def third(self, n: int) -> list:
        out = self.leaf.third(value=Fraction(n, 7))
        return [type(out).__name__, str(out)]

    @bentohost.api
    def scale(self, n: int) -> list:
        out = self.leaf.scale(a=np.arange(n, dtype=np.int16))
        return [str(out.dtype), out.tolist()]

    @bentohost.api
    def bump(self, xs: list[int]) -> list[int]:
        return self.leaf.bump(xs=xs)

    @bentohost.api
    def keys_visible(self) -> dict:
        mine = sorted(k for k in os.environ if k in ("BENTOHOST_PRIVATE_KEY", "BENTOHOST_GRAPH_SECRET"))
        return {"entry": mine, "leaf": self.leaf.keys_visible()}

    @bentohost.api
    def whoami(self) -> dict:
        return {"service": "Entry", "pid": os.getpid(), "worker_index": bentohost.server_context.worker_index}
