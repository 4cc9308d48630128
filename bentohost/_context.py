"""Process-wide server context, the per-request ``Context`` and ``importing()``."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

__all__ = [
    "ServerContext",
    "server_context",
    "Context",
    "Request",
    "ResponseContext",
    "Headers",
    "Address",
    "URL",
    "importing",
]


class ServerContext:
    """Facts about the running server; ``worker_index`` is None outside a server."""

    __slots__ = (
        "worker_index",
        "service_name",
        "service_type",
        "bento_name",
        "bento_version",
        "service_routes",
    )

    def __init__(self) -> None:
        self.worker_index: int | None = None
        self.service_name: str | None = None
        self.service_type: str | None = None
        self.bento_name: str | None = None
        self.bento_version: str = "not available"
        self.service_routes: list[str] = []

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"ServerContext({fields})"


server_context = ServerContext()


# --------------------------------------------------------------------------- headers


class Headers(MutableMapping[str, str]):
    """Case-insensitive, order-keeping header list (several values per name allowed).

    ``headers[name]`` is the first value; ``getlist(name)`` all of them; setting a
    name replaces every value; ``append`` adds one.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Any = None) -> None:
        self._items: list[tuple[str, str]] = []
        if items:
            pairs = items.items() if hasattr(items, "items") else items
            for k, v in pairs:
                self._items.append((str(k), str(v)))

    def __getitem__(self, key: str) -> str:
        lk = key.lower()
        for k, v in self._items:
            if k.lower() == lk:
                return v
        raise KeyError(key)

    def __setitem__(self, key: str, value: str) -> None:
        lk = key.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lk]
        self._items.append((str(key), str(value)))

    def __delitem__(self, key: str) -> None:
        lk = key.lower()
        before = len(self._items)
        self._items = [(k, v) for k, v in self._items if k.lower() != lk]
        if len(self._items) == before:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        lk = key.lower()
        return any(k.lower() == lk for k, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._items:
            lk = k.lower()
            if lk not in seen:
                seen.add(lk)
                yield lk

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._items})

    def getlist(self, key: str) -> list[str]:
        lk = key.lower()
        return [v for k, v in self._items if k.lower() == lk]

    def append(self, key: str, value: str) -> None:
        self._items.append((str(key), str(value)))

    def raw_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair as set, duplicates included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Address(NamedTuple):
    host: str
    port: int


class URL:
    """The request target: ``path``, ``query`` and ``str()``."""

    __slots__ = ("path", "query", "_raw")

    def __init__(self, raw: str) -> None:
        self._raw = raw
        path, _, query = raw.partition("?")
        self.path = urllib.parse.unquote(path)
        self.query = query

    def __str__(self) -> str:
        return self._raw

    def __repr__(self) -> str:
        return f"URL({self._raw!r})"


def _parse_client(client: str | None) -> Address | None:
    if not client:
        return None
    host, _, port = client.rpartition(":")
    if not host:
        return Address(client, 0)
    host = host.strip("[]")
    try:
        return Address(host, int(port))
    except ValueError:
        return Address(client, 0)


class Request:
    """The HTTP request of an API call (parsed lazily from the raw head C handed over)."""

    __slots__ = ("_head", "_client", "_method", "_target", "_headers", "_query", "_cookies", "state")

    def __init__(self, head: bytes | None = None, client: str | None = None) -> None:
        self._head = head
        self._client = client
        self._method: str | None = None
        self._target = ""
        self._headers: Headers | None = None
        self._query: Any = None
        self._cookies: dict[str, str] | None = None
        self.state: dict[str, Any] = {}

    def _parse(self) -> None:
        text = (self._head or b"").decode("latin-1")
        lines = text.split("\r\n")
        first = lines[0].split(" ") if lines else []
        self._method = first[0] if first and first[0] else "POST"
        self._target = first[1] if len(first) > 1 else "/"
        headers = Headers()
        items = headers._items
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if sep:
                items.append((name.strip(), value.strip()))
        self._headers = headers

    @property
    def method(self) -> str:
        if self._method is None:
            self._parse()
        return self._method  # type: ignore[return-value]

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._parse()
        return self._headers  # type: ignore[return-value]

    metadata = headers

    @property
    def url(self) -> URL:
        if self._method is None:
            self._parse()
        return URL(self._target)

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def query_params(self) -> QueryParams:
        if self._query is None:
            if self._method is None:
                self._parse()
            self._query = QueryParams(self._target.partition("?")[2])
        return self._query  # type: ignore[no-any-return]

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            cookies: dict[str, str] = {}
            for header in self.headers.getlist("cookie"):
                for chunk in header.split(";"):
                    key, sep, value = chunk.partition("=")
                    key = key.strip()
                    if not sep and not key:
                        continue
                    if not sep:
                        key, value = "", key
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    if key or value:
                        cookies[key] = urllib.parse.unquote(value)
            self._cookies = cookies
        return self._cookies

    @property
    def client(self) -> Address | None:
        return _parse_client(self._client)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._target}>"


