"""Input models inferred from signatures, request decoding, output encoding, error bodies."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import typing
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, PlainValidator, RootModel, ValidationError, WithJsonSchema
from pydantic.errors import PydanticSchemaGenerationError
from pydantic_core import to_jsonable_python

from .exceptions import BentoMLException
from .validators import ContentType, DType, Shape

__all__ = [
    "InputSpec",
    "build_input",
    "make_encoder",
    "make_item_encoder",
    "error_response",
    "TEXT_PLAIN",
    "APPLICATION_JSON",
    "EVENT_STREAM",
]

logger = logging.getLogger("bentohost")

TEXT_PLAIN = "text/plain; charset=utf-8"
APPLICATION_JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"
OCTET_STREAM = "application/octet-stream"

_GENERIC_500 = b'{"error":"An unexpected error has occurred, please check the server log."}'
_AUTH_ERROR = b'{"error":"Authorization error"}'

Response = tuple[int, str, bytes]

_EMPTY = inspect.Parameter.empty
_CTX_NAMES = ("ctx", "context")


# --------------------------------------------------------------------------- inputs


class InputSpec:
    """How to turn a request body into call arguments for one API.

    ``kind`` is ``"none"`` (no parameters), ``"root"`` (the body is the bare value of
    one positional-only parameter), ``"raw"`` (root ``str``/``bytes``: the body itself,
    validated in python mode) or ``"object"`` (a JSON object, one key per parameter).
    """

    __slots__ = ("model", "kind", "var_positional", "var_keyword", "param_names", "simple")

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

    def decode(self, body: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate ``body``; returns ``(args, kwargs)`` for the call (self excluded).

        Raises pydantic ``ValidationError`` on bad input (malformed JSON included).
        """
        kind = self.kind
        if kind == "none":
            return (), {}
        model = self.model
        assert model is not None
        if kind == "object":
            m = model.model_validate_json(body or b"{}")
            values = m.__dict__
            if self.simple:
                return (), dict(values)
            kwargs = dict(values)
            args: tuple[Any, ...] = ()
            if self.var_positional is not None:
                args = tuple(kwargs.pop(self.var_positional))
                # positional parameters before *args must then go by position
                args = tuple(kwargs.pop(n) for n in self.param_names) + args
            if self.var_keyword is not None:
                kwargs.update(kwargs.pop(self.var_keyword))
            return args, kwargs
        if kind == "raw":
            return (model.model_validate(body).root,), {}  # type: ignore[attr-defined]
        return (model.model_validate_json(body).root,), {}  # type: ignore[attr-defined]


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
        return InputSpec(input_spec, "object", tuple(input_spec.model_fields))
    if not params:
        return InputSpec(None, "none")
    hints = _resolved_hints(func)
    positional_only = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
    if positional_only:
        if len(params) != 1:
            raise TypeError(
                f"{func.__qualname__}: a positional-only (root) input must be the only parameter"
            )
        p = positional_only[0]
        ann = hints.get(p.name, Any)
        root_type = _adapt(ann)
        ns: dict[str, Any] = {"__module__": __name__, "__annotations__": {"root": root_type}}
        if p.default is not _EMPTY:
            ns["root"] = p.default
        model = _make_model(lambda cfg: type("Input", (RootModel,), {**ns, "model_config": cfg}))
        base = _strip_annotated(ann)
        kind = "raw" if base in (str, bytes) else "root"
        return InputSpec(model, kind)
    fields: dict[str, Any] = {}
    var_positional = var_keyword = None
    plain: list[str] = []
    for p in params:
        ann = _adapt(hints.get(p.name, Any))
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
    return InputSpec(model, "object", names, var_positional, var_keyword)


def _make_model(factory: Callable[[ConfigDict], type[BaseModel]]) -> type[BaseModel]:
    try:
        return factory(ConfigDict())
    except PydanticSchemaGenerationError:
        return factory(ConfigDict(arbitrary_types_allowed=True))


def _strip_annotated(ann: Any) -> Any:
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    return ann


def _content_type_of(ann: Any) -> str | None:
    if get_origin(ann) is Annotated:
        for meta in ann.__metadata__:
            if isinstance(meta, ContentType):
                return meta.content_type
    return None


