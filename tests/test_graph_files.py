"""File and image arguments to dependencies on other hosts (JSON mode): the caller
sends ``multipart/form-data`` as BentoML's client does (files as parts with their
filename and content type, other fields JSON-encoded), through ``--depends`` and
through ``depends(url=...)`` without ``on=``; the bytes come back unchanged."""

from __future__ import annotations

import hashlib

import pytest
import requests

from conftest import SERVICES, free_port

TARGET = str(SERVICES / "graph_files.py")


def post(srv, path: str, body: dict) -> requests.Response:
    return requests.post(srv.url + path, json=body, timeout=30)


@pytest.fixture(scope="module")
def files_port(module_server_factory) -> int:
    port = free_port()
    module_server_factory(f"{TARGET}:Front", "--service", "Files", port=port)
    return port


@pytest.fixture(scope="module")
def front(module_server_factory, files_port):
    return module_server_factory(f"{TARGET}:Front", "--service", "Front",
                                 "--depends", f"Files=http://127.0.0.1:{files_port}")


@pytest.fixture(scope="module")
def loose(module_server_factory, files_port):
    return module_server_factory(f"{TARGET}:Loose", env={"FILES_URL": f"http://127.0.0.1:{files_port}"})


@pytest.mark.parametrize("size", [0, 1, 70_000, 3 << 20])
def test_a_path_argument_round_trips(front, size):
    r = post(front, "/file_roundtrip", {"size": size})
    assert r.status_code == 200, r.text + front.log()
    assert r.json() == {"same": True, "size": size, "name": "data-1.bin"}


def test_a_list_of_files_keeps_names_and_bytes(front):
    r = post(front, "/describe", {})
    assert r.status_code == 200, r.text + front.log()
    assert r.json() == {"names": ["a.txt", "b.json"], "note": "two",
                        "digests": [hashlib.sha256(b"alpha").hexdigest(), hashlib.sha256(b"{}").hexdigest()]}


def test_an_image_argument_round_trips(front):
    r = post(front, "/image_roundtrip", {})
    assert r.status_code == 200, r.text + front.log()
    assert r.json() == {"same": True, "size": [5, 3], "mode": "RGB"}


def test_through_a_schema_proxy(loose):
    assert post(loose, "/file_roundtrip", {"size": 5000}).json() == {"same": True, "size": 5000}
    assert post(loose, "/image_roundtrip", {}).json() == {"same": True, "size": [5, 3]}