class QueryParams(dict):  # type: ignore[type-arg]
    """``dict`` of the first value per key, plus ``getlist`` and ``multi_items``."""

    def __init__(self, query: str) -> None:
        self._multi = urllib.parse.parse_qsl(query, keep_blank_values=True)
        super().__init__()
        for k, v in self._multi:
            self.setdefault(k, v)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._multi if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._multi)


# --------------------------------------------------------------------------- response


def _cookie_header(
    key: str,
    value: str,
    max_age: int | None,
    expires: Any,
    path: str | None,
    domain: str | None,
    secure: bool,
    httponly: bool,
    samesite: str | None,
) -> str:
    from http.cookies import SimpleCookie

    cookie: SimpleCookie = SimpleCookie()
    cookie[key] = value
    morsel = cookie[key]
    if max_age is not None:
        morsel["max-age"] = max_age
    if expires is not None:
        import datetime
        from email.utils import format_datetime, formatdate

        if isinstance(expires, datetime.datetime):
            morsel["expires"] = format_datetime(expires.astimezone(datetime.timezone.utc), usegmt=True)
        elif isinstance(expires, (int, float)):
            import time

            morsel["expires"] = formatdate(time.time() + expires, usegmt=True)
        else:
            morsel["expires"] = str(expires)
    if path is not None:
        morsel["path"] = path
    if domain is not None:
        morsel["domain"] = domain
    if secure:
        morsel["secure"] = True
    if httponly:
        morsel["httponly"] = True
    if samesite is not None:
        if samesite.lower() not in ("strict", "lax", "none"):
            raise ValueError("samesite must be 'strict', 'lax' or 'none'")
        morsel["samesite"] = samesite
    return cookie.output(header="").strip()


class ResponseContext:
    """What an API may set on its response: status code, headers and cookies."""

    __slots__ = ("status_code", "_headers", "cookies", "background")

    def __init__(self) -> None:
        self.status_code: int = 200
        self._headers: Headers | None = None
        self.cookies: list[str] = []
        self.background: Any = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers()
        return self._headers

    @headers.setter
    def headers(self, value: Any) -> None:
        self._headers = value if isinstance(value, Headers) else Headers(value)

    metadata = headers

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: Any = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header (same arguments as Starlette's)."""
        self.cookies.append(_cookie_header(key, value, max_age, expires, path, domain, secure, httponly, samesite))

    def delete_cookie(self, key: str, path: str = "/", domain: str | None = None) -> None:
        self.set_cookie(key, "", max_age=0, expires=0, path=path, domain=domain)


# --------------------------------------------------------------------------- Context


_EMPTY_REQUEST_HEAD = b"POST / HTTP/1.1\r\n"


class Context:
    """Per-request context injected into a ``ctx``/``context`` parameter.

    * ``request``: the HTTP request (``headers``, ``query_params``, ``cookies``,
      ``client``, ``url``/``path``, ``method``), parsed lazily;
    * ``response``: ``status_code``, ``headers`` and ``set_cookie()``, applied to the
      generated response;
    * ``state``: a dict shared by the whole worker process;
    * ``temp_dir``: a per-request directory, removed after the response.
    """

    __slots__ = ("_meta", "_request", "response", "state", "_temp_dir", "_own_temp")

    _shared_state: dict[str, Any] = {}

    def __init__(self, meta: Any = None) -> None:
        self._meta = meta
        self._request: Request | None = None
        self.response = ResponseContext()
        self.state: dict[str, Any] = Context._shared_state
        self._temp_dir: str | None = meta[2] if meta is not None and len(meta) > 2 else None
        self._own_temp = False

    @property
    def request(self) -> Request:
        if self._request is None:
            meta = self._meta
            if meta is not None:
                self._request = Request(meta[0], meta[1])
            else:
                self._request = Request(_EMPTY_REQUEST_HEAD, None)
        return self._request

    @request.setter
    def request(self, value: Request) -> None:
        self._request = value

    @property
    def temp_dir(self) -> str:
        if self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="bentohost-req-")
            self._own_temp = True
        return self._temp_dir

    @temp_dir.setter
    def temp_dir(self, value: str | None) -> None:
        self._temp_dir = value
        self._own_temp = False

    def close(self) -> None:
        """Remove the temporary directory this context created (C removes its own)."""
        if self._own_temp and self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._own_temp = False
            self._temp_dir = None

    def response_headers(self) -> list[tuple[str, str]]:
        """The extra ``(name, value)`` pairs the response needs (headers then cookies)."""
        resp = self.response
        pairs: list[tuple[str, str]] = []
        if resp._headers is not None:
            pairs.extend(resp._headers.raw_items())
        for c in resp.cookies:
            pairs.append(("set-cookie", c))
        return pairs


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Import optional runtime-only packages: ImportError is ignored outside a server."""
    try:
        yield
    except ImportError:
        if server_context.worker_index is not None:
            raise
