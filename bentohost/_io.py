"""Input models inferred from signatures, request decoding, output encoding, error bodies.

Request bodies (BentoML 1.4 wire format, plus one bentohost extension):

* ``application/json`` (or no/unknown content type): an object with one key per
  parameter, or the bare value for a positional-only (root) parameter.
* ``multipart/form-data``: the C host has already parsed the parts; file parts become
  ``pathlib.Path`` / ``PIL.Image.Image`` values, every other part is ``json.loads``-ed
  with a fallback to the raw string; list fields take all parts, others the first.
* Root ``str``/``bytes``/file/image inputs take the raw body.
* **numpy fast path** (bentohost extension): an ``np.ndarray`` input (a root input, or
  the only parameter of the API) may be sent as ``application/octet-stream`` (the raw
  buffer of the declared dtype, reshaped to the declared ``Shape`` or 1-D) or as
  ``application/x-npy`` (``np.save`` bytes). The array is ``np.frombuffer`` over the
  body handed over by C -- no JSON and no copy -- and is therefore read-only.
"""

from __future__ import annotations

import inspect
import json
import logging
import mimetypes
import os
import tempfile
import typing
import urllib.parse
from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError
from pydantic.errors import PydanticSchemaGenerationError
from pydantic_core import to_jsonable_python

from ._types import (
    OCTET_STREAM,
    TypeKind,
    Upload,
    adapt,
    classify,
    content_type_matches,
    content_type_of,
    contains_kind,
    is_list_annotation,
    is_str_annotation,
    load_npy_or_raw,
    strip_annotated,
    validation_error,
)
from .exceptions import BentoMLException

__all__ = [
    "InputSpec",
    "build_input",
    "make_encoder",
    "make_item_encoder",
    "error_response",
    "build_headers",
    "Refused",
    "TEXT_PLAIN",
    "APPLICATION_JSON",
    "EVENT_STREAM",
]

logger = logging.getLogger("bentohost")

TEXT_PLAIN = "text/plain; charset=utf-8"
APPLICATION_JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"
NPY = "application/x-npy"
PICKLE = "application/vnd.bentoml+pickle"
MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"

_GENERIC_500 = b'{"error":"An unexpected error has occurred, please check the server log."}'
_AUTH_ERROR = b'{"error":"Authorization error"}'

#: ``(status, content_type, body, extra_headers or None)``
Response = tuple[int, str, bytes, "str | None"]

_EMPTY = inspect.Parameter.empty
_FILE_KINDS = frozenset({"file", "image"})


class Refused(Exception):
    """Raised while decoding to answer with a fixed response (e.g. 415)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response[2])
        self.response = response


class RootInputError(Exception):
    """A ``ValidationError`` of a root (positional-only) input, reported with BentoML's locations."""

    def __init__(self, error: ValidationError, loc_prefix: tuple[str, ...]) -> None:
        super().__init__(str(error))
        self.error = error
        self.loc_prefix = loc_prefix


_PICKLE_REFUSED: Response = (
    415,
    APPLICATION_JSON,
    b'[{"error":"application/vnd.bentoml+pickle is not allowed in main server"}]',
    None,
)


# --------------------------------------------------------------------------- inputs


