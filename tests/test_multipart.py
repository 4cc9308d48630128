"""End to end: multipart/form-data requests (parsed by C, mapped to fields in Python)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def tmp_env(tmp_path_factory):
    return tmp_path_factory.mktemp("mp_tmp")


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_env):
    return module_server_factory("io_types.py:IOTypes", "--workers", "1", env={"TMPDIR": str(tmp_env)})


def test_file_with_json_fields(srv):
    r = srv.post(
        "/file_in",
        files={"f": ("notes.txt", b"hello file", "text/plain")},
        data={"note": json.dumps("a note"), "n": json.dumps(5)},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "hello file", "note": "a note", "n": 5, "suffix": ".txt", "exists": True}


def test_non_json_field_falls_back_to_raw_string(srv):
    r = srv.post("/file_in", files={"f": ("n.txt", b"x", "text/plain")}, data={"note": "plain words", "n": "7"})
    assert r.status_code == 200, r.text
    assert r.json()["note"] == "plain words" and r.json()["n"] == 7
    # a str field whose raw value parses as a number stays a string
    r = srv.post("/file_in", files={"f": ("n.txt", b"x", "text/plain")}, data={"note": "123"})
    assert r.json()["note"] == "123"


def test_content_type_mismatch_is_400(srv):
    r = srv.post("/file_in", files={"f": ("a.png", b"\x89PNG", "image/png")})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "1 validation error for Input"
    assert body["detail"][0]["loc"] == ["f"]
    assert "content type" in body["detail"][0]["msg"]


def test_missing_file_is_400(srv):
    r = srv.post("/file_in", files={"other": ("a.txt", b"x", "text/plain")})
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"] == ["f"]


def test_list_field_takes_all_parts(srv):
    files = [
        ("files", ("a.bin", b"a" * 3, "application/octet-stream")),
        ("files", ("b.bin", b"b" * 5, "application/octet-stream")),
        ("files", ("c.bin", b"", "application/octet-stream")),
    ]
    r = srv.post("/files_in", files=files, data={"meta": json.dumps({"k": [1, 2]})})
    assert r.status_code == 200, r.text
    assert r.json() == {"sizes": [3, 5, 0], "meta": {"k": [1, 2]}}


def test_image_part(srv):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), "white").save(buf, format="JPEG")
    r = srv.post("/image", files={"img": ("x.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"  # convert() drops the format: PNG default


def test_multipart_scalars(srv):
    data = {"s": json.dumps("x"), "i": "4", "f": "2.5", "b": "true", "l": "[1, 2]", "d": '{"a": 1}'}
    r = srv.post("/scalars", files={"unused": ("u.txt", b"", "text/plain")}, data=data)
    assert r.status_code == 200, r.text
    assert r.json() == {"s": "x", "i": 4, "f": 2.5, "b": True, "l": [1, 2], "d": {"a": 1}}


def test_urlencoded_form(srv):
    r = srv.post("/optional", data={"x": "3", "y": "4"})  # application/x-www-form-urlencoded
    assert r.status_code == 200, r.text
    assert r.json() == {"x": 3, "y": 4}


def test_root_file_as_multipart(srv):
    r = srv.post("/file_root", files={"f": ("big.bin", b"z" * 4096, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == 4096


def test_zz_nothing_left_in_tmpdir(srv, tmp_env):
    deadline = time.monotonic() + 5
    while any(tmp_env.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(p.name for p in tmp_env.rglob("*")) == []
