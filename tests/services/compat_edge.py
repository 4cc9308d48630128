"""Wire-compatibility edge cases: path_prefix, root models, declared text content types."""

from __future__ import annotations

import typing as t
from pathlib import Path
from typing import Annotated, Dict, List, Optional

from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict

try:
    import bentohost as bentoml
    from bentohost.validators import ContentType
except ImportError:  # pragma: no cover - run under real BentoML for the reference
    import bentoml
    from bentoml.validators import ContentType


class Point(BaseModel):
    x: int
    y: Optional[int] = None


class Titled(BaseModel):
    model_config = ConfigDict(title="Custom")
    v: int


@bentoml.service(path_prefix="/v1")
class CompatEdge:
    @bentoml.api
    def zeta(self, p: Point, /) -> Point:
        return p

    @bentoml.api
    def alpha(self, n: int = 5, /) -> List[Point]:
        return [Point(x=n)]

    @bentoml.api
    def by_name(self, d: Dict[str, Point]) -> Dict[str, Point]:
        return d

    @bentoml.api
    def titled(self, t_: Titled) -> Titled:
        return t_

    @bentoml.api(route="/renamed", name="renamed_api")
    def beta(self, s: str) -> Annotated[str, ContentType("text/csv")]:
        return s

    @bentoml.api
    def csv_stream(self) -> t.Generator[Annotated[str, ContentType("text/plain")], None, None]:
        yield "a,b\n"

    @bentoml.api
    def ct_file_root(self, f: Annotated[Path, ContentType("text/plain")], /) -> str:
        return f.read_text()

    @bentoml.api
    def img_root_bad(self, img: PILImage.Image, /) -> str:
        return "x"

    @bentoml.api
    def floats(self, xs: List[float], /) -> List[float]:
        return xs

    @bentoml.api
    def bin_out(self) -> Annotated[bytes, ContentType("application/octet-stream")]:
        return b"\x00\x01"
