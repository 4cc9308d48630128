"""End to end: multipart/form-data requests (parsed by C, mapped to fields in Python)."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest

from conftest import wait_for

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


def _request_leftovers(tmp_env: Path) -> list[str]:
    """What is in TMPDIR beyond the worker's spool (emptied dirs and files it reuses)."""
    return sorted(p.name for p in tmp_env.iterdir() if not p.name.startswith("bentohost-spool-"))


def test_zz_nothing_left_in_tmpdir(srv, tmp_env):
    wait_for(lambda: not _request_leftovers(tmp_env), 5, what="request dirs removed")
    spools = list(tmp_env.iterdir())
    assert len(spools) <= 1, spools
    for spool in spools:  # only what a later request may reuse: dirs with at most one file, files
        for entry in spool.iterdir():
            assert entry.name[0] in "df" and entry.name[1:].isdigit(), entry
            inside = list(entry.iterdir()) if entry.is_dir() else []
            assert len(inside) <= 1 and all(p.is_file() for p in inside), (entry, inside)


def _shm_has_room() -> bool:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= 256 << 20 and os.access("/dev/shm", os.W_OK)


def test_small_uploads_are_kept_in_memory_when_asked(server_factory, tmp_path):
    """With BENTOHOST_UPLOADS_IN_MEMORY=1 the files of a small body of known length are
    written to /dev/shm (no filesystem blocks to allocate for a file that lives one
    request); a chunked body, whose size nobody knows, goes to TMPDIR, as every upload
    does without the variable; either is gone once answered."""
    on = server_factory("upload_place.py:UploadPlace", env={"TMPDIR": str(tmp_path), "BENTOHOST_UPLOADS_IN_MEMORY": "1"})
    off = server_factory("upload_place.py:UploadPlace", env={"TMPDIR": str(tmp_path)})
    small_file = {"f": ("a.bin", b"m" * 4096, "application/octet-stream")}
    r = on.post("/where", files=small_file)
    assert r.status_code == 200, r.text
    small = r.json()
    assert small["size"] == 4096
    assert small["path"].startswith("/dev/shm/bentohost-req-" if _shm_has_room() else f"{tmp_path}/bentohost-req-"), small
    r = off.post("/where", files=small_file)
    assert r.status_code == 200, r.text
    default = r.json()
    assert default["path"].startswith(f"{tmp_path}/bentohost-req-"), default

    boundary = "placeboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"c.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"c" * 4096 + f"\r\n--{boundary}--\r\n".encode()
    r = on.post("/where", data=iter([body[:100], body[100:]]),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    chunked = r.json()
    assert chunked["path"].startswith(f"{tmp_path}/bentohost-req-") and chunked["size"] == 4096, chunked
    for path in (small["path"], default["path"], chunked["path"]):
        request_dir = Path(path).parent
        wait_for(lambda: not request_dir.exists(), 5, what=f"{request_dir} removed")
    on.signal(signal.SIGTERM)  # the worker's spool in /dev/shm goes with it
    assert on.wait_exit(30) == 0
    assert not [p for p in Path("/dev/shm").glob("bentohost-spool-*") if p.name.endswith(f"-{small['pid']}")]
