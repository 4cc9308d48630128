"""What the sync and async clients share: schema handling, request building, response decoding.

Nothing here imports httpx, numpy, pandas or Pillow at module level: ``import bentohost``
and ``import bentohost.client`` stay cheap. Each optional library is imported when a value
of its kind is seen.
"""

from __future__ import annotations

import codecs
import functools
import inspect
import io
import json
import mimetypes
import os
import pathlib
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import unquote, urlparse

from .. import __version__
from .. import exceptions as _exc

__all__ = [
    "ClientBase",
    "ClientEndpoint",
    "FileManager",
    "RequestSpec",
    "StreamDecoder",
    "build_request_spec",
    "decode_body",
    "decode_file",
    "map_exception",
    "httpx_module",
]

USER_AGENT = f"bentohost HTTP Client/{__version__}"
CHUNK_SIZE = 64 * 1024
# /readyz is polled with short, growing sleeps (never a tight loop).
READY_POLL_INITIAL = 0.02
READY_POLL_MAX = 0.25


def httpx_module():
    """Import httpx on first use (it costs ~100 ms, which ``import bentohost`` must not pay)."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _exc.MissingDependencyException(
            "the bentohost HTTP clients need httpx: pip install httpx"
        ) from exc
    return httpx


def next_poll_delay(delay: float) -> float:
    return min(delay * 2, READY_POLL_MAX)


# --------------------------------------------------------------------------- endpoints


@dataclass
class ClientEndpoint:
    """One ``routes[i]`` entry of ``/schema.json``."""

    name: str
    route: str
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    doc: str | None = None
    stream_output: bool = False
    is_task: bool = False
    batchable: bool = False

    @classmethod
    def from_schema(cls, route: Mapping[str, Any]) -> "ClientEndpoint":
        output = dict(route.get("output") or {})
        return cls(
            name=route["name"],
            route=route.get("route") or "/" + route["name"],
            input=dict(route.get("input") or {}),
            output=output,
            doc=route.get("doc") or route.get("description"),
            stream_output=bool(output.get("is_stream", False)),
            is_task=bool(route.get("is_task", False)),
            batchable=bool(route.get("batchable", False)),
        )

    @property
    def is_root_input(self) -> bool:
        return bool(self.input.get("root_input", False))

    def signature(self) -> inspect.Signature:
        """A signature for ``help()``/IDEs, built from the input schema."""
        P = inspect.Parameter
        if self.is_root_input and "properties" not in self.input:
            return inspect.Signature([P("value", P.POSITIONAL_ONLY)])
        params = []
        required = set(self.input.get("required", []))
        props = self.input.get("properties") or {}
        # required first keeps the signature valid; all are keyword-able anyway
        for name in sorted(props, key=lambda n: n not in required):
            if not name.isidentifier():
                continue
            default = P.empty if name in required else props[name].get("default")
            params.append(P(name, P.POSITIONAL_OR_KEYWORD, default=default))
        try:
            return inspect.Signature(params)
        except ValueError:  # pragma: no cover - defensive
            return inspect.Signature([P("args", P.VAR_POSITIONAL), P("kwargs", P.VAR_KEYWORD)])


def parse_schema(doc: Any, url: str) -> dict[str, ClientEndpoint]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("routes"), list):
        raise _exc.BentoMLException(f"Invalid schema document from {url}/schema.json: no 'routes' list")
    endpoints: dict[str, ClientEndpoint] = {}
    for route in doc["routes"]:
        ep = ClientEndpoint.from_schema(route)
        endpoints[ep.name] = ep
    return endpoints


def method_attr_name(client: Any, name: str) -> str:
    """The attribute an API is bound to: its name, or ``api_<name>`` when that clashes."""
    # not getattr(client, name): AsyncHTTPClient.__getattr__ raises before setup is done
    if getattr(type(client), name, None) is not None or vars(client).get(name) is not None:
        return f"api_{name}"
    return name


# --------------------------------------------------------------------------- errors


def _error_mapping() -> dict[int, type[_exc.BentoMLException]]:
    """status -> exception class, like ``BentoMLException.error_mapping`` (first definer wins)."""
    mapping: dict[int, type[_exc.BentoMLException]] = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            if "error_code" in sub.__dict__:
                mapping.setdefault(int(sub.error_code), sub)
            walk(sub)

    walk(_exc.BentoMLException)
    return mapping


def map_exception(status: int, text: str) -> _exc.BentoMLException:
    """The exception for an HTTP error response; never fails on a non-standard status code."""
    cls = _error_mapping().get(status, _exc.BentoMLException)
    try:
        code: Any = HTTPStatus(status)
    except ValueError:
        code = None
    exc = cls(text, error_code=code)
    if code is None:
        exc.error_code = status  # type: ignore[assignment]  # keep the real code, e.g. 599
    exc.status_code = status  # type: ignore[attr-defined]
    exc.body = text  # type: ignore[attr-defined]
    return exc


# --------------------------------------------------------------------------- values -> JSON


def _is_pydantic_model(obj: Any) -> bool:
    return hasattr(obj, "model_dump") and hasattr(type(obj), "model_fields")


def _is_pil_image(obj: Any) -> bool:
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(obj, mod.Image)


def _tensor_to_list(obj: Any) -> Any:
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch
        obj = obj.detach().cpu()
    elif hasattr(obj, "numpy") and not hasattr(obj, "tolist"):  # tensorflow eager tensor
        obj = obj.numpy()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def _dataframe_to_json(obj: Any, schema: Mapping[str, Any]) -> Any:
    if not hasattr(obj, "to_dict"):
        return obj
    orient = schema.get("orient", "records")
    if orient == "columns":
        return obj.to_dict(orient="list")
    return obj.to_dict(orient=orient)


def encode_value(obj: Any, schema: Mapping[str, Any] | None) -> Any:
    """Turn ``obj`` into something ``json.dumps`` (with ``json_default``) can write, guided by the schema."""
    schema = schema or {}
    if obj is None:
        return None
    typ = schema.get("type")
    if typ == "tensor":
        return _tensor_to_list(obj)
    if typ == "dataframe":
        return _dataframe_to_json(obj, schema)
    if _is_pydantic_model(obj):
        return obj.model_dump(mode="json")
    if typ == "array" and isinstance(obj, (list, tuple)):
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        return [encode_value(v, items) for v in obj]
    if typ == "object" and isinstance(obj, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, Mapping) else {}
        return {k: encode_value(v, props.get(k, extra)) for k, v in obj.items()}
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            for option in options:
                if not isinstance(option, Mapping) or option.get("type") == "null":
                    continue
                if option.get("type") == "tensor" and hasattr(obj, "tolist"):
                    return _tensor_to_list(obj)
                if option.get("type") == "dataframe" and hasattr(obj, "to_dict"):
                    return _dataframe_to_json(obj, option)
    return obj


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for values the schema did not describe."""
    if _is_pydantic_model(obj):
        return obj.model_dump(mode="json")
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # a DataFrame without a schema hint
        return obj.to_dict(orient="records")
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return _tensor_to_list(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=json_default).encode("utf-8")


