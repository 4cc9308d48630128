"""Every IO type in and out (tests/test_io_types.py, test_multipart.py, test_schema.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, Field

import bentohost
from bentohost.validators import ContentType, DataframeSchema, DType, Shape


class Address(BaseModel):
    city: str
    zip: Optional[str] = None


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)
    address: Address
    tags: list[str] = []


@bentohost.service
class IOTypes:
    """A service that covers every IO type."""

    @bentohost.api
    def scalars(self, s: str, i: int, f: float, b: bool, l: list[int], d: dict[str, Any]) -> dict:
        return {"s": s, "i": i, "f": f, "b": b, "l": l, "d": d}

    @bentohost.api
    def optional(self, x: Optional[int] = None, y: int = Field(7, ge=0)) -> dict:
        return {"x": x, "y": y}

    @bentohost.api
    def person(self, p: Person) -> Person:
        return p

    @bentohost.api
    def text_root(self, text: str, /) -> str:
        return text[::-1]

    @bentohost.api
    def bytes_root(self, data: bytes, /) -> bytes:
        return data.upper()

    @bentohost.api
    def bytes_field(self, data: bytes) -> int:
        return len(data)

    @bentohost.api
    def array(self, x: Annotated[np.ndarray, Shape((2, 3)), DType("float32")]) -> np.ndarray:
        assert x.dtype == np.float32 and x.shape == (2, 3)
        return x * 2

    @bentohost.api
    def ndarray_root(self, x: NDArray[np.int16], /) -> dict:
        return {"dtype": str(x.dtype), "shape": list(x.shape), "sum": int(x.sum()), "writeable": bool(x.flags.writeable)}

    @bentohost.api
    def frame_records(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df["total"] = df["a"] + df["b"]
        return df

    @bentohost.api
    def frame_columns(
        self, df: Annotated[pd.DataFrame, DataframeSchema(orient="columns", columns=("a", "b"))]
    ) -> Annotated[pd.DataFrame, DataframeSchema(orient="columns")]:
        return df * 10

    @bentohost.api
    def image(self, img: Image.Image) -> Image.Image:
        return img.convert("L")

    @bentohost.api
    def image_root(self, img: Image.Image, /) -> dict:
        return {"size": list(img.size), "mode": img.mode}

    @bentohost.api
    def file_in(self, f: Annotated[Path, ContentType("text/*")], note: str = "", n: int = 0) -> dict:
        return {"text": f.read_text(), "note": note, "n": n, "suffix": f.suffix, "exists": f.exists()}

    @bentohost.api
    def files_in(self, files: list[Path], meta: dict = {}) -> dict:
        return {"sizes": [p.stat().st_size for p in files], "meta": meta}

    @bentohost.api
    def file_root(self, f: Path, /) -> dict:
        return {"size": f.stat().st_size, "in_tmp": str(f).startswith(tempfile.gettempdir())}

    @bentohost.api
    def file_out(self, name: str = "report.txt", ctx: bentohost.Context = None) -> Path:
        p = Path(ctx.temp_dir) / name
        p.write_text("file body")
        return p

    @bentohost.api
    def image_file_out(self, ctx: bentohost.Context) -> Annotated[Path, ContentType("image/png")]:
        p = Path(ctx.temp_dir) / "pic.png"
        Image.new("RGB", (3, 2), "red").save(p)
        return p

    @bentohost.api
    def jpeg_out(self) -> Annotated[Image.Image, ContentType("image/jpeg")]:
        return Image.new("RGB", (4, 4), "blue")

    @bentohost.api
    def html(self) -> Annotated[str, ContentType("text/html")]:
        return "<p>hi</p>"

    @bentohost.api(batchable=True, max_batch_size=16)
    def batch_double(self, xs: list[int]) -> list[int]:
        return [x * 2 for x in xs]

    @bentohost.api
    def tmpdir(self) -> str:
        return tempfile.gettempdir()
