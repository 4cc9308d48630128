"""IO types beyond plain JSON: tensors, data frames, images, files.

Each annotation is turned, once per API, into a pydantic-compatible
``Annotated[Any, PlainValidator(...), WithJsonSchema(...)]`` whose JSON schema is the
one BentoML publishes in ``/schema.json`` (``type: tensor|dataframe|file``). numpy,
pandas, PIL and torch are only imported when a service's annotations name them (they
are found through ``sys.modules``: an annotation that uses them has imported them).
"""

from __future__ import annotations

import fnmatch
import io
import math
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import ValidationError

from .validators import ContentType, DataframeSchema, DType, Shape

__all__ = [
    "Upload",
    "TypeKind",
    "classify",
    "adapt",
    "validation_error",
    "is_list_annotation",
    "strip_annotated",
    "content_type_of",
    "OCTET_STREAM",
]

OCTET_STREAM = "application/octet-stream"

_UNION_TYPES: tuple[Any, ...] = (Union,)
try:  # ``X | None``
    import types as _types_mod

    _UNION_TYPES = (Union, _types_mod.UnionType)
except AttributeError:  # pragma: no cover
    pass


class Upload:
    """A file part of a multipart request: on disk when ``path`` is set, else its
    content (bytes, or a memoryview of what the host read when it was big)."""

    __slots__ = ("path", "filename", "content_type", "data")

    def __init__(self, path: str | None, filename: str | None, content_type: str | None,
                 data: bytes | memoryview | None) -> None:
        self.path = path
        self.filename = filename
        self.content_type = content_type
        self.data = data

    def read(self) -> bytes:
        if self.data is not None:
            return self.data if isinstance(self.data, bytes) else bytes(self.data)
        assert self.path is not None
        with open(self.path, "rb") as f:
            return f.read()

    def __repr__(self) -> str:
        return f"<Upload {self.filename!r} {self.content_type!r} path={self.path!r}>"

    def open(self) -> io.BufferedIOBase:
        """A binary file of the content, read in place (no copy of a big upload up front)."""
        if self.path is not None:
            return open(self.path, "rb")  # noqa: SIM115 - the caller (PIL) owns it
        if isinstance(self.data, memoryview):
            return io.BufferedReader(_ViewReader(self.data))
        return io.BytesIO(self.data or b"")