# --------------------------------------------------------------------------- files


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _is_file_schema(schema: Mapping[str, Any]) -> bool:
    if not isinstance(schema, Mapping):
        return False
    if schema.get("type") == "file":
        return True
    if schema.get("type") == "array" and isinstance(schema.get("items"), Mapping):
        return schema["items"].get("type") == "file"
    for key in ("anyOf", "oneOf"):
        if any(_is_file_schema(s) for s in schema.get(key) or ()):
            return True
    return False


def _guess_mime(filename: str | None) -> str | None:
    if not filename:
        return None
    return mimetypes.guess_type(filename)[0]


class FileManager:
    """Opens the files of one request and closes them when it is done."""

    def __init__(self) -> None:
        self.opened: list[Any] = []

    def get_file(self, value: Any) -> str | tuple[str, Any, str | None]:
        """``(filename, readable, mime)`` for a file value, or the string itself for an URL."""
        if isinstance(value, str):
            if _is_http_url(value):
                return value
            value = pathlib.Path(value)
        if _is_pil_image(value):
            fmt = (value.format or "PNG").upper()
            buf = io.BytesIO()
            try:
                value.save(buf, format=fmt)
            except (OSError, KeyError, ValueError):  # e.g. RGBA as JPEG: fall back to PNG
                fmt = "PNG"
                buf = io.BytesIO()
                value.save(buf, format=fmt)
            buf.seek(0)
            fname = getattr(value, "filename", None) or getattr(getattr(value, "fp", None), "name", None)
            name = pathlib.Path(fname).name if isinstance(fname, str) and fname else f"upload-image.{fmt.lower()}"
            return name, buf, f"image/{fmt.lower()}"
        if isinstance(value, os.PathLike):
            path = pathlib.Path(value)
            f = open(path, "rb")
            self.opened.append(f)
            return path.name, f, _guess_mime(path.name) or "application/octet-stream"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return "upload-file", io.BytesIO(bytes(value)), "application/octet-stream"
        if hasattr(value, "read"):
            raw_name = getattr(value, "name", None)
            name = pathlib.Path(raw_name).name if isinstance(raw_name, str) and raw_name else "upload-file"
            return name, value, _guess_mime(name) or "application/octet-stream"
        raise TypeError(
            f"cannot send a {type(value).__name__} as a file: pass a pathlib.Path, a path string, "
            "an open binary file, bytes or a PIL image"
        )

    def close(self) -> None:
        while self.opened:
            f = self.opened.pop()
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass


