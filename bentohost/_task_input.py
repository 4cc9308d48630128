"""A submitted task's request, kept in the store until the task runs (and for retries).

What C handed Python for the ``/submit`` request: the body (None for multipart), its
content type and the metadata ``(head, client, temp_dir, parts)``. Multipart file
parts live in a temporary directory that C removes after the response, so their
contents are copied into the blob; the run writes them to a directory of its own.

Layout: ``MAGIC``, a 4-byte big-endian length, a JSON header of that length, then
the head, the body and every part's bytes back to back, as the header's lengths say.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from typing import Any

__all__ = ["encode_input", "decode_input", "StoredRequest", "InputFormatError"]

MAGIC = b"BHT1"
_LEN = struct.Struct(">I")
#: a blob with more parts than this was not written by us (C caps parts far lower)
MAX_PARTS = 100_000


class InputFormatError(ValueError):
    """The stored input is not one ``encode_input`` wrote."""


def _read_part(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def encode_input(body: bytes | None, content_type: str | None, meta: Any) -> bytes:
    """The blob for a request (call before C removes the request's temp dir)."""
    head = b""
    client: str | None = None
    parts_meta: list[list[Any]] | None = None
    chunks: list[bytes] = []
    if meta is not None:
        head = bytes(meta[0] or b"")
        client = meta[1]
        parts = meta[3] if len(meta) > 3 else None
        if parts is not None:
            parts_meta = []
            for name, filename, ctype, path, data in parts:
                content = _read_part(path) if path is not None else bytes(data or b"")
                base = os.path.basename(path) if path is not None else None
                parts_meta.append([name, filename, ctype, path is not None, len(content), base])
                chunks.append(content)
    raw_body = None if body is None else bytes(body)
    header = {
        "ct": content_type,
        "client": client,
        "head": len(head),
        "body": -1 if raw_body is None else len(raw_body),
        "parts": parts_meta,
    }
    hdr = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, _LEN.pack(len(hdr)), hdr, head, raw_body or b"", *chunks])


class StoredRequest:
    """A decoded blob: the run's ``body``, ``content_type`` and ``meta``; ``close()``
    removes the directory its file parts were written to."""

    __slots__ = ("body", "content_type", "meta", "_temp_dir")

    def __init__(self, body: bytes | None, content_type: str | None, meta: Any, temp_dir: str | None) -> None:
        self.body = body
        self.content_type = content_type
        self.meta = meta
        self._temp_dir = temp_dir

    def close(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def _header(blob: bytes) -> tuple[dict[str, Any], int]:
    if len(blob) < len(MAGIC) + _LEN.size or not blob.startswith(MAGIC):
        raise InputFormatError("not a stored task input")
    (n,) = _LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if start + n > len(blob):
        raise InputFormatError("truncated task input header")
    try:
        header = json.loads(blob[start : start + n])
    except ValueError:
        raise InputFormatError("corrupt task input header") from None
    if not isinstance(header, dict):
        raise InputFormatError("corrupt task input header")
    return header, start + n


def decode_input(blob: bytes) -> StoredRequest:
    """The request again; file parts are written to a fresh temporary directory."""
    header, pos = _header(bytes(blob))
    view = memoryview(blob)

    def take(n: Any) -> bytes:
        nonlocal pos
        if not isinstance(n, int) or n < 0 or pos + n > len(view):
            raise InputFormatError("task input shorter than its header says")
        out = bytes(view[pos : pos + n])
        pos += n
        return out

    head = take(header.get("head", 0))
    body_len = header.get("body", -1)
    body = None if body_len == -1 else take(body_len)
    parts_meta = header.get("parts")
    temp_dir: str | None = None
    parts: list[tuple[Any, ...]] | None = None
    try:
        if parts_meta is not None:
            if not isinstance(parts_meta, list) or len(parts_meta) > MAX_PARTS:
                raise InputFormatError("corrupt task input parts")
            temp_dir = tempfile.mkdtemp(prefix="bentohost-task-")
            parts = []
            for i, item in enumerate(parts_meta):
                name, filename, ctype, is_file, n, base = item
                content = take(n)
                if is_file:
                    folder = os.path.join(temp_dir, str(i))
                    os.mkdir(folder)
                    path = os.path.join(folder, os.path.basename(base or "") or "file")
                    with open(path, "wb") as f:
                        f.write(content)
                    parts.append((name, filename, ctype, path, None))
                else:
                    parts.append((name, filename, ctype, None, content))
    except BaseException:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    meta = (head, header.get("client"), temp_dir, parts)
    return StoredRequest(body, header.get("ct"), meta, temp_dir)
