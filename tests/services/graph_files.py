"""File and image arguments to a URL dependency (JSON mode, so multipart): ``Files``
is served alone; ``Front`` calls it through ``--depends Files=URL`` and ``Loose``
through ``depends(url=...)`` without ``on=`` (env FILES_URL)."""
import hashlib
import os
import tempfile
from pathlib import Path

from PIL import Image

import bentohost


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(size))


def picture() -> Image.Image:
    img = Image.new("RGB", (5, 3))
    img.putdata([(i * 40 % 256, i * 90 % 256, 255 - i) for i in range(15)])
    return img


@bentohost.service
class Files:
    @bentohost.api
    def echo_file(self, doc: Path, note: str, count: int = 0) -> Path:
        if note != "007" or count != 3:  # form fields keep their types
            raise ValueError(f"fields arrived as {note!r}, {count!r}")
        return doc

    @bentohost.api
    def describe(self, docs: list[Path], note: str) -> dict:
        return {"names": [d.name for d in docs], "digests": [digest(d.read_bytes()) for d in docs], "note": note}

    @bentohost.api
    def echo_image(self, image: Image.Image, label: str = "") -> Image.Image:
        return image


def _temp_file(name: str, data: bytes) -> Path:
    path = Path(tempfile.mkdtemp()) / name
    path.write_bytes(data)
    return path


@bentohost.service
class Front:
    files = bentohost.depends(Files)

    @bentohost.api
    def file_roundtrip(self, size: int) -> dict:
        sent = payload(size)
        back = self.files.echo_file(doc=_temp_file("data-1.bin", sent), note="007", count=3)
        return {"same": back.read_bytes() == sent, "size": len(back.read_bytes()), "name": back.name}

    @bentohost.api
    def describe(self) -> dict:
        docs = [_temp_file("a.txt", b"alpha"), _temp_file("b.json", b"{}")]
        return self.files.describe(docs=docs, note="two")

    @bentohost.api
    def image_roundtrip(self) -> dict:
        sent = picture()
        back = self.files.echo_image(image=sent, label="x")
        return {"same": list(back.getdata()) == list(sent.getdata()), "size": list(back.size), "mode": back.mode}


@bentohost.service
class Loose:
    files = bentohost.depends(url=os.environ.get("FILES_URL", "http://127.0.0.1:9"))

    @bentohost.api
    def file_roundtrip(self, size: int) -> dict:
        sent = payload(size)
        back = self.files.echo_file(doc=_temp_file("x.bin", sent), note="007", count=3)
        return {"same": back.read_bytes() == sent, "size": len(back.read_bytes())}

    @bentohost.api
    def image_roundtrip(self) -> dict:
        sent = picture()
        back = self.files.echo_image(image=sent)
        return {"same": list(back.getdata()) == list(sent.getdata()), "size": list(back.size)}
