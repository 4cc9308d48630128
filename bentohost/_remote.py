"""Calls to a dependency served by other processes: ``RemoteProxy`` over a ``Transport``.

The worker wires it up (nothing here talks to the network itself):

* ``install_resolver(fn)``: ``fn(dependency) -> proxy | None`` is asked first when a
  ``depends(...)`` attribute is read; ``None`` falls back to the in-process instance.
* ``RemoteProxy(dep_service, transport)``: one per dependency per worker; the
  transport (the C client) implements ``Transport.call``.
* ``set_request_deadline(deadline)`` (a ``time.monotonic()`` value, or None) per
  request, in the context the API runs in (the task of an async API, the pool thread
  of a sync one); proxies send the time left as ``X-Bentohost-Deadline`` and never
  wait past it. ``deadline_from_header()`` turns the received header back into a
  deadline on the dependency's side. ``set_request_temp_dir(path)`` is where file
  outputs of dependencies are written (the request's temp dir; default: a directory
  of the proxy, removed by ``close()``).

Calls behave as in BentoML 1.4: an ``async def`` API of the dependency returns a
coroutine, a ``def`` API blocks (from sync APIs: it raises on the thread of a running
event loop, use ``await proxy.to_async.api(...)`` there); ``.to_async`` and
``.to_sync`` force one mode. A stream API (a generator) returns a generator of the
same kind, an async one an async generator; its items arrive as the dependency
yields them, one frame per item (``_frames.py``), with back-pressure, and closing it
early cancels the call (``_remote_stream.py``).

Errors: a dependency status >= 400 raises the ``bentohost.exceptions`` class mapped
to it (``InvalidArgument`` 400, ``NotFound`` 404, ``ServiceUnavailable`` 503, ...),
else ``BentoMLException`` with ``error_code`` = the status, so the status reaches the
caller's client unchanged (4xx with the dependency's message, 5xx with the generic
body). An unreachable dependency (``ConnectionError``) raises ``ServiceUnavailable``
(503); a call that runs out of time raises ``BentoMLException(error_code=504)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import io
import json
import math
import mimetypes
import os
import re
import shutil
import tempfile
import threading
import time
import typing
import urllib.parse
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Protocol

from pydantic import TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError

from . import _formdata, _pickle, _signing
from ._api import APIMethod
from ._dispatch import return_annotation
from ._frames import FRAMES_JSON, FRAMES_PICKLE, STREAM_HEADER, FrameDecoder
from ._io import APPLICATION_JSON, InputSpec, build_input, dumps_json
from ._modes import AsyncView, SyncView
from ._service import Dependency, Service
from ._types import OCTET_STREAM, adapt, classify, strip_annotated
from .exceptions import BentoMLException, ServiceUnavailable

__all__ = [
    "Transport",
    "TransportResult",
    "RemoteProxy",
    "Resolver",
    "install_resolver",
    "current_resolver",
    "set_request_deadline",
    "reset_request_deadline",
    "request_deadline",
    "deadline_from_header",
    "set_request_temp_dir",
    "reset_request_temp_dir",
    "DEADLINE_HEADER",
    "RUNNER_NAME_HEADER",
]

DEADLINE_HEADER = "X-Bentohost-Deadline"
RUNNER_NAME_HEADER = "Runner-Name"
#: BentoML's client timeout is the dependency's ``traffic.timeout`` times this
TIMEOUT_FACTOR = 1.01
DEFAULT_TIMEOUT = 60.0
#: extra wait past ``timeout`` before the proxy gives up on a transport that did not
_GRACE_S = 0.5
_MAX_MESSAGE = 4096

#: ``(status, headers with lower-case names, body)``
TransportResult = tuple[int, dict[str, str], bytes]


class Transport(Protocol):
    """What the worker provides: one HTTP request to one of a dependency's workers.

    ``call`` must not block: it returns a ``concurrent.futures.Future`` that resolves
    to ``(status, headers, body)`` (header names in lower case), or fails with
    ``ConnectionError`` when the dependency cannot be reached, or with
    ``TimeoutError`` when no response came within ``timeout`` seconds. The request is
    ``POST route`` with ``Content-Type: content_type``, the given extra ``headers`` and
    the concatenation of ``body`` (the transport adds ``Content-Length``). The proxy
    cancels the future when its caller gives up: the transport should then abort the
    request, and must tolerate setting the result of a cancelled future (check
    ``future.done()`` or catch ``InvalidStateError``).

    Optional: ``call_blocking(...)`` (same arguments) returns the result itself,
    for callers that block on it anyway; ``call_stream(..., timeout, deadline)``
    returns a ``_remote_stream.StreamCall`` for stream APIs.
    """

    def call(
        self,
        dependency: str,
        route: str,
        content_type: str,
        body: list[bytes | memoryview],
        headers: list[tuple[str, str]],
        timeout: float | None,
    ) -> concurrent.futures.Future[TransportResult]: ...


# --------------------------------------------------------------------------- resolver

Resolver = Callable[[Dependency[Any]], Any]

_resolver: Resolver | None = None


def install_resolver(fn: Resolver | None) -> Resolver | None:
    """Install the dependency resolver (None removes it); returns the previous one.

    Install it before the service instance is created: a dependency keeps what it
    resolved to (``Dependency.reset()`` forgets it).
    """
    global _resolver
    previous, _resolver = _resolver, fn
    return previous


def current_resolver() -> Resolver | None:
    return _resolver


# --------------------------------------------------------------------------- request scope

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("bentohost_deadline", default=None)
_temp_dir: contextvars.ContextVar[str | None] = contextvars.ContextVar("bentohost_remote_temp_dir", default=None)


def set_request_deadline(deadline: float | None) -> contextvars.Token[float | None]:
    """Set the current request's deadline (a ``time.monotonic()`` value; None: none)."""
    return _deadline.set(deadline)


