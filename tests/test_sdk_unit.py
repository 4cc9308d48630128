"""Unit tests of the Python SDK that need no server (no ``_bentohost``)."""

from __future__ import annotations

import asyncio
import json
import time
import os
import sys
import textwrap
import warnings
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic
import pytest

import bentohost as bentoml
from bentohost import _config, _loader
from bentohost._dispatch import build_endpoints, handle_request
from bentohost._io import build_input, error_response
from bentohost._worker import ThreadPool, WorkerRuntime
from bentohost.validators import ContentType

GENERIC_500 = {"error": "An unexpected error has occurred, please check the server log."}


class Item(pydantic.BaseModel):
    name: str
    price: float = 1.0


@bentoml.service(workers=2, threads=4, traffic={"timeout": 10, "max_concurrency": 8}, resources={"cpu": "2"})
class Demo:
    def __init__(self) -> None:
        self.bias = 1.0

    @bentoml.api
    def classify(self, features: list[list[float]]) -> list[float]:
        return [sum(r) + self.bias for r in features]

    @bentoml.api(route="/v2/echo")
    def echo(self, text: str, times: int = 1) -> str:
        return text * times

    @bentoml.api
    def with_field(
        self, n: int = pydantic.Field(3, ge=0), scale: float = pydantic.Field(default=2.0)
    ) -> dict[str, float]:
        return {"v": n * scale}

    @bentoml.api
    def root_text(self, text: str, /) -> str:
        return text.upper()

    @bentoml.api
    def root_bytes(self, data: bytes, /) -> int:
        return len(data)

    @bentoml.api
    def root_list(self, values: list[int], /) -> int:
        return sum(values)

    @bentoml.api
    def model_out(self, name: str) -> Item:
        return Item(name=name)

    @bentoml.api
    def models_out(self) -> list[Item]:
        return [Item(name="a"), Item(name="b", price=2)]

    @bentoml.api
    def array(self, x: np.ndarray) -> np.ndarray:
        return x * 2

    @bentoml.api
    def noargs(self) -> dict[str, int]:
        return {"ok": 1}

    @bentoml.api
    async def aplus(self, a: int, b: int = 2) -> int:
        await asyncio.sleep(0)
        return a + b

    @bentoml.api
    def gen(self, n: int) -> Generator[str, None, None]:
        for i in range(n):
            yield f"data: {i}\n\n"

    @bentoml.api
    async def agen(self, n: int) -> AsyncGenerator[str, None]:
        for i in range(n):
            yield str(i)

    @bentoml.api
    def fail(self, kind: str) -> str:
        if kind == "bad":
            raise bentoml.exceptions.InvalidArgument("bad thing")
        if kind == "nf":
            raise bentoml.exceptions.NotFound("missing")
        if kind == "auth":
            raise bentoml.exceptions.BentoMLException("nope", error_code=403)
        if kind == "unavail":
            raise bentoml.exceptions.ServiceUnavailable("busy")
        raise RuntimeError("boom")

    @bentoml.api
    def with_ctx(self, x: int, ctx: bentoml.Context) -> int:
        ctx.response.status_code = 201
        return x

    @bentoml.api(batchable=True, max_batch_size=8)
    def batch(self, xs: list[int]) -> list[int]:
        return [x + 1 for x in xs]

    @bentoml.api
    def __call__(self, x: int) -> int:
        return x


def call(api_name: str, body: bytes | str | None = b"", ct: str | None = None) -> tuple[int, str, Any]:
    eps = {ep.name: ep for ep in build_endpoints(Demo, Demo())}
    if isinstance(body, str):
        body = body.encode()
    status, ctype, out, _headers = handle_request(eps[api_name], body or b"", ct)
    if ctype.startswith("application/json"):
        return status, ctype, json.loads(out)
    return status, ctype, out


# ------------------------------------------------------------------ plain Python use


def test_plain_python_use() -> None:
    svc = Demo()
    assert svc.classify(features=[[1, 2], [3]]) == [4.0, 4.0]
    assert svc.echo("ab", times=2) == "abab"
    assert svc.with_field() == {"v": 6.0}
    assert svc.with_field(n=1) == {"v": 2.0}
    assert asyncio.run(svc.aplus(1)) == 3
    assert svc(5) == 5
    assert isinstance(svc, Demo.inner)
    assert svc.bento_service is Demo


def test_service_object() -> None:
    assert isinstance(Demo, bentoml.Service)
    assert Demo.name == "Demo"
    assert Demo.config["workers"] == 2
    assert "classify" in Demo.apis and "__call__" in Demo.apis
    assert Demo.apis["__call__"].route == "/"
    assert Demo.apis["echo"].route == "/v2/echo"
    assert Demo.apis["agen"].is_stream and Demo.apis["agen"].is_async
    assert Demo.apis["gen"].is_stream and not Demo.apis["gen"].is_async
    assert Demo.apis["aplus"].is_async and not Demo.apis["aplus"].is_stream


def test_bare_decorator_and_name() -> None:
    @bentoml.service
    class A:
        """Doc."""

        @bentoml.api
        def f(self) -> int:
            return 1

    assert A.name == "A" and A.description == "Doc."

    @bentoml.service(name="custom", description="d")
    class B:
        pass

    assert B.name == "custom" and B.description == "d" and B.apis == {}


