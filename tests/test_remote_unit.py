"""Service-to-service calls without a server: to_async/to_sync, the pickle codec,
pickle requests in ``_dispatch``, ``RemoteProxy`` over an in-process transport that
goes through the real dispatch code, error mapping, deadlines and ``service_graph``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import json
import os
import pickle
import sys
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

import bentohost
from bentohost import _pickle, _remote
from bentohost._dispatch import (
    Endpoint,
    build_endpoints,
    handle_request,
    set_pickle_allowed,
)
from bentohost._io import Refused
from bentohost._remote import RemoteProxy, install_resolver, set_request_deadline
from bentohost._service import Service, service_graph
from bentohost.exceptions import (
    BentoMLException,
    InternalServerError,
    InvalidArgument,
    NotFound,
    ServiceUnavailable,
    UnprocessableEntity,
)

try:
    from PIL import Image
except ImportError:  # pragma: no cover - PIL is optional
    Image = None  # type: ignore[assignment]

PICKLE = "application/vnd.bentoml+pickle"
GENERIC_500 = {"error": "An unexpected error has occurred, please check the server log."}


def _load_graph() -> Any:
    path = Path(__file__).resolve().parent / "services" / "remote_graph.py"
    spec = importlib.util.spec_from_file_location("remote_graph", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["remote_graph"] = module
    spec.loader.exec_module(module)
    return module


graph = _load_graph()
Leaf, Middle, Entry, Item = graph.Leaf, graph.Middle, graph.Entry, graph.Item


# --------------------------------------------------------------------------- fixtures


class LocalTransport:
    """A ``Transport`` that serves each dependency in this process through ``handle_request``.

    The body is joined into ``bytes`` as if it had crossed a socket, the request head
    carries the headers (so ``buffer-lengths`` is read as the worker would hand it
    over), and every call is recorded.
    """

    def __init__(self, *services: Service[Any]) -> None:
        self.services = {svc.name: svc for svc in services}
        self._endpoints: dict[str, dict[str, Endpoint]] = {}
        self.calls: list[dict[str, Any]] = []
        self.last_body: bytes | None = None
        self.seen_by_server: list[tuple[str, bytes]] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fake-dep")
        self._lock = threading.Lock()

    def endpoints(self, name: str) -> dict[str, Endpoint]:
        with self._lock:
            if name not in self._endpoints:
                svc = self.services[name]
                self._endpoints[name] = {svc.path_prefix + ep.method.route: ep for ep in build_endpoints(svc, svc())}
            return self._endpoints[name]

    def call(
        self,
        dependency: str,
        route: str,
        content_type: str,
        body: list[bytes | memoryview],
        headers: list[tuple[str, str]],
        timeout: float | None,
    ) -> concurrent.futures.Future[tuple[int, dict[str, str], bytes]]:
        self.calls.append(
            {"dependency": dependency, "route": route, "content_type": content_type, "headers": dict(headers),
             "timeout": timeout, "parts": len(body)}
        )
        data = b"".join(body)
        head = f"POST {route} HTTP/1.1\r\ncontent-type: {content_type}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
        meta = (head.encode("latin-1"), "127.0.0.1:5000", None, None)
        ep = self.endpoints(dependency)[route]
        self.seen_by_server.append((content_type, data))

        def serve() -> tuple[int, dict[str, str], bytes]:
            status, ctype, out, extra = handle_request(ep, data, content_type, meta)
            resp_headers = {"content-type": ctype}
            for line in (extra or "").split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    resp_headers[name.strip().lower()] = value.strip()
            self.last_body = out
            return status, resp_headers, out

        return self._pool.submit(serve)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class CannedTransport:
    """Answers every call with the same ``(status, headers, body)`` or exception."""

    def __init__(self, result: Any = None, *, raise_now: BaseException | None = None, never: bool = False) -> None:
        self.result = result
        self.raise_now = raise_now
        self.never = never
        self.futures: list[concurrent.futures.Future[Any]] = []
        self.calls: list[dict[str, Any]] = []

    def call(self, dependency: str, route: str, content_type: str, body: list[Any], headers: list[tuple[str, str]],
             timeout: float | None) -> concurrent.futures.Future[Any]:
        self.calls.append({"route": route, "headers": dict(headers), "timeout": timeout})
        if self.raise_now is not None:
            raise self.raise_now
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.futures.append(fut)
        if not self.never:
            if isinstance(self.result, BaseException):
                fut.set_exception(self.result)
            else:
                fut.set_result(self.result)
        return fut


def _all_dependencies() -> list[Any]:
    return [dep for svc in (Leaf, Middle, Entry) for dep in svc.dependencies.values()]


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    install_resolver(None)
    set_pickle_allowed(False)
    for dep in _all_dependencies():
        dep.reset()
    yield
    install_resolver(None)
    set_pickle_allowed(False)
    for dep in _all_dependencies():
        dep.reset()


@pytest.fixture
def transport() -> Iterator[LocalTransport]:
    """Every dependency remote (pickle allowed), through the real dispatch code."""
    t = LocalTransport(Leaf, Middle)
    set_pickle_allowed(True)
    install_resolver(lambda dep: RemoteProxy(dep.on, t) if dep.on is not None and dep.on.name in t.services else None)
    yield t
    t.close()


def leaf_proxy(t: Any, **kwargs: Any) -> RemoteProxy:
    return RemoteProxy(Leaf, t, **kwargs)


def entry_call(api: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """Call an API of ``Entry`` as a JSON client would (its dependencies resolve through the resolver)."""
    eps = {ep.name: ep for ep in build_endpoints(Entry, Entry())}
    status, ctype, out, _ = handle_request(eps[api], json.dumps(payload).encode(), "application/json")
    if ctype.startswith("application/json"):
        return status, json.loads(out)
    return status, out.decode() if ctype.startswith("text/") else out


# --------------------------------------------------------------------------- to_async / to_sync (plain Python)


@bentohost.service
class Modes:
    @bentohost.api
    def sync_thread(self, x: int) -> str:
        return f"{x}:{threading.current_thread().name}"

    @bentohost.api
    async def aplus(self, a: int, b: int = pydantic.Field(2)) -> int:
        await asyncio.sleep(0)
        return a + b

    @bentohost.api
    def gen(self, n: int) -> Generator[int, None, None]:
        yield from range(n)

    @bentohost.api
    async def agen(self, n: int) -> AsyncGenerator[int, None]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @bentohost.api
    async def deadline(self) -> float | None:
        return _remote.request_deadline()

    def not_an_api(self) -> int:
        return 1


def test_to_async_on_plain_instance() -> None:
    svc = Modes()

    async def main() -> None:
        here = threading.current_thread().name
        out = await svc.to_async.sync_thread(3)  # a sync API runs in a thread
        assert out.startswith("3:") and not out.endswith(here)
        assert await svc.to_async.aplus(1) == 3  # Field default resolved
        assert [i async for i in svc.to_async.gen(3)] == [0, 1, 2]
        assert [i async for i in svc.to_async.agen(3)] == [0, 1, 2]

    asyncio.run(main())
    with pytest.raises(AttributeError, match="not_an_api"):
        svc.to_async.not_an_api  # noqa: B018
    assert "aplus" in dir(svc.to_async)


def test_to_sync_on_plain_instance() -> None:
    svc = Modes()
    assert svc.to_sync.aplus(1, b=5) == 6
    assert svc.to_sync.sync_thread(1) == f"1:{threading.current_thread().name}"
    assert list(svc.to_sync.gen(2)) == [0, 1]
    assert list(svc.to_sync.agen(4)) == [0, 1, 2, 3]


def test_to_sync_inside_a_running_loop_thread() -> None:
    svc = Modes()

    async def main() -> tuple[int, list[int]]:
        # blocks this loop while the coroutine runs on the private loop thread
        return svc.to_sync.aplus(2), list(svc.to_sync.agen(2))

    assert asyncio.run(main()) == (4, [0, 1])


def test_to_sync_keeps_the_callers_context() -> None:
    svc = Modes()
    token = set_request_deadline(123.5)
    try:
        assert svc.to_sync.deadline() == 123.5
    finally:
        _remote.reset_request_deadline(token)
    assert svc.to_sync.deadline() is None


def test_to_sync_nested_on_the_private_loop() -> None:
    @bentohost.service
    class Nested:
        @bentohost.api
        async def outer(self) -> int:
            return Modes().to_sync.aplus(1) + 10  # to_sync from the helper loop's own thread

    assert Nested().to_sync.outer() == 13


def test_in_process_dependency_has_modes() -> None:
    leaf = Middle().leaf  # no resolver: in-process instance, as today
    assert isinstance(leaf, Leaf.inner)
    assert leaf.to_sync.ashout(text="a") == "A"
    assert asyncio.run(leaf.to_async.add(a=1)) == 2
    assert Middle().total(values=[1, 2, 3]) == 6
    assert asyncio.run(Middle().atotal(values=[1, 2])) == 3


# --------------------------------------------------------------------------- codec


def test_codec_numpy_out_of_band_without_copy() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    f = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))
    strided = np.arange(20)[::2]  # not contiguous: pickled in band
    parts, lengths = _pickle.encode({"a": a, "f": f, "s": strided, "n": 3})
    sizes = [int(x) for x in lengths.split(",")]
    assert len(parts) == 3 and sizes[1:] == [a.nbytes, f.nbytes]
    assert np.shares_memory(np.frombuffer(parts[1], np.uint8), a)  # the parts are views, not copies
    body = b"".join(parts)
    out = _pickle.decode(body, lengths)
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["f"], f)
    np.testing.assert_array_equal(out["s"], strided)
    assert out["n"] == 3 and out["f"].flags.f_contiguous
    raw = np.frombuffer(body, np.uint8)
    assert np.shares_memory(out["a"], raw) and np.shares_memory(out["f"], raw)
    assert not out["a"].flags.writeable  # over an immutable body
    # a writable body gives writable arrays, still without a copy
    mutable = bytearray(body)
    out2 = _pickle.decode(memoryview(mutable), lengths)
    assert out2["a"].flags.writeable and np.shares_memory(out2["a"], np.frombuffer(mutable, np.uint8))


def test_codec_in_band_and_bad_headers() -> None:
    a = np.ones(4)
    parts, lengths = _pickle.encode({"a": a}, out_of_band=False)
    assert len(parts) == 1 and lengths == str(len(parts[0]))
    np.testing.assert_array_equal(_pickle.decode(parts[0], None)["a"], a)  # no header: one pickle
    parts, lengths = _pickle.encode({"a": a})
    body = b"".join(parts)
    with pytest.raises(ValueError, match="add up"):
        _pickle.decode(body, lengths + ",1")
    with pytest.raises(ValueError, match="malformed"):
        _pickle.decode(body, "x,y")
    assert _pickle.is_pickle("Application/Vnd.Bentoml+Pickle; q=1") and not _pickle.is_pickle("application/json")


def test_to_wire_python_mode(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"\x00\x01")
    wire = _pickle.to_wire({"item": Item(name="a"), "files": [p], "one": p, "t": (1, "x")})
    assert wire == {"item": {"name": "a", "price": 1.0, "tags": []}, "files": [b"\x00\x01"], "one": b"\x00\x01", "t": (1, "x")}


# --------------------------------------------------------------------------- pickle requests in _dispatch


def _leaf_endpoint(name: str, instance: Any = None) -> Endpoint:
    return {ep.name: ep for ep in build_endpoints(Leaf, instance or Leaf())}[name]


def _pickle_request(payload: Any, *, out_of_band: bool = True) -> tuple[bytes, tuple[bytes, None, None, None]]:
    parts, lengths = _pickle.encode(_pickle.to_wire(payload), out_of_band=out_of_band)
    head = f"POST / HTTP/1.1\r\ncontent-type: {PICKLE}\r\nbuffer-lengths: {lengths}\r\n".encode()
    return b"".join(parts), (head, None, None, None)


class Evil:
    """Unpickling this creates the marker file: proof that a body was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (open, (self.marker, "w"))


