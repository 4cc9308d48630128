"""Per-API request handling: decode the body, call the method, encode the result.

Nothing here needs the C host, so it can be unit-tested in plain Python.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable
from typing import Any

from ._api import APIMethod
from ._context import Context
from ._io import (
    APPLICATION_JSON,
    InputSpec,
    Response,
    build_input,
    error_response,
    make_encoder,
    make_item_encoder,
    stream_content_type,
)
from ._service import Service

__all__ = ["Endpoint", "build_endpoints", "handle_request", "handle_request_async"]

_PICKLE = "application/vnd.bentoml+pickle"
_PICKLE_REFUSED: Response = (
    415,
    APPLICATION_JSON,
    b'[{"error":"application/vnd.bentoml+pickle is not allowed in main server"}]',
)
_MULTIPART_REFUSED: Response = (
    415,
    APPLICATION_JSON,
    b'[{"error":"multipart and form bodies are not supported by bentohost yet"}]',
)


def _return_annotation(method: APIMethod) -> Any:
    if method.output_spec is not None:
        return method.output_spec
    try:
        hints = typing.get_type_hints(method.func, include_extras=True)
    except Exception:
        hints = dict(getattr(method.func, "__annotations__", {}))
    return hints.get("return", Any)


class Endpoint:
    """One API, prepared once per worker: everything the per-request path needs."""

    __slots__ = (
        "name",
        "index",
        "method",
        "mode",
        "input",
        "encode",
        "encode_item",
        "stream_ct",
        "ctx_param",
        "call",
        "is_async",
    )

    def __init__(self, method: APIMethod, index: int) -> None:
        self.name = method.name
        self.index = index
        self.method = method
        if method.is_async_gen:
            self.mode = "agen"
        elif method.is_coro:
            self.mode = "async"
        elif method.is_gen:
            self.mode = "gen"
        else:
            self.mode = "sync"
        self.is_async = method.is_async
        self.ctx_param = method.ctx_param
        self.input: InputSpec = build_input(method.func, method.input_spec, method.ctx_param)
        if method.batchable and self.input.kind != "none":
            n = 1 if self.input.kind != "object" else len(self.input.model.model_fields)  # type: ignore[union-attr]
            if n != 1:
                raise TypeError(f"batchable API {method.name!r} must take exactly one input parameter")
        ret = _return_annotation(method)
        self.encode = make_encoder(ret)
        self.encode_item = make_item_encoder()
        self.stream_ct = stream_content_type(ret)
        self.call: Callable[..., Any] = _unbound

    def bind(self, instance: object) -> Endpoint:
        """Attach the service instance; the raw function is called (Field defaults come from the model)."""
        self.call = self.method.func.__get__(instance, type(instance))
        return self

    def _check_content_type(self, content_type: str) -> Response | None:
        ct = content_type.split(";", 1)[0].strip().lower()
        if ct == _PICKLE:
            return _PICKLE_REFUSED
        if ct in ("multipart/form-data", "application/x-www-form-urlencoded") and self.input.kind == "object":
            return _MULTIPART_REFUSED
        return None

    def run_sync(self, body: bytes, content_type: str | None) -> Response:
        """Handle a request to a ``def`` (or sync generator) API; never raises."""
        try:
            if content_type is not None and not content_type.startswith("application/json"):
                refused = self._check_content_type(content_type)
                if refused is not None:
                    return refused
            args, kwargs = self.input.decode(body)
            ctx = None
            if self.ctx_param is not None:
                kwargs[self.ctx_param] = ctx = Context()
            result = self.call(*args, **kwargs)
            if self.mode == "gen":
                enc = self.encode_item
                out = b"".join([enc(item) for item in result])
                return _status(ctx), self.stream_ct, out
            ctype, out = self.encode(result)
            return _status(ctx), ctype, out
        except Exception as exc:  # every request gets an answer
            return error_response(exc)

    async def run_async(self, body: bytes, content_type: str | None) -> Response:
        """Handle a request to an ``async def`` (or async generator) API; never raises."""
        try:
            if content_type is not None and not content_type.startswith("application/json"):
                refused = self._check_content_type(content_type)
                if refused is not None:
                    return refused
            args, kwargs = self.input.decode(body)
            ctx = None
            if self.ctx_param is not None:
                kwargs[self.ctx_param] = ctx = Context()
            if self.mode == "agen":
                enc = self.encode_item
                out = b"".join([enc(item) async for item in self.call(*args, **kwargs)])
                return _status(ctx), self.stream_ct, out
            result = await self.call(*args, **kwargs)
            ctype, out = self.encode(result)
            return _status(ctx), ctype, out
        except Exception as exc:
            return error_response(exc)


def _status(ctx: Context | None) -> int:
    return 200 if ctx is None else int(ctx.response.status_code)


def _unbound(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("endpoint is not bound to a service instance")


def build_endpoints(svc: Service[Any], instance: object | None = None) -> list[Endpoint]:
    """Endpoints in wire order (the order of ``svc.apis``), bound when ``instance`` is given."""
    eps = [Endpoint(m, i) for i, m in enumerate(svc.apis.values())]
    if instance is not None:
        for ep in eps:
            ep.bind(instance)
    return eps


def handle_request(api: Endpoint, body: bytes, content_type: str | None = None) -> Response:
    """``(status, content_type, body)`` for one request (async APIs run on a fresh loop)."""
    if api.is_async:
        return asyncio.run(api.run_async(body, content_type))
    return api.run_sync(body, content_type)


async def handle_request_async(api: Endpoint, body: bytes, content_type: str | None = None) -> Response:
    if api.is_async:
        return await api.run_async(body, content_type)
    return api.run_sync(body, content_type)
