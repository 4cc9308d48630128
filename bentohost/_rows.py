"""Batch inputs that C decodes into one array (csrc/traffic/rows.c).

A batchable API whose only input is a numpy array of a declared fixed-width dtype
(``Annotated[np.ndarray, DType("float32")]``, ``NDArray[np.float32]``, with or
without a ``Shape`` whose dimensions after the first are fixed) has its members'
bodies (JSON lists of numbers, ``application/octet-stream``, ``.npy``) decoded on
the I/O thread into one buffer: the batch reaches Python as one ``np.frombuffer``
and each member's row count. A batch C cannot decode exactly as Python would
reaches Python as bodies, as before.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from ._io import _resolved_hints
from ._types import classify

DTYPES = frozenset({"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
MAX_SHAPE = 8  # csrc/common/config.h BH_API_MAX_SHAPE


def rows_spec(method: Any) -> dict[str, Any] | None:
    """``{"dtype", "shape"}`` for the C host, or None when Python decodes the members
    (also with ``BENTOHOST_PYTHON_ROWS=1``: the comparison bench/batching.py makes)."""
    if os.environ.get("BENTOHOST_PYTHON_ROWS") == "1":
        return None
    if not method.batchable or tuple(method.batch_dim)[0] != 0 or method.input_spec is not None:
        return None
    params = [p for p in list(inspect.signature(method.func).parameters.values())[1:] if p.name != method.ctx_param]
    if len(params) != 1:
        return None
    info = classify(_resolved_hints(method.func).get(params[0].name, Any))
    if info.kind != "tensor" or info.dtype not in DTYPES:
        return None
    shape = info.shape
    if shape is not None and (
        not 1 <= len(shape) <= MAX_SHAPE or shape[0] == 0 or shape[0] < -1 or any(d <= 0 for d in shape[1:])
    ):
        return None
    return {"dtype": info.dtype, "shape": list(shape) if shape is not None else None}


def rows_array(rows: tuple[Any, tuple[int, ...], list[int]], dtype: str) -> tuple[Any, list[int]]:
    """The batch's input from what C decoded: the array and each member's rows."""
    import numpy as np

    data, shape, counts = rows
    return np.frombuffer(data, dtype=dtype).reshape(shape), counts