def test_service_twice_is_type_error() -> None:
    with pytest.raises(TypeError):
        bentoml.service(Demo)  # type: ignore[call-overload]


def test_unknown_config_key_warns() -> None:
    with pytest.warns(UserWarning, match="bogus"):

        @bentoml.service(bogus=1)
        class C:
            pass


def test_known_config_keys_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @bentoml.service(
            name="x",
            workers="cpu_count",
            threads=2,
            traffic={"timeout": 3},
            resources={"gpu": 1},
            envs=[{"name": "A", "value": "1"}],
            labels={"a": "b"},
            image=None,
            path_prefix="/p",
            metrics={"enabled": True},
            logging={},
            http={},
            ssl={},
            backlog=100,
        )
        class C:
            pass


def test_dunder_api_rejected() -> None:
    with pytest.raises(ValueError):

        class C:
            @bentoml.api
            def __private(self) -> int:
                return 1

    with pytest.raises(ValueError):

        class D:
            @bentoml.api(route="nope")
            def f(self) -> int:
                return 1


def test_hooks_and_depends() -> None:
    events: list[str] = []

    @bentoml.service
    class Dep:
        def value(self) -> int:
            return 41

    @bentoml.service
    class Main:
        dep = bentoml.depends(Dep)

        @bentoml.on_startup
        def start(self) -> None:
            events.append("start")

        @bentoml.on_startup
        async def astart(self) -> None:
            events.append("astart")

        @bentoml.on_shutdown
        def stop(self) -> None:
            events.append("stop")

        @bentoml.api
        def f(self) -> int:
            return self.dep.value() + 1

    assert Main.startup_hooks == ["start", "astart"]
    assert Main.shutdown_hooks == ["stop"]
    inst = Main()
    assert inst.f() == 42
    from bentohost._worker import run_hooks

    asyncio.run(run_hooks(inst, Main.startup_hooks))
    assert events == ["start", "astart"]
    assert "dep" in Main.dependencies


def test_server_context_and_importing() -> None:
    assert bentoml.server_context.worker_index is None
    with bentoml.importing():
        import definitely_not_a_module_xyz  # type: ignore[import-not-found]  # noqa: F401
    bentoml.server_context.worker_index = 1
    try:
        with pytest.raises(ImportError):
            with bentoml.importing():
                import definitely_not_a_module_xyz  # type: ignore[import-not-found]  # noqa: F401,F811
    finally:
        bentoml.server_context.worker_index = None


def test_exceptions() -> None:
    ex = bentoml.exceptions
    assert ex.BentohostException is ex.BentoMLException
    assert int(ex.InvalidArgument.error_code) == 400
    assert int(ex.BadInput.error_code) == 400
    assert int(ex.NotFound.error_code) == 404
    assert int(ex.UnprocessableEntity.error_code) == 422
    assert int(ex.ServiceUnavailable.error_code) == 503
    assert int(ex.InternalServerError.error_code) == 500
    assert int(ex.BentoMLException.error_code) == 500
    assert bentoml.__version__ == "0.1.0"


# ------------------------------------------------------------------ input models


def test_input_model_object() -> None:
    spec = build_input(Demo.apis["echo"].func)
    assert spec.kind == "object" and spec.model is not None
    assert spec.model.__name__ == "Input"
    schema = spec.model.model_json_schema()
    assert schema["required"] == ["text"]
    assert schema["properties"]["times"]["default"] == 1


def test_input_model_field_defaults() -> None:
    spec = build_input(Demo.apis["with_field"].func)
    assert spec.decode(b"{}") == ((), {"n": 3, "scale": 2.0})
    with pytest.raises(pydantic.ValidationError):
        spec.decode(b'{"n": -1}')


def test_input_model_root_and_ctx() -> None:
    assert build_input(Demo.apis["root_text"].func).kind == "raw"
    assert build_input(Demo.apis["root_list"].func).kind == "root"
    assert build_input(Demo.apis["noargs"].func).kind == "none"
    spec = build_input(Demo.apis["with_ctx"].func, ctx_param="ctx")
    assert list(spec.model.model_fields) == ["x"]  # type: ignore[union-attr]

    def bad(self: Any, a: int, /, b: int) -> None: ...

    with pytest.raises(TypeError):
        build_input(bad)


def test_var_args_and_input_spec() -> None:
    def f(self: Any, a: int, *args: int, **kwargs: str) -> None: ...

    spec = build_input(f)
    assert spec.decode(b'{"a": 1, "args": [2, 3], "kwargs": {"k": "v"}}') == ((1, 2, 3), {"k": "v"})

    class Spec(pydantic.BaseModel):
        q: int

    spec2 = build_input(f, input_spec=Spec)
    assert spec2.decode(b'{"q": 5}') == ((), {"q": 5})


# ------------------------------------------------------------------ request handling


def test_handle_json_object() -> None:
    assert call("classify", '{"features": [[1, 2], [3]]}') == (200, "application/json", [4.0, 4.0])
    status, ct, out = call("echo", '{"text": "hi", "times": 3}')
    assert (status, ct, out) == (200, "text/plain; charset=utf-8", b"hihihi")