def iter_file(f: Any) -> Iterator[bytes]:
    while True:
        chunk = f.read(CHUNK_SIZE)
        if not chunk:
            return
        yield chunk if isinstance(chunk, bytes) else chunk.encode("utf-8")


# --------------------------------------------------------------------------- requests


@dataclass
class RequestSpec:
    """Everything ``httpx.Client.build_request`` needs, minus the client."""

    path: str
    headers: dict[str, str]
    content: Any = None  # bytes, or an open file to stream (wrapped by the caller)
    stream_file: bool = False
    data: dict[str, Any] | None = None
    files: list[Any] | None = None

    def build_kwargs(self, is_async: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"headers": self.headers}
        if self.files is not None or self.data is not None:
            kw["data"] = self.data or {}
            kw["files"] = self.files or []
        elif self.stream_file:
            kw["content"] = aiter_file(self.content) if is_async else iter_file(self.content)
        elif self.content is not None:
            kw["content"] = self.content
        return kw


async def aiter_file(f: Any):
    for chunk in iter_file(f):
        yield chunk


def build_request_spec(
    endpoint: ClientEndpoint,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    files: FileManager,
    path_suffix: str = "",
) -> RequestSpec:
    """Validate the call against the schema and describe the HTTP request. Raises TypeError."""
    path = endpoint.route + path_suffix
    headers = {"Content-Type": "application/json"}
    schema = endpoint.input
    kwargs = dict(kwargs)

    if endpoint.is_root_input:
        if len(args) > 1 or kwargs or (not args and "properties" not in schema):
            if not args and not kwargs:
                return RequestSpec(path, headers)
            raise TypeError(f"{endpoint.name}() takes exactly one positional argument (its root input)")
        value = args[0] if args else None
        if "properties" in schema:
            if not isinstance(value, Mapping):
                raise TypeError(f"{endpoint.name}() expects a mapping of its input fields")
            args, kwargs = (), dict(value)
        elif schema.get("type") == "file" or _is_file_schema(schema):
            file = files.get_file(value)
            if isinstance(file, str):  # an URL, downloaded by the server
                return RequestSpec(path, {"Content-Type": "text/plain"}, content=file.encode())
            _, f, mime = file
            return RequestSpec(
                path, {"Content-Type": mime or "application/octet-stream"}, content=f, stream_file=True
            )
        elif isinstance(value, (str, bytes, bytearray, memoryview)):
            content = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            return RequestSpec(path, {"Content-Type": "text/plain"}, content=content)
        else:
            return RequestSpec(path, headers, content=dumps(encode_value(value, schema)))

    props: Mapping[str, Any] = schema.get("properties") or {}
    names = list(props)
    if len(args) > len(names):
        raise TypeError(
            f"{endpoint.name}() takes {len(names)} positional argument{'s' if len(names) != 1 else ''} "
            f"but {len(args)} were given"
        )
    for name, value in zip(names, args):
        if name in kwargs:
            raise TypeError(f"{endpoint.name}() got multiple values for argument {name!r}")
        kwargs[name] = value
    unknown = [k for k in kwargs if k not in props]
    if unknown:
        raise TypeError(f"Arguments not found in endpoint {endpoint.name}: {sorted(unknown)}")
    missing = [k for k in schema.get("required", []) if k not in kwargs]
    if missing:
        raise TypeError(f"Missing required arguments in endpoint {endpoint.name}: {sorted(missing)}")

    if any(_is_file_schema(s) for s in props.values()):
        data: dict[str, Any] = {}
        parts: list[Any] = []
        for name, value in kwargs.items():
            sub = props[name]
            if not _is_file_schema(sub):
                data[name] = json.dumps(encode_value(value, sub), default=json_default)
                continue
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                file = files.get_file(v)
                if isinstance(file, str):
                    data.setdefault(name, [])
                    data[name].append(file)
                else:
                    parts.append((name, file))
        data = {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in data.items()}
        return RequestSpec(path, {}, data=data, files=parts)

    return RequestSpec(path, headers, content=dumps(encode_value(kwargs, schema)))