class _ViewReader(io.RawIOBase):
    """A seekable raw file over a memoryview: BytesIO would copy the whole view first."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view.cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        start = min(self._pos, len(self._view))
        n = min(len(b), len(self._view) - start)
        b[:n] = self._view[start:start + n]
        self._pos = start + n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def validation_error(loc: tuple[Any, ...], message: str, title: str = "Input") -> ValidationError:
    """A pydantic ``ValidationError`` (so the 400 body looks like any other)."""
    return ValidationError.from_exception_data(
        title, [{"type": "value_error", "loc": loc, "input": None, "ctx": {"error": ValueError(message)}}]
    )


def strip_annotated(ann: Any) -> Any:
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    return ann


def content_type_of(ann: Any) -> str | None:
    if get_origin(ann) is Annotated:
        for meta in ann.__metadata__:
            if isinstance(meta, ContentType):
                return meta.content_type
    return None


def _unwrap_optional(ann: Any) -> Any:
    ann = strip_annotated(ann)
    if get_origin(ann) in _UNION_TYPES:
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return strip_annotated(args[0])
    return ann


def is_list_annotation(ann: Any) -> bool:
    """``list[...]``/``tuple``/``set``/``Sequence`` (optionally Optional): takes every multipart part."""
    base = _unwrap_optional(ann)
    origin = get_origin(base) or base
    if origin in (list, tuple, set, frozenset):
        return True
    import collections.abc as cabc

    return origin in (cabc.Sequence, cabc.MutableSequence, cabc.Set, cabc.Iterable)


def is_str_annotation(ann: Any) -> bool:
    return _unwrap_optional(ann) is str


# --------------------------------------------------------------------------- classification


class TypeKind:
    """What a (stripped) annotation is, with its metadata."""

    __slots__ = ("kind", "base", "content_type", "dtype", "shape", "orient", "columns", "fmt")

    def __init__(self, kind: str, base: Any) -> None:
        self.kind = kind  # tensor | torch | dataframe | image | file | other
        self.base = base
        self.content_type: str | None = None
        self.dtype: str | None = None
        self.shape: tuple[int, ...] | None = None
        self.orient = "records"
        self.columns: tuple[str, ...] | None = None
        self.fmt = "numpy-array"


def _is_pil_image(origin: Any) -> bool:
    return isinstance(origin, type) and origin.__name__ == "Image" and origin.__module__.startswith("PIL")


def _is_torch_tensor(origin: Any) -> bool:
    return isinstance(origin, type) and origin.__name__ == "Tensor" and origin.__module__.startswith("torch")


def _is_ndarray(origin: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and origin is np.ndarray


def _is_dataframe(origin: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(origin, type) and issubclass(origin, pd.DataFrame)


def _dtype_name(dtype: Any) -> str | None:
    if dtype is None:
        return None
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            return str(np.dtype(dtype))
        except TypeError:
            pass
    name = getattr(dtype, "__name__", None) or str(dtype)
    return name.replace("torch.", "")


def classify(ann: Any) -> TypeKind:
    meta: tuple[Any, ...] = ()
    base = ann
    if get_origin(ann) is Annotated:
        base, *rest = get_args(ann)
        meta = tuple(rest)
        base = strip_annotated(base)
    origin = get_origin(base) or base
    info: TypeKind
    if _is_ndarray(origin):
        info = TypeKind("tensor", base)
        args = get_args(base)
        if len(args) == 2 and get_args(args[1]):  # NDArray[np.float32] = ndarray[Any, dtype[float32]]
            dt = get_args(args[1])[0]
            if not isinstance(dt, typing.TypeVar) and dt is not Any:
                info.dtype = _dtype_name(dt)
    elif _is_torch_tensor(origin):
        info = TypeKind("torch", base)
        info.fmt = "torch-tensor"
    elif _is_dataframe(origin):
        info = TypeKind("dataframe", base)
    elif _is_pil_image(origin):
        info = TypeKind("image", base)
    elif isinstance(origin, type) and issubclass(origin, PurePath):
        info = TypeKind("file", base)
    else:
        info = TypeKind("other", base)
    for m in meta:
        if isinstance(m, ContentType):
            info.content_type = m.content_type
        elif isinstance(m, DType):
            info.dtype = _dtype_name(m.dtype)
        elif isinstance(m, Shape):
            info.shape = tuple(int(d) for d in m.dimensions)
        elif isinstance(m, DataframeSchema):
            info.orient = m.orient
            info.columns = tuple(m.columns) if m.columns else None
    return info


def json_schema_of(info: TypeKind) -> dict[str, Any]:
    """The validation-mode schema BentoML publishes for a custom type."""
    if info.kind in ("tensor", "torch"):
        s: dict[str, Any] = {"type": "tensor", "format": info.fmt}
        if info.dtype:
            s["dtype"] = info.dtype
        if info.shape:
            s["shape"] = list(info.shape)
            s["dim"] = math.prod(info.shape)
        return s
    if info.kind == "dataframe":
        s = {"type": "dataframe", "orient": info.orient}
        if info.columns:
            s["columns"] = list(info.columns)
        return s
    if info.kind == "image":
        return {"type": "file", "format": "image", "pil": True}
    if info.kind == "file":
        if info.content_type:
            return {"type": "file", "format": info.content_type.split("/", 1)[0], "content_type": info.content_type}
        return {"type": "file", "format": "binary"}
    return {}


# --------------------------------------------------------------------------- validators


def _tensor_validator(info: TypeKind) -> Callable[[Any], Any]:
    dtype, shape = info.dtype, info.shape

    def validate(value: Any) -> Any:
        np = sys.modules["numpy"]
        if isinstance(value, Upload):
            value = load_npy_or_raw(value.read(), dtype, shape, "application/x-npy")
        try:
            arr = np.asarray(value, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise ValueError(f"cannot convert input to a numpy array: {e}") from None
        if arr.dtype == object:
            raise ValueError("input is not a numeric array")
        if shape is not None and arr.shape != shape:
            try:
                arr = arr.reshape(shape)
            except ValueError as e:
                raise ValueError(str(e)) from None
        return arr

    return validate


def _torch_validator(info: TypeKind) -> Callable[[Any], Any]:
    dtype, shape = info.dtype, info.shape

    def validate(value: Any) -> Any:
        torch = sys.modules["torch"]
        if isinstance(value, torch.Tensor):
            t = value
        else:
            try:
                t = torch.tensor(value, dtype=getattr(torch, dtype) if dtype else None)
            except (ValueError, TypeError, RuntimeError) as e:
                raise ValueError(f"cannot convert input to a tensor: {e}") from None
        if dtype is not None and str(t.dtype).replace("torch.", "") != dtype:
            t = t.to(getattr(torch, dtype))
        if shape is not None and tuple(t.shape) != shape:
            try:
                t = t.reshape(shape)
            except RuntimeError as e:
                raise ValueError(str(e)) from None
        return t

    return validate


def _dataframe_validator(info: TypeKind) -> Callable[[Any], Any]:
    columns = list(info.columns) if info.columns else None

    def validate(value: Any) -> Any:
        pd = sys.modules["pandas"]
        if isinstance(value, pd.DataFrame):
            return value
        if isinstance(value, list):
            if value and not isinstance(value[0], dict) and columns is None:
                raise ValueError("records input must be a list of objects")
            return pd.DataFrame(value, columns=columns)
        if isinstance(value, dict):
            df = pd.DataFrame(value)
            return df[columns] if columns and set(columns) <= set(df.columns) else df
        raise ValueError("a data frame must be a list of records or an object of columns")

    return validate


def _image_validator(info: TypeKind) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        from PIL import Image

        if isinstance(value, Image.Image):
            return value
        if isinstance(value, Upload):
            src: Any = value.path if value.path is not None else value.open()
        elif isinstance(value, (bytes, bytearray, memoryview)):
            src = io.BytesIO(value)
        elif isinstance(value, PurePath):
            src = os.fspath(value)
        else:
            raise ValueError("expected an image file")
        try:
            # Only the header is read here (format, size, mode): the pixels are
            # decoded when the method touches them, as with BentoML, so an API that
            # needs only the size or hands the file on never pays for decoding. The
            # file lives in the request's temp dir until the response is sent.
            img = Image.open(src)
        except Exception as e:  # noqa: BLE001 - any decoder failure is bad input
            raise ValueError(f"cannot read the image: {e}") from None
        return img

    return validate


def content_type_matches(pattern: str | None, content_type: str | None) -> bool:
    if not pattern:
        return True
    ct = (content_type or OCTET_STREAM).split(";", 1)[0].strip().lower()
    return fnmatch.fnmatch(ct, pattern.lower())


def _file_validator(info: TypeKind) -> Callable[[Any], Any]:
    pattern = info.content_type

    def validate(value: Any) -> Any:
        if isinstance(value, Upload):
            if not content_type_matches(pattern, value.content_type):
                raise ValueError(f"Invalid content type {value.content_type or OCTET_STREAM}, expected {pattern}")
            if value.path is None:
                raise ValueError("expected a file upload")
            return Path(value.path)
        if isinstance(value, PurePath):  # local calls pass paths through
            return Path(value)
        raise ValueError("expected a file upload")

    return validate


_VALIDATORS: dict[str, Callable[[TypeKind], Callable[[Any], Any]]] = {
    "tensor": _tensor_validator,
    "torch": _torch_validator,
    "dataframe": _dataframe_validator,
    "image": _image_validator,
    "file": _file_validator,
}


def adapt(ann: Any) -> Any:
    """Map an annotation to the one used in the input model (recursing into containers)."""
    import inspect

    if ann is inspect.Parameter.empty:
        return Any
    info = classify(ann)
    if info.kind != "other":
        return Annotated[Any, PlainValidator(_VALIDATORS[info.kind](info)), WithJsonSchema(json_schema_of(info))]
    base = info.base
    origin = get_origin(base)
    if origin is not None and origin is not Annotated:
        args = get_args(base)
        if args and (origin in (list, set, frozenset, tuple, *_UNION_TYPES) or _is_collection(origin)):
            new_args = tuple(adapt(a) if a is not Ellipsis else a for a in args)
            if new_args != args:
                try:
                    adapted = base.copy_with(new_args) if hasattr(base, "copy_with") else origin[new_args]
                except TypeError:
                    adapted = Union[new_args] if origin in _UNION_TYPES else base  # noqa: UP007
                if get_origin(ann) is Annotated:
                    return Annotated[(adapted, *ann.__metadata__)]
                return adapted
    return ann


def _is_collection(origin: Any) -> bool:
    import collections.abc as cabc

    return origin in (dict, cabc.Sequence, cabc.Mapping, cabc.MutableSequence)


def contains_kind(ann: Any, kinds: frozenset[str]) -> bool:
    """True when the annotation (or an Optional/list of it) is one of ``kinds``."""
    base = _unwrap_optional(ann)
    if classify(base).kind in kinds:
        return True
    origin = get_origin(base)
    if origin in (list, tuple, set, frozenset):
        return any(contains_kind(a, kinds) for a in get_args(base) if a is not Ellipsis)
    return False


# --------------------------------------------------------------------------- numpy fast path


def _npy_head(body: Any) -> io.BytesIO:
    """A reader of the .npy header: of the whole body when it is bytes (BytesIO shares
    them), else of the header's bytes only (BytesIO would copy a whole memoryview)."""
    if isinstance(body, bytes):
        return io.BytesIO(body)
    width = 2 if bytes(body[6:7]) == b"\x01" else 4  # header length field: v1 u16, v2/v3 u32
    end = 8 + width + int.from_bytes(bytes(body[8 : 8 + width]), "little")
    return io.BytesIO(bytes(body[:end]))


