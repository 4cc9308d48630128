"""A PIL image upload whose body is small and of known length is held in memory by
the host (csrc/server/multipart.c), as BentoML opens it from the upload's file object:
the service gets the same image with no file written for it, while other file fields
of the same request, a chunked body and a body over 16 MiB still go to files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import requests

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def tmp_env(tmp_path_factory):
    return tmp_path_factory.mktemp("memory_tmp")


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_env):
    return module_server_factory("upload_memory.py:UploadMemory", env={"TMPDIR": str(tmp_env)})


def png(size=(6, 4), color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    PIL.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def files_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_image_field_in_memory_beside_a_file_field(srv, tmp_env):
    r = srv.post("/one", files={"img": ("a.png", png(), "image/png"),
                                "doc": ("doc.txt", b"hello doc", "text/plain")},
                 data={"note": "n"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["img"] == {"size": [6, 4], "mode": "RGB", "format": "PNG", "filename": "",
                          "pixel": [10, 200, 30]}
    # the Path field is still a file, alone in its request's dir: no file for the image
    assert got["doc_bytes"] == "hello doc" and got["note"] == "n"
    assert Path(got["doc"]).name == "doc.txt" and got["listing"] == ["doc.txt"]


def test_image_only_request_writes_no_file(srv, tmp_env):
    before = files_under(tmp_env)
    for i in range(5):
        r = srv.post("/only", files={"img": ("b.png", png((3 + i, 2)), "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["size"] == [3 + i, 2] and r.json()["filename"] == ""
    assert files_under(tmp_env) == before


def noise_png(size=(300, 300), seed=1) -> tuple[bytes, int]:
    """A PNG of random pixels (over the 64 KiB from which the host hands it over
    uncopied) and the sum of its grey levels."""
    import random

    rnd = random.Random(seed)
    img = PIL.frombytes("RGB", size, bytes(rnd.randrange(256) for _ in range(size[0] * size[1] * 3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), sum(img.convert("L").tobytes())


def test_big_image_read_in_place(srv):
    data, grey = noise_png()
    assert len(data) > 64 << 10
    r = srv.post("/reader", files={"img": ("n.png", data, "image/png")})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["size"] == [300, 300] and got["filename"] == "" and got["sum"] == grey
    assert got["reader"] == "BufferedReader"


def test_image_kept_past_its_request_is_still_whole(srv):
    sent = [noise_png((200 + i, 150), seed=i) for i in range(3)]
    for data, _ in sent:
        r = srv.post("/keep", files={"img": ("k.png", data, "image/png")})
        assert r.status_code == 200 and r.text == "PNG", r.text
    # other requests in between reuse the memory the first ones were read into
    for _ in range(5):
        assert srv.post("/only", files={"img": ("o.png", noise_png(seed=9)[0], "image/png")}).status_code == 200
    r = srv.post("/load_kept", json_body={})
    assert r.status_code == 200, r.text
    want = [PIL.open(io.BytesIO(d)) for d, _ in sent]
    assert [g["size"] for g in r.json()] == [list(w.size) for w in want]
    assert [g["pixel"] for g in r.json()] == [list(w.convert("RGB").getpixel((0, 0))) for w in want]


def test_list_of_images(srv):
    files = [("imgs", (f"{i}.png", png((i + 1, 1), (i, i, i)), "image/png")) for i in range(3)]
    r = srv.post("/many", files=files)
    assert r.status_code == 200, r.text
    assert [d["size"] for d in r.json()] == [[1, 1], [2, 1], [3, 1]]
    assert [d["pixel"] for d in r.json()] == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    assert all(d["filename"] == "" for d in r.json())


def test_root_image_from_multipart_and_raw_body(srv):
    r = srv.post("/root", files={"whatever": ("c.png", png((9, 2)), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == [9, 2] and r.json()["filename"] == ""
    r = srv.post("/root", data=png((4, 4)), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == [4, 4]


def _multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "memtestboundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"; filename="{f}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for n, f, data in parts
    ) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_chunked_image_upload_goes_to_a_file(srv):
    body, ctype = _multipart([("img", "d.png", png((5, 5)))])
    # a generator body is sent chunked: its length is unknown, so the part is written
    r = requests.post(srv.url + "/only", data=iter([body[:100], body[100:]]),
                      headers={"Content-Type": ctype}, timeout=10)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["size"] == [5, 5] and got["filename"].endswith("d.png")
    assert not os.path.exists(got["filename"]), "the request's file outlived the request"


def test_body_over_16_mib_goes_to_a_file(srv):
    # a valid PNG followed by padding PIL ignores: the body is over the in-memory bound
    body, ctype = _multipart([("img", "e.png", png((2, 3)) + b"\0" * (17 << 20))])
    r = requests.post(srv.url + "/only", data=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == [2, 3] and r.json()["filename"].endswith("e.png")


def test_bad_image_in_memory_is_400(srv):
    r = srv.post("/only", files={"img": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and "cannot read the image" in r.text


def test_zz_nothing_left_behind(srv, tmp_env):
    assert files_under(tmp_env) == []
