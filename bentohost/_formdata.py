"""``multipart/form-data`` bodies for calls whose arguments hold files or images
(JSON mode: URL dependencies), as BentoML's own client builds them: each file is a
part with its filename and content type (a list of files, one part each); every
other argument is a form field holding its JSON encoding (strings too, so that
``"007"`` stays a string on a BentoML server, which JSON-decodes every field and
falls back to the text; bentohost's server does the same).
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import Collection
from typing import Any

from . import _pickle
from ._io import dumps_json
from ._types import OCTET_STREAM

__all__ = ["encode", "file_part"]


def file_part(value: Any) -> tuple[str, str, bytes] | None:
    """``(filename, content type, bytes)`` of a file-like argument, None for anything else."""
    if isinstance(value, os.PathLike):
        name = os.path.basename(os.fspath(value)) or "file"
        return name, mimetypes.guess_type(name)[0] or OCTET_STREAM, _pickle.file_to_bytes(value)
    if _pickle.is_image(value):
        data = _pickle.image_to_bytes(value)  # re-encoded in its format, PNG when it has none
        fmt = (value.format or "png").lower()
        return f"image.{fmt}", f"image/{fmt}", data
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "file", OCTET_STREAM, bytes(value)
    return None


def _quoted(text: str) -> str:
    """A name or filename inside double quotes (HTML's form encoding)."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _head(boundary: bytes, name: str, filename: str | None = None, ctype: str | None = None) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{_quoted(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quoted(filename)}"'
    lines = [disposition] + ([f"Content-Type: {ctype}"] if ctype else [])
    return b"--" + boundary + b"\r\n" + "\r\n".join(lines).encode() + b"\r\n\r\n"


def encode(fields: dict[str, Any], file_fields: Collection[str]) -> tuple[str, list[bytes | memoryview]]:
    """``(content type, body parts)``; ``file_fields`` are the names that hold files or
    images (a value of theirs that is not a file, e.g. a URL string, goes as text)."""
    boundary = f"bentohost-{secrets.token_hex(16)}".encode()
    parts: list[bytes | memoryview] = []
    for name, value in fields.items():
        if name in file_fields:
            if value is None:
                continue
            for item in value if isinstance(value, (list, tuple)) else [value]:
                part = file_part(item)
                if part is None:
                    parts += [_head(boundary, name), str(item).encode(), b"\r\n"]
                else:
                    filename, ctype, data = part
                    parts += [_head(boundary, name, filename, ctype), data, b"\r\n"]
        else:
            parts += [_head(boundary, name), dumps_json(value), b"\r\n"]
    parts.append(b"--" + boundary + b"--\r\n")
    return f"multipart/form-data; boundary={boundary.decode()}", parts
