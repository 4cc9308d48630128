"""Per-API request handling: decode the body, call the method, encode the result.

Nothing here needs the C host, so it can be unit-tested in plain Python. The
streaming and batching drivers that talk to the host live in ``_worker``.

``application/vnd.bentoml+pickle`` requests (service-to-service calls) are decoded
with ``_pickle`` and answered in pickle only after ``set_pickle_allowed(True)`` (the
worker calls it for services on the graph's private Unix sockets) or, signed,
after ``set_pickle_key(key)`` (loopback TCP pools, public ports given a graph
secret: ``_signing``); a pickle answer to a signed request is signed too.
Otherwise they get 415 and the body is never unpickled.
"""

from __future__ import annotations

import asyncio
import json
import os
import typing
from collections.abc import Callable
from typing import Any

from . import _pickle, _signing
from ._api import APIMethod
from ._context import Context
from ._io import (
    _PICKLE_REFUSED,
    Encoded,
    InputSpec,
    APPLICATION_JSON,
    Refused,
    Response,
    build_headers,
    build_input,
    error_response,
    make_encoder,
    make_item_encoder,
    stream_content_type,
)
from ._rows import rows_spec
from ._service import Service
from .exceptions import BadInput

__all__ = [
    "Endpoint",
    "build_endpoints",
    "handle_request",
    "handle_request_async",
    "concat_batch",
    "split_batch",
    "set_pickle_allowed",
    "set_pickle_key",
    "pickle_allowed",
]

_pickle_allowed = False
#: when set, pickle is accepted only signed with it (and answered signed)
_pickle_key: bytes | None = None


def set_pickle_allowed(allowed: bool) -> None:
    """Accept ``application/vnd.bentoml+pickle`` requests in this process (default: refuse with 415).

    Only for a service whose socket is reachable by the services of its own graph:
    unpickling a body runs code chosen by whoever sent it.
    """
    global _pickle_allowed
    _pickle_allowed = bool(allowed)


def set_pickle_key(key: bytes | None) -> None:
    """Accept pickle only when the request is signed with ``key`` (None: back to
    ``set_pickle_allowed``'s rule); pickle answers to signed requests are signed."""
    global _pickle_key
    _pickle_key = key or None


def pickle_allowed() -> bool:
    return _pickle_allowed or _pickle_key is not None


def _refused(reason: str) -> Refused:
    message = f"{_pickle.PICKLE} refused: {reason}"
    return Refused((415, APPLICATION_JSON, json.dumps([{"error": message}]).encode(), None))


def _check_signature(key: bytes, body: bytes | memoryview, buffer_lengths: str | None, scope: Any) -> None:
    """``Refused`` (415) unless the request in ``scope`` is signed with ``key``.
    Batch members reach here without their head: unsigned, so refused."""
    request = getattr(scope, "request", None)
    try:
        if request is None:
            raise _signing.SignatureError(f"no {_signing.SIGNATURE_HEADER} header")
        _signing.check_request(
            key, request.headers.get(_signing.SIGNATURE_HEADER), request.method, str(request.url),
            (buffer_lengths or "").strip(), (body,),
        )
    except _signing.SignatureError as exc:
        raise _refused(f"{exc}; this port takes pickle only signed with the graph's key") from None


def _sign_answer(ctx: Context, out: bytes, headers: str) -> str:
    """The header lines of a pickle answer to a signed request, plus its own signature."""
    assert _pickle_key is not None
    v1 = _signing.request_v1(ctx.request.headers.get(_signing.SIGNATURE_HEADER))
    lengths = ""
    for line in headers.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == _pickle.BUFFER_LENGTHS:
            lengths = value.strip()
    seal = _signing.sign_response(_pickle_key, v1, lengths, (out,))
    return f"{headers}{_signing.SIGNATURE_HEADER}: {seal}\r\n"


# Framing headers belong to the C host.
_RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "content-type"})


