"""Framed streams between services: each item a caller's generator receives is
the item the dependency's generator yielded, whatever it holds.

BentoML sends a stream across a hop as its raw bytes, so items that are not
text arrive merged or split at random (BentoML #4489). A caller that asks for
frames with ``X-Bentohost-Stream: pickle`` (the graph's private sockets) or
``X-Bentohost-Stream: json`` (any bentohost server) gets one frame per item:

* ``application/vnd.bentohost.frames+pickle``: a 4-byte big-endian length, then
  the item pickled (protocol 5, in band), repeated;
* ``application/x-ndjson``: the item as one line of JSON.

Servers that do not know the header (``bentoml serve``) answer with their usual
stream; :class:`FrameDecoder` then hands the bytes on as they come, decoded as
text when the media type is text, as BentoML's client does.
"""

from __future__ import annotations

import codecs
import json
import pickle
import re
from collections.abc import Callable
from typing import Any

from ._io import dumps_json
from ._pickle import to_wire

__all__ = [
    "STREAM_HEADER",
    "FRAMES_PICKLE",
    "FRAMES_JSON",
    "requested_frames",
    "frame_encoder",
    "FrameDecoder",
]

STREAM_HEADER = "X-Bentohost-Stream"
FRAMES_PICKLE = "application/vnd.bentohost.frames+pickle"
FRAMES_JSON = "application/x-ndjson"
#: a frame longer than this is a broken stream, not an item
MAX_FRAME = 1 << 30

_REQUEST_RE = re.compile(rb"(?im)^" + STREAM_HEADER.encode() + rb":[ \t]*(pickle|json)[ \t]*\r?$")


def requested_frames(head: bytes | None) -> str | None:
    """The framed media type a request's head asks for, or None (a plain stream).

    Pickle frames are safe to send to anyone: only unpickling runs code, and a
    caller asks for them only from a dependency it trusts with its own pickles.
    """
    if not head:
        return None
    m = _REQUEST_RE.search(head)
    if m is None:
        return None
    return FRAMES_PICKLE if m.group(1).lower() == b"pickle" else FRAMES_JSON


def _pickle_frame(item: Any) -> bytes:
    data = pickle.dumps(to_wire(item), protocol=5)
    return len(data).to_bytes(4, "big") + data


def _json_frame(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        item = bytes(item).decode("utf-8", "replace")
    return dumps_json(item) + b"\n"


def frame_encoder(media_type: str) -> Callable[[Any], bytes]:
    """The encoder of one item for a framed media type."""
    return _pickle_frame if media_type == FRAMES_PICKLE else _json_frame


class FrameDecoder:
    """Items from a stream's bytes, fed as they arrive (``feed``), checked at the end (``close``)."""

    def __init__(self, content_type: str | None, allow_pickle: bool = False) -> None:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == FRAMES_PICKLE and not allow_pickle:
            # asked for JSON: a server answering pickle anyway gets nothing unpickled
            raise ConnectionError("the dependency answered a stream in pickle to a caller that asked for JSON")
        self.media = media
        self._buf = bytearray()
        self._text: codecs.IncrementalDecoder | None = None
        if media.startswith("text/") or media == "application/json":
            charset = re.search(r"charset=([\w-]+)", content_type or "", re.IGNORECASE)
            try:
                factory = codecs.getincrementaldecoder(charset.group(1) if charset else "utf-8")
            except LookupError:
                factory = codecs.getincrementaldecoder("utf-8")
            # a chunk boundary may cut a character: the decoder keeps its start
            self._text = factory(errors="replace")

    def feed(self, data: bytes) -> list[Any]:
        if self.media == FRAMES_PICKLE:
            return self._pickle_items(data)
        if self.media == FRAMES_JSON:
            return self._json_items(data)
        if not data:
            return []
        if self._text is not None:
            text = self._text.decode(data)
            return [text] if text else []
        return [data]

    def close(self) -> list[Any]:
        """The stream ended: what a text decoder still held; a frame cut short is an
        error (the dependency broke off)."""
        if self._buf:
            raise ConnectionError("the dependency's stream ended in the middle of an item")
        if self._text is not None:
            text = self._text.decode(b"", final=True)
            return [text] if text else []
        return []

    def _pickle_items(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        items: list[Any] = []
        pos = 0
        while len(buf) - pos >= 4:  # each turn takes one frame
            n = int.from_bytes(buf[pos : pos + 4], "big")
            if n > MAX_FRAME:
                raise ConnectionError("the dependency's stream has a frame too large to be an item")
            if len(buf) - pos - 4 < n:
                break
            with memoryview(buf) as view:  # released before the buffer is resized
                items.append(pickle.loads(view[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        del buf[:pos]
        return items

    def _json_items(self, data: bytes) -> list[Any]:
        buf = self._buf
        start = len(buf)
        buf += data
        items: list[Any] = []
        end = buf.rfind(b"\n", start)
        if end < 0:
            if len(buf) > MAX_FRAME:
                raise ConnectionError("the dependency's stream has a line too long to be an item")
            return items
        for line in bytes(buf[: end + 1]).split(b"\n")[:-1]:
            if line.strip():
                items.append(json.loads(line))
        del buf[: end + 1]
        return items