def test_pickle_refused_by_default_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = pickle.dumps({"a": Evil(marker), "b": 1}, protocol=5)
    head = f"POST /add HTTP/1.1\r\ncontent-type: {PICKLE}\r\nbuffer-lengths: {len(body)}\r\n".encode()
    ep = _leaf_endpoint("add")
    for ct in (PICKLE, PICKLE.upper(), PICKLE + "; charset=binary"):
        for meta in (None, (head, None, None, None)):
            status, ctype, out, _ = handle_request(ep, body, ct, meta)
            assert status == 415 and ctype == "application/json"
            assert json.loads(out) == [{"error": "application/vnd.bentoml+pickle is not allowed in main server"}]
    with pytest.raises(Refused):
        _leaf_endpoint("batch").decode_member(body, PICKLE)
    assert not marker.exists()
    # the body is not harmless: unpickling it does create the file
    pickle.loads(body)
    assert marker.exists()


def test_pickle_request_when_allowed() -> None:
    set_pickle_allowed(True)
    body, meta = _pickle_request({"a": 2, "b": 5})
    status, ctype, out, headers = handle_request(_leaf_endpoint("add"), body, PICKLE, meta)
    assert (status, ctype) == (200, PICKLE)
    assert headers is not None and headers.startswith("buffer-lengths: ")
    lengths = headers.split(":", 1)[1].strip()
    assert _pickle.decode(out, lengths) == 7
    # validation errors keep BentoML's JSON 400 body
    body, meta = _pickle_request({"a": "not a number"})
    status, ctype, out, _ = handle_request(_leaf_endpoint("add"), body, PICKLE, meta)
    assert status == 400 and ctype == "application/json" and json.loads(out)["error"] == "1 validation error for Input"
    # a body that is not a pickle is bad input, not a crash
    status, _, out, _ = handle_request(_leaf_endpoint("add"), b"garbage", PICKLE, None)
    assert status == 400 and "invalid application/vnd.bentoml+pickle body" in json.loads(out)[0]["error"]
    # API errors too
    body, meta = _pickle_request({"kind": "nf"})
    assert handle_request(_leaf_endpoint("fail"), body, PICKLE, meta)[:3] == (404, "application/json", b'[{"error":"no such thing"}]')
    body, meta = _pickle_request({"kind": "crash"})
    status, _, out, _ = handle_request(_leaf_endpoint("fail"), body, PICKLE, meta)
    assert status == 500 and json.loads(out) == GENERIC_500


