"""``depends(url=...)`` without ``on=``: a proxy whose APIs come from the remote
service's ``/schema.json`` (what bentohost and ``bentoml serve`` publish: one route
per API with its name, path and input/output JSON schemas).

``proxy.<api>(**kwargs)`` sends the keyword arguments as JSON (positional ones are
matched to the input's properties in order; a root input takes one value) and
validation happens remotely (file and image arguments go as ``multipart/form-data``,
``_formdata``); a 4xx comes back as the mapped exception, as on other
proxies. The call is async inside a running event loop (a coroutine to await) and
blocking elsewhere; ``.to_async`` / ``.to_sync`` force one mode. Results are decoded
from the response: JSON, text, a file (``Path``) or a PIL image when the schema says
so, else bytes. Streams are not supported (as on other proxies).

When to fetch: once when the worker starts (BentoML fetches at construction), with
a short timeout; if the dependency is down then, the worker starts anyway and the
schema is fetched on first use. While it stays unreachable every call raises
``ServiceUnavailable`` (503), retrying the fetch at most once a second.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import io
import json
import logging
import mimetypes
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _formdata, _pickle
from ._io import APPLICATION_JSON, dumps_json
from ._modes import AsyncView, SyncView
from ._remote import RemoteProxy, Transport, _decode_body, _error_message, _trust_pickle
from ._types import OCTET_STREAM
from .exceptions import BentoMLException, ServiceUnavailable

__all__ = ["SchemaProxy", "FETCH_TIMEOUT_S", "RETRY_S"]

logger = logging.getLogger("bentohost")

#: how long one fetch of ``/schema.json`` may take
FETCH_TIMEOUT_S = 3.0
#: after a failed fetch, calls fail at once for this long before the next try
RETRY_S = 1.0
_MAX_SCHEMA = 16 << 20


class RemoteApi:
    """One route of ``/schema.json``: what a proxy needs in place of an ``APIMethod``."""

    __slots__ = ("name", "route", "input", "output", "is_stream", "is_async", "batchable")

    def __init__(self, route: dict[str, Any]) -> None:
        self.name = str(route["name"])
        self.route = str(route["route"])
        self.input: dict[str, Any] = route.get("input") or {}
        self.output: dict[str, Any] = route.get("output") or {}
        self.is_stream = bool(self.output.get("is_stream"))
        self.is_async = False
        self.batchable = bool(route.get("batchable"))


class _Pending:
    """An API asked for before the schema is known: resolved when called."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Routes(dict[str, Any]):
    """name -> ``RemoteApi``; a name asked for before the schema is known is ``_Pending``."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False

    def __missing__(self, name: str) -> Any:
        if self.loaded or name.startswith("_"):
            raise KeyError(name)
        return _Pending(name)


class _RemoteService:
    """The few ``Service`` attributes a ``RemoteProxy`` reads."""

    def __init__(self, name: str, apis: _Routes) -> None:
        self.name = name
        self.apis = apis
        self.config: dict[str, Any] = {}
        self.path_prefix = ""


def _is_file_schema(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "file" or (
        schema.get("type") == "array" and (schema.get("items") or {}).get("type") == "file"
    )


class _SchemaCall:
    """One API of a ``SchemaProxy``: the request from the arguments, the result from the answer."""

    in_band = False

    def __init__(self, api: RemoteApi) -> None:
        self.api = api
        self.route = api.route
        self.properties: dict[str, Any] = dict(self.api.input.get("properties") or {})
        self.required = set(self.api.input.get("required") or ())
        self.file_fields = {name for name, schema in self.properties.items() if _is_file_schema(schema)}

    def request(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], media_type: str
    ) -> tuple[str, list[bytes | memoryview], list[tuple[str, str]]]:
        del media_type  # always JSON (or the raw body of a root input)
        if self.api.input.get("root_input"):
            if kwargs or len(args) > 1:
                raise TypeError(f"{self.api.name}() takes its one input as a positional argument")
            return _root_body(args[0] if args else None)
        values = self.arguments(args, kwargs)
        if any(values.get(name) is not None for name in self.file_fields):
            ctype, parts = _formdata.encode(values, self.file_fields)
            return ctype, parts, []
        return APPLICATION_JSON, [dumps_json(values)], []

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = list(self.properties)
        if len(args) > len(names):
            raise TypeError(f"{self.api.name}() takes at most {len(names)} positional arguments")
        values = dict(kwargs)
        for name, value in zip(names, args):
            if name in values:
                raise TypeError(f"{self.api.name}() got multiple values for argument {name!r}")
            values[name] = value
        unknown = sorted(set(values) - set(names))
        if unknown and self.properties:
            raise TypeError(f"{self.api.name}() got unexpected arguments: {', '.join(unknown)}")
        missing = sorted(self.required - set(values))
        if missing:
            raise TypeError(f"{self.api.name}() is missing required arguments: {', '.join(missing)}")
        return values

    def result(self, proxy: RemoteProxy, status: int, headers: dict[str, str], body: bytes, signed: Any = None) -> Any:
        if status >= 400:
            raise BentoMLException.from_status(status, _error_message(body))
        if _pickle.is_pickle(headers.get("content-type")):
            _trust_pickle(proxy, headers, body, signed)
        out = self.api.output
        if out.get("type") == "file":
            if out.get("pil") or headers.get("content-type", "").startswith("image/"):
                from PIL import Image

                return Image.open(io.BytesIO(body))
            return proxy._write_file(body, headers)
        return _decode_body(body, headers)


def _root_body(value: Any) -> tuple[str, list[bytes | memoryview], list[tuple[str, str]]]:
    if value is None:
        return APPLICATION_JSON, [b"null"], []
    if isinstance(value, str):
        return "text/plain; charset=utf-8", [value.encode()], []
    if isinstance(value, (bytes, bytearray, memoryview)):
        return OCTET_STREAM, [bytes(value)], []
    if isinstance(value, os.PathLike):
        ctype = mimetypes.guess_type(os.fspath(value))[0] or OCTET_STREAM
        return ctype, [_pickle.file_to_bytes(value)], []
    if _pickle.is_image(value):
        return f"image/{(value.format or 'png').lower()}", [_pickle.image_to_bytes(value)], []
    return APPLICATION_JSON, [dumps_json(value)], []


class SchemaProxy(RemoteProxy):
    """A dependency known only by its URL; its APIs are read from ``/schema.json``.

    ``name`` identifies the dependency to the transport; ``address`` is ``(ip, port)``
    of the server (resolved once by the caller) and ``host`` its Host header.
    """

    def __init__(
        self, name: str, address: tuple[str, int], host: str, transport: Transport, tls_name: str | None = None
    ) -> None:
        self._routes = _Routes()
        self._address = address
        self._tls_name = tls_name  # https: the name its certificate must be for
        self._host = host
        self._fetch_lock = threading.Lock()
        self._failed_at: float | None = None
        self.last_error = "not fetched yet"
        super().__init__(_RemoteService(name, self._routes), transport, media_type=APPLICATION_JSON)  # type: ignore[arg-type]
        self.to_async = AsyncView(self._routes, self._lazy_async, f"remote {name}")
        self.to_sync = SyncView(self._routes, self._lazy_sync, f"remote {name}")

    # -- the schema

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._tls_name is None:
            return http.client.HTTPConnection(*self._address, timeout=timeout)
        import ssl

        # by name, so that the certificate is checked for it (a one-time lookup at start)
        return http.client.HTTPSConnection(self._tls_name, self._address[1], timeout=timeout,
                                           context=ssl.create_default_context())

    def fetch(self, timeout: float = FETCH_TIMEOUT_S) -> bool:
        """GET ``/schema.json`` and learn the APIs; False (and the reason kept) if it fails."""
        try:
            conn = self._connection(timeout)
            try:
                conn.request("GET", "/schema.json", headers={"Host": self._host, "Accept": APPLICATION_JSON})
                resp = conn.getresponse()
                data = resp.read(_MAX_SCHEMA)
            finally:
                conn.close()
            if resp.status != 200:
                raise ValueError(f"GET /schema.json answered {resp.status}")
            routes = [RemoteApi(r) for r in json.loads(data)["routes"]]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            self._failed_at = time.monotonic()
            self.last_error = str(exc) or type(exc).__name__
            return False
        for api in routes:
            self._routes[api.name] = api
        self._routes.loaded = True
        return True

    def _ensure(self) -> None:
        if self._routes.loaded:
            return
        with self._fetch_lock:
            if self._routes.loaded:
                return
            if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_S:
                raise self._down()
            if not self.fetch():
                raise self._down()

    def _down(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"dependency {self.name} is unreachable: cannot read its /schema.json: {self.last_error}"
        )

    def _resolve(self, api: Any) -> RemoteApi:
        if not isinstance(api, _Pending):
            return api  # type: ignore[no-any-return]
        self._ensure()
        found = dict.get(self._routes, api.name)
        if found is None:
            raise AttributeError(f"dependency {self.name} has no API named {api.name!r}")
        return found  # type: ignore[no-any-return]

    def _call(self, api: Any) -> Any:
        call = self._calls.get(api.name)
        if call is None:
            with self._lock:
                call = self._calls.setdefault(api.name, _SchemaCall(api))  # type: ignore[arg-type]
        return call

    # -- the two modes

    def _lazy_sync(self, api: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._invoke_sync(self._resolve(api), args, kwargs)

    def _lazy_async(self, api: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not isinstance(api, _Pending):
            return self._invoke_async(api, args, kwargs)

        async def later() -> Any:
            if not self._routes.loaded:
                await asyncio.to_thread(self._ensure)
            result = self._invoke_async(self._resolve(api), args, kwargs)
            return await result if inspect.isawaitable(result) else result

        return later()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name in ("service",):
            raise AttributeError(name)
        try:
            api = self._routes[name]
        except KeyError:  # the schema is known and has no such API
            raise AttributeError(f"dependency {self.name} has no API named {name!r}") from None
        lazy_async, lazy_sync = self._lazy_async, self._lazy_sync

        def method(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return lazy_sync(api, args, kwargs)
            return lazy_async(api, args, kwargs)

        method.__name__ = method.__qualname__ = name
        return method

    def __dir__(self) -> list[str]:
        return sorted({*object.__dir__(self), *self._routes})

    def __repr__(self) -> str:
        state = f"{len(self._routes)} APIs" if self._routes.loaded else "schema not fetched"
        return f"<SchemaProxy {self.name!r} {state}>"
