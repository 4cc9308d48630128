"""BentoML's ``application/vnd.bentoml+pickle`` wire codec (service-to-service calls only).

A payload is pickled with protocol 5. Buffers that support it (numpy arrays, and
anything else that hands pickle a ``PickleBuffer``) travel *out of band*: the body is
the main pickle followed by the raw buffers, and the ``buffer-lengths`` header lists
the sizes, main pickle first (``"<main>,<buf1>,<buf2>..."``).

:func:`decode` rebuilds the out-of-band buffers as ``memoryview`` slices of the body,
so a numpy array in the payload shares memory with the received body (read-only when
the body is ``bytes``).

Security: unpickling runs arbitrary code chosen by the sender. :func:`decode` must
only ever see bodies from peers that are trusted (the private sockets of one
service graph); ``_dispatch`` refuses pickle unless ``set_pickle_allowed(True)``.

Values are carried in pydantic *python* mode, as BentoML does: :func:`to_wire`
turns files (``pathlib.Path``) and PIL images into ``bytes`` and pydantic models
into dicts; the receiver validates the dict into its own model.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

__all__ = [
    "PICKLE",
    "BUFFER_LENGTHS",
    "encode",
    "decode",
    "parse_buffer_lengths",
    "is_pickle",
    "to_wire",
    "file_to_bytes",
    "image_to_bytes",
    "is_image",
    "join",
]

PICKLE = "application/vnd.bentoml+pickle"
#: header that carries the part sizes (lower case, as the transport hands headers over)
BUFFER_LENGTHS = "buffer-lengths"
PROTOCOL = 5

Parts = list["bytes | memoryview"]


def is_pickle(content_type: str | None) -> bool:
    """True for ``application/vnd.bentoml+pickle`` (parameters and case ignored)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == PICKLE


# --------------------------------------------------------------------------- codec


def encode(obj: Any, *, out_of_band: bool = True) -> tuple[Parts, str]:
    """Pickle ``obj``: ``(parts, buffer_lengths)``.

    ``parts[0]`` is the main pickle, the others are memoryviews of the out-of-band
    buffers (no copy: they keep their arrays alive); send them in order as one body.
    ``out_of_band=False`` keeps every buffer inside the main pickle (one part), which
    a receiver can decode without the header.
    """
    buffers: list[pickle.PickleBuffer] = []
    main = pickle.dumps(obj, protocol=PROTOCOL, buffer_callback=buffers.append if out_of_band else None)
    parts: Parts = [main]
    lengths = [len(main)]
    for buf in buffers:
        raw = buf.raw()  # 1-D unsigned bytes over the same memory (C or Fortran contiguous)
        parts.append(raw)
        lengths.append(raw.nbytes)
    return parts, ",".join(map(str, lengths))


def parse_buffer_lengths(value: str, total: int) -> list[int]:
    """The part sizes of a ``buffer-lengths`` header; ``ValueError`` unless they add up to ``total``."""
    try:
        lengths = [int(p) for p in value.split(",")]
    except ValueError:
        raise ValueError(f"malformed buffer-lengths header {value!r}") from None
    if not lengths or any(n < 0 for n in lengths):
        raise ValueError(f"malformed buffer-lengths header {value!r}")
    if sum(lengths) != total:
        raise ValueError(f"buffer-lengths {value!r} add up to {sum(lengths)} bytes, the body has {total}")
    return lengths


def _byte_view(body: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(body)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def decode(body: bytes | bytearray | memoryview, buffer_lengths: str | None) -> Any:
    """Unpickle a body built by :func:`encode` (or by BentoML); never copies the buffers.

    Without ``buffer_lengths`` the whole body is the main pickle (BentoML's rule).
    Raises ``ValueError`` on a header that does not match the body, and whatever
    ``pickle`` raises on a malformed pickle. Only call it on trusted bodies.
    """
    view = _byte_view(body)
    if not buffer_lengths or not buffer_lengths.strip():
        return pickle.loads(view)
    lengths = parse_buffer_lengths(buffer_lengths, view.nbytes)
    offset = lengths[0]
    main = view[:offset]
    buffers: list[memoryview] = []
    for n in lengths[1:]:
        buffers.append(view[offset : offset + n])
        offset += n
    return pickle.loads(main, buffers=buffers)


# --------------------------------------------------------------------------- python mode


def _pil_image_class() -> Any:
    mod = sys.modules.get("PIL.Image")
    return getattr(mod, "Image", None) if mod is not None else None


def is_image(value: Any) -> bool:
    cls = _pil_image_class()
    return cls is not None and isinstance(value, cls)


def image_to_bytes(img: Any) -> bytes:
    """The image re-encoded in its own format (PNG when it has none), as BentoML sends it."""
    buf = io.BytesIO()
    fmt = img.format or "PNG"
    try:
        img.save(buf, format=fmt)
    except (OSError, KeyError, ValueError):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    return buf.getvalue()


def file_to_bytes(value: Any) -> bytes:
    with open(os.fspath(value), "rb") as f:
        return f.read()


def _is_torch(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "Tensor" and cls.__module__.startswith("torch")


def to_wire(value: Any) -> Any:
    """``value`` in python mode, ready to pickle.

    pydantic models become dicts (``model_dump()``), files and images become their
    bytes, torch tensors numpy arrays (``.cpu().numpy()``); containers are walked;
    everything else (numpy arrays, data frames, scalars) is left as it is.
    """
    if isinstance(value, BaseModel):
        return _walk(value.model_dump())
    return _walk(value)


def _walk(value: Any) -> Any:
    cls = type(value)
    if cls in (str, bytes, int, float, bool, type(None)):
        return value
    if isinstance(value, BaseModel):
        return _walk(value.model_dump())
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_walk(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, os.PathLike):
        return file_to_bytes(value)
    if is_image(value):
        return image_to_bytes(value)
    if _is_torch(value):
        return value.detach().cpu().numpy()
    return value


def join(parts: Iterable[bytes | memoryview]) -> bytes:
    """One ``bytes`` body from :func:`encode`'s parts (one copy)."""
    return b"".join(parts)