def test_pickle_request_array_is_a_view_of_the_body() -> None:
    set_pickle_allowed(True)
    seen: list[np.ndarray] = []

    @bentohost.service
    class Keep:
        @bentohost.api
        def keep(self, x: np.ndarray) -> int:
            seen.append(x)
            return int(x.sum())

    x = np.arange(1000, dtype=np.float64)
    body, meta = _pickle_request({"x": x})
    (ep,) = build_endpoints(Keep, Keep())
    status, _, out, headers = handle_request(ep, body, PICKLE, meta)
    assert status == 200 and _pickle.decode(out, headers.split(":", 1)[1].strip()) == int(x.sum())  # type: ignore[union-attr]
    assert np.shares_memory(seen[0], np.frombuffer(body, np.uint8))


def test_pickle_request_ctx_status_and_headers() -> None:
    set_pickle_allowed(True)
    body, meta = _pickle_request({"x": 4})
    status, ctype, out, headers = handle_request(_leaf_endpoint("created"), body, PICKLE, meta)
    assert status == 201 and ctype == PICKLE and headers is not None
    assert "x-leaf: yes" in headers and "buffer-lengths:" in headers
    lengths = next(line for line in headers.split("\r\n") if line.startswith("buffer-lengths")).split(":")[1].strip()
    assert _pickle.decode(out, lengths) == 4


