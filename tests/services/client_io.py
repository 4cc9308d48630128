"""One API per IO type, for the client tests (ours and the real BentoML clients).

Written as a BentoML 1.4 service file: ``bentoml`` is bentohost here.
"""

from __future__ import annotations

import asyncio
import tempfile
import typing as t
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from pydantic import BaseModel, Field
from typing_extensions import Annotated

import bentohost as bentoml
from bentohost.exceptions import InvalidArgument, NotFound
from bentohost.validators import ContentType, DataframeSchema, DType, Shape


class Point(BaseModel):
    x: float
    y: float
    label: str = "p"


class Moved(BaseModel):
    point: Point
    distance: float


@bentoml.service(workers=1, traffic={"timeout": 30})
class ClientIO:
    """IO round trips for the client tests."""

    # -- scalars and containers
    @bentoml.api
    def echo_str(self, text: str) -> str:
        return text

    @bentoml.api
    def add(self, a: int, b: float = 0.5, flag: bool = False) -> float:
        return a + b + (100 if flag else 0)

    @bentoml.api
    def is_odd(self, n: int) -> bool:
        return n % 2 == 1

    @bentoml.api
    def containers(self, items: t.List[int], mapping: t.Dict[str, int]) -> t.Dict[str, t.Any]:
        return {"sum": sum(items), "keys": sorted(mapping), "total": sum(mapping.values())}

    @bentoml.api
    def raw_bytes(self, text: str) -> bytes:
        return text.encode() * 2

    # -- pydantic
    @bentoml.api
    def move(self, point: Point, dx: float = Field(default=1.0)) -> Moved:
        return Moved(point=Point(x=point.x + dx, y=point.y, label=point.label), distance=abs(dx))

    # -- numpy / pandas
    @bentoml.api
    def scale(
        self,
        arr: Annotated[np.ndarray, Shape((2, 2)), DType("float32")],
        factor: float = 2.0,
    ) -> np.ndarray:
        assert arr.dtype == np.float32, arr.dtype
        return arr * factor

    @bentoml.api
    def frame_sum(
        self, df: Annotated[pd.DataFrame, DataframeSchema(orient="records", columns=("a", "b"))]
    ) -> t.List[float]:
        return [float(v) for v in (df["a"] + df["b"]).tolist()]

    # -- files and images
    @bentoml.api
    def invert(self, image: Image.Image) -> Image.Image:
        out = ImageOps.invert(image.convert("RGB"))
        out.format = "PNG"
        return out

    @bentoml.api
    def file_info(self, document: Path, note: str = "") -> t.Dict[str, t.Any]:
        data = document.read_bytes()
        return {"name": document.name, "size": len(data), "head": data[:16].decode(errors="replace"), "note": note}

    @bentoml.api
    def make_file(self, content: str, filename: str = "result.txt") -> Annotated[Path, ContentType("text/plain")]:
        path = Path(tempfile.mkdtemp(prefix="bh-client-")) / filename
        path.write_text(content)
        return path

    # -- root inputs
    @bentoml.api
    def shout(self, text: str, /) -> str:
        return text.upper()

    @bentoml.api
    def count_bytes(self, document: Path, /) -> int:
        return len(document.read_bytes())

    # -- streaming
    @bentoml.api
    def countdown(self, n: int = 3) -> t.Generator[str, None, None]:
        for i in range(n, 0, -1):
            yield f"{i};"

    @bentoml.api
    async def slow_stream(self, n: int = 3, delay: float = 0.2) -> t.AsyncGenerator[str, None]:
        for i in range(n):
            await asyncio.sleep(delay)
            yield f"tick {i}\n"

    # -- errors
    @bentoml.api
    def fail(self, kind: str) -> str:
        if kind == "bad":
            raise InvalidArgument("bad input, sorry")
        if kind == "missing":
            raise NotFound("nothing here")
        raise RuntimeError("boom")

    # -- a name that clashes with a client attribute
    @bentoml.api
    def url(self) -> str:
        return "called!"