def load_npy_or_raw(body: Any, dtype: str | None, shape: tuple[int, ...] | None, content_type: str) -> Any:
    """An ndarray over ``body`` without copying it (read-only when ``body`` is ``bytes``).

    ``application/x-npy`` bodies are parsed from their header; any other content type
    (``application/octet-stream``) is the raw buffer of the declared dtype, reshaped to
    the declared shape (or 1-D). Raises ``ValueError`` on a malformed body.
    """
    np = sys.modules.get("numpy")
    if np is None:  # pragma: no cover - only reachable for ndarray annotations
        import numpy as np
    if content_type == "application/x-npy" or bytes(body[:6]) == b"\x93NUMPY":
        from numpy.lib import format as npy

        bio = _npy_head(body)
        try:
            version = npy.read_magic(bio)
            if version == (1, 0):
                hshape, fortran, hdtype = npy.read_array_header_1_0(bio)
            else:
                hshape, fortran, hdtype = npy.read_array_header_2_0(bio)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"malformed .npy body: {e}") from None
        if hdtype.hasobject:
            raise ValueError(".npy bodies with object arrays are not accepted")
        count = math.prod(hshape)
        try:
            arr = np.frombuffer(body, dtype=hdtype, count=count, offset=bio.tell())
        except ValueError as e:
            raise ValueError(f"malformed .npy body: {e}") from None
        arr = arr.reshape(hshape, order="F" if fortran else "C")
        if dtype is not None and arr.dtype != np.dtype(dtype):
            arr = arr.astype(dtype)
    else:
        if dtype is None:
            raise ValueError("application/octet-stream tensor input needs a declared dtype (DType or NDArray[...])")
        dt = np.dtype(dtype)
        if len(body) % dt.itemsize:
            raise ValueError(f"body length {len(body)} is not a multiple of the {dt} item size {dt.itemsize}")
        arr = np.frombuffer(body, dtype=dt)
    if shape is not None and arr.shape != shape:
        try:
            arr = arr.reshape(shape)
        except ValueError as e:
            raise ValueError(str(e)) from None
    return arr