def reset_request_deadline(token: contextvars.Token[float | None]) -> None:
    _deadline.reset(token)


def request_deadline() -> float | None:
    return _deadline.get()


def deadline_from_header(value: str | None, now: float | None = None) -> float | None:
    """The monotonic deadline an ``X-Bentohost-Deadline`` value (seconds left) stands for."""
    if not value:
        return None
    try:
        left = float(value)
    except ValueError:
        return None
    if math.isnan(left):
        return None
    return (time.monotonic() if now is None else now) + max(left, 0.0)


def set_request_temp_dir(path: str | None) -> contextvars.Token[str | None]:
    """Directory for files that dependencies return during the current request."""
    return _temp_dir.set(path)


def reset_request_temp_dir(token: contextvars.Token[str | None]) -> None:
    _temp_dir.reset(token)


def _timeout_error(name: str, api: str) -> BentoMLException:
    return BentoMLException(
        f"call to {name}.{api} did not complete in time", error_code=HTTPStatus.GATEWAY_TIMEOUT
    )


# --------------------------------------------------------------------------- one API


class _Call:
    """What a proxy needs per API, prepared on first use."""

    def __init__(self, proxy: RemoteProxy, api: APIMethod) -> None:
        self.api = api
        self.route = proxy.service.path_prefix + api.route
        self.input: InputSpec = build_input(api.func, api.input_spec, api.ctx_param)
        params = list(inspect.signature(api.func).parameters.values())[1:]
        self.signature = inspect.Signature([p for p in params if p.name != api.ctx_param])
        ret = return_annotation(api)
        info = classify(ret)
        self.output_kind = info.kind if info.kind in ("file", "image") else "other"
        self.output_adapter = _output_adapter(ret)
        self.in_band = api.batchable  # batch members reach Python without their headers
        self.item_adapter = _output_adapter(_stream_item(ret)) if api.is_stream else None

    # -- request

    def payload(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The API's arguments in python mode, validated as the dependency declares them."""
        spec = self.input
        if self.api.input_spec is not None:
            if args:
                raise TypeError(f"{self.api.name}() takes keyword arguments only")
            return spec.model.model_validate(kwargs).model_dump()  # type: ignore[union-attr]
        bound = self.signature.bind(*args, **kwargs)  # TypeError as for a local call
        if spec.kind == "none":
            return {}
        model = spec.model
        assert model is not None
        if spec.kind == "object":
            return model.model_validate(dict(bound.arguments)).model_dump()
        bound.apply_defaults()
        (value,) = bound.arguments.values()
        return model.model_validate(value).model_dump()

    def request(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], media_type: str
    ) -> tuple[str, list[bytes | memoryview], list[tuple[str, str]]]:
        payload = self.payload(args, kwargs)
        if media_type == _pickle.PICKLE:
            parts, lengths = _pickle.encode(_pickle.to_wire(payload), out_of_band=not self.in_band)
            return _pickle.PICKLE, parts, [(_pickle.BUFFER_LENGTHS, lengths)]
        return self._json_request(payload)

    def _json_request(self, payload: Any) -> tuple[str, list[bytes | memoryview], list[tuple[str, str]]]:
        kind = self.input.kind
        if kind == "raw":
            if isinstance(payload, str):
                return "text/plain; charset=utf-8", [payload.encode()], []
            return OCTET_STREAM, [bytes(payload)], []
        if kind == "root_file":
            ctype = mimetypes.guess_type(os.fspath(payload))[0] or OCTET_STREAM
            return ctype, [_pickle.file_to_bytes(payload)], []
        if kind == "root_image":
            data = _pickle.image_to_bytes(payload)
            return f"image/{(payload.format or 'png').lower()}", [data], []
        if kind == "object" and any(payload.get(n) is not None for n in self.input.field_kinds):
            ctype, parts = _formdata.encode(payload, self.input.field_kinds)
            return ctype, parts, []
        return APPLICATION_JSON, [dumps_json(payload)], []

    # -- response

    def result(
        self, proxy: RemoteProxy, status: int, headers: dict[str, str], body: bytes, signed: _Signed | None = None
    ) -> Any:
        if status >= 400:
            if status == 415 and signed is not None and signed.v1 is not None:
                raise BentoMLException(
                    f"dependency {proxy.name!r} refused the signed pickle call to {self.route}: "
                    f"{_error_message(body)} (are both sides given the same graph secret?)",
                    error_code=HTTPStatus.BAD_GATEWAY,
                )
            raise BentoMLException.from_status(status, _error_message(body))
        if _pickle.is_pickle(headers.get("content-type")):
            _trust_pickle(proxy, headers, body, signed)
        if self.output_kind == "file":
            return proxy._write_file(body, headers)
        if self.output_kind == "image":
            from PIL import Image

            return Image.open(io.BytesIO(body))
        value = _decode_body(body, headers)
        if self.output_adapter is None:
            return value
        return self.output_adapter.validate_python(value)