def test_pickle_batch_member_in_band() -> None:
    set_pickle_allowed(True)
    body, _ = _pickle_request({"xs": [1, 2]}, out_of_band=False)
    assert _leaf_endpoint("batch").decode_member(body, PICKLE) == [1, 2]


def test_pickle_file_input_written_to_the_request_temp_dir(tmp_path: Path) -> None:
    set_pickle_allowed(True)
    src = tmp_path / "in.txt"
    src.write_text("file body")
    body, meta = _pickle_request({"f": src, "label": "x"})
    status, _, out, headers = handle_request(_leaf_endpoint("describe_file"), body, PICKLE, meta)
    assert status == 200
    got = _pickle.decode(out, headers.split(":", 1)[1].strip())  # type: ignore[union-attr]
    assert got["content"] == "file body" and got["label"] == "x"
    assert got["dir"] != str(tmp_path) and not os.path.exists(got["dir"])  # the temp dir is gone after the response


# --------------------------------------------------------------------------- RemoteProxy through the real dispatch


def test_proxy_sync_and_async_calls(transport: LocalTransport) -> None:
    leaf = leaf_proxy(transport)
    assert leaf.add(a=1, b=2) == 3
    assert leaf.add(5) == 6  # positional arguments bind like a local call
    coro = leaf.ashout(text="hi")
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == "HI"
    assert asyncio.run(leaf.to_async.add(a=1)) == 2  # a sync API, awaited
    assert leaf.to_sync.ashout(text="x") == "X"  # an async API, blocking
    assert leaf.shout_root("abc") == "ABC"
    call = transport.calls[0]
    assert call["dependency"] == "Leaf" and call["route"] == "/add" and call["content_type"] == PICKLE
    assert call["headers"]["Runner-Name"] == "Leaf" and "buffer-lengths" in call["headers"]
    assert call["timeout"] == pytest.approx(7 * 1.01)  # traffic.timeout x 1.01, as BentoML
    with pytest.raises(TypeError):
        leaf.add(1, 2, 3)
    with pytest.raises(AttributeError, match="no API named"):
        leaf.nope  # noqa: B018


