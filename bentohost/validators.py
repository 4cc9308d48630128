"""Markers for ``typing.Annotated`` metadata (BentoML's ``bentoml.validators`` names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ContentType", "Shape", "DType", "DataframeSchema"]


@dataclass(frozen=True)
class ContentType:
    """Media type of a body: ``Annotated[str, ContentType("text/html")]``."""

    content_type: str


@dataclass(frozen=True)
class Shape:
    """Declared shape of a tensor input; the decoded array is reshaped to it."""

    dimensions: tuple[int, ...]


@dataclass(frozen=True)
class DType:
    """Declared dtype of a tensor input (a numpy dtype name such as ``"float32"``)."""

    dtype: str


@dataclass(frozen=True)
class DataframeSchema:
    """Orientation and columns of a pandas DataFrame on the wire."""

    orient: Literal["records", "columns"] = "records"
    columns: tuple[str, ...] | None = None
