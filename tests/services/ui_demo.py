"""Service behind tests/test_ui.py: one API per kind of form / output the web UI handles."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from pathlib import Path
from typing import Annotated, Generator, Optional

from pydantic import BaseModel, Field

import bentohost
from bentohost.validators import ContentType


class Order(BaseModel):
    item: str
    qty: int = 1


class Quote(BaseModel):
    item: str
    qty: int
    total: float
    tags: list[str]


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG, built without PIL."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@bentohost.service
class UiDemo:
    """A demo service for the bentohost web UI."""

    @bentohost.api
    def greet(self, name: str, times: int = 1, shout: bool = False) -> str:
        """Say hello."""
        msg = " ".join([f"Hello, {name}!"] * times)
        return msg.upper() if shout else msg

    @bentohost.api
    def quote(self, order: Order, price: float = 2.5, tags: list[str] = Field(default_factory=list)) -> Quote:
        return Quote(item=order.item, qty=order.qty, total=order.qty * price, tags=tags)

    @bentohost.api
    def shout(self, text: str, /) -> str:
        return text.upper()

    @bentohost.api
    def image(self, red: int = 255, green: int = 0, blue: int = 0) -> Annotated[bytes, ContentType("image/png")]:
        return _png(32, 16, (red, green, blue))

    @bentohost.api
    def count(self, n: int = 5, delay: float = 0.3) -> Generator[str, None, None]:
        for i in range(n):
            yield f"tick {i}\n"
            time.sleep(delay)

    @bentohost.api
    def upload(self, f: Path, note: Optional[str] = None) -> dict:
        data = f.read_bytes()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "note": note}

    @bentohost.api
    def download(self, text: str = "hello") -> Annotated[bytes, ContentType("application/octet-stream")]:
        return text.encode() * 3