def test_proxy_sync_api_from_async_code_needs_to_async(transport: LocalTransport) -> None:
    leaf = leaf_proxy(transport)

    async def main() -> int:
        with pytest.raises(RuntimeError, match="to_async.add"):
            leaf.add(a=1)
        return await leaf.to_async.add(a=1)

    assert asyncio.run(main()) == 2


def test_proxy_streams_mirror_the_generator_kind_and_start_lazily(transport: LocalTransport) -> None:
    """A sync generator API gives a generator, an async one an async generator; nothing
    is sent before the first item is asked for (a generator never iterated costs nothing).
    Items crossing real sockets: tests/test_graph_streams.py."""
    import inspect

    leaf = leaf_proxy(transport)
    assert inspect.isgenerator(leaf.count(n=2)) and inspect.isgenerator(leaf.to_sync.acount(n=1))
    agen = leaf.acount(n=2)
    assert inspect.isasyncgen(agen) and inspect.isasyncgen(leaf.to_async.count(n=1))
    assert transport.calls == []
    with pytest.raises(NotImplementedError, match="cannot stream"):
        next(leaf.count(n=2))  # this in-process transport has no call_stream()


def test_proxy_numpy_round_trip_without_copy(transport: LocalTransport) -> None:
    leaf = leaf_proxy(transport)
    x = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    np.testing.assert_array_equal(leaf.double(x=x), x * 2)
    assert transport.calls[-1]["parts"] == 2  # main pickle + the array, out of band
    y = asyncio.run(leaf.echo_array(x=x))
    np.testing.assert_array_equal(y, x)
    assert transport.last_body is not None
    assert np.shares_memory(y, np.frombuffer(transport.last_body, np.uint8))  # decoded over the response body


def test_proxy_pydantic_models(transport: LocalTransport) -> None:
    leaf = leaf_proxy(transport)
    out = leaf.reprice(item=Item(name="a", price=2.0), factor=3)
    assert isinstance(out, Item) and out == Item(name="a", price=6.0, tags=["repriced"])
    assert leaf.reprice(item={"name": "b"}) == Item(name="b", price=2.0, tags=["repriced"])
    assert leaf.items(n=2) == [Item(name="0"), Item(name="1")]
    # the request payload is python mode: a dict of field name -> value, models dumped
    _ct, data = transport.seen_by_server[0]
    lengths = transport.calls[0]["headers"]["buffer-lengths"]
    assert _pickle.decode(data, lengths) == {"item": {"name": "a", "price": 2.0, "tags": []}, "factor": 3.0}


