"""Numpy inputs of APIs that are not batchable, whose JSON arrays C reads
(csrc/python/json_rows.c); tests/test_batch_rows.py serves this file twice, once
with BENTOHOST_PYTHON_ROWS=1 (Python's json), and compares every answer."""
from typing import Annotated

import numpy as np

import bentohost
from bentohost.validators import DType, Shape


def describe(x: np.ndarray) -> dict:
    base = x
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return {"dtype": str(x.dtype), "shape": list(x.shape), "hex": x.tobytes().hex(), "writable": x.flags.writeable,
            "from_c": isinstance(base, memoryview)}


@bentohost.service(workers=1)
class ArrayInputs:
    @bentohost.api
    def f32(self, x: Annotated[np.ndarray, DType("float32")]) -> dict:
        return describe(x)

    @bentohost.api
    def f64_pairs(self, x: Annotated[np.ndarray, DType("float64"), Shape((2, 2))]) -> dict:
        return describe(x)

    @bentohost.api
    def i16(self, x: Annotated[np.ndarray, DType("int16")]) -> dict:
        return describe(x)

    @bentohost.api
    def root_u8(self, x: Annotated[np.ndarray, DType("uint8")], /) -> dict:
        return describe(x)
