"""bentohost.client: SyncHTTPClient / AsyncHTTPClient.

Unit tests of request building and response decoding (no server), a few behaviours checked
against a tiny in-process HTTP server (readiness polling, odd status codes, name clashes), and
end-to-end calls of every IO type of tests/services/client_io.py served by bentohost.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SERVICES, base_env, free_port

from bentohost import exceptions as exc
from bentohost.client import AsyncHTTPClient, SyncHTTPClient
from bentohost.client import _common as common

sys.path.insert(0, str(SERVICES))
import client_checks  # noqa: E402


def ep(input_schema, output=None, name="f", route=None):
    return common.ClientEndpoint.from_schema(
        {"name": name, "route": route or f"/{name}", "input": input_schema, "output": output or {}}
    )


OBJ = {
    "properties": {
        "text": {"title": "Text", "type": "string"},
        "n": {"default": 3, "title": "N", "type": "integer"},
    },
    "required": ["text"],
    "title": "Input",
    "type": "object",
}


def build(endpoint, *args, **kwargs):
    fm = common.FileManager()
    try:
        return common.build_request_spec(endpoint, args, kwargs, fm)
    finally:
        fm.close()


# --------------------------------------------------------------------------- import cost


def test_import_is_cheap():
    code = (
        "import sys, bentohost, bentohost.client; "
        "heavy = [m for m in ('httpx', 'numpy', 'pandas', 'PIL', 'pydantic') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], env=base_env(), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- request building


def test_positional_args_map_onto_properties_in_order():
    spec = build(ep(OBJ), "hi", 5)
    assert json.loads(spec.content) == {"text": "hi", "n": 5}
    assert spec.headers["Content-Type"] == "application/json"
    assert spec.path == "/f"


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((), {}, "Missing required"),
        ((), {"n": 1}, "Missing required"),
        (("a",), {"bogus": 1}, "not found"),
        (("a",), {"text": "b"}, "multiple values"),
        (("a", 1, 2), {}, "positional"),
    ],
)
def test_bad_arguments_raise_type_error(args, kwargs, match):
    with pytest.raises(TypeError, match=match):
        build(ep(OBJ), *args, **kwargs)


def test_json_body_encodes_numpy_dataframe_and_pydantic():
    pd = pytest.importorskip("pandas")
    from pydantic import BaseModel

    class P(BaseModel):
        x: int

    schema = {
        "properties": {
            "arr": {"type": "tensor", "format": "numpy-array", "dtype": "float32"},
            "rec": {"type": "dataframe", "orient": "records"},
            "cols": {"type": "dataframe", "orient": "columns"},
            "p": {"properties": {"x": {"type": "integer"}}, "type": "object"},
            "ps": {"items": {"properties": {"x": {"type": "integer"}}, "type": "object"}, "type": "array"},
            "scalar": {"type": "number"},
        },
        "type": "object",
    }
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    spec = build(
        ep(schema), np.arange(4).reshape(2, 2), df, df, P(x=1), [P(x=2)], np.float32(1.5)
    )
    assert json.loads(spec.content) == {
        "arr": [[0, 1], [2, 3]],
        "rec": [{"a": 1, "b": 3}, {"a": 2, "b": 4}],
        "cols": {"a": [1, 2], "b": [3, 4]},
        "p": {"x": 1},
        "ps": [{"x": 2}],
        "scalar": 1.5,
    }


def test_multipart_when_a_property_is_a_file(tmp_path):
    f = tmp_path / "doc.txt"
    f.write_text("abc")
    schema = {
        "properties": {
            "document": {"type": "file", "format": "binary"},
            "note": {"type": "string"},
            "meta": {"type": "object"},
        },
        "required": ["document"],
        "type": "object",
    }
    fm = common.FileManager()
    spec = common.build_request_spec(ep(schema), (f,), {"note": "hi", "meta": {"k": 1}}, fm)
    assert spec.data == {"note": '"hi"', "meta": '{"k": 1}'}
    assert [(name, part[0], part[2]) for name, part in spec.files] == [("document", "doc.txt", "text/plain")]
    assert spec.files[0][1][1].read() == b"abc"
    assert "Content-Type" not in spec.headers  # httpx sets the multipart boundary
    fm.close()
    assert spec.files[0][1][1].closed


def test_multipart_file_kinds(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    schema = {"properties": {"files": {"type": "array", "items": {"type": "file"}}}, "type": "object"}
    img = PIL.new("RGB", (2, 2), (1, 2, 3))  # in memory: no filename, no format
    with open(tmp_path / "a.json", "wb") as fobj:
        fobj.write(b"{}")
    with open(tmp_path / "a.json", "rb") as fobj:
        spec = build(ep(schema), [img, b"raw", fobj, str(tmp_path / "a.json"), "https://example.com/x.png"])
    parts = [(name, p[0], p[2]) for name, p in spec.files]
    assert parts == [
        ("files", "upload-image.png", "image/png"),
        ("files", "upload-file", "application/octet-stream"),
        ("files", "a.json", "application/json"),
        ("files", "a.json", "application/json"),
    ]
    assert spec.data == {"files": "https://example.com/x.png"}


def test_root_inputs(tmp_path):
    text = ep({"type": "string", "root_input": True})
    spec = build(text, "héllo")
    assert spec.content == "héllo".encode() and spec.headers["Content-Type"] == "text/plain"
    spec = build(text, b"\x00\x01")
    assert spec.content == b"\x00\x01"
    with pytest.raises(TypeError):
        build(text, "a", "b")
    with pytest.raises(TypeError):
        build(text, text="a")

    tensor = ep({"type": "tensor", "root_input": True})
    spec = build(tensor, np.ones(2))
    assert json.loads(spec.content) == [1.0, 1.0] and spec.headers["Content-Type"] == "application/json"

    f = tmp_path / "pic.png"
    f.write_bytes(b"\x89PNG....")
    spec = build(ep({"type": "file", "format": "image", "root_input": True}), f)
    assert spec.stream_file and spec.headers["Content-Type"] == "image/png"

    model = ep({"properties": {"a": {"type": "integer"}}, "required": ["a"], "type": "object", "root_input": True})
    assert json.loads(build(model, {"a": 1}).content) == {"a": 1}

    spec = build(ep({"root_input": True, "type": "string"}))
    assert spec.content is None


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, exc.InvalidArgument),
        (401, exc.Unauthorized),
        (403, exc.Forbidden),
        (404, exc.NotFound),
        (422, exc.UnprocessableEntity),
        (500, exc.InternalServerError),
        (503, exc.ServiceUnavailable),
        (429, exc.BentoMLException),
        (599, exc.BentoMLException),
        (499, exc.BentoMLException),
    ],
)
def test_map_exception(status, cls):
    e = common.map_exception(status, '{"error":"nope"}')
    assert type(e) is cls
    assert int(e.error_code) == status
    assert e.status_code == status
    assert "nope" in str(e) and e.message == '{"error":"nope"}'


def test_decode_body():
    h = {"content-type": "application/json"}
    assert common.decode_body(ep({}, {"type": "string"}), "é".encode(), {"content-type": "text/plain"}) == "é"
    assert common.decode_body(ep({}, {"type": "string", "format": "binary"}), b"\xff", {}) == b"\xff"
    arr = common.decode_body(ep({}, {"type": "tensor", "dtype": "float32"}), b"[[1, 2]]", h)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (1, 2)
    assert common.decode_body(ep({}, {"type": "object"}), b'{"a": [1]}', h) == {"a": [1]}
    assert common.decode_body(ep({}, {"type": "integer"}), b"3", h) == 3
    assert common.decode_body(ep({}, {}), b"not json", h) == "not json"  # Any output returning str
    assert common.decode_body(ep({}, {}), b"", h) is None


def test_decode_dataframe():
    pd = pytest.importorskip("pandas")
    df = common.decode_body(
        ep({}, {"type": "dataframe", "orient": "columns"}), b'{"a": [1, 2]}', {"content-type": "application/json"}
    )
    assert isinstance(df, pd.DataFrame) and df["a"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "header, name",
    [
        ('attachment; filename="out.txt"', "out.txt"),
        ("inline; filename=pic.png", "pic.png"),
        ("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename=".."', None),
        ("attachment", None),
        (None, None),
    ],
)
def test_filename_from_disposition(header, name):
    assert common.filename_from_disposition(header) == name


def test_decode_file(tmp_path):
    out = common.decode_file(
        ep({}, {"type": "file"}), b"data", {"content-disposition": 'attachment; filename="r.csv"'}, str(tmp_path)
    )
    assert out.name == "r.csv" and out.read_bytes() == b"data" and tmp_path in out.parents
    out = common.decode_file(ep({}, {"type": "file"}), b"x", {"content-type": "application/json"}, str(tmp_path))
    assert out.name == "output.json"
    PIL = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    PIL.new("L", (3, 1), 7).save(buf, format="PNG")
    # a lying content type still decodes
    img = common.decode_file(ep({}, {"type": "file", "pil": True}), buf.getvalue(), {"content-type": "image/jpeg"}, "")
    assert img.size == (3, 1)


def test_stream_decoder_keeps_utf8_across_chunks():
    d = common.StreamDecoder(ep({}, {"type": "string", "is_stream": True}), {})
    data = "héllo→".encode()
    pieces = [d.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(p for p in pieces if p) + (d.finish() or "") == "héllo→"
    b = common.StreamDecoder(ep({}, {"type": "object", "is_stream": True}), {})
    assert b.feed(b"{}") == b"{}" and b.feed(b"") is None


# --------------------------------------------------------------------------- a fake server


class _Fake:
    def __init__(self):
        self.ready_after = 0.0
        self.readyz_hits = 0
        self.started = time.monotonic()
        self.schema = {
            "name": "Fake",
            "type": "service",
            "routes": [
                {"name": "url", "route": "/url", "input": {"properties": {}, "type": "object"},
                 "output": {"type": "string"}, "batchable": False, "is_task": False},
                {"name": "odd", "route": "/odd", "input": {"properties": {}, "type": "object"},
                 "output": {}, "batchable": False, "is_task": False},
                {"name": "__call__", "route": "/", "input": {"properties": {"x": {"type": "integer"}}, "type": "object"},
                 "output": {}, "batchable": False, "is_task": False},
            ],
        }
        self.headers_seen: list[dict] = []


@pytest.fixture
def fake():
    state = _Fake()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, code, body=b"", ctype="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            state.headers_seen.append(dict(self.headers))
            if self.path == "/readyz":
                state.readyz_hits += 1
                ok = time.monotonic() - state.started >= state.ready_after
                return self._send(200 if ok else 503, b"ok" if ok else b"starting", "text/plain")
            if self.path == "/schema.json":
                return self._send(200, json.dumps(state.schema).encode())
            self._send(404, b'{"error":"Not Found"}')

        def do_POST(self):
            state.headers_seen.append(dict(self.headers))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/url":
                return self._send(200, b"from the api", "text/plain")
            if self.path == "/odd":
                return self._send(599, b"weird status")
            if self.path == "/":
                return self._send(200, body)
            self._send(404, b"{}")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    state.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield state
    srv.shutdown()
    srv.server_close()


def test_ready_timeout_raises_service_unavailable():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    start = time.monotonic()
    with pytest.raises(exc.ServiceUnavailable):
        SyncHTTPClient(url, server_ready_timeout=0.6)
    assert 0.5 <= time.monotonic() - start < 5


def test_readyz_is_polled_with_sleeps_not_a_tight_loop(fake):
    fake.ready_after = 1.0
    with SyncHTTPClient(fake.url, server_ready_timeout=10) as c:
        assert c.api_url() == "from the api"
    assert 3 <= fake.readyz_hits <= 40, fake.readyz_hits


def test_not_ready_within_timeout(fake):
    fake.ready_after = 60
    with pytest.raises(exc.ServiceUnavailable, match="not ready"):
        SyncHTTPClient(fake.url, server_ready_timeout=0.5)
    assert fake.readyz_hits <= 20


def test_schema_missing_is_a_clear_error(fake):
    fake.schema = None  # served as JSON null

    with pytest.raises(exc.BentoMLException, match="schema"):
        SyncHTTPClient(fake.url)


def test_nonstandard_status_and_headers(fake):
    with SyncHTTPClient(fake.url, token="s3cret") as c:
        assert isinstance(c.url, str)  # the attribute is not replaced by the API
        with pytest.raises(exc.BentoMLException) as info:
            c.odd()
        assert info.value.error_code == 599 and "weird status" in str(info.value)
        assert c(x=4) == {"x": 4}
        assert c.call("__call__", 5) == {"x": 5}
        with pytest.raises(exc.NotFound):
            c.call("nope")
    seen = fake.headers_seen[-1]
    assert seen["Authorization"] == "Bearer s3cret"
    assert seen["User-Agent"].startswith("bentohost HTTP Client/")


def test_async_client_needs_the_context_manager(fake):
    async def main():
        c = AsyncHTTPClient(fake.url)
        with pytest.raises(RuntimeError, match="async context manager"):
            c.url_api  # noqa: B018
        async with c:
            assert await c.api_url() == "from the api"
            with pytest.raises(exc.BentoMLException) as info:
                await c.odd()
            assert info.value.error_code == 599
            assert await c(x=1) == {"x": 1}

    asyncio.run(main())


# --------------------------------------------------------------------------- end to end with bentohost


@pytest.fixture(scope="module")
def io_server(module_server_factory):
    return module_server_factory("client_io.py:ClientIO", "--workers", "1")


@pytest.fixture(scope="module")
def client(io_server):
    with SyncHTTPClient(io_server.url, server_ready_timeout=30) as c:
        yield c


def test_schema_routes(client):
    assert {"echo_str", "add", "scale", "invert", "countdown", "shout"} <= set(client.endpoints)
    assert client.endpoints["countdown"].stream_output
    assert client.endpoints["shout"].is_root_input
    assert callable(client.api_url) and isinstance(client.url, str)


def test_e2e_json_values(client):
    assert client.echo_str("héllo") == "héllo"
    assert client.add(1, 2.0, True) == 103.0
    assert client.is_odd(n=3) is True
    assert client.containers([1, 2], {"b": 1, "a": 2}) == {"sum": 3, "keys": ["a", "b"], "total": 3}
    assert client.move(point=client_checks.Point(x=1, y=2), dx=2) == {
        "point": {"x": 3.0, "y": 2.0, "label": "p"},
        "distance": 2.0,
    }
    assert client.api_url() == "called!"


def test_e2e_bytes_output(client):
    assert client.raw_bytes("ab") == b"abab"


def test_e2e_numpy(client):
    arr = client.scale(np.array([[1, 2], [3, 4]]), factor=3)
    assert isinstance(arr, np.ndarray) and arr.tolist() == [[3.0, 6.0], [9.0, 12.0]]


def test_e2e_dataframe(client):
    pd = pytest.importorskip("pandas")
    assert client.frame_sum(pd.DataFrame({"a": [1, 2], "b": [3, 4.5]})) == [4.0, 6.5]


def test_e2e_image(client, tmp_path):
    from PIL import Image

    client_checks._check_image(client.invert(Image.open(client_checks._png_file(tmp_path))))
    # an in-memory image (no file behind it) is encoded by the client
    client_checks._check_image(client.invert(Image.new("RGB", (4, 3), (10, 200, 30))))


def test_e2e_files(client, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("hello file upload")
    info = client.file_info(document=doc, note="n1")
    assert info["name"].endswith("notes.txt") and info["size"] == 17 and info["note"] == "n1", info
    with open(doc, "rb") as f:
        assert client.file_info(f)["size"] == 17
    path = client.make_file("made by the server", filename="made.txt")
    assert isinstance(path, Path) and path.name == "made.txt" and path.read_text() == "made by the server"


def test_e2e_root_inputs(client, tmp_path):
    assert client.shout("abc") == "ABC"
    doc = tmp_path / "big.bin"
    doc.write_bytes(b"x" * 300_000)  # streamed in chunks, no Content-Length
    assert client.count_bytes(doc) == 300_000


def test_e2e_streams(client):
    stream = client.countdown(n=3)
    assert "".join(stream) == "3;2;1;"
    start = time.monotonic()
    chunks, first_at = [], None
    with client.slow_stream(n=3, delay=0.3) as s:
        for chunk in s:
            first_at = first_at if first_at is not None else time.monotonic() - start
            chunks.append(chunk)
    client_checks.expected_stream_chunks(chunks, first_at, time.monotonic() - start)


def test_e2e_errors(client):
    with pytest.raises(exc.InvalidArgument, match="bad input, sorry") as info:
        client.fail("bad")
    assert info.value.error_code == 400
    with pytest.raises(exc.NotFound, match="nothing here"):
        client.fail("missing")
    with pytest.raises(exc.InternalServerError):
        client.fail("x")
    with pytest.raises(exc.InvalidArgument):  # validation error from the server: 400
        client.call("add", a="not a number")
    with pytest.raises(TypeError):
        client.add(b=1.0)


def test_e2e_every_api_sync(io_server, tmp_path):
    done = client_checks.run_sync(SyncHTTPClient, io_server.url, exc.BentoMLException, tmp_path)
    assert "name-clash" in done


def test_e2e_every_api_async(io_server, tmp_path):
    done = asyncio.run(client_checks.run_async(AsyncHTTPClient, io_server.url, exc.BentoMLException, tmp_path))
    assert done == ["values", "stream", "errors"]


def test_e2e_async_stream_error_raises_on_await(io_server):
    async def main():
        async with AsyncHTTPClient(io_server.url) as c:
            stream = await c.countdown(n=2)
            assert "".join([x async for x in stream]) == "2;1;"
            with pytest.raises(exc.InvalidArgument):
                await c.countdown(n="many")

    asyncio.run(main())
