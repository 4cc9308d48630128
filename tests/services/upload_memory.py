"""PIL image uploads, which the host holds in memory when the body is small
(tests/test_upload_memory.py): each API reports what it was handed."""
from __future__ import annotations

import os
from pathlib import Path

import PIL.Image

import bentohost

KEPT: list[PIL.Image.Image] = []


def describe(img: PIL.Image.Image) -> dict:
    img.load()
    return {"size": list(img.size), "mode": img.mode, "format": img.format,
            "filename": getattr(img, "filename", ""), "pixel": list(img.getpixel((0, 0)))}


@bentohost.service(workers=1)
class UploadMemory:
    @bentohost.api
    def one(self, img: PIL.Image.Image, doc: Path, note: str = "") -> dict:
        return {"img": describe(img), "doc": str(doc), "doc_bytes": doc.read_bytes().decode(),
                "listing": sorted(os.listdir(doc.parent)), "note": note}

    @bentohost.api
    def only(self, img: PIL.Image.Image) -> dict:
        return describe(img)

    @bentohost.api
    def reader(self, img: PIL.Image.Image) -> dict:
        kind = type(img.fp).__name__  # before load(): what PIL reads the upload from
        return {**describe(img), "reader": kind, "sum": sum(img.convert("L").tobytes())}

    @bentohost.api
    def keep(self, img: PIL.Image.Image) -> str:
        KEPT.append(img)  # not loaded: PIL reads it after the request has gone
        return img.format

    @bentohost.api
    def load_kept(self) -> list[dict]:
        got = [describe(i) for i in KEPT]
        KEPT.clear()
        return got

    @bentohost.api
    def many(self, imgs: list[PIL.Image.Image]) -> list[dict]:
        return [describe(i) for i in imgs]

    @bentohost.api
    def root(self, img: PIL.Image.Image, /) -> dict:
        return describe(img)