# --------------------------------------------------------------------------- responses


def response_charset(headers: Mapping[str, str]) -> str:
    ctype = headers.get("content-type", "")
    m = re.search(r"charset=([\w.-]+)", ctype, re.I)
    if m:
        try:
            codecs.lookup(m.group(1))
            return m.group(1)
        except LookupError:
            pass
    return "utf-8"


def _decode_json_value(obj: Any, schema: Mapping[str, Any]) -> Any:
    if not isinstance(schema, Mapping):
        return obj
    typ = schema.get("type")
    if typ == "tensor" and obj is not None:
        try:
            import numpy as np
        except ImportError:
            return obj
        dtype = schema.get("dtype")
        try:
            return np.array(obj, dtype=dtype) if dtype else np.array(obj)
        except TypeError:
            return np.array(obj)
    if typ == "dataframe" and obj is not None:
        try:
            import pandas as pd
        except ImportError:
            return obj
        return pd.DataFrame(obj, columns=schema.get("columns"))
    if typ == "array" and isinstance(schema.get("items"), Mapping) and isinstance(obj, list):
        return [_decode_json_value(v, schema["items"]) for v in obj]
    if typ == "object" and schema.get("properties") and isinstance(obj, dict):
        props = schema["properties"]
        return {k: (_decode_json_value(v, props[k]) if k in props else v) for k, v in obj.items()}
    return obj


def decode_body(endpoint: ClientEndpoint, body: bytes, headers: Mapping[str, str]) -> Any:
    """A non-streamed, non-file response body as the value the API returned."""
    out = endpoint.output
    if out.get("type") == "string":
        if out.get("format") == "binary":
            return body
        return body.decode(response_charset(headers), errors="replace")
    if not body:
        return None
    ctype = headers.get("content-type", "")
    try:
        value = json.loads(body)
    except ValueError:
        # e.g. a str returned from an API with an Any output (sent raw, labelled JSON)
        if ctype.startswith("text/") or "json" in ctype:
            return body.decode(response_charset(headers), errors="replace")
        return body
    return _decode_json_value(value, out)


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([^;]+)", re.I)
_FILENAME = re.compile(r'filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]+)', re.I)


def filename_from_disposition(value: str | None) -> str | None:
    if not value:
        return None
    m = _FILENAME_STAR.search(value)
    if m:
        raw = m.group(1).strip().strip('"')
        charset, _, rest = raw.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            name = unquote(encoded or raw, encoding=charset or "utf-8")
        except LookupError:
            name = unquote(encoded or raw)
    else:
        m = _FILENAME.search(value)
        if not m:
            return None
        name = m.group(1).strip()
        if name.startswith('"') and name.endswith('"') and len(name) >= 2:
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
    # never let a server choose where the file goes
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return None
    return name


def decode_file(endpoint: ClientEndpoint, body: bytes, headers: Mapping[str, str], temp_dir: str) -> Any:
    """A ``type: file`` output: a PIL image when the schema says ``pil``, else a Path."""
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if endpoint.output.get("pil"):
        try:
            from PIL import Image
        except ImportError:
            Image = None  # type: ignore[assignment]
        if Image is not None:
            formats = [ctype[6:].upper()] if ctype.startswith("image/") else None
            try:
                img = Image.open(io.BytesIO(body), formats=formats)
            except Exception:  # noqa: BLE001 - the content type was wrong; let Pillow sniff
                img = Image.open(io.BytesIO(body))
            img.load()
            return img
    filename = filename_from_disposition(headers.get("content-disposition"))
    if not filename:
        ext = mimetypes.guess_extension(ctype) if ctype else None
        filename = "output" + (ext or "")
    out_dir = tempfile.mkdtemp(prefix="out-", dir=temp_dir)
    path = pathlib.Path(out_dir) / filename
    path.write_bytes(body)
    return path