def _stream_item(annotation: Any) -> Any:
    """``T`` of ``Generator[T, ...]``, ``AsyncIterator[T]``...; ``Any`` when not given."""
    args = typing.get_args(strip_annotated(annotation))
    return args[0] if args else Any


class _Signed:
    """A call made with a signing key: its answer is unpickled only when signed
    with that key for this request (``v1``; None: the request went as JSON)."""

    __slots__ = ("call", "route", "key", "v1")

    def __init__(self, call: _Call, key: bytes, v1: str | None) -> None:
        self.call = call
        self.route = call.route
        self.key = key
        self.v1 = v1

    def result(self, proxy: RemoteProxy, status: int, headers: dict[str, str], body: bytes) -> Any:
        return self.call.result(proxy, status, headers, body, self)


def _trust_pickle(proxy: RemoteProxy, headers: dict[str, str], body: bytes, signed: _Signed | None) -> None:
    """Raise (502) unless a pickle answer may be unpickled: from a pool on the graph's
    private Unix sockets, or signed for the signed request it answers."""
    if signed is None and proxy.media_type == _pickle.PICKLE and proxy.signing_key is None:
        return
    reason = "to a call that was not pickle"
    if signed is not None and signed.v1 is not None:
        try:
            _signing.check_response(
                signed.key, headers.get(_signing.SIGNATURE_HEADER.lower()), signed.v1,
                headers.get(_pickle.BUFFER_LENGTHS, "").strip(), (body,),
            )
            return
        except _signing.SignatureError as exc:
            reason = f"not signed with the graph's key ({exc})"
    raise BentoMLException(
        f"dependency {proxy.name!r} answered in pickle {reason}; it was not unpickled",
        error_code=HTTPStatus.BAD_GATEWAY,
    )


def _output_adapter(annotation: Any) -> TypeAdapter[Any] | None:
    if annotation is Any or annotation is inspect.Signature.empty or annotation is None:
        return None
    if strip_annotated(annotation) is Any:
        return None
    try:
        return TypeAdapter(adapt(annotation))
    except (PydanticSchemaGenerationError, TypeError):
        return None  # a type pydantic cannot validate: the unpickled object is returned as is