def return_annotation(method: APIMethod) -> Any:
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
        "is_stream",
        "plain",
        "return_annotation",
        "batch_field",
        "batch_dim",
        "rows_dtype",
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
        self.is_stream = method.is_stream
        self.ctx_param = method.ctx_param
        self.input: InputSpec = build_input(method.func, method.input_spec, method.ctx_param)
        self.batch_field: str | None = None
        self.batch_dim = method.batch_dim
        spec = rows_spec(method)
        self.rows_dtype: str | None = spec["dtype"] if spec else None  # C decodes the batch input
        if method.batchable and self.input.kind != "none":
            if self.input.kind == "object":
                names = list(self.input.model.model_fields)  # type: ignore[union-attr]
                if len(names) != 1:
                    raise TypeError(f"batchable API {method.name!r} must take exactly one input parameter")
                self.batch_field = names[0]
        ret = return_annotation(method)
        self.return_annotation = ret
        self.encode = make_encoder(ret)
        self.encode_item = make_item_encoder()
        self.stream_ct = stream_content_type(ret)
        #: JSON requests need no Context and no temporary files: the fast path
        self.plain = self.ctx_param is None and not self.input.needs_scope
        self.call: Callable[..., Any] = _unbound

    def bind(self, instance: object) -> Endpoint:
        """Attach the service instance; the raw function is called (Field defaults come from the model)."""
        self.call = self.method.func.__get__(instance, type(instance))
        return self

    # -- decoding

    def prepare(
        self, body: bytes | None, content_type: str | None, meta: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any], Context]:
        """Decode a request that is not on the fast path; returns the call arguments and its Context.

        The caller must ``ctx.close()`` the context after the response (temp files).
        """
        ctx = Context(meta)
        try:
            if _pickle.is_pickle(content_type):
                args, kwargs = self.decode_pickle(body, ctx.request.headers.get(_pickle.BUFFER_LENGTHS), ctx)
            elif body is not None and (content_type is None or content_type.startswith("application/json")):
                if self.input.needs_scope:
                    args, kwargs = self.input.decode_other(body, content_type, meta, ctx)
                else:
                    args, kwargs = self.input.decode(body)
            else:
                args, kwargs = self.input.decode_other(body, content_type, meta, ctx)
        except BaseException:
            ctx.close()
            raise
        if self.ctx_param is not None:
            kwargs[self.ctx_param] = ctx
        return args, kwargs, ctx

    def decode_pickle(
        self, body: bytes | memoryview | None, buffer_lengths: str | None, scope: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Call arguments from a pickle body; 415 (``Refused``) unless pickle is allowed.

        The check comes first: a refused body is never handed to ``pickle``.
        """
        key = _pickle_key
        if key is not None:
            _check_signature(key, body if body is not None else b"", buffer_lengths, scope)
        elif not _pickle_allowed:
            raise Refused(_PICKLE_REFUSED)
        try:
            payload = _pickle.decode(body if body is not None else b"", buffer_lengths)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input
            raise BadInput(f"invalid {_pickle.PICKLE} body: {exc}") from None
        return self.input.decode_python(payload, scope)

    def encode_result(self, result: Any, content_type: str | None = None) -> Encoded:
        """``(content_type, body, headers)`` of a result, in pickle when the request was pickle.

        File and image results are raw bytes whatever the request was (as in BentoML).
        """
        if _pickle.is_pickle(content_type) and not (isinstance(result, os.PathLike) or _pickle.is_image(result)):
            parts, lengths = _pickle.encode(_pickle.to_wire(result))
            return _pickle.PICKLE, _pickle.join(parts), f"{_pickle.BUFFER_LENGTHS}: {lengths}\r\n"
        return self.encode(result)

    def finish(self, ctx: Context, result: Any, content_type: str | None = None) -> Response:
        """Encode ``result`` (for a request of ``content_type``) and apply what the API set on ``ctx.response``."""
        try:
            ctype, out, headers = self.encode_result(result, content_type)
            if _pickle_key is not None and ctype == _pickle.PICKLE and headers:
                headers = _sign_answer(ctx, out, headers)
            status, ctype, headers = self.apply_context(ctx, ctype, headers)
            return status, ctype, out, headers
        finally:
            ctx.close()

    def apply_context(self, ctx: Context, ctype: str, headers: str | None) -> tuple[int, str, str | None]:
        """Status, content type and extra header lines after ``ctx.response`` is applied."""
        if self.ctx_param is None:
            return 200, ctype, headers
        resp = ctx.response
        pairs = ctx.response_headers()
        if not pairs:
            return int(resp.status_code), ctype, headers
        extra = []
        for name, value in pairs:
            lname = name.lower()
            if lname in _RESERVED_HEADERS:
                if lname == "content-type":
                    ctype = str(value)
                continue
            extra.append((name, value))
        built = build_headers(extra)
        if headers and built:
            # user headers override generated ones of the same name
            names = {n.lower() for n, _ in extra}
            kept = "".join(
                line + "\r\n"
                for line in headers.split("\r\n")
                if line and line.split(":", 1)[0].strip().lower() not in names
            )
            built = kept + built
        elif headers:
            built = headers
        return int(resp.status_code), ctype, built

    # -- calls

    def run_sync(self, body: bytes | None, content_type: str | None = None, meta: Any = None) -> Response:
        """Handle a request to a ``def`` API; never raises."""
        try:
            if self.plain and meta is None and (content_type is None or content_type.startswith("application/json")):
                args, kwargs = self.input.decode(body)  # type: ignore[arg-type]
                ctype, out, headers = self.encode(self.call(*args, **kwargs))
                return 200, ctype, out, headers
            args, kwargs, ctx = self.prepare(body, content_type, meta)
        except Exception as exc:  # every request gets an answer
            return error_response(exc)
        try:
            result = self.call(*args, **kwargs)
            return self.finish(ctx, result, content_type)
        except Exception as exc:
            ctx.close()
            return error_response(exc)

    async def run_async(self, body: bytes | None, content_type: str | None = None, meta: Any = None) -> Response:
        """Handle a request to an ``async def`` API; never raises (but may be cancelled)."""
        try:
            if self.plain and meta is None and (content_type is None or content_type.startswith("application/json")):
                args, kwargs = self.input.decode(body)  # type: ignore[arg-type]
                ctype, out, headers = self.encode(await self.call(*args, **kwargs))
                return 200, ctype, out, headers
            args, kwargs, ctx = self.prepare(body, content_type, meta)
        except Exception as exc:
            return error_response(exc)
        try:
            result = await self.call(*args, **kwargs)
            return self.finish(ctx, result, content_type)
        except Exception as exc:
            return error_response(exc)
        finally:
            ctx.close()

    def open_stream(self, body: bytes | None, content_type: str | None, meta: Any) -> tuple[Any, Context]:
        """Decode and call a generator API: ``(generator, ctx)``; raises on bad input."""
        args, kwargs, ctx = self.prepare(body, content_type, meta)
        try:
            return self.call(*args, **kwargs), ctx
        except BaseException:
            ctx.close()
            raise

    def stream_head(self, ctx: Context) -> tuple[int, str, str | None]:
        """Status, media type and extra headers of a stream (after its first item)."""
        return self.apply_context(ctx, self.stream_ct, None)

    # -- batches

    def decode_member(self, body: bytes, content_type: str | None, buffer_lengths: str | None = None) -> Any:
        """The batchable input value of one batch member (raises on bad input).

        A pickle member without ``buffer_lengths`` must be one in-band pickle (what
        ``RemoteProxy`` sends to batchable APIs).
        """
        if _pickle.is_pickle(content_type):
            ctx = Context()
            try:
                args, kwargs = self.decode_pickle(body, buffer_lengths, ctx)
            finally:
                ctx.close()
        elif content_type is None or content_type.startswith("application/json"):
            args, kwargs = self.input.decode(body)
        else:
            args, kwargs, ctx = self.prepare(body, content_type, None)
            ctx.close()
        if args:
            return args[0]
        if self.batch_field is not None:
            return kwargs[self.batch_field]
        raise TypeError(f"batchable API {self.name!r} has no input")

    def call_batch(self, value: Any) -> Any:
        """Call the user function with the concatenated input (sync APIs; async ones are awaited by the caller)."""
        if self.batch_field is not None:
            kwargs: dict[str, Any] = {self.batch_field: value}
            if self.ctx_param is not None:
                kwargs[self.ctx_param] = Context()
            return self.call(**kwargs)
        if self.ctx_param is not None:
            return self.call(value, **{self.ctx_param: Context()})
        return self.call(value)


def batch_size(value: Any, axis: int) -> int:
    if isinstance(value, (list, tuple)):
        return len(value)
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            return int(shape[axis])
        except (IndexError, TypeError):
            return 1
    return 1


def concat_batch(values: list[Any], axis: int) -> tuple[Any, list[int]]:
    """Concatenate members' inputs along ``axis``; returns the batch and each member's size."""
    counts = [batch_size(v, axis) for v in values]
    first = values[0]
    if isinstance(first, (list, tuple)):
        out: list[Any] = []
        for v in values:
            out.extend(v)
        return out, counts
    cls = type(first)
    if cls.__module__ == "numpy" and cls.__name__ == "ndarray":
        import numpy as np

        return np.concatenate(values, axis=axis), counts
    if cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas"):
        import pandas as pd

        return pd.concat(values, ignore_index=True), counts
    if cls.__name__ == "Tensor" and cls.__module__.startswith("torch"):
        import torch

        return torch.cat(values, dim=axis), counts
    return list(values), [1] * len(values)


def split_batch(output: Any, counts: list[int], axis: int) -> list[Any]:
    """Split a batch output back into one value per member (by their sizes along ``axis``)."""
    total = sum(counts)
    parts: list[Any] = []
    start = 0
    if isinstance(output, (list, tuple)):
        if len(output) != total:
            raise ValueError(f"batch output has {len(output)} items, expected {total}")
        for c in counts:
            parts.append(output[start : start + c])
            start += c
        return parts
    shape = getattr(output, "shape", None)
    if shape is not None and hasattr(output, "iloc"):
        for c in counts:
            parts.append(output.iloc[start : start + c].reset_index(drop=True))
            start += c
        return parts
    if shape is not None:
        if int(shape[axis]) != total:
            raise ValueError(f"batch output has {shape[axis]} items along axis {axis}, expected {total}")
        for c in counts:
            index = [slice(None)] * len(shape)
            index[axis] = slice(start, start + c)
            parts.append(output[tuple(index)])
            start += c
        return parts
    raise TypeError(f"cannot split a batch output of type {type(output).__name__}")


def _unbound(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("endpoint is not bound to a service instance")


def build_endpoints(svc: Service[Any], instance: object | None = None) -> list[Endpoint]:
    """Endpoints in wire order (the order of ``svc.apis``), bound when ``instance`` is given."""
    eps = [Endpoint(m, i) for i, m in enumerate(svc.apis.values())]
    if instance is not None:
        for ep in eps:
            ep.bind(instance)
    return eps


def _collect_sync(api: Endpoint, body: bytes | None, content_type: str | None, meta: Any) -> Response:
    try:
        gen, ctx = api.open_stream(body, content_type, meta)
    except Exception as exc:
        return error_response(exc)
    try:
        out = b"".join(_as_bytes(api.encode_item(item)) for item in gen)
        status, ctype, headers = api.stream_head(ctx)
        return status, ctype, out, headers
    except Exception as exc:
        return error_response(exc)
    finally:
        ctx.close()


async def _collect_async(api: Endpoint, body: bytes | None, content_type: str | None, meta: Any) -> Response:
    try:
        agen, ctx = api.open_stream(body, content_type, meta)
    except Exception as exc:
        return error_response(exc)
    try:
        out = b"".join([_as_bytes(api.encode_item(item)) async for item in agen])
        status, ctype, headers = api.stream_head(ctx)
        return status, ctype, out, headers
    except Exception as exc:
        return error_response(exc)
    finally:
        ctx.close()


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def handle_request(
    api: Endpoint, body: bytes | None, content_type: str | None = None, meta: Any = None
) -> Response:
    """``(status, content_type, body, headers)`` for one request, without a server.

    Async APIs run on a fresh event loop; streams are collected into one body.
    """
    if api.mode == "gen":
        return _collect_sync(api, body, content_type, meta)
    if api.mode == "agen":
        return asyncio.run(_collect_async(api, body, content_type, meta))
    if api.is_async:
        return asyncio.run(api.run_async(body, content_type, meta))
    return api.run_sync(body, content_type, meta)


async def handle_request_async(
    api: Endpoint, body: bytes | None, content_type: str | None = None, meta: Any = None
) -> Response:
    if api.mode == "agen":
        return await _collect_async(api, body, content_type, meta)
    if api.mode == "gen":
        return _collect_sync(api, body, content_type, meta)
    if api.is_async:
        return await api.run_async(body, content_type, meta)
    return api.run_sync(body, content_type, meta)