class StreamDecoder:
    """Decodes stream chunks as they arrive: str for string outputs (UTF-8 safe across chunk edges), else bytes."""

    def __init__(self, endpoint: ClientEndpoint, headers: Mapping[str, str]) -> None:
        out = endpoint.output
        self.text = out.get("type") == "string" and out.get("format") != "binary"
        self._decoder = codecs.getincrementaldecoder(response_charset(headers))(errors="replace") if self.text else None

    def feed(self, chunk: bytes) -> Any:
        if self._decoder is None:
            return chunk or None
        text = self._decoder.decode(chunk)
        return text or None

    def finish(self) -> Any:
        if self._decoder is None:
            return None
        text = self._decoder.decode(b"", final=True)
        return text or None


# --------------------------------------------------------------------------- the shared base


def normalise_url(url: str) -> tuple[str, str | None]:
    """``(base_url, unix_socket_path)``; accepts http(s)://, tcp://host:port, file:///path.sock and host:port."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return "http://127.0.0.1:3000", unquote(parsed.path)
    if parsed.scheme == "tcp":
        return f"http://{parsed.netloc}", None
    if parsed.scheme in ("http", "https"):
        return url.rstrip("/"), None
    return "http://" + url.rstrip("/"), None


class ClientBase:
    """State common to both clients. Subclasses provide the transport."""

    endpoints: dict[str, ClientEndpoint]

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30,
        server_ready_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.server_ready_timeout = server_ready_timeout
        self.endpoints = {}
        self._base_url, self._uds = normalise_url(url)
        default_headers = {"User-Agent": USER_AGENT}
        if token is None:
            token = os.environ.get("BENTO_CLOUD_API_KEY")
        if token:
            default_headers["Authorization"] = f"Bearer {token}"
        if headers:
            default_headers.update(headers)
        self.default_headers = default_headers
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._setup_done = False

    @property
    def temp_dir(self) -> str:
        """Where file outputs are written (made on first use); removed when the client is garbage collected."""
        if self._temp is None:
            self._temp = tempfile.TemporaryDirectory(prefix="bentohost-client-")
        return self._temp.name

    def _ready_timeout(self, timeout: float | None) -> float:
        if timeout is None:
            timeout = self.server_ready_timeout
        if timeout is None:
            timeout = self.timeout
        return float(timeout)

    def _wants_ready_wait(self) -> bool:
        return self.server_ready_timeout is None or self.server_ready_timeout > 0

    def _install_schema(self, resp: Any) -> None:
        """One method per route of a fetched ``/schema.json`` response."""
        if resp.is_error:
            raise _exc.BentoMLException(
                f"Failed to fetch schema from {self.url}/schema.json: HTTP {resp.status_code} {resp.text[:200]}"
            )
        try:
            doc = resp.json()
        except ValueError as exc:
            raise _exc.BentoMLException(f"Invalid schema document from {self.url}/schema.json") from exc
        self._install_endpoints(parse_schema(doc, self.url), self._make_method)

    def _make_method(self, endpoint: ClientEndpoint) -> Any:
        name = endpoint.name

        def method(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, *args, **kwargs)  # type: ignore[attr-defined]

        method.__name__ = name
        method.__qualname__ = f"{type(self).__name__}.{name}"
        method.__doc__ = endpoint.doc
        method.__signature__ = endpoint.signature()  # type: ignore[attr-defined]
        if endpoint.is_task:
            method.submit = functools.partial(self._submit, endpoint)  # type: ignore[attr-defined]
            method.get = functools.partial(self._get_task_result, endpoint)  # type: ignore[attr-defined]
            method.get_status = functools.partial(self._get_task_status, endpoint)  # type: ignore[attr-defined]
            method.cancel = functools.partial(self._cancel_task, endpoint)  # type: ignore[attr-defined]
            method.retry = functools.partial(self._retry_task, endpoint)  # type: ignore[attr-defined]
        return method

    def _install_endpoints(self, endpoints: dict[str, ClientEndpoint], make: Callable[[ClientEndpoint], Any]) -> None:
        self.endpoints = endpoints
        for name, ep in endpoints.items():
            if name == "__call__":
                continue  # served by the class's __call__
            setattr(self, method_attr_name(self, name), make(ep))
        self._setup_done = True

    def _endpoint(self, name: str) -> ClientEndpoint:
        try:
            return self.endpoints[name]
        except KeyError:
            raise _exc.NotFound(f"Endpoint {name} not found") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} apis={sorted(self.endpoints)}>"


def deadline_left(deadline: float) -> float:
    return deadline - time.monotonic()