def test_proxy_file_input_and_output(transport: LocalTransport, tmp_path: Path) -> None:
    leaf = leaf_proxy(transport)
    src = tmp_path / "note.md"
    src.write_text("# hello")
    got = leaf.describe_file(f=src, label="n")
    assert got["content"] == "# hello" and got["label"] == "n" and got["dir"] != str(tmp_path)
    # a root file output comes back as raw bytes and becomes a file again
    req_dir = tmp_path / "req"
    req_dir.mkdir()
    token = _remote.set_request_temp_dir(str(req_dir))
    try:
        path = leaf.make_file(text="made here")
    finally:
        _remote.reset_request_temp_dir(token)
    assert isinstance(path, Path) and path.read_text() == "made here" and path.name == "made.txt"
    assert str(path).startswith(str(req_dir))
    assert transport.last_body == b"made here"  # not pickled
    # without a request temp dir the proxy owns the file until close()
    path2 = leaf.make_file(text="again")
    assert path2.read_text() == "again"
    leaf.close()
    assert not path2.exists()


@pytest.mark.skipif(Image is None, reason="PIL is not installed")
def test_proxy_pil_image_input_and_output(transport: LocalTransport) -> None:

    @bentohost.service
    class Pics:
        @bentohost.api
        def size(self, img: Image.Image, name: str = "") -> list[int]:
            return [*img.size, len(name)]

        @bentohost.api
        def flip(self, img: Image.Image, /) -> Image.Image:
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    t = LocalTransport(Pics)
    proxy = RemoteProxy(Pics, t)
    img = Image.new("RGB", (7, 3), (255, 0, 0))
    assert proxy.size(img=img, name="ab") == [7, 3, 2]
    out = proxy.flip(img)
    assert isinstance(out, Image.Image) and out.size == (7, 3) and out.getpixel((0, 0)) == (255, 0, 0)
    assert t.last_body is not None and t.last_body[:8] == b"\x89PNG\r\n\x1a\n"  # raw image bytes, not a pickle
    t.close()


def test_proxy_json_media_type() -> None:
    t = LocalTransport(Leaf)  # pickle NOT allowed: JSON must still work
    leaf = leaf_proxy(t, media_type="application/json")
    assert leaf.add(a=2, b=2) == 4
    assert leaf.reprice(item=Item(name="j")) == Item(name="j", price=2.0, tags=["repriced"])
    np.testing.assert_array_equal(leaf.double(x=np.array([1.0, 2.0])), np.array([2.0, 4.0]))
    assert leaf.shout_root("raw") == "RAW"
    assert t.calls[0]["content_type"] == "application/json" and "buffer-lengths" not in t.calls[0]["headers"]
    with pytest.raises(ValueError, match="media_type"):
        RemoteProxy(Leaf, t, media_type="text/plain")
    t.close()


def test_proxy_to_a_service_that_refuses_pickle() -> None:
    t = LocalTransport(Leaf)  # pickle not allowed on the "dependency"
    with pytest.raises(BentoMLException) as info:
        leaf_proxy(t).add(a=1)
    assert int(info.value.error_code) == 415 and "not allowed" in info.value.message
    t.close()


def test_proxy_batchable_api_is_pickled_in_band(transport: LocalTransport) -> None:
    assert leaf_proxy(transport).batch(xs=[1, 2]) == [2, 3]
    assert transport.calls[-1]["parts"] == 1


# --------------------------------------------------------------------------- resolution and whole chains


def test_resolver_makes_the_chain_remote(transport: LocalTransport) -> None:
    entry = Entry()
    assert isinstance(entry.middle, RemoteProxy) and isinstance(entry.leaf, RemoteProxy)
    assert entry_call("total", {"values": [1, 2, 3]}) == (200, 6)
    routes = [(c["dependency"], c["route"]) for c in transport.calls]
    assert routes[0] == ("Middle", "/total") and routes.count(("Leaf", "/add")) == 3  # Middle's own leaf is remote too
    assert entry_call("shout", {"text": "ok"}) == (200, "OK")


def test_resolver_returning_none_keeps_in_process() -> None:
    asked: list[str] = []

    def resolver(dep: Any) -> Any:
        asked.append(dep.attr_name)
        return None

    install_resolver(resolver)
    assert isinstance(Middle().leaf, Leaf.inner) and asked == ["leaf"]