def test_output_stdlib_separators() -> None:
    eps = {ep.name: ep for ep in build_endpoints(Demo, Demo())}
    assert handle_request(eps["with_field"], b"{}")[2] == b'{"v": 6.0}'
    assert handle_request(eps["classify"], b'{"features": [[1], [2]]}')[2] == b"[2.0, 3.0]"
    assert handle_request(eps["model_out"], b'{"name": "x"}')[2] == b'{"name":"x","price":1.0}'
    assert handle_request(eps["models_out"], b"")[2] == b'[{"name": "a", "price": 1.0}, {"name": "b", "price": 2.0}]'


def test_handle_root_inputs() -> None:
    assert call("root_text", "héllo") == (200, "text/plain; charset=utf-8", "HÉLLO".encode())
    assert call("root_bytes", b"\x00\x01\x02") == (200, "application/json", 3)
    assert call("root_list", "[1, 2, 3]") == (200, "application/json", 6)


def test_handle_numpy() -> None:
    assert call("array", '{"x": [[1, 2], [3, 4]]}') == (200, "application/json", [[2, 4], [6, 8]])
    status, _, body = call("array", '{"x": [[1, 2], [3]]}')
    assert status == 400


def test_noargs_and_empty_body() -> None:
    assert call("noargs", b"") == (200, "application/json", {"ok": 1})
    assert call("noargs", b"{}") == (200, "application/json", {"ok": 1})
    assert call("with_field", b"") == (200, "application/json", {"v": 6.0})


def test_async_and_streams() -> None:
    assert call("aplus", '{"a": 40}') == (200, "application/json", 42)
    assert call("gen", '{"n": 2}') == (200, "text/event-stream; charset=utf-8", b"data: 0\n\ndata: 1\n\n")
    assert call("agen", '{"n": 3}') == (200, "text/event-stream; charset=utf-8", b"012")


def test_ctx_status_and_batchable() -> None:
    assert call("with_ctx", '{"x": 7}') == (201, "application/json", 7)
    # a request to a batchable API carries its own batch (BentoML wire contract)
    assert call("batch", '{"xs": [1, 2]}') == (200, "application/json", [2, 3])
    assert call("__call__", '{"x": 9}') == (200, "application/json", 9)


def test_validation_error_body() -> None:
    status, ct, body = call("echo", '{"times": "x"}')
    assert status == 400 and ct == "application/json"
    assert body["error"] == "2 validation error for Input"
    assert [d["loc"] for d in body["detail"]] == [["text"], ["times"]]
    for d in body["detail"]:
        assert set(d) == {"type", "loc", "msg", "url"}
    assert body["detail"][0]["type"] == "missing"


def test_malformed_json_is_400() -> None:
    status, _, body = call("echo", "{not json")
    assert status == 400
    assert body["error"] == "1 validation error for Input"
    assert body["detail"][0]["type"] == "json_invalid"


def test_compact_error_json() -> None:
    eps = {ep.name: ep for ep in build_endpoints(Demo, Demo())}
    raw = handle_request(eps["echo"], b"{}")[2]
    assert b'{"error":"1 validation error for Input","detail":[{"type":"missing"' in raw


def test_error_mapping(caplog: pytest.LogCaptureFixture) -> None:
    assert call("fail", '{"kind": "bad"}') == (400, "application/json", [{"error": "bad thing"}])
    assert call("fail", '{"kind": "nf"}') == (404, "application/json", [{"error": "missing"}])
    assert call("fail", '{"kind": "auth"}') == (403, "application/json", {"error": "Authorization error"})
    assert call("fail", '{"kind": "unavail"}') == (503, "application/json", GENERIC_500)
    assert call("fail", '{"kind": "crash"}') == (500, "application/json", GENERIC_500)
    assert "RuntimeError: boom" in caplog.text


def test_error_response_direct() -> None:
    assert error_response(bentoml.exceptions.UnprocessableEntity("x"))[0] == 422
    auth = error_response(bentoml.exceptions.BentoMLException("x", error_code=401))
    assert auth == (401, "application/json", b'{"error":"Authorization error"}', None)


def test_pickle_refused() -> None:
    status, _, body = call("echo", b"x", "application/vnd.bentoml+pickle")
    assert status == 415
    # an unknown content type falls back to JSON
    assert call("echo", '{"text": "a"}', "text/plain")[0] == 200


# ------------------------------------------------------------------ config JSON


def test_config_json() -> None:
    cfg = json.loads(_config.service_config_json(Demo))
    assert list(cfg) == ["name", "workers", "threads", "traffic", "resources", "envs", "ssl", "apis", "cors"]
    assert cfg["cors"] is None  # http.cors off
    assert cfg["name"] == "Demo" and cfg["workers"] == 2 and cfg["threads"] == 4
    assert cfg["traffic"] == {"timeout": 10.0, "max_concurrency": 8, "concurrency": None}
    assert cfg["resources"] == {"cpu": "2"}
    assert cfg["envs"] == []
    names = [a["name"] for a in cfg["apis"]]
    assert names == list(Demo.apis)
    first = cfg["apis"][0]
    assert set(first) == {
        "name",
        "route",
        "is_async",
        "is_stream",
        "needs_request",
        "batchable",
        "batch_dim",
        "batch_field",
        "batch_root",
        "max_batch_size",
        "max_latency_ms",
        "rows",
    }
    by_name = {a["name"]: a for a in cfg["apis"]}
    assert by_name["batch"]["rows"] is None  # a list input: Python decodes each member
    assert by_name["batch"]["batchable"] and by_name["batch"]["max_batch_size"] == 8
    assert by_name["batch"]["batch_field"] == "xs" and by_name["batch"]["batch_root"] is False
    assert by_name["with_ctx"]["needs_request"] is True and by_name["echo"]["needs_request"] is False
    assert by_name["batch"]["batch_dim"] == [0, 0]
    assert by_name["__call__"]["route"] == "/"
    assert by_name["agen"]["is_async"] and by_name["agen"]["is_stream"]


