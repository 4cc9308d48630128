"""Wire-compatibility service: one API per IO shape, served by bentohost and BentoML 1.4 alike."""

from __future__ import annotations

import asyncio
import typing as t
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image as PILImage
from pydantic import BaseModel, Field

try:
    import bentohost as bentoml
    from bentohost.validators import ContentType, DataframeSchema, DType, Shape
except ImportError:  # pragma: no cover - run under real BentoML for the reference
    import bentoml
    from bentoml.validators import ContentType, DataframeSchema, DType, Shape


class Address(BaseModel):
    city: str
    zip: Optional[str] = None


class Person(BaseModel):
    name: str = Field(min_length=1, description="full name")
    age: int = Field(ge=0, le=150)
    address: Address
    tags: List[str] = []


class Moved(BaseModel):
    x: float
    y: float


class MyError(bentoml.exceptions.InvalidArgument):
    pass


@bentoml.service(http={"port": 3000})
class CompatAll:
    """Covers every IO type."""

    @bentoml.api
    def scalars(self, s: str, i: int, f: float, b: bool, l: list, d: dict) -> dict:
        return {"s": s, "i": i, "f": f, "b": b, "l": l, "d": d}

    @bentoml.api
    def typed(self, names: List[str], scores: Dict[str, float], maybe: Optional[int] = None, n: int = 3) -> List[Any]:
        return [names, scores, maybe, n]

    @bentoml.api
    def constrained(
        self,
        q: Annotated[str, Field(min_length=2, max_length=5)],
        k: Annotated[int, Field(gt=0, lt=10)] = 1,
        r: float = Field(default=0.5, ge=0.0, le=1.0, description="a ratio"),
    ) -> str:
        return f"{q}:{k}:{r}"

    @bentoml.api
    def person(self, p: Person) -> Person:
        return p

    @bentoml.api
    def move(self, x: float, y: float) -> Moved:
        return Moved(x=x + 1, y=y + 1)

    @bentoml.api
    def people(self, ps: List[Person]) -> List[Person]:
        return ps

    @bentoml.api
    def shout(self, text: str, /) -> str:
        return text.upper()

    @bentoml.api
    def count(self, n: int, /) -> int:
        return n * 2

    @bentoml.api
    def numbers(self, xs: List[float], /) -> List[float]:
        return [x * 2 for x in xs]

    @bentoml.api
    def mapping(self, d: Dict[str, int], /) -> Dict[str, int]:
        return {k: v + 1 for k, v in d.items()}

    @bentoml.api
    def raw_bytes(self, data: bytes) -> bytes:
        return data[::-1]

    @bentoml.api
    def tensor(
        self, arr: Annotated[np.ndarray, Shape((2, 2)), DType("float32")]
    ) -> Annotated[np.ndarray, DType("float32")]:
        return arr * 2

    @bentoml.api
    def ndarray(self, arr: NDArray[np.int64]) -> NDArray[np.int64]:
        return arr + 1

    @bentoml.api
    def frame_records(self, df: pd.DataFrame) -> pd.DataFrame:
        return df

    @bentoml.api
    def frame_columns(
        self, df: Annotated[pd.DataFrame, DataframeSchema(orient="columns", columns=["a", "b"])]
    ) -> Annotated[pd.DataFrame, DataframeSchema(orient="columns")]:
        return df

    @bentoml.api
    def image(self, img: PILImage.Image) -> PILImage.Image:
        return img.rotate(90)

    @bentoml.api
    def upload(self, f: Annotated[Path, ContentType("text/plain")], name: str = "x") -> str:
        return f.read_text() + name

    @bentoml.api
    def download(self, name: str, content: str = "hi") -> Path:
        import tempfile

        p = Path(tempfile.mkdtemp()) / name
        p.write_text(content)
        return p

    @bentoml.api
    def download_ct(self, content: str) -> Annotated[Path, ContentType("application/pdf")]:
        import tempfile

        fd, name = tempfile.mkstemp(suffix=".bin")
        with open(fd, "w") as f:
            f.write(content)
        return Path(name)

    @bentoml.api
    def file_root(self, f: Path, /) -> str:
        return f.read_text()

    @bentoml.api
    def image_root(self, img: PILImage.Image, /) -> dict:
        return {"size": list(img.size)}

    @bentoml.api
    def stream(self, n: int = 3) -> t.Generator[str, None, None]:
        for i in range(n):
            yield f"chunk {i}\n"

    @bentoml.api
    async def async_api(self, a: int, b: int = 2) -> int:
        await asyncio.sleep(0)
        return a + b

    @bentoml.api(route="/custom/path")
    def custom(self, v: int) -> int:
        return v

    @bentoml.api
    def boom(self) -> str:
        raise RuntimeError("boom")

    @bentoml.api
    def bad_arg(self) -> str:
        raise MyError("nope")

    @bentoml.api
    def anything(self, x):
        return x

    @bentoml.api
    def nothing(self) -> None:
        return None