def test_url_dependency() -> None:
    @bentohost.service
    class UsesUrl:
        remote = bentohost.depends(url="http://example.invalid:3000")

    with pytest.raises(NotImplementedError, match="url"):
        UsesUrl().remote  # noqa: B018
    sentinel = object()
    UsesUrl.dependencies["remote"].reset()
    install_resolver(lambda dep: sentinel if dep.url else None)
    assert UsesUrl().remote is sentinel


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "cls", "status", "message"),
    [
        ("bad", InvalidArgument, 400, "bad thing"),
        ("nf", NotFound, 404, "no such thing"),
        ("422", UnprocessableEntity, 422, "cannot process"),
        ("429", BentoMLException, 429, "slow down"),
        ("unavail", ServiceUnavailable, 503, None),
        ("crash", InternalServerError, 500, None),
    ],
)
def test_dependency_errors_map_to_exceptions(transport: LocalTransport, kind: str, cls: type, status: int, message: str | None) -> None:
    with pytest.raises(BentoMLException) as info:
        leaf_proxy(transport).fail(kind=kind)
    assert type(info.value) is cls and int(info.value.error_code) == status
    if message is not None:
        assert info.value.message == message
    else:  # 5xx: only the generic text crosses the hop, the detail stays in the dependency's log
        assert "unexpected error" in info.value.message


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("bad", 400, [{"error": "bad thing"}]),
        ("nf", 404, [{"error": "no such thing"}]),
        ("429", 429, [{"error": "slow down"}]),
        ("unavail", 503, GENERIC_500),
        ("crash", 500, GENERIC_500),
    ],
)
def test_dependency_status_reaches_the_entry(transport: LocalTransport, kind: str, status: int, body: Any) -> None:
    assert entry_call("fail", {"kind": kind}) == (status, body)
    assert entry_call("afail", {"kind": kind}) == (status, body)


def test_validation_error_of_the_dependency() -> None:
    detail = [{"type": "int_parsing", "loc": ["a"], "msg": "bad"}]
    body = json.dumps({"error": "1 validation error for Input", "detail": detail}).encode()
    t = CannedTransport((400, {"content-type": "application/json"}, body))
    with pytest.raises(InvalidArgument) as info:
        leaf_proxy(t).add(a=1)
    assert info.value.message.startswith("1 validation error for Input: ") and "int_parsing" in info.value.message
    t = CannedTransport((418, {"content-type": "text/plain"}, b"teapot"))
    with pytest.raises(BentoMLException) as info2:
        leaf_proxy(t).add(a=1)
    assert int(info2.value.error_code) == 418 and info2.value.message == "teapot"


def test_local_validation_happens_before_sending() -> None:
    t = CannedTransport((200, {}, b""))
    with pytest.raises(pydantic.ValidationError):
        leaf_proxy(t).add(a="x")
    assert t.calls == []


def test_unreachable_dependency_is_503(transport: LocalTransport) -> None:
    for t in (CannedTransport(raise_now=ConnectionRefusedError("refused")), CannedTransport(ConnectionResetError("reset"))):
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            leaf_proxy(t).add(a=1)
        with pytest.raises(ServiceUnavailable):
            asyncio.run(leaf_proxy(t).ashout(text="x"))
    # at the entry: 503 with the generic body
    down = CannedTransport(ConnectionRefusedError("refused"))
    install_resolver(lambda dep: RemoteProxy(dep.on, down))
    assert entry_call("fail", {"kind": "bad"}) == (503, GENERIC_500)


def test_timeouts_are_504() -> None:
    t = CannedTransport(TimeoutError("no answer"))
    with pytest.raises(BentoMLException) as info:
        leaf_proxy(t).add(a=1)
    assert int(info.value.error_code) == 504
    # a transport that never answers: the proxy stops waiting and cancels the request
    silent = CannedTransport(never=True)
    start = time.monotonic()
    with pytest.raises(BentoMLException) as info:
        leaf_proxy(silent, timeout=0.05).add(a=1)
    assert int(info.value.error_code) == 504 and time.monotonic() - start < 2
    assert silent.futures[0].cancelled()
    with pytest.raises(BentoMLException) as info:
        asyncio.run(leaf_proxy(silent, timeout=0.05).ashout(text="x"))
    assert int(info.value.error_code) == 504 and silent.futures[1].cancelled()