def _decode_body(body: bytes | memoryview, headers: dict[str, str]) -> Any:
    ctype = headers.get("content-type", "")
    if _pickle.is_pickle(ctype):
        return _pickle.decode(body, headers.get(_pickle.BUFFER_LENGTHS))
    if body.__class__ is memoryview:  # a big body the host handed over uncopied
        body = bytes(body)
    mt = ctype.split(";", 1)[0].strip().lower()
    if mt == APPLICATION_JSON or mt.endswith("+json"):
        return json.loads(body)
    if mt.startswith("text/"):
        match = re.search(r"charset=([\w-]+)", ctype, re.IGNORECASE)
        return body.decode(match.group(1) if match else "utf-8", "replace")
    return body


def _error_message(body: bytes | memoryview) -> str:
    """The dependency's error text: the ``error`` of ``{"error": ...}`` or ``[{"error": ...}]``."""
    text = bytes(body).decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_MESSAGE]
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message: str = data["error"]
        if "detail" in data:
            message += ": " + json.dumps(data["detail"], separators=(",", ":"))
        return message[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]


_DISPOSITION_STAR = re.compile(r"filename\*\s*=\s*(?:utf-8|UTF-8)''([^;]+)")
_DISPOSITION = re.compile(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;\s]+)')


def _file_name(headers: dict[str, str]) -> str:
    disposition = headers.get("content-disposition", "")
    name = ""
    star = _DISPOSITION_STAR.search(disposition)
    if star:
        name = urllib.parse.unquote(star.group(1).strip())
    else:
        plain = _DISPOSITION.search(disposition)
        if plain:
            name = plain.group(1) if plain.group(1) is not None else plain.group(2)
    name = os.path.basename(name.replace("\\", "/")).strip().lstrip(".")
    if not name:
        ext = mimetypes.guess_extension(headers.get("content-type", "").split(";", 1)[0].strip()) or ""
        name = "output" + ext
    return name[:200]


# --------------------------------------------------------------------------- the proxy