def _adapt(ann: Any) -> Any:
    """Map tensor annotations to validators that build arrays from nested lists."""
    if ann is _EMPTY:
        return Any
    meta: tuple[Any, ...] = ()
    base = ann
    if get_origin(ann) is Annotated:
        base, *rest = get_args(ann)
        meta = tuple(rest)
    origin = get_origin(base) or base
    np = sys.modules.get("numpy")
    if np is not None and origin is np.ndarray:
        dtype: Any = None
        shape: tuple[int, ...] | None = None
        for m in meta:
            if isinstance(m, DType):
                dtype = m.dtype
            elif isinstance(m, Shape):
                shape = tuple(m.dimensions)
        if dtype is None:
            args = get_args(base)
            if len(args) == 2 and get_args(args[1]):
                dtype = get_args(args[1])[0]
        return Annotated[
            Any,
            PlainValidator(_ndarray_validator(np, dtype, shape)),
            WithJsonSchema({"type": "tensor", "format": "numpy-array"}),
        ]
    if isinstance(origin, type) and origin.__name__ == "Tensor" and origin.__module__.startswith("torch"):
        torch = sys.modules["torch"]
        return Annotated[
            Any,
            PlainValidator(lambda v: v if isinstance(v, torch.Tensor) else torch.tensor(v)),
            WithJsonSchema({"type": "tensor", "format": "torch-tensor"}),
        ]
    return ann


def _ndarray_validator(np: Any, dtype: Any, shape: tuple[int, ...] | None) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        try:
            arr = np.asarray(value, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise ValueError(f"cannot convert input to a numpy array: {e}") from None
        if arr.dtype == object:
            raise ValueError("input is not a numeric array")
        if shape is not None:
            try:
                arr = arr.reshape(shape)
            except ValueError as e:
                raise ValueError(str(e)) from None
        return arr

    return validate


# --------------------------------------------------------------------------- outputs


def _json_default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        if hasattr(obj, "detach"):  # torch tensors
            obj = obj.detach().cpu()
            tolist = obj.tolist
        return tolist()
    return to_jsonable_python(obj)


_dumps = json.JSONEncoder(default=_json_default).encode


def dumps_json(value: Any) -> bytes:
    """JSON with stdlib separators; numpy arrays, models and dataclasses included."""
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return _dumps(value).encode()


_PLAIN_JSON = frozenset({list, dict, int, float, bool, type(None), tuple})


def make_encoder(return_annotation: Any) -> Callable[[Any], tuple[str, bytes]]:
    """Encoder ``value -> (content_type, body)`` for an API's declared return type."""
    declared = _content_type_of(return_annotation)
    json_ct = declared or APPLICATION_JSON
    text_ct = declared or TEXT_PLAIN
    bytes_ct = declared or TEXT_PLAIN

    def encode(value: Any) -> tuple[str, bytes]:
        cls = type(value)
        if cls is str:
            return text_ct, value.encode()
        if cls is bytes:
            return bytes_ct, value
        if cls in _PLAIN_JSON:
            return json_ct, _dumps(value).encode()
        if isinstance(value, BaseModel):
            return json_ct, value.model_dump_json().encode()
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            if isinstance(value, str):
                return text_ct, value.encode()
            return bytes_ct, bytes(value)
        if _is_path(value):
            return _encode_path(value, declared)
        return json_ct, _dumps(value).encode()

    return encode


def make_item_encoder() -> Callable[[Any], bytes]:
    """Encoder of one streamed item: str/bytes raw, anything else JSON."""

    def encode_item(value: Any) -> bytes:
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return dumps_json(value)

    return encode_item


def _is_path(value: Any) -> bool:
    return isinstance(value, os.PathLike)


def _encode_path(value: Any, declared: str | None) -> tuple[str, bytes]:
    import mimetypes

    path = os.fspath(value)
    with open(path, "rb") as f:
        data = f.read()
    guessed = mimetypes.guess_type(path)[0]
    return (guessed or declared or OCTET_STREAM), data


def stream_content_type(return_annotation: Any) -> str:
    """Media type of a streaming API: a ``ContentType`` on the item type, else SSE."""
    ann = return_annotation
    origin = get_origin(_strip_annotated(ann))
    if origin is not None:
        args = get_args(_strip_annotated(ann))
        if args:
            declared = _content_type_of(args[0])
            if declared:
                return declared
    return _content_type_of(ann) or EVENT_STREAM


# --------------------------------------------------------------------------- errors


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def validation_error_body(exc: ValidationError) -> bytes:
    n = exc.error_count()
    detail = exc.errors(include_input=False, include_context=False)
    return _compact({"error": f"{n} validation error for {exc.title}", "detail": detail})


def error_response(exc: BaseException) -> Response:
    """Map an exception raised while serving a request to ``(status, content_type, body)``."""
    if isinstance(exc, ValidationError):
        return 400, APPLICATION_JSON, validation_error_body(exc)
    if isinstance(exc, BentoMLException):
        code = int(exc.error_code)
        if code in (401, 403):
            return code, APPLICATION_JSON, _AUTH_ERROR
        if 400 <= code < 500:
            return code, APPLICATION_JSON, _compact([{"error": exc.message or str(exc)}])
        logger.error("Exception on request (status %d)", code, exc_info=exc)
        return code if code >= 500 else 500, APPLICATION_JSON, _GENERIC_500
    logger.error("Exception on request", exc_info=exc)
    return 500, APPLICATION_JSON, _GENERIC_500