class InputSpec:
    """How to turn a request into call arguments for one API.

    ``kind``: ``"none"`` (no parameters), ``"object"`` (one key per parameter),
    ``"raw"`` (root ``str``/``bytes``: the body itself), ``"root"`` (root value as JSON),
    ``"root_tensor"`` (root ndarray: JSON or the numpy fast path), ``"root_file"`` (root
    ``Path``: the body written to a temporary file) or ``"root_image"`` (root PIL image).
    """

    __slots__ = (
        "model",
        "kind",
        "var_positional",
        "var_keyword",
        "param_names",
        "simple",
        "needs_scope",
        "list_fields",
        "str_fields",
        "tensor_field",
        "json_rows",
        "root_info",
        "root_ct",
        "fields",
        "field_kinds",
        "root_loc",
    )

    def __init__(
        self,
        model: type[BaseModel] | None,
        kind: str,
        param_names: tuple[str, ...] = (),
        var_positional: str | None = None,
        var_keyword: str | None = None,
    ) -> None:
        self.model = model
        self.kind = kind
        self.param_names = param_names
        self.var_positional = var_positional
        self.var_keyword = var_keyword
        self.simple = var_positional is None and var_keyword is None
        self.needs_scope = kind == "root_file"
        self.list_fields: frozenset[str] = frozenset()
        self.str_fields: frozenset[str] = frozenset()
        self.tensor_field: tuple[str, TypeKind] | None = None
        #: (field or None for a root array, dtype kind, itemsize, dtype) when C reads the JSON array
        self.json_rows: tuple[str | None, str, int, str] | None = None
        self.root_info: TypeKind | None = None
        self.root_ct: str | None = None
        #: parameter name -> original annotation (for schemas and multipart)
        self.fields: dict[str, Any] = {}
        #: parameter names whose type is a file or an image (or a list/Optional of them)
        self.field_kinds: dict[str, str] = {}
        #: prefix of error locations of a root input (BentoML's IORootModel reports ``("root", ...)``)
        self.root_loc: tuple[str, ...] = ()

    # -- JSON (the hot path)

    def decode(self, body: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate a JSON ``body``; returns ``(args, kwargs)`` for the call (self excluded).

        Raises pydantic ``ValidationError`` on bad input (malformed JSON included).
        """
        kind = self.kind
        if self.json_rows is not None and body:
            decoded = self._decode_json_rows(body)
            if decoded is not None:
                return decoded
        if kind == "object":
            m = self.model.model_validate_json(body or b"{}")  # type: ignore[union-attr]
            if self.simple:
                return (), dict(m.__dict__)
            return self._spread(dict(m.__dict__))
        if kind == "none":
            return (), {}
        model = self.model
        assert model is not None
        try:
            if kind == "raw" or kind == "root_image":
                return (model.model_validate(body).root,), {}  # type: ignore[attr-defined]
            return (model.model_validate_json(body).root,), {}  # type: ignore[attr-defined]
        except ValidationError as e:
            raise RootInputError(e, self.root_loc) from None

    def _decode_json_rows(self, body: bytes) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """The one array input read from the JSON body by C (csrc/python/json_rows.c), then
        validated as the JSON's list would be; None when C leaves the body to Python."""
        field, dkind, itemsize, dtype = self.json_rows  # type: ignore[misc]
        assert _json_rows is not None and self.model is not None
        rows = _json_rows(body, field, dkind, itemsize)
        if rows is None:
            return None
        import numpy as np

        arr = np.frombuffer(rows[0], dtype=dtype).reshape(rows[1])
        if field is not None:
            return (), dict(self.model.model_validate({field: arr}).__dict__)
        try:
            return (self.model.model_validate(arr).root,), {}  # type: ignore[attr-defined]
        except ValidationError as e:
            raise RootInputError(e, self.root_loc) from None

    def _spread(self, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args: tuple[Any, ...] = ()
        if self.var_positional is not None:
            args = tuple(kwargs.pop(self.var_positional))
            # positional parameters before *args must then go by position
            args = tuple(kwargs.pop(n) for n in self.param_names) + args
        if self.var_keyword is not None:
            kwargs.update(kwargs.pop(self.var_keyword))
        return args, kwargs

    # -- everything else

    def decode_other(
        self, body: bytes | None, content_type: str | None, meta: Any, scope: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Decode a non-JSON request (multipart, raw files, numpy buffers, ...).

        ``scope`` provides ``temp_dir`` for files that must be written to disk.
        """
        if self.kind in ("none", "object"):
            return self._decode_other(body, content_type, meta, scope)
        try:
            return self._decode_other(body, content_type, meta, scope)
        except ValidationError as e:
            raise RootInputError(e, self.root_loc) from None

    def _decode_other(
        self, body: bytes | memoryview | None, content_type: str | None, meta: Any, scope: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        mt = content_type.split(";", 1)[0].strip().lower() if content_type else APPLICATION_JSON
        if mt == PICKLE:
            raise Refused(_PICKLE_REFUSED)
        if body is None or mt == MULTIPART or mt == URLENCODED:
            parts = meta[3] if meta is not None and len(meta) > 3 else None
            if parts is None:
                parts = [
                    (k, None, None, None, v.encode())
                    for k, v in urllib.parse.parse_qsl((body or b"").decode("latin-1"), keep_blank_values=True)
                ]
            return self.decode_parts(parts, scope)
        kind = self.kind
        if kind == "root_file":
            if mt != APPLICATION_JSON and not content_type_matches(self.root_ct, mt):
                raise validation_error((), f"Invalid content type {mt}, expected {self.root_ct}", self.model.__name__)  # type: ignore[union-attr]
            return (self._write_temp(body, mt, None, scope),), {}
        if mt == OCTET_STREAM or mt == NPY:
            if kind == "root_tensor":
                info = self.root_info
                assert info is not None
                return (self._fast_array(body, info, mt, ()),), {}
            if self.tensor_field is not None:
                name, info = self.tensor_field
                return (), {name: self._fast_array(body, info, mt, (name,))}
        if body.__class__ is memoryview:  # a big octet-stream body, uncopied: bytes from here on
            body = bytes(body)
        return self.decode(body)  # type: ignore[arg-type]

    # -- python mode (the decoded payload of an ``application/vnd.bentoml+pickle`` request)

    def decode_python(self, payload: Any, scope: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate a python-mode payload (what a BentoML/bentohost caller pickles).

        ``payload`` is a dict of parameter name -> value (or the input model itself)
        for an object input, the bare value for a root input. Files arrive as their
        bytes and are written under ``scope.temp_dir``; images arrive as their bytes.
        Raises pydantic ``ValidationError`` (``RootInputError`` for root inputs).
        """
        kind = self.kind
        if kind == "none":
            return (), {}
        model = self.model
        assert model is not None
        if kind == "object":
            if isinstance(payload, model):
                m = payload
            else:
                if isinstance(payload, dict) and self.field_kinds:
                    payload = {
                        k: (self._files_from_wire(v, scope) if self.field_kinds.get(k) == "file" else v)
                        for k, v in payload.items()
                    }
                m = model.model_validate(payload)
            if self.simple:
                return (), dict(m.__dict__)
            return self._spread(dict(m.__dict__))
        try:
            if kind == "root_file":
                payload = self._files_from_wire(payload, scope, self.root_ct)
            return (model.model_validate(payload).root,), {}  # type: ignore[attr-defined]
        except ValidationError as e:
            raise RootInputError(e, self.root_loc) from None

    def _files_from_wire(self, value: Any, scope: Any, content_type: str | None = None) -> Any:
        """File bytes (or lists of them) written to temporary files; anything else unchanged."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._write_temp(value, content_type, None, scope)
        if isinstance(value, (list, tuple)):
            return [self._files_from_wire(v, scope, content_type) for v in value]
        return value

    @staticmethod
    def _fast_array(body: bytes | memoryview, info: TypeKind, mt: str, loc: tuple[Any, ...]) -> Any:
        try:
            return load_npy_or_raw(body, info.dtype, info.shape, mt)
        except ValueError as e:
            raise validation_error(loc, str(e)) from None

    @staticmethod
    def _write_temp(data: bytes | memoryview, content_type: str | None, filename: str | None, scope: Any) -> Any:
        from pathlib import Path

        suffix = ""
        if filename:
            suffix = os.path.splitext(os.path.basename(filename))[1]
        elif content_type:
            suffix = mimetypes.guess_extension(content_type) or ""
        fd, path = tempfile.mkstemp(suffix=suffix, dir=scope.temp_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return Path(path)

    def decode_parts(self, parts: list[Any], scope: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kind = self.kind
        if kind == "none":
            return (), {}
        if kind != "object":
            return self._decode_root_part(parts, scope)
        values: dict[str, Any] = {}
        lists = self.list_fields
        strs = self.str_fields
        for name, filename, ctype, path, data in parts:
            if path is not None or filename is not None:
                value: Any = Upload(path, filename, ctype, data)
            else:
                text = (data or b"").decode("utf-8", "replace")
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
                if name in strs and not isinstance(value, str):
                    value = text
            if name in lists:
                values.setdefault(name, []).append(value)
            elif name not in values:
                values[name] = value
        for name in lists:
            got = values.get(name)
            if got is not None and len(got) == 1 and isinstance(got[0], list):
                values[name] = got[0]  # one JSON-encoded list (what the BentoML client sends)
        m = self.model.model_validate(values)  # type: ignore[union-attr]
        return self._spread(dict(m.__dict__))

    def _decode_root_part(self, parts: list[Any], scope: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not parts:
            raise validation_error((), "the multipart body has no part")
        _name, filename, ctype, path, data = parts[0]
        kind = self.kind
        model = self.model
        assert model is not None
        if kind == "root_file":
            if not content_type_matches(self.root_ct, ctype):
                raise validation_error((), f"Invalid content type {ctype or OCTET_STREAM}, expected {self.root_ct}", model.__name__)
            if path is not None:
                from pathlib import Path

                return (Path(path),), {}
            return (self._write_temp(data or b"", ctype, filename, scope),), {}
        if kind == "root_image":
            return (model.model_validate(Upload(path, filename, ctype, data)).root,), {}  # type: ignore[attr-defined]
        raw = data if data is not None else Upload(path, filename, ctype, data).read()
        if kind == "raw":
            return (model.model_validate(raw).root,), {}  # type: ignore[attr-defined]
        if kind == "root_tensor" and (ctype in (OCTET_STREAM, NPY) or raw[:6] == b"\x93NUMPY"):
            info = self.root_info
            assert info is not None
            return (self._fast_array(raw, info, ctype or NPY, ()),), {}
        return (model.model_validate_json(raw).root,), {}  # type: ignore[attr-defined]


def _resolved_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        return dict(getattr(func, "__annotations__", {}))


def build_input(
    func: Callable[..., Any],
    input_spec: type[BaseModel] | None = None,
    ctx_param: str | None = None,
) -> InputSpec:
    """Infer the ``Input`` model of ``func`` (a function whose first parameter is ``self``)."""
    params = list(inspect.signature(func).parameters.values())[1:]
    params = [p for p in params if p.name != ctx_param]
    if input_spec is not None:
        spec = InputSpec(input_spec, "object", tuple(input_spec.model_fields))
        _describe_fields(spec, {n: f.annotation for n, f in input_spec.model_fields.items()})
        return spec
    if not params:
        return InputSpec(None, "none")
    hints = _resolved_hints(func)
    positional_only = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
    if positional_only:
        if len(params) != 1:
            raise TypeError(f"{func.__qualname__}: a positional-only (root) input must be the only parameter")
        p = positional_only[0]
        ann = hints.get(p.name, Any)
        root_type = adapt(ann)
        ns: dict[str, Any] = {"__module__": __name__, "__annotations__": {"root": root_type}}
        if p.default is not _EMPTY:
            ns["root"] = p.default
        # BentoML names the root model ``f"{type.__name__}IODescriptor"`` (the 400 body's title);
        # a pydantic model keeps its own fields, any other type reports locations under "root".
        is_model = isinstance(ann, type) and issubclass(ann, BaseModel)
        if is_model and ann.model_config.get("title"):
            root_name = str(ann.model_config["title"])
        else:
            root_name = f"{getattr(ann, '__name__', '')}IODescriptor"
        model = _make_model(lambda cfg: type(root_name, (RootModel,), {**ns, "model_config": cfg}))
        info = classify(ann)
        base = strip_annotated(ann)
        if base in (str, bytes):
            kind = "raw"
        elif info.kind in ("tensor",):
            kind = "root_tensor"
        elif info.kind == "file":
            kind = "root_file"
        elif info.kind == "image":
            kind = "root_image"
        else:
            kind = "root"
        spec = InputSpec(model, kind)
        spec.root_loc = () if is_model else ("root",)
        spec.root_info = info
        if kind == "root_tensor":
            spec.json_rows = _json_rows_plan(None, info)
        spec.root_ct = content_type_of(ann) or info.content_type
        spec.fields = {p.name: ann}
        return spec
    fields: dict[str, Any] = {}
    var_positional = var_keyword = None
    plain: list[str] = []
    originals: dict[str, Any] = {}
    for p in params:
        raw_ann = hints.get(p.name, Any) if p.annotation is not _EMPTY else Any
        ann = adapt(raw_ann)
        originals[p.name] = raw_ann
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            var_positional = p.name
            fields[p.name] = (list[ann], [])  # type: ignore[valid-type]
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = p.name
            fields[p.name] = (dict[str, ann], {})  # type: ignore[valid-type]
            continue
        if var_positional is None and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            plain.append(p.name)
        fields[p.name] = (ann, ... if p.default is _EMPTY else p.default)
    model = _make_model(lambda cfg: pydantic.create_model("Input", __config__=cfg, **fields))
    names = tuple(plain) if var_positional is not None else tuple(fields)
    spec = InputSpec(model, "object", names, var_positional, var_keyword)
    _describe_fields(spec, originals)
    return spec


def _describe_fields(spec: InputSpec, annotations: dict[str, Any]) -> None:
    spec.fields = dict(annotations)
    spec.list_fields = frozenset(n for n, a in annotations.items() if is_list_annotation(a))
    spec.str_fields = frozenset(n for n, a in annotations.items() if is_str_annotation(a))
    for n, a in annotations.items():
        if contains_kind(a, frozenset({"image"})):
            spec.field_kinds[n] = "image"
        elif contains_kind(a, frozenset({"file"})):
            spec.field_kinds[n] = "file"
    if len(annotations) == 1 and spec.simple:
        ((name, ann),) = annotations.items()
        info = classify(ann)
        if info.kind == "tensor":
            spec.tensor_field = (name, info)
            spec.json_rows = _json_rows_plan(name, info)


def _json_rows_plan(field: str | None, info: TypeKind) -> tuple[str | None, str, int, str] | None:
    """How C reads this array input from JSON, or None: no worker module, a dtype the
    batch decoder does not read (bentohost/_rows.py), or BENTOHOST_PYTHON_ROWS=1
    (Python's json for every array, for comparisons)."""
    from ._rows import DTYPES  # _rows imports this module

    if _json_rows is None or info.dtype not in DTYPES or os.environ.get("BENTOHOST_PYTHON_ROWS") == "1":
        return None
    import numpy as np

    dt = np.dtype(info.dtype)
    return field, dt.kind, dt.itemsize, info.dtype


def _make_model(factory: Callable[[ConfigDict], type[BaseModel]]) -> type[BaseModel]:
    try:
        return factory(ConfigDict())
    except PydanticSchemaGenerationError:
        return factory(ConfigDict(arbitrary_types_allowed=True))


# --------------------------------------------------------------------------- outputs


def _json_default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        if hasattr(obj, "detach"):  # torch tensors
            obj = obj.detach().cpu()
            tolist = obj.tolist
        return tolist()
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is not None and _is_dataframe(obj):
        return to_dict(orient="records")
    return to_jsonable_python(obj)


def _make_dumps() -> Callable[[Any], str]:
    """``json.dumps`` with the standard library's separators and ``_json_default``.

    One C encoder serves every call: ``JSONEncoder.encode`` builds a new one, and a dict
    for circular references, per call, which costs more than encoding a small answer.
    Without that dict a circular structure fails with RecursionError instead of
    ValueError: a 500 either way. The encoder keeps no state between calls, so the
    sync threads share it."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(default=_json_default).encode
    encode = make(None, _json_default, json.encoder.encode_basestring_ascii, None,
                  ": ", ", ", False, False, True)
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


_dumps = _make_dumps()

# In a worker numpy answers are written from the array's buffer (csrc/python/json_array.c);
# outside one (tools, in-process tests), or with BENTOHOST_PYTHON_JSON=1, json.dumps of tolist().
_ndarray_json: Callable[[Any], bytes | None] | None = None
# and JSON arrays for numpy inputs are read by C (csrc/python/json_rows.c)
_json_rows: Callable[[Any, str | None, str, int], Any] | None = None
try:
    from _bentohost import json_rows as _json_rows
except ImportError:
    pass
if os.environ.get("BENTOHOST_PYTHON_JSON") != "1":
    try:
        from _bentohost import ndarray_json as _ndarray_json
    except ImportError:
        pass


def dumps_json(value: Any) -> bytes:
    """JSON with stdlib separators; numpy arrays, models and dataclasses included."""
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return _dumps(value).encode()


_PLAIN_JSON = frozenset({list, dict, int, float, bool, type(None), tuple})

Encoded = tuple[str, bytes, "str | None"]


def _is_dataframe(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


def _is_pil(value: Any) -> bool:
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def with_charset(content_type: str) -> str:
    """Starlette's rule: a ``text/*`` media type without a charset gets ``; charset=utf-8``."""
    if content_type.startswith("text/") and "charset=" not in content_type.lower():
        return content_type + "; charset=utf-8"
    return content_type


def make_encoder(return_annotation: Any) -> Callable[[Any], Encoded]:
    """Encoder ``value -> (content_type, body, extra_headers)`` for an API's declared return type."""
    declared = content_type_of(return_annotation)
    if declared:
        declared = with_charset(declared)
    info = classify(return_annotation)
    json_ct = declared or APPLICATION_JSON
    text_ct = declared or TEXT_PLAIN
    bytes_ct = declared or TEXT_PLAIN
    orient = info.orient if info.kind == "dataframe" else "records"
    file_ct = declared or info.content_type

    def encode(value: Any) -> Encoded:
        cls = type(value)
        if cls is str:
            return text_ct, value.encode(), None
        if cls in _PLAIN_JSON:
            return json_ct, _dumps(value).encode(), None
        if cls is bytes:
            return bytes_ct, value, None
        if isinstance(value, BaseModel):
            return json_ct, value.model_dump_json().encode(), None
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            if isinstance(value, str):
                return text_ct, value.encode(), None
            return bytes_ct, bytes(value), None
        if isinstance(value, os.PathLike):
            return encode_path(value, file_ct)
        if _is_dataframe(value):
            return json_ct, _dumps(value.to_dict(orient="list" if orient == "columns" else "records")).encode(), None
        if _is_pil(value):
            return encode_image(value, declared)
        if _ndarray_json is not None and cls.__name__ == "ndarray" and cls.__module__ == "numpy":
            text = _ndarray_json(value)  # None for dtypes and layouts it does not write
            if text is not None:
                return json_ct, text, None
        return json_ct, _dumps(value).encode(), None

    return encode


def make_item_encoder() -> Callable[[Any], bytes | str]:
    """Encoder of one streamed item: str/bytes raw (``str`` is handed to C as is), anything else JSON."""

    def encode_item(value: Any) -> bytes | str:
        cls = type(value)
        if cls is str or cls is bytes:
            return value
        if isinstance(value, str):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return dumps_json(value)

    return encode_item


def _disposition(kind: str, filename: str) -> str:
    """Starlette ``FileResponse``: ``filename="name"`` when ``quote(name)`` leaves it unchanged,
    else ``filename*=utf-8''<quoted>`` (e.g. ``a b.txt`` -> ``filename*=utf-8''a%20b.txt``)."""
    quoted = urllib.parse.quote(filename)
    if quoted != filename:
        return f"{kind}; filename*=utf-8''{quoted}"
    return f'{kind}; filename="{filename}"'


def encode_path(value: Any, declared: str | None) -> Encoded:
    path = os.fspath(value)
    with open(path, "rb") as f:
        data = f.read()
    guessed = mimetypes.guess_type(path)[0]
    ctype = guessed or (declared.split(";", 1)[0].strip() if declared else None) or OCTET_STREAM
    kind = "inline" if ctype.startswith("image") else "attachment"
    return with_charset(ctype), data, "content-disposition: " + _disposition(kind, os.path.basename(path)) + "\r\n"


_PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}


def encode_image(img: Any, declared: str | None) -> Encoded:
    import io

    fmt = img.format or "PNG"
    if declared and declared.startswith("image/"):
        sub = declared.split("/", 1)[1].split(";", 1)[0].strip().lower()
        fmt = _PIL_FORMATS.get(sub, fmt)
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, KeyError, ValueError):
        buf = io.BytesIO()
        fmt = "PNG"
        img.save(buf, format=fmt)
    return f"image/{fmt.lower()}", buf.getvalue(), None


def stream_content_type(return_annotation: Any) -> str:
    """Media type of a streaming API: a ``ContentType`` on the item type, else SSE."""
    base = strip_annotated(return_annotation)
    if typing.get_origin(base) is not None:
        args = typing.get_args(base)
        if args:
            declared = content_type_of(args[0])
            if declared:
                return declared  # bentohost extension (BentoML ignores a ContentType on the item type)
    declared = content_type_of(return_annotation)
    return with_charset(declared) if declared else EVENT_STREAM


# --------------------------------------------------------------------------- headers


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def header_line(name: str, value: Any) -> str:
    """``"Name: value\\r\\n"``; ``ValueError`` on names that are not tokens or values with CR/LF/NUL."""
    name = str(name)
    value = str(value)
    if not name or any(ch not in _TOKEN_CHARS for ch in name):
        raise ValueError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"invalid header value for {name!r}: CR, LF and NUL are not allowed")
    return f"{name}: {value.strip()}\r\n"


def build_headers(pairs: Any) -> str | None:
    """Header lines from ``(name, value)`` pairs; None when there are none."""
    out = "".join(header_line(n, v) for n, v in pairs)
    return out or None


# --------------------------------------------------------------------------- errors


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def validation_error_body(exc: ValidationError, loc_prefix: tuple[str, ...] = ()) -> bytes:
    n = exc.error_count()
    detail = exc.errors(include_input=False, include_context=False)
    if loc_prefix:
        for err in detail:
            err["loc"] = (*loc_prefix, *err["loc"])
    return _compact({"error": f"{n} validation error for {exc.title}", "detail": detail})


def error_response(exc: BaseException) -> Response:
    """Map an exception raised while serving a request to ``(status, content_type, body, None)``."""
    if isinstance(exc, ValidationError):
        return 400, APPLICATION_JSON, validation_error_body(exc), None
    if isinstance(exc, RootInputError):
        return 400, APPLICATION_JSON, validation_error_body(exc.error, exc.loc_prefix), None
    if isinstance(exc, Refused):
        return exc.response
    if isinstance(exc, BentoMLException):
        code = int(exc.error_code)
        if code in (401, 403):
            return code, APPLICATION_JSON, _AUTH_ERROR, None
        if 400 <= code < 500:
            return code, APPLICATION_JSON, _compact([{"error": exc.message or str(exc)}]), None
        logger.error("Exception on request (status %d)", code, exc_info=exc)
        return (code if code >= 500 else 500), APPLICATION_JSON, _GENERIC_500, None
    logger.error("Exception on request", exc_info=exc)
    return 500, APPLICATION_JSON, _GENERIC_500, None


INTERNAL_ERROR: Response = (500, APPLICATION_JSON, _GENERIC_500, None)