def test_cancelling_the_caller_cancels_the_request() -> None:
    silent = CannedTransport(never=True)

    async def main() -> None:
        task = asyncio.ensure_future(leaf_proxy(silent).ashout(text="x"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert silent.futures[0].cancelled()


# --------------------------------------------------------------------------- deadline


def test_deadline_header_and_timeout() -> None:
    ok = (200, {"content-type": PICKLE}, pickle.dumps(3, protocol=5))
    t = CannedTransport(ok)
    leaf = leaf_proxy(t)
    assert leaf.add(a=1) == 3
    assert _remote.DEADLINE_HEADER not in t.calls[0]["headers"] and t.calls[0]["timeout"] == pytest.approx(7.07)
    token = set_request_deadline(time.monotonic() + 2.0)
    try:
        assert leaf.add(a=1) == 3
        assert asyncio.run(leaf.to_async.add(a=1)) == 3  # the task sees the deadline of the context it was created in
    finally:
        _remote.reset_request_deadline(token)
    for call in t.calls[1:]:
        left = float(call["headers"][_remote.DEADLINE_HEADER])
        assert 1.0 < left <= 2.0 and call["timeout"] == pytest.approx(left, abs=0.05)
    # a deadline that has passed: 504 without a request
    token = set_request_deadline(time.monotonic() - 1)
    try:
        with pytest.raises(BentoMLException) as info:
            leaf.add(a=1)
    finally:
        _remote.reset_request_deadline(token)
    assert int(info.value.error_code) == 504 and len(t.calls) == 3


def test_deadline_from_header() -> None:
    assert _remote.deadline_from_header("1.5", now=100.0) == 101.5
    assert _remote.deadline_from_header("-3", now=100.0) == 100.0
    assert _remote.deadline_from_header(None) is None
    assert _remote.deadline_from_header("soon") is None
    assert _remote.deadline_from_header("nan") is None


# --------------------------------------------------------------------------- service_graph


def test_service_graph_chain_and_diamond() -> None:
    assert service_graph(Leaf) == [Leaf]
    assert service_graph(Middle) == [Middle, Leaf]
    graph_order = service_graph(Entry)  # Entry -> Middle -> Leaf, and Entry -> Leaf again
    assert graph_order == [Entry, Middle, Leaf]


def test_service_graph_name_conflict_and_url() -> None:
    @bentohost.service(name="Leaf")
    class OtherLeaf:
        pass

    @bentohost.service
    class Clash:
        a = bentohost.depends(Leaf)
        b = bentohost.depends(OtherLeaf)

    with pytest.raises(ValueError, match="OtherLeaf") as info:
        service_graph(Clash)
    assert "remote_graph.Leaf" in str(info.value) and "'Leaf'" in str(info.value)

    @bentohost.service
    class WithUrl:
        leaf = bentohost.depends(Leaf)
        far = bentohost.depends(Middle, url="http://elsewhere:3000")
        farther = bentohost.depends(url="http://elsewhere:3001")

    assert service_graph(WithUrl) == [WithUrl, Leaf]


def test_decode_body_of_an_uncopied_response():
    """A dependency's body of 64 KiB or more reaches Python as a view of the host's buffer
    (csrc/python/calls.c): JSON, text, raw bytes and error bodies decode from it too."""
    values = list(range(20_000))
    big = json.dumps(values).encode()
    assert len(big) > 64 * 1024
    assert _remote._decode_body(memoryview(big), {"content-type": "application/json"}) == values
    text = "é" * 40_000
    got = _remote._decode_body(memoryview(text.encode()), {"content-type": "text/plain; charset=utf-8"})
    assert got == text
    raw = _remote._decode_body(memoryview(b"\x00" * 70_000), {"content-type": "application/octet-stream"})
    assert raw.__class__ is bytes and raw == b"\x00" * 70_000
    assert _remote._error_message(memoryview(b'{"error": "bad input"}')) == "bad input"