def test_config_defaults_and_prefix() -> None:
    @bentoml.service(path_prefix="/p/")
    class S:
        @bentoml.api
        def f(self) -> int:
            return 1

    cfg = json.loads(_config.service_config_json(S))
    assert cfg["workers"] == 1 and cfg["threads"] == 1
    assert cfg["traffic"] == {"timeout": 60.0, "max_concurrency": None, "concurrency": None}
    assert cfg["apis"][0]["route"] == "/p/f"


def test_config_threads_from_concurrency() -> None:
    @bentoml.service(workers=3, traffic={"concurrency": 8})
    class C:
        @bentoml.api(batchable=True)
        def f(self, xs: list[int], /) -> list[int]:
            return xs

    cfg = _config.service_config(C)
    assert cfg["threads"] == 3  # ceil(8 / 3)
    assert cfg["apis"][0]["batch_root"] is True and cfg["apis"][0]["batch_field"] is None
    assert _config.effective_threads(5, 8, 3) == 5
    assert _config.effective_threads(None, None, 3) == 1
    assert _config.effective_threads(None, 2, 4) == 1


def test_config_cpu_count_workers() -> None:
    @bentoml.service(workers="cpu_count")
    class S:
        pass

    assert json.loads(_config.service_config_json(S))["workers"] == _config.cpu_count() >= 1


def test_cpu_count_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cpu.max").write_text("150000 100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/a\n")
    assert _config.cgroup_cpu_limit(str(tmp_path), str(proc)) == 1.5
    assert _config.cpu_count(str(tmp_path), str(proc)) == 1
    (tmp_path / "a" / "cpu.max").write_text("max 100000\n")
    assert _config.cgroup_cpu_limit(str(tmp_path), str(proc)) is None
    assert _config.cpu_count(str(tmp_path), str(proc)) == len(os.sched_getaffinity(0))


def test_cpu_count_cgroup_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:cpu,cpuacct:/\n")
    assert _config.cgroup_cpu_limit(str(tmp_path), str(proc)) == 0.5
    assert _config.cpu_count(str(tmp_path), str(proc)) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _config.cgroup_cpu_limit(str(tmp_path), str(proc)) is None


# ------------------------------------------------------------------ target resolution