class RemoteProxy:
    """A dependency served elsewhere; its APIs are attributes, as on a local instance.

    ``media_type`` is the request body format: BentoML's pickle (the graph's private
    sockets) or ``application/json`` (services that refuse pickle). With
    ``signing_key`` pickle requests are signed (``_signing``) and pickle answers are
    unpickled only when signed for them; batchable APIs then get JSON (batch members
    reach the dependency's Python without the header). ``timeout`` bounds each call
    (default: the dependency's ``traffic.timeout`` x 1.01, as BentoML); the caller's
    request deadline shortens it.
    """

    def __init__(
        self,
        service: Service[Any],
        transport: Transport,
        *,
        media_type: str = _pickle.PICKLE,
        timeout: float | None = None,
        signing_key: bytes | None = None,
    ) -> None:
        if media_type not in (_pickle.PICKLE, APPLICATION_JSON):
            raise ValueError(f"media_type must be {_pickle.PICKLE!r} or {APPLICATION_JSON!r}, not {media_type!r}")
        self.service = service
        self.name = service.name
        self.transport = transport
        self.media_type = media_type
        self.signing_key = signing_key
        if timeout is None:
            traffic = service.config.get("traffic") or {}
            timeout = float(traffic.get("timeout") or DEFAULT_TIMEOUT) * TIMEOUT_FACTOR
        self.timeout: float | None = timeout
        self._calls: dict[str, _Call] = {}
        self._methods: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        self._own_dir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self.to_async = AsyncView(service.apis, self._invoke_async, f"remote {self.name}")
        self.to_sync = SyncView(service.apis, self._invoke_sync, f"remote {self.name}")

    # -- attribute access: the dependency's APIs

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__") or name in ("service", "_methods", "_calls"):
            raise AttributeError(name)
        method = self._methods.get(name)
        if method is not None:
            return method
        api = self.service.apis.get(name)
        if api is None:
            raise AttributeError(f"service {self.name!r} has no API named {name!r}")
        if api.is_async:
            invoke = self._invoke_async
        else:
            invoke = self._invoke_default_sync

        def method(*args: Any, **kwargs: Any) -> Any:
            return invoke(api, args, kwargs)

        method.__name__ = method.__qualname__ = name
        method.__doc__ = api.__doc__
        self._methods[name] = method
        return method

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.service.apis})

    def __repr__(self) -> str:
        return f"<RemoteProxy {self.name!r} {self.media_type}>"

    # -- the three call modes

    def _invoke_async(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if api.is_stream:
            return self._stream_async(api, args, kwargs)
        return self._call_async(api, args, kwargs)

    def _invoke_sync(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if api.is_stream:
            return self._stream_sync(api, args, kwargs)
        return self._call_sync(api, args, kwargs)

    def _invoke_default_sync(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._invoke_sync(api, args, kwargs)
        raise RuntimeError(
            f"{self.name}.{api.name} is a sync API: calling it would block this event loop; "
            f"use `await self.<dependency>.to_async.{api.name}(...)` from async code"
        )

    # -- one call

    def _call(self, api: APIMethod) -> _Call:
        call = self._calls.get(api.name)
        if call is None:
            with self._lock:
                call = self._calls.get(api.name)
                if call is None:
                    call = self._calls[api.name] = _Call(self, api)
        return call

    def _budget(self, api: APIMethod, headers: list[tuple[str, str]]) -> tuple[float | None, float | None]:
        """``(timeout, deadline)`` of a call: this proxy's timeout, shortened by the
        caller's request deadline, which travels with the call."""
        timeout = self.timeout
        deadline = _deadline.get()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timeout_error(self.name, api.name)
            headers.append((DEADLINE_HEADER, f"{left:.3f}"))
            timeout = left if timeout is None else min(timeout, left)
        headers.insert(0, (RUNNER_NAME_HEADER, self.name))
        return timeout, deadline

    def _prepare(
        self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()
    ) -> tuple[_Call | _Signed, str, list[bytes | memoryview], list[tuple[str, str]], float | None, float | None]:
        """The request of one call: ``(call, content_type, body, headers, timeout, deadline)``,
        signed when this proxy has a key (batchable APIs then go as JSON: their members
        reach Python without the headers a signature is checked with)."""
        plain = self._call(api)
        key = self.signing_key
        media = self.media_type if key is None or not plain.in_band else APPLICATION_JSON
        content_type, body, headers = plain.request(args, kwargs, media)
        headers.extend(extra)
        call = plain if key is None else self._sign(plain, key, content_type, body, headers)
        timeout, deadline = self._budget(api, headers)
        return call, content_type, body, headers, timeout, deadline

    def _send(
        self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[_Call | _Signed, concurrent.futures.Future[TransportResult], float | None]:
        call, content_type, body, headers, timeout, _ = self._prepare(api, args, kwargs)
        try:
            future = self.transport.call(self.name, call.route, content_type, body, headers, timeout)
        except ConnectionError as exc:
            raise self._unreachable(exc) from exc
        return call, future, timeout

    @staticmethod
    def _sign(
        call: _Call, key: bytes, content_type: str, body: list[bytes | memoryview], headers: list[tuple[str, str]]
    ) -> _Signed:
        v1 = None
        if content_type == _pickle.PICKLE:
            lengths = next((v for n, v in headers if n == _pickle.BUFFER_LENGTHS), "")
            seal, v1 = _signing.sign_request(key, "POST", call.route.encode(), lengths, body)
            headers.append((_signing.SIGNATURE_HEADER, seal))
        return _Signed(call, key, v1)

    def _call_sync(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        blocking = getattr(self.transport, "call_blocking", None)
        if blocking is not None:  # this thread waits anyway: let the transport wake it directly
            call, content_type, body, headers, timeout, _ = self._prepare(api, args, kwargs)
            try:
                status, rheaders, rbody = blocking(self.name, call.route, content_type, body, headers, timeout)
            except ConnectionError as exc:
                raise self._unreachable(exc) from exc
            except TimeoutError as exc:
                raise _timeout_error(self.name, api.name) from exc
            return call.result(self, status, rheaders, rbody)
        call, future, timeout = self._send(api, args, kwargs)
        try:
            status, headers, body = future.result(None if timeout is None else timeout + _GRACE_S)
        except ConnectionError as exc:
            raise self._unreachable(exc) from exc
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:
            future.cancel()
            raise _timeout_error(self.name, api.name) from exc
        return call.result(self, status, headers, body)

    async def _call_async(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, future, timeout = self._send(api, args, kwargs)
        waiter = asyncio.wrap_future(future)  # cancelling the caller cancels the request
        try:
            status, headers, body = await asyncio.wait_for(waiter, None if timeout is None else timeout + _GRACE_S)
        except ConnectionError as exc:
            raise self._unreachable(exc) from exc
        except (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError) as exc:  # noqa: UP041 - distinct on 3.10
            future.cancel()
            raise _timeout_error(self.name, api.name) from exc
        return call.result(self, status, headers, body)

    # -- streams

    def _open_stream(
        self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[_Call | _Signed, Any]:
        # Pickle frames only from the graph's private Unix sockets: items are not
        # signed, and a proxy with a key unpickles nothing it cannot check.
        frames = "pickle" if self.media_type == _pickle.PICKLE and self.signing_key is None else "json"
        call, content_type, body, headers, timeout, deadline = self._prepare(
            api, args, kwargs, ((STREAM_HEADER, frames),)
        )
        call_stream = getattr(self.transport, "call_stream", None)
        if call_stream is None:
            raise NotImplementedError(f"this transport cannot stream {self.name}.{api.name}")
        try:
            stream = call_stream(self.name, call.route, content_type, body, headers, timeout, deadline)
        except ConnectionError as exc:
            raise self._unreachable(exc) from exc
        stream.pickle_frames = frames == "pickle"
        return call, stream

    def _stream_items(self, call: _Call | _Signed, decoder: FrameDecoder, items: list[Any]) -> list[Any]:
        adapter = (call.call if isinstance(call, _Signed) else call).item_adapter
        if adapter is None or decoder.media not in (FRAMES_PICKLE, FRAMES_JSON):
            return items
        return [adapter.validate_python(item) for item in items]

    def _stream_sync(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # the call starts at the first next(), as a local generator's body does: one
        # never iterated costs nothing, one dropped early is closed and cancels it
        call, stream = self._open_stream(api, args, kwargs)
        try:
            status, headers = stream.head()
            if status >= 400:
                runs = []
                while (data := stream.next()) is not None:
                    runs.append(data)
                call.result(self, status, headers, b"".join(runs))  # raises the mapped error
            decoder = FrameDecoder(headers.get("content-type"), allow_pickle=stream.pickle_frames)
            while (data := stream.next()) is not None:
                yield from self._stream_items(call, decoder, decoder.feed(data))
            yield from self._stream_items(call, decoder, decoder.close())
        except ConnectionError as exc:
            raise self._unreachable(exc) from exc
        except TimeoutError as exc:
            raise _timeout_error(self.name, api.name) from exc
        finally:
            stream.close()

    async def _stream_async(self, api: APIMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, stream = self._open_stream(api, args, kwargs)
        try:
            status, headers = await stream.head_async()
            if status >= 400:
                runs = []
                while (data := await stream.next_async()) is not None:
                    runs.append(data)
                call.result(self, status, headers, b"".join(runs))
            decoder = FrameDecoder(headers.get("content-type"), allow_pickle=stream.pickle_frames)
            while (data := await stream.next_async()) is not None:
                for item in self._stream_items(call, decoder, decoder.feed(data)):
                    yield item
            for item in self._stream_items(call, decoder, decoder.close()):
                yield item
        except ConnectionError as exc:
            raise self._unreachable(exc) from exc
        except TimeoutError as exc:
            raise _timeout_error(self.name, api.name) from exc
        finally:
            stream.close()

    def _unreachable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(f"dependency {self.name!r} is unreachable: {exc}")

    # -- file outputs

    def _write_file(self, data: bytes, headers: dict[str, str]) -> Any:
        from pathlib import Path

        base = _temp_dir.get() or self._dir()
        folder = tempfile.mkdtemp(prefix="dep-", dir=base)
        path = os.path.join(folder, _file_name(headers))
        with open(path, "wb") as f:
            f.write(data)
        return Path(path)

    def _dir(self) -> str:
        with self._lock:
            if self._own_dir is None:
                safe = re.sub(r"[^\w.-]+", "_", self.name)[:64]
                self._own_dir = tempfile.mkdtemp(prefix=f"bentohost-remote-{safe}-")
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._own_dir, True)
            return self._own_dir

    def close(self) -> None:
        """Remove the files this proxy wrote outside of a request's temp dir."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._own_dir = None
            self._finalizer = None
