"""Batchable numpy APIs whose batch input C decodes into one array (tests/test_batch_rows.py).
Each API records whether its batch came from C (an array over the host's buffer)
or from Python's per-member decoding."""
from typing import Annotated

import numpy as np

import bentohost
from bentohost.validators import DType, Shape

SEEN = {"c": 0, "python": 0}


def note(x: np.ndarray) -> None:
    base = x
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    SEEN["c" if isinstance(base, memoryview) else "python"] += 1


@bentohost.service(workers=1)
class Rows:
    @bentohost.api(batchable=True, max_batch_size=64, max_latency_ms=2000)
    def double(self, x: Annotated[np.ndarray, DType("float32")]) -> np.ndarray:
        note(x)
        return x * 2

    @bentohost.api(batchable=True, max_batch_size=64, max_latency_ms=2000)
    def triples(self, x: Annotated[np.ndarray, DType("float64"), Shape((-1, 3))]) -> np.ndarray:
        note(x)
        return x.sum(axis=1)

    @bentohost.api(batchable=True, max_batch_size=64, max_latency_ms=2000)
    def counts(self, x: Annotated[np.ndarray, DType("int64")]) -> np.ndarray:
        note(x)
        return x + 1

    @bentohost.api
    def seen(self) -> dict:
        return dict(SEEN)
