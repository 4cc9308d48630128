"""End to end: every IO type in and out through a real server (tests/services/io_types.py)."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="module")
def tmp_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("io_tmp")
    return d


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_env):
    return module_server_factory("io_types.py:IOTypes", "--workers", "1", env={"TMPDIR": str(tmp_env)})


def leftovers(d: Path) -> list[str]:
    """Everything under d but the worker's spool (the dirs and files it reuses)."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                  if not p.relative_to(d).parts[0].startswith("bentohost-spool-"))


def test_server_uses_tmpdir(srv, tmp_env):
    r = srv.post("/tmpdir", json_body={})
    assert r.status_code == 200 and r.text == str(tmp_env)


def test_scalars(srv):
    body = {"s": "x", "i": "3", "f": 1.5, "b": True, "l": [1, 2], "d": {"k": [1]}}
    r = srv.post("/scalars", json_body=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {**body, "i": 3}


def test_optional_and_field_defaults(srv):
    assert srv.post("/optional", json_body={}).json() == {"x": None, "y": 7}
    assert srv.post("/optional", json_body={"x": 1, "y": 2}).json() == {"x": 1, "y": 2}
    r = srv.post("/optional", json_body={"y": -1})
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"] == ["y"]


def test_nested_model_roundtrip(srv):
    p = {"name": "ann", "age": 3, "address": {"city": "Oslo"}, "tags": ["a"]}
    r = srv.post("/person", json_body={"p": p})
    assert r.status_code == 200
    assert r.text == '{"name":"ann","age":3,"address":{"city":"Oslo","zip":null},"tags":["a"]}'  # compact


def test_wrong_field_types_400_with_detail(srv):
    r = srv.post("/person", json_body={"p": {"name": "ann", "age": "old", "address": {}}})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "2 validation error for Input"
    locs = sorted(tuple(d["loc"]) for d in body["detail"])
    assert locs == [("p", "address", "city"), ("p", "age")]
    assert all(set(d) == {"type", "loc", "msg", "url"} for d in body["detail"])


def test_malformed_json_400(srv):
    r = srv.post("/scalars", data=b'{"s": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"][0]["type"] == "json_invalid"


def test_text_and_bytes_roots(srv):
    r = srv.post("/text_root", data="héllo".encode(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.text == "olléh"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = srv.post("/bytes_root", data=b"abc\x00", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.content == b"ABC\x00"
    r = srv.post("/bytes_field", json_body={"data": "abcd"})
    assert r.json() == 4


def test_numpy_json(srv):
    r = srv.post("/array", json_body={"x": [1, 2, 3, 4, 5, 6]})
    assert r.status_code == 200, r.text
    assert r.json() == [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]
    r = srv.post("/array", json_body={"x": [1, 2, 3]})
    assert r.status_code == 400
    r = srv.post("/array", json_body={"x": [["a"]]})
    assert r.status_code == 400


def test_numpy_octet_stream_fast_path(srv):
    raw = np.arange(6, dtype=np.float32).tobytes()
    r = srv.post("/array", data=raw, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json() == [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]
    r = srv.post("/ndarray_root", data=np.array([1, -2, 300], dtype=np.int16).tobytes(),
                 headers={"Content-Type": "application/octet-stream"})
    assert r.json() == {"dtype": "int16", "shape": [3], "sum": 299, "writeable": False}
    r = srv.post("/ndarray_root", data=b"\x01\x02\x03", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400
    r = srv.post("/array", data=np.arange(5, dtype=np.float32).tobytes(),
                 headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400


def test_numpy_npy_body(srv):
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.int16).reshape(2, 3))
    r = srv.post("/ndarray_root", data=buf.getvalue(), headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 200, r.text
    assert r.json() == {"dtype": "int16", "shape": [2, 3], "sum": 15, "writeable": False}
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 3), dtype=np.float64))
    r = srv.post("/array", data=buf.getvalue(), headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 200 and r.json() == [[2.0] * 3] * 2
    r = srv.post("/ndarray_root", data=b"\x93NUMPYgarbage", headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 400
    # JSON still works for the same API
    r = srv.post("/ndarray_root", json_body=[[1, 2], [3, 4]])
    assert r.json()["shape"] == [2, 2]


def test_big_octet_and_npy_bodies(srv):
    """Bodies of 64 KiB and more reach Python uncopied (a view of the host's buffer): the
    array is still read-only, as over bytes; a bytes, file or JSON API still gets bytes."""
    big = np.arange(300_000, dtype=np.int16)
    r = srv.post("/ndarray_root", data=big.tobytes(), headers={"Content-Type": "application/octet-stream"})
    assert r.json() == {"dtype": "int16", "shape": [300_000], "sum": int(big.sum()), "writeable": False}
    buf = io.BytesIO()
    np.save(buf, big.reshape(1000, 300))
    r = srv.post("/ndarray_root", data=buf.getvalue(), headers={"Content-Type": "application/x-npy; charset=x"})
    assert r.json() == {"dtype": "int16", "shape": [1000, 300], "sum": int(big.sum()), "writeable": False}
    r = srv.post("/ndarray_root", data=buf.getvalue()[:1000], headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 400
    raw = bytes(range(256)) * 1024
    r = srv.post("/bytes_root", data=raw, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.content == raw.upper()
    r = srv.post("/file_root", data=raw, headers={"Content-Type": "application/octet-stream"})
    assert r.json() == {"size": len(raw), "in_tmp": True}
    r = srv.post("/array", data=np.ones(70_000, dtype=np.float32).tobytes(),
                 headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400  # wrong shape: validation, not a crash
    r = srv.post("/person", data=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400


def test_big_bodies_pipelined_and_in_pieces(srv):
    """A Content-Length body is read straight into its buffer, but only its rest: a request
    pipelined behind it is still parsed as one; a body bigger than the first reservation
    (1 MiB) and one sent in uneven pieces arrive whole."""
    import time

    big = np.random.default_rng(5).bytes(3 << 20)

    def req(body: bytes) -> bytes:
        return (b"POST /bytes_root HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body

    with srv.conn() as c:
        c.send(req(big) + req(b"tail"))
        first, second = c.read_response(), c.read_response()
        assert first.status == 200 and first.body == big.upper()
        assert second.status == 200 and second.body == b"TAIL"
        data = req(big[:300_001]) + req(b"x" * 20_000)
        at = 0
        for size in (7, 100, 16 << 10, 1, 70_000, 3, 50_000):
            c.send(data[at:at + size])
            at += size
            time.sleep(0.01)
        c.send(data[at:])
        first, second = c.read_response(), c.read_response()
        assert first.body == big[:300_001].upper() and second.body == b"X" * 20_000


def test_dataframes(srv):
    r = srv.post("/frame_records", json_body={"df": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]})
    assert r.status_code == 200, r.text
    assert r.json() == [{"a": 1, "b": 2, "total": 3}, {"a": 3, "b": 4, "total": 7}]
    r = srv.post("/frame_columns", json_body={"df": {"a": [1, 2], "b": [3, 4]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"a": [10, 20], "b": [30, 40]}
    assert srv.post("/frame_records", json_body={"df": 5}).status_code == 400


def _png(size=(5, 4), color="green") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_image_in_and_out(srv):
    r = srv.post("/image", files={"img": ("a.png", _png(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.mode == "L" and img.size == (5, 4)
    r = srv.post("/image_root", data=_png((7, 3)), headers={"Content-Type": "image/png"})
    assert r.json() == {"size": [7, 3], "mode": "RGB"}
    r = srv.post("/image_root", data=b"not an image", headers={"Content-Type": "image/png"})
    assert r.status_code == 400
    r = srv.post("/jpeg_out", json_body={})
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).format == "JPEG"


def test_file_root(srv):
    r = srv.post("/file_root", data=b"x" * 1000, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json() == {"size": 1000, "in_tmp": True}


def test_file_outputs(srv):
    r = srv.post("/file_out", json_body={"name": "report.txt"})
    assert r.status_code == 200
    assert r.content == b"file body"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-disposition"] == 'attachment; filename="report.txt"'
    r = srv.post("/file_out", json_body={"name": "data.unknownext"})
    assert r.headers["content-type"] == "application/octet-stream"
    r = srv.post("/image_file_out", json_body={})
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'inline; filename="pic.png"'
    assert Image.open(io.BytesIO(r.content)).size == (3, 2)


def test_content_type_output(srv):
    r = srv.post("/html", json_body={})
    assert r.headers["content-type"] == "text/html; charset=utf-8" and r.text == "<p>hi</p>"


def test_batchable_single_request(srv):
    r = srv.post("/batch_double", json_body={"xs": [1, 2, 3]})
    assert r.status_code == 200 and r.json() == [2, 4, 6]


def test_pickle_refused(srv):
    r = srv.post("/scalars", data=b"x", headers={"Content-Type": "application/vnd.bentoml+pickle"})
    assert r.status_code == 415


def test_zz_nothing_left_in_tmpdir(srv, tmp_env):
    # C removes its per-request directories after the response; give it a moment
    deadline = time.monotonic() + 5
    while leftovers(tmp_env) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_env) == []


def test_torch_tensor_io_without_server():
    torch = pytest.importorskip("torch")
    import bentohost as bentoml
    from bentohost._dispatch import build_endpoints, handle_request

    @bentoml.service
    class T:
        @bentoml.api
        def f(self, t: torch.Tensor) -> torch.Tensor:
            return t * 2

    (ep,) = build_endpoints(T, T())
    st, ct, out, _ = handle_request(ep, b'{"t": [[1.0, 2.0]]}')
    assert st == 200 and json.loads(out) == [[2.0, 4.0]]