SERVICE_SRC = textwrap.dedent(
    """
    import bentohost as bentoml

    @bentoml.service
    class {name}:
        @bentoml.api
        def hello(self) -> str:
            return "hi from {name}"
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for mod in ("service", "svcmod", "other"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    return tmp_path


def test_target_module_attr(project: Path) -> None:
    (project / "svcmod.py").write_text(SERVICE_SRC.format(name="Alpha"))
    svc = _loader.load_service("svcmod:Alpha")
    assert svc.name == "Alpha" and sys.path[0] == str(project)


def test_target_module_only(project: Path) -> None:
    (project / "svcmod.py").write_text(SERVICE_SRC.format(name="Beta"))
    assert _loader.load_service("svcmod").name == "Beta"


def test_target_file_path(project: Path) -> None:
    sub = project / "sub"
    sub.mkdir()
    (sub / "other.py").write_text(SERVICE_SRC.format(name="Gamma"))
    assert _loader.load_service("sub/other.py:Gamma").name == "Gamma"
    assert sys.path[0] == str(sub)
    sys.modules.pop("other", None)
    assert _loader.load_service("sub/other.py").name == "Gamma"


def test_target_directory(project: Path) -> None:
    sub = project / "proj"
    sub.mkdir()
    (sub / "service.py").write_text(SERVICE_SRC.format(name="Delta"))
    assert _loader.load_service("proj").name == "Delta"
    sys.modules.pop("service", None)
    os.chdir(sub)
    assert _loader.load_service(".").name == "Delta"


def test_target_errors(project: Path) -> None:
    (project / "svcmod.py").write_text("X = 1\n")
    with pytest.raises(_loader.TargetError):
        _loader.load_service("svcmod")
    with pytest.raises(_loader.TargetError):
        _loader.load_service("svcmod:X")
    with pytest.raises(_loader.TargetError):
        _loader.load_service("missing.py:Y")
    with pytest.raises(ImportError):
        _loader.load_service("not_a_module_abc:Y")


def test_target_picks_root_of_graph(project: Path) -> None:
    (project / "svcmod.py").write_text(
        textwrap.dedent(
            """
            import bentohost as bentoml

            @bentoml.service
            class Leaf:
                pass

            @bentoml.service
            class Root:
                leaf = bentoml.depends(Leaf)
            """
        )
    )
    assert _loader.load_service("svcmod").name == "Root"


def test_guess_service_name() -> None:
    assert _loader.guess_service_name("a/b.py:Svc") == "Svc"
    assert _loader.guess_service_name("mod") is None


# ------------------------------------------------------------------ worker loop with a fake host


class FakeHost:
    worker_index = 1
    target = "x"
    reporter = False

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches
        self.done: dict[int, tuple[int, str, bytes]] = {}
        self.headers: dict[int, str] = {}
        self.streams: dict[int, list[Any]] = {}
        self.ready: list[bool] = []
        self.alive: list[bool] = []
        self.rfd, self.wfd = os.pipe()

    def publish(self, config_json: str) -> None:
        pass

    def set_ready(self, flag: bool) -> None:
        self.ready.append(flag)

    def set_alive(self, flag: bool) -> None:
        self.alive.append(flag)

    def eventfd(self) -> int:
        return self.rfd

    def take(self) -> list[tuple[int, int, Any, Any, Any]] | None:
        os.set_blocking(self.rfd, False)
        try:
            os.read(self.rfd, 64)
        except BlockingIOError:
            pass
        if not self.batches:
            return []
        item = self.batches.pop(0)
        if item is None:
            self.batches.insert(0, None)
        elif not item and self.batches:
            os.write(self.wfd, b"x")  # like C: a later request writes the eventfd
        return item

    def complete(self, handle: int, status: int, content_type: str, body: bytes, headers: str | None = None) -> None:
        assert handle not in self.done, "complete() called twice"
        self.done[handle] = (status, content_type, body)
        if headers is not None:
            self.headers[handle] = headers

    def stream_start(self, handle: int, status: int, content_type: str, headers: str | None = None) -> None:
        assert handle not in self.done and handle not in self.streams
        self.streams[handle] = [status, content_type, headers, []]

    def stream_write(self, handle: int, data: bytes | str) -> int:
        self.streams[handle][3].append(data.encode() if isinstance(data, str) else data)
        return 0

    def stream_end(self, handle: int) -> None:
        assert handle not in self.done, "final message sent twice"
        st = self.streams[handle]
        self.done[handle] = (st[0], st[1], b"".join(st[3]))


def test_worker_runtime_with_fake_host() -> None:
    idx = {name: i for i, name in enumerate(Demo.apis)}
    reqs = [(i, idx["classify"], b'{"features": [[1]]}', None, None) for i in range(50)]
    reqs += [(100 + i, idx["aplus"], b'{"a": 1}', "application/json", None) for i in range(20)]
    reqs += [(200, idx["fail"], b'{"kind": "bad"}', None, None), (201, 999, b"", None, None)]
    host = FakeHost([reqs[:30], reqs[30:], [], None])
    shutdown: list[str] = []

    @bentoml.service(threads=3)
    class Wrapped(Demo.inner):  # type: ignore[misc,name-defined]
        @bentoml.on_shutdown
        def bye(self) -> None:
            shutdown.append("bye")

        def __is_ready__(self) -> bool:
            return True

    loop = asyncio.new_event_loop()
    inst = Wrapped()
    eps = build_endpoints(Wrapped, inst)
    assert [e.name for e in eps][: len(Demo.apis)] == list(Demo.apis)
    rt = WorkerRuntime(host, Wrapped, inst, eps, 3, loop)
    rt.start()
    loop.call_later(5, loop.stop)  # safety net
    loop.run_forever()
    loop.close()
    assert len(host.done) == 72
    assert host.done[0] == (200, "application/json", b"[2.0]")
    assert host.done[100] == (200, "application/json", b"3")
    assert host.done[200][0] == 400
    assert host.done[201][0] == 500
    assert host.ready and host.ready[0] is True
    assert shutdown == ["bye"]


def test_thread_pool_one_put_per_batch() -> None:
    done: list[int] = []

    def job(handle: int, x: Any, body: Any, ct: Any, meta: Any) -> None:
        done.append(handle)

    pool = ThreadPool(1)
    pool.submit_many([(job, i, None, b"x", None, None) for i in range(10)])
    assert pool._wake.qsize() <= 1
    pool.stop()
    pool.join(5)
    assert sorted(done) == list(range(10))


# ------------------------------------------------------------------ CLI


def test_cli_parse_size() -> None:
    from bentohost.cli import parse_size

    assert parse_size("100MiB") == 100 << 20
    assert parse_size("64KiB") == 64 << 10
    assert parse_size("1G") == 1 << 30
    assert parse_size("512k") == 512 << 10
    assert parse_size("2MB") == 2 << 20
    assert parse_size("4096") == 4096


def test_cli_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    from bentohost import cli

    args = cli._parser().parse_args(["serve", "svc:Demo", "--port", "3123", "--max-body-size", "1M"])
    argv = cli.build_host_argv("/bin/host", args)
    assert argv[:4] == ["/bin/host", "serve", "--target", "svc:Demo"]
    opts = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert opts["--python"] == sys.executable and opts["--prefix"] == sys.prefix
    assert opts["--port"] == "3123" and opts["--workers"] == "0" and opts["--backlog"] == "2048"
    assert opts["--max-body-size"] == str(1 << 20) and opts["--max-header-size"] == str(64 << 10)
    assert opts["--timeout-keep-alive"] == "5" and opts["--timeout-graceful-shutdown"] == "30"
    assert opts["--host"] == "0.0.0.0"


def test_cli_missing_target_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bentohost import cli

    assert cli.main(["serve", "nope.py:X"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.py" in err


def test_cli_pythonpath() -> None:
    from bentohost import cli

    pp = cli.pythonpath_for_workers({"PYTHONPATH": "/x"})
    pkg_parent = str(Path(bentoml.__file__).resolve().parent.parent)
    assert pp is not None and (pp.split(os.pathsep)[0] == pkg_parent or pp == "/x")


def test_cli_does_not_import_heavy_modules() -> None:
    import subprocess

    code = "import sys, bentohost.cli; print(sorted(m for m in ('pydantic', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_annotated_content_type_output() -> None:
    @bentoml.service
    class H:
        @bentoml.api
        def page(self) -> Annotated[str, ContentType("text/html")]:
            return "<b>x</b>"

    (ep,) = build_endpoints(H, H())
    assert handle_request(ep, b"") == (200, "text/html; charset=utf-8", b"<b>x</b>", None)  # Starlette adds the charset


# ------------------------------------------------------------------ main() with a fake _bentohost


def _run_main(monkeypatch: pytest.MonkeyPatch, target: str, batches: list[Any]) -> tuple[int, FakeHost]:
    from bentohost import _worker

    host = FakeHost(batches)
    host.target = target
    published: list[str] = []
    host.publish = published.append  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "_bentohost", host)
    monkeypatch.setattr(bentoml.server_context, "worker_index", None)
    rc = _worker.main()
    host.published = published  # type: ignore[attr-defined]
    return rc, host


def test_main_serves_and_stops(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "svcmod.py").write_text(SERVICE_SRC.format(name="Main1"))
    rc, host = _run_main(monkeypatch, "svcmod:Main1", [[(7, 0, b"", None, None)], None])
    assert rc == 0
    assert host.done[7] == (200, "text/plain; charset=utf-8", b"hi from Main1")
    assert json.loads(host.published[0])["apis"][0]["route"] == "/hello"  # type: ignore[attr-defined]
    assert bentoml.server_context.worker_index == 1
    assert bentoml.server_context.service_name == "Main1"


def test_main_import_error(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "svcmod.py").write_text("import not_a_module_abc\n")
    rc, _ = _run_main(monkeypatch, "svcmod", [None])
    assert rc == 3
    assert capsys.readouterr().err.count("Traceback") == 1


def test_main_startup_error(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "svcmod.py").write_text(
        textwrap.dedent(
            """
            import bentohost as bentoml

            @bentoml.service
            class Boom:
                @bentoml.on_startup
                async def start(self):
                    raise RuntimeError("no model")
            """
        )
    )
    rc, host = _run_main(monkeypatch, "svcmod", [None])
    assert rc == 4
    assert "no model" in capsys.readouterr().err
    assert host.published  # type: ignore[attr-defined]


# ------------------------------------------------------------------ contract v2 with a fake host


class FakeHost2(FakeHost):
    """Records every call; ``stream_write`` answers from ``write_rc`` (default 0)."""

    def __init__(self, batches: list[Any]) -> None:
        super().__init__(batches)
        self.write_rc: list[int] = []
        self.beats = 0
        self.documents: dict[str, tuple[str, bytes]] = {}
        self.finals: list[int] = []

    def heartbeat(self) -> None:
        self.beats += 1

    def set_document(self, path: str, ctype: str, body: bytes) -> None:
        self.documents[path] = (ctype, body)

    def complete(self, handle: int, status: int, content_type: str, body: bytes, headers: str | None = None) -> None:
        self.finals.append(handle)
        super().complete(handle, status, content_type, body, headers)

    def stream_write(self, handle: int, data: bytes | str) -> int:
        super().stream_write(handle, data)
        return self.write_rc.pop(0) if self.write_rc else 0

    def stream_end(self, handle: int) -> None:
        self.finals.append(handle)
        super().stream_end(handle)

    def push(self, entries: list[Any]) -> None:
        self.batches.append(entries)
        os.write(self.wfd, b"x")


@bentoml.service(threads=2)
class Contract:
    def __init__(self) -> None:
        self.events: list[str] = []

    @bentoml.api
    def gen(self, n: int) -> Generator[str, None, None]:
        try:
            for i in range(n):
                yield f"{i};"
        finally:
            self.events.append("gen-closed")

    @bentoml.api
    async def agen(self, n: int) -> AsyncGenerator[Any, None]:
        try:
            for i in range(n):
                yield {"i": i}
                await asyncio.sleep(0)
        finally:
            self.events.append("agen-closed")

    @bentoml.api
    async def slow(self) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.events.append("slow-cancelled")
            raise
        return "late"

    @bentoml.api
    def gen_fail(self) -> Generator[str, None, None]:
        raise bentoml.exceptions.InvalidArgument("nope")
        yield "x"

    @bentoml.api(batchable=True)
    def double(self, xs: list[int]) -> list[int]:
        self.events.append(f"batch-{len(xs)}")
        return [2 * x for x in xs]

    @bentoml.api(batchable=True, batch_dim=(0, 0))
    def arr(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] > 100:
            raise RuntimeError("too big")
        return x + 1

    @bentoml.api
    def ctx_api(self, ctx: bentoml.Context) -> dict[str, Any]:
        ctx.response.headers["X-A"] = "1"
        ctx.response.set_cookie("k", "v")
        return {"ua": ctx.request.headers.get("user-agent"), "q": dict(ctx.request.query_params)}


def _run_runtime(host: FakeHost2, until: Callable[[], bool], timeout: float = 5.0) -> Any:
    loop = asyncio.new_event_loop()
    inst = Contract()
    eps = build_endpoints(Contract, inst)
    rt = WorkerRuntime(host, Contract, inst, eps, 2, loop)
    rt.start()

    def check() -> None:
        if until():
            host.batches.append(None)
            os.write(host.wfd, b"x")
        else:
            loop.call_later(0.01, check)

    loop.call_later(0.01, check)
    loop.call_later(timeout, loop.stop)
    loop.run_forever()
    loop.close()
    return inst


from collections.abc import Callable  # noqa: E402

IDX = {name: i for i, name in enumerate(Contract.apis)}


def test_streams_sync_and_async_fake_host() -> None:
    host = FakeHost2([[(1, IDX["gen"], b'{"n": 3}', None, None), (2, IDX["agen"], b'{"n": 2}', None, None),
                      (3, IDX["gen_fail"], b"{}", None, None), (4, IDX["gen"], b'{"n": "x"}', None, None)]])
    _run_runtime(host, lambda: len(host.done) == 4)
    assert host.done[1] == (200, "text/event-stream; charset=utf-8", b"0;1;2;")
    assert host.done[2][2] == b'{"i": 0}{"i": 1}'
    assert host.done[3][0] == 400 and 3 not in host.streams
    assert host.done[4][0] == 400
    assert sorted(host.finals) == [1, 2, 3, 4]  # exactly one final message each
    assert host.beats >= 1


def test_sync_stream_backpressure_and_cancel_fake_host() -> None:
    host = FakeHost2([[(1, IDX["gen"], b'{"n": 1000}', None, None)]])
    host.write_rc = [0, 1]  # the second write fills the buffer

    inst_box: list[Any] = []

    def until() -> bool:
        st = host.streams.get(1)
        if st is None or len(st[3]) < 2:
            return False
        if not inst_box:
            inst_box.append(True)
            time.sleep(0.1)
            assert len(host.streams[1][3]) == 2  # paused: no more next()
            host.push([(1, -2, None, None, None)])  # writable: go on
            host.write_rc = [0, 0, -1]  # then the client goes away
            return False
        return 1 in host.done

    inst = _run_runtime(host, until)
    assert len(host.streams[1][3]) == 5
    assert "gen-closed" in inst.events
    assert host.finals == [1]


def test_async_cancel_fake_host() -> None:
    # 1 and 2 run, then are cancelled; 3 is cancelled before its task ever ran
    host = FakeHost2([[(1, IDX["slow"], b"{}", None, None), (2, IDX["slow"], b"{}", None, None)]])
    sent: list[bool] = []

    def until() -> bool:
        if not sent:
            sent.append(True)
            host.push([(1, -1, None, None, None), (2, -1, None, None, None)])
            host.push([(3, IDX["slow"], b"{}", None, None), (3, -1, None, None, None)])
        return len(host.done) == 3

    inst = _run_runtime(host, until)
    assert inst.events.count("slow-cancelled") == 2
    assert sorted(host.finals) == [1, 2, 3]


def test_async_stream_cancel_fake_host() -> None:
    host = FakeHost2([[(1, IDX["agen"], b'{"n": 100000}', None, None)]])
    sent: list[bool] = []

    def until() -> bool:
        if not sent and 1 in host.streams and len(host.streams[1][3]) > 3:
            sent.append(True)
            host.push([(1, -1, None, None, None)])
        return 1 in host.done

    inst = _run_runtime(host, until)
    assert "agen-closed" in inst.events and host.finals == [1]


def test_batch_entries_fake_host() -> None:
    bodies = [b'{"xs": [1, 2]}', b'{"xs": "bad"}', b'{"xs": [3]}']
    arr_bodies = [b'{"x": [[1], [2]]}', b'{"x": [[3]]}']
    big = json.dumps({"x": [[0]] * 101}).encode()
    host = FakeHost2([[(10, IDX["double"], bodies, [None] * 3, [10, 11, 12]),
                       (20, IDX["arr"], arr_bodies, ["application/json"] * 2, [20, 21]),
                       (30, IDX["arr"], [big, b'{"x": [[1]]}'], [None, None], [30, 31])]])
    inst = _run_runtime(host, lambda: len(host.done) == 7)
    assert host.done[10] == (200, "application/json", b"[2, 4]")
    assert host.done[11][0] == 400
    assert host.done[12] == (200, "application/json", b"[6]")
    assert json.loads(host.done[20][2]) == [[2.0], [3.0]] and json.loads(host.done[21][2]) == [[4.0]]
    assert host.done[30][0] == host.done[31][0] == 500
    assert "batch-3" in inst.events  # one call for both valid members


def test_context_with_meta_fake_host() -> None:
    head = b"POST /ctx_api?a=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: ua/1\r\n"
    host = FakeHost2([[(1, IDX["ctx_api"], b"{}", "application/json", (head, "127.0.0.1:5555", None, None))]])
    _run_runtime(host, lambda: 1 in host.done)
    assert json.loads(host.done[1][2]) == {"ua": "ua/1", "q": {"a": "1"}}
    assert host.headers[1] == "X-A: 1\r\nset-cookie: k=v; Path=/; SameSite=lax\r\n"


def test_documents_registered(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bentohost import _worker

    (project / "svcmod.py").write_text(SERVICE_SRC.format(name="Docs1"))
    host = FakeHost2([None])
    host.target = "svcmod:Docs1"
    monkeypatch.setitem(sys.modules, "_bentohost", host)
    monkeypatch.setattr(bentoml.server_context, "worker_index", None)
    assert _worker.main() == 0
    assert json.loads(host.documents["/schema.json"][1])["name"] == "Docs1"
    assert json.loads(host.documents["/docs.json"][1])["openapi"] == "3.0.2"
    ui = Path(bentoml.__file__).parent / "ui" / "index.html"
    assert ("/" in host.documents) == ui.exists()


# ------------------------------------------------------------------ decoding and headers without a server


def test_request_parsing_and_headers() -> None:
    from bentohost._context import Context, Headers

    ctx = Context((b"GET /p%20q?x=1&x=2 HTTP/1.1\r\nCookie: a=1; b=\"two\"\r\nX-Y: z\r\n", "[::1]:80", None, None))
    req = ctx.request
    assert req.method == "GET" and req.url.path == "/p q" and req.query_params.getlist("x") == ["1", "2"]
    assert req.cookies == {"a": "1", "b": "two"} and req.headers["x-y"] == "z" and req.metadata["X-Y"] == "z"
    assert req.client == ("::1", 80)
    h = Headers()
    h["A"] = "1"
    h.append("a", "2")
    assert h.getlist("A") == ["1", "2"] and h["a"] == "1" and list(h) == ["a"]
    d = ctx.temp_dir
    assert os.path.isdir(d)
    ctx.close()
    assert not os.path.exists(d)


def test_header_lines_are_safe() -> None:
    from bentohost._io import build_headers, header_line

    assert header_line("X-A", "b") == "X-A: b\r\n"
    for name, value in (("X-A", "b\r\nEvil: 1"), ("X A", "b"), ("X-A", "b\nc"), ("", "x"), ("X:A", "b")):
        with pytest.raises(ValueError):
            header_line(name, value)
    assert build_headers([]) is None


def test_numpy_fast_path_decoding() -> None:
    import io

    @bentoml.service
    class N:
        @bentoml.api
        def root(self, x: Annotated[np.ndarray, bentoml.validators.DType("float32"), bentoml.validators.Shape((2, 2))], /) -> float:
            return float(x.sum())

        @bentoml.api
        def field(self, x: np.ndarray) -> list[int]:
            return list(x.shape)

    eps = {e.name: e for e in build_endpoints(N, N())}
    raw = np.arange(4, dtype=np.float32).tobytes()
    assert handle_request(eps["root"], raw, "application/octet-stream")[2] == b"6.0"
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 5), dtype=np.uint8))
    assert handle_request(eps["field"], buf.getvalue(), "application/x-npy")[2] == b"[3, 5]"
    # no dtype declared: octet-stream is refused with a 400
    assert handle_request(eps["field"], b"\x00" * 4, "application/octet-stream")[0] == 400
    assert handle_request(eps["root"], b"\x00" * 3, "application/octet-stream")[0] == 400


def test_multipart_parts_decoding(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hi")

    @bentoml.service
    class M:
        @bentoml.api
        def up(self, doc: Annotated[Path, ContentType("text/plain")], n: int = 0, tags: list[str] = []) -> dict:
            return {"text": doc.read_text(), "n": n, "tags": tags}

    (ep,) = build_endpoints(M, M())
    parts = [("doc", "a.txt", "text/plain", str(f), None), ("n", None, None, None, b"3"),
             ("tags", None, None, None, b"x"), ("tags", None, None, None, b'"y"')]
    st, _, out, _ = handle_request(ep, None, "multipart/form-data; boundary=x", (b"", "c:1", str(tmp_path), parts))
    assert st == 200 and json.loads(out) == {"text": "hi", "n": 3, "tags": ["x", "y"]}
    parts[0] = ("doc", "a.png", "image/png", str(f), None)
    st, _, out, _ = handle_request(ep, None, "multipart/form-data; boundary=x", (b"", "c:1", str(tmp_path), parts))
    assert st == 400 and json.loads(out)["detail"][0]["loc"] == ["doc"]


def test_json_answers_are_the_standard_librarys_and_the_encoder_is_shared_safely():
    """bentohost._io keeps one C encoder for every answer: the text is json.dumps's for
    every kind of value, and threads encoding at once do not disturb each other."""
    import threading

    from bentohost._io import dumps_json

    class Point(pydantic.BaseModel):
        x: int

    values = [
        {"message": "Hello, bento!"}, "é ☃ \n \"quoted\"", [1.5, -0.0, 1e300, 3, True, None],
        [float("nan"), float("inf"), float("-inf")], {"nested": {"a": [1, {"b": "c"}]}, 1: 2},
        (1, 2), 7, 2.5, "",
    ]
    for value in values:
        assert dumps_json(value) == json.dumps(value).encode(), value
    assert dumps_json({"a": np.arange(3, dtype=np.int64)}) == b'{"a": [0, 1, 2]}'
    assert dumps_json([Point(x=1)]) == b'[{"x": 1}]'
    with pytest.raises(Exception):
        dumps_json({"x": object()})
    # a failure mid-way leaves nothing behind for the next answer
    assert dumps_json([[1], [2]]) == b"[[1], [2]]"

    big = {f"k{i}": [i, str(i), {"v": i / 3}] for i in range(200)}
    expected = json.dumps(big).encode()
    wrong: list[bytes] = []

    def encode_many() -> None:
        for _ in range(300):
            out = dumps_json(big)
            if out != expected:
                wrong.append(out)

    threads = [threading.Thread(target=encode_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
